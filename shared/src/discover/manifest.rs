//! Finding images in rendered Kubernetes objects: pod specs, custom resources, args, env, ConfigMaps.
//!
//! Input is YAML text (one or many documents, as `helm template` prints them); output is findings with
//! provenance. Knows nothing of Helm or registries: strings that only *look* like images (an argument,
//! a ConfigMap line) are returned as candidates for the caller to confirm.
//!
//! Rules, in short:
//! * workload kinds (Pod, Deployment, …, CronJob): only the pod spec is read — `containers`,
//!   `initContainers`, `ephemeralContainers` (`image`, `args`, `command`, `env`) and
//!   `volumes[].image.reference`; metadata and annotations are never taken for images;
//! * any other kind (custom resources): a string under a key named `image` or ending in `Image`/`image`,
//!   and maps like `{repository, tag}`, `{registry, repository, tag, digest}`, `{image, tag}`;
//! * args, env values and ConfigMap data: a value named as an image (`--foo-image=X`, `FOO_IMAGE`) with a
//!   tag or digest is certain (untagged, a candidate); any other image-shaped token is a candidate.
//!   ConfigMap values that are YAML/JSON documents are read with the custom-resource rules;
//! * CustomResourceDefinitions (schemas) and Secrets (opaque data) are skipped, and so are Helm test
//!   hooks unless asked for.

use std::collections::HashSet;
use std::path::Path;

use serde_json::{Map, Value};

use super::{Discovery, Finding, Origin, SourceKind};
use crate::reference::ImageRef;

/// Where the text being scanned came from; copied into every finding's origin.
#[derive(Debug, Clone)]
pub struct ScanContext {
    /// Kind of source (chart, addon, manifest …).
    pub source: SourceKind,
    /// Chart, addon or file name.
    pub name: String,
    /// Keep objects that are Helm test hooks (`helm.sh/hook: test`).
    pub include_tests: bool,
}

/// A document that is not valid YAML or not a Kubernetes object.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {location}: {message}")]
pub struct ScanError {
    /// Chart, addon or file name.
    pub name: String,
    /// Template file and/or document number.
    pub location: String,
    /// What is wrong.
    pub message: String,
}

/// Scans a multi-document YAML stream (helm's `# Source:` comments give each object's template).
pub fn scan_stream(text: &str, ctx: &ScanContext) -> Result<Discovery, ScanError> {
    on_parser_stack(|| scan_stream_here(text, ctx)).map_err(|e| no_thread(&ctx.name, e))?
}

/// Nesting allowed in one document: deep CRD schemas reach ~30 levels; 128 leaves room.
const MAX_DEPTH: usize = 128;

/// serde-saphyr recurses once per nesting level with large frames (~18 KiB each in debug builds, so
/// ~110 levels overflow a 2 MiB thread stack). Scanning therefore runs on a thread of its own whose
/// stack fits [`MAX_DEPTH`] many times over, whatever thread the caller is on.
const PARSER_STACK_BYTES: usize = 32 << 20;

fn on_parser_stack<T: Send>(f: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name("manifest-scan".to_string())
            .stack_size(PARSER_STACK_BYTES)
            .spawn_scoped(s, f)?;
        Ok(handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    })
}

fn no_thread(name: &str, e: std::io::Error) -> ScanError {
    ScanError {
        name: name.to_string(),
        location: "scanning".to_string(),
        message: format!("cannot start the scanning thread: {e}"),
    }
}

fn scan_stream_here(text: &str, ctx: &ScanContext) -> Result<Discovery, ScanError> {
    let mut out = Collector::default();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for doc in split_documents(text) {
        let value = parse_yaml(doc.text).map_err(|e| ScanError {
            name: ctx.name.clone(),
            location: doc.location(),
            message: yaml_error_message(&e, doc.first_line),
        })?;
        match &value {
            Value::Null => {}
            Value::Object(_) => {
                let scope = Scope {
                    ctx,
                    template: doc.source,
                    doc_location: doc.location(),
                };
                scope.object(&value, &mut out, 0);
            }
            other => {
                return Err(ScanError {
                    name: ctx.name.clone(),
                    location: doc.location(),
                    message: format!(
                        "not a Kubernetes object: the document is a {}, not a mapping",
                        json_type(other)
                    ),
                });
            }
        }
    }
    Ok(out.finish())
}

/// Scans every `*.yaml`, `*.yml` and `*.json` file below `dir` (`--manifests DIR`).
///
/// Files are read in sorted order; symbolic links are not followed. Each file's name relative to `dir`
/// is its origin name. `dir` may also be a single file.
pub fn scan_dir(dir: &Path, include_tests: bool) -> Result<Discovery, ScanError> {
    let io_err = |path: &Path, e: std::io::Error| ScanError {
        name: path.display().to_string(),
        location: "reading".to_string(),
        message: e.to_string(),
    };
    let meta = std::fs::metadata(dir).map_err(|e| io_err(dir, e))?;
    let mut files = Vec::new();
    if meta.is_file() {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string());
        files.push((name, dir.to_path_buf()));
    } else {
        collect_manifest_files(dir, dir, &mut files).map_err(|(p, e)| io_err(&p, e))?;
        files.sort();
    }
    let scan_all = || {
        let mut all = Discovery::default();
        for (name, path) in files {
            let bytes = std::fs::read(&path).map_err(|e| io_err(&path, e))?;
            let text = String::from_utf8(bytes).map_err(|e| ScanError {
                name: name.clone(),
                location: "reading".to_string(),
                message: format!("not UTF-8 text: {e}"),
            })?;
            let ctx = ScanContext {
                source: SourceKind::Manifest,
                name,
                include_tests,
            };
            tracing::debug!(file = %ctx.name, "scanning manifest");
            all.extend(scan_stream_here(&text, &ctx)?);
        }
        Ok(all)
    };
    on_parser_stack(scan_all).map_err(|e| no_thread(&dir.display().to_string(), e))?
}

/// Recursively lists manifest files as (`/`-separated path relative to `root`, full path).
fn collect_manifest_files(
    root: &Path,
    dir: &Path,
    out: &mut Vec<(String, std::path::PathBuf)>,
) -> Result<(), (std::path::PathBuf, std::io::Error)> {
    let entries = std::fs::read_dir(dir).map_err(|e| (dir.to_path_buf(), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| (dir.to_path_buf(), e))?;
        let path = entry.path();
        // `DirEntry::file_type` does not follow symbolic links.
        let ft = entry.file_type().map_err(|e| (path.clone(), e))?;
        if ft.is_symlink() {
            tracing::debug!(path = %path.display(), "not following symbolic link");
        } else if ft.is_dir() {
            collect_manifest_files(root, &path, out)?;
        } else if ft.is_file() {
            let ext = path
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase);
            if matches!(ext.as_deref(), Some("yaml" | "yml" | "json")) {
                let rel = path.strip_prefix(root).unwrap_or(&path);
                let name = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                out.push((name, path));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// Documents and YAML parsing
// ---------------------------------------------------------------------------------------------------

/// One document of a stream, with what is known of where it came from.
#[derive(Debug)]
struct RawDoc<'a> {
    text: &'a str,
    /// 1-based number among the non-empty documents of the stream.
    number: usize,
    /// 1-based line of the stream where `text` starts.
    first_line: usize,
    /// Helm's `# Source: chart/templates/x.yaml` comment, as printed.
    source: Option<&'a str>,
}

impl RawDoc<'_> {
    fn location(&self) -> String {
        match self.source {
            Some(t) => format!("{t} (document {})", self.number),
            None => format!("document {}", self.number),
        }
    }
}

/// Splits a stream at `---` / `...` marker lines, dropping documents that hold only comments.
fn split_documents(text: &str) -> Vec<RawDoc<'_>> {
    let mut chunks: Vec<(&str, usize)> = Vec::new();
    let mut start = 0usize;
    let mut start_line = 1usize;
    let mut offset = 0usize;
    for (idx, line) in text.split_inclusive('\n').enumerate() {
        let line_no = idx + 1;
        let content = line.trim_end_matches(['\n', '\r']);
        if content == "---" || content.starts_with("--- ") || content.starts_with("---\t") {
            chunks.push((&text[start..offset], start_line));
            // Whatever follows the marker on its line belongs to the new document.
            start = offset + 3;
            start_line = line_no;
        } else if content == "..." || content.starts_with("... ") {
            chunks.push((&text[start..offset], start_line));
            start = offset + line.len();
            start_line = line_no + 1;
        }
        offset += line.len();
    }
    chunks.push((&text[start..], start_line));

    let mut docs = Vec::new();
    for (chunk, first_line) in chunks {
        let mut source = None;
        let mut has_content = false;
        for line in chunk.lines() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('%') {
                continue;
            }
            if let Some(c) = t.strip_prefix('#') {
                if source.is_none()
                    && let Some(s) = c.trim_start().strip_prefix("Source:")
                {
                    let s = s.trim();
                    if !s.is_empty() {
                        source = Some(s);
                    }
                }
                continue;
            }
            has_content = true;
            break;
        }
        if has_content {
            docs.push(RawDoc {
                text: chunk,
                number: docs.len() + 1,
                first_line,
                source,
            });
        }
    }
    docs
}

