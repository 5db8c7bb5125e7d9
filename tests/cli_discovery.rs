//! Chart discovery through the real `kubectl-kkp-mirror` binary and real helm 3 and 4.
//!
//! Every run passes `--offline` so no registry is ever asked to confirm a candidate image; the images a
//! chart needs are compared as the union of certain images and candidates, because whether an image in a
//! ConfigMap or an argument is "certain" is the scanner's decision, not this test's.

use crate::support::helm::{
    all_sources, expected_chart_images, grafana_chart, mixed_charts_dir, origin_charts, run_env, sources,
};
use crate::support::{fixtures, run};

fn path(p: std::path::PathBuf) -> String {
    p.to_str().expect("fixture paths are UTF-8").to_string()
}

/// `--dry-run -o json --offline --charts-path DIR --helm-values values-override.yaml` plus `extra`.
fn dry_run(charts: &str, extra: &[&str], set: &[(&str, &str)]) -> std::process::Output {
    let values = path(fixtures().join("values-override.yaml"));
    let mut args = vec![
        "--dry-run",
        "--offline",
        "--charts-path",
        charts,
        "--helm-values",
        &values,
    ];
    args.extend_from_slice(extra);
    run_env("kubectl-kkp-mirror", &args, set, &["HELM_BINARY"])
}

