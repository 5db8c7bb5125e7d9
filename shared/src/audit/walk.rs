//! Walking the clusters: the master (current context), every Seed's datacenter node settings, the seed
//! clusters through their kubeconfig Secrets, the user clusters through their admin kubeconfigs. Every
//! Pod's containers (init and ephemeral too) and the pod templates of Deployments, StatefulSets,
//! DaemonSets, Jobs and CronJobs become [`ImageUse`]s; what cannot be read becomes a "not audited" row
//! and the rest goes on.
//!
//! Lists are paged (`limit`/`continue`); a 403 on a cluster-wide list falls back to one list per
//! namespace, so one forbidden namespace costs only that namespace. Clusters are walked in parallel,
//! each under its own timeout. Secrets are read through [`crate::kube::kkp`], in memory only.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::join_all;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;

use super::AuditArgs;
use super::report::{Row, Status};
use crate::kube::kkp::{self, KubeconfigRef};
use crate::kube::{Cluster, KubeError, Op, map_error, object_name};

/// Which kind of cluster an image runs in; decides which knobs can reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The master cluster.
    Master,
    /// A seed cluster.
    Seed,
    /// A user cluster.
    User,
}

/// One container image of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUse {
    /// `master`, `seed NAME`, `user cluster ID`.
    pub cluster: String,
    /// What kind of cluster.
    pub scope: Scope,
    /// Namespace.
    pub namespace: String,
    /// `Kind/name`.
    pub object: String,
    /// Container name.
    pub container: String,
    /// Image as written.
    pub image: String,
    /// `meta.helm.sh/release-name`.
    pub release: Option<String>,
    /// `helm.sh/chart` (`name-version`).
    pub chart: Option<String>,
    /// KKP's `kubermatic-addon` label.
    pub addon: Option<String>,
    /// `ErrImagePull` / `ImagePullBackOff` message of a Pod.
    pub pull_error: Option<String>,
}

/// Everything the walk saw.
#[derive(Debug, Default)]
pub struct Walked {
    /// Container images.
    pub uses: Vec<ImageUse>,
    /// What could not be looked at.
    pub not_audited: Vec<Row>,
    /// Findings about settings (Seed node settings, KubermaticConfiguration).
    pub settings: Vec<Row>,
    /// The KubermaticConfiguration, when it could be read.
    pub config: Option<Value>,
    /// Clusters walked (at least partly).
    pub clusters: usize,
    /// Pods and templates looked at.
    pub objects: usize,
}

/// A workload kind: where its pod spec is.
struct Kind {
    api_version: &'static str,
    kind: &'static str,
    plural: &'static str,
    spec: &'static str,
}

const KINDS: &[Kind] = &[
    Kind {
        api_version: "v1",
        kind: "Pod",
        plural: "pods",
        spec: "/spec",
    },
    Kind {
        api_version: "apps/v1",
        kind: "Deployment",
        plural: "deployments",
        spec: "/spec/template/spec",
    },
    Kind {
        api_version: "apps/v1",
        kind: "StatefulSet",
        plural: "statefulsets",
        spec: "/spec/template/spec",
    },
    Kind {
        api_version: "apps/v1",
        kind: "DaemonSet",
        plural: "daemonsets",
        spec: "/spec/template/spec",
    },
    Kind {
        api_version: "batch/v1",
        kind: "Job",
        plural: "jobs",
        spec: "/spec/template/spec",
    },
    Kind {
        api_version: "batch/v1",
        kind: "CronJob",
        plural: "cronjobs",
        spec: "/spec/jobTemplate/spec/template/spec",
    },
];

/// The Secret KKP keeps a user cluster's admin kubeconfig in, in its `cluster-<id>` namespace.
pub const ADMIN_KUBECONFIG: &str = "admin-kubeconfig";

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_PAGE: u32 = 500;

fn api_resource(api_version: &str, kind: &str, plural: &str) -> ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

fn op<'a>(verb: &'a str, resource: &'a str, group: &'a str, namespace: &'a str) -> Op<'a> {
    Op {
        verb,
        resource,
        group,
        namespace,
        name: None,
    }
}

