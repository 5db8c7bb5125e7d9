//! Lexer and parser: template text → tree, with Go's trim markers, comments and variable scoping.

use std::collections::HashMap;
use std::sync::Arc;

use super::value::Value;

/// A parse failure at a byte offset of the parsed text.
#[derive(Debug, Clone)]
pub(crate) struct ParseFail {
    pub pos: usize,
    pub message: String,
}

fn fail<T>(pos: usize, message: impl Into<String>) -> Result<T, ParseFail> {
    Err(ParseFail {
        pos,
        message: message.into(),
    })
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Field(String),
    Dot,
    Var(String),
    Ident(String),
    Str(String),
    Num(Value),
    Bool(bool),
    Nil,
    LParen,
    RParen,
    Pipe,
    Declare,
    Assign,
    Comma,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub tok: Tok,
    pub pos: usize,
    /// Whitespace separates this token from the previous one.
    pub spaced: bool,
}

#[derive(Debug)]
enum Item {
    Text { pos: usize, text: String },
    Action { pos: usize, toks: Vec<Token> },
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// Splits the text into literal text and actions, applying trim markers and dropping comments.
fn lex(src: &str) -> Result<Vec<Item>, ParseFail> {
    let b = src.as_bytes();
    let mut items = Vec::new();
    let mut pos = 0;
    let mut trim_next = false;
    loop {
        let next = src[pos..].find("{{").map(|i| pos + i);
        let end = next.unwrap_or(src.len());
        let left_trim =
            next.is_some_and(|i| b.get(i + 2) == Some(&b'-') && b.get(i + 3).copied().is_some_and(is_space));
        let mut start = pos;
        let mut stop = end;
        if trim_next {
            while start < stop && is_space(b[start]) {
                start += 1;
            }
        }
        if left_trim {
            while stop > start && is_space(b[stop - 1]) {
                stop -= 1;
            }
        }
        if stop > start {
            items.push(Item::Text {
                pos: start,
                text: src[start..stop].to_string(),
            });
        }
        let Some(open) = next else { break };
        let mut p = open + 2 + if left_trim { 2 } else { 0 };
        // Comment: {{/* … */}} with optional trim markers.
        let mut q = p;
        while left_trim && q < b.len() && is_space(b[q]) {
            q += 1;
        }
        if src[q..].starts_with("/*") {
            let Some(close) = src[q + 2..].find("*/").map(|i| q + 2 + i + 2) else {
                return fail(open, "unclosed comment");
            };
            if src[close..].starts_with("}}") {
                trim_next = false;
                pos = close + 2;
            } else if close < b.len() && is_space(b[close]) && src[close + 1..].starts_with("-}}") {
                trim_next = true;
                pos = close + 4;
            } else {
                return fail(open, "comment ends before closing delimiter");
            }
            continue;
        }
        let mut toks = Vec::new();
        let mut spaced = true;
        loop {
            if p >= b.len() {
                return fail(open, "unclosed action");
            }
            if src[p..].starts_with("}}") {
                trim_next = false;
                pos = p + 2;
                break;
            }
            let c = b[p];
            if is_space(c) {
                if src[p + 1..].starts_with("-}}") {
                    trim_next = true;
                    pos = p + 4;
                    break;
                }
                spaced = true;
                p += 1;
                continue;
            }
            let (tok, len) = lex_token(src, p)?;
            toks.push(Token { tok, pos: p, spaced });
            spaced = false;
            p += len;
        }
        items.push(Item::Action { pos: open, toks });
    }
    Ok(items)
}

fn ident_len(s: &str) -> usize {
    s.char_indices()
        .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
        .map_or(s.len(), |(i, _)| i)
}

fn lex_token(src: &str, p: usize) -> Result<(Tok, usize), ParseFail> {
    let rest = &src[p..];
    let c = rest.as_bytes()[0];
    match c {
        b'(' => Ok((Tok::LParen, 1)),
        b')' => Ok((Tok::RParen, 1)),
        b'|' => Ok((Tok::Pipe, 1)),
        b',' => Ok((Tok::Comma, 1)),
        b'=' => Ok((Tok::Assign, 1)),
        b':' if rest.starts_with(":=") => Ok((Tok::Declare, 2)),
        b'"' => {
            let mut out = String::new();
            let mut chars = rest.char_indices().skip(1);
            while let Some((i, ch)) = chars.next() {
                match ch {
                    '"' => return Ok((Tok::Str(out), i + 1)),
                    '\n' => return fail(p, "unterminated quoted string"),
                    '\\' => {
                        let Some((_, e)) = chars.next() else {
                            return fail(p, "unterminated quoted string");
                        };
                        match e {
                            'n' => out.push('\n'),
                            't' => out.push('\t'),
                            'r' => out.push('\r'),
                            '\\' => out.push('\\'),
                            '"' => out.push('"'),
                            '\'' => out.push('\''),
                            '0' => out.push('\0'),
                            'a' => out.push('\x07'),
                            'b' => out.push('\x08'),
                            'f' => out.push('\x0c'),
                            'v' => out.push('\x0b'),
                            'x' | 'u' | 'U' => {
                                let n = match e {
                                    'x' => 2,
                                    'u' => 4,
                                    _ => 8,
                                };
                                let mut hex = String::new();
                                for _ in 0..n {
                                    match chars.next() {
                                        Some((_, h)) => hex.push(h),
                                        None => return fail(p, "bad escape in string"),
                                    }
                                }
                                let code = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32);
                                match code {
                                    Some(ch) => out.push(ch),
                                    None => return fail(p, "bad escape in string"),
                                }
                            }
                            other => return fail(p, format!("unknown escape sequence \\{other}")),
                        }
                    }
                    ch => out.push(ch),
                }
            }
            fail(p, "unterminated quoted string")
        }
        b'`' => match rest[1..].find('`') {
            Some(i) => Ok((Tok::Str(rest[1..1 + i].to_string()), i + 2)),
            None => fail(p, "unterminated raw quoted string"),
        },
        b'\'' => {
            let mut it = rest.char_indices().skip(1);
            let ch = match it.next() {
                Some((_, '\\')) => match it.next() {
                    Some((_, 'n')) => '\n',
                    Some((_, 't')) => '\t',
                    Some((_, '\\')) => '\\',
                    Some((_, '\'')) => '\'',
                    _ => return fail(p, "bad character constant"),
                },
                Some((_, ch)) => ch,
                None => return fail(p, "unterminated character constant"),
            };
            match it.next() {
                Some((i, '\'')) => Ok((Tok::Num(Value::Int(ch as i64)), i + 1)),
                _ => fail(p, "unterminated character constant"),
            }
        }
        b'.' => {
            let n = ident_len(&rest[1..]);
            if n == 0 {
                if rest[1..].starts_with(|c: char| c.is_ascii_digit()) {
                    return lex_number(rest, p);
                }
                Ok((Tok::Dot, 1))
            } else {
                Ok((Tok::Field(rest[1..1 + n].to_string()), 1 + n))
            }
        }
        b'$' => {
            let n = ident_len(&rest[1..]);
            Ok((Tok::Var(rest[..1 + n].to_string()), 1 + n))
        }
        b'0'..=b'9' | b'+' | b'-' => lex_number(rest, p),
        _ if (c as char).is_alphabetic() || c == b'_' || c >= 0x80 => {
            let n = ident_len(rest);
            if n == 0 {
                return fail(p, format!("unexpected character {:?} in action", &rest[..1]));
            }
            let word = &rest[..n];
            let tok = match word {
                "true" => Tok::Bool(true),
                "false" => Tok::Bool(false),
                "nil" => Tok::Nil,
                _ => Tok::Ident(word.to_string()),
            };
            Ok((tok, n))
        }
        _ => fail(
            p,
            format!("unexpected {:?} in action", rest.chars().next().unwrap_or(' ')),
        ),
    }
}

