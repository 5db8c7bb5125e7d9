//! Which values keys decide a chart's images: learned from the chart itself and proved by a sentinel
//! render, so that `retarget` can set them and `audit` can name the key behind a leaked image.
//!
//! Keys are learned from the chart itself (its `values.yaml` and those of its subcharts, prefixed with the
//! dependency alias), not from a hand-kept table: maps with `repository` (+ `registry`, `tag`, `digest`),
//! `{registry, image}` maps (ingress-nginx), image strings (`image: repo:tag`) and registry keys
//! (`global.imageRegistry`, a chart's own `imageRegistry` as in cert-manager, `global.image.registry` as in
//! ingress-nginx, `global.registry.address` as in kube-ovn). A sentinel render decides which keys really
//! make the images: a registry key only when an image starts with its sentinel host, and a repository or
//! image string that renders behind a registry prefix from elsewhere is left to that registry key.
//! Knows nothing of the values a key is set to, of files being written or diffs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::reference::ImageRef;
use crate::yamledit::{Intended, Seg, YamlDoc, YamlPath, verify_edits};

use super::KnobsError;

/// How one image of a chart is decided by its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    /// A map with a repository key (`repository`, or `image` beside `registry`), maybe a `registry` key.
    Repository {
        /// Path of the map (`dex.image`).
        map: YamlPath,
        /// Key holding the repository (`repository` or `image`).
        repo_key: String,
        /// The chart's default registry, when the map has a non-empty `registry` key.
        registry: Option<String>,
        /// The chart's default repository.
        repository: String,
    },
    /// A whole reference in one string (`image: docker.io/hashicorp/consul:1.22.2`).
    Whole {
        /// Path of the string.
        path: YamlPath,
        /// The chart's default.
        image: String,
    },
    /// A key that holds only the registry (maybe with a path below it) every image of the chart, or
    /// several of them, starts with: `global.imageRegistry` (Bitnami style), a chart's own `imageRegistry`
    /// (cert-manager), `global.image.registry` (ingress-nginx), `global.registry.address` (kube-ovn). Set
    /// to the private registry plus the path of the default (`docker.io/kubeovn` → `REG/kubeovn`), when
    /// the chart gives it a non-empty default or the user set it.
    GlobalRegistry {
        /// Path (`global.imageRegistry`, `cert-manager.imageRegistry`, …).
        path: YamlPath,
        /// The chart's default.
        default: String,
    },
}

/// One image-deciding key of one chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageKey {
    /// Chart (directory) name.
    pub chart: String,
    /// What decides the image.
    pub kind: KeyKind,
}

impl ImageKey {
    /// The path that identifies this key in a values file (the map for a repository map).
    pub fn identity(&self) -> YamlPath {
        match &self.kind {
            KeyKind::Repository { map, .. } => map.clone(),
            KeyKind::Whole { path, .. } | KeyKind::GlobalRegistry { path, .. } => path.clone(),
        }
    }
}

fn chart_err(chart: &Path, message: impl Into<String>) -> KnobsError {
    KnobsError::Chart {
        chart: chart.display().to_string(),
        message: message.into(),
    }
}

/// Every directory below `root` (or `root` itself) holding a `Chart.yaml`, not descending into charts.
pub fn chart_dirs(root: &Path) -> Result<Vec<PathBuf>, KnobsError> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if dir.join("Chart.yaml").is_file() {
            out.push(dir);
            continue;
        }
        let entries = std::fs::read_dir(&dir).map_err(|source| KnobsError::Io {
            path: dir.clone(),
            source,
        })?;
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(chart_err(root, "no Chart.yaml found below this directory"));
    }
    Ok(out)
}

/// How a chart is named in messages: its path below the charts root (`mla/minio`), else its directory name.
pub fn chart_name(root: &Path, dir: &Path) -> String {
    match dir.strip_prefix(root) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel.display().to_string(),
        _ => dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string()),
    }
}

