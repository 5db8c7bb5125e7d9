//! A Kubernetes client chosen the way kubectl chooses one, and errors that read like kubectl's.
//!
//! `--kubeconfig` replaces `$KUBECONFIG`, which kube-rs merges as a path list; `--context` picks the
//! context; the namespace is ours to default (KKP objects live in `kubermatic`, not in the context's
//! namespace). [`Objects`] reads and patches one kind of namespaced object as JSON, and the helpers
//! below it build the resourceVersion-guarded JSON merge patches every writing command sends. This
//! module knows nothing of Seeds or of any KKP object.

use std::path::PathBuf;

use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, ValidationDirective};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, Config};
use serde_json::{Map, Value, json};

use crate::cli::KubeArgs;

pub mod kkp;

/// The namespace KKP's master components watch for Seeds and the KubermaticConfiguration.
pub const DEFAULT_NAMESPACE: &str = "kubermatic";

/// A client plus what error messages need to know about where it points.
#[derive(Clone)]
pub struct Cluster {
    /// The client.
    pub client: Client,
    /// The namespace the KKP objects are in (`-n`, default `kubermatic`).
    pub namespace: String,
    /// The API server URL, as the kubeconfig names it.
    pub server: String,
}

/// Why talking to the cluster failed, worded like kubectl's messages.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The kubeconfig could not be read or has no usable context. One line: a YAML error's source
    /// snippet is left out.
    #[error(
        "kubeconfig{}: {}",
        path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default(),
        source.to_string().lines().next().unwrap_or_default().trim_end()
    )]
    Config {
        /// The explicit `--kubeconfig`, if one was given.
        path: Option<PathBuf>,
        /// What kube-rs said.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// The client could not be built from the configuration (TLS material, proxy …).
    #[error("building a client for {server}: {source}")]
    Client {
        /// The API server URL.
        server: String,
        /// What kube-rs said.
        #[source]
        source: kube::Error,
    },
    /// 401: the credentials were refused.
    #[error("You must be logged in to the server ({message})")]
    Unauthorized {
        /// The server's message (`Unauthorized`).
        message: String,
    },
    /// 403: RBAC said no.
    #[error("Error from server (Forbidden): {message}")]
    Forbidden {
        /// The server's message, or one naming verb, resource and namespace.
        message: String,
    },
    /// 404 on a single object.
    #[error("Error from server (NotFound): {message}")]
    NotFound {
        /// The server's message.
        message: String,
    },
    /// 409: someone changed the object since it was read.
    #[error("Error from server (Conflict): {message}")]
    Conflict {
        /// The server's message.
        message: String,
    },
    /// Any other Status the server returned.
    #[error("Error from server ({reason}): {message}")]
    Api {
        /// HTTP code.
        code: u16,
        /// The Status reason (`BadRequest`, `Invalid`, …).
        reason: String,
        /// The Status message.
        message: String,
    },
    /// Nothing listens at the server address.
    #[error("The connection to the server {server} was refused - did you specify the right host or port?")]
    Refused {
        /// `host:port` of the API server.
        server: String,
    },
    /// Any other transport failure.
    #[error("Unable to connect to the server {server}: {source}")]
    Transport {
        /// The API server URL.
        server: String,
        /// What failed.
        #[source]
        source: kube::Error,
    },
}

