//! The KubermaticConfiguration (`kubermatic.k8c.io/v1`): strict loading, KKP's defaults, image fields.
//!
//! Loading is strict like KKP's `yaml.UnmarshalStrict`: an unknown field or malformed YAML is an error
//! naming file, line, column and the field's path. Subtrees that cannot hold images are kept as opaque
//! values. This module knows the file format only; what the images mean is the catalog's business.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::reference::ImageRef;

/// The `apiVersion` a KubermaticConfiguration must have.
pub const API_VERSION: &str = "kubermatic.k8c.io/v1";
/// The `kind` a KubermaticConfiguration must have.
pub const KIND: &str = "KubermaticConfiguration";

/// KKP's default etcd backup store/delete container image (`pkg/defaulting/configuration.go:738-800`).
pub const DEFAULT_BACKUP_IMAGE: &str =
    "d3fk/s3cmd@sha256:426f98fdc8a2c7d7a879eb0da57131e6eec4d239881448f23946216fe801b614";

/// Why a configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The YAML is malformed or does not fit the schema.
    #[error("{file}:{line}:{column}: {message}")]
    Parse {
        /// File name as given.
        file: String,
        /// 1-based line (0 when unknown).
        line: u64,
        /// 1-based column (0 when unknown).
        column: u64,
        /// What is wrong, naming the field.
        message: String,
    },
    /// A field has a value KKP would reject.
    #[error("{file}: {field}: {message}")]
    Invalid {
        /// File name as given.
        file: String,
        /// Field path (`spec.mirrorImages[2]`).
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// A KubermaticConfiguration, with the parts that matter for images typed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubermaticConfiguration {
    /// Must be `kubermatic.k8c.io/v1`.
    pub api_version: String,
    /// Must be `KubermaticConfiguration`.
    pub kind: String,
    /// Object metadata (not interpreted).
    #[serde(default)]
    pub metadata: Option<Value>,
    /// The spec.
    #[serde(default, deserialize_with = "null_default")]
    pub spec: Spec,
    /// Status (not interpreted).
    #[serde(default)]
    pub status: Option<Value>,
}

/// `spec`: every top-level key of KKP v2.31's `KubermaticConfigurationSpec`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Spec {
    /// `caBundle` (not interpreted).
    #[serde(default)]
    pub ca_bundle: Option<Value>,
    /// `imagePullSecret`.
    #[serde(default)]
    pub image_pull_secret: Option<String>,
    /// `auth` (not interpreted).
    #[serde(default)]
    pub auth: Option<Value>,
    /// `featureGates`.
    #[serde(default)]
    pub feature_gates: Option<Value>,
    /// `ui`.
    #[serde(default, deserialize_with = "null_default")]
    pub ui: Ui,
    /// `api`.
    #[serde(default, deserialize_with = "null_default")]
    pub api: Api,
    /// `seedController`.
    #[serde(default, deserialize_with = "null_default")]
    pub seed_controller: SeedController,
    /// `masterController`.
    #[serde(default, deserialize_with = "null_default")]
    pub master_controller: MasterController,
    /// `webhook`.
    #[serde(default, deserialize_with = "null_default")]
    pub webhook: Webhook,
    /// `userCluster`.
    #[serde(default, deserialize_with = "null_default")]
    pub user_cluster: UserCluster,
    /// `exposeStrategy`.
    #[serde(default)]
    pub expose_strategy: Option<String>,
    /// `ingress` (not interpreted).
    #[serde(default)]
    pub ingress: Option<Value>,
    /// `versions`.
    #[serde(default, deserialize_with = "null_default")]
    pub versions: Versions,
    /// `verticalPodAutoscaler`.
    #[serde(default, deserialize_with = "null_default")]
    pub vertical_pod_autoscaler: Vpa,
    /// `proxy` (not interpreted).
    #[serde(default)]
    pub proxy: Option<Value>,
    /// `mirrorImages`: extra images to mirror.
    #[serde(default, deserialize_with = "null_default")]
    pub mirror_images: Vec<String>,
    /// `applications`.
    #[serde(default, deserialize_with = "null_default")]
    pub applications: Applications,
}

