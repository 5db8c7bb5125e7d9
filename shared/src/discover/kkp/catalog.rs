//! The embedded control-plane catalog: per KKP release, each component's image and when KKP uses it.
//!
//! KKP computes most control-plane images in Go (reconcilers, version switches); this module replaces
//! that code with data — one YAML file per release line under `shared/catalog/`, compiled into the
//! binary — and evaluates it over a [`Matrix`]. One file holds the full catalog of one release; every
//! other release is a [`Delta`] from the release before it (or from another line's release), so a patch
//! release states only what changed. Only the files a selected release needs are parsed. It knows
//! nothing of the KubermaticConfiguration file format: repository overrides arrive as a lookup function.

use std::collections::{BTreeMap, BTreeSet};

use semver::{Version, VersionReq};
use serde::Deserialize;

use super::{Cni, Matrix};

/// The catalog files compiled into the binary: `(release line, YAML text)`, oldest first.
const EMBEDDED: &[(&str, &str)] = &[
    ("v2.29", include_str!("../../../catalog/v2.29.yaml")),
    ("v2.30", include_str!("../../../catalog/v2.30.yaml")),
    ("v2.31", include_str!("../../../catalog/v2.31.yaml")),
];

/// Why a catalog could not be selected or used.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// `--kkp-version` names a release no catalog is embedded for.
    #[error("unknown KKP version {given:?}: catalogs are embedded for {}", known.join(", "))]
    UnknownVersion {
        /// What the user gave.
        given: String,
        /// The releases that are known, newest first.
        known: Vec<String>,
    },
    /// An embedded catalog does not parse (a bug in this program's data).
    #[error("embedded catalog {line}: {message}")]
    Invalid {
        /// Release line of the catalog.
        line: String,
        /// What is wrong.
        message: String,
    },
}

/// KKP edition: some components exist only in the Enterprise Edition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum Edition {
    /// Community Edition (the default).
    #[default]
    Ce,
    /// Enterprise Edition.
    Ee,
}

/// How a component's `{{tag}}` is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TagKey {
    /// By the user cluster's Kubernetes `major.minor`.
    KubernetesMinor,
    /// By the CNI plugin version as KKP writes it (`v3.31`, `1.19.4`).
    CniVersion,
}

/// A `{{tag}}` lookup table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tags {
    /// What the table is keyed by.
    pub by: TagKey,
    /// Key → tag.
    pub map: BTreeMap<String, String>,
    /// Tag for keys not in the map; without it the component is not used for those keys.
    #[serde(default)]
    pub default: Option<String>,
}

/// A CNI condition.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CniWhen {
    /// `canal`, `cilium` or `none`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Semver constraint on the CNI version.
    #[serde(default)]
    pub version: Option<String>,
}

/// When KKP uses a component; every given condition must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct When {
    /// Semver constraint on the user cluster's Kubernetes version.
    #[serde(default)]
    pub kubernetes: Option<String>,
    /// Only for these providers.
    #[serde(default)]
    pub providers: Vec<String>,
    /// Not for these providers.
    #[serde(default)]
    pub not_providers: Vec<String>,
    /// Only for this CNI.
    #[serde(default)]
    pub cni: Option<CniWhen>,
    /// Only in this edition (`ce` or `ee`).
    #[serde(default)]
    pub edition: Option<String>,
}

/// The KubermaticConfiguration fields that may replace a component's repository or tag.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Override {
    /// Field whose value replaces the repository (`spec.ui.dockerRepository`).
    #[serde(default)]
    pub repository: Option<String>,
    /// Field whose value replaces the tag.
    #[serde(default)]
    pub tag: Option<String>,
    /// Field whose value is appended to the tag with a `-`.
    #[serde(default)]
    pub tag_suffix: Option<String>,
}

/// One control-plane component.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    /// Component name (the origin name of its findings).
    pub name: String,
    /// Image template (see the placeholders in the catalog file's header).
    pub image: String,
    /// Conditions.
    #[serde(default)]
    pub when: When,
    /// `{{tag}}` lookup.
    #[serde(default)]
    pub tags: Option<Tags>,
    /// Configuration fields that override the image.
    #[serde(default, rename = "override")]
    pub overrides: Option<Override>,
}

/// KKP's defaults for a release: what the matrix is when the configuration says nothing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Default user-cluster Kubernetes versions.
    pub kubernetes: Vec<String>,
    /// Every provider KKP renders images for.
    pub providers: Vec<String>,
    /// CNI type → every allowed version.
    pub cni: BTreeMap<String, Vec<String>>,
}

