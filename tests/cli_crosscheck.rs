//! An independent client's view of what `kubectl kkp mirror` pushed: `oci-client` (not our registry
//! client) pulls the index, every child manifest and every blob from the target, and each must hash to
//! the digest the source has.

use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Stdio};

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client as OciClient, Reference};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::images::{Pushed, client_for, push_three_shapes};
use crate::support::registry::Registry;
use crate::support::{bin, block_on};

const ACCEPT: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn oci_client(regs: &[&Registry]) -> OciClient {
    kkp_shared::registry::install_crypto_provider();
    OciClient::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(regs.iter().map(|r| r.host.clone()).collect()),
        ..ClientConfig::default()
    })
}

/// What oci-client finds under `image` (a tag): the top manifest's digest, and every manifest and blob
/// below it, each fetched by digest and hashed here.
struct Seen {
    top: String,
    manifests: HashSet<String>,
    blobs: HashSet<(String, u64)>,
}

async fn walk(client: &OciClient, image: &str) -> Seen {
    let reference: Reference = image.parse().unwrap();
    let (bytes, digest) = client
        .pull_manifest_raw(&reference, &RegistryAuth::Anonymous, ACCEPT)
        .await
        .unwrap_or_else(|e| panic!("oci-client pulling {image}: {e}"));
    assert_eq!(
        sha256(&bytes),
        digest,
        "{image}: the bytes served hash to the digest announced"
    );
    let mut seen = Seen {
        top: digest,
        manifests: HashSet::new(),
        blobs: HashSet::new(),
    };
    let mut todo: Vec<Value> = vec![serde_json::from_slice(&bytes).unwrap()];
    while let Some(doc) = todo.pop() {
        for child in doc["manifests"].as_array().into_iter().flatten() {
            let d = child["digest"].as_str().unwrap();
            let by_digest = reference.clone_with_digest(d.to_string());
            let (bytes, _) = client
                .pull_manifest_raw(&by_digest, &RegistryAuth::Anonymous, ACCEPT)
                .await
                .unwrap_or_else(|e| panic!("oci-client pulling {by_digest}: {e}"));
            assert_eq!(sha256(&bytes), d, "child manifest {d} of {image}");
            seen.manifests.insert(d.to_string());
            todo.push(serde_json::from_slice(&bytes).unwrap());
        }
        for blob in doc["config"].as_object().into_iter().chain(
            doc["layers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_object),
        ) {
            let d = blob["digest"].as_str().unwrap();
            let mut data = Vec::new();
            client
                .pull_blob(&reference, d, &mut data)
                .await
                .unwrap_or_else(|e| panic!("oci-client pulling blob {d} of {image}: {e}"));
            assert_eq!(sha256(&data), d, "blob {d} of {image}");
            assert_eq!(Some(data.len() as u64), blob["size"].as_u64(), "blob {d} size");
            seen.blobs.insert((d.to_string(), data.len() as u64));
        }
    }
    seen
}

fn assert_same(seen: &Seen, pushed: &Pushed, what: &str) {
    assert_eq!(seen.top, pushed.digest, "{what}: top manifest digest");
    let manifests: HashSet<String> = pushed.manifests.iter().cloned().collect();
    assert_eq!(seen.manifests, manifests, "{what}: child manifests");
    let blobs: HashSet<(String, u64)> = pushed.blobs.iter().cloned().collect();
    assert_eq!(seen.blobs, blobs, "{what}: blobs");
}

#[test]
fn oci_client_pulls_what_we_pushed_with_the_source_digests() {
    let src = Registry::start();
    let dst = Registry::start();
    let client = client_for(&[&src]);
    let (oci, docker, nested) = block_on(push_three_shapes(&client, &src, 150 * 1024));
    let mut list = tempfile::NamedTempFile::new().unwrap();
    for image in ["team/app:v1", "other/tool:2.0", "team/nested:1"] {
        writeln!(list, "{}/{image}", src.host).unwrap();
    }
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(bin("kubectl-kkp-mirror"))
        .arg(format!("{}/mirror", dst.host))
        .arg("--image-list")
        .arg(list.path())
        .args(["-o", "json"])
        .env("DOCKER_CONFIG", empty.path())
        .env("XDG_CACHE_HOME", empty.path())
        .env("REGISTRY_AUTH_FILE", empty.path().join("none.json"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let oci_client = oci_client(&[&src, &dst]);
    block_on(async {
        for (name, pushed) in [
            ("team/app:v1", &oci),
            ("other/tool:2.0", &docker),
            ("team/nested:1", &nested),
        ] {
            // What the source holds, as oci-client sees it, is what our fixture pushed …
            let at_source = walk(&oci_client, &format!("{}/{name}", src.host)).await;
            assert_same(&at_source, pushed, &format!("source {name}"));
            // … and the target holds exactly the same, digest for digest.
            let at_target = walk(&oci_client, &format!("{}/mirror/{name}", dst.host)).await;
            assert_same(&at_target, pushed, &format!("target mirror/{name}"));
        }
    });
}
