//! Docker/OCI image references: parsing, normalisation and the target naming KKP uses.
//!
//! Every other module speaks in [`ImageRef`]s, never in raw strings, so that `nginx`,
//! `docker.io/library/nginx:latest` and `index.docker.io/library/nginx` are one image. This module knows
//! nothing of registries on the wire or of KKP beyond the `overwriteRegistry` naming rule.

use std::fmt;

/// The registry short names resolve to.
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {:?}: {reason}", redact_credentials(input))]
pub struct RefError {
    /// The text as given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

/// `user:password@host/…` — a URL's credentials pasted where a reference belongs — with the password
/// shown as `***`, so an error never prints it. `name:tag@sha256:…` is a digest, not credentials, and
/// is kept.
pub fn redact_credentials(input: &str) -> std::borrow::Cow<'_, str> {
    let start = input.find("://").map_or(0, |i| i + 3);
    let body = &input[start..];
    let Some((userinfo, rest)) = body.split_once('@') else {
        return input.into();
    };
    let digest_like = rest.split_once(':').is_some_and(|(alg, _)| {
        !alg.is_empty()
            && alg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+._-".contains(&b))
    });
    match userinfo.split_once(':') {
        Some((user, _)) if !digest_like && !userinfo.contains('/') => {
            format!("{}{user}:***@{rest}", &input[..start]).into()
        }
        _ => input.into(),
    }
}

/// A fully normalised image reference: `registry/repository[:tag][@digest]`.
///
/// A reference with neither tag nor digest gets the tag `latest` when parsed, as docker does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    /// Registry host, with port if any (`docker.io`, `localhost:5000`, `[::1]:5000`).
    pub registry: String,
    /// Repository path below the registry (`library/nginx`, `kubermatic/kubermatic`).
    pub repository: String,
    /// Tag, if any.
    pub tag: Option<String>,
    /// Digest (`sha256:<64 hex>`), if any.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses and normalises a reference (`nginx` → `docker.io/library/nginx:latest`).
    pub fn parse(input: &str) -> Result<ImageRef, RefError> {
        crate::reference::parse_impl(input)
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The tag if there is one, else the digest: what a registry manifest URL takes.
    pub fn identifier(&self) -> &str {
        self.digest.as_deref().or(self.tag.as_deref()).unwrap_or("latest")
    }

    /// The name this image gets in the private registry `target` (`host[:port][/prefix]`): the source
    /// host is dropped and the path kept, exactly as KKP's `overwriteRegistry` rewrites at run time.
    /// Tag and digest are both kept; a digest-only reference stays digest-only.
    pub fn retarget(&self, target: &str) -> Result<ImageRef, RefError> {
        Target::parse(target)?.apply(self)
    }
}

/// A private registry images are mirrored into: `host[:port][/prefix]`, no scheme, tag or digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// Registry host, with port if any; `index.docker.io` is normalised to `docker.io`.
    pub registry: String,
    /// Repository prefix below the host (`kkp`, `mirror/kkp`), if any.
    pub prefix: Option<String>,
}

impl Target {
    /// Parses a target registry (`reg.local:5000/kkp`); a trailing `/` is ignored.
    pub fn parse(target: &str) -> Result<Target, RefError> {
        parse_target(target)
    }

    /// `reference` renamed into this registry: the host replaced, the prefix put before the path.
    pub fn apply(&self, reference: &ImageRef) -> Result<ImageRef, RefError> {
        let repository = match &self.prefix {
            Some(p) => format!("{p}/{}", reference.repository),
            None => reference.repository.clone(),
        };
        let out = ImageRef {
            registry: self.registry.clone(),
            repository,
            tag: reference.tag.clone(),
            digest: reference.digest.clone(),
        };
        let len = out.name().len();
        if len > NAME_TOTAL_LENGTH_MAX {
            return Err(RefError {
                input: out.to_string(),
                reason: format!(
                    "retargeted name is {len} characters long; at most {NAME_TOTAL_LENGTH_MAX} are allowed"
                ),
            });
        }
        Ok(out)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.registry)?;
        if let Some(p) = &self.prefix {
            write!(f, "/{p}")?;
        }
        Ok(())
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for ImageRef {
    type Err = RefError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(s)
    }
}

