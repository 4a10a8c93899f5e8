//! Conformance against the upstream Pod Security Admission `restricted` fixtures
//! (kubernetes/pod-security-admission `test/testdata/restricted/<version>/{pass,fail}`), kept
//! outside this repository at `<repo>/../shared/conformance/pod-security-admission/`.
//!
//! Each fixture is labelled as a workspace and must satisfy:
//!
//! * pass: the mutation's patch applies to the raw fixture, the result is a Pod, mutating it
//!   again changes nothing, and it has no Pod Security violation; with every Secret
//!   injectable it has no violation at all. Workspace-rule refusals with the real Secret rule
//!   are reported explicitly and must be exactly the known ones.
//! * fail: taken as-is (no mutation) it is denied with exactly the Pod Security violations
//!   [`EXPECTED_FIELDS`] lists for it (a fixture without an entry fails the test); after
//!   mutation it is accepted only if every violation it had was an absent field that the
//!   mutation filled (the fixtures in [`FIXED_BY_FILLING`]), otherwise it is still denied,
//!   naming exactly the listed fields it states. Mutation never introduces a violation.
//!
//! There are [`UPSTREAM_FIXTURES`] fixtures; a different number fails the test. When the
//! fixture folder is absent the test fails and says where it looked, unless the user opted
//! out by name with `DEVENV_SKIP=conformance` (`tests/run.sh` then says so where the user
//! sees it: libtest hides what a passing test prints).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::{apply_raw, typed};
use devenv_shared::admission::mutate::mutate_pod;
use devenv_shared::admission::pss;
use devenv_shared::admission::validate::validate_pod;
use devenv_shared::admission::violation::NoExtraSecrets;
use devenv_shared::model::policy::Policy;
use json_patch::PatchOperation;
use serde_json::{json, Value};

/// How many fixtures upstream's `restricted` folder holds (pass and fail, both versions).
const UPSTREAM_FIXTURES: usize = 187;

/// The name `DEVENV_SKIP` must hold (comma- or space-separated) to skip this suite.
const OPT_OUT: &str = "conformance";

