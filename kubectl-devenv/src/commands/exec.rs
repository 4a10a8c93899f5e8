//! `kubectl devenv exec` and `attach`: find the pod, then hand over to
//! [`crate::exec`], whose remote exit code becomes ours. While the session is
//! open, a heartbeat records activity on the workspace so the lifecycle
//! controller does not hibernate a workspace in use.

use std::io::IsTerminal;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;

use devenv_shared::lifecycle::state::WorkspaceState;
use devenv_shared::model::keys::WORKSPACE_LABEL;
use devenv_shared::model::lifecycle_policy::LifecyclePolicy;

use crate::activity;
use crate::cli::{AttachArgs, ExecArgs, GlobalArgs};
use crate::client::{self, Cluster};
use crate::commands::effective_policy;
use crate::error::{ApiCall, Error};
use crate::exec::{candidates, default_shell_command, run_with_heartbeat, Heartbeat};

/// Whether to allocate a terminal: -t forces one, -i alone means "stdin
/// without terminal" (pipes), otherwise when stdin is a terminal.
pub fn want_tty(stdin_flag: bool, tty_flag: bool, stdin_is_terminal: bool) -> bool {
    if tty_flag {
        true
    } else if stdin_flag {
        false
    } else {
        stdin_is_terminal
    }
}

/// Finds the workspace pod `target` refers to; returns (pod, workspace).
pub async fn resolve_pod(cluster: &Cluster, target: &str) -> Result<(String, String), Error> {
    let ns = cluster.namespace.as_str();
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    let tried = candidates(target);
    for candidate in &tried {
        let pod = api
            .get_opt(candidate)
            .await
            .map_err(cluster.err(ApiCall::new("get", "pods", "Pod").ns(ns).name(candidate)))?;
        let Some(pod) = pod else { continue };
        let workspace = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(WORKSPACE_LABEL))
            .cloned();
        return match workspace {
            Some(w) => Ok((candidate.clone(), w)),
            None => Err(Error::Usage(format!(
                "pod {candidate} is not a workspace pod (it has no {WORKSPACE_LABEL} label)"
            ))),
        };
    }
    Err(Error::NotFound {
        kind: "workspace pod".into(),
        name: tried.join(" or "),
        where_: format!("namespace {ns:?}"),
        hint: format!(
            "is the workspace running? check with: kubectl devenv list (start a stopped one with: kubectl devenv start {target})"
        ),
    })
}

/// Records activity on the workspace while the session is open (the lifecycle
/// controller never hibernates a workspace with a live session) and prints the
/// controller's stop warning in the terminal. `\r\n`: the terminal may be in raw mode.
/// Failures only cost the hibernation bookkeeping, never the session.
pub(crate) fn heartbeat(
    cluster: &Cluster,
    workspace: &str,
    interval: std::time::Duration,
) -> Heartbeat {
    Heartbeat {
        interval,
        beat: Box::new(activity::heartbeat_beat(
            cluster.client.clone(),
            &cluster.namespace,
            workspace,
            |message| eprint!("\r\n{message}\r\n"),
        )),
    }
}

/// The workspace's idle timeout, for the heartbeat's pace: its annotation, else
/// the installed policy's. Best effort: when neither can be read, the default
/// (the policy's default timeout is hours; a minute's beat is plenty).
pub(crate) async fn idle_timeout(
    cluster: &Cluster,
    global: &GlobalArgs,
    workspace: &str,
) -> Option<std::time::Duration> {
    let api: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let state = match api.get_opt(workspace).await {
        Ok(Some(sts)) => WorkspaceState::from_statefulset(&sts),
        Ok(None) => WorkspaceState::default(),
        Err(e) => {
            tracing::debug!(%workspace, error = %e, "cannot read the workspace for its idle timeout");
            WorkspaceState::default()
        }
    };
    if let Some(annotated) = state.idle_timeout {
        return annotated;
    }
    match effective_policy(Some(cluster), &global.install_namespace, None).await {
        Ok(policy) => policy.lifecycle.idle_timeout,
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the installed policy for the idle timeout");
            LifecyclePolicy::default().idle_timeout
        }
    }
}

async fn exec_in(
    global: &GlobalArgs,
    target: &str,
    command: Vec<String>,
    tty: bool,
) -> Result<i32, Error> {
    let cluster = client::connect(global).await?;
    let (pod, workspace) = resolve_pod(&cluster, target).await?;
    let interval = activity::heartbeat_interval(idle_timeout(&cluster, global, &workspace).await);
    tracing::info!(%pod, ?command, tty, ?interval, "exec");
    let beat = heartbeat(&cluster, &workspace, interval);
    run_with_heartbeat(
        cluster.client.clone(),
        &cluster.namespace,
        &pod,
        command,
        tty,
        beat,
    )
    .await
    .map_err(Error::Other)
}

pub async fn exec(global: &GlobalArgs, args: &ExecArgs) -> Result<i32, Error> {
    let command = if args.command.is_empty() {
        default_shell_command()
    } else {
        args.command.clone()
    };
    let tty = want_tty(args.stdin, args.tty, std::io::stdin().is_terminal());
    exec_in(global, &args.target, command, tty).await
}

pub async fn attach(global: &GlobalArgs, args: &AttachArgs) -> Result<i32, Error> {
    let tty = std::io::stdin().is_terminal();
    exec_in(global, &args.target, default_shell_command(), tty).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tty_choice() {
        assert!(want_tty(false, false, true));
        assert!(!want_tty(false, false, false));
        assert!(want_tty(false, true, false));
        assert!(!want_tty(true, false, true));
        assert!(want_tty(true, true, false));
    }
}
