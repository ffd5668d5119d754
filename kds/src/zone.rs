//! The zone's KDS client: dials the global, authenticates with its zone token, and runs on one
//! connection the GlobalToZone stream (the zone receives), the ZoneToGlobal stream (the zone
//! sends) and the heartbeat, which carries the zone's revision and its zone -> global lag and
//! brings back the global's view of the global -> zone lag.
//!
//! The three share fate: when one ends, the connection is dropped and dialled again after an
//! exponential backoff with jitter (reset after a connection that lived longer than the
//! maximum backoff). While disconnected the zone keeps serving from its store.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use envoy_types::pb::envoy::service::discovery::v3::Resource as DeltaResource;
use kds_proto::mesh::v1alpha1::ZoneHealthCheckRequest;
use kds_proto::mesh::v1alpha1::global_kds_service_client::GlobalKdsServiceClient;
use kds_proto::mesh::v1alpha1::kds_sync_service_client::KdsSyncServiceClient;
use model::{Resource, ResourceType};
use store::{ResourceStore, StoreError};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request};
use tracing::{info, warn};

use crate::error::{Error, SyncError};
use crate::metrics::KdsMetrics;
use crate::mirror::Mirror;
use crate::receiver::{self, ReceiverSettings};
use crate::reconcile::Receiver;
use crate::sender::{self, Offer, SenderSettings};
use crate::stats::{Direction, Lag, StreamStats};
use crate::{filter, mapping, metadata, status, transport, wire};

/// How a zone reaches its global.
#[derive(Clone)]
pub struct ZoneSettings {
    pub zone: String,
    pub host: String,
    pub port: u16,
    /// TLS client config (`grpcs://`); `None` for plaintext (`grpc://`).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The zone token (scope `cp`) the global checks.
    pub token: Option<String>,
    /// A file holding the token, read again on every connection (a rotated token is picked
    /// up at the next reconnect); takes precedence over `token`.
    pub token_path: Option<std::path::PathBuf>,
    pub version: String,
    pub instance_id: String,
    /// The zone's config as JSON, secrets removed (ZoneInsight `config`).
    pub config_json: String,
    pub max_message_bytes: usize,
    pub stall_timeout: Duration,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl std::fmt::Debug for ZoneSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZoneSettings")
            .field("zone", &self.zone)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls.is_some())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// What the zone knows of its link to the global.
#[derive(Clone, Debug, Default)]
pub struct LinkState {
    pub connected: bool,
    pub connects: u64,
    pub last_error: Option<String>,
    /// The global's revision from the last heartbeat answer.
    pub global_revision: u64,
    /// Global -> zone lag as the global measured it (last heartbeat answer).
    pub global_to_zone: Option<Lag>,
    /// Zone -> global lag as this zone measures it.
    pub zone_to_global: Lag,
}

/// A handle on the running client.
#[derive(Clone, Default)]
pub struct ZoneLink {
    state: Arc<Mutex<LinkState>>,
}

