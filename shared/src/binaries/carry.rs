//! Node binaries in an archive, for sneakernet: `--archive FILE --binaries DIR` carries the files of DIR
//! (downloaded and checked first) below the archive's `kkp-binaries/`, with `plan.json` naming every
//! file, its sha256 and whether this archive holds it (an incremental `--since` archive leaves out the
//! files its base already carries); `--from-archive FILE --binaries DIR` writes them below DIR on the
//! inside, each checked against the archive's `.sha256` and the plan before any is renamed into place.
//!
//! Everything read from the archive is untrusted: paths are checked to stay below DIR, sizes are
//! bounded, and a corrupt file leaves nothing behind.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{
    BinariesError, BinaryFile, BinaryPlan, Local, MAX_CHECKSUM_FILE, Prepared, check_dir, check_local,
    checksum_of, io_err, persist, release_links, temp_beside,
};
use crate::cli::OutputFormat;
use crate::copy::archive::{ArchiveError, EXTRA_PREFIX, Extra, ExtraContent, ExtraFiles, Layout};

/// The carried plan's name below [`EXTRA_PREFIX`].
const PLAN: &str = "plan.json";
/// Largest `plan.json` read.
const MAX_PLAN: u64 = 8 << 20;

/// `plan.json`: what an archive's node binaries are.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CarriedPlan {
    osm_version: String,
    kube_dirs: Vec<String>,
    files: Vec<CarriedFile>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CarriedFile {
    #[serde(flatten)]
    file: BinaryFile,
    /// The file's sha256 (hex), as its `.sha256` says.
    sha256: String,
    /// Its size in bytes.
    size: u64,
    /// False when the `--since` base archive carries it and this one does not.
    carried: bool,
}

/// The node binaries of `--binaries DIR`, as extra files of an archive.
pub struct Carry<'a>(pub &'a Prepared);

impl ExtraFiles for Carry<'_> {
    fn extras(&self, base: Option<&Layout>) -> Result<Vec<Extra>, ArchiveError> {
        let prep = self.0;
        let refuse = |path: &Path, why: String| ArchiveError::layout(path, why);
        // What the base archive already carries: (path, sha256).
        let in_base: BTreeSet<(String, String)> = match base {
            Some(layout) => match read_plan(layout)? {
                Some(plan) => plan.files.into_iter().map(|f| (f.file.path, f.sha256)).collect(),
                None => BTreeSet::new(),
            },
            None => BTreeSet::new(),
        };
        let mut extras = Vec::new();
        let mut files = Vec::new();
        for f in &prep.plan.files {
            let path = prep.dir.join(&f.path);
            if check_local(&prep.dir, f) != Local::Complete {
                return Err(refuse(
                    &path,
                    "missing or not matching its .sha256; the download must complete before it is archived"
                        .into(),
                ));
            }
            let sum_path = prep.dir.join(f.checksum_path());
            let sum = std::fs::read(&sum_path).map_err(ArchiveError::io(&sum_path))?;
            let sha256 =
                checksum_of(&sum).ok_or_else(|| refuse(&sum_path, "not a sha256 checksum file".into()))?;
            let size = std::fs::metadata(&path).map_err(ArchiveError::io(&path))?.len();
            let carried = !in_base.contains(&(f.path.clone(), sha256.clone()));
            if carried {
                extras.push(Extra {
                    name: f.path.clone(),
                    content: ExtraContent::File(path),
                });
                extras.push(Extra {
                    name: f.checksum_path(),
                    content: ExtraContent::Bytes(sum),
                });
            }
            files.push(CarriedFile {
                file: f.clone(),
                sha256,
                size,
                carried,
            });
        }
        let plan = CarriedPlan {
            osm_version: prep.plan.osm_version.clone(),
            kube_dirs: prep.plan.kube_dirs.clone(),
            files,
        };
        extras.push(Extra {
            name: PLAN.into(),
            content: ExtraContent::Bytes(serde_json::to_vec_pretty(&plan).unwrap_or_default()),
        });
        Ok(extras)
    }
}