/// The Pod Security fields each upstream fail fixture violates as written, by its
/// version-independent name (upstream names fixtures after the check they exercise:
/// `<check><n>.yaml`). Read off each fixture: the field it changes from `base.yaml` (or
/// removes from it), in our validator's path syntax. `C.` stands for
/// `spec.containers[0].`, `I.` for `spec.initContainers[0].`.
const EXPECTED_FIELDS: &[(&str, &[&str])] = &[
    // allowPrivilegeEscalation: true, or absent (with no securityContext at all in 3).
    (
        "allowprivilegeescalation0",
        &["C.securityContext.allowPrivilegeEscalation"],
    ),
    (
        "allowprivilegeescalation1",
        &["I.securityContext.allowPrivilegeEscalation"],
    ),
    (
        "allowprivilegeescalation2",
        &["C.securityContext.allowPrivilegeEscalation"],
    ),
    (
        "allowprivilegeescalation3",
        &[
            "C.securityContext.allowPrivilegeEscalation",
            "C.securityContext.capabilities.drop",
        ],
    ),
    // The beta annotation saying `unconfined`.
    (
        "apparmorprofile0",
        &["metadata.annotations[container.apparmor.security.beta.kubernetes.io/container1]"],
    ),
    (
        "apparmorprofile1",
        &["metadata.annotations[container.apparmor.security.beta.kubernetes.io/initcontainer1]"],
    ),
    // One added capability beyond NET_BIND_SERVICE (NET_RAW, a lower-case or CAP_ name).
    (
        "capabilities_baseline0",
        &["C.securityContext.capabilities.add[0]"],
    ),
    (
        "capabilities_baseline1",
        &["I.securityContext.capabilities.add[0]"],
    ),
    (
        "capabilities_baseline2",
        &["C.securityContext.capabilities.add[0]"],
    ),
    (
        "capabilities_baseline3",
        &["C.securityContext.capabilities.add[0]"],
    ),
    // drop without ALL: `capabilities: {}`, or every capability listed but ALL.
    (
        "capabilities_restricted0",
        &["C.securityContext.capabilities.drop"],
    ),
    (
        "capabilities_restricted1",
        &["I.securityContext.capabilities.drop"],
    ),
    (
        "capabilities_restricted2",
        &[
            "C.securityContext.capabilities.drop",
            "I.securityContext.capabilities.drop",
        ],
    ),
    // Every baseline capability added, in both containers: all but NET_BIND_SERVICE (7).
    (
        "capabilities_restricted3",
        &[
            "C.securityContext.capabilities.add[0]",
            "C.securityContext.capabilities.add[1]",
            "C.securityContext.capabilities.add[2]",
            "C.securityContext.capabilities.add[3]",
            "C.securityContext.capabilities.add[4]",
            "C.securityContext.capabilities.add[5]",
            "C.securityContext.capabilities.add[6]",
            "C.securityContext.capabilities.add[8]",
            "C.securityContext.capabilities.add[9]",
            "C.securityContext.capabilities.add[10]",
            "C.securityContext.capabilities.add[11]",
            "C.securityContext.capabilities.add[12]",
            "I.securityContext.capabilities.add[0]",
            "I.securityContext.capabilities.add[1]",
            "I.securityContext.capabilities.add[2]",
            "I.securityContext.capabilities.add[3]",
            "I.securityContext.capabilities.add[4]",
            "I.securityContext.capabilities.add[5]",
            "I.securityContext.capabilities.add[6]",
            "I.securityContext.capabilities.add[8]",
            "I.securityContext.capabilities.add[9]",
            "I.securityContext.capabilities.add[10]",
            "I.securityContext.capabilities.add[11]",
            "I.securityContext.capabilities.add[12]",
        ],
    ),
    ("hostnamespaces0", &["spec.hostIPC"]),
    ("hostnamespaces1", &["spec.hostNetwork"]),
    ("hostnamespaces2", &["spec.hostPID"]),
    // hostPath volumes (after an allowed emptyDir in 0).
    ("hostpathvolumes0", &["spec.volumes[1].hostPath"]),
    (
        "hostpathvolumes1",
        &["spec.volumes[0].hostPath", "spec.volumes[1].hostPath"],
    ),
    // A hostPort (beside a port without one in 2).
    ("hostports0", &["C.ports[0].hostPort"]),
    ("hostports1", &["I.ports[0].hostPort"]),
    (
        "hostports2",
        &["C.ports[0].hostPort", "I.ports[0].hostPort"],
    ),
    // A probe or lifecycle hook naming a host.
    (
        "hostprobesandhostlifecycle0",
        &["C.livenessProbe.httpGet.host"],
    ),
    (
        "hostprobesandhostlifecycle1",
        &["I.readinessProbe.tcpSocket.host"],
    ),
    (
        "hostprobesandhostlifecycle2",
        &["C.lifecycle.postStart.httpGet.host"],
    ),
    (
        "hostprobesandhostlifecycle3",
        &["C.livenessProbe.httpGet.host"],
    ),
    (
        "hostprobesandhostlifecycle4",
        &["C.readinessProbe.tcpSocket.host"],
    ),
    // privileged: true (allowPrivilegeEscalation removed: the API forbids it with false).
    (
        "privileged0",
        &[
            "C.securityContext.privileged",
            "C.securityContext.allowPrivilegeEscalation",
        ],
    ),
    (
        "privileged1",
        &[
            "I.securityContext.privileged",
            "I.securityContext.allowPrivilegeEscalation",
        ],
    ),
    // procMount: Unmasked, with or without a user namespace.
    ("procmount0", &["C.securityContext.procMount"]),
    ("procmount1", &["I.securityContext.procMount"]),
    ("procmount_restricted0", &["C.securityContext.procMount"]),
    ("procmount_restricted1", &["I.securityContext.procMount"]),
    // Forbidden volume types, one per fixture.
    ("restrictedvolumes0", &["spec.volumes[0].gcePersistentDisk"]),
    (
        "restrictedvolumes1",
        &["spec.volumes[0].awsElasticBlockStore"],
    ),
    ("restrictedvolumes2", &["spec.volumes[0].gitRepo"]),
    ("restrictedvolumes3", &["spec.volumes[0].nfs"]),
    ("restrictedvolumes4", &["spec.volumes[0].iscsi"]),
    ("restrictedvolumes5", &["spec.volumes[0].glusterfs"]),
    ("restrictedvolumes6", &["spec.volumes[0].rbd"]),
    ("restrictedvolumes7", &["spec.volumes[0].flexVolume"]),
    ("restrictedvolumes8", &["spec.volumes[0].cinder"]),
    ("restrictedvolumes9", &["spec.volumes[0].cephfs"]),
    ("restrictedvolumes10", &["spec.volumes[0].flocker"]),
    ("restrictedvolumes11", &["spec.volumes[0].fc"]),
    ("restrictedvolumes12", &["spec.volumes[0].azureFile"]),
    ("restrictedvolumes13", &["spec.volumes[0].vsphereVolume"]),
    ("restrictedvolumes14", &["spec.volumes[0].quobyte"]),
    ("restrictedvolumes15", &["spec.volumes[0].azureDisk"]),
    ("restrictedvolumes16", &["spec.volumes[0].portworxVolume"]),
    ("restrictedvolumes17", &["spec.volumes[0].scaleIO"]),
    ("restrictedvolumes18", &["spec.volumes[0].storageos"]),
    ("restrictedvolumes19", &["spec.volumes[0].hostPath"]),
    // runAsNonRoot absent from the pod (0), or false on the pod or a container.
    ("runasnonroot0", &["spec.securityContext.runAsNonRoot"]),
    ("runasnonroot1", &["spec.securityContext.runAsNonRoot"]),
    ("runasnonroot2", &["C.securityContext.runAsNonRoot"]),
    ("runasnonroot3", &["I.securityContext.runAsNonRoot"]),
    // runAsUser: 0.
    ("runasuser0", &["spec.securityContext.runAsUser"]),
    ("runasuser1", &["C.securityContext.runAsUser"]),
    ("runasuser2", &["I.securityContext.runAsUser"]),
    // seccompProfile Unconfined, or absent where no other level sets it.
    (
        "seccompprofile_baseline0",
        &["spec.securityContext.seccompProfile.type"],
    ),
    (
        "seccompprofile_baseline1",
        &["C.securityContext.seccompProfile.type"],
    ),
    (
        "seccompprofile_baseline2",
        &["I.securityContext.seccompProfile.type"],
    ),
    (
        "seccompprofile_restricted0",
        &["spec.securityContext.seccompProfile.type"],
    ),
    (
        "seccompprofile_restricted1",
        &["spec.securityContext.seccompProfile.type"],
    ),
    (
        "seccompprofile_restricted2",
        &["spec.securityContext.seccompProfile.type"],
    ),
    (
        "seccompprofile_restricted3",
        &["spec.securityContext.seccompProfile.type"],
    ),
    (
        "seccompprofile_restricted4",
        &["I.securityContext.seccompProfile.type"],
    ),
    // An SELinux type not in the list, or a user or role set.
    (
        "selinuxoptions0",
        &["spec.securityContext.seLinuxOptions.type"],
    ),
    (
        "selinuxoptions1",
        &["C.securityContext.seLinuxOptions.type"],
    ),
    (
        "selinuxoptions2",
        &["I.securityContext.seLinuxOptions.type"],
    ),
    (
        "selinuxoptions3",
        &["spec.securityContext.seLinuxOptions.user"],
    ),
    (
        "selinuxoptions4",
        &["spec.securityContext.seLinuxOptions.role"],
    ),
    ("sysctls0", &["spec.securityContext.sysctls[0].name"]),
    // hostProcess: true (with hostNetwork: true, which the API requires of it).
    (
        "windowshostprocess0",
        &[
            "spec.securityContext.windowsOptions.hostProcess",
            "spec.hostNetwork",
        ],
    ),
    (
        "windowshostprocess1",
        &[
            "C.securityContext.windowsOptions.hostProcess",
            "I.securityContext.windowsOptions.hostProcess",
            "spec.hostNetwork",
        ],
    ),
];

