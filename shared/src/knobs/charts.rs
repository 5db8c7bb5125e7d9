//! The Helm side of `retarget`: learn from each chart which values keys decide its images, and compute the
//! overrides that make `helm template` render private-registry images.
//!
//! Keys are learned from the chart itself (its `values.yaml` and those of its subcharts, prefixed with the
//! dependency alias), not from a hand-kept table: maps with `repository` (+ `registry`, `tag`, `digest`),
//! `{registry, image}` maps (ingress-nginx), image strings (`image: repo:tag`) and registry keys
//! (`global.imageRegistry`, a chart's own `imageRegistry` as in cert-manager, `global.image.registry` as in
//! ingress-nginx, `global.registry.address` as in kube-ovn). A sentinel render decides which keys really
//! make the images: a registry key only when an image starts with its sentinel host, and a repository or
//! image string that renders behind a registry prefix from elsewhere is left to that registry key.
//! Targets follow [`ImageRef::retarget`]: the private registry plus the source repository path, so the
//! result is exactly what `kubectl kkp mirror REG` pushed. Knows nothing of files being written or diffs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::reference::ImageRef;
use crate::yamledit::{Intended, Seg, YamlDoc, YamlPath};

use super::config::is_under;
use crate::retarget::RetargetError;

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

fn chart_err(chart: &Path, message: impl Into<String>) -> RetargetError {
    RetargetError::Chart {
        chart: chart.display().to_string(),
        message: message.into(),
    }
}

/// Every directory below `root` (or `root` itself) holding a `Chart.yaml`, not descending into charts.
pub fn chart_dirs(root: &Path) -> Result<Vec<PathBuf>, RetargetError> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if dir.join("Chart.yaml").is_file() {
            out.push(dir);
            continue;
        }
        let entries = std::fs::read_dir(&dir).map_err(|source| RetargetError::Io {
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
) -> Result<Vec<ImageKey>, RetargetError> {
    learn_charts_in(root, &chart_dirs(root)?, user_values, helm, timeout)
}

/// [`learn_charts`] for the chart directories `dirs` below `root` (named relative to `root`).
pub fn learn_charts_in(
    root: &Path,
    dirs: &[PathBuf],
    user_values: &[PathBuf],
    helm: Option<&Path>,
    timeout: Duration,
) -> Result<Vec<ImageKey>, RetargetError> {
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
pub(crate) fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
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
) -> Result<Vec<ImageKey>, RetargetError> {
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
        edits.push(Intended { doc: 0, path, value });
    }
    let text = crate::retarget::apply_edits(Path::new("sentinel values"), "", &edits)?;
    let mut tmp = tempfile::NamedTempFile::new().map_err(|source| RetargetError::Io {
        path: PathBuf::from("temporary values file"),
        source,
    })?;
    std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(|source| RetargetError::Io {
        path: tmp.path().to_path_buf(),
        source,
    })?;
    let mut files = user_values.to_vec();
    files.push(tmp.path().to_path_buf());
    let rendered = match crate::retarget::leak::render(dir, &files, helm, timeout) {
        Ok(r) => r,
        // A hang is not a template that validates its values: nothing later would render either.
        Err(RetargetError::Chart { chart, message })
            if message.starts_with(crate::retarget::leak::TIMED_OUT) =>
        {
            return Err(RetargetError::Chart { chart, message });
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
    let images = rendered_images(&rendered);
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

/// Every image string of a render: `image` fields, and the images the discovery scanner is certain of
/// (image flags and env, `image` keys in ConfigMap configuration, `{registry, repository, tag}` maps).
/// Its candidates (a bare image-shaped string in a ConfigMap) are not: a file name or URL that merely
/// looks like an image must not be rewritten.
fn rendered_images(rendered: &str) -> Vec<String> {
    let mut images: Vec<String> = crate::retarget::leak::images_in_render(rendered)
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

fn load_yaml(chart: &Path, what: &str, text: &str) -> Result<Value, RetargetError> {
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

fn read_yaml(chart: &Path, file: &str) -> Result<Value, RetargetError> {
    let path = chart.join(file);
    match std::fs::read_to_string(&path) {
        Ok(t) => load_yaml(chart, file, &t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Value::Null),
        Err(source) => Err(RetargetError::Io { path, source }),
    }
}

/// `helm show <what> <packaged chart>`: reads a `.tgz` subchart without unpacking it ourselves.
fn helm_show(helm: Option<&Path>, what: &str, tgz: &Path) -> Result<Value, RetargetError> {
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
pub fn learn_chart(dir: &Path, helm: Option<&Path>) -> Result<Vec<ImageKey>, RetargetError> {
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
        .map(|(path, (_, value))| Intended { doc: 0, path, value })
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
            .map(|e| (e.path.to_string(), e.value.clone()))
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
            let text = crate::retarget::apply_edits(Path::new("values.yaml"), "", &first).unwrap();
            let again = values_edits(&keys, &[(PathBuf::from("values.yaml"), text.clone())], reg).unwrap();
            let pairs = |e: &[Intended]| -> Vec<(String, String)> {
                e.iter().map(|e| (e.path.to_string(), e.value.clone())).collect()
            };
            assert_eq!(pairs(&again), pairs(&first), "rerun with {reg}");
            let text2 = crate::retarget::apply_edits(Path::new("values.yaml"), &text, &again).unwrap();
            assert_eq!(text2, text, "rerun with {reg} rewrote the file");
        }
        // Rendered with the result, every image is where `kubectl kkp mirror` puts it.
        let text = crate::retarget::apply_edits(Path::new("values.yaml"), "", &edits).unwrap();
        let values = root.join("values.yaml");
        std::fs::write(&values, text).unwrap();
        let charts = root.join("regs");
        let rendered =
            crate::retarget::leak::render(&charts, std::slice::from_ref(&values), helm, timeout).unwrap();
        let mut images = rendered_images(&rendered);
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
        let leaks = crate::retarget::leak::check(root, &[values], REG, &[], helm, timeout).unwrap();
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
            .map(|e| (e.path.to_string(), e.value.clone()))
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
}
