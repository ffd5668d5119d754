//! The ADS server (`envoy.service.discovery.v3.AggregatedDiscoveryService`,
//! reference: `kuma-api.md` §5.1, `rust-dependencies.md` §4) and the only
//! part of this crate that does I/O.
//!
//! * [`cache`]: [`SnapshotCache`], per node id (`mesh.name`) the proxy's
//!   resources with a content-hash version per type and per resource,
//!   watched by the streams.
//! * [`state`]: [`StreamState`], the pure state machine of a
//!   state-of-the-world stream (ACK, NACK, stale nonces, what to send when).
//! * [`delta`]: [`DeltaState`], the pure state machine of a delta stream
//!   (wildcard and named subscriptions, per-resource versions, removals).
//! * this module: [`AdsServer`], the tonic service that runs one task per
//!   stream (both variants), [`NodeId`], [`StreamAuthenticator`] (who may
//!   open a stream for a node) and [`StreamEvents`], the hooks through which
//!   a stream's life (connected, sent, ACK, NACK, disconnected) is recorded.
//!
//! Nothing here knows the xDS types by heart beyond Envoy's ordering
//! (CDS, EDS, LDS, then the rest): any type URL a snapshot holds is served,
//! wildcard or by name, in both variants.
//!
//! A stream is admitted on its first request: it must carry `node.id` of the
//! form `mesh.name` (`.name` for a zone ingress), and the [`StreamAuthenticator`] must accept the node and
//! the stream's `authorization` metadata (`Bearer <token>` or the bare
//! token). A later request naming another node id ends the stream with
//! `InvalidArgument`: a stream's node never changes.

pub mod cache;
pub mod delta;
pub mod state;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

pub use cache::{Snapshot, SnapshotCache, TypeSnapshot};
pub use delta::DeltaState;
pub use state::{RequestKind, StreamState};

use crate::bootstrap::AUTHORIZATION_METADATA;

/// Responses buffered per stream before the stream task waits for Envoy.
const RESPONSE_BUFFER: usize = 16;

/// Why a stream was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdsError {
    #[error("the first request of an ADS stream must carry node.id")]
    MissingNode,
    #[error("node id {id:?} is not of the form \"mesh.name\" (\".name\" for a zone ingress)")]
    InvalidNodeId { id: String },
    #[error("node id changed on the stream from {from:?} to {to:?}: a stream serves one node")]
    NodeChanged { from: String, to: String },
}

impl From<AdsError> for Status {
    fn from(error: AdsError) -> Status {
        Status::invalid_argument(error.to_string())
    }
}

/// A proxy's identity: its node id `mesh.name` (the mesh is everything
/// before the first dot; empty for a zone ingress).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeId {
    /// The node id as Envoy sent it, the key of the [`SnapshotCache`].
    pub id: String,
    pub mesh: String,
    pub name: String,
}

impl NodeId {
    /// Parses `mesh.name`; the name must be non-empty, and so must the mesh
    /// but for a zone ingress (`.name`: zone proxies belong to no mesh, as in Kuma).
    pub fn parse(id: &str) -> Result<NodeId, AdsError> {
        match id.split_once('.') {
            Some((mesh, name)) if !name.is_empty() => Ok(NodeId {
                id: id.to_owned(),
                mesh: mesh.to_owned(),
                name: name.to_owned(),
            }),
            _ => Err(AdsError::InvalidNodeId { id: id.to_owned() }),
        }
    }

    /// Whether this is a zone ingress (no mesh).
    pub fn is_zone_ingress(&self) -> bool {
        self.mesh.is_empty()
    }
}

/// The number of a stream since the server started, to tell a proxy's
/// successive streams apart.
pub type StreamId = u64;

/// Which ADS variant a stream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// `StreamAggregatedResources`.
    StateOfTheWorld,
    /// `DeltaAggregatedResources`.
    Delta,
}

/// What the first request of a stream told about the proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectInfo {
    /// The `node` of the first request (metadata, Envoy's build version).
    pub node: Node,
    pub variant: Variant,
}

/// Decides whether a stream may serve a node. Called once per stream, on its
/// first request, before anything is sent.
#[tonic::async_trait]
pub trait StreamAuthenticator: Send + Sync + 'static {
    /// `token` is the stream's `authorization` metadata without a `Bearer `
    /// prefix (`None` when absent or empty). Refuse with `Unauthenticated`
    /// (no or a bad credential) or `PermissionDenied` (a credential for
    /// another proxy); the status message reaches the proxy's log and must
    /// never contain the token.
    async fn authenticate(
        &self,
        node: &NodeId,
        envoy_node: &Node,
        token: Option<&str>,
    ) -> Result<(), Status>;
}

/// [`StreamAuthenticator`] that admits every stream (tests, and control
/// planes that do not authenticate proxies).
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