/// LISTs every page of `api`, handing each object to `each`.
async fn list_pages(
    api: &Api<DynamicObject>,
    page: u32,
    mut each: impl FnMut(DynamicObject),
) -> Result<(), kube::Error> {
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default().limit(page);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let list = api.list(&lp).await?;
        token = list.metadata.continue_.clone().filter(|t| !t.is_empty());
        for obj in list.items {
            each(obj);
        }
        if token.is_none() {
            return Ok(());
        }
    }
}

fn is_forbidden(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403)
}

/// A 404 on a LIST: the cluster does not serve this kind (nothing of it to audit).
fn is_not_served(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// The waiting reason and message of each container of a Pod that cannot pull its image.
fn pull_errors(obj: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for list in [
        "containerStatuses",
        "initContainerStatuses",
        "ephemeralContainerStatuses",
    ] {
        let Some(items) = obj.pointer(&format!("/status/{list}")).and_then(Value::as_array) else {
            continue;
        };
        for s in items {
            let reason = s
                .pointer("/state/waiting/reason")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if reason == "ErrImagePull" || reason == "ImagePullBackOff" {
                let msg = s
                    .pointer("/state/waiting/message")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let name = s.get("name").and_then(Value::as_str).unwrap_or_default();
                let text = if msg.is_empty() {
                    reason.to_string()
                } else {
                    format!("{reason}: {msg}")
                };
                out.insert(name.to_string(), text);
            }
        }
    }
    out
}

/// The image uses of one object of `kind`; Pods run by a controller are left to its template unless the
/// kubelet cannot pull their image (`folded` keeps them to attach the message to the template).
fn uses_of(
    kind: &Kind,
    obj: &DynamicObject,
    cluster: &str,
    scope: Scope,
    out: &mut Vec<ImageUse>,
    folded: &mut Vec<ImageUse>,
) {
    let Some(spec) = obj.data.pointer(kind.spec) else {
        return;
    };
    let meta = &obj.metadata;
    let controlled = kind.kind == "Pod"
        && meta
            .owner_references
            .as_ref()
            .is_some_and(|o| o.iter().any(|r| r.controller == Some(true)));
    let errors = if kind.kind == "Pod" {
        pull_errors(&obj.data)
    } else {
        BTreeMap::new()
    };
    let labels = meta.labels.as_ref();
    let annotations = meta.annotations.as_ref();
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        let Some(items) = spec.get(list).and_then(Value::as_array) else {
            continue;
        };
        for c in items {
            let Some(image) = c.get("image").and_then(Value::as_str) else {
                continue;
            };
            let name = c
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let u = ImageUse {
                cluster: cluster.to_string(),
                scope,
                namespace: meta.namespace.clone().unwrap_or_default(),
                object: format!("{}/{}", kind.kind, meta.name.clone().unwrap_or_default()),
                pull_error: errors.get(&name).cloned(),
                container: name,
                image: image.to_string(),
                release: annotations
                    .and_then(|a| a.get("meta.helm.sh/release-name"))
                    .cloned(),
                chart: labels.and_then(|l| l.get("helm.sh/chart")).cloned(),
                addon: labels.and_then(|l| l.get("kubermatic-addon")).cloned(),
            };
            if controlled {
                if u.pull_error.is_some() {
                    folded.push(u);
                }
            } else {
                out.push(u);
            }
        }
    }
}

/// What one cluster walk produced.
#[derive(Default)]
struct ClusterWalk {
    uses: Vec<ImageUse>,
    rows: Vec<Row>,
    objects: usize,
}

fn not_audited(cluster: &str, namespace: &str, object: &str, reason: String) -> Row {
    Row {
        status: Status::NotAudited,
        cluster: cluster.to_string(),
        namespace: namespace.to_string(),
        object: object.to_string(),
        container: String::new(),
        image: String::new(),
        knob: reason,
        fix: None,
        message: None,
    }
}

