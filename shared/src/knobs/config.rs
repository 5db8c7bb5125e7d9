//! The KubermaticConfiguration's image knobs: which fields name image repositories and KKP's defaults
//! for them, the chart repository of the system Applications, and `overwriteRegistry`.
//!
//! `retarget` edits these fields, `audit` reads them from a running install; both need the same table.
//! Knows KKP's field names and default repositories; knows nothing of edits, files, diffs or Helm.

use serde_json::Value;

use crate::yamledit::{YamlDoc, YamlPath};

/// Which KKP edition's default repositories are used (`dashboard` vs `dashboard-ee` …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Edition {
    /// Community edition.
    #[default]
    Ce,
    /// Enterprise edition.
    Ee,
}

/// A KubermaticConfiguration field holding an image repository (no tag), with its KKP default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepositoryField {
    /// Dotted path below the object root.
    pub path: &'static str,
    /// Default repository (community edition).
    pub ce: &'static str,
    /// Default repository (enterprise edition).
    pub ee: &'static str,
    /// Set even when the user's file does not have it (false: only rewritten when present and non-empty,
    /// for fields that are empty by default and covered by `overwriteRegistry`).
    pub always: bool,
}

const KKP: &str = "quay.io/kubermatic/kubermatic";
const KKP_EE: &str = "quay.io/kubermatic/kubermatic-ee";
const DASHBOARD: &str = "quay.io/kubermatic/dashboard";
const DASHBOARD_EE: &str = "quay.io/kubermatic/dashboard-ee";

const fn always(path: &'static str, ce: &'static str, ee: &'static str) -> RepositoryField {
    RepositoryField {
        path,
        ce,
        ee,
        always: true,
    }
}

const fn if_set(path: &'static str, ce: &'static str) -> RepositoryField {
    RepositoryField {
        path,
        ce,
        ee: ce,
        always: false,
    }
}

/// Every repository field of `kubermatic.k8c.io/v1` KubermaticConfiguration with its default
/// (KKP `pkg/defaulting/configuration.go`, `images_ce.go`/`images_ee.go`).
pub const REPOSITORY_FIELDS: &[RepositoryField] = &[
    always("spec.api.dockerRepository", DASHBOARD, DASHBOARD_EE),
    always("spec.ui.dockerRepository", DASHBOARD, DASHBOARD_EE),
    always("spec.masterController.dockerRepository", KKP, KKP_EE),
    always("spec.seedController.dockerRepository", KKP, KKP_EE),
    always("spec.webhook.dockerRepository", KKP, KKP_EE),
    always("spec.userCluster.kubermaticDockerRepository", KKP, KKP_EE),
    always(
        "spec.userCluster.dnatControllerDockerRepository",
        "quay.io/kubermatic/kubeletdnat-controller",
        "quay.io/kubermatic/kubeletdnat-controller",
    ),
    always(
        "spec.userCluster.etcdLauncherDockerRepository",
        "quay.io/kubermatic/etcd-launcher",
        "quay.io/kubermatic/etcd-launcher",
    ),
    always(
        "spec.userCluster.addons.dockerRepository",
        "quay.io/kubermatic/addons",
        "quay.io/kubermatic/addons",
    ),
    always(
        "spec.verticalPodAutoscaler.recommender.dockerRepository",
        "registry.k8s.io/autoscaling/vpa-recommender",
        "registry.k8s.io/autoscaling/vpa-recommender",
    ),
    always(
        "spec.verticalPodAutoscaler.updater.dockerRepository",
        "registry.k8s.io/autoscaling/vpa-updater",
        "registry.k8s.io/autoscaling/vpa-updater",
    ),
    always(
        "spec.verticalPodAutoscaler.admissionController.dockerRepository",
        "registry.k8s.io/autoscaling/vpa-admission-controller",
        "registry.k8s.io/autoscaling/vpa-admission-controller",
    ),
    // Empty by default (KKP then uses its built-in image, rewritten by overwriteRegistry); an explicit
    // value is a source the user chose, so it is retargeted keeping its path.
    if_set(
        "spec.userCluster.machineController.imageRepository",
        "quay.io/kubermatic/machine-controller",
    ),
    if_set(
        "spec.userCluster.operatingSystemManager.imageRepository",
        "quay.io/kubermatic/operating-system-manager",
    ),
    if_set(
        "spec.userCluster.kubelb.imageRepository",
        "quay.io/kubermatic/kubelb-ccm-ee",
    ),
    // Only in KKP releases that have the catalog manager; not added to files that do not mention it.
    if_set(
        "spec.applications.catalogManager.image.repository",
        "quay.io/kubermatic/application-catalog-manager",
    ),
];

