//! Printing data on stdout in the format the user chose; logs never come here.

use std::io::{self, IsTerminal, Write};

use serde::Serialize;

use crate::cli::OutputFormat;

/// The format to use when the user gave none: a table for people, plain text for pipes.
pub fn default_format(explicit: Option<OutputFormat>) -> OutputFormat {
    explicit.unwrap_or(if io::stdout().is_terminal() {
        OutputFormat::Table
    } else {
        OutputFormat::Text
    })
}

/// Renders rows as left-aligned columns separated by three spaces, kubectl style.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let n = cells.len();
        for (i, cell) in cells.into_iter().enumerate() {
            out.push_str(cell);
            if i + 1 < n {
                out.push_str(&" ".repeat(widths[i] - cell.chars().count() + 3));
            }
        }
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// Writes `text` to stdout; a closed pipe (`| head`) is not an error.
pub fn print(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// The JSON or YAML document for `value`, when `format` is one of those; `None` for table and text,
/// whose layout each report chooses itself.
pub fn structured<T: Serialize>(value: &T, format: OutputFormat) -> Option<String> {
    match format {
        OutputFormat::Json => Some(serde_json::to_string_pretty(value).unwrap_or_default() + "\n"),
        OutputFormat::Yaml => Some(serde_saphyr::to_string(value).unwrap_or_default()),
        OutputFormat::Table | OutputFormat::Text => None,
    }
}

/// One row per item, as reports list images: JSON or YAML of `doc`; as text, the words of `line(item)`
/// joined by spaces, one line each; as a table, `header` over `row(item)`. An absent value shows as `-`.
pub fn listing<D: Serialize, T>(
    doc: &D,
    format: OutputFormat,
    items: &[T],
    line: impl Fn(&T) -> Vec<String>,
    header: &[&str],
    row: impl Fn(&T) -> Vec<String>,
) -> String {
    if let Some(text) = structured(doc, format) {
        return text;
    }
    match format {
        OutputFormat::Text => items.iter().map(|i| line(i).join(" ") + "\n").collect(),
        _ => table(header, &items.iter().map(row).collect::<Vec<_>>()),
    }
}

/// `value`, or `-` when there is none (a table cell, a word of a text line).
pub fn or_dash(value: Option<&str>) -> String {
    value.unwrap_or("-").to_string()
}