impl ZoneLink {
    pub fn state(&self) -> LinkState {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a zone sends to the global.
struct ZoneOffer {
    zone: String,
}

impl Offer for ZoneOffer {
    fn kinds(&self) -> Vec<ResourceType> {
        filter::types_sent_by_zone()
    }

    fn offer(&self, resource: &Resource) -> Result<Option<DeltaResource>, Error> {
        if !filter::zone_to_global(resource) {
            return Ok(None);
        }
        let mapped = mapping::zone_to_global(resource.clone(), &self.zone);
        Ok(Some(wire::to_delta_resource(&mapped)))
    }
}

/// Starts the client; it runs until `shutdown` resolves.
pub async fn start(
    store: Arc<dyn ResourceStore>,
    settings: ZoneSettings,
    registry: &mut prometheus_client::registry::Registry,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(ZoneLink, tokio::task::JoinHandle<()>), StoreError> {
    let (mirror, mirror_task) = Mirror::start(store.clone(), filter::types_sent_by_zone()).await?;
    let link = ZoneLink::default();
    let metrics = KdsMetrics::register(registry);
    let handle = link.clone();
    let task = tokio::spawn(async move {
        tokio::select! {
            () = run(store, mirror, settings, handle, metrics) => {}
            () = shutdown => {}
        }
        mirror_task.abort();
    });
    Ok((link, task))
}

async fn run(
    store: Arc<dyn ResourceStore>,
    mirror: Mirror,
    settings: ZoneSettings,
    link: ZoneLink,
    metrics: KdsMetrics,
) {
    let builder = ExponentialBuilder::default()
        .with_min_delay(settings.base_backoff)
        .with_max_delay(settings.max_backoff)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times();
    let mut backoff = builder.build();
    loop {
        let started = Instant::now();
        let result = session(&store, &mirror, &settings, &link, &metrics).await;
        {
            let mut state = link.lock();
            state.connected = false;
            state.last_error = Some(result.clone().err().unwrap_or_else(|| "closed".into()));
        }
        metrics.connected(&settings.zone, Direction::GlobalToZone, false);
        metrics.connected(&settings.zone, Direction::ZoneToGlobal, false);
        if started.elapsed() > settings.max_backoff {
            backoff = builder.build();
        }
        let delay = backoff.next().unwrap_or(settings.max_backoff);
        match &result {
            Ok(()) => info!(?delay, "KDS connection to the global closed; reconnecting"),
            Err(e) => {
                warn!(error = %e, ?delay, "KDS connection to the global failed; reconnecting")
            }
        }
        tokio::time::sleep(delay).await;
    }
}

/// One connection: until any of its three parts ends.
async fn session(
    store: &Arc<dyn ResourceStore>,
    mirror: &Mirror,
    settings: &ZoneSettings,
    link: &ZoneLink,
    metrics: &KdsMetrics,
) -> Result<(), String> {
    let channel = transport::dial(&settings.host, settings.port, settings.tls.clone())
        .await
        .map_err(|e| e.to_string())?;
    let token = match &settings.token_path {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map(|t| t.trim().to_string())
                .map_err(|e| format!("reading the zone token {}: {e}", path.display()))?,
        ),
        None => settings.token.clone(),
    };
    let md = metadata::zone_metadata(&settings.zone, &settings.version, token.as_deref())
        .map_err(|e| e.to_string())?;
    let max = settings.max_message_bytes;
    let mut sync = KdsSyncServiceClient::new(channel.clone())
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let mut health = GlobalKdsServiceClient::new(channel);

    let refused = |what: &str, status: tonic::Status| {
        format!(
            "the global refused the {what} stream: {} ({:?})",
            status.message(),
            status.code()
        )
    };

    // Global -> zone: this zone receives.
    let g2z_stats = Arc::new(StreamStats::default());
    let (req_tx, req_rx) = mpsc::channel(64);
    let responses = sync
        .global_to_zone_sync(with_md(&md, ReceiverStream::new(req_rx)))
        .await
        .map_err(|s| refused("global -> zone", s))?
        .into_inner();
    let g2z = receiver::run(
        store.clone(),
        ReceiverSettings {
            receiver: Receiver::Zone,
            kinds: filter::types_sent_by_global(),
            node: metadata::node(&settings.zone, &settings.instance_id, &settings.config_json),
            direction: Direction::GlobalToZone,
        },
        responses,
        req_tx,
        g2z_stats.clone(),
    );

    // Zone -> global: this zone sends.
    let z2g_stats = Arc::new(StreamStats::default());
    let (resp_tx, resp_rx) = mpsc::channel(64);
    let requests = sync
        .zone_to_global_sync(with_md(&md, ReceiverStream::new(resp_rx)))
        .await
        .map_err(|s| refused("zone -> global", s))?
        .into_inner();
    let z2g = sender::run(
        Arc::new(ZoneOffer {
            zone: settings.zone.clone(),
        }),
        mirror.clone(),
        requests,
        resp_tx,
        SenderSettings {
            max_message_bytes: max,
            stall_timeout: settings.stall_timeout,
            identifier: settings.zone.clone(),
            direction: Direction::ZoneToGlobal,
            metrics: Some((metrics.clone(), settings.zone.clone())),
        },
        z2g_stats.clone(),
    );

    {
        let mut state = link.lock();
        state.connected = true;
        state.connects += 1;
        state.last_error = None;
    }
    metrics.connected(&settings.zone, Direction::GlobalToZone, true);
    metrics.connected(&settings.zone, Direction::ZoneToGlobal, true);
    info!(zone = %settings.zone, global = %format!("{}:{}", settings.host, settings.port), "connected to the global");

    let heartbeat = async {
        let mut interval = Duration::from_secs(1);
        loop {
            let z2g_lag = z2g_stats.snapshot().lag;
            let ping = ZoneHealthCheckRequest {
                zone_revision: mirror.cursor().revision,
                zone_to_global: Some(status::lag_proto(&z2g_lag, std::time::SystemTime::now())),
                applied_global_revision: g2z_stats.snapshot().applied_revision,
            };
            let answer = tokio::time::timeout(
                settings.stall_timeout,
                health.health_check(with_md(&md, ping)),
            )
            .await;
            match answer {
                Err(_) => {
                    return Err::<(), String>(format!(
                        "heartbeat unanswered for {:?}",
                        settings.stall_timeout
                    ));
                }
                Ok(Err(status)) if status.code() == Code::Unimplemented => {
                    // An older global without health checks: streams alone then.
                    std::future::pending::<()>().await;
                }
                Ok(Err(status)) => return Err(refused("heartbeat", status)),
                Ok(Ok(answer)) => {
                    let answer = answer.into_inner();
                    if let Some(d) = &answer.interval
                        && (d.seconds > 0 || d.nanos > 0)
                    {
                        interval = Duration::new(
                            u64::try_from(d.seconds).unwrap_or(1),
                            u32::try_from(d.nanos).unwrap_or(0),
                        );
                    }
                    let g2z_lag = answer.global_to_zone.map(|l| Lag {
                        revisions: l.revisions,
                        seconds: l.seconds,
                        sender_revision: l.sender_revision,
                        acked_revision: l.acked_revision,
                    });
                    if let Some(lag) = &g2z_lag {
                        metrics.lag(&settings.zone, Direction::GlobalToZone, lag);
                    }
                    metrics.lag(&settings.zone, Direction::ZoneToGlobal, &z2g_lag);
                    let mut state = link.lock();
                    state.global_revision = answer.global_revision;
                    state.global_to_zone = g2z_lag;
                    state.zone_to_global = z2g_lag;
                }
            }
            tokio::time::sleep(interval).await;
        }
    };

    let describe = |what: &str, r: Result<(), SyncError>| match r {
        Ok(()) => format!("the global closed the {what} stream"),
        Err(e @ SyncError::Stalled { .. }) => {
            metrics.stalled(
                &settings.zone,
                if what.starts_with("zone") {
                    Direction::ZoneToGlobal
                } else {
                    Direction::GlobalToZone
                },
            );
            format!("{what} stream: {e}")
        }
        Err(e) => format!("{what} stream: {e}"),
    };
    let ended = tokio::select! {
        r = g2z => describe("global -> zone", r),
        r = z2g => describe("zone -> global", r),
        r = heartbeat => r.err().unwrap_or_default(),
    };
    Err(ended)
}

fn with_md<T>(md: &tonic::metadata::MetadataMap, body: T) -> Request<T> {
    let mut request = Request::new(body);
    *request.metadata_mut() = md.clone();
    request
}
