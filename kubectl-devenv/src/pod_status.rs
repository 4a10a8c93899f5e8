//! What keeps a workspace pod from being ready, read once for every command:
//! `list` shows it as a word in STATUS ([`problem_word`]), `create --wait`
//! explains it with a hint ([`ContainerProblem::blocker`],
//! [`Unschedulable::blocker`]) and `exec` refuses a pod that cannot take a
//! session ([`exec_refusal`]).
//!
//! Pure: functions over a [`Pod`] (and its claims, when binding matters); no
//! API calls. Events are the caller's (only `wait` watches them).

use k8s_openapi::api::core::v1::{ContainerStatus, PersistentVolumeClaim, Pod, PodCondition};

use devenv_shared::model::keys::CLONE_CONTAINER;

/// Waiting reasons that are normal progress, not a problem.
const PROGRESS_REASONS: [&str; 2] = ["ContainerCreating", "PodInitializing"];

/// Why a workspace is not progressing, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocker {
    pub reason: String,
    pub hint: String,
    /// Waiting longer will not help: stop and report.
    pub fatal: bool,
}

impl Blocker {
    pub fn new(reason: String, hint: &str, fatal: bool) -> Self {
        Self {
            reason,
            hint: hint.to_owned(),
            fatal,
        }
    }
}

fn conditions(pod: &Pod) -> impl Iterator<Item = &PodCondition> {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
}

fn condition_is(pod: &Pod, type_: &str, status: &str) -> bool {
    conditions(pod).any(|c| c.type_ == type_ && c.status == status)
}

/// The pod's name, for messages.
pub fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

/// The pod's phase (`Pending`, `Running`...), `Unknown` when it has none.
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Unknown")
}

/// Condition Ready is True.
pub fn is_ready(pod: &Pod) -> bool {
    condition_is(pod, "Ready", "True")
}

/// Condition PodScheduled is True.
pub fn is_scheduled(pod: &Pod) -> bool {
    condition_is(pod, "PodScheduled", "True")
}

/// The scheduler's refusal (condition PodScheduled False).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unschedulable {
    /// `Unschedulable` unless the scheduler said otherwise.
    pub reason: String,
    /// The scheduler's message: `0/3 nodes are available: 3 Insufficient cpu.`
    pub message: String,
}

impl Unschedulable {
    /// What to do, from the scheduler's message.
    pub fn hint(&self) -> &'static str {
        let msg = self.message.as_str();
        // "unbound immediate PersistentVolumeClaims", "didn't find available
        // persistent volumes to bind": matched without case.
        let lower = msg.to_lowercase();
        if msg.contains("no nodes available") || msg.starts_with("0/0") {
            "the cluster has no schedulable nodes"
        } else if msg.contains("Insufficient") {
            "no node has room for this tier: choose a smaller --tier, or add nodes"
        } else if lower.contains("persistentvolumeclaim") || lower.contains("volume") {
            "a volume cannot be provisioned: check --storage-class and `kubectl devenv status`"
        } else {
            "the scheduler keeps trying; this may resolve when nodes free up"
        }
    }

    /// `create --wait`'s explanation.
    pub fn blocker(&self, pod: &str) -> Blocker {
        Blocker::new(
            format!("pod {pod} is Pending ({}): {}", self.reason, self.message),
            self.hint(),
            false,
        )
    }
}

/// Why the scheduler did not place the pod, if it said so.
pub fn unschedulable(pod: &Pod) -> Option<Unschedulable> {
    conditions(pod)
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        .map(|c| Unschedulable {
            reason: c.reason.clone().unwrap_or_else(|| "Unschedulable".into()),
            message: c.message.clone().unwrap_or_default(),
        })
}

/// The claims the pod mounts, in volume order.
pub fn claim_names(pod: &Pod) -> Vec<String> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| Some(v.persistent_volume_claim.as_ref()?.claim_name.clone()))
        .collect()
}

/// A claim is bound (a missing one is not).
pub fn is_bound(claim: Option<&PersistentVolumeClaim>) -> bool {
    claim
        .and_then(|c| c.status.as_ref())
        .and_then(|s| s.phase.as_deref())
        == Some("Bound")
}

/// A container waiting for something other than normal progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerProblem {
    pub container: String,
    /// An init container (`clone`).
    pub init: bool,
    /// kubelet's waiting reason: `ImagePullBackOff`, `CrashLoopBackOff`...
    pub reason: String,
    pub message: String,
    /// Exit code of the last run, when it ran and ended.
    pub last_exit_code: Option<i32>,
}

