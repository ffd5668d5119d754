//! The ADS server in process, driven by a tonic client playing Envoy:
//! first answers, ACK, NACK, stale nonces, snapshot changes, unknown nodes; stream
//! authentication (`authorization` metadata) and a constant node id; a delta stream's
//! per-resource versions, removals, ACK and NACK.
//!
//! "Nothing was resent" is shown without sleeping: the stream's task handles
//! requests in order, so after an ACK or NACK the test subscribes to another
//! type, and the next response on the stream must be that type's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::rpc::Status;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::Streaming;
use xds::ads::{AdsServer, ConnectInfo, NodeId, SnapshotCache, StreamEvents, StreamId};
use xds::{CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL, EnvoyResources, LISTENER_TYPE_URL};

const NODE: &str = "default.web-1";
const DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq)]
enum Event {
    Connected(String),
    Acked(String, String),
    Nacked(String, String, String),
    Disconnected(String),
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Event>>);

impl Recorder {
    fn push(&self, event: Event) {
        self.0.lock().unwrap().push(event);
    }
    fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }
    /// Waits (polling, with a deadline) until `event` was recorded.
    async fn wait_for(&self, event: &Event) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while !self.events().contains(event) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {event:?} in {:?}",
                self.events()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl StreamEvents for Recorder {
    fn connected(&self, _: StreamId, node: &NodeId, _: &ConnectInfo) {
        self.push(Event::Connected(node.id.clone()));
    }
    fn acked(&self, _: StreamId, _: &NodeId, type_url: &str, version: &str) {
        self.push(Event::Acked(type_url.to_owned(), version.to_owned()));
    }
    fn nacked(&self, _: StreamId, _: &NodeId, type_url: &str, version: &str, reason: &str) {
        self.push(Event::Nacked(
            type_url.to_owned(),
            version.to_owned(),
            reason.to_owned(),
        ));
    }
    fn disconnected(&self, _: StreamId, node: &NodeId) {
        self.push(Event::Disconnected(node.id.clone()));
    }
}

/// An ADS server on a free port; returns its address.
async fn start(cache: SnapshotCache, events: Arc<Recorder>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = AdsServer::with_events(cache, events).into_service();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    format!("http://{addr}")
}

/// A client stream: requests go in through the sender.
struct Client {
    requests: mpsc::Sender<DiscoveryRequest>,
    responses: Streaming<DiscoveryResponse>,
}

impl Client {
    async fn connect(addr: &str) -> Client {
        let mut client = AggregatedDiscoveryServiceClient::connect(addr.to_owned())
            .await
            .unwrap();
        let (requests, rx) = mpsc::channel(16);
        let responses = client
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        Client {
            requests,
            responses,
        }
    }

    async fn send(&self, request: DiscoveryRequest) {
        self.requests.send(request).await.unwrap();
    }

    async fn recv(&mut self) -> DiscoveryResponse {
        tokio::time::timeout(DEADLINE, self.responses.message())
            .await
            .expect("no response before the deadline")
            .unwrap()
            .expect("stream ended")
    }
}

fn request(type_url: &str, version: &str, nonce: &str, names: &[&str]) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: type_url.to_owned(),
        version_info: version.to_owned(),
        response_nonce: nonce.to_owned(),
        resource_names: names.iter().map(|n| (*n).to_owned()).collect(),
        ..Default::default()
    }
}

fn first_request(type_url: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        node: Some(Node {
            id: NODE.to_owned(),
            cluster: "web".to_owned(),
            ..Default::default()
        }),
        ..request(type_url, "", "", &[])
    }
}

fn resources() -> EnvoyResources {
    common::generate_case("http_inbound_and_outbound")
}

