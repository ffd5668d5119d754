//! xDS benchmark: a zone's xDS machinery (memory store → [`xds::feed`] → snapshot cache →
//! ADS server on loopback) serving N simulated proxies (N = 1 000, 10 000), with no Envoy: a
//! child process (this same executable) opens N state-of-the-world ADS streams, 100 per
//! HTTP/2 connection, and ACKs every response the way Envoy does (CDS, then EDS by name,
//! LDS).
//!
//! Measured, per N:
//! * **propagation**: one mesh-wide TrafficPermission change committed to the store, until
//!   every proxy has ACKed a new listener version (counted by the server's stream events);
//! * **generation per proxy**: the feed's mesh pass, [`xds::MeshIndex`] built once per mesh
//!   then every proxy generated from it, against the baseline in the same run: calling
//!   [`xds::generate`] per proxy, which indexes the whole mesh for each proxy (quadratic);
//! * **memory per connected proxy**: the server process's resident memory after every
//!   proxy has its config, minus before any connected, divided by N (the clients run in
//!   the child process and are not counted).
//!
//! Mesh: builtin mTLS, 100 services, proxy i serves `svc-{i % 100}` and calls
//! `svc-{(i+1) % 100}` and `svc-{(i+2) % 100}`, so each outbound has N/100 endpoints.
//!
//! Run: `cargo bench -p xds --bench propagation` (`XDS_BENCH_PROXIES=1000,10000` sets the
//! sizes).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use model::Resource;
use prost::Message;
use store::ResourceStore;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use xds::ads::{AdsServer, NodeId, SnapshotCache, StreamEvents, StreamId};
use xds::{CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL, LISTENER_TYPE_URL, MeshIndex};

const SERVICES: usize = 100;
const STREAMS_PER_CONNECTION: usize = 100;
const CLIENT_ENV: &str = "XDS_BENCH_CLIENT";
const DEADLINE: Duration = Duration::from_secs(600);
/// Proxies the quadratic baseline generates.
const BASELINE_SAMPLE: usize = 200;

fn main() {
    if let Ok(spec) = std::env::var(CLIENT_ENV) {
        return client_main(&spec);
    }
    let sizes: Vec<usize> = std::env::var("XDS_BENCH_PROXIES")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "| proxies | generation per proxy (shared index) | baseline: generate() per proxy | change pass per proxy, no streams | change → all snapshots regenerated | change → all ACKed | CP memory per proxy |"
    );
    println!("|---|---|---|---|---|---|---|");
    for n in sizes {
        let row = runtime.block_on(run(n));
        println!(
            "| {n} | {:.1} µs | {:.1} µs | {:.1} µs | {} ms | {} ms | {:.3} MB |",
            row.generation_us,
            row.baseline_us,
            row.pass_us,
            row.regenerated_ms,
            row.propagation_ms,
            row.memory_mb_per_proxy
        );
    }
}

struct Row {
    generation_us: f64,
    baseline_us: f64,
    pass_us: f64,
    regenerated_ms: u128,
    propagation_ms: u128,
    memory_mb_per_proxy: f64,
}

fn mesh() -> Resource {
    model::format::parse_documents(
        "type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
    - name: ca-1
      type: builtin
",
    )
    .expect("mesh YAML")
    .remove(0)
}

fn dataplane(i: usize) -> Resource {
    let yaml = format!(
        "type: Dataplane
mesh: default
name: dp-{i}
networking:
  address: 10.{}.{}.{}
  inbound:
    - port: 8080
      servicePort: 80
      tags:
        kuma.io/service: svc-{}
        kuma.io/protocol: http
  outbound:
    - port: 10001
      tags:
        kuma.io/service: svc-{}
    - port: 10002
      tags:
        kuma.io/service: svc-{}
",
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff,
        i % SERVICES,
        (i + 1) % SERVICES,
        (i + 2) % SERVICES
    );
    model::format::parse_documents(&yaml)
        .expect("dataplane YAML")
        .remove(0)
}

fn policy(yaml: &str) -> Resource {
    model::format::parse_documents(yaml)
        .expect("policy YAML")
        .remove(0)
}

const ALLOW_ALL: &str = "type: TrafficPermission
mesh: default
name: allow-all-default
sources:
  - match:
      kuma.io/service: '*'
destinations:
  - match:
      kuma.io/service: '*'
";

const ROUTE_ALL: &str = "type: TrafficRoute
mesh: default
name: route-all-default
sources:
  - match:
      kuma.io/service: '*'
destinations:
  - match:
      kuma.io/service: '*'
conf:
  destination:
    kuma.io/service: '*'
";

/// The mesh-wide change: every service may only be called by its predecessor.
fn chain_permission() -> Resource {
    let mut yaml = String::from(
        "type: TrafficPermission
mesh: default
name: chain
sources:
",
    );
    for s in 0..SERVICES {
        yaml.push_str(&format!("  - match:\n      kuma.io/service: svc-{s}\n"));
    }
    yaml.push_str("destinations:\n  - match:\n      kuma.io/service: '*'\n");
    policy(&yaml)
}

