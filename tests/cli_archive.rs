//! `kubectl kkp mirror --archive / --since / --from-archive / --verify` against real `docker-registry`
//! instances: archives are read back with the tar crate and skopeo, pushes checked with skopeo and by
//! reading the target registry's storage directory.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::images::{Pushed, Spec, client_for, push_image, push_three_shapes, random_bytes};
use crate::support::registry::Registry;
use crate::support::{block_on, mirror, mirror_cmd, ok_json, show};

fn image_list(dir: &Path, images: &[String]) -> PathBuf {
    let p = dir.join(format!("images-{}.txt", fastrand::u32(..)));
    std::fs::write(&p, images.join("\n")).unwrap();
    p
}

/// Entries of a tar (decompressed if gzip): path → bytes, in order.
fn tar_entries(path: &Path) -> Vec<(String, Vec<u8>)> {
    let file = std::fs::File::open(path).unwrap();
    let reader: Box<dyn Read> = if path.to_string_lossy().ends_with("gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut archive = tar::Archive::new(reader);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (path, data)
        })
        .collect()
}

fn blob_name(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
}

/// Every manifest and blob of `p` is at `dst/repo:tag` with the source's digest.
fn assert_pushed(dst: &Registry, repo: &str, tag: &str, p: &Pushed) {
    assert_eq!(
        dst.skopeo_digest(repo, tag).as_deref(),
        Some(p.digest.as_str()),
        "{repo}:{tag}"
    );
    assert_eq!(dst.tag_link(repo, tag).as_deref(), Some(p.digest.as_str()));
    for m in &p.manifests {
        assert_eq!(
            dst.skopeo_digest(repo, m).as_deref(),
            Some(m.as_str()),
            "child {m}"
        );
    }
    for (b, _) in &p.blobs {
        assert!(dst.has_blob(b), "blob {b} missing at the target");
    }
}

