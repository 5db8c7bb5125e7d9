//! Masterminds/semver v3 version parsing and constraint checks, as sprig and KKP use them.

/// Parses a version the lenient Masterminds way: optional `v`, one to three numbers, pre-release and
/// build metadata (`v1.33`, `1.33.2-rc.1+abc`).
pub fn parse_version(s: &str) -> Option<semver::Version> {
    let s = s.trim();
    let s = s.strip_prefix('v').unwrap_or(s);
    let (core, build) = match s.split_once('+') {
        Some((c, b)) => (c, Some(b)),
        None => (s, None),
    };
    let (core, pre) = match core.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (core, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.is_empty() || parts.len() > 3 {
        return None;
    }
    let mut nums = [0u64; 3];
    for (i, p) in parts.iter().enumerate() {
        if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        nums[i] = p.parse().ok()?;
    }
    let mut v = semver::Version::new(nums[0], nums[1], nums[2]);
    if let Some(p) = pre {
        v.pre = semver::Prerelease::new(p).ok()?;
    }
    if let Some(b) = build {
        v.build = semver::BuildMetadata::new(b).ok()?;
    }
    Some(v)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Tilde,
    Caret,
}

#[derive(Debug, Clone)]
struct Clause {
    op: Op,
    v: semver::Version,
    /// Number of version parts given (1 = `1`, 2 = `1.2`, 3 = full); wildcards count as missing.
    given: usize,
}

/// A parsed constraint: OR of AND-groups.
#[derive(Debug, Clone)]
pub struct Constraint {
    groups: Vec<Vec<Clause>>,
}

impl Constraint {
    /// Parses `">= 1.33"`, `"~1.2, !=1.2.3 || ^2"`, `"1.2 - 1.4"`.
    pub fn parse(s: &str) -> Option<Constraint> {
        let mut groups = Vec::new();
        for group in s.split("||") {
            let mut clauses = Vec::new();
            let g = group.trim();
            // Hyphen range.
            if let Some((a, b)) = g.split_once(" - ") {
                clauses.push(clause(Op::Ge, a.trim())?);
                clauses.push(clause(Op::Le, b.trim())?);
                groups.push(clauses);
                continue;
            }
            // Split on commas and on spaces between complete clauses (`>= 1.2 < 3`).
            let mut tokens: Vec<String> = Vec::new();
            for part in g.split(',') {
                let mut pending = String::new();
                for w in part.split_whitespace() {
                    pending.push_str(w);
                    if w.chars()
                        .last()
                        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '*')
                    {
                        tokens.push(std::mem::take(&mut pending));
                    }
                }
                if !pending.is_empty() {
                    return None;
                }
            }
            if tokens.is_empty() {
                return None;
            }
            for t in tokens {
                let (op, rest) = split_op(&t);
                clauses.push(clause(op, rest)?);
            }
            groups.push(clauses);
        }
        Some(Constraint { groups })
    }

    /// Whether `v` satisfies the constraint (pre-releases only match clauses that name one).
    pub fn check(&self, v: &semver::Version) -> bool {
        self.groups.iter().any(|g| g.iter().all(|c| c.check(v)))
    }
}

fn split_op(t: &str) -> (Op, &str) {
    for (p, op) in [
        (">=", Op::Ge),
        ("=>", Op::Ge),
        ("<=", Op::Le),
        ("=<", Op::Le),
        ("!=", Op::Ne),
        ("~>", Op::Tilde),
        (">", Op::Gt),
        ("<", Op::Lt),
        ("=", Op::Eq),
        ("~", Op::Tilde),
        ("^", Op::Caret),
    ] {
        if let Some(rest) = t.strip_prefix(p) {
            return (op, rest);
        }
    }
    (Op::Eq, t)
}

fn clause(op: Op, s: &str) -> Option<Clause> {
    let s = s.trim();
    let s = s.strip_prefix('v').unwrap_or(s);
    let (core, suffix) = match s.find(['-', '+']) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let mut given = 0;
    let mut nums = Vec::new();
    for p in core.split('.') {
        if matches!(p, "x" | "X" | "*") {
            break;
        }
        nums.push(p);
        given += 1;
    }
    if given > 3 {
        return None;
    }
    let mut text = nums.join(".");
    if text.is_empty() {
        text = "0".into();
    }
    let v = parse_version(&format!("{text}{suffix}"))?;
    Some(Clause { op, v, given })
}

