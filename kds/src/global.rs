//! The global's KDS server: `KDSSyncService` (GlobalToZoneSync: the global sends; and
//! ZoneToGlobalSync: the global receives) and `GlobalKDSService.HealthCheck`, for every zone
//! that dials in.
//!
//! A connection is admitted only when the zone proves who it is ([`ZoneAuthenticator`]), runs
//! a compatible version, and its Zone is not disabled. Each admitted zone has a session that
//! holds its live streams, its last heartbeat and what it reported; a watchdog closes the
//! streams of a zone whose heartbeats stopped or that was disabled, and the zone status
//! ([`crate::status`]) is written from the sessions.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource as DeltaResource,
};
use futures::{Stream, StreamExt};
use kds_proto::mesh::v1alpha1 as mesh_pb;
use kds_proto::mesh::v1alpha1::global_kds_service_server::{
    GlobalKdsService, GlobalKdsServiceServer,
};
use kds_proto::mesh::v1alpha1::kds_sync_service_server::{KdsSyncService, KdsSyncServiceServer};
use model::{Resource, ResourceKey, ResourceType, Spec};
use store::{ResourceStore, StoreError};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, warn};

use crate::error::{Error, SyncError};
use crate::mapping::{GlobalToZone, PublicKeyFn};
use crate::metrics::KdsMetrics;
use crate::mirror::Mirror;
use crate::receiver::{self, ReceiverSettings};
use crate::reconcile::Receiver;
use crate::sender::{self, Offer, SenderSettings};
use crate::stats::{Direction, Lag, StreamStats};
use crate::status::{self, SessionView, SubscriptionView};
use crate::{filter, metadata, version, wire};

/// How the global runs KDS.
#[derive(Clone, Debug)]
pub struct GlobalSettings {
    /// This global instance (`global_instance_id` in ZoneInsight).
    pub instance_id: String,
    /// This build's version, compared with each zone's.
    pub version: String,
    pub max_message_bytes: usize,
    /// A response unacknowledged this long closes the stream.
    pub stall_timeout: Duration,
    /// How often zones are asked to ping.
    pub health_interval: Duration,
    /// A zone silent this long has its streams closed and goes offline.
    pub health_timeout: Duration,
    /// How often zone status is written (also written at once on connect and disconnect).
    pub flush_interval: Duration,
    /// Turns zone-token signing keys into their public halves for zones.
    pub public_key: Option<PublicKeyFn>,
}

/// Who a connecting zone is.
#[async_trait::async_trait]
pub trait ZoneAuthenticator: Send + Sync + 'static {
    /// The zone name proven by `token` for a connection that claims to be `client_id`
    /// (`client-id` metadata). `Err` carries the reason to refuse, shown to the zone.
    async fn authenticate(&self, client_id: &str, token: Option<&str>) -> Result<String, String>;
}

/// Trusts the `client-id` header (Kuma OSS; `multizone.global.kds.auth.type: none`).
pub struct NoAuthentication;

#[async_trait::async_trait]
impl ZoneAuthenticator for NoAuthentication {
    async fn authenticate(&self, client_id: &str, _token: Option<&str>) -> Result<String, String> {
        Ok(client_id.to_string())
    }
}

/// The global's KDS: clone it freely, every clone is the same server.
#[derive(Clone)]
pub struct GlobalKds {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn ResourceStore>,
    mirror: Mirror,
    settings: GlobalSettings,
    auth: Arc<dyn ZoneAuthenticator>,
    sessions: Mutex<HashMap<String, Session>>,
    metrics: KdsMetrics,
    flush: Notify,
    next_stream: std::sync::atomic::AtomicU64,
    offers: Arc<OfferCache>,
}

/// One live stream of a zone.
struct LiveStream {
    id: u64,
    stats: Arc<StreamStats>,
    stop: watch::Sender<Option<Status>>,
    connect_time: SystemTime,
}

