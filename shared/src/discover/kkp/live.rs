//! `mirror --live`: the running install as the plan's input instead of `--config`/`--seed` files.
//!
//! Read-only, through [`crate::kube::kkp`]: the KubermaticConfiguration (its spec as with `--config`,
//! `status.kubermaticVersion` as the release, `status.kubermaticEdition` as the edition), every Seed (the
//! providers its datacenters use, their `node.pauseImage`, the nodeport-proxy overrides, as `--seed`
//! does), and — when a Seed's kubeconfig Secret is readable, or `--seeds` demands it — the user
//! `Cluster`s of each seed cluster, whose Kubernetes versions and providers join the matrix even when the
//! configuration no longer offers them. Every fact keeps a `live: …` origin for `-o json`. This module
//! knows nothing of printing or copying; the Secret's contents never leave [`crate::kube::kkp`].

use semver::Version;
use serde::Serialize;
use serde_json::Value;

use super::catalog::{self, CatalogError, Selected};
use super::config::{self, ConfigError, KubermaticConfiguration};
use super::seed::{self, LoadedSeed};
use super::{KkpError, Matrix};
use crate::cli::KubeArgs;
use crate::discover::{Finding, Origin, SourceKind};
use crate::kube::kkp::{self as objects, ConfigurationError, KubeconfigRef, SeedClusterError};
use crate::kube::{Cluster, KubeError, object_name};

/// Field manager name; nothing is written, but [`crate::kube::Objects`] wants one.
const READER: &str = "kubectl-kkp-mirror";

/// Whether user clusters are read from the seed clusters (`--seeds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SeedClusters {
    /// When the Seed's kubeconfig Secret is readable (a 403/404 on it is a warning).
    #[default]
    Auto,
    /// Always: an unreadable Secret is an error.
    On,
    /// Never.
    Off,
}

/// One fact the plan rests on and where it came from (`-o json` lists them under `live`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fact {
    /// `release`, `edition`, `provider`, `kubernetes`.
    pub fact: String,
    /// Its value.
    pub value: String,
    /// `live: KubermaticConfiguration kubermatic/kubermatic`, `live: Seed hamburg, datacenter hamburg-2`,
    /// `--kkp-version` …
    pub from: String,
}

/// What was read from the running install.
#[derive(Debug, Clone)]
pub struct LiveInstall {
    /// The configuration, parsed as strictly as a `--config` file.
    pub config: KubermaticConfiguration,
    /// `live: KubermaticConfiguration <namespace>/<name>`.
    pub config_origin: String,
    /// `status.kubermaticVersion`, if set.
    pub release: Option<String>,
    /// The Seeds, parsed as strictly as `--seed` files (`file` is `live: Seed <name>`).
    pub seeds: Vec<LoadedSeed>,
    /// Provider candidates (datacenter `spec` keys, Cluster `spec.cloud` keys) and their origins; only
    /// the names the catalog knows count.
    pub providers: Vec<(String, String)>,
    /// Kubernetes versions user clusters run, with their origins.
    pub versions: Vec<(String, String)>,
    /// Things the user should know (a seed cluster that was not read).
    pub warnings: Vec<String>,
}

