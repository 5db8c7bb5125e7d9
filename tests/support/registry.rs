//! A real registry for tests: Debian's `docker-registry` (CNCF distribution 2.8) on 127.0.0.1, with a
//! temporary storage directory, optionally TLS (a CA and server certificate made with `openssl`) and
//! htpasswd basic auth (`htpasswd -Bbn`). Killed when dropped. Also: an independent look at what the
//! registry holds, through `skopeo` and through its storage directory.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// How to start the registry.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Serve HTTPS with a certificate signed by a fresh CA.
    pub tls: bool,
    /// Require basic auth for this user and password.
    pub htpasswd: Option<(String, String)>,
    /// Require bearer tokens from a token server (started here) that accepts this user and password.
    pub token_auth: Option<(String, String)>,
}

/// A running registry.
pub struct Registry {
    /// `127.0.0.1:<port>`.
    pub host: String,
    /// Temp dir with config, storage, certificates.
    pub dir: TempDir,
    /// The CA certificate (PEM) when TLS is on.
    pub ca: Option<PathBuf>,
    /// The user and password when auth is on.
    pub creds: Option<(String, String)>,
    /// The token server, when token auth is on.
    pub tokens: Option<TokenServer>,
    child: Child,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run_ok(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn make_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = dir.join("ca.key");
    let ca_dir = dir.join("ca");
    std::fs::create_dir_all(&ca_dir).unwrap();
    let ca = ca_dir.join("ca.crt");
    let key = dir.join("server.key");
    let csr = dir.join("server.csr");
    let crt = dir.join("server.crt");
    let ext = dir.join("server.ext");
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let p = |p: &Path| p.to_str().unwrap().to_string();
    run_ok(Command::new("openssl").args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=kkp-test-ca",
        "-keyout",
        &p(&ca_key),
        "-out",
        &p(&ca),
    ]));
    run_ok(Command::new("openssl").args([
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &p(&key),
        "-out",
        &p(&csr),
    ]));
    run_ok(Command::new("openssl").args([
        "x509",
        "-req",
        "-in",
        &p(&csr),
        "-CA",
        &p(&ca),
        "-CAkey",
        &p(&ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p(&ext),
        "-out",
        &p(&crt),
    ]));
    (ca, crt, key)
}

impl Registry {
    /// A plain-HTTP registry without auth.
    pub fn start() -> Registry {
        Registry::start_with(Options::default())
    }