#[tonic::async_trait]
impl StreamAuthenticator for AllowAll {
    async fn authenticate(&self, _: &NodeId, _: &Node, _: Option<&str>) -> Result<(), Status> {
        Ok(())
    }
}

/// The token of a stream's `authorization` metadata: `Bearer <t>` or bare
/// `<t>`, trimmed; `None` when absent, empty or not text.
pub fn bearer_token(metadata: &MetadataMap) -> Option<String> {
    let value = metadata.get(AUTHORIZATION_METADATA)?.to_str().ok()?.trim();
    if value.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => value,
    };
    (!token.is_empty()).then(|| token.to_owned())
}

/// Hooks called by a stream's task. Every method defaults to doing nothing.
/// They run on the stream's task: keep them quick and non-blocking (hand
/// the event to a channel; never await the store).
pub trait StreamEvents: Send + Sync + 'static {
    /// The first request arrived, named `node` and was authenticated.
    fn connected(&self, _stream: StreamId, _node: &NodeId, _info: &ConnectInfo) {}
    /// A response of `type_url` at `version` (the type's content hash) went out.
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

/// Several [`StreamEvents`], each told every event in order.
impl StreamEvents for Vec<Arc<dyn StreamEvents>> {
    fn connected(&self, stream: StreamId, node: &NodeId, info: &ConnectInfo) {
        self.iter().for_each(|e| e.connected(stream, node, info));
    }
    fn sent(&self, stream: StreamId, node: &NodeId, type_url: &str, version: &str) {
        self.iter()
            .for_each(|e| e.sent(stream, node, type_url, version));
    }
    fn acked(&self, stream: StreamId, node: &NodeId, type_url: &str, version: &str) {
        self.iter()
            .for_each(|e| e.acked(stream, node, type_url, version));
    }
    fn nacked(&self, stream: StreamId, node: &NodeId, type_url: &str, version: &str, reason: &str) {
        self.iter()
            .for_each(|e| e.nacked(stream, node, type_url, version, reason));
    }
    fn disconnected(&self, stream: StreamId, node: &NodeId) {
        self.iter().for_each(|e| e.disconnected(stream, node));
    }
}

/// The ADS gRPC service: serves each proxy the snapshot its node id has in
/// the [`SnapshotCache`], and pushes a new one when it changes.
#[derive(Clone)]
pub struct AdsServer {
    cache: SnapshotCache,
    events: Arc<dyn StreamEvents>,
    auth: Arc<dyn StreamAuthenticator>,
    stop: Option<watch::Receiver<bool>>,
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
    /// A server reading `cache`, admitting every stream, recording nothing.
    pub fn new(cache: SnapshotCache) -> AdsServer {
        AdsServer::with_events(cache, Arc::new(NoEvents))
    }

    /// A server reading `cache`, admitting every stream and reporting it to
    /// `events`.
    pub fn with_events(cache: SnapshotCache, events: Arc<dyn StreamEvents>) -> AdsServer {
        AdsServer {
            cache,
            events,
            auth: Arc::new(AllowAll),
            stop: None,
            next_stream: Arc::new(AtomicU64::new(1)),
        }
    }

    /// `self`, admitting only the streams `auth` accepts.
    pub fn with_authenticator(mut self, auth: Arc<dyn StreamAuthenticator>) -> AdsServer {
        self.auth = auth;
        self
    }

    /// `self`, ending every stream (with `UNAVAILABLE`, so that Envoy redials)
    /// once `stop` turns true: a graceful server shutdown waits for its
    /// streams, and ADS streams never end on their own.
    pub fn with_shutdown(mut self, stop: watch::Receiver<bool>) -> AdsServer {
        self.stop = Some(stop);
        self
    }

    /// The tonic service to add to a `tonic::transport::Server`.
    pub fn into_service(self) -> AggregatedDiscoveryServiceServer<AdsServer> {
        AggregatedDiscoveryServiceServer::new(self)
    }

