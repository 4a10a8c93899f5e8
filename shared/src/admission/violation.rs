//! What the admission rules say when they refuse, and the one piece of outside knowledge
//! they need: which Secrets a namespace offers to workspaces.

use std::fmt;

/// One reason a workspace is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Field path, e.g. `spec.containers[0].securityContext.privileged`.
    pub field: String,
    /// What rule is broken and what to do about it.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Which Secrets beyond the policy's `secrets.inject` a workspace may use.
///
/// The webhook implements it with a reflector of Secrets labelled `devenv.io/inject=true`.
pub trait SecretCatalog {
    fn is_injectable(&self, namespace: &str, name: &str) -> bool;
}

/// No Secret is injectable beyond the policy's `secrets.inject` (what the webhook uses
/// when it has no API access, and tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoExtraSecrets;

impl SecretCatalog for NoExtraSecrets {
    fn is_injectable(&self, _namespace: &str, _name: &str) -> bool {
        false
    }
}

/// Any `Fn(namespace, name) -> bool` is a catalog (handy in tests and small tools).
impl<F: Fn(&str, &str) -> bool> SecretCatalog for F {
    fn is_injectable(&self, namespace: &str, name: &str) -> bool {
        self(namespace, name)
    }
}
