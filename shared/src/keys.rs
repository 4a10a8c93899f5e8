//! Label and annotation keys, and other names that are part of the product's contract.

/// Marks a pod (or a StatefulSet's pod template) as a workspace; the value is the workspace name.
pub const WORKSPACE_LABEL: &str = "devenv.io/workspace";
/// Selects the policy tier (micro, small, large) of a workspace.
pub const TIER_ANNOTATION: &str = "devenv.io/tier";
/// A Secret carrying `devenv.io/inject=true` may be injected into workspaces of its namespace.
pub const INJECT_LABEL: &str = "devenv.io/inject";
/// Field manager for server-side apply by the plugin.
pub const FIELD_MANAGER: &str = "kubectl-devenv";
/// Field manager for objects the webhook itself creates (bare-pod claims).
pub const WEBHOOK_FIELD_MANAGER: &str = "devenv-webhook";
/// `app.kubernetes.io/managed-by` value on everything the project creates.
pub const MANAGED_BY: &str = "kubectl-devenv";
