//! One view of the three container lists of a pod spec (init, regular, ephemeral), so
//! every rule and every mutation walks them the same way and names fields the same way.

use k8s_openapi::api::core::v1::{
    ContainerPort, EnvFromSource, EnvVar, Lifecycle, PodSpec, Probe, ResourceRequirements,
    SecurityContext,
};

/// Which list of the pod spec a container is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContainerKind {
    Init,
    Regular,
    Ephemeral,
}

impl ContainerKind {
    pub(crate) fn field(self) -> &'static str {
        match self {
            ContainerKind::Init => "initContainers",
            ContainerKind::Regular => "containers",
            ContainerKind::Ephemeral => "ephemeralContainers",
        }
    }
}

/// The fields shared by `Container` and `EphemeralContainer`, so every check walks all three
/// container lists the same way.
pub(crate) struct ContainerView<'a> {
    pub kind: ContainerKind,
    pub index: usize,
    pub name: &'a str,
    pub security_context: Option<&'a SecurityContext>,
    pub ports: &'a [ContainerPort],
    pub liveness_probe: Option<&'a Probe>,
    pub readiness_probe: Option<&'a Probe>,
    pub startup_probe: Option<&'a Probe>,
    pub lifecycle: Option<&'a Lifecycle>,
    pub env: &'a [EnvVar],
    pub env_from: &'a [EnvFromSource],
    pub resources: Option<&'a ResourceRequirements>,
}

impl ContainerView<'_> {
    /// `spec.containers[0]`
    pub fn path(&self) -> String {
        format!("spec.{}[{}]", self.kind.field(), self.index)
    }

    /// `spec.containers[0].securityContext.<rest>`
    pub(crate) fn sc_path(&self, rest: &str) -> String {
        format!("{}.securityContext.{rest}", self.path())
    }

    /// `container "dev"`, `init container "setup"`, for messages.
    pub fn describe(&self) -> String {
        let kind = match self.kind {
            ContainerKind::Init => "init container",
            ContainerKind::Regular => "container",
            ContainerKind::Ephemeral => "ephemeral container",
        };
        format!("{kind} {:?}", self.name)
    }
}

pub(crate) fn slice<T>(v: &Option<Vec<T>>) -> &[T] {
    v.as_deref().unwrap_or(&[])
}

/// All containers of a pod spec, in upstream's visiting order.
pub(crate) fn containers(spec: &PodSpec) -> Vec<ContainerView<'_>> {
    let mut out = Vec::new();
    for (kind, list) in [
        (ContainerKind::Init, slice(&spec.init_containers)),
        (ContainerKind::Regular, spec.containers.as_slice()),
    ] {
        for (index, c) in list.iter().enumerate() {
            out.push(ContainerView {
                kind,
                index,
                name: &c.name,
                security_context: c.security_context.as_ref(),
                ports: slice(&c.ports),
                liveness_probe: c.liveness_probe.as_ref(),
                readiness_probe: c.readiness_probe.as_ref(),
                startup_probe: c.startup_probe.as_ref(),
                lifecycle: c.lifecycle.as_ref(),
                env: slice(&c.env),
                env_from: slice(&c.env_from),
                resources: c.resources.as_ref(),
            });
        }
    }
    for (index, c) in slice(&spec.ephemeral_containers).iter().enumerate() {
        out.push(ContainerView {
            kind: ContainerKind::Ephemeral,
            index,
            name: &c.name,
            security_context: c.security_context.as_ref(),
            ports: slice(&c.ports),
            liveness_probe: c.liveness_probe.as_ref(),
            readiness_probe: c.readiness_probe.as_ref(),
            startup_probe: c.startup_probe.as_ref(),
            lifecycle: c.lifecycle.as_ref(),
            env: slice(&c.env),
            env_from: slice(&c.env_from),
            resources: c.resources.as_ref(),
        });
    }
    out
}

/// True for `spec.os.name: windows`: upstream exempts such pods from the Linux-only checks,
/// and the API server forbids Linux-only security fields on them.
pub fn is_windows(spec: &PodSpec) -> bool {
    spec.os.as_ref().is_some_and(|os| os.name == "windows")
}

/// `hostUsers: false`: the pod runs in a user namespace (KEP-127).
pub(crate) fn user_namespaced(spec: &PodSpec) -> bool {
    spec.host_users == Some(false)
}
