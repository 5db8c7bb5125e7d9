//! Archives for the air gap: a plan written to an OCI image layout in a tar (`--archive`, optionally
//! incremental with `--since`), and such a tar pushed into a registry (`--from-archive`). Pushing is the
//! copy engine's job: a checked [`Layout`] is handed to it as the images' origin, so there is one push
//! path (mounts, largest first, tag last) for registries and archives.
//!
//! Knows registries, plans and the OCI image layout; never charts or KKP. Blobs are streamed and hashed
//! on their way in and out, never held in memory (manifests, small by definition, are). An archive is
//! written to `FILE.partial` and renamed when complete, `index.json` last, so a valid-looking archive is
//! always a complete one. Reading refuses anything that is not part of an image layout (links, `..`,
//! unknown paths) and checks every blob against its name before the first byte is pushed, so a corrupt
//! archive tags nothing.
//!
//! Besides the layout, an archive may carry other files below [`EXTRA_PREFIX`] (the node binaries of
//! `--binaries`): the writer is handed them as [`Extra`]s, the reader lists them in [`Layout::extras`];
//! what they mean is their owner's business, not this module's.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use clap::Args;
use futures::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::{CopyArgs, CopyError, CopyJob, Origin, mirrored_source};
use crate::cli::OutputFormat;
use crate::reference::ImageRef;
use crate::registry::manifest::{self, Descriptor, ManifestView};
use crate::registry::{Client, RegistryError, Repository};

/// OCI annotation holding an image's tag.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Our annotation holding the full normalised source reference of an image.
pub const SOURCE_ANNOTATION: &str = "io.kubermatic.kkp.source";
/// Index annotation of an incremental archive: the file name of the archive it is based on.
pub const BASE_ANNOTATION: &str = "io.kubermatic.kkp.base";
/// Index annotation of an incremental archive: the digest of the base archive's `index.json`.
pub const BASE_INDEX_ANNOTATION: &str = "io.kubermatic.kkp.base.index";
/// Where an archive keeps files that are not part of the image layout (written before `index.json`).
pub const EXTRA_PREFIX: &str = "kkp-binaries/";

/// A file an archive carries beside its images, at `EXTRA_PREFIX` + `name`.
#[derive(Debug, Clone)]
pub struct Extra {
    /// Its path below [`EXTRA_PREFIX`].
    pub name: String,
    /// Where its bytes come from.
    pub content: ExtraContent,
}

/// The bytes of an [`Extra`].
#[derive(Debug, Clone)]
pub enum ExtraContent {
    /// A file on disk, streamed into the archive.
    File(PathBuf),
    /// Bytes in memory.
    Bytes(Vec<u8>),
}

/// Who adds [`Extra`]s to an archive; told the `--since` archive, so it can leave out what that holds.
pub trait ExtraFiles {
    /// The files to carry.
    fn extras(&self, base: Option<&Layout>) -> Result<Vec<Extra>, ArchiveError>;
}

/// No extra files.
impl ExtraFiles for () {
    fn extras(&self, _: Option<&Layout>) -> Result<Vec<Extra>, ArchiveError> {
        Ok(Vec::new())
    }
}

/// Archive flags of `kubectl kkp mirror`.
#[derive(Debug, Clone, Default, Args)]
pub struct ArchiveArgs {
    /// Write the plan to an OCI image layout in a tar (`.tar.gz`/`.tgz`: compressed) instead of a
    /// registry; every platform, digests kept.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["from_archive", "verify"])]
    pub archive: Option<PathBuf>,
    /// With --archive: leave out the blobs an earlier archive already holds (incremental archive).
    #[arg(long, value_name = "OLD", requires = "archive")]
    pub since: Option<PathBuf>,
    /// Push an archive written by --archive into REGISTRY; the plan is the archive's.
    #[arg(long = "from-archive", value_name = "FILE")]
    pub from_archive: Option<PathBuf>,
    /// Check that every planned image is at REGISTRY with the source's (or the archive's) digest;
    /// nothing is copied. Exit code 1 when any image is missing or different.
    #[arg(long)]
    pub verify: bool,
    /// With --verify: check, offline, each image's cosign signature at REGISTRY under this public key
    /// (PEM, ECDSA P-256 or ed25519, as `cosign generate-key-pair` writes cosign.pub); repeatable, any
    /// key may have signed. One line per image: verified, unsigned, bad signature, digest mismatch.
    #[arg(long = "key", value_name = "FILE", requires = "verify")]
    pub keys: Vec<PathBuf>,
    /// With --verify: the sigstore trusted root (trusted_root.json: Fulcio CA certificates, Rekor
    /// public keys) keyless signatures are checked against, offline; without it they are listed as not
    /// verifiable offline. Alone or with --key.
    #[arg(long, value_name = "FILE", requires = "verify")]
    pub trusted_root: Option<PathBuf>,
    /// With --trusted-root (required there): the signer a keyless certificate must name, exactly as
    /// cosign's --certificate-identity (an email or URI subject alternative name).
    #[arg(long, value_name = "IDENTITY", requires = "trusted_root")]
    pub certificate_identity: Option<String>,
    /// With --trusted-root (required there): the OIDC issuer a keyless certificate must name (Fulcio's
    /// issuer extension), exactly as cosign's --certificate-oidc-issuer.
    #[arg(long, value_name = "URL", requires = "trusted_root")]
    pub certificate_oidc_issuer: Option<String>,
}

