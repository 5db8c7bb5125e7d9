//! `--binaries DIR`: the files a worker node downloads while it is provisioned (kubelet, kubeadm,
//! kubectl, crictl, CNI plugins, each with its `.sha256`), written below DIR at the URL path the node
//! requests, so one web server answering for `dl.k8s.io` and `github.com` serves nodes unchanged.
//!
//! Which files: the Kubernetes versions of the plan × `--binaries-arch`, and what the
//! operating-system-manager (OSM) of the selected KKP release puts in its OperatingSystemProfiles' download
//! script (the embedded `catalog/node-binaries.yaml`, keyed by OSM version; the OSM version is read from
//! the release catalog's `operating-system-manager` image). Every file is checked against upstream's
//! `.sha256` before it is renamed into place; a file whose `.sha256` beside it still matches is not
//! downloaded again. Knows HTTP and files, never registries or charts.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use clap::Args;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::cli::OutputFormat;

mod carry;
pub use carry::{Carry, carried_count, run_unpack, run_verify_unpacked};

/// The embedded OSM facts.
const FACTS: &str = include_str!("../catalog/node-binaries.yaml");
/// Architectures the OSPs' download script knows (`uname -m` x86_64 / aarch64).
pub const ARCHES: &[&str] = &["amd64", "arm64"];
/// Largest `.sha256` file read.
const MAX_CHECKSUM_FILE: usize = 4096;
/// Marks our temporary files: `.<name>.kkp-partial-XXXXXX` beside the final file.
const PARTIAL: &str = ".kkp-partial-";
/// Attempts per file for connection trouble and 408/429/5xx answers.
const ATTEMPTS: u32 = 4;

/// Flags of `kubectl kkp mirror` for node binaries.
#[derive(Debug, Clone, Default, Args)]
pub struct BinariesArgs {
    /// Also write the files worker nodes download (kubelet, kubeadm, kubectl, crictl, CNI plugins and
    /// their .sha256) below DIR, at the URL paths nodes request; without REGISTRY, only these.
    #[arg(long = "binaries", value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Node architectures, comma-separated or repeatable [default: amd64,arm64].
    #[arg(long = "binaries-arch", value_name = "ARCH", value_delimiter = ',')]
    pub arch: Vec<String>,
    /// Download files of HOST from URL instead (an artifact proxy), e.g.
    /// dl.k8s.io=https://artifactory.corp/dl-k8s; repeatable. --ca-file and --insecure-registry apply
    /// to URL's host, HTTPS_PROXY/NO_PROXY to every download.
    #[arg(long = "binaries-source", value_name = "HOST=URL")]
    pub sources: Vec<String>,
}