/// Longest `registry/repository` docker accepts.
pub const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// Longest tag docker accepts.
const TAG_LENGTH_MAX: usize = 128;

/// The host that `docker.io` images were once addressed by.
const LEGACY_DEFAULT_REGISTRY: &str = "index.docker.io";

/// Builds errors that all name the same input.
struct Fail<'a>(&'a str);

impl Fail<'_> {
    fn because(&self, reason: impl Into<String>) -> RefError {
        RefError {
            input: self.0.to_string(),
            reason: reason.into(),
        }
    }
}

/// Rejections that hold for references and targets alike: emptiness, blanks, control characters, URLs.
fn check_text(fail: &Fail<'_>, input: &str) -> Result<(), RefError> {
    if input.is_empty() {
        return Err(fail.because("empty"));
    }
    if input.chars().any(char::is_whitespace) {
        return Err(fail.because("contains whitespace"));
    }
    if let Some(c) = input.chars().find(|c| c.is_control()) {
        return Err(fail.because(format!("contains the control character {c:?}")));
    }
    if let Some((scheme, _)) = input.split_once("://") {
        return Err(fail.because(format!(
            "has a URL scheme ({scheme}://); write the reference without it"
        )));
    }
    if input.contains("//") {
        return Err(fail.because("contains '//' (an empty path component)"));
    }
    Ok(())
}

/// The grammar docker/distribution `reference.ParseNormalizedNamed` implements, with its normalisation.
fn parse_impl(input: &str) -> Result<ImageRef, RefError> {
    let fail = Fail(input);
    check_text(&fail, input)?;
    if input.len() == 64 && input.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(fail.because("a 64-character hex string is an image ID, not a reference"));
    }

    let (rest, digest) = match input.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (input, None),
    };
    if let Some(digest) = digest {
        if digest.is_empty() {
            return Err(fail.because("'@' is not followed by a digest"));
        }
        if digest.contains('@') {
            return Err(fail.because("more than one '@'"));
        }
        check_digest(&fail, digest)?;
    }
    if rest.is_empty() {
        return Err(fail.because("no repository name before the digest"));
    }

    // The tag is after the last ':' of the last path segment; a ':' earlier on is a registry port.
    let last_segment = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_segment..].rfind(':') {
        Some(i) => {
            let i = last_segment + i;
            (&rest[..i], Some(&rest[i + 1..]))
        }
        None => (rest, None),
    };
    if let Some(tag) = tag {
        check_tag(&fail, tag)?;
    }
    if name.is_empty() {
        return Err(fail.because("no repository name before the tag"));
    }

    // docker's splitDockerDomain: the first segment is a registry only if it looks like a host.
    let (registry, repository) = match name.split_once('/') {
        Some((first, path)) if is_domain_like(first) => {
            check_domain(&fail, first)?;
            (normalise_registry(first), path)
        }
        _ => (DEFAULT_REGISTRY.to_string(), name),
    };
    check_path(&fail, repository)?;
    let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository.to_string()
    };

    let total = registry.len() + 1 + repository.len();
    if total > NAME_TOTAL_LENGTH_MAX {
        return Err(fail.because(format!(
            "name {registry}/{repository} is {total} characters long; at most {NAME_TOTAL_LENGTH_MAX} are allowed"
        )));
    }

    let tag = match (tag, digest) {
        (None, None) => Some("latest".to_string()),
        (tag, _) => tag.map(str::to_string),
    };
    Ok(ImageRef {
        registry,
        repository,
        tag,
        digest: digest.map(str::to_string),
    })
}

