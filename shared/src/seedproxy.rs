//! `kubectl kkp seedproxy`: show and change the node proxy/registry settings of KKP Seeds.
//!
//! Offline installs need every user-cluster node to pull through a proxy or from a private registry;
//! KKP takes those settings from `spec.datacenters.<dc>.node` of a Seed (and `spec.proxySettings` as the
//! Seed-wide default). This module validates the flags, reads the Seed, computes the new object, shows a
//! diff, asks, and writes a JSON merge patch guarded by the resourceVersion it read, always with
//! `fieldValidation=Strict` so the server refuses what it would otherwise silently drop. It talks to the
//! cluster only through [`crate::kube`]; it knows nothing of kubeconfig files or TLS.

use std::io::Write;

use clap::Args;
use serde_json::{Map, Value, json};

use crate::cli::{CommonArgs, DryRun, KubeArgs, OutputFormat};
use crate::diff::{self, ConfirmError};
use crate::kube::{Cluster, KubeError, Objects, for_display, guarded_merge_patch};
use crate::reference::ImageRef;

/// API group of the KKP objects.
pub const GROUP: &str = "kubermatic.k8c.io";
/// Plural resource name of Seeds.
pub const RESOURCE: &str = "seeds";
/// The field manager recorded in managedFields for our writes.
pub const FIELD_MANAGER: &str = "kubectl-kkp-seedproxy";

/// Flags of `kubectl kkp seedproxy`.
#[derive(Debug, Clone, Default, Args)]
pub struct SeedproxyArgs {
    /// A Seed, or a datacenter name looked up across all Seeds. Without it, every Seed's settings are listed.
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// The datacenter of the Seed NAME to change.
    #[arg(long, value_name = "DC", conflicts_with_all = ["all_datacenters", "seed_default"])]
    pub datacenter: Option<String>,
    /// Change every datacenter of the Seed NAME.
    #[arg(long, conflicts_with = "seed_default")]
    pub all_datacenters: bool,
    /// Change the Seed-wide default `spec.proxySettings` (httpProxy, noProxy) instead of a datacenter.
    #[arg(long)]
    pub seed_default: bool,

    /// HTTP(S) proxy for the nodes: `http[s]://[user:pass@]host[:port]` (node `httpProxy`; docs: `http_proxy`).
    #[arg(long, value_name = "URL")]
    pub http_proxy: Option<String>,
    /// Hosts, domains and CIDRs the nodes reach directly, comma-separated (node `noProxy`).
    #[arg(long, value_name = "LIST")]
    pub no_proxy: Option<String>,
    /// Registry nodes may reach without TLS verification, `HOST[:PORT]`; repeatable or comma-separated.
    /// The given list replaces the current one (node `insecureRegistries`; docs: `insecure_registries`).
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]", value_delimiter = ',')]
    pub insecure_registries: Vec<String>,
    /// docker.io mirror URL for the nodes; repeatable or comma-separated; replaces the current list
    /// (node `registryMirrors`; docs: `registry_mirrors`).
    #[arg(long = "registry-mirror", value_name = "URL", value_delimiter = ',')]
    pub registry_mirrors: Vec<String>,
    /// Pause (sandbox) image for kubelet (node `pauseImage`; docs: `pause_image`).
    #[arg(long, value_name = "IMAGE")]
    pub pause_image: Option<String>,
    /// Hyperkube image (KKP ≤ v2.19 `hyperkube_image`). Current Seed CRDs have no such field; the
    /// server is asked and the change refused if it does not know it.
    #[arg(long, value_name = "IMAGE")]
    pub hyperkube_image: Option<String>,
    /// Remove a field: httpProxy, noProxy, insecureRegistries, registryMirrors, pauseImage,
    /// hyperkubeImage, containerdRegistryMirrors (snake_case and kebab-case spellings accepted); repeatable.
    #[arg(long, value_name = "FIELD", value_parser = NodeField::parse)]
    pub unset: Vec<NodeField>,

    /// Edit this local Seed manifest instead of the cluster: the edited manifest is printed (with
    /// --dry-run, the diff); the file is not rewritten and no cluster is contacted.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: Option<std::path::PathBuf>,

    /// Do not ask for confirmation.
    #[arg(short = 'y', long)]
    pub yes: bool,

    #[command(flatten)]
    pub kube: KubeArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// A node setting this command can change, by its current (camelCase) JSON name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeField {
    /// `httpProxy`.
    HttpProxy,
    /// `noProxy`.
    NoProxy,
    /// `insecureRegistries`.
    InsecureRegistries,
    /// `registryMirrors`.
    RegistryMirrors,
    /// `pauseImage`.
    PauseImage,
    /// `hyperkubeImage` (gone since KKP v2.20).
    HyperkubeImage,
    /// `containerdRegistryMirrors`.
    ContainerdRegistryMirrors,
}

impl NodeField {
    const ALL: [NodeField; 7] = [
        NodeField::HttpProxy,
        NodeField::NoProxy,
        NodeField::InsecureRegistries,
        NodeField::RegistryMirrors,
        NodeField::PauseImage,
        NodeField::HyperkubeImage,
        NodeField::ContainerdRegistryMirrors,
    ];

    /// The JSON key under `spec.datacenters.<dc>.node` in the current Seed CRD.
    pub fn json_name(self) -> &'static str {
        match self {
            NodeField::HttpProxy => "httpProxy",
            NodeField::NoProxy => "noProxy",
            NodeField::InsecureRegistries => "insecureRegistries",
            NodeField::RegistryMirrors => "registryMirrors",
            NodeField::PauseImage => "pauseImage",
            NodeField::HyperkubeImage => "hyperkubeImage",
            NodeField::ContainerdRegistryMirrors => "containerdRegistryMirrors",
        }
    }

    /// Accepts `httpProxy`, `http_proxy`, `http-proxy` (and singular `insecure-registry` etc.).
    pub fn parse(s: &str) -> Result<NodeField, String> {
        let key: String = s
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .collect::<String>()
            .to_ascii_lowercase();
        let key = key
            .strip_suffix('s')
            .unwrap_or(&key)
            .replace("registrie", "registry");
        NodeField::ALL
            .into_iter()
            .find(|f| {
                let name = f.json_name().to_ascii_lowercase();
                let name = name
                    .strip_suffix('s')
                    .unwrap_or(&name)
                    .replace("registrie", "registry");
                name == key
            })
            .ok_or_else(|| {
                format!(
                    "unknown field {s:?}; one of: {}",
                    NodeField::ALL.map(NodeField::json_name).join(", ")
                )
            })
    }
}

