//! What the webhook knows of the cluster, when it has Kubernetes API access: watch caches
//! of the injectable Secrets, the workspace StatefulSets, every claim (metadata only) and the
//! workspace pods (metadata only), and the VolumeSnapshots where the cluster serves them
//! (what each is of: a workspace claim filled from a snapshot must be filled from its
//! owner's). The admission rules read them through
//! [`devenv_shared::admission::catalog::Cluster`]; no admission request makes an API call.
//!
//! Admission has no side effects: the webhook creates nothing (the lifecycle controller makes
//! a bare workspace pod's claims once the pod exists). Until every cache has synced, each
//! lookup answers [`Lookup::Unknown`] and the rules that need it refuse with "retry", so an
//! unsynced cache never lets a foreign claim through.
//!
//! Without API access the cluster is
//! [`EmptyCluster`](devenv_shared::admission::catalog::EmptyCluster): no Secret is injectable beyond the
//! policy's, and no workspace StatefulSet is known (so its pods are refused); the webhook
//! still answers every review.

use devenv_shared::admission::access::owner_of;
use devenv_shared::admission::catalog::{
    ClaimFacts, Lookup, SnapshotFacts, StatefulSetFacts, WorkspaceCatalog,
};
use devenv_shared::admission::ownership::workspace_label;
use devenv_shared::admission::violation::SecretCatalog;
use devenv_shared::model::keys::{INJECT_LABEL, WORKSPACE_LABEL};
use devenv_shared::model::snapshot::VolumeSnapshot;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use super::owner_index::OwnerIndex;

/// One watch cache and whether its first list has completed.
struct Mirror<K: Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    synced: Arc<AtomicBool>,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Clone for Mirror<K> {
    fn clone(&self) -> Self {
        Mirror {
            store: self.store.clone(),
            synced: self.synced.clone(),
        }
    }
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Mirror<K> {
    fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// The object `namespace/name`, or why nobody knows.
    fn get(&self, namespace: &str, name: &str) -> Lookup<Arc<K>> {
        if !self.is_synced() {
            return Lookup::Unknown;
        }
        match self.store.get(&ObjectRef::new(name).within(namespace)) {
            Some(o) => Lookup::Found(o),
            None => Lookup::Missing,
        }
    }
}

/// Drives `stream` into a store (and `index`, when given) for ever; marks `synced` after
/// the first complete list.
fn spawn_mirror<K, S>(
    what: &'static str,
    writer: reflector::store::Writer<K>,
    index: Option<Arc<RwLock<OwnerIndex>>>,
    events: S,
    optional: bool,
) -> (Mirror<K>, tokio::task::JoinHandle<()>)
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    K::DynamicType: Send,
{
    let store = writer.as_reader();
    let synced = Arc::new(AtomicBool::new(false));
    let stream = reflector::reflector(writer, events);
    let (ready_store, ready_flag) = (store.clone(), synced.clone());
    let task = tokio::spawn(async move {
        let ready = async move {
            if ready_store.wait_until_ready().await.is_ok() {
                ready_flag.store(true, Ordering::Release);
                tracing::info!(cache = what, objects = ready_store.len(), "cache synced");
            }
        };
        let drive = async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                match (event, &index) {
                    // An optional API (VolumeSnapshots) is absent on most clusters: its
                    // watch fails until it is installed, which is no news.
                    (Err(e), _) if optional => {
                        tracing::debug!(cache = what, error = %e, "watch failed; retrying");
                    }
                    (Err(e), _) => {
                        tracing::warn!(cache = what, error = %e, "watch failed; retrying");
                    }
                    (Ok(event), Some(index)) => index
                        .write()
                        .unwrap_or_else(PoisonError::into_inner)
                        .handle(&event),
                    (Ok(_), None) => {}
                }
            }
        };
        futures::future::join(ready, drive).await;
    });
    (Mirror { store, synced }, task)
}

/// The webhook's view of the cluster: four watch caches.
#[derive(Clone)]
pub struct ClusterCaches {
    secrets: Mirror<PartialObjectMeta<Secret>>,
    statefulsets: Mirror<StatefulSet>,
    claims: Mirror<PartialObjectMeta<PersistentVolumeClaim>>,
    pods: Mirror<PartialObjectMeta<Pod>>,
    /// VolumeSnapshots (`snapshot.storage.k8s.io/v1`), where the cluster serves them: what
    /// each is of, for the rule on where a workspace claim's data may come from. Not part of
    /// readiness: until it syncs, a claim filled from a snapshot is refused ("retry").
    snapshots: Mirror<VolumeSnapshot>,
    /// The claims and pods by workspace label, with their owners ([`OwnerIndex`]).
    claim_owners: Arc<RwLock<OwnerIndex>>,
    pod_owners: Arc<RwLock<OwnerIndex>>,
}

