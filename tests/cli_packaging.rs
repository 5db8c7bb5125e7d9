//! Packaging: the `kubectl-kkp` dispatcher, kubectl's plugin discovery and completion, the Helm plugin
//! on real Helm 3 and 4, and the release archive with its krew manifest checked by krew's rules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::support::{bin, fixtures, run};

const TOOLS: [&str; 5] = [
    "kubectl-kkp",
    "kubectl-kkp-mirror",
    "kubectl-kkp-retarget",
    "kubectl-kkp-seedproxy",
    "kubectl-kkp-audit",
];

fn version_line() -> String {
    format!("kubectl-kkp v{}\n", env!("CARGO_PKG_VERSION"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: Output, what: &str) -> Output {
    assert!(
        o.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    o
}

/// Runs a program found on PATH (or by path) with a few environment overrides.
fn exec(program: impl AsRef<std::ffi::OsStr>, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let program = program.as_ref();
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    match cmd.output() {
        Ok(o) => o,
        Err(e) => panic!("cannot run {}: {e}", program.to_string_lossy()),
    }
}

/// A fresh directory holding copies of the built binaries (and optionally extra files).
fn install_dir(tools: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for t in tools {
        std::fs::copy(bin(t), dir.path().join(t)).unwrap();
    }
    dir
}

fn path_with(dir: &Path) -> PathBuf {
    let old = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![dir.to_path_buf()];
    paths.extend(std::env::split_paths(&old));
    PathBuf::from(std::env::join_paths(paths).unwrap())
}

fn mirror_args(list: &Path) -> Vec<String> {
    ["reg.local:5000/kkp", "--dry-run", "-o", "text", "--image-list"]
        .iter()
        .map(|s| s.to_string())
        .chain([list.to_string_lossy().into_owned()])
        .collect()
}

const EXPECTED_PLAN: &str = "docker.io/library/nginx:1.27 reg.local:5000/kkp/library/nginx:1.27\n\
                             quay.io/kubermatic/kubermatic:v2.31.0 reg.local:5000/kkp/kubermatic/kubermatic:v2.31.0\n";

// ---- the dispatcher ----

#[test]
fn dispatcher_prints_version_and_kubectl_usage() {
    let out = ok(run("kubectl-kkp", &["version"]), "version");
    assert_eq!(stdout(&out), version_line());
    let out = ok(run("kubectl-kkp", &["--version"]), "--version");
    assert_eq!(stdout(&out), version_line());

    let out = ok(run("kubectl-kkp", &["--help"]), "--help");
    let help = stdout(&out);
    assert!(help.contains("Usage: kubectl kkp <COMMAND>"), "{help}");
    for sub in [
        "mirror",
        "retarget",
        "seedproxy",
        "audit",
        "version",
        "completion",
    ] {
        assert!(
            help.contains(&format!("\n  {sub} ")),
            "{sub} missing from help:\n{help}"
        );
    }
    assert!(!help.contains("__complete"), "the completion hook is hidden");

    let out = run("kubectl-kkp", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("Usage: kubectl kkp"), "{}", stderr(&out));
    let out = run("kubectl-kkp", &["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unrecognized subcommand 'frobnicate'"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn dispatcher_passes_arguments_output_and_exit_code_through() {
    let list = fixtures().join("images.txt");
    let args = mirror_args(&list);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut via = vec!["mirror"];
    via.extend(&args);
    let out = ok(run("kubectl-kkp", &via), "kubectl-kkp mirror");
    assert_eq!(stdout(&out), EXPECTED_PLAN);

    // The tool's own usage error and exit code come back unchanged.
    let out = run("kubectl-kkp", &["mirror"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("error: a target REGISTRY is required"),
        "{}",
        stderr(&out)
    );
    // `--help` after the tool name is the tool's help, not the dispatcher's.
    let out = ok(run("kubectl-kkp", &["mirror", "--help"]), "mirror --help");
    assert!(
        stdout(&out).contains("Usage: kubectl kkp mirror"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("--image-list"), "{}", stdout(&out));
    // Legacy image-loader flags reach the tool verbatim (the dispatcher does not parse them).
    let out = run(
        "kubectl-kkp",
        &[
            "mirror",
            "-registry",
            "reg.local:5000/kkp",
            "-dry-run",
            "-o",
            "text",
            "--image-list",
            list.to_str().unwrap(),
        ],
    );
    assert_eq!(stdout(&ok(out, "legacy flags")), EXPECTED_PLAN);
    let out = run("kubectl-kkp", &["retarget"]);
    assert_eq!(out.status.code(), run("kubectl-kkp-retarget", &[]).status.code());
}

#[test]
fn dispatcher_finds_tools_beside_itself_then_on_path() {
    let list = fixtures().join("images.txt");
    let args = mirror_args(&list);
    let mut full = vec!["mirror".to_string()];
    full.extend(args);
    let full: Vec<&str> = full.iter().map(String::as_str).collect();

    // Alone in its directory, with the tool in another directory on PATH.
    let lonely = install_dir(&["kubectl-kkp"]);
    let tools = install_dir(&["kubectl-kkp-mirror"]);
    let out = exec(
        lonely.path().join("kubectl-kkp"),
        &full,
        &[("PATH", &path_with(tools.path()))],
    );
    let out = ok(out, "kubectl-kkp mirror via PATH");
    assert_eq!(stdout(&out), EXPECTED_PLAN);

    // Neither beside it nor on PATH: a clear error, exit 127.
    let empty = tempfile::tempdir().unwrap();
    let out = exec(
        lonely.path().join("kubectl-kkp"),
        &full,
        &[("PATH", empty.path())],
    );
    assert_eq!(out.status.code(), Some(127));
    assert!(
        stderr(&out).contains("kubectl-kkp-mirror was found neither next to kubectl-kkp nor on PATH"),
        "{}",
        stderr(&out)
    );

    // A sibling wins over PATH, even when run through a symlink (as krew installs it).
    let all = install_dir(&TOOLS);
    let links = tempfile::tempdir().unwrap();
    #[cfg(unix)]
    {
        let link = links.path().join("kubectl-kkp");
        std::os::unix::fs::symlink(all.path().join("kubectl-kkp"), &link).unwrap();
        let out = exec(&link, &full, &[("PATH", empty.path())]);
        assert_eq!(stdout(&ok(out, "kubectl-kkp through a symlink")), EXPECTED_PLAN);
    }
}

#[test]
fn completion_scripts_load_in_their_shells() {
    let bash = ok(run("kubectl-kkp", &["completion", "bash"]), "completion bash");
    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(script.path(), &bash.stdout).unwrap();
    let check = format!("source {} && complete -p kubectl-kkp", script.path().display());
    let out = ok(exec("bash", &["-c", &check], &[]), "bash sources the script");
    assert!(stdout(&out).contains("kubectl-kkp"), "{}", stdout(&out));
    // The script knows the tools' own flags, not only the sub-commands.
    let text = stdout(&bash);
    assert!(text.contains("mirror") && text.contains("--image-list"), "{text}");

    let zsh = stdout(&ok(run("kubectl-kkp", &["completion", "zsh"]), "zsh"));
    assert!(zsh.starts_with("#compdef kubectl-kkp"), "{zsh}");
    assert!(zsh.contains("--image-list"), "zsh script lacks mirror flags");
    let fish = stdout(&ok(run("kubectl-kkp", &["completion", "fish"]), "fish"));
    assert!(fish.contains("complete -c kubectl-kkp"), "{fish}");
    assert!(fish.contains("image-list"), "fish script lacks mirror flags");

    let out = run("kubectl-kkp", &["completion", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("invalid value 'tcsh'"), "{}", stderr(&out));
}

// ---- real kubectl ----

/// A PATH directory as an archive install leaves it: all binaries plus the completion shims.
fn kubectl_dir() -> tempfile::TempDir {
    let dir = install_dir(&TOOLS);
    let shim = repo().join("plugins/kkp/kubectl_complete-kkp");
    for name in [
        "kubectl_complete-kkp",
        "kubectl_complete-kkp-mirror",
        "kubectl_complete-kkp-retarget",
        "kubectl_complete-kkp-seedproxy",
        "kubectl_complete-kkp-audit",
    ] {
        std::fs::copy(&shim, dir.path().join(name)).unwrap();
    }
    dir
}

/// PATH for kubectl: our directory, kubectl's own and the system's, nothing else, so plugins
/// installed elsewhere on this machine cannot shadow ours or make `kubectl plugin list` warn.
fn kubectl_path(dir: &Path) -> PathBuf {
    let found = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|d| d.join("kubectl").is_file())
        .expect("kubectl is installed (it is one of the project's test peers)");
    let dirs = [dir.to_path_buf(), found, "/usr/bin".into(), "/bin".into()];
    PathBuf::from(std::env::join_paths(dirs).unwrap())
}

#[test]
fn kubectl_runs_and_lists_the_plugins() {
    let dir = kubectl_dir();
    let path = kubectl_path(dir.path());
    let env = [("PATH", path.as_path())];

    let out = ok(exec("kubectl", &["kkp", "version"], &env), "kubectl kkp version");
    assert_eq!(stdout(&out), version_line());

    let out = ok(
        exec("kubectl", &["kkp", "mirror", "--help"], &env),
        "kubectl kkp mirror --help",
    );
    assert!(
        stdout(&out).contains("Usage: kubectl kkp mirror"),
        "{}",
        stdout(&out)
    );

    let list = fixtures().join("images.txt");
    let args = mirror_args(&list);
    let mut full = vec!["kkp", "mirror"];
    full.extend(args.iter().map(String::as_str));
    let out = ok(exec("kubectl", &full, &env), "kubectl kkp mirror");
    assert_eq!(stdout(&out), EXPECTED_PLAN);

    let out = ok(exec("kubectl", &["plugin", "list"], &env), "kubectl plugin list");
    let listed = stdout(&out);
    for tool in TOOLS {
        let want = dir.path().join(tool);
        assert!(
            listed.lines().any(|l| Path::new(l.trim()) == want),
            "{tool} not listed:\n{listed}"
        );
    }
}

#[test]
fn kubectl_completes_through_the_shim() {
    let dir = kubectl_dir();
    let path = kubectl_path(dir.path());
    let env = [("PATH", path.as_path())];

    let out = ok(
        exec("kubectl", &["__complete", "kkp", "ver"], &env),
        "complete kkp ver",
    );
    let lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert!(lines.iter().any(|l| l.starts_with("version\t")), "{lines:?}");
    assert_eq!(lines.last().map(String::as_str), Some(":4"), "{lines:?}");

    // With kubectl-kkp-mirror on PATH kubectl asks kubectl_complete-kkp-mirror.
    let out = ok(
        exec("kubectl", &["__complete", "kkp", "mirror", "--image-l"], &env),
        "complete mirror flag",
    );
    assert!(
        stdout(&out).lines().any(|l| l.starts_with("--image-list\t")),
        "{}",
        stdout(&out)
    );
    let out = ok(
        exec("kubectl", &["__complete", "kkp", "mirror", "-o", ""], &env),
        "complete -o",
    );
    let text = stdout(&out);
    let values: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.split('\t').next())
        .filter(|l| !l.starts_with(':'))
        .collect();
    assert_eq!(values, BTreeSet::from(["json", "table", "text", "yaml"]));
}

// ---- Helm ----

/// Temporary Helm home: plugins, data, config and cache all below one directory.
struct HelmHome {
    dir: tempfile::TempDir,
}

impl HelmHome {
    fn new() -> HelmHome {
        HelmHome {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn run(&self, helm: &str, args: &[&str], extra: &[(&str, &Path)]) -> Output {
        let d = self.dir.path();
        let plugins = d.join("data/plugins");
        let (data, config, cache) = (d.join("data"), d.join("config"), d.join("cache"));
        let mut env: Vec<(&str, &Path)> = vec![
            ("HELM_PLUGINS", &plugins),
            ("HELM_DATA_HOME", &data),
            ("HELM_CONFIG_HOME", &config),
            ("HELM_CACHE_HOME", &cache),
        ];
        env.extend_from_slice(extra);
        exec(helm, args, &env)
    }
}

/// The Helm plugin directory as a user unpacks it: plugin.yaml, the launcher and the binaries.
fn helm_plugin_dir() -> tempfile::TempDir {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("kkp");
    std::fs::create_dir(&dir).unwrap();
    for f in ["plugin.yaml", "kkp.sh"] {
        std::fs::copy(repo().join("helm-plugin").join(f), dir.join(f)).unwrap();
    }
    for t in TOOLS {
        std::fs::copy(bin(t), dir.join(t)).unwrap();
    }
    parent
}

fn helm_plugin_works(helm: &str) {
    let src = helm_plugin_dir();
    let plugin = src.path().join("kkp");
    let home = HelmHome::new();
    let out = home.run(helm, &["plugin", "install", plugin.to_str().unwrap()], &[]);
    let out = ok(out, &format!("{helm} plugin install"));
    assert!(stdout(&out).contains("Installed plugin: kkp"), "{}", stdout(&out));
    let out = ok(home.run(helm, &["plugin", "list"], &[]), "plugin list");
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.split_whitespace().next() == Some("kkp")),
        "{}",
        stdout(&out)
    );

    let out = ok(home.run(helm, &["kkp", "version"], &[]), "helm kkp version");
    assert_eq!(stdout(&out), version_line());
    let out = ok(home.run(helm, &["kkp", "--help"], &[]), "helm kkp --help");
    assert!(
        stdout(&out).contains("Usage: helm kkp <COMMAND>"),
        "{}",
        stdout(&out)
    );

    // Helm's own -n/--kube-context/--kubeconfig reach the tool as kubectl flags.
    let list = fixtures().join("images.txt");
    let kubeconfig = home.dir.path().join("kubeconfig.yaml");
    let mut args = vec![
        "-n",
        "kkp-ns",
        "--kube-context",
        "seed-ctx",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "kkp",
        "mirror",
    ];
    let margs = mirror_args(&list);
    args.extend(margs.iter().map(String::as_str));
    let debug = Path::new("kubectl_kkp=debug");
    let out = home.run(helm, &args, &[("RUST_LOG", debug), ("NO_COLOR", Path::new("1"))]);
    let out = ok(out, "helm kkp mirror");
    assert_eq!(stdout(&out), EXPECTED_PLAN);
    let want = format!(
        "kubectl-kkp-mirror --namespace kkp-ns --context seed-ctx --kubeconfig {} reg.local:5000/kkp",
        kubeconfig.display()
    );
    assert!(stderr(&out).contains(&want), "{want:?} not in:\n{}", stderr(&out));

    // A failing tool's exit code comes back through Helm.
    let out = home.run(helm, &["kkp", "mirror"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("a target REGISTRY is required"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn helm3_installs_and_runs_the_plugin() {
    helm_plugin_works("helm3");
}

#[test]
fn helm4_installs_and_runs_the_plugin() {
    helm_plugin_works("helm4");
}

/// Helm 3's plugin.yaml fields; Helm 3 loads the file strictly, so an unknown key breaks it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct HelmPlugin {
    name: String,
    version: String,
    usage: String,
    description: String,
    ignore_flags: bool,
    platform_command: Vec<HelmPlatformCommand>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HelmPlatformCommand {
    os: String,
    command: String,
}

#[test]
fn helm_plugin_metadata_is_helm3_legacy_and_versioned() {
    let text = std::fs::read_to_string(repo().join("helm-plugin/plugin.yaml")).unwrap();
    let p: HelmPlugin = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(p.name, "kkp");
    assert_eq!(
        p.version,
        env!("CARGO_PKG_VERSION"),
        "bump helm-plugin/plugin.yaml with Cargo.toml"
    );
    assert!(!p.ignore_flags, "ignoreFlags would drop every user argument");
    let oses: BTreeSet<&str> = p.platform_command.iter().map(|c| c.os.as_str()).collect();
    assert_eq!(oses, BTreeSet::from(["darwin", "freebsd", "linux", "windows"]));
    for c in &p.platform_command {
        assert!(c.command.starts_with("${HELM_PLUGIN_DIR}"), "{}", c.command);
        assert!(
            !c.command.contains(' '),
            "Helm splits commands on spaces: {}",
            c.command
        );
    }
}

// ---- krew ----

/// `pkg/index/types.go` of krew, strict so typos are caught (krew itself decodes leniently).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct KrewPlugin {
    api_version: String,
    kind: String,
    metadata: KrewMetadata,
    spec: KrewSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KrewMetadata {
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct KrewSpec {
    version: String,
    homepage: Option<String>,
    short_description: String,
    description: Option<String>,
    caveats: Option<String>,
    platforms: Vec<KrewPlatform>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KrewPlatform {
    selector: KrewSelector,
    uri: String,
    sha256: String,
    bin: String,
    files: Option<Vec<KrewFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct KrewSelector {
    match_labels: Option<BTreeMap<String, String>>,
    match_expressions: Option<Vec<KrewExpression>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KrewExpression {
    key: String,
    operator: String,
    #[serde(default)]
    values: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KrewFile {
    from: String,
    to: String,
}

/// krew's `allPlatforms()` (cmd/validate-krew-manifest).
const KREW_PLATFORMS: &[(&str, &str)] = &[
    ("windows", "386"),
    ("windows", "amd64"),
    ("windows", "arm64"),
    ("linux", "386"),
    ("linux", "amd64"),
    ("linux", "arm"),
    ("linux", "arm64"),
    ("linux", "ppc64le"),
    ("darwin", "386"),
    ("darwin", "amd64"),
    ("darwin", "arm64"),
];

impl KrewSelector {
    fn matches(&self, os: &str, arch: &str) -> bool {
        let label = |k: &str| match k {
            "os" => Some(os),
            "arch" => Some(arch),
            _ => None,
        };
        let labels_ok = self
            .match_labels
            .iter()
            .flatten()
            .all(|(k, v)| label(k) == Some(v.as_str()));
        let exprs_ok = self.match_expressions.iter().flatten().all(|e| {
            let have = label(&e.key);
            match e.operator.as_str() {
                "In" => have.is_some_and(|h| e.values.iter().any(|v| v == h)),
                "NotIn" => have.is_none_or(|h| e.values.iter().all(|v| v != h)),
                "Exists" => have.is_some(),
                "DoesNotExist" => have.is_none(),
                other => panic!("unknown selector operator {other}"),
            }
        });
        labels_ok && exprs_ok
    }
}

/// krew's `ValidatePlugin` plus `validate-krew-manifest`'s platform checks; returns the manifest and,
/// per platform, the `(os, arch)` it is for.
fn validate_krew_manifest(file_name: &str, text: &str) -> (KrewPlugin, Vec<(String, String)>) {
    let stem = file_name
        .strip_suffix(".yaml")
        .unwrap_or_else(|| panic!("{file_name}: krew manifests end in .yaml"));
    let p: KrewPlugin = match serde_saphyr::from_str(text) {
        Ok(p) => p,
        Err(e) => panic!("{file_name}: {e}"),
    };
    assert_eq!(p.api_version, "krew.googlecontainertools.github.com/v1alpha2");
    assert_eq!(p.kind, "Plugin");
    let name = &p.metadata.name;
    assert!(
        !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-'),
        "name {name:?} must match ^[\\w-]+$"
    );
    let reserved = ["con", "prn", "aux", "nul"]
        .into_iter()
        .map(String::from)
        .chain((1..=9).flat_map(|i| [format!("com{i}"), format!("lpt{i}")]));
    assert!(
        reserved.into_iter().all(|r| r != name.to_lowercase()),
        "{name} is reserved on Windows"
    );
    assert_eq!(name, stem, "metadata.name must equal the file name");
    let short = &p.spec.short_description;
    assert!(
        !short.is_empty() && !short.contains(['\n', '\r']),
        "shortDescription {short:?}"
    );
    let version = p
        .spec
        .version
        .strip_prefix('v')
        .unwrap_or_else(|| panic!("version {:?} must start with v", p.spec.version));
    if let Err(e) = semver::Version::parse(version) {
        panic!("version {:?} is not semver: {e}", p.spec.version);
    }
    assert!(!p.spec.platforms.is_empty(), "at least one platform");

    let mut claimed: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut targets = Vec::new();
    for (i, pl) in p.spec.platforms.iter().enumerate() {
        assert!(
            pl.uri.ends_with(".tar.gz") || pl.uri.ends_with(".zip"),
            "platform {i}: uri {}",
            pl.uri
        );
        assert!(
            pl.sha256.len() == 64 && pl.sha256.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
            "platform {i}: sha256 {:?} must be 64 lowercase hex digits",
            pl.sha256
        );
        assert!(!pl.bin.is_empty(), "platform {i}: bin must be set");
        if let Some(files) = &pl.files {
            assert!(!files.is_empty(), "platform {i}: files present but empty");
            assert!(files.iter().all(|f| !f.from.is_empty() && !f.to.is_empty()));
        }
        let sel = &pl.selector;
        assert!(
            sel.match_labels.as_ref().is_none_or(|m| !m.is_empty())
                && sel.match_expressions.as_ref().is_none_or(|m| !m.is_empty())
                && (sel.match_labels.is_some() || sel.match_expressions.is_some()),
            "platform {i}: empty selector"
        );
        let keys = sel
            .match_labels
            .iter()
            .flat_map(|m| m.keys().cloned())
            .chain(sel.match_expressions.iter().flatten().map(|e| e.key.clone()));
        for k in keys {
            assert!(k == "os" || k == "arch", "platform {i}: selector key {k}");
        }
        let mut hit = None;
        for (os, arch) in KREW_PLATFORMS {
            if sel.matches(os, arch) {
                if let Some(j) = claimed.insert((os, arch), i) {
                    panic!("platforms {j} and {i} both match {os}/{arch} (overlapping selectors)");
                }
                hit = Some((os.to_string(), arch.to_string()));
            }
        }
        let (os, arch) = hit.unwrap_or_else(|| panic!("platform {i} matches no supported os/arch"));
        if os == "windows" {
            assert!(
                pl.bin.ends_with(".exe"),
                "platform {i}: windows bin must end in .exe"
            );
        }
        targets.push((os, arch));
    }
    (p, targets)
}

fn sha256_hex(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    hex::encode(Sha256::digest(&bytes))
}

fn host_platform() -> (&'static str, &'static str) {
    let os = match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    (os, arch)
}

#[test]
fn release_archive_and_manifest_pass_krew_validation() {
    let out_dir = tempfile::tempdir().unwrap();
    let manifest = out_dir.path().join("kkp.yaml");
    let bin_dir = bin("kubectl-kkp").parent().unwrap().to_path_buf();
    let version = env!("CARGO_PKG_VERSION");
    let out = release_sh(&[
        "--bin-dir",
        bin_dir.to_str().unwrap(),
        "--out-dir",
        out_dir.path().to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
    ]);
    ok(out, "scripts/release.sh");

    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(
        !text.contains("{{"),
        "placeholders left in the generated manifest:\n{text}"
    );
    let (plugin, targets) = validate_krew_manifest("kkp.yaml", &text);
    assert_eq!(plugin.spec.version, format!("v{version}"));
    let (os, arch) = host_platform();
    assert_eq!(
        targets,
        [(os.to_string(), arch.to_string())],
        "only the built platform"
    );

    let platform = &plugin.spec.platforms[0];
    let archive_name = format!("kubectl-kkp_v{version}_{os}_{arch}.tar.gz");
    assert!(
        platform.uri.ends_with(&format!("/v{version}/{archive_name}")),
        "{}",
        platform.uri
    );
    let archive = out_dir.path().join(&archive_name);
    assert_eq!(
        platform.sha256,
        sha256_hex(&archive),
        "manifest sha256 is the archive's"
    );
    assert_eq!(
        std::fs::read_to_string(out_dir.path().join(format!("{archive_name}.sha256"))).unwrap(),
        format!("{}  {archive_name}\n", platform.sha256),
        "the .sha256 file is in `sha256sum -c` form"
    );

    // What krew would install: everything at the archive root (no `files:`), bin and a LICENSE.
    let listing = ok(exec("tar", &["-tzf", archive.to_str().unwrap()], &[]), "tar -t");
    let entries: BTreeSet<String> = stdout(&listing)
        .lines()
        .map(|l| l.trim_start_matches("./").to_string())
        .collect();
    assert!(
        entries.contains(&platform.bin),
        "bin {} not in {entries:?}",
        platform.bin
    );
    assert!(entries.contains("LICENSE"), "LICENSE not in {entries:?}");
    for t in TOOLS {
        assert!(entries.contains(t), "{t} not in {entries:?}");
    }
    for f in ["kubectl_complete-kkp", "plugin.yaml", "kkp.sh"] {
        assert!(entries.contains(f), "{f} not in {entries:?}");
    }

    let unpacked = tempfile::tempdir().unwrap();
    let x = [
        "-xzf",
        archive.to_str().unwrap(),
        "-C",
        unpacked.path().to_str().unwrap(),
    ];
    ok(exec("tar", &x, &[]), "tar -x");
    assert_eq!(
        std::fs::read(unpacked.path().join("LICENSE")).unwrap(),
        std::fs::read(repo().join("LICENSE")).unwrap()
    );
    let license = std::fs::read_to_string(repo().join("LICENSE")).unwrap();
    assert!(license.contains("Apache License") && license.contains("Version 2.0, January 2004"));
    let out = exec(unpacked.path().join(&platform.bin), &["version"], &[]);
    assert_eq!(stdout(&ok(out, "unpacked bin version")), version_line());
    // The unpacked tools find each other without PATH.
    let list = fixtures().join("images.txt");
    let mut args = vec!["mirror".to_string()];
    args.extend(mirror_args(&list));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let empty = tempfile::tempdir().unwrap();
    let out = exec(
        unpacked.path().join(&platform.bin),
        &args,
        &[("PATH", empty.path())],
    );
    assert_eq!(stdout(&ok(out, "unpacked mirror")), EXPECTED_PLAN);

    // The unpacked archive is a Helm plugin as it stands, stamped with the release version.
    let home = HelmHome::new();
    let dir = unpacked.path().to_str().unwrap();
    ok(
        home.run("helm3", &["plugin", "install", dir], &[]),
        "helm3 install archive",
    );
    let out = ok(home.run("helm3", &["kkp", "version"], &[]), "helm3 kkp version");
    assert_eq!(stdout(&out), version_line());
    let out = ok(home.run("helm3", &["plugin", "list"], &[]), "helm3 plugin list");
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()[..2] == ["kkp", version])
    );
}

#[test]
fn release_script_refuses_a_version_other_than_cargos() {
    let out = exec(
        repo().join("scripts/release.sh"),
        &["9.9.9", "--bin-dir", "/nonexistent"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("does not match the Cargo version"),
        "{}",
        stderr(&out)
    );
    let out = exec(repo().join("scripts/release.sh"), &["one.two"], &[]);
    assert!(
        stderr(&out).contains("is not a semantic version"),
        "{}",
        stderr(&out)
    );
}

/// Runs scripts/release.sh with the given arguments (VERSION first is added).
fn release_sh(args: &[&str]) -> Output {
    let mut all = vec![env!("CARGO_PKG_VERSION")];
    all.extend_from_slice(args);
    exec(repo().join("scripts/release.sh"), &all, &[])
}

#[test]
fn release_script_refuses_binaries_of_another_platform() {
    // The test binaries are this machine's; packed as another platform's they are refused by `file`.
    let (_, arch) = host_platform();
    let other = if arch == "amd64" {
        "linux/arm64"
    } else {
        "linux/amd64"
    };
    let out_dir = tempfile::tempdir().unwrap();
    let manifest = out_dir.path().join("kkp.yaml");
    let bin_dir = bin("kubectl-kkp").parent().unwrap().to_path_buf();
    let out = release_sh(&[
        "--platform",
        other,
        "--bin-dir",
        bin_dir.to_str().unwrap(),
        "--out-dir",
        out_dir.path().to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("kubectl-kkp is not a {other} binary")),
        "{}",
        stderr(&out)
    );
    let left: Vec<_> = std::fs::read_dir(out_dir.path()).unwrap().collect();
    assert!(left.is_empty(), "nothing is written: {left:?}");

    let out = release_sh(&["--platform", "solaris/sparc"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--platform solaris/sparc is not one of"),
        "{}",
        stderr(&out)
    );
    let out = release_sh(&["--render-only", "--platform", "linux/amd64"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("takes no --platform"), "{}", stderr(&out));
}

#[test]
fn release_manifest_lists_every_platform_archive_present() {
    // Archives built elsewhere (the macOS runners' darwin ones) are copied into the out dir; rendering
    // puts each present platform in the manifest with its own checksum, and nothing else.
    let version = env!("CARGO_PKG_VERSION");
    let dir = tempfile::tempdir().unwrap();
    let plats = ["linux_arm64", "darwin_amd64", "darwin_arm64", "windows_amd64"];
    for (i, p) in plats.iter().enumerate() {
        let f = dir.path().join(format!("kubectl-kkp_v{version}_{p}.tar.gz"));
        std::fs::write(&f, format!("archive {i} of {p}")).unwrap();
    }
    // Another release's archive and a stray file are not picked up.
    std::fs::write(dir.path().join("kubectl-kkp_v0.0.1_linux_amd64.tar.gz"), "old").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
    let manifest = dir.path().join("out/kkp.yaml");
    let out = release_sh(&[
        "--render-only",
        "--out-dir",
        dir.path().to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
    ]);
    let out = ok(out, "release.sh --render-only");
    assert!(
        stderr(&out).contains("no archive for linux/amd64"),
        "{}",
        stderr(&out)
    );
    let text = std::fs::read_to_string(&manifest).unwrap();
    let (plugin, targets) = validate_krew_manifest("kkp.yaml", &text);
    let got: Vec<String> = targets.iter().map(|(o, a)| format!("{o}_{a}")).collect();
    assert_eq!(got, plats, "template order, only the present ones");
    for (pl, p) in plugin.spec.platforms.iter().zip(plats) {
        let name = format!("kubectl-kkp_v{version}_{p}.tar.gz");
        assert_eq!(pl.sha256, sha256_hex(&dir.path().join(&name)), "{p}");
        assert!(pl.uri.ends_with(&format!("/v{version}/{name}")), "{}", pl.uri);
        let exe = if p.starts_with("windows") { ".exe" } else { "" };
        assert_eq!(pl.bin, format!("kubectl-kkp{exe}"));
    }

    // A .sha256 beside an archive must agree with it (a half-copied download is refused).
    let arm = dir
        .path()
        .join(format!("kubectl-kkp_v{version}_linux_arm64.tar.gz"));
    let bad = format!("{}  kubectl-kkp_v{version}_linux_arm64.tar.gz\n", "0".repeat(64));
    std::fs::write(arm.with_extension("gz.sha256"), bad).unwrap();
    let before = std::fs::read(&manifest).unwrap();
    let out = release_sh(&[
        "--render-only",
        "--out-dir",
        dir.path().to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not match its"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(&manifest).unwrap(),
        before,
        "the manifest is left as it was"
    );

    let empty = tempfile::tempdir().unwrap();
    let out = release_sh(&["--render-only", "--out-dir", empty.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no platform archive"), "{}", stderr(&out));
}

/// Run by scripts/check-release.sh (CI's release-platform step) on the archives and manifest it built
/// with the real cross builds, when krew's own validate-krew-manifest cannot be installed.
#[test]
#[ignore = "needs KKP_RELEASE_DIST, set by scripts/check-release.sh"]
fn release_dist_passes_krew_rules() {
    let dist = PathBuf::from(
        std::env::var_os("KKP_RELEASE_DIST").expect("KKP_RELEASE_DIST names the release's out dir"),
    );
    let text = std::fs::read_to_string(dist.join("kkp.yaml")).unwrap();
    let (plugin, targets) = validate_krew_manifest("kkp.yaml", &text);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(plugin.spec.version, format!("v{version}"));
    assert!(targets.contains(&("linux".into(), "amd64".into())), "{targets:?}");
    assert!(targets.contains(&("linux".into(), "arm64".into())), "{targets:?}");
    for (pl, (os, arch)) in plugin.spec.platforms.iter().zip(&targets) {
        let name = format!("kubectl-kkp_v{version}_{os}_{arch}.tar.gz");
        let archive = dist.join(&name);
        assert_eq!(pl.sha256, sha256_hex(&archive), "{name}");
        let listed = std::fs::read_to_string(dist.join(format!("{name}.sha256"))).unwrap();
        assert_eq!(listed, format!("{}  {name}\n", pl.sha256), "{name}.sha256");
        let listing = ok(exec("tar", &["-tzf", archive.to_str().unwrap()], &[]), "tar -t");
        let entries: BTreeSet<&str> = std::str::from_utf8(&listing.stdout).unwrap().lines().collect();
        for want in [pl.bin.as_str(), "LICENSE", "kubectl-kkp-mirror", "plugin.yaml"] {
            let want = if os == "windows" && want == "kubectl-kkp-mirror" {
                "kubectl-kkp-mirror.exe"
            } else {
                want
            };
            assert!(entries.contains(want), "{want} not in {name}: {entries:?}");
        }
    }
    eprintln!("krew rules: {} platforms ok: {targets:?}", targets.len());
}

/// Renders the template for every platform, as if all five archives had been built.
fn render_template_for_all() -> String {
    let tmpl = std::fs::read_to_string(repo().join("krew-manifests/kkp.yaml.tmpl")).unwrap();
    let mut out = String::new();
    let mut i = 0;
    for line in tmpl.lines() {
        let t = line.trim_start();
        if (out.is_empty() && t.starts_with('#')) || t.starts_with("#@") {
            continue;
        }
        let mut line = line
            .replace("{{VERSION}}", "v1.2.3")
            .replace("{{BASE_URL}}", "https://example.invalid/v1.2.3");
        if line.contains("{{SHA256}}") {
            i += 1;
            line = line.replace("{{SHA256}}", &format!("{i:064x}"));
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[test]
fn krew_template_covers_the_five_release_platforms() {
    let text = render_template_for_all();
    assert!(!text.contains("{{"), "{text}");
    let (_, targets) = validate_krew_manifest("kkp.yaml", &text);
    let got: BTreeSet<(String, String)> = targets.into_iter().collect();
    let want: BTreeSet<(String, String)> = [
        ("linux", "amd64"),
        ("linux", "arm64"),
        ("darwin", "amd64"),
        ("darwin", "arm64"),
        ("windows", "amd64"),
    ]
    .into_iter()
    .map(|(o, a)| (o.to_string(), a.to_string()))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn committed_krew_manifest_is_valid_and_current() {
    let path = repo().join("krew-manifests/kkp.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains("{{"),
        "krew-manifests/kkp.yaml must be rendered, not the template"
    );
    let (plugin, _) = validate_krew_manifest("kkp.yaml", &text);
    assert_eq!(
        plugin.spec.version,
        format!("v{}", env!("CARGO_PKG_VERSION")),
        "re-run scripts/release.sh after a version bump"
    );
}

#[test]
fn krew_validator_rejects_what_krew_rejects() {
    let good = render_template_for_all();
    let cases = [
        ("version: v1.2.3", "version: 1.2.3", "must start with v"),
        ("name: kkp", "name: kkp2", "must equal the file name"),
        (
            "os: darwin\n        arch: arm64",
            "os: darwin\n        arch: amd64",
            "overlapping",
        ),
        ("bin: kubectl-kkp.exe", "bin: kubectl-kkp", "must end in .exe"),
        (
            &format!("{:064x}", 1),
            &format!("{:064X}", 0xabc),
            "lowercase hex",
        ),
    ];
    for (from, to, want) in cases {
        assert!(good.contains(from), "{from:?} not in template");
        let bad = good.replacen(from, to, 1);
        let err = std::panic::catch_unwind(|| validate_krew_manifest("kkp.yaml", &bad))
            .err()
            .unwrap_or_else(|| panic!("{to:?} was accepted"));
        let msg = err
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        assert!(msg.contains(want), "{to:?}: {msg}");
    }
}
