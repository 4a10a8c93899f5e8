//! The one duration grammar of the project: the policy file (`idleTimeout: 8h`), the
//! workspace annotations (`devenv.io/idle-timeout`) and every command-line flag
//! (`--idle-timeout 2h`, `--timeout 5m`) read durations through [`parse_duration`].
//!
//! Whole numbers each followed by a unit `d`, `h`, `m` or `s`, largest unit first, each
//! at most once (`1h30m`, `90s`, `7d`); `0` alone needs no unit. A bare `45` is refused
//! with a hint rather than guessed at: it would be 45 seconds to some readers and 45
//! minutes to others, and kubectl's own duration flags refuse it too.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Serializer;

/// A duration that could not be parsed; names the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {value:?}: {reason}")]
pub struct DurationError {
    /// The text as given.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Parses `2h`, `90m`, `1h30m`, `45s`, `7d`, `0` (units `d`, `h`, `m`, `s`, whole
/// numbers, largest unit first, each unit at most once). `0`, `0s`, `0m`... are
/// [`Duration::ZERO`], which the lifecycle settings read as "never".
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let err = |reason: &str| DurationError {
        value: text.to_string(),
        reason: reason.to_string(),
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(err("empty; use e.g. 2h, 30m, 1h30m, 45s or 0 for never"));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.starts_with('-') {
        return Err(err("negative durations are not allowed"));
    }
    let mut total: u64 = 0;
    let mut last_rank = usize::MAX;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            let c = rest.chars().next().unwrap_or(' ');
            return Err(err(&format!(
                "unexpected {c:?}: write whole numbers each followed by a unit d, h, m or s, e.g. 1h30m"
            )));
        }
        let (number, tail) = rest.split_at(digits);
        let n: u64 = number.parse().map_err(|_| err("number too large"))?;
        let mut chars = tail.chars();
        let unit = match chars.next() {
            Some(c) => c,
            None => {
                return Err(err(&format!(
                    "missing unit after {number}: write e.g. {number}s or {number}m (units d, h, m, s)"
                )));
            }
        };
        let (rank, seconds) = match unit {
            'd' => (0, 86_400),
            'h' => (1, 3_600),
            'm' => (2, 60),
            's' => (3, 1),
            '.' => return Err(err("fractions are not supported; use e.g. 1h30m")),
            other => {
                return Err(err(&format!(
                    "unknown unit {other:?} (use d, h, m or s, e.g. 1h30m)"
                )))
            }
        };
        if last_rank != usize::MAX && rank <= last_rank {
            return Err(err(
                "units must go from largest to smallest, each at most once (e.g. 1h30m)",
            ));
        }
        last_rank = rank;
        total = n
            .checked_mul(seconds)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| err("duration too large"))?;
        rest = chars.as_str();
    }
    Ok(Duration::from_secs(total))
}

/// Formats a duration the way [`parse_duration`] reads it: `0`, `45s`, `1h30m`, `7d`.
/// Sub-second parts are dropped.
pub fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0".to_string();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        let n = secs / size;
        if n > 0 {
            out.push_str(&n.to_string());
            out.push_str(unit);
            secs %= size;
        }
    }
    out
}

/// Parses an "optional" duration: `0` means `None` (never / off).
pub fn parse_optional_duration(text: &str) -> Result<Option<Duration>, DurationError> {
    parse_duration(text).map(|d| if d.is_zero() { None } else { Some(d) })
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a duration such as 8h, 30m, 1h30m, 45s, or 0")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse_duration(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        if v == 0 {
            Ok(Duration::ZERO)
        } else {
            Err(E::custom(format!(
                "invalid duration {v}: a unit is required (e.g. {v}m or {v}h); only 0 may go without"
            )))
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(format!(
                "invalid duration {v}: negative durations are not allowed"
            ))),
        }
    }
}

/// Serde for a `Duration` written as a duration string (`warningBefore: 10m`).
pub mod plain_duration {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(DurationVisitor)
    }
}

/// Serde for an `Option<Duration>` where `0` means `None` (never / off).
pub mod optional_duration {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(d.unwrap_or(Duration::ZERO)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let d = d.deserialize_any(DurationVisitor)?;
        Ok(if d.is_zero() { None } else { Some(d) })
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
    fn parses_durations() {
        for (text, secs) in [
            ("2h", 7200),
            ("90m", 5400),
            ("1h30m", 5400),
            ("45s", 45),
            ("0", 0),
            ("0s", 0),
            ("0m", 0),
            ("7d", 7 * 86_400),
            ("1d2h3m4s", 86_400 + 7200 + 180 + 4),
            (" 30m ", 1800),
            ("100000h", 360_000_000),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
    }

    #[test]
    fn duration_errors_name_the_value() {
        for (text, why) in [
            ("", "empty"),
            ("2x", "unknown unit 'x'"),
            ("2", "missing unit"),
            ("h", "unexpected 'h'"),
            ("1.5h", "fractions"),
            ("-5m", "negative"),
            ("30m1h", "largest to smallest"),
            ("1h1h", "largest to smallest"),
            ("2 h", "unknown unit ' '"),
            ("99999999999999999999s", "too large"),
            ("9999999999999999d", "too large"),
            ("2hours", "unexpected 'o'"),
        ] {
            let err = parse_duration(text).unwrap_err();
            assert_eq!(err.value, text);
            let msg = err.to_string();
            assert!(msg.contains(&format!("{text:?}")), "{msg}");
            assert!(msg.contains(why), "{text}: {msg}");
        }
    }

    #[test]
    fn formats_durations_round_trip() {
        for text in ["0", "45s", "1h30m", "8h", "7d", "1d2h3m4s", "10m"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(format_duration(d), text);
        }
        assert_eq!(format_duration(mins(90)), "1h30m");
        assert_eq!(format_duration(Duration::from_millis(500)), "0");
    }

    #[test]
    fn optional_duration_zero_is_never() {
        assert_eq!(parse_optional_duration("0"), Ok(None));
        assert_eq!(parse_optional_duration("0h"), Ok(None));
        assert_eq!(parse_optional_duration("2h"), Ok(Some(hours(2))));
        assert!(parse_optional_duration("soon").is_err());
    }
}