/// Why `kubectl kkp seedproxy` failed.
#[derive(Debug, thiserror::Error)]
pub enum SeedproxyError {
    /// The flags do not make sense together.
    #[error("{0}")]
    Usage(String),
    /// A flag value is malformed; nothing was sent.
    #[error("invalid --{flag} {value:?}: {reason}")]
    Invalid {
        /// The flag, without dashes.
        flag: &'static str,
        /// The value as given.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// The cluster said no, or could not be reached.
    #[error(transparent)]
    Kube(#[from] KubeError),
    /// NAME is neither a Seed nor a datacenter of one.
    #[error(
        "no Seed or datacenter named {name:?} in namespace {namespace:?} (Seeds: {}; datacenters: {})",
        none_if_empty(seeds),
        none_if_empty(datacenters)
    )]
    NotFound {
        /// The name asked for.
        name: String,
        /// The namespace searched.
        namespace: String,
        /// The Seeds that exist.
        seeds: Vec<String>,
        /// The datacenters that exist.
        datacenters: Vec<String>,
    },
    /// `--datacenter` names no datacenter of the Seed.
    #[error(
        "Seed {seed:?} has no datacenter {datacenter:?} (its datacenters: {})",
        none_if_empty(existing)
    )]
    DatacenterNotFound {
        /// The Seed.
        seed: String,
        /// The datacenter asked for.
        datacenter: String,
        /// The datacenters it has.
        existing: Vec<String>,
    },
    /// A datacenter name exists in several Seeds.
    #[error("datacenter {name:?} exists in several Seeds: {}; name the Seed and use --datacenter", candidates.join(", "))]
    Ambiguous {
        /// The name asked for.
        name: String,
        /// `seed/datacenter` for each match.
        candidates: Vec<String>,
    },
    /// The Seed has several datacenters and none was picked.
    #[error("Seed {seed:?} has {} datacenters ({}): pick one with --datacenter, or use --all-datacenters or --seed-default",
            datacenters.len(), datacenters.join(", "))]
    NeedDatacenter {
        /// The Seed.
        seed: String,
        /// Its datacenters.
        datacenters: Vec<String>,
    },
    /// The server's Seed CRD does not have a field we were asked to set.
    #[error("the Seed CRD on the server has no field {}{}; nothing was changed", fields.join(", "), hint)]
    UnknownField {
        /// Full JSON paths of the unknown fields.
        fields: Vec<String>,
        /// Why (e.g. the field was removed in some KKP version).
        hint: String,
    },
    /// The Seed changed between our read and our write, and we may not ask again.
    #[error(
        "Seed {namespace}/{name} was changed by someone else after it was read; nothing was changed. \
             Re-run to see the diff against the current object ({message})"
    )]
    Conflict {
        /// The Seed.
        name: String,
        /// Its namespace.
        namespace: String,
        /// The server's message.
        message: String,
    },
    /// No terminal to ask on, and no `--yes`.
    #[error(transparent)]
    Confirm(#[from] ConfirmError),
    /// The user answered no.
    #[error("aborted; nothing was changed")]
    Declined,
    /// A `-f` file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A `-f` file is not one Seed manifest.
    #[error("{}: {message}", path.display())]
    Manifest {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The object could not be rendered.
    #[error("rendering the Seed as {format}: {message}")]
    Render {
        /// yaml or json.
        format: &'static str,
        /// What went wrong.
        message: String,
    },
    /// Writing to stdout failed.
    #[error("writing output: {0}")]
    Output(#[source] std::io::Error),
}

fn none_if_empty(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

impl SeedproxyError {
    /// The process exit code: 2 for usage errors and a refused confirmation, else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            SeedproxyError::Usage(_) | SeedproxyError::Invalid { .. } | SeedproxyError::Confirm(_) => 2,
            _ => 1,
        }
    }
}

/// The changes asked for, validated: each field set to a JSON value, or removed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Edits {
    /// Fields to set, with their new values.
    pub set: Vec<(NodeField, Value)>,
    /// Fields to remove.
    pub unset: Vec<NodeField>,
}

impl Edits {
    /// True when no change was asked for.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.unset.is_empty()
    }

    /// Validates every flag value; nothing is sent to any server before this passes.
    pub fn from_args(args: &SeedproxyArgs) -> Result<Edits, SeedproxyError> {
        let mut set = Vec::new();
        if let Some(v) = &args.http_proxy {
            set.push((NodeField::HttpProxy, json!(validate_proxy_url(v)?)));
        }
        if let Some(v) = &args.no_proxy {
            set.push((NodeField::NoProxy, json!(validate_no_proxy(v)?)));
        }
        if !args.insecure_registries.is_empty() {
            let regs = args
                .insecure_registries
                .iter()
                .map(|r| validate_registry_host(r))
                .collect::<Result<Vec<_>, _>>()?;
            set.push((NodeField::InsecureRegistries, json!(dedup(regs))));
        }
        if !args.registry_mirrors.is_empty() {
            let mirrors = args
                .registry_mirrors
                .iter()
                .map(|m| validate_mirror_url(m))
                .collect::<Result<Vec<_>, _>>()?;
            set.push((NodeField::RegistryMirrors, json!(dedup(mirrors))));
        }
        if let Some(v) = &args.pause_image {
            set.push((NodeField::PauseImage, json!(validate_image("pause-image", v)?)));
        }
        if let Some(v) = &args.hyperkube_image {
            set.push((
                NodeField::HyperkubeImage,
                json!(validate_image("hyperkube-image", v)?),
            ));
        }
        let mut unset = args.unset.clone();
        unset.sort();
        unset.dedup();
        if let Some((f, _)) = set.iter().find(|(f, _)| unset.contains(f)) {
            return Err(SeedproxyError::Usage(format!(
                "{} is both set and --unset",
                f.json_name()
            )));
        }
        let edits = Edits { set, unset };
        if args.seed_default {
            let allowed = [NodeField::HttpProxy, NodeField::NoProxy];
            let other: Vec<_> = edits
                .set
                .iter()
                .map(|(f, _)| *f)
                .chain(edits.unset.iter().copied())
                .filter(|f| !allowed.contains(f))
                .map(NodeField::json_name)
                .collect();
            if !other.is_empty() {
                return Err(SeedproxyError::Usage(format!(
                    "--seed-default edits spec.proxySettings, which has only httpProxy and noProxy; \
                     not: {}",
                    other.join(", ")
                )));
            }
        }
        if args.name.is_none() && args.file.is_none() && !edits.is_empty() {
            return Err(SeedproxyError::Usage(
                "a Seed or datacenter NAME is required to change settings".into(),
            ));
        }
        if args.name.is_none()
            && args.file.is_none()
            && (args.datacenter.is_some() || args.all_datacenters || args.seed_default)
        {
            return Err(SeedproxyError::Usage(
                "--datacenter, --all-datacenters and --seed-default need a Seed NAME (or -f)".into(),
            ));
        }
        Ok(edits)
    }
}

