//! KKP addons: Go text/templates rendered over the version × provider × CNI matrix, then scanned.
//!
//! Mirrors KKP's `pkg/addon` (every sub-directory of the addons directory is one addon, its `*.yaml`
//! files concatenated into one template with sprig plus `Image`, `join`, `semverCompare`) and the
//! mock cluster of `kubermatic-installer mirror-images` (`getTemplateData`). Each addon is rendered once
//! per distinct set of values it actually reads ([`gotmpl::Memo`]), not once per combination.
//! This module knows nothing of registries; the addons *image* is pulled elsewhere and handed to
//! [`extract_addons_from_layers`] as layer streams.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use semver::Version;

use super::{Cni, Matrix};
use crate::discover::manifest::{ScanContext, ScanError, scan_stream};
use crate::discover::{Discovery, SourceKind};
use crate::gotmpl::{Funcs, Memo, Template, TemplateError, TypedMap, Value, strval, version_of};
use crate::reference::ImageRef;

/// What KKP puts between (and after) the files of one addon.
pub const FILE_SEPARATOR: &str = "\n\n---\n\n";

/// Providers KKP forces the `externalCloudProvider` feature for in `mirror-images`.
pub const EXTERNAL_CCM_PROVIDERS: &[&str] =
    &["openstack", "hetzner", "azure", "vsphere", "anexia", "kubevirt"];

