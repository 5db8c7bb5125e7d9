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

/// The sigstore trust root read from `--trusted-root`.
#[derive(Debug, Clone)]
pub struct TrustedRoot {
    /// Fulcio CA certificates (DER), each a trust anchor.
    cas: Vec<Vec<u8>>,
    /// Rekor public keys.
    tlogs: Vec<p256::ecdsa::VerifyingKey>,
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
        Ok(TrustedRoot { cas, tlogs })
    }

    /// Reads `--trusted-root FILE`; the error names the file.
    pub fn read(path: &Path) -> Result<TrustedRoot, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("--trusted-root {}: {e}", path.display()))?;
        TrustedRoot::parse(&text).map_err(|e| format!("--trusted-root {}: {e}", path.display()))
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
