//! The snapshot source of the ADS server: per node id (`mesh.name`), the
//! proxy's current [`EnvoyResources`] with one version per xDS type, and a
//! `tokio::sync::watch` per node that wakes the node's streams when its
//! snapshot changes.
//!
//! A type's version is a content hash (SHA-256 of its resources' wire bytes,
//! first 16 hex digits); so is each resource's own version (delta xDS). Prost encodes map fields from a `HashMap`, so equal
//! resources can encode differently; [`SnapshotCache::set`] therefore keeps
//! the previous version of a type whose resources compare equal, and a
//! resend happens only when the content really changed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::generate::{EnvoyResources, NamedResource};

/// The resources of one xDS type in a snapshot, with their version.
#[derive(Clone, PartialEq)]
pub struct TypeSnapshot {
    /// Content hash of `resources`.
    pub version: String,
    /// Every resource of the type, sorted by name.
    pub resources: Vec<NamedResource>,
    /// Per resource name, the content hash of that resource alone.
    pub resource_versions: BTreeMap<String, String>,
}

impl TypeSnapshot {
    fn new(resources: Vec<NamedResource>) -> TypeSnapshot {
        let resource_versions = resources
            .iter()
            .map(|r| (r.name.clone(), content_hash(std::slice::from_ref(r))))
            .collect();
        TypeSnapshot {
            version: content_hash(&resources),
            resources,
            resource_versions,
        }
    }

    /// The version of the resource `name`, if the type has it.
    pub fn resource_version(&self, name: &str) -> Option<&str> {
        self.resource_versions.get(name).map(String::as_str)
    }
}

impl std::fmt::Debug for TypeSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: the packed bytes of a Secret hold a private key.
        let names: Vec<&str> = self.resources.iter().map(|r| r.name.as_str()).collect();
        f.debug_struct("TypeSnapshot")
            .field("version", &self.version)
            .field("resources", &names)
            .finish()
    }
}

/// Everything one proxy should have: its generated resources, packed per
/// type URL, each type with its version.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    resources: EnvoyResources,
    types: BTreeMap<&'static str, Arc<TypeSnapshot>>,
}

impl Snapshot {
    /// The snapshot of `resources`, each type versioned by its content hash.
    pub fn new(resources: EnvoyResources) -> Snapshot {
        let types = resources
            .by_type_url()
            .into_iter()
            .map(|(type_url, resources)| (type_url, Arc::new(TypeSnapshot::new(resources))))
            .collect();
        Snapshot { resources, types }
    }

    /// The snapshot of `resources` that follows `previous`: a type whose
    /// resources are equal in both is taken from `previous` as it is
    /// (neither packed nor hashed again, same versions, even when its bytes
    /// would differ in map order); only the changed types are packed.
    pub fn next(resources: EnvoyResources, previous: &Snapshot) -> Snapshot {
        let types = crate::generate::TYPE_URLS
            .iter()
            .map(|type_url| {
                let kept = previous
                    .types
                    .get(type_url)
                    .filter(|_| resources.same_of_type(&previous.resources, type_url));
                let snapshot = match kept {
                    Some(kept) => kept.clone(),
                    None => Arc::new(TypeSnapshot::new(resources.of_type(type_url))),
                };
                (*type_url, snapshot)
            })
            .collect();
        Snapshot { resources, types }
    }

    /// Whether every type has the same version in both.
    fn same_versions(&self, other: &Snapshot) -> bool {
        self.types.len() == other.types.len()
            && self
                .types
                .iter()
                .all(|(type_url, t)| other.version(type_url) == Some(t.version.as_str()))
    }

    /// The resources and version of `type_url`, if the snapshot has that type.
    pub fn get(&self, type_url: &str) -> Option<&TypeSnapshot> {
        self.types.get(type_url).map(|t| &**t)
    }

    /// The version of `type_url`, if the snapshot has that type.
    pub fn version(&self, type_url: &str) -> Option<&str> {
        self.get(type_url).map(|t| t.version.as_str())
    }

    /// The generated resources this snapshot was made from.
    pub fn resources(&self) -> &EnvoyResources {
        &self.resources
    }

    /// The type URLs of the snapshot.
    pub fn type_urls(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.types.keys().copied()
    }
}