/// One release's catalog.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Catalog {
    /// Release line (`v2.31`).
    pub kkp_version: String,
    /// The release (`v2.31.0`): the tag of KKP's own images.
    pub kkp_tag: String,
    /// Defaults.
    pub defaults: Defaults,
    /// Components.
    pub components: Vec<Component>,
    /// The Enterprise Edition's default application catalog: app name → chart artefacts.
    #[serde(default)]
    pub default_applications: Vec<DefaultApplication>,
    /// The line's later releases, each a delta from the one before (only in a line file; emptied
    /// when a release is resolved).
    #[serde(default)]
    pub releases: Vec<Delta>,
}

/// A file under `shared/catalog/`: a full catalog (it has `components`), or a line whose first release
/// is a delta from another line's release.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CatalogFile {
    /// A full catalog (its `kkpTag`) plus deltas.
    Full(Box<Catalog>),
    /// Only deltas; the first one names its `from`.
    Deltas(DeltaFile),
}

/// A line file made of deltas only.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DeltaFile {
    kkp_version: String,
    releases: Vec<Delta>,
}

/// Additions to and removals from a list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListDelta {
    /// Entries to add (an entry already present is an error).
    #[serde(default)]
    pub add: Vec<String>,
    /// Entries to remove (an entry not present is an error).
    #[serde(default)]
    pub remove: Vec<String>,
}

/// Fields of a component a release replaces; absent fields stay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentPatch {
    /// New image template.
    #[serde(default)]
    pub image: Option<String>,
    /// New conditions (replaces all of them).
    #[serde(default)]
    pub when: Option<When>,
    /// New `{{tag}}` table (replaces it).
    #[serde(default)]
    pub tags: Option<Tags>,
}

/// What one release changes against the release it is built from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Delta {
    /// The release (`v2.30.6`).
    pub kkp_tag: String,
    /// The release it is a delta from; absent = the one before it in the file.
    #[serde(default)]
    pub from: Option<String>,
    /// Default Kubernetes versions.
    #[serde(default)]
    pub kubernetes: Option<ListDelta>,
    /// Providers.
    #[serde(default)]
    pub providers: Option<ListDelta>,
    /// CNI type → versions.
    #[serde(default)]
    pub cni: BTreeMap<String, ListDelta>,
    /// Component name → replaced fields (every component of that name).
    #[serde(default)]
    pub set: BTreeMap<String, ComponentPatch>,
    /// Components removed, by name (every component of that name).
    #[serde(default)]
    pub remove: Vec<String>,
    /// Components added.
    #[serde(default)]
    pub add: Vec<Component>,
    /// Replaces the EE default application catalog.
    #[serde(default)]
    pub default_applications: Option<Vec<DefaultApplication>>,
}

/// One app of the EE default application catalog.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultApplication {
    /// The ApplicationDefinition's name (what `spec.applications.defaultApplicationCatalog.applications` lists).
    pub name: String,
    /// Chart artefacts of its versions (`registry/repo/chart:version`).
    pub charts: Vec<String>,
}

/// A selected catalog and the KKP tag its KKP images get.
#[derive(Debug, Clone)]
pub struct Selected {
    /// The catalog.
    pub catalog: Catalog,
    /// `v2.31.0`, or the full version the user asked for.
    pub kkp_tag: String,
}

/// One image a catalog evaluation produced.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CatalogImage {
    /// Component name.
    pub component: String,
    /// Image reference.
    pub image: String,
}

/// Every embedded release, newest first (`v2.31.0`, `v2.30.6`, …). Parses every catalog file.
pub fn known_versions() -> Vec<String> {
    let mut tags: Vec<String> = EMBEDDED
        .iter()
        .filter_map(|(line, _)| load_file(line).ok())
        .flat_map(|f| f.tags())
        .collect();
    tags.sort_by_key(|t| std::cmp::Reverse(lenient_version(t)));
    tags
}

fn unknown(given: &str) -> CatalogError {
    CatalogError::UnknownVersion {
        given: given.to_string(),
        known: known_versions(),
    }
}

fn invalid(line: &str, message: String) -> CatalogError {
    CatalogError::Invalid {
        line: line.to_string(),
        message,
    }
}

