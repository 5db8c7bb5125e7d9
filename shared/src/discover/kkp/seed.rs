//! Seeds (`kubermatic.k8c.io/v1` Seed): strict loading and the images a Seed implies.
//!
//! A Seed names images of its own: each datacenter's `node.pauseImage` (the kubelet's pod-infra image on
//! that datacenter's nodes), and repository overrides for the seed-level nodeport-proxy
//! (`spec.nodeportProxy.{envoy,envoyManager,updater}.dockerRepository`) and the per-cluster nodeport-proxy
//! envoy (`spec.defaultComponentSettings.nodePortProxyEnvoy.dockerRepository`). The overrides are ignored
//! unless asked for, like the KubermaticConfiguration's, so a retargeted Seed can be fed back.
//!
//! Loading is as strict as for the configuration: unknown fields in the parts read here are errors naming
//! file, line and path. A file may hold several YAML documents (KKP's `seed.example.yaml` puts the
//! kubeconfig Secret first) or be a `List` (`kubectl get seeds -o yaml`); documents and items of other
//! kinds are skipped, and a file without a Seed is an error. List items are checked as strictly, but their
//! errors name the item instead of a line.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::config::{ConfigError, parse_error};
use crate::reference::ImageRef;

/// The `kind` of a Seed.
pub const KIND: &str = "Seed";

/// A Seed, with the parts that matter for images typed and the rest of `spec` kept opaque.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Seed {
    /// Must be `kubermatic.k8c.io/v1`.
    pub api_version: String,
    /// Must be `Seed`.
    pub kind: String,
    /// Object metadata (only `name` is used, in messages).
    #[serde(default)]
    pub metadata: Option<Value>,
    /// The spec.
    pub spec: SeedSpec,
    /// Status (not interpreted).
    #[serde(default)]
    pub status: Option<Value>,
}

/// `spec`: every key of KKP v2.31's `SeedSpec` (`sdk/apis/kubermatic/v1/datacenter.go`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SeedSpec {
    /// `country` (not interpreted).
    #[serde(default)]
    pub country: Option<Value>,
    /// `location` (not interpreted).
    #[serde(default)]
    pub location: Option<Value>,
    /// `kubeconfig` (not interpreted).
    #[serde(default)]
    pub kubeconfig: Option<Value>,
    /// `datacenters`: datacenter name → datacenter.
    #[serde(default, deserialize_with = "null_default")]
    pub datacenters: BTreeMap<String, Datacenter>,
    /// `seedDNSOverwrite` (not interpreted).
    #[serde(default, rename = "seedDNSOverwrite")]
    pub seed_dns_overwrite: Option<Value>,
    /// `nodeportProxy`.
    #[serde(default, deserialize_with = "null_default")]
    pub nodeport_proxy: NodeportProxy,
    /// `proxySettings` (not interpreted).
    #[serde(default)]
    pub proxy_settings: Option<Value>,
    /// `exposeStrategy` (not interpreted).
    #[serde(default)]
    pub expose_strategy: Option<Value>,
    /// `mla` (not interpreted).
    #[serde(default)]
    pub mla: Option<Value>,
    /// `defaultComponentSettings` (only `nodePortProxyEnvoy.dockerRepository` is read).
    #[serde(default)]
    pub default_component_settings: Option<Value>,
    /// `defaultClusterTemplate` (not interpreted).
    #[serde(default)]
    pub default_cluster_template: Option<Value>,
    /// `metering` (not interpreted).
    #[serde(default)]
    pub metering: Option<Value>,
    /// `etcdBackupRestore` (not interpreted).
    #[serde(default)]
    pub etcd_backup_restore: Option<Value>,
    /// `oidcProviderConfiguration` (not interpreted).
    #[serde(default)]
    pub oidc_provider_configuration: Option<Value>,
    /// `authenticationConfiguration` (not interpreted).
    #[serde(default)]
    pub authentication_configuration: Option<Value>,
    /// `kubelb` (not interpreted).
    #[serde(default)]
    pub kubelb: Option<Value>,
    /// `disabledCollectors` (not interpreted).
    #[serde(default)]
    pub disabled_collectors: Option<Value>,
    /// `managementProxySettings` (not interpreted).
    #[serde(default)]
    pub management_proxy_settings: Option<Value>,
    /// `defaultAPIServerAllowedIPRanges` (not interpreted).
    #[serde(default, rename = "defaultAPIServerAllowedIPRanges")]
    pub default_api_server_allowed_ip_ranges: Option<Value>,
    /// `auditLogging` (not interpreted).
    #[serde(default)]
    pub audit_logging: Option<Value>,
    /// `kyverno` (not interpreted).
    #[serde(default)]
    pub kyverno: Option<Value>,
}

