//! An OCI registry, as backups use it: through `oci-client`, with the credentials of the
//! user's docker config (never printed), blobs streamed from and to files so no volume is
//! ever held in memory.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use futures::TryStreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use devenv_shared::build::backup::{Blob, MANIFEST_MEDIA_TYPE};

use crate::cli::RegistryArgs;
use crate::error::Error;

/// Hosts spoken to in plain HTTP without `--plain-http`: a registry on this machine.
const LOOPBACK: [&str; 3] = ["127.0.0.1", "localhost", "[::1]"];

/// Bytes read from a stream at a time.
const CHUNK: usize = 1 << 20;
/// Bytes per upload request: oci-client's largest chunk (each PATCH is a round trip).
const UPLOAD_CHUNK: usize = 4 << 20;

/// A parsed `REGISTRY/REPO[:TAG|@DIGEST]`, with whether a tag or digest was written (the
/// parser fills in `latest` otherwise, which a backup must never silently become).
#[derive(Debug, Clone)]
pub struct Target {
    pub reference: Reference,
    pub explicit: bool,
}

/// Parses a reference given in `field` (`--to`, `--from`, `backup.repository`).
pub fn parse(text: &str, field: &str) -> Result<Target, Error> {
    let reference: Reference = text.trim().parse().map_err(|e| {
        Error::Usage(format!(
            "{field} {text:?} is not an OCI reference ({e}); write REGISTRY/REPO[:TAG], e.g. registry.example.com/devenv/backups"
        ))
    })?;
    let last = text.rsplit('/').next().unwrap_or_default();
    let explicit = text.contains('@') || (text.contains('/') && last.contains(':'));
    Ok(Target {
        reference,
        explicit,
    })
}

/// `repository` with `tag`.
pub fn tagged(repository: &Reference, tag: &str) -> Reference {
    Reference::with_tag(
        repository.registry().to_owned(),
        repository.repository().to_owned(),
        tag.to_owned(),
    )
}

/// `repository` at `digest`.
pub fn at_digest(repository: &Reference, digest: &str) -> Reference {
    Reference::with_digest(
        repository.registry().to_owned(),
        repository.repository().to_owned(),
        digest.to_owned(),
    )
}

/// The registry of one reference, connected with its credentials.
pub struct Registry {
    client: Client,
    auth: RegistryAuth,
    /// Spoken to over plain HTTP (the deletes oci-client has no call for use it).
    plain_http: bool,
}

/// What went wrong, in a form that names the reference and what to do.
fn registry_error(action: &str, reference: &Reference, e: impl std::fmt::Display) -> Error {
    let detail = e.to_string();
    let lower = detail.to_lowercase();
    let hint = if lower.contains("unauthorized") || lower.contains("401") || lower.contains("403") {
        format!(
            "log in to {} (docker login, or a docker config given with --registry-config)",
            reference.registry()
        )
    } else if lower.contains("connect") || lower.contains("dns") || lower.contains("timed out") {
        format!(
            "check that {} is reachable from this machine (for a registry without TLS, pass --plain-http)",
            reference.registry()
        )
    } else if lower.contains("digest") {
        "the registry served bytes that do not match the backup's digest: the backup is damaged, \
         choose another one (kubectl devenv backups)"
            .to_owned()
    } else {
        "check the reference and the registry".to_owned()
    };
    Error::Registry {
        action: action.to_owned(),
        reference: reference.whole(),
        detail,
        hint,
    }
}

/// The docker config file to read credentials from: `--registry-config`, else
/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
fn docker_config_path(args: &RegistryArgs) -> Option<PathBuf> {
    if let Some(p) = &args.registry_config {
        return Some(p.clone());
    }
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker").join("config.json"))
}