impl CatalogFile {
    /// The releases the file defines, in file order.
    fn tags(&self) -> Vec<String> {
        let (head, deltas) = match self {
            CatalogFile::Full(c) => (Some(c.kkp_tag.clone()), &c.releases),
            CatalogFile::Deltas(d) => (None, &d.releases),
        };
        head.into_iter()
            .chain(deltas.iter().map(|d| d.kkp_tag.clone()))
            .collect()
    }
}

fn load_file(line: &str) -> Result<CatalogFile, CatalogError> {
    let (_, text) = EMBEDDED
        .iter()
        .find(|(v, _)| *v == line)
        .ok_or_else(|| unknown(line))?;
    let file = if text.contains("\ncomponents:") {
        serde_saphyr::from_str(text).map(|c| CatalogFile::Full(Box::new(c)))
    } else {
        serde_saphyr::from_str(text).map(CatalogFile::Deltas)
    };
    let file = file.map_err(|e| invalid(line, e.to_string()))?;
    let named = match &file {
        CatalogFile::Full(c) => &c.kkp_version,
        CatalogFile::Deltas(d) => &d.kkp_version,
    };
    if named != line {
        return Err(invalid(line, format!("kkpVersion is {named:?}")));
    }
    Ok(file)
}

/// Builds the catalog of one embedded release (`v2.30.6`) from its file and the deltas before it.
pub fn load_release(tag: &str) -> Result<Catalog, CatalogError> {
    let v = lenient_version(tag).ok_or_else(|| unknown(tag))?;
    let line = format!("v{}.{}", v.major, v.minor);
    let (mut current, deltas) = match load_file(&line)? {
        CatalogFile::Full(mut c) => {
            let deltas = std::mem::take(&mut c.releases);
            if c.kkp_tag == tag {
                return check(&line, *c);
            }
            (Some(*c), deltas)
        }
        CatalogFile::Deltas(d) => (None, d.releases),
    };
    for delta in deltas {
        let base = match (&delta.from, current.take()) {
            (Some(from), _) if from != tag => load_release(from)?,
            (None, Some(prev)) => prev,
            _ => return Err(invalid(&line, format!("release {} has no base", delta.kkp_tag))),
        };
        let done = delta.kkp_tag == tag;
        current = Some(delta.apply(&line, base)?);
        if done {
            return check(&line, current.unwrap_or_else(|| unreachable!()));
        }
    }
    Err(unknown(tag))
}

fn apply_list(line: &str, what: &str, list: &mut Vec<String>, delta: &ListDelta) -> Result<(), CatalogError> {
    for r in &delta.remove {
        let before = list.len();
        list.retain(|v| v != r);
        if list.len() == before {
            return Err(invalid(
                line,
                format!("{what}: removes {r:?}, which is not there"),
            ));
        }
    }
    for a in &delta.add {
        if list.contains(a) {
            return Err(invalid(
                line,
                format!("{what}: adds {a:?}, which is there already"),
            ));
        }
        list.push(a.clone());
    }
    Ok(())
}

impl Delta {
    /// The catalog of this release: `base` with the changes applied.
    fn apply(self, line: &str, mut base: Catalog) -> Result<Catalog, CatalogError> {
        let at = |m: String| format!("{}: {m}", self.kkp_tag);
        base.kkp_version = line.to_string();
        base.kkp_tag = self.kkp_tag.clone();
        let d = &mut base.defaults;
        if let Some(k) = &self.kubernetes {
            apply_list(line, &at("kubernetes".into()), &mut d.kubernetes, k)?;
            d.kubernetes.sort_by_key(|v| lenient_version(v));
        }
        if let Some(p) = &self.providers {
            apply_list(line, &at("providers".into()), &mut d.providers, p)?;
            d.providers.sort();
        }
        for (kind, delta) in &self.cni {
            let list = d.cni.entry(kind.clone()).or_default();
            apply_list(line, &at(format!("cni.{kind}")), list, delta)?;
            list.sort_by_key(|v| lenient_version(v));
        }
        for name in &self.remove {
            let before = base.components.len();
            base.components.retain(|c| &c.name != name);
            if base.components.len() == before {
                return Err(invalid(
                    line,
                    at(format!("removes component {name}, which is not there")),
                ));
            }
        }
        for (name, patch) in &self.set {
            let mut found = false;
            for c in base.components.iter_mut().filter(|c| &c.name == name) {
                found = true;
                if let Some(i) = &patch.image {
                    c.image = i.clone();
                }
                if let Some(w) = &patch.when {
                    c.when = w.clone();
                }
                if let Some(t) = &patch.tags {
                    c.tags = Some(t.clone());
                }
            }
            if !found {
                return Err(invalid(
                    line,
                    at(format!("sets component {name}, which is not there")),
                ));
            }
        }
        base.components.extend(self.add);
        if let Some(apps) = self.default_applications {
            base.default_applications = apps;
        }
        Ok(base)
    }
}