/// Why reading the running install failed.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The cluster could not be reached or refused a read.
    #[error(transparent)]
    Kube(#[from] KubeError),
    /// The KubermaticConfiguration could not be found.
    #[error(transparent)]
    Configuration(#[from] ConfigurationError),
    /// A seed cluster could not be reached through its Seed's Secret.
    #[error(transparent)]
    SeedCluster(#[from] SeedClusterError),
    /// A live object does not parse as its kind.
    #[error(transparent)]
    Parse(#[from] ConfigError),
    /// The running release has no embedded catalog.
    #[error(
        "{origin} runs KKP {version} (status.kubermaticVersion), which has no embedded catalog (embedded: {}); plan for an embedded release with --kkp-version",
        known.join(", ")
    )]
    UnknownRelease {
        /// The configuration.
        origin: String,
        /// `status.kubermaticVersion`.
        version: String,
        /// Embedded release lines.
        known: Vec<String>,
    },
    /// The configuration does not say which release runs.
    #[error("{origin} has no status.kubermaticVersion (not reconciled yet?); give --kkp-version")]
    NoRelease {
        /// The configuration.
        origin: String,
    },
    /// The async runtime could not start.
    #[error("starting the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Reads the running install the kubectl flags point at; `name` is `--name`.
pub fn read(kube: &KubeArgs, name: Option<&str>, seeds: SeedClusters) -> Result<LiveInstall, LiveError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(LiveError::Runtime)?;
    rt.block_on(async {
        let master = crate::kube::connect(kube).await?;
        read_from(&master, name, seeds).await
    })
}

/// [`read`] on a connected master cluster.
pub async fn read_from(
    master: &Cluster,
    name: Option<&str>,
    mode: SeedClusters,
) -> Result<LiveInstall, LiveError> {
    let obj = objects::configuration(&objects::configurations(master, READER), name).await?;
    let config_origin = format!(
        "live: KubermaticConfiguration {}/{}",
        master.namespace,
        object_name(&obj)
    );
    let config = config::parse(&as_text(&obj, "KubermaticConfiguration"), &config_origin)?;
    let release = obj
        .pointer("/status/kubermaticVersion")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string);

    let mut install = LiveInstall {
        config,
        config_origin,
        release,
        seeds: Vec::new(),
        providers: Vec::new(),
        versions: Vec::new(),
        warnings: Vec::new(),
    };
    for obj in objects::seeds(master, READER).list().await? {
        let seed_name = object_name(&obj);
        let origin = format!("live: Seed {seed_name}");
        install
            .seeds
            .extend(seed::parse(&as_text(&obj, seed::KIND), &origin)?);
        if let Some(dcs) = obj.pointer("/spec/datacenters").and_then(Value::as_object) {
            for (dc, d) in dcs {
                for key in d
                    .get("spec")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flat_map(|m| m.keys())
                {
                    install
                        .providers
                        .push((key.clone(), format!("{origin}, datacenter {dc}")));
                }
            }
        }
        if mode == SeedClusters::Off {
            continue;
        }
        let Some(r) = KubeconfigRef::of(&obj) else {
            tracing::info!(seed = %seed_name, "the Seed names no kubeconfig Secret; its user clusters are not read");
            continue;
        };
        let seed_cluster = match objects::seed_cluster(master, &seed_name, &r).await {
            Ok(c) => c,
            Err(SeedClusterError::Kube(e))
                if mode == SeedClusters::Auto && matches!(e.code(), Some(403 | 404)) =>
            {
                let warning = format!(
                    "Seed {seed_name}: its user clusters were not read ({e}); give --seeds to make this an error"
                );
                tracing::warn!("{warning}");
                install.warnings.push(warning);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        for cluster in objects::user_clusters(&seed_cluster).list().await? {
            let from = format!("live: Cluster {} on Seed {seed_name}", object_name(&cluster));
            if let Some(v) = cluster.pointer("/spec/version").and_then(Value::as_str) {
                install.versions.push((v.to_string(), from.clone()));
            }
            let cloud = cluster.pointer("/spec/cloud").and_then(Value::as_object);
            for (key, _) in cloud.into_iter().flatten() {
                install.providers.push((key.clone(), from.clone()));
            }
            if let Some(p) = cloud.and_then(|c| c.get("providerName")).and_then(Value::as_str) {
                install.providers.push((p.to_string(), from.clone()));
            }
        }
    }
    Ok(install)
}

/// Pretty JSON, which the YAML parsers read, so parse errors have meaningful lines. List items may come
/// without apiVersion and kind; they are filled in.
fn as_text(obj: &Value, kind: &str) -> String {
    let mut obj = obj.clone();
    if let Some(m) = obj.as_object_mut() {
        m.entry("apiVersion").or_insert(config::API_VERSION.into());
        m.entry("kind").or_insert(kind.into());
    }
    serde_json::to_string_pretty(&obj).unwrap_or_default()
}

impl LiveInstall {
    /// The catalog of the running release (`status.kubermaticVersion`). The one place the live release
    /// is resolved: a version without an embedded catalog is an error, never the newest one instead.
    pub fn release(&self) -> Result<(Selected, Fact), KkpError> {
        let Some(version) = &self.release else {
            return Err(LiveError::NoRelease {
                origin: self.config_origin.clone(),
            }
            .into());
        };
        let selected = catalog::select(Some(version)).map_err(|e| match e {
            CatalogError::UnknownVersion { known, .. } => KkpError::from(LiveError::UnknownRelease {
                origin: self.config_origin.clone(),
                version: version.clone(),
                known,
            }),
            other => other.into(),
        })?;
        let fact = Fact {
            fact: "release".into(),
            value: selected.kkp_tag.clone(),
            from: format!("{}, status.kubermaticVersion", self.config_origin),
        };
        Ok((selected, fact))
    }

    /// Adds the user clusters' Kubernetes versions to the matrix (the version filter still applies)
    /// and, unless `--provider-filter` was given, keeps only the providers the Seeds and clusters use.
    pub fn narrow(
        &self,
        matrix: &mut Matrix,
        valid: &[String],
        version_filter: Option<&str>,
        provider_filter_given: bool,
        facts: &mut Vec<Fact>,
    ) -> Result<(), KkpError> {
        let req = match version_filter.map(str::trim).filter(|f| !f.is_empty()) {
            Some(f) => Some(catalog::parse_constraint(f).map_err(KkpError::VersionFilter)?),
            None => None,
        };
        for (v, from) in &self.versions {
            let parsed = catalog::lenient_version(v).ok_or_else(|| KkpError::BadVersion(v.clone()))?;
            if req.as_ref().is_some_and(|r| !catalog::matches(r, &parsed)) {
                continue;
            }
            facts.push(Fact {
                fact: "kubernetes".into(),
                value: parsed.to_string(),
                from: from.clone(),
            });
            if !matrix.versions.contains(&parsed) {
                matrix.versions.push(parsed);
            }
        }
        matrix.versions.sort_by(Version::cmp);
        let mut used: Vec<String> = Vec::new();
        for (p, from) in &self.providers {
            if !valid.contains(p) {
                continue;
            }
            if !facts
                .iter()
                .any(|f| f.fact == "provider" && f.value == *p && f.from == *from)
            {
                facts.push(Fact {
                    fact: "provider".into(),
                    value: p.clone(),
                    from: from.clone(),
                });
            }
            if !used.contains(p) {
                used.push(p.clone());
            }
        }
        if !provider_filter_given {
            matrix.providers.retain(|p| used.contains(p));
        }
        Ok(())
    }

    /// The images the live Seeds name, with `live: Seed <name>, datacenter <dc>` origins.
    pub fn seed_findings(
        &self,
        respect_overrides: bool,
        envoy_tag: &str,
        kkp_tag: &str,
    ) -> Result<Vec<Finding>, KkpError> {
        let mut out = Vec::new();
        for loaded in &self.seeds {
            for img in loaded
                .images(respect_overrides, envoy_tag, kkp_tag)
                .map_err(KkpError::Config)?
            {
                let dc = img
                    .field
                    .strip_prefix("spec.datacenters.")
                    .and_then(|r| r.split_once('.'))
                    .map(|(dc, _)| format!(", datacenter {dc}"))
                    .unwrap_or_default();
                out.push(Finding {
                    image: img.image,
                    origin: Origin {
                        source: SourceKind::Config,
                        name: format!("{}{dc}", loaded.file),
                        object: Some(format!("Seed/{}", loaded.name())),
                        field: Some(img.field),
                        template: None,
                        values: Vec::new(),
                    },
                });
            }
        }
        Ok(out)
    }
}
