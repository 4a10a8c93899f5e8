//! The policy file, read the same way by both programs: the whole file, validated by
//! [`Policy::from_yaml`] (what [`Policy::load`] does once it has read the file), at start and
//! on every change. So the controller refuses exactly the files the admission server
//! refuses, though it only uses their `lifecycle:` section.

use crate::reload::FileReloader;
use devenv_shared::model::policy::Policy;
use std::path::{Path, PathBuf};

/// What the reloader's messages call the file.
const WHAT: &str = "policy file";

/// Loads `path` now (a missing or bad file is an error that names the file and the field)
/// and follows it.
pub async fn reloader(path: PathBuf) -> anyhow::Result<FileReloader<Policy>> {
    let file = path.clone();
    FileReloader::load(WHAT, vec![path], move |contents| {
        let bytes = contents.first().map_or(&[][..], Vec::as_slice);
        Ok(parse(&file, bytes)?)
    })
    .await
}

/// The built-in policy, for a program run without `--policy`.
pub fn built_in() -> FileReloader<Policy> {
    built_in_with(Vec::new())
}

/// [`reloader`], with `controllers` added to every loaded policy's `access.controllers`.
pub async fn reloader_with(
    path: PathBuf,
    controllers: Vec<String>,
) -> anyhow::Result<FileReloader<Policy>> {
    let file = path.clone();
    FileReloader::load(WHAT, vec![path], move |contents| {
        let bytes = contents.first().map_or(&[][..], Vec::as_slice);
        Ok(parse(&file, bytes)?.with_controllers(&controllers))
    })
    .await
}

/// [`built_in`], with `controllers` added to its `access.controllers`.
pub fn built_in_with(controllers: Vec<String>) -> FileReloader<Policy> {
    FileReloader::fixed(WHAT, Policy::default().with_controllers(&controllers))
}

/// Why a policy file's contents are refused. The message says it all (no error source to
/// chain: `{:#}` would repeat it).
#[derive(Debug, thiserror::Error)]
pub enum PolicyFileError {
    /// Not UTF-8 (`Policy::load` refuses such a file too: it reads text).
    #[error("{}: policy file is not UTF-8: {error}", path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// Where the bytes stop being UTF-8.
        error: std::str::Utf8Error,
    },
    /// The policy itself is refused; the message names the field.
    #[error("{}: {error}", path.display())]
    Policy {
        /// The file.
        path: PathBuf,
        /// What [`Policy::from_yaml`] says.
        error: devenv_shared::model::policy::PolicyError,
    },
}

/// The policy in `bytes`, read from `path`: [`Policy::load`] without the read.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Policy, PolicyFileError> {
    let text = std::str::from_utf8(bytes).map_err(|error| PolicyFileError::NotUtf8 {
        path: path.to_path_buf(),
        error,
    })?;
    Policy::from_yaml(text).map_err(|error| PolicyFileError::Policy {
        path: path.to_path_buf(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file `Policy::load` accepts is read as the same policy here, and every file it
    /// refuses is refused here with the same message (but for bytes that are not UTF-8,
    /// which both refuse in their own words).
    #[test]
    fn parse_is_policy_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        let files = [
            "",
            "# only a comment\n",
            "defaultTier: large\n",
            "lifecycle:\n  idleTimeout: 30m\n",
            "lifecycle:\n  idleTimeout: soon\n",
            "defaultTier: huge\n",
            "tiers:\n  large:\n    requests: {cpu: eight, memory: 1Gi}\n    limits: {cpu: 8, memory: 1Gi}\n",
            "user:\n  uid: 0\n",
            "nonsense: [\n",
            "unknownSection: {}\n",
        ];
        for file in files {
            std::fs::write(&path, file).unwrap();
            match (Policy::load(&path), parse(&path, file.as_bytes())) {
                (Ok(loaded), Ok(parsed)) => assert_eq!(loaded, parsed, "{file:?}"),
                (Err(loaded), Err(parsed)) => {
                    assert_eq!(loaded.to_string(), parsed.to_string(), "{file:?}");
                }
                (loaded, parsed) => panic!("{file:?}: load {loaded:?}, parse {parsed:?}"),
            }
        }
        assert!(matches!(
            parse(&path, b"defaultTier: \xff\n"),
            Err(PolicyFileError::NotUtf8 { .. })
        ));
    }

    /// Was `lifecycle::tests::policy_source_reads_the_lifecycle_section`: what the controller
    /// reads of the file, now through the same reader as the admission server.
    #[tokio::test]
    async fn policy_source_reads_the_lifecycle_section() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        std::fs::write(&path, "lifecycle:\n  idleTimeout: 30m\n").unwrap();
        let source = reloader(path.clone()).await.unwrap();
        assert_eq!(
            source.current().load().lifecycle.idle_timeout,
            Some(std::time::Duration::from_secs(1800))
        );
        std::fs::write(&path, "lifecycle:\n  idleTimeout: soon\n").unwrap();
        let err = reloader(path.clone()).await.unwrap_err();
        assert!(format!("{err:#}").contains("\"soon\""), "{err:#}");
        assert_eq!(
            built_in().current().load().lifecycle.idle_timeout,
            Some(devenv_shared::model::lifecycle_policy::DEFAULT_IDLE_TIMEOUT)
        );

        // A good `lifecycle:` section does not make up for a bad section elsewhere: the
        // controller refuses the files the admission server refuses.
        std::fs::write(&path, "lifecycle:\n  idleTimeout: 30m\ndefaultTier: huge\n").unwrap();
        let err = reloader(path.clone()).await.unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            format!("{err}"),
            "said once, not chained"
        );
        let err = format!("{err:#}");
        assert!(err.contains("policy.yaml"), "{err}");
        assert!(err.contains("defaultTier"), "{err}");
        std::fs::remove_file(&path).unwrap();
        let err = format!("{:#}", reloader(path).await.unwrap_err());
        assert!(err.starts_with("cannot read the policy file"), "{err}");
    }
}
