//! `kubectl kkp retarget` through the real binary, with real helm renders.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::support::helm::grafana_chart;
use crate::support::{bin, fixtures};

const REG: &str = "reg.local:5000/kkp";

/// A private copy of the retarget fixtures.
pub(crate) fn workdir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-r")
        .arg(fixtures().join("retarget"))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let root = dir.path().join("retarget");
    (dir, root)
}

fn retarget(args: &[&str]) -> Output {
    Command::new(bin("kubectl-kkp-retarget"))
        .args(["--registry", REG, "--helm-binary", "helm3"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `retarget --helm-values VALUES --charts-path CHARTS` with the fixtures' one hard-coded image allowed.
fn retarget_charts(values: &Path, charts: &Path, extra: &[&str]) -> Output {
    let args = [
        "--helm-values",
        s(values),
        "--charts-path",
        s(charts),
        "--allow-leak",
        "docker.io/library/alpine:*",
    ];
    retarget(&[&args[..], extra].concat())
}

fn assert_ok(out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

/// Images in `helm3 template` output (the `image:` lines).
fn rendered_images(chart: &Path, extra: &[&str]) -> Vec<String> {
    let out = Command::new("helm3")
        .arg("template")
        .arg("x")
        .arg(chart)
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("image: "))
        .map(|i| i.trim_matches('"').to_string())
        .collect()
}

#[test]
fn config_diff_apply_and_second_run_is_clean() {
    let (_d, root) = workdir();
    let config = root.join("kubermatic.yaml");
    let before = read(&config);

    let out = retarget(&["--config", s(&config), "--diff"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let diff = String::from_utf8(out.stdout).unwrap();
    assert!(
        diff.contains("+    overwriteRegistry: reg.local:5000/kkp\n"),
        "{diff}"
    );
    assert!(!diff.contains("\x1b["), "no colour when stdout is not a terminal");
    assert_eq!(read(&config), before, "--diff writes nothing");

    let out = retarget(&["--config", s(&config), "--yes"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = read(&config);
    assert_ne!(after, before);
    // Untouched lines are byte-identical: the header comment block and the ingress section.
    assert_eq!(
        after.lines().take(18).collect::<Vec<_>>(),
        before.lines().take(18).collect::<Vec<_>>()
    );

    let out = retarget(&["--config", s(&config), "--diff"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    let out = retarget(&["--config", s(&config), "--yes"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(read(&config), after);
}

#[test]
fn no_terminal_and_no_yes_is_refused() {
    let (_d, root) = workdir();
    let config = root.join("kubermatic.yaml");
    let before = read(&config);
    let out = retarget(&["--config", s(&config)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to write without confirmation"));
    assert_eq!(read(&config), before);
}

#[test]
fn output_file_keeps_the_stock_file() {
    let (_d, root) = workdir();
    let config = root.join("kubermatic.yaml");
    let before = read(&config);
    let target = root.join("kubermatic.private.yaml");
    let out = retarget(&["--config", s(&config), "-o", s(&target), "--yes"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read(&config), before);
    assert!(read(&target).contains("  userCluster:\n    apiserverReplicas: 2\n"));
    assert!(read(&target).contains("    overwriteRegistry: reg.local:5000/kkp\n"));

    let values = root.join("values.yaml");
    let out = retarget(&[
        "--config",
        s(&config),
        "--helm-values",
        s(&values),
        "--charts-path",
        s(&root.join("charts")),
        "-o",
        s(&target),
        "--yes",
        "--allow-leak",
        "*",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("-o FILE takes exactly one input file"));
}

#[test]
fn errors_under_diff_exit_above_one() {
    let out = retarget(&["--config", "/nonexistent/kubermatic.yaml", "--diff"]);
    assert_eq!(out.status.code(), Some(2));
    let out = retarget(&["--config", "/nonexistent/kubermatic.yaml", "--yes"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn helm_values_render_only_private_images() {
    let (_d, root) = workdir();
    let values = root.join("values.yaml");
    let charts = root.join("charts");
    let before = read(&values);
    assert_ok(&retarget_charts(&values, &charts, &["--yes"]));
    let after = read(&values);
    // The user's comments and keys are still there, byte for byte.
    assert!(after.starts_with("# Values for the KKP charts.\n# Keep this file in git.\n\nweb:\n  image:\n    tag: v1.0.0   # pinned\n"));
    assert!(after.contains("\ndex:\n  ingress:\n    host: \"dex.example.com\"\n"));
    // A string that looks like an image but is rendered into a ConfigMap is not touched.
    assert!(!after.contains("bannerImage"), "{after}");

    let mut images = Vec::new();
    for chart in ["web", "legacy", "bits"] {
        images.extend(rendered_images(&charts.join(chart), &["--values", s(&values)]));
    }
    images.sort();
    assert_eq!(
        images,
        [
            "docker.io/library/alpine:3.20",
            "reg.local:5000/kkp/bitnami/redis:7.2",
            "reg.local:5000/kkp/dexidp/dex:v2.44.0",
            "reg.local:5000/kkp/example/init@sha256:1111111111111111111111111111111111111111111111111111111111111111",
            "reg.local:5000/kkp/example/legacy:2.0",
            "reg.local:5000/kkp/example/web:v1.0.0",
            "reg.local:5000/kkp/ingress-nginx/controller:v1.14.3@sha256:2222222222222222222222222222222222222222222222222222222222222222",
            "reg.local:5000/kkp/ingress-nginx/kube-webhook-certgen:v1.6.7",
            "reg.local:5000/kkp/library/busybox:1.37",
        ]
    );
    assert_ne!(after, before);
    let out = retarget(&[
        "--helm-values",
        s(&values),
        "--charts-path",
        s(&charts),
        "--diff",
        "--allow-leak",
        "docker.io/library/alpine:*",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "second run: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_hard_coded_image_is_a_named_leak_and_nothing_is_written() {
    let (_d, root) = workdir();
    let values = root.join("values.yaml");
    let before = read(&values);
    let out = retarget(&[
        "--helm-values",
        s(&values),
        "--charts-path",
        s(&root.join("charts")),
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "chart legacy: Pod/legacy spec.containers[helper].image: docker.io/library/alpine:3.20"
        ),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("chart ").count(),
        1,
        "only the hard-coded image leaks: {stderr}"
    );
    assert_eq!(read(&values), before);
}

#[test]
fn set_output_gives_helm_flags_that_render_private_images() {
    let (_d, root) = workdir();
    let values = root.join("values.yaml");
    let charts = root.join("charts");
    let before = read(&values);
    let out = retarget(&[
        "--helm-values",
        s(&values),
        "--charts-path",
        s(&charts),
        "-o",
        "set",
        "--allow-leak",
        "docker.io/library/alpine:*",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read(&values), before);
    let flags = String::from_utf8(out.stdout).unwrap();
    assert!(flags.lines().all(|l| l.starts_with("--set ")), "{flags}");
    let mut args = vec!["--values".to_string(), s(&values).to_string()];
    for line in flags.lines() {
        let (flag, kv) = line.split_once(' ').unwrap();
        args.push(flag.to_string());
        args.push(kv.to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(private_images(&charts.join("web"), &args).len(), 6);
}

/// The images `chart` renders with `extra` helm flags, each checked to be below REG.
fn private_images(chart: &Path, extra: &[&str]) -> Vec<String> {
    let images = rendered_images(chart, extra);
    assert!(
        images.iter().all(|i| i.starts_with("reg.local:5000/kkp/")),
        "{images:?}"
    );
    images
}

#[test]
fn overrides_alone_go_to_a_new_file_with_o() {
    let (_d, root) = workdir();
    let charts = root.join("charts");
    let target = root.join("private.yaml");
    let out = retarget(&[
        "--charts-path",
        s(&charts),
        "-o",
        s(&target),
        "--yes",
        "--allow-leak",
        "*alpine*",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let images = rendered_images(&charts.join("web"), &["--values", s(&target)]);
    assert_eq!(images.len(), 6);
    assert!(
        images.iter().all(|i| i.starts_with("reg.local:5000/kkp/")),
        "{images:?}"
    );
}

#[test]
fn config_and_values_in_one_run() {
    let (_d, root) = workdir();
    let (config, values) = (root.join("kubermatic.yaml"), root.join("values.yaml"));
    let (config_before, values_before) = (read(&config), read(&values));
    let out = retarget(&[
        "--config",
        s(&config),
        "--helm-values",
        s(&values),
        "--charts-path",
        s(&root.join("charts")),
        "--yes",
        "--allow-leak",
        "*alpine*",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let diff = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        diff.lines().filter(|l| l.starts_with("+++ ")).count(),
        2,
        "{diff}"
    );
    assert_ne!(read(&config), config_before);
    assert_ne!(read(&values), values_before);
}

#[test]
fn usage_errors_exit_2() {
    let (_d, root) = workdir();
    let values = root.join("values.yaml");
    for args in [
        vec![],
        vec!["--helm-values", s(&values)],
        vec!["--config", s(&root.join("kubermatic.yaml")), "-o", "set"],
        vec!["--live", "--config", s(&root.join("kubermatic.yaml"))],
        vec!["--dry-run=server", "--config", s(&root.join("kubermatic.yaml"))],
        vec![
            "--name",
            "kubermatic",
            "--config",
            s(&root.join("kubermatic.yaml")),
        ],
    ] {
        let out = retarget(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).starts_with("error: "),
            "{args:?}"
        );
    }
    let out = Command::new(bin("kubectl-kkp-retarget"))
        .args([
            "--registry",
            "Bad Registry",
            "--config",
            s(&root.join("kubermatic.yaml")),
            "--diff",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_hostile_helm_setup_does_not_affect_retarget() {
    let (_d, root) = workdir();
    let values = root.join("values.yaml");
    let charts = root.join("charts");
    // A helm setup that breaks every helm command run in it: unreadable registry logins and repositories.
    let hostile = root.join("hostile-helm");
    std::fs::create_dir_all(hostile.join("config/registry")).unwrap();
    std::fs::write(hostile.join("config/registry/config.json"), "{{{ not json").unwrap();
    std::fs::write(hostile.join("config/repositories.yaml"), "repositories: [").unwrap();
    std::fs::write(hostile.join("registry.json"), "{{{ not json").unwrap();
    let with_hostile_env = |cmd: &mut Command| {
        cmd.env("HELM_CONFIG_HOME", hostile.join("config"))
            .env("HELM_REGISTRY_CONFIG", hostile.join("registry.json"))
            .env("HELM_REPOSITORY_CONFIG", hostile.join("config/repositories.yaml"))
            .env("HELM_CACHE_HOME", hostile.join("cache"))
            .env("HELM_PLUGINS", hostile.join("plugins"));
    };
    let mut plain = Command::new("helm3");
    plain.arg("template").arg("x").arg(charts.join("web"));
    with_hostile_env(&mut plain);
    assert!(
        !plain.output().unwrap().status.success(),
        "the hostile setup must break a plain helm call, or this test proves nothing"
    );

    let mut cmd = Command::new(bin("kubectl-kkp-retarget"));
    cmd.args(["--registry", REG, "--helm-binary", "helm3"])
        .args(["--helm-values", s(&values), "--charts-path", s(&charts), "--yes"])
        .args(["--allow-leak", "docker.io/library/alpine:*"])
        .stdin(Stdio::null());
    with_hostile_env(&mut cmd);
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!private_images(&charts.join("web"), &["--values", s(&values)]).is_empty());
}

#[test]
fn mirror_warns_once_about_a_retargeted_values_file() {
    let (_d, root) = workdir();
    let values = root.join("values.yaml");
    let charts = root.join("charts");
    let warning = "already point at reg.local:5000/kkp";
    let mirror = |v: &Path| {
        Command::new(bin("kubectl-kkp-mirror"))
            .args([
                REG,
                "--dry-run",
                "--offline",
                "-o",
                "json",
                "--helm-binary",
                "helm3",
            ])
            .args(["--charts-path", s(&charts), "--helm-values", s(v)])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = mirror(&values);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains(warning));

    let private = root.join("values.private.yaml");
    assert_ok(&retarget_charts(&values, &charts, &["-o", s(&private), "--yes"]));
    let out = mirror(&private);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches(warning).count(), 1, "{err}");
    assert!(
        err.contains(&format!("warning: {}: ", private.display())),
        "{err}"
    );
}

/// Issue 18: KKP's whole `charts/` dir with one values file, as `kubermatic-installer deploy` uses it.
/// `monitoring/grafana` (main values) and `mla/grafana` (MLA values) share the key `grafana.image` with
/// different defaults; each values file edits and checks only its own stack, a rerun changes nothing.
#[test]
fn the_whole_kkp_charts_dir_is_retargeted_per_values_file_and_reruns_are_clean() {
    let dir = tempfile::tempdir().unwrap();
    let charts = dir.path().join("charts");
    grafana_chart(&charts, "monitoring/grafana", "docker.io/grafana/grafana-oss");
    grafana_chart(&charts, "mla/grafana", "docker.io/grafana/grafana");
    let main = dir.path().join("values.yaml");
    let mla = dir.path().join("values.mla.yaml");
    std::fs::write(&main, "# main\ndex: {}\n").unwrap();
    std::fs::write(&mla, "# MLA\nmlaSecrets:\n  minio:\n    enabled: true\n").unwrap();

    for (values, want, left) in [
        (&main, "reg.local:5000/kkp/grafana/grafana-oss", "mla/grafana"),
        (&mla, "reg.local:5000/kkp/grafana/grafana", "monitoring/grafana"),
    ] {
        let args = ["--helm-values", s(values), "--charts-path", s(&charts)];
        let out = retarget(&[&args[..], &["--yes"]].concat());
        assert_ok(&out);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("left out 1 chart(s)") && stderr.contains(left),
            "{stderr}"
        );
        let text = read(values);
        assert!(text.contains(&format!("repository: {want}")), "{text}");
        assert!(text.starts_with("# "), "comment kept: {text}");
        // The rerun: nothing to change (exit 0 under --diff) and the file stays byte for byte.
        let again = retarget(&[&args[..], &["--diff"]].concat());
        assert_eq!(
            again.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&again.stdout)
        );
        assert_eq!(read(values), text);
    }
    // Both kinds of file in one run are refused, naming both; nothing is written.
    let before = read(&main);
    let out = retarget(&[
        "--helm-values",
        s(&main),
        "--helm-values",
        s(&mla),
        "--charts-path",
        s(&charts),
        "--yes",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("values.yaml") && err.contains("values.mla.yaml"),
        "{err}"
    );
    assert_eq!(read(&main), before);
    // --stack all takes both, and on a stock file the shared key is the real conflict it is.
    let stock = dir.path().join("stock.yaml");
    std::fs::write(&stock, "dex: {}\n").unwrap();
    let out = retarget(&[
        "--helm-values",
        s(&stock),
        "--charts-path",
        s(&charts),
        "--stack",
        "all",
        "--diff",
    ]);
    assert!(
        out.status.code().unwrap_or(0) > 1,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("grafana.image.repository"));
}