impl Clause {
    fn check(&self, v: &semver::Version) -> bool {
        if !v.pre.is_empty() && self.v.pre.is_empty() {
            return false;
        }
        let c = &self.v;
        let dirty = self.given < 3;
        let cmp = |a: &semver::Version, b: &semver::Version| {
            let mut a = a.clone();
            let mut b = b.clone();
            a.build = semver::BuildMetadata::EMPTY;
            b.build = semver::BuildMetadata::EMPTY;
            a.cmp(&b)
        };
        use std::cmp::Ordering::*;
        match self.op {
            Op::Eq => {
                if dirty {
                    self.tilde_like(v)
                } else {
                    cmp(v, c) == Equal
                }
            }
            Op::Ne => {
                if dirty {
                    !self.tilde_like(v)
                } else {
                    cmp(v, c) != Equal
                }
            }
            Op::Gt => {
                if !dirty {
                    return cmp(v, c) == Greater;
                }
                match self.given {
                    0 => false,
                    1 => v.major > c.major,
                    _ => v.major > c.major || (v.major == c.major && v.minor > c.minor),
                }
            }
            Op::Ge => cmp(v, c) != Less,
            Op::Lt => cmp(v, c) == Less,
            Op::Le => {
                if !dirty {
                    return cmp(v, c) != Greater;
                }
                match self.given {
                    0 => true,
                    1 => v.major <= c.major,
                    _ => v.major < c.major || (v.major == c.major && v.minor <= c.minor),
                }
            }
            Op::Tilde => {
                if cmp(v, c) == Less {
                    return false;
                }
                if self.given <= 1 {
                    v.major == c.major
                } else {
                    v.major == c.major && v.minor == c.minor
                }
            }
            Op::Caret => {
                if cmp(v, c) == Less {
                    return false;
                }
                if c.major > 0 || self.given <= 1 {
                    v.major == c.major
                } else if c.minor > 0 || self.given == 2 {
                    v.major == 0 && v.minor == c.minor
                } else {
                    v.major == 0 && v.minor == 0 && v.patch == c.patch
                }
            }
        }
    }

    /// `1.2` / `1.2.x` as an equality: any patch of 1.2.
    fn tilde_like(&self, v: &semver::Version) -> bool {
        let c = &self.v;
        match self.given {
            0 => true,
            1 => v.major == c.major,
            _ => v.major == c.major && v.minor == c.minor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(c: &str, v: &str) -> bool {
        Constraint::parse(c).unwrap().check(&parse_version(v).unwrap())
    }

    #[test]
    fn masterminds_semantics() {
        assert!(ok(">= 1.33", "1.33.0"));
        assert!(ok(">= 1.33", "1.34.1"));
        assert!(!ok(">= 1.33", "1.32.9"));
        assert!(!ok(">= 1.33", "1.33.0-rc.1"));
        assert!(ok("< 1.34", "1.33.9"));
        assert!(ok("> 1.33", "1.34.0"));
        assert!(!ok("> 1.33", "1.33.5"));
        assert!(ok("<= 1.33", "1.33.7"));
        assert!(ok("~1.2.3", "1.2.9"));
        assert!(!ok("~1.2.3", "1.3.0"));
        assert!(ok("^1.2", "1.9.0"));
        assert!(!ok("^1.2", "2.0.0"));
        assert!(ok("1.2.x", "1.2.7"));
        assert!(ok(">=1.2, <1.4 || >= 3", "3.1.0"));
        assert!(ok(">= 1.2 < 1.4", "1.3.0"));
        assert!(!ok(">= 1.2 < 1.4", "1.4.0"));
        assert!(ok("1.2 - 1.4.5", "1.4.5"));
        assert!(ok("!=1.2.3", "1.2.4"));
        assert!(Constraint::parse(">= ").is_none());
        assert_eq!(parse_version("v1.33").unwrap().to_string(), "1.33.0");
        assert!(parse_version("1.x").is_none());
    }
}
