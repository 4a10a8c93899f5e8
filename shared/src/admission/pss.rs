//! The Pod Security Standards `restricted` profile, latest version (policy v1.37), as pure
//! checks over a typed pod.
//!
//! Mirrors the upstream checks in `k8s.io/pod-security-admission/policy/check_*.go`: the
//! baseline checks not overridden by restricted ones, plus the restricted checks:
//!
//! | upstream check | here |
//! | --- | --- |
//! | hostNamespaces | `host_namespaces` |
//! | privileged | `privileged` |
//! | capabilities_restricted (overrides capabilities_baseline) | `capabilities` |
//! | restrictedVolumes (overrides hostPathVolumes) | `volume_types` |
//! | hostPorts | `host_ports` |
//! | appArmorProfile (annotations and fields) | `app_armor` |
//! | seLinuxOptions (1.31 type list) | `se_linux` |
//! | procMount_restricted (overrides procMount) | `proc_mount` |
//! | seccompProfile_restricted (overrides seccompProfile_baseline) | `seccomp` |
//! | sysctls (1.37 safe list) | `sysctls` |
//! | windowsHostProcess | `windows_host_process` |
//! | hostProbesAndHostLifecycle (1.34) | `probe_hosts` |
//! | allowPrivilegeEscalation | `privilege_escalation` |
//! | runAsNonRoot (1.35: skipped for `hostUsers: false`) | `run_as_non_root` |
//! | runAsUser (1.35: skipped for `hostUsers: false`) | `run_as_user` |
//!
//! Like upstream, Windows pods (`spec.os.name: windows`) are exempt from the Linux-only
//! restricted checks (seccomp, capabilities, allowPrivilegeEscalation), and user-namespaced
//! pods (`hostUsers: false`) from runAsNonRoot/runAsUser, since root in a user namespace is
//! not root on the node. Containers are visited in upstream's order: init containers, then
//! containers, then ephemeral containers.

use k8s_openapi::api::core::v1::{Capabilities, LifecycleHandler, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::admission::containers::{containers, is_windows, slice, user_namespaced, ContainerView};
use crate::admission::violation::Violation;

/// Sysctls the restricted (and baseline) profile allows: upstream's `sysctlsAllowedV1Dot37`.
pub const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
    "net.ipv4.tcp_slow_start_after_idle",
    "net.ipv4.tcp_notsent_lowat",
];

