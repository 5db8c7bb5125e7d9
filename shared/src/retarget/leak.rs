//! The leak check: render every chart with the retargeted values (real `helm template`) and list every
//! image that does not start with the private registry, naming chart, object and field.
//!
//! Images are found by [`crate::discover::manifest::scan_stream`]; while that scanner finds nothing (it is
//! still a stub in this tree) a plain walk over `image:` fields of the rendered objects stands in. Knows
//! nothing of how the values were edited.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::discover::SourceKind;
use crate::discover::manifest::{ScanContext, scan_stream};

use super::RetargetError;
use super::config::is_under;
use super::values::{chart_dirs, chart_name, par_map};

/// One rendered image outside the private registry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Leak {
    /// Chart directory name.
    pub chart: String,
    /// `Kind/name` of the object.
    pub object: String,
    /// Field path inside the object.
    pub field: String,
    /// The image as rendered.
    pub image: String,
}

/// One line per leak: `chart <c>: <Kind/name> <field>: <image>`, then what to do about them.
pub fn format_leaks(leaks: &[Leak]) -> String {
    let mut lines: Vec<String> = leaks
        .iter()
        .map(|l| format!("  chart {}: {} {}: {}", l.chart, l.object, l.field, l.image))
        .collect();
    if !leaks.is_empty() {
        lines.push(advice(leaks));
    }
    lines.join("\n")
}

/// What to do about images no values key sets: they are hard-coded in a template (or set by a key
/// retarget does not know), so only a rewrite at pull time reaches them.
fn advice(leaks: &[Leak]) -> String {
    let mut hosts: Vec<String> = leaks
        .iter()
        .map(|l| {
            crate::reference::ImageRef::parse(&l.image)
                .map(|r| r.registry)
                .unwrap_or_else(|_| l.image.split('/').next().unwrap_or_default().to_string())
        })
        .collect();
    hosts.sort();
    hosts.dedup();
    format!(
        "  No values key sets these images (hard-coded in a template): where KKP deploys them into user \
         clusters, spec.userCluster.overwriteRegistry rewrites them; otherwise configure a containerd \
         registry mirror for {} on the nodes, or accept them with --allow-leak PATTERN.",
        hosts.join(", ")
    )
}

/// `*` matches any run of characters; everything else literally.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// How a killed render is described; callers tell a hang from a template error by it.
pub const TIMED_OUT: &str = "helm template timed out";

/// Renders one chart with `helm template` and the values files in order.
/// A render that runs longer than `timeout` is killed and reported as timed out.
pub fn render(
    chart: &Path,
    values: &[PathBuf],
    helm: Option<&Path>,
    timeout: Duration,
) -> Result<String, RetargetError> {
    let name = chart
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "chart".into());
    // The isolated environment mirror renders in: the user's HELM_* settings, repositories and
    // registry logins play no part.
    let helm = crate::discover::helm::Helm::locate(helm)?;
    let bin = helm.binary().to_path_buf();
    let mut cmd = helm.command();
    cmd.arg("template")
        .arg(&name)
        .arg(chart)
        .args(["--namespace", "kubermatic"]);
    for v in values {
        cmd.arg("--values").arg(v);
    }
    let out = crate::discover::helm::output_with_timeout(&mut cmd, timeout)
        .map_err(|e| RetargetError::Chart {
            chart: name.clone(),
            message: format!("running {}: {e}", bin.display()),
        })?
        .ok_or_else(|| RetargetError::Chart {
            chart: name.clone(),
            message: format!(
                "{TIMED_OUT} after {}",
                crate::discover::helm::format_duration(timeout)
            ),
        })?;
    if !out.status.success() {
        return Err(RetargetError::Chart {
            chart: name,
            message: format!("helm template: {}", String::from_utf8_lossy(&out.stderr).trim()),
        });
    }
    String::from_utf8(out.stdout).map_err(|_| RetargetError::Chart {
        chart: name,
        message: "helm template printed something that is not UTF-8".into(),
    })
}

/// Every `image` string in rendered objects: `(Kind/name, field path, image)`.
pub fn images_in_render(text: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let docs = crate::yamledit::load_data(text).unwrap_or_else(|_| {
        // One odd document must not hide the others: fall back to document by document.
        text.split("\n---")
            .filter_map(|d| crate::yamledit::load_data(d).ok())
            .flatten()
            .collect()
    });
    for v in docs {
        if v.is_null() {
            continue;
        }
        let kind = v.get("kind").and_then(Value::as_str).unwrap_or("?");
        let name = v.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("?");
        let object = format!("{kind}/{name}");
        walk(&v, &mut String::new(), &object, &mut out);
    }
    out
}

