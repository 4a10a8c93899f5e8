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
//! * fail: taken as-is (no mutation) it is denied with a Pod Security violation; after
//!   mutation it is accepted only if every violation it had was an absent field that the
//!   mutation filled (the fixtures in [`FIXED_BY_FILLING`]), otherwise it is still denied
//!   with a Pod Security violation. Mutation never introduces a violation.
//!
//! When the fixture folder is absent the test says so loudly, and fails when `CI` is set.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::{apply_raw, typed};
use devenv_shared::mutate::mutate_pod;
use devenv_shared::policy::Policy;
use devenv_shared::pss;
use devenv_shared::validate::{validate_pod, NoExtraSecrets};
use json_patch::PatchOperation;
use serde_json::{json, Value};

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

fn fields(violations: &[devenv_shared::validate::Violation]) -> BTreeSet<String> {
    violations.iter().map(|v| v.field.clone()).collect()
}

#[test]
fn upstream_restricted_fixtures() {
    let root = fixtures_root();
    let restricted = root.join("restricted");
    if !restricted.is_dir() {
        let message = format!(
            "\n\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
             !!! Pod Security conformance test DID NOT RUN: no fixtures at\n\
             !!! {}\n\
             !!! (expected <repo>/../shared/conformance/pod-security-admission/restricted)\n\
             !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n",
            restricted.display()
        );
        eprintln!("{message}");
        if std::env::var_os("CI").is_some() {
            panic!("{message}");
        }
        return;
    }

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
            let before = pss::check_restricted(&original);
            if before.is_empty() {
                failures.push(format!(
                    "{v}/fail/{name}: accepted as-is, no Pod Security violation"
                ));
                continue;
            }
            if validate_pod(&policy, &original, &allow_all).is_empty() {
                failures.push(format!("{v}/fail/{name}: validate_pod accepts it as-is"));
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