/// What the global knows of one zone on this instance.
#[derive(Default)]
struct Session {
    g2z: Option<LiveStream>,
    z2g: Option<LiveStream>,
    last_seen: Option<Instant>,
    last_heartbeat: Option<SystemTime>,
    /// From the zone's last heartbeat.
    zone_to_global: Option<Lag>,
    /// Subscriptions (one per GlobalToZone stream) not yet written, current last.
    subscriptions: Vec<SubscriptionView>,
    stalls: u64,
    dirty: bool,
    /// Rejections kept from ended streams.
    rejections: Vec<crate::stats::RejectionRecord>,
}

/// What the metadata of an admitted connection said.
struct Admitted {
    zone: String,
    version: String,
    token_provided: bool,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

impl GlobalKds {
    /// Starts the mirror, the watchdog and the status writer; the returned server serves
    /// once added to a tonic router ([`GlobalKds::sync_service`], [`GlobalKds::health_service`]).
    pub async fn start(
        store: Arc<dyn ResourceStore>,
        settings: GlobalSettings,
        auth: Arc<dyn ZoneAuthenticator>,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Result<(GlobalKds, tokio::task::JoinHandle<()>), StoreError> {
        let mut kinds = filter::types_sent_by_global();
        kinds.push(ResourceType::Zone);
        let (mirror, mirror_task) = Mirror::start(store.clone(), kinds).await?;
        let kds = GlobalKds {
            inner: Arc::new(Inner {
                store,
                mirror,
                settings,
                auth,
                sessions: Mutex::new(HashMap::new()),
                metrics: KdsMetrics::register(registry),
                flush: Notify::new(),
                next_stream: Default::default(),
                offers: Arc::default(),
            }),
        };
        let background = kds.clone();
        let task = tokio::spawn(async move {
            background.watchdog().await;
            mirror_task.abort();
        });
        Ok((kds, task))
    }

    pub fn sync_service(&self) -> KdsSyncServiceServer<GlobalKds> {
        let max = self.inner.settings.max_message_bytes;
        KdsSyncServiceServer::new(self.clone())
            .max_decoding_message_size(max)
            .max_encoding_message_size(max)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .send_compressed(tonic::codec::CompressionEncoding::Gzip)
    }

    pub fn health_service(&self) -> GlobalKdsServiceServer<GlobalKds> {
        GlobalKdsServiceServer::new(self.clone())
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .send_compressed(tonic::codec::CompressionEncoding::Gzip)
    }

    /// The zones with a live stream on this instance.
    pub fn connected_zones(&self) -> Vec<String> {
        let sessions = self.sessions();
        let mut zones: Vec<String> = sessions
            .iter()
            .filter(|(_, s)| s.g2z.is_some() || s.z2g.is_some())
            .map(|(z, _)| z.clone())
            .collect();
        zones.sort();
        zones
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Checks a connection's metadata: identity, version, and that its Zone is enabled
    /// (created when absent).
    async fn admit(&self, metadata: &MetadataMap) -> Result<Admitted, Status> {
        let client_id = metadata::text(metadata, metadata::CLIENT_ID).unwrap_or_default();
        if client_id.is_empty() {
            self.inner.metrics.refused("no-client-id");
            return Err(Status::invalid_argument(
                "KDS: the `client-id` metadata (the zone name) is missing",
            ));
        }
        let token = metadata::bearer(metadata);
        let zone = match self
            .inner
            .auth
            .authenticate(&client_id, token.as_deref())
            .await
        {
            Ok(zone) => zone,
            Err(reason) => {
                self.inner.metrics.refused("authentication");
                warn!(client_id = %client_id, %reason, "KDS connection refused");
                return Err(Status::unauthenticated(format!(
                    "zone {client_id:?} refused: {reason}"
                )));
            }
        };
        let zone_version = metadata::text(metadata, metadata::VERSION).unwrap_or_default();
        if let Err(reason) = version::check(&self.inner.settings.version, &zone_version) {
            self.inner.metrics.refused("version");
            warn!(%zone, %reason, "KDS connection refused");
            return Err(Status::failed_precondition(format!(
                "zone {zone:?} refused: {reason}"
            )));
        }
        let key = ResourceKey::global(ResourceType::Zone, zone.clone());
        match self.inner.store.get_stored(&key).await {
            Ok(Some(stored)) => {
                if !zone_enabled(&stored.resource) {
                    self.inner.metrics.refused("disabled");
                    return Err(Status::permission_denied(format!(
                        "zone {zone:?} is disabled on the global (Zone.spec.enabled=false)"
                    )));
                }
            }
            Ok(None) => {
                let resource = Resource::new("", zone.clone(), Spec::Zone(Default::default()));
                match self.inner.store.create(resource, None).await {
                    Ok(_) => info!(%zone, "zone registered"),
                    Err(StoreError::AlreadyExists(_)) => {}
                    Err(e) => return Err(Status::unavailable(format!("store: {e}"))),
                }
            }
            Err(e) => return Err(Status::unavailable(format!("store: {e}"))),
        }
        Ok(Admitted {
            zone,
            version: zone_version,
            token_provided: token.is_some(),
        })
    }

    /// Registers a new stream of `direction` for `zone`, closing the one it replaces.
    fn register(
        &self,
        zone: &str,
        direction: Direction,
        stats: Arc<StreamStats>,
    ) -> (u64, watch::Receiver<Option<Status>>) {
        let id = self
            .inner
            .next_stream
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (stop, stopped) = watch::channel(None);
        let live = LiveStream {
            id,
            stats,
            stop,
            connect_time: SystemTime::now(),
        };
        let mut sessions = self.sessions();
        let session = sessions.entry(zone.to_string()).or_default();
        let slot = match direction {
            Direction::GlobalToZone => &mut session.g2z,
            Direction::ZoneToGlobal => &mut session.z2g,
        };
        if let Some(old) = slot.replace(live) {
            let _ = old.stop.send(Some(Status::aborted(
                "KDS: superseded by a newer stream of the same zone",
            )));
        }
        session.last_seen = Some(Instant::now());
        session.dirty = true;
        drop(sessions);
        self.inner.metrics.connected(zone, direction, true);
        (id, stopped)
    }

    /// Forgets stream `id` of `zone` when it ends.
    fn deregister(
        &self,
        zone: &str,
        direction: Direction,
        id: u64,
        result: &Result<(), SyncError>,
    ) {
        let mut sessions = self.sessions();
        let Some(session) = sessions.get_mut(zone) else {
            return;
        };
        let slot = match direction {
            Direction::GlobalToZone => &mut session.g2z,
            Direction::ZoneToGlobal => &mut session.z2g,
        };
        if slot.as_ref().is_some_and(|s| s.id == id)
            && let Some(ended) = slot.take()
        {
            let snapshot = ended.stats.snapshot();
            crate::stats::push_rejections(&mut session.rejections, snapshot.rejections.clone());
            if direction == Direction::GlobalToZone
                && let Some(sub) = session
                    .subscriptions
                    .iter_mut()
                    .rev()
                    .find(|s| s.stream_id == id)
            {
                sub.disconnect_time = Some(SystemTime::now());
                sub.final_stats = Some(snapshot);
            }
            self.inner.metrics.connected(zone, direction, false);
        }
        if let Err(SyncError::Stalled { .. }) = result {
            session.stalls += 1;
            self.inner.metrics.stalled(zone, direction);
        }
        session.dirty = true;
        drop(sessions);
        self.inner.flush.notify_one();
    }

    /// Closes every stream of `zone` with `status`.
    fn close_zone(&self, zone: &str, status: &Status) {
        let sessions = self.sessions();
        if let Some(session) = sessions.get(zone) {
            for live in [&session.g2z, &session.z2g].into_iter().flatten() {
                let _ = live.stop.send(Some(status.clone()));
            }
        }
    }

    /// Closes silent and disabled zones, refreshes lag metrics and writes zone status.
    async fn watchdog(&self) {
        let tick = self
            .inner
            .settings
            .health_interval
            .min(Duration::from_secs(1))
            .max(Duration::from_millis(50));
        let mut last_flush = Instant::now();
        let mut last_sweep = Instant::now();
        loop {
            tokio::select! {
                () = tokio::time::sleep(tick) => {}
                () = self.inner.flush.notified() => {}
            }
            let timeout = self.inner.settings.health_timeout;
            let mut silent = Vec::new();
            let mut disabled = Vec::new();
            {
                let sessions = self.sessions();
                for (zone, session) in sessions.iter() {
                    let live = session.g2z.is_some() || session.z2g.is_some();
                    if !live {
                        continue;
                    }
                    if session.last_seen.is_some_and(|t| t.elapsed() > timeout) {
                        silent.push(zone.clone());
                    }
                    let key = ResourceKey::global(ResourceType::Zone, zone.clone());
                    if self
                        .inner
                        .mirror
                        .get(&key)
                        .is_some_and(|z| !zone_enabled(&z))
                    {
                        disabled.push(zone.clone());
                    }
                    if let Some(g2z) = &session.g2z {
                        let lag = g2z.stats.snapshot().lag;
                        self.inner.metrics.lag(zone, Direction::GlobalToZone, &lag);
                    }
                    if let Some(lag) = &session.zone_to_global {
                        self.inner.metrics.lag(zone, Direction::ZoneToGlobal, lag);
                    }
                }
            }
            for zone in silent {
                warn!(%zone, ?timeout, "no heartbeat from zone: closing its streams");
                self.inner.metrics.heartbeat_timeout(&zone);
                self.close_zone(
                    &zone,
                    &Status::unavailable(format!(
                        "KDS: no heartbeat from zone {zone:?} for {timeout:?}; streams closed"
                    )),
                );
            }
            for zone in disabled {
                info!(%zone, "zone disabled: closing its streams");
                self.close_zone(
                    &zone,
                    &Status::permission_denied(format!(
                        "zone {zone:?} was disabled on the global (Zone.spec.enabled=false)"
                    )),
                );
            }
            let due = last_flush.elapsed() >= self.inner.settings.flush_interval;
            self.flush(due).await;
            if due {
                last_flush = Instant::now();
            }
            if last_sweep.elapsed() >= timeout {
                last_sweep = Instant::now();
                let live = self.connected_zones();
                let stale_after = (timeout * 3).max(self.inner.settings.flush_interval * 3);
                if let Err(e) =
                    status::close_stale_subscriptions(self.inner.store.as_ref(), &live, stale_after)
                        .await
                {
                    warn!(error = %e, "closing stale zone subscriptions failed");
                }
            }
        }
    }

    /// Writes the status of zones whose session changed (all live ones when `all`).
    async fn flush(&self, all: bool) {
        let views: Vec<SessionView> = {
            let mut sessions = self.sessions();
            let mut views = Vec::new();
            for (zone, session) in sessions.iter_mut() {
                let live = session.g2z.is_some() || session.z2g.is_some();
                if !(session.dirty || (all && live)) {
                    continue;
                }
                session.dirty = false;
                let mut rejections = session.rejections.clone();
                let mut g2z_lag = None;
                for live in [&session.g2z, &session.z2g].into_iter().flatten() {
                    let snapshot = live.stats.snapshot();
                    crate::stats::push_rejections(&mut rejections, snapshot.rejections.clone());
                }
                if let Some(g2z) = &session.g2z {
                    g2z_lag = Some(g2z.stats.snapshot().lag);
                }
                let mut subscriptions = Vec::new();
                for sub in &session.subscriptions {
                    let mut sub = sub.clone();
                    if sub.final_stats.is_none()
                        && let Some(g2z) = &session.g2z
                        && g2z.id == sub.stream_id
                    {
                        sub.live_stats = Some(g2z.stats.snapshot());
                    }
                    subscriptions.push(sub);
                }
                // Written subscriptions that ended are not kept in memory any more.
                session
                    .subscriptions
                    .retain(|s| s.disconnect_time.is_none());
                views.push(SessionView {
                    zone: zone.clone(),
                    instance_id: self.inner.settings.instance_id.clone(),
                    subscriptions,
                    g2z_connect: session.g2z.as_ref().map(|l| l.connect_time),
                    z2g_connect: session.z2g.as_ref().map(|l| l.connect_time),
                    heartbeat: session.last_heartbeat,
                    global_to_zone: g2z_lag,
                    zone_to_global: session.zone_to_global,
                    rejections,
                    stalls: session.stalls,
                });
            }
            sessions.retain(|_, s| {
                s.g2z.is_some() || s.z2g.is_some() || !s.subscriptions.is_empty() || s.dirty
            });
            views
        };
        for view in views {
            if let Err(e) = status::write(self.inner.store.as_ref(), &view).await {
                warn!(zone = %view.zone, error = %e, "writing zone status failed");
                if let Some(session) = self.sessions().get_mut(&view.zone) {
                    session.dirty = true;
                    // Keep ended subscriptions to write them next time.
                    for sub in view.subscriptions {
                        if sub.disconnect_time.is_some()
                            && !session.subscriptions.iter().any(|s| s.id == sub.id)
                        {
                            session.subscriptions.push(sub);
                        }
                    }
                }
            }
        }
    }

    fn remember_subscription(&self, zone: &str, sub: SubscriptionView) {
        let mut sessions = self.sessions();
        let session = sessions.entry(zone.to_string()).or_default();
        session.subscriptions.push(sub);
        session.dirty = true;
        drop(sessions);
        self.inner.flush.notify_one();
    }

    fn update_subscription(&self, zone: &str, stream_id: u64, node: &Node) {
        let mut sessions = self.sessions();
        if let Some(sub) = sessions.get_mut(zone).and_then(|s| {
            s.subscriptions
                .iter_mut()
                .rev()
                .find(|sub| sub.stream_id == stream_id)
        }) {
            let (config, instance) = metadata::node_config(node);
            sub.config = config;
            sub.zone_instance_id = instance;
        }
    }
}

/// `Zone.spec.enabled`, absent meaning enabled.
fn zone_enabled(zone: &Resource) -> bool {
    match &zone.spec {
        Spec::Zone(z) => z.enabled.as_ref().is_none_or(|e| e.value),
        _ => true,
    }
}

/// Mapped and encoded resources, shared by every zone's stream: the global -> zone mapping
/// does not depend on the zone (only the filter does), so a change is encoded once, not once
/// per zone. Keyed by resource, valid for one store version.
#[derive(Default)]
struct OfferCache {
    entries: Mutex<OfferEntries>,
}

/// Resource → (store version, what it maps to).
type OfferEntries = HashMap<ResourceKey, (u64, Result<DeltaResource, Error>)>;

/// Entries kept before the cache starts over (it only ever holds what the mirror holds, plus
/// resources deleted since).
const OFFER_CACHE_LIMIT: usize = 500_000;

impl OfferCache {
    fn get_or_map(
        &self,
        resource: &Resource,
        map: impl FnOnce() -> Result<DeltaResource, Error>,
    ) -> Result<DeltaResource, Error> {
        let key = resource.key();
        let version = resource.meta.version;
        if let Some((v, cached)) = self.lock().get(&key)
            && *v == version
        {
            return cached.clone();
        }
        let mapped = map();
        let mut entries = self.lock();
        if entries.len() >= OFFER_CACHE_LIMIT {
            entries.clear();
        }
        entries.insert(key, (version, mapped.clone()));
        mapped
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OfferEntries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the global offers one zone.
struct GlobalOffer {
    zone: String,
    mirror: Mirror,
    mapper: GlobalToZone,
    cache: Arc<OfferCache>,
}

impl Offer for GlobalOffer {
    fn kinds(&self) -> Vec<ResourceType> {
        filter::types_sent_by_global()
    }

    fn offer(&self, resource: &Resource) -> Result<Option<DeltaResource>, Error> {
        let enabled = |name: &str| {
            self.mirror
                .get(&ResourceKey::global(ResourceType::Zone, name))
                .map(|z| zone_enabled(&z))
        };
        if !filter::global_to_zone(resource, &self.zone, &enabled) {
            return Ok(None);
        }
        let encoded = self.cache.get_or_map(resource, || {
            let mapped = self.mapper.map(resource.clone())?;
            Ok(wire::to_delta_resource(&mapped))
        })?;
        Ok(Some(encoded))
    }

    fn affects_all(&self, key: &ResourceKey) -> bool {
        key.kind == ResourceType::Zone
    }
}

/// The stream a bidi RPC returns: what the engine sends, then its final status if it failed.
fn outgoing<T: Send + 'static>(
    rx: mpsc::Receiver<T>,
    done: oneshot::Receiver<Option<Status>>,
) -> BoxStream<T> {
    let tail = futures::stream::once(done).filter_map(|r| async move { r.ok().flatten().map(Err) });
    Box::pin(ReceiverStream::new(rx).map(Ok).chain(tail))
}

fn status_of(e: &SyncError) -> Status {
    match e {
        SyncError::Stalled { .. } => Status::deadline_exceeded(format!("KDS: {e}")),
        SyncError::Protocol(_) => Status::invalid_argument(format!("KDS: {e}")),
        SyncError::Store(_) => Status::unavailable(format!("KDS: {e}")),
        SyncError::Peer(_) | SyncError::Closed => Status::cancelled(format!("KDS: {e}")),
    }
}

async fn until_stopped(mut stopped: watch::Receiver<Option<Status>>) -> Status {
    match stopped.wait_for(Option::is_some).await {
        Ok(status) => status
            .clone()
            .unwrap_or_else(|| Status::cancelled("KDS: stopped")),
        Err(_) => Status::cancelled("KDS: stopped"),
    }
}

#[tonic::async_trait]
impl KdsSyncService for GlobalKds {
    type GlobalToZoneSyncStream = BoxStream<DeltaDiscoveryResponse>;
    type ZoneToGlobalSyncStream = BoxStream<DeltaDiscoveryRequest>;

    async fn global_to_zone_sync(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::GlobalToZoneSyncStream>, Status> {
        let admitted = self.admit(request.metadata()).await?;
        let zone = admitted.zone.clone();
        let stats = Arc::new(StreamStats::default());
        let (stream_id, stopped) = self.register(&zone, Direction::GlobalToZone, stats.clone());
        self.remember_subscription(
            &zone,
            SubscriptionView::new(
                stream_id,
                &self.inner.settings.instance_id,
                &admitted.version,
                admitted.token_provided,
            ),
        );
        info!(%zone, version = %admitted.version, "zone connected (global -> zone stream)");
        let (tx, rx) = mpsc::channel(16);
        let (done_tx, done_rx) = oneshot::channel();
        let this = self.clone();
        let mut first = true;
        let node_zone = zone.clone();
        let node_this = self.clone();
        let incoming = request.into_inner().inspect(move |item| {
            if first && let Ok(req) = item {
                first = false;
                if let Some(node) = &req.node {
                    node_this.update_subscription(&node_zone, stream_id, node);
                }
            }
        });
        let offer = Arc::new(GlobalOffer {
            zone: zone.clone(),
            mirror: self.inner.mirror.clone(),
            mapper: GlobalToZone {
                public_key: self.inner.settings.public_key,
            },
            cache: self.inner.offers.clone(),
        });
        let settings = SenderSettings {
            max_message_bytes: self.inner.settings.max_message_bytes,
            stall_timeout: self.inner.settings.stall_timeout,
            identifier: "global".to_string(),
            direction: Direction::GlobalToZone,
            metrics: Some((self.inner.metrics.clone(), zone.clone())),
        };
        let mirror = self.inner.mirror.clone();
        tokio::spawn(async move {
            let run = sender::run(offer, mirror, Box::pin(incoming), tx, settings, stats);
            let (result, status) = tokio::select! {
                r = run => {
                    let status = r.as_ref().err().map(status_of);
                    (r, status)
                }
                s = until_stopped(stopped) => (Err(SyncError::Peer(s.message().to_string())), Some(s)),
            };
            match &result {
                Ok(()) => info!(%zone, "zone disconnected (global -> zone stream)"),
                Err(e) => warn!(%zone, error = %e, "global -> zone stream ended"),
            }
            this.deregister(&zone, Direction::GlobalToZone, stream_id, &result);
            let _ = done_tx.send(status);
        });
        Ok(Response::new(outgoing(rx, done_rx)))
    }

    async fn zone_to_global_sync(
        &self,
        request: Request<Streaming<DeltaDiscoveryResponse>>,
    ) -> Result<Response<Self::ZoneToGlobalSyncStream>, Status> {
        let admitted = self.admit(request.metadata()).await?;
        let zone = admitted.zone.clone();
        let stats = Arc::new(StreamStats::default());
        let (stream_id, stopped) = self.register(&zone, Direction::ZoneToGlobal, stats.clone());
        info!(%zone, "zone connected (zone -> global stream)");
        let (tx, rx) = mpsc::channel(16);
        let (done_tx, done_rx) = oneshot::channel();
        let settings = ReceiverSettings {
            receiver: Receiver::Global { zone: zone.clone() },
            kinds: filter::types_sent_by_zone(),
            node: metadata::node(&zone, &self.inner.settings.instance_id, ""),
            direction: Direction::ZoneToGlobal,
        };
        let store = self.inner.store.clone();
        let incoming = request.into_inner();
        let this = self.clone();
        let metrics_zone = zone.clone();
        tokio::spawn(async move {
            let run = receiver::run(store, settings, incoming, tx, stats.clone());
            let (result, status) = tokio::select! {
                r = run => {
                    let status = r.as_ref().err().map(status_of);
                    (r, status)
                }
                s = until_stopped(stopped) => (Err(SyncError::Peer(s.message().to_string())), Some(s)),
            };
            let snapshot = stats.snapshot();
            for (kind, counters) in &snapshot.per_type {
                this.inner
                    .metrics
                    .nacks(&metrics_zone, kind, counters.rejected);
            }
            match &result {
                Ok(()) => info!(%zone, "zone disconnected (zone -> global stream)"),
                Err(e) => warn!(%zone, error = %e, "zone -> global stream ended"),
            }
            this.deregister(&zone, Direction::ZoneToGlobal, stream_id, &result);
            let _ = done_tx.send(status);
        });
        Ok(Response::new(outgoing(rx, done_rx)))
    }
}

#[tonic::async_trait]
impl GlobalKdsService for GlobalKds {
    type StreamXDSConfigsStream = BoxStream<mesh_pb::XdsConfigRequest>;
    type StreamStatsStream = BoxStream<mesh_pb::StatsRequest>;
    type StreamClustersStream = BoxStream<mesh_pb::ClustersRequest>;

    async fn stream_xds_configs(
        &self,
        _request: Request<Streaming<mesh_pb::XdsConfigResponse>>,
    ) -> Result<Response<Self::StreamXDSConfigsStream>, Status> {
        Err(Status::unimplemented(
            "envoy admin forwarding is not served",
        ))
    }

    async fn stream_stats(
        &self,
        _request: Request<Streaming<mesh_pb::StatsResponse>>,
    ) -> Result<Response<Self::StreamStatsStream>, Status> {
        Err(Status::unimplemented(
            "envoy admin forwarding is not served",
        ))
    }

    async fn stream_clusters(
        &self,
        _request: Request<Streaming<mesh_pb::ClustersResponse>>,
    ) -> Result<Response<Self::StreamClustersStream>, Status> {
        Err(Status::unimplemented(
            "envoy admin forwarding is not served",
        ))
    }

    async fn health_check(
        &self,
        request: Request<mesh_pb::ZoneHealthCheckRequest>,
    ) -> Result<Response<mesh_pb::ZoneHealthCheckResponse>, Status> {
        let admitted = self.admit(request.metadata()).await?;
        let ping = request.into_inner();
        let g2z = {
            let mut sessions = self.sessions();
            let session = sessions.entry(admitted.zone.clone()).or_default();
            session.last_seen = Some(Instant::now());
            session.last_heartbeat = Some(SystemTime::now());
            if let Some(lag) = &ping.zone_to_global {
                let lag = Lag {
                    revisions: lag.revisions,
                    seconds: lag.seconds,
                    sender_revision: lag.sender_revision,
                    acked_revision: lag.acked_revision,
                };
                if session.zone_to_global != Some(lag) {
                    session.dirty = true;
                }
                session.zone_to_global = Some(lag);
            }
            session.g2z.as_ref().map(|l| l.stats.snapshot().lag)
        };
        let interval = self.inner.settings.health_interval;
        Ok(Response::new(mesh_pb::ZoneHealthCheckResponse {
            interval: Some(envoy_types::pb::google::protobuf::Duration {
                seconds: interval.as_secs() as i64,
                nanos: interval.subsec_nanos() as i32,
            }),
            global_revision: self.inner.mirror.cursor().revision,
            global_to_zone: g2z.map(|l| status::lag_proto(&l, SystemTime::now())),
        }))
    }
}
