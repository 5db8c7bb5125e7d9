//! A thin OCI distribution client on `reqwest`: auth, retries, TLS per registry, raw manifests, blobs.
//!
//! Knows nothing of KKP or plans. Manifests are handled as raw bytes so digests never change; blobs are
//! streamed, never buffered. One [`Client`] serves every host: each host gets its own `reqwest` client
//! (its TLS settings), a request limit, a probed scheme and auth challenge, a token cache per scope, and
//! its state under the one retry policy ([`retry`]): every request goes through [`retry::run`], each
//! attempt from sending to checking the answer.

pub mod auth;
pub mod manifest;
pub mod retry;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, LOCATION, RETRY_AFTER,
};
use tokio::sync::{OnceCell, Semaphore};

pub use auth::Credential;
use auth::{Challenge, TokenResponse, encode, parse_challenge};
pub use manifest::sha256_digest;
use retry::{Failed, is_retry_status};
pub use retry::{Fault, Retries};

/// Largest token answer read.
const MAX_TOKEN_BYTES: usize = 1 << 20;

/// Installs rustls' `ring` provider for the process, once; later calls (and kube doing the same) are fine.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Why a registry request failed. Messages name the host and the object; never a secret.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The connection could not be made or broke before the answer's head (after retries).
    #[error("{what}: {detail}")]
    Transport {
        /// The request.
        what: String,
        /// The cause chain, flattened.
        detail: String,
    },
    /// The answer's body broke off: the connection reset after the head, fewer bytes than announced.
    #[error("{what}: the answer broke off: {detail}")]
    Body {
        /// The request.
        what: String,
        /// What arrived, and the cause.
        detail: String,
    },
    /// A success answer that is not what was asked for (not JSON, an HTML page).
    #[error("{what}: the answer is not the registry's: {detail}")]
    Garbled {
        /// The request.
        what: String,
        /// What arrived instead.
        detail: String,
    },
    /// A fault that was not retried because the host used up this run's retries ([`retry`]).
    #[error("{error} (not retried: {host} has used up this run's {allowance} retries)")]
    BudgetSpent {
        /// The registry.
        host: String,
        /// Retries it was allowed.
        allowance: u64,
        /// The fault.
        error: Box<RegistryError>,
    },
    /// The host was given up on in this run; the request was not sent.
    #[error("{what}: not sent: {host} is not answering ({detail})")]
    HostDown {
        /// The request.
        what: String,
        /// The registry.
        host: String,
        /// The budget spent and the last error.
        detail: String,
    },
    /// The registry refused the credentials (or wants some and none were found).
    #[error(
        "{host}: authentication failed{}: {detail}",
        user.as_ref().map(|u| format!(" for user {u:?}")).unwrap_or_else(|| " (no credentials found; use docker login or --username/--password-stdin)".into())
    )]
    Unauthorized {
        /// The registry.
        host: String,
        /// The user name tried, if any.
        user: Option<String>,
        /// The registry's message.
        detail: String,
    },
    /// Authenticated, but not allowed.
    #[error("{what}: access denied: {detail}")]
    Denied {
        /// The request.
        what: String,
        /// The registry's message.
        detail: String,
    },
    /// The manifest or blob does not exist.
    #[error("{what}: not found")]
    NotFound {
        /// The request.
        what: String,
    },
    /// Any other unexpected answer.
    #[error("{what}: registry answered {status}: {detail}")]
    Status {
        /// The request.
        what: String,
        /// HTTP status.
        status: u16,
        /// The body (shortened).
        detail: String,
    },
    /// Content did not hash to its digest.
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was read.
        what: String,
        /// The digest asked for.
        expected: String,
        /// The digest of the bytes received.
        actual: String,
    },
    /// A manifest is unreadable or too big.
    #[error("{what}: {detail}")]
    BadManifest {
        /// What was read.
        what: String,
        /// What is wrong.
        detail: String,
    },
    /// The client could not be set up (CA file, TLS).
    #[error("{0}")]
    Config(String),
    /// The registry refused a monolithic upload; the next attempt sends the blob in chunks.
    #[error("{what}: the registry refused a monolithic upload ({status}); retrying with a chunked upload")]
    ChunkedUploadNeeded {
        /// The request.
        what: String,
        /// HTTP status of the refusal.
        status: u16,
    },
}

impl RegistryError {
    /// True when retrying may help: a [`Fault`] (connection trouble, a body cut short or garbled, 408,
    /// 429, 5xx), including content that did not match its digest (bytes spoiled on the way arrive intact
    /// when fetched again; a source that really holds bad content fails the same way after the retries),
    /// and a refused monolithic upload (the next attempt is chunked).
    pub fn is_transient(&self) -> bool {
        Fault::of(self).is_some() || matches!(self, RegistryError::ChunkedUploadNeeded { .. })
    }

    /// True when the retry policy gave up on the host ([`retry`]): nothing later in the run will help.
    pub fn gave_up(&self) -> bool {
        matches!(
            self,
            RegistryError::BudgetSpent { .. } | RegistryError::HostDown { .. }
        )
    }
}

/// A repository on a registry: `host/path`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Repository {
    /// Registry host (with port).
    pub host: String,
    /// Repository path.
    pub path: String,
}

impl Repository {
    /// Builds a repository from its parts.
    pub fn new(host: impl Into<String>, path: impl Into<String>) -> Repository {
        Repository {
            host: host.into(),
            path: path.into(),
        }
    }

    /// The repository of an image reference.
    pub fn of(image: &crate::reference::ImageRef) -> Repository {
        Repository::new(&image.registry, &image.repository)
    }
}

impl std::fmt::Display for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.host, self.path)
    }
}

