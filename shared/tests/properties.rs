//! Property tests over generated pod shapes (absent, null, empty and stated fields mixed):
//! the patch applies to the raw object, only adds, is idempotent, never introduces a
//! violation, and the patched pod validates clean exactly when the pod states nothing
//! forbidden.

mod common;

use std::collections::BTreeSet;

use common::{apply_raw, typed};
use devenv_shared::admission::mutate::mutate_pod;
use devenv_shared::admission::pss;
use devenv_shared::admission::validate::validate_pod;
use devenv_shared::admission::violation::NoExtraSecrets;
use devenv_shared::model::policy::Policy;
use devenv_shared::model::quantity::Quantity;
use json_patch::PatchOperation;
use proptest::prelude::*;
use proptest::sample::subsequence;
use serde_json::{json, Map, Value};

/// A field that is absent, explicitly null, or set.
#[derive(Debug, Clone)]
enum Field {
    Absent,
    Null,
    Set(Value),
}

fn put(obj: &mut Map<String, Value>, key: &str, field: Field) {
    match field {
        Field::Absent => {}
        Field::Null => {
            obj.insert(key.to_string(), Value::Null);
        }
        Field::Set(v) => {
            obj.insert(key.to_string(), v);
        }
    }
}

fn field(values: Vec<Value>) -> impl Strategy<Value = Field> {
    prop_oneof![
        2 => Just(Field::Absent),
        1 => Just(Field::Null),
        3 => proptest::sample::select(values).prop_map(Field::Set),
    ]
}

/// Values of a field, keeping only the `allowed` ones for benign pods. Benign pods state no
/// forbidden value, so the "validates clean" direction is exercised often, not by luck.
fn pick(benign: bool, allowed: Vec<Value>, forbidden: Vec<Value>) -> Vec<Value> {
    if benign {
        allowed
    } else {
        allowed.into_iter().chain(forbidden).collect()
    }
}

/// A boolean whose forbidden value is `bad`.
fn bool_field(benign: bool, bad: bool) -> impl Strategy<Value = Field> {
    field(pick(benign, vec![json!(!bad)], vec![json!(bad)]))
}

fn seccomp(benign: bool) -> impl Strategy<Value = Field> {
    field(pick(
        benign,
        vec![
            json!({"type": "RuntimeDefault"}),
            json!({"type": "Localhost", "localhostProfile": "p.json"}),
        ],
        vec![json!({"type": "Unconfined"})],
    ))
}

fn capabilities(benign: bool) -> impl Strategy<Value = Field> {
    let drop = subsequence(vec!["ALL", "NET_RAW", "all"], 0..=3);
    let adds = if benign {
        vec!["NET_BIND_SERVICE"]
    } else {
        vec!["NET_BIND_SERVICE", "NET_RAW", "SYS_ADMIN", "CHOWN"]
    };
    let add = subsequence(adds, 0..=1);
    (any::<bool>(), any::<bool>(), drop, add).prop_flat_map(|(has_drop, has_add, drop, add)| {
        let mut caps = Map::new();
        if has_drop {
            caps.insert("drop".to_string(), json!(drop));
        }
        if has_add {
            caps.insert("add".to_string(), json!(add));
        }
        field(vec![Value::Object(caps)])
    })
}

fn uid(benign: bool) -> impl Strategy<Value = Field> {
    field(pick(benign, vec![json!(1000), json!(4242)], vec![json!(0)]))
}

fn container_security(benign: bool) -> impl Strategy<Value = Field> {
    (
        bool_field(benign, true),
        bool_field(benign, true),
        capabilities(benign),
        bool_field(benign, false),
        uid(benign),
        seccomp(benign),
        field(pick(
            benign,
            vec![json!("Default")],
            vec![json!("Unmasked")],
        )),
    )
        .prop_flat_map(
            |(privileged, ape, caps, non_root, user, seccomp, proc_mount)| {
                let mut sc = Map::new();
                put(&mut sc, "privileged", privileged);
                put(&mut sc, "allowPrivilegeEscalation", ape);
                put(&mut sc, "capabilities", caps);
                put(&mut sc, "runAsNonRoot", non_root);
                put(&mut sc, "runAsUser", user);
                put(&mut sc, "seccompProfile", seccomp);
                put(&mut sc, "procMount", proc_mount);
                field(vec![Value::Object(sc)])
            },
        )
}