/// Parses catalog text of one full release; `line` names it in errors.
pub fn parse(line: &str, text: &str) -> Result<Catalog, CatalogError> {
    let catalog: Catalog = serde_saphyr::from_str(text).map_err(|e| invalid(line, e.to_string()))?;
    check(line, catalog)
}

/// Validates a resolved catalog (versions, constraints, placeholders).
fn check(line: &str, mut catalog: Catalog) -> Result<Catalog, CatalogError> {
    catalog.releases.clear();
    let line = &format!("{line} ({})", catalog.kkp_tag);
    if let Some(v) = catalog
        .defaults
        .kubernetes
        .iter()
        .find(|v| lenient_version(v).is_none())
    {
        return Err(invalid(
            line,
            format!("defaults.kubernetes: {v:?} is not a version"),
        ));
    }
    for c in &catalog.components {
        let bad = |message: String| invalid(line, format!("component {}: {message}", c.name));
        if let Some(k) = &c.when.kubernetes {
            parse_constraint(k).map_err(bad)?;
        }
        if let Some(v) = c.when.cni.as_ref().and_then(|c| c.version.as_ref()) {
            parse_constraint(v).map_err(bad)?;
        }
        if c.image.contains("{{tag}}") && c.tags.is_none() {
            return Err(bad("uses {{tag}} but has no tags".into()));
        }
    }
    Ok(catalog)
}

/// How a `--kkp-version` was resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The embedded release (`v2.30.6`).
    pub tag: String,
    /// True when only a line was given (`v2.30`) and its newest patch was picked.
    pub newest_of_line: bool,
}

/// Resolves what a user or a cluster names as the KKP version (`v2.30.6`, `2.30.6`, or a line `v2.30`
/// = its newest embedded patch) to an embedded release. Anything else is
/// [`CatalogError::UnknownVersion`] listing the embedded releases: never another release's facts.
pub fn resolve_kkp_version(given: &str) -> Result<Resolved, CatalogError> {
    let trimmed = given.trim().trim_start_matches('v');
    let parts: Vec<&str> = trimmed.split('.').collect();
    let numeric = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    match parts.as_slice() {
        [major, minor] if numeric(major) && numeric(minor) => {
            let line = format!("v{major}.{minor}");
            if !EMBEDDED.iter().any(|(v, _)| *v == line) {
                return Err(unknown(given));
            }
            let newest = load_file(&line)?
                .tags()
                .into_iter()
                .max_by_key(|t| lenient_version(t))
                .ok_or_else(|| unknown(given))?;
            Ok(Resolved {
                tag: newest,
                newest_of_line: true,
            })
        }
        [major, minor, _] if numeric(major) && numeric(minor) => {
            let tag = format!("v{trimmed}");
            let line = format!("v{major}.{minor}");
            let known = EMBEDDED.iter().any(|(v, _)| *v == line) && load_file(&line)?.tags().contains(&tag);
            if !known {
                return Err(unknown(given));
            }
            Ok(Resolved {
                tag,
                newest_of_line: false,
            })
        }
        _ => Err(unknown(given)),
    }
}

/// One embedded release as `--list-kkp-versions -o json` prints it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// The release (`v2.30.6`).
    pub version: String,
    /// Default user-cluster Kubernetes versions.
    pub kubernetes: Vec<String>,
    /// CNI type → versions.
    pub cni: BTreeMap<String, Vec<String>>,
    /// machine-controller image.
    pub machine_controller: Option<String>,
    /// operating-system-manager image.
    pub operating_system_manager: Option<String>,
}

impl Catalog {
    /// The image of the first component called `name` (a fixed image such as operating-system-manager's).
    pub fn component_image(&self, name: &str) -> Option<&str> {
        self.components
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.image.as_str())
    }
}

