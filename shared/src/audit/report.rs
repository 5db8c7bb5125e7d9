//! What the audit found, as rows, and how it is printed: a table for people (one row per finding, the
//! knob and the fixing command below it), or one JSON/YAML document; a summary line either way.

use serde::Serialize;

use crate::cli::OutputFormat;

/// What a row says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// The image (or the configured repository) is not under the registry.
    Leak,
    /// Under the registry, but the mirror does not hold it.
    Missing,
    /// A node setting that makes the mirror unusable (pause image outside it, plain HTTP not allowed).
    Misconfigured,
    /// Part of the install that could not be looked at.
    NotAudited,
    /// Worth knowing, not a failure (no node proxy).
    Note,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Leak => "leak",
            Status::Missing => "missing",
            Status::Misconfigured => "misconfigured",
            Status::NotAudited => "not audited",
            Status::Note => "note",
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// What it is.
    pub status: Status,
    /// `master`, `seed NAME` or `user cluster ID`.
    pub cluster: String,
    /// Namespace (empty for cluster-wide rows).
    pub namespace: String,
    /// `Kind/name`.
    pub object: String,
    /// Container name (or a field path for configuration rows).
    pub container: String,
    /// The image (or repository) concerned.
    pub image: String,
    /// The setting that moves the image, or why it could not be audited.
    pub knob: String,
    /// The command that fixes it, where there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// The pull error the kubelet reported for it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Counts for the summary line.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Clusters walked.
    pub clusters: usize,
    /// Pods and pod templates looked at.
    pub objects: usize,
    /// Distinct images.
    pub images: usize,
    /// Leak rows.
    pub leaks: usize,
    /// Missing rows.
    pub missing: usize,
    /// Misconfigured rows.
    pub misconfigured: usize,
    /// Not-audited rows.
    pub not_audited: usize,
    /// Notes.
    pub notes: usize,
}

/// The whole audit.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The registry audited against.
    pub registry: String,
    /// Every finding, sorted.
    pub findings: Vec<Row>,
    /// The counts.
    pub summary: Summary,
}

impl Report {
    /// Sorts and deduplicates the rows and counts them.
    pub fn new(
        registry: String,
        mut rows: Vec<Row>,
        clusters: usize,
        objects: usize,
        images: usize,
    ) -> Report {
        rows.sort();
        rows.dedup();
        let count = |s: Status| rows.iter().filter(|r| r.status == s).count();
        let summary = Summary {
            clusters,
            objects,
            images,
            leaks: count(Status::Leak),
            missing: count(Status::Missing),
            misconfigured: count(Status::Misconfigured),
            not_audited: count(Status::NotAudited),
            notes: count(Status::Note),
        };
        Report {
            registry,
            findings: rows,
            summary,
        }
    }

    /// True when the audit fails: anything leaks, is missing or is misconfigured.
    pub fn failed(&self) -> bool {
        let s = &self.summary;
        s.leaks + s.missing + s.misconfigured > 0
    }

    /// `N clusters, N objects, N images: N leaks, N missing, …`.
    pub fn summary_line(&self) -> String {
        let s = &self.summary;
        format!(
            "{} clusters, {} objects, {} images: {} leaks, {} missing, {} misconfigured, {} not audited, {} notes",
            s.clusters, s.objects, s.images, s.leaks, s.missing, s.misconfigured, s.not_audited, s.notes
        )
    }

    /// The table: one line per finding, then its knob / fix / message indented below it.
    pub fn table(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .findings
            .iter()
            .map(|r| {
                vec![
                    r.status.word().to_uppercase(),
                    r.cluster.clone(),
                    dash(&r.namespace),
                    r.object.clone(),
                    dash(&r.container),
                    dash(&r.image),
                ]
            })
            .collect();
        let table = crate::output::table(
            &["STATUS", "CLUSTER", "NAMESPACE", "OBJECT", "CONTAINER", "IMAGE"],
            &rows,
        );
        let mut out = String::new();
        let mut lines = table.lines();
        if let Some(h) = lines.next() {
            out.push_str(h);
            out.push('\n');
        }
        for (line, r) in lines.zip(&self.findings) {
            out.push_str(line);
            out.push('\n');
            let label = if r.status == Status::NotAudited {
                "reason"
            } else {
                "knob"
            };
            out.push_str(&format!("    {label}: {}\n", r.knob));
            if let Some(m) = &r.message {
                out.push_str(&format!("    pull error: {m}\n"));
            }
            if let Some(f) = &r.fix {
                out.push_str(&format!("    fix: {f}\n"));
            }
        }
        if self.findings.is_empty() {
            out.clear();
        }
        out.push_str(&self.summary_line());
        out.push('\n');
        out
    }

    /// Prints in `format` (table, json or yaml).
    pub fn print(&self, format: OutputFormat) -> std::io::Result<()> {
        let text = match crate::output::structured(self, format) {
            Some(doc) => doc,
            None => self.table(),
        };
        crate::output::print(&text)?;
        if format != OutputFormat::Table {
            eprintln!("{}", self.summary_line());
        }
        Ok(())
    }
}

fn dash(s: &str) -> String {
    if s.is_empty() { "-".into() } else { s.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: Status, image: &str) -> Row {
        Row {
            status,
            cluster: "master".into(),
            namespace: "default".into(),
            object: "Deployment/web".into(),
            container: "web".into(),
            image: image.into(),
            knob: "not managed by KKP".into(),
            fix: None,
            message: None,
        }
    }

    #[test]
    fn a_report_fails_on_leaks_and_missing_but_not_on_notes() {
        let r = Report::new(
            "reg".into(),
            vec![row(Status::Note, "a"), row(Status::NotAudited, "")],
            1,
            2,
            1,
        );
        assert!(!r.failed());
        let r = Report::new(
            "reg".into(),
            vec![row(Status::Leak, "a"), row(Status::Leak, "a")],
            1,
            2,
            1,
        );
        assert!(r.failed());
        assert_eq!(r.summary.leaks, 1, "duplicates are one finding");
        assert!(
            r.table().contains("    knob: not managed by KKP\n"),
            "{}",
            r.table()
        );
    }
}
