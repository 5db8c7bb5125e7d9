//! Discovery: from the user's sources (Helm charts, manifests, KKP configuration, addons, lists) to
//! *findings* — an image reference and why it is needed.
//!
//! Discovery knows nothing of registries on the wire. Image-shaped strings it cannot be sure of (an
//! `--image=` argument, a ConfigMap value) are returned as *candidates*; confirming them (a HEAD to the
//! source registry) is the caller's business.

pub mod helm;
pub mod kkp;
pub mod manifest;

use serde::Serialize;

/// Which kind of source an image was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A Helm chart rendered with `helm template`.
    Chart,
    /// A plain manifest given with `--manifests`.
    Manifest,
    /// A KKP addon rendered for a version × provider × CNI combination.
    Addon,
    /// The KubermaticConfiguration (repository fields, `spec.mirrorImages`, backup containers).
    Config,
    /// The embedded KKP control-plane catalog.
    Catalog,
    /// An `--image-list` file.
    List,
}

/// Why an image is needed: the provenance printed with `-o json` and in `--why` style output.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Origin {
    /// Kind of source.
    pub source: SourceKind,
    /// Chart, addon, file or catalog component name.
    pub name: String,
    /// `Kind/name` of the object the image sits in, when it came from a Kubernetes object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// Field path inside the object (`spec.template.spec.containers[manager].image`), or template file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Template file the object was rendered from (`templates/deployment.yaml`), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The `--helm-values` files a chart was rendered with (as given), in order; empty elsewhere.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// One image found in one place.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Finding {
    /// The reference as written in the source (not yet normalised).
    pub image: String,
    /// Where and why.
    pub origin: Origin,
}

/// What a discovery pass returns.
#[derive(Debug, Default, Clone)]
pub struct Discovery {
    /// Images that are certainly needed.
    pub images: Vec<Finding>,
    /// Image-shaped strings (args, env, ConfigMap data) that need confirming before they are planned.
    pub candidates: Vec<Finding>,
    /// Things the user should know that are not errors.
    pub warnings: Vec<String>,
}

impl Discovery {
    /// Appends another pass's results.
    pub fn extend(&mut self, other: Discovery) {
        self.images.extend(other.images);
        self.candidates.extend(other.candidates);
        self.warnings.extend(other.warnings);
    }
}
