//! Kubernetes resource quantities (`500m`, `2Gi`, `1e3`), parsed exactly enough to compare them.
//!
//! The policy states tier sizes and pods state requests and limits as quantity strings; the
//! webhook has to compare the two (`requests <= limits`, "above the tier's limit") without
//! floating point surprises, so a quantity is kept as an integer number of nano-units
//! (10^-9 of the base unit). That covers everything Kubernetes itself can represent at the
//! precision that matters here: cpu is never finer than 1m and memory never finer than 1 byte.
//!
//! Grammar (from `k8s.io/apimachinery/pkg/api/resource`):
//!
//! ```text
//! quantity        ::= signedNumber suffix
//! signedNumber    ::= number | sign number
//! sign            ::= "+" | "-"
//! number          ::= digits | digits "." digits | digits "." | "." digits
//! suffix          ::= binarySI | decimalExponent | decimalSI
//! binarySI        ::= Ki | Mi | Gi | Ti | Pi | Ei
//! decimalSI       ::= n | u | m | "" | k | M | G | T | P | E
//! decimalExponent ::= "e" signedNumber | "E" signedNumber
//! ```

use std::cmp::Ordering;
use std::fmt;

/// Nano-units per unit.
const NANO: i128 = 1_000_000_000;

/// Why a string is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("empty quantity")]
    Empty,
    #[error("{0:?} is not a Kubernetes quantity")]
    Syntax(String),
    #[error("{0:?} is too large to be a Kubernetes quantity")]
    TooLarge(String),
}

/// An exact, comparable quantity: the value times 10^9, rounded up (away from zero) like
/// Kubernetes rounds sub-precision values up rather than to zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Quantity {
    nanos: i128,
}

impl Quantity {
    /// Parses a Kubernetes quantity string. Never panics: malformed, overflowing or otherwise
    /// hostile input is an error.
    pub fn parse(input: &str) -> Result<Quantity, QuantityError> {
        if input.is_empty() {
            return Err(QuantityError::Empty);
        }
        let syntax = || QuantityError::Syntax(input.to_string());
        let too_large = || QuantityError::TooLarge(input.to_string());

        let (negative, rest) = split_sign(input);
        // The number is the longest prefix of digits and at most one dot.
        let number_len = rest
            .bytes()
            .position(|b| !(b.is_ascii_digit() || b == b'.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(number_len);
        let (int_part, frac_part) = match number.split_once('.') {
            Some((i, f)) => (i, f),
            None => (number, ""),
        };
        if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
            return Err(syntax());
        }

        // Trailing zeros of the fraction carry no value; dropping them keeps "1.000000000000"
        // from overflowing the mantissa.
        let frac_part = frac_part.trim_end_matches('0');
        let mut mantissa: u128 = 0;
        for b in int_part.bytes().chain(frac_part.bytes()) {
            let digit = u128::from(b - b'0');
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(digit))
                .ok_or_else(too_large)?;
        }
        let frac_len = i64::try_from(frac_part.len()).map_err(|_| too_large())?;

        let (exp10, exp2) = parse_suffix(suffix).ok_or_else(syntax)?;
        // value = mantissa * 10^(exp10 - frac_len) * 2^exp2; we want value * 10^9.
        let scale10 = exp10
            .checked_sub(frac_len)
            .and_then(|s| s.checked_add(9))
            .ok_or_else(too_large)?;

        let mut value = mantissa
            .checked_mul(pow(2, exp2).ok_or_else(too_large)?)
            .ok_or_else(too_large)?;
        match scale10.cmp(&0) {
            Ordering::Greater | Ordering::Equal => {
                let exp = u32::try_from(scale10).map_err(|_| too_large())?;
                // A zero mantissa stays zero however large the exponent.
                if value != 0 {
                    value = value
                        .checked_mul(pow(10, exp).ok_or_else(too_large)?)
                        .ok_or_else(too_large)?;
                }
            }
            Ordering::Less => {
                let exp = u32::try_from(scale10.unsigned_abs()).unwrap_or(u32::MAX);
                value = match pow(10, exp) {
                    // Round up: 0.1n is 1n, as Kubernetes rounds up to its precision.
                    Some(divisor) => value.div_ceil(divisor),
                    // The divisor exceeds any representable mantissa: the value is below one
                    // nano-unit, so it rounds up to one (or stays zero).
                    None => u128::from(value != 0),
                };
            }
        }
        let nanos = i128::try_from(value).map_err(|_| too_large())?;
        Ok(Quantity {
            nanos: if negative { -nanos } else { nanos },
        })
    }

