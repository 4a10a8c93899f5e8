//! The JSON merge patches that carry lifecycle decisions and commands out on a workspace
//! StatefulSet: `stop`, `start`, the exec heartbeat, the controller's warning and stop.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Map, Value};

use crate::lifecycle::decide::Step;
use crate::model::keys::{
    HIBERNATED, IDLE_WARNING, LAST_ACTIVITY, REPLICAS_BEFORE_STOP, STOPPED_AT,
};
use crate::model::time::format_time;

impl Step {
    /// The merge patch that carries out `Warn`, `Annotate` or `Hibernate`, with
    /// the StatefulSet's resourceVersion as a precondition when it has one
    /// ([`guarded`]). `None` for `Nothing` and `Expire` (a delete).
    pub fn patch(&self, sts: &StatefulSet, now: Timestamp) -> Option<Value> {
        let patch = match self {
            Step::Warn { stop_at } => warn_patch(*stop_at),
            Step::Annotate { set, remove } => annotate_patch(set, remove),
            Step::Hibernate => hibernate_patch(sts, now),
            Step::Nothing { .. } | Step::Expire { .. } => return None,
        };
        Some(guarded(patch, sts))
    }
}

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

pub(crate) fn current_replicas(sts: &StatefulSet) -> i32 {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::test_support::*;

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
        let warn = Step::Warn { stop_at: now }.patch(&s, now).unwrap();
        assert_eq!(
            warn,
            json!({"metadata": {"resourceVersion": "42", "annotations": {IDLE_WARNING: "2025-01-02T03:04:05Z"}}})
        );
        let hib = Step::Hibernate.patch(&s, now).unwrap();
        assert_eq!(hib["metadata"]["resourceVersion"], "42");
        assert_eq!(hib["spec"]["replicas"], 0);
        let ann = annotate(&[(LAST_ACTIVITY, "x")], &[IDLE_WARNING])
            .patch(&s, now)
            .unwrap();
        assert_eq!(
            ann,
            json!({"metadata": {"resourceVersion": "42", "annotations": {IDLE_WARNING: null, LAST_ACTIVITY: "x"}}})
        );
        assert_eq!(Step::Expire { purge: true }.patch(&s, now), None);
        assert_eq!(nothing(None).patch(&s, now), None);
    }

    #[test]
    fn activity_patch_clears_the_warning() {
        assert_eq!(
            activity_patch(t("2025-01-02T03:04:05.9Z")),
            json!({"metadata": {"annotations": {LAST_ACTIVITY: "2025-01-02T03:04:05Z", IDLE_WARNING: null}}})
        );
    }
}
