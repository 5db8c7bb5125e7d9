//! KKP-specific discovery: the KubermaticConfiguration, the embedded control-plane catalog, and addons.
//!
//! Nothing here runs KKP's Go code; the knowledge is data (the catalog) plus a Go-template evaluator for
//! the addons. The [`Matrix`] is the version × provider × CNI space both are evaluated over.

use semver::Version;

/// A CNI plugin type and version as KKP's `CNIPluginSettings` holds them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cni {
    /// `canal`, `cilium` or `none`.
    pub kind: String,
    /// The plugin version as KKP writes it (`v3.31`, `1.19.4`, or empty for `none`).
    pub version: String,
}

/// The combinations a KKP installation may run user clusters with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matrix {
    /// Kubernetes versions of user clusters (every patch version matters).
    pub versions: Vec<Version>,
    /// Cloud provider names as KKP spells them (`aws`, `vsphere`, …).
    pub providers: Vec<String>,
    /// CNI plugins and versions.
    pub cnis: Vec<Cni>,
}

pub mod addons;
pub mod catalog;
pub mod config;
pub mod live;
pub mod seed;

pub use catalog::Edition;

use std::path::PathBuf;

use crate::discover::{Discovery, Finding, Origin, SourceKind};

/// What `discover_kkp` is asked to do (the mirror's `--config`, `--kkp-version`, filters …).
#[derive(Debug, Clone, Default)]
pub struct KkpOptions {
    /// KubermaticConfiguration file; `None` = KKP's defaults for the release.
    pub config: Option<PathBuf>,
    /// `--kkp-version`s (`v2.30.6`, `2.30.6`, a line `v2.30`; comma-separated entries allowed): every
    /// release of an upgrade window. Empty = the configuration's `status.kubermaticVersion`, else the
    /// newest embedded release.
    pub kkp_versions: Vec<String>,
    /// `--version-filter`: semver constraint on user-cluster Kubernetes versions.
    pub version_filter: Option<String>,
    /// `--provider-filter`: only these providers (empty = all).
    pub provider_filter: Vec<String>,
    /// `--respect-repository-overrides`: use the configuration's repository fields as sources.
    pub respect_repository_overrides: bool,
    /// KKP edition whose images are wanted; `None` = the configuration's `status.kubermaticEdition`,
    /// else Community Edition.
    pub edition: Option<Edition>,
    /// `--seed`: Seed files whose datacenters and overrides add images.
    pub seeds: Vec<PathBuf>,
    /// `--live`: the running install, read instead of `config` and `seeds`.
    pub live: Option<live::LiveInstall>,
}

/// Why KKP discovery failed.
#[derive(Debug, thiserror::Error)]
pub enum KkpError {
    /// The configuration file is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The catalog could not be selected.
    #[error(transparent)]
    Catalog(#[from] catalog::CatalogError),
    /// A Kubernetes version in the list is not a version.
    #[error("{0:?} in the Kubernetes version list is not a version")]
    BadVersion(String),
    /// `--version-filter` is not a constraint.
    #[error("--version-filter: {0}")]
    VersionFilter(String),
    /// `--version-filter` leaves no version.
    #[error("--version-filter {filter:?} matches none of the Kubernetes versions ({})", versions.join(", "))]
    NoVersions {
        /// The filter.
        filter: String,
        /// The versions it was applied to.
        versions: Vec<String>,
    },
    /// `--live` could not read the running install.
    #[error(transparent)]
    Live(#[from] live::LiveError),
    /// `--provider-filter` names providers KKP does not know.
    #[error("--provider-filter: unknown provider(s) {}; valid providers: {}", unknown.join(", "), valid.join(", "))]
    UnknownProvider {
        /// The unknown names.
        unknown: Vec<String>,
        /// The valid names.
        valid: Vec<String>,
    },
}

impl KkpError {
    /// True for errors in what the user typed on the command line (exit code 2).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            KkpError::Catalog(catalog::CatalogError::UnknownVersion { .. })
                | KkpError::VersionFilter(_)
                | KkpError::NoVersions { .. }
                | KkpError::UnknownProvider { .. }
        )
    }
}

