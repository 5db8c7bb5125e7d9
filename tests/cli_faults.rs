//! Faults and interruptions between `kubectl kkp mirror` and real registries: a proxy that spoils a
//! share of requests (5xx, 429 with and without `Retry-After`, dropped and stalled connections,
//! truncated and corrupted blob bodies), and Ctrl-C in the middle of a copy. Outcomes are checked at the
//! target with skopeo and by reading the registry's storage, never through the copy engine.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::images::{Pushed, Spec, client_for, push_image};
use crate::support::registry::{Fault, FaultConfig, FaultyProxy, Registry};
use crate::support::{block_on, show};

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

#[test]
fn fifty_images_arrive_intact_through_a_proxy_that_spoils_one_request_in_ten() {
    const IMAGES: usize = 50;
    let src = Registry::start();
    let dst = Registry::start();
    let t0 = std::time::Instant::now();
    let pushed = push_many(&src, IMAGES);
    eprintln!("pushed {IMAGES} images in {:.1?}", t0.elapsed());
    // Both sides faulted, with different seeds; body faults only happen on the source's blob GETs.
    let src_proxy = FaultyProxy::start_with(
        &src.host,
        FaultConfig {
            seed: 0x5eed_0001,
            ..FaultConfig::default()
        },
    );
    let dst_proxy = FaultyProxy::start_with(
        &dst.host,
        FaultConfig {
            seed: 0x5eed_0002,
            ..FaultConfig::default()
        },
    );
    let list = image_list(
        &(0..IMAGES)
            .map(|i| format!("{}/faults/app{i}:v1", src_proxy.host))
            .collect::<Vec<_>>(),
    );
    let started = std::time::Instant::now();
    let out = mirror_cmd(&[
        dst_proxy.host.as_str(),
        "--image-list",
        list.path().to_str().unwrap(),
        "-o",
        "json",
    ])
    .output()
    .unwrap();
    let took = started.elapsed();
    assert!(out.status.success(), "{}", show(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let images = report["images"].as_array().unwrap();
    assert_eq!(images.len(), IMAGES);
    for (i, p) in pushed.iter().enumerate() {
        let target = format!("{}/faults/app{i}:v1", dst_proxy.host);
        let r = images
            .iter()
            .find(|r| r["target"] == target.as_str())
            .unwrap_or_else(|| panic!("{target} not in the report"));
        assert_eq!(r["status"], "copied", "{r:#}");
        assert_eq!(r["digest"].as_str(), Some(p.digest.as_str()), "{r:#}");
    }
    assert_all_at_target(&dst, &pushed);

    // The target's storage: every blob hashes to its name, and every blob the proxy spoiled on the
    // way was fetched again and is there intact.
    let at_target = dst.verified_blobs();
    let (src_requests, src_faults, spoiled) = src_proxy.snapshot();
    let (dst_requests, dst_faults, _) = dst_proxy.snapshot();
    for d in &spoiled {
        assert!(
            at_target.iter().any(|(b, _)| b == d),
            "spoiled blob {d} not refetched"
        );
    }
    let mut by_kind = std::collections::BTreeMap::<Fault, usize>::new();
    for (k, n) in src_faults.iter().chain(dst_faults.iter()) {
        *by_kind.entry(*k).or_default() += n;
    }
    let injected: usize = by_kind.values().sum();
    let requests = src_requests + dst_requests;
    let blobs: Vec<&(String, u64)> = pushed.iter().flat_map(|p| &p.blobs).collect();
    let bytes: u64 = blobs.iter().map(|(_, s)| s).sum();
    // The numbers the README's Reliability section reports (run with --nocapture).
    println!(
        "reliability: {IMAGES} images ({} manifests, {} blobs, {bytes} blob bytes) verified at the target; {injected} faults in {requests} requests: {by_kind:?}; the copy took {took:.1?}",
        IMAGES * 3,
        blobs.len(),
    );
    assert!(
        by_kind.get(&Fault::Corrupt).copied().unwrap_or(0) > 0
            && by_kind.get(&Fault::Truncate).copied().unwrap_or(0) > 0,
        "no body fault injected: {by_kind:?}"
    );
    assert!(
        injected * 20 >= requests,
        "fewer than 5% of requests faulted: {injected} of {requests}"
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