#[test]
fn archive_round_trip_keeps_every_platform_and_digest() {
    let src = Registry::start();
    let dst = Registry::start();
    let client = client_for(&[&src]);
    let shared_len = 200 * 1024;
    let (oci, docker, nested) = block_on(push_three_shapes(&client, &src, shared_len));
    let work = tempfile::tempdir().unwrap();
    let list = image_list(
        work.path(),
        &[
            format!("{}/team/app:v1", src.host),
            format!("{}/other/tool:2.0", src.host),
            format!("{}/team/nested:1", src.host),
        ],
    );
    let list = list.to_str().unwrap();

    for name in ["images.tar", "images.tgz"] {
        let file = work.path().join(name);
        let out = mirror(&[
            "--image-list",
            list,
            "--archive",
            file.to_str().unwrap(),
            "--insecure-registry",
            &src.host,
        ]);
        assert!(out.status.success(), "{}", show(&out));
        assert!(file.is_file());
        assert!(!work.path().join(format!("{name}.partial")).exists());

        // The layout: oci-layout, every blob and manifest exactly once, index.json last.
        let entries = tar_entries(&file);
        assert_eq!(entries[0].0, "oci-layout");
        assert_eq!(entries[0].1, br#"{"imageLayoutVersion":"1.0.0"}"#);
        assert_eq!(entries.last().unwrap().0, "index.json");
        let mut seen = HashMap::new();
        for (path, data) in &entries[1..entries.len() - 1] {
            let digest = format!("sha256:{}", hex::encode(Sha256::digest(data)));
            assert_eq!(path, &blob_name(&digest), "entry named after its content");
            assert!(seen.insert(path.clone(), ()).is_none(), "{path} written twice");
        }
        for p in [&oci, &docker, &nested] {
            for d in p
                .blobs
                .iter()
                .map(|(d, _)| d)
                .chain(&p.manifests)
                .chain([&p.digest])
            {
                assert!(seen.contains_key(&blob_name(d)), "{d} not archived");
            }
        }
        let distinct: std::collections::HashSet<&String> = [&oci, &docker, &nested]
            .iter()
            .flat_map(|p| {
                p.blobs
                    .iter()
                    .map(|(d, _)| d)
                    .chain(&p.manifests)
                    .chain([&p.digest])
            })
            .collect();
        assert_eq!(seen.len(), distinct.len(), "nothing but the images' blobs");

        let index: Value = serde_json::from_slice(&entries.last().unwrap().1).unwrap();
        assert_eq!(index["schemaVersion"], 2);
        let ms = index["manifests"].as_array().unwrap();
        assert_eq!(ms.len(), 3);
        let by_source = |s: &str| {
            ms.iter()
                .find(|m| {
                    m["annotations"]["io.kubermatic.kkp.source"] == format!("{}/{s}", src.host).as_str()
                })
                .unwrap_or_else(|| panic!("{s} not in {index:#}"))
        };
        let app = by_source("team/app:v1");
        assert_eq!(app["digest"], oci.digest.as_str());
        assert_eq!(app["mediaType"], "application/vnd.oci.image.index.v1+json");
        assert_eq!(app["annotations"]["org.opencontainers.image.ref.name"], "v1");
        let tool = by_source("other/tool:2.0");
        assert_eq!(tool["digest"], docker.digest.as_str());
        assert_eq!(
            tool["mediaType"],
            "application/vnd.docker.distribution.manifest.list.v2+json"
        );
        assert_eq!(tool["annotations"]["org.opencontainers.image.ref.name"], "2.0");
        assert_eq!(by_source("team/nested:1")["digest"], nested.digest.as_str());
        for m in ms {
            let d = m["digest"].as_str().unwrap();
            let data = &entries.iter().find(|(p, _)| p == &blob_name(d)).unwrap().1;
            assert_eq!(m["size"], data.len() as u64);
        }
        // An independent reader: skopeo finds the image by its ref.name.
        let sk = Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci-archive:{}:v1", file.display()))
            .output()
            .unwrap();
        assert!(sk.status.success(), "{}", String::from_utf8_lossy(&sk.stderr));
        assert_eq!(
            format!("sha256:{}", hex::encode(Sha256::digest(&sk.stdout))),
            oci.digest
        );
    }

    // The air-gapped side: push the archive, no source registry involved (it is stopped).
    drop(src);
    let file = work.path().join("images.tar");
    let target = format!("{}/mirror", dst.host);
    let args = [
        target.as_str(),
        "--from-archive",
        file.to_str().unwrap(),
        "-o",
        "json",
        "--insecure-registry",
        &dst.host,
    ];
    let report = ok_json(&mirror(&args));
    let images = report["images"].as_array().unwrap();
    assert_eq!(images.len(), 3, "{report:#}");
    for i in images {
        assert_eq!(i["status"], "copied", "{i}");
    }
    assert_pushed(&dst, "mirror/team/app", "v1", &oci);
    assert_pushed(&dst, "mirror/other/tool", "2.0", &docker);
    assert_pushed(&dst, "mirror/team/nested", "1", &nested);
    // The shared layer was uploaded once and mounted into the other repository.
    let mounted: u64 = images.iter().map(|i| i["bytes_mounted"].as_u64().unwrap()).sum();
    assert_eq!(mounted, shared_len as u64, "{report:#}");

    // A rerun writes nothing; --verify against the archive's digests passes.
    let again = ok_json(&mirror(&args));
    for i in again["images"].as_array().unwrap() {
        assert_eq!(i["status"], "up-to-date", "{i}");
        assert_eq!(i["bytes_copied"], 0);
    }
    let mut verify_args = args.to_vec();
    verify_args.push("--verify");
    let verified = ok_json(&mirror(&verify_args));
    for i in verified["images"].as_array().unwrap() {
        assert_eq!(i["status"], "ok", "{i}");
    }

    // The compressed archive pushes to the same digests.
    let gz_target = format!("{}/gz", dst.host);
    let tgz = work.path().join("images.tgz");
    let report = ok_json(&mirror(&[
        &gz_target,
        "--from-archive",
        tgz.to_str().unwrap(),
        "-o",
        "json",
        "--insecure-registry",
        &dst.host,
    ]));
    assert_eq!(report["summary"]["failed"], 0, "{report:#}");
    assert_pushed(&dst, "gz/team/app", "v1", &oci);
    assert_pushed(&dst, "gz/team/nested", "1", &nested);
}

#[test]
fn incremental_archive_holds_only_new_blobs_and_needs_its_base() {
    let src = Registry::start();
    let client = client_for(&[&src]);
    let shared = random_bytes(100 * 1024);
    let spec = Spec {
        shared_layer: Some(shared.clone()),
        ..Spec::default()
    };
    let v1 = block_on(push_image(&client, &src, "team/app", "v1", &spec));
    let work = tempfile::tempdir().unwrap();
    let base = work.path().join("base.tar");
    let list1 = image_list(work.path(), &[format!("{}/team/app:v1", src.host)]);
    let out = mirror(&[
        "--image-list",
        list1.to_str().unwrap(),
        "--archive",
        base.to_str().unwrap(),
        "--insecure-registry",
        &src.host,
    ]);
    assert!(out.status.success(), "{}", show(&out));

    // v2 and other/tool share a layer with v1 (so with the base); other/solo shares nothing.
    let (v2, tool, solo) = block_on(async {
        (
            push_image(&client, &src, "team/app", "v2", &spec).await,
            push_image(&client, &src, "other/tool", "1", &spec).await,
            push_image(&client, &src, "other/solo", "1", &Spec::default()).await,
        )
    });
    let incr = work.path().join("incr.tar");
    let list2 = image_list(
        work.path(),
        &[
            format!("{}/team/app:v1", src.host),
            format!("{}/team/app:v2", src.host),
            format!("{}/other/tool:1", src.host),
            format!("{}/other/solo:1", src.host),
        ],
    );
    let out = mirror(&[
        "--image-list",
        list2.to_str().unwrap(),
        "--archive",
        incr.to_str().unwrap(),
        "--since",
        base.to_str().unwrap(),
        "--insecure-registry",
        &src.host,
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let entries: HashMap<String, Vec<u8>> = tar_entries(&incr).into_iter().collect();
    let base_entries: HashMap<String, Vec<u8>> = tar_entries(&base).into_iter().collect();
    // Blobs: only what the base did not have; manifests: all (they are needed to push).
    for (d, _) in &v1.blobs {
        assert!(
            !entries.contains_key(&blob_name(d)),
            "base blob {d} archived again"
        );
    }
    assert!(
        !entries.contains_key(&blob_name(&v2.blobs[0].0)),
        "shared layer archived again"
    );
    for (d, _) in v2.blobs.iter().chain(&tool.blobs).chain(&solo.blobs) {
        let in_base = base_entries.contains_key(&blob_name(d));
        assert_eq!(entries.contains_key(&blob_name(d)), !in_base, "{d}");
    }
    for d in v1
        .manifests
        .iter()
        .chain(&v2.manifests)
        .chain(&tool.manifests)
        .chain(&solo.manifests)
    {
        assert!(entries.contains_key(&blob_name(d)), "manifest {d}");
    }
    let index: Value = serde_json::from_slice(&entries["index.json"]).unwrap();
    assert_eq!(index["annotations"]["io.kubermatic.kkp.base"], "base.tar");
    let base_index = format!(
        "sha256:{}",
        hex::encode(Sha256::digest(&base_entries["index.json"]))
    );
    assert_eq!(
        index["annotations"]["io.kubermatic.kkp.base.index"],
        base_index.as_str()
    );
    assert_eq!(index["manifests"].as_array().unwrap().len(), 4);
    drop(src);

    // Without the base at the target, images needing base blobs fail, naming the blob and the base;
    // they are not tagged. The image that is whole in the archive is pushed.
    let dst = Registry::start();
    let push = |file: &Path| {
        mirror(&[
            &dst.host,
            "--from-archive",
            file.to_str().unwrap(),
            "-o",
            "json",
            "--insecure-registry",
            &dst.host,
        ])
    };
    let out = push(&incr);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("push the base archive base.tar first") && stderr.contains(&v1.blobs[0].0),
        "{stderr}"
    );
    assert_eq!(dst.tag_link("team/app", "v1"), None);
    assert_eq!(dst.tag_link("team/app", "v2"), None);
    assert_eq!(dst.tag_link("other/tool", "1"), None);
    assert_pushed(&dst, "other/solo", "1", &solo);

    // Base first, then the increment: everything arrives with the source digests.
    ok_json(&push(&base));
    let report = ok_json(&push(&incr));
    assert_eq!(report["summary"]["failed"], 0, "{report:#}");
    // other/tool's shared layer came from team/app, where the base put it: mounted, not in the archive.
    let tool_report = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["target"] == format!("{}/other/tool:1", dst.host).as_str())
        .unwrap();
    assert_eq!(tool_report["bytes_mounted"], shared.len() as u64, "{report:#}");
    assert_pushed(&dst, "team/app", "v1", &v1);
    assert_pushed(&dst, "team/app", "v2", &v2);
    assert_pushed(&dst, "other/tool", "1", &tool);
}

fn one_image_archive(src: &Registry, dir: &Path, spec: &Spec) -> (PathBuf, Pushed) {
    let client = client_for(&[src]);
    let pushed = block_on(push_image(&client, src, "app", "v1", spec));
    let file = dir.join("one.tar");
    let list = image_list(dir, &[format!("{}/app:v1", src.host)]);
    let out = mirror(&[
        "--image-list",
        list.to_str().unwrap(),
        "--archive",
        file.to_str().unwrap(),
        "--insecure-registry",
        &src.host,
    ]);
    assert!(out.status.success(), "{}", show(&out));
    (file, pushed)
}

#[test]
fn corrupt_unsafe_or_incomplete_archives_are_refused_and_tag_nothing() {
    let src = Registry::start();
    let dst = Registry::start();
    // Nested, so that the `../x` an evil archive names is a path of this test alone.
    let outer = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir_in(outer.path()).unwrap();
    let (file, pushed) = one_image_archive(&src, work.path(), &Spec::default());
    let push = |file: &Path| {
        mirror(&[
            &dst.host,
            "--from-archive",
            file.to_str().unwrap(),
            "--insecure-registry",
            &dst.host,
        ])
    };

    // Flip one byte in the middle of the last layer's data.
    let (layer, size) = pushed.blobs.iter().max_by_key(|(_, s)| *s).unwrap().clone();
    let bad = work.path().join("bad.tar");
    std::fs::copy(&file, &bad).unwrap();
    let offset = {
        let mut a = tar::Archive::new(std::fs::File::open(&bad).unwrap());
        let entry = a
            .entries()
            .unwrap()
            .map(Result::unwrap)
            .find(|e| e.path().unwrap().to_string_lossy() == blob_name(&layer))
            .unwrap();
        entry.raw_file_position() + size / 2
    };
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&bad)
        .unwrap();
    let mut byte = [0u8];
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.read_exact(&mut byte).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(&[byte[0] ^ 0xff]).unwrap();
    drop(f);
    let out = push(&bad);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("blob {layer} is corrupt")), "{stderr}");
    assert_eq!(dst.blob_count(), 0, "nothing uploaded from a corrupt archive");
    assert_eq!(dst.tag_link("app", "v1"), None);

    // A `../x` entry (written by hand: the tar crate refuses to build one).
    let evil = work.path().join("evil.tar");
    {
        let mut out = std::fs::File::create(&evil).unwrap();
        for (name, data) in [
            ("oci-layout", &br#"{"imageLayoutVersion":"1.0.0"}"#[..]),
            ("../x", b"pwned"),
        ] {
            let mut h = tar::Header::new_gnu();
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            out.write_all(h.as_bytes()).unwrap();
            out.write_all(data).unwrap();
            out.write_all(&vec![0u8; 512 - data.len()]).unwrap();
        }
        out.write_all(&[0u8; 1024]).unwrap();
    }
    let out = push(&evil);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("entry \"../x\" refused"), "{stderr}");
    assert!(!work.path().parent().unwrap().join("x").exists());

    // An archive cut short (no index.json) is named incomplete.
    let short = work.path().join("short.tar");
    let len = std::fs::metadata(&file).unwrap().len();
    let data = std::fs::read(&file).unwrap();
    std::fs::write(&short, &data[..(len as usize - 2048) / 512 * 512]).unwrap();
    let out = push(&short);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("short.tar"),
        "{}",
        show(&out)
    );
    assert_eq!(dst.tag_link("app", "v1"), None);

    // The good archive still goes through.
    let out = push(&file);
    assert!(out.status.success(), "{}", show(&out));
    assert_pushed(&dst, "app", "v1", &pushed);
}

