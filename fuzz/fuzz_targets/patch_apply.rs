//! `mutate_pod`'s patch applied with `json_patch::patch`, on pods built from the
//! input: JSON when the input starts with `{` (seed corpus: real pods), else a
//! structured pod decoded with `arbitrary` from a vocabulary close to the policy's
//! (its volume names and mount paths, tiers, partial security contexts, ...).
//!
//! Invariants (documented in `devenv_shared::mutate`): the patch applies to the
//! pod's JSON; the result is still a Pod; mutating it again yields an empty patch.

#![no_main]

use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use devenv_shared::admission::mutate::mutate_pod;
use devenv_shared::model::policy::Policy;
use k8s_openapi::api::core::v1::Pod;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

fn policies() -> &'static [Policy; 2] {
    static P: OnceLock<[Policy; 2]> = OnceLock::new();
    P.get_or_init(|| {
        let custom = Policy::from_yaml(
            "defaultTier: large\n\
             user: {uid: 2000, gid: 3000, fsGroup: 4000, configDir: /home/u/.config}\n\
             volumes:\n\
             - {name: workspace, size: 5Gi, mountPath: /workspace}\n\
             - {name: cache, size: 1Gi, mountPath: /home/u/.cache, storageClass: fast}\n\
             secrets: {inject: [a, b-c, devenv-secrets]}\n",
        )
        .unwrap_or_else(|e| panic!("fuzz policy is invalid: {e}"));
        [Policy::default(), custom]
    })
}

/// Names drawn mostly from what the policy and Kubernetes care about.
#[derive(Debug)]
struct Name(String);

impl<'a> Arbitrary<'a> for Name {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        const WORDS: &[&str] = &[
            "workspace",
            "history",
            "config",
            "cache",
            "tmp",
            "alice",
            "alice-0",
            "main",
            "c",
            "devenv-secrets",
            "a",
            "b-c",
            "kube-api-access-x",
            "workspace-alice-0",
            "",
            "a~b",
            "a/b",
            "small",
            "micro",
            "large",
            "huge",
        ];
        if u.ratio(7, 8)? {
            Ok(Name((*u.choose(WORDS)?).to_owned()))
        } else {
            Ok(Name(String::arbitrary(u)?))
        }
    }
}

#[derive(Debug)]
struct MountPath(String);

