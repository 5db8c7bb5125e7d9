//! A loopback Kubernetes API server for tests: the semantics the plugins (and `kubectl` itself) rely on.
//!
//! Plain HTTP/1.1 (or HTTPS with a fresh CA) on 127.0.0.1 (random port), one thread per connection,
//! bearer-token auth. A store of arbitrary resources: register a [`Resource`] (group/version/plural, kind,
//! namespaced or cluster-scoped; the well-known ones register themselves on first [`ApiServer::put`]) and
//! it is served with discovery (`/api`, `/api/v1`, `/apis`, `/apis/<group>`, `/apis/<group>/<version>`,
//! `/version`) so real `kubectl` can talk to it; GET, LIST per namespace and across all namespaces with
//! `limit`/`continue` pagination (each page costs O(log n + limit)); merge and JSON patches with
//! resourceVersion preconditions (409); `dryRun=All` (validates, persists nothing); `fieldValidation=Strict`
//! against a small schema of the Seed node fields (unknown keys → 400 like the real strict decoder; without
//! Strict they are pruned); RBAC denials per verb, resource and namespace; and 401/403/404 Status bodies
//! worded like the real server's. Lives in the test tree only; no plugin ships it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde_json::{Map, Value, json};

const KKP: &str = "kubermatic.k8c.io";

/// Whether the objects of a resource live in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `…/namespaces/<ns>/<plural>/<name>`.
    Namespaced,
    /// `…/<plural>/<name>`.
    Cluster,
}

/// A resource type the server serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// API group; empty for the core group.
    pub group: String,
    /// Version, e.g. `v1`.
    pub version: String,
    /// Plural name in URLs, e.g. `pods`.
    pub plural: String,
    /// Kind of its objects, e.g. `Pod`.
    pub kind: String,
    /// Namespaced or cluster-scoped.
    pub scope: Scope,
}

/// Resources that register themselves when an object of their kind is put: (apiVersion, plural, kind, scope).
const WELL_KNOWN: &[(&str, &str, &str, Scope)] = &[
    ("v1", "namespaces", "Namespace", Scope::Cluster),
    ("v1", "nodes", "Node", Scope::Cluster),
    ("v1", "pods", "Pod", Scope::Namespaced),
    ("v1", "secrets", "Secret", Scope::Namespaced),
    ("v1", "configmaps", "ConfigMap", Scope::Namespaced),
    ("v1", "services", "Service", Scope::Namespaced),
    ("v1", "serviceaccounts", "ServiceAccount", Scope::Namespaced),
    ("v1", "events", "Event", Scope::Namespaced),
    ("apps/v1", "deployments", "Deployment", Scope::Namespaced),
    ("apps/v1", "statefulsets", "StatefulSet", Scope::Namespaced),
    ("apps/v1", "daemonsets", "DaemonSet", Scope::Namespaced),
    ("apps/v1", "replicasets", "ReplicaSet", Scope::Namespaced),
    ("batch/v1", "jobs", "Job", Scope::Namespaced),
    ("batch/v1", "cronjobs", "CronJob", Scope::Namespaced),
    ("kubermatic.k8c.io/v1", "seeds", "Seed", Scope::Namespaced),
    (
        "kubermatic.k8c.io/v1",
        "kubermaticconfigurations",
        "KubermaticConfiguration",
        Scope::Namespaced,
    ),
    ("kubermatic.k8c.io/v1", "clusters", "Cluster", Scope::Cluster),
];

impl Resource {
    /// A resource of `api_version` (`v1`, `apps/v1`, `kubermatic.k8c.io/v1`).
    pub fn new(api_version: &str, plural: &str, kind: &str, scope: Scope) -> Resource {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        Resource {
            group: group.to_string(),
            version: version.to_string(),
            plural: plural.to_string(),
            kind: kind.to_string(),
            scope,
        }
    }

