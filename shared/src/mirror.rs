//! `kubectl kkp mirror`: discover every image a KKP install needs, plan, then print, copy or archive.
//!
//! This is the only place the mirror steps are put together; each step lives in its own module.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::cli::{CommonArgs, KubeArgs};
use crate::discover::{Discovery, Finding, Origin, SourceKind};
use crate::plan::{Plan, PlanError};

/// Flags of `kubectl kkp mirror`.
#[derive(Debug, Clone, Default, Args)]
pub struct MirrorArgs {
    /// Private registry to mirror to (`host[:port][/prefix]`); optional with --dry-run.
    #[arg(value_name = "REGISTRY")]
    pub registry_pos: Option<String>,
    /// Same as the REGISTRY argument (image-loader's `-registry`).
    #[arg(
        long = "registry",
        value_name = "REGISTRY",
        conflicts_with = "registry_pos",
        hide = true
    )]
    pub registry_flag: Option<String>,

    /// KubermaticConfiguration file (`-configuration-file`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory of Helm charts: every directory with a Chart.yaml below it is rendered (`-charts-path`).
    #[arg(long, value_name = "DIR")]
    pub charts_path: Option<PathBuf>,
    /// Values file passed to every chart render; repeatable, later files win (`-helm-values-file`).
    #[arg(long = "helm-values", value_name = "FILE")]
    pub helm_values: Vec<PathBuf>,
    /// Helm binary (default: $HELM_BINARY, else `helm` on PATH).
    #[arg(long, value_name = "PATH")]
    pub helm_binary: Option<PathBuf>,
    /// Kubernetes version charts are rendered for (`helm template --kube-version`).
    #[arg(long, value_name = "VERSION")]
    pub kube_version: Option<String>,
    /// Render Helm test hooks too (they are left out by default).
    #[arg(long)]
    pub include_tests: bool,
    /// Kill a `helm template` that runs longer than this (e.g. 90s, 5m, 1m30s) [default: 5m].
    #[arg(long, value_name = "DURATION", value_parser = crate::discover::helm::parse_duration)]
    pub helm_timeout: Option<std::time::Duration>,
    /// Directory of plain YAML manifests to scan; repeatable.
    #[arg(long = "manifests", value_name = "DIR")]
    pub manifests: Vec<PathBuf>,
    /// File with extra images, one reference per line, `#` comments; alone, it is the whole plan.
    #[arg(long = "image-list", value_name = "FILE")]
    pub image_lists: Vec<PathBuf>,
    /// Do not contact any registry: unconfirmed candidate images are listed separately.
    #[arg(long)]
    pub offline: bool,

    /// Directory of KKP addons (`-addons-path`).
    #[arg(long, value_name = "DIR")]
    pub addons_path: Option<PathBuf>,
    /// Image whose `addons/` directory is pulled and rendered like --addons-path (linux/amd64 of an
    /// index), e.g. quay.io/kubermatic/addons:v2.31.0. Not pulled unless given.
    #[arg(long, value_name = "IMAGE", conflicts_with = "addons_path")]
    pub addons_image: Option<String>,
    /// KKP release whose control-plane catalog is used (v2.30.6; a line v2.30 = its newest patch);
    /// repeatable or comma-separated for an upgrade window (the union) [default: the configuration's
    /// status.kubermaticVersion, else the newest embedded].
    #[arg(long, value_name = "VERSION", value_delimiter = ',')]
    pub kkp_version: Vec<String>,
    /// Print the embedded KKP releases, newest first, and exit.
    #[arg(long)]
    pub list_kkp_versions: bool,
    /// Semver constraint on user-cluster Kubernetes versions (e.g. ">= 1.34").
    #[arg(long, value_name = "CONSTRAINT")]
    pub version_filter: Option<String>,
    /// Only these cloud providers; repeatable or comma-separated.
    #[arg(long, value_name = "PROVIDER", value_delimiter = ',')]
    pub provider_filter: Vec<String>,
    /// Use the configuration's dockerRepository overrides as sources instead of KKP's defaults.
    #[arg(long)]
    pub respect_repository_overrides: bool,
    /// KKP edition whose images are listed (EE adds kubelb, metering, velero, kyverno and the -ee
    /// images) [default: the configuration's status.kubermaticEdition, else ce].
    #[arg(long, value_enum, value_name = "EDITION")]
    pub edition: Option<crate::discover::kkp::Edition>,
    /// Seed file (kubermatic.k8c.io/v1 Seed; other documents in it are skipped); repeatable. Adds
    /// each datacenter's node.pauseImage, and the nodeport-proxy repository overrides with
    /// --respect-repository-overrides.
    #[arg(long = "seed", value_name = "FILE")]
    pub seeds: Vec<PathBuf>,
    /// Plan from the running install that --kubeconfig/--context/-n [default: kubermatic] point at:
    /// its KubermaticConfiguration (release and edition from its status), Seeds and user clusters.
    /// Read-only; not with --config or --seed.
    #[arg(long, conflicts_with_all = ["config", "seeds"])]
    pub live: bool,
    /// With --live: the KubermaticConfiguration to read [default: the only one in the namespace].
    #[arg(long, value_name = "NAME", requires = "live")]
    pub name: Option<String>,
    /// With --live: read the user clusters of every seed cluster through its Seed's kubeconfig Secret
    /// [default: when the Secret is readable]; --seeds=false never reads them.
    #[arg(long = "seeds", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true",
          require_equals = true, requires = "live")]
    pub seed_clusters: Option<bool>,

    /// Copy flags (used when a REGISTRY is given without --dry-run).
    #[command(flatten)]
    pub copy: crate::copy::CopyArgs,
    /// Archive flags: --archive, --since, --from-archive, --verify.
    #[command(flatten)]
    pub archive: crate::copy::archive::ArchiveArgs,
    /// Node binaries flags: --binaries, --binaries-arch, --binaries-source.
    #[command(flatten)]
    pub binaries: crate::binaries::BinariesArgs,
    /// Mirror only images whose source starts with PREFIX (e.g. quay.io/kubermatic); repeatable
    /// (kubermatic-installer mirror-images' --registry-prefix).
    #[arg(long = "registry-prefix", value_name = "PREFIX")]
    pub registry_prefixes: Vec<String>,

    #[command(flatten)]
    pub kube: KubeArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