fn lex_number(rest: &str, p: usize) -> Result<(Tok, usize), ParseFail> {
    let n = rest
        .char_indices()
        .skip(1)
        .find(|(i, c)| {
            !(c.is_ascii_alphanumeric()
                || *c == '.'
                || *c == '_'
                || ((*c == '+' || *c == '-')
                    && matches!(rest.as_bytes()[i - 1], b'e' | b'E' | b'p' | b'P')
                    && !rest.starts_with("0x")))
        })
        .map_or(rest.len(), |(i, _)| i);
    let text = &rest[..n];
    match parse_number(text) {
        Some(v) => Ok((Tok::Num(v), n)),
        None => fail(p, format!("bad number syntax: {text:?}")),
    }
}

fn parse_number(text: &str) -> Option<Value> {
    let (neg, body) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let clean: String = body.chars().filter(|c| *c != '_').collect();
    let lower = clean.to_ascii_lowercase();
    let int = if let Some(h) = lower.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()
    } else if let Some(o) = lower.strip_prefix("0o") {
        i64::from_str_radix(o, 8).ok()
    } else if let Some(bin) = lower.strip_prefix("0b") {
        i64::from_str_radix(bin, 2).ok()
    } else if lower.len() > 1 && lower.starts_with('0') && lower.bytes().all(|c| c.is_ascii_digit()) {
        i64::from_str_radix(&lower[1..], 8).ok()
    } else {
        lower.parse::<i64>().ok()
    };
    if let Some(i) = int {
        return Some(Value::Int(if neg { -i } else { i }));
    }
    let f: f64 = lower.parse().ok()?;
    if !lower.bytes().next()?.is_ascii_digit() && !lower.starts_with('.') {
        return None;
    }
    Some(Value::Float(if neg { -f } else { f }))
}