/// Summaries of the given releases.
pub fn summaries(tags: &[String]) -> Result<Vec<Summary>, CatalogError> {
    tags.iter()
        .map(|t| {
            let c = load_release(t)?;
            Ok(Summary {
                version: t.clone(),
                machine_controller: c.component_image("machine-controller").map(String::from),
                operating_system_manager: c.component_image("operating-system-manager").map(String::from),
                kubernetes: c.defaults.kubernetes,
                cni: c.defaults.cni,
            })
        })
        .collect()
}

/// The newest embedded release.
pub fn newest() -> Result<String, CatalogError> {
    let (line, _) = EMBEDDED.last().ok_or_else(|| unknown(""))?;
    Ok(resolve_kkp_version(line)?.tag)
}

/// Selects the catalog for `--kkp-version` (`v2.30.6`, `2.30.6`, a line `v2.30`; `None` = the newest
/// embedded release). A line alone says on stderr which patch it picked.
pub fn select(version: Option<&str>) -> Result<Selected, CatalogError> {
    let tag = match version {
        None => newest()?,
        Some(given) => {
            let r = resolve_kkp_version(given)?;
            if r.newest_of_line {
                tracing::warn!(
                    "--kkp-version {}: using {}, the newest embedded patch of that line",
                    given.trim(),
                    r.tag
                );
            }
            r.tag
        }
    };
    let catalog = load_release(&tag)?;
    Ok(Selected {
        catalog,
        kkp_tag: tag,
    })
}

/// Selects every release of an upgrade window (`["v2.30.6", "v2.31.0"]`, or comma-separated entries),
/// deduplicated, oldest first. Empty = the newest embedded release.
pub fn select_all(versions: &[String]) -> Result<Vec<Selected>, CatalogError> {
    let given: Vec<&str> = versions
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    if given.is_empty() {
        return Ok(vec![select(None)?]);
    }
    let mut out: Vec<Selected> = Vec::new();
    for g in given {
        let s = select(Some(g))?;
        if !out.iter().any(|o| o.kkp_tag == s.kkp_tag) {
            out.push(s);
        }
    }
    out.sort_by_key(|s| lenient_version(&s.kkp_tag));
    Ok(out)
}

/// Parses a Masterminds-style constraint (`>= 1.34`, `>=1.33 <1.35`, `1.34`, `a || b`) into
/// alternatives of semver requirements. A bare version means "that version" (`1.34` = any 1.34.x).
pub fn parse_constraint(text: &str) -> Result<Vec<VersionReq>, String> {
    let mut alternatives = Vec::new();
    for alt in text.split("||") {
        let mut comparators: Vec<String> = Vec::new();
        let mut pending_op = String::new();
        for token in alt.split([' ', ',']).filter(|t| !t.is_empty()) {
            if token.chars().all(|c| "<>=!~^".contains(c)) {
                pending_op.push_str(token);
                continue;
            }
            let op = std::mem::take(&mut pending_op);
            let has_op = token.starts_with(['<', '>', '=', '~', '^', '!']);
            let token = token.strip_prefix('v').unwrap_or(token);
            let cmp = match (op.as_str(), has_op) {
                ("", false) => format!("={token}"),
                ("", true) => strip_v_after_op(token),
                (op, _) => format!("{op}{token}"),
            };
            comparators.push(cmp);
        }
        if !pending_op.is_empty() || comparators.is_empty() {
            return Err(format!("invalid version constraint {text:?}"));
        }
        let req = VersionReq::parse(&comparators.join(", "))
            .map_err(|e| format!("invalid version constraint {text:?}: {e}"))?;
        alternatives.push(req);
    }
    Ok(alternatives)
}

fn strip_v_after_op(token: &str) -> String {
    let i = token.find(|c: char| !"<>=!~^".contains(c)).unwrap_or(token.len());
    let (op, rest) = token.split_at(i);
    format!("{op}{}", rest.strip_prefix('v').unwrap_or(rest))
}

/// True when `version` satisfies one of the alternatives.
pub fn matches(alternatives: &[VersionReq], version: &Version) -> bool {
    alternatives.iter().any(|r| r.matches(version))
}

/// Parses a version leniently: `v1.35`, `1.35.7`, `v3.31` (missing parts are zero).
pub fn lenient_version(text: &str) -> Option<Version> {
    let t = text.trim().trim_start_matches('v');
    if let Ok(v) = Version::parse(t) {
        return Some(v);
    }
    let mut parts = t.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().map_or(Some(0), |p| p.parse().ok())?;
    let patch = parts.next().map_or(Some(0), |p| p.parse().ok())?;
    if parts.next().is_some() {
        return None;
    }
    Some(Version::new(major, minor, patch))
}

