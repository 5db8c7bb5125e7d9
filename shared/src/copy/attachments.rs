//! Signatures, attestations, SBOMs and OCI referrers: what is attached to an image travels with it.
//!
//! Image policy (Kyverno, the sigstore policy-controller) inside an air gap rejects images whose
//! signatures stayed outside, so every planned image brings what is attached to its digest and to each
//! per-platform manifest digest of its index (cosign `--recursive` signs those):
//!
//! - cosign's tags `<repo>:sha256-<hex>.sig`, `.att`, `.sbom`;
//! - OCI 1.1 referrers: `GET /v2/<name>/referrers/<digest>` where the registry answers it, else the
//!   referrers fallback tag `<repo>:sha256-<hex>` (an index of descriptors).
//!
//! Discovery costs one tag listing per source repository and one referrers probe per registry
//! ([`Finder`]). Attachments are copied by the copy engine like images (raw bytes, digests unchanged,
//! blobs deduplicated and mounted, manifests after their blobs), after their subject. A target without
//! the referrers API gets the fallback tag, kept by read-merge-write ([`merge_fallback`]): entries
//! already listed there are never dropped, and the tag is read again after the write and merged again
//! when another writer got in between.
//!
//! Knows registries, never plans or KKP.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::registry::manifest::{self, ManifestView};
use crate::registry::{Client, RawManifest, RegistryError, Repository};

/// What an attachment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// cosign signature tag `sha256-<hex>.sig`.
    Sig,
    /// cosign attestation tag `sha256-<hex>.att`.
    Att,
    /// cosign SBOM tag `sha256-<hex>.sbom`.
    Sbom,
    /// An OCI referrer (its manifest's `subject` is the image).
    Referrer,
}

impl Kind {
    /// The cosign tag suffix, for the tag kinds.
    pub fn suffix(self) -> Option<&'static str> {
        match self {
            Kind::Sig => Some("sig"),
            Kind::Att => Some("att"),
            Kind::Sbom => Some("sbom"),
            Kind::Referrer => None,
        }
    }

    /// Its name in reports.
    pub fn as_str(self) -> &'static str {
        self.suffix().unwrap_or("referrer")
    }

    const TAGS: [Kind; 3] = [Kind::Sig, Kind::Att, Kind::Sbom];
}

/// Which kinds a run copies (`--attachments sig,att,sbom,referrers`, `--skip-attachments`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kinds {
    sig: bool,
    att: bool,
    sbom: bool,
    referrers: bool,
}

/// The library's default looks for nothing (a [`CopyOptions`](super::CopyOptions) made in code copies
/// images only); the CLI's default is [`Kinds::all`].
impl Default for Kinds {
    fn default() -> Self {
        Kinds::none()
    }
}

impl Kinds {
    /// Every kind (the default).
    pub const fn all() -> Kinds {
        Kinds {
            sig: true,
            att: true,
            sbom: true,
            referrers: true,
        }
    }

    /// None (`--skip-attachments`).
    pub const fn none() -> Kinds {
        Kinds {
            sig: false,
            att: false,
            sbom: false,
            referrers: false,
        }
    }

    /// Parses a comma-separated list of `sig`, `att`, `sbom`, `referrers` (or `all`, `none`).
    pub fn parse(list: &[String]) -> Result<Kinds, String> {
        let mut k = Kinds::none();
        for item in list.iter().flat_map(|s| s.split(',')).map(str::trim) {
            match item {
                "" => {}
                "sig" | "sigs" | "signatures" => k.sig = true,
                "att" | "atts" | "attestations" => k.att = true,
                "sbom" | "sboms" => k.sbom = true,
                "referrers" | "referrer" => k.referrers = true,
                "all" => k = Kinds::all(),
                "none" => {}
                other => {
                    return Err(format!(
                        "--attachments {other:?}: expected sig, att, sbom, referrers (comma-separated), all or none"
                    ));
                }
            }
        }
        Ok(k)
    }

    /// True when `kind` is wanted.
    pub fn has(self, kind: Kind) -> bool {
        match kind {
            Kind::Sig => self.sig,
            Kind::Att => self.att,
            Kind::Sbom => self.sbom,
            Kind::Referrer => self.referrers,
        }
    }

