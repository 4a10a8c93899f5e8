//! What `list` and `get` show: workspaces joined from one list per kind
//! (StatefulSets, Pods, claims, FailedCreate events) into summaries, rendered
//! as kubectl renders tables (`-o wide` adds columns) or as JSON/YAML. Pure:
//! the caller passes the objects and `now`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod};
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use devenv_shared::lifecycle::schedule::{self, NextBackup};
use devenv_shared::lifecycle::state::{WorkspacePhase, WorkspaceState};
use devenv_shared::model::keys::{LAST_BACKUP_REF, WORKSPACE_CONTAINER};
use devenv_shared::model::keys::{OWNER_ANNOTATION, TIER_ANNOTATION, WORKSPACE_LABEL};
use devenv_shared::model::policy::Policy;
use devenv_shared::model::quantity::memory_bytes;
use devenv_shared::model::time::format_time;

use crate::cli::{ListFormat, ObjectFormat};
use crate::error::Error;
use crate::output;
use crate::pod_status;

/// The OWNER of a workspace whose StatefulSet carries no `devenv.io/owner` (made before
/// the webhook recorded owners, or without the webhook).
pub const UNKNOWN_OWNER: &str = "<unknown>";

/// The owner of a workspace: its StatefulSet's `devenv.io/owner`, else [`UNKNOWN_OWNER`].
pub fn owner_of(sts: &StatefulSet) -> String {
    sts.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(OWNER_ANNOTATION))
        .filter(|o| !o.is_empty())
        .cloned()
        .unwrap_or_else(|| UNKNOWN_OWNER.to_owned())
}

/// One row of `list`, and the `-o json|yaml` view of a workspace.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceSummary {
    pub name: String,
    pub namespace: String,
    /// `READY/REPLICAS`.
    pub ready: String,
    pub status: String,
    /// Who created the workspace (`devenv.io/owner`, recorded by the webhook);
    /// [`UNKNOWN_OWNER`] when it is not recorded.
    pub owner: String,
    pub tier: String,
    pub cpu: String,
    pub memory: String,
    pub storage: String,
    pub age: String,
    pub image: String,
    pub pods: Vec<PodSummary>,
    pub claims: Vec<ClaimSummary>,
    /// Why the StatefulSet cannot create its pods (latest FailedCreate event).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Latest recorded use (RFC 3339): an `exec` session's heartbeat, a start,
    /// CPU load seen by the lifecycle controller, else creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_activity: Option<String>,
    /// When the lifecycle controller will stop it for inactivity (RFC 3339);
    /// absent when it never will, or is not running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stops_at: Option<String>,
    /// When the lifecycle controller will delete it for having been stopped
    /// longer than its TTL (RFC 3339; claims kept unless the policy purges).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// When the last good backup was taken (RFC 3339; `devenv.io/last-backup`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<String>,
    /// Where it is (`REGISTRY/REPO@sha256:...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_backup_ref: Option<String>,
    /// When the lifecycle controller takes the next scheduled backup (RFC 3339, or
    /// `when started` for a stopped workspace backed up since it stopped); absent when the
    /// policy schedules none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_backup: Option<String>,
    /// LAST ACTIVITY, STOPS and EXPIRES as shown in the table (relative times).
    #[serde(skip)]
    pub lifecycle_columns: [String; 3],
    /// LAST BACKUP and NEXT BACKUP as `get` shows them.
    #[serde(skip)]
    pub backup_columns: [String; 2],
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSummary {
    pub name: String,
    pub phase: String,
    pub ready: bool,
    pub node: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimSummary {
    pub name: String,
    pub phase: String,
    /// The bound capacity (else the request).
    pub size: String,
    /// What the claim requests: above `size` while a resize is pending.
    pub requested: String,
    pub storage_class: String,
}

fn workspace_of<K: kube::Resource>(o: &K) -> Option<(String, String)> {
    let m = o.meta();
    let ws = m.labels.as_ref()?.get(WORKSPACE_LABEL)?.clone();
    Some((m.namespace.clone().unwrap_or_default(), ws))
}

/// A pod's STATUS word ([`pod_status::problem_word`]) with the claims of its workspace.
fn problem_word(pod: &Pod, claims: &[&PersistentVolumeClaim]) -> Option<String> {
    pod_status::problem_word(pod, |name| {
        claims
            .iter()
            .copied()
            .find(|c| c.metadata.name.as_deref() == Some(name))
    })
}

/// The STATUS column.
pub fn workspace_status(
    sts: &StatefulSet,
    pods: &[&Pod],
    claims: &[&PersistentVolumeClaim],
    failed_create: bool,
) -> String {
    let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    if sts.metadata.deletion_timestamp.is_some() {
        return "Terminating".into();
    }
    let phase = WorkspaceState::from_statefulset(sts).phase();
    if replicas == 0 {
        if !pods.is_empty() {
            return "Stopping".into();
        }
        return if phase == WorkspacePhase::Hibernated {
            "Hibernated"
        } else {
            "Stopped"
        }
        .into();
    }
    let ready = pods.iter().filter(|p| pod_status::is_ready(p)).count();
    let problem = pods.iter().find_map(|p| problem_word(p, claims));
    let status = sts.status.as_ref();
    let updating = status
        .is_some_and(|s| s.update_revision.is_some() && s.current_revision != s.update_revision);
    let with = |word: &str| match &problem {
        Some(p) => format!("{word} ({p})"),
        None => word.to_owned(),
    };
    if ready >= usize::try_from(replicas).unwrap_or(0) {
        if updating {
            "Updating".into()
        } else if phase == WorkspacePhase::Warned {
            // The lifecycle controller announced an idle stop.
            "Running (IdleWarning)".into()
        } else {
            "Running".into()
        }
    } else if updating {
        with("Updating")
    } else if ready > 0 {
        with("Degraded")
    } else if pods.is_empty() && failed_create {
        "Error (FailedCreate)".into()
    } else if pods.is_empty() {
        "Pending (NoPods)".into()
    } else {
        with("Pending")
    }
}

/// Bytes of a storage quantity (`10Gi`, `500M`), for adding claim sizes.
pub fn quantity_bytes(q: &str) -> Option<f64> {
    // f64 is exact enough for a display column.
    memory_bytes(q).ok().map(|b| b as f64)
}

/// Bytes as a short binary quantity: `30Gi`, `1.5Ti`, `512Mi`.
pub fn format_bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["Ki", "Mi", "Gi", "Ti", "Pi"];
    let mut value = b;
    let mut unit = "";
    for u in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = u;
    }
    let text = format!("{value:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text}{unit}")
}

