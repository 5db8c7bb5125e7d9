//! Hostile input through the real binaries: every broken, ambiguous, huge or malicious input ends in
//! one line on stderr (`error: …` naming the file), nothing on stdout, a failing exit code, and — for
//! `retarget`, which writes — not a byte changed and no temporary file left behind.
//!
//! Big inputs (100 MB) are generated into temporary directories at run time, never committed.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use crate::support::fixtures;
use crate::support::helm::{copy_dir, run_env};

const MIRROR: &str = "kubectl-kkp-mirror";
const RETARGET: &str = "kubectl-kkp-retarget";
const REG: &str = "reg.local:5000/kkp";

fn hostile(name: &str) -> PathBuf {
    fixtures().join("hostile").join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// Runs a binary without `HELM_BINARY` or `DOCKER_CONFIG` from the caller's environment.
fn run(bin: &str, args: &[&str]) -> Output {
    run_env(bin, args, &[], &["HELM_BINARY", "DOCKER_CONFIG", "RUST_LOG"])
}

/// `kubectl-kkp-mirror --dry-run -o json --offline ARGS`.
fn mirror(args: &[&str]) -> Output {
    let mut all = vec!["--dry-run", "-o", "json", "--offline"];
    all.extend_from_slice(args);
    run(MIRROR, &all)
}

/// `kubectl-kkp-retarget --registry REG --helm-binary helm3 --yes ARGS`: would write if it could.
fn retarget(args: &[&str]) -> Output {
    let mut all = vec!["--registry", REG, "--helm-binary", "helm3", "--yes"];
    all.extend_from_slice(args);
    run(RETARGET, &all)
}

/// Exit code `code`, nothing on stdout, and exactly one stderr line: `error: …` containing every needle.
#[track_caller]
fn one_line_error(out: &Output, code: i32, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit code; stderr: {stderr}\nstdout: {stdout}"
    );
    assert!(stdout.is_empty(), "stdout must be empty: {stdout}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    for needle in needles {
        assert!(lines[0].contains(needle), "{needle:?} not in: {stderr}");
    }
}

/// Every entry below `dir` (symlinks not followed) with the SHA-256 of its bytes or its link target.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read directory") {
            let entry = entry.expect("entry");
            let path = entry.path();
            let ft = entry.file_type().expect("file type");
            let rel = path.strip_prefix(dir).expect("below dir").to_path_buf();
            if ft.is_symlink() {
                let target = std::fs::read_link(&path).expect("link");
                out.insert(rel, format!("-> {}", target.display()));
            } else if ft.is_dir() {
                out.insert(rel, "dir".into());
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read file");
                out.insert(rel, hex::encode(Sha256::digest(&bytes)));
            }
        }
    }
    out
}

/// A private work directory: the retarget fixtures plus the hostile files, to be snapshotted.
fn workdir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let root = dir.path().join("work");
    copy_dir(&fixtures().join("retarget"), &root);
    copy_dir(&fixtures().join("hostile"), &root.join("hostile"));
    (dir, root)
}

/// Runs `f` against a fresh work directory and asserts nothing in it changed and nothing was added.
fn untouched(f: impl FnOnce(&Path) -> Output) -> Output {
    let (_keep, root) = workdir();
    let before = snapshot(&root);
    let out = f(&root);
    assert_eq!(snapshot(&root), before, "the work directory changed");
    out
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("write test file");
}

// ---- configuration files (--config) --------------------------------------------------------------

/// (file, what the error must name). Each is refused by mirror and retarget alike.
const BAD_CONFIGS: &[(&str, &str)] = &[
    ("config-malformed.yaml", "config-malformed.yaml"),
    ("config-two-documents.yaml", "config-two-documents.yaml"),
    ("config-duplicate-key.yaml", "duplicate key \"kind\""),
    ("config-list.yaml", "config-list.yaml"),
    ("config-alias-bomb.yaml", "safety limit"),
];

