//! `--verify --key cosign.pub`: are the images at the target signed, checked inside the air gap?
//!
//! For every planned image, offline (nothing but the target registry and the key file): the image's
//! digest at the target, its cosign signature tag `sha256-<hex>.sig` there, and in it each
//! simplesigning layer — the payload's bytes hash to the layer's digest, the payload names the image's
//! digest, and the `dev.cosignproject.cosign/signature` annotation is a valid signature of the payload
//! under one of the keys (ECDSA P-256 with SHA-256, or ed25519; PEM public keys, as `cosign
//! generate-key-pair` writes them). Keyless (Fulcio certificate / Rekor bundle) signatures are checked
//! against the sigstore trust root given with `--trusted-root` (`keyless`); without it they are listed as
//! not verifiable offline.
//!
//! Knows registries and plans, never charts or KKP.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;

use super::attachments::tag_for;
use super::keyless::TrustedRoot;
use super::verify::Expectation;
use super::{CopyArgs, CopyError};
use crate::cli::OutputFormat;
use crate::registry::manifest::ManifestView;
use crate::registry::{Client, RegistryError, Repository, sha256_digest};

/// Media type of cosign's simplesigning payload layers.
pub const SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The annotation holding a payload's signature (base64).
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Annotations only keyless signatures carry.
const KEYLESS_ANNOTATIONS: [&str; 2] = [super::keyless::CERTIFICATE, super::keyless::BUNDLE];
/// Largest payload read.
const MAX_PAYLOAD: usize = 1 << 20;

/// Why the keys could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read.
    #[error("--key {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a public key this checks.
    #[error("--key {path}: not a PEM public key of a kind cosign signs with (ECDSA P-256 or ed25519)")]
    Unsupported {
        /// The file.
        path: PathBuf,
    },
}

/// A public key signatures are checked against.
#[derive(Debug, Clone)]
pub enum PublicKey {
    /// ECDSA P-256, signatures over SHA-256 (DER or fixed-size).
    P256(p256::ecdsa::VerifyingKey),
    /// ed25519 over the payload itself.
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl PublicKey {
    /// Parses a PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
    pub fn from_pem(text: &str) -> Option<PublicKey> {
        use ed25519_dalek::pkcs8::DecodePublicKey as _;
        if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_pem(text.trim()) {
            return Some(PublicKey::P256(k));
        }
        ed25519_dalek::VerifyingKey::from_public_key_pem(text.trim())
            .ok()
            .map(PublicKey::Ed25519)
    }

    /// Reads a key file; the error names it.
    pub fn read(path: &Path) -> Result<PublicKey, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        PublicKey::from_pem(&text).ok_or_else(|| KeyError::Unsupported {
            path: path.to_path_buf(),
        })
    }

    /// True when `signature` is this key's signature of `payload`.
    pub fn verifies(&self, payload: &[u8], signature: &[u8]) -> bool {
        match self {
            PublicKey::P256(k) => {
                use p256::ecdsa::signature::Verifier as _;
                let sig = p256::ecdsa::Signature::from_der(signature)
                    .or_else(|_| p256::ecdsa::Signature::from_slice(signature));
                sig.is_ok_and(|s| k.verify(payload, &s).is_ok())
            }
            PublicKey::Ed25519(k) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|s| k.verify_strict(payload, &s).is_ok()),
        }
    }
}

/// How one image's signatures came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureStatus {
    /// A signature under one of the keys names the image's digest.
    Verified,
    /// No signature at the target.
    Unsigned,
    /// Signatures, none valid under the keys (a payload changed, another key).
    BadSignature,
    /// A valid signature, but of another digest.
    DigestMismatch,
    /// Only keyless signatures, which need the sigstore trust root.
    NotVerifiableOffline,
    /// The image is not at the target.
    Missing,
    /// Could not be checked (the target did not answer).
    Error,
}

impl SignatureStatus {
    fn as_str(self) -> &'static str {
        match self {
            SignatureStatus::Verified => "verified",
            SignatureStatus::Unsigned => "unsigned",
            SignatureStatus::BadSignature => "bad signature",
            SignatureStatus::DigestMismatch => "digest mismatch",
            SignatureStatus::NotVerifiableOffline => "not verifiable offline",
            SignatureStatus::Missing => "missing",
            SignatureStatus::Error => "error",
        }
    }
}

