//! Candidate images (bare image-shaped strings) are kept only when their registry confirms them.

use crate::support::block_on;
use crate::support::images::{Spec, client_for, push_image};
use crate::support::registry::Registry;
use crate::support::run;

fn manifests_mentioning(images: &[String]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let text = images.join(" ");
    std::fs::write(
        dir.path().join("cm.yaml"),
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: tools\ndata:\n  notes: \"uses {text} at run time\"\n"
        ),
    )
    .unwrap();
    dir
}

#[test]
fn a_candidate_is_planned_only_when_its_registry_has_it() {
    let src = Registry::start();
    let client = client_for(&[&src]);
    block_on(push_image(&client, &src, "team/app", "v1", &Spec::default()));
    let present = format!("{}/team/app:v1", src.host);
    let absent = format!("{}/team/missing:v1", src.host);
    let dir = manifests_mentioning(&[present.clone(), absent.clone()]);
    let dir_arg = dir.path().to_str().unwrap();

    // Online: the present image is confirmed by a HEAD and planned; the absent one stays a candidate.
    let out = run(
        "kubectl-kkp-mirror",
        &[
            "reg.local:5000",
            "--dry-run",
            "-o",
            "json",
            "--manifests",
            dir_arg,
            "--insecure-registry",
            &src.host,
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sources = |key: &str| -> Vec<String> {
        plan[key].as_array().map_or(Vec::new(), |a| {
            a.iter()
                .map(|e| e["source"].as_str().unwrap().to_string())
                .collect()
        })
    };
    assert_eq!(sources("images"), vec![present.clone()]);
    assert_eq!(sources("candidates"), vec![absent.clone()]);
    assert!(plan["warnings"].to_string().contains(&absent), "{plan}");

    // Offline: nothing is contacted, both are listed apart as candidates, none is planned.
    let out = run(
        "kubectl-kkp-mirror",
        &[
            "reg.local:5000",
            "--dry-run",
            "-o",
            "json",
            "--offline",
            "--manifests",
            dir_arg,
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["images"].as_array().unwrap().len(), 0, "{plan}");
    assert_eq!(plan["candidates"].as_array().unwrap().len(), 2, "{plan}");
}