#[test]
fn broken_configurations_are_one_line_errors_and_retarget_writes_nothing() {
    for (file, needle) in BAD_CONFIGS {
        let out = mirror(&["--config", s(&hostile(file))]);
        one_line_error(&out, 1, &[file, needle]);

        let out = untouched(|root| retarget(&["--config", s(&root.join("hostile").join(file))]));
        one_line_error(&out, 1, &[file, needle]);
    }
}

#[test]
fn duplicate_keys_in_a_configuration_are_refused_by_both_tools_naming_the_key() {
    let file = hostile("config-duplicate-key.yaml");
    let out = mirror(&["--config", s(&file)]);
    one_line_error(
        &out,
        1,
        &["config-duplicate-key.yaml:3:", "duplicate key \"kind\""],
    );
    let out = untouched(|root| retarget(&["--config", s(&root.join("hostile/config-duplicate-key.yaml"))]));
    one_line_error(&out, 1, &["line 3", "duplicate key \"kind\""]);
}

#[test]
fn two_kubermatic_configurations_in_one_file_are_refused_not_half_edited() {
    let out = untouched(|root| retarget(&["--config", s(&root.join("hostile/config-two-documents.yaml"))]));
    one_line_error(&out, 1, &["2 KubermaticConfiguration documents"]);
    let out = mirror(&["--config", s(&hostile("config-two-documents.yaml"))]);
    one_line_error(&out, 1, &["more than one YAML document"]);
}

#[test]
fn empty_non_utf8_directory_and_missing_configurations() {
    let (_keep, root) = workdir();
    let empty = root.join("empty.yaml");
    let binary = root.join("binary.yaml");
    write(&empty, b"");
    write(&binary, b"apiVersion: \xff\xfe\x00\n");
    let dir = root.join("hostile");
    let missing = root.join("nonexistent.yaml");
    let cases: [(&Path, &str); 4] = [
        (&empty, "empty"),
        (&binary, "UTF-8"),
        (&dir, "directory"),
        (&missing, "No such file"),
    ];
    for (path, needle) in cases {
        let out = mirror(&["--config", s(path)]);
        one_line_error(&out, 1, &[s(path), needle]);
        let before = snapshot(&root);
        let out = retarget(&["--config", s(path)]);
        one_line_error(&out, 1, &[s(path), needle]);
        assert_eq!(snapshot(&root), before, "{path:?}");
        // Under --diff every error exits 2, as kubectl diff does.
        let out = run(RETARGET, &["--registry", REG, "--diff", "--config", s(path)]);
        one_line_error(&out, 2, &[s(path)]);
    }
}

// ---- Helm values files (--helm-values) ------------------------------------------------------------

const BAD_VALUES: &[(&str, &str)] = &[
    ("values-list.yaml", "must be a mapping"),
    ("values-scalar.yaml", "must be a mapping"),
    ("values-duplicate-key.yaml", "duplicate key \"web\""),
    ("values-two-documents.yaml", "2 YAML documents"),
    ("values-malformed.yaml", "line 3"),
    ("values-alias-bomb.yaml", "safety limit"),
];

#[test]
fn broken_values_files_are_one_error_not_one_per_chart() {
    let charts = fixtures().join("retarget/charts");
    for (file, needle) in BAD_VALUES {
        let out = mirror(&[
            "--helm-binary",
            "helm3",
            "--charts-path",
            s(&charts),
            "--helm-values",
            s(&hostile(file)),
        ]);
        one_line_error(&out, 1, &[file, needle]);

        let out = untouched(|root| {
            retarget(&[
                "--charts-path",
                s(&root.join("charts")),
                "--helm-values",
                s(&root.join("hostile").join(file)),
                "--allow-leak",
                "*",
            ])
        });
        one_line_error(&out, 1, &[file, needle]);
    }
}