impl Catalog {
    /// Evaluates every component over `matrix`; `lookup` gives configuration values of override fields
    /// (`None` = overrides are not honoured or not set). Images are deduplicated per component and
    /// returned sorted.
    pub fn images(
        &self,
        matrix: &Matrix,
        kkp_tag: &str,
        edition: Edition,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Vec<CatalogImage> {
        let mut out = BTreeSet::new();
        for c in &self.components {
            for image in c.evaluate(matrix, kkp_tag, edition) {
                let image = c.apply_overrides(&image, lookup);
                out.insert(CatalogImage {
                    component: c.name.clone(),
                    image,
                });
            }
        }
        out.into_iter().collect()
    }
}

impl Component {
    fn uses_version(&self) -> bool {
        self.image.contains("{{version}}")
            || self.image.contains("{{minor}}")
            || self.when.kubernetes.is_some()
            || matches!(&self.tags, Some(t) if t.by == TagKey::KubernetesMinor)
    }

    fn uses_cni(&self) -> bool {
        self.image.contains("{{cniVersion}}")
            || self.when.cni.is_some()
            || matches!(&self.tags, Some(t) if t.by == TagKey::CniVersion)
    }

    fn edition_ok(&self, edition: Edition) -> bool {
        match self.when.edition.as_deref() {
            Some("ee") => edition == Edition::Ee,
            Some("ce") => edition == Edition::Ce,
            _ => true,
        }
    }

    fn provider_ok(&self, matrix: &Matrix) -> bool {
        let allowed = |p: &String| {
            (self.when.providers.is_empty() || self.when.providers.contains(p))
                && !self.when.not_providers.contains(p)
        };
        matrix.providers.iter().any(allowed)
    }

    /// The images this component yields over the matrix (unsorted, may repeat).
    fn evaluate(&self, matrix: &Matrix, kkp_tag: &str, edition: Edition) -> Vec<String> {
        if !self.edition_ok(edition) || !self.provider_ok(matrix) {
            return Vec::new();
        }
        let k8s_req = self.when.kubernetes.as_deref().map(parse_constraint);
        let cni_req = self
            .when
            .cni
            .as_ref()
            .and_then(|c| c.version.as_deref())
            .map(parse_constraint);
        let versions: Vec<Option<&Version>> = if self.uses_version() {
            matrix.versions.iter().map(Some).collect()
        } else {
            vec![None]
        };
        let cnis: Vec<Option<&Cni>> = if self.uses_cni() {
            matrix.cnis.iter().map(Some).collect()
        } else {
            vec![None]
        };
        let mut out = Vec::new();
        for version in &versions {
            if let (Some(v), Some(Ok(req))) = (version, &k8s_req)
                && !matches(req, v)
            {
                continue;
            }
            for cni in &cnis {
                if let (Some(cni), Some(want)) = (cni, &self.when.cni) {
                    if cni.kind != want.kind {
                        continue;
                    }
                    if let Some(Ok(req)) = &cni_req {
                        match lenient_version(&cni.version) {
                            Some(v) if matches(req, &v) => {}
                            _ => continue,
                        }
                    }
                }
                if let Some(image) = self.render(*version, *cni, kkp_tag) {
                    out.push(image);
                }
            }
        }
        out
    }

    fn render(&self, version: Option<&Version>, cni: Option<&Cni>, kkp_tag: &str) -> Option<String> {
        let minor = version.map(|v| format!("{}.{}", v.major, v.minor));
        let tag = match &self.tags {
            None => None,
            Some(t) => {
                let key = match t.by {
                    TagKey::KubernetesMinor => minor.clone()?,
                    TagKey::CniVersion => cni?.version.clone(),
                };
                Some(t.map.get(&key).or(t.default.as_ref())?.clone())
            }
        };
        let mut image = self.image.replace("{{kkpTag}}", kkp_tag);
        if let Some(v) = version {
            image = image.replace("{{version}}", &v.to_string());
        }
        if let Some(m) = &minor {
            image = image.replace("{{minor}}", m);
        }
        if let Some(c) = cni {
            image = image.replace("{{cniVersion}}", c.version.trim_start_matches('v'));
        }
        if let Some(t) = &tag {
            image = image.replace("{{tag}}", t);
        }
        (!image.contains("{{")).then_some(image)
    }

