//! Workspace lifecycle: idle hibernation, expiry of stopped workspaces, and a
//! warning before any stop. Pure decisions only; the `devenv-webhook lifecycle`
//! controller and the plugin's `stop`/`start`/`exec` do the I/O.
//!
//! [`state`] reads a workspace StatefulSet, [`decide`] says what to do next (a
//! [`decide::Step`]), [`patches`] and [`events`] say how it is written and told, and
//! [`claims`] which claims a purge may delete. [`bare`] makes the claims of bare workspace
//! pods (made directly, not by a StatefulSet) once they exist, and lets them schedule.
//!
//! # The contract, as annotations on the workspace StatefulSet
//!
//! | key | value | written by |
//! | --- | --- | --- |
//! | [`LAST_ACTIVITY`](crate::model::keys::LAST_ACTIVITY) | RFC 3339 time of the last use | the plugin's exec heartbeat, `start`, the controller (CPU busy) |
//! | [`IDLE_TIMEOUT`](crate::model::keys::IDLE_TIMEOUT) | duration (`2h`, `30m`, `0` = never), overrides the policy | the user (`create --idle-timeout`) |
//! | [`IDLE_WARNING`](crate::model::keys::IDLE_WARNING) | RFC 3339 time the stop is due; set when the warning is issued | the controller; removed by any activity |
//! | [`HIBERNATED`](crate::model::keys::HIBERNATED) | RFC 3339 time the controller stopped the workspace | the controller |
//! | [`STOPPED_AT`](crate::model::keys::STOPPED_AT) | RFC 3339 time the workspace was scaled to 0 (by `stop` or hibernation) | [`stop_patch`](patches::stop_patch), [`hibernate_patch`](patches::hibernate_patch) |
//! | [`TTL`](crate::model::keys::TTL) | duration a stopped workspace is kept (`0` = forever), overrides the policy | the user |
//! | [`LAST_BACKUP`](crate::model::keys::LAST_BACKUP), [`LAST_BACKUP_REF`](crate::model::keys::LAST_BACKUP_REF) | RFC 3339 time and `REPO@sha256:...` of the last good backup ([`schedule`]) | every backup that succeeded (plugin or controller) |
//! | [`REPLICAS_BEFORE_STOP`](crate::model::keys::REPLICAS_BEFORE_STOP) | replicas to restore on `start` | [`stop_patch`](patches::stop_patch), [`hibernate_patch`](patches::hibernate_patch) |
//!
//! # The rules ([`decide::decide`])
//!
//! * The last activity is the latest of: the [`LAST_ACTIVITY`](crate::model::keys::LAST_ACTIVITY) annotation, the
//!   StatefulSet's creation, the last start (for a workspace scaled up by other
//!   means than `kubectl devenv start`, the stop marker it still carries is a lower
//!   bound of that start), and "now" when the CPU rule says the workspace is busy.
//! * The idle timeout is the workspace's [`IDLE_TIMEOUT`](crate::model::keys::IDLE_TIMEOUT) annotation, else the
//!   policy's `idleTimeout`; `0` means never.
//! * A running workspace is never stopped without a warning first: at
//!   `last activity + timeout - lead` the controller records [`IDLE_WARNING`](crate::model::keys::IDLE_WARNING) =
//!   `now + lead` (the stop time) and emits an `IdleWarning` event; it stops the
//!   workspace only once that time has passed. If the controller was down when
//!   the warning was due, it warns when it comes back and stops `lead` later.
//!   `lead` is the policy's `warningBefore`, capped at half the idle timeout so a
//!   short per-workspace timeout is not all warning.
//! * A warning stands only while it is still justified: any activity after it
//!   was issued moves the idle deadline past the recorded stop time, which
//!   cancels it (the controller removes the annotation; the plugin's heartbeat
//!   removes it itself).
//! * A stopped workspace (replicas 0, by `stop` or hibernation) older than the
//!   TTL ([`TTL`](crate::model::keys::TTL) annotation, else `stoppedTtl`, off by default) is deleted; its
//!   claims are kept unless the policy says `purgeOnExpiry: true`.

pub mod bare;
pub mod claims;
pub mod decide;
pub mod events;
pub mod patches;
pub mod schedule;
pub mod state;
#[cfg(test)]
pub(crate) mod test_support;
