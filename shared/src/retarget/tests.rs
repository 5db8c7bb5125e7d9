use super::*;
use crate::yamledit::YamlPath;
use std::os::unix::fs::PermissionsExt;

const REG: &str = "reg.local:5000/kkp";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/retarget")
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixtures().join(name)).unwrap()
}

fn retarget_config_text(text: &str, edition: Edition) -> String {
    let doc = YamlDoc::parse(text).unwrap();
    let edits = config::config_edits(&doc, REG, edition, config::Connection::default()).unwrap();
    apply_edits(Path::new("kubermatic.yaml"), text, &edits).unwrap()
}

#[test]
fn config_diff_snapshot() {
    let old = fixture("kubermatic.yaml");
    let new = retarget_config_text(&old, Edition::Ce);
    let change = FileChange {
        source: "kubermatic.yaml".into(),
        target: "kubermatic.yaml".into(),
        old,
        new,
        edits: vec![],
    };
    insta::assert_snapshot!(unified_diff(&change, false));
}

#[test]
fn config_every_repository_field_is_set_and_second_run_is_a_no_op() {
    let old = fixture("kubermatic.yaml");
    let new = retarget_config_text(&old, Edition::Ce);
    let doc = YamlDoc::parse(new.as_str()).unwrap();
    for f in crate::knobs::config::REPOSITORY_FIELDS
        .iter()
        .filter(|f| f.always)
    {
        let path = YamlPath::parse(f.path).unwrap();
        let want = format!("{REG}/{}", f.ce.split_once('/').unwrap().1);
        assert_eq!(doc.get_str(0, &path), Some(want.as_str()), "{}", f.path);
    }
    let p = |s| YamlPath::parse(s).unwrap();
    assert_eq!(
        doc.get_str(0, &p("spec.userCluster.overwriteRegistry")),
        Some(REG)
    );
    // Set by the user: its own path is kept.
    assert_eq!(
        doc.get_str(0, &p("spec.userCluster.machineController.imageRepository")),
        Some("reg.local:5000/kkp/kubermatic/machine-controller")
    );
    // Not set by the user and empty by default: left out.
    assert!(!doc.contains(0, &p("spec.userCluster.operatingSystemManager")));
    assert!(!doc.contains(0, &p("spec.applications")));
    // Comments and untouched lines stay.
    assert!(new.contains("    domain: kkp.example.com   # public name\n"));
    assert!(new.contains(
        "    dockerRepository: \"reg.local:5000/kkp/kubermatic/dashboard\"  # default, spelled out\n"
    ));
    assert_eq!(retarget_config_text(&new, Edition::Ce), new);
}

#[test]
fn config_enterprise_defaults() {
    let new = retarget_config_text(
        "kind: KubermaticConfiguration\nspec: {}\n"
            .replace("{}", "\n  x: 1")
            .as_str(),
        Edition::Ee,
    );
    let doc = YamlDoc::parse(new.as_str()).unwrap();
    let p = |s| YamlPath::parse(s).unwrap();
    assert_eq!(
        doc.get_str(0, &p("spec.masterController.dockerRepository")),
        Some("reg.local:5000/kkp/kubermatic/kubermatic-ee")
    );
    assert_eq!(
        doc.get_str(0, &p("spec.ui.dockerRepository")),
        Some("reg.local:5000/kkp/kubermatic/dashboard-ee")
    );
}

#[test]
fn config_document_is_found_in_a_stream() {
    let text =
        "kind: Seed\nspec:\n  x: 1\n---\nkind: KubermaticConfiguration\nspec:\n  api:\n    replicas: 1\n";
    let new = retarget_config_text(text, Edition::Ce);
    assert!(new.starts_with("kind: Seed\nspec:\n  x: 1\n---\nkind: KubermaticConfiguration\nspec:\n  api:\n    replicas: 1\n    dockerRepository: reg.local:5000/kkp/kubermatic/dashboard\n"));
    let err = config::config_edits(
        &YamlDoc::parse("kind: Seed\n---\nkind: Other\n").unwrap(),
        REG,
        Edition::Ce,
        config::Connection::default(),
    );
    assert!(matches!(err, Err(RetargetError::Usage(m)) if m.contains("no KubermaticConfiguration")));
}