/// Why addons could not be loaded, rendered or extracted.
#[derive(Debug, thiserror::Error)]
pub enum AddonError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An addon file is not a valid template.
    #[error("addon {addon}: {file}:{line}: {message}")]
    Parse {
        /// Addon name.
        addon: String,
        /// File inside the addon directory.
        file: String,
        /// 1-based line in that file.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// An addon failed to render for one combination.
    #[error("addon {addon}: {file}:{line}: {message} (rendering for {combination})")]
    Render {
        /// Addon name.
        addon: String,
        /// File inside the addon directory.
        file: String,
        /// 1-based line in that file.
        line: usize,
        /// What went wrong.
        message: String,
        /// `kubernetes 1.33.2, provider aws, cni canal v3.31`.
        combination: String,
    },
    /// Rendered output could not be scanned.
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// A layer of the addons image could not be extracted.
    #[error("addons image layer {layer}: {message}")]
    Extract {
        /// 0-based layer index.
        layer: usize,
        /// What is wrong (names the entry).
        message: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> AddonError + '_ {
    move |source| AddonError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One addon: a directory of `*.yaml` templates rendered as one.
#[derive(Debug, Clone)]
pub struct Addon {
    /// Directory name.
    pub name: String,
    /// Template files, relative to the addon directory (`/`-separated), in KKP's order.
    pub files: Vec<String>,
    template: Arc<Template>,
}

impl Addon {
    /// The parsed template (all files, in order).
    pub fn template(&self) -> &Template {
        &self.template
    }
}

/// The functions KKP addons may call: sprig plus KKP's `Image`, `join` and `semverCompare`.
pub fn addon_funcs() -> Funcs {
    let mut f = Funcs::sprig();
    f.add("Image", |a| {
        let [Value::Str(s)] = a else {
            return Err("Image takes one string".into());
        };
        normalise_image(s).map(Value::from)
    });
    // KKP replaces sprig's `join` with strings.Join(elems []string, sep).
    f.add("join", |a| {
        let [list, Value::Str(sep)] = a else {
            return Err("join takes a list of strings and a separator".into());
        };
        let parts: Vec<String> = match list {
            Value::Nil => Vec::new(),
            Value::List(l) => {
                let mut out = Vec::with_capacity(l.len());
                for v in l.iter() {
                    match v {
                        Value::Str(s) => out.push(s.to_string()),
                        other => {
                            return Err(format!(
                                "wrong type for value; expected []string; got {}",
                                other.type_name()
                            ));
                        }
                    }
                }
                out
            }
            other => {
                return Err(format!(
                    "wrong type for value; expected []string; got {}",
                    other.type_name()
                ));
            }
        };
        Ok(Value::from(parts.join(sep)))
    });
    // KKP's semverCompare(version, constraint): false on anything unparsable.
    f.add("semverCompare", |a| {
        let [v, c] = a else {
            return Err("semverCompare takes a version and a constraint".into());
        };
        let ok = match (version_of(v), crate::gotmpl::Constraint::parse(&strval(c))) {
            (Some(v), Some(c)) => c.check(&v),
            _ => false,
        };
        Ok(Value::Bool(ok))
    });
    f
}

/// KKP's `Image` with no registry override: parse, normalise the name (`docker.io`, `library/`),
/// keep tag and digest as written (no `:latest` is added).
pub fn normalise_image(s: &str) -> Result<String, String> {
    let r = ImageRef::parse(s).map_err(|e| e.to_string())?;
    let name_part = s.split('@').next().unwrap_or(s);
    let has_tag = name_part
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains(':'));
    let mut out = format!("{}/{}", r.registry, r.repository);
    if has_tag && let Some(t) = &r.tag {
        out.push(':');
        out.push_str(t);
    }
    if let Some(d) = &r.digest {
        out.push('@');
        out.push_str(d);
    }
    Ok(out)
}

/// Loads every addon below `dir`: each sub-directory is one addon, its `*.yaml` files (recursively,
/// lexical order per directory like Go's `filepath.WalkDir`) one template. Symlinks are not followed.
pub fn load_addons(dir: &Path) -> Result<Vec<Addon>, AddonError> {
    let funcs = Arc::new(addon_funcs());
    let mut out = Vec::new();
    for (name, path) in sorted_entries(dir)? {
        let meta = fs::symlink_metadata(&path).map_err(io_err(&path))?;
        if !meta.is_dir() {
            continue;
        }
        let mut files = Vec::new();
        collect_yaml(&path, "", &mut files)?;
        let mut sources = Vec::with_capacity(files.len());
        for rel in &files {
            let p = path.join(rel);
            let text = fs::read_to_string(&p).map_err(io_err(&p))?;
            sources.push((rel.clone(), text));
        }
        let addon = name.clone();
        let template = Template::parse_files(&sources, FILE_SEPARATOR, funcs.clone(), |f| {
            format!("# Source: {addon}/{f}\n")
        })
        .map_err(|e| AddonError::Parse {
            addon: name.clone(),
            file: e.file,
            line: e.line,
            message: e.message,
        })?;
        tracing::debug!(addon = %name, files = files.len(), "loaded addon");
        out.push(Addon {
            name,
            files,
            template: Arc::new(template),
        });
    }
    Ok(out)
}

fn sorted_entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, AddonError> {
    let mut entries = Vec::new();
    for e in fs::read_dir(dir).map_err(io_err(dir))? {
        let e = e.map_err(io_err(dir))?;
        entries.push((e.file_name().to_string_lossy().into_owned(), e.path()));
    }
    entries.sort();
    Ok(entries)
}

fn collect_yaml(dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<(), AddonError> {
    for (name, path) in sorted_entries(dir)? {
        let meta = fs::symlink_metadata(&path).map_err(io_err(&path))?;
        let rel = format!("{prefix}{name}");
        if meta.is_dir() {
            collect_yaml(&path, &format!("{rel}/"), out)?;
        } else if meta.is_file() && name.ends_with(".yaml") {
            out.push(rel);
        }
    }
    Ok(())
}

fn s(v: &str) -> Value {
    Value::from(v)
}

fn st(name: &str, fields: Vec<(&str, Value)>) -> Value {
    Value::structure(name, fields)
}

fn empty_strings(name: &str, fields: &[&str]) -> Value {
    st(name, fields.iter().map(|f| (*f, s(""))).collect())
}

/// The `TemplateData` KKP's `mirror-images` renders addons with for one combination (its fake
/// cluster: namespace `mock-namespace`, pods 172.25.0.0/16, services 10.10.10.0/24, features
/// `etcdLauncher` plus `externalCloudProvider` for the providers KKP forces it for).
pub fn template_data(version: &Version, provider: &str, cni: &Cni) -> Value {
    let external = EXTERNAL_CCM_PROVIDERS.contains(&provider);
    DataBase::new().data(version, provider, cni, external, false)
}

/// The cluster variants rendered for a provider beyond KKP's one fake cluster: `(externalCloudProvider,
/// CSIMigration)`. KKP's mirror-images forces the external CCM for [`EXTERNAL_CCM_PROVIDERS`] only and
/// never sets CSIMigration, so it misses what addons render only then (the AWS EBS CSI driver, which
/// needs an external-CCM AWS cluster; vSphere's CSI migration webhook). Both are real clusters, so
/// both settings are rendered.
fn variants(provider: &str) -> &'static [(bool, bool)] {
    if provider == "vsphere" {
        &[(true, false), (true, true)]
    } else if EXTERNAL_CCM_PROVIDERS.contains(&provider) {
        &[(true, false)]
    } else {
        &[(false, false), (true, false)]
    }
}

/// The parts of the template data that are the same for every combination, built (and rooted) once.
struct DataBase {
    network: Value,
    credentials: Value,
    address: Value,
    csi: Value,
    mla: Value,
    labels: Value,
    variables: Value,
}

impl DataBase {
    fn new() -> DataBase {
        let pods = "172.25.0.0/16";
        let services = "10.10.10.0/24";
        let mut network_fields: Vec<(&str, Value)> = vec![
            ("DNSDomain", s("cluster.local")),
            ("DNSClusterIP", s("")),
            ("DNSResolverIP", s("")),
            ("PodCIDRBlocks", Value::str_list([pods])),
            ("ServiceCIDRBlocks", Value::str_list([services])),
            ("ProxyMode", s("")),
            ("StrictArp", Value::Nil),
            ("DualStack", Value::Bool(false)),
            ("PodCIDRIPv4", s(pods)),
            ("PodCIDRIPv6", s("")),
            ("NodeCIDRMaskSizeIPv4", Value::Int(24)),
            ("NodeCIDRMaskSizeIPv6", Value::Int(64)),
            (
                "IPAMAllocations",
                Value::TypedMap(Arc::new(TypedMap {
                    type_name: "map[string]addon.IPAMAllocation".into(),
                    entries: Default::default(),
                    zero: st(
                        "IPAMAllocation",
                        vec![
                            ("Type", s("")),
                            ("CIDR", s("")),
                            ("Addresses", Value::from(Vec::new())),
                        ],
                    ),
                })),
            ),
            ("NodePortRange", s("")),
        ];
        let hash = config_hash(&network_fields);
        network_fields.push(("ConfigHash", s(&hash)));
        let at = |parts: &[&str]| parts.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        let credentials = st(
            "Credentials",
            vec![
                (
                    "AWS",
                    empty_strings(
                        "AWSCredentials",
                        &[
                            "AccessKeyID",
                            "SecretAccessKey",
                            "AssumeRoleARN",
                            "AssumeRoleExternalID",
                        ],
                    ),
                ),
                (
                    "Azure",
                    empty_strings(
                        "AzureCredentials",
                        &["TenantID", "SubscriptionID", "ClientID", "ClientSecret"],
                    ),
                ),
                (
                    "Baremetal",
                    st(
                        "BaremetalCredentials",
                        vec![(
                            "Tinkerbell",
                            empty_strings("TinkerbellCredentials", &["Kubeconfig"]),
                        )],
                    ),
                ),
                (
                    "Digitalocean",
                    empty_strings("DigitaloceanCredentials", &["Token"]),
                ),
                ("GCP", empty_strings("GCPCredentials", &["ServiceAccount"])),
                ("Hetzner", empty_strings("HetznerCredentials", &["Token"])),
                (
                    "Openstack",
                    empty_strings(
                        "OpenstackCredentials",
                        &[
                            "Username",
                            "Password",
                            "Project",
                            "ProjectID",
                            "Domain",
                            "ApplicationCredentialID",
                            "ApplicationCredentialSecret",
                            "Token",
                        ],
                    ),
                ),
                ("Kubevirt", empty_strings("KubevirtCredentials", &["KubeConfig"])),
                (
                    "VSphere",
                    empty_strings("VSphereCredentials", &["Username", "Password"]),
                ),
                (
                    "Alibaba",
                    empty_strings("AlibabaCredentials", &["AccessKeyID", "AccessKeySecret"]),
                ),
                ("Anexia", empty_strings("AnexiaCredentials", &["Token"])),
                (
                    "Nutanix",
                    empty_strings(
                        "NutanixCredentials",
                        &["Username", "Password", "CSIUsername", "CSIPassword", "ProxyURL"],
                    ),
                ),
                (
                    "VMwareCloudDirector",
                    empty_strings(
                        "VMwareCloudDirectorCredentials",
                        &["Username", "Password", "APIToken", "Organization", "VDC"],
                    ),
                ),
            ],
        );
        let address = st(
            "ClusterAddress",
            vec![
                ("URL", s("")),
                ("Port", Value::Int(0)),
                ("ExternalName", s("")),
                ("InternalName", s("")),
                ("AdminToken", s("")),
                ("IP", s("")),
            ],
        );
        let csi = st(
            "CSIOptions",
            vec![
                ("StoragePolicy", s("")),
                ("StorageContainer", s("")),
                ("Fstype", s("")),
                ("SsSegmentedIscsiNetwork", Value::Nil),
                ("StorageProfile", s("")),
                ("Filesystem", s("")),
                ("CinderTopologyEnabled", Value::Bool(false)),
                ("OverwriteRegistry", s("")),
            ],
        );
        let mla = st(
            "MLASettings",
            vec![
                ("MonitoringEnabled", Value::Bool(false)),
                ("LoggingEnabled", Value::Bool(false)),
            ],
        );
        DataBase {
            network: st("ClusterNetwork", network_fields).rooted_at(at(&["Cluster", "Network"])),
            credentials: credentials.rooted_at(at(&["Credentials"])),
            address: address.rooted_at(at(&["Cluster", "Address"])),
            csi: csi.rooted_at(at(&["Cluster", "CSI"])),
            mla: mla.rooted_at(at(&["Cluster", "MLA"])),
            labels: Value::map([("project-id", s("project"))]),
            variables: Value::map(Vec::<(String, Value)>::new()),
        }
    }

    fn data(
        &self,
        version: &Version,
        provider: &str,
        cni: &Cni,
        external_ccm: bool,
        csi_migration: bool,
    ) -> Value {
        let mut features = vec!["etcdLauncher"];
        if external_ccm {
            features.push("externalCloudProvider");
        }
        let cluster = st(
            "ClusterData",
            vec![
                ("Type", s("kubernetes")),
                ("Name", s("")),
                ("HumanReadableName", s("")),
                ("Namespace", s("mock-namespace")),
                ("OwnerName", s("")),
                ("OwnerEmail", s("")),
                ("Labels", self.labels.clone()),
                // Go prints a nil map as `map[]` and a nil slice as `[]`: empty values, not nil.
                ("Annotations", Value::map(Vec::<(String, Value)>::new())),
                ("Kubeconfig", s("")),
                ("Address", self.address.clone()),
                ("CloudProviderName", s(provider)),
                ("Version", Value::Version(Arc::new(version.clone()))),
                (
                    "MajorMinorVersion",
                    Value::from(format!("{}.{}", version.major, version.minor)),
                ),
                ("Network", self.network.clone()),
                ("Features", Value::set(features)),
                (
                    "CNIPlugin",
                    st(
                        "CNIPlugin",
                        vec![("Type", s(&cni.kind)), ("Version", s(&cni.version))],
                    ),
                ),
                ("CSI", self.csi.clone()),
                ("MLA", self.mla.clone()),
                ("CSIMigration", Value::Bool(csi_migration)),
                ("KubeVirtInfraStorageClasses", Value::from(Vec::new())),
                ("KubeVirtInfraVolumeSnapshotClasses", Value::from(Vec::new())),
                ("DisableCSIDriver", Value::Bool(false)),
            ],
        );
        st(
            "TemplateData",
            vec![
                ("SeedName", s("")),
                ("DatacenterName", s("")),
                ("Cluster", cluster),
                ("Credentials", self.credentials.clone()),
                ("Variables", self.variables.clone()),
            ],
        )
        .rooted()
    }
}

/// `ClusterNetwork.ConfigHash()`: SHA-1 of the JSON of the network settings (CIDR lists sorted).
fn config_hash(fields: &[(&str, Value)]) -> String {
    use sha1::Digest as _;
    let mut obj = serde_json::Map::new();
    for (k, v) in fields {
        let mut v = v.clone();
        if let Value::List(l) = &v {
            let mut items: Vec<Value> = l.to_vec();
            items.sort_by_key(Value::to_go_string);
            v = Value::from(items);
        }
        obj.insert((*k).to_string(), v.to_json());
    }
    let json = serde_json::to_string(&serde_json::Value::Object(obj)).unwrap_or_default();
    hex::encode(sha1::Sha1::digest(json.as_bytes()))
}

/// One matrix cell.
#[derive(Debug, Clone)]
struct Combo<'a> {
    version: &'a Version,
    provider: &'a str,
    cni: &'a Cni,
    external_ccm: bool,
    csi_migration: bool,
}

