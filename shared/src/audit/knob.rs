//! Which knob moves an image: the KubermaticConfiguration repository field (KKP's defaults applied, the
//! same table `retarget` edits), `spec.userCluster.overwriteRegistry` for what KKP deploys into user
//! clusters, the Helm release and the values key `retarget` sets (learned from the charts as retarget
//! learns them), the addon, or nothing: a user workload, "not managed by KKP". Also the configuration's
//! own repository fields, which are findings even before anything is rolled out.
//!
//! Pure: no cluster, no registry. Knows the knob tables through [`crate::knobs`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::AuditError;
use super::report::{Row, Status};
use super::walk::{ImageUse, Scope};
use crate::knobs::config::{OVERWRITE_REGISTRY, REPOSITORY_FIELDS, SYSTEM_APPLICATIONS_HELM_REPOSITORY};
use crate::knobs::{
    Edition, ImageKey, KeyKind, ValueSource, effective_knobs, glob_match, is_under, learn_charts,
};
use crate::reference::ImageRef;
// The key as `retarget -o set` prints it: the exact key retarget sets.
use crate::retarget::values::set_key;

/// The image keys learned from `--charts-path` (empty without it).
#[derive(Debug, Clone, Default)]
pub struct ChartKeys(pub Vec<ImageKey>);

impl ChartKeys {
    /// Learns every chart's image keys below `root` with the values files, as `retarget` does.
    pub fn learn(root: &Path, values: &[PathBuf], helm: Option<&Path>) -> Result<ChartKeys, AuditError> {
        learn_charts(root, values, helm, Duration::from_secs(300))
            .map(ChartKeys)
            .map_err(|e| AuditError::Charts(e.to_string()))
    }

    /// The values key that decides `image` in the chart an object came from: the chart named by its
    /// `helm.sh/chart` label, else the one named like its release, else the only chart below
    /// `--charts-path` whose repository keys default to this image (a chart directory need not be named
    /// like its `Chart.yaml`: `logging/alloy` is `grafana-alloy`).
    pub fn key_of(&self, chart: &str, release: &str, image: &ImageRef) -> Option<String> {
        self.key_for(chart, image)
            .or_else(|| self.key_for(release, image))
            .or_else(|| {
                let mut found: Vec<String> = self
                    .0
                    .iter()
                    .map(|k| k.chart.clone())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .filter_map(|c| {
                        self.key_for(&c, image)
                            .filter(|_| self.sets_repository(&c, image))
                    })
                    .collect();
                found.dedup();
                (found.len() == 1).then(|| found.remove(0))
            })
    }

    /// True when a repository or whole-image key of `chart` (not only a registry key) decides `image`.
    fn sets_repository(&self, chart: &str, image: &ImageRef) -> bool {
        let repo = format!("{}/{}", image.registry, image.repository);
        let norm = |s: &str| {
            ImageRef::parse(s)
                .ok()
                .map(|r| format!("{}/{}", r.registry, r.repository))
        };
        self.0.iter().filter(|k| k.chart == chart).any(|k| match &k.kind {
            KeyKind::Repository {
                registry, repository, ..
            } => {
                let full = registry
                    .as_ref()
                    .map_or(repository.clone(), |r| format!("{r}/{repository}"));
                norm(&full).as_deref() == Some(repo.as_str())
            }
            KeyKind::Whole { image: default, .. } => norm(default).as_deref() == Some(repo.as_str()),
            KeyKind::GlobalRegistry { .. } => false,
        })
    }

    /// The values key of chart `chart` (directory name) that decides `image`.
    pub fn key_for(&self, chart: &str, image: &ImageRef) -> Option<String> {
        let repo = format!("{}/{}", image.registry, image.repository);
        let norm = |s: &str| {
            ImageRef::parse(s)
                .ok()
                .map(|r| format!("{}/{}", r.registry, r.repository))
        };
        let ours = self
            .0
            .iter()
            .filter(|k| k.chart.rsplit('/').next() == Some(chart) || k.chart == chart);
        let mut registry_key = None;
        for k in ours {
            match &k.kind {
                KeyKind::Repository {
                    map,
                    repo_key,
                    registry,
                    repository,
                } => {
                    let full = match registry {
                        Some(r) => format!("{r}/{repository}"),
                        None => repository.clone(),
                    };
                    if norm(&full).as_deref() == Some(repo.as_str()) {
                        return Some(format!("{}.{repo_key}", set_key(map)));
                    }
                }
                KeyKind::Whole { path, image: default } => {
                    if norm(default).as_deref() == Some(repo.as_str()) {
                        return Some(set_key(path));
                    }
                }
                KeyKind::GlobalRegistry { path, default } => {
                    let d = default.trim_end_matches('/');
                    if !d.is_empty() && (repo.starts_with(&format!("{d}/")) || image.registry == d) {
                        registry_key.get_or_insert_with(|| set_key(path));
                    }
                }
            }
        }
        registry_key
    }
}