/// Parses `host[:port][/prefix]`, refusing what would make the target a reference rather than a place.
fn parse_target(input: &str) -> Result<Target, RefError> {
    let fail = Fail(input);
    check_text(&fail, input)?;
    if input.contains('@') {
        return Err(fail.because("a target registry must not carry a digest; give host[:port][/prefix] only"));
    }
    let target = input.strip_suffix('/').unwrap_or(input);
    if target.is_empty() {
        return Err(fail.because("empty"));
    }
    let (host, prefix) = match target.split_once('/') {
        Some((host, prefix)) => (host, Some(prefix)),
        None => (target, None),
    };
    if !is_domain_like(host) {
        return Err(fail.because(format!(
            "target registry host {host:?} must contain '.' or ':' or be \"localhost\", or docker reads it as a docker.io repository"
        )));
    }
    if let Some(prefix) = prefix {
        if let Some((_, tag)) = prefix.rsplit_once(':') {
            return Err(fail.because(format!(
                "a target registry must not carry a tag (\":{tag}\"); give host[:port][/prefix] only"
            )));
        }
        check_path(&fail, prefix)?;
    }
    if let Some((_, port)) = host.split_once(':').filter(|_| !host.starts_with('['))
        && !port.is_empty()
        && !port.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(fail.because(format!(
            "port {port:?} of target registry host {host:?} is not a number (a target carries no tag)"
        )));
    }
    check_domain(&fail, host)?;
    Ok(Target {
        registry: normalise_registry(host),
        prefix: prefix.map(str::to_string),
    })
}

/// docker's rule for "is the first path segment a registry host?".
fn is_domain_like(first: &str) -> bool {
    first.contains(['.', ':']) || first == "localhost" || first.bytes().any(|b| b.is_ascii_uppercase())
}

fn normalise_registry(host: &str) -> String {
    if host == LEGACY_DEFAULT_REGISTRY {
        DEFAULT_REGISTRY.to_string()
    } else {
        host.to_string()
    }
}

/// `host[:port]` where host is dot-separated DNS labels or a bracketed IPv6 address.
fn check_domain(fail: &Fail<'_>, domain: &str) -> Result<(), RefError> {
    let (host, port) = if let Some(inner) = domain.strip_prefix('[') {
        let Some((addr, after)) = inner.split_once(']') else {
            return Err(fail.because(format!("registry host {domain:?} opens '[' but never closes it")));
        };
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err(fail.because(format!(
                "registry host [{addr}] is not an IPv6 address (hex digits and ':' only)"
            )));
        }
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => {
                    return Err(fail.because(format!(
                        "unexpected {after:?} after the IPv6 address in registry host {domain:?}"
                    )));
                }
            },
        };
        (None, port)
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(domain), None),
        }
    };
    if let Some(host) = host {
        if host.is_empty() {
            return Err(fail.because(format!("registry {domain:?} has an empty host name")));
        }
        for label in host.split('.') {
            if label.is_empty() {
                return Err(fail.because(format!(
                    "registry host {host:?} has an empty component (leading, trailing or doubled '.')"
                )));
            }
            if let Some(c) = label.chars().find(|c| !c.is_ascii_alphanumeric() && *c != '-') {
                return Err(fail.because(format!(
                    "registry host {host:?} contains {c:?}; only letters, digits, '-' and '.' are allowed"
                )));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(fail.because(format!(
                    "registry host component {label:?} must not start or end with '-'"
                )));
            }
        }
    }
    if let Some(port) = port {
        if port.is_empty() {
            return Err(fail.because(format!("registry {domain:?} ends with ':' but has no port")));
        }
        if !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(fail.because(format!("port {port:?} of registry {domain:?} is not a number")));
        }
    }
    Ok(())
}

/// `component ('/' component)*`, each component `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn check_path(fail: &Fail<'_>, path: &str) -> Result<(), RefError> {
    if path.is_empty() {
        return Err(fail.because("empty repository path"));
    }
    if path.starts_with('/') || path.ends_with('/') {
        return Err(fail.because(format!(
            "repository path {path:?} starts or ends with '/' (an empty component)"
        )));
    }
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(fail.because(format!("repository path {path:?} must be lowercase")));
    }
    for component in path.split('/') {
        check_component(fail, component)?;
    }
    Ok(())
}