impl Combo<'_> {
    fn describe(&self) -> String {
        let cni = if self.cni.version.is_empty() {
            self.cni.kind.clone()
        } else {
            format!("{} {}", self.cni.kind, self.cni.version)
        };
        let mut out = format!(
            "kubernetes {}, provider {}, cni {cni}",
            self.version, self.provider
        );
        if self.external_ccm {
            out.push_str(", externalCloudProvider");
        }
        if self.csi_migration {
            out.push_str(", CSIMigration");
        }
        out
    }
}

/// The distinct outputs of one addon over a matrix.
#[derive(Debug, Clone)]
pub struct RenderedAddon {
    /// Addon name.
    pub name: String,
    /// Distinct rendered texts (each file's part starts with `# Source: <addon>/<file>`).
    pub outputs: Vec<String>,
    /// Matrix cells covered.
    pub combinations: usize,
    /// Template evaluations actually run (the rest were answered from the memo).
    pub renders: usize,
}

/// Renders every addon for every version × provider × CNI, each distinct case once, in parallel
/// across addons. The first failure (in addon, then matrix order) is returned.
pub fn render_addons(addons: &[Addon], matrix: &Matrix) -> Result<Vec<RenderedAddon>, AddonError> {
    let combos: Vec<Combo<'_>> = matrix
        .versions
        .iter()
        .flat_map(|version| {
            matrix.providers.iter().flat_map(move |provider| {
                variants(provider)
                    .iter()
                    .flat_map(move |&(external_ccm, csi_migration)| {
                        matrix.cnis.iter().map(move |cni| Combo {
                            version,
                            provider,
                            cni,
                            external_ccm,
                            csi_migration,
                        })
                    })
            })
        })
        .collect();
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(addons.len())
        .max(1);
    // Biggest templates first, each to the least loaded worker: each worker then builds a
    // combination's data once for all its addons.
    let mut order: Vec<usize> = (0..addons.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(addons[i].template.size()));
    let mut shares: Vec<(usize, Vec<usize>)> = vec![(0, Vec::new()); workers];
    for i in order {
        if let Some(w) = shares.iter_mut().min_by_key(|(load, _)| *load) {
            w.0 += addons[i].template.size().max(1);
            w.1.push(i);
        }
    }
    let base = DataBase::new();
    let done: Vec<(usize, Result<RenderedAddon, AddonError>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = shares
            .iter()
            .map(|(_, mine)| {
                let (combos, base) = (&combos, &base);
                scope.spawn(move || render_share(addons, mine, combos, base))
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut results: Vec<Option<Result<RenderedAddon, AddonError>>> = Vec::new();
    results.resize_with(addons.len(), || None);
    for (i, r) in done {
        results[i] = Some(r);
    }
    let mut out = Vec::with_capacity(addons.len());
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Some(r) => out.push(r?),
            None => {
                return Err(AddonError::Render {
                    addon: addons[i].name.clone(),
                    file: String::new(),
                    line: 0,
                    message: "render worker panicked".into(),
                    combination: String::new(),
                });
            }
        }
    }
    Ok(out)
}

/// The memo and distinct outputs of one addon while its worker walks the matrix.
struct Progress {
    memo: Memo<Result<usize, TemplateError>>,
    outputs: Vec<String>,
    by_text: HashMap<String, usize>,
    renders: usize,
    failed: Option<AddonError>,
}

fn render_share(
    addons: &[Addon],
    mine: &[usize],
    combos: &[Combo<'_>],
    base: &DataBase,
) -> Vec<(usize, Result<RenderedAddon, AddonError>)> {
    let mut progress: Vec<Progress> = mine
        .iter()
        .map(|_| Progress {
            memo: Memo::default(),
            outputs: Vec::new(),
            by_text: HashMap::new(),
            renders: 0,
            failed: None,
        })
        .collect();
    for combo in combos {
        let data = base.data(
            combo.version,
            combo.provider,
            combo.cni,
            combo.external_ccm,
            combo.csi_migration,
        );
        for (&i, p) in mine.iter().zip(progress.iter_mut()) {
            if p.failed.is_some() {
                continue;
            }
            let addon = &addons[i];
            let outcome = match p.memo.lookup(&data) {
                Some(o) => o.clone(),
                None => {
                    p.renders += 1;
                    let (res, trace) = addon.template.render_traced(&data);
                    let o = res.map(|text| {
                        let next = p.outputs.len();
                        let outputs = &mut p.outputs;
                        *p.by_text.entry(text).or_insert_with_key(|t| {
                            outputs.push(t.clone());
                            next
                        })
                    });
                    p.memo.insert(&trace, o.clone());
                    o
                }
            };
            if let Err(e) = outcome {
                p.failed = Some(AddonError::Render {
                    addon: addon.name.clone(),
                    file: e.file,
                    line: e.line,
                    message: e.message,
                    combination: combo.describe(),
                });
            }
        }
    }
    mine.iter()
        .zip(progress)
        .map(|(&i, p)| {
            let addon = &addons[i];
            let r = match p.failed {
                Some(e) => Err(e),
                None => {
                    tracing::debug!(addon = %addon.name, combinations = combos.len(), renders = p.renders,
                        distinct = p.outputs.len(), "rendered addon");
                    Ok(RenderedAddon {
                        name: addon.name.clone(),
                        outputs: p.outputs,
                        combinations: combos.len(),
                        renders: p.renders,
                    })
                }
            };
            (i, r)
        })
        .collect()
}

/// Gives every document its file: after each `---` inside a file's part, repeats that part's
/// `# Source:` line, as the manifest scanner reads one per document.
pub fn annotate_sources(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 256);
    let mut current: Option<&str> = None;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        if bare.starts_with("# Source: ") {
            current = Some(bare);
            out.push_str(line);
            continue;
        }
        out.push_str(line);
        if is_doc_separator(bare)
            && let Some(src) = current
        {
            if !line.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(src);
            out.push('\n');
        }
    }
    out
}

