//! `kubectl kkp mirror --binaries DIR` against a loopback file server playing dl.k8s.io and github.com
//! (through `--binaries-source`): the files nodes request land at their URL paths with upstream's
//! `.sha256`, bad content is refused, reruns ask nothing, a SIGKILLed run is completed by a rerun.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::fileserver::FileServer;
use crate::support::{bin, show};

fn mirror(args: &[&str]) -> Command {
    let mut cmd = Command::new(bin("kubectl-kkp-mirror"));
    cmd.args(args)
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn run(args: &[&str]) -> Output {
    mirror(args).output().unwrap()
}

/// The dry-run's `binaries[]` for `extra` arguments.
fn planned(extra: &[&str]) -> Vec<Value> {
    let mut args = vec![
        "--binaries",
        "/nonexistent/never-written",
        "--dry-run",
        "-o",
        "json",
    ];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert!(out.status.success(), "{}", show(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["binaries"].as_array().unwrap().clone()
}

fn hex_sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Server path for an upstream URL (`/dl/…` for dl.k8s.io, `/gh/…` for github.com).
fn served(url: &str) -> String {
    url.replace("https://dl.k8s.io/", "/dl/")
        .replace("https://github.com/", "/gh/")
}

/// Fake content for every planned file, and its checksum file as upstream writes it (bare hex for
/// Kubernetes and cri-tools, `HEX  NAME` for CNI plugins).
fn fill(files: &[Value]) -> (HashMap<String, Vec<u8>>, HashMap<String, Vec<u8>>) {
    let mut served_files = HashMap::new();
    let mut content = HashMap::new();
    for f in files {
        let path = f["path"].as_str().unwrap().to_string();
        let body: Vec<u8> = format!("fake {path}\n").repeat(50).into_bytes();
        let name = path.rsplit('/').next().unwrap();
        let sum = if f["kind"] == "cni" {
            format!("{}  {name}\n", hex_sha256(&body))
        } else {
            hex_sha256(&body)
        };
        served_files.insert(served(f["url"].as_str().unwrap()), body.clone());
        served_files.insert(served(f["checksumUrl"].as_str().unwrap()), sum.into_bytes());
        content.insert(path, body);
    }
    (served_files, content)
}

fn sources(server: &FileServer) -> Vec<String> {
    vec![
        "--binaries-source".into(),
        format!("dl.k8s.io={}/dl", server.url),
        "--binaries-source".into(),
        format!("github.com={}/gh/", server.url),
    ]
}

fn args<'a>(dir: &'a str, srcs: &'a [String], extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["--binaries", dir];
    a.extend(srcs.iter().map(String::as_str));
    a.extend_from_slice(extra);
    a
}

/// Files below `dir` whose name marks an unfinished download.
fn partials(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else if e.file_name().to_string_lossy().contains(".kkp-partial-") {
                found.push(p.display().to_string());
            }
        }
    }
    found
}

#[test]
fn binaries_dry_run_of_v2_31_0_lists_what_its_osps_download() {
    let files = planned(&[]);
    assert_eq!(files.len(), 198);
    let count = |kind: &str| files.iter().filter(|f| f["kind"] == kind).count();
    assert_eq!(
        (count("kubernetes"), count("crictl"), count("cni")),
        (31 * 3 * 2, 4 * 2, 2 * 2)
    );
    let versions = |kind: &str| {
        let mut v: Vec<&str> = files
            .iter()
            .filter(|f| f["kind"] == kind)
            .map(|f| f["version"].as_str().unwrap())
            .collect();
        v.dedup();
        v
    };
    assert_eq!(versions("crictl"), ["v1.33.0", "v1.34.0", "v1.35.0", "v1.36.0"]);
    assert_eq!(versions("cni"), ["v1.9.1", "v1.7.1"]);
    let kubelet = &files[0];
    assert_eq!(
        kubelet["url"],
        "https://dl.k8s.io/v1.33.0/bin/linux/amd64/kubelet"
    );
    assert_eq!(kubelet["path"], "v1.33.0/bin/linux/amd64/kubelet");
    assert_eq!(
        kubelet["checksumUrl"],
        "https://dl.k8s.io/v1.33.0/bin/linux/amd64/kubelet.sha256"
    );
    let amzn = files.iter().find(|f| f["version"] == "v1.7.1").unwrap();
    assert_eq!(amzn["why"], "osp-amzn2 (OSM v1.11.3)");
    // --binaries-arch and --version-filter narrow it.
    assert_eq!(
        planned(&["--binaries-arch", "arm64", "--version-filter", "1.36"]).len(),
        3 + 1 + 2
    );
    assert!(!Path::new("/nonexistent/never-written").exists());
}

