//! The memory backend: the same semantics as the SQL backends (versions, owners, cascades,
//! atomic batches, a dense change log) in one process, nothing persisted. For tests and
//! `KUMA_STORE_TYPE=memory`.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;
use model::{Resource, ResourceKey, ResourceType};
use time::OffsetDateTime;
use tokio::sync::{OwnedRwLockWriteGuard, RwLock};

use crate::engine::{self, WriteTxn};
use crate::feed::{self, ChangeBatch, ChangeSource, Waker};
use crate::query;
use crate::{
    Applied, ChangeEvent, ChangeFeed, ListPage, ListQuery, Op, ResourceStore, Result, Revision,
    Snapshot, Stored,
};

/// The backend name errors use.
pub const BACKEND: &str = "memory";

/// (type, mesh, name): iteration order is type, then (mesh, name), as lists sort.
type RowKey = (ResourceType, String, String);

fn row_key(key: &ResourceKey) -> RowKey {
    (key.kind, key.mesh.clone(), key.name.clone())
}

#[derive(Clone, Debug)]
struct Row {
    stored: Stored,
    owner: Option<ResourceKey>,
}

#[derive(Debug, Default)]
struct State {
    rows: BTreeMap<RowKey, Row>,
    /// Events `pruned_through + 1 ..= revision`, in order.
    changes: VecDeque<ChangeEvent>,
    revision: Revision,
    pruned_through: Revision,
}

/// A store held in this process only.
#[derive(Clone, Debug)]
pub struct MemoryStore {
    state: Arc<RwLock<State>>,
    waker: Waker,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        MemoryStore {
            state: Arc::new(RwLock::new(State::default())),
            waker: Waker::new(),
        }
    }
}

/// A write in progress: changes go straight into the state and are undone on drop unless
/// committed.
struct Txn {
    state: OwnedRwLockWriteGuard<State>,
    undo: Vec<(RowKey, Option<Row>)>,
    pending: Vec<ChangeEvent>,
    committed: bool,
}

impl Txn {
    fn put(&mut self, key: RowKey, row: Option<Row>) {
        let old = match row {
            Some(row) => self.state.rows.insert(key.clone(), row),
            None => self.state.rows.remove(&key),
        };
        self.undo.push((key, old));
    }

    fn commit(mut self) {
        let pending = std::mem::take(&mut self.pending);
        if let Some(last) = pending.last() {
            self.state.revision = last.revision;
        }
        self.state.changes.extend(pending);
        self.undo.clear();
        self.committed = true;
    }
}

impl Drop for Txn {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        while let Some((key, old)) = self.undo.pop() {
            match old {
                Some(row) => self.state.rows.insert(key, row),
                None => self.state.rows.remove(&key),
            };
        }
    }
}

#[async_trait]
impl WriteTxn for Txn {
    async fn lock(&mut self) -> Result<Revision> {
        // The write guard is the lock.
        Ok(self.state.revision)
    }

    async fn get(&mut self, key: &ResourceKey) -> Result<Option<Stored>> {
        Ok(self
            .state
            .rows
            .get(&row_key(key))
            .map(|row| row.stored.clone()))
    }

    async fn insert(
        &mut self,
        resource: &Resource,
        owner: Option<&ResourceKey>,
        revision: Revision,
    ) -> Result<bool> {
        let key = row_key(&resource.key());
        if self.state.rows.contains_key(&key) {
            return Ok(false);
        }
        let row = Row {
            stored: Stored {
                resource: resource.clone(),
                revision,
            },
            owner: owner.cloned(),
        };
        self.put(key, Some(row));
        Ok(true)
    }

    async fn update(
        &mut self,
        resource: &Resource,
        expected: i64,
        revision: Revision,
    ) -> Result<Option<OffsetDateTime>> {
        let key = row_key(&resource.key());
        let Some(old) = self.state.rows.get(&key) else {
            return Ok(None);
        };
        if i64::try_from(old.stored.resource.meta.version).ok() != Some(expected) {
            return Ok(None);
        }
        let created = old.stored.resource.meta.creation_time;
        let mut stored = resource.clone();
        stored.meta.creation_time = created;
        let row = Row {
            stored: Stored {
                resource: stored,
                revision,
            },
            owner: old.owner.clone(),
        };
        self.put(key, Some(row));
        Ok(Some(created))
    }

    async fn cascade(&mut self, key: &ResourceKey) -> Result<Vec<ResourceKey>> {
        Ok(cascade(&self.state.rows, key))
    }

    async fn delete(&mut self, keys: &[ResourceKey]) -> Result<()> {
        for key in keys {
            self.put(row_key(key), None);
        }
        Ok(())
    }

