//! Scheduled backups (`backup.every`, `backup.keep` of the policy): when a workspace's next
//! backup is due, and which of its scheduled backups pruning deletes. Pure; the lifecycle
//! controller (`devenv-webhook lifecycle`) takes the backups with the plugin's engine and
//! deletes what [`prune`] names.
//!
//! * A workspace's last good backup is its [`LAST_BACKUP`] annotation, written by every
//!   backup that succeeded (scheduled or not, so a manual backup also counts).
//! * The next is due `every` after it, or `every` after the workspace was made when it has
//!   none. A time in the future (a clock ahead, a hand-written annotation) is no backup at
//!   all: the next is due now, so an annotation cannot put the schedule off. (The
//!   controller also never backs a workspace up twice within a period of its own last one.)
//! * A stopped workspace backed up after it stopped is not backed up again: its volumes are
//!   mounted by nothing and cannot have changed.
//! * Only scheduled backups are pruned, newest first kept; the newest good backup of the
//!   workspace is never deleted, and a digest any kept backup shares is never deleted.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

use crate::build::backup::Reason;
use crate::lifecycle::state::WorkspaceState;
use crate::model::keys::{LAST_BACKUP, LAST_BACKUP_REF};
use crate::model::time::{add, format_time};

/// When a workspace's next scheduled backup is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextBackup {
    /// Due at this time (now or earlier: due now).
    At(Timestamp),
    /// Stopped, and backed up since it stopped: the next is due once it runs again.
    WhenStarted,
}

/// The next scheduled backup of a workspace under `every`.
pub fn next_backup(state: &WorkspaceState, every: Duration, now: Timestamp) -> NextBackup {
    if state.replicas == 0 {
        if let (Some(last), Some(stopped)) = (state.last_backup, state.stopped_at) {
            if last >= stopped {
                return NextBackup::WhenStarted;
            }
        }
    }
    match state.last_backup {
        Some(last) if last <= now => NextBackup::At(add(last, every)),
        // Recorded in the future: not a backup anyone can count on.
        Some(_) => NextBackup::At(now),
        None => NextBackup::At(add(state.created.map_or(now, |c| c.min(now)), every)),
    }
}

/// Whether the workspace's scheduled backup is due at `now`.
pub fn is_due(state: &WorkspaceState, every: Duration, now: Timestamp) -> bool {
    matches!(next_backup(state, every, now), NextBackup::At(t) if t <= now)
}

/// The merge patch that records a good backup on the workspace StatefulSet.
pub fn record_patch(taken: Timestamp, reference: &str) -> Value {
    json!({"metadata": {"annotations": {
        LAST_BACKUP: format_time(taken),
        LAST_BACKUP_REF: reference,
    }}})
}

/// One backup of the workspace found in its repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub tag: String,
    /// The manifest digest: what a delete removes (every tag on it).
    pub digest: String,
    /// RFC 3339, UTC (sorts as text).
    pub created: String,
    pub reason: Reason,
}