impl ContainerProblem {
    fn of(cs: &ContainerStatus, init: bool) -> Option<Self> {
        let waiting = cs.state.as_ref()?.waiting.as_ref()?;
        let reason = waiting.reason.clone()?;
        if reason.is_empty() || PROGRESS_REASONS.contains(&reason.as_str()) {
            return None;
        }
        Some(Self {
            container: cs.name.clone(),
            init,
            reason,
            message: waiting.message.clone().unwrap_or_default(),
            last_exit_code: cs
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map(|t| t.exit_code),
        })
    }

    /// The STATUS word: the reason, `Init:` in front for an init container.
    pub fn word(&self) -> String {
        if self.init {
            format!("Init:{}", self.reason)
        } else {
            self.reason.clone()
        }
    }

    /// `create --wait`'s explanation, with what to do.
    pub fn blocker(&self, pod: &str) -> Blocker {
        let what = format!("pod {pod} container {}: {}", self.container, self.reason);
        let with_message = if self.message.is_empty() {
            what.clone()
        } else {
            format!("{what}: {}", self.message)
        };
        match self.reason.as_str() {
            "ErrImagePull" | "ImagePullBackOff" => Blocker::new(
                format!("{what}: {}", self.message),
                "check the image name and tag (--image), and that the nodes may pull it (registry credentials)",
                false,
            ),
            "InvalidImageName" => {
                Blocker::new(format!("{what}: {}", self.message), "fix --image", true)
            }
            "CreateContainerConfigError" => Blocker::new(
                format!("{what}: {}", self.message),
                "a referenced Secret or ConfigMap is missing or invalid",
                false,
            ),
            "CrashLoopBackOff" => {
                let hint = if self.container == CLONE_CONTAINER {
                    "cloning failed: check --repo and --branch, and that the repository is reachable (logs: kubectl logs POD -c clone)"
                } else if self.last_exit_code == Some(0) {
                    "the image's command exits at once (an interactive shell?): re-create the workspace with --keep-alive"
                } else {
                    "the container keeps exiting; see its logs with kubectl logs POD -c workspace --previous"
                };
                Blocker::new(
                    format!(
                        "{what} (last exit code {})",
                        self.last_exit_code
                            .map(|c| c.to_string())
                            .unwrap_or_else(|| "unknown".into())
                    ),
                    hint,
                    false,
                )
            }
            // Any other reason kubelet gives (CreateContainerError,
            // RunContainerError...): named as it is; kubelet retries.
            _ => Blocker::new(with_message, "", false),
        }
    }
}

/// Containers waiting for something other than normal progress: init
/// containers first, then the others, each in the pod's order.
pub fn container_problems(pod: &Pod) -> Vec<ContainerProblem> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let inits = status
        .init_container_statuses
        .iter()
        .flatten()
        .filter_map(|cs| ContainerProblem::of(cs, true));
    let mains = status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|cs| ContainerProblem::of(cs, false));
    inits.chain(mains).collect()
}

/// The container (not an init container) named `container` is running.
pub fn container_running(pod: &Pod, container: &str) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .any(|cs| cs.name == container && cs.state.as_ref().is_some_and(|s| s.running.is_some()))
}

/// What keeps a pod from being ready, in a word, as kubectl shows reasons
/// (`list`'s STATUS column): `Terminating`, a container's waiting reason
/// (`Init:` in front for an init container), the scheduler's reason, then
/// `ClaimPending` for a pending pod with a claim not bound yet, then
/// `ContainerCreating` for any other pending pod. `None`: nothing to say (it
/// runs; readiness is counted apart). `claim` finds a claim by name.
pub fn problem_word<'a>(
    pod: &Pod,
    claim: impl Fn(&str) -> Option<&'a PersistentVolumeClaim>,
) -> Option<String> {
    if pod.metadata.deletion_timestamp.is_some() {
        return Some("Terminating".into());
    }
    pod.status.as_ref()?;
    if let Some(p) = container_problems(pod).first() {
        return Some(p.word());
    }
    // The scheduler's word first: with WaitForFirstConsumer storage the
    // claims of an unschedulable pod wait for it, they are not the cause.
    if let Some(u) = unschedulable(pod) {
        return Some(u.reason);
    }
    let pending = phase(pod) == "Pending";
    if pending && claim_names(pod).iter().any(|c| !is_bound(claim(c))) {
        return Some("ClaimPending".into());
    }
    if pending {
        return Some("ContainerCreating".into());
    }
    None
}