fn resident_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Counts, after [`AckCounter::arm`], the proxies that ACKed a listener version other than
/// the one they had.
#[derive(Default)]
struct AckCounter {
    versions: Mutex<HashMap<String, String>>,
    armed: AtomicBool,
    before: Mutex<HashMap<String, String>>,
    changed: Mutex<HashSet<String>>,
    changed_count: AtomicUsize,
}

impl AckCounter {
    fn acked_nodes(&self) -> usize {
        self.versions.lock().expect("lock").len()
    }

    fn arm(&self) {
        let versions = self.versions.lock().expect("lock").clone();
        *self.before.lock().expect("lock") = versions;
        self.armed.store(true, Ordering::SeqCst);
    }
}

impl StreamEvents for AckCounter {
    fn acked(&self, _stream: StreamId, node: &NodeId, type_url: &str, version: &str) {
        if type_url != LISTENER_TYPE_URL {
            return;
        }
        if self.armed.load(Ordering::SeqCst) {
            let before = self.before.lock().expect("lock");
            if before.get(&node.id).map(String::as_str) != Some(version)
                && self.changed.lock().expect("lock").insert(node.id.clone())
            {
                self.changed_count.fetch_add(1, Ordering::SeqCst);
            }
        } else {
            self.versions
                .lock()
                .expect("lock")
                .insert(node.id.clone(), version.to_string());
        }
    }
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < DEADLINE,
            "{what}: not within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn run(n: usize) -> Row {
    let store: Arc<dyn ResourceStore> = Arc::new(store::memory::MemoryStore::new());
    let mesh = mesh();
    let secrets = ca::ca_secrets_to_create(store.as_ref(), &mesh, time::OffsetDateTime::now_utc())
        .await
        .expect("the mesh CA");
    store.create(mesh.clone(), None).await.expect("store write");
    for secret in secrets {
        store.create(secret, None).await.expect("store write");
    }
    let dataplanes: Vec<Resource> = (0..n).map(dataplane).collect();
    let policies = vec![policy(ALLOW_ALL), policy(ROUTE_ALL)];
    for resource in dataplanes.iter().chain(&policies) {
        store
            .create(resource.clone(), None)
            .await
            .expect("store write");
    }

    // Generation: shared index against per-proxy generate(), same inputs.
    let (generation_us, baseline_us, pass_us) = time_generation(&mesh, &dataplanes, &policies);

    // The server: feed + ADS on loopback.
    let cache = SnapshotCache::new();
    let counter = Arc::new(AckCounter::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut stop_feed = stop_rx.clone();
    tokio::spawn(xds::feed::run(store.clone(), cache.clone(), async move {
        let _ = stop_feed.wait_for(|s| *s).await;
    }));
    wait_for("every snapshot generated", || {
        (0..n).all(|i| cache.get(&format!("default.dp-{i}")).is_some())
    })
    .await;
    let memory_before = resident_mb();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let service = AdsServer::with_events(cache.clone(), counter.clone()).into_service();
    let mut stop_server = stop_rx.clone();
    tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let _ = tonic::transport::Server::builder()
            .http2_adaptive_window(Some(true))
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stop_server.wait_for(|s| *s).await;
            })
            .await;
    });

    // The simulated proxies, in a child process.
    let mut child = std::process::Command::new(std::env::current_exe().expect("this bench"))
        .env(CLIENT_ENV, format!("{address},{n}"))
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("spawn the client process");
    wait_for("every proxy ACKed its first listeners", || {
        counter.acked_nodes() == n
    })
    .await;
    let memory_after = resident_mb();

    counter.arm();
    let listener_version = |i: usize| {
        cache
            .get(&format!("default.dp-{i}"))
            .and_then(|s| s.version(LISTENER_TYPE_URL).map(str::to_owned))
    };
    let before: Vec<Option<String>> = (0..n).map(listener_version).collect();
    let start = Instant::now();
    store
        .create(chain_permission(), None)
        .await
        .expect("store write");
    wait_for("every snapshot regenerated", || {
        (0..n).all(|i| listener_version(i) != before[i])
    })
    .await;
    let regenerated_ms = start.elapsed().as_millis();
    wait_for("every proxy ACKed the new listeners", || {
        counter.changed_count.load(Ordering::SeqCst) == n
    })
    .await;
    let propagation_ms = start.elapsed().as_millis();

    let _ = child.kill();
    let _ = child.wait();
    let _ = stop_tx.send(true);
    Row {
        generation_us,
        baseline_us,
        pass_us,
        regenerated_ms,
        propagation_ms,
        memory_mb_per_proxy: (memory_after - memory_before).max(0.0) / n as f64,
    }
}

