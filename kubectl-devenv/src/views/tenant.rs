//! What the `tenant` commands show: `tenant list`'s rows joined from one list per kind
//! (namespaces, RoleBindings, StatefulSets, ResourceQuotas), what `tenant add` says it
//! did, and the command that gives a removed tenant its access back. Pure: the caller
//! passes the objects and `now`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, ResourceQuota};
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use devenv_shared::build::tenant::{
    is_tenant_namespace, subjects_of, TenantObjects, QUOTA_NAME, ROLE_BINDING_NAME,
};
use devenv_shared::model::keys::{TIER_ANNOTATION, WORKSPACE_LABEL};

use crate::cli::{ListFormat, ObjectFormat};
use crate::error::Error;
use crate::output;
use crate::views::list::{align, format_age, Rendered};

/// The quota resources `tenant list` shows, with their column names.
pub const QUOTA_COLUMNS: [(&str, &str); 3] = [
    ("CPU", "requests.cpu"),
    ("MEMORY", "requests.memory"),
    ("STORAGE", "requests.storage"),
];
/// More quota resources `-o wide` shows.
pub const WIDE_QUOTA_COLUMNS: [(&str, &str); 2] =
    [("PODS", "pods"), ("CLAIMS", "persistentvolumeclaims")];

/// One row of `tenant list`, and its `-o json|yaml` view.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantSummary {
    pub name: String,
    /// Users of the `devenv-user` RoleBinding.
    pub users: Vec<String>,
    /// Groups of the `devenv-user` RoleBinding.
    pub groups: Vec<String>,
    /// The tier its quota is sized for; `-` when unknown.
    pub tier: String,
    /// Workspace StatefulSets in the namespace.
    pub workspaces: usize,
    /// What the quota allows and what is used, by resource (`requests.cpu`, ...).
    pub quota: BTreeMap<String, QuotaUse>,
    pub age: String,
}

/// Used and hard of one quota resource, as the API server reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuotaUse {
    /// `None` until the quota controller has counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used: Option<String>,
    pub hard: String,
}

impl QuotaUse {
    /// `used/hard`, `-/hard` before the quota controller counted.
    pub fn cell(&self) -> String {
        format!("{}/{}", self.used.as_deref().unwrap_or("-"), self.hard)
    }
}

fn namespace_of<K: kube::Resource>(o: &K) -> String {
    o.meta().namespace.clone().unwrap_or_default()
}

fn quota_uses(q: &ResourceQuota) -> BTreeMap<String, QuotaUse> {
    let status = q.status.as_ref();
    let hard = status
        .and_then(|s| s.hard.as_ref())
        .or_else(|| q.spec.as_ref().and_then(|s| s.hard.as_ref()));
    let used = status.and_then(|s| s.used.as_ref());
    hard.into_iter()
        .flatten()
        .map(|(resource, h)| {
            (
                resource.clone(),
                QuotaUse {
                    used: used.and_then(|u| u.get(resource)).map(|u| u.0.clone()),
                    hard: h.0.clone(),
                },
            )
        })
        .collect()
}

/// Joins tenant namespaces with their RoleBinding `devenv-user`, their workspace
/// StatefulSets and their ResourceQuota `devenv`. Namespaces not labelled
/// `devenv.io/tenant=<their name>` are left out; objects of other names are ignored.
pub fn join(
    namespaces: &[Namespace],
    bindings: &[RoleBinding],
    stateful_sets: &[StatefulSet],
    quotas: &[ResourceQuota],
    now: Timestamp,
) -> Vec<TenantSummary> {
    let binding_of: BTreeMap<String, &RoleBinding> = bindings
        .iter()
        .filter(|b| b.metadata.name.as_deref() == Some(ROLE_BINDING_NAME))
        .map(|b| (namespace_of(b), b))
        .collect();
    let quota_of: BTreeMap<String, &ResourceQuota> = quotas
        .iter()
        .filter(|q| q.metadata.name.as_deref() == Some(QUOTA_NAME))
        .map(|q| (namespace_of(q), q))
        .collect();
    let mut workspaces: BTreeMap<String, usize> = BTreeMap::new();
    for s in stateful_sets {
        let is_workspace = s
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(WORKSPACE_LABEL));
        if is_workspace {
            *workspaces.entry(namespace_of(s)).or_default() += 1;
        }
    }
    let mut rows: Vec<TenantSummary> = namespaces
        .iter()
        .filter_map(|ns| {
            let name = ns.metadata.name.clone()?;
            if !is_tenant_namespace(ns, &name) {
                return None;
            }
            let (users, groups) = binding_of
                .get(&name)
                .map(|b| subjects_of(b))
                .unwrap_or_default();
            let quota = quota_of.get(&name).copied();
            Some(TenantSummary {
                users,
                groups,
                tier: quota
                    .and_then(|q| q.metadata.annotations.as_ref()?.get(TIER_ANNOTATION))
                    .cloned()
                    .unwrap_or_else(|| "-".to_owned()),
                workspaces: workspaces.get(&name).copied().unwrap_or(0),
                quota: quota.map(quota_uses).unwrap_or_default(),
                age: ns
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| format_age(now.as_second() - t.0.as_second()))
                    .unwrap_or_else(|| "-".to_owned()),
                name,
            })
        })
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows
}

