//! From findings to a [`Plan`]: normalised, deduplicated source → target pairs with their origins.
//!
//! The plan is the one document every later step reads (`--dry-run` prints it, the copy engine executes
//! it), so all naming decisions are made here: target = REGISTRY + repository path (+ tag, + digest),
//! and two sources that would land on one target are refused, naming both.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::cli::OutputFormat;
use crate::discover::{Finding, Origin};
use crate::reference::{ImageRef, RefError};

/// Why a plan could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// An image reference found somewhere is not valid.
    #[error("{origin}: {source}")]
    BadReference {
        /// Where the bad reference was found.
        origin: String,
        /// What is wrong with it.
        #[source]
        source: RefError,
    },
    /// The target registry is not usable as a name prefix.
    #[error("target registry: {0}")]
    BadTarget(#[source] RefError),
    /// Two different sources map to the same target name.
    #[error(
        "{first} and {second} would both be mirrored to {target}; mirror one of them by digest or drop it"
    )]
    Collision {
        /// One source.
        first: String,
        /// The other.
        second: String,
        /// The shared target.
        target: String,
    },
}

/// One image to mirror.
#[derive(Debug, Clone, Serialize)]
pub struct PlanEntry {
    /// Normalised source reference.
    #[serde(serialize_with = "ser_display")]
    pub source: ImageRef,
    /// Target reference, when a target registry was given.
    #[serde(serialize_with = "ser_opt_display", skip_serializing_if = "Option::is_none")]
    pub target: Option<ImageRef>,
    /// Every place the image was found.
    pub origins: Vec<Origin>,
    /// What is attached to it at its source (signatures, attestations, SBOMs, referrers), when looked
    /// up (`--dry-run --attachments …`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<crate::copy::attachments::Attachment>,
}

/// The whole plan: images sorted by source, plus warnings and unconfirmed candidates.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    /// Images to mirror, sorted by source.
    pub images: Vec<PlanEntry>,
    /// Image-shaped strings that could not be confirmed (only in `--offline` mode).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<PlanEntry>,
    /// Notes for the user.
    pub warnings: Vec<String>,
    /// The KKP releases whose catalogs were planned (`v2.30.6`), when the catalog was used.
    #[serde(rename = "kkpVersions", skip_serializing_if = "Vec::is_empty")]
    pub kkp_versions: Vec<String>,
}

