//! KKP discovery: the embedded catalog against KKP's own reconciler fixtures, and `kubectl kkp mirror`
//! with the embedded default, a configuration file, filters and bad input, through the real binary.

use std::collections::{BTreeMap, BTreeSet};

use kkp_shared::discover::kkp::catalog;
use kkp_shared::discover::kkp::{Cni, Edition, Matrix};
use semver::Version;
use serde_json::Value;

use crate::support::{fixtures, run};

/// Every image KKP v2.31.0's reconcilers render in `pkg/resources/test/fixtures` must come out of the
/// catalog for that fixture's Kubernetes version and provider.
#[test]
fn catalog_covers_kkp_control_plane_fixtures() {
    let text = std::fs::read_to_string(fixtures().join("kkp/control-plane-fixture-images.txt")).unwrap();
    let mut wanted: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(parts.len(), 3, "bad fixture line {line:?}");
        wanted
            .entry((parts[0].to_string(), parts[1].to_string()))
            .or_default()
            .insert(parts[2].to_string());
    }
    assert!(wanted.len() >= 40, "fixture covers {} combinations", wanted.len());

    let sel = catalog::select(Some("v2.31")).unwrap();
    let cnis: Vec<Cni> = sel
        .catalog
        .defaults
        .cni
        .iter()
        .flat_map(|(k, vs)| {
            vs.iter().map(move |v| Cni {
                kind: k.clone(),
                version: v.clone(),
            })
        })
        .collect();
    let mut missing = Vec::new();
    for ((version, provider), images) in &wanted {
        let m = Matrix {
            versions: vec![Version::parse(version).unwrap()],
            providers: vec![provider.clone()],
            cnis: cnis.clone(),
        };
        // The fixtures were rendered by a test build whose KKP tag is v0.0.0-test.
        let got: BTreeSet<String> = sel
            .catalog
            .images(&m, "v0.0.0-test", Edition::Ce, &|_| None)
            .into_iter()
            .map(|i| i.image)
            .collect();
        for image in images {
            if !got.contains(image) {
                missing.push(format!("{version} {provider} {image}"));
            }
        }
        // And nothing provider-specific leaks into other providers.
        if provider == "bringyourown" {
            assert!(
                !got.iter()
                    .any(|i| i.contains("cloud-controller-manager") || i.contains("csi")),
                "{version} bringyourown: {got:?}"
            );
        }
    }
    assert!(
        missing.is_empty(),
        "catalog misses fixture images:\n{}",
        missing.join("\n")
    );
}

fn mirror_json(args: &[&str]) -> Value {
    let mut all = vec!["--dry-run", "-o", "json"];
    all.extend_from_slice(args);
    let out = run("kubectl-kkp-mirror", &all);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// source → origins of a `-o json` plan.
fn sources(plan: &Value) -> BTreeMap<String, Vec<Value>> {
    plan["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["source"].as_str().unwrap().to_string(),
                e["origins"].as_array().unwrap().clone(),
            )
        })
        .collect()
}

fn apiserver_versions(images: &BTreeMap<String, Vec<Value>>) -> Vec<String> {
    let mut v: Vec<Version> = images
        .keys()
        .filter_map(|s| s.strip_prefix("registry.k8s.io/kube-apiserver:v"))
        .map(|v| Version::parse(v).unwrap())
        .collect();
    v.sort();
    v.iter().map(ToString::to_string).collect()
}