fn names_cell(names: &[String]) -> String {
    if names.is_empty() {
        "<none>".to_owned()
    } else {
        names.join(",")
    }
}

/// The table: NAME USERS GROUPS TIER WORKSPACES CPU MEMORY STORAGE AGE (quota cells
/// `used/hard` of the requests); `-o wide` adds PODS and CLAIMS.
pub fn table(rows: &[TenantSummary], wide: bool) -> String {
    let quota_columns: Vec<(&str, &str)> = if wide {
        QUOTA_COLUMNS
            .iter()
            .chain(WIDE_QUOTA_COLUMNS.iter())
            .copied()
            .collect()
    } else {
        QUOTA_COLUMNS.to_vec()
    };
    let mut header = vec!["NAME", "USERS", "GROUPS", "TIER", "WORKSPACES"];
    header.extend(quota_columns.iter().map(|(h, _)| *h));
    header.push("AGE");
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    for r in rows {
        let workspaces = match r.quota.get("count/statefulsets.apps") {
            Some(q) => format!("{}/{}", r.workspaces, q.hard),
            None => r.workspaces.to_string(),
        };
        let mut line = vec![
            r.name.clone(),
            names_cell(&r.users),
            names_cell(&r.groups),
            r.tier.clone(),
            workspaces,
        ];
        line.extend(quota_columns.iter().map(|(_, resource)| {
            r.quota
                .get(*resource)
                .map(QuotaUse::cell)
                .unwrap_or_else(|| "-".to_owned())
        }));
        line.push(r.age.clone());
        lines.push(line);
    }
    align(&lines)
}

/// Renders `tenant list` in `format` (`None`: the table).
pub fn render(rows: &[TenantSummary], format: Option<ListFormat>) -> Result<Rendered, Error> {
    let mut out = Rendered::default();
    match format {
        None | Some(ListFormat::Wide) => {
            if rows.is_empty() {
                out.stderr.push_str(
                    "No tenants found. Make one with: kubectl devenv tenant add NAME --user USER\n",
                );
            } else {
                out.stdout = table(rows, format == Some(ListFormat::Wide));
            }
        }
        Some(ListFormat::Name) => {
            for r in rows {
                out.stdout.push_str(&format!("tenant/{}\n", r.name));
            }
        }
        Some(f @ (ListFormat::Json | ListFormat::Yaml)) => {
            let format = if f == ListFormat::Json {
                ObjectFormat::Json
            } else {
                ObjectFormat::Yaml
            };
            out.stdout = output::render(&[serde_json::json!({ "items": rows })], format)?;
        }
    }
    Ok(out)
}

/// `kind/name` of each object of a tenant, as `tenant add` reports them.
pub fn object_names(objects: &TenantObjects) -> Vec<String> {
    let name = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        m.name.clone().unwrap_or_default()
    };
    vec![
        format!("namespace/{}", name(&objects.namespace.metadata)),
        format!("resourcequota/{}", name(&objects.resource_quota.metadata)),
        format!("limitrange/{}", name(&objects.limit_range.metadata)),
        format!(
            "rolebinding.rbac.authorization.k8s.io/{}",
            name(&objects.role_binding.metadata)
        ),
    ]
}