#[test]
fn retarget_text_keeps_the_written_form() {
    assert_eq!(
        values::retarget_text("busybox", REG).unwrap(),
        "reg.local:5000/kkp/library/busybox"
    );
    assert_eq!(
        values::retarget_text("busybox:1.37", REG).unwrap(),
        "reg.local:5000/kkp/library/busybox:1.37"
    );
    assert_eq!(
        values::retarget_text("registry.k8s.io/ingress-nginx/controller:v1.14.3@sha256:abababababababababababababababababababababababababababababababab", REG).unwrap(),
        "reg.local:5000/kkp/ingress-nginx/controller:v1.14.3@sha256:abababababababababababababababababababababababababababababababab"
    );
    assert_eq!(
        values::retarget_text(
            "localhost:5000/x@sha256:abababababababababababababababababababababababababababababababab",
            "r.io"
        )
        .unwrap(),
        "r.io/x@sha256:abababababababababababababababababababababababababababababababab"
    );
    assert!(values::retarget_text("Bad/Name", REG).is_err());
}

#[test]
fn user_overrides_are_the_sources_and_already_retargeted_values_stay() {
    let keys = crate::knobs::learn_chart(&fixtures().join("charts/legacy"), None).unwrap();
    let user = vec![(
        PathBuf::from("v.yaml"),
        "legacy:\n  image:\n    repository: docker.io/me/fork\n".to_string(),
    )];
    let edits = values::values_edits(&keys, &user, REG).unwrap();
    assert_eq!(edits.len(), 1);
    assert_eq!(edits[0].value, "reg.local:5000/kkp/me/fork");
    let user = vec![(
        PathBuf::from("v.yaml"),
        format!("legacy:\n  image:\n    repository: {REG}/me/fork\n"),
    )];
    let edits = values::values_edits(&keys, &user, REG).unwrap();
    assert_eq!(edits[0].value, "reg.local:5000/kkp/me/fork");
}

#[test]
fn two_charts_wanting_different_values_conflict() {
    let key = |chart: &str, repo: &str| crate::knobs::ImageKey {
        chart: chart.into(),
        kind: crate::knobs::KeyKind::Repository {
            map: YamlPath::parse("grafana.image").unwrap(),
            repo_key: "repository".into(),
            registry: None,
            repository: repo.into(),
        },
    };
    let err = values::values_edits(
        &[
            key("a", "docker.io/grafana/grafana-oss"),
            key("b", "grafana/grafana"),
        ],
        &[],
        REG,
    )
    .unwrap_err();
    assert!(
        matches!(err, RetargetError::Conflict { ref chart_a, ref chart_b, .. } if chart_a == "a" && chart_b == "b")
    );
    // The same value twice is fine.
    values::values_edits(
        &[key("a", "grafana/grafana"), key("b", "docker.io/grafana/grafana")],
        &[],
        REG,
    )
    .unwrap();
}

#[test]
fn helm_set_syntax_is_escaped() {
    assert_eq!(
        values::set_key(&YamlPath::parse("a.\"b.c\"[2].d").unwrap()),
        "a.b\\.c[2].d"
    );
    assert_eq!(values::set_value("x,y\\z"), "x\\,y\\\\z");
}

#[test]
fn confirm_needs_an_explicit_yes() {
    for (answer, want) in [
        ("y\n", true),
        ("YES\n", true),
        ("\n", false),
        ("n\n", false),
        ("", false),
        ("yess\n", false),
    ] {
        let mut prompt = Vec::new();
        assert_eq!(
            confirm(&mut answer.as_bytes(), &mut prompt).unwrap(),
            want,
            "{answer:?}"
        );
        assert_eq!(prompt, b"Apply these changes? [y/N] ");
    }
}