/// Parser limits: rendered manifests never need more, and an alias bomb stops early.
fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_aliases = 10_000;
    budget.max_anchors = 10_000;
    budget.max_depth = MAX_DEPTH;
    budget.max_nodes = 2_000_000;
    budget.max_events = 4_000_000;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.alias_limits.max_total_replayed_events = 100_000;
    options.alias_limits.max_replay_stack_depth = 16;
    options.alias_limits.max_alias_expansions_per_anchor = 1_000;
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::LastWins;
    options.leading_zero_numbers_as_strings = true;
    options.underscored_numbers_as_strings = true;
    options.non_finite_float_policy = serde_saphyr::NonFiniteFloatPolicy::AsString;
    options.with_snippet = false;
    options
}

fn parse_yaml(text: &str) -> Result<Value, serde_saphyr::Error> {
    serde_saphyr::from_str_with_options::<Value>(text, yaml_options())
}

/// The parser's message, with the line counted in the whole stream.
fn yaml_error_message(e: &serde_saphyr::Error, first_line: usize) -> String {
    let msg = crate::yamledit::data_error_message(e);
    match e.location() {
        Some(loc) if loc.line() > 0 => {
            let line = loc.line() as usize + first_line - 1;
            // The parser's own "line x column y" is relative to the document; drop it.
            let msg = strip_parser_position(&msg);
            format!("line {line}: {msg}")
        }
        _ => msg,
    }
}

/// Removes a trailing ` at line N, column M` the parser adds (relative to the document, so misleading).
fn strip_parser_position(msg: &str) -> String {
    let msg = msg.trim_end();
    if let Some(i) = msg.rfind(" at line ") {
        let tail = &msg[i + " at line ".len()..];
        let is_position = tail.split_once(", column ").is_some_and(|(l, c)| {
            [l, c]
                .iter()
                .all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        });
        if is_position {
            return msg[..i].to_string();
        }
    }
    msg.to_string()
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "sequence",
        Value::Object(_) => "mapping",
    }
}

// ---------------------------------------------------------------------------------------------------
// Objects
// ---------------------------------------------------------------------------------------------------

/// Kinds whose images are read from their pod spec only.
const POD_SPEC_KINDS: &[&str] = &[
    "Pod",
    "Deployment",
    "ReplicaSet",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "CronJob",
    "ReplicationController",
];

/// Kinds that never carry images worth mirroring (schemas, opaque data).
const SKIPPED_KINDS: &[&str] = &["CustomResourceDefinition", "Secret"];

/// Lists inside lists are possible but pathological; stop here.
const MAX_LIST_DEPTH: usize = 8;

/// The document being scanned.
struct Scope<'a> {
    ctx: &'a ScanContext,
    template: Option<&'a str>,
    doc_location: String,
}

impl Scope<'_> {
    fn object(&self, v: &Value, out: &mut Collector, depth: usize) {
        let Some(obj) = v.as_object() else {
            out.warn(format!(
                "{}: {}: list item is a {}, not an object; skipped",
                self.ctx.name,
                self.doc_location,
                json_type(v)
            ));
            return;
        };
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
        if kind.is_empty() {
            out.warn(format!(
                "{}: {}: mapping without `kind` is not a Kubernetes object; skipped",
                self.ctx.name, self.doc_location
            ));
            return;
        }
        if kind.ends_with("List")
            && let Some(items) = obj.get("items").and_then(Value::as_array)
        {
            if depth >= MAX_LIST_DEPTH {
                out.warn(format!(
                    "{}: {}: lists nested deeper than {MAX_LIST_DEPTH}; skipped",
                    self.ctx.name, self.doc_location
                ));
                return;
            }
            for item in items {
                self.object(item, out, depth + 1);
            }
            return;
        }
        let meta = obj.get("metadata").and_then(Value::as_object);
        let name = meta
            .and_then(|m| m.get("name").or_else(|| m.get("generateName")))
            .and_then(Value::as_str)
            .unwrap_or("<unnamed>");
        let object = format!("{kind}/{name}");
        if !self.ctx.include_tests && is_test_hook(meta) {
            tracing::debug!(chart = %self.ctx.name, %object, "skipping helm test hook");
            return;
        }
        if SKIPPED_KINDS.contains(&kind) {
            return;
        }
        let mut s = ObjScan {
            origin: Origin {
                source: self.ctx.source,
                name: self.ctx.name.clone(),
                object: Some(object),
                field: None,
                template: self.template.map(str::to_string),
                values: Vec::new(),
            },
            out,
        };
        if POD_SPEC_KINDS.contains(&kind) {
            let path: &[&str] = match kind {
                "Pod" => &["spec"],
                "CronJob" => &["spec", "jobTemplate", "spec", "template", "spec"],
                _ => &["spec", "template", "spec"],
            };
            if let Some(spec) = lookup(v, path).and_then(Value::as_object) {
                s.pod_spec(spec, &path.join("."));
            }
        } else if kind == "ConfigMap" {
            if let Some(data) = obj.get("data").and_then(Value::as_object) {
                s.config_map_data(data);
            }
        } else {
            for (k, child) in obj {
                if matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status") {
                    continue;
                }
                s.generic_entry(k, child, "", false);
            }
        }
    }
}

fn lookup<'v>(v: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

/// `helm.sh/hook: test` (or `test-success`, possibly among other hooks).
fn is_test_hook(meta: Option<&Map<String, Value>>) -> bool {
    meta.and_then(|m| m.get("annotations"))
        .and_then(|a| a.get("helm.sh/hook"))
        .and_then(Value::as_str)
        .is_some_and(|h| {
            h.split(',')
                .map(str::trim)
                .any(|h| h == "test" || h == "test-success")
        })
}

/// Appends a map key to a field path: `a.b` for plain keys, `a["x.yaml"]` for others.
fn join_key(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (path.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{path}.{key}"),
        (_, false) => format!("{path}[{key:?}]"),
    }
}

/// Scanning one object: everything found gets this object's origin.
struct ObjScan<'o> {
    origin: Origin,
    out: &'o mut Collector,
}