/// `spec.nodeportProxy` (`NodeportProxyConfig`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeportProxy {
    /// `disable` (not interpreted: the images are listed anyway).
    #[serde(default)]
    pub disable: Option<Value>,
    /// `annotations` (not interpreted).
    #[serde(default)]
    pub annotations: Option<Value>,
    /// `envoy`.
    #[serde(default, deserialize_with = "null_default")]
    pub envoy: NodeportProxyComponent,
    /// `envoyManager`.
    #[serde(default, deserialize_with = "null_default")]
    pub envoy_manager: NodeportProxyComponent,
    /// `updater`.
    #[serde(default, deserialize_with = "null_default")]
    pub updater: NodeportProxyComponent,
    /// `ipFamilyPolicy` (not interpreted).
    #[serde(default)]
    pub ip_family_policy: Option<Value>,
    /// `ipFamilies` (not interpreted).
    #[serde(default)]
    pub ip_families: Option<Value>,
}

/// A nodeport-proxy component (`NodeportProxyComponent`, plus the envoy-only keys).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeportProxyComponent {
    /// `dockerRepository`: the repository override.
    #[serde(default)]
    pub docker_repository: Option<String>,
    /// `resources` (not interpreted).
    #[serde(default)]
    pub resources: Option<Value>,
    /// `hostAntiAffinity` (not interpreted).
    #[serde(default)]
    pub host_anti_affinity: Option<Value>,
    /// `zoneAntiAffinity` (not interpreted).
    #[serde(default)]
    pub zone_anti_affinity: Option<Value>,
    /// `replicas` (envoy only; not interpreted).
    #[serde(default)]
    pub replicas: Option<Value>,
    /// `loadBalancerService` (envoy only; not interpreted).
    #[serde(default)]
    pub load_balancer_service: Option<Value>,
    /// `connectionSettings` (envoy only; not interpreted).
    #[serde(default)]
    pub connection_settings: Option<Value>,
}

/// `spec.datacenters.<name>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Datacenter {
    /// `country` (not interpreted).
    #[serde(default)]
    pub country: Option<Value>,
    /// `location` (not interpreted).
    #[serde(default)]
    pub location: Option<Value>,
    /// `node`.
    #[serde(default, deserialize_with = "null_default")]
    pub node: NodeSettings,
    /// `spec` (the provider settings; not interpreted).
    pub spec: Value,
}

/// `spec.datacenters.<name>.node` (`NodeSettings`: proxy settings and container-runtime options inline).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeSettings {
    /// `httpProxy` (not interpreted).
    #[serde(default)]
    pub http_proxy: Option<Value>,
    /// `noProxy` (not interpreted).
    #[serde(default)]
    pub no_proxy: Option<Value>,
    /// `insecureRegistries` (not interpreted).
    #[serde(default)]
    pub insecure_registries: Option<Value>,
    /// `registryMirrors` (not interpreted).
    #[serde(default)]
    pub registry_mirrors: Option<Value>,
    /// `pauseImage`: the kubelet's `--pod-infra-container-image` on this datacenter's nodes.
    #[serde(default)]
    pub pause_image: Option<String>,
    /// `containerdRegistryMirrors` (not interpreted).
    #[serde(default)]
    pub containerd_registry_mirrors: Option<Value>,
    /// `enableNonRootDeviceOwnership` (not interpreted).
    #[serde(default)]
    pub enable_non_root_device_ownership: Option<Value>,
}

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// An image a Seed names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedImage {
    /// What it is (`pause`, `nodeport-proxy-envoy` …).
    pub name: String,
    /// Where in the Seed: `spec.datacenters.<dc>.node.pauseImage`.
    pub field: String,
    /// The reference.
    pub image: String,
}