    /// One of the well-known resources by plural (`pods`, `deployments`, `seeds`, `clusters`, …).
    pub fn well_known(plural: &str) -> Resource {
        let (av, p, k, s) = WELL_KNOWN
            .iter()
            .find(|(_, p, _, _)| *p == plural)
            .unwrap_or_else(|| panic!("{plural} is not a well-known resource; register it"));
        Resource::new(av, p, k, *s)
    }

    /// Seeds (kubermatic.k8c.io/v1, namespaced).
    pub fn seeds() -> Resource {
        Resource::well_known("seeds")
    }

    /// KubermaticConfigurations (kubermatic.k8c.io/v1, namespaced).
    pub fn configurations() -> Resource {
        Resource::well_known("kubermaticconfigurations")
    }

    /// `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods` or `seeds.kubermatic.k8c.io`, as the server names a resource in its messages.
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    fn key(&self) -> String {
        format!("{}/{}", self.api_version(), self.plural)
    }

    fn namespaced(&self) -> bool {
        self.scope == Scope::Namespaced
    }

    fn is_seeds(&self) -> bool {
        self.group == KKP && self.plural == "seeds"
    }
}

/// Keys the Seed CRD schema allows under `spec.datacenters.<dc>.node`.
const NODE_FIELDS: &[&str] = &[
    "httpProxy",
    "noProxy",
    "insecureRegistries",
    "registryMirrors",
    "pauseImage",
    "containerdRegistryMirrors",
    "enableNonRootDeviceOwnership",
];
/// Keys allowed under `spec.proxySettings`.
const PROXY_FIELDS: &[&str] = &["httpProxy", "noProxy"];

type Hook = Box<dyn FnOnce(&mut Value) + Send>;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Content-Type header, if any.
    pub content_type: Option<String>,
    /// Body, parsed as JSON when it is.
    pub body: Option<Value>,
}

/// One RBAC denial: `verb` on `plural` (any resource when `None`) in `namespace` (anywhere when `None`;
/// `Some("")` is the cluster scope: cluster-scoped resources and lists across all namespaces).
struct Deny {
    verb: String,
    plural: Option<String>,
    namespace: Option<String>,
}

#[derive(Default)]
struct State {
    /// Registered resources, in registration order (discovery lists them so).
    resources: Vec<Resource>,
    /// (resource key, namespace or "" for cluster-scoped, name) → object. Ordered, so a namespace's
    /// objects (and a resource's across namespaces) are one range.
    objects: BTreeMap<(String, String, String), Value>,
    rv: u64,
    token: String,
    denied: Vec<Deny>,
    /// Runs once, on the stored object, just before the next persisting PATCH (a concurrent writer).
    before_patch: Option<Hook>,
    seen: Vec<Seen>,
}

impl State {
    fn register(&mut self, r: Resource) {
        if let Some(old) = self
            .resources
            .iter()
            .find(|o| o.group == r.group && o.version == r.version && o.plural == r.plural)
        {
            assert_eq!(*old, r, "{} registered twice, differently", r.qualified());
            return;
        }
        self.resources.push(r);
    }