/// kubectl-style age: `45s`, `5m`, `3h`, `2d`, `1y`.
pub fn format_age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=10_799 => format!("{}m", s / 60),
        10_800..=172_799 => format!("{}h", s / 3600),
        172_800..=63_071_999 => format!("{}d", s / 86_400),
        _ => format!("{}y", s / 31_536_000),
    }
}

/// What the claim requests (`spec.resources.requests.storage`).
fn claim_request(c: &PersistentVolumeClaim) -> Option<String> {
    c.spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")
        .map(|q| q.0.clone())
}

/// The claim's size: its bound capacity, else what it requests.
fn claim_size(c: &PersistentVolumeClaim) -> Option<String> {
    let bound = c
        .status
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|cap| cap.get("storage"))
        .map(|q| q.0.clone());
    bound.or_else(|| claim_request(c))
}

/// `actual->requested` while a resize is pending (the request above the capacity), else the
/// size alone.
fn sizes_cell(actual: f64, requested: f64) -> String {
    if requested > actual {
        format!("{}->{}", format_bytes(actual), format_bytes(requested))
    } else {
        format_bytes(actual)
    }
}

/// Joins a workspace's objects into its summary.
pub fn summarize(
    sts: &StatefulSet,
    pods: &[&Pod],
    claims: &[&PersistentVolumeClaim],
    failed_create: Option<&str>,
    policy: Option<&Policy>,
    now: Timestamp,
) -> WorkspaceSummary {
    let lifecycle = policy.map(|p| &p.lifecycle);
    let spec = sts.spec.as_ref();
    let state = WorkspaceState::from_statefulset(sts);
    let next_backup = policy
        .and_then(|p| p.backup.every)
        .map(|every| schedule::next_backup(&state, every, now));
    let last_activity = state.last_activity();
    let stops_at = lifecycle.and_then(|p| state.stops_at(p));
    let expires_at = lifecycle.and_then(|p| state.expires_at(p));
    let running = state.replicas > 0;
    let lifecycle_columns = [
        last_activity
            .map(|t| format!("{} ago", format_age(now.as_second() - t.as_second())))
            .unwrap_or_else(|| "-".into()),
        match (lifecycle, stops_at) {
            (_, _) if !running => "-".into(),
            (None, _) => "unknown".into(),
            (Some(_), None) => "never".into(),
            (Some(_), Some(t)) => relative(now, t),
        },
        match (lifecycle, expires_at) {
            (_, _) if running => "-".into(),
            (None, _) => "unknown".into(),
            (Some(_), None) => "never".into(),
            (Some(_), Some(t)) => relative(now, t),
        },
    ];
    let replicas = spec.and_then(|s| s.replicas).unwrap_or(1);
    let ready = pods.iter().filter(|p| pod_status::is_ready(p)).count();
    let container = spec
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.iter().find(|c| c.name == WORKSPACE_CONTAINER));
    let request = |r: &str| {
        container
            .and_then(|c| c.resources.as_ref()?.requests.as_ref()?.get(r))
            .map(|q| q.0.clone())
            .unwrap_or_else(|| "-".into())
    };
    let total: Option<f64> = if claims.is_empty() {
        // No claims yet: what each pod will get.
        spec.and_then(|s| s.volume_claim_templates.as_ref())
            .map(|t| {
                t.iter()
                    .filter_map(|c| claim_size(c).and_then(|q| quantity_bytes(&q)))
                    .sum()
            })
    } else {
        Some(
            claims
                .iter()
                .filter_map(|c| claim_size(c).and_then(|q| quantity_bytes(&q)))
                .sum(),
        )
    };
    // The sum of the requests where they are above the capacity (a resize is pending).
    let requested: Option<f64> = (!claims.is_empty()).then(|| {
        claims
            .iter()
            .filter_map(|c| {
                let actual = claim_size(c).and_then(|q| quantity_bytes(&q))?;
                let asked = claim_request(c).and_then(|q| quantity_bytes(&q));
                Some(asked.map_or(actual, |a| a.max(actual)))
            })
            .sum()
    });
    let age = sts
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| format_age(now.as_second() - t.0.as_second()))
        .unwrap_or_else(|| "-".into());
    let mut pod_summaries: Vec<PodSummary> = pods
        .iter()
        .map(|p| PodSummary {
            name: p.metadata.name.clone().unwrap_or_default(),
            phase: p
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_else(|| "Unknown".into()),
            ready: pod_status::is_ready(p),
            node: p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default(),
        })
        .collect();
    pod_summaries.sort_by(|a, b| a.name.cmp(&b.name));
    let mut claim_summaries: Vec<ClaimSummary> = claims
        .iter()
        .map(|c| ClaimSummary {
            name: c.metadata.name.clone().unwrap_or_default(),
            phase: c
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_else(|| "Unknown".into()),
            size: claim_size(c).unwrap_or_default(),
            requested: claim_request(c).unwrap_or_default(),
            storage_class: c
                .spec
                .as_ref()
                .and_then(|s| s.storage_class_name.clone())
                .unwrap_or_default(),
        })
        .collect();
    claim_summaries.sort_by(|a, b| a.name.cmp(&b.name));
    WorkspaceSummary {
        name: sts.metadata.name.clone().unwrap_or_default(),
        namespace: sts.metadata.namespace.clone().unwrap_or_default(),
        ready: format!("{ready}/{replicas}"),
        status: workspace_status(sts, pods, claims, failed_create.is_some()),
        owner: owner_of(sts),
        tier: sts
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(TIER_ANNOTATION).cloned())
            .unwrap_or_else(|| "-".into()),
        cpu: request("cpu"),
        memory: request("memory"),
        storage: match (total, requested) {
            (Some(t), Some(r)) => sizes_cell(t, r),
            (Some(t), None) => format_bytes(t),
            _ => "-".into(),
        },
        age,
        image: container.and_then(|c| c.image.clone()).unwrap_or_default(),
        pods: pod_summaries,
        claims: claim_summaries,
        // Only while it explains missing pods.
        message: failed_create
            .filter(|_| usize::try_from(replicas).is_ok_and(|r| pods.len() < r))
            .map(str::to_owned),
        last_activity: last_activity.map(format_time),
        stops_at: stops_at.map(format_time),
        expires_at: expires_at.map(format_time),
        last_backup: state.last_backup.map(format_time),
        last_backup_ref: sts
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(LAST_BACKUP_REF).cloned()),
        backup_columns: [
            state
                .last_backup
                .map(|t| format!("{} ago", format_age(now.as_second() - t.as_second())))
                .unwrap_or_else(|| "never".into()),
            match (policy, next_backup) {
                (None, _) => "unknown".into(),
                (Some(_), None) => "not scheduled".into(),
                (Some(_), Some(NextBackup::At(t))) => relative(now, t),
                (Some(_), Some(NextBackup::WhenStarted)) => "when started".into(),
            },
        ],
        next_backup: next_backup.map(|n| match n {
            NextBackup::At(t) => format_time(t.max(now)),
            NextBackup::WhenStarted => "when started".to_owned(),
        }),
        lifecycle_columns,
    }
}

