//! Workspace activity, as the lifecycle controller sees it: an exec session records
//! `devenv.io/last-activity` on the workspace StatefulSet when it starts and then every minute
//! (every quarter of the idle timeout when that is shorter, see [`heartbeat_interval`]), which keeps the
//! workspace from being hibernated and cancels any idle warning; if recording fails and
//! the controller has announced a stop, the session is told.
//!
//! The StatefulSet of a workspace has the workspace's name (see `devenv_shared::workspace`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use devenv_shared::lifecycle::patches;
use devenv_shared::model::keys::FIELD_MANAGER;
use devenv_shared::model::keys::IDLE_WARNING;
use futures::future::{BoxFuture, FutureExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::Client;

/// How often an open exec session records activity.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(60);

/// Consecutive failed heartbeats after which the session is told that activity is not
/// being recorded (a single failure is not worth interrupting the terminal for).
const FAILURES_BEFORE_NOTICE: u32 = 3;

async fn record(
    client: &Client,
    namespace: &str,
    workspace: &str,
) -> Result<StatefulSet, kube::Error> {
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    let patch = patches::activity_patch(Timestamp::now());
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    api.patch(workspace, &params, &Patch::Merge(&patch)).await
}

/// Records use of a workspace now: merge-patches `devenv.io/last-activity` = now on its
/// StatefulSet and removes `devenv.io/idle-warning` (activity cancels a warning).
pub async fn record_activity(
    client: &Client,
    namespace: &str,
    workspace: &str,
) -> Result<(), kube::Error> {
    record(client, namespace, workspace).await.map(|_| ())
}

fn warning_of(sts: &StatefulSet) -> Option<String> {
    sts.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(IDLE_WARNING))
        .cloned()
}

/// What one heartbeat found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Beat {
    /// Activity recorded; the idle warning still on the object, if any (normally none).
    Recorded { warning: Option<String> },
    /// Recording failed; the idle warning read afterwards, if it could be read.
    Failed {
        error: String,
        forbidden: bool,
        warning: Option<String>,
    },
}

/// What the heartbeat has already said, so every notice is given once.
#[derive(Debug, Default)]
struct Notices {
    failures: u32,
    told_failure: bool,
    told_warning: Option<String>,
}

impl Notices {
    /// The messages to show for a heartbeat's outcome.
    fn on_beat(&mut self, workspace: &str, beat: Beat) -> Vec<String> {
        let mut out = Vec::new();
        let warning = match beat {
            Beat::Recorded { warning } => {
                self.failures = 0;
                self.told_failure = false;
                warning
            }
            Beat::Failed {
                error,
                forbidden,
                warning,
            } => {
                self.failures = self.failures.saturating_add(1);
                if !self.told_failure && (forbidden || self.failures >= FAILURES_BEFORE_NOTICE) {
                    self.told_failure = true;
                    out.push(format!(
                        "cannot record activity on workspace {workspace} ({error}); it may be stopped for inactivity"
                    ));
                }
                warning
            }
        };
        match warning {
            Some(stop_at) if self.told_warning.as_deref() != Some(stop_at.as_str()) => {
                out.push(format!(
                    "workspace {workspace} will be stopped at {stop_at} for inactivity"
                ));
                self.told_warning = Some(stop_at);
            }
            Some(_) => {}
            None => self.told_warning = None,
        }
        out
    }
}

/// One heartbeat: records activity; when that fails, reads the idle warning instead.
async fn beat_once(client: &Client, namespace: &str, workspace: &str) -> Beat {
    match record(client, namespace, workspace).await {
        Ok(sts) => Beat::Recorded {
            warning: warning_of(&sts),
        },
        Err(e) => {
            tracing::debug!(%namespace, %workspace, error = %e, "cannot record workspace activity");
            let forbidden = matches!(&e, kube::Error::Api(s) if s.code == 403);
            let api: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
            let warning = api
                .get_opt(workspace)
                .await
                .ok()
                .flatten()
                .and_then(|sts| warning_of(&sts));
            Beat::Failed {
                error: short_error(&e),
                forbidden,
                warning,
            }
        }
    }
}

/// How often a session records activity on a workspace with idle timeout
/// `idle_timeout` (`None` = never stopped): a quarter of the timeout, at most
/// [`DEFAULT_HEARTBEAT`] and at least a second. The controller warns no earlier
/// than half the timeout after the last activity, so at least one beat always
/// lands before a warning, however short the timeout.
pub fn heartbeat_interval(idle_timeout: Option<Duration>) -> Duration {
    match idle_timeout {
        None => DEFAULT_HEARTBEAT,
        Some(t) => (t / 4).clamp(Duration::from_secs(1), DEFAULT_HEARTBEAT),
    }
}