fn json_plan(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Needs the manifest scanner (`discover::manifest::scan_stream`) to list the images.
#[test]
fn charts_render_with_helm3_from_helm_binary_env_and_list_every_image() {
    let charts = path(fixtures().join("charts"));
    let out = dry_run(&charts, &["-o", "json"], &[("HELM_BINARY", "helm3")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan = json_plan(&out);
    assert_eq!(all_sources(&plan), expected_chart_images());
    // Provenance: every image names the chart (path below --charts-path) it came from.
    let expect_origin = [
        ("docker.io/envoyproxy/envoy:distroless-v1.38.3", "umbrella"),
        ("docker.io/envoyproxy/gateway:v1.8.3", "umbrella"),
        ("docker.io/envoyproxy/ratelimit:1e50889b", "umbrella"),
        (
            "docker.io/sstarcher/helm-exporter:1.2.17",
            "monitoring/helm-exporter",
        ),
        ("quay.io/jetstack/cert-manager-acmesolver:v1.20.3", "cert-manager"),
        ("quay.io/jetstack/cert-manager-controller:v1.20.3", "cert-manager"),
        ("quay.io/jetstack/cert-manager-webhook:v1.20.3", "cert-manager"),
        (
            "registry.k8s.io/ingress-nginx/controller:v1.14.3@sha256:\
             0a5f3c5b0e9c8d7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a",
            "umbrella",
        ),
    ];
    for (image, chart) in expect_origin {
        assert_eq!(origin_charts(&plan, image), [chart], "origin of {image}");
    }
}

/// Needs the manifest scanner to list the images.
#[test]
fn helm4_from_helm_binary_flag_gives_the_same_plan_as_helm3() {
    let charts = path(fixtures().join("charts"));
    let helm3 = dry_run(&charts, &["-o", "json"], &[("HELM_BINARY", "helm3")]);
    // The flag wins over the environment variable.
    let helm4 = dry_run(
        &charts,
        &["-o", "json", "--helm-binary", "helm4"],
        &[("HELM_BINARY", "/nonexistent/helm")],
    );
    assert_eq!(helm3.status.code(), Some(0), "{}", stderr(&helm3));
    assert_eq!(helm4.status.code(), Some(0), "{}", stderr(&helm4));
    assert_eq!(
        String::from_utf8_lossy(&helm4.stdout),
        String::from_utf8_lossy(&helm3.stdout)
    );
    assert_eq!(all_sources(&json_plan(&helm4)), expected_chart_images());
}

/// Needs the manifest scanner to list the images.
#[test]
fn text_output_is_one_certain_image_per_line() {
    let charts = path(fixtures().join("charts"));
    let json = dry_run(&charts, &["-o", "json"], &[("HELM_BINARY", "helm3")]);
    let text = dry_run(&charts, &["-o", "text"], &[("HELM_BINARY", "helm3")]);
    assert_eq!(text.status.code(), Some(0), "{}", stderr(&text));
    let lines: Vec<String> = String::from_utf8(text.stdout.clone())
        .expect("UTF-8 output")
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(lines, sources(&json_plan(&json), "images"));
    assert!(!lines.is_empty(), "no image listed");
    let expected = expected_chart_images();
    for line in &lines {
        assert!(expected.contains(line), "unexpected image {line}");
    }
}

/// The failure reporting works today; the stdout comparison needs the manifest scanner.
#[test]
fn broken_charts_are_named_with_helms_message_and_the_others_still_listed() {
    let dir = mixed_charts_dir();
    let charts = path(dir.path().to_path_buf());
    for helm in ["helm3", "helm4"] {
        let out = dry_run(&charts, &["-o", "json", "--helm-binary", helm], &[]);
        assert_eq!(out.status.code(), Some(1), "{helm}: {}", stderr(&out));
        let err = stderr(&out);
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
        assert_eq!(lines.len(), 2, "{helm}: {err}");
        assert!(
            lines[0].starts_with("error: chart bad-template: execution error at")
                && lines[0].ends_with("image.repository is required"),
            "{helm}: {err}"
        );
        assert!(
            lines[1].starts_with("error: chart missing-dep: ")
                && lines[1].ends_with("found in Chart.yaml, but missing in charts/ directory: dex"),
            "{helm}: {err}"
        );
        assert_eq!(all_sources(&json_plan(&out)), expected_chart_images(), "{helm}");
    }
}

#[test]
fn a_missing_helm_binary_is_a_clear_error() {
    let charts = path(fixtures().join("charts"));
    let out = dry_run(&charts, &["--helm-binary", "/nonexistent/helm"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(
        stderr(&out),
        "error: helm binary not found (/nonexistent/helm from --helm-binary: no such executable); \
         pass --helm-binary or set HELM_BINARY\n"
    );
    let out = dry_run(&charts, &[], &[("HELM_BINARY", "no-such-helm-here")]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: helm binary not found (no-such-helm-here from $HELM_BINARY: no such executable); \
         pass --helm-binary or set HELM_BINARY\n"
    );
}

#[test]
fn a_bad_helm_timeout_is_a_usage_error() {
    let charts = path(fixtures().join("charts"));
    let out = run(
        "kubectl-kkp-mirror",
        &["--dry-run", "--charts-path", &charts, "--helm-timeout", "soon"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid duration \"soon\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_missing_values_file_is_named() {
    let charts = path(fixtures().join("charts"));
    let out = run(
        "kubectl-kkp-mirror",
        &[
            "--dry-run",
            "--charts-path",
            &charts,
            "--helm-values",
            "/nonexistent/values.yaml",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error: /nonexistent/values.yaml: "),
        "{}",
        stderr(&out)
    );
}

/// Needs the manifest scanner to list the images.
#[test]
fn include_tests_adds_the_test_hook_image() {
    let charts = path(fixtures().join("charts"));
    let busybox = "docker.io/library/busybox:latest".to_string();
    let without = dry_run(&charts, &["-o", "json", "--helm-binary", "helm3"], &[]);
    assert_eq!(without.status.code(), Some(0), "{}", stderr(&without));
    assert!(!all_sources(&json_plan(&without)).contains(&busybox));
    let with = dry_run(
        &charts,
        &["-o", "json", "--helm-binary", "helm4", "--include-tests"],
        &[],
    );
    assert_eq!(with.status.code(), Some(0), "{}", stderr(&with));
    let mut expected = expected_chart_images();
    expected.push(busybox.clone());
    expected.sort();
    let plan = json_plan(&with);
    assert_eq!(all_sources(&plan), expected);
    assert_eq!(origin_charts(&plan, &busybox), ["monitoring/helm-exporter"]);
}

/// KKP's release layout with both of its values files: `mla/*` (and `iap`) are rendered with the MLA
/// file, everything else with the main one, as `kubermatic-installer` does — merged, the later file's
/// `grafana.image` would win for both grafana charts. Each image names the values file it came from.
#[test]
fn each_chart_is_rendered_with_its_own_stacks_values_file_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let charts = dir.path().join("charts");
    for chart in ["monitoring/grafana", "mla/grafana", "iap"] {
        grafana_chart(&charts, chart, "docker.io/grafana/grafana");
    }
    let main = dir.path().join("values.yaml");
    let mla = dir.path().join("values.mla.yaml");
    std::fs::write(
        &main,
        "grafana:\n  image:\n    repository: docker.io/grafana/grafana-oss\n",
    )
    .unwrap();
    std::fs::write(
        &mla,
        "mlaSecrets:\n  minio:\n    enabled: true\ngrafana:\n  image:\n    repository: docker.io/grafana/grafana-mla\n",
    )
    .unwrap();
    let (main_s, mla_s, charts_s) = (path(main.clone()), path(mla.clone()), path(charts.clone()));
    let args = [
        "--dry-run",
        "--offline",
        "-o",
        "json",
        "--charts-path",
        &charts_s,
        "--helm-values",
        &main_s,
        "--helm-values",
        &mla_s,
    ];
    let out = run("kubectl-kkp-mirror", &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan = json_plan(&out);
    let mut got: Vec<(String, String, Vec<String>)> = Vec::new();
    for image in plan["images"].as_array().unwrap() {
        for o in image["origins"].as_array().unwrap() {
            let values = o["values"].as_array().map_or(Vec::new(), |v| {
                v.iter()
                    .map(|f| f.as_str().unwrap().rsplit('/').next().unwrap().to_string())
                    .collect()
            });
            got.push((
                image["source"].as_str().unwrap().to_string(),
                o["name"].as_str().unwrap().to_string(),
                values,
            ));
        }
    }
    got.sort();
    let v = |f: &[&str]| f.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        got,
        vec![
            (
                "docker.io/grafana/grafana-mla:12.0".into(),
                "iap".into(),
                v(&["values.mla.yaml"])
            ),
            (
                "docker.io/grafana/grafana-mla:12.0".into(),
                "mla/grafana".into(),
                v(&["values.mla.yaml"])
            ),
            (
                "docker.io/grafana/grafana-oss:12.0".into(),
                "iap".into(),
                v(&["values.yaml"])
            ),
            (
                "docker.io/grafana/grafana-oss:12.0".into(),
                "monitoring/grafana".into(),
                v(&["values.yaml"])
            ),
        ]
    );
    // The table names the file beside the chart.
    let out = run(
        "kubectl-kkp-mirror",
        &[&args[..2], &["-o", "table"], &args[4..]].concat(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("mla/grafana (values.mla.yaml)") && table.contains("monitoring/grafana (values.yaml)"),
        "{table}"
    );
    // One kind of file only: every chart reads it, as before.
    let out = run("kubectl-kkp-mirror", &args[..8]);
    let plan = json_plan(&out);
    let sources: Vec<&str> = plan["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["docker.io/grafana/grafana-oss:12.0"]);
}
