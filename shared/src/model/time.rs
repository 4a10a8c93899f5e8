//! Times as the lifecycle annotations write them (RFC 3339, UTC, whole seconds), and the
//! saturating arithmetic the lifecycle rules do on them. No clock: callers pass `now`.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

/// An annotation value that is not an RFC 3339 time; names the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid time {value:?} (want RFC 3339, e.g. 2025-01-31T17:00:00Z): {reason}")]
pub struct TimeError {
    /// The text as given.
    pub value: String,
    /// What the RFC 3339 parser said.
    pub reason: String,
}

/// Formats a time for an annotation: RFC 3339, UTC, whole seconds.
pub fn format_time(t: Timestamp) -> String {
    format!("{:.0}", t)
}

/// Parses an RFC 3339 annotation value (e.g. `2025-01-31T17:00:00Z`).
pub fn parse_time(text: &str) -> Result<Timestamp, TimeError> {
    text.trim().parse::<Timestamp>().map_err(|e| TimeError {
        value: text.to_string(),
        reason: e.to_string(),
    })
}

/// `t + d`, saturating at the end of time.
pub fn add(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(d).unwrap_or(Timestamp::MAX)
}

/// `t - d`, saturating at the beginning of time.
pub(crate) fn sub(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_sub(d).unwrap_or(Timestamp::MIN)
}

/// `later - earlier`, zero when `later` is not after `earlier`.
pub(crate) fn until(earlier: Timestamp, later: Timestamp) -> Duration {
    Duration::try_from(later.duration_since(earlier)).unwrap_or(Duration::ZERO)
}

/// Rounds up to the next whole second, so that a stop time written to an
/// annotation (whole seconds) is never earlier than the one decided.
pub(crate) fn ceil_second(t: Timestamp) -> Timestamp {
    if t.subsec_nanosecond() == 0 {
        t
    } else {
        Timestamp::from_second(t.as_second().saturating_add(1)).unwrap_or(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_whole_seconds() {
        let t = parse_time("2025-01-31T17:00:00Z").unwrap_or(Timestamp::MIN);
        assert_eq!(format_time(t), "2025-01-31T17:00:00Z");
        assert_eq!(
            parse_time(" 2025-01-31T17:00:00Z ").map(format_time),
            Ok("2025-01-31T17:00:00Z".to_string())
        );
    }

    #[test]
    fn bad_times_name_the_value() {
        let e = parse_time("yesterday")
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert!(
            matches!(&e, Err(m) if m.starts_with("invalid time \"yesterday\" (want RFC 3339")),
            "{e:?}"
        );
    }

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(add(Timestamp::MAX, Duration::from_secs(1)), Timestamp::MAX);
        assert_eq!(sub(Timestamp::MIN, Duration::from_secs(1)), Timestamp::MIN);
        assert_eq!(until(Timestamp::MAX, Timestamp::MIN), Duration::ZERO);
    }
}
