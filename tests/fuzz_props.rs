//! Property-based "fuzz" targets for the library's parsers of untrusted text (cargo-fuzz needs nightly,
//! which is not available here). Each property runs a bounded number of cases so the suite stays fast,
//! and every file in `tests/fixtures/fuzz-corpus/<target>/` is replayed through the same property, so
//! an input that once broke something stays covered.
//!
//! * `ImageRef::parse` never panics, and whatever it accepts prints as a reference that parses back to
//!   the same value;
//! * `yamledit`: parsing and editing never panic, and an edit followed by a re-parse changes exactly the
//!   intended path, nothing else;
//! * `discover::manifest::scan_stream` never panics on arbitrary or YAML-shaped text.

use std::path::PathBuf;

use kkp_shared::discover::SourceKind;
use kkp_shared::discover::manifest::{ScanContext, scan_stream};
use kkp_shared::reference::ImageRef;
use kkp_shared::yamledit::{YamlDoc, YamlPath, load_data};
use proptest::prelude::*;
use serde_json::{Map, Value};

use crate::support::yaml_property::{lines_kept, put};

/// Cases per property in a normal test run; `KKP_FUZZ_CASES=100000` runs a longer fuzzing session.
const CASES: u32 = 256;

/// A bounded number of cases; failures are reported, not persisted into the source tree (add a minimal
/// failing input to the corpus instead).
fn config() -> ProptestConfig {
    let cases = std::env::var("KKP_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn corpus(target: &str) -> Vec<(PathBuf, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz-corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "empty corpus {}", dir.display());
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).expect("corpus file");
            (p, String::from_utf8_lossy(&bytes).into_owned())
        })
        .collect()
}

// ---- image references -------------------------------------------------------------------------

/// Never panics; an accepted reference round-trips through its printed form.
fn reference_property(input: &str) -> Result<(), String> {
    let Ok(r) = ImageRef::parse(input) else {
        return Ok(());
    };
    let printed = r.to_string();
    let again = ImageRef::parse(&printed)
        .map_err(|e| format!("{input:?} parsed to {printed:?}, which does not parse: {e}"))?;
    if again != r {
        return Err(format!("{input:?} → {r:?} → {printed:?} → {again:?}"));
    }
    if again.to_string() != printed {
        return Err(format!("{printed:?} prints as {again}"));
    }
    if r.tag.is_none() && r.digest.is_none() {
        return Err(format!("{input:?} parsed without tag or digest"));
    }
    Ok(())
}

/// Reference-shaped text: components drawn from the characters references are made of, plus a few
/// that are not allowed, so both acceptance and rejection paths run.
fn reference_like() -> impl Strategy<Value = String> {
    let host = prop_oneof![
        Just(String::new()),
        Just("docker.io/".to_string()),
        Just("index.docker.io/".to_string()),
        Just("localhost:5000/".to_string()),
        Just("[::1]:5000/".to_string()),
        "[a-z0-9.-]{1,12}(:[0-9]{1,5})?/",
    ];
    let path = "[a-z0-9._/-]{1,30}|[A-Za-z0-9._/ @:-]{1,20}";
    let tag = prop_oneof![Just(String::new()), ":[A-Za-z0-9._-]{1,20}", ":.{0,5}"];
    let digest = prop_oneof![
        Just(String::new()),
        "@sha256:[0-9a-f]{64}",
        "@sha256:[0-9a-fA-F]{0,66}",
        "@[a-z0-9]{1,8}:[0-9a-z]{1,40}",
    ];
    (host, path, tag, digest).prop_map(|(h, p, t, d)| format!("{h}{p}{t}{d}"))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn reference_parse_never_panics_and_round_trips(input in reference_like()) {
        if let Err(e) = reference_property(&input) {
            prop_assert!(false, "{}", e);
        }
    }

    #[test]
    fn reference_parse_survives_arbitrary_text(input in any::<String>()) {
        if let Err(e) = reference_property(&input) {
            prop_assert!(false, "{}", e);
        }
    }
}