#[test]
fn no_files_lists_the_embedded_catalog_of_the_newest_release() {
    let images = sources(&mirror_json(&[]));
    let defaults = catalog::select(None).unwrap().catalog.defaults.kubernetes;
    assert_eq!(defaults.len(), 31);
    let mut want: Vec<Version> = defaults.iter().map(|v| Version::parse(v).unwrap()).collect();
    want.sort();
    assert_eq!(
        apiserver_versions(&images),
        want.iter().map(ToString::to_string).collect::<Vec<_>>()
    );
    for v in &defaults {
        for c in ["kube-controller-manager", "kube-scheduler", "kube-proxy"] {
            let image = format!("registry.k8s.io/{c}:v{v}");
            assert!(images.contains_key(&image), "missing {image}");
        }
    }
    for image in [
        "quay.io/kubermatic/kubermatic:v2.31.0",
        "quay.io/kubermatic/dashboard:v2.31.0",
        "quay.io/kubermatic/addons:v2.31.0",
        "quay.io/kubermatic/etcd-launcher:v2.31.0",
        "registry.k8s.io/etcd:3.6.12-0",
        "docker.io/grafana/agent:v0.29.0",
        "docker.io/grafana/alloy:v1.9.2",
        "quay.io/prometheus-operator/prometheus-config-reloader:v0.60.1",
        "quay.io/kubermatic/web-terminal:0.13.0",
        "quay.io/calico/node:v3.31.3",
        "quay.io/cilium/cilium:v1.19.4",
        "docker.io/d3fk/s3cmd@sha256:426f98fdc8a2c7d7a879eb0da57131e6eec4d239881448f23946216fe801b614",
    ] {
        assert!(images.contains_key(image), "missing {image}");
    }
    let origins = &images["quay.io/kubermatic/kubermatic:v2.31.0"];
    let names: BTreeSet<&str> = origins.iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert!(names.contains("seed-controller-manager") && names.contains("kubermatic-operator"));
    assert!(origins.iter().all(|o| o["source"] == "catalog"), "{origins:?}");
    assert!(!images.contains_key("quay.io/kubermatic/kubermatic-ee:v2.31.0"));
}

#[test]
fn kkp_version_selects_the_catalog_and_tag() {
    let images = sources(&mirror_json(&["--kkp-version", "2.31.3"]));
    assert!(images.contains_key("quay.io/kubermatic/kubermatic:v2.31.3"));
    assert!(!images.contains_key("quay.io/kubermatic/kubermatic:v2.31.0"));
}

#[test]
fn configuration_versions_mirror_images_and_ignored_overrides() {
    let config = fixtures().join("kkp/kubermatic.yaml");
    let images = sources(&mirror_json(&["--config", config.to_str().unwrap()]));
    assert_eq!(apiserver_versions(&images), ["1.34.2", "1.35.7"]);
    let busybox = &images["docker.io/library/busybox:1.37.0"];
    assert_eq!(busybox[0]["source"], "config");
    assert_eq!(busybox[0]["field"], "spec.mirrorImages[0]");
    assert!(images.contains_key("quay.io/example/tool:v1.2.3"));
    // The backup store container comes from the file; delete keeps KKP's default.
    assert_eq!(
        images["docker.io/d3fk/s3cmd:2.4.0"][0]["field"],
        "spec.seedController.backupStoreContainer"
    );
    assert!(
        images
            .keys()
            .any(|k| k.starts_with("docker.io/d3fk/s3cmd@sha256:"))
    );
    // Overrides are ignored by default: sources stay upstream, so a retargeted file can be fed back.
    assert!(images.contains_key("quay.io/kubermatic/dashboard:v2.31.0"));
    assert!(images.contains_key("quay.io/kubermatic/machine-controller:v1.66.2"));
    assert!(
        !images.keys().any(|k| k.starts_with("reg.local")),
        "{:?}",
        images.keys()
    );
}

#[test]
fn respected_overrides_replace_sources() {
    let config = fixtures().join("kkp/kubermatic.yaml");
    let images = sources(&mirror_json(&[
        "-configuration-file",
        config.to_str().unwrap(),
        "--respect-repository-overrides",
    ]));
    let ui = &images["reg.local:5000/kkp/kubermatic/dashboard:v2.31.0"];
    assert_eq!(ui[0]["source"], "config");
    assert_eq!(ui[0]["name"], "kubermatic-ui");
    assert_eq!(ui[0]["field"], "spec.ui.dockerRepository");
    assert!(images.contains_key("reg.local:5000/kkp/kubermatic/addons:v2.31.0"));
    assert!(images.contains_key("reg.local:5000/kkp/autoscaling/vpa-recommender:1.0.0"));
    assert!(images.contains_key("quay.io/kubermatic/machine-controller:v1.66.9"));
    // api has no override: it keeps the default repository.
    assert!(images.contains_key("quay.io/kubermatic/dashboard:v2.31.0"));
}

