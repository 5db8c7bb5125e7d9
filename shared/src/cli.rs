//! Argument groups every plugin flattens, so `kubectl kkp …` reads like kubectl everywhere.
//!
//! Only parsing and validation of flags lives here; no command logic.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// kubectl's cluster-selection flags (`--kubeconfig`, `--context`, `-n`).
#[derive(Debug, Clone, Default, Args)]
pub struct KubeArgs {
    /// Path to the kubeconfig file to use (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The name of the kubeconfig context to use.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Namespace of the KKP objects.
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
}

/// How data is printed on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// One JSON document.
    Json,
    /// One YAML document.
    Yaml,
    /// An aligned table for people (default on a terminal).
    Table,
    /// One `source target` pair per line, for scripts.
    Text,
}

/// kubectl's `--dry-run=none|client|server`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum DryRun {
    /// Change things for real.
    #[default]
    None,
    /// Compute and show, send nothing that writes.
    Client,
    /// Send writes with `dryRun=All`: the server validates, persists nothing.
    Server,
}

/// Output and dry-run flags shared by every plugin.
#[derive(Debug, Clone, Default, Args)]
pub struct CommonArgs {
    /// Output format: json, yaml, table or text (default: table on a terminal, else text).
    #[arg(short = 'o', long, global = true, value_enum, value_name = "FORMAT")]
    pub output: Option<OutputFormat>,
    /// Plan only: `--dry-run` (= client) prints what would happen and writes nothing.
    #[arg(long, global = true, value_enum, value_name = "MODE", num_args = 0..=1,
          default_missing_value = "client", require_equals = true)]
    pub dry_run: Option<DryRun>,
    /// More log output on stderr (repeatable: -v info, -vv debug, -vvv trace).
    #[arg(short = 'v', long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl CommonArgs {
    /// True for `--dry-run` / `--dry-run=client` / `--dry-run=server`.
    pub fn is_dry_run(&self) -> bool {
        matches!(self.dry_run, Some(DryRun::Client | DryRun::Server))
    }
}

/// Single-dash flags of KKP's old `image-loader`, mapped to ours so old scripts keep working.
const LEGACY_FLAGS: &[(&str, &str)] = &[
    ("-configuration-file", "--config"),
    ("-helm-values-file", "--helm-values"),
    ("-charts-path", "--charts-path"),
    ("-addons-path", "--addons-path"),
    ("-addons-image", "--addons-image"),
    ("-registry", "--registry"),
    ("-dry-run", "--dry-run"),
    ("-version-filter", "--version-filter"),
    ("-helm-binary", "--helm-binary"),
];

/// Rewrites image-loader style `-flag value` / `-flag=value` arguments to their `--flag` forms.
pub fn rewrite_legacy_args<I: IntoIterator<Item = OsString>>(args: I) -> Vec<OsString> {
    args.into_iter()
        .map(|arg| {
            let Some(s) = arg.to_str() else { return arg };
            let (flag, value) = match s.split_once('=') {
                Some((f, v)) => (f, Some(v)),
                None => (s, None),
            };
            match LEGACY_FLAGS.iter().find(|(old, _)| *old == flag) {
                Some((_, new)) => match value {
                    Some(v) => OsString::from(format!("{new}={v}")),
                    None => OsString::from(*new),
                },
                None => arg,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_flags_are_rewritten_and_others_kept() {
        let got = rewrite_legacy_args(
            [
                "x",
                "-configuration-file=k.yaml",
                "-charts-path",
                "c",
                "-dry-run",
                "-o",
                "json",
                "--config",
            ]
            .map(OsString::from),
        );
        let got: Vec<_> = got.iter().map(|s| s.to_str().unwrap()).collect();
        assert_eq!(
            got,
            [
                "x",
                "--config=k.yaml",
                "--charts-path",
                "c",
                "--dry-run",
                "-o",
                "json",
                "--config"
            ]
        );
    }
}