#[test]
fn values_file_that_is_missing_a_directory_or_not_utf8() {
    let (_keep, root) = workdir();
    let binary = root.join("binary-values.yaml");
    write(&binary, b"web:\n  image: \xc3\x28\n");
    let dir = root.join("hostile");
    let missing = root.join("missing-values.yaml");
    let cases: [(&Path, &str); 3] = [
        (&binary, "not UTF-8"),
        (&dir, "directory"),
        (&missing, "No such file"),
    ];
    let charts = root.join("charts");
    for (path, needle) in cases {
        let out = mirror(&[
            "--helm-binary",
            "helm3",
            "--charts-path",
            s(&charts),
            "--helm-values",
            s(path),
        ]);
        one_line_error(&out, 1, &[s(path), needle]);
        let before = snapshot(&root);
        let out = retarget(&[
            "--charts-path",
            s(&charts),
            "--helm-values",
            s(path),
            "--allow-leak",
            "*",
        ]);
        one_line_error(&out, 1, &[s(path), needle]);
        assert_eq!(snapshot(&root), before, "{path:?}");
    }
}

// ---- image lists (--image-list) ------------------------------------------------------------------

#[test]
fn an_invalid_reference_in_an_image_list_names_file_and_line() {
    let list = hostile("images-invalid.txt");
    let out = mirror(&["--image-list", s(&list)]);
    one_line_error(
        &out,
        1,
        &["images-invalid.txt", "line 4", "Not A Valid//Reference"],
    );
}

#[test]
fn image_list_that_is_binary_a_directory_or_missing() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let binary = dir.path().join("images.txt");
    write(&binary, b"nginx:1.27\n\xff\xfe\n");
    let missing = dir.path().join("missing.txt");
    for (path, needle) in [
        (binary.as_path(), "UTF-8"),
        (dir.path(), "directory"),
        (missing.as_path(), "No such file"),
    ] {
        let out = mirror(&["--image-list", s(path)]);
        one_line_error(&out, 1, &[s(path), needle]);
    }
}

#[test]
fn an_empty_image_list_is_an_empty_plan() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let empty = dir.path().join("images.txt");
    write(&empty, b"# nothing yet\n\n");
    let out = mirror(&["--image-list", s(&empty)]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON plan");
    assert_eq!(plan["images"], serde_json::json!([]));
}

// ---- manifests (--manifests) ---------------------------------------------------------------------

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: nginx:1.27\n";
const OUTSIDE_POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: q\nspec:\n  containers:\n  - name: c\n    image: outside.example/escaped:1\n";