/// A Seed as read from a file, with where it came from.
#[derive(Debug, Clone)]
pub struct LoadedSeed {
    /// The file as given.
    pub file: String,
    /// 1-based line its document starts on.
    pub line: u64,
    /// The Seed.
    pub seed: Seed,
}

impl LoadedSeed {
    /// `metadata.name`, or `?` when it has none.
    pub fn name(&self) -> String {
        self.seed
            .metadata
            .as_ref()
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string()
    }

    /// The images this Seed implies. `envoy_tag` and `kkp_tag` are the tags KKP pairs with the
    /// envoy and nodeport-proxy repositories; the repository overrides count only when
    /// `respect_overrides` is set (else they are logged and ignored). Errors name file, Seed and field.
    pub fn images(
        &self,
        respect_overrides: bool,
        envoy_tag: &str,
        kkp_tag: &str,
    ) -> Result<Vec<SeedImage>, ConfigError> {
        let seed = self.name();
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            file: self.file.clone(),
            field: format!("Seed {seed} {field}"),
            message,
        };
        let mut out = Vec::new();
        for (dc, d) in &self.seed.spec.datacenters {
            let Some(image) = d
                .node
                .pause_image
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
            else {
                continue;
            };
            let field = format!("spec.datacenters.{dc}.node.pauseImage");
            ImageRef::parse(image).map_err(|e| invalid(&field, e.to_string()))?;
            out.push(SeedImage {
                name: "pause".into(),
                field: field.clone(),
                image: image.to_string(),
            });
        }
        let np = &self.seed.spec.nodeport_proxy;
        let component_envoy = self
            .seed
            .spec
            .default_component_settings
            .as_ref()
            .and_then(|v| v.pointer("/nodePortProxyEnvoy/dockerRepository"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let overrides = [
            (
                "nodeport-proxy-envoy",
                "spec.nodeportProxy.envoy.dockerRepository",
                &np.envoy.docker_repository,
                envoy_tag,
            ),
            (
                "nodeport-proxy",
                "spec.nodeportProxy.envoyManager.dockerRepository",
                &np.envoy_manager.docker_repository,
                kkp_tag,
            ),
            (
                "nodeport-proxy",
                "spec.nodeportProxy.updater.dockerRepository",
                &np.updater.docker_repository,
                kkp_tag,
            ),
            (
                "nodeport-proxy-envoy",
                "spec.defaultComponentSettings.nodePortProxyEnvoy.dockerRepository",
                &component_envoy,
                envoy_tag,
            ),
        ];
        for (name, field, repo, tag) in overrides {
            let Some(repo) = repo.as_deref().map(str::trim).filter(|s| !s.is_empty()) else {
                continue;
            };
            if !respect_overrides {
                tracing::info!(
                    file = %self.file,
                    seed = %seed,
                    field,
                    repository = repo,
                    "repository override ignored (use --respect-repository-overrides to mirror from it)"
                );
                continue;
            }
            if repo.contains('@') || super::config::has_explicit_tag(repo) {
                return Err(invalid(
                    field,
                    format!("{repo:?} is a repository with a tag or digest; KKP wants a repository only"),
                ));
            }
            let image = format!("{repo}:{tag}");
            ImageRef::parse(&image).map_err(|e| invalid(field, e.to_string()))?;
            out.push(SeedImage {
                name: name.into(),
                field: field.to_string(),
                image,
            });
        }
        Ok(out)
    }
}

/// Reads a Seed file: every `Seed` document in it (other kinds are skipped). No Seed is an error.
pub fn load(path: &Path) -> Result<Vec<LoadedSeed>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Parses Seed file text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Vec<LoadedSeed>, ConfigError> {
    let mut seeds = Vec::new();
    for (offset, doc) in documents(text) {
        if doc
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            continue;
        }
        let loose: Value = serde_saphyr::from_str(doc).map_err(|e| parse_error(&e, doc, file, offset))?;
        let kind = loose.get("kind").and_then(Value::as_str).unwrap_or_default();
        if kind == "List" || kind == "SeedList" {
            // `kubectl get seeds -o yaml`: the Seeds are the items (others are skipped).
            let list: SeedListDoc =
                serde_saphyr::from_str(doc).map_err(|e| parse_error(&e, doc, file, offset))?;
            for (i, item) in list.items.into_iter().enumerate() {
                if item.get("kind").and_then(Value::as_str) != Some(KIND) {
                    continue;
                }
                let seed: Seed = serde_json::from_value(item).map_err(|e| ConfigError::Invalid {
                    file: file.to_string(),
                    field: format!("items[{i}] (list at line {})", offset + 1),
                    // serde lists every expected field; the field's name says enough.
                    message: e
                        .to_string()
                        .split(", expected")
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                })?;
                check_api_version(&seed, file, offset)?;
                seeds.push(LoadedSeed {
                    file: file.to_string(),
                    line: offset + 1,
                    seed,
                });
            }
            continue;
        }
        if kind != KIND {
            tracing::debug!(
                file,
                line = offset + 1,
                kind,
                "skipping a document that is not a Seed"
            );
            continue;
        }
        let seed: Seed = serde_saphyr::from_str(doc).map_err(|e| parse_error(&e, doc, file, offset))?;
        check_api_version(&seed, file, offset)?;
        seeds.push(LoadedSeed {
            file: file.to_string(),
            line: offset + 1,
            seed,
        });
    }
    if seeds.is_empty() {
        return Err(ConfigError::Invalid {
            file: file.to_string(),
            field: "kind".into(),
            message: format!("no {} Seed in the file", super::config::API_VERSION),
        });
    }
    Ok(seeds)
}