#[test]
fn diff_is_coloured_only_when_asked() {
    let c = FileChange {
        source: "f".into(),
        target: "f".into(),
        old: "a: 1\nb: 2\n".into(),
        new: "a: 1\nb: 3\n".into(),
        edits: vec![],
    };
    let plain = unified_diff(&c, false);
    assert_eq!(plain, "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a: 1\n-b: 2\n+b: 3\n");
    let coloured = unified_diff(&c, true);
    assert!(coloured.contains("\x1b[31m-b: 2\x1b[0m\n") && coloured.contains("\x1b[32m+b: 3\x1b[0m\n"));
    let same = FileChange {
        new: c.old.clone(),
        ..c
    };
    assert_eq!(unified_diff(&same, true), "");
}

#[test]
fn atomic_write_keeps_permissions_and_follows_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.yaml");
    std::fs::write(&real, "a: 1\n").unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
    let link = dir.path().join("link.yaml");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    write_atomically(&link, &link, "a: 2\n").unwrap();
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_to_string(&real).unwrap(), "a: 2\n");
    assert_eq!(
        std::fs::metadata(&real).unwrap().permissions().mode() & 0o777,
        0o640
    );
    // A new file takes the permissions of the file it was made from.
    let out = dir.path().join("out.yaml");
    write_atomically(&out, &real, "a: 3\n").unwrap();
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o640
    );
    // No temporary files are left behind.
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["link.yaml", "out.yaml", "real.yaml"]);
}

/// Found by `tests/cli_hostile.rs`: the diff's context lines printed the operator's passwords and tokens
/// (a values file with `password:` next to an image key) on stdout.
#[test]
fn diff_context_does_not_print_credentials() {
    let old = "token: |\n  abc.def\n  ghi\nimage:\n  tag: v1\npassword: hunter2\n";
    let new = old.replace("  tag: v1\n", "  tag: v1\n  repository: reg.local/x\n");
    let c = FileChange {
        source: PathBuf::from("v.yaml"),
        target: PathBuf::from("v.yaml"),
        old: old.to_string(),
        new,
        edits: Vec::new(),
    };
    let diff = unified_diff(&c, false);
    for secret in ["hunter2", "abc.def", "ghi"] {
        assert!(!diff.contains(secret), "{diff}");
    }
    // The hunk starts inside the block scalar: its lines are masked all the same.
    assert_eq!(
        diff,
        "--- a/v.yaml\n+++ b/v.yaml\n@@ -3,4 +3,5 @@\n   ***\n image:\n   tag: v1\n+  repository: reg.local/x\n password: '***'\n"
    );
}

#[test]
fn system_application_charts_come_from_where_mirror_put_them_and_a_rerun_keeps_them() {
    let p = |s| YamlPath::parse(s).unwrap();
    let old = fixture("kubermatic.yaml");
    let new = retarget_config_text(&old, Edition::Ce);
    let doc = YamlDoc::parse(new.as_str()).unwrap();
    assert_eq!(
        doc.get_str(0, &p("spec.userCluster.systemApplications.helmRepository")),
        Some("oci://reg.local:5000/kkp/kubermatic-mirror/helm-charts")
    );
    // No default application catalog in the file: none is added.
    assert!(!doc.contains(0, &p("spec.applications")));
    assert_eq!(retarget_config_text(&new, Edition::Ce), new);

    // With a default application catalog, its charts move too; the user's other settings stay.
    let with_catalog = old.replacen(
        "spec:\n",
        "spec:\n  applications:\n    defaultApplicationCatalog:\n      enable: true\n      helmRepository: oci://quay.io/kubermatic-mirror/helm-charts\n",
        1,
    );
    let new = retarget_config_text(&with_catalog, Edition::Ce);
    let doc = YamlDoc::parse(new.as_str()).unwrap();
    assert_eq!(
        doc.get_str(
            0,
            &p("spec.applications.defaultApplicationCatalog.helmRepository")
        ),
        Some("oci://reg.local:5000/kkp/kubermatic-mirror/helm-charts")
    );
    assert!(new.contains("      enable: true\n"));
    assert_eq!(retarget_config_text(&new, Edition::Ce), new);
}

