//! `kubectl kkp mirror --addons-image`: the addons are pulled from a real `docker-registry`, extracted
//! from the image's layers and rendered like `--addons-path`.

use std::process::{Command, Output, Stdio};

use bytes::Bytes;
use kkp_shared::registry::{Client, Repository};
use serde_json::json;

use crate::support::images::client_for;
use crate::support::registry::Registry;
use crate::support::{bin, fixtures};

const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

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

/// A gzip tar holding the kube-proxy fixture addon under `addons/` and a file outside it.
fn addons_layer() -> Bytes {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    let mut add = |path: &str, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, path, data).unwrap();
    };
    let dir = fixtures().join("addons/kube-proxy");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(!names.is_empty());
    for name in names {
        add(
            &format!("addons/kube-proxy/{name}"),
            &std::fs::read(dir.join(&name)).unwrap(),
        );
    }
    add(
        "etc/junk.yaml",
        b"kind: Pod\nspec:\n  containers:\n  - image: junk.example.com/never:1\n",
    );
    Bytes::from(builder.into_inner().unwrap().finish().unwrap())
}

/// Pushes the addons image as an OCI index (linux/arm64 decoy without addons, linux/amd64 with them)
/// tagged `v2.31.0`.
async fn push_addons_image(client: &Client, reg: &Registry) {
    let repo = Repository::new(&reg.host, "kubermatic/addons");
    let mut children = Vec::new();
    for (arch, layer) in [
        ("arm64", Bytes::from_static(b"not a tarball")),
        ("amd64", addons_layer()),
    ] {
        let layer_digest = client.push_blob(&repo, layer.clone()).await.unwrap();
        let config = Bytes::from(
            serde_json::to_vec(&json!({"architecture": arch, "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": []}}))
            .unwrap(),
        );
        let config_digest = client.push_blob(&repo, config.clone()).await.unwrap();
        let manifest = Bytes::from(
            serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": config_digest, "size": config.len()},
                "layers": [{"mediaType": LAYER, "digest": layer_digest, "size": layer.len()}],
            }))
            .unwrap(),
        );
        let digest = kkp_shared::registry::sha256_digest(&manifest);
        client
            .put_manifest(&repo, &digest, MANIFEST, manifest.clone())
            .await
            .unwrap();
        children.push(
            json!({"mediaType": MANIFEST, "digest": digest, "size": manifest.len(),
            "platform": {"os": "linux", "architecture": arch}}),
        );
    }
    let index = Bytes::from(
        serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": children})).unwrap(),
    );
    client.put_manifest(&repo, "v2.31.0", INDEX, index).await.unwrap();
}

#[test]
fn addons_are_pulled_from_the_image_and_rendered() {
    let reg = Registry::start();
    block_on(push_addons_image(&client_for(&[&reg]), &reg));
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