#[test]
fn broken_manifests_name_the_file_document_and_line() {
    for (file, needle) in [
        ("values-malformed.yaml", "line 3"),
        ("values-alias-bomb.yaml", "safety limit"),
        ("values-list.yaml", "not a Kubernetes object"),
    ] {
        let dir = tempfile::tempdir().expect("temporary directory");
        write(&dir.path().join("pod.yaml"), POD.as_bytes());
        std::fs::copy(hostile(file), dir.path().join(file)).expect("copy");
        let out = mirror(&["--manifests", s(dir.path())]);
        one_line_error(&out, 1, &[file, "document 1", needle]);
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    write(&dir.path().join("binary.yaml"), b"kind: \xff\n");
    let out = mirror(&["--manifests", s(dir.path())]);
    one_line_error(&out, 1, &["binary.yaml", "not UTF-8"]);
    let out = mirror(&["--manifests", s(&dir.path().join("missing"))]);
    one_line_error(&out, 1, &["missing", "No such file"]);
}

#[test]
fn symlinks_inside_manifests_and_charts_that_point_outside_are_not_followed() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(outside.join("chart/templates")).expect("mkdir");
    write(&outside.join("pod.yaml"), OUTSIDE_POD.as_bytes());
    write(
        &outside.join("chart/Chart.yaml"),
        b"apiVersion: v2\nname: escaped\nversion: 0.1.0\n",
    );
    write(&outside.join("chart/templates/pod.yaml"), OUTSIDE_POD.as_bytes());

    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("charts")).expect("mkdir");
    write(&tree.join("pod.yaml"), POD.as_bytes());
    std::os::unix::fs::symlink(outside.join("pod.yaml"), tree.join("link.yaml")).expect("symlink");
    std::os::unix::fs::symlink(&outside, tree.join("linkdir")).expect("symlink");
    std::os::unix::fs::symlink(outside.join("chart"), tree.join("charts/escaped")).expect("symlink");

    let out = mirror(&["--manifests", s(&tree)]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    assert!(stdout.contains("docker.io/library/nginx:1.27"), "{stdout}");
    assert!(!stdout.contains("outside.example"), "{stdout}");

    let out = mirror(&["--helm-binary", "helm3", "--charts-path", s(&tree.join("charts"))]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    assert!(!stdout.contains("outside.example"), "{stdout}");
    assert!(
        stdout.contains("no chart"),
        "the empty charts path is a warning: {stdout}"
    );

    // retarget finds no chart either (the only one is behind a link) and writes nothing.
    let values = tree.join("values.yaml");
    write(&values, b"web: {}\n");
    let before = snapshot(dir.path());
    let out = retarget(&[
        "--charts-path",
        s(&tree.join("charts")),
        "--helm-values",
        s(&values),
    ]);
    one_line_error(&out, 1, &["no Chart.yaml"]);
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn charts_path_that_is_a_file_or_missing() {
    let file = hostile("values-list.yaml");
    let out = mirror(&["--helm-binary", "helm3", "--charts-path", s(&file)]);
    one_line_error(&out, 1, &["charts path", "values-list.yaml", "not a directory"]);
    let out = mirror(&["--helm-binary", "helm3", "--charts-path", "/nonexistent/charts"]);
    one_line_error(&out, 1, &["/nonexistent/charts", "No such file"]);
    let out = untouched(|root| {
        retarget(&[
            "--charts-path",
            "/nonexistent/charts",
            "--helm-values",
            s(&root.join("values.yaml")),
        ])
    });
    one_line_error(&out, 1, &["/nonexistent/charts", "No such file"]);
}

// ---- a chart whose render hangs (--helm-timeout) --------------------------------------------------

/// A `helm` that answers `version` and hangs on everything else (`exec`, so killing it ends the sleep).
fn hanging_helm(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("helm");
    write(
        &path,
        b"#!/bin/sh\ncase \"$1\" in\n  version) echo v3.17.3 ;;\n  *) exec sleep 30 ;;\nesac\n",
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// One chart with one image key in its values.
/// A `--dry-run -o json --offline` over `charts` with a given helm and `--helm-timeout`.
fn helm_dry_run<'a>(helm: &'a Path, timeout: &'a str, charts: &'a Path) -> [&'a str; 10] {
    [
        "--dry-run",
        "-o",
        "json",
        "--offline",
        "--helm-binary",
        s(helm),
        "--helm-timeout",
        timeout,
        "--charts-path",
        s(charts),
    ]
}

fn one_chart(dir: &Path) -> PathBuf {
    let chart = dir.join("charts/slow");
    std::fs::create_dir_all(chart.join("templates")).expect("mkdir");
    write(
        &chart.join("Chart.yaml"),
        b"apiVersion: v2\nname: slow\nversion: 0.1.0\n",
    );
    write(
        &chart.join("values.yaml"),
        b"image:\n  repository: quay.io/example/slow\n  tag: v1\n",
    );
    write(&chart.join("templates/pod.yaml"), POD.as_bytes());
    dir.join("charts")
}

#[test]
fn a_hanging_helm_template_is_killed_after_helm_timeout() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let helm = hanging_helm(dir.path());
    let charts = one_chart(dir.path());
    let values = dir.path().join("values.yaml");
    write(&values, b"# mine\nimage:\n  tag: v1\n");

    let out = run(MIRROR, &helm_dry_run(&helm, "1s", &charts));
    // The documented partial output: the chart's failure on stderr, the (empty) plan on stdout.
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim_end(),
        "error: chart slow: helm template timed out after 1s"
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON plan");
    assert_eq!(plan["images"], serde_json::json!([]));

    let before = snapshot(dir.path());
    let out = run(
        RETARGET,
        &[
            "--registry",
            REG,
            "--yes",
            "--helm-binary",
            s(&helm),
            "--helm-timeout",
            "1s",
            "--charts-path",
            s(&charts),
            "--helm-values",
            s(&values),
        ],
    );
    one_line_error(&out, 1, &["chart slow", "timed out after 1s"]);
    assert_eq!(snapshot(dir.path()), before);
}

/// True while `pid` is a live process (a zombie waiting to be reaped counts as gone).
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(')')?.1.split_whitespace().next()?.to_string();
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

/// A fake helm (`version` answers, anything else starts `sleep 1000` in the background, writes its pid to
/// `pidfile` atomically and waits) in `dir`.
fn helm_with_a_child(dir: &Path, pidfile: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let helm = dir.join("helm");
    write(
        &helm,
        format!(
            "#!/bin/sh\ncase \"$1\" in\n  version) echo v3.17.3 ;;\n  *) sleep 1000 & echo $! > {p}.tmp; mv {p}.tmp {p}; wait ;;\nesac\n",
            p = pidfile.display()
        )
        .as_bytes(),
    );
    std::fs::set_permissions(&helm, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    helm
}

/// Asserts `pid` is gone (within 2 s), killing it if not.
fn assert_gone(pid: &str, what: &str) {
    for _ in 0..100 {
        if !alive(pid) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let still = alive(pid);
    if still {
        let _ = std::process::Command::new("kill").args(["-KILL", pid]).status();
    }
    assert!(!still, "helm's child {pid} outlived {what}");
}

#[test]
fn a_helm_timeout_kills_what_helm_started_too() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let pidfile = dir.path().join("child.pid");
    let helm = helm_with_a_child(dir.path(), &pidfile);
    let charts = one_chart(dir.path());
    let out = run(MIRROR, &helm_dry_run(&helm, "1s", &charts));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        "error: chart slow: helm template timed out after 1s"
    );
    let pid = std::fs::read_to_string(&pidfile).expect("the fake helm started its child");
    let pid = pid.trim();
    // SIGKILL is delivered at once; give the kernel a moment to finish the process off.
    assert_gone(pid, "the timeout");
}

/// Helm runs in a process group of its own, out of the terminal's reach: a Ctrl-C while it renders must
/// still take helm and what it started down with us, and end us as Ctrl-C does.
#[test]
fn ctrl_c_while_helm_renders_kills_helm_and_what_it_started() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().expect("temporary directory");
    let pidfile = dir.path().join("child.pid");
    let helm = helm_with_a_child(dir.path(), &pidfile);
    let charts = one_chart(dir.path());
    let mut child = std::process::Command::new(crate::support::bin(MIRROR))
        .args(helm_dry_run(&helm, "10m", &charts))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the mirror");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !pidfile.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the fake helm never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let pid = std::fs::read_to_string(&pidfile).expect("pid file");
    let pid = pid.trim().to_string();
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    let status = child.wait().expect("wait");
    assert_gone(&pid, "the Ctrl-C");
    assert_eq!(
        status.signal(),
        Some(SIGINT),
        "ended as Ctrl-C ends a process: {status:?}"
    );
}

/// SIGINT's number on Linux.
const SIGINT: i32 = 2;

// ---- 100 MB inputs --------------------------------------------------------------------------------

/// A 100 MB single-document YAML mapping, generated once per test run.
fn hundred_megabytes() -> &'static Path {
    static FILE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = FILE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("huge.yaml");
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
        f.write_all(
            b"apiVersion: kubermatic.k8c.io/v1\nkind: KubermaticConfiguration\nmetadata:\n  name: huge\n  annotations:\n",
        )
        .expect("write");
        let filler = "x".repeat(80);
        let mut written = 0usize;
        let mut i = 0usize;
        while written < 100 << 20 {
            let line = format!("    k{i:08}: \"{filler}\"\n");
            f.write_all(line.as_bytes()).expect("write");
            written += line.len();
            i += 1;
        }
        f.flush().expect("flush");
        (dir, path)
    });
    path
}

