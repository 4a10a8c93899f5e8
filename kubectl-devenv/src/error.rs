//! Errors a user sees: each says what happened and what to do about it.

use kube::core::Status;

use devenv_shared::build::install::InstallError;
use devenv_shared::build::tenant::TenantError;
use devenv_shared::build::workspace::WorkspaceError;
use devenv_shared::model::policy::PolicyError;

/// The API call that failed: verb, resource, kind, namespace and name, so an
/// error can say what was refused (and which `kubectl auth can-i` line checks it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiCall {
    /// RBAC verb: get, list, watch, create, patch, delete.
    pub verb: &'static str,
    /// Resource as RBAC names it: `statefulsets.apps`, `secrets`.
    pub resource: &'static str,
    /// Kind as a user reads it: `workspace`, `Secret`.
    pub kind: &'static str,
    /// Namespace; `None` for cluster-scoped objects or all namespaces.
    pub namespace: Option<String>,
    /// Object name; `None` for lists.
    pub name: Option<String>,
}

impl ApiCall {
    pub fn new(verb: &'static str, resource: &'static str, kind: &'static str) -> Self {
        Self {
            verb,
            resource,
            kind,
            namespace: None,
            name: None,
        }
    }
    pub fn ns(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.to_owned());
        self
    }
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }
    fn where_(&self) -> String {
        where_text(self.namespace.as_deref())
    }
}

