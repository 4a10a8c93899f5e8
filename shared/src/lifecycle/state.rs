//! What the lifecycle rules look at, read from a workspace StatefulSet's annotations.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::jiff::Timestamp;

use crate::model::duration::parse_optional_duration;
use crate::model::keys::{
    HIBERNATED, IDLE_TIMEOUT, IDLE_WARNING, LAST_ACTIVITY, LAST_BACKUP, STOPPED_AT, TTL,
    WORKSPACE_LABEL,
};
use crate::model::lifecycle_policy::LifecyclePolicy;
use crate::model::time::{add, parse_time};

/// What the lifecycle rules look at, read from a workspace StatefulSet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WorkspaceState {
    /// Workspace name (the `devenv.io/workspace` label, else the StatefulSet name).
    pub workspace: String,
    /// `metadata.creationTimestamp`.
    pub created: Option<Timestamp>,
    /// `spec.replicas` (absent = 1).
    pub replicas: i32,
    /// [`LAST_ACTIVITY`].
    pub last_activity: Option<Timestamp>,
    /// [`IDLE_TIMEOUT`]: `Some(None)` = never, `Some(Some(d))` = after `d`, `None` = the policy's.
    pub idle_timeout: Option<Option<Duration>>,
    /// [`IDLE_WARNING`]: when the announced stop is due.
    pub idle_warning: Option<Timestamp>,
    /// [`HIBERNATED`].
    pub hibernated: Option<Timestamp>,
    /// [`STOPPED_AT`].
    pub stopped_at: Option<Timestamp>,
    /// [`TTL`]: `Some(None)` = forever, `Some(Some(d))` = `d`, `None` = the policy's.
    pub ttl: Option<Option<Duration>>,
    /// [`LAST_BACKUP`]: the last good backup.
    pub last_backup: Option<Timestamp>,
    /// CPU used by the workspace's pods now, when measured (only at decision time).
    pub cpu_millicores: Option<u64>,
    /// Lifecycle annotations present but unreadable (treated as absent).
    pub invalid: Vec<&'static str>,
    /// One message per unreadable annotation, naming key and value.
    pub problems: Vec<String>,
}

/// What `kubectl devenv list` and the metrics call a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkspacePhase {
    /// Replicas > 0, no idle warning.
    Running,
    /// Replicas > 0 and an idle warning is out.
    Warned,
    /// Replicas 0, stopped by a user.
    Stopped,
    /// Replicas 0, stopped by the controller for inactivity.
    Hibernated,
}

impl WorkspacePhase {
    /// Every phase, for metrics that report zeros too.
    pub const ALL: [WorkspacePhase; 4] =
        [Self::Running, Self::Warned, Self::Stopped, Self::Hibernated];

    /// Lower-case name (metric label value).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Warned => "warned",
            Self::Stopped => "stopped",
            Self::Hibernated => "hibernated",
        }
    }
}

