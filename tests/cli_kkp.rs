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
        "quay.io/cilium/cilium:v1.19.4@sha256:2eb67991eaa9368ba199c2fac2c573cb0ffdeb79184533344f42fc9a7ff6af3c",
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
    let images = sources(&mirror_json(&["--kkp-version", "2.30.4"]));
    assert!(images.contains_key("quay.io/kubermatic/kubermatic:v2.30.4"));
    assert!(!images.contains_key("quay.io/kubermatic/kubermatic:v2.31.0"));
    // A line alone is its newest embedded patch, said on stderr.
    let out = run(
        "kubectl-kkp-mirror",
        &["--dry-run", "-o", "json", "--kkp-version", "v2.30"],
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("v2.30.6"));
    let images = sources(&serde_json::from_slice(&out.stdout).unwrap());
    assert!(images.contains_key("quay.io/kubermatic/kubermatic:v2.30.6"));
    // A patch release that is not embedded is an error, never another release's facts.
    let out = run("kubectl-kkp-mirror", &["--dry-run", "--kkp-version", "2.31.3"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_line(&out)
            .starts_with("error: unknown KKP version \"2.31.3\": catalogs are embedded for v2.31.0, v2.30.6")
    );
}

/// For every embedded release, from the facts `scripts/check-kkp-catalog.sh --facts` printed from that
/// tag (`tests/fixtures/kkp/releases/<tag>.txt`): the tag's control-plane fixture images come out of the
/// catalog for each fixture's Kubernetes version and provider (test tag read as the release tag), and
/// the plan has kube-proxy for each default Kubernetes version, calico node for each canal version (from
/// quay.io or, where that release's addons say so, docker.io), and
/// KKP's single-version components at exactly that release's tag.
#[test]
fn every_embedded_release_plans_the_facts_of_its_tag() {
    let releases = catalog::known_versions();
    assert!(releases.len() >= 8, "{releases:?}");
    for tag in &releases {
        let facts = std::fs::read_to_string(fixtures().join(format!("kkp/releases/{tag}.txt"))).unwrap();
        let sel = catalog::select(Some(tag)).unwrap();
        assert_eq!(&sel.kkp_tag, tag);
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
        let mut fixtures_by: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        let (mut kubernetes, mut canal, mut components) = (Vec::new(), Vec::new(), Vec::new());
        for line in facts
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let p: Vec<&str> = line.split_whitespace().collect();
            match p.as_slice() {
                ["fixture", v, provider, image] => {
                    fixtures_by
                        .entry((v.to_string(), provider.to_string()))
                        .or_default()
                        .insert(image.to_string());
                }
                ["kubernetes", v] => kubernetes.push(v.to_string()),
                ["cni", "canal", v] => canal.push(v.to_string()),
                ["component", name, v] => components.push((name.to_string(), v.to_string())),
                _ => {}
            }
        }
        assert!(
            fixtures_by.len() >= 20 && !kubernetes.is_empty() && !canal.is_empty(),
            "{tag}: facts too thin"
        );
        let mut missing = Vec::new();
        for ((version, provider), images) in &fixtures_by {
            let m = Matrix {
                versions: vec![Version::parse(version).unwrap()],
                providers: vec![provider.clone()],
                cnis: cnis.clone(),
            };
            let got: BTreeSet<String> = sel
                .catalog
                .images(&m, tag, Edition::Ce, &|_| None)
                .into_iter()
                .map(|i| i.image)
                .collect();
            missing.extend(
                images
                    .iter()
                    .filter(|i| !got.contains(*i))
                    .map(|i| format!("{tag} {version} {provider} {i}")),
            );
        }
        assert!(
            missing.is_empty(),
            "catalog misses fixture images:\n{}",
            missing.join("\n")
        );

        let plan = mirror_json(&["--kkp-version", tag]);
        assert_eq!(plan["kkpVersions"], serde_json::json!([tag]), "{tag}");
        let images = sources(&plan);
        for v in &kubernetes {
            assert!(
                images.contains_key(&format!("registry.k8s.io/kube-proxy:v{v}")),
                "{tag}: kube-proxy v{v}"
            );
        }
        let mut want: Vec<Version> = kubernetes.iter().map(|v| Version::parse(v).unwrap()).collect();
        want.sort();
        assert_eq!(
            apiserver_versions(&images),
            want.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "{tag}"
        );
        let calico: BTreeSet<&str> = images
            .keys()
            .filter_map(|k| k.split_once("/calico/node:").map(|(_, t)| t))
            .collect();
        for minor in &canal {
            assert!(
                calico.iter().any(|t| t.starts_with(&format!("{minor}."))),
                "{tag}: no calico node for canal {minor}"
            );
        }
        let mut single = vec![
            ("quay.io/kubermatic/kubermatic:".to_string(), tag.clone()),
            ("quay.io/kubermatic/etcd-launcher:".to_string(), tag.clone()),
            ("quay.io/kubermatic/nodeport-proxy:".to_string(), tag.clone()),
        ];
        for (name, v) in &components {
            single.push((format!("quay.io/kubermatic/{name}:"), v.clone()));
        }
        for (repo, want) in &single {
            let tags: BTreeSet<&str> = images
                .keys()
                .filter_map(|k| k.strip_prefix(repo.as_str()))
                .collect();
            assert_eq!(tags, BTreeSet::from([want.as_str()]), "{tag}: {repo}");
        }
    }
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
        format!(
            "error: unknown KKP version \"v2.19\": catalogs are embedded for {}",
            catalog::known_versions().join(", ")
        )
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

