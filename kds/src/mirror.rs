//! An in-memory copy of the store's resources of the types one side sends, kept current by
//! the store's change feed. Every KDS stream of a process reads the same mirror: a commit is
//! read from the store once, not once per connected zone, and streams wake on the mirror's
//! revision rather than polling.
//!
//! Streams ask [`Mirror::changed_since`] which keys changed after the revision they last
//! processed; when the mirror has forgotten that far back (or was reloaded after the feed
//! failed) they get `None` and recompute everything.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use model::{Resource, ResourceKey, ResourceType};
use store::{Action, ResourceStore, Revision, StoreError};
use tokio::sync::watch;
use tracing::{info, warn};

/// How many recent changes the mirror remembers for [`Mirror::changed_since`].
const LOG_LIMIT: usize = 100_000;

/// A change the mirror applied.
#[derive(Clone, Debug)]
struct Logged {
    revision: Revision,
    key: ResourceKey,
    at: Instant,
}

#[derive(Default)]
struct State {
    /// The store revision the copy is current at.
    revision: Revision,
    /// Bumped on every full reload: a stream that saw another epoch recomputes everything.
    epoch: u64,
    by_kind: HashMap<ResourceType, BTreeMap<ResourceKey, Resource>>,
    log: VecDeque<Logged>,
}

/// What changed after a revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changes {
    /// The revision the copy is current at.
    pub revision: Revision,
    /// The keys of relevant types written after the asked revision (each once).
    pub keys: BTreeSet<ResourceKey>,
}

/// A shared, feed-driven copy of the resources of some types.
#[derive(Clone)]
pub struct Mirror {
    kinds: Arc<BTreeSet<ResourceType>>,
    state: Arc<RwLock<State>>,
    revision: watch::Receiver<(u64, Revision)>,
}

/// The position of a stream in the mirror: the epoch and revision it last processed.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    pub epoch: u64,
    pub revision: Revision,
}

impl Mirror {
    /// Loads the resources of `kinds` from `store` and follows its change feed until the
    /// returned task is dropped or aborted.
    pub async fn start(
        store: Arc<dyn ResourceStore>,
        kinds: impl IntoIterator<Item = ResourceType>,
    ) -> Result<(Mirror, tokio::task::JoinHandle<()>), StoreError> {
        let kinds: Arc<BTreeSet<ResourceType>> = Arc::new(kinds.into_iter().collect());
        let state = Arc::new(RwLock::new(State::default()));
        let revision = load(store.as_ref(), &kinds, &state).await?;
        let (tx, rx) = watch::channel((0, revision));
        let mirror = Mirror {
            kinds: kinds.clone(),
            state: state.clone(),
            revision: rx,
        };
        let task = tokio::spawn(follow(store, kinds, state, tx, revision));
        Ok((mirror, task))
    }

    /// Whether the mirror holds `kind`.
    pub fn holds(&self, kind: ResourceType) -> bool {
        self.kinds.contains(&kind)
    }

    /// Wakes when the mirror moved on (a change was applied or it was reloaded).
    pub fn subscribe(&self) -> watch::Receiver<(u64, Revision)> {
        self.revision.clone()
    }

    /// The current position.
    pub fn cursor(&self) -> Cursor {
        let state = read(&self.state);
        Cursor {
            epoch: state.epoch,
            revision: state.revision,
        }
    }

    /// The resources of `kind`, sorted by key.
    pub fn list(&self, kind: ResourceType) -> Vec<Resource> {
        read(&self.state)
            .by_kind
            .get(&kind)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// One resource.
    pub fn get(&self, key: &ResourceKey) -> Option<Resource> {
        read(&self.state)
            .by_kind
            .get(&key.kind)
            .and_then(|m| m.get(key))
            .cloned()
    }

    /// The keys changed after `cursor`, or `None` when the mirror cannot tell (reloaded since,
    /// or the change is older than what it remembers): recompute everything then.
    pub fn changed_since(&self, cursor: Cursor) -> Option<Changes> {
        let state = read(&self.state);
        if state.epoch != cursor.epoch {
            return None;
        }
        let oldest_kept = state.log.front().map(|l| l.revision);
        if let Some(oldest) = oldest_kept
            && cursor.revision + 1 < oldest
            && state.log.len() >= LOG_LIMIT
        {
            return None;
        }
        let keys = state
            .log
            .iter()
            .rev()
            .take_while(|l| l.revision > cursor.revision)
            .map(|l| l.key.clone())
            .collect();
        Some(Changes {
            revision: state.revision,
            keys,
        })
    }

    /// How long ago the first change after `revision` was applied (`None` when there is none
    /// or it is no longer remembered).
    pub fn age_of_first_change_after(&self, revision: Revision) -> Option<Duration> {
        let state = read(&self.state);
        let first = state
            .log
            .iter()
            .rev()
            .take_while(|l| l.revision > revision)
            .last()?;
        Some(first.at.elapsed())
    }
}

fn read(state: &RwLock<State>) -> std::sync::RwLockReadGuard<'_, State> {
    state.read().unwrap_or_else(|e| e.into_inner())
}

fn write(state: &RwLock<State>) -> std::sync::RwLockWriteGuard<'_, State> {
    state.write().unwrap_or_else(|e| e.into_inner())
}

