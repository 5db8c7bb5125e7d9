//! `kubectl kkp audit` against three loopback API servers (master, a seed reached through the Seed's
//! kubeconfig Secret, a user cluster reached through its `admin-kubeconfig`) and a real docker-registry
//! holding some of the images: leaks with their knobs, missing images, a forbidden namespace, exit codes,
//! and KKP's chart objects as `helm template` renders them, each leak naming the values key `retarget`
//! sets for it.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::support::apiserver::ApiServer;
use crate::support::images::{Spec, client_for, push_image};
use crate::support::registry::Registry;
use crate::support::{bin, block_on, fixtures, show};

const TOKEN: &str = "audit-token";
const KINDS: &[&str] = &[
    "pods",
    "deployments",
    "statefulsets",
    "daemonsets",
    "jobs",
    "cronjobs",
];

fn pod(ns: &str, name: &str, image: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": ns, "name": name},
           "spec": {"containers": [{"name": "main", "image": image}]}})
}

fn deployment(ns: &str, name: &str, containers: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"namespace": ns, "name": name},
           "spec": {"template": {"spec": {"containers": containers}}}})
}

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

/// The objects `helm template` renders for the fixture charts, labelled as an installed release is
/// (`meta.helm.sh/release-name`, and the chart's `helm.sh/chart` label).
fn rendered_release(chart_dir: &Path, release: &str, chart_label: &str, values: &Path) -> Vec<Value> {
    let out = Command::new("helm")
        .args(["template", release])
        .arg(chart_dir)
        .args(["--namespace", "kubermatic", "--values"])
        .arg(values)
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("kkp-audit-helm-cache"),
        )
        .output()
        .expect("helm runs");
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<Value> = kkp_shared::yamledit::load_data(&text).expect("helm's output parses");
    docs.into_iter()
        .filter(|d| {
            matches!(
                d["kind"].as_str(),
                Some("Deployment" | "DaemonSet" | "StatefulSet" | "Job" | "CronJob")
            )
        })
        .map(|mut d| {
            d["metadata"]["namespace"] = json!("kubermatic");
            d["metadata"]["annotations"]["meta.helm.sh/release-name"] = json!(release);
            // Helm labels a subchart's objects with the subchart; the others get the chart's.
            if d["metadata"]["labels"]["helm.sh/chart"].is_null() {
                d["metadata"]["labels"]["helm.sh/chart"] = json!(chart_label);
            }
            d
        })
        .collect()
}

struct Env {
    _dir: tempfile::TempDir,
    _master: ApiServer,
    _seed: ApiServer,
    _user: ApiServer,
    registry: Registry,
    kubeconfig: std::path::PathBuf,
    values: std::path::PathBuf,
    reg: String,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::start();
        let reg = format!("{}/kkp", registry.host);
        block_on(async {
            let client = client_for(&[&registry]);
            let spec = Spec {
                platforms: vec!["linux/amd64"],
                layers: 1,
                layer_size: 1024,
                ..Spec::default()
            };
            push_image(&client, &registry, "kkp/shop/app", "v1", &spec).await;
            push_image(&client, &registry, "kkp/kubermatic/kubermatic", "v2.31.0", &spec).await;
        });
        let values = dir.path().join("values.yaml");
        std::fs::copy(fixtures().join("values-override.yaml"), &values).unwrap();

        let master = ApiServer::start(TOKEN);
        let seed = ApiServer::start(TOKEN);
        let user = ApiServer::start(TOKEN);