/// [`EXPECTED_FIELDS`] of a fail fixture, with `C.` and `I.` written out.
fn expected_fields(name: &str) -> Option<BTreeSet<String>> {
    let (_, fields) = EXPECTED_FIELDS.iter().find(|(n, _)| *n == name)?;
    Some(
        fields
            .iter()
            .map(|f| {
                if let Some(rest) = f.strip_prefix("C.") {
                    format!("spec.containers[0].{rest}")
                } else if let Some(rest) = f.strip_prefix("I.") {
                    format!("spec.initContainers[0].{rest}")
                } else {
                    f.to_string()
                }
            })
            .collect(),
    )
}

/// Whether the user opted out of this suite by name: `DEVENV_SKIP` lists `conformance`.
fn opted_out() -> bool {
    std::env::var("DEVENV_SKIP")
        .unwrap_or_default()
        .split(|c: char| c == ',' || c.is_whitespace())
        .any(|name| name == OPT_OUT)
}

/// Fail fixtures whose only problems are absent fields that the mutation fills in (the drop
/// list of capabilities_restricted2 lacks the element ALL, which is appended). Every other
/// fail fixture states a forbidden value and must stay denied.
const FIXED_BY_FILLING: &[&str] = &[
    "allowprivilegeescalation2",
    "allowprivilegeescalation3",
    "capabilities_restricted0",
    "capabilities_restricted1",
    "capabilities_restricted2",
    "runasnonroot0",
    "seccompprofile_restricted0",
    "seccompprofile_restricted2",
    "seccompprofile_restricted3",
];

