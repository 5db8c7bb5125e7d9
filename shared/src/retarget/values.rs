//! The Helm values edits of `retarget`: the overrides that make `helm template` render private-registry
//! images, for the keys [`crate::knobs::charts`] learned from each chart.
//!
//! Targets follow [`ImageRef::retarget`]: the private registry plus the source repository path, so the
//! result is exactly what `kubectl kkp mirror REG` pushed. Knows nothing of files being written or diffs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::knobs::charts::{ImageKey, KeyKind};
use crate::knobs::config::is_under;
use crate::reference::ImageRef;
use crate::yamledit::{Intended, Seg, YamlDoc, YamlPath};

use super::RetargetError;

/// `REG/<path>` keeping the source's explicit tag and digest (and adding none it did not have).
pub fn retarget_text(src: &str, registry: &str) -> Result<String, String> {
    let r = ImageRef::parse(src).map_err(|e| e.to_string())?;
    let t = r.retarget(registry).map_err(|e| e.to_string())?;
    let (name_part, digest) = match src.split_once('@') {
        Some((n, _)) => (n, true),
        None => (src, false),
    };
    let tagged = name_part
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains(':'));
    let mut out = t.name();
    if tagged && let Some(tag) = &t.tag {
        out.push(':');
        out.push_str(tag);
    }
    if digest && let Some(d) = &t.digest {
        out.push('@');
        out.push_str(d);
    }
    Ok(out)
}

/// A registry prefix moved below the private registry as `kubectl kkp mirror` moves images: the host is
/// dropped, any path below it kept (`quay.io` → `REG`, `docker.io/kubeovn` → `REG/kubeovn`).
pub fn retarget_registry(current: &str, registry: &str) -> String {
    let current = current.trim_end_matches('/');
    let rest = match current.split_once('/') {
        Some((_, rest)) => rest,
        None => "",
    };
    if rest.is_empty() {
        registry.to_string()
    } else {
        format!("{registry}/{rest}")
    }
}

/// The user's value at `path`: from the last values file that sets it (helm's precedence).
fn user_value<'a>(docs: &'a [YamlDoc], path: &YamlPath) -> Option<&'a str> {
    docs.iter()
        .rev()
        .find_map(|d| d.get_str(0, path))
        .filter(|v| !v.is_empty())
}

/// The overrides for the user's values (document 0 of the last file) so that every learned key renders a
/// private-registry image. The user's own overrides are the sources when they are set (they are what
/// `kubectl kkp mirror` mirrored); values already below `registry` are kept, so a second run changes nothing.
pub fn values_edits(
    keys: &[ImageKey],
    user: &[(PathBuf, String)],
    registry: &str,
) -> Result<Vec<Intended>, RetargetError> {
    let docs: Vec<YamlDoc> = user
        .iter()
        .map(|(p, t)| {
            YamlDoc::parse(t.as_str()).map_err(|source| RetargetError::Edit {
                path: p.clone(),
                source,
            })
        })
        .collect::<Result<_, _>>()?;
    let mut wanted: BTreeMap<YamlPath, (String, String)> = BTreeMap::new();
    let mut want = |chart: &str, path: YamlPath, value: String| -> Result<(), RetargetError> {
        match wanted.get(&path) {
            Some((c, v)) if *v != value => Err(RetargetError::Conflict {
                path: path.to_string(),
                chart_a: c.clone(),
                value_a: v.clone(),
                chart_b: chart.to_string(),
                value_b: value,
            }),
            Some(_) => Ok(()),
            None => {
                wanted.insert(path, (chart.to_string(), value));
                Ok(())
            }
        }
    };
    for key in keys {
        let bad = |path: &YamlPath, why: String| RetargetError::Chart {
            chart: key.chart.clone(),
            message: format!("{path}: {why}"),
        };
        match &key.kind {
            KeyKind::Repository {
                map,
                repo_key,
                registry: default_registry,
                repository,
            } => {
                let repo_path = map.child(repo_key);
                let repo = user_value(&docs, &repo_path).unwrap_or(repository);
                match default_registry {
                    Some(default_registry) => {
                        let reg_path = map.child("registry");
                        let reg = user_value(&docs, &reg_path).unwrap_or(default_registry);
                        let new_repo = if reg.trim_end_matches('/') == registry {
                            repo.to_string()
                        } else {
                            let src = ImageRef::parse(&format!("{reg}/{repo}"))
                                .map_err(|e| bad(&repo_path, e.to_string()))?;
                            src.repository
                        };
                        want(&key.chart, reg_path, registry.to_string())?;
                        want(&key.chart, repo_path, new_repo)?;
                    }
                    None => {
                        let new = if is_under(repo, registry) {
                            repo.to_string()
                        } else {
                            retarget_text(repo, registry).map_err(|e| bad(&repo_path, e))?
                        };
                        want(&key.chart, repo_path, new)?;
                    }
                }
            }
            KeyKind::Whole { path, image } => {
                let src = user_value(&docs, path).unwrap_or(image);
                let new = if is_under(src, registry) {
                    src.to_string()
                } else {
                    retarget_text(src, registry).map_err(|e| bad(path, e))?
                };
                want(&key.chart, path.clone(), new)?;
            }
            KeyKind::GlobalRegistry { path, default } => {
                let current = user_value(&docs, path).unwrap_or(default);
                if !current.is_empty() {
                    // Already the private registry itself, or below it: a rerun keeps it.
                    let reg = registry.trim_end_matches('/');
                    let new = if current.trim_end_matches('/') == reg || is_under(current, registry) {
                        current.to_string()
                    } else {
                        retarget_registry(current, registry)
                    };
                    want(&key.chart, path.clone(), new)?;
                }
            }
        }
    }
    Ok(wanted
        .into_iter()
        .map(|(path, (_, value))| Intended::string(0, path, value))
        .collect())
}

