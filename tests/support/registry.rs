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
    /// The token server leaves `push` out of the first token it issues for each scope set, so the
    /// client has to come back after an `insufficient_scope` answer.
    pub token_stingy: bool,
    /// Log every request (see [`Registry::requests`]).
    pub access_log: bool,
    /// Put a [`FaultyProxy`] with this configuration in front of the token server (the realm the
    /// registry announces is the proxy's).
    pub token_faults: Option<FaultConfig>,
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
    /// The proxy in front of the token server ([`Options::token_faults`]).
    pub token_proxy: Option<FaultyProxy>,
    child: Child,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `cmd`; its stdout. A failure fails the test, showing the command and its stderr.
pub fn run_ok(cmd: &mut Command) -> Vec<u8> {
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
            "version: 0.1\nvalidation:\n  manifests:\n    urls:\n      allow: ['^https?://']\nlog:\n  level: warn\n  accesslog:\n    disabled: {}\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n  secret: kkp-test-secret\n",
            !opts.access_log,
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
        let mut token_proxy = None;
        if let Some((user, pass)) = &opts.token_auth {
            let server = TokenServer::start(dir.path(), user, pass, opts.token_stingy);
            let mut realm = server.realm.clone();
            if let Some(faults) = &opts.token_faults {
                let upstream = realm
                    .trim_start_matches("http://")
                    .trim_end_matches("/token")
                    .to_string();
                let proxy = FaultyProxy::start_with(&upstream, faults.clone());
                realm = format!("http://{}/token", proxy.host);
                token_proxy = Some(proxy);
            }
            config.push_str(&format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
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
            token_proxy,
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

    /// `METHOD /path?query` of every request so far, in order (needs [`Options::access_log`]).
    pub fn requests(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter_map(|l| {
                let quoted = l.split('"').nth(1)?;
                let (method, rest) = quoted.split_once(' ')?;
                let target = rest.rsplit_once(' ').map_or(rest, |(t, _)| t);
                target.starts_with("/v2/").then(|| format!("{method} {target}"))
            })
            .collect()
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

    /// True when the storage holds manifest `digest` in `repo` (independent of any client).
    pub fn has_manifest(&self, repo: &str, digest: &str) -> bool {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("storage/docker/registry/v2/repositories")
            .join(repo)
            .join("_manifests/revisions/sha256")
            .join(hex)
            .join("link")
            .is_file()
            && self.has_blob(digest)
    }

    /// Every blob in the storage as `(digest, size)`, after checking that its data hashes to its name
    /// (panics naming the first that does not): the registry never holds a corrupt blob.
    pub fn verified_blobs(&self) -> Vec<(String, u64)> {
        let root = self.dir.path().join("storage/docker/registry/v2/blobs/sha256");
        let mut out = Vec::new();
        for prefix in std::fs::read_dir(root).into_iter().flatten().flatten() {
            for blob in std::fs::read_dir(prefix.path()).into_iter().flatten().flatten() {
                let Ok(data) = std::fs::read(blob.path().join("data")) else {
                    continue;
                };
                let name = format!("sha256:{}", blob.file_name().to_string_lossy());
                let actual = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
                assert_eq!(actual, name, "blob {name} at the target holds other content");
                out.push((name, data.len() as u64));
            }
        }
        out
    }

    /// Every manifest revision `repo` holds, read from the storage (independent of any client).
    pub fn manifest_revisions(&self, repo: &str) -> Vec<String> {
        let dir = self
            .dir
            .path()
            .join("storage/docker/registry/v2/repositories")
            .join(repo)
            .join("_manifests/revisions/sha256");
        let mut out: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|d| format!("sha256:{}", d.file_name().to_string_lossy()))
            .collect();
        out.sort();
        out
    }

    /// Where `repo`'s `tag` is kept in the storage.
    fn tag_dir(&self, repo: &str, tag: &str) -> PathBuf {
        self.dir
            .path()
            .join("storage/docker/registry/v2/repositories")
            .join(repo)
            .join("_manifests/tags")
            .join(tag)
    }

    /// Removes `tag` from `repo` in the storage (the manifest stays, by digest), as a registry
    /// operator's cleanup would.
    pub fn remove_tag(&self, repo: &str, tag: &str) {
        let p = self.tag_dir(repo, tag);
        std::fs::remove_dir_all(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }

    /// The digest the tag points to, read from the storage (independent of any client).
    pub fn tag_link(&self, repo: &str, tag: &str) -> Option<String> {
        let p = self.tag_dir(repo, tag).join("current/link");
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
    fn start(dir: &Path, user: &str, pass: &str, stingy: bool) -> TokenServer {
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
            let mut seen = std::collections::HashSet::new();
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
                let asked = scopes.join(" ");
                let partial = stingy && asked.contains("push") && seen.insert(asked.clone());
                log.lock().unwrap().push(if partial {
                    format!("partial: {asked}")
                } else {
                    asked
                });
                let access: Vec<serde_json::Value> = scopes
                    .iter()
                    .filter_map(|s| {
                        let mut parts = s.splitn(3, ':');
                        let (t, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                        let actions: Vec<&str> = actions
                            .split(',')
                            .filter(|a| !(partial && *a == "push"))
                            .collect();
                        Some(serde_json::json!({"type": t, "name": name, "actions": actions}))
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

/// One kind of fault the proxy injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// Close the connection right after the request head, answering nothing.
    Drop,
    /// Hold the connection without answering for [`FaultConfig::stall`], then close it.
    Stall,
    /// `500 Internal Server Error`.
    Status500,
    /// `502 Bad Gateway`.
    Status502,
    /// `503 Service Unavailable` with `Retry-After: 0`.
    Status503,
    /// `429 Too Many Requests` with `Retry-After: 1`.
    TooManyRetryAfter,
    /// `429 Too Many Requests` without `Retry-After`.
    TooManyBare,
    /// A blob `GET` answered by the registry, cut off after half of its body.
    Truncate,
    /// A blob `GET` answered by the registry with one byte of its body flipped (same length).
    Corrupt,
    /// A manifest `GET` answered by the registry, cut off after half of its body.
    TruncateManifest,
    /// A manifest `GET` answered by the registry with one byte of its body flipped (same length).
    CorruptManifest,
    /// A token `GET` (any path outside `/v2/`) answered by the token server, cut off after half.
    TruncateToken,
    /// A `GET` or `HEAD` answered `200 OK` with an HTML error page (a captive portal, a proxy's page).
    HtmlPage,
    /// A `GET` or `HEAD` whose upstream answer's head is passed on, then the connection is reset (RST).
    ResetAfterHead,
}

impl Fault {
    /// Every kind.
    pub const ALL: [Fault; 14] = [
        Fault::Drop,
        Fault::Stall,
        Fault::Status500,
        Fault::Status502,
        Fault::Status503,
        Fault::TooManyRetryAfter,
        Fault::TooManyBare,
        Fault::Truncate,
        Fault::Corrupt,
        Fault::TruncateManifest,
        Fault::CorruptManifest,
        Fault::TruncateToken,
        Fault::HtmlPage,
        Fault::ResetAfterHead,
    ];

    /// Whether this kind can spoil a `method path` request.
    fn applies(self, method: &str, path: &str) -> bool {
        let get = method == "GET";
        match self {
            Fault::Truncate | Fault::Corrupt => get && path.contains("/blobs/sha256:"),
            Fault::TruncateManifest | Fault::CorruptManifest => get && path.contains("/manifests/"),
            Fault::TruncateToken => get && !path.starts_with("/v2/"),
            Fault::HtmlPage | Fault::ResetAfterHead => get || method == "HEAD",
            _ => true,
        }
    }

    /// Spoils the body of the upstream answer (counted when it is applied, not when it is chosen).
    fn spoils_body(self) -> bool {
        matches!(
            self,
            Fault::Truncate
                | Fault::Corrupt
                | Fault::TruncateManifest
                | Fault::CorruptManifest
                | Fault::TruncateToken
        )
    }

    /// The canned answer of a status fault.
    fn answer(self) -> Option<&'static str> {
        Some(match self {
            Fault::Status500 => "500 Internal Server Error\r\n",
            Fault::Status502 => "502 Bad Gateway\r\n",
            Fault::Status503 => "503 Service Unavailable\r\nRetry-After: 0\r\n",
            Fault::TooManyRetryAfter => "429 Too Many Requests\r\nRetry-After: 1\r\n",
            Fault::TooManyBare => "429 Too Many Requests\r\n",
            _ => return None,
        })
    }
}

/// The page of [`Fault::HtmlPage`].
const HTML_PAGE: &str = "<!DOCTYPE html>\n<html><head><title>Service temporarily unavailable</title></head><body><h1>Please try again later</h1><p>The upstream server did not answer in time.</p></body></html>\n";

/// Closes `stream` with a TCP reset instead of an orderly close (`SO_LINGER` 0), where the OS allows.
fn reset(stream: TcpStream) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        #[repr(C)]
        struct Linger {
            onoff: i32,
            linger: i32,
        }
        unsafe extern "C" {
            fn setsockopt(fd: i32, level: i32, name: i32, value: *const std::ffi::c_void, len: u32) -> i32;
        }
        const SOL_SOCKET: i32 = 1;
        const SO_LINGER: i32 = 13;
        let l = Linger { onoff: 1, linger: 0 };
        // SAFETY: a valid socket, a `struct linger` of the size given, alive for the call.
        unsafe {
            setsockopt(
                stream.as_raw_fd(),
                SOL_SOCKET,
                SO_LINGER,
                (&l as *const Linger).cast(),
                std::mem::size_of::<Linger>() as u32,
            );
        }
    }
    drop(stream);
}

/// Which requests the proxy spoils and how.
#[derive(Debug, Clone)]
pub struct FaultConfig {
    /// Share of requests spoiled, 0.0..=1.0.
    pub rate: f64,
    /// Seeds the choice: the n-th request of a kind (method and path, digests and upload sessions left
    /// out) always gets the same fate, whatever the content and the order concurrent requests arrive in.
    pub seed: u64,
    /// Kinds to choose from (each request picks among the kinds that apply to it: body faults of blobs
    /// only for blob `GET`s, of manifests for manifest `GET`s, of tokens for token `GET`s).
    pub kinds: Vec<Fault>,
    /// How long a stalled connection is held before it is dropped.
    pub stall: Duration,
    /// Spoil every n-th request instead of a random share (kinds in turn); overrides `rate`.
    pub every: Option<usize>,
    /// Hold every request this long before handling it (a slow link).
    pub delay: Duration,
    /// Spoil only the first time a request (same method and path) is seen, so its retry goes through.
    pub only_first: bool,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            rate: 0.1,
            seed: 1,
            kinds: Fault::ALL.to_vec(),
            stall: Duration::from_secs(1),
            every: None,
            delay: Duration::ZERO,
            only_first: false,
        }
    }
}

/// Counts of what the proxy saw and did.
#[derive(Debug, Default)]
pub struct FaultStats {
    /// Requests seen (TLS hellos, which are refused at once, not counted).
    pub requests: usize,
    /// Faults injected, by kind.
    pub injected: std::collections::BTreeMap<Fault, usize>,
    /// Digests of blobs whose body was truncated or corrupted on the way.
    pub spoiled_blobs: Vec<String>,
    /// Digests or tags of manifests whose body was truncated or corrupted on the way.
    pub spoiled_manifests: Vec<String>,
}

impl FaultStats {
    /// Faults injected, all kinds.
    pub fn total(&self) -> usize {
        self.injected.values().sum()
    }
}

/// An HTTP proxy in front of a registry that spoils a share of requests (see [`Fault`]) and passes the
/// others through. One request per connection: every answer says `Connection: close`, so each request
/// is decided on its own. Loopback only; a stall is bounded; its threads live until the process ends.
pub struct FaultyProxy {
    /// `127.0.0.1:<port>` to use instead of the registry's host.
    pub host: String,
    /// What was seen and injected so far.
    pub stats: std::sync::Arc<std::sync::Mutex<FaultStats>>,
    /// Cleared by [`FaultyProxy::stop_faults`]: everything passes through from then on.
    spoiling: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Reads an HTTP head (request or response) up to the blank line; `None` on EOF or a TLS hello.
fn read_head(r: &mut impl std::io::BufRead) -> Option<Vec<String>> {
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        if lines.is_empty() {
            let buf = r.fill_buf().ok()?;
            if buf.first() == Some(&0x16) || buf.is_empty() {
                return None;
            }
        }
        if r.read_until(b'\n', &mut line).ok()? == 0 {
            return None;
        }
        let line = String::from_utf8_lossy(&line).trim_end().to_string();
        if line.is_empty() {
            return Some(lines);
        }
        lines.push(line);
    }
}

/// The head with `Connection: close` instead of any connection header.
fn close_head(head: &[String]) -> String {
    let mut out = String::new();
    for (i, l) in head.iter().enumerate() {
        let name = l.split(':').next().unwrap_or("").trim().to_ascii_lowercase();
        if i > 0 && (name == "connection" || name == "keep-alive") {
            continue;
        }
        out.push_str(l);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

fn head_value(head: &[String], name: &str) -> Option<String> {
    head.iter().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

impl FaultyProxy {
    /// The old shape: every `every`-th request spoiled, in turn 503 (`Retry-After: 0`), 429
    /// (`Retry-After: 1`) or a dropped connection.
    pub fn start(upstream: &str, every: usize) -> FaultyProxy {
        FaultyProxy::start_with(
            upstream,
            FaultConfig {
                every: Some(every),
                kinds: vec![Fault::Status503, Fault::TooManyRetryAfter, Fault::Drop],
                ..FaultConfig::default()
            },
        )
    }

    /// Starts the proxy with `config`, printing it (seed included, so a failing run can be replayed).
    pub fn start_with(upstream: &str, config: FaultConfig) -> FaultyProxy {
        use std::hash::{Hash, Hasher};
        use std::sync::{Arc, Mutex};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        if config.rate > 0.0 || config.every.is_some() {
            eprintln!(
                "fault proxy {host} -> {upstream}: {}, seed {:#x}, kinds {:?}{}",
                config.every.map_or_else(
                    || format!("rate {}", config.rate),
                    |n| format!("every {n}th request")
                ),
                config.seed,
                config.kinds,
                if config.only_first {
                    ", first time only"
                } else {
                    ""
                }
            );
        }
        let stats = Arc::new(Mutex::new(FaultStats::default()));
        let seen: Arc<Mutex<std::collections::HashMap<String, u64>>> = Arc::default();
        let shared = stats.clone();
        let upstream = upstream.to_string();
        let config = Arc::new(config);
        let spoiling = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let on = spoiling.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { return };
                let (stats, seen, upstream, config, on) = (
                    shared.clone(),
                    seen.clone(),
                    upstream.clone(),
                    config.clone(),
                    on.clone(),
                );
                std::thread::spawn(move || {
                    let mut reader = std::io::BufReader::new(client.try_clone().unwrap());
                    let Some(head) = read_head(&mut reader) else {
                        let _ = client.shutdown(std::net::Shutdown::Both);
                        return;
                    };
                    let mut parts = head[0].split_whitespace();
                    let (method, target) = (
                        parts.next().unwrap_or("").to_string(),
                        parts.next().unwrap_or("").to_string(),
                    );
                    let path = target.split('?').next().unwrap_or("");
                    // The request's kind: upload session ids and digests (random test content) are
                    // left out, so the n-th request of a kind in a repository has the same fate in
                    // every run, whatever the content and the arrival order.
                    let key = match path.split_once("/blobs/uploads/") {
                        Some((repo, _)) => format!("{method} {repo}/blobs/uploads/"),
                        None => match path.split_once("sha256:") {
                            Some((before, _)) => format!("{method} {before}sha256:*"),
                            None => format!("{method} {path}"),
                        },
                    };
                    let fault = {
                        let mut st = stats.lock().unwrap();
                        st.requests += 1;
                        let n = st.requests;
                        let kinds: Vec<Fault> = config
                            .kinds
                            .iter()
                            .copied()
                            .filter(|k| k.applies(&method, path))
                            .collect();
                        let (occurrence, repeated) = {
                            let mut occ = seen.lock().unwrap();
                            let count = occ.entry(key.clone()).or_default();
                            *count += 1;
                            let n = *count;
                            // The same exact request (same digest) seen before.
                            let exact = occ.entry(format!("exact {method} {path}")).or_default();
                            *exact += 1;
                            (n, *exact > 1)
                        };
                        let off = !on.load(std::sync::atomic::Ordering::Relaxed);
                        let pick = if off || kinds.is_empty() || (config.only_first && repeated) {
                            None
                        } else if let Some(every) = config.every {
                            (n % every == 1 % every).then(|| kinds[st.total() % kinds.len()])
                        } else {
                            let mut h = std::hash::DefaultHasher::new();
                            (config.seed, &key, occurrence).hash(&mut h);
                            let x = h.finish();
                            let roll = (x >> 11) as f64 / (1u64 << 53) as f64;
                            (roll < config.rate).then(|| kinds[(x % kinds.len() as u64) as usize])
                        };
                        if let Some(f) = pick
                            && !f.spoils_body()
                            && f != Fault::ResetAfterHead
                        {
                            *st.injected.entry(f).or_default() += 1;
                        }
                        pick
                    };
                    std::thread::sleep(config.delay);
                    let mut client = client;
                    match fault {
                        Some(Fault::Drop) => {
                            let _ = client.shutdown(std::net::Shutdown::Both);
                            return;
                        }
                        Some(Fault::Stall) => {
                            std::thread::sleep(config.stall);
                            let _ = client.shutdown(std::net::Shutdown::Both);
                            return;
                        }
                        Some(f) if f.answer().is_some() => {
                            use std::io::Write;
                            let _ = write!(
                                client,
                                "HTTP/1.1 {}Content-Length: 0\r\nConnection: close\r\n\r\n",
                                f.answer().unwrap()
                            );
                            let _ = client.shutdown(std::net::Shutdown::Write);
                            // Let the client finish sending before the socket goes (no reset).
                            let _ = client.set_read_timeout(Some(Duration::from_secs(2)));
                            let _ = std::io::copy(&mut reader, &mut std::io::sink());
                            return;
                        }
                        Some(Fault::HtmlPage) => {
                            use std::io::Write;
                            let _ = write!(
                                client,
                                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                HTML_PAGE.len()
                            );
                            if method != "HEAD" {
                                let _ = client.write_all(HTML_PAGE.as_bytes());
                            }
                            let _ = client.shutdown(std::net::Shutdown::Write);
                            return;
                        }
                        _ => {}
                    }
                    proxy_one(&upstream, reader, client, &head, fault, &stats, path);
                });
            }
        });
        FaultyProxy {
            host,
            stats,
            spoiling,
        }
    }

    /// Passes every later request through unspoiled (to check the outcome through the same path).
    pub fn stop_faults(&self) {
        self.spoiling.store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// A copy of the counts so far.
    pub fn snapshot(&self) -> (usize, std::collections::BTreeMap<Fault, usize>, Vec<String>) {
        let st = self.stats.lock().unwrap();
        (st.requests, st.injected.clone(), st.spoiled_blobs.clone())
    }
}

/// Forwards one request to `upstream` and its answer back, spoiling its body when asked.
fn proxy_one(
    upstream: &str,
    mut reader: std::io::BufReader<TcpStream>,
    mut client: TcpStream,
    head: &[String],
    fault: Option<Fault>,
    stats: &std::sync::Mutex<FaultStats>,
    path: &str,
) {
    use std::io::{Read, Write};
    let Ok(mut server) = TcpStream::connect(upstream) else {
        let _ = client.shutdown(std::net::Shutdown::Both);
        return;
    };
    if server.write_all(close_head(head).as_bytes()).is_err() {
        return;
    }
    // The request body (uploads) on its own thread; a reset needs the client's socket closed here, so
    // `ResetAfterHead` (only for GET and HEAD, which carry no body) keeps the reader.
    let mut kept_reader = None;
    if fault == Some(Fault::ResetAfterHead) {
        kept_reader = Some(reader);
    } else {
        let mut s2 = server.try_clone().unwrap();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut reader, &mut s2);
            let _ = s2.shutdown(std::net::Shutdown::Write);
        });
    }
    let mut up = std::io::BufReader::new(server.try_clone().unwrap());
    let Some(resp) = read_head(&mut up) else {
        let _ = client.shutdown(std::net::Shutdown::Both);
        return;
    };
    let ok = resp[0].split_whitespace().nth(1) == Some("200");
    let len: u64 = head_value(&resp, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if client.write_all(close_head(&resp).as_bytes()).is_err() {
        return;
    }
    let name = path.rsplit('/').next().unwrap_or("").to_string();
    match fault {
        Some(Fault::ResetAfterHead) => {
            *stats
                .lock()
                .unwrap()
                .injected
                .entry(Fault::ResetAfterHead)
                .or_default() += 1;
            let _ = client.flush();
            drop(kept_reader);
            reset(client);
            let _ = server.shutdown(std::net::Shutdown::Both);
            return;
        }
        Some(f) if f.spoils_body() && ok && len > 1 => {
            let mut body = Vec::new();
            let _ = (&mut up).take(len).read_to_end(&mut body);
            if body.len() as u64 != len {
                // The upstream itself cut the body short: pass on what came.
                let _ = client.write_all(&body);
                let _ = client.shutdown(std::net::Shutdown::Both);
                return;
            }
            {
                let mut st = stats.lock().unwrap();
                *st.injected.entry(f).or_default() += 1;
                match f {
                    Fault::Truncate | Fault::Corrupt => st.spoiled_blobs.push(name),
                    Fault::TruncateManifest | Fault::CorruptManifest => st.spoiled_manifests.push(name),
                    _ => {}
                }
            }
            if matches!(f, Fault::Corrupt | Fault::CorruptManifest) {
                let mid = body.len() / 2;
                body[mid] ^= 0xff;
                let _ = client.write_all(&body);
            } else {
                let _ = client.write_all(&body[..body.len() / 2]);
            }
        }
        _ => {
            let _ = std::io::copy(&mut up, &mut client);
        }
    }
    let _ = client.shutdown(std::net::Shutdown::Both);
    let _ = server.shutdown(std::net::Shutdown::Both);
}