    /// True when nothing is wanted.
    pub fn is_empty(self) -> bool {
        !(self.sig || self.att || self.sbom || self.referrers)
    }
}

/// One thing attached to an image.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// What it is.
    pub kind: Kind,
    /// The digest it is attached to: the image's, or one of its per-platform manifests'.
    pub subject: String,
    /// Its manifest's digest.
    pub digest: String,
    /// Its manifest's media type.
    pub media_type: String,
    /// Its artifact type (referrers), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The cosign tag it is found under (tag kinds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The referrer's descriptor as the source listed it (for the target's fallback tag).
    #[serde(skip)]
    pub descriptor: Option<Value>,
}

/// The index annotation of an archived image listing what is attached to it (a JSON array of
/// [`Attachment`]s with their referrer descriptors); their manifests and blobs are in the archive.
pub const ARCHIVE_ANNOTATION: &str = "io.kubermatic.kkp.attachments";

#[derive(Serialize, Deserialize)]
struct Archived {
    #[serde(flatten)]
    attachment: Attachment,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    descriptor: Option<Value>,
}

/// The [`ARCHIVE_ANNOTATION`] value for `items`.
pub fn to_annotation(items: &[Attachment]) -> String {
    let list: Vec<Archived> = items
        .iter()
        .map(|a| Archived {
            attachment: a.clone(),
            descriptor: a.descriptor.clone(),
        })
        .collect();
    serde_json::to_string(&list).unwrap_or_default()
}

/// The attachments an [`ARCHIVE_ANNOTATION`] value lists; `Err` says what is wrong.
pub fn from_annotation(value: &str) -> Result<Vec<Attachment>, String> {
    let list: Vec<Archived> = serde_json::from_str(value).map_err(|e| e.to_string())?;
    Ok(list
        .into_iter()
        .map(|a| Attachment {
            descriptor: a.descriptor,
            ..a.attachment
        })
        .collect())
}

/// Everything attached to one image.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// In discovery order: per subject, tags first, then referrers.
    pub items: Vec<Attachment>,
    /// Per subject: the source's fallback tag index, when the referrers came from one.
    pub fallback_indexes: HashMap<String, RawManifest>,
}

/// The tag a digest's attachments are found under: `sha256-<hex>` (+ `.sig` …).
pub fn tag_for(digest: &str, suffix: Option<&str>) -> Option<String> {
    let (alg, hex) = digest.split_once(':')?;
    if alg.is_empty() || hex.is_empty() {
        return None;
    }
    Some(match suffix {
        Some(s) => format!("{alg}-{hex}.{s}"),
        None => format!("{alg}-{hex}"),
    })
}

/// True for a tag that is an attachment of some digest (no image of its own).
pub fn is_attachment_tag(tag: &str) -> bool {
    tag.starts_with("sha256-")
}

/// A value computed once and shared by everyone who asks for it meanwhile.
pub(crate) type Cell<T> = Arc<OnceCell<T>>;

/// The cell for `key` in `map` (made empty when new).
pub(crate) fn cell<K: std::hash::Hash + Eq, T>(map: &Mutex<HashMap<K, Cell<T>>>, key: K) -> Cell<T> {
    map.lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(key)
        .or_default()
        .clone()
}

/// Discovery state of a run: one tag listing per repository, one referrers probe per registry.
#[derive(Default)]
pub struct Finder {
    kinds: Kinds,
    tags: Mutex<HashMap<Repository, Cell<Arc<HashSet<String>>>>>,
    /// Per host: does it answer the referrers API?
    api: Mutex<HashMap<String, Cell<bool>>>,
    /// The probe's answer, until the probed digest's referrers are asked for.
    probed: Mutex<HashMap<(Repository, String), Bytes>>,
}

impl Finder {
    /// A finder for `kinds`.
    pub fn new(kinds: Kinds) -> Finder {
        Finder {
            kinds,
            ..Finder::default()
        }
    }

    /// The kinds looked for.
    pub fn kinds(&self) -> Kinds {
        self.kinds
    }

    /// The attachment tags of `repo`, listed once per run.
    pub async fn tags(
        &self,
        client: &Client,
        repo: &Repository,
    ) -> Result<Arc<HashSet<String>>, RegistryError> {
        cell(&self.tags, repo.clone())
            .get_or_try_init(|| async {
                let all = client.list_tags(repo).await?;
                Ok::<_, RegistryError>(Arc::new(
                    all.into_iter().filter(|t| is_attachment_tag(t)).collect(),
                ))
            })
            .await
            .cloned()
    }

