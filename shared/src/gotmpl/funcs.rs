//! Go's template builtins and the part of sprig v3 templates in the wild use.
//!
//! Only deterministic functions: no `now`, `env`, random or crypto ones, so a render depends on its
//! data alone (which memoisation relies on).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use base64::Engine as _;

use super::semver::{Constraint, parse_version};
use super::value::{Value, format_float};

/// A template function: arguments in, value or message out.
pub type Func = Arc<dyn Fn(&[Value]) -> Result<Value, String> + Send + Sync>;

/// The functions a template may call, by name.
#[derive(Clone, Default)]
pub struct Funcs {
    map: HashMap<String, Func>,
    overridden: Vec<String>,
}

impl std::fmt::Debug for Funcs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<_> = self.map.keys().collect();
        names.sort();
        f.debug_struct("Funcs").field("names", &names).finish()
    }
}

type Res = Result<Value, String>;

fn lazy_placeholder(_: &[Value]) -> Res {
    Err("and/or are evaluated by the executor".into())
}

impl Funcs {
    /// Go's builtins only.
    pub fn builtins() -> Funcs {
        let mut f = Funcs::default();
        f.add("and", lazy_placeholder);
        f.add("or", lazy_placeholder);
        f.add("not", |a| {
            let [x] = a else { return arity("not", 1, a) };
            Ok(Value::Bool(!x.truthy()))
        });
        f.add("eq", |a| {
            if a.len() < 2 {
                return arity("eq", 2, a);
            }
            for b in &a[1..] {
                if go_eq(&a[0], b)? {
                    return Ok(Value::Bool(true));
                }
            }
            Ok(Value::Bool(false))
        });
        f.add("ne", |a| {
            let [x, y] = a else { return arity("ne", 2, a) };
            Ok(Value::Bool(!go_eq(x, y)?))
        });
        f.add("lt", |a| cmp_fn("lt", a, |o| o.is_lt()));
        f.add("le", |a| cmp_fn("le", a, |o| o.is_le()));
        f.add("gt", |a| cmp_fn("gt", a, |o| o.is_gt()));
        f.add("ge", |a| cmp_fn("ge", a, |o| o.is_ge()));
        f.add("len", |a| {
            let [x] = a else { return arity("len", 1, a) };
            Ok(Value::Int(match x {
                Value::Str(s) => s.len(),
                Value::List(l) => l.len(),
                Value::Map(m) => m.len(),
                Value::TypedMap(m) => m.entries.len(),
                Value::Set(s) => s.items.len(),
                other => return Err(format!("len of type {}", other.type_name())),
            } as i64))
        });
        f.add("index", |a| {
            let Some((item, keys)) = a.split_first() else {
                return arity("index", 1, a);
            };
            let mut cur = item.clone();
            for k in keys {
                cur = match (&cur, k) {
                    (Value::List(l), Value::Int(i)) => {
                        match usize::try_from(*i).ok().and_then(|i| l.get(i)) {
                            Some(v) => v.clone(),
                            None => return Err(format!("index out of range: {i}")),
                        }
                    }
                    (Value::Map(m), Value::Str(s)) => m.get(&**s).cloned().unwrap_or_default(),
                    (Value::TypedMap(m), Value::Str(s)) => {
                        m.entries.get(&**s).cloned().unwrap_or_else(|| m.zero.clone())
                    }
                    (Value::Set(s), Value::Str(x)) => {
                        if s.items.contains(&**x) {
                            Value::structure("Empty", vec![])
                        } else {
                            Value::Nil
                        }
                    }
                    (Value::Nil, _) => return Err("index of untyped nil".into()),
                    (c, k) => {
                        return Err(format!(
                            "can't index item of type {} with {}",
                            c.type_name(),
                            k.type_name()
                        ));
                    }
                };
            }
            Ok(cur)
        });
        f.add("slice", |a| {
            let Some((item, idx)) = a.split_first() else {
                return arity("slice", 1, a);
            };
            let mut ix = Vec::new();
            for i in idx {
                match i {
                    Value::Int(n) if *n >= 0 => ix.push(*n as usize),
                    other => return Err(format!("cannot index slice with {}", other.type_name())),
                }
            }
            match item {
                Value::Str(s) => {
                    let lo = ix.first().copied().unwrap_or(0);
                    let hi = ix.get(1).copied().unwrap_or(s.len());
                    if ix.len() > 2 || lo > hi || hi > s.len() {
                        return Err("slice index out of range".into());
                    }
                    s.get(lo..hi)
                        .map(Value::from)
                        .ok_or_else(|| "slice splits a UTF-8 character".to_string())
                }
                Value::List(l) => {
                    let lo = ix.first().copied().unwrap_or(0);
                    let hi = ix.get(1).copied().unwrap_or(l.len());
                    if lo > hi || hi > l.len() {
                        return Err("slice index out of range".into());
                    }
                    Ok(Value::from(l[lo..hi].to_vec()))
                }
                other => Err(format!("can't slice item of type {}", other.type_name())),
            }
        });
        f.add("print", |a| Ok(Value::from(sprint(a))));
        f.add("println", |a| {
            let parts: Vec<String> = a.iter().map(Value::to_go_string).collect();
            Ok(Value::from(parts.join(" ") + "\n"))
        });
        f.add("printf", |a| {
            let Some((Value::Str(fmt), rest)) = a.split_first() else {
                return Err("printf needs a format string".into());
            };
            Ok(Value::from(sprintf(fmt, rest)))
        });
        f.add("html", |a| {
            let s = sprint(a);
            Ok(Value::from(
                s.replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;")
                    .replace('"', "&#34;")
                    .replace('\'', "&#39;"),
            ))
        });
        f.add("js", |a| {
            let s = sprint(a);
            let mut out = String::new();
            for c in s.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\'' => out.push_str("\\'"),
                    '"' => out.push_str("\\\""),
                    '<' => out.push_str("\\u003C"),
                    '>' => out.push_str("\\u003E"),
                    '&' => out.push_str("\\u0026"),
                    '=' => out.push_str("\\u003D"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c => out.push(c),
                }
            }
            Ok(Value::from(out))
        });
        f.add("urlquery", |a| {
            let s = sprint(a);
            let mut out = String::new();
            for b in s.bytes() {
                match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        out.push(b as char)
                    }
                    b' ' => out.push('+'),
                    b => out.push_str(&format!("%{b:02X}")),
                }
            }
            Ok(Value::from(out))
        });
        f.overridden.clear();
        f
    }

    /// Go's builtins plus the deterministic sprig functions (sprig's argument order).
    pub fn sprig() -> Funcs {
        let mut f = Funcs::builtins();
        f.add("default", |a| match a {
            [d] => Ok(d.clone()),
            [d, given] => Ok(if empty(given) { d.clone() } else { given.clone() }),
            _ => arity("default", 2, a),
        });
        f.add("empty", |a| {
            let [x] = a else { return arity("empty", 1, a) };
            Ok(Value::Bool(empty(x)))
        });
        f.add("coalesce", |a| {
            Ok(a.iter().find(|v| !empty(v)).cloned().unwrap_or_default())
        });
        f.add("ternary", |a| {
            let [t, e, c] = a else {
                return arity("ternary", 3, a);
            };
            Ok(if c.truthy() { t.clone() } else { e.clone() })
        });
        f.add("quote", |a| {
            let parts: Vec<String> = a
                .iter()
                .filter(|v| !matches!(v, Value::Nil))
                .map(|v| go_quote(&strval(v)))
                .collect();
            Ok(Value::from(parts.join(" ")))
        });
        f.add("squote", |a| {
            let parts: Vec<String> = a
                .iter()
                .filter(|v| !matches!(v, Value::Nil))
                .map(|v| format!("'{}'", strval(v)))
                .collect();
            Ok(Value::from(parts.join(" ")))
        });
        f.add("cat", |a| {
            let parts: Vec<String> = a
                .iter()
                .filter(|v| !matches!(v, Value::Nil))
                .map(strval)
                .collect();
            Ok(Value::from(parts.join(" ")))
        });
        f.add("b64enc", |a| {
            let [x] = a else { return arity("b64enc", 1, a) };
            Ok(Value::from(
                base64::engine::general_purpose::STANDARD.encode(strval(x)),
            ))
        });
        f.add("b64dec", |a| {
            let [x] = a else { return arity("b64dec", 1, a) };
            Ok(Value::from(
                match base64::engine::general_purpose::STANDARD.decode(strval(x)) {
                    Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                    Err(e) => e.to_string(),
                },
            ))
        });
        f.add("list", |a| Ok(Value::from(a.to_vec())));
        f.add("dict", |a| {
            let mut m = BTreeMap::new();
            for pair in a.chunks(2) {
                let v = pair.get(1).cloned().unwrap_or(Value::from(""));
                m.insert(strval(&pair[0]), v);
            }
            Ok(Value::Map(Arc::new(m)))
        });
        f.add("hasPrefix", |a| {
            str2("hasPrefix", a, |p, s| Value::Bool(s.starts_with(p)))
        });
        f.add("hasSuffix", |a| {
            str2("hasSuffix", a, |p, s| Value::Bool(s.ends_with(p)))
        });
        f.add("trimPrefix", |a| {
            str2("trimPrefix", a, |p, s| {
                Value::from(s.strip_prefix(p).unwrap_or(s))
            })
        });
        f.add("trimSuffix", |a| {
            str2("trimSuffix", a, |p, s| {
                Value::from(s.strip_suffix(p).unwrap_or(s))
            })
        });
        f.add("contains", |a| {
            str2("contains", a, |p, s| Value::Bool(s.contains(p)))
        });
        f.add("trimAll", |a| {
            str2("trimAll", a, |p, s| {
                Value::from(s.trim_matches(|c| p.contains(c)))
            })
        });
        f.add("replace", |a| {
            let [o, n, s] = a else {
                return arity("replace", 3, a);
            };
            Ok(Value::from(strval(s).replace(&strval(o), &strval(n))))
        });
        f.add("lower", |a| str1("lower", a, |s| s.to_lowercase()));
        f.add("upper", |a| str1("upper", a, |s| s.to_uppercase()));
        f.add("trim", |a| str1("trim", a, |s| s.trim().to_string()));
        f.add("split", |a| {
            let [sep, s] = a else { return arity("split", 2, a) };
            let s = strval(s);
            let sep = strval(sep);
            Ok(Value::map(
                split_go(&s, &sep)
                    .into_iter()
                    .enumerate()
                    .map(|(i, p)| (format!("_{i}"), Value::from(p))),
            ))
        });
        f.add("splitList", |a| {
            let [sep, s] = a else {
                return arity("splitList", 2, a);
            };
            let (s, sep) = (strval(s), strval(sep));
            Ok(Value::str_list(split_go(&s, &sep)))
        });
        f.add("join", |a| {
            let [sep, l] = a else { return arity("join", 2, a) };
            let parts: Vec<String> = match l {
                Value::List(l) => l
                    .iter()
                    .filter(|v| !matches!(v, Value::Nil))
                    .map(strval)
                    .collect(),
                Value::Str(s) => return Ok(Value::Str(s.clone())),
                other => vec![strval(other)],
            };
            Ok(Value::from(parts.join(&strval(sep))))
        });
        f.add("toJson", |a| {
            let [x] = a else { return arity("toJson", 1, a) };
            Ok(Value::from(go_json(&x.to_json())))
        });
        f.add("semver", |a| {
            let [x] = a else { return arity("semver", 1, a) };
            match x {
                Value::Version(v) => Ok(Value::Version(v.clone())),
                other => parse_version(&strval(other))
                    .map(|v| Value::Version(Arc::new(v)))
                    .ok_or_else(|| format!("Invalid Semantic Version {:?}", strval(other))),
            }
        });
        f.add("semverCompare", |a| {
            let [c, v] = a else {
                return arity("semverCompare", 2, a);
            };
            let con =
                Constraint::parse(&strval(c)).ok_or_else(|| format!("improper constraint: {}", strval(c)))?;
            let ver = version_of(v).ok_or_else(|| format!("Invalid Semantic Version {:?}", strval(v)))?;
            Ok(Value::Bool(con.check(&ver)))
        });
        f.add("first", |a| {
            let [l] = a else { return arity("first", 1, a) };
            match l {
                Value::List(l) => Ok(l.first().cloned().unwrap_or_default()),
                Value::Nil => Ok(Value::Nil),
                other => Err(format!("Cannot find first on type {}", other.type_name())),
            }
        });
        f.add("last", |a| {
            let [l] = a else { return arity("last", 1, a) };
            match l {
                Value::List(l) => Ok(l.last().cloned().unwrap_or_default()),
                Value::Nil => Ok(Value::Nil),
                other => Err(format!("Cannot find last on type {}", other.type_name())),
            }
        });
        f.add("has", |a| {
            let [needle, hay] = a else {
                return arity("has", 2, a);
            };
            match hay {
                Value::List(l) => Ok(Value::Bool(l.iter().any(|v| v.same(needle)))),
                Value::Nil => Ok(Value::Bool(false)),
                other => Err(format!("Cannot find has on type {}", other.type_name())),
            }
        });
        f.add("int", |a| {
            let [x] = a else { return arity("int", 1, a) };
            Ok(Value::Int(to_int(x)))
        });
        f.add("int64", |a| {
            let [x] = a else { return arity("int64", 1, a) };
            Ok(Value::Int(to_int(x)))
        });
        f.add("toString", |a| {
            let [x] = a else { return arity("toString", 1, a) };
            Ok(Value::from(strval(x)))
        });
        f.add("indent", |a| {
            let [n, s] = a else { return arity("indent", 2, a) };
            Ok(Value::from(indent(to_int(n), &strval(s))))
        });
        f.add("nindent", |a| {
            let [n, s] = a else { return arity("nindent", 2, a) };
            Ok(Value::from(format!("\n{}", indent(to_int(n), &strval(s)))))
        });
        f.overridden.clear();
        f
    }

    /// Adds or replaces a function.
    pub fn add<F>(&mut self, name: &str, f: F)
    where
        F: Fn(&[Value]) -> Result<Value, String> + Send + Sync + 'static,
    {
        if matches!(name, "and" | "or") {
            self.overridden.push(name.to_string());
        }
        self.map.insert(name.to_string(), Arc::new(f));
    }

    /// The function called `name`.
    pub fn get(&self, name: &str) -> Option<&Func> {
        self.map.get(name)
    }

    /// Whether a function called `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    pub(crate) fn is_overridden(&self, name: &str) -> bool {
        self.overridden.iter().any(|n| n == name)
    }
}

