//! Faults and interruptions between `kubectl kkp mirror` and real registries: a proxy that spoils a
//! share of requests (5xx, 429 with and without `Retry-After`, dropped, stalled and reset connections,
//! truncated and corrupted blob and manifest bodies, truncated token answers, 200s with an HTML page), a
//! host that fails every request, SIGKILL and Ctrl-C in the middle of a copy. Outcomes are checked at
//! the target with skopeo and by reading the registry's storage, never through the copy engine.
//!
//! The fault mix is seeded: each proxy prints its seed when it starts, and `KKP_FAULT_SEED=<seed>`
//! replays a run's choices.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::images::{Pushed, Spec, client_for, push_image};
use crate::support::registry::{Fault, FaultConfig, FaultyProxy, Options, Registry};
use crate::support::{block_on, show};

/// The seed the proxies' choices derive from: `KKP_FAULT_SEED` (decimal or `0x…`) replays a run.
fn base_seed(default: u64) -> u64 {
    let seed = std::env::var("KKP_FAULT_SEED")
        .ok()
        .and_then(|s| {
            let s = s.trim();
            match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => s.parse().ok(),
            }
        })
        .unwrap_or(default);
    eprintln!("fault seed {seed:#x} (replay with KKP_FAULT_SEED={seed:#x})");
    seed
}