impl std::fmt::Debug for ClusterCaches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCaches")
            .field("secrets", &self.secrets.store.len())
            .field("statefulsets", &self.statefulsets.store.len())
            .field("claims", &self.claims.store.len())
            .field("pods", &self.pods.store.len())
            .field("snapshots", &self.snapshots.store.len())
            .field("synced", &self.is_synced())
            .finish()
    }
}

impl ClusterCaches {
    /// Starts the watches on `client`; the returned tasks run them for ever.
    pub fn start(client: Client) -> (Self, Vec<tokio::task::JoinHandle<()>>) {
        let inject = format!("{INJECT_LABEL}=true");
        let workspace = WORKSPACE_LABEL.to_string();

        let (secret_writer, claim_writer, pod_writer) = (
            reflector::store::Writer::default(),
            reflector::store::Writer::default(),
            reflector::store::Writer::default(),
        );
        let sts_writer = reflector::store::Writer::default();
        let claim_owners = Arc::new(RwLock::new(OwnerIndex::default()));
        let pod_owners = Arc::new(RwLock::new(OwnerIndex::default()));

        let (secrets, t1) = spawn_mirror(
            "injectable secrets",
            secret_writer,
            None,
            watcher(
                Api::<PartialObjectMeta<Secret>>::all(client.clone()),
                watcher::Config::default().labels(&inject),
            )
            .default_backoff()
            .modify(|s| s.managed_fields_mut().clear()),
            false,
        );
        // Every StatefulSet the workspace label marks (the mutating webhook puts it on the
        // StatefulSet itself); the rules read the template's label and claim templates.
        let (statefulsets, t2) = spawn_mirror(
            "workspace statefulsets",
            sts_writer,
            None,
            watcher(
                Api::<StatefulSet>::all(client.clone()),
                watcher::Config::default().labels(&workspace),
            )
            .default_backoff()
            .modify(keep_statefulset_facts),
            false,
        );
        // Every claim, labelled or not: mounting an unlabelled claim is refused too.
        let (claims, t3) = spawn_mirror(
            "claims",
            claim_writer,
            Some(claim_owners.clone()),
            watcher(
                Api::<PartialObjectMeta<PersistentVolumeClaim>>::all(client.clone()),
                watcher::Config::default(),
            )
            .default_backoff()
            .modify(|c| c.managed_fields_mut().clear()),
            false,
        );
        let (pods, t4) = spawn_mirror(
            "workspace pods",
            pod_writer,
            Some(pod_owners.clone()),
            watcher(
                Api::<PartialObjectMeta<Pod>>::all(client.clone()),
                watcher::Config::default().labels(&workspace),
            )
            .default_backoff()
            .modify(|p| p.managed_fields_mut().clear()),
            false,
        );
        let (snapshots, t5) = spawn_mirror(
            "volume snapshots",
            reflector::store::Writer::default(),
            None,
            watcher(
                Api::<VolumeSnapshot>::all(client),
                watcher::Config::default(),
            )
            .default_backoff()
            .modify(|s| {
                s.metadata.managed_fields = None;
                s.status = None;
            }),
            true,
        );
        (
            ClusterCaches {
                secrets,
                statefulsets,
                claims,
                pods,
                snapshots,
                claim_owners,
                pod_owners,
            },
            vec![t1, t2, t3, t4, t5],
        )
    }

    /// Whether every cache has completed its first list.
    pub fn is_synced(&self) -> bool {
        self.secrets.is_synced()
            && self.statefulsets.is_synced()
            && self.claims.is_synced()
            && self.pods.is_synced()
    }

    /// The caches that have not synced yet, for readiness and logs.
    pub fn unsynced(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if !self.secrets.is_synced() {
            out.push("secrets");
        }
        if !self.statefulsets.is_synced() {
            out.push("statefulsets");
        }
        if !self.claims.is_synced() {
            out.push("claims");
        }
        if !self.pods.is_synced() {
            out.push("pods");
        }
        out
    }
}

impl SecretCatalog for ClusterCaches {
    fn is_injectable(&self, namespace: &str, name: &str) -> bool {
        match self.secrets.get(namespace, name) {
            Lookup::Found(s) => s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(INJECT_LABEL))
                .is_some_and(|v| v == "true"),
            // Unsynced: not injectable (the pod is refused naming the Secret; a retry works).
            Lookup::Missing | Lookup::Unknown => false,
        }
    }
}

impl WorkspaceCatalog for ClusterCaches {
    fn claim(&self, namespace: &str, name: &str) -> Lookup<ClaimFacts> {
        match self.claims.get(namespace, name) {
            Lookup::Found(c) => Lookup::Found(ClaimFacts {
                workspace: workspace_label(&c.metadata).map(str::to_string),
                owner: owner_of(&c.metadata).map(str::to_string),
                created: c.metadata.creation_timestamp.as_ref().map(|t| t.0),
            }),
            Lookup::Missing => Lookup::Missing,
            Lookup::Unknown => Lookup::Unknown,
        }
    }