impl KubeError {
    /// The HTTP status of an API error, if this is one.
    pub fn code(&self) -> Option<u16> {
        match self {
            KubeError::Unauthorized { .. } => Some(401),
            KubeError::Forbidden { .. } => Some(403),
            KubeError::NotFound { .. } => Some(404),
            KubeError::Conflict { .. } => Some(409),
            KubeError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// What a request was doing, so a bare Status can still say what was refused.
#[derive(Debug, Clone, Copy)]
pub struct Op<'a> {
    /// kubectl verb (`get`, `list`, `patch`).
    pub verb: &'a str,
    /// Plural resource (`seeds`).
    pub resource: &'a str,
    /// API group (`kubermatic.k8c.io`).
    pub group: &'a str,
    /// Namespace.
    pub namespace: &'a str,
    /// Object name, if one.
    pub name: Option<&'a str>,
}

/// Turns a kube-rs error into kubectl's wording; `server` is the API server URL.
pub fn map_error(err: kube::Error, server: &str, op: Op<'_>) -> KubeError {
    match err {
        kube::Error::Api(status) => {
            let message = status.message.clone();
            match status.code {
                401 => KubeError::Unauthorized {
                    message: if message.is_empty() {
                        "Unauthorized".into()
                    } else {
                        message
                    },
                },
                403 => KubeError::Forbidden {
                    message: if message.is_empty() {
                        forbidden_message(op)
                    } else {
                        message
                    },
                },
                404 => KubeError::NotFound { message },
                409 => KubeError::Conflict { message },
                code => KubeError::Api {
                    code,
                    reason: if status.reason.is_empty() {
                        format!("HTTP {code}")
                    } else {
                        status.reason.clone()
                    },
                    message,
                },
            }
        }
        other => {
            if is_refused(&other) {
                KubeError::Refused {
                    server: host_port(server),
                }
            } else {
                KubeError::Transport {
                    server: server.to_string(),
                    source: other,
                }
            }
        }
    }
}

/// kubectl's own wording of an RBAC denial, for a 403 that came without a message.
fn forbidden_message(op: Op<'_>) -> String {
    let what = match op.name {
        Some(n) => format!("{}.{} {n:?} is forbidden", op.resource, op.group),
        None => format!("{}.{} is forbidden", op.resource, op.group),
    };
    format!(
        "{what}: cannot {} resource {:?} in API group {:?} in the namespace {:?}",
        op.verb, op.resource, op.group, op.namespace
    )
}

fn is_refused(err: &kube::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        if c.to_string().contains("Connection refused") {
            return true;
        }
        cause = c.source();
    }
    false
}

/// `https://host:port/path` → `host:port`, as kubectl prints it.
fn host_port(server: &str) -> String {
    let rest = server.split_once("://").map_or(server, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_string()
}

/// Makes rustls use ring. kube-rs needs a process-wide provider; installing twice is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds a client from `--kubeconfig`/`$KUBECONFIG`/`~/.kube/config` and `--context`.
pub async fn connect(args: &KubeArgs) -> Result<Cluster, KubeError> {
    install_crypto_provider();
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..Default::default()
    };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|source| KubeError::Config {
                path: Some(path.clone()),
                source,
            })?;
            Config::from_custom_kubeconfig(kc, &options).await
        }
        None => Config::from_kubeconfig(&options).await,
    }
    .map_err(|source| KubeError::Config {
        path: args.kubeconfig.clone(),
        source,
    })?;
    let server = config.cluster_url.to_string().trim_end_matches('/').to_string();
    tracing::debug!(%server, "using API server");
    let client = Client::try_from(config).map_err(|source| KubeError::Client {
        server: server.clone(),
        source,
    })?;
    Ok(Cluster {
        client,
        namespace: args
            .namespace
            .clone()
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
        server,
    })
}

/// How often a command re-reads an object that changed under it before giving up.
pub const MAX_ATTEMPTS: u32 = 5;

/// One kind of object (`kubermatic.k8c.io/v1` Seeds, KubermaticConfigurations …, namespaced or
/// cluster-scoped), read and patched as JSON without a typed CRD, with every error already in kubectl's
/// words.
pub struct Objects<'a> {
    api: Api<DynamicObject>,
    /// Where the objects are.
    pub cluster: &'a Cluster,
    group: &'static str,
    resource: &'static str,
    field_manager: &'static str,
}