#[tokio::test]
async fn first_answer_ack_nack_and_snapshot_change() {
    let cache = SnapshotCache::new();
    let resources = resources();
    cache.set(NODE, resources.clone());
    let events = Arc::new(Recorder::default());
    let addr = start(cache.clone(), events.clone()).await;
    let mut client = Client::connect(&addr).await;

    // CDS: the snapshot's clusters, with a version and a nonce.
    client.send(first_request(CLUSTER_TYPE_URL)).await;
    let cds = client.recv().await;
    assert_eq!(cds.type_url, CLUSTER_TYPE_URL);
    assert_eq!(cds.resources.len(), resources.clusters.len());
    assert!(!cds.nonce.is_empty());
    assert_eq!(
        cache.get(NODE).unwrap().version(CLUSTER_TYPE_URL),
        Some(cds.version_info.as_str())
    );
    events.wait_for(&Event::Connected(NODE.to_owned())).await;

    // EDS names one cluster (before the CDS ACK, as Envoy does).
    client
        .send(request(ENDPOINT_TYPE_URL, "", "", &["backend"]))
        .await;
    let eds = client.recv().await;
    assert_eq!(eds.type_url, ENDPOINT_TYPE_URL);
    assert_eq!(eds.resources.len(), 1);

    // A stale nonce is ignored, the ACK is recorded, nothing is resent.
    client
        .send(request(CLUSTER_TYPE_URL, "", "not-a-nonce", &[]))
        .await;
    client
        .send(request(
            CLUSTER_TYPE_URL,
            &cds.version_info,
            &cds.nonce,
            &[],
        ))
        .await;
    client.send(request(LISTENER_TYPE_URL, "", "", &[])).await;
    let lds = client.recv().await;
    assert_eq!(lds.type_url, LISTENER_TYPE_URL, "CDS was resent");
    assert_eq!(lds.resources.len(), resources.listeners.len());
    events
        .wait_for(&Event::Acked(
            CLUSTER_TYPE_URL.to_owned(),
            cds.version_info.clone(),
        ))
        .await;

    // NACK of LDS: the reason is recorded, the same version is not resent.
    let mut nack = request(LISTENER_TYPE_URL, "", &lds.nonce, &[]);
    nack.error_detail = Some(Status {
        code: 13,
        message: "listener refused".to_owned(),
        details: Vec::new(),
    });
    client.send(nack).await;
    client
        .send(request(
            ENDPOINT_TYPE_URL,
            &eds.version_info,
            &eds.nonce,
            &[],
        ))
        .await;
    let eds_all = client.recv().await;
    assert_eq!(eds_all.type_url, ENDPOINT_TYPE_URL, "LDS was resent");
    assert_eq!(eds_all.resources.len(), resources.load_assignments.len());
    let nacked = Event::Nacked(
        LISTENER_TYPE_URL.to_owned(),
        lds.version_info.clone(),
        "listener refused".to_owned(),
    );
    events.wait_for(&nacked).await;

    // A snapshot change: only the changed type goes out, at a new version.
    let mut changed = resources.clone();
    changed.listeners.pop();
    assert!(cache.set(NODE, changed.clone()));
    let lds2 = client.recv().await;
    assert_eq!(lds2.type_url, LISTENER_TYPE_URL);
    assert_ne!(lds2.version_info, lds.version_info);
    assert_eq!(lds2.resources.len(), changed.listeners.len());

    drop(client);
    events.wait_for(&Event::Disconnected(NODE.to_owned())).await;
}

#[tokio::test]
async fn unknown_node_waits_for_its_snapshot() {
    let cache = SnapshotCache::new();
    let events = Arc::new(Recorder::default());
    let addr = start(cache.clone(), events.clone()).await;
    let mut client = Client::connect(&addr).await;
    client.send(first_request(CLUSTER_TYPE_URL)).await;
    events.wait_for(&Event::Connected(NODE.to_owned())).await;
    // The stream is open and silent; a snapshot for another node changes nothing.
    cache.set("default.other", resources());
    cache.set(NODE, resources());
    let cds = client.recv().await;
    assert_eq!(cds.type_url, CLUSTER_TYPE_URL);
    assert_eq!(cds.resources.len(), resources().clusters.len());
}

#[tokio::test]
async fn a_first_request_without_a_valid_node_id_is_refused() {
    let cache = SnapshotCache::new();
    let addr = start(cache, Arc::new(Recorder::default())).await;
    for id in ["", "no-dot", ".", "default."] {
        let mut client = Client::connect(&addr).await;
        let mut first = first_request(CLUSTER_TYPE_URL);
        if let Some(node) = first.node.as_mut() {
            node.id = id.to_owned();
        }
        client.send(first).await;
        let status = tokio::time::timeout(DEADLINE, client.responses.message())
            .await
            .expect("no answer before the deadline")
            .expect_err("an invalid node id was accepted");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{id:?}");
    }
}

/// Admits only the token "good", refusing others as the zone does.
struct OnlyGood;

#[tonic::async_trait]
impl xds::ads::StreamAuthenticator for OnlyGood {
    async fn authenticate(
        &self,
        _: &NodeId,
        _: &Node,
        token: Option<&str>,
    ) -> Result<(), tonic::Status> {
        match token {
            Some("good") => Ok(()),
            Some(_) => Err(tonic::Status::permission_denied("not yours")),
            None => Err(tonic::Status::unauthenticated("token required")),
        }
    }
}