fn dedup(items: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

fn invalid(flag: &'static str, value: &str, reason: impl Into<String>) -> SeedproxyError {
    SeedproxyError::Invalid {
        flag,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Checks `host`, `host:port`, `[v6]` or `[v6]:port` (no scheme, no path).
fn check_host_port(s: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or("unterminated IPv6 address")?;
        v6.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("{v6:?} is not an IPv6 address"))?;
        match after {
            "" => return Ok(()),
            a => ("", Some(a.strip_prefix(':').ok_or("expected :PORT after ]")?)),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if let Some(p) = port {
        match p.parse::<u16>() {
            Ok(n) if n > 0 && p.chars().all(|c| c.is_ascii_digit()) => {}
            _ => return Err(format!("port {p:?} is not a number from 1 to 65535")),
        }
    }
    if s.starts_with('[') {
        return Ok(());
    }
    if host.is_empty() {
        return Err("empty host".into());
    }
    if host.len() > 253 {
        return Err("host name longer than 253 characters".into());
    }
    for label in host.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("{host:?} is not a valid host name"));
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return Err(format!("{host:?} is not a valid host name"));
        }
    }
    Ok(())
}

/// Splits `scheme://authority/path` by hand: strict about what a proxy or mirror URL may hold.
fn split_url(s: &str) -> Result<(&str, &str, &str), String> {
    let (scheme, rest) = s
        .split_once("://")
        .ok_or("not a URL (expected http:// or https://)")?;
    if scheme != "http" && scheme != "https" {
        return Err(format!("scheme {scheme:?} is not http or https"));
    }
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    Ok((scheme, authority, path))
}

/// A proxy URL: `http[s]://[user[:pass]@]host[:port]`, no path, query or fragment.
pub fn validate_proxy_url(s: &str) -> Result<String, SeedproxyError> {
    let bad = |r: String| invalid("http-proxy", s, r);
    if s.chars().any(char::is_whitespace) {
        return Err(bad("contains whitespace".into()));
    }
    let (_, authority, path) = split_url(s).map_err(bad)?;
    if !path.is_empty() && path != "/" {
        return Err(bad(format!(
            "a proxy URL has no path, query or fragment ({path:?})"
        )));
    }
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    check_host_port(hostport).map_err(bad)?;
    Ok(s.trim_end_matches('/').to_string())
}

/// A registry as `HOST[:PORT]` — not a URL, no path.
pub fn validate_registry_host(s: &str) -> Result<String, SeedproxyError> {
    let s = s.trim();
    if s.contains("://") {
        return Err(invalid(
            "insecure-registry",
            s,
            "expected HOST[:PORT], not a URL (drop the scheme)",
        ));
    }
    if s.contains('/') {
        return Err(invalid(
            "insecure-registry",
            s,
            "expected HOST[:PORT], without a path",
        ));
    }
    check_host_port(s).map_err(|r| invalid("insecure-registry", s, r))?;
    Ok(s.to_string())
}

/// A registry mirror: an `http[s]://host[:port][/path]` URL.
pub fn validate_mirror_url(s: &str) -> Result<String, SeedproxyError> {
    let s = s.trim();
    let bad = |r: String| invalid("registry-mirror", s, r);
    if s.chars().any(char::is_whitespace) {
        return Err(bad("contains whitespace".into()));
    }
    let (_, authority, path) = split_url(s).map_err(bad)?;
    if authority.contains('@') {
        return Err(bad("credentials do not belong in a mirror URL".into()));
    }
    if path.contains(['?', '#']) {
        return Err(bad("a mirror URL has no query or fragment".into()));
    }
    check_host_port(authority).map_err(bad)?;
    Ok(s.to_string())
}

/// An image reference, kept as written (the node runtime resolves short names itself).
pub fn validate_image(flag: &'static str, s: &str) -> Result<String, SeedproxyError> {
    let s = s.trim();
    if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) || s.contains("://") {
        return Err(invalid(flag, s, "not an image reference"));
    }
    let image = ImageRef::parse(s).map_err(|e| invalid(flag, s, e.reason))?;
    check_host_port(&image.registry).map_err(|r| invalid(flag, s, r))?;
    let path_ok = image.repository.split('/').all(|c| {
        !c.is_empty()
            && c.chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
    });
    if !path_ok {
        return Err(invalid(flag, s, "invalid repository path"));
    }
    if let Some(t) = &image.tag
        && (t.is_empty()
            || t.len() > 128
            || !t.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)))
    {
        return Err(invalid(flag, s, format!("invalid tag {t:?}")));
    }
    if let Some(d) = &image.digest {
        let ok = d
            .strip_prefix("sha256:")
            .is_some_and(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()));
        if !ok {
            return Err(invalid(flag, s, format!("invalid digest {d:?}")));
        }
    }
    Ok(s.to_string())
}

/// A NO_PROXY list: host names, `.domain`/`*.domain`, IPs, CIDRs, optional `:port`; comma-separated.
pub fn validate_no_proxy(s: &str) -> Result<String, SeedproxyError> {
    let mut out = Vec::new();
    for entry in s.split(',').map(str::trim) {
        if entry.is_empty() {
            continue;
        }
        if entry.contains("://") {
            return Err(invalid(
                "no-proxy",
                s,
                format!("{entry:?}: entries are hosts, domains or CIDRs, not URLs"),
            ));
        }
        if entry == "*" {
            out.push(entry.to_string());
            continue;
        }
        let ok = if let Some((ip, bits)) = entry.split_once('/') {
            let max = match ip.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(_)) => 32,
                Ok(std::net::IpAddr::V6(_)) => 128,
                Err(_) => 0,
            };
            bits.parse::<u8>().is_ok_and(|b| max > 0 && b <= max)
        } else if entry.parse::<std::net::IpAddr>().is_ok() {
            true
        } else {
            let host = entry
                .strip_prefix("*.")
                .or_else(|| entry.strip_prefix('.'))
                .unwrap_or(entry);
            check_host_port(host).is_ok()
        };
        if !ok {
            return Err(invalid(
                "no-proxy",
                s,
                format!("{entry:?} is not a host, domain, IP or CIDR"),
            ));
        }
        out.push(entry.to_string());
    }
    if out.is_empty() {
        return Err(invalid(
            "no-proxy",
            s,
            "empty list (use --unset noProxy to remove it)",
        ));
    }
    Ok(out.join(","))
}

