//! The dynamic values templates are evaluated over, and Go's rules for printing and truth.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;

/// Where a struct sits in the root data (`Cluster.Network`); `None` for structs inside lists or maps.
pub type Path = Arc<Vec<String>>;

/// A Go struct: named fields in declaration order, niladic methods precomputed as fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Struct {
    /// Go type name, used in error messages (`ClusterData`).
    pub type_name: String,
    /// Fields in declaration order.
    pub fields: Vec<(String, Value)>,
    /// Position of this struct in the root data; set by [`Value::rooted`].
    pub path: Option<Path>,
}

impl Struct {
    /// The field called `name`.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// A Go `sets.Set[string]`: prints and ranges like a map, and has the method `Has`.
#[derive(Debug, Clone, PartialEq)]
pub struct Set {
    /// Members.
    pub items: BTreeSet<String>,
    /// Position of this set in the root data; set by [`Value::rooted`].
    pub path: Option<Path>,
}

/// A Go map with a typed element (`map[string]IPAMAllocation`): a missing key reads as the
/// element type's zero value instead of "no value".
#[derive(Debug, Clone, PartialEq)]
pub struct TypedMap {
    /// Go type name, for error messages.
    pub type_name: String,
    /// Entries.
    pub entries: BTreeMap<String, Value>,
    /// What a missing key reads as.
    pub zero: Value,
}

/// A value a template can see.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// Go's nil / a missing map key.
    #[default]
    Nil,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Str(Arc<str>),
    /// A slice.
    List(Arc<Vec<Value>>),
    /// A map with string keys (Go iterates these in key order, as does this).
    Map(Arc<BTreeMap<String, Value>>),
    /// A map whose missing keys read as a zero value.
    TypedMap(Arc<TypedMap>),
    /// A struct.
    Struct(Arc<Struct>),
    /// A string set with `Has`.
    Set(Arc<Set>),
    /// A semantic version (`*semver.Version`), printed without a leading `v`.
    Version(Arc<semver::Version>),
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(Arc::from(s))
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(Arc::from(s))
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}
impl From<Vec<Value>> for Value {
    fn from(v: Vec<Value>) -> Self {
        Value::List(Arc::new(v))
    }
}

impl Value {
    /// A struct value.
    pub fn structure(type_name: &str, fields: Vec<(&str, Value)>) -> Value {
        Value::Struct(Arc::new(Struct {
            type_name: type_name.to_string(),
            fields: fields.into_iter().map(|(n, v)| (n.to_string(), v)).collect(),
            path: None,
        }))
    }

    /// A set value.
    pub fn set<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Value {
        Value::Set(Arc::new(Set {
            items: items.into_iter().map(Into::into).collect(),
            path: None,
        }))
    }

    /// A list of strings.
    pub fn str_list<I: IntoIterator<Item = S>, S: AsRef<str>>(items: I) -> Value {
        Value::List(Arc::new(
            items.into_iter().map(|s| Value::from(s.as_ref())).collect(),
        ))
    }

    /// A map.
    pub fn map<I: IntoIterator<Item = (S, Value)>, S: Into<String>>(items: I) -> Value {
        Value::Map(Arc::new(items.into_iter().map(|(k, v)| (k.into(), v)).collect()))
    }

    /// Marks this value as the root of template data: every struct and set reachable through struct
    /// fields learns its path, so evaluation can record which parts of the data it read.
    pub fn rooted(self) -> Value {
        self.rooted_at(Vec::new())
    }

    /// Like [`Value::rooted`] for a value that will sit at `path` inside the root data, so it can
    /// be built once and shared between many roots. Structs and sets that already know their path
    /// are kept as they are.
    pub fn rooted_at(self, path: Vec<String>) -> Value {
        fn walk(v: Value, path: Vec<String>) -> Value {
            match v {
                Value::Struct(s) if s.path.is_some() => Value::Struct(s),
                Value::Set(s) if s.path.is_some() => Value::Set(s),
                Value::Struct(s) => {
                    let s = Arc::unwrap_or_clone(s);
                    let fields = s
                        .fields
                        .into_iter()
                        .map(|(n, v)| match &v {
                            Value::Struct(c) if c.path.is_none() => {
                                let mut p = path.clone();
                                p.push(n.clone());
                                (n, walk(v, p))
                            }
                            Value::Set(c) if c.path.is_none() => {
                                let mut p = path.clone();
                                p.push(n.clone());
                                (n, walk(v, p))
                            }
                            _ => (n, v),
                        })
                        .collect();
                    Value::Struct(Arc::new(Struct {
                        type_name: s.type_name,
                        fields,
                        path: Some(Arc::new(path)),
                    }))
                }
                Value::Set(s) => Value::Set(Arc::new(Set {
                    items: s.items.clone(),
                    path: Some(Arc::new(path)),
                })),
                other => other,
            }
        }
        walk(self, path)
    }