/// Builds the version × provider × CNI matrix: versions from the configuration (or the catalog's
/// defaults) filtered by `version_filter`; providers from the catalog, narrowed by `provider_filter`
/// (names are trimmed and lower-cased; unknown ones are an error listing the valid ones); every CNI
/// type and version the release allows.
pub fn matrix(
    config: Option<&config::KubermaticConfiguration>,
    catalog: &catalog::Catalog,
    version_filter: Option<&str>,
    provider_filter: &[String],
) -> Result<Matrix, KkpError> {
    let listed: Vec<String> = match config {
        Some(c) if !c.spec.versions.versions.is_empty() => c.spec.versions.versions.clone(),
        _ => catalog.defaults.kubernetes.clone(),
    };
    let mut versions: Vec<Version> = Vec::new();
    for v in &listed {
        let parsed = catalog::lenient_version(v)
            .ok_or_else(|| KkpError::VersionFilter(format!("{v:?} in the version list is not a version")))?;
        if !versions.contains(&parsed) {
            versions.push(parsed);
        }
    }
    if let Some(filter) = version_filter.map(str::trim).filter(|f| !f.is_empty()) {
        let req = catalog::parse_constraint(filter).map_err(KkpError::VersionFilter)?;
        let before: Vec<String> = versions.iter().map(ToString::to_string).collect();
        versions.retain(|v| catalog::matches(&req, v));
        if versions.is_empty() {
            return Err(KkpError::NoVersions {
                filter: filter.to_string(),
                versions: before,
            });
        }
    }

    let valid = &catalog.defaults.providers;
    let wanted: Vec<String> = provider_filter
        .iter()
        .flat_map(|p| p.split(','))
        .map(|p| p.trim().to_lowercase())
        .filter(|p| !p.is_empty())
        .collect();
    let providers = if wanted.is_empty() {
        valid.clone()
    } else {
        let unknown: Vec<String> = wanted.iter().filter(|p| !valid.contains(p)).cloned().collect();
        if !unknown.is_empty() {
            return Err(KkpError::UnknownProvider {
                unknown,
                valid: valid.clone(),
            });
        }
        valid.iter().filter(|p| wanted.contains(p)).cloned().collect()
    };

    let cnis = catalog
        .defaults
        .cni
        .iter()
        .flat_map(|(kind, versions)| {
            versions.iter().map(move |v| Cni {
                kind: kind.clone(),
                version: v.clone(),
            })
        })
        .collect();
    Ok(Matrix {
        versions,
        providers,
        cnis,
    })
}

/// What [`discover_kkp`] found.
#[derive(Debug, Clone, Default)]
pub struct KkpFound {
    /// The catalog's, the configuration's and the Seeds' images.
    pub discovery: Discovery,
    /// The version × provider × CNI matrix, for the addons pass.
    pub matrix: Matrix,
    /// The addons image KKP's seed-controller-manager runs (`spec.userCluster.addons.dockerRepository`
    /// with --respect-repository-overrides, else KKP's default, at the KKP tag): where the addons come
    /// from when neither `--addons-path` nor `--addons-image` is given.
    pub addons_image: Option<String>,
    /// With `--live`: the release, edition, providers and versions the plan rests on, with origins.
    pub facts: Vec<live::Fact>,
    /// The KKP releases whose catalogs were used, oldest first (`v2.30.6`).
    pub releases: Vec<String>,
}

