//! Live updates: one task per control plane follows the store's change feed and publishes
//! the newest revision on a watch channel; every open page listens on `GET {gui}/events`
//! (server-sent events) and reloads its `<main>` when the revision moves. The same task keeps
//! each zone's lag history (from the ZoneInsights it sees change) for the zone charts.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use model::{Resource, ResourceKey, ResourceType, Spec};
use store::{ChangeEvent, ListQuery, ResourceStore, StoreError};
use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;

use super::svg::Sample;

/// Samples kept per zone (at one per ZoneInsight write, minutes of history).
pub const HISTORY: usize = 240;

/// The live state shared by the GUI handlers. Cheap to clone.
#[derive(Clone)]
pub struct Live {
    revision: watch::Receiver<u64>,
    stop: watch::Receiver<bool>,
    history: Arc<Mutex<HashMap<String, VecDeque<Sample>>>>,
    /// The senders of a [`Live::fixed`], kept so that its channels stay open.
    _fixed: Option<Arc<(watch::Sender<u64>, watch::Sender<bool>)>>,
}

impl Live {
    /// Starts following `store`; the task ends when `stop` turns true.
    pub fn start(store: Arc<dyn ResourceStore>, stop: watch::Receiver<bool>) -> Live {
        let (tx, rx) = watch::channel(0);
        let live = Live {
            revision: rx,
            stop: stop.clone(),
            history: Arc::default(),
            _fixed: None,
        };
        tokio::spawn(follow(store, tx, live.history.clone(), stop));
        live
    }

    /// A Live that never changes (handler tests).
    pub fn fixed(revision: u64) -> Live {
        let (tx, rx) = watch::channel(revision);
        let (stop_tx, stop) = watch::channel(false);
        Live {
            revision: rx,
            stop,
            history: Arc::default(),
            _fixed: Some(Arc::new((tx, stop_tx))),
        }
    }

    /// The newest revision seen.
    pub fn revision(&self) -> u64 {
        *self.revision.borrow()
    }

    /// Waits until the newest revision seen passes `revision` (tests).
    pub async fn passed(&self, revision: u64) {
        let mut rx = self.revision.clone();
        let _ = rx.wait_for(|r| *r > revision).await;
    }

    /// A zone's lag samples, oldest first.
    pub fn history(&self, zone: &str) -> Vec<Sample> {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        history
            .get(zone)
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Records a sample (the follower and tests).
    pub fn record(&self, zone: &str, sample: Sample) {
        record(&self.history, zone, sample);
    }

    /// `GET {gui}/events`: `event: revision` with the revision now and at every change, a
    /// keep-alive comment every 15 s; the stream ends when the control plane stops.
    pub fn events(&self) -> Sse<impl Stream<Item = Result<Event, Infallible>> + use<>> {
        let mut stop = self.stop.clone();
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        let stream = WatchStream::new(self.revision.clone())
            .map(|revision| {
                Ok(Event::default()
                    .event("revision")
                    .data(revision.to_string())
                    .retry(Duration::from_secs(1)))
            })
            .take_until(stopped);
        Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
    }
}

fn record(history: &Mutex<HashMap<String, VecDeque<Sample>>>, zone: &str, sample: Sample) {
    let mut history = history.lock().unwrap_or_else(|e| e.into_inner());
    let samples = history.entry(zone.to_string()).or_default();
    samples.push_back(sample);
    while samples.len() > HISTORY {
        samples.pop_front();
    }
}

/// The lag sample a ZoneInsight holds, if it has any lag figures.
pub fn sample_of(insight: &Resource, at: SystemTime) -> Option<Sample> {
    let Spec::ZoneInsight(i) = &insight.spec else {
        return None;
    };
    let sync = i.kds_sync.as_ref()?;
    let g2z = sync.global_to_zone.unwrap_or_default();
    let z2g = sync.zone_to_global.unwrap_or_default();
    Some(Sample {
        at,
        global_to_zone_seconds: g2z.seconds,
        global_to_zone_revisions: g2z.revisions,
        zone_to_global_seconds: z2g.seconds,
        zone_to_global_revisions: z2g.revisions,
    })
}

/// Follows the change feed until `stop`.
async fn follow(
    store: Arc<dyn ResourceStore>,
    tx: watch::Sender<u64>,
    history: Arc<Mutex<HashMap<String, VecDeque<Sample>>>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut follower = Follower { tx, history };
    tokio::select! {
        _ = stop.wait_for(|s| *s) => {}
        () = store::follow::follow(store.as_ref(), &mut follower, Duration::from_secs(1)) => {}
    }
}

/// Publishes every revision and samples every ZoneInsight change.
struct Follower {
    tx: watch::Sender<u64>,
    history: Arc<Mutex<HashMap<String, VecDeque<Sample>>>>,
}

#[store::follow::async_trait]
impl store::follow::Follower for Follower {
    fn name(&self) -> &'static str {
        "GUI live updates"
    }

    async fn resync(&mut self, store: &dyn ResourceStore) -> Result<(), StoreError> {
        let revision = store.revision().await?;
        let now = SystemTime::now();
        for insight in store
            .list(&ListQuery::all(ResourceType::ZoneInsight))
            .await?
            .items
        {
            if let Some(sample) = sample_of(&insight, now) {
                record(&self.history, &insight.meta.name, sample);
            }
        }
        self.tx.send_replace(revision);
        Ok(())
    }

    async fn apply(
        &mut self,
        store: &dyn ResourceStore,
        batch: Vec<ChangeEvent>,
    ) -> Result<(), StoreError> {
        for event in &batch {
            if event.kind != ResourceType::ZoneInsight {
                continue;
            }
            let key = ResourceKey::global(ResourceType::ZoneInsight, event.name.clone());
            if let Some(stored) = store.get_stored(&key).await?
                && let Some(sample) = sample_of(&stored.resource, SystemTime::now())
            {
                record(&self.history, &event.name, sample);
            }
        }
        if let Some(last) = batch.last() {
            self.tx.send_replace(last.revision);
        }
        Ok(())
    }
}
