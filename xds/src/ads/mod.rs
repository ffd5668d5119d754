//! The ADS server (`envoy.service.discovery.v3.AggregatedDiscoveryService`,
//! reference: `kuma-api.md` §5.1, `rust-dependencies.md` §4) and the only
//! part of this crate that does I/O.
//!
//! * [`cache`]: [`SnapshotCache`], per node id (`mesh.name`) the proxy's
//!   resources with a content-hash version per type, watched by the streams.
//! * [`state`]: [`StreamState`], the pure per-stream state machine (ACK,
//!   NACK, stale nonces, what to send when).
//! * this module: [`AdsServer`], the tonic service that runs one task per
//!   state-of-the-world stream, [`NodeId`], and [`StreamEvents`], the hooks
//!   through which a stream's life (connected, ACK, NACK, disconnected) can
//!   be recorded (DataplaneInsight, later).
//!
//! Delta xDS (`DeltaAggregatedResources`) is not served yet: it answers
//! `UNIMPLEMENTED`, so bootstraps must use `api_type: GRPC`.

pub mod cache;
pub mod state;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

pub use cache::{Snapshot, SnapshotCache, TypeSnapshot};
pub use state::{RequestKind, StreamState};

/// Responses buffered per stream before the stream task waits for Envoy.
const RESPONSE_BUFFER: usize = 16;

/// Why a stream was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdsError {
    #[error("the first request of an ADS stream must carry node.id")]
    MissingNode,
    #[error("node id {id:?} is not of the form \"mesh.name\"")]
    InvalidNodeId { id: String },
}

impl From<AdsError> for Status {
    fn from(error: AdsError) -> Status {
        Status::invalid_argument(error.to_string())
    }
}

/// A proxy's identity: its node id `mesh.name` (the mesh is everything
/// before the first dot).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeId {
    /// The node id as Envoy sent it, the key of the [`SnapshotCache`].
    pub id: String,
    pub mesh: String,
    pub name: String,
}

impl NodeId {
    /// Parses `mesh.name`; both parts must be non-empty.
    pub fn parse(id: &str) -> Result<NodeId, AdsError> {
        match id.split_once('.') {
            Some((mesh, name)) if !mesh.is_empty() && !name.is_empty() => Ok(NodeId {
                id: id.to_owned(),
                mesh: mesh.to_owned(),
                name: name.to_owned(),
            }),
            _ => Err(AdsError::InvalidNodeId { id: id.to_owned() }),
        }
    }
}

/// The number of a stream since the server started, to tell a proxy's
/// successive streams apart.
pub type StreamId = u64;

/// Hooks called by a stream's task. Every method defaults to doing nothing.
/// They run on the stream's task: keep them quick and non-blocking.
pub trait StreamEvents: Send + Sync + 'static {
    /// The first request arrived and named `node`.
    fn connected(&self, _stream: StreamId, _node: &NodeId) {}
    /// A response of `type_url` at `version` went out.
    fn sent(&self, _stream: StreamId, _node: &NodeId, _type_url: &str, _version: &str) {}
    /// Envoy accepted `version` of `type_url`.
    fn acked(&self, _stream: StreamId, _node: &NodeId, _type_url: &str, _version: &str) {}
    /// Envoy rejected `version` of `type_url`, saying `reason`.
    fn nacked(
        &self,
        _stream: StreamId,
        _node: &NodeId,
        _type_url: &str,
        _version: &str,
        _reason: &str,
    ) {
    }
    /// The stream ended (Envoy left, or the server shut the stream).
    fn disconnected(&self, _stream: StreamId, _node: &NodeId) {}
}

/// [`StreamEvents`] that records nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvents;

impl StreamEvents for NoEvents {}

/// The ADS gRPC service: serves each proxy the snapshot its node id has in
/// the [`SnapshotCache`], and pushes a new one when it changes.
#[derive(Clone)]
pub struct AdsServer {
    cache: SnapshotCache,
    events: Arc<dyn StreamEvents>,
    next_stream: Arc<AtomicU64>,
}