/// Why an archive could not be written, read or pushed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A file could not be read or written.
    #[error("{path}: {}", one_line(source))]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// An entry of the tar is not part of an OCI image layout, or is unsafe.
    #[error("{archive}: entry {entry:?} refused: {reason}")]
    Entry {
        /// The archive.
        archive: PathBuf,
        /// The entry's path as stored.
        entry: String,
        /// Why.
        reason: String,
    },
    /// A blob does not hash to its name.
    #[error("{archive}: blob {expected} is corrupt: its {size} bytes hash to {actual}")]
    Corrupt {
        /// The archive.
        archive: PathBuf,
        /// The digest the entry is named after.
        expected: String,
        /// What it hashes to.
        actual: String,
        /// Its size.
        size: u64,
    },
    /// `index.json` or `oci-layout` is missing or unreadable, or a manifest is not in the archive.
    #[error("{archive}: {detail}")]
    Layout {
        /// The archive.
        archive: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// Writing an image into the archive failed.
    #[error("archiving {image}: {source}")]
    Source {
        /// The source image.
        image: String,
        /// The registry error.
        #[source]
        source: RegistryError,
    },
    /// Flags, registry client or runtime.
    #[error(transparent)]
    Copy(#[from] CopyError),
}

/// An error's text with control characters escaped, so it stays one line: the tar reader's errors quote
/// the entry's raw name, which may hold a newline.
fn one_line(e: &io::Error) -> String {
    let s = e.to_string();
    if !s.chars().any(char::is_control) {
        return s;
    }
    s.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

impl ArchiveError {
    pub(crate) fn io(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
        move |source| ArchiveError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn layout(archive: &Path, detail: impl Into<String>) -> ArchiveError {
        ArchiveError::Layout {
            archive: archive.to_path_buf(),
            detail: detail.into(),
        }
    }

    /// True for a usage error (exit code 2).
    pub fn is_usage(&self) -> bool {
        matches!(self, ArchiveError::Copy(CopyError::Usage(_)))
    }
}

fn is_gzip(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    name.ends_with(".tar.gz") || name.ends_with(".tgz")
}

fn blob_path(digest: &str) -> String {
    format!("blobs/{}", digest.replacen(':', "/", 1))
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

// ------------------------------------------------------------------------------------------------
// Writing
// ------------------------------------------------------------------------------------------------

/// A tar stream written entry by entry; blob data is written as it arrives.
struct TarOut {
    w: Sink,
    written: HashSet<String>,
}

impl TarOut {
    fn header(&mut self, path: &str, size: u64) -> io::Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_path(path)?;
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        self.w.write_all(h.as_bytes())
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let rest = (512 - size % 512) % 512;
        self.w.write_all(&[0u8; 512][..rest as usize])
    }

    fn file(&mut self, path: &str, data: &[u8]) -> io::Result<()> {
        self.header(path, data.len() as u64)?;
        self.w.write_all(data)?;
        self.pad(data.len() as u64)
    }

    fn finish(mut self) -> io::Result<()> {
        self.w.write_all(&[0u8; 1024])?;
        self.w.finish()
    }
}

/// Writes tar bytes to a file, optionally through gzip; [`Sink::finish`] writes gzip's trailer and
/// syncs the file.
enum Sink {
    Gzip(flate2::write::GzEncoder<BufWriter<File>>),
    Plain(BufWriter<File>),
}

impl Sink {
    fn finish(self) -> io::Result<()> {
        let mut inner = match self {
            Sink::Gzip(g) => g.finish()?,
            Sink::Plain(p) => p,
        };
        inner.flush()?;
        inner.get_ref().sync_all()
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Gzip(g) => g.write(buf),
            Sink::Plain(p) => p.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Gzip(g) => g.flush(),
            Sink::Plain(p) => p.flush(),
        }
    }
}

/// What `--archive` wrote.
#[derive(Debug, Clone, Default)]
pub struct ArchiveSummary {
    /// Images in `index.json`.
    pub images: usize,
    /// Blobs (and manifests) written.
    pub blobs_written: usize,
    /// Bytes of blob data written.
    pub bytes_written: u64,
    /// Blobs left out because the `--since` archive holds them.
    pub blobs_skipped: usize,
    /// Extra files written (below [`EXTRA_PREFIX`]).
    pub extras: usize,
    /// Bytes of extra files' data written (files on disk only).
    pub extra_bytes: u64,
    /// Attachments (signatures, attestations, SBOMs, referrers) written with the images.
    pub attachments: usize,
    /// Notes (foreign layers).
    pub warnings: Vec<String>,
}

/// Why writing one image into the archive stopped: the source, or the archive file.
enum Step {
    Source(RegistryError),
    File(io::Error),
}

impl From<RegistryError> for Step {
    fn from(e: RegistryError) -> Step {
        Step::Source(e)
    }
}

impl From<io::Error> for Step {
    fn from(e: io::Error) -> Step {
        Step::File(e)
    }
}

struct Writer<'a> {
    client: &'a Client,
    tar: TarOut,
    base: HashSet<String>,
    summary: ArchiveSummary,
}

impl Writer<'_> {
    async fn blob(&mut self, src: &Repository, d: &Descriptor) -> Result<(), Step> {
        if self.tar.written.contains(&d.digest) {
            return Ok(());
        }
        if self.base.contains(&d.digest) {
            self.summary.blobs_skipped += 1;
            self.tar.written.insert(d.digest.clone());
            return Ok(());
        }
        let resp = self.client.get_blob(src, &d.digest).await?;
        self.tar.header(&blob_path(&d.digest), d.size)?;
        let mut hasher = Sha256::new();
        let mut n = 0u64;
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| RegistryError::Transport {
                what: format!("blob {src}@{}", d.digest),
                detail: e.to_string(),
            })?;
            n += chunk.len() as u64;
            if n > d.size {
                break;
            }
            hasher.update(&chunk);
            self.tar.w.write_all(&chunk)?;
        }
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if n != d.size || actual != d.digest {
            return Err(Step::Source(RegistryError::DigestMismatch {
                what: format!("blob {src}@{}", d.digest),
                expected: d.digest.clone(),
                actual: format!("{n} bytes (of {}) hashing to {actual}", d.size),
            }));
        }
        self.tar.pad(d.size)?;
        self.tar.written.insert(d.digest.clone());
        self.summary.blobs_written += 1;
        self.summary.bytes_written += d.size;
        Ok(())
    }

    /// Writes everything `m` references, then `m` itself (always: manifests are needed to push).
    fn manifest<'s>(
        &'s mut self,
        src: &'s Repository,
        digest: &'s str,
    ) -> futures::future::BoxFuture<'s, Result<(String, u64), Step>> {
        Box::pin(async move {
            let raw = self.client.get_manifest(src, digest).await?;
            let view = ManifestView::parse(&raw.bytes).map_err(|e| RegistryError::BadManifest {
                what: format!("manifest {src}@{digest}"),
                detail: e.to_string(),
            })?;
            if manifest::is_index(&raw.media_type) {
                for child in &view.manifests {
                    self.manifest(src, &child.digest).await?;
                }
            } else {
                for b in view.config.iter().chain(view.layers.iter()) {
                    if b.is_foreign() {
                        let w = format!(
                            "{src}: foreign layer {} not archived; it is fetched from its URLs",
                            b.digest
                        );
                        if !self.summary.warnings.contains(&w) {
                            self.summary.warnings.push(w);
                        }
                        continue;
                    }
                    self.blob(src, b).await?;
                }
            }
            if !self.tar.written.contains(&raw.digest) {
                self.tar.file(&blob_path(&raw.digest), &raw.bytes)?;
                self.tar.written.insert(raw.digest.clone());
            }
            Ok((raw.media_type, raw.bytes.len() as u64))
        })
    }
}