/// Capabilities the baseline profile lets containers add (restricted: only NET_BIND_SERVICE).
pub const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// SELinux types allowed since policy v1.31 (the empty type is allowed too).
pub const SELINUX_TYPES: &[&str] = &[
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

/// Volume types the restricted profile allows.
pub const RESTRICTED_VOLUME_TYPES: &str =
    "configMap, csi, downwardAPI, emptyDir, ephemeral, image, persistentVolumeClaim, projected or secret";

const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

fn violation(field: String, message: String) -> Violation {
    Violation { field, message }
}

fn rule(control: &str) -> String {
    format!("(Pod Security Standard \"restricted\": {control})")
}

/// Every restricted-profile violation of a pod. Empty when the pod satisfies the profile.
pub fn check_restricted(pod: &Pod) -> Vec<Violation> {
    match &pod.spec {
        Some(spec) => check_spec(&pod.metadata, spec),
        None => vec![violation(
            "spec".to_string(),
            "a pod needs a spec; add one".to_string(),
        )],
    }
}

/// Every restricted-profile violation of pod metadata and spec (a pod, or a pod template).
pub fn check_spec(meta: &ObjectMeta, spec: &PodSpec) -> Vec<Violation> {
    let containers = containers(spec);
    let mut out = Vec::new();
    host_namespaces(spec, &mut out);
    privileged(&containers, &mut out);
    capabilities(spec, &containers, &mut out);
    volume_types(spec, &mut out);
    host_ports(&containers, &mut out);
    app_armor(meta, spec, &containers, &mut out);
    se_linux(spec, &containers, &mut out);
    proc_mount(&containers, &mut out);
    seccomp(spec, &containers, &mut out);
    sysctls(spec, &mut out);
    windows_host_process(spec, &containers, &mut out);
    probe_hosts(&containers, &mut out);
    privilege_escalation(spec, &containers, &mut out);
    run_as_non_root(spec, &containers, &mut out);
    run_as_user(spec, &containers, &mut out);
    out
}

/// hostNetwork, hostPID and hostIPC must be unset or false.
fn host_namespaces(spec: &PodSpec, out: &mut Vec<Violation>) {
    for (field, value, what) in [
        (
            "hostNetwork",
            spec.host_network,
            "the node's network namespace",
        ),
        ("hostPID", spec.host_pid, "the node's process namespace"),
        ("hostIPC", spec.host_ipc, "the node's IPC namespace"),
    ] {
        if value == Some(true) {
            out.push(violation(
                format!("spec.{field}"),
                format!(
                    "sharing {what} is not allowed in workspaces {}; remove {field} or set it to false",
                    rule("host namespaces")
                ),
            ));
        }
    }
}

/// securityContext.privileged must be unset or false.
fn privileged(containers: &[ContainerView], out: &mut Vec<Violation>) {
    for c in containers {
        if c.security_context.and_then(|sc| sc.privileged) == Some(true) {
            out.push(violation(
                c.sc_path("privileged"),
                format!(
                    "privileged containers are not allowed in workspaces {}; remove privileged from {} or set it to false",
                    rule("privileged containers"),
                    c.describe()
                ),
            ));
        }
    }
}

/// capabilities.drop must include ALL; capabilities.add may only hold NET_BIND_SERVICE.
fn capabilities(spec: &PodSpec, containers: &[ContainerView], out: &mut Vec<Violation>) {
    // Upstream exempts Windows pods (policy v1.25+): Linux capabilities do not apply there.
    if is_windows(spec) {
        return;
    }
    for c in containers {
        let caps: Option<&Capabilities> =
            c.security_context.and_then(|sc| sc.capabilities.as_ref());
        let drops_all = caps
            .and_then(|caps| caps.drop.as_ref())
            .is_some_and(|drop| drop.iter().any(|d| d == "ALL"));
        if !drops_all {
            out.push(violation(
                c.sc_path("capabilities.drop"),
                format!(
                    "{} must drop all capabilities {}; set securityContext.capabilities.drop to [\"ALL\"] and add back only NET_BIND_SERVICE if needed",
                    c.describe(),
                    rule("capabilities")
                ),
            ));
        }
        for (i, cap) in caps
            .and_then(|caps| caps.add.as_ref())
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            if cap != "NET_BIND_SERVICE" {
                let beyond_baseline = if BASELINE_CAPABILITIES.contains(&cap.as_str()) {
                    ""
                } else {
                    " (not even the baseline standard allows it)"
                };
                out.push(violation(
                    c.sc_path(&format!("capabilities.add[{i}]")),
                    format!(
                        "adding capability {cap:?} is not allowed in workspaces{beyond_baseline} {}; remove it, only NET_BIND_SERVICE may be added",
                        rule("capabilities")
                    ),
                ));
            }
        }
    }
}

/// Only configMap, csi, downwardAPI, emptyDir, ephemeral, image, persistentVolumeClaim,
/// projected and secret volumes.
fn volume_types(spec: &PodSpec, out: &mut Vec<Violation>) {
    for (i, v) in slice(&spec.volumes).iter().enumerate() {
        let forbidden: &[(&str, bool)] = &[
            ("hostPath", v.host_path.is_some()),
            ("gcePersistentDisk", v.gce_persistent_disk.is_some()),
            ("awsElasticBlockStore", v.aws_elastic_block_store.is_some()),
            ("gitRepo", v.git_repo.is_some()),
            ("nfs", v.nfs.is_some()),
            ("iscsi", v.iscsi.is_some()),
            ("glusterfs", v.glusterfs.is_some()),
            ("rbd", v.rbd.is_some()),
            ("flexVolume", v.flex_volume.is_some()),
            ("cinder", v.cinder.is_some()),
            ("cephfs", v.cephfs.is_some()),
            ("flocker", v.flocker.is_some()),
            ("fc", v.fc.is_some()),
            ("azureFile", v.azure_file.is_some()),
            ("vsphereVolume", v.vsphere_volume.is_some()),
            ("quobyte", v.quobyte.is_some()),
            ("azureDisk", v.azure_disk.is_some()),
            ("photonPersistentDisk", v.photon_persistent_disk.is_some()),
            ("portworxVolume", v.portworx_volume.is_some()),
            ("scaleIO", v.scale_io.is_some()),
            ("storageos", v.storageos.is_some()),
        ];
        // A volume with no source at all is defaulted to emptyDir by the API server before
        // admission webhooks see it, so it is allowed here (upstream's fixtures rely on that).
        for (kind, _) in forbidden.iter().filter(|(_, set)| *set) {
            out.push(violation(
                format!("spec.volumes[{i}].{kind}"),
                format!(
                    "volume {:?} uses the {kind} volume type, which is not allowed in workspaces {}; use a {RESTRICTED_VOLUME_TYPES} volume instead",
                    v.name,
                    rule("volume types")
                ),
            ));
        }
    }
}

