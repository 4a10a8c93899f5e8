//! Fixtures shared by the lifecycle floor's tests.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use crate::lifecycle::decide::Step;
use crate::lifecycle::state::WorkspaceState;
use crate::model::keys::WORKSPACE_LABEL;
use crate::model::lifecycle_policy::LifecyclePolicy;
use crate::model::time::parse_time;

pub(crate) fn t(s: &str) -> Timestamp {
    parse_time(s).unwrap()
}

pub(crate) const fn mins(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

pub(crate) const fn hours(h: u64) -> Duration {
    Duration::from_secs(h * 3600)
}

pub(crate) const CREATED: &str = "2025-01-01T00:00:00Z";

pub(crate) fn sts(replicas: Option<i32>, annotations: &[(&str, &str)]) -> StatefulSet {
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

pub(crate) fn running() -> WorkspaceState {
    WorkspaceState {
        workspace: "w".into(),
        created: Some(t(CREATED)),
        replicas: 1,
        ..Default::default()
    }
}

pub(crate) fn stopped(at: &str) -> WorkspaceState {
    WorkspaceState {
        replicas: 0,
        stopped_at: Some(t(at)),
        ..running()
    }
}

pub(crate) fn policy() -> LifecyclePolicy {
    LifecyclePolicy {
        idle_timeout: Some(hours(1)),
        warning_before: mins(10),
        ..Default::default()
    }
}

pub(crate) fn nothing(next: Option<Duration>) -> Step {
    Step::Nothing { next_check: next }
}

pub(crate) fn warn(stop_at: &str) -> Step {
    Step::Warn {
        stop_at: t(stop_at),
    }
}

pub(crate) fn annotate(set: &[(&'static str, &str)], remove: &[&'static str]) -> Step {
    Step::Annotate {
        set: set.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        remove: remove.to_vec(),
    }
}