/// Writes `images` to an OCI image layout tar at `path` (via `path.partial`). With `since`, blobs that
/// archive holds are left out (manifests are always written). Fails as a whole: no file on error.
pub async fn write_archive(
    client: &Client,
    images: &[ImageRef],
    path: &Path,
    since: Option<&Path>,
    source_mirrors: &[(String, String)],
    extra_files: &dyn ExtraFiles,
    attachments: super::attachments::Kinds,
) -> Result<ArchiveSummary, ArchiveError> {
    let mut index_annotations = serde_json::Map::new();
    let (base, extras) = match since {
        Some(old) => {
            let layout = Layout::open(old, false)?;
            index_annotations.insert(
                BASE_ANNOTATION.into(),
                json!(old.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()),
            );
            index_annotations.insert(BASE_INDEX_ANNOTATION.into(), json!(layout.index_digest));
            let extras = extra_files.extras(Some(&layout))?;
            (layout.blobs.keys().cloned().collect(), extras)
        }
        None => (HashSet::new(), extra_files.extras(None)?),
    };
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let start = Start {
        base,
        index_annotations,
        extras,
    };
    let result = write_to(client, images, &partial, start, source_mirrors, path, attachments).await;
    match result {
        Ok(summary) => {
            std::fs::rename(&partial, path).map_err(ArchiveError::io(path))?;
            Ok(summary)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

/// What an archive is written against: the `--since` archive's blobs and the index annotations naming
/// it, and the extra files to carry.
struct Start {
    base: HashSet<String>,
    index_annotations: serde_json::Map<String, Value>,
    extras: Vec<Extra>,
}

async fn write_to(
    client: &Client,
    images: &[ImageRef],
    partial: &Path,
    start: Start,
    source_mirrors: &[(String, String)],
    path: &Path,
    attachments: super::attachments::Kinds,
) -> Result<ArchiveSummary, ArchiveError> {
    let finder = super::attachments::Finder::new(attachments);
    let Start {
        base,
        index_annotations,
        extras,
    } = start;
    let file = File::create(partial).map_err(ArchiveError::io(partial))?;
    let buffered = BufWriter::with_capacity(1 << 20, file);
    let sink = if is_gzip(path) {
        Sink::Gzip(flate2::write::GzEncoder::new(
            buffered,
            flate2::Compression::default(),
        ))
    } else {
        Sink::Plain(buffered)
    };
    let mut w = Writer {
        client,
        tar: TarOut {
            w: sink,
            written: HashSet::new(),
        },
        base,
        summary: ArchiveSummary::default(),
    };
    w.tar
        .file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
        .map_err(ArchiveError::io(partial))?;
    let mut descriptors = Vec::new();
    for image in images {
        let src = mirrored_source(image, source_mirrors);
        let fail = |source| ArchiveError::Source {
            image: image.to_string(),
            source,
        };
        let digest = match &image.digest {
            Some(d) => d.clone(),
            None => {
                let tag = image.identifier();
                match client.head_manifest(&src, tag).await.map_err(fail)? {
                    Some(info) => info.digest,
                    None => {
                        return Err(fail(RegistryError::NotFound {
                            what: format!("manifest {src}:{tag}"),
                        }));
                    }
                }
            }
        };
        tracing::info!(image = %image, %digest, "archiving");
        let (media_type, size) = w.manifest(&src, &digest).await.map_err(|e| match e {
            Step::Source(e) => fail(e),
            Step::File(e) => ArchiveError::Io {
                path: partial.to_path_buf(),
                source: e,
            },
        })?;
        let mut annotations = serde_json::Map::new();
        if let Some(tag) = &image.tag {
            annotations.insert(REF_NAME.into(), json!(tag));
        }
        annotations.insert(SOURCE_ANNOTATION.into(), json!(image.to_string()));
        // What is attached to it, with their manifests and blobs (issue 14, `attachments`).
        if finder.may_have(client, &src, &digest).await.map_err(fail)? {
            let top = client.get_manifest(&src, &digest).await.map_err(fail)?;
            let subjects = super::attachments::subjects_of(&top);
            let found = finder.find(client, &src, &subjects).await.map_err(fail)?;
            for a in &found.items {
                w.manifest(&src, &a.digest).await.map_err(|e| match e {
                    Step::Source(e) => fail(e),
                    Step::File(e) => ArchiveError::Io {
                        path: partial.to_path_buf(),
                        source: e,
                    },
                })?;
            }
            if !found.items.is_empty() {
                annotations.insert(
                    super::attachments::ARCHIVE_ANNOTATION.into(),
                    json!(super::attachments::to_annotation(&found.items)),
                );
                w.summary.attachments += found.items.len();
            }
        }
        descriptors.push(json!({
            "mediaType": media_type,
            "digest": digest,
            "size": size,
            "annotations": annotations,
        }));
    }
    // The extra files, before index.json (so an archive with an index.json holds all of them).
    for extra in &extras {
        let name = format!("{EXTRA_PREFIX}{}", extra.name);
        match &extra.content {
            ExtraContent::Bytes(b) => w.tar.file(&name, b).map_err(ArchiveError::io(partial))?,
            ExtraContent::File(src) => {
                let mut f = File::open(src).map_err(ArchiveError::io(src))?;
                let size = f.metadata().map_err(ArchiveError::io(src))?.len();
                w.tar.header(&name, size).map_err(ArchiveError::io(partial))?;
                let n = io::copy(&mut (&mut f).take(size), &mut w.tar.w).map_err(ArchiveError::io(src))?;
                if n != size {
                    return Err(ArchiveError::layout(
                        src,
                        format!("the file shrank from {size} to {n} bytes while it was archived"),
                    ));
                }
                w.tar.pad(size).map_err(ArchiveError::io(partial))?;
                w.summary.extra_bytes += size;
            }
        }
        w.summary.extras += 1;
    }
    let mut index = json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_INDEX,
        "manifests": descriptors,
    });
    if !index_annotations.is_empty() {
        index["annotations"] = Value::Object(index_annotations);
    }
    let bytes = serde_json::to_vec_pretty(&index).unwrap_or_default();
    w.tar
        .file("index.json", &bytes)
        .map_err(ArchiveError::io(partial))?;
    w.summary.images = images.len();
    let summary = std::mem::take(&mut w.summary);
    w.tar.finish().map_err(ArchiveError::io(partial))?;
    Ok(summary)
}

// ------------------------------------------------------------------------------------------------
// Reading
// ------------------------------------------------------------------------------------------------

/// One image listed in an archive's `index.json`.
#[derive(Debug, Clone)]
pub struct ArchivedImage {
    /// The normalised source reference it was archived from.
    pub source: ImageRef,
    /// Its top manifest (or index).
    pub descriptor: Descriptor,
}

/// A checked OCI image layout tar: where each blob's bytes are, and what `index.json` says.
pub struct Layout {
    /// The archive as given.
    pub path: PathBuf,
    /// The plain tar the offsets refer to (a temporary copy for a compressed archive).
    tar: PathBuf,
    _temp: Option<tempfile::TempPath>,
    /// digest → (offset of the data in `tar`, size).
    pub blobs: HashMap<String, (u64, u64)>,
    /// The images of `index.json`, in order.
    pub images: Vec<ArchivedImage>,
    /// Files below [`EXTRA_PREFIX`] (name below it → offset of the data in `tar`, size).
    pub extras: BTreeMap<String, (u64, u64)>,
    /// `index.json`'s annotations.
    pub annotations: BTreeMap<String, String>,
    /// `sha256:` digest of `index.json`.
    pub index_digest: String,
}

fn entry_path(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw).into_owned();
    let mut p = s.as_str();
    while let Some(rest) = p.strip_prefix("./") {
        p = rest;
    }
    p.trim_end_matches('/').to_string()
}

