//! `kubectl devenv secrets set`: an Opaque Secret labelled
//! `devenv.io/inject=true`, whose keys the webhook injects into workspaces as
//! environment variables. Values are never printed.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::Api;

use devenv_shared::model::keys::{INJECT_LABEL, MANAGED_BY};
use devenv_shared::model::names::check_dns_subdomain;

use crate::cli::{DryRun, GlobalArgs, ObjectFormat, SecretsSetArgs};
use crate::client;
use crate::commands::apply;
use crate::error::{ApiCall, Error};
use crate::output;

/// A Secret key: what Kubernetes allows (`[-._a-zA-Z0-9]+`).
fn check_key(key: &str) -> Result<(), Error> {
    let ok = !key.is_empty()
        && key.len() <= 253
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "invalid secret key {key:?}: use letters, digits, '-', '_' and '.'"
        )))
    }
}

/// Whether a key can become an environment variable (kubelet skips the others).
pub fn is_env_name(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Collects the key/values from the flags. `env` and `read` are injected so
/// tests need neither a real environment nor files.
pub fn collect_data(
    args: &SecretsSetArgs,
    env: impl Fn(&str) -> Option<String>,
    read: impl Fn(&Path) -> std::io::Result<Vec<u8>>,
) -> Result<BTreeMap<String, Vec<u8>>, Error> {
    let mut data = BTreeMap::new();
    let mut put = |key: &str, value: Vec<u8>| -> Result<(), Error> {
        check_key(key)?;
        if data.insert(key.to_owned(), value).is_some() {
            return Err(Error::Usage(format!("key {key:?} given more than once")));
        }
        Ok(())
    };
    for lit in &args.from_literal {
        // The argument may be a bare value: never echo it.
        let (k, v) = lit.split_once('=').ok_or_else(|| {
            Error::Usage("--from-literal needs KEY=VALUE (an argument has no '=')".into())
        })?;
        put(k, v.as_bytes().to_vec())?;
    }
    for var in &args.from_env {
        let value = env(var).ok_or_else(|| {
            Error::Usage(format!(
                "--from-env {var}: the environment variable {var} is not set"
            ))
        })?;
        put(var, value.into_bytes())?;
    }
    for spec in &args.from_file {
        let (key, path) = match spec.split_once('=') {
            Some((k, p)) => (k.to_owned(), p.to_owned()),
            None => {
                let name = Path::new(spec)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .ok_or_else(|| Error::Usage(format!("--from-file {spec:?}: no file name")))?;
                (name, spec.clone())
            }
        };
        let content = read(Path::new(&path))
            .map_err(|e| Error::Usage(format!("--from-file {key}={path}: {e}")))?;
        put(&key, content)?;
    }
    if data.is_empty() {
        return Err(Error::Usage(
            "nothing to set: give --from-literal KEY=VALUE, --from-env VAR or --from-file KEY=PATH"
                .into(),
        ));
    }
    Ok(data)
}

/// The Secret that is applied.
pub fn build_secret(name: &str, namespace: &str, data: &BTreeMap<String, Vec<u8>>) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([
                (INJECT_LABEL.to_owned(), "true".to_owned()),
                (
                    "app.kubernetes.io/managed-by".to_owned(),
                    MANAGED_BY.to_owned(),
                ),
            ])),
            ..Default::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.clone(), ByteString(v.clone())))
                .collect(),
        ),
        ..Default::default()
    }
}

