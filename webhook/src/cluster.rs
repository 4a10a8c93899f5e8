//! What the webhook does with Kubernetes API access, when it has it: a cache of the
//! injectable Secrets (metadata only) and the claims of bare workspace pods.
//!
//! Without API access the catalog is empty (no Secret is injectable) and claims are not
//! created; the webhook still answers every review.

use crate::metrics::{Metrics, ReloadResult};
use devenv_shared::keys::{INJECT_LABEL, WEBHOOK_FIELD_MANAGER};
use devenv_shared::validate::SecretCatalog;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolumeClaim, Secret};
use kube::api::{Api, PartialObjectMeta, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// No Secret is injectable: the catalog without API access.
#[derive(Debug, Default, Clone, Copy)]
pub struct EmptyCatalog;

impl SecretCatalog for EmptyCatalog {
    fn is_injectable(&self, _namespace: &str, _name: &str) -> bool {
        false
    }
}

/// The Secrets labelled `devenv.io/inject=true`, mirrored by a reflector (metadata only).
#[derive(Clone)]
pub struct SecretStoreCatalog {
    store: Store<PartialObjectMeta<Secret>>,
    synced: Arc<AtomicBool>,
}

impl std::fmt::Debug for SecretStoreCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretStoreCatalog")
            .field("secrets", &self.store.len())
            .field("synced", &self.is_synced())
            .finish()
    }
}

impl SecretStoreCatalog {
    /// Starts the reflector on `client`; the returned task runs it for ever.
    pub fn start(client: Client) -> (Self, tokio::task::JoinHandle<()>) {
        let (store, writer) = reflector::store::<PartialObjectMeta<Secret>>();
        let synced = Arc::new(AtomicBool::new(false));
        let api: Api<PartialObjectMeta<Secret>> = Api::all(client);
        let selector = format!("{INJECT_LABEL}=true");
        let config = watcher::Config::default().labels(&selector);
        let stream = reflector::reflector(writer, watcher(api, config).default_backoff());
        let ready_store = store.clone();
        let ready_flag = synced.clone();
        let task = tokio::spawn(async move {
            let ready = async move {
                if ready_store.wait_until_ready().await.is_ok() {
                    ready_flag.store(true, Ordering::Release);
                    tracing::info!(
                        secrets = ready_store.len(),
                        "injectable Secret catalog synced"
                    );
                }
            };
            let drive = stream.for_each(|event| async move {
                if let Err(e) = event {
                    tracing::warn!(error = %e, "watching injectable Secrets failed; retrying");
                }
            });
            // `ready` finishes first (or never); `drive` runs for ever.
            futures::future::join(ready, drive).await;
        });
        (SecretStoreCatalog { store, synced }, task)
    }

    /// Whether the first list has completed.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }
}

impl SecretCatalog for SecretStoreCatalog {
    fn is_injectable(&self, namespace: &str, name: &str) -> bool {
        self.store
            .get(&ObjectRef::new(name).within(namespace))
            .is_some_and(|s| {
                s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(INJECT_LABEL))
                    .is_some_and(|v| v == "true")
            })
    }
}

/// Creates the claims of bare workspace pods (never deletes anything).
#[derive(Clone)]
pub struct ClaimEnsurer {
    client: Client,
    recorder: Recorder,
}

impl std::fmt::Debug for ClaimEnsurer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimEnsurer").finish_non_exhaustive()
    }
}

/// The pod a claim is for, for logs and Events.
#[derive(Debug, Clone)]
pub struct PodRef {
    /// Namespace of the pod (and of its claims unless they name one).
    pub namespace: String,
    /// Name of the pod; empty when the API server has not generated it yet.
    pub name: String,
    /// Workspace name, when known.
    pub workspace: Option<String>,
}

impl ClaimEnsurer {
    /// An ensurer acting with `client`.
    pub fn new(client: Client) -> Self {
        let reporter = Reporter {
            controller: WEBHOOK_FIELD_MANAGER.to_owned(),
            instance: std::env::var("POD_NAME").ok(),
        };
        ClaimEnsurer {
            recorder: Recorder::new(client.clone(), reporter),
            client,
        }
    }

    /// Creates every claim that does not exist yet. An existing claim is left alone
    /// (create answers 409); failures are logged, counted and reported as a Warning Event
    /// on the pod, and never stop the pod from being admitted.
    pub async fn ensure(&self, pod: &PodRef, claims: &[PersistentVolumeClaim], metrics: &Metrics) {
        let params = PostParams {
            field_manager: Some(WEBHOOK_FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        for claim in claims {
            let name = claim.metadata.name.as_deref().unwrap_or_default();
            let namespace = claim
                .metadata
                .namespace
                .as_deref()
                .unwrap_or(pod.namespace.as_str());
            let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
            match api.create(&params, claim).await {
                Ok(_) => {
                    metrics.claim(ReloadResult::Ok);
                    tracing::info!(namespace, claim = name, pod = %pod.name,
                        workspace = pod.workspace.as_deref().unwrap_or_default(),
                        "created claim for bare workspace pod");
                }
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    metrics.claim(ReloadResult::Ok);
                    tracing::debug!(namespace, claim = name, "claim already exists");
                }
                Err(e) => {
                    metrics.claim(ReloadResult::Error);
                    tracing::error!(namespace, claim = name, pod = %pod.name,
                        workspace = pod.workspace.as_deref().unwrap_or_default(), error = %e,
                        "cannot create claim; the pod is admitted but stays Pending until the claim exists");
                    self.report(pod, namespace, name, &e).await;
                }
            }
        }
    }

    async fn report(&self, pod: &PodRef, namespace: &str, claim: &str, error: &kube::Error) {
        if pod.name.is_empty() {
            return; // nothing to attach an Event to yet; the log line above names the claim
        }
        let reference = ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Pod".to_owned()),
            name: Some(pod.name.clone()),
            namespace: Some(pod.namespace.clone()),
            ..ObjectReference::default()
        };
        let mut note = format!("cannot create PersistentVolumeClaim {namespace}/{claim}: {error}");
        if note.len() > 1000 {
            let mut cut = 1000;
            while !note.is_char_boundary(cut) {
                cut -= 1;
            }
            note.truncate(cut);
        }
        let event = Event {
            type_: EventType::Warning,
            reason: "ClaimNotCreated".to_owned(),
            note: Some(note),
            action: "CreateClaim".to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &reference).await {
            tracing::warn!(error = %e, claim, "cannot publish Event about the missing claim");
        }
    }
}
