//! Evaluation of a parsed tree over a [`Value`], with Go's scoping, truth and printing rules, and a
//! record of which parts of the data were read (for memoisation).

use super::funcs::Funcs;
use super::parse::{Arg, Cmd, Node, Pipe, Tree};
use super::value::Value;

/// The parts of the data one evaluation read, in first-read order: a key is a path of struct fields
/// (`Cluster`, `Network`, `DualStack`), ending in `Has(x)` for a set query or `*` for a whole value.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// Key and the value read there.
    pub reads: Vec<(Vec<String>, Value)>,
}

impl Trace {
    fn record(&mut self, key: Vec<String>, v: &Value) {
        if !self.reads.iter().any(|(k, _)| *k == key) {
            self.reads.push((key, v.clone()));
        }
    }
}

/// Reads the value a trace key names from a (rooted) data value; `Nil` when it is not there.
pub fn resolve(root: &Value, key: &[String]) -> Value {
    let mut cur = root.clone();
    for seg in key {
        cur = match (&cur, seg.as_str()) {
            (_, "*") => return cur,
            (Value::Set(s), seg) if seg.starts_with("Has(") && seg.ends_with(')') => {
                Value::Bool(s.items.contains(&seg[4..seg.len() - 1]))
            }
            (Value::Set(s), "Len()") => Value::Int(s.items.len() as i64),
            (Value::Struct(s), name) => match s.field(name) {
                Some(v) => v.clone(),
                None => return Value::Nil,
            },
            _ => return Value::Nil,
        };
    }
    cur
}

#[derive(Debug)]
pub(crate) struct ExecFail {
    pub pos: usize,
    pub message: String,
}

enum Flow {
    Normal,
    Break,
    Continue,
}

pub(crate) struct Exec<'a> {
    pub tree: &'a Tree,
    pub funcs: &'a Funcs,
    pub markers: &'a [String],
    pub out: String,
    pub vars: Vec<(String, Value)>,
    pub trace: Option<Trace>,
    pub depth: usize,
}

type R<T> = Result<T, ExecFail>;

fn err<T>(pos: usize, message: impl Into<String>) -> R<T> {
    Err(ExecFail {
        pos,
        message: message.into(),
    })
}

const MAX_DEPTH: usize = 1000;

