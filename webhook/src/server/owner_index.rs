//! Which objects of a watch cache carry each workspace label, and the owner each records,
//! kept up to date from the same watch events as the cache.
//!
//! An admission asks "who owns workspace W in namespace N?" for the requests of ordinary
//! users. Answered by scanning the caches, that was one pass over every claim and every
//! workspace pod of the cluster per request: the cost of one admission grew with the
//! cluster, the cost of creating N workspaces with N² (issue 16). The index answers with
//! one hash lookup.

use std::collections::{BTreeMap, HashMap};

use devenv_shared::admission::access::owner_of;
use devenv_shared::admission::ownership::workspace_label;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher::Event;
use kube::Resource;

/// (namespace, name or workspace).
type Key = (String, String);

#[derive(Debug, Default)]
struct Entries {
    /// (namespace, object name) -> (workspace, recorded owner).
    objects: HashMap<Key, (String, Option<String>)>,
    /// (namespace, workspace) -> object name -> recorded owner.
    workspaces: HashMap<Key, BTreeMap<String, Option<String>>>,
}

impl Entries {
    fn remove(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_string(), name.to_string());
        if let Some((workspace, _)) = self.objects.remove(&key) {
            let ws_key = (key.0, workspace);
            if let Some(names) = self.workspaces.get_mut(&ws_key) {
                names.remove(name);
                if names.is_empty() {
                    self.workspaces.remove(&ws_key);
                }
            }
        }
    }

    fn apply(&mut self, meta: &ObjectMeta) {
        let (Some(namespace), Some(name)) = (meta.namespace.as_deref(), meta.name.as_deref())
        else {
            return;
        };
        self.remove(namespace, name);
        let Some(workspace) = workspace_label(meta) else {
            return;
        };
        let owner = owner_of(meta).map(str::to_string);
        self.objects.insert(
            (namespace.to_string(), name.to_string()),
            (workspace.to_string(), owner.clone()),
        );
        self.workspaces
            .entry((namespace.to_string(), workspace.to_string()))
            .or_default()
            .insert(name.to_string(), owner);
    }
}

/// The index of one cache: the live entries, and those of a relist in progress.
#[derive(Debug, Default)]
pub struct OwnerIndex {
    live: Entries,
    /// Between a watch restart (`Init`) and its `InitDone`: the relist being gathered,
    /// swapped in whole (as the cache's store does) so that nothing deleted meanwhile lingers.
    relist: Option<Entries>,
}

impl OwnerIndex {
    /// Follows one watch event of the cache.
    pub fn handle<K: Resource>(&mut self, event: &Event<K>) {
        match event {
            Event::Apply(o) => self.live.apply(o.meta()),
            Event::Delete(o) => {
                let meta = o.meta();
                if let (Some(ns), Some(name)) = (meta.namespace.as_deref(), meta.name.as_deref()) {
                    self.live.remove(ns, name);
                }
            }
            Event::Init => self.relist = Some(Entries::default()),
            Event::InitApply(o) => self
                .relist
                .get_or_insert_with(Entries::default)
                .apply(o.meta()),
            Event::InitDone => {
                if let Some(entries) = self.relist.take() {
                    self.live = entries;
                }
            }
        }
    }

    /// Whether any object of the cache carries workspace `workspace` in `namespace`, and
    /// if so the owner it records: the first recorded one by object name, else `None`
    /// (objects without an owner count only when none has one).
    pub fn owner(&self, namespace: &str, workspace: &str) -> Option<Option<String>> {
        let names = self
            .live
            .workspaces
            .get(&(namespace.to_string(), workspace.to_string()))?;
        Some(names.values().flatten().next().cloned())
    }

    /// How many labelled objects the index holds.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.live.objects.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use devenv_shared::model::keys::{OWNER_ANNOTATION, WORKSPACE_LABEL};
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;

    fn claim(ns: &str, name: &str, ws: Option<&str>, owner: Option<&str>) -> PersistentVolumeClaim {
        let mut c = PersistentVolumeClaim::default();
        c.metadata.namespace = Some(ns.into());
        c.metadata.name = Some(name.into());
        if let Some(ws) = ws {
            c.metadata.labels = Some([(WORKSPACE_LABEL.to_string(), ws.to_string())].into());
        }
        if let Some(o) = owner {
            c.metadata.annotations = Some([(OWNER_ANNOTATION.to_string(), o.to_string())].into());
        }
        c
    }

    #[test]
    fn follows_applies_relabels_and_deletes() {
        let mut idx = OwnerIndex::default();
        idx.handle(&Event::Apply(claim("a", "w-1", Some("w"), Some("alice"))));
        idx.handle(&Event::Apply(claim("a", "x", None, Some("bob"))));
        assert_eq!(idx.owner("a", "w"), Some(Some("alice".into())));
        assert_eq!(idx.owner("b", "w"), None, "another namespace");
        assert_eq!(idx.len(), 1, "unlabelled objects are not indexed");
        // Relabelled to another workspace: no longer w's.
        idx.handle(&Event::Apply(claim("a", "w-1", Some("v"), Some("alice"))));
        assert_eq!(idx.owner("a", "w"), None);
        assert_eq!(idx.owner("a", "v"), Some(Some("alice".into())));
        idx.handle(&Event::Delete(claim("a", "w-1", Some("v"), None)));
        assert_eq!(idx.owner("a", "v"), None);
        assert_eq!(idx.len(), 0);
    }

    #[test]
    fn a_recorded_owner_wins_over_objects_without_one() {
        let mut idx = OwnerIndex::default();
        idx.handle(&Event::Apply(claim("a", "a-first", Some("w"), None)));
        assert_eq!(idx.owner("a", "w"), Some(None), "labelled, no owner");
        idx.handle(&Event::Apply(claim(
            "a",
            "b-second",
            Some("w"),
            Some("alice"),
        )));
        assert_eq!(idx.owner("a", "w"), Some(Some("alice".into())));
    }

    #[test]
    fn a_relist_replaces_everything_at_its_end() {
        let mut idx = OwnerIndex::default();
        idx.handle(&Event::Apply(claim(
            "a",
            "gone",
            Some("old"),
            Some("alice"),
        )));
        idx.handle(&Event::<PersistentVolumeClaim>::Init);
        idx.handle(&Event::InitApply(claim(
            "a",
            "kept",
            Some("new"),
            Some("bob"),
        )));
        // Until the relist is done, the old view answers.
        assert_eq!(idx.owner("a", "old"), Some(Some("alice".into())));
        assert_eq!(idx.owner("a", "new"), None);
        idx.handle(&Event::<PersistentVolumeClaim>::InitDone);
        assert_eq!(
            idx.owner("a", "old"),
            None,
            "deleted while the watch was down"
        );
        assert_eq!(idx.owner("a", "new"), Some(Some("bob".into())));
    }
}