fn mirror_cmd(args: &[&str]) -> Command {
    let empty = tempfile::tempdir().unwrap().keep();
    let mut cmd = Command::new(crate::support::bin("kubectl-kkp-mirror"));
    cmd.args(args)
        .env("DOCKER_CONFIG", &empty)
        .env("XDG_CACHE_HOME", &empty)
        .env("REGISTRY_AUTH_FILE", empty.join("none.json"))
        .env_remove("XDG_RUNTIME_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn image_list(images: &[String]) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), images.join("\n") + "\n").unwrap();
    f
}

/// Pushes `n` small two-platform images `faults/app<i>:v1` to `src` (four pushers at once).
fn push_many(src: &Registry, n: usize) -> Vec<Pushed> {
    let spec = Spec {
        platforms: vec!["linux/amd64", "linux/arm64/v8"],
        layers: 1,
        layer_size: 24 * 1024,
        ..Spec::default()
    };
    let mut all: Vec<(usize, Pushed)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let spec = spec.clone();
                s.spawn(move || {
                    let client = client_for(&[src]);
                    block_on(async {
                        let mut mine = Vec::new();
                        for i in (w..n).step_by(4) {
                            let repo = format!("faults/app{i}");
                            mine.push((i, push_image(&client, src, &repo, "v1", &spec).await));
                        }
                        mine
                    })
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, p)| p).collect()
}

/// Every image is at `dst` under its tag with the source's digest (skopeo), with every child manifest
/// and blob (storage; their bytes are checked against their digests by [`Registry::verified_blobs`]).
fn assert_all_at_target(dst: &Registry, pushed: &[Pushed]) {
    std::thread::scope(|s| {
        for w in 0..4 {
            s.spawn(move || {
                for (i, p) in pushed.iter().enumerate().skip(w).step_by(4) {
                    let repo = format!("faults/app{i}");
                    assert_eq!(
                        dst.skopeo_digest(&repo, "v1").as_deref(),
                        Some(p.digest.as_str()),
                        "{repo}:v1 at the target"
                    );
                    for m in &p.manifests {
                        assert!(dst.has_manifest(&repo, m), "{repo}@{m} missing at the target");
                    }
                    for (b, _) in &p.blobs {
                        assert!(dst.has_blob(b), "{repo}: blob {b} missing at the target");
                    }
                }
            });
        }
    });
}

/// Nothing but the planned images is stored at `dst`: each repository holds exactly the image's
/// manifests (no corrupt manifest was accepted under another digest), and the storage holds exactly their
/// blobs and manifests, each hashing to its name ([`Registry::verified_blobs`]).
fn assert_nothing_else_stored(dst: &Registry, pushed: &[Pushed]) {
    let mut expected = BTreeSet::new();
    for (i, p) in pushed.iter().enumerate() {
        let repo = format!("faults/app{i}");
        let mut manifests: Vec<String> = p.manifests.iter().cloned().chain([p.digest.clone()]).collect();
        manifests.sort();
        assert_eq!(
            dst.manifest_revisions(&repo),
            manifests,
            "{repo}: manifests at the target"
        );
        expected.extend(manifests);
        expected.extend(p.blobs.iter().map(|(b, _)| b.clone()));
    }
    let stored: BTreeSet<String> = dst.verified_blobs().into_iter().map(|(d, _)| d).collect();
    assert_eq!(stored, expected, "content stored at the target");
}

const RATE: f64 = 0.15;
const PASSWORD: &str = "fault-pass";

/// A source and a target (bearer tokens) with a proxy in front of each and of the token server, each
/// spoiling 15 % of requests with every kind of fault, seeded.
struct Faulted {
    src: Registry,
    dst: Registry,
    src_proxy: FaultyProxy,
    dst_proxy: FaultyProxy,
    pushed: Vec<Pushed>,
    list: tempfile::NamedTempFile,
}

impl Faulted {
    fn start(images: usize, seed: u64) -> Faulted {
        let seed = base_seed(seed);
        let faults = |n: u64| FaultConfig {
            rate: RATE,
            seed: seed.wrapping_add(n),
            kinds: Fault::ALL.to_vec(),
            // A stall is a drop that comes late; a short one keeps the test quick.
            stall: Duration::from_millis(300),
            ..FaultConfig::default()
        };
        let src = Registry::start();
        let dst = Registry::start_with(Options {
            token_auth: Some(("mirror".into(), PASSWORD.into())),
            token_faults: Some(faults(3)),
            ..Options::default()
        });
        let t0 = Instant::now();
        let pushed = push_many(&src, images);
        eprintln!("pushed {images} images in {:.1?}", t0.elapsed());
        let src_proxy = FaultyProxy::start_with(&src.host, faults(1));
        let dst_proxy = FaultyProxy::start_with(&dst.host, faults(2));
        let list = image_list(
            &(0..images)
                .map(|i| format!("{}/faults/app{i}:v1", src_proxy.host))
                .collect::<Vec<_>>(),
        );
        Faulted {
            src,
            dst,
            src_proxy,
            dst_proxy,
            pushed,
            list,
        }
    }

    /// `kubectl kkp mirror` of every image through the proxies, the password on its stdin.
    fn spawn(&self) -> std::process::Child {
        let mut cmd = mirror_cmd(&[
            self.dst_proxy.host.as_str(),
            "--image-list",
            self.list.path().to_str().unwrap(),
            "-o",
            "json",
            "--username",
            "mirror",
            "--password-stdin",
        ]);
        let mut child = cmd.stdin(Stdio::piped()).spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(PASSWORD.as_bytes()).unwrap();
        drop(stdin);
        child
    }

    fn run(&self) -> Output {
        self.spawn().wait_with_output().unwrap()
    }

    fn proxies(&self) -> [&FaultyProxy; 3] {
        [
            &self.src_proxy,
            &self.dst_proxy,
            self.dst.token_proxy.as_ref().unwrap(),
        ]
    }

    /// Faults injected so far by the three proxies, by kind, and the requests they saw.
    fn injected(&self) -> (BTreeMap<Fault, usize>, usize) {
        let mut by_kind = BTreeMap::new();
        let mut requests = 0;
        for p in self.proxies() {
            let (n, faults, _) = p.snapshot();
            requests += n;
            for (k, c) in faults {
                *by_kind.entry(k).or_default() += c;
            }
        }
        (by_kind, requests)
    }

    /// Every image at the target (skopeo, through the token server's proxy, now quiet), and nothing else
    /// stored there.
    fn assert_complete(&self) {
        for p in self.proxies() {
            p.stop_faults();
        }
        assert_all_at_target(&self.dst, &self.pushed);
        assert_nothing_else_stored(&self.dst, &self.pushed);
        // The source is untouched by the run.
        assert_eq!(
            self.src.tag_link("faults/app0", "v1").as_deref(),
            Some(self.pushed[0].digest.as_str())
        );
    }

    /// The report says every image is at the target with the source's digest; returns the summary.
    fn assert_report(&self, out: &Output, statuses: &[&str]) -> Value {
        assert!(out.status.success(), "{}", show(out));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let images = report["images"].as_array().unwrap();
        assert_eq!(images.len(), self.pushed.len());
        for (i, p) in self.pushed.iter().enumerate() {
            let target = format!("{}/faults/app{i}:v1", self.dst_proxy.host);
            let r = images
                .iter()
                .find(|r| r["target"] == target.as_str())
                .unwrap_or_else(|| panic!("{target} not in the report"));
            assert!(statuses.iter().any(|s| r["status"] == *s), "{r:#}");
            assert_eq!(r["digest"].as_str(), Some(p.digest.as_str()), "{r:#}");
        }
        report["summary"].clone()
    }
}

/// The retries of a summary as `kind → count`.
fn retries(summary: &Value) -> BTreeMap<String, u64> {
    summary["retries"]
        .as_object()
        .unwrap_or_else(|| panic!("no retries in {summary:#}"))
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect()
}

#[test]
fn fifty_images_arrive_intact_in_one_run_through_proxies_that_spoil_15_percent_of_requests() {
    const IMAGES: usize = 50;
    let f = Faulted::start(IMAGES, 0x5eed_1500);
    let started = Instant::now();
    let out = f.run();
    let took = started.elapsed();
    let summary = f.assert_report(&out, &["copied"]);
    f.assert_complete();

    let (by_kind, requests) = f.injected();
    let injected: usize = by_kind.values().sum();
    let retried = retries(&summary);
    let blobs: Vec<&(String, u64)> = f.pushed.iter().flat_map(|p| &p.blobs).collect();
    let bytes: u64 = blobs.iter().map(|(_, s)| s).sum();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with(&format!("{IMAGES} images: ")))
        .unwrap_or_else(|| panic!("no summary line: {stderr}"));
    // The numbers the README's Reliability section reports (run with --nocapture).
    println!(
        "reliability: {IMAGES} images ({} manifests, {} blobs, {bytes} blob bytes) verified at the target; {injected} faults in {requests} requests: {by_kind:?}; retries {retried:?}; the copy took {took:.1?}\n{line}",
        IMAGES * 3,
        blobs.len(),
    );
    // Every kind of fault the issue names was injected and every kind of retry made, and the summary
    // line says so.
    for kind in [
        Fault::Drop,
        Fault::Status503,
        Fault::TooManyRetryAfter,
        Fault::Truncate,
        Fault::Corrupt,
        Fault::TruncateManifest,
        Fault::CorruptManifest,
        Fault::HtmlPage,
        Fault::ResetAfterHead,
    ] {
        assert!(
            by_kind.get(&kind).copied().unwrap_or(0) > 0,
            "no {kind:?} injected: {by_kind:?}"
        );
    }
    for kind in ["connection", "body", "garbled", "digest", "throttled", "server"] {
        assert!(retried[kind] > 0, "no {kind} retry: {retried:?}");
        assert!(line.contains(&format!("{} {kind}", retried[kind])), "{line}");
    }
    assert!(
        injected * 100 >= requests * 12,
        "fewer than 12% of requests faulted: {injected} of {requests}"
    );
}