/// SHA-256 over (name, type URL, bytes) of every resource, as 16 hex digits.
fn content_hash(resources: &[NamedResource]) -> String {
    let mut hasher = Sha256::new();
    for r in resources {
        for part in [
            r.name.as_bytes(),
            r.resource.type_url.as_bytes(),
            &r.resource.value,
        ] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
    }
    hasher
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

type Slot = watch::Sender<Option<Arc<Snapshot>>>;

/// Per node id, the current snapshot (or none yet). Cheap to clone: clones
/// share the same map. Later code fills it from the store; the ADS server
/// only reads and watches it.
#[derive(Debug, Clone, Default)]
pub struct SnapshotCache {
    nodes: Arc<Mutex<HashMap<String, Slot>>>,
}

impl SnapshotCache {
    /// An empty cache.
    pub fn new() -> SnapshotCache {
        SnapshotCache::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        // The map stays consistent even if a holder panicked: every
        // operation is a single insert or send.
        self.nodes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn slot(nodes: &mut HashMap<String, Slot>, node_id: &str) -> Slot {
        nodes
            .entry(node_id.to_owned())
            .or_insert_with(|| watch::channel(None).0)
            .clone()
    }

    /// Sets the resources of `node_id` and wakes its streams if a type's
    /// version changed. Returns whether it changed.
    pub fn set(&self, node_id: &str, resources: EnvoyResources) -> bool {
        let slot = Self::slot(&mut self.lock(), node_id);
        slot.send_if_modified(|current| {
            let snapshot = match current {
                Some(previous) => {
                    let snapshot = Snapshot::next(resources, previous);
                    if snapshot.same_versions(previous) {
                        return false;
                    }
                    snapshot
                }
                None => Snapshot::new(resources),
            };
            *current = Some(Arc::new(snapshot));
            true
        })
    }

    /// Forgets the snapshot of `node_id`: its streams keep running and get
    /// nothing more until a snapshot is set again.
    pub fn remove(&self, node_id: &str) {
        if let Some(slot) = self.lock().get(node_id) {
            slot.send_if_modified(|current| current.take().is_some());
        }
    }

    /// The current snapshot of `node_id`, if any.
    pub fn get(&self, node_id: &str) -> Option<Arc<Snapshot>> {
        self.lock()
            .get(node_id)
            .and_then(|slot| slot.borrow().clone())
    }

    /// A receiver that sees every snapshot of `node_id`, starting with the
    /// current one (`None` while the node is unknown).
    pub fn watch(&self, node_id: &str) -> watch::Receiver<Option<Arc<Snapshot>>> {
        Self::slot(&mut self.lock(), node_id).subscribe()
    }
}

#[cfg(test)]
mod tests {
    use crate::{CLUSTER_TYPE_URL, LISTENER_TYPE_URL};
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;

    use super::*;

    fn resources(clusters: &[&str]) -> EnvoyResources {
        EnvoyResources {
            clusters: clusters
                .iter()
                .map(|name| Cluster {
                    name: (*name).to_owned(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn versions_are_content_hashes_per_type() {
        let a = Snapshot::new(resources(&["a"]));
        let b = Snapshot::new(resources(&["b"]));
        assert_eq!(a, Snapshot::new(resources(&["a"])));
        assert_ne!(a.version(CLUSTER_TYPE_URL), b.version(CLUSTER_TYPE_URL));
        assert_eq!(a.version(LISTENER_TYPE_URL), b.version(LISTENER_TYPE_URL));
        assert_eq!(a.version(CLUSTER_TYPE_URL).map(str::len), Some(16));
        assert!(a.get("type.googleapis.com/unknown").is_none());
    }

    #[tokio::test]
    async fn set_wakes_watchers_only_on_change() {
        let cache = SnapshotCache::new();
        let mut rx = cache.watch("default.web-1");
        assert!(rx.borrow_and_update().is_none());
        assert!(cache.set("default.web-1", resources(&["a"])));
        assert!(rx.has_changed().unwrap_or(false));
        let first = rx.borrow_and_update().clone();
        assert!(!cache.set("default.web-1", resources(&["a"])));
        assert!(!rx.has_changed().unwrap_or(true), "same content woke");
        cache.set("default.web-1", resources(&["b"]));
        assert!(rx.has_changed().unwrap_or(false));
        assert_ne!(first, rx.borrow_and_update().clone());
        cache.remove("default.web-1");
        assert!(cache.get("default.web-1").is_none());
        assert!(cache.get("default.other").is_none());
    }
}
