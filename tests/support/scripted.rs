//! A scripted HTTP/1.1 server on 127.0.0.1 for registry protocol edge cases: every request is recorded
//! (method, path and query, headers, body) and answered by a closure, so a test can play a registry (or
//! its token service, or its blob storage) that behaves in one particular way and then assert on what
//! the client sent. Keep-alive and chunked request bodies are understood; TLS hellos are closed at once
//! (the client probes HTTPS first on loopback). Stops with the test process.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Req {
    /// `GET`, `PUT`, …
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Headers in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl Req {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// A query parameter, percent-decoded (`%3A` and friends).
    pub fn query(&self, key: &str) -> Option<String> {
        let q = self.target.split_once('?')?.1;
        q.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == key).then(|| decode(v))
        })
    }

    /// `METHOD path?query`, for compact assertions.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.target)
    }
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An answer.
#[derive(Debug, Clone)]
pub struct Resp {
    /// HTTP status.
    pub status: u16,
    /// Headers (Content-Length is added).
    pub headers: Vec<(String, String)>,
    /// Body (not sent for `HEAD`, but its length is announced).
    pub body: Vec<u8>,
}

impl Resp {
    /// An empty answer with `status`.
    pub fn new(status: u16) -> Resp {
        Resp {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Resp {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Resp {
        self.body = body.into();
        self
    }
}

type Handler = dyn Fn(&Req) -> Resp + Send + Sync;

/// A running scripted server.
pub struct Scripted {
    /// `127.0.0.1:<port>`.
    pub host: String,
    seen: Arc<Mutex<Vec<Req>>>,
}

impl Scripted {
    /// Starts a server answering every request with `handler`.
    pub fn start(handler: impl Fn(&Req) -> Resp + Send + Sync + 'static) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let seen: Arc<Mutex<Vec<Req>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (log, handler) = (log.clone(), handler.clone());
                std::thread::spawn(move || serve(conn, &log, &*handler));
            }
        });
        Scripted { host, seen }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host)
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Req> {
        self.seen.lock().unwrap().clone()
    }

    /// The request lines (`METHOD target`) so far, without the `/v2/` probes.
    pub fn lines(&self) -> Vec<String> {
        self.seen()
            .iter()
            .filter(|r| r.target != "/v2/")
            .map(Req::line)
            .collect()
    }
}

/// One request's line and headers, as sent.
pub struct Head {
    /// `GET /v2/ HTTP/1.1`.
    pub line: String,
    /// `GET`, `PUT`, …
    pub method: String,
    /// Path and query.
    pub target: String,
    /// The header lines, in order.
    pub lines: Vec<String>,
}

impl Head {
    /// The headers, names lower-cased.
    pub fn headers(&self) -> Vec<(String, String)> {
        self.lines
            .iter()
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
            })
            .collect()
    }

    /// The value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// The next request's head on `r`, up to the blank line; `None` at the end of the connection or for a
/// TLS hello (the client probes HTTPS first on loopback), which ends the connection.
pub fn read_head(r: &mut impl BufRead) -> Option<Head> {
    match r.fill_buf() {
        Ok(b) if !b.is_empty() && b[0] != 0x16 => {}
        _ => return None,
    }
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return None;
        }
        let line = line.trim_end().to_string();
        if line.is_empty() {
            break;
        }
        head.push(line);
    }
    let line = head.remove(0);
    let mut first = line.split_whitespace();
    let method = first.next().unwrap_or("").to_string();
    let target = first.next().unwrap_or("").to_string();
    Some(Head {
        line,
        method,
        target,
        lines: head,
    })
}

fn serve(conn: TcpStream, log: &Mutex<Vec<Req>>, handler: &Handler) {
    let mut out = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    loop {
        let Some(head) = read_head(&mut r) else {
            return;
        };
        let headers = head.headers();
        let (method, target) = (head.method, head.target);
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let mut body = Vec::new();
        if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                let mut size = String::new();
                if r.read_line(&mut size).unwrap_or(0) == 0 {
                    return;
                }
                let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
                let mut chunk = vec![0u8; n + 2];
                if r.read_exact(&mut chunk).is_err() {
                    return;
                }
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            body = vec![0u8; n];
            if r.read_exact(&mut body).is_err() {
                return;
            }
        }
        let req = Req {
            method,
            target,
            headers,
            body,
        };
        let resp = handler(&req);
        let head_only = req.method == "HEAD";
        log.lock().unwrap().push(req);
        let mut text = format!("HTTP/1.1 {} Scripted\r\n", resp.status);
        for (k, v) in &resp.headers {
            text.push_str(&format!("{k}: {v}\r\n"));
        }
        if !resp
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        {
            text.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
        }
        text.push_str("\r\n");
        let mut bytes = text.into_bytes();
        if !head_only {
            bytes.extend_from_slice(&resp.body);
        }
        if out.write_all(&bytes).is_err() {
            return;
        }
    }
}
