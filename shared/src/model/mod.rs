//! The bottom floor: what the product's words mean, with no knowledge of admission,
//! objects or lifecycle. The policy file, Kubernetes quantities, durations and times,
//! name rules, and the label and annotation keys. Imports nothing else of the crate.

pub mod duration;
pub mod keys;
pub mod lifecycle_policy;
pub mod names;
pub mod policy;
pub mod quantity;
pub mod snapshot;
pub mod time;
