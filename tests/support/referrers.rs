//! A loopback stub of just the OCI referrers API in front of a real registry (no registry installed here
//! implements it): `GET /v2/<name>/referrers/<digest>` is answered from what was pushed through the
//! stub, a manifest `PUT` whose body has a `subject` is recorded and answered with `OCI-Subject`, and
//! every other request goes to the registry unchanged. One request per connection (`Connection: close`).

use std::collections::BTreeMap;
use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

/// Referrers recorded per `(repository, subject digest)`.
type Index = BTreeMap<(String, String), Vec<Value>>;

/// A running stub.
pub struct ReferrersStub {
    /// `127.0.0.1:<port>`: use it instead of the registry's host.
    pub host: String,
    index: Arc<Mutex<Index>>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl ReferrersStub {
    /// Starts the stub in front of `upstream` (`127.0.0.1:<port>`).
    pub fn start(upstream: &str) -> ReferrersStub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let index: Arc<Mutex<Index>> = Arc::default();
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let (idx, log, upstream) = (index.clone(), seen.clone(), upstream.to_string());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (idx, log, upstream) = (idx.clone(), log.clone(), upstream.clone());
                std::thread::spawn(move || serve(conn, &upstream, &idx, &log));
            }
        });
        ReferrersStub { host, index, seen }
    }

    /// The referrers recorded for `subject` in `repo`.
    pub fn referrers(&self, repo: &str, subject: &str) -> Vec<Value> {
        self.index
            .lock()
            .unwrap()
            .get(&(repo.to_string(), subject.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    /// `METHOD target` of every request so far.
    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(conn: TcpStream, upstream: &str, index: &Mutex<Index>, seen: &Mutex<Vec<String>>) {
    let mut out = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    let Some(head) = super::scripted::read_head(&mut r) else {
        return;
    };
    let (method, target) = (head.method.clone(), head.target.clone());
    seen.lock().unwrap().push(format!("{method} {target}"));
    let value = |name: &str| head.header(name);
    assert!(
        value("transfer-encoding").is_none(),
        "the stub takes bodies with a length only"
    );
    let mut body = vec![0u8; value("content-length").and_then(|v| v.parse().ok()).unwrap_or(0)];
    if r.read_exact(&mut body).is_err() {
        return;
    }
    let path = target.split('?').next().unwrap_or("").to_string();
    if method == "GET"
        && let Some((repo, subject)) = path
            .strip_prefix("/v2/")
            .and_then(|p| p.split_once("/referrers/"))
    {
        let list = index
            .lock()
            .unwrap()
            .get(&(repo.to_string(), subject.to_string()))
            .cloned()
            .unwrap_or_default();
        let doc = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": list,
        }))
        .unwrap();
        let _ = write!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.index.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            doc.len()
        );
        let _ = out.write_all(&doc);
        return;
    }
    // A manifest with a subject, pushed by digest or tag: recorded once the registry took it.
    let referrer = (method == "PUT")
        .then(|| {
            let (repo, _) = path.strip_prefix("/v2/")?.split_once("/manifests/")?;
            let doc: Value = serde_json::from_slice(&body).ok()?;
            let subject = doc.get("subject")?.get("digest")?.as_str()?.to_string();
            let media_type = doc
                .get("mediaType")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| value("content-type"))?;
            let mut d = json!({
                "mediaType": media_type,
                "digest": kkp_shared::registry::sha256_digest(&body),
                "size": body.len(),
            });
            let artifact_type = doc
                .get("artifactType")
                .cloned()
                .or_else(|| doc.get("config").and_then(|c| c.get("mediaType")).cloned());
            if let Some(a) = artifact_type {
                d["artifactType"] = a;
            }
            if let Some(a) = doc.get("annotations") {
                d["annotations"] = a.clone();
            }
            Some((repo.to_string(), subject, d))
        })
        .flatten();
    let Ok(mut server) = TcpStream::connect(upstream) else {
        return;
    };
    let mut fwd = String::new();
    for l in std::iter::once(&head.line).chain(head.lines.iter().filter(|l| {
        let name = l.split(':').next().unwrap_or("").trim().to_ascii_lowercase();
        !(name == "connection" || name == "keep-alive" || name == "host")
    })) {
        fwd.push_str(l);
        fwd.push_str("\r\n");
    }
    fwd.push_str(&format!("Host: {upstream}\r\nConnection: close\r\n\r\n"));
    if server.write_all(fwd.as_bytes()).is_err() || server.write_all(&body).is_err() {
        return;
    }
    let mut answer = Vec::new();
    let _ = server.read_to_end(&mut answer);
    if let Some((repo, subject, d)) = referrer
        && answer.starts_with(b"HTTP/1.1 201")
        && let Some(eol) = answer.windows(2).position(|w| w == b"\r\n")
    {
        let mut list = index.lock().unwrap();
        let entry = list.entry((repo, subject.clone())).or_default();
        if !entry.iter().any(|e| e["digest"] == d["digest"]) {
            entry.push(d);
        }
        let header = format!("\r\nOCI-Subject: {subject}");
        answer.splice(eol..eol, header.into_bytes());
    }
    let _ = out.write_all(&answer);
}