fn resource_list(benign: bool) -> impl Strategy<Value = Field> {
    let (cpus, memories) = if benign {
        (vec!["100m", "1"], vec!["256Mi", "2Gi"])
    } else {
        (
            vec!["100m", "1", "3", "10"],
            vec!["256Mi", "2Gi", "6Gi", "32Gi"],
        )
    };
    (
        proptest::option::of(proptest::sample::select(cpus)),
        proptest::option::of(proptest::sample::select(memories)),
    )
        .prop_flat_map(|(cpu, memory)| {
            let mut list = Map::new();
            if let Some(cpu) = cpu {
                list.insert("cpu".to_string(), json!(cpu));
            }
            if let Some(memory) = memory {
                list.insert("memory".to_string(), json!(memory));
            }
            field(vec![Value::Object(list)])
        })
}

fn resources(benign: bool) -> impl Strategy<Value = Field> {
    (resource_list(benign), resource_list(benign)).prop_flat_map(|(limits, requests)| {
        let mut r = Map::new();
        put(&mut r, "limits", limits);
        put(&mut r, "requests", requests);
        field(vec![Value::Object(r)])
    })
}

fn container(name: String, ephemeral: bool, benign: bool) -> impl Strategy<Value = Value> {
    (
        container_security(benign),
        resources(benign),
        field(vec![
            json!([]),
            json!([{"name": "data", "mountPath": "/workspace"}]),
            json!([{"name": "workspace", "mountPath": "/elsewhere"}]),
        ]),
        field(pick(
            benign,
            vec![
                json!([]),
                json!([{"secretRef": {"name": "devenv-secrets"}}]),
            ],
            vec![json!([{"secretRef": {"name": "other"}}])],
        )),
        field(pick(
            benign,
            vec![json!([{"containerPort": 80}])],
            vec![json!([{"containerPort": 80, "hostPort": 8080}])],
        )),
    )
        .prop_map(move |(sc, res, mounts, env_from, ports)| {
            let mut c = Map::new();
            c.insert("name".to_string(), json!(name));
            c.insert("image".to_string(), json!("x"));
            put(&mut c, "securityContext", sc);
            if !ephemeral {
                // The API forbids these on ephemeral containers.
                put(&mut c, "resources", res);
                put(&mut c, "volumeMounts", mounts);
                put(&mut c, "ports", ports);
            }
            put(&mut c, "envFrom", env_from);
            Value::Object(c)
        })
}

fn containers(
    prefix: &'static str,
    range: std::ops::RangeInclusive<usize>,
    ephemeral: bool,
    benign: bool,
) -> impl Strategy<Value = Vec<Value>> {
    range.prop_flat_map(move |n| {
        (0..n)
            .map(|i| container(format!("{prefix}{i}"), ephemeral, benign))
            .collect::<Vec<_>>()
    })
}

fn pod_security(benign: bool) -> impl Strategy<Value = Field> {
    (
        bool_field(benign, false),
        uid(benign),
        seccomp(benign),
        field(pick(
            benign,
            vec![json!([{"name": "net.ipv4.tcp_syncookies", "value": "1"}])],
            vec![json!([{"name": "kernel.msgmax", "value": "1"}])],
        )),
    )
        .prop_flat_map(|(non_root, user, seccomp, sysctls)| {
            let mut sc = Map::new();
            put(&mut sc, "runAsNonRoot", non_root);
            put(&mut sc, "runAsUser", user);
            put(&mut sc, "seccompProfile", seccomp);
            put(&mut sc, "sysctls", sysctls);
            field(vec![Value::Object(sc)])
        })
}

