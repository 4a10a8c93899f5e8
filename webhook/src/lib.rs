//! `devenv-webhook`: two programs in one binary around the pure decisions of
//! `devenv_shared`.
//!
//! * [`server`] (`devenv-webhook serve`): the admission webhook that makes every devenv
//!   workspace pod non-root, sized, persistent and supplied with its secrets: an HTTPS
//!   server (rustls, HTTP/2 and HTTP/1.1), and — when it has Kubernetes API access — a cache
//!   of the injectable Secrets, workspace StatefulSets, claims and workspace pods.
//! * [`controller`] (`devenv-webhook lifecycle`): the lifecycle controller that warns,
//!   hibernates and expires idle workspaces, one replica at a time through a Lease.
//!
//! What both use: [`cli`] (every option, logging), [`reload`] (one [`reload::FileReloader`]
//! behind the certificate and the policy file), [`policy`] (the one reader of the policy
//! file), [`metrics_http`] (the one plain-HTTP `/metrics` server) and [`signal`].
//!
//! [`router`] serves an [`AppState`] in process (tests, benchmarks); [`serve`] runs the whole
//! admission server until SIGTERM/SIGINT.

#![forbid(unsafe_code)]

pub mod cli;
pub mod controller;
pub mod metrics_http;
pub mod policy;
pub mod reload;
pub mod server;
pub mod signal;

pub use server::app::{router, AppState, AppStateBuilder, RequestLimits, MAX_BODY_BYTES};
pub use server::{serve, KubeMode, ServeConfig, Server, ServerLimits};
pub use signal::shutdown_signal;