    async fn record(&mut self, events: &[ChangeEvent]) -> Result<()> {
        self.pending.extend_from_slice(events);
        Ok(())
    }
}

/// `root` and everything deleted with it: owned resources recursively and, for a Mesh, every
/// resource in it.
fn cascade(rows: &BTreeMap<RowKey, Row>, root: &ResourceKey) -> Vec<ResourceKey> {
    if !rows.contains_key(&row_key(root)) {
        return Vec::new();
    }
    let mut owned: HashMap<&ResourceKey, Vec<ResourceKey>> = HashMap::new();
    let mut by_mesh: HashMap<&str, Vec<ResourceKey>> = HashMap::new();
    for ((kind, mesh, name), row) in rows {
        let key = ResourceKey {
            kind: *kind,
            mesh: mesh.clone(),
            name: name.clone(),
        };
        if let Some(owner) = &row.owner {
            owned.entry(owner).or_default().push(key.clone());
        }
        if !mesh.is_empty() {
            by_mesh.entry(mesh.as_str()).or_default().push(key);
        }
    }
    let mut seen: HashSet<ResourceKey> = HashSet::from([root.clone()]);
    let mut out = vec![root.clone()];
    let mut queue = vec![root.clone()];
    while let Some(key) = queue.pop() {
        let mut next: Vec<&ResourceKey> = owned
            .get(&key)
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        if key.kind == ResourceType::Mesh
            && let Some(members) = by_mesh.get(key.name.as_str())
        {
            next.extend(members.iter());
        }
        for child in next {
            if seen.insert(child.clone()) {
                out.push(child.clone());
                queue.push(child.clone());
            }
        }
    }
    out
}

struct Source(Arc<RwLock<State>>);

#[async_trait]
impl ChangeSource for Source {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn read_changes(&self, after: Revision, limit: u32) -> Result<ChangeBatch> {
        let state = self.0.read().await;
        let start =
            usize::try_from(after.saturating_sub(state.pruned_through)).unwrap_or(usize::MAX);
        let events = state
            .changes
            .iter()
            .skip(start)
            .take(limit as usize)
            .map(|e| (e.revision, Some(e.clone())))
            .collect();
        Ok(ChangeBatch {
            current: state.revision,
            pruned_through: state.pruned_through,
            events,
        })
    }
}

#[async_trait]
impl ResourceStore for MemoryStore {
    async fn list(&self, query: &ListQuery) -> Result<ListPage> {
        let state = self.state.read().await;
        let mesh = query.mesh.as_ref().filter(|_| query.kind.is_mesh_scoped());
        let start = (query.kind, mesh.cloned().unwrap_or_default(), String::new());
        let matching = state
            .rows
            .range(start..)
            .take_while(|((kind, m, _), _)| {
                *kind == query.kind && mesh.is_none_or(|mesh| m == mesh)
            })
            .map(|(_, row)| &row.stored.resource)
            .filter(|r| query::matches(query, r));
        Ok(query::page(query, matching))
    }

    async fn revision(&self) -> Result<Revision> {
        Ok(self.state.read().await.revision)
    }

    fn changes(&self, after: Revision) -> ChangeFeed {
        feed::feed(
            Arc::new(Source(self.state.clone())),
            self.waker.subscribe(),
            after,
        )
    }

    async fn commit(&self, ops: Vec<Op>) -> Result<Vec<Applied>> {
        let mut tx = Txn {
            state: self.state.clone().write_owned().await,
            undo: Vec::new(),
            pending: Vec::new(),
            committed: false,
        };
        let applied = engine::execute(&mut tx, ops).await?;
        tx.commit();
        if !applied.is_empty() {
            self.waker.wake();
        }
        Ok(applied)
    }

    async fn get_stored(&self, key: &ResourceKey) -> Result<Option<Stored>> {
        let key = ResourceKey::new(key.kind, key.mesh.clone(), key.name.clone());
        Ok(self
            .state
            .read()
            .await
            .rows
            .get(&row_key(&key))
            .map(|row| row.stored.clone()))
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        let state = self.state.read().await;
        Ok(Snapshot {
            revision: state.revision,
            resources: state.rows.values().map(|r| r.stored.clone()).collect(),
        })
    }

    async fn prune_changes(&self, keep_after: Revision) -> Result<u64> {
        let mut state = self.state.write().await;
        let through = keep_after.min(state.revision);
        let mut removed = 0;
        while state.changes.front().is_some_and(|e| e.revision <= through) {
            state.changes.pop_front();
            removed += 1;
        }
        state.pruned_through = state.pruned_through.max(through);
        Ok(removed)
    }

    fn backend_name(&self) -> &'static str {
        BACKEND
    }
}
