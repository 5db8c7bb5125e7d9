//! A Kubernetes client chosen the way kubectl chooses one, and errors that read like kubectl's.
//!
//! `--kubeconfig` replaces `$KUBECONFIG`, which kube-rs merges as a path list; `--context` picks the
//! context; the namespace is ours to default (KKP objects live in `kubermatic`, not in the context's
//! namespace). This module knows nothing of Seeds or of any KKP object.

use std::path::PathBuf;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::cli::KubeArgs;

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
}