// ---------------------------------------------------------------------------------------------
// Tree

#[derive(Debug, Clone)]
pub(crate) enum Node {
    Text(String),
    /// Start of a source file in a multi-file template; prints the file's marker.
    Marker(usize),
    Action(Pipe),
    If(Control),
    With(Control),
    Range(Control),
    Template {
        pos: usize,
        name: String,
        pipe: Option<Pipe>,
    },
    Break,
    Continue,
}

#[derive(Debug, Clone)]
pub(crate) struct Control {
    pub pipe: Pipe,
    pub list: Vec<Node>,
    pub else_list: Option<Vec<Node>>,
}

#[derive(Debug, Clone)]
pub(crate) struct Pipe {
    pub pos: usize,
    pub decl: Vec<String>,
    pub is_assign: bool,
    pub cmds: Vec<Cmd>,
}

#[derive(Debug, Clone)]
pub(crate) struct Cmd {
    pub pos: usize,
    pub args: Vec<Arg>,
}

#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Func(String),
    /// `.A.B` relative to dot.
    Field(Vec<String>),
    /// `$x.A.B`.
    Var(String, Vec<String>),
    Dot,
    Lit(Value),
    /// `(pipeline).A.B`.
    Sub(Box<Pipe>, Vec<String>),
}

/// A parsed template: its root list plus every `define`/`block`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tree {
    pub root: Vec<Node>,
    pub defines: HashMap<String, Arc<Vec<Node>>>,
}

struct Parser<'a> {
    items: Vec<Item>,
    idx: usize,
    known: &'a dyn Fn(&str) -> bool,
    vars: Vec<String>,
    defines: HashMap<String, Arc<Vec<Node>>>,
    /// File start offsets still to be marked (ascending), with their index.
    boundaries: Vec<(usize, usize)>,
    depth: usize,
    in_range: usize,
}

#[derive(Debug, PartialEq)]
enum End {
    Eof,
    Close,
    Else(usize, Vec<Token>),
}

const KEYWORDS: &[&str] = &[
    "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
];

/// Parses `src`. `known` says whether a function name exists; `boundaries` are file start offsets
/// (ascending) at which [`Node::Marker`]s are placed in the root list.
pub(crate) fn parse(
    src: &str,
    known: &dyn Fn(&str) -> bool,
    boundaries: &[usize],
) -> Result<Tree, ParseFail> {
    let items = lex(src)?;
    let mut p = Parser {
        items,
        idx: 0,
        known,
        vars: vec!["$".to_string()],
        defines: HashMap::new(),
        boundaries: boundaries
            .iter()
            .copied()
            .enumerate()
            .map(|(i, b)| (b, i))
            .rev()
            .collect(),
        depth: 0,
        in_range: 0,
    };
    let (root, end) = p.list()?;
    match end {
        End::Eof => {}
        End::Close => return fail(p.last_pos(), "unexpected {{end}}"),
        End::Else(pos, _) => return fail(pos, "unexpected {{else}}"),
    }
    let mut root = root;
    while let Some((_, i)) = p.boundaries.pop() {
        root.push(Node::Marker(i));
    }
    Ok(Tree {
        root,
        defines: p.defines,
    })
}