/// Deserialises `null` (which Go's YAML reads as "unset") as the type's default.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Defines the settings struct of one KKP deployment: the typed image fields plus every other key
/// KKP knows there (kept opaque), so unknown keys are errors exactly where KKP rejects them.
macro_rules! deployment_settings {
    ($(#[$meta:meta])* $name:ident {
        images: [$($ifield:ident: $ijson:literal),* $(,)?],
        opaque: [$($ofield:ident: $ojson:literal),* $(,)?] $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $(
                #[doc = concat!("`", $ijson, "`.")]
                #[serde(default, rename = $ijson)]
                pub $ifield: Option<String>,
            )*
            $(
                #[doc = concat!("`", $ojson, "` (not interpreted).")]
                #[serde(default, rename = $ojson)]
                pub $ofield: Option<Value>,
            )*
            /// `nodeSelector` (scheduling, inline in KKP; not interpreted).
            #[serde(default, rename = "nodeSelector")]
            pub node_selector: Option<Value>,
            /// `affinity` (not interpreted).
            #[serde(default)]
            pub affinity: Option<Value>,
            /// `tolerations` (not interpreted).
            #[serde(default)]
            pub tolerations: Option<Value>,
            /// `topologySpreadConstraints` (not interpreted).
            #[serde(default, rename = "topologySpreadConstraints")]
            pub topology_spread_constraints: Option<Value>,
            /// `priorityClassName` (not interpreted).
            #[serde(default, rename = "priorityClassName")]
            pub priority_class_name: Option<Value>,
        }
    };
}

deployment_settings! {
    /// `spec.ui` (`KubermaticUIConfiguration`).
    Ui {
        images: [docker_repository: "dockerRepository", docker_tag: "dockerTag", docker_tag_suffix: "dockerTagSuffix"],
        opaque: [config: "config", resources: "resources", replicas: "replicas",
                 extra_volume_mounts: "extraVolumeMounts", extra_volumes: "extraVolumes"],
    }
}

deployment_settings! {
    /// `spec.api` (`KubermaticAPIConfiguration`).
    Api {
        images: [docker_repository: "dockerRepository", docker_tag: "dockerTag", docker_tag_suffix: "dockerTagSuffix"],
        opaque: [accessible_addons: "accessibleAddons", pprof_endpoint: "pprofEndpoint",
                 resources: "resources", debug_log: "debugLog", replicas: "replicas"],
    }
}

deployment_settings! {
    /// `spec.masterController` (`KubermaticMasterControllerConfiguration`).
    MasterController {
        images: [docker_repository: "dockerRepository"],
        opaque: [projects_migrator: "projectsMigrator", pprof_endpoint: "pprofEndpoint",
                 resources: "resources", debug_log: "debugLog", replicas: "replicas"],
    }
}

deployment_settings! {
    /// `spec.webhook` (`KubermaticWebhookConfiguration`).
    Webhook {
        images: [docker_repository: "dockerRepository"],
        opaque: [pprof_endpoint: "pprofEndpoint", resources: "resources", debug_log: "debugLog",
                 replicas: "replicas"],
    }
}

deployment_settings! {
    /// `spec.seedController` (`KubermaticSeedControllerConfiguration`); the backup containers are
    /// container specs written as YAML text.
    SeedController {
        images: [docker_repository: "dockerRepository", backup_store_container: "backupStoreContainer",
                 backup_delete_container: "backupDeleteContainer",
                 backup_cleanup_container: "backupCleanupContainer"],
        opaque: [maximum_parallel_reconciles: "maximumParallelReconciles",
                 pprof_endpoint: "pprofEndpoint", resources: "resources", debug_log: "debugLog",
                 replicas: "replicas", disabled_collectors: "disabledCollectors",
                 backup_interval: "backupInterval", backup_count: "backupCount"],
    }
}

