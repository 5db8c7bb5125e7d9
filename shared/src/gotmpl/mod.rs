//! A Go `text/template` evaluator, enough for KKP addons: lexer → parser → tree → evaluator over a
//! dynamic [`Value`], with Go's builtins and the deterministic part of sprig ([`Funcs`]).
//!
//! It exists because addons are Go templates whose images depend on the data (`{{ Image (print
//! "registry.k8s.io/kube-proxy:v" .Cluster.Version) }}`), so scraping text is not enough. It knows
//! nothing of KKP, addons or images: callers bring the data and any extra functions. Every render can
//! record what it read ([`Trace`]), which [`Memo`] uses to render each distinct case once.

mod exec;
mod funcs;
mod parse;
mod semver;
mod value;

use std::sync::Arc;

pub use exec::{Trace, resolve};
pub use funcs::{Func, Funcs, empty, go_quote, sprint, strval, version_of};
pub use semver::{Constraint, parse_version};
pub use value::{Path, Set, Struct, TypedMap, Value};

/// A template that failed to parse or render, located in its source file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct TemplateError {
    /// Source file name as given to the parser.
    pub file: String,
    /// 1-based line in that file.
    pub line: usize,
    /// What went wrong.
    pub message: String,
}

#[derive(Debug, Clone)]
struct SourceFile {
    name: String,
    start: usize,
}

/// A parsed template, ready to render any number of times (also from several threads).
#[derive(Debug, Clone)]
pub struct Template {
    tree: parse::Tree,
    text: Arc<str>,
    files: Vec<SourceFile>,
    markers: Vec<String>,
    funcs: Arc<Funcs>,
}

impl Template {
    /// Parses one template text; `name` is used in error messages.
    pub fn parse(name: &str, text: &str, funcs: Arc<Funcs>) -> Result<Template, TemplateError> {
        Template::parse_files(&[(name.to_string(), text.to_string())], "", funcs, |_| {
            String::new()
        })
    }

    /// Parses several files as one template, each followed by `separator` (KKP joins addon files
    /// with `"\n\n---\n\n"`). Each file is first parsed alone, so an unbalanced file is reported
    /// as itself. Where a file's output begins, `marker(name)` is printed (e.g. a `# Source:` line).
    pub fn parse_files(
        files: &[(String, String)],
        separator: &str,
        funcs: Arc<Funcs>,
        marker: impl Fn(&str) -> String,
    ) -> Result<Template, TemplateError> {
        let known = |n: &str| funcs.contains(n);
        for (name, text) in files {
            parse::parse(text, &known, &[]).map_err(|f| locate_in(name, text, f.pos, f.message))?;
        }
        let mut combined = String::new();
        let mut sources = Vec::new();
        for (name, text) in files {
            sources.push(SourceFile {
                name: name.clone(),
                start: combined.len(),
            });
            combined.push_str(text);
            combined.push_str(separator);
        }
        let starts: Vec<usize> = sources.iter().map(|s| s.start).collect();
        let markers = files.iter().map(|(n, _)| marker(n)).collect();
        let text: Arc<str> = Arc::from(combined);
        let mut t = Template {
            tree: parse::Tree::default(),
            text: text.clone(),
            files: sources,
            markers,
            funcs: funcs.clone(),
        };
        t.tree = parse::parse(&text, &known, &starts).map_err(|f| t.locate(f.pos, f.message))?;
        Ok(t)
    }

    /// Length of the template text (all files), a rough measure of render cost.
    pub fn size(&self) -> usize {
        self.text.len()
    }

    /// The functions this template was parsed with.
    pub fn funcs(&self) -> &Funcs {
        &self.funcs
    }

    fn locate(&self, pos: usize, message: String) -> TemplateError {
        let file = self.files.iter().rev().find(|f| f.start <= pos);
        match file {
            Some(f) => {
                let upto = &self.text[f.start..pos.min(self.text.len())];
                TemplateError {
                    file: f.name.clone(),
                    line: upto.matches('\n').count() + 1,
                    message,
                }
            }
            None => TemplateError {
                file: String::new(),
                line: 0,
                message,
            },
        }
    }

