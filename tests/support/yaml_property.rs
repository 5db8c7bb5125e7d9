//! The YAML edit property's helpers, shared by `tests/fuzz_props.rs` and the cargo-fuzz target
//! `fuzz/fuzz_targets/yaml_edit.rs` (which includes this file with `#[path]`): what an edit of `path`
//! should do to the data, and which lines of the text it may rewrite. Needs only `serde_json`.

use serde_json::{Map, Value};

/// `v` with `path` set to the string `value`, creating mappings on the way (what `YamlDoc::set` does to
/// the data).
pub fn put(v: &mut Value, path: &[String], value: &str) {
    match path.split_first() {
        None => *v = Value::String(value.to_string()),
        Some((k, rest)) => {
            if !v.is_object() {
                *v = Value::Object(Map::new());
            }
            if let Value::Object(m) = v {
                put(m.entry(k.clone()).or_insert(Value::Null), rest, value);
            }
        }
    }
}

/// Lines outside the edit are kept byte for byte: for a changed value, every line before and after the
/// lines its old text spanned (a multi-line scalar may become one line); for an inserted key, all lines
/// but one (the parent's, when it has to open a block).
pub fn lines_kept(old: &str, new: &str, span: Option<std::ops::Range<usize>>) -> Result<(), String> {
    let old_lines: Vec<&str> = old.lines().collect();
    let new_lines: Vec<&str> = new.lines().collect();
    match span {
        Some(span) => {
            let first = old[..span.start].matches('\n').count();
            let last = old[..span.end].matches('\n').count();
            let after = old_lines.len().saturating_sub(last + 1);
            let head_kept = new_lines.len() >= first && old_lines[..first] == new_lines[..first];
            let tail_kept = new_lines.len() >= after
                && old_lines[old_lines.len() - after..] == new_lines[new_lines.len() - after..];
            if !head_kept || !tail_kept {
                return Err(format!(
                    "lines outside {}..={} (the edited value) were rewritten",
                    first + 1,
                    last + 1
                ));
            }
        }
        None => {
            let kept = old_lines.iter().filter(|l| new_lines.contains(l)).count();
            if kept + 1 < old_lines.len() {
                return Err("more than one line rewritten for an inserted key".into());
            }
        }
    }
    Ok(())
}