/// `spec.userCluster`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UserCluster {
    /// user-cluster-controller-manager repository override.
    #[serde(default)]
    pub kubermatic_docker_repository: Option<String>,
    /// kubeletdnat-controller repository override.
    #[serde(default)]
    pub dnat_controller_docker_repository: Option<String>,
    /// etcd-launcher repository override.
    #[serde(default)]
    pub etcd_launcher_docker_repository: Option<String>,
    /// Registry host that replaces every user-cluster image's registry at run time.
    #[serde(default)]
    pub overwrite_registry: Option<String>,
    /// `addons`.
    #[serde(default, deserialize_with = "null_default")]
    pub addons: Addons,
    /// Not interpreted.
    #[serde(default)]
    pub system_applications: Option<Value>,
    /// Not interpreted.
    #[serde(default)]
    pub applications: Option<Value>,
    /// Not interpreted.
    #[serde(default)]
    pub node_port_range: Option<Value>,
    /// Not interpreted.
    #[serde(default)]
    pub monitoring: Option<Value>,
    /// Not interpreted.
    #[serde(default, rename = "disableApiserverEndpointReconciling")]
    pub disable_apiserver_endpoint_reconciling: Option<Value>,
    /// Not interpreted.
    #[serde(default)]
    pub etcd_volume_size: Option<Value>,
    /// Not interpreted.
    #[serde(default, rename = "apiserverReplicas")]
    pub apiserver_replicas: Option<Value>,
    /// `machineController`.
    #[serde(default, deserialize_with = "null_default")]
    pub machine_controller: ImageSettings,
    /// `operatingSystemManager`.
    #[serde(default, deserialize_with = "null_default")]
    pub operating_system_manager: OsmSettings,
    /// `kubelb`.
    #[serde(default, deserialize_with = "null_default")]
    pub kubelb: ImageSettings,
    /// Not interpreted.
    #[serde(default)]
    pub kyverno: Option<Value>,
    /// Not interpreted.
    #[serde(default)]
    pub admission_plugins: Option<Value>,
}

/// `spec.userCluster.addons`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Addons {
    /// Not interpreted.
    #[serde(default)]
    pub default: Option<Value>,
    /// Not interpreted.
    #[serde(default)]
    pub default_manifests: Option<Value>,
    /// Addons image repository override.
    #[serde(default)]
    pub docker_repository: Option<String>,
    /// Addons image tag suffix.
    #[serde(default)]
    pub docker_tag_suffix: Option<String>,
}

/// `machineController` and `kubelb` under `spec.userCluster`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImageSettings {
    /// Repository override.
    #[serde(default)]
    pub image_repository: Option<String>,
    /// Tag override.
    #[serde(default)]
    pub image_tag: Option<String>,
}

/// `spec.userCluster.operatingSystemManager`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OsmSettings {
    /// Repository override.
    #[serde(default)]
    pub image_repository: Option<String>,
    /// Tag override.
    #[serde(default)]
    pub image_tag: Option<String>,
    /// Not interpreted.
    #[serde(default)]
    pub disable_default_operating_system_profiles: Option<Value>,
}

/// `spec.versions`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Versions {
    /// Supported user-cluster versions; empty = KKP's defaults.
    #[serde(default, deserialize_with = "null_default")]
    pub versions: Vec<String>,
    /// Not interpreted.
    #[serde(default)]
    pub default: Option<String>,
    /// Not interpreted.
    #[serde(default)]
    pub updates: Option<Value>,
    /// Not interpreted.
    #[serde(default)]
    pub provider_incompatibilities: Option<Value>,
    /// Not interpreted.
    #[serde(default)]
    pub external_clusters: Option<Value>,
}

/// `spec.verticalPodAutoscaler`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Vpa {
    /// `recommender`.
    #[serde(default, deserialize_with = "null_default")]
    pub recommender: VpaComponent,
    /// `updater`.
    #[serde(default, deserialize_with = "null_default")]
    pub updater: VpaComponent,
    /// `admissionController`.
    #[serde(default, deserialize_with = "null_default")]
    pub admission_controller: VpaComponent,
}

/// One VPA component.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VpaComponent {
    /// Repository override.
    #[serde(default)]
    pub docker_repository: Option<String>,
    /// Not interpreted.
    #[serde(default)]
    pub resources: Option<Value>,
}

/// `spec.applications`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Applications {
    /// Not interpreted.
    #[serde(default)]
    pub system_applications: Option<Value>,
    /// Not interpreted.
    #[serde(default)]
    pub default_application_catalog: Option<Value>,
    /// Not interpreted.
    #[serde(default)]
    pub catalog_manager: Option<Value>,
}

/// One image the configuration itself names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigImage {
    /// What it is (`mirrorImages`, `etcd-backup-store` …).
    pub name: String,
    /// Field path it came from (`spec.mirrorImages[0]`), or `default` for KKP's default.
    pub field: String,
    /// The reference as written.
    pub image: String,
}