impl Parser<'_> {
    fn last_pos(&self) -> usize {
        match self.items.get(self.idx.saturating_sub(1)) {
            Some(Item::Text { pos, .. } | Item::Action { pos, .. }) => *pos,
            None => 0,
        }
    }

    fn push_markers(&mut self, list: &mut Vec<Node>, upto: usize) {
        if self.depth != 0 {
            return;
        }
        while let Some(&(b, i)) = self.boundaries.last() {
            if b > upto {
                break;
            }
            self.boundaries.pop();
            list.push(Node::Marker(i));
        }
    }

    fn list(&mut self) -> Result<(Vec<Node>, End), ParseFail> {
        let mut list = Vec::new();
        while self.idx < self.items.len() {
            let item = std::mem::replace(
                &mut self.items[self.idx],
                Item::Text {
                    pos: 0,
                    text: String::new(),
                },
            );
            self.idx += 1;
            match item {
                Item::Text { pos, text } => {
                    if self.depth == 0 {
                        // Split the text at file boundaries inside it.
                        let mut start = 0;
                        while let Some(&(b, i)) = self.boundaries.last() {
                            if b > pos + text.len() {
                                break;
                            }
                            self.boundaries.pop();
                            let cut = b.saturating_sub(pos).clamp(start, text.len());
                            if cut > start {
                                list.push(Node::Text(text[start..cut].to_string()));
                            }
                            list.push(Node::Marker(i));
                            start = cut;
                        }
                        if start < text.len() {
                            list.push(Node::Text(text[start..].to_string()));
                        }
                    } else {
                        list.push(Node::Text(text));
                    }
                }
                Item::Action { pos, toks } => {
                    self.push_markers(&mut list, pos);
                    if let Some(end) = self.action(pos, toks, &mut list)? {
                        return Ok((list, end));
                    }
                }
            }
        }
        Ok((list, End::Eof))
    }

    /// Parses one action; returns `Some` when it ends the current list.
    fn action(
        &mut self,
        pos: usize,
        toks: Vec<Token>,
        list: &mut Vec<Node>,
    ) -> Result<Option<End>, ParseFail> {
        let Some(first) = toks.first() else {
            return fail(pos, "missing value for command");
        };
        let kw = match &first.tok {
            Tok::Ident(w) if KEYWORDS.contains(&w.as_str()) => Some(w.clone()),
            _ => None,
        };
        let Some(kw) = kw else {
            let pipe = self.pipe(pos, &toks, false)?;
            list.push(Node::Action(pipe));
            return Ok(None);
        };
        let rest = toks[1..].to_vec();
        match kw.as_str() {
            "end" => {
                if !rest.is_empty() {
                    return fail(pos, "unexpected tokens in {{end}}");
                }
                Ok(Some(End::Close))
            }
            "else" => Ok(Some(End::Else(pos, rest))),
            "if" | "with" | "range" => {
                let node = self.control(&kw, pos, rest)?;
                list.push(node);
                Ok(None)
            }
            "break" | "continue" => {
                if self.in_range == 0 {
                    return fail(pos, format!("{{{{{kw}}}}} outside {{{{range}}}}"));
                }
                if !rest.is_empty() {
                    return fail(pos, format!("unexpected tokens in {{{{{kw}}}}}"));
                }
                list.push(if kw == "break" {
                    Node::Break
                } else {
                    Node::Continue
                });
                Ok(None)
            }
            "template" | "block" => {
                let Some(Token {
                    tok: Tok::Str(name), ..
                }) = rest.first()
                else {
                    return fail(pos, format!("missing name in {{{{{kw}}}}}"));
                };
                let name = name.clone();
                let pipe = if rest.len() > 1 {
                    Some(self.pipe(pos, &rest[1..], false)?)
                } else {
                    None
                };
                if kw == "block" {
                    let body = self.define_body(pos)?;
                    self.defines.insert(name.clone(), Arc::new(body));
                }
                list.push(Node::Template { pos, name, pipe });
                Ok(None)
            }
            "define" => {
                let (
                    Some(Token {
                        tok: Tok::Str(name), ..
                    }),
                    1,
                ) = (rest.first(), rest.len())
                else {
                    return fail(pos, "define needs exactly one string name");
                };
                let name = name.clone();
                let body = self.define_body(pos)?;
                self.defines.insert(name, Arc::new(body));
                Ok(None)
            }
            _ => fail(pos, format!("unexpected keyword {kw}")),
        }
    }

    fn define_body(&mut self, pos: usize) -> Result<Vec<Node>, ParseFail> {
        let saved_vars = std::mem::replace(&mut self.vars, vec!["$".to_string()]);
        let saved_range = std::mem::replace(&mut self.in_range, 0);
        self.depth += 1;
        let (body, end) = self.list()?;
        self.depth -= 1;
        self.vars = saved_vars;
        self.in_range = saved_range;
        match end {
            End::Close => Ok(body),
            End::Eof => fail(pos, "unexpected EOF in define"),
            End::Else(p, _) => fail(p, "unexpected {{else}} in define"),
        }
    }

    fn control(&mut self, kw: &str, pos: usize, toks: Vec<Token>) -> Result<Node, ParseFail> {
        let mark = self.vars.len();
        self.depth += 1;
        let pipe = self.pipe(pos, &toks, kw == "range")?;
        if kw == "range" {
            self.in_range += 1;
        }
        let (list, end) = self.list()?;
        if kw == "range" {
            self.in_range -= 1;
        }
        let else_list = match end {
            End::Close => None,
            End::Eof => {
                self.depth -= 1;
                return fail(pos, format!("unexpected EOF: {{{{{kw}}}}} has no {{{{end}}}}"));
            }
            End::Else(epos, rest) => {
                if rest.is_empty() {
                    let (else_list, end) = self.list()?;
                    if end != End::Close {
                        self.depth -= 1;
                        return fail(epos, "expected {{end}} after {{else}}");
                    }
                    Some(else_list)
                } else {
                    // `{{ else if … }}` / `{{ else with … }}`: a nested control sharing our {{end}}.
                    let nested_kw = match &rest[0].tok {
                        Tok::Ident(w) if (w == "if" || w == "with") && w == kw => w.clone(),
                        _ => {
                            self.depth -= 1;
                            return fail(epos, "unexpected tokens after {{else}}");
                        }
                    };
                    self.depth -= 1;
                    let nested = self.control(&nested_kw, epos, rest[1..].to_vec())?;
                    self.depth += 1;
                    Some(vec![nested])
                }
            }
        };
        self.depth -= 1;
        self.vars.truncate(mark);
        let c = Control {
            pipe,
            list,
            else_list,
        };
        Ok(match kw {
            "if" => Node::If(c),
            "with" => Node::With(c),
            _ => Node::Range(c),
        })
    }

    fn pipe(&mut self, pos: usize, toks: &[Token], is_range: bool) -> Result<Pipe, ParseFail> {
        let mut decl = Vec::new();
        let mut is_assign = false;
        let mut i = 0;
        // Declarations: `$x :=`, `$x =`, and in range `$i, $v :=`.
        if let Some(Token { tok: Tok::Var(v), .. }) = toks.first() {
            match toks.get(1).map(|t| &t.tok) {
                Some(Tok::Declare) => {
                    decl.push(v.clone());
                    i = 2;
                }
                Some(Tok::Assign) => {
                    decl.push(v.clone());
                    is_assign = true;
                    i = 2;
                }
                Some(Tok::Comma) if is_range => {
                    if let (Some(Tok::Var(v2)), Some(op @ (Tok::Declare | Tok::Assign))) =
                        (toks.get(2).map(|t| &t.tok), toks.get(3).map(|t| &t.tok))
                    {
                        decl.push(v.clone());
                        decl.push(v2.clone());
                        is_assign = *op == Tok::Assign;
                        i = 4;
                    } else {
                        return fail(toks[1].pos, "too many declarations in range");
                    }
                }
                _ => {}
            }
        }
        if is_assign {
            for v in &decl {
                if !self.vars.contains(v) {
                    return fail(pos, format!("undefined variable \"{v}\""));
                }
            }
        }
        let mut cmds = Vec::new();
        let mut j = i;
        while j < toks.len() {
            // Find the end of this command: the next `|` at paren depth 0.
            let mut depth = 0usize;
            let mut k = j;
            while k < toks.len() {
                match toks[k].tok {
                    Tok::LParen => depth += 1,
                    Tok::RParen => depth = depth.saturating_sub(1),
                    Tok::Pipe if depth == 0 => break,
                    _ => {}
                }
                k += 1;
            }
            if k == j {
                return fail(toks[j].pos, "missing command in pipeline");
            }
            cmds.push(self.command(&toks[j..k])?);
            j = k + 1;
            if k < toks.len() && j >= toks.len() {
                return fail(toks[k].pos, "missing command after |");
            }
        }
        if cmds.is_empty() {
            return fail(pos, "missing value for command");
        }
        if !is_assign {
            self.vars.extend(decl.iter().cloned());
        }
        Ok(Pipe {
            pos: toks.first().map_or(pos, |t| t.pos),
            decl,
            is_assign,
            cmds,
        })
    }

    fn command(&mut self, toks: &[Token]) -> Result<Cmd, ParseFail> {
        let mut args = Vec::new();
        let mut i = 0;
        while i < toks.len() {
            if i > 0 && !toks[i].spaced && !matches!(toks[i].tok, Tok::LParen) {
                return fail(toks[i].pos, "missing space between arguments");
            }
            let (arg, n) = self.operand(&toks[i..])?;
            args.push(arg);
            i += n;
        }
        Ok(Cmd {
            pos: toks[0].pos,
            args,
        })
    }

    /// One operand and the number of tokens it took.
    fn operand(&mut self, toks: &[Token]) -> Result<(Arg, usize), ParseFail> {
        let t = &toks[0];
        let (arg, mut n) = match &t.tok {
            Tok::Field(f) => (Arg::Field(vec![f.clone()]), 1),
            Tok::Dot => (Arg::Dot, 1),
            Tok::Var(v) => {
                if !self.vars.contains(v) {
                    return fail(t.pos, format!("undefined variable \"{v}\""));
                }
                (Arg::Var(v.clone(), Vec::new()), 1)
            }
            Tok::Ident(name) => {
                if KEYWORDS.contains(&name.as_str()) {
                    return fail(t.pos, format!("unexpected keyword {name} in operand"));
                }
                if !(self.known)(name) {
                    return fail(t.pos, format!("function \"{name}\" not defined"));
                }
                (Arg::Func(name.clone()), 1)
            }
            Tok::Str(s) => (Arg::Lit(Value::from(s.as_str())), 1),
            Tok::Num(v) => (Arg::Lit(v.clone()), 1),
            Tok::Bool(b) => (Arg::Lit(Value::Bool(*b)), 1),
            Tok::Nil => (Arg::Lit(Value::Nil), 1),
            Tok::LParen => {
                let mut depth = 0usize;
                let mut close = None;
                for (k, tk) in toks.iter().enumerate() {
                    match tk.tok {
                        Tok::LParen => depth += 1,
                        Tok::RParen => {
                            depth -= 1;
                            if depth == 0 {
                                close = Some(k);
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let Some(close) = close else {
                    return fail(t.pos, "unclosed left paren");
                };
                let inner = self.pipe(t.pos, &toks[1..close], false)?;
                (Arg::Sub(Box::new(inner), Vec::new()), close + 1)
            }
            Tok::RParen => return fail(t.pos, "unexpected right paren"),
            Tok::Pipe => return fail(t.pos, "unexpected |"),
            Tok::Declare | Tok::Assign => return fail(t.pos, "unexpected declaration"),
            Tok::Comma => return fail(t.pos, "unexpected comma"),
        };
        // Field chain directly attached: `.A.B`, `$x.A`, `(…).A`.
        let mut arg = arg;
        while let Some(Token {
            tok: Tok::Field(f),
            spaced: false,
            pos,
        }) = toks.get(n)
        {
            match &mut arg {
                Arg::Field(chain) | Arg::Var(_, chain) | Arg::Sub(_, chain) => chain.push(f.clone()),
                _ => return fail(*pos, format!("unexpected .{f} after operand")),
            }
            n += 1;
        }
        Ok((arg, n))
    }
}
