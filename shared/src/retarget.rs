//! `kubectl kkp retarget`: point a KubermaticConfiguration and Helm values files at the private registry,
//! in place, keeping comments and layout, and prove with a real render that no image is left behind.
//!
//! Puts the steps together: compute edits ([`config`], [`values`]) for the knobs [`crate::knobs`] knows
//! (chart keys, configuration fields, stacks), splice them ([`crate::yamledit`]), show a unified diff,
//! confirm, write atomically, check renders for leaks ([`leak`]); with `--live` the
//! KubermaticConfiguration is the object in the cluster ([`live`]). Knows nothing of registries on the
//! wire.

pub mod config;
pub mod leak;
pub mod live;
pub mod values;

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::Args;

use crate::cli::{DryRun, KubeArgs};
use crate::kube::KubeError;
use crate::yamledit::{EditError, Intended, YamlDoc, verify_edits};

pub use crate::knobs::Edition;
use crate::knobs::{KnobsError, Stack};

/// Flags of `kubectl kkp retarget`.
#[derive(Debug, Clone, Default, Args)]
pub struct RetargetArgs {
    /// Private registry the images were mirrored to (`host[:port][/prefix]`).
    #[arg(long, value_name = "REGISTRY")]
    pub registry: String,
    /// KubermaticConfiguration file to retarget.
    #[arg(long, value_name = "FILE", conflicts_with = "live")]
    pub config: Option<PathBuf>,
    /// Helm values file; repeatable (later files win, as with helm). The last one is edited.
    #[arg(long = "helm-values", value_name = "FILE")]
    pub helm_values: Vec<PathBuf>,
    /// Directory of Helm charts whose image keys are learned and whose renders are checked for leaks.
    #[arg(long, value_name = "DIR")]
    pub charts_path: Option<PathBuf>,
    /// Which of KKP's charts below --charts-path are edited and checked: those installed with the
    /// given values file (main: all but `mla/`; usercluster-mla: `mla/*` and `iap`, for KKP's MLA values
    /// file, told by its `mlaSecrets`), or all [default: from the values file].
    #[arg(long, value_enum, value_name = "STACK", requires = "charts_path")]
    pub stack: Option<Stack>,
    /// Print what would change and write nothing; exit 0 when nothing would change, 1 when something
    /// would, >1 on error.
    #[arg(long, conflicts_with = "yes")]
    pub diff: bool,
    /// The registry speaks plain HTTP: the KubermaticConfiguration gets `plainHTTP: true` for the system
    /// Applications' charts (and the default application catalog's, where configured); KKP v2.30+.
    #[arg(long, conflicts_with = "insecure_skip_tls_verify")]
    pub plain_http: bool,
    /// The registry's TLS certificate is not verified: `insecureSkipTLSVerify: true` beside the chart
    /// repositories, as for --plain-http.
    #[arg(long)]
    pub insecure_skip_tls_verify: bool,
    /// Apply without asking.
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Write the result to FILE instead of in place (one input file only), or `set` to print
    /// `--set key=value` flags for helm instead of editing a values file.
    #[arg(
        short = 'o',
        long = "output",
        value_name = "FILE|set",
        conflicts_with = "in_place"
    )]
    pub output: Option<String>,
    /// Edit the files in place (the default).
    #[arg(long)]
    pub in_place: bool,
    /// Image that may keep a non-private registry in the leak check (`*` matches any text); repeatable.
    #[arg(long = "allow-leak", value_name = "PATTERN")]
    pub allow_leak: Vec<String>,
    /// KKP edition whose default repositories are used (default: ee when the file already names a
    /// `-ee` repository, else ce).
    #[arg(long, value_enum)]
    pub edition: Option<Edition>,
    /// Helm binary (default: $HELM_BINARY, else `helm` on PATH).
    #[arg(long, value_name = "PATH")]
    pub helm_binary: Option<PathBuf>,
    /// Kill a `helm` call that runs longer than this (e.g. 90s, 5m, 1m30s) [default: 5m].
    #[arg(long, value_name = "DURATION", value_parser = crate::discover::helm::parse_duration)]
    pub helm_timeout: Option<std::time::Duration>,
    /// Retarget the KubermaticConfiguration in the cluster instead of a file (kubeconfig flags as
    /// kubectl: --kubeconfig, --context, -n, default namespace kubermatic).
    #[arg(long)]
    pub live: bool,
    /// Name of the live KubermaticConfiguration (default: the only one in the namespace).
    #[arg(long, value_name = "NAME", requires = "live")]
    pub name: Option<String>,
    /// `--dry-run` (= client): show the diff and change nothing, as --diff; `--dry-run=server`: send the
    /// live patch with dryRun=All (the server validates, persists nothing) and write no file.
    #[arg(long, value_enum, value_name = "MODE", num_args = 0..=1,
          default_missing_value = "client", require_equals = true)]
    pub dry_run: Option<DryRun>,
    #[command(flatten)]
    pub kube: KubeArgs,
    /// More log output on stderr (repeatable).
    #[arg(short = 'v', long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Why `kubectl kkp retarget` failed.
