//! A read-through cache over any store: every resource is held in memory, so `get` and `list`
//! never touch the database; writes go to the store.
//!
//! Consistency: the cache is loaded from a consistent [`Snapshot`] and then follows the change
//! feed from the snapshot's revision. An event is applied by re-reading its row
//! ([`ResourceStore::get_stored`]) unless the cache already holds that row at the event's
//! revision or later (each cached row and each recent delete carries the revision that wrote
//! it). Writes made through the cache are applied as soon as they commit, so a reader sees its
//! own writes at once; writes by other processes show up as soon as the feed delivers them
//! (NOTIFY on PostgreSQL, in-process wake-ups otherwise, a 1 s poll as backstop). Writes and
//! event re-reads are serialized by one lock, so an older re-read never overwrites a newer own
//! write. A compacted or replaced change log makes the cache reload from a new snapshot.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use model::{ResourceKey, ResourceType};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use crate::feed::retry_backoff;
use crate::query;
use crate::{
    Action, Applied, ChangeEvent, ChangeFeed, ListPage, ListQuery, Op, ResourceStore, Result,
    Revision, Snapshot, StoreError, Stored,
};

/// A [`ResourceStore`] that serves reads from memory and writes through to `inner`.
pub struct CachedStore {
    inner: Arc<dyn ResourceStore>,
    shared: Arc<Shared>,
    follower: JoinHandle<()>,
}

impl Drop for CachedStore {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

struct Shared {
    state: RwLock<State>,
    /// Serializes own writes, event re-reads and reloads.
    writes: Mutex<()>,
    /// The feed revision the cache has caught up with.
    followed: watch::Sender<Revision>,
}

#[derive(Default)]
struct State {
    by_type: HashMap<ResourceType, BTreeMap<(String, String), Stored>>,
    /// Rows deleted through the cache, with the revision of the delete, until the feed passes
    /// it: keeps an older event from re-reading them in vain.
    tombstones: HashMap<ResourceKey, Revision>,
}

impl State {
    fn load(&mut self, snapshot: Snapshot) {
        self.by_type.clear();
        self.tombstones.clear();
        for stored in snapshot.resources {
            self.put(stored);
        }
    }

    /// The newest revision the cache knows for `key`.
    fn known(&self, key: &ResourceKey) -> Option<Revision> {
        let row = self
            .by_type
            .get(&key.kind)
            .and_then(|rows| rows.get(&(key.mesh.clone(), key.name.clone())))
            .map(|s| s.revision);
        row.max(self.tombstones.get(key).copied())
    }

    fn put(&mut self, stored: Stored) {
        let key = stored.resource.key();
        self.tombstones.remove(&key);
        self.by_type
            .entry(key.kind)
            .or_default()
            .insert((key.mesh, key.name), stored);
    }

    fn remove(&mut self, key: &ResourceKey, tombstone: Option<Revision>) {
        if let Some(rows) = self.by_type.get_mut(&key.kind) {
            rows.remove(&(key.mesh.clone(), key.name.clone()));
        }
        if let Some(revision) = tombstone {
            self.tombstones.insert(key.clone(), revision);
        }
    }