struct HashingSink(Sha256, u64);

impl Write for HashingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        self.1 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Layout {
    /// Reads and checks an archive: only layout entries, every blob hashing to its name (when
    /// `verify`), `oci-layout` and `index.json` present. A compressed archive is first decompressed to
    /// a temporary file next to it.
    pub fn open(path: &Path, verify: bool) -> Result<Layout, ArchiveError> {
        let (tar_path, temp) = if is_gzip(path) {
            let src = File::open(path).map_err(ArchiveError::io(path))?;
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let mut tmp = tempfile::Builder::new()
                .prefix(".kkp-archive-")
                .suffix(".tar")
                .tempfile_in(dir)
                .or_else(|_| tempfile::NamedTempFile::new())
                .map_err(ArchiveError::io(path))?;
            let mut gz = flate2::read::GzDecoder::new(io::BufReader::new(src));
            io::copy(&mut gz, &mut tmp).map_err(ArchiveError::io(path))?;
            let p = tmp.into_temp_path();
            (p.to_path_buf(), Some(p))
        } else {
            (path.to_path_buf(), None)
        };
        let file = File::open(&tar_path).map_err(ArchiveError::io(path))?;
        let mut archive = tar::Archive::new(io::BufReader::new(file));
        let mut blobs = HashMap::new();
        let mut extras = BTreeMap::new();
        let mut index = None;
        let mut layout_seen = false;
        let entries = archive.entries_with_seek().map_err(ArchiveError::io(path))?;
        for entry in entries {
            let mut entry = entry.map_err(ArchiveError::io(path))?;
            let raw = entry.path_bytes().into_owned();
            let name = entry_path(&raw);
            let refuse = |reason: &str| ArchiveError::Entry {
                archive: path.to_path_buf(),
                entry: String::from_utf8_lossy(&raw).into_owned(),
                reason: reason.to_string(),
            };
            if name.starts_with('/') || name.split('/').any(|c| c == ".." || c.is_empty()) {
                return Err(refuse("absolute or parent-directory path"));
            }
            let kind = entry.header().entry_type();
            if kind.is_dir() {
                if name == "blobs" || name == "blobs/sha256" {
                    continue;
                }
                return Err(refuse("not a directory of an OCI image layout"));
            }
            if !kind.is_file() {
                return Err(refuse("only regular files are allowed (no links or devices)"));
            }
            match name.as_str() {
                "oci-layout" => {
                    let mut s = String::new();
                    entry
                        .by_ref()
                        .take(4096)
                        .read_to_string(&mut s)
                        .map_err(ArchiveError::io(path))?;
                    let v: Value = serde_json::from_str(&s).unwrap_or(Value::Null);
                    if v["imageLayoutVersion"].as_str() != Some("1.0.0") {
                        return Err(refuse("imageLayoutVersion is not 1.0.0"));
                    }
                    layout_seen = true;
                }
                "index.json" => {
                    let mut buf = Vec::new();
                    entry
                        .by_ref()
                        .take(manifest::MAX_MANIFEST_BYTES as u64 * 8)
                        .read_to_end(&mut buf)
                        .map_err(ArchiveError::io(path))?;
                    index = Some(buf);
                }
                other if other.starts_with(EXTRA_PREFIX) && other.len() > EXTRA_PREFIX.len() => {
                    if index.is_some() {
                        return Err(refuse("a carried file after index.json"));
                    }
                    let rest = &other[EXTRA_PREFIX.len()..];
                    extras.insert(rest.to_string(), (entry.raw_file_position(), entry.size()));
                }
                other => {
                    let hex = other
                        .strip_prefix("blobs/sha256/")
                        .filter(|h| is_sha256_hex(h))
                        .ok_or_else(|| refuse("not a file of an OCI image layout"))?;
                    let digest = format!("sha256:{hex}");
                    let offset = entry.raw_file_position();
                    let size = entry.size();
                    if verify {
                        let mut sink = HashingSink(Sha256::new(), 0);
                        io::copy(&mut entry, &mut sink).map_err(ArchiveError::io(path))?;
                        let actual = format!("sha256:{}", hex::encode(sink.0.finalize()));
                        if actual != digest || sink.1 != size {
                            return Err(ArchiveError::Corrupt {
                                archive: path.to_path_buf(),
                                expected: digest,
                                actual,
                                size,
                            });
                        }
                    }
                    blobs.insert(digest, (offset, size));
                }
            }
        }
        if !layout_seen {
            return Err(ArchiveError::layout(
                path,
                "no oci-layout file: not an OCI image layout",
            ));
        }
        let index = index.ok_or_else(|| {
            ArchiveError::layout(
                path,
                "no index.json: the archive is incomplete (was it interrupted?)",
            )
        })?;
        let index_digest = crate::registry::sha256_digest(&index);
        let doc: Value = serde_json::from_slice(&index)
            .map_err(|e| ArchiveError::layout(path, format!("index.json: {e}")))?;
        let mut images = Vec::new();
        for (i, d) in doc["manifests"].as_array().into_iter().flatten().enumerate() {
            let descriptor: Descriptor = serde_json::from_value(d.clone())
                .map_err(|e| ArchiveError::layout(path, format!("index.json manifests[{i}]: {e}")))?;
            let source = d["annotations"][SOURCE_ANNOTATION]
                .as_str()
                .ok_or_else(|| {
                    ArchiveError::layout(
                        path,
                        format!("index.json manifests[{i}]: no {SOURCE_ANNOTATION} annotation"),
                    )
                })
                .and_then(|s| {
                    ImageRef::parse(s)
                        .map_err(|e| ArchiveError::layout(path, format!("index.json manifests[{i}]: {e}")))
                })?;
            images.push(ArchivedImage { source, descriptor });
        }
        let annotations = doc["annotations"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect();
        Ok(Layout {
            path: path.to_path_buf(),
            tar: tar_path,
            _temp: temp,
            blobs,
            images,
            extras,
            annotations,
            index_digest,
        })
    }

    /// A reader of the extra file `name` (below [`EXTRA_PREFIX`]) and its size; `None` when the archive
    /// does not carry it.
    pub fn extra_reader(&self, name: &str) -> Option<io::Result<(impl Read + use<>, u64)>> {
        let &(offset, size) = self.extras.get(name)?;
        Some((|| {
            let mut f = File::open(&self.tar)?;
            f.seek(SeekFrom::Start(offset))?;
            Ok((io::BufReader::with_capacity(256 * 1024, f).take(size), size))
        })())
    }

    /// The extra file `name`, whole, when it is at most `max` bytes.
    pub fn extra_bytes(&self, name: &str, max: u64) -> Result<Option<Vec<u8>>, ArchiveError> {
        let Some(opened) = self.extra_reader(name) else {
            return Ok(None);
        };
        let (mut r, size) = opened.map_err(ArchiveError::io(&self.path))?;
        if size > max {
            return Err(ArchiveError::layout(
                &self.path,
                format!("{EXTRA_PREFIX}{name} is larger than {max} bytes"),
            ));
        }
        let mut buf = Vec::with_capacity(size as usize);
        r.read_to_end(&mut buf).map_err(ArchiveError::io(&self.path))?;
        Ok(Some(buf))
    }

    /// The base archive an incremental archive was written against, for messages.
    pub fn base(&self) -> Option<&str> {
        self.annotations.get(BASE_ANNOTATION).map(String::as_str)
    }

    /// A manifest's bytes (manifests are small; refused above the registry client's limit).
    pub(crate) fn manifest_bytes(&self, digest: &str) -> Result<Bytes, ArchiveError> {
        let &(offset, size) = self.blobs.get(digest).ok_or_else(|| {
            ArchiveError::layout(&self.path, format!("manifest {digest} is not in the archive"))
        })?;
        if size > manifest::MAX_MANIFEST_BYTES as u64 {
            return Err(ArchiveError::layout(
                &self.path,
                format!(
                    "manifest {digest} is larger than {} bytes",
                    manifest::MAX_MANIFEST_BYTES
                ),
            ));
        }
        let mut f = File::open(&self.tar).map_err(ArchiveError::io(&self.path))?;
        f.seek(SeekFrom::Start(offset))
            .map_err(ArchiveError::io(&self.path))?;
        let mut buf = vec![0u8; size as usize];
        f.read_exact(&mut buf).map_err(ArchiveError::io(&self.path))?;
        if crate::registry::sha256_digest(&buf) != digest {
            return Err(ArchiveError::Corrupt {
                archive: self.path.clone(),
                expected: digest.to_string(),
                actual: crate::registry::sha256_digest(&buf),
                size,
            });
        }
        Ok(Bytes::from(buf))
    }

    /// A blob's bytes as a stream, read in 256 KiB pieces; `None` when the archive does not hold it.
    /// Unchecked: the copy engine hashes what it pushes and fails before the last byte on a mismatch.
    pub(crate) fn blob_stream(
        &self,
        digest: &str,
    ) -> Option<impl futures::Stream<Item = io::Result<Bytes>> + Send + 'static> {
        let &(offset, size) = self.blobs.get(digest)?;
        let path = self.tar.clone();
        Some(futures::stream::unfold(
            Some((None::<tokio::fs::File>, 0u64)),
            move |state| {
                let path = path.clone();
                async move {
                    use tokio::io::{AsyncReadExt, AsyncSeekExt};
                    let (file, n) = state?;
                    if n == size {
                        return None;
                    }
                    let mut file = match file {
                        Some(f) => f,
                        None => {
                            let opened = async {
                                let mut f = tokio::fs::File::open(&path).await?;
                                f.seek(SeekFrom::Start(offset)).await?;
                                Ok::<_, io::Error>(f)
                            }
                            .await;
                            match opened {
                                Ok(f) => f,
                                Err(e) => return Some((Err(e), None)),
                            }
                        }
                    };
                    let want = (size - n).min(256 * 1024) as usize;
                    let mut buf = vec![0u8; want];
                    if let Err(e) = file.read_exact(&mut buf).await {
                        return Some((Err(e), None));
                    }
                    Some((Ok(Bytes::from(buf)), Some((Some(file), n + want as u64))))
                }
            },
        ))
    }
}

