//! Registry authentication: `WWW-Authenticate` challenges, credentials from docker/podman config files
//! or flags, and bearer tokens cached per (host, scope set).
//!
//! Secrets live only in [`Credential`] and token strings; neither is ever formatted into a log line or an
//! error (the `Debug` of [`Credential`] redacts them).

use std::fmt;

/// Credentials for one registry host.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// Username and password (or a personal access token used as a password).
    Basic {
        /// The user name (not secret; shown in errors).
        username: String,
        /// The password (secret).
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken` in docker's config.json).
    IdentityToken(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic { username, .. } => {
                write!(f, "Basic {{ username: {username:?}, password: <redacted> }}")
            }
            Credential::IdentityToken(_) => write!(f, "IdentityToken(<redacted>)"),
        }
    }
}

impl Credential {
    /// The user name, for error messages.
    pub fn username(&self) -> &str {
        match self {
            Credential::Basic { username, .. } => username,
            Credential::IdentityToken(_) => "<identity token>",
        }
    }
}

/// What the registry asked for on `GET /v2/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// No authentication required.
    None,
    /// HTTP basic authentication.
    Basic,
    /// The docker token flow.
    Bearer {
        /// Token endpoint.
        realm: String,
        /// `service` parameter, if given.
        service: Option<String>,
        /// `scope` parameter, if given (only on 401 answers to a real request).
        scope: Option<String>,
        /// `error` parameter (`insufficient_scope`, `invalid_token`), if given.
        error: Option<String>,
    },
}

/// Parses one `WWW-Authenticate` header value (`Bearer realm="…",service="…"` or `Basic realm="…"`).
pub fn parse_challenge(header: &str) -> Challenge {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let params = parse_params(rest);
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    if scheme.eq_ignore_ascii_case("bearer") {
        match get("realm") {
            Some(realm) => Challenge::Bearer {
                realm,
                service: get("service"),
                scope: get("scope"),
                error: get("error"),
            },
            None => Challenge::None,
        }
    } else if scheme.eq_ignore_ascii_case("basic") {
        Challenge::Basic
    } else {
        Challenge::None
    }
}

fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            name.push(c);
            chars.next();
        }
        if chars.next().is_none() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n)
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((name.trim().to_string(), value.trim().to_string()));
    }
    out
}

/// Looks up credentials for `host` in docker's config (`$DOCKER_CONFIG/config.json` or
/// `~/.docker/config.json`, including credHelpers/credsStore), then podman's `auth.json`.
/// Blocking: may run a credential helper.
pub fn lookup_credential(host: &str) -> Option<Credential> {
    let server = if host == crate::reference::DEFAULT_REGISTRY {
        "https://index.docker.io/v1/"
    } else {
        host
    };
    let found = docker_credential::get_credential(server)
        .or_else(|_| docker_credential::get_podman_credential(server))
        .ok()?;
    Some(match found {
        docker_credential::DockerCredential::UsernamePassword(username, password) => {
            Credential::Basic { username, password }
        }
        docker_credential::DockerCredential::IdentityToken(t) => Credential::IdentityToken(t),
    })
}

/// Percent-encodes a query parameter value.
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The token endpoint's answer.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_with_quoted_params() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push",error="insufficient_scope""#,
        );
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:a/b:pull,push".into()),
                error: Some("insufficient_scope".into()),
            }
        );
    }

    #[test]
    fn basic_and_unknown_challenges() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Challenge::Basic
        );
        assert_eq!(parse_challenge("Negotiate"), Challenge::None);
        assert_eq!(parse_challenge("Bearer service=x"), Challenge::None);
    }

    #[test]
    fn debug_never_shows_secrets() {
        let c = Credential::Basic {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{:?}", Credential::IdentityToken("tok".into())).contains("tok"));
    }

    #[test]
    fn encode_reserved() {
        assert_eq!(
            encode("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }
}
