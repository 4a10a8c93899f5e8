//! One rule at a time. Start from a fully compliant workspace pod (the default policy's
//! mutation applied: no violation at all, checked first), change exactly one field, and
//! the validator must report exactly one violation, naming that field; or none, for the
//! allowed value next to each forbidden one (and for resources exactly at the tier's
//! limit, where one step above — 1m of cpu, 1 byte or 1Mi of memory — is refused).
//!
//! Every container rule is tried on each kind of container where the field exists:
//!
//! * `initContainers[0]` (`setup`), a plain init container;
//! * `initContainers[1]` (`sidecar`), a restartable init container (`restartPolicy:
//!   Always`): the API only allows probes and lifecycle hooks on init containers that
//!   are sidecars, so the probe and hook rules are tried there;
//! * `containers[0]` (`dev`);
//! * `ephemeralContainers[0]` (`debugger`). The API forbids resources, ports, probes and
//!   lifecycle hooks on ephemeral containers, so those rules are not tried there (the
//!   resource rules skip them on purpose: they share the pod's resources).
//!
//! Every case is collected and the failures are reported together, each with its name.

mod common;

use common::{mutate_raw, raw, typed};
use devenv_shared::admission::pss;
use devenv_shared::admission::validate::validate_pod;
use devenv_shared::admission::violation::{NoExtraSecrets, SecretCatalog};
use devenv_shared::model::policy::Policy;
use devenv_shared::model::quantity::{cpu_millicores, memory_bytes};
use serde_json::{json, Value};

const MI: i128 = 1024 * 1024;

/// A kind of container of the compliant pod, and which fields the API allows it.
#[derive(Clone, Copy)]
struct Kind {
    /// `initContainers`, `containers` or `ephemeralContainers`.
    list: &'static str,
    index: usize,
    name: &'static str,
    resources: bool,
    ports: bool,
    probes: bool,
}

const KINDS: [Kind; 4] = [
    Kind {
        list: "initContainers",
        index: 0,
        name: "setup",
        resources: true,
        ports: true,
        probes: false,
    },
    Kind {
        list: "initContainers",
        index: 1,
        name: "sidecar",
        resources: true,
        ports: true,
        probes: true,
    },
    Kind {
        list: "containers",
        index: 0,
        name: "dev",
        resources: true,
        ports: true,
        probes: true,
    },
    Kind {
        list: "ephemeralContainers",
        index: 0,
        name: "debugger",
        resources: false,
        ports: false,
        probes: false,
    },
];

impl Kind {
    /// `spec.containers[0]`
    fn path(&self) -> String {
        format!("spec.{}[{}]", self.list, self.index)
    }

    /// The JSON path segments of the container.
    fn segments(&self) -> Vec<String> {
        vec!["spec".into(), self.list.into(), self.index.to_string()]
    }
}

