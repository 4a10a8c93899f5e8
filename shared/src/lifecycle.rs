//! Workspace lifecycle: idle hibernation, expiry of stopped workspaces, and a
//! warning before any stop. Pure decisions only; the `devenv-webhook lifecycle`
//! controller and the plugin's `stop`/`start`/`exec` do the I/O.
//!
//! # The contract, as annotations on the workspace StatefulSet
//!
//! | key | value | written by |
//! | --- | --- | --- |
//! | [`LAST_ACTIVITY`] | RFC 3339 time of the last use | the plugin's exec heartbeat, `start`, the controller (CPU busy) |
//! | [`IDLE_TIMEOUT`] | duration (`2h`, `30m`, `0` = never), overrides the policy | the user (`create --idle-timeout`) |
//! | [`IDLE_WARNING`] | RFC 3339 time the stop is due; set when the warning is issued | the controller; removed by any activity |
//! | [`HIBERNATED`] | RFC 3339 time the controller stopped the workspace | the controller |
//! | [`STOPPED_AT`] | RFC 3339 time the workspace was scaled to 0 (by `stop` or hibernation) | [`stop_patch`], [`hibernate_patch`] |
//! | [`TTL`] | duration a stopped workspace is kept (`0` = forever), overrides the policy | the user |
//! | [`REPLICAS_BEFORE_STOP`] | replicas to restore on `start` | [`stop_patch`], [`hibernate_patch`] |
//!
//! # The rules ([`decide`])
//!
//! * The last activity is the latest of: the [`LAST_ACTIVITY`] annotation, the
//!   StatefulSet's creation, the last start (for a workspace scaled up by other
//!   means than `kubectl devenv start`, the stop marker it still carries is a lower
//!   bound of that start), and "now" when the CPU rule says the workspace is busy.
//! * The idle timeout is the workspace's [`IDLE_TIMEOUT`] annotation, else the
//!   policy's `idleTimeout`; `0` means never.
//! * A running workspace is never stopped without a warning first: at
//!   `last activity + timeout - lead` the controller records [`IDLE_WARNING`] =
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
//!   TTL ([`TTL`] annotation, else `stoppedTtl`, off by default) is deleted; its
//!   claims are kept unless the policy says `purgeOnExpiry: true`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::rbac::v1::PolicyRule;
use k8s_openapi::jiff::Timestamp;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{json, Map, Value};

use crate::keys::WORKSPACE_LABEL;

/// RFC 3339 time of the workspace's last use.
pub const LAST_ACTIVITY: &str = "devenv.io/last-activity";
/// Per-workspace idle timeout (`2h`, `30m`, `1h30m`, `0` = never); overrides the policy.
pub const IDLE_TIMEOUT: &str = "devenv.io/idle-timeout";
/// RFC 3339 time the workspace is set to hibernated by the controller.
pub const HIBERNATED: &str = "devenv.io/hibernated";
/// RFC 3339 time the workspace was scaled to zero (by `stop` or by hibernation).
pub const STOPPED_AT: &str = "devenv.io/stopped-at";
/// RFC 3339 time at which an idle workspace will be stopped; present from the
/// moment the warning is issued until activity or the stop.
pub const IDLE_WARNING: &str = "devenv.io/idle-warning";
/// Per-workspace time a stopped workspace is kept before it is deleted (`0` = forever).
pub const TTL: &str = "devenv.io/ttl";
/// Replicas of the workspace before `stop` (or hibernation) scaled it to zero.
pub const REPLICAS_BEFORE_STOP: &str = "devenv.io/replicas-before-stop";
/// Field manager of every write by the lifecycle controller.
pub const LIFECYCLE_FIELD_MANAGER: &str = "devenv-lifecycle";
/// Event reasons emitted by the controller.
pub const REASON_IDLE_WARNING: &str = "IdleWarning";
/// See [`REASON_IDLE_WARNING`].
pub const REASON_HIBERNATED: &str = "Hibernated";
/// See [`REASON_IDLE_WARNING`].
pub const REASON_EXPIRED: &str = "Expired";

/// Default idle timeout: a working day. Hibernation keeps the claims and
/// `kubectl devenv start` restores the workspace, so the default can be on.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(8 * 3600);
/// Default time between the idle warning and the stop.
pub const DEFAULT_WARNING_BEFORE: Duration = Duration::from_secs(10 * 60);

// ---------------------------------------------------------------------------
// Durations
// ---------------------------------------------------------------------------

