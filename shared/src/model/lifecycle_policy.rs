//! The `lifecycle:` section of the workspace policy: idle hibernation and expiry.
//! Read as part of the whole policy ([`crate::model::policy::Policy`]); the lifecycle
//! controller and the webhook read the same file through the same loader.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::duration::{optional_duration, plain_duration};

/// Default idle timeout: a working day. Hibernation keeps the claims and
/// `kubectl devenv start` restores the workspace, so the default can be on.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(8 * 3600);
/// Default time between the idle warning and the stop.
pub const DEFAULT_WARNING_BEFORE: Duration = Duration::from_secs(10 * 60);

/// The `lifecycle:` section of the workspace policy.
///
/// ```yaml
/// lifecycle:
///   idleTimeout: 8h            # 0 = never hibernate idle workspaces
///   warningBefore: 10m         # warning shown this long before the stop
///   stoppedTtl: 0              # delete workspaces stopped longer than this; 0 = never
///   purgeOnExpiry: false       # also delete their volume claims (data!)
///   cpuActiveMillicores: 200   # busy above this CPU usage counts as activity; absent = off
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LifecyclePolicy {
    /// Hibernate a workspace idle this long (default 8h, [`DEFAULT_IDLE_TIMEOUT`]); `None` (`0`) = never.
    #[serde(with = "optional_duration")]
    pub idle_timeout: Option<Duration>,
    /// Warn this long before the stop (default 10m); capped at half the idle timeout.
    #[serde(with = "plain_duration")]
    pub warning_before: Duration,
    /// Delete workspaces stopped (or hibernated) longer than this; `None` (`0`, the default) = never.
    #[serde(with = "optional_duration")]
    pub stopped_ttl: Option<Duration>,
    /// On expiry, also delete the workspace's volume claims (default false: they are kept).
    pub purge_on_expiry: bool,
    /// A workspace using at least this much CPU (metrics.k8s.io) at decision time
    /// counts as active; `None` (the default) = rule off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_active_millicores: Option<u64>,
}

impl Default for LifecyclePolicy {
    fn default() -> Self {
        Self {
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            warning_before: DEFAULT_WARNING_BEFORE,
            stopped_ttl: None,
            purge_on_expiry: false,
            cpu_active_millicores: None,
        }
    }
}

impl LifecyclePolicy {
    /// Values that parse but make no sense, as (field within the section, message).
    /// [`crate::model::policy::Policy::validate`] reports them as `lifecycle.<field>`.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.warning_before.is_zero() {
            out.push((
                "warningBefore",
                "must be more than 0: a workspace is never stopped without a warning first"
                    .to_string(),
            ));
        }
        if self.cpu_active_millicores == Some(0) {
            out.push((
                "cpuActiveMillicores",
                "0 would count every workspace as always active; use idleTimeout: 0 to never hibernate, or leave cpuActiveMillicores out".to_string(),
            ));
        }
        out
    }

    /// Time between warning and stop for a given idle timeout.
    pub fn lead(&self, timeout: Duration) -> Duration {
        self.warning_before.min(timeout / 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn mins(m: u64) -> Duration {
        Duration::from_secs(m * 60)
    }

    const fn hours(h: u64) -> Duration {
        Duration::from_secs(h * 3600)
    }

    #[test]
    fn policy_defaults() {
        let p = LifecyclePolicy::default();
        assert_eq!(p.idle_timeout, Some(hours(8)));
        assert_eq!(p.warning_before, mins(10));
        assert_eq!(p.stopped_ttl, None);
        assert!(!p.purge_on_expiry);
        assert_eq!(p.cpu_active_millicores, None);
        let empty: LifecyclePolicy = serde_yaml::from_str("{}").unwrap();
        assert_eq!(empty, p);
    }

    #[test]
    fn policy_parses_yaml() {
        let p: LifecyclePolicy = serde_yaml::from_str(
            "idleTimeout: 2h\nwarningBefore: 5m\nstoppedTtl: 7d\npurgeOnExpiry: true\ncpuActiveMillicores: 200\n",
        )
        .unwrap();
        assert_eq!(
            p,
            LifecyclePolicy {
                idle_timeout: Some(hours(2)),
                warning_before: mins(5),
                stopped_ttl: Some(hours(168)),
                purge_on_expiry: true,
                cpu_active_millicores: Some(200),
            }
        );
        let off: LifecyclePolicy =
            serde_yaml::from_str("idleTimeout: 0\nstoppedTtl: \"0\"").unwrap();
        assert_eq!(off.idle_timeout, None);
        assert_eq!(off.stopped_ttl, None);
    }

    #[test]
    fn policy_rejects_bad_values() {
        for (yaml, want) in [
            ("idleTimeout: 8", "a unit is required"),
            ("idleTimeout: 8x", "\"8x\""),
            ("warningBefore: -1", "negative"),
            ("idleTimout: 2h", "unknown field"),
        ] {
            let err = serde_yaml::from_str::<LifecyclePolicy>(yaml)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{yaml}: {err}");
        }
        let zero = LifecyclePolicy {
            warning_before: Duration::ZERO,
            cpu_active_millicores: Some(0),
            ..Default::default()
        };
        let fields: Vec<_> = zero.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, vec!["warningBefore", "cpuActiveMillicores"]);
    }

    #[test]
    fn policy_serializes_back() {
        let p = LifecyclePolicy {
            stopped_ttl: Some(hours(24 * 30)),
            ..Default::default()
        };
        let yaml = serde_yaml::to_string(&p).unwrap();
        assert!(yaml.contains("idleTimeout: 8h"), "{yaml}");
        assert!(yaml.contains("stoppedTtl: 30d"), "{yaml}");
        assert_eq!(serde_yaml::from_str::<LifecyclePolicy>(&yaml).unwrap(), p);
        let none = LifecyclePolicy {
            idle_timeout: None,
            ..Default::default()
        };
        let yaml = serde_yaml::to_string(&none).unwrap();
        assert!(yaml.contains("idleTimeout: '0'"), "{yaml}");
        assert_eq!(
            serde_yaml::from_str::<LifecyclePolicy>(&yaml).unwrap(),
            none
        );
    }

    #[test]
    fn lead_is_capped_at_half_the_timeout() {
        let p = LifecyclePolicy::default();
        assert_eq!(p.lead(hours(8)), mins(10));
        assert_eq!(p.lead(mins(10)), mins(5));
        assert_eq!(p.lead(Duration::from_secs(30)), Duration::from_secs(15));
    }
}
