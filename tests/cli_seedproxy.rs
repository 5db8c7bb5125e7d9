//! `kubectl kkp seedproxy` through the real binary, against the loopback API server in the test tree.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use crate::support::apiserver::ApiServer;
use crate::support::bin;

const TOKEN: &str = "s3cr3t-token";
const NS: &str = "kubermatic";

fn seed(name: &str, dcs: &[&str]) -> Value {
    let datacenters: serde_json::Map<String, Value> = dcs
        .iter()
        .map(|dc| {
            (
                dc.to_string(),
                json!({"country": "DE", "location": dc, "spec": {"hetzner": {"datacenter": "nbg1-dc3"}}}),
            )
        })
        .collect();
    json!({
        "apiVersion": "kubermatic.k8c.io/v1",
        "kind": "Seed",
        "metadata": {
            "name": name,
            "namespace": NS,
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"huge\":true}"},
            "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
        },
        "spec": {
            "country": "DE",
            "location": name,
            "kubeconfig": {"name": "kubeconfig-cluster", "namespace": NS},
            "datacenters": datacenters,
        },
        "status": {"phase": "Healthy"},
    })
}

/// The seed documentation's setup: Seeds hamburg (one datacenter) and frankfurt (two).
struct Env {
    server: ApiServer,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl Env {
    fn new() -> Env {
        Env::with(ApiServer::start(TOKEN))
    }

    fn with(server: ApiServer) -> Env {
        server.put_seed(seed("hamburg", &["hamburg-1"]));
        server.put_seed(seed("frankfurt", &["fra-1", "fra-2"]));
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = server.kubeconfig(dir.path(), TOKEN);
        Env {
            server,
            dir,
            kubeconfig,
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(bin("kubectl-kkp-seedproxy"));
        cmd.env_remove("KUBECONFIG")
            .env("HOME", self.dir.path())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs with `--kubeconfig` and `args`, stdin closed (not a terminal).
    fn run(&self, args: &[&str]) -> Output {
        self.command()
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .unwrap()
    }

    fn seed(&self, name: &str) -> Value {
        self.server.seed(NS, name).unwrap()
    }

    fn node(&self, seed: &str, dc: &str) -> Value {
        self.seed(seed)["spec"]["datacenters"][dc]["node"].clone()
    }

    fn writes(&self) -> Vec<String> {
        self.server
            .seen()
            .into_iter()
            .filter(|s| s.method == "PATCH" && !s.target.contains("dryRun=All"))
            .map(|s| s.target)
            .collect()
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const DOC_ARGS: &[&str] = &[
    "hamburg",
    "--http-proxy",
    "http://proxy.corp:3128",
    "--insecure-registry",
    "registry.corp:5000",
    "--pause-image",
    "registry.corp:5000/pause:3.10",
];

#[test]
fn doc_scenario_shows_diff_and_sets_exactly_those_fields() {
    let env = Env::new();
    let before = env.seed("hamburg");
    let out = env.run(&[DOC_ARGS, &["--yes"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("--- LIVE/kubermatic.k8c.io/v1.Seed.kubermatic.hamburg"),
        "{text}"
    );
    for line in [
        "+      node:",
        "+        httpProxy: http://proxy.corp:3128",
        "+        insecureRegistries:",
        "+        - registry.corp:5000",
        "+        pauseImage: registry.corp:5000/pause:3.10",
    ] {
        assert!(
            text.lines().any(|l| l.trim_end() == line),
            "{line:?} missing in\n{text}"
        );
    }
    assert!(
        !text.contains("managedFields") && !text.contains("last-applied") && !text.contains("Healthy"),
        "{text}"
    );
    assert!(
        text.ends_with("seed.kubermatic.k8c.io/hamburg patched\n"),
        "{text}"
    );

    assert_eq!(
        env.node("hamburg", "hamburg-1"),
        json!({
            "httpProxy": "http://proxy.corp:3128",
            "insecureRegistries": ["registry.corp:5000"],
            "pauseImage": "registry.corp:5000/pause:3.10",
        })
    );
    // Nothing else in the object moved.
    let mut after = env.seed("hamburg");
    after["spec"]["datacenters"]["hamburg-1"]
        .as_object_mut()
        .unwrap()
        .remove("node");
    assert_eq!(after["spec"], before["spec"]);

    // The wire: GET, a strict dry-run merge patch, then the same patch for real, both carrying the
    // resourceVersion that was read.
    let seen = env.server.seen();
    let methods: Vec<_> = seen.iter().map(|s| s.method.as_str()).collect();
    assert_eq!(methods, ["GET", "PATCH", "PATCH"]);
    let rv = before["metadata"]["resourceVersion"].clone();
    for (i, dry) in [(1, true), (2, false)] {
        let s = &seen[i];
        assert!(s.target.contains("fieldValidation=Strict"), "{}", s.target);
        assert!(
            s.target.contains("fieldManager=kubectl-kkp-seedproxy"),
            "{}",
            s.target
        );
        assert_eq!(s.target.contains("dryRun=All"), dry, "{}", s.target);
        assert_eq!(s.content_type.as_deref(), Some("application/merge-patch+json"));
        assert_eq!(
            s.body.as_ref().unwrap(),
            &json!({"spec": {"datacenters": {"hamburg-1": {"node": {
                "httpProxy": "http://proxy.corp:3128",
                "insecureRegistries": ["registry.corp:5000"],
                "pauseImage": "registry.corp:5000/pause:3.10"}}}},
                "metadata": {"resourceVersion": rv}})
        );
    }
}

#[test]
fn without_terminal_and_without_yes_it_refuses() {
    let env = Env::new();
    let before = env.seed("hamburg");
    let out = env.run(DOC_ARGS);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("stdin is not a terminal"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    // The diff was still shown, nothing was written.
    assert!(stdout(&out).contains("+        httpProxy: http://proxy.corp:3128"));
    assert!(env.writes().is_empty());
    assert_eq!(env.seed("hamburg"), before);
}

#[test]
fn no_change_says_so_and_writes_nothing() {
    let env = Env::new();
    assert!(env.run(&[DOC_ARGS, &["--yes"]].concat()).status.success());
    let before = env.seed("hamburg");
    let writes = env.writes().len();
    let out = env.run(&[DOC_ARGS, &["--yes"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("already has these settings"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stdout(&out), "");
    assert_eq!(env.writes().len(), writes);
    assert_eq!(env.seed("hamburg"), before);
}

#[test]
fn server_dry_run_shows_the_servers_result_and_persists_nothing() {
    let env = Env::new();
    let before = env.seed("hamburg");
    let out = env.run(&[DOC_ARGS, &["--dry-run=server", "-o", "yaml"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("pauseImage: registry.corp:5000/pause:3.10"),
        "{text}"
    );
    assert!(text.contains("(server dry run)"), "{text}");
    assert!(
        env.server
            .seen()
            .iter()
            .any(|s| s.method == "PATCH" && s.target.contains("dryRun=All"))
    );
    assert!(env.writes().is_empty());
    assert_eq!(env.seed("hamburg"), before);
}

#[test]
fn client_dry_run_sends_no_patch_at_all() {
    let env = Env::new();
    let out = env.run(&[DOC_ARGS, &["--dry-run"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("+        pauseImage: registry.corp:5000/pause:3.10"));
    assert!(env.server.seen().iter().all(|s| s.method == "GET"));
}

#[test]
fn hyperkube_image_is_refused_because_the_crd_has_no_such_field() {
    let env = Env::new();
    let before = env.seed("hamburg");
    let out = env.run(&[
        "hamburg",
        "--hyperkube-image",
        "registry.corp:5000/hyperkube:v1.18.0",
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(
            "the Seed CRD on the server has no field spec.datacenters.hamburg-1.node.hyperkubeImage"
        ),
        "{err}"
    );
    assert!(err.contains("removed in KKP v2.20"), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    assert!(env.writes().is_empty());
    assert_eq!(env.seed("hamburg"), before);
}

#[test]
fn a_concurrent_change_is_not_overwritten() {
    let env = Env::new();
    env.server.before_next_write(|seed| {
        seed["spec"]["datacenters"]["hamburg-1"]["node"] = json!({"pauseImage": "someone.else/pause:3.9"});
    });
    let out = env.run(&[DOC_ARGS, &["--yes"]].concat());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("was changed by someone else after it was read; nothing was changed"),
        "{err}"
    );
    assert_eq!(
        env.node("hamburg", "hamburg-1"),
        json!({"pauseImage": "someone.else/pause:3.9"})
    );
    assert_eq!(env.writes().len(), 1, "the one refused write");
}

/// Runs the plugin with `--kubeconfig` and `args`, stdin on a pseudo-terminal, typing `input`.
fn run_on_terminal(env: &Env, args: &[&str], input: &str) -> Output {
    let mut argv = vec![
        bin("kubectl-kkp-seedproxy").display().to_string(),
        "--kubeconfig".into(),
        env.kubeconfig.display().to_string(),
    ];
    argv.extend(args.iter().map(|a| a.to_string()));
    crate::support::run_on_terminal(&argv, env.dir.path(), input)
}

#[test]
fn on_a_terminal_it_asks_and_no_means_no() {
    let env = Env::new();
    let before = env.seed("hamburg");
    let out = run_on_terminal(&env, DOC_ARGS, "n\n");
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("Apply this change to Seed kubermatic/hamburg? [y/N]"),
        "{text}"
    );
    assert!(text.contains("aborted; nothing was changed"), "{text}");
    assert!(env.writes().is_empty());
    assert_eq!(env.seed("hamburg"), before);
}

#[test]
fn on_a_terminal_a_conflict_is_shown_again_and_asked_again() {
    let env = Env::new();
    env.server.before_next_write(|seed| {
        seed["spec"]["datacenters"]["hamburg-1"]["node"] = json!({"noProxy": "other.corp"});
    });
    let out = run_on_terminal(&env, DOC_ARGS, "y\ny\n");
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("was changed by someone else meanwhile; re-reading it"),
        "{text}"
    );
    assert_eq!(text.matches("[y/N]").count(), 2, "{text}");
    // The second diff is against the other writer's object, which keeps its change.
    assert!(text.contains("         noProxy: other.corp"), "{text}");
    assert_eq!(
        env.node("hamburg", "hamburg-1"),
        json!({
            "noProxy": "other.corp",
            "httpProxy": "http://proxy.corp:3128",
            "insecureRegistries": ["registry.corp:5000"],
            "pauseImage": "registry.corp:5000/pause:3.10",
        })
    );
    assert_eq!(env.writes().len(), 2);
}

#[test]
fn a_datacenter_name_is_found_across_seeds() {
    let env = Env::new();
    let out = env.run(&[
        "fra-2",
        "--registry-mirror",
        "https://mirror.corp/v2,http://10.0.0.5:5000",
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        env.node("frankfurt", "fra-2"),
        json!({"registryMirrors": ["https://mirror.corp/v2", "http://10.0.0.5:5000"]})
    );
    assert_eq!(env.node("frankfurt", "fra-1"), Value::Null);
}

#[test]
fn all_datacenters_and_unset() {
    let env = Env::new();
    let out = env.run(&[
        "frankfurt",
        "--all-datacenters",
        "--no-proxy",
        "10.0.0.0/8, .corp,localhost",
        "--pause-image",
        "reg.corp/pause:3.10",
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for dc in ["fra-1", "fra-2"] {
        assert_eq!(
            env.node("frankfurt", dc),
            json!({"noProxy": "10.0.0.0/8,.corp,localhost", "pauseImage": "reg.corp/pause:3.10"})
        );
    }
    let out = env.run(&[
        "frankfurt",
        "--datacenter",
        "fra-1",
        "--unset",
        "pause_image",
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        env.node("frankfurt", "fra-1"),
        json!({"noProxy": "10.0.0.0/8,.corp,localhost"})
    );
    assert_eq!(
        env.node("frankfurt", "fra-2")["pauseImage"],
        "reg.corp/pause:3.10"
    );
}

#[test]
fn a_seed_with_several_datacenters_needs_a_choice() {
    let env = Env::new();
    let out = env.run(&["frankfurt", "--pause-image", "reg.corp/pause:3.10", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("has 2 datacenters (fra-1, fra-2)"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&[
        "frankfurt",
        "--datacenter",
        "fra-9",
        "--pause-image",
        "reg.corp/pause:3.10",
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .contains("Seed \"frankfurt\" has no datacenter \"fra-9\" (its datacenters: fra-1, fra-2)"),
        "{}",
        stderr(&out)
    );
    assert!(env.writes().is_empty());
}

#[test]
fn an_unknown_name_lists_what_exists_and_an_ambiguous_one_the_candidates() {
    let env = Env::new();
    let out = env.run(&["berlin", "--pause-image", "reg.corp/pause:3.10", "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim_end(),
        "error: no Seed or datacenter named \"berlin\" in namespace \"kubermatic\" (Seeds: frankfurt, hamburg; \
         datacenters: fra-1, fra-2, hamburg-1)"
    );
    env.server.put_seed(seed("munich", &["fra-2"]));
    let out = env.run(&["fra-2", "--pause-image", "reg.corp/pause:3.10", "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("datacenter \"fra-2\" exists in several Seeds: frankfurt/fra-2, munich/fra-2"),
        "{}",
        stderr(&out)
    );
    assert!(env.writes().is_empty());
}

#[test]
fn seed_default_edits_proxy_settings_only() {
    let env = Env::new();
    let out = env.run(&[
        "frankfurt",
        "--seed-default",
        "--http-proxy",
        "https://user:pw@proxy.corp:8443",
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        env.seed("frankfurt")["spec"]["proxySettings"],
        json!({"httpProxy": "https://user:pw@proxy.corp:8443"})
    );
    let out = env.run(&[
        "frankfurt",
        "--seed-default",
        "--pause-image",
        "reg.corp/pause:3.10",
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("has only httpProxy and noProxy"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_values_are_refused_before_any_request() {
    let env = Env::new();
    for (args, needle) in [
        (
            vec!["hamburg", "--insecure-registry", "https://registry.corp:5000"],
            "not a URL",
        ),
        (
            vec!["hamburg", "--insecure-registry", "registry.corp:99999"],
            "port",
        ),
        (
            vec!["hamburg", "--http-proxy", "http://proxy.corp:3128/path"],
            "no path",
        ),
        (
            vec!["hamburg", "--http-proxy", "socks5://proxy.corp:1080"],
            "not http or https",
        ),
        (vec!["hamburg", "--registry-mirror", "mirror.corp"], "not a URL"),
        (
            vec!["hamburg", "--pause-image", "Registry.corp/Pause:3.10"],
            "invalid --pause-image",
        ),
        (vec!["hamburg", "--no-proxy", "http://x.corp"], "not URLs"),
        (vec!["hamburg", "--unset", "nonsense"], "unknown field"),
    ] {
        let out = env.run(&[args.as_slice(), &["--yes"]].concat());
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
    assert!(env.server.seen().is_empty(), "{:?}", env.server.seen());
}

#[test]
fn without_a_name_every_seed_is_listed() {
    let env = Env::new();
    assert!(env.run(&[DOC_ARGS, &["--yes"]].concat()).status.success());
    let out = env.run(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        lines[0],
        [
            "SEED",
            "DATACENTER",
            "HTTP",
            "PROXY",
            "NO",
            "PROXY",
            "INSECURE",
            "REGISTRIES",
            "REGISTRY",
            "MIRRORS",
            "PAUSE",
            "IMAGE"
        ]
    );
    assert_eq!(
        lines[1],
        [
            "frankfurt",
            "fra-1",
            "<none>",
            "<none>",
            "<none>",
            "<none>",
            "<none>"
        ]
    );
    assert_eq!(
        lines[3],
        [
            "hamburg",
            "hamburg-1",
            "http://proxy.corp:3128",
            "<none>",
            "registry.corp:5000",
            "<none>",
            "registry.corp:5000/pause:3.10"
        ]
    );
    assert_eq!(lines.len(), 4);

    let out = env.run(&["-o", "json"]);
    let data: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(data[1]["seed"], "hamburg");
    assert_eq!(
        data[1]["datacenters"]["hamburg-1"]["node"]["insecureRegistries"],
        json!(["registry.corp:5000"])
    );
}

#[test]
fn errors_read_like_kubectl() {
    let env = Env::new();
    // 401: wrong token.
    let bad = tempfile::tempdir().unwrap();
    let kc = env.server.kubeconfig(bad.path(), "wrong-token");
    let out = env
        .command()
        .arg("--kubeconfig")
        .arg(&kc)
        .args(["hamburg"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim_end(),
        "error: You must be logged in to the server (Unauthorized)"
    );

    // 403 with verb, resource and namespace; nothing written.
    env.server.forbid("patch");
    let before = env.seed("hamburg");
    let out = env.run(&[DOC_ARGS, &["--yes"]].concat());
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim_end(),
        "error: Error from server (Forbidden): seeds.kubermatic.k8c.io \"hamburg\" is forbidden: User \"tester\" \
         cannot patch resource \"seeds\" in API group \"kubermatic.k8c.io\" in the namespace \"kubermatic\""
    );
    assert_eq!(env.seed("hamburg"), before);

    // Another namespace has no Seeds: NotFound lists that nothing exists there.
    let out = env.run(&[
        "-n",
        "elsewhere",
        "hamburg",
        "--pause-image",
        "reg.corp/pause:3.10",
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("in namespace \"elsewhere\" (Seeds: none; datacenters: none)"),
        "{}",
        stderr(&out)
    );

    // Connection refused names the server.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dead = tempfile::tempdir().unwrap();
    let kc = dead.path().join("kubeconfig");
    std::fs::write(
        &kc,
        std::fs::read_to_string(&env.kubeconfig)
            .unwrap()
            .replace(&env.server.url(), &format!("http://127.0.0.1:{port}")),
    )
    .unwrap();
    let out = env
        .command()
        .arg("--kubeconfig")
        .arg(&kc)
        .arg("hamburg")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim_end(),
        format!(
            "error: The connection to the server 127.0.0.1:{port} was refused - did you specify the right host or port?"
        )
    );
}

#[test]
fn kubeconfig_env_and_context_are_honoured() {
    let env = Env::new();
    // KUBECONFIG (no --kubeconfig) and an explicit --context.
    let out = env
        .command()
        .env("KUBECONFIG", &env.kubeconfig)
        .args(["--context", "test", "hamburg", "-o", "yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("seed: hamburg"), "{}", stdout(&out));
    let out = env
        .command()
        .env("KUBECONFIG", &env.kubeconfig)
        .args(["--context", "nope", "hamburg"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
}

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

#[test]
fn over_tls_real_kubectl_sees_what_was_written() {
    // kubectl sends credentials only over TLS, so this one runs against the HTTPS variant; the plugin
    // verifies the server against the kubeconfig's CA with rustls/ring.
    let env = Env::with(ApiServer::start_tls(TOKEN));
    assert!(env.run(&[DOC_ARGS, &["--yes"]].concat()).status.success());
    let out = kubectl(
        &env.kubeconfig,
        env.dir.path(),
        &["-n", "kubermatic", "get", "seed", "hamburg", "-o", "json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let obj: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        obj["spec"]["datacenters"]["hamburg-1"]["node"],
        json!({
            "httpProxy": "http://proxy.corp:3128",
            "insecureRegistries": ["registry.corp:5000"],
            "pauseImage": "registry.corp:5000/pause:3.10",
        })
    );
    let out = kubectl(
        &env.kubeconfig,
        env.dir.path(),
        &["-n", "kubermatic", "get", "seed", "hamburg", "-o", "yaml"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("httpProxy: http://proxy.corp:3128"),
        "{}",
        stdout(&out)
    );
}

/// One raw HTTP/1.1 request to the test server; returns status code and JSON body.
fn raw(server: &ApiServer, method: &str, target: &str, content_type: &str, body: &str) -> (u16, Value) {
    use std::io::{Read, Write};
    let addr = server.url().trim_start_matches("http://").to_string();
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        conn,
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    conn.shutdown(std::net::Shutdown::Write).unwrap();
    let mut resp = String::new();
    conn.read_to_string(&mut resp).unwrap();
    let code = resp[9..12].parse().unwrap();
    let body = resp.split_once("\r\n\r\n").unwrap().1;
    (code, serde_json::from_str(body).unwrap())
}

#[test]
fn the_test_server_keeps_kubernetes_semantics() {
    // Keeps the fake honest: without fieldValidation=Strict unknown fields vanish silently, with it they
    // are refused; a stale resourceVersion is a 409; a JSON patch `test` op guards; strategic merge is 415.
    let env = Env::new();
    let path = "/apis/kubermatic.k8c.io/v1/namespaces/kubermatic/seeds/hamburg";
    let merge = "application/merge-patch+json";
    let (code, _) = raw(
        &env.server,
        "PATCH",
        path,
        merge,
        r#"{"spec":{"datacenters":{"hamburg-1":{"node":{"http_proxy":"http://p:1","httpProxy":"http://p:1"}}}}}"#,
    );
    assert_eq!(code, 200);
    assert_eq!(
        env.node("hamburg", "hamburg-1"),
        json!({"httpProxy": "http://p:1"})
    );
    let (code, status) = raw(
        &env.server,
        "PATCH",
        &format!("{path}?fieldValidation=Strict"),
        merge,
        r#"{"spec":{"datacenters":{"hamburg-1":{"node":{"pause_image":"x"}}}}}"#,
    );
    assert_eq!(code, 400);
    assert_eq!(
        status["message"],
        "strict decoding error: unknown field \"spec.datacenters.hamburg-1.node.pause_image\""
    );
    let (code, status) = raw(
        &env.server,
        "PATCH",
        path,
        merge,
        r#"{"metadata":{"resourceVersion":"1"},"spec":{}}"#,
    );
    assert_eq!((code, status["reason"].as_str()), (409, Some("Conflict")));
    let rv = env.seed("hamburg")["metadata"]["resourceVersion"].clone();
    let (code, _) = raw(
        &env.server,
        "PATCH",
        path,
        "application/json-patch+json",
        &json!([{"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
                {"op": "remove", "path": "/spec/datacenters/hamburg-1/node"}])
        .to_string(),
    );
    assert_eq!(code, 422);
    let (code, obj) = raw(
        &env.server,
        "PATCH",
        &format!("{path}?dryRun=All"),
        "application/json-patch+json",
        &json!([{"op": "test", "path": "/metadata/resourceVersion", "value": rv},
                {"op": "remove", "path": "/spec/datacenters/hamburg-1/node"}])
        .to_string(),
    );
    assert_eq!(code, 200);
    assert_eq!(obj["spec"]["datacenters"]["hamburg-1"].get("node"), None);
    assert_eq!(
        env.node("hamburg", "hamburg-1"),
        json!({"httpProxy": "http://p:1"})
    );
    let (code, _) = raw(
        &env.server,
        "PATCH",
        path,
        "application/strategic-merge-patch+json",
        "{}",
    );
    assert_eq!(code, 415);
}

const SEED_YAML: &str = "# the Seed of the offline docs
apiVersion: kubermatic.k8c.io/v1
kind: Seed
metadata:
  name: hamburg
  namespace: kubermatic
spec:
  country: DE
  datacenters:
    hamburg-1:
      location: Hamburg
      spec:
        hetzner:
          datacenter: nbg1-dc3
    hamburg-2:
      location: Hamburg 2
      spec:
        hetzner:
          datacenter: fsn1-dc14
  kubeconfig:
    name: kubeconfig-hamburg
";

#[test]
fn a_local_manifest_is_edited_without_any_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("seed.yaml");
    std::fs::write(&file, SEED_YAML).unwrap();
    let run = |args: &[&str]| {
        Command::new(bin("kubectl-kkp-seedproxy"))
            .arg("-f")
            .arg(&file)
            .args(args)
            // No reachable cluster: a kubeconfig that does not exist.
            .env("KUBECONFIG", dir.path().join("missing"))
            .env("HOME", dir.path())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = run(&[
        "hamburg-2",
        "--http-proxy",
        "http://proxy.corp:3128",
        "--insecure-registry",
        "registry.corp:5000",
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let obj: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        obj["spec"]["datacenters"]["hamburg-2"]["node"],
        json!({"httpProxy": "http://proxy.corp:3128", "insecureRegistries": ["registry.corp:5000"]})
    );
    assert_eq!(obj["spec"]["datacenters"]["hamburg-1"].get("node"), None);
    assert_eq!(obj["spec"]["kubeconfig"], json!({"name": "kubeconfig-hamburg"}));

    let out = run(&[
        "--datacenter",
        "hamburg-1",
        "--pause-image",
        "registry.corp:5000/pause:3.10",
        "--dry-run",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("+      node:\n+        pauseImage: registry.corp:5000/pause:3.10\n"),
        "{}",
        stdout(&out)
    );

    let out = run(&["--pause-image", "registry.corp:5000/pause:3.10"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("has 2 datacenters (hamburg-1, hamburg-2)"),
        "{}",
        stderr(&out)
    );
    let out = run(&[
        "hamburg",
        "--all-datacenters",
        "--hyperkube-image",
        "registry.corp:5000/hyperkube:v1.18.0",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("removed in KKP v2.20"), "{}", stderr(&out));

    // The file is never rewritten.
    assert_eq!(std::fs::read_to_string(&file).unwrap(), SEED_YAML);
}