/// Why node binaries could not be planned, downloaded or checked.
#[derive(Debug, thiserror::Error)]
pub enum BinariesError {
    /// A flag value is malformed.
    #[error("{0}")]
    Usage(String),
    /// The Kubernetes versions could not be determined.
    #[error(transparent)]
    Kkp(#[from] crate::discover::kkp::KkpError),
    /// The embedded data has no entry for the release's OSM, or is broken.
    #[error("node binaries: {0}")]
    Facts(String),
    /// A file below DIR could not be written or read.
    #[error("{path}: {detail}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// DIR cannot be made or written.
    #[error("--binaries {}: cannot write there: {detail}", dir.display())]
    NotWritable {
        /// DIR.
        dir: PathBuf,
        /// The I/O error.
        detail: String,
    },
    /// The async runtime could not be started.
    #[error("starting the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// Printing failed.
    #[error("writing output: {0}")]
    Output(#[source] std::io::Error),
}

impl BinariesError {
    /// True for errors in what the user typed (exit code 2).
    pub fn is_usage(&self) -> bool {
        match self {
            BinariesError::Usage(_) => true,
            BinariesError::Kkp(e) => e.is_usage(),
            _ => false,
        }
    }
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> BinariesError {
    BinariesError::Io {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

// ---------------------------------------------------------------------------------------- facts

/// What the OSPs of one OSM release make a node download.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OsmRelease {
    /// The OSM tag (`v1.11.3`).
    pub version: String,
    /// KKP tags that ship it.
    pub shipped_by: Vec<String>,
    /// CNI plugins version → the default OSPs whose script downloads it.
    pub cni: BTreeMap<String, Vec<String>>,
    /// The `semverCompare` chain, first match wins.
    pub crictl: Vec<CrictlRule>,
    /// The chain's `else`.
    pub crictl_fallback: String,
}

/// One `semverCompare WHEN .KubeVersion` → `CRI_TOOLS_RELEASE=RELEASE` branch.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrictlRule {
    /// The constraint (`~1.33.0`).
    pub when: String,
    /// The cri-tools release (`v1.33.0`).
    pub release: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Facts {
    osm: Vec<OsmRelease>,
}

fn facts() -> Result<Vec<OsmRelease>, BinariesError> {
    let facts: Facts = serde_saphyr::from_str(FACTS)
        .map_err(|e| BinariesError::Facts(format!("catalog/node-binaries.yaml: {e}")))?;
    for r in &facts.osm {
        if let Some(bad) = r
            .crictl
            .iter()
            .find(|c| crate::gotmpl::Constraint::parse(&c.when).is_none())
        {
            return Err(BinariesError::Facts(format!(
                "OSM {}: crictl rule {:?} is not a constraint",
                r.version, bad.when
            )));
        }
    }
    Ok(facts.osm)
}

/// The embedded facts for OSM `version`; an unknown version is an error listing the known ones.
pub fn osm_release(version: &str) -> Result<OsmRelease, BinariesError> {
    let all = facts()?;
    let known: Vec<String> = all.iter().map(|r| r.version.clone()).collect();
    all.into_iter().find(|r| r.version == version).ok_or_else(|| {
        BinariesError::Facts(format!(
            "no node-binary facts for operating-system-manager {version} (known: {}); scripts/check-node-binaries.sh extracts them",
            known.join(", ")
        ))
    })
}

impl OsmRelease {
    /// The cri-tools release a node of Kubernetes `v` downloads, and the rule that chose it.
    pub fn crictl_for(&self, v: &semver::Version) -> (&str, String) {
        for rule in &self.crictl {
            if crate::gotmpl::Constraint::parse(&rule.when).is_some_and(|c| c.check(v)) {
                return (&rule.release, format!("semverCompare {:?}", rule.when));
            }
        }
        (&self.crictl_fallback, "the fallback".into())
    }
}

// ----------------------------------------------------------------------------------------- plan

/// One file a node downloads, with its checksum file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BinaryFile {
    /// The URL the node requests.
    pub url: String,
    /// Where it is written, below DIR (the URL's path).
    pub path: String,
    /// The upstream checksum file's URL (`url` + `.sha256`).
    pub checksum_url: String,
    /// `kubernetes`, `crictl` or `cni`.
    pub kind: String,
    /// The version of what is downloaded (Kubernetes, cri-tools or CNI plugins).
    pub version: String,
    /// `amd64` or `arm64`.
    pub arch: String,
    /// Why a node needs it: which Kubernetes versions or OSPs, per the OSM release.
    pub why: String,
}

impl BinaryFile {
    /// The checksum file's path below DIR.
    pub fn checksum_path(&self) -> String {
        format!("{}.sha256", self.path)
    }
}

/// Every file for the plan's Kubernetes versions and architectures.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BinaryPlan {
    /// The OSM release whose OSPs were read.
    pub osm_version: String,
    /// The files, Kubernetes first, then crictl, then CNI.
    pub files: Vec<BinaryFile>,
    /// `v<K>` directories that also get a `release/v<K>` link (the layout of KKP's mirror-binaries).
    #[serde(skip)]
    pub kube_dirs: Vec<String>,
}

/// Plans the files for Kubernetes `versions` on `arches` as OSM `osm` provisions them.
pub fn plan(versions: &[semver::Version], osm: &OsmRelease, arches: &[String]) -> BinaryPlan {
    let mut files = Vec::new();
    let mut kube_dirs = Vec::new();
    for v in versions {
        kube_dirs.push(format!("v{v}"));
        for arch in arches {
            for bin in ["kubelet", "kubeadm", "kubectl"] {
                let path = format!("v{v}/bin/linux/{arch}/{bin}");
                files.push(file(
                    "https://dl.k8s.io",
                    path,
                    "kubernetes",
                    format!("v{v}"),
                    arch,
                    format!("Kubernetes {v}, every OSP"),
                ));
            }
        }
    }
    // crictl: one file per release × arch, naming every Kubernetes version that selects it.
    let mut crictl: BTreeMap<&str, (Vec<String>, std::collections::BTreeSet<String>)> = BTreeMap::new();
    for v in versions {
        let (release, rule) = osm.crictl_for(v);
        let entry = crictl.entry(release).or_default();
        entry.0.push(v.to_string());
        entry.1.insert(rule);
    }
    let mut releases: Vec<_> = crictl.into_iter().collect();
    releases.sort_by_key(|(r, _)| crate::gotmpl::parse_version(r));
    for (release, (kube, rules)) in releases {
        for arch in arches {
            files.push(file(
                "https://github.com",
                format!("kubernetes-sigs/cri-tools/releases/download/{release}/crictl-{release}-linux-{arch}.tar.gz"),
                "crictl",
                release.to_string(),
                arch,
                format!(
                    "Kubernetes {} (OSM {}: {})",
                    kube.join(", "),
                    osm.version,
                    rules.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    let mut cni: Vec<_> = osm.cni.iter().collect();
    cni.sort_by_key(|(n, _)| std::cmp::Reverse(crate::gotmpl::parse_version(n)));
    for (n, osps) in cni {
        for arch in arches {
            files.push(file(
                "https://github.com",
                format!("containernetworking/plugins/releases/download/{n}/cni-plugins-linux-{arch}-{n}.tgz"),
                "cni",
                n.clone(),
                arch,
                format!("{} (OSM {})", osps.join(", "), osm.version),
            ));
        }
    }
    BinaryPlan {
        osm_version: osm.version.clone(),
        files,
        kube_dirs,
    }
}

fn file(
    base: &str,
    path: String,
    kind: &'static str,
    version: String,
    arch: &str,
    why: String,
) -> BinaryFile {
    let url = format!("{base}/{path}");
    BinaryFile {
        checksum_url: format!("{url}.sha256"),
        url,
        path,
        kind: kind.to_string(),
        version,
        arch: arch.to_string(),
        why,
    }
}

/// Where the Kubernetes versions and the OSM version come from: the mirror's KKP options.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--kkp-version`.
    pub kkp_version: Option<String>,
    /// `--version-filter`.
    pub version_filter: Option<String>,
}

/// Checked flags: architectures, source rewrites, DIR.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// DIR.
    pub dir: PathBuf,
    /// The files.
    pub plan: BinaryPlan,
    /// `(https://HOST, base URL)` rewrites from `--binaries-source`.
    sources: Vec<(String, String)>,
}

impl BinariesArgs {
    /// Checks the flags and plans the files (offline); `None` without `--binaries`.
    pub fn prepare(&self, inputs: &Inputs) -> Result<Option<Prepared>, BinariesError> {
        let Some(dir) = &self.dir else {
            if !self.arch.is_empty() || !self.sources.is_empty() {
                return Err(BinariesError::Usage(
                    "--binaries-arch and --binaries-source need --binaries DIR".into(),
                ));
            }
            return Ok(None);
        };
        let mut arches: Vec<String> = Vec::new();
        for a in self.arch.iter().map(|a| a.trim()).filter(|a| !a.is_empty()) {
            if !ARCHES.contains(&a) {
                return Err(BinariesError::Usage(format!(
                    "--binaries-arch {a:?}: unknown architecture; nodes download {}",
                    ARCHES.join(" or ")
                )));
            }
            if !arches.iter().any(|x| x == a) {
                arches.push(a.to_string());
            }
        }
        if arches.is_empty() {
            arches = ARCHES.iter().map(|a| a.to_string()).collect();
        }
        let sources = self
            .sources
            .iter()
            .map(|s| parse_source(s))
            .collect::<Result<Vec<_>, _>>()?;
        use crate::discover::kkp::{catalog, config, matrix};
        let selected =
            catalog::select(inputs.kkp_version.as_deref()).map_err(crate::discover::kkp::KkpError::from)?;
        let cfg = match &inputs.config {
            Some(p) => Some(config::load(p).map_err(crate::discover::kkp::KkpError::from)?),
            None => None,
        };
        let m = matrix(
            cfg.as_ref(),
            &selected.catalog,
            inputs.version_filter.as_deref(),
            &[],
        )?;
        let osm = osm_version(&selected.catalog, &m, &selected.kkp_tag)?;
        let release = osm_release(&osm)?;
        Ok(Some(Prepared {
            dir: dir.clone(),
            plan: plan(&m.versions, &release, &arches),
            sources,
        }))
    }
}

/// The OSM tag the release runs: the catalog's `operating-system-manager` image, evaluated like every
/// other component (so it follows the catalog, whatever way it spells the tag).
fn osm_version(
    catalog: &crate::discover::kkp::catalog::Catalog,
    m: &crate::discover::kkp::Matrix,
    kkp_tag: &str,
) -> Result<String, BinariesError> {
    let images = catalog.images(m, kkp_tag, crate::discover::kkp::Edition::default(), &|_| None);
    images
        .iter()
        .find(|i| i.component == "operating-system-manager")
        .and_then(|i| crate::reference::ImageRef::parse(&i.image).ok())
        .and_then(|r| r.tag)
        .ok_or_else(|| {
            BinariesError::Facts(format!(
                "the KKP {kkp_tag} catalog names no operating-system-manager image with a tag"
            ))
        })
}

/// `HOST=URL` → (`https://HOST`, URL without a trailing slash).
fn parse_source(spec: &str) -> Result<(String, String), BinariesError> {
    let bad = |why: &str| BinariesError::Usage(format!("--binaries-source {spec:?}: {why}"));
    let (host, url) = spec
        .split_once('=')
        .ok_or_else(|| bad("expected HOST=URL, e.g. dl.k8s.io=https://artifactory.corp/dl-k8s"))?;
    let host = host.trim();
    if host.is_empty() || host.contains('/') || host.contains(':') {
        return Err(bad("HOST must be a host name such as dl.k8s.io or github.com"));
    }
    let parsed = reqwest::Url::parse(url.trim()).map_err(|e| bad(&format!("{url:?} is not a URL ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(bad(&format!("{url:?} is not an http(s) URL")));
    }
    Ok((
        format!("https://{host}/"),
        parsed.as_str().trim_end_matches('/').to_string(),
    ))
}

impl Prepared {
    /// Where `url` is read from after `--binaries-source`.
    fn source_url(&self, url: &str) -> String {
        for (from, to) in &self.sources {
            if let Some(rest) = url.strip_prefix(from.as_str()) {
                return format!("{to}/{rest}");
            }
        }
        url.to_string()
    }
}

// --------------------------------------------------------------------------------------- output

/// The `--dry-run` listing: JSON/YAML `{osmVersion, binaries: [...]}` (merged into the image plan's
/// document when there is one), else a table or `url path` lines.
pub fn render(plan: &BinaryPlan, images: Option<&crate::plan::Plan>, format: OutputFormat) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Doc<'a> {
        #[serde(flatten, skip_serializing_if = "Option::is_none")]
        plan: Option<&'a crate::plan::Plan>,
        osm_version: &'a str,
        binaries: &'a [BinaryFile],
    }
    let doc = Doc {
        plan: images,
        osm_version: &plan.osm_version,
        binaries: &plan.files,
    };
    if let Some(text) = crate::output::structured(&doc, format) {
        return text;
    }
    let mut out = images.map(|p| p.render(format)).unwrap_or_default();
    match format {
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = plan
                .files
                .iter()
                .map(|f| vec![f.path.clone(), f.url.clone(), f.why.clone()])
                .collect();
            out.push_str(&crate::output::table(&["PATH", "URL", "WHY"], &rows));
            out.push_str(&format!(
                "{} node binaries (each with its .sha256; OSM {})\n",
                plan.files.len(),
                plan.osm_version
            ));
        }
        _ => {
            for f in &plan.files {
                out.push_str(&format!("{} {}\n", f.url, f.path));
            }
        }
    }
    out
}

// ------------------------------------------------------------------------------------- download

/// The sha256 hex a `.sha256` file holds: its first word (Kubernetes and cri-tools write the bare hex,
/// CNI plugins `HEX  FILE`).
fn checksum_of(text: &[u8]) -> Option<String> {
    let word = std::str::from_utf8(text).ok()?.split_whitespace().next()?;
    (word.len() == 64 && word.chars().all(|c| c.is_ascii_hexdigit())).then(|| word.to_ascii_lowercase())
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

/// What is below DIR for one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local {
    /// The file and its `.sha256` are there and agree.
    Complete,
    /// One of them is missing.
    Missing,
    /// Both are there and disagree (or the `.sha256` is unreadable).
    Mismatch,
}

/// Checks one file against the `.sha256` beside it (no network).
pub fn check_local(dir: &Path, f: &BinaryFile) -> Local {
    let Ok(sum) = std::fs::read(dir.join(f.checksum_path())) else {
        return Local::Missing;
    };
    let path = dir.join(&f.path);
    if !path.is_file() {
        return Local::Missing;
    }
    match (checksum_of(&sum), sha256_file(&path)) {
        (Some(want), Ok(have)) if want == have => Local::Complete,
        _ => Local::Mismatch,
    }
}

/// Why one file could not be fetched.
#[derive(Debug)]
struct Failed {
    url: String,
    detail: String,
    transient: bool,
}

impl Failed {
    fn new(url: &str, detail: impl Into<String>, transient: bool) -> Failed {
        Failed {
            url: url.to_string(),
            detail: detail.into(),
            transient,
        }
    }
}

fn flatten(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// One HTTP client per host the files are read from, with that host's --ca-file / --insecure-registry.
struct Http {
    clients: BTreeMap<String, reqwest::Client>,
}

impl Http {
    fn new(urls: impl Iterator<Item = String>, copy: &crate::copy::CopyArgs) -> Result<Http, BinariesError> {
        crate::registry::install_crypto_provider();
        let opts = copy
            .client_options("", None)
            .map_err(|e| BinariesError::Usage(e.to_string()))?;
        let mut clients = BTreeMap::new();
        for url in urls {
            let Some(host) = host_of(&url) else { continue };
            if clients.contains_key(&host) {
                continue;
            }
            let mut b = reqwest::Client::builder()
                .user_agent(concat!("kubectl-kkp/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(30))
                .read_timeout(Duration::from_secs(120));
            for (for_host, file) in &opts.ca_files {
                if for_host.as_deref().is_some_and(|h| h != host) {
                    continue;
                }
                let pem = std::fs::read(file).map_err(|e| io_err(file, e))?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| io_err(file, format!("not a PEM bundle: {}", flatten(&e))))?;
                b = b.tls_certs_merge(certs);
            }
            if opts.insecure.contains(&host) {
                b = b.tls_danger_accept_invalid_certs(true);
            }
            let client = b
                .build()
                .map_err(|e| BinariesError::Usage(format!("HTTP client for {host}: {}", flatten(&e))))?;
            clients.insert(host, client);
        }
        Ok(Http { clients })
    }

    async fn get(&self, url: &str) -> Result<reqwest::Response, Failed> {
        let client = host_of(url)
            .and_then(|h| self.clients.get(&h))
            .ok_or_else(|| Failed::new(url, "no HTTP client for this host", false))?;
        let resp = client
            .get(url)
            .send()
            .await
            .map_err(|e| Failed::new(url, flatten(&e), true))?;
        let status = resp.status();
        if !status.is_success() {
            let transient = status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429;
            return Err(Failed::new(url, format!("server answered {status}"), transient));
        }
        Ok(resp)
    }
}

/// `host[:port]` of a URL.
fn host_of(url: &str) -> Option<String> {
    let u = reqwest::Url::parse(url).ok()?;
    let host = u.host_str()?.to_string();
    Some(match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    })
}

/// Progress counters shared by the download tasks.
#[derive(Default)]
struct Live {
    done: AtomicUsize,
    downloaded: AtomicUsize,
    bytes: AtomicU64,
}

/// Removes what an interrupted or killed run left: our temporary files for `name` in `parent`.
fn remove_partials(parent: &Path, name: &str) {
    let prefix = format!(".{name}{PARTIAL}");
    if let Ok(entries) = std::fs::read_dir(parent) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// A temporary file beside `dest`, world-readable (a web server serves it), removed unless persisted.
fn temp_beside(dest: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    remove_partials(parent, &name);
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}{PARTIAL}"))
        .tempfile_in(parent)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(tmp)
}

/// fsync, rename into place, fsync the directory.
fn persist(tmp: tempfile::NamedTempFile, dest: &Path) -> std::io::Result<()> {
    tmp.as_file().sync_all()?;
    tmp.persist(dest).map_err(|e| e.error)?;
    if let Some(parent) = dest.parent()
        && let Ok(d) = std::fs::File::open(parent)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Fetches one file: its `.sha256` first, then the body into a temporary file hashed on the way,
/// renamed into place only when it matches; the `.sha256` is written last (it marks the file complete).
async fn fetch(prep: &Prepared, http: &Http, f: &BinaryFile, live: &Live) -> Result<(), Failed> {
    let dest = prep.dir.join(&f.path);
    let sum_url = prep.source_url(&f.checksum_url);
    let url = prep.source_url(&f.url);
    let sum_bytes = {
        let resp = http.get(&sum_url).await?;
        let body = resp
            .bytes()
            .await
            .map_err(|e| Failed::new(&sum_url, flatten(&e), true))?;
        if body.len() > MAX_CHECKSUM_FILE {
            return Err(Failed::new(&sum_url, "checksum file larger than 4 KiB", false));
        }
        body
    };
    let want =
        checksum_of(&sum_bytes).ok_or_else(|| Failed::new(&sum_url, "not a sha256 checksum file", false))?;
    let write_err =
        |p: &Path, e: std::io::Error| Failed::new(&url, format!("writing {}: {e}", p.display()), false);
    let mut tmp = temp_beside(&dest).map_err(|e| write_err(&dest, e))?;
    let mut resp = http.get(&url).await?;
    let mut h = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| Failed::new(&url, flatten(&e), true))?
    {
        h.update(&chunk);
        size += chunk.len() as u64;
        live.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        tmp.write_all(&chunk).map_err(|e| write_err(&dest, e))?;
    }
    let have = hex::encode(h.finalize());
    if have != want {
        // `tmp` is dropped here: nothing is left behind.
        return Err(Failed::new(
            &url,
            format!(
                "checksum mismatch: {sum_url} says sha256 {want}, the {size} bytes received hash to {have}; nothing was written"
            ),
            false,
        ));
    }
    // fsync and rename off the async workers (few on a small machine): other downloads go on meanwhile.
    let sum_dest = prep.dir.join(f.checksum_path());
    let (d, s) = (dest.clone(), sum_dest.clone());
    let done = tokio::task::spawn_blocking(move || {
        persist(tmp, &d).map_err(|e| (d.clone(), e))?;
        let mut tmp = temp_beside(&s).map_err(|e| (s.clone(), e))?;
        tmp.write_all(&sum_bytes).map_err(|e| (s.clone(), e))?;
        persist(tmp, &s).map_err(|e| (s.clone(), e))
    })
    .await;
    match done {
        Ok(Ok(())) => {}
        Ok(Err((p, e))) => return Err(write_err(&p, e)),
        Err(e) => return Err(Failed::new(&url, e.to_string(), false)),
    }
    live.downloaded.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// A file, unless it is already complete below DIR; transient failures are retried.
async fn fetch_file(prep: &Prepared, http: &Http, f: &BinaryFile, live: &Live) -> Result<(), Failed> {
    let dir = prep.dir.clone();
    let file = f.clone();
    let local = tokio::task::spawn_blocking(move || check_local(&dir, &file))
        .await
        .unwrap_or(Local::Missing);
    if local == Local::Complete {
        return Ok(());
    }
    let mut attempt = 0;
    loop {
        match fetch(prep, http, f, live).await {
            Err(e) if e.transient && attempt + 1 < ATTEMPTS => {
                tracing::debug!(url = %e.url, detail = %e.detail, "retrying");
                tokio::time::sleep(crate::registry::retry_delay(attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Makes DIR (and checks it takes files) before anything is downloaded, so a DIR that cannot be
/// written is one error and nothing else happens.
fn check_dir(dir: &Path) -> Result<(), BinariesError> {
    let what = |e: std::io::Error| BinariesError::NotWritable {
        dir: dir.to_path_buf(),
        detail: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(what)?;
    tempfile::Builder::new()
        .prefix(PARTIAL)
        .tempfile_in(dir)
        .map_err(what)?;
    Ok(())
}

/// `release/v<K>` → `../v<K>`, for web servers set up for KKP's mirror-binaries layout.
fn release_links(prep: &Prepared) -> Result<(), BinariesError> {
    let release = prep.dir.join("release");
    std::fs::create_dir_all(&release).map_err(|e| io_err(&release, e))?;
    for d in &prep.plan.kube_dirs {
        let link = release.join(d);
        let target = Path::new("..").join(d);
        if std::fs::read_link(&link).is_ok_and(|t| t == target) {
            continue;
        }
        #[cfg(unix)]
        {
            let tmp = release.join(format!(".{d}{PARTIAL}link"));
            let _ = std::fs::remove_file(&tmp);
            std::os::unix::fs::symlink(&target, &tmp).map_err(|e| io_err(&tmp, e))?;
            std::fs::rename(&tmp, &link).map_err(|e| io_err(&link, e))?;
        }
    }
    Ok(())
}

fn progress_bar(total: usize) -> indicatif::ProgressBar {
    let bar =
        indicatif::ProgressBar::with_draw_target(Some(total as u64), indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} node binaries  {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// A bar on a terminal (every 200 ms), else a line every 10 s.
async fn progress(live: Arc<Live>, total: usize, bar: bool) {
    let bar = (bar && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| progress_bar(total));
    let every = Duration::from_millis(if bar.is_some() { 200 } else { 10_000 });
    loop {
        tokio::time::sleep(every).await;
        let done = live.done.load(Ordering::Relaxed);
        let mib = live.bytes.load(Ordering::Relaxed) as f64 / (1024.0 * 1024.0);
        match &bar {
            Some(bar) => {
                bar.set_position(done as u64);
                bar.set_message(format!("{mib:.1} MiB downloaded"));
            }
            None => eprintln!("progress: {done}/{total} node binaries, {mib:.1} MiB downloaded"),
        }
    }
}

/// Exit code after Ctrl-C (as the image copy's).
pub const EXIT_INTERRUPTED: u8 = 130;

/// Downloads every missing file of the plan into DIR, `parallel` at once. Returns the exit code: 0
/// when all are there, 1 when some failed (each on stderr, naming its URL), 130 after Ctrl-C.
pub fn run_download(
    prep: &Prepared,
    copy: &crate::copy::CopyArgs,
    format: OutputFormat,
) -> Result<u8, BinariesError> {
    download(prep, copy, true)?.finish(format)
}

/// What [`download`] did; [`Downloaded::finish`] prints its summary.
pub struct Downloaded {
    code: u8,
    summary: Option<Summary>,
}

impl Downloaded {
    /// Prints the summary (none after Ctrl-C) and returns the exit code.
    pub fn finish(self, format: OutputFormat) -> Result<u8, BinariesError> {
        if let Some(s) = &self.summary {
            s.print(format)?;
        }
        Ok(self.code)
    }
}

/// Checks that DIR takes files, before anything else happens.
pub fn check_writable(prep: &Prepared) -> Result<(), BinariesError> {
    check_dir(&prep.dir)
}

/// Downloads every missing file of the plan into DIR; failures are printed on stderr as they are
/// known, the summary is left to [`Downloaded::finish`], so that a run beside the image copy prints it
/// after the copy's report. `bar`: a progress bar on a terminal (off beside the copy's own display,
/// which keeps the terminal; then a line every 10 s).
pub fn download(
    prep: &Prepared,
    copy: &crate::copy::CopyArgs,
    bar: bool,
) -> Result<Downloaded, BinariesError> {
    check_dir(&prep.dir)?;
    let urls = prep
        .plan
        .files
        .iter()
        .flat_map(|f| [prep.source_url(&f.url), prep.source_url(&f.checksum_url)]);
    let http = Http::new(urls, copy)?;
    let parallel = copy.parallel.unwrap_or(crate::copy::DEFAULT_PARALLEL).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(BinariesError::Runtime)?;
    crate::interrupt::handled_elsewhere();
    let live = Arc::new(Live::default());
    let total = prep.plan.files.len();
    let started = std::time::Instant::now();
    let outcome = rt.block_on(async {
        let ticker = tokio::spawn(progress(live.clone(), total, bar));
        let all = futures::stream::iter(prep.plan.files.iter())
            .map(|f| {
                let (http, live) = (&http, &live);
                async move {
                    let r = fetch_file(prep, http, f, live).await;
                    live.done.fetch_add(1, Ordering::Relaxed);
                    r
                }
            })
            .buffer_unordered(parallel)
            .collect::<Vec<_>>();
        let r = tokio::select! {
            r = all => Some(r),
            // Dropping the downloads removes their temporary files; complete files stay.
            _ = tokio::signal::ctrl_c() => None,
        };
        ticker.abort();
        let _ = ticker.await;
        r
    });
    let Some(results) = outcome else {
        eprintln!(
            "interrupted: {} of {total} node binaries handled; no partial file was kept, run the same command again to finish",
            live.done.load(Ordering::Relaxed)
        );
        rt.shutdown_background();
        return Ok(Downloaded {
            code: EXIT_INTERRUPTED,
            summary: None,
        });
    };
    release_links(prep)?;
    let failed: Vec<&Failed> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    for f in &failed {
        eprintln!("error: {}: {}", f.url, f.detail);
    }
    let summary = Summary {
        dir: prep.dir.display().to_string(),
        files: total,
        downloaded: live.downloaded.load(Ordering::Relaxed),
        already_there: total - failed.len() - live.downloaded.load(Ordering::Relaxed),
        failed: failed.len(),
        mib: live.bytes.load(Ordering::Relaxed) as f64 / (1024.0 * 1024.0),
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok(Downloaded {
        code: u8::from(!failed.is_empty()),
        summary: Some(summary),
    })
}

/// What a download run did.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    dir: String,
    files: usize,
    downloaded: usize,
    already_there: usize,
    failed: usize,
    mib: f64,
    seconds: f64,
}

impl Summary {
    fn print(&self, format: OutputFormat) -> Result<(), BinariesError> {
        #[derive(Serialize)]
        struct Doc<'a> {
            binaries: &'a Summary,
        }
        let text = crate::output::structured(&Doc { binaries: self }, format).unwrap_or_else(|| {
            format!(
                "node binaries in {}: {} files, {} downloaded ({:.1} MiB in {:.1}s), {} already there, {} failed\n",
                self.dir, self.files, self.downloaded, self.mib, self.seconds, self.already_there, self.failed
            )
        });
        crate::output::print(&text).map_err(BinariesError::Output)
    }
}

/// `--verify --binaries DIR`: every planned file against the `.sha256` beside it, offline. Prints the
/// missing and mismatching files; exit code 1 when there are any.
pub fn run_verify(prep: &Prepared, format: OutputFormat) -> Result<u8, BinariesError> {
    verify_files(&prep.dir, &prep.plan.files, &Default::default(), format)
}

/// Checks `files` below `dir` against the `.sha256` beside each; the paths in `wrong` count as
/// mismatches whatever is there. Prints the problems; exit code 1 when there are any.
fn verify_files(
    dir: &Path,
    files: &[BinaryFile],
    wrong: &std::collections::BTreeSet<String>,
    format: OutputFormat,
) -> Result<u8, BinariesError> {
    #[derive(Serialize)]
    struct Problem<'a> {
        path: &'a str,
        problem: &'static str,
    }
    let problems: Vec<Problem> = files
        .iter()
        .filter_map(|f| {
            let problem = match check_local(dir, f) {
                Local::Complete if wrong.contains(&f.path) => "checksum mismatch",
                Local::Complete => return None,
                Local::Missing => "missing",
                Local::Mismatch => "checksum mismatch",
            };
            Some(Problem {
                path: &f.path,
                problem,
            })
        })
        .collect();
    #[derive(Serialize)]
    struct Doc<'a> {
        binaries: Report<'a>,
    }
    #[derive(Serialize)]
    struct Report<'a> {
        files: usize,
        ok: usize,
        problems: &'a [Problem<'a>],
    }
    let total = files.len();
    let doc = Doc {
        binaries: Report {
            files: total,
            ok: total - problems.len(),
            problems: &problems,
        },
    };
    let text = crate::output::structured(&doc, format).unwrap_or_else(|| {
        let mut s: String = problems
            .iter()
            .map(|p| format!("{}: {}\n", p.problem, p.path))
            .collect();
        s.push_str(&format!(
            "node binaries in {}: {} of {total} present with a matching checksum\n",
            dir.display(),
            total - problems.len()
        ));
        s
    });
    crate::output::print(&text).map_err(BinariesError::Output)?;
    Ok(u8::from(!problems.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> semver::Version {
        semver::Version::parse(s).unwrap()
    }

    #[test]
    fn every_osm_of_the_supported_kkp_releases_has_facts() {
        let all = facts().unwrap();
        let shipped: Vec<&str> = all
            .iter()
            .flat_map(|r| r.shipped_by.iter().map(String::as_str))
            .collect();
        for minor in [("2.29", 10), ("2.30", 6), ("2.31", 0)] {
            for patch in 0..=minor.1 {
                let tag = format!("v{}.{patch}", minor.0);
                assert!(shipped.contains(&tag.as_str()), "{tag} missing");
            }
        }
    }

    #[test]
    fn crictl_follows_the_chain_and_falls_back() {
        let osm = osm_release("v1.11.3").unwrap();
        assert_eq!(osm.crictl_for(&v("1.33.9")).0, "v1.33.0");
        assert_eq!(osm.crictl_for(&v("1.36.3")).0, "v1.36.0");
        assert_eq!(
            osm.crictl_for(&v("1.37.0")),
            ("v1.36.0", "the fallback".to_string())
        );
        let old = osm_release("v1.8.0").unwrap();
        assert_eq!(old.crictl_for(&v("1.34.2")).0, "v1.34.0");
        assert!(osm_release("v0.0.1").unwrap_err().to_string().contains("v1.11.3"));
    }

    #[test]
    fn the_plan_has_the_node_url_paths() {
        let osm = osm_release("v1.11.3").unwrap();
        let p = plan(&[v("1.33.0"), v("1.36.3")], &osm, &["arm64".into()]);
        let paths: Vec<&str> = p.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "v1.33.0/bin/linux/arm64/kubelet",
                "v1.33.0/bin/linux/arm64/kubeadm",
                "v1.33.0/bin/linux/arm64/kubectl",
                "v1.36.3/bin/linux/arm64/kubelet",
                "v1.36.3/bin/linux/arm64/kubeadm",
                "v1.36.3/bin/linux/arm64/kubectl",
                "kubernetes-sigs/cri-tools/releases/download/v1.33.0/crictl-v1.33.0-linux-arm64.tar.gz",
                "kubernetes-sigs/cri-tools/releases/download/v1.36.0/crictl-v1.36.0-linux-arm64.tar.gz",
                "containernetworking/plugins/releases/download/v1.9.1/cni-plugins-linux-arm64-v1.9.1.tgz",
                "containernetworking/plugins/releases/download/v1.7.1/cni-plugins-linux-arm64-v1.7.1.tgz",
            ]
        );
        assert_eq!(
            p.files[0].url,
            "https://dl.k8s.io/v1.33.0/bin/linux/arm64/kubelet"
        );
        assert_eq!(p.files[9].why, "osp-amzn2 (OSM v1.11.3)");
    }

    #[test]
    fn sources_are_checked_and_rewrite_urls() {
        let (from, to) = parse_source("dl.k8s.io=https://artifactory.corp/dl-k8s/").unwrap();
        assert_eq!(
            (from.as_str(), to.as_str()),
            ("https://dl.k8s.io/", "https://artifactory.corp/dl-k8s")
        );
        for bad in [
            "dl.k8s.io",
            "dl.k8s.io=not a url",
            "dl.k8s.io=ftp://x/y",
            "=https://x",
        ] {
            assert!(parse_source(bad).unwrap_err().is_usage(), "{bad}");
        }
        assert_eq!(
            checksum_of(b"ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789  f.tgz\n")
                .unwrap()
                .len(),
            64
        );
        assert!(checksum_of(b"<html>").is_none());
    }
}
