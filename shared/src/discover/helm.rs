//! Rendering Helm charts with a real `helm template`, in parallel, never touching the network.
//!
//! Knows how to find charts and drive the helm binary (Helm 3 and 4 take the same `template` flags); the
//! rendered YAML is handed to [`super::manifest`] for scanning. It must not know what an image looks like:
//! that is the scanner's business. Helm runs in an isolated environment (its own cache, config and data
//! homes in a temporary directory, an empty kubeconfig, no repositories), so a render can neither reach
//! the network nor read or change the user's Helm set-up. Vendored dependencies (`charts/*.tgz` or
//! unpacked) are used as they are; a chart whose dependencies are missing fails with helm's own message.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::manifest::{ScanContext, ScanError, scan_stream};
use super::{Discovery, SourceKind};

/// Namespace every chart is rendered into, as KKP's installer does.
pub const RENDER_NAMESPACE: &str = "mock-namespace";

/// Default for `--helm-timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Environment variable naming the helm binary when `--helm-binary` is not given.
pub const HELM_BINARY_ENV: &str = "HELM_BINARY";

/// How charts are rendered.
#[derive(Debug, Clone)]
pub struct HelmOptions {
    /// `--helm-binary`, else `$HELM_BINARY`, else `helm` on PATH.
    pub binary: Option<PathBuf>,
    /// `--helm-values` files, in order.
    pub values: Vec<PathBuf>,
    /// `--kube-version`.
    pub kube_version: Option<String>,
    /// Render test hooks too.
    pub include_tests: bool,
    /// Kill a `helm template` that runs longer than this.
    pub timeout: Duration,
    /// Charts rendered at once.
    pub jobs: usize,
}

impl Default for HelmOptions {
    /// No explicit binary or values, tests left out, a 5 minute timeout, one job per available CPU.
    fn default() -> Self {
        HelmOptions {
            binary: None,
            values: Vec::new(),
            kube_version: None,
            include_tests: false,
            timeout: DEFAULT_TIMEOUT,
            jobs: default_jobs(),
        }
    }
}

/// One `helm template` per available CPU.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// A chart that could not be rendered; the others still are.
#[derive(Debug, thiserror::Error)]
pub enum HelmError {
    /// No usable helm binary.
    #[error("helm binary not found ({0}); pass --helm-binary or set HELM_BINARY")]
    NotFound(String),
    /// `helm template` failed for one chart.
    #[error("chart {chart}: {message}")]
    Render {
        /// Chart directory name.
        chart: String,
        /// helm's own message.
        message: String,
    },
    /// The rendered output of one chart could not be scanned.
    #[error("chart {chart}: {source}")]
    Scan {
        /// Chart directory name.
        chart: String,
        /// What the scanner said.
        #[source]
        source: ScanError,
    },
    /// The charts directory could not be read.
    #[error("charts path {path}: {source}")]
    ChartsPath {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A `--helm-values` file that helm could not use (or would read differently from what it says).
    #[error("{}: {message}", path.display())]
    Values {
        /// The file as given.
        path: PathBuf,
        /// What is wrong, with the line when known.
        message: String,
    },
    /// The isolated helm environment could not be set up.
    #[error("preparing an isolated helm environment: {0}")]
    Environment(#[source] std::io::Error),
}

/// Checks a `--helm-values` file before any chart is rendered, so a broken file is one clear error
/// rather than one per chart: it must be UTF-8 YAML of one document that is a mapping (or empty), with
/// no duplicate keys (helm silently keeps the last, so what the file seems to say is not what renders),
/// within the parser's limits (which stop alias bombs).
pub fn check_values_file(path: &Path) -> Result<(), HelmError> {
    let fail = |message: String| HelmError::Values {
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        fail(format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    let docs = crate::yamledit::load_data(&text).map_err(|e| {
        let at = e
            .location()
            .map_or(String::new(), |l| format!("line {}: ", l.line()));
        fail(format!("{at}{}", crate::yamledit::data_error_message(&e)))
    })?;
    if docs.len() > 1 {
        return Err(fail(format!(
            "{} YAML documents; helm reads only the first, so merge them into one",
            docs.len()
        )));
    }
    match docs.first() {
        None | Some(serde_json::Value::Null | serde_json::Value::Object(_)) => Ok(()),
        Some(other) => Err(fail(format!(
            "the values file is a {}, but helm values must be a mapping of keys to values",
            match other {
                serde_json::Value::Array(_) => "list",
                serde_json::Value::String(_) => "string",
                serde_json::Value::Number(_) => "number",
                _ => "boolean",
            }
        ))),
    }
}

/// Every directory below `root` holding a `Chart.yaml` (not descending into a chart), sorted.
///
/// `root` itself counts when it holds a `Chart.yaml`. Hidden directories (`.git`) are skipped; symbolic
/// links to directories are not followed, so a link loop cannot hang discovery.
pub fn find_charts(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut charts = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    // `root` must exist and be a directory: report that instead of returning nothing.
    if !std::fs::metadata(root)?.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            "not a directory",
        ));
    }
    while let Some(dir) = stack.pop() {
        if dir.join("Chart.yaml").is_file() {
            charts.push(dir);
            continue;
        }
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() && !entry.file_name().to_string_lossy().starts_with('.') {
                stack.push(entry.path());
            }
        }
    }
    charts.sort();
    Ok(charts)
}

