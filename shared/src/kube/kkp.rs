//! The KKP objects of a cluster, read the same way by every command: the KubermaticConfiguration (by
//! name, or the only one of the namespace), the Seeds, a Seed's kubeconfig Secret turned into a client
//! for the seed cluster, and the user `Cluster`s a seed cluster runs.
//!
//! `mirror --live`, `retarget --live` and `seedproxy` all go through here and [`super::Objects`]. This
//! module knows where KKP keeps its objects, not what a command makes of them; a Secret's contents are
//! never put into an error or a log line.

use base64::Engine as _;
use serde_json::Value;

use super::{Cluster, KubeError, Objects, object_name};

/// API group of every KKP object.
pub const GROUP: &str = "kubermatic.k8c.io";
/// Plural of the KubermaticConfiguration.
pub const CONFIGURATIONS: &str = "kubermaticconfigurations";
/// Plural of the Seed.
pub const SEEDS: &str = "seeds";
/// Plural of KKP's user cluster (`Cluster`, cluster-scoped, on the seed clusters).
pub const CLUSTERS: &str = "clusters";

/// The KubermaticConfigurations of the cluster's namespace; writes are recorded under `field_manager`.
pub fn configurations<'a>(cluster: &'a Cluster, field_manager: &'static str) -> Objects<'a> {
    Objects::new(
        cluster,
        (GROUP, "v1", "KubermaticConfiguration"),
        CONFIGURATIONS,
        field_manager,
    )
}

/// The Seeds of the cluster's namespace.
pub fn seeds<'a>(cluster: &'a Cluster, field_manager: &'static str) -> Objects<'a> {
    Objects::new(cluster, (GROUP, "v1", "Seed"), SEEDS, field_manager)
}

/// The user clusters (`kubermatic.k8c.io/v1` Cluster, cluster-scoped) of a seed cluster; read only.
pub fn user_clusters(cluster: &Cluster) -> Objects<'_> {
    Objects::cluster_scoped(cluster, (GROUP, "v1", "Cluster"), CLUSTERS, "")
}

/// Why the KubermaticConfiguration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigurationError {
    /// The API server refused or failed a request.
    #[error(transparent)]
    Kube(#[from] KubeError),
    /// No `--name`, and the namespace has no KubermaticConfiguration.
    #[error("no KubermaticConfiguration in namespace {namespace:?}; pick the namespace with -n")]
    NoConfiguration {
        /// The namespace searched.
        namespace: String,
    },
    /// No `--name`, and the namespace has several.
    #[error(
        "{} KubermaticConfigurations in namespace {namespace:?} ({}); pick one with --name",
        names.len(),
        names.join(", ")
    )]
    SeveralConfigurations {
        /// The namespace searched.
        namespace: String,
        /// Their names.
        names: Vec<String>,
    },
}

/// Why a seed cluster could not be reached through its Seed's kubeconfig Secret.
#[derive(Debug, thiserror::Error)]
pub enum SeedClusterError {
    /// The API server refused or failed a request (403 on `get secrets` …).
    #[error(transparent)]
    Kube(#[from] KubeError),
    /// A Seed's kubeconfig Secret is missing its key or does not hold a usable kubeconfig.
    #[error("Seed {seed}: Secret {secret} {message}")]
    SeedKubeconfig {
        /// The Seed.
        seed: String,
        /// `namespace/name` of the Secret.
        secret: String,
        /// What is wrong (never the Secret's contents).
        message: String,
    },
}

/// Reads `name`, or the only KubermaticConfiguration of the namespace.
pub async fn configuration(objects: &Objects<'_>, name: Option<&str>) -> Result<Value, ConfigurationError> {
    if let Some(name) = name {
        return Ok(objects.get(name).await?);
    }
    let mut all = objects.list().await?;
    match all.len() {
        1 => Ok(all.remove(0)),
        0 => Err(ConfigurationError::NoConfiguration {
            namespace: objects.cluster.namespace.clone(),
        }),
        _ => Err(ConfigurationError::SeveralConfigurations {
            namespace: objects.cluster.namespace.clone(),
            names: all.iter().map(object_name).collect(),
        }),
    }
}

/// Where a Seed keeps the kubeconfig of its seed cluster: `spec.kubeconfig` names a Secret (its
/// namespace defaults to the Seed's), whose key is `fieldPath` (default `kubeconfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeconfigRef {
    /// Namespace of the Secret.
    pub namespace: String,
    /// Name of the Secret.
    pub name: String,
    /// Key in its `data`.
    pub key: String,
}