/// Learns the image keys of every chart below `root`, each confirmed by a sentinel render with the user's
/// values files (see [`confirm_by_render`]).
pub fn learn_charts(
    root: &Path,
    user_values: &[PathBuf],
    helm: Option<&Path>,
    timeout: Duration,
) -> Result<Vec<ImageKey>, KnobsError> {
    learn_charts_in(root, &chart_dirs(root)?, user_values, helm, timeout)
}

/// [`learn_charts`] for the chart directories `dirs` below `root` (named relative to `root`).
pub fn learn_charts_in(
    root: &Path,
    dirs: &[PathBuf],
    user_values: &[PathBuf],
    helm: Option<&Path>,
    timeout: Duration,
) -> Result<Vec<ImageKey>, KnobsError> {
    let per_chart = par_map(dirs, |dir| {
        let mut learned = learn_chart(dir, helm)?;
        let name = chart_name(root, dir);
        for key in &mut learned {
            key.chart.clone_from(&name);
        }
        confirm_by_render(dir, learned, user_values, helm, timeout)
    });
    let mut keys = Vec::new();
    for k in per_chart {
        keys.extend(k?);
    }
    Ok(keys)
}

/// Maps `f` over `items` on up to as many threads as there are CPUs (charts render in separate helm
/// processes); results keep the order of `items`.
pub fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let jobs = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len())
        .max(1);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let r = f(item);
                    if let Ok(mut all) = results.lock() {
                        all[i] = Some(r);
                    }
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .flatten()
        .collect()
}

/// Host of the sentinel values; `.invalid` can never be a real registry (RFC 2606).
const SENTINEL: &str = "kkp-sentinel.invalid";

fn sentinel(i: usize) -> String {
    format!("{SENTINEL}/s{i}x")
}

/// Sentinel host for a registry key; no repository sentinel contains it.
fn sentinel_registry(i: usize) -> String {
    format!("kkp-registry-{i}.invalid")
}

/// A registry key named `imageRegistry` is trusted from the values file alone (Bitnami and cert-manager
/// name it so); other registry-looking keys only when a render proves them.
fn named_image_registry(path: &YamlPath) -> bool {
    path.0.last() == Some(&Seg::Key("imageRegistry".into()))
}

/// The sentinel values file: every edit spliced into an empty document and verified by re-parse.
fn sentinel_values(edits: &[Intended]) -> Result<String, KnobsError> {
    let edit_err = |source| KnobsError::Edit {
        path: PathBuf::from("sentinel values"),
        source,
    };
    let mut doc = YamlDoc::parse("").map_err(edit_err)?;
    for e in edits {
        doc.set_value(e.doc, &e.path, &e.value).map_err(edit_err)?;
    }
    let text = doc.into_text();
    verify_edits("", &text, edits).map_err(edit_err)?;
    Ok(text)
}