    /// Whether `repo`'s registry answers the referrers API, asked once per registry (with `digest`;
    /// the answer is kept for [`Finder::api_referrers`] of that digest, so the probe costs nothing extra).
    async fn api(&self, client: &Client, repo: &Repository, digest: &str) -> Result<bool, RegistryError> {
        let probe = cell(&self.api, repo.host.clone());
        probe
            .get_or_try_init(|| async {
                // A registry that refuses the endpoint (401/403 for a path it does not know) has no
                // referrers API for us; only a fault worth retrying is an error.
                let answer = match client.referrers(repo, digest).await {
                    Ok(a) => a,
                    Err(e) if !e.is_transient() && !e.gave_up() => {
                        tracing::debug!(host = %repo.host, error = %e, "referrers probe refused; using the fallback tag");
                        None
                    }
                    Err(e) => return Err(e),
                };
                let has = answer.is_some();
                if let Some(answer) = answer {
                    self.probed
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert((repo.clone(), digest.to_string()), answer);
                }
                tracing::debug!(host = %repo.host, referrers_api = has, "referrers API probed");
                Ok::<_, RegistryError>(has)
            })
            .await
            .copied()
    }

    /// The referrers API answer for `digest`, or `None` when `repo`'s registry has no such API (asked
    /// once per registry: the first answer decides).
    pub async fn api_referrers(
        &self,
        client: &Client,
        repo: &Repository,
        digest: &str,
    ) -> Result<Option<Bytes>, RegistryError> {
        if !self.api(client, repo, digest).await? {
            return Ok(None);
        }
        let kept = self
            .probed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(repo.clone(), digest.to_string()));
        match kept {
            Some(answer) => Ok(Some(answer)),
            None => client.referrers(repo, digest).await,
        }
    }

    /// Whether anything may be attached to the image `digest` of `repo` at all: an attachment tag is
    /// listed, or its registry has the referrers API. The tag listing and the probe (the first image of
    /// a registry) go out together; when neither finds anything, the image costs no further request.
    pub async fn may_have(
        &self,
        client: &Client,
        repo: &Repository,
        digest: &str,
    ) -> Result<bool, RegistryError> {
        if self.kinds.is_empty() {
            return Ok(false);
        }
        let api = async {
            match self.kinds.referrers {
                true => self.api(client, repo, digest).await,
                false => Ok(false),
            }
        };
        let (tags, api) = futures::future::try_join(self.tags(client, repo), api).await?;
        Ok(!tags.is_empty() || api)
    }

    /// What is attached to each of `subjects` (an image digest and its per-platform manifest digests)
    /// in `repo`.
    pub async fn find(
        &self,
        client: &Client,
        repo: &Repository,
        subjects: &[String],
    ) -> Result<Found, RegistryError> {
        let mut found = Found::default();
        if self.kinds.is_empty() {
            return Ok(found);
        }
        let tags = self.tags(client, repo).await?;
        let per_subject = subjects.iter().map(|s| self.find_one(client, repo, &tags, s));
        for (items, fallback) in futures::future::try_join_all(per_subject).await? {
            found.items.extend(items);
            if let Some((subject, index)) = fallback {
                found.fallback_indexes.insert(subject, index);
            }
        }
        Ok(found)
    }

    async fn find_one(
        &self,
        client: &Client,
        repo: &Repository,
        tags: &HashSet<String>,
        subject: &str,
    ) -> Result<(Vec<Attachment>, Option<(String, RawManifest)>), RegistryError> {
        let mut items = Vec::new();
        for kind in Kind::TAGS {
            if !self.kinds.has(kind) {
                continue;
            }
            let Some(tag) = tag_for(subject, kind.suffix()).filter(|t| tags.contains(t)) else {
                continue;
            };
            // Listed a moment ago; gone now is not an error (a re-signing in between).
            let Some(info) = client.head_manifest(repo, &tag).await? else {
                continue;
            };
            items.push(Attachment {
                kind,
                subject: subject.to_string(),
                digest: info.digest,
                media_type: info.media_type,
                artifact_type: None,
                tag: Some(tag),
                descriptor: None,
            });
        }
        if !self.kinds.referrers {
            return Ok((items, None));
        }
        let mut fallback = None;
        let index = match self.api_referrers(client, repo, subject).await? {
            Some(bytes) => Some(bytes),
            None => match tag_for(subject, None).filter(|t| tags.contains(t)) {
                Some(tag) => match client.get_manifest(repo, &tag).await {
                    Ok(raw) => {
                        let bytes = raw.bytes.clone();
                        fallback = Some((subject.to_string(), raw));
                        Some(bytes)
                    }
                    Err(RegistryError::NotFound { .. }) => None,
                    Err(e) => return Err(e),
                },
                None => None,
            },
        };
        if let Some(bytes) = index {
            let bad = |detail: String| RegistryError::BadManifest {
                what: format!("referrers of {repo}@{subject}"),
                detail,
            };
            let doc: Value = serde_json::from_slice(&bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
            let mut seen = BTreeSet::new();
            for d in doc
                .get("manifests")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(digest) = d.get("digest").and_then(Value::as_str) else {
                    return Err(bad("an entry without a digest".into()));
                };
                if !seen.insert(digest.to_string()) {
                    continue;
                }
                let text = |k: &str| d.get(k).and_then(Value::as_str).map(str::to_string);
                items.push(Attachment {
                    kind: Kind::Referrer,
                    subject: subject.to_string(),
                    digest: digest.to_string(),
                    media_type: text("mediaType").unwrap_or_else(|| manifest::OCI_MANIFEST.into()),
                    artifact_type: text("artifactType"),
                    tag: None,
                    descriptor: Some(d.clone()),
                });
            }
        }
        Ok((items, fallback))
    }
}

