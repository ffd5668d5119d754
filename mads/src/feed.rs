//! Keeps the current [`Snapshot`] equal to [`crate::assign::assignments`] of
//! the store's Meshes and Dataplanes, driven by the change feed (no polling
//! loop): at start (and whenever the feed is lost) it reads every Mesh and
//! Dataplane; then a change of a Dataplane recomputes that dataplane's
//! assignment, a change of a Mesh those of its dataplanes. Changes that are
//! already waiting are applied together before one new snapshot is
//! published (each assignment is rendered when it is computed, a snapshot
//! only joins them), and a snapshot is published only when its version changed, so
//! a long-polling client wakes once per real change.
//!
//! A dataplane whose metrics configuration is invalid is logged and left
//! out; the others are served.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use model::{Resource, ResourceKey, ResourceType};
use store::{ChangeEvent, ListQuery, ResourceStore, StoreError};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::assign;
use crate::metrics::MadsMetrics;
use crate::snapshot::{Rendered, Snapshot};

/// Wait before retrying after the store failed.
const RETRY: Duration = Duration::from_secs(1);

/// The receiver of the current snapshot (starts empty, version of no
/// assignments) and the task that keeps it current until `stop` resolves.
pub fn start(
    store: Arc<dyn ResourceStore>,
    metrics: MadsMetrics,
    stop: impl Future<Output = ()> + Send + 'static,
) -> (
    watch::Receiver<Arc<Snapshot>>,
    impl Future<Output = ()> + Send + 'static,
) {
    let (tx, rx) = watch::channel(Arc::new(Snapshot::new(Vec::new())));
    let follow_store = store.clone();
    let mut feed = Feed {
        store,
        tx,
        metrics,
        meshes: BTreeMap::new(),
        dataplanes: BTreeMap::new(),
    };
    let task = async move {
        tokio::pin!(stop);
        tokio::select! {
            () = &mut stop => {}
            () = store::follow::follow(follow_store.as_ref(), &mut feed, RETRY) => {}
        }
    };
    (rx, task)
}

/// A Dataplane and its rendered assignment (`None`: not assigned).
type Entry = (Resource, Option<Arc<Rendered>>);

struct Feed {
    store: Arc<dyn ResourceStore>,
    tx: watch::Sender<Arc<Snapshot>>,
    metrics: MadsMetrics,
    meshes: BTreeMap<String, Resource>,
    /// (mesh, name) → the Dataplane and its assignment, rendered.
    dataplanes: BTreeMap<(String, String), Entry>,
}

#[store::follow::async_trait]
impl store::follow::Follower for Feed {
    fn name(&self) -> &'static str {
        "MADS"
    }

    async fn resync(&mut self, _store: &dyn ResourceStore) -> Result<(), StoreError> {
        self.read_all().await?;
        self.publish();
        Ok(())
    }

    /// Applies a burst of changes, then publishes once.
    async fn apply(
        &mut self,
        _store: &dyn ResourceStore,
        batch: Vec<ChangeEvent>,
    ) -> Result<(), StoreError> {
        for event in &batch {
            self.apply_one(event).await?;
        }
        self.publish();
        Ok(())
    }
}

impl Feed {
    /// Reads every Mesh and Dataplane.
    async fn read_all(&mut self) -> Result<(), StoreError> {
        let meshes = self
            .store
            .list(&ListQuery::all(ResourceType::Mesh))
            .await?
            .items;
        let dataplanes = self
            .store
            .list(&ListQuery::all(ResourceType::Dataplane))
            .await?
            .items;
        self.meshes = meshes
            .into_iter()
            .map(|m| (m.meta.name.clone(), m))
            .collect();
        self.dataplanes.clear();
        for dataplane in dataplanes {
            let assignment = self.assign(&dataplane);
            self.dataplanes.insert(
                (dataplane.meta.mesh.clone(), dataplane.meta.name.clone()),
                (dataplane, assignment),
            );
        }
        Ok(())
    }

