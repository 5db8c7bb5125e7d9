//! Copying a plan into a registry or an archive: blobs first, manifests after, the tag last.
//!
//! Knows registries and plans, never charts or KKP. Manifests travel as raw bytes (digests unchanged);
//! blobs are streamed from source to target through a hashing stream, never held in memory. Each blob is
//! transferred once per run: later repositories on the same target registry mount it. Because a tag is
//! always the last write for an image, an interrupted run never leaves a tag on an incomplete image, and
//! a rerun completes what is missing (the target is asked about every blob before a byte of it is sent).
//!
//! There is one push path: an image is read from its source registry or from a checked archive
//! ([`Origin`]); everything after reading a manifest or opening a blob body is the same.

pub mod archive;
mod args;
pub mod attachments;
pub mod homes;
pub mod keyless;
mod report;
pub mod signatures;
mod slots;
pub mod verify;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest as _, Sha256};

pub use args::{CopyArgs, CopyError, list_attachments, run_plan};
pub use report::{CopyReport, ImageReport, ImageStatus};

use crate::reference::ImageRef;
use crate::registry::manifest::{self, Descriptor, ManifestView, Platform};
use crate::registry::{Client, Mount, RawManifest, RegistryError, Repository, sha256_digest};
use archive::Layout;
use attachments::{Cell, cell};

/// Default number of images and of blob transfers in flight.
pub const DEFAULT_PARALLEL: usize = 8;

/// One image to copy.
#[derive(Debug, Clone)]
pub struct CopyJob {
    /// Where it is read from (before `--source-mirror` rewriting).
    pub source: ImageRef,
    /// Where it is written.
    pub target: ImageRef,
}

/// The reference a target is written (and checked) under: its tag, else its digest (a digest-only
/// target is written by digest), else `latest`.
pub(crate) fn target_reference(target: &ImageRef) -> &str {
    target
        .tag
        .as_deref()
        .or(target.digest.as_deref())
        .unwrap_or("latest")
}

/// How to copy.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// Blob transfers in flight (0 = [`DEFAULT_PARALLEL`]); twice as many images are worked on at once.
    pub parallel: usize,
    /// Only these platforms of an index (empty = all; the index is then rewritten).
    pub platforms: Vec<Platform>,
    /// `(from, to)` name prefixes: sources under `from` are read from `to` instead.
    pub source_mirrors: Vec<(String, String)>,
    /// Print periodic progress lines on stderr.
    pub progress: bool,
    /// Where to read and record which repository holds each blob on a target, across runs
    /// ([`homes`]); `None` remembers nothing.
    pub blob_homes_dir: Option<std::path::PathBuf>,
    /// What attached to each image is copied with it ([`attachments`]); the default copies none.
    pub attachments: attachments::Kinds,
}

/// Where a source image is actually read from, after `--source-mirror` rewriting.
pub fn mirrored_source(source: &ImageRef, mirrors: &[(String, String)]) -> Repository {
    let name = source.name();
    for (from, to) in mirrors {
        let from = from.trim_end_matches('/');
        let rest = if name == from {
            Some("")
        } else {
            name.strip_prefix(from).and_then(|r| r.strip_prefix('/'))
        };
        if let Some(rest) = rest {
            let to = to.trim_end_matches('/');
            let (host, prefix) = to.split_once('/').unwrap_or((to, ""));
            let path = [prefix, rest]
                .iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect::<Vec<_>>()
                .join("/");
            return Repository::new(host, path);
        }
    }
    Repository::of(source)
}

/// What happened to one blob for one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlobOutcome {
    Copied,
    Mounted,
    Present,
}

#[derive(Default)]
struct Counters {
    copied: AtomicU64,
    mounted: AtomicU64,
    skipped: AtomicU64,
}

impl Counters {
    fn add(&self, outcome: BlobOutcome, size: u64) {
        match outcome {
            BlobOutcome::Copied => &self.copied,
            BlobOutcome::Mounted => &self.mounted,
            BlobOutcome::Present => &self.skipped,
        }
        .fetch_add(size, Ordering::Relaxed);
    }
}

/// Where the images of a run are read from.
pub(crate) enum Origin {
    /// Each job's source registry (after `--source-mirror`); tags are resolved there.
    Registry,
    /// A checked archive (`--from-archive`).
    Archive {
        /// The archive's blobs and manifests.
        layout: Arc<Layout>,
        /// The top manifest digest of each job, in job order.
        digests: Vec<String>,
        /// What the archive carries attached to each job's image, in job order.
        attachments: Vec<Vec<attachments::Attachment>>,
        /// Blobs an incremental archive left out → target repositories of this run that reference
        /// them, where the base archive put them (to mount from).
        left_out: HashMap<String, Vec<Repository>>,
    },
}

struct Engine {
    client: Client,
    opts: CopyOptions,
    origin: Origin,
    /// Bounds blob transfers in flight across all images, biggest blob first.
    transfers: slots::Slots,
    /// One placement per (target repository, digest).
    placed: Mutex<HashMap<(Repository, String), Cell<BlobOutcome>>>,
    /// The first target repository a blob was placed in, per (target host, digest).
    homes: Mutex<HashMap<(String, String), Cell<String>>>,
    /// Where earlier runs placed blobs on the target hosts.
    earlier: homes::BlobHomes,
    /// Child manifests already written to the target in this run.
    manifests: Mutex<HashSet<(Repository, String)>>,
    /// Per target host: `true` once it mounted a blob, `false` once it refused a mount request.
    mount_support: Mutex<HashMap<String, bool>>,
    /// Live byte counts for progress lines.
    live: Arc<Counters>,
    images_done: AtomicUsize,
    /// Finds what is attached to each image at its source.
    finder: attachments::Finder,
}

