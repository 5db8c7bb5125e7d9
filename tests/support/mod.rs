//! Test support: paths to the built binaries and fixtures, and helpers that start real peers.

pub mod addons;
pub mod apiserver;
pub mod fileserver;
pub mod helm;
pub mod images;
pub mod referrers;
pub mod registry;
pub mod scripted;
pub mod yaml_property;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Path of a binary of this package.
pub fn bin(name: &str) -> PathBuf {
    match name {
        "kubectl-kkp" => env!("CARGO_BIN_EXE_kubectl-kkp").into(),
        "kubectl-kkp-mirror" => env!("CARGO_BIN_EXE_kubectl-kkp-mirror").into(),
        "kubectl-kkp-retarget" => env!("CARGO_BIN_EXE_kubectl-kkp-retarget").into(),
        "kubectl-kkp-seedproxy" => env!("CARGO_BIN_EXE_kubectl-kkp-seedproxy").into(),
        "kubectl-kkp-audit" => env!("CARGO_BIN_EXE_kubectl-kkp-audit").into(),
        other => panic!("unknown binary {other}"),
    }
}

/// Directory of the test fixtures.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Runs a binary with arguments, stdin closed.
pub fn run(name: &str, args: &[&str]) -> Output {
    Command::new(bin(name))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("binary runs")
}

/// An exit code with both streams, for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts that a run exited with `code`, showing both streams when not.
pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "{}", show(out));
}

/// The JSON a successful run printed; any other exit fails the test, showing both streams.
pub fn ok_json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", show(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `kubectl-kkp-mirror ARGS` with an empty docker config, auth file and cache (kept until the
/// returned directory drops), stdin closed, both streams captured.
pub fn mirror_cmd(args: &[&str]) -> (Command, tempfile::TempDir) {
    let empty = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin("kubectl-kkp-mirror"));
    cmd.args(args)
        .env("DOCKER_CONFIG", empty.path())
        .env("XDG_CACHE_HOME", empty.path())
        .env("REGISTRY_AUTH_FILE", empty.path().join("none.json"))
        .env_remove("XDG_RUNTIME_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    (cmd, empty)
}

/// Runs [`mirror_cmd`] to its end.
pub fn mirror(args: &[&str]) -> Output {
    let (mut cmd, _dir) = mirror_cmd(args);
    cmd.output().unwrap()
}

/// Runs a future to completion on a fresh multi-threaded runtime (tests drive the async client with it).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Runs `argv` with stdin on a pseudo-terminal (util-linux `script`), typing `input`. `HOME` is `home`,
/// `KUBECONFIG` unset, `NO_COLOR` set; stdout holds everything the terminal showed (prompts included).
pub fn run_on_terminal(argv: &[String], home: &Path, input: &str) -> Output {
    use std::io::Write;
    let line: Vec<String> = argv.iter().map(|a| format!("'{a}'")).collect();
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &line.join(" "), "/dev/null"])
        .env("NO_COLOR", "1")
        .env("HOME", home)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script runs");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}
