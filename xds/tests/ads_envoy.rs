//! Real Envoy 1.40 configured over our ADS server: a tiny HTTP server in the
//! test, a dataplane whose HTTP inbound fronts it, `xds::generate` for its
//! snapshot, and an Envoy with a minimal ADS bootstrap. A GET through the
//! inbound listener must reach the server.
//!
//! The delta variant (`api_type: DELTA_GRPC`) is served the same way, and
//! after its connection to the ADS server breaks, the reconnecting Envoy (which says what it
//! holds in `initial_resource_versions`) is sent nothing it already has: the
//! only response on its new stream is the listener added afterwards.
//!
//! Needs `ENVOY_BINARY` (exported by `cargo xtask test`; `cargo xtask envoy`
//! prints a path). Without it the test fails: it never skips silently.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod envoy_cli;
mod envoy_run;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use envoy_run::{Envoy, bootstrap, free_port, get, http_server};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::TcpListenerStream;
use xds::ads::{AdsServer, ConnectInfo, NodeId, SnapshotCache, StreamEvents, StreamId};

const NODE: &str = "default.web-1";
const BODY: &str = "hello from the ads_envoy test server";
const DEADLINE: Duration = Duration::from_secs(60);

/// The ADS server on `port` (0: a free one), serving `cache` and reporting
/// to `events`; its port and its task.
async fn ads_server(
    cache: SnapshotCache,
    events: Arc<dyn StreamEvents>,
    port: u16,
) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(AdsServer::with_events(cache, events).into_service())
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await;
    });
    (port, task)
}

/// What the ADS server did, per stream: `sent <type>` and `acked <type>`.
#[derive(Default)]
struct Recorder(Mutex<Vec<(StreamId, String)>>);

impl Recorder {
    fn events(&self) -> Vec<(StreamId, String)> {
        self.0.lock().unwrap().clone()
    }
    fn push(&self, stream: StreamId, event: String) {
        self.0.lock().unwrap().push((stream, event));
    }
}

fn short(type_url: &str) -> &str {
    type_url.rsplit('.').next().unwrap_or(type_url)
}

impl StreamEvents for Recorder {
    fn connected(&self, stream: StreamId, _: &NodeId, _: &ConnectInfo) {
        self.push(stream, "connected".to_owned());
    }
    fn sent(&self, stream: StreamId, _: &NodeId, type_url: &str, _: &str) {
        self.push(stream, format!("sent {}", short(type_url)));
    }
    fn acked(&self, stream: StreamId, _: &NodeId, type_url: &str, _: &str) {
        self.push(stream, format!("acked {}", short(type_url)));
    }
}

/// The resources of `web-1`, whose HTTP inbound on `inbound_port` fronts
/// the application on `app_port`.
fn web_resources(inbound_port: u16, app_port: u16) -> xds::EnvoyResources {
    let yaml = format!(
        "type: Mesh
name: default
---
type: Dataplane
mesh: default
name: web-1
networking:
  address: 127.0.0.1
  inbound:
  - port: {inbound_port}
    servicePort: {app_port}
    tags:
      kuma.io/service: web
      kuma.io/protocol: http
"
    );
    let resources = model::format::parse_documents(&yaml).unwrap();
    let (mesh, dataplane) = (&resources[0], &resources[1]);
    xds::generate(
        dataplane,
        &xds::MeshContext::new(mesh, std::slice::from_ref(dataplane)),
    )
    .unwrap()
}

/// A TCP relay from a free port to `target`; sending on the returned
/// channel cuts every connection relayed so far (Envoy then redials).
async fn relay(target: u16) -> (u16, tokio::sync::watch::Sender<u32>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (cut, cuts) = tokio::sync::watch::channel(0u32);
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let mut cuts = cuts.clone();
            cuts.mark_unchanged();
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = cuts.changed() => {}
                }
            });
        }
    });
    (port, cut)
}