fn read_plan(layout: &Layout) -> Result<Option<CarriedPlan>, ArchiveError> {
    let Some(bytes) = layout.extra_bytes(PLAN, MAX_PLAN)? else {
        return Ok(None);
    };
    let plan: CarriedPlan = serde_json::from_slice(&bytes)
        .map_err(|e| ArchiveError::layout(&layout.path, format!("{EXTRA_PREFIX}{PLAN}: {e}")))?;
    for f in &plan.files {
        if !safe_relative(&f.file.path) {
            return Err(ArchiveError::layout(
                &layout.path,
                format!(
                    "{EXTRA_PREFIX}{PLAN}: path {:?} does not stay below DIR",
                    f.file.path
                ),
            ));
        }
        if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ArchiveError::layout(
                &layout.path,
                format!(
                    "{EXTRA_PREFIX}{PLAN}: {}: sha256 {:?} is not a sha256",
                    f.file.path, f.sha256
                ),
            ));
        }
    }
    for d in &plan.kube_dirs {
        if !d.starts_with('v') || !safe_relative(d) || d.contains('/') {
            return Err(ArchiveError::layout(
                &layout.path,
                format!("{EXTRA_PREFIX}{PLAN}: {d:?} is not a Kubernetes version directory"),
            ));
        }
    }
    Ok(Some(plan))
}

/// A relative path of plain names only: no root, no `..`, no `.`, no empty part.
fn safe_relative(p: &str) -> bool {
    !p.is_empty()
        && !p.contains('\\')
        && !p.split('/').any(|c| c.is_empty() || c == "." || c == "..")
        && Path::new(p)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// The archive's plan, or the error that it carries none.
fn plan_of(layout: &Layout) -> Result<CarriedPlan, BinariesError> {
    let archive_err = |e: ArchiveError| BinariesError::Io {
        path: layout.path.clone(),
        detail: e
            .to_string()
            .trim_start_matches(&format!("{}: ", layout.path.display()))
            .to_string(),
    };
    read_plan(layout)
        .map_err(archive_err)?
        .ok_or_else(|| BinariesError::Io {
            path: layout.path.clone(),
            detail: "carries no node binaries (it was written without --binaries); drop --binaries".into(),
        })
}

/// How many node binaries `layout` carries (for a hint when `--binaries` was not given).
pub fn carried_count(layout: &Layout) -> usize {
    read_plan(layout)
        .ok()
        .flatten()
        .map_or(0, |p| p.files.iter().filter(|f| f.carried).count())
}

/// `--from-archive FILE --binaries DIR`: writes the archive's node binaries below DIR. Every file is
/// first written to a temporary file beside its place and checked against the archive's `.sha256` and
/// `plan.json`; only when all are good are they renamed into place (the `.sha256` after its file). A
/// file already below DIR with the same checksum is left alone; one an incremental archive leaves out
/// must be there already. Exit code 0.
pub fn run_unpack(layout: &Layout, dir: &Path, format: OutputFormat) -> Result<u8, BinariesError> {
    let plan = plan_of(layout)?;
    check_dir(dir)?;
    let base = layout.base().unwrap_or("its base archive").to_string();
    let bad = |what: String| BinariesError::Io {
        path: layout.path.clone(),
        detail: what,
    };
    let mut staged = Vec::new();
    let mut already = 0usize;
    let mut bytes = 0u64;
    for c in &plan.files {
        let f = &c.file;
        let local_sum = std::fs::read(dir.join(f.checksum_path()))
            .ok()
            .and_then(|s| checksum_of(&s));
        if check_local(dir, f) == Local::Complete && local_sum.as_deref() == Some(c.sha256.as_str()) {
            already += 1;
            continue;
        }
        if !c.carried {
            return Err(bad(format!(
                "{} is not in this incremental archive and not below {} with sha256 {}: unpack {base} first",
                f.path,
                dir.display(),
                c.sha256
            )));
        }
        let sum_name = f.checksum_path();
        let sum = layout
            .extra_bytes(&sum_name, MAX_CHECKSUM_FILE as u64)
            .map_err(|e| bad(e.to_string()))?
            .ok_or_else(|| bad(format!("{EXTRA_PREFIX}{sum_name} is missing")))?;
        if checksum_of(&sum).as_deref() != Some(c.sha256.as_str()) {
            return Err(bad(format!(
                "{EXTRA_PREFIX}{sum_name} does not say sha256 {} as plan.json does",
                c.sha256
            )));
        }
        let (mut r, size) = layout
            .extra_reader(&f.path)
            .ok_or_else(|| bad(format!("{EXTRA_PREFIX}{} is missing", f.path)))?
            .map_err(|e| bad(e.to_string()))?;
        let dest = dir.join(&f.path);
        let mut tmp = temp_beside(&dest).map_err(|e| io_err(&dest, e))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = r.read(&mut buf).map_err(|e| bad(e.to_string()))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            tmp.write_all(&buf[..n]).map_err(|e| io_err(&dest, e))?;
        }
        let have = hex::encode(h.finalize());
        if have != c.sha256 {
            // Every staged file is dropped with `staged`: nothing is left behind.
            return Err(bad(format!(
                "{EXTRA_PREFIX}{} is corrupt: its {size} bytes hash to {have}, its .sha256 says {}; nothing was written below {}",
                f.path,
                c.sha256,
                dir.display()
            )));
        }
        bytes += size;
        staged.push((tmp, dest, sum, dir.join(&sum_name)));
    }
    let unpacked = staged.len();
    for (tmp, dest, sum, sum_dest) in staged {
        persist(tmp, &dest).map_err(|e| io_err(&dest, e))?;
        let mut t = temp_beside(&sum_dest).map_err(|e| io_err(&sum_dest, e))?;
        t.write_all(&sum).map_err(|e| io_err(&sum_dest, e))?;
        persist(t, &sum_dest).map_err(|e| io_err(&sum_dest, e))?;
    }
    release_links(&prepared(
        dir,
        plan.osm_version.clone(),
        plan.kube_dirs.clone(),
        Vec::new(),
    ))?;
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Unpacked {
        dir: String,
        files: usize,
        unpacked: usize,
        already_there: usize,
        mib: f64,
    }
    #[derive(Serialize)]
    struct Doc {
        binaries: Unpacked,
    }
    let doc = Doc {
        binaries: Unpacked {
            dir: dir.display().to_string(),
            files: plan.files.len(),
            unpacked,
            already_there: already,
            mib: bytes as f64 / (1024.0 * 1024.0),
        },
    };
    let text = crate::output::structured(&doc, format).unwrap_or_else(|| {
        format!(
            "node binaries in {}: {} files, {} unpacked from {} ({:.1} MiB), {} already there\n",
            dir.display(),
            plan.files.len(),
            unpacked,
            layout.path.display(),
            doc.binaries.mib,
            already
        )
    });
    crate::output::print(&text).map_err(BinariesError::Output)?;
    Ok(0)
}