/// Walks one cluster's workloads. A transport error (or a 401) ends the walk with `Err`; 403s are rows.
async fn walk_cluster(
    label: &str,
    scope: Scope,
    cluster: &Cluster,
    page: u32,
) -> Result<ClusterWalk, KubeError> {
    let mut w = ClusterWalk::default();
    let mut folded = Vec::new();
    let mut namespaces: Option<Vec<String>> = None;
    let mut forbidden: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for kind in KINDS {
        let ar = api_resource(kind.api_version, kind.kind, kind.plural);
        let group = ar.group.clone();
        let all: Api<DynamicObject> = Api::all_with(cluster.client.clone(), &ar);
        let mut objects = 0usize;
        let mut uses = Vec::new();
        let result = list_pages(&all, page, |o| {
            objects += 1;
            uses_of(kind, &o, label, scope, &mut uses, &mut folded);
        })
        .await;
        match result {
            Ok(()) => {}
            Err(e) if is_not_served(&e) => continue,
            Err(e) if is_forbidden(&e) => {
                // Not allowed cluster-wide: namespace by namespace.
                if namespaces.is_none() {
                    let ns_ar = api_resource("v1", "Namespace", "namespaces");
                    let api: Api<DynamicObject> = Api::all_with(cluster.client.clone(), &ns_ar);
                    let mut names = Vec::new();
                    match list_pages(&api, page, |o| names.push(o.metadata.name.unwrap_or_default())).await {
                        Ok(()) => namespaces = Some(names),
                        Err(e) if is_forbidden(&e) => {
                            w.rows.push(not_audited(
                                label,
                                "",
                                kind.plural,
                                format!(
                                    "{}; listing namespaces is forbidden too",
                                    map_error(e, &cluster.server, op("list", kind.plural, &group, ""))
                                ),
                            ));
                            continue;
                        }
                        Err(e) => {
                            return Err(map_error(e, &cluster.server, op("list", "namespaces", "", "")));
                        }
                    }
                }
                for ns in namespaces.as_deref().unwrap_or_default() {
                    let api: Api<DynamicObject> = Api::namespaced_with(cluster.client.clone(), ns, &ar);
                    match list_pages(&api, page, |o| {
                        objects += 1;
                        uses_of(kind, &o, label, scope, &mut uses, &mut folded);
                    })
                    .await
                    {
                        Ok(()) => {}
                        Err(e) if is_forbidden(&e) => {
                            forbidden.entry(ns.clone()).or_default().push(kind.plural)
                        }
                        Err(e) => {
                            return Err(map_error(e, &cluster.server, op("list", kind.plural, &group, ns)));
                        }
                    }
                }
            }
            Err(e) => return Err(map_error(e, &cluster.server, op("list", kind.plural, &group, ""))),
        }
        w.objects += objects;
        w.uses.extend(uses);
    }
    for (ns, kinds) in forbidden {
        w.rows.push(not_audited(
            label,
            &ns,
            "",
            format!("forbidden to list {} in this namespace", kinds.join(", ")),
        ));
    }
    // A Pod that cannot pull: the kubelet's event says why (the latest `Failed` pulling event), when
    // events can be read.
    let stuck: Vec<&mut ImageUse> = folded
        .iter_mut()
        .chain(w.uses.iter_mut())
        .filter(|u| u.pull_error.is_some() && u.object.starts_with("Pod/"))
        .collect();
    if !stuck.is_empty() {
        pull_events(cluster, page, stuck).await;
    }
    // Its message goes to the template with that image, else the Pod stays a row itself.
    for p in folded {
        match w
            .uses
            .iter_mut()
            .find(|u| u.namespace == p.namespace && u.container == p.container && u.image == p.image)
        {
            Some(u) => {
                u.pull_error
                    .get_or_insert_with(|| p.pull_error.clone().unwrap_or_default());
            }
            None => w.uses.push(p),
        }
    }
    Ok(w)
}