/// Reads and strictly parses a configuration file.
pub fn load(path: &Path) -> Result<KubermaticConfiguration, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Strictly parses configuration text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<KubermaticConfiguration, ConfigError> {
    if text.trim_start_matches('\u{feff}').trim().is_empty() {
        return Err(ConfigError::Parse {
            file: file.to_string(),
            line: 1,
            column: 1,
            message: "the file is empty; expected a KubermaticConfiguration".into(),
        });
    }
    let cfg: KubermaticConfiguration =
        serde_saphyr::from_str(text).map_err(|e| parse_error(&e, text, file, 0))?;
    let invalid = |field: &str, message: String| ConfigError::Invalid {
        file: file.to_string(),
        field: field.to_string(),
        message,
    };
    if cfg.api_version != API_VERSION {
        return Err(invalid(
            "apiVersion",
            format!("is {:?}, want {API_VERSION:?}", cfg.api_version),
        ));
    }
    if cfg.kind != KIND {
        return Err(invalid("kind", format!("is {:?}, want {KIND:?}", cfg.kind)));
    }
    for (i, image) in cfg.spec.mirror_images.iter().enumerate() {
        let field = format!("spec.mirrorImages[{i}]");
        let r = ImageRef::parse(image.trim()).map_err(|e| invalid(&field, e.to_string()))?;
        // KKP's ValidateMirrorImages insists on a tag.
        if !image.contains('@') && !has_explicit_tag(image) {
            return Err(invalid(
                &field,
                format!("{image:?} has no tag (want repository:tag)"),
            ));
        }
        let _ = r;
    }
    for (i, v) in cfg.spec.versions.versions.iter().enumerate() {
        if super::catalog::lenient_version(v).is_none() {
            return Err(invalid(
                &format!("spec.versions.versions[{i}]"),
                format!("{v:?} is not a version"),
            ));
        }
    }
    Ok(cfg)
}

/// A strict-parse error as `file:line:column: message`, the message naming the field's path.
/// `line_offset` is added to the line (for a document that starts further down its file).
pub(crate) fn parse_error(e: &serde_saphyr::Error, text: &str, file: &str, line_offset: u64) -> ConfigError {
    let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
    let raw = match e {
        serde_saphyr::Error::Message { msg, .. } => msg.clone(),
        other => crate::yamledit::data_error_message(other),
    };
    // serde lists every expected field; the path says more than that list.
    let mut message = raw
        .split(", expected")
        .next()
        .unwrap_or(&raw)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    if message.starts_with("unknown field") {
        let path = yaml_parent_path(text, line as usize);
        if !path.is_empty() {
            message.push_str(&format!(" in {path}"));
        }
    }
    ConfigError::Parse {
        file: file.to_string(),
        line: if line == 0 { 0 } else { line + line_offset },
        column,
        message,
    }
}

pub(crate) fn has_explicit_tag(image: &str) -> bool {
    let last = image.rsplit('/').next().unwrap_or(image);
    last.contains(':')
}

/// The dotted path of the mapping that contains the key on `line` (1-based), from indentation.
/// Works for block-style YAML, which is what configuration files are; flow style yields less.
fn yaml_parent_path(text: &str, line: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if line == 0 || line > lines.len() {
        return String::new();
    }
    let indent_of = |l: &str| l.len() - l.trim_start_matches([' ', '-']).len();
    let mut want = indent_of(lines[line - 1]);
    let mut parts: Vec<String> = Vec::new();
    for l in lines[..line - 1].iter().rev() {
        let body = l.trim_start();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let ind = indent_of(l);
        if ind >= want {
            continue;
        }
        let key = l
            .trim_start_matches([' ', '-'])
            .split_once(':')
            .map(|(k, _)| k.trim().trim_matches(['"', '\'']).to_string());
        if let Some(k) = key.filter(|k| !k.is_empty() && !k.contains(' ')) {
            if l.trim_start().starts_with('-') {
                // A list item's own key: the list is further up.
                want = ind;
                continue;
            }
            parts.push(k);
        }
        want = ind;
        if ind == 0 {
            break;
        }
    }
    parts.reverse();
    parts.join(".")
}

