//! The portal's (`kubectl devenv ui`) decisions, apart from its server: who may use it
//! ([`Gate`]), and the document its page is sent when a workspace changes ([`Snapshot`]).
//!
//! The page acts with the user's cluster credentials, so the gate lets a request through
//! only when all of these hold:
//! - it names this server as its `Host` (`127.0.0.1:PORT`), so a DNS-rebound name
//!   (`evil.example` resolving to 127.0.0.1) is refused, and so is `localhost`, which a
//!   browser may send to `[::1]`, where another user could listen;
//! - its `Origin`, when the browser sends one, is this server, and a request that changes
//!   something (any method but GET and HEAD) must send one: a cross-site form or fetch
//!   is refused even if it guessed the token;
//! - it carries this run's token (`?token=` or the `X-Devenv-Token` header), which only
//!   the user who started the server was shown: another user of the machine can reach
//!   the loopback port but not the token.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Event, ResourceQuota};
use serde::Serialize;

use devenv_shared::model::keys::WORKSPACE_LABEL;
use devenv_shared::model::quantity::{memory_bytes, usage_millicores};

use crate::views::list::WorkspaceSummary;

/// The header a page's own requests carry the token in (EventSource, which cannot set
/// headers, sends it as `?token=`).
pub const TOKEN_HEADER: &str = "x-devenv-token";

/// Bytes of randomness in a run's token (hex in the URL: 64 characters).
pub const TOKEN_BYTES: usize = 32;

/// Why a request was refused; the text is the response body, and says what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The `Host` header is not this server's.
    Host,
    /// The `Origin` header is another site's, or missing on a request that changes something.
    Origin,
    /// No token, or not this run's.
    Token,
}

impl Refusal {
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Host => {
                "refused: the Host header is not this portal's (127.0.0.1:PORT); \
                 open the URL kubectl devenv ui printed"
            }
            Refusal::Origin => {
                "refused: the request comes from another site (its Origin is not this portal); \
                 use the portal's own page"
            }
            Refusal::Token => {
                "refused: this portal needs the token of this run; open the URL kubectl devenv ui \
                 printed (it ends in ?token=...)"
            }
        }
    }
}

/// Who may use one run of the portal: its port and its token.
#[derive(Debug, Clone)]
pub struct Gate {
    port: u16,
    token: String,
}

impl Gate {
    pub fn new(port: u16, token: String) -> Gate {
        Gate { port, token }
    }

    /// The URL to open: the page, with the token.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/?token={}", self.port, self.token)
    }

    /// `127.0.0.1:PORT` only. Not `localhost`: browsers try `[::1]` first for it, where the
    /// portal does not listen and another user of the machine could, and be sent the token.
    fn own_host(&self, host: &str) -> bool {
        host == format!("127.0.0.1:{}", self.port)
    }

    /// Checks one request: `changes` is true for any method but GET and HEAD; `query` is the
    /// URL's query string; the headers as sent (`None` when absent or not text).
    pub fn check(
        &self,
        changes: bool,
        host: Option<&str>,
        origin: Option<&str>,
        token_header: Option<&str>,
        query: Option<&str>,
    ) -> Result<(), Refusal> {
        if !host.is_some_and(|h| self.own_host(h)) {
            return Err(Refusal::Host);
        }
        match origin {
            Some(o) => {
                let own = o
                    .strip_prefix("http://")
                    .is_some_and(|rest| self.own_host(rest));
                if !own {
                    return Err(Refusal::Origin);
                }
            }
            None if changes => return Err(Refusal::Origin),
            None => {}
        }
        let given = token_header.or_else(|| query.and_then(token_in_query));
        match given {
            Some(t) if same_secret(t.as_bytes(), self.token.as_bytes()) => Ok(()),
            _ => Err(Refusal::Token),
        }
    }
}

/// The value of `token=` in a query string (it is hex: nothing to percent-decode).
fn token_in_query(query: &str) -> Option<&str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
}

