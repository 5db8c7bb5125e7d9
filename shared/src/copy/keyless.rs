//! Keyless cosign signatures (a Fulcio certificate and a Rekor bundle), checked offline against a
//! sigstore trusted root (`trusted_root.json`: Fulcio CA certificates, Rekor public keys).
//!
//! A keyless signature layer carries the signing certificate (`dev.sigstore.cosign/certificate`, PEM,
//! with its intermediates in `dev.sigstore.cosign/chain`) and the transparency log's promise
//! (`dev.sigstore.cosign/bundle`: the signed entry timestamp over the entry). It verifies when the
//! certificate chains to a Fulcio root for code signing at the entry's integrated time (so the time
//! lies within the certificate's validity), the payload's signature verifies under the certificate's
//! key, the entry's SET verifies under a Rekor key, and the entry names this signature and payload.
//!
//! Knows sigstore's formats only; `signatures` decides what an image's layers add up to.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, UnixTime};
use serde_json::Value;

use crate::registry::sha256_digest;

/// The signing certificate annotation.
pub const CERTIFICATE: &str = "dev.sigstore.cosign/certificate";
/// The certificate chain annotation.
pub const CHAIN: &str = "dev.sigstore.cosign/chain";
/// The Rekor bundle annotation.
pub const BUNDLE: &str = "dev.sigstore.cosign/bundle";

/// id-kp-codeSigning (1.3.6.1.5.5.7.3.3), DER without tag and length.
const CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];

/// Fulcio's OIDC issuer extension (1.3.6.1.4.1.57264.1.1, the issuer's bytes), DER without tag and length.
const ISSUER_V1: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x83, 0xbf, 0x30, 0x01, 0x01];
/// Fulcio's OIDC issuer extension (1.3.6.1.4.1.57264.1.8, a DER UTF8String).
const ISSUER_V2: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x83, 0xbf, 0x30, 0x01, 0x08];
/// subjectAltName (2.5.29.17).
const SAN: &[u8] = &[0x55, 0x1d, 0x11];

/// What a keyless signature must satisfy: `--trusted-root`, `--certificate-identity`,
/// `--certificate-oidc-issuer` (as cosign, both required: Fulcio issues certificates to anyone).
#[derive(Debug, Clone)]
pub struct Policy {
    /// trusted_root.json.
    pub root: std::path::PathBuf,
    /// The subject alternative name (email or URI) the certificate must carry.
    pub identity: String,
    /// The OIDC issuer the certificate must name.
    pub issuer: String,
}

/// The sigstore trust root read from `--trusted-root`, with the signer its certificates must name.
#[derive(Debug, Clone)]
pub struct TrustedRoot {
    /// Fulcio CA certificates (DER), each a trust anchor.
    cas: Vec<Vec<u8>>,
    /// Rekor public keys.
    tlogs: Vec<p256::ecdsa::VerifyingKey>,
    /// Required identity and issuer (None: any; the root on its own, as parsed).
    signer: Option<(String, String)>,
}

/// The DER elements of `b`: tag and content, or None when `b` is not DER.
fn der_items(mut b: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let tag = b[0];
        let (len, head): (usize, usize) = match *b.get(1)? {
            l if l < 0x80 => (usize::from(l), 2),
            0x81 => (usize::from(*b.get(2)?), 3),
            0x82 => ((usize::from(*b.get(2)?) << 8) | usize::from(*b.get(3)?), 4),
            0x83 => (
                (usize::from(*b.get(2)?) << 16) | (usize::from(*b.get(3)?) << 8) | usize::from(*b.get(4)?),
                5,
            ),
            _ => return None,
        };
        let content = b.get(head..head.checked_add(len)?)?;
        out.push((tag, content));
        b = &b[head + len..];
    }
    Some(out)
}

/// The content of the first element of `b`.
fn first(b: &[u8]) -> Option<&[u8]> {
    der_items(b)?.first().map(|(_, v)| *v)
}

/// The extensions of a DER certificate: (OID bytes, extnValue bytes).
fn extensions(cert: &[u8]) -> Vec<(&[u8], &[u8])> {
    // Certificate { tbsCertificate { …, [3] EXPLICIT SEQUENCE OF Extension }, … }
    let tbs = first(cert)
        .and_then(first)
        .and_then(der_items)
        .unwrap_or_default();
    let Some((_, ext)) = tbs.iter().find(|(t, _)| *t == 0xa3) else {
        return Vec::new();
    };
    first(ext)
        .and_then(der_items)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(_, e)| {
            // Extension { extnID OID, critical BOOLEAN?, extnValue OCTET STRING }
            let parts = der_items(e)?;
            let oid = parts.first().filter(|(t, _)| *t == 0x06)?.1;
            let value = parts.iter().rev().find(|(t, _)| *t == 0x04)?.1;
            Some((oid, value))
        })
        .collect()
}