/// A path as helm's `--set` writes it: dots between keys, `\.` inside keys, `[n]` for indices.
pub fn set_key(path: &YamlPath) -> String {
    let mut out = String::new();
    for (i, seg) in path.0.iter().enumerate() {
        match seg {
            Seg::Key(k) => {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(
                    &k.replace('\\', "\\\\")
                        .replace('.', "\\.")
                        .replace(',', "\\,")
                        .replace('=', "\\="),
                );
            }
            Seg::Index(n) => out.push_str(&format!("[{n}]")),
        }
    }
    out
}

/// A value as helm's `--set` reads it (`,` and `\` escaped).
pub fn set_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace(',', "\\,")
}

#[cfg(test)]
mod registry_key_tests {
    //! Registry keys learned from a chart and proved by a sentinel render: a chart-level
    //! `imageRegistry`, `global.image.registry` with a bare `image` path, `global.registry.address`
    //! with a namespace, and an image that only appears in a ConfigMap's configuration.

    use super::*;
    use crate::knobs::charts::{learn_chart, learn_charts};
    use std::path::Path;

    const REG: &str = "reg.local:5000/kkp";

    const VALUES: &str = "\
imageRegistry: quay.io
imageNamespace: example
controller:
  name: controller
global:
  image:
    registry: registry.example.org
  registry:
    address: docker.io/acme
proxy:
  image: proxy/envoy
  tag: v1
agent:
  repository: agent
  tag: v2
limiter:
  image: docker.io/acme/limiter:v3
mirrorRegistry: docs.example.org
";

    const TEMPLATES: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: regs
spec:
  template:
    spec:
      containers:
      - name: controller
        image: "{{ .Values.imageRegistry }}/{{ .Values.imageNamespace }}/{{ .Values.controller.name }}:v4"
      - name: proxy
        image: "{{ .Values.global.image.registry }}/{{ .Values.proxy.image }}:{{ .Values.proxy.tag }}"
      - name: agent
        image: "{{ .Values.global.registry.address }}/{{ .Values.agent.repository }}:{{ .Values.agent.tag }}"
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: regs-config
data:
  docs: "https://{{ .Values.mirrorRegistry }}/guide"
  settings.yaml: |
    limiter:
      deployment:
        image: {{ .Values.limiter.image }}
"#;

