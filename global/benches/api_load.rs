//! Load benchmark of `kuma-global`'s REST API over loopback: many connections issuing
//! `GET` of a list of 375 TrafficPermissions and `PUT` of a policy, with `GET /` (the index:
//! no store access) as the baseline of the HTTP stack in the same run; on SQLite and, when
//! `DATABASE_URL` is set, PostgreSQL. Also reports start-to-ready time and idle RSS.
//!
//! `cargo bench -p global --bench api_load` (env `LOAD_SECONDS`, `LOAD_CONNECTIONS`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use reqwest::Client;
use serde_json::json;
use support::{Global, fresh_database, postgres_env, run_to_end};
use tokio::sync::Mutex;
use tokio::time::Instant;

struct Outcome {
    requests: usize,
    errors: usize,
    rps: f64,
    p50: Duration,
    p99: Duration,
}

fn traffic_permission(name: &str) -> serde_json::Value {
    json!({
        "type": "TrafficPermission", "mesh": "default", "name": name,
        "sources": [{"match": {"kuma.io/service": "web", "version": "v1"}}],
        "destinations": [{"match": {"kuma.io/service": "backend", "kuma.io/protocol": "http"}}]
    })
}

async fn drive(
    seconds: u64,
    connections: usize,
    make: impl Fn(&Client, usize) -> reqwest::RequestBuilder + Send + Sync + 'static,
) -> Outcome {
    let make = Arc::new(make);
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let end = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..connections {
        let make = make.clone();
        let latencies = latencies.clone();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let client = Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .expect("client");
            let mut mine = Vec::new();
            let mut i = 0;
            while Instant::now() < end {
                let t = Instant::now();
                match make(&client, worker * 1_000_000 + i).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        mine.push(t.elapsed());
                    }
                    _ => {
                        errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                i += 1;
            }
            latencies.lock().await.extend(mine);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut all = std::mem::take(&mut *latencies.lock().await);
    all.sort();
    let pick = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Outcome {
        requests: all.len(),
        errors: errors.load(std::sync::atomic::Ordering::Relaxed),
        rps: all.len() as f64 / elapsed,
        p50: pick(0.50),
        p99: pick(0.99),
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

async fn scenario(label: &str, env: Vec<(&'static str, String)>, seconds: u64, connections: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let t0 = Instant::now();
    let global = Global::start(dir.path(), &env).await;
    let ready = t0.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = rss_kib(global.child.id());

    let client = Client::new();
    for i in 0..375 {
        let name = format!("tp-{i:03}");
        let r = client
            .put(format!(
                "{}/meshes/default/traffic-permissions/{name}",
                global.api
            ))
            .json(&traffic_permission(&name))
            .send()
            .await
            .expect("seed PUT");
        assert!(r.status().is_success(), "seeding {name}: {}", r.status());
    }
    let api = global.api.clone();
    let index = drive(seconds, connections, {
        let api = api.clone();
        move |c, _| c.get(format!("{api}/"))
    })
    .await;
    let list = drive(seconds, connections, {
        let api = api.clone();
        move |c, _| {
            c.get(format!(
                "{api}/meshes/default/traffic-permissions?size=1000"
            ))
        }
    })
    .await;
    let put = drive(seconds, connections, {
        let api = api.clone();
        move |c, i| {
            // Each connection updates its own few policies: no two writers race on one name.
            let name = format!("load-{}-{}", i / 1_000_000, i % 20);
            c.put(format!("{api}/meshes/default/traffic-permissions/{name}"))
                .json(&traffic_permission(&name))
        }
    })
    .await;
    println!(
        "\n{label}: start-to-ready {:.0} ms, idle RSS {} MiB",
        ready.as_secs_f64() * 1000.0,
        idle_rss / 1024
    );
    println!("| {label} | requests/s | p50 | p99 | requests | errors |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, o) in [
        ("GET / (baseline)", &index),
        ("GET list of 375", &list),
        ("PUT policy", &put),
    ] {
        println!(
            "| {name} | {:.0} | {:.2} ms | {:.2} ms | {} | {} |",
            o.rps,
            o.p50.as_secs_f64() * 1000.0,
            o.p99.as_secs_f64() * 1000.0,
            o.requests,
            o.errors
        );
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: run briefly then.
    let benching = std::env::args().any(|a| a == "--bench");
    let seconds: u64 = std::env::var("LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if benching { 10 } else { 1 });
    let connections: usize = std::env::var("LOAD_CONNECTIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        println!("load: {connections} connections, {seconds} s per case, loopback");
        scenario("sqlite", vec![], seconds, connections).await;
        if std::env::var("DATABASE_URL").is_ok() {
            let (url, name) = fresh_database().await;
            let env = postgres_env(&url, &name);
            let dir = tempfile::tempdir().expect("temp dir");
            let (ok, text) = run_to_end(dir.path(), &["migrate", "up"], &env);
            assert!(ok, "{text}");
            scenario("postgres", env, seconds, connections).await;
        } else {
            println!("\npostgres: skipped (set DATABASE_URL)");
        }
    });
}