    fn statefulset(&self, namespace: &str, name: &str) -> Lookup<StatefulSetFacts> {
        match self.statefulsets.get(namespace, name) {
            Lookup::Found(s) => Lookup::Found(statefulset_facts(&s)),
            Lookup::Missing => Lookup::Missing,
            Lookup::Unknown => Lookup::Unknown,
        }
    }

    fn snapshot(&self, namespace: &str, name: &str) -> Lookup<SnapshotFacts> {
        match self.snapshots.get(namespace, name) {
            Lookup::Found(s) => Lookup::Found(SnapshotFacts {
                source_claim: s.spec.source.persistent_volume_claim_name.clone(),
                created: s.metadata.creation_timestamp.as_ref().map(|t| t.0),
            }),
            Lookup::Missing => Lookup::Missing,
            Lookup::Unknown => Lookup::Unknown,
        }
    }

    fn workspace_owner(&self, namespace: &str, workspace: &str) -> Lookup<Option<String>> {
        if !self.is_synced() {
            return Lookup::Unknown;
        }
        // A workspace StatefulSet is named like its workspace: one lookup. Claims and bare
        // pods are found by label (claims outlive a deleted StatefulSet).
        let mut owners: Vec<Option<String>> = Vec::new();
        if let Some(sts) = self
            .statefulsets
            .store
            .get(&ObjectRef::new(workspace).within(namespace))
        {
            if statefulset_facts(&sts).workspace.as_deref() == Some(workspace) {
                owners.push(owner_of(&sts.metadata).map(str::to_string));
            }
        }
        for index in [&self.claim_owners, &self.pod_owners] {
            let index = index.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(owner) = index.owner(namespace, workspace) {
                owners.push(owner);
            }
        }
        if owners.is_empty() {
            return Lookup::Missing;
        }
        // The first recorded owner wins; objects without one count only when none has one.
        Lookup::Found(owners.into_iter().flatten().next())
    }
}

/// Drops from a cached StatefulSet what [`statefulset_facts`] never reads: its managed
/// fields, its status, its pod spec and its claim templates' specs. At 1,000 workspaces the
/// full objects were most of the webhook's memory (issue 16: 145 MiB); the rules read only
/// the metadata, the template's labels and the claim templates' names.
fn keep_statefulset_facts(sts: &mut StatefulSet) {
    sts.metadata.managed_fields = None;
    sts.status = None;
    if let Some(spec) = sts.spec.as_mut() {
        spec.template.spec = None;
        for t in spec.volume_claim_templates.iter_mut().flatten() {
            t.spec = None;
            t.status = None;
            t.metadata.managed_fields = None;
        }
    }
}

/// What the rules need of a StatefulSet.
fn statefulset_facts(sts: &StatefulSet) -> StatefulSetFacts {
    let spec = sts.spec.as_ref();
    StatefulSetFacts {
        uid: sts.metadata.uid.clone().unwrap_or_default(),
        workspace: spec
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(workspace_label)
            .map(str::to_string),
        owner: owner_of(&sts.metadata).map(str::to_string),
        claim_templates: spec
            .and_then(|s| s.volume_claim_templates.as_ref())
            .map(|templates| {
                templates
                    .iter()
                    .filter_map(|t| t.metadata.name.clone())
                    .collect()
            })
            .unwrap_or_default(),
        deleting: sts.metadata.deletion_timestamp.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A workspace StatefulSet as `kubectl devenv create` makes it.
    fn workspace_statefulset() -> StatefulSet {
        use devenv_shared::build::workspace::{build, WorkspaceSpec};
        let policy = devenv_shared::model::policy::Policy::default();
        let spec = WorkspaceSpec::new("alice", "team", "example.test/workspace:1");
        let objects = build(&spec, &policy).expect("the default workspace builds");
        let mut sts = objects.stateful_set;
        sts.metadata.uid = Some("u-1".into());
        sts.metadata.managed_fields = Some(vec![Default::default()]);
        sts.status = Some(Default::default());
        sts
    }

    #[test]
    fn trimming_a_cached_statefulset_keeps_every_fact_the_rules_read() {
        let full = workspace_statefulset();
        let mut trimmed = full.clone();
        keep_statefulset_facts(&mut trimmed);
        assert_eq!(statefulset_facts(&trimmed), statefulset_facts(&full));
        let facts = statefulset_facts(&full);
        assert_eq!(facts.workspace.as_deref(), Some("alice"));
        assert_eq!(facts.claim_templates.len(), 3, "{facts:?}");
        assert!(trimmed.status.is_none() && trimmed.metadata.managed_fields.is_none());
        let spec = trimmed.spec.expect("spec kept");
        assert!(spec.template.spec.is_none(), "the pod spec is dropped");
    }
}
