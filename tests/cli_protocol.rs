//! Registry protocol edge cases, played by a scripted server (`support::scripted`) against the project's
//! registry client and copy engine; each test asserts on the requests the server saw.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use kkp_shared::copy::{CopyJob, CopyOptions, ImageStatus, copy_images};
use kkp_shared::reference::ImageRef;
use kkp_shared::registry::{Client, ClientOptions, Credential, Mount, Repository, sha256_digest};
use serde_json::json;

use crate::support::block_on;
use crate::support::registry::Registry;
use crate::support::scripted::{Resp, Scripted};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn client(credentials: &[(&str, Credential)]) -> Client {
    Client::new(ClientOptions {
        no_config_files: true,
        credentials: credentials
            .iter()
            .map(|(h, c)| (h.to_string(), c.clone()))
            .collect(),
        ..ClientOptions::default()
    })
    .unwrap()
}

/// An image manifest over one config blob and `layers`.
fn manifest(config: &[u8], layers: &[serde_json::Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256_digest(config), "size": config.len()},
        "layers": layers,
    }))
    .unwrap()
}

fn ok_v2(path: &str) -> Option<Resp> {
    (path == "/v2/").then(|| Resp::new(200))
}

#[test]
fn a_bearer_challenge_asking_for_a_wider_scope_gets_a_fresh_token() {
    // The token service hands out tokens that spell out their scopes.
    let tokens = Scripted::start(|req| {
        let mut scopes: Vec<String> = req
            .target
            .split(['?', '&'])
            .filter_map(|kv| kv.strip_prefix("scope="))
            .map(|s| s.replace("%3A", ":").replace("%2F", "/").replace("%2C", ","))
            .collect();
        scopes.sort();
        Resp::new(200)
            .body(json!({"token": format!("scopes={}", scopes.join(";")), "expires_in": 300}).to_string())
    });
    let realm = format!("Bearer realm=\"{}/token\",service=\"scripted\"", tokens.url());
    let body = manifest(b"{}", &[]);
    let served = body.clone();
    let registry = Scripted::start(move |req| {
        let auth = req.header("authorization").unwrap_or("");
        if req.path() == "/v2/" {
            return Resp::new(401).header("WWW-Authenticate", realm.clone());
        }
        // This registry also wants pull on the base repository (as for a cross-repository read).
        if auth.contains("repository:shared/base:pull") {
            return Resp::new(200)
                .header("Content-Type", OCI_MANIFEST)
                .body(served.clone());
        }
        Resp::new(401).header(
            "WWW-Authenticate",
            format!(
                "{realm},scope=\"repository:app:pull repository:shared/base:pull\",error=\"insufficient_scope\""
            ),
        )
    });
    let c = client(&[]);
    let repo = Repository::new(&registry.host, "app");
    let got = block_on(c.get_manifest(&repo, "v1")).unwrap();
    assert_eq!(got.bytes.as_ref(), body.as_slice());
    assert_eq!(got.digest, sha256_digest(&body));

    let asked: Vec<String> = tokens.seen().iter().map(|r| r.target.clone()).collect();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert!(
        asked[0].contains("scope=repository%3Aapp%3Apull") && !asked[0].contains("shared"),
        "{asked:?}"
    );
    assert!(
        asked[1].contains("repository%3Ashared%2Fbase%3Apull") && asked[1].contains("service=scripted"),
        "{asked:?}"
    );
    let gets: Vec<String> = registry
        .seen()
        .iter()
        .filter(|r| r.path() == "/v2/app/manifests/v1")
        .map(|r| r.header("authorization").unwrap_or("").to_string())
        .collect();
    assert_eq!(
        gets,
        vec![
            "Bearer scopes=repository:app:pull".to_string(),
            "Bearer scopes=repository:app:pull;repository:shared/base:pull".to_string()
        ]
    );
}

#[test]
fn a_mount_answered_202_continues_as_an_upload_at_the_given_location() {
    let data = b"layer bytes that could not be mounted".to_vec();
    let digest = sha256_digest(&data);
    let expected = digest.clone();
    let registry = Scripted::start(move |req| {
        if let Some(r) = ok_v2(&req.target) {
            return r;
        }
        match req.method.as_str() {
            "POST" if req.query("mount").is_some() => Resp::new(202)
                .header("Location", "/v2/dst/blobs/uploads/session-1?_state=abc")
                .header("Range", "0-0"),
            "PUT"
                if req.path() == "/v2/dst/blobs/uploads/session-1"
                    && req.query("digest").as_deref() == Some(expected.as_str())
                    && sha256_digest(&req.body) == expected =>
            {
                Resp::new(201).header("Docker-Content-Digest", expected.clone())
            }
            _ => Resp::new(400),
        }
    });
    let c = client(&[]);
    let repo = Repository::new(&registry.host, "dst");
    let mount = block_on(c.mount_blob(&repo, &digest, "src/app")).unwrap();
    let location = format!("{}/v2/dst/blobs/uploads/session-1?_state=abc", registry.url());
    assert_eq!(mount, Mount::Upload(location.clone()));
    block_on(c.finish_upload(&repo, &location, &digest, data.len() as u64, data.clone().into())).unwrap();
    let seen = registry.seen();
    let lines = registry.lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(
        seen[seen.len() - 2].query("mount").as_deref(),
        Some(digest.as_str())
    );
    assert_eq!(seen[seen.len() - 2].query("from").as_deref(), Some("src/app"));
    assert_eq!(
        lines[1],
        format!(
            "PUT /v2/dst/blobs/uploads/session-1?_state=abc&digest={}",
            digest.replace(':', "%3A")
        )
    );
    assert_eq!(seen.last().unwrap().body, data);
}