    async fn apply_one(&mut self, event: &ChangeEvent) -> Result<(), StoreError> {
        match event.kind {
            ResourceType::Mesh => {
                match self.read(&event.key()).await? {
                    Some(mesh) => self.meshes.insert(event.name.clone(), mesh),
                    None => self.meshes.remove(&event.name),
                };
                let keys: Vec<(String, String)> = self
                    .dataplanes
                    .range((event.name.clone(), String::new())..)
                    .take_while(|((mesh, _), _)| *mesh == event.name)
                    .map(|(key, _)| key.clone())
                    .collect();
                for key in keys {
                    if let Some((dataplane, _)) = self.dataplanes.get(&key) {
                        let assignment = self.assign(dataplane);
                        if let Some(entry) = self.dataplanes.get_mut(&key) {
                            entry.1 = assignment;
                        }
                    }
                }
            }
            ResourceType::Dataplane => {
                let key = (event.mesh.clone(), event.name.clone());
                match self.read(&event.key()).await? {
                    Some(dataplane) => {
                        let assignment = self.assign(&dataplane);
                        self.dataplanes.insert(key, (dataplane, assignment));
                    }
                    None => {
                        self.dataplanes.remove(&key);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn read(&self, key: &ResourceKey) -> Result<Option<Resource>, StoreError> {
        Ok(self.store.get_stored(key).await?.map(|s| s.resource))
    }

    fn assign(&self, dataplane: &Resource) -> Option<Arc<Rendered>> {
        let mesh = self.meshes.get(&dataplane.meta.mesh)?;
        match assign::assignment(mesh, dataplane) {
            Ok(assignment) => assignment.map(|a| Arc::new(Rendered::new(a))),
            Err(skipped) => {
                warn!(
                    mesh = skipped.mesh,
                    dataplane = skipped.dataplane,
                    reason = skipped.reason,
                    "MADS: dataplane left out of the monitoring assignments"
                );
                None
            }
        }
    }

    /// Publishes the current assignments when their version changed.
    fn publish(&self) {
        let assignments: Vec<Arc<Rendered>> = self
            .dataplanes
            .values()
            .filter_map(|(_, a)| a.clone())
            .collect();
        let snapshot = Snapshot::from_rendered(assignments);
        self.metrics.set_targets(snapshot.targets());
        self.tx.send_if_modified(|current| {
            if current.version() == snapshot.version() {
                return false;
            }
            debug!(
                version = snapshot.version(),
                targets = snapshot.targets(),
                "MADS: new monitoring assignments"
            );
            *current = Arc::new(snapshot);
            true
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(yaml: &str) -> Resource {
        model::format::parse_documents(yaml).unwrap().remove(0)
    }

    #[tokio::test]
    async fn a_new_dataplane_wakes_a_watcher() {
        let store: Arc<dyn ResourceStore> = Arc::new(store::memory::MemoryStore::new());
        store
            .create(
                parse("type: Mesh\nname: default\nmetrics:\n  enabledBackend: p\n  backends:\n  - name: p\n    type: prometheus\n"),
                None,
            )
            .await
            .unwrap();
        let (mut rx, task) = start(
            store.clone(),
            MadsMetrics::default(),
            std::future::pending(),
        );
        let task = tokio::spawn(task);
        // The initial sync publishes nothing new (no targets), then the dataplane arrives.
        let before = rx.borrow_and_update().version().to_string();
        store
            .create(
                parse("type: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  address: 10.0.0.1\n  inbound:\n  - port: 8080\n    tags:\n      kuma.io/service: web\n"),
                None,
            )
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                rx.changed().await.unwrap();
                if rx.borrow().targets() == 1 {
                    break;
                }
            }
        })
        .await
        .expect("the new dataplane was not published");
        assert_ne!(rx.borrow().version(), before);
        // Turning metrics off removes it.
        let mut mesh = store
            .get(&ResourceKey::new(ResourceType::Mesh, "", "default"))
            .await
            .unwrap();
        if let model::Spec::Mesh(spec) = &mut mesh.spec {
            spec.metrics = None;
        }
        store.update(mesh).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                rx.changed().await.unwrap();
                if rx.borrow().targets() == 0 {
                    break;
                }
            }
        })
        .await
        .expect("the mesh change was not published");
        task.abort();
    }
}
