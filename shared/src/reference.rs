//! Docker/OCI image references: parsing, normalisation and the target naming KKP uses.
//!
//! Every other module speaks in [`ImageRef`]s, never in raw strings, so that `nginx`,
//! `docker.io/library/nginx:latest` and `index.docker.io/library/nginx` are one image. This module knows
//! nothing of registries on the wire or of KKP beyond the `overwriteRegistry` naming rule.

use std::fmt;

/// The registry short names resolve to.
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {input:?}: {reason}")]
pub struct RefError {
    /// The text as given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A fully normalised image reference: `registry/repository[:tag][@digest]`.
///
/// A reference with neither tag nor digest gets the tag `latest` when parsed, as docker does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    /// Registry host, with port if any (`docker.io`, `localhost:5000`, `[::1]:5000`).
    pub registry: String,
    /// Repository path below the registry (`library/nginx`, `kubermatic/kubermatic`).
    pub repository: String,
    /// Tag, if any.
    pub tag: Option<String>,
    /// Digest (`sha256:<64 hex>`), if any.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses and normalises a reference (`nginx` → `docker.io/library/nginx:latest`).
    pub fn parse(input: &str) -> Result<ImageRef, RefError> {
        crate::reference::parse_impl(input)
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The tag if there is one, else the digest: what a registry manifest URL takes.
    pub fn identifier(&self) -> &str {
        self.digest.as_deref().or(self.tag.as_deref()).unwrap_or("latest")
    }

    /// The name this image gets in the private registry `target` (`host[:port][/prefix]`): the source
    /// host is dropped and the path kept, exactly as KKP's `overwriteRegistry` rewrites at run time.
    /// Tag and digest are both kept; a digest-only reference stays digest-only.
    pub fn retarget(&self, target: &str) -> Result<ImageRef, RefError> {
        let target = target.trim_end_matches('/');
        let (registry, prefix) = match target.split_once('/') {
            Some((host, prefix)) => (host.to_string(), Some(prefix)),
            None => (target.to_string(), None),
        };
        let repository = match prefix {
            Some(p) => format!("{p}/{}", self.repository),
            None => self.repository.clone(),
        };
        let out = ImageRef {
            registry,
            repository,
            tag: self.tag.clone(),
            digest: self.digest.clone(),
        };
        // Re-parse so an invalid target registry is reported, not silently produced.
        ImageRef::parse(&out.to_string()).map_err(|e| RefError {
            input: target.to_string(),
            reason: format!("not a usable target registry: {}", e.reason),
        })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for ImageRef {
    type Err = RefError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(s)
    }
}

/// First, minimal implementation; the full grammar lives here once written.
fn parse_impl(input: &str) -> Result<ImageRef, RefError> {
    let err = |reason: &str| RefError {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    if input.is_empty() {
        return Err(err("empty"));
    }
    let (rest, digest) = match input.split_once('@') {
        Some((r, d)) => (r, Some(d.to_string())),
        None => (input, None),
    };
    let (name, tag) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(rest[i + 1..].to_string())),
        _ => (rest, None),
    };
    let (registry, repository) = match name.split_once('/') {
        Some((h, p)) if h.contains('.') || h.contains(':') || h == "localhost" => {
            (h.to_string(), p.to_string())
        }
        _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
    };
    let registry = if registry == "index.docker.io" {
        DEFAULT_REGISTRY.to_string()
    } else {
        registry
    };
    let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository
    };
    if repository.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(err("repository names must be lowercase"));
    }
    let tag = if tag.is_none() && digest.is_none() {
        Some("latest".to_string())
    } else {
        tag
    };
    Ok(ImageRef {
        registry,
        repository,
        tag,
        digest,
    })
}
