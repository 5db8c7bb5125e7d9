//! The leak check: render every chart with the retargeted values (real `helm template`, through
//! [`crate::knobs::render()`]) and list every image that does not start with the private registry,
//! naming chart, object and field.
//!
//! Images are found by [`crate::discover::manifest::scan_stream`] (pod specs, CR image fields, image
//! flags and env, image keys in ConfigMap configuration); a render in which it finds none falls back to
//! a plain walk over the `image:` fields of the rendered objects ([`crate::knobs::images_in_render`]).
//! Knows nothing of how the values were edited.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::discover::SourceKind;
use crate::discover::manifest::{ScanContext, scan_stream};
use crate::knobs::{
    KnobsError, Leak, chart_dirs, chart_name, glob_match, images_in_render, is_under, par_map, render,
};

use super::RetargetError;

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
            Err(KnobsError::Chart { message, .. }) => {
                failed.push((chart, message));
                continue;
            }
            Err(e) => return Err(e.into()),
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