fn arity(name: &str, want: usize, got: &[Value]) -> Res {
    Err(format!(
        "wrong number of args for {name}: want {want} got {}",
        got.len()
    ))
}

fn str1(name: &str, a: &[Value], f: impl Fn(&str) -> String) -> Res {
    let [x] = a else { return arity(name, 1, a) };
    Ok(Value::from(f(&strval(x))))
}

fn str2(name: &str, a: &[Value], f: impl Fn(&str, &str) -> Value) -> Res {
    let [x, y] = a else { return arity(name, 2, a) };
    Ok(f(&strval(x), &strval(y)))
}

/// A version from a `*semver.Version` or a string (Masterminds' lenient syntax).
pub fn version_of(v: &Value) -> Option<semver::Version> {
    match v {
        Value::Version(v) => Some((**v).clone()),
        Value::Str(s) => parse_version(s),
        _ => None,
    }
}

/// sprig's `strval`: strings as they are, everything else as `%v` (nil as `<nil>`).
pub fn strval(v: &Value) -> String {
    match v {
        Value::Nil => "<nil>".into(),
        other => other.to_go_string(),
    }
}

/// sprig's `empty`.
pub fn empty(v: &Value) -> bool {
    match v {
        Value::Struct(_) | Value::Version(_) => false,
        other => !other.truthy(),
    }
}

