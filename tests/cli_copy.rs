//! `kubectl kkp mirror REGISTRY` copying into real `docker-registry` instances, checked with skopeo and
//! by reading the target registry's storage directory.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::support::bin;
use crate::support::block_on;
use crate::support::images::{Pushed, Spec, client_for, push_image, push_three_shapes, random_bytes};
use crate::support::registry::{Options, Registry};

/// Runs the mirror binary with an isolated docker config dir and optional stdin.
fn mirror(args: &[&str], stdin: Option<&str>, docker_config: Option<&std::path::Path>) -> Output {
    let empty = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin("kubectl-kkp-mirror"));
    cmd.args(args)
        .env("DOCKER_CONFIG", docker_config.unwrap_or(empty.path()))
        .env("XDG_CACHE_HOME", empty.path())
        .env("REGISTRY_AUTH_FILE", empty.path().join("none.json"))
        .env_remove("XDG_RUNTIME_DIR")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn image_list(images: &[String]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    for i in images {
        writeln!(f, "{i}").unwrap();
    }
    f
}

/// Every manifest and blob of `pushed` is at `dst/repo`, with the tag on the same digest as the source.
fn assert_complete_copy(
    src: &Registry,
    dst: &Registry,
    src_repo: &str,
    dst_repo: &str,
    tag: &str,
    p: &Pushed,
) {
    assert_eq!(
        dst.skopeo_digest(dst_repo, tag).as_deref(),
        Some(p.digest.as_str()),
        "{dst_repo}:{tag}"
    );
    assert_eq!(
        src.skopeo_raw(src_repo, tag),
        dst.skopeo_raw(dst_repo, tag),
        "raw bytes of {dst_repo}:{tag}"
    );
    for m in &p.manifests {
        assert_eq!(
            dst.skopeo_digest(dst_repo, m).as_deref(),
            Some(m.as_str()),
            "child {m}"
        );
    }
    for (b, _) in &p.blobs {
        assert!(dst.has_blob(b), "blob {b} missing at the target");
    }
}

#[test]
fn multi_arch_copy_keeps_digests_mounts_shared_layers_and_reruns_as_noop() {
    let src = Registry::start();
    let dst = Registry::start();
    let client = client_for(&[&src]);
    let shared_len = 300 * 1024;
    let (oci, docker, nested) = block_on(push_three_shapes(&client, &src, shared_len));
    let list = image_list(&[
        format!("{}/team/app:v1", src.host),
        format!("{}/other/tool:2.0", src.host),
        format!("{}/team/nested:1", src.host),
    ]);
    let target = format!("{}/mirror", dst.host);
    let args = [
        target.as_str(),
        "--image-list",
        list.path().to_str().unwrap(),
        "-o",
        "json",
        "--parallel",
        "4",
        "--insecure-registry",
        &src.host,
        "--insecure-registry",
        &dst.host,
    ];
    let report = crate::support::ok_json(&mirror(&args, None, None));
    let images = report["images"].as_array().unwrap();
    assert_eq!(images.len(), 3);
    for i in images {
        assert_eq!(i["status"], "copied", "{i}");
    }
    assert_complete_copy(&src, &dst, "team/app", "mirror/team/app", "v1", &oci);
    assert_complete_copy(&src, &dst, "other/tool", "mirror/other/tool", "2.0", &docker);
    assert_complete_copy(&src, &dst, "team/nested", "mirror/team/nested", "1", &nested);
    // The shared layer was downloaded once and mounted into the second repository.
    let by_source = |s: &str| {
        images
            .iter()
            .find(|i| i["source"].as_str().unwrap().contains(s))
            .unwrap()
    };
    let mounted: u64 = images.iter().map(|i| i["bytes_mounted"].as_u64().unwrap()).sum();
    assert_eq!(mounted, shared_len as u64, "{report:#}");
    assert_eq!(by_source("team/app")["digest"], oci.digest.as_str());
    let copied: u64 = images.iter().map(|i| i["bytes_copied"].as_u64().unwrap()).sum();
    let all_blobs: u64 = oci.blob_bytes() + docker.blob_bytes() + nested.blob_bytes();
    // Each platform of `oci` lists the shared layer, so it is counted once per distinct (repo, digest).
    let shared_extra = shared_len as u64
        * (oci.blobs.iter().filter(|(d, _)| d == &oci.blobs[0].0).count() as u64 - 1)
        + shared_len as u64 * (docker.blobs.iter().filter(|(d, _)| d == &oci.blobs[0].0).count() as u64);
    assert_eq!(copied, all_blobs - shared_extra, "{report:#}");
    assert_eq!(
        dst.blob_count(),
        src.blob_count(),
        "target holds exactly the source's blobs"
    );

    // Second run: nothing to do, every image up to date, no byte moved.
    let again = crate::support::ok_json(&mirror(&args, None, None));
    for i in again["images"].as_array().unwrap() {
        assert_eq!(i["status"], "up-to-date", "{i}");
        assert_eq!(i["bytes_copied"], 0);
        assert_eq!(i["bytes_mounted"], 0);
    }
}

