//! `kubectl devenv list` and `get NAME`: one LIST call per kind (StatefulSets,
//! Pods, claims, all by label), joined by [`crate::views::list`]; never a
//! call per workspace.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::Api;

use devenv_shared::build::workspace::selector_string;
use devenv_shared::model::policy::Policy;

use crate::cli::{GetArgs, GlobalArgs, ListArgs, ListFormat};
use crate::client::{self, Cluster};
use crate::commands::effective_policy;
use crate::error::{ApiCall, Error};
use crate::views::list::{join, render, WorkspaceSummary};

fn print_summaries(
    rows: &[WorkspaceSummary],
    format: Option<ListFormat>,
    all_namespaces: bool,
    single: bool,
) -> Result<(), Error> {
    let out = render(rows, format, all_namespaces, single)?;
    print!("{}", out.stdout);
    eprint!("{}", out.stderr);
    Ok(())
}

async fn list_all<K>(
    cluster: &Cluster,
    ns: Option<&str>,
    selector: &str,
    call: ApiCall,
) -> Result<Vec<K>, Error>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let err = cluster.err(call);
    let url = K::url_path(&K::DynamicType::default(), ns);
    let request = match kube::core::Request::new(url).list(&ListParams::default().labels(selector))
    {
        Ok(r) => r,
        Err(e) => return Err(err(kube::Error::BuildRequest(e))),
    };
    let body = match cluster.client.request_text(request).await {
        Ok(body) => body,
        Err(e) => return Err(err(e)),
    };
    match serde_json::from_str::<Items<K>>(&body) {
        Ok(list) => Ok(list.items.into_iter().map(|i| i.0).collect()),
        Err(e) => Err(err(kube::Error::SerdeError(e))),
    }
}

/// The items of a LIST response.
#[derive(serde::Deserialize)]
#[serde(bound = "K: serde::de::DeserializeOwned")]
struct Items<K> {
    items: Vec<WithoutManagedFields<K>>,
}

/// One listed object, read without its `metadata.managedFields`: `list` never shows them,
/// and typed (a JSON tree per field manager) they were most of its memory. At 1,000
/// workspaces they were half the bytes of the three lists, and `list -A` peaked at 192 MiB
/// against 91 MiB for `kubectl get statefulsets -A` (issue 16).
struct WithoutManagedFields<K>(K);

impl<'de, K: serde::de::DeserializeOwned> serde::Deserialize<'de> for WithoutManagedFields<K> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut item = serde_json::Value::deserialize(d)?;
        if let Some(meta) = item
            .get_mut("metadata")
            .and_then(serde_json::Value::as_object_mut)
        {
            meta.remove("managedFields");
        }
        K::deserialize(item)
            .map(WithoutManagedFields)
            .map_err(serde::de::Error::custom)
    }
}

/// FailedCreate events of StatefulSets (one LIST). Best effort: without the
/// right to list events the STATUS column is just less specific.
async fn failed_create_events(cluster: &Cluster, ns: Option<&str>) -> Vec<Event> {
    let api: Api<Event> = match ns {
        Some(ns) => Api::namespaced(cluster.client.clone(), ns),
        None => Api::all(cluster.client.clone()),
    };
    let params =
        ListParams::default().fields("reason=FailedCreate,involvedObject.kind=StatefulSet");
    match api.list(&params).await {
        Ok(list) => list.items,
        Err(e) => {
            tracing::debug!("listing FailedCreate events: {e}");
            Vec::new()
        }
    }
}

/// The lifecycle rules in force: the installed policy's, else the defaults the
/// controller runs with. `None` (columns say `unknown`) when the policy cannot
/// be read or parsed: a guess would be worse than no answer.
async fn lifecycle_policy(cluster: &Cluster, global: &GlobalArgs) -> Result<Policy, Error> {
    effective_policy(Some(cluster), &global.install_namespace, None).await
}

/// The policy when it could be read; otherwise a warning, printed only once the
/// workspaces themselves were read (read concurrently, a failed list is the one error said).
fn or_warn(policy: Result<Policy, Error>) -> Option<Policy> {
    policy
        .map_err(|e| eprintln!("warning: lifecycle and backup times unknown: {e}"))
        .ok()
}