/// The Cilium system application's chart images come out per Cilium version, with the chart artefact
/// itself, as KKP's mirror-images renders them (hubble-ui and its backend, certgen, cilium-envoy from
/// 1.14 on), and the catalog has every one of them for every Cilium version the release installs as a
/// system application.
#[test]
fn cilium_system_application_images_per_version() {
    let images = sources(&mirror_json(&[
        "--version-filter",
        "= 1.34.1",
        "--provider-filter",
        "aws",
    ]));
    for image in [
        "quay.io/kubermatic-mirror/helm-charts/cilium:1.19.4",
        "quay.io/kubermatic-mirror/helm-charts/cilium:1.13.0",
        "quay.io/kubermatic-mirror/helm-charts/cluster-autoscaler:9.59.0",
        "quay.io/cilium/hubble-ui:v0.13.5@sha256:f7d514fc54d784ed6df9d58cf0e97648b143f92b766dd1780ed3fc845bd4c516",
        "quay.io/cilium/hubble-ui-backend:v0.13.5@sha256:fac0c300ae119274edca11fd89b1ad23c788792d8bc4ea2ba631c709e8d3c688",
        "quay.io/cilium/certgen:v0.4.3@sha256:d63d1cb3ee6db2167cb1ca9e7e31f30b6197846fcf42505d8f59e2f090a42c86",
        "quay.io/cilium/cilium-envoy:v1.36.6-1778235340-b87d1e32f522b33bd51701c6476d199326f01496@sha256:71d4fa0ec45e8d546dbd5604e169dc77fe92be63b799313bff031d00d89762e3",
        "quay.io/cilium/operator-generic:v1.13.0@sha256:4b58d5b33e53378355f6e8ceb525ccf938b7b6f5384b35373f1f46787467ebf5",
        "quay.io/cilium/hubble-ui:v0.10.0@sha256:118ad2fcfd07fabcae4dde35ec88d33564c9ca7abe520aa45b1eb13ba36c6e0a",
    ] {
        let origins = images.get(image).unwrap_or_else(|| panic!("missing {image}"));
        assert!(origins.iter().all(|o| o["source"] == "catalog"), "{origins:?}");
    }
    let envoys: BTreeSet<&String> = images
        .keys()
        .filter(|i| i.starts_with("quay.io/cilium/cilium-envoy:"))
        .collect();
    // 1.14.1 … 1.19.4 pin 15 distinct envoy builds; the 1.13 charts have no envoy DaemonSet.
    assert_eq!(envoys.len(), 15, "{envoys:?}");

    let sel = catalog::select(Some("v2.31")).unwrap();
    let cilium: Vec<&String> = sel.catalog.defaults.cni["cilium"]
        .iter()
        .filter(|v| !v.starts_with('v'))
        .collect();
    assert_eq!(cilium.len(), 26);
    for v in cilium {
        let m = Matrix {
            versions: vec![Version::new(1, 34, 1)],
            providers: vec!["aws".into()],
            cnis: vec![Cni {
                kind: "cilium".into(),
                version: v.clone(),
            }],
        };
        let got: BTreeSet<String> = sel
            .catalog
            .images(&m, "v2.31.0", Edition::Ce, &|_| None)
            .into_iter()
            .filter(|i| i.component.starts_with("cilium-"))
            .map(|i| i.image)
            .collect();
        let mut want = vec![
            "cilium:",
            "operator-generic:",
            "hubble-relay:",
            "hubble-ui:",
            "hubble-ui-backend:",
            "certgen:",
        ];
        if !v.starts_with("1.13.") {
            want.push("cilium-envoy:");
        }
        for repo in want {
            assert!(
                got.iter()
                    .any(|i| i.starts_with(&format!("quay.io/cilium/{repo}")) && i.contains("@sha256:")),
                "cilium {v}: no {repo} in {got:?}"
            );
        }
        assert!(
            got.iter()
                .any(|i| i.starts_with(&format!("quay.io/cilium/cilium:v{v}@sha256:")))
        );
        assert!(got.contains(&format!("quay.io/kubermatic-mirror/helm-charts/cilium:{v}")));
    }
}