impl WorkspaceState {
    /// Reads the lifecycle state of a workspace StatefulSet. Unreadable
    /// annotations are treated as absent and listed in `problems`.
    pub fn from_statefulset(sts: &StatefulSet) -> Self {
        let meta = &sts.metadata;
        let empty = BTreeMap::new();
        let annotations = meta.annotations.as_ref().unwrap_or(&empty);
        let workspace = meta
            .labels
            .as_ref()
            .and_then(|l| l.get(WORKSPACE_LABEL))
            .or(meta.name.as_ref())
            .cloned()
            .unwrap_or_default();
        let mut state = WorkspaceState {
            workspace,
            created: meta.creation_timestamp.as_ref().map(|t| t.0),
            replicas: sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            ..Default::default()
        };
        let mut invalid = Vec::new();
        let mut problems = Vec::new();
        let mut time = |key: &'static str| -> Option<Timestamp> {
            let raw = annotations.get(key)?;
            match parse_time(raw) {
                Ok(t) => Some(t),
                Err(e) => {
                    invalid.push(key);
                    problems.push(format!("annotation {key}: {e}"));
                    None
                }
            }
        };
        state.last_activity = time(LAST_ACTIVITY);
        state.idle_warning = time(IDLE_WARNING);
        state.hibernated = time(HIBERNATED);
        state.stopped_at = time(STOPPED_AT);
        state.last_backup = time(LAST_BACKUP);
        let mut duration = |key: &'static str| -> Option<Option<Duration>> {
            let raw = annotations.get(key)?;
            match parse_optional_duration(raw) {
                Ok(d) => Some(d),
                Err(e) => {
                    invalid.push(key);
                    problems.push(format!("annotation {key}: {e}; using the policy's value"));
                    None
                }
            }
        };
        state.idle_timeout = duration(IDLE_TIMEOUT);
        state.ttl = duration(TTL);
        state.invalid = invalid;
        state.problems = problems;
        state
    }

    /// Running, warned, stopped or hibernated.
    pub fn phase(&self) -> WorkspacePhase {
        match (
            self.replicas > 0,
            self.idle_warning.is_some(),
            self.hibernated.is_some(),
        ) {
            (true, false, _) => WorkspacePhase::Running,
            (true, true, _) => WorkspacePhase::Warned,
            (false, _, false) => WorkspacePhase::Stopped,
            (false, _, true) => WorkspacePhase::Hibernated,
        }
    }

    /// The idle timeout in force: the annotation, else the policy's; `None` = never.
    pub fn effective_idle_timeout(&self, policy: &LifecyclePolicy) -> Option<Duration> {
        self.idle_timeout.unwrap_or(policy.idle_timeout)
    }

    /// The stopped TTL in force: the annotation, else the policy's; `None` = forever.
    pub fn effective_ttl(&self, policy: &LifecyclePolicy) -> Option<Duration> {
        self.ttl.unwrap_or(policy.stopped_ttl)
    }

    /// Latest known use, before the CPU rule: annotation, creation, last start.
    pub fn last_activity(&self) -> Option<Timestamp> {
        [self.last_activity, self.created, self.start_lower_bound()]
            .into_iter()
            .flatten()
            .max()
    }

    /// A running workspace that still carries a stop marker was scaled up by
    /// something other than `kubectl devenv start`, after the marker's time.
    pub(crate) fn start_lower_bound(&self) -> Option<Timestamp> {
        if self.replicas > 0 {
            self.stopped_at.max(self.hibernated)
        } else {
            None
        }
    }

    pub(crate) fn has(&self, key: &'static str) -> bool {
        self.invalid.contains(&key)
            || match key {
                IDLE_WARNING => self.idle_warning.is_some(),
                HIBERNATED => self.hibernated.is_some(),
                STOPPED_AT => self.stopped_at.is_some(),
                _ => false,
            }
    }

    /// The running workspace's idle stop time, if it ever stops: an idle warning
    /// still in force, else last activity + timeout. For `kubectl devenv get`'s
    /// STOPS AT.
    pub fn stops_at(&self, policy: &LifecyclePolicy) -> Option<Timestamp> {
        if self.replicas == 0 {
            return None;
        }
        let timeout = self.effective_idle_timeout(policy)?;
        let deadline = add(self.last_activity().unwrap_or(Timestamp::MAX), timeout);
        match self.idle_warning {
            Some(stop_at) if deadline <= stop_at => Some(stop_at),
            _ => Some(deadline),
        }
    }
}