    /// Zero.
    pub const ZERO: Quantity = Quantity { nanos: 0 };

    /// The value in thousandths of the unit (millicores for cpu), rounded up.
    pub fn millis(&self) -> i128 {
        div_ceil_signed(self.nanos, NANO / 1000)
    }

    /// The value in whole units (bytes for memory), rounded up.
    pub fn units(&self) -> i128 {
        div_ceil_signed(self.nanos, NANO)
    }

    /// True when the value is below zero.
    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// True when the value is zero.
    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// `self * n`, or `None` when the product does not fit.
    pub fn checked_mul(self, n: u64) -> Option<Quantity> {
        self.nanos
            .checked_mul(i128::from(n))
            .map(|nanos| Quantity { nanos })
    }

    /// `self + other`, or `None` when the sum does not fit.
    pub fn checked_add(self, other: Quantity) -> Option<Quantity> {
        self.nanos
            .checked_add(other.nanos)
            .map(|nanos| Quantity { nanos })
    }

    /// The quantity as Kubernetes writes memory and storage: with the largest binary
    /// suffix that divides it exactly (`8Gi`, `1536Mi`), else as [`Display`](fmt::Display)
    /// writes it (`3000000000`, `500m`). The text parses back to the same quantity.
    pub fn to_binary_si(&self) -> String {
        const SUFFIXES: [(&str, u32); 6] = [
            ("Ei", 60),
            ("Pi", 50),
            ("Ti", 40),
            ("Gi", 30),
            ("Mi", 20),
            ("Ki", 10),
        ];
        if self.nanos != 0 && self.nanos % NANO == 0 {
            let units = self.nanos / NANO;
            for (suffix, exp) in SUFFIXES {
                let base = 1i128 << exp;
                if units % base == 0 {
                    return format!("{}{suffix}", units / base);
                }
            }
        }
        self.to_string()
    }
}

impl fmt::Display for Quantity {
    /// A canonical-enough rendering for messages: whole units when exact, else millis, else nanos.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos % NANO == 0 {
            write!(f, "{}", self.nanos / NANO)
        } else if self.nanos % (NANO / 1000) == 0 {
            write!(f, "{}m", self.nanos / (NANO / 1000))
        } else {
            write!(f, "{}n", self.nanos)
        }
    }
}

/// Parses a cpu quantity into millicores (`500m` -> 500, `2` -> 2000), rounded up.
pub fn cpu_millicores(input: &str) -> Result<i128, QuantityError> {
    Quantity::parse(input).map(|q| q.millis())
}

/// A CPU usage as the metrics API reports it (`123456789n`, `250m`, `1.5`) in whole
/// millicores, rounded up; `None` for what is not a non-negative quantity.
pub fn usage_millicores(input: &str) -> Option<u64> {
    let q = Quantity::parse(input.trim()).ok()?;
    if q.is_negative() {
        return None;
    }
    u64::try_from(q.millis()).ok()
}

/// Parses a memory (or storage) quantity into bytes (`2Gi` -> 2147483648), rounded up.
pub fn memory_bytes(input: &str) -> Result<i128, QuantityError> {
    Quantity::parse(input).map(|q| q.units())
}

fn split_sign(input: &str) -> (bool, &str) {
    if let Some(rest) = input.strip_prefix('-') {
        (true, rest)
    } else if let Some(rest) = input.strip_prefix('+') {
        (false, rest)
    } else {
        (false, input)
    }
}