/// The name a chart is reported under: its path below the charts root (`monitoring/prometheus`), or its
/// directory name when it is the root itself.
pub fn chart_name(root: &Path, chart: &Path) -> String {
    match chart.strip_prefix(root) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/"),
        _ => base_name(chart),
    }
}

fn base_name(path: &Path) -> String {
    // `canonicalize` turns `.` or `charts/..` into a real name; fall back to the text as given.
    let named = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    named.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The release name helm is given: the chart directory's base name (as KKP's installer does), made a
/// valid release name (lowercase letters, digits and `-`, at most 53 characters).
pub fn release_name(chart: &Path) -> String {
    let mut name: String = base_name(chart)
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    name.truncate(53);
    let name = name.trim_matches('-');
    if name.is_empty() {
        "release".to_string()
    } else {
        name.to_string()
    }
}

/// What `helm version` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelmVersion {
    /// As printed (`v3.17.3`).
    pub text: String,
    /// The major version (3 or 4).
    pub major: u32,
}

/// A located helm binary and the isolated environment it runs in.
///
/// `helm version` costs as much as a whole `helm template` (Go start-up dominates both), so it is not
/// run up front: Helm 3 and 4 take the same `template` flags, and the version is only asked for when
/// something needs it — [`Helm::version`], or [`discover_charts`] explaining why every chart failed.
#[derive(Debug)]
pub struct Helm {
    binary: PathBuf,
    /// How the binary was chosen, for messages (`helm4 from --helm-binary`).
    shown: String,
    home: tempfile::TempDir,
    version: std::sync::OnceLock<Result<HelmVersion, String>>,
}

impl Helm {
    /// Finds helm (`explicit`, else `$HELM_BINARY`, else `helm` on PATH; a bare name is looked up on PATH)
    /// and prepares its isolated environment.
    pub fn locate(explicit: Option<&Path>) -> Result<Helm, HelmError> {
        let from_env = std::env::var_os(HELM_BINARY_ENV).filter(|v| !v.is_empty());
        let (wanted, how): (OsString, &str) = match (explicit, from_env) {
            (Some(p), _) => (p.as_os_str().to_owned(), "--helm-binary"),
            (None, Some(v)) => (v, "$HELM_BINARY"),
            (None, None) => ("helm".into(), "PATH"),
        };
        let shown = format!("{} from {how}", Path::new(&wanted).display());
        let binary = resolve_binary(&wanted)
            .ok_or_else(|| HelmError::NotFound(format!("{shown}: no such executable")))?;
        let home = isolated_home().map_err(HelmError::Environment)?;
        Ok(Helm {
            binary,
            shown,
            home,
            version: std::sync::OnceLock::new(),
        })
    }

    /// The resolved binary.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Asks helm for its version (once; later calls reuse the answer). A binary that cannot say is not
    /// a usable helm: [`HelmError::NotFound`].
    pub fn version(&self) -> Result<HelmVersion, HelmError> {
        self.version
            .get_or_init(|| self.probe_version())
            .clone()
            .map_err(|why| HelmError::NotFound(format!("{}: {why}", self.shown)))
    }