/// `--plain-http` / `--insecure-skip-tls-verify`: KKP pulls the mirrored charts with those connection
/// settings (v2.30+ `RegistryConnectionConfig`), written as booleans; the catalog's only where configured.
#[test]
fn chart_registry_connection_flags_are_written_as_booleans_and_a_rerun_keeps_them() {
    let run = |text: &str, connection: config::Connection| {
        let doc = YamlDoc::parse(text).unwrap();
        let edits = config::config_edits(&doc, REG, Edition::Ce, connection).unwrap();
        apply_edits(Path::new("kubermatic.yaml"), text, &edits).unwrap()
    };
    let plain = config::Connection {
        plain_http: true,
        ..Default::default()
    };
    let old = fixture("kubermatic.yaml");
    let new = run(&old, plain);
    let data = crate::yamledit::load_data(&new).unwrap();
    let sys = &data[0]["spec"]["userCluster"]["systemApplications"];
    assert_eq!(sys["plainHTTP"], serde_json::Value::Bool(true), "{new}");
    assert!(sys.get("insecureSkipTLSVerify").is_none());
    // No default application catalog: its connection is not invented.
    assert!(data[0]["spec"]["userCluster"].get("applications").is_none());
    assert_eq!(run(&new, plain), new);
    // Without the flag a rerun leaves the user's setting as it is.
    assert_eq!(run(&new, config::Connection::default()), new);
    // Without any flag nothing of the kind is written.
    assert!(!retarget_config_text(&old, Edition::Ce).contains("plainHTTP"));

    let with_catalog = old.replacen(
        "spec:\n",
        "spec:\n  applications:\n    defaultApplicationCatalog:\n      enable: true\n",
        1,
    );
    let tls = config::Connection {
        insecure_skip_tls_verify: true,
        ..Default::default()
    };
    let new = run(&with_catalog, tls);
    let doc = YamlDoc::parse(new.as_str()).unwrap();
    for parent in ["systemApplications", "applications"] {
        let at = YamlPath::parse(&format!("spec.userCluster.{parent}.insecureSkipTLSVerify")).unwrap();
        assert_eq!(doc.get_bool(0, &at), Some(true), "{parent}: {new}");
    }
    assert!(!new.contains("plainHTTP"));
    assert_eq!(run(&new, tls), new);
}

/// Issue 18: `retarget(retarget(x)) == retarget(x)` for every key kind the chart learning knows, every
/// shape of private registry, and chart defaults or user values of every reference shape; on the values
/// file and on the `-o set` pairs.
mod idempotence {
    use super::*;
    use crate::knobs::{ImageKey, KeyKind};
    use crate::reference::ImageRef;
    use crate::retarget::values::{set_key, set_value, values_edits};
    use proptest::prelude::*;