/// What `tenant add` says the tenant now is: who may use it and what its quota holds.
pub fn add_summary(objects: &TenantObjects) -> String {
    let (users, groups) = subjects_of(&objects.role_binding);
    let name = objects.namespace.metadata.name.clone().unwrap_or_default();
    let quota = &objects.resource_quota;
    let hard: BTreeMap<String, String> = quota
        .spec
        .as_ref()
        .and_then(|s| s.hard.as_ref())
        .map(|h| h.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect())
        .unwrap_or_default();
    let get = |k: &str| hard.get(k).map(String::as_str).unwrap_or("-");
    let tier = quota
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TIER_ANNOTATION))
        .map(String::as_str)
        .unwrap_or("-");
    format!(
        "tenant {name}: room for {} workspace(s) of tier {tier} (requests cpu {}, memory {}; limits cpu {}, memory {}; storage {} in {} claim(s)); users: {}; groups: {}\n",
        get("pods"),
        get("requests.cpu"),
        get("requests.memory"),
        get("limits.cpu"),
        get("limits.memory"),
        get("requests.storage"),
        get("persistentvolumeclaims"),
        names_cell(&users),
        names_cell(&groups),
    )
}

/// Users and groups bound `before` that `after` no longer binds, as `user NAME` /
/// `group NAME`: re-running `tenant add` with other flags takes their access away, and
/// says so.
pub fn removed_subjects(before: &RoleBinding, after: &RoleBinding) -> Vec<String> {
    let (old_users, old_groups) = subjects_of(before);
    let (new_users, new_groups) = subjects_of(after);
    let mut out: Vec<String> = old_users
        .into_iter()
        .filter(|u| !new_users.contains(u))
        .map(|u| format!("user {u}"))
        .collect();
    out.extend(
        old_groups
            .into_iter()
            .filter(|g| !new_groups.contains(g))
            .map(|g| format!("group {g}")),
    );
    out
}

/// What `tenant remove` without `--purge` says on stderr: what it kept (the namespace, its
/// quota and limits, every claim) and how to get it back or delete it all.
pub fn removal_note(name: &str, claims: &[String], re_add: &str) -> String {
    let kept = if claims.is_empty() {
        "no claims".to_owned()
    } else {
        format!(
            "{} claim(s) with the workspaces' data: {}",
            claims.len(),
            claims.join(", ")
        )
    };
    [
        format!("Kept namespace {name}, its quota and limits, and {kept}."),
        format!("  Give the access back with: {re_add}"),
        format!(
            "  Workspaces re-created with the same names find their data again (kubectl devenv create NAME -n {name})."
        ),
        format!("  Delete the tenant and all its data with: kubectl devenv tenant remove {name} --purge"),
    ]
    .iter()
    .map(|line| format!("{line}\n"))
    .collect()
}

