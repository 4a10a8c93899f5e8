//! The admission floor: pure decisions about workspace pods and StatefulSets.
//!
//! * [`request`] turns one AdmissionReview request into a [`request::Decision`]: which
//!   object it is about, whether it is a workspace, what to patch or why to refuse.
//! * [`mutate`] is pod → patch (securityContext, tier resources, volumes, Secrets);
//!   [`validate`] is pod → violations: the Pod Security `restricted` profile ([`pss`])
//!   plus the workspace rules (tier, resources, Secrets).
//! * [`ownership`] pins a workspace's pods, StatefulSet and claims to the workspace and its
//!   owner, with [`access`] (who is asking) and [`catalog`] (what the cluster holds).
//! * [`references`] lists every Secret, claim and token a pod spec reaches; [`containers`] is
//!   the one walk over a pod's three container lists; [`violation`] the words of a refusal;
//!   [`review`] reads the request body fast.
//!
//! A new rule goes in [`validate`] (a workspace rule) or [`pss`] (a Pod Security check),
//! with its default, if it has one, in [`mutate`].

pub mod access;
pub mod catalog;
pub mod containers;
pub mod mutate;
pub mod ownership;
pub mod pss;
pub mod references;
pub mod request;
pub mod review;
pub mod validate;
pub mod violation;