    fn probe_version(&self) -> Result<HelmVersion, String> {
        let out = self
            .command()
            .args(["version", "--template", "{{.Version}}"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "`helm version` failed: {}",
                helm_message(&out.stderr, out.status)
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let major = parse_major(&text)
            .ok_or_else(|| format!("`helm version` printed {text:?}, not a Helm version"))?;
        if !(3..=4).contains(&major) {
            tracing::warn!(binary = %self.binary.display(), version = %text, "untested Helm major version");
        }
        tracing::debug!(binary = %self.binary.display(), version = %text, "helm version");
        Ok(HelmVersion { text, major })
    }

    /// A `helm` command in the isolated environment: every inherited `HELM_*` variable removed, the homes,
    /// repository and registry configuration in the temporary directory, `KUBECONFIG` an empty file.
    /// Every helm call of every command goes through here, so none of them sees the user's helm setup.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        own_process_group(&mut cmd);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("HELM_") {
                cmd.env_remove(&key);
            }
        }
        let home = self.home.path();
        cmd.env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .env("HELM_REPOSITORY_CONFIG", home.join("repositories.yaml"))
            .env("HELM_REPOSITORY_CACHE", home.join("cache/repository"))
            .env("HELM_REGISTRY_CONFIG", home.join("registry.json"))
            .env("HELM_PLUGINS", home.join("plugins"))
            .env("KUBECONFIG", home.join("kubeconfig"))
            .env("HELM_NAMESPACE", RENDER_NAMESPACE);
        cmd
    }

    /// The `helm template` arguments for one chart (Helm 3 and 4 share them).
    pub fn template_args(&self, chart: &Path, opts: &HelmOptions) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "template".into(),
            release_name(chart).into(),
            chart.as_os_str().to_owned(),
            "--namespace".into(),
            RENDER_NAMESPACE.into(),
        ];
        for v in &opts.values {
            args.push("--values".into());
            args.push(v.as_os_str().to_owned());
        }
        if let Some(kv) = &opts.kube_version {
            args.push("--kube-version".into());
            args.push(kv.into());
        }
        if !opts.include_tests {
            args.push("--skip-tests".into());
        }
        args
    }

    /// Runs `helm template` on one chart and returns the rendered YAML; `name` is what errors call it.
    pub fn render(&self, chart: &Path, name: &str, opts: &HelmOptions) -> Result<String, HelmError> {
        let render_err = |message: String| HelmError::Render {
            chart: name.to_string(),
            message,
        };
        let started = Instant::now();
        let mut child = self
            .command()
            .args(self.template_args(chart, opts))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| render_err(format!("running {}: {e}", self.binary.display())))?;
        let _on_ctrl_c = crate::interrupt::track(child.id());
        let stdout = child.stdout.take().map(drain);
        let stderr = child.stderr.take().map(drain);
        let status = wait_with_timeout(&mut child, opts.timeout)
            .map_err(|e| render_err(format!("waiting for {}: {e}", self.binary.display())))?;
        let Some(status) = status else {
            // helm is dead; the readers are left to finish on their own in case something it started
            // still holds the pipes open.
            return Err(render_err(format!(
                "helm template timed out after {}",
                format_duration(opts.timeout)
            )));
        };
        let stdout = stdout.map(join_drain).unwrap_or_default();
        let stderr = stderr.map(join_drain).unwrap_or_default();
        tracing::debug!(chart = name, elapsed = ?started.elapsed(), %status, "helm template");
        if !status.success() {
            return Err(render_err(helm_message(&stderr, status)));
        }
        let warnings = String::from_utf8_lossy(&stderr);
        for line in warnings.lines().filter(|l| !l.trim().is_empty()) {
            tracing::debug!(chart = name, "helm: {line}");
        }
        String::from_utf8(stdout).map_err(|_| render_err("helm printed output that is not UTF-8".into()))
    }
}

/// Renders one chart with the helm `opts` choose; errors name the chart by its directory name.
pub fn render_chart(chart: &Path, opts: &HelmOptions) -> Result<String, HelmError> {
    let helm = Helm::locate(opts.binary.as_deref())?;
    helm.render(chart, &base_name(chart), opts)
}

/// One chart's render: its reported name and the rendered YAML or its error.
pub type Rendered = (String, Result<String, HelmError>);

