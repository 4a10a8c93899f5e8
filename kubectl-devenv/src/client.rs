//! Connecting to a cluster the way kubectl does: --kubeconfig, else
//! $KUBECONFIG (a list of files, merged), else ~/.kube/config, else the
//! in-cluster service account (when run inside a pod); --context picks the
//! context, and the namespace defaults to the context's.

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::cli::GlobalArgs;
use crate::error::{self, ApiCall, Error};

/// A connected client and what the user should be told about it.
#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
    /// Namespace of workspace commands.
    pub namespace: String,
    /// API server URL, for error messages.
    pub server: String,
}

impl Cluster {
    /// Maps a client error of `call` to a user-facing error.
    pub fn err(&self, call: ApiCall) -> impl FnOnce(kube::Error) -> Error + '_ {
        move |e| error::from_kube(e, &call, &self.server)
    }
}

fn load_kubeconfig(global: &GlobalArgs) -> Result<Option<Kubeconfig>, Error> {
    if let Some(path) = &global.kubeconfig {
        return Kubeconfig::read_from(path)
            .map(Some)
            .map_err(|e| Error::Kubeconfig {
                detail: format!("{}: {}", path.display(), error::chain(&e)),
            });
    }
    match Kubeconfig::read() {
        Ok(k) => Ok(Some(k)),
        // No kubeconfig at all: maybe we run in a pod (in a workspace, say).
        Err(_) if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() => Ok(None),
        Err(e) => Err(Error::Kubeconfig {
            detail: error::chain(&e),
        }),
    }
}

/// The namespace of the chosen context, if the kubeconfig names one.
fn context_namespace(kubeconfig: &Kubeconfig, context: Option<&str>) -> Option<String> {
    let name = context.or(kubeconfig.current_context.as_deref())?;
    kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == name)
        .and_then(|c| c.context.as_ref())
        .and_then(|c| c.namespace.clone())
}

/// The namespace commands act in, without contacting any cluster: -n, else the
/// context's namespace, else "default". A missing or broken kubeconfig is not
/// an error here, so `--dry-run=client` works without one.
pub fn offline_namespace(global: &GlobalArgs) -> String {
    if let Some(ns) = &global.namespace {
        return ns.clone();
    }
    load_kubeconfig(global)
        .ok()
        .flatten()
        .and_then(|k| context_namespace(&k, global.context.as_deref()))
        .unwrap_or_else(|| "default".to_owned())
}

/// The context and kubeconfig file a generated ssh config pins its ProxyCommand to, so
/// that it keeps reaching this cluster when the current context changes: `--context`,
/// else the current context; `--kubeconfig`, else `$KUBECONFIG` when it names one file,
/// else `~/.kube/config` when it exists (with several files in `$KUBECONFIG`, none is
/// pinned: the ProxyCommand then reads the `$KUBECONFIG` of the ssh process).
pub fn pinned_context(global: &GlobalArgs) -> (Option<String>, Option<std::path::PathBuf>) {
    let context = global.context.clone().or_else(|| {
        load_kubeconfig(global)
            .ok()
            .flatten()
            .and_then(|k| k.current_context)
    });
    let kubeconfig = global.kubeconfig.clone().or_else(|| {
        match std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
            Some(v) => {
                let paths: Vec<_> = std::env::split_paths(&v).collect();
                (paths.len() == 1).then(|| paths[0].clone())
            }
            None => std::env::var_os("HOME")
                .map(|h| std::path::PathBuf::from(h).join(".kube").join("config"))
                .filter(|p| p.is_file()),
        }
    });
    let kubeconfig = kubeconfig.map(|p| std::fs::canonicalize(&p).unwrap_or(p));
    (context, kubeconfig)
}

/// Builds a client for the chosen context. Does not contact the server: the
/// first request reports an unreachable cluster, naming its URL.
pub async fn connect(global: &GlobalArgs) -> Result<Cluster, Error> {
    let config = match load_kubeconfig(global)? {
        Some(kubeconfig) => {
            let options = KubeConfigOptions {
                context: global.context.clone(),
                ..Default::default()
            };
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| Error::Kubeconfig {
                    detail: error::chain(&e),
                })?
        }
        None => Config::incluster().map_err(|e| Error::Kubeconfig {
            detail: format!(
                "no kubeconfig, and in-cluster config failed: {}",
                error::chain(&e)
            ),
        })?,
    };
    let server = config.cluster_url.to_string();
    let namespace = global
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    tracing::debug!(%server, %namespace, "connecting");
    let client = Client::try_from(config).map_err(|e| Error::Unreachable {
        server: server.clone(),
        detail: error::chain(&e),
    })?;
    Ok(Cluster {
        client,
        namespace,
        server,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECONFIG: &str = r#"
apiVersion: v1
kind: Config
current-context: a
contexts:
- name: a
  context: {cluster: c, user: u, namespace: team-a}
- name: b
  context: {cluster: c, user: u}
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:1"}
users:
- name: u
  user: {token: t}
"#;

    fn write_kubeconfig() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, KUBECONFIG).unwrap();
        (dir, path)
    }

    #[test]
    fn namespace_comes_from_flag_then_context_then_default() {
        let (_dir, path) = write_kubeconfig();
        let mut g = GlobalArgs {
            kubeconfig: Some(path),
            ..Default::default()
        };
        assert_eq!(offline_namespace(&g), "team-a");
        g.context = Some("b".into());
        assert_eq!(offline_namespace(&g), "default");
        g.namespace = Some("mine".into());
        assert_eq!(offline_namespace(&g), "mine");
    }

    #[test]
    fn missing_kubeconfig_is_not_an_error_offline() {
        let g = GlobalArgs {
            kubeconfig: Some("/nonexistent/kubeconfig".into()),
            ..Default::default()
        };
        assert_eq!(offline_namespace(&g), "default");
    }

    #[tokio::test]
    async fn missing_kubeconfig_is_a_clear_error_online() {
        let g = GlobalArgs {
            kubeconfig: Some("/nonexistent/kubeconfig".into()),
            ..Default::default()
        };
        let e = connect(&g).await.err().unwrap();
        let text = e.to_string();
        assert!(text.contains("/nonexistent/kubeconfig"), "{text}");
        assert!(text.contains("--kubeconfig"), "{text}");
    }

    #[tokio::test]
    async fn context_selects_namespace_and_server() {
        let (_dir, path) = write_kubeconfig();
        let g = GlobalArgs {
            kubeconfig: Some(path),
            context: Some("a".into()),
            ..Default::default()
        };
        let c = connect(&g).await.unwrap();
        assert_eq!(c.namespace, "team-a");
        assert!(c.server.starts_with("https://127.0.0.1:1"), "{}", c.server);
    }
}