/// Why `container` of `pod` cannot take an exec session, in a sentence (the
/// API server's own error for that is less clear); `None` when it can.
pub fn exec_refusal(pod: &Pod, container: &str) -> Option<String> {
    let name = pod.metadata.name.as_deref().unwrap_or("<unnamed>");
    let phase = phase(pod);
    if phase != "Running" {
        return Some(format!("pod {name} is not running (phase {phase})"));
    }
    let state = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default()
        .iter()
        .find(|c| c.name == container)
        .and_then(|c| c.state.as_ref())?;
    if state.running.is_some() {
        return None;
    }
    let why = state
        .waiting
        .as_ref()
        .and_then(|w| w.reason.clone())
        .or_else(|| state.terminated.as_ref().and_then(|t| t.reason.clone()))
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    Some(format!(
        "container {container} of pod {name} is not running{why}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
        PersistentVolumeClaimStatus, PersistentVolumeClaimVolumeSource, PodSpec, PodStatus, Volume,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pod(phase: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some("demo-0".into());
        p.spec = Some(PodSpec {
            volumes: Some(vec![Volume {
                name: "workspace".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: "workspace-demo-0".into(),
                    read_only: None,
                }),
                ..Default::default()
            }]),
            ..Default::default()
        });
        p.status = Some(PodStatus {
            phase: Some(phase.into()),
            ..Default::default()
        });
        p
    }

    fn with_condition(
        mut p: Pod,
        type_: &str,
        status: &str,
        reason: Option<&str>,
        msg: &str,
    ) -> Pod {
        let s = p.status.get_or_insert_with(Default::default);
        s.conditions
            .get_or_insert_with(Vec::new)
            .push(PodCondition {
                type_: type_.into(),
                status: status.into(),
                reason: reason.map(Into::into),
                message: Some(msg.into()),
                ..Default::default()
            });
        p
    }

    fn waiting(name: &str, reason: &str, message: &str) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.into()),
                    message: Some(message.into()),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn running(name: &str) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            state: Some(ContainerState {
                running: Some(ContainerStateRunning::default()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn with_containers(mut p: Pod, init: Vec<ContainerStatus>, main: Vec<ContainerStatus>) -> Pod {
        let s = p.status.get_or_insert_with(Default::default);
        s.init_container_statuses = Some(init);
        s.container_statuses = Some(main);
        p
    }

    fn claim(phase: &str) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            status: Some(PersistentVolumeClaimStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn words_for_list() {
        let bound = claim("Bound");
        let pending_claim = claim("Pending");
        let bound_claims = |_: &str| Some(&bound);
        let pending_claims = |_: &str| Some(&pending_claim);
        let no_claims = |_: &str| None;

        assert_eq!(
            problem_word(&pod("Pending"), bound_claims).as_deref(),
            Some("ContainerCreating")
        );
        assert_eq!(
            problem_word(&pod("Pending"), pending_claims).as_deref(),
            Some("ClaimPending")
        );
        assert_eq!(
            problem_word(&pod("Pending"), no_claims).as_deref(),
            Some("ClaimPending")
        );
        assert_eq!(problem_word(&pod("Running"), bound_claims), None);
        assert_eq!(problem_word(&Pod::default(), bound_claims), None);

        let mut gone = pod("Running");
        gone.metadata.deletion_timestamp = Some(Time("2026-01-01T00:00:00Z".parse().unwrap()));
        assert_eq!(
            problem_word(&gone, bound_claims).as_deref(),
            Some("Terminating")
        );

        let crash = with_containers(
            pod("Running"),
            vec![],
            vec![waiting("workspace", "CrashLoopBackOff", "")],
        );
        assert_eq!(
            problem_word(&crash, bound_claims).as_deref(),
            Some("CrashLoopBackOff")
        );
        let clone = with_containers(
            pod("Pending"),
            vec![waiting("clone", "ImagePullBackOff", "")],
            vec![waiting("workspace", "PodInitializing", "")],
        );
        assert_eq!(
            problem_word(&clone, bound_claims).as_deref(),
            Some("Init:ImagePullBackOff")
        );
        let creating = with_containers(
            pod("Pending"),
            vec![],
            vec![waiting("workspace", "ContainerCreating", "")],
        );
        assert_eq!(
            problem_word(&creating, bound_claims).as_deref(),
            Some("ContainerCreating")
        );

        // The scheduler's reason, even while the claims wait for the pod.
        let unschedulable = with_condition(
            pod("Pending"),
            "PodScheduled",
            "False",
            Some("Unschedulable"),
            "0/1 nodes are available: 1 Insufficient cpu.",
        );
        assert_eq!(
            problem_word(&unschedulable, pending_claims).as_deref(),
            Some("Unschedulable")
        );
    }

    #[test]
    fn scheduler_refusals_with_hints() {
        let p = with_condition(
            pod("Pending"),
            "PodScheduled",
            "False",
            None,
            "0/3 nodes are available: 3 Insufficient cpu.",
        );
        assert!(!is_scheduled(&p));
        let u = unschedulable(&p).unwrap();
        assert_eq!(u.reason, "Unschedulable");
        let b = u.blocker("demo-0");
        assert_eq!(
            b.reason,
            "pod demo-0 is Pending (Unschedulable): 0/3 nodes are available: 3 Insufficient cpu."
        );
        assert!(b.hint.contains("smaller --tier") && !b.fatal);
        for (msg, hint) in [
            ("no nodes available to schedule pods", "no schedulable nodes"),
            ("0/0 nodes are available", "no schedulable nodes"),
            ("0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims", "volume cannot be provisioned"),
            ("0/1 nodes are available: 1 node(s) didn't find available persistent volumes to bind", "volume cannot be provisioned"),
            ("0/1 nodes are available: 1 node(s) had untolerated taint", "keeps trying"),
        ] {
            let u = Unschedulable { reason: "Unschedulable".into(), message: msg.into() };
            assert!(u.hint().contains(hint), "{msg}: {}", u.hint());
        }
        let scheduled = with_condition(pod("Pending"), "PodScheduled", "True", None, "");
        assert!(is_scheduled(&scheduled) && unschedulable(&scheduled).is_none());
    }

    #[test]
    fn claims_and_binding() {
        let p = pod("Pending");
        assert_eq!(claim_names(&p), ["workspace-demo-0"]);
        assert!(is_bound(Some(&claim("Bound"))));
        assert!(!is_bound(Some(&claim("Pending"))));
        assert!(!is_bound(None));
    }

    #[test]
    fn container_problems_with_hints() {
        let p = with_containers(
            pod("Pending"),
            vec![waiting("clone", "PodInitializing", "")],
            vec![
                waiting("workspace", "ErrImagePull", "not found"),
                running("sidecar"),
            ],
        );
        let problems = container_problems(&p);
        assert_eq!(problems.len(), 1);
        let b = problems[0].blocker("demo-0");
        assert_eq!(
            b.reason,
            "pod demo-0 container workspace: ErrImagePull: not found"
        );
        assert!(b.hint.contains("--image") && !b.fatal);

        let invalid = ContainerProblem {
            container: "workspace".into(),
            init: false,
            reason: "InvalidImageName".into(),
            message: "bad".into(),
            last_exit_code: None,
        };
        assert!(invalid.blocker("demo-0").fatal);

        let mut crash = waiting("workspace", "CrashLoopBackOff", "back-off");
        crash.last_state = Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 0,
                ..Default::default()
            }),
            ..Default::default()
        });
        let p = with_containers(pod("Running"), vec![], vec![crash.clone()]);
        let b = container_problems(&p)[0].blocker("demo-0");
        assert_eq!(
            b.reason,
            "pod demo-0 container workspace: CrashLoopBackOff (last exit code 0)"
        );
        assert!(b.hint.contains("--keep-alive"), "{b:?}");
        crash.name = CLONE_CONTAINER.into();
        let p = with_containers(pod("Pending"), vec![crash], vec![]);
        let problem = &container_problems(&p)[0];
        assert!(problem.init && problem.word() == "Init:CrashLoopBackOff");
        assert!(problem.blocker("demo-0").hint.contains("--repo"));

        // Any other reason is named as kubelet gives it.
        let p = with_containers(
            pod("Pending"),
            vec![],
            vec![waiting("workspace", "CreateContainerError", "no such file")],
        );
        let b = container_problems(&p)[0].blocker("demo-0");
        assert_eq!(
            b.reason,
            "pod demo-0 container workspace: CreateContainerError: no such file"
        );
        assert!(!b.fatal);
    }

    #[test]
    fn running_and_ready() {
        let p = with_condition(
            with_containers(pod("Running"), vec![], vec![running("workspace")]),
            "Ready",
            "True",
            None,
            "",
        );
        assert!(is_ready(&p) && container_running(&p, "workspace"));
        assert!(!container_running(&p, "other"));
        assert!(!is_ready(&pod("Running")));
        assert_eq!(phase(&Pod::default()), "Unknown");
    }

    #[test]
    fn exec_refusals() {
        let ok = with_containers(pod("Running"), vec![], vec![running("workspace")]);
        assert_eq!(exec_refusal(&ok, "workspace"), None);
        assert_eq!(
            exec_refusal(&pod("Pending"), "workspace").as_deref(),
            Some("pod demo-0 is not running (phase Pending)")
        );
        let crashing = with_containers(
            pod("Running"),
            vec![],
            vec![waiting("workspace", "CrashLoopBackOff", "")],
        );
        assert_eq!(
            exec_refusal(&crashing, "workspace").as_deref(),
            Some("container workspace of pod demo-0 is not running (CrashLoopBackOff)")
        );
        // No status for the container yet: let the API server decide.
        assert_eq!(exec_refusal(&pod("Running"), "workspace"), None);
    }
}