/// Compares two secrets in time that depends on their lengths only, not on where they
/// first differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A token from `random` bytes, as hex.
pub fn token_from(random: &[u8; TOKEN_BYTES]) -> String {
    random.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the page is sent, whole, each time the workspaces change: the same rows as
/// `list -o json`, and the scope they were read in.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot<'a> {
    /// The namespace shown, or `None` for all namespaces (`ui -A`).
    pub namespace: Option<&'a str>,
    /// Whether the watches have listed everything once (until then the table is loading).
    pub synced: bool,
    pub workspaces: &'a [WorkspaceSummary],
    /// The tiers the create form offers (the installed policy's).
    pub tiers: &'a [TierChoice],
    /// CPU and memory in use by each workspace's pods (`NAMESPACE/NAME`), from the
    /// metrics API; empty when the cluster does not serve it.
    pub usage: &'a BTreeMap<String, Usage>,
    /// Why a watch is failing (RBAC, an unreachable API server), for the page to show.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// A workspace action the page may ask for, by the name in its URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Start,
    Stop,
    /// Delete, keeping the claims (and so the data), as `kubectl devenv delete NAME`.
    Delete,
    /// Replicas and tier (a JSON [`ScaleForm`]), as `kubectl devenv scale`.
    Scale,
    /// Delete with the data (a JSON [`PurgeForm`] with the name typed), as
    /// `kubectl devenv delete NAME --purge`: backed up first unless told not to.
    Purge,
}

impl Action {
    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "create" => Some(Action::Create),
            "start" => Some(Action::Start),
            "stop" => Some(Action::Stop),
            "delete" => Some(Action::Delete),
            "scale" => Some(Action::Scale),
            "purge" => Some(Action::Purge),
            _ => None,
        }
    }
}

/// A tier the create form offers, with what it gives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TierChoice {
    pub name: String,
    pub cpu: String,
    pub memory: String,
    /// The policy's default tier.
    pub default: bool,
}

/// The tiers of a policy, for the form: each one's limits (what a pod of it may use).
pub fn tier_choices(policy: &devenv_shared::model::policy::Policy) -> Vec<TierChoice> {
    policy
        .tiers
        .iter()
        .map(|(name, tier)| TierChoice {
            name: name.clone(),
            cpu: tier.limits.cpu.clone(),
            memory: tier.limits.memory.clone(),
            default: *name == policy.default_tier,
        })
        .collect()
}

/// What the create form sends. Every field is optional, as the flags are; an empty
/// field is an absent flag.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateForm {
    #[serde(default)]
    pub tier: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub repo: Option<String>,
    #[serde(default)]
    pub secrets: Vec<String>,
}

/// What the scale form sends: the replicas, the tier, or both.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScaleForm {
    #[serde(default)]
    pub replicas: Option<i32>,
    #[serde(default)]
    pub tier: Option<String>,
}

/// What the purge form sends: the workspace's name, typed by the user, and whether to skip
/// the backup that otherwise comes first.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PurgeForm {
    #[serde(default)]
    pub confirm: String,
    #[serde(default)]
    pub no_backup: bool,
}

/// The purge form as the command line `kubectl devenv delete NAME --purge --yes` (the name
/// typed is the confirmation `--yes` stands for); refused unless the name was typed.
pub fn purge_argv(name: &str, form: &PurgeForm) -> Result<Vec<String>, String> {
    if form.confirm.trim() != name {
        return Err(format!(
            "purge deletes all data of workspace {name}: type its name to confirm"
        ));
    }
    let mut argv = ["kubectl-devenv", "delete", "--purge", "--yes"]
        .map(str::to_owned)
        .to_vec();
    if form.no_backup {
        argv.push("--no-backup".to_owned());
    }
    argv.push("--".to_owned());
    argv.push(name.to_owned());
    Ok(argv)
}

/// The VS Code link of workspace `name` (its first pod) once `ssh-config --write` (or
/// `code`) has written its Host block into the plugin's ssh config `ssh_config`: the
/// Remote-SSH URL of its `/workspace`. `None` before, when the link would not connect.
pub fn vscode_link(ssh_config: &str, name: &str, namespace: &str) -> Option<String> {
    let alias = devenv_shared::build::ssh::host_alias(name, &format!("{name}-0"), namespace);
    let host = format!("Host {alias}");
    ssh_config
        .lines()
        .any(|l| l.trim_end() == host)
        .then(|| format!("vscode://vscode-remote/ssh-remote+{alias}/workspace"))
}

/// The form as the command line `kubectl devenv create` would have been given, to be read
/// by the CLI's own parser (one grammar, one parser; its errors name the flag). Every value
/// is `--flag=VALUE` and the name comes after `--`, so no value can be read as a flag.
pub fn create_argv(name: &str, form: &CreateForm) -> Vec<String> {
    let mut argv = vec!["kubectl-devenv".to_owned(), "create".to_owned()];
    let mut flag = |flag: &str, value: &Option<String>| {
        if let Some(v) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            argv.push(format!("--{flag}={v}"));
        }
    };
    flag("tier", &form.tier);
    flag("image", &form.image);
    flag("repo", &form.repo);
    for secret in form
        .secrets
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        argv.push(format!("--secret={secret}"));
    }
    argv.push("--no-wait".to_owned());
    argv.push("--".to_owned());
    argv.push(name.to_owned());
    argv
}