/// A workspace pod with the three kinds of containers, nothing stated about security or
/// resources, in tier `tier` (the default when `None`).
fn base(tier: Option<&str>) -> Value {
    let mut doc = raw(r#"
apiVersion: v1
kind: Pod
metadata:
  name: alice
  namespace: team-a
  labels: {devenv.io/workspace: alice}
spec:
  initContainers:
  - {name: setup, image: x}
  - {name: sidecar, image: x, restartPolicy: Always}
  containers:
  - {name: dev, image: x}
  ephemeralContainers:
  - {name: debugger, image: x}
"#);
    if let Some(tier) = tier {
        doc["metadata"]["annotations"] = json!({ "devenv.io/tier": tier });
    }
    doc
}

/// [`base`] with the default policy's mutation applied.
fn compliant(tier: Option<&str>) -> Value {
    let (_, patched, _) = mutate_raw(&Policy::default(), &base(tier));
    patched
}

/// Sets the field at `path` (object keys; list indexes as numbers), creating the objects
/// above it that are missing. One field changes, whatever it takes to hold it.
fn set(doc: &mut Value, path: &[String], value: Value) {
    let (last, parents) = path.split_last().expect("a non-empty path");
    let mut at = doc;
    for key in parents {
        at = match at {
            Value::Array(items) => {
                let i: usize = key.parse().expect("a list index");
                &mut items[i]
            }
            other => {
                if !other.is_object() {
                    *other = json!({});
                }
                other
                    .as_object_mut()
                    .expect("an object")
                    .entry(key.clone())
                    .or_insert_with(|| json!({}))
            }
        };
    }
    match at {
        Value::Array(items) => items[last.parse::<usize>().expect("a list index")] = value,
        other => {
            if !other.is_object() {
                *other = json!({});
            }
            other
                .as_object_mut()
                .expect("an object")
                .insert(last.clone(), value);
        }
    }
}

/// Removes the field at `path`; it must exist.
fn remove(doc: &mut Value, path: &[String]) {
    let (last, parents) = path.split_last().expect("a non-empty path");
    let mut at = &mut *doc;
    for key in parents {
        at = match at {
            Value::Array(items) => &mut items[key.parse::<usize>().expect("a list index")],
            other => &mut other[key.as_str()],
        };
    }
    let removed = at.as_object_mut().and_then(|o| o.remove(last.as_str()));
    assert!(removed.is_some(), "no field {path:?} to remove in {doc}");
}

/// Appends to the list at `path` (created when absent); returns the new item's index.
fn push(doc: &mut Value, path: &[String], item: Value) -> usize {
    let mut at = &mut *doc;
    for key in path {
        at = match at {
            Value::Array(items) => &mut items[key.parse::<usize>().expect("a list index")],
            other => {
                if other.get(key.as_str()).is_none_or(Value::is_null) {
                    other[key.as_str()] = json!([]);
                }
                &mut other[key.as_str()]
            }
        };
    }
    let items = at.as_array_mut().expect("a list");
    items.push(item);
    items.len() - 1
}

fn segments(base: &[String], rest: &str) -> Vec<String> {
    let mut out = base.to_vec();
    out.extend(rest.split('.').map(str::to_owned));
    out
}

fn pod_path(rest: &str) -> Vec<String> {
    segments(&[], rest)
}

/// One change to a compliant pod, and what the validator must say about it.
struct Case {
    name: String,
    doc: Value,
    /// The one field the violation names; `None`: allowed, no violation at all.
    expect: Option<String>,
    /// How many violations name it: 1, but for [`TWICE`].
    times: usize,
}

/// Pod-level changes the validator reports twice, both times naming the one field changed:
/// the stated value, and (as upstream's check also does) the containers that no longer
/// inherit a valid one from the pod. Still one field, so the test pins the count.
const TWICE: &[&str] = &[
    "runAsNonRoot: spec.securityContext.runAsNonRoot = false (refused)",
    "seccomp: spec.securityContext.seccompProfile.type = \"Unconfined\" (refused)",
];

#[derive(Default)]
struct Cases(Vec<Case>);

impl Cases {
    /// A case: `change` applied to a copy of `from`.
    fn add(
        &mut self,
        name: String,
        from: &Value,
        expect: Option<String>,
        change: impl FnOnce(&mut Value),
    ) {
        let mut doc = from.clone();
        change(&mut doc);
        // An allowed value may be what the compliant pod holds already (a tier's limit as
        // the mutation spells it); a refused one must be a change.
        assert!(
            expect.is_none() || &doc != from,
            "{name}: the change changed nothing"
        );
        let times = if TWICE.contains(&name.as_str()) { 2 } else { 1 };
        self.0.push(Case {
            name,
            doc,
            expect,
            times,
        });
    }

    /// A refused value of field `rest` of every container `kinds` lets have it.
    fn container_field(
        &mut self,
        from: &Value,
        kinds: impl Fn(&Kind) -> bool,
        rule: &str,
        rest: &str,
        value: Value,
        refused: bool,
    ) {
        for kind in KINDS.iter().filter(|k| kinds(k)) {
            let field = format!("{}.{rest}", kind.path());
            let verdict = if refused { "refused" } else { "allowed" };
            self.add(
                format!("{rule}: {field} = {value} ({verdict})"),
                from,
                refused.then(|| field.clone()),
                |doc| set(doc, &segments(&kind.segments(), rest), value.clone()),
            );
        }
    }

    /// A refused value of a pod-level field `rest`.
    fn pod_field(&mut self, from: &Value, rule: &str, rest: &str, value: Value, refused: bool) {
        let verdict = if refused { "refused" } else { "allowed" };
        self.add(
            format!("{rule}: {rest} = {value} ({verdict})"),
            from,
            refused.then(|| rest.to_owned()),
            |doc| set(doc, &pod_path(rest), value.clone()),
        );
    }

    /// Validates every case; returns the failures, each naming its case.
    fn run(&self, policy: &Policy, secrets: &dyn SecretCatalog) -> Vec<String> {
        let mut failures = Vec::new();
        for case in &self.0 {
            let found = validate_pod(policy, &typed(&case.doc), secrets);
            let fields: Vec<&str> = found.iter().map(|v| v.field.as_str()).collect();
            match &case.expect {
                None if found.is_empty() => {}
                None => failures.push(format!(
                    "{}: expected no violation, got {fields:?}",
                    case.name
                )),
                Some(field) if fields == vec![field.as_str(); case.times] => {}
                Some(field) => failures.push(format!(
                    "{}: expected exactly {} violation(s), on {field}, got {} on {fields:?}",
                    case.name,
                    case.times,
                    found.len()
                )),
            }
        }
        failures
    }
}

fn any(_: &Kind) -> bool {
    true
}

/// The Pod Security `restricted` rules, one field at a time.
fn pod_security_cases(from: &Value) -> Cases {
    let mut cases = Cases::default();
    let sc = "securityContext";

    // privileged
    let f = format!("{sc}.privileged");
    cases.container_field(from, any, "privileged", &f, json!(true), true);
    cases.container_field(from, any, "privileged", &f, json!(false), false);

    // capabilities: drop must hold ALL; add only NET_BIND_SERVICE.
    let f = format!("{sc}.capabilities.drop");
    let drop = json!(["NET_RAW", "SYS_ADMIN"]);
    cases.container_field(from, any, "capabilities.drop", &f, drop, true);
    let drop = json!(["CHOWN", "ALL"]);
    cases.container_field(from, any, "capabilities.drop", &f, drop, false);
    let f = format!("{sc}.capabilities.add");
    for (cap, refused) in [
        ("NET_RAW", true),
        ("CHOWN", true),
        ("NET_BIND_SERVICE", false),
    ] {
        for kind in KINDS {
            let field = format!("{}.{f}[0]", kind.path());
            cases.add(
                format!("capabilities.add: {field} = {cap}"),
                from,
                refused.then(|| field.clone()),
                |doc| set(doc, &segments(&kind.segments(), &f), json!([cap])),
            );
        }
    }

    // allowPrivilegeEscalation must be false: true, or absent, is refused.
    let f = format!("{sc}.allowPrivilegeEscalation");
    cases.container_field(from, any, "allowPrivilegeEscalation", &f, json!(true), true);
    for kind in KINDS {
        let field = format!("{}.{f}", kind.path());
        cases.add(
            format!("allowPrivilegeEscalation: {field} removed"),
            from,
            Some(field.clone()),
            |doc| remove(doc, &segments(&kind.segments(), &f)),
        );
    }

    // runAsNonRoot: false on a container; runAsUser: 0 on a container (1 is fine).
    let f = format!("{sc}.runAsNonRoot");
    cases.container_field(from, any, "runAsNonRoot", &f, json!(false), true);
    cases.container_field(from, any, "runAsNonRoot", &f, json!(true), false);
    let f = format!("{sc}.runAsUser");
    cases.container_field(from, any, "runAsUser", &f, json!(0), true);
    cases.container_field(from, any, "runAsUser", &f, json!(1), false);
    // ... and on the pod.
    cases.pod_field(
        from,
        "runAsNonRoot",
        "spec.securityContext.runAsNonRoot",
        json!(false),
        true,
    );
    cases.pod_field(
        from,
        "runAsUser",
        "spec.securityContext.runAsUser",
        json!(0),
        true,
    );
    cases.pod_field(
        from,
        "runAsUser",
        "spec.securityContext.runAsUser",
        json!(1),
        false,
    );

    // seccomp: Unconfined refused on a container or the pod; Localhost allowed.
    let f = format!("{sc}.seccompProfile.type");
    cases.container_field(from, any, "seccomp", &f, json!("Unconfined"), true);
    cases.container_field(from, any, "seccomp", &f, json!("Localhost"), false);
    let pod_seccomp = "spec.securityContext.seccompProfile.type";
    cases.pod_field(from, "seccomp", pod_seccomp, json!("Unconfined"), true);
    cases.pod_field(from, "seccomp", pod_seccomp, json!("Localhost"), false);

    // host namespaces.
    for field in ["spec.hostNetwork", "spec.hostPID", "spec.hostIPC"] {
        cases.pod_field(from, "host namespaces", field, json!(true), true);
        cases.pod_field(from, "host namespaces", field, json!(false), false);
    }

    // hostPort (no ports on ephemeral containers).
    for (port, refused) in [(8080, true), (0, false)] {
        for kind in KINDS.iter().filter(|k| k.ports) {
            let field = format!("{}.ports[0].hostPort", kind.path());
            cases.add(
                format!("host ports: {field} = {port}"),
                from,
                refused.then(|| field.clone()),
                |doc| {
                    let ports = json!([{"containerPort": 8080, "hostPort": port}]);
                    set(doc, &segments(&kind.segments(), "ports"), ports);
                },
            );
        }
    }

    // volume types: one more volume (not mounted), of a refused or an allowed type.
    for (kind, source, refused) in [
        ("hostPath", json!({"path": "/etc"}), true),
        ("nfs", json!({"server": "nfs.example", "path": "/"}), true),
        (
            "gitRepo",
            json!({"repository": "https://example.com/r.git"}),
            true,
        ),
        (
            "iscsi",
            json!({"targetPortal": "t:3260", "iqn": "iqn.x", "lun": 0}),
            true,
        ),
        ("emptyDir", json!({}), false),
        ("configMap", json!({"name": "cm"}), false),
    ] {
        let volumes = from["spec"]["volumes"].as_array().map_or(0, Vec::len);
        let field = format!("spec.volumes[{volumes}].{kind}");
        cases.add(
            format!("volume types: {field}"),
            from,
            refused.then(|| field.clone()),
            |doc| {
                push(
                    doc,
                    &pod_path("spec.volumes"),
                    json!({"name": "extra", kind: source}),
                );
            },
        );
    }

    // procMount: only Default.
    let f = format!("{sc}.procMount");
    cases.container_field(from, any, "procMount", &f, json!("Unmasked"), true);
    cases.container_field(from, any, "procMount", &f, json!("Default"), false);

    // sysctls: only the safe set.
    for (name, refused) in [
        ("kernel.msgmax", true),
        ("net.ipv4.ip_local_port_range", false),
    ] {
        let field = "spec.securityContext.sysctls[0].name";
        cases.add(
            format!("sysctls: {name}"),
            from,
            refused.then(|| field.to_owned()),
            |doc| {
                let sysctls = json!([{"name": name, "value": "1"}]);
                set(doc, &pod_path("spec.securityContext.sysctls"), sysctls);
            },
        );
    }

    // SELinux: the type from the list (or empty), no user, no role; container and pod.
    for (option, value, refused) in [
        ("type", "spc_t", true),
        ("type", "container_t", false),
        ("type", "", false),
        ("user", "root", true),
        ("role", "sysadm_r", true),
        ("level", "s0:c1,c2", false),
    ] {
        let f = format!("{sc}.seLinuxOptions.{option}");
        cases.container_field(from, any, "SELinux", &f, json!(value), refused);
        let pod = format!("spec.securityContext.seLinuxOptions.{option}");
        cases.pod_field(from, "SELinux", &pod, json!(value), refused);
    }

    // AppArmor: the beta annotation (per container name) and the fields.
    for (value, refused) in [
        ("unconfined", true),
        ("runtime/default", false),
        ("localhost/p", false),
    ] {
        for kind in KINDS {
            let key = format!(
                "container.apparmor.security.beta.kubernetes.io/{}",
                kind.name
            );
            let field = format!("metadata.annotations[{key}]");
            cases.add(
                format!("AppArmor annotation: {field} = {value}"),
                from,
                refused.then(|| field.clone()),
                |doc| {
                    set(
                        doc,
                        &["metadata".into(), "annotations".into(), key.clone()],
                        json!(value),
                    )
                },
            );
        }
    }
    for (t, refused) in [("Unconfined", true), ("RuntimeDefault", false)] {
        let f = format!("{sc}.appArmorProfile.type");
        cases.container_field(from, any, "AppArmor", &f, json!(t), refused);
        let pod = "spec.securityContext.appArmorProfile.type";
        cases.pod_field(from, "AppArmor", pod, json!(t), refused);
    }

    // Windows HostProcess.
    let f = format!("{sc}.windowsOptions.hostProcess");
    cases.container_field(from, any, "hostProcess", &f, json!(true), true);
    cases.container_field(from, any, "hostProcess", &f, json!(false), false);
    let pod = "spec.securityContext.windowsOptions.hostProcess";
    cases.pod_field(from, "hostProcess", pod, json!(true), true);

    // Probes and lifecycle hooks must not name a host (only where the API allows them).
    for (handler, action) in [
        ("livenessProbe", "httpGet"),
        ("readinessProbe", "tcpSocket"),
        ("startupProbe", "httpGet"),
        ("lifecycle.postStart", "httpGet"),
        ("lifecycle.preStop", "tcpSocket"),
    ] {
        for (host, refused) in [("example.com", true), ("", false)] {
            for kind in KINDS.iter().filter(|k| k.probes) {
                let field = format!("{}.{handler}.{action}.host", kind.path());
                cases.add(
                    format!("probe host: {field} = {host:?}"),
                    from,
                    refused.then(|| field.clone()),
                    |doc| {
                        set(
                            doc,
                            &segments(&kind.segments(), handler),
                            json!({ action: {"host": host, "port": 8080} }),
                        );
                    },
                );
            }
        }
    }
    cases
}

/// The workspace rules: the tier's limits (cpu and memory apart, at the limit and one step
/// above), a known tier, injectable Secrets only.
fn workspace_cases(policy: &Policy) -> Cases {
    let mut cases = Cases::default();
    for tier_name in policy.tier_names() {
        let from = compliant(Some(tier_name));
        let tier = policy.tier(Some(tier_name));
        let cpu = cpu_millicores(&tier.limits.cpu).expect("the tier's cpu limit");
        let memory = memory_bytes(&tier.limits.memory).expect("the tier's memory limit");
        assert_eq!(memory % MI, 0, "{tier_name}: a memory limit in whole Mi");
        let steps = [
            ("cpu", format!("{cpu}m"), format!("{}m", cpu + 1)),
            (
                "cpu",
                format!("{}", cpu as f64 / 1000.0),
                format!("{}", (cpu + 1) as f64 / 1000.0),
            ),
            ("memory", format!("{memory}"), format!("{}", memory + 1)),
            (
                "memory",
                format!("{}Mi", memory / MI),
                format!("{}Mi", memory / MI + 1),
            ),
        ];
        for kind in KINDS.iter().filter(|k| k.resources) {
            for list in ["limits", "requests"] {
                for (resource, at, above) in &steps {
                    let rest = format!("resources.{list}.{resource}");
                    let field = format!("{}.{rest}", kind.path());
                    let path = segments(&kind.segments(), &rest);
                    cases.add(
                        format!("tier {tier_name}: {field} = {at}, at the limit"),
                        &from,
                        None,
                        |doc| set(doc, &path, json!(at)),
                    );
                    cases.add(
                        format!("tier {tier_name}: {field} = {above}, one step above"),
                        &from,
                        Some(field.clone()),
                        |doc| set(doc, &path, json!(above)),
                    );
                }
            }
            // A limit is required (the mutation fills it; a stated pod may not drop it).
            for resource in ["cpu", "memory"] {
                let rest = format!("resources.limits.{resource}");
                let field = format!("{}.{rest}", kind.path());
                cases.add(
                    format!("tier {tier_name}: {field} removed"),
                    &from,
                    Some(field.clone()),
                    |doc| remove(doc, &segments(&kind.segments(), &rest)),
                );
            }
        }
        // Pod-level resources are bounded by the same tier.
        for list in ["limits", "requests"] {
            for (resource, at, above) in &steps {
                let field = format!("spec.resources.{list}.{resource}");
                cases.add(
                    format!("tier {tier_name}: {field} = {at}, at the limit"),
                    &from,
                    None,
                    |doc| set(doc, &pod_path(&field), json!(at)),
                );
                cases.add(
                    format!("tier {tier_name}: {field} = {above}, one step above"),
                    &from,
                    Some(field.clone()),
                    |doc| set(doc, &pod_path(&field), json!(above)),
                );
            }
        }
    }

    let from = compliant(None);
    // An unknown tier (resources are then not judged: one violation, the tier).
    let tier_field = "metadata.annotations[devenv.io/tier]";
    cases.add(
        "unknown tier: huge".to_owned(),
        &from,
        Some(tier_field.to_owned()),
        |doc| {
            set(
                doc,
                &pod_path("metadata.annotations"),
                json!({"devenv.io/tier": "huge"}),
            )
        },
    );

    // Secrets: a non-injectable one through env, envFrom, a volume, a projected volume; the
    // policy's own Secret is fine.
    for (secret, refused) in [("not-injectable", true), ("devenv-secrets", false)] {
        for kind in KINDS {
            let env = json!({"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": secret, "key": "k"}}});
            let n = from
                .pointer(&format!("/spec/{}/{}/env", kind.list, kind.index))
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let field = format!("{}.env[{n}].valueFrom.secretKeyRef.name", kind.path());
            cases.add(
                format!("secrets: {field} = {secret}"),
                &from,
                refused.then(|| field.clone()),
                |doc| {
                    push(doc, &segments(&kind.segments(), "env"), env);
                },
            );
            let n = from
                .pointer(&format!("/spec/{}/{}/envFrom", kind.list, kind.index))
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let field = format!("{}.envFrom[{n}].secretRef.name", kind.path());
            cases.add(
                format!("secrets: {field} = {secret}"),
                &from,
                refused.then(|| field.clone()),
                |doc| {
                    push(
                        doc,
                        &segments(&kind.segments(), "envFrom"),
                        json!({"secretRef": {"name": secret}}),
                    );
                },
            );
        }
        let volumes = from["spec"]["volumes"].as_array().map_or(0, Vec::len);
        let field = format!("spec.volumes[{volumes}].secret.secretName");
        cases.add(
            format!("secrets: {field} = {secret}"),
            &from,
            refused.then(|| field.clone()),
            |doc| {
                push(
                    doc,
                    &pod_path("spec.volumes"),
                    json!({"name": "s", "secret": {"secretName": secret}}),
                );
            },
        );
        let field = format!("spec.volumes[{volumes}].projected.sources[0].secret.name");
        cases.add(
            format!("secrets: {field} = {secret}"),
            &from,
            refused.then(|| field.clone()),
            |doc| {
                push(
                    doc,
                    &pod_path("spec.volumes"),
                    json!({"name": "p", "projected": {"sources": [{"secret": {"name": secret}}]}}),
                );
            },
        );
    }
    cases
}

