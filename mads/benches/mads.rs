//! MADS benchmark: response time of the monitoring assignment server for N dataplanes
//! (default 10 000; `MADS_BENCH_DATAPLANES=1000,10000` sets the sizes), over loopback
//! HTTP/1.1 keep-alive from one client, as Prometheus's kuma_sd fetches.
//!
//! Measured, per N:
//! * **build**: [`mads::assignments`] of the N dataplanes, then [`mads::Snapshot::new`]
//!   (serialization and content hash, once per version);
//! * **full answer**: `POST /v3/discovery:monitoringassignments` with no version (200 with
//!   every assignment), against the baseline in the same run: serializing the same
//!   `DiscoveryResponse` with serde_json per request without any server (what a server that
//!   renders per request would pay before writing a byte);
//! * **304**: the same request at the current version with `fetch-timeout=0s`;
//! * **http-sd**: `GET /v3/http-sd`;
//! * **change → long-poll**: a Dataplane committed to a memory store with N dataplanes, until a
//!   fetch long-polling at the previous version returns (feed + rebuild + response).
//!
//! Latencies are the median and p99 of the timed repetitions (after warm-up).
//!
//! Run: `cargo bench -p mads --bench mads`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use model::Resource;
use store::ResourceStore;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const SERVICES: usize = 100;

fn main() {
    let sizes: Vec<usize> = std::env::var("MADS_BENCH_DATAPLANES")
        .unwrap_or_else(|_| "10000".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    for n in sizes {
        runtime.block_on(bench(n));
    }
}

fn mesh() -> Resource {
    model::format::parse_documents(
        "type: Mesh\nname: default\nmetrics:\n  enabledBackend: prometheus-1\n  backends:\n  - name: prometheus-1\n    type: prometheus\n",
    )
    .unwrap()
    .remove(0)
}

fn dataplane(i: usize) -> Resource {
    let yaml = format!(
        "type: Dataplane\nmesh: default\nname: dp-{i}\nnetworking:\n  address: 10.{}.{}.{}\n  inbound:\n  - port: 8080\n    tags:\n      kuma.io/service: svc-{}\n      kuma.io/protocol: http\n      version: v{}\n      kuma.io/zone: zone-1\n",
        (i >> 16) & 255,
        (i >> 8) & 255,
        i & 255,
        i % SERVICES,
        i % 3
    );
    model::format::parse_documents(&yaml).unwrap().remove(0)
}

fn stats(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let median = samples[samples.len() / 2];
    let p99 = samples[(samples.len() * 99 / 100).min(samples.len() - 1)];
    format!(
        "median {median:>10.2?}  p99 {p99:>10.2?}  (n={})",
        samples.len()
    )
}

/// One HTTP/1.1 request on a keep-alive connection: (status, body length).
async fn request(
    stream: &mut BufReader<TcpStream>,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, usize) {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nAccept: application/json\r\nUser-Agent: Prometheus/2.42.0\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.get_mut().write_all(head.as_bytes()).await.unwrap();
    let mut line = String::new();
    stream.read_line(&mut line).await.unwrap();
    let status: u16 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut length = 0usize;
    loop {
        line.clear();
        stream.read_line(&mut line).await.unwrap();
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap();
        }
    }
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.unwrap();
    (status, length)
}

fn fetch_body(version: &str) -> String {
    format!(
        r#"{{"version_info":"{version}","response_nonce":"{version}","type_url":"{}","resource_names":[],"node":{{"id":"bench"}}}}"#,
        mads::ASSIGNMENT_TYPE_URL
    )
}