/// Renders `charts` with up to `opts.jobs` helm processes at once; results come back in input order, each
/// as (reported name, rendered YAML or the chart's error).
pub fn render_all(helm: &Helm, root: &Path, charts: &[PathBuf], opts: &HelmOptions) -> Vec<Rendered> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Rendered>>> = Mutex::new(charts.iter().map(|_| None).collect());
    let workers = opts.jobs.clamp(1, charts.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(chart) = charts.get(i) else { break };
                    let name = chart_name(root, chart);
                    let out = helm.render(chart, &name, opts);
                    if let Ok(mut r) = results.lock() {
                        r[i] = Some((name, out));
                    }
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect()
}

/// Renders and scans every chart below `root`; per-chart failures are returned beside the discovery.
pub fn discover_charts(root: &Path, opts: &HelmOptions) -> Result<(Discovery, Vec<HelmError>), HelmError> {
    let charts = find_charts(root).map_err(|source| HelmError::ChartsPath {
        path: root.to_path_buf(),
        source,
    })?;
    let mut discovery = Discovery::default();
    let mut errors = Vec::new();
    if charts.is_empty() {
        discovery.warnings.push(format!(
            "no chart (directory with a Chart.yaml) below {}",
            root.display()
        ));
        return Ok((discovery, errors));
    }
    let helm = Helm::locate(opts.binary.as_deref())?;
    tracing::info!(charts = charts.len(), helm = %helm.binary().display(), jobs = opts.jobs, "rendering charts");
    let mut all_failed = true;
    for (values, charts) in stack_renders(root, &charts, &opts.values)? {
        let opts = HelmOptions {
            values: values.clone(),
            ..opts.clone()
        };
        let given: Vec<String> = values.iter().map(|v| v.display().to_string()).collect();
        for (name, rendered) in render_all(&helm, root, &charts, &opts) {
            let text = match rendered {
                Ok(text) => text,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            all_failed = false;
            let ctx = ScanContext {
                source: SourceKind::Chart,
                name: name.clone(),
                include_tests: opts.include_tests,
            };
            match scan_stream(&text, &ctx) {
                Ok(mut found) => {
                    for f in found.images.iter_mut().chain(found.candidates.iter_mut()) {
                        f.origin.values.clone_from(&given);
                    }
                    discovery.extend(found)
                }
                Err(source) => errors.push(HelmError::Scan { chart: name, source }),
            }
        }
    }
    if all_failed {
        // Nothing rendered: if the binary is not a working helm, say that once instead of per chart.
        helm.version()?;
    }
    Ok((discovery, errors))
}

/// Values files (in order) and the charts rendered with them.
type StackRender = (Vec<PathBuf>, Vec<PathBuf>);

/// Which charts are rendered with which values files. KKP's installer reads two kinds of values file
/// ([`crate::knobs::stacks`]): `deploy usercluster-mla` renders `mla/*` and `iap` with the MLA file
/// (told by its top-level `mlaSecrets`), everything else reads the main file. Given files of both kinds,
/// each stack's charts are rendered with its own files (`iap` with both, as both stacks install it);
/// given files of one kind (or none), every chart is rendered with all of them, in order.
fn stack_renders(root: &Path, charts: &[PathBuf], values: &[PathBuf]) -> Result<Vec<StackRender>, HelmError> {
    use crate::knobs::stacks::{Stack, detect};
    let mut main = Vec::new();
    let mut mla = Vec::new();
    for path in values {
        let text = std::fs::read_to_string(path).map_err(|e| HelmError::Values {
            path: path.clone(),
            message: e.to_string(),
        })?;
        match detect(&[(path.clone(), text)]) {
            Ok(Stack::UserclusterMla) => mla.push(path.clone()),
            _ => main.push(path.clone()),
        }
    }
    if main.is_empty() || mla.is_empty() {
        return Ok(vec![(values.to_vec(), charts.to_vec())]);
    }
    let of = |stack: Stack| -> Vec<PathBuf> {
        charts
            .iter()
            .filter(|c| *c == root || stack.has(&chart_name(root, c)))
            .cloned()
            .collect()
    };
    Ok(vec![(main, of(Stack::Main)), (mla, of(Stack::UserclusterMla))])
}

/// `--helm-binary helm4` or `/usr/bin/helm`: a bare name is looked up on PATH, a path must exist.
fn resolve_binary(wanted: &std::ffi::OsStr) -> Option<PathBuf> {
    let path = Path::new(wanted);
    if path.components().count() > 1 {
        path.is_file().then(|| path.to_path_buf())
    } else {
        which::which(wanted).ok()
    }
}

fn isolated_home() -> std::io::Result<tempfile::TempDir> {
    let home = tempfile::Builder::new().prefix("kkp-helm-").tempdir()?;
    for dir in ["cache/repository", "config", "data", "plugins"] {
        std::fs::create_dir_all(home.path().join(dir))?;
    }
    std::fs::write(home.path().join("kubeconfig"), "")?;
    std::fs::write(home.path().join("repositories.yaml"), "")?;
    Ok(home)
}

fn parse_major(version: &str) -> Option<u32> {
    let v = version.trim().trim_start_matches('v');
    v.split('.').next()?.parse().ok()
}

/// helm's message from its stderr: from the first `Error:` line on (prefix dropped), else all of it.
fn helm_message(stderr: &[u8], status: std::process::ExitStatus) -> String {
    let text = String::from_utf8_lossy(stderr);
    // Helm 3 adds a hint that is no use to our users (they cannot pass --debug through us).
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("Use --debug flag"))
        .collect();
    let msg = match lines.iter().position(|l| l.starts_with("Error:")) {
        Some(i) => {
            let mut m = lines[i..].join("\n");
            m.replace_range(.."Error:".len(), "");
            m
        }
        None => text.to_string(),
    };
    let msg = msg.trim();
    if msg.is_empty() {
        format!("helm template failed ({status})")
    } else {
        msg.to_string()
    }
}

