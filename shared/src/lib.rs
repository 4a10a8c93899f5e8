//! What `kubectl-devenv` and `devenv-webhook` share. Pure: no I/O, no clock (callers pass
//! `now`), outside knowledge only through traits. The binaries are thin I/O shells.
//!
//! Four floors; every arrow points down:
//!
//! 1. [`model`]: the policy file, quantities, durations, times, names and keys.
//! 2. [`build`]: every object the project creates (workspaces, claims, the install,
//!    certificates), from a spec and the policy.
//! 3. [`admission`]: pod → patch and pod → violations, and one AdmissionReview → decision.
//! 4. [`lifecycle`]: a workspace's state → the next step (warn, hibernate, expire), and
//!    the patches and events that carry it out.

#![forbid(unsafe_code)]

pub mod admission;
pub mod build;
pub mod lifecycle;
pub mod model;
