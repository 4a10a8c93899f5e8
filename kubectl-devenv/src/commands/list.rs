//! `kubectl devenv list` and `get NAME`: one LIST call per kind (StatefulSets,
//! Pods, claims, all by label), joined by [`crate::views::list`]; never a
//! call per workspace.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::Api;

use devenv_shared::build::workspace::selector_string;
use devenv_shared::model::lifecycle_policy::LifecyclePolicy;

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
    let api: Api<K> = match ns {
        Some(ns) => Api::namespaced(cluster.client.clone(), ns),
        None => Api::all(cluster.client.clone()),
    };
    let list = api
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(cluster.err(call))?;
    Ok(list.items)
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
async fn lifecycle_policy(
    cluster: &Cluster,
    global: &GlobalArgs,
) -> Result<LifecyclePolicy, Error> {
    effective_policy(Some(cluster), &global.install_namespace, None)
        .await
        .map(|policy| policy.lifecycle)
}

/// The lifecycle policy when it could be read; otherwise a warning, printed only once the
/// workspaces themselves were read (read concurrently, a failed list is the one error said).
fn or_warn(lifecycle: Result<LifecyclePolicy, Error>) -> Option<LifecyclePolicy> {
    lifecycle
        .map_err(|e| eprintln!("warning: lifecycle times unknown: {e}"))
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
