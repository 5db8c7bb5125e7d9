//! Where earlier runs put each blob on a target registry, so that a later run mounts it from there
//! instead of uploading it again into a new repository (a KKP upgrade brings new images on the same
//! base layers as the ones mirrored last time).
//!
//! One small JSON file per target host in the user's cache directory, read at the start of a run and
//! merged with what the run placed at its end. Advisory only: an entry that has gone stale costs one
//! mount request, which the registry answers with "upload instead".

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Entries kept per host (≈100 bytes each); older ones go first when a run adds more.
const MAX_ENTRIES: usize = 200_000;

/// Known blob locations: target host → digest → repository path.
#[derive(Debug, Default)]
pub struct BlobHomes {
    dir: Option<PathBuf>,
    known: HashMap<String, HashMap<String, String>>,
}

/// `$XDG_CACHE_HOME/kubectl-kkp/blob-homes`, else `~/.cache/kubectl-kkp/blob-homes`.
pub fn default_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("kubectl-kkp").join("blob-homes"))
}

/// The file for `host`: its name with anything but `[A-Za-z0-9.-]` as `_`.
fn file_for(dir: &Path, host: &str) -> PathBuf {
    let name: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("{name}.json"))
}

impl BlobHomes {
    /// Reads what earlier runs recorded for `hosts` under `dir` (`None`: remember nothing). A missing
    /// or unreadable file is an empty one: the cache only ever saves requests.
    pub fn load<'a>(dir: Option<PathBuf>, hosts: impl IntoIterator<Item = &'a str>) -> BlobHomes {
        let mut known = HashMap::new();
        if let Some(dir) = &dir {
            for host in hosts {
                if known.contains_key(host) {
                    continue;
                }
                let path = file_for(dir, host);
                let map: HashMap<String, String> = std::fs::read(&path)
                    .ok()
                    .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                    .unwrap_or_default();
                tracing::debug!(%host, entries = map.len(), file = %path.display(), "blob locations from earlier runs");
                known.insert(host.to_string(), map);
            }
        }
        BlobHomes { dir, known }
    }

    /// The repository an earlier run put `digest` in on `host`.
    pub fn get(&self, host: &str, digest: &str) -> Option<&str> {
        self.known.get(host)?.get(digest).map(String::as_str)
    }

    /// Records `learned` (host → digest → repository) on top of what was loaded; each host's file is
    /// replaced whole (written beside it, then renamed).
    pub fn save(&self, learned: HashMap<String, HashMap<String, String>>) -> std::io::Result<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        for (host, new) in learned {
            if new.is_empty() {
                continue;
            }
            let mut all = self.known.get(&host).cloned().unwrap_or_default();
            if all.len() + new.len() > MAX_ENTRIES {
                // Old entries go; this run's are the likeliest to be asked for next time.
                let keep = MAX_ENTRIES.saturating_sub(new.len());
                all = all
                    .into_iter()
                    .filter(|(d, _)| !new.contains_key(d))
                    .take(keep)
                    .collect();
            }
            all.extend(new);
            std::fs::create_dir_all(dir)?;
            let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
            serde_json::to_writer(&mut tmp, &all)?;
            tmp.flush()?;
            tmp.persist(file_for(dir, &host)).map_err(|e| e.error)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_run_learns_is_there_for_the_next_and_nothing_is_kept_without_a_dir() {
        let dir = tempfile::tempdir().unwrap();
        let homes = BlobHomes::load(Some(dir.path().into()), ["reg.local:5000"]);
        assert_eq!(homes.get("reg.local:5000", "sha256:a"), None);
        let learned = HashMap::from([(
            "reg.local:5000".to_string(),
            HashMap::from([("sha256:a".to_string(), "team/app".to_string())]),
        )]);
        homes.save(learned.clone()).unwrap();
        assert!(dir.path().join("reg.local_5000.json").is_file());
        let next = BlobHomes::load(Some(dir.path().into()), ["reg.local:5000", "other"]);
        assert_eq!(next.get("reg.local:5000", "sha256:a"), Some("team/app"));
        assert_eq!(next.get("other", "sha256:a"), None);

        let none = BlobHomes::load(None, ["reg.local:5000"]);
        none.save(learned).unwrap();
        assert_eq!(none.get("reg.local:5000", "sha256:a"), None);
    }

    #[test]
    fn a_damaged_file_counts_as_empty_and_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("h.json"), b"{not json").unwrap();
        let homes = BlobHomes::load(Some(dir.path().into()), ["h"]);
        assert_eq!(homes.get("h", "sha256:a"), None);
        homes
            .save(HashMap::from([(
                "h".to_string(),
                HashMap::from([("sha256:b".to_string(), "x".to_string())]),
            )]))
            .unwrap();
        let again = BlobHomes::load(Some(dir.path().into()), ["h"]);
        assert_eq!(again.get("h", "sha256:b"), Some("x"));
    }
}
