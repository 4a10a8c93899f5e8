//! The one check of Kubernetes names the project makes (DNS-1123 labels and subdomains),
//! the one check of image references, and the naming conventions of the claims a
//! workspace owns.

/// Why a name is not a DNS-1123 label or subdomain. The text completes
/// "invalid NAME: ...", so callers put the name and its kind in front.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} characters (it has {len})")]
    TooLong { max: usize, len: usize },
    #[error("contains {0:?}: only lowercase letters, digits and '-' are allowed")]
    Character(char),
    #[error("must start and end with a lowercase letter or digit")]
    Edge,
}

/// Longest workspace name. A StatefulSet's pods carry the label
/// `controller-revision-hash=NAME-<10 character hash>`, and label values are
/// limited to 63 characters: 63 - 1 - 10 = 52. Pod names `NAME-ORDINAL` fit too.
pub const MAX_WORKSPACE_NAME_LEN: usize = 52;

/// Checks a workspace name: the `devenv.io/workspace` label of every object of a workspace,
/// and the name of its StatefulSet (see [`MAX_WORKSPACE_NAME_LEN`]).
pub fn check_workspace_name(name: &str) -> Result<(), NameError> {
    check_dns_label(name, MAX_WORKSPACE_NAME_LEN)
}

/// Checks a DNS-1123 label: lowercase alphanumerics and '-', starting and ending
/// alphanumeric, at most `max` characters (63 for a plain label).
pub fn check_dns_label(name: &str, max: usize) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > max {
        return Err(NameError::TooLong {
            max,
            len: name.len(),
        });
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(NameError::Character(c));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(NameError::Edge);
    }
    Ok(())
}

/// Checks a DNS-1123 subdomain (Secret, StorageClass names): labels joined by '.',
/// at most 253 characters.
pub fn check_dns_subdomain(name: &str) -> Result<(), NameError> {
    if name.len() > 253 {
        return Err(NameError::TooLong {
            max: 253,
            len: name.len(),
        });
    }
    name.split('.')
        .try_for_each(|label| check_dns_label(label, 63))
}

/// RFC 1123 label: 1-63 of `[a-z0-9-]`, starting and ending alphanumeric.
pub fn is_dns1123_label(s: &str) -> bool {
    check_dns_label(s, 63).is_ok()
}

/// RFC 1123 subdomain: at most 253 characters of dot-separated labels.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    check_dns_subdomain(s).is_ok()
}

/// Whether `name` can be an RBAC subject (a user or group name as the API server reports
/// it: `alice`, `system:masters`, `oidc:dev@example.com`): non-empty, without leading or
/// trailing whitespace. The API server decides the rest; this catches empty flags and
/// stray spaces before any call.
pub fn is_subject_name(name: &str) -> bool {
    !name.trim().is_empty() && name.trim() == name
}

/// Whether `image` can be a container image reference: non-empty, no whitespace.
/// (The registry and the kubelet judge the rest; this catches typos and empty
/// flags before any API call.)
pub fn is_image_reference(image: &str) -> bool {
    !image.trim().is_empty() && !image.chars().any(char::is_whitespace)
}

/// The claim a StatefulSet creates for a claim template and ordinal, as the StatefulSet
/// controller names it: `<volume>-<statefulset>-<ordinal>`.
pub fn statefulset_claim_name(volume: &str, statefulset: &str, ordinal: u64) -> String {
    format!("{volume}-{statefulset}-{ordinal}")
}

/// The claim of a bare workspace pod (one no StatefulSet owns): `<volume>-<workspace>-bare`.
///
/// StatefulSet claims always end in `-<digits>` and these never do, so a bare pod labelled
/// `bob-0` gets `workspace-bob-0-bare`, never bob's `workspace-bob-0`; and with volume names
/// that are not dash-prefixes of each other (the policy refuses those), `(volume, workspace)`
/// gives one name and one name gives one `(volume, workspace)`.
pub fn bare_pod_claim_name(volume: &str, workspace: &str) -> String {
    format!("{volume}-{workspace}-bare")
}

/// The ordinal of a StatefulSet pod named `<statefulset>-<ordinal>` (canonical decimal:
/// `bob-01` is not ordinal 1 of `bob`).
pub fn statefulset_ordinal(pod_name: &str, statefulset: &str) -> Option<u64> {
    let digits = pod_name.strip_prefix(statefulset)?.strip_prefix('-')?;
    let n: u64 = digits.parse().ok()?;
    (n.to_string() == digits).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        assert!(is_dns1123_label("workspace"));
        assert!(is_dns1123_label("a-1"));
        assert!(!is_dns1123_label("-a"));
        assert!(!is_dns1123_label("a-"));
        assert!(!is_dns1123_label("A"));
        assert!(!is_dns1123_label(""));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(is_dns1123_subdomain("a.b-c.d"));
        assert!(!is_dns1123_subdomain("a..b"));
        assert!(!is_dns1123_subdomain(".a"));
        assert!(!is_dns1123_subdomain(&format!("{}.b", "a".repeat(253))));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert_eq!(check_dns_label("", 63), Err(NameError::Empty));
        assert_eq!(
            check_dns_label("abc", 2).map_err(|e| e.to_string()),
            Err("must be at most 2 characters (it has 3)".to_string())
        );
        assert_eq!(check_dns_label("a_b", 63), Err(NameError::Character('_')));
        assert_eq!(check_dns_label("a-", 63), Err(NameError::Edge));
        assert_eq!(
            check_dns_subdomain("ok.Bad"),
            Err(NameError::Character('B'))
        );
    }

    #[test]
    fn subject_names() {
        assert!(is_subject_name("alice"));
        assert!(is_subject_name("system:masters"));
        assert!(is_subject_name("oidc:dev@example.com"));
        assert!(!is_subject_name(""));
        assert!(!is_subject_name("  "));
        assert!(!is_subject_name(" alice"));
        assert!(!is_subject_name("alice\n"));
    }

    #[test]
    fn image_references() {
        assert!(is_image_reference(
            "registry.example.com/devenv/workspace:0.1.0"
        ));
        assert!(!is_image_reference(""));
        assert!(!is_image_reference("  "));
        assert!(!is_image_reference("a b"));
    }

    #[test]
    fn claim_names() {
        assert_eq!(
            bare_pod_claim_name("workspace", "alice"),
            "workspace-alice-bare"
        );
        // The collision: a bare pod labelled bob-0 and bob's StatefulSet claim.
        assert_ne!(
            bare_pod_claim_name("workspace", "bob-0"),
            statefulset_claim_name("workspace", "bob", 0)
        );
        assert_eq!(statefulset_ordinal("bob-0", "bob"), Some(0));
        assert_eq!(statefulset_ordinal("bob-12", "bob"), Some(12));
        assert_eq!(statefulset_ordinal("bob-01", "bob"), None);
        assert_eq!(statefulset_ordinal("bob-00", "bob"), None);
        assert_eq!(statefulset_ordinal("bob-x", "bob"), None);
        assert_eq!(statefulset_ordinal("bob", "bob"), None);
        assert_eq!(statefulset_ordinal("bobby-0", "bob"), None);
        assert_eq!(
            statefulset_claim_name("history", "alice", 0),
            "history-alice-0"
        );
    }
}
