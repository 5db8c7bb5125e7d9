//! Signatures, attestations, SBOMs and OCI referrers travel with mirrored images: cosign tags and
//! fallback-tag referrers against the real docker-registry (no referrers API), the referrers API
//! against a loopback stub of just that endpoint in front of it.

use std::io::Write;

use bytes::Bytes;
use kkp_shared::registry::{Client, Repository, sha256_digest};
use serde_json::{Value, json};

use crate::support::images::{Pushed, Spec, client_for, push_image, random_bytes};
use crate::support::referrers::ReferrersStub;
use crate::support::registry::{Options, Registry};
use crate::support::{assert_exit, block_on, mirror, ok_json};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const SIG_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
const SBOM_TYPE: &str = "application/spdx+json";
const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";

fn image_list(images: &[String]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    for i in images {
        writeln!(f, "{i}").unwrap();
    }
    f
}

/// `sha256-<hex>` (+ `.suffix`).
fn tag_of(digest: &str, suffix: Option<&str>) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap();
    match suffix {
        Some(s) => format!("sha256-{hex}.{s}"),
        None => format!("sha256-{hex}"),
    }
}

/// Signs a payload; returns the base64 signature for the cosign annotation.
pub type Signer = dyn Fn(&[u8]) -> String;

/// One layer of an artifact: media type, bytes, annotations.
type Layer = (&'static str, Bytes, Value);

/// Pushes an OCI manifest (config + layers, optional subject and artifactType) under `reference` (its
/// digest when `None`); returns its digest and bytes.
async fn push_artifact(
    client: &Client,
    repo: &Repository,
    config: (&str, Bytes),
    layers: Vec<Layer>,
    subject: Option<Value>,
    artifact_type: Option<&str>,
    reference: Option<&str>,
) -> (String, Bytes) {
    let cd = client.push_blob(repo, config.1.clone()).await.unwrap();
    let mut ls = Vec::new();
    for (media_type, data, annotations) in layers {
        let d = client.push_blob(repo, data.clone()).await.unwrap();
        let mut l = json!({"mediaType": media_type, "digest": d, "size": data.len()});
        if annotations.is_object() {
            l["annotations"] = annotations;
        }
        ls.push(l);
    }
    let mut doc = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": config.0, "digest": cd, "size": config.1.len()},
        "layers": ls,
    });
    if let Some(s) = subject {
        doc["subject"] = s;
    }
    if let Some(a) = artifact_type {
        doc["artifactType"] = json!(a);
    }
    let bytes = Bytes::from(serde_json::to_vec(&doc).unwrap());
    let digest = sha256_digest(&bytes);
    let put = client
        .put_manifest(repo, reference.unwrap_or(&digest), OCI_MANIFEST, bytes.clone())
        .await
        .unwrap();
    assert_eq!(put, digest);
    (digest, bytes)
}

/// The simplesigning payload cosign signs for `digest` of `name`.
pub fn simplesigning(name: &str, digest: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "critical": {
            "identity": {"docker-reference": name},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature"
        },
        "optional": null
    }))
    .unwrap()
}

/// A cosign signature manifest at `sha256-<hex>.sig` for `digest`, its payload naming `payload_digest`.
pub async fn push_signature(
    client: &Client,
    repo: &Repository,
    digest: &str,
    payload_digest: &str,
    sign: &Signer,
) -> String {
    let payload = simplesigning(&repo.to_string(), payload_digest);
    let sig = sign(&payload);
    push_signature_layer(client, repo, digest, payload, sig).await
}

/// A cosign signature manifest at `sha256-<hex>.sig` for `digest` with this payload and signature.
async fn push_signature_layer(
    client: &Client,
    repo: &Repository,
    digest: &str,
    payload: Vec<u8>,
    sig: String,
) -> String {
    push_signature_annotated(client, repo, digest, payload, json!({ SIG_ANNOTATION: sig })).await
}

/// A cosign signature manifest at `sha256-<hex>.sig` for `digest` with this payload, its layer
/// annotated with `annotations` (the signature, and for keyless ones the certificate and bundle).
async fn push_signature_annotated(
    client: &Client,
    repo: &Repository,
    digest: &str,
    payload: Vec<u8>,
    annotations: Value,
) -> String {
    let config = Bytes::from(
        serde_json::to_vec(&json!({"architecture": "", "os": "", "rootfs": {"type": "layers", "diff_ids": [sha256_digest(&payload)]}, "config": {}}))
            .unwrap(),
    );
    push_artifact(
        client,
        repo,
        ("application/vnd.oci.image.config.v1+json", config),
        vec![(SIMPLESIGNING, Bytes::from(payload), annotations)],
        None,
        None,
        Some(&tag_of(digest, Some("sig"))),
    )
    .await
    .0
}

/// What was attached to one synthetic image.
#[derive(Debug, Clone)]
struct Attached {
    repo: String,
    image: Pushed,
    sig: String,
    att: String,
    sbom: String,
    /// The fallback-tag referrer, whose subject is the image index.
    referrer: String,
    /// A signature of the first per-platform manifest.
    child_sig: String,
}

fn no_signer() -> Box<Signer> {
    Box::new(|p: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(sha256_digest(p))
    })
}