#[test]
fn a_100_megabyte_configuration_or_values_file_is_refused_with_a_clear_error() {
    let huge = hundred_megabytes();
    let out = mirror(&["--config", s(huge)]);
    one_line_error(&out, 1, &["huge.yaml", "safety limit"]);

    let out = mirror(&[
        "--helm-binary",
        "helm3",
        "--charts-path",
        s(&fixtures().join("retarget/charts")),
        "--helm-values",
        s(huge),
    ]);
    one_line_error(&out, 1, &["huge.yaml", "safety limit"]);

    // retarget reads a copy inside its work directory and must leave it alone.
    let (_keep, root) = workdir();
    let copy = root.join("huge.yaml");
    std::fs::copy(huge, &copy).expect("copy");
    let before = snapshot(&root);
    let out = retarget(&["--config", s(&copy)]);
    one_line_error(&out, 1, &["huge.yaml", "safety limit"]);
    let out = retarget(&[
        "--charts-path",
        s(&root.join("charts")),
        "--helm-values",
        s(&copy),
        "--allow-leak",
        "*",
    ]);
    one_line_error(&out, 1, &["huge.yaml", "safety limit"]);
    assert_eq!(snapshot(&root), before);
}

#[test]
fn a_100_megabyte_manifest_is_refused_with_a_clear_error() {
    let out = mirror(&["--manifests", s(hundred_megabytes())]);
    one_line_error(&out, 1, &["huge.yaml", "document 1", "safety limit"]);
}