/// A word as a POSIX shell reads it back: unquoted when it is plain, else in single quotes.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The `tenant add` that gives tenant `name` back the access (users and groups of its
/// removed RoleBinding) and the quota (`pods` hard and the tier annotation of its
/// ResourceQuota) it had. Without a RoleBinding, a `--user USER` placeholder.
pub fn re_add_command(
    name: &str,
    binding: Option<&RoleBinding>,
    quota: Option<&ResourceQuota>,
) -> String {
    let mut cmd = format!("kubectl devenv tenant add {}", shell_word(name));
    let (users, groups) = binding.map(subjects_of).unwrap_or_default();
    if users.is_empty() && groups.is_empty() {
        cmd.push_str(" --user USER");
    }
    for u in &users {
        cmd.push_str(&format!(" --user {}", shell_word(u)));
    }
    for g in &groups {
        cmd.push_str(&format!(" --group {}", shell_word(g)));
    }
    if let Some(q) = quota {
        let pods = q
            .spec
            .as_ref()
            .and_then(|s| s.hard.as_ref())
            .and_then(|h| h.get("pods"));
        if let Some(pods) = pods.filter(|p| p.0 != "1") {
            cmd.push_str(&format!(" --workspaces {}", shell_word(&pods.0)));
        }
        if let Some(tier) = q
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(TIER_ANNOTATION))
        {
            cmd.push_str(&format!(" --tier {}", shell_word(tier)));
        }
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;
    use devenv_shared::build::tenant::{build, TenantSpec};
    use devenv_shared::build::workspace::{self, WorkspaceSpec};
    use devenv_shared::model::policy::Policy;
    use k8s_openapi::api::core::v1::ResourceQuotaStatus;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn tenant(name: &str, users: &[&str], groups: &[&str], n: u32, tier: &str) -> TenantObjects {
        let spec = TenantSpec {
            users: users.iter().map(|u| (*u).to_owned()).collect(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            workspaces: n,
            tier: Some(tier.to_owned()),
            ..TenantSpec::new(name)
        };
        let mut o = build(&spec, &Policy::default()).unwrap();
        o.namespace.metadata.creation_timestamp =
            Some(Time("2026-01-01T00:00:00Z".parse().unwrap()));
        o
    }

    fn with_usage(mut q: ResourceQuota, used: &[(&str, &str)]) -> ResourceQuota {
        let hard = q.spec.as_ref().and_then(|s| s.hard.clone());
        q.status = Some(ResourceQuotaStatus {
            hard,
            used: Some(
                used.iter()
                    .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
                    .collect(),
            ),
        });
        q
    }

    fn sts(name: &str, ns: &str) -> StatefulSet {
        workspace::build(&WorkspaceSpec::new(name, ns, "img"), &Policy::default())
            .unwrap()
            .stateful_set
    }

    fn plain_namespace(name: &str) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn list_joins_subjects_workspaces_and_quota_use_per_tenant() {
        let now: Timestamp = "2026-01-03T00:00:00Z".parse().unwrap();
        let a = tenant("team-a", &["alice"], &[], 2, "small");
        let b = tenant("team-b", &["bob", "carol"], &["devs"], 1, "large");
        let mut other_sts = sts("stray", "elsewhere");
        other_sts.metadata.namespace = Some("elsewhere".into());
        let mut not_a_workspace = sts("db", "team-a");
        not_a_workspace.metadata.labels = None;
        let rows = join(
            &[
                b.namespace.clone(),
                a.namespace.clone(),
                plain_namespace("elsewhere"),
            ],
            &[a.role_binding.clone(), b.role_binding.clone()],
            &[
                sts("w1", "team-a"),
                sts("w2", "team-a"),
                not_a_workspace,
                other_sts,
            ],
            &[
                with_usage(
                    a.resource_quota.clone(),
                    &[("requests.cpu", "1"), ("requests.memory", "4Gi")],
                ),
                b.resource_quota.clone(),
            ],
            now,
        );
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["team-a", "team-b"]);
        assert_eq!(rows[0].users, ["alice"]);
        assert!(rows[0].groups.is_empty());
        assert_eq!(rows[0].workspaces, 2);
        assert_eq!(rows[0].tier, "small");
        assert_eq!(rows[0].age, "2d");
        assert_eq!(rows[0].quota["requests.cpu"].cell(), "1/1");
        assert_eq!(rows[0].quota["requests.memory"].cell(), "4Gi/4Gi");
        assert_eq!(rows[0].quota["requests.storage"].cell(), "-/24Gi");
        assert_eq!(rows[1].users, ["bob", "carol"]);
        assert_eq!(rows[1].groups, ["devs"]);
        assert_eq!(rows[1].workspaces, 0);
        assert_eq!(rows[1].tier, "large");

        let t = table(&rows, false);
        let lines: Vec<Vec<&str>> = t.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(
            lines[0],
            [
                "NAME",
                "USERS",
                "GROUPS",
                "TIER",
                "WORKSPACES",
                "CPU",
                "MEMORY",
                "STORAGE",
                "AGE"
            ]
        );
        assert_eq!(
            lines[1],
            ["team-a", "alice", "<none>", "small", "2/2", "1/1", "4Gi/4Gi", "-/24Gi", "2d"]
        );
        assert_eq!(
            lines[2],
            [
                "team-b",
                "bob,carol",
                "devs",
                "large",
                "0/1",
                "-/2",
                "-/8Gi",
                "-/12Gi",
                "2d"
            ]
        );
        let wide = table(&rows, true);
        let header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(header[8..], ["PODS", "CLAIMS", "AGE"], "{wide}");
    }

    #[test]
    fn a_tenant_without_binding_or_quota_still_shows() {
        let a = tenant("team-a", &["alice"], &[], 1, "small");
        let rows = join(
            &[a.namespace],
            &[],
            &[],
            &[],
            "2026-01-01T00:00:10Z".parse().unwrap(),
        );
        assert_eq!(rows.len(), 1);
        assert!(rows[0].users.is_empty() && rows[0].quota.is_empty());
        let t = table(&rows, false);
        let row: Vec<&str> = t.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(
            row,
            ["team-a", "<none>", "<none>", "-", "0", "-", "-", "-", "10s"]
        );
    }

    #[test]
    fn rendering_per_format() {
        let a = tenant("team-a", &["alice"], &[], 1, "small");
        let rows = join(
            &[a.namespace],
            &[a.role_binding],
            &[],
            &[a.resource_quota],
            "2026-01-02T00:00:00Z".parse().unwrap(),
        );
        let out = render(&rows, Some(ListFormat::Name)).unwrap();
        assert_eq!(out.stdout, "tenant/team-a\n");
        let out = render(&rows, Some(ListFormat::Json)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["items"][0]["name"], "team-a");
        assert_eq!(v["items"][0]["users"][0], "alice");
        assert_eq!(v["items"][0]["quota"]["pods"]["hard"], "1");
        assert!(v["items"][0]["quota"]["pods"].get("used").is_none());
        let out = render(&rows, Some(ListFormat::Yaml)).unwrap();
        assert!(out.stdout.contains("name: team-a"), "{}", out.stdout);
        let out = render(&[], None).unwrap();
        assert_eq!(out.stdout, "");
        assert!(
            out.stderr.starts_with("No tenants found."),
            "{}",
            out.stderr
        );
    }

    #[test]
    fn add_reports_the_objects_and_the_room_they_make() {
        let o = tenant("team-a", &["alice"], &["devs"], 3, "micro");
        assert_eq!(
            object_names(&o),
            [
                "namespace/team-a",
                "resourcequota/devenv",
                "limitrange/devenv",
                "rolebinding.rbac.authorization.k8s.io/devenv-user"
            ]
        );
        assert_eq!(
            add_summary(&o),
            "tenant team-a: room for 3 workspace(s) of tier micro (requests cpu 375m, memory 1536Mi; limits cpu 1500m, memory 3Gi; storage 36Gi in 9 claim(s)); users: alice; groups: devs\n"
        );
    }

    #[test]
    fn re_running_add_names_whose_access_goes() {
        let before = tenant("t", &["alice", "bob"], &["devs"], 1, "small").role_binding;
        let after = tenant("t", &["bob", "carol"], &[], 1, "small").role_binding;
        assert_eq!(
            removed_subjects(&before, &after),
            ["user alice", "group devs"]
        );
        assert!(removed_subjects(&after, &after).is_empty());
    }

    #[test]
    fn removal_says_what_was_kept_and_how_to_get_it_back() {
        let note = removal_note(
            "team-a",
            &["workspace-w-0".into(), "history-w-0".into()],
            "kubectl devenv tenant add team-a --user alice",
        );
        assert_eq!(
            note,
            "Kept namespace team-a, its quota and limits, and 2 claim(s) with the workspaces' data: workspace-w-0, history-w-0.\n  \
             Give the access back with: kubectl devenv tenant add team-a --user alice\n  \
             Workspaces re-created with the same names find their data again (kubectl devenv create NAME -n team-a).\n  \
             Delete the tenant and all its data with: kubectl devenv tenant remove team-a --purge\n"
        );
        assert!(removal_note("t", &[], "x")
            .starts_with("Kept namespace t, its quota and limits, and no claims."));
    }

    #[test]
    fn the_re_add_command_restores_access_and_size() {
        let o = tenant("team-a", &["alice", "oidc:Dev Lead"], &["devs"], 3, "large");
        assert_eq!(
            re_add_command("team-a", Some(&o.role_binding), Some(&o.resource_quota)),
            "kubectl devenv tenant add team-a --user alice --user 'oidc:Dev Lead' --group devs --workspaces 3 --tier large"
        );
        let one = tenant("team-a", &["alice"], &[], 1, "small");
        assert_eq!(
            re_add_command("team-a", Some(&one.role_binding), Some(&one.resource_quota)),
            "kubectl devenv tenant add team-a --user alice --tier small"
        );
        assert_eq!(
            re_add_command("team-a", None, None),
            "kubectl devenv tenant add team-a --user USER"
        );
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }
}