/// A future time as `in 55m`; one already passed (the controller acts on its
/// next look) as `due`.
fn relative(now: Timestamp, t: Timestamp) -> String {
    let seconds = t.as_second() - now.as_second();
    if seconds <= 0 {
        "due".into()
    } else {
        format!("in {}", format_age(seconds))
    }
}

/// The latest FailedCreate message per (namespace, StatefulSet) from a list of
/// events (newest wins).
pub fn failed_creates(events: &[Event]) -> BTreeMap<(String, String), (Option<Timestamp>, String)> {
    let mut latest: BTreeMap<(String, String), (Option<Timestamp>, String)> = BTreeMap::new();
    for e in events {
        if e.reason.as_deref() != Some("FailedCreate")
            || e.involved_object.kind.as_deref() != Some("StatefulSet")
        {
            continue;
        }
        let key = (
            e.involved_object
                .namespace
                .clone()
                .or_else(|| e.metadata.namespace.clone())
                .unwrap_or_default(),
            e.involved_object.name.clone().unwrap_or_default(),
        );
        let when = e
            .last_timestamp
            .as_ref()
            .map(|t| t.0)
            .or_else(|| e.event_time.as_ref().map(|t| t.0))
            .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0));
        let newer = latest.get(&key).is_none_or(|(t, _)| when >= *t);
        if newer {
            latest.insert(key, (when, e.message.clone().unwrap_or_default()));
        }
    }
    latest
}