impl KubeconfigRef {
    /// The reference of `seed`, `None` when it names no Secret.
    pub fn of(seed: &Value) -> Option<KubeconfigRef> {
        let r = seed.pointer("/spec/kubeconfig")?;
        let name = r.get("name")?.as_str().filter(|s| !s.is_empty())?;
        fn text(v: Option<&Value>) -> Option<&str> {
            v.and_then(Value::as_str).filter(|s| !s.is_empty())
        }
        Some(KubeconfigRef {
            namespace: text(r.get("namespace"))
                .or(text(seed.pointer("/metadata/namespace")))
                .unwrap_or(super::DEFAULT_NAMESPACE)
                .to_string(),
            name: name.to_string(),
            key: text(r.get("fieldPath")).unwrap_or("kubeconfig").to_string(),
        })
    }

    /// `namespace/name`.
    pub fn secret(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Reads the Seed's kubeconfig Secret from the master `cluster` and builds a client for the seed
/// cluster from it (its current context). API errors (403 on `get secrets` …) come back as
/// [`SeedClusterError::Kube`]; content problems name the Secret and key, never what is in them.
pub async fn seed_cluster(
    master: &Cluster,
    seed_name: &str,
    r: &KubeconfigRef,
) -> Result<Cluster, SeedClusterError> {
    cluster_from_secret(master, &r.namespace, &r.name, &r.key)
        .await
        .map_err(|e| match e {
            SecretKubeconfigError::Kube(e) => SeedClusterError::Kube(e),
            SecretKubeconfigError::Content { message, .. } => SeedClusterError::SeedKubeconfig {
                seed: seed_name.to_string(),
                secret: r.secret(),
                message,
            },
        })
}

/// Why a kubeconfig kept in a Secret could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretKubeconfigError {
    /// The API server refused or failed the `get secrets`.
    #[error(transparent)]
    Kube(#[from] KubeError),
    /// The Secret lacks the key or does not hold a usable kubeconfig (never its contents).
    #[error("Secret {secret} {message}")]
    Content {
        /// `namespace/name` of the Secret.
        secret: String,
        /// What is wrong.
        message: String,
    },
}

/// Reads the kubeconfig under `key` of Secret `namespace/name` through `via` and builds a client from it
/// (its current context; the cluster's namespace stays `via`'s). Used for seed clusters (the Seed's
/// kubeconfig Secret) and user clusters (`admin-kubeconfig` in `cluster-<id>`); in memory only.
pub async fn cluster_from_secret(
    via: &Cluster,
    namespace: &str,
    name: &str,
    key: &str,
) -> Result<Cluster, SecretKubeconfigError> {
    let in_ns = Cluster {
        namespace: namespace.to_string(),
        ..via.clone()
    };
    let secret = Objects::new(&in_ns, ("", "v1", "Secret"), "secrets", "")
        .get(name)
        .await?;
    let bad = |message: String| SecretKubeconfigError::Content {
        secret: format!("{namespace}/{name}"),
        message,
    };
    let encoded = secret
        .pointer(&format!("/data/{}", key.replace('~', "~0").replace('/', "~1")))
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("has no key {key:?}")))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| bad(format!("key {key:?} is not base64")))?;
    let text = String::from_utf8(bytes).map_err(|_| bad(format!("key {key:?} is not text")))?;
    // kube-rs's YAML errors may quote the document; only say that it failed.
    let kc = kube::config::Kubeconfig::from_yaml(&text)
        .map_err(|_| bad(format!("key {key:?} is not a kubeconfig")))?;
    super::install_crypto_provider();
    let config = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|_| bad(format!("key {key:?}: the kubeconfig has no usable context")))?;
    let server = config.cluster_url.to_string().trim_end_matches('/').to_string();
    let client = kube::Client::try_from(config).map_err(|source| KubeError::Client {
        server: server.clone(),
        source,
    })?;
    Ok(Cluster {
        client,
        namespace: via.namespace.clone(),
        server,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_kubeconfig_reference_defaults_like_kkp() {
        let seed = json!({"metadata": {"name": "hamburg", "namespace": "kkp"},
                          "spec": {"kubeconfig": {"name": "kubeconfig-hamburg"}}});
        assert_eq!(
            KubeconfigRef::of(&seed),
            Some(KubeconfigRef {
                namespace: "kkp".into(),
                name: "kubeconfig-hamburg".into(),
                key: "kubeconfig".into()
            })
        );
        let seed = json!({"spec": {"kubeconfig": {"name": "k", "namespace": "other", "fieldPath": "kc"}}});
        assert_eq!(KubeconfigRef::of(&seed).unwrap().secret(), "other/k");
        assert_eq!(KubeconfigRef::of(&json!({"spec": {}})), None);
    }
}