/// ports[].hostPort must be unset or 0.
fn host_ports(containers: &[ContainerView], out: &mut Vec<Violation>) {
    for c in containers {
        for (i, port) in c.ports.iter().enumerate() {
            if let Some(host_port) = port.host_port.filter(|p| *p != 0) {
                out.push(violation(
                    format!("{}.ports[{i}].hostPort", c.path()),
                    format!(
                        "host port {host_port} is not allowed in workspaces {}; remove hostPort and reach {} through a Service or kubectl port-forward",
                        rule("host ports"),
                        c.describe()
                    ),
                ));
            }
        }
    }
}

/// AppArmor: the beta annotations may only say runtime/default or localhost/*, and the
/// appArmorProfile fields only RuntimeDefault or Localhost.
fn app_armor(
    meta: &ObjectMeta,
    spec: &PodSpec,
    containers: &[ContainerView],
    out: &mut Vec<Violation>,
) {
    if let Some(annotations) = &meta.annotations {
        for (key, value) in annotations {
            if key.starts_with(APPARMOR_ANNOTATION_PREFIX)
                && !(value.is_empty()
                    || value == "runtime/default"
                    || value.starts_with("localhost/"))
            {
                out.push(violation(
                    format!("metadata.annotations[{key}]"),
                    format!(
                        "AppArmor profile {value:?} is not allowed in workspaces {}; use runtime/default or localhost/<profile>, or remove the annotation",
                        rule("AppArmor")
                    ),
                ));
            }
        }
    }
    let allowed = |t: &str| t == "RuntimeDefault" || t == "Localhost";
    if let Some(profile) = spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.app_armor_profile.as_ref())
    {
        if !allowed(&profile.type_) {
            out.push(violation(
                "spec.securityContext.appArmorProfile.type".to_string(),
                format!(
                    "AppArmor profile type {:?} is not allowed in workspaces {}; use RuntimeDefault or Localhost",
                    profile.type_,
                    rule("AppArmor")
                ),
            ));
        }
    }
    for c in containers {
        if let Some(profile) = c
            .security_context
            .and_then(|sc| sc.app_armor_profile.as_ref())
        {
            if !allowed(&profile.type_) {
                out.push(violation(
                    c.sc_path("appArmorProfile.type"),
                    format!(
                        "AppArmor profile type {:?} of {} is not allowed in workspaces {}; use RuntimeDefault or Localhost",
                        profile.type_,
                        c.describe(),
                        rule("AppArmor")
                    ),
                ));
            }
        }
    }
}

/// seLinuxOptions: type only from [`SELINUX_TYPES`] (or empty); user and role unset.
fn se_linux(spec: &PodSpec, containers: &[ContainerView], out: &mut Vec<Violation>) {
    let pod = spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.se_linux_options.as_ref())
        .map(|o| ("spec.securityContext.seLinuxOptions".to_string(), o));
    let per_container = containers.iter().filter_map(|c| {
        c.security_context
            .and_then(|sc| sc.se_linux_options.as_ref())
            .map(|o| (c.sc_path("seLinuxOptions"), o))
    });
    for (path, options) in pod.into_iter().chain(per_container) {
        if let Some(t) = options.type_.as_deref() {
            if !t.is_empty() && !SELINUX_TYPES.contains(&t) {
                out.push(violation(
                    format!("{path}.type"),
                    format!(
                        "SELinux type {t:?} is not allowed in workspaces {}; use {} or leave it unset",
                        rule("SELinux"),
                        SELINUX_TYPES.join(", ")
                    ),
                ));
            }
        }
        for (field, value) in [("user", &options.user), ("role", &options.role)] {
            if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
                out.push(violation(
                    format!("{path}.{field}"),
                    format!(
                        "setting the SELinux {field} ({v:?}) is not allowed in workspaces {}; remove it",
                        rule("SELinux")
                    ),
                ));
            }
        }
    }
}