/// Which part of a Seed is edited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `spec.proxySettings`.
    SeedDefault,
    /// `spec.datacenters.<dc>.node` of these datacenters.
    Datacenters(Vec<String>),
}

/// The datacenter names of a Seed object, in their order.
pub fn datacenters(seed: &Value) -> Vec<String> {
    seed.pointer("/spec/datacenters")
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn seed_name(seed: &Value) -> String {
    crate::kube::object_name(seed)
}

/// The object with `edits` applied to `target`; the input is not changed.
pub fn apply_edits(seed: &Value, target: &Target, edits: &Edits) -> Value {
    let mut new = seed.clone();
    let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) else {
        return new;
    };
    let edit = |obj: &mut Map<String, Value>| {
        for (f, v) in &edits.set {
            obj.insert(f.json_name().to_string(), v.clone());
        }
        for f in &edits.unset {
            obj.remove(f.json_name());
        }
    };
    match target {
        Target::SeedDefault => {
            let present = spec.contains_key("proxySettings");
            let ps = spec.entry("proxySettings").or_insert_with(|| json!({}));
            if let Some(obj) = ps.as_object_mut() {
                edit(obj);
                if obj.is_empty() && !present {
                    spec.remove("proxySettings");
                }
            }
        }
        Target::Datacenters(dcs) => {
            for dc in dcs {
                let Some(d) = spec
                    .get_mut("datacenters")
                    .and_then(|d| d.get_mut(dc))
                    .and_then(Value::as_object_mut)
                else {
                    continue;
                };
                let present = d.contains_key("node");
                let node = d.entry("node").or_insert_with(|| json!({}));
                if let Some(obj) = node.as_object_mut() {
                    edit(obj);
                    if obj.is_empty() && !present {
                        d.remove("node");
                    }
                }
            }
        }
    }
    new
}

fn to_yaml(v: &Value) -> Result<String, SeedproxyError> {
    serde_saphyr::to_string(v).map_err(|e| SeedproxyError::Render {
        format: "yaml",
        message: e.to_string(),
    })
}

fn to_json(v: &Value) -> Result<String, SeedproxyError> {
    serde_json::to_string_pretty(v)
        .map(|s| s + "\n")
        .map_err(|e| SeedproxyError::Render {
            format: "json",
            message: e.to_string(),
        })
}

/// One row per datacenter (and per Seed-wide default) of the settings this command manages.
pub fn settings_table(seeds: &[Value]) -> String {
    let header = [
        "SEED",
        "DATACENTER",
        "HTTP PROXY",
        "NO PROXY",
        "INSECURE REGISTRIES",
        "REGISTRY MIRRORS",
        "PAUSE IMAGE",
    ];
    let cell = |v: Option<&Value>| -> String {
        match v {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Array(a)) if !a.is_empty() => a
                .iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join(","),
            _ => "<none>".into(),
        }
    };
    let mut rows = Vec::new();
    for seed in seeds {
        let name = seed_name(seed);
        if let Some(ps) = seed.pointer("/spec/proxySettings")
            && ps.as_object().is_some_and(|m| !m.is_empty())
        {
            rows.push(vec![
                name.clone(),
                "(seed default)".into(),
                cell(ps.get("httpProxy")),
                cell(ps.get("noProxy")),
                "<none>".into(),
                "<none>".into(),
                "<none>".into(),
            ]);
        }
        for dc in datacenters(seed) {
            let node = seed.pointer(&format!("/spec/datacenters/{}/node", escape(&dc)));
            let get = |k: &str| node.and_then(|n| n.get(k));
            rows.push(vec![
                name.clone(),
                dc.clone(),
                cell(get("httpProxy")),
                cell(get("noProxy")),
                cell(get("insecureRegistries")),
                cell(get("registryMirrors")),
                cell(get("pauseImage")),
            ]);
        }
    }
    crate::output::table(&header, &rows)
}

/// The settings as data, for `-o yaml|json`.
pub fn settings_data(seeds: &[Value]) -> Value {
    Value::Array(
        seeds
            .iter()
            .map(|seed| {
                let dcs: Map<String, Value> = datacenters(seed)
                    .into_iter()
                    .map(|dc| {
                        let node = seed
                            .pointer(&format!("/spec/datacenters/{}/node", escape(&dc)))
                            .cloned()
                            .unwrap_or_else(|| json!({}));
                        (dc, json!({ "node": node }))
                    })
                    .collect();
                json!({
                    "seed": seed_name(seed),
                    "proxySettings": seed.pointer("/spec/proxySettings").cloned().unwrap_or_else(|| json!({})),
                    "datacenters": dcs,
                })
            })
            .collect(),
    )
}

/// JSON-pointer escaping of one path segment.
fn escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// Seed reads and writes, with errors already in kubectl's words.
type Seeds<'a> = Objects<'a>;

/// The Seeds of the cluster's namespace.
pub fn seed_objects(cluster: &Cluster) -> Objects<'_> {
    crate::kube::kkp::seeds(cluster, FIELD_MANAGER)
}

/// Where the edited Seed came from, and what part of it is edited.
struct Resolved {
    seed: Value,
    target: Target,
}