impl KubermaticConfiguration {
    /// The value of an override field by its path (`spec.ui.dockerRepository`), if set and not empty.
    pub fn override_value(&self, field: &str) -> Option<String> {
        let s = &self.spec;
        let uc = &s.user_cluster;
        let vpa = &s.vertical_pod_autoscaler;
        let v = match field {
            "spec.api.dockerRepository" => &s.api.docker_repository,
            "spec.api.dockerTag" => &s.api.docker_tag,
            "spec.api.dockerTagSuffix" => &s.api.docker_tag_suffix,
            "spec.ui.dockerRepository" => &s.ui.docker_repository,
            "spec.ui.dockerTag" => &s.ui.docker_tag,
            "spec.ui.dockerTagSuffix" => &s.ui.docker_tag_suffix,
            "spec.masterController.dockerRepository" => &s.master_controller.docker_repository,
            "spec.seedController.dockerRepository" => &s.seed_controller.docker_repository,
            "spec.webhook.dockerRepository" => &s.webhook.docker_repository,
            "spec.userCluster.kubermaticDockerRepository" => &uc.kubermatic_docker_repository,
            "spec.userCluster.dnatControllerDockerRepository" => &uc.dnat_controller_docker_repository,
            "spec.userCluster.etcdLauncherDockerRepository" => &uc.etcd_launcher_docker_repository,
            "spec.userCluster.addons.dockerRepository" => &uc.addons.docker_repository,
            "spec.userCluster.addons.dockerTagSuffix" => &uc.addons.docker_tag_suffix,
            "spec.userCluster.machineController.imageRepository" => &uc.machine_controller.image_repository,
            "spec.userCluster.machineController.imageTag" => &uc.machine_controller.image_tag,
            "spec.userCluster.operatingSystemManager.imageRepository" => {
                &uc.operating_system_manager.image_repository
            }
            "spec.userCluster.operatingSystemManager.imageTag" => &uc.operating_system_manager.image_tag,
            "spec.userCluster.kubelb.imageRepository" => &uc.kubelb.image_repository,
            "spec.userCluster.kubelb.imageTag" => &uc.kubelb.image_tag,
            "spec.verticalPodAutoscaler.recommender.dockerRepository" => &vpa.recommender.docker_repository,
            "spec.verticalPodAutoscaler.updater.dockerRepository" => &vpa.updater.docker_repository,
            "spec.verticalPodAutoscaler.admissionController.dockerRepository" => {
                &vpa.admission_controller.docker_repository
            }
            "spec.applications.catalogManager.image.repository"
            | "spec.applications.catalogManager.image.tag" => {
                let key = field.rsplit('.').next().unwrap_or_default();
                return s
                    .applications
                    .catalog_manager
                    .as_ref()?
                    .pointer(&format!("/image/{key}"))?
                    .as_str()
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(str::to_string);
            }
            _ => return None,
        };
        v.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    }

    /// `spec.applications.defaultApplicationCatalog`: `None` unless `enable: true`, else the apps it
    /// limits the catalog to (empty = all).
    pub fn default_application_catalog(&self) -> Option<Vec<String>> {
        let c = self.spec.applications.default_application_catalog.as_ref()?;
        if c.get("enable").and_then(Value::as_bool) != Some(true) {
            return None;
        }
        Some(
            c.get("applications")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default(),
        )
    }

    /// The KKP release `status.kubermaticVersion` names (`v2.30.6`), if any.
    pub fn kubermatic_version(&self) -> Option<String> {
        let v = self.status.as_ref()?.get("kubermaticVersion")?.as_str()?.trim();
        (!v.is_empty()).then(|| v.to_string())
    }

    /// The edition `status.kubermaticEdition` names (`Enterprise Edition`, `ee`, …), if any.
    pub fn edition(&self) -> Option<super::Edition> {
        let e = self.status.as_ref()?.get("kubermaticEdition")?.as_str()?;
        match e.trim().to_lowercase().as_str() {
            "ee" | "enterprise edition" => Some(super::Edition::Ee),
            "ce" | "community edition" => Some(super::Edition::Ce),
            _ => None,
        }
    }

