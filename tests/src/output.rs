//! What a command printed, and the assertions every suite makes on it: it succeeded
//! ([`ok`], [`ok_both`]), it failed with a non-zero exit code ([`fails`]), its message
//! names what it must ([`assert_mentions`]).

use std::process::Output;

use serde_json::Value;

/// Its stdout, lossily decoded.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Its stderr, lossily decoded.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Its stdout then its stderr.
pub fn both(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

/// Asserts a command succeeded; returns (stdout, stderr).
pub fn ok_both(o: &Output, what: &str) -> (String, String) {
    assert!(
        o.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o).trim_end(),
        stderr(o).trim_end()
    );
    (stdout(o), stderr(o))
}

/// Asserts a command succeeded; returns its stdout.
pub fn ok(o: &Output, what: &str) -> String {
    ok_both(o, what).0
}

/// Asserts a command failed with a non-zero exit code; returns stdout + stderr.
pub fn fails(o: &Output, what: &str) -> String {
    assert!(
        !o.status.success() && o.status.code().is_some_and(|c| c != 0),
        "{what} should have failed with a non-zero exit code, got {}:\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o).trim_end(),
        stderr(o).trim_end()
    );
    both(o)
}

/// Asserts `text` contains every needle (case-insensitive), naming what is checked.
pub fn assert_mentions(text: &str, needles: &[&str], what: &str) {
    let lower = text.to_lowercase();
    for n in needles {
        assert!(
            lower.contains(&n.to_lowercase()),
            "{what}: expected the message to mention {n:?}, got:\n{text}"
        );
    }
}

/// Parses JSON output; panics with the text when it is not JSON.
pub fn json_of(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// Standard base64 (with padding), as Secret `data` and a `caBundle` hold it.
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
    }
}
