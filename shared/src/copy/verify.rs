//! `--verify`: is every planned image at the target, with the digest it should have? Nothing is copied.
//!
//! Knows registries and plans, never charts or KKP. The expected digest is the source's (a HEAD at the
//! source, or the digest the reference pins) or the one an archive recorded; the expected attachments
//! are what the source has attached to the image, or what the archive lists in the image's
//! `io.kubermatic.kkp.attachments` annotation.

use futures::StreamExt;
use serde::Serialize;

use super::attachments::{Attachment, Finder, Kinds, subjects_of};
use super::{CopyArgs, mirrored_source};
use crate::cli::OutputFormat;
use crate::reference::ImageRef;
use crate::registry::{Client, Repository};

/// How one image compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerifyStatus {
    /// At the target with the expected digest.
    Ok,
    /// Not at the target.
    Missing,
    /// At the target with another digest.
    Different,
    /// At the target with the expected digest, but something attached to it at the source is not
    /// (issue 14: signatures, attestations, SBOMs, referrers; see `missing_attachments`).
    MissingAttachments,
    /// Could not be checked (source or target unreachable).
    Error,
}

impl VerifyStatus {
    fn as_str(self) -> &'static str {
        match self {
            VerifyStatus::Ok => "ok",
            VerifyStatus::Missing => "missing",
            VerifyStatus::Different => "different",
            VerifyStatus::MissingAttachments => "missing-attachments",
            VerifyStatus::Error => "error",
        }
    }
}

/// One image's result.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyEntry {
    /// Source reference.
    pub source: String,
    /// Target reference.
    pub target: String,
    /// The digest it should have.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// The digest the target has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<String>,
    /// Outcome.
    pub status: VerifyStatus,
    /// Why it could not be checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Attachments at the source that the target lacks (`kind digest`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing_attachments: Vec<String>,
}

/// All results.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// One per planned image, in plan order.
    pub images: Vec<VerifyEntry>,
}

/// One image to check.
#[derive(Debug, Clone)]
pub struct Expectation {
    /// Where it comes from.
    pub source: ImageRef,
    /// Where it should be.
    pub target: ImageRef,
    /// The digest it should have, when already known (an archive's); else asked at the source.
    pub expected: Option<String>,
    /// What should be attached to it, when already known (an archive's); else asked at the source.
    pub attachments: Option<Vec<Attachment>>,
}

impl Expectation {
    /// An image compared with its source.
    pub fn of_source(source: ImageRef, target: ImageRef) -> Expectation {
        Expectation {
            source,
            target,
            expected: None,
            attachments: None,
        }
    }
}

/// Attachments of the image `digest` that the target does not hold: those at the source, or `known`
/// (an archive's list), of the kinds `finder` looks for.
async fn missing_attachments(
    client: &Client,
    finder: &Finder,
    src: &Repository,
    dst: &Repository,
    digest: &str,
    known: Option<&[Attachment]>,
) -> Result<Vec<String>, crate::registry::RegistryError> {
    let found;
    let items: Vec<&Attachment> = match known {
        Some(list) => list.iter().filter(|a| finder.kinds().has(a.kind)).collect(),
        None => {
            // A source that refuses to list its tags is not held against the target (the copy only
            // warns).
            match finder.may_have(client, src, digest).await {
                Ok(true) => {}
                Ok(false) => return Ok(Vec::new()),
                Err(e) if !e.is_transient() && !e.gave_up() => return Ok(Vec::new()),
                Err(e) => return Err(e),
            }
            let top = client.get_manifest(src, digest).await?;
            found = finder.find(client, src, &subjects_of(&top)).await?;
            found.items.iter().collect()
        }
    };
    let mut missing = Vec::new();
    for a in items {
        let reference = a.tag.as_deref().unwrap_or(&a.digest);
        let at = client.head_manifest(dst, reference).await?;
        if at.is_none_or(|i| i.digest != a.digest) {
            missing.push(format!("{} {}", a.kind.as_str(), a.digest));
        }
    }
    Ok(missing)
}