/// What classification needs besides the image.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The private registry.
    pub registry: String,
    /// The KubermaticConfiguration, when it was read.
    pub config: Option<Value>,
    /// Learned chart keys.
    pub keys: ChartKeys,
    /// `--charts-path`, for the fixing command.
    pub charts_path: Option<PathBuf>,
    /// `--helm-values`, for the fixing command.
    pub helm_values: Vec<PathBuf>,
    /// The registry's host is an `--insecure-registry` (plain HTTP, or HTTPS without certificate checks).
    pub insecure: bool,
}

/// The edition of a live configuration: `status.kubermaticEdition`, else what its repository fields imply.
pub fn edition_of(config: &Value) -> Edition {
    let status = config
        .pointer("/status/kubermaticEdition")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if status.eq_ignore_ascii_case("ee") {
        Edition::Ee
    } else {
        crate::knobs::config::edition_of(config)
    }
}

/// The repository fields that decide an image today with their effective values: those the
/// configuration sets, and the always-defaulted ones at KKP's default (a field empty by default leaves
/// its image to `overwriteRegistry`, which is then the knob).
pub fn effective_fields(config: &Value) -> Vec<(&'static str, String)> {
    let knobs = effective_knobs(config, edition_of(config));
    REPOSITORY_FIELDS
        .iter()
        .filter_map(|f| {
            let k = knobs.iter().find(|k| k.path == f.path)?;
            let keep = k.source == ValueSource::Set || (k.source == ValueSource::Default && f.always);
            keep.then(|| (f.path, k.value.clone().unwrap_or_default()))
        })
        .collect()
}

fn live_fix(registry: &str) -> String {
    format!("kubectl kkp retarget --registry {registry} --live")
}

/// Findings about the configuration itself: every repository field, `overwriteRegistry` and
/// `systemApplications.helmRepository` that is not under the registry; with an `insecure` mirror, the
/// chart repositories' connection (`plainHTTP` / `insecureSkipTLSVerify`, KKP v2.30+) left at verified
/// HTTPS, with which KKP cannot pull the mirrored charts.
pub fn configuration_rows(config: &Value, registry: &str, insecure: bool) -> Vec<Row> {
    let name = config
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("?");
    let ns = config
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let row = |field: &str, value: String| Row {
        status: Status::Leak,
        cluster: "master".into(),
        namespace: ns.to_string(),
        object: format!("KubermaticConfiguration/{name}"),
        container: field.to_string(),
        image: value,
        knob: format!("KubermaticConfiguration {field}"),
        fix: Some(live_fix(registry)),
        message: None,
    };
    let mut rows = Vec::new();
    for (field, value) in effective_fields(config) {
        if !is_under(&value, registry) {
            rows.push(row(field, value));
        }
    }
    let knobs = effective_knobs(config, edition_of(config));
    let value = |path: &str| {
        knobs
            .iter()
            .find(|k| k.path == path)
            .and_then(|k| k.value.clone())
    };
    let ow = value(OVERWRITE_REGISTRY).unwrap_or_default();
    let ow = ow.as_str();
    if ow.trim_end_matches('/') != registry && !is_under(ow, registry) {
        rows.push(row(
            OVERWRITE_REGISTRY,
            if ow.is_empty() {
                "(unset)".into()
            } else {
                ow.into()
            },
        ));
    }
    let helm = value(SYSTEM_APPLICATIONS_HELM_REPOSITORY).unwrap_or_default();
    let bare = helm.strip_prefix("oci://").unwrap_or(&helm);
    if !is_under(bare, registry) {
        rows.push(row(SYSTEM_APPLICATIONS_HELM_REPOSITORY, helm));
    }
    if insecure {
        let catalog = config
            .pointer("/spec/applications/defaultApplicationCatalog")
            .is_some();
        for (parent, wanted) in [("systemApplications", true), ("applications", catalog)] {
            let at = |key: &str| config.pointer(&format!("/spec/userCluster/{parent}/{key}"));
            let on = |key: &str| at(key).and_then(Value::as_bool) == Some(true);
            if !wanted || on("plainHTTP") || on("insecureSkipTLSVerify") {
                continue;
            }
            let field = format!("spec.userCluster.{parent}.plainHTTP");
            let host = registry.split('/').next().unwrap_or(registry);
            rows.push(Row {
                status: Status::Misconfigured,
                knob: format!(
                    "KubermaticConfiguration {field}: the mirror is plain HTTP (or its certificate is not \
                     verified), but KKP pulls the {} charts over verified HTTPS",
                    if parent == "applications" {
                        "default catalog's"
                    } else {
                        "system Applications'"
                    }
                ),
                fix: Some(format!(
                    "{} --plain-http (--insecure-skip-tls-verify for HTTPS with an untrusted certificate)",
                    live_fix(registry)
                )),
                ..row(&field, host.to_string())
            });
        }
    }
    rows
}

