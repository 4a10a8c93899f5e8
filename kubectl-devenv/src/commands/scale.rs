//! `scale`, `stop` and `start`: read the workspace StatefulSet, patch it with
//! what [`crate::views::scale`] computes from what was read, and say what
//! happened. Claims are never touched.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::jiff::Timestamp;
use kube::api::Patch;
use kube::Api;
use serde_json::Value;

use devenv_shared::build::workspace;

use crate::cli::{DryRun, GlobalArgs, ObjectFormat, ScaleArgs, StopStartArgs};
use crate::client::{self, Cluster};
use crate::commands::{effective_policy, patch_params};
use crate::error::{ApiCall, Error};
use crate::output;
use crate::views::scale::{
    check_vertical, replicas_patch, start_patch, stop_patch, vertical_patch,
};

async fn read(cluster: &Cluster, name: &str) -> Result<StatefulSet, Error> {
    let ns = cluster.namespace.as_str();
    Api::<StatefulSet>::namespaced(cluster.client.clone(), ns)
        .get(name)
        .await
        .map_err(
            cluster.err(
                ApiCall::new("get", "statefulsets.apps", "workspace")
                    .ns(ns)
                    .name(name),
            ),
        )
}

/// Prints what happened (or, with --dry-run=client, the patch).
fn report(
    name: &str,
    body: &Value,
    patched: Option<&StatefulSet>,
    dry_run: DryRun,
    output: Option<ObjectFormat>,
    done: &str,
) -> Result<(), Error> {
    match (patched, output) {
        (None, out) => output::print(
            std::slice::from_ref(body),
            out.unwrap_or(ObjectFormat::Yaml),
        ),
        (Some(sts), Some(f)) => output::print(&[output::to_value(sts)?], f),
        (Some(_), None) => {
            println!(
                "workspace/{name} {done}{}",
                if dry_run == DryRun::Server {
                    " (server dry run)"
                } else {
                    ""
                }
            );
            Ok(())
        }
    }
}

/// How often a guarded patch is recomputed when the StatefulSet changed
/// between the read and the write (its controller updates the status often).
const ATTEMPTS: usize = 5;

/// Read, compute a patch from what was read, send it; on a resourceVersion
/// conflict read again and recompute. `compute` returns `None` when there is
/// nothing to do, with the message to print then. With --dry-run=client the
/// patch is printed, not sent.
async fn read_modify_write(
    cluster: &Cluster,
    name: &str,
    dry_run: DryRun,
    output: Option<ObjectFormat>,
    done: &str,
    compute: impl Fn(&StatefulSet) -> Result<Result<Patch<Value>, String>, Error>,
) -> Result<(), Error> {
    let ns = cluster.namespace.as_str();
    let api: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), ns);
    let call = || {
        ApiCall::new("patch", "statefulsets.apps", "workspace")
            .ns(ns)
            .name(name)
    };
    for attempt in 1..=ATTEMPTS {
        let sts = read(cluster, name).await?;
        let patch = match compute(&sts)? {
            Ok(p) => p,
            Err(nothing_to_do) => {
                println!("workspace/{name} {nothing_to_do}");
                return Ok(());
            }
        };
        let body = match &patch {
            Patch::Merge(v) | Patch::Strategic(v) => v.clone(),
            _ => Value::Null,
        };
        if dry_run == DryRun::Client {
            return report(name, &body, None, dry_run, output, done);
        }
        match api.patch(name, &patch_params(dry_run), &patch).await {
            Ok(patched) => return report(name, &body, Some(&patched), dry_run, output, done),
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < ATTEMPTS => {
                tracing::info!(
                    "workspace changed while patching ({}); reading it again",
                    s.message
                );
            }
            Err(e) => return Err(crate::error::from_kube(e, &call(), &cluster.server)),
        }
    }
    Err(Error::Other(anyhow::anyhow!(
        "workspace {name} kept changing; try again"
    )))
}

pub async fn scale(global: &GlobalArgs, args: &ScaleArgs) -> Result<i32, Error> {
    workspace::validate_name(&args.name)?;
    let vertical = args.tier.is_some() || args.cpu.is_some() || args.memory.is_some();
    if args.replicas.is_none() && !vertical {
        return Err(Error::Usage(
            "scale needs --replicas N, or --tier / --cpu / --memory".into(),
        ));
    }
    if let Some(n) = args.replicas.filter(|n| *n < 0) {
        return Err(workspace::WorkspaceError::InvalidReplicas(n).into());
    }
    let dry_run = args.change.dry_run;
    let out = args.change.output;
    if !vertical && dry_run == DryRun::Client {
        // The replicas patch depends on nothing in the cluster.
        let patch = replicas_patch(args.replicas.unwrap_or_default());
        output::print(&[patch], out.unwrap_or(ObjectFormat::Yaml))?;
        return Ok(0);
    }
    let cluster = client::connect(global).await?;
    if let Some(n) = args.replicas {
        let ns = cluster.namespace.as_str();
        let api: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), ns);
        let body = replicas_patch(n);
        let patched = api
            .patch(&args.name, &patch_params(dry_run), &Patch::Merge(&body))
            .await
            .map_err(
                cluster.err(
                    ApiCall::new("patch", "statefulsets.apps", "workspace")
                        .ns(ns)
                        .name(&args.name),
                ),
            )?;
        report(
            &args.name,
            &body,
            Some(&patched),
            dry_run,
            out,
            &format!("scaled to {n} replicas (volumes are kept)"),
        )?;
    }
    if vertical {
        let policy = effective_policy(Some(&cluster), &global.install_namespace, None).await?;
        read_modify_write(
            &cluster,
            &args.name,
            dry_run,
            out,
            "resized (pods restart one by one; volumes are kept)",
            |sts| {
                let patch = vertical_patch(
                    sts,
                    &policy,
                    args.tier.as_deref(),
                    args.cpu.as_deref(),
                    args.memory.as_deref(),
                )?;
                check_vertical(sts, &policy, &patch)?;
                Ok(Ok(Patch::Strategic(patch)))
            },
        )
        .await?;
    }
    Ok(0)
}

pub async fn stop(global: &GlobalArgs, args: &StopStartArgs) -> Result<i32, Error> {
    workspace::validate_name(&args.name)?;
    let cluster = client::connect(global).await?;
    read_modify_write(
        &cluster,
        &args.name,
        args.change.dry_run,
        args.change.output,
        "stopped (volumes are kept)",
        |sts| {
            Ok(stop_patch(sts, Timestamp::now())
                .map(Patch::Merge)
                .ok_or_else(|| "is already stopped".to_owned()))
        },
    )
    .await?;
    Ok(0)
}

pub async fn start(global: &GlobalArgs, args: &StopStartArgs) -> Result<i32, Error> {
    workspace::validate_name(&args.name)?;
    let cluster = client::connect(global).await?;
    read_modify_write(
        &cluster,
        &args.name,
        args.change.dry_run,
        args.change.output,
        "started",
        |sts| {
            Ok(start_patch(sts, Timestamp::now())
                .map(Patch::Merge)
                .ok_or_else(|| "is already running".to_owned()))
        },
    )
    .await?;
    Ok(0)
}
