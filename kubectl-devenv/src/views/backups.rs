//! What `kubectl devenv backups` shows: one row per backup, oldest first.

use serde_json::{json, Value};

use devenv_shared::build::backup::Backup;

use crate::views::list::{align, format_bytes};

/// One backup found in a repository: its tag, manifest digest and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub tag: String,
    pub digest: String,
    pub backup: Backup,
}

/// Keeps the backups of `namespace` (all when `None`) and `workspace` (all when `None`),
/// oldest first (RFC 3339 UTC times sort as text).
pub fn select(
    mut rows: Vec<Listed>,
    namespace: Option<&str>,
    workspace: Option<&str>,
) -> Vec<Listed> {
    rows.retain(|r| {
        namespace.is_none_or(|ns| r.backup.info.namespace == ns)
            && workspace.is_none_or(|w| r.backup.info.workspace == w)
    });
    rows.sort_by(|a, b| {
        (a.backup.info.created.as_str(), a.tag.as_str())
            .cmp(&(b.backup.info.created.as_str(), b.tag.as_str()))
    });
    rows
}

/// The table: `[NAMESPACE] WORKSPACE TAG REASON CREATED SIZE DIGEST`.
pub fn table(rows: &[Listed], all_namespaces: bool) -> String {
    let mut lines = Vec::new();
    let mut header = vec!["WORKSPACE", "TAG", "REASON", "CREATED", "SIZE", "DIGEST"];
    if all_namespaces {
        header.insert(0, "NAMESPACE");
    }
    lines.push(header.into_iter().map(String::from).collect::<Vec<_>>());
    for r in rows {
        let i = &r.backup.info;
        let mut line = vec![
            i.workspace.clone(),
            r.tag.clone(),
            i.reason.as_str().to_owned(),
            i.created.clone(),
            // u64 to f64 is exact enough for a display column.
            format_bytes(r.backup.size as f64),
            r.digest.clone(),
        ];
        if all_namespaces {
            line.insert(0, i.namespace.clone());
        }
        lines.push(line);
    }
    align(&lines)
}

/// The rows as JSON objects, for `-o json|yaml`.
pub fn values(rows: &[Listed]) -> Vec<Value> {
    rows.iter()
        .map(|r| {
            let i = &r.backup.info;
            json!({
                "namespace": i.namespace,
                "workspace": i.workspace,
                "owner": i.owner,
                "tag": r.tag,
                "digest": r.digest,
                "reason": i.reason.as_str(),
                "created": i.created,
                "size": r.backup.size,
                "volumes": r.backup.layers.iter().map(|(c, b)| json!({
                    "volume": c.volume,
                    "member": c.member,
                    "mountPath": c.mount_path,
                    "digest": b.digest,
                    "size": b.size,
                })).collect::<Vec<_>>(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use devenv_shared::build::backup::{BackupInfo, Blob, Reason, VolumeCopy};

    fn listed(ns: &str, ws: &str, created: &str, tag: &str) -> Listed {
        Listed {
            tag: tag.into(),
            digest: format!("sha256:{}", "a".repeat(64)),
            backup: Backup {
                info: BackupInfo {
                    workspace: ws.into(),
                    namespace: ns.into(),
                    owner: None,
                    created: created.into(),
                    reason: Reason::Manual,
                    image: String::new(),
                    tier: None,
                    keep_alive: false,
                    replicas: 1,
                },
                layers: vec![(
                    VolumeCopy {
                        volume: "workspace".into(),
                        member: 0,
                        mount_path: "/workspace".into(),
                        claim_size: None,
                    },
                    Blob {
                        digest: format!("sha256:{}", "b".repeat(64)),
                        size: 3 << 20,
                    },
                )],
                size: 3 << 20,
            },
        }
    }

    #[test]
    fn backups_are_filtered_by_namespace_and_workspace_and_listed_oldest_first() {
        let rows = vec![
            listed("a", "alice", "2026-12-02T10:00:00Z", "t2"),
            listed("a", "alice", "2026-12-01T10:00:00Z", "t1"),
            listed("a", "bob", "2026-12-01T11:00:00Z", "t3"),
            listed("b", "alice", "2026-12-01T12:00:00Z", "t4"),
        ];
        let tags = |v: Vec<Listed>| v.into_iter().map(|r| r.tag).collect::<Vec<_>>();
        assert_eq!(
            tags(select(rows.clone(), Some("a"), Some("alice"))),
            ["t1", "t2"]
        );
        assert_eq!(
            tags(select(rows.clone(), Some("a"), None)),
            ["t1", "t3", "t2"]
        );
        assert_eq!(
            tags(select(rows.clone(), None, Some("alice"))),
            ["t1", "t4", "t2"]
        );
        let text = table(&select(rows, None, None), true);
        let first: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(
            first,
            [
                "NAMESPACE",
                "WORKSPACE",
                "TAG",
                "REASON",
                "CREATED",
                "SIZE",
                "DIGEST"
            ]
        );
        assert!(text.lines().nth(1).unwrap().contains("3Mi"), "{text}");
    }
}
