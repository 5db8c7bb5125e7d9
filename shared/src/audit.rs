//! `kubectl kkp audit`: prove a running KKP install is offline. Every image that every cluster runs or
//! will pull at the next rollout is checked against the private registry: outside it is a *leak*
//! (reported with the knob that moves it and the command that fixes it), inside it but absent from the
//! mirror is *missing*.
//!
//! Read-only. The steps are those of every command: walk the clusters ([`walk`]: master, seeds through
//! their kubeconfig Secrets, user clusters through their admin kubeconfigs) → classify each image
//! ([`knob`]) → check what is under the registry at the mirror ([`check`]) → print ([`report`]).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::cli::{KubeArgs, OutputFormat};
use crate::kube::KubeError;

pub mod check;
pub mod knob;
pub mod report;
pub mod walk;

/// Flags of `kubectl kkp audit`.
#[derive(Debug, Clone, Default, Args)]
pub struct AuditArgs {
    /// Private registry every image must come from (`host[:port][/prefix]`).
    #[arg(long, value_name = "REGISTRY")]
    pub registry: String,
    /// Audit the seed clusters too, through each Seed's kubeconfig Secret [default: when readable].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true",
          require_equals = true)]
    pub seeds: Option<bool>,
    /// Audit the user clusters too, through the admin kubeconfig Secret of each `cluster-<id>`
    /// namespace on the seed clusters.
    #[arg(long)]
    pub user_clusters: bool,
    /// Image that is meant to stay outside the registry (`*` matches any text); repeatable.
    #[arg(long = "allow", value_name = "PATTERN")]
    pub allow: Vec<String>,
    /// Directory of the Helm charts the install was deployed from: leaks in their objects name the exact
    /// values key `retarget` sets.
    #[arg(long, value_name = "DIR")]
    pub charts_path: Option<PathBuf>,
    /// Helm values files the charts were installed with (as retarget).
    #[arg(long = "helm-values", value_name = "FILE")]
    pub helm_values: Vec<PathBuf>,
    /// Helm binary (default: $HELM_BINARY, else `helm` on PATH).
    #[arg(long, value_name = "PATH")]
    pub helm_binary: Option<PathBuf>,
    /// Registry host reached over plain HTTP, or HTTPS without certificate checks; repeatable (as mirror).
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
    /// Extra CA certificates (PEM) to trust, for every registry or, as HOST=FILE, for one (as mirror).
    #[arg(long = "ca-file", value_name = "[HOST=]FILE")]
    pub ca_files: Vec<String>,
    /// User name for the mirror (default: from docker/podman login files), as mirror's.
    #[arg(long, value_name = "USER")]
    pub username: Option<String>,
    /// Read the mirror's password from stdin (with --username).
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
    /// Do not ask the mirror whether the images under the registry are there.
    #[arg(long)]
    pub no_mirror_check: bool,
    /// Give up on a cluster that has not been walked after this long (e.g. 30s, 2m) [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = crate::discover::helm::parse_duration)]
    pub cluster_timeout: Option<Duration>,
    /// Objects per LIST page [default: 500].
    #[arg(long, value_name = "N")]
    pub page_size: Option<u32>,
    /// Output format: table, json or yaml [default: table].
    #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
    pub output: Option<OutputFormat>,
    #[command(flatten)]
    pub kube: KubeArgs,
    /// More log output on stderr (repeatable).
    #[arg(short = 'v', long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Why `kubectl kkp audit` could not run (findings are not errors: they are the report).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The arguments do not make sense.
    #[error("{0}")]
    Usage(String),
    /// The master cluster could not be reached at all.
    #[error(transparent)]
    Kube(#[from] KubeError),
    /// The chart keys could not be learned.
    #[error("--charts-path: {0}")]
    Charts(String),
    /// The registry client could not be set up.
    #[error("registry client: {0}")]
    Registry(String),
    /// Printing failed.
    #[error("writing output: {0}")]
    Output(#[source] std::io::Error),
}

impl AuditError {
    /// Exit code: 2 for usage, 3 for the rest (>1: not a finding).
    pub fn exit_code(&self) -> u8 {
        match self {
            AuditError::Usage(_) => 2,
            _ => 3,
        }
    }
}

/// Runs the audit; `Ok(0)` clean, `Ok(1)` something leaks or is missing.
pub async fn run(args: &AuditArgs) -> Result<u8, AuditError> {
    let registry = args.registry.trim().trim_end_matches('/').to_string();
    if registry.is_empty() {
        return Err(AuditError::Usage("--registry must not be empty".into()));
    }
    let format = args.output.unwrap_or(OutputFormat::Table);
    if format == OutputFormat::Text {
        return Err(AuditError::Usage("-o: audit prints table, json or yaml".into()));
    }
    let keys = match &args.charts_path {
        Some(root) => knob::ChartKeys::learn(root, &args.helm_values, args.helm_binary.as_deref())?,
        None => knob::ChartKeys::default(),
    };
    let client = check::client(args)?;
    let walked = walk::walk(args).await?;
    let ctx = knob::Context {
        registry: registry.clone(),
        config: walked.config.clone(),
        keys,
        charts_path: args.charts_path.clone(),
        helm_values: args.helm_values.clone(),
        insecure: {
            let host = registry.split('/').next().unwrap_or(&registry);
            args.insecure_registries
                .iter()
                .any(|h| h.trim_end_matches('/') == host)
        },
    };
    let mut rows = Vec::new();
    rows.extend(walked.not_audited.iter().cloned());
    rows.extend(walked.settings.iter().cloned());
    let (findings, images) = knob::classify(&walked.uses, &ctx, &args.allow);
    let mut mirror_rows = Vec::new();
    if !args.no_mirror_check {
        mirror_rows = check::missing(&client, &walked.uses, &registry, &args.allow).await;
    }
    rows.extend(findings);
    rows.extend(mirror_rows);
    let report = report::Report::new(registry, rows, walked.clusters, walked.objects, images);
    report.print(format).map_err(AuditError::Output)?;
    Ok(if report.failed() { 1 } else { 0 })
}