/// Where KKP's system Applications (Cilium, the cluster autoscaler) and the default application catalog
/// take their Helm charts from: KKP v2.31.0 `pkg/applicationdefinitions/system-applications/*.yaml` name
/// `oci://quay.io/kubermatic-mirror/helm-charts`, and `application_catalog.go` replaces that URL with
/// `helmRepository` when set. `mirror` copies those charts to `REG/kubermatic-mirror/helm-charts/<chart>`.
pub const SYSTEM_APPLICATIONS_CHARTS: &str = "quay.io/kubermatic-mirror/helm-charts";

/// `spec.userCluster.systemApplications.helmRepository` (`SystemApplicationsConfiguration`), always set.
pub const SYSTEM_APPLICATIONS_HELM_REPOSITORY: &str = "spec.userCluster.systemApplications.helmRepository";

/// `spec.applications.defaultApplicationCatalog` (`DefaultApplicationCatalogSettings`): its
/// `helmRepository` is set only when the configuration has this block.
pub const DEFAULT_APPLICATION_CATALOG: &str = "spec.applications.defaultApplicationCatalog";

/// Path of `overwriteRegistry`, which rewrites the registry of every user-cluster image at run time.
pub const OVERWRITE_REGISTRY: &str = "spec.userCluster.overwriteRegistry";

/// True when `value` already names something below `registry`.
pub fn is_under(value: &str, registry: &str) -> bool {
    let reg = registry.trim_end_matches('/');
    value.len() > reg.len() && value.starts_with(reg) && value.as_bytes()[reg.len()] == b'/'
}

/// Index of the KubermaticConfiguration document in a stream: the one with that `kind`, else the only one.
pub fn find_document(doc: &YamlDoc) -> Option<usize> {
    let kind = YamlPath::keys(["kind"]);
    (0..doc.document_count())
        .find(|&i| doc.get_str(i, &kind) == Some("KubermaticConfiguration"))
        .or_else(|| (doc.document_count() <= 1).then_some(0))
}

/// Enterprise when any repository field already names an `-ee` image (`kubermatic-ee`, `dashboard-ee`).
pub fn detect_edition(doc: &YamlDoc) -> Edition {
    let Some(index) = find_document(doc) else {
        return Edition::Ce;
    };
    let ee = REPOSITORY_FIELDS.iter().filter(|f| f.ce != f.ee).any(|f| {
        YamlPath::parse(f.path)
            .ok()
            .and_then(|p| doc.get_str(index, &p))
            .is_some_and(|v| v.ends_with("-ee"))
    });
    if ee { Edition::Ee } else { Edition::Ce }
}

/// The edition a parsed KubermaticConfiguration implies: enterprise when any repository field names an
/// `-ee` image, as [`detect_edition`] decides for a file.
pub fn edition_of(config: &Value) -> Edition {
    let ee = REPOSITORY_FIELDS
        .iter()
        .filter(|f| f.ce != f.ee)
        .any(|f| str_at(config, f.path).is_some_and(|v| v.ends_with("-ee")));
    if ee { Edition::Ee } else { Edition::Ce }
}

/// Where the value of a [`ConfigKnob`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueSource {
    /// The configuration sets it (non-empty).
    Set,
    /// KKP's default applies.
    Default,
    /// Not set and KKP has no default (`overwriteRegistry`: images keep their own registries).
    Unset,
}

/// One image knob of a KubermaticConfiguration with the value KKP works with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigKnob {
    /// Dotted path below the object root (`spec.webhook.dockerRepository`).
    pub path: String,
    /// The user's value, else KKP's default; `None` when [`ValueSource::Unset`].
    pub value: Option<String>,
    /// Where `value` comes from.
    pub source: ValueSource,
}