/// Which KubermaticConfiguration field `repo` (`host/path`) comes from, preferring the one whose
/// component the object's name suggests when several fields share a default.
fn field_for(
    fields: &[(&'static str, String)],
    repo: &str,
    object: &str,
    scope: Scope,
) -> Option<&'static str> {
    let norm = |s: &str| {
        ImageRef::parse(s)
            .ok()
            .map(|r| format!("{}/{}", r.registry, r.repository))
    };
    // The field's value, or KKP's default for it: a Pod started before the field was retargeted still
    // runs the default's image, and it is still that field that moves it.
    let is_default = |f: &str| {
        REPOSITORY_FIELDS.iter().any(|rf| {
            rf.path == f && rf.always && [rf.ce, rf.ee].iter().any(|d| norm(d).as_deref() == Some(repo))
        })
    };
    let matches: Vec<&'static str> = fields
        .iter()
        .filter(|(f, v)| norm(v).as_deref() == Some(repo) || is_default(f))
        .map(|(f, _)| *f)
        .collect();
    let hint = |f: &str| {
        let o = object.to_ascii_lowercase();
        match f {
            "spec.api.dockerRepository" => o.contains("api"),
            "spec.ui.dockerRepository" => o.contains("dashboard") || o.contains("ui"),
            "spec.masterController.dockerRepository" => o.contains("master-controller"),
            "spec.seedController.dockerRepository" => o.contains("seed-controller"),
            "spec.webhook.dockerRepository" => o.contains("webhook"),
            "spec.userCluster.kubermaticDockerRepository" => scope != Scope::Master,
            _ => false,
        }
    };
    matches
        .iter()
        .copied()
        .find(|f| hint(f))
        .or(matches.first().copied())
}

/// The knob and fixing command of one image outside the registry.
pub fn knob_of(u: &ImageUse, ctx: &Context) -> (String, Option<String>) {
    let reg = &ctx.registry;
    let parsed = ImageRef::parse(&u.image).ok();
    let repo = parsed
        .as_ref()
        .map(|r| format!("{}/{}", r.registry, r.repository))
        .unwrap_or_default();
    if let Some(release) = &u.release {
        let chart_label = u.chart.clone().unwrap_or_default();
        // `helm.sh/chart` is `<name>-<version>`: the name is what precedes the last `-<digit…>`.
        let chart = chart_label
            .rmatch_indices('-')
            .map(|(i, _)| i)
            .find(|&i| {
                let v = chart_label[i + 1..].trim_start_matches('v');
                v.starts_with(|c: char| c.is_ascii_digit())
            })
            .map_or(chart_label.as_str(), |i| &chart_label[..i]);
        let key = parsed.as_ref().and_then(|p| ctx.keys.key_of(chart, release, p));
        let charts = ctx
            .charts_path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "CHARTS".into());
        let values = if ctx.helm_values.is_empty() {
            " --helm-values VALUES".to_string()
        } else {
            ctx.helm_values
                .iter()
                .map(|v| format!(" --helm-values {}", v.display()))
                .collect()
        };
        let chart_part = if chart.is_empty() {
            String::new()
        } else {
            format!(" (chart {chart})")
        };
        let knob = match key {
            Some(k) => format!("Helm release {release}{chart_part}, values key {k}"),
            None if ctx.keys.0.is_empty() => {
                format!(
                    "Helm release {release}{chart_part}: its image values (give --charts-path for the exact key)"
                )
            }
            None => format!(
                "Helm release {release}{chart_part}: hard-coded in a template (no key of its values sets this image): a \
                 containerd registry mirror on the nodes, or --allow"
            ),
        };
        return (
            knob,
            Some(format!(
                "kubectl kkp retarget --registry {reg} --charts-path {charts}{values} --yes, then helm upgrade {release}"
            )),
        );
    }
    let fields = ctx.config.as_ref().map(effective_fields).unwrap_or_default();
    let kkp_place = match u.scope {
        Scope::Master => u.namespace == crate::kube::DEFAULT_NAMESPACE,
        Scope::Seed => u.namespace == crate::kube::DEFAULT_NAMESPACE || u.namespace.starts_with("cluster-"),
        Scope::User => {
            u.addon.is_some() || u.namespace == "kube-system" || u.namespace.starts_with("kubermatic")
        }
    };
    if let Some(addon) = &u.addon {
        return (
            format!("addon {addon}: KubermaticConfiguration {OVERWRITE_REGISTRY}"),
            Some(live_fix(reg)),
        );
    }
    if kkp_place {
        if let Some(f) = field_for(&fields, &repo, &u.object, u.scope) {
            return (format!("KubermaticConfiguration {f}"), Some(live_fix(reg)));
        }
        if u.scope != Scope::Master {
            return (
                format!("KubermaticConfiguration {OVERWRITE_REGISTRY}"),
                Some(live_fix(reg)),
            );
        }
        return (
            "deployed by the KKP operator; no configuration field sets this image: a containerd registry mirror on \
             the nodes, or --allow"
                .into(),
            None,
        );
    }
    (
        "not managed by KKP (a user workload): change its image, or --allow".into(),
        None,
    )
}

