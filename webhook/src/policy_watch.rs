//! The policy file, reloaded on change into an [`ArcSwap`]: requests load the current policy
//! without a lock; a bad file never replaces a good policy.

use crate::metrics::{Metrics, ReloadResult};
use arc_swap::ArcSwap;
use devenv_shared::policy::Policy;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Polls a policy file and swaps in every good new version.
#[derive(Debug)]
pub struct PolicyReloader {
    path: PathBuf,
    target: Arc<ArcSwap<Policy>>,
    /// Contents of the last attempt (good or bad), so nothing is reparsed or re-logged
    /// while the file stays the same.
    last: Vec<u8>,
    read_failing: bool,
}

impl PolicyReloader {
    /// Loads `path` now. A missing or bad file is an error: the webhook refuses to start
    /// rather than run with a policy nobody wrote.
    pub fn load(path: PathBuf) -> anyhow::Result<Self> {
        let bytes = std::fs::read(&path)
            .map_err(|e| anyhow::anyhow!("cannot read the policy file {}: {e}", path.display()))?;
        let policy = parse(&path, &bytes)?;
        let reloader = PolicyReloader {
            path,
            target: Arc::new(ArcSwap::from_pointee(policy)),
            last: bytes,
            read_failing: false,
        };
        Ok(reloader)
    }

    /// The policy in force, updated by every good reload (share it with the handlers).
    pub fn shared(&self) -> Arc<ArcSwap<Policy>> {
        self.target.clone()
    }

    /// Rereads the file once. Returns whether a new policy is now in force.
    pub async fn check(&mut self, metrics: &Metrics) -> bool {
        let bytes = match tokio::fs::read(&self.path).await {
            Ok(b) => {
                self.read_failing = false;
                b
            }
            Err(e) => {
                if !self.read_failing {
                    tracing::error!(path = %self.path.display(), error = %e,
                        "cannot reread the policy file; keeping the last good policy");
                    self.read_failing = true;
                    metrics.policy_reload(ReloadResult::Error);
                }
                return false;
            }
        };
        if bytes == self.last {
            return false;
        }
        let parsed = parse(&self.path, &bytes);
        self.last = bytes;
        match parsed {
            Ok(policy) => {
                self.target.store(Arc::new(policy));
                metrics.policy_reload(ReloadResult::Ok);
                tracing::info!(path = %self.path.display(), "policy reloaded");
                true
            }
            Err(e) => {
                metrics.policy_reload(ReloadResult::Error);
                tracing::error!(path = %self.path.display(), error = %e,
                    "new policy is invalid; keeping the last good policy");
                false
            }
        }
    }

    /// Polls every `interval` for ever.
    pub async fn run(mut self, interval: Duration, metrics: Arc<Metrics>) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            self.check(&metrics).await;
        }
    }
}

fn parse(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<Policy> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| anyhow::anyhow!("{}: policy file is not UTF-8: {e}", path.display()))?;
    Policy::from_yaml(text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}