impl Exec<'_> {
    pub fn run(&mut self, root: &Value) -> R<()> {
        self.vars = vec![("$".to_string(), root.clone())];
        let tree = self.tree;
        self.walk(&tree.root, root)?;
        Ok(())
    }

    fn record(&mut self, key: Vec<String>, v: &Value) {
        if let Some(t) = &mut self.trace {
            t.record(key, v);
        }
    }

    /// The whole value is used (printed, passed to a function): its content matters.
    fn touch(&mut self, v: &Value) {
        if self.trace.is_none() {
            return;
        }
        let path = match v {
            Value::Struct(s) => s.path.clone(),
            Value::Set(s) => s.path.clone(),
            _ => None,
        };
        if let Some(p) = path {
            let mut key = (*p).clone();
            key.push("*".into());
            self.record(key, v);
        }
    }

    fn walk(&mut self, list: &[Node], dot: &Value) -> R<Flow> {
        for node in list {
            match node {
                Node::Text(t) => self.out.push_str(t),
                Node::Marker(i) => {
                    if let Some(m) = self.markers.get(*i) {
                        if !self.out.is_empty() && !self.out.ends_with('\n') {
                            self.out.push('\n');
                        }
                        self.out.push_str(m);
                    }
                }
                Node::Action(pipe) => {
                    let v = self.pipe(pipe, dot)?;
                    if pipe.decl.is_empty() {
                        self.touch(&v);
                        self.out.push_str(&v.to_go_string());
                    }
                }
                Node::If(c) | Node::With(c) => {
                    let mark = self.vars.len();
                    let v = self.pipe(&c.pipe, dot)?;
                    if matches!(v, Value::Set(_)) {
                        self.touch(&v);
                    }
                    let flow = if v.truthy() {
                        let inner = if matches!(node, Node::With(_)) { &v } else { dot };
                        self.walk(&c.list, inner)?
                    } else if let Some(e) = &c.else_list {
                        self.walk(e, dot)?
                    } else {
                        Flow::Normal
                    };
                    self.vars.truncate(mark);
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::Range(c) => {
                    let mark = self.vars.len();
                    let v = self.cmds(&c.pipe, dot)?;
                    self.touch(&v);
                    let items: Vec<(Value, Value)> = match &v {
                        Value::List(l) => l
                            .iter()
                            .enumerate()
                            .map(|(i, e)| (Value::Int(i as i64), e.clone()))
                            .collect(),
                        Value::TypedMap(m) => m
                            .entries
                            .iter()
                            .map(|(k, e)| (Value::from(k.as_str()), e.clone()))
                            .collect(),
                        Value::Map(m) => m
                            .iter()
                            .map(|(k, e)| (Value::from(k.as_str()), e.clone()))
                            .collect(),
                        Value::Set(s) => s
                            .items
                            .iter()
                            .map(|k| (Value::from(k.as_str()), Value::structure("Empty", vec![])))
                            .collect(),
                        Value::Int(n) => (0..*n).map(|i| (Value::Int(i), Value::Int(i))).collect(),
                        Value::Nil => Vec::new(),
                        other => {
                            return err(
                                c.pipe.pos,
                                format!("range can't iterate over {}", other.to_go_string()),
                            );
                        }
                    };
                    if items.is_empty() {
                        if let Some(e) = &c.else_list {
                            let flow = self.walk(e, dot)?;
                            self.vars.truncate(mark);
                            if !matches!(flow, Flow::Normal) {
                                return Ok(flow);
                            }
                        }
                        continue;
                    }
                    for (k, e) in items {
                        let inner = self.vars.len();
                        match c.pipe.decl.as_slice() {
                            [] => {}
                            [v1] => self.declare(v1, e.clone(), c.pipe.is_assign),
                            [v1, v2] => {
                                self.declare(v1, k, c.pipe.is_assign);
                                self.declare(v2, e.clone(), c.pipe.is_assign);
                            }
                            _ => return err(c.pipe.pos, "too many declarations in range"),
                        }
                        let flow = self.walk(&c.list, &e)?;
                        self.vars.truncate(inner);
                        if matches!(flow, Flow::Break) {
                            break;
                        }
                    }
                    self.vars.truncate(mark);
                }
                Node::Template { pos, name, pipe } => {
                    let Some(body) = self.tree.defines.get(name).cloned() else {
                        return err(*pos, format!("no such template \"{name}\""));
                    };
                    let arg = match pipe {
                        Some(p) => self.pipe(p, dot)?,
                        None => Value::Nil,
                    };
                    if self.depth >= MAX_DEPTH {
                        return err(*pos, "exceeded maximum template depth");
                    }
                    self.depth += 1;
                    let saved = std::mem::replace(&mut self.vars, vec![("$".to_string(), arg.clone())]);
                    let res = self.walk(&body, &arg);
                    self.vars = saved;
                    self.depth -= 1;
                    res?;
                }
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
        }
        Ok(Flow::Normal)
    }

    fn declare(&mut self, name: &str, v: Value, assign: bool) {
        if assign && let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) {
            slot.1 = v;
            return;
        }
        self.vars.push((name.to_string(), v));
    }

    fn var(&self, pos: usize, name: &str) -> R<Value> {
        match self.vars.iter().rev().find(|(n, _)| n == name) {
            Some((_, v)) => Ok(v.clone()),
            None => err(pos, format!("undefined variable: {name}")),
        }
    }

    /// Evaluates the commands of a pipeline, without its declarations.
    fn cmds(&mut self, pipe: &Pipe, dot: &Value) -> R<Value> {
        let mut val: Option<Value> = None;
        for cmd in &pipe.cmds {
            val = Some(self.cmd(cmd, dot, val)?);
        }
        Ok(val.unwrap_or_default())
    }

    fn pipe(&mut self, pipe: &Pipe, dot: &Value) -> R<Value> {
        let v = self.cmds(pipe, dot)?;
        for name in &pipe.decl {
            self.declare(name, v.clone(), pipe.is_assign);
        }
        Ok(v)
    }

    fn cmd(&mut self, cmd: &Cmd, dot: &Value, fin: Option<Value>) -> R<Value> {
        let rest = &cmd.args[1..];
        match &cmd.args[0] {
            Arg::Func(name) => self.call(cmd.pos, name, rest, dot, fin),
            Arg::Field(chain) => self.chain(cmd.pos, dot.clone(), chain, rest, dot, fin),
            Arg::Var(name, chain) => {
                let v = self.var(cmd.pos, name)?;
                self.chain(cmd.pos, v, chain, rest, dot, fin)
            }
            Arg::Sub(p, chain) => {
                let v = self.pipe(p, dot)?;
                self.chain(cmd.pos, v, chain, rest, dot, fin)
            }
            Arg::Dot | Arg::Lit(_) => {
                if !rest.is_empty() || fin.is_some() {
                    return err(cmd.pos, "can't give argument to non-function");
                }
                self.arg(cmd.pos, &cmd.args[0], dot)
            }
        }
    }

    fn arg(&mut self, pos: usize, arg: &Arg, dot: &Value) -> R<Value> {
        match arg {
            Arg::Func(name) => self.call(pos, name, &[], dot, None),
            Arg::Field(chain) => self.chain(pos, dot.clone(), chain, &[], dot, None),
            Arg::Var(name, chain) => {
                let v = self.var(pos, name)?;
                self.chain(pos, v, chain, &[], dot, None)
            }
            Arg::Sub(p, chain) => {
                let v = self.pipe(p, dot)?;
                self.chain(pos, v, chain, &[], dot, None)
            }
            Arg::Dot => Ok(dot.clone()),
            Arg::Lit(v) => Ok(v.clone()),
        }
    }

    fn chain(
        &mut self,
        pos: usize,
        mut recv: Value,
        chain: &[String],
        args: &[Arg],
        dot: &Value,
        fin: Option<Value>,
    ) -> R<Value> {
        if chain.is_empty() {
            if !args.is_empty() || fin.is_some() {
                return err(pos, "can't give argument to non-function");
            }
            return Ok(recv);
        }
        for name in &chain[..chain.len() - 1] {
            recv = self.field(pos, &recv, name, Vec::new())?;
        }
        let mut vals = Vec::with_capacity(args.len() + 1);
        for a in args {
            let v = self.arg(pos, a, dot)?;
            self.touch(&v);
            vals.push(v);
        }
        vals.extend(fin);
        let last = &chain[chain.len() - 1];
        self.field(pos, &recv, last, vals)
    }

    fn field(&mut self, pos: usize, recv: &Value, name: &str, args: Vec<Value>) -> R<Value> {
        let no_args = |args: &[Value]| -> R<()> {
            if args.is_empty() {
                Ok(())
            } else {
                err(
                    pos,
                    format!("{name} has arguments but cannot be invoked as function"),
                )
            }
        };
        match recv {
            Value::Struct(s) => {
                no_args(&args)?;
                let Some(v) = s.field(name) else {
                    return err(
                        pos,
                        format!("can't evaluate field {name} in type {}", s.type_name),
                    );
                };
                let v = v.clone();
                if let (Some(p), false) = (&s.path, matches!(v, Value::Struct(_) | Value::Set(_))) {
                    let mut key = (**p).clone();
                    key.push(name.to_string());
                    self.record(key, &v);
                }
                Ok(v)
            }
            Value::Set(s) => match name {
                "Has" => {
                    let [Value::Str(x)] = args.as_slice() else {
                        return err(pos, "wrong number or type of args for Has: want 1 string");
                    };
                    let v = Value::Bool(s.items.contains(&**x));
                    if let Some(p) = &s.path {
                        let mut key = (**p).clone();
                        key.push(format!("Has({x})"));
                        self.record(key, &v);
                    }
                    Ok(v)
                }
                "Len" => {
                    no_args(&args)?;
                    let v = Value::Int(s.items.len() as i64);
                    if let Some(p) = &s.path {
                        let mut key = (**p).clone();
                        key.push("Len()".into());
                        self.record(key, &v);
                    }
                    Ok(v)
                }
                _ => err(
                    pos,
                    format!("can't evaluate field {name} in type sets.Set[string]"),
                ),
            },
            Value::TypedMap(m) => {
                no_args(&args)?;
                Ok(m.entries.get(name).cloned().unwrap_or_else(|| m.zero.clone()))
            }
            Value::Map(m) => {
                no_args(&args)?;
                Ok(m.get(name).cloned().unwrap_or_default())
            }
            Value::Version(v) => {
                no_args(&args)?;
                Ok(match name {
                    "Major" => Value::Int(v.major as i64),
                    "Minor" => Value::Int(v.minor as i64),
                    "Patch" => Value::Int(v.patch as i64),
                    "Prerelease" => Value::from(v.pre.as_str()),
                    "Metadata" => Value::from(v.build.as_str()),
                    "String" | "Original" => Value::from(v.to_string()),
                    _ => {
                        return err(
                            pos,
                            format!("can't evaluate field {name} in type *semver.Version"),
                        );
                    }
                })
            }
            Value::Nil => err(pos, format!("nil pointer evaluating interface {{}}.{name}")),
            other => err(
                pos,
                format!("can't evaluate field {name} in type {}", other.type_name()),
            ),
        }
    }

    fn call(&mut self, pos: usize, name: &str, args: &[Arg], dot: &Value, fin: Option<Value>) -> R<Value> {
        if (name == "and" || name == "or") && !self.funcs.is_overridden(name) {
            let want = name == "or";
            if args.is_empty() && fin.is_none() {
                return err(
                    pos,
                    format!("wrong number of args for {name}: want at least 1 got 0"),
                );
            }
            let mut last = Value::Nil;
            for a in args {
                last = self.arg(pos, a, dot)?;
                self.touch(&last);
                if last.truthy() == want {
                    return Ok(last);
                }
            }
            if let Some(f) = fin {
                self.touch(&f);
                last = f;
            }
            return Ok(last);
        }
        let Some(f) = self.funcs.get(name) else {
            return err(pos, format!("function \"{name}\" not defined"));
        };
        let mut vals = Vec::with_capacity(args.len() + 1);
        for a in args {
            vals.push(self.arg(pos, a, dot)?);
        }
        vals.extend(fin);
        for v in &vals {
            self.touch(v);
        }
        f(&vals).map_err(|m| ExecFail {
            pos,
            message: format!("error calling {name}: {m}"),
        })
    }
}