        // Master: a half-retargeted configuration, a Seed, workloads, KKP's chart objects.
        master.put_kkp(
            json!({"metadata": {"namespace": "kubermatic", "name": "kubermatic"},
            "spec": {"masterController": {"dockerRepository": format!("{reg}/kubermatic/kubermatic")},
                     "userCluster": {"overwriteRegistry": reg}}}),
        );
        master.put_seed(json!({"metadata": {"namespace": "kubermatic", "name": "hamburg"},
            "spec": {"kubeconfig": {"name": "kubeconfig-hamburg"},
                     "datacenters": {"hh-1": {"node": {"pauseImage": "registry.k8s.io/pause:3.10"}}}}}));
        master.put_secret(
            "kubermatic",
            "kubeconfig-hamburg",
            &[("kubeconfig", seed.kubeconfig_text(TOKEN).as_bytes())],
        );
        for ns in ["default", "shop", "kubermatic", "vault"] {
            master.put(namespace(ns));
        }
        master.put(pod("default", "debug", "nginx:1.27"));
        master.put(deployment(
            "shop",
            "app",
            json!([
            {"name": "app", "image": format!("{reg}/shop/app:v1")},
            {"name": "sidecar", "image": format!("{reg}/shop/sidecar:v9")}]),
        ));
        master.put(json!({"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"namespace": "shop", "name": "report"},
            "spec": {"jobTemplate": {"spec": {"template": {"spec": {
                "initContainers": [{"name": "fetch", "image": "docker.io/curlimages/curl:8.10.1"}],
                "containers": [{"name": "report", "image": format!("{reg}/shop/app:v1")}]}}}}}}));
        // A Pod of the Deployment that cannot pull: its message goes to the template's row.
        let mut stuck = pod("shop", "app-5d9f-x2x", &format!("{reg}/shop/sidecar:v9"));
        stuck["spec"]["containers"][0]["name"] = json!("sidecar");
        stuck["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "app-5d9f", "uid": "u", "controller": true}]);
        stuck["status"] = json!({"containerStatuses": [{"name": "sidecar", "state": {"waiting": {
            "reason": "ImagePullBackOff", "message": "Back-off pulling image \"sidecar:v9\""}}}]});
        master.put(stuck);
        // The kubelet's event about it says why.
        master.put(json!({"apiVersion": "v1", "kind": "Event", "metadata": {"namespace": "shop", "name": "app-5d9f-x2x.1"},
            "involvedObject": {"kind": "Pod", "name": "app-5d9f-x2x", "namespace": "shop"}, "reason": "Failed",
            "lastTimestamp": "2026-12-07T10:00:00Z",
            "message": format!("Failed to pull image \"{reg}/shop/sidecar:v9\": not found")}));
        master.put(deployment(
            "kubermatic",
            "kubermatic-api",
            json!([
            {"name": "api", "image": "quay.io/kubermatic/dashboard:v2.31.0"}]),
        ));
        master.put(deployment(
            "kubermatic",
            "kubermatic-master-controller-manager",
            json!([
            {"name": "controller-manager", "image": format!("{reg}/kubermatic/kubermatic:v2.31.0")}]),
        ));
        master.put(pod("vault", "vault-0", "hashicorp/vault:1.17"));
        let charts = fixtures().join("charts");
        for (dir, release, label) in [
            ("cert-manager", "cert-manager", "cert-manager-v1.20.3"),
            (
                "monitoring/helm-exporter",
                "helm-exporter",
                "helm-exporter-1.2.16",
            ),
            ("umbrella", "umbrella", "umbrella-9.9.9-dev"),
        ] {
            master.put_all(rendered_release(&charts.join(dir), release, label, &values));
        }
        // The namespace `vault` is closed to us, and nothing may be listed cluster-wide.
        for kind in KINDS {
            master.forbid_on(kind, "list", Some(""));
            master.forbid_on(kind, "list", Some("vault"));
        }

        // Seed: a user-cluster control plane and the admin kubeconfig of that user cluster.
        seed.put(
            json!({"apiVersion": "kubermatic.k8c.io/v1", "kind": "Cluster", "metadata": {"name": "abc123"},
                        "status": {"namespaceName": "cluster-abc123"}}),
        );
        seed.put(deployment(
            "cluster-abc123",
            "etcd",
            json!([
            {"name": "etcd-launcher", "image": "quay.io/kubermatic/etcd-launcher:v2.31.0"}]),
        ));
        seed.put(deployment(
            "cluster-abc123",
            "apiserver",
            json!([
            {"name": "apiserver", "image": "registry.k8s.io/kube-apiserver:v1.33.4"}]),
        ));
        seed.put_secret(
            "cluster-abc123",
            "admin-kubeconfig",
            &[("kubeconfig", user.kubeconfig_text(TOKEN).as_bytes())],
        );

        // User cluster: an addon and a user workload.
        user.put(json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"namespace": "kube-system", "name": "kube-proxy", "labels": {"kubermatic-addon": "kube-proxy"}},
            "spec": {"template": {"spec": {"containers": [{"name": "kube-proxy", "image": "registry.k8s.io/kube-proxy:v1.33.4"}]}}}}));
        user.put(deployment(
            "apps",
            "web",
            json!([{"name": "web", "image": "ghcr.io/acme/web:2.0"}]),
        ));

        let kubeconfig = master.kubeconfig(dir.path(), TOKEN);
        Env {
            _dir: dir,
            _master: master,
            _seed: seed,
            _user: user,
            registry,
            kubeconfig,
            values,
            reg,
        }
    }

    fn audit(&self, extra: &[&str]) -> Output {
        Command::new(bin("kubectl-kkp-audit"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args([
                "--registry",
                &self.reg,
                "--insecure-registry",
                &self.registry.host,
            ])
            .args(extra)
            .env("HOME", self._dir.path())
            .env_remove("KUBECONFIG")
            .output()
            .expect("audit runs")
    }

    fn normalise(&self, text: &str) -> String {
        text.replace(&self.registry.host, "REG")
            .replace(&fixtures().display().to_string(), "FIXTURES")
            .replace(&self.values.display().to_string(), "VALUES")
    }
}

fn findings(out: &Output) -> Vec<Value> {
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(out)));
    doc["findings"].as_array().unwrap().clone()
}