    fn resource(&self, group: &str, version: &str, plural: &str) -> Option<Resource> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
            .cloned()
    }

    /// The registered resource of an object's apiVersion and kind, registering a well-known one.
    fn resource_of(&mut self, obj: &Value) -> Resource {
        let av = obj["apiVersion"].as_str().expect("object has apiVersion");
        let kind = obj["kind"].as_str().expect("object has kind");
        if let Some(r) = self
            .resources
            .iter()
            .find(|r| r.api_version() == av && r.kind == kind)
        {
            return r.clone();
        }
        let (_, p, _, s) = WELL_KNOWN
            .iter()
            .find(|(a, _, k, _)| *a == av && *k == kind)
            .unwrap_or_else(|| panic!("{av} {kind} is not registered"));
        let r = Resource::new(av, p, kind, *s);
        self.register(r.clone());
        r
    }

    fn put(&mut self, mut obj: Value) {
        let r = self.resource_of(&obj);
        let name = obj["metadata"]["name"]
            .as_str()
            .expect("object has metadata.name")
            .to_string();
        let ns = if r.namespaced() {
            obj["metadata"]["namespace"]
                .as_str()
                .unwrap_or_else(|| panic!("{} {name} has no metadata.namespace", r.kind))
                .to_string()
        } else {
            String::new()
        };
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let meta = obj["metadata"].as_object_mut().unwrap();
        let uid = if ns.is_empty() {
            format!("uid-{name}")
        } else {
            format!("uid-{ns}-{name}")
        };
        meta.entry("uid").or_insert(json!(uid));
        meta.entry("creationTimestamp")
            .or_insert(json!("2026-01-01T00:00:00Z"));
        self.objects.insert((r.key(), ns, name), obj);
    }

    fn denies(&self, verb: &str, r: &Resource, ns: Option<&str>) -> bool {
        self.denied.iter().any(|d| {
            d.verb == verb
                && d.plural.as_ref().is_none_or(|p| *p == r.plural)
                && d.namespace.as_deref().is_none_or(|n| n == ns.unwrap_or(""))
        })
    }
}

/// The running server; stops when dropped.
pub struct ApiServer {
    addr: SocketAddr,
    /// CA certificate (PEM file) for HTTPS servers; kubectl sends tokens only over TLS.
    ca: Option<PathBuf>,
    _tls_dir: Option<tempfile::TempDir>,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl ApiServer {
    /// Starts plain HTTP on a random loopback port; requests must carry `Authorization: Bearer <token>`.
    /// Seeds and KubermaticConfigurations are registered from the start.
    pub fn start(token: &str) -> ApiServer {
        ApiServer::spawn(token, None)
    }

    /// Starts HTTPS (a fresh CA and a certificate for 127.0.0.1, made with `openssl`).
    pub fn start_tls(token: &str) -> ApiServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = make_tls(dir.path());
        let mut server = ApiServer::spawn(token, Some(tls));
        server.ca = Some(dir.path().join("ca.pem"));
        server._tls_dir = Some(dir);
        server
    }