/// The credentials a docker config holds for `registry` (`auths.<registry>.auth`, or
/// `username`/`password`); anonymous when there are none. Credential helpers are not run.
pub fn auth_from_docker_config(text: &str, registry: &str) -> Result<RegistryAuth, String> {
    let config: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let Some(auths) = config.get("auths").and_then(|a| a.as_object()) else {
        return Ok(RegistryAuth::Anonymous);
    };
    let entry = auths.iter().find(|(host, _)| {
        let host = host
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        host.split('/').next() == Some(registry)
    });
    let Some((host, entry)) = entry else {
        return Ok(RegistryAuth::Anonymous);
    };
    if let Some(encoded) = entry.get("auth").and_then(|a| a.as_str()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| format!("auths.{host}.auth is not base64"))?;
        let text = String::from_utf8(decoded)
            .map_err(|_| format!("auths.{host}.auth is not user:password"))?;
        let (user, password) = text
            .split_once(':')
            .ok_or_else(|| format!("auths.{host}.auth is not user:password"))?;
        return Ok(RegistryAuth::Basic(user.to_owned(), password.to_owned()));
    }
    match (
        entry.get("username").and_then(|u| u.as_str()),
        entry.get("password").and_then(|p| p.as_str()),
    ) {
        (Some(u), Some(p)) => Ok(RegistryAuth::Basic(u.to_owned(), p.to_owned())),
        _ => Ok(RegistryAuth::Anonymous),
    }
}

