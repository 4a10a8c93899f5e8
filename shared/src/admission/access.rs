//! Who is asking: the request's `userInfo` as the policy sees it. Admission decisions about
//! a workspace's pods, StatefulSet and claims turn on it: its owner and the platform's
//! admins may act on it, the StatefulSet controller creates its pods and claims (when it can
//! prove they are the workspace's), the lifecycle controller creates bare pods' claims and
//! stops idle workspaces, and nobody else acts on someone else's workspace.

use k8s_openapi::api::authentication::v1::UserInfo;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::model::keys::OWNER_ANNOTATION;
use crate::model::policy::AccessPolicy;

/// What the requester is to the workspace rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// In `access.adminGroups` or `access.adminUsers`: may act on any workspace.
    Admin,
    /// One of `access.controllers`: the lifecycle controller.
    Controller,
    /// One of `access.statefulsetControllers`: creates StatefulSet pods and claims.
    StatefulSetController,
    /// Anyone else, a workspace's owner included.
    User,
}

/// The requester of an admission request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requester {
    /// `userInfo.username` (empty when the API server sent none).
    pub username: String,
    pub role: Role,
}

impl Requester {
    /// Classifies `userInfo` by the policy.
    pub fn of(access: &AccessPolicy, info: &UserInfo) -> Requester {
        let username = info.username.clone().unwrap_or_default();
        let groups = info.groups.as_deref().unwrap_or(&[]);
        let role = if access.admin_users.contains(&username)
            || groups.iter().any(|g| access.admin_groups.contains(g))
        {
            Role::Admin
        } else if access.controllers.contains(&username) {
            Role::Controller
        } else if access.statefulset_controllers.contains(&username) {
            Role::StatefulSetController
        } else {
            Role::User
        };
        Requester { username, role }
    }

    /// Admins and the lifecycle controller act for every workspace.
    pub fn is_trusted(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Controller)
    }

    /// May this requester act on a workspace owned by `owner`? Its owner may; so may admins
    /// and the lifecycle controller. A workspace without a recorded owner (made before
    /// owners were recorded) is the admins' to act on, or to give an owner.
    pub fn may_act_for(&self, owner: Option<&str>) -> bool {
        self.is_trusted() || (!self.username.is_empty() && owner == Some(self.username.as_str()))
    }

    /// Kube-system's own controllers (the namespace controller deleting a namespace's claims,
    /// the garbage collector): they delete on the cluster's behalf, never for a user.
    pub fn is_cluster_component(&self) -> bool {
        self.username
            .starts_with("system:serviceaccount:kube-system:")
            || self.username == "system:kube-controller-manager"
    }
}

/// The `devenv.io/owner` annotation of an object.
pub fn owner_of(meta: &ObjectMeta) -> Option<&str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(OWNER_ANNOTATION))
        .map(String::as_str)
}

/// Says who may act on a workspace, for denials.
pub fn owner_rule(workspace: &str, owner: Option<&str>) -> String {
    match owner {
        Some(owner) => format!(
            "workspace {workspace} belongs to {owner}: only its owner, the policy's admins (access.adminGroups, access.adminUsers) and the devenv controllers may act on it"
        ),
        None => format!(
            "workspace {workspace} has no recorded owner ({OWNER_ANNOTATION}): only the policy's admins (access.adminGroups, access.adminUsers) may act on it, or give it an owner"
        ),
    }
}

/// Who may restore a backup of `source` (owned by `backup_owner`) into workspace `target`
/// (owned by `target_owner`; `None` when it is new and will be the requester's): the owner of
/// both, and admins. The backup's owner is read from the backup itself, so a user cannot
/// restore someone else's data into a workspace of their own, nor their data over someone
/// else's workspace.
pub fn restore_rule(
    requester: &Requester,
    source: &str,
    backup_owner: Option<&str>,
    target: &str,
    target_owner: Option<Option<&str>>,
) -> Result<(), String> {
    if requester.role == Role::Admin {
        return Ok(());
    }
    if !requester.may_act_for(backup_owner) {
        return Err(format!(
            "this backup is of workspace {source}, {}: only its owner and the policy's admins (access.adminGroups, access.adminUsers) may restore it",
            match backup_owner {
                Some(o) => format!("owned by {o}"),
                None => "which had no recorded owner".to_owned(),
            }
        ));
    }
    match target_owner {
        Some(owner) if !requester.may_act_for(owner) => Err(owner_rule(target, owner)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_owner_of_backup_and_target_or_an_admin_may_restore() {
        let user = |name: &str, role| Requester {
            username: name.into(),
            role,
        };
        let alice = user("alice", Role::User);
        assert!(restore_rule(&alice, "w", Some("alice"), "w", Some(Some("alice"))).is_ok());
        assert!(restore_rule(&alice, "w", Some("alice"), "new", None).is_ok());
        let e = restore_rule(&alice, "bobs", Some("bob"), "mine", Some(Some("alice"))).unwrap_err();
        assert!(e.contains("owned by bob"), "{e}");
        let e = restore_rule(&alice, "w", Some("alice"), "bobs", Some(Some("bob"))).unwrap_err();
        assert!(e.contains("belongs to bob"), "{e}");
        assert!(restore_rule(&alice, "w", None, "new", None).is_err());
        let admin = user("root", Role::Admin);
        assert!(restore_rule(&admin, "w", Some("bob"), "x", Some(Some("carol"))).is_ok());
    }

    fn info(user: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            username: Some(user.to_string()),
            groups: Some(groups.iter().map(|g| g.to_string()).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn roles_come_from_the_policy() {
        let access = AccessPolicy {
            controllers: vec!["system:serviceaccount:devenv-system:devenv-webhook".into()],
            ..AccessPolicy::default()
        };
        let role = |u: &str, g: &[&str]| Requester::of(&access, &info(u, g)).role;
        assert_eq!(
            role("admin", &["system:masters", "system:authenticated"]),
            Role::Admin
        );
        assert_eq!(
            role(
                "system:serviceaccount:kube-system:statefulset-controller",
                &[]
            ),
            Role::StatefulSetController
        );
        assert_eq!(
            role("system:kube-controller-manager", &[]),
            Role::StatefulSetController
        );
        assert_eq!(
            role("system:serviceaccount:devenv-system:devenv-webhook", &[]),
            Role::Controller
        );
        assert_eq!(role("alice", &["system:authenticated"]), Role::User);
        // A group name is not a username.
        assert_eq!(role("system:masters", &[]), Role::User);
    }

    #[test]
    fn owners_and_trusted_may_act() {
        let access = AccessPolicy::default();
        let alice = Requester::of(&access, &info("alice", &[]));
        assert!(alice.may_act_for(Some("alice")));
        assert!(!alice.may_act_for(Some("bob")));
        assert!(!alice.may_act_for(None));
        let admin = Requester::of(&access, &info("root", &["system:masters"]));
        assert!(admin.may_act_for(Some("bob")));
        assert!(admin.may_act_for(None));
        let nobody = Requester::of(&access, &UserInfo::default());
        assert!(!nobody.may_act_for(Some("")));
        assert!(owner_rule("bob", Some("bob@example.com")).contains("belongs to bob@example.com"));
    }
}