impl<'a> Objects<'a> {
    /// `group`/`version` `kind` objects, plural `resource`, in the cluster's namespace; writes are
    /// recorded in managedFields under `field_manager`.
    pub fn new(
        cluster: &'a Cluster,
        (group, version, kind): (&'static str, &'static str, &'static str),
        resource: &'static str,
        field_manager: &'static str,
    ) -> Objects<'a> {
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let ar = ApiResource::from_gvk_with_plural(&gvk, resource);
        Objects {
            api: Api::namespaced_with(cluster.client.clone(), &cluster.namespace, &ar),
            cluster,
            group,
            resource,
            field_manager,
        }
    }

    /// Cluster-scoped `group`/`version` `kind` objects (KKP's user `Cluster`s), plural `resource`.
    pub fn cluster_scoped(
        cluster: &'a Cluster,
        (group, version, kind): (&'static str, &'static str, &'static str),
        resource: &'static str,
        field_manager: &'static str,
    ) -> Objects<'a> {
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let ar = ApiResource::from_gvk_with_plural(&gvk, resource);
        Objects {
            api: Api::all_with(cluster.client.clone(), &ar),
            cluster,
            group,
            resource,
            field_manager,
        }
    }

    fn op(&self, verb: &'a str, name: Option<&'a str>) -> Op<'a> {
        Op {
            verb,
            resource: self.resource,
            group: self.group,
            namespace: &self.cluster.namespace,
            name,
        }
    }

    /// `kind/name` as kubectl prints what it changed (`seed.kubermatic.k8c.io/hamburg`).
    pub fn id(&self, singular: &str, name: &str) -> String {
        format!("{singular}.{}/{name}", self.group)
    }

    /// GET one object.
    pub async fn get(&self, name: &str) -> Result<Value, KubeError> {
        let obj = self
            .api
            .get(name)
            .await
            .map_err(|e| map_error(e, &self.cluster.server, self.op("get", Some(name))))?;
        Ok(serde_json::to_value(obj).unwrap_or(Value::Null))
    }

    /// LIST the namespace, sorted by name.
    pub async fn list(&self) -> Result<Vec<Value>, KubeError> {
        let list = self
            .api
            .list(&ListParams::default())
            .await
            .map_err(|e| map_error(e, &self.cluster.server, self.op("list", None)))?;
        let mut items: Vec<Value> = list
            .items
            .into_iter()
            .map(|o| serde_json::to_value(o).unwrap_or(Value::Null))
            .collect();
        items.sort_by_key(object_name);
        Ok(items)
    }

    /// PATCH with a JSON merge patch, `fieldValidation=Strict` (the server refuses fields it would
    /// otherwise silently drop), `dryRun=All` when `dry_run`. Returns the object the server answered.
    pub async fn patch(&self, name: &str, patch: &Value, dry_run: bool) -> Result<Value, KubeError> {
        let pp = PatchParams {
            dry_run,
            field_manager: Some(self.field_manager.into()),
            field_validation: Some(ValidationDirective::Strict),
            ..Default::default()
        };
        let obj = self
            .api
            .patch(name, &pp, &Patch::Merge(patch))
            .await
            .map_err(|e| map_error(e, &self.cluster.server, self.op("patch", Some(name))))?;
        Ok(serde_json::to_value(obj).unwrap_or(Value::Null))
    }
}

/// `metadata.name` of an object (empty when it has none).
pub fn object_name(obj: &Value) -> String {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// `metadata.resourceVersion` of an object.
pub fn resource_version(obj: &Value) -> Option<String> {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// An RFC 7386 merge patch that turns `old` into `new`; `None` when they are equal.
pub fn merge_patch(old: &Value, new: &Value) -> Option<Value> {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut patch = Map::new();
            for k in o.keys() {
                if !n.contains_key(k) {
                    patch.insert(k.clone(), Value::Null);
                }
            }
            for (k, nv) in n {
                match o.get(k) {
                    Some(ov) => {
                        if let Some(p) = merge_patch(ov, nv) {
                            patch.insert(k.clone(), p);
                        }
                    }
                    None => {
                        patch.insert(k.clone(), nv.clone());
                    }
                }
            }
            (!patch.is_empty()).then_some(Value::Object(patch))
        }
        _ => (old != new).then(|| new.clone()),
    }
}