/// Per-image accounting.
#[derive(Default)]
struct ImageTally {
    counters: Counters,
    warnings: Mutex<Vec<String>>,
    /// Attachments written in this run / already at the target.
    attachments_copied: AtomicU64,
    attachments_present: AtomicU64,
}

impl ImageTally {
    fn warn(&self, w: String) {
        let mut ws = self.warnings.lock().unwrap_or_else(|e| e.into_inner());
        if !ws.contains(&w) {
            ws.push(w);
        }
    }
}

/// Copies every job; never stops at a failed image. Returns one report per job, in job order.
pub async fn copy_images(client: &Client, jobs: &[CopyJob], opts: &CopyOptions) -> CopyReport {
    run(client, jobs, opts, Origin::Registry).await
}

/// Copies every job from `origin`; never stops at a failed image. One report per job, in job order.
pub(crate) async fn run(client: &Client, jobs: &[CopyJob], opts: &CopyOptions, origin: Origin) -> CopyReport {
    let parallel = if opts.parallel == 0 {
        DEFAULT_PARALLEL
    } else {
        opts.parallel
    };
    let hosts: Vec<String> = jobs.iter().map(|j| Repository::of(&j.target).host).collect();
    let earlier = homes::BlobHomes::load(opts.blob_homes_dir.clone(), hosts.iter().map(String::as_str));
    let retries_before = client.retries();
    let engine = Arc::new(Engine {
        client: client.clone(),
        earlier,
        opts: opts.clone(),
        origin,
        transfers: slots::Slots::new(parallel),
        placed: Mutex::default(),
        homes: Mutex::default(),
        manifests: Mutex::default(),
        mount_support: Mutex::default(),
        live: Arc::default(),
        images_done: AtomicUsize::new(0),
        finder: attachments::Finder::new(opts.attachments),
    });
    // A bar on a terminal, plain periodic lines otherwise (logs, CI).
    let bar = (opts.progress && std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .then(|| progress_bar(jobs.len()));
    let ticker = opts
        .progress
        .then(|| tokio::spawn(progress_lines(engine.clone(), jobs.len(), bar.clone())));
    let mut reports: Vec<(usize, ImageReport)> = futures::stream::iter(jobs.iter().enumerate())
        .map(|(i, job)| {
            let engine = engine.clone();
            async move {
                let r = engine.copy_image(i, job).await;
                engine.images_done.fetch_add(1, Ordering::Relaxed);
                (i, r)
            }
        })
        // Twice as many images as transfer slots, so manifests and HEADs of the next images overlap
        // with blob transfers.
        .buffer_unordered(parallel * 2)
        .collect()
        .await;
    if let Some(t) = ticker {
        t.abort();
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    engine.remember_homes();
    reports.sort_by_key(|(i, _)| *i);
    let mut report = CopyReport::new(reports.into_iter().map(|(_, r)| r).collect());
    report.summary.retries = client.retries().since(&retries_before);
    report
}

fn progress_bar(total: usize) -> indicatif::ProgressBar {
    let bar =
        indicatif::ProgressBar::with_draw_target(Some(total as u64), indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} images  {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Updates the bar (terminal) every 200 ms, or prints a progress line every 10 s (no terminal).
async fn progress_lines(engine: Arc<Engine>, total: usize, bar: Option<indicatif::ProgressBar>) {
    let every = if bar.is_some() {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(10)
    };
    let mib = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64 / (1024.0 * 1024.0);
    let started = std::time::Instant::now();
    loop {
        tokio::time::sleep(every).await;
        let done = engine.images_done.load(Ordering::Relaxed);
        let copied = mib(&engine.live.copied);
        let Some(bar) = &bar else {
            eprintln!(
                "progress: {done}/{total} images, {copied:.1} MiB copied, {:.1} MiB mounted, {:.1} MiB already there",
                mib(&engine.live.mounted),
                mib(&engine.live.skipped),
            );
            continue;
        };
        let rate = copied / started.elapsed().as_secs_f64().max(0.001);
        bar.set_position(done as u64);
        bar.set_message(format!(
            "{copied:.1} MiB copied ({rate:.1} MiB/s), {:.1} MiB mounted, {:.1} MiB already there",
            mib(&engine.live.mounted),
            mib(&engine.live.skipped),
        ));
    }
}

/// Pieces handed to the upload: source bodies arrive in whatever pieces the socket had (often 16–64
/// KiB); fewer, larger writes mean fewer system calls here and fewer, fuller reads at the target.
const UPLOAD_PIECE: usize = 256 * 1024;

/// Joins small pieces of `body` into pieces of at least `min` bytes (the last may be shorter).
fn coalesce(
    body: impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    min: usize,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures::stream::unfold(Some(Box::pin(body)), move |body| async move {
        let mut body = body?;
        let mut buf = bytes::BytesMut::new();
        loop {
            match body.next().await {
                Some(Ok(chunk)) if buf.is_empty() && chunk.len() >= min => {
                    return Some((Ok(chunk), Some(body)));
                }
                Some(Ok(chunk)) => {
                    buf.extend_from_slice(&chunk);
                    if buf.len() >= min {
                        return Some((Ok(buf.freeze()), Some(body)));
                    }
                }
                Some(Err(e)) => return Some((Err(e), None)),
                None if buf.is_empty() => return None,
                None => return Some((Ok(buf.freeze()), None)),
            }
        }
    })
}

/// Why a source blob body was not passed on whole.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Spoiled {
    /// Its bytes did not match the size or digest.
    Mismatch(String),
    /// The source's answer broke off.
    Broke(String),
}

impl Spoiled {
    fn error(self, what: String, digest: &str) -> RegistryError {
        match self {
            Spoiled::Mismatch(actual) => RegistryError::DigestMismatch {
                what,
                expected: digest.to_string(),
                actual,
            },
            Spoiled::Broke(detail) => RegistryError::Body { what, detail },
        }
    }
}

/// A blob body that hashes what passes through and fails at the end when size or digest are wrong, so
/// the target never commits a corrupt blob. Why it failed is left in `spoiled`.
fn verifying_stream(
    body: impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    digest: String,
    size: u64,
    live: Arc<dyn Fn(u64) + Send + Sync>,
    mismatch: Arc<Mutex<Option<Spoiled>>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let state = (Sha256::new(), 0u64);
    let body = coalesce(body, UPLOAD_PIECE);
    futures::stream::unfold((Box::pin(body), Some(state)), move |(mut body, state)| {
        let digest = digest.clone();
        let live = live.clone();
        let mismatch = mismatch.clone();
        async move {
            let (mut hasher, mut n) = state?;
            match body.next().await {
                Some(Ok(chunk)) => {
                    hasher.update(&chunk);
                    n += chunk.len() as u64;
                    live(chunk.len() as u64);
                    if n > size {
                        let msg = format!("source sent more than the {size} bytes announced");
                        *mismatch.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(Spoiled::Mismatch(msg.clone()));
                        return Some((Err(std::io::Error::other(msg)), (body, None)));
                    }
                    // Check on the last byte, before handing it over: with a known length the upload
                    // is complete once it is sent, so the end of the stream would be too late.
                    if n == size {
                        let actual = format!("sha256:{}", hex::encode(hasher.clone().finalize()));
                        if actual != digest {
                            let msg = format!("the {size} bytes received hash to {actual}");
                            *mismatch.lock().unwrap_or_else(|e| e.into_inner()) =
                                Some(Spoiled::Mismatch(msg.clone()));
                            return Some((Err(std::io::Error::other(msg)), (body, None)));
                        }
                    }
                    Some((Ok(chunk), (body, Some((hasher, n)))))
                }
                Some(Err(e)) => {
                    *mismatch.lock().unwrap_or_else(|e| e.into_inner()) = Some(Spoiled::Broke(format!(
                        "after {n} of {size} bytes: {}",
                        crate::registry::flatten_error(&e)
                    )));
                    Some((Err(e), (body, None)))
                }
                None => {
                    let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
                    if n != size || actual != digest {
                        let msg = format!("the source sent {n} of {size} bytes, hashing to {actual}");
                        *mismatch.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(Spoiled::Mismatch(msg.clone()));
                        return Some((Err(std::io::Error::other(msg)), (body, None)));
                    }
                    None
                }
            }
        }
    })
}

impl Engine {
    async fn copy_image(&self, i: usize, job: &CopyJob) -> ImageReport {
        let tally = ImageTally::default();
        let retries = Arc::new(crate::registry::retry::Counter::default());
        let result =
            crate::registry::retry::counting(retries.clone(), self.copy_image_inner(i, job, &tally)).await;
        let warnings = tally.warnings.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let c = &tally.counters;
        let (status, digest, error) = match result {
            Ok((ImageState::UpToDate, d)) => (ImageStatus::UpToDate, Some(d), None),
            Ok((ImageState::Copied, d)) => (ImageStatus::Copied, Some(d), None),
            Err(e) => (ImageStatus::Failed, None, Some(e.to_string())),
        };
        ImageReport {
            source: job.source.to_string(),
            target: job.target.to_string(),
            digest,
            status,
            bytes_copied: c.copied.load(Ordering::Relaxed),
            bytes_mounted: c.mounted.load(Ordering::Relaxed),
            bytes_skipped: c.skipped.load(Ordering::Relaxed),
            retries: retries.snapshot(),
            attachments_copied: tally.attachments_copied.load(Ordering::Relaxed),
            attachments_present: tally.attachments_present.load(Ordering::Relaxed),
            warnings,
            error,
        }
    }

    async fn copy_image_inner(
        &self,
        i: usize,
        job: &CopyJob,
        tally: &ImageTally,
    ) -> Result<(ImageState, String), RegistryError> {
        if self.opts.attachments.is_empty() {
            let (state, digest, _) = self.copy_image_only(i, job, tally).await?;
            return Ok((state, digest));
        }
        let src = mirrored_source(&job.source, &self.opts.source_mirrors);
        // The repository's tags are listed while the image is checked: on a rerun the listing then
        // adds no round trip to the image's. A failed listing is asked again (and reported) below.
        let listing = async {
            if matches!(self.origin, Origin::Registry) {
                let _ = self.finder.tags(&self.client, &src).await;
            }
        };
        let (image, ()) = futures::future::join(self.copy_image_only(i, job, tally), listing).await;
        let (state, digest, top) = image?;
        let dst = Repository::of(&job.target);
        let carried = match &self.origin {
            Origin::Registry => None,
            Origin::Archive { attachments, .. } => Some(
                attachments
                    .get(i)
                    .into_iter()
                    .flatten()
                    .filter(|a| self.opts.attachments.has(a.kind))
                    .cloned()
                    .collect::<Vec<_>>(),
            ),
        };
        let wrote = match carried {
            None => self.copy_attachments(&src, &dst, &digest, top, tally).await,
            Some(items) => {
                let found = attachments::Found {
                    items,
                    ..attachments::Found::default()
                };
                self.place_attachments(&src, &dst, found, tally).await
            }
        }
        .map_err(|e| attachment_error(&job.source, e))?;
        Ok((if wrote { ImageState::Copied } else { state }, digest))
    }

    /// Copies what is attached to the image `digest` (written to `dst` already: the subject before
    /// anything that refers to it) and to its per-platform manifests. Returns whether anything was
    /// written.
    async fn copy_attachments(
        &self,
        src: &Repository,
        dst: &Repository,
        digest: &str,
        top: Option<RawManifest>,
        tally: &ImageTally,
    ) -> Result<bool, RegistryError> {
        // A source that will not list its tags (some refuse) still has its images copied; the image
        // says so in its warnings.
        match self.finder.may_have(&self.client, src, digest).await {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            Err(e) if !e.is_transient() && !e.gave_up() => {
                tally.warn(format!("attachments not looked for: {e}"));
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
        let top = match top {
            Some(t) => t,
            None => self.read_manifest(src, digest).await?,
        };
        let mut subjects = attachments::subjects_of(&top);
        if !self.opts.platforms.is_empty() {
            // A rewritten index is not what the source signed; its children are.
            subjects.remove(0);
        }
        let found = self.finder.find(&self.client, src, &subjects).await?;
        self.place_attachments(src, dst, found, tally).await
    }

    /// Writes `found` (read from the origin) to `dst`, the fallback tags last. Returns whether anything
    /// was written.
    async fn place_attachments(
        &self,
        src: &Repository,
        dst: &Repository,
        found: attachments::Found,
        tally: &ImageTally,
    ) -> Result<bool, RegistryError> {
        if found.items.is_empty() {
            return Ok(false);
        }
        let copies = found
            .items
            .iter()
            .map(|a| self.copy_attachment(src, dst, a, tally));
        let answers = futures::future::try_join_all(copies).await?;
        let mut wrote = answers.iter().any(|(w, _)| *w);
        // Referrers per subject, for the target's fallback tag unless the target indexed them itself.
        let mut by_subject: Vec<(String, Vec<serde_json::Value>, bool)> = Vec::new();
        for (a, (_, confirmed)) in found.items.iter().zip(&answers) {
            let Some(d) = &a.descriptor else { continue };
            match by_subject.iter_mut().find(|(s, _, _)| *s == a.subject) {
                Some((_, list, all)) => {
                    list.push(d.clone());
                    *all &= *confirmed;
                }
                None => by_subject.push((a.subject.clone(), vec![d.clone()], *confirmed)),
            }
        }
        for (subject, wanted, confirmed) in by_subject {
            if confirmed
                || self
                    .finder
                    .api_referrers(&self.client, dst, &subject)
                    .await?
                    .is_some()
            {
                continue;
            }
            wrote |= attachments::merge_fallback(
                &self.client,
                dst,
                &subject,
                &wanted,
                found.fallback_indexes.get(&subject),
            )
            .await?;
        }
        Ok(wrote)
    }

    /// One attachment: a cosign tag (written under its tag unless the target has it on the same
    /// digest) or a referrer (written by digest). Returns (written, the target confirmed the referrer's
    /// subject with `OCI-Subject`).
    async fn copy_attachment(
        &self,
        src: &Repository,
        dst: &Repository,
        a: &attachments::Attachment,
        tally: &ImageTally,
    ) -> Result<(bool, bool), RegistryError> {
        let reference = a.tag.clone().unwrap_or_else(|| a.digest.clone());
        let have = self.client.head_manifest(dst, &reference).await?;
        if have.is_some_and(|h| h.digest == a.digest) {
            tally.attachments_present.fetch_add(1, Ordering::Relaxed);
            return Ok((false, false));
        }
        let raw = self.read_manifest(src, &a.digest).await?;
        self.copy_contents(src, dst, &raw, tally).await?;
        let answer = self
            .client
            .put_manifest_answer(dst, &reference, &raw.media_type, raw.bytes.clone())
            .await?;
        if answer.digest != raw.digest {
            return Err(RegistryError::DigestMismatch {
                what: format!("{} {dst}:{reference} as stored by the target", a.kind.as_str()),
                expected: raw.digest,
                actual: answer.digest,
            });
        }
        tally.attachments_copied.fetch_add(1, Ordering::Relaxed);
        Ok((
            true,
            a.tag.is_none() && answer.subject.as_deref() == Some(a.subject.as_str()),
        ))
    }

    /// The image itself; the top manifest is returned when it was read.
    async fn copy_image_only(
        &self,
        i: usize,
        job: &CopyJob,
        tally: &ImageTally,
    ) -> Result<(ImageState, String, Option<RawManifest>), RegistryError> {
        let src = mirrored_source(&job.source, &self.opts.source_mirrors);
        let pinned = match &self.origin {
            Origin::Registry => job.source.digest.clone(),
            Origin::Archive { digests, .. } => digests.get(i).cloned(),
        };
        let dst = Repository::of(&job.target);
        // The tag is what users pull; a digest-only target is written by digest.
        let dst_ref = target_reference(&job.target).to_string();
        let filtering = !self.opts.platforms.is_empty();
        // The target first: over an already-mirrored plan this HEAD (and, for a tag, one at the source)
        // is all an image costs; on a cold copy the source manifest is then read by tag in one GET.
        let have = self.client.head_manifest(&dst, &dst_ref).await?.map(|i| i.digest);
        let mut top = match (pinned, &have) {
            (Some(d), have) => {
                if !filtering && have.as_ref() == Some(&d) {
                    return Ok((ImageState::UpToDate, d, None));
                }
                self.read_manifest(&src, &d).await?
            }
            (None, Some(have)) if !filtering => {
                let tag = job.source.identifier();
                let Some(info) = self.client.head_manifest(&src, tag).await? else {
                    return Err(RegistryError::NotFound {
                        what: format!("manifest {src}:{tag}"),
                    });
                };
                if info.digest == *have {
                    return Ok((ImageState::UpToDate, info.digest, None));
                }
                self.read_manifest(&src, &info.digest).await?
            }
            (None, _) => self.client.get_manifest(&src, job.source.identifier()).await?,
        };
        if filtering {
            if manifest::is_index(&top.media_type) {
                top = self.filter_index(&top, &src, tally)?;
            }
            if have.as_ref() == Some(&top.digest) {
                return Ok((ImageState::UpToDate, top.digest.clone(), Some(top)));
            }
        }
        self.copy_contents(&src, &dst, &top, tally).await?;
        let put = self
            .client
            .put_manifest(&dst, &dst_ref, &top.media_type, top.bytes.clone())
            .await?;
        if put != top.digest {
            return Err(RegistryError::DigestMismatch {
                what: format!("manifest {dst}:{dst_ref} as stored by the target"),
                expected: top.digest,
                actual: put,
            });
        }
        Ok((ImageState::Copied, top.digest.clone(), Some(top)))
    }

    /// A manifest's bytes from the origin, verified against `digest`.
    async fn read_manifest(&self, src: &Repository, digest: &str) -> Result<RawManifest, RegistryError> {
        match &self.origin {
            Origin::Registry => self.client.get_manifest(src, digest).await,
            Origin::Archive { layout, .. } => {
                let bad = |detail: String| RegistryError::BadManifest {
                    what: format!("archived manifest {digest} of {src}"),
                    detail,
                };
                let bytes = layout.manifest_bytes(digest).map_err(|e| bad(e.to_string()))?;
                let view = ManifestView::parse(&bytes).map_err(|e| bad(e.to_string()))?;
                Ok(RawManifest {
                    media_type: view.effective_media_type(None),
                    bytes,
                    digest: digest.to_string(),
                })
            }
        }
    }

    /// A blob's bytes from the origin, unchecked (the caller hashes them on the way).
    async fn blob_body(
        &self,
        src: &Repository,
        dst: &Repository,
        blob: &Descriptor,
    ) -> Result<futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>>, RegistryError> {
        match &self.origin {
            Origin::Registry => {
                let resp = self.client.get_blob(src, &blob.digest).await?;
                Ok(resp.bytes_stream().map_err(std::io::Error::other).boxed())
            }
            Origin::Archive { layout, .. } => match layout.blob_stream(&blob.digest) {
                Some(s) => Ok(s.boxed()),
                None => Err(self.missing_base(dst, &blob.digest)),
            },
        }
    }

    /// A blob neither in the (incremental) archive nor at the target: name it and the base archive.
    fn missing_base(&self, dst: &Repository, digest: &str) -> RegistryError {
        let base = match &self.origin {
            Origin::Archive { layout, .. } => layout.base(),
            Origin::Registry => None,
        };
        RegistryError::NotFound {
            what: match base {
                Some(base) => format!(
                    "blob {digest} is not in this incremental archive and not at {dst}; push the base archive {base} first"
                ),
                None => format!("blob {digest} is neither in the archive nor at {dst}"),
            },
        }
    }

    /// Keeps only the children of an index that match `--platform`; the result is a new index.
    fn filter_index(
        &self,
        index: &RawManifest,
        src: &Repository,
        tally: &ImageTally,
    ) -> Result<RawManifest, RegistryError> {
        let bad = |detail: String| RegistryError::BadManifest {
            what: format!("index {src}@{}", index.digest),
            detail,
        };
        let mut doc: serde_json::Value =
            serde_json::from_slice(&index.bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
        let list = doc
            .get_mut("manifests")
            .and_then(|m| m.as_array_mut())
            .ok_or_else(|| bad("no manifests list".into()))?;
        let before = list.len();
        list.retain(|d| {
            d.get("platform")
                .and_then(|p| serde_json::from_value::<Platform>(p.clone()).ok())
                .is_some_and(|p| self.opts.platforms.iter().any(|f| f.selects(&p)))
        });
        if list.is_empty() {
            let wanted: Vec<String> = self.opts.platforms.iter().map(ToString::to_string).collect();
            return Err(bad(format!("no child matches --platform {}", wanted.join(","))));
        }
        if list.len() == before {
            return Ok(index.clone());
        }
        let bytes = Bytes::from(serde_json::to_vec(&doc).map_err(|e| bad(e.to_string()))?);
        let digest = sha256_digest(&bytes);
        tally.warn(format!(
            "--platform kept {} of {before} platforms: the index was rewritten, its digest is {digest} instead of the source's {}",
            doc["manifests"].as_array().map_or(0, Vec::len),
            index.digest
        ));
        Ok(RawManifest {
            bytes,
            media_type: index.media_type.clone(),
            digest,
        })
    }

    /// Everything a manifest references, so that it can be written: blobs of an image manifest, or every
    /// child manifest (with its own contents, children before parent) of an index.
    fn copy_contents<'a>(
        &'a self,
        src: &'a Repository,
        dst: &'a Repository,
        m: &'a RawManifest,
        tally: &'a ImageTally,
    ) -> futures::future::BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let view = ManifestView::parse(&m.bytes).map_err(|e| RegistryError::BadManifest {
                what: format!("manifest {src}@{}", m.digest),
                detail: e.to_string(),
            })?;
            if manifest::is_index(&m.media_type) {
                let children = view
                    .manifests
                    .iter()
                    .map(|child| self.copy_child(src, dst, child, tally));
                futures::future::try_join_all(children).await?;
            } else {
                let mut blobs: Vec<&Descriptor> = view.config.iter().chain(view.layers.iter()).collect();
                blobs.retain(|b| {
                    if b.is_foreign() {
                        tally.warn(format!(
                            "foreign layer {} ({}) not copied; the target will fetch it from {}",
                            b.digest,
                            b.media_type,
                            b.urls.first().map_or("its URLs", String::as_str)
                        ));
                        false
                    } else {
                        true
                    }
                });
                blobs.sort_by_key(|b| std::cmp::Reverse(b.size));
                let mut seen = HashSet::new();
                blobs.retain(|b| seen.insert(b.digest.clone()));
                let jobs = blobs.into_iter().map(|b| async move {
                    let outcome = self.ensure_blob(src, dst, b).await?;
                    tally.counters.add(outcome, b.size);
                    Ok::<_, RegistryError>(())
                });
                futures::future::try_join_all(jobs).await?;
            }
            Ok(())
        })
    }

    async fn copy_child(
        &self,
        src: &Repository,
        dst: &Repository,
        child: &Descriptor,
        tally: &ImageTally,
    ) -> Result<(), RegistryError> {
        let key = (dst.clone(), child.digest.clone());
        if self
            .manifests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&key)
        {
            return Ok(());
        }
        // No HEAD first: the image's tag was missing, so its children are most likely missing too, and a
        // child left by an interrupted run costs only its blobs' mount requests (each answers "present").
        let raw = self.read_manifest(src, &child.digest).await?;
        self.copy_contents(src, dst, &raw, tally).await?;
        self.client
            .put_manifest(dst, &child.digest, &raw.media_type, raw.bytes.clone())
            .await?;
        self.manifests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key);
        Ok(())
    }

    /// Makes sure `dst` holds the blob, once per (repository, digest) per run.
    async fn ensure_blob(
        &self,
        src: &Repository,
        dst: &Repository,
        blob: &Descriptor,
    ) -> Result<BlobOutcome, RegistryError> {
        let once = cell(&self.placed, (dst.clone(), blob.digest.clone()));
        let mine = AtomicBool::new(false);
        let outcome = *once
            .get_or_try_init(|| async {
                mine.store(true, Ordering::Relaxed);
                self.place_blob(src, dst, blob).await
            })
            .await?;
        // Another image of this run already put it there.
        Ok(if mine.load(Ordering::Relaxed) {
            outcome
        } else {
            BlobOutcome::Present
        })
    }

    async fn place_blob(
        &self,
        src: &Repository,
        dst: &Repository,
        blob: &Descriptor,
    ) -> Result<BlobOutcome, RegistryError> {
        if let Origin::Archive { layout, left_out, .. } = &self.origin
            && !layout.blobs.contains_key(&blob.digest)
        {
            if self.client.blob_exists(dst, &blob.digest).await? {
                self.live.add(BlobOutcome::Present, blob.size);
                return Ok(BlobOutcome::Present);
            }
            // Left out of an incremental archive: the base archive put it in another repository.
            for from in left_out.get(&blob.digest).into_iter().flatten() {
                if from == dst || from.host != dst.host {
                    continue;
                }
                match self.client.mount_blob(dst, &blob.digest, &from.path).await {
                    Ok(Mount::Mounted) => {
                        self.note_mount(&dst.host, true);
                        self.live.add(BlobOutcome::Mounted, blob.size);
                        return Ok(BlobOutcome::Mounted);
                    }
                    Ok(Mount::Upload(_)) => {}
                    Err(e) => tracing::debug!(digest = %blob.digest, %from, error = %e, "mount failed"),
                }
            }
            return Err(self.missing_base(dst, &blob.digest));
        }
        let home = cell(&self.homes, (dst.host.clone(), blob.digest.clone()));
        let first = Mutex::new(None);
        let home_path = home
            .get_or_try_init(|| async {
                let outcome = self.first_placement(src, dst, blob).await?;
                *first.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
                Ok::<_, RegistryError>(dst.path.clone())
            })
            .await?;
        if let Some(outcome) = *first.lock().unwrap_or_else(|e| e.into_inner()) {
            if outcome != BlobOutcome::Copied {
                self.live.add(outcome, blob.size);
            }
            return Ok(outcome);
        }
        if *home_path == dst.path {
            return Ok(BlobOutcome::Copied);
        }
        match self.client.mount_blob(dst, &blob.digest, home_path).await {
            Ok(Mount::Mounted) => {
                self.note_mount(&dst.host, true);
                tracing::debug!(digest = %blob.digest, from = %home_path, to = %dst, "mounted");
                self.live.add(BlobOutcome::Mounted, blob.size);
                Ok(BlobOutcome::Mounted)
            }
            Ok(Mount::Upload(location)) => {
                self.transfer(src, dst, blob, Some(location)).await?;
                Ok(BlobOutcome::Copied)
            }
            Err(e) => {
                tracing::debug!(digest = %blob.digest, error = %e, "mount failed; copying");
                self.transfer(src, dst, blob, None).await?;
                Ok(BlobOutcome::Copied)
            }
        }
    }

    /// The first placement of a blob on a target registry in this run.
    ///
    /// A blob an earlier run put in another repository of this registry is mounted from there.
    /// Once the registry has shown that it honours mounts, one `POST ?mount=…&from=<dst>` asks "do you
    /// have it?" and opens the upload if not: one request where a `HEAD` and a `POST` were. Before that
    /// (and on registries that answer a mount with an error) a `HEAD` comes first, so that a registry
    /// which silently ignores mounts never gets bytes it already holds.
    async fn first_placement(
        &self,
        src: &Repository,
        dst: &Repository,
        blob: &Descriptor,
    ) -> Result<BlobOutcome, RegistryError> {
        if let Some(from) = self
            .earlier
            .get(&dst.host, &blob.digest)
            .filter(|from| *from != dst.path)
        {
            match self.client.mount_blob(dst, &blob.digest, from).await {
                Ok(Mount::Mounted) => {
                    self.note_mount(&dst.host, true);
                    return Ok(BlobOutcome::Mounted);
                }
                Ok(Mount::Upload(location)) => {
                    // The earlier home no longer holds it; this repository may (an interrupted run).
                    if self.client.blob_exists(dst, &blob.digest).await? {
                        return Ok(BlobOutcome::Present);
                    }
                    self.transfer(src, dst, blob, Some(location)).await?;
                    return Ok(BlobOutcome::Copied);
                }
                Err(e) => {
                    tracing::debug!(digest = %blob.digest, %from, error = %e, "mount from an earlier run's repository failed");
                }
            }
        }
        if self.mounts_work(&dst.host) {
            match self.client.mount_blob(dst, &blob.digest, &dst.path).await {
                Ok(Mount::Mounted) => return Ok(BlobOutcome::Present),
                Ok(Mount::Upload(location)) => {
                    self.transfer(src, dst, blob, Some(location)).await?;
                    return Ok(BlobOutcome::Copied);
                }
                Err(e) if e.is_transient() || e.gave_up() => return Err(e),
                Err(e) => {
                    tracing::debug!(host = %dst.host, error = %e, "a mount from the repository itself was refused; asking with HEAD from now on");
                    self.note_mount(&dst.host, false);
                }
            }
        }
        if self.client.blob_exists(dst, &blob.digest).await? {
            return Ok(BlobOutcome::Present);
        }
        self.transfer(src, dst, blob, None).await?;
        Ok(BlobOutcome::Copied)
    }

    /// Records where this run placed each blob, for the next run ([`homes`]); a failure to write is
    /// only logged.
    fn remember_homes(&self) {
        let mut learned: HashMap<String, HashMap<String, String>> = HashMap::new();
        for ((host, digest), home) in self.homes.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            if let Some(path) = home.get() {
                learned
                    .entry(host.clone())
                    .or_default()
                    .insert(digest.clone(), path.clone());
            }
        }
        if let Err(e) = self.earlier.save(learned) {
            tracing::warn!(error = %e, "could not record where blobs were placed (only later runs are slower)");
        }
    }

    /// Whether `host` has mounted a blob in this run and never refused a mount request.
    fn mounts_work(&self, host: &str) -> bool {
        self.mount_support
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(host)
            .copied()
            .unwrap_or(false)
    }

    /// Records a mount answer from `host`: a refusal is final for the run.
    fn note_mount(&self, host: &str, works: bool) {
        let mut m = self.mount_support.lock().unwrap_or_else(|e| e.into_inner());
        let entry = m.entry(host.to_string()).or_insert(works);
        *entry = *entry && works;
    }

    /// Streams a blob from `src` into `dst`. A transfer that fails is started again from scratch under
    /// the registry client's retry policy ([`Client::retry_operation`]): a new `GET` at the source and a
    /// new upload session at the target (the first attempt may use `location`, opened by a mount
    /// request), never the rest of a half-written blob.
    async fn transfer(
        &self,
        src: &Repository,
        dst: &Repository,
        blob: &Descriptor,
        location: Option<String>,
    ) -> Result<(), RegistryError> {
        use crate::registry::retry::Failed;
        let location = Mutex::new(location);
        let location = &location;
        // Requests below are retried on their own: their failure ends the transfer.
        let settled = |host: &str| {
            let host = host.to_string();
            move |e| (host, Failed::settled(e))
        };
        self.client
            .retry_operation(move || async move {
                let _slot = self.transfers.acquire(blob.size).await;
                let body = self.blob_body(src, dst, blob).await.map_err(settled(&src.host))?;
                let reuse = location.lock().unwrap_or_else(|e| e.into_inner()).take();
                let loc = match reuse {
                    Some(l) => l,
                    None => self.client.start_upload(dst).await.map_err(settled(&dst.host))?,
                };
                let spoiled = Arc::new(Mutex::new(None));
                let live = self.live.clone();
                let body = verifying_stream(
                    body,
                    blob.digest.clone(),
                    blob.size,
                    Arc::new(move |n| {
                        live.copied.fetch_add(n, Ordering::Relaxed);
                    }),
                    spoiled.clone(),
                );
                let r = self
                    .client
                    .finish_upload(
                        dst,
                        &loc,
                        &blob.digest,
                        blob.size,
                        reqwest::Body::wrap_stream(body),
                    )
                    .await;
                let what = || format!("blob {src}@{}", blob.digest);
                // The source's fault, whatever the target made of the broken upload.
                if let Some(s) = spoiled.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    tracing::debug!(digest = %blob.digest, from = %src, why = ?s, "source body spoiled; fetching it again");
                    return Err((src.host.clone(), Failed::from(s.error(what(), &blob.digest))));
                }
                if let Err(RegistryError::Status {
                    status: 400, detail, ..
                }) = &r
                    && detail.contains("DIGEST_INVALID")
                {
                    return Err((
                        src.host.clone(),
                        Failed::from(RegistryError::DigestMismatch {
                            what: what(),
                            expected: blob.digest.clone(),
                            actual: "other content (the target registry refused it)".into(),
                        }),
                    ));
                }
                r.map_err(|e| (dst.host.clone(), Failed::from(e)))
            })
            .await
    }
}