fn has_content(text: &str) -> bool {
    text.lines().any(|l| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#') && !is_doc_separator(t)
    })
}

fn is_doc_separator(line: &str) -> bool {
    line.strip_prefix("---")
        .is_some_and(|rest| rest.trim().is_empty())
}

/// Renders all addons over the matrix and scans the distinct outputs for images.
pub fn render_matrix(addons: &[Addon], matrix: &Matrix) -> Result<Discovery, AddonError> {
    let rendered = render_addons(addons, matrix)?;
    let mut discovery = Discovery::default();
    let mut seen = HashSet::new();
    for r in rendered {
        let ctx = ScanContext {
            source: SourceKind::Addon,
            name: r.name.clone(),
            include_tests: false,
        };
        let prefix = format!("{}/", r.name);
        for text in &r.outputs {
            if !has_content(text) {
                continue;
            }
            let mut d = scan_stream(&annotate_sources(text), &ctx)?;
            for f in d.images.iter_mut().chain(d.candidates.iter_mut()) {
                f.origin.source = SourceKind::Addon;
                f.origin.name = r.name.clone();
                if let Some(t) = &f.origin.template
                    && let Some(rest) = t.strip_prefix(&prefix)
                {
                    f.origin.template = Some(rest.to_string());
                }
            }
            d.images.retain(|f| seen.insert((true, f.clone())));
            d.candidates.retain(|f| seen.insert((false, f.clone())));
            discovery.extend(d);
        }
    }
    Ok(discovery)
}