/// Any pod shape: half of them benign (stating nothing forbidden), half unconstrained.
fn pod() -> impl Strategy<Value = Value> {
    prop_oneof![pod_with(true), pod_with(false)]
}

fn pod_with(benign: bool) -> impl Strategy<Value = Value> {
    let tiers = if benign {
        vec![None, Some("large")]
    } else {
        vec![None, Some("large"), Some("huge")]
    };
    (
        pod_security(benign),
        bool_field(benign, true),
        field(vec![json!(true), json!(false)]),
        field(pick(
            benign,
            vec![
                json!([]),
                json!([{"name": "data", "emptyDir": {}}]),
                json!([{"name": "workspace", "emptyDir": {}}]),
            ],
            vec![json!([{"name": "hp", "hostPath": {"path": "/tmp"}}])],
        )),
        containers("c", 1..=2, false, benign),
        containers("i", 0..=1, false, benign),
        containers("e", 0..=1, true, benign),
        proptest::sample::select(vec![0u8, 1, 2]),
        proptest::sample::select(tiers),
    )
        .prop_map(|(sc, host_network, host_users, volumes, cs, inits, ephemerals, owner, tier)| {
            let mut spec = Map::new();
            put(&mut spec, "securityContext", sc);
            put(&mut spec, "hostNetwork", host_network);
            put(&mut spec, "hostUsers", host_users);
            put(&mut spec, "volumes", volumes);
            spec.insert("containers".to_string(), json!(cs));
            if !inits.is_empty() {
                spec.insert("initContainers".to_string(), json!(inits));
            }
            if !ephemerals.is_empty() {
                spec.insert("ephemeralContainers".to_string(), json!(ephemerals));
            }
            let mut meta = json!({
                "name": if owner == 2 { "other" } else { "ws-0" },
                "namespace": "ns",
                "labels": {"devenv.io/workspace": "ws"},
            });
            if owner > 0 {
                meta["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "ws", "uid": "u"}]);
            }
            if let Some(tier) = tier {
                meta["annotations"] = json!({"devenv.io/tier": tier});
            }
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
        })
}

/// An oracle independent of the validator: does the raw pod state something the policy
/// forbids (a value mutation must not change)?
fn states_forbidden(doc: &Value) -> bool {
    let spec = &doc["spec"];
    let user_ns = spec["hostUsers"] == json!(false);
    let tier = doc["metadata"]["annotations"]["devenv.io/tier"].as_str();
    if tier == Some("huge") {
        return true;
    }
    let (cpu_max, mem_max) = if tier == Some("large") {
        ("8", "16Gi")
    } else {
        ("2", "4Gi")
    };
    let q = |v: &Value| v.as_str().and_then(|s| Quantity::parse(s).ok());
    // The tier limits are literals that parse; comparing against an Option would make any
    // value "above" a limit that failed to parse (None < Some).
    let cpu_max = Quantity::parse(cpu_max).expect("a tier's cpu limit parses");
    let mem_max = Quantity::parse(mem_max).expect("a tier's memory limit parses");
    let above = |list: &Value| {
        q(&list["cpu"]).is_some_and(|c| c > cpu_max)
            || q(&list["memory"]).is_some_and(|m| m > mem_max)
    };
    let sc = &spec["securityContext"];
    if spec["hostNetwork"] == json!(true)
        || sc["seccompProfile"]["type"] == json!("Unconfined")
        || sc["sysctls"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["name"] == "kernel.msgmax"))
        || spec["volumes"]
            .as_array()
            .is_some_and(|v| v.iter().any(|v| v.get("hostPath").is_some()))
        || (!user_ns && (sc["runAsNonRoot"] == json!(false) || sc["runAsUser"] == json!(0)))
    {
        return true;
    }
    let all = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|list| spec[*list].as_array().cloned().unwrap_or_default());
    for c in all {
        let sc = &c["securityContext"];
        let adds_forbidden = sc["capabilities"]["add"]
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a != "NET_BIND_SERVICE"));
        if sc["privileged"] == json!(true)
            || sc["allowPrivilegeEscalation"] == json!(true)
            || adds_forbidden
            || sc["seccompProfile"]["type"] == json!("Unconfined")
            || sc["procMount"] == json!("Unmasked")
            || (!user_ns && (sc["runAsNonRoot"] == json!(false) || sc["runAsUser"] == json!(0)))
            || c["ports"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p.get("hostPort").is_some()))
            || c["envFrom"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["secretRef"]["name"] == "other"))
            || above(&c["resources"]["limits"])
            || above(&c["resources"]["requests"])
        {
            return true;
        }
    }
    false
}