/// Runs `cmd` (stdin closed, output captured) and kills it once `timeout` has passed: `Ok(None)` then.
pub fn output_with_timeout(
    cmd: &mut Command,
    timeout: Duration,
) -> std::io::Result<Option<std::process::Output>> {
    own_process_group(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let _on_ctrl_c = crate::interrupt::track(child.id());
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    let Some(status) = wait_with_timeout(&mut child, timeout)? else {
        return Ok(None);
    };
    Ok(Some(std::process::Output {
        status,
        stdout: stdout.map(join_drain).unwrap_or_default(),
        stderr: stderr.map(join_drain).unwrap_or_default(),
    }))
}

type Drain = std::thread::JoinHandle<Vec<u8>>;

fn drain<R: Read + Send + 'static>(mut r: R) -> Drain {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        // A read error only truncates what helm said; the exit status still decides.
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

fn join_drain(h: Drain) -> Vec<u8> {
    h.join().unwrap_or_default()
}

/// Starts the command as the leader of a new process group, so that a timeout can kill everything it
/// started, not only the process itself.
fn own_process_group(cmd: &mut Command) {
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(cmd, 0);
    #[cfg(not(unix))]
    let _ = cmd;
}

/// Kills the process group `child` leads (see [`own_process_group`]).
fn kill_process_group(child: &std::process::Child) {
    #[cfg(unix)]
    if let Ok(pgid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) with a negative pid only sends a signal to that process group; no memory is
        // shared. The group is ours: the child was started as its leader and is not yet reaped, so the
        // id cannot have been reused.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
    #[cfg(not(unix))]
    let _ = child;
}

/// Waits for `child`; kills it (and its process group) and returns `None` once `timeout` has passed.
fn wait_with_timeout(
    child: &mut std::process::Child,
    timeout: Duration,
) -> std::io::Result<Option<std::process::ExitStatus>> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            // The process may have exited just now; either way it is reaped below. Whatever it
            // started (helm plugins, post-renderers, a wrapper script's children) goes with it.
            kill_process_group(child);
            let _ = child.kill();
            child.wait()?;
            return Ok(None);
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Why a `--helm-timeout` value is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?}: use e.g. 90s, 5m, 1m30s or 500ms")]
pub struct DurationError(pub String);

/// Parses Go-style durations as helm takes them: `5m`, `1m30s`, `90s`, `500ms`, `1h`; a bare number is
/// seconds. Zero is refused (it would kill every render).
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = || DurationError(input.to_string());
    let s = input.trim();
    if s.is_empty() {
        return Err(err());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return (secs > 0).then(|| Duration::from_secs(secs)).ok_or_else(err);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        let (num, tail) = rest.split_at(digits);
        let value: f64 = num.parse().map_err(|_| err())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(err()),
        };
        total += Duration::try_from_secs_f64(value * scale).map_err(|_| err())?;
        rest = tail;
    }
    if total.is_zero() { Err(err()) } else { Ok(total) }
}

