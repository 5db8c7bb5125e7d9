//! A loopback HTTP/1.1 file server for the node-binaries tests: serves a path → bytes map, counts the
//! requests it answers, and can slow every answer down (to interrupt a run mid-way). One thread per
//! connection, `Connection: close` after each answer. Test tree only.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The running server; it stops with the test process.
pub struct FileServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    requests: Arc<AtomicUsize>,
    delay_ms: Arc<AtomicU64>,
}

impl FileServer {
    /// Starts serving `files` (keys are URL paths starting with `/`).
    pub fn start(files: HashMap<String, Vec<u8>>) -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = FileServer {
            url,
            files: Arc::new(Mutex::new(files)),
            requests: Arc::default(),
            delay_ms: Arc::default(),
        };
        let (files, requests, delay) = (
            server.files.clone(),
            server.requests.clone(),
            server.delay_ms.clone(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (files, requests, delay) = (files.clone(), requests.clone(), delay.clone());
                std::thread::spawn(move || {
                    let _ = answer(conn, &files, &requests, &delay);
                });
            }
        });
        server
    }

    /// Requests answered so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Replaces (or adds) one file.
    pub fn put(&self, path: &str, body: Vec<u8>) {
        self.files.lock().unwrap().insert(path.to_string(), body);
    }

    /// Waits this long before each answer.
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }
}

fn answer(
    conn: TcpStream,
    files: &Mutex<HashMap<String, Vec<u8>>>,
    requests: &AtomicUsize,
    delay: &AtomicU64,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("").to_string());
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
    }
    requests.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(delay.load(Ordering::SeqCst)));
    let body = files.lock().unwrap().get(&path).cloned();
    let mut conn = conn;
    match (method, body) {
        ("GET", Some(body)) => {
            write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            conn.write_all(&body)?;
        }
        _ => conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?,
    }
    conn.flush()
}