    fn sources() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("nginx".to_string()),
            Just("library/nginx:1.27".to_string()),
            Just("docker.io/grafana/grafana:12.0.1".to_string()),
            Just("quay.io/kubermatic/dashboard:v2.31.0".to_string()),
            Just("registry.k8s.io/sig/deep/image:v1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".to_string()),
            Just("localhost:5000/team/app".to_string()),
        ]
    }

    fn registries() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            Just("reg.local"),
            Just("reg.local:5000"),
            Just("reg.local:5000/kkp"),
            Just("reg.local/deep/path"),
        ]
    }

    fn registry_defaults() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("docker.io".to_string()),
            Just("quay.io/jetstack".to_string()),
            Just("docker.io/kubeovn".to_string()),
            Just("registry.k8s.io".to_string()),
        ]
    }

    fn path(s: &str) -> YamlPath {
        YamlPath::parse(s).unwrap()
    }

    /// One key of each kind, under distinct paths, with generated defaults.
    fn keys(
        whole: String,
        repo: String,
        split_reg: String,
        split_repo: String,
        global: String,
    ) -> Vec<ImageKey> {
        let key = |kind| ImageKey {
            chart: "c".into(),
            kind,
        };
        let split_repo = ImageRef::parse(&split_repo).unwrap().repository;
        let repo = repo.split(['@']).next().unwrap().to_string();
        let repo = match repo.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => n.to_string(),
            _ => repo,
        };
        vec![
            key(KeyKind::Whole {
                path: path("sidecar.image"),
                image: whole,
            }),
            key(KeyKind::Repository {
                map: path("app.image"),
                repo_key: "repository".into(),
                registry: None,
                repository: repo,
            }),
            key(KeyKind::Repository {
                map: path("split.image"),
                repo_key: "repository".into(),
                registry: Some(split_reg.clone()),
                repository: split_repo.clone(),
            }),
            key(KeyKind::Repository {
                map: path("imagemap.images.proxy"),
                repo_key: "image".into(),
                registry: Some(split_reg),
                repository: split_repo,
            }),
            key(KeyKind::GlobalRegistry {
                path: path("global.imageRegistry"),
                default: global,
            }),
        ]
    }

    fn pairs(e: &[Intended]) -> Vec<(String, String)> {
        e.iter()
            .map(|e| (set_key(&e.path), set_value(&e.value.to_string())))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
        #[test]
        fn a_second_run_changes_nothing(
            whole in sources(), repo in sources(), split_reg in registry_defaults(),
            split_repo in sources(), global in registry_defaults(), reg in registries(),
            user_whole in proptest::option::of(sources()),
            user_global in proptest::option::of(registry_defaults()),
        ) {
            let keys = keys(whole, repo, split_reg, split_repo, global);
            let mut user_text = String::from("# the user's values\n");
            if let Some(w) = &user_whole {
                user_text.push_str(&format!("sidecar:\n  image: {w}   # pinned\n"));
            }
            if let Some(g) = &user_global {
                user_text.push_str(&format!("global:\n  imageRegistry: {g}\n"));
            }
            let file = Path::new("values.yaml");
            let user = vec![(file.to_path_buf(), user_text.clone())];
            let first = values_edits(&keys, &user, reg).unwrap();
            // Registry keys name the registry (or a path below it); whole images and registry-less
            // repositories are below it; a repository beside a registry key is a path without host.
            let r = reg.trim_end_matches('/');
            for e in &first {
                let p = e.path.to_string();
                let v = e.value.to_string();
                let ok = match p.as_str() {
                    "split.image.repository" | "imagemap.images.proxy.image" => !v.starts_with(r),
                    "split.image.registry" | "imagemap.images.proxy.registry" => v == r,
                    "global.imageRegistry" => v == r || crate::knobs::is_under(&v, r),
                    _ => crate::knobs::is_under(&v, r),
                };
                prop_assert!(ok, "{} = {} with {}", p, e.value, reg);
            }
            let text = apply_edits(file, &user_text, &first).unwrap();
            prop_assert!(text.contains("# the user's values\n"));
            let again = values_edits(&keys, &[(file.to_path_buf(), text.clone())], reg).unwrap();
            // `-o set` output of the rerun equals the first run's.
            prop_assert_eq!(pairs(&again), pairs(&first), "rerun with {}", reg);
            // And the file is not rewritten.
            let text2 = apply_edits(file, &text, &again).unwrap();
            prop_assert_eq!(text2, text, "rerun with {} rewrote the file", reg);
        }
    }
}
