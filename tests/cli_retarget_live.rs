//! `kubectl kkp retarget --live` through the real binary, against the loopback API server in the test
//! tree: the KubermaticConfiguration stored there is what the assertions read.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use crate::support::apiserver::ApiServer;
use crate::support::bin;

const TOKEN: &str = "l1ve-t0ken";
const NS: &str = "kubermatic";
const REG: &str = "reg.local:5000/kkp";
const LABEL: &str = "kubermatic.k8c.io/v1.KubermaticConfiguration.kubermatic.kubermatic";

fn kkp(name: &str) -> Value {
    json!({
        "apiVersion": "kubermatic.k8c.io/v1",
        "kind": "KubermaticConfiguration",
        "metadata": {
            "name": name,
            "namespace": NS,
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"huge\":true}"},
            "managedFields": [{"manager": "kubermatic-installer", "operation": "Apply"}],
        },
        "spec": {
            "ingress": {"domain": "kkp.example.com"},
            "auth": {"serviceAccountKey": "hunter2-not-for-terminals"},
            "api": {"dockerRepository": "quay.io/kubermatic/dashboard", "replicas": 2},
            "userCluster": {"apiserverReplicas": 2},
        },
        "status": {"kubermaticVersion": "v2.31.0"},
    })
}

struct Env {
    server: ApiServer,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl Env {
    fn new() -> Env {
        let server = ApiServer::start(TOKEN);
        server.put_kkp(kkp("kubermatic"));
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = server.kubeconfig(dir.path(), TOKEN);
        Env {
            server,
            dir,
            kubeconfig,
        }
    }

    /// Runs with `--kubeconfig`, `--registry` and `args`, stdin closed (not a terminal).
    fn run(&self, args: &[&str]) -> Output {
        Command::new(bin("kubectl-kkp-retarget"))
            .env_remove("KUBECONFIG")
            .env("HOME", self.dir.path())
            .env("NO_COLOR", "1")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--registry", REG, "--helm-binary", "helm3"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn stored(&self) -> Value {
        self.server.kkp(NS, "kubermatic").unwrap()
    }

    /// Every PATCH the server saw.
    fn patches(&self) -> Vec<crate::support::apiserver::Seen> {
        self.server
            .seen()
            .into_iter()
            .filter(|s| s.method == "PATCH")
            .collect()
    }

    /// Persisting PATCHes (dry runs left out).
    fn writes(&self) -> usize {
        self.patches()
            .iter()
            .filter(|s| !s.target.contains("dryRun=All"))
            .count()
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The stored spec points every repository field at REG, and the rest of it is as it was.
fn assert_retargeted(obj: &Value) {
    let spec = &obj["spec"];
    assert_eq!(spec["userCluster"]["overwriteRegistry"], REG, "{obj}");
    assert_eq!(
        spec["api"]["dockerRepository"],
        "reg.local:5000/kkp/kubermatic/dashboard"
    );
    assert_eq!(
        spec["userCluster"]["kubermaticDockerRepository"],
        "reg.local:5000/kkp/kubermatic/kubermatic"
    );
    assert_eq!(
        spec["verticalPodAutoscaler"]["updater"]["dockerRepository"],
        "reg.local:5000/kkp/autoscaling/vpa-updater"
    );
    assert_eq!(spec["auth"]["serviceAccountKey"], "hunter2-not-for-terminals");
    assert_eq!(obj["status"], json!({"kubermaticVersion": "v2.31.0"}));
}

#[test]
fn live_diff_exits_1_on_change_0_without_and_writes_nothing() {
    let env = Env::new();
    let before = env.stored();
    for flags in [&["--diff"][..], &["--dry-run"], &["--dry-run=client"]] {
        let out = env.run(&[&["--live"][..], flags].concat());
        assert_eq!(out.status.code(), Some(1), "{flags:?}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(
            text.starts_with(&format!("--- LIVE/{LABEL}\n+++ MERGED/{LABEL}\n")),
            "{text}"
        );
        assert!(
            text.contains("+    overwriteRegistry: reg.local:5000/kkp\n"),
            "{text}"
        );
        assert!(
            text.contains("-    dockerRepository: quay.io/kubermatic/dashboard\n"),
            "{text}"
        );
        for noise in [
            "managedFields",
            "resourceVersion",
            "status",
            "last-applied",
            "hunter2",
        ] {
            assert!(!text.contains(noise), "{noise} shown: {text}");
        }
    }
    assert_eq!(env.stored(), before);
    assert!(
        env.patches().is_empty(),
        "a client-side diff sends no PATCH at all"
    );

    assert_eq!(env.run(&["--live", "--yes"]).status.code(), Some(0));
    let out = env.run(&["--live", "--diff"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(stdout(&out), "");
}

#[test]
fn live_apply_with_yes_patches_the_stored_object() {
    let env = Env::new();
    let before = env.stored();
    let out = env.run(&["--live", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).ends_with("kubermaticconfiguration.kubermatic.k8c.io/kubermatic patched\n"),
        "{}",
        stdout(&out)
    );
    let after = env.stored();
    assert_retargeted(&after);
    assert_eq!(after["spec"]["ingress"], before["spec"]["ingress"]);
    assert_ne!(
        after["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );
    // One strict merge patch, guarded by the resourceVersion that was read.
    let patches = env.patches();
    assert_eq!(patches.len(), 1);
    assert_eq!(
        patches[0].content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert!(
        patches[0].target.contains("fieldValidation=Strict"),
        "{}",
        patches[0].target
    );
    let body = patches[0].body.as_ref().unwrap();
    assert_eq!(
        body["metadata"],
        json!({"resourceVersion": before["metadata"]["resourceVersion"]})
    );
    assert!(body["spec"].get("ingress").is_none(), "{body}");

    // A second run has nothing to do.
    let out = env.run(&["--live", "--yes"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("nothing to change"), "{}", stderr(&out));
    assert_eq!(env.writes(), 1);
}

#[test]
fn live_conflict_rereads_and_shows_the_new_diff() {
    let env = Env::new();
    env.server.before_next_write(|obj| {
        obj["spec"]["api"]["replicas"] = json!(3);
        obj["spec"]["api"]["dockerRepository"] = json!("mirror.other/kubermatic/dashboard");
    });
    let out = env.run(&["--live", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "KubermaticConfiguration kubermatic/kubermatic was changed by someone else meanwhile; re-reading it."
        ),
        "{}",
        stderr(&out)
    );
    let text = stdout(&out);
    assert_eq!(text.matches(&format!("--- LIVE/{LABEL}")).count(), 2, "{text}");
    // The second diff is against the other writer's object.
    assert!(
        text.contains("-    dockerRepository: mirror.other/kubermatic/dashboard\n"),
        "{text}"
    );
    assert!(text.contains("     replicas: 3\n"), "{text}");
    let after = env.stored();
    assert_retargeted(&after);
    assert_eq!(
        after["spec"]["api"]["replicas"], 3,
        "the other writer's change is kept"
    );
    assert_eq!(env.writes(), 2, "the refused write and the one after re-reading");
}

/// Runs the plugin with `--kubeconfig`, `--registry` and `args`, stdin on a pseudo-terminal, typing `input`.
fn run_on_terminal(env: &Env, args: &[&str], input: &str) -> Output {
    let mut argv = vec![
        bin("kubectl-kkp-retarget").display().to_string(),
        "--kubeconfig".into(),
        env.kubeconfig.display().to_string(),
        "--registry".into(),
        REG.into(),
    ];
    argv.extend(args.iter().map(|a| a.to_string()));
    crate::support::run_on_terminal(&argv, env.dir.path(), input)
}

#[test]
fn live_on_a_terminal_a_conflict_is_asked_again_and_no_means_no() {
    let env = Env::new();
    let before = env.stored();
    let out = run_on_terminal(&env, &["--live"], "n\n");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("Apply these changes? [y/N]"),
        "{}",
        stdout(&out)
    );
    assert_eq!(env.stored(), before);

    env.server.before_next_write(|obj| {
        obj["spec"]["api"]["replicas"] = json!(3);
    });
    let out = run_on_terminal(&env, &["--live"], "y\ny\n");
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(text.matches("[y/N]").count(), 2, "{text}");
    assert!(text.contains("     replicas: 3"), "{text}");
    assert_retargeted(&env.stored());
    assert_eq!(env.stored()["spec"]["api"]["replicas"], 3);
}

#[test]
fn live_server_dry_run_sends_dry_run_all_and_persists_nothing() {
    let env = Env::new();
    let before = env.stored();
    let out = env.run(&["--live", "--dry-run=server"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("+    overwriteRegistry: reg.local:5000/kkp\n"),
        "{text}"
    );
    assert!(
        text.ends_with("kubermaticconfiguration.kubermatic.k8c.io/kubermatic patched (server dry run)\n"),
        "{text}"
    );
    let patches = env.patches();
    assert_eq!(patches.len(), 1);
    assert!(patches[0].target.contains("dryRun=All"), "{}", patches[0].target);
    assert_eq!(env.stored(), before);
}

#[test]
fn live_without_terminal_and_without_yes_is_refused() {
    let env = Env::new();
    let before = env.stored();
    let out = env.run(&["--live"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("refusing to write without confirmation"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.stored(), before);
    assert_eq!(env.writes(), 0);
}

#[test]
fn live_errors_are_one_line_and_change_nothing() {
    let env = Env::new();
    let before = env.stored();
    let one_line = |o: &Output, want: &str| {
        assert_eq!(o.status.code(), Some(1), "{}", stderr(o));
        assert_eq!(stderr(o), format!("error: {want}\n"));
    };
    one_line(
        &env.run(&["--live", "--name", "nope", "--yes"]),
        "Error from server (NotFound): kubermaticconfigurations.kubermatic.k8c.io \"nope\" not found",
    );
    one_line(
        &env.run(&["--live", "-n", "elsewhere", "--yes"]),
        "no KubermaticConfiguration in namespace \"elsewhere\"; pick the namespace with -n",
    );
    env.server.put_kkp(kkp("second"));
    one_line(
        &env.run(&["--live", "--yes"]),
        "2 KubermaticConfigurations in namespace \"kubermatic\" (kubermatic, second); pick one with --name",
    );
    env.server.forbid("patch");
    one_line(
        &env.run(&["--live", "--name", "kubermatic", "--yes"]),
        "Error from server (Forbidden): kubermaticconfigurations.kubermatic.k8c.io \"kubermatic\" is forbidden: \
         User \"tester\" cannot patch resource \"kubermaticconfigurations\" in API group \"kubermatic.k8c.io\" \
         in the namespace \"kubermatic\"",
    );
    env.server.forbid("list");
    let out = env.run(&["--live", "--diff"]);
    assert_eq!(out.status.code(), Some(2), "errors under --diff exit 2");
    assert!(
        stderr(&out).starts_with("error: Error from server (Forbidden): "),
        "{}",
        stderr(&out)
    );
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert_eq!(env.stored(), before, "the refused patch changed nothing");
}

#[test]
fn live_with_helm_values_patches_the_object_and_edits_the_values_file() {
    let env = Env::new();
    let (_work, root) = crate::cli_retarget::workdir();
    let values = root.join("values.yaml");
    let charts = root.join("charts");
    let before = std::fs::read_to_string(&values).unwrap();
    let args = [
        "--live",
        "--helm-values",
        values.to_str().unwrap(),
        "--charts-path",
        charts.to_str().unwrap(),
        "--allow-leak",
        "docker.io/library/alpine:*",
    ];
    // A server dry run writes no file either.
    let out = env.run(&[&args[..], &["--dry-run=server"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&values).unwrap(), before);

    let out = env.run(&[&args[..], &["--yes"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_retargeted(&env.stored());
    let after = std::fs::read_to_string(&values).unwrap();
    assert!(after.contains("reg.local:5000/kkp"), "{after}");
    assert!(after.starts_with("# Values for the KKP charts.\n"), "{after}");
    let out = env.run(&[&args[..], &["--diff"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

/// `--plain-http` reaches the live object as a JSON boolean (KKP's `plainHTTP bool`), the diff shows it,
/// and a rerun has nothing to do. Without `--config`/`--live` the flag is a usage error.
#[test]
fn live_plain_http_is_patched_as_a_boolean_and_a_rerun_is_a_no_op() {
    let env = Env::new();
    let diff = env.run(&["--live", "--plain-http", "--diff"]);
    assert_eq!(diff.status.code(), Some(1), "{}", stderr(&diff));
    assert!(
        stdout(&diff).contains("+      plainHTTP: true"),
        "{}",
        stdout(&diff)
    );
    let out = env.run(&["--live", "--plain-http", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let after = env.stored();
    assert_retargeted(&after);
    let sys = &after["spec"]["userCluster"]["systemApplications"];
    assert_eq!(sys["plainHTTP"], Value::Bool(true), "{after}");
    assert_eq!(
        sys["helmRepository"],
        format!("oci://{REG}/kubermatic-mirror/helm-charts")
    );
    let again = env.run(&["--live", "--plain-http", "--diff"]);
    assert_eq!(again.status.code(), Some(0), "{}", stdout(&again));
    assert_eq!(env.writes(), 1);

    let out = env.run(&["--plain-http", "--charts-path", "/nonexistent", "-o", "set"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--plain-http is set in the KubermaticConfiguration"),
        "{}",
        stderr(&out)
    );
}