impl Registry {
    /// A client for `reference`'s registry: plain HTTP for loopback hosts or with
    /// `--plain-http`, credentials from the docker config.
    pub fn connect(reference: &Reference, args: &RegistryArgs) -> Result<Registry, Error> {
        let host = reference.resolve_registry().to_owned();
        let loopback = LOOPBACK
            .iter()
            .any(|h| host == *h || host.starts_with(&format!("{h}:")));
        let protocol = if args.plain_http || loopback {
            ClientProtocol::HttpsExcept(vec![host.clone()])
        } else {
            ClientProtocol::Https
        };
        let auth = match (&args.docker_config_json, docker_config_path(args)) {
            (Some(json), _) => auth_from_docker_config(&json.0, reference.registry())
                .map_err(|e| Error::Usage(format!("registry credentials: {e}")))?,
            (None, Some(path)) if path.exists() => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    Error::Usage(format!(
                        "cannot read the docker config {}: {e}",
                        path.display()
                    ))
                })?;
                auth_from_docker_config(&text, reference.registry())
                    .map_err(|e| Error::Usage(format!("docker config {}: {e}", path.display())))?
            }
            (None, Some(path)) if args.registry_config.is_some() => {
                return Err(Error::Usage(format!(
                    "--registry-config {}: no such file",
                    path.display()
                )))
            }
            _ => RegistryAuth::Anonymous,
        };
        let plain_http = matches!(protocol, ClientProtocol::HttpsExcept(_));
        let client = Client::new(ClientConfig {
            protocol,
            ..Default::default()
        });
        Ok(Registry {
            client,
            auth,
            plain_http,
        })
    }

    async fn authenticate(
        &self,
        reference: &Reference,
        op: RegistryOperation,
    ) -> Result<(), Error> {
        self.client
            .auth(reference, &self.auth, op)
            .await
            .map(|_| ())
            .map_err(|e| registry_error("log in to push or pull", reference, e))
    }

    /// Pushes the file at `path`, whose digest and size are `blob`, in chunks.
    pub async fn push_file(
        &self,
        reference: &Reference,
        path: &Path,
        blob: &Blob,
    ) -> Result<(), Error> {
        self.authenticate(reference, RegistryOperation::Push)
            .await?;
        let exists = self
            .client
            .blob_exists(reference, &blob.digest)
            .await
            .unwrap_or(false);
        if exists {
            return Ok(());
        }
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| registry_error("read the spooled volume for", reference, e))?;
        let stream = tokio_util::io::ReaderStream::with_capacity(file, UPLOAD_CHUNK)
            .map_err(oci_client::errors::OciDistributionError::from);
        self.client
            .push_blob_stream(reference, stream, &blob.digest)
            .await
            .map(|_| ())
            .map_err(|e| registry_error("push a volume layer to", reference, e))
    }

    /// Pushes a small blob held in memory (the config).
    pub async fn push_bytes(&self, reference: &Reference, data: Vec<u8>) -> Result<Blob, Error> {
        self.authenticate(reference, RegistryOperation::Push)
            .await?;
        let blob = Blob {
            digest: format!("sha256:{}", hex::encode(Sha256::digest(&data))),
            size: data.len() as u64,
        };
        self.client
            .push_blob(reference, data, &blob.digest)
            .await
            .map_err(|e| registry_error("push the backup's config to", reference, e))?;
        Ok(blob)
    }

    /// Pushes a manifest under `reference` (a tag); returns its digest.
    pub async fn push_manifest(
        &self,
        reference: &Reference,
        manifest: Vec<u8>,
    ) -> Result<String, Error> {
        self.authenticate(reference, RegistryOperation::Push)
            .await?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&manifest)));
        self.client
            .push_manifest_raw(
                reference,
                manifest,
                http::HeaderValue::from_static(MANIFEST_MEDIA_TYPE),
            )
            .await
            .map_err(|e| registry_error("push the backup's manifest to", reference, e))?;
        Ok(digest)
    }

    /// The manifest at `reference` and its digest (checked against the reference's digest
    /// when it has one).
    pub async fn pull_manifest(&self, reference: &Reference) -> Result<(Vec<u8>, String), Error> {
        let (bytes, _) = self
            .client
            .pull_manifest_raw(reference, &self.auth, &[MANIFEST_MEDIA_TYPE])
            .await
            .map_err(|e| registry_error("read the manifest of", reference, e))?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        if let Some(want) = reference.digest() {
            if want != digest {
                return Err(registry_error(
                    "read the manifest of",
                    reference,
                    format!("digest mismatch: the registry served {digest}"),
                ));
            }
        }
        Ok((bytes.to_vec(), digest))
    }

    /// Downloads `blob` into `out`, checking its digest and size (the client checks the
    /// digest as it streams; an error means `out` must not be used).
    pub async fn pull_to_file(
        &self,
        reference: &Reference,
        blob: &Blob,
        out: &Path,
    ) -> Result<(), Error> {
        self.authenticate(reference, RegistryOperation::Pull)
            .await?;
        let file = tokio::fs::File::create(out)
            .await
            .map_err(|e| registry_error("spool a layer of", reference, e))?;
        let descriptor = OciDescriptor {
            digest: blob.digest.clone(),
            size: i64::try_from(blob.size).unwrap_or(i64::MAX),
            ..Default::default()
        };
        self.client
            .pull_blob(reference, &descriptor, file)
            .await
            .map_err(|e| {
                registry_error(&format!("download layer {} of", blob.digest), reference, e)
            })?;
        let got = tokio::fs::metadata(out)
            .await
            .map_err(|e| registry_error("spool a layer of", reference, e))?
            .len();
        if got != blob.size {
            return Err(registry_error(
                &format!("download layer {} of", blob.digest),
                reference,
                format!(
                    "size mismatch: {got} bytes, the manifest says {}",
                    blob.size
                ),
            ));
        }
        Ok(())
    }

    /// A small blob (a config), at most `limit` bytes, digest checked.
    pub async fn pull_small(
        &self,
        reference: &Reference,
        blob: &Blob,
        limit: u64,
    ) -> Result<Vec<u8>, Error> {
        if blob.size > limit {
            return Err(registry_error(
                "read the config of",
                reference,
                format!(
                    "it is {} bytes; a backup's config is at most {limit}",
                    blob.size
                ),
            ));
        }
        let mut out = Vec::new();
        let descriptor = OciDescriptor {
            digest: blob.digest.clone(),
            size: i64::try_from(blob.size).unwrap_or(i64::MAX),
            ..Default::default()
        };
        self.client
            .pull_blob(reference, &descriptor, &mut out)
            .await
            .map_err(|e| registry_error("read the config of", reference, e))?;
        Ok(out)
    }

    /// Deletes the manifest `reference` names by digest (every tag on it goes with it), as
    /// pruning does. oci-client has no delete, so this is the one request made here by
    /// hand: `DELETE /v2/REPO/manifests/DIGEST`, with the credentials as Basic auth, or, on a
    /// Bearer challenge, a token for `repository:REPO:delete` from the realm it names.
    /// Already gone is not an error.
    pub async fn delete(&self, reference: &Reference) -> Result<(), Error> {
        let err = |e: String| registry_error("delete", reference, e);
        let digest = reference
            .digest()
            .ok_or_else(|| err("a delete needs a digest, not a tag".into()))?;
        let scheme = if self.plain_http { "http" } else { "https" };
        let url = format!(
            "{scheme}://{}/v2/{}/manifests/{digest}",
            reference.resolve_registry(),
            reference.repository()
        );
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| err(e.to_string()))?;
        let basic = |r: reqwest::RequestBuilder| match &self.auth {
            RegistryAuth::Basic(user, password) => r.basic_auth(user, Some(password)),
            _ => r,
        };
        let mut response = basic(http.delete(&url))
            .send()
            .await
            .map_err(|e| err(e.to_string()))?;
        if response.status() == reqwest::StatusCode::UNAUTHORIZED {
            let challenge = response
                .headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(bearer_challenge);
            if let Some((realm, service)) = challenge {
                let scope = format!("repository:{}:delete", reference.repository());
                let mut query = vec![("scope", scope)];
                if let Some(service) = service {
                    query.push(("service", service));
                }
                let token_response = basic(http.get(&realm).query(&query))
                    .send()
                    .await
                    .map_err(|e| err(e.to_string()))?;
                let body = token_response
                    .bytes()
                    .await
                    .map_err(|e| err(e.to_string()))?;
                let token: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let token = token["token"]
                    .as_str()
                    .or(token["access_token"].as_str())
                    .ok_or_else(|| err("401 unauthorized: the token service gave no token".into()))?
                    .to_owned();
                response = http
                    .delete(&url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .map_err(|e| err(e.to_string()))?;
            }
        }
        match response.status().as_u16() {
            200 | 202 | 404 => Ok(()),
            405 => Err(err(
                "405: the registry does not allow deletes (distribution: storage.delete.enabled: true)".into(),
            )),
            code => Err(err(format!("the registry answered {code}"))),
        }
    }

    /// Every tag of `repository`.
    pub async fn tags(&self, repository: &Reference) -> Result<Vec<String>, Error> {
        let mut tags = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let page = self
                .client
                .list_tags(repository, &self.auth, Some(1000), last.as_deref())
                .await
                .map_err(|e| registry_error("list the tags of", repository, e))?;
            let n = page.tags.len();
            last = page.tags.last().cloned();
            tags.extend(page.tags);
            if n < 1000 {
                break;
            }
        }
        Ok(tags)
    }
}