// ------------------------------------------------------------------------------------------------
// Pushing
// ------------------------------------------------------------------------------------------------

/// One archived image and where it goes.
#[derive(Debug, Clone)]
pub struct PushJob {
    /// The image in the archive.
    pub image: ArchivedImage,
    /// Its target reference.
    pub target: ImageRef,
}

/// Blobs referenced by the archive's manifests but not held by it → target repositories of the jobs
/// whose images reference them. Unreadable manifests are skipped here; pushing reports them.
pub(crate) fn left_out_blobs(layout: &Layout, jobs: &[PushJob]) -> HashMap<String, Vec<Repository>> {
    let mut out: HashMap<String, Vec<Repository>> = HashMap::new();
    for job in jobs {
        let repo = Repository::of(&job.target);
        let mut todo = vec![job.image.descriptor.digest.clone()];
        let mut seen = HashSet::new();
        while let Some(digest) = todo.pop() {
            if !seen.insert(digest.clone()) {
                continue;
            }
            let Ok(bytes) = layout.manifest_bytes(&digest) else {
                continue;
            };
            let Ok(view) = ManifestView::parse(&bytes) else {
                continue;
            };
            todo.extend(view.manifests.iter().map(|m| m.digest.clone()));
            for b in view.config.iter().chain(view.layers.iter()) {
                if !b.is_foreign() && !layout.blobs.contains_key(&b.digest) {
                    let repos = out.entry(b.digest.clone()).or_default();
                    if !repos.contains(&repo) {
                        repos.push(repo.clone());
                    }
                }
            }
        }
    }
    out
}

