//! Finding images in rendered Kubernetes objects: pod specs, custom resources, args, env, ConfigMaps.
//!
//! Input is YAML text (one or many documents, as `helm template` prints them); output is findings with
//! provenance. Knows nothing of Helm or registries.

use std::path::Path;

use super::{Discovery, SourceKind};

/// Where the text being scanned came from; copied into every finding's origin.
#[derive(Debug, Clone)]
pub struct ScanContext {
    /// Kind of source (chart, addon, manifest …).
    pub source: SourceKind,
    /// Chart, addon or file name.
    pub name: String,
    /// Keep objects that are Helm test hooks (`helm.sh/hook: test`).
    pub include_tests: bool,
}

/// A document that is not valid YAML or not a Kubernetes object.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {location}: {message}")]
pub struct ScanError {
    /// Chart, addon or file name.
    pub name: String,
    /// Template file and/or document number.
    pub location: String,
    /// What is wrong.
    pub message: String,
}

/// Scans a multi-document YAML stream (helm's `# Source:` comments give each object's template).
pub fn scan_stream(text: &str, ctx: &ScanContext) -> Result<Discovery, ScanError> {
    let _ = (text, ctx);
    Ok(Discovery::default())
}

/// Scans every `*.yaml`, `*.yml` and `*.json` file below `dir` (`--manifests DIR`).
pub fn scan_dir(dir: &Path, include_tests: bool) -> Result<Discovery, ScanError> {
    let _ = (dir, include_tests);
    Ok(Discovery::default())
}