#[test]
fn binaries_full_set_then_a_rerun_asks_nothing() {
    let files = planned(&[]);
    let (served_files, content) = fill(&files);
    let server = FileServer::start(served_files.clone());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("www");
    let dir_s = dir.to_str().unwrap();
    let srcs = sources(&server);
    let out = run(&args(dir_s, &srcs, &["--parallel", "4"]));
    assert!(out.status.success(), "{}", show(&out));
    // Each file downloaded once with its checksum file: two requests per file.
    assert_eq!(server.requests(), files.len() * 2);
    for f in &files {
        let path = f["path"].as_str().unwrap();
        let on_disk = std::fs::read(dir.join(path)).unwrap_or_else(|_| panic!("{path} missing"));
        assert_eq!(on_disk, content[path], "{path}");
        let sum = std::fs::read(dir.join(format!("{path}.sha256"))).unwrap();
        assert_eq!(
            sum,
            served_files[&served(f["checksumUrl"].as_str().unwrap())],
            "{path}.sha256"
        );
        assert!(String::from_utf8(sum).unwrap().starts_with(&hex_sha256(&on_disk)));
    }
    // KKP's mirror-binaries layout resolves to the same files.
    assert_eq!(
        std::fs::read(dir.join("release/v1.35.7/bin/linux/arm64/kubectl")).unwrap(),
        content["v1.35.7/bin/linux/arm64/kubectl"]
    );
    assert!(partials(&dir).is_empty());
    let before = server.requests();
    let out = run(&args(dir_s, &srcs, &[]));
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(server.requests(), before, "a rerun must not download anything");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 downloaded"),
        "{}",
        show(&out)
    );
    // --verify rechecks every checksum offline and names a spoiled file.
    let out = run(&args(dir_s, &srcs, &["--verify"]));
    assert!(out.status.success(), "{}", show(&out));
    std::fs::write(dir.join("v1.33.0/bin/linux/amd64/kubeadm"), b"spoiled").unwrap();
    std::fs::remove_file(dir.join("v1.34.1/bin/linux/arm64/kubelet")).unwrap();
    let out = run(&args(dir_s, &srcs, &["--verify"]));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("checksum mismatch: v1.33.0/bin/linux/amd64/kubeadm"),
        "{text}"
    );
    assert!(
        text.contains("missing: v1.34.1/bin/linux/arm64/kubelet"),
        "{text}"
    );
    assert_eq!(server.requests(), before);
}

#[test]
fn binaries_corrupt_upstream_file_is_refused_and_nothing_left() {
    let files = planned(&["--version-filter", "1.36"]);
    let (served_files, _) = fill(&files);
    let server = FileServer::start(served_files);
    let bad = "/dl/v1.36.3/bin/linux/amd64/kubelet";
    server.put(bad, b"not what the checksum says".to_vec());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("www");
    let srcs = sources(&server);
    let out = run(&args(dir.to_str().unwrap(), &srcs, &["--version-filter", "1.36"]));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.contains("checksum mismatch"))
        .unwrap_or_default();
    assert!(line.contains(&format!("{}{bad}", server.url)), "{stderr}");
    assert!(!dir.join("v1.36.3/bin/linux/amd64/kubelet").exists());
    assert!(!dir.join("v1.36.3/bin/linux/amd64/kubelet.sha256").exists());
    assert!(dir.join("v1.36.3/bin/linux/amd64/kubeadm").exists());
    assert!(partials(&dir).is_empty(), "{:?}", partials(&dir));
}