    fn stream<T>(&self, metadata: &MetadataMap, tx: mpsc::Sender<Result<T, Status>>) -> Stream_<T> {
        Stream_ {
            id: self.next_stream.fetch_add(1, Ordering::Relaxed),
            cache: self.cache.clone(),
            events: self.events.clone(),
            auth: self.auth.clone(),
            token: bearer_token(metadata),
            stop: self.stop.clone(),
            tx,
        }
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
        let stream = self.stream(request.metadata(), tx);
        tokio::spawn(stream.run_sotw(request.into_inner()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let (tx, rx) = mpsc::channel(RESPONSE_BUFFER);
        let stream = self.stream(request.metadata(), tx);
        tokio::spawn(stream.run_delta(request.into_inner()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// One stream's task, of either variant (`T` is the response type).
struct Stream_<T> {
    id: StreamId,
    cache: SnapshotCache,
    events: Arc<dyn StreamEvents>,
    auth: Arc<dyn StreamAuthenticator>,
    token: Option<String>,
    stop: Option<watch::Receiver<bool>>,
    tx: mpsc::Sender<Result<T, Status>>,
}

/// Resolves once `stop` turns true; never without a stop signal (or once
/// its sender is gone).
async fn stopping(stop: Option<watch::Receiver<bool>>) {
    if let Some(mut stop) = stop
        && stop.wait_for(|s| *s).await.is_ok()
    {
        return;
    }
    std::future::pending::<()>().await;
}

/// What ends a stream whose server stops.
fn shutting_down() -> Status {
    Status::unavailable("the control plane is shutting down")
}

/// Whether a later request's `node` (Envoy may repeat it) names the stream's node.
fn same_node(stream_node: &NodeId, node: Option<&Node>) -> Result<(), AdsError> {
    match node.map(|n| n.id.as_str()) {
        None | Some("") => Ok(()),
        Some(id) if id == stream_node.id => Ok(()),
        Some(id) => Err(AdsError::NodeChanged {
            from: stream_node.id.clone(),
            to: id.to_owned(),
        }),
    }
}

impl<T: Send + 'static> Stream_<T> {
    /// Parses and authenticates the first request's node; on refusal tells
    /// the proxy why and returns `None`.
    async fn admit(&self, node: Option<&Node>, variant: Variant) -> Option<(NodeId, ConnectInfo)> {
        let parsed = match node.map(|n| n.id.as_str()) {
            None | Some("") => Err(AdsError::MissingNode),
            Some(id) => NodeId::parse(id),
        };
        let result = match parsed {
            Err(error) => Err(Status::from(error)),
            Ok(id) => {
                let envoy_node = node.cloned().unwrap_or_default();
                match self
                    .auth
                    .authenticate(&id, &envoy_node, self.token.as_deref())
                    .await
                {
                    Ok(()) => Ok((
                        id,
                        ConnectInfo {
                            node: envoy_node,
                            variant,
                        },
                    )),
                    Err(status) => {
                        tracing::warn!(node = %id.id, code = ?status.code(), reason = status.message(), "ADS stream refused");
                        Err(status)
                    }
                }
            }
        };
        match result {
            Ok(admitted) => Some(admitted),
            Err(status) => {
                // The receiver may be gone already; nothing else to tell.
                let _ = self.tx.send(Err(status)).await;
                None
            }
        }
    }

    async fn refuse(&self, error: AdsError) {
        let _ = self.tx.send(Err(error.into())).await;
    }
}

impl Stream_<DiscoveryResponse> {
    async fn run_sotw(self, mut requests: Streaming<DiscoveryRequest>) {
        // Err from the request stream is Envoy going away (§4.4 gotcha 8).
        let first = tokio::select! {
            first = requests.message() => first,
            () = stopping(self.stop.clone()) => return,
        };
        let Ok(Some(first)) = first else {
            return;
        };
        let Some((node, info)) = self
            .admit(first.node.as_ref(), Variant::StateOfTheWorld)
            .await
        else {
            return;
        };
        self.events.connected(self.id, &node, &info);
        self.serve_sotw(&node, first, requests).await;
        self.events.disconnected(self.id, &node);
    }

    async fn serve_sotw(
        &self,
        node: &NodeId,
        first: DiscoveryRequest,
        mut requests: Streaming<DiscoveryRequest>,
    ) {
        let mut snapshots = self.cache.watch(&node.id);
        let stop = stopping(self.stop.clone());
        tokio::pin!(stop);
        let mut state = StreamState::new();
        self.on_sotw_request(node, &mut state, &first);
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
                    Ok(Some(request)) => {
                        if let Err(e) = same_node(node, request.node.as_ref()) {
                            self.refuse(e).await;
                            return;
                        }
                        self.on_sotw_request(node, &mut state, &request);
                    }
                    Ok(None) | Err(_) => return,
                },
                changed = snapshots.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = self.tx.closed() => return,
                () = &mut stop => {
                    let _ = self.tx.send(Err(shutting_down())).await;
                    return;
                }
            }
        }
    }

    fn on_sotw_request(&self, node: &NodeId, state: &mut StreamState, request: &DiscoveryRequest) {
        let kind = state.on_request(request);
        self.report(node, &request.type_url, kind);
    }
}

impl Stream_<DeltaDiscoveryResponse> {
    async fn run_delta(self, mut requests: Streaming<DeltaDiscoveryRequest>) {
        let first = tokio::select! {
            first = requests.message() => first,
            () = stopping(self.stop.clone()) => return,
        };
        let Ok(Some(first)) = first else {
            return;
        };
        let Some((node, info)) = self.admit(first.node.as_ref(), Variant::Delta).await else {
            return;
        };
        self.events.connected(self.id, &node, &info);
        self.serve_delta(&node, first, requests).await;
        self.events.disconnected(self.id, &node);
    }

    async fn serve_delta(
        &self,
        node: &NodeId,
        first: DeltaDiscoveryRequest,
        mut requests: Streaming<DeltaDiscoveryRequest>,
    ) {
        let mut snapshots = self.cache.watch(&node.id);
        let stop = stopping(self.stop.clone());
        tokio::pin!(stop);
        let mut state = DeltaState::new();
        self.on_delta_request(node, &mut state, &first);
        loop {
            let snapshot = snapshots.borrow_and_update().clone();
            for response in state.responses(snapshot.as_deref()) {
                let (type_url, version) = (
                    response.type_url.clone(),
                    response.system_version_info.clone(),
                );
                if self.tx.send(Ok(response)).await.is_err() {
                    return;
                }
                self.events.sent(self.id, node, &type_url, &version);
            }
            tokio::select! {
                request = requests.message() => match request {
                    Ok(Some(request)) => {
                        if let Err(e) = same_node(node, request.node.as_ref()) {
                            self.refuse(e).await;
                            return;
                        }
                        self.on_delta_request(node, &mut state, &request);
                    }
                    Ok(None) | Err(_) => return,
                },
                changed = snapshots.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = self.tx.closed() => return,
                () = &mut stop => {
                    let _ = self.tx.send(Err(shutting_down())).await;
                    return;
                }
            }
        }
    }

    fn on_delta_request(
        &self,
        node: &NodeId,
        state: &mut DeltaState,
        request: &DeltaDiscoveryRequest,
    ) {
        let kind = state.on_request(request);
        self.report(node, &request.type_url, kind);
    }
}

impl<T> Stream_<T> {
    fn report(&self, node: &NodeId, type_url: &str, kind: RequestKind) {
        match kind {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_bare_tokens() {
        let mut metadata = MetadataMap::new();
        assert_eq!(bearer_token(&metadata), None);
        metadata.insert("authorization", "Bearer abc.def".parse().expect("ascii"));
        assert_eq!(bearer_token(&metadata).as_deref(), Some("abc.def"));
        metadata.insert("authorization", "abc.def".parse().expect("ascii"));
        assert_eq!(bearer_token(&metadata).as_deref(), Some("abc.def"));
        metadata.insert("authorization", "bearer  ".parse().expect("ascii"));
        assert_eq!(bearer_token(&metadata), None);
    }

    #[test]
    fn node_ids_name_a_mesh_and_a_proxy_or_a_zone_ingress() {
        let sidecar = NodeId::parse("default.web-1.v2").expect("valid");
        assert_eq!(
            (sidecar.mesh.as_str(), sidecar.name.as_str()),
            ("default", "web-1.v2")
        );
        assert!(!sidecar.is_zone_ingress());
        let ingress = NodeId::parse(".ingress-1").expect("valid");
        assert_eq!(
            (ingress.mesh.as_str(), ingress.name.as_str()),
            ("", "ingress-1")
        );
        assert!(ingress.is_zone_ingress());
        for bad in ["", "web-1", "default.", "."] {
            assert!(
                matches!(NodeId::parse(bad), Err(AdsError::InvalidNodeId { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_stream_keeps_its_node() {
        let node = NodeId::parse("default.web-1").expect("valid");
        let other = Node {
            id: "default.web-2".to_owned(),
            ..Default::default()
        };
        assert!(same_node(&node, None).is_ok());
        assert!(same_node(&node, Some(&Node::default())).is_ok());
        assert!(matches!(
            same_node(&node, Some(&other)),
            Err(AdsError::NodeChanged { .. })
        ));
    }
}

/// Snapshots for the state machines' tests.
#[cfg(test)]
pub(crate) mod test_util {
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
    use envoy_types::pb::envoy::config::listener::v3::Listener;

    use super::Snapshot;
    use crate::EnvoyResources;

    /// A snapshot of empty clusters (each with its load assignment) and listeners.
    pub(crate) fn snapshot(clusters: &[&str], listeners: &[&str]) -> Snapshot {
        Snapshot::new(EnvoyResources {
            clusters: clusters
                .iter()
                .map(|name| Cluster {
                    name: (*name).to_owned(),
                    ..Default::default()
                })
                .collect(),
            load_assignments: clusters
                .iter()
                .map(|name| {
                    std::sync::Arc::new(ClusterLoadAssignment {
                        cluster_name: (*name).to_owned(),
                        ..Default::default()
                    })
                })
                .collect(),
            listeners: listeners
                .iter()
                .map(|name| Listener {
                    name: (*name).to_owned(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }
}
