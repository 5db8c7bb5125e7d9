//! Synthetic images for copy tests: random layers, one config per platform, an index over the
//! platforms (OCI or Docker media types), optionally nested, pushed with the project's registry client.
//! The layers are random bytes, not tarballs: registries and the copy engine never look inside.

use bytes::Bytes;
use kkp_shared::registry::{Client, ClientOptions, Credential, Repository, sha256_digest};
use serde_json::json;

use super::registry::Registry;

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    /// `os/arch[/variant]` per child manifest.
    pub platforms: Vec<&'static str>,
    /// Random layers per platform.
    pub layers: usize,
    /// Size of each random layer.
    pub layer_size: usize,
    /// A layer added to every platform (e.g. to share a base layer between images).
    pub shared_layer: Option<Bytes>,
    /// Docker v2 schema 2 media types instead of OCI.
    pub docker: bool,
    /// Wrap the index in a second index (nested index).
    pub nested: bool,
    /// Add a foreign (Docker) / non-distributable (OCI) layer that exists only at an external URL.
    pub foreign_layer: bool,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            platforms: vec!["linux/amd64", "linux/arm64/v8"],
            layers: 2,
            layer_size: 64 * 1024,
            shared_layer: None,
            docker: false,
            nested: false,
            foreign_layer: false,
        }
    }
}

/// What was pushed.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// Digest of the top manifest (what the tag points to).
    pub digest: String,
    /// Digests of every manifest below the top (children, and nested indexes).
    pub manifests: Vec<String>,
    /// Every blob (configs and layers) with its size.
    pub blobs: Vec<(String, u64)>,
}

impl Pushed {
    /// Total bytes of all blobs.
    pub fn blob_bytes(&self) -> u64 {
        self.blobs.iter().map(|(_, s)| s).sum()
    }
}

/// Random bytes.
pub fn random_bytes(n: usize) -> Bytes {
    let mut v = vec![0u8; n];
    fastrand::fill(&mut v);
    Bytes::from(v)
}

/// A client set up for `reg` (its CA, its credentials, no config files).
pub fn client_for(regs: &[&Registry]) -> Client {
    let mut opts = ClientOptions {
        no_config_files: true,
        ..ClientOptions::default()
    };
    for reg in regs {
        if let Some(ca) = &reg.ca {
            opts.ca_files.push((Some(reg.host.clone()), ca.clone()));
        }
        if let Some((u, p)) = &reg.creds {
            opts.credentials.insert(
                reg.host.clone(),
                Credential::Basic {
                    username: u.clone(),
                    password: p.clone(),
                },
            );
        }
    }
    Client::new(opts).unwrap()
}

/// Pushes a synthetic multi-platform image to `reg/repo:tag`.
pub async fn push_image(client: &Client, reg: &Registry, repo: &str, tag: &str, spec: &Spec) -> Pushed {
    let r = Repository::new(&reg.host, repo);
    let (index_type, manifest_type, config_type, layer_type) = if spec.docker {
        (
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        )
    } else {
        (
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        )
    };
    let mut pushed = Pushed {
        digest: String::new(),
        manifests: Vec::new(),
        blobs: Vec::new(),
    };
    let mut children = Vec::new();
    for platform in &spec.platforms {
        let mut parts = platform.split('/');
        let (os, arch, variant) = (parts.next().unwrap(), parts.next().unwrap(), parts.next());
        let mut layers = Vec::new();
        let mut datas: Vec<Bytes> = (0..spec.layers).map(|_| random_bytes(spec.layer_size)).collect();
        if let Some(shared) = &spec.shared_layer {
            datas.insert(0, shared.clone());
        }
        for data in datas {
            let d = client.push_blob(&r, data.clone()).await.unwrap();
            layers.push(json!({"mediaType": layer_type, "digest": d, "size": data.len()}));
            pushed.blobs.push((d, data.len() as u64));
        }
        if spec.foreign_layer {
            let media_type = if spec.docker {
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
            } else {
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            };
            let fake = sha256_digest(&random_bytes(32));
            layers.push(json!({"mediaType": media_type, "digest": fake, "size": 1234,
                "urls": ["https://foreign.example.com/layer.tar.gz"]}));
        }
        let config = Bytes::from(
            serde_json::to_vec(&json!({
                "architecture": arch, "os": os, "variant": variant,
                "rootfs": {"type": "layers", "diff_ids": []},
                "config": {"Labels": {"nonce": hex::encode(random_bytes(8))}}
            }))
            .unwrap(),
        );
        let cd = client.push_blob(&r, config.clone()).await.unwrap();
        pushed.blobs.push((cd.clone(), config.len() as u64));
        let manifest = Bytes::from(
            serde_json::to_vec_pretty(&json!({
                "schemaVersion": 2,
                "mediaType": manifest_type,
                "config": {"mediaType": config_type, "digest": cd, "size": config.len()},
                "layers": layers,
            }))
            .unwrap(),
        );
        let md = sha256_digest(&manifest);
        client
            .put_manifest(&r, &md, manifest_type, manifest.clone())
            .await
            .unwrap();
        pushed.manifests.push(md.clone());
        let mut plat = json!({"os": os, "architecture": arch});
        if let Some(v) = variant {
            plat["variant"] = json!(v);
        }
        children.push(
            json!({"mediaType": manifest_type, "digest": md, "size": manifest.len(), "platform": plat}),
        );
    }
    let index = Bytes::from(
        serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": index_type, "manifests": children}))
            .unwrap(),
    );
    let mut top = (index, index_type);
    if spec.nested {
        let inner = sha256_digest(&top.0);
        client
            .put_manifest(&r, &inner, index_type, top.0.clone())
            .await
            .unwrap();
        pushed.manifests.push(inner.clone());
        let outer = Bytes::from(
            serde_json::to_vec(
                &json!({"schemaVersion": 2, "mediaType": index_type, "manifests": [
                    {"mediaType": index_type, "digest": inner, "size": top.0.len()}
                ]}),
            )
            .unwrap(),
        );
        top = (outer, index_type);
    }
    pushed.digest = client.put_manifest(&r, tag, top.1, top.0.clone()).await.unwrap();
    assert_eq!(pushed.digest, sha256_digest(&top.0));
    pushed
}

/// Pushes the three shapes the copy and archive tests exercise, sharing one base layer of `shared_size`
/// bytes between the first two: `team/app:v1` (OCI index, three platforms), `other/tool:2.0` (Docker
/// manifest list) and `team/nested:1` (an index inside an index).
pub async fn push_three_shapes(
    client: &Client,
    reg: &Registry,
    shared_size: usize,
) -> (Pushed, Pushed, Pushed) {
    let shared = random_bytes(shared_size);
    let oci = Spec {
        platforms: vec!["linux/amd64", "linux/arm64/v8", "linux/s390x"],
        shared_layer: Some(shared.clone()),
        ..Spec::default()
    };
    let docker = Spec {
        docker: true,
        shared_layer: Some(shared),
        ..Spec::default()
    };
    let nested = Spec {
        nested: true,
        ..Spec::default()
    };
    (
        push_image(client, reg, "team/app", "v1", &oci).await,
        push_image(client, reg, "other/tool", "2.0", &docker).await,
        push_image(client, reg, "team/nested", "1", &nested).await,
    )
}