    fn spawn(token: &str, tls: Option<Arc<rustls::ServerConfig>>) -> ApiServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let mut state = State {
            token: token.to_string(),
            rv: 1000,
            ..State::default()
        };
        state.register(Resource::seeds());
        state.register(Resource::configurations());
        let state = Arc::new(Mutex::new(state));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                let tls = tls.clone();
                std::thread::spawn(move || match tls {
                    None => serve_connection(conn, st),
                    Some(cfg) => {
                        let Ok(session) = rustls::ServerConnection::new(cfg) else {
                            return;
                        };
                        serve_connection(rustls::StreamOwned::new(session, conn), st)
                    }
                });
            }
        });
        ApiServer {
            addr,
            ca: None,
            _tls_dir: None,
            state,
            stop,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:PORT`, or `https://…` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Serves `resource` (with discovery) from now on. Registering the same resource again is a no-op.
    pub fn register(&self, resource: Resource) {
        self.state.lock().unwrap().register(resource);
    }

    /// Stores an object (its resource found by apiVersion and kind; well-known ones register themselves;
    /// namespace and name from its metadata), giving it a fresh resourceVersion, a uid and a
    /// creationTimestamp unless it has them.
    pub fn put(&self, obj: Value) {
        self.state.lock().unwrap().put(obj);
    }

    /// Stores many objects under one lock (thousands of Pods for a benchmark).
    pub fn put_all(&self, objs: impl IntoIterator<Item = Value>) {
        let mut st = self.state.lock().unwrap();
        for obj in objs {
            st.put(obj);
        }
    }

    /// The stored object of `resource` (namespace ignored for cluster-scoped ones), if any.
    pub fn get(&self, resource: &Resource, namespace: &str, name: &str) -> Option<Value> {
        let ns = if resource.namespaced() { namespace } else { "" };
        self.state
            .lock()
            .unwrap()
            .objects
            .get(&(resource.key(), ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Stores an Opaque core/v1 Secret whose `data` holds `data` base64-encoded.
    pub fn put_secret(&self, namespace: &str, name: &str, data: &[(&str, &[u8])]) {
        use base64::Engine as _;
        let data: Map<String, Value> = data
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    json!(base64::engine::general_purpose::STANDARD.encode(v)),
                )
            })
            .collect();
        self.put(json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"namespace": namespace, "name": name},
            "data": data,
        }));
    }

    /// Stores a Seed (metadata.namespace/name taken from it), giving it a fresh resourceVersion.
    pub fn put_seed(&self, seed: Value) {
        self.put(with_type(seed, "Seed"));
    }

    /// The stored Seed, if any.
    pub fn seed(&self, namespace: &str, name: &str) -> Option<Value> {
        self.get(&Resource::seeds(), namespace, name)
    }

    /// Stores a KubermaticConfiguration, giving it a fresh resourceVersion.
    pub fn put_kkp(&self, config: Value) {
        self.put(with_type(config, "KubermaticConfiguration"));
    }

    /// The stored KubermaticConfiguration, if any.
    pub fn kkp(&self, namespace: &str, name: &str) -> Option<Value> {
        self.get(&Resource::configurations(), namespace, name)
    }

    /// RBAC denies `verb` (`get`, `list`, `patch`) on every resource from now on.
    pub fn forbid(&self, verb: &str) {
        self.deny(verb, None, None);
    }

    /// RBAC denies `verb` on the resource `plural` in `namespace` (everywhere when `None`; `Some("")` is
    /// the cluster scope: cluster-scoped objects and lists across all namespaces) from now on.
    pub fn forbid_on(&self, plural: &str, verb: &str, namespace: Option<&str>) {
        self.deny(verb, Some(plural), namespace);
    }

    fn deny(&self, verb: &str, plural: Option<&str>, namespace: Option<&str>) {
        self.state.lock().unwrap().denied.push(Deny {
            verb: verb.to_string(),
            plural: plural.map(str::to_string),
            namespace: namespace.map(str::to_string),
        });
    }

    /// Changes the stored object right before the next non-dry-run PATCH is handled, as another writer
    /// would between a client's read (and dry run) and its write.
    pub fn before_next_write(&self, hook: impl FnOnce(&mut Value) + Send + 'static) {
        self.state.lock().unwrap().before_patch = Some(Box::new(hook));
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Writes a kubeconfig for this server into `dir` and returns its path.
    pub fn kubeconfig(&self, dir: &Path, token: &str) -> PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(&path, self.kubeconfig_text(token)).expect("write kubeconfig");
        path
    }

    /// The text of a kubeconfig for this server (context `test`, namespace `default`), e.g. for a Secret.
    pub fn kubeconfig_text(&self, token: &str) -> String {
        let ca = match &self.ca {
            Some(ca) => format!("    certificate-authority: {}\n", ca.display()),
            None => String::new(),
        };
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n{ca}    server: {}\n\
             users:\n- name: tester\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context:\n    \
             cluster: test\n    user: tester\n    namespace: default\ncurrent-context: test\n",
            self.url()
        )
    }
}

/// Fills in apiVersion and kind for the KKP helpers, whose callers may leave them out.
fn with_type(mut obj: Value, kind: &str) -> Value {
    let m = obj.as_object_mut().expect("object");
    m.entry("apiVersion").or_insert(json!(format!("{KKP}/v1")));
    m.entry("kind").or_insert(json!(kind));
    obj
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A CA and a server certificate for 127.0.0.1 (CA:FALSE, serverAuth), as rustls and Go both accept.
fn make_tls(dir: &Path) -> Arc<rustls::ServerConfig> {
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"],
            &ec[..],
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=kkp-test-ca",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"],
            &ec[..],
            &["-keyout", "tls.key", "-out", "tls.csr", "-subj", "/CN=127.0.0.1"],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write ext.cnf");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "tls.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "tls.pem",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
    ]);
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(dir.join("tls.pem"))
        .expect("tls.pem")
        .collect::<Result<Vec<_>, _>>()
        .expect("certificates");
    let key = PrivateKeyDer::from_pem_file(dir.join("tls.key")).expect("tls.key");
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server certificate");
    Arc::new(config)
}