    /// A registry with the given options.
    pub fn start_with(opts: Options) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("kkp-registry-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let storage = dir.path().join("storage");
        let mut config = format!(
            "version: 0.1\nvalidation:\n  manifests:\n    urls:\n      allow: ['^https?://']\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n  secret: kkp-test-secret\n",
            storage.display()
        );
        let mut ca = None;
        if opts.tls {
            let (ca_crt, crt, key) = make_certs(dir.path());
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                crt.display(),
                key.display()
            ));
            ca = Some(ca_crt);
        }
        if let Some((user, pass)) = &opts.htpasswd {
            let line = run_ok(Command::new("htpasswd").args(["-Bbn", user, pass]));
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, line).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: kkp-test\n    path: {}\n",
                file.display()
            ));
        }
        let mut tokens = None;
        if let Some((user, pass)) = &opts.token_auth {
            let server = TokenServer::start(dir.path(), user, pass);
            config.push_str(&format!(
                "auth:\n  token:\n    realm: {}\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                server.realm,
                server.cert.display()
            ));
            tokens = Some(server);
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry is installed (apt-get install docker-registry)");
        let mut reg = Registry {
            host,
            dir,
            ca,
            creds: opts.htpasswd.or(opts.token_auth),
            tokens,
            child,
        };
        reg.wait_ready();
        reg
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("docker-registry exited ({status}): {}", self.log());
            }
            if TcpStream::connect(&self.host).is_ok() {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "registry did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Flags skopeo needs to talk to this registry.
    pub fn skopeo_flags(&self) -> Vec<String> {
        let mut f = Vec::new();
        match &self.ca {
            Some(ca) => f.push(format!("--cert-dir={}", ca.parent().unwrap().display())),
            None => f.push("--tls-verify=false".into()),
        }
        if let Some((u, p)) = &self.creds {
            f.push(format!("--creds={u}:{p}"));
        }
        f
    }

    /// The raw manifest bytes of `repo:reference` as `skopeo inspect --raw` reads them, or `None`.
    pub fn skopeo_raw(&self, repo: &str, reference: &str) -> Option<Vec<u8>> {
        let sep = if reference.starts_with("sha256:") {
            '@'
        } else {
            ':'
        };
        let out = Command::new("skopeo")
            .arg("inspect")
            .arg("--raw")
            .args(self.skopeo_flags())
            .arg(format!("docker://{}/{repo}{sep}{reference}", self.host))
            .output()
            .expect("skopeo is installed");
        if !out.status.success() {
            eprintln!(
                "skopeo inspect {repo}:{reference}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        out.status.success().then_some(out.stdout)
    }

    /// The digest of `repo:reference` as skopeo sees it (sha256 of the raw manifest), or `None`.
    pub fn skopeo_digest(&self, repo: &str, reference: &str) -> Option<String> {
        self.skopeo_raw(repo, reference)
            .map(|raw| format!("sha256:{}", hex::encode(Sha256::digest(&raw))))
    }

    /// True when the storage holds the blob's data (independent of any client).
    pub fn has_blob(&self, digest: &str) -> bool {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
            .is_file()
    }

    /// Number of blob data files in the storage.
    pub fn blob_count(&self) -> usize {
        let root = self.dir.path().join("storage/docker/registry/v2/blobs/sha256");
        let Ok(prefixes) = std::fs::read_dir(root) else {
            return 0;
        };
        prefixes
            .flatten()
            .flat_map(|p| std::fs::read_dir(p.path()).into_iter().flatten().flatten())
            .filter(|d| d.path().join("data").is_file())
            .count()
    }

    /// The digest the tag points to, read from the storage (independent of any client).
    pub fn tag_link(&self, repo: &str, tag: &str) -> Option<String> {
        let p = self
            .dir
            .path()
            .join("storage/docker/registry/v2/repositories")
            .join(repo)
            .join("_manifests/tags")
            .join(tag)
            .join("current/link");
        std::fs::read_to_string(p).ok().map(|s| s.trim().to_string())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const TOKEN_SERVICE: &str = "kkp-test-registry";
const TOKEN_ISSUER: &str = "kkp-test-issuer";

/// A minimal docker token server: checks basic credentials, grants every scope asked for, and signs an
/// RS256 JWT with `openssl` (certificate in the `x5c` header, trusted by the registry's rootcertbundle).
/// Records the scopes of every token it issued.
pub struct TokenServer {
    /// `http://127.0.0.1:<port>/token`.
    pub realm: String,
    /// The signing certificate (PEM), the registry's rootcertbundle.
    pub cert: PathBuf,
    /// Scope sets of the issued tokens, and refusals as `"denied"`.
    pub issued: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

fn b64url(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl TokenServer {
    fn start(dir: &Path, user: &str, pass: &str) -> TokenServer {
        use base64::Engine as _;
        use std::io::{BufRead, BufReader, Write};
        let key = dir.join("token.key");
        let cert = dir.join("token.crt");
        run_ok(Command::new("openssl").args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=kkp-test-token",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ]));
        let der =
            run_ok(Command::new("openssl").args(["x509", "-in", cert.to_str().unwrap(), "-outform", "DER"]));
        let x5c = base64::engine::general_purpose::STANDARD.encode(der);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let realm = format!("http://{}/token", listener.local_addr().unwrap());
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        );
        let issued = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = issued.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let mut authorization = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':')
                        && k.eq_ignore_ascii_case("authorization")
                    {
                        authorization = Some(v.trim().to_string());
                    }
                }
                let target = request_line.split_whitespace().nth(1).unwrap_or("").to_string();
                let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
                let scopes: Vec<String> = query
                    .split('&')
                    .filter_map(|kv| kv.strip_prefix("scope="))
                    .map(percent_decode)
                    .collect();
                if authorization.as_deref() != Some(expected.as_str()) {
                    log.lock().unwrap().push("denied".into());
                    let body = r#"{"details":"wrong credentials"}"#;
                    let _ = write!(
                        stream,
                        "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    continue;
                }
                log.lock().unwrap().push(scopes.join(" "));
                let access: Vec<serde_json::Value> = scopes
                    .iter()
                    .filter_map(|s| {
                        let mut parts = s.splitn(3, ':');
                        let (t, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                        Some(serde_json::json!({"type": t, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
                    })
                    .collect();
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
                let claims = serde_json::json!({
                    "iss": TOKEN_ISSUER, "sub": "mirror", "aud": TOKEN_SERVICE,
                    "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", fastrand::u64(..)),
                    "access": access,
                });
                let input = format!(
                    "{}.{}",
                    b64url(header.to_string().as_bytes()),
                    b64url(claims.to_string().as_bytes())
                );
                let mut sign = Command::new("openssl")
                    .args(["dgst", "-sha256", "-sign", key.to_str().unwrap()])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap();
                sign.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
                let sig = sign.wait_with_output().unwrap().stdout;
                let body =
                    serde_json::json!({"token": format!("{input}.{}", b64url(&sig)), "expires_in": 300})
                        .to_string();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        TokenServer { realm, cert, issued }
    }
}
