//! The copy flags of `kubectl kkp mirror` and the glue from a [`Plan`] to the engine: flags are parsed
//! and checked here, the engine never sees a string it has to interpret.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;

use clap::Args;

use super::{CopyJob, CopyOptions, CopyReport};
use crate::cli::OutputFormat;
use crate::plan::Plan;
use crate::registry::manifest::Platform;
use crate::registry::{Client, ClientOptions, Credential, RegistryError};

/// Flags for copying to a registry.
#[derive(Debug, Clone, Default, Args)]
pub struct CopyArgs {
    /// Blob transfers at once, largest blob first (default 8); twice as many images are worked on.
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
    /// Registry host reached over plain HTTP, or HTTPS without certificate checks; repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
    /// Extra CA certificates (PEM) to trust, for every registry or, as HOST=FILE, for one; repeatable.
    #[arg(long = "ca-file", value_name = "[HOST=]FILE")]
    pub ca_files: Vec<String>,
    /// User name for the target registry (default: from docker/podman login files).
    #[arg(long, value_name = "USER")]
    pub username: Option<String>,
    /// Read the target registry's password from stdin (with --username).
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
    /// Read images under FROM through the mirror or pull-through cache TO (target names unchanged);
    /// repeatable, e.g. docker.io=harbor.local/dockerhub.
    #[arg(long = "source-mirror", value_name = "FROM=TO")]
    pub source_mirrors: Vec<String>,
    /// Copy only these platforms of multi-arch images (os/arch[/variant], comma-separated). The index is
    /// then rewritten, so its digest differs from the source's.
    #[arg(long, value_name = "OS/ARCH", value_delimiter = ',')]
    pub platform: Vec<String>,
    /// Neither use nor record where earlier runs put each blob on the target (kept in
    /// ~/.cache/kubectl-kkp/blob-homes so that new repositories mount shared layers instead of
    /// uploading them again).
    #[arg(long)]
    pub no_blob_cache: bool,
    /// Copy nothing attached to the images (cosign signatures, attestations, SBOMs, OCI referrers).
    #[arg(long, conflicts_with = "attachments")]
    pub skip_attachments: bool,
    /// Copy only these attachments of each image (comma-separated: sig, att, sbom, referrers) [default:
    /// all]. With --dry-run, the plan lists them (this asks the source registries).
    #[arg(long, value_name = "KINDS", value_delimiter = ',')]
    pub attachments: Option<Vec<String>>,
}