    fn chart() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let chart = dir.path().join("regs");
        std::fs::create_dir_all(chart.join("templates")).unwrap();
        std::fs::write(
            chart.join("Chart.yaml"),
            "apiVersion: v2\nname: regs\nversion: 0.1.0\n",
        )
        .unwrap();
        std::fs::write(chart.join("values.yaml"), VALUES).unwrap();
        std::fs::write(chart.join("templates/all.yaml"), TEMPLATES).unwrap();
        dir
    }

    #[test]
    fn registry_keys_are_proved_by_render_and_keep_the_path_below_the_host() {
        let dir = chart();
        let root = dir.path();
        let helm = Some(Path::new("helm3"));
        let timeout = crate::discover::helm::DEFAULT_TIMEOUT;
        let keys = learn_charts(root, &[], helm, timeout).unwrap();
        let edits = values_edits(&keys, &[], REG).unwrap();
        let got: Vec<(String, String)> = edits
            .iter()
            .map(|e| (e.path.to_string(), e.value.to_string()))
            .collect();
        assert_eq!(
            got,
            [
                ("global.image.registry", "reg.local:5000/kkp"),
                ("global.registry.address", "reg.local:5000/kkp/acme"),
                ("imageRegistry", "reg.local:5000/kkp"),
                ("limiter.image", "reg.local:5000/kkp/acme/limiter:v3"),
            ]
            .map(|(p, v)| (p.to_string(), v.to_string()))
        );
        // A rerun on the result changes nothing, for every shape of registry (issue 18: a registry-only
        // key equal to the private registry was taken for a source and became `REG/kkp`).
        for reg in [
            "reg.local",
            "reg.local:5000",
            "reg.local:5000/kkp",
            "reg.local/deep/path",
        ] {
            let first = values_edits(&keys, &[], reg).unwrap();
            let text = super::super::apply_edits(Path::new("values.yaml"), "", &first).unwrap();
            let again = values_edits(&keys, &[(PathBuf::from("values.yaml"), text.clone())], reg).unwrap();
            let pairs = |e: &[Intended]| -> Vec<(String, String)> {
                e.iter()
                    .map(|e| (e.path.to_string(), e.value.to_string()))
                    .collect()
            };
            assert_eq!(pairs(&again), pairs(&first), "rerun with {reg}");
            let text2 = super::super::apply_edits(Path::new("values.yaml"), &text, &again).unwrap();
            assert_eq!(text2, text, "rerun with {reg} rewrote the file");
        }
        // Rendered with the result, every image is where `kubectl kkp mirror` puts it.
        let text = super::super::apply_edits(Path::new("values.yaml"), "", &edits).unwrap();
        let values = root.join("values.yaml");
        std::fs::write(&values, text).unwrap();
        let charts = root.join("regs");
        let rendered =
            crate::knobs::render::render(&charts, std::slice::from_ref(&values), helm, timeout).unwrap();
        let mut images = crate::knobs::render::rendered_images(&rendered);
        images.retain(|i| !i.starts_with("kkp-"));
        assert_eq!(
            images,
            [
                "reg.local:5000/kkp/acme/agent:v2",
                "reg.local:5000/kkp/acme/limiter:v3",
                "reg.local:5000/kkp/example/controller:v4",
                "reg.local:5000/kkp/proxy/envoy:v1",
            ]
        );
        for (src, image) in [
            ("quay.io/example/controller:v4", &images[2]),
            ("registry.example.org/proxy/envoy:v1", &images[3]),
            ("docker.io/acme/agent:v2", &images[0]),
        ] {
            assert_eq!(&retarget_text(src, REG).unwrap(), image);
        }
        let leaks = super::super::leak::check(root, &[values], REG, &[], helm, timeout).unwrap();
        assert!(leaks.is_empty(), "{leaks:?}");
    }

    #[test]
    fn nested_subcharts_of_a_packaged_subchart_are_learned_under_every_alias() {
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("src/inner");
        let cache = inner.join("charts/cache");
        std::fs::create_dir_all(cache.join("templates")).unwrap();
        std::fs::write(
            inner.join("Chart.yaml"),
            "apiVersion: v2\nname: inner\nversion: 0.1.0\ndependencies:\n\
             - {name: cache, version: 1.0.0, alias: cache-a}\n- {name: cache, version: 1.0.0, alias: cache-b}\n",
        )
        .unwrap();
        std::fs::write(
            cache.join("Chart.yaml"),
            "apiVersion: v2\nname: cache\nversion: 1.0.0\n",
        )
        .unwrap();
        std::fs::write(
            cache.join("values.yaml"),
            "image:\n  registry: docker.io\n  repository: bitnami/memcached\n  tag: 1.6.24\n",
        )
        .unwrap();
        // The packaged chart overrides one alias's repository alone, as cortex does.
        std::fs::write(
            inner.join("values.yaml"),
            "cache-a:\n  image:\n    repository: memcached\n    tag: 1.6.39\n",
        )
        .unwrap();
        let umbrella = dir.path().join("umbrella");
        std::fs::create_dir_all(umbrella.join("charts")).unwrap();
        std::fs::write(
            umbrella.join("Chart.yaml"),
            "apiVersion: v2\nname: umbrella\nversion: 0.1.0\ndependencies:\n- {name: inner, version: 0.1.0}\n",
        )
        .unwrap();
        let out = std::process::Command::new("helm3")
            .arg("package")
            .arg(&inner)
            .arg("-d")
            .arg(umbrella.join("charts"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let keys = learn_chart(&umbrella, Some(Path::new("helm3"))).unwrap();
        let got: Vec<String> = keys.iter().map(|k| k.identity().to_string()).collect();
        assert_eq!(got, ["inner.cache-a.image", "inner.cache-b.image"]);
        let edits = values_edits(&keys, &[], REG).unwrap();
        let got: Vec<(String, String)> = edits
            .iter()
            .map(|e| (e.path.to_string(), e.value.to_string()))
            .collect();
        assert_eq!(
            got,
            [
                ("inner.cache-a.image.registry", REG),
                ("inner.cache-a.image.repository", "library/memcached"),
                ("inner.cache-b.image.registry", REG),
                ("inner.cache-b.image.repository", "bitnami/memcached"),
            ]
            .map(|(p, v)| (p.to_string(), v.to_string()))
        );
    }

    #[test]
    fn registry_prefixes_move_below_the_private_registry() {
        assert_eq!(retarget_registry("quay.io", REG), REG);
        assert_eq!(
            retarget_registry("docker.io/kubeovn/", REG),
            "reg.local:5000/kkp/kubeovn"
        );
        assert_eq!(retarget_registry("localhost:5000/a/b", "r.io"), "r.io/a/b");
    }
}
