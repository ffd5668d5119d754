//! KDS benchmark: one global and N zones (N = 1, 10) in one process, each with its own SQLite
//! store (the embedded default, read cache on), talking real gRPC over TLS on loopback.
//!
//! * (a) first full sync of R TrafficPermissions (default 10 000) to every zone, from the
//!   zones dialling in to the last resource committed in the last zone's store; baseline: a
//!   raw gRPC stream carrying the very same delta responses (same bytes, same TLS, same
//!   split) to N clients that only count them;
//! * (b) propagation: C single updates (default 1 000) committed one after the other on the
//!   global; latency from the global's commit returning to each zone's store committing it
//!   (seen on the zone store's change feed), p50 / p99 / max over all zones;
//! * (c) catch-up: one zone disconnects, 50 resources change on the global, the zone
//!   reconnects: resources and bytes the global sent it, against the bytes of the 50
//!   changed resources, and the time until they are committed.
//!
//! Run: `cargo bench -p kds --bench sync` (env `KDS_BENCH_RESOURCES`, `KDS_BENCH_CHANGES`,
//! `KDS_BENCH_ZONES=1,10` to change the sizes).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use futures::StreamExt;
use kds::diff::Delta;
use kds::global::{GlobalKds, GlobalSettings, NoAuthentication};
use kds::zone::ZoneSettings;
use kds_proto::mesh::v1alpha1::kds_sync_service_client::KdsSyncServiceClient;
use kds_proto::mesh::v1alpha1::kds_sync_service_server::{KdsSyncService, KdsSyncServiceServer};
use model::{Resource, ResourceKey, ResourceType, test_util};
use prometheus_client::registry::Registry;
use store::{Action, BackendSettings, Op, ResourceStore, StoreSettings};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

const MAX_MSG: usize = 10 * 1024 * 1024;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("KDS_BENCH_LOG") {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let resources = env_usize("KDS_BENCH_RESOURCES", 10_000);
    let changes = env_usize("KDS_BENCH_CHANGES", 1_000);
    let zones: Vec<usize> = std::env::var("KDS_BENCH_ZONES")
        .unwrap_or_else(|_| "1,10".into())
        .split(',')
        .filter_map(|z| z.trim().parse().ok())
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "KDS benchmark: {resources} TrafficPermissions, {changes} single changes, zones {zones:?}"
    );
    for n in zones {
        runtime.block_on(run(n, resources, changes));
    }
}

struct Tls {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

fn tls() -> Tls {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let der = cert.cert.der().clone();
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).expect("key");
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .expect("server config");
    server.alpn_protocols = vec![b"h2".to_vec()];
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).expect("root");
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"h2".to_vec()];
    Tls {
        server: Arc::new(server),
        client: Arc::new(client),
    }
}

async fn sqlite(dir: &std::path::Path, name: &str) -> Arc<dyn ResourceStore> {
    store::open(&StoreSettings {
        backend: BackendSettings::Sqlite {
            path: dir.join(format!("{name}.db")),
        },
        cache: true,
    })
    .await
    .expect("sqlite store")
}

fn policy(i: usize, dest: &str) -> Resource {
    test_util::traffic_permission("default", &format!("tp-{i:05}"), "web", dest)
}

/// Commit events of TrafficPermissions in a zone store: (zone index, name, when).
type Seen = mpsc::UnboundedSender<(usize, String, Instant)>;

fn watch_zone(index: usize, store: Arc<dyn ResourceStore>, seen: Seen) {
    tokio::spawn(async move {
        let start = store.revision().await.unwrap_or(0);
        let mut feed = store.changes(start);
        while let Some(Ok(event)) = feed.next().await {
            if event.kind == ResourceType::TrafficPermission && event.action != Action::Delete {
                let _ = seen.send((index, event.name, Instant::now()));
            }
        }
    });
}

