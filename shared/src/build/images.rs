//! The release images, named in one place: the registry they are published to, their
//! names and the version, which is the workspace's (`[workspace.package] version`, the
//! same one `images/build.sh` tags them with). `kubectl devenv install` deploys
//! [`webhook`] and `kubectl devenv create` runs [`workspace`] unless `--image` says
//! otherwise; a test checks that `images/build.sh` tags exactly these.

/// Where the release images are published (`images/build.sh`'s `DEVENV_IMAGE_REPO`
/// default).
pub const REGISTRY: &str = "ghcr.io/devenv-io";
/// The version every release image is tagged with: this crate's, the workspace's.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Name of the webhook image under [`REGISTRY`].
pub const WEBHOOK_NAME: &str = "devenv-webhook";
/// Name of the default workspace image under [`REGISTRY`].
pub const WORKSPACE_NAME: &str = "workspace";

/// `REGISTRY/NAME:VERSION`.
fn reference(name: &str) -> String {
    format!("{REGISTRY}/{name}:{VERSION}")
}

/// The webhook image of this release (`ghcr.io/devenv-io/devenv-webhook:VERSION`).
pub fn webhook() -> String {
    reference(WEBHOOK_NAME)
}

/// The default workspace image of this release (`ghcr.io/devenv-io/workspace:VERSION`),
/// whose entrypoint runs sshd on port 2222 as the workspace user.
pub fn workspace() -> String {
    reference(WORKSPACE_NAME)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::names::is_image_reference;

    #[test]
    fn references_are_valid_and_carry_the_version() {
        for r in [webhook(), workspace()] {
            assert!(is_image_reference(&r), "{r}");
            assert!(r.starts_with("ghcr.io/devenv-io/"), "{r}");
            assert!(
                r.ends_with(&format!(":{}", env!("CARGO_PKG_VERSION"))),
                "{r}"
            );
        }
        assert_ne!(webhook(), workspace());
    }

    /// `images/build.sh` tags `$DEVENV_IMAGE_REPO/devenv-webhook:$version` and
    /// `.../workspace:$version`, with the repo defaulting to ghcr.io/devenv-io and the
    /// version to `[workspace.package] version`: the same as here.
    #[test]
    fn build_sh_tags_exactly_these_images() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let build = std::fs::read_to_string(root.join("images/build.sh")).unwrap();
        assert!(
            build.contains(&format!("image_repo=${{DEVENV_IMAGE_REPO:-{REGISTRY}}}")),
            "images/build.sh's default registry is not {REGISTRY}"
        );
        assert!(build.contains(&format!(
            "WEBHOOK_REF=\"$image_repo/{WEBHOOK_NAME}:$version\""
        )));
        assert!(build.contains(&format!(
            "WORKSPACE_REF=\"$image_repo/{WORKSPACE_NAME}:$version\""
        )));
        let cargo = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        let section = cargo
            .split("[workspace.package]")
            .nth(1)
            .expect("[workspace.package] in Cargo.toml");
        let version = section
            .lines()
            .find_map(|l| l.trim().strip_prefix("version = "))
            .expect("a version");
        assert_eq!(version.trim_matches('"'), VERSION);
    }
}
