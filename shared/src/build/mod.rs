//! The build floor: every Kubernetes object the project creates, built in one place each,
//! as pure functions of a spec and the policy. `kubectl devenv create` sends exactly what
//! [`workspace::build`] returns and `--dry-run=client` prints exactly that; `install`
//! likewise with [`install::build`], and `tenant add` with [`tenant::build`]. [`ssh`]
//! holds what SSH access writes: authorized_keys, known_hosts and ssh config blocks.

pub mod backup;
pub mod certs;
pub mod claims;
pub mod images;
pub mod install;
pub mod resize;
pub mod snapshot;
pub mod ssh;
pub mod tenant;
pub mod workspace;