#[test]
fn the_compliant_pod_has_no_violation_for_any_tier() {
    let policy = Policy::default();
    let mut tiers: Vec<Option<&str>> = vec![None];
    tiers.extend(policy.tier_names().into_iter().map(Some));
    for tier in tiers {
        let doc = compliant(tier);
        let pod = typed(&doc);
        assert_eq!(
            pss::check_restricted(&pod),
            vec![],
            "tier {tier:?}: {doc:#}"
        );
        assert_eq!(
            validate_pod(&policy, &pod, &NoExtraSecrets),
            vec![],
            "tier {tier:?}: {doc:#}"
        );
        // Every kind of container is there, as the cases expect.
        for kind in KINDS {
            let name = doc
                .pointer(&format!("/spec/{}/{}/name", kind.list, kind.index))
                .and_then(Value::as_str);
            assert_eq!(name, Some(kind.name), "{doc:#}");
        }
    }
}

#[test]
fn each_pod_security_rule_alone_is_one_violation_naming_its_field() {
    let policy = Policy::default();
    let cases = pod_security_cases(&compliant(None));
    let failures = cases.run(&policy, &NoExtraSecrets);
    println!("{} Pod Security cases", cases.0.len());
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.0.len(),
        failures.join("\n")
    );
}

#[test]
fn each_workspace_rule_alone_is_one_violation_naming_its_field() {
    let policy = Policy::default();
    let cases = workspace_cases(&policy);
    let failures = cases.run(&policy, &NoExtraSecrets);
    println!("{} workspace-rule cases", cases.0.len());
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.0.len(),
        failures.join("\n")
    );
}

/// The Secret cases again, with a catalog that offers `not-injectable`: nothing refused.
#[test]
fn a_secret_the_catalog_offers_is_no_violation() {
    let policy = Policy::default();
    let offered = |namespace: &str, name: &str| namespace == "team-a" && name == "not-injectable";
    let mut cases = workspace_cases(&policy);
    cases.0.retain(|c| c.name.starts_with("secrets: "));
    assert!(cases.0.len() >= 10, "{} secret cases", cases.0.len());
    for case in &mut cases.0 {
        case.expect = None;
    }
    let failures = cases.run(&policy, &offered);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
