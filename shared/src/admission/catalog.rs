//! What the admission rules know about the cluster beyond the request: the workspaces that
//! exist, who owns them, and the claims of the namespace. The webhook answers from watch
//! caches (no request to the API server per admission); tests answer from [`StaticCluster`].
//!
//! Every lookup can say [`Lookup::Unknown`]: the webhook has not synced its caches yet. A
//! rule that needs the answer then refuses ("retry"), never guesses: the caches are how
//! ownership is proven, so an unsynced cache must not let anything through.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;

use crate::admission::violation::SecretCatalog;

/// The answer of a cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<T> {
    /// The object exists; here is what matters of it.
    Found(T),
    /// No such object.
    Missing,
    /// The cache has not synced yet: nobody knows.
    Unknown,
}

/// What the rules need of a PersistentVolumeClaim (its metadata only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimFacts {
    /// The `devenv.io/workspace` label, `None` when the claim has none.
    pub workspace: Option<String>,
    /// The `devenv.io/owner` annotation.
    pub owner: Option<String>,
    /// `metadata.creationTimestamp`: a snapshot taken before it is of an earlier claim that
    /// had the name.
    pub created: Option<Timestamp>,
}

/// What the rules need of a StatefulSet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatefulSetFacts {
    pub uid: String,
    /// The workspace label of its pod template.
    pub workspace: Option<String>,
    /// The `devenv.io/owner` annotation of the StatefulSet.
    pub owner: Option<String>,
    /// The names of its `volumeClaimTemplates`.
    pub claim_templates: Vec<String>,
    /// It has a deletionTimestamp: no new pods belong to it.
    pub deleting: bool,
}

/// What the rules need of a VolumeSnapshot: what it is a snapshot of.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotFacts {
    /// `spec.source.persistentVolumeClaimName`: the claim (of the snapshot's namespace) it
    /// was taken of; `None` for a pre-provisioned snapshot, whose origin nothing proves.
    pub source_claim: Option<String>,
    /// `metadata.creationTimestamp`.
    pub created: Option<Timestamp>,
}

/// The workspaces and claims of the cluster, as the admission rules see them.
pub trait WorkspaceCatalog {
    /// The claim `namespace/name`, labelled or not.
    fn claim(&self, namespace: &str, name: &str) -> Lookup<ClaimFacts>;
    /// The StatefulSet `namespace/name`, if it is a workspace StatefulSet.
    fn statefulset(&self, namespace: &str, name: &str) -> Lookup<StatefulSetFacts>;
    /// The owner of workspace `workspace` of `namespace`, from any of its objects
    /// (StatefulSet, claims, pods): `Found(None)` when it exists but no owner is recorded
    /// (made before owners were), `Missing` when nothing of it exists.
    fn workspace_owner(&self, namespace: &str, workspace: &str) -> Lookup<Option<String>>;
    /// The VolumeSnapshot `namespace/name` (`snapshot.storage.k8s.io/v1`).
    fn snapshot(&self, namespace: &str, name: &str) -> Lookup<SnapshotFacts>;
}

/// Everything the request-level rules ask: Secrets and workspaces.
pub trait Cluster: SecretCatalog + WorkspaceCatalog {}

impl<T: SecretCatalog + WorkspaceCatalog> Cluster for T {}

/// A cluster with no workspaces, no claims and no injectable Secrets beyond the policy's:
/// what a webhook without API access knows.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptyCluster;

impl SecretCatalog for EmptyCluster {
    fn is_injectable(&self, _namespace: &str, _name: &str) -> bool {
        false
    }
}

impl WorkspaceCatalog for EmptyCluster {
    fn claim(&self, _: &str, _: &str) -> Lookup<ClaimFacts> {
        Lookup::Missing
    }
    fn statefulset(&self, _: &str, _: &str) -> Lookup<StatefulSetFacts> {
        Lookup::Missing
    }
    fn workspace_owner(&self, _: &str, _: &str) -> Lookup<Option<String>> {
        Lookup::Missing
    }
    fn snapshot(&self, _: &str, _: &str) -> Lookup<SnapshotFacts> {
        Lookup::Missing
    }
}