/// Discovers the images only KKP knows about: the embedded control-plane catalog evaluated over the
/// matrix, plus the configuration's own images (`spec.mirrorImages`, etcd backup containers) and the
/// Seeds' (`--seed`). Returns the matrix and the default addons image too, for the addons pass.
pub fn discover_kkp(opts: &KkpOptions) -> Result<KkpFound, KkpError> {
    let mut facts = Vec::new();
    let (cfg, file) = match (&opts.live, &opts.config) {
        (Some(l), _) => (Some(l.config.clone()), l.config_origin.clone()),
        (None, Some(path)) => (Some(config::load(path)?), path.display().to_string()),
        (None, None) => (None, String::new()),
    };
    let explicit = opts.kkp_versions.iter().any(|v| !v.trim().is_empty());
    let releases = match &opts.live {
        // --live: the release the cluster's status names, unless --kkp-version says otherwise.
        Some(l) if !explicit => {
            let (selected, fact) = l.release()?;
            facts.push(fact);
            vec![selected]
        }
        _ => {
            let mut wanted = opts.kkp_versions.clone();
            if !explicit && let Some(v) = cfg.as_ref().and_then(|c| c.kubermatic_version()) {
                tracing::info!(kkp = %v, "KKP release from the configuration's status.kubermaticVersion");
                wanted = vec![v];
            }
            catalog::select_all(&wanted)?
        }
    };
    let mut discovery = Discovery::default();
    let mut matrices = Vec::new();
    let mut addons_image = None;
    let edition = opts
        .edition
        .or_else(|| cfg.as_ref().and_then(|c| c.edition()))
        .unwrap_or_default();
    if let Some(l) = &opts.live {
        facts.push(live::Fact {
            fact: "edition".into(),
            value: format!("{edition:?}").to_lowercase(),
            from: match (opts.edition, cfg.as_ref().and_then(|c| c.edition())) {
                (Some(_), _) => "--edition".into(),
                (None, Some(_)) => format!("{}, status.kubermaticEdition", l.config_origin),
                (None, None) => "default".into(),
            },
        });
    }
    let window = releases.len() > 1;
    for (i, selected) in releases.iter().enumerate() {
        let mut matrix = matrix(
            cfg.as_ref(),
            &selected.catalog,
            opts.version_filter.as_deref(),
            &opts.provider_filter,
        )?;
        if let Some(l) = &opts.live {
            // The live facts (providers, versions) are the same for every release of a window: keep
            // them once.
            let mut again = Vec::new();
            l.narrow(
                &mut matrix,
                &selected.catalog.defaults.providers,
                opts.version_filter.as_deref(),
                !opts.provider_filter.is_empty(),
                if i == 0 { &mut facts } else { &mut again },
            )?;
        }
        tracing::info!(
            kkp = %selected.kkp_tag,
            versions = matrix.versions.len(),
            providers = matrix.providers.len(),
            cnis = matrix.cnis.len(),
            "evaluating the KKP control-plane catalog"
        );
        let found = catalog_images(opts, cfg.as_ref(), selected, &matrix, edition)?;
        // In an upgrade window every catalog origin names its release; the addons of the newest.
        for mut f in found.images {
            if window {
                f.origin.object = Some(format!("KKP {}", selected.kkp_tag));
            }
            discovery.images.push(f);
        }
        addons_image = found.addons_image.or(addons_image);
        matrices.push(matrix);
    }
    let matrix = union_matrix(matrices);
    let Some(selected) = releases.last() else {
        return Err(catalog::CatalogError::UnknownVersion {
            given: String::new(),
            known: catalog::known_versions(),
        }
        .into());
    };
    let config_images = match &cfg {
        Some(c) => c.images(&file)?,
        None => config::default_images(),
    };
    for img in config_images {
        let from_file = img.field != "default";
        discovery.images.push(Finding {
            image: img.image,
            origin: Origin {
                source: if from_file {
                    SourceKind::Config
                } else {
                    SourceKind::Catalog
                },
                name: img.name,
                object: None,
                field: from_file.then_some(img.field),
                template: None,
                values: Vec::new(),
            },
        });
    }
    // EE's default application catalog, when the configuration enables it: the chart artefacts, as
    // KKP's mirror-images mirrors them (the images inside the charts are not known here).
    if edition == Edition::Ee
        && let Some(wanted) = cfg.as_ref().and_then(|c| c.default_application_catalog())
    {
        for app in &selected.catalog.default_applications {
            if !wanted.is_empty() && !wanted.contains(&app.name) {
                continue;
            }
            for chart in &app.charts {
                discovery.images.push(Finding {
                    image: chart.clone(),
                    origin: Origin {
                        source: SourceKind::Catalog,
                        name: format!("default-application {}", app.name),
                        object: None,
                        field: None,
                        template: None,
                        values: Vec::new(),
                    },
                });
            }
        }
    }
    let envoy_tag = selected
        .catalog
        .components
        .iter()
        .find(|c| c.name == "nodeport-proxy-envoy")
        .and_then(|c| c.image.rsplit_once(':'))
        .map(|(_, t)| t.to_string())
        .unwrap_or_default();
    for path in &opts.seeds {
        for loaded in seed::load(path)? {
            for img in loaded.images(opts.respect_repository_overrides, &envoy_tag, &selected.kkp_tag)? {
                discovery.images.push(Finding {
                    image: img.image,
                    origin: Origin {
                        source: SourceKind::Config,
                        name: format!("{} ({})", img.name, loaded.file),
                        object: Some(format!("Seed/{}", loaded.name())),
                        field: Some(img.field),
                        template: None,
                        values: Vec::new(),
                    },
                });
            }
        }
    }
    if let Some(l) = &opts.live {
        discovery.images.extend(l.seed_findings(
            opts.respect_repository_overrides,
            &envoy_tag,
            &selected.kkp_tag,
        )?);
        discovery.warnings.extend(l.warnings.iter().cloned());
        if explicit {
            for (i, r) in releases.iter().enumerate() {
                facts.insert(
                    i,
                    live::Fact {
                        fact: "release".into(),
                        value: r.kkp_tag.clone(),
                        from: "--kkp-version".into(),
                    },
                );
            }
        }
    }
    Ok(KkpFound {
        discovery,
        matrix,
        addons_image,
        facts,
        releases: releases.iter().map(|s| s.kkp_tag.clone()).collect(),
    })
}