/// The heartbeat as a callback, for `crate::exec::Heartbeat { beat, .. }`, which
/// schedules the beats itself: each call records activity once and passes notices
/// for the user's terminal to `notice` (without a trailing newline; a terminal in
/// raw mode needs `\r\n`):
/// * `workspace X will be stopped at T for inactivity` when an idle warning is out
///   (possible only while heartbeats fail, since each heartbeat removes it), once per
///   warning;
/// * `cannot record activity on workspace X (...); it may be stopped for inactivity`
///   once per streak of failures, when the API refuses (403) or after three failures
///   in a row.
pub fn heartbeat_beat(
    client: Client,
    namespace: &str,
    workspace: &str,
    notice: impl Fn(String) + Send + Sync + 'static,
) -> impl FnMut() -> BoxFuture<'static, ()> + Send + 'static {
    let namespace: Arc<str> = namespace.into();
    let workspace: Arc<str> = workspace.into();
    let notices = Arc::new(Mutex::new(Notices::default()));
    let notice = Arc::new(notice);
    move || {
        let (client, namespace, workspace) = (client.clone(), namespace.clone(), workspace.clone());
        let (notices, notice) = (notices.clone(), notice.clone());
        async move {
            let beat = beat_once(&client, &namespace, &workspace).await;
            let messages = notices
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .on_beat(&workspace, beat);
            for message in messages {
                notice(message);
            }
        }
        .boxed()
    }
}

fn short_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => s.message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_interval_follows_short_idle_timeouts() {
        let s = Duration::from_secs;
        assert_eq!(heartbeat_interval(None), DEFAULT_HEARTBEAT);
        assert_eq!(heartbeat_interval(Some(s(8 * 3600))), DEFAULT_HEARTBEAT);
        assert_eq!(heartbeat_interval(Some(s(120))), s(30));
        assert_eq!(heartbeat_interval(Some(s(30))), Duration::from_millis(7500));
        assert_eq!(heartbeat_interval(Some(s(2))), s(1));
    }

    fn failed(warning: Option<&str>) -> Beat {
        Beat::Failed {
            error: "connection refused".into(),
            forbidden: false,
            warning: warning.map(str::to_string),
        }
    }

    #[test]
    fn a_healthy_heartbeat_says_nothing() {
        let mut n = Notices::default();
        for _ in 0..10 {
            assert!(n
                .on_beat("alice", Beat::Recorded { warning: None })
                .is_empty());
        }
    }

    #[test]
    fn a_warning_seen_while_failing_is_told_once() {
        let mut n = Notices::default();
        assert!(n.on_beat("alice", failed(None)).is_empty());
        assert_eq!(
            n.on_beat("alice", failed(Some("2025-01-01T10:00:00Z"))),
            vec![
                "workspace alice will be stopped at 2025-01-01T10:00:00Z for inactivity"
                    .to_string()
            ]
        );
        // Third failure: the failure itself is now worth telling; the warning is not repeated.
        assert_eq!(
            n.on_beat("alice", failed(Some("2025-01-01T10:00:00Z"))),
            vec!["cannot record activity on workspace alice (connection refused); it may be stopped for inactivity".to_string()]
        );
        assert!(n
            .on_beat("alice", failed(Some("2025-01-01T10:00:00Z")))
            .is_empty());
        // A new warning (a new stop time) is told again.
        assert_eq!(
            n.on_beat("alice", failed(Some("2025-01-01T12:00:00Z")))
                .len(),
            1
        );
    }

    #[test]
    fn recovery_resets_the_notices() {
        let mut n = Notices::default();
        n.on_beat("alice", failed(Some("T1")));
        assert!(n
            .on_beat("alice", Beat::Recorded { warning: None })
            .is_empty());
        assert_eq!(
            n.on_beat("alice", failed(Some("T1"))).len(),
            1,
            "the same warning again after it was cleared"
        );
    }

    #[test]
    fn forbidden_is_told_at_once() {
        let mut n = Notices::default();
        let out = n.on_beat(
            "alice",
            Beat::Failed {
                error: "statefulsets.apps \"alice\" is forbidden".into(),
                forbidden: true,
                warning: None,
            },
        );
        assert_eq!(out.len(), 1);
        assert!(out[0].contains("forbidden"), "{out:?}");
    }
}