#[test]
fn reference_corpus_replays() {
    for (path, text) in corpus("reference") {
        for line in text.lines() {
            if let Err(e) = reference_property(line) {
                panic!("{}: {e}", path.display());
            }
        }
    }
}

// ---- yamledit -------------------------------------------------------------------------------------

/// Keys that exercise quoting: dots, brackets, YAML indicators, booleans, numbers, spaces, unicode.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z][a-zA-Z0-9]{0,8}",
        1 => Just("image".to_string()),
        1 => Just("a.b".to_string()),
        1 => Just("x[0]".to_string()),
        1 => Just("yes".to_string()),
        1 => Just("null".to_string()),
        1 => Just("0755".to_string()),
        1 => Just("- k".to_string()),
        1 => Just("k: v".to_string()),
        1 => Just("#k".to_string()),
        1 => Just("héllo wörld".to_string()),
        1 => Just("\"q\"".to_string()),
    ]
}

/// String values, including ones that need quoting to stay strings.
fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z0-9./:-]{0,20}",
        1 => Just(String::new()),
        1 => Just("true".to_string()),
        1 => Just("~".to_string()),
        1 => Just("1.5".to_string()),
        1 => Just("a: b".to_string()),
        1 => Just("x #y".to_string()),
        1 => Just("line\nbreak".to_string()),
        1 => Just("tab\there".to_string()),
        1 => Just("'single'".to_string()),
        1 => Just("back\\slash".to_string()),
        1 => Just("*alias".to_string()),
        1 => Just("ünïcödé".to_string()),
        1 => ".{0,12}",
    ]
}

/// A nested mapping whose leaves are strings (keys unique per mapping).
fn tree() -> impl Strategy<Value = Value> {
    let leaf = scalar().prop_map(Value::String);
    leaf.prop_recursive(4, 40, 5, |inner| {
        prop::collection::vec((key(), inner), 1..5).prop_map(|entries| {
            let mut m = Map::new();
            for (k, v) in entries {
                m.entry(k).or_insert(v);
            }
            Value::Object(m)
        })
    })
    .prop_map(|v| match v {
        Value::Object(_) => v,
        other => {
            let mut m = Map::new();
            m.insert("root".into(), other);
            Value::Object(m)
        }
    })
}

/// A YAML double-quoted scalar; everything outside YAML's printable set is escaped.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'.. if c != '\u{feff}' => out.push(c),
            c if (c as u32) <= 0xffff => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// Plain when the text is plainly a string, else double-quoted; a few plain scalars get single quotes.
fn render_scalar(s: &str, style: u8) -> String {
    let plain = !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "./-".contains(c))
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null"
        );
    match style % 3 {
        0 if plain => s.to_string(),
        1 if plain => format!("'{s}'"),
        _ => quote(s),
    }
}

/// Block-style YAML with comments and blank lines sprinkled in, as operators write values files.
fn render_block(v: &Value, indent: usize, style: u8, out: &mut String) {
    let Value::Object(m) = v else { return };
    for (i, (k, child)) in m.iter().enumerate() {
        let pad = " ".repeat(indent);
        if (style as usize + i).is_multiple_of(4) {
            out.push_str(&format!("{pad}# about {}\n", k.replace('\n', " ")));
        }
        let key = render_scalar(k, 2);
        match child {
            Value::Object(_) => {
                out.push_str(&format!("{pad}{key}:\n"));
                render_block(child, indent + 2, style.wrapping_add(1), out);
            }
            Value::String(s) => {
                let comment = if (style as usize + i) % 5 == 1 {
                    "   # pinned"
                } else {
                    ""
                };
                out.push_str(&format!(
                    "{pad}{key}: {}{comment}\n",
                    render_scalar(s, style.wrapping_add(i as u8))
                ));
            }
            _ => unreachable!("trees hold strings and mappings only"),
        }
        if (style as usize + i) % 7 == 3 {
            out.push('\n');
        }
    }
}