    fn apply_own(&mut self, applied: &[Applied]) {
        for change in applied {
            if self
                .known(&change.key)
                .is_some_and(|known| known >= change.revision)
            {
                continue;
            }
            match (&change.action, &change.resource) {
                (Action::Delete, _) | (_, None) => self.remove(&change.key, Some(change.revision)),
                (_, Some(resource)) => self.put(Stored {
                    resource: resource.clone(),
                    revision: change.revision,
                }),
            }
        }
    }
}

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl CachedStore {
    /// Loads every resource of `inner` and starts following its change feed.
    pub async fn new(inner: Arc<dyn ResourceStore>) -> Result<CachedStore> {
        let snapshot = inner.snapshot().await?;
        let revision = snapshot.revision;
        let mut state = State::default();
        state.load(snapshot);
        let shared = Arc::new(Shared {
            state: RwLock::new(state),
            writes: Mutex::new(()),
            followed: watch::Sender::new(revision),
        });
        let follower = tokio::spawn(follow(inner.clone(), shared.clone(), revision));
        Ok(CachedStore {
            inner,
            shared,
            follower,
        })
    }

    /// The store behind the cache.
    pub fn inner(&self) -> &Arc<dyn ResourceStore> {
        &self.inner
    }

    /// The revision up to which the cache has applied the change feed.
    pub fn followed_revision(&self) -> Revision {
        *self.shared.followed.borrow()
    }

    /// Waits until the cache has applied the change feed up to `revision`.
    pub async fn wait_for(&self, revision: Revision) {
        let mut rx = self.shared.followed.subscribe();
        // The sender lives in `self`, so this only ends when the revision is reached.
        let _ = rx.wait_for(|followed| *followed >= revision).await;
    }
}

/// Follows the change feed of `inner` from `cursor`, forever.
async fn follow(inner: Arc<dyn ResourceStore>, shared: Arc<Shared>, mut cursor: Revision) {
    let mut retry = retry_backoff();
    loop {
        let mut feed = inner.changes(cursor);
        let mut reload = false;
        while let Some(item) = feed.next().await {
            match item {
                Ok(event) => {
                    apply_event(&inner, &shared, &event).await;
                    cursor = event.revision;
                    shared.followed.send_replace(cursor);
                    retry = retry_backoff();
                }
                Err(e) if e.is_transient() => {
                    tracing::debug!(error = %e, "cache: change feed interrupted; it retries");
                }
                Err(e @ (StoreError::Compacted { .. } | StoreError::RevisionAhead { .. })) => {
                    tracing::warn!(error = %e, "cache: reloading every resource");
                    reload = true;
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cache: change feed failed; restarting it");
                    break;
                }
            }
        }
        if reload {
            let _writes = shared.writes.lock().await;
            match inner.snapshot().await {
                Ok(snapshot) => {
                    cursor = snapshot.revision;
                    shared.write().load(snapshot);
                    shared.followed.send_replace(cursor);
                    continue;
                }
                Err(e) => tracing::warn!(error = %e, "cache: reload failed; retrying"),
            }
        }
        tokio::time::sleep(retry.next().unwrap_or(Duration::from_secs(5))).await;
    }
}

/// Brings the cached row of `event` up to date, retrying while the store is unavailable. The
/// write lock is held for one attempt at a time, so own writes are not stuck behind retries
/// (they fail with `Unavailable` themselves meanwhile).
async fn apply_event(inner: &Arc<dyn ResourceStore>, shared: &Shared, event: &ChangeEvent) {
    let key = event.key();
    let mut retry = retry_backoff();
    loop {
        let writes = shared.writes.lock().await;
        let fresh = shared
            .read()
            .known(&key)
            .is_none_or(|known| known < event.revision);
        if !fresh {
            break;
        }
        match inner.get_stored(&key).await {
            Ok(Some(stored)) => {
                shared.write().put(stored);
                break;
            }
            Ok(None) => {
                shared.write().remove(&key, None);
                break;
            }
            Err(e) if e.is_transient() => {
                drop(writes);
                tracing::debug!(error = %e, "cache: re-reading {key} failed; retrying");
                tokio::time::sleep(retry.next().unwrap_or(Duration::from_secs(5))).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cache: cannot read {key}; leaving it out");
                shared.write().remove(&key, None);
                break;
            }
        }
    }
    let mut state = shared.write();
    if !state.tombstones.is_empty() {
        state
            .tombstones
            .retain(|_, revision| *revision > event.revision);
    }
}

#[async_trait]
impl ResourceStore for CachedStore {
    async fn get(&self, key: &ResourceKey) -> Result<model::Resource> {
        let key = ResourceKey::new(key.kind, key.mesh.clone(), key.name.clone());
        let state = self.shared.read();
        match state
            .by_type
            .get(&key.kind)
            .and_then(|rows| rows.get(&(key.mesh.clone(), key.name.clone())))
        {
            Some(stored) => Ok(stored.resource.clone()),
            None => Err(StoreError::NotFound(key)),
        }
    }

    async fn list(&self, query: &ListQuery) -> Result<ListPage> {
        let state = self.shared.read();
        let Some(rows) = state.by_type.get(&query.kind) else {
            return Ok(query::page(query, std::iter::empty()));
        };
        let page = match &query.mesh {
            Some(mesh) if query.kind.is_mesh_scoped() => {
                let from = (mesh.clone(), String::new());
                let matching = rows
                    .range(from..)
                    .take_while(|((m, _), _)| m == mesh)
                    .map(|(_, s)| &s.resource)
                    .filter(|r| query::matches(query, r));
                query::page(query, matching)
            }
            _ => query::page(
                query,
                rows.values()
                    .map(|s| &s.resource)
                    .filter(|r| query::matches(query, r)),
            ),
        };
        Ok(page)
    }

    async fn revision(&self) -> Result<Revision> {
        self.inner.revision().await
    }

    /// The inner store's feed, each event held back until the cache has applied it: a reader
    /// that reacts to an event by reading through the cache sees that change (or a newer one).
    fn changes(&self, after: Revision) -> ChangeFeed {
        let followed = self.shared.followed.subscribe();
        self.inner
            .changes(after)
            .then(move |item| {
                let mut followed = followed.clone();
                async move {
                    if let Ok(event) = &item {
                        let revision = event.revision;
                        // Bounded: a cache stuck on an unavailable store must not stop the feed.
                        let _ = tokio::time::timeout(
                            Duration::from_secs(5),
                            followed.wait_for(|f| *f >= revision),
                        )
                        .await;
                    }
                    item
                }
            })
            .boxed()
    }

    async fn commit(&self, ops: Vec<Op>) -> Result<Vec<Applied>> {
        let _writes = self.shared.writes.lock().await;
        let applied = self.inner.commit(ops).await?;
        self.shared.write().apply_own(&applied);
        Ok(applied)
    }

    async fn get_stored(&self, key: &ResourceKey) -> Result<Option<Stored>> {
        let key = ResourceKey::new(key.kind, key.mesh.clone(), key.name.clone());
        let state = self.shared.read();
        Ok(state
            .by_type
            .get(&key.kind)
            .and_then(|rows| rows.get(&(key.mesh, key.name)))
            .cloned())
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        self.inner.snapshot().await
    }

    async fn prune_changes(&self, keep_after: Revision) -> Result<u64> {
        self.inner.prune_changes(keep_after).await
    }

    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
}