    /// Renders over `data` (pass it through [`Value::rooted`] first if you want traces).
    pub fn render(&self, data: &Value) -> Result<String, TemplateError> {
        self.run(data, false).0
    }

    /// Renders and returns what parts of `data` were read, in order. The output depends on nothing
    /// else, so any data that reads the same there renders the same.
    pub fn render_traced(&self, data: &Value) -> (Result<String, TemplateError>, Trace) {
        self.run(data, true)
    }

    fn run(&self, data: &Value, trace: bool) -> (Result<String, TemplateError>, Trace) {
        let mut ex = exec::Exec {
            tree: &self.tree,
            funcs: &self.funcs,
            markers: &self.markers,
            out: String::new(),
            vars: Vec::new(),
            trace: trace.then(Trace::default),
            depth: 0,
        };
        let res = ex.run(data);
        let t = ex.trace.take().unwrap_or_default();
        match res {
            Ok(()) => (Ok(ex.out), t),
            Err(f) => (Err(self.locate(f.pos, f.message)), t),
        }
    }
}

// Templates are rendered from several threads at once.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Template>();
    send_sync::<Value>();
};

fn locate_in(name: &str, text: &str, pos: usize, message: String) -> TemplateError {
    TemplateError {
        file: name.to_string(),
        line: text[..pos.min(text.len())].matches('\n').count() + 1,
        message,
    }
}

/// Remembers render outcomes by the values they read: a decision tree whose nodes are the trace
/// keys in read order, so a lookup costs one comparison per value the render depended on.
#[derive(Debug, Clone)]
pub struct Memo<T> {
    root: Option<MemoNode<T>>,
}

impl<T> Default for Memo<T> {
    fn default() -> Self {
        Memo { root: None }
    }
}

#[derive(Debug, Clone)]
enum MemoNode<T> {
    Leaf(T),
    Branch {
        key: Vec<String>,
        children: Vec<(Value, MemoNode<T>)>,
    },
}

impl<T> Memo<T> {
    /// The outcome of an earlier render that read the same values from `data`, if any.
    pub fn lookup(&self, data: &Value) -> Option<&T> {
        let mut node = self.root.as_ref()?;
        loop {
            match node {
                MemoNode::Leaf(t) => return Some(t),
                MemoNode::Branch { key, children } => {
                    let v = resolve(data, key);
                    node = &children.iter().find(|(c, _)| c.same(&v))?.1;
                }
            }
        }
    }

    /// Stores the outcome of a render with its trace.
    pub fn insert(&mut self, trace: &Trace, outcome: T) {
        fn chain<T>(reads: &[(Vec<String>, Value)], outcome: T) -> MemoNode<T> {
            match reads.split_first() {
                None => MemoNode::Leaf(outcome),
                Some(((k, v), rest)) => MemoNode::Branch {
                    key: k.clone(),
                    children: vec![(v.clone(), chain(rest, outcome))],
                },
            }
        }
        let reads = trace.reads.as_slice();
        let Some(mut node) = self.root.as_mut() else {
            self.root = Some(chain(reads, outcome));
            return;
        };
        let mut i = 0;
        loop {
            match node {
                MemoNode::Leaf(t) => {
                    // Same reads, same result: nothing new (keep the first).
                    let _ = t;
                    return;
                }
                MemoNode::Branch { key, children } => {
                    let Some((k, v)) = reads.get(i) else { return };
                    if k != key {
                        // Cannot happen for a deterministic render; keep the tree consistent.
                        return;
                    }
                    match children.iter().position(|(c, _)| c.same(v)) {
                        Some(p) => {
                            node = &mut children[p].1;
                            i += 1;
                        }
                        None => {
                            children.push((v.clone(), chain(&reads[i + 1..], outcome)));
                            return;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