/// Every path of `v` that ends at a leaf, and every path one new key below an existing mapping.
fn edit_targets(v: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(m) => {
            let mut fresh = at.clone();
            fresh.push("addedKey".into());
            out.push(fresh.clone());
            fresh.push("deeper".into());
            out.push(fresh);
            for (k, child) in m {
                at.push(k.clone());
                edit_targets(child, at, out);
                at.pop();
            }
        }
        _ => out.push(at.clone()),
    }
}

/// Parses `text`, sets `path` to `value`, re-parses the result as data and requires it to equal the
/// original data with only `path` changed.
fn edit_property(text: &str, path: &[String], value: &str) -> Result<(), String> {
    let before = load_data(text).map_err(|e| format!("generated text does not load: {e}\n{text}"))?;
    let mut doc = YamlDoc::parse(text).map_err(|e| format!("parse: {e}\n{text}"))?;
    // The data view leaves out the empty documents of a stream, the editor numbers them: compare the
    // two only when they count documents alike.
    if !before.is_empty() && before.len() != doc.document_count() {
        return Ok(());
    }
    let yaml_path = YamlPath::keys(path.iter().map(String::as_str));
    let span = doc.span(0, &yaml_path);
    doc.set(0, &yaml_path, value)
        .map_err(|e| format!("set {yaml_path} = {value:?}: {e}\n{text}"))?;
    let new = doc.into_text();
    let after = load_data(&new).map_err(|e| format!("edited text does not load: {e}\n{new}"))?;
    let mut expected = before;
    if expected.is_empty() {
        expected.push(Value::Null);
    }
    put(&mut expected[0], path, value);
    if after != expected {
        return Err(format!(
            "set {yaml_path} = {value:?} changed more than that\n--- before\n{text}\n--- after\n{new}"
        ));
    }
    lines_kept(text, &new, span).map_err(|e| format!("{e}\n--- before\n{text}\n--- after\n{new}"))
}

/// Arbitrary text never makes parsing or editing panic.
fn edit_never_panics(text: &str) {
    if let Ok(doc) = YamlDoc::parse(text) {
        for path in [
            "a",
            "a.b.c",
            "x[0]",
            "\"k.y\".z",
            "spec.userCluster.overwriteRegistry",
        ] {
            let p = YamlPath::parse(path).expect("valid path");
            let _ = doc.get_str(0, &p);
            let _ = doc.clone().set(0, &p, "reg.local:5000/x");
            let _ = doc.clone().set(doc.document_count(), &p, "v");
        }
        let _ = doc.document_count();
    }
    let _ = YamlPath::parse(text);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn yamledit_changes_only_the_intended_path(
        tree in tree(),
        style in any::<u8>(),
        pick in any::<prop::sample::Index>(),
        value in scalar(),
    ) {
        let mut text = String::new();
        render_block(&tree, 0, style, &mut text);
        let mut targets = Vec::new();
        edit_targets(&tree, &mut Vec::new(), &mut targets);
        let path = pick.get(&targets);
        if let Err(e) = edit_property(&text, path, &value) {
            prop_assert!(false, "{}", e);
        }
    }

    #[test]
    fn yamledit_survives_arbitrary_text(text in any::<String>()) {
        edit_never_panics(&text);
    }

    #[test]
    fn yamledit_survives_yaml_shaped_text(text in yamlish()) {
        edit_never_panics(&text);
    }
}

#[test]
fn yamledit_corpus_replays() {
    for (path, text) in corpus("yamledit") {
        edit_never_panics(&text);
        // Files that load as a mapping must also take an edit of a new and of an existing key.
        if let Ok(docs) = load_data(&text)
            && let Some(Value::Object(m)) = docs.first()
            && docs.len() == 1
        {
            let added = ["kkpFuzz".to_string(), "added".to_string()];
            if let Err(e) = edit_property(&text, &added, "reg.local:5000/x") {
                panic!("{}: {e}", path.display());
            }
            if let Some((k, Value::String(_))) = m.iter().next()
                && let Err(e) = edit_property(&text, std::slice::from_ref(k), "v2")
            {
                panic!("{}: {e}", path.display());
            }
        }
    }
}

