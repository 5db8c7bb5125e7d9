//! `kubectl kkp mirror --addons-path` through the real binary.

use crate::support::{fixtures, run};

#[test]
fn a_broken_addon_is_reported_with_addon_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let addon = tmp.path().join("my-addon");
    std::fs::create_dir_all(addon.join("sub")).unwrap();
    std::fs::write(addon.join("ok.yaml"), "kind: ConfigMap\n").unwrap();
    std::fs::write(
        addon.join("sub/bad.yaml"),
        "kind: Pod\nspec:\n  containers:\n  - image: {{ Image .Cluster.NoSuchField }}\n",
    )
    .unwrap();
    let out = run(
        "kubectl-kkp-mirror",
        &[
            "--dry-run",
            "-o",
            "text",
            "--version-filter",
            "= 1.34.1",
            "--addons-path",
            tmp.path().to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .contains("addon my-addon: sub/bad.yaml:4: can't evaluate field NoSuchField in type ClusterData"),
        "{stderr}"
    );
    assert!(stderr.contains("kubernetes 1.34.1"), "{stderr}");
    assert!(out.stdout.is_empty());
}

/// Addons render over the release's matrix narrowed by the filters: one version, two providers, every
/// CNI version KKP supports.
#[test]
fn addon_images_are_planned_for_the_filtered_matrix() {
    let dir = fixtures().join("addons");
    let out = run(
        "kubectl-kkp-mirror",
        &[
            "reg.local:5000/kkp",
            "--dry-run",
            "-o",
            "text",
            "--version-filter",
            "= 1.34.1",
            "--provider-filter",
            "openstack,aws",
            "--addons-path",
            dir.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let sources: std::collections::BTreeSet<&str> = stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let want: std::collections::BTreeSet<&str> = [
        "docker.io/flannel/flannel:v0.24.4",
        "quay.io/calico/cni:v3.30.5",
        "quay.io/calico/cni:v3.31.3",
        "quay.io/calico/node:v3.30.5",
        "quay.io/calico/node:v3.31.3",
        "quay.io/cilium/hubble-relay:v1.12.13@sha256:9b7fc17534514342b12ee9a7ed05084d1f933028d778eb5173c7f0f0aa494414",
        "quay.io/cilium/hubble-ui:v0.11.0",
        "quay.io/cilium/hubble-ui-backend:v0.11.0",
        "registry.k8s.io/kube-proxy:v1.34.1",
        "registry.k8s.io/provider-os/cinder-csi-plugin:v1.34.1",
        "registry.k8s.io/sig-storage/csi-attacher:v4.10.0",
    ]
    .into_iter()
    .collect();
    assert_eq!(sources, want);
}