/// A duration that could not be parsed; names the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {value:?}: {reason}")]
pub struct DurationError {
    /// The text as given.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Parses `2h`, `90m`, `1h30m`, `45s`, `7d`, `0` (units `d`, `h`, `m`, `s`, whole
/// numbers, largest unit first, each unit at most once). `0`, `0s`, `0m`... are
/// [`Duration::ZERO`], which the lifecycle settings read as "never".
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let err = |reason: &str| DurationError {
        value: text.to_string(),
        reason: reason.to_string(),
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(err("empty; use e.g. 2h, 30m, 1h30m, 45s or 0 for never"));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.starts_with('-') {
        return Err(err("negative durations are not allowed"));
    }
    let mut total: u64 = 0;
    let mut last_rank = usize::MAX;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            let c = rest.chars().next().unwrap_or(' ');
            return Err(err(&format!(
                "unexpected {c:?}: write whole numbers each followed by a unit d, h, m or s, e.g. 1h30m"
            )));
        }
        let (number, tail) = rest.split_at(digits);
        let n: u64 = number.parse().map_err(|_| err("number too large"))?;
        let mut chars = tail.chars();
        let unit = match chars.next() {
            Some(c) => c,
            None => {
                return Err(err("missing unit after the number (use d, h, m or s)"));
            }
        };
        let (rank, seconds) = match unit {
            'd' => (0, 86_400),
            'h' => (1, 3_600),
            'm' => (2, 60),
            's' => (3, 1),
            '.' => return Err(err("fractions are not supported; use e.g. 1h30m")),
            other => {
                return Err(err(&format!(
                    "unknown unit {other:?} (use d, h, m or s, e.g. 1h30m)"
                )))
            }
        };
        if last_rank != usize::MAX && rank <= last_rank {
            return Err(err(
                "units must go from largest to smallest, each at most once (e.g. 1h30m)",
            ));
        }
        last_rank = rank;
        total = n
            .checked_mul(seconds)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| err("duration too large"))?;
        rest = chars.as_str();
    }
    Ok(Duration::from_secs(total))
}

/// Formats a duration the way [`parse_duration`] reads it: `0`, `45s`, `1h30m`, `7d`.
/// Sub-second parts are dropped.
pub fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0".to_string();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        let n = secs / size;
        if n > 0 {
            out.push_str(&n.to_string());
            out.push_str(unit);
            secs %= size;
        }
    }
    out
}

/// Parses an "optional" duration: `0` means `None` (never / off).
pub fn parse_optional_duration(text: &str) -> Result<Option<Duration>, DurationError> {
    parse_duration(text).map(|d| if d.is_zero() { None } else { Some(d) })
}

// ---------------------------------------------------------------------------
// Timestamps
// ---------------------------------------------------------------------------

/// Formats a time for an annotation: RFC 3339, UTC, whole seconds.
pub fn format_time(t: Timestamp) -> String {
    format!("{:.0}", t)
}

/// Parses an RFC 3339 annotation value (e.g. `2025-01-31T17:00:00Z`).
pub fn parse_time(text: &str) -> Result<Timestamp, String> {
    text.trim().parse::<Timestamp>().map_err(|e| {
        format!("invalid time {text:?} (want RFC 3339, e.g. 2025-01-31T17:00:00Z): {e}")
    })
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(d).unwrap_or(Timestamp::MAX)
}

fn sub(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_sub(d).unwrap_or(Timestamp::MIN)
}

/// `later - earlier`, zero when `later` is not after `earlier`.
fn until(earlier: Timestamp, later: Timestamp) -> Duration {
    Duration::try_from(later.duration_since(earlier)).unwrap_or(Duration::ZERO)
}

/// Rounds up to the next whole second, so that a stop time written to an
/// annotation (whole seconds) is never earlier than the one decided.
fn ceil_second(t: Timestamp) -> Timestamp {
    if t.subsec_nanosecond() == 0 {
        t
    } else {
        Timestamp::from_second(t.as_second().saturating_add(1)).unwrap_or(t)
    }
}

// ---------------------------------------------------------------------------
// Policy
// ---------------------------------------------------------------------------

/// The `lifecycle:` section of the workspace policy.
///
/// ```yaml
/// lifecycle:
///   idleTimeout: 8h            # 0 = never hibernate idle workspaces
///   warningBefore: 10m         # warning shown this long before the stop
///   stoppedTtl: 0              # delete workspaces stopped longer than this; 0 = never
///   purgeOnExpiry: false       # also delete their volume claims (data!)
///   cpuActiveMillicores: 200   # busy above this CPU usage counts as activity; absent = off
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LifecyclePolicy {
    /// Hibernate a workspace idle this long (default 8h, [`DEFAULT_IDLE_TIMEOUT`]); `None` (`0`) = never.
    #[serde(with = "optional_duration")]
    pub idle_timeout: Option<Duration>,
    /// Warn this long before the stop (default 10m); capped at half the idle timeout.
    #[serde(with = "plain_duration")]
    pub warning_before: Duration,
    /// Delete workspaces stopped (or hibernated) longer than this; `None` (`0`, the default) = never.
    #[serde(with = "optional_duration")]
    pub stopped_ttl: Option<Duration>,
    /// On expiry, also delete the workspace's volume claims (default false: they are kept).
    pub purge_on_expiry: bool,
    /// A workspace using at least this much CPU (metrics.k8s.io) at decision time
    /// counts as active; `None` (the default) = rule off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_active_millicores: Option<u64>,
}

impl Default for LifecyclePolicy {
    fn default() -> Self {
        Self {
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            warning_before: DEFAULT_WARNING_BEFORE,
            stopped_ttl: None,
            purge_on_expiry: false,
            cpu_active_millicores: None,
        }
    }
}

/// A lifecycle policy that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LifecyclePolicyError {
    /// The policy document is not valid YAML or its `lifecycle` section does not parse.
    #[error("lifecycle policy: {0}")]
    Parse(String),
    /// A value is out of range.
    #[error("lifecycle policy: {0}")]
    Invalid(String),
}