/// Why copying could not start, or did not complete.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A flag value is malformed.
    #[error("{0}")]
    Usage(String),
    /// Reading the password from stdin failed.
    #[error("reading the password from stdin: {0}")]
    Stdin(#[source] std::io::Error),
    /// The registry client could not be set up, or the target refused us before any image was copied.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The async runtime could not be started.
    #[error("starting the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// Printing the report failed.
    #[error("writing output: {0}")]
    Output(#[source] std::io::Error),
}

impl CopyArgs {
    /// The engine options these flags ask for.
    pub fn copy_options(&self) -> Result<CopyOptions, CopyError> {
        let platforms = self
            .platform
            .iter()
            .filter(|p| !p.trim().is_empty())
            .map(|p| {
                Platform::parse(p)
                    .ok_or_else(|| CopyError::Usage(format!("--platform {p:?}: expected os/arch[/variant]")))
            })
            .collect::<Result<_, _>>()?;
        let source_mirrors = self
            .source_mirrors
            .iter()
            .map(|m| match m.split_once('=') {
                Some((from, to)) if !from.trim().is_empty() && !to.trim().is_empty() => {
                    Ok((from.trim().to_string(), to.trim().to_string()))
                }
                _ => Err(CopyError::Usage(format!(
                    "--source-mirror {m:?}: expected FROM=TO"
                ))),
            })
            .collect::<Result<_, _>>()?;
        Ok(CopyOptions {
            parallel: self.parallel.unwrap_or(super::DEFAULT_PARALLEL).max(1),
            platforms,
            source_mirrors,
            progress: true,
            blob_homes_dir: if self.no_blob_cache {
                None
            } else {
                super::homes::default_dir()
            },
            attachments: self.attachment_kinds()?,
        })
    }

    /// The attachments these flags ask for: all by default, none with --skip-attachments.
    pub fn attachment_kinds(&self) -> Result<super::attachments::Kinds, CopyError> {
        use super::attachments::Kinds;
        if self.skip_attachments {
            return Ok(Kinds::none());
        }
        match &self.attachments {
            None => Ok(Kinds::all()),
            Some(list) => Kinds::parse(list).map_err(CopyError::Usage),
        }
    }

    /// The client options these flags ask for; `password` is the one read from stdin, if any.
    pub fn client_options(
        &self,
        target_host: &str,
        password: Option<String>,
    ) -> Result<ClientOptions, CopyError> {
        let mut ca_files = Vec::new();
        for spec in &self.ca_files {
            // HOST=FILE, unless the whole thing is an existing file (paths may contain '=').
            let entry = match spec.split_once('=') {
                Some((host, file)) if !PathBuf::from(spec).exists() => {
                    (Some(host.to_string()), PathBuf::from(file))
                }
                _ => (None, PathBuf::from(spec)),
            };
            if !entry.1.is_file() {
                return Err(CopyError::Usage(format!(
                    "--ca-file {spec}: {} is not a file",
                    entry.1.display()
                )));
            }
            ca_files.push(entry);
        }
        let mut credentials = HashMap::new();
        if let Some(username) = &self.username {
            let password =
                password.ok_or_else(|| CopyError::Usage("--username needs --password-stdin".into()))?;
            credentials.insert(
                target_host.to_string(),
                Credential::Basic {
                    username: username.clone(),
                    password,
                },
            );
        }
        let parallel = self.parallel.unwrap_or(super::DEFAULT_PARALLEL).max(1);
        Ok(ClientOptions {
            insecure: self.insecure_registries.clone(),
            ca_files,
            credentials,
            max_per_host: (parallel * 2).max(8),
            no_config_files: false,
        })
    }
}

/// `--dry-run --attachments …`: looks up what is attached to every planned image at its source and
/// lists it in the plan (`images[].attachments`). An image whose source cannot be asked gets a warning
/// in the plan, not an error; nothing is written anywhere.
pub fn list_attachments(plan: &mut Plan, args: &CopyArgs) -> Result<(), CopyError> {
    use futures::StreamExt;

    use super::attachments::{Finder, subjects_of};
    let opts = args.copy_options()?;
    if opts.attachments.is_empty() {
        return Ok(());
    }
    // Target credentials are not for source registries: reading sources uses the login files only.
    let sources_only = CopyArgs {
        username: None,
        password_stdin: false,
        ..args.clone()
    };
    let client = Client::new(sources_only.client_options("", None)?)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CopyError::Runtime)?;
    let finder = Finder::new(opts.attachments);
    let found: Vec<Result<Vec<super::attachments::Attachment>, RegistryError>> = rt.block_on(
        futures::stream::iter(plan.images.iter())
            .map(|e| {
                let (client, finder, mirrors) = (&client, &finder, &opts.source_mirrors);
                async move {
                    let src = super::mirrored_source(&e.source, mirrors);
                    let top = client.get_manifest(&src, e.source.identifier()).await?;
                    if !finder.may_have(client, &src, &top.digest).await? {
                        return Ok(Vec::new());
                    }
                    Ok(finder.find(client, &src, &subjects_of(&top)).await?.items)
                }
            })
            .buffered(opts.parallel * 2)
            .collect(),
    );
    for (entry, result) in plan.images.iter_mut().zip(found) {
        match result {
            Ok(items) => entry.attachments = items,
            Err(e) => plan
                .warnings
                .push(format!("attachments of {} not listed: {e}", entry.source)),
        }
    }
    Ok(())
}

/// Exit code after Ctrl-C (128 + SIGINT, as a shell reports it).
pub const EXIT_INTERRUPTED: u8 = 130;

/// How long the after-Ctrl-C look at the target may take before the summary gives up on it.
const SUMMARY_CHECK_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

/// After Ctrl-C: which images are complete at the target (their tag is there, on the source's digest)
/// and which are pending, as lines for stderr. Asks the registries, not the aborted engine, so what it
/// says is what a rerun will find.
async fn interrupted_summary(client: &Client, jobs: &[CopyJob], opts: &super::CopyOptions) -> String {
    use crate::registry::Repository;
    use futures::StreamExt;
    let checks = futures::stream::iter(jobs.iter().map(|job| async move {
        let dst_ref = super::target_reference(&job.target);
        let at_target = client
            .head_manifest(&Repository::of(&job.target), dst_ref)
            .await
            .ok()
            .flatten()?;
        // With --platform the index is rewritten: its tag being there is all we can check cheaply.
        if !opts.platforms.is_empty() {
            return Some(());
        }
        let src = super::mirrored_source(&job.source, &opts.source_mirrors);
        let source = match &job.source.digest {
            Some(d) => d.clone(),
            None => {
                client
                    .head_manifest(&src, job.source.identifier())
                    .await
                    .ok()
                    .flatten()?
                    .digest
            }
        };
        (source == at_target.digest).then_some(())
    }))
    .buffered(16)
    .collect::<Vec<_>>();
    let done = tokio::time::timeout(SUMMARY_CHECK_LIMIT, checks).await.ok();
    let mut out = String::new();
    match done {
        Some(done) => {
            let complete = done.iter().filter(|d| d.is_some()).count();
            out.push_str(&format!(
                "interrupted: {complete} of {} images complete at the target, {} pending; no tag was written for an incomplete image, run the same command again to finish\n",
                jobs.len(),
                jobs.len() - complete
            ));
            for (job, d) in jobs.iter().zip(&done) {
                if d.is_none() {
                    out.push_str(&format!("pending: {} -> {}\n", job.source, job.target));
                }
            }
        }
        None => out.push_str(&format!(
            "interrupted: {} images planned; the target did not answer in time to say which are complete; no tag was written for an incomplete image, run the same command again to finish\n",
            jobs.len()
        )),
    }
    out
}