async fn check(
    client: &Client,
    want: &Expectation,
    mirrors: &[(String, String)],
    finder: Option<&Finder>,
) -> VerifyEntry {
    let Expectation {
        source,
        target,
        expected,
        attachments,
    } = want;
    let mut entry = VerifyEntry {
        source: source.to_string(),
        target: target.to_string(),
        expected: expected.clone().or(source.digest.clone()),
        actual: None,
        status: VerifyStatus::Error,
        error: None,
        missing_attachments: Vec::new(),
    };
    if entry.expected.is_none() {
        let src = mirrored_source(source, mirrors);
        match client.head_manifest(&src, source.identifier()).await {
            Ok(Some(info)) => entry.expected = Some(info.digest),
            Ok(None) => {
                entry.error = Some(format!("source {source} not found"));
                return entry;
            }
            Err(e) => {
                entry.error = Some(format!("source: {e}"));
                return entry;
            }
        }
    }
    let dst = Repository::of(target);
    let dst_ref = super::target_reference(target);
    match client.head_manifest(&dst, dst_ref).await {
        Ok(None) => entry.status = VerifyStatus::Missing,
        Ok(Some(info)) => {
            entry.status = if Some(&info.digest) == entry.expected.as_ref() {
                VerifyStatus::Ok
            } else {
                VerifyStatus::Different
            };
            entry.actual = Some(info.digest);
        }
        Err(e) => entry.error = Some(format!("target: {e}")),
    }
    // Attachments are compared with the source's, or with the archive's list.
    if let (VerifyStatus::Ok, Some(finder), Some(digest)) = (entry.status, finder, entry.actual.clone()) {
        let src = mirrored_source(source, mirrors);
        match missing_attachments(client, finder, &src, &dst, &digest, attachments.as_deref()).await {
            Ok(m) if m.is_empty() => {}
            Ok(m) => {
                entry.status = VerifyStatus::MissingAttachments;
                entry.missing_attachments = m;
            }
            Err(e) => {
                entry.status = VerifyStatus::Error;
                entry.error = Some(format!("attachments: {e}"));
            }
        }
    }
    entry
}

/// Checks every expectation, `parallel` at a time, in order; with `attachments`, also that what is
/// attached to each image (at its source, or as its archive lists) is at the target.
pub async fn verify(
    client: &Client,
    images: &[Expectation],
    mirrors: &[(String, String)],
    parallel: usize,
    attachments: Kinds,
) -> VerifyReport {
    let finder = (!attachments.is_empty()).then(|| Finder::new(attachments));
    let finder = finder.as_ref();
    let images = futures::stream::iter(images)
        .map(|e| check(client, e, mirrors, finder))
        .buffered(parallel.max(1))
        .collect()
        .await;
    VerifyReport { images }
}

impl VerifyReport {
    /// True when every image is ok.
    pub fn all_ok(&self) -> bool {
        self.images.iter().all(|i| i.status == VerifyStatus::Ok)
    }

    /// Renders the report for stdout.
    pub fn render(&self, format: OutputFormat) -> String {
        use crate::output::or_dash;
        crate::output::listing(
            self,
            format,
            &self.images,
            |i| {
                vec![
                    i.source.clone(),
                    i.target.clone(),
                    i.status.as_str().into(),
                    or_dash(i.actual.as_deref()),
                ]
            },
            &["TARGET", "STATUS", "EXPECTED", "ACTUAL"],
            |i| {
                vec![
                    i.target.clone(),
                    i.status.as_str().into(),
                    or_dash(i.expected.as_deref()),
                    or_dash(i.actual.as_deref()),
                ]
            },
        )
    }
}

/// `kubectl kkp mirror REGISTRY --verify`: prints the report; exit code 1 when any image is not ok
/// (each listed on stderr).
pub fn run_verify(
    images: &[Expectation],
    args: &CopyArgs,
    format: OutputFormat,
) -> Result<u8, super::archive::ArchiveError> {
    let target_host = images
        .first()
        .map(|i| i.target.registry.clone())
        .unwrap_or_default();
    let opts = args.copy_options()?;
    if !opts.platforms.is_empty() {
        eprintln!(
            "warning: --verify compares with the source's digests; an index rewritten by --platform shows as different"
        );
    }
    let (client, rt) = super::archive::client_and_runtime(args, &target_host)?;
    let report = rt.block_on(verify(
        &client,
        images,
        &opts.source_mirrors,
        opts.parallel * 2,
        opts.attachments,
    ));
    crate::output::print(&report.render(format)).map_err(super::CopyError::Output)?;
    let bad: Vec<&VerifyEntry> = report
        .images
        .iter()
        .filter(|i| i.status != VerifyStatus::Ok)
        .collect();
    let attachments = bad
        .iter()
        .filter(|i| i.status == VerifyStatus::MissingAttachments)
        .count();
    eprintln!(
        "{} images verified: {} ok, {} missing, {} different, {} not checked{}",
        report.images.len(),
        report.images.len() - bad.len(),
        bad.iter().filter(|i| i.status == VerifyStatus::Missing).count(),
        bad.iter().filter(|i| i.status == VerifyStatus::Different).count(),
        bad.iter().filter(|i| i.status == VerifyStatus::Error).count(),
        if attachments > 0 {
            format!(", {attachments} missing attachments")
        } else {
            String::new()
        }
    );
    for i in &bad {
        eprintln!(
            "{}: {} {}",
            i.status.as_str(),
            i.target,
            i.error.clone().unwrap_or_else(|| match (&i.expected, &i.actual) {
                _ if !i.missing_attachments.is_empty() => {
                    format!("lacks {}", i.missing_attachments.join(", "))
                }
                (Some(e), Some(a)) => format!("has {a}, expected {e}"),
                (Some(e), None) => format!("expected {e}"),
                _ => String::new(),
            })
        );
    }
    Ok(if report.all_ok() { 0 } else { 1 })
}