/// Every image knob of a parsed KubermaticConfiguration (the whole object, `spec` below its root) with
/// its effective value: each [`REPOSITORY_FIELDS`] entry (the user's value, else the `edition`'s
/// default; for the fields empty by default that is the built-in image's repository, before
/// `overwriteRegistry` rewrites its registry), [`SYSTEM_APPLICATIONS_HELM_REPOSITORY`] (default
/// `oci://` + [`SYSTEM_APPLICATIONS_CHARTS`]), the default application catalog's `helmRepository`
/// (only when the configuration has [`DEFAULT_APPLICATION_CATALOG`]) and [`OVERWRITE_REGISTRY`]. In
/// that order; values as written (no normalisation).
pub fn effective_knobs(config: &Value, edition: Edition) -> Vec<ConfigKnob> {
    let knob = |path: &str, default: Option<&str>| {
        let (value, source) = match (str_at(config, path), default) {
            (Some(v), _) => (Some(v.to_string()), ValueSource::Set),
            (None, Some(d)) => (Some(d.to_string()), ValueSource::Default),
            (None, None) => (None, ValueSource::Unset),
        };
        ConfigKnob {
            path: path.to_string(),
            value,
            source,
        }
    };
    let mut out: Vec<ConfigKnob> = REPOSITORY_FIELDS
        .iter()
        .map(|f| {
            knob(
                f.path,
                Some(match edition {
                    Edition::Ce => f.ce,
                    Edition::Ee => f.ee,
                }),
            )
        })
        .collect();
    let charts = format!("oci://{SYSTEM_APPLICATIONS_CHARTS}");
    out.push(knob(SYSTEM_APPLICATIONS_HELM_REPOSITORY, Some(&charts)));
    if at(config, DEFAULT_APPLICATION_CATALOG).is_some() {
        out.push(knob(
            &format!("{DEFAULT_APPLICATION_CATALOG}.helmRepository"),
            Some(&charts),
        ));
    }
    out.push(knob(OVERWRITE_REGISTRY, None));
    out
}

fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, key| v.get(key))
}

/// The non-empty string at a dotted path.
fn str_at<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixtures() -> std::path::PathBuf {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/retarget")
    }

    #[test]
    fn enterprise_is_detected_from_the_file() {
        let ee = YamlDoc::parse("kind: KubermaticConfiguration\nspec:\n  webhook:\n    dockerRepository: quay.io/kubermatic/kubermatic-ee\n").unwrap();
        assert_eq!(detect_edition(&ee), Edition::Ee);
        let ce =
            YamlDoc::parse(std::fs::read_to_string(fixtures().join("kubermatic.yaml")).unwrap()).unwrap();
        assert_eq!(detect_edition(&ce), Edition::Ce);
    }

    #[test]
    fn effective_knobs_are_the_users_values_else_kkps_defaults() {
        let config = json!({
            "kind": "KubermaticConfiguration",
            "spec": {
                "webhook": {"dockerRepository": "reg.local/kubermatic/kubermatic"},
                "ui": {"dockerRepository": ""},
                "userCluster": {"overwriteRegistry": "reg.local"},
            }
        });
        let knobs = effective_knobs(&config, Edition::Ee);
        let get = |p: &str| knobs.iter().find(|k| k.path == p).unwrap().clone();
        let knob = get("spec.webhook.dockerRepository");
        assert_eq!(knob.value.as_deref(), Some("reg.local/kubermatic/kubermatic"));
        assert_eq!(knob.source, ValueSource::Set);
        // Empty is not set: the edition's default applies.
        let knob = get("spec.ui.dockerRepository");
        assert_eq!(knob.value.as_deref(), Some("quay.io/kubermatic/dashboard-ee"));
        assert_eq!(knob.source, ValueSource::Default);
        let knob = get(OVERWRITE_REGISTRY);
        assert_eq!(
            (knob.value.as_deref(), knob.source),
            (Some("reg.local"), ValueSource::Set)
        );
        let knob = get(SYSTEM_APPLICATIONS_HELM_REPOSITORY);
        assert_eq!(
            (knob.value.as_deref(), knob.source),
            (
                Some("oci://quay.io/kubermatic-mirror/helm-charts"),
                ValueSource::Default
            )
        );
        assert_eq!(knobs.len(), REPOSITORY_FIELDS.len() + 2);
        assert_eq!(edition_of(&config), Edition::Ce);

        let bare = json!({"spec": {"applications": {"defaultApplicationCatalog": {"enable": true}}}});
        let knobs = effective_knobs(&bare, Edition::Ce);
        assert_eq!(knobs.len(), REPOSITORY_FIELDS.len() + 3);
        let last = knobs.last().unwrap();
        assert_eq!(
            (last.path.as_str(), last.value.as_deref(), last.source),
            (OVERWRITE_REGISTRY, None, ValueSource::Unset)
        );
        assert!(knobs.iter().any(
            |k| k.path == "spec.applications.defaultApplicationCatalog.helmRepository"
                && k.source == ValueSource::Default
        ));
        let ee = json!({"spec": {"api": {"dockerRepository": "quay.io/kubermatic/dashboard-ee"}}});
        assert_eq!(edition_of(&ee), Edition::Ee);
    }

    #[test]
    fn under_means_below_the_registry_not_a_longer_host() {
        assert!(is_under("reg.local/a", "reg.local"));
        assert!(is_under("reg.local/a", "reg.local/"));
        assert!(!is_under("reg.localx/a", "reg.local"));
        assert!(!is_under("reg.local", "reg.local"));
    }
}