#[test]
fn interrupted_or_failed_archive_leaves_no_file() {
    let src = Registry::start();
    let client = client_for(&[&src]);
    let spec = Spec {
        platforms: vec!["linux/amd64", "linux/arm64", "linux/ppc64le", "linux/s390x"],
        layers: 3,
        layer_size: 4 << 20,
        ..Spec::default()
    };
    block_on(push_image(&client, &src, "big/app", "v1", &spec));
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("big.tar");
    let partial = work.path().join("big.tar.partial");

    // Killed while writing: only the .partial file is left.
    let list = image_list(work.path(), &[format!("{}/big/app:v1", src.host)]);
    let (mut cmd, _dir) = mirror_cmd(&[
        "--image-list",
        list.to_str().unwrap(),
        "--archive",
        file.to_str().unwrap(),
        "--insecure-registry",
        &src.host,
    ]);
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    while std::fs::metadata(&partial).map_or(true, |m| m.len() < (1 << 20))
        && child.try_wait().unwrap().is_none()
    {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().ok();
    let status = child.wait().unwrap();
    assert!(!status.success(), "finished before it could be killed");
    assert!(!file.exists(), "an interrupted run left {}", file.display());

    // A failed run (one image does not exist) removes its partial file too.
    std::fs::remove_file(&partial).ok();
    let list = image_list(
        work.path(),
        &[
            format!("{}/big/app:v1", src.host),
            format!("{}/big/app:nope", src.host),
        ],
    );
    let out = mirror(&[
        "--image-list",
        list.to_str().unwrap(),
        "--archive",
        file.to_str().unwrap(),
        "--insecure-registry",
        &src.host,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("big/app:nope"),
        "{}",
        show(&out)
    );
    assert!(!file.exists());
    assert!(!partial.exists());
}

#[test]
fn verify_lists_missing_and_different_images() {
    let src = Registry::start();
    let dst = Registry::start();
    let client = client_for(&[&src, &dst]);
    block_on(async {
        for repo in ["a", "b", "c"] {
            push_image(&client, &src, repo, "v1", &Spec::default()).await;
        }
    });
    let work = tempfile::tempdir().unwrap();
    let all = image_list(
        work.path(),
        &["a", "b", "c"].map(|r| format!("{}/{r}:v1", src.host)),
    );
    let ab = image_list(work.path(), &["a", "b"].map(|r| format!("{}/{r}:v1", src.host)));
    let run = |list: &Path, verify: bool| {
        let mut args = vec![
            dst.host.as_str(),
            "--image-list",
            list.to_str().unwrap(),
            "-o",
            "json",
            "--insecure-registry",
            &src.host,
            "--insecure-registry",
            &dst.host,
        ];
        if verify {
            args.push("--verify");
        }
        mirror(&args)
    };
    ok_json(&run(&ab, false));
    let out = run(&ab, true);
    for i in ok_json(&out)["images"].as_array().unwrap() {
        assert_eq!(i["status"], "ok", "{i}");
    }
    // b is overwritten at the target with other content; c was never copied.
    let other = block_on(push_image(&client, &dst, "b", "v1", &Spec::default()));
    let out = run(&all, true);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let status = |repo: &str| {
        report["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["target"] == format!("{}/{repo}:v1", dst.host).as_str())
            .unwrap()
            .clone()
    };
    assert_eq!(status("a")["status"], "ok");
    assert_eq!(status("b")["status"], "different");
    assert_eq!(status("b")["actual"], other.digest.as_str());
    assert_ne!(status("b")["expected"], other.digest.as_str());
    assert_eq!(status("c")["status"], "missing");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1 missing, 1 different"), "{stderr}");
    assert!(
        stderr.contains(&format!("missing: {}/c:v1", dst.host)),
        "{stderr}"
    );
    // Nothing was copied by --verify.
    assert_eq!(dst.tag_link("c", "v1"), None);
}

#[test]
fn archive_flags_that_do_not_fit_together_are_usage_errors() {
    let work = tempfile::tempdir().unwrap();
    let list = image_list(work.path(), &["127.0.0.1:1/a:v1".to_string()]);
    let list = list.to_str().unwrap();
    let file = work.path().join("a.tar");
    let file = file.to_str().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (
            &["127.0.0.1:1", "--image-list", list, "--archive", file],
            "--archive writes a file",
        ),
        (
            &["--from-archive", file],
            "--from-archive needs a target REGISTRY",
        ),
        (
            &["--image-list", list, "--verify"],
            "--verify needs a target REGISTRY",
        ),
        (&["--image-list", list, "--since", file], "--archive"),
        (
            &["127.0.0.1:1", "--archive", file, "--from-archive", file],
            "cannot be used with",
        ),
        (
            &[
                "--image-list",
                list,
                "--archive",
                file,
                "--platform",
                "linux/amd64",
            ],
            "every platform",
        ),
    ];
    for (args, message) in cases {
        let out = mirror(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    assert!(!Path::new(file).exists());
}