/// The jobs for pushing `layout` into `registry` (`host[:port][/prefix]`): target = registry + the
/// source's path, as a plan names it.
pub fn push_jobs(layout: &Layout, registry: &str) -> Result<Vec<PushJob>, ArchiveError> {
    layout
        .images
        .iter()
        .map(|image| {
            let target = image
                .source
                .retarget(registry)
                .map_err(|e| CopyError::Usage(format!("target registry {registry:?}: {e}")))?;
            Ok(PushJob {
                image: image.clone(),
                target,
            })
        })
        .collect()
}

// ------------------------------------------------------------------------------------------------
// Glue for `kubectl kkp mirror`
// ------------------------------------------------------------------------------------------------

/// The password `--password-stdin` asks for (stdin up to its end, line break dropped), if asked.
pub(crate) fn read_password(args: &CopyArgs) -> Result<Option<String>, CopyError> {
    if !args.password_stdin {
        return Ok(None);
    }
    let mut s = String::new();
    io::stdin().read_to_string(&mut s).map_err(CopyError::Stdin)?;
    Ok(Some(s.trim_end_matches(['\n', '\r']).to_string()))
}

/// A registry client and a runtime set up from the copy flags; `target_host` gets the credentials.
pub(crate) fn client_and_runtime(
    args: &CopyArgs,
    target_host: &str,
) -> Result<(Client, tokio::runtime::Runtime), CopyError> {
    let password = read_password(args)?;
    let client = Client::new(args.client_options(target_host, password)?)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CopyError::Runtime)?;
    Ok((client, rt))
}