impl ObjScan<'_> {
    fn finding(&self, image: &str, field: &str) -> Finding {
        Finding {
            image: image.to_string(),
            origin: Origin {
                field: Some(field.to_string()),
                ..self.origin.clone()
            },
        }
    }

    fn warn(&mut self, field: &str, what: String) {
        let template = self
            .origin
            .template
            .as_deref()
            .map(|t| format!(" ({t})"))
            .unwrap_or_default();
        let msg = format!(
            "{}: {}{template}: {field}: {what}",
            self.origin.name,
            self.origin.object.as_deref().unwrap_or("?"),
        );
        self.out.warn(msg);
    }

    /// A value in a place that holds an image (`image:`, `{repository, tag}`): certain, or a warning.
    fn certain(&mut self, raw: &str, field: &str) {
        let s = raw.trim();
        if s.is_empty() {
            self.warn(field, "empty image reference".to_string());
            return;
        }
        if has_template_leftover(s) {
            self.warn(field, format!("{s:?} has unrendered template text"));
            return;
        }
        match check_image(s) {
            Ok(_) => {
                let finding = self.finding(s, field);
                self.out.images.push(finding);
            }
            Err(reason) => self.warn(field, format!("{s:?} is not an image reference: {reason}")),
        }
    }

    /// A value whose name says image (`--foo-image=X`, `FOO_IMAGE=X`): certain when it carries a tag
    /// or digest. Without one (`--image=busybox`, or a repository whose tag is set elsewhere) it is
    /// only a candidate: when `strong`, any valid reference; otherwise only an image-shaped one.
    fn named_image(&mut self, raw: &str, field: &str, strong: bool) {
        let s = trim_token(raw);
        if s.is_empty() || has_template_leftover(s) {
            return;
        }
        match check_image(s) {
            Ok(shape) if shape.tag.is_some() || shape.digest.is_some() => {
                let finding = self.finding(s, field);
                self.out.images.push(finding);
            }
            Ok(_) if strong => {
                let finding = self.finding(s, field);
                self.out.candidates.push(finding);
            }
            _ => self.candidate_token(s, field),
        }
    }

    fn candidate_token(&mut self, token: &str, field: &str) {
        let t = trim_token(token);
        if is_image_shaped(t) {
            let finding = self.finding(t, field);
            self.out.candidates.push(finding);
        }
    }

    /// Free text (an argument, an env value, a ConfigMap line): `name=value` / `name: value` /
    /// `--name value` pairs whose name says image are certain, other image-shaped tokens candidates.
    fn text(&mut self, text: &str, field: &str) {
        let tokens: Vec<&str> = text
            .split(|c: char| c.is_whitespace() || TOKEN_SEPARATORS.contains(&c))
            .filter(|t| !t.is_empty())
            .collect();
        // Set after `--image` (strong: a flag) or `image:` (weak: could be prose).
        let mut next_is_image: Option<bool> = None;
        for tok in tokens {
            if let Some(strong) = next_is_image.take()
                && !tok.starts_with('-')
            {
                self.named_image(tok, field, strong);
                continue;
            }
            if let Some((name, value)) = tok.split_once('=') {
                if name_says_image(name) {
                    self.named_image(value, field, true);
                } else {
                    self.candidate_token(value, field);
                }
                continue;
            }
            if let Some(name) = tok.strip_suffix(':')
                && name_says_image(name)
            {
                next_is_image = Some(false);
                continue;
            }
            if tok.starts_with('-') && name_says_image(tok) {
                next_is_image = Some(true);
                continue;
            }
            self.candidate_token(tok, field);
        }
    }

    // --- pod specs -------------------------------------------------------------------------------

    fn pod_spec(&mut self, spec: &Map<String, Value>, path: &str) {
        for list in ["initContainers", "containers", "ephemeralContainers"] {
            let Some(containers) = spec.get(list).and_then(Value::as_array) else {
                continue;
            };
            for (i, c) in containers.iter().enumerate() {
                let Some(c) = c.as_object() else { continue };
                let name = c
                    .get("name")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| i.to_string());
                let base = format!("{path}.{list}[{name}]");
                self.container(c, &base);
            }
        }
        if let Some(volumes) = spec.get("volumes").and_then(Value::as_array) {
            for (i, vol) in volumes.iter().enumerate() {
                let Some(image) = vol.get("image").and_then(Value::as_object) else {
                    continue;
                };
                let name = vol
                    .get("name")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| i.to_string());
                let field = format!("{path}.volumes[{name}].image.reference");
                match image.get("reference") {
                    Some(Value::String(r)) => self.certain(r, &field),
                    _ => self.warn(&field, "image volume without a reference".to_string()),
                }
            }
        }
        // The rest of the pod spec (rare: custom fields of look-alike kinds) by the generic rules.
        for (k, child) in spec {
            if matches!(
                k.as_str(),
                "initContainers" | "containers" | "ephemeralContainers" | "volumes"
            ) {
                continue;
            }
            self.generic_entry(k, child, path, false);
        }
    }

    fn container(&mut self, c: &Map<String, Value>, base: &str) {
        let field = format!("{base}.image");
        match c.get("image") {
            Some(Value::String(s)) => self.certain(s, &field),
            Some(Value::Null) | None => self.warn(&field, "container without an image".to_string()),
            Some(other) => self.warn(&field, format!("image is a {}, not a string", json_type(other))),
        }
        for key in ["command", "args"] {
            if let Some(items) = c.get(key).and_then(Value::as_array) {
                self.args(items, &format!("{base}.{key}"));
            }
        }
        if let Some(env) = c.get("env").and_then(Value::as_array) {
            for (i, e) in env.iter().enumerate() {
                let Some(value) = e.get("value").and_then(Value::as_str) else {
                    continue;
                };
                let name = e.get("name").and_then(Value::as_str).unwrap_or_default();
                let field = if name.is_empty() {
                    format!("{base}.env[{i}].value")
                } else {
                    format!("{base}.env[{name}].value")
                };
                if name.to_ascii_uppercase().contains("IMAGE") {
                    let v = value.trim();
                    if v.contains(char::is_whitespace) {
                        self.text(v, &field);
                    } else {
                        // `IMAGE_PULL_SECRET=regcred` is named after images but is not one.
                        self.named_image(v, &field, name_says_image(name));
                    }
                } else {
                    self.text(value, &field);
                }
            }
        }
    }

    /// `args`/`command`: each item is text; `--foo-image X` spans two items.
    fn args(&mut self, items: &[Value], base: &str) {
        let mut next_is_image = false;
        for (i, item) in items.iter().enumerate() {
            let field = format!("{base}[{i}]");
            let Some(arg) = item.as_str() else { continue };
            if std::mem::take(&mut next_is_image) && !arg.starts_with('-') {
                self.named_image(arg, &field, true);
                continue;
            }
            if arg.starts_with('-') && !arg.contains(['=', ' ']) && name_says_image(arg) {
                next_is_image = true;
                continue;
            }
            self.text(arg, &field);
        }
    }

    // --- ConfigMaps ------------------------------------------------------------------------------

    fn config_map_data(&mut self, data: &Map<String, Value>) {
        for (key, value) in data {
            let Some(text) = value.as_str() else { continue };
            let field = join_key("data", key);
            let trimmed = text.trim();
            if name_says_image(key) && !trimmed.contains(char::is_whitespace) {
                self.named_image(trimmed, &field, true);
                continue;
            }
            if let Some(docs) = structured_documents(text) {
                for doc in &docs {
                    self.generic(doc, &field, true);
                }
            } else {
                self.text(text, &field);
            }
        }
    }

    // --- custom resources and everything else ----------------------------------------------------

    /// Walks `v` (at `path`) with the custom-resource rules. With `leaf_text`, strings not taken as
    /// images are searched for image-shaped candidates (ConfigMap documents).
    fn generic(&mut self, v: &Value, path: &str, leaf_text: bool) {
        match v {
            Value::Object(map) => {
                let consumed = self.image_map(map, path);
                for (k, child) in map {
                    if consumed.contains(&k.as_str()) {
                        continue;
                    }
                    self.generic_entry(k, child, path, leaf_text);
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.generic(item, &format!("{path}[{i}]"), leaf_text);
                }
            }
            Value::String(s) if leaf_text => self.text(s, path),
            _ => {}
        }
    }

    fn generic_entry(&mut self, key: &str, child: &Value, path: &str, leaf_text: bool) {
        // Machine specs name cloud VM images there (`image: ubuntu-22.04`), not container images.
        if key == "cloudProviderSpec" {
            return;
        }
        let field = join_key(path, key);
        if key_holds_image(key) {
            match child {
                Value::String(s) => return self.certain(s, &field),
                Value::Null => return self.warn(&field, "image is null".to_string()),
                // An image volume source (`image: {reference: …}`) in a pod template of a CR.
                Value::Object(m) if !m.contains_key("repository") => {
                    if let Some(Value::String(r)) = m.get("reference") {
                        self.certain(r, &format!("{field}.reference"));
                    }
                }
                _ => {}
            }
        }
        self.generic(child, &field, leaf_text);
    }

    /// `{repository, tag}`, `{registry, repository, tag, digest}`, `{repository, digest}`, `{image, tag}`:
    /// combines the pieces into one certain image (field: the map's path). Returns the keys used.
    fn image_map(&mut self, map: &Map<String, Value>, path: &str) -> Vec<&'static str> {
        let piece = |k: &str| -> Option<Option<String>> {
            map.get(k).map(|v| match v {
                Value::String(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
        };
        let has_tagish = map.contains_key("tag") || map.contains_key("digest");
        let (name_key, name) = if map.contains_key("repository") && has_tagish {
            ("repository", piece("repository"))
        } else if map.contains_key("image")
            && map.contains_key("tag")
            && !map.get("image").is_some_and(Value::is_object)
        {
            ("image", piece("image"))
        } else {
            return Vec::new();
        };
        let consumed = vec!["registry", name_key, "tag", "digest"];
        let field = if path.is_empty() { name_key } else { path };
        let Some(Some(name)) = name else {
            self.warn(field, format!("`{name_key}` is empty or null"));
            return consumed;
        };
        if name.contains("://") {
            // A chart or git repository (`{repository: https://…, tag: v1}`), not an image.
            return consumed;
        }
        let registry = piece("registry").flatten();
        let tag = piece("tag").flatten();
        let digest = piece("digest").flatten();
        if let Some(d) = &digest
            && !d.starts_with("sha256:")
        {
            self.warn(field, format!("digest {d:?} does not start with sha256:"));
            return consumed;
        }
        if tag.is_none() && digest.is_none() {
            self.warn(field, format!("{name:?} has neither tag nor digest"));
            return consumed;
        }
        let mut image = match registry {
            Some(r) => format!("{}/{name}", r.trim_end_matches('/')),
            None => name,
        };
        if let Some(t) = tag {
            image.push(':');
            image.push_str(&t);
        }
        if let Some(d) = digest {
            image.push('@');
            image.push_str(&d);
        }
        self.certain(&image, field);
        consumed
    }
}

/// A ConfigMap value that is a YAML or JSON document (mapping or sequence), parsed; `None` for text.
fn structured_documents(text: &str) -> Option<Vec<Value>> {
    let mut values = Vec::new();
    for doc in split_documents(text) {
        match parse_yaml(doc.text) {
            Ok(v @ (Value::Object(_) | Value::Array(_))) => values.push(v),
            Ok(Value::Null) => {}
            _ => return None,
        }
    }
    (!values.is_empty()).then_some(values)
}

/// A key under which a string is an image: `image`, `initImage`, `sidecar_image`, `kube-rbac-proxy-image`.
fn key_holds_image(key: &str) -> bool {
    const NOT_CONTAINER_IMAGES: &[&str] = &["osImage", "machineImage", "vmImage", "diskImage"];
    key.to_ascii_lowercase().ends_with("image") && !NOT_CONTAINER_IMAGES.contains(&key)
}

/// A flag, env or key name whose last word is `image` (`--acme-http01-solver-image`, `--image`,
/// `RATELIMIT_IMAGE`, `sidecarImage`); `--image-pull-policy` is not.
fn name_says_image(name: &str) -> bool {
    let name = name.trim().trim_start_matches('-').trim_end_matches(':');
    let mut words: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if c == '-' || c == '_' || c == '.' {
            words.push(std::mem::take(&mut cur));
            prev_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower {
            words.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        cur.push(c.to_ascii_lowercase());
    }
    words.push(cur);
    words
        .iter()
        .rev()
        .find(|w| !w.is_empty())
        .is_some_and(|w| w == "image")
}

fn has_template_leftover(s: &str) -> bool {
    s.contains("{{") || s.contains("}}") || s.contains("<no value>") || s.contains("%!")
}

/// Characters that end a token in free text (besides whitespace).
const TOKEN_SEPARATORS: &[char] = &[
    '"', '\'', '`', ',', ';', '(', ')', '[', ']', '{', '}', '<', '>', '|', '\\',
];

/// Strips sentence punctuation and quotes around a token.
fn trim_token(t: &str) -> &str {
    t.trim()
        .trim_matches(|c: char| TOKEN_SEPARATORS.contains(&c))
        .trim_end_matches(['.', ':'])
}

// ---------------------------------------------------------------------------------------------------
// Image shapes
// ---------------------------------------------------------------------------------------------------

/// The pieces of a reference that passed the grammar check.
#[derive(Debug)]
struct Shape<'a> {
    /// Registry host (with port), when the first component is one.
    domain: Option<&'a str>,
    /// Path components below the registry.
    components: Vec<&'a str>,
    tag: Option<&'a str>,
    digest: Option<&'a str>,
}

/// Checks `s` against the docker reference grammar (distribution/reference) and [`ImageRef::parse`].
fn check_image(s: &str) -> Result<Shape<'_>, String> {
    if s.len() > 512 {
        return Err("too long".to_string());
    }
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest
        && !valid_digest(d)
    {
        return Err(format!("bad digest {d:?}"));
    }
    let (name, tag) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if let Some(t) = tag
        && !valid_tag(t)
    {
        return Err(format!("bad tag {t:?}"));
    }
    if name.is_empty() {
        return Err("empty name".to_string());
    }
    if name.len() > 255 {
        return Err("name longer than 255 characters".to_string());
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    let domain = if parts.len() > 1 && is_domain_like(parts[0]) {
        let d = parts.remove(0);
        if !valid_domain(d) {
            return Err(format!("bad registry host {d:?}"));
        }
        Some(d)
    } else {
        None
    };
    if let Some(bad) = parts.iter().find(|p| !valid_path_component(p)) {
        return Err(format!("bad path component {bad:?}"));
    }
    ImageRef::parse(s).map_err(|e| e.reason)?;
    Ok(Shape {
        domain,
        components: parts,
        tag,
        digest,
    })
}

/// Docker's rule: the first component is a registry if it has a dot, a port, is `localhost` or has
/// upper case (which a repository cannot).
fn is_domain_like(first: &str) -> bool {
    first.contains(['.', ':']) || first == "localhost" || first.chars().any(|c| c.is_ascii_uppercase())
}

fn valid_domain(d: &str) -> bool {
    if let Some(rest) = d.strip_prefix('[') {
        // [ipv6](:port)?
        let Some((addr, after)) = rest.split_once(']') else {
            return false;
        };
        let addr_ok = !addr.is_empty() && addr.chars().all(|c| c.is_ascii_hexdigit() || c == ':');
        let port_ok = after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
        return addr_ok && port_ok;
    }
    let (host, port) = match d.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.chars().all(|c| c.is_ascii_digit()))
    {
        return false;
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_path_component(p: &str) -> bool {
    let b = p.as_bytes();
    if b.is_empty() {
        return false;
    }
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if alnum(c) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or "-+".
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &p[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(t: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut chars = t.chars();
    t.len() <= 128 && chars.next().is_some_and(word) && chars.all(|c| word(c) || c == '.' || c == '-')
}

/// `algorithm:hex`; sha256 needs exactly 64 lower-case hex digits.
fn valid_digest(d: &str) -> bool {
    let Some((algo, hex)) = d.split_once(':') else {
        return false;
    };
    let algo_ok = algo.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && algo
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+' | '.'));
    let hex_ok = |n: usize| {
        hex.len() == n
            && hex
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    };
    match algo {
        "sha256" => hex_ok(64),
        "sha512" => hex_ok(128),
        _ => algo_ok && hex.len() >= 32 && hex.chars().all(|c| c.is_ascii_hexdigit()),
    }
}

/// Registries known well enough that an untagged `host/name` there is worth confirming.
const KNOWN_REGISTRIES: &[&str] = &[
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "quay.io",
    "ghcr.io",
    "gcr.io",
    "registry.k8s.io",
    "k8s.gcr.io",
    "mcr.microsoft.com",
    "public.ecr.aws",
    "registry.gitlab.com",
    "docker.elastic.co",
    "nvcr.io",
    "cgr.dev",
];

/// File extensions that make a token a path, not an image.
const FILE_EXTENSIONS: &[&str] = &[
    "yaml",
    "yml",
    "json",
    "conf",
    "cfg",
    "ini",
    "toml",
    "xml",
    "txt",
    "log",
    "sh",
    "py",
    "js",
    "lua",
    "pem",
    "crt",
    "key",
    "cert",
    "sock",
    "so",
    "html",
    "tpl",
    "tmpl",
    "properties",
    "env",
    "d",
    "md",
    "tar",
    "gz",
    "tgz",
    "zip",
    "lock",
    "pid",
    "db",
];

/// Whether a free-text token is worth confirming as an image. Rejects hostnames, `key:value` pairs,
/// versions, durations, label keys (`app.kubernetes.io/name`), URLs, file paths, `host:port`.
fn is_image_shaped(t: &str) -> bool {
    if t.len() < 3 || t.contains("://") || t.starts_with(['/', '.', '-', '_']) {
        return false;
    }
    let Ok(shape) = check_image(t) else {
        return false;
    };
    let last = shape.components.last().copied().unwrap_or_default();
    if let Some((_, ext)) = last.rsplit_once('.')
        && FILE_EXTENSIONS.contains(&ext)
    {
        return false;
    }
    match shape.domain {
        Some(domain) => {
            let host = domain.split(':').next().unwrap_or(domain);
            let tld_ok = host == "localhost"
                || domain.starts_with('[')
                || host
                    .rsplit('.')
                    .next()
                    .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()))
                || host.split('.').all(|l| l.chars().all(|c| c.is_ascii_digit()));
            if !tld_ok {
                return false;
            }
            if shape.tag.is_some() || shape.digest.is_some() {
                return true;
            }
            // Untagged: a label or annotation key (`app.kubernetes.io/name`) has one component.
            shape.components.len() >= 2 || KNOWN_REGISTRIES.contains(&host)
        }
        None => {
            let first = shape.components.first().copied().unwrap_or_default();
            if shape.digest.is_some() {
                return first.starts_with(|c: char| c.is_ascii_lowercase());
            }
            let Some(tag) = shape.tag else {
                return false;
            };
            // `5m:30s`, `10:30`, `10.0.0.1:8080`: a name starting with a digit.
            if !first.starts_with(|c: char| c.is_ascii_lowercase()) {
                return false;
            }
            // `sha256:<hex>` alone is a digest, not an image.
            if matches!(first, "sha256" | "sha512") {
                return false;
            }
            // `key:value`, `node:node_cpu_saturation_load1` (a Prometheus rule): without a registry,
            // only version-like tags count.
            if !version_like_tag(tag) {
                return false;
            }
            // `service:8080`, `app:80`, `dns:53`: an all-digit tag that is a likely port. Short numeric
            // tags below 80 (`redis:7`, `node:22`, `postgres:17`) stay.
            if tag.chars().all(|c| c.is_ascii_digit())
                && tag.parse::<u64>().map_or(true, |n| n >= 80 || n == 53)
            {
                return false;
            }
            // `example.com:443`, `redis.svc:6379`: a dotted host with a port-like tag.
            if shape.components.len() == 1 && first.contains('.') && tag.chars().all(|c| c.is_ascii_digit()) {
                return false;
            }
            true
        }
    }
}

/// `latest`, `1.29`, `v0.14`, `fe6f4b0` (a commit), `3.22-alpine`, `distroless-v1.35.3`.
fn version_like_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    let first = chars.next();
    tag == "latest"
        || first.is_some_and(|c| c.is_ascii_digit())
        || (first == Some('v') && chars.next().is_some_and(|c| c.is_ascii_digit()))
        || (tag.len() >= 7 && tag.chars().all(|c| c.is_ascii_hexdigit()))
        || (tag.contains(['.', '-']) && tag.chars().any(|c| c.is_ascii_digit()))
}

// ---------------------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------------------

#[derive(Default)]
struct Collector {
    images: Vec<Finding>,
    candidates: Vec<Finding>,
    warnings: Vec<String>,
}

impl Collector {
    fn warn(&mut self, msg: String) {
        tracing::debug!("{msg}");
        self.warnings.push(msg);
    }

    /// Sorted, deduplicated; candidates that are already certain somewhere are dropped.
    fn finish(self) -> Discovery {
        let Collector {
            mut images,
            mut candidates,
            warnings,
        } = self;
        images.sort();
        images.dedup();
        let certain: HashSet<&str> = images.iter().map(|f| f.image.as_str()).collect();
        candidates.retain(|c| !certain.contains(c.image.as_str()));
        candidates.sort();
        candidates.dedup();
        let mut seen = HashSet::new();
        let warnings = warnings.into_iter().filter(|w| seen.insert(w.clone())).collect();
        Discovery {
            images,
            candidates,
            warnings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(name: &str) -> ScanContext {
        ScanContext {
            source: SourceKind::Chart,
            name: name.to_string(),
            include_tests: false,
        }
    }

    fn scan(text: &str) -> Discovery {
        match scan_stream(text, &ctx("chart")) {
            Ok(d) => d,
            Err(e) => panic!("scan failed: {e}"),
        }
    }

    /// `(image, object, field)` of each finding.
    fn triples(found: &[Finding]) -> Vec<(String, String, String)> {
        found
            .iter()
            .map(|f| {
                (
                    f.image.clone(),
                    f.origin.object.clone().unwrap_or_default(),
                    f.origin.field.clone().unwrap_or_default(),
                )
            })
            .collect()
    }

    fn t(image: &str, object: &str, field: &str) -> (String, String, String) {
        (image.to_string(), object.to_string(), field.to_string())
    }

    fn fixture(name: &str) -> &'static str {
        match name {
            "deployment" => include_str!("testdata/manifest/deployment.yaml"),
            "cronjob" => include_str!("testdata/manifest/cronjob.yaml"),
            "pod-ephemeral" => include_str!("testdata/manifest/pod-ephemeral.yaml"),
            "envoyproxy" => include_str!("testdata/manifest/envoyproxy.yaml"),
            "prometheus" => include_str!("testdata/manifest/prometheus.yaml"),
            "cert-manager" => include_str!("testdata/manifest/cert-manager.yaml"),
            "envoy-gateway-config" => include_str!("testdata/manifest/envoy-gateway-config.yaml"),
            "hooks-and-list" => include_str!("testdata/manifest/hooks-and-list.yaml"),
            other => panic!("no fixture {other}"),
        }
    }

    #[test]
    fn deployment_init_containers_and_containers() {
        let d = scan(fixture("deployment"));
        let obj = "Deployment/kubermatic-operator";
        assert_eq!(
            triples(&d.images),
            vec![
                t(
                    "docker.io/library/busybox@sha256:0000000000000000000000000000000000000000000000000000000000000001",
                    obj,
                    "spec.template.spec.containers[sidecar].image"
                ),
                t(
                    "quay.io/kubermatic/kubermatic:v2.31.0",
                    obj,
                    "spec.template.spec.containers[operator].image"
                ),
                t(
                    "quay.io/kubermatic/util:2.6.0",
                    obj,
                    "spec.template.spec.initContainers[copy-binaries].image"
                ),
            ]
        );
        // The annotation holding an image-like string is not read; flags and paths are not candidates.
        assert!(d.candidates.is_empty(), "{:?}", d.candidates);
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    }

    #[test]
    fn provenance_fields_exact() {
        let d = scan(fixture("deployment"));
        let want = Finding {
            image: "quay.io/kubermatic/kubermatic:v2.31.0".to_string(),
            origin: Origin {
                source: SourceKind::Chart,
                name: "chart".to_string(),
                object: Some("Deployment/kubermatic-operator".to_string()),
                field: Some("spec.template.spec.containers[operator].image".to_string()),
                template: Some("kubermatic-operator/templates/deployment.yaml".to_string()),
                values: Vec::new(),
            },
        };
        assert!(d.images.contains(&want), "{:#?}", d.images);
        let addon = ScanContext {
            source: SourceKind::Addon,
            name: "canal".to_string(),
            include_tests: false,
        };
        let d = scan_stream(fixture("pod-ephemeral"), &addon).expect("scans");
        let want = Finding {
            image: "quay.io/example/models:2026.1".to_string(),
            origin: Origin {
                source: SourceKind::Addon,
                name: "canal".to_string(),
                object: Some("Pod/debug-me".to_string()),
                field: Some("spec.volumes[models].image.reference".to_string()),
                // No `# Source:` comment: no template.
                template: None,
                values: Vec::new(),
            },
        };
        assert!(d.images.contains(&want), "{:#?}", d.images);
    }

    #[test]
    fn cronjob_pod_spec_and_junk_args() {
        let d = scan(fixture("cronjob"));
        assert_eq!(
            triples(&d.images),
            vec![t(
                "docker.io/d3fk/s3cmd:fe6f4b0",
                "CronJob/etcd-backup",
                "spec.jobTemplate.spec.template.spec.containers[backup].image"
            )]
        );
        assert_eq!(
            d.images[0].origin.template.as_deref(),
            Some("backup/templates/cronjob.yaml")
        );
        // `5m:30s` and `s3.example.com:443` are not images.
        assert!(d.candidates.is_empty(), "{:?}", d.candidates);
    }

    #[test]
    fn pod_ephemeral_containers_and_image_volume() {
        let d = scan(fixture("pod-ephemeral"));
        let obj = "Pod/debug-me";
        assert_eq!(
            triples(&d.images),
            vec![
                t(
                    "docker.io/nicolaka/netshoot:v0.14",
                    obj,
                    "spec.ephemeralContainers[debugger].image"
                ),
                t("nginx:1.29", obj, "spec.containers[app].image"),
                t(
                    "quay.io/example/models:2026.1",
                    obj,
                    "spec.volumes[models].image.reference"
                ),
            ]
        );
    }

    #[test]
    fn envoy_proxy_custom_resource() {
        let d = scan(fixture("envoyproxy"));
        assert_eq!(
            triples(&d.images),
            vec![t(
                "docker.io/envoyproxy/envoy:distroless-v1.35.3",
                "EnvoyProxy/kubermatic",
                "spec.provider.kubernetes.envoyDeployment.container.image"
            )]
        );
        assert_eq!(
            d.images[0].origin.template.as_deref(),
            Some("kubermatic-operator/templates/envoy-proxy.yaml")
        );
    }

    #[test]
    fn prometheus_custom_resource_image_and_map() {
        let d = scan(fixture("prometheus"));
        let obj = "Prometheus/k8s";
        assert_eq!(
            triples(&d.images),
            vec![
                t(
                    "quay.io/prometheus-operator/prometheus-config-reloader:v0.85.0",
                    obj,
                    "spec.containers[0].initImage"
                ),
                t("quay.io/prometheus/prometheus:v3.5.0", obj, "spec.image"),
                t("quay.io/thanos/thanos:v0.39.2", obj, "spec.thanos.image"),
            ]
        );
        assert!(d.candidates.is_empty() && d.warnings.is_empty(), "{d:?}");
    }

    #[test]
    fn cert_manager_acmesolver_arg_is_certain() {
        let d = scan(fixture("cert-manager"));
        let obj = "Deployment/cert-manager";
        let c = "spec.template.spec.containers[cert-manager-controller]";
        assert_eq!(
            triples(&d.images),
            vec![
                t(
                    "ghcr.io/example/sidecar:v0.3.1",
                    obj,
                    &format!("{c}.env[SIDECAR_IMAGE].value")
                ),
                t(
                    "quay.io/jetstack/cert-manager-acmesolver:v1.20.3",
                    obj,
                    &format!("{c}.args[3]")
                ),
                t(
                    "quay.io/jetstack/cert-manager-controller:v1.20.3",
                    obj,
                    &format!("{c}.image")
                ),
                // `--webhook-image` followed by its value in the next item.
                t(
                    "quay.io/jetstack/cert-manager-webhook:v1.20.3",
                    obj,
                    &format!("{c}.args[7]")
                ),
            ]
        );
        // A flag not named image, and free text in an env value: candidates only.
        assert_eq!(
            triples(&d.candidates),
            vec![
                t(
                    "mirror.gcr.io/library/alpine:3.22",
                    obj,
                    &format!("{c}.env[EXTRA].value")
                ),
                t(
                    "registry.example.org/team/helper:1.2",
                    obj,
                    &format!("{c}.args[8]")
                ),
            ]
        );
        // `--image-pull-policy=Always` and `IMAGE_PULL_SECRET=regcred` are not images.
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    }

    #[test]
    fn untagged_values_named_image_are_candidates() {
        let text = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: j}
spec:
  template:
    spec:
      containers:
      - name: c
        image: quay.io/x/job:v1
        args: ["--image=busybox", "--image-pull-policy=Always", "--note", "image: see below"]
        env:
        - {name: WORKER_IMAGE, value: quay.io/x/worker}
        - {name: IMAGE_PULL_SECRET, value: regcred}
        - {name: SCRIPT, value: "run --helper-image=quay.io/x/helper:v2 then sleep 5m:30s"}
"#;
        let d = scan(text);
        let c = "spec.template.spec.containers[c]";
        assert_eq!(
            triples(&d.images),
            vec![
                t("quay.io/x/helper:v2", "Job/j", &format!("{c}.env[SCRIPT].value")),
                t("quay.io/x/job:v1", "Job/j", &format!("{c}.image")),
            ]
        );
        assert_eq!(
            triples(&d.candidates),
            vec![
                t("busybox", "Job/j", &format!("{c}.args[0]")),
                t(
                    "quay.io/x/worker",
                    "Job/j",
                    &format!("{c}.env[WORKER_IMAGE].value")
                ),
            ]
        );
    }

    #[test]
    fn config_map_with_envoy_gateway_config() {
        let d = scan(fixture("envoy-gateway-config"));
        let obj = "ConfigMap/envoy-gateway-config";
        assert_eq!(
            triples(&d.images),
            vec![
                t(
                    "docker.io/envoyproxy/gateway:v1.5.0",
                    obj,
                    r#"data["envoy-gateway.yaml"].provider.kubernetes.shutdownManager.image"#
                ),
                t(
                    "docker.io/envoyproxy/ratelimit:99d85510",
                    obj,
                    r#"data["envoy-gateway.yaml"].provider.kubernetes.rateLimitDeployment.container.image"#
                ),
                t(
                    "ghcr.io/example/worker@sha256:1111111111111111111111111111111111111111111111111111111111111111",
                    obj,
                    r#"data["settings.json"].workerImage"#
                ),
                t("quay.io/example/helper:v2", obj, "data.HELPER_IMAGE"),
            ]
        );
        // From the plain-text value: the ratelimit image is already certain, so only the other one
        // stays; the URL, the file path, `5m:30s`, `v1.5.0` and `key:value` are not candidates; the
        // controller name in the YAML value is not one either.
        assert_eq!(
            triples(&d.candidates),
            vec![t("quay.io/example/debug:v1.0", obj, r#"data["notes.txt"]"#)]
        );
        assert_eq!(
            d.images[0].origin.template.as_deref(),
            Some("envoy-gateway/templates/envoy-gateway-config.yaml")
        );
    }

    #[test]
    fn helm_test_hooks_excluded_unless_asked() {
        let text = fixture("hooks-and-list");
        let d = scan(text);
        assert!(
            !d.images.iter().any(|f| f.image == "busybox:1.37"),
            "{:?}",
            d.images
        );
        let with_tests = ScanContext {
            include_tests: true,
            ..ctx("chart")
        };
        let d = scan_stream(text, &with_tests).expect("scans");
        let hook: Vec<_> = d.images.iter().filter(|f| f.image == "busybox:1.37").collect();
        assert_eq!(hook.len(), 1, "{:?}", d.images);
        assert_eq!(hook[0].origin.object.as_deref(), Some("Pod/app-test-connection"));
        assert_eq!(
            hook[0].origin.template.as_deref(),
            Some("app/templates/tests/test-connection.yaml")
        );
        // `app:80` in its args is a host and port, not an image.
        assert!(d.candidates.is_empty(), "{:?}", d.candidates);
    }

    #[test]
    fn test_success_among_other_hooks_is_a_test() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    helm.sh/hook: pre-install, test-success\nspec:\n  containers:\n  - name: c\n    image: busybox:1.37\n";
        assert!(scan(text).images.is_empty());
        let text = text.replace("pre-install, test-success", "pre-install");
        assert_eq!(scan(&text).images.len(), 1);
    }

    #[test]
    fn list_items_are_scanned_and_empty_documents_skipped() {
        let d = scan(fixture("hooks-and-list"));
        assert_eq!(
            triples(&d.images),
            vec![
                t(
                    "postgres:17.6",
                    "StatefulSet/store",
                    "spec.template.spec.containers[db].image"
                ),
                t(
                    "registry.k8s.io/node-agent:v1.0.0",
                    "DaemonSet/node-agent",
                    "spec.template.spec.containers[agent].image"
                ),
            ]
        );
        assert!(
            d.images
                .iter()
                .all(|f| f.origin.template.as_deref() == Some("app/templates/list.yaml"))
        );
    }

    #[test]
    fn empty_and_templated_images_are_warnings() {
        let d = scan(fixture("hooks-and-list"));
        let w = "chart: Widget/widget (app/templates/broken-values.yaml)";
        assert_eq!(
            d.warnings,
            vec![
                format!("{w}: spec.image: empty image reference"),
                format!(
                    r#"{w}: spec.sidecarImage: "{{{{ .Values.sidecar }}}}" has unrendered template text"#
                ),
                format!(r#"{w}: spec.initImage: ":" is not an image reference: bad tag """#),
                format!("{w}: spec.helper: `repository` is empty or null"),
                format!(r#"{w}: spec.badDigest: digest "abc123" does not start with sha256:"#),
            ]
        );
        // The chart repository `{repository: https://…, tag}` is neither an image nor a warning.
        assert!(
            !d.images
                .iter()
                .any(|f| f.origin.object.as_deref() == Some("Widget/widget"))
        );
    }

    #[test]
    fn image_maps_combine_pieces() {
        let text = r#"
apiVersion: example.com/v1
kind: Thing
metadata: {name: x}
spec:
  a: {repository: bitnami/redis, tag: "7.4"}
  b: {registry: docker.io, repository: bitnami/redis, tag: "7.4", digest: "sha256:2222222222222222222222222222222222222222222222222222222222222222"}
  c: {repository: quay.io/x/y, digest: "sha256:3333333333333333333333333333333333333333333333333333333333333333"}
  d: {image: ghcr.io/x/z, tag: 1.2}
  e: {registry: "", repository: quay.io/x/e, tag: v1, digest: ""}
  f: {repository: quay.io/x/f, tag: ":"}
"#;
        let d = scan(text);
        let obj = "Thing/x";
        assert_eq!(
            triples(&d.images),
            vec![
                t(
                    "docker.io/bitnami/redis:7.4@sha256:2222222222222222222222222222222222222222222222222222222222222222",
                    obj,
                    "spec.b"
                ),
                t("ghcr.io/x/z:1.2", obj, "spec.d"),
                t("quay.io/x/e:v1", obj, "spec.e"),
                t(
                    "quay.io/x/y@sha256:3333333333333333333333333333333333333333333333333333333333333333",
                    obj,
                    "spec.c"
                ),
                t("bitnami/redis:7.4", obj, "spec.a"),
            ]
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
        );
        assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
        assert!(d.warnings[0].contains("spec.f"), "{:?}", d.warnings);
    }

    #[test]
    fn machine_cloud_images_are_not_container_images() {
        let text = "apiVersion: cluster.k8s.io/v1alpha1\nkind: MachineDeployment\nmetadata: {name: md}\nspec:\n  template:\n    spec:\n      providerSpec:\n        value:\n          cloudProviderSpec: {image: ubuntu-22.04, flavor: m1.small}\n          operatingSystemSpec: {distUpgradeOnBoot: false}\n";
        let d = scan(text);
        assert!(d.images.is_empty() && d.warnings.is_empty(), "{d:?}");
    }

    #[test]
    fn deployment_annotations_and_labels_are_not_images() {
        let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\n  annotations:\n    image: quay.io/a/b:v1\n    sidecarImage: quay.io/a/c:v1\nspec:\n  template:\n    metadata:\n      annotations:\n        image: quay.io/a/d:v1\n    spec:\n      containers:\n      - name: c\n        image: quay.io/a/e:v1\n";
        let d = scan(text);
        assert_eq!(
            triples(&d.images),
            vec![t(
                "quay.io/a/e:v1",
                "Deployment/d",
                "spec.template.spec.containers[c].image"
            )]
        );
    }

    #[test]
    fn identical_findings_are_deduplicated_and_sorted() {
        let one = fixture("envoyproxy");
        let text = format!("{one}\n{one}\n{}", fixture("prometheus"));
        let d = scan(&text);
        assert_eq!(d.images.len(), 4, "{:#?}", d.images);
        let mut sorted = d.images.clone();
        sorted.sort();
        assert_eq!(sorted, d.images);
        // The same image from two objects is two findings.
        let two = one.replace("name: kubermatic\n", "name: other\n");
        let d = scan(&format!("{one}\n{two}"));
        assert_eq!(d.images.len(), 2);
    }

    #[test]
    fn malformed_document_names_template_and_line() {
        let bad = "---\n# Source: chart/templates/ok.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\n---\n# Source: chart/templates/bad.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n  x: y\n";
        let e = scan_stream(bad, &ctx("mychart")).expect_err("must fail");
        assert_eq!(e.name, "mychart");
        assert_eq!(e.location, "chart/templates/bad.yaml (document 2)");
        assert!(e.message.starts_with("line 13: "), "{}", e.message);
        assert!(
            e.to_string()
                .starts_with("mychart: chart/templates/bad.yaml (document 2): line 13: ")
        );

        let e = scan_stream("a: b\n  c: d\n", &ctx("f.yaml")).expect_err("must fail");
        assert_eq!(e.location, "document 1");
        assert!(e.message.starts_with("line 2: "), "{}", e.message);
    }

    #[test]
    fn scalar_or_sequence_document_is_not_an_object() {
        let e = scan_stream("kind: ConfigMap\nmetadata: {name: a}\n---\n- a\n- b\n", &ctx("x"))
            .expect_err("must fail");
        assert_eq!(e.location, "document 2");
        assert!(e.message.contains("sequence"), "{}", e.message);
        // A mapping without `kind` is skipped with a warning instead.
        let d = scan("foo: bar\n");
        assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
    }

    #[test]
    fn alias_bomb_is_refused() {
        let mut bomb = String::from(
            "kind: ConfigMap\nmetadata: {name: bomb}\nx:\n  a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n",
        );
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
        for w in names.windows(2) {
            let (p, c) = (w[0], w[1]);
            bomb.push_str(&format!(
                "  {c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
            ));
        }
        let e = scan_stream(&bomb, &ctx("bomb")).expect_err("an alias bomb must be refused");
        assert_eq!(e.location, "document 1");
        assert!(e.message.contains("alias"), "{}", e.message);
        // Ordinary anchors still work.
        let ok = "kind: Thing\nmetadata: {name: t}\nbase: &b quay.io/a/b:v1\nspec:\n  image: *b\n";
        assert_eq!(scan(ok).images.len(), 1);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let mut deep = String::from("kind: Thing\nmetadata: {name: deep}\nspec:\n");
        for i in 0..400 {
            deep.push_str(&" ".repeat(2 * i + 2));
            deep.push_str("a:\n");
        }
        let e = scan_stream(&deep, &ctx("deep")).expect_err("too deep");
        assert_eq!(e.location, "document 1");
        assert!(e.message.contains("depth"), "{}", e.message);
        let flow = format!("kind: Thing\nx: {}{}\n", "[".repeat(5000), "]".repeat(5000));
        assert!(scan_stream(&flow, &ctx("flow")).is_err());
        // Deep but sane (a CRD-like schema) is fine.
        let mut ok = String::from("kind: Thing\nmetadata: {name: ok}\nspec:\n");
        for i in 0..120 {
            ok.push_str(&" ".repeat(2 * i + 2));
            ok.push_str("a:\n");
        }
        ok.push_str(&" ".repeat(242));
        ok.push_str("image: quay.io/deep/x:v1\n");
        assert_eq!(scan(&ok).images.len(), 1);
    }

    #[test]
    fn image_volume_inside_a_custom_resource_and_bom() {
        let text = "\u{feff}---\nkind: Workload\nmetadata: {name: w}\nspec:\n  podTemplate:\n    volumes:\n    - name: m\n      image: {reference: 'quay.io/m/m:v1', pullPolicy: Always}\n";
        assert_eq!(
            triples(&scan(text).images),
            vec![t(
                "quay.io/m/m:v1",
                "Workload/w",
                "spec.podTemplate.volumes[0].image.reference"
            )]
        );
    }

    #[test]
    fn documents_split_at_markers() {
        let text = "# leading comment\n--- {kind: Thing, metadata: {name: a}, image: quay.io/a/a:v1}\n...\n---\n# Source: c/templates/b.yaml\n\nkind: Thing\nmetadata: {name: b}\nimage: quay.io/a/b:v1\n---\n# only a comment\n";
        let docs = split_documents(text);
        assert_eq!(docs.len(), 2);
        assert_eq!((docs[0].number, docs[0].first_line, docs[0].source), (1, 2, None));
        assert_eq!(
            (docs[1].number, docs[1].first_line, docs[1].source),
            (2, 4, Some("c/templates/b.yaml"))
        );
        let d = scan(text);
        assert_eq!(
            triples(&d.images),
            vec![
                t("quay.io/a/a:v1", "Thing/a", "image"),
                t("quay.io/a/b:v1", "Thing/b", "image")
            ]
        );
    }

    #[test]
    fn junk_strings_are_not_image_shaped() {
        let junk = [
            // hostnames and host:port
            "example.com",
            "kubernetes.default.svc.cluster.local",
            "s3.example.com:443",
            "localhost:8080",
            "service:8080",
            "app:80",
            "dns:53",
            "10.0.0.1:8080",
            "10.0.0.1",
            "[::1]:5000",
            // key:value pairs
            "key:value",
            "app:nginx",
            "level:info",
            "role:master",
            "node:node_cpu_saturation_load1",
            "instance:node_num_cpu:sum",
            // versions and durations
            "v1.2.3",
            "1.29.3",
            "5m:30s",
            "10:30",
            "12:30:00",
            "2026-11-24T19:00:00Z",
            // label and annotation keys
            "app.kubernetes.io/name",
            "helm.sh/chart",
            "node-role.kubernetes.io/control-plane",
            "gateway.envoyproxy.io/gatewayclass-controller",
            // URLs, paths, files
            "https://quay.io/jetstack/cert-manager:v1.0.0",
            "http://example.com",
            "/etc/envoy/envoy.yaml",
            "./config.json",
            "conf.d/app.conf",
            "config/settings.yaml",
            "etc.d/x/values.yaml",
            // digests and others
            "sha256:0000000000000000000000000000000000000000000000000000000000000001",
            "user@example.com",
            "$(POD_NAMESPACE)",
            "{{ .Values.image }}",
            "foo:bar:baz",
            "Always",
            "IfNotPresent",
            "a",
            "",
            "-",
            ":",
        ];
        for j in junk {
            assert!(!is_image_shaped(j), "{j:?} taken for an image");
        }
    }

    #[test]
    fn image_shaped_strings_are_accepted() {
        let good = [
            "quay.io/jetstack/cert-manager-acmesolver:v1.20.3",
            "docker.io/envoyproxy/ratelimit:99d85510",
            "registry.k8s.io/pause",
            "registry.k8s.io/pause:3.10",
            "example.com/team/app",
            "localhost:5000/foo:1",
            "nginx:1.29",
            "nginx:latest",
            "redis:7",
            "node:22",
            "alpine:3.22-slim",
            "envoyproxy/ratelimit:99d85510",
            "nginx:stable-1.29",
            "bitnami/redis:7.4.2",
            "busybox@sha256:0000000000000000000000000000000000000000000000000000000000000001",
            "[::1]:5000/x/y:v1",
        ];
        for g in good {
            assert!(is_image_shaped(g), "{g:?} not taken for an image");
        }
    }

    #[test]
    fn grammar_rejects_malformed_references() {
        for bad in [
            "Quay.io",
            "quay.io/Upper/case:v1",
            "quay.io/a//b:v1",
            "quay.io/a/b:",
            "quay.io/a/b:-x",
            "quay.io/a/b@sha256:xyz",
            "quay.io/a/b@abc",
            "-quay.io/a:v1",
            "quay.io:port/a:v1",
            "a b:v1",
        ] {
            assert!(check_image(bad).is_err(), "{bad:?} accepted");
        }
        for ok in [
            "nginx",
            "a/b/c:v1.0-rc.1_x",
            "a__b/c--d:v",
            "reg.io:5000/a/b@sha256:0000000000000000000000000000000000000000000000000000000000000001",
        ] {
            assert!(
                check_image(ok).is_ok(),
                "{ok:?} rejected: {:?}",
                check_image(ok).err()
            );
        }
    }

    #[test]
    fn names_that_say_image() {
        for yes in [
            "--acme-http01-solver-image",
            "--image",
            "-image",
            "RATELIMIT_IMAGE",
            "sidecarImage",
            "image:",
            "kube_rbac_proxy.image",
        ] {
            assert!(name_says_image(yes), "{yes}");
        }
        for no in [
            "--image-pull-policy",
            "IMAGE_PULL_SECRET",
            "imageTag",
            "images-dir",
            "--v",
            "",
        ] {
            assert!(!name_says_image(no), "{no}");
        }
    }

    #[test]
    fn scan_dir_reads_manifests_sorted_without_symlinks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("sub/deeper")).expect("mkdir");
        let write = |p: &str, s: &str| std::fs::write(root.join(p), s).expect("write");
        write("b.yaml", fixture("envoyproxy"));
        write("sub/deeper/a.yml", fixture("cronjob"));
        write(
            "c.json",
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"j"},"spec":{"containers":[{"name":"x","image":"quay.io/j/son:v1"}]}}"#,
        );
        write("notes.txt", "image: quay.io/not/scanned:v1\n");
        std::fs::write(root.join("sub/latin1.yml.bak"), [0xff_u8]).expect("write");
        write("hook.yaml", fixture("hooks-and-list"));
        #[cfg(unix)]
        std::os::unix::fs::symlink(root.join("b.yaml"), root.join("link.yaml")).expect("symlink");

        let d = scan_dir(root, false).expect("scans");
        let by_file: Vec<(String, String)> = d
            .images
            .iter()
            .map(|f| (f.origin.name.clone(), f.image.clone()))
            .collect();
        assert_eq!(
            by_file,
            vec![
                (
                    "b.yaml".to_string(),
                    "docker.io/envoyproxy/envoy:distroless-v1.35.3".to_string()
                ),
                ("c.json".to_string(), "quay.io/j/son:v1".to_string()),
                ("hook.yaml".to_string(), "postgres:17.6".to_string()),
                (
                    "hook.yaml".to_string(),
                    "registry.k8s.io/node-agent:v1.0.0".to_string()
                ),
                (
                    "sub/deeper/a.yml".to_string(),
                    "docker.io/d3fk/s3cmd:fe6f4b0".to_string()
                ),
            ]
        );
        assert!(d.images.iter().all(|f| f.origin.source == SourceKind::Manifest));
        let with_tests = scan_dir(root, true).expect("scans");
        assert!(with_tests.images.iter().any(|f| f.image == "busybox:1.37"));

        // A single file works too; a broken file is an error naming it.
        let single = scan_dir(&root.join("c.json"), false).expect("scans");
        assert_eq!(single.images.len(), 1);
        assert_eq!(single.images[0].origin.name, "c.json");
        write("sub/broken.yaml", "kind: [\n");
        let e = scan_dir(root, false).expect_err("broken file");
        assert_eq!(e.name, "sub/broken.yaml");
        std::fs::remove_file(root.join("sub/broken.yaml")).expect("rm");
        std::fs::write(root.join("sub/latin1.yaml"), [b'a', b':', b' ', 0xff]).expect("write");
        let e = scan_dir(root, false).expect_err("not UTF-8");
        assert_eq!(
            (e.name.as_str(), e.location.as_str()),
            ("sub/latin1.yaml", "reading")
        );
        let e = scan_dir(&root.join("missing"), false).expect_err("missing dir");
        assert!(e.name.ends_with("missing"), "{e}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(96))]

        /// Arbitrary YAML-ish input gives a result or an error, never a panic.
        #[test]
        fn scanning_never_panics(text in "(kind: Pod\n|kind: ConfigMap\n|---\n|spec:\n|  |- |image: |data:\n|[a-zA-Z0-9:/@._\\-\n \"'{}\\[\\],&*#|>]){0,120}") {
            let _ = scan_stream(&text, &ctx("prop"));
        }

        /// Whatever the shape check accepts is a valid reference.
        #[test]
        fn image_shaped_strings_parse(s in "([a-z0-9.:/@_-]{1,40}|\\PC{0,40})") {
            if is_image_shaped(&s) {
                proptest::prop_assert!(ImageRef::parse(&s).is_ok());
                proptest::prop_assert!(check_image(&s).is_ok());
            }
        }
    }
}