impl WorkspaceState {
    /// When a stopped workspace will be deleted for its TTL (the rule
    /// [`crate::lifecycle::decide::decide`] applies); `None` while it runs, without a TTL, or before the
    /// controller has recorded since when it is stopped. For `kubectl devenv get`.
    pub fn expires_at(&self, policy: &LifecyclePolicy) -> Option<Timestamp> {
        if self.replicas > 0 {
            return None;
        }
        let ttl = self.effective_ttl(policy)?;
        let since = self.stopped_at.or(self.hibernated)?;
        Some(add(since, ttl))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::test_support::*;

    #[test]
    fn state_from_statefulset() {
        let s = sts(
            Some(2),
            &[
                (LAST_ACTIVITY, "2025-01-01T05:00:00Z"),
                (IDLE_TIMEOUT, "2h"),
                (IDLE_WARNING, "2025-01-01T07:00:00Z"),
                (TTL, "0"),
            ],
        );
        let ws = WorkspaceState::from_statefulset(&s);
        assert_eq!(ws.workspace, "alice");
        assert_eq!(ws.replicas, 2);
        assert_eq!(ws.created, Some(t(CREATED)));
        assert_eq!(ws.last_activity, Some(t("2025-01-01T05:00:00Z")));
        assert_eq!(ws.idle_timeout, Some(Some(hours(2))));
        assert_eq!(ws.idle_warning, Some(t("2025-01-01T07:00:00Z")));
        assert_eq!(ws.ttl, Some(None));
        assert!(ws.problems.is_empty());
        assert_eq!(ws.phase(), WorkspacePhase::Warned);
        assert_eq!(ws.stops_at(&policy()), Some(t("2025-01-01T07:00:00Z")));
        // replicas absent = 1
        assert_eq!(
            WorkspaceState::from_statefulset(&sts(None, &[])).replicas,
            1
        );
    }

    #[test]
    fn unreadable_annotations_are_reported_and_ignored() {
        let s = sts(
            Some(1),
            &[(LAST_ACTIVITY, "yesterday"), (IDLE_TIMEOUT, "2 hours")],
        );
        let ws = WorkspaceState::from_statefulset(&s);
        assert_eq!(ws.last_activity, None);
        assert_eq!(ws.idle_timeout, None);
        assert_eq!(ws.invalid, vec![LAST_ACTIVITY, IDLE_TIMEOUT]);
        assert!(
            ws.problems[0].contains("\"yesterday\""),
            "{:?}",
            ws.problems
        );
        assert!(ws.problems[1].contains("\"2 hours\""), "{:?}", ws.problems);
    }

    #[test]
    fn phases() {
        let ws = |r, warn: bool, hib: bool| WorkspaceState {
            replicas: r,
            idle_warning: warn.then(|| t(CREATED)),
            hibernated: hib.then(|| t(CREATED)),
            ..Default::default()
        };
        assert_eq!(ws(1, false, false).phase(), WorkspacePhase::Running);
        assert_eq!(ws(1, true, false).phase(), WorkspacePhase::Warned);
        assert_eq!(ws(0, false, false).phase(), WorkspacePhase::Stopped);
        assert_eq!(ws(0, false, true).phase(), WorkspacePhase::Hibernated);
    }

    #[test]
    fn stops_at_for_get() {
        let p = policy();
        assert_eq!(running().stops_at(&p), Some(t("2025-01-01T01:00:00Z")));
        let never = WorkspaceState {
            idle_timeout: Some(None),
            ..running()
        };
        assert_eq!(never.stops_at(&p), None);
        assert_eq!(stopped(CREATED).stops_at(&p), None);
    }

    #[test]
    fn expires_at_for_get() {
        let p = policy();
        // No TTL in the policy: never.
        assert_eq!(stopped(CREATED).expires_at(&p), None);
        let with_ttl = LifecyclePolicy {
            stopped_ttl: Some(hours(24)),
            ..policy()
        };
        assert_eq!(
            stopped(CREATED).expires_at(&with_ttl),
            Some(t("2025-01-02T00:00:00Z"))
        );
        // A hibernated workspace counts from its hibernation.
        let hibernated = WorkspaceState {
            stopped_at: None,
            hibernated: Some(t("2025-01-01T05:00:00Z")),
            ..stopped(CREATED)
        };
        assert_eq!(
            hibernated.expires_at(&with_ttl),
            Some(t("2025-01-02T05:00:00Z"))
        );
        // The annotation wins over the policy; `0` = forever.
        let forever = WorkspaceState {
            ttl: Some(None),
            ..stopped(CREATED)
        };
        assert_eq!(forever.expires_at(&with_ttl), None);
        // Running workspaces and stops not yet recorded do not expire.
        assert_eq!(running().expires_at(&with_ttl), None);
        let unrecorded = WorkspaceState {
            stopped_at: None,
            ..stopped(CREATED)
        };
        assert_eq!(unrecorded.expires_at(&with_ttl), None);
    }
}
