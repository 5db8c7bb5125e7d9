//! `retarget --live`: the KubermaticConfiguration in the cluster instead of a file.
//!
//! The live object is read (by `--name`, or the only one in the namespace), shown as YAML without
//! managedFields, status and bookkeeping, edited by the very same [`super::config::config_edits`] the
//! file path uses, and written back as a JSON merge patch guarded by the resourceVersion that was read.
//! A 409 means someone wrote the object meanwhile: it is read again, the new diff shown, and the
//! question asked again (a bounded number of times). Talks to the cluster only through
//! [`crate::kube::Objects`].

use std::io::Write;
use std::path::Path;

use serde_json::{Map, Value};

use crate::kube::{Cluster, KubeError, MAX_ATTEMPTS, Objects, for_display, guarded_merge_patch, object_name};
use crate::yamledit::{Scalar, Seg, YamlDoc, YamlPath};

use super::config::{self, Connection};
use super::{RetargetError, apply_edits, mask_secrets};
use crate::knobs::Edition;

/// API group of the KubermaticConfiguration.
pub const GROUP: &str = "kubermatic.k8c.io";
/// Its kind.
pub const KIND: &str = "KubermaticConfiguration";
/// Its plural resource name.
pub const RESOURCE: &str = "kubermaticconfigurations";
/// The field manager recorded in managedFields for our writes.
pub const FIELD_MANAGER: &str = "kubectl-kkp-retarget";

/// The KubermaticConfigurations of the cluster's namespace.
pub fn configurations(cluster: &Cluster) -> Objects<'_> {
    crate::kube::kkp::configurations(cluster, FIELD_MANAGER)
}

/// The live object and what retarget would make of it.
#[derive(Debug, Clone)]
pub struct LiveChange {
    /// Its name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// The object as read (resourceVersion included: it guards the patch).
    pub live: Value,
    /// The object with the edits applied.
    pub desired: Value,
    /// The live object as shown (YAML, noise stripped).
    pub old_text: String,
    /// The same text with the edits spliced in.
    pub new_text: String,
}

impl LiveChange {
    /// True when the patch would change something.
    pub fn changed(&self) -> bool {
        self.old_text != self.new_text
    }

    /// The diff against the live object, credentials masked, `LIVE/…` and `MERGED/…` as kubectl diff
    /// names the sides.
    pub fn diff(&self, colour: bool) -> String {
        let label = format!("{GROUP}/v1.{KIND}.{}.{}", self.namespace, self.name);
        crate::diff::unified(
            &mask_secrets(&self.old_text),
            &mask_secrets(&self.new_text),
            &format!("LIVE/{label}"),
            &format!("MERGED/{label}"),
            colour,
        )
    }
}

/// What the live object is pointed at: the registry, the edition whose defaults apply (detected when
/// `None`) and how KKP reaches the registry for charts.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The private registry.
    pub registry: &'a str,
    /// `--edition`.
    pub edition: Option<Edition>,
    /// `--plain-http`, `--insecure-skip-tls-verify`.
    pub connection: Connection,
}

/// Computes the retargeted form of `live` with the same edits as a configuration file gets.
pub fn compute(live: Value, target: &Target<'_>) -> Result<LiveChange, RetargetError> {
    let Target {
        registry,
        edition,
        connection,
    } = *target;
    let name = object_name(&live);
    let namespace = live
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let label = format!("{KIND} {namespace}/{name}");
    let shown = for_display(&live);
    let old_text = serde_saphyr::to_string(&shown).map_err(|e| RetargetError::Input {
        path: label.clone().into(),
        message: format!("rendering as YAML: {e}"),
    })?;
    let edit_err = |source| RetargetError::Edit {
        path: label.clone().into(),
        source,
    };
    let doc = YamlDoc::parse(old_text.as_str()).map_err(edit_err)?;
    let edition = edition.unwrap_or_else(|| crate::knobs::detect_edition(&doc));
    let edits = config::config_edits(&doc, registry, edition, connection)?;
    let new_text = apply_edits(Path::new(&label), &old_text, &edits)?;
    let mut desired = live.clone();
    for e in &edits {
        set_json(&mut desired, &e.path, &e.value).map_err(|message| RetargetError::Input {
            path: label.clone().into(),
            message,
        })?;
    }
    Ok(LiveChange {
        name,
        namespace,
        live,
        desired,
        old_text,
        new_text,
    })
}

/// Sets the string at `path`, creating the mappings on the way.
fn set_json(obj: &mut Value, path: &YamlPath, value: &Scalar) -> Result<(), String> {
    let mut at = obj;
    for (i, seg) in path.0.iter().enumerate() {
        let Seg::Key(key) = seg else {
            return Err(format!("no list index expected in {path:?}"));
        };
        if at.is_null() {
            *at = Value::Object(Map::new());
        }
        let Some(map) = at.as_object_mut() else {
            return Err(format!("{} is not a mapping", key_path(&path.0[..i])));
        };
        at = map.entry(key.clone()).or_insert(Value::Null);
    }
    *at = value.to_json();
    Ok(())
}

