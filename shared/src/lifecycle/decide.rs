//! The lifecycle decision for one workspace at `now` ([`decide`]): pure, see the rules in
//! [`crate::lifecycle`].

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::lifecycle::state::WorkspaceState;
use crate::model::keys::{HIBERNATED, IDLE_WARNING, LAST_ACTIVITY, STOPPED_AT};
use crate::model::lifecycle_policy::LifecyclePolicy;
use crate::model::time::{add, ceil_second, format_time, sub, until};

/// What the controller should do with a workspace now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing now; look again after `next_check` (`None`: only when the workspace changes).
    Nothing {
        /// Time until the next decision is due.
        next_check: Option<Duration>,
    },
    /// Record [`IDLE_WARNING`] = `stop_at` ([`crate::lifecycle::patches::warn_patch`]) and emit an `IdleWarning` event.
    Warn {
        /// When the workspace will be stopped unless used.
        stop_at: Timestamp,
    },
    /// Scale to zero, marking it hibernated ([`crate::lifecycle::patches::hibernate_patch`]); emit `Hibernated`.
    Hibernate,
    /// Delete the StatefulSet (and, with `purge`, its claims); emit `Expired`.
    Expire {
        /// Also delete the workspace's volume claims.
        purge: bool,
    },
    /// Bring the lifecycle annotations in line with what was observed
    /// ([`crate::lifecycle::patches::annotate_patch`]): record activity the controller saw (CPU busy, a start
    /// by other means), remove a warning cancelled by activity or stop markers
    /// of a running workspace, start the TTL clock of a workspace found stopped
    /// without a stop time. The resulting change triggers the next decision.
    Annotate {
        /// Annotations to set.
        set: Vec<(&'static str, String)>,
        /// Annotations to remove.
        remove: Vec<&'static str>,
    },
}

/// The lifecycle decision for one workspace at `now`. Pure; see the module docs for the rules.
pub fn decide(now: Timestamp, ws: &WorkspaceState, policy: &LifecyclePolicy) -> Step {
    if ws.replicas <= 0 {
        decide_stopped(now, ws, policy)
    } else {
        decide_running(now, ws, policy)
    }
}

fn decide_stopped(now: Timestamp, ws: &WorkspaceState, policy: &LifecyclePolicy) -> Step {
    let ttl = ws.effective_ttl(policy);
    let since = ws.stopped_at.or(ws.hibernated);
    if let (Some(ttl), Some(since)) = (ttl, since) {
        if now >= add(since, ttl) {
            return Step::Expire {
                purge: policy.purge_on_expiry,
            };
        }
    }
    let mut set = Vec::new();
    let mut remove = Vec::new();
    if ws.has(IDLE_WARNING) {
        remove.push(IDLE_WARNING);
    }
    if ttl.is_some() && since.is_none() {
        // Stopped by other means than `stop`: the TTL runs from now, never from before.
        set.push((STOPPED_AT, format_time(now)));
    }
    if !set.is_empty() || !remove.is_empty() {
        return Step::Annotate { set, remove };
    }
    match (ttl, since) {
        (Some(ttl), Some(since)) => Step::Nothing {
            next_check: Some(until(now, add(since, ttl))),
        },
        _ => Step::Nothing { next_check: None },
    }
}

fn decide_running(now: Timestamp, ws: &WorkspaceState, policy: &LifecyclePolicy) -> Step {
    let cpu_busy = matches!(
        (policy.cpu_active_millicores, ws.cpu_millicores),
        (Some(threshold), Some(used)) if used >= threshold
    );
    // Unknown everything (no creation time, no annotation): count it as used now.
    let mut activity = ws.last_activity().unwrap_or(now);
    if cpu_busy {
        activity = activity.max(now);
    }
    let timeout = ws.effective_idle_timeout(policy);

    let mut set = Vec::new();
    let mut remove = Vec::new();
    // Stop markers on a running workspace are stale; keep their information as activity.
    for key in [STOPPED_AT, HIBERNATED] {
        if ws.has(key) {
            remove.push(key);
        }
    }
    let recorded = ws.last_activity.unwrap_or(Timestamp::MIN);
    if activity > recorded && (cpu_busy || ws.start_lower_bound().is_some_and(|b| b > recorded)) {
        set.push((LAST_ACTIVITY, format_time(activity)));
    }

    let Some(timeout) = timeout else {
        if ws.has(IDLE_WARNING) {
            remove.push(IDLE_WARNING);
        }
        return annotate_or(set, remove, Step::Nothing { next_check: None });
    };
    let lead = policy.lead(timeout);
    let deadline = add(activity, timeout);
    let standing = ws.idle_warning.filter(|stop_at| deadline <= *stop_at);

    if standing.is_none() && ws.has(IDLE_WARNING) {
        // Cancelled by activity since it was issued (or unreadable).
        remove.push(IDLE_WARNING);
    }
    if !set.is_empty() || !remove.is_empty() {
        return Step::Annotate { set, remove };
    }
    match standing {
        Some(stop_at) if now >= stop_at => Step::Hibernate,
        Some(stop_at) => Step::Nothing {
            next_check: Some(until(now, stop_at)),
        },
        None => {
            let warn_at = sub(deadline, lead);
            if now >= warn_at {
                Step::Warn {
                    stop_at: ceil_second(add(now, lead)),
                }
            } else {
                Step::Nothing {
                    next_check: Some(until(now, warn_at)),
                }
            }
        }
    }
}

