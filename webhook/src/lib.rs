//! `devenv-webhook`: the admission webhook that makes every devenv workspace pod non-root,
//! sized, persistent and supplied with its secrets.
//!
//! The decisions themselves are pure functions in `devenv_shared::admission`; this crate is
//! the I/O around them: an HTTPS server (rustls, HTTP/2 and HTTP/1.1) with hot certificate
//! and policy reloads, metrics, and — when it has Kubernetes API access — a cache of the
//! injectable Secrets and the claims of bare workspace pods.
//!
//! [`router`] serves an [`AppState`] in process (tests, benchmarks); [`serve`] runs the whole
//! server until SIGTERM/SIGINT.

pub mod app;
pub mod cli;
pub mod cluster;
pub mod lifecycle;
pub mod metrics;
pub mod policy_watch;
pub mod server;
pub mod tls;

pub use app::{router, AppState, AppStateBuilder, RequestLimits, MAX_BODY_BYTES};
pub use server::{serve, shutdown_signal, KubeMode, ServeConfig, Server, ServerLimits};