fn where_text(namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("namespace {ns:?}"),
        None => "cluster scope".to_owned(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "cannot reach the Kubernetes API server at {server}: {detail}\n  \
         check that the cluster is up, or choose another cluster with --context NAME or --kubeconfig PATH"
    )]
    Unreachable { server: String, detail: String },

    #[error(
        "cannot load a kubeconfig: {detail}\n  \
         pass --kubeconfig PATH or set KUBECONFIG (commands with --dry-run=client need no cluster)"
    )]
    Kubeconfig { detail: String },

    #[error(
        "the API server at {server} rejected the credentials: {message}\n  \
         log in again, or choose another user with --context NAME"
    )]
    Unauthorized { server: String, message: String },

    #[error(
        "forbidden: {user} cannot {verb} {resource} in {}\n  \
         ask a cluster administrator for that permission (check with: kubectl auth can-i {verb} {resource}{})",
        where_text(namespace.as_deref()),
        namespace.as_deref().map(|n| format!(" -n {n}")).unwrap_or_default()
    )]
    Forbidden {
        verb: String,
        resource: String,
        namespace: Option<String>,
        /// `user "alice"`, or `you` when the API server did not say.
        user: String,
    },

    #[error(
        "quota exceeded: {message}\n  \
         choose a smaller --tier, stop another workspace (kubectl devenv stop NAME), or ask for a larger quota"
    )]
    QuotaExceeded { message: String },

    #[error("denied by admission webhook: {message}")]
    WebhookDenied { message: String },

    #[error(
        "the API server could not call an admission webhook: {message}\n  \
         check the webhook with: kubectl devenv status"
    )]
    WebhookUnavailable { message: String },

    #[error(
        "{kind} {name:?} already exists in namespace {namespace:?}\n  \
         choose another name, or remove it first with: kubectl devenv delete {name}"
    )]
    AlreadyExists {
        kind: String,
        name: String,
        namespace: String,
    },

    #[error("{kind} {name:?} not found in {where_}\n  {hint}")]
    NotFound {
        kind: String,
        name: String,
        where_: String,
        hint: String,
    },

    #[error(
        "conflict while trying to {verb} {kind} {name:?}: {message}\n  \
         another tool manages these fields; resolve it with that tool, or delete and re-create the object"
    )]
    Conflict {
        verb: String,
        kind: String,
        name: String,
        message: String,
    },

    #[error("the API server rejected {kind} {name:?}: {message}")]
    Invalid {
        kind: String,
        name: String,
        message: String,
    },

    #[error("{verb} {resource} failed: the API server answered {code} {reason}: {message}")]
    Api {
        verb: String,
        resource: String,
        code: u16,
        reason: String,
        message: String,
    },

    #[error("{0}")]
    Workspace(#[from] WorkspaceError),

    #[error("{0}")]
    Install(#[from] InstallError),

    #[error("{0}")]
    Tenant(#[from] TenantError),

    #[error("{0}")]
    Resize(#[from] devenv_shared::build::resize::ResizeError),

    /// A policy that cannot be used: a `--policy-file` (the message names the
    /// file) or the installed ConfigMap (`origin` names it); either way the
    /// message names the field and what to do.
    #[error("{}", policy_message(origin.as_deref(), source))]
    Policy {
        origin: Option<String>,
        source: PolicyError,
    },

    /// Wrong flags or arguments, found before any call.
    #[error("{0}")]
    Usage(String),

    #[error("timed out after {after} waiting for {what}: {reason}")]
    Timeout {
        after: String,
        what: String,
        reason: String,
    },

    /// The workspace cannot become ready without someone fixing something.
    #[error("workspace {name:?} is stuck: {reason}\n  {hint}")]
    Stuck {
        name: String,
        reason: String,
        hint: String,
    },

    /// The registry refused or failed a request; `reference` names what was asked for.
    #[error("registry: cannot {action} {reference}: {detail}\n  {hint}")]
    Registry {
        action: String,
        reference: String,
        detail: String,
        hint: String,
    },

    /// A manifest that is no devenv backup, a workspace without volumes.
    #[error("{0}")]
    Backup(#[from] devenv_shared::build::backup::BackupError),

    /// Refused by the restore rule before anything was read or written.
    #[error("restore refused: {0}")]
    RestoreRefused(String),

    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl Error {
    /// Exit code of the process for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_)
            | Error::Workspace(_)
            | Error::Install(_)
            | Error::Tenant(_)
            | Error::Resize(_)
            | Error::Backup(_)
            | Error::Policy { .. } => 2,
            _ => 1,
        }
    }
}

/// A policy file's errors name the file themselves (`PATH: FIELD: what to do`);
/// one from elsewhere gets its origin in front.
fn policy_message(origin: Option<&str>, source: &PolicyError) -> String {
    let names_its_file = matches!(
        source,
        PolicyError::Parse { path: Some(_), .. } | PolicyError::Invalid { path: Some(_), .. }
    );
    match (origin, source) {
        // "cannot read the policy file PATH: ..."
        (_, PolicyError::Read { .. }) => source.to_string(),
        (Some(origin), _) => format!("invalid policy in {origin}: {source}"),
        (None, _) if names_its_file => format!("invalid policy in {source}"),
        (None, _) => format!("invalid policy: {source}"),
    }
}

impl From<PolicyError> for Error {
    /// A policy error from [`devenv_shared::model::policy::Policy::load`], which names the file.
    fn from(source: PolicyError) -> Self {
        Error::Policy {
            origin: None,
            source,
        }
    }
}

/// The user name out of an RBAC denial: `... User "alice" cannot create ...`.
fn rbac_user(message: &str) -> Option<String> {
    let start = message.find("User \"")? + "User \"".len();
    let len = message[start..].find('"')?;
    Some(message[start..start + len].to_owned())
}

/// Turns an API error status into what the user should read.
pub fn from_status(status: &Status, call: &ApiCall) -> Error {
    let message = status.message.clone();
    let lower = message.to_lowercase();
    let kind = call.kind.to_owned();
    let name = call.name.clone().unwrap_or_default();
    // Webhook answers first: they come with any code (the webhook chooses it).
    if lower.contains("admission webhook") && lower.contains("denied the request") {
        return Error::WebhookDenied { message };
    }
    if lower.contains("failed calling webhook") {
        return Error::WebhookUnavailable { message };
    }
    if lower.contains("exceeded quota") {
        return Error::QuotaExceeded { message };
    }
    match status.code {
        401 => Error::Unauthorized {
            server: String::new(),
            message,
        },
        403 if lower.contains("cannot ") => Error::Forbidden {
            verb: call.verb.to_owned(),
            resource: call.resource.to_owned(),
            namespace: call.namespace.clone(),
            user: rbac_user(&message)
                .map(|u| format!("user {u:?}"))
                .unwrap_or_else(|| "you".to_owned()),
        },
        404 => Error::NotFound {
            hint: if call.kind == "workspace" {
                "list workspaces with: kubectl devenv list (-A for all namespaces)".to_owned()
            } else if call.kind == "tenant" {
                "list tenants with: kubectl devenv tenant list".to_owned()
            } else {
                "check the name and the namespace (-n)".to_owned()
            },
            kind,
            name,
            where_: call.where_(),
        },
        409 if status.reason == "AlreadyExists" => Error::AlreadyExists {
            kind,
            name,
            namespace: call.namespace.clone().unwrap_or_default(),
        },
        409 if lower.contains("has been modified") => Error::Other(anyhow::anyhow!(
            "{} {name:?} changed while it was being updated; run the command again",
            call.kind
        )),
        409 => Error::Conflict {
            verb: call.verb.to_owned(),
            kind,
            name,
            message,
        },
        422 => Error::Invalid {
            kind,
            name,
            message,
        },
        code => Error::Api {
            verb: call.verb.to_owned(),
            resource: call.resource.to_owned(),
            code,
            reason: status.reason.clone(),
            message,
        },
    }
}

/// Turns any client error into what the user should read. `server` is the API
/// server URL, named when it cannot be reached.
pub fn from_kube(err: kube::Error, call: &ApiCall, server: &str) -> Error {
    match err {
        kube::Error::Api(status) => match from_status(&status, call) {
            Error::Unauthorized { message, .. } => Error::Unauthorized {
                server: server.to_owned(),
                message,
            },
            other => other,
        },
        kube::Error::HyperError(e) => Error::Unreachable {
            server: server.to_owned(),
            detail: chain(&e),
        },
        kube::Error::Service(e) => Error::Unreachable {
            server: server.to_owned(),
            detail: chain(e.as_ref()),
        },
        kube::Error::Auth(e) => Error::Unauthorized {
            server: server.to_owned(),
            message: chain(&e),
        },
        other => Error::Other(anyhow::anyhow!(
            "{} {}: {}",
            call.verb,
            call.resource,
            chain(&other)
        )),
    }
}

/// An error with its sources, `a: b: c`, so the root cause (connection
/// refused, certificate unknown) is visible.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, reason: &str, message: &str) -> Status {
        let mut s = Status::failure(message, reason);
        s.code = code;
        s
    }

    fn create_sts() -> ApiCall {
        ApiCall::new("create", "statefulsets.apps", "workspace")
            .ns("team")
            .name("demo")
    }

    #[test]
    fn rbac_denial_names_verb_resource_namespace_and_user() {
        let e = from_status(
            &status(
                403,
                "Forbidden",
                r#"statefulsets.apps "demo" is forbidden: User "alice" cannot create resource "statefulsets" in API group "apps" in the namespace "team""#,
            ),
            &create_sts(),
        );
        let text = e.to_string();
        assert!(matches!(e, Error::Forbidden { .. }), "{e:?}");
        assert!(
            text.contains(r#"user "alice" cannot create statefulsets.apps in namespace "team""#),
            "{text}"
        );
        assert!(
            text.contains("kubectl auth can-i create statefulsets.apps -n team"),
            "{text}"
        );
    }

    #[test]
    fn quota_is_not_reported_as_rbac() {
        let e = from_status(
            &status(
                403,
                "Forbidden",
                r#"pods "demo-0" is forbidden: exceeded quota: compute, requested: limits.cpu=2, used: limits.cpu=5, limited: limits.cpu=6"#,
            ),
            &create_sts(),
        );
        assert!(matches!(e, Error::QuotaExceeded { .. }), "{e:?}");
        assert!(e.to_string().contains("requested: limits.cpu=2"));
    }

    #[test]
    fn webhook_denial_carries_its_message() {
        let e = from_status(
            &status(
                400,
                "BadRequest",
                r#"admission webhook "statefulsets.validate.devenv.io" denied the request: tier "huge" is not defined"#,
            ),
            &create_sts(),
        );
        assert!(matches!(e, Error::WebhookDenied { .. }), "{e:?}");
        assert!(e.to_string().contains(r#"tier "huge" is not defined"#));
    }

    #[test]
    fn unreachable_webhook_points_to_status() {
        let e = from_status(
            &status(
                500,
                "InternalError",
                r#"Internal error occurred: failed calling webhook "pods.mutate.devenv.io": connection refused"#,
            ),
            &create_sts(),
        );
        assert!(e.to_string().contains("kubectl devenv status"), "{e}");
    }

    #[test]
    fn name_taken_and_not_found() {
        let e = from_status(&status(409, "AlreadyExists", "exists"), &create_sts());
        assert!(
            e.to_string()
                .contains(r#"workspace "demo" already exists in namespace "team""#),
            "{e}"
        );
        let e = from_status(&status(404, "NotFound", "not found"), &create_sts());
        assert!(
            e.to_string()
                .contains(r#"workspace "demo" not found in namespace "team""#),
            "{e}"
        );
        assert!(e.to_string().contains("kubectl devenv list"));
        let e = from_status(
            &status(404, "NotFound", "not found"),
            &ApiCall::new("get", "namespaces", "tenant").name("team-a"),
        );
        assert_eq!(
            e.to_string(),
            "tenant \"team-a\" not found in cluster scope\n  list tenants with: kubectl devenv tenant list"
        );
    }

    #[test]
    fn apply_conflict_and_invalid() {
        let e = from_status(
            &status(409, "Conflict", "Apply failed with 1 conflict"),
            &create_sts(),
        );
        assert!(matches!(e, Error::Conflict { .. }), "{e:?}");
        let e = from_status(
            &status(422, "Invalid", "spec.replicas: Invalid value"),
            &create_sts(),
        );
        assert!(e.to_string().contains("spec.replicas: Invalid value"));
    }

    #[test]
    fn unauthorized_names_the_server() {
        let e = from_kube(
            kube::Error::Api(status(401, "Unauthorized", "Unauthorized").boxed()),
            &create_sts(),
            "https://10.0.0.1:6443",
        );
        assert!(e.to_string().contains("https://10.0.0.1:6443"), "{e}");
    }

    #[test]
    fn exit_codes() {
        assert_eq!(Error::Usage("x".into()).exit_code(), 2);
        assert_eq!(Error::Tenant(TenantError::NoSubjects).exit_code(), 2);
        assert_eq!(
            Error::QuotaExceeded {
                message: String::new()
            }
            .exit_code(),
            1
        );
    }
}