/// `n` synthetic images `att/appN:v1` on `reg`, each with `.sig`, `.att` and `.sbom` tags, a signed
/// first platform, and a referrer listed in the fallback tag `sha256-<hex>` of its index.
async fn push_attached(
    client: &Client,
    host: &str,
    reg: &Registry,
    n: usize,
    sign: &Signer,
) -> Vec<Attached> {
    let spec = Spec {
        layers: 1,
        layer_size: 2048,
        ..Spec::default()
    };
    let mut out = Vec::new();
    for i in 0..n {
        let path = format!("att/app{i}");
        let image = push_image(client, reg, &path, "v1", &spec).await;
        let repo = Repository::new(host, &path);
        let sig = push_signature(client, &repo, &image.digest, &image.digest, sign).await;
        let child_sig = push_signature(client, &repo, &image.manifests[0], &image.manifests[0], sign).await;
        let statement = Bytes::from(format!(
            r#"{{"_type":"https://in-toto.io/Statement/v0.1","n":{i}}}"#
        ));
        let att = push_artifact(
            client,
            &repo,
            (
                "application/vnd.oci.image.config.v1+json",
                Bytes::from_static(b"{}"),
            ),
            vec![("application/vnd.dsse.envelope.v1+json", statement, Value::Null)],
            None,
            None,
            Some(&tag_of(&image.digest, Some("att"))),
        )
        .await
        .0;
        let sbom = push_artifact(
            client,
            &repo,
            (
                "application/vnd.oci.image.config.v1+json",
                Bytes::from_static(b"{}"),
            ),
            vec![(SBOM_TYPE, random_bytes(512), Value::Null)],
            None,
            None,
            Some(&tag_of(&image.digest, Some("sbom"))),
        )
        .await
        .0;
        let index_size = client
            .get_manifest(&repo, &image.digest)
            .await
            .unwrap()
            .bytes
            .len();
        let (referrer, bytes) = push_referrer(client, &repo, &image.digest, index_size, i).await;
        // The fallback tag, as a client of a registry without the referrers API writes it.
        let fallback = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": referrer, "size": bytes.len(), "artifactType": SBOM_TYPE}
        ]});
        client
            .put_manifest(
                &repo,
                &tag_of(&image.digest, None),
                OCI_INDEX,
                Bytes::from(serde_json::to_vec(&fallback).unwrap()),
            )
            .await
            .unwrap();
        out.push(Attached {
            repo: path,
            image,
            sig,
            att,
            sbom,
            referrer,
            child_sig,
        });
    }
    out
}

/// An SBOM artifact whose subject is the index `subject`.
async fn push_referrer(
    client: &Client,
    repo: &Repository,
    subject: &str,
    subject_size: usize,
    n: usize,
) -> (String, Bytes) {
    push_artifact(
        client,
        repo,
        (EMPTY_CONFIG, Bytes::from_static(b"{}")),
        vec![(
            SBOM_TYPE,
            Bytes::from(format!(
                r#"{{"spdxVersion":"SPDX-2.3","n":{n},"r":"{}"}}"#,
                hex::encode(random_bytes(8))
            )),
            Value::Null,
        )],
        Some(json!({"mediaType": OCI_INDEX, "digest": subject, "size": subject_size})),
        Some(SBOM_TYPE),
        None,
    )
    .await
}

async fn digest_at(client: &Client, host: &str, repo: &str, reference: impl AsRef<str>) -> Option<String> {
    client
        .head_manifest(&Repository::new(host, repo), reference.as_ref())
        .await
        .unwrap()
        .map(|i| i.digest)
}

async fn fallback_list(client: &Client, host: &str, repo: &str, subject: &str) -> Vec<String> {
    match client
        .get_manifest(&Repository::new(host, repo), &tag_of(subject, None))
        .await
    {
        Ok(raw) => {
            let doc: Value = serde_json::from_slice(&raw.bytes).unwrap();
            doc["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["digest"].as_str().unwrap().to_string())
                .collect()
        }
        Err(_) => Vec::new(),
    }
}

/// `a`'s cosign tags (`.sig`, `.att`, `.sbom` of the image, `.sig` of its first platform) are at `host`
/// on the source's digests.
async fn assert_cosign_tags_at(client: &Client, host: &str, a: &Attached) {
    let platform = &a.image.manifests[0];
    for (subject, suffix, want) in [
        (&a.image.digest, "sig", &a.sig),
        (&a.image.digest, "att", &a.att),
        (&a.image.digest, "sbom", &a.sbom),
        (platform, "sig", &a.child_sig),
    ] {
        assert_eq!(
            digest_at(client, host, &a.repo, tag_of(subject, Some(suffix)))
                .await
                .as_ref(),
            Some(want),
            "{host}/{}: .{suffix} of {subject}",
            a.repo
        );
    }
}

fn sources(src: &str, attached: &[Attached]) -> Vec<String> {
    attached.iter().map(|a| format!("{src}/{}:v1", a.repo)).collect()
}

#[test]
fn signatures_attestations_sboms_and_fallback_referrers_travel_with_every_image() {
    let src = Registry::start_with(Options {
        access_log: true,
        ..Options::default()
    });
    let dst = Registry::start_with(Options {
        access_log: true,
        ..Options::default()
    });
    let client = client_for(&[&src, &dst]);
    let attached = block_on(push_attached(&client, &src.host, &src, 10, &*no_signer()));
    // A referrer already at the target, listed in its fallback tag: it must stay listed.
    let first = &attached[0];
    let kept = block_on(async {
        let spec_size = client
            .get_manifest(&Repository::new(&src.host, &first.repo), &first.image.digest)
            .await
            .unwrap()
            .bytes
            .len();
        let repo = Repository::new(&dst.host, &first.repo);
        let (d, bytes) = push_referrer(&client, &repo, &first.image.digest, spec_size, 99).await;
        let doc = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": d, "size": bytes.len(), "artifactType": "application/vnd.example.kept"}
        ]});
        client
            .put_manifest(
                &repo,
                &tag_of(&first.image.digest, None),
                OCI_INDEX,
                Bytes::from(serde_json::to_vec(&doc).unwrap()),
            )
            .await
            .unwrap();
        d
    });
    let list = image_list(&sources(&src.host, &attached));
    let requests_before = src.requests().len();
    let dst_before = dst.requests().len();
    let out = mirror(&[
        &dst.host,
        "--image-list",
        list.path().to_str().unwrap(),
        "-o",
        "json",
    ]);
    let report = ok_json(&out);
    for img in report["images"].as_array().unwrap() {
        assert_eq!(img["status"], "copied", "{img}");
        // sig, att, sbom, a signed platform, the referrer.
        assert_eq!(img["attachments_copied"], 5, "{img}");
    }
    // One tag listing per repository, one referrers probe per registry.
    let src_requests: Vec<String> = src.requests()[requests_before..].to_vec();
    assert_eq!(
        src_requests.iter().filter(|r| r.contains("/tags/list")).count(),
        10,
        "{src_requests:#?}"
    );
    assert_eq!(
        src_requests.iter().filter(|r| r.contains("/referrers/")).count(),
        1,
        "{src_requests:#?}"
    );
    let dst_requests: Vec<String> = dst.requests()[dst_before..].to_vec();
    assert_eq!(
        dst_requests.iter().filter(|r| r.contains("/referrers/")).count(),
        1,
        "{dst_requests:#?}"
    );
    block_on(async {
        for a in &attached {
            let at = |r: String| digest_at(&client, &dst.host, &a.repo, r);
            assert_eq!(at("v1".into()).await.as_deref(), Some(a.image.digest.as_str()));
            assert_cosign_tags_at(&client, &dst.host, a).await;
            // The referrer, by digest, and its subject resolves at the target.
            let raw = client
                .get_manifest(&Repository::new(&dst.host, &a.repo), &a.referrer)
                .await
                .unwrap();
            let subject = serde_json::from_slice::<Value>(&raw.bytes).unwrap()["subject"]["digest"]
                .as_str()
                .unwrap()
                .to_string();
            assert_eq!(subject, a.image.digest);
            assert_eq!(at(subject).await, Some(a.image.digest.clone()));
            let listed = fallback_list(&client, &dst.host, &a.repo, &a.image.digest).await;
            assert!(listed.contains(&a.referrer), "{}: {listed:?}", a.repo);
            if a.repo == first.repo {
                assert_eq!(
                    listed,
                    vec![kept.clone(), a.referrer.clone()],
                    "kept first, then merged"
                );
            } else {
                // Nothing at the target before: the source's fallback index, as it was.
                assert_eq!(
                    at(tag_of(&a.image.digest, None)).await,
                    digest_at(&client, &src.host, &a.repo, &tag_of(&a.image.digest, None)).await
                );
            }
        }
    });

    // A second run changes nothing.
    let writes_before = dst
        .requests()
        .iter()
        .filter(|r| r.starts_with("PUT") || r.starts_with("POST") || r.starts_with("PATCH"))
        .count();
    let report = ok_json(&mirror(&[
        &dst.host,
        "--image-list",
        list.path().to_str().unwrap(),
        "-o",
        "json",
    ]));
    for img in report["images"].as_array().unwrap() {
        assert_eq!(img["status"], "up-to-date", "{img}");
        assert_eq!(img["attachments_present"], 5, "{img}");
        assert!(img.get("attachments_copied").is_none(), "{img}");
    }
    let writes_after = dst
        .requests()
        .iter()
        .filter(|r| r.starts_with("PUT") || r.starts_with("POST") || r.starts_with("PATCH"))
        .count();
    assert_eq!(writes_before, writes_after, "the second run wrote to the target");
}