/// Groups pods and claims by (namespace, workspace) and summarizes every StatefulSet.
pub fn join(
    stateful_sets: &[StatefulSet],
    pods: &[Pod],
    claims: &[PersistentVolumeClaim],
    events: &[Event],
    policy: Option<&Policy>,
    now: Timestamp,
) -> Vec<WorkspaceSummary> {
    let failed = failed_creates(events);
    let mut pods_by: BTreeMap<(String, String), Vec<&Pod>> = BTreeMap::new();
    for p in pods {
        if let Some(key) = workspace_of(p) {
            pods_by.entry(key).or_default().push(p);
        }
    }
    let mut claims_by: BTreeMap<(String, String), Vec<&PersistentVolumeClaim>> = BTreeMap::new();
    for c in claims {
        if let Some(key) = workspace_of(c) {
            claims_by.entry(key).or_default().push(c);
        }
    }
    let mut out: Vec<WorkspaceSummary> = stateful_sets
        .iter()
        .map(|s| {
            let key = (
                s.metadata.namespace.clone().unwrap_or_default(),
                s.metadata.name.clone().unwrap_or_default(),
            );
            let p = pods_by.get(&key).cloned().unwrap_or_default();
            let c = claims_by.get(&key).cloned().unwrap_or_default();
            // An event older than the StatefulSet is about an earlier one.
            let created = s.metadata.creation_timestamp.as_ref().map(|t| t.0);
            let msg = failed
                .get(&key)
                .filter(|(when, _)| match (when, created) {
                    (Some(w), Some(c)) => *w >= c,
                    _ => true,
                })
                .map(|(_, m)| m.as_str());
            summarize(s, &p, &c, msg, policy, now)
        })
        .collect();
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out
}

/// Renders summaries as kubectl renders tables: left-aligned, 3 spaces apart.
/// `get NAME` and `-o wide` add the lifecycle columns (LAST ACTIVITY, STOPS, EXPIRES).
pub fn table(
    rows: &[WorkspaceSummary],
    all_namespaces: bool,
    wide: bool,
    lifecycle: bool,
) -> String {
    let mut header = vec![
        "NAME", "READY", "STATUS", "OWNER", "TIER", "CPU/MEM", "STORAGE", "AGE",
    ];
    if all_namespaces {
        header.insert(0, "NAMESPACE");
    }
    if lifecycle {
        header.extend([
            "LAST ACTIVITY",
            "STOPS",
            "EXPIRES",
            "LAST BACKUP",
            "NEXT BACKUP",
        ]);
    }
    if wide {
        header.extend(["IMAGE", "PODS", "NODES"]);
    }
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|s| (*s).to_owned()).collect()];
    for r in rows {
        let mut line = vec![
            r.name.clone(),
            r.ready.clone(),
            r.status.clone(),
            r.owner.clone(),
            r.tier.clone(),
            format!("{}/{}", r.cpu, r.memory),
            r.storage.clone(),
            r.age.clone(),
        ];
        if all_namespaces {
            line.insert(0, r.namespace.clone());
        }
        if lifecycle {
            line.extend(r.lifecycle_columns.iter().cloned());
            line.extend(r.backup_columns.iter().cloned());
        }
        if wide {
            let join = |v: Vec<String>| {
                if v.is_empty() {
                    "<none>".to_owned()
                } else {
                    v.join(",")
                }
            };
            let mut nodes: Vec<String> = r
                .pods
                .iter()
                .map(|p| p.node.clone())
                .filter(|n| !n.is_empty())
                .collect();
            nodes.dedup();
            line.extend([
                r.image.clone(),
                join(r.pods.iter().map(|p| p.name.clone()).collect()),
                join(nodes),
            ]);
        }
        lines.push(line);
    }
    align(&lines)
}

/// Lines of cells as kubectl prints a table: each column left-aligned to its widest
/// cell, 3 spaces apart, no trailing spaces. The first line is the header.
pub fn align(lines: &[Vec<String>]) -> String {
    let columns = lines.first().map(Vec::len).unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            lines
                .iter()
                .filter_map(|l| l.get(i))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for l in lines {
        let mut row = String::new();
        for (i, cell) in l.iter().enumerate() {
            if i + 1 == l.len() {
                row.push_str(cell);
            } else {
                let w = widths.get(i).copied().unwrap_or(0);
                row.push_str(&format!("{cell:<w$}   "));
            }
        }
        out.push_str(row.trim_end());
        out.push('\n');
    }
    out
}

