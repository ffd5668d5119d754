//! The one loop that keeps a component in step with the store: read everything once
//! ([`Follower::resync`]), then take the change feed from the revision read before that, in
//! batches (whatever has already arrived when one change wakes the loop); start over with a
//! resync after a pause when the feed is lost (compaction, ...) or the follower fails.
//! Transient errors of an unreachable backend are skipped: the feed retries them itself.

use std::time::Duration;

pub use async_trait::async_trait;
use futures::{FutureExt, StreamExt};

use crate::{ChangeEvent, ResourceStore, StoreError};

/// A component that follows the store (see [`follow`]). Implement it with
/// `#[store::follow::async_trait]`.
#[async_trait]
pub trait Follower: Send {
    /// Names the component in log lines (`MADS`, `DNS VIPs`, ...).
    fn name(&self) -> &'static str;

    /// Reads everything the component needs afresh. The feed then starts after the revision
    /// read just before this call, so nothing committed meanwhile is missed.
    async fn resync(&mut self, store: &dyn ResourceStore) -> Result<(), StoreError>;

    /// Takes the changes committed since, in revision order; an error starts over with a
    /// resync.
    async fn apply(
        &mut self,
        store: &dyn ResourceStore,
        batch: Vec<ChangeEvent>,
    ) -> Result<(), StoreError>;
}

/// Runs `follower` against `store` forever (cancel it by dropping the future), pausing
/// `retry` before each new start.
pub async fn follow(store: &dyn ResourceStore, follower: &mut dyn Follower, retry: Duration) {
    let name = follower.name();
    loop {
        if let Err(e) = follow_once(store, follower).await {
            tracing::warn!(error = %e, "{name}: lost step with the store; resyncing");
        }
        tokio::time::sleep(retry).await;
    }
}

/// One resync and the feed after it, until either fails.
async fn follow_once(
    store: &dyn ResourceStore,
    follower: &mut dyn Follower,
) -> Result<(), StoreError> {
    let revision = store.revision().await?;
    follower.resync(store).await?;
    let mut changes = store.changes(revision);
    while let Some(first) = changes.next().await {
        let mut batch = Vec::new();
        let mut next = Some(first);
        while let Some(change) = next {
            match change {
                Ok(event) => batch.push(event),
                Err(e) if e.is_transient() => {
                    tracing::debug!(error = %e, "{}: store unavailable", follower.name());
                }
                Err(e) => {
                    // Apply what came before the loss, then start over.
                    if !batch.is_empty() {
                        follower.apply(store, batch).await?;
                    }
                    return Err(e);
                }
            }
            next = changes.next().now_or_never().flatten();
        }
        if !batch.is_empty() {
            follower.apply(store, batch).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use model::test_util as builders;
    use tokio::sync::watch;

    use super::*;
    use crate::memory::MemoryStore;

    /// Records what it is told on a watch channel; fails its first apply when asked to.
    struct Recorder {
        seen: watch::Sender<Vec<String>>,
        fail_once: bool,
    }

    #[async_trait]
    impl Follower for Recorder {
        fn name(&self) -> &'static str {
            "test"
        }

        async fn resync(&mut self, store: &dyn ResourceStore) -> Result<(), StoreError> {
            let meshes = store
                .list(&crate::ListQuery::all(model::ResourceType::Mesh))
                .await?;
            self.seen
                .send_modify(|seen| seen.push(format!("resync {}", meshes.items.len())));
            Ok(())
        }

        async fn apply(
            &mut self,
            _store: &dyn ResourceStore,
            batch: Vec<ChangeEvent>,
        ) -> Result<(), StoreError> {
            if std::mem::take(&mut self.fail_once) {
                return Err(StoreError::Backend {
                    backend: "test",
                    message: "refused".into(),
                });
            }
            self.seen.send_modify(|seen| {
                seen.extend(batch.iter().map(|event| format!("change {}", event.name)))
            });
            Ok(())
        }
    }

    /// Waits (10 s at most) until the recorder has seen exactly `want`.
    async fn wait_for(seen: &mut watch::Receiver<Vec<String>>, want: &[&str]) {
        let waited =
            tokio::time::timeout(Duration::from_secs(10), seen.wait_for(|now| now == want))
                .await
                .map(|r| r.map(|_| ()));
        let now = seen.borrow().clone();
        assert!(matches!(waited, Ok(Ok(()))), "saw {now:?}, want {want:?}");
    }

    #[tokio::test]
    async fn a_follower_resyncs_then_takes_every_change_and_starts_over_after_a_failure() {
        let store = Arc::new(MemoryStore::new());
        store
            .create(builders::mesh("one"), None)
            .await
            .expect("mesh");
        let (tx, mut seen) = watch::channel(Vec::new());
        let mut recorder = Recorder {
            seen: tx,
            fail_once: true,
        };
        let task = {
            let store = store.clone();
            tokio::spawn(async move {
                follow(store.as_ref(), &mut recorder, Duration::from_millis(10)).await;
            })
        };
        wait_for(&mut seen, &["resync 1"]).await;
        // The first apply fails: the follower starts over and sees both meshes in its resync.
        store
            .create(builders::mesh("two"), None)
            .await
            .expect("mesh");
        wait_for(&mut seen, &["resync 1", "resync 2"]).await;
        store
            .create(builders::mesh("three"), None)
            .await
            .expect("mesh");
        wait_for(&mut seen, &["resync 1", "resync 2", "change three"]).await;
        task.abort();
    }
}