fn check_component(fail: &Fail<'_>, component: &str) -> Result<(), RefError> {
    if let Some(c) = component
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '-'))
    {
        return Err(fail.because(format!(
            "path component {component:?} contains {c:?}; only a-z, 0-9, '.', '_' and '-' are allowed"
        )));
    }
    let is_sep = |b: u8| matches!(b, b'.' | b'_' | b'-');
    let bytes = component.as_bytes();
    if bytes.first().copied().is_some_and(is_sep) || bytes.last().copied().is_some_and(is_sep) {
        return Err(fail.because(format!(
            "path component {component:?} must start and end with a letter or digit"
        )));
    }
    // Every run of separators must be '.', '_', '__' or one or more '-'.
    for run in component.split(|c: char| c.is_ascii_alphanumeric()) {
        if run.is_empty() || run == "." || run == "_" || run == "__" || run.bytes().all(|b| b == b'-') {
            continue;
        }
        return Err(fail.because(format!(
            "path component {component:?} has the separator {run:?}; only '.', '_', '__' or dashes may join letters and digits"
        )));
    }
    Ok(())
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn check_tag(fail: &Fail<'_>, tag: &str) -> Result<(), RefError> {
    if tag.is_empty() {
        return Err(fail.because("':' is not followed by a tag"));
    }
    if tag.len() > TAG_LENGTH_MAX {
        return Err(fail.because(format!(
            "tag is {} characters long; at most {TAG_LENGTH_MAX} are allowed",
            tag.len()
        )));
    }
    if let Some(c) = tag
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && !matches!(c, '_' | '.' | '-'))
    {
        return Err(fail.because(format!(
            "tag {tag:?} contains {c:?}; only letters, digits, '_', '.' and '-' are allowed"
        )));
    }
    if tag.starts_with(['.', '-']) {
        return Err(fail.because(format!("tag {tag:?} must not start with '.' or '-'")));
    }
    Ok(())
}

