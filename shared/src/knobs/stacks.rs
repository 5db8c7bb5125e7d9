//! Which of KKP's charts read which values file, so that `retarget` can be given a KKP release's whole
//! `charts/` directory with one values file, as `kubermatic-installer deploy` is (and `audit` can tell
//! which values file holds the key behind a chart's image).
//!
//! From the installer's stacks (`pkg/install/stack/*/stack.go`, identical in this respect in v2.29.0,
//! v2.30.0 and v2.31.0): `deploy usercluster-mla --helm-values FILE` installs `charts/mla/*` and
//! `charts/iap` with its own values file (KKP's example: `values.example.mla.yaml`, whose top-level
//! `mlaSecrets` names it); `deploy kubermatic-master` (cert-manager, dex, envoy-gateway-controller,
//! nginx-ingress-controller before v2.31, kubermatic-operator, telemetry), `deploy kubermatic-seed`
//! (minio, s3-exporter) and `deploy seed-mla` (`monitoring/*`, `logging/*`, iap) read the main values
//! file, and so do the charts operators install by hand (backup/velero, local-kubevirt, …).
//! Knows chart paths and values keys, nothing of how values are edited.

use std::path::{Path, PathBuf};

use crate::yamledit::{YamlDoc, YamlPath};

use super::KnobsError;
use super::charts::{chart_dirs, chart_name};

/// A group of KKP's charts that read the same values file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Stack {
    /// The charts that read the main values file: stacks kubermatic-master, kubermatic-seed, seed-mla,
    /// and the charts installed by hand (everything but `mla/`).
    Main,
    /// `kubermatic-installer deploy usercluster-mla`: `mla/*` and `iap`, with the MLA values file.
    UserclusterMla,
    /// Every chart below the directory, whatever values file it reads.
    All,
}

impl Stack {
    /// The name used in messages and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Stack::Main => "main",
            Stack::UserclusterMla => "usercluster-mla",
            Stack::All => "all",
        }
    }

    /// True when the chart at `name` (its path below the charts directory) belongs to this stack.
    pub fn has(self, name: &str) -> bool {
        let mla = name.starts_with("mla/");
        match self {
            Stack::Main => !mla,
            Stack::UserclusterMla => mla || name == "iap",
            Stack::All => true,
        }
    }
}

/// The stack of the values files: usercluster-mla when a file has a top-level `mlaSecrets` (the key
/// only the MLA stack's charts read), else main. Files of both kinds together are refused.
pub fn detect(values: &[(PathBuf, String)]) -> Result<Stack, KnobsError> {
    let key = YamlPath::keys(["mlaSecrets"]);
    let mut found: Option<(Stack, &Path)> = None;
    for (path, text) in values {
        let stack = match YamlDoc::parse(text.as_str()) {
            Ok(doc) if doc.document_count() > 0 && doc.contains(0, &key) => Stack::UserclusterMla,
            _ => Stack::Main,
        };
        match found {
            Some((other, first)) if other != stack => {
                return Err(KnobsError::Usage(format!(
                    "{} is a values file of KKP's {} charts but {} is one of the {} charts; they are \
                     installed with separate values files: run retarget once per file, or pass --stack",
                    first.display(),
                    other.name(),
                    path.display(),
                    stack.name()
                )));
            }
            Some(_) => {}
            None => found = Some((stack, path)),
        }
    }
    Ok(found.map_or(Stack::Main, |(s, _)| s))
}

/// The chart directories below `root` that `stack` installs, and the names of those left out. A
/// directory that is itself a chart is always kept.
pub fn select(root: &Path, stack: Stack) -> Result<(Vec<PathBuf>, Vec<String>), KnobsError> {
    let (kept, left): (Vec<PathBuf>, Vec<PathBuf>) = chart_dirs(root)?
        .into_iter()
        .partition(|d| d == root || stack.has(&chart_name(root, d)));
    if kept.is_empty() {
        return Err(KnobsError::Usage(format!(
            "{}: no chart of KKP's {} charts below this directory (--stack all takes every chart)",
            root.display(),
            stack.name()
        )));
    }
    Ok((kept, left.iter().map(|d| chart_name(root, d)).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for chart in [
            "cert-manager",
            "iap",
            "monitoring/grafana",
            "mla/grafana",
            "mla/cortex",
        ] {
            let d = dir.path().join(chart);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("Chart.yaml"), "name: x\nversion: 1.0.0\n").unwrap();
        }
        dir
    }

    fn names(root: &Path, dirs: &[PathBuf]) -> Vec<String> {
        dirs.iter().map(|d| chart_name(root, d)).collect()
    }

    #[test]
    fn each_values_file_gets_the_charts_its_stack_installs() {
        let dir = layout();
        let root = dir.path();
        let (kept, left) = select(root, Stack::Main).unwrap();
        assert_eq!(names(root, &kept), ["cert-manager", "iap", "monitoring/grafana"]);
        assert_eq!(left, ["mla/cortex", "mla/grafana"]);
        let (kept, left) = select(root, Stack::UserclusterMla).unwrap();
        assert_eq!(names(root, &kept), ["iap", "mla/cortex", "mla/grafana"]);
        assert_eq!(left, ["cert-manager", "monitoring/grafana"]);
        let (kept, left) = select(root, Stack::All).unwrap();
        assert_eq!(kept.len(), 5);
        assert!(left.is_empty());
        // One chart given directly is kept whatever the stack.
        let one = root.join("cert-manager");
        assert_eq!(
            select(&one, Stack::UserclusterMla).unwrap().0,
            std::slice::from_ref(&one)
        );
        // A dir without MLA charts for the MLA stack is an error naming it.
        let err = select(&root.join("monitoring"), Stack::UserclusterMla).unwrap_err();
        assert!(
            err.to_string()
                .contains("no chart of KKP's usercluster-mla charts"),
            "{err}"
        );
    }

    #[test]
    fn the_mla_values_file_is_told_by_its_mla_secrets() {
        let f = |name: &str, text: &str| (PathBuf::from(name), text.to_string());
        let main = f("values.yaml", "dex:\n  replicas: 1\n");
        let mla = f(
            "mla.yaml",
            "# MLA\nmlaSecrets:\n  minio:\n    enabled: true\niap: {}\n",
        );
        assert_eq!(detect(std::slice::from_ref(&main)).unwrap(), Stack::Main);
        assert_eq!(detect(std::slice::from_ref(&mla)).unwrap(), Stack::UserclusterMla);
        assert_eq!(detect(&[]).unwrap(), Stack::Main);
        let err = detect(&[main, mla]).unwrap_err().to_string();
        assert!(err.contains("values.yaml") && err.contains("mla.yaml"), "{err}");
    }
}