fn to_int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        Value::Float(f) => *f as i64,
        Value::Bool(b) => i64::from(*b),
        Value::Str(s) => {
            let s = s.trim();
            let (neg, body) = match s.strip_prefix('-') {
                Some(b) => (true, b),
                None => (false, s.strip_prefix('+').unwrap_or(s)),
            };
            let n = if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
                i64::from_str_radix(h, 16).unwrap_or(0)
            } else if body.len() > 1 && body.starts_with('0') {
                i64::from_str_radix(&body[1..], 8).unwrap_or(0)
            } else {
                body.parse().unwrap_or(0)
            };
            if neg { -n } else { n }
        }
        _ => 0,
    }
}

fn indent(n: i64, s: &str) -> String {
    let pad = " ".repeat(n.max(0) as usize);
    format!("{pad}{}", s.replace('\n', &format!("\n{pad}")))
}

fn split_go<'a>(s: &'a str, sep: &str) -> Vec<&'a str> {
    if sep.is_empty() {
        let mut out = Vec::new();
        let mut idx = s.char_indices().map(|(i, _)| i).peekable();
        while let Some(i) = idx.next() {
            let j = idx.peek().copied().unwrap_or(s.len());
            out.push(&s[i..j]);
        }
        return out;
    }
    s.split(sep).collect()
}