#[test]
fn binaries_sigkill_mid_run_then_a_rerun_completes_the_set() {
    let files = planned(&["--version-filter", "1.35"]);
    let (served_files, content) = fill(&files);
    let server = FileServer::start(served_files);
    server.set_delay(Duration::from_millis(40));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("www");
    let dir_s = dir.to_str().unwrap();
    let srcs = sources(&server);
    let a = args(dir_s, &srcs, &["--version-filter", "1.35", "--parallel", "2"]);
    let mut child = mirror(&a).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.requests() < 20 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let at_kill = server.requests();
    assert!(at_kill < files.len() * 2, "the run finished before it was killed");
    // Whatever is at a final path is whole.
    for f in &files {
        let path = f["path"].as_str().unwrap();
        if let Ok(bytes) = std::fs::read(dir.join(path)) {
            assert_eq!(bytes, content[path], "{path} is incomplete");
        }
    }
    server.set_delay(Duration::ZERO);
    let out = run(&a);
    assert!(out.status.success(), "{}", show(&out));
    for f in &files {
        let path = f["path"].as_str().unwrap();
        assert_eq!(std::fs::read(dir.join(path)).unwrap(), content[path], "{path}");
    }
    assert!(partials(&dir).is_empty(), "{:?}", partials(&dir));
    // The rerun fetched only what the killed run had not completed.
    assert!(server.requests() - at_kill < files.len() * 2, "{}", show(&out));
}