fn walk(v: &Value, path: &mut String, object: &str, out: &mut Vec<(String, String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                match child {
                    Value::String(s) if k == "image" => {
                        out.push((object.to_string(), path.clone(), s.clone()))
                    }
                    _ => walk(child, path, object, out),
                }
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                // Containers are named by their `name`, as kubectl does.
                match item.get("name").and_then(Value::as_str) {
                    Some(n) => path.push_str(&format!("[{n}]")),
                    None => path.push_str(&format!("[{i}]")),
                }
                walk(item, path, object, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// Renders every chart below `charts` with `values` and returns the images outside `registry` that no
/// `allow` pattern matches.
pub fn check(
    charts: &Path,
    values: &[PathBuf],
    registry: &str,
    allow: &[String],
    helm: Option<&Path>,
    timeout: Duration,
) -> Result<Vec<Leak>, RetargetError> {
    check_in(
        charts,
        &chart_dirs(charts)?,
        values,
        registry,
        allow,
        helm,
        timeout,
    )
}

/// [`check`] for the chart directories `dirs` below `charts` (named relative to `charts`).
pub fn check_in(
    charts: &Path,
    dirs: &[PathBuf],
    values: &[PathBuf],
    registry: &str,
    allow: &[String],
    helm: Option<&Path>,
    timeout: Duration,
) -> Result<Vec<Leak>, RetargetError> {
    let mut leaks = Vec::new();
    let mut failed = Vec::new();
    let renders = par_map(dirs, |dir| render(dir, values, helm, timeout));
    for (dir, rendered) in dirs.iter().zip(renders) {
        let chart = chart_name(charts, dir);
        let text = match rendered {
            Ok(t) => t,
            Err(RetargetError::Chart { message, .. }) => {
                failed.push((chart, message));
                continue;
            }
            Err(e) => return Err(e),
        };
        let ctx = ScanContext {
            source: SourceKind::Chart,
            name: chart.clone(),
            include_tests: false,
        };
        let scanned = scan_stream(&text, &ctx).map_err(|e| RetargetError::Chart {
            chart: chart.clone(),
            message: e.to_string(),
        })?;
        let found: Vec<(String, String, String)> = if scanned.images.is_empty() {
            images_in_render(&text)
        } else {
            scanned
                .images
                .into_iter()
                .map(|f| {
                    (
                        f.origin.object.unwrap_or_else(|| "?".into()),
                        f.origin.field.unwrap_or_else(|| "?".into()),
                        f.image,
                    )
                })
                .collect()
        };
        for (object, field, image) in found {
            let normalised = crate::reference::ImageRef::parse(&image)
                .map(|r| r.to_string())
                .unwrap_or_else(|_| image.clone());
            if is_under(&image, registry) || is_under(&normalised, registry) {
                continue;
            }
            if allow
                .iter()
                .any(|p| glob_match(p, &image) || glob_match(p, &normalised))
            {
                tracing::info!("chart {chart}: {object} {field}: {image} allowed by --allow-leak");
                continue;
            }
            leaks.push(Leak {
                chart: chart.clone(),
                object,
                field,
                image,
            });
        }
    }
    if !failed.is_empty() {
        return Err(RetargetError::Render(failed));
    }
    leaks.sort();
    leaks.dedup();
    Ok(leaks)
}

#[cfg(test)]
mod advice_tests {
    use super::*;

    #[test]
    fn leaks_come_with_advice_naming_their_registries() {
        let leak = |image: &str| Leak {
            chart: "c".into(),
            object: "Deployment/d".into(),
            field: "spec.template.spec.containers[x].image".into(),
            image: image.into(),
        };
        let text = format_leaks(&[
            leak("quay.io/a/b:v1"),
            leak("busybox:1.37"),
            leak("quay.io/c/d:v2"),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert_eq!(
            lines[0],
            "  chart c: Deployment/d spec.template.spec.containers[x].image: quay.io/a/b:v1"
        );
        assert!(lines[3].contains("spec.userCluster.overwriteRegistry"), "{text}");
        assert!(
            lines[3].contains("containerd registry mirror for docker.io, quay.io "),
            "{text}"
        );
        assert_eq!(format_leaks(&[]), "");
    }
}
