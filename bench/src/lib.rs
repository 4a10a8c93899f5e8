//! Load generation, fixtures and TLS helpers for benchmarking and fault-testing
//! `devenv-webhook`.
//!
//! The load generator speaks HTTP/1.1 with keep-alive over rustls, hand-rolled
//! so that the client costs as little CPU as possible: on a 2-core machine it
//! shares the cores with the webhook it measures. Like the API server it keeps
//! N connections open and sends one request at a time on each, either as fast
//! as the webhook answers (closed loop, for throughput) or at a fixed rate
//! (open loop, for latency; corrected for coordinated omission).
//!
//! The same code backs the `devenv-loadgen` binary and the fault tests in
//! `tests/faults.rs`, which drive load in-process.

pub mod fixture;
pub mod http;
pub mod load;
pub mod rss;
pub mod tls;

pub use fixture::{Fixture, RequestTemplate};
pub use load::{run, Expect, LoadConfig, Report, ReviewView, Target};