/// Renders the chart once with every learned key set to a unique sentinel and keeps only what the render
/// proves: a whole-reference string is kept when its sentinel shows up in an `image` field (a string that
/// merely looks like an image — a URL, a file name — is not rewritten); a repository map is kept when its
/// sentinel shows up anywhere (its structure already says it is an image; a component switched off in the
/// user's values still gets its override, so switching it on later does not leak), unless it only renders
/// behind a registry taken from elsewhere (then that registry key decides the host). A registry key is
/// kept when an image starts with its sentinel host. Images are found by the discovery scanner, so an
/// image inside a ConfigMap's configuration (Envoy Gateway's ratelimit) counts. If the chart does not
/// render with sentinels (a template validates the value), the values-file reading is used as is, less
/// the registry keys no render proved.
pub fn confirm_by_render(
    dir: &Path,
    keys: Vec<ImageKey>,
    user_values: &[PathBuf],
    helm: Option<&Path>,
    timeout: Duration,
) -> Result<Vec<ImageKey>, KnobsError> {
    if keys.is_empty() {
        return Ok(keys);
    }
    let mut edits = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let (path, value) = match &key.kind {
            KeyKind::Repository { map, repo_key, .. } => (map.child(repo_key), sentinel(i)),
            KeyKind::Whole { path, .. } => (path.clone(), format!("{}:t", sentinel(i))),
            KeyKind::GlobalRegistry { path, default } if !default.is_empty() => {
                (path.clone(), sentinel_registry(i))
            }
            KeyKind::GlobalRegistry { .. } => continue,
        };
        edits.push(Intended::string(0, path, value));
    }
    let text = sentinel_values(&edits)?;
    let mut tmp = tempfile::NamedTempFile::new().map_err(|source| KnobsError::Io {
        path: PathBuf::from("temporary values file"),
        source,
    })?;
    std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(|source| KnobsError::Io {
        path: tmp.path().to_path_buf(),
        source,
    })?;
    let mut files = user_values.to_vec();
    files.push(tmp.path().to_path_buf());
    let rendered = match super::render::render(dir, &files, helm, timeout) {
        Ok(r) => r,
        // A hang is not a template that validates its values: nothing later would render either.
        Err(KnobsError::Chart { chart, message }) if message.starts_with(super::render::TIMED_OUT) => {
            return Err(KnobsError::Chart { chart, message });
        }
        Err(e) => {
            tracing::warn!("{e}; using the keys read from values.yaml without a sentinel check");
            return Ok(keys
                .into_iter()
                .filter(|k| match &k.kind {
                    KeyKind::GlobalRegistry { path, default } => {
                        default.is_empty() || named_image_registry(path)
                    }
                    _ => true,
                })
                .collect());
        }
    };
    let images = super::render::rendered_images(&rendered);
    let shows = |hay: &str, i: usize| hay.contains(&sentinel(i));
    let starts = |i: usize| images.iter().any(|img| img.starts_with(&sentinel(i)));
    let behind_prefix = |i: usize| images.iter().any(|img| shows(img, i)) && !starts(i);
    Ok(keys
        .into_iter()
        .enumerate()
        .filter(|(i, key)| {
            let keep = match &key.kind {
                KeyKind::Whole { .. } => starts(*i),
                KeyKind::Repository { registry: None, .. } if behind_prefix(*i) => false,
                KeyKind::Repository { .. } => {
                    shows(&rendered, *i) || {
                        tracing::info!(
                            "chart {}: {} not used by a default render; kept",
                            key.chart,
                            key.identity()
                        );
                        true
                    }
                }
                KeyKind::GlobalRegistry { path, default } => {
                    default.is_empty()
                        || images
                            .iter()
                            .any(|img| img.starts_with(&format!("{}/", sentinel_registry(*i))))
                        || named_image_registry(path)
                }
            };
            if !keep {
                tracing::info!(
                    "chart {}: {} does not decide a rendered image on its own; left alone",
                    key.chart,
                    key.identity()
                );
            }
            keep
        })
        .map(|(_, key)| key)
        .collect())
}

fn load_yaml(chart: &Path, what: &str, text: &str) -> Result<Value, KnobsError> {
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    let mut docs = crate::yamledit::load_data(text).map_err(|e| chart_err(chart, format!("{what}: {e}")))?;
    Ok(if docs.is_empty() {
        Value::Null
    } else {
        docs.swap_remove(0)
    })
}

fn read_yaml(chart: &Path, file: &str) -> Result<Value, KnobsError> {
    let path = chart.join(file);
    match std::fs::read_to_string(&path) {
        Ok(t) => load_yaml(chart, file, &t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Value::Null),
        Err(source) => Err(KnobsError::Io { path, source }),
    }
}