#[test]
fn binaries_bad_input_is_one_line_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("www");
    let dir_s = dir.to_str().unwrap();
    let a_file = tmp.path().join("file");
    std::fs::write(&a_file, b"x").unwrap();
    let below_file = a_file.join("www");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--binaries", dir_s, "--binaries-arch", "s390x"], "s390x"),
        (
            vec!["--binaries", dir_s, "--binaries-source", "dl.k8s.io=not a url"],
            "not a URL",
        ),
        (
            vec!["--binaries", dir_s, "--binaries-source", "dl.k8s.io"],
            "HOST=URL",
        ),
        (
            vec![
                "--binaries",
                below_file.to_str().unwrap(),
                "--binaries-source",
                "dl.k8s.io=http://127.0.0.1:9",
            ],
            "cannot write there",
        ),
        (vec!["--binaries", a_file.to_str().unwrap()], "cannot write there"),
    ];
    for (a, want) in cases {
        let out = run(&a);
        assert_ne!(out.status.code(), Some(0), "{a:?}: {}", show(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{a:?}: {stderr}");
        assert!(stderr.contains(want), "{a:?}: {stderr}");
        assert!(!dir.exists(), "{a:?} wrote {dir_s}");
        assert_eq!(std::fs::read(&a_file).unwrap(), b"x");
    }
}

#[test]
fn registry_prefix_keeps_only_images_below_it() {
    let images = |extra: &[&str]| -> Vec<String> {
        let mut a = vec!["--dry-run", "-o", "json"];
        a.extend_from_slice(extra);
        let out = run(&a);
        assert!(out.status.success(), "{}", show(&out));
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        doc["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["source"].as_str().unwrap().to_string())
            .collect()
    };
    let all = images(&[]);
    let kept = images(&[
        "--registry-prefix",
        "quay.io/kubermatic/",
        "--registry-prefix",
        "registry.k8s.io/etcd",
    ]);
    let want: Vec<&String> = all
        .iter()
        .filter(|s| s.starts_with("quay.io/kubermatic/") || s.starts_with("registry.k8s.io/etcd"))
        .collect();
    assert!(!want.is_empty() && want.len() < all.len());
    assert_eq!(kept.iter().collect::<Vec<_>>(), want);
}

/// Paths below `dir`, files and links, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                found.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

#[test]
fn binaries_travel_in_an_archive_and_unpack_inside() {
    let filter = ["--version-filter", "1.36"];
    let files = planned(&filter);
    let (served_files, content) = fill(&files);
    let server = FileServer::start(served_files);
    let tmp = tempfile::tempdir().unwrap();
    let (outside, inside) = (tmp.path().join("outside"), tmp.path().join("inside"));
    let archive = tmp.path().join("kkp.tar");
    let srcs = sources(&server);
    // No images (an empty image list): the archive carries only the node binaries.
    let empty = tmp.path().join("no-images.txt");
    std::fs::write(&empty, "").unwrap();
    let no_images = ["--image-list", empty.to_str().unwrap()];
    let mut write = args(outside.to_str().unwrap(), &srcs, &filter);
    write.extend_from_slice(&no_images);
    write.extend_from_slice(&["--archive", archive.to_str().unwrap()]);
    let out = run(&write);
    assert!(out.status.success(), "{}", show(&out));
    let asked = server.requests();
    assert_eq!(asked, files.len() * 2);
    // The tar holds every file and its .sha256 below kkp-binaries/, and the plan.
    let mut names = Vec::new();
    let mut tar = tar::Archive::new(std::fs::File::open(&archive).unwrap());
    for e in tar.entries().unwrap() {
        names.push(e.unwrap().path().unwrap().display().to_string());
    }
    for f in &files {
        let p = f["path"].as_str().unwrap();
        assert!(
            names.contains(&format!("kkp-binaries/{p}")),
            "{p} not carried: {names:?}"
        );
        assert!(
            names.contains(&format!("kkp-binaries/{p}.sha256")),
            "{p}.sha256 not carried"
        );
    }
    assert!(names.contains(&"kkp-binaries/plan.json".to_string()));
    assert_eq!(
        names.last().map(String::as_str),
        Some("index.json"),
        "index.json last"
    );

    // Inside: unpack only (no REGISTRY), nothing asked of the server.
    let inside_s = inside.to_str().unwrap();
    let unpack = [
        "--from-archive",
        archive.to_str().unwrap(),
        "--binaries",
        inside_s,
    ];
    let out = run(&unpack);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(server.requests(), asked);
    for f in &files {
        let p = f["path"].as_str().unwrap();
        assert_eq!(std::fs::read(inside.join(p)).unwrap(), content[p], "{p}");
        assert_eq!(
            std::fs::read(inside.join(format!("{p}.sha256"))).unwrap(),
            std::fs::read(outside.join(format!("{p}.sha256"))).unwrap()
        );
    }
    assert_eq!(
        tree(&inside),
        tree(&outside),
        "the same files and links as outside"
    );
    assert_eq!(
        std::fs::read(inside.join("release/v1.36.3/bin/linux/arm64/kubeadm")).unwrap(),
        content["v1.36.3/bin/linux/arm64/kubeadm"]
    );
    // A rerun unpacks nothing; --verify against the archive's checksums passes, then names a spoiled file.
    let out = run(&unpack);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(" 0 unpacked"),
        "{}",
        show(&out)
    );
    let mut verify = unpack.to_vec();
    verify.push("--verify");
    let out = run(&verify);
    assert!(out.status.success(), "{}", show(&out));
    std::fs::write(inside.join("v1.36.3/bin/linux/amd64/kubelet"), b"spoiled").unwrap();
    let out = run(&verify);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("checksum mismatch: v1.36.3/bin/linux/amd64/kubelet"),
        "{}",
        show(&out)
    );
    // Unpacking again repairs it.
    let out = run(&unpack);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(" 1 unpacked"),
        "{}",
        show(&out)
    );
    assert_eq!(
        std::fs::read(inside.join("v1.36.3/bin/linux/amd64/kubelet")).unwrap(),
        content["v1.36.3/bin/linux/amd64/kubelet"]
    );

    // An incremental archive against the first carries no file again, and needs its base's files.
    let incremental = tmp.path().join("kkp-2.tar");
    let mut write2 = args(outside.to_str().unwrap(), &srcs, &filter);
    write2.extend_from_slice(&no_images);
    write2.extend_from_slice(&[
        "--archive",
        incremental.to_str().unwrap(),
        "--since",
        archive.to_str().unwrap(),
    ]);
    let out = run(&write2);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        server.requests(),
        asked,
        "a complete DIR is archived without downloads"
    );
    assert!(std::fs::metadata(&incremental).unwrap().len() < std::fs::metadata(&archive).unwrap().len() / 4);
    let fresh = tmp.path().join("fresh");
    let out = run(&[
        "--from-archive",
        incremental.to_str().unwrap(),
        "--binaries",
        fresh.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unpack kkp.tar first"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        tree(&fresh).iter().all(|p| !p.contains("/bin/")),
        "{:?}",
        tree(&fresh)
    );
    let out = run(&[
        "--from-archive",
        incremental.to_str().unwrap(),
        "--binaries",
        inside_s,
    ]);
    assert!(out.status.success(), "{}", show(&out));

    // A carried file spoiled in the archive: refused, naming it, and nothing written below DIR.
    let mut raw = std::fs::read(&archive).unwrap();
    let needle = &content["v1.36.3/bin/linux/arm64/kubectl"];
    let at = raw.windows(needle.len()).position(|w| w == &needle[..]).unwrap();
    raw[at + 3] ^= 0x20;
    let spoiled = tmp.path().join("spoiled.tar");
    std::fs::write(&spoiled, raw).unwrap();
    let fresh = tmp.path().join("fresh2");
    let out = run(&[
        "--from-archive",
        spoiled.to_str().unwrap(),
        "--binaries",
        fresh.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("kkp-binaries/v1.36.3/bin/linux/arm64/kubectl is corrupt"),
        "{stderr}"
    );
    assert_eq!(tree(&fresh), Vec::<String>::new(), "nothing below DIR");

    // An archive without node binaries, and --from-archive with neither REGISTRY nor --binaries.
    let out = run(&["--from-archive", incremental.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--binaries DIR"),
        "{}",
        show(&out)
    );
}

#[test]
fn one_compressed_archive_carries_images_and_binaries_and_one_command_restores_both() {
    use crate::support::images::{Spec, client_for, push_image};
    use crate::support::registry::Registry;
    let filter = ["--version-filter", "1.35"];
    let files = planned(&filter);
    let (served_files, content) = fill(&files);
    let server = FileServer::start(served_files);
    let (src, dst) = (Registry::start(), Registry::start());
    let spec = Spec {
        platforms: vec!["linux/amd64", "linux/arm64/v8"],
        ..Spec::default()
    };
    let pushed = crate::support::block_on(push_image(&client_for(&[&src]), &src, "app", "v1", &spec));
    let tmp = tempfile::tempdir().unwrap();
    let list = tmp.path().join("images.txt");
    std::fs::write(&list, format!("{}/app:v1\n", src.host)).unwrap();
    let archive = tmp.path().join("kkp.tar.gz");
    let srcs = sources(&server);
    let outside = tmp.path().join("outside");
    let mut write = args(outside.to_str().unwrap(), &srcs, &filter);
    write.extend_from_slice(&[
        "--image-list",
        list.to_str().unwrap(),
        "--insecure-registry",
        &src.host,
        "--archive",
        archive.to_str().unwrap(),
    ]);
    let out = run(&write);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1 images"),
        "{}",
        show(&out)
    );
    let inside = tmp.path().join("inside");
    let out = run(&[
        &dst.host,
        "--insecure-registry",
        &dst.host,
        "--from-archive",
        archive.to_str().unwrap(),
        "--binaries",
        inside.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", show(&out));
    // The source host is dropped in the target name, as for any plan.
    assert_eq!(
        dst.skopeo_digest("app", "v1").as_deref(),
        Some(pushed.digest.as_str())
    );
    for f in &files {
        let p = f["path"].as_str().unwrap();
        assert_eq!(std::fs::read(inside.join(p)).unwrap(), content[p], "{p}");
    }
    // A direct copy with --binaries: images and files in one run (the downloads beside the copy).
    let direct = tmp.path().join("direct");
    // Images from `src` to `dst` and the files below `dir`, in one run.
    let copy_with = |dir: &Path, dst: &Registry| {
        let mut a = args(dir.to_str().unwrap(), &srcs, &filter);
        a.extend_from_slice(&[
            &dst.host,
            "--image-list",
            list.to_str().unwrap(),
            "--insecure-registry",
            &src.host,
            "--insecure-registry",
            &dst.host,
        ]);
        run(&a)
    };
    let dst2 = Registry::start();
    let out = copy_with(&direct, &dst2);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        dst2.skopeo_digest("app", "v1").as_deref(),
        Some(pushed.digest.as_str())
    );
    assert_eq!(tree(&direct), tree(&inside));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("{} files, {} downloaded", files.len(), files.len())),
        "{stdout}"
    );
    // A DIR that cannot be written is refused before any image is pushed.
    let blocker = tmp.path().join("a-file");
    std::fs::write(&blocker, "").unwrap();
    let dst3 = Registry::start();
    let out = copy_with(&blocker.join("dir"), &dst3);
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot write there"),
        "{}",
        show(&out)
    );
    assert_eq!(dst3.tag_link("app", "v1"), None, "nothing pushed");
    // Pushing without --binaries says what else the archive holds.
    let out = run(&[
        &dst.host,
        "--insecure-registry",
        &dst.host,
        "--from-archive",
        archive.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("also carries {} node binaries", files.len())),
        "{}",
        show(&out)
    );
}
