//! A loopback Kubernetes API server for tests: just the semantics `kubectl kkp seedproxy` and
//! `kubectl kkp retarget --live` rely on.
//!
//! Plain HTTP/1.1 on 127.0.0.1 (random port), one thread per connection, bearer-token auth. It serves
//! discovery (`/api`, `/apis`, `/apis/kubermatic.k8c.io/v1`, `/version`) so real `kubectl` can talk to it,
//! GET/LIST of namespaced Seeds and KubermaticConfigurations, merge and JSON patches with resourceVersion preconditions (409),
//! `dryRun=All` (validates, persists nothing), `fieldValidation=Strict` against a small schema of the
//! Seed node fields (unknown keys → 400 like the real strict decoder; without Strict they are pruned),
//! and 401/403/404 Status bodies. Lives in the test tree only; no plugin ships it.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde_json::{Map, Value, json};

const GROUP: &str = "kubermatic.k8c.io";
const SEEDS: &str = "seeds";
const CONFIGS: &str = "kubermaticconfigurations";

/// Kind of the objects of a plural resource this server serves.
fn kind(resource: &str) -> &'static str {
    if resource == SEEDS {
        "Seed"
    } else {
        "KubermaticConfiguration"
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

#[derive(Default)]
struct State {
    /// (plural resource, namespace, name) → object.
    objects: BTreeMap<(String, String, String), Value>,
    rv: u64,
    token: String,
    /// Verbs (`get`, `list`, `patch`) RBAC denies, on every resource.
    forbidden: HashSet<String>,
    /// Runs once, on the stored object, just before the next persisting PATCH (a concurrent writer).
    before_patch: Option<Hook>,
    seen: Vec<Seen>,
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
        let state = Arc::new(Mutex::new(State {
            token: token.to_string(),
            rv: 1000,
            ..State::default()
        }));
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

    /// Stores a Seed (metadata.namespace/name taken from it), giving it a fresh resourceVersion.
    pub fn put_seed(&self, seed: Value) {
        self.put(SEEDS, seed);
    }

    /// The stored Seed, if any.
    pub fn seed(&self, namespace: &str, name: &str) -> Option<Value> {
        self.get(SEEDS, namespace, name)
    }

    /// Stores a KubermaticConfiguration, giving it a fresh resourceVersion.
    pub fn put_kkp(&self, config: Value) {
        self.put(CONFIGS, config);
    }

    /// The stored KubermaticConfiguration, if any.
    pub fn kkp(&self, namespace: &str, name: &str) -> Option<Value> {
        self.get(CONFIGS, namespace, name)
    }

    fn put(&self, resource: &str, obj: Value) {
        let mut st = self.state.lock().unwrap();
        let ns = obj["metadata"]["namespace"].as_str().unwrap().to_string();
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        let mut obj = obj;
        st.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(st.rv.to_string());
        obj["metadata"]
            .as_object_mut()
            .unwrap()
            .entry("uid")
            .or_insert(json!(format!("uid-{name}")));
        obj["metadata"]
            .as_object_mut()
            .unwrap()
            .entry("creationTimestamp")
            .or_insert(json!("2026-01-01T00:00:00Z"));
        st.objects.insert((resource.to_string(), ns, name), obj);
    }

    fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        self.state
            .lock()
            .unwrap()
            .objects
            .get(&(resource.to_string(), namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// RBAC denies `verb` on every resource from now on.
    pub fn forbid(&self, verb: &str) {
        self.state.lock().unwrap().forbidden.insert(verb.to_string());
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
        let ca = match &self.ca {
            Some(ca) => format!("    certificate-authority: {}\n", ca.display()),
            None => String::new(),
        };
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n{ca}    server: {}\n\
             users:\n- name: tester\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context:\n    \
             cluster: test\n    user: tester\n    namespace: default\ncurrent-context: test\n",
            self.url()
        );
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }
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
    match (req.method.as_str(), segs.as_slice()) {
        ("GET", ["version"]) => (
            200,
            json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0", "platform": "linux/amd64"}),
        ),
        ("GET", ["api"]) => (
            200,
            json!({"kind": "APIVersions", "versions": ["v1"],
                   "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
        ),
        ("GET", ["api", "v1"]) => (
            200,
            json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": []}),
        ),
        ("GET", ["apis"]) => (
            200,
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [{
                "name": GROUP,
                "versions": [{"groupVersion": format!("{GROUP}/v1"), "version": "v1"}],
                "preferredVersion": {"groupVersion": format!("{GROUP}/v1"), "version": "v1"}
            }]}),
        ),
        ("GET", ["apis", g, "v1"]) if *g == GROUP => (
            200,
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{GROUP}/v1"),
                   "resources": [{"name": "seeds", "singularName": "seed", "namespaced": true, "kind": "Seed",
                                  "verbs": ["get", "list", "patch", "update"]},
                                 {"name": CONFIGS, "singularName": "kubermaticconfiguration", "namespaced": true,
                                  "kind": "KubermaticConfiguration", "verbs": ["get", "list", "patch", "update"]}]}),
        ),
        (method, ["apis", g, "v1", "namespaces", ns, res, rest @ ..])
            if *g == GROUP && (*res == SEEDS || *res == CONFIGS) =>
        {
            let res = res.to_string();
            let ns = ns.to_string();
            let name = rest.first().map(|s| s.to_string());
            let verb = match (method, &name) {
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
            if st.forbidden.contains(verb) {
                let what = match &name {
                    Some(n) => format!("{res}.{GROUP} \"{n}\" is forbidden"),
                    None => format!("{res}.{GROUP} is forbidden"),
                };
                return status(
                    403,
                    "Forbidden",
                    &format!(
                        "{what}: User \"tester\" cannot {verb} resource \"{res}\" in API group \"{GROUP}\" in the namespace \"{ns}\""
                    ),
                    Some(json!({"name": name.clone().unwrap_or_default(), "group": GROUP, "kind": res})),
                );
            }
            match (verb, name) {
                ("list", _) => {
                    let items: Vec<Value> = st
                        .objects
                        .iter()
                        .filter(|((r, n, _), _)| *r == res && *n == ns)
                        .map(|(_, v)| v.clone())
                        .collect();
                    (
                        200,
                        json!({"apiVersion": format!("{GROUP}/v1"), "kind": format!("{}List", kind(&res)),
                               "metadata": {"resourceVersion": st.rv.to_string()}, "items": items}),
                    )
                }
                ("get", Some(name)) => match st.objects.get(&(res.clone(), ns, name.clone())) {
                    Some(v) => (200, v.clone()),
                    None => not_found(&res, &name),
                },
                (_, Some(name)) => {
                    let dry_run = q("dryRun") == Some("All");
                    let strict = q("fieldValidation") == Some("Strict");
                    patch(&mut st, (&res, &ns, &name), req, dry_run, strict)
                }
                _ => unreachable!(),
            }
        }
        _ => status(
            404,
            "NotFound",
            "the server could not find the requested resource",
            None,
        ),
    }
}

fn not_found(res: &str, name: &str) -> (u16, Value) {
    status(
        404,
        "NotFound",
        &format!("{res}.{GROUP} \"{name}\" not found"),
        Some(json!({"name": name, "group": GROUP, "kind": res})),
    )
}

fn patch(
    st: &mut State,
    (res, ns, name): (&str, &str, &str),
    req: &Request,
    dry_run: bool,
    strict: bool,
) -> (u16, Value) {
    let key = (res.to_string(), ns.to_string(), name.to_string());
    if !dry_run
        && let Some(hook) = st.before_patch.take()
        && let Some(obj) = st.objects.get_mut(&key)
    {
        hook(obj);
        st.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(st.rv.to_string());
    }
    let Some(current) = st.objects.get(&key).cloned() else {
        return not_found(res, name);
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
                "Operation cannot be fulfilled on {res}.{GROUP} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
            Some(json!({"name": name, "group": GROUP, "kind": res})),
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
    let unknown = if res == SEEDS { prune(&mut new) } else { Vec::new() };
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
            &format!("{}.{GROUP} \"{name}\" is invalid: {err}", kind(res)),
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
