//! Span-preserving YAML edits: change or add a few scalars and leave every other byte alone.
//!
//! Operators keep comments, key order, quoting and blank lines in their KubermaticConfiguration and Helm
//! values; a re-serialising YAML library would rewrite all of them and make the diff unreadable. So a
//! document is parsed into events with byte spans (`granit-parser`), a value is *spliced* over the bytes of
//! its scalar (keeping its quoting style), and missing keys are *inserted* as block mappings with the
//! indentation of the surrounding mapping. [`verify_edits`] re-parses old and new text and proves that only
//! the intended paths changed.
//!
//! This module knows YAML and nothing else: no images, no KKP, no Helm.

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;

use granit_parser::{Event, Parser, ScalarStyle, StructureStyle};

/// One step of a [`YamlPath`]: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Seg {
    /// A mapping key (matched against the key scalar's decoded value).
    Key(String),
    /// A sequence index, zero-based.
    Index(usize),
}

/// A path into a YAML document: `spec.userCluster.addons.dockerRepository`, `dex.image.repository`,
/// `velero.initContainers[0].image`, `"a.b".c` (keys with dots or brackets are double-quoted).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct YamlPath(pub Vec<Seg>);

impl YamlPath {
    /// A path of mapping keys only.
    pub fn keys<I, S>(keys: I) -> YamlPath
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        YamlPath(keys.into_iter().map(|k| Seg::Key(k.into())).collect())
    }

    /// Parses the dotted notation (see the type's docs).
    pub fn parse(input: &str) -> Result<YamlPath, EditError> {
        let bad = |reason: &str| EditError::InvalidPath {
            path: input.to_string(),
            reason: reason.to_string(),
        };
        let mut segs = Vec::new();
        let mut chars = input.chars().peekable();
        let mut expect_key = true;
        while let Some(&c) = chars.peek() {
            match c {
                '[' => {
                    chars.next();
                    let mut digits = String::new();
                    let mut closed = false;
                    for d in chars.by_ref() {
                        if d == ']' {
                            closed = true;
                            break;
                        }
                        digits.push(d);
                    }
                    if !closed {
                        return Err(bad("unterminated index"));
                    }
                    let n = digits.parse().map_err(|_| bad("index is not a number"))?;
                    segs.push(Seg::Index(n));
                    expect_key = false;
                }
                '.' => {
                    chars.next();
                    if expect_key {
                        return Err(bad("empty key"));
                    }
                    expect_key = true;
                }
                '"' => {
                    chars.next();
                    let mut key = String::new();
                    let mut closed = false;
                    while let Some(k) = chars.next() {
                        match k {
                            '"' => {
                                closed = true;
                                break;
                            }
                            '\\' => key.extend(chars.next()),
                            _ => key.push(k),
                        }
                    }
                    if !closed {
                        return Err(bad("unterminated quoted key"));
                    }
                    segs.push(Seg::Key(key));
                    expect_key = false;
                }
                _ => {
                    let mut key = String::new();
                    while let Some(&k) = chars.peek() {
                        if k == '.' || k == '[' {
                            break;
                        }
                        key.push(k);
                        chars.next();
                    }
                    segs.push(Seg::Key(key));
                    expect_key = false;
                }
            }
        }
        if segs.is_empty() || expect_key {
            return Err(bad("empty key"));
        }
        Ok(YamlPath(segs))
    }

    /// This path with one more key.
    pub fn child(&self, key: &str) -> YamlPath {
        let mut p = self.clone();
        p.0.push(Seg::Key(key.to_string()));
        p
    }

    /// Number of segments.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for the root path.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for YamlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Index(n) => write!(f, "[{n}]")?,
                Seg::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    if k.is_empty() || k.contains(['.', '[', ']', '"']) {
                        write!(f, "\"{}\"", k.replace('\\', "\\\\").replace('"', "\\\""))?;
                    } else {
                        f.write_str(k)?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for YamlPath {
    type Err = EditError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        YamlPath::parse(s)
    }
}