/// What `list` / `get` print: the table or the objects on stdout, and on
/// stderr what does not fit in a column (why pods are missing) or that
/// nothing was found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    pub stdout: String,
    pub stderr: String,
}

/// Renders summaries in `format` (`None`: the table). `single` is `get NAME`:
/// the lifecycle columns always, and one object rather than a list.
pub fn render(
    rows: &[WorkspaceSummary],
    format: Option<ListFormat>,
    all_namespaces: bool,
    single: bool,
) -> Result<Rendered, Error> {
    let mut out = Rendered::default();
    match format {
        None | Some(ListFormat::Wide) => {
            if rows.is_empty() {
                out.stderr.push_str("No workspaces found.\n");
            } else {
                let wide = format == Some(ListFormat::Wide);
                out.stdout = table(rows, all_namespaces, wide, wide || single);
                // Why pods are missing is too long for a column: say it below.
                for r in rows {
                    if let Some(m) = &r.message {
                        out.stderr.push_str(&format!("{}: {m}\n", r.name));
                    }
                }
            }
        }
        Some(ListFormat::Name) => {
            for r in rows {
                out.stdout.push_str(&format!("workspace/{}\n", r.name));
            }
        }
        Some(f @ (ListFormat::Json | ListFormat::Yaml)) => {
            let value = if single {
                output::to_value(&rows.first())?
            } else {
                serde_json::json!({ "items": rows })
            };
            let format = if f == ListFormat::Json {
                ObjectFormat::Json
            } else {
                ObjectFormat::Yaml
            };
            out.stdout = output::render(&[value], format)?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use devenv_shared::build::workspace::{build, WorkspaceSpec};
    use devenv_shared::model::policy::Policy;
    use k8s_openapi::api::apps::v1::StatefulSetStatus;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateWaiting, ContainerStatus, PersistentVolumeClaimStatus,
        PodCondition, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use std::collections::BTreeMap;

    fn sts(name: &str, ns: &str, replicas: i32) -> StatefulSet {
        let mut s = WorkspaceSpec::new(name, ns, "img");
        s.replicas = replicas;
        let mut sts = build(&s, &Policy::default()).unwrap().stateful_set;
        sts.metadata.creation_timestamp = Some(Time("2026-01-01T00:00:00Z".parse().unwrap()));
        sts
    }

    fn pod(name: &str, ns: &str, ws: &str, ready: bool, waiting: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                labels: Some(BTreeMap::from([(
                    WORKSPACE_LABEL.to_owned(),
                    ws.to_owned(),
                )])),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some(if ready { "Running" } else { "Pending" }.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                container_statuses: waiting.map(|r| {
                    vec![ContainerStatus {
                        name: "workspace".into(),
                        state: Some(ContainerState {
                            waiting: Some(ContainerStateWaiting {
                                reason: Some(r.into()),
                                message: None,
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        }
    }

    fn claim(name: &str, ns: &str, ws: &str, size: &str) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                labels: Some(BTreeMap::from([(
                    WORKSPACE_LABEL.to_owned(),
                    ws.to_owned(),
                )])),
                ..Default::default()
            },
            spec: None,
            status: Some(PersistentVolumeClaimStatus {
                phase: Some("Bound".into()),
                capacity: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(size.into()),
                )])),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn statuses() {
        let s = sts("a", "n", 1);
        assert_eq!(
            workspace_status(&s, &[&pod("a-0", "n", "a", true, None)], &[], false),
            "Running"
        );
        assert_eq!(
            workspace_status(
                &s,
                &[&pod("a-0", "n", "a", false, Some("ImagePullBackOff"))],
                &[],
                false
            ),
            "Pending (ImagePullBackOff)"
        );
        assert_eq!(workspace_status(&s, &[], &[], false), "Pending (NoPods)");
        assert_eq!(workspace_status(&s, &[], &[], true), "Error (FailedCreate)");
        let s2 = sts("a", "n", 2);
        assert_eq!(
            workspace_status(
                &s2,
                &[
                    &pod("a-0", "n", "a", true, None),
                    &pod("a-1", "n", "a", false, Some("CrashLoopBackOff"))
                ],
                &[],
                false
            ),
            "Degraded (CrashLoopBackOff)"
        );
        let stopped = sts("a", "n", 0);
        assert_eq!(workspace_status(&stopped, &[], &[], false), "Stopped");
        assert_eq!(
            workspace_status(&stopped, &[&pod("a-0", "n", "a", true, None)], &[], false),
            "Stopping"
        );
        let mut hibernated = stopped.clone();
        hibernated
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(
                devenv_shared::model::keys::HIBERNATED.into(),
                "2026-01-02T00:00:00Z".into(),
            );
        assert_eq!(workspace_status(&hibernated, &[], &[], false), "Hibernated");
        let mut updating = s.clone();
        updating.status = Some(StatefulSetStatus {
            current_revision: Some("a-1".into()),
            update_revision: Some("a-2".into()),
            ..Default::default()
        });
        assert_eq!(
            workspace_status(&updating, &[&pod("a-0", "n", "a", false, None)], &[], false),
            "Updating (ContainerCreating)"
        );
        assert_eq!(
            workspace_status(&updating, &[&pod("a-0", "n", "a", true, None)], &[], false),
            "Updating"
        );
    }

    #[test]
    fn a_pending_resize_shows_actual_and_requested_sizes() {
        let now: Timestamp = "2026-01-03T00:00:00Z".parse().unwrap();
        let mut growing = claim("workspace-a-0", "n1", "a", "10Gi");
        growing.spec = Some(k8s_openapi::api::core::v1::PersistentVolumeClaimSpec {
            resources: Some(k8s_openapi::api::core::v1::VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".into(),
                    Quantity("50Gi".into()),
                )])),
                limits: None,
            }),
            ..Default::default()
        });
        let claims = [growing, claim("history-a-0", "n1", "a", "1Gi")];
        let rows = join(&[sts("a", "n1", 1)], &[], &claims, &[], None, now);
        assert_eq!(rows[0].storage, "11Gi->51Gi");
        let c = &rows[0].claims[rows[0].claims.len() - 1];
        assert_eq!((c.size.as_str(), c.requested.as_str()), ("10Gi", "50Gi"));
        // Once the driver grew it, one size again.
        let mut grown = claims.clone();
        if let Some(cap) = grown[0].status.as_mut().and_then(|s| s.capacity.as_mut()) {
            cap.insert("storage".into(), Quantity("50Gi".into()));
        }
        let rows = join(&[sts("a", "n1", 1)], &[], &grown, &[], None, now);
        assert_eq!(rows[0].storage, "51Gi");
    }

    #[test]
    fn join_uses_one_list_per_kind_and_groups_by_namespace_and_name() {
        let now: Timestamp = "2026-01-03T00:00:00Z".parse().unwrap();
        let rows = join(
            &[sts("b", "n2", 1), sts("a", "n1", 1), sts("a", "n2", 1)],
            &[
                pod("a-0", "n1", "a", true, None),
                pod("a-0", "n2", "a", false, Some("ErrImagePull")),
            ],
            &[
                claim("workspace-a-0", "n1", "a", "10Gi"),
                claim("history-a-0", "n1", "a", "1Gi"),
                claim("workspace-b-0", "n2", "b", "10Gi"),
            ],
            &[failed_create("n2", "b", "quota exceeded")],
            None,
            now,
        );
        let ids: Vec<(String, String)> = rows
            .iter()
            .map(|r| (r.namespace.clone(), r.name.clone()))
            .collect();
        assert_eq!(
            ids,
            vec![
                ("n1".into(), "a".into()),
                ("n2".into(), "a".into()),
                ("n2".into(), "b".into())
            ]
        );
        assert_eq!(rows[0].ready, "1/1");
        assert_eq!(rows[0].status, "Running");
        assert_eq!(rows[0].storage, "11Gi");
        assert_eq!(rows[0].tier, "small");
        assert_eq!(
            (rows[0].cpu.as_str(), rows[0].memory.as_str()),
            ("500m", "2Gi")
        );
        assert_eq!(rows[0].age, "2d");
        assert_eq!(rows[1].status, "Pending (ErrImagePull)");
        // No claims yet: the templates' total.
        assert_eq!(rows[2].status, "Error (FailedCreate)");
        assert_eq!(rows[2].message.as_deref(), Some("quota exceeded"));
        assert!(rows[0].message.is_none());
        assert_eq!(rows[2].storage, "10Gi");

        let t = table(&rows, true, false, false);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].starts_with("NAMESPACE   NAME   READY   STATUS"),
            "{t}"
        );
        assert!(lines[0].ends_with("AGE"));
        assert_eq!(lines.len(), 4);
        let wide = table(&rows, false, true, true);
        let header = wide.lines().next().unwrap();
        assert!(
            header.split_whitespace().collect::<Vec<_>>()[8..]
                == [
                    "LAST", "ACTIVITY", "STOPS", "EXPIRES", "LAST", "BACKUP", "NEXT", "BACKUP",
                    "IMAGE", "PODS", "NODES"
                ],
            "{wide}"
        );
        assert!(!wide.contains("NAMESPACE"));
    }

    #[test]
    fn owner_column_from_the_statefulset_annotation() {
        let now: Timestamp = "2026-01-03T00:00:00Z".parse().unwrap();
        let mut owned = sts("mine", "n", 1);
        owned
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(OWNER_ANNOTATION.to_owned(), "alice".to_owned());
        let mut empty = sts("empty", "n", 1);
        empty
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(OWNER_ANNOTATION.to_owned(), String::new());
        let rows = join(
            &[owned, sts("old", "n", 1), empty],
            &[],
            &[],
            &[],
            None,
            now,
        );
        let owner = |n: &str| {
            rows.iter()
                .find(|r| r.name == n)
                .map(|r| r.owner.clone())
                .unwrap()
        };
        assert_eq!(owner("mine"), "alice");
        assert_eq!(owner("old"), "<unknown>");
        assert_eq!(owner("empty"), "<unknown>");
        let t = table(&rows, false, false, false);
        let header = t.lines().next().unwrap();
        let column = header.find("OWNER").unwrap();
        assert!(header[..column].contains("STATUS"), "{t}");
        let mine = t.lines().find(|l| l.starts_with("mine")).unwrap();
        assert!(mine[column..].starts_with("alice   "), "{t}");
        let old = t.lines().find(|l| l.starts_with("old")).unwrap();
        assert!(old[column..].starts_with("<unknown>   "), "{t}");
        // get NAME shows it too, and -o json carries it.
        let out = render(&rows[..1], None, false, true).unwrap();
        assert!(out.stdout.lines().next().unwrap().contains("OWNER"));
        let out = render(&rows, Some(ListFormat::Json), false, false).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        let owners: Vec<&str> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["owner"].as_str().unwrap())
            .collect();
        assert_eq!(owners, ["<unknown>", "alice", "<unknown>"]);
    }

    #[test]
    fn lifecycle_columns_for_get() {
        use devenv_shared::model::keys::{IDLE_TIMEOUT, LAST_ACTIVITY, STOPPED_AT};
        let now: Timestamp = "2026-01-03T00:00:00Z".parse().unwrap();
        let annotate = |mut s: StatefulSet, set: &[(&str, &str)]| {
            let a = s.metadata.annotations.get_or_insert_with(BTreeMap::new);
            for (k, v) in set {
                a.insert((*k).to_owned(), (*v).to_owned());
            }
            s
        };
        let policy = Policy {
            lifecycle: devenv_shared::model::lifecycle_policy::LifecyclePolicy {
                idle_timeout: Some(std::time::Duration::from_secs(2 * 3600)),
                stopped_ttl: Some(std::time::Duration::from_secs(7 * 86_400)),
                ..Default::default()
            },
            ..Default::default()
        };
        let busy = annotate(
            sts("busy", "n", 1),
            &[(LAST_ACTIVITY, "2026-01-02T23:55:00Z")],
        );
        let never = annotate(sts("never", "n", 1), &[(IDLE_TIMEOUT, "0")]);
        let stopped = annotate(
            sts("stopped", "n", 0),
            &[(STOPPED_AT, "2026-01-01T00:00:00Z")],
        );
        let rows = join(&[busy, never, stopped], &[], &[], &[], Some(&policy), now);
        let by = |n: &str| rows.iter().find(|r| r.name == n).unwrap();
        assert_eq!(
            by("busy").last_activity.as_deref(),
            Some("2026-01-02T23:55:00Z")
        );
        assert_eq!(by("busy").stops_at.as_deref(), Some("2026-01-03T01:55:00Z"));
        assert_eq!(by("busy").lifecycle_columns, ["5m ago", "in 115m", "-"]);
        assert_eq!(by("never").stops_at, None);
        assert_eq!(by("never").lifecycle_columns[1], "never");
        assert_eq!(
            by("stopped").expires_at.as_deref(),
            Some("2026-01-08T00:00:00Z")
        );
        assert_eq!(by("stopped").lifecycle_columns[1..], ["-", "in 5d"]);
        // JSON carries absolute times, not the table's relative ones.
        let json = serde_json::to_value(by("busy")).unwrap();
        assert_eq!(json["stopsAt"], "2026-01-03T01:55:00Z");
        assert!(json.get("expiresAt").is_none() && json.get("lifecycleColumns").is_none());
        // Without the policy the plugin does not guess.
        let unknown = join(&[sts("x", "n", 1)], &[], &[], &[], None, now);
        assert_eq!(unknown[0].lifecycle_columns[1], "unknown");
        let t = table(&rows, false, false, true);
        let header: Vec<&str> = t.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(
            header[8..],
            ["LAST", "ACTIVITY", "STOPS", "EXPIRES", "LAST", "BACKUP", "NEXT", "BACKUP"],
            "{t}"
        );
        // No schedule in the policy: never backed up, none scheduled.
        assert_eq!(by("busy").backup_columns, ["never", "not scheduled"]);
        assert_eq!(by("busy").next_backup, None);
    }

    #[test]
    fn get_shows_the_last_backup_and_when_the_next_is_due() {
        use devenv_shared::model::keys::{LAST_BACKUP, STOPPED_AT};
        let now: Timestamp = "2026-01-03T00:00:00Z".parse().unwrap();
        let mut policy = Policy::default();
        policy.backup.repository = Some("reg.example.com/b".into());
        policy.backup.every = Some(std::time::Duration::from_secs(86_400));
        let annotate = |mut s: StatefulSet, set: &[(&str, &str)]| {
            let a = s.metadata.annotations.get_or_insert_with(BTreeMap::new);
            for (k, v) in set {
                a.insert((*k).to_owned(), (*v).to_owned());
            }
            s
        };
        let backed_up = annotate(
            sts("backed", "n", 1),
            &[
                (LAST_BACKUP, "2026-01-02T18:00:00Z"),
                (LAST_BACKUP_REF, "reg.example.com/b@sha256:ab"),
            ],
        );
        let stopped = annotate(
            sts("stopped", "n", 0),
            &[
                (STOPPED_AT, "2026-01-01T00:00:00Z"),
                (LAST_BACKUP, "2026-01-01T00:00:05Z"),
            ],
        );
        let rows = join(&[backed_up, stopped], &[], &[], &[], Some(&policy), now);
        let by = |n: &str| rows.iter().find(|r| r.name == n).unwrap();
        assert_eq!(by("backed").backup_columns, ["6h ago", "in 18h"]);
        assert_eq!(
            by("backed").next_backup.as_deref(),
            Some("2026-01-03T18:00:00Z")
        );
        assert_eq!(
            by("backed").last_backup_ref.as_deref(),
            Some("reg.example.com/b@sha256:ab")
        );
        assert_eq!(by("stopped").backup_columns[1], "when started");
        let json = serde_json::to_value(by("backed")).unwrap();
        assert_eq!(json["lastBackup"], "2026-01-02T18:00:00Z");
        assert_eq!(json["nextBackup"], "2026-01-03T18:00:00Z");
        // Without the policy the plugin does not guess.
        let unknown = join(&[sts("x", "n", 1)], &[], &[], &[], None, now);
        assert_eq!(unknown[0].backup_columns, ["never", "unknown"]);
    }

    fn failed_create(ns: &str, name: &str, msg: &str) -> Event {
        Event {
            involved_object: k8s_openapi::api::core::v1::ObjectReference {
                kind: Some("StatefulSet".into()),
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            reason: Some("FailedCreate".into()),
            message: Some(msg.into()),
            ..Default::default()
        }
    }

    #[test]
    fn formats() {
        assert_eq!(format_age(5), "5s");
        assert_eq!(format_age(600), "10m");
        assert_eq!(format_age(4 * 3600), "4h");
        assert_eq!(format_age(3 * 86_400), "3d");
        assert_eq!(format_age(800 * 86_400), "2y");
        assert_eq!(format_bytes(quantity_bytes("12Gi").unwrap()), "12Gi");
        assert_eq!(format_bytes(quantity_bytes("1536Mi").unwrap()), "1.5Gi");
        assert_eq!(format_bytes(quantity_bytes("100").unwrap()), "100");
        assert!(quantity_bytes("lots").is_none());
    }

    #[test]
    fn rendering_per_format() {
        let now: Timestamp = "2026-01-03T00:00:00Z".parse().unwrap();
        let rows = join(
            &[sts("a", "n", 1), sts("b", "n", 1)],
            &[],
            &[],
            &[failed_create("n", "b", "quota exceeded")],
            None,
            now,
        );
        let out = render(&rows, None, false, false).unwrap();
        assert!(
            out.stdout.starts_with("NAME   READY   STATUS"),
            "{}",
            out.stdout
        );
        assert_eq!(out.stderr, "b: quota exceeded\n");
        let out = render(&rows, Some(ListFormat::Name), false, false).unwrap();
        assert_eq!(out.stdout, "workspace/a\nworkspace/b\n");
        let out = render(&[], None, false, false).unwrap();
        assert_eq!(
            (out.stdout.as_str(), out.stderr.as_str()),
            ("", "No workspaces found.\n")
        );
        let out = render(&rows, Some(ListFormat::Json), false, false).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["items"][1]["name"], "b");
        let out = render(&rows[..1], Some(ListFormat::Yaml), false, true).unwrap();
        let v: serde_json::Value = serde_yaml::from_str(&out.stdout).unwrap();
        assert_eq!(v["name"], "a");
        // get NAME: the lifecycle columns even without -o wide.
        let out = render(&rows[..1], None, false, true).unwrap();
        let header: Vec<&str> = out
            .stdout
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        assert_eq!(
            header[8..],
            ["LAST", "ACTIVITY", "STOPS", "EXPIRES", "LAST", "BACKUP", "NEXT", "BACKUP"],
            "{}",
            out.stdout
        );
    }
}
