//! `kubectl kkp mirror` through the real binary.

use crate::support::{fixtures, run};

#[test]
fn image_list_alone_is_the_whole_plan() {
    let list = fixtures().join("images.txt");
    let out = run(
        "kubectl-kkp-mirror",
        &[
            "reg.local:5000/kkp",
            "--dry-run",
            "-o",
            "text",
            "--image-list",
            list.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout,
        "docker.io/library/nginx:1.27 reg.local:5000/kkp/library/nginx:1.27\n\
         quay.io/kubermatic/kubermatic:v2.31.0 reg.local:5000/kkp/kubermatic/kubermatic:v2.31.0\n"
    );
}

#[test]
fn no_registry_without_dry_run_is_a_usage_error() {
    let out = run("kubectl-kkp-mirror", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: a target REGISTRY is required"));
}