/// Go's `fmt.Sprint`: spaces between operands when neither is a string.
pub fn sprint(a: &[Value]) -> String {
    let mut out = String::new();
    for (i, v) in a.iter().enumerate() {
        if i > 0 && !matches!(v, Value::Str(_)) && !matches!(a[i - 1], Value::Str(_)) {
            out.push(' ');
        }
        match v {
            Value::Nil => out.push_str("<nil>"),
            v => out.push_str(&v.to_go_string()),
        }
    }
    out
}

/// Go's `%q` for a string.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `json.Marshal` output: compact, with Go's HTML escaping.
fn go_json(v: &serde_json::Value) -> String {
    serde_json::to_string(v)
        .unwrap_or_default()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// A subset of Go's `fmt.Sprintf`: verbs `v s d q t f x X %`, with width for `s`/`d`/`v`.
pub fn sprintf(fmt: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = String::new();
        while let Some(&d) = chars.peek() {
            if d.is_ascii_digit() || matches!(d, '-' | '+' | '.' | ' ' | '#' | '0') {
                spec.push(d);
                chars.next();
            } else {
                break;
            }
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.next() else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        let text = match (verb, arg) {
            ('d', Value::Int(i)) => i.to_string(),
            ('x', Value::Int(i)) => format!("{i:x}"),
            ('X', Value::Int(i)) => format!("{i:X}"),
            ('x', v) => strval(v).bytes().map(|b| format!("{b:02x}")).collect(),
            ('f', Value::Float(f)) => {
                let prec = spec
                    .split_once('.')
                    .and_then(|(_, p)| p.parse().ok())
                    .unwrap_or(6);
                format!("{f:.prec$}")
            }
            ('f', Value::Int(i)) => format!("%!f(int={i})"),
            ('q', v) => go_quote(&strval(v)),
            ('t', Value::Bool(b)) => b.to_string(),
            ('s' | 'v', Value::Float(f)) => format_float(*f),
            ('s' | 'v', Value::Nil) => "<nil>".into(),
            ('s' | 'v', v) => v.to_go_string(),
            (verb, v) => format!("%!{verb}({}={})", v.type_name(), strval(v)),
        };
        let width: usize = spec
            .trim_start_matches(['-', '+', ' ', '#'])
            .split('.')
            .next()
            .and_then(|w| w.parse().ok())
            .unwrap_or(0);
        let n = text.chars().count();
        if n < width {
            let pad = width - n;
            if spec.starts_with('-') {
                out.push_str(&text);
                out.push_str(&" ".repeat(pad));
            } else {
                let fill = if spec.starts_with('0') { "0" } else { " " };
                out.push_str(&fill.repeat(pad));
                out.push_str(&text);
            }
        } else {
            out.push_str(&text);
        }
    }
    let extra: Vec<_> = args.collect();
    if !extra.is_empty() {
        out.push_str("%!(EXTRA ");
        let parts: Vec<String> = extra
            .iter()
            .map(|v| format!("{}={}", v.type_name(), strval(v)))
            .collect();
        out.push_str(&parts.join(", "));
        out.push(')');
    }
    out
}

/// Go's `eq` for two values: basic kinds compare by value, different kinds are an error.
pub fn go_eq(a: &Value, b: &Value) -> Result<bool, String> {
    Ok(match (a, b) {
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Nil, Value::Nil) => true,
        (Value::Nil, _) | (_, Value::Nil) => false,
        (Value::Version(x), Value::Version(y)) => std::sync::Arc::ptr_eq(x, y),
        (x, y) if std::mem::discriminant(x) == std::mem::discriminant(y) => {
            return Err(format!("non-comparable type {}", x.type_name()));
        }
        (x, y) => {
            return Err(format!(
                "incompatible types for comparison: {} and {}",
                x.type_name(),
                y.type_name()
            ));
        }
    })
}

fn cmp_fn(name: &str, a: &[Value], ok: impl Fn(std::cmp::Ordering) -> bool) -> Res {
    let [x, y] = a else { return arity(name, 2, a) };
    let o = match (x, y) {
        (Value::Str(x), Value::Str(y)) => x.cmp(y),
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y).ok_or("NaN comparison")?,
        (x, y) if std::mem::discriminant(x) == std::mem::discriminant(y) => {
            return Err(format!("invalid type for comparison: {}", x.type_name()));
        }
        (x, y) => {
            return Err(format!(
                "incompatible types for comparison: {} and {}",
                x.type_name(),
                y.type_name()
            ));
        }
    };
    Ok(Value::Bool(ok(o)))
}