#[derive(Debug, thiserror::Error)]
pub enum RetargetError {
    /// The arguments do not make sense together.
    #[error("{0}")]
    Usage(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An edit was refused.
    #[error("{path}: {source}")]
    Edit {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: EditError,
    },
    /// An input file is not the YAML data it must be.
    #[error("{}: {message}", path.display())]
    Input {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line when known.
        message: String,
    },
    /// A `--helm-values` file helm could not use.
    #[error(transparent)]
    Values(#[from] crate::discover::helm::HelmError),
    /// Not a terminal and no `--yes`: nothing is written without consent.
    #[error(
        "refusing to write without confirmation: stdin is not a terminal; pass --yes, or --diff to only look"
    )]
    NotATerminal,
    /// The user answered no.
    #[error("aborted; nothing was written")]
    Aborted,
    /// Two charts want different values at one path of the shared values file.
    #[error(
        "{path}: chart {chart_a} needs {value_a:?} but chart {chart_b} needs {value_b:?}; use a values file per chart"
    )]
    Conflict {
        /// The values path.
        path: String,
        /// First chart.
        chart_a: String,
        /// Its value.
        value_a: String,
        /// Second chart.
        chart_b: String,
        /// Its value.
        value_b: String,
    },
    /// A chart could not be read or rendered.
    #[error("chart {chart}: {message}")]
    Chart {
        /// Chart directory.
        chart: String,
        /// What went wrong.
        message: String,
    },
    /// Charts that could not be rendered, so they cannot be proven leak-free (all of them, not the first).
    #[error("{}", render_failures(.0))]
    Render(Vec<(String, String)>),
    /// The cluster said no, or could not be reached.
    #[error(transparent)]
    Kube(#[from] KubeError),
    /// `--live` without `--name`, and the namespace has no KubermaticConfiguration.
    #[error("no KubermaticConfiguration in namespace {namespace:?}; pick the namespace with -n")]
    NoConfiguration {
        /// The namespace searched.
        namespace: String,
    },
    /// `--live` without `--name`, and the namespace has several.
    #[error(
        "{} KubermaticConfigurations in namespace {namespace:?} ({}); pick one with --name",
        names.len(),
        names.join(", ")
    )]
    SeveralConfigurations {
        /// The namespace searched.
        namespace: String,
        /// Their names.
        names: Vec<String>,
    },
    /// The live object kept changing between our reads and writes.
    #[error(
        "KubermaticConfiguration {namespace}/{name} was changed by someone else after it was read; \
         nothing was changed ({message})"
    )]
    LiveConflict {
        /// The object.
        name: String,
        /// Its namespace.
        namespace: String,
        /// The server's message.
        message: String,
    },
    /// Rendered charts still use images outside the private registry.
    #[error("{} image(s) outside {registry} after retargeting:\n{}", .leaks.len(), leak::format_leaks(.leaks))]
    Leak {
        /// The registry.
        registry: String,
        /// Every leak.
        leaks: Vec<crate::knobs::Leak>,
    },
}

