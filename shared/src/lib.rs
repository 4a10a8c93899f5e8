//! What `kubectl-devenv` and `devenv-webhook` share: the workspace policy, the
//! admission decisions (pure functions: pod -> patch, pod -> violations), the
//! builders of every Kubernetes object the project creates, and certificates.
//!
//! The binaries are thin I/O shells around this crate.

pub mod admission;
pub mod certs;
pub mod install;
pub mod keys;
pub mod lifecycle;
pub mod mutate;
pub mod objects;
pub mod policy;
pub mod pss;
pub mod quantity;
pub mod validate;
pub mod workspace;
