//! AdmissionReview fixtures and the request template built from them.
//!
//! Every request the load generator sends carries a fresh `request.uid`, as
//! the API server's do, and the response must echo it. To keep that cheap the
//! fixture is serialised once (compact, as the API server sends it) with a
//! placeholder uid of the same length as a real one; each request overwrites
//! those 36 bytes in place.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// A ~4 KiB workspace pod created by a StatefulSet: owner reference, a
/// realistic container (env, probes, volume mounts) and the claim volumes.
pub const WORKSPACE_POD: &str = include_str!("../fixtures/workspace-pod.json");
/// A bare workspace pod (no owner) with violations: privileged, hostPath, host namespaces.
pub const BARE_POD_VIOLATIONS: &str = include_str!("../fixtures/bare-pod-violations.json");
/// A Deployment's pod without the workspace label.
pub const NON_WORKSPACE_POD: &str = include_str!("../fixtures/non-workspace-pod.json");

/// The built-in fixtures, by name.
pub const BUILTIN: [(&str, &str); 3] = [
    ("workspace-pod", WORKSPACE_POD),
    ("bare-pod-violations", BARE_POD_VIOLATIONS),
    ("non-workspace-pod", NON_WORKSPACE_POD),
];

/// Length of a Kubernetes uid (`8-4-4-4-12` hex digits).
pub const UID_LEN: usize = 36;
const PLACEHOLDER_UID: &str = "@@@@@@@@-@@@@-@@@@-@@@@-@@@@@@@@@@@@";

/// An AdmissionReview ready to be sent: compact JSON bytes with a uid slot.
#[derive(Clone, Debug)]
pub struct Fixture {
    /// Name of the fixture (built-in name or file path).
    pub name: String,
    /// The compact JSON, with the placeholder uid.
    pub body: Vec<u8>,
    /// Offset of the 36-byte uid inside `body`.
    pub uid_offset: usize,
}

impl Fixture {
    /// A built-in fixture (`workspace-pod`, `bare-pod-violations`,
    /// `non-workspace-pod`) or, when no built-in has that name, a JSON file.
    pub fn load(name_or_path: &str) -> Result<Self> {
        if let Some((name, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
            return Self::from_json(name, text.as_bytes());
        }
        let bytes = std::fs::read(Path::new(name_or_path)).with_context(|| {
            format!(
                "{name_or_path:?} is neither a built-in fixture ({}) nor a readable file",
                BUILTIN.map(|(n, _)| n).join(", ")
            )
        })?;
        Self::from_json(name_or_path, &bytes)
    }

    /// Builds the fixture from AdmissionReview JSON.
    pub fn from_json(name: &str, json: &[u8]) -> Result<Self> {
        let mut review: Value =
            serde_json::from_slice(json).with_context(|| format!("{name}: invalid JSON"))?;
        let Some(request) = review.get_mut("request").and_then(Value::as_object_mut) else {
            bail!("{name}: not an AdmissionReview: no request object");
        };
        request.insert("uid".into(), Value::String(PLACEHOLDER_UID.into()));
        let body = serde_json::to_vec(&review)?;
        let needle = format!("\"{PLACEHOLDER_UID}\"");
        let Some(pos) = find(&body, needle.as_bytes()) else {
            bail!("{name}: placeholder uid not found after serialisation");
        };
        if find(&body[pos + needle.len()..], needle.as_bytes()).is_some() {
            bail!("{name}: the fixture contains the placeholder uid twice");
        }
        Ok(Self {
            name: name.to_owned(),
            body,
            uid_offset: pos + 1,
        })
    }

    /// The body with `uid` in place (allocates; for tests and the criterion bench).
    pub fn with_uid(&self, uid: &str) -> Vec<u8> {
        let mut body = self.body.clone();
        write_uid_str(&mut body[self.uid_offset..self.uid_offset + UID_LEN], uid);
        body
    }
}

fn write_uid_str(slot: &mut [u8], uid: &str) {
    let bytes = uid.as_bytes();
    for (i, b) in slot.iter_mut().enumerate() {
        *b = bytes.get(i).copied().unwrap_or(b'0');
    }
}

/// Position of `needle` in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A complete HTTP/1.1 request (head and body) whose uid is rewritten per request.
#[derive(Clone, Debug)]
pub struct RequestTemplate {
    bytes: Vec<u8>,
    uid_offset: usize,
}

impl RequestTemplate {
    /// `POST path` to `host` with the fixture as body.
    pub fn new(fixture: &Fixture, host: &str, path: &str) -> Self {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: devenv-loadgen\r\n\
             Accept: application/json\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            fixture.body.len()
        );
        let mut bytes = Vec::with_capacity(head.len() + fixture.body.len());
        bytes.extend_from_slice(head.as_bytes());
        bytes.extend_from_slice(&fixture.body);
        Self {
            uid_offset: head.len() + fixture.uid_offset,
            bytes,
        }
    }

    /// The request bytes (with whatever uid was written last).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Writes the uid of request `seq` on connection `conn` and returns it.
    pub fn set_uid(&mut self, conn: u32, seq: u64) -> [u8; UID_LEN] {
        let uid = make_uid(conn, seq);
        self.bytes[self.uid_offset..self.uid_offset + UID_LEN].copy_from_slice(&uid);
        uid
    }
}

/// A uid unique per (connection, sequence number), in the `8-4-4-4-12` shape.
pub fn make_uid(conn: u32, seq: u64) -> [u8; UID_LEN] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = *b"00000000-0000-4000-8000-000000000000";
    for i in 0..8 {
        out[7 - i] = HEX[((conn >> (4 * i)) & 0xf) as usize];
    }
    for i in 0..12 {
        out[35 - i] = HEX[((seq >> (4 * i)) & 0xf) as usize];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_parse_and_have_one_uid_slot() {
        for (name, _) in BUILTIN {
            let f = Fixture::load(name).unwrap();
            let body = f.with_uid("0123abcd-0000-4000-8000-000000000001");
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                v["request"]["uid"], "0123abcd-0000-4000-8000-000000000001",
                "{name}"
            );
        }
        let ws = Fixture::load("workspace-pod").unwrap();
        assert!(
            (3500..=4600).contains(&ws.body.len()),
            "workspace pod is ~4 KiB: {}",
            ws.body.len()
        );
    }

    #[test]
    fn template_rewrites_uid() {
        let f = Fixture::load("non-workspace-pod").unwrap();
        let mut t = RequestTemplate::new(&f, "127.0.0.1:8443", "/mutate");
        let uid = t.set_uid(0xdead_beef, 0x1234);
        assert_eq!(&uid, b"deadbeef-0000-4000-8000-000000001234");
        let bytes = t.bytes();
        let split = find(bytes, b"\r\n\r\n").unwrap() + 4;
        let head = std::str::from_utf8(&bytes[..split]).unwrap();
        assert!(head.contains(&format!("Content-Length: {}\r\n", bytes.len() - split)));
        let v: Value = serde_json::from_slice(&bytes[split..]).unwrap();
        assert_eq!(v["request"]["uid"], "deadbeef-0000-4000-8000-000000001234");
    }

    #[test]
    fn file_and_errors() {
        let dir = std::env::temp_dir().join(format!("devenv-fixture-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.json");
        std::fs::write(&p, WORKSPACE_POD).unwrap();
        assert!(Fixture::load(p.to_str().unwrap()).is_ok());
        std::fs::write(&p, "{\"kind\":\"AdmissionReview\"}").unwrap();
        assert!(Fixture::load(p.to_str().unwrap()).is_err());
        assert!(Fixture::load("no-such-fixture").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