/// Waits until a GET through Envoy's inbound on `port` reaches the server.
async fn wait_for_200(envoy: &mut Envoy, port: u16) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        envoy.assert_running();
        let last = match get(port, &[]).await {
            Ok(response) if response.starts_with("HTTP/1.1 200") && response.contains(BODY) => {
                assert!(response.contains("server: envoy"), "{response}");
                return;
            }
            Ok(response) => response,
            Err(e) => e,
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "no 200 through Envoy on {port}; last: {last}\n--- envoy log ---\n{}",
            envoy.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `events` until `done` holds for them.
async fn wait_events(
    recorder: &Recorder,
    what: &str,
    done: impl Fn(&[(StreamId, String)]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !done(&recorder.events()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: events {:?}",
            recorder.events()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn envoy_serves_an_inbound_configured_over_ads() {
    let app_port = http_server(BODY).await;
    let inbound_port = free_port();
    let cache = SnapshotCache::new();
    cache.set(NODE, web_resources(inbound_port, app_port));
    let (ads_port, _server) = ads_server(cache, Arc::new(xds::ads::NoEvents), 0).await;

    let admin_port = free_port();
    let mut envoy = Envoy::launch(&bootstrap(NODE, ads_port, admin_port, "GRPC"), admin_port);
    wait_for_200(&mut envoy, inbound_port).await;
}

#[tokio::test]
async fn envoy_over_delta_ads_is_served_and_a_reconnect_gets_nothing_it_has() {
    let app_port = http_server(BODY).await;
    let inbound_port = free_port();
    let cache = SnapshotCache::new();
    let resources = web_resources(inbound_port, app_port);
    cache.set(NODE, resources.clone());
    let recorder = Arc::new(Recorder::default());
    let (server_port, _server) = ads_server(cache.clone(), recorder.clone(), 0).await;
    let (ads_port, cut) = relay(server_port).await;

    let admin_port = free_port();
    let mut envoy = Envoy::launch(
        &bootstrap(NODE, ads_port, admin_port, "DELTA_GRPC"),
        admin_port,
    );
    wait_for_200(&mut envoy, inbound_port).await;
    let first_stream = recorder.events()[0].0;
    wait_events(&recorder, "Listener ACKed on the first stream", |events| {
        events.contains(&(first_stream, "acked Listener".to_owned()))
    })
    .await;

    // The connection breaks: Envoy redials and opens a new stream.
    cut.send_modify(|n| *n += 1);
    wait_events(&recorder, "Envoy reconnected", |events| {
        events
            .iter()
            .any(|(stream, e)| *stream != first_stream && e == "connected")
    })
    .await;
    let second_stream = recorder
        .events()
        .iter()
        .find(|(stream, e)| *stream != first_stream && e == "connected")
        .map(|(stream, _)| *stream)
        .unwrap();

    // A new listener: the one response the new stream needs.
    let mut more = resources.clone();
    let mut extra = more.listeners[0].clone();
    extra.name = format!("{}-extra", extra.name);
    let extra_port = free_port();
    if let Some(envoy_types::pb::envoy::config::core::v3::address::Address::SocketAddress(a)) =
        extra.address.as_mut().and_then(|a| a.address.as_mut())
    {
        a.port_specifier = Some(
            envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(
                u32::from(extra_port),
            ),
        );
    }
    more.listeners.push(extra);
    cache.set(NODE, more);
    wait_events(
        &recorder,
        "the new listener ACKed on the new stream",
        |events| events.contains(&(second_stream, "acked Listener".to_owned())),
    )
    .await;
    wait_for_200(&mut envoy, extra_port).await;
    let on_second: Vec<String> = recorder
        .events()
        .into_iter()
        .filter(|(stream, e)| *stream == second_stream && e.starts_with("sent"))
        .map(|(_, e)| e)
        .collect();
    assert_eq!(
        on_second,
        ["sent Listener"],
        "the reconnected Envoy was sent what it already had"
    );
}