#[test]
fn a_blob_redirected_to_another_host_is_fetched_without_our_credentials() {
    let data = b"blob bytes kept in object storage".to_vec();
    let digest = sha256_digest(&data);
    let stored = data.clone();
    let storage = Scripted::start(move |req| {
        if req.path() == "/bucket/blob" {
            Resp::new(200).body(stored.clone())
        } else {
            Resp::new(404)
        }
    });
    let redirect = format!("{}/bucket/blob?signature=s3cr3t-url-token", storage.url());
    let registry = Scripted::start(move |req| {
        if req.header("authorization").is_none() {
            return Resp::new(401).header("WWW-Authenticate", "Basic realm=\"scripted\"");
        }
        if req.path() == "/v2/" {
            return Resp::new(200);
        }
        Resp::new(307).header("Location", redirect.clone())
    });
    let c = client(&[(
        registry.host.as_str(),
        Credential::Basic {
            username: "mirror".into(),
            password: "registry-only-password".into(),
        },
    )]);
    let repo = Repository::new(&registry.host, "app");
    let body = block_on(async {
        let resp = c.get_blob(&repo, &digest).await.unwrap();
        resp.bytes().await.unwrap()
    });
    assert_eq!(body.as_ref(), data.as_slice());
    let asked = registry
        .seen()
        .into_iter()
        .find(|r| r.path() == format!("/v2/app/blobs/{digest}"))
        .expect("the registry was asked for the blob");
    assert!(
        asked
            .header("authorization")
            .is_some_and(|a| a.starts_with("Basic ")),
        "the registry itself gets the credentials"
    );
    let fetched = storage.seen();
    assert_eq!(fetched.len(), 1, "{fetched:?}");
    assert_eq!(fetched[0].target, "/bucket/blob?signature=s3cr3t-url-token");
    assert_eq!(
        fetched[0].header("authorization"),
        None,
        "credentials forwarded to another host: {:?}",
        fetched[0].headers
    );
}

#[test]
fn a_registry_refusing_monolithic_uploads_gets_patch_then_put() {
    #[derive(Default)]
    struct State {
        sessions: usize,
        parts: HashMap<String, Vec<u8>>,
        blobs: HashMap<String, Vec<u8>>,
    }
    let state = Arc::new(Mutex::new(State::default()));
    let st = state.clone();
    let registry = Scripted::start(move |req| {
        if let Some(r) = ok_v2(&req.target) {
            return r;
        }
        let mut st = st.lock().unwrap();
        let path = req.path().to_string();
        match req.method.as_str() {
            "HEAD" => {
                let d = path.rsplit('/').next().unwrap_or("");
                if st.blobs.contains_key(d) {
                    Resp::new(200)
                } else {
                    Resp::new(404)
                }
            }
            "POST" => {
                st.sessions += 1;
                Resp::new(202).header("Location", format!("/v2/app/blobs/uploads/s{}", st.sessions))
            }
            "PATCH" => {
                st.parts
                    .entry(path.clone())
                    .or_default()
                    .extend_from_slice(&req.body);
                let n = st.parts[&path].len();
                Resp::new(202)
                    .header("Location", format!("{path}?part=2"))
                    .header("Range", format!("0-{}", n - 1))
            }
            "PUT" if !req.body.is_empty() => Resp::new(405).body(
                r#"{"errors":[{"code":"UNSUPPORTED","message":"monolithic uploads are not supported"}]}"#,
            ),
            "PUT" => {
                let data = st.parts.remove(&path).unwrap_or_default();
                let digest = req.query("digest").unwrap_or_default();
                if sha256_digest(&data) != digest {
                    return Resp::new(400).body(r#"{"errors":[{"code":"DIGEST_INVALID"}]}"#);
                }
                st.blobs.insert(digest.clone(), data);
                Resp::new(201).header("Docker-Content-Digest", digest)
            }
            _ => Resp::new(400),
        }
    });
    let c = client(&[]);
    let repo = Repository::new(&registry.host, "app");
    let first = Bytes::from(vec![7u8; 300_000]);
    let second = Bytes::from(vec![9u8; 1000]);
    let d1 = block_on(c.push_blob(&repo, first.clone())).unwrap();
    let d2 = block_on(c.push_blob(&repo, second.clone())).unwrap();
    let blobs = &state.lock().unwrap().blobs;
    assert_eq!(blobs[&d1], first.to_vec());
    assert_eq!(blobs[&d2], second.to_vec());
    let methods: Vec<String> = registry
        .seen()
        .iter()
        .filter(|r| r.target != "/v2/")
        .map(|r| r.method.clone())
        .collect();
    // First blob: the monolithic PUT is refused, the retry goes PATCH + empty PUT; the second blob
    // goes straight to PATCH + PUT.
    assert_eq!(
        methods,
        [
            "HEAD", "POST", "PUT", "POST", "PATCH", "PUT", "HEAD", "POST", "PATCH", "PUT"
        ],
        "{:?}",
        registry.lines()
    );
    let patch = registry.seen().into_iter().find(|r| r.method == "PATCH").unwrap();
    assert_eq!(patch.header("content-range"), Some("0-299999"));
    assert_eq!(patch.body.len(), 300_000);
}

#[test]
fn a_manifest_over_4_mib_is_refused_with_a_clear_error() {
    let mut big = b"{\"schemaVersion\":2,\"annotations\":{\"pad\":\"".to_vec();
    big.resize((4 << 20) + 1 - 3, b'x');
    big.extend_from_slice(b"\"}}");
    assert_eq!(big.len(), (4 << 20) + 1);
    let body = big.clone();
    let registry = Scripted::start(move |req| {
        ok_v2(&req.target).unwrap_or_else(|| {
            Resp::new(200)
                .header("Content-Type", OCI_MANIFEST)
                .body(body.clone())
        })
    });
    let c = client(&[]);
    let repo = Repository::new(&registry.host, "huge/app");
    let err = block_on(c.get_manifest(&repo, "v1")).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "manifest {}/huge/app:v1: larger than 4194304 bytes (4 MiB, the most registries accept); refused",
            registry.host
        )
    );
    // One byte less is a manifest like any other.
    let mut ok = big;
    ok.remove(50);
    let fine = Scripted::start(move |req| {
        ok_v2(&req.target).unwrap_or_else(|| {
            Resp::new(200)
                .header("Content-Type", OCI_MANIFEST)
                .body(ok.clone())
        })
    });
    let repo = Repository::new(&fine.host, "huge/app");
    assert_eq!(
        block_on(c.get_manifest(&repo, "v1")).unwrap().bytes.len(),
        4 << 20
    );
}