fn ser_display<S: serde::Serializer, T: std::fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn ser_opt_display<S: serde::Serializer, T: std::fmt::Display>(
    v: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

/// The FROM column: the source's name, and for a chart the values files it was rendered with
/// (`monitoring/grafana (values.yaml)`), so that each image can be traced to the file that moves it.
fn from(origin: &Origin) -> String {
    if origin.values.is_empty() {
        return origin.name.clone();
    }
    let files: Vec<&str> = origin
        .values
        .iter()
        .map(|v| v.rsplit('/').next().unwrap_or(v))
        .collect();
    format!("{} ({})", origin.name, files.join("+"))
}

fn describe(origin: &Origin) -> String {
    let mut s = format!("{:?} {}", origin.source, origin.name).to_lowercase();
    s = s.replacen(&origin.name.to_lowercase(), &origin.name, 1);
    if let Some(t) = &origin.template {
        s.push_str(&format!(" ({t})"));
    }
    if let Some(o) = &origin.object {
        s.push_str(&format!(" {o}"));
    }
    if let Some(f) = &origin.field {
        s.push_str(&format!(" {f}"));
    }
    if !origin.values.is_empty() {
        s.push_str(&format!(" with values {}", origin.values.join(", ")));
    }
    s
}

fn group(findings: &[Finding], target: Option<&str>) -> Result<Vec<PlanEntry>, PlanError> {
    let mut by_source: BTreeMap<ImageRef, BTreeSet<Origin>> = BTreeMap::new();
    for f in findings {
        let source = ImageRef::parse(f.image.trim()).map_err(|source| PlanError::BadReference {
            origin: describe(&f.origin),
            source,
        })?;
        by_source.entry(source).or_default().insert(f.origin.clone());
    }
    let mut entries = Vec::with_capacity(by_source.len());
    let mut by_target: BTreeMap<String, String> = BTreeMap::new();
    for (source, origins) in by_source {
        let target = match target {
            Some(t) => {
                let t = source.retarget(t).map_err(PlanError::BadTarget)?;
                if let Some(first) = by_target.insert(t.to_string(), source.to_string()) {
                    return Err(PlanError::Collision {
                        first,
                        second: source.to_string(),
                        target: t.to_string(),
                    });
                }
                Some(t)
            }
            None => None,
        };
        entries.push(PlanEntry {
            source,
            target,
            origins: origins.into_iter().collect(),
            attachments: Vec::new(),
        });
    }
    Ok(entries)
}

impl Plan {
    /// Builds a plan from confirmed images, unconfirmed candidates and warnings; `target` is the private
    /// registry (`host[:port][/prefix]`), or `None` when only sources are wanted.
    pub fn build(
        images: &[Finding],
        candidates: &[Finding],
        warnings: Vec<String>,
        target: Option<&str>,
    ) -> Result<Plan, PlanError> {
        let images = group(images, target)?;
        let known: BTreeSet<&ImageRef> = images.iter().map(|e| &e.source).collect();
        let candidates = group(candidates, None)?
            .into_iter()
            .filter(|c| !known.contains(&c.source))
            .collect();
        Ok(Plan {
            images,
            candidates,
            warnings,
            kkp_versions: Vec::new(),
        })
    }

    /// Renders the plan for stdout.
    pub fn render(&self, format: OutputFormat) -> String {
        if let Some(doc) = crate::output::structured(self, format) {
            return doc;
        }
        match format {
            OutputFormat::Json | OutputFormat::Yaml => unreachable!("handled by output::structured"),
            OutputFormat::Text => {
                let mut out = String::new();
                for e in &self.images {
                    match &e.target {
                        Some(t) => out.push_str(&format!("{} {}\n", e.source, t)),
                        None => out.push_str(&format!("{}\n", e.source)),
                    }
                }
                out
            }
            OutputFormat::Table => {
                let rows: Vec<Vec<String>> = self
                    .images
                    .iter()
                    .map(|e| {
                        let why = e.origins.iter().map(from).collect::<BTreeSet<_>>();
                        vec![
                            e.source.to_string(),
                            e.target
                                .as_ref()
                                .map(ToString::to_string)
                                .unwrap_or_else(|| "-".into()),
                            why.into_iter().collect::<Vec<_>>().join(","),
                        ]
                    })
                    .collect();
                let mut out = crate::output::table(&["SOURCE", "TARGET", "FROM"], &rows);
                out.push_str(&format!("{} images\n", self.images.len()));
                let attached: Vec<&PlanEntry> =
                    self.images.iter().filter(|e| !e.attachments.is_empty()).collect();
                if !attached.is_empty() {
                    let rows: Vec<Vec<String>> = attached
                        .iter()
                        .flat_map(|e| {
                            e.attachments.iter().map(|a| {
                                vec![
                                    e.source.to_string(),
                                    a.kind.as_str().to_string(),
                                    a.digest.clone(),
                                    a.artifact_type.clone().unwrap_or_else(|| "-".into()),
                                    a.subject.clone(),
                                ]
                            })
                        })
                        .collect();
                    out.push('\n');
                    out.push_str(&crate::output::table(
                        &["IMAGE", "ATTACHMENT", "DIGEST", "ARTIFACT TYPE", "SUBJECT"],
                        &rows,
                    ));
                    out.push_str(&format!("{} attachments\n", rows.len()));
                }
                for w in &self.warnings {
                    out.push_str(&format!("warning: {w}\n"));
                }
                out
            }
        }
    }
}