    /// Go's name for the kind of value, for error messages.
    pub fn type_name(&self) -> String {
        match self {
            Value::Nil => "nil".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) => "int".into(),
            Value::Float(_) => "float64".into(),
            Value::Str(_) => "string".into(),
            Value::List(_) => "[]interface {}".into(),
            Value::Map(_) => "map[string]interface {}".into(),
            Value::TypedMap(m) => m.type_name.clone(),
            Value::Struct(s) => s.type_name.clone(),
            Value::Set(_) => "sets.Set[string]".into(),
            Value::Version(_) => "*semver.Version".into(),
        }
    }

    /// Go template truth: false, 0, nil, empty string/list/map are false; structs are always true.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Map(m) => !m.is_empty(),
            Value::TypedMap(m) => !m.entries.is_empty(),
            Value::Set(s) => !s.items.is_empty(),
            Value::Struct(_) | Value::Version(_) => true,
        }
    }

    /// The string inside, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// How `{{ . }}` / `print` show the value (Go's `fmt` `%v`).
    pub fn to_go_string(&self) -> String {
        let mut out = String::new();
        self.write_go(&mut out, true);
        out
    }

    fn write_go(&self, out: &mut String, top: bool) {
        match self {
            Value::Nil if top => out.push_str("<no value>"),
            Value::Nil => out.push_str("<nil>"),
            Value::Bool(b) => {
                let _ = write!(out, "{b}");
            }
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) => out.push_str(&format_float(*f)),
            Value::Str(s) => out.push_str(s),
            Value::Version(v) => {
                let _ = write!(out, "{v}");
            }
            Value::List(l) => {
                out.push('[');
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    v.write_go(out, false);
                }
                out.push(']');
            }
            Value::TypedMap(m) => Value::Map(Arc::new(m.entries.clone())).write_go(out, top),
            Value::Map(m) => {
                out.push_str("map[");
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(k);
                    out.push(':');
                    v.write_go(out, false);
                }
                out.push(']');
            }
            Value::Set(s) => {
                out.push_str("map[");
                for (i, k) in s.items.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(k);
                    out.push_str(":{}");
                }
                out.push(']');
            }
            Value::Struct(s) => {
                out.push('{');
                for (i, (_, v)) in s.fields.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    v.write_go(out, false);
                }
                out.push('}');
            }
        }
    }

    /// This value as JSON (sprig's `toJson`).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Nil => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.to_string()),
            Value::Version(v) => J::String(v.to_string()),
            Value::List(l) => J::Array(l.iter().map(Value::to_json).collect()),
            Value::Map(m) => J::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
            Value::TypedMap(m) if m.entries.is_empty() => J::Null,
            Value::TypedMap(m) => {
                J::Object(m.entries.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
            Value::Set(s) => J::Object(
                s.items
                    .iter()
                    .map(|k| (k.clone(), J::Object(Default::default())))
                    .collect(),
            ),
            Value::Struct(s) => J::Object(s.fields.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
        }
    }

    /// Equality for memoisation: like `==` but ignores where structs sit in the data.
    pub fn same(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Struct(a), Value::Struct(b)) => {
                a.fields.len() == b.fields.len()
                    && a.fields
                        .iter()
                        .zip(b.fields.iter())
                        .all(|((n1, v1), (n2, v2))| n1 == n2 && v1.same(v2))
            }
            (Value::Set(a), Value::Set(b)) => a.items == b.items,
            (Value::List(a), Value::List(b)) => {
                a.len() == b.len() && a.iter().zip(b.iter()).all(|(x, y)| x.same(y))
            }
            (Value::TypedMap(a), Value::TypedMap(b)) => {
                a.type_name == b.type_name
                    && a.zero.same(&b.zero)
                    && Value::Map(Arc::new(a.entries.clone())).same(&Value::Map(Arc::new(b.entries.clone())))
            }
            (Value::Map(a), Value::Map(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b.iter())
                        .all(|((k1, v1), (k2, v2))| k1 == k2 && v1.same(v2))
            }
            (a, b) => a == b,
        }
    }
}

/// Go's `%v` for float64 (`strconv.FormatFloat(f, 'g', -1, 64)` with Go's exponent form).
pub fn format_float(f: f64) -> String {
    if f.is_infinite() {
        return if f > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    if f.is_nan() {
        return "NaN".into();
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e21).contains(&abs) {
        let s = format!("{f:e}");
        // Rust: 1e21, 1.5e-5 → Go: 1e+21, 1.5e-05
        if let Some((m, e)) = s.split_once('e') {
            let (sign, digits) = match e.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', e),
            };
            return format!("{m}e{sign}{digits:0>2}");
        }
        return s;
    }
    let s = format!("{f}");
    s
}