impl std::fmt::Debug for AdsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdsServer")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl AdsServer {
    /// A server reading `cache`, recording nothing.
    pub fn new(cache: SnapshotCache) -> AdsServer {
        AdsServer::with_events(cache, Arc::new(NoEvents))
    }

    /// A server reading `cache` and reporting every stream to `events`.
    pub fn with_events(cache: SnapshotCache, events: Arc<dyn StreamEvents>) -> AdsServer {
        AdsServer {
            cache,
            events,
            next_stream: Arc::new(AtomicU64::new(1)),
        }
    }

    /// The tonic service to add to a `tonic::transport::Server`.
    pub fn into_service(self) -> AggregatedDiscoveryServiceServer<AdsServer> {
        AggregatedDiscoveryServiceServer::new(self)
    }
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsServer {
    type StreamAggregatedResourcesStream = ResponseStream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = ResponseStream<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let (tx, rx) = mpsc::channel(RESPONSE_BUFFER);
        let stream = SotwStream {
            id: self.next_stream.fetch_add(1, Ordering::Relaxed),
            cache: self.cache.clone(),
            events: self.events.clone(),
            tx,
        };
        tokio::spawn(stream.run(request.into_inner()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn delta_aggregated_resources(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented(
            "delta xDS is not supported yet: use ads_config.api_type GRPC",
        ))
    }
}

/// One state-of-the-world stream's task.
struct SotwStream {
    id: StreamId,
    cache: SnapshotCache,
    events: Arc<dyn StreamEvents>,
    tx: mpsc::Sender<Result<DiscoveryResponse, Status>>,
}

impl SotwStream {
    async fn run(self, mut requests: Streaming<DiscoveryRequest>) {
        // Err from the request stream is Envoy going away (§4.4 gotcha 8).
        let Ok(Some(first)) = requests.message().await else {
            return;
        };
        let node = match first.node.as_ref().map(|n| n.id.as_str()) {
            None | Some("") => Err(AdsError::MissingNode),
            Some(id) => NodeId::parse(id),
        };
        let node = match node {
            Ok(node) => node,
            Err(error) => {
                // The receiver may be gone already; nothing else to tell.
                let _ = self.tx.send(Err(error.into())).await;
                return;
            }
        };
        self.events.connected(self.id, &node);
        self.serve(&node, first, requests).await;
        self.events.disconnected(self.id, &node);
    }

    async fn serve(
        &self,
        node: &NodeId,
        first: DiscoveryRequest,
        mut requests: Streaming<DiscoveryRequest>,
    ) {
        let mut snapshots = self.cache.watch(&node.id);
        let mut state = StreamState::new();
        self.on_request(node, &mut state, &first);
        loop {
            let snapshot = snapshots.borrow_and_update().clone();
            for response in state.responses(snapshot.as_deref()) {
                let (type_url, version) =
                    (response.type_url.clone(), response.version_info.clone());
                if self.tx.send(Ok(response)).await.is_err() {
                    return;
                }
                self.events.sent(self.id, node, &type_url, &version);
            }
            tokio::select! {
                request = requests.message() => match request {
                    Ok(Some(request)) => self.on_request(node, &mut state, &request),
                    Ok(None) | Err(_) => return,
                },
                changed = snapshots.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = self.tx.closed() => return,
            }
        }
    }

    fn on_request(&self, node: &NodeId, state: &mut StreamState, request: &DiscoveryRequest) {
        let type_url = request.type_url.as_str();
        match state.on_request(request) {
            RequestKind::Ack { version } => self.events.acked(self.id, node, type_url, &version),
            RequestKind::Nack {
                version, reason, ..
            } => self
                .events
                .nacked(self.id, node, type_url, &version, &reason),
            RequestKind::Initial | RequestKind::Stale => {}
        }
    }
}
