//! A lenient read-only view of manifests: enough to walk an index or image manifest to its children,
//! never to re-serialise it (manifests are always copied as the raw bytes the source served).

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list (schema 2).
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest (schema 2).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// The `Accept` header for manifest requests: every type this client can copy.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// Largest manifest accepted: 4 MiB, the limit `distribution` enforces on push (and the least the
/// distribution spec asks registries to accept), so a bigger one could not be written to most targets.
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// True for the media types of an index / manifest list.
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

/// A platform (`os/arch[/variant]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Platform {
    /// Operating system.
    pub os: String,
    /// CPU architecture.
    pub architecture: String,
    /// CPU variant (`v8`, `v7`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Option<Platform> {
        let mut parts = s.trim().split('/');
        let os = parts.next().filter(|p| !p.is_empty())?.to_string();
        let architecture = parts.next().filter(|p| !p.is_empty())?.to_string();
        let variant = parts.next().map(str::to_string);
        if parts.next().is_some() {
            return None;
        }
        Some(Platform {
            os,
            architecture,
            variant,
        })
    }

    /// True when `self` (a filter) selects `other` (a descriptor's platform); a filter without variant
    /// selects every variant.
    pub fn selects(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && (self.variant.is_none() || self.variant == other.variant)
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A content descriptor.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type.
    #[serde(default)]
    pub media_type: String,
    /// Digest.
    pub digest: String,
    /// Size in bytes.
    #[serde(default)]
    pub size: u64,
    /// Platform (index entries only).
    #[serde(default)]
    pub platform: Option<Platform>,
    /// External URLs (foreign / non-distributable layers).
    #[serde(default)]
    pub urls: Vec<String>,
    /// Artifact type (entries of a referrers index).
    #[serde(default)]
    pub artifact_type: Option<String>,
    /// Annotations.
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
}

impl Descriptor {
    /// True for foreign (Windows base) and non-distributable layers, which registries may not hold.
    pub fn is_foreign(&self) -> bool {
        self.media_type.contains("foreign") || self.media_type.contains("nondistributable")
    }
}

/// What a manifest points to.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestView {
    /// Media type inside the document (may be absent in OCI manifests).
    #[serde(default)]
    pub media_type: Option<String>,
    /// Children of an index.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// Config blob of an image manifest.
    #[serde(default)]
    pub config: Option<Descriptor>,
    /// Layers of an image manifest.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// Subject (referrers), if any.
    #[serde(default)]
    pub subject: Option<Descriptor>,
    /// Artifact type (OCI 1.1 artifacts), if any.
    #[serde(default)]
    pub artifact_type: Option<String>,
}

impl ManifestView {
    /// Parses a manifest; `Err` names what is wrong.
    pub fn parse(bytes: &[u8]) -> Result<ManifestView, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The effective media type: the `Content-Type` the registry sent, else the document's own, else a
    /// guess from its shape.
    pub fn effective_media_type(&self, content_type: Option<&str>) -> String {
        if let Some(ct) = content_type.map(|c| c.split(';').next().unwrap_or(c).trim())
            && (is_index(ct) || ct == OCI_MANIFEST || ct == DOCKER_MANIFEST)
        {
            return ct.to_string();
        }
        if let Some(mt) = &self.media_type {
            return mt.clone();
        }
        if !self.manifests.is_empty() {
            OCI_INDEX.to_string()
        } else {
            OCI_MANIFEST.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_filter() {
        let f = Platform::parse("linux/arm64").unwrap();
        assert!(f.selects(&Platform::parse("linux/arm64/v8").unwrap()));
        assert!(!f.selects(&Platform::parse("linux/amd64").unwrap()));
        assert!(Platform::parse("linux").is_none());
        assert_eq!(
            Platform::parse("linux/arm/v7").unwrap().to_string(),
            "linux/arm/v7"
        );
    }

    #[test]
    fn walk_index_and_manifest() {
        let idx = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aa","size":3,"platform":{"os":"linux","architecture":"amd64"}}]}"#;
        let v = ManifestView::parse(idx).unwrap();
        assert_eq!(v.manifests.len(), 1);
        assert!(is_index(&v.effective_media_type(None)));
        let m = br#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:c","size":1},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"sha256:l","size":9,"urls":["https://x"]}]}"#;
        let v = ManifestView::parse(m).unwrap();
        assert_eq!(v.effective_media_type(Some("application/json")), OCI_MANIFEST);
        assert!(v.layers[0].is_foreign());
    }

    #[test]
    fn digest_of_empty() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