impl<'a> Arbitrary<'a> for MountPath {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        const PATHS: &[&str] = &[
            "/workspace",
            "/workspace/",
            "/commandhistory",
            "/home/dev/.config",
            "/home/u/.cache",
            "/home/u/.config",
            "/tmp",
            "/",
            "/workspace/sub",
            "",
        ];
        if u.ratio(7, 8)? {
            Ok(MountPath((*u.choose(PATHS)?).to_owned()))
        } else {
            Ok(MountPath(String::arbitrary(u)?))
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Seccomp {
    RuntimeDefault,
    Localhost,
    Unconfined,
    Empty,
}

#[derive(Debug, Arbitrary)]
struct SecCtx {
    run_as_non_root: Option<bool>,
    run_as_user: Option<i8>,
    run_as_group: Option<i8>,
    privileged: Option<bool>,
    allow_privilege_escalation: Option<bool>,
    read_only_root_filesystem: Option<bool>,
    drop_all: Option<bool>,
    add: Option<Vec<Name>>,
    seccomp: Option<Seccomp>,
    empty_capabilities: bool,
    windows: Option<bool>,
}

#[derive(Debug, Arbitrary)]
struct PodSecCtx {
    run_as_non_root: Option<bool>,
    run_as_user: Option<i8>,
    fs_group: Option<i8>,
    seccomp: Option<Seccomp>,
    sysctl: bool,
}

#[derive(Debug, Arbitrary)]
enum Qty {
    Cpu(u16),
    Milli(u16),
    Gi(u8),
    Mi(u16),
    Junk(Name),
}

#[derive(Debug, Arbitrary)]
struct Resources {
    requests_cpu: Option<Qty>,
    requests_memory: Option<Qty>,
    limits_cpu: Option<Qty>,
    limits_memory: Option<Qty>,
    empty_requests: bool,
    extra: bool,
}

#[derive(Debug, Arbitrary)]
struct Mount {
    name: Name,
    path: MountPath,
    read_only: Option<bool>,
    sub_path: Option<Name>,
}

#[derive(Debug, Arbitrary)]
struct ContainerShape {
    name: Name,
    security_context: Option<SecCtx>,
    empty_security_context: bool,
    resources: Option<Resources>,
    mounts: Option<Vec<Mount>>,
    env_from: Option<Vec<(Name, Option<bool>, bool)>>,
    restart_always: bool,
}

#[derive(Debug, Arbitrary)]
enum VolumeSource {
    Claim(Name),
    EmptyDir,
    HostPath(MountPath),
    ConfigMap(Name),
    Secret(Name),
    Nothing,
}

#[derive(Debug, Arbitrary)]
struct PodShape {
    workspace: Option<Name>,
    tier: Option<Name>,
    owner: Option<(bool, Name, u8)>,
    name: Option<Name>,
    generate_name: Option<Name>,
    namespace: Option<Name>,
    os: Option<bool>,
    spec_missing: bool,
    security_context: Option<PodSecCtx>,
    host_users: Option<bool>,
    containers: Vec<ContainerShape>,
    init_containers: Option<Vec<ContainerShape>>,
    ephemeral: bool,
    volumes: Option<Vec<(Name, VolumeSource)>>,
    annotations: Option<Vec<(Name, Name)>>,
}

fn qty(q: &Qty) -> Value {
    match q {
        Qty::Cpu(n) => json!(n.to_string()),
        Qty::Milli(n) => json!(format!("{n}m")),
        Qty::Gi(n) => json!(format!("{n}Gi")),
        Qty::Mi(n) => json!(format!("{n}Mi")),
        Qty::Junk(n) => json!(n.0),
    }
}

fn seccomp(s: &Seccomp) -> Value {
    match s {
        Seccomp::RuntimeDefault => json!({"type": "RuntimeDefault"}),
        Seccomp::Localhost => json!({"type": "Localhost", "localhostProfile": "p.json"}),
        Seccomp::Unconfined => json!({"type": "Unconfined"}),
        Seccomp::Empty => json!({}),
    }
}

fn container(c: &ContainerShape) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(c.name.0));
    m.insert("image".into(), json!("busybox"));
    if let Some(sc) = &c.security_context {
        let mut s = Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                s.insert(k.into(), v);
            }
        };
        put("runAsNonRoot", sc.run_as_non_root.map(Value::from));
        put("runAsUser", sc.run_as_user.map(Value::from));
        put("runAsGroup", sc.run_as_group.map(Value::from));
        put("privileged", sc.privileged.map(Value::from));
        put(
            "allowPrivilegeEscalation",
            sc.allow_privilege_escalation.map(Value::from),
        );
        put(
            "readOnlyRootFilesystem",
            sc.read_only_root_filesystem.map(Value::from),
        );
        put("seccompProfile", sc.seccomp.as_ref().map(seccomp));
        if sc.empty_capabilities || sc.drop_all.is_some() || sc.add.is_some() {
            let mut caps = Map::new();
            if let Some(d) = sc.drop_all {
                caps.insert(
                    "drop".into(),
                    if d {
                        json!(["ALL"])
                    } else {
                        json!(["NET_RAW"])
                    },
                );
            }
            if let Some(a) = &sc.add {
                caps.insert("add".into(), a.iter().map(|n| json!(n.0)).collect());
            }
            s.insert("capabilities".into(), Value::Object(caps));
        }
        if let Some(w) = sc.windows {
            s.insert("windowsOptions".into(), json!({"hostProcess": w}));
        }
        m.insert("securityContext".into(), Value::Object(s));
    } else if c.empty_security_context {
        m.insert("securityContext".into(), json!({}));
    }
    if let Some(r) = &c.resources {
        let mut requests = Map::new();
        let mut limits = Map::new();
        if let Some(q) = &r.requests_cpu {
            requests.insert("cpu".into(), qty(q));
        }
        if let Some(q) = &r.requests_memory {
            requests.insert("memory".into(), qty(q));
        }
        if let Some(q) = &r.limits_cpu {
            limits.insert("cpu".into(), qty(q));
        }
        if let Some(q) = &r.limits_memory {
            limits.insert("memory".into(), qty(q));
        }
        if r.extra {
            limits.insert("nvidia.com/gpu".into(), json!("1"));
        }
        let mut res = Map::new();
        if !requests.is_empty() || r.empty_requests {
            res.insert("requests".into(), Value::Object(requests));
        }
        if !limits.is_empty() {
            res.insert("limits".into(), Value::Object(limits));
        }
        m.insert("resources".into(), Value::Object(res));
    }
    if let Some(mounts) = &c.mounts {
        let v: Vec<Value> = mounts
            .iter()
            .map(|mt| {
                let mut o = json!({"name": mt.name.0, "mountPath": mt.path.0});
                if let Some(ro) = mt.read_only {
                    o["readOnly"] = json!(ro);
                }
                if let Some(sp) = &mt.sub_path {
                    o["subPath"] = json!(sp.0);
                }
                o
            })
            .collect();
        m.insert("volumeMounts".into(), Value::Array(v));
    }
    if let Some(env_from) = &c.env_from {
        let v: Vec<Value> = env_from
            .iter()
            .map(|(n, optional, configmap)| {
                let key = if *configmap {
                    "configMapRef"
                } else {
                    "secretRef"
                };
                let mut r = json!({"name": n.0});
                if let Some(o) = optional {
                    r["optional"] = json!(o);
                }
                json!({ key: r })
            })
            .collect();
        m.insert("envFrom".into(), Value::Array(v));
    }
    if c.restart_always {
        m.insert("restartPolicy".into(), json!("Always"));
    }
    Value::Object(m)
}

