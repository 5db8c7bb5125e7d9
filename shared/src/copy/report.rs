//! What a copy run did, per image and in total, rendered for stdout (data) and stderr (summary).

use serde::Serialize;

use crate::cli::OutputFormat;
use crate::registry::Retries;

/// How one image ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageStatus {
    /// Written to the target in this run.
    Copied,
    /// The target already had the same manifest digest; nothing was written.
    UpToDate,
    /// Failed after retries; see `error`.
    Failed,
}

impl ImageStatus {
    fn as_str(self) -> &'static str {
        match self {
            ImageStatus::Copied => "copied",
            ImageStatus::UpToDate => "up-to-date",
            ImageStatus::Failed => "failed",
        }
    }
}

/// One image's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct ImageReport {
    /// Source reference (as planned, before `--source-mirror`).
    pub source: String,
    /// Target reference.
    pub target: String,
    /// Manifest digest at the target (the source's, unless `--platform` rewrote an index).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Outcome.
    pub status: ImageStatus,
    /// Bytes streamed from source to target.
    pub bytes_copied: u64,
    /// Bytes made available by cross-repository mounts.
    pub bytes_mounted: u64,
    /// Bytes already at the target (blobs and child manifests).
    pub bytes_skipped: u64,
    /// Requests and transfers made again for this image, by kind of fault (left out when none).
    #[serde(skip_serializing_if = "Retries::is_empty")]
    pub retries: Retries,
    /// Signatures, attestations, SBOMs and referrers written in this run (left out when none).
    #[serde(skip_serializing_if = "is_zero")]
    pub attachments_copied: u64,
    /// Attachments the target already had (left out when none).
    #[serde(skip_serializing_if = "is_zero")]
    pub attachments_present: u64,
    /// Notes (foreign layers, rewritten index).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Totals over a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Images in the plan.
    pub images: usize,
    /// Copied in this run.
    pub copied: usize,
    /// Already at the target.
    pub up_to_date: usize,
    /// Failed.
    pub failed: usize,
    /// Total bytes copied.
    pub bytes_copied: u64,
    /// Total bytes mounted.
    pub bytes_mounted: u64,
    /// Total bytes already present.
    pub bytes_skipped: u64,
    /// Every retry of the run by kind of fault (the images' and the run's own: probes, the target check).
    pub retries: Retries,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct CopyReport {
    /// One entry per planned image, in plan order.
    pub images: Vec<ImageReport>,
    /// Totals.
    pub summary: Summary,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

impl CopyReport {
    /// Builds the report and its totals.
    pub fn new(images: Vec<ImageReport>) -> CopyReport {
        let mut s = Summary {
            images: images.len(),
            ..Summary::default()
        };
        for i in &images {
            match i.status {
                ImageStatus::Copied => s.copied += 1,
                ImageStatus::UpToDate => s.up_to_date += 1,
                ImageStatus::Failed => s.failed += 1,
            }
            s.bytes_copied += i.bytes_copied;
            s.bytes_mounted += i.bytes_mounted;
            s.bytes_skipped += i.bytes_skipped;
            s.retries += &i.retries;
        }
        CopyReport { images, summary: s }
    }

    /// Images that failed.
    pub fn failures(&self) -> Vec<&ImageReport> {
        self.images
            .iter()
            .filter(|i| i.status == ImageStatus::Failed)
            .collect()
    }

    /// Every warning, prefixed with its image.
    pub fn warnings(&self) -> Vec<String> {
        self.images
            .iter()
            .flat_map(|i| i.warnings.iter().map(move |w| format!("{}: {w}", i.source)))
            .collect()
    }

    /// Prints the report in `format` on stdout, then the summary, warnings and failures on stderr;
    /// returns the exit code: 0 when every image is at the target, 1 when some failed.
    pub fn finish(&self, format: OutputFormat) -> Result<u8, std::io::Error> {
        crate::output::print(&self.render(format))?;
        eprintln!("{}", self.summary_line());
        for w in self.warnings() {
            eprintln!("warning: {w}");
        }
        let failed = self.failures();
        for f in &failed {
            eprintln!(
                "failed: {} -> {}: {}",
                f.source,
                f.target,
                f.error.as_deref().unwrap_or("unknown error")
            );
        }
        Ok(if failed.is_empty() { 0 } else { 1 })
    }

    /// One line for stderr; the retries by kind of fault when there were any.
    pub fn summary_line(&self) -> String {
        let s = &self.summary;
        let mut line = format!(
            "{} images: {} copied, {} up to date, {} failed; {} copied, {} mounted, {} already there",
            s.images,
            s.copied,
            s.up_to_date,
            s.failed,
            mib(s.bytes_copied),
            mib(s.bytes_mounted),
            mib(s.bytes_skipped)
        );
        if !s.retries.is_empty() {
            line.push_str(&format!("; {}", s.retries));
        }
        line
    }

    /// Renders the per-image report for stdout.
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
                    or_dash(i.digest.as_deref()),
                ]
            },
            &["SOURCE", "TARGET", "STATUS", "COPIED", "MOUNTED", "DIGEST"],
            |i| {
                vec![
                    i.source.clone(),
                    i.target.clone(),
                    i.status.as_str().into(),
                    mib(i.bytes_copied),
                    mib(i.bytes_mounted),
                    or_dash(i.digest.as_deref()),
                ]
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(status: ImageStatus, retries: Retries) -> ImageReport {
        ImageReport {
            source: "quay.io/a:v1".into(),
            target: "r.local/a:v1".into(),
            digest: None,
            status,
            bytes_copied: 1024 * 1024,
            bytes_mounted: 0,
            bytes_skipped: 0,
            retries,
            attachments_copied: 0,
            attachments_present: 0,
            warnings: Vec::new(),
            error: None,
        }
    }

    #[test]
    fn retries_by_kind_are_in_the_summary_line_and_the_json_report() {
        let quiet = CopyReport::new(vec![image(ImageStatus::UpToDate, Retries::default())]);
        assert_eq!(
            quiet.summary_line(),
            "1 images: 0 copied, 1 up to date, 0 failed; 1.0 MiB copied, 0.0 MiB mounted, 0.0 MiB already there"
        );
        let report = CopyReport::new(vec![
            image(
                ImageStatus::Copied,
                Retries {
                    body: 2,
                    server: 1,
                    ..Retries::default()
                },
            ),
            image(
                ImageStatus::Copied,
                Retries {
                    digest: 1,
                    ..Retries::default()
                },
            ),
        ]);
        assert!(
            report
                .summary_line()
                .ends_with("; 4 retries (2 body, 1 digest, 1 server)"),
            "{}",
            report.summary_line()
        );
        let json: serde_json::Value = serde_json::from_str(&report.render(OutputFormat::Json)).unwrap();
        assert_eq!(json["summary"]["retries"]["body"], 2);
        assert_eq!(json["summary"]["retries"]["digest"], 1);
        assert_eq!(json["images"][0]["retries"]["server"], 1);
        let quiet: serde_json::Value = serde_json::from_str(&quiet.render(OutputFormat::Json)).unwrap();
        assert!(quiet["images"][0].get("retries").is_none());
        assert_eq!(quiet["summary"]["retries"]["connection"], 0);
    }
}