/// `kubectl kkp mirror --archive FILE [--since OLD]`: writes every planned source image; exit code 0.
pub fn run_write(
    sources: &[ImageRef],
    file: &Path,
    since: Option<&Path>,
    args: &CopyArgs,
    extras: &dyn ExtraFiles,
) -> Result<u8, ArchiveError> {
    if file.exists() && since.is_some_and(|s| s == file) {
        return Err(CopyError::Usage("--since must name another archive than --archive".into()).into());
    }
    let opts = args.copy_options()?;
    if !opts.platforms.is_empty() {
        return Err(CopyError::Usage("--platform: an archive always holds every platform".into()).into());
    }
    let (client, rt) = client_and_runtime(args, "")?;
    let summary = rt.block_on(write_archive(
        &client,
        sources,
        file,
        since,
        &opts.source_mirrors,
        extras,
        opts.attachments,
    ))?;
    for w in &summary.warnings {
        eprintln!("warning: {w}");
    }
    let carried = if summary.extras > 0 {
        format!(
            ", {} files below {EXTRA_PREFIX} ({:.1} MiB)",
            summary.extras,
            summary.extra_bytes as f64 / (1024.0 * 1024.0)
        )
    } else {
        String::new()
    };
    if summary.attachments > 0 {
        eprintln!(
            "{}: {} attachments (signatures, attestations, SBOMs, referrers)",
            file.display(),
            summary.attachments
        );
    }
    eprintln!(
        "{}: {} images, {} blobs written ({:.1} MiB), {} blobs left out (in the --since archive){carried}",
        file.display(),
        summary.images,
        summary.blobs_written,
        summary.bytes_written as f64 / (1024.0 * 1024.0),
        summary.blobs_skipped
    );
    Ok(0)
}

/// What the archive lists as attached to each of `pushes` (its index annotation); a bad list is an error
/// naming the annotation.
fn archived_attachments(
    layout: &Layout,
    pushes: &[PushJob],
) -> Result<Vec<Vec<super::attachments::Attachment>>, ArchiveError> {
    pushes
        .iter()
        .map(|p| {
            match p
                .image
                .descriptor
                .annotations
                .get(super::attachments::ARCHIVE_ANNOTATION)
            {
                None => Ok(Vec::new()),
                Some(v) => super::attachments::from_annotation(v).map_err(|e| {
                    ArchiveError::layout(
                        &layout.path,
                        format!("index.json: {}: {e}", super::attachments::ARCHIVE_ANNOTATION),
                    )
                }),
            }
        })
        .collect()
}

/// `kubectl kkp mirror REGISTRY --from-archive FILE`: pushes a checked archive and prints
/// the copy report. Exit code 1 when some image failed.
pub fn run_from_archive(
    layout: Arc<Layout>,
    registry: &str,
    args: &CopyArgs,
    format: OutputFormat,
) -> Result<u8, ArchiveError> {
    let pushes = push_jobs(&layout, registry)?;
    let target_host = pushes
        .first()
        .map(|j| j.target.registry.clone())
        .unwrap_or_default();
    let opts = args.copy_options()?;
    let (client, rt) = client_and_runtime(args, &target_host)?;
    let attachments = archived_attachments(&layout, &pushes)?;
    let origin = Origin::Archive {
        attachments,
        left_out: left_out_blobs(&layout, &pushes),
        digests: pushes.iter().map(|p| p.image.descriptor.digest.clone()).collect(),
        layout,
    };
    let jobs: Vec<CopyJob> = pushes
        .into_iter()
        .map(|p| CopyJob {
            source: p.image.source,
            target: p.target,
        })
        .collect();
    let report = rt.block_on(async {
        if let Some(first) = jobs.first() {
            client
                .ping(&Repository::of(&first.target), true)
                .await
                .map_err(CopyError::Registry)?;
        }
        Ok::<_, ArchiveError>(super::run(&client, &jobs, &opts, origin).await)
    })?;
    Ok(report.finish(format).map_err(CopyError::Output)?)
}