/// Why an edit was refused. Line numbers are 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// The text is not YAML.
    #[error("not valid YAML at line {line}: {message}")]
    Parse {
        /// Line of the error.
        line: usize,
        /// The parser's message.
        message: String,
    },
    /// A path in the dotted notation is malformed.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The document index does not exist.
    #[error("the file has no YAML document number {0}")]
    NoSuchDocument(usize),
    /// Nothing at this path (for edits that need an existing value).
    #[error("{path}: not present")]
    NotFound {
        /// The path.
        path: String,
    },
    /// A flow-style (`{…}` / `[…]`) collection would have to be changed structurally.
    #[error("{path} (line {line}) is a flow-style collection; rewrite it in block style to let it be edited")]
    FlowStyle {
        /// The collection's path.
        path: String,
        /// Its line.
        line: usize,
    },
    /// The path runs through an alias (`*name`); editing it would change the anchor's other users.
    #[error("{path} (line {line}) is an alias; edit the anchored definition instead")]
    Alias {
        /// The aliased node's path.
        path: String,
        /// Its line.
        line: usize,
    },
    /// The scalar carries an anchor that is used elsewhere.
    #[error("{path} (line {line}) is anchored and aliased elsewhere; editing it would change the other uses")]
    Anchored {
        /// The path.
        path: String,
        /// Its line.
        line: usize,
    },
    /// Literal/folded block scalars (`|`, `>`) are not edited.
    #[error("{path} (line {line}) is a block scalar (| or >); not edited")]
    BlockScalar {
        /// The path.
        path: String,
        /// Its line.
        line: usize,
    },
    /// The node is of the wrong kind for the path (a scalar where a mapping is needed …).
    #[error("{path} (line {line}) is a {found}, expected a {expected}")]
    WrongKind {
        /// The path.
        path: String,
        /// Its line.
        line: usize,
        /// What is there.
        found: &'static str,
        /// What the path needs.
        expected: &'static str,
    },
    /// The re-parse after an edit does not show exactly the intended change.
    #[error("refusing to write: {0}")]
    Verify(String),
}

#[derive(Debug, Clone)]
enum Kind {
    Scalar {
        value: String,
        style: ScalarStyle,
        tagged: bool,
    },
    Map {
        flow: bool,
        entries: Vec<(Node, Node)>,
    },
    Seq {
        flow: bool,
        items: Vec<Node>,
    },
    Alias,
}

#[derive(Debug, Clone)]
struct Node {
    kind: Kind,
    /// Bytes of the node's own text (a collection: from its start to the end of its last child).
    span: Range<usize>,
    anchor: usize,
}