/// `--verify --from-archive FILE --binaries DIR`: every file the archive names, below DIR with the
/// archive's checksum (offline). Exit code 1 when any is missing or different.
pub fn run_verify_unpacked(layout: &Layout, dir: &Path, format: OutputFormat) -> Result<u8, BinariesError> {
    let plan = plan_of(layout)?;
    // A file whose .sha256 below DIR names another checksum than the archive's is a mismatch too.
    let files: Vec<BinaryFile> = plan.files.iter().map(|c| c.file.clone()).collect();
    let wrong: BTreeSet<String> = plan
        .files
        .iter()
        .filter(|c| {
            std::fs::read(dir.join(c.file.checksum_path()))
                .ok()
                .and_then(|s| checksum_of(&s))
                .is_some_and(|s| s != c.sha256)
        })
        .map(|c| c.file.path.clone())
        .collect();
    super::verify_files(dir, &files, &wrong, format)
}

fn prepared(dir: &Path, osm_version: String, kube_dirs: Vec<String>, files: Vec<BinaryFile>) -> Prepared {
    Prepared {
        dir: dir.to_path_buf(),
        plan: BinaryPlan {
            osm_version,
            files,
            kube_dirs,
        },
        sources: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_are_safe() {
        for ok in [
            "v1.33.0/bin/linux/amd64/kubelet",
            "a",
            "kubernetes-sigs/cri-tools/x.tar.gz",
        ] {
            assert!(safe_relative(ok), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "./a",
            "a/.",
            "a\\..\\b",
            "a/",
        ] {
            assert!(!safe_relative(bad), "{bad}");
        }
    }
}