async fn resolve(seeds: &Seeds<'_>, args: &SeedproxyArgs, name: &str) -> Result<Resolved, SeedproxyError> {
    match seeds.get(name).await {
        Ok(seed) => {
            let target = seed_target(&seed, args)?;
            Ok(Resolved { seed, target })
        }
        Err(KubeError::NotFound { .. }) => {
            let all = seeds.list().await?;
            let matches: Vec<&Value> = all
                .iter()
                .filter(|s| datacenters(s).iter().any(|d| d == name))
                .collect();
            match matches.as_slice() {
                [] => Err(SeedproxyError::NotFound {
                    name: name.to_string(),
                    namespace: seeds.cluster.namespace.clone(),
                    seeds: all.iter().map(seed_name).collect(),
                    datacenters: all.iter().flat_map(datacenters).collect(),
                }),
                [seed] => Ok(Resolved {
                    target: datacenter_target(seed, args, name)?,
                    seed: (*seed).clone(),
                }),
                several => Err(SeedproxyError::Ambiguous {
                    name: name.to_string(),
                    candidates: several
                        .iter()
                        .map(|s| format!("{}/{name}", seed_name(s)))
                        .collect(),
                }),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// The part of Seed `seed` that NAME (the Seed's own name) plus the flags select.
fn seed_target(seed: &Value, args: &SeedproxyArgs) -> Result<Target, SeedproxyError> {
    let name = seed_name(seed);
    let dcs = datacenters(seed);
    if args.seed_default {
        Ok(Target::SeedDefault)
    } else if let Some(dc) = &args.datacenter {
        if !dcs.contains(dc) {
            return Err(SeedproxyError::DatacenterNotFound {
                seed: name,
                datacenter: dc.clone(),
                existing: dcs,
            });
        }
        Ok(Target::Datacenters(vec![dc.clone()]))
    } else if args.all_datacenters || dcs.len() == 1 {
        Ok(Target::Datacenters(dcs))
    } else {
        Err(SeedproxyError::NeedDatacenter {
            seed: name,
            datacenters: dcs,
        })
    }
}

/// NAME is datacenter `dc` of Seed `seed`: the flags may not pick anything else.
fn datacenter_target(seed: &Value, args: &SeedproxyArgs, dc: &str) -> Result<Target, SeedproxyError> {
    if args.seed_default || args.all_datacenters {
        return Err(SeedproxyError::Usage(format!(
            "{dc:?} is a datacenter of Seed {:?}; --seed-default and --all-datacenters need the Seed's name",
            seed_name(seed)
        )));
    }
    if args.datacenter.as_deref().is_some_and(|d| d != dc) {
        return Err(SeedproxyError::Usage(format!(
            "{dc:?} is a datacenter; --datacenter names another one"
        )));
    }
    Ok(Target::Datacenters(vec![dc.to_string()]))
}

/// `-f FILE`: edits a local Seed manifest and prints the result (or, with `--dry-run`, the diff);
/// the file itself is never rewritten and no cluster is contacted.
pub fn edit_file(
    args: &SeedproxyArgs,
    edits: &Edits,
    path: &std::path::Path,
    out: &mut dyn Write,
) -> Result<u8, SeedproxyError> {
    let text = std::fs::read_to_string(path).map_err(|source| SeedproxyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |message: String| SeedproxyError::Manifest {
        path: path.to_path_buf(),
        message,
    };
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).map_err(|e| bad(e.to_string()))?;
    let mut seeds: Vec<Value> = docs
        .into_iter()
        .filter(|d| d.get("kind").and_then(Value::as_str) == Some("Seed"))
        .collect();
    let seed = match seeds.len() {
        1 => seeds.remove(0),
        0 => return Err(bad("no Seed object in the file".into())),
        n => {
            return Err(bad(format!(
                "{n} Seed objects in the file; -f takes a file with one Seed"
            )));
        }
    };
    if seed.get("apiVersion").and_then(Value::as_str) != Some("kubermatic.k8c.io/v1") {
        return Err(bad(format!(
            "apiVersion {} is not kubermatic.k8c.io/v1 (KKP ≥ v2.20); the field names here are for that API",
            seed.get("apiVersion").unwrap_or(&Value::Null)
        )));
    }
    let target = match args.name.as_deref() {
        None => seed_target(&seed, args)?,
        Some(n) if n == seed_name(&seed) => seed_target(&seed, args)?,
        Some(n) if datacenters(&seed).iter().any(|d| d == n) => datacenter_target(&seed, args, n)?,
        Some(n) => {
            return Err(SeedproxyError::NotFound {
                name: n.to_string(),
                namespace: format!("file {}", path.display()),
                seeds: vec![seed_name(&seed)],
                datacenters: datacenters(&seed),
            });
        }
    };
    let write = |out: &mut dyn Write, t: &str| out.write_all(t.as_bytes()).map_err(SeedproxyError::Output);
    if edits.is_empty() {
        let data = settings_data(std::slice::from_ref(&seed));
        let t = match args.common.output {
            Some(OutputFormat::Yaml) => to_yaml(&data)?,
            Some(OutputFormat::Json) => to_json(&data)?,
            _ => settings_table(std::slice::from_ref(&seed)),
        };
        return write(out, &t).map(|_| 0);
    }
    if edits.set.iter().any(|(f, _)| *f == NodeField::HyperkubeImage) {
        let fields = vec![format!(
            "spec.datacenters.*.node.{}",
            NodeField::HyperkubeImage.json_name()
        )];
        let hint = field_hint(&fields);
        return Err(SeedproxyError::UnknownField { fields, hint });
    }
    let new = apply_edits(&seed, &target, edits);
    if new == seed {
        eprintln!(
            "{} already has these settings; nothing to change.",
            path.display()
        );
    }
    match (args.common.dry_run, args.common.output) {
        (Some(DryRun::Client), _) => {
            let d = diff::unified(
                &to_yaml(&seed)?,
                &to_yaml(&new)?,
                &path.display().to_string(),
                &format!("{} (edited)", path.display()),
                diff::stdout_wants_color(),
            );
            write(out, &d)?;
        }
        (_, Some(OutputFormat::Json)) => write(out, &to_json(&new)?)?,
        _ => write(out, &to_yaml(&new)?)?,
    }
    Ok(0)
}

/// What a field removed from KKP is, for a clear message when the server does not know it.
fn field_hint(fields: &[String]) -> String {
    if fields.iter().any(|f| f.ends_with("hyperkubeImage")) {
        " (hyperkubeImage was removed in KKP v2.20 together with Container Linux support; kubelet \
         no longer runs from a hyperkube image, so there is nothing to set)"
            .into()
    } else if fields.iter().any(|f| f.contains('_')) {
        " (KKP ≥ v2.20 uses camelCase names: httpProxy, noProxy, insecureRegistries, registryMirrors, \
         pauseImage)"
            .into()
    } else {
        String::new()
    }
}

/// Recognises the API server's strict-decoding refusal and names the fields.
fn unknown_fields(err: &KubeError) -> Option<Vec<String>> {
    let KubeError::Api { code, message, .. } = err else {
        return None;
    };
    if !matches!(code, 400 | 422 | 500) {
        return None;
    }
    let mut fields = Vec::new();
    let mut rest = message.as_str();
    while let Some(i) = rest.find("unknown field \"") {
        rest = &rest[i + "unknown field \"".len()..];
        if let Some(end) = rest.find('"') {
            fields.push(rest[..end].trim_start_matches('.').to_string());
            rest = &rest[end..];
        }
    }
    // The structured-merge wording: `.spec.x.y: field not declared in schema`.
    for part in message.split([',', '(', ')', '[', ']']) {
        if let Some(path) = part.trim().strip_suffix(": field not declared in schema")
            && let Some(path) = path.split_whitespace().last()
        {
            fields.push(path.trim_start_matches('.').to_string());
        }
    }
    (!fields.is_empty()).then_some(fields)
}

/// Paths of values we set that the server's answer does not hold (pruned despite Strict).
fn dropped_fields(sent: &Value, got: &Value, target: &Target, edits: &Edits) -> Vec<String> {
    let bases: Vec<String> = match target {
        Target::SeedDefault => vec!["/spec/proxySettings".into()],
        Target::Datacenters(dcs) => dcs
            .iter()
            .map(|d| format!("/spec/datacenters/{}/node", escape(d)))
            .collect(),
    };
    let mut out = Vec::new();
    for base in &bases {
        for (f, _) in &edits.set {
            let p = format!("{base}/{}", f.json_name());
            if sent.pointer(&p).is_some() && got.pointer(&p).is_none() {
                out.push(p.trim_start_matches('/').replace('/', "."));
            }
        }
    }
    out
}

/// Runs `kubectl kkp seedproxy`; returns the exit code of the successful paths.
pub async fn run(args: &SeedproxyArgs) -> Result<u8, SeedproxyError> {
    let edits = Edits::from_args(args)?;
    if let Some(path) = &args.file {
        if args.common.dry_run == Some(DryRun::Server) {
            return Err(SeedproxyError::Usage(
                "--dry-run=server needs a cluster; it does not go with -f".into(),
            ));
        }
        return edit_file(args, &edits, path, &mut std::io::stdout());
    }
    let cluster = crate::kube::connect(&args.kube).await?;
    let mut stdout = std::io::stdout();
    execute(args, &edits, &cluster, &mut stdout).await
}

/// Everything after validation and connecting: list, or read–diff–confirm–patch.
pub async fn execute(
    args: &SeedproxyArgs,
    edits: &Edits,
    cluster: &Cluster,
    out: &mut dyn Write,
) -> Result<u8, SeedproxyError> {
    let seeds = seed_objects(cluster);
    let format = args.common.output;
    let emit = |out: &mut dyn Write, text: &str| -> Result<(), SeedproxyError> {
        match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(SeedproxyError::Output(e)),
            _ => Ok(()),
        }
    };
    let show = |out: &mut dyn Write, list: &[Value]| -> Result<(), SeedproxyError> {
        let text = match format {
            Some(OutputFormat::Yaml) => to_yaml(&settings_data(list))?,
            Some(OutputFormat::Json) => to_json(&settings_data(list))?,
            _ => settings_table(list),
        };
        emit(out, &text)
    };

    let Some(name) = args.name.as_deref() else {
        let all = seeds.list().await?;
        if all.is_empty() {
            eprintln!("No Seeds found in {} namespace.", cluster.namespace);
            return Ok(0);
        }
        return show(out, &all).map(|_| 0);
    };

    let Resolved { mut seed, target } = resolve(&seeds, args, name).await?;
    let seed_id = seed_name(&seed);
    if edits.is_empty() {
        return show(out, std::slice::from_ref(&seed)).map(|_| 0);
    }
    let dry = args.common.dry_run.unwrap_or_default();
    let color = diff::stdout_wants_color();
    let action = format!("patch Seed {}/{seed_id}", cluster.namespace);
    if edits.set.iter().any(|(f, _)| *f == NodeField::HyperkubeImage) && dry == DryRun::Client {
        eprintln!(
            "warning: Seed CRDs since KKP v2.20 have no hyperkubeImage field; the server would refuse it"
        );
    }

    for attempt in 1.. {
        let new = apply_edits(&seed, &target, edits);
        let Some(patch) = guarded_merge_patch(&seed, &new) else {
            eprintln!(
                "Seed {}/{seed_id} already has these settings; nothing to change.",
                cluster.namespace
            );
            return Ok(0);
        };
        tracing::debug!(%patch, "merge patch");

        let preview = match dry {
            DryRun::Client => Ok(new.clone()),
            DryRun::None | DryRun::Server => seeds.patch(&seed_id, &patch, true).await,
        };
        let preview = match preview {
            Ok(p) => p,
            Err(e) => {
                retry_or_fail(e, &seed_id, cluster, args.yes || dry != DryRun::None)?;
                seed = reread(&seeds, &seed_id, attempt).await?;
                continue;
            }
        };
        if dry != DryRun::Client {
            let dropped = dropped_fields(&new, &preview, &target, edits);
            if !dropped.is_empty() {
                let hint = field_hint(&dropped);
                return Err(SeedproxyError::UnknownField {
                    fields: dropped,
                    hint,
                });
            }
        }

        let live_text = to_yaml(&for_display(&seed))?;
        let new_text = to_yaml(&for_display(&preview))?;
        let label = format!("{GROUP}/v1.Seed.{}.{seed_id}", cluster.namespace);
        match (dry, format) {
            (DryRun::Client | DryRun::Server, Some(OutputFormat::Yaml)) => emit(out, &new_text)?,
            (DryRun::Client | DryRun::Server, Some(OutputFormat::Json)) => {
                emit(out, &to_json(&for_display(&preview))?)?
            }
            _ => emit(
                out,
                &diff::unified(
                    &live_text,
                    &new_text,
                    &format!("LIVE/{label}"),
                    &format!("MERGED/{label}"),
                    color,
                ),
            )?,
        }
        match dry {
            DryRun::Client => {
                eprintln!("seed.{GROUP}/{seed_id} patched (dry run)");
                return Ok(0);
            }
            DryRun::Server => {
                emit(out, &format!("seed.{GROUP}/{seed_id} patched (server dry run)\n"))?;
                return Ok(0);
            }
            DryRun::None => {}
        }

        let question = format!("Apply this change to Seed {}/{seed_id}?", cluster.namespace);
        if !diff::confirm(&question, &action, args.yes)? {
            return Err(SeedproxyError::Declined);
        }
        match seeds.patch(&seed_id, &patch, false).await {
            Ok(_) => {
                emit(out, &format!("seed.{GROUP}/{seed_id} patched\n"))?;
                return Ok(0);
            }
            Err(e) => {
                retry_or_fail(e, &seed_id, cluster, args.yes)?;
                seed = reread(&seeds, &seed_id, attempt).await?;
            }
        }
    }
    unreachable!("the loop returns")
}

/// Sorts a failed PATCH: `Ok` means "a conflict, re-read and ask again". Strict-decoding refusals
/// become [`SeedproxyError::UnknownField`]; a conflict is fatal when we may not ask again (`final_`).
fn retry_or_fail(err: KubeError, seed: &str, cluster: &Cluster, final_: bool) -> Result<(), SeedproxyError> {
    if let Some(fields) = unknown_fields(&err) {
        let hint = field_hint(&fields);
        return Err(SeedproxyError::UnknownField { fields, hint });
    }
    match err {
        KubeError::Conflict { message } if final_ => Err(SeedproxyError::Conflict {
            name: seed.to_string(),
            namespace: cluster.namespace.clone(),
            message,
        }),
        KubeError::Conflict { .. } => {
            eprintln!(
                "Seed {}/{seed} was changed by someone else meanwhile; re-reading it.",
                cluster.namespace
            );
            Ok(())
        }
        other => Err(other.into()),
    }
}

async fn reread(seeds: &Seeds<'_>, name: &str, attempt: u32) -> Result<Value, SeedproxyError> {
    if attempt >= crate::kube::MAX_ATTEMPTS {
        return Err(SeedproxyError::Conflict {
            name: name.to_string(),
            namespace: seeds.cluster.namespace.clone(),
            message: format!("still changing after {attempt} attempts"),
        });
    }
    Ok(seeds.get(name).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::mock_cluster;
    use http::{Request, Response};
    use kube::client::Body;
    use tower_test::mock::Handle;

    const SEEDS: &str = "/apis/kubermatic.k8c.io/v1/namespaces/kubermatic/seeds";

    fn seed(dcs: &[&str]) -> Value {
        let datacenters: Map<String, Value> = dcs
            .iter()
            .map(|d| (d.to_string(), json!({"spec": {"fake": {}}})))
            .collect();
        json!({"apiVersion": "kubermatic.k8c.io/v1", "kind": "Seed",
               "metadata": {"name": "hamburg", "namespace": "kubermatic", "resourceVersion": "7"},
               "spec": {"datacenters": datacenters}})
    }

    /// Takes the next request, checks method, URI and content type, answers, returns the JSON body.
    async fn expect(
        handle: &mut Handle<Request<Body>, Response<Body>>,
        method: &str,
        uri: &str,
        content_type: Option<&str>,
        code: u16,
        reply: Value,
    ) -> Option<Value> {
        let (req, send) = handle.next_request().await.expect("a request");
        assert_eq!(req.method().as_str(), method);
        assert_eq!(req.uri().to_string(), uri);
        assert_eq!(
            req.headers().get("content-type").and_then(|v| v.to_str().ok()),
            content_type
        );
        let body = req.into_body().collect_bytes().await.expect("body");
        send.send_response(
            Response::builder()
                .status(code)
                .body(Body::from(serde_json::to_vec(&reply).expect("json")))
                .expect("response"),
        );
        serde_json::from_slice(&body).ok()
    }

    fn args(name: &str, extra: impl FnOnce(&mut SeedproxyArgs)) -> SeedproxyArgs {
        let mut a = SeedproxyArgs {
            name: Some(name.into()),
            yes: true,
            ..Default::default()
        };
        extra(&mut a);
        a
    }

    #[tokio::test]
    async fn a_write_is_a_strict_dry_run_then_the_same_guarded_merge_patch() {
        let (cluster, mut handle) = mock_cluster();
        let args = args("hamburg", |a| {
            a.http_proxy = Some("http://proxy.corp:3128".into());
            a.insecure_registries = vec!["registry.corp:5000".into()];
        });
        let edits = Edits::from_args(&args).unwrap();
        let server = tokio::spawn(async move {
            let live = seed(&["hamburg-1"]);
            let mut patched = live.clone();
            patched["spec"]["datacenters"]["hamburg-1"]["node"] = json!({
                "httpProxy": "http://proxy.corp:3128", "insecureRegistries": ["registry.corp:5000"]});
            let want = json!({
                "spec": {"datacenters": {"hamburg-1": {"node": {
                    "httpProxy": "http://proxy.corp:3128", "insecureRegistries": ["registry.corp:5000"]}}}},
                "metadata": {"resourceVersion": "7"}});
            assert_eq!(
                expect(&mut handle, "GET", &format!("{SEEDS}/hamburg"), None, 200, live).await,
                None
            );
            let merge = Some("application/merge-patch+json");
            let dry = expect(
                &mut handle,
                "PATCH",
                &format!(
                    "{SEEDS}/hamburg?&dryRun=All&fieldManager=kubectl-kkp-seedproxy&fieldValidation=Strict"
                ),
                merge,
                200,
                patched.clone(),
            )
            .await;
            assert_eq!(dry.as_ref(), Some(&want));
            let real = expect(
                &mut handle,
                "PATCH",
                &format!("{SEEDS}/hamburg?&fieldManager=kubectl-kkp-seedproxy&fieldValidation=Strict"),
                merge,
                200,
                patched,
            )
            .await;
            assert_eq!(real.as_ref(), Some(&want));
        });
        let mut out = Vec::new();
        let code = execute(&args, &edits, &cluster, &mut out).await.unwrap();
        server.await.unwrap();
        assert_eq!(code, 0);
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains("+      node:\n+        httpProxy: http://proxy.corp:3128\n"),
            "{out}"
        );
        assert!(out.ends_with("seed.kubermatic.k8c.io/hamburg patched\n"), "{out}");
    }

    #[tokio::test]
    async fn a_conflict_with_yes_fails_and_sends_nothing_more() {
        let (cluster, mut handle) = mock_cluster();
        let args = args("hamburg", |a| a.pause_image = Some("reg.corp/pause:3.10".into()));
        let edits = Edits::from_args(&args).unwrap();
        let server = tokio::spawn(async move {
            expect(
                &mut handle,
                "GET",
                &format!("{SEEDS}/hamburg"),
                None,
                200,
                seed(&["hh"]),
            )
            .await;
            let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 409,
                                "reason": "Conflict", "message": "the object has been modified"});
            expect(
                &mut handle,
                "PATCH",
                &format!(
                    "{SEEDS}/hamburg?&dryRun=All&fieldManager=kubectl-kkp-seedproxy&fieldValidation=Strict"
                ),
                Some("application/merge-patch+json"),
                409,
                status,
            )
            .await;
            handle
        });
        let err = execute(&args, &edits, &cluster, &mut Vec::new())
            .await
            .unwrap_err();
        assert!(matches!(err, SeedproxyError::Conflict { .. }), "{err}");
        let mut handle = server.await.unwrap();
        drop(cluster);
        assert!(
            handle.next_request().await.is_none(),
            "no request after the conflict"
        );
    }

    #[tokio::test]
    async fn a_datacenter_name_is_looked_up_in_the_list_after_a_404() {
        let (cluster, mut handle) = mock_cluster();
        let args = args("hamburg-1", |a| {
            a.common.dry_run = Some(DryRun::Client);
            a.pause_image = Some("reg.corp/pause:3.10".into());
        });
        let edits = Edits::from_args(&args).unwrap();
        let server = tokio::spawn(async move {
            let nf = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
                            "reason": "NotFound", "message": "seeds.kubermatic.k8c.io \"hamburg-1\" not found"});
            expect(&mut handle, "GET", &format!("{SEEDS}/hamburg-1"), None, 404, nf).await;
            let list = json!({"apiVersion": "kubermatic.k8c.io/v1", "kind": "SeedList",
                              "metadata": {"resourceVersion": "9"}, "items": [seed(&["hamburg-1"])]});
            expect(&mut handle, "GET", &format!("{SEEDS}?"), None, 200, list).await;
            handle
        });
        let mut out = Vec::new();
        assert_eq!(execute(&args, &edits, &cluster, &mut out).await.unwrap(), 0);
        let mut handle = server.await.unwrap();
        drop(cluster);
        assert!(
            handle.next_request().await.is_none(),
            "client dry run writes nothing"
        );
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains("+        pauseImage: reg.corp/pause:3.10\n"),
            "{out}"
        );
    }

    #[test]
    fn strict_decoding_refusals_name_their_fields() {
        let api = |code, message: &str| KubeError::Api {
            code,
            reason: "BadRequest".into(),
            message: message.into(),
        };
        assert_eq!(
            unknown_fields(&api(
                400,
                "strict decoding error: unknown field \"spec.datacenters.a.node.hyperkubeImage\", unknown field \"spec.x\""
            )),
            Some(vec![
                "spec.datacenters.a.node.hyperkubeImage".into(),
                "spec.x".into()
            ])
        );
        assert_eq!(
            unknown_fields(&api(
                400,
                "failed to create typed patch object (kubermatic/hamburg; kubermatic.k8c.io/v1, \
                 Kind=Seed): .spec.datacenters.a.node.hyperkubeImage: field not declared in schema"
            )),
            Some(vec!["spec.datacenters.a.node.hyperkubeImage".into()])
        );
        assert_eq!(unknown_fields(&api(422, "spec.x: Invalid value")), None);
        let hint = field_hint(&["spec.datacenters.a.node.hyperkubeImage".into()]);
        assert!(hint.contains("removed in KKP v2.20"), "{hint}");
    }

    #[test]
    fn unset_of_an_absent_node_changes_nothing() {
        let s = seed(&["a"]);
        let edits = Edits {
            set: vec![],
            unset: vec![NodeField::PauseImage],
        };
        assert_eq!(apply_edits(&s, &Target::Datacenters(vec!["a".into()]), &edits), s);
        assert_eq!(apply_edits(&s, &Target::SeedDefault, &edits), s);
    }

    #[test]
    fn field_names_in_every_spelling() {
        for s in ["httpProxy", "http_proxy", "http-proxy", "HTTP_PROXY"] {
            assert_eq!(NodeField::parse(s), Ok(NodeField::HttpProxy));
        }
        for s in ["insecureRegistries", "insecure_registries", "insecure-registry"] {
            assert_eq!(NodeField::parse(s), Ok(NodeField::InsecureRegistries));
        }
        assert_eq!(NodeField::parse("hyperkube_image"), Ok(NodeField::HyperkubeImage));
        assert!(NodeField::parse("proxy").is_err());
    }

    #[test]
    fn validators_accept_good_and_refuse_bad_values() {
        assert!(validate_proxy_url("http://proxy.corp:3128").is_ok());
        assert!(validate_proxy_url("https://u:p@10.0.0.1:8443/").is_ok());
        assert!(validate_proxy_url("http://[fd00::1]:3128").is_ok());
        for bad in [
            "proxy.corp:3128",
            "ftp://p",
            "http://",
            "http://p:0",
            "http://p/x",
            "http://p?q",
        ] {
            assert!(validate_proxy_url(bad).is_err(), "{bad}");
        }
        assert!(validate_registry_host("registry.corp:5000").is_ok());
        assert!(validate_registry_host("[::1]:5000").is_ok());
        for bad in ["http://r", "r/path", "r:", "-r.corp", "r..corp"] {
            assert!(validate_registry_host(bad).is_err(), "{bad}");
        }
        assert!(validate_mirror_url("https://mirror.corp/v2").is_ok());
        assert!(validate_mirror_url("mirror.corp").is_err());
        assert!(validate_image("pause-image", "registry.corp:5000/pause:3.10").is_ok());
        assert!(
            validate_image(
                "pause-image",
                "registry.k8s.io/pause@sha256:ee6521f290b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a"
            )
            .is_ok()
        );
        for bad in [
            "",
            "Reg/Pause",
            "reg.corp/pause:bad tag",
            "reg.corp/pause@sha256:12",
            "http://r/p",
        ] {
            assert!(validate_image("pause-image", bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            validate_no_proxy(" 10.0.0.0/8, .corp ,*.svc,localhost,fd00::/8,").unwrap(),
            "10.0.0.0/8,.corp,*.svc,localhost,fd00::/8"
        );
        for bad in ["10.0.0.0/33", "http://x", "a b", ","] {
            assert!(validate_no_proxy(bad).is_err(), "{bad:?}");
        }
    }
}
