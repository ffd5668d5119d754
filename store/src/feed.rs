//! The change feed every backend serves: read the change log after a cursor, deliver it in
//! order, then wait for a wake-up (or a periodic poll) and read again.
//!
//! Revisions are dense (every revision from 1 to the current one has exactly one event until
//! it is pruned), so the feed checks that each event is the cursor plus one: a gap can only be
//! a pruned range ([`StoreError::Compacted`]) and is never skipped silently.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use futures::StreamExt;
use tokio::sync::watch;

use crate::{ChangeEvent, ChangeFeed, Result, Revision, StoreError};

/// How often a subscriber re-reads the log without a wake-up: the backstop for lost
/// notifications and for writers in other processes that cannot wake us.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How many events one read fetches.
pub(crate) const BATCH: u32 = 512;

/// The delays between retries of a feed reader whose store is unavailable: from 50 ms,
/// doubling up to 5 s, with jitter, forever.
pub(crate) fn retry_backoff() -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
}

/// One read of the change log, taken from one consistent snapshot.
#[derive(Debug, Default)]
pub(crate) struct ChangeBatch {
    /// The newest committed revision.
    pub current: Revision,
    /// Events with revision `<=` this were pruned.
    pub pruned_through: Revision,
    /// Events after the cursor, in revision order, at most [`BATCH`]. `None` stands for an event
    /// of a type this build does not know (its revision is still accounted for).
    pub events: Vec<(Revision, Option<ChangeEvent>)>,
}

/// Where a feed reads the change log.
#[async_trait]
pub(crate) trait ChangeSource: Send + Sync + 'static {
    fn backend(&self) -> &'static str;
    async fn read_changes(&self, after: Revision, limit: u32) -> Result<ChangeBatch>;
}

/// A wake-up signal: writers bump it after a commit; subscribers re-read the log when it moves.
#[derive(Clone, Debug)]
pub(crate) struct Waker(Arc<watch::Sender<u64>>);

impl Waker {
    pub(crate) fn new() -> Self {
        Waker(Arc::new(watch::Sender::new(0)))
    }

    pub(crate) fn wake(&self) {
        self.0
            .send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

struct State {
    source: Arc<dyn ChangeSource>,
    wake: watch::Receiver<u64>,
    wake_closed: bool,
    cursor: Revision,
    buffer: VecDeque<ChangeEvent>,
    backoff: Option<ExponentialBackoff>,
    sleep_before_read: Option<Duration>,
    done: bool,
}

enum Step {
    Yield(Result<ChangeEvent>),
    /// Nothing new: wait for a wake-up.
    Wait,
    /// Read again at once.
    Again,
}

/// Events after `after`, in order, then live ones.
pub(crate) fn feed(
    source: Arc<dyn ChangeSource>,
    wake: watch::Receiver<u64>,
    after: Revision,
) -> ChangeFeed {
    let state = State {
        source,
        wake,
        wake_closed: false,
        cursor: after,
        buffer: VecDeque::new(),
        backoff: None,
        sleep_before_read: None,
        done: false,
    };
    futures::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            if let Some(event) = st.buffer.pop_front() {
                st.cursor = event.revision;
                return Some((Ok(event), st));
            }
            if let Some(delay) = st.sleep_before_read.take() {
                tokio::time::sleep(delay).await;
            }
            match st.read().await {
                Step::Yield(item) => {
                    if matches!(&item, Err(e) if !e.is_transient()) {
                        st.done = true;
                    }
                    return Some((item, st));
                }
                Step::Wait => st.wait().await,
                Step::Again => {}
            }
        }
    })
    .boxed()
}

impl State {
    /// Reads the next batch into the buffer; says what to do when there is nothing to deliver.
    async fn read(&mut self) -> Step {
        // Mark the current wake-up as seen before reading, so that a commit after the read
        // wakes the wait that follows.
        if !self.wake_closed {
            self.wake.borrow_and_update();
        }
        let batch = match self.source.read_changes(self.cursor, BATCH).await {
            Ok(batch) => batch,
            Err(e) if e.is_transient() => {
                let backoff = self.backoff.get_or_insert_with(retry_backoff);
                self.sleep_before_read = Some(backoff.next().unwrap_or(Duration::from_secs(5)));
                return Step::Yield(Err(e));
            }
            Err(e) => return Step::Yield(Err(e)),
        };
        self.backoff = None;
        if self.cursor > batch.current {
            return Step::Yield(Err(StoreError::RevisionAhead {
                requested: self.cursor,
                current: batch.current,
            }));
        }
        for (expected, (revision, event)) in (self.cursor + 1..).zip(batch.events) {
            if revision != expected {
                if self.cursor < batch.pruned_through {
                    return Step::Yield(Err(StoreError::Compacted {
                        requested: self.cursor,
                        oldest: batch.pruned_through + 1,
                    }));
                }
                return Step::Yield(Err(StoreError::Backend {
                    backend: self.source.backend(),
                    message: format!(
                        "change feed: expected revision {expected} after {}, found {revision}; the change log is damaged",
                        self.cursor
                    ),
                }));
            }
            match event {
                Some(event) => self.buffer.push_back(event),
                None => {
                    tracing::warn!(
                        backend = self.source.backend(),
                        revision,
                        "change feed: passing over an event of a resource type this build does not know"
                    );
                    if self.buffer.is_empty() {
                        // Nothing deliverable before it: move past it now.
                        self.cursor = revision;
                    } else {
                        // Keep the order: deliver what precedes it, then re-read from there.
                        break;
                    }
                }
            }
        }
        if self.buffer.is_empty() {
            if self.cursor < batch.pruned_through {
                return Step::Yield(Err(StoreError::Compacted {
                    requested: self.cursor,
                    oldest: batch.pruned_through + 1,
                }));
            }
            if self.cursor < batch.current {
                // Only events of unknown types were read; read on without waiting.
                return Step::Again;
            }
            return Step::Wait;
        }
        match self.buffer.pop_front() {
            Some(event) => {
                self.cursor = event.revision;
                Step::Yield(Ok(event))
            }
            None => Step::Wait,
        }
    }

    /// Waits for a wake-up or the poll interval, whichever comes first.
    async fn wait(&mut self) {
        if self.wake_closed {
            tokio::time::sleep(POLL_INTERVAL).await;
            return;
        }
        match tokio::time::timeout(POLL_INTERVAL, self.wake.changed()).await {
            Ok(Ok(())) | Err(_) => {}
            Ok(Err(_)) => self.wake_closed = true,
        }
    }
}