/// What a workspace's pods use now, as the metrics API reports it, in the table's units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// `123m`.
    pub cpu: String,
    /// `456Mi`.
    pub memory: String,
}

/// The usage of each workspace (`NAMESPACE/NAME`) from a `metrics.k8s.io/v1beta1` PodMetrics
/// list: the sum over its pods' containers. Entries that are not quantities are skipped.
pub fn usage_by_workspace(pod_metrics: &serde_json::Value) -> BTreeMap<String, Usage> {
    let mut sums: BTreeMap<String, (u64, i128)> = BTreeMap::new();
    for item in pod_metrics["items"].as_array().into_iter().flatten() {
        let meta = &item["metadata"];
        let (Some(ns), Some(ws)) = (
            meta["namespace"].as_str(),
            meta["labels"][WORKSPACE_LABEL].as_str(),
        ) else {
            continue;
        };
        let sum = sums.entry(format!("{ns}/{ws}")).or_default();
        for c in item["containers"].as_array().into_iter().flatten() {
            if let Some(m) = c["usage"]["cpu"].as_str().and_then(usage_millicores) {
                sum.0 = sum.0.saturating_add(m);
            }
            if let Some(b) = c["usage"]["memory"]
                .as_str()
                .and_then(|m| memory_bytes(m).ok())
            {
                sum.1 = sum.1.saturating_add(b);
            }
        }
    }
    sums.into_iter()
        .map(|(k, (cpu, mem))| {
            (
                k,
                Usage {
                    cpu: format!("{cpu}m"),
                    memory: format!("{}Mi", (mem + (1 << 20) - 1) >> 20),
                },
            )
        })
        .collect()
}

/// One event of a workspace, for its page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventLine {
    /// When it last happened (RFC 3339).
    pub time: String,
    pub warning: bool,
    /// `pod/alice-0`, `statefulset/alice`, `persistentvolumeclaim/workspace-alice-0`.
    pub object: String,
    pub reason: String,
    /// In plain language: a webhook denial says so and why.
    pub message: String,
    /// How many times it happened.
    pub count: i32,
}

/// Whether `object` of `kind` belongs to workspace `name`: its StatefulSet, its pods
/// `NAME-N`, its claims `TEMPLATE-NAME-N` (and a bare pod's `TEMPLATE-NAME-bare`).
fn belongs(kind: &str, object: &str, name: &str) -> bool {
    let ordinal = |rest: &str| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit());
    match kind {
        "StatefulSet" | "Service" => object == name,
        "Pod" => object
            .strip_prefix(name)
            .and_then(|r| r.strip_prefix('-'))
            .is_some_and(ordinal),
        "PersistentVolumeClaim" => object.split_once('-').is_some_and(|(_, rest)| {
            rest.strip_prefix(name)
                .and_then(|r| r.strip_prefix('-'))
                .is_some_and(|r| ordinal(r) || r == "bare")
        }),
        _ => false,
    }
}

/// A webhook's denial as a person would say it; other messages as they are.
pub fn plain_message(message: &str) -> String {
    match message.split_once("denied the request: ") {
        Some((before, why)) if before.contains("admission webhook") => {
            format!("refused by the admission webhook: {why}")
        }
        _ => message.to_owned(),
    }
}

/// The events of workspace `name` among `events` (one namespace's), newest first, at most
/// `limit`.
pub fn workspace_events(events: &[Event], name: &str, limit: usize) -> Vec<EventLine> {
    let mut lines: Vec<EventLine> = events
        .iter()
        .filter_map(|e| {
            let kind = e.involved_object.kind.as_deref()?;
            let object = e.involved_object.name.as_deref()?;
            if !belongs(kind, object, name) {
                return None;
            }
            let time = e
                .last_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .or_else(|| e.event_time.as_ref().map(|t| t.0.to_string()))
                .or_else(|| {
                    e.metadata
                        .creation_timestamp
                        .as_ref()
                        .map(|t| t.0.to_string())
                })
                .unwrap_or_default();
            Some(EventLine {
                time,
                warning: e.type_.as_deref() == Some("Warning"),
                object: format!("{}/{object}", kind.to_ascii_lowercase()),
                reason: e.reason.clone().unwrap_or_default(),
                message: plain_message(e.message.as_deref().unwrap_or_default()),
                count: e.count.unwrap_or(1),
            })
        })
        .collect();
    // RFC 3339 in UTC sorts as text.
    lines.sort_by(|a, b| b.time.cmp(&a.time));
    lines.truncate(limit);
    lines
}