/// Returns (power of ten, power of two) of a suffix, or None when it is not one.
fn parse_suffix(suffix: &str) -> Option<(i64, u32)> {
    let decimal = |e: i64| Some((e, 0));
    let binary = |e: u32| Some((0, e));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        _ => {
            // decimalExponent: "e" or "E" followed by a signed integer ("E" alone is exa, above).
            let exponent = suffix.strip_prefix(['e', 'E'])?;
            let (negative, digits) = split_sign(exponent);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // Anything longer than 6 digits is far outside the representable range; treat it
            // as a huge exponent without parsing it into an overflowing integer.
            let magnitude: i64 = if digits.len() > 6 {
                1_000_000
            } else {
                digits.parse().ok()?
            };
            decimal(if negative { -magnitude } else { magnitude })
        }
    }
}

fn pow(base: u128, exp: u32) -> Option<u128> {
    base.checked_pow(exp)
}

fn div_ceil_signed(value: i128, divisor: i128) -> i128 {
    let quotient = value / divisor;
    if value % divisor > 0 {
        quotient + 1
    } else {
        quotient
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_in_millicores() {
        assert_eq!(cpu_millicores("500m"), Ok(500));
        assert_eq!(cpu_millicores("2"), Ok(2000));
        assert_eq!(cpu_millicores("0.5"), Ok(500));
        assert_eq!(cpu_millicores(".5"), Ok(500));
        assert_eq!(cpu_millicores("1."), Ok(1000));
        assert_eq!(cpu_millicores("125m"), Ok(125));
        assert_eq!(cpu_millicores("1e3"), Ok(1_000_000));
        assert_eq!(cpu_millicores("1E3"), Ok(1_000_000));
        assert_eq!(cpu_millicores("1e-3"), Ok(1));
        assert_eq!(cpu_millicores("8000m"), Ok(8000));
        assert_eq!(cpu_millicores("+8"), Ok(8000));
        assert_eq!(cpu_millicores("1k"), Ok(1_000_000));
        // Sub-millicore values round up, as Kubernetes does.
        assert_eq!(cpu_millicores("0.0001"), Ok(1));
        assert_eq!(cpu_millicores("100u"), Ok(1));
        assert_eq!(cpu_millicores("1n"), Ok(1));
        assert_eq!(cpu_millicores("0"), Ok(0));
        assert_eq!(cpu_millicores("0m"), Ok(0));
    }

    #[test]
    fn memory_in_bytes() {
        assert_eq!(memory_bytes("2Gi"), Ok(2 * 1024 * 1024 * 1024));
        assert_eq!(memory_bytes("512Mi"), Ok(512 * 1024 * 1024));
        assert_eq!(memory_bytes("1Ki"), Ok(1024));
        assert_eq!(memory_bytes("1Ti"), Ok(1 << 40));
        assert_eq!(memory_bytes("1Pi"), Ok(1 << 50));
        assert_eq!(memory_bytes("1Ei"), Ok(1 << 60));
        assert_eq!(memory_bytes("1.5Gi"), Ok(3 * 512 * 1024 * 1024));
        assert_eq!(memory_bytes("1G"), Ok(1_000_000_000));
        assert_eq!(memory_bytes("1M"), Ok(1_000_000));
        assert_eq!(memory_bytes("1T"), Ok(1_000_000_000_000));
        assert_eq!(memory_bytes("1P"), Ok(1_000_000_000_000_000));
        assert_eq!(memory_bytes("1E"), Ok(1_000_000_000_000_000_000));
        assert_eq!(memory_bytes("129e6"), Ok(129_000_000));
        assert_eq!(memory_bytes("123"), Ok(123));
        // A fraction of a byte rounds up to a whole byte.
        assert_eq!(memory_bytes("100m"), Ok(1));
        assert_eq!(memory_bytes("1.0000000000000000000000000000000"), Ok(1));
    }

    #[test]
    fn comparisons_across_suffixes() {
        let q = |s| Quantity::parse(s).unwrap_or(Quantity::ZERO);
        assert!(q("500m") < q("2"));
        assert_eq!(q("1"), q("1000m"));
        assert_eq!(q("1Gi"), q("1073741824"));
        assert!(q("1G") < q("1Gi"));
        assert!(q("4Gi") > q("4G"));
        assert_eq!(q("1e3"), q("1k"));
        assert!(q("-1") < q("0"));
        assert!(q("-1").is_negative());
        assert!(q("0.0").is_zero());
    }

    #[test]
    fn rejects_what_is_not_a_quantity() {
        for bad in [
            "", "eight", "8 ", " 8", "8x", "1.2.3", ".", "-", "+", "Gi", "1gi", "1KI", "1ki", "1e",
            "1e+", "1e1.5", "1Mb", "--1", "1..", "0x10", "1_000", "1e3Gi", "١", "8\n",
        ] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(Quantity::parse(""), Err(QuantityError::Empty));
        assert_eq!(
            Quantity::parse("eight").map_err(|e| e.to_string()),
            Err("\"eight\" is not a Kubernetes quantity".to_string())
        );
    }

    #[test]
    fn huge_and_tiny_values_do_not_panic() {
        assert!(matches!(
            Quantity::parse("1e999999999999"),
            Err(QuantityError::TooLarge(_))
        ));
        assert!(matches!(
            Quantity::parse("99999999999999999999999999999999999999999999"),
            Err(QuantityError::TooLarge(_))
        ));
        assert!(matches!(
            Quantity::parse("1e40"),
            Err(QuantityError::TooLarge(_))
        ));
        assert!(matches!(
            Quantity::parse("999999999999999999999Ei"),
            Err(QuantityError::TooLarge(_))
        ));
        // A vanishingly small positive value rounds up to one nano-unit; zero stays zero.
        assert_eq!(cpu_millicores("1e-999999999999"), Ok(1));
        assert_eq!(cpu_millicores("0e999999"), Ok(0));
        assert_eq!(cpu_millicores("0e-999999"), Ok(0));
    }

    #[test]
    fn display_is_readable() {
        let show = |s| {
            Quantity::parse(s)
                .map(|q| q.to_string())
                .unwrap_or_default()
        };
        assert_eq!(show("2"), "2");
        assert_eq!(show("500m"), "500m");
        assert_eq!(show("1k"), "1000");
        assert_eq!(show("1n"), "1n");
    }

    #[test]
    fn arithmetic_and_binary_rendering() {
        let q = |s| Quantity::parse(s).unwrap_or(Quantity::ZERO);
        assert_eq!(q("2Gi").checked_mul(4), Some(q("8Gi")));
        assert_eq!(q("500m").checked_mul(3), Some(q("1500m")));
        assert_eq!(q("1Gi").checked_mul(0), Some(Quantity::ZERO));
        assert_eq!(q("10Gi").checked_add(q("1Gi")), Some(q("11Gi")));
        assert_eq!(q("999999Ei").checked_mul(u64::MAX), None);
        let max = Quantity { nanos: i128::MAX };
        assert_eq!(max.checked_add(q("1n")), None);
        for (input, want) in [
            ("8Gi", "8Gi"),
            ("1536Mi", "1536Mi"),
            ("1.5Gi", "1536Mi"),
            ("2048Mi", "2Gi"),
            ("1024", "1Ki"),
            ("3G", "3000000000"),
            ("12Ei", "12Ei"),
            ("1Ti", "1Ti"),
            ("100", "100"),
            ("500m", "500m"),
            ("0", "0"),
        ] {
            let text = q(input).to_binary_si();
            assert_eq!(text, want, "{input}");
            assert_eq!(Quantity::parse(&text), Ok(q(input)), "{input} round trip");
        }
    }

    #[test]
    fn usage_in_millicores() {
        for (q, want) in [
            ("250m", Some(250)),
            ("1", Some(1000)),
            ("1.5", Some(1500)),
            ("0.25", Some(250)),
            ("123456789n", Some(124)),
            ("1000000n", Some(1)),
            ("999n", Some(1)),
            ("0", Some(0)),
            ("0n", Some(0)),
            ("15u", Some(1)),
            ("2000u", Some(2)),
            ("2k", Some(2_000_000)),
            ("", None),
            ("abc", None),
            // One grammar: binary suffixes are quantities too (the metrics API never
            // sends them for CPU).
            ("1Ki", Some(1_024_000)),
            ("-1", None),
            ("1.2.3", None),
            (".", None),
        ] {
            assert_eq!(usage_millicores(q), want, "{q}");
        }
    }
}