    /// Images the configuration names itself: `spec.mirrorImages` and the etcd backup containers
    /// (KKP's default container when a field is empty).
    pub fn images(&self, file: &str) -> Result<Vec<ConfigImage>, ConfigError> {
        let mut out: Vec<ConfigImage> = self
            .spec
            .mirror_images
            .iter()
            .enumerate()
            .map(|(i, image)| ConfigImage {
                name: "mirrorImages".into(),
                field: format!("spec.mirrorImages[{i}]"),
                image: image.trim().to_string(),
            })
            .collect();
        let sc = &self.spec.seed_controller;
        for (name, field, value, default) in [
            (
                "etcd-backup-store",
                "spec.seedController.backupStoreContainer",
                &sc.backup_store_container,
                true,
            ),
            (
                "etcd-backup-delete",
                "spec.seedController.backupDeleteContainer",
                &sc.backup_delete_container,
                true,
            ),
            (
                "etcd-backup-cleanup",
                "spec.seedController.backupCleanupContainer",
                &sc.backup_cleanup_container,
                false,
            ),
        ] {
            match value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                Some(text) => {
                    let image = container_image(text).map_err(|message| ConfigError::Invalid {
                        file: file.to_string(),
                        field: field.to_string(),
                        message,
                    })?;
                    out.push(ConfigImage {
                        name: name.into(),
                        field: field.into(),
                        image,
                    });
                }
                None if default => out.push(ConfigImage {
                    name: name.into(),
                    field: "default".into(),
                    image: DEFAULT_BACKUP_IMAGE.into(),
                }),
                None => {}
            }
        }
        Ok(out)
    }
}

/// Default etcd backup images when there is no configuration file at all.
pub fn default_images() -> Vec<ConfigImage> {
    ["etcd-backup-store", "etcd-backup-delete"]
        .into_iter()
        .map(|name| ConfigImage {
            name: name.into(),
            field: "default".into(),
            image: DEFAULT_BACKUP_IMAGE.into(),
        })
        .collect()
}