/// Replaces the copy with a fresh snapshot; returns its revision.
async fn load(
    store: &dyn ResourceStore,
    kinds: &BTreeSet<ResourceType>,
    state: &RwLock<State>,
) -> Result<Revision, StoreError> {
    let snapshot = store.snapshot().await?;
    let mut by_kind: HashMap<ResourceType, BTreeMap<ResourceKey, Resource>> = HashMap::new();
    for stored in snapshot.resources {
        let kind = stored.resource.kind();
        if kinds.contains(&kind) {
            by_kind
                .entry(kind)
                .or_default()
                .insert(stored.resource.key(), stored.resource);
        }
    }
    let mut state = write(state);
    state.by_kind = by_kind;
    state.revision = snapshot.revision;
    state.epoch += 1;
    state.log.clear();
    Ok(snapshot.revision)
}

/// Reads `key` as of revision `revision` or later: a copy older than the event (a store whose
/// reads lag its feed) is read again, briefly.
async fn read_at_least(
    store: &dyn ResourceStore,
    key: &ResourceKey,
    revision: Revision,
    action: Action,
) -> Result<Option<Resource>, StoreError> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let found = store.get_stored(key).await?;
        // Absent after a create means deleted since: a later delete event follows.
        let stale = found
            .as_ref()
            .is_some_and(|stored| stored.revision < revision && action != Action::Delete);
        if !stale || Instant::now() > deadline {
            if stale {
                warn!(%key, revision, "mirror: store copy still older than its change event");
            }
            return Ok(found.map(|s| s.resource));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn follow(
    store: Arc<dyn ResourceStore>,
    kinds: Arc<BTreeSet<ResourceType>>,
    state: Arc<RwLock<State>>,
    tx: watch::Sender<(u64, Revision)>,
    mut revision: Revision,
) {
    loop {
        let mut feed = store.changes(revision);
        while let Some(item) = feed.next().await {
            match item {
                Ok(event) => {
                    revision = event.revision;
                    if kinds.contains(&event.kind) {
                        let key = event.key();
                        let current = match read_at_least(
                            store.as_ref(),
                            &key,
                            revision,
                            event.action,
                        )
                        .await
                        {
                            Ok(found) => found,
                            Err(e) => {
                                warn!(error = %e, %key, "mirror: reading a changed resource failed; reloading");
                                break;
                            }
                        };
                        let mut s = write(&state);
                        let map = s.by_kind.entry(event.kind).or_default();
                        match current {
                            Some(resource) => {
                                map.insert(key.clone(), resource);
                            }
                            None => {
                                map.remove(&key);
                            }
                        }
                        s.log.push_back(Logged {
                            revision,
                            key,
                            at: Instant::now(),
                        });
                        if s.log.len() > LOG_LIMIT {
                            s.log.pop_front();
                        }
                        s.revision = revision;
                    } else {
                        write(&state).revision = revision;
                    }
                    let epoch = read(&state).epoch;
                    tx.send_replace((epoch, revision));
                }
                Err(e) if e.is_transient() => {
                    warn!(error = %e, "mirror: store unavailable, the change feed retries");
                }
                Err(e) => {
                    warn!(error = %e, "mirror: change feed ended; reloading from a snapshot");
                    break;
                }
            }
        }
        // Reload: the feed failed or ended. Retry until the store answers.
        let mut delay = Duration::from_millis(100);
        loop {
            match load(store.as_ref(), &kinds, &state).await {
                Ok(r) => {
                    revision = r;
                    let epoch = read(&state).epoch;
                    tx.send_replace((epoch, revision));
                    info!(revision, "mirror reloaded");
                    break;
                }
                Err(e) => {
                    warn!(error = %e, "mirror: reload failed");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        if tx.is_closed() && tx.receiver_count() == 0 {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use model::test_util;
    use store::memory::MemoryStore;

    use super::*;

    async fn wait_for(mirror: &Mirror, pred: impl Fn(&Mirror) -> bool) {
        let mut rx = mirror.subscribe();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !pred(mirror) {
            tokio::time::timeout_at(deadline, rx.changed())
                .await
                .expect("mirror did not catch up in time")
                .expect("mirror task alive");
        }
    }

    #[tokio::test]
    async fn follows_creates_updates_and_deletes_of_its_types_only() {
        let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
        store
            .create(test_util::mesh("default"), None)
            .await
            .expect("mesh");
        let (mirror, _task) = Mirror::start(store.clone(), [ResourceType::Mesh])
            .await
            .expect("start");
        assert_eq!(mirror.list(ResourceType::Mesh).len(), 1);
        let start = mirror.cursor();

        store
            .create(test_util::mesh("other"), None)
            .await
            .expect("mesh");
        store
            .create(test_util::zone("zone-1"), None)
            .await
            .expect("zone");
        wait_for(&mirror, |m| m.cursor().revision >= start.revision + 2).await;
        assert_eq!(mirror.list(ResourceType::Mesh).len(), 2);
        assert!(mirror.list(ResourceType::Zone).is_empty(), "not mirrored");
        let changes = mirror.changed_since(start).expect("remembered");
        assert_eq!(
            changes.keys.into_iter().collect::<Vec<_>>(),
            vec![ResourceKey::global(ResourceType::Mesh, "other")]
        );

        let at = mirror.cursor();
        store
            .delete(&ResourceKey::global(ResourceType::Mesh, "other"))
            .await
            .expect("delete");
        wait_for(&mirror, |m| m.cursor().revision > at.revision).await;
        assert!(
            mirror
                .get(&ResourceKey::global(ResourceType::Mesh, "other"))
                .is_none()
        );
        assert!(mirror.age_of_first_change_after(at.revision).is_some());
        assert!(
            mirror
                .changed_since(Cursor {
                    epoch: 99,
                    revision: 0
                })
                .is_none()
        );
    }
}
