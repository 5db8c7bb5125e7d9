//! `kubectl kkp mirror --live` against the loopback API server, and the generic store of that server
//! (discovery, pagination, per-resource denials) checked with real `kubectl`.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::support::apiserver::{ApiServer, Resource, Scope};

const TOKEN: &str = "live-token-7f3a9c";

fn kubectl(kubeconfig: &Path, home: &Path, args: &[&str]) -> Output {
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env("HOME", home)
        .env("KUBECACHEDIR", home.join("cache"))
        .env_remove("KUBECONFIG")
        .output()
        .expect("kubectl runs")
}

fn pod(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": ns, "name": name},
           "spec": {"containers": [{"name": "c", "image": format!("quay.io/x/{name}:1")}]}})
}

#[test]
fn the_test_server_serves_any_resource_to_real_kubectl() {
    // kubectl sends tokens only over TLS. It discovers Pods, Deployments and a registered custom resource,
    // pages through a LIST across namespaces in chunks of 2, and reads the RBAC denial as the real one.
    let server = ApiServer::start_tls(TOKEN);
    let dir = tempfile::tempdir().unwrap();
    let kc = server.kubeconfig(dir.path(), TOKEN);
    server.put_all((0..5).map(|i| pod(if i % 2 == 0 { "a" } else { "b" }, &format!("p{i}"))));
    server.put(json!({"apiVersion": "apps/v1", "kind": "Deployment",
                      "metadata": {"namespace": "a", "name": "web"}, "spec": {"replicas": 1}}));
    server.register(Resource::new(
        "example.org/v1beta1",
        "widgets",
        "Widget",
        Scope::Cluster,
    ));
    server.put(json!({"apiVersion": "example.org/v1beta1", "kind": "Widget", "metadata": {"name": "w1"}}));

    let out = kubectl(
        &kc,
        dir.path(),
        &["get", "pods", "-A", "--chunk-size=2", "-o", "json"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["p0", "p2", "p4", "p1", "p3"]);
    let pages = server
        .seen()
        .iter()
        .filter(|s| s.target.starts_with("/api/v1/pods?"))
        .count();
    assert_eq!(pages, 3, "5 pods in chunks of 2");

    let out = kubectl(&kc, dir.path(), &["-n", "b", "get", "pods", "-o", "json"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 2);

    let out = kubectl(
        &kc,
        dir.path(),
        &["-n", "a", "get", "deploy", "web", "-o", "json"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = kubectl(&kc, dir.path(), &["get", "widgets", "w1", "-o", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let w: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(w["metadata"]["uid"], "uid-w1");

    server.forbid_on("pods", "list", Some("b"));
    let out = kubectl(&kc, dir.path(), &["-n", "a", "get", "pods", "-o", "name"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = kubectl(&kc, dir.path(), &["-n", "b", "get", "pods"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "pods is forbidden: User \"tester\" cannot list resource \"pods\" in API group \"\" in the namespace \"b\""
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.forbid_on("widgets", "get", None);
    let out = kubectl(&kc, dir.path(), &["get", "widgets", "w1"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "widgets.example.org \"w1\" is forbidden: User \"tester\" cannot get resource \"widgets\" in API group \"example.org\" at the cluster scope"
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    server.put_secret("a", "s", &[("token", b"sekret")]);
    let out = kubectl(
        &kc,
        dir.path(),
        &["-n", "a", "get", "secret", "s", "-o", "jsonpath={.data.token}"],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "c2VrcmV0");
}

#[test]
fn the_test_server_lists_thousands_in_pages_without_rescanning() {
    // 5000 pods, 10 namespaces: a namespace's list and a paged list across all of them return each pod once.
    let server = ApiServer::start(TOKEN);
    server.put_all((0..5000).map(|i| pod(&format!("ns{}", i % 10), &format!("p{i:05}"))));
    let get = |target: &str| -> Value {
        use std::io::{Read, Write};
        let addr = server.url().trim_start_matches("http://").to_string();
        let mut conn = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            conn,
            "GET {target} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        conn.shutdown(std::net::Shutdown::Write).unwrap();
        let mut resp = String::new();
        conn.read_to_string(&mut resp).unwrap();
        serde_json::from_str(resp.split_once("\r\n\r\n").unwrap().1).unwrap()
    };
    assert_eq!(
        get("/api/v1/namespaces/ns3/pods")["items"]
            .as_array()
            .unwrap()
            .len(),
        500
    );
    let mut seen = 0;
    let mut token = String::new();
    loop {
        let page = get(&format!("/api/v1/pods?limit=700&continue={token}"));
        seen += page["items"].as_array().unwrap().len();
        match page["metadata"]["continue"].as_str() {
            Some(t) => token = t.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, 5000);
    assert_eq!(get("/api/v1/pods?continue=zz")["code"], 400);
}

// ---- `kubectl kkp mirror --live` -------------------------------------------------------------------

const NS: &str = "kubermatic";
const PAUSE: &str = "registry.corp:5000/pause:3.10";

/// A master with a KubermaticConfiguration (status: v2.31.0, EE), Seeds whose datacenters use hetzner,
/// openstack and aws, and a kubeconfig Secret for Seed frankfurt that points back at the same server,
/// which holds the user Clusters (one on Kubernetes 1.31.4, older than anything the configuration offers).
struct Live {
    server: ApiServer,
    dir: tempfile::TempDir,
    kubeconfig: std::path::PathBuf,
}

impl Live {
    fn new() -> Live {
        let server = ApiServer::start(TOKEN);
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = server.kubeconfig(dir.path(), TOKEN);
        server.put_kkp(json!({
            "metadata": {"namespace": NS, "name": "kubermatic"},
            "spec": {"versions": {"versions": ["1.34.2", "1.35.7"]}},
            "status": {"kubermaticVersion": "v2.31.0", "kubermaticEdition": "Enterprise Edition"},
        }));
        server.put_seed(json!({
            "metadata": {"namespace": NS, "name": "hamburg"},
            "spec": {"datacenters": {
                "hamburg-1": {"location": "Hamburg", "spec": {"hetzner": {"datacenter": "nbg1-dc3"}}},
                "hamburg-2": {"location": "Hamburg 2", "node": {"pauseImage": PAUSE},
                              "spec": {"openstack": {"authURL": "https://keystone.corp:5000/v3"}}},
            }},
        }));
        server.put_seed(json!({
            "metadata": {"namespace": NS, "name": "frankfurt"},
            "spec": {"kubeconfig": {"name": "kubeconfig-frankfurt"},
                     "datacenters": {"fra-1": {"location": "Frankfurt", "spec": {"aws": {"region": "eu-central-1"}}}}},
        }));
        server.put_secret(
            NS,
            "kubeconfig-frankfurt",
            &[("kubeconfig", server.kubeconfig_text(TOKEN).as_bytes())],
        );
        server.put(json!({
            "apiVersion": "kubermatic.k8c.io/v1", "kind": "Cluster", "metadata": {"name": "abc123"},
            "spec": {"version": "1.31.4", "cloud": {"dc": "fra-1", "providerName": "aws", "aws": {}}},
        }));
        Live {
            server,
            dir,
            kubeconfig,
        }
    }

    fn mirror(&self, args: &[&str]) -> Output {
        Command::new(crate::support::bin("kubectl-kkp-mirror"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .env_remove("KUBECONFIG")
            .env("HOME", self.dir.path())
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    }
}

const PLAN: &[&str] = &["--live", "--dry-run", "--offline", "-o", "json"];

fn plan(out: &Output) -> Value {
    assert_eq!(out.status.code(), Some(0), "{}", crate::support::show(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sources(plan: &Value) -> Vec<String> {
    plan["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["source"].as_str().unwrap().to_string())
        .collect()
}

fn facts(plan: &Value, fact: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = plan["live"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["fact"] == fact)
        .map(|f| {
            (
                f["value"].as_str().unwrap().into(),
                f["from"].as_str().unwrap().into(),
            )
        })
        .collect();
    v.sort();
    v
}

fn has(images: &[String], prefix: &str) -> bool {
    images.iter().any(|i| i.starts_with(prefix))
}

#[test]
fn live_plans_the_providers_versions_and_pause_image_the_install_runs() {
    let env = Live::new();
    let out = env.mirror(PLAN);
    let plan = plan(&out);
    let images = sources(&plan);
    // The Seeds' providers only.
    for ccm in [
        "hcloud-cloud-controller-manager",
        "openstack-cloud-controller-manager",
        "provider-aws/cloud-controller-manager",
    ] {
        assert!(images.iter().any(|i| i.contains(ccm)), "{ccm} missing");
    }
    for other in [
        "azure-cloud-controller-manager",
        "cloud-provider-gcp",
        "kubevirt",
        "anexia",
        "vsphere",
    ] {
        assert!(!images.iter().any(|i| i.contains(other)), "{other} planned");
    }
    // The configuration's versions plus the one a user cluster runs, and no other.
    let apiservers: Vec<&String> = images
        .iter()
        .filter(|i| i.starts_with("registry.k8s.io/kube-apiserver:"))
        .collect();
    assert_eq!(
        apiservers,
        [
            "registry.k8s.io/kube-apiserver:v1.31.4",
            "registry.k8s.io/kube-apiserver:v1.34.2",
            "registry.k8s.io/kube-apiserver:v1.35.7"
        ]
    );
    // The Seed's pause image, with where it came from.
    let pause = plan["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["source"] == PAUSE)
        .expect("pause image planned");
    assert_eq!(
        pause["origins"][0]["name"],
        "live: Seed hamburg, datacenter hamburg-2"
    );
    assert_eq!(
        pause["origins"][0]["field"],
        "spec.datacenters.hamburg-2.node.pauseImage"
    );
    // Release and edition from the configuration's status (EE adds the -ee images).
    assert_eq!(
        facts(&plan, "release"),
        [(
            "v2.31.0".into(),
            "live: KubermaticConfiguration kubermatic/kubermatic, status.kubermaticVersion".into()
        )]
    );
    assert_eq!(
        facts(&plan, "edition"),
        [(
            "ee".into(),
            "live: KubermaticConfiguration kubermatic/kubermatic, status.kubermaticEdition".into()
        )]
    );
    assert!(
        has(&images, "quay.io/kubermatic/kubermatic-ee:v2.31.0"),
        "{images:?}"
    );
    assert_eq!(
        facts(&plan, "kubernetes"),
        [("1.31.4".into(), "live: Cluster abc123 on Seed frankfurt".into())]
    );
    let providers: Vec<(String, String)> = facts(&plan, "provider");
    assert!(providers.contains(&(
        "hetzner".into(),
        "live: Seed hamburg, datacenter hamburg-1".into()
    )));
    assert!(providers.contains(&("aws".into(), "live: Cluster abc123 on Seed frankfurt".into())));
    // Read-only, and the Secret's token is never printed.
    assert!(env.server.seen().iter().all(|s| s.method == "GET"));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains(TOKEN), "the token leaked");
    let verbose = env.mirror(&[PLAN, &["-vv"]].concat());
    assert!(
        !String::from_utf8_lossy(&verbose.stderr).contains(TOKEN),
        "the token leaked with -vv"
    );

    // Flags override the status; --provider-filter overrides the Seeds.
    let plan = self::plan(&env.mirror(&[PLAN, &["--edition", "ce", "--provider-filter", "azure"]].concat()));
    let images = sources(&plan);
    assert!(!has(&images, "quay.io/kubermatic/kubermatic-ee:"));
    assert!(
        images
            .iter()
            .any(|i| i.contains("azure-cloud-controller-manager"))
    );
    assert!(
        !images
            .iter()
            .any(|i| i.contains("hcloud-cloud-controller-manager"))
    );
    assert_eq!(facts(&plan, "edition"), [("ce".into(), "--edition".into())]);
}

fn one_line_error(out: &Output, code: i32, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{}", crate::support::show(out));
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains(needle), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn live_refusals_name_the_resource_and_verb_in_one_line() {
    let env = Live::new();
    env.server.forbid_on("seeds", "list", Some(NS));
    one_line_error(
        &env.mirror(PLAN),
        1,
        "seeds.kubermatic.k8c.io is forbidden: User \"tester\" cannot list resource \"seeds\" in API group \"kubermatic.k8c.io\" in the namespace \"kubermatic\"",
    );

    // The Seed's Secret unreadable: its clusters are skipped with a warning, unless --seeds demands them.
    let env = Live::new();
    env.server.forbid_on("secrets", "get", None);
    let out = env.mirror(PLAN);
    let plan = plan(&out);
    assert_eq!(facts(&plan, "kubernetes"), []);
    assert!(!has(&sources(&plan), "registry.k8s.io/kube-apiserver:v1.31.4"));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Seed frankfurt: its user clusters were not read"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    one_line_error(
        &env.mirror(&[PLAN, &["--seeds"]].concat()),
        1,
        "secrets \"kubeconfig-frankfurt\" is forbidden: User \"tester\" cannot get resource \"secrets\" in API group \"\" in the namespace \"kubermatic\"",
    );
    let plan = self::plan(&env.mirror(&[PLAN, &["--seeds=false"]].concat()));
    assert_eq!(facts(&plan, "kubernetes"), []);

    // A Secret without a kubeconfig: named, its contents not shown.
    let env = Live::new();
    env.server.put_secret(
        NS,
        "kubeconfig-frankfurt",
        &[("kubeconfig", b"token: hunter2-secret\n")],
    );
    let out = env.mirror(PLAN);
    one_line_error(
        &out,
        1,
        "Seed frankfurt: Secret kubermatic/kubeconfig-frankfurt key \"kubeconfig\"",
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("hunter2"));
}

#[test]
fn live_release_must_be_embedded_unless_the_flag_says_otherwise() {
    let env = Live::new();
    let mut kkp = env.server.kkp(NS, "kubermatic").unwrap();
    kkp["status"]["kubermaticVersion"] = json!("v2.28.4");
    env.server.put_kkp(kkp);
    one_line_error(
        &env.mirror(PLAN),
        1,
        "live: KubermaticConfiguration kubermatic/kubermatic runs KKP v2.28.4 (status.kubermaticVersion), which has no embedded catalog",
    );
    let forced = plan(&env.mirror(&[PLAN, &["--kkp-version", "v2.31.0"]].concat()));
    assert_eq!(
        facts(&forced, "release"),
        [("v2.31.0".into(), "--kkp-version".into())]
    );
    // An embedded patch release in the status is used exactly: its own KKP images, no other.
    let mut kkp = env.server.kkp(NS, "kubermatic").unwrap();
    kkp["status"]["kubermaticVersion"] = json!("v2.29.4");
    env.server.put_kkp(kkp);
    let exact = plan(&env.mirror(PLAN));
    assert_eq!(exact["kkpVersions"], json!(["v2.29.4"]));
    let sources: Vec<&str> = exact["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["source"].as_str())
        .filter(|s| s.starts_with("quay.io/kubermatic/kubermatic"))
        .collect();
    assert!(
        !sources.is_empty() && sources.iter().all(|s| s.ends_with(":v2.29.4")),
        "{sources:?}"
    );
}

#[test]
fn live_flags_without_live_and_files_with_live_behave_as_documented() {
    let env = Live::new();
    // With --live, --config and --seed are refused (usage, exit 2): the files would silently shadow the cluster.
    let cfg = env.dir.path().join("k.yaml");
    std::fs::write(
        &cfg,
        "apiVersion: kubermatic.k8c.io/v1\nkind: KubermaticConfiguration\n",
    )
    .unwrap();
    let out = env.mirror(&["--live", "--dry-run", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", crate::support::show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
    // Cluster flags without --live: planned from files/defaults as before, with a warning, nothing read.
    let out = env.mirror(&["--dry-run", "--offline", "-n", "kkp", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", crate::support::show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("without --live they are ignored"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(env.server.seen().is_empty());
    // --name and --seeds need --live.
    let out = env.mirror(&["--dry-run", "--name", "kubermatic"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn live_through_kubectl_plugin_discovery() {
    let env = Live::new();
    let bin_dir = crate::support::bin("kubectl-kkp-mirror")
        .parent()
        .unwrap()
        .to_path_buf();
    let path = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let out = Command::new("kubectl")
        .args([
            "kkp",
            "mirror",
            "--live",
            "--dry-run",
            "--offline",
            "-o",
            "json",
            "--kubeconfig",
        ])
        .arg(&env.kubeconfig)
        .env("PATH", path)
        .env("HOME", env.dir.path())
        .env_remove("KUBECONFIG")
        .output()
        .expect("kubectl runs");
    let plan = plan(&out);
    assert!(sources(&plan).contains(&PAUSE.to_string()));
    assert_eq!(facts(&plan, "release")[0].0, "v2.31.0");
}