// ---- secrets ---------------------------------------------------------------------------------------

const PASSWORD: &str = "Hunter2-S3cr3t-Passw0rd";
/// `base64("mirror-user:Tok3n-Only-In-Docker-Config")`.
const AUTH: &str = "bWlycm9yLXVzZXI6VG9rM24tT25seS1Jbi1Eb2NrZXItQ29uZmln";
const TOKEN: &str = "Tok3n-Only-In-Docker-Config";

#[track_caller]
fn no_secret(out: &Output) {
    for stream in [&out.stdout, &out.stderr] {
        let text = String::from_utf8_lossy(stream);
        for secret in [PASSWORD, AUTH, TOKEN] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }
}

#[test]
fn credentials_never_appear_in_output_logs_or_errors() {
    let (_keep, root) = workdir();
    let docker = root.join("docker");
    std::fs::create_dir_all(&docker).expect("mkdir");
    write(
        &docker.join("config.json"),
        format!(r#"{{"auths":{{"reg.local:5000":{{"auth":"{AUTH}"}},"quay.io":{{"auth":"{AUTH}"}}}}}}"#)
            .as_bytes(),
    );
    let values = root.join("values.yaml");
    let mut text = std::fs::read_to_string(&values).expect("values");
    text.push_str(&format!(
        "\nadmin:\n  password: \"{PASSWORD}\"\nregistryCredentials:\n  password: {PASSWORD}\n"
    ));
    write(&values, text.as_bytes());
    // The same secret in a broken file: the error names the file and line, never the value.
    let broken = root.join("broken-values.yaml");
    write(
        &broken,
        format!("admin:\n  password: \"{PASSWORD}\"\n  password: \"{PASSWORD}\"\n").as_bytes(),
    );
    let config = root.join("kubermatic.yaml");
    let mut cfg = std::fs::read_to_string(&config).expect("config");
    cfg = cfg.replace("not-a-real-key", PASSWORD);
    write(&config, cfg.as_bytes());
    let wrong_type = root.join("wrong-type.yaml");
    write(
        &wrong_type,
        format!(
            "apiVersion: kubermatic.k8c.io/v1\nkind: KubermaticConfiguration\nspec:\n  imagePullSecret:\n    auths: {PASSWORD}\n"
        )
        .as_bytes(),
    );
    // A URL's credentials pasted into an image list: the error names the line, hides the password.
    let list = root.join("images.txt");
    write(
        &list,
        format!("nginx:1.27\nmirror-user:{PASSWORD}@reg.example.com/x:1\n").as_bytes(),
    );
    let docker_env = [("DOCKER_CONFIG", s(&docker))];
    let charts_dir = root.join("charts");
    let charts = s(&charts_dir);
    let runs: Vec<(&str, Vec<&str>)> = vec![
        (
            MIRROR,
            vec![
                REG,
                "--dry-run",
                "-o",
                "json",
                "--offline",
                "-vvv",
                "--helm-binary",
                "helm3",
                "--charts-path",
                charts,
                "--helm-values",
                s(&values),
                "--config",
                s(&config),
            ],
        ),
        (
            MIRROR,
            vec![
                "--dry-run",
                "-o",
                "yaml",
                "-vvv",
                "--helm-binary",
                "helm3",
                "--charts-path",
                charts,
                "--helm-values",
                s(&broken),
            ],
        ),
        (
            MIRROR,
            vec!["--dry-run", "-o", "json", "-vvv", "--config", s(&wrong_type)],
        ),
        (
            RETARGET,
            vec![
                "--registry",
                REG,
                "--diff",
                "-vvv",
                "--helm-binary",
                "helm3",
                "--charts-path",
                charts,
                "--helm-values",
                s(&values),
                "--allow-leak",
                "*alpine*",
            ],
        ),
        (
            RETARGET,
            vec![
                "--registry",
                REG,
                "-o",
                "set",
                "-vvv",
                "--helm-binary",
                "helm3",
                "--charts-path",
                charts,
                "--helm-values",
                s(&values),
                "--allow-leak",
                "*alpine*",
            ],
        ),
        (
            RETARGET,
            vec![
                "--registry",
                REG,
                "--yes",
                "-vvv",
                "--helm-binary",
                "helm3",
                "--charts-path",
                charts,
                "--helm-values",
                s(&broken),
            ],
        ),
        (
            RETARGET,
            vec!["--registry", REG, "--diff", "-vvv", "--config", s(&config)],
        ),
        (
            RETARGET,
            vec!["--registry", REG, "--yes", "-vvv", "--config", s(&wrong_type)],
        ),
    ];
    for (bin, args) in runs {
        let out = run_env(bin, &args, &docker_env, &["HELM_BINARY", "RUST_LOG"]);
        assert!(
            out.status.code().is_some_and(|c| c <= 2),
            "{bin} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        no_secret(&out);
    }
}

/// A real copy to a registry that wants basic auth, credentials from `$DOCKER_CONFIG`, with trace logs:
/// neither the password nor the `auth` entry shows up, whether the credentials are right or wrong.
#[test]
fn docker_config_credentials_never_appear_in_a_traced_copy() {
    use crate::support::images::{Spec, client_for, push_image};
    use crate::support::registry::{Options, Registry};
    use base64::Engine as _;

    let src = Registry::start();
    let dst = Registry::start_with(Options {
        tls: true,
        htpasswd: Some(("mirror".into(), PASSWORD.into())),
        ..Options::default()
    });
    let client = client_for(&[&src]);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(push_image(&client, &src, "app", "1.0", &Spec::default()));
    let dir = tempfile::tempdir().expect("temporary directory");
    let list = dir.path().join("images.txt");
    write(&list, format!("{}/app:1.0\n", src.host).as_bytes());
    for (password, code) in [(PASSWORD, 0), ("Wr0ng-But-Also-Secret", 1)] {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("mirror:{password}"));
        let docker = dir.path().join(format!("docker-{code}"));
        std::fs::create_dir_all(&docker).expect("mkdir");
        write(
            &docker.join("config.json"),
            serde_json::json!({"auths": {dst.host.clone(): {"auth": auth}}})
                .to_string()
                .as_bytes(),
        );
        let none = dir.path().join("none.json");
        let out = run_env(
            MIRROR,
            &[
                &dst.host,
                "--image-list",
                s(&list),
                "-o",
                "json",
                "-vvv",
                "--insecure-registry",
                &dst.host,
            ],
            &[("DOCKER_CONFIG", s(&docker)), ("REGISTRY_AUTH_FILE", s(&none))],
            &["HELM_BINARY", "RUST_LOG", "XDG_RUNTIME_DIR"],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{stderr}");
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("mirror:{password}"));
        for stream in [&out.stdout, &out.stderr] {
            let text = String::from_utf8_lossy(stream);
            for secret in [password, auth.as_str(), basic.as_str()] {
                assert!(!text.contains(secret), "{secret} leaked: {text}");
            }
        }
    }
}

// ---- a kubeconfig with a bad server or CA ---------------------------------------------------------

#[test]
fn a_kubeconfig_with_a_bad_server_or_ca_is_a_one_line_error_naming_it() {
    use crate::support::apiserver::ApiServer;
    const T: &str = "kubeconfig-test-token";
    let server = ApiServer::start_tls(T);
    let other = ApiServer::start_tls(T);
    let dir = tempfile::tempdir().expect("temporary directory");
    let good = std::fs::read_to_string(server.kubeconfig(dir.path(), T)).expect("kubeconfig");
    let other_dir = tempfile::tempdir().expect("temporary directory");
    let other_kc = std::fs::read_to_string(other.kubeconfig(other_dir.path(), T)).expect("kubeconfig");
    let ca_line = |kc: &str| {
        kc.lines()
            .find(|l| l.trim_start().starts_with("certificate-authority:"))
            .expect("a CA line")
            .to_string()
    };
    let url = server.url();
    let port = url.rsplit(':').next().expect("port").to_string();
    let refused_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let cases: Vec<(&str, String, Vec<String>)> = vec![
        (
            "unknown host",
            good.replace(&url, "https://no-such-host.invalid:6443"),
            vec!["no-such-host.invalid".into()],
        ),
        (
            "connection refused",
            good.replace(&url, &format!("https://127.0.0.1:{refused_port}")),
            vec![format!("127.0.0.1:{refused_port}"), "refused".into()],
        ),
        (
            "a CA that did not sign the server's certificate",
            good.replace(&ca_line(&good), &ca_line(&other_kc)),
            vec![format!("127.0.0.1:{port}"), "certificate".into()],
        ),
        (
            "a CA file that does not exist",
            good.replace(&ca_line(&good), "    certificate-authority: /nonexistent/ca.pem"),
            vec!["/nonexistent/ca.pem".into()],
        ),
    ];
    // The commands that talk to a cluster: audit, seedproxy, and retarget --live.
    let commands: [(&str, &[&str]); 3] = [
        ("kubectl-kkp-audit", &["--registry", "registry.corp:5000"]),
        (
            "kubectl-kkp-seedproxy",
            &["hamburg", "--http-proxy", "http://proxy.corp:3128", "--yes"],
        ),
        (
            "kubectl-kkp-retarget",
            &["--live", "--registry", "registry.corp:5000", "--yes"],
        ),
    ];
    for (what, kubeconfig, needles) in cases {
        let path = dir.path().join("bad-kubeconfig");
        write(&path, kubeconfig.as_bytes());
        for (bin, args) in commands {
            let out = std::process::Command::new(crate::support::bin(bin))
                .env_remove("KUBECONFIG")
                .env("HOME", dir.path())
                .env("NO_COLOR", "1")
                .stdin(std::process::Stdio::null())
                .arg("--kubeconfig")
                .arg(&path)
                .args(args)
                .output()
                .expect("the plugin runs");
            let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!stderr.contains("panicked"), "{bin}, {what}: {stderr}");
            one_line_error(&out, error_code(bin), &needles);
        }
    }
    // Nothing reached the server that was written about.
    assert!(server.seen().is_empty(), "{:?}", server.seen().len());

    // A kubeconfig that is not there, or not a kubeconfig, names the file.
    let missing = dir.path().join("no-such-kubeconfig");
    let garbage = dir.path().join("garbage-kubeconfig");
    write(&garbage, b"clusters: [unclosed\n");
    for path in [&missing, &garbage] {
        for (bin, args) in commands {
            let out = std::process::Command::new(crate::support::bin(bin))
                .env_remove("KUBECONFIG")
                .env("HOME", dir.path())
                .stdin(std::process::Stdio::null())
                .arg("--kubeconfig")
                .arg(path)
                .args(args)
                .output()
                .expect("the plugin runs");
            one_line_error(
                &out,
                error_code(bin),
                &[path.file_name().and_then(|n| n.to_str()).expect("name")],
            );
        }
    }
}

/// The exit code of an error: audit keeps 1 for its findings (leaks, missing), so its errors are 3.
fn error_code(bin: &str) -> i32 {
    if bin == "kubectl-kkp-audit" { 3 } else { 1 }
}