impl LifecyclePolicy {
    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), LifecyclePolicyError> {
        if self.warning_before.is_zero() {
            return Err(LifecyclePolicyError::Invalid(
                "warningBefore must be more than 0: a workspace is never stopped without a warning first"
                    .into(),
            ));
        }
        if self.cpu_active_millicores == Some(0) {
            return Err(LifecyclePolicyError::Invalid(
                "cpuActiveMillicores: 0 would count every workspace as always active; use idleTimeout: 0 to never hibernate, or leave cpuActiveMillicores out".into(),
            ));
        }
        Ok(())
    }

    /// Reads the `lifecycle` section of a whole policy document (YAML or JSON);
    /// an absent section gives the defaults. Other sections are not looked at.
    pub fn from_policy_document(text: &str) -> Result<Self, LifecyclePolicyError> {
        let doc: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|e| LifecyclePolicyError::Parse(e.to_string()))?;
        let policy = match doc.get("lifecycle") {
            None | Some(serde_yaml::Value::Null) => Self::default(),
            Some(section) => serde_yaml::from_value(section.clone())
                .map_err(|e| LifecyclePolicyError::Parse(e.to_string()))?,
        };
        policy.validate()?;
        Ok(policy)
    }

    /// Time between warning and stop for a given idle timeout.
    pub fn lead(&self, timeout: Duration) -> Duration {
        self.warning_before.min(timeout / 2)
    }
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a duration such as 8h, 30m, 1h30m, 45s, or 0")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse_duration(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        if v == 0 {
            Ok(Duration::ZERO)
        } else {
            Err(E::custom(format!(
                "invalid duration {v}: a unit is required (e.g. {v}m or {v}h); only 0 may go without"
            )))
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(format!(
                "invalid duration {v}: negative durations are not allowed"
            ))),
        }
    }
}

mod plain_duration {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(DurationVisitor)
    }
}

mod optional_duration {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(d.unwrap_or(Duration::ZERO)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let d = d.deserialize_any(DurationVisitor)?;
        Ok(if d.is_zero() { None } else { Some(d) })
    }
}