fn key_path(segs: &[Seg]) -> String {
    segs.iter()
        .map(|s| match s {
            Seg::Key(k) => k.clone(),
            Seg::Index(i) => format!("[{i}]"),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Reads `name`, or the only KubermaticConfiguration of the namespace.
pub async fn read(objects: &Objects<'_>, name: Option<&str>) -> Result<Value, RetargetError> {
    use crate::kube::kkp::{ConfigurationError as E, configuration};
    configuration(objects, name).await.map_err(|e| match e {
        E::Kube(e) => RetargetError::Kube(e),
        E::NoConfiguration { namespace } => RetargetError::NoConfiguration { namespace },
        E::SeveralConfigurations { namespace, names } => {
            RetargetError::SeveralConfigurations { namespace, names }
        }
    })
}

/// Sends the change as a guarded merge patch (`dryRun=All` when `server_dry_run`). On a 409 the object
/// is read again, its new diff written to `out` and `ask` consulted again, at most
/// [`MAX_ATTEMPTS`] times. Returns the object the server answered, `None` when nothing was left to do.
pub async fn patch(
    objects: &Objects<'_>,
    mut change: LiveChange,
    target: &Target<'_>,
    server_dry_run: bool,
    out: &mut dyn Write,
    ask: &mut dyn FnMut() -> Result<bool, RetargetError>,
) -> Result<Option<Value>, RetargetError> {
    let stdout_err = |source| RetargetError::Io {
        path: "stdout".into(),
        source,
    };
    for attempt in 1.. {
        let Some(patch) = guarded_merge_patch(&change.live, &change.desired) else {
            eprintln!(
                "{KIND} {}/{} already points at {}; nothing to change",
                change.namespace, change.name, target.registry
            );
            return Ok(None);
        };
        tracing::debug!(%patch, "merge patch");
        let err = match objects.patch(&change.name, &patch, server_dry_run).await {
            Ok(obj) => {
                let id = objects.id("kubermaticconfiguration", &change.name);
                let how = if server_dry_run { " (server dry run)" } else { "" };
                writeln!(out, "{id} patched{how}").map_err(stdout_err)?;
                return Ok(Some(obj));
            }
            Err(e) => e,
        };
        let KubeError::Conflict { message } = err else {
            return Err(err.into());
        };
        if attempt >= MAX_ATTEMPTS {
            return Err(RetargetError::LiveConflict {
                name: change.name,
                namespace: change.namespace,
                message: format!("{message}; still changing after {attempt} attempts"),
            });
        }
        eprintln!(
            "{KIND} {}/{} was changed by someone else meanwhile; re-reading it.",
            change.namespace, change.name
        );
        let live = objects.get(&change.name).await?;
        change = compute(live, target)?;
        out.write_all(change.diff(crate::diff::stdout_wants_color()).as_bytes())
            .and_then(|_| out.flush())
            .map_err(stdout_err)?;
        if change.changed() && !ask()? {
            return Err(RetargetError::Aborted);
        }
    }
    unreachable!("the loop returns")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_TARGET: Target<'static> = Target {
        registry: REG,
        edition: None,
        connection: Connection {
            plain_http: false,
            insecure_skip_tls_verify: false,
        },
    };
    use crate::kube::mock_cluster;
    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::json;
    use tower_test::mock::Handle;

    const PATH: &str = "/apis/kubermatic.k8c.io/v1/namespaces/kubermatic/kubermaticconfigurations";
    const REG: &str = "reg.local:5000/kkp";

    fn kkp(rv: &str) -> Value {
        json!({"apiVersion": "kubermatic.k8c.io/v1", "kind": "KubermaticConfiguration",
               "metadata": {"name": "kubermatic", "namespace": "kubermatic", "resourceVersion": rv,
                            "managedFields": [{"manager": "kubectl"}]},
               "spec": {"ingress": {"domain": "kkp.example.com"},
                        "ui": {"dockerRepository": "quay.io/kubermatic/dashboard"}},
               "status": {"kubermaticVersion": "v2.31.0"}})
    }

    async fn answer(
        handle: &mut Handle<Request<Body>, Response<Body>>,
        code: u16,
        reply: &Value,
    ) -> (String, String, Option<String>, Option<Value>) {
        let (req, send) = handle.next_request().await.expect("a request");
        let method = req.method().to_string();
        let uri = req.uri().to_string();
        let ct = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = req.into_body().collect_bytes().await.expect("body");
        send.send_response(
            Response::builder()
                .status(code)
                .body(Body::from(serde_json::to_vec(reply).expect("json")))
                .expect("response"),
        );
        (method, uri, ct, serde_json::from_slice(&body).ok())
    }

    #[test]
    fn the_live_object_gets_the_file_edits_with_noise_stripped() {
        let c = compute(kkp("7"), &TEST_TARGET).unwrap();
        assert!(!c.old_text.contains("managedFields"), "{}", c.old_text);
        assert!(!c.old_text.contains("status"), "{}", c.old_text);
        assert!(!c.old_text.contains("resourceVersion"), "{}", c.old_text);
        assert_eq!(
            c.desired["spec"]["ui"]["dockerRepository"],
            "reg.local:5000/kkp/kubermatic/dashboard"
        );
        assert_eq!(
            c.desired["spec"]["userCluster"]["overwriteRegistry"],
            "reg.local:5000/kkp"
        );
        assert_eq!(c.desired["status"], c.live["status"], "status is never patched");
        let again = compute(c.desired.clone(), &TEST_TARGET).unwrap();
        assert!(!again.changed(), "{}", again.diff(false));
        assert_eq!(guarded_merge_patch(&again.live, &again.desired), None);
    }

    #[test]
    fn live_diff_snapshot() {
        let mut obj = kkp("7");
        obj["spec"]["auth"] = json!({"serviceAccountKey": "never-on-a-terminal"});
        insta::assert_snapshot!(compute(obj, &TEST_TARGET).unwrap().diff(false));
    }

    #[tokio::test]
    async fn the_patch_is_a_strict_merge_patch_guarded_by_the_read_resource_version() {
        let (cluster, mut handle) = mock_cluster();
        let server = tokio::spawn(async move {
            let list = json!({"apiVersion": "kubermatic.k8c.io/v1", "kind": "KubermaticConfigurationList",
                              "metadata": {"resourceVersion": "9"}, "items": [kkp("7")]});
            let (m, uri, _, _) = answer(&mut handle, 200, &list).await;
            assert_eq!((m.as_str(), uri.as_str()), ("GET", &*format!("{PATH}?")));
            let mut patched = kkp("8");
            patched["spec"]["ui"]["dockerRepository"] = json!("x");
            let (m, uri, ct, body) = answer(&mut handle, 200, &patched).await;
            assert_eq!(m, "PATCH");
            assert_eq!(
                uri,
                format!(
                    "{PATH}/kubermatic?&dryRun=All&fieldManager=kubectl-kkp-retarget&fieldValidation=Strict"
                )
            );
            assert_eq!(ct.as_deref(), Some("application/merge-patch+json"));
            let body = body.expect("a JSON body");
            assert_eq!(body["metadata"], json!({"resourceVersion": "7"}));
            assert_eq!(
                body["spec"]["ui"],
                json!({"dockerRepository": "reg.local:5000/kkp/kubermatic/dashboard"})
            );
            assert_eq!(body["spec"]["userCluster"]["overwriteRegistry"], REG);
            assert!(body.get("status").is_none(), "{body}");
            assert!(
                body["spec"].get("ingress").is_none(),
                "unchanged fields are not sent: {body}"
            );
            handle
        });
        let objects = configurations(&cluster);
        let live = read(&objects, None).await.unwrap();
        let change = compute(live, &TEST_TARGET).unwrap();
        let mut out = Vec::new();
        let got = patch(&objects, change, &TEST_TARGET, true, &mut out, &mut || {
            panic!("no question without a conflict")
        })
        .await
        .unwrap();
        assert!(got.is_some());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "kubermaticconfiguration.kubermatic.k8c.io/kubermatic patched (server dry run)\n"
        );
        let mut handle = server.await.unwrap();
        drop(objects);
        drop(cluster);
        assert!(handle.next_request().await.is_none());
    }

    #[tokio::test]
    async fn a_conflict_rereads_shows_the_new_diff_and_asks_again() {
        let (cluster, mut handle) = mock_cluster();
        let server = tokio::spawn(async move {
            let conflict = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 409,
                                  "reason": "Conflict", "message": "the object has been modified"});
            let (m, _, _, body) = answer(&mut handle, 409, &conflict).await;
            assert_eq!(m, "PATCH");
            assert_eq!(body.unwrap()["metadata"]["resourceVersion"], "7");
            let mut newer = kkp("12");
            newer["spec"]["ingress"]["domain"] = json!("other.example.com");
            let (m, uri, _, _) = answer(&mut handle, 200, &newer).await;
            assert_eq!(
                (m.as_str(), uri.as_str()),
                ("GET", &*format!("{PATH}/kubermatic"))
            );
            let (m, uri, _, body) = answer(&mut handle, 200, &newer).await;
            assert_eq!(m, "PATCH");
            assert!(!uri.contains("dryRun"), "{uri}");
            assert_eq!(body.unwrap()["metadata"]["resourceVersion"], "12");
        });
        let objects = configurations(&cluster);
        let change = compute(kkp("7"), &TEST_TARGET).unwrap();
        let mut out = Vec::new();
        let mut asked = 0;
        patch(&objects, change, &TEST_TARGET, false, &mut out, &mut || {
            asked += 1;
            Ok(true)
        })
        .await
        .unwrap();
        server.await.unwrap();
        assert_eq!(asked, 1);
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("     domain: other.example.com\n"), "{out}");
        assert!(
            out.ends_with("kubermaticconfiguration.kubermatic.k8c.io/kubermatic patched\n"),
            "{out}"
        );
    }
}