/// What [`extract_addons_from_layers`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractStats {
    /// Regular files written under `addons/`.
    pub files: usize,
    /// Symlinks and hard links under `addons/` that were skipped.
    pub skipped_links: usize,
    /// Whiteouts applied.
    pub whiteouts: usize,
}

/// Extracts `addons/` from image layers (lowest first; plain or gzip tar) into `dest/addons`,
/// applying OCI whiteouts (`.wh.<name>`, `.wh..wh..opq`). Entries with absolute paths or `..` are
/// refused; links are never created or followed. Returns the stats; the addons are in `dest/addons`.
pub fn extract_addons_from_layers<R: Read>(
    layers: impl Iterator<Item = R>,
    dest: &Path,
) -> Result<ExtractStats, AddonError> {
    let mut stats = ExtractStats::default();
    let root = dest.join("addons");
    fs::create_dir_all(&root).map_err(io_err(&root))?;
    for (li, layer) in layers.enumerate() {
        let xerr = |message: String| AddonError::Extract { layer: li, message };
        let mut buf = BufReader::new(layer);
        let gz = buf
            .fill_buf()
            .map_err(|e| xerr(e.to_string()))?
            .starts_with(&[0x1f, 0x8b]);
        let reader: Box<dyn Read> = if gz {
            Box::new(flate2::read::GzDecoder::new(buf))
        } else {
            Box::new(buf)
        };
        let mut archive = tar::Archive::new(reader);
        // Paths (relative to dest) this layer wrote: an opaque whiteout must not remove them.
        let mut written: HashSet<PathBuf> = HashSet::new();
        let entries = archive.entries().map_err(|e| xerr(e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| xerr(e.to_string()))?;
            let raw = entry.path().map_err(|e| xerr(e.to_string()))?.into_owned();
            let shown = raw.display().to_string();
            let mut parts: Vec<String> = Vec::new();
            for c in raw.components() {
                match c {
                    Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
                    Component::CurDir => {}
                    Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                        return Err(xerr(format!("entry {shown:?} escapes the image root")));
                    }
                }
            }
            let Some(file_name) = parts.last().cloned() else {
                continue;
            };
            // Whiteouts, which may also remove `addons` itself or everything (opaque at the root).
            if file_name == ".wh..wh..opq" {
                let dir: PathBuf = parts[..parts.len() - 1].iter().collect();
                if dir.as_os_str().is_empty() || dir.starts_with("addons") {
                    stats.whiteouts += 1;
                    let target = if dir.as_os_str().is_empty() {
                        PathBuf::from("addons")
                    } else {
                        dir
                    };
                    clear_dir(dest, &target, &written).map_err(io_err(&dest.join(&target)))?;
                }
                continue;
            }
            if let Some(hidden) = file_name.strip_prefix(".wh.") {
                let mut target: PathBuf = parts[..parts.len() - 1].iter().collect();
                target.push(hidden);
                if target.starts_with("addons") {
                    stats.whiteouts += 1;
                    remove_path(&dest.join(&target)).map_err(io_err(&dest.join(&target)))?;
                    if target == Path::new("addons") {
                        fs::create_dir_all(&root).map_err(io_err(&root))?;
                    }
                }
                continue;
            }
            if parts[0] != "addons" {
                continue;
            }
            let rel: PathBuf = parts.iter().collect();
            let out = dest.join(&rel);
            let kind = entry.header().entry_type();
            if kind.is_dir() {
                if fs::symlink_metadata(&out).is_ok_and(|m| !m.is_dir()) {
                    remove_path(&out).map_err(io_err(&out))?;
                }
                fs::create_dir_all(&out).map_err(io_err(&out))?;
                written.insert(rel);
            } else if kind.is_file() {
                if let Some(parent) = out.parent() {
                    ensure_dirs(dest, parent).map_err(io_err(parent))?;
                }
                if fs::symlink_metadata(&out).is_ok() {
                    remove_path(&out).map_err(io_err(&out))?;
                }
                let mut file = fs::File::create(&out).map_err(io_err(&out))?;
                std::io::copy(&mut entry, &mut file).map_err(io_err(&out))?;
                stats.files += 1;
                written.insert(rel);
            } else if kind.is_symlink() || kind.is_hard_link() {
                tracing::debug!(entry = %shown, "skipping link in addons image");
                stats.skipped_links += 1;
            }
        }
    }
    Ok(stats)
}

/// Creates `dir` (below `dest`), replacing any non-directory in the way.
fn ensure_dirs(dest: &Path, dir: &Path) -> std::io::Result<()> {
    let rel = dir.strip_prefix(dest).unwrap_or(dir);
    let mut cur = dest.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                fs::remove_file(&cur)?;
                fs::create_dir(&cur)?;
            }
            Err(_) => fs::create_dir(&cur)?,
        }
    }
    Ok(())
}

fn remove_path(p: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes what lower layers put in `dest/rel`, keeping what the current layer wrote.
fn clear_dir(dest: &Path, rel: &Path, written: &HashSet<PathBuf>) -> std::io::Result<()> {
    let dir = dest.join(rel);
    let Ok(rd) = fs::read_dir(&dir) else { return Ok(()) };
    for e in rd {
        let e = e?;
        let child_rel = rel.join(e.file_name());
        if written.contains(&child_rel) {
            if e.file_type()?.is_dir() {
                clear_dir(dest, &child_rel, written)?;
            }
            continue;
        }
        if written.iter().any(|w| w.starts_with(&child_rel)) {
            clear_dir(dest, &child_rel, written)?;
            continue;
        }
        remove_path(&e.path())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