impl MirrorArgs {
    /// The target registry, from the argument or `--registry`.
    pub fn registry(&self) -> Option<&str> {
        self.registry_pos.as_deref().or(self.registry_flag.as_deref())
    }
}

/// Why `kubectl kkp mirror` failed.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The arguments do not make sense together.
    #[error("{0}")]
    Usage(String),
    /// The plan could not be made.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Charts could not be rendered at all (no helm, unreadable charts path).
    #[error(transparent)]
    Helm(#[from] crate::discover::helm::HelmError),
    /// A `--manifests` file could not be scanned.
    #[error(transparent)]
    Scan(#[from] crate::discover::manifest::ScanError),
    /// Printing failed.
    #[error("writing output: {0}")]
    Output(#[source] std::io::Error),
    /// KKP discovery (configuration, catalog, filters) failed.
    #[error(transparent)]
    Kkp(#[from] crate::discover::kkp::KkpError),
    /// KKP addons could not be loaded or rendered.
    #[error(transparent)]
    Addons(#[from] crate::discover::kkp::addons::AddonError),
    /// Copying to the registry could not start.
    #[error(transparent)]
    Copy(#[from] crate::copy::CopyError),
    /// An archive could not be written, read or pushed.
    #[error(transparent)]
    Archive(#[from] crate::copy::archive::ArchiveError),
    /// Node binaries (`--binaries`) could not be planned or written.
    #[error(transparent)]
    Binaries(#[from] crate::binaries::BinariesError),
    /// The `--addons-image` could not be pulled or its addons extracted.
    #[error("addons image {image}: {message}")]
    AddonsImage {
        /// The image as given.
        image: String,
        /// What went wrong.
        message: String,
    },
}

impl MirrorError {
    /// The process exit code for this error (2 for usage, else 1).
    pub fn exit_code(&self) -> u8 {
        match self {
            MirrorError::Usage(_) | MirrorError::Copy(crate::copy::CopyError::Usage(_)) => 2,
            MirrorError::Kkp(e) if e.is_usage() => 2,
            MirrorError::Archive(e) if e.is_usage() => 2,
            MirrorError::Binaries(e) if e.is_usage() => 2,
            _ => 1,
        }
    }
}

/// Reads an `--image-list` file: one reference per line, blank lines and `#` comments ignored.
pub fn read_image_list(path: &Path) -> Result<Vec<Finding>, MirrorError> {
    let text = std::fs::read_to_string(path).map_err(|source| MirrorError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let name = path.display().to_string();
    Ok(text
        .lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let line = line.split_once('#').map_or(line, |(l, _)| l).trim();
            (!line.is_empty()).then(|| Finding {
                image: line.to_string(),
                origin: Origin {
                    source: SourceKind::List,
                    name: name.clone(),
                    object: None,
                    field: Some(format!("line {}", i + 1)),
                    template: None,
                    values: Vec::new(),
                },
            })
        })
        .collect())
}

/// `--list-kkp-versions`: the embedded releases, newest first (text: one a line; json/yaml: with their
/// default Kubernetes versions, CNI versions, machine-controller and OSM images).
fn list_kkp_versions(format: crate::cli::OutputFormat) -> Result<u8, MirrorError> {
    use crate::discover::kkp::{KkpError, catalog};
    let tags = catalog::known_versions();
    let out = if matches!(
        format,
        crate::cli::OutputFormat::Json | crate::cli::OutputFormat::Yaml
    ) {
        let summaries = catalog::summaries(&tags).map_err(KkpError::from)?;
        crate::output::structured(&summaries, format).unwrap_or_default()
    } else {
        tags.iter().map(|t| format!("{t}\n")).collect()
    };
    crate::output::print(&out).map_err(MirrorError::Output)?;
    Ok(0)
}

/// Runs `kubectl kkp mirror`; returns the exit code on success paths (0, or 1 when some images failed).
pub fn run(args: &MirrorArgs) -> Result<u8, MirrorError> {
    let registry = args.registry();
    // ---- archives and --verify (issue 4, copy::archive and copy::verify) -------------------------
    // --from-archive: the plan is the archive's, nothing is discovered. --archive needs no REGISTRY.
    // --verify and --archive act on the discovered plan, below.
    let format = crate::output::default_format(args.common.output);
    if args.list_kkp_versions {
        return list_kkp_versions(format);
    }
    let archiving = args.archive.archive.is_some() && !args.common.is_dry_run();
    // ---- node binaries (issue 19, binaries): planned offline up front; without REGISTRY, only they --
    let binaries = args.binaries.prepare(&crate::binaries::Inputs {
        config: args.config.clone(),
        // The node binaries of the newest release named (an upgrade window's target).
        kkp_version: args
            .kkp_version
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rfind(|v| !v.is_empty())
            .map(String::from),
        version_filter: args.version_filter.clone(),
    })?;
    if let Some(prep) = &binaries
        && registry.is_none()
        && args.archive.archive.is_none()
        && args.archive.from_archive.is_none()
    {
        if args.common.is_dry_run() {
            crate::output::print(&crate::binaries::render(&prep.plan, None, format))
                .map_err(MirrorError::Output)?;
            return Ok(0);
        }
        if args.archive.verify {
            return Ok(crate::binaries::run_verify(prep, format)?);
        }
        return Ok(crate::binaries::run_download(prep, &args.copy, format)?);
    }
    // ---- end of node binaries (continued after the images) -------------------------------------
    if let Some(file) = &args.archive.from_archive {
        // The images go to REGISTRY, the node binaries (with --binaries) below DIR; one of them is needed.
        if registry.is_none() && binaries.is_none() {
            return Err(MirrorError::Usage(
                "--from-archive needs a target REGISTRY to push to (or --binaries DIR to unpack only the node binaries)".into(),
            ));
        }
        let mut code = 0;
        if args.archive.verify {
            if let Some(registry) = registry {
                let images = crate::copy::archive::archived_expectations(file, registry)?;
                code = verify_images(&images, args, format)?;
            }
            if let Some(prep) = &binaries {
                let layout = crate::copy::archive::Layout::open(file, false)?;
                code = code.max(crate::binaries::run_verify_unpacked(&layout, &prep.dir, format)?);
            }
            return Ok(code);
        }
        let layout = std::sync::Arc::new(crate::copy::archive::Layout::open(file, true)?);
        if let Some(registry) = registry {
            code = crate::copy::archive::run_from_archive(layout.clone(), registry, &args.copy, format)?;
        }
        match &binaries {
            Some(prep) if code != crate::binaries::EXIT_INTERRUPTED => {
                code = code.max(crate::binaries::run_unpack(&layout, &prep.dir, format)?);
            }
            None if crate::binaries::carried_count(&layout) > 0 => eprintln!(
                "note: {} also carries {} node binaries; add --binaries DIR to unpack them",
                file.display(),
                crate::binaries::carried_count(&layout)
            ),
            _ => {}
        }
        return Ok(code);
    }
    if archiving && registry.is_some() {
        return Err(MirrorError::Usage(
            "--archive writes a file, not a registry: drop REGISTRY, or push the archive with REGISTRY --from-archive".into(),
        ));
    }
    if args.archive.verify && registry.is_none() {
        return Err(MirrorError::Usage("--verify needs a target REGISTRY".into()));
    }
    // ---- end of archives (the rest of this block is after the plan) -----------------------------
    if args.offline && args.addons_image.is_some() {
        return Err(MirrorError::Usage(
            "--addons-image pulls an image from its registry, which --offline forbids: drop one of them, or extract the addons and use --addons-path".into(),
        ));
    }
    if registry.is_none() && !args.common.is_dry_run() && !archiving {
        return Err(MirrorError::Usage(
            "a target REGISTRY is required (or use --dry-run to only print the plan)".into(),
        ));
    }
    let mut discovery = Discovery::default();
    let mut kkp_versions = Vec::new();
    for list in &args.image_lists {
        discovery.images.extend(read_image_list(list)?);
    }
    // ---- Charts (--charts-path, rendered by discover::helm) and plain manifests (--manifests) ----
    // A chart that fails to render is reported on stderr and makes the exit code 1; the others still count.
    let mut chart_failures = 0usize;
    if let Some(root) = &args.charts_path {
        for values in &args.helm_values {
            crate::discover::helm::check_values_file(values)?;
        }
        let opts = crate::discover::helm::HelmOptions {
            binary: args.helm_binary.clone(),
            values: args.helm_values.clone(),
            kube_version: args.kube_version.clone(),
            include_tests: args.include_tests,
            timeout: args
                .helm_timeout
                .unwrap_or(crate::discover::helm::DEFAULT_TIMEOUT),
            jobs: crate::discover::helm::default_jobs(),
        };
        let (found, failures) = crate::discover::helm::discover_charts(root, &opts)?;
        for failure in &failures {
            eprintln!("error: {failure}");
        }
        chart_failures = failures.len();
        warn_retargeted_values(&args.helm_values, &found.images, registry);
        discovery.extend(found);
    }
    for dir in &args.manifests {
        discovery.extend(crate::discover::manifest::scan_dir(dir, args.include_tests)?);
    }
    // ---- end of charts and manifests ----

    // ---- KKP: KubermaticConfiguration, embedded control-plane catalog, addons ------------------
    // The catalog's images are planned with --config, or on their own when no other source is given
    // (the embedded default). Addons are rendered over the same version × provider × CNI matrix: the
    // configuration's versions (else the release's defaults), narrowed by the filters.
    // --addons-image is pulled into a temporary directory (kept until rendered) and rendered like
    // --addons-path. Neither flag: the addons image KKP itself runs (the configuration's
    // spec.userCluster.addons.dockerRepository with --respect-repository-overrides, else KKP's, at the KKP
    // tag) is pulled the same way — but not by --dry-run or --offline, which touch no network for it and
    // warn that the addons were left out.
    let want_addons = args.addons_path.is_some() || args.addons_image.is_some();
    let no_other_source = args.charts_path.is_none()
        && args.manifests.is_empty()
        && args.image_lists.is_empty()
        && !want_addons;
    let want_catalog = args.config.is_some() || !args.seeds.is_empty() || args.live || no_other_source;
    // ---- --live (issue 22, discover::kkp::live): the running install instead of files ----
    let kube = &args.kube;
    if !args.live && (kube.kubeconfig.is_some() || kube.context.is_some() || kube.namespace.is_some()) {
        tracing::warn!(
            "--kubeconfig, --context and -n select the cluster --live reads; without --live they are ignored"
        );
    }
    let live = if args.live {
        use crate::discover::kkp::live::{self, SeedClusters};
        let mode = match args.seed_clusters {
            None => SeedClusters::Auto,
            Some(true) => SeedClusters::On,
            Some(false) => SeedClusters::Off,
        };
        Some(live::read(kube, args.name.as_deref(), mode).map_err(crate::discover::kkp::KkpError::from)?)
    } else {
        None
    };
    let mut live_facts = Vec::new();
    // ---- end --live ----
    if want_catalog || want_addons {
        let opts = crate::discover::kkp::KkpOptions {
            config: args.config.clone(),
            kkp_versions: args.kkp_version.clone(),
            version_filter: args.version_filter.clone(),
            provider_filter: args.provider_filter.clone(),
            respect_repository_overrides: args.respect_repository_overrides,
            edition: args.edition,
            seeds: args.seeds.clone(),
            live,
        };
        let found = crate::discover::kkp::discover_kkp(&opts)?;
        live_facts = found.facts;
        kkp_versions = found.releases.clone();
        let matrix = found.matrix;
        if want_catalog {
            discovery.extend(found.discovery);
        }
        let default_addons = match (&found.addons_image, want_catalog && !want_addons) {
            (Some(image), true) if args.common.is_dry_run() || args.offline => {
                let why = if args.common.is_dry_run() {
                    "--dry-run"
                } else {
                    "--offline"
                };
                let warning = format!(
                    "addons not rendered: {why} does not pull the addons image {image}; their images (CNI, CSI, kube-proxy, …) are listed only with --addons-path DIR or --addons-image IMAGE"
                );
                tracing::warn!("{warning}");
                discovery.warnings.push(warning);
                None
            }
            (Some(image), true) => Some(image.clone()),
            _ => None,
        };
        let pulled = match args.addons_image.as_ref().or(default_addons.as_ref()) {
            Some(image) => {
                let tmp = tempfile::TempDir::new().map_err(|e| MirrorError::AddonsImage {
                    image: image.clone(),
                    message: format!("creating a temporary directory: {e}"),
                })?;
                let dir = pull_addons(image, &args.copy, tmp.path()).map_err(|e| match e {
                    MirrorError::AddonsImage { image, message } if args.addons_image.is_none() => {
                        MirrorError::AddonsImage {
                            image,
                            message: format!(
                                "{message} (the addons image KKP runs, pulled by default: give --addons-path DIR or --addons-image IMAGE instead)"
                            ),
                        }
                    }
                    other => other,
                })?;
                Some((tmp, dir))
            }
            None => None,
        };
        let addons_dir = args
            .addons_path
            .as_deref()
            .or(pulled.as_ref().map(|(_, d)| d.as_path()));
        if let Some(dir) = addons_dir {
            use crate::discover::kkp::addons::{load_addons, render_matrix};
            let addons = load_addons(dir)?;
            discovery.extend(render_matrix(&addons, &matrix)?);
        }
        drop(pulled);
    }
    // ---- end KKP ---------------------------------------------------------------------------------
    if !args.offline {
        confirm_candidates(&mut discovery, &args.copy)?;
    }
    let mut plan = Plan::build(
        &discovery.images,
        &discovery.candidates,
        discovery.warnings,
        registry,
    )?;
    if !args.registry_prefixes.is_empty() {
        let keep = |e: &crate::plan::PlanEntry| {
            let source = e.source.to_string();
            args.registry_prefixes
                .iter()
                .any(|p| source.starts_with(p.trim()))
        };
        plan.images.retain(keep);
        plan.candidates.retain(keep);
    }
    plan.kkp_versions = kkp_versions;

    // ---- archives and --verify, continued: act on the discovered plan ----------------------------
    if archiving && let Some(file) = &args.archive.archive {
        let sources: Vec<_> = plan.images.iter().map(|e| e.source.clone()).collect();
        // With --binaries, DIR is filled (or checked, when complete) first, and the archive carries it.
        if let Some(prep) = &binaries {
            let code = crate::binaries::run_download(prep, &args.copy, format)?;
            if code != 0 {
                eprintln!(
                    "error: {} was not written: some node binaries could not be downloaded",
                    file.display()
                );
                return Ok(code);
            }
        }
        let code = match &binaries {
            Some(prep) => crate::copy::archive::run_write(
                &sources,
                file,
                args.archive.since.as_deref(),
                &args.copy,
                &crate::binaries::Carry(prep),
            )?,
            None => crate::copy::archive::run_write(
                &sources,
                file,
                args.archive.since.as_deref(),
                &args.copy,
                &(),
            )?,
        };
        return Ok(code.max(u8::from(chart_failures > 0)));
    }
    if args.archive.verify {
        let images: Vec<_> = plan
            .images
            .iter()
            .filter_map(|e| {
                Some(crate::copy::verify::Expectation::of_source(
                    e.source.clone(),
                    e.target.clone()?,
                ))
            })
            .collect();
        let mut code = verify_images(&images, args, format)?;
        if let Some(prep) = &binaries {
            code = code.max(crate::binaries::run_verify(prep, format)?);
        }
        return Ok(code.max(u8::from(chart_failures > 0)));
    }
    // ---- end of archives ----------------------------------------------------------------------------

    // ---- copy to the registry (issue 4) ------------------------------------------------------------
    // With a target and no --dry-run, the plan is executed by the copy engine, which prints its own
    // per-image report instead of the plan.
    if registry.is_some() && !args.common.is_dry_run() {
        // The node binaries download beside the image copy (its display keeps the terminal); their
        // summary follows the copy's report.
        if let Some(prep) = &binaries {
            crate::binaries::check_writable(prep)?;
        }
        let (copied, downloaded) = std::thread::scope(|s| {
            let beside = binaries
                .as_ref()
                .map(|prep| s.spawn(|| crate::binaries::download(prep, &args.copy, false)));
            let copied = crate::copy::run_plan(&plan, &args.copy, format);
            let downloaded = beside.map(|h| h.join().expect("the node binaries download panicked"));
            (copied, downloaded)
        });
        let mut code = copied?;
        if let Some(downloaded) = downloaded {
            code = code.max(downloaded?.finish(format)?);
        }
        return Ok(code.max(u8::from(chart_failures > 0)));
    }
    // ---- end of copy --------------------------------------------------------------------------------

    // ---- attachments in the printed plan (issue 14, copy::attachments): asked for with --attachments,
    // as it reads every source registry; --offline never does.
    if args.copy.attachments.is_some() && !args.copy.skip_attachments && !args.offline {
        crate::copy::list_attachments(&mut plan, &args.copy)?;
    }
    let listing = match format {
        // --live: the facts the plan rests on, and where each came from, next to the images (and the
        // node binaries, with --binaries).
        crate::cli::OutputFormat::Json | crate::cli::OutputFormat::Yaml if !live_facts.is_empty() => {
            let to_value =
                |v: serde_json::Result<serde_json::Value>| v.map_err(|e| MirrorError::Output(e.into()));
            let mut doc = to_value(serde_json::to_value(&plan))?;
            if let (Some(prep), Some(obj)) = (&binaries, doc.as_object_mut()) {
                obj.insert("osmVersion".into(), prep.plan.osm_version.clone().into());
                obj.insert(
                    "binaries".into(),
                    to_value(serde_json::to_value(&prep.plan.files))?,
                );
            }
            doc["live"] = to_value(serde_json::to_value(&live_facts))?;
            crate::output::structured(&doc, format).unwrap_or_default()
        }
        _ => match &binaries {
            Some(prep) => crate::binaries::render(&prep.plan, Some(&plan), format),
            None => plan.render(format),
        },
    };
    crate::output::print(&listing).map_err(MirrorError::Output)?;
    Ok(if chart_failures > 0 { 1 } else { 0 })
}

/// `--verify`: digests against the source's (or the archive's); with `--key`, the images' cosign
/// signatures at the target, offline (issue 14, `copy::signatures`).
fn verify_images(
    images: &[crate::copy::verify::Expectation],
    args: &MirrorArgs,
    format: crate::cli::OutputFormat,
) -> Result<u8, crate::copy::archive::ArchiveError> {
    if args.archive.keys.is_empty() && args.archive.trusted_root.is_none() {
        return crate::copy::verify::run_verify(images, &args.copy, format);
    }
    let keyless = match (
        &args.archive.trusted_root,
        &args.archive.certificate_identity,
        &args.archive.certificate_oidc_issuer,
    ) {
        (None, ..) => None,
        (Some(root), Some(identity), Some(issuer)) => Some(crate::copy::keyless::Policy {
            root: root.clone(),
            identity: identity.clone(),
            issuer: issuer.clone(),
        }),
        (Some(_), ..) => {
            return Err(crate::copy::CopyError::Usage(
                "--trusted-root needs --certificate-identity and --certificate-oidc-issuer: without them any \
                 certificate Fulcio issued to anyone would pass"
                    .into(),
            )
            .into());
        }
    };
    crate::copy::signatures::run_verify_signatures(
        images,
        &args.archive.keys,
        keyless.as_ref(),
        &args.copy,
        format,
    )
}

/// A values file `kubectl kkp retarget` already pointed at the target registry makes the charts render
/// the target's images, not the upstream ones mirror must copy from. Cheap check: some chart image is
/// already below REGISTRY, and the values file names REGISTRY's host. One warning per such file.
fn warn_retargeted_values(values: &[PathBuf], images: &[Finding], registry: Option<&str>) {
    let Some(registry) = registry.map(|r| r.trim_end_matches('/')) else {
        return;
    };
    let below = |image: &str| {
        crate::reference::ImageRef::parse(image).is_ok_and(|r| crate::knobs::is_under(&r.name(), registry))
    };
    if !images.iter().any(|f| below(&f.image)) {
        return;
    }
    let host = registry.split('/').next().unwrap_or(registry);
    for path in values {
        if std::fs::read_to_string(path).is_ok_and(|text| text.contains(host)) {
            eprintln!(
                "warning: {}: its images already point at {registry}, as `kubectl kkp retarget` leaves them; \
                 mirror the stock values file instead (retarget -o FILE keeps it)",
                path.display()
            );
        }
    }
}

/// How long confirming all candidates may take, together.
const CONFIRM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Keeps the candidate images a source registry confirms: a manifest `HEAD` that answers moves the
/// candidate to the certain images; the others stay candidates (listed apart in the plan) with a
/// warning. All `HEAD`s run at once and the whole pass is bounded by [`CONFIRM_TIMEOUT`]; nothing is
/// written anywhere. `--offline` skips this.
fn confirm_candidates(discovery: &mut Discovery, copy: &crate::copy::CopyArgs) -> Result<(), MirrorError> {
    use std::collections::{BTreeMap, BTreeSet};

    use crate::reference::ImageRef;
    use crate::registry::Client;

    if discovery.candidates.is_empty() {
        return Ok(());
    }
    let unique: BTreeSet<ImageRef> = discovery
        .candidates
        .iter()
        .filter_map(|f| ImageRef::parse(f.image.trim()).ok())
        .collect();
    let mirrors = copy.copy_options()?.source_mirrors;
    // Target credentials are not for source registries: reading sources uses the login files only.
    let sources_only = crate::copy::CopyArgs {
        username: None,
        password_stdin: false,
        ..copy.clone()
    };
    let client = Client::new(sources_only.client_options("", None)?).map_err(crate::copy::CopyError::from)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(crate::copy::CopyError::Runtime)?;
    let confirmed: BTreeMap<ImageRef, bool> = rt.block_on(async {
        let checks = unique.iter().map(|r| {
            let repo = crate::copy::mirrored_source(r, &mirrors);
            let client = &client;
            async move {
                let found = matches!(client.head_manifest(&repo, r.identifier()).await, Ok(Some(_)));
                (r.clone(), found)
            }
        });
        tokio::time::timeout(CONFIRM_TIMEOUT, futures::future::join_all(checks))
            .await
            .map(|all| all.into_iter().collect())
            .unwrap_or_default()
    });
    let (keep, unconfirmed): (Vec<_>, Vec<_>) = std::mem::take(&mut discovery.candidates)
        .into_iter()
        .partition(|f| ImageRef::parse(f.image.trim()).is_ok_and(|r| confirmed.get(&r) == Some(&true)));
    let unconfirmed_refs: BTreeSet<&str> = unconfirmed.iter().map(|f| f.image.trim()).collect();
    for image in &unconfirmed_refs {
        discovery.warnings.push(format!(
            "candidate image {image} was not confirmed by its registry; listed apart, not mirrored"
        ));
    }
    discovery.images.extend(keep);
    discovery.candidates = unconfirmed;
    Ok(())
}

/// The platform whose addons are used when `--addons-image` is an index (what KKP itself pulls).
const ADDONS_PLATFORM: &str = "linux/amd64";

/// Pulls `image` (an image, or an index whose linux/amd64 child is used) and extracts its `addons/`
/// directory into `dest/addons`, which is returned. Each layer is streamed to a temporary file and
/// checked against its descriptor's digest before anything is extracted; no layer is held in memory.
/// Errors name the image.
fn pull_addons(image: &str, copy: &crate::copy::CopyArgs, dest: &Path) -> Result<PathBuf, MirrorError> {
    use std::io::Write;

    use sha2::{Digest, Sha256};

    use crate::reference::ImageRef;
    use crate::registry::Client;
    use crate::registry::manifest::{ManifestView, Platform, is_index};

    let fail = |message: String| MirrorError::AddonsImage {
        image: image.to_string(),
        message,
    };
    let reference = ImageRef::parse(image.trim()).map_err(|e| fail(e.to_string()))?;
    // Read through --source-mirror like every other source image.
    let mirrors = copy.copy_options()?.source_mirrors;
    let repo = crate::copy::mirrored_source(&reference, &mirrors);
    // Target credentials are not for source registries: reading uses the login files only.
    let sources_only = crate::copy::CopyArgs {
        username: None,
        password_stdin: false,
        ..copy.clone()
    };
    let client = Client::new(sources_only.client_options("", None)?).map_err(|e| fail(e.to_string()))?;
    let layers_dir =
        tempfile::TempDir::new().map_err(|e| fail(format!("creating a temporary directory: {e}")))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(crate::copy::CopyError::Runtime)?;
    let files: Vec<PathBuf> = rt.block_on(async {
        let mut raw = client
            .get_manifest(&repo, reference.identifier())
            .await
            .map_err(|e| fail(e.to_string()))?;
        let mut view = ManifestView::parse(&raw.bytes).map_err(|e| fail(format!("manifest: {e}")))?;
        if is_index(&raw.media_type) {
            let want = Platform::parse(ADDONS_PLATFORM).ok_or_else(|| fail("bad platform".into()))?;
            let child = view
                .manifests
                .iter()
                .find(|d| d.platform.as_ref().is_some_and(|p| want.selects(p)))
                .map(|d| d.digest.clone())
                .ok_or_else(|| fail(format!("the index has no {ADDONS_PLATFORM} image")))?;
            raw = client
                .get_manifest(&repo, &child)
                .await
                .map_err(|e| fail(e.to_string()))?;
            view = ManifestView::parse(&raw.bytes).map_err(|e| fail(format!("manifest: {e}")))?;
            if is_index(&raw.media_type) {
                return Err(fail(format!(
                    "{ADDONS_PLATFORM} entry {} is an index, not an image",
                    child
                )));
            }
        }
        if view.layers.is_empty() {
            return Err(fail(format!("manifest {} has no layers", raw.digest)));
        }
        let mut files = Vec::with_capacity(view.layers.len());
        for (i, layer) in view.layers.iter().enumerate() {
            let Some(expected_hex) = layer.digest.strip_prefix("sha256:") else {
                return Err(fail(format!(
                    "layer {}: unsupported digest algorithm",
                    layer.digest
                )));
            };
            let path = layers_dir.path().join(format!("layer-{i}"));
            let mut out =
                std::fs::File::create(&path).map_err(|e| fail(format!("writing {}: {e}", path.display())))?;
            let mut resp = client
                .get_blob(&repo, &layer.digest)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let mut hasher = Sha256::new();
            let mut size: u64 = 0;
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| fail(format!("layer {}: {e}", layer.digest)))?
            {
                hasher.update(&chunk);
                size += chunk.len() as u64;
                out.write_all(&chunk)
                    .map_err(|e| fail(format!("writing {}: {e}", path.display())))?;
            }
            let actual = hex::encode(hasher.finalize());
            if actual != expected_hex {
                return Err(fail(format!(
                    "layer {}: digest mismatch: got sha256:{actual} ({size} bytes)",
                    layer.digest
                )));
            }
            files.push(path);
        }
        Ok(files)
    })?;
    let mut readers = Vec::with_capacity(files.len());
    for path in &files {
        readers
            .push(std::fs::File::open(path).map_err(|e| fail(format!("reading {}: {e}", path.display())))?);
    }
    let stats = crate::discover::kkp::addons::extract_addons_from_layers(readers.into_iter(), dest)
        .map_err(|e| fail(e.to_string()))?;
    tracing::debug!(
        image,
        files = stats.files,
        whiteouts = stats.whiteouts,
        "addons extracted"
    );
    Ok(dest.join("addons"))
}