/// The images an archive holds, for `--verify --from-archive`: source, target, the archived digest and
/// the attachments the image's [`ARCHIVE_ANNOTATION`](super::attachments::ARCHIVE_ANNOTATION) lists.
pub fn archived_expectations(
    file: &Path,
    registry: &str,
) -> Result<Vec<super::verify::Expectation>, ArchiveError> {
    let layout = Layout::open(file, false)?;
    let pushes = push_jobs(&layout, registry)?;
    let lists = archived_attachments(&layout, &pushes)?;
    Ok(pushes
        .into_iter()
        .zip(lists)
        .map(|(j, attachments)| super::verify::Expectation {
            source: j.image.source,
            target: j.target,
            expected: Some(j.image.descriptor.digest),
            attachments: Some(attachments),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(entries: &[(&str, &[u8], tar::EntryType)]) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".tar").tempfile().unwrap();
        for (path, data, kind) in entries {
            let mut h = tar::Header::new_gnu();
            // Written byte by byte so that unsafe names get in (set_path refuses them).
            h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(*kind);
            h.set_cksum();
            f.write_all(h.as_bytes()).unwrap();
            f.write_all(data).unwrap();
            f.write_all(&vec![0u8; (512 - data.len() % 512) % 512]).unwrap();
        }
        f.write_all(&[0u8; 1024]).unwrap();
        f
    }

    const LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
    const INDEX: &[u8] = br#"{"schemaVersion":2,"manifests":[]}"#;

    fn open_err(entries: &[(&str, &[u8], tar::EntryType)]) -> String {
        let f = tar_with(entries);
        match Layout::open(f.path(), true) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    /// Found by the `archive_read` fuzz target: a header whose checksum field is not a number makes the
    /// tar reader's error quote the entry's name, newline included; the error must stay one line.
    #[test]
    fn a_broken_header_naming_a_newline_gives_a_one_line_error() {
        let mut f = tempfile::Builder::new().suffix(".tar").tempfile().unwrap();
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..14].copy_from_slice(b"blobs/s\nha256/");
        h.set_size(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.as_old_mut().cksum = *b"zzzzzz\0 ";
        f.write_all(h.as_bytes()).unwrap();
        f.write_all(&[0u8; 1024]).unwrap();
        let e = Layout::open(f.path(), true)
            .err()
            .expect("a broken header is refused")
            .to_string();
        assert!(e.starts_with(&format!("{}: ", f.path().display())), "{e}");
        assert!(e.contains("blobs/s\\nha256/"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn unsafe_and_unknown_entries_are_refused() {
        let file = tar::EntryType::Regular;
        let e = open_err(&[("oci-layout", LAYOUT, file), ("../x", b"x", file)]);
        assert!(
            e.contains("\"../x\" refused") && e.contains("parent-directory"),
            "{e}"
        );
        let e = open_err(&[("oci-layout", LAYOUT, file), ("/etc/passwd", b"x", file)]);
        assert!(e.contains("absolute"), "{e}");
        let e = open_err(&[("oci-layout", LAYOUT, file), ("blobs/sha256/../../x", b"x", file)]);
        assert!(e.contains("parent-directory"), "{e}");
        let e = open_err(&[("oci-layout", LAYOUT, tar::EntryType::Symlink)]);
        assert!(e.contains("only regular files"), "{e}");
        let e = open_err(&[("oci-layout", LAYOUT, file), ("notes.txt", b"x", file)]);
        assert!(e.contains("not a file of an OCI image layout"), "{e}");
        let e = open_err(&[("oci-layout", LAYOUT, file), ("blobs/sha256/abc", b"x", file)]);
        assert!(e.contains("not a file of an OCI image layout"), "{e}");
    }

    #[test]
    fn corrupt_blob_and_missing_index_are_refused() {
        let file = tar::EntryType::Regular;
        let data = b"hello";
        let good = crate::registry::sha256_digest(data);
        let name = format!("blobs/sha256/{}", good.trim_start_matches("sha256:"));
        let f = tar_with(&[
            ("oci-layout", LAYOUT, file),
            (&name, data, file),
            ("index.json", INDEX, file),
        ]);
        let layout = Layout::open(f.path(), true).unwrap();
        assert_eq!(layout.blobs[&good].1, 5);
        let e = open_err(&[
            ("oci-layout", LAYOUT, file),
            (&name, b"hellO", file),
            ("index.json", INDEX, file),
        ]);
        assert!(e.contains(&format!("blob {good} is corrupt")), "{e}");
        let e = open_err(&[("oci-layout", LAYOUT, file), (&name, data, file)]);
        assert!(e.contains("no index.json"), "{e}");
        let e = open_err(&[(&name, data, file), ("index.json", INDEX, file)]);
        assert!(e.contains("no oci-layout"), "{e}");
    }
}