/// `helm show <what> <packaged chart>`: reads a `.tgz` subchart without unpacking it ourselves.
fn helm_show(helm: Option<&Path>, what: &str, tgz: &Path) -> Result<Value, KnobsError> {
    let helm = crate::discover::helm::Helm::locate(helm)?;
    let bin = helm.binary();
    let timeout = crate::discover::helm::DEFAULT_TIMEOUT;
    let out =
        crate::discover::helm::output_with_timeout(helm.command().args(["show", what]).arg(tgz), timeout)
            .map_err(|e| chart_err(tgz, format!("running {} show {what}: {e}", bin.display())))?
            .ok_or_else(|| {
                chart_err(
                    tgz,
                    format!(
                        "helm show {what} timed out after {}",
                        crate::discover::helm::format_duration(timeout)
                    ),
                )
            })?;
    if !out.status.success() {
        return Err(chart_err(
            tgz,
            format!(
                "helm show {what}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    load_yaml(tgz, what, &String::from_utf8_lossy(&out.stdout))
}

/// Learns the image keys of one chart: its subcharts' (prefixed with alias or name) overlaid by its own.
pub fn learn_chart(dir: &Path, helm: Option<&Path>) -> Result<Vec<ImageKey>, KnobsError> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string());
    let chart_yaml = read_yaml(dir, "Chart.yaml")?;
    let mut by_path: BTreeMap<YamlPath, ImageKey> = BTreeMap::new();
    // Every alias a dependency is used under (cortex uses one memcached chart as four), else its name.
    let prefixes_for = |sub: &str| -> Vec<String> {
        let found: Vec<String> = chart_yaml
            .get("dependencies")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|d| d.get("name").and_then(Value::as_str) == Some(sub))
            .filter_map(|d| {
                d.get("alias")
                    .and_then(Value::as_str)
                    .or(d.get("name").and_then(Value::as_str))
                    .map(str::to_string)
            })
            .collect();
        if found.is_empty() {
            vec![sub.to_string()]
        } else {
            found
        }
    };
    let subdir = dir.join("charts");
    let mut subs: Vec<PathBuf> = match std::fs::read_dir(&subdir) {
        Ok(rd) => rd.flatten().map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    };
    subs.sort();
    for sub in subs {
        let (sub_name, found) = if sub.join("Chart.yaml").is_file() {
            // An unpacked subchart is learned like a chart, its own subcharts included.
            let sub_chart = read_yaml(&sub, "Chart.yaml")?;
            let kinds: Vec<KeyKind> = learn_chart(&sub, helm)?.into_iter().map(|k| k.kind).collect();
            (
                sub_chart.get("name").and_then(Value::as_str).map(str::to_string),
                kinds,
            )
        } else if sub.extension().is_some_and(|e| e == "tgz")
            && let Some(unpacked) = unpack_chart(&sub)
        {
            // A packaged one is unpacked and learned the same way, its nested subcharts included.
            let (_tmp, chart_dir) = unpacked;
            let sub_chart = read_yaml(&chart_dir, "Chart.yaml")?;
            let kinds: Vec<KeyKind> = learn_chart(&chart_dir, helm)?
                .into_iter()
                .map(|k| k.kind)
                .collect();
            (
                sub_chart.get("name").and_then(Value::as_str).map(str::to_string),
                kinds,
            )
        } else if sub.extension().is_some_and(|e| e == "tgz") {
            // One that cannot be unpacked here through `helm show` (its nested subcharts are not read).
            let sub_chart = helm_show(helm, "chart", &sub)?;
            let mut kinds = Vec::new();
            walk(&helm_show(helm, "values", &sub)?, &mut Vec::new(), &mut kinds);
            (
                sub_chart.get("name").and_then(Value::as_str).map(str::to_string),
                kinds,
            )
        } else {
            continue;
        };
        let Some(sub_name) = sub_name else {
            return Err(chart_err(&sub, "Chart.yaml has no name"));
        };
        for prefix in prefixes_for(&sub_name) {
            for mut kind in found.iter().cloned() {
                prefix_kind(&mut kind, &prefix);
                let key = ImageKey {
                    chart: name.clone(),
                    kind,
                };
                by_path.insert(key.identity(), key);
            }
        }
    }
    let mut own = Vec::new();
    walk(&read_yaml(dir, "values.yaml")?, &mut Vec::new(), &mut own);
    for mut kind in own {
        // Overriding a subchart's `{registry, repository}` map with a repository alone (cortex sets
        // `memcached-blocks.image.repository: memcached`) keeps the subchart's registry key in play.
        if let KeyKind::Repository {
            map,
            repo_key,
            registry: registry @ None,
            ..
        } = &mut kind
            && let Some(ImageKey {
                kind:
                    KeyKind::Repository {
                        repo_key: sub_key,
                        registry: Some(sub_registry),
                        ..
                    },
                ..
            }) = by_path.get(map)
            && sub_key == repo_key
        {
            *registry = Some(sub_registry.clone());
        }
        let key = ImageKey {
            chart: name.clone(),
            kind,
        };
        by_path.insert(key.identity(), key);
    }
    Ok(by_path.into_values().collect())
}

/// Unpacks a packaged chart (`.tgz`) into a temporary directory: the directory (removed when dropped)
/// and the chart inside it. `None` when it is not a readable chart archive.
fn unpack_chart(tgz: &Path) -> Option<(tempfile::TempDir, PathBuf)> {
    let tmp = tempfile::tempdir().ok()?;
    let file = std::fs::File::open(tgz).ok()?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)));
    // `unpack` keeps every entry inside `tmp` (no `..`, no absolute paths).
    if let Err(e) = archive.unpack(tmp.path()) {
        tracing::debug!("{}: cannot unpack: {e}", tgz.display());
        return None;
    }
    let chart = std::fs::read_dir(tmp.path())
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("Chart.yaml").is_file())?;
    Some((tmp, chart))
}