fn fields(v: &[devenv_shared::admission::violation::Violation]) -> BTreeSet<String> {
    v.iter().map(|v| v.field.clone()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn mutation_is_a_valid_idempotent_fill(doc in pod()) {
        let policy = Policy::default();
        let original = typed(&doc);
        let first = mutate_pod(&policy, &original);
        prop_assert!(first.patch.0.iter().all(|op| matches!(op, PatchOperation::Add(_))));
        // Applies to the raw object (nulls and all) and yields a Pod.
        let patched_doc = apply_raw(&doc, &first.patch);
        let patched = typed(&patched_doc);
        // Mutating twice == mutating once.
        let second = mutate_pod(&policy, &patched);
        prop_assert!(second.patch.0.is_empty(), "second patch: {:?}", second.patch);
        prop_assert_eq!(second.bare_claims, first.bare_claims);
        prop_assert_eq!(apply_raw(&patched_doc, &second.patch), patched_doc.clone());
        // Never introduces a Pod Security violation.
        let before = fields(&pss::check_restricted(&original));
        let after = fields(&pss::check_restricted(&patched));
        prop_assert!(after.is_subset(&before), "new violations: {:?}", after.difference(&before).collect::<Vec<_>>());
    }

    #[test]
    fn patched_pod_is_clean_unless_it_states_a_forbidden_thing(doc in pod()) {
        let policy = Policy::default();
        let mutation = mutate_pod(&policy, &typed(&doc));
        let patched = typed(&apply_raw(&doc, &mutation.patch));
        let violations = validate_pod(&policy, &patched, &NoExtraSecrets);
        let forbidden = states_forbidden(&doc);
        prop_assert_eq!(
            violations.is_empty(),
            !forbidden,
            "states_forbidden={} violations={:#?}\npod={}",
            forbidden,
            violations,
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        );
    }

    #[test]
    fn quantity_parser_never_panics(s in "\\PC{0,24}") {
        let _ = Quantity::parse(&s);
    }

    #[test]
    fn quantity_suffixes_agree(n in 0u64..1_000_000) {
        let n = i128::from(n);
        let parse = |s: String| Quantity::parse(&s).ok();
        prop_assert_eq!(parse(format!("{n}")).map(|q| q.millis()), Some(n * 1000));
        prop_assert_eq!(parse(format!("{n}m")).map(|q| q.millis()), Some(n));
        prop_assert_eq!(parse(format!("{n}Ki")).map(|q| q.units()), Some(n * 1024));
        // Both sides parsed (None == None would prove nothing), and agree.
        let (k, e3) = (parse(format!("{n}k")), parse(format!("{n}e3")));
        prop_assert!(k.is_some(), "{}k does not parse", n);
        prop_assert_eq!(k, e3);
        let (mi, ki) = (parse(format!("{n}Mi")), parse(format!("{}Ki", n * 1024)));
        prop_assert!(mi.is_some(), "{}Mi does not parse", n);
        prop_assert_eq!(mi, ki);
    }
}