/// `--edition` picks the EE-only components; it wins over the configuration's status; bad values are
/// usage errors naming the valid ones.
#[test]
fn edition_flag_selects_enterprise_only_images() {
    let ee_only = "quay.io/kubermatic/kubelb-ccm-ee:v1.4.3";
    let args = ["--version-filter", "= 1.34.1", "--provider-filter", "aws"];
    let ce = sources(&mirror_json(&args));
    assert!(!ce.contains_key(ee_only));
    assert!(ce.contains_key("quay.io/kubermatic/kubermatic:v2.31.0"));
    let mut with_ee = args.to_vec();
    with_ee.extend(["--edition", "ee"]);
    let ee = sources(&mirror_json(&with_ee));
    assert!(ee.contains_key(ee_only));
    assert!(ee.contains_key("quay.io/kubermatic/kubermatic-ee:v2.31.0"));
    assert!(!ee.contains_key("quay.io/kubermatic/kubermatic:v2.31.0"));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubermatic.yaml");
    std::fs::write(
        &path,
        "apiVersion: kubermatic.k8c.io/v1\nkind: KubermaticConfiguration\n\
         status:\n  kubermaticEdition: Enterprise Edition\n",
    )
    .unwrap();
    let flag_wins = sources(&mirror_json(&[
        "--config",
        path.to_str().unwrap(),
        "--edition",
        "ce",
        "--version-filter",
        "= 1.34.1",
    ]));
    assert!(!flag_wins.contains_key(ee_only));

    let out = run("kubectl-kkp-mirror", &["--dry-run", "--edition", "enterprise"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("enterprise") && stderr.contains("ce") && stderr.contains("ee"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

/// `--seed` adds each datacenter's pause image; the Seed's nodeport-proxy repository overrides only
/// with --respect-repository-overrides; the Secret in front of the Seed is skipped.
#[test]
fn seed_files_add_pause_images_and_respected_overrides() {
    let seed = fixtures().join("kkp/seed.yaml");
    let seed = seed.to_str().unwrap();
    let args = [
        "--seed",
        seed,
        "--version-filter",
        "= 1.34.1",
        "--provider-filter",
        "aws",
    ];
    let images = sources(&mirror_json(&args));
    let origins = images
        .get("registry.k8s.io/pause:3.10")
        .unwrap_or_else(|| panic!("no pause image in {:?}", images.keys()));
    assert_eq!(origins[0]["source"], "config");
    assert_eq!(origins[0]["object"], "Seed/europe");
    assert_eq!(origins[0]["field"], "spec.datacenters.fra-aws.node.pauseImage");
    // The catalog is planned with a Seed alone.
    assert!(images.contains_key("registry.k8s.io/kube-apiserver:v1.34.1"));
    assert!(
        !images.keys().any(|i| i.starts_with("reg.local:5000/")),
        "{:?}",
        images.keys()
    );

    let mut respect = args.to_vec();
    respect.push("--respect-repository-overrides");
    let images = sources(&mirror_json(&respect));
    assert!(images.contains_key("reg.local:5000/kkp/envoyproxy/envoy:distroless-v1.37.0"));
    assert!(images.contains_key("reg.local:5000/kkp/kubermatic/nodeport-proxy:v2.31.0"));
}

#[test]
fn seed_unknown_field_is_an_error_with_file_line_and_path() {
    let path = fixtures().join("kkp/seed-unknown-field.yaml");
    let path = path.to_str().unwrap();
    let out = run("kubectl-kkp-mirror", &["--dry-run", "--seed", path]);
    assert_eq!(out.status.code(), Some(1));
    let line = stderr_line(&out);
    assert!(line.starts_with(&format!("error: {path}:9:")), "{line}");
    assert!(
        line.contains("unknown field `pause_image`") && line.contains("spec.datacenters.fra-aws.node"),
        "{line}"
    );
    assert!(out.stdout.is_empty());
    let out = run(
        "kubectl-kkp-mirror",
        &["--dry-run", "--seed", "/nonexistent/seed.yaml"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_line(&out).contains("/nonexistent/seed.yaml"));
}

/// A dry run touches no network for the addons: it warns that they were left out and how to include them.
#[test]
fn dry_run_warns_that_the_default_addons_were_skipped() {
    let plan = mirror_json(&["--version-filter", "= 1.34.1", "--provider-filter", "aws"]);
    let warnings: Vec<&str> = plan["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("addons not rendered: --dry-run")
                && w.contains("quay.io/kubermatic/addons:v2.31.0")
                && w.contains("--addons-path")
                && w.contains("--addons-image")),
        "{warnings:?}"
    );
}

/// Without --addons-path/--addons-image a real copy run pulls the addons image KKP runs (here KKP's
/// default `quay.io/kubermatic/addons:v2.31.0`, read through --source-mirror from a test registry),
/// renders its addons and copies what they name: an image only the addon knows arrives at the target
/// with its digest.
#[test]
fn a_copy_run_pulls_and_renders_the_default_addons_image() {
    use crate::support::images::{Spec, client_for, push_image};
    use crate::support::registry::Registry;
    use crate::support::{addons, block_on};

    let src = Registry::start();
    let dst = Registry::start();
    let client = client_for(&[&src, &dst]);
    let addon = b"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: only-here\nspec:\n  template:\n    spec:\n      containers:\n      - name: c\n        image: '{{ Image \"quay.io/kkp-test/only-in-addon:1\" }}'\n".to_vec();
    let layer = addons::layer(&[("addons/only-here/deployment.yaml".into(), addon)]);
    let pushed = block_on(async {
        addons::push_addons_image(&client, &src, "kubermatic/addons", "v2.31.0", layer).await;
        push_image(&client, &src, "kkp-test/only-in-addon", "1", &Spec::default()).await
    });
    let narrow = [
        "--version-filter",
        "= 1.34.1",
        "--provider-filter",
        "aws",
        "--kkp-version",
        "v2.31",
    ];

    // Every other source registry is mapped to the test registry too, where those images are missing:
    // they fail at once instead of reaching out (the test needs no network).
    let plan = mirror_json(&narrow);
    let mut hosts: BTreeSet<String> = plan["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e["source"]
                .as_str()
                .unwrap()
                .split('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    hosts.insert("quay.io".into());
    let mut args: Vec<String> = vec![
        dst.host.clone(),
        "-o".into(),
        "json".into(),
        "--parallel".into(),
        "16".into(),
    ];
    args.extend(narrow.iter().map(|s| s.to_string()));
    for h in [&src.host, &dst.host] {
        args.extend(["--insecure-registry".to_string(), h.clone()]);
    }
    for h in &hosts {
        args.extend(["--source-mirror".to_string(), format!("{h}={}", src.host)]);
    }
    let empty = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::support::bin("kubectl-kkp-mirror"))
        .args(&args)
        .env("DOCKER_CONFIG", empty.path())
        .env("REGISTRY_AUTH_FILE", empty.path().join("none.json"))
        .env_remove("XDG_RUNTIME_DIR")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The catalog's images are not in the test registry, so the run reports failures (exit 1) …
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("addons not rendered"), "{stderr}");
    // … but the image only the default addons image names was found by rendering it, and copied.
    assert_eq!(
        dst.skopeo_digest("kkp-test/only-in-addon", "1").as_deref(),
        Some(pushed.digest.as_str()),
        "{stderr}"
    );
}

/// EE with `defaultApplicationCatalog.enable`: the chart artefacts of the apps it names (all when it names
/// none); CE, or the catalog not enabled: none.
#[test]
fn enterprise_default_application_catalog_charts() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, apps: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "apiVersion: kubermatic.k8c.io/v1\nkind: KubermaticConfiguration\nspec:\n  applications:\n    \
                 defaultApplicationCatalog:\n      enable: true\n{apps}"
            ),
        )
        .unwrap();
        path.to_str().unwrap().to_string()
    };
    let some = write("some.yaml", "      applications: [argocd]\n");
    let all = write("all.yaml", "");
    let narrow = ["--version-filter", "= 1.34.1", "--provider-filter", "aws"];
    let charts = |config: &str, edition: &str| -> BTreeSet<String> {
        let mut args = vec!["--config", config, "--edition", edition];
        args.extend(narrow);
        sources(&mirror_json(&args))
            .into_iter()
            .filter(|(_, o)| {
                o.iter()
                    .any(|o| o["name"].as_str().unwrap().starts_with("default-application "))
            })
            .map(|(i, _)| i)
            .collect()
    };
    let argocd = charts(&some, "ee");
    assert!(
        argocd.contains("quay.io/kubermatic-mirror/helm-charts/argo-cd:8.0.0"),
        "{argocd:?}"
    );
    assert!(argocd.iter().all(|c| c.contains("/argo-cd:")), "{argocd:?}");
    let every = charts(&all, "ee");
    assert!(every.len() > argocd.len() && every.is_superset(&argocd));
    assert!(every.contains("quay.io/kubermatic-mirror/helm-charts/cert-manager:v1.12.3"));
    assert!(charts(&all, "ce").is_empty());
}