/// A cluster written down in maps (keys `namespace/name`), for tests and tools.
#[derive(Debug, Clone, Default)]
pub struct StaticCluster {
    pub claims: BTreeMap<String, ClaimFacts>,
    pub statefulsets: BTreeMap<String, StatefulSetFacts>,
    /// Workspace owners by `namespace/workspace`, for workspaces known only by their pods.
    pub pod_owners: BTreeMap<String, Option<String>>,
    /// Injectable Secrets, `namespace/name`.
    pub secrets: Vec<String>,
    /// VolumeSnapshots by `namespace/name`.
    pub snapshots: BTreeMap<String, SnapshotFacts>,
    /// Answer [`Lookup::Unknown`] to everything (an unsynced cache).
    pub unsynced: bool,
}

fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

impl StaticCluster {
    /// Adds a claim of `workspace` owned by `owner`.
    pub fn with_claim(mut self, namespace: &str, name: &str, facts: ClaimFacts) -> Self {
        self.claims.insert(key(namespace, name), facts);
        self
    }

    /// Adds a workspace StatefulSet.
    pub fn with_statefulset(
        mut self,
        namespace: &str,
        name: &str,
        facts: StatefulSetFacts,
    ) -> Self {
        self.statefulsets.insert(key(namespace, name), facts);
        self
    }

    /// Adds a VolumeSnapshot.
    pub fn with_snapshot(mut self, namespace: &str, name: &str, facts: SnapshotFacts) -> Self {
        self.snapshots.insert(key(namespace, name), facts);
        self
    }

    /// Records a bare workspace known by its pods.
    pub fn with_pod_owner(mut self, namespace: &str, workspace: &str, owner: Option<&str>) -> Self {
        self.pod_owners
            .insert(key(namespace, workspace), owner.map(str::to_string));
        self
    }
}

impl SecretCatalog for StaticCluster {
    fn is_injectable(&self, namespace: &str, name: &str) -> bool {
        self.secrets.contains(&key(namespace, name))
    }
}

impl WorkspaceCatalog for StaticCluster {
    fn claim(&self, namespace: &str, name: &str) -> Lookup<ClaimFacts> {
        if self.unsynced {
            return Lookup::Unknown;
        }
        match self.claims.get(&key(namespace, name)) {
            Some(c) => Lookup::Found(c.clone()),
            None => Lookup::Missing,
        }
    }

    fn statefulset(&self, namespace: &str, name: &str) -> Lookup<StatefulSetFacts> {
        if self.unsynced {
            return Lookup::Unknown;
        }
        match self.statefulsets.get(&key(namespace, name)) {
            Some(s) => Lookup::Found(s.clone()),
            None => Lookup::Missing,
        }
    }

    fn workspace_owner(&self, namespace: &str, workspace: &str) -> Lookup<Option<String>> {
        if self.unsynced {
            return Lookup::Unknown;
        }
        let prefix = format!("{namespace}/");
        let from_sts = self
            .statefulsets
            .iter()
            .filter(|(k, s)| k.starts_with(&prefix) && s.workspace.as_deref() == Some(workspace))
            .map(|(_, s)| s.owner.clone());
        let from_claims = self
            .claims
            .iter()
            .filter(|(k, c)| k.starts_with(&prefix) && c.workspace.as_deref() == Some(workspace))
            .map(|(_, c)| c.owner.clone());
        let from_pods = self.pod_owners.get(&key(namespace, workspace)).cloned();
        let mut owners = from_sts.chain(from_claims).chain(from_pods);
        match owners.next() {
            // The first recorded owner wins; objects without one count only when none has.
            Some(first) => Lookup::Found(first.or_else(|| owners.flatten().next())),
            None => Lookup::Missing,
        }
    }

    fn snapshot(&self, namespace: &str, name: &str) -> Lookup<SnapshotFacts> {
        if self.unsynced {
            return Lookup::Unknown;
        }
        match self.snapshots.get(&key(namespace, name)) {
            Some(s) => Lookup::Found(s.clone()),
            None => Lookup::Missing,
        }
    }
}