/// True when an `--allow` pattern matches the image as written or normalised.
pub fn allowed(allow: &[String], image: &str) -> bool {
    let normalised = ImageRef::parse(image)
        .map(|r| r.to_string())
        .unwrap_or_else(|_| image.to_string());
    allow
        .iter()
        .any(|p| glob_match(p, image) || glob_match(p, &normalised))
}

/// True when the image is under the registry (as written or normalised).
pub fn under(image: &str, registry: &str) -> bool {
    is_under(image, registry) || ImageRef::parse(image).is_ok_and(|r| is_under(&r.to_string(), registry))
}

/// The leak rows of every image outside the registry (and the configuration's), and the number of
/// distinct images.
pub fn classify(uses: &[ImageUse], ctx: &Context, allow: &[String]) -> (Vec<Row>, usize) {
    let mut rows = Vec::new();
    if let Some(c) = &ctx.config {
        rows.extend(
            configuration_rows(c, &ctx.registry, ctx.insecure)
                .into_iter()
                .filter(|r| !allowed(allow, &r.image)),
        );
    }
    let mut images = std::collections::BTreeSet::new();
    for u in uses {
        images.insert(u.image.as_str());
        if under(&u.image, &ctx.registry) {
            continue;
        }
        if allowed(allow, &u.image) {
            tracing::info!(
                "{} {} {}: {} allowed by --allow",
                u.cluster,
                u.namespace,
                u.object,
                u.image
            );
            continue;
        }
        let (knob, fix) = knob_of(u, ctx);
        rows.push(Row {
            status: Status::Leak,
            cluster: u.cluster.clone(),
            namespace: u.namespace.clone(),
            object: u.object.clone(),
            container: u.container.clone(),
            image: u.image.clone(),
            knob,
            fix,
            message: u.pull_error.clone(),
        });
    }
    (rows, images.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn image_use(scope: Scope, namespace: &str, object: &str, image: &str) -> ImageUse {
        ImageUse {
            cluster: "c".into(),
            scope,
            namespace: namespace.into(),
            object: object.into(),
            container: "x".into(),
            image: image.into(),
            release: None,
            chart: None,
            addon: None,
            pull_error: None,
        }
    }

    #[test]
    fn configuration_defaults_are_leaks_until_retargeted() {
        let cfg = json!({"metadata": {"name": "kkp", "namespace": "kubermatic"},
            "spec": {"ui": {"dockerRepository": "reg/kkp/kubermatic/dashboard"}, "userCluster": {"overwriteRegistry": "reg/kkp"}}});
        let rows = configuration_rows(&cfg, "reg/kkp", false);
        let fields: Vec<&str> = rows.iter().map(|r| r.container.as_str()).collect();
        assert!(fields.contains(&"spec.api.dockerRepository"), "{fields:?}");
        assert!(!fields.contains(&"spec.ui.dockerRepository"), "{fields:?}");
        assert!(!fields.contains(&OVERWRITE_REGISTRY), "{fields:?}");
        assert!(
            fields.contains(&SYSTEM_APPLICATIONS_HELM_REPOSITORY),
            "{fields:?}"
        );
    }

    #[test]
    fn a_plain_http_mirror_needs_the_chart_connection_kkp_pulls_with() {
        let retargeted = |sys: Value| {
            json!({"metadata": {"name": "kkp", "namespace": "kubermatic"},
                "spec": {"applications": {"defaultApplicationCatalog": {"enable": true}},
                         "userCluster": {"overwriteRegistry": "reg:5000/kkp", "systemApplications": sys}}})
        };
        let misconfigured = |cfg: &Value, insecure: bool| -> Vec<String> {
            configuration_rows(cfg, "reg:5000/kkp", insecure)
                .into_iter()
                .filter(|r| r.status == Status::Misconfigured)
                .map(|r| format!("{} {} {}", r.container, r.image, r.fix.unwrap_or_default()))
                .collect()
        };
        let repo = "oci://reg:5000/kkp/kubermatic-mirror/helm-charts";
        let cfg = retargeted(json!({"helmRepository": repo}));
        let rows = misconfigured(&cfg, true);
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert!(
            rows[0]
                .starts_with("spec.userCluster.systemApplications.plainHTTP reg:5000 kubectl kkp retarget")
        );
        assert!(rows[0].contains("--live --plain-http"), "{rows:?}");
        assert!(
            rows[1].starts_with("spec.userCluster.applications.plainHTTP"),
            "{rows:?}"
        );
        // A verified HTTPS mirror needs nothing; either setting satisfies an insecure one.
        assert!(misconfigured(&cfg, false).is_empty());
        let mut fixed = retargeted(json!({"helmRepository": repo, "plainHTTP": true}));
        fixed["spec"]["userCluster"]["applications"] = json!({"insecureSkipTLSVerify": true});
        assert!(
            misconfigured(&fixed, true).is_empty(),
            "{:?}",
            misconfigured(&fixed, true)
        );
        // The string "true" is not KKP's boolean.
        let quoted = retargeted(json!({"helmRepository": repo, "plainHTTP": "true"}));
        assert_eq!(misconfigured(&quoted, true).len(), 2);
    }

    #[test]
    fn knobs_follow_where_the_image_runs() {
        let ctx = Context {
            registry: "reg/kkp".into(),
            config: Some(json!({"spec": {}})),
            ..Default::default()
        };
        let k = |u: ImageUse| knob_of(&u, &ctx).0;
        assert_eq!(
            k(image_use(
                Scope::Master,
                "kubermatic",
                "Deployment/kubermatic-api",
                "quay.io/kubermatic/dashboard:v2.31.0"
            )),
            "KubermaticConfiguration spec.api.dockerRepository"
        );
        assert_eq!(
            k(image_use(
                Scope::Seed,
                "cluster-abc",
                "Deployment/etcd",
                "quay.io/kubermatic/etcd-launcher:v2.31.0"
            )),
            "KubermaticConfiguration spec.userCluster.etcdLauncherDockerRepository"
        );
        assert_eq!(
            k(image_use(
                Scope::Seed,
                "cluster-abc",
                "Deployment/apiserver",
                "registry.k8s.io/kube-apiserver:v1.33.0"
            )),
            "KubermaticConfiguration spec.userCluster.overwriteRegistry"
        );
        assert!(
            k(image_use(Scope::User, "shop", "Deployment/web", "nginx")).starts_with("not managed by KKP")
        );
    }

    #[test]
    fn allow_patterns_match_written_and_normalised_images() {
        assert!(allowed(&["docker.io/library/*".into()], "nginx:1.27"));
        assert!(!allowed(&["quay.io/*".into()], "nginx:1.27"));
        assert!(under("reg/kkp/x:1", "reg/kkp"));
        assert!(!under("reg/kkpx/x:1", "reg/kkp"));
    }
}