// ---- manifest scanning ------------------------------------------------------------------------------

/// YAML-ish text: fragments of Kubernetes objects, YAML syntax and troublemakers glued together.
fn yamlish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("---\n".to_string()),
        Just("...\n".to_string()),
        Just("# Source: chart/templates/x.yaml\n".to_string()),
        Just("apiVersion: v1\n".to_string()),
        Just("kind: Pod\n".to_string()),
        Just("kind: Deployment\n".to_string()),
        Just("kind: ConfigMap\n".to_string()),
        Just("kind: CustomResourceDefinition\n".to_string()),
        Just("metadata:\n  name: x\n  annotations:\n    helm.sh/hook: test\n".to_string()),
        Just("spec:\n  containers:\n  - name: c\n    image: nginx:1.27\n".to_string()),
        Just(
            "spec:\n  template:\n    spec:\n      initContainers:\n      - image: a/b@sha256:0\n".to_string()
        ),
        Just("    args: [\"--foo-image=quay.io/x/y:1\", \"--x\"]\n".to_string()),
        Just("    env:\n    - name: FOO_IMAGE\n      value: r.io/a:1\n".to_string()),
        Just("data:\n  cfg: |\n    image: quay.io/a/b:2\n    repository: x\n".to_string()),
        Just("image: {repository: a/b, tag: \"1\", registry: r.io}\n".to_string()),
        Just("a: &a [1, 2, *a]\n".to_string()),
        Just("b: &b {x: 1}\nc: *b\n<<: *b\n".to_string()),
        Just("d: *undefined\n".to_string()),
        Just("- item\n".to_string()),
        Just("? complex\n: key\n".to_string()),
        Just("k: \"unterminated\n".to_string()),
        Just("k: [unclosed\n".to_string()),
        Just("\tindented: with tab\n".to_string()),
        Just("%YAML 1.2\n".to_string()),
        Just("!!binary aGVsbG8=\n".to_string()),
        Just("k: !custom tagged\n".to_string()),
        Just("dup: 1\ndup: 2\n".to_string()),
        Just("\u{feff}".to_string()),
        Just("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]\n".to_string()),
        "[ -~\n]{0,20}",
        "spec:\n  containers:\n  - name: c\n    image: \"[a-zA-Z0-9:/.@_ -]{0,30}\"\n",
        "data:\n  x: \"--controller-image=[a-zA-Z0-9:/.@_-]{0,30}\"\n",
        "spec:\n  image:\n    repository: [a-z0-9./:-]{0,20}\n    tag: \"[a-zA-Z0-9:@._-]{0,12}\"\n",
        " {0,6}[a-zA-Z]{1,6}: [a-zA-Z0-9:/.@]{0,20}\n",
    ];
    prop::collection::vec(piece, 0..16).prop_map(|v| v.concat())
}

fn scan_never_panics(text: &str) {
    for include_tests in [false, true] {
        let ctx = ScanContext {
            source: SourceKind::Manifest,
            name: "fuzz.yaml".into(),
            include_tests,
        };
        match scan_stream(text, &ctx) {
            Ok(found) => {
                for f in found.images.iter().chain(&found.candidates) {
                    assert_eq!(f.origin.name, "fuzz.yaml");
                }
                // Certain images go straight into the plan: each must be a valid reference.
                for f in &found.images {
                    assert!(
                        ImageRef::parse(&f.image).is_ok(),
                        "certain image {:?} does not parse",
                        f.image
                    );
                }
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.starts_with("fuzz.yaml: "), "{msg}");
            }
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn scan_stream_survives_arbitrary_text(text in any::<String>()) {
        scan_never_panics(&text);
    }

    #[test]
    fn scan_stream_survives_yaml_shaped_text(text in yamlish()) {
        scan_never_panics(&text);
    }
}

#[test]
fn manifest_corpus_replays() {
    for (_, text) in corpus("manifest") {
        scan_never_panics(&text);
    }
}