/// The chart artefacts the catalog lists (cilium, cluster-autoscaler, EE apps) are OCI artefacts with a
/// Helm config, not images: they are copied like images, digest unchanged.
#[test]
fn helm_chart_artefacts_are_copied_like_images() {
    use bytes::Bytes;
    use kkp_shared::registry::Repository;

    use crate::support::block_on;
    use crate::support::images::client_for;
    use crate::support::registry::Registry;

    let src = Registry::start();
    let dst = Registry::start();
    let client = client_for(&[&src, &dst]);
    let repo = Repository::new(&src.host, "kubermatic-mirror/helm-charts/cilium");
    let (digest, chart_digest) = block_on(async {
        let chart = crate::support::addons::layer(&[(
            "cilium/Chart.yaml".into(),
            b"name: cilium\nversion: 1.19.4\n".to_vec(),
        )]);
        let config =
            Bytes::from_static(b"{\"name\":\"cilium\",\"version\":\"1.19.4\",\"apiVersion\":\"v2\"}");
        let chart_digest = client.push_blob(&repo, chart.clone()).await.unwrap();
        let config_digest = client.push_blob(&repo, config.clone()).await.unwrap();
        let manifest = Bytes::from(
            serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json",
                    "digest": config_digest, "size": config.len()},
                "layers": [{"mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
                    "digest": chart_digest, "size": chart.len()}],
            }))
            .unwrap(),
        );
        let digest = kkp_shared::registry::sha256_digest(&manifest);
        client
            .put_manifest(
                &repo,
                "1.19.4",
                "application/vnd.oci.image.manifest.v1+json",
                manifest,
            )
            .await
            .unwrap();
        (digest, chart_digest)
    });
    let list = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        list.path(),
        format!("{}/kubermatic-mirror/helm-charts/cilium:1.19.4\n", src.host),
    )
    .unwrap();
    let out = run(
        "kubectl-kkp-mirror",
        &[
            &dst.host,
            "--image-list",
            list.path().to_str().unwrap(),
            "--insecure-registry",
            &src.host,
            "--insecure-registry",
            &dst.host,
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        dst.skopeo_digest("kubermatic-mirror/helm-charts/cilium", "1.19.4")
            .as_deref(),
        Some(digest.as_str())
    );

    // The retargeted configuration names exactly that repository: a real helm pulls the chart from it.
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("kubermatic.yaml");
    std::fs::copy(
        crate::support::fixtures().join("retarget/kubermatic.yaml"),
        &config,
    )
    .unwrap();
    let out = run(
        "kubectl-kkp-retarget",
        &[
            "--registry",
            &dst.host,
            "--config",
            config.to_str().unwrap(),
            "--plain-http",
            "--yes",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&config).unwrap();
    // The test registry speaks plain HTTP: KKP is told so, and helm below connects as KKP would.
    let data = kkp_shared::yamledit::load_data(&text).unwrap().remove(0);
    let plain_http = data["spec"]["userCluster"]["systemApplications"]["plainHTTP"] == Value::Bool(true);
    assert!(plain_http, "{text}");
    let repo_line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("helmRepository: "))
        .expect("helmRepository set");
    assert_eq!(
        repo_line,
        format!("oci://{}/kubermatic-mirror/helm-charts", dst.host)
    );
    let home = work.path().join("helm");
    let env = |k: &str| home.join(k).to_str().unwrap().to_string();
    let pulled = std::process::Command::new("helm")
        .args(["pull", &format!("{repo_line}/cilium"), "--version", "1.19.4"])
        .args(plain_http.then_some("--plain-http"))
        .args(["--destination", work.path().to_str().unwrap()])
        .env("HELM_CACHE_HOME", env("cache"))
        .env("HELM_CONFIG_HOME", env("config"))
        .env("HELM_DATA_HOME", env("data"))
        .output()
        .expect("helm runs");
    assert!(
        pulled.status.success(),
        "{}",
        String::from_utf8_lossy(&pulled.stderr)
    );
    let got = std::fs::read(work.path().join("cilium-1.19.4.tgz")).unwrap();
    assert_eq!(kkp_shared::registry::sha256_digest(&got), chart_digest);
}

