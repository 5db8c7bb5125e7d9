//! The span-preserving YAML editor on arbitrary text. Input: YAML text, then optionally a NUL byte,
//! path-choosing bytes, a second NUL and the value to set.
//!
//! * parsing, reading and editing never panic, whatever the text;
//! * when the text loads as data, an edit of a path chosen from its keys (or a new key below one)
//!   that succeeds must re-parse, and the data must equal the original with only that path changed;
//!   lines outside the edited value are kept byte for byte (the property of tests/fuzz_props.rs).
#![no_main]

use kkp_shared::yamledit::{YamlDoc, YamlPath, load_data};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

#[path = "../../tests/support/yaml_property.rs"]
mod yaml_property;
use yaml_property::{lines_kept, put};

/// `load_data` with alias expansion capped far below the production limit: an alias bomb is refused
/// after a few thousand replayed events instead of a million, which under the sanitizers took ~150 ms
/// per input and kept this target at ~10 inputs/s. The property is checked on everything below the cap.
fn load_small(text: &str) -> Result<Vec<Value>, serde_saphyr::Error> {
    let options = serde_saphyr::options! {
        emit_comments: false,
        alias_limits: serde_saphyr::alias_limits! { max_total_replayed_events: 10_000 },
    };
    serde_saphyr::from_multiple_with_options::<Value>(text, options)
}

fn never_panics(text: &str) {
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
    }
    let _ = YamlPath::parse(text);
}

/// Walks `v` by the selector bytes: each picks an existing key or a new one (which ends the path);
/// the path also ends at a leaf.
fn choose_path(v: &Value, selectors: &[u8]) -> Vec<String> {
    let mut path = Vec::new();
    let mut at = v;
    let mut sel = selectors.iter();
    loop {
        let Value::Object(m) = at else { return path };
        let Some(&b) = sel.next() else {
            path.push("addedKey".into());
            return path;
        };
        let k = b as usize % (m.len() + 1);
        match m.iter().nth(k) {
            Some((key, child)) => {
                path.push(key.clone());
                at = child;
            }
            None => {
                path.push("addedKey".into());
                return path;
            }
        }
    }
}


fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == 0);
    let Ok(text) = std::str::from_utf8(parts.next().unwrap_or_default()) else {
        return;
    };
    let selectors = parts.next().unwrap_or_default();
    let value = match parts.next().map(String::from_utf8_lossy) {
        Some(v) if !v.is_empty() => v.into_owned(),
        _ => "reg.local:5000/x".to_string(),
    };
    never_panics(text);

    let Ok(before) = load_small(text) else { return };
    let Ok(mut doc) = YamlDoc::parse(text) else { return };
    // The data view leaves out the empty documents of a stream, the editor numbers them: compare the
    // two only when they count documents alike.
    if !before.is_empty() && before.len() != doc.document_count() {
        return;
    }
    let mut expected = before;
    if expected.is_empty() {
        expected.push(Value::Null);
    }
    if !matches!(expected[0], Value::Object(_) | Value::Null) {
        return;
    }
    let path = choose_path(&expected[0], selectors);
    if path.is_empty() {
        return;
    }
    let yaml_path = YamlPath::keys(path.iter().map(String::as_str));
    let span = doc.span(0, &yaml_path);
    if doc.set(0, &yaml_path, &value).is_err() {
        return;
    }
    let new = doc.into_text();
    let after = load_data(&new)
        .unwrap_or_else(|e| panic!("set {yaml_path} = {value:?}: edited text does not load: {e}\n--- before\n{text}\n--- after\n{new}"));
    put(&mut expected[0], &path, &value);
    assert!(
        after == expected,
        "set {yaml_path} = {value:?} changed more than that\n--- before\n{text}\n--- after\n{new}"
    );
    if let Err(e) = lines_kept(text, &new, span) {
        panic!("set {yaml_path} = {value:?}: {e}\n--- before\n{text}\n--- after\n{new}");
    }
});

