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
