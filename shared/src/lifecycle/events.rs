//! The Events the lifecycle controller publishes on a workspace StatefulSet, as pure
//! functions of what it decided: `kubectl describe` and `kubectl devenv get` show these
//! texts to the workspace's user, so they say what happened and what to do.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::model::duration::format_duration;
use crate::model::keys::IDLE_TIMEOUT;
use crate::model::time::format_time;

/// Event reasons emitted by the controller.
pub const REASON_IDLE_WARNING: &str = "IdleWarning";
/// See [`REASON_IDLE_WARNING`].
pub const REASON_HIBERNATED: &str = "Hibernated";
/// See [`REASON_IDLE_WARNING`].
pub const REASON_EXPIRED: &str = "Expired";
/// A scheduled backup was taken (and older scheduled ones pruned).
pub const REASON_BACKED_UP: &str = "BackedUp";
/// A scheduled backup failed; it is tried again.
pub const REASON_BACKUP_FAILED: &str = "BackupFailed";

/// An Event to publish: its type, reason, action and note (events.k8s.io/v1 fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceEvent {
    /// `Warning` when the user should act, else `Normal`.
    pub warning: bool,
    /// [`REASON_IDLE_WARNING`], [`REASON_HIBERNATED`] or [`REASON_EXPIRED`].
    pub reason: &'static str,
    /// What the controller did or will do (`Warn`, `Hibernate`, `Delete`).
    pub action: &'static str,
    /// The text a person reads.
    pub note: String,
}

/// The warning before an idle stop: idle since `idle_since` (`None`: since its creation),
/// stopped at `stop_at` unless used.
pub fn idle_warning(
    workspace: &str,
    idle_since: Option<Timestamp>,
    stop_at: Timestamp,
) -> WorkspaceEvent {
    let since = idle_since.map_or_else(|| "its creation".to_string(), format_time);
    WorkspaceEvent {
        warning: true,
        reason: REASON_IDLE_WARNING,
        action: "Warn",
        note: format!(
            "Workspace {workspace} has been idle since {since}; it will be stopped at {} unless it is used (kubectl devenv exec {workspace}). Annotate {IDLE_TIMEOUT}=0 to never stop it.",
            format_time(stop_at),
        ),
    }
}

/// An idle workspace was stopped after `timeout` (`None`: unknown, shown as `-`).
pub fn hibernated(workspace: &str, timeout: Option<Duration>) -> WorkspaceEvent {
    let timeout = timeout.map_or_else(|| "-".to_string(), format_duration);
    WorkspaceEvent {
        warning: false,
        reason: REASON_HIBERNATED,
        action: "Hibernate",
        note: format!(
            "Workspace {workspace} was idle for longer than {timeout} and has been stopped; its volumes are kept. Start it again with: kubectl devenv start {workspace}"
        ),
    }
}

/// A stopped workspace was deleted after `ttl`; `purged` lists the claims deleted with it
/// (`None`: the claims are kept).
pub fn expired(
    workspace: &str,
    ttl: Option<Duration>,
    purged: Option<&[String]>,
) -> WorkspaceEvent {
    let ttl = ttl.map_or_else(|| "-".to_string(), format_duration);
    let claims = match purged {
        Some(deleted) => format!("its volume claims were deleted ({})", deleted.join(", ")),
        None => "its volume claims are kept".to_string(),
    };
    WorkspaceEvent {
        warning: false,
        reason: REASON_EXPIRED,
        action: "Delete",
        note: format!(
            "Workspace {workspace} was stopped for longer than {ttl} and has been deleted; {claims}."
        ),
    }
}

/// A scheduled backup of the workspace went to `repository`. The recorder folds repeats
/// into one Event (its count), keeping the first note, so the note names nothing that
/// changes from one backup to the next: `get` shows the last one, `backups` all of them.
pub fn backed_up(workspace: &str, repository: &str) -> WorkspaceEvent {
    WorkspaceEvent {
        warning: false,
        reason: REASON_BACKED_UP,
        action: "Backup",
        note: format!(
            "Scheduled backups of workspace {workspace} go to {repository}; the last one: kubectl devenv get {workspace}, all of them: kubectl devenv backups {workspace}"
        ),
    }
}

/// A scheduled backup failed with `why`; tried again every `retry`. Repeats fold into one
/// Event as [`backed_up`]'s do: the note says the first failure's cause.
pub fn backup_failed(workspace: &str, why: &str, retry: Duration) -> WorkspaceEvent {
    WorkspaceEvent {
        warning: true,
        reason: REASON_BACKUP_FAILED,
        action: "Backup",
        note: format!(
            "Scheduled backup of workspace {workspace} failed: {why}. It is tried again every {}; the controller's log (devenv-webhook lifecycle) has each attempt, devenv_lifecycle_backups_total{{result=\"failed\"}} counts them.",
            format_duration(retry)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::test_support::*;

    #[test]
    fn warning_says_when_and_how_to_keep_it() {
        let e = idle_warning(
            "alice",
            Some(t("2025-01-01T08:00:00Z")),
            t("2025-01-01T16:10:00Z"),
        );
        assert!(e.warning);
        assert_eq!((e.reason, e.action), ("IdleWarning", "Warn"));
        assert_eq!(
            e.note,
            "Workspace alice has been idle since 2025-01-01T08:00:00Z; it will be stopped at \
             2025-01-01T16:10:00Z unless it is used (kubectl devenv exec alice). Annotate \
             devenv.io/idle-timeout=0 to never stop it."
        );
        let e = idle_warning("alice", None, t("2025-01-01T16:10:00Z"));
        assert!(e.note.contains("idle since its creation;"), "{}", e.note);
    }

    #[test]
    fn hibernation_says_how_to_start_again() {
        let e = hibernated("alice", Some(hours(8)));
        assert!(!e.warning);
        assert_eq!(e.reason, "Hibernated");
        assert!(e.note.contains("longer than 8h"), "{}", e.note);
        assert!(e.note.ends_with("kubectl devenv start alice"), "{}", e.note);
        assert!(hibernated("a", None).note.contains("longer than -"));
    }

    #[test]
    fn expiry_says_what_happened_to_the_claims() {
        let kept = expired("alice", Some(hours(24)), None);
        assert_eq!(kept.reason, "Expired");
        assert!(
            kept.note.ends_with("its volume claims are kept."),
            "{}",
            kept.note
        );
        let purged = expired(
            "alice",
            Some(mins(90)),
            Some(&["workspace-alice-0".to_string()]),
        );
        assert!(purged.note.contains("longer than 1h30m"), "{}", purged.note);
        assert!(
            purged
                .note
                .ends_with("its volume claims were deleted (workspace-alice-0)."),
            "{}",
            purged.note
        );
    }

    #[test]
    fn backup_events_say_where_and_what_next() {
        let ok = backed_up("alice", "reg/b");
        assert!(!ok.warning);
        assert_eq!((ok.reason, ok.action), ("BackedUp", "Backup"));
        assert!(ok.note.contains("go to reg/b;"), "{}", ok.note);
        assert!(
            ok.note.ends_with("kubectl devenv backups alice"),
            "{}",
            ok.note
        );
        let failed = backup_failed("alice", "registry down", mins(15));
        assert!(failed.warning);
        assert!(
            failed
                .note
                .contains("failed: registry down. It is tried again every 15m;"),
            "{}",
            failed.note
        );
    }
}
