//! The KubermaticConfiguration edits of `retarget`: point every repository field [`crate::knobs::config`]
//! knows at the private registry.
//!
//! The field table and KKP's defaults are knowledge shared with `audit` and live in `knobs`; this file
//! holds only the rule that rewrites them. Knows nothing of files, diffs or Helm.

use crate::knobs::config::{
    DEFAULT_APPLICATION_CATALOG, Edition, OVERWRITE_REGISTRY, REPOSITORY_FIELDS, SYSTEM_APPLICATIONS_CHARTS,
    SYSTEM_APPLICATIONS_HELM_REPOSITORY, find_document, is_under,
};
use crate::reference::ImageRef;
use crate::yamledit::{Intended, Scalar, YamlDoc, YamlPath};

use super::RetargetError;

/// `REG/<path of source>` for a repository without tag (`quay.io/kubermatic/addons` → `REG/kubermatic/addons`).
pub fn retarget_repository(source: &str, registry: &str) -> Result<String, RetargetError> {
    let r = ImageRef::parse(source).map_err(|e| RetargetError::Usage(e.to_string()))?;
    let t = r
        .retarget(registry)
        .map_err(|e| RetargetError::Usage(e.to_string()))?;
    Ok(t.name())
}

fn has_path(doc: &YamlDoc, index: usize, path: &str) -> Result<bool, RetargetError> {
    let path = YamlPath::parse(path).map_err(|e| RetargetError::Usage(e.to_string()))?;
    Ok(doc.contains(index, &path))
}

/// The edits that point a KubermaticConfiguration at `registry`: every repository field set to
/// `REG/<default path>` (added when missing), the system Applications' chart repository (and the default
/// application catalog's, where configured) `oci://REG/kubermatic-mirror/helm-charts`, `overwriteRegistry: REG`.
/// How KKP reaches the private registry for Helm charts (`RegistryConnectionConfig`, KKP v2.30+):
/// `--plain-http` / `--insecure-skip-tls-verify`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Connection {
    /// `plainHTTP: true`: the registry speaks plain HTTP.
    pub plain_http: bool,
    /// `insecureSkipTLSVerify: true`: the registry's certificate is not verified.
    pub insecure_skip_tls_verify: bool,
}

/// The chart-pulling configurations that carry a [`Connection`]: the system Applications' always, the
/// default application catalog's (`spec.userCluster.applications`, read by the EE catalog) where the
/// configuration has a default application catalog.
const CONNECTIONS: [&str; 2] = [
    "spec.userCluster.systemApplications",
    "spec.userCluster.applications",
];

/// The edits that point a KubermaticConfiguration at `registry`: every repository field set to
/// `REG/<default path>` (added when missing), the system Applications' chart repository (and the default
/// application catalog's, where configured) `oci://REG/kubermatic-mirror/helm-charts` with the
/// [`Connection`] flags that are set, `overwriteRegistry: REG`.
pub fn config_edits(
    doc: &YamlDoc,
    registry: &str,
    edition: Edition,
    connection: Connection,
) -> Result<Vec<Intended>, RetargetError> {
    let index = find_document(doc).ok_or_else(|| {
        RetargetError::Usage(
            "no KubermaticConfiguration document (kind: KubermaticConfiguration) in the file".into(),
        )
    })?;
    let registry = registry.trim_end_matches('/');
    let mut edits = Vec::new();
    for field in REPOSITORY_FIELDS {
        let path = YamlPath::parse(field.path).map_err(|e| RetargetError::Usage(e.to_string()))?;
        let current = doc.get_str(index, &path).filter(|v| !v.is_empty());
        let value = match (field.always, current) {
            (_, Some(v)) if is_under(v, registry) && !field.always => continue,
            (true, _) => retarget_repository(
                match edition {
                    Edition::Ce => field.ce,
                    Edition::Ee => field.ee,
                },
                registry,
            )?,
            (false, Some(v)) => retarget_repository(v, registry)?,
            (false, None) => continue,
        };
        edits.push(Intended::string(index, path, value));
    }
    let charts = format!(
        "oci://{}",
        retarget_repository(SYSTEM_APPLICATIONS_CHARTS, registry)?
    );
    let catalog = format!("{DEFAULT_APPLICATION_CATALOG}.helmRepository");
    for (field, wanted) in [
        (SYSTEM_APPLICATIONS_HELM_REPOSITORY, true),
        (
            catalog.as_str(),
            has_path(doc, index, DEFAULT_APPLICATION_CATALOG)?,
        ),
    ] {
        let path = YamlPath::parse(field).map_err(|e| RetargetError::Usage(e.to_string()))?;
        let current = doc.get_str(index, &path).unwrap_or_default();
        // A repository the user already put below the registry (with or without `oci://`) is kept.
        if !wanted || is_under(current.strip_prefix("oci://").unwrap_or(current), registry) {
            continue;
        }
        edits.push(Intended::string(index, path, charts.clone()));
    }
    let catalog_configured = has_path(doc, index, DEFAULT_APPLICATION_CATALOG)?;
    for (parent, wanted) in CONNECTIONS.into_iter().zip([true, catalog_configured]) {
        for (key, set) in [
            ("plainHTTP", connection.plain_http),
            ("insecureSkipTLSVerify", connection.insecure_skip_tls_verify),
        ] {
            let path = YamlPath::parse(&format!("{parent}.{key}"))
                .map_err(|e| RetargetError::Usage(e.to_string()))?;
            // Only ever switched on: a flag not given leaves the user's setting alone.
            if wanted && set && doc.get_bool(index, &path) != Some(true) {
                edits.push(Intended {
                    doc: index,
                    path,
                    value: Scalar::Bool(true),
                });
            }
        }
    }
    edits.push(Intended::string(
        index,
        YamlPath::parse(OVERWRITE_REGISTRY).map_err(|e| RetargetError::Usage(e.to_string()))?,
        registry,
    ));
    Ok(edits)
}
