//! Helpers for the chart-discovery CLI tests: running the binary with a chosen environment, building a
//! charts directory that mixes good and broken charts, and reading the plan back.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use super::{bin, fixtures};

/// Runs a binary with `args`, the variables in `set` added and those in `unset` removed.
pub fn run_env(name: &str, args: &[&str], set: &[(&str, &str)], unset: &[&str]) -> Output {
    let mut cmd = Command::new(bin(name));
    cmd.args(args).stdin(Stdio::null());
    for key in unset {
        cmd.env_remove(key);
    }
    for (key, value) in set {
        cmd.env(key, value);
    }
    cmd.output().expect("binary runs")
}

/// Copies a directory tree (files and directories only).
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("create target directory");
    for entry in std::fs::read_dir(src).expect("read fixture directory") {
        let entry = entry.expect("directory entry");
        let to = dst.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).expect("copy fixture file");
        }
    }
}

/// A temporary charts directory holding the good fixture charts and the broken ones side by side.
pub fn mixed_charts_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    copy_dir(&fixtures().join("charts"), dir.path());
    copy_dir(&fixtures().join("charts-broken"), dir.path());
    dir
}

/// The sorted, normalised images the fixture charts need (values override applied, tests left out).
pub fn expected_chart_images() -> Vec<String> {
    let text = std::fs::read_to_string(fixtures().join("expected-chart-images.txt"))
        .expect("expected-chart-images.txt");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// The `source` of every entry of `plan[key]` (`images` or `candidates`) in a `-o json` plan.
pub fn sources(plan: &serde_json::Value, key: &str) -> Vec<String> {
    plan[key]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| e["source"].as_str().expect("source is a string").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Every source of a `-o json` plan, certain images and unconfirmed candidates together, sorted.
pub fn all_sources(plan: &serde_json::Value) -> Vec<String> {
    let mut all = sources(plan, "images");
    all.extend(sources(plan, "candidates"));
    all.sort();
    all.dedup();
    all
}

/// The chart names in the origins of the plan entry (image or candidate) whose source is `image`.
pub fn origin_charts(plan: &serde_json::Value, image: &str) -> Vec<String> {
    let mut names: Vec<String> = ["images", "candidates"]
        .iter()
        .filter_map(|key| plan[*key].as_array())
        .flatten()
        .filter(|e| e["source"] == image)
        .flat_map(|e| e["origins"].as_array().cloned().unwrap_or_default())
        .filter(|o| o["source"] == "chart")
        .map(|o| o["name"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Writes a one-Deployment chart at `charts/<path>` whose image is `grafana.image.repository:12.0`, the
/// repository defaulting to `repo`: the shape of KKP's `monitoring/grafana` and `mla/grafana`, which share
/// those keys with different defaults.
pub fn grafana_chart(charts: &Path, path: &str, repo: &str) {
    let d = charts.join(path);
    std::fs::create_dir_all(d.join("templates")).unwrap();
    std::fs::write(
        d.join("Chart.yaml"),
        "apiVersion: v2\nname: grafana\nversion: 1.0.0\n",
    )
    .unwrap();
    std::fs::write(
        d.join("values.yaml"),
        format!("grafana:\n  image:\n    repository: {repo}\n    tag: \"12.0\"\n"),
    )
    .unwrap();
    std::fs::write(
        d.join("templates/deploy.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: grafana\nspec:\n  template:\n    spec:\n      containers:\n        - name: grafana\n          image: \"{{ .Values.grafana.image.repository }}:{{ .Values.grafana.image.tag }}\"\n",
    )
    .unwrap();
}