/// The merge patch from `live` (as read) to `desired`, carrying the resourceVersion that was read: the
/// server applies it only if nobody wrote the object since (409 Conflict otherwise). `None`: no change.
pub fn guarded_merge_patch(live: &Value, desired: &Value) -> Option<Value> {
    let mut patch = merge_patch(live, desired)?;
    if let (Some(rv), Some(p)) = (resource_version(live), patch.as_object_mut()) {
        p.insert("metadata".into(), json!({ "resourceVersion": rv }));
    }
    Some(patch)
}

/// The object as people should see it: no managedFields, status, last-applied annotation or
/// bookkeeping (resourceVersion, generation) that changes on every write.
pub fn for_display(obj: &Value) -> Value {
    let mut obj = obj.clone();
    if let Some(m) = obj.as_object_mut() {
        m.remove("status");
    }
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
        meta.remove("resourceVersion");
        meta.remove("generation");
        if let Some(ann) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            ann.remove("kubectl.kubernetes.io/last-applied-configuration");
            if ann.is_empty() {
                meta.remove("annotations");
            }
        }
    }
    obj
}

/// A [`Cluster`] whose requests go to a `tower-test` handle, for unit tests of what is sent.
#[cfg(test)]
pub(crate) fn mock_cluster() -> (
    Cluster,
    tower_test::mock::Handle<http::Request<kube::client::Body>, http::Response<kube::client::Body>>,
) {
    let (svc, handle) = tower_test::mock::pair();
    let cluster = Cluster {
        client: kube::Client::new(svc, "default"),
        namespace: DEFAULT_NAMESPACE.into(),
        server: "https://kkp.test:6443".into(),
    };
    (cluster, handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op() -> Op<'static> {
        Op {
            verb: "patch",
            resource: "seeds",
            group: "kubermatic.k8c.io",
            namespace: "kubermatic",
            name: Some("hamburg"),
        }
    }

    fn status(code: u16, reason: &str, message: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure(message, reason)
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn statuses_read_like_kubectl() {
        let s = "https://10.0.0.1:6443";
        assert_eq!(
            map_error(status(401, "Unauthorized", "Unauthorized"), s, op()).to_string(),
            "You must be logged in to the server (Unauthorized)"
        );
        assert_eq!(
            map_error(status(403, "Forbidden", ""), s, op()).to_string(),
            "Error from server (Forbidden): seeds.kubermatic.k8c.io \"hamburg\" is forbidden: cannot patch \
             resource \"seeds\" in API group \"kubermatic.k8c.io\" in the namespace \"kubermatic\""
        );
        let e = map_error(status(422, "Invalid", "bad"), s, op());
        assert_eq!(e.code(), Some(422));
        assert_eq!(e.to_string(), "Error from server (Invalid): bad");
        assert_eq!(host_port("https://10.0.0.1:6443/"), "10.0.0.1:6443");
    }

    #[test]
    fn merge_patch_sets_changes_and_nulls_removals() {
        let old = json!({"a": 1, "b": {"c": [1], "d": "x"}, "e": true});
        let new = json!({"a": 1, "b": {"c": [1, 2]}, "e": true, "f": "new"});
        assert_eq!(
            merge_patch(&old, &new),
            Some(json!({"b": {"d": null, "c": [1, 2]}, "f": "new"}))
        );
        assert_eq!(merge_patch(&old, &old), None);
    }

    #[test]
    fn a_guarded_patch_carries_the_read_resource_version() {
        let live = json!({"metadata": {"name": "k", "resourceVersion": "41"}, "spec": {"a": 1}});
        let mut desired = live.clone();
        desired["spec"]["a"] = json!(2);
        assert_eq!(
            guarded_merge_patch(&live, &desired),
            Some(json!({"spec": {"a": 2}, "metadata": {"resourceVersion": "41"}}))
        );
        assert_eq!(guarded_merge_patch(&live, &live), None);
    }
}
