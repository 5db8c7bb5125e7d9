//! A thin OCI distribution client on `reqwest`: auth, retries, TLS per registry, raw manifests, blobs.
//!
//! Knows nothing of KKP or plans. Manifests are handled as raw bytes so digests never change; blobs are
//! streamed, never buffered. One [`Client`] serves every host: each host gets its own `reqwest` client
//! (its TLS settings), a request limit, a probed scheme and auth challenge, and a token cache per scope.

pub mod auth;
pub mod manifest;

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

/// Attempts per request (first try included) for transient failures.
const MAX_ATTEMPTS: u32 = 5;
/// First backoff delay; doubled per attempt up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_millis(500);
/// Longest computed backoff delay.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Installs rustls' `ring` provider for the process, once; later calls (and kube doing the same) are fine.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Why a registry request failed. Messages name the host and the object; never a secret.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The connection could not be made or broke (after retries).
    #[error("{what}: {detail}")]
    Transport {
        /// The request.
        what: String,
        /// The cause chain, flattened.
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
    /// True when retrying the whole operation later may help (connection trouble, 408/429/5xx), and
    /// for content that did not match its digest: bytes spoiled on the way arrive intact when fetched
    /// again, and a source that really holds bad content fails the same way after the retries.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Transport { .. }
            | RegistryError::DigestMismatch { .. }
            | RegistryError::ChunkedUploadNeeded { .. } => true,
            RegistryError::Status { status, .. } => is_retry_status(*status),
            _ => false,
        }
    }
}

fn is_retry_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status) && status != 501
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
    /// Set when the host asked us to slow down (429/503): every request to it waits until then.
    pause_until: Mutex<Option<Instant>>,
    /// Set when the host refused a monolithic upload `PUT`: uploads then send their bytes in a `PATCH`
    /// and finish with an empty `PUT`.
    chunked_uploads: std::sync::atomic::AtomicBool,
    /// Fallback to plain HTTP allowed (insecure or loopback host).
    http_fallback: bool,
}

impl Host {
    /// A request slot for this host, after any pause the host asked for.
    async fn slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, RegistryError> {
        loop {
            let until = *self.pause_until.lock().unwrap_or_else(|e| e.into_inner());
            match until {
                Some(t) if t > Instant::now() => tokio::time::sleep_until(t.into()).await,
                _ => break,
            }
        }
        self.limit
            .acquire()
            .await
            .map_err(|_| RegistryError::Config(format!("{}: request limit closed", self.name)))
    }

    /// Makes every request to this host wait `wait` (regclient-style shared backoff).
    fn pause(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut p = self.pause_until.lock().unwrap_or_else(|e| e.into_inner());
        if p.is_none_or(|t| t < until) {
            *p = Some(until);
        }
    }
}