impl Node {
    fn kind_name(&self) -> &'static str {
        match &self.kind {
            Kind::Scalar { .. } => "scalar",
            Kind::Map { .. } => "mapping",
            Kind::Seq { .. } => "sequence",
            Kind::Alias => "alias",
        }
    }

    fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { value, style: ScalarStyle::Plain, tagged: false }
            if matches!(value.as_str(), "~" | "null" | "Null" | "NULL" | ""))
    }

    fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            Kind::Map { entries, .. } => entries
                .iter()
                .find(|(k, _)| matches!(&k.kind, Kind::Scalar { value, .. } if value == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
struct Doc {
    root: Option<Node>,
}

/// A parsed YAML file that can be edited without disturbing its other bytes.
#[derive(Debug, Clone)]
pub struct YamlDoc {
    text: String,
    docs: Vec<Doc>,
    aliased: HashSet<usize>,
    eol: &'static str,
    step: usize,
}

fn parse_err(e: &granit_parser::ScanError) -> EditError {
    EditError::Parse {
        line: e.marker().line(),
        message: e.info().to_string(),
    }
}

impl YamlDoc {
    /// Parses `text` (all documents of a stream).
    pub fn parse(text: impl Into<String>) -> Result<YamlDoc, EditError> {
        let text = text.into();
        let mut events = Vec::new();
        // Comments are not needed (every byte outside an edit is kept anyway), and not emitting them
        // avoids the parser's limit on comments buffered during look-ahead.
        let options = granit_parser::options! { emit_comments: false };
        for ev in Parser::new_from_str_with_options(&text, options) {
            let (ev, span) = ev.map_err(|e| parse_err(&e))?;
            if matches!(ev, Event::Comment(..)) {
                continue;
            }
            let range = span.byte_range().ok_or_else(|| EditError::Parse {
                line: span.start.line(),
                message: "parser gave no byte offsets".into(),
            })?;
            events.push((ev, range));
        }
        let mut aliased = HashSet::new();
        let mut docs = Vec::new();
        let mut it = events.into_iter().peekable();
        while let Some((ev, _)) = it.next() {
            match ev {
                Event::DocumentStart(..) => {
                    let root = match it.peek() {
                        Some((Event::DocumentEnd, _)) => None,
                        _ => Some(build(&mut it, &mut aliased)?),
                    };
                    docs.push(Doc { root });
                }
                Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
                other => {
                    return Err(EditError::Parse {
                        line: 0,
                        message: format!("unexpected event {other:?}"),
                    });
                }
            }
        }
        let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
        let mut doc = YamlDoc {
            text,
            docs,
            aliased,
            eol,
            step: 2,
        };
        doc.step = doc.detect_step().unwrap_or(2);
        Ok(doc)
    }

    /// The current text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The current text, consuming the document.
    pub fn into_text(self) -> String {
        self.text
    }

    /// Number of YAML documents in the stream.
    pub fn document_count(&self) -> usize {
        self.docs.len()
    }

    /// The decoded value of the scalar at `path` in document `doc`, if there is one.
    pub fn get_str(&self, doc: usize, path: &YamlPath) -> Option<&str> {
        let mut node = self.docs.get(doc)?.root.as_ref()?;
        for seg in &path.0 {
            node = match (seg, &node.kind) {
                (Seg::Key(k), Kind::Map { .. }) => node.get(k)?,
                (Seg::Index(i), Kind::Seq { items, .. }) => items.get(*i)?,
                _ => return None,
            };
        }
        match &node.kind {
            Kind::Scalar { value, .. } if !node.is_null() => Some(value),
            _ => None,
        }
    }

    /// The bytes of the node at `path` in document `doc` (a collection: up to the end of its last
    /// child), if there is one: what an edit of that path may rewrite.
    pub fn span(&self, doc: usize, path: &YamlPath) -> Option<std::ops::Range<usize>> {
        match self.lookup(doc, path) {
            Ok(Lookup::Found(node)) => Some(node.span.clone()),
            _ => None,
        }
    }

    /// True when something (anything, even null) is at `path`.
    pub fn contains(&self, doc: usize, path: &YamlPath) -> bool {
        matches!(self.lookup(doc, path), Ok(Lookup::Found(_)))
    }

    /// Sets `path` to the string `value`: splices the existing scalar or inserts the missing keys.
    /// Returns whether the text changed.
    pub fn set(&mut self, doc: usize, path: &YamlPath, value: &str) -> Result<bool, EditError> {
        match self.lookup(doc, path)? {
            Lookup::Found(_) => self.set_scalar(doc, path, value),
            Lookup::Missing { .. } => self.insert_path(doc, path, value).map(|_| true),
        }
    }

    /// Sets `path` to `value`: a string as [`YamlDoc::set`], a boolean as a plain `true`/`false` (a quoted
    /// `"true"` is a string to YAML and becomes the plain boolean). Returns whether the text changed.
    pub fn set_value(&mut self, doc: usize, path: &YamlPath, value: &Scalar) -> Result<bool, EditError> {
        let b = match value {
            Scalar::Str(s) => return self.set(doc, path, s),
            Scalar::Bool(b) => *b,
        };
        let rendered = if b { "true" } else { "false" };
        match self.lookup(doc, path)? {
            Lookup::Found(_) if self.get_bool(doc, path) == Some(b) => Ok(false),
            Lookup::Found(_) => {
                self.replace_scalar(doc, path, |v| match v.style {
                    ScalarStyle::Literal | ScalarStyle::Folded => Err(EditError::BlockScalar {
                        path: path.to_string(),
                        line: v.line,
                    }),
                    _ => Ok(Some(rendered.to_string())),
                })?;
                self.check_bool(doc, path, b).map(|_| true)
            }
            Lookup::Missing { .. } => {
                self.insert_rendered(doc, path, rendered)?;
                self.check_bool(doc, path, b).map(|_| true)
            }
        }
    }

    /// The boolean at `path`: a plain, untagged `true`/`false` (YAML 1.2 core schema spellings).
    pub fn get_bool(&self, doc: usize, path: &YamlPath) -> Option<bool> {
        match self.lookup(doc, path).ok()? {
            Lookup::Found(Node {
                kind:
                    Kind::Scalar {
                        value,
                        style: ScalarStyle::Plain,
                        tagged: false,
                    },
                ..
            }) => match value.as_str() {
                "true" | "True" | "TRUE" => Some(true),
                "false" | "False" | "FALSE" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }

    fn check_bool(&self, doc: usize, path: &YamlPath, b: bool) -> Result<(), EditError> {
        match self.get_bool(doc, path) {
            Some(v) if v == b => Ok(()),
            other => Err(EditError::Verify(format!(
                "{path} reads back as {other:?} after the edit, not {b}"
            ))),
        }
    }

    /// Replaces the bytes of the existing scalar at `path` with `value`, keeping its quoting style (a plain
    /// scalar that would no longer read back as this string becomes double-quoted). Returns whether the
    /// text changed.
    pub fn set_scalar(&mut self, doc: usize, path: &YamlPath, value: &str) -> Result<bool, EditError> {
        let changed = self.replace_scalar(doc, path, |v| {
            if !v.null && v.old == value {
                return Ok(None);
            }
            let rendered = match v.style {
                ScalarStyle::Plain if plain_safe(value) => value.to_string(),
                ScalarStyle::Plain | ScalarStyle::DoubleQuoted => double_quote(value),
                ScalarStyle::SingleQuoted if value.chars().all(|c| c != '\t' && printable(c)) => {
                    format!("'{}'", value.replace('\'', "''"))
                }
                ScalarStyle::SingleQuoted => double_quote(value),
                ScalarStyle::Literal | ScalarStyle::Folded => {
                    return Err(EditError::BlockScalar {
                        path: path.to_string(),
                        line: v.line,
                    });
                }
            };
            Ok(Some(rendered))
        })?;
        if changed {
            self.check_value(doc, path, value)?;
        }
        Ok(changed)
    }

    /// Splices the text `render` gives (None: leave as it is) over the existing scalar at `path`, refusing
    /// anchored scalars (their aliases would change too). Returns whether the text changed.
    fn replace_scalar(
        &mut self,
        doc: usize,
        path: &YamlPath,
        render: impl FnOnce(&ScalarView<'_>) -> Result<Option<String>, EditError>,
    ) -> Result<bool, EditError> {
        let node = match self.lookup(doc, path)? {
            Lookup::Found(n) => n.clone(),
            Lookup::Missing { .. } => {
                return Err(EditError::NotFound {
                    path: path.to_string(),
                });
            }
        };
        let line = self.line_of(node.span.start);
        let Kind::Scalar {
            value: old, style, ..
        } = &node.kind
        else {
            return Err(EditError::WrongKind {
                path: path.to_string(),
                line,
                found: node.kind_name(),
                expected: "scalar",
            });
        };
        if node.anchor != 0 && self.aliased.contains(&node.anchor) {
            return Err(EditError::Anchored {
                path: path.to_string(),
                line,
            });
        }
        let view = ScalarView {
            old,
            style: *style,
            null: node.is_null(),
            line,
        };
        let Some(rendered) = render(&view)? else {
            return Ok(false);
        };
        let (range, rendered) = if node.span.is_empty() {
            // An empty value (`key:`): the parser puts its span at the end of the key, before the colon.
            let bytes = self.text.as_bytes();
            let mut at = node.span.start;
            while at < bytes.len() && matches!(bytes[at], b' ' | b'\t') {
                at += 1;
            }
            if at < bytes.len() && bytes[at] == b':' {
                at += 1;
            } else {
                at = node.span.start;
            }
            (at..at, format!(" {rendered}"))
        } else {
            (node.span.clone(), rendered)
        };
        self.splice(range, &rendered)?;
        Ok(true)
    }

    /// Adds the missing part of `path` with the string `value`: new keys go at the end of the deepest
    /// existing block mapping, indented like its keys, parents created as needed. An existing null value
    /// (`key:` / `key: ~`) on the way becomes a mapping. Refuses flow-style parents and aliases.
    pub fn insert_path(&mut self, doc: usize, path: &YamlPath, value: &str) -> Result<(), EditError> {
        self.insert_rendered(doc, path, &render_new(value))?;
        self.check_value(doc, path, value)
    }

    /// [`YamlDoc::insert_path`] with the value's text already rendered; the caller checks the read-back.
    fn insert_rendered(&mut self, doc: usize, path: &YamlPath, rendered: &str) -> Result<(), EditError> {
        let (parent_path, parent, rest) = match self.lookup(doc, path)? {
            Lookup::Found(_) => {
                return Err(EditError::InvalidPath {
                    path: path.to_string(),
                    reason: "already present; use set_scalar".into(),
                });
            }
            Lookup::Missing {
                parent_path,
                parent,
                rest,
            } => (parent_path, parent.cloned(), rest),
        };
        let keys: Vec<&str> = rest
            .iter()
            .map(|s| match s {
                Seg::Key(k) => Ok(k.as_str()),
                Seg::Index(_) => Err(EditError::InvalidPath {
                    path: path.to_string(),
                    reason: "cannot create sequence items".into(),
                }),
            })
            .collect::<Result<_, _>>()?;
        let eol = self.eol;
        let (at, indent, prefix_cut) = match &parent {
            None => {
                // No document at all (empty file or comments only): append at the end.
                if doc > 0 && doc >= self.docs.len() {
                    return Err(EditError::NoSuchDocument(doc));
                }
                (self.text.len(), 0, None)
            }
            Some(p) => {
                let line = self.line_of(p.span.start);
                let empty_flow_map =
                    matches!(&p.kind, Kind::Map { flow: true, entries } if entries.is_empty());
                // `key:`, `key: ~` and `key: {}` become block mappings, unless they sit inside a flow
                // collection (`a: {b: ~}`), where block lines cannot go.
                let becomes_block = (p.is_null() || empty_flow_map) && !self.inside_flow(p.span.start);
                match &p.kind {
                    _ if becomes_block => {
                        let indent = if parent_path.is_empty() {
                            0
                        } else {
                            self.key_column(doc, &parent_path).unwrap_or(0) + self.step
                        };
                        let cut = if p.span.is_empty() {
                            None
                        } else {
                            // Drop `~`/`null`/`{}` and the blanks before it: `key: ~` → `key:`.
                            let mut start = p.span.start;
                            while start > 0 && matches!(self.text.as_bytes()[start - 1], b' ' | b'\t') {
                                start -= 1;
                            }
                            Some(start..p.span.end)
                        };
                        (self.line_end(p.span.end), indent, cut)
                    }
                    Kind::Map { flow: true, .. } | Kind::Seq { flow: true, .. } => {
                        return Err(EditError::FlowStyle {
                            path: parent_path.to_string(),
                            line,
                        });
                    }
                    Kind::Alias => {
                        return Err(EditError::Alias {
                            path: parent_path.to_string(),
                            line,
                        });
                    }
                    Kind::Map { entries, .. } => {
                        // A block mapping always has an entry; an empty one is written `{}` (flow).
                        let Some((first_key, _)) = entries.first() else {
                            return Err(EditError::Verify(format!("{parent_path}: empty block mapping")));
                        };
                        let indent = self.column(first_key.span.start);
                        (self.line_end(p.span.end), indent, None)
                    }
                    _ => {
                        return Err(EditError::WrongKind {
                            path: parent_path.to_string(),
                            line,
                            found: p.kind_name(),
                            expected: "mapping",
                        });
                    }
                }
            }
        };
        let mut block = String::new();
        if at > 0 && !self.text[..at].ends_with('\n') {
            block.push_str(eol);
        }
        for (i, key) in keys.iter().enumerate() {
            block.push_str(&" ".repeat(indent + i * self.step));
            block.push_str(&render_key(key));
            block.push(':');
            if i + 1 == keys.len() {
                block.push(' ');
                block.push_str(rendered);
            }
            block.push_str(eol);
        }
        // Splice the insertion first (it is after the cut), then the cut.
        let mut text = self.text.clone();
        text.insert_str(at, &block);
        if let Some(cut) = prefix_cut {
            text.replace_range(cut, "");
        }
        *self = YamlDoc::parse(text)?;
        Ok(())
    }

    fn check_value(&self, doc: usize, path: &YamlPath, value: &str) -> Result<(), EditError> {
        match self.get_str(doc, path) {
            Some(v) if v == value => Ok(()),
            other => Err(EditError::Verify(format!(
                "{path} reads back as {other:?} after the edit, not {value:?}"
            ))),
        }
    }

    fn splice(&mut self, range: Range<usize>, with: &str) -> Result<(), EditError> {
        let mut text = self.text.clone();
        text.replace_range(range, with);
        *self = YamlDoc::parse(text)?;
        Ok(())
    }

    /// 1-based line of a byte offset.
    fn line_of(&self, at: usize) -> usize {
        self.text.as_bytes()[..at.min(self.text.len())]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// Column (in characters) of a byte offset.
    fn column(&self, at: usize) -> usize {
        let start = self.text[..at].rfind('\n').map_or(0, |i| i + 1);
        self.text[start..at]
            .trim_start_matches('\u{feff}')
            .chars()
            .count()
    }

    /// Where text after the line holding `at` begins (a block scalar's span already ends on a line start).
    fn line_end(&self, at: usize) -> usize {
        if at > 0 && self.text.as_bytes()[at - 1] == b'\n' {
            return at;
        }
        match self.text[at..].find('\n') {
            Some(i) => at + i + 1,
            None => self.text.len(),
        }
    }

    /// True when an unclosed `{` or `[` precedes `at` on its line (the node sits in a flow collection).
    fn inside_flow(&self, at: usize) -> bool {
        let start = self.text[..at].rfind('\n').map_or(0, |i| i + 1);
        let mut depth = 0i32;
        let mut quote: Option<char> = None;
        for c in self.text[start..at].chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') => quote = Some(c),
                (None, '#') => break,
                (None, '{' | '[') => depth += 1,
                (None, '}' | ']') => depth -= 1,
                _ => {}
            }
        }
        depth > 0
    }

    /// Column of the key whose value is at `path`.
    fn key_column(&self, doc: usize, path: &YamlPath) -> Option<usize> {
        let (last, parent) = path.0.split_last()?;
        let Seg::Key(k) = last else { return None };
        let Ok(Lookup::Found(p)) = self.lookup(doc, &YamlPath(parent.to_vec())) else {
            return None;
        };
        let Kind::Map { entries, .. } = &p.kind else {
            return None;
        };
        let (key, _) = entries
            .iter()
            .find(|(key, _)| matches!(&key.kind, Kind::Scalar { value, .. } if value == k))?;
        Some(self.column(key.span.start))
    }

    fn lookup<'a>(&'a self, doc: usize, path: &YamlPath) -> Result<Lookup<'a>, EditError> {
        let root = match self.docs.get(doc) {
            Some(d) => d.root.as_ref(),
            None if doc == 0 && self.docs.is_empty() => None,
            None => return Err(EditError::NoSuchDocument(doc)),
        };
        let Some(mut node) = root else {
            return Ok(Lookup::Missing {
                parent_path: YamlPath::default(),
                parent: None,
                rest: path.0.clone(),
            });
        };
        for (i, seg) in path.0.iter().enumerate() {
            let here = YamlPath(path.0[..i].to_vec());
            let line = self.line_of(node.span.start);
            let next = match (&node.kind, seg) {
                (Kind::Alias, _) => {
                    return Err(EditError::Alias {
                        path: here.to_string(),
                        line,
                    });
                }
                (Kind::Map { .. }, Seg::Key(k)) => node.get(k),
                (Kind::Seq { items, .. }, Seg::Index(n)) => match items.get(*n) {
                    Some(n) => Some(n),
                    None => {
                        return Err(EditError::NotFound {
                            path: path.to_string(),
                        });
                    }
                },
                (_, _) if node.is_null() => None,
                (_, Seg::Key(_)) => {
                    return Err(EditError::WrongKind {
                        path: here.to_string(),
                        line,
                        found: node.kind_name(),
                        expected: "mapping",
                    });
                }
                (_, Seg::Index(_)) => {
                    return Err(EditError::WrongKind {
                        path: here.to_string(),
                        line,
                        found: node.kind_name(),
                        expected: "sequence",
                    });
                }
            };
            match next {
                Some(n) => node = n,
                None => {
                    return Ok(Lookup::Missing {
                        parent_path: here,
                        parent: Some(node),
                        rest: path.0[i..].to_vec(),
                    });
                }
            }
        }
        if matches!(node.kind, Kind::Alias) {
            return Err(EditError::Alias {
                path: path.to_string(),
                line: self.line_of(node.span.start),
            });
        }
        Ok(Lookup::Found(node))
    }

    /// Smallest positive indentation step between a block mapping and a block mapping nested in it.
    fn detect_step(&self) -> Option<usize> {
        let mut best: Option<usize> = None;
        let mut stack: Vec<&Node> = self.docs.iter().filter_map(|d| d.root.as_ref()).collect();
        while let Some(n) = stack.pop() {
            match &n.kind {
                Kind::Map { flow: false, entries } => {
                    let Some((k0, _)) = entries.first() else { continue };
                    let col = self.column(k0.span.start);
                    for (_, v) in entries {
                        if let Kind::Map {
                            flow: false,
                            entries: inner,
                        } = &v.kind
                            && let Some((ik, _)) = inner.first()
                        {
                            let icol = self.column(ik.span.start);
                            if icol > col && self.line_of(ik.span.start) > self.line_of(k0.span.start) {
                                best = Some(best.map_or(icol - col, |b| b.min(icol - col)));
                            }
                        }
                        stack.push(v);
                    }
                }
                Kind::Map { entries, .. } => stack.extend(entries.iter().map(|(_, v)| v)),
                Kind::Seq { items, .. } => stack.extend(items.iter()),
                _ => {}
            }
        }
        best
    }
}

enum Lookup<'a> {
    Found(&'a Node),
    Missing {
        parent_path: YamlPath,
        parent: Option<&'a Node>,
        rest: Vec<Seg>,
    },
}

fn build<'a, I>(it: &mut std::iter::Peekable<I>, aliased: &mut HashSet<usize>) -> Result<Node, EditError>
where
    I: Iterator<Item = (Event<'a>, Range<usize>)>,
{
    let Some((ev, span)) = it.next() else {
        return Err(EditError::Parse {
            line: 0,
            message: "unexpected end of events".into(),
        });
    };
    Ok(match ev {
        Event::Scalar(value, style, anchor, tag) => Node {
            kind: Kind::Scalar {
                value: value.into_owned(),
                style,
                tagged: tag.is_some(),
            },
            span,
            anchor,
        },
        Event::Alias(id) => {
            aliased.insert(id);
            Node {
                kind: Kind::Alias,
                span,
                anchor: 0,
            }
        }
        Event::MappingStart(style, anchor, _) => {
            let mut entries = Vec::new();
            let end;
            loop {
                if let Some((Event::MappingEnd, end_span)) = it.peek() {
                    end = end_span.end;
                    it.next();
                    break;
                }
                let k = build(it, aliased)?;
                let v = build(it, aliased)?;
                entries.push((k, v));
            }
            let flow = style == StructureStyle::Flow;
            let last = entries.last().map(|(_, v)| v.span.end);
            let end = if flow { end } else { last.unwrap_or(span.start) };
            Node {
                kind: Kind::Map { flow, entries },
                span: span.start..end,
                anchor,
            }
        }
        Event::SequenceStart(style, anchor, _) => {
            let mut items = Vec::new();
            let end;
            loop {
                if let Some((Event::SequenceEnd, end_span)) = it.peek() {
                    end = end_span.end;
                    it.next();
                    break;
                }
                items.push(build(it, aliased)?);
            }
            let flow = style == StructureStyle::Flow;
            let last = items.last().map(|v| v.span.end);
            let end = if flow { end } else { last.unwrap_or(span.start) };
            Node {
                kind: Kind::Seq { flow, items },
                span: span.start..end,
                anchor,
            }
        }
        other => {
            return Err(EditError::Parse {
                line: 0,
                message: format!("unexpected event {other:?}"),
            });
        }
    })
}

/// True when `v` can be written as a plain scalar and reads back as exactly this string.
pub fn plain_safe(v: &str) -> bool {
    let Some(first) = v.chars().next() else {
        return false;
    };
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) || first.is_whitespace() {
        return false;
    }
    if v.ends_with(char::is_whitespace) || v.ends_with(':') {
        return false;
    }
    if v.contains(": ") || v.contains(" #") || v.contains(['\n', '\r', '\t', ',', '[', ']', '{', '}']) {
        return false;
    }
    if !v.chars().all(printable) {
        return false;
    }
    let lower = v.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "~" | "null"
            | "true"
            | "false"
            | "yes"
            | "no"
            | "on"
            | "off"
            | "y"
            | "n"
            | ".inf"
            | "-.inf"
            | "+.inf"
            | ".nan"
    ) {
        return false;
    }
    let numeric = lower.trim_start_matches(['+', '-']);
    if numeric.parse::<f64>().is_ok()
        || numeric.starts_with("0x")
        || numeric.starts_with("0o")
        || (numeric
            .chars()
            .all(|c| c.is_ascii_digit() || c == '_' || c == ':' || c == '.')
            && numeric.starts_with(|c: char| c.is_ascii_digit()))
    {
        return false;
    }
    true
}

/// YAML's printable set (YAML 1.2 §5.1) without the byte-order mark and line breaks: what may stand
/// unescaped in a plain, single-quoted or double-quoted scalar written on one line.
fn printable(c: char) -> bool {
    matches!(c, ' '..='~' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
        && c != '\u{feff}'
}

fn double_quote(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if !printable(c) && (c as u32) <= 0xffff => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if !printable(c) => out.push_str(&format!("\\U{:08x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn render_new(v: &str) -> String {
    if plain_safe(v) {
        v.to_string()
    } else {
        double_quote(v)
    }
}

fn render_key(k: &str) -> String {
    render_new(k)
}

/// Loads every document of a YAML stream as data (JSON values), the way the edit safety net sees it.
/// Comments are skipped without limit (the default parser options cap comments buffered in look-ahead,
/// which long commented-out blocks in real values files exceed).
pub fn load_data(text: &str) -> Result<Vec<serde_json::Value>, serde_saphyr::Error> {
    let options = serde_saphyr::options! { emit_comments: false };
    serde_saphyr::from_multiple_with_options::<serde_json::Value>(text, options)
}

/// The parser's complaint about YAML data on one line, in words a user can act on: no source snippet,
/// no hints about parser options, limits named as limits. The position is left out (callers print
/// `file:line:column` first, from [`serde_saphyr::Error::location`]).
pub fn data_error_message(e: &serde_saphyr::Error) -> String {
    use serde_saphyr::Error as E;
    let mut e = e.without_snippet();
    while let E::AliasError { error, .. } = e {
        e = error.without_snippet();
    }
    let msg = match e {
        E::DuplicateMappingKey { key: Some(k), .. } => format!("duplicate key {k:?}"),
        E::DuplicateMappingKey { key: None, .. } => "duplicate key".to_string(),
        E::MultipleDocuments { .. } => "more than one YAML document where one is expected".to_string(),
        E::Budget { breach, .. } => {
            // `Nodes { nodes: 250001 }` → "too many nodes (250001)".
            let text = format!("{breach:?}");
            let what = text
                .split([' ', '{'])
                .next()
                .unwrap_or("limit")
                .to_ascii_lowercase();
            let count: String = text.chars().filter(char::is_ascii_digit).collect();
            format!(
                "the YAML exceeds the parser's safety limit on {what}{} (an alias bomb, or far more data \
                 than a Kubernetes file holds)",
                if count.is_empty() {
                    String::new()
                } else {
                    format!(" ({count})")
                }
            )
        }
        other => {
            let text = other.to_string();
            if text.contains("limit exceeded") {
                format!("the YAML exceeds the parser's safety limit on aliases ({text}); an alias bomb?")
            } else {
                text
            }
        }
    };
    let line = msg.lines().next().unwrap_or_default().trim();
    // The parser appends its own position; drop it (`… at line 3, column 7`).
    let line = match line.rfind(" at line ") {
        Some(i) if line[i..].contains(", column ") => &line[..i],
        _ => line,
    };
    line.trim_end_matches(['.', ' ']).to_string()
}

/// What a scalar edit sees of the scalar it replaces.
struct ScalarView<'a> {
    old: &'a str,
    style: ScalarStyle,
    null: bool,
    line: usize,
}

/// The value an edit writes: a string, or a boolean written as a plain `true`/`false`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scalar {
    /// A string (quoted when it would not read back as this string).
    Str(String),
    /// A boolean.
    Bool(bool),
}

impl Scalar {
    /// The value as data.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Scalar::Str(s) => serde_json::Value::String(s.clone()),
            Scalar::Bool(b) => serde_json::Value::Bool(*b),
        }
    }
}