#[test]
fn sigkill_halfway_through_a_faulty_copy_and_a_rerun_complete_every_image() {
    const IMAGES: usize = 50;
    let f = Faulted::start(IMAGES, 0x5eed_1501);
    let tagged = |dst: &Registry| {
        (0..IMAGES)
            .filter(|i| dst.tag_link(&format!("faults/app{i}"), "v1").is_some())
            .count()
    };
    let mut child = f.spawn();
    let start = Instant::now();
    while tagged(&f.dst) < IMAGES / 2
        && child.try_wait().unwrap().is_none()
        && start.elapsed() < Duration::from_secs(90)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    let killed = child.wait_with_output().unwrap();
    let done = tagged(&f.dst);
    assert!(
        killed.status.code().is_none(),
        "the first run ended before SIGKILL: {}",
        show(&killed)
    );
    assert!(done < IMAGES, "{done} images tagged before SIGKILL");
    // Every tag the killed run wrote points to a complete image.
    for (i, p) in f.pushed.iter().enumerate() {
        let repo = format!("faults/app{i}");
        if let Some(link) = f.dst.tag_link(&repo, "v1") {
            assert_eq!(link, p.digest, "{repo}");
            for (b, _) in &p.blobs {
                assert!(f.dst.has_blob(b), "{repo}:v1 tagged without blob {b}");
            }
        }
    }
    let out = f.run();
    let summary = f.assert_report(&out, &["copied", "up-to-date"]);
    assert!(
        summary["up_to_date"].as_u64().unwrap() >= done as u64,
        "{summary:#}"
    );
    f.assert_complete();
    println!(
        "reliability: SIGKILL after {done} of {IMAGES} images, the rerun: {}; {:?}",
        summary["retries"],
        f.injected()
    );
}