/// The email (`rfc822Name`) and URI subject alternative names, and Fulcio's OIDC issuer, of a certificate.
pub fn signer_of(cert: &[u8]) -> (Vec<String>, Option<String>) {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut names = Vec::new();
    let mut issuer = None;
    for (oid, value) in extensions(cert) {
        if oid == SAN {
            let general = first(value).and_then(der_items).unwrap_or_default();
            names.extend(
                general
                    .iter()
                    .filter(|(t, _)| matches!(t, 0x81 | 0x86))
                    .map(|(_, v)| text(v)),
            );
        } else if oid == ISSUER_V2 {
            let named =
                der_items(value).and_then(|s| s.first().filter(|(t, _)| *t == 0x0c).map(|(_, v)| text(v)));
            issuer = named.or(issuer);
        } else if oid == ISSUER_V1 && issuer.is_none() {
            issuer = Some(text(value));
        }
    }
    (names, issuer)
}

fn b64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s.trim()).ok()
}

impl TrustedRoot {
    /// Parses a sigstore `trusted_root.json`; `Err` says which field is wrong.
    pub fn parse(text: &str) -> Result<TrustedRoot, String> {
        use p256::pkcs8::DecodePublicKey as _;
        let doc: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let list = |key: &str| {
            doc.get(key)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let mut cas = Vec::new();
        for (i, ca) in list("certificateAuthorities").iter().enumerate() {
            let certs = ca.pointer("/certChain/certificates").and_then(Value::as_array);
            for (j, c) in certs.into_iter().flatten().enumerate() {
                let der = c
                    .get("rawBytes")
                    .and_then(Value::as_str)
                    .and_then(b64)
                    .ok_or_else(|| {
                        format!(
                            "certificateAuthorities[{i}].certChain.certificates[{j}].rawBytes: not base64"
                        )
                    })?;
                cas.push(der);
            }
        }
        let mut tlogs = Vec::new();
        for (i, t) in list("tlogs").iter().enumerate() {
            let der = t
                .pointer("/publicKey/rawBytes")
                .and_then(Value::as_str)
                .and_then(b64)
                .ok_or_else(|| format!("tlogs[{i}].publicKey.rawBytes: not base64"))?;
            let key = p256::ecdsa::VerifyingKey::from_public_key_der(&der)
                .map_err(|_| format!("tlogs[{i}].publicKey.rawBytes: not an ECDSA P-256 public key"))?;
            tlogs.push(key);
        }
        if cas.is_empty() || tlogs.is_empty() {
            return Err("needs certificateAuthorities (Fulcio) and tlogs (Rekor)".into());
        }
        Ok(TrustedRoot {
            cas,
            tlogs,
            signer: None,
        })
    }

    /// Reads `--trusted-root FILE`; the error names the file.
    pub fn read(path: &Path) -> Result<TrustedRoot, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("--trusted-root {}: {e}", path.display()))?;
        TrustedRoot::parse(&text).map_err(|e| format!("--trusted-root {}: {e}", path.display()))
    }

    /// The root of `--trusted-root` with the signer `--certificate-identity` / `--certificate-oidc-issuer`.
    pub fn from_policy(policy: &Policy) -> Result<TrustedRoot, String> {
        let mut root = TrustedRoot::read(&policy.root)?;
        root.signer = Some((policy.identity.clone(), policy.issuer.clone()));
        Ok(root)
    }

    /// Checks a keyless signature `sig` of `payload` with its layer's `annotations`; `Err` says what
    /// failed.
    pub fn verify(
        &self,
        payload: &[u8],
        sig: &[u8],
        annotations: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        let pem = |key: &str| -> Result<Vec<CertificateDer<'static>>, String> {
            match annotations.get(key) {
                None => Ok(Vec::new()),
                Some(text) => CertificateDer::pem_slice_iter(text.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("{key}: not PEM certificates: {e:?}")),
            }
        };
        let leaf = pem(CERTIFICATE)?
            .into_iter()
            .next()
            .ok_or_else(|| format!("no {CERTIFICATE}"))?;
        let chain = pem(CHAIN)?;
        let bundle: Value = annotations
            .get(BUNDLE)
            .ok_or_else(|| format!("no {BUNDLE}"))
            .and_then(|b| serde_json::from_str(b).map_err(|e| format!("{BUNDLE}: not JSON: {e}")))?;
        let entry = bundle
            .get("Payload")
            .ok_or_else(|| format!("{BUNDLE}: no Payload"))?;
        let text = |k: &str| entry.get(k).and_then(Value::as_str);
        let number = |k: &str| entry.get(k).and_then(Value::as_i64);
        let (Some(body), Some(time), Some(index), Some(log_id)) = (
            text("body"),
            number("integratedTime"),
            number("logIndex"),
            text("logID"),
        ) else {
            return Err(format!(
                "{BUNDLE}: Payload needs body, integratedTime, logIndex, logID"
            ));
        };
        // The SET signs the entry as canonical JSON: keys sorted, no spaces.
        let canonical = format!(
            "{{\"body\":{},\"integratedTime\":{time},\"logID\":{},\"logIndex\":{index}}}",
            Value::from(body),
            Value::from(log_id)
        );
        let set = bundle
            .get("SignedEntryTimestamp")
            .and_then(Value::as_str)
            .and_then(b64)
            .ok_or_else(|| format!("{BUNDLE}: SignedEntryTimestamp is not base64"))?;
        let set_ok = p256::ecdsa::Signature::from_der(&set).is_ok_and(|s| {
            use p256::ecdsa::signature::Verifier as _;
            self.tlogs
                .iter()
                .any(|k| k.verify(canonical.as_bytes(), &s).is_ok())
        });
        if !set_ok {
            return Err("the Rekor bundle's signed entry timestamp does not verify under a Rekor key of the trusted root".into());
        }
        // The entry must be this signature of this payload (hashedrekord).
        let body: Value = b64(body)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| format!("{BUNDLE}: the entry body is not base64 JSON"))?;
        let logged_sig = body
            .pointer("/spec/signature/content")
            .and_then(Value::as_str)
            .and_then(b64);
        let logged_hash = body.pointer("/spec/data/hash/value").and_then(Value::as_str);
        let payload_hash = sha256_digest(payload);
        if logged_sig.as_deref() != Some(sig) || logged_hash != payload_hash.strip_prefix("sha256:") {
            return Err("the Rekor entry is for another signature or payload".into());
        }
        if let Some(logged) = body
            .pointer("/spec/signature/publicKey/content")
            .and_then(Value::as_str)
            .and_then(b64)
        {
            let same = CertificateDer::pem_slice_iter(&logged)
                .next()
                .and_then(Result::ok)
                .is_some_and(|c| c.as_ref() == leaf.as_ref());
            if !same {
                return Err("the Rekor entry names another certificate".into());
            }
        }
        // The certificate chains to a Fulcio root, for code signing, at the integrated time.
        let anchors_der: Vec<CertificateDer<'_>> = self
            .cas
            .iter()
            .map(|c| CertificateDer::from(c.as_slice()))
            .collect();
        let anchors = anchors_der
            .iter()
            .filter_map(|c| webpki::anchor_from_trusted_cert(c).ok())
            .collect::<Vec<_>>();
        let ee = webpki::EndEntityCert::try_from(&leaf).map_err(|e| format!("{CERTIFICATE}: {e}"))?;
        let at = UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(time).unwrap_or(0)));
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &chain,
            at,
            webpki::KeyUsage::required(CODE_SIGNING),
            None,
            None,
        )
        .map_err(|e| format!("the certificate does not chain to a Fulcio root of the trusted root at the Rekor entry's time: {e}"))?;
        let algs = [webpki::ring::ECDSA_P256_SHA256, webpki::ring::ECDSA_P384_SHA384];
        if !algs.iter().any(|a| ee.verify_signature(*a, payload, sig).is_ok()) {
            return Err("the signature does not verify under the certificate's key".into());
        }
        if let Some((identity, issuer)) = &self.signer {
            let (names, named_issuer) = signer_of(leaf.as_ref());
            if !names.iter().any(|n| n == identity) {
                let have = if names.is_empty() {
                    "no email or URI".to_string()
                } else {
                    names.join(", ")
                };
                return Err(format!(
                    "the certificate is for {have}, not --certificate-identity {identity}"
                ));
            }
            if named_issuer.as_deref() != Some(issuer.as_str()) {
                return Err(format!(
                    "the certificate's OIDC issuer is {}, not --certificate-oidc-issuer {issuer}",
                    named_issuer.as_deref().unwrap_or("not named")
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trusted_root_without_cas_or_keys_or_with_bad_bytes_is_named() {
        let e = TrustedRoot::parse("{}").unwrap_err();
        assert!(e.contains("certificateAuthorities") && e.contains("tlogs"), "{e}");
        let e = TrustedRoot::parse(r#"{"tlogs":[{"publicKey":{"rawBytes":"%%"}}]}"#).unwrap_err();
        assert_eq!(e, "tlogs[0].publicKey.rawBytes: not base64");
        let e = TrustedRoot::parse(r#"{"tlogs":[{"publicKey":{"rawBytes":"AAAA"}}]}"#).unwrap_err();
        assert!(e.contains("not an ECDSA P-256 public key"), "{e}");
        assert!(TrustedRoot::parse("[").unwrap_err().starts_with("not JSON"));
    }
}