impl From<&str> for Scalar {
    fn from(s: &str) -> Scalar {
        Scalar::Str(s.to_string())
    }
}

impl From<String> for Scalar {
    fn from(s: String) -> Scalar {
        Scalar::Str(s)
    }
}

impl PartialEq<&str> for Scalar {
    fn eq(&self, other: &&str) -> bool {
        matches!(self, Scalar::Str(s) if s == other)
    }
}

impl std::fmt::Display for Scalar {
    /// The string, or `true`/`false`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scalar::Str(s) => f.write_str(s),
            Scalar::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// An edit the caller intends: document index, path, new string value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intended {
    /// Document index in the stream.
    pub doc: usize,
    /// Path that is set.
    pub path: YamlPath,
    /// Its new value.
    pub value: Scalar,
}

impl Intended {
    /// An edit that sets a string.
    pub fn string(doc: usize, path: YamlPath, value: impl Into<String>) -> Intended {
        Intended {
            doc,
            path,
            value: Scalar::Str(value.into()),
        }
    }
}

/// Parses `old` and `new` as data (serde-saphyr → JSON values), applies `intended` to the old data and
/// requires the result to equal the new data: nothing but the intended paths changed.
pub fn verify_edits(old: &str, new: &str, intended: &[Intended]) -> Result<(), EditError> {
    let load = |which: &str, text: &str| -> Result<Vec<serde_json::Value>, EditError> {
        load_data(text).map_err(|e| {
            let at = e
                .location()
                .map_or(String::new(), |l| format!(" (line {})", l.line()));
            EditError::Verify(format!(
                "the {which} text does not load as data{at}: {}",
                data_error_message(&e)
            ))
        })
    };
    let mut expected = load("original", old)?;
    let got = load("edited", new)?;
    for edit in intended {
        while expected.len() <= edit.doc {
            expected.push(serde_json::Value::Null);
        }
        put(&mut expected[edit.doc], &edit.path.0, &edit.value)
            .map_err(|why| EditError::Verify(format!("{}: {why}", edit.path)))?;
    }
    if expected.len() != got.len() {
        return Err(EditError::Verify(format!(
            "the edited text has {} documents, expected {}",
            got.len(),
            expected.len()
        )));
    }
    for (i, (e, g)) in expected.iter().zip(&got).enumerate() {
        if let Some(at) = first_difference(e, g, &mut Vec::new()) {
            return Err(EditError::Verify(format!(
                "document {i}: {at} changed but was not meant to"
            )));
        }
    }
    Ok(())
}