#[test]
fn manifest_token_and_html_answers_spoiled_once_are_fetched_again() {
    let src = Registry::start();
    let dst = Registry::start_with(Options {
        token_auth: Some(("mirror".into(), PASSWORD.into())),
        // The first token answer is cut in half.
        token_faults: Some(FaultConfig {
            rate: 1.0,
            kinds: vec![Fault::TruncateToken],
            only_first: true,
            ..FaultConfig::default()
        }),
        ..Options::default()
    });
    let pushed = push_many(&src, 3);
    // The first time each request is seen, it is spoiled by one of these.
    let proxy = FaultyProxy::start_with(
        &src.host,
        FaultConfig {
            rate: 1.0,
            seed: base_seed(0x5eed_0003),
            kinds: vec![
                Fault::TruncateManifest,
                Fault::CorruptManifest,
                Fault::HtmlPage,
                Fault::ResetAfterHead,
            ],
            only_first: true,
            ..FaultConfig::default()
        },
    );
    let list = image_list(
        &(0..pushed.len())
            .map(|i| format!("{}/faults/app{i}:v1", proxy.host))
            .collect::<Vec<_>>(),
    );
    let mut child = mirror_cmd(&[
        dst.host.as_str(),
        "--image-list",
        list.path().to_str().unwrap(),
        "-o",
        "json",
        "--username",
        "mirror",
        "--password-stdin",
    ])
    .stdin(Stdio::piped())
    .spawn()
    .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(PASSWORD.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (_, faults, _) = proxy.snapshot();
    let (_, token_faults, _) = dst.token_proxy.as_ref().unwrap().snapshot();
    assert_eq!(
        token_faults.get(&Fault::TruncateToken),
        Some(&1),
        "{token_faults:?}"
    );
    let spoiled_manifests = proxy.stats.lock().unwrap().spoiled_manifests.len();
    // Every manifest GET (3 tags, 6 children) was spoiled once, by a body fault, an HTML page or a reset.
    let manifest_faults = spoiled_manifests
        + faults.get(&Fault::HtmlPage).copied().unwrap_or(0)
        + faults.get(&Fault::ResetAfterHead).copied().unwrap_or(0);
    assert!(spoiled_manifests > 0, "{faults:?}");
    assert!(manifest_faults >= 9, "{faults:?}");
    for kind in [
        Fault::TruncateManifest,
        Fault::CorruptManifest,
        Fault::HtmlPage,
        Fault::ResetAfterHead,
    ] {
        assert!(
            faults.get(&kind).copied().unwrap_or(0) > 0,
            "no {kind:?}: {faults:?}"
        );
    }
    for (i, p) in pushed.iter().enumerate() {
        let r = &report["images"][i];
        assert_eq!(r["status"], "copied", "{r:#}");
        assert_eq!(r["digest"].as_str(), Some(p.digest.as_str()), "{r:#}");
    }
    let retried = retries(&report["summary"]);
    assert!(retried["body"] > 0 && retried["garbled"] > 0, "{retried:?}");
    dst.token_proxy.as_ref().unwrap().stop_faults();
    assert_all_at_target(&dst, &pushed);
    assert_nothing_else_stored(&dst, &pushed);
}

#[test]
fn a_host_that_fails_every_request_ends_the_run_within_its_budget_one_line_per_image() {
    const IMAGES: usize = 50;
    let src = Registry::start();
    let dst = Registry::start();
    // One small image under 50 tags, so that every request the proxy passes on finds something.
    let client = client_for(&[&src]);
    let repo = kkp_shared::registry::Repository::new(&src.host, "faults/dead");
    block_on(async {
        let spec = Spec {
            platforms: vec!["linux/amd64"],
            layers: 1,
            layer_size: 1024,
            ..Spec::default()
        };
        push_image(&client, &src, "faults/dead", "t0", &spec).await;
        let m = client.get_manifest(&repo, "t0").await.unwrap();
        for i in 1..IMAGES {
            client
                .put_manifest(&repo, &format!("t{i}"), &m.media_type, m.bytes.clone())
                .await
                .unwrap();
        }
    });
    let proxy = FaultyProxy::start_with(
        &src.host,
        FaultConfig {
            rate: 1.0,
            seed: base_seed(0x5eed_0100),
            kinds: Fault::ALL.to_vec(),
            ..FaultConfig::default()
        },
    );
    let list = image_list(
        &(0..IMAGES)
            .map(|i| format!("{}/faults/dead:t{i}", proxy.host))
            .collect::<Vec<_>>(),
    );
    let started = Instant::now();
    let out = mirror_cmd(&[
        dst.host.as_str(),
        "--image-list",
        list.path().to_str().unwrap(),
        "-o",
        "json",
    ])
    .output()
    .unwrap();
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(took < Duration::from_secs(45), "the run took {took:.1?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let failed: Vec<&str> = stderr.lines().filter(|l| l.starts_with("failed: ")).collect();
    assert_eq!(failed.len(), IMAGES, "{stderr}");
    for l in &failed {
        assert!(l.contains(&proxy.host), "{l}");
    }
    let given_up: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("is not answering"))
        .collect();
    assert!(
        given_up.iter().filter(|l| !l.starts_with("failed: ")).count() == 1,
        "one line gives the host up: {stderr}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["summary"]["failed"], IMAGES, "{report:#}");
    let spent: u64 = retries(&report["summary"]).values().sum();
    // The budget: 20 retries, plus one per two answers (a reset after the head of `/v2/` counts as one).
    assert!(spent <= 30, "{spent} retries: {}", report["summary"]);
    let (requests, _, _) = proxy.snapshot();
    assert!(requests < 150, "{requests} requests reached the dead host");
    for i in 0..IMAGES {
        assert_eq!(dst.tag_link("faults/dead", &format!("t{i}")), None);
    }
    println!(
        "reliability: every request to one host spoiled: {IMAGES} images failed in {took:.1?} after {spent} retries and {requests} requests"
    );
}

#[test]
fn ctrl_c_prints_what_was_done_exits_130_and_a_rerun_completes() {
    const IMAGES: usize = 16;
    let src = Registry::start();
    let dst = Registry::start();
    let pushed = push_many(&src, IMAGES);
    // A slow link to the target, so the copy is still going when Ctrl-C comes.
    let slow = FaultyProxy::start_with(
        &dst.host,
        FaultConfig {
            rate: 0.0,
            delay: Duration::from_millis(40),
            ..FaultConfig::default()
        },
    );
    let list = image_list(
        &(0..IMAGES)
            .map(|i| format!("{}/faults/app{i}:v1", src.host))
            .collect::<Vec<_>>(),
    );
    let args = [
        slow.host.as_str(),
        "--image-list",
        list.path().to_str().unwrap(),
        "-o",
        "json",
        "--parallel",
        "1",
    ];
    let child = mirror_cmd(&args).spawn().unwrap();
    let tagged = |dst: &Registry| {
        (0..IMAGES)
            .filter(|i| dst.tag_link(&format!("faults/app{i}"), "v1").is_some())
            .count()
    };
    // Interrupt once the first image is complete.
    let start = std::time::Instant::now();
    while tagged(&dst) == 0 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("interrupted: "))
        .unwrap_or_else(|| panic!("no summary: {stderr}"));
    let complete: usize = line
        .strip_prefix("interrupted: ")
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(
        line.contains(&format!(
            "of {IMAGES} images complete at the target, {} pending",
            IMAGES - complete
        )),
        "{line}"
    );
    assert!((1..IMAGES).contains(&complete), "{line}");
    let pending = stderr.lines().filter(|l| l.starts_with("pending: ")).count();
    assert_eq!(pending, IMAGES - complete, "{stderr}");
    // Every tag at the target points to a complete image.
    for (i, p) in pushed.iter().enumerate() {
        let repo = format!("faults/app{i}");
        if let Some(link) = dst.tag_link(&repo, "v1") {
            assert_eq!(link, p.digest, "{repo}");
            for (b, _) in &p.blobs {
                assert!(dst.has_blob(b), "{repo}:v1 tagged without blob {b}");
            }
            for m in &p.manifests {
                assert!(dst.skopeo_raw(&repo, m).is_some(), "{repo}:v1 tagged without {m}");
            }
        }
    }
    assert!(tagged(&dst) < IMAGES, "the copy finished before Ctrl-C");

    let out = mirror_cmd(&args).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let copied = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "copied")
        .count();
    assert!(copied >= IMAGES - complete, "{report:#}");
    assert_all_at_target(&dst, &pushed);
}

#[test]
fn a_blob_corrupted_on_the_way_is_refetched_and_never_stored_corrupt() {
    let src = Registry::start();
    let dst = Registry::start();
    let pushed = push_many(&src, 3);
    // The first GET of every blob comes back with one byte flipped (same length); the second is intact.
    let proxy = FaultyProxy::start_with(
        &src.host,
        FaultConfig {
            rate: 1.0,
            kinds: vec![Fault::Corrupt],
            only_first: true,
            ..FaultConfig::default()
        },
    );
    let list = image_list(
        &(0..pushed.len())
            .map(|i| format!("{}/faults/app{i}:v1", proxy.host))
            .collect::<Vec<_>>(),
    );
    let out = mirror_cmd(&[
        dst.host.as_str(),
        "--image-list",
        list.path().to_str().unwrap(),
        "-o",
        "json",
    ])
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (_, faults, mut spoiled) = proxy.snapshot();
    let mut all: Vec<String> = pushed
        .iter()
        .flat_map(|p| p.blobs.iter().map(|(d, _)| d.clone()))
        .collect();
    all.sort();
    spoiled.sort();
    assert_eq!(spoiled, all, "every blob was corrupted once on the way");
    assert_eq!(faults.get(&Fault::Corrupt), Some(&all.len()));
    for (i, p) in pushed.iter().enumerate() {
        let target = format!("{}/faults/app{i}:v1", dst.host);
        let r = report["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["target"] == target.as_str())
            .unwrap();
        assert_eq!(r["status"], "copied", "{r:#}");
        assert_eq!(r["digest"].as_str(), Some(p.digest.as_str()));
        // Each blob counted once, although its bytes crossed twice.
        assert_eq!(r["bytes_copied"].as_u64(), Some(p.blob_bytes()), "{r:#}");
    }
    // Nothing corrupt was stored (every blob hashes to its name), and every blob is there.
    let stored = dst.verified_blobs();
    for d in &all {
        assert!(stored.iter().any(|(b, _)| b == d), "{d} not refetched");
    }
    assert_all_at_target(&dst, &pushed);
}