/// Replaces the status reason of each stuck Pod container with the message of the kubelet's latest
/// `Failed` / `BackOff` event about pulling its image; events that cannot be read change nothing.
async fn pull_events(cluster: &Cluster, page: u32, stuck: Vec<&mut ImageUse>) {
    let ar = api_resource("v1", "Event", "events");
    let mut namespaces: Vec<String> = stuck.iter().map(|u| u.namespace.clone()).collect();
    namespaces.sort();
    namespaces.dedup();
    // (namespace, pod, image) → (time, message)
    let mut latest: BTreeMap<(String, String, String), (String, String)> = BTreeMap::new();
    for ns in namespaces {
        let api: Api<DynamicObject> = Api::namespaced_with(cluster.client.clone(), &ns, &ar);
        let result = list_pages(&api, page, |e| {
            let d = &e.data;
            let text = |p: &str| {
                d.pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            if text("/involvedObject/kind") != "Pod"
                || !matches!(text("/reason").as_str(), "Failed" | "BackOff")
            {
                return;
            }
            let message = text("/message");
            let pod = text("/involvedObject/name");
            let time = [text("/lastTimestamp"), text("/eventTime")].concat();
            let key = (ns.clone(), pod, message.clone());
            latest.insert(key, (time, message));
        })
        .await;
        if let Err(e) = result {
            tracing::info!("events in {ns}: {e}");
        }
    }
    for u in stuck {
        let pod = u.object.trim_start_matches("Pod/");
        let best = latest
            .iter()
            .filter(|((ns, p, m), _)| *ns == u.namespace && p == pod && m.contains(&u.image))
            .max_by(|a, b| a.1.0.cmp(&b.1.0))
            .map(|(_, (_, m))| m.clone());
        if let (Some(m), Some(reason)) = (best, &u.pull_error) {
            let reason = reason.split(':').next().unwrap_or_default().to_string();
            u.pull_error = Some(format!("{reason}: {m}"));
        }
    }
}

/// [`walk_cluster`] under the per-cluster timeout; failure is one "not audited" row for the cluster.
async fn walk_timed(
    label: String,
    scope: Scope,
    cluster: Cluster,
    page: u32,
    timeout: Duration,
) -> (ClusterWalk, bool) {
    match tokio::time::timeout(timeout, walk_cluster(&label, scope, &cluster, page)).await {
        Ok(Ok(w)) => (w, true),
        Ok(Err(e)) => (
            ClusterWalk {
                rows: vec![not_audited(&label, "", "", e.to_string())],
                ..Default::default()
            },
            false,
        ),
        Err(_) => (
            ClusterWalk {
                rows: vec![not_audited(
                    &label,
                    "",
                    "",
                    format!(
                        "{} did not answer within {}",
                        cluster.server,
                        crate::discover::helm::format_duration(timeout)
                    ),
                )],
                ..Default::default()
            },
            false,
        ),
    }
}

/// Findings about one Seed's datacenters' node settings.
fn seed_settings(seed: &Value, registry: &str, insecure: &[String]) -> Vec<Row> {
    let name = object_name(seed);
    let mut rows = Vec::new();
    let host = registry.split('/').next().unwrap_or(registry).to_string();
    let plain = insecure.iter().any(|h| h.trim_end_matches('/') == host);
    let Some(dcs) = seed.pointer("/spec/datacenters").and_then(Value::as_object) else {
        return rows;
    };
    for (dc, spec) in dcs {
        let node = spec.get("node").cloned().unwrap_or(Value::Null);
        let row = |status, container: String, image: String, knob: String, fix: Option<String>| Row {
            status,
            cluster: "master".into(),
            namespace: seed
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .into(),
            object: format!("Seed/{name}"),
            container,
            image,
            knob,
            fix,
            message: None,
        };
        let knob = |f: &str| crate::knobs::NodeKnob::by_field(f).expect("a Seed node field");
        let field = |f: &str| knob(f).path(dc);
        if let Some(pause) = node
            .get("pauseImage")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            && !crate::knobs::is_under(pause, registry)
        {
            let target = crate::reference::ImageRef::parse(pause)
                .and_then(|r| r.retarget(registry))
                .map(|r| r.to_string())
                .unwrap_or_else(|_| format!("{registry}/pause:3.10"));
            rows.push(row(
                Status::Leak,
                field("pauseImage"),
                pause.to_string(),
                format!("Seed {name} {}", field("pauseImage")),
                Some(format!(
                    "kubectl kkp seedproxy {dc} {} {target}",
                    knob("pauseImage").flag
                )),
            ));
        }
        let current: Vec<&str> = node
            .get("insecureRegistries")
            .and_then(Value::as_array)
            .map(|l| l.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let listed = current.contains(&host.as_str());
        if plain && !listed {
            // seedproxy's list replaces the one there: keep what is listed already.
            let wanted = current
                .iter()
                .copied()
                .chain([host.as_str()])
                .collect::<Vec<_>>()
                .join(",");
            rows.push(row(
                Status::Misconfigured,
                field("insecureRegistries"),
                host.clone(),
                format!(
                    "Seed {name} {}: the mirror is plain HTTP (or its CA is not trusted) and not listed, so \
                     containerd on the nodes refuses it",
                    field("insecureRegistries")
                ),
                Some(format!(
                    "kubectl kkp seedproxy {dc} {} {wanted}",
                    knob("insecureRegistries").flag
                )),
            ));
        }
        if node
            .get("httpProxy")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            rows.push(row(
                Status::Note,
                field("httpProxy"),
                String::new(),
                format!("Seed {name} datacenter {dc}: no node proxy (fine when the nodes reach the mirror directly)"),
                None,
            ));
        }
    }
    rows
}

/// Walks everything `args` asks for, starting from the master cluster of the kubeconfig.
pub async fn walk(args: &AuditArgs) -> Result<Walked, KubeError> {
    let master = crate::kube::connect(&args.kube).await?;
    let page = args.page_size.unwrap_or(DEFAULT_PAGE).max(1);
    let timeout = args.cluster_timeout.unwrap_or(DEFAULT_TIMEOUT);
    let registry = args.registry.trim().trim_end_matches('/').to_string();
    let mut out = Walked::default();

    // The KubermaticConfiguration and the Seeds first: a master that does not answer is an error.
    let configs = kkp::configurations(&master, "");
    match kkp::configuration(&configs, None).await {
        Ok(c) => out.config = Some(c),
        Err(kkp::ConfigurationError::Kube(e)) if e.code().is_none() => return Err(e),
        Err(e) => out.not_audited.push(not_audited(
            "master",
            &master.namespace,
            "KubermaticConfiguration",
            e.to_string(),
        )),
    }
    let seeds = match kkp::seeds(&master, "").list().await {
        Ok(s) => s,
        Err(e) => {
            out.not_audited
                .push(not_audited("master", &master.namespace, "Seeds", e.to_string()));
            Vec::new()
        }
    };
    // Hosts the nodes' containerd cannot verify: plain HTTP (`--insecure-registry`), or a private CA
    // given for that host (`--ca-file HOST=FILE`), which the nodes do not trust by default.
    let untrusted: Vec<String> = args
        .insecure_registries
        .iter()
        .cloned()
        .chain(
            args.ca_files
                .iter()
                .filter(|c| !std::path::Path::new(c.as_str()).exists())
                .filter_map(|c| c.split_once('=').map(|(h, _)| h.to_string())),
        )
        .collect();
    for seed in &seeds {
        out.settings.extend(seed_settings(seed, &registry, &untrusted));
    }

    let master_walk = walk_timed("master".into(), Scope::Master, master.clone(), page, timeout);
    let seed_walks = seeds.iter().filter(|_| args.seeds != Some(false)).map(|seed| {
        let master = master.clone();
        let name = object_name(seed);
        let r = KubeconfigRef::of(seed);
        let user_clusters = args.user_clusters;
        async move {
            let label = format!("seed {name}");
            let Some(r) = r else {
                let w = ClusterWalk {
                    rows: vec![not_audited(
                        &label,
                        "",
                        &format!("Seed/{name}"),
                        "the Seed names no kubeconfig Secret (spec.kubeconfig)".into(),
                    )],
                    ..Default::default()
                };
                return vec![(w, false)];
            };
            let cluster = match kkp::seed_cluster(&master, &name, &r).await {
                Ok(c) => c,
                Err(e) => {
                    let w = ClusterWalk {
                        rows: vec![not_audited(
                            &label,
                            &r.namespace,
                            &format!("Secret/{}", r.name),
                            format!("cannot use the seed kubeconfig: {e}"),
                        )],
                        ..Default::default()
                    };
                    return vec![(w, false)];
                }
            };
            let mut walks = Vec::new();
            let seed_walk = walk_timed(label.clone(), Scope::Seed, cluster.clone(), page, timeout);
            if user_clusters {
                let users = user_cluster_walks(&label, &cluster, page, timeout);
                let (s, u) = futures::join!(seed_walk, users);
                walks.push(s);
                walks.extend(u);
            } else {
                walks.push(seed_walk.await);
            }
            walks
        }
    });
    let (m, s) = futures::join!(master_walk, join_all(seed_walks));
    for (w, ok) in std::iter::once(m).chain(s.into_iter().flatten()) {
        out.clusters += usize::from(ok);
        out.objects += w.objects;
        out.uses.extend(w.uses);
        out.not_audited.extend(w.rows);
    }
    Ok(out)
}

/// The walks of every user cluster of a seed cluster, through each `cluster-<id>` admin kubeconfig.
async fn user_cluster_walks(
    seed_label: &str,
    seed: &Cluster,
    page: u32,
    timeout: Duration,
) -> Vec<(ClusterWalk, bool)> {
    let clusters = match kkp::user_clusters(seed).list().await {
        Ok(c) => c,
        Err(e) => {
            return vec![(
                ClusterWalk {
                    rows: vec![not_audited(
                        seed_label,
                        "",
                        "Clusters",
                        format!("cannot list the user clusters: {e}"),
                    )],
                    ..Default::default()
                },
                false,
            )];
        }
    };
    let walks = clusters.iter().map(|c| {
        let id = object_name(c);
        let ns = c
            .pointer("/status/namespaceName")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| format!("cluster-{id}"));
        let seed = seed.clone();
        async move {
            let label = format!("user cluster {id}");
            match kkp::cluster_from_secret(&seed, &ns, ADMIN_KUBECONFIG, "kubeconfig").await {
                Ok(cluster) => walk_timed(label, Scope::User, cluster, page, timeout).await,
                Err(e) => (
                    ClusterWalk {
                        rows: vec![not_audited(
                            &label,
                            &ns,
                            &format!("Secret/{ADMIN_KUBECONFIG}"),
                            format!("cannot use the admin kubeconfig: {e}"),
                        )],
                        ..Default::default()
                    },
                    false,
                ),
            }
        }
    });
    join_all(walks).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seed_node_settings_outside_the_mirror_are_findings() {
        let seed = json!({"metadata": {"name": "hamburg", "namespace": "kubermatic"},
            "spec": {"datacenters": {
                "hh-1": {"node": {"pauseImage": "registry.k8s.io/pause:3.10", "httpProxy": "http://p:3128",
                                  "insecureRegistries": ["old.corp:5000"]}},
                "hh-2": {"node": {"pauseImage": "reg.local:5000/kkp/pause:3.10", "insecureRegistries": ["reg.local:5000"]}}}}});
        let rows = seed_settings(&seed, "reg.local:5000/kkp", &["reg.local:5000".into()]);
        let got: Vec<(Status, &str)> = rows.iter().map(|r| (r.status, r.container.as_str())).collect();
        assert_eq!(
            got,
            [
                (Status::Leak, "spec.datacenters.hh-1.node.pauseImage"),
                (
                    Status::Misconfigured,
                    "spec.datacenters.hh-1.node.insecureRegistries"
                ),
                (Status::Note, "spec.datacenters.hh-2.node.httpProxy"),
            ]
        );
        assert_eq!(
            rows[0].fix.as_deref(),
            Some("kubectl kkp seedproxy hh-1 --pause-image reg.local:5000/kkp/pause:3.10")
        );
        // seedproxy replaces the list: the fix keeps the registries already listed.
        assert_eq!(
            rows[1].fix.as_deref(),
            Some("kubectl kkp seedproxy hh-1 --insecure-registry old.corp:5000,reg.local:5000")
        );
    }
}