async fn start_authenticated(cache: SnapshotCache, events: Arc<Recorder>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = AdsServer::with_events(cache, events)
        .with_authenticator(Arc::new(OnlyGood))
        .into_service();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    format!("http://{addr}")
}

async fn connect_with(addr: &str, authorization: Option<&str>) -> Client {
    let mut client = AggregatedDiscoveryServiceClient::connect(addr.to_owned())
        .await
        .unwrap();
    let (requests, rx) = mpsc::channel(16);
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.parse().unwrap());
    }
    let responses = client
        .stream_aggregated_resources(request)
        .await
        .unwrap()
        .into_inner();
    Client {
        requests,
        responses,
    }
}

#[tokio::test]
async fn streams_are_authenticated_and_keep_their_node() {
    let cache = SnapshotCache::new();
    cache.set(NODE, resources());
    let events = Arc::new(Recorder::default());
    let addr = start_authenticated(cache, events.clone()).await;
    for (authorization, code) in [
        (None, tonic::Code::Unauthenticated),
        (Some("Bearer bad"), tonic::Code::PermissionDenied),
    ] {
        let mut client = connect_with(&addr, authorization).await;
        client.send(first_request(CLUSTER_TYPE_URL)).await;
        let status = tokio::time::timeout(DEADLINE, client.responses.message())
            .await
            .expect("no answer before the deadline")
            .expect_err("refused stream was served");
        assert_eq!(status.code(), code, "{authorization:?}");
    }
    assert!(events.events().is_empty(), "a refused stream connected");

    for authorization in ["Bearer good", "good"] {
        let mut client = connect_with(&addr, Some(authorization)).await;
        client.send(first_request(CLUSTER_TYPE_URL)).await;
        assert_eq!(client.recv().await.type_url, CLUSTER_TYPE_URL);
        // Another node id on the same stream ends it.
        let mut other = first_request(LISTENER_TYPE_URL);
        if let Some(node) = other.node.as_mut() {
            node.id = "default.web-2".to_owned();
        }
        client.send(other).await;
        let status = tokio::time::timeout(DEADLINE, client.responses.message())
            .await
            .expect("no answer before the deadline")
            .expect_err("a node change was accepted");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
    }
}

#[tokio::test]
async fn delta_stream_ack_nack_and_events() {
    use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;

    let cache = SnapshotCache::new();
    cache.set(NODE, resources());
    let events = Arc::new(Recorder::default());
    let addr = start(cache.clone(), events.clone()).await;
    let mut client = AggregatedDiscoveryServiceClient::connect(addr)
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel(16);
    let mut responses = client
        .delta_aggregated_resources(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let next = async |responses: &mut Streaming<_>| {
        tokio::time::timeout(DEADLINE, responses.message())
            .await
            .expect("no response before the deadline")
            .unwrap()
            .expect("stream ended")
    };
    tx.send(DeltaDiscoveryRequest {
        node: Some(Node {
            id: NODE.to_owned(),
            cluster: "web".to_owned(),
            ..Default::default()
        }),
        type_url: CLUSTER_TYPE_URL.to_owned(),
        ..Default::default()
    })
    .await
    .unwrap();
    let cds: envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryResponse =
        next(&mut responses).await;
    assert_eq!(cds.resources.len(), resources().clusters.len());
    assert!(cds.resources.iter().all(|r| r.version.len() == 16));
    tx.send(DeltaDiscoveryRequest {
        type_url: CLUSTER_TYPE_URL.to_owned(),
        response_nonce: cds.nonce.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    events
        .wait_for(&Event::Acked(
            CLUSTER_TYPE_URL.to_owned(),
            cds.system_version_info.clone(),
        ))
        .await;

    // One cluster fewer: it is removed by name, and the NACK of that is reported.
    let mut fewer = resources();
    let gone = fewer.clusters.remove(0).name;
    cache.set(NODE, fewer);
    let removal = next(&mut responses).await;
    assert_eq!(removal.removed_resources, [gone]);
    assert!(removal.resources.is_empty());
    tx.send(DeltaDiscoveryRequest {
        type_url: CLUSTER_TYPE_URL.to_owned(),
        response_nonce: removal.nonce.clone(),
        error_detail: Some(Status {
            code: 13,
            message: "no".to_owned(),
            details: Vec::new(),
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    events
        .wait_for(&Event::Nacked(
            CLUSTER_TYPE_URL.to_owned(),
            removal.system_version_info.clone(),
            "no".to_owned(),
        ))
        .await;
}
