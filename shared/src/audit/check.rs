//! The mirror side: is every image under the registry really there? One manifest `HEAD` per distinct
//! image per run (by digest when the reference has one, else by tag), through the same client, TLS,
//! `--insecure-registry`, `--ca-file` and docker/podman login files as `mirror`.

use std::collections::BTreeMap;

use futures::StreamExt;

use super::report::{Row, Status};
use super::walk::ImageUse;
use super::{AuditArgs, AuditError, knob};
use crate::reference::ImageRef;
use crate::registry::{Client, Repository};

/// Requests to the mirror at once.
const PARALLEL: usize = 16;

/// The registry client the flags ask for (as `mirror`'s).
pub fn client(args: &AuditArgs) -> Result<Client, AuditError> {
    let flags = crate::copy::CopyArgs {
        insecure_registries: args.insecure_registries.clone(),
        ca_files: args.ca_files.clone(),
        username: args.username.clone(),
        password_stdin: args.password_stdin,
        ..Default::default()
    };
    let password =
        crate::copy::archive::read_password(&flags).map_err(|e| AuditError::Usage(e.to_string()))?;
    let host = args.registry.trim().split('/').next().unwrap_or_default();
    let opts = flags
        .client_options(host, password)
        .map_err(|e| AuditError::Usage(e.to_string()))?;
    Client::new(opts).map_err(|e| AuditError::Registry(e.to_string()))
}

/// What the mirror said about one image.
enum Answer {
    Present,
    Absent,
    Failed(String),
}

/// A row for every use of an image under the registry that the mirror lacks (or could not be asked
/// about); `--allow`ed images are not asked for.
pub async fn missing(client: &Client, uses: &[ImageUse], registry: &str, allow: &[String]) -> Vec<Row> {
    let mut distinct: BTreeMap<&str, Option<ImageRef>> = BTreeMap::new();
    for u in uses {
        if knob::under(&u.image, registry) && !knob::allowed(allow, &u.image) {
            distinct
                .entry(u.image.as_str())
                .or_insert_with(|| ImageRef::parse(&u.image).ok());
        }
    }
    let answers: BTreeMap<&str, Answer> = futures::stream::iter(distinct)
        .map(|(image, parsed)| async move {
            let Some(r) = parsed else {
                return (image, Answer::Failed("not a valid image reference".into()));
            };
            let reference = r
                .digest
                .clone()
                .or(r.tag.clone())
                .unwrap_or_else(|| "latest".into());
            let answer = match client.head_manifest(&Repository::of(&r), &reference).await {
                Ok(Some(_)) => Answer::Present,
                Ok(None) => Answer::Absent,
                Err(e) => Answer::Failed(crate::registry::flatten_error(&e)),
            };
            (image, answer)
        })
        .buffer_unordered(PARALLEL)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect();
    let mut rows = Vec::new();
    for u in uses {
        let Some(answer) = answers.get(u.image.as_str()) else {
            continue;
        };
        let (status, knob) = match answer {
            Answer::Present if u.pull_error.is_none() => continue,
            Answer::Present => (
                Status::Missing,
                "the mirror holds it, but the kubelet cannot pull it: check the nodes' access to the mirror \
                 (insecureRegistries, CA, credentials)"
                    .to_string(),
            ),
            Answer::Absent => (
                Status::Missing,
                format!(
                    "the mirror does not hold this tag or digest: run kubectl kkp mirror {registry} with the sources that plan it"
                ),
            ),
            Answer::Failed(e) => (Status::NotAudited, format!("the mirror could not be asked: {e}")),
        };
        rows.push(Row {
            status,
            cluster: u.cluster.clone(),
            namespace: u.namespace.clone(),
            object: u.object.clone(),
            container: u.container.clone(),
            image: u.image.clone(),
            knob,
            fix: None,
            message: u.pull_error.clone(),
        });
    }
    rows
}