/// Violated fields of fail fixtures that are absent and that the mutation deliberately does
/// not fill: allowPrivilegeEscalation beside `privileged: true`.
const LEFT_ABSENT: &[(&str, &str)] = &[
    (
        "privileged0",
        "spec.containers[0].securityContext.allowPrivilegeEscalation",
    ),
    (
        "privileged1",
        "spec.initContainers[0].securityContext.allowPrivilegeEscalation",
    ),
];

/// Pass fixtures the real Secret rule refuses (they mount a Secret that is neither in the
/// policy's `secrets.inject` nor labelled injectable), by version-independent name.
const REFUSED_BY_SECRET_RULE: &[(&str, &[&str])] =
    &[("restrictedvolumes0", &["spec.volumes[2].secret.secretName"])];

/// `<repo>/../shared/conformance/pod-security-admission`, or `$PSA_FIXTURES_DIR` when set
/// (to test against another checkout of the fixtures).
fn fixtures_root() -> PathBuf {
    match std::env::var_os("PSA_FIXTURES_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/conformance/pod-security-admission"),
    }
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn load(path: &Path) -> (String, Value) {
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => panic!("cannot read {}: {e}", path.display()),
    };
    let mut doc: Value = match serde_yaml::from_str(&text) {
        Ok(d) => d,
        Err(e) => panic!("{} is not YAML: {e}", path.display()),
    };
    // Label it as a workspace (label values cannot hold '_').
    let workspace = name.replace('_', "-");
    let meta = &mut doc["metadata"];
    if !meta["labels"].is_object() {
        meta["labels"] = json!({});
    }
    meta["labels"]["devenv.io/workspace"] = json!(workspace);
    meta["namespace"] = json!("conformance");
    (name, doc)
}

/// `spec.containers[0].securityContext.x` / `metadata.annotations[a/b]` -> JSON pointer.
fn pointer(field: &str) -> String {
    let mut out = String::new();
    let mut segment = String::new();
    let mut in_brackets = false;
    let flush = |segment: &mut String, out: &mut String| {
        if !segment.is_empty() {
            out.push('/');
            out.push_str(&segment.replace('~', "~0").replace('/', "~1"));
            segment.clear();
        }
    };
    for ch in field.chars() {
        match ch {
            '[' if !in_brackets => {
                flush(&mut segment, &mut out);
                in_brackets = true;
            }
            ']' if in_brackets => {
                flush(&mut segment, &mut out);
                in_brackets = false;
            }
            '.' if !in_brackets => flush(&mut segment, &mut out),
            c => segment.push(c),
        }
    }
    flush(&mut segment, &mut out);
    out
}

/// Was the violated field absent (or, for a drop list, lacking ALL) in the raw fixture?
fn was_absent(doc: &Value, field: &str) -> bool {
    match doc.pointer(&pointer(field)) {
        None | Some(Value::Null) => true,
        Some(Value::Array(items)) if field.ends_with("capabilities.drop") => {
            !items.iter().any(|i| i == "ALL")
        }
        Some(_) => false,
    }
}