fn pod_json(p: &PodShape) -> Value {
    let mut meta = Map::new();
    if let Some(n) = &p.name {
        meta.insert("name".into(), json!(n.0));
    }
    if let Some(n) = &p.generate_name {
        meta.insert("generateName".into(), json!(n.0));
    }
    if let Some(n) = &p.namespace {
        meta.insert("namespace".into(), json!(n.0));
    }
    if let Some(w) = &p.workspace {
        meta.insert("labels".into(), json!({"devenv.io/workspace": w.0}));
    }
    let mut ann = Map::new();
    if let Some(t) = &p.tier {
        ann.insert("devenv.io/tier".into(), json!(t.0));
    }
    for (k, v) in p.annotations.iter().flatten() {
        ann.insert(k.0.clone(), json!(v.0));
    }
    if !ann.is_empty() {
        meta.insert("annotations".into(), Value::Object(ann));
    }
    if let Some((controller, name, _)) = &p.owner {
        meta.insert(
            "ownerReferences".into(),
            json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": name.0,
                    "uid": "u", "controller": controller}]),
        );
        if p.name.is_none() {
            meta.insert(
                "name".into(),
                json!(format!(
                    "{}-{}",
                    name.0,
                    p.owner.as_ref().map_or(0, |o| o.2)
                )),
            );
        }
    }
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": Value::Object(meta)});
    if p.spec_missing {
        return pod;
    }
    let mut spec = Map::new();
    spec.insert(
        "containers".into(),
        p.containers.iter().map(container).collect(),
    );
    if let Some(init) = &p.init_containers {
        spec.insert(
            "initContainers".into(),
            init.iter().map(container).collect(),
        );
    }
    if p.ephemeral {
        spec.insert(
            "ephemeralContainers".into(),
            json!([{"name": "debug", "image": "busybox"}]),
        );
    }
    if let Some(os) = p.os {
        spec.insert(
            "os".into(),
            json!({"name": if os { "linux" } else { "windows" }}),
        );
    }
    if let Some(h) = p.host_users {
        spec.insert("hostUsers".into(), json!(h));
    }
    if let Some(sc) = &p.security_context {
        let mut s = Map::new();
        if let Some(v) = sc.run_as_non_root {
            s.insert("runAsNonRoot".into(), json!(v));
        }
        if let Some(v) = sc.run_as_user {
            s.insert("runAsUser".into(), json!(v));
        }
        if let Some(v) = sc.fs_group {
            s.insert("fsGroup".into(), json!(v));
        }
        if let Some(v) = &sc.seccomp {
            s.insert("seccompProfile".into(), seccomp(v));
        }
        if sc.sysctl {
            s.insert(
                "sysctls".into(),
                json!([{"name": "net.core.somaxconn", "value": "1024"}]),
            );
        }
        spec.insert("securityContext".into(), Value::Object(s));
    }
    if let Some(vols) = &p.volumes {
        let v: Vec<Value> = vols
            .iter()
            .map(|(name, src)| {
                let mut o = json!({"name": name.0});
                match src {
                    VolumeSource::Claim(c) => {
                        o["persistentVolumeClaim"] = json!({"claimName": c.0})
                    }
                    VolumeSource::EmptyDir => o["emptyDir"] = json!({}),
                    VolumeSource::HostPath(path) => o["hostPath"] = json!({"path": path.0}),
                    VolumeSource::ConfigMap(c) => o["configMap"] = json!({"name": c.0}),
                    VolumeSource::Secret(s) => o["secret"] = json!({"secretName": s.0}),
                    VolumeSource::Nothing => {}
                }
                o
            })
            .collect();
        spec.insert("volumes".into(), Value::Array(v));
    }
    pod["spec"] = Value::Object(spec);
    pod
}

fn check(policy: &Policy, pod: &Pod) {
    let first = mutate_pod(policy, pod);
    let mut doc =
        serde_json::to_value(pod).unwrap_or_else(|e| panic!("Pod does not serialise: {e}"));
    if let Err(e) = json_patch::patch(&mut doc, &first.patch) {
        panic!(
            "patch does not apply: {e}\npod: {}\npatch: {}",
            serde_json::to_string(pod).unwrap_or_default(),
            serde_json::to_string(&first.patch).unwrap_or_default()
        );
    }
    let patched: Pod = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("patched object is not a Pod: {e}\npatched: {doc}"));
    let second = mutate_pod(policy, &patched);
    assert!(
        second.patch.0.is_empty(),
        "mutation is not idempotent\npod: {}\nfirst patch: {}\nsecond patch: {}",
        serde_json::to_string(pod).unwrap_or_default(),
        serde_json::to_string(&first.patch).unwrap_or_default(),
        serde_json::to_string(&second.patch).unwrap_or_default()
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let policy = &policies()[usize::from(selector & 0x80 != 0)];
    if data.first() == Some(&b'{') {
        // JSON mode: the whole input is the pod.
        if let Ok(pod) = serde_json::from_slice::<Pod>(data) {
            check(policy, &pod);
        }
        return;
    }
    let mut u = Unstructured::new(rest);
    let Ok(shape) = PodShape::arbitrary(&mut u) else {
        return;
    };
    let json = pod_json(&shape);
    if let Ok(pod) = serde_json::from_value::<Pod>(json) {
        check(policy, &pod);
    }
});