/// Copies every image of `plan` (entries with a target) and prints the report in `format`. Returns the
/// exit code: 0 when every image is at the target, 1 when some failed (listed on stderr), 130 after
/// Ctrl-C (a summary of complete and pending images on stderr).
pub fn run_plan(plan: &Plan, args: &CopyArgs, format: OutputFormat) -> Result<u8, CopyError> {
    let jobs: Vec<CopyJob> = plan
        .images
        .iter()
        .filter_map(|e| {
            e.target.as_ref().map(|t| CopyJob {
                source: e.source.clone(),
                target: t.clone(),
            })
        })
        .collect();
    let target_host = jobs
        .first()
        .map(|j| j.target.registry.clone())
        .unwrap_or_default();
    let password = if args.password_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(CopyError::Stdin)?;
        Some(s.trim_end_matches(['\n', '\r']).to_string())
    } else {
        None
    };
    let opts = args.copy_options()?;
    let client = Client::new(args.client_options(&target_host, password)?)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CopyError::Runtime)?;
    // Ctrl-C is ours from here on (see `interrupt`): summary, then exit 130.
    crate::interrupt::handled_elsewhere();
    let outcome = rt.block_on(async {
        let copy = async {
            // Fail fast, with one clear message, when the target refuses us.
            if let Some(first) = jobs.first() {
                client
                    .ping(&crate::registry::Repository::of(&first.target), true)
                    .await?;
            }
            Ok::<CopyReport, CopyError>(super::copy_images(&client, &jobs, &opts).await)
        };
        tokio::select! {
            report = copy => report.map(Some),
            // Ctrl-C: the copy future is dropped, which stops new work and aborts what is in flight.
            // A tag is always an image's last write, so no tag points at an incomplete image.
            _ = tokio::signal::ctrl_c() => Ok(None),
        }
    })?;
    let Some(report) = outcome else {
        let summary = rt.block_on(async {
            tokio::select! {
                s = interrupted_summary(&client, &jobs, &opts) => Some(s),
                // A second Ctrl-C: leave at once.
                _ = tokio::signal::ctrl_c() => None,
            }
        });
        match summary {
            Some(s) => eprint!("{s}"),
            None => eprintln!(
                "interrupted: {} images planned; stopped before their state at the target was checked",
                jobs.len()
            ),
        }
        rt.shutdown_background();
        return Ok(EXIT_INTERRUPTED);
    };
    report.finish(format).map_err(CopyError::Output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_parsed_and_bad_values_named() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "x").unwrap();
        let args = CopyArgs {
            ca_files: vec![
                format!("reg.local:5000={}", ca.display()),
                ca.display().to_string(),
            ],
            username: Some("u".into()),
            source_mirrors: vec!["docker.io=hub.local/cache".into()],
            platform: vec!["linux/amd64".into(), "linux/arm/v7".into()],
            ..CopyArgs::default()
        };
        let c = args.client_options("reg.local:5000", Some("pw".into())).unwrap();
        assert_eq!(
            c.ca_files,
            vec![
                (Some("reg.local:5000".to_string()), ca.clone()),
                (None, ca.clone())
            ]
        );
        assert_eq!(c.credentials["reg.local:5000"].username(), "u");
        let o = args.copy_options().unwrap();
        assert_eq!(o.parallel, crate::copy::DEFAULT_PARALLEL);
        assert_eq!(o.platforms.len(), 2);
        assert_eq!(
            o.source_mirrors,
            vec![("docker.io".to_string(), "hub.local/cache".to_string())]
        );

        let err = |a: CopyArgs| a.copy_options().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err(CopyArgs {
                platform: vec!["linux".into()],
                ..CopyArgs::default()
            })
            .contains("--platform \"linux\"")
        );
        assert!(
            err(CopyArgs {
                source_mirrors: vec!["docker.io".into()],
                ..CopyArgs::default()
            })
            .contains("FROM=TO")
        );
        let missing = CopyArgs {
            ca_files: vec!["h=/nonexistent/ca.pem".into()],
            ..CopyArgs::default()
        };
        assert!(missing.client_options("h", None).is_err());
        let no_password = CopyArgs {
            username: Some("u".into()),
            ..CopyArgs::default()
        };
        assert!(matches!(
            no_password.client_options("h", None),
            Err(CopyError::Usage(_))
        ));
    }
}