/// `(realm, service)` of a `WWW-Authenticate: Bearer realm="...",service="..."` header.
fn bearer_challenge(header: &str) -> Option<(String, Option<String>)> {
    let params = header.trim().strip_prefix("Bearer ")?;
    let mut realm = None;
    let mut service = None;
    for part in params.split(',') {
        let (key, value) = part.trim().split_once('=')?;
        let value = value.trim().trim_matches('"').to_owned();
        match key.trim() {
            "realm" => realm = Some(value),
            "service" => service = Some(value),
            _ => {}
        }
    }
    Some((realm?, service))
}

/// Copies `from` into a new temporary file in `dir`, computing its sha256 and size as it
/// goes, a chunk at a time: the volume streams through, and memory stays at one chunk.
pub async fn spool(mut from: impl AsyncRead + Unpin, to: &Path) -> std::io::Result<Blob> {
    let mut file = tokio::fs::File::create(to).await?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut size = 0u64;
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        let chunk = buf.get(..n).unwrap_or_default();
        hasher.update(chunk);
        file.write_all(chunk).await?;
        size += n as u64;
    }
    file.flush().await?;
    file.sync_all().await?;
    Ok(Blob {
        digest: format!("sha256:{}", hex::encode(hasher.finalize())),
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_read_from_auth_or_username_and_password() {
        let auth = base64::engine::general_purpose::STANDARD.encode("ci:s3cret:x");
        let text = format!(
            r#"{{"auths":{{"https://reg.example.com":{{"auth":"{auth}"}},"other:5000":{{"username":"u","password":"p"}}}}}}"#
        );
        assert_eq!(
            auth_from_docker_config(&text, "reg.example.com").unwrap(),
            RegistryAuth::Basic("ci".into(), "s3cret:x".into())
        );
        assert_eq!(
            auth_from_docker_config(&text, "other:5000").unwrap(),
            RegistryAuth::Basic("u".into(), "p".into())
        );
        assert_eq!(
            auth_from_docker_config(&text, "elsewhere").unwrap(),
            RegistryAuth::Anonymous
        );
        let e = auth_from_docker_config(r#"{"auths":{"r":{"auth":"%%"}}}"#, "r").unwrap_err();
        assert_eq!(e, "auths.r.auth is not base64");
        // The error never carries the secret.
        let e = auth_from_docker_config(r#"{"auths":{"r":{"auth":"c2VjcmV0"}}}"#, "r").unwrap_err();
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn bearer_challenges_name_the_realm_and_service() {
        assert_eq!(
            bearer_challenge(
                r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:b:pull""#
            ),
            Some((
                "https://auth.example.com/token".into(),
                Some("registry.example.com".into())
            ))
        );
        assert_eq!(
            bearer_challenge(r#"Bearer realm="https://a/t""#),
            Some(("https://a/t".into(), None))
        );
        assert_eq!(bearer_challenge(r#"Basic realm="x""#), None);
        assert_eq!(bearer_challenge("Bearer service=x"), None);
    }

    #[test]
    fn a_docker_config_given_as_text_wins_and_is_never_shown() {
        let args = RegistryArgs {
            docker_config_json: Some(crate::cli::DockerConfigJson(
                r#"{"auths":{"reg.example.com":{"username":"u","password":"hunter2"}}}"#.into(),
            )),
            registry_config: Some("/nonexistent/config.json".into()),
            ..Default::default()
        };
        assert!(!format!("{args:?}").contains("hunter2"));
        let reference: Reference = "reg.example.com/b:t".parse().unwrap();
        let registry = Registry::connect(&reference, &args).unwrap();
        assert!(matches!(registry.auth, RegistryAuth::Basic(ref u, _) if u == "u"));
        assert!(!registry.plain_http);
    }

    #[test]
    fn references_say_whether_a_tag_was_written() {
        assert!(!parse("127.0.0.1:5000/backups", "--to").unwrap().explicit);
        assert!(parse("127.0.0.1:5000/backups:t1", "--to").unwrap().explicit);
        assert!(parse("reg.example.com/a/b@sha256:0000000000000000000000000000000000000000000000000000000000000000", "--from").unwrap().explicit);
        let e = parse("Not A Ref", "--to").unwrap_err().to_string();
        assert!(
            e.starts_with("--to \"Not A Ref\" is not an OCI reference"),
            "{e}"
        );
        let t = parse("127.0.0.1:5000/team/backups", "--to").unwrap();
        let r = tagged(&t.reference, "alice-manual-x");
        assert_eq!(r.whole(), "127.0.0.1:5000/team/backups:alice-manual-x");
    }

    #[tokio::test]
    async fn spooling_hashes_what_it_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let data = vec![7u8; CHUNK * 2 + 3];
        let blob = spool(&data[..], &path).await.unwrap();
        assert_eq!(blob.size, data.len() as u64);
        assert_eq!(
            blob.digest,
            format!("sha256:{}", hex::encode(Sha256::digest(&data)))
        );
        assert_eq!(std::fs::read(&path).unwrap(), data);
    }
}