/// One namespace's quota, for the admin view: each resource's use against its limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuotaRow {
    pub namespace: String,
    pub name: String,
    /// (resource, used, hard), by resource name.
    pub resources: Vec<(String, String, String)>,
}

pub fn quota_rows(quotas: &[ResourceQuota]) -> Vec<QuotaRow> {
    let mut rows: Vec<QuotaRow> = quotas
        .iter()
        .map(|q| {
            let status = q.status.as_ref();
            let hard = status.and_then(|s| s.hard.as_ref());
            let used = status.and_then(|s| s.used.as_ref());
            QuotaRow {
                namespace: q.metadata.namespace.clone().unwrap_or_default(),
                name: q.metadata.name.clone().unwrap_or_default(),
                resources: hard
                    .into_iter()
                    .flatten()
                    .map(|(resource, limit)| {
                        let in_use = used
                            .and_then(|u| u.get(resource))
                            .map_or_else(|| "0".to_owned(), |u| u.0.clone());
                        (resource.clone(), in_use, limit.0.clone())
                    })
                    .collect(),
            }
        })
        .collect();
    rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff";

    fn gate() -> Gate {
        Gate::new(4321, TOKEN.to_owned())
    }

    #[test]
    fn the_page_with_its_token_on_its_own_host_is_let_through() {
        let g = gate();
        let q = format!("token={TOKEN}");
        assert_eq!(
            g.check(false, Some("127.0.0.1:4321"), None, None, Some(&q)),
            Ok(())
        );
        assert_eq!(
            g.check(false, Some("localhost:4321"), None, None, Some(&q)),
            Err(Refusal::Host),
            "localhost may resolve to [::1], where the portal does not listen"
        );
        assert_eq!(
            g.check(
                true,
                Some("127.0.0.1:4321"),
                Some("http://127.0.0.1:4321"),
                Some(TOKEN),
                None
            ),
            Ok(())
        );
        assert_eq!(
            g.check(
                false,
                Some("127.0.0.1:4321"),
                None,
                None,
                Some(&format!("a=b&{q}"))
            ),
            Ok(())
        );
        assert_eq!(g.url(), format!("http://127.0.0.1:4321/?token={TOKEN}"));
    }

    #[test]
    fn a_rebound_name_or_another_port_is_refused_by_host() {
        let g = gate();
        for host in [
            None,
            Some("evil.example:4321"),
            Some("127.0.0.1"),
            Some("127.0.0.1:4322"),
            Some("127.0.0.1:4321.evil.example"),
            Some("[::1]:4321"),
        ] {
            assert_eq!(
                g.check(false, host, None, Some(TOKEN), None),
                Err(Refusal::Host),
                "{host:?}"
            );
        }
    }

    #[test]
    fn another_site_is_refused_by_origin_and_changes_need_one() {
        let g = gate();
        let host = Some("127.0.0.1:4321");
        for origin in [
            "http://evil.example",
            "https://127.0.0.1:4321",
            "http://127.0.0.1:4321.evil.example",
            "null",
            "http://localhost:9999",
        ] {
            assert_eq!(
                g.check(false, host, Some(origin), Some(TOKEN), None),
                Err(Refusal::Origin),
                "{origin}"
            );
        }
        assert_eq!(
            g.check(true, host, None, Some(TOKEN), None),
            Err(Refusal::Origin)
        );
    }

    #[test]
    fn a_missing_or_wrong_token_is_refused() {
        let g = gate();
        let host = Some("127.0.0.1:4321");
        assert_eq!(g.check(false, host, None, None, None), Err(Refusal::Token));
        assert_eq!(
            g.check(false, host, None, None, Some("tok=x")),
            Err(Refusal::Token)
        );
        let mut wrong = TOKEN.to_owned();
        wrong.replace_range(63.., "e");
        assert_eq!(
            g.check(false, host, None, Some(&wrong), None),
            Err(Refusal::Token)
        );
        assert_eq!(
            g.check(false, host, None, Some(&TOKEN[..63]), None),
            Err(Refusal::Token)
        );
        assert_eq!(
            g.check(false, host, None, Some(""), None),
            Err(Refusal::Token)
        );
        // A header, when sent, is the token: a right one in the query does not rescue it.
        let q = format!("token={TOKEN}");
        assert_eq!(
            g.check(false, host, None, Some("x"), Some(&q)),
            Err(Refusal::Token)
        );
        for r in [Refusal::Host, Refusal::Origin, Refusal::Token] {
            assert!(r.message().starts_with("refused: "), "{r:?}");
        }
    }

    #[test]
    fn tokens_are_hex_of_their_bytes() {
        let t = token_from(&[0xab; TOKEN_BYTES]);
        assert_eq!(t.len(), 2 * TOKEN_BYTES);
        assert!(t.chars().all(|c| c == 'a' || c == 'b'));
    }

    #[test]
    fn actions_are_parsed_by_name_only() {
        assert_eq!(Action::parse("start"), Some(Action::Start));
        assert_eq!(Action::parse("stop"), Some(Action::Stop));
        assert_eq!(Action::parse("create"), Some(Action::Create));
        assert_eq!(Action::parse("delete"), Some(Action::Delete));
        assert_eq!(Action::parse("scale"), Some(Action::Scale));
        assert_eq!(Action::parse("purge"), Some(Action::Purge));
        assert_eq!(Action::parse("Purge"), None);
        assert_eq!(Action::parse("Stop"), None);
    }

    #[test]
    fn the_create_form_becomes_the_command_line_and_no_value_becomes_a_flag() {
        let form = CreateForm {
            tier: Some("large".into()),
            image: Some("  ".into()),
            repo: Some("--replicas=100".into()),
            secrets: vec!["gh".into(), "".into()],
        };
        assert_eq!(
            create_argv("alice", &form),
            [
                "kubectl-devenv",
                "create",
                "--tier=large",
                "--repo=--replicas=100",
                "--secret=gh",
                "--no-wait",
                "--",
                "alice",
            ]
        );
        assert_eq!(
            create_argv("--replicas=9", &CreateForm::default())
                .last()
                .map(String::as_str),
            Some("--replicas=9"),
            "the name is after --: a positional, whatever it looks like"
        );
        let bad: Result<CreateForm, _> = serde_json::from_str(r#"{"replicas": 100}"#);
        assert!(bad.is_err(), "a field the form does not have is refused");
    }

    #[test]
    fn the_tiers_offered_are_the_policys_with_its_default_marked() {
        let policy = devenv_shared::model::policy::Policy::default();
        let tiers = tier_choices(&policy);
        let names: Vec<&str> = tiers.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["large", "micro", "small"]);
        assert_eq!(
            tiers
                .iter()
                .filter(|t| t.default)
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>(),
            ["small"]
        );
        assert!(tiers
            .iter()
            .all(|t| !t.cpu.is_empty() && !t.memory.is_empty()));
    }

    #[test]
    fn usage_is_summed_per_workspace_over_its_pods_and_containers() {
        let list = serde_json::json!({"items": [
            {"metadata": {"namespace": "team", "name": "alice-0", "labels": {"devenv.io/workspace": "alice"}},
             "containers": [{"usage": {"cpu": "250000000n", "memory": "100Mi"}},
                            {"usage": {"cpu": "5m", "memory": "1Ki"}}]},
            {"metadata": {"namespace": "team", "name": "alice-1", "labels": {"devenv.io/workspace": "alice"}},
             "containers": [{"usage": {"cpu": "1", "memory": "not-a-quantity"}}]},
            {"metadata": {"namespace": "team", "name": "other"}, "containers": [{"usage": {"cpu": "9"}}]},
        ]});
        let usage = usage_by_workspace(&list);
        assert_eq!(usage.len(), 1, "{usage:?}");
        assert_eq!(
            usage["team/alice"],
            Usage {
                cpu: "1255m".into(),
                memory: "101Mi".into()
            }
        );
        assert!(usage_by_workspace(&serde_json::json!({})).is_empty());
    }

    fn event(kind: &str, object: &str, reason: &str, message: &str, time: &str) -> Event {
        use k8s_openapi::api::core::v1::ObjectReference;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        Event {
            involved_object: ObjectReference {
                kind: Some(kind.into()),
                name: Some(object.into()),
                ..Default::default()
            },
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some("Warning".into()),
            last_timestamp: Some(Time(time.parse().expect("a time"))),
            ..Default::default()
        }
    }

    #[test]
    fn a_workspaces_events_are_its_own_newest_first_and_denials_say_so() {
        let events = [
            event("StatefulSet", "alice", "FailedCreate",
                "create Pod alice-0 in StatefulSet alice failed error: admission webhook \"pods.validate.devenv.io\" denied the request: spec.hostNetwork: not allowed",
                "2026-12-04T10:00:00Z"),
            event("Pod", "alice-0", "FailedScheduling", "0/1 nodes are available", "2026-12-04T11:00:00Z"),
            event("PersistentVolumeClaim", "workspace-alice-0", "ProvisioningFailed", "no class", "2026-12-04T09:00:00Z"),
            event("Pod", "alice-bob-0", "Pulled", "x", "2026-12-04T12:00:00Z"),
            event("Pod", "alicex-0", "Pulled", "x", "2026-12-04T12:00:00Z"),
            event("StatefulSet", "alice-2", "x", "x", "2026-12-04T12:00:00Z"),
            event("PersistentVolumeClaim", "workspace-alice-bob-0", "x", "x", "2026-12-04T12:00:00Z"),
        ];
        let lines = workspace_events(&events, "alice", 10);
        let objects: Vec<&str> = lines.iter().map(|l| l.object.as_str()).collect();
        assert_eq!(
            objects,
            [
                "pod/alice-0",
                "statefulset/alice",
                "persistentvolumeclaim/workspace-alice-0"
            ]
        );
        assert_eq!(
            lines[1].message,
            "refused by the admission webhook: spec.hostNetwork: not allowed"
        );
        assert!(lines.iter().all(|l| l.warning));
        assert_eq!(workspace_events(&events, "alice", 1).len(), 1);
        assert_eq!(
            plain_message("denied the request: x"),
            "denied the request: x",
            "not a webhook's"
        );
    }

    #[test]
    fn quotas_show_use_against_each_limit() {
        use k8s_openapi::api::core::v1::ResourceQuotaStatus;
        use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
        let q = ResourceQuota {
            metadata: kube::api::ObjectMeta {
                name: Some("devenv".into()),
                namespace: Some("team".into()),
                ..Default::default()
            },
            status: Some(ResourceQuotaStatus {
                hard: Some(
                    [
                        ("limits.cpu".to_owned(), Quantity("8".into())),
                        ("pods".to_owned(), Quantity("10".into())),
                    ]
                    .into(),
                ),
                used: Some([("limits.cpu".to_owned(), Quantity("2500m".into()))].into()),
            }),
            ..Default::default()
        };
        let rows = quota_rows(&[q]);
        assert_eq!(rows[0].namespace, "team");
        assert_eq!(
            rows[0].resources,
            [
                ("limits.cpu".to_owned(), "2500m".to_owned(), "8".to_owned()),
                ("pods".to_owned(), "0".to_owned(), "10".to_owned()),
            ]
        );
    }

    #[test]
    fn purge_needs_the_name_typed_and_says_so() {
        let typed = |confirm: &str, no_backup| PurgeForm {
            confirm: confirm.into(),
            no_backup,
        };
        assert_eq!(
            purge_argv("alice", &typed("alice", false)).expect("typed"),
            [
                "kubectl-devenv",
                "delete",
                "--purge",
                "--yes",
                "--",
                "alice"
            ]
        );
        assert_eq!(
            purge_argv("alice", &typed(" alice ", true)).expect("typed"),
            [
                "kubectl-devenv",
                "delete",
                "--purge",
                "--yes",
                "--no-backup",
                "--",
                "alice"
            ]
        );
        for wrong in ["", "alic", "Alice", "bob"] {
            let e = purge_argv("alice", &typed(wrong, true)).expect_err("not typed");
            assert!(e.contains("type its name"), "{e}");
        }
    }

    #[test]
    fn the_vscode_link_appears_once_the_host_block_is_written() {
        let config = "# BEGIN devenv alice.team.devenv\nHost alice.team.devenv\n  HostName alice.team.devenv\n";
        assert_eq!(
            vscode_link(config, "alice", "team").as_deref(),
            Some("vscode://vscode-remote/ssh-remote+alice.team.devenv/workspace")
        );
        assert_eq!(vscode_link(config, "alice", "other"), None);
        assert_eq!(vscode_link(config, "ali", "team"), None);
        assert_eq!(vscode_link("", "alice", "team"), None);
    }
}