/// Puts a subchart's key below its alias; `global.*` is shared by all charts and stays at the top.
fn prefix_kind(kind: &mut KeyKind, prefix: &str) {
    let path = match kind {
        KeyKind::Repository { map, .. } => map,
        KeyKind::Whole { path, .. } | KeyKind::GlobalRegistry { path, .. } => path,
    };
    if path.0.first() != Some(&Seg::Key("global".into())) {
        path.0.insert(0, Seg::Key(prefix.to_string()));
    }
}

fn is_image_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("image")
        && ![
            "pull", "tag", "policy", "secret", "registry", "digest", "name", "enabled", "version",
        ]
        .iter()
        .any(|w| k.contains(w))
}

fn looks_like_image(v: &str) -> bool {
    !v.is_empty()
        && (v.contains('/') || v.contains(':'))
        && !v.contains(char::is_whitespace)
        && !v.contains("{{")
        && ImageRef::parse(v).is_ok()
}

fn nonempty_str<'a>(m: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a str> {
    m.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// A registry host, maybe with a path below it (`quay.io`, `docker.io/kubeovn`, `localhost:5000`).
fn looks_like_registry(v: &str) -> bool {
    let host = v.split('/').next().unwrap_or_default();
    (host.contains(['.', ':']) || host == "localhost")
        && !v.contains(char::is_whitespace)
        && !v.contains("{{")
        && !v.contains("://")
        && !v.contains('@')
        && ImageRef::parse(&format!("{}/x", v.trim_end_matches('/'))).is_ok()
}

/// A string under a key, or in a map, named for a registry (`imageRegistry`, `registry.address`).
fn registry_named(path: &[Seg]) -> bool {
    path.iter().rev().take(2).any(|s| match s {
        Seg::Key(k) => k.to_ascii_lowercase().contains("registry"),
        Seg::Index(_) => false,
    })
}