struct Inner {
    opts: ClientOptions,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
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

fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(d) = retry_after {
        return d.min(MAX_RETRY_AFTER);
    }
    let base = BASE_BACKOFF.saturating_mul(1 << attempt.min(10)).min(MAX_BACKOFF);
    // ±20 % jitter so parallel tasks do not retry in lock-step.
    let jitter = 0.8 + fastrand::f64() * 0.4;
    base.mul_f64(jitter)
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
            pause_until: Mutex::new(None),
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
                let mut attempt = 0;
                loop {
                    match self.probe(host).await {
                        Err(e) if e.is_transient() && attempt + 1 < MAX_ATTEMPTS => {
                            tokio::time::sleep(backoff(attempt, None)).await;
                            attempt += 1;
                        }
                        other => return other,
                    }
                }
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
        let mut attempt = 0;
        let resp = loop {
            let req = match &cred {
                Some(Credential::IdentityToken(refresh)) => {
                    let mut body = format!(
                        "grant_type=refresh_token&client_id=kubectl-kkp&refresh_token={}",
                        encode(refresh)
                    );
                    if let Some(s) = service {
                        body.push_str(&format!("&service={}", encode(s)));
                    }
                    body.push_str(&format!("&scope={}", encode(&key)));
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
            match req.send().await {
                Ok(r) if is_retry_status(r.status().as_u16()) && attempt + 1 < MAX_ATTEMPTS => {
                    tokio::time::sleep(backoff(attempt, retry_after(r.headers()))).await;
                }
                Ok(r) => break r,
                Err(e) if attempt + 1 < MAX_ATTEMPTS => {
                    tracing::debug!(%what, error = %flatten(&e), "retrying");
                    tokio::time::sleep(backoff(attempt, None)).await;
                }
                Err(e) => {
                    return Err(RegistryError::Transport {
                        what,
                        detail: flatten(&e),
                    });
                }
            }
            attempt += 1;
        };
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(RegistryError::Unauthorized {
                host: host.name.clone(),
                user: cred.as_ref().map(|c| c.username().to_string()),
                detail: body_text(resp).await,
            });
        }
        if !status.is_success() {
            return Err(RegistryError::Status {
                what,
                status: status.as_u16(),
                detail: body_text(resp).await,
            });
        }
        let body: TokenResponse = resp.json().await.map_err(|e| RegistryError::Transport {
            what: what.clone(),
            detail: flatten(&e),
        })?;
        let token = body
            .token
            .or(body.access_token)
            .ok_or_else(|| RegistryError::Status {
                what,
                status: status.as_u16(),
                detail: "the answer holds no token".into(),
            })?;
        // Renew a little early; registries default to 60 s.
        let ttl = Duration::from_secs(body.expires_in.unwrap_or(60).max(10)) - Duration::from_secs(5);
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

    /// Sends a request with auth, the host limit and retries. `build` makes a fresh request per attempt
    /// from the base URL (`https://host`), so bodies must be cheap to clone.
    async fn send(
        &self,
        repo: &Repository,
        access: Access,
        extra_pull: Option<&str>,
        what: &str,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryError> {
        let host = self.host(&repo.host)?;
        let endpoint = self.endpoint(&host).await?;
        let mut scopes = Self::scopes(repo, access, extra_pull);
        // Token refreshes left for this request: the challenge may widen the scope set, and the new set's
        // first token can still be short of what the registry wants (concurrent requests race here).
        let mut refreshes_left = 2u8;
        let mut fresh = false;
        let mut attempt = 0;
        loop {
            let auth = self.authorization(&host, &endpoint, &scopes, fresh).await?;
            fresh = false;
            let result = {
                let _permit = host.slot().await?;
                let mut req = build(&host.http, &endpoint.base);
                if let Some(a) = &auth {
                    req = req.header(AUTHORIZATION, a);
                }
                req.send().await
            };
            match result {
                Err(e) => {
                    if attempt + 1 >= MAX_ATTEMPTS {
                        return Err(RegistryError::Transport {
                            what: what.to_string(),
                            detail: flatten(&e),
                        });
                    }
                    tracing::debug!(%what, error = %flatten(&e), attempt, "retrying");
                    tokio::time::sleep(backoff(attempt, None)).await;
                }
                Ok(resp) => {
                    let status = resp.status();
                    if status == StatusCode::UNAUTHORIZED {
                        let challenge =
                            header(resp.headers(), "www-authenticate").map(|h| parse_challenge(&h));
                        if let (true, Some(Challenge::Bearer { scope, .. })) =
                            (refreshes_left > 0, &challenge)
                        {
                            // Expired token or insufficient scope: fetch a new one with every scope asked.
                            if let Some(s) = scope {
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
                        let cred = self.credential(&host).await;
                        return Err(RegistryError::Unauthorized {
                            host: host.name.clone(),
                            user: cred.map(|c| c.username().to_string()),
                            detail: body_text(resp).await,
                        });
                    }
                    if is_retry_status(status.as_u16()) && attempt + 1 < MAX_ATTEMPTS {
                        let wait = backoff(attempt, retry_after(resp.headers()));
                        if status == StatusCode::TOO_MANY_REQUESTS
                            || status == StatusCode::SERVICE_UNAVAILABLE
                        {
                            host.pause(wait);
                        }
                        tracing::debug!(%what, %status, ?wait, "retrying");
                        tokio::time::sleep(wait).await;
                    } else if status == StatusCode::FORBIDDEN {
                        return Err(RegistryError::Denied {
                            what: what.to_string(),
                            detail: body_text(resp).await,
                        });
                    } else {
                        return Ok(resp);
                    }
                }
            }
            attempt += 1;
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

    /// Checks that the registry answers and the credentials work, for pulling from `repo`.
    pub async fn ping(&self, repo: &Repository, push: bool) -> Result<(), RegistryError> {
        let host = self.host(&repo.host)?;
        let endpoint = self.endpoint(&host).await?;
        let access = if push { Access::Push } else { Access::Pull };
        let scopes = Self::scopes(repo, access, None);
        let auth = self.authorization(&host, &endpoint, &scopes, false).await?;
        let mut req = host.http.get(format!("{}/v2/", endpoint.base));
        if let Some(a) = &auth {
            req = req.header(AUTHORIZATION, a);
        }
        let what = format!("GET {}/v2/", repo.host);
        let resp = req.send().await.map_err(|e| RegistryError::Transport {
            what: what.clone(),
            detail: flatten(&e),
        })?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            StatusCode::UNAUTHORIZED => Err(RegistryError::Unauthorized {
                host: repo.host.clone(),
                user: self.credential(&host).await.map(|c| c.username().to_string()),
                detail: body_text(resp).await,
            }),
            _ => Err(Self::unexpected(&what, resp).await),
        }
    }

    /// `HEAD` a manifest; `None` when it does not exist.
    pub async fn head_manifest(
        &self,
        repo: &Repository,
        reference: &str,
    ) -> Result<Option<ManifestInfo>, RegistryError> {
        let what = format!("manifest {repo}:{reference}");
        let url = format!("/v2/{}/manifests/{reference}", repo.path);
        let resp = self
            .send(repo, Access::Pull, None, &what, |c, base| {
                c.head(format!("{base}{url}")).header(ACCEPT, manifest::ACCEPT)
            })
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                let h = resp.headers();
                let digest = header(h, "docker-content-digest");
                let media_type = header(h, CONTENT_TYPE.as_str()).unwrap_or_default();
                let size = header(h, CONTENT_LENGTH.as_str())
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                match digest {
                    Some(digest) => Ok(Some(ManifestInfo {
                        digest,
                        media_type,
                        size,
                    })),
                    // No digest header: fall back to reading it.
                    None => {
                        let m = self.get_manifest(repo, reference).await?;
                        Ok(Some(ManifestInfo {
                            digest: m.digest,
                            media_type: m.media_type,
                            size: m.bytes.len() as u64,
                        }))
                    }
                }
            }
            _ => Err(Self::unexpected(&what, resp).await),
        }
    }

    /// `GET` a manifest's raw bytes, verifying them against the digest asked for or announced.
    pub async fn get_manifest(
        &self,
        repo: &Repository,
        reference: &str,
    ) -> Result<RawManifest, RegistryError> {
        let what = format!("manifest {repo}:{reference}");
        let url = format!("/v2/{}/manifests/{reference}", repo.path);
        let mut resp = self
            .send(repo, Access::Pull, None, &what, |c, base| {
                c.get(format!("{base}{url}")).header(ACCEPT, manifest::ACCEPT)
            })
            .await?;
        if !resp.status().is_success() {
            return Err(Self::unexpected(&what, resp).await);
        }
        let announced = header(resp.headers(), "docker-content-digest");
        let content_type = header(resp.headers(), CONTENT_TYPE.as_str());
        let too_big = |what: String| RegistryError::BadManifest {
            what,
            detail: format!(
                "larger than {} bytes (4 MiB, the most registries accept); refused",
                manifest::MAX_MANIFEST_BYTES
            ),
        };
        if resp
            .content_length()
            .is_some_and(|n| n > manifest::MAX_MANIFEST_BYTES as u64)
        {
            return Err(too_big(what));
        }
        let mut buf = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| RegistryError::Transport {
            what: what.clone(),
            detail: flatten(&e),
        })? {
            if buf.len() + chunk.len() > manifest::MAX_MANIFEST_BYTES {
                return Err(too_big(what));
            }
            buf.extend_from_slice(&chunk);
        }
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
                what,
                expected,
                actual: digest,
            });
        }
        let view = manifest::ManifestView::parse(&buf).map_err(|e| RegistryError::BadManifest {
            what: what.clone(),
            detail: format!("not a manifest: {e}"),
        })?;
        Ok(RawManifest {
            media_type: view.effective_media_type(content_type.as_deref()),
            bytes: Bytes::from(buf),
            digest,
        })
    }

    /// `PUT` raw manifest bytes under `reference` (tag or digest); returns the digest the registry reports.
    pub async fn put_manifest(
        &self,
        repo: &Repository,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<String, RegistryError> {
        let what = format!("pushing manifest {repo}:{reference}");
        let url = format!("/v2/{}/manifests/{reference}", repo.path);
        let resp = self
            .send(repo, Access::Push, None, &what, |c, base| {
                c.put(format!("{base}{url}"))
                    .header(CONTENT_TYPE, media_type)
                    .body(bytes.clone())
            })
            .await?;
        if resp.status() != StatusCode::CREATED && !resp.status().is_success() {
            return Err(Self::unexpected(&what, resp).await);
        }
        Ok(header(resp.headers(), "docker-content-digest").unwrap_or_else(|| sha256_digest(&bytes)))
    }

    /// `HEAD` a blob: does `repo` hold it?
    pub async fn blob_exists(&self, repo: &Repository, digest: &str) -> Result<bool, RegistryError> {
        let what = format!("blob {repo}@{digest}");
        let url = format!("/v2/{}/blobs/{digest}", repo.path);
        let resp = self
            .send(repo, Access::Pull, None, &what, |c, base| {
                c.head(format!("{base}{url}"))
            })
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(false),
            s if s.is_success() => Ok(true),
            _ => Err(Self::unexpected(&what, resp).await),
        }
    }

    /// `GET` a blob; the caller streams the body (`Response::bytes_stream`) and must verify it.
    pub async fn get_blob(
        &self,
        repo: &Repository,
        digest: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        let what = format!("blob {repo}@{digest}");
        let url = format!("/v2/{}/blobs/{digest}", repo.path);
        let resp = self
            .send(repo, Access::Pull, None, &what, |c, base| {
                c.get(format!("{base}{url}"))
            })
            .await?;
        if !resp.status().is_success() {
            return Err(Self::unexpected(&what, resp).await);
        }
        Ok(resp)
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
        let resp = self
            .send(repo, Access::Push, Some(from), &what, |c, base| {
                c.post(format!("{base}{url}")).header(CONTENT_LENGTH, "0")
            })
            .await?;
        let base = self.base(repo).await?;
        match resp.status() {
            StatusCode::CREATED => Ok(Mount::Mounted),
            StatusCode::ACCEPTED => Ok(Mount::Upload(Self::location(&base, &resp, &what)?)),
            _ => Err(Self::unexpected(&what, resp).await),
        }
    }

    /// Opens an upload session in `repo`; returns its location.
    pub async fn start_upload(&self, repo: &Repository) -> Result<String, RegistryError> {
        let what = format!("starting upload to {repo}");
        let url = format!("/v2/{}/blobs/uploads/", repo.path);
        let resp = self
            .send(repo, Access::Push, None, &what, |c, base| {
                c.post(format!("{base}{url}")).header(CONTENT_LENGTH, "0")
            })
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(Self::unexpected(&what, resp).await);
        }
        let base = self.base(repo).await?;
        Self::location(&base, &resp, &what)
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
        Ok(resp)
    }

    /// Uploads a blob held in memory (small blobs, tests); skips it when `repo` has it already.
    pub async fn push_blob(&self, repo: &Repository, data: Bytes) -> Result<String, RegistryError> {
        let digest = sha256_digest(&data);
        if self.blob_exists(repo, &digest).await? {
            return Ok(digest);
        }
        let mut attempt = 0;
        loop {
            let location = self.start_upload(repo).await?;
            match self
                .finish_upload(repo, &location, &digest, data.len() as u64, data.clone().into())
                .await
            {
                Err(e) if e.is_transient() && attempt + 1 < MAX_ATTEMPTS => {
                    tokio::time::sleep(backoff(attempt, None)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
                Ok(()) => return Ok(digest),
            }
        }
    }
}

/// Delay before retry number `attempt` (0-based) of a whole operation, for callers that retry above the
/// request level (a streamed blob).
pub fn retry_delay(attempt: u32) -> Duration {
    backoff(attempt, None)
}

/// Attempts a caller should make for a whole operation.
pub const OPERATION_ATTEMPTS: u32 = MAX_ATTEMPTS;

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

    #[test]
    fn retry_statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(is_retry_status(s), "{s}");
        }
        for s in [400, 401, 403, 404, 501] {
            assert!(!is_retry_status(s), "{s}");
        }
    }

    #[test]
    fn backoff_grows_and_honours_retry_after() {
        assert!(backoff(0, None) <= Duration::from_millis(600));
        assert!(backoff(3, None) >= Duration::from_millis(3200));
        assert!(backoff(20, None) <= MAX_BACKOFF.mul_f64(1.2));
        assert_eq!(backoff(0, Some(Duration::from_secs(7))), Duration::from_secs(7));
        assert_eq!(backoff(0, Some(Duration::from_secs(9999))), MAX_RETRY_AFTER);
    }
}