fn zone_settings(i: usize, port: u16, tls: &Tls) -> ZoneSettings {
    ZoneSettings {
        zone: format!("zone-{i}"),
        host: "localhost".into(),
        port,
        tls: Some(tls.client.clone()),
        token: None,
        token_path: None,
        version: env!("CARGO_PKG_VERSION").into(),
        instance_id: format!("bench-zone-{i}"),
        config_json: "{}".into(),
        max_message_bytes: MAX_MSG,
        stall_timeout: Duration::from_secs(60),
        base_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn metric(registry: &Registry, name: &str, zone: &str) -> u64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("encode");
    let needle = format!("{name}{{zone=\"{zone}\",direction=\"globalToZone\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&needle))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0)
}

async fn run(zones: usize, resources: usize, changes: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = tls();
    let global = sqlite(dir.path(), "global").await;
    global
        .create(test_util::mesh("default"), None)
        .await
        .expect("mesh");
    for chunk in (0..resources).collect::<Vec<_>>().chunks(1000) {
        let ops = chunk
            .iter()
            .map(|&i| Op::Create {
                resource: policy(i, "api"),
                owner: None,
            })
            .collect();
        global.commit(ops).await.expect("populate");
    }

    eprintln!("{zones} zone(s): global populated");
    // --- baseline: the same responses over a bare gRPC stream ---
    let responses = Arc::new(prebuilt_responses(global.as_ref()).await);
    let payload: usize = responses.iter().map(prost::Message::encoded_len).sum();
    let baseline = baseline_transfer(zones, responses.clone(), &tls).await;

    eprintln!("{zones} zone(s): baseline measured");
    // --- the real thing ---
    let mut registry = Registry::default();
    let settings = GlobalSettings {
        instance_id: "bench-global".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        max_message_bytes: MAX_MSG,
        stall_timeout: Duration::from_secs(60),
        health_interval: Duration::from_secs(1),
        health_timeout: Duration::from_secs(30),
        flush_interval: Duration::from_secs(5),
        public_key: None,
    };
    let (kds, _bg) = GlobalKds::start(
        global.clone(),
        settings,
        Arc::new(NoAuthentication),
        &mut registry,
    )
    .await
    .expect("global kds");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let router = kds::transport::server_builder()
        .add_service(kds.sync_service())
        .add_service(kds.health_service());
    let server_tls = tls.server.clone();
    tokio::spawn(async move {
        let _ =
            kds::transport::serve(router, listener, Some(server_tls), std::future::pending()).await;
    });

    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    let mut zone_stores = Vec::new();
    for i in 0..zones {
        let store = sqlite(dir.path(), &format!("zone-{i}")).await;
        watch_zone(i, store.clone(), seen_tx.clone());
        zone_stores.push(store);
    }
    let started = Instant::now();
    let mut clients = Vec::new();
    for (i, store) in zone_stores.iter().enumerate() {
        let mut r = Registry::default();
        let (_link, task) = kds::zone::start(
            store.clone(),
            zone_settings(i, port, &tls),
            &mut r,
            std::future::pending(),
        )
        .await
        .expect("zone");
        clients.push(task);
    }
    let mut counts = vec![0usize; zones];
    let mut done = 0;
    let mut last_zone_done = Duration::ZERO;
    while done < zones {
        let (i, _, at) = seen_rx.recv().await.expect("zone feed");
        counts[i] += 1;
        if counts[i] == resources {
            done += 1;
            last_zone_done = at - started;
        }
    }
    let first_sync = last_zone_done;
    eprintln!("{zones} zone(s): first sync done");

    // --- propagation ---
    let mut latencies = Vec::with_capacity(changes * zones);
    for c in 0..changes {
        let i = c % resources;
        let key = ResourceKey::new(
            ResourceType::TrafficPermission,
            "default",
            format!("tp-{i:05}"),
        );
        let mut current = global.get(&key).await.expect("get");
        current.spec = policy(i, &format!("dest-{c}")).spec;
        global.update(current).await.expect("update");
        let committed = Instant::now();
        let mut got = 0;
        while got < zones {
            let (_, _, at) = seen_rx.recv().await.expect("zone feed");
            latencies.push(at.saturating_duration_since(committed));
            got += 1;
        }
    }
    latencies.sort();

    // --- catch-up after a disconnect ---
    let zone0 = "zone-0";
    if let Some(task) = clients.first() {
        task.abort();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while kds.connected_zones().iter().any(|z| z == zone0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    while seen_rx.try_recv().is_ok() {}
    let sent_before = metric(&registry, "kds_resources_sent_total", zone0);
    let bytes_before = metric(&registry, "kds_bytes_sent_total", zone0);
    let mut changed_bytes = 0usize;
    for c in 0..50 {
        let key = ResourceKey::new(
            ResourceType::TrafficPermission,
            "default",
            format!("tp-{c:05}"),
        );
        let mut current = global.get(&key).await.expect("get");
        current.spec = policy(c, &format!("after-{c}")).spec;
        let stored = global.update(current).await.expect("update");
        changed_bytes += prost::Message::encoded_len(&kds::wire::to_delta_resource(&stored));
    }
    // the other zones take the 50 changes meanwhile
    let mut others = 0;
    while others < 50 * (zones - 1) {
        let (i, _, _) = seen_rx.recv().await.expect("zone feed");
        if i != 0 {
            others += 1;
        }
    }
    let reconnect_start = Instant::now();
    let mut r = Registry::default();
    let (_link, _task) = kds::zone::start(
        zone_stores[0].clone(),
        zone_settings(0, port, &tls),
        &mut r,
        std::future::pending(),
    )
    .await
    .expect("zone restart");
    let mut caught = 0;
    while caught < 50 {
        let (i, _, _) = seen_rx.recv().await.expect("zone feed");
        if i == 0 {
            caught += 1;
        }
    }
    let reconnect = reconnect_start.elapsed();
    // let the ACKs and any late response land before reading the counters
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = metric(&registry, "kds_resources_sent_total", zone0) - sent_before;
    let bytes = metric(&registry, "kds_bytes_sent_total", zone0) - bytes_before;

    println!("\n## {zones} zone(s), {resources} resources ({payload} bytes of responses per zone)");
    println!("| measure | kuma-rs KDS | baseline (raw gRPC, same bytes) |");
    println!("|---|---|---|");
    println!(
        "| first full sync, all zones | {} | {} |",
        ms(first_sync),
        ms(baseline)
    );
    println!(
        "| propagation p50 / p99 / max ({} samples) | {} / {} / {} | |",
        latencies.len(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default())
    );
    println!("| reconnect after 50 changes: time | {} | |", ms(reconnect));
    println!(
        "| reconnect: resources sent / bytes sent / bytes of the 50 changed resources | {sent} / {bytes} / {changed_bytes} ({:.2}x) | |",
        bytes as f64 / changed_bytes.max(1) as f64
    );
}

/// The responses the global would send a fresh zone for TrafficPermission, built with the
/// same encoding and split.
async fn prebuilt_responses(global: &dyn ResourceStore) -> Vec<DeltaDiscoveryResponse> {
    let page = global
        .list(&store::ListQuery::all(ResourceType::TrafficPermission))
        .await
        .expect("list");
    let (offered, _) = kds::outbound::global_to_zone(
        &page.items,
        "zone-0",
        &|_| Some(true),
        &kds::mapping::GlobalToZone::default(),
    );
    let delta = Delta {
        resources: offered,
        removed: Vec::new(),
    };
    delta
        .split(MAX_MSG)
        .parts
        .into_iter()
        .enumerate()
        .map(|(n, part)| DeltaDiscoveryResponse {
            type_url: kds::wire::type_url(ResourceType::TrafficPermission).into(),
            resources: part.resources,
            nonce: n.to_string(),
            ..Default::default()
        })
        .collect()
}

/// A server that answers GlobalToZoneSync with the prebuilt responses, nothing else.
#[derive(Clone)]
struct Replay(Arc<Vec<DeltaDiscoveryResponse>>);

type Out = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<DeltaDiscoveryResponse, Status>> + Send + 'static>,
>;

#[tonic::async_trait]
impl KdsSyncService for Replay {
    type GlobalToZoneSyncStream = Out;
    type ZoneToGlobalSyncStream = std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<DeltaDiscoveryRequest, Status>> + Send + 'static>,
    >;

    async fn global_to_zone_sync(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Out>, Status> {
        let items: Vec<Result<DeltaDiscoveryResponse, Status>> =
            self.0.iter().cloned().map(Ok).collect();
        Ok(Response::new(Box::pin(futures::stream::iter(items))))
    }

    async fn zone_to_global_sync(
        &self,
        _request: Request<Streaming<DeltaDiscoveryResponse>>,
    ) -> Result<Response<Self::ZoneToGlobalSyncStream>, Status> {
        Err(Status::unimplemented("baseline"))
    }
}

async fn baseline_transfer(
    zones: usize,
    responses: Arc<Vec<DeltaDiscoveryResponse>>,
    tls: &Tls,
) -> Duration {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let service = KdsSyncServiceServer::new(Replay(responses.clone()))
        .max_decoding_message_size(MAX_MSG)
        .max_encoding_message_size(MAX_MSG);
    let router = kds::transport::server_builder().add_service(service);
    let server_tls = tls.server.clone();
    let server = tokio::spawn(async move {
        let _ =
            kds::transport::serve(router, listener, Some(server_tls), std::future::pending()).await;
    });
    let expected: usize = responses.iter().map(|r| r.resources.len()).sum();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..zones {
        let client_tls = tls.client.clone();
        tasks.push(tokio::spawn(async move {
            let channel = kds::transport::dial("localhost", port, Some(client_tls))
                .await
                .expect("dial");
            let mut client = KdsSyncServiceClient::new(channel)
                .max_decoding_message_size(MAX_MSG)
                .max_encoding_message_size(MAX_MSG);
            let (_tx, rx) = mpsc::channel::<DeltaDiscoveryRequest>(1);
            let mut stream = client
                .global_to_zone_sync(Request::new(ReceiverStream::new(rx)))
                .await
                .expect("call")
                .into_inner();
            let mut got = 0;
            while let Some(Ok(r)) = stream.next().await {
                got += r.resources.len();
                if got >= expected {
                    break;
                }
            }
            got
        }));
    }
    let mut totals = HashMap::new();
    for (i, t) in tasks.into_iter().enumerate() {
        totals.insert(i, t.await.expect("client"));
    }
    let elapsed = started.elapsed();
    server.abort();
    assert!(
        totals.values().all(|&g| g == expected),
        "baseline incomplete"
    );
    elapsed
}