fn read_request<S: Read>(r: &mut BufReader<S>) -> Option<Request> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut req = Request {
        method,
        target,
        headers,
        body: Vec::new(),
    };
    if req
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            req.body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = req.header("content-length").and_then(|v| v.parse().ok()) {
        let mut body = vec![0; n];
        r.read_exact(&mut body).ok()?;
        req.body = body;
    }
    Some(req)
}

fn serve_connection<S: Read + Write>(conn: S, state: Arc<Mutex<State>>) {
    let mut reader = BufReader::new(conn);
    while let Some(req) = read_request(&mut reader) {
        let writer = reader.get_mut();
        let (code, body) = handle(&req, &state);
        let reason = match code {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            409 => "Conflict",
            415 => "Unsupported Media Type",
            422 => "Unprocessable Entity",
            _ => "Internal Server Error",
        };
        let body = body.to_string();
        let head = format!(
            "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        if writer.write_all(head.as_bytes()).is_err()
            || writer.write_all(body.as_bytes()).is_err()
            || writer.flush().is_err()
        {
            return;
        }
    }
}

fn status(code: u16, reason: &str, message: &str, details: Option<Value>) -> (u16, Value) {
    let mut s = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some(d) = details {
        s["details"] = d;
    }
    (code, s)
}

fn no_route() -> (u16, Value) {
    status(
        404,
        "NotFound",
        "the server could not find the requested resource",
        None,
    )
}

/// kubectl's short names of the built-in resources (`kubectl get deploy`).
fn short_names(r: &Resource) -> &'static [&'static str] {
    let core = r.group.is_empty() || r.group == "apps" || r.group == "batch";
    match r.plural.as_str() {
        "namespaces" if core => &["ns"],
        "nodes" if core => &["no"],
        "pods" if core => &["po"],
        "configmaps" if core => &["cm"],
        "services" if core => &["svc"],
        "serviceaccounts" if core => &["sa"],
        "events" if core => &["ev"],
        "deployments" if core => &["deploy"],
        "statefulsets" if core => &["sts"],
        "daemonsets" if core => &["ds"],
        "replicasets" if core => &["rs"],
        "cronjobs" if core => &["cj"],
        _ => &[],
    }
}

fn discovery_entry(r: &Resource) -> Value {
    let mut e = json!({"name": r.plural, "singularName": r.kind.to_lowercase(), "namespaced": r.namespaced(),
                       "kind": r.kind, "verbs": ["get", "list", "patch", "update"]});
    if !short_names(r).is_empty() {
        e["shortNames"] = json!(short_names(r));
    }
    e
}