/// The subjects of an image: its digest and, for an index, each child manifest's digest.
pub fn subjects_of(top: &RawManifest) -> Vec<String> {
    let mut out = vec![top.digest.clone()];
    if manifest::is_index(&top.media_type)
        && let Ok(view) = ManifestView::parse(&top.bytes)
    {
        for child in view.manifests {
            if !out.contains(&child.digest) {
                out.push(child.digest);
            }
        }
    }
    out
}

/// Attempts of the read-merge-write of a fallback tag before giving up.
const MERGE_ATTEMPTS: u32 = 6;

/// Digests listed in a referrers index.
fn listed(doc: &Value) -> Vec<String> {
    doc.get("manifests")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|d| d.get("digest").and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// Keeps `dst`'s referrers fallback tag for `subject` listing every one of `wanted` (descriptors, as the
/// source listed them) without dropping an entry already there. Read, merge, write, read again: when the
/// read-back lacks an entry (another run wrote in between), merge again. `source_index` (the source's
/// own fallback index) is written as it is when the target has none and it lists exactly `wanted`, so
/// its digest is the source's. Returns whether anything was written.
pub async fn merge_fallback(
    client: &Client,
    dst: &Repository,
    subject: &str,
    wanted: &[Value],
    source_index: Option<&RawManifest>,
) -> Result<bool, RegistryError> {
    let Some(tag) = tag_for(subject, None) else {
        return Ok(false);
    };
    let bad = |detail: String| RegistryError::BadManifest {
        what: format!("referrers fallback tag {dst}:{tag}"),
        detail,
    };
    let wanted_digests: Vec<String> = wanted
        .iter()
        .filter_map(|d| d.get("digest").and_then(Value::as_str).map(str::to_string))
        .collect();
    let mut wrote = false;
    // Entries seen at the target in any read: none of them may disappear through us.
    let mut must_keep: Vec<(String, Value)> = Vec::new();
    for attempt in 0..MERGE_ATTEMPTS {
        let existing = match client.get_manifest(dst, &tag).await {
            Ok(raw) => Some(raw),
            Err(RegistryError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        let mut doc: Value = match &existing {
            Some(raw) => serde_json::from_slice(&raw.bytes).map_err(|e| bad(format!("not JSON: {e}")))?,
            None => serde_json::json!({
                "schemaVersion": 2,
                "mediaType": manifest::OCI_INDEX,
                "manifests": [],
            }),
        };
        let have = listed(&doc);
        for d in doc
            .get("manifests")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(x) = d.get("digest").and_then(Value::as_str)
                && !must_keep.iter().any(|(k, _)| k == x)
            {
                must_keep.push((x.to_string(), d.clone()));
            }
        }
        let missing: Vec<&Value> = wanted
            .iter()
            .filter(|d| {
                d.get("digest")
                    .and_then(Value::as_str)
                    .is_some_and(|x| !have.iter().any(|h| h == x))
            })
            .collect();
        let lost: Vec<&Value> = must_keep
            .iter()
            .filter(|(k, _)| !have.contains(k))
            .map(|(_, d)| d)
            .collect();
        if missing.is_empty() && lost.is_empty() {
            return Ok(wrote);
        }
        let bytes = match (existing.is_none() && lost.is_empty(), source_index) {
            (true, Some(src))
                if {
                    let mut a = listed(&serde_json::from_slice(&src.bytes).unwrap_or(Value::Null));
                    let mut b = wanted_digests.clone();
                    a.sort();
                    b.sort();
                    a == b
                } =>
            {
                src.bytes.clone()
            }
            _ => {
                let list = doc
                    .get_mut("manifests")
                    .and_then(Value::as_array_mut)
                    .ok_or_else(|| bad("no manifests list".into()))?;
                // Entries another writer dropped since an earlier read come back.
                for d in lost.into_iter().chain(missing) {
                    let x = d.get("digest").and_then(Value::as_str);
                    if !list.iter().any(|e| e.get("digest").and_then(Value::as_str) == x) {
                        list.push(d.clone());
                    }
                }
                Bytes::from(serde_json::to_vec(&doc).map_err(|e| bad(e.to_string()))?)
            }
        };
        client
            .put_manifest(dst, &tag, manifest::OCI_INDEX, bytes.clone())
            .await?;
        wrote = true;
        let back = match client.get_manifest(dst, &tag).await {
            Ok(raw) => serde_json::from_slice::<Value>(&raw.bytes)
                .map(|d| listed(&d))
                .unwrap_or_default(),
            Err(RegistryError::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        let complete = wanted_digests.iter().all(|d| back.contains(d))
            && must_keep.iter().all(|(d, _)| back.contains(d));
        if complete {
            return Ok(true);
        }
        tracing::debug!(%dst, %tag, attempt, "the referrers fallback tag changed under us; merging again");
        tokio::time::sleep(std::time::Duration::from_millis(50 + fastrand::u64(0..200))).await;
    }
    Err(bad(format!(
        "another writer kept changing it; {MERGE_ATTEMPTS} read-merge-write attempts did not stick"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_name_the_digest() {
        let d = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(
            tag_for(&d, Some("sig")).unwrap(),
            format!("sha256-{}.sig", "ab".repeat(32))
        );
        assert_eq!(tag_for(&d, None).unwrap(), format!("sha256-{}", "ab".repeat(32)));
        assert_eq!(tag_for("nodigest", None), None);
        assert!(is_attachment_tag(&tag_for(&d, Some("att")).unwrap()));
        assert!(!is_attachment_tag("v1.2.3"));
    }

    #[test]
    fn kinds_parse_and_name_a_bad_one() {
        let k = Kinds::parse(&["sig,sbom".into()]).unwrap();
        assert!(k.has(Kind::Sig) && k.has(Kind::Sbom) && !k.has(Kind::Att) && !k.has(Kind::Referrer));
        assert_eq!(Kinds::parse(&["all".into()]).unwrap(), Kinds::all());
        assert!(Kinds::parse(&["none".into()]).unwrap().is_empty());
        let e = Kinds::parse(&["sig,signatrue".into()]).unwrap_err();
        assert!(e.contains("\"signatrue\""), "{e}");
    }

    #[test]
    fn an_index_has_its_children_as_subjects() {
        let bytes = Bytes::from_static(
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aa","size":3},{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:bb","size":3}]}"#,
        );
        let top = RawManifest {
            digest: crate::registry::sha256_digest(&bytes),
            media_type: manifest::OCI_INDEX.into(),
            bytes,
        };
        let s = subjects_of(&top);
        assert_eq!(s.len(), 3);
        assert_eq!(&s[1..], ["sha256:aa", "sha256:bb"]);
    }
}