/// The union of the matrices of an upgrade window's releases (first appearance order).
fn union_matrix(matrices: Vec<Matrix>) -> Matrix {
    let mut out = Matrix::default();
    for m in matrices {
        for v in m.versions {
            if !out.versions.contains(&v) {
                out.versions.push(v);
            }
        }
        for p in m.providers {
            if !out.providers.contains(&p) {
                out.providers.push(p);
            }
        }
        for c in m.cnis {
            if !out.cnis.contains(&c) {
                out.cnis.push(c);
            }
        }
    }
    out
}

/// What one release's catalog contributes.
struct CatalogFound {
    images: Vec<Finding>,
    addons_image: Option<String>,
}

/// One release's catalog evaluated over its matrix, with the configuration's overrides.
fn catalog_images(
    opts: &KkpOptions,
    cfg: Option<&config::KubermaticConfiguration>,
    selected: &catalog::Selected,
    matrix: &Matrix,
    edition: Edition,
) -> Result<CatalogFound, KkpError> {
    let mut images = Vec::new();
    let lookup = |field: &str| -> Option<String> {
        if !opts.respect_repository_overrides {
            return None;
        }
        cfg.and_then(|c| c.override_value(field))
    };
    let overridden = |name: &str| -> Option<String> {
        let component = selected.catalog.components.iter().find(|c| c.name == name)?;
        let o = component.overrides.as_ref()?;
        [&o.repository, &o.tag, &o.tag_suffix]
            .into_iter()
            .flatten()
            .find(|f| lookup(f).is_some())
            .cloned()
    };
    let mut addons_image = None;
    for img in selected
        .catalog
        .images(matrix, &selected.kkp_tag, edition, &lookup)
    {
        if img.component == "addons" {
            addons_image = Some(img.image.clone());
        }
        let field = overridden(&img.component);
        images.push(Finding {
            image: img.image,
            origin: Origin {
                source: if field.is_some() {
                    SourceKind::Config
                } else {
                    SourceKind::Catalog
                },
                name: img.component,
                object: None,
                field,
                template: None,
                values: Vec::new(),
            },
        });
    }
    Ok(CatalogFound { images, addons_image })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_give_kkps_full_matrix() {
        let cat = catalog::select(None).unwrap().catalog;
        let m = matrix(None, &cat, None, &[]).unwrap();
        assert_eq!(m.versions.len(), 31);
        assert_eq!(m.versions[0], Version::new(1, 33, 0));
        assert_eq!(m.providers.len(), 15);
        assert_eq!(m.cnis.len(), 11 + 28 + 1);
        assert!(m.cnis.contains(&Cni {
            kind: "none".into(),
            version: String::new()
        }));
    }

    #[test]
    fn configuration_versions_replace_the_defaults_and_filters_narrow() {
        let cat = catalog::select(None).unwrap().catalog;
        let cfg = config::parse(
            "apiVersion: kubermatic.k8c.io/v1\nkind: KubermaticConfiguration\n\
             spec:\n  versions:\n    versions: [v1.34.2, 1.35.7, v1.34.2]\n",
            "k.yaml",
        )
        .unwrap();
        let m = matrix(Some(&cfg), &cat, None, &[]).unwrap();
        assert_eq!(m.versions, [Version::new(1, 34, 2), Version::new(1, 35, 7)]);
        let m = matrix(Some(&cfg), &cat, Some("~1.35"), &["Hetzner, aws".into()]).unwrap();
        assert_eq!(m.versions, [Version::new(1, 35, 7)]);
        assert_eq!(m.providers, ["aws", "hetzner"]);
    }

    #[test]
    fn filter_errors_name_what_is_valid() {
        let cat = catalog::select(None).unwrap().catalog;
        let e = matrix(None, &cat, None, &["aws".into(), "amazon".into(), "gke".into()]).unwrap_err();
        assert!(e.is_usage());
        let msg = e.to_string();
        assert!(msg.contains("unknown provider(s) amazon, gke;"), "{msg}");
        assert!(msg.contains("valid providers: alibaba, anexia, aws,"), "{msg}");
        let e = matrix(None, &cat, Some("< 1.0"), &[]).unwrap_err();
        assert!(matches!(e, KkpError::NoVersions { .. }), "{e}");
        let e = matrix(None, &cat, Some(">="), &[]).unwrap_err();
        assert!(matches!(e, KkpError::VersionFilter(_)), "{e}");
    }
}