/// Per-host settings.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Hosts reached over plain HTTP or HTTPS without certificate verification (`--insecure-registry`).
    pub insecure: Vec<String>,
    /// Extra CA bundles: `(Some(host), file)` for one host, `(None, file)` for every host (`--ca-file`).
    pub ca_files: Vec<(Option<String>, PathBuf)>,
    /// Credentials given explicitly per host; others come from docker/podman config files.
    pub credentials: HashMap<String, Credential>,
    /// Requests in flight per host.
    pub max_per_host: usize,
    /// Do not read docker/podman config files (tests).
    pub no_config_files: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure: Vec::new(),
            ca_files: Vec::new(),
            credentials: HashMap::new(),
            max_per_host: 16,
            no_config_files: false,
        }
    }
}

/// What a manifest HEAD/GET told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestInfo {
    /// `sha256:…` of the manifest bytes.
    pub digest: String,
    /// Media type (`Content-Type`).
    pub media_type: String,
    /// Size in bytes.
    pub size: u64,
}

/// A manifest's exact bytes and what they are.
#[derive(Debug, Clone)]
pub struct RawManifest {
    /// The bytes as served.
    pub bytes: Bytes,
    /// Media type.
    pub media_type: String,
    /// Digest of `bytes` (verified).
    pub digest: String,
}

/// What a manifest `PUT` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutAnswer {
    /// The digest the registry reports (else the bytes' own).
    pub digest: String,
    /// `OCI-Subject`: the subject the registry indexed for its referrers API, if it has one.
    pub subject: Option<String>,
}

/// The `rel="next"` target of a `Link` header (`</v2/x/tags/list?last=a&n=1000>; rel="next"`), as a
/// path on the same registry.
fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        if !params.contains("rel=\"next\"") && !params.contains("rel=next") {
            return None;
        }
        let target = target.trim().trim_start_matches('<').trim_end_matches('>');
        // Only a path: an absolute URL to another host is not followed with our credentials.
        target.starts_with('/').then(|| target.to_string())
    })
}

/// Result of a cross-repository mount attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    /// The blob is now in the target repository.
    Mounted,
    /// Not mounted; an upload session was opened at this location instead.
    Upload(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Pull,
    Push,
}

/// Probed once per host: where `/v2/` answered and what it asked for.
#[derive(Debug, Clone)]
struct Endpoint {
    base: String,
    challenge: Challenge,
}

struct Host {
    name: String,
    http: reqwest::Client,
    endpoint: OnceCell<Endpoint>,
    credential: OnceCell<Option<Credential>>,
    limit: Semaphore,
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    /// Its pause, retry budget and whether it was given up on.
    retry: retry::HostState,
    /// Set when the host refused a monolithic upload `PUT`: uploads then send their bytes in a `PATCH`
    /// and finish with an empty `PUT`.
    chunked_uploads: std::sync::atomic::AtomicBool,
    /// Fallback to plain HTTP allowed (insecure or loopback host).
    http_fallback: bool,
}

impl Host {
    /// A request slot for this host, after any pause the host asked for.
    async fn slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, RegistryError> {
        self.retry.wait_pause().await;
        self.limit
            .acquire()
            .await
            .map_err(|_| RegistryError::Config(format!("{}: request limit closed", self.name)))
    }
}

struct Inner {
    opts: ClientOptions,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
    /// Retries of every request of this client, by kind.
    retries: retry::Counter,
}

/// The registry client; cheap to clone, shared by every task.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

