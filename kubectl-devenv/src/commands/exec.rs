//! `kubectl devenv exec` and `attach`: find the pod, then hand over to
//! [`crate::exec`], whose remote exit code becomes ours. While the session is
//! open, a heartbeat records activity on the workspace so the lifecycle
//! controller does not hibernate a workspace in use.

use std::io::IsTerminal;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;

use devenv_shared::keys::WORKSPACE_LABEL;

use crate::activity;
use crate::cli::{AttachArgs, ExecArgs, GlobalArgs};
use crate::client::{self, Cluster};
use crate::error::{Action, Error};
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
            .map_err(cluster.err(Action::new("get", "pods", "Pod").ns(ns).name(candidate)))?;
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

/// Records activity on the workspace; failures (e.g. no patch right) only
/// cost the hibernation bookkeeping, never the session.
/// Records activity on the workspace while the session is open (the lifecycle
/// controller never hibernates a workspace with a live session) and prints the
/// controller's stop warning in the terminal. `\r\n`: the terminal may be in raw mode.
fn heartbeat(cluster: &Cluster, workspace: String) -> Heartbeat {
    Heartbeat {
        interval: activity::DEFAULT_HEARTBEAT,
        beat: Box::new(activity::heartbeat_beat(
            cluster.client.clone(),
            &cluster.namespace,
            &workspace,
            |message| eprint!("\r\n{message}\r\n"),
        )),
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
    tracing::info!(%pod, ?command, tty, "exec");
    let beat = heartbeat(&cluster, workspace);
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