fn fields(violations: &[devenv_shared::admission::violation::Violation]) -> BTreeSet<String> {
    violations.iter().map(|v| v.field.clone()).collect()
}

#[test]
fn upstream_restricted_fixtures() {
    if opted_out() {
        // libtest hides this from a passing test; tests/run.sh says it where it is seen.
        eprintln!("!!! Pod Security conformance test SKIPPED: DEVENV_SKIP names {OPT_OUT}");
        return;
    }
    let root = fixtures_root();
    let restricted = root.join("restricted");
    assert!(
        restricted.is_dir(),
        "\n!!! the Pod Security conformance fixtures are missing: no directory\n\
         !!! {}\n\
         !!! (expected <repo>/../shared/conformance/pod-security-admission/restricted, or\n\
         !!! $PSA_FIXTURES_DIR/restricted). Check them out there, or opt out of this suite\n\
         !!! by name: DEVENV_SKIP={OPT_OUT}\n",
        restricted.display()
    );

    let policy = Policy::default();
    let allow_all = |_: &str, _: &str| true;
    let mut versions: Vec<PathBuf> = std::fs::read_dir(&restricted)
        .map(|e| {
            e.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    assert!(
        !versions.is_empty(),
        "no versions under {}",
        restricted.display()
    );

    let mut failures: Vec<String> = Vec::new();
    let mut total = 0;
    let mut summary: BTreeMap<String, (usize, usize, Vec<String>)> = BTreeMap::new();
    for version in &versions {
        let v = version
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let pass = yaml_files(&version.join("pass"));
        let fail = yaml_files(&version.join("fail"));
        assert!(
            !pass.is_empty() && !fail.is_empty(),
            "{v}: missing pass/ or fail/ fixtures"
        );
        total += pass.len() + fail.len();
        let mut fixed = Vec::new();

        for path in &pass {
            let (name, doc) = load(path);
            let pod = typed(&doc);
            let mutation = mutate_pod(&policy, &pod);
            if !mutation
                .patch
                .0
                .iter()
                .all(|op| matches!(op, PatchOperation::Add(_)))
            {
                failures.push(format!("{v}/pass/{name}: patch has a non-add operation"));
            }
            let patched = typed(&apply_raw(&doc, &mutation.patch));
            if !mutate_pod(&policy, &patched).patch.0.is_empty() {
                failures.push(format!("{v}/pass/{name}: mutation is not idempotent"));
            }
            let pss_violations = pss::check_restricted(&patched);
            if !pss_violations.is_empty() {
                failures.push(format!(
                    "{v}/pass/{name}: Pod Security violations after mutation: {pss_violations:?}"
                ));
            }
            let all = validate_pod(&policy, &patched, &allow_all);
            if !all.is_empty() {
                failures.push(format!(
                    "{v}/pass/{name}: refused with every Secret injectable: {all:?}"
                ));
            }
            let refused = validate_pod(&policy, &patched, &NoExtraSecrets);
            if !refused.is_empty() {
                println!(
                    "REPORT {v}/pass/{name}: a workspace rule refuses it: {}",
                    refused
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                );
            }
            let expected: BTreeSet<String> = REFUSED_BY_SECRET_RULE
                .iter()
                .filter(|(n, _)| *n == name)
                .flat_map(|(_, f)| f.iter().map(|s| s.to_string()))
                .collect();
            if fields(&refused) != expected {
                failures.push(format!(
                    "{v}/pass/{name}: workspace-rule refusals {:?}, expected {expected:?}",
                    fields(&refused)
                ));
            }
        }

        for path in &fail {
            let (name, doc) = load(path);
            let original = typed(&doc);
            let Some(expected) = expected_fields(&name) else {
                failures.push(format!(
                    "{v}/fail/{name}: no entry in EXPECTED_FIELDS (add the field it violates)"
                ));
                continue;
            };
            let before = pss::check_restricted(&original);
            if before.is_empty() {
                failures.push(format!(
                    "{v}/fail/{name}: accepted as-is, no Pod Security violation"
                ));
                continue;
            }
            if fields(&before) != expected {
                failures.push(format!(
                    "{v}/fail/{name}: as-is, Pod Security violations on {:?}, expected exactly {expected:?}",
                    fields(&before)
                ));
            }
            let whole = fields(&validate_pod(&policy, &original, &allow_all));
            if !whole.is_superset(&expected) {
                failures.push(format!(
                    "{v}/fail/{name}: validate_pod as-is names {whole:?}, missing {:?}",
                    expected.difference(&whole).collect::<Vec<_>>()
                ));
            }

            let mutation = mutate_pod(&policy, &original);
            for op in &mutation.patch.0 {
                let p = op.path().to_string();
                let target = doc.pointer(&p);
                let fills = matches!(op, PatchOperation::Add(_))
                    && (p.ends_with("/-") || matches!(target, None | Some(Value::Null)));
                if !fills {
                    failures.push(format!("{v}/fail/{name}: patch overwrites {p}"));
                }
            }
            let patched = typed(&apply_raw(&doc, &mutation.patch));
            if !mutate_pod(&policy, &patched).patch.0.is_empty() {
                failures.push(format!("{v}/fail/{name}: mutation is not idempotent"));
            }
            let after = validate_pod(&policy, &patched, &allow_all);
            let after_pss = pss::check_restricted(&patched);
            // Mutation only fills absent fields, so it never introduces a violation.
            let new: Vec<_> = fields(&after_pss)
                .difference(&fields(&before))
                .cloned()
                .collect();
            if !new.is_empty() {
                failures.push(format!(
                    "{v}/fail/{name}: mutation introduced violations on {new:?}"
                ));
            }
            let expected_fixed = FIXED_BY_FILLING.contains(&name.as_str());
            if after.is_empty() {
                fixed.push(name.clone());
                if !expected_fixed {
                    failures.push(format!(
                        "{v}/fail/{name}: accepted after mutation, but it states a forbidden value"
                    ));
                }
                // Accepted only because every violated field was absent before.
                for violation in &before {
                    if !was_absent(&doc, &violation.field) {
                        failures.push(format!(
                            "{v}/fail/{name}: accepted after mutation although {} was stated",
                            violation.field
                        ));
                    }
                }
            } else {
                if expected_fixed {
                    failures.push(format!(
                        "{v}/fail/{name}: expected mutation to fix it, still denied: {after:?}"
                    ));
                }
                if after_pss.is_empty() {
                    failures.push(format!(
                        "{v}/fail/{name}: denied after mutation, but not for a Pod Security reason: {after:?}"
                    ));
                }
                // Still denied for exactly the listed fields it states: absent ones are
                // filled, except allowPrivilegeEscalation next to privileged: true, which the
                // mutation leaves out (the API server refuses false there), so it stays.
                let stated: BTreeSet<String> = expected
                    .iter()
                    .filter(|f| {
                        !was_absent(&doc, f) || LEFT_ABSENT.contains(&(name.as_str(), f.as_str()))
                    })
                    .cloned()
                    .collect();
                if fields(&after_pss) != stated {
                    failures.push(format!(
                        "{v}/fail/{name}: after mutation, Pod Security violations on {:?}, expected exactly the stated {stated:?}",
                        fields(&after_pss)
                    ));
                }
            }
        }
        println!(
            "{v}: {} pass fixtures, {} fail fixtures; fail fixtures fixed by filling absent fields: {}",
            pass.len(),
            fail.len(),
            fixed.join(", ")
        );
        summary.insert(v, (pass.len(), fail.len(), fixed));
    }
    assert!(
        failures.is_empty(),
        "{} conformance failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(
        total,
        UPSTREAM_FIXTURES,
        "fixtures under {}: {summary:?}",
        restricted.display()
    );
    // Both supported policy versions were exercised.
    assert!(
        summary.contains_key("v1.33") && summary.contains_key("v1.37"),
        "{summary:?}"
    );
}

#[test]
fn pointer_conversion() {
    assert_eq!(
        pointer("spec.containers[0].securityContext.allowPrivilegeEscalation"),
        "/spec/containers/0/securityContext/allowPrivilegeEscalation"
    );
    assert_eq!(
        pointer("metadata.annotations[container.apparmor.security.beta.kubernetes.io/c~1]"),
        "/metadata/annotations/container.apparmor.security.beta.kubernetes.io~1c~01"
    );
}