fn is_loopback(host: &str) -> bool {
    let name = host.rsplit_once(':').map_or(host, |(h, p)| {
        if p.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    name == "localhost" || name.starts_with("127.") || name == "[::1]"
}

/// Where a registry's API is served: Docker Hub's is not at `docker.io`.
fn api_host(name: &str) -> &str {
    if name == crate::reference::DEFAULT_REGISTRY || name == "index.docker.io" {
        "registry-1.docker.io"
    } else {
        name
    }
}

/// An error and its causes on one line (`a: b: c`), each cause once.
pub fn flatten_error(err: &dyn std::error::Error) -> String {
    flatten(err)
}

fn flatten(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// A success answer carrying an HTML page (a proxy's or a captive portal's error page) is never the
/// registry's: it is [`RegistryError::Garbled`], and asked for again.
fn html_page(what: &str, resp: &reqwest::Response) -> Option<RegistryError> {
    let ct = header(resp.headers(), CONTENT_TYPE.as_str())?;
    (resp.status().is_success() && ct.trim().to_ascii_lowercase().starts_with("text/html")).then(|| {
        RegistryError::Garbled {
            what: what.to_string(),
            detail: format!("a {} answer with an HTML page ({ct})", resp.status()),
        }
    })
}

/// Reads a whole answer body: a break or fewer bytes than its `Content-Length` is
/// [`RegistryError::Body`]; more than `limit` bytes is `too_big()`.
async fn read_body(
    what: &str,
    mut resp: reqwest::Response,
    limit: usize,
    too_big: impl Fn() -> RegistryError,
) -> Result<Vec<u8>, RegistryError> {
    let announced = resp.content_length();
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(too_big());
    }
    let mut buf = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > limit {
                    return Err(too_big());
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => {
                return Err(RegistryError::Body {
                    what: what.to_string(),
                    detail: format!("after {} bytes: {}", buf.len(), flatten(&e)),
                });
            }
        }
    }
    if let Some(n) = announced
        && n != buf.len() as u64
    {
        return Err(RegistryError::Body {
            what: what.to_string(),
            detail: format!("{} of the {n} bytes announced", buf.len()),
        });
    }
    Ok(buf)
}

async fn body_text(resp: reqwest::Response) -> String {
    let text = resp.text().await.unwrap_or_default();
    let text = text.trim();
    let mut s: String = text.chars().take(300).collect();
    if text.chars().count() > 300 {
        s.push('…');
    }
    s
}

impl Client {
    /// Builds a client. Installs the process-wide crypto provider if none is installed yet.
    pub fn new(opts: ClientOptions) -> Result<Client, RegistryError> {
        install_crypto_provider();
        for (_, file) in &opts.ca_files {
            if !file.is_file() {
                return Err(RegistryError::Config(format!(
                    "--ca-file {}: no such file",
                    file.display()
                )));
            }
        }
        Ok(Client {
            inner: Arc::new(Inner {
                opts,
                hosts: Mutex::new(HashMap::new()),
                retries: retry::Counter::default(),
            }),
        })
    }

    fn host(&self, name: &str) -> Result<Arc<Host>, RegistryError> {
        let mut hosts = self.inner.hosts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = hosts.get(name) {
            return Ok(h.clone());
        }
        let opts = &self.inner.opts;
        let insecure = opts.insecure.iter().any(|h| h == name);
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("kubectl-kkp/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(opts.max_per_host.max(1));
        for (for_host, file) in &opts.ca_files {
            if for_host.as_deref().is_some_and(|h| h != name) {
                continue;
            }
            let pem = std::fs::read(file)
                .map_err(|e| RegistryError::Config(format!("--ca-file {}: {e}", file.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                RegistryError::Config(format!(
                    "--ca-file {}: not a PEM bundle: {}",
                    file.display(),
                    flatten(&e)
                ))
            })?;
            builder = builder.tls_certs_merge(certs);
        }
        if insecure {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let http = builder
            .build()
            .map_err(|e| RegistryError::Config(format!("HTTP client for {name}: {}", flatten(&e))))?;
        let host = Arc::new(Host {
            name: name.to_string(),
            http,
            endpoint: OnceCell::new(),
            credential: OnceCell::new(),
            limit: Semaphore::new(opts.max_per_host.max(1)),
            tokens: Mutex::new(HashMap::new()),
            retry: retry::HostState::default(),
            chunked_uploads: std::sync::atomic::AtomicBool::new(false),
            http_fallback: insecure || is_loopback(name),
        });
        hosts.insert(name.to_string(), host.clone());
        Ok(host)
    }

    async fn credential(&self, host: &Host) -> Option<Credential> {
        host.credential
            .get_or_init(|| async {
                if let Some(c) = self.inner.opts.credentials.get(&host.name) {
                    return Some(c.clone());
                }
                if self.inner.opts.no_config_files {
                    return None;
                }
                let name = host.name.clone();
                tokio::task::spawn_blocking(move || auth::lookup_credential(&name))
                    .await
                    .ok()
                    .flatten()
            })
            .await
            .clone()
    }

    /// Probes `GET /v2/` (https first; plain http for insecure and loopback hosts) and learns the
    /// challenge. Retried like any request.
    async fn endpoint(&self, host: &Host) -> Result<Endpoint, RegistryError> {
        host.endpoint
            .get_or_try_init(|| async {
                let what = format!("connecting to registry {}", host.name);
                retry::run(
                    &host.name,
                    &host.retry,
                    &self.inner.retries,
                    &what,
                    move || async move { self.probe(host).await.map_err(Failed::from) },
                )
                .await
            })
            .await
            .cloned()
    }

    async fn probe(&self, host: &Host) -> Result<Endpoint, RegistryError> {
        let what = format!("connecting to registry {}", host.name);
        let https = format!("https://{}", api_host(&host.name));
        let mut probe = host.http.get(format!("{https}/v2/"));
        if host.http_fallback {
            // A plain-HTTP server may never answer a TLS hello; do not wait the full connect timeout.
            probe = probe.timeout(Duration::from_secs(10));
        }
        let resp = match probe.send().await {
            Ok(r) => (r, https),
            Err(e) if host.http_fallback => {
                let http = format!("http://{}", host.name);
                match host.http.get(format!("{http}/v2/")).send().await {
                    Ok(r) => (r, http),
                    Err(e2) => {
                        return Err(RegistryError::Transport {
                            what,
                            detail: format!("https: {}; http: {}", flatten(&e), flatten(&e2)),
                        });
                    }
                }
            }
            Err(e) => {
                return Err(RegistryError::Transport {
                    what,
                    detail: flatten(&e),
                });
            }
        };
        let (resp, base) = resp;
        if let Some(e) = html_page(&what, &resp) {
            return Err(e);
        }
        let status = resp.status();
        let challenge = header(resp.headers(), "www-authenticate")
            .map(|h| parse_challenge(&h))
            .unwrap_or(Challenge::None);
        if status.is_success() || status == StatusCode::UNAUTHORIZED {
            tracing::debug!(host = %host.name, %base, ?challenge, "registry probed");
            Ok(Endpoint { base, challenge })
        } else {
            Err(RegistryError::Status {
                what,
                status: status.as_u16(),
                detail: body_text(resp).await,
            })
        }
    }

    fn scopes(repo: &Repository, access: Access, extra_pull: Option<&str>) -> Vec<String> {
        let mut scopes = vec![match access {
            Access::Pull => format!("repository:{}:pull", repo.path),
            Access::Push => format!("repository:{}:pull,push", repo.path),
        }];
        // A mount from the repository itself (does it hold the blob?) needs no second scope, and
        // leaving it out lets the request use the push token already cached.
        if let Some(from) = extra_pull.filter(|f| *f != repo.path) {
            scopes.push(format!("repository:{from}:pull"));
        }
        scopes
    }

    async fn token(
        &self,
        host: &Host,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        fresh: bool,
    ) -> Result<String, RegistryError> {
        let key = scopes.join(" ");
        if !fresh
            && let Some((tok, until)) = host.tokens.lock().unwrap_or_else(|e| e.into_inner()).get(&key)
            && *until > Instant::now()
        {
            return Ok(tok.clone());
        }
        let cred = self.credential(host).await;
        let what = format!("token for {} from {realm}", host.name);
        let (cred, what_s, key_s) = (&cred, what.as_str(), key.as_str());
        let fetch = move || async move {
            let req = match cred {
                Some(Credential::IdentityToken(refresh)) => {
                    let mut body = format!(
                        "grant_type=refresh_token&client_id=kubectl-kkp&refresh_token={}",
                        encode(refresh)
                    );
                    if let Some(s) = service {
                        body.push_str(&format!("&service={}", encode(s)));
                    }
                    body.push_str(&format!("&scope={}", encode(key_s)));
                    host.http
                        .post(realm)
                        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                        .body(body)
                }
                other => {
                    let mut url = realm.to_string();
                    let mut sep = if url.contains('?') { '&' } else { '?' };
                    if let Some(s) = service {
                        url.push_str(&format!("{sep}service={}", encode(s)));
                        sep = '&';
                    }
                    for s in scopes {
                        url.push_str(&format!("{sep}scope={}", encode(s)));
                        sep = '&';
                    }
                    let req = host.http.get(url);
                    match other {
                        Some(Credential::Basic { username, password }) => {
                            req.basic_auth(username, Some(password))
                        }
                        _ => req,
                    }
                }
            };
            let resp = req.send().await.map_err(|e| RegistryError::Transport {
                what: what_s.to_string(),
                detail: flatten(&e),
            })?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                return Err(Failed::from(RegistryError::Unauthorized {
                    host: host.name.clone(),
                    user: cred.as_ref().map(|c| c.username().to_string()),
                    detail: body_text(resp).await,
                }));
            }
            if !status.is_success() {
                let retry_after = retry_after(resp.headers());
                return Err(Failed {
                    error: RegistryError::Status {
                        what: what_s.to_string(),
                        status: status.as_u16(),
                        detail: body_text(resp).await,
                    },
                    retry_after,
                    settled: false,
                });
            }
            if let Some(e) = html_page(what_s, &resp) {
                return Err(e.into());
            }
            let bytes = read_body(what_s, resp, MAX_TOKEN_BYTES, || RegistryError::Garbled {
                what: what_s.to_string(),
                detail: format!("more than {MAX_TOKEN_BYTES} bytes"),
            })
            .await?;
            let garbled = |detail: String| RegistryError::Garbled {
                what: what_s.to_string(),
                detail,
            };
            let body: TokenResponse = serde_json::from_slice(&bytes)
                .map_err(|e| garbled(format!("not a token answer ({} bytes): {e}", bytes.len())))?;
            let token = body
                .token
                .or(body.access_token)
                .ok_or_else(|| garbled("the answer holds no token".into()))?;
            Ok::<_, Failed>((token, body.expires_in))
        };
        let (token, expires_in) =
            retry::run(&host.name, &host.retry, &self.inner.retries, &what, fetch).await?;
        // Renew a little early; registries default to 60 s.
        let ttl = Duration::from_secs(expires_in.unwrap_or(60).max(10)) - Duration::from_secs(5);
        host.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (token.clone(), Instant::now() + ttl));
        Ok(token)
    }

    async fn authorization(
        &self,
        host: &Host,
        endpoint: &Endpoint,
        scopes: &[String],
        fresh: bool,
    ) -> Result<Option<String>, RegistryError> {
        match &endpoint.challenge {
            Challenge::None => Ok(None),
            Challenge::Basic => Ok(match self.credential(host).await {
                Some(Credential::Basic { username, password }) => {
                    use base64::Engine as _;
                    let raw = format!("{username}:{password}");
                    Some(format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(raw)
                    ))
                }
                _ => None,
            }),
            Challenge::Bearer { realm, service, .. } => {
                let tok = self.token(host, realm, service.as_deref(), scopes, fresh).await?;
                Ok(Some(format!("Bearer {tok}")))
            }
        }
    }

    /// One request under the retry policy ([`retry::run`]): auth, the host limit, and per attempt a
    /// fresh request from `build` (given the base URL, `https://host`; bodies must be cheap to clone)
    /// whose answer `read` checks. `read` sees every answer that is not a 401 (handled here: fresh token,
    /// wider scope), a 403 (denied) or a retry status (408/429/5xx: retried); a [`Fault`] it returns
    /// (a body cut short, garbled, not matching its digest) is retried like those.
    async fn request<T, R, Fut>(
        &self,
        repo: &Repository,
        access: Access,
        extra_pull: Option<&str>,
        what: &str,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
        read: R,
    ) -> Result<T, RegistryError>
    where
        R: Fn(reqwest::Response) -> Fut,
        Fut: std::future::Future<Output = Result<T, Failed>>,
    {
        let host = self.host(&repo.host)?;
        let endpoint = self.endpoint(&host).await?;
        // Kept across attempts: a challenge may widen the scope set.
        let scopes = Mutex::new(Self::scopes(repo, access, extra_pull));
        let (h, endpoint, scopes, build, read) = (&*host, &endpoint, &scopes, &build, &read);
        retry::run(
            &host.name,
            &host.retry,
            &self.inner.retries,
            what,
            move || async move {
                let resp = self.attempt(h, endpoint, scopes, what, build).await?;
                read(resp).await
            },
        )
        .await
    }

    /// One attempt of [`Client::request`] up to the answer's head.
    async fn attempt(
        &self,
        host: &Host,
        endpoint: &Endpoint,
        scopes: &Mutex<Vec<String>>,
        what: &str,
        build: &impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Failed> {
        // Token refreshes left: the challenge may widen the scope set, and the new set's first token can
        // still be short of what the registry wants (concurrent requests race here).
        let mut refreshes_left = 2u8;
        let mut fresh = false;
        loop {
            let asked = scopes.lock().unwrap_or_else(|e| e.into_inner()).clone();
            // A token fetch is retried on its own; its failure ends the request.
            let auth = self
                .authorization(host, endpoint, &asked, fresh)
                .await
                .map_err(Failed::settled)?;
            let resp = {
                let _permit = host.slot().await.map_err(Failed::settled)?;
                let mut req = build(&host.http, &endpoint.base);
                if let Some(a) = &auth {
                    req = req.header(AUTHORIZATION, a);
                }
                req.send().await.map_err(|e| RegistryError::Transport {
                    what: what.to_string(),
                    detail: flatten(&e),
                })?
            };
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED {
                let challenge = header(resp.headers(), "www-authenticate").map(|h| parse_challenge(&h));
                if let (true, Some(Challenge::Bearer { scope, .. })) = (refreshes_left > 0, &challenge) {
                    // Expired token or insufficient scope: fetch a new one with every scope asked.
                    if let Some(s) = scope {
                        let mut scopes = scopes.lock().unwrap_or_else(|e| e.into_inner());
                        for s in s.split(' ') {
                            if !scopes.iter().any(|x| x == s) {
                                scopes.push(s.to_string());
                            }
                        }
                    }
                    refreshes_left -= 1;
                    fresh = true;
                    continue;
                }
                let cred = self.credential(host).await;
                return Err(RegistryError::Unauthorized {
                    host: host.name.clone(),
                    user: cred.map(|c| c.username().to_string()),
                    detail: body_text(resp).await,
                }
                .into());
            }
            if is_retry_status(status.as_u16()) {
                let retry_after = retry_after(resp.headers());
                if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
                    host.retry.pause(retry_after.unwrap_or(retry::BASE_BACKOFF));
                }
                return Err(Failed {
                    error: RegistryError::Status {
                        what: what.to_string(),
                        status: status.as_u16(),
                        detail: body_text(resp).await,
                    },
                    retry_after,
                    settled: false,
                });
            }
            if status == StatusCode::FORBIDDEN {
                return Err(RegistryError::Denied {
                    what: what.to_string(),
                    detail: body_text(resp).await,
                }
                .into());
            }
            if let Some(e) = html_page(what, &resp) {
                return Err(e.into());
            }
            return Ok(resp);
        }
    }

    async fn unexpected(what: &str, resp: reqwest::Response) -> RegistryError {
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            return RegistryError::NotFound {
                what: what.to_string(),
            };
        }
        RegistryError::Status {
            what: what.to_string(),
            status: status.as_u16(),
            detail: body_text(resp).await,
        }
    }

    /// Retries made by this client so far, by kind of fault.
    pub fn retries(&self) -> Retries {
        self.inner.retries.snapshot()
    }

    /// Checks that the registry answers and the credentials work, for pulling from `repo`.
    pub async fn ping(&self, repo: &Repository, push: bool) -> Result<(), RegistryError> {
        let access = if push { Access::Push } else { Access::Pull };
        let what = format!("GET {}/v2/", repo.host);
        let what_s = what.as_str();
        self.request(
            repo,
            access,
            None,
            what_s,
            |c, base| c.get(format!("{base}/v2/")),
            move |resp| async move {
                if resp.status().is_success() {
                    Ok(())
                } else {
                    Err(Self::unexpected(what_s, resp).await.into())
                }
            },
        )
        .await
    }

    /// `HEAD` a manifest; `None` when it does not exist.
    pub async fn head_manifest(
        &self,
        repo: &Repository,
        reference: &str,
    ) -> Result<Option<ManifestInfo>, RegistryError> {
        let what = format!("manifest {repo}:{reference}");
        let url = format!("/v2/{}/manifests/{reference}", repo.path);
        let what_s = what.as_str();
        let found = self
            .request(
                repo,
                Access::Pull,
                None,
                what_s,
                |c, base| c.head(format!("{base}{url}")).header(ACCEPT, manifest::ACCEPT),
                move |resp| async move {
                    match resp.status() {
                        StatusCode::NOT_FOUND => Ok(None),
                        s if s.is_success() => {
                            let h = resp.headers();
                            let size = header(h, CONTENT_LENGTH.as_str())
                                .and_then(|s| s.parse().ok())
                                .unwrap_or(0);
                            Ok(Some((
                                header(h, "docker-content-digest"),
                                header(h, CONTENT_TYPE.as_str()).unwrap_or_default(),
                                size,
                            )))
                        }
                        _ => Err(Self::unexpected(what_s, resp).await.into()),
                    }
                },
            )
            .await?;
        match found {
            None => Ok(None),
            Some((Some(digest), media_type, size)) => Ok(Some(ManifestInfo {
                digest,
                media_type,
                size,
            })),
            // No digest header: fall back to reading it.
            Some((None, _, _)) => {
                let m = self.get_manifest(repo, reference).await?;
                Ok(Some(ManifestInfo {
                    digest: m.digest,
                    media_type: m.media_type,
                    size: m.bytes.len() as u64,
                }))
            }
        }
    }

    /// `GET` a manifest's raw bytes, verifying them against the digest asked for or announced. A body
    /// cut short, bytes that do not match, or an answer that is not JSON are asked for again.
    pub async fn get_manifest(
        &self,
        repo: &Repository,
        reference: &str,
    ) -> Result<RawManifest, RegistryError> {
        let what = format!("manifest {repo}:{reference}");
        let url = format!("/v2/{}/manifests/{reference}", repo.path);
        let what_s = what.as_str();
        self.request(
            repo,
            Access::Pull,
            None,
            what_s,
            |c, base| c.get(format!("{base}{url}")).header(ACCEPT, manifest::ACCEPT),
            move |resp| read_manifest(what_s, reference, resp),
        )
        .await
    }

    /// `PUT` raw manifest bytes under `reference` (tag or digest); returns the digest the registry reports.
    /// The body is in memory, so a failed attempt is replayed whole (the same bytes under the same
    /// reference: writing them twice changes nothing).
    pub async fn put_manifest(
        &self,
        repo: &Repository,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<String, RegistryError> {
        Ok(self
            .put_manifest_answer(repo, reference, media_type, bytes)
            .await?
            .digest)
    }

    /// [`Client::put_manifest`], with the `OCI-Subject` answer: a registry with the referrers API names
    /// the subject of a manifest that has one; one without it says nothing (the client then keeps the
    /// referrers fallback tag itself).
    pub async fn put_manifest_answer(
        &self,
        repo: &Repository,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<PutAnswer, RegistryError> {
        let what = format!("pushing manifest {repo}:{reference}");
        let url = format!("/v2/{}/manifests/{reference}", repo.path);
        let (what_s, bytes_r) = (what.as_str(), &bytes);
        self.request(
            repo,
            Access::Push,
            None,
            what_s,
            |c, base| {
                c.put(format!("{base}{url}"))
                    .header(CONTENT_TYPE, media_type)
                    .body(bytes.clone())
            },
            move |resp| async move {
                if resp.status() != StatusCode::CREATED && !resp.status().is_success() {
                    return Err(Self::unexpected(what_s, resp).await.into());
                }
                Ok(PutAnswer {
                    digest: header(resp.headers(), "docker-content-digest")
                        .unwrap_or_else(|| sha256_digest(bytes_r)),
                    subject: header(resp.headers(), "oci-subject"),
                })
            },
        )
        .await
    }

    /// Every tag of `repo` (`GET /v2/<name>/tags/list`, following `Link` pages); empty when the
    /// repository does not exist.
    pub async fn list_tags(&self, repo: &Repository) -> Result<Vec<String>, RegistryError> {
        #[derive(serde::Deserialize)]
        struct Page {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let what = format!("tags of {repo}");
        let mut url = format!("/v2/{}/tags/list?n=1000", repo.path);
        let mut tags = Vec::new();
        // A registry that pages for ever is not followed for ever.
        for _ in 0..1000 {
            let (what_s, url_s) = (what.as_str(), url.as_str());
            let (page, next) = self
                .request(
                    repo,
                    Access::Pull,
                    None,
                    what_s,
                    |c, base| c.get(format!("{base}{url_s}")),
                    move |resp| async move {
                        if resp.status() == StatusCode::NOT_FOUND {
                            return Ok((Vec::new(), None));
                        }
                        if !resp.status().is_success() {
                            return Err(Self::unexpected(what_s, resp).await.into());
                        }
                        let next = header(resp.headers(), "link").and_then(|l| next_link(&l));
                        let body = read_body(what_s, resp, 16 << 20, || RegistryError::Garbled {
                            what: what_s.to_string(),
                            detail: "a tag list larger than 16 MiB".into(),
                        })
                        .await?;
                        let page: Page =
                            serde_json::from_slice(&body).map_err(|e| RegistryError::Garbled {
                                what: what_s.to_string(),
                                detail: format!("not a tag list ({} bytes): {e}", body.len()),
                            })?;
                        Ok((page.tags.unwrap_or_default(), next))
                    },
                )
                .await?;
            let empty = page.is_empty();
            tags.extend(page);
            match next {
                Some(n) if !empty && n != url => url = n,
                _ => break,
            }
        }
        Ok(tags)
    }

    /// The OCI referrers API answer for `digest` in `repo` (an image index of descriptors), or `None`
    /// when the registry does not answer that endpoint (404, 405, 400 or 501, or no index: Debian's
    /// docker-registry 2.8 is one). A registry with the API answers an index even when nothing refers
    /// to the digest.
    pub async fn referrers(&self, repo: &Repository, digest: &str) -> Result<Option<Bytes>, RegistryError> {
        let what = format!("referrers of {repo}@{digest}");
        let url = format!("/v2/{}/referrers/{digest}", repo.path);
        let what_s = what.as_str();
        self.request(
            repo,
            Access::Pull,
            None,
            what_s,
            |c, base| c.get(format!("{base}{url}")).header(ACCEPT, manifest::OCI_INDEX),
            move |resp| async move {
                match resp.status().as_u16() {
                    400 | 404 | 405 | 501 => return Ok(None),
                    s if !(200..300).contains(&s) => {
                        return Err(Self::unexpected(what_s, resp).await.into());
                    }
                    _ => {}
                }
                let body = read_body(what_s, resp, manifest::MAX_MANIFEST_BYTES, || {
                    RegistryError::BadManifest {
                        what: what_s.to_string(),
                        detail: "a referrers index larger than 4 MiB".into(),
                    }
                })
                .await?;
                // Some servers answer 200 with something else for a path they do not know.
                Ok(serde_json::from_slice::<manifest::ManifestView>(&body)
                    .ok()
                    .filter(|v| v.config.is_none())
                    .map(|_| Bytes::from(body)))
            },
        )
        .await
    }

    /// `HEAD` a blob: does `repo` hold it?
    pub async fn blob_exists(&self, repo: &Repository, digest: &str) -> Result<bool, RegistryError> {
        let what = format!("blob {repo}@{digest}");
        let url = format!("/v2/{}/blobs/{digest}", repo.path);
        let what_s = what.as_str();
        self.request(
            repo,
            Access::Pull,
            None,
            what_s,
            |c, base| c.head(format!("{base}{url}")),
            move |resp| async move {
                match resp.status() {
                    StatusCode::NOT_FOUND => Ok(false),
                    s if s.is_success() => Ok(true),
                    _ => Err(Self::unexpected(what_s, resp).await.into()),
                }
            },
        )
        .await
    }

    /// `GET` a blob; the caller streams the body (`Response::bytes_stream`) and must verify it (a body
    /// that breaks off is the caller's to retry, see [`Client::retry_operation`]).
    pub async fn get_blob(
        &self,
        repo: &Repository,
        digest: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        let what = format!("blob {repo}@{digest}");
        let url = format!("/v2/{}/blobs/{digest}", repo.path);
        let what_s = what.as_str();
        self.request(
            repo,
            Access::Pull,
            None,
            what_s,
            |c, base| c.get(format!("{base}{url}")),
            move |resp| async move {
                if resp.status().is_success() {
                    Ok(resp)
                } else {
                    Err(Self::unexpected(what_s, resp).await.into())
                }
            },
        )
        .await
    }

    fn location(endpoint_base: &str, resp: &reqwest::Response, what: &str) -> Result<String, RegistryError> {
        let loc = header(resp.headers(), LOCATION.as_str()).ok_or_else(|| RegistryError::Status {
            what: what.to_string(),
            status: resp.status().as_u16(),
            detail: "no Location header".into(),
        })?;
        Ok(if loc.starts_with("http://") || loc.starts_with("https://") {
            loc
        } else if loc.starts_with('/') {
            format!("{endpoint_base}{loc}")
        } else {
            format!("{endpoint_base}/{loc}")
        })
    }

    async fn base(&self, repo: &Repository) -> Result<String, RegistryError> {
        let host = self.host(&repo.host)?;
        Ok(self.endpoint(&host).await?.base)
    }

    /// Tries a cross-repository mount of `digest` from `from` (a path on the same registry) into `repo`.
    /// Retried like a read: an attempt that opened an upload session and lost the answer leaves that
    /// session unused, and the next attempt opens its own.
    pub async fn mount_blob(
        &self,
        repo: &Repository,
        digest: &str,
        from: &str,
    ) -> Result<Mount, RegistryError> {
        let what = format!("mounting {digest} from {}/{from} into {repo}", repo.host);
        let url = format!(
            "/v2/{}/blobs/uploads/?mount={}&from={}",
            repo.path,
            encode(digest),
            encode(from)
        );
        let base = self.base(repo).await?;
        let (what_s, base) = (what.as_str(), base.as_str());
        self.request(
            repo,
            Access::Push,
            Some(from),
            what_s,
            |c, base| c.post(format!("{base}{url}")).header(CONTENT_LENGTH, "0"),
            move |resp| async move {
                match resp.status() {
                    StatusCode::CREATED => Ok(Mount::Mounted),
                    StatusCode::ACCEPTED => Ok(Mount::Upload(Self::location(base, &resp, what_s)?)),
                    _ => Err(Self::unexpected(what_s, resp).await.into()),
                }
            },
        )
        .await
    }

    /// Opens an upload session in `repo`; returns its location. Each attempt opens a new session.
    pub async fn start_upload(&self, repo: &Repository) -> Result<String, RegistryError> {
        let what = format!("starting upload to {repo}");
        let url = format!("/v2/{}/blobs/uploads/", repo.path);
        let base = self.base(repo).await?;
        let (what_s, base) = (what.as_str(), base.as_str());
        self.request(
            repo,
            Access::Push,
            None,
            what_s,
            |c, base| c.post(format!("{base}{url}")).header(CONTENT_LENGTH, "0"),
            move |resp| async move {
                if resp.status() != StatusCode::ACCEPTED {
                    return Err(Self::unexpected(what_s, resp).await.into());
                }
                Ok(Self::location(base, &resp, what_s)?)
            },
        )
        .await
    }

    /// Finishes an upload session with `size` bytes: one monolithic `PUT`, or, for a registry that refused
    /// one, a `PATCH` with the bytes and an empty closing `PUT`. The body is sent once: a failure here is
    /// returned (transient ones marked so, a refused monolithic `PUT` as
    /// [`RegistryError::ChunkedUploadNeeded`]), and the caller restarts the blob.
    pub async fn finish_upload(
        &self,
        repo: &Repository,
        location: &str,
        digest: &str,
        size: u64,
        body: reqwest::Body,
    ) -> Result<(), RegistryError> {
        use std::sync::atomic::Ordering;
        let what = format!("uploading {digest} to {repo}");
        let host = self.host(&repo.host)?;
        let endpoint = self.endpoint(&host).await?;
        let scopes = Self::scopes(repo, Access::Push, None);
        // Never send our credentials to another host (some registries hand uploads to a storage service).
        let auth_for = |url: &str| url.starts_with(&format!("{}/", endpoint.base));
        let auth = if auth_for(location) {
            self.authorization(&host, &endpoint, &scopes, false).await?
        } else {
            None
        };
        let with_digest = |location: &str| {
            let sep = if location.contains('?') { '&' } else { '?' };
            format!("{location}{sep}digest={}", encode(digest))
        };
        let chunked = host.chunked_uploads.load(Ordering::Relaxed) && size > 0;
        let (url, put_body, put_size) = if chunked {
            let mut req = host
                .http
                .patch(location)
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, size.to_string())
                .header("content-range", format!("0-{}", size - 1))
                .body(body);
            if let Some(a) = &auth {
                req = req.header(AUTHORIZATION, a);
            }
            let resp = self.send_once(&host, repo, req, &what).await?;
            if resp.status() != StatusCode::ACCEPTED && !resp.status().is_success() {
                return Err(Self::unexpected(&what, resp).await);
            }
            let next = Self::location(&endpoint.base, &resp, &what)?;
            (with_digest(&next), reqwest::Body::from(Vec::new()), 0)
        } else {
            (with_digest(location), body, size)
        };
        let mut req = host
            .http
            .put(&url)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, put_size.to_string())
            .body(put_body);
        if auth_for(&url)
            && let Some(a) = &auth
        {
            req = req.header(AUTHORIZATION, a);
        }
        let resp = self.send_once(&host, repo, req, &what).await?;
        let status = resp.status();
        if status == StatusCode::CREATED || status.is_success() {
            return Ok(());
        }
        if !chunked && size > 0 && Self::refuses_monolithic(status) {
            let detail = body_text(resp).await;
            if status != StatusCode::BAD_REQUEST
                || detail.contains("BLOB_UPLOAD_INVALID")
                || detail.contains("UNSUPPORTED")
            {
                tracing::debug!(host = %host.name, %status, %detail, "monolithic upload refused; switching to chunked uploads");
                host.chunked_uploads.store(true, Ordering::Relaxed);
                return Err(RegistryError::ChunkedUploadNeeded {
                    what,
                    status: status.as_u16(),
                });
            }
            return Err(RegistryError::Status {
                what,
                status: status.as_u16(),
                detail,
            });
        }
        Err(Self::unexpected(&what, resp).await)
    }

    /// Statuses with which a registry says it does not take a blob in the closing `PUT`.
    fn refuses_monolithic(status: StatusCode) -> bool {
        matches!(
            status,
            StatusCode::METHOD_NOT_ALLOWED
                | StatusCode::NOT_IMPLEMENTED
                | StatusCode::RANGE_NOT_SATISFIABLE
                | StatusCode::BAD_REQUEST
        )
    }

    /// Sends a request whose body cannot be replayed: the host's limit, no retries, 401 mapped.
    async fn send_once(
        &self,
        host: &Host,
        repo: &Repository,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        let resp = {
            let _permit = host.slot().await?;
            req.send().await.map_err(|e| RegistryError::Transport {
                what: what.to_string(),
                detail: flatten(&e),
            })?
        };
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(RegistryError::Unauthorized {
                host: repo.host.clone(),
                user: self.credential(host).await.map(|c| c.username().to_string()),
                detail: body_text(resp).await,
            });
        }
        // An HTML page is not the registry's "created": the upload is restarted.
        if let Some(e) = html_page(what, &resp) {
            return Err(e);
        }
        Ok(resp)
    }

    /// Runs an operation that cannot be resumed part-way (a streamed blob: `GET` at the source, a new
    /// upload session, `PUT` at the target) under the retry policy, from the start on every attempt.
    /// A failure names the host it is charged to; a [`Failed::settled`] one (a request below that was
    /// retried already) ends the operation.
    pub async fn retry_operation<T, F, Fut>(&self, mut op: F) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, (String, Failed)>>,
    {
        let mut attempt = 0;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err((host, failed)) => {
                    let host = self.host(&host)?;
                    let wait = host
                        .retry
                        .after_failure(&host.name, &self.inner.retries, attempt, failed)?;
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Uploads a blob held in memory (small blobs, tests); skips it when `repo` has it already.
    pub async fn push_blob(&self, repo: &Repository, data: Bytes) -> Result<String, RegistryError> {
        let digest = sha256_digest(&data);
        if self.blob_exists(repo, &digest).await? {
            return Ok(digest);
        }
        let (digest_s, data) = (digest.as_str(), &data);
        let charge = |e: RegistryError| (repo.host.clone(), Failed::from(e));
        let settled = |e: RegistryError| (repo.host.clone(), Failed::settled(e));
        self.retry_operation(move || async move {
            let location = self.start_upload(repo).await.map_err(settled)?;
            self.finish_upload(repo, &location, digest_s, data.len() as u64, data.clone().into())
                .await
                .map_err(charge)
        })
        .await?;
        Ok(digest)
    }
}

/// Reads and checks one manifest answer of [`Client::get_manifest`].
async fn read_manifest(what: &str, reference: &str, resp: reqwest::Response) -> Result<RawManifest, Failed> {
    if !resp.status().is_success() {
        return Err(Client::unexpected(what, resp).await.into());
    }
    let announced = header(resp.headers(), "docker-content-digest");
    let content_type = header(resp.headers(), CONTENT_TYPE.as_str());
    let buf = read_body(what, resp, manifest::MAX_MANIFEST_BYTES, || {
        RegistryError::BadManifest {
            what: what.to_string(),
            detail: format!(
                "larger than {} bytes (4 MiB, the most registries accept); refused",
                manifest::MAX_MANIFEST_BYTES
            ),
        }
    })
    .await?;
    let digest = sha256_digest(&buf);
    let expected = if reference.contains(':') {
        Some(reference.to_string())
    } else {
        announced.filter(|d| d.starts_with("sha256:"))
    };
    if let Some(expected) = expected
        && expected != digest
    {
        return Err(RegistryError::DigestMismatch {
            what: what.to_string(),
            expected,
            actual: digest,
        }
        .into());
    }
    // Not JSON: spoiled on the way (or a page that is not the registry's); asked for again.
    let view = manifest::ManifestView::parse(&buf).map_err(|e| RegistryError::Garbled {
        what: what.to_string(),
        detail: format!("not a manifest ({} bytes): {e}", buf.len()),
    })?;
    Ok(RawManifest {
        media_type: view.effective_media_type(content_type.as_deref()),
        bytes: Bytes::from(buf),
        digest,
    })
}

/// Delay before retry number `attempt` (0-based), for callers outside the registry client that retry
/// their own downloads (node binaries) on the same schedule.
pub fn retry_delay(attempt: u32) -> Duration {
    retry::backoff(attempt, None)
}

/// Attempts a caller should make for a whole operation.
pub const OPERATION_ATTEMPTS: u32 = retry::ATTEMPTS;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mount_from_the_repository_itself_asks_for_no_second_scope() {
        let repo = Repository::new("r.example", "team/app");
        assert_eq!(
            Client::scopes(&repo, Access::Push, Some("team/app")),
            ["repository:team/app:pull,push"]
        );
        assert_eq!(
            Client::scopes(&repo, Access::Push, Some("team/base")),
            ["repository:team/app:pull,push", "repository:team/base:pull"]
        );
    }

    #[test]
    fn tag_list_pages_follow_the_next_link_on_the_same_registry_only() {
        assert_eq!(
            next_link(r#"</v2/a/tags/list?last=x&n=1000>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?last=x&n=1000")
        );
        assert_eq!(
            next_link(r#"<https://evil.example/v2/a/tags/list>; rel="next""#),
            None
        );
        assert_eq!(next_link(r#"</v2/a/tags/list?last=x>; rel="prev""#), None);
    }

    #[test]
    fn docker_hub_api_host() {
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
        assert_eq!(api_host("quay.io"), "quay.io");
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("quay.io"));
        assert!(!is_loopback("reg.local:5000"));
    }
}