#[test]
fn a_non_distributable_layer_is_reported_not_copied_and_never_requested() {
    let config =
        br#"{"architecture":"amd64","os":"windows","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
    let layer = b"an ordinary layer".to_vec();
    let foreign = sha256_digest(b"a layer only its vendor may distribute");
    let m = manifest(
        &config,
        &[
            json!({"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                   "digest": foreign, "size": 4321, "urls": ["https://vendor.example/layer.tgz"]}),
            json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                   "digest": sha256_digest(&layer), "size": layer.len()}),
        ],
    );
    let md = sha256_digest(&m);
    let mut objects: HashMap<String, (Vec<u8>, &str)> = HashMap::new();
    objects.insert("/v2/win/app/manifests/v1".into(), (m.clone(), OCI_MANIFEST));
    objects.insert(format!("/v2/win/app/manifests/{md}"), (m.clone(), OCI_MANIFEST));
    objects.insert(
        format!("/v2/win/app/blobs/{}", sha256_digest(&config)),
        (config, "application/octet-stream"),
    );
    objects.insert(
        format!("/v2/win/app/blobs/{}", sha256_digest(&layer)),
        (layer, "application/octet-stream"),
    );
    let digest = md.clone();
    let source = Scripted::start(move |req| {
        if let Some(r) = ok_v2(&req.target) {
            return r;
        }
        match objects.get(req.path()) {
            Some((body, ct)) => Resp::new(200)
                .header("Content-Type", *ct)
                .header(
                    "Docker-Content-Digest",
                    if req.path().contains("/manifests/") {
                        digest.clone()
                    } else {
                        sha256_digest(body)
                    },
                )
                .body(body.clone()),
            None => Resp::new(404),
        }
    });
    let dst = Registry::start();
    let c = client(&[]);
    let job = CopyJob {
        source: ImageRef::parse(&format!("{}/win/app:v1", source.host)).unwrap(),
        target: ImageRef::parse(&format!("{}/win/app:v1", dst.host)).unwrap(),
    };
    let report = block_on(copy_images(&c, &[job], &CopyOptions::default()));
    let image = &report.images[0];
    assert_eq!(image.status, ImageStatus::Copied, "{:?}", image.error);
    assert!(
        image
            .warnings
            .iter()
            .any(|w| w.contains(&format!("foreign layer {foreign}")) && w.contains("not copied")),
        "{:?}",
        image.warnings
    );
    assert!(
        source.seen().iter().all(|r| !r.target.contains(&foreign)),
        "the foreign layer was requested: {:?}",
        source.lines()
    );
    assert!(!dst.has_blob(&foreign));
    assert_eq!(dst.skopeo_digest("win/app", "v1").as_deref(), Some(md.as_str()));
}