#[test]
fn skip_attachments_copies_none_and_attachments_selects_kinds() {
    let src = Registry::start();
    let dst = Registry::start();
    let client = client_for(&[&src, &dst]);
    let attached = block_on(push_attached(&client, &src.host, &src, 2, &*no_signer()));
    let list = image_list(&sources(&src.host, &attached));
    let report = ok_json(&mirror(&[
        &format!("{}/skip", dst.host),
        "--image-list",
        list.path().to_str().unwrap(),
        "-o",
        "json",
        "--skip-attachments",
    ]));
    let sel = ok_json(&mirror(&[
        &format!("{}/sel", dst.host),
        "--image-list",
        list.path().to_str().unwrap(),
        "-o",
        "json",
        "--attachments",
        "sig,referrers",
    ]));
    block_on(async {
        for a in &attached {
            let tags = client
                .list_tags(&Repository::new(&dst.host, format!("skip/{}", a.repo)))
                .await
                .unwrap();
            assert_eq!(tags, vec!["v1".to_string()], "{}", a.repo);
            let mut tags = client
                .list_tags(&Repository::new(&dst.host, format!("sel/{}", a.repo)))
                .await
                .unwrap();
            tags.sort();
            let mut want = vec![
                "v1".to_string(),
                tag_of(&a.image.digest, None),
                tag_of(&a.image.digest, Some("sig")),
                tag_of(&a.image.manifests[0], Some("sig")),
            ];
            want.sort();
            assert_eq!(tags, want, "{}", a.repo);
        }
    });
    for img in report["images"].as_array().unwrap() {
        assert!(img.get("attachments_copied").is_none(), "{img}");
    }
    for img in sel["images"].as_array().unwrap() {
        assert_eq!(img["attachments_copied"], 3, "{img}");
    }
    // --verify compares attachments with the source's: the skipped ones are reported missing.
    let skip_target = format!("{}/skip", dst.host);
    let out = mirror(&[
        &skip_target,
        "--image-list",
        list.path().to_str().unwrap(),
        "--verify",
        "-o",
        "json",
    ]);
    assert_exit(&out, 1);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    for (img, a) in v["images"].as_array().unwrap().iter().zip(&attached) {
        assert_eq!(img["status"], "missing-attachments", "{img}");
        let missing: Vec<&str> = img["missing_attachments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap())
            .collect();
        assert!(
            missing.contains(&format!("sig {}", a.sig).as_str()),
            "{missing:?}"
        );
        assert!(
            missing.contains(&format!("referrer {}", a.referrer).as_str()),
            "{missing:?}"
        );
        assert_eq!(missing.len(), 5, "{missing:?}");
    }
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing attachments"));
    let out = mirror(&[
        &skip_target,
        "--image-list",
        list.path().to_str().unwrap(),
        "--verify",
        "--skip-attachments",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The fully mirrored target verifies with its attachments.
    let out = mirror(&[
        &format!("{}/sel", dst.host),
        "--image-list",
        list.path().to_str().unwrap(),
        "--verify",
        "--attachments",
        "sig,referrers",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A bad kind is a usage error naming it.
    let out = mirror(&[
        &dst.host,
        "--image-list",
        list.path().to_str().unwrap(),
        "--attachments",
        "sigs,bom",
    ]);
    assert_exit(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"bom\""));
}

#[test]
fn the_dry_run_plan_lists_attachments_when_asked() {
    let src = Registry::start();
    let client = client_for(&[&src]);
    let attached = block_on(push_attached(&client, &src.host, &src, 1, &*no_signer()));
    let list = image_list(&sources(&src.host, &attached));
    let plan = ok_json(&mirror(&[
        "--dry-run",
        "--image-list",
        list.path().to_str().unwrap(),
        "-o",
        "json",
        "--attachments",
        "all",
    ]));
    let a = &attached[0];
    let items = plan["images"][0]["attachments"].as_array().unwrap();
    let found: Vec<(String, String, String)> = items
        .iter()
        .map(|i| {
            (
                i["kind"].as_str().unwrap().to_string(),
                i["digest"].as_str().unwrap().to_string(),
                i["subject"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for want in [
        ("sig", &a.sig, &a.image.digest),
        ("att", &a.att, &a.image.digest),
        ("sbom", &a.sbom, &a.image.digest),
        ("referrer", &a.referrer, &a.image.digest),
        ("sig", &a.child_sig, &a.image.manifests[0]),
    ] {
        assert!(
            found.contains(&(want.0.to_string(), want.1.clone(), want.2.clone())),
            "{want:?} not in {found:?}"
        );
    }
    let referrer = items.iter().find(|i| i["kind"] == "referrer").unwrap();
    assert_eq!(referrer["artifactType"], SBOM_TYPE);
    // Without --attachments a dry run asks no registry about them.
    let plain = ok_json(&mirror(&[
        "--dry-run",
        "--image-list",
        list.path().to_str().unwrap(),
        "-o",
        "json",
    ]));
    assert!(plain["images"][0].get("attachments").is_none());
}

#[test]
fn referrers_api_path_against_a_loopback_stub() {
    let src = Registry::start();
    let dst = Registry::start();
    let plain = Registry::start();
    let src_api = ReferrersStub::start(&src.host);
    let dst_api = ReferrersStub::start(&dst.host);
    let client = client_for(&[&src, &dst, &plain]);
    // Pushed through the stub: the referrer is known to the source's referrers API only (no fallback
    // tag at the source).
    let (image, referrer) = block_on(async {
        let image = push_image(&client, &src, "api/app", "v1", &Spec::default()).await;
        let repo = Repository::new(&src_api.host, "api/app");
        let size = client
            .get_manifest(&repo, &image.digest)
            .await
            .unwrap()
            .bytes
            .len();
        let (referrer, _) = push_referrer(&client, &repo, &image.digest, size, 1).await;
        (image, referrer)
    });
    assert_eq!(src_api.referrers("api/app", &image.digest).len(), 1);
    let list = image_list(&[format!("{}/api/app:v1", src_api.host)]);
    // Into a target with the API: the referrer is pushed by digest, the target names its subject, and
    // no fallback tag is written.
    let report = ok_json(&mirror(&[
        &dst_api.host,
        "--image-list",
        list.path().to_str().unwrap(),
        "-o",
        "json",
    ]));
    assert_eq!(report["images"][0]["attachments_copied"], 1, "{report}");
    let listed = dst_api.referrers("api/app", &image.digest);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["digest"], referrer.as_str());
    // The target's `OCI-Subject` answer said it indexed the referrer: no fallback tag written.
    let seen = dst_api.requests();
    assert!(
        seen.contains(&format!("PUT /v2/api/app/manifests/{referrer}")),
        "{seen:?}"
    );
    assert!(
        !seen.contains(&format!(
            "PUT /v2/api/app/manifests/{}",
            tag_of(&image.digest, None)
        )),
        "{seen:?}"
    );
    block_on(async {
        assert_eq!(
            digest_at(&client, &dst.host, "api/app", &referrer).await,
            Some(referrer.clone())
        );
        assert_eq!(
            digest_at(&client, &dst.host, "api/app", &tag_of(&image.digest, None)).await,
            None
        );
    });
    // Into a target without it: the fallback tag lists the referrer.
    ok_json(&mirror(&[
        &plain.host,
        "--image-list",
        list.path().to_str().unwrap(),
        "-o",
        "json",
    ]));
    block_on(async {
        assert_eq!(
            fallback_list(&client, &plain.host, "api/app", &image.digest).await,
            vec![referrer.clone()]
        );
    });
    // Reruns are no-ops on both.
    for host in [&dst_api.host, &plain.host] {
        let r = ok_json(&mirror(&[
            host,
            "--image-list",
            list.path().to_str().unwrap(),
            "-o",
            "json",
        ]));
        assert_eq!(r["images"][0]["status"], "up-to-date", "{r}");
    }
}

/// A P-256 signer (DER signatures, as cosign writes them) and its PEM public key.
fn p256_signer() -> (Box<Signer>, String) {
    use base64::Engine as _;
    use p256::ecdsa::signature::Signer as _;
    use p256::pkcs8::EncodePublicKey as _;
    let key = p256::ecdsa::SigningKey::from_slice(&random_bytes(32)).unwrap();
    let pem = key
        .verifying_key()
        .to_public_key_pem(p256::pkcs8::LineEnding::LF)
        .unwrap();
    let sign = move |p: &[u8]| {
        let sig: p256::ecdsa::Signature = key.sign(p);
        base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes())
    };
    (Box::new(sign), pem)
}

/// An ed25519 signer and its PEM public key.
fn ed25519_signer() -> (Box<Signer>, String) {
    use base64::Engine as _;
    use ed25519_dalek::pkcs8::EncodePublicKey as _;
    let bytes: [u8; 32] = random_bytes(32).as_ref().try_into().unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&bytes);
    let pem = key
        .verifying_key()
        .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .unwrap();
    let sign = move |p: &[u8]| {
        base64::engine::general_purpose::STANDARD.encode(ed25519_dalek::Signer::sign(&key, p).to_bytes())
    };
    (Box::new(sign), pem)
}

#[test]
fn signatures_verify_offline_at_the_target_and_tampering_fails_naming_the_image() {
    let src = Registry::start();
    let dst = Registry::start();
    let client = client_for(&[&src, &dst]);
    let (ec, ec_pem) = p256_signer();
    let (ed, ed_pem) = ed25519_signer();
    let spec = Spec {
        layers: 1,
        layer_size: 1024,
        ..Spec::default()
    };
    let names = ["good-ec", "good-ed", "flipped", "other-digest", "unsigned"];
    block_on(async {
        let mut digests = Vec::new();
        for name in names {
            let path = format!("sig/{name}");
            let image = push_image(&client, &src, &path, "v1", &spec).await;
            digests.push(image.digest);
        }
        let repo = |name: &str| Repository::new(&src.host, format!("sig/{name}"));
        push_signature(&client, &repo("good-ec"), &digests[0], &digests[0], &*ec).await;
        push_signature(&client, &repo("good-ed"), &digests[1], &digests[1], &*ed).await;
        // Signed, then one byte of the payload flipped.
        let r = repo("flipped");
        let payload = simplesigning(&r.to_string(), &digests[2]);
        let sig = ec(&payload);
        let mut tampered = payload.clone();
        let at = tampered.len() / 2;
        tampered[at] ^= 0x01;
        push_signature_layer(&client, &r, &digests[2], tampered, sig).await;
        // A valid signature of another image's digest, under this image's signature tag.
        push_signature(&client, &repo("other-digest"), &digests[3], &digests[0], &*ec).await;
    });
    let keys = tempfile::tempdir().unwrap();
    let (ec_file, ed_file) = (keys.path().join("cosign.pub"), keys.path().join("ed.pub"));
    std::fs::write(&ec_file, &ec_pem).unwrap();
    std::fs::write(&ed_file, &ed_pem).unwrap();
    let all: Vec<String> = names.iter().map(|n| format!("{}/sig/{n}:v1", src.host)).collect();
    let list = image_list(&all);
    ok_json(&mirror(&[
        &dst.host,
        "--image-list",
        list.path().to_str().unwrap(),
        "-o",
        "json",
    ]));
    let verify = |list: &std::path::Path| {
        mirror(&[
            &dst.host,
            "--image-list",
            list.to_str().unwrap(),
            "--verify",
            "--key",
            ec_file.to_str().unwrap(),
            "--key",
            ed_file.to_str().unwrap(),
            "-o",
            "json",
        ])
    };
    let out = verify(list.path());
    assert_exit(&out, 1);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let status: Vec<(&str, &str)> = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["target"].as_str().unwrap(), i["status"].as_str().unwrap()))
        .collect();
    let want = [
        ("good-ec", "verified"),
        ("good-ed", "verified"),
        ("flipped", "bad-signature"),
        ("other-digest", "digest-mismatch"),
        ("unsigned", "unsigned"),
    ];
    for (name, st) in want {
        let target = format!("{}/sig/{name}:v1", dst.host);
        assert!(status.contains(&(target.as_str(), st)), "{name}: {status:?}");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    for name in ["flipped", "other-digest", "unsigned"] {
        assert!(
            stderr.lines().any(|l| l.contains(&format!("/sig/{name}:v1"))),
            "{name} not named: {stderr}"
        );
    }
    // Only the good ones: exit 0, one text line per image.
    let good = image_list(&all[..2]);
    let out = mirror(&[
        &dst.host,
        "--image-list",
        good.path().to_str().unwrap(),
        "--verify",
        "--key",
        ec_file.to_str().unwrap(),
        "--key",
        ed_file.to_str().unwrap(),
        "-o",
        "text",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.lines().all(|l| l.contains(" verified ")), "{text}");
    // The ed25519 image under the P-256 key alone is a bad signature, never a pass.
    let out = mirror(&[
        &dst.host,
        "--image-list",
        good.path().to_str().unwrap(),
        "--verify",
        "--key",
        ec_file.to_str().unwrap(),
    ]);
    assert_exit(&out, 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("sig/good-ed:v1"));
    // A key file that is not a key is named.
    let junk = keys.path().join("junk.pub");
    std::fs::write(&junk, "not a key").unwrap();
    let out = mirror(&[
        &dst.host,
        "--image-list",
        good.path().to_str().unwrap(),
        "--verify",
        "--key",
        junk.to_str().unwrap(),
    ]);
    assert_exit(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("junk.pub"));
}

#[test]
fn the_fallback_tag_merge_survives_another_writer_and_keeps_every_entry() {
    use std::sync::{Arc, Mutex};

    use crate::support::scripted::{Resp, Scripted};
    let subject = sha256_digest(b"subject");
    let tag = tag_of(&subject, None);
    let entry = |d: &str| json!({"mediaType": OCI_MANIFEST, "digest": d, "size": 1});
    let index = |list: Vec<Value>| {
        serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list})).unwrap()
    };
    let (a, b, ours) = (sha256_digest(b"a"), sha256_digest(b"b"), sha256_digest(b"ours"));
    // The tag lists A; our first write is overwritten by another run's [A, B]; the second sticks.
    let stored = Arc::new(Mutex::new((index(vec![entry(&a)]), 0usize)));
    let (state, other) = (stored.clone(), index(vec![entry(&a), entry(&b)]));
    let path = format!("/v2/r/manifests/{tag}");
    let server = Scripted::start(move |req| {
        let mut st = state.lock().unwrap();
        match (req.method.as_str(), req.path()) {
            ("GET", "/v2/") => Resp::new(200),
            ("GET", p) if p == path => Resp::new(200)
                .header("Content-Type", OCI_INDEX)
                .body(st.0.clone()),
            ("PUT", p) if p == path => {
                st.1 += 1;
                st.0 = if st.1 == 1 {
                    other.clone()
                } else {
                    req.body.clone()
                };
                Resp::new(201).header("Docker-Content-Digest", sha256_digest(&req.body))
            }
            _ => Resp::new(404),
        }
    });
    let client = client_for(&[]);
    let wrote = block_on(kkp_shared::copy::attachments::merge_fallback(
        &client,
        &Repository::new(&server.host, "r"),
        &subject,
        &[entry(&ours)],
        None,
    ))
    .unwrap();
    assert!(wrote);
    let (last, puts) = stored.lock().unwrap().clone();
    assert_eq!(puts, 2, "{:?}", server.lines());
    let doc: Value = serde_json::from_slice(&last).unwrap();
    let listed: Vec<&str> = doc["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap())
        .collect();
    assert_eq!(listed, vec![a.as_str(), b.as_str(), ours.as_str()]);
}

#[test]
fn archives_carry_attachments_to_the_air_gapped_side() {
    let src = Registry::start();
    let dst = Registry::start();
    let bare = Registry::start();
    let client = client_for(&[&src, &dst, &bare]);
    let attached = block_on(push_attached(&client, &src.host, &src, 2, &*no_signer()));
    let list = image_list(&sources(&src.host, &attached));
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("kkp.tar");
    let out = mirror(&[
        "--image-list",
        list.path().to_str().unwrap(),
        "--archive",
        archive.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("10 attachments"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Pushed on the other side: no source registry, everything attached arrives with its digest.
    let report = ok_json(&mirror(&[
        &dst.host,
        "--from-archive",
        archive.to_str().unwrap(),
        "-o",
        "json",
    ]));
    for img in report["images"].as_array().unwrap() {
        assert_eq!(img["attachments_copied"], 5, "{img}");
    }
    block_on(async {
        for a in &attached {
            let at = |r: String| digest_at(&client, &dst.host, &a.repo, r);
            assert_cosign_tags_at(&client, &dst.host, a).await;
            assert_eq!(at(a.referrer.clone()).await, Some(a.referrer.clone()));
            assert_eq!(
                fallback_list(&client, &dst.host, &a.repo, &a.image.digest).await,
                vec![a.referrer.clone()]
            );
        }
    });
    // A rerun is a no-op; --skip-attachments pushes the images only.
    let again = ok_json(&mirror(&[
        &dst.host,
        "--from-archive",
        archive.to_str().unwrap(),
        "-o",
        "json",
    ]));
    for img in again["images"].as_array().unwrap() {
        assert_eq!(img["status"], "up-to-date", "{img}");
    }
    ok_json(&mirror(&[
        &bare.host,
        "--from-archive",
        archive.to_str().unwrap(),
        "-o",
        "json",
        "--skip-attachments",
    ]));
    block_on(async {
        for a in &attached {
            let tags = client
                .list_tags(&Repository::new(&bare.host, &a.repo))
                .await
                .unwrap();
            assert_eq!(tags, vec!["v1".to_string()]);
        }
    });
    // --verify --from-archive compares the archive's attachments with the target's.
    let verify = |host: &str, extra: &[&str]| {
        let mut args = vec![
            host,
            "--from-archive",
            archive.to_str().unwrap(),
            "--verify",
            "-o",
            "json",
        ];
        args.extend_from_slice(extra);
        mirror(&args)
    };
    let all = ok_json(&verify(&dst.host, &[]));
    for img in all["images"].as_array().unwrap() {
        assert_eq!(img["status"], "ok", "{img}");
    }
    let out = verify(&bare.host, &[]);
    assert_exit(&out, 1);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    for img in doc["images"].as_array().unwrap() {
        assert_eq!(img["status"], "missing-attachments", "{img}");
        assert_eq!(img["missing_attachments"].as_array().unwrap().len(), 5, "{img}");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    for a in &attached {
        assert!(stderr.contains(&format!("sig {}", a.sig)), "{stderr}");
    }
    // The images alone are right: with --skip-attachments, or selecting a kind not among the missing.
    ok_json(&verify(&bare.host, &["--skip-attachments"]));
    // One attachment gone at the target: that image, that attachment, named.
    let gone = &attached[1];
    dst.remove_tag(&gone.repo, &tag_of(&gone.image.manifests[0], Some("sig")));
    let out = verify(&dst.host, &[]);
    assert_exit(&out, 1);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let images = doc["images"].as_array().unwrap();
    assert_eq!(images[0]["status"], "ok", "{}", images[0]);
    assert_eq!(images[1]["status"], "missing-attachments", "{}", images[1]);
    assert_eq!(
        images[1]["missing_attachments"],
        json!([format!("sig {}", gone.child_sig)])
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "missing-attachments: {}/{}:v1 lacks sig {}",
            dst.host, gone.repo, gone.child_sig
        )),
        "{stderr}"
    );
    ok_json(&verify(&dst.host, &["--attachments", "att,sbom,referrers"]));
}

/// `METHOD kind` of a request: `HEAD manifest`, `GET tags`, `GET referrers`, …
fn request_kind(r: &str) -> String {
    let (method, path) = r.split_once(' ').unwrap();
    let kind = ["/manifests/", "/blobs/", "/tags/list", "/referrers/"]
        .into_iter()
        .find(|k| path.contains(k))
        .map_or("other", |k| k.trim_matches('/').split('/').next().unwrap());
    format!("{method} {kind}")
}

/// Requests of `reg` since `from`, counted by [`request_kind`].
fn request_counts(reg: &Registry, from: usize) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for r in &reg.requests()[from..] {
        *out.entry(request_kind(r)).or_default() += 1;
    }
    out
}

#[test]
fn a_no_op_rerun_asks_only_what_it_must() {
    let logged = || {
        Registry::start_with(Options {
            access_log: true,
            ..Options::default()
        })
    };
    let (src, dst) = (logged(), logged());
    let client = client_for(&[&src, &dst]);
    let attached = block_on(push_attached(&client, &src.host, &src, 2, &*no_signer()));
    // Plain images, nothing attached: three repositories, one holding three tags.
    let spec = Spec {
        layers: 1,
        layer_size: 1024,
        ..Spec::default()
    };
    let mut images = sources(&src.host, &attached);
    block_on(async {
        for (repo, tag) in [
            ("plain/a", "v1"),
            ("plain/a", "v2"),
            ("plain/a", "v3"),
            ("plain/b", "v1"),
            ("plain/c", "v1"),
        ] {
            push_image(&client, &src, repo, tag, &spec).await;
            images.push(format!("{}/{repo}:{tag}", src.host));
        }
    });
    let list = image_list(&images);
    let run = |extra: &[&str]| {
        let mut args = vec![
            dst.host.as_str(),
            "--image-list",
            list.path().to_str().unwrap(),
            "-o",
            "json",
        ];
        args.extend_from_slice(extra);
        ok_json(&mirror(&args))
    };
    let copied = run(&[]);
    assert_eq!(copied["images"].as_array().unwrap().len(), 7);
    let counted = |extra: &[&str]| {
        let (s0, d0) = (src.requests().len(), dst.requests().len());
        let report = run(extra);
        for img in report["images"].as_array().unwrap() {
            assert_eq!(img["status"], "up-to-date", "{img}");
        }
        (request_counts(&src, s0), request_counts(&dst, d0))
    };
    let (src_skip, dst_skip) = counted(&["--skip-attachments"]);
    let (src_with, dst_with) = counted(&[]);
    // What discovery adds to a no-op rerun: at the source one tag listing per repository (5), one
    // referrers probe for the registry, and for each of the two attached images its top manifest (its
    // platforms' digests), its fallback tag and a HEAD of each of its four cosign tags; nothing for the
    // five images whose repositories list no `sha256-*` tag. At the target a HEAD of each of the five
    // attachments per attached image, one referrers probe, and the fallback tag read to see that it
    // lists the referrer.
    let added = |with: &std::collections::BTreeMap<String, usize>,
                 without: &std::collections::BTreeMap<String, usize>| {
        let mut out = std::collections::BTreeMap::new();
        for (k, n) in with {
            let d = n - without.get(k).copied().unwrap_or(0);
            if d > 0 {
                out.insert(k.clone(), d);
            }
        }
        out
    };
    let expect = |pairs: &[(&str, usize)]| -> std::collections::BTreeMap<String, usize> {
        pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
    };
    assert_eq!(
        added(&src_with, &src_skip),
        expect(&[
            ("GET tags", 5),
            ("GET referrers", 1),
            ("GET manifests", 4),
            ("HEAD manifests", 8)
        ]),
        "source: {src_with:?} against {src_skip:?}"
    );
    assert_eq!(
        added(&dst_with, &dst_skip),
        expect(&[("GET referrers", 1), ("GET manifests", 2), ("HEAD manifests", 10)]),
        "target: {dst_with:?} against {dst_skip:?}"
    );
    // And nothing written either way.
    for counts in [&dst_skip, &dst_with] {
        assert!(
            counts
                .keys()
                .all(|k| k.starts_with("GET") || k.starts_with("HEAD")),
            "{counts:?}"
        );
    }
}

/// Runs `openssl ARGS` in `dir`; its stdout.
fn openssl(dir: &std::path::Path, args: &[&str]) -> Vec<u8> {
    crate::support::registry::run_ok(std::process::Command::new("openssl").args(args).current_dir(dir))
}

/// A test sigstore: a Fulcio-like CA and a leaf certificate for code signing under it, a Rekor key.
struct Sigstore {
    dir: tempfile::TempDir,
}

impl Sigstore {
    fn new() -> Sigstore {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for ca in ["ca", "rogue"] {
            openssl(
                d,
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                    "-keyout",
                    &format!("{ca}.key"),
                    "-out",
                    &format!("{ca}.pem"),
                    "-subj",
                    &format!("/CN={ca}"),
                    "-days",
                    "30",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign",
                ],
            );
        }
        // As Fulcio issues them: the signer's email and the OIDC issuer (1.3.6.1.4.1.57264.1.8).
        for (ext, email) in [
            ("leaf", "signer@example.com"),
            ("stranger-leaf", "stranger@example.com"),
        ] {
            std::fs::write(
                d.join(format!("{ext}.ext")),
                format!(
                    "extendedKeyUsage=codeSigning\nkeyUsage=critical,digitalSignature\nsubjectAltName=email:{email}\n\
                     1.3.6.1.4.1.57264.1.8=ASN1:UTF8String:https://issuer.test\n"
                ),
            )
            .unwrap();
        }
        for (leaf, ca) in [("leaf", "ca"), ("rogue-leaf", "rogue"), ("stranger-leaf", "ca")] {
            openssl(
                d,
                &[
                    "ecparam",
                    "-name",
                    "prime256v1",
                    "-genkey",
                    "-noout",
                    "-out",
                    &format!("{leaf}.key"),
                ],
            );
            openssl(
                d,
                &[
                    "req",
                    "-new",
                    "-key",
                    &format!("{leaf}.key"),
                    "-subj",
                    "/CN=signer",
                    "-out",
                    &format!("{leaf}.csr"),
                ],
            );
            openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{leaf}.csr"),
                    "-CA",
                    &format!("{ca}.pem"),
                    "-CAkey",
                    &format!("{ca}.key"),
                    "-CAcreateserial",
                    "-out",
                    &format!("{leaf}.pem"),
                    "-days",
                    "1",
                    "-extfile",
                    if leaf == "stranger-leaf" {
                        "stranger-leaf.ext"
                    } else {
                        "leaf.ext"
                    },
                ],
            );
        }
        openssl(
            d,
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "rekor.key",
            ],
        );
        Sigstore { dir }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// `trusted_root.json` naming the CA and the Rekor key.
    fn trusted_root(&self) -> std::path::PathBuf {
        use base64::Engine as _;
        let b64 = |b: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(b);
        let ca = openssl(self.dir.path(), &["x509", "-in", "ca.pem", "-outform", "DER"]);
        let rekor = openssl(
            self.dir.path(),
            &["ec", "-in", "rekor.key", "-pubout", "-outform", "DER"],
        );
        let doc = json!({
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [{"baseUrl": "https://rekor.test", "hashAlgorithm": "SHA2_256",
                       "publicKey": {"rawBytes": b64(rekor), "keyDetails": "PKIX_ECDSA_P256_SHA_256"},
                       "logId": {"keyId": "dGVzdA=="}}],
            "certificateAuthorities": [{"subject": {"commonName": "ca"}, "uri": "https://fulcio.test",
                       "certChain": {"certificates": [{"rawBytes": b64(ca)}]}}],
        });
        let p = self.path("trusted_root.json");
        std::fs::write(&p, serde_json::to_vec(&doc).unwrap()).unwrap();
        p
    }

    /// `data` signed with `key` (DER ECDSA over SHA-256).
    fn sign(&self, key: &str, data: &[u8]) -> Vec<u8> {
        let f = self.path(&format!("data-{}", fastrand::u64(..)));
        std::fs::write(&f, data).unwrap();
        openssl(
            self.dir.path(),
            &["dgst", "-sha256", "-sign", key, f.to_str().unwrap()],
        )
    }

    /// The layer annotations of a keyless signature of `payload` by `leaf`, logged at `time` (the
    /// entry names `logged_sig`, the signature itself unless a test swaps it).
    fn annotations(&self, leaf: &str, payload: &[u8], time: u64, tamper_set: bool) -> Value {
        use base64::Engine as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let sig = self.sign(&format!("{leaf}.key"), payload);
        let cert = std::fs::read_to_string(self.path(&format!("{leaf}.pem"))).unwrap();
        let hash = sha256_digest(payload);
        let body = json!({"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": hash.strip_prefix("sha256:").unwrap()}},
            "signature": {"content": b64(&sig), "publicKey": {"content": b64(cert.as_bytes())}}}});
        let body = b64(&serde_json::to_vec(&body).unwrap());
        let log_id = "c0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d";
        let canonical =
            format!(r#"{{"body":"{body}","integratedTime":{time},"logID":"{log_id}","logIndex":7}}"#);
        let set = self.sign("rekor.key", canonical.as_bytes());
        let logged_time = if tamper_set { time + 1 } else { time };
        json!({
            SIG_ANNOTATION: b64(&sig),
            "dev.sigstore.cosign/certificate": cert,
            "dev.sigstore.cosign/bundle": serde_json::to_string(&json!({
                "SignedEntryTimestamp": b64(&set),
                "Payload": {"body": body, "integratedTime": logged_time, "logIndex": 7, "logID": log_id},
            })).unwrap(),
        })
    }
}