/// `/apis`: every registered group with its versions, the first registered one preferred.
fn group_list(st: &State) -> Value {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for r in st.resources.iter().filter(|r| !r.group.is_empty()) {
        match groups.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, vs)) if !vs.contains(&r.version) => vs.push(r.version.clone()),
            Some(_) => {}
            None => groups.push((r.group.clone(), vec![r.version.clone()])),
        }
    }
    let groups: Vec<Value> = groups.iter().map(|(g, vs)| group(g, vs)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn group(g: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    json!({"kind": "APIGroup", "apiVersion": "v1", "name": g, "versions": vs,
           "preferredVersion": vs[0]})
}

fn resource_list(st: &State, group: &str, version: &str) -> Option<Value> {
    let resources: Vec<Value> = st
        .resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .map(discovery_entry)
        .collect();
    if resources.is_empty() && !group.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}

fn handle(req: &Request, state: &Mutex<State>) -> (u16, Value) {
    let mut st = state.lock().unwrap();
    let body = serde_json::from_slice(&req.body).ok();
    st.seen.push(Seen {
        method: req.method.clone(),
        target: req.target.clone(),
        content_type: req.header("content-type").map(str::to_string),
        body,
    });
    let want = format!("Bearer {}", st.token);
    // Like a real server, /version is public (system:public-info-viewer); kubectl probes it unauthenticated.
    let public = req.method == "GET" && req.target.split('?').next() == Some("/version");
    if !public && req.header("authorization") != Some(want.as_str()) {
        return status(401, "Unauthorized", "Unauthorized", None);
    }
    let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
    let query: Vec<(&str, &str)> = query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        .collect();
    let q = |k: &str| query.iter().find(|(qk, _)| *qk == k).map(|(_, v)| *v);
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let get = req.method == "GET";
    let (group, version, rest) = match segs.as_slice() {
        ["version"] if get => {
            return (
                200,
                json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0", "platform": "linux/amd64"}),
            );
        }
        ["api"] if get => {
            return (
                200,
                json!({"kind": "APIVersions", "versions": ["v1"],
                       "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
            );
        }
        ["apis"] if get => return (200, group_list(&st)),
        ["apis", g] if get => {
            let versions: Vec<String> = st
                .resources
                .iter()
                .filter(|r| r.group == *g)
                .map(|r| r.version.clone())
                .fold(Vec::new(), |mut vs, v| {
                    if !vs.contains(&v) {
                        vs.push(v);
                    }
                    vs
                });
            if versions.is_empty() {
                return no_route();
            }
            return (200, group(g, &versions));
        }
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return no_route(),
    };
    // `…/namespaces/<ns>/<plural>[/<name>]` or `…/<plural>[/<name>]` (`/api/v1/namespaces/<ns>` is a GET
    // of the Namespace object, the second form).
    let (ns, plural, name) = match rest {
        [] if get => {
            return match resource_list(&st, group, version) {
                Some(list) => (200, list),
                None => no_route(),
            };
        }
        ["namespaces", ns, plural] => (Some(*ns), *plural, None),
        ["namespaces", ns, plural, name] => (Some(*ns), *plural, Some(*name)),
        [plural] => (None, *plural, None),
        [plural, name] => (None, *plural, Some(*name)),
        _ => return no_route(),
    };
    let Some(r) = st.resource(group, version, plural) else {
        return no_route();
    };
    if ns.is_some() != r.namespaced() && (name.is_some() || ns.is_some()) {
        return no_route();
    }
    let verb = match (req.method.as_str(), name) {
        ("GET", None) => "list",
        ("GET", Some(_)) => "get",
        ("PATCH", Some(_)) => "patch",
        _ => {
            return status(
                405,
                "MethodNotAllowed",
                "the server does not allow this method",
                None,
            );
        }
    };
    if st.denies(verb, &r, ns) {
        return forbidden(&r, verb, ns, name);
    }
    let ns_key = ns.unwrap_or("").to_string();
    match (verb, name) {
        ("list", _) => {
            let limit = match q("limit").map(str::parse::<usize>) {
                None | Some(Ok(0)) => None,
                Some(Ok(n)) => Some(n),
                Some(Err(_)) => return status(400, "BadRequest", "limit must be a number", None),
            };
            list(&st, &r, ns, limit, q("continue").filter(|c| !c.is_empty()))
        }
        ("get", Some(name)) => match st.objects.get(&(r.key(), ns_key, name.to_string())) {
            Some(v) => (200, v.clone()),
            None => not_found(&r, name),
        },
        (_, Some(name)) => {
            let dry_run = q("dryRun") == Some("All");
            let strict = q("fieldValidation") == Some("Strict");
            patch(&mut st, (&r, &ns_key, name), req, dry_run, strict)
        }
        _ => unreachable!(),
    }
}

/// A 403 worded like the real authorizer's: the resource, the verb and the namespace (or cluster scope).
fn forbidden(r: &Resource, verb: &str, ns: Option<&str>, name: Option<&str>) -> (u16, Value) {
    let what = match name {
        Some(n) => format!("{} \"{n}\" is forbidden", r.qualified()),
        None => format!("{} is forbidden", r.qualified()),
    };
    let scope = match ns {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    };
    status(
        403,
        "Forbidden",
        &format!(
            "{what}: User \"tester\" cannot {verb} resource \"{}\" in API group \"{}\" {scope}",
            r.plural, r.group
        ),
        Some(json!({"name": name.unwrap_or_default(), "group": r.group, "kind": r.plural})),
    )
}

/// One page of a LIST: the objects after the `continue` key, at most `limit` of them. The token is the
/// hex of the last returned (namespace, name), so a page costs a range seek, not a scan from the start.
fn list(
    st: &State,
    r: &Resource,
    ns: Option<&str>,
    limit: Option<usize>,
    cont: Option<&str>,
) -> (u16, Value) {
    let key = r.key();
    let start = match cont {
        None => Bound::Included((key.clone(), ns.unwrap_or("").to_string(), String::new())),
        Some(token) => {
            let Some((cns, cname)) = hex::decode(token)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.split_once('\0').map(|(a, b)| (a.to_string(), b.to_string())))
            else {
                return status(
                    400,
                    "BadRequest",
                    "continue key is not valid: the token could not be decoded",
                    None,
                );
            };
            Bound::Excluded((key.clone(), cns, cname))
        }
    };
    let mut items = Vec::new();
    let mut more = None;
    for ((k, ons, oname), obj) in st.objects.range((start, Bound::Unbounded)) {
        if *k != key || ns.is_some_and(|ns| ns != ons) {
            break;
        }
        if limit.is_some_and(|l| items.len() == l) {
            more = items
                .last()
                .map(|last: &(String, String, Value)| hex::encode(format!("{}\0{}", last.0, last.1)));
            break;
        }
        items.push((ons.clone(), oname.clone(), obj.clone()));
    }
    let items: Vec<Value> = items.into_iter().map(|(_, _, v)| v).collect();
    let mut meta = json!({"resourceVersion": st.rv.to_string()});
    if let Some(token) = more {
        meta["continue"] = json!(token);
    }
    (
        200,
        json!({"apiVersion": r.api_version(), "kind": format!("{}List", r.kind),
               "metadata": meta, "items": items}),
    )
}

fn not_found(r: &Resource, name: &str) -> (u16, Value) {
    status(
        404,
        "NotFound",
        &format!("{} \"{name}\" not found", r.qualified()),
        Some(json!({"name": name, "group": r.group, "kind": r.plural})),
    )
}

fn patch(
    st: &mut State,
    (r, ns, name): (&Resource, &str, &str),
    req: &Request,
    dry_run: bool,
    strict: bool,
) -> (u16, Value) {
    let key = (r.key(), ns.to_string(), name.to_string());
    if !dry_run
        && let Some(hook) = st.before_patch.take()
        && let Some(obj) = st.objects.get_mut(&key)
    {
        hook(obj);
        st.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(st.rv.to_string());
    }
    let Some(current) = st.objects.get(&key).cloned() else {
        return not_found(r, name);
    };
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return status(
            400,
            "BadRequest",
            "the body of the request was in an unknown format",
            None,
        );
    };
    let ct = req.header("content-type").unwrap_or_default();
    let mut new = current.clone();
    if ct.starts_with("application/merge-patch+json") {
        json_patch::merge(&mut new, &body);
    } else if ct.starts_with("application/json-patch+json") {
        let ops: json_patch::Patch = match serde_json::from_value(body) {
            Ok(p) => p,
            Err(e) => return status(400, "BadRequest", &e.to_string(), None),
        };
        if let Err(e) = json_patch::patch(&mut new, &ops) {
            // A failed `test` op is how clients express preconditions.
            return status(
                422,
                "Invalid",
                &format!("the server rejected our request due to an error in our request: {e}"),
                None,
            );
        }
    } else {
        return status(
            415,
            "UnsupportedMediaType",
            &format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json (got {ct:?})"
            ),
            None,
        );
    }
    // The resourceVersion a client sends is a precondition.
    if new["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
        return status(
            409,
            "Conflict",
            &format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                r.qualified()
            ),
            Some(json!({"name": name, "group": r.group, "kind": r.plural})),
        );
    }
    if new["metadata"]["name"] != current["metadata"]["name"] {
        return status(
            400,
            "BadRequest",
            "the name of the object does not match the name on the URL",
            None,
        );
    }
    // Only the Seed node fields have a schema here; other objects keep what they are sent.
    let unknown = if r.is_seeds() { prune(&mut new) } else { Vec::new() };
    if strict && !unknown.is_empty() {
        let list = unknown
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect::<Vec<_>>()
            .join(", ");
        return status(400, "BadRequest", &format!("strict decoding error: {list}"), None);
    }
    if let Some(err) = type_errors(&new) {
        return status(
            422,
            "Invalid",
            &format!("{}.{} \"{name}\" is invalid: {err}", r.kind, r.group),
            None,
        );
    }
    if new == current {
        return (200, new);
    }
    if let Some(spec_old) = current.get("spec")
        && new.get("spec") != Some(spec_old)
    {
        let g = new["metadata"]["generation"].as_i64().unwrap_or(1);
        new["metadata"]["generation"] = json!(g + 1);
    }
    if dry_run {
        return (200, new);
    }
    st.rv += 1;
    new["metadata"]["resourceVersion"] = json!(st.rv.to_string());
    st.objects.insert(key, new.clone());
    (200, new)
}