pub async fn set(global: &GlobalArgs, args: &SecretsSetArgs) -> Result<i32, Error> {
    check_dns_subdomain(&args.name)
        .map_err(|r| Error::Usage(format!("invalid secret name {:?}: {r}", args.name)))?;
    let data = collect_data(args, |v| std::env::var(v).ok(), |p| std::fs::read(p))?;
    for key in data.keys().filter(|k| !is_env_name(k)) {
        eprintln!("warning: key {key:?} is not a valid environment variable name; workspaces will not see it");
    }
    let dry_run = args.change.dry_run;
    let format = args.change.output;

    if dry_run == DryRun::Client {
        let ns = client::offline_namespace(global);
        let secret = build_secret(&args.name, &ns, &data);
        output::print(
            &[output::redact_secret(output::to_value(&secret)?)],
            format.unwrap_or(ObjectFormat::Yaml),
        )?;
        return Ok(0);
    }

    let cluster = client::connect(global).await?;
    let ns = cluster.namespace.clone();
    let api: Api<Secret> = Api::namespaced(cluster.client.clone(), &ns);
    // "set" adds or replaces the named keys and keeps the others: merge with
    // what is there, since an apply without a key would remove it.
    let mut merged: BTreeMap<String, Vec<u8>> = api
        .get_opt(&args.name)
        .await
        .map_err(
            cluster.err(
                ApiCall::new("get", "secrets", "Secret")
                    .ns(&ns)
                    .name(&args.name),
            ),
        )?
        .and_then(|s| s.data)
        .map(|d| d.into_iter().map(|(k, v)| (k, v.0)).collect())
        .unwrap_or_default();
    let keys: Vec<String> = data.keys().cloned().collect();
    merged.extend(data);
    let secret = build_secret(&args.name, &ns, &merged);
    let applied = apply(
        &cluster,
        &api,
        &secret,
        dry_run,
        ApiCall::new("patch", "secrets", "Secret").ns(&ns),
    )
    .await?;
    match format {
        Some(f) => output::print(&[output::redact_secret(output::to_value(&applied)?)], f)?,
        None => println!(
            "secret/{} configured (set: {}){}",
            args.name,
            keys.join(", "),
            if dry_run == DryRun::Server {
                " (server dry run)"
            } else {
                ""
            }
        ),
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::ChangeArgs;

    fn args(lit: &[&str], env: &[&str], file: &[&str]) -> SecretsSetArgs {
        SecretsSetArgs {
            name: "devenv-secrets".into(),
            from_literal: lit.iter().map(|s| s.to_string()).collect(),
            from_env: env.iter().map(|s| s.to_string()).collect(),
            from_file: file.iter().map(|s| s.to_string()).collect(),
            change: ChangeArgs {
                dry_run: DryRun::Client,
                output: None,
            },
        }
    }

    #[test]
    fn collects_literals_env_and_files() {
        let a = args(
            &["A=1=2"],
            &["HOME_TOKEN"],
            &["KEY=/x/id_rsa", "/y/config.json"],
        );
        let data = collect_data(
            &a,
            |v| (v == "HOME_TOKEN").then(|| "tok".to_owned()),
            |p| Ok(p.to_string_lossy().as_bytes().to_vec()),
        )
        .unwrap();
        assert_eq!(data["A"], b"1=2");
        assert_eq!(data["HOME_TOKEN"], b"tok");
        assert_eq!(data["KEY"], b"/x/id_rsa");
        assert_eq!(data["config.json"], b"/y/config.json");
    }

    #[test]
    fn errors_never_echo_values() {
        let e = collect_data(
            &args(&["supersecretvalue"], &[], &[]),
            |_| None,
            |_| Ok(vec![]),
        )
        .unwrap_err();
        assert!(!e.to_string().contains("supersecretvalue"), "{e}");
        let e = collect_data(&args(&[], &["MISSING"], &[]), |_| None, |_| Ok(vec![])).unwrap_err();
        assert!(e.to_string().contains("MISSING"));
        let e =
            collect_data(&args(&["A=1", "A=2"], &[], &[]), |_| None, |_| Ok(vec![])).unwrap_err();
        assert!(e.to_string().contains("more than once"));
        assert!(collect_data(&args(&[], &[], &[]), |_| None, |_| Ok(vec![])).is_err());
    }

    #[test]
    fn secret_is_labelled_for_injection_and_redacted_when_printed() {
        let data = BTreeMap::from([("TOKEN".to_owned(), b"hunter2".to_vec())]);
        let s = build_secret("devenv-secrets", "team", &data);
        assert_eq!(s.metadata.labels.as_ref().unwrap()[INJECT_LABEL], "true");
        assert_eq!(s.type_.as_deref(), Some("Opaque"));
        let printed = output::render(
            &[output::redact_secret(output::to_value(&s).unwrap())],
            ObjectFormat::Yaml,
        )
        .unwrap();
        assert!(!printed.contains("aHVudGVyMg"), "{printed}");
        assert!(!printed.contains("hunter2"));
        assert!(printed.contains("TOKEN: <redacted>"), "{printed}");
    }

    #[test]
    fn env_names() {
        assert!(is_env_name("GITHUB_TOKEN"));
        assert!(is_env_name("_x1"));
        assert!(!is_env_name("1X"));
        assert!(!is_env_name("a.b"));
    }
}