async fn bench(n: usize) {
    println!("== MADS, {n} dataplanes in one mesh ({SERVICES} services)");
    let meshes = vec![mesh()];
    let dataplanes: Vec<Resource> = (0..n).map(dataplane).collect();

    let started = Instant::now();
    let (assignments, skipped) = mads::assignments(&meshes, &dataplanes);
    let generated = started.elapsed();
    assert!(skipped.is_empty());
    let started = Instant::now();
    let snapshot = Arc::new(mads::Snapshot::new(assignments.clone()));
    let built = started.elapsed();
    let full_bytes = snapshot.discovery_response_json().len();
    println!(
        "build: assignments {generated:.2?}, snapshot (serialize + hash) {built:.2?}; response {full_bytes} bytes"
    );

    // Baseline: rendering the response per request, without a server.
    #[derive(serde::Serialize)]
    struct Response<'a> {
        version_info: &'a str,
        resources: &'a [mads::Assignment],
        type_url: &'a str,
        nonce: &'a str,
    }
    let mut baseline = Vec::new();
    for i in 0..25 {
        let started = Instant::now();
        let bytes = serde_json::to_vec(&Response {
            version_info: snapshot.version(),
            resources: &assignments,
            type_url: mads::ASSIGNMENT_TYPE_URL,
            nonce: snapshot.version(),
        })
        .unwrap();
        std::hint::black_box(bytes);
        if i >= 5 {
            baseline.push(started.elapsed());
        }
    }
    println!(
        "baseline, serialize per request (no server): {}",
        stats(baseline)
    );

    // The server with this snapshot.
    let (_tx, rx) = tokio::sync::watch::channel(snapshot.clone());
    let state = mads::MadsState::new(rx, Duration::from_secs(30), mads::MadsMetrics::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(mads::serve(
        listener,
        mads::router(state),
        std::future::pending(),
    ));
    let mut conn = BufReader::new(TcpStream::connect(addr).await.unwrap());
    conn.get_mut().set_nodelay(true).unwrap();

    let mut full = Vec::new();
    for i in 0..55 {
        let started = Instant::now();
        let (status, len) = request(
            &mut conn,
            "POST",
            &format!("{}?fetch-timeout=2m0s", mads::FETCH_PATH),
            &fetch_body(""),
        )
        .await;
        assert_eq!((status, len), (200, full_bytes));
        if i >= 5 {
            full.push(started.elapsed());
        }
    }
    println!(
        "full answer (200):                            {}",
        stats(full)
    );

    let mut not_modified = Vec::new();
    let current = fetch_body(snapshot.version());
    for i in 0..1100 {
        let started = Instant::now();
        let (status, _) = request(
            &mut conn,
            "POST",
            &format!("{}?fetch-timeout=0s", mads::FETCH_PATH),
            &current,
        )
        .await;
        assert_eq!(status, 304);
        if i >= 100 {
            not_modified.push(started.elapsed());
        }
    }
    println!(
        "same version (304):                           {}",
        stats(not_modified)
    );

    let mut http_sd = Vec::new();
    for i in 0..55 {
        let started = Instant::now();
        let (status, _) = request(&mut conn, "GET", mads::HTTP_SD_PATH, "").await;
        assert_eq!(status, 200);
        if i >= 5 {
            http_sd.push(started.elapsed());
        }
    }
    println!(
        "http-sd (200):                                {}",
        stats(http_sd)
    );

    // Change → long-poll, through a memory store and the feed.
    let store: Arc<dyn ResourceStore> = Arc::new(store::memory::MemoryStore::new());
    let mut ops = vec![store::Op::Create {
        resource: mesh(),
        owner: None,
    }];
    ops.extend(
        dataplanes
            .iter()
            .cloned()
            .map(|resource| store::Op::Create {
                resource,
                owner: None,
            }),
    );
    store.apply(ops).await.unwrap();
    let (rx, feed) = mads::feed::start(
        store.clone(),
        mads::MadsMetrics::default(),
        std::future::pending(),
    );
    tokio::spawn(feed);
    let mut waiting = rx.clone();
    waiting
        .wait_for(|s| s.targets() == n)
        .await
        .expect("the feed publishes every dataplane");
    let metrics = mads::MadsMetrics::default();
    let state = mads::MadsState::new(rx.clone(), Duration::from_secs(30), metrics.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(mads::serve(
        listener,
        mads::router(state),
        std::future::pending(),
    ));
    let mut conn = BufReader::new(TcpStream::connect(addr).await.unwrap());
    let mut wakeups = Vec::new();
    for i in 0..20 {
        let version = rx.borrow().version().to_string();
        let body = fetch_body(&version);
        let poll = async {
            request(
                &mut conn,
                "POST",
                &format!("{}?fetch-timeout=2m0s", mads::FETCH_PATH),
                &body,
            )
            .await
        };
        let commit = async {
            // The fetch reached the server and waits for a change.
            let deadline = Instant::now() + Duration::from_secs(10);
            while metrics.watches() < 1 {
                assert!(
                    Instant::now() < deadline,
                    "the long-poll never started waiting"
                );
                tokio::task::yield_now().await;
            }
            let started = Instant::now();
            store.create(dataplane(n + i), None).await.unwrap();
            started
        };
        let ((status, _), started) = tokio::join!(poll, commit);
        assert_eq!(status, 200);
        wakeups.push(started.elapsed());
    }
    println!(
        "new Dataplane committed → long-poll answered: {}",
        stats(wakeups)
    );
}