/// Drops keys the schema does not know (as a structural CRD prunes them) and returns their paths.
fn prune(obj: &mut Value) -> Vec<String> {
    let mut unknown = Vec::new();
    let mut prune_map = |m: &mut Map<String, Value>, allowed: &[&str], base: String| {
        let bad: Vec<String> = m
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .cloned()
            .collect();
        for k in bad {
            m.remove(&k);
            unknown.push(format!("{base}.{k}"));
        }
    };
    if let Some(ps) = obj
        .pointer_mut("/spec/proxySettings")
        .and_then(Value::as_object_mut)
    {
        prune_map(ps, PROXY_FIELDS, "spec.proxySettings".into());
    }
    if let Some(dcs) = obj
        .pointer_mut("/spec/datacenters")
        .and_then(Value::as_object_mut)
    {
        for (dc, d) in dcs.iter_mut() {
            if let Some(node) = d.get_mut("node").and_then(Value::as_object_mut) {
                prune_map(node, NODE_FIELDS, format!("spec.datacenters.{dc}.node"));
            }
        }
    }
    unknown
}

/// Type checks of the node schema (strings and string lists), as OpenAPI validation would do.
fn type_errors(obj: &Value) -> Option<String> {
    let dcs = obj.pointer("/spec/datacenters")?.as_object()?;
    for (dc, d) in dcs {
        let Some(node) = d.get("node") else { continue };
        for k in ["httpProxy", "noProxy", "pauseImage"] {
            if let Some(v) = node.get(k)
                && !v.is_string()
            {
                return Some(format!(
                    "spec.datacenters.{dc}.node.{k}: Invalid value: \"{}\": spec.datacenters.{dc}.node.{k} in body must be of type string",
                    v
                ));
            }
        }
        for k in ["insecureRegistries", "registryMirrors"] {
            if let Some(v) = node.get(k)
                && !v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
            {
                return Some(format!(
                    "spec.datacenters.{dc}.node.{k}: Invalid value: {v}: must be an array of strings"
                ));
            }
        }
    }
    None
}