enum ImageState {
    UpToDate,
    Copied,
}

/// An attachment's failure names the image it belongs to.
fn attachment_error(image: &ImageRef, e: RegistryError) -> RegistryError {
    match e {
        RegistryError::NotFound { what } => RegistryError::NotFound {
            what: format!("attachments of {image}: {what}"),
        },
        RegistryError::BadManifest { what, detail } => RegistryError::BadManifest {
            what: format!("attachments of {image}: {what}"),
            detail,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(sizes: &[usize]) -> Vec<Result<Bytes, std::io::Error>> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, n)| Ok(Bytes::from(vec![i as u8; *n])))
            .collect()
    }

    #[tokio::test]
    async fn uploads_go_in_large_pieces_and_every_byte_is_kept() {
        // Small pieces are joined up to the minimum, a big one on its own passes as it is, the rest ends
        // the stream.
        let input = pieces(&[10, 20, 40, 5, 100, 3]);
        let out: Vec<Bytes> = coalesce(futures::stream::iter(input), 30)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(
            out.iter().map(Bytes::len).collect::<Vec<_>>(),
            vec![30, 40, 105, 3]
        );
        let joined: Vec<u8> = out.concat();
        let expected: Vec<u8> = [(0u8, 10), (1, 20), (2, 40), (3, 5), (4, 100), (5, 3)]
            .iter()
            .flat_map(|(b, n)| std::iter::repeat_n(*b, *n))
            .collect();
        assert_eq!(joined, expected);
    }

    #[tokio::test]
    async fn a_body_that_does_not_hash_to_its_digest_fails_before_its_last_byte() {
        let data = vec![7u8; 600 * 1024];
        let good = sha256_digest(&data);
        let run = |digest: String, size: u64| {
            let body = futures::stream::iter(
                data.chunks(64 * 1024)
                    .map(|c| Ok(Bytes::copy_from_slice(c)))
                    .collect::<Vec<_>>(),
            );
            let mismatch = Arc::new(Mutex::new(None));
            let s = verifying_stream(body, digest, size, Arc::new(|_| {}), mismatch.clone());
            async move {
                let items: Vec<Result<Bytes, std::io::Error>> = s.collect().await;
                let passed: usize = items.iter().filter_map(|r| r.as_ref().ok()).map(Bytes::len).sum();
                let failed = items.iter().any(Result::is_err);
                let noted = mismatch.lock().unwrap().clone();
                (passed, failed, noted)
            }
        };
        assert_eq!(
            run(good.clone(), data.len() as u64).await,
            (data.len(), false, None)
        );
        let (passed, failed, noted) = run(format!("sha256:{}", "0".repeat(64)), data.len() as u64).await;
        assert!(failed && passed < data.len(), "{passed}");
        assert!(matches!(noted, Some(Spoiled::Mismatch(m)) if m.contains(&good)));
        let (_, failed, noted) = run(good, data.len() as u64 - 1).await;
        assert!(failed && matches!(noted, Some(Spoiled::Mismatch(m)) if m.contains("more than")));
    }

    #[test]
    fn source_mirror_rewrites_prefixes_only() {
        let m = vec![
            ("docker.io".to_string(), "127.0.0.1:5000/hub".to_string()),
            ("quay.io/kubermatic".to_string(), "mirror.local".to_string()),
        ];
        let r = |s: &str| mirrored_source(&ImageRef::parse(s).unwrap(), &m);
        assert_eq!(
            r("nginx:1"),
            Repository::new("127.0.0.1:5000", "hub/library/nginx")
        );
        assert_eq!(
            r("quay.io/kubermatic/kkp:v1"),
            Repository::new("mirror.local", "kkp")
        );
        assert_eq!(
            r("quay.io/kubermaticx/kkp:v1"),
            Repository::new("quay.io", "kubermaticx/kkp")
        );
    }
}