#[test]
fn interrupted_copy_leaves_no_tag_on_an_incomplete_image_and_rerun_finishes() {
    let src = Registry::start();
    let dst = Registry::start();
    let client = client_for(&[&src]);
    let spec = Spec {
        platforms: vec!["linux/amd64", "linux/arm64", "linux/ppc64le", "linux/s390x"],
        layers: 3,
        layer_size: 4 << 20,
        ..Spec::default()
    };
    let pushed = block_on(push_image(&client, &src, "big/app", "v1", &spec));
    let list = image_list(&[format!("{}/big/app:v1", src.host)]);
    let list_path = list.path().to_str().unwrap().to_string();
    let args = [
        dst.host.as_str(),
        "--image-list",
        &list_path,
        "-o",
        "json",
        "--parallel",
        "1",
    ];

    let empty = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin("kubectl-kkp-mirror"))
        .args(args)
        .env("DOCKER_CONFIG", empty.path())
        .env("XDG_CACHE_HOME", empty.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it as soon as the first blob has landed at the target.
    while dst.blob_count() == 0 && child.try_wait().unwrap().is_none() {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().ok();
    child.wait().unwrap();
    // Whatever was written, the tag must not point at an image with missing parts.
    if let Some(link) = dst.tag_link("big/app", "v1") {
        assert_eq!(link, pushed.digest);
        assert!(
            pushed.blobs.iter().all(|(b, _)| dst.has_blob(b)),
            "tag written before all blobs"
        );
    }

    let report = crate::support::ok_json(&mirror(&args, None, None));
    assert_eq!(report["images"][0]["status"], "copied");
    assert_complete_copy(&src, &dst, "big/app", "big/app", "v1", &pushed);
    // The rerun skipped what the first run had already written.
    let skipped = report["images"][0]["bytes_skipped"].as_u64().unwrap();
    assert!(skipped > 0, "{report:#}");
}

/// A plain source registry and a TLS target that demands user `mirror` with `password` (htpasswd).
fn source_and_tls_target_for_user_mirror(password: &str) -> (Registry, Registry) {
    let src = Registry::start();
    let dst = Registry::start_with(Options {
        tls: true,
        htpasswd: Some(("mirror".into(), password.into())),
        ..Options::default()
    });
    (src, dst)
}

#[test]
fn tls_target_with_basic_auth_from_flags() {
    let (src, dst) = source_and_tls_target_for_user_mirror("s3cret-pass");
    let client = client_for(&[&src]);
    let pushed = block_on(push_image(&client, &src, "app", "1.0", &Spec::default()));
    let list = image_list(&[format!("{}/app:1.0", src.host)]);
    let ca = format!("{}={}", dst.host, dst.ca.as_ref().unwrap().display());
    let args = [
        dst.host.as_str(),
        "--image-list",
        list.path().to_str().unwrap(),
        "-o",
        "json",
        "--ca-file",
        &ca,
        "--username",
        "mirror",
        "--password-stdin",
    ];
    // Without the CA the registry's certificate is not trusted, and nothing is written.
    let no_ca: Vec<&str> = args
        .iter()
        .copied()
        .filter(|a| *a != "--ca-file" && *a != ca)
        .collect();
    let out = mirror(&no_ca, Some("s3cret-pass\n"), None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("certificate"), "{stderr}");
    assert_eq!(dst.tag_link("app", "1.0"), None);

    let out = mirror(&args, Some("s3cret-pass\n"), None);
    let report = crate::support::ok_json(&out);
    assert_eq!(report["images"][0]["status"], "copied");
    assert_complete_copy(&src, &dst, "app", "app", "1.0", &pushed);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("s3cret-pass"), "{stderr}");
}