/// Formats a duration the way it is usually written on the command line: `5m`, `1m30s`, `2s`, `250ms`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The helm binaries every render test runs against: both majors must behave the same.
    const HELMS: [&str; 2] = ["helm3", "helm4"];

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
    }

    fn opts(helm: &str) -> HelmOptions {
        HelmOptions {
            binary: Some(PathBuf::from(helm)),
            ..HelmOptions::default()
        }
    }

    /// A stand-in helm: a shell script, installed by a child process so that no writable descriptor of it
    /// leaks into helm processes other tests start concurrently (which would make exec fail with ETXTBSY).
    fn fake_helm(dir: &Path, body: &str) -> PathBuf {
        let src = dir.join("helm.txt");
        let dst = dir.join("helm");
        std::fs::write(&src, format!("#!/bin/sh\n{body}\n")).unwrap();
        let ok = Command::new("install")
            .arg("-m")
            .arg("755")
            .arg(&src)
            .arg(&dst)
            .status()
            .unwrap()
            .success();
        assert!(ok, "install fake helm");
        dst
    }

    #[test]
    fn finds_charts_sorted_without_descending_into_them() {
        let root = fixtures().join("charts");
        let charts = find_charts(&root).unwrap();
        let names: Vec<String> = charts.iter().map(|c| chart_name(&root, c)).collect();
        // umbrella/charts/ingress-nginx has a Chart.yaml too, but it belongs to the umbrella.
        assert_eq!(names, ["cert-manager", "monitoring/helm-exporter", "umbrella"]);
    }

    #[test]
    fn a_chart_given_as_the_root_is_itself_the_chart() {
        let root = fixtures().join("charts/umbrella");
        let charts = find_charts(&root).unwrap();
        assert_eq!(charts, std::slice::from_ref(&root));
        assert_eq!(chart_name(&root, &charts[0]), "umbrella");
    }

    #[test]
    fn missing_charts_path_is_an_error_naming_it() {
        let root = fixtures().join("no-such-dir");
        let err = discover_charts(&root, &opts("helm3")).unwrap_err();
        assert!(matches!(err, HelmError::ChartsPath { .. }), "{err}");
        assert!(err.to_string().contains("no-such-dir"), "{err}");
    }

    #[test]
    fn release_names_are_valid_helm_release_names() {
        assert_eq!(release_name(Path::new("/x/cert-manager")), "cert-manager");
        assert_eq!(release_name(Path::new("/x/My_Chart.v2")), "my-chart-v2");
        assert_eq!(release_name(Path::new(&"a".repeat(80))).len(), 53);
    }

    #[test]
    fn umbrella_renders_vendored_aliased_subcharts_offline() {
        for helm in HELMS {
            let text = render_chart(&fixtures().join("charts/umbrella"), &opts(helm)).unwrap();
            // Unpacked subchart under its alias, with the umbrella's values (digest) winning over its own.
            assert!(
                text.contains(
                    "image: \"registry.k8s.io/ingress-nginx/controller:v1.14.3@sha256:\
                     0a5f3c5b0e9c8d7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a\""
                ),
                "{helm}: {text}"
            );
            // Subchart vendored as .tgz.
            assert!(
                text.contains("image: docker.io/envoyproxy/gateway:v1.8.3"),
                "{helm}: {text}"
            );
            assert!(
                text.contains("image: docker.io/envoyproxy/ratelimit:1e50889b"),
                "{helm}: {text}"
            );
            // The umbrella's own custom resource.
            assert!(text.contains("kind: EnvoyProxy"), "{helm}: {text}");
            assert!(
                text.contains("image: 'docker.io/envoyproxy/envoy:distroless-v1.38.3'"),
                "{helm}: {text}"
            );
            // Rendered as KKP does: release = directory name, in mock-namespace; the subchart is
            // rendered under its alias.
            assert!(text.contains("name: umbrella-nginx-controller"), "{helm}: {text}");
            assert!(text.contains("namespace: mock-namespace"), "{helm}: {text}");
            // helm's `# Source:` comments stay for the scanner.
            assert!(
                text.contains("# Source: umbrella/charts/gateway/templates/envoy-gateway-configmap.yaml"),
                "{helm}: {text}"
            );
        }
    }

    #[test]
    fn values_files_and_kube_version_are_passed_to_helm() {
        let chart = fixtures().join("charts/monitoring/helm-exporter");
        for helm in HELMS {
            let plain = render_chart(&chart, &opts(helm)).unwrap();
            assert!(
                plain.contains("docker.io/sstarcher/helm-exporter:1.2.16"),
                "{helm}: {plain}"
            );
            let o = HelmOptions {
                values: vec![fixtures().join("values-override.yaml")],
                kube_version: Some("1.34.2".into()),
                ..opts(helm)
            };
            let text = render_chart(&chart, &o).unwrap();
            assert!(
                text.contains("docker.io/sstarcher/helm-exporter:1.2.17"),
                "{helm}: {text}"
            );
            assert!(!text.contains("1.2.16"), "{helm}: {text}");
            assert!(
                text.contains("fixture/kube-version: \"v1.34.2\""),
                "{helm}: {text}"
            );
        }
    }

    #[test]
    fn test_hooks_are_left_out_unless_asked_for() {
        let chart = fixtures().join("charts/monitoring/helm-exporter");
        for helm in HELMS {
            let text = render_chart(&chart, &opts(helm)).unwrap();
            assert!(!text.contains("busybox"), "{helm}: {text}");
            let o = HelmOptions {
                include_tests: true,
                ..opts(helm)
            };
            let text = render_chart(&chart, &o).unwrap();
            assert!(text.contains("image: busybox"), "{helm}: {text}");
            assert!(text.contains("\"helm.sh/hook\": test"), "{helm}: {text}");
        }
    }

    #[test]
    fn broken_charts_fail_with_helms_message_and_the_others_render() {
        let root = fixtures();
        let charts = [
            root.join("charts-broken/bad-template"),
            root.join("charts/cert-manager"),
            root.join("charts-broken/missing-dep"),
            root.join("charts/umbrella"),
        ];
        for name in HELMS {
            let o = HelmOptions {
                jobs: 3,
                ..opts(name)
            };
            let helm = Helm::locate(o.binary.as_deref()).unwrap();
            let results = render_all(&helm, &root, &charts, &o);
            let names: Vec<&str> = results.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(
                names,
                [
                    "charts-broken/bad-template",
                    "charts/cert-manager",
                    "charts-broken/missing-dep",
                    "charts/umbrella"
                ]
            );
            let msg = |i: usize| match &results[i].1 {
                Err(e) => e.to_string(),
                Ok(text) => panic!("{name}: {} rendered: {text}", results[i].0),
            };
            let bad = msg(0);
            assert!(
                bad.starts_with("chart charts-broken/bad-template: execution error at")
                    && bad.ends_with("image.repository is required"),
                "{name}: {bad}"
            );
            let missing = msg(2);
            assert!(
                missing.starts_with("chart charts-broken/missing-dep: ")
                    && missing.ends_with("found in Chart.yaml, but missing in charts/ directory: dex"),
                "{name}: {missing}"
            );
            let ok = |i: usize| results[i].1.as_ref().unwrap();
            assert!(
                ok(1).contains("--acme-http01-solver-image=quay.io/jetstack/cert-manager-acmesolver:v1.20.3")
            );
            assert!(ok(3).contains("docker.io/envoyproxy/gateway:v1.8.3"));
        }
    }

    #[test]
    fn helm_runs_isolated_from_the_users_setup() {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("record");
        let helm = fake_helm(
            dir.path(),
            &format!(
                r#"if [ "$1" = version ]; then printf v3.99.0; exit 0; fi
{{ printf 'ARGS'; for a in "$@"; do printf ' %s' "$a"; done; echo
   env | grep -E '^(HELM_|KUBECONFIG=)' | sort
   echo "KUBECONFIG_BYTES=$(wc -c < "$KUBECONFIG")"
   echo "REPOSITORIES_BYTES=$(wc -c < "$HELM_REPOSITORY_CONFIG")"; }} > '{}'
echo 'kind: ConfigMap'"#,
                record.display()
            ),
        );
        let chart = fixtures().join("charts/cert-manager");
        let o = HelmOptions {
            binary: Some(helm),
            values: vec![PathBuf::from("/v/a.yaml"), PathBuf::from("/v/b.yaml")],
            kube_version: Some("1.34.2".into()),
            ..HelmOptions::default()
        };
        let text = render_chart(&chart, &o).unwrap();
        assert_eq!(text.trim(), "kind: ConfigMap");
        let rec = std::fs::read_to_string(&record).unwrap();
        let args = rec.lines().next().unwrap();
        assert_eq!(
            args,
            format!(
                "ARGS template cert-manager {} --namespace mock-namespace --values /v/a.yaml --values \
                 /v/b.yaml --kube-version 1.34.2 --skip-tests",
                chart.display()
            )
        );
        let env: std::collections::BTreeMap<&str, &str> =
            rec.lines().skip(1).filter_map(|l| l.split_once('=')).collect();
        let home = Path::new(env["HELM_CONFIG_HOME"]).parent().unwrap();
        assert!(
            home.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("kkp-helm-"),
            "{rec}"
        );
        for key in [
            "HELM_CACHE_HOME",
            "HELM_DATA_HOME",
            "HELM_REPOSITORY_CONFIG",
            "HELM_REGISTRY_CONFIG",
            "KUBECONFIG",
        ] {
            assert!(Path::new(env[key]).starts_with(home), "{key}: {rec}");
        }
        assert_eq!(env["KUBECONFIG_BYTES"], "0");
        assert_eq!(env["REPOSITORIES_BYTES"], "0");
        assert!(!env.contains_key("HELM_BINARY"), "{rec}");
        // The temporary home goes away with the Helm value.
        assert!(!home.exists(), "{rec}");
    }

    #[test]
    fn a_hanging_helm_is_killed_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let helm = fake_helm(
            dir.path(),
            r#"if [ "$1" = version ]; then printf v4.1.0; exit 0; fi
exec sleep 60"#,
        );
        let o = HelmOptions {
            binary: Some(helm),
            timeout: Duration::from_millis(300),
            ..HelmOptions::default()
        };
        let err = render_chart(&fixtures().join("charts/cert-manager"), &o).unwrap_err();
        assert_eq!(
            err.to_string(),
            "chart cert-manager: helm template timed out after 300ms"
        );
    }

    #[test]
    fn a_missing_or_broken_helm_is_not_found() {
        let err = Helm::locate(Some(Path::new("/nonexistent/helm"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "helm binary not found (/nonexistent/helm from --helm-binary: no such executable); \
             pass --helm-binary or set HELM_BINARY"
        );
        let dir = tempfile::tempdir().unwrap();
        let helm = fake_helm(dir.path(), "echo 'something else'");
        let err = Helm::locate(Some(&helm)).unwrap().version().unwrap_err();
        assert!(err.to_string().contains("not a Helm version"), "{err}");
        // When no chart renders, discovery explains it with the binary, not once per chart.
        let helm = fake_helm(dir.path(), "echo 'Error: boom' >&2; exit 3");
        let err = discover_charts(
            &fixtures().join("charts"),
            &HelmOptions {
                binary: Some(helm.clone()),
                ..HelmOptions::default()
            },
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "helm binary not found ({} from --helm-binary: `helm version` failed: boom); \
                 pass --helm-binary or set HELM_BINARY",
                helm.display()
            )
        );
    }

    #[test]
    fn both_helm_majors_are_detected() {
        let v3 = Helm::locate(Some(Path::new("helm3"))).unwrap().version().unwrap();
        assert_eq!((v3.major, v3.text.starts_with("v3.")), (3, true), "{v3:?}");
        let v4 = Helm::locate(Some(Path::new("helm4"))).unwrap().version().unwrap();
        assert_eq!((v4.major, v4.text.starts_with("v4.")), (4, true), "{v4:?}");
    }

    #[test]
    fn durations_parse_and_print_like_helms() {
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        for bad in ["", "0", "0s", "5x", "m", "5m3", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(format_duration(DEFAULT_TIMEOUT), "5m");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn helm_messages_drop_the_error_prefix_and_debug_hint() {
        use std::os::unix::process::ExitStatusExt;
        let status = std::process::ExitStatus::from_raw(256);
        let msg = helm_message(
            b"walk.go:75: found symbolic link\nError: execution error at (x): boom\nUse --debug flag to render out invalid YAML\n",
            status,
        );
        assert_eq!(msg, "execution error at (x): boom");
        assert_eq!(helm_message(b"", status), "helm template failed (exit status: 1)");
    }
}