/// procMount must be unset or Default (restricted re-tightens baseline's user-namespace
/// relaxation since policy v1.35).
fn proc_mount(containers: &[ContainerView], out: &mut Vec<Violation>) {
    for c in containers {
        if let Some(mount) = c.security_context.and_then(|sc| sc.proc_mount.as_deref()) {
            if mount != "Default" {
                out.push(violation(
                    c.sc_path("procMount"),
                    format!(
                        "procMount {mount:?} is not allowed in workspaces {}; remove it or set it to Default",
                        rule("/proc mount type")
                    ),
                ));
            }
        }
    }
}

fn valid_seccomp(t: &str) -> bool {
    t == "RuntimeDefault" || t == "Localhost"
}

/// seccompProfile.type must be RuntimeDefault or Localhost, on the pod or on every container.
fn seccomp(spec: &PodSpec, containers: &[ContainerView], out: &mut Vec<Violation>) {
    if is_windows(spec) {
        return;
    }
    let mut pod_set = false;
    if let Some(profile) = spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.seccomp_profile.as_ref())
    {
        if valid_seccomp(&profile.type_) {
            pod_set = true;
        } else {
            out.push(violation(
                "spec.securityContext.seccompProfile.type".to_string(),
                format!(
                    "seccomp profile {:?} is not allowed in workspaces {}; use RuntimeDefault or Localhost",
                    profile.type_,
                    rule("seccomp")
                ),
            ));
        }
    }
    let mut unset = Vec::new();
    for c in containers {
        match c.security_context.and_then(|sc| sc.seccomp_profile.as_ref()) {
            Some(profile) if !valid_seccomp(&profile.type_) => out.push(violation(
                c.sc_path("seccompProfile.type"),
                format!(
                    "seccomp profile {:?} of {} is not allowed in workspaces {}; use RuntimeDefault or Localhost",
                    profile.type_,
                    c.describe(),
                    rule("seccomp")
                ),
            )),
            Some(_) => {}
            None if !pod_set => unset.push(format!("{:?}", c.name)),
            None => {}
        }
    }
    if !unset.is_empty() {
        out.push(violation(
            "spec.securityContext.seccompProfile.type".to_string(),
            format!(
                "a seccomp profile is required in workspaces {}; set securityContext.seccompProfile.type to RuntimeDefault or Localhost on the pod or on {} {}",
                rule("seccomp"),
                if unset.len() == 1 { "container" } else { "containers" },
                unset.join(", ")
            ),
        ));
    }
}

/// Pod sysctls only from [`SAFE_SYSCTLS`].
fn sysctls(spec: &PodSpec, out: &mut Vec<Violation>) {
    let list = spec
        .security_context
        .as_ref()
        .map(|sc| slice(&sc.sysctls))
        .unwrap_or(&[]);
    for (i, sysctl) in list.iter().enumerate() {
        if !SAFE_SYSCTLS.contains(&sysctl.name.as_str()) {
            out.push(violation(
                format!("spec.securityContext.sysctls[{i}].name"),
                format!(
                    "sysctl {:?} is not in the safe set allowed in workspaces {}; remove it (allowed: {})",
                    sysctl.name,
                    rule("sysctls"),
                    SAFE_SYSCTLS.join(", ")
                ),
            ));
        }
    }
}

/// windowsOptions.hostProcess must be unset or false.
fn windows_host_process(spec: &PodSpec, containers: &[ContainerView], out: &mut Vec<Violation>) {
    let message = || {
        format!(
            "Windows HostProcess containers are not allowed in workspaces {}; remove hostProcess or set it to false",
            rule("HostProcess")
        )
    };
    if spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.windows_options.as_ref())
        .and_then(|w| w.host_process)
        == Some(true)
    {
        out.push(violation(
            "spec.securityContext.windowsOptions.hostProcess".to_string(),
            message(),
        ));
    }
    for c in containers {
        if c.security_context
            .and_then(|sc| sc.windows_options.as_ref())
            .and_then(|w| w.host_process)
            == Some(true)
        {
            out.push(violation(
                c.sc_path("windowsOptions.hostProcess"),
                message(),
            ));
        }
    }
}

