//! `kubectl kkp mirror --addons-image`: the addons are pulled from a real `docker-registry`, extracted
//! from the image's layers and rendered like `--addons-path`.

use std::process::{Command, Output, Stdio};

use crate::support::addons;
use crate::support::images::client_for;
use crate::support::registry::Registry;
use crate::support::{bin, block_on, fixtures};

/// Runs the mirror binary with no docker/podman login files.
fn mirror(args: &[&str]) -> Output {
    let empty = tempfile::tempdir().unwrap();
    Command::new(bin("kubectl-kkp-mirror"))
        .args(args)
        .env("DOCKER_CONFIG", empty.path())
        .env("REGISTRY_AUTH_FILE", empty.path().join("none.json"))
        .env_remove("XDG_RUNTIME_DIR")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The kube-proxy fixture addon under `addons/`, and a file outside it that must never be read.
fn addons_layer() -> bytes::Bytes {
    let mut files = addons::fixture_addon(&fixtures().join("addons/kube-proxy"));
    files.push((
        "etc/junk.yaml".into(),
        b"kind: Pod\nspec:\n  containers:\n  - image: junk.example.com/never:1\n".to_vec(),
    ));
    addons::layer(&files)
}

#[test]
fn addons_are_pulled_from_the_image_and_rendered() {
    let reg = Registry::start();
    block_on(addons::push_addons_image(
        &client_for(&[&reg]),
        &reg,
        "kubermatic/addons",
        "v2.31.0",
        addons_layer(),
    ));
    let image = format!("{}/kubermatic/addons:v2.31.0", reg.host);
    let out = mirror(&[
        "reg.local:5000",
        "--dry-run",
        "-o",
        "json",
        "--version-filter",
        "= 1.34.1",
        "--provider-filter",
        "aws",
        "--addons-image",
        &image,
        "--insecure-registry",
        &reg.host,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let images = plan["images"].as_array().unwrap();
    // The image holds only the kube-proxy addon (and a junk file outside `addons/`, never read):
    // exactly its image is planned, found by rendering that addon.
    let sources: Vec<_> = images.iter().map(|i| i["source"].as_str().unwrap()).collect();
    assert_eq!(sources, ["registry.k8s.io/kube-proxy:v1.34.1"], "{plan}");
    let origins = images[0]["origins"].as_array().unwrap();
    assert!(
        origins
            .iter()
            .any(|o| o["source"] == "addon" && o["name"] == "kube-proxy"),
        "{plan}"
    );
}

#[test]
fn a_missing_addons_image_is_one_error_naming_it() {
    let reg = Registry::start();
    let image = format!("{}/kubermatic/addons:v9.9.9", reg.host);
    let out = mirror(&[
        "--dry-run",
        "-o",
        "text",
        "--version-filter",
        "= 1.34.1",
        "--addons-image",
        &image,
        "--insecure-registry",
        &reg.host,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<_> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains(&format!("addons image {image}:")), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn addons_image_with_offline_is_a_usage_error() {
    let out = mirror(&[
        "--dry-run",
        "--offline",
        "--addons-image",
        "quay.io/kubermatic/addons:v2.31.0",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--addons-image") && stderr.contains("--offline"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}