// ---------------------------------------------------------------------------
// Workspace state
// ---------------------------------------------------------------------------

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
    fn start_lower_bound(&self) -> Option<Timestamp> {
        if self.replicas > 0 {
            self.stopped_at.max(self.hibernated)
        } else {
            None
        }
    }

    fn has(&self, key: &'static str) -> bool {
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
    /// [`decide`] applies); `None` while it runs, without a TTL, or before the
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

// ---------------------------------------------------------------------------
// Decisions
// ---------------------------------------------------------------------------

/// What the controller should do with a workspace now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing now; look again after `next_check` (`None`: only when the workspace changes).
    Nothing {
        /// Time until the next decision is due.
        next_check: Option<Duration>,
    },
    /// Record [`IDLE_WARNING`] = `stop_at` ([`warn_patch`]) and emit an `IdleWarning` event.
    Warn {
        /// When the workspace will be stopped unless used.
        stop_at: Timestamp,
    },
    /// Scale to zero, marking it hibernated ([`hibernate_patch`]); emit `Hibernated`.
    Hibernate,
    /// Delete the StatefulSet (and, with `purge`, its claims); emit `Expired`.
    Expire {
        /// Also delete the workspace's volume claims.
        purge: bool,
    },
    /// Bring the lifecycle annotations in line with what was observed
    /// ([`annotate_patch`]): record activity the controller saw (CPU busy, a start
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

impl Action {
    /// The merge patch that carries out `Warn`, `Annotate` or `Hibernate`, with
    /// the StatefulSet's resourceVersion as a precondition when it has one
    /// ([`guarded`]). `None` for `Nothing` and `Expire` (a delete).
    pub fn patch(&self, sts: &StatefulSet, now: Timestamp) -> Option<Value> {
        let patch = match self {
            Action::Warn { stop_at } => warn_patch(*stop_at),
            Action::Annotate { set, remove } => annotate_patch(set, remove),
            Action::Hibernate => hibernate_patch(sts, now),
            Action::Nothing { .. } | Action::Expire { .. } => return None,
        };
        Some(guarded(patch, sts))
    }
}

/// The lifecycle decision for one workspace at `now`. Pure; see the module docs for the rules.
pub fn decide(now: Timestamp, ws: &WorkspaceState, policy: &LifecyclePolicy) -> Action {
    if ws.replicas <= 0 {
        decide_stopped(now, ws, policy)
    } else {
        decide_running(now, ws, policy)
    }
}

fn decide_stopped(now: Timestamp, ws: &WorkspaceState, policy: &LifecyclePolicy) -> Action {
    let ttl = ws.effective_ttl(policy);
    let since = ws.stopped_at.or(ws.hibernated);
    if let (Some(ttl), Some(since)) = (ttl, since) {
        if now >= add(since, ttl) {
            return Action::Expire {
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
        return Action::Annotate { set, remove };
    }
    match (ttl, since) {
        (Some(ttl), Some(since)) => Action::Nothing {
            next_check: Some(until(now, add(since, ttl))),
        },
        _ => Action::Nothing { next_check: None },
    }
}

fn decide_running(now: Timestamp, ws: &WorkspaceState, policy: &LifecyclePolicy) -> Action {
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
        return annotate_or(set, remove, Action::Nothing { next_check: None });
    };
    let lead = policy.lead(timeout);
    let deadline = add(activity, timeout);
    let standing = ws.idle_warning.filter(|stop_at| deadline <= *stop_at);

    if standing.is_none() && ws.has(IDLE_WARNING) {
        // Cancelled by activity since it was issued (or unreadable).
        remove.push(IDLE_WARNING);
    }
    if !set.is_empty() || !remove.is_empty() {
        return Action::Annotate { set, remove };
    }
    match standing {
        Some(stop_at) if now >= stop_at => Action::Hibernate,
        Some(stop_at) => Action::Nothing {
            next_check: Some(until(now, stop_at)),
        },
        None => {
            let warn_at = sub(deadline, lead);
            if now >= warn_at {
                Action::Warn {
                    stop_at: ceil_second(add(now, lead)),
                }
            } else {
                Action::Nothing {
                    next_check: Some(until(now, warn_at)),
                }
            }
        }
    }
}

fn annotate_or(
    set: Vec<(&'static str, String)>,
    remove: Vec<&'static str>,
    otherwise: Action,
) -> Action {
    if set.is_empty() && remove.is_empty() {
        otherwise
    } else {
        Action::Annotate { set, remove }
    }
}

// ---------------------------------------------------------------------------
// Patches (JSON merge patches on the StatefulSet)
// ---------------------------------------------------------------------------

fn annotations_patch(annotations: Map<String, Value>) -> Value {
    json!({ "metadata": { "annotations": Value::Object(annotations) } })
}

/// Records use: [`LAST_ACTIVITY`] = `now`, and removes any idle warning (activity cancels it).
/// What the plugin's exec heartbeat sends.
pub fn activity_patch(now: Timestamp) -> Value {
    let mut a = Map::new();
    a.insert(LAST_ACTIVITY.into(), Value::String(format_time(now)));
    a.insert(IDLE_WARNING.into(), Value::Null);
    annotations_patch(a)
}

/// Issues the idle warning: [`IDLE_WARNING`] = `stop_at`.
pub fn warn_patch(stop_at: Timestamp) -> Value {
    let mut a = Map::new();
    a.insert(IDLE_WARNING.into(), Value::String(format_time(stop_at)));
    annotations_patch(a)
}

/// Sets and removes annotations ([`Action::Annotate`]).
pub fn annotate_patch(set: &[(&'static str, String)], remove: &[&'static str]) -> Value {
    let mut a = Map::new();
    for key in remove {
        a.insert((*key).into(), Value::Null);
    }
    for (key, value) in set {
        a.insert((*key).into(), Value::String(value.clone()));
    }
    annotations_patch(a)
}

fn current_replicas(sts: &StatefulSet) -> i32 {
    sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn annotation<'a>(sts: &'a StatefulSet, key: &str) -> Option<&'a str> {
    sts.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// The replicas `start` restores: [`REPLICAS_BEFORE_STOP`] when it is a positive
/// number, else the current replicas when positive, else 1.
pub fn replicas_to_restore(sts: &StatefulSet) -> i32 {
    annotation(sts, REPLICAS_BEFORE_STOP)
        .and_then(|v| v.trim().parse::<i32>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| current_replicas(sts).max(1))
}

fn stop_annotations(sts: &StatefulSet, now: Timestamp) -> Map<String, Value> {
    let mut a = Map::new();
    let replicas = current_replicas(sts);
    if replicas > 0 {
        // Stopping an already stopped workspace must not forget what to restore.
        a.insert(
            REPLICAS_BEFORE_STOP.into(),
            Value::String(replicas.to_string()),
        );
        a.insert(STOPPED_AT.into(), Value::String(format_time(now)));
    } else if annotation(sts, STOPPED_AT).is_none() {
        a.insert(STOPPED_AT.into(), Value::String(format_time(now)));
    }
    a.insert(IDLE_WARNING.into(), Value::Null);
    a
}

/// `kubectl devenv stop`: records [`REPLICAS_BEFORE_STOP`] (unless already
/// stopped) and [`STOPPED_AT`], scales to zero, removes any idle warning and
/// any [`HIBERNATED`] marker (a user stop is not a hibernation).
pub fn stop_patch(sts: &StatefulSet, now: Timestamp) -> Value {
    let mut a = stop_annotations(sts, now);
    a.insert(HIBERNATED.into(), Value::Null);
    json!({ "metadata": { "annotations": Value::Object(a) }, "spec": { "replicas": 0 } })
}

/// The controller's stop: [`stop_patch`] plus [`HIBERNATED`] = `now`.
pub fn hibernate_patch(sts: &StatefulSet, now: Timestamp) -> Value {
    let mut a = stop_annotations(sts, now);
    a.insert(HIBERNATED.into(), Value::String(format_time(now)));
    json!({ "metadata": { "annotations": Value::Object(a) }, "spec": { "replicas": 0 } })
}

/// `kubectl devenv start`: restores [`replicas_to_restore`], removes the stop
/// markers and any warning, and records the start as activity.
pub fn start_patch(sts: &StatefulSet, now: Timestamp) -> Value {
    let mut a = Map::new();
    for key in [REPLICAS_BEFORE_STOP, STOPPED_AT, HIBERNATED, IDLE_WARNING] {
        a.insert(key.into(), Value::Null);
    }
    a.insert(LAST_ACTIVITY.into(), Value::String(format_time(now)));
    json!({
        "metadata": { "annotations": Value::Object(a) },
        "spec": { "replicas": replicas_to_restore(sts) },
    })
}

/// Adds the StatefulSet's `metadata.resourceVersion` to a merge patch: the API
/// server then rejects it (409 Conflict) if the object changed since it was
/// read, e.g. when a heartbeat recorded activity in between.
pub fn guarded(mut patch: Value, sts: &StatefulSet) -> Value {
    if let (Some(rv), Some(obj)) = (
        sts.metadata.resource_version.as_ref(),
        patch.as_object_mut(),
    ) {
        let meta = obj
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert("resourceVersion".into(), Value::String(rv.clone()));
        }
    }
    patch
}

// ---------------------------------------------------------------------------
// Expiry with purge: which claims belong to the workspace
// ---------------------------------------------------------------------------

/// A volume claim of a workspace that `purgeOnExpiry` deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceClaim {
    /// Claim name.
    pub name: String,
    /// Created from the StatefulSet's volumeClaimTemplates (so certainly the
    /// workspace's own); otherwise referenced by the pod template, and to be
    /// deleted only if it carries the workspace label with this workspace's name.
    pub from_template: bool,
}

/// The claims of a workspace: `<template>-<statefulset>-<ordinal>` for every
/// volumeClaimTemplate and ordinal below the replicas it had before the stop
/// (at least 1), and the claims its pod template mounts.
pub fn workspace_claims(sts: &StatefulSet) -> Vec<WorkspaceClaim> {
    let Some(name) = sts.metadata.name.as_deref() else {
        return Vec::new();
    };
    let ordinals = replicas_to_restore(sts).max(current_replicas(sts)).max(1);
    let mut claims = Vec::new();
    let Some(spec) = sts.spec.as_ref() else {
        return claims;
    };
    for template in spec.volume_claim_templates.iter().flatten() {
        if let Some(t) = template.metadata.name.as_deref() {
            for ordinal in 0..ordinals {
                claims.push(WorkspaceClaim {
                    name: format!("{t}-{name}-{ordinal}"),
                    from_template: true,
                });
            }
        }
    }
    let volumes = spec.template.spec.as_ref().and_then(|p| p.volumes.as_ref());
    for volume in volumes.into_iter().flatten() {
        if let Some(pvc) = volume.persistent_volume_claim.as_ref() {
            if !claims.iter().any(|c| c.name == pvc.claim_name) {
                claims.push(WorkspaceClaim {
                    name: pvc.claim_name.clone(),
                    from_template: false,
                });
            }
        }
    }
    claims
}

// ---------------------------------------------------------------------------
// CPU usage (metrics.k8s.io quantities)
// ---------------------------------------------------------------------------

/// Parses a CPU quantity as the metrics API reports it (`123456789n`, `250m`,
/// `15u`, `1`, `1.5`, `2k`) into millicores, rounded up.
pub fn cpu_millicores(quantity: &str) -> Option<u64> {
    let q = quantity.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    // millicores = value * 10^exp, with exp relative to millicores.
    let exp: i32 = match suffix {
        "n" => -6,
        "u" => -3,
        "m" => 0,
        "" => 3,
        "k" => 6,
        "M" => 9,
        "G" => 12,
        _ => return None,
    };
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let digits = format!("{int}{frac}");
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let exp = exp - i32::try_from(frac.len()).ok()?;
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Some(0);
    }
    if exp >= 0 {
        let mantissa: u64 = digits.parse().ok()?;
        let scale = 10u64.checked_pow(u32::try_from(exp).ok()?)?;
        mantissa.checked_mul(scale)
    } else {
        let cut = usize::try_from(-exp).ok()?;
        if digits.len() <= cut {
            return Some(1); // a positive amount below one millicore
        }
        let (whole, rest) = digits.split_at(digits.len() - cut);
        let whole: u64 = whole.parse().ok()?;
        let round_up = rest.bytes().any(|b| b != b'0');
        whole.checked_add(u64::from(round_up))
    }
}

// ---------------------------------------------------------------------------
// RBAC of the controller
// ---------------------------------------------------------------------------

/// The cluster-wide rules the lifecycle controller needs (for the install manifests).
pub fn controller_rbac_rules() -> Vec<PolicyRule> {
    let rule = |groups: &[&str], resources: &[&str], verbs: &[&str]| PolicyRule {
        api_groups: Some(groups.iter().map(|s| s.to_string()).collect()),
        resources: Some(resources.iter().map(|s| s.to_string()).collect()),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    vec![
        rule(
            &["apps"],
            &["statefulsets"],
            &["get", "list", "watch", "patch", "delete"],
        ),
        rule(&[""], &["persistentvolumeclaims"], &["get", "delete"]),
        rule(&["events.k8s.io"], &["events"], &["create", "patch"]),
        rule(
            &["coordination.k8s.io"],
            &["leases"],
            &["get", "create", "update"],
        ),
        rule(&["metrics.k8s.io"], &["pods"], &["list"]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::StatefulSetSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn t(s: &str) -> Timestamp {
        parse_time(s).unwrap()
    }

    const fn mins(m: u64) -> Duration {
        Duration::from_secs(m * 60)
    }

    const fn hours(h: u64) -> Duration {
        Duration::from_secs(h * 3600)
    }

    // ---- durations ------------------------------------------------------

    #[test]
    fn parses_durations() {
        for (text, secs) in [
            ("2h", 7200),
            ("90m", 5400),
            ("1h30m", 5400),
            ("45s", 45),
            ("0", 0),
            ("0s", 0),
            ("0m", 0),
            ("7d", 7 * 86_400),
            ("1d2h3m4s", 86_400 + 7200 + 180 + 4),
            (" 30m ", 1800),
            ("100000h", 360_000_000),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
    }

    #[test]
    fn duration_errors_name_the_value() {
        for (text, why) in [
            ("", "empty"),
            ("2x", "unknown unit 'x'"),
            ("2", "missing unit"),
            ("h", "unexpected 'h'"),
            ("1.5h", "fractions"),
            ("-5m", "negative"),
            ("30m1h", "largest to smallest"),
            ("1h1h", "largest to smallest"),
            ("2 h", "unknown unit ' '"),
            ("99999999999999999999s", "too large"),
            ("9999999999999999d", "too large"),
            ("2hours", "unexpected 'o'"),
        ] {
            let err = parse_duration(text).unwrap_err();
            assert_eq!(err.value, text);
            let msg = err.to_string();
            assert!(msg.contains(&format!("{text:?}")), "{msg}");
            assert!(msg.contains(why), "{text}: {msg}");
        }
    }

    #[test]
    fn formats_durations_round_trip() {
        for text in ["0", "45s", "1h30m", "8h", "7d", "1d2h3m4s", "10m"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(format_duration(d), text);
        }
        assert_eq!(format_duration(mins(90)), "1h30m");
        assert_eq!(format_duration(Duration::from_millis(500)), "0");
    }

    #[test]
    fn optional_duration_zero_is_never() {
        assert_eq!(parse_optional_duration("0"), Ok(None));
        assert_eq!(parse_optional_duration("0h"), Ok(None));
        assert_eq!(parse_optional_duration("2h"), Ok(Some(hours(2))));
        assert!(parse_optional_duration("soon").is_err());
    }

    // ---- policy ---------------------------------------------------------

    #[test]
    fn policy_defaults() {
        let p = LifecyclePolicy::default();
        assert_eq!(p.idle_timeout, Some(hours(8)));
        assert_eq!(p.warning_before, mins(10));
        assert_eq!(p.stopped_ttl, None);
        assert!(!p.purge_on_expiry);
        assert_eq!(p.cpu_active_millicores, None);
        let empty: LifecyclePolicy = serde_yaml::from_str("{}").unwrap();
        assert_eq!(empty, p);
    }

    #[test]
    fn policy_parses_yaml() {
        let p: LifecyclePolicy = serde_yaml::from_str(
            "idleTimeout: 2h\nwarningBefore: 5m\nstoppedTtl: 7d\npurgeOnExpiry: true\ncpuActiveMillicores: 200\n",
        )
        .unwrap();
        assert_eq!(
            p,
            LifecyclePolicy {
                idle_timeout: Some(hours(2)),
                warning_before: mins(5),
                stopped_ttl: Some(hours(168)),
                purge_on_expiry: true,
                cpu_active_millicores: Some(200),
            }
        );
        let off: LifecyclePolicy =
            serde_yaml::from_str("idleTimeout: 0\nstoppedTtl: \"0\"").unwrap();
        assert_eq!(off.idle_timeout, None);
        assert_eq!(off.stopped_ttl, None);
    }

    #[test]
    fn policy_rejects_bad_values() {
        for (yaml, want) in [
            ("idleTimeout: 8", "a unit is required"),
            ("idleTimeout: 8x", "\"8x\""),
            ("warningBefore: -1", "negative"),
            ("idleTimout: 2h", "unknown field"),
        ] {
            let err = serde_yaml::from_str::<LifecyclePolicy>(yaml)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{yaml}: {err}");
        }
        assert!(LifecyclePolicy::from_policy_document("lifecycle:\n  warningBefore: 0\n").is_err());
        assert!(
            LifecyclePolicy::from_policy_document("lifecycle:\n  cpuActiveMillicores: 0\n")
                .is_err()
        );
    }

    #[test]
    fn policy_serializes_back() {
        let p = LifecyclePolicy {
            stopped_ttl: Some(hours(24 * 30)),
            ..Default::default()
        };
        let yaml = serde_yaml::to_string(&p).unwrap();
        assert!(yaml.contains("idleTimeout: 8h"), "{yaml}");
        assert!(yaml.contains("stoppedTtl: 30d"), "{yaml}");
        assert_eq!(serde_yaml::from_str::<LifecyclePolicy>(&yaml).unwrap(), p);
        let none = LifecyclePolicy {
            idle_timeout: None,
            ..Default::default()
        };
        let yaml = serde_yaml::to_string(&none).unwrap();
        assert!(yaml.contains("idleTimeout: '0'"), "{yaml}");
        assert_eq!(
            serde_yaml::from_str::<LifecyclePolicy>(&yaml).unwrap(),
            none
        );
    }

    #[test]
    fn policy_from_document() {
        let doc = "tiers:\n  small: {}\nlifecycle:\n  idleTimeout: 30m\n";
        let p = LifecyclePolicy::from_policy_document(doc).unwrap();
        assert_eq!(p.idle_timeout, Some(mins(30)));
        assert_eq!(
            LifecyclePolicy::from_policy_document("tiers: {}\n").unwrap(),
            LifecyclePolicy::default()
        );
        assert_eq!(
            LifecyclePolicy::from_policy_document("").unwrap(),
            LifecyclePolicy::default()
        );
        let err =
            LifecyclePolicy::from_policy_document("lifecycle:\n  idleTimeout: 1.5h\n").unwrap_err();
        assert!(err.to_string().contains("\"1.5h\""), "{err}");
    }

    #[test]
    fn lead_is_capped_at_half_the_timeout() {
        let p = LifecyclePolicy::default();
        assert_eq!(p.lead(hours(8)), mins(10));
        assert_eq!(p.lead(mins(10)), mins(5));
        assert_eq!(p.lead(Duration::from_secs(30)), Duration::from_secs(15));
    }

    // ---- decide ---------------------------------------------------------

    const CREATED: &str = "2025-01-01T00:00:00Z";

    fn running() -> WorkspaceState {
        WorkspaceState {
            workspace: "w".into(),
            created: Some(t(CREATED)),
            replicas: 1,
            ..Default::default()
        }
    }

    fn stopped(at: &str) -> WorkspaceState {
        WorkspaceState {
            replicas: 0,
            stopped_at: Some(t(at)),
            ..running()
        }
    }

    fn policy() -> LifecyclePolicy {
        LifecyclePolicy {
            idle_timeout: Some(hours(1)),
            warning_before: mins(10),
            ..Default::default()
        }
    }

    fn nothing(next: Option<Duration>) -> Action {
        Action::Nothing { next_check: next }
    }

    fn warn(stop_at: &str) -> Action {
        Action::Warn {
            stop_at: t(stop_at),
        }
    }

    fn annotate(set: &[(&'static str, &str)], remove: &[&'static str]) -> Action {
        Action::Annotate {
            set: set.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            remove: remove.to_vec(),
        }
    }

    #[test]
    fn decide_table() {
        struct Case {
            name: &'static str,
            now: &'static str,
            ws: WorkspaceState,
            policy: LifecyclePolicy,
            want: Action,
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
                want: Action::Hibernate,
            },
            Case {
                name: "warning standing, controller was down past the stop time: hibernate",
                now: "2025-01-05T00:00:00Z",
                ws: WorkspaceState {
                    idle_warning: Some(t("2025-01-01T01:00:00Z")),
                    ..running()
                },
                policy: p.clone(),
                want: Action::Hibernate,
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
                want: Action::Hibernate,
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
                want: Action::Expire { purge: false },
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
                want: Action::Expire { purge: true },
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
                want: Action::Expire { purge: false },
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
                want: Action::Expire { purge: false },
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
                    if decide(now, &ws, &p) == Action::Hibernate {
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
                Action::Nothing {
                    next_check: Some(d),
                } => now = add(now, d),
                Action::Nothing { next_check: None } => break,
                Action::Warn { stop_at } => {
                    warned_at = Some(now);
                    ws.idle_warning = Some(stop_at);
                }
                Action::Hibernate => {
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

    // ---- state from a StatefulSet ------------------------------------------

    fn sts(replicas: Option<i32>, annotations: &[(&str, &str)]) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                name: Some("dev-alice".into()),
                namespace: Some("team".into()),
                resource_version: Some("42".into()),
                creation_timestamp: Some(Time(t(CREATED))),
                labels: Some([(WORKSPACE_LABEL.to_string(), "alice".to_string())].into()),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: Some(StatefulSetSpec {
                replicas,
                ..Default::default()
            }),
            status: None,
        }
    }

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

    // ---- patches ------------------------------------------------------------

    #[test]
    fn stop_and_hibernate_patches() {
        let now = t("2025-01-02T03:04:05.678Z");
        let s = sts(Some(2), &[]);
        assert_eq!(
            stop_patch(&s, now),
            json!({
                "metadata": {"annotations": {
                    REPLICAS_BEFORE_STOP: "2",
                    STOPPED_AT: "2025-01-02T03:04:05Z",
                    IDLE_WARNING: null,
                    HIBERNATED: null,
                }},
                "spec": {"replicas": 0},
            })
        );
        assert_eq!(
            hibernate_patch(&s, now),
            json!({
                "metadata": {"annotations": {
                    REPLICAS_BEFORE_STOP: "2",
                    STOPPED_AT: "2025-01-02T03:04:05Z",
                    IDLE_WARNING: null,
                    HIBERNATED: "2025-01-02T03:04:05Z",
                }},
                "spec": {"replicas": 0},
            })
        );
        // Already stopped: the replicas to restore and the stop time are kept.
        let s = sts(
            Some(0),
            &[(REPLICAS_BEFORE_STOP, "3"), (STOPPED_AT, CREATED)],
        );
        assert_eq!(
            stop_patch(&s, now),
            json!({
                "metadata": {"annotations": {IDLE_WARNING: null, HIBERNATED: null}},
                "spec": {"replicas": 0},
            })
        );
    }

    #[test]
    fn start_patch_restores() {
        let now = t("2025-01-02T03:04:05Z");
        let s = sts(
            Some(0),
            &[(REPLICAS_BEFORE_STOP, "3"), (HIBERNATED, CREATED)],
        );
        assert_eq!(
            start_patch(&s, now),
            json!({
                "metadata": {"annotations": {
                    REPLICAS_BEFORE_STOP: null,
                    STOPPED_AT: null,
                    HIBERNATED: null,
                    IDLE_WARNING: null,
                    LAST_ACTIVITY: "2025-01-02T03:04:05Z",
                }},
                "spec": {"replicas": 3},
            })
        );
        assert_eq!(replicas_to_restore(&sts(Some(0), &[])), 1);
        assert_eq!(
            replicas_to_restore(&sts(Some(0), &[(REPLICAS_BEFORE_STOP, "x")])),
            1
        );
        assert_eq!(
            replicas_to_restore(&sts(Some(0), &[(REPLICAS_BEFORE_STOP, "0")])),
            1
        );
        assert_eq!(replicas_to_restore(&sts(Some(2), &[])), 2);
    }

    #[test]
    fn action_patches_are_guarded_by_resource_version() {
        let now = t("2025-01-02T03:04:05Z");
        let s = sts(Some(1), &[]);
        let warn = Action::Warn { stop_at: now }.patch(&s, now).unwrap();
        assert_eq!(
            warn,
            json!({"metadata": {"resourceVersion": "42", "annotations": {IDLE_WARNING: "2025-01-02T03:04:05Z"}}})
        );
        let hib = Action::Hibernate.patch(&s, now).unwrap();
        assert_eq!(hib["metadata"]["resourceVersion"], "42");
        assert_eq!(hib["spec"]["replicas"], 0);
        let ann = annotate(&[(LAST_ACTIVITY, "x")], &[IDLE_WARNING])
            .patch(&s, now)
            .unwrap();
        assert_eq!(
            ann,
            json!({"metadata": {"resourceVersion": "42", "annotations": {IDLE_WARNING: null, LAST_ACTIVITY: "x"}}})
        );
        assert_eq!(Action::Expire { purge: true }.patch(&s, now), None);
        assert_eq!(nothing(None).patch(&s, now), None);
    }

    #[test]
    fn activity_patch_clears_the_warning() {
        assert_eq!(
            activity_patch(t("2025-01-02T03:04:05.9Z")),
            json!({"metadata": {"annotations": {LAST_ACTIVITY: "2025-01-02T03:04:05Z", IDLE_WARNING: null}}})
        );
    }

    #[test]
    fn claims_of_a_workspace() {
        use k8s_openapi::api::core::v1::{
            PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec,
            Volume,
        };
        let mut s = sts(Some(0), &[(REPLICAS_BEFORE_STOP, "2")]);
        if let Some(spec) = s.spec.as_mut() {
            spec.volume_claim_templates = Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("home".into()),
                    ..Default::default()
                },
                ..Default::default()
            }]);
            spec.template = PodTemplateSpec {
                spec: Some(PodSpec {
                    volumes: Some(vec![Volume {
                        name: "cache".into(),
                        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                            claim_name: "alice-cache".into(),
                            read_only: None,
                        }),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            };
        }
        let names: Vec<(String, bool)> = workspace_claims(&s)
            .into_iter()
            .map(|c| (c.name, c.from_template))
            .collect();
        assert_eq!(
            names,
            vec![
                ("home-dev-alice-0".to_string(), true),
                ("home-dev-alice-1".to_string(), true),
                ("alice-cache".to_string(), false),
            ]
        );
    }

    // ---- CPU quantities -----------------------------------------------------

    #[test]
    fn cpu_quantities() {
        for (q, want) in [
            ("250m", Some(250)),
            ("1", Some(1000)),
            ("1.5", Some(1500)),
            ("0.25", Some(250)),
            ("123456789n", Some(124)),
            ("1000000n", Some(1)),
            ("999n", Some(1)),
            ("0", Some(0)),
            ("0n", Some(0)),
            ("15u", Some(1)),
            ("2000u", Some(2)),
            ("2k", Some(2_000_000)),
            ("", None),
            ("abc", None),
            ("1Ki", None),
            ("1.2.3", None),
            (".", None),
        ] {
            assert_eq!(cpu_millicores(q), want, "{q}");
        }
    }

    #[test]
    fn rbac_rules_cover_the_controller() {
        let rules = controller_rbac_rules();
        let has = |group: &str, resource: &str, verb: &str| {
            rules.iter().any(|r| {
                r.api_groups.iter().flatten().any(|g| g == group)
                    && r.resources.iter().flatten().any(|x| x == resource)
                    && r.verbs.iter().any(|v| v == verb)
            })
        };
        assert!(has("apps", "statefulsets", "watch"));
        assert!(has("apps", "statefulsets", "patch"));
        assert!(has("apps", "statefulsets", "delete"));
        assert!(has("", "persistentvolumeclaims", "delete"));
        assert!(has("events.k8s.io", "events", "create"));
        assert!(has("coordination.k8s.io", "leases", "update"));
        assert!(has("metrics.k8s.io", "pods", "list"));
    }

    #[test]
    fn rbac_fixture_of_the_e2e_suite_matches() {
        use k8s_openapi::api::rbac::v1::ClusterRole;
        let role: ClusterRole =
            serde_yaml::from_str(include_str!("../../tests/lifecycle/rbac.yaml")).unwrap();
        assert_eq!(role.rules.unwrap_or_default(), controller_rbac_rules());
    }
}