/// One chart on one line; several as a list under a summary line.
fn render_failures(failed: &[(String, String)]) -> String {
    match failed {
        [(c, m)] => format!("chart {c}: {m}; it cannot be checked for leaks"),
        _ => format!(
            "{} charts could not be rendered, so they cannot be checked for leaks:\n{}",
            failed.len(),
            failed
                .iter()
                .map(|(c, m)| format!("  chart {c}: {m}"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

impl RetargetArgs {
    /// `--diff` or `--dry-run[=client]`: show, write nothing, exit 0 (no change) or 1 (change).
    /// How KKP is to reach the registry for charts (--plain-http, --insecure-skip-tls-verify).
    pub fn connection(&self) -> config::Connection {
        config::Connection {
            plain_http: self.plain_http,
            insecure_skip_tls_verify: self.insecure_skip_tls_verify,
        }
    }

    fn live_target<'a>(&self, registry: &'a str) -> live::Target<'a> {
        live::Target {
            registry,
            edition: self.edition,
            connection: self.connection(),
        }
    }

    pub fn diff_mode(&self) -> bool {
        self.diff || self.dry_run == Some(DryRun::Client)
    }
}

impl RetargetError {
    /// The process exit code (2 usage/refusal, else 1). With `--diff` every error is 2 (kubectl diff).
    pub fn exit_code(&self, diff_mode: bool) -> u8 {
        match self {
            _ if diff_mode => 2,
            RetargetError::Usage(_) | RetargetError::NotATerminal => 2,
            _ => 1,
        }
    }
}

impl From<KnobsError> for RetargetError {
    /// The knowledge errors keep the variant (and so the message and exit code) retarget had for them.
    fn from(e: KnobsError) -> Self {
        match e {
            KnobsError::Usage(m) => RetargetError::Usage(m),
            KnobsError::Io { path, source } => RetargetError::Io { path, source },
            KnobsError::Edit { path, source } => RetargetError::Edit { path, source },
            KnobsError::Chart { chart, message } => RetargetError::Chart { chart, message },
            KnobsError::Helm(e) => RetargetError::Values(e),
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RetargetError + '_ {
    move |source| RetargetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One file's planned change.
#[derive(Debug, Clone)]
pub struct FileChange {
    /// File read.
    pub source: PathBuf,
    /// File written (the source, or `-o FILE`).
    pub target: PathBuf,
    /// Text before.
    pub old: String,
    /// Text after.
    pub new: String,
    /// The edits, already verified against a re-parse.
    pub edits: Vec<Intended>,
}

impl FileChange {
    /// True when the text changes.
    pub fn changed(&self) -> bool {
        self.old != self.new
    }
}

/// Applies `edits` to `old` with span-preserving splices, then proves by re-parsing that nothing else moved.
pub fn apply_edits(path: &Path, old: &str, edits: &[Intended]) -> Result<String, RetargetError> {
    let edit_err = |source| RetargetError::Edit {
        path: path.to_path_buf(),
        source,
    };
    let mut doc = YamlDoc::parse(old).map_err(edit_err)?;
    for e in edits {
        doc.set_value(e.doc, &e.path, &e.value).map_err(edit_err)?;
    }
    let new = doc.into_text();
    verify_edits(old, &new, edits).map_err(edit_err)?;
    Ok(new)
}

/// The configuration file must load as YAML data (no duplicate keys, within the parser's limits, which
/// stop alias bombs) and hold exactly one KubermaticConfiguration: the one document, or the one document
/// of that kind in a stream.
fn check_config_data(path: &Path, text: &str) -> Result<(), RetargetError> {
    let fail = |message: String| RetargetError::Input {
        path: path.to_path_buf(),
        message,
    };
    let docs = crate::yamledit::load_data(text).map_err(|e| {
        let at = e
            .location()
            .map_or(String::new(), |l| format!("line {}: ", l.line()));
        fail(format!("{at}{}", crate::yamledit::data_error_message(&e)))
    })?;
    let docs: Vec<&serde_json::Value> = docs.iter().filter(|d| !d.is_null()).collect();
    let kkp = docs
        .iter()
        .filter(|d| d.get("kind").and_then(serde_json::Value::as_str) == Some("KubermaticConfiguration"))
        .count();
    match (docs.as_slice(), kkp) {
        ([], _) => Err(fail(
            "the file is empty; expected a KubermaticConfiguration".into(),
        )),
        (_, 2..) => Err(fail(format!(
            "{kkp} KubermaticConfiguration documents; retarget them one file at a time"
        ))),
        ([one], 0) if !one.is_object() => Err(fail(
            "the document is not a mapping, so it is not a KubermaticConfiguration".into(),
        )),
        _ => Ok(()),
    }
}

fn read(path: &Path) -> Result<String, RetargetError> {
    std::fs::read_to_string(path).map_err(io_err(path))
}

/// Runs `kubectl kkp retarget`; returns the exit code (0, or 1 under `--diff` when something would change).
pub fn run(args: &RetargetArgs) -> Result<u8, RetargetError> {
    let diff_mode = args.diff_mode();
    let server_dry_run = args.dry_run == Some(DryRun::Server);
    if server_dry_run && !args.live {
        return Err(RetargetError::Usage(
            "--dry-run=server needs --live: only the cluster can be asked".into(),
        ));
    }
    let registry = args.registry.trim_end_matches('/').to_string();
    // Validates the registry once, with a clear message.
    config::retarget_repository("quay.io/kubermatic/kubermatic", &registry)?;
    let set_mode = args.output.as_deref() == Some("set");
    if args.config.is_none() && !args.live && args.helm_values.is_empty() && args.charts_path.is_none() {
        return Err(RetargetError::Usage(
            "nothing to retarget: pass --config or --live, --helm-values and/or --charts-path".into(),
        ));
    }
    if (args.plain_http || args.insecure_skip_tls_verify) && args.config.is_none() && !args.live {
        let flag = if args.plain_http {
            "--plain-http"
        } else {
            "--insecure-skip-tls-verify"
        };
        return Err(RetargetError::Usage(format!(
            "{flag} is set in the KubermaticConfiguration: pass --config FILE or --live"
        )));
    }
    if !args.helm_values.is_empty() && args.charts_path.is_none() {
        return Err(RetargetError::Usage(
            "--helm-values needs --charts-path: the values keys are learned from the charts".into(),
        ));
    }
    if set_mode && (args.config.is_some() || args.live) {
        return Err(RetargetError::Usage(
            "-o set prints Helm flags; run --config or --live separately".into(),
        ));
    }
    if set_mode && args.charts_path.is_none() {
        return Err(RetargetError::Usage(
            "-o set needs --charts-path to learn the values keys".into(),
        ));
    }
    if args.charts_path.is_some() && args.helm_values.is_empty() && !set_mode && args.output.is_none() {
        return Err(RetargetError::Usage(
            "--charts-path needs a --helm-values file to edit, -o FILE for a new one, or -o set".into(),
        ));
    }

    let mut changes = Vec::new();
    let timeout = args
        .helm_timeout
        .unwrap_or(crate::discover::helm::DEFAULT_TIMEOUT);
    for values in &args.helm_values {
        crate::discover::helm::check_values_file(values)?;
    }
    if let Some(path) = &args.config {
        let old = read(path)?;
        check_config_data(path, &old)?;
        let doc = YamlDoc::parse(old.as_str()).map_err(|source| RetargetError::Edit {
            path: path.clone(),
            source,
        })?;
        let edition = args.edition.unwrap_or_else(|| crate::knobs::detect_edition(&doc));
        let edits = config::config_edits(&doc, &registry, edition, args.connection())?;
        let new = apply_edits(path, &old, &edits)?;
        changes.push(FileChange {
            source: path.clone(),
            target: path.clone(),
            old,
            new,
            edits,
        });
    }

    // The live object is read before anything is rendered, so a cluster error costs no helm run.
    let live = match args.live {
        true => Some(LiveSession::open(args, &registry)?),
        false => None,
    };

    // Values as they would be passed to helm after retargeting (for the leak check).
    let mut leak_values: Option<(Vec<PathBuf>, String)> = None;
    let mut set_flags = Vec::new();
    let mut chart_selection: Vec<PathBuf> = Vec::new();
    if let Some(charts) = &args.charts_path {
        let user: Vec<(PathBuf, String)> = args
            .helm_values
            .iter()
            .map(|p| read(p).map(|t| (p.clone(), t)))
            .collect::<Result<_, _>>()?;
        let stack = match args.stack {
            Some(s) => s,
            None => crate::knobs::stacks::detect(&user)?,
        };
        let (dirs, left_out) = crate::knobs::stacks::select(charts, stack)?;
        if !left_out.is_empty() {
            tracing::warn!(
                "left out {} chart(s) that KKP installs with another values file than the {} stack's \
                 (--stack all takes them): {}",
                left_out.len(),
                stack.name(),
                left_out.join(", ")
            );
        }
        let keys = crate::knobs::learn_charts_in(
            charts,
            &dirs,
            &args.helm_values,
            args.helm_binary.as_deref(),
            timeout,
        )?;
        chart_selection = dirs;
        let edits = values::values_edits(&keys, &user, &registry)?;
        if set_mode {
            // The flags act as one more values file after the user's.
            let extra = apply_edits(Path::new("--set flags"), "", &edits)?;
            leak_values = Some((args.helm_values.clone(), extra));
            set_flags = edits
                .iter()
                .map(|e| {
                    format!(
                        "--set {}={}",
                        values::set_key(&e.path),
                        values::set_value(&e.value.to_string())
                    )
                })
                .collect();
        } else {
            let (path, old) = match user.last() {
                Some((p, t)) => (p.clone(), t.clone()),
                None => (
                    PathBuf::from(args.output.as_deref().unwrap_or("values.yaml")),
                    String::new(),
                ),
            };
            let new = apply_edits(&path, &old, &edits)?;
            let mut earlier = args.helm_values.clone();
            earlier.pop();
            leak_values = Some((earlier, new.clone()));
            changes.push(FileChange {
                source: path.clone(),
                target: path,
                old,
                new,
                edits,
            });
        }
    }

    if let Some(out) = args.output.as_deref().filter(|_| !set_mode) {
        if changes.len() != 1 {
            return Err(RetargetError::Usage(format!(
                "-o FILE takes exactly one input file, got {}; edit in place or run once per file",
                changes.len()
            )));
        }
        changes[0].target = PathBuf::from(out);
    }

    let stdout = std::io::stdout();
    let colour = stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut out = stdout.lock();
    let mut any = false;
    for c in &changes {
        let text = unified_diff(c, colour);
        if !text.is_empty() {
            any = true;
            out.write_all(text.as_bytes())
                .map_err(io_err(Path::new("stdout")))?;
        }
    }
    if let Some(l) = &live
        && l.change.changed()
    {
        any = true;
        out.write_all(l.change.diff(colour).as_bytes())
            .map_err(io_err(Path::new("stdout")))?;
    }
    out.flush().map_err(io_err(Path::new("stdout")))?;
    drop(out);

    // Leak check against the values as they would be written; nothing is written when it fails.
    if let (Some(charts), Some((mut files, text))) = (&args.charts_path, leak_values) {
        let mut tmp = tempfile::NamedTempFile::new().map_err(io_err(Path::new("temporary values file")))?;
        tmp.write_all(text.as_bytes()).map_err(io_err(tmp.path()))?;
        files.push(tmp.path().to_path_buf());
        let leaks = leak::check_in(
            charts,
            &chart_selection,
            &files,
            &registry,
            &args.allow_leak,
            args.helm_binary.as_deref(),
            timeout,
        )?;
        if !leaks.is_empty() {
            return Err(RetargetError::Leak { registry, leaks });
        }
    }
    if set_mode {
        for flag in &set_flags {
            println!("{flag}");
        }
        return Ok(0);
    }
    if diff_mode {
        return Ok(u8::from(any));
    }
    if server_dry_run {
        // The server is asked about the live object; no file is written in a dry run.
        if let Some(l) = live {
            l.patch(args, &registry, true)?;
        }
        return Ok(0);
    }
    let to_write: Vec<&FileChange> = changes
        .iter()
        .filter(|c| c.changed() || c.target != c.source)
        .collect();
    let live_changed = live.as_ref().is_some_and(|l| l.change.changed());
    if to_write.is_empty() && !live_changed {
        eprintln!("nothing to change");
        return Ok(0);
    }
    if !ask(args.yes)? {
        return Err(RetargetError::Aborted);
    }
    // The cluster first: a refused patch leaves the files as they were too.
    if let Some(l) = live.filter(|_| live_changed) {
        l.patch(args, &registry, false)?;
    }
    for c in to_write {
        write_atomically(&c.target, &c.source, &c.new)?;
        eprintln!("wrote {}", c.target.display());
    }
    Ok(0)
}

/// `--yes`, or `y` on the terminal; no terminal and no `--yes` is refused.
fn ask(yes: bool) -> Result<bool, RetargetError> {
    if yes {
        return Ok(true);
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(RetargetError::NotATerminal);
    }
    confirm(&mut stdin.lock(), &mut std::io::stderr())
}

/// The cluster side of `--live`: a runtime, the connection, the object read and its change.
struct LiveSession {
    runtime: tokio::runtime::Runtime,
    cluster: crate::kube::Cluster,
    change: live::LiveChange,
}

impl LiveSession {
    /// Connects as kubectl would and reads the KubermaticConfiguration.
    fn open(args: &RetargetArgs, registry: &str) -> Result<LiveSession, RetargetError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io_err(Path::new("async runtime")))?;
        let cluster = runtime.block_on(crate::kube::connect(&args.kube))?;
        let object = runtime.block_on(live::read(&live::configurations(&cluster), args.name.as_deref()))?;
        let change = live::compute(object, &args.live_target(registry))?;
        Ok(LiveSession {
            runtime,
            cluster,
            change,
        })
    }

    /// Sends the guarded patch; a conflict shows the new diff and asks again.
    fn patch(self, args: &RetargetArgs, registry: &str, server_dry_run: bool) -> Result<(), RetargetError> {
        let objects = live::configurations(&self.cluster);
        let mut stdout = std::io::stdout();
        let mut again = || if server_dry_run { Ok(true) } else { ask(args.yes) };
        self.runtime.block_on(live::patch(
            &objects,
            self.change,
            &args.live_target(registry),
            server_dry_run,
            &mut stdout,
            &mut again,
        ))?;
        Ok(())
    }
}

/// A unified diff of one change (`--- a/FILE` / `+++ b/FILE`), coloured for a terminal; empty if unchanged.
fn unified_diff(c: &FileChange, colour: bool) -> String {
    if !c.changed() {
        return String::new();
    }
    let (old, new) = (mask_secrets(&c.old), mask_secrets(&c.new));
    let diff = similar::TextDiff::from_lines(&old, &new);
    let text = diff
        .unified_diff()
        .context_radius(3)
        .header(&diff_label("a", &c.source), &diff_label("b", &c.target))
        .to_string();
    if !colour {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 256);
    for line in text.split_inclusive('\n') {
        let code = if line.starts_with("+++") || line.starts_with("---") {
            "1"
        } else if line.starts_with('+') {
            "32"
        } else if line.starts_with('-') {
            "31"
        } else if line.starts_with("@@") {
            "36"
        } else {
            ""
        };
        if code.is_empty() {
            out.push_str(line);
        } else {
            let body = line.trim_end_matches(['\n', '\r']);
            out.push_str(&format!("\x1b[{code}m{body}\x1b[0m{}", &line[body.len()..]));
        }
    }
    out
}

/// Key names whose values are credentials (compared lowercased, as substrings).
const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "auth",
    "credential",
    "privatekey",
    "private_key",
    "apikey",
    "api_key",
    "accountkey",
    "htpasswd",
    "dockerconfigjson",
];

/// Masks, as `kubectl diff` masks Secret data, the values of credential-named keys in YAML text before it
/// is diffed for display: `password: hunter2` is shown as `password: '***'`, and each line of a block
/// scalar under such a key (`token: |`) as `***`. Retarget only ever edits image fields, so no change it
/// makes is hidden; the operator's own secrets in the context lines just never reach a terminal or a log.
fn mask_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // Indentation of a credential key whose block scalar is being masked.
    let mut block: Option<usize> = None;
    for line in text.split_inclusive('\n') {
        let content = line.trim_end_matches(['\n', '\r']);
        let eol = &line[content.len()..];
        let indent = content.len() - content.trim_start().len();
        if let Some(key_indent) = block {
            if content.trim().is_empty() || indent > key_indent {
                out.push_str(&content[..indent]);
                out.push_str(if content.trim().is_empty() { "" } else { "***" });
                out.push_str(eol);
                continue;
            }
            block = None;
        }
        let item = content.trim_start().trim_start_matches("- ");
        let masked = item.split_once(':').and_then(|(key, value)| {
            let name = key.trim().trim_matches(['"', '\'']).to_ascii_lowercase();
            let value = value.trim();
            // `authImage`, `tokenRegistry`: image fields are what retarget edits; always shown.
            let image = ["image", "repository", "registry"]
                .iter()
                .any(|k| name.contains(k));
            let secret = !image && SECRET_KEYS.iter().any(|k| name.contains(k));
            (secret && !value.is_empty() && !value.starts_with('#')).then_some((key, value))
        });
        match masked {
            Some((key, value)) => {
                if value.starts_with('|') || value.starts_with('>') {
                    block = Some(indent);
                }
                out.push_str(&content[..content.len() - item.len()]);
                out.push_str(key);
                out.push_str(": '***'");
                out.push_str(eol);
            }
            None => out.push_str(line),
        }
    }
    out
}

/// `a/dir/file` for a relative path (as git prints it), the path itself when absolute.
fn diff_label(side: &str, path: &Path) -> String {
    if path.is_absolute() {
        path.display().to_string()
    } else {
        format!("{side}/{}", path.display())
    }
}

/// Asks `Apply these changes? [y/N]`; only `y`/`yes` (any case) consents.
fn confirm(input: &mut dyn BufRead, prompt: &mut dyn Write) -> Result<bool, RetargetError> {
    let e = io_err(Path::new("terminal"));
    write!(prompt, "Apply these changes? [y/N] ")
        .and_then(|_| prompt.flush())
        .map_err(e)?;
    let mut line = String::new();
    input
        .read_line(&mut line)
        .map_err(io_err(Path::new("terminal")))?;
    Ok(matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

/// Writes `text` to `target` through a temporary file in the same directory and a rename, so readers see
/// the old or the new file, never half of one. The permissions of `target` (or of `like` for a new file)
/// are kept; a symlinked `target` is followed.
fn write_atomically(target: &Path, like: &Path, text: &str) -> Result<(), RetargetError> {
    let target = std::fs::canonicalize(target).unwrap_or_else(|_| target.to_path_buf());
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let perms = std::fs::metadata(&target)
        .or_else(|_| std::fs::metadata(like))
        .map(|m| m.permissions())
        .ok();
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io_err(&dir))?;
    tmp.write_all(text.as_bytes()).map_err(io_err(&target))?;
    tmp.as_file().sync_all().map_err(io_err(&target))?;
    if let Some(p) = perms {
        std::fs::set_permissions(tmp.path(), p).map_err(io_err(&target))?;
    }
    tmp.persist(&target).map_err(|e| RetargetError::Io {
        path: target.clone(),
        source: e.error,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests;
