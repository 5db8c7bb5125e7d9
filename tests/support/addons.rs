//! KKP addons images for tests: a gzip layer holding `addons/…` files, pushed as a two-platform index
//! (a linux/arm64 decoy whose layer is not even a tarball, and linux/amd64 with the addons), the shape
//! KKP publishes `quay.io/kubermatic/addons` in.

use bytes::Bytes;
use kkp_shared::registry::{Client, Repository};
use serde_json::json;

use super::registry::Registry;

const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A gzip tar layer with these `(path, content)` regular files, in order.
pub fn layer(files: &[(String, Vec<u8>)]) -> Bytes {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    for (path, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, path, data.as_slice()).unwrap();
    }
    Bytes::from(builder.into_inner().unwrap().finish().unwrap())
}

/// Every file of the fixture addon directory `dir` as `addons/<name>/<file>` entries, sorted.
pub fn fixture_addon(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let name = dir.file_name().unwrap().to_str().unwrap().to_string();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
        .into_iter()
        .map(|f| (format!("addons/{name}/{f}"), std::fs::read(dir.join(&f)).unwrap()))
        .collect()
}

/// Pushes `reg/repo:tag` as an OCI index: linux/arm64 with a decoy layer, linux/amd64 with `layer`.
pub async fn push_addons_image(client: &Client, reg: &Registry, repo: &str, tag: &str, layer: Bytes) {
    let repo = Repository::new(&reg.host, repo);
    let mut children = Vec::new();
    for (arch, layer) in [("arm64", Bytes::from_static(b"not a tarball")), ("amd64", layer)] {
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
    client.put_manifest(&repo, tag, INDEX, index).await.unwrap();
}