/// A `List` document (`kubectl get seeds -o yaml`): items are checked as Seeds one by one.
#[derive(Debug, Deserialize)]
struct SeedListDoc {
    #[serde(default)]
    items: Vec<Value>,
}

fn check_api_version(seed: &Seed, file: &str, offset: u64) -> Result<(), ConfigError> {
    if seed.api_version == super::config::API_VERSION {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        file: file.to_string(),
        field: format!("apiVersion (document at line {})", offset + 1),
        message: format!("is {:?}, want {:?}", seed.api_version, super::config::API_VERSION),
    })
}

/// Splits multi-document YAML at `---` lines: (number of lines before the document, its text).
fn documents(text: &str) -> Vec<(u64, &str)> {
    let text = text.trim_start_matches('\u{feff}');
    let mut out = Vec::new();
    let mut start_byte = 0usize;
    let mut start_line = 0u64;
    let mut pos = 0usize;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let body = line.trim_end();
        if body == "---" || body.starts_with("--- ") {
            out.push((start_line, &text[start_byte..pos]));
            start_byte = pos + line.len();
            start_line = i as u64 + 1;
        }
        pos += line.len();
    }
    out.push((start_line, &text[start_byte..]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "\
apiVersion: v1
kind: Secret
metadata:
  name: kubeconfig
data:
  kubeconfig: eA==
---
apiVersion: kubermatic.k8c.io/v1
kind: Seed
metadata:
  name: europe
  namespace: kubermatic
spec:
  country: DE
  kubeconfig:
    name: kubeconfig
  nodeportProxy:
    envoy:
      dockerRepository: reg.local/envoyproxy/envoy
      replicas: 3
    updater:
      dockerRepository: reg.local/kubermatic/nodeport-proxy
  defaultComponentSettings:
    nodePortProxyEnvoy:
      dockerRepository: reg.local/envoy-per-cluster
  datacenters:
    fra:
      country: DE
      node:
        pauseImage: registry.k8s.io/pause:3.10
        registryMirrors: [reg.local]
      spec:
        aws:
          region: eu-central-1
    ber:
      spec:
        hetzner: {}
";

    #[test]
    fn secrets_are_skipped_and_pause_images_found() {
        let seeds = parse(SEED, "seed.yaml").unwrap();
        assert_eq!(seeds.len(), 1);
        assert_eq!(seeds[0].line, 8);
        assert_eq!(seeds[0].name(), "europe");
        let images = seeds[0].images(false, "distroless-v1.37.0", "v2.31.0").unwrap();
        assert_eq!(
            images,
            [SeedImage {
                name: "pause".into(),
                field: "spec.datacenters.fra.node.pauseImage".into(),
                image: "registry.k8s.io/pause:3.10".into(),
            }]
        );
    }

    #[test]
    fn overrides_count_only_when_respected() {
        let seeds = parse(SEED, "seed.yaml").unwrap();
        let images: Vec<String> = seeds[0]
            .images(true, "distroless-v1.37.0", "v2.31.0")
            .unwrap()
            .into_iter()
            .map(|i| i.image)
            .collect();
        assert_eq!(
            images,
            [
                "registry.k8s.io/pause:3.10",
                "reg.local/envoyproxy/envoy:distroless-v1.37.0",
                "reg.local/kubermatic/nodeport-proxy:v2.31.0",
                "reg.local/envoy-per-cluster:distroless-v1.37.0",
            ]
        );
    }

    #[test]
    fn unknown_fields_name_file_line_and_path() {
        let bad = SEED.replace("        registryMirrors: [reg.local]", "        pause_image: x:1");
        let e = parse(&bad, "seed.yaml").unwrap_err().to_string();
        assert!(e.starts_with("seed.yaml:31:9:"), "{e}");
        assert!(e.contains("unknown field `pause_image`"), "{e}");
        assert!(e.contains("spec.datacenters.fra.node"), "{e}");
        let bad = SEED.replace("  country: DE\n  kubeconfig", "  countries: DE\n  kubeconfig");
        let e = parse(&bad, "seed.yaml").unwrap_err().to_string();
        assert!(e.starts_with("seed.yaml:14:"), "{e}");
    }

    #[test]
    fn bad_values_and_files_without_a_seed_are_errors() {
        let bad = SEED.replace("registry.k8s.io/pause:3.10", "Not An Image");
        let seeds = parse(&bad, "seed.yaml").unwrap();
        let e = seeds[0].images(false, "t", "v2.31.0").unwrap_err().to_string();
        assert!(
            e.starts_with("seed.yaml: Seed europe spec.datacenters.fra.node.pauseImage:"),
            "{e}"
        );
        let seeds = parse(
            &SEED.replace("reg.local/envoyproxy/envoy", "reg.local/envoy:v1"),
            "s.yaml",
        )
        .unwrap();
        let e = seeds[0].images(true, "t", "v2.31.0").unwrap_err().to_string();
        assert!(e.contains("spec.nodeportProxy.envoy.dockerRepository"), "{e}");
        let e = parse("apiVersion: v1\nkind: Secret\n", "s.yaml")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "s.yaml: kind: no kubermatic.k8c.io/v1 Seed in the file");
        let e = parse(
            &SEED.replace("kubermatic.k8c.io/v1", "kubermatic.k8s.io/v1"),
            "s.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("apiVersion (document at line 8)"), "{e}");
    }

    #[test]
    fn kubectl_lists_of_seeds_are_read() {
        let list = "apiVersion: v1
kind: List
metadata:
  resourceVersion: \"\"
items:
- apiVersion: kubermatic.k8c.io/v1
  kind: Seed
  metadata: {name: a, managedFields: []}
  spec:
    datacenters:
      dc1:
        node: {pauseImage: reg.local/pause:3.10}
        spec: {aws: {}}
  status: {phase: Healthy}
";
        let seeds = parse(list, "seeds.yaml").unwrap();
        assert_eq!(seeds.len(), 1);
        assert_eq!(seeds[0].name(), "a");
        let images = seeds[0].images(false, "t", "v2.31.0").unwrap();
        assert_eq!(images[0].image, "reg.local/pause:3.10");
        let bad = list.replace("pauseImage", "pause_image");
        let e = parse(&bad, "seeds.yaml").unwrap_err().to_string();
        assert_eq!(
            e,
            "seeds.yaml: items[0] (list at line 1): unknown field `pause_image`"
        );
    }
}
