//! KKP-specific discovery: the KubermaticConfiguration, the embedded control-plane catalog, and addons.
//!
//! Nothing here runs KKP's Go code; the knowledge is data (the catalog) plus a Go-template evaluator for
//! the addons. The [`Matrix`] is the version × provider × CNI space both are evaluated over.

use semver::Version;

/// A CNI plugin type and version as KKP's `CNIPluginSettings` holds them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cni {
    /// `canal`, `cilium` or `none`.
    pub kind: String,
    /// The plugin version as KKP writes it (`v3.31`, `1.19.4`, or empty for `none`).
    pub version: String,
}

/// The combinations a KKP installation may run user clusters with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matrix {
    /// Kubernetes versions of user clusters (every patch version matters).
    pub versions: Vec<Version>,
    /// Cloud provider names as KKP spells them (`aws`, `vsphere`, …).
    pub providers: Vec<String>,
    /// CNI plugins and versions.
    pub cnis: Vec<Cni>,
}

pub mod addons;
pub mod catalog;
pub mod config;