/// `algorithm:hex`, with the lengths the registered algorithms demand.
fn check_digest(fail: &Fail<'_>, digest: &str) -> Result<(), RefError> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(fail.because(format!(
            "digest {digest:?} is not of the form algorithm:hex (e.g. sha256:<64 hex digits>)"
        )));
    };
    let want = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        "" => return Err(fail.because("digest has no algorithm before ':'")),
        other => {
            return Err(fail.because(format!(
                "unsupported digest algorithm {other:?}; only sha256 and sha512 are accepted"
            )));
        }
    };
    if hex.is_empty() {
        return Err(fail.because(format!("{algorithm} digest has no hex after ':'")));
    }
    if let Some(c) = hex.chars().find(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
        let what = if c.is_ascii_hexdigit() {
            "uppercase hex".to_string()
        } else {
            format!("{c:?}")
        };
        return Err(fail.because(format!(
            "{algorithm} digest contains {what}; it must be {want} lowercase hex digits"
        )));
    }
    if hex.len() != want {
        return Err(fail.because(format!(
            "{algorithm} digest has {} hex digits; it must have exactly {want}",
            hex.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const H256: &str = "8291a8d5c8a3e2f2b3b1d0c6e9f4a7b2c5d8e1f4a7b0c3d6e9f2a5b8c1d4e7f0";

    fn d256() -> String {
        format!("sha256:{H256}")
    }

    fn parsed(s: &str) -> ImageRef {
        match ImageRef::parse(s) {
            Ok(r) => r,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    fn reason(s: &str) -> String {
        match ImageRef::parse(s) {
            Ok(r) => panic!("{s:?} should be rejected, parsed as {r}"),
            Err(e) => {
                assert_eq!(e.input, s);
                e.reason
            }
        }
    }

    #[test]
    fn normalises_like_docker() {
        let d = d256();
        let table: &[(&str, String)] = &[
            ("nginx", "docker.io/library/nginx:latest".into()),
            ("nginx:1.25", "docker.io/library/nginx:1.25".into()),
            ("library/nginx", "docker.io/library/nginx:latest".into()),
            ("docker.io/nginx", "docker.io/library/nginx:latest".into()),
            ("index.docker.io/nginx", "docker.io/library/nginx:latest".into()),
            (
                "index.docker.io/grafana/loki:3.0",
                "docker.io/grafana/loki:3.0".into(),
            ),
            ("grafana/loki", "docker.io/grafana/loki:latest".into()),
            (
                "quay.io/kubermatic/kubermatic:v2.31.0",
                "quay.io/kubermatic/kubermatic:v2.31.0".into(),
            ),
            ("quay.io/nginx", "quay.io/nginx:latest".into()),
            ("localhost/foo", "localhost/foo:latest".into()),
            ("localhost:5000/foo/bar:1", "localhost:5000/foo/bar:1".into()),
            ("127.0.0.1:5000/a", "127.0.0.1:5000/a:latest".into()),
            ("[::1]:5000/a/b:c", "[::1]:5000/a/b:c".into()),
            ("[fe80::1]/a", "[fe80::1]/a:latest".into()),
            ("Registry.Example/a", "Registry.Example/a:latest".into()),
            ("MyHost/a", "MyHost/a:latest".into()),
            ("localhost:5000", "docker.io/library/localhost:5000".into()),
            (
                "a.b-c.d/e__f/g.h/i---j_k:T_a.g-1",
                "a.b-c.d/e__f/g.h/i---j_k:T_a.g-1".into(),
            ),
            (&format!("busybox@{d}"), format!("docker.io/library/busybox@{d}")),
            (&format!("foo/bar:v1@{d}"), format!("docker.io/foo/bar:v1@{d}")),
            (
                &format!("registry.k8s.io/ingress-nginx/controller:v1.14.3@{d}"),
                format!("registry.k8s.io/ingress-nginx/controller:v1.14.3@{d}"),
            ),
        ];
        for (input, want) in table {
            assert_eq!(parsed(input).to_string(), *want, "input {input:?}");
        }
    }

    #[test]
    fn fields_are_split_apart() {
        let r = parsed(&format!("[::1]:5000/ns/app:v2@{}", d256()));
        assert_eq!(r.registry, "[::1]:5000");
        assert_eq!(r.repository, "ns/app");
        assert_eq!(r.tag.as_deref(), Some("v2"));
        assert_eq!(r.digest, Some(d256()));
        assert_eq!(r.name(), "[::1]:5000/ns/app");
        assert_eq!(r.identifier(), d256());

        let r = parsed(&format!("d3fk/s3cmd@{}", d256()));
        assert_eq!(r.tag, None, "digest-only must not gain a tag");
        let r = parsed("nginx");
        assert_eq!(r.identifier(), "latest");
    }

    #[test]
    fn sha512_digests_are_accepted() {
        let d = format!("sha512:{}", "ab".repeat(64));
        assert_eq!(parsed(&format!("a/b@{d}")).digest.as_deref(), Some(d.as_str()));
    }

    #[test]
    fn rejects_with_precise_reasons() {
        let long_path = "a".repeat(250);
        let long_tag = "t".repeat(129);
        let table: Vec<(String, &str)> = vec![
            (String::new(), "empty"),
            ("nginx :1".into(), "whitespace"),
            (" nginx".into(), "whitespace"),
            ("nginx\n".into(), "whitespace"),
            ("ngi\u{7}nx".into(), "control character"),
            ("http://quay.io/a/b".into(), "URL scheme (http://)"),
            ("https://quay.io/a/b".into(), "URL scheme (https://)"),
            ("Nginx".into(), "must be lowercase"),
            ("quay.io/Kubermatic/kkp".into(), "must be lowercase"),
            ("quay.io//a".into(), "'//'"),
            ("a//b".into(), "'//'"),
            ("/nginx".into(), "starts or ends with '/'"),
            ("quay.io/a/".into(), "starts or ends with '/'"),
            ("quay.io/".into(), "empty repository path"),
            ("nginx:".into(), "':' is not followed by a tag"),
            ("nginx@".into(), "'@' is not followed by a digest"),
            (":v1".into(), "no repository name before the tag"),
            (format!("@{}", d256()), "no repository name before the digest"),
            ("nginx@sha256".into(), "not of the form algorithm:hex"),
            (
                "nginx@sha256:abc".into(),
                "has 3 hex digits; it must have exactly 64",
            ),
            (format!("nginx@sha256:{}", H256.to_uppercase()), "uppercase hex"),
            (format!("nginx@sha256:{}", "g".repeat(64)), "contains 'g'"),
            (format!("nginx@sha512:{H256}"), "must have exactly 128"),
            (
                format!("nginx@md5:{}", "a".repeat(32)),
                "unsupported digest algorithm \"md5\"",
            ),
            (format!("nginx@:{H256}"), "no algorithm"),
            (format!("nginx@{}@{}", d256(), d256()), "more than one '@'"),
            (format!("quay.io/{long_path}"), "at most 255"),
            (format!("nginx:{long_tag}"), "at most 128"),
            ("nginx:-x".into(), "must not start with '.' or '-'"),
            ("nginx:.x".into(), "must not start with '.' or '-'"),
            ("nginx:a+b".into(), "contains '+'"),
            ("-nginx".into(), "start and end with a letter or digit"),
            ("nginx-".into(), "start and end with a letter or digit"),
            ("a/_b".into(), "start and end with a letter or digit"),
            ("a/b.".into(), "start and end with a letter or digit"),
            ("a/b___c".into(), "separator \"___\""),
            ("a/b._c".into(), "separator \"._\""),
            ("a/b..c".into(), "separator \"..\""),
            ("a/b!c".into(), "contains '!'"),
            ("quay.io:/a".into(), "has no port"),
            ("quay.io:50x/a".into(), "is not a number"),
            ("quay..io/a".into(), "empty component"),
            (".quay.io/a".into(), "empty component"),
            ("-quay.io/a".into(), "must not start or end with '-'"),
            ("qu_ay.io/a".into(), "contains '_'"),
            ("[::1/a".into(), "never closes"),
            ("[zz]:5000/a".into(), "not an IPv6 address"),
            ("[::1]x/a".into(), "after the IPv6 address"),
            ("ab".repeat(32), "image ID"),
        ];
        for (input, want) in &table {
            let got = reason(input);
            assert!(got.contains(want), "{input:?}: reason {got:?} lacks {want:?}");
            assert!(!got.contains('\n'), "{input:?}: reason must be one line: {got:?}");
        }
    }

    #[test]
    fn error_message_names_input_and_reason() {
        let e = ImageRef::parse("nginx:").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid image reference \"nginx:\": ':' is not followed by a tag"
        );
    }

    /// KKP's `RewriteImage` table (kkp-image-sources §1.2(e)), except that a digest-only source keeps
    /// its digest instead of being pinned to `:latest`, and a tag+digest source keeps both.
    #[test]
    fn retarget_matches_kkp_rewrite_image() {
        let d = d256();
        let reg = "reg.local:5000/kkp";
        let table: &[(String, String)] = &[
            (
                "docker.io/library/nginx:1.2".into(),
                "reg.local:5000/kkp/library/nginx:1.2".into(),
            ),
            ("nginx:1.2".into(), "reg.local:5000/kkp/library/nginx:1.2".into()),
            (
                "quay.io/kubermatic/kubermatic:v2.31.0".into(),
                "reg.local:5000/kkp/kubermatic/kubermatic:v2.31.0".into(),
            ),
            (
                "registry.k8s.io/kube-apiserver:v1.35.7".into(),
                "reg.local:5000/kkp/kube-apiserver:v1.35.7".into(),
            ),
            (
                format!("registry.k8s.io/ingress-nginx/controller:v1.14.3@{d}"),
                format!("reg.local:5000/kkp/ingress-nginx/controller:v1.14.3@{d}"),
            ),
            (
                format!("d3fk/s3cmd@{d}"),
                format!("reg.local:5000/kkp/d3fk/s3cmd@{d}"),
            ),
            (
                "busybox".into(),
                "reg.local:5000/kkp/library/busybox:latest".into(),
            ),
        ];
        for (src, want) in table {
            let got = parsed(src).retarget(reg).unwrap();
            assert_eq!(got.to_string(), *want, "source {src:?}");
            assert_eq!(got, parsed(want), "target of {src:?} must parse back to itself");
        }
    }

    #[test]
    fn retarget_target_forms() {
        let src = parsed("quay.io/kubermatic/kubermatic:v1");
        let cases = [
            ("reg.local:5000", "reg.local:5000/kubermatic/kubermatic:v1"),
            ("reg.local:5000/", "reg.local:5000/kubermatic/kubermatic:v1"),
            ("localhost/a/b", "localhost/a/b/kubermatic/kubermatic:v1"),
            ("[::1]:5000/m", "[::1]:5000/m/kubermatic/kubermatic:v1"),
            ("index.docker.io/me", "docker.io/me/kubermatic/kubermatic:v1"),
        ];
        for (target, want) in cases {
            assert_eq!(
                src.retarget(target).unwrap().to_string(),
                want,
                "target {target:?}"
            );
        }
        let t = Target::parse("reg.local:5000/kkp/").unwrap();
        assert_eq!(t.registry, "reg.local:5000");
        assert_eq!(t.prefix.as_deref(), Some("kkp"));
        assert_eq!(t.to_string(), "reg.local:5000/kkp");
    }

    #[test]
    fn retarget_rejects_bad_targets() {
        let src = parsed("nginx");
        let cases = [
            ("", "empty"),
            ("/", "empty"),
            ("reg.local/kkp:v1", "must not carry a tag"),
            ("reg.local:v1", "is not a number"),
            (
                &format!("reg.local/kkp@{}", d256()) as &str,
                "must not carry a digest",
            ),
            ("http://reg.local:5000", "URL scheme (http://)"),
            ("https://reg.local", "URL scheme (https://)"),
            ("myregistry", "must contain '.' or ':'"),
            ("myregistry/kkp", "must contain '.' or ':'"),
            ("reg.local/KKP", "must be lowercase"),
            ("reg.local//kkp", "'//'"),
            ("reg .local", "whitespace"),
            ("reg_x.local", "contains '_'"),
        ];
        for (target, want) in cases {
            let e = src.retarget(target).unwrap_err();
            assert_eq!(e.input, target);
            assert!(
                e.reason.contains(want),
                "{target:?}: {:?} lacks {want:?}",
                e.reason
            );
        }
        let long = format!("reg.local/{}", "p".repeat(240));
        let e = src.retarget(&long).unwrap_err();
        assert!(e.reason.contains("at most 255"), "{}", e.reason);
    }

    // ---- properties ----

    fn component() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,6}((\\.|_|__|-{1,3})[a-z0-9]{1,6}){0,2}"
    }

    fn path() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec(component(), 1..4)
    }

    fn domain() -> impl Strategy<Value = String> {
        let label = "[a-zA-Z0-9]([a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?";
        let port = prop::option::of(1u16..);
        prop_oneof![
            (prop::collection::vec(label, 2..4), port.clone()).prop_map(|(l, p)| with_port(l.join("."), p)),
            (label, 1u16..).prop_map(|(l, p)| format!("{l}:{p}")),
            port.clone().prop_map(|p| with_port("localhost".into(), p)),
            ("[0-9a-f]{1,4}(:[0-9a-f]{0,4}){1,4}", port).prop_map(|(a, p)| with_port(format!("[{a}]"), p)),
        ]
    }

    fn with_port(host: String, port: Option<u16>) -> String {
        match port {
            Some(p) => format!("{host}:{p}"),
            None => host,
        }
    }

    fn tag() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"
    }

    fn digest() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-f0-9]{64}".prop_map(|h| format!("sha256:{h}")),
            "[a-f0-9]{128}".prop_map(|h| format!("sha512:{h}")),
        ]
    }

    /// A valid reference as text, plus the fields it must normalise to.
    fn valid_ref() -> impl Strategy<Value = (String, ImageRef)> {
        (
            prop::option::of(domain()),
            path(),
            prop::option::of(tag()),
            prop::option::of(digest()),
        )
            .prop_filter(
                "a bare first path component must not look like a host",
                |(d, p, _, _)| d.is_some() || p.len() == 1 || !is_domain_like(&p[0]),
            )
            .prop_map(|(domain, path, tag, digest)| {
                let joined = path.join("/");
                let mut text = match &domain {
                    Some(d) => format!("{d}/{joined}"),
                    None => joined.clone(),
                };
                if let Some(t) = &tag {
                    text.push(':');
                    text.push_str(t);
                }
                if let Some(d) = &digest {
                    text.push('@');
                    text.push_str(d);
                }
                let registry = match domain.as_deref() {
                    None | Some("index.docker.io") => "docker.io".to_string(),
                    Some(d) => d.to_string(),
                };
                let repository = if registry == "docker.io" && path.len() == 1 {
                    format!("library/{joined}")
                } else {
                    joined
                };
                let tag = if tag.is_none() && digest.is_none() {
                    Some("latest".into())
                } else {
                    tag
                };
                (
                    text,
                    ImageRef {
                        registry,
                        repository,
                        tag,
                        digest,
                    },
                )
            })
    }

    fn target() -> impl Strategy<Value = String> {
        (domain(), prop::option::of(path())).prop_map(|(d, p)| match p {
            Some(p) => format!("{d}/{}", p.join("/")),
            None => d,
        })
    }

    /// Found by `tests/cli_hostile.rs`: `user:password@registry/…` in an image list was echoed, password
    /// and all, in the "invalid image reference" error.
    #[test]
    fn credentials_pasted_into_a_reference_are_not_echoed() {
        for input in [
            "user:S3cretPw@reg.example.com/x:1",
            "https://user:S3cretPw@reg.example.com/x:1",
        ] {
            let e = ImageRef::parse(input).unwrap_err();
            let shown = e.to_string();
            assert!(!shown.contains("S3cretPw"), "{shown}");
            assert!(shown.contains("user:***@reg.example.com/x:1"), "{shown}");
        }
        // A digest after a tag is not a password.
        assert_eq!(
            redact_credentials("nginx:1.27@sha256:abc"),
            "nginx:1.27@sha256:abc"
        );
        assert_eq!(
            redact_credentials("host:5000/a@sha256:abc"),
            "host:5000/a@sha256:abc"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn generated_valid_refs_parse((text, want) in valid_ref()) {
            let got = ImageRef::parse(&text);
            prop_assert_eq!(got, Ok(want), "input {:?}", text);
        }

        #[test]
        fn display_round_trips((text, _) in valid_ref()) {
            let r = ImageRef::parse(&text).unwrap();
            prop_assert_eq!(ImageRef::parse(&r.to_string()), Ok(r));
        }

        #[test]
        fn retarget_keeps_tag_digest_and_path((text, _) in valid_ref(), t in target()) {
            let r = ImageRef::parse(&text).unwrap();
            let target = Target::parse(&t).unwrap();
            let out = r.retarget(&t).unwrap();
            prop_assert_eq!(&out.tag, &r.tag);
            prop_assert_eq!(&out.digest, &r.digest);
            prop_assert_eq!(&out.registry, &target.registry);
            let want_repo = match &target.prefix {
                Some(p) => format!("{p}/{}", r.repository),
                None => r.repository.clone(),
            };
            prop_assert_eq!(&out.repository, &want_repo);
            prop_assert_eq!(ImageRef::parse(&out.to_string()), Ok(out.clone()));
        }

        #[test]
        fn parse_never_panics_on_any_string(s in any::<String>()) {
            let _ = ImageRef::parse(&s);
            let _ = Target::parse(&s);
        }

        #[test]
        fn parse_never_panics_on_reference_like_strings(s in "[a-zA-Z0-9:/@._\\-\\[\\] ]{0,60}") {
            if let Ok(r) = ImageRef::parse(&s) {
                prop_assert_eq!(ImageRef::parse(&r.to_string()), Ok(r));
            }
            let _ = Target::parse(&s);
        }
    }
}