#[test]
fn credentials_from_docker_config_and_wrong_credentials_are_a_clear_error() {
    let (src, dst) = source_and_tls_target_for_user_mirror("right");
    let client = client_for(&[&src]);
    let pushed = block_on(push_image(&client, &src, "app", "1.0", &Spec::default()));
    let list = image_list(&[format!("{}/app:1.0", src.host)]);
    let args = [
        dst.host.as_str(),
        "--image-list",
        list.path().to_str().unwrap(),
        "-o",
        "json",
        "--insecure-registry",
        &dst.host,
    ];

    // Wrong password given on the command line: exit 1, the user and host named, the password not shown.
    let mut wrong = args.to_vec();
    wrong.extend(["--username", "mirror", "--password-stdin"]);
    let out = mirror(&wrong, Some("not-the-password"), None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}: authentication failed for user \"mirror\"",
            dst.host
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-password"), "{stderr}");
    assert_eq!(dst.tag_link("app", "1.0"), None);

    // No credentials at all: the message says where they could come from.
    let out = mirror(&args, None, None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no credentials found"));

    // Right credentials in $DOCKER_CONFIG/config.json (the insecure flag skips certificate checks).
    let cfg = tempfile::tempdir().unwrap();
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode("mirror:right");
    std::fs::write(
        cfg.path().join("config.json"),
        serde_json::json!({"auths": {dst.host.clone(): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let report = crate::support::ok_json(&mirror(&args, None, Some(cfg.path())));
    assert_eq!(report["images"][0]["status"], "copied");
    assert_complete_copy(&src, &dst, "app", "app", "1.0", &pushed);
}

/// Credentials from a docker credential helper (`credHelpers`, then `credsStore`) and from podman's
/// `auth.json` (`REGISTRY_AUTH_FILE`), each proved by a copy into a registry that demands them.
#[test]
fn credentials_from_a_credential_helper_a_creds_store_and_podman_auth_json() {
    use std::os::unix::fs::PermissionsExt;
    let (src, dst) = source_and_tls_target_for_user_mirror("helper-secret");
    let client = client_for(&[&src]);
    let work = tempfile::tempdir().unwrap();
    // A credential helper as docker runs them: `get` with the server on stdin, JSON on stdout. It logs
    // what it was asked, so the test sees it was consulted for the target.
    let bin_dir = work.path().join("bin");
    std::fs::create_dir(&bin_dir).unwrap();
    let asked = work.path().join("asked");
    let helper = bin_dir.join("docker-credential-kkptest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\necho \"$server\" >> {asked}\n\
             echo '{{\"ServerURL\":\"'\"$server\"'\",\"Username\":\"mirror\",\"Secret\":\"helper-secret\"}}'\n",
            asked = asked.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |tag: &str, docker_config: &std::path::Path, auth_file: &std::path::Path| {
        let pushed = block_on(push_image(&client, &src, "app", tag, &Spec::default()));
        let list = image_list(&[format!("{}/app:{tag}", src.host)]);
        let out = Command::new(bin("kubectl-kkp-mirror"))
            .args([
                dst.host.as_str(),
                "--image-list",
                list.path().to_str().unwrap(),
                "-o",
                "json",
                "--insecure-registry",
                &dst.host,
            ])
            .env("PATH", &path)
            .env("DOCKER_CONFIG", docker_config)
            .env("XDG_CACHE_HOME", docker_config)
            .env("REGISTRY_AUTH_FILE", auth_file)
            .env_remove("XDG_RUNTIME_DIR")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!stderr.contains("helper-secret"), "{stderr}");
        let report = crate::support::ok_json(&out);
        assert_eq!(report["images"][0]["status"], "copied", "{stderr}");
        assert_complete_copy(&src, &dst, "app", "app", tag, &pushed);
    };
    let none = work.path().join("no-auth.json");

    // credHelpers names a helper for this host.
    let helpers = work.path().join("helpers");
    std::fs::create_dir(&helpers).unwrap();
    std::fs::write(
        helpers.join("config.json"),
        serde_json::json!({"credHelpers": {dst.host.clone(): "kkptest"}}).to_string(),
    )
    .unwrap();
    run("1.0", &helpers, &none);
    let log = std::fs::read_to_string(&asked).expect("the helper was run");
    assert!(log.lines().any(|l| l == dst.host), "{log}");

    // credsStore: one helper for every registry.
    let store = work.path().join("store");
    std::fs::create_dir(&store).unwrap();
    std::fs::write(
        store.join("config.json"),
        serde_json::json!({"credsStore": "kkptest"}).to_string(),
    )
    .unwrap();
    std::fs::remove_file(&asked).unwrap();
    run("2.0", &store, &none);
    assert!(asked.exists(), "the store helper was run");

    // podman's auth.json, with no docker configuration at all.
    let empty = work.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let auth_file = work.path().join("auth.json");
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode("mirror:helper-secret");
    std::fs::write(
        &auth_file,
        serde_json::json!({"auths": {dst.host.clone(): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    run("3.0", &empty, &auth_file);
}

/// On a terminal the copy draws a progress bar (images done/total, bytes, rate) and clears it at the
/// end; the copy itself is unchanged. A slow link keeps the copy going long enough for the bar to draw.
#[test]
fn on_a_terminal_a_progress_bar_is_drawn_and_the_copy_completes() {
    use crate::support::registry::{FaultConfig, FaultyProxy};
    let src = Registry::start();
    let dst = Registry::start();
    let client = client_for(&[&src]);
    let pushed: Vec<Pushed> = (0..3)
        .map(|i| {
            block_on(push_image(
                &client,
                &src,
                &format!("bar{i}"),
                "v1",
                &Spec::default(),
            ))
        })
        .collect();
    let slow = FaultyProxy::start_with(
        &dst.host,
        FaultConfig {
            rate: 0.0,
            delay: std::time::Duration::from_millis(150),
            ..FaultConfig::default()
        },
    );
    let list = image_list(
        &(0..3)
            .map(|i| format!("{}/bar{i}:v1", src.host))
            .collect::<Vec<_>>(),
    );
    let home = tempfile::tempdir().unwrap();
    let argv: Vec<String> = vec![
        bin("kubectl-kkp-mirror").display().to_string(),
        slow.host.clone(),
        "--image-list".into(),
        list.path().display().to_string(),
    ];
    let out = crate::support::run_on_terminal(&argv, home.path(), "");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(shown.contains("/3 images"), "no progress bar drawn:\n{shown}");
    assert!(shown.contains("MiB/s"), "no rate shown:\n{shown}");
    for (i, p) in pushed.iter().enumerate() {
        let repo = format!("bar{i}");
        assert_complete_copy(&src, &dst, &repo, &repo, "v1", p);
    }
}

#[test]
fn platform_filter_rewrites_the_index_and_says_so() {
    let src = Registry::start();
    let dst = Registry::start();
    let client = client_for(&[&src]);
    let pushed = block_on(push_image(
        &client,
        &src,
        "multi",
        "v1",
        &Spec {
            platforms: vec!["linux/amd64", "linux/arm64/v8", "windows/amd64"],
            ..Spec::default()
        },
    ));
    let list = image_list(&[format!("{}/multi:v1", src.host)]);
    let args = [
        dst.host.as_str(),
        "--image-list",
        list.path().to_str().unwrap(),
        "-o",
        "json",
        "--platform",
        "linux/amd64,linux/arm64",
    ];
    let out = mirror(&args, None, None);
    let report = crate::support::ok_json(&out);
    let img = &report["images"][0];
    assert_eq!(img["status"], "copied");
    assert!(
        img["warnings"][0]
            .as_str()
            .unwrap()
            .contains("index was rewritten"),
        "{img}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("index was rewritten"));
    let raw = dst.skopeo_raw("multi", "v1").unwrap();
    let index: Value = serde_json::from_slice(&raw).unwrap();
    let kept: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["os"].as_str().unwrap())
        .collect();
    assert_eq!(kept, ["linux", "linux"]);
    assert_eq!(
        img["digest"].as_str(),
        dst.skopeo_digest("multi", "v1").as_deref()
    );
    assert_ne!(img["digest"].as_str(), Some(pushed.digest.as_str()));
    // The windows child was not copied; the linux ones were, digests unchanged.
    assert!(dst.skopeo_raw("multi", &pushed.manifests[2]).is_none());
    assert!(dst.skopeo_raw("multi", &pushed.manifests[0]).is_some());
    // A rerun with the same filter is a no-op.
    let again = crate::support::ok_json(&mirror(&args, None, None));
    assert_eq!(again["images"][0]["status"], "up-to-date");
}

#[test]
fn a_failing_image_does_not_stop_the_others_and_source_mirrors_are_read() {
    let src = Registry::start();
    let dst = Registry::start();
    let client = client_for(&[&src]);
    let pushed = block_on(push_image(
        &client,
        &src,
        "kubermatic/app",
        "v2",
        &Spec::default(),
    ));
    // The plan names an upstream registry; the images are read through the mirror at `src`.
    let list = image_list(&[
        "quay.example.com/kubermatic/app:v2".to_string(),
        "quay.example.com/kubermatic/missing:v1".to_string(),
    ]);
    let mirror_flag = format!("quay.example.com={}", src.host);
    let args = [
        dst.host.as_str(),
        "--image-list",
        list.path().to_str().unwrap(),
        "-o",
        "text",
        "--source-mirror",
        &mirror_flag,
    ];
    let out = mirror(&args, None, None);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "quay.example.com/kubermatic/app:v2 {}/kubermatic/app:v2 copied {}",
            dst.host, pushed.digest
        )),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "failed: quay.example.com/kubermatic/missing:v1 -> {}/kubermatic/missing:v1:",
            dst.host
        )),
        "{stderr}"
    );
    assert!(stderr.contains("not found"), "{stderr}");
    assert_complete_copy(&src, &dst, "kubermatic/app", "kubermatic/app", "v2", &pushed);
}

/// Peak resident memory (VmHWM) of a running process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn a_large_layer_is_streamed_without_buffering_it() {
    let src = Registry::start();
    let dst = Registry::start();
    let client = client_for(&[&src]);
    let layer_size = 256 << 20;
    let pushed = block_on(push_image(
        &client,
        &src,
        "big/layer",
        "v1",
        &Spec {
            platforms: vec!["linux/amd64"],
            layers: 1,
            layer_size,
            ..Spec::default()
        },
    ));
    let list = image_list(&[format!("{}/big/layer:v1", src.host)]);
    let empty = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin("kubectl-kkp-mirror"))
        .args([
            dst.host.as_str(),
            "--image-list",
            list.path().to_str().unwrap(),
            "-o",
            "json",
        ])
        .env("DOCKER_CONFIG", empty.path())
        .env("XDG_CACHE_HOME", empty.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        if let Some(kib) = peak_rss_kib(pid) {
            peak = peak.max(kib);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let report = crate::support::ok_json(&out);
    assert_eq!(
        report["images"][0]["bytes_copied"].as_u64().unwrap(),
        pushed.blob_bytes()
    );
    assert_complete_copy(&src, &dst, "big/layer", "big/layer", "v1", &pushed);
    assert!(peak > 0, "could not read the copier's memory use");
    assert!(
        peak < 64 * 1024,
        "copying a {} MiB layer took {} MiB of memory",
        layer_size >> 20,
        peak / 1024
    );
}

#[test]
fn bearer_token_auth_with_mount_scopes_and_wrong_password() {
    let src = Registry::start();
    let dst = Registry::start_with(Options {
        token_auth: Some(("mirror".into(), "tok-pass".into())),
        ..Options::default()
    });
    let client = client_for(&[&src]);
    let base = random_bytes(200 * 1024);
    let (a, b) = block_on(async {
        let spec = Spec {
            shared_layer: Some(base.clone()),
            ..Spec::default()
        };
        (
            push_image(&client, &src, "one/a", "v1", &spec).await,
            push_image(&client, &src, "two/b", "v1", &spec).await,
        )
    });
    let list = image_list(&[format!("{}/one/a:v1", src.host), format!("{}/two/b:v1", src.host)]);
    let args = [
        dst.host.as_str(),
        "--image-list",
        list.path().to_str().unwrap(),
        "-o",
        "json",
        "--parallel",
        "2",
        "--username",
        "mirror",
        "--password-stdin",
    ];
    let out = mirror(&args, Some("wrong"), None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}: authentication failed for user \"mirror\"",
            dst.host
        )),
        "{stderr}"
    );

    let report = crate::support::ok_json(&mirror(&args, Some("tok-pass"), None));
    assert_complete_copy(&src, &dst, "one/a", "one/a", "v1", &a);
    assert_complete_copy(&src, &dst, "two/b", "two/b", "v1", &b);
    let mounted: u64 = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["bytes_mounted"].as_u64().unwrap())
        .sum();
    assert_eq!(mounted, base.len() as u64, "{report:#}");
    // The mount needed one token for push to one repository and pull from the other.
    let issued = dst.tokens.as_ref().unwrap().issued.lock().unwrap().clone();
    assert!(issued.contains(&"denied".to_string()), "{issued:?}");
    assert!(
        issued
            .iter()
            .any(|s| s == "repository:two/b:pull,push repository:one/a:pull"
                || s == "repository:one/a:pull,push repository:two/b:pull"),
        "{issued:?}"
    );
}