/// One image's result.
#[derive(Debug, Clone, Serialize)]
pub struct SignatureEntry {
    /// Source reference.
    pub source: String,
    /// Target reference.
    pub target: String,
    /// The image's digest at the target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Outcome.
    pub status: SignatureStatus,
    /// Why, in a few words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// All results.
#[derive(Debug, Clone, Serialize)]
pub struct SignatureReport {
    /// One per planned image, in plan order.
    pub images: Vec<SignatureEntry>,
}

/// What one signature layer says.
enum Layer {
    Valid { names: String },
    Invalid(String),
    Keyless,
}

async fn check_layer(
    client: &Client,
    repo: &Repository,
    layer: &crate::registry::manifest::Descriptor,
    keys: &[PublicKey],
    root: Option<&TrustedRoot>,
) -> Result<Layer, RegistryError> {
    let Some(sig_b64) = layer.annotations.get(SIGNATURE_ANNOTATION) else {
        return Ok(Layer::Invalid("a payload without a signature annotation".into()));
    };
    let resp = client.get_blob(repo, &layer.digest).await?;
    let mut payload = Vec::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| RegistryError::Body {
            what: format!("signature payload {repo}@{}", layer.digest),
            detail: crate::registry::flatten_error(&e),
        })?;
        payload.extend_from_slice(&chunk);
        if payload.len() > MAX_PAYLOAD {
            return Ok(Layer::Invalid("a payload larger than 1 MiB".into()));
        }
    }
    if sha256_digest(&payload) != layer.digest {
        return Ok(Layer::Invalid(format!(
            "the payload does not hash to its digest {}",
            layer.digest
        )));
    }
    let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(sig_b64.trim()) else {
        return Ok(Layer::Invalid("the signature is not base64".into()));
    };
    if !keys.iter().any(|k| k.verifies(&payload, &sig)) {
        let keyless = KEYLESS_ANNOTATIONS
            .iter()
            .any(|a| layer.annotations.contains_key(*a));
        match (keyless, root) {
            (true, None) => return Ok(Layer::Keyless),
            (true, Some(root)) => {
                if let Err(why) = root.verify(&payload, &sig, &layer.annotations) {
                    return Ok(Layer::Invalid(format!("keyless: {why}")));
                }
            }
            (false, _) => {
                return Ok(Layer::Invalid(
                    "no key verifies the signature of its payload".into(),
                ));
            }
        }
    }
    let doc: Value = match serde_json::from_slice(&payload) {
        Ok(v) => v,
        Err(e) => return Ok(Layer::Invalid(format!("the signed payload is not JSON: {e}"))),
    };
    match doc
        .pointer("/critical/image/docker-manifest-digest")
        .and_then(Value::as_str)
    {
        Some(d) => Ok(Layer::Valid { names: d.to_string() }),
        None => Ok(Layer::Invalid(
            "the signed payload names no critical.image.docker-manifest-digest".into(),
        )),
    }
}

async fn check(
    client: &Client,
    Expectation { source, target, .. }: &Expectation,
    keys: &[PublicKey],
    root: Option<&TrustedRoot>,
) -> SignatureEntry {
    let mut entry = SignatureEntry {
        source: source.to_string(),
        target: target.to_string(),
        digest: None,
        status: SignatureStatus::Error,
        detail: None,
    };
    let repo = Repository::of(target);
    let outcome = async {
        let Some(info) = client
            .head_manifest(&repo, super::target_reference(target))
            .await?
        else {
            return Ok::<_, RegistryError>((SignatureStatus::Missing, None));
        };
        let digest = info.digest;
        entry.digest = Some(digest.clone());
        let Some(tag) = tag_for(&digest, Some("sig")) else {
            return Ok((SignatureStatus::Unsigned, Some("not a sha256 digest".into())));
        };
        let sig = match client.get_manifest(&repo, &tag).await {
            Ok(m) => m,
            Err(RegistryError::NotFound { .. }) => {
                return Ok((SignatureStatus::Unsigned, Some(format!("no {tag} at the target"))));
            }
            Err(e) => return Err(e),
        };
        let view = ManifestView::parse(&sig.bytes).map_err(|e| RegistryError::BadManifest {
            what: format!("signature {repo}:{tag}"),
            detail: e.to_string(),
        })?;
        let layers: Vec<_> = view
            .layers
            .iter()
            .filter(|l| l.media_type == SIMPLESIGNING)
            .collect();
        if layers.is_empty() {
            return Ok((
                SignatureStatus::Unsigned,
                Some(format!("{tag} holds no simplesigning payload")),
            ));
        }
        let (mut other, mut bad, mut keyless) = (None, None, false);
        for layer in layers {
            match check_layer(client, &repo, layer, keys, root).await? {
                Layer::Valid { names } if names == digest => {
                    return Ok((SignatureStatus::Verified, None));
                }
                Layer::Valid { names } => other = Some(names),
                Layer::Invalid(why) => bad = Some(why),
                Layer::Keyless => keyless = true,
            }
        }
        Ok(if let Some(names) = other {
            (
                SignatureStatus::DigestMismatch,
                Some(format!("the signed payload names {names}, not {digest}")),
            )
        } else if let Some(why) = bad {
            (SignatureStatus::BadSignature, Some(why))
        } else if keyless {
            (
                SignatureStatus::NotVerifiableOffline,
                Some("keyless (Fulcio/Rekor) signatures only; checking them needs --trusted-root".into()),
            )
        } else {
            (SignatureStatus::BadSignature, None)
        })
    }
    .await;
    match outcome {
        Ok((status, detail)) => {
            entry.status = status;
            entry.detail = detail;
        }
        Err(e) => entry.detail = Some(e.to_string()),
    }
    entry
}