/// The scheduled backups to delete so that `keep` remain, oldest first. `stored` are one
/// workspace's backups (any reason); `keep` below 1 is taken as 1.
pub fn prune(stored: &[Stored], keep: u32) -> Vec<&Stored> {
    let keep = usize::try_from(keep.max(1)).unwrap_or(usize::MAX);
    let mut newest_first: Vec<&Stored> = stored.iter().collect();
    newest_first.sort_by(|a, b| (&b.created, &b.tag).cmp(&(&a.created, &a.tag)));
    let newest = newest_first.first().map(|s| s.digest.clone());
    let mut scheduled = 0usize;
    let mut doomed = Vec::new();
    let mut kept: BTreeSet<&str> = BTreeSet::new();
    for s in &newest_first {
        if s.reason == Reason::Scheduled {
            scheduled += 1;
            if scheduled > keep && Some(&s.digest) != newest.as_ref() {
                doomed.push(*s);
                continue;
            }
        }
        kept.insert(s.digest.as_str());
    }
    doomed.retain(|s| !kept.contains(s.digest.as_str()));
    doomed.reverse();
    doomed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap_or(Timestamp::UNIX_EPOCH)
    }

    const DAY: Duration = Duration::from_secs(86_400);

    fn state(replicas: i32) -> WorkspaceState {
        WorkspaceState {
            workspace: "alice".into(),
            created: Some(at("2026-12-01T00:00:00Z")),
            replicas,
            ..Default::default()
        }
    }

    #[test]
    fn the_first_backup_is_due_a_period_after_creation_then_a_period_after_the_last() {
        let s = state(1);
        assert_eq!(
            next_backup(&s, DAY, at("2026-12-01T12:00:00Z")),
            NextBackup::At(at("2026-12-02T00:00:00Z"))
        );
        assert!(!is_due(&s, DAY, at("2026-12-01T23:59:59Z")));
        assert!(is_due(&s, DAY, at("2026-12-02T00:00:00Z")));
        let backed_up = WorkspaceState {
            last_backup: Some(at("2026-12-03T06:00:00Z")),
            ..s
        };
        assert_eq!(
            next_backup(&backed_up, DAY, at("2026-12-03T07:00:00Z")),
            NextBackup::At(at("2026-12-04T06:00:00Z"))
        );
    }

    #[test]
    fn a_last_backup_in_the_future_is_no_backup_and_the_next_is_due_now() {
        let forged = WorkspaceState {
            last_backup: Some(at("2030-01-01T00:00:00Z")),
            ..state(1)
        };
        let now = at("2026-12-05T00:00:00Z");
        assert_eq!(next_backup(&forged, DAY, now), NextBackup::At(now));
        assert!(is_due(&forged, DAY, now));
    }

    #[test]
    fn a_stopped_workspace_backed_up_since_it_stopped_waits_for_its_start() {
        let now = at("2026-12-10T00:00:00Z");
        let stopped = WorkspaceState {
            stopped_at: Some(at("2026-12-02T00:00:00Z")),
            ..state(0)
        };
        // Never backed up since the stop: due.
        assert!(is_due(&stopped, DAY, now));
        let after = WorkspaceState {
            last_backup: Some(at("2026-12-02T00:00:01Z")),
            ..stopped.clone()
        };
        assert_eq!(next_backup(&after, DAY, now), NextBackup::WhenStarted);
        assert!(!is_due(&after, DAY, now));
        // Running again (replicas 1, the stop marker left behind): due on the period.
        let started = WorkspaceState {
            replicas: 1,
            ..after
        };
        assert!(is_due(&started, DAY, now));
    }

    fn stored(tag: &str, digest: &str, created: &str, reason: Reason) -> Stored {
        Stored {
            tag: tag.into(),
            digest: digest.into(),
            created: created.into(),
            reason,
        }
    }

    #[test]
    fn pruning_keeps_the_newest_scheduled_and_every_other_kind() {
        let all = vec![
            stored("s1", "d1", "2026-12-01T00:00:00Z", Reason::Scheduled),
            stored("m1", "dm", "2026-12-01T12:00:00Z", Reason::Manual),
            stored("s2", "d2", "2026-12-02T00:00:00Z", Reason::Scheduled),
            stored("s3", "d3", "2026-12-03T00:00:00Z", Reason::Scheduled),
            stored("p1", "dp", "2026-12-03T12:00:00Z", Reason::PreRestore),
            stored("s4", "d4", "2026-12-04T00:00:00Z", Reason::Scheduled),
        ];
        let tags = |v: Vec<&Stored>| v.into_iter().map(|s| s.tag.clone()).collect::<Vec<_>>();
        assert_eq!(tags(prune(&all, 2)), ["s1", "s2"]);
        assert_eq!(tags(prune(&all, 4)), Vec::<String>::new());
        // keep 0 is taken as 1: the newest scheduled backup stays.
        assert_eq!(tags(prune(&all, 0)), ["s1", "s2", "s3"]);
        assert!(prune(&[], 1).is_empty());
    }

    #[test]
    fn pruning_never_deletes_a_digest_a_kept_backup_shares() {
        let all = vec![
            stored("s1", "same", "2026-12-01T00:00:00Z", Reason::Scheduled),
            stored("mine", "same", "2026-12-01T00:00:00Z", Reason::Manual),
            stored("s2", "d2", "2026-12-02T00:00:00Z", Reason::Scheduled),
        ];
        assert!(prune(&all, 1).is_empty());
    }

    #[test]
    fn the_record_names_time_and_reference() {
        let p = record_patch(at("2026-12-04T10:00:00.5Z"), "reg/b@sha256:ab");
        assert_eq!(
            p["metadata"]["annotations"][LAST_BACKUP],
            "2026-12-04T10:00:00Z"
        );
        assert_eq!(
            p["metadata"]["annotations"][LAST_BACKUP_REF],
            "reg/b@sha256:ab"
        );
    }
}