#[test]
fn foreign_layers_are_reported_not_copied_and_the_digest_is_kept() {
    let src = Registry::start();
    let dst = Registry::start();
    let client = client_for(&[&src]);
    let pushed = block_on(push_image(
        &client,
        &src,
        "windows/base",
        "ltsc",
        &Spec {
            platforms: vec!["windows/amd64"],
            docker: true,
            foreign_layer: true,
            ..Spec::default()
        },
    ));
    let list = image_list(&[format!("{}/windows/base:ltsc", src.host)]);
    let out = mirror(
        &[
            dst.host.as_str(),
            "--image-list",
            list.path().to_str().unwrap(),
            "-o",
            "json",
        ],
        None,
        None,
    );
    let report = crate::support::ok_json(&out);
    let img = &report["images"][0];
    assert_eq!(img["status"], "copied");
    let warning = img["warnings"][0].as_str().unwrap();
    assert!(warning.contains("foreign layer sha256:"), "{warning}");
    assert!(
        warning.contains("https://foreign.example.com/layer.tar.gz"),
        "{warning}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning: "));
    assert_complete_copy(&src, &dst, "windows/base", "windows/base", "ltsc", &pushed);
}

#[test]
fn a_corrupt_source_blob_fails_its_image_and_is_never_committed() {
    let src = Registry::start();
    let dst = Registry::start();
    let client = client_for(&[&src]);
    let spec = Spec {
        platforms: vec!["linux/amd64"],
        layers: 1,
        ..Spec::default()
    };
    let (bad, good) = block_on(async {
        (
            push_image(&client, &src, "corrupt", "v1", &spec).await,
            push_image(&client, &src, "fine", "v1", &spec).await,
        )
    });
    // Flip the layer's bytes on the source registry's disk, keeping its size.
    let (layer, size) = bad.blobs[0].clone();
    let hex = layer.trim_start_matches("sha256:");
    let data = src
        .dir
        .path()
        .join("storage/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    std::fs::write(&data, random_bytes(size as usize)).unwrap();

    let list = image_list(&[
        format!("{}/corrupt:v1", src.host),
        format!("{}/fine:v1", src.host),
    ]);
    let out = mirror(
        &[
            dst.host.as_str(),
            "--image-list",
            list.path().to_str().unwrap(),
            "-o",
            "json",
        ],
        None,
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["images"][0]["status"], "failed");
    let error = report["images"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("digest mismatch") && error.contains(&layer),
        "{error}"
    );
    // Caught while streaming (not only by the target's own check).
    assert!(
        error.contains(&format!("the {size} bytes received hash to sha256:")),
        "{error}"
    );
    assert!(!dst.has_blob(&layer), "corrupt blob committed at the target");
    assert_eq!(dst.tag_link("corrupt", "v1"), None);
    assert_eq!(report["images"][1]["status"], "copied");
    assert_complete_copy(&src, &dst, "fine", "fine", "v1", &good);
}

#[test]
fn transient_failures_429_503_and_dropped_connections_are_retried() {
    let src = Registry::start();
    let dst = Registry::start();
    let client = client_for(&[&src]);
    let pushed = block_on(async {
        let mut all = Vec::new();
        for i in 0..3 {
            all.push(push_image(&client, &src, &format!("flaky/app{i}"), "v1", &Spec::default()).await);
        }
        all
    });
    let src_proxy = crate::support::registry::FaultyProxy::start(&src.host, 4);
    let dst_proxy = crate::support::registry::FaultyProxy::start(&dst.host, 4);
    let list = image_list(
        &(0..3)
            .map(|i| format!("{}/flaky/app{i}:v1", src_proxy.host))
            .collect::<Vec<_>>(),
    );
    let args = [
        dst_proxy.host.as_str(),
        "--image-list",
        list.path().to_str().unwrap(),
        "-o",
        "json",
        "--parallel",
        "2",
    ];
    let out = mirror(&args, None, None);
    eprintln!("DBG {}", String::from_utf8_lossy(&out.stderr));
    let report = crate::support::ok_json(&out);
    for (i, p) in pushed.iter().enumerate() {
        assert_eq!(report["images"][i]["status"], "copied", "{report:#}");
        let repo = format!("flaky/app{i}");
        assert_complete_copy(&src, &dst, &repo, &repo, "v1", p);
    }
    let spoiled = src_proxy.stats.lock().unwrap().total() + dst_proxy.stats.lock().unwrap().total();
    assert!(spoiled >= 3, "only {spoiled} failures injected");
}

#[test]
fn a_token_without_push_is_refreshed_after_insufficient_scope() {
    let src = Registry::start();
    let dst = Registry::start_with(Options {
        token_auth: Some(("mirror".into(), "pw".into())),
        token_stingy: true,
        ..Options::default()
    });
    let client = client_for(&[&src]);
    let pushed = block_on(push_image(&client, &src, "scoped/app", "v1", &Spec::default()));
    let list = image_list(&[format!("{}/scoped/app:v1", src.host)]);
    let args = [
        dst.host.as_str(),
        "--image-list",
        list.path().to_str().unwrap(),
        "-o",
        "json",
        "--username",
        "mirror",
        "--password-stdin",
    ];
    let report = crate::support::ok_json(&mirror(&args, Some("pw"), None));
    assert_eq!(report["images"][0]["status"], "copied");
    assert_complete_copy(&src, &dst, "scoped/app", "scoped/app", "v1", &pushed);
    let issued = dst.tokens.as_ref().unwrap().issued.lock().unwrap().clone();
    let push = "repository:scoped/app:pull,push";
    assert!(
        issued.iter().any(|s| s == &format!("partial: {push}")),
        "{issued:?}"
    );
    assert!(
        issued.iter().any(|s| s == push),
        "no second token after insufficient_scope: {issued:?}"
    );
}

#[test]
fn once_the_target_has_mounted_a_blob_is_asked_for_with_one_mount_request_and_held_blobs_are_never_resent() {
    let src = Registry::start();
    let dst = Registry::start_with(Options {
        access_log: true,
        ..Options::default()
    });
    let client = client_for(&[&src]);
    // Five single-platform images in five repositories, all on one base layer.
    let spec = Spec {
        platforms: vec!["linux/amd64"],
        layers: 1,
        layer_size: 32 * 1024,
        shared_layer: Some(random_bytes(64 * 1024)),
        ..Spec::default()
    };
    let mut pushed = Vec::new();
    for i in 0..5 {
        pushed.push(block_on(push_image(
            &client,
            &src,
            &format!("base/app{i}"),
            "v1",
            &spec,
        )));
    }
    let list = |tag: &str| {
        image_list(
            &(0..5)
                .map(|i| format!("{}/base/app{i}:{tag}", src.host))
                .collect::<Vec<_>>(),
        )
    };
    let v1 = list("v1");
    let run = |list: &tempfile::NamedTempFile| {
        crate::support::ok_json(&mirror(
            &[
                &dst.host,
                "--image-list",
                list.path().to_str().unwrap(),
                "-o",
                "json",
                "--parallel",
                "1",
                "--insecure-registry",
                &src.host,
                "--insecure-registry",
                &dst.host,
            ],
            None,
            None,
        ))
    };
    run(&v1);
    for (i, p) in pushed.iter().enumerate() {
        assert_complete_copy(
            &src,
            &dst,
            &format!("base/app{i}"),
            &format!("base/app{i}"),
            "v1",
            p,
        );
    }
    // Two images at a time: when the fourth starts, two have finished and one of them mounted the base
    // layer from the other's repository, so from then on no blob is asked for with a HEAD: one
    // `POST ?mount=<digest>&from=<its own repository>` either finds it or opens the upload.
    let requests = dst.requests();
    for i in 3..5 {
        let repo = format!("/v2/base/app{i}/blobs/");
        assert!(
            !requests.iter().any(|r| r.starts_with(&format!("HEAD {repo}"))),
            "app{i}: {requests:#?}"
        );
        let from_itself = format!("from=base%2Fapp{i}");
        assert!(
            requests
                .iter()
                .any(|r| r.starts_with(&format!("POST {repo}uploads/?mount=")) && r.contains(&from_itself)),
            "app{i}: {requests:#?}"
        );
    }
    // No child manifest is asked for either: the missing tag says the image is new.
    assert!(
        !requests
            .iter()
            .any(|r| r.starts_with("HEAD /v2/base/app") && r.contains("/manifests/sha256:")),
        "{requests:#?}"
    );

    // The same images under a new tag: every blob is at the target, so none is sent again, whichever
    // way the target was asked.
    for i in 0..5 {
        let repo = format!("base/app{i}");
        let raw = src.skopeo_raw(&repo, "v1").unwrap();
        block_on(client.put_manifest(
            &kkp_shared::registry::Repository::new(&src.host, &repo),
            "v2",
            "application/vnd.oci.image.index.v1+json",
            raw.into(),
        ))
        .unwrap();
    }
    let before = dst.requests().len();
    let report = run(&list("v2"));
    for (i, image) in report["images"].as_array().unwrap().iter().enumerate() {
        assert_eq!(image["status"], "copied", "{image}");
        assert_eq!(image["bytes_copied"], 0, "{image}");
        assert_eq!(image["digest"], pushed[i].digest.as_str());
    }
    let resent: Vec<String> = dst
        .requests()
        .split_off(before)
        .into_iter()
        .filter(|r| r.starts_with("PUT ") && r.contains("/blobs/uploads/"))
        .collect();
    assert!(resent.is_empty(), "{resent:#?}");
}

#[test]
fn a_later_run_mounts_layers_an_earlier_run_put_in_another_repository() {
    let src = Registry::start();
    let dst = Registry::start();
    let client = client_for(&[&src]);
    let base = random_bytes(128 * 1024);
    let spec = Spec {
        platforms: vec!["linux/amd64"],
        layers: 1,
        layer_size: 16 * 1024,
        shared_layer: Some(base.clone()),
        ..Spec::default()
    };
    let repos = ["first/app", "second/app", "third/app"];
    let pushed: Vec<Pushed> = repos
        .iter()
        .map(|r| block_on(push_image(&client, &src, r, "v1", &spec)))
        .collect();
    let cache = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let run = |repo: &str, extra: &[&str]| -> Value {
        let list = image_list(&[format!("{}/{repo}:v1", src.host)]);
        let out = Command::new(bin("kubectl-kkp-mirror"))
            .args([
                &dst.host,
                "--image-list",
                list.path().to_str().unwrap(),
                "-o",
                "json",
            ])
            .args(["--insecure-registry", &src.host, "--insecure-registry", &dst.host])
            .args(extra)
            .env("DOCKER_CONFIG", empty.path())
            .env("REGISTRY_AUTH_FILE", empty.path().join("none.json"))
            .env("XDG_CACHE_HOME", cache.path())
            .env_remove("XDG_RUNTIME_DIR")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        crate::support::ok_json(&out)["images"][0].clone()
    };
    let one = run(repos[0], &[]);
    assert_eq!(one["bytes_mounted"], 0, "{one}");
    assert_eq!(one["bytes_copied"], pushed[0].blob_bytes(), "{one}");
    // The second run is another process: only the cache knows where the base layer is.
    let two = run(repos[1], &[]);
    assert_eq!(two["bytes_mounted"], base.len() as u64, "{two}");
    assert_eq!(
        two["bytes_copied"],
        pushed[1].blob_bytes() - base.len() as u64,
        "{two}"
    );
    assert_complete_copy(&src, &dst, repos[1], repos[1], "v1", &pushed[1]);
    let three = run(repos[2], &["--no-blob-cache"]);
    assert_eq!(three["bytes_mounted"], 0, "{three}");
    assert_eq!(three["bytes_copied"], pushed[2].blob_bytes(), "{three}");
    assert_complete_copy(&src, &dst, repos[2], repos[2], "v1", &pushed[2]);
}