fn walk(v: &Value, path: &mut Vec<Seg>, out: &mut Vec<KeyKind>) {
    match v {
        Value::Object(m) => {
            let repo_key = if nonempty_str(m, "repository").is_some() {
                Some("repository")
            } else if nonempty_str(m, "image").is_some() && m.contains_key("registry") {
                Some("image")
            } else {
                None
            };
            if let Some(rk) = repo_key {
                out.push(KeyKind::Repository {
                    map: YamlPath(path.clone()),
                    repo_key: rk.to_string(),
                    registry: nonempty_str(m, "registry").map(str::to_string),
                    repository: nonempty_str(m, rk).unwrap_or_default().to_string(),
                });
            }
            for (k, child) in m {
                path.push(Seg::Key(k.clone()));
                match child {
                    Value::String(s) if Some(k.as_str()) == repo_key => {}
                    Value::String(s)
                        if path.len() == 2
                            && path[0] == Seg::Key("global".into())
                            && k == "imageRegistry" =>
                    {
                        out.push(KeyKind::GlobalRegistry {
                            path: YamlPath(path.clone()),
                            default: s.clone(),
                        });
                    }
                    // `registry` beside `repository`/`image` belongs to that map (above).
                    Value::String(s)
                        if repo_key.is_none() && registry_named(path) && looks_like_registry(s) =>
                    {
                        out.push(KeyKind::GlobalRegistry {
                            path: YamlPath(path.clone()),
                            default: s.clone(),
                        });
                    }
                    Value::String(s) if is_image_key(k) && looks_like_image(s) => out.push(KeyKind::Whole {
                        path: YamlPath(path.clone()),
                        image: s.clone(),
                    }),
                    _ => walk(child, path, out),
                }
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(Seg::Index(i));
                walk(item, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::helm::DEFAULT_TIMEOUT;

    fn fixtures() -> std::path::PathBuf {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/retarget")
    }

    #[test]
    fn chart_keys_are_learned_from_values_and_subcharts() {
        let keys = learn_chart(&fixtures().join("charts/web"), Some(Path::new("helm3"))).unwrap();
        let mut got: Vec<String> = keys
            .iter()
            .map(|k| match &k.kind {
                KeyKind::Repository {
                    map,
                    repo_key,
                    registry,
                    repository,
                } => {
                    format!("{map}.{repo_key} registry={registry:?} {repository}")
                }
                KeyKind::Whole { path, image } => format!("{path} = {image}"),
                KeyKind::GlobalRegistry { path, default } => format!("{path} global {default:?}"),
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                // from the packaged dex-0.24.1.tgz, prefixed with its dependency name
                "dex.image.repository registry=None ghcr.io/dexidp/dex",
                // from the unpacked ingress-nginx subchart, under its alias
                "nginx.controller.image.image registry=Some(\"registry.k8s.io\") ingress-nginx/controller",
                // a subchart of the subchart, under both aliases
                "nginx.patch.image.repository registry=None registry.k8s.io/ingress-nginx/kube-webhook-certgen",
                "web.docs.bannerImage = static.example.org/banner.png:large",
                "web.image.repository registry=None quay.io/example/web",
                "web.init.image = quay.io/example/init@sha256:1111111111111111111111111111111111111111111111111111111111111111",
                "web.sidecar.image = busybox:1.37",
            ]
        );
    }

    #[test]
    fn a_sentinel_render_drops_strings_that_are_not_images() {
        let dir = fixtures().join("charts/web");
        let helm = Some(Path::new("helm3"));
        let learned = learn_chart(&dir, helm).unwrap();
        let banner = YamlPath::parse("web.docs.bannerImage").unwrap();
        assert!(learned.iter().any(|k| k.identity() == banner));
        let confirmed = confirm_by_render(&dir, learned.clone(), &[], helm, DEFAULT_TIMEOUT).unwrap();
        assert_eq!(confirmed.len(), learned.len() - 1);
        assert!(!confirmed.iter().any(|k| k.identity() == banner));
        // A chart that cannot be rendered keeps what its values file says.
        let kept = confirm_by_render(
            &dir,
            learned.clone(),
            &[],
            Some(Path::new("/nonexistent/helm")),
            DEFAULT_TIMEOUT,
        )
        .unwrap();
        assert_eq!(kept, learned);
    }

    #[test]
    fn registry_prefixes_are_told_from_other_strings() {
        assert!(looks_like_registry("docker.io/kubeovn"));
        assert!(looks_like_registry("localhost:5000"));
        for no in [
            "kubeovn",
            "https://quay.io",
            "quay.io/a:v1@sha256:x",
            "{{ .Values.r }}",
            "",
        ] {
            assert!(!looks_like_registry(no), "{no:?}");
        }
    }

    #[test]
    fn par_map_keeps_order() {
        let items: Vec<usize> = (0..50).collect();
        assert_eq!(
            par_map(&items, |i| i * 2),
            (0..50).map(|i| i * 2).collect::<Vec<_>>()
        );
        assert!(par_map(&Vec::<usize>::new(), |i| *i).is_empty());
    }
}