    /// Replaces repository / tag / adds a tag suffix from the configuration.
    fn apply_overrides(&self, image: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
        let Some(o) = &self.overrides else {
            return image.to_string();
        };
        let get = |field: &Option<String>| field.as_deref().and_then(lookup).filter(|v| !v.trim().is_empty());
        let (mut repo, mut tag) = split_tag(image);
        if let Some(r) = get(&o.repository) {
            repo = r;
        }
        if let Some(t) = get(&o.tag) {
            tag = Some(t);
        } else if let (Some(s), Some(t)) = (get(&o.tag_suffix), tag.as_mut()) {
            t.push('-');
            t.push_str(&s);
        }
        match tag {
            Some(t) => format!("{repo}:{t}"),
            None => repo,
        }
    }
}

/// Splits `repo:tag` (a `:` in the registry host's port is not a tag separator).
fn split_tag(image: &str) -> (String, Option<String>) {
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') && !image.contains('@') => {
            (image[..i].to_string(), Some(image[i + 1..].to_string()))
        }
        _ => (image.to_string(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(versions: &[&str], providers: &[&str], cnis: &[(&str, &str)]) -> Matrix {
        Matrix {
            versions: versions.iter().map(|v| Version::parse(v).unwrap()).collect(),
            providers: providers.iter().map(|p| p.to_string()).collect(),
            cnis: cnis
                .iter()
                .map(|(k, v)| Cni {
                    kind: k.to_string(),
                    version: v.to_string(),
                })
                .collect(),
        }
    }

    fn images_of(sel: &Selected, m: &Matrix, edition: Edition) -> BTreeSet<String> {
        sel.catalog
            .images(m, &sel.kkp_tag, edition, &|_| None)
            .into_iter()
            .map(|i| i.image)
            .collect()
    }

    #[test]
    fn every_embedded_catalog_parses() {
        let known = known_versions();
        assert!(known.len() >= 8, "{known:?}");
        for tag in known {
            let c = load_release(&tag).unwrap();
            assert_eq!(c.kkp_tag, tag);
            assert!(tag.starts_with(&c.kkp_version), "{tag} in {}", c.kkp_version);
            assert!(
                c.components.len() > 50,
                "{tag} has {} components",
                c.components.len()
            );
        }
    }

    #[test]
    fn version_spellings_select_the_line_and_full_versions_set_the_tag() {
        for given in ["v2.31", "2.31", "v2.31.0", " 2.31.0 "] {
            let s = select(Some(given)).unwrap();
            assert_eq!(s.catalog.kkp_version, "v2.31", "{given}");
            assert_eq!(s.kkp_tag, "v2.31.0", "{given}");
        }
        let r = resolve_kkp_version("v2.30").unwrap();
        assert_eq!((r.tag.as_str(), r.newest_of_line), ("v2.30.6", true));
        let r = resolve_kkp_version("2.30.2").unwrap();
        assert_eq!((r.tag.as_str(), r.newest_of_line), ("v2.30.2", false));
        assert_eq!(select(None).unwrap().kkp_tag, newest().unwrap());
        // A patch release that is not embedded is an error, not the line's facts.
        assert!(select(Some("2.31.4")).is_err());
    }

    #[test]
    fn unknown_versions_list_the_known_ones() {
        for given in ["v2.19", "2", "latest", "2.31.x", "", "v2.30.7", "v2.31.1"] {
            let e = select(Some(given)).unwrap_err().to_string();
            assert!(
                e.contains("unknown KKP version") && e.contains("v2.31"),
                "{given}: {e}"
            );
        }
    }

    #[test]
    fn constraints_follow_masterminds_spelling() {
        let v = |s: &str| Version::parse(s).unwrap();
        let c = parse_constraint(">= 1.34").unwrap();
        assert!(matches(&c, &v("1.34.0")) && !matches(&c, &v("1.33.9")));
        let c = parse_constraint(">=1.33 <1.35").unwrap();
        assert!(matches(&c, &v("1.34.2")) && !matches(&c, &v("1.35.0")));
        let c = parse_constraint("1.34").unwrap();
        assert!(matches(&c, &v("1.34.7")) && !matches(&c, &v("1.35.0")));
        let c = parse_constraint("1.33.0 || >= v1.36").unwrap();
        assert!(matches(&c, &v("1.33.0")) && matches(&c, &v("1.36.3")) && !matches(&c, &v("1.34.1")));
        assert!(parse_constraint(">=").is_err());
        assert!(parse_constraint("banana").is_err());
    }

    #[test]
    fn per_version_components_follow_the_matrix() {
        let sel = select(None).unwrap();
        let m = matrix(
            &["1.33.5", "1.36.3"],
            &["aws", "openstack"],
            &[("canal", "v3.31")],
        );
        let got = images_of(&sel, &m, Edition::Ce);
        for want in [
            "registry.k8s.io/kube-apiserver:v1.33.5",
            "registry.k8s.io/kube-apiserver:v1.36.3",
            "registry.k8s.io/kube-proxy:v1.36.3",
            "registry.k8s.io/etcd:3.5.21-0",
            "registry.k8s.io/etcd:3.6.12-0",
            "registry.k8s.io/kas-network-proxy/proxy-server:v0.33.1",
            "registry.k8s.io/kas-network-proxy/proxy-agent:v0.35.0",
            "registry.k8s.io/provider-aws/cloud-controller-manager:v1.33.2",
            "registry.k8s.io/provider-os/openstack-cloud-controller-manager:v1.36.0",
            "quay.io/calico/node:v3.31.3",
            "docker.io/flannel/flannel:v0.24.4",
            "quay.io/kubermatic/kubermatic:v2.31.0",
            "docker.io/grafana/agent:v0.29.0",
        ] {
            assert!(got.contains(want), "missing {want}");
        }
        for absent in [
            "registry.k8s.io/kube-apiserver:v1.35.0",
            "mcr.microsoft.com/oss/v2/kubernetes/azure-cloud-controller-manager:v1.33.16",
            "quay.io/calico/node:v3.30.3",
            "quay.io/kubermatic/kubermatic-ee:v2.31.0",
            "quay.io/kubermatic/metering:v1.4.1",
        ] {
            assert!(!got.contains(absent), "unexpected {absent}");
        }
        assert!(got.iter().all(|i| !i.contains("{{")), "{got:?}");
    }

    #[test]
    fn edition_cni_and_provider_conditions_hold() {
        let sel = select(None).unwrap();
        let m = matrix(
            &["1.35.0"],
            &["edge"],
            &[("cilium", "v1.12"), ("cilium", "1.19.4")],
        );
        let ce = images_of(&sel, &m, Edition::Ce);
        assert!(
            ce.iter()
                .any(|i| i.starts_with("quay.io/cilium/cilium:v1.19.4@sha256:"))
        );
        assert!(
            !ce.iter().any(|i| i.contains("cilium:v1.12")),
            "v1.12 is not a system app"
        );
        assert!(
            !ce.iter().any(|i| i.contains("machine-controller")),
            "edge runs no MC"
        );
        assert!(!ce.iter().any(|i| i.contains("calico")));
        let ee = images_of(&sel, &m, Edition::Ee);
        assert!(ee.contains("quay.io/kubermatic/kubermatic-ee:v2.31.0"));
        assert!(ee.contains("quay.io/kubermatic/dashboard-ee:v2.31.0"));
        assert!(!ee.contains("quay.io/kubermatic/kubermatic:v2.31.0"));
    }

    #[test]
    fn overrides_replace_repository_tag_and_suffix() {
        let sel = select(Some("v2.31.0")).unwrap();
        let m = matrix(&["1.35.0"], &["aws"], &[]);
        let lookup = |field: &str| match field {
            "spec.ui.dockerRepository" => Some("reg.local:5000/kkp/dashboard".to_string()),
            "spec.ui.dockerTagSuffix" => Some("custom".to_string()),
            "spec.userCluster.machineController.imageTag" => Some("v9.9.9".to_string()),
            _ => None,
        };
        let got: BTreeMap<String, String> = sel
            .catalog
            .images(&m, &sel.kkp_tag, Edition::Ce, &lookup)
            .into_iter()
            .map(|i| (i.component, i.image))
            .collect();
        assert_eq!(
            got["kubermatic-ui"],
            "reg.local:5000/kkp/dashboard:v2.31.0-custom"
        );
        assert_eq!(got["kubermatic-api"], "quay.io/kubermatic/dashboard:v2.31.0");
        assert_eq!(
            got["machine-controller"],
            "quay.io/kubermatic/machine-controller:v9.9.9"
        );
    }
}