/// Microseconds per proxy: generating every proxy from one shared [`MeshIndex`] (index
/// included), and the baseline, [`xds::generate`] per proxy (each call indexes the mesh),
/// timed on the first [`BASELINE_SAMPLE`] proxies because it is quadratic.
/// Also the cost of the change pass without any stream: every proxy regenerated with the
/// chain permission added and its snapshot rebuilt in a cache that holds the previous ones.
fn time_generation(
    mesh: &Resource,
    dataplanes: &[Resource],
    policies: &[Resource],
) -> (f64, f64, f64) {
    // Generation places the PEM texts without parsing them.
    let tls = xds::MeshTls {
        ca_bundle_pem: "CA".into(),
    };
    let identity = xds::ProxyIdentity {
        cert_chain_pem: "CERT".into(),
        key_pem: "KEY".into(),
    };
    let mut context = xds::MeshContext::new(mesh, dataplanes);
    context.policies = policies;
    context.tls = Some(&tls);
    context.identity = Some(&identity);

    let start = Instant::now();
    let index = MeshIndex::build(&context).expect("index");
    for proxy in dataplanes {
        let out = xds::generate_indexed(proxy, &context, &index).expect("generation");
        assert!(out.skipped.is_empty());
    }
    let shared = start.elapsed().as_secs_f64() * 1e6 / dataplanes.len() as f64;

    let sample = &dataplanes[..dataplanes.len().min(BASELINE_SAMPLE)];
    let start = Instant::now();
    for proxy in sample {
        xds::generate(proxy, &context).expect("generation");
    }
    let baseline = start.elapsed().as_secs_f64() * 1e6 / sample.len() as f64;

    let cache = SnapshotCache::new();
    for proxy in dataplanes {
        let out = xds::generate_indexed(proxy, &context, &index).expect("generation");
        cache.set(&proxy.meta.name, out);
    }
    let mut changed: Vec<Resource> = policies.to_vec();
    let mut chain = chain_permission();
    // Newer than allow-all, as when the store creates it: ties go to the newer permission.
    chain.meta.creation_time = time::OffsetDateTime::now_utc();
    changed.push(chain);
    context.policies = &changed;
    let start = Instant::now();
    let index = MeshIndex::build_after(&context, index).expect("index");
    for proxy in dataplanes {
        let out = xds::generate_indexed(proxy, &context, &index).expect("generation");
        assert!(
            cache.set(&proxy.meta.name, out),
            "the change changes every proxy"
        );
    }
    let pass = start.elapsed().as_secs_f64() * 1e6 / dataplanes.len() as f64;
    (shared, baseline, pass)
}

// === the client process ===

fn client_main(spec: &str) {
    let (address, n) = spec.split_once(',').expect("ADDRESS,N");
    let n: usize = n.parse().expect("N");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let mut tasks = Vec::new();
        for first in (0..n).step_by(STREAMS_PER_CONNECTION) {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
                .expect("endpoint")
                .connect()
                .await
                .expect("connect to the ADS server");
            for i in first..(first + STREAMS_PER_CONNECTION).min(n) {
                let client = AggregatedDiscoveryServiceClient::new(channel.clone())
                    .max_decoding_message_size(64 * 1024 * 1024);
                tasks.push(tokio::spawn(proxy(client, i)));
            }
        }
        for task in tasks {
            let _ = task.await;
        }
    });
}

/// One simulated Envoy: subscribes to CDS and LDS, to EDS for the clusters it got, and ACKs
/// every response.
async fn proxy(mut client: AggregatedDiscoveryServiceClient<tonic::transport::Channel>, i: usize) {
    let (tx, rx) = mpsc::channel::<DiscoveryRequest>(16);
    let node = Node {
        id: format!("default.dp-{i}"),
        cluster: format!("svc-{}", i % SERVICES),
        ..Default::default()
    };
    let Ok(response) = client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
    else {
        return;
    };
    let mut responses = response.into_inner();
    for (index, type_url) in [CLUSTER_TYPE_URL, LISTENER_TYPE_URL]
        .into_iter()
        .enumerate()
    {
        let request = DiscoveryRequest {
            node: (index == 0).then(|| node.clone()),
            type_url: type_url.to_string(),
            ..Default::default()
        };
        if tx.send(request).await.is_err() {
            return;
        }
    }
    let mut eds_names: Vec<String> = Vec::new();
    while let Ok(Some(response)) = responses.message().await {
        let names = if response.type_url == ENDPOINT_TYPE_URL {
            eds_names.clone()
        } else {
            Vec::new()
        };
        let ack = ack(&response, names);
        if tx.send(ack).await.is_err() {
            return;
        }
        if response.type_url == CLUSTER_TYPE_URL {
            let names: Vec<String> = response
                .resources
                .iter()
                .filter_map(|any| Cluster::decode(any.value.as_slice()).ok())
                .filter(|c| c.eds_cluster_config.is_some())
                .map(|c| c.name)
                .collect();
            if names != eds_names {
                eds_names = names;
                let request = DiscoveryRequest {
                    type_url: ENDPOINT_TYPE_URL.to_string(),
                    resource_names: eds_names.clone(),
                    ..Default::default()
                };
                if tx.send(request).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn ack(response: &DiscoveryResponse, resource_names: Vec<String>) -> DiscoveryRequest {
    DiscoveryRequest {
        version_info: response.version_info.clone(),
        response_nonce: response.nonce.clone(),
        type_url: response.type_url.clone(),
        resource_names,
        ..Default::default()
    }
}