#[test]
fn keyless_signatures_verify_offline_against_a_trusted_root() {
    let src = Registry::start();
    let dst = Registry::start();
    let client = client_for(&[&src, &dst]);
    let sigstore = Sigstore::new();
    let spec = Spec {
        layers: 1,
        layer_size: 1024,
        ..Spec::default()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // good; a certificate of a CA the root does not list; a SET that does not match its entry; logged
    // two days after the one-day certificate; a valid keyless signature of another image's digest.
    let cases = [
        ("good", "leaf", now, false),
        ("rogue-ca", "rogue-leaf", now, false),
        ("bad-set", "leaf", now, true),
        ("expired", "leaf", now + 2 * 86400, false),
        ("other-digest", "leaf", now, false),
        ("stranger", "stranger-leaf", now, false),
    ];
    block_on(async {
        let mut digests = Vec::new();
        for (name, ..) in cases {
            let image = push_image(&client, &src, &format!("keyless/{name}"), "v1", &spec).await;
            digests.push(image.digest);
        }
        for (i, (name, leaf, time, tamper)) in cases.iter().enumerate() {
            let repo = Repository::new(&src.host, format!("keyless/{name}"));
            let named = if *name == "other-digest" {
                &digests[0]
            } else {
                &digests[i]
            };
            let payload = simplesigning(&repo.to_string(), named);
            let annotations = sigstore.annotations(leaf, &payload, *time, *tamper);
            push_signature_annotated(&client, &repo, &digests[i], payload, annotations).await;
        }
    });
    let all: Vec<String> = cases
        .iter()
        .map(|(n, ..)| format!("{}/keyless/{n}:v1", src.host))
        .collect();
    let list = image_list(&all);
    ok_json(&mirror(&[
        &dst.host,
        "--image-list",
        list.path().to_str().unwrap(),
        "-o",
        "json",
    ]));
    let root = sigstore.trusted_root();
    let verify = |extra: &[&str]| {
        let mut args = vec![
            dst.host.as_str(),
            "--image-list",
            list.path().to_str().unwrap(),
            "--verify",
            "-o",
            "json",
        ];
        args.extend_from_slice(extra);
        let out = mirror(&args);
        assert_exit(&out, 1);
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        // By image name (the report is in plan order, sorted).
        let statuses: std::collections::BTreeMap<String, (String, String)> = doc["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                let target = i["target"].as_str().unwrap();
                let name = target
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .trim_end_matches(":v1")
                    .to_string();
                let detail = i["detail"].as_str().unwrap_or("").to_string();
                (name, (i["status"].as_str().unwrap().to_string(), detail))
            })
            .collect();
        (statuses, String::from_utf8_lossy(&out.stderr).to_string())
    };
    let signer = [
        "--certificate-identity",
        "signer@example.com",
        "--certificate-oidc-issuer",
        "https://issuer.test",
    ];
    let (statuses, _) = verify(&[&["--trusted-root", root.to_str().unwrap()], &signer[..]].concat());
    let is = |name: &str, status: &str, why: &str| {
        let (s, d) = &statuses[name];
        assert!(s == status && d.contains(why), "{name}: {statuses:#?}");
    };
    is("good", "verified", "");
    is("rogue-ca", "bad-signature", "does not chain to a Fulcio root");
    is(
        "bad-set",
        "bad-signature",
        "signed entry timestamp does not verify",
    );
    is("expired", "bad-signature", "CertExpired");
    is("other-digest", "digest-mismatch", "names");
    // Fulcio certifies anyone: a valid signature by someone else is not this signer's.
    is(
        "stranger",
        "bad-signature",
        "the certificate is for stranger@example.com, not --certificate-identity signer@example.com",
    );
    let (statuses, _) = verify(&[
        "--trusted-root",
        root.to_str().unwrap(),
        "--certificate-identity",
        "signer@example.com",
        "--certificate-oidc-issuer",
        "https://other.test",
    ]);
    let (s, d) = &statuses["good"];
    assert!(
        s == "bad-signature" && d.contains("OIDC issuer is https://issuer.test"),
        "{statuses:#?}"
    );
    // A trusted root without the signer to expect is refused: any Fulcio certificate would pass.
    let out = mirror(&[
        &dst.host,
        "--image-list",
        list.path().to_str().unwrap(),
        "--verify",
        "--trusted-root",
        root.to_str().unwrap(),
    ]);
    assert_exit(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--certificate-identity"));
    // Without the root (a key that signed none of them): not verifiable offline, never verified.
    let (ec_signer, ec_pem) = p256_signer();
    drop(ec_signer);
    let key = sigstore.path("cosign.pub");
    std::fs::write(&key, ec_pem).unwrap();
    let (statuses, stderr) = verify(&["--key", key.to_str().unwrap()]);
    assert_eq!(statuses["good"].0, "not-verifiable-offline", "{statuses:#?}");
    assert!(stderr.contains("keyless/good:v1"), "{stderr}");
    // A trusted root that is not one is a usage error naming the file.
    let junk = sigstore.path("junk.json");
    std::fs::write(&junk, "{}").unwrap();
    let out = mirror(&[
        &dst.host,
        "--image-list",
        list.path().to_str().unwrap(),
        "--verify",
        "--trusted-root",
        junk.to_str().unwrap(),
        "--certificate-identity",
        "signer@example.com",
        "--certificate-oidc-issuer",
        "https://issuer.test",
    ]);
    assert_exit(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("junk.json"));
}