/// Checks the signatures of every image, `parallel` at a time, in order.
pub async fn verify_signatures(
    client: &Client,
    images: &[Expectation],
    keys: &[PublicKey],
    root: Option<&TrustedRoot>,
    parallel: usize,
) -> SignatureReport {
    let images = futures::stream::iter(images)
        .map(|e| check(client, e, keys, root))
        .buffered(parallel.max(1))
        .collect()
        .await;
    SignatureReport { images }
}

impl SignatureReport {
    /// Renders the report for stdout: one line per image.
    pub fn render(&self, format: OutputFormat) -> String {
        use crate::output::or_dash;
        crate::output::listing(
            self,
            format,
            &self.images,
            |i| {
                vec![
                    i.target.clone(),
                    i.status.as_str().into(),
                    or_dash(i.digest.as_deref()),
                ]
            },
            &["TARGET", "SIGNATURE", "DIGEST", "DETAIL"],
            |i| {
                vec![
                    i.target.clone(),
                    i.status.as_str().into(),
                    or_dash(i.digest.as_deref()),
                    or_dash(i.detail.as_deref()),
                ]
            },
        )
    }
}

/// `kubectl kkp mirror REGISTRY --verify --key FILE`: prints the report; exit code 1 when any image is
/// not verified (each named on stderr).
pub fn run_verify_signatures(
    images: &[Expectation],
    key_files: &[PathBuf],
    keyless: Option<&super::keyless::Policy>,
    args: &CopyArgs,
    format: OutputFormat,
) -> Result<u8, super::archive::ArchiveError> {
    let keys = key_files
        .iter()
        .map(|p| PublicKey::read(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CopyError::Usage(e.to_string()))?;
    let root = keyless
        .map(TrustedRoot::from_policy)
        .transpose()
        .map_err(CopyError::Usage)?;
    let target_host = images
        .first()
        .map(|i| i.target.registry.clone())
        .unwrap_or_default();
    let opts = args.copy_options()?;
    let (client, rt) = super::archive::client_and_runtime(args, &target_host)?;
    let report = rt.block_on(verify_signatures(
        &client,
        images,
        &keys,
        root.as_ref(),
        opts.parallel * 2,
    ));
    crate::output::print(&report.render(format)).map_err(CopyError::Output)?;
    let bad: Vec<&SignatureEntry> = report
        .images
        .iter()
        .filter(|i| i.status != SignatureStatus::Verified)
        .collect();
    eprintln!(
        "{} images checked: {} verified, {} not",
        report.images.len(),
        report.images.len() - bad.len(),
        bad.len()
    );
    for i in &bad {
        eprintln!(
            "{}: {}{}",
            i.status.as_str(),
            i.target,
            i.detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default()
        );
    }
    Ok(if bad.is_empty() { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p256_and_ed25519_keys_verify_their_own_signatures_only() {
        use ed25519_dalek::pkcs8::EncodePublicKey as _;
        use p256::ecdsa::signature::Signer as _;
        let payload = br#"{"critical":{"image":{"docker-manifest-digest":"sha256:aa"}}}"#;
        let ec = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let ec_pem = ec
            .verifying_key()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .unwrap();
        let ec_key = PublicKey::from_pem(&ec_pem).unwrap();
        let sig: p256::ecdsa::Signature = ec.sign(payload);
        assert!(ec_key.verifies(payload, sig.to_der().as_bytes()));
        let mut flipped = payload.to_vec();
        flipped[3] ^= 1;
        assert!(!ec_key.verifies(&flipped, sig.to_der().as_bytes()));

        let ed = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
        let ed_pem = ed
            .verifying_key()
            .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .unwrap();
        let ed_key = PublicKey::from_pem(&ed_pem).unwrap();
        let ed_sig = ed25519_dalek::Signer::sign(&ed, payload).to_bytes();
        assert!(matches!(ed_key, PublicKey::Ed25519(_)));
        assert!(ed_key.verifies(payload, &ed_sig));
        assert!(!ed_key.verifies(&flipped, &ed_sig));
        // One key's signature is not the other's.
        assert!(!ec_key.verifies(payload, &ed_sig));
        assert!(
            PublicKey::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").is_none()
        );
    }
}