pub async fn list(global: &GlobalArgs, args: &ListArgs) -> Result<i32, Error> {
    let cluster = client::connect(global).await?;
    let ns = (!args.all_namespaces).then_some(cluster.namespace.as_str());
    let scoped = |a: ApiCall| match ns {
        Some(n) => a.ns(n),
        None => a,
    };
    let selector = devenv_shared::build::workspace::all_workspaces_selector();
    // All five reads at once: the time of `list` is the slowest read, not their sum.
    let (lists, events, lifecycle) = futures::join!(
        async {
            futures::try_join!(
                list_all::<StatefulSet>(
                    &cluster,
                    ns,
                    &selector,
                    scoped(ApiCall::new("list", "statefulsets.apps", "workspace"))
                ),
                list_all::<Pod>(
                    &cluster,
                    ns,
                    &selector,
                    scoped(ApiCall::new("list", "pods", "Pod"))
                ),
                list_all::<PersistentVolumeClaim>(
                    &cluster,
                    ns,
                    &selector,
                    scoped(ApiCall::new(
                        "list",
                        "persistentvolumeclaims",
                        "PersistentVolumeClaim"
                    ))
                ),
            )
        },
        failed_create_events(&cluster, ns),
        lifecycle_policy(&cluster, global),
    );
    let (sts, pods, claims) = lists?;
    let lifecycle = or_warn(lifecycle);
    let rows = join(
        &sts,
        &pods,
        &claims,
        &events,
        lifecycle.as_ref(),
        Timestamp::now(),
    );
    print_summaries(&rows, args.output, args.all_namespaces, false)?;
    Ok(0)
}

pub async fn get(global: &GlobalArgs, args: &GetArgs) -> Result<i32, Error> {
    devenv_shared::build::workspace::validate_name(&args.name)?;
    let cluster = client::connect(global).await?;
    let ns = cluster.namespace.clone();
    let api: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), &ns);
    let call = ApiCall::new("get", "statefulsets.apps", "workspace")
        .ns(&ns)
        .name(&args.name);
    let sts = api.get(&args.name).await.map_err(cluster.err(call))?;
    let selector = selector_string(&args.name);
    let (lists, events, lifecycle) = futures::join!(
        async {
            futures::try_join!(
                list_all::<Pod>(
                    &cluster,
                    Some(&ns),
                    &selector,
                    ApiCall::new("list", "pods", "Pod").ns(&ns)
                ),
                list_all::<PersistentVolumeClaim>(
                    &cluster,
                    Some(&ns),
                    &selector,
                    ApiCall::new("list", "persistentvolumeclaims", "PersistentVolumeClaim").ns(&ns)
                ),
            )
        },
        failed_create_events(&cluster, Some(&ns)),
        lifecycle_policy(&cluster, global),
    );
    let (pods, claims) = lists?;
    let lifecycle = or_warn(lifecycle);
    let rows = join(
        std::slice::from_ref(&sts),
        &pods,
        &claims,
        &events,
        lifecycle.as_ref(),
        Timestamp::now(),
    );
    print_summaries(&rows, args.output, false, true)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_objects_are_read_without_their_managed_fields() {
        let body = serde_json::json!({
            "kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "7"},
            "items": [{
                "metadata": {
                    "name": "alice-0", "namespace": "team",
                    "labels": {"devenv.io/workspace": "alice"},
                    "managedFields": [{"manager": "kubelet", "operation": "Update",
                        "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:phase": {}}}}],
                },
                "status": {"phase": "Running"},
            }],
        });
        let list: Items<Pod> = serde_json::from_value(body).expect("a pod list");
        let pod = &list.items[0].0;
        assert_eq!(pod.metadata.name.as_deref(), Some("alice-0"));
        assert_eq!(pod.metadata.managed_fields, None);
        assert_eq!(
            pod.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("devenv.io/workspace")),
            Some(&"alice".to_string())
        );
        assert_eq!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Running")
        );
        let bad: Result<Items<Pod>, _> =
            serde_json::from_value(serde_json::json!({"items": [{"metadata": {"name": 7}}]}));
        assert!(bad.is_err(), "a malformed item is an error, not a default");
    }
}