/// The `image` of a container spec given as YAML text.
fn container_image(text: &str) -> Result<String, String> {
    let v: Value = serde_saphyr::from_str(text).map_err(|e| format!("not a container spec: {e}"))?;
    v.get("image")
        .and_then(Value::as_str)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| "container spec has no image".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
apiVersion: kubermatic.k8c.io/v1
kind: KubermaticConfiguration
metadata:
  name: kubermatic
  namespace: kubermatic
spec:
  ingress:
    domain: kkp.example.com
  auth:
    clientID: kubermatic
  featureGates:
    VerticalPodAutoscaler: true
  ui:
    dockerRepository: reg.local/kubermatic/dashboard
    replicas: 2
    nodeSelector: {role: infra}
  userCluster:
    addons:
      dockerRepository: reg.local/kubermatic/addons
    machineController:
      imageTag: v1.66.9
  versions:
    versions:
      - v1.34.2
      - 1.35.7
  applications:
    catalogManager:
      image:
        tag: abc123
  mirrorImages:
    - docker.io/library/busybox:1.37
    - quay.io/foo/bar:1.0
  seedController:
    backupStoreContainer: |
      name: store
      image: reg.local/s3cmd:2.4
";

    #[test]
    fn a_realistic_configuration_loads() {
        let cfg = parse(GOOD, "k.yaml").unwrap();
        assert_eq!(cfg.spec.versions.versions, ["v1.34.2", "1.35.7"]);
        assert_eq!(
            cfg.override_value("spec.ui.dockerRepository").as_deref(),
            Some("reg.local/kubermatic/dashboard")
        );
        assert_eq!(
            cfg.override_value("spec.userCluster.machineController.imageTag")
                .as_deref(),
            Some("v1.66.9")
        );
        assert_eq!(cfg.override_value("spec.api.dockerRepository"), None);
        assert_eq!(
            cfg.override_value("spec.applications.catalogManager.image.tag")
                .as_deref(),
            Some("abc123")
        );
        let images = cfg.images("k.yaml").unwrap();
        let pairs: Vec<(&str, &str)> = images
            .iter()
            .map(|i| (i.field.as_str(), i.image.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("spec.mirrorImages[0]", "docker.io/library/busybox:1.37"),
                ("spec.mirrorImages[1]", "quay.io/foo/bar:1.0"),
                ("spec.seedController.backupStoreContainer", "reg.local/s3cmd:2.4"),
                ("default", DEFAULT_BACKUP_IMAGE),
            ]
        );
    }

    #[test]
    fn edition_comes_from_the_status() {
        assert_eq!(parse(GOOD, "k.yaml").unwrap().edition(), None);
        let ee =
            format!("{GOOD}status:\n  kubermaticEdition: Enterprise Edition\n  kubermaticVersion: v2.31.0\n");
        assert_eq!(
            parse(&ee, "k.yaml").unwrap().edition(),
            Some(super::super::Edition::Ee)
        );
        let ce = format!("{GOOD}status:\n  kubermaticEdition: Community Edition\n");
        assert_eq!(
            parse(&ce, "k.yaml").unwrap().edition(),
            Some(super::super::Edition::Ce)
        );
    }

    #[test]
    fn unknown_field_names_line_column_and_path() {
        let text = GOOD.replace("    replicas: 2\n", "    replicas: 2\n    foo: bar\n");
        let e = parse(&text, "kubermatic.yaml").unwrap_err().to_string();
        assert!(e.starts_with("kubermatic.yaml:16:5: "), "{e}");
        assert!(e.contains("unknown field `foo`"), "{e}");
        assert!(e.ends_with("in spec.ui"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn null_reads_as_unset_like_in_go() {
        // KKP's generated example (docs/zz_generated.kubermaticConfiguration.ce.yaml) writes nulls.
        let text = "apiVersion: kubermatic.k8c.io/v1\nkind: KubermaticConfiguration\nspec:\n  \
                    mirrorImages: null\n  ui: null\n  versions:\n    versions: null\n  api:\n    \
                    dockerRepository: null\n    tolerations: null\n";
        let cfg = parse(text, "k.yaml").unwrap();
        assert!(cfg.spec.mirror_images.is_empty() && cfg.spec.versions.versions.is_empty());
        assert_eq!(cfg.override_value("spec.api.dockerRepository"), None);
    }

    #[test]
    fn a_field_of_another_deployment_is_unknown_here() {
        // `accessibleAddons` belongs to spec.api; KKP rejects it under spec.ui.
        let text = GOOD.replace("    replicas: 2\n", "    replicas: 2\n    accessibleAddons: []\n");
        let e = parse(&text, "k.yaml").unwrap_err().to_string();
        assert!(e.contains("unknown field `accessibleAddons` in spec.ui"), "{e}");
    }

    #[test]
    fn unknown_top_level_spec_key_is_an_error() {
        let text = GOOD.replace("  mirrorImages:\n", "  mirrorImagez:\n");
        let e = parse(&text, "k.yaml").unwrap_err().to_string();
        assert!(e.starts_with("k.yaml:30:3: "), "{e}");
        assert!(e.contains("unknown field `mirrorImagez` in spec"), "{e}");
    }

    #[test]
    fn malformed_yaml_names_the_line() {
        let text =
            "apiVersion: kubermatic.k8c.io/v1\nkind: KubermaticConfiguration\nspec:\n  ui: [unclosed\n";
        let e = parse(text, "k.yaml").unwrap_err();
        match &e {
            ConfigError::Parse { line, .. } => assert!(*line >= 4, "{e}"),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn wrong_api_version_or_kind_is_an_error() {
        let e = parse(
            &GOOD.replace("kubermatic.k8c.io/v1", "kubermatic.k8s.io/v1"),
            "k.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("apiVersion") && e.contains("kubermatic.k8s.io/v1"),
            "{e}"
        );
        let e = parse(
            &GOOD.replace("kind: KubermaticConfiguration", "kind: Seed"),
            "k.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("kind") && e.contains("Seed"), "{e}");
    }

    #[test]
    fn untagged_mirror_image_and_bad_version_are_rejected() {
        let e = parse(&GOOD.replace("quay.io/foo/bar:1.0", "quay.io/foo/bar"), "k.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("spec.mirrorImages[1]"), "{e}");
        let e = parse(&GOOD.replace("- 1.35.7", "- one.two"), "k.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("spec.versions.versions[1]"), "{e}");
    }

    #[test]
    fn parent_path_follows_indentation_and_lists() {
        let t = "a:\n  b:\n    - c: 1\n      d: 2\n  e: 3\n";
        assert_eq!(yaml_parent_path(t, 4), "a.b");
        assert_eq!(yaml_parent_path(t, 5), "a");
        assert_eq!(yaml_parent_path(t, 1), "");
    }
}
