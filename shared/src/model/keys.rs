//! Label and annotation keys, field managers and container names: the names that are part
//! of the product's contract with the cluster and with the user's tools.

/// Marks a pod (or a StatefulSet's pod template) as a workspace; the value is the workspace name.
pub const WORKSPACE_LABEL: &str = "devenv.io/workspace";
/// Selects the policy tier (micro, small, large) of a workspace.
pub const TIER_ANNOTATION: &str = "devenv.io/tier";
/// Who owns a workspace: the API server's username of the request that created it, recorded
/// by the mutating webhook on the workspace's StatefulSet, pod template, pods and claims, never
/// taken from the user and never changed afterwards (but by an admin).
pub const OWNER_ANNOTATION: &str = "devenv.io/owner";
/// Scheduling gate of a bare workspace pod until the lifecycle controller has created (or
/// found, with the same owner) the pod's claims: admission itself creates nothing.
pub const CLAIMS_GATE: &str = "devenv.io/claims";
/// A Secret carrying `devenv.io/inject=true` may be injected into workspaces of its namespace.
pub const INJECT_LABEL: &str = "devenv.io/inject";
/// Marks a namespace made by `kubectl devenv tenant add NAME`; the value is NAME (the
/// namespace's own name). `tenant list` and `tenant remove` act only on namespaces
/// labelled `devenv.io/tenant=<their name>`.
pub const TENANT_LABEL: &str = "devenv.io/tenant";
/// Field manager for server-side apply by the plugin.
pub const FIELD_MANAGER: &str = "kubectl-devenv";
/// `app.kubernetes.io/managed-by` value on everything the project creates.
pub const MANAGED_BY: &str = "kubectl-devenv";
/// `app.kubernetes.io/managed-by`: set to [`MANAGED_BY`] on everything the project creates.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// `app.kubernetes.io/name` of every workspace object.
pub const APP_NAME: &str = "devenv-workspace";
/// The main container of a workspace pod: `kubectl devenv exec` runs commands in it.
pub const WORKSPACE_CONTAINER: &str = "workspace";
/// The init container that clones `--repo`.
pub const CLONE_CONTAINER: &str = "clone";

// Lifecycle annotations on a workspace StatefulSet (see `crate::lifecycle`).

/// RFC 3339 time of the workspace's last use.
pub const LAST_ACTIVITY: &str = "devenv.io/last-activity";
/// Per-workspace idle timeout (`2h`, `30m`, `1h30m`, `0` = never); overrides the policy.
pub const IDLE_TIMEOUT: &str = "devenv.io/idle-timeout";
/// RFC 3339 time the workspace is set to hibernated by the controller.
pub const HIBERNATED: &str = "devenv.io/hibernated";
/// RFC 3339 time the workspace was scaled to zero (by `stop` or by hibernation).
pub const STOPPED_AT: &str = "devenv.io/stopped-at";
/// RFC 3339 time at which an idle workspace will be stopped; present from the
/// moment the warning is issued until activity or the stop.
pub const IDLE_WARNING: &str = "devenv.io/idle-warning";
/// Per-workspace time a stopped workspace is kept before it is deleted (`0` = forever).
pub const TTL: &str = "devenv.io/ttl";
/// Replicas of the workspace before `stop` (or hibernation) scaled it to zero.
pub const REPLICAS_BEFORE_STOP: &str = "devenv.io/replicas-before-stop";
/// RFC 3339 time of the workspace's last good backup (any reason), for the schedule and `get`.
pub const LAST_BACKUP: &str = "devenv.io/last-backup";
/// Where that backup is: `REGISTRY/REPO@sha256:...`.
pub const LAST_BACKUP_REF: &str = "devenv.io/last-backup-ref";
/// Field manager of every write by the lifecycle controller.
pub const LIFECYCLE_FIELD_MANAGER: &str = "devenv-lifecycle";