fn put(v: &mut serde_json::Value, path: &[Seg], value: &Scalar) -> Result<(), String> {
    let Some((first, rest)) = path.split_first() else {
        *v = value.to_json();
        return Ok(());
    };
    if v.is_null() {
        *v = serde_json::Value::Object(Default::default());
    }
    match (first, v) {
        (Seg::Key(k), serde_json::Value::Object(m)) => {
            put(m.entry(k.clone()).or_insert(serde_json::Value::Null), rest, value)
        }
        (Seg::Index(i), serde_json::Value::Array(a)) => match a.get_mut(*i) {
            Some(item) => put(item, rest, value),
            None => Err(format!("no item {i}")),
        },
        _ => Err("path does not fit the data".into()),
    }
}

fn first_difference(a: &serde_json::Value, b: &serde_json::Value, at: &mut Vec<Seg>) -> Option<String> {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, xv) in x {
                at.push(Seg::Key(k.clone()));
                let d = match y.get(k) {
                    Some(yv) => first_difference(xv, yv, at),
                    None => Some(YamlPath(at.clone()).to_string()),
                };
                at.pop();
                if d.is_some() {
                    return d;
                }
            }
            y.keys()
                .find(|k| !x.contains_key(*k))
                .map(|k| YamlPath(at.iter().cloned().chain([Seg::Key(k.clone())]).collect()).to_string())
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (xv, yv)) in x.iter().zip(y).enumerate() {
                at.push(Seg::Index(i));
                let d = first_difference(xv, yv, at);
                at.pop();
                if d.is_some() {
                    return d;
                }
            }
            None
        }
        _ if a == b => None,
        _ => Some(if at.is_empty() {
            "the document".to_string()
        } else {
            YamlPath(at.clone()).to_string()
        }),
    }
}

#[cfg(test)]
mod tests;