/// Probes and lifecycle hooks must not name a host (httpGet.host, tcpSocket.host).
fn probe_hosts(containers: &[ContainerView], out: &mut Vec<Violation>) {
    for c in containers {
        let mut handlers: Vec<(String, Option<&str>, Option<&str>)> = Vec::new();
        for (name, probe) in [
            ("livenessProbe", c.liveness_probe),
            ("readinessProbe", c.readiness_probe),
            ("startupProbe", c.startup_probe),
        ] {
            if let Some(p) = probe {
                handlers.push((
                    format!("{}.{name}", c.path()),
                    p.http_get.as_ref().and_then(|h| h.host.as_deref()),
                    p.tcp_socket.as_ref().and_then(|t| t.host.as_deref()),
                ));
            }
        }
        if let Some(lifecycle) = c.lifecycle {
            for (name, handler) in [
                ("postStart", lifecycle.post_start.as_ref()),
                ("preStop", lifecycle.pre_stop.as_ref()),
            ] {
                if let Some(h) = handler {
                    let h: &LifecycleHandler = h;
                    handlers.push((
                        format!("{}.lifecycle.{name}", c.path()),
                        h.http_get.as_ref().and_then(|g| g.host.as_deref()),
                        h.tcp_socket.as_ref().and_then(|t| t.host.as_deref()),
                    ));
                }
            }
        }
        for (path, http_host, tcp_host) in handlers {
            for (field, host) in [("httpGet.host", http_host), ("tcpSocket.host", tcp_host)] {
                if let Some(host) = host.filter(|h| !h.is_empty()) {
                    out.push(violation(
                        format!("{path}.{field}"),
                        format!(
                            "probes and lifecycle hooks of workspaces must not target another host ({host:?}) {}; remove host so the check targets the pod itself",
                            rule("host probes and lifecycle hooks")
                        ),
                    ));
                }
            }
        }
    }
}

/// allowPrivilegeEscalation must be explicitly false in every container.
fn privilege_escalation(spec: &PodSpec, containers: &[ContainerView], out: &mut Vec<Violation>) {
    if is_windows(spec) {
        return;
    }
    for c in containers {
        if c.security_context
            .and_then(|sc| sc.allow_privilege_escalation)
            != Some(false)
        {
            out.push(violation(
                c.sc_path("allowPrivilegeEscalation"),
                format!(
                    "{} must not allow privilege escalation {}; set securityContext.allowPrivilegeEscalation to false",
                    c.describe(),
                    rule("privilege escalation")
                ),
            ));
        }
    }
}

/// runAsNonRoot must be true on the pod or on every container, and false nowhere.
fn run_as_non_root(spec: &PodSpec, containers: &[ContainerView], out: &mut Vec<Violation>) {
    if user_namespaced(spec) {
        return;
    }
    let message = |who: &str| {
        format!(
            "{who} must not run as root {}; set runAsNonRoot to true",
            rule("running as non-root")
        )
    };
    let pod_value = spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.run_as_non_root);
    if pod_value == Some(false) {
        out.push(violation(
            "spec.securityContext.runAsNonRoot".to_string(),
            message("the pod"),
        ));
    }
    let mut unset = Vec::new();
    for c in containers {
        match c.security_context.and_then(|sc| sc.run_as_non_root) {
            Some(false) => out.push(violation(c.sc_path("runAsNonRoot"), message(&c.describe()))),
            Some(true) => {}
            None if pod_value != Some(true) => unset.push(format!("{:?}", c.name)),
            None => {}
        }
    }
    if !unset.is_empty() {
        out.push(violation(
            "spec.securityContext.runAsNonRoot".to_string(),
            format!(
                "workspaces must not run as root {}; set securityContext.runAsNonRoot to true on the pod or on {} {}",
                rule("running as non-root"),
                if unset.len() == 1 { "container" } else { "containers" },
                unset.join(", ")
            ),
        ));
    }
}

/// runAsUser must not be 0 anywhere.
fn run_as_user(spec: &PodSpec, containers: &[ContainerView], out: &mut Vec<Violation>) {
    if user_namespaced(spec) {
        return;
    }
    let message = || {
        format!(
            "0 (root) is not allowed in workspaces {}; use a non-zero uid such as 1000 or remove runAsUser",
            rule("running as non-root user")
        )
    };
    if spec.security_context.as_ref().and_then(|sc| sc.run_as_user) == Some(0) {
        out.push(violation(
            "spec.securityContext.runAsUser".to_string(),
            message(),
        ));
    }
    for c in containers {
        if c.security_context.and_then(|sc| sc.run_as_user) == Some(0) {
            out.push(violation(c.sc_path("runAsUser"), message()));
        }
    }
}
