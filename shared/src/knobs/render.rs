//! How a chart is rendered (real `helm template` in the isolated environment of
//! [`crate::discover::helm`]) and where the images of a render are: what `retarget`'s sentinel proof and
//! leak check read, and what `audit` matches against the objects it finds.
//!
//! Knows nothing of values being edited or which registry is the private one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::KnobsError;

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
) -> Result<String, KnobsError> {
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
        .map_err(|e| KnobsError::Chart {
            chart: name.clone(),
            message: format!("running {}: {e}", bin.display()),
        })?
        .ok_or_else(|| KnobsError::Chart {
            chart: name.clone(),
            message: format!(
                "{TIMED_OUT} after {}",
                crate::discover::helm::format_duration(timeout)
            ),
        })?;
    if !out.status.success() {
        return Err(KnobsError::Chart {
            chart: name,
            message: format!("helm template: {}", String::from_utf8_lossy(&out.stderr).trim()),
        });
    }
    String::from_utf8(out.stdout).map_err(|_| KnobsError::Chart {
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

/// Every image string of a render: `image` fields, and the images the discovery scanner is certain of
/// (image flags and env, `image` keys in ConfigMap configuration, `{registry, repository, tag}` maps).
/// Its candidates (a bare image-shaped string in a ConfigMap) are not: a file name or URL that merely
/// looks like an image must not be rewritten.
pub fn rendered_images(rendered: &str) -> Vec<String> {
    let mut images: Vec<String> = images_in_render(rendered)
        .into_iter()
        .map(|(_, _, image)| image)
        .collect();
    let ctx = crate::discover::manifest::ScanContext {
        source: crate::discover::SourceKind::Chart,
        name: "sentinel render".to_string(),
        include_tests: true,
    };
    match crate::discover::manifest::scan_stream(rendered, &ctx) {
        Ok(d) => images.extend(d.images.into_iter().map(|f| f.image)),
        Err(e) => tracing::debug!("scanning the sentinel render: {e}"),
    }
    images.sort();
    images.dedup();
    images
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_leak_patterns() {
        assert!(glob_match(
            "docker.io/library/alpine:*",
            "docker.io/library/alpine:3.20"
        ));
        assert!(glob_match("*alpine*", "docker.io/library/alpine:3.20"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXcYYb"));
        assert!(!glob_match(
            "docker.io/library/alpine",
            "docker.io/library/alpine:3.20"
        ));
    }

    #[test]
    fn images_are_found_in_a_render_with_object_and_field() {
        let text = "---\n# Source: x/templates/a.yaml\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n    - name: c\n      image: a/b:1\n---\nkind: ConfigMap\nmetadata:\n  name: m\ndata:\n  x: y\n";
        assert_eq!(
            images_in_render(text),
            [(
                "Pod/p".to_string(),
                "spec.containers[c].image".to_string(),
                "a/b:1".to_string()
            )]
        );
    }
}