fn annotate_or(
    set: Vec<(&'static str, String)>,
    remove: Vec<&'static str>,
    otherwise: Step,
) -> Step {
    if set.is_empty() && remove.is_empty() {
        otherwise
    } else {
        Step::Annotate { set, remove }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::state::WorkspacePhase;
    use crate::lifecycle::test_support::*;

    #[test]
    fn decide_table() {
        struct Case {
            name: &'static str,
            now: &'static str,
            ws: WorkspaceState,
            policy: LifecyclePolicy,
            want: Step,
        }
        let p = policy();
        let cases = vec![
            Case {
                name: "fresh workspace: next check at warn time (created + 1h - 10m)",
                now: "2025-01-01T00:10:00Z",
                ws: running(),
                policy: p.clone(),
                want: nothing(Some(mins(40))),
            },
            Case {
                name: "warn time reached: warn, stop 10m later",
                now: "2025-01-01T00:50:00Z",
                ws: running(),
                policy: p.clone(),
                want: warn("2025-01-01T01:00:00Z"),
            },
            Case {
                name: "idle deadline long past and no warning (controller was down): warn now, never stop now",
                now: "2025-01-03T00:00:00Z",
                ws: running(),
                policy: p.clone(),
                want: warn("2025-01-03T00:10:00Z"),
            },
            Case {
                name: "warning standing, stop not yet due: check at stop time",
                now: "2025-01-01T00:55:00Z",
                ws: WorkspaceState {
                    idle_warning: Some(t("2025-01-01T01:00:00Z")),
                    ..running()
                },
                policy: p.clone(),
                want: nothing(Some(mins(5))),
            },
            Case {
                name: "warning standing, stop due: hibernate",
                now: "2025-01-01T01:00:00Z",
                ws: WorkspaceState {
                    idle_warning: Some(t("2025-01-01T01:00:00Z")),
                    ..running()
                },
                policy: p.clone(),
                want: Step::Hibernate,
            },
            Case {
                name: "warning standing, controller was down past the stop time: hibernate",
                now: "2025-01-05T00:00:00Z",
                ws: WorkspaceState {
                    idle_warning: Some(t("2025-01-01T01:00:00Z")),
                    ..running()
                },
                policy: p.clone(),
                want: Step::Hibernate,
            },
            Case {
                name: "activity after the warning cancels it",
                now: "2025-01-01T00:58:00Z",
                ws: WorkspaceState {
                    idle_warning: Some(t("2025-01-01T01:00:00Z")),
                    last_activity: Some(t("2025-01-01T00:57:00Z")),
                    ..running()
                },
                policy: p.clone(),
                want: annotate(&[], &[IDLE_WARNING]),
            },
            Case {
                name: "activity after the warning cancels it even past the stop time",
                now: "2025-01-01T02:00:00Z",
                ws: WorkspaceState {
                    idle_warning: Some(t("2025-01-01T01:00:00Z")),
                    last_activity: Some(t("2025-01-01T00:59:00Z")),
                    ..running()
                },
                policy: p.clone(),
                want: annotate(&[], &[IDLE_WARNING]),
            },
            Case {
                name: "after a cancelled warning, a new one when idle again",
                now: "2025-01-01T01:50:00Z",
                ws: WorkspaceState {
                    last_activity: Some(t("2025-01-01T01:00:00Z")),
                    ..running()
                },
                policy: p.clone(),
                want: warn("2025-01-01T02:00:00Z"),
            },
            Case {
                name: "stale warning replaced directly when a new warning is due? no: removed first",
                now: "2025-01-01T03:00:00Z",
                ws: WorkspaceState {
                    idle_warning: Some(t("2025-01-01T01:00:00Z")),
                    last_activity: Some(t("2025-01-01T00:59:00Z")),
                    ..running()
                },
                policy: p.clone(),
                want: annotate(&[], &[IDLE_WARNING]),
            },
            Case {
                name: "idle timeout 0 in the policy: never",
                now: "2026-01-01T00:00:00Z",
                ws: running(),
                policy: LifecyclePolicy {
                    idle_timeout: None,
                    ..p.clone()
                },
                want: nothing(None),
            },
            Case {
                name: "idle timeout 0 on the workspace overrides the policy: never",
                now: "2026-01-01T00:00:00Z",
                ws: WorkspaceState {
                    idle_timeout: Some(None),
                    ..running()
                },
                policy: p.clone(),
                want: nothing(None),
            },
            Case {
                name: "never: an old warning is removed",
                now: "2026-01-01T00:00:00Z",
                ws: WorkspaceState {
                    idle_timeout: Some(None),
                    idle_warning: Some(t("2025-01-01T01:00:00Z")),
                    ..running()
                },
                policy: p.clone(),
                want: annotate(&[], &[IDLE_WARNING]),
            },
            Case {
                name: "workspace timeout overrides the policy's (longer)",
                now: "2025-01-01T00:50:00Z",
                ws: WorkspaceState {
                    idle_timeout: Some(Some(hours(2))),
                    ..running()
                },
                policy: p.clone(),
                want: nothing(Some(mins(60))),
            },
            Case {
                name: "workspace timeout overrides a 'never' policy",
                now: "2025-01-01T00:25:00Z",
                ws: WorkspaceState {
                    idle_timeout: Some(Some(mins(30))),
                    ..running()
                },
                policy: LifecyclePolicy {
                    idle_timeout: None,
                    ..p.clone()
                },
                want: warn("2025-01-01T00:35:00Z"),
            },
            Case {
                name: "short timeout: the lead is half of it",
                now: "2025-01-01T00:00:15Z",
                ws: WorkspaceState {
                    idle_timeout: Some(Some(Duration::from_secs(30))),
                    ..running()
                },
                policy: p.clone(),
                want: warn("2025-01-01T00:00:30Z"),
            },
            Case {
                name: "last activity later than creation counts",
                now: "2025-01-01T01:30:00Z",
                ws: WorkspaceState {
                    last_activity: Some(t("2025-01-01T01:00:00Z")),
                    ..running()
                },
                policy: p.clone(),
                want: nothing(Some(mins(20))),
            },
            Case {
                name: "a last-activity older than creation does not count",
                now: "2025-01-01T00:49:00Z",
                ws: WorkspaceState {
                    last_activity: Some(t("2024-06-01T00:00:00Z")),
                    ..running()
                },
                policy: p.clone(),
                want: nothing(Some(mins(1))),
            },
            Case {
                name: "longer timeout in the policy cancels an earlier warning",
                now: "2025-01-01T00:55:00Z",
                ws: WorkspaceState {
                    idle_warning: Some(t("2025-01-01T01:00:00Z")),
                    ..running()
                },
                policy: LifecyclePolicy {
                    idle_timeout: Some(hours(4)),
                    ..p.clone()
                },
                want: annotate(&[], &[IDLE_WARNING]),
            },
            Case {
                name: "shorter timeout in the policy keeps the announced stop time",
                now: "2025-01-01T00:55:00Z",
                ws: WorkspaceState {
                    idle_warning: Some(t("2025-01-01T01:00:00Z")),
                    ..running()
                },
                policy: LifecyclePolicy {
                    idle_timeout: Some(mins(20)),
                    ..p.clone()
                },
                want: nothing(Some(mins(5))),
            },
            Case {
                name: "CPU busy at decision time counts as activity now, recorded",
                now: "2025-01-01T00:50:00Z",
                ws: WorkspaceState {
                    cpu_millicores: Some(500),
                    ..running()
                },
                policy: LifecyclePolicy {
                    cpu_active_millicores: Some(200),
                    ..p.clone()
                },
                want: annotate(&[(LAST_ACTIVITY, "2025-01-01T00:50:00Z")], &[]),
            },
            Case {
                name: "CPU busy cancels a standing warning",
                now: "2025-01-01T01:00:00Z",
                ws: WorkspaceState {
                    cpu_millicores: Some(200),
                    idle_warning: Some(t("2025-01-01T01:00:00Z")),
                    ..running()
                },
                policy: LifecyclePolicy {
                    cpu_active_millicores: Some(200),
                    ..p.clone()
                },
                want: annotate(&[(LAST_ACTIVITY, "2025-01-01T01:00:00Z")], &[IDLE_WARNING]),
            },
            Case {
                name: "CPU below the threshold is idle",
                now: "2025-01-01T01:00:00Z",
                ws: WorkspaceState {
                    cpu_millicores: Some(199),
                    idle_warning: Some(t("2025-01-01T01:00:00Z")),
                    ..running()
                },
                policy: LifecyclePolicy {
                    cpu_active_millicores: Some(200),
                    ..p.clone()
                },
                want: Step::Hibernate,
            },
            Case {
                name: "CPU measured but the rule is off",
                now: "2025-01-01T00:50:00Z",
                ws: WorkspaceState {
                    cpu_millicores: Some(4000),
                    ..running()
                },
                policy: p.clone(),
                want: warn("2025-01-01T01:00:00Z"),
            },
            Case {
                name: "running with stop markers (scaled up by hand): markers removed, start kept as activity",
                now: "2025-01-02T00:10:00Z",
                ws: WorkspaceState {
                    stopped_at: Some(t("2025-01-02T00:00:00Z")),
                    hibernated: Some(t("2025-01-02T00:00:00Z")),
                    idle_warning: Some(t("2025-01-01T01:00:00Z")),
                    last_activity: Some(t("2025-01-01T00:30:00Z")),
                    ..running()
                },
                policy: p.clone(),
                want: annotate(
                    &[(LAST_ACTIVITY, "2025-01-02T00:00:00Z")],
                    &[STOPPED_AT, HIBERNATED, IDLE_WARNING],
                ),
            },
            Case {
                name: "unreadable warning on a running workspace: removed",
                now: "2025-01-01T00:10:00Z",
                ws: WorkspaceState {
                    invalid: vec![IDLE_WARNING],
                    ..running()
                },
                policy: p.clone(),
                want: annotate(&[], &[IDLE_WARNING]),
            },
            Case {
                name: "no creation time and no activity: counted as active now",
                now: "2025-01-01T00:10:00Z",
                ws: WorkspaceState {
                    created: None,
                    ..running()
                },
                policy: p.clone(),
                want: nothing(Some(mins(50))),
            },
            // ---- stopped workspaces ----
            Case {
                name: "stopped, TTL off (default): nothing, ever",
                now: "2030-01-01T00:00:00Z",
                ws: stopped("2025-01-01T02:00:00Z"),
                policy: p.clone(),
                want: nothing(None),
            },
            Case {
                name: "stopped, within TTL: check at expiry",
                now: "2025-01-02T02:00:00Z",
                ws: stopped("2025-01-01T02:00:00Z"),
                policy: LifecyclePolicy {
                    stopped_ttl: Some(hours(48)),
                    ..p.clone()
                },
                want: nothing(Some(hours(24))),
            },
            Case {
                name: "stopped longer than TTL: expire, claims kept",
                now: "2025-01-03T02:00:00Z",
                ws: stopped("2025-01-01T02:00:00Z"),
                policy: LifecyclePolicy {
                    stopped_ttl: Some(hours(48)),
                    ..p.clone()
                },
                want: Step::Expire { purge: false },
            },
            Case {
                name: "purge only when the policy says so",
                now: "2025-01-03T02:00:00Z",
                ws: stopped("2025-01-01T02:00:00Z"),
                policy: LifecyclePolicy {
                    stopped_ttl: Some(hours(48)),
                    purge_on_expiry: true,
                    ..p.clone()
                },
                want: Step::Expire { purge: true },
            },
            Case {
                name: "hibernated longer than TTL: expire",
                now: "2025-01-03T02:00:00Z",
                ws: WorkspaceState {
                    replicas: 0,
                    hibernated: Some(t("2025-01-01T02:00:00Z")),
                    ..running()
                },
                policy: LifecyclePolicy {
                    stopped_ttl: Some(hours(1)),
                    ..p.clone()
                },
                want: Step::Expire { purge: false },
            },
            Case {
                name: "TTL only applies to stopped workspaces: an old running one is warned, not expired",
                now: "2030-01-01T00:00:00Z",
                ws: running(),
                policy: LifecyclePolicy {
                    stopped_ttl: Some(hours(1)),
                    purge_on_expiry: true,
                    ..p.clone()
                },
                want: warn("2030-01-01T00:10:00Z"),
            },
            Case {
                name: "TTL 0 on the workspace keeps it forever",
                now: "2030-01-01T00:00:00Z",
                ws: WorkspaceState {
                    ttl: Some(None),
                    ..stopped("2025-01-01T02:00:00Z")
                },
                policy: LifecyclePolicy {
                    stopped_ttl: Some(hours(1)),
                    ..p.clone()
                },
                want: nothing(None),
            },
            Case {
                name: "TTL on the workspace overrides the policy's",
                now: "2025-01-01T03:00:00Z",
                ws: WorkspaceState {
                    ttl: Some(Some(mins(30))),
                    ..stopped("2025-01-01T02:00:00Z")
                },
                policy: p.clone(),
                want: Step::Expire { purge: false },
            },
            Case {
                name: "stopped without a stop time, TTL on: the clock starts now",
                now: "2025-01-05T00:00:00Z",
                ws: WorkspaceState {
                    replicas: 0,
                    ..running()
                },
                policy: LifecyclePolicy {
                    stopped_ttl: Some(hours(1)),
                    ..p.clone()
                },
                want: annotate(&[(STOPPED_AT, "2025-01-05T00:00:00Z")], &[]),
            },
            Case {
                name: "stopped without a stop time, TTL off: nothing to write",
                now: "2025-01-05T00:00:00Z",
                ws: WorkspaceState {
                    replicas: 0,
                    ..running()
                },
                policy: p.clone(),
                want: nothing(None),
            },
            Case {
                name: "stopped with a leftover warning: removed",
                now: "2025-01-05T00:00:00Z",
                ws: WorkspaceState {
                    idle_warning: Some(t("2025-01-01T01:00:00Z")),
                    ..stopped("2025-01-01T00:30:00Z")
                },
                policy: p.clone(),
                want: annotate(&[], &[IDLE_WARNING]),
            },
            Case {
                name: "stopped: never hibernated again, even long idle",
                now: "2025-06-01T00:00:00Z",
                ws: WorkspaceState {
                    idle_warning: None,
                    ..stopped("2025-01-01T00:30:00Z")
                },
                policy: p.clone(),
                want: nothing(None),
            },
        ];
        for case in cases {
            let got = decide(t(case.now), &case.ws, &case.policy);
            assert_eq!(got, case.want, "case: {}", case.name);
        }
    }

    /// Property: whatever the state, a running workspace is hibernated only if
    /// it carries a warning issued at least `lead` before now and still standing.
    #[test]
    fn never_stops_without_a_standing_warning() {
        let p = policy();
        let base = t("2025-01-01T00:00:00Z");
        let offsets = [
            0u64, 1, 299, 300, 599, 600, 601, 3000, 3599, 3600, 3601, 7200, 86_400,
        ];
        for now_off in offsets {
            for act_off in [None, Some(0u64), Some(600), Some(3000), Some(3600)] {
                for warn_off in [None, Some(600u64), Some(3600), Some(4200), Some(90_000)] {
                    let ws = WorkspaceState {
                        last_activity: act_off.map(|o| add(base, Duration::from_secs(o))),
                        idle_warning: warn_off.map(|o| add(base, Duration::from_secs(o))),
                        ..running()
                    };
                    let now = add(base, Duration::from_secs(now_off));
                    if decide(now, &ws, &p) == Step::Hibernate {
                        let stop_at = ws.idle_warning.unwrap();
                        assert!(now >= stop_at);
                        let deadline = add(ws.last_activity().unwrap(), hours(1));
                        assert!(
                            deadline <= stop_at,
                            "warning cancelled by activity yet stopped"
                        );
                    }
                }
            }
        }
    }

    /// Simulates the controller: applying each decision to the state until it
    /// settles, from creation on, checking the whole story.
    #[test]
    fn simulated_controller_warns_then_hibernates() {
        let p = policy();
        let mut now = t(CREATED);
        let mut ws = running();
        let mut warned_at = None;
        let mut hibernated_at = None;
        for _ in 0..20 {
            match decide(now, &ws, &p) {
                Step::Nothing {
                    next_check: Some(d),
                } => now = add(now, d),
                Step::Nothing { next_check: None } => break,
                Step::Warn { stop_at } => {
                    warned_at = Some(now);
                    ws.idle_warning = Some(stop_at);
                }
                Step::Hibernate => {
                    hibernated_at = Some(now);
                    ws.replicas = 0;
                    ws.idle_warning = None;
                    ws.hibernated = Some(now);
                    ws.stopped_at = Some(now);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(warned_at, Some(t("2025-01-01T00:50:00Z")));
        assert_eq!(hibernated_at, Some(t("2025-01-01T01:00:00Z")));
        assert_eq!(ws.phase(), WorkspacePhase::Hibernated);
    }

    #[test]
    fn warn_stop_time_is_rounded_up_to_a_second() {
        let now = t("2025-01-01T00:50:00.250Z");
        assert_eq!(
            decide(now, &running(), &policy()),
            warn("2025-01-01T01:00:01Z")
        );
    }
}