#[test]
fn version_and_provider_filters_narrow_the_matrix() {
    let images = sources(&mirror_json(&[
        "--version-filter",
        ">= 1.35, < 1.36",
        "--provider-filter",
        " AWS ,vsphere",
    ]));
    let versions = apiserver_versions(&images);
    assert_eq!(versions.len(), 8, "{versions:?}");
    assert!(versions.iter().all(|v| v.starts_with("1.35.")));
    assert!(images.contains_key("registry.k8s.io/provider-aws/cloud-controller-manager:v1.35.2"));
    assert!(images.contains_key("registry.k8s.io/cloud-pv-vsphere/cloud-provider-vsphere:v1.35.1"));
    assert!(
        !images
            .keys()
            .any(|k| k.contains("azure-cloud-controller-manager"))
    );
    assert!(!images.keys().any(|k| k.contains("kubevirt")));
    assert!(!images.contains_key("registry.k8s.io/etcd:3.6.12-0"));
}

fn stderr_line(out: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr.trim_end().to_string()
}

#[test]
fn unknown_field_is_an_error_with_file_line_and_path() {
    let config = fixtures().join("kkp/unknown-field.yaml");
    let path = config.to_str().unwrap();
    let out = run("kubectl-kkp-mirror", &["--dry-run", "--config", path]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr_line(&out),
        format!("error: {path}:10:5: unknown field `dockerRepositry` in spec.ui")
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn missing_config_file_is_an_error() {
    let out = run(
        "kubectl-kkp-mirror",
        &["--dry-run", "--config", "/nonexistent/kubermatic.yaml"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_line(&out).starts_with("error: /nonexistent/kubermatic.yaml: "));
}

#[test]
fn unknown_provider_lists_the_valid_ones() {
    let out = run(
        "kubectl-kkp-mirror",
        &["--dry-run", "--provider-filter", "aws,amazon"],
    );
    assert_eq!(out.status.code(), Some(2));
    let line = stderr_line(&out);
    assert!(
        line.starts_with("error: --provider-filter: unknown provider(s) amazon;"),
        "{line}"
    );
    assert!(line.contains("alibaba, anexia, aws, azure"), "{line}");
}

#[test]
fn unknown_kkp_version_lists_the_known_ones() {
    let out = run("kubectl-kkp-mirror", &["--dry-run", "--kkp-version", "v2.19"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr_line(&out),
        "error: unknown KKP version \"v2.19\": catalogs are embedded for v2.31"
    );
}

#[test]
fn version_filter_errors_are_usage_errors() {
    let out = run("kubectl-kkp-mirror", &["--dry-run", "--version-filter", ">= 2.0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_line(&out).contains("matches none of the Kubernetes versions"));
    let out = run("kubectl-kkp-mirror", &["--dry-run", "--version-filter", "newest"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_line(&out).starts_with("error: --version-filter: invalid version constraint"));
}

#[test]
fn enterprise_edition_from_the_configuration_status() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubermatic.yaml");
    std::fs::write(
        &path,
        "apiVersion: kubermatic.k8c.io/v1\n\
         kind: KubermaticConfiguration\n\
         metadata: {name: kubermatic, namespace: kubermatic}\n\
         spec:\n  versions:\n    versions: [v1.35.7]\n\
         status:\n  kubermaticEdition: Enterprise Edition\n  kubermaticVersion: v2.31.0\n",
    )
    .unwrap();
    let images = sources(&mirror_json(&["--config", path.to_str().unwrap()]));
    for image in [
        "quay.io/kubermatic/kubermatic-ee:v2.31.0",
        "quay.io/kubermatic/dashboard-ee:v2.31.0",
        "quay.io/kubermatic/kubelb-ccm-ee:v1.4.3",
        "quay.io/kubermatic/metering:v1.4.1",
        "reg.kyverno.io/kyverno/kyverno:v1.15.3",
        "registry.k8s.io/autoscaling/cluster-autoscaler:v1.35.1",
    ] {
        assert!(images.contains_key(image), "missing {image}");
    }
    assert!(!images.contains_key("quay.io/kubermatic/kubermatic:v2.31.0"));
    assert_eq!(apiserver_versions(&images), ["1.35.7"]);
}