/// An upgrade window plans the union of the releases' sets: nothing lost, nothing twice, and each
/// catalog origin names the release that needs it.
#[test]
fn an_upgrade_window_plans_the_union_of_both_releases() {
    let set = |plan: &Value| -> BTreeSet<String> { sources(plan).into_keys().collect() };
    let old = set(&mirror_json(&["--kkp-version", "v2.30.6"]));
    let new = set(&mirror_json(&["--kkp-version", "2.31.0"]));
    let window = mirror_json(&["--kkp-version", "v2.30.6,v2.31.0"]);
    assert_eq!(window["kkpVersions"], serde_json::json!(["v2.30.6", "v2.31.0"]));
    let listed: Vec<&str> = window["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["source"].as_str().unwrap())
        .collect();
    let union: BTreeSet<String> = old.union(&new).cloned().collect();
    assert_eq!(listed.len(), union.len(), "an image is listed twice");
    assert_eq!(
        listed.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>(),
        union
    );
    assert!(old.len() < union.len() && new.len() < union.len());
    // Repeating the flag is the same as a comma list.
    let repeated = mirror_json(&["--kkp-version", "v2.30.6", "--kkp-version", "v2.31.0"]);
    assert_eq!(set(&repeated), union);
    let images = sources(&window);
    let objects = |image: &str| -> Vec<String> {
        images[image]
            .iter()
            .filter_map(|o| o["object"].as_str().map(String::from))
            .collect()
    };
    assert_eq!(
        objects("quay.io/kubermatic/machine-controller:v1.65.5"),
        ["KKP v2.30.6"]
    );
    assert_eq!(
        objects("quay.io/kubermatic/machine-controller:v1.66.2"),
        ["KKP v2.31.0"]
    );
    assert!(objects("registry.k8s.io/kube-proxy:v1.34.2").contains(&"KKP v2.31.0".to_string()));
}