fn find<'a>(rows: &'a [Value], cluster: &str, object: &str, container: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["cluster"] == cluster && r["object"] == object && r["container"] == container)
        .unwrap_or_else(|| panic!("no row {cluster} {object} {container} in {rows:#?}"))
}

#[test]
fn audit_finds_every_leak_with_its_knob_and_what_the_mirror_lacks() {
    let env = Env::new();
    let charts = fixtures().join("charts");
    let values = env.values.display().to_string();
    let out = env.audit(&[
        "--user-clusters",
        "-o",
        "json",
        "--charts-path",
        charts.to_str().unwrap(),
        "--helm-values",
        &values,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let rows = findings(&out);

    // User workloads, master side.
    let r = find(&rows, "master", "Pod/debug", "main");
    assert_eq!(r["status"], "leak");
    assert!(
        r["knob"].as_str().unwrap().starts_with("not managed by KKP"),
        "{r}"
    );
    let r = find(&rows, "master", "CronJob/report", "fetch");
    assert_eq!(r["status"], "leak");
    assert_eq!(r["image"], "docker.io/curlimages/curl:8.10.1");
    // Mirrored images are fine; the one the mirror lacks is missing, with the kubelet's message.
    assert!(
        !rows
            .iter()
            .any(|r| r["object"] == "Deployment/app" && r["container"] == "app"),
        "{rows:#?}"
    );
    assert!(
        !rows
            .iter()
            .any(|r| r["object"] == "CronJob/report" && r["container"] == "report")
    );
    let r = find(&rows, "master", "Deployment/app", "sidecar");
    assert_eq!(r["status"], "missing");
    assert_eq!(
        r["message"],
        format!(
            "ImagePullBackOff: Failed to pull image \"{}/shop/sidecar:v9\": not found",
            env.reg
        )
    );

    // KKP's operator-managed Deployment: the configuration field that moves it.
    let r = find(&rows, "master", "Deployment/kubermatic-api", "api");
    assert_eq!(r["knob"], "KubermaticConfiguration spec.api.dockerRepository");
    assert_eq!(
        r["fix"],
        format!("kubectl kkp retarget --registry {} --live", env.reg)
    );
    // The configuration itself: defaults outside the mirror are leaks, the retargeted field is not.
    let r = find(
        &rows,
        "master",
        "KubermaticConfiguration/kubermatic",
        "spec.ui.dockerRepository",
    );
    assert_eq!(r["image"], "quay.io/kubermatic/dashboard");
    assert!(
        !rows
            .iter()
            .any(|r| r["container"] == "spec.masterController.dockerRepository")
    );
    assert!(
        !rows
            .iter()
            .any(|r| r["container"] == "spec.userCluster.overwriteRegistry")
    );
    find(
        &rows,
        "master",
        "KubermaticConfiguration/kubermatic",
        "spec.userCluster.systemApplications.helmRepository",
    );

    // The Seed's node settings.
    let r = find(
        &rows,
        "master",
        "Seed/hamburg",
        "spec.datacenters.hh-1.node.pauseImage",
    );
    assert_eq!(r["status"], "leak");
    assert_eq!(
        r["fix"],
        format!("kubectl kkp seedproxy hh-1 --pause-image {}/pause:3.10", env.reg)
    );
    let r = find(
        &rows,
        "master",
        "Seed/hamburg",
        "spec.datacenters.hh-1.node.insecureRegistries",
    );
    assert_eq!(r["status"], "misconfigured");
    assert_eq!(
        find(
            &rows,
            "master",
            "Seed/hamburg",
            "spec.datacenters.hh-1.node.httpProxy"
        )["status"],
        "note"
    );

    // The forbidden namespace is a row; the rest was audited.
    let r = rows
        .iter()
        .find(|r| r["status"] == "not-audited" && r["namespace"] == "vault")
        .expect("vault row");
    assert!(
        r["knob"].as_str().unwrap().contains("forbidden to list pods"),
        "{r}"
    );
    assert!(!rows.iter().any(|r| r["object"] == "Pod/vault-0"));

    // Seed cluster (through the Seed's Secret) and user cluster (through admin-kubeconfig).
    let r = find(&rows, "seed hamburg", "Deployment/etcd", "etcd-launcher");
    assert_eq!(
        r["knob"],
        "KubermaticConfiguration spec.userCluster.etcdLauncherDockerRepository"
    );
    let r = find(&rows, "seed hamburg", "Deployment/apiserver", "apiserver");
    assert_eq!(
        r["knob"],
        "KubermaticConfiguration spec.userCluster.overwriteRegistry"
    );
    let r = find(&rows, "user cluster abc123", "DaemonSet/kube-proxy", "kube-proxy");
    assert_eq!(
        r["knob"],
        "addon kube-proxy: KubermaticConfiguration spec.userCluster.overwriteRegistry"
    );
    let r = find(&rows, "user cluster abc123", "Deployment/web", "web");
    assert!(
        r["knob"].as_str().unwrap().starts_with("not managed by KKP"),
        "{r}"
    );

    // Every leak has a knob; the chart objects name the values key retarget sets.
    for r in rows.iter().filter(|r| r["status"] == "leak") {
        assert!(!r["knob"].as_str().unwrap().is_empty(), "{r}");
    }
    let set = Command::new(bin("kubectl-kkp-retarget"))
        .args([
            "--registry",
            &env.reg,
            "--charts-path",
            charts.to_str().unwrap(),
            "--helm-values",
            &values,
            "-o",
            "set",
        ])
        .output()
        .unwrap();
    assert!(set.status.success(), "{}", show(&set));
    let set = String::from_utf8(set.stdout).unwrap();
    let helm_rows: Vec<&Value> = rows
        .iter()
        .filter(|r| r["knob"].as_str().unwrap().starts_with("Helm release"))
        .collect();
    assert!(helm_rows.len() >= 3, "{rows:#?}");
    for r in helm_rows {
        let knob = r["knob"].as_str().unwrap();
        let Some(key) = knob.split(", values key ").nth(1) else {
            panic!("no values key: {r}");
        };
        assert!(
            set.contains(&format!("--set {key}=")),
            "{key} is not what retarget sets:\n{set}"
        );
    }

    // No Secret content reaches the output.
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains(TOKEN), "a kubeconfig token was printed");

    // The table, as people see it.
    let out = env.audit(&[
        "--user-clusters",
        "--charts-path",
        charts.to_str().unwrap(),
        "--helm-values",
        &values,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    insta::assert_snapshot!(
        "audit_table",
        env.normalise(&String::from_utf8_lossy(&out.stdout))
    );
}

#[test]
fn audit_exit_codes_clean_allowed_and_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start_with(crate::support::registry::Options {
        access_log: true,
        ..Default::default()
    });
    let reg = format!("{}/kkp", registry.host);
    block_on(async {
        let client = client_for(&[&registry]);
        push_image(&client, &registry, "kkp/shop/app", "v1", &Spec::default()).await;
    });
    let server = ApiServer::start(TOKEN);
    server.put(deployment(
        "shop",
        "app",
        json!([{"name": "app", "image": format!("{reg}/shop/app:v1")}]),
    ));
    server.put(pod("shop", "tool", "docker.io/library/busybox:1.37"));
    server.put(pod("shop", "app-standalone", &format!("{reg}/shop/app:v1")));
    server.put(pod("batch", "app-once", &format!("{reg}/shop/app:v1")));
    let kc = server.kubeconfig(dir.path(), TOKEN);
    let run = |extra: &[&str]| {
        Command::new(bin("kubectl-kkp-audit"))
            .arg("--kubeconfig")
            .arg(&kc)
            .args(["--registry", &reg, "--insecure-registry", &registry.host])
            .args(extra)
            .output()
            .unwrap()
    };
    // The busybox leaks (no configuration: that part is not audited, not a failure).
    let out = run(&["-o", "json", "--page-size", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    // Paged: one object per LIST, continued; the mirror asked once for the image three objects use.
    let pages = server
        .seen()
        .iter()
        .filter(|s| s.target.contains("/pods?") && s.target.contains("continue="))
        .count();
    assert_eq!(
        pages,
        2,
        "{:#?}",
        server.seen().iter().map(|s| &s.target).collect::<Vec<_>>()
    );
    let heads: Vec<String> = registry
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("HEAD ") && r.contains("/manifests/"))
        .collect();
    assert_eq!(
        heads,
        ["HEAD /v2/kkp/shop/app/manifests/v1"],
        "{:?}",
        registry.requests()
    );
    let rows = findings(&out);
    assert_eq!(
        rows.iter().filter(|r| r["status"] == "leak").count(),
        1,
        "{rows:#?}"
    );
    assert!(
        rows.iter()
            .any(|r| r["status"] == "not-audited" && r["object"] == "KubermaticConfiguration")
    );
    // The same findings as YAML.
    let out = run(&["-o", "yaml"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let doc: Value = serde_saphyr::from_str(&String::from_utf8_lossy(&out.stdout)).expect("the YAML parses");
    assert_eq!(doc["summary"]["leaks"], 1, "{doc}");
    assert_eq!(doc["findings"].as_array().unwrap().len(), rows.len());
    // Allowed: clean, exit 0, and the summary says what was looked at.
    let out = run(&["--allow", "docker.io/library/*"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1 clusters, 4 objects, 2 images: 0 leaks, 0 missing"),
        "{text}"
    );
    // The same through kubectl's plugin discovery and the dispatcher: `kubectl kkp audit`.
    let path_dir = tempfile::tempdir().unwrap();
    for tool in ["kubectl-kkp", "kubectl-kkp-audit"] {
        std::os::unix::fs::symlink(bin(tool), path_dir.path().join(tool)).unwrap();
    }
    let kubectl_dir = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|d| d.join("kubectl").is_file())
        .expect("kubectl is installed (a test peer)");
    let path = std::env::join_paths([
        path_dir.path().to_path_buf(),
        kubectl_dir,
        "/usr/bin".into(),
        "/bin".into(),
    ])
    .unwrap();
    let out = Command::new("kubectl")
        .args(["kkp", "audit", "--kubeconfig"])
        .arg(&kc)
        .args([
            "--registry",
            &reg,
            "--insecure-registry",
            &registry.host,
            "--allow",
            "docker.io/library/*",
        ])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 leaks, 0 missing"),
        "{}",
        show(&out)
    );
    let out = Command::new("kubectl")
        .args(["kkp", "audit", "--kubeconfig"])
        .arg(&kc)
        .args(["--registry", &reg, "--insecure-registry", &registry.host])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "the exit code passes through: {}",
        show(&out)
    );

    // A master that does not answer is an error, not a finding.
    drop(server);
    let out = run(&[]);
    assert!(out.status.code().unwrap_or(0) > 1, "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("error: "),
        "{}",
        show(&out)
    );
}

#[test]
fn an_unanswering_seed_cluster_is_not_audited_and_the_rest_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let master = ApiServer::start(TOKEN);
    // A port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let kc = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: d\n  cluster:\n    server: http://{dead}\nusers:\n- name: u\n  user:\n    token: hunter2\ncontexts:\n- name: d\n  context:\n    cluster: d\n    user: u\ncurrent-context: d\n"
    );
    master.put_seed(json!({"metadata": {"namespace": "kubermatic", "name": "gone"},
        "spec": {"kubeconfig": {"name": "kc-gone"}, "datacenters": {}}}));
    master.put_secret("kubermatic", "kc-gone", &[("kubeconfig", kc.as_bytes())]);
    master.put_seed(json!({"metadata": {"namespace": "kubermatic", "name": "locked"},
        "spec": {"kubeconfig": {"name": "kc-locked", "namespace": "locked"}, "datacenters": {}}}));
    master.put_secret("locked", "kc-locked", &[("kubeconfig", kc.as_bytes())]);
    // A server that accepts connections and never answers: the per-cluster timeout ends it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in silent.incoming().flatten() {
            held.push(c);
        }
    });
    master.put_seed(json!({"metadata": {"namespace": "kubermatic", "name": "mute"},
        "spec": {"kubeconfig": {"name": "kc-mute"}, "datacenters": {}}}));
    master.put_secret(
        "kubermatic",
        "kc-mute",
        &[(
            "kubeconfig",
            kc.replace(&dead.to_string(), &silent_addr.to_string()).as_bytes(),
        )],
    );
    master.forbid_on("secrets", "get", Some("locked"));
    master.put(pod("default", "p", "nginx:1.27"));
    let out = Command::new(bin("kubectl-kkp-audit"))
        .arg("--kubeconfig")
        .arg(master.kubeconfig(dir.path(), TOKEN))
        .args([
            "--registry",
            "reg.example/kkp",
            "--no-mirror-check",
            "-o",
            "json",
            "--cluster-timeout",
            "2s",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let rows = findings(&out);
    let not: Vec<&Value> = rows.iter().filter(|r| r["status"] == "not-audited").collect();
    assert!(
        not.iter()
            .any(|r| r["cluster"] == "seed gone" && r["knob"].as_str().unwrap().contains("refused")),
        "{not:#?}"
    );
    assert!(
        not.iter().any(|r| r["cluster"] == "seed mute"
            && r["knob"].as_str().unwrap().contains("did not answer within 2s")),
        "{not:#?}"
    );
    assert!(
        not.iter()
            .any(|r| r["cluster"] == "seed locked" && r["knob"].as_str().unwrap().contains("forbidden")),
        "{not:#?}"
    );
    assert!(
        rows.iter()
            .any(|r| r["object"] == "Pod/p" && r["status"] == "leak")
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("hunter2"));
}

/// The benchmark's API server (`benches/bench-audit.sh`): 5,000 Pods in 200 namespaces, 100 distinct
/// images (half under the registry `reg.bench/kkp`), two containers each. Writes `kubeconfig` and then
/// `ready` into `$KKP_BENCH_DIR` and serves until `$KKP_BENCH_DIR/done` appears.
#[test]
#[ignore = "the API server of benches/bench-audit.sh; needs KKP_BENCH_DIR"]
fn bench_audit_apiserver() {
    let dir = std::path::PathBuf::from(std::env::var("KKP_BENCH_DIR").expect("KKP_BENCH_DIR"));
    // HTTPS: kubectl sends a bearer token only over TLS.
    let server = ApiServer::start_tls(TOKEN);
    let image = |i: usize| {
        if i.is_multiple_of(2) {
            format!("reg.bench/kkp/team-{}/app-{i}:v{}", i % 7, i % 5)
        } else {
            format!("quay.io/team-{}/app-{i}:v{}", i % 7, i % 5)
        }
    };
    server.put_all((0..200).map(|n| namespace(&format!("ns-{n:03}"))));
    server.put_all((0..5000).map(|p| {
        let mut pod = pod(
            &format!("ns-{:03}", p % 200),
            &format!("pod-{p:05}"),
            &image(p % 100),
        );
        pod["metadata"]["labels"] =
            json!({"app": format!("app-{}", p % 100), "pod-template-hash": "5d9f7c8b6"});
        pod["spec"]["initContainers"] = json!([{"name": "init", "image": image((p + 37) % 100),
            "command": ["sh", "-c", "true"], "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]);
        pod["status"] = json!({"phase": "Running", "podIP": "10.0.0.1",
            "containerStatuses": [{"name": "main", "ready": true, "restartCount": 0,
                                   "state": {"running": {"startedAt": "2026-12-01T00:00:00Z"}}}]});
        pod
    }));
    server.kubeconfig(&dir, TOKEN);
    std::fs::write(dir.join("ready"), server.url()).unwrap();
    while !dir.join("done").exists() {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The user-cluster control-plane images KKP v2.31.0's reconcilers produce (its own fixtures, listed in
/// `tests/fixtures/kkp/control-plane-fixture-images.txt`), running in a `cluster-*` namespace of a seed
/// whose configuration `retarget` has already rewritten (the Pods predate the rollout): each leak names
/// a KubermaticConfiguration field that `retarget` set under the registry.
#[test]
fn control_plane_images_of_the_catalog_name_the_field_retarget_sets() {
    let dir = tempfile::tempdir().unwrap();
    let reg = "reg.example:5000/kkp";
    // What retarget makes of a bare configuration.
    let config = dir.path().join("kubermatic.yaml");
    std::fs::write(
        &config,
        "apiVersion: kubermatic.k8c.io/v1\nkind: KubermaticConfiguration\nmetadata:\n  name: kubermatic\n  namespace: kubermatic\nspec:\n  ingress:\n    domain: kkp.example.com\n",
    )
    .unwrap();
    let out = Command::new(bin("kubectl-kkp-retarget"))
        .args(["--registry", reg, "--config"])
        .arg(&config)
        .arg("--yes")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let retargeted: Value = kkp_shared::yamledit::load_data(&std::fs::read_to_string(&config).unwrap())
        .unwrap()
        .remove(0);
    let set_by_retarget = |field: &str| {
        field
            .split('.')
            .try_fold(&retargeted, |v, k| v.get(k))
            .and_then(Value::as_str)
            .is_some_and(|v| v.starts_with(reg))
    };

    let master = ApiServer::start(TOKEN);
    let seed = ApiServer::start(TOKEN);
    master.put_kkp(retargeted.clone());
    master.put_seed(json!({"metadata": {"namespace": "kubermatic", "name": "s"},
        "spec": {"kubeconfig": {"name": "kc"}, "datacenters": {}}}));
    master.put_secret(
        "kubermatic",
        "kc",
        &[("kubeconfig", seed.kubeconfig_text(TOKEN).as_bytes())],
    );
    let text = std::fs::read_to_string(fixtures().join("kkp/control-plane-fixture-images.txt")).unwrap();
    let mut images: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    images.sort();
    images.dedup();
    assert!(images.len() > 30, "{images:?}");
    seed.put_all(images.iter().enumerate().map(|(i, image)| {
        deployment(
            "cluster-xyz",
            &format!("component-{i}"),
            json!([{"name": "c", "image": image}]),
        )
    }));
    let out = Command::new(bin("kubectl-kkp-audit"))
        .arg("--kubeconfig")
        .arg(master.kubeconfig(dir.path(), TOKEN))
        .args(["--registry", reg, "--no-mirror-check", "-o", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let rows = findings(&out);
    // The configuration itself is clean after retarget.
    assert!(
        !rows
            .iter()
            .any(|r| r["object"] == "KubermaticConfiguration/kubermatic"),
        "{rows:#?}"
    );
    let mut by_field = std::collections::BTreeMap::<String, usize>::new();
    for image in &images {
        let r = rows
            .iter()
            .find(|r| r["cluster"] == "seed s" && r["image"] == *image)
            .unwrap_or_else(|| panic!("{image} not reported"));
        let knob = r["knob"].as_str().unwrap();
        let field = knob
            .strip_prefix("KubermaticConfiguration ")
            .unwrap_or_else(|| panic!("{image}: {knob}"));
        assert!(
            set_by_retarget(field),
            "{image}: {field} is not a field retarget set"
        );
        assert_eq!(r["fix"], format!("kubectl kkp retarget --registry {reg} --live"));
        *by_field.entry(field.to_string()).or_default() += 1;
    }
    let find_image = |prefix: &str| {
        rows.iter()
            .find(|r| r["image"].as_str().unwrap().starts_with(prefix))
            .map(|r| r["knob"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(
        find_image("quay.io/kubermatic/etcd-launcher:"),
        "KubermaticConfiguration spec.userCluster.etcdLauncherDockerRepository"
    );
    assert_eq!(
        find_image("quay.io/kubermatic/kubermatic:"),
        "KubermaticConfiguration spec.userCluster.kubermaticDockerRepository"
    );
    assert_eq!(
        find_image("registry.k8s.io/kube-apiserver:"),
        "KubermaticConfiguration spec.userCluster.overwriteRegistry"
    );
    assert!(by_field.len() >= 3, "{by_field:?}");

    // A plain-HTTP mirror: KKP must be told so for the system Applications' charts. The audit says which
    // retarget flag does it, and after that retarget run the configuration is clean again.
    let audit_config_rows = || {
        let out = Command::new(bin("kubectl-kkp-audit"))
            .arg("--kubeconfig")
            .arg(master.kubeconfig(dir.path(), TOKEN))
            .args([
                "--registry",
                reg,
                "--no-mirror-check",
                "--seeds=false",
                "-o",
                "json",
            ])
            .args(["--insecure-registry", "reg.example:5000"])
            .output()
            .unwrap();
        findings(&out)
            .into_iter()
            .filter(|r| r["object"] == "KubermaticConfiguration/kubermatic")
            .map(|r| {
                (
                    r["status"].as_str().unwrap().to_string(),
                    r["container"].as_str().unwrap().to_string(),
                    r["fix"].as_str().unwrap().to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    let rows = audit_config_rows();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "misconfigured");
    assert_eq!(rows[0].1, "spec.userCluster.systemApplications.plainHTTP");
    assert!(rows[0].2.contains("--live --plain-http"), "{rows:?}");
    let out = Command::new(bin("kubectl-kkp-retarget"))
        .args(["--registry", reg, "--plain-http", "--yes", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let mut fixed: Value = kkp_shared::yamledit::load_data(&std::fs::read_to_string(&config).unwrap())
        .unwrap()
        .remove(0);
    fixed["metadata"]["resourceVersion"] =
        master.kkp("kubermatic", "kubermatic").unwrap()["metadata"]["resourceVersion"].clone();
    master.put_kkp(fixed);
    assert_eq!(audit_config_rows(), Vec::<(String, String, String)>::new());
}

/// Issue 20 on a real KKP release (`scripts/check-kkp-release.sh` runs it): every chart of the values
/// file's installer stack rendered by `helm template` with the stock values (an install not yet
/// retargeted) and stored as installed releases; `audit --charts-path --helm-values` must name, for every
/// leaked chart image, the values key that `retarget -o set` sets, except the images no values key sets
/// (`KKP_HARD_CODED`: space-separated `--allow-leak` patterns, e.g. local-kubevirt's).
#[test]
#[ignore = "needs KKP_CHARTS_DIR and KKP_VALUES (a KKP release's charts and one of its values files)"]
fn audit_names_the_key_retarget_sets_for_every_chart_image_of_a_kkp_release() {
    let charts = std::path::PathBuf::from(std::env::var("KKP_CHARTS_DIR").expect("KKP_CHARTS_DIR"));
    let values = std::path::PathBuf::from(std::env::var("KKP_VALUES").expect("KKP_VALUES"));
    let hard_coded: Vec<String> = std::env::var("KKP_HARD_CODED")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let reg = "reg.example:5000/kkp";
    let text = std::fs::read_to_string(&values).unwrap();
    let stack = kkp_shared::knobs::stacks::detect(&[(values.clone(), text)]).unwrap();
    let (dirs, _) = kkp_shared::knobs::stacks::select(&charts, stack).unwrap();

    let master = ApiServer::start(TOKEN);
    let mut objects = 0;
    for dir in &dirs {
        let chart =
            kkp_shared::yamledit::load_data(&std::fs::read_to_string(dir.join("Chart.yaml")).unwrap())
                .unwrap()
                .remove(0);
        let name = chart["name"].as_str().unwrap();
        let label = format!("{name}-{}", chart["version"].as_str().unwrap());
        let release = dir.file_name().unwrap().to_str().unwrap();
        let rendered = rendered_release(dir, release, &label, &values);
        objects += rendered.len();
        master.put_all(rendered);
    }
    assert!(objects > 20, "only {objects} workload objects rendered");

    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin("kubectl-kkp-audit"))
        .arg("--kubeconfig")
        .arg(master.kubeconfig(dir.path(), TOKEN))
        .args([
            "--registry",
            reg,
            "--no-mirror-check",
            "--seeds=false",
            "-o",
            "json",
        ])
        .arg("--charts-path")
        .arg(&charts)
        .arg("--helm-values")
        .arg(&values)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let rows = findings(&out);

    let set = Command::new(bin("kubectl-kkp-retarget"))
        .args(["--registry", reg, "-o", "set", "--allow-leak", "*"])
        .arg("--charts-path")
        .arg(&charts)
        .arg("--helm-values")
        .arg(&values)
        .output()
        .unwrap();
    assert!(set.status.success(), "{}", show(&set));
    let set = String::from_utf8(set.stdout).unwrap();

    let glob = |p: &str, s: &str| kkp_shared::knobs::glob_match(p, s);
    let (mut keyed, mut hard, mut wrong) = (0, 0, Vec::new());
    for r in rows.iter().filter(|r| r["status"] == "leak") {
        let image = r["image"].as_str().unwrap();
        let knob = r["knob"].as_str().unwrap();
        match knob.split(", values key ").nth(1) {
            Some(key) if set.contains(&format!("--set {key}=")) => keyed += 1,
            _ if hard_coded.iter().any(|p| glob(p, image)) => hard += 1,
            _ => wrong.push(format!("{} {}: {image}: {knob}", r["object"], r["container"])),
        }
    }
    eprintln!(
        "{} charts, {objects} objects: {keyed} leaks name the key retarget sets, {hard} hard-coded",
        dirs.len()
    );
    assert!(keyed > 10, "{rows:#?}");
    assert!(
        wrong.is_empty(),
        "leaks without the key retarget sets:\n{}",
        wrong.join("\n")
    );
}

/// A mirror behind basic auth is asked with `--username` / `--password-stdin`, as `mirror` pushes to it:
/// the image it holds is fine, the one it lacks is missing. Without the credentials the mirror cannot be
/// asked, and the audit says so instead of calling the images missing; the password is never printed.
#[test]
fn a_mirror_behind_basic_auth_is_asked_with_the_credentials_mirror_takes() {
    use std::io::Write as _;
    let registry = Registry::start_with(crate::support::registry::Options {
        htpasswd: Some(("kkp".into(), "s3cret-pass".into())),
        ..Default::default()
    });
    let client = client_for(&[&registry]);
    block_on(push_image(&client, &registry, "kkp/app", "v1", &Spec::default()));
    let master = ApiServer::start(TOKEN);
    let reg = format!("{}/kkp", registry.host);
    master.put(deployment(
        "shop",
        "app",
        json!([{"name": "a", "image": format!("{reg}/app:v1")}, {"name": "b", "image": format!("{reg}/app:v2")}]),
    ));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = master.kubeconfig(dir.path(), TOKEN);
    let audit = |extra: &[&str], stdin: &str| {
        let mut child = Command::new(bin("kubectl-kkp-audit"))
            .env("HOME", dir.path())
            .env_remove("DOCKER_CONFIG")
            .env_remove("REGISTRY_AUTH_FILE")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--registry", &reg, "--seeds=false", "-o", "json"])
            .args(extra)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!all.contains("s3cret-pass"), "the password was printed: {all}");
        // The Deployment's rows (the master has no KubermaticConfiguration or Seeds here: a row of its own).
        let rows: Vec<(String, String)> = findings(&out)
            .iter()
            .filter(|r| r["object"] == "Deployment/app")
            .map(|r| {
                (
                    r["status"].as_str().unwrap().to_string(),
                    r["container"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        (out.status.code(), rows)
    };
    let (code, rows) = audit(&["--username", "kkp", "--password-stdin"], "s3cret-pass\n");
    assert_eq!(code, Some(1));
    assert_eq!(rows, [("missing".to_string(), "b".to_string())]);
    // Not asked is not missing: "not audited" rows, which (as partial access) do not fail the run.
    let (code, rows) = audit(&[], "");
    assert_eq!(code, Some(0));
    assert_eq!(
        rows,
        [
            ("not-audited".to_string(), "a".to_string()),
            ("not-audited".to_string(), "b".to_string())
        ]
    );
}
