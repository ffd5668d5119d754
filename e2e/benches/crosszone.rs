//! Cross-zone benchmark with real processes: a global, zone-1 and zone-2 (SQLite, default
//! settings), a zone ingress per zone and sidecars run by `kuma-dp` with real Envoy 1.40, on
//! builtin mTLS. It measures, in one run and side by side:
//!
//! 1. **latency** of sequential GETs over one kept-alive connection each, from the frontend's
//!    outbounds in zone-1: to `backend-local` (zone-1: two sidecars) and to `backend-remote`
//!    (zone-2: two sidecars and zone-2's ingress); baseline: the same GET straight to
//!    backend-local's application, no proxy. The three are interleaved request by request.
//! 2. **throughput**: `CROSSZONE_CLIENTS` concurrent clients (own connection each) for
//!    `CROSSZONE_SECONDS` against each of the three, one after the other.
//! 3. **time to reach a new remote service**: the frontend has outbounds to `backend-new-K`
//!    from the start; round K starts `backend-new-K`'s sidecar in zone-2 and polls (every
//!    5 ms, each with a new connection) the frontend's outbound until it answers 200 from it,
//!    that sidecar's Envoy admin `/ready` until LIVE, zone-2's API until the Dataplane is
//!    registered and the frontend Envoy's admin `/clusters` until the new cluster has an
//!    endpoint: time from LIVE, and from spawning kuma-dp, to the first 200, and from
//!    registration to the frontend's endpoint (the control planes' part).
//!
//! It prints the settings that bear on (3) as the control planes report them (`GET /config`);
//! it tunes none of them. No timed assertions: it prints a table; every wait has a deadline.
//!
//! The binaries are the release ones next to this bench in the target dir (`cargo bench`
//! builds the bench in the release profile; `kuma-*` are not rebuilt by it), or those in
//! `KUMA_E2E_BIN_DIR` when set:
//!
//! ```sh
//! cargo build --release -p global -p zone -p ctl -p dp
//! export ENVOY_BINARY=$(cargo xtask envoy | tail -1)
//! cargo bench -p e2e --bench crosszone
//! CROSSZONE_REQUESTS=500 CROSSZONE_SECONDS=3 CROSSZONE_ROUNDS=3 cargo bench -p e2e --bench crosszone
//! ```
//!
//! Env: `CROSSZONE_REQUESTS` (N sequential GETs per path, default 5 000, after 200 of warm-up),
//! `CROSSZONE_CLIENTS` (C, 16), `CROSSZONE_SECONDS` (T per path, 15), `CROSSZONE_ROUNDS` (5);
//! `CROSSZONE_LOGS=DIR` copies every control plane's and kuma-dp's log there at the end;
//! `CROSSZONE_CP_LOG=LEVEL` runs the control planes with `KUMA_LOG_LEVEL=LEVEL` (e.g.
//! `info,kds=debug,xds=debug,ingress=debug` to read where the time of (3) goes).
//! The test applications and the load generator run in this process, on the same cores as
//! every control plane and Envoy: the figures are a floor.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use support::sidecar::{Sidecar, envoy_binary};
use support::traffic::{dataplane, http_client, wait_reaches};
use support::{Federation, GLOBAL, ZoneOptions, apps, free_port};
use tokio::time::{Instant, sleep};

const MESH_MTLS: &str = "type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
    - name: ca-1
      type: builtin
";

const ZONES: [&str; 2] = ["zone-1", "zone-2"];

/// Deadline of every wait of the setup and of each time-to-reach round.
const DEADLINE: Duration = Duration::from_secs(60);

/// Pause between two polls of a time-to-reach round.
const POLL: Duration = Duration::from_millis(5);

/// Sequential GETs per path before the timed ones.
const WARMUP: usize = 200;

/// The settings that bear on how fast a new service reaches the other zone, by control plane
/// (`GET /config`, JSON pointer).
const SETTINGS: &[(&str, &str)] = &[
    (GLOBAL, "/multizone/global/kds/refreshInterval"),
    (GLOBAL, "/multizone/global/kds/zoneInsightFlushInterval"),
    (GLOBAL, "/multizone/global/kds/zoneHealthCheck/pollInterval"),
    ("zone-1", "/multizone/zone/kds/refreshInterval"),
    ("zone-1", "/xdsServer/dataplaneConfigurationRefreshInterval"),
    ("zone-1", "/xdsServer/dataplaneStatusFlushInterval"),
    ("zone-2", "/multizone/zone/kds/refreshInterval"),
    ("zone-2", "/xdsServer/dataplaneStatusFlushInterval"),
    ("zone-2", "/xdsServer/dataplaneDeregistrationDelay"),
];

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// An HTTP app answering `{name}@{zone}` and its sidecar `name` (service `service`,
/// protocol http) in `zone`, LIVE; and the app's own port.
async fn app(
    federation: &Federation,
    zone: &str,
    name: &str,
    service: &str,
    outbounds: &[(u16, &str)],
) -> (Sidecar, u16) {
    let app_port = apps::http(&format!("{name}@{zone}")).await;
    let yaml = dataplane(
        name,
        free_port(),
        app_port,
        &[("kuma.io/service", service), ("kuma.io/protocol", "http")],
        outbounds,
    );
    let sidecar = Sidecar::start(federation, zone, name, "default", &yaml);
    sidecar.wait_live().await;
    (sidecar, app_port)
}

/// One path a request can take, with the instance that must answer.
#[derive(Clone)]
struct Path {
    label: &'static str,
    port: u16,
    instance: String,
}

/// One GET on `port`: `Ok` when it answers 200 from `instance`.
async fn call(http: &reqwest::Client, port: u16, instance: &str) -> Result<(), String> {
    let response = http
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(|e| e.to_string())?;
    if status == 200 && body.starts_with(instance) {
        Ok(())
    } else {
        Err(format!("{status}: {body}"))
    }
}

/// A client holding one kept-alive connection.
fn keep_alive_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .pool_max_idle_per_host(1)
        .build()
        .expect("HTTP client")
}

/// Percentiles of a set of durations (nearest rank).
struct Summary {
    count: usize,
    p50: Duration,
    p90: Duration,
    p99: Duration,
    max: Duration,
}

fn summarize(mut samples: Vec<Duration>) -> Summary {
    samples.sort();
    let pick = |q: f64| {
        if samples.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        samples[rank - 1]
    };
    Summary {
        count: samples.len(),
        p50: pick(0.50),
        p90: pick(0.90),
        p99: pick(0.99),
        max: samples.last().copied().unwrap_or_default(),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

/// N sequential GETs per path, the paths interleaved request by request (the order rotating),
/// each path on its own kept-alive connection, after `WARMUP` GETs per path.
async fn latency(paths: &[Path], requests: usize) -> Vec<(Summary, usize)> {
    let clients: Vec<reqwest::Client> = paths.iter().map(|_| keep_alive_client()).collect();
    for (path, http) in paths.iter().zip(&clients) {
        for _ in 0..WARMUP {
            let _ = call(http, path.port, &path.instance).await;
        }
    }
    let mut samples: Vec<Vec<Duration>> = paths.iter().map(|_| Vec::new()).collect();
    let mut errors = vec![0usize; paths.len()];
    for i in 0..requests {
        for k in 0..paths.len() {
            let j = (i + k) % paths.len();
            let start = Instant::now();
            match call(&clients[j], paths[j].port, &paths[j].instance).await {
                Ok(()) => samples[j].push(start.elapsed()),
                Err(_) => errors[j] += 1,
            }
        }
    }
    samples
        .into_iter()
        .zip(errors)
        .map(|(s, e)| (summarize(s), e))
        .collect()
}

struct Load {
    ok: u64,
    errors: u64,
    rps: f64,
    latency: Summary,
}

/// `clients` tasks, each with its own connection, GET `path` in a loop for `seconds`.
async fn load(path: &Path, clients: usize, seconds: u64) -> Load {
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (port, instance, errors) = (path.port, path.instance.clone(), errors.clone());
        tasks.spawn(async move {
            let http = keep_alive_client();
            let mut mine = Vec::new();
            while Instant::now() < end {
                let t = Instant::now();
                match call(&http, port, &instance).await {
                    Ok(()) => mine.push(t.elapsed()),
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            mine
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(mine) => all.extend(mine),
            Err(e) => eprintln!("a load client failed: {e}"),
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    Load {
        ok: all.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        rps: all.len() as f64 / elapsed,
        latency: summarize(all),
    }
}

/// Polls `check` every [`POLL`] until it is true; the moment it first was, or `None` after
/// [`DEADLINE`].
async fn first_true(mut check: impl AsyncFnMut() -> bool) -> Option<Instant> {
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        if check().await {
            return Some(Instant::now());
        }
        sleep(POLL).await;
    }
    None
}

/// One time-to-reach round: milliseconds from spawning kuma-dp to each moment.
struct Reach {
    /// The Dataplane is in zone-2's store (`GET` on zone-2's API answers it).
    registered: f64,
    /// The frontend's Envoy has an endpoint in the cluster of the new service (zone-2's
    /// ingress): the control planes' part is done.
    endpoint: f64,
    /// The new sidecar's Envoy admin `/ready` says LIVE.
    live: f64,
    /// The first 200 from the new instance through the frontend's outbound.
    first_200: f64,
}

/// One figure of a round, in ms.
type Figure = fn(&Reach) -> f64;

/// Whether Envoy's admin `/clusters` text lists a host of `cluster`
/// (`{cluster}::{ip}:{port}::{stat}::{value}`).
fn has_endpoint(clusters: &str, cluster: &str) -> bool {
    clusters.lines().any(|line| {
        line.strip_prefix(cluster)
            .and_then(|rest| rest.strip_prefix("::"))
            .and_then(|rest| rest.split("::").next())
            .is_some_and(|host| host.parse::<std::net::SocketAddr>().is_ok())
    })
}

/// Starts `backend-new-{round}` in zone-2 and times how long the frontend's outbound `port`
/// (its Envoy's admin on `frontend_admin`) takes to reach it, polling four things at once
/// every [`POLL`]. Returns the sidecar (kept running) and the figures.
async fn reach_round(
    federation: &Federation,
    round: u64,
    port: u16,
    frontend_admin: u16,
) -> (Sidecar, Result<Reach, String>) {
    let name = format!("backend-new-{round}");
    let instance = format!("{name}@zone-2");
    let app_port = apps::http(&instance).await;
    let yaml = dataplane(
        &name,
        free_port(),
        app_port,
        &[("kuma.io/service", &name), ("kuma.io/protocol", "http")],
        &[],
    );
    let token = federation
        .kumactl(
            "zone-2",
            &[
                "generate",
                "dataplane-token",
                "--name",
                &name,
                "--mesh",
                "default",
                "--valid-for",
                "1h",
            ],
        )
        .ok()
        .trim()
        .to_string();
    // A new connection per poll: what a new caller would see (a kept-alive one could sit on
    // a listener Envoy is draining).
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .expect("HTTP client");
    if call(&http, port, &instance).await.is_ok() {
        panic!("{name} answers before its sidecar started");
    }
    let dataplane_url = format!(
        "http://127.0.0.1:{}/meshes/default/dataplanes/{name}",
        federation.api("zone-2")
    );
    let clusters_url = format!("http://127.0.0.1:{frontend_admin}/clusters");
    let started = Instant::now();
    let sidecar = Sidecar::start_with_token(federation, "zone-2", &name, "default", &yaml, &token);
    let ready_url = format!("http://127.0.0.1:{}/ready", sidecar.admin_port);
    let body = async |url: &str| match http.get(url).send().await {
        Ok(r) if r.status() == 200 => r.text().await.ok(),
        _ => None,
    };
    let (registered, endpoint, live, reached) = tokio::join!(
        first_true(async || body(&dataplane_url).await.is_some()),
        first_true(async || body(&clusters_url)
            .await
            .is_some_and(|text| has_endpoint(&text, &name))),
        first_true(async || body(&ready_url)
            .await
            .is_some_and(|text| text.trim() == "LIVE")),
        first_true(async || call(&http, port, &instance).await.is_ok()),
    );
    let since = |at: Option<Instant>, what: &str| {
        at.map(|at| at.duration_since(started).as_secs_f64() * 1000.0)
            .ok_or_else(|| format!("{what} not within {DEADLINE:?}"))
    };
    let result = (|| {
        Ok(Reach {
            registered: since(registered, "registered in zone-2")?,
            endpoint: since(endpoint, "an endpoint in the frontend's Envoy")?,
            live: since(live, "its Envoy LIVE")?,
            first_200: since(reached, "a 200 through the frontend")?,
        })
    })();
    (sidecar, result)
}

/// Rounded to a whole number (no `-0`).
fn whole(value: f64) -> i64 {
    value.round() as i64
}

fn min_median_max(mut values: Vec<f64>) -> String {
    if values.is_empty() {
        return "—".to_string();
    }
    values.sort_by(f64::total_cmp);
    let median = if values.len() % 2 == 1 {
        values[values.len() / 2]
    } else {
        (values[values.len() / 2 - 1] + values[values.len() / 2]) / 2.0
    };
    format!(
        "{:>8} {:>8} {:>8}",
        whole(values[0]),
        whole(median),
        whole(values[values.len() - 1])
    )
}

/// Copies the logs under `from` (`*.log`, kuma-dp's `*.out` and `*.err`) to the same
/// places under `to`; how many.
fn copy_logs(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<usize> {
    let mut copied = 0;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let path = entry.path();
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copied += copy_logs(&path, &target)?;
        } else if path
            .extension()
            .is_some_and(|e| e == "log" || e == "out" || e == "err")
        {
            std::fs::create_dir_all(to)?;
            std::fs::copy(&path, &target)?;
            copied += 1;
        }
    }
    Ok(copied)
}

#[tokio::main]
async fn main() {
    let requests = env_or("CROSSZONE_REQUESTS", 5_000) as usize;
    let clients = env_or("CROSSZONE_CLIENTS", 16) as usize;
    let seconds = env_or("CROSSZONE_SECONDS", 15);
    let rounds = env_or("CROSSZONE_ROUNDS", 5);
    let envoy = envoy_binary();
    // Where support::binary takes them from.
    let bin_dir = std::env::var_os("KUMA_E2E_BIN_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            Some(exe.parent()?.parent()?.to_path_buf())
        })
        .map(|dir| dir.display().to_string())
        .unwrap_or_default();
    println!("cross-zone bench: N={requests} C={clients} T={seconds}s rounds={rounds}");
    println!("binaries: {bin_dir}/{{kuma-global,kuma-zone,kumactl,kuma-dp}}; Envoy: {envoy}");

    // A global and two zones with default settings, builtin mTLS, an ingress per zone.
    let setup = Instant::now();
    // Only the log level, when asked for (to read where the time of (3) goes).
    let cp_log = std::env::var("CROSSZONE_CP_LOG").ok();
    let log_env: Vec<(&str, &str)> = cp_log
        .iter()
        .map(|level| ("KUMA_LOG_LEVEL", level.as_str()))
        .collect();
    if let Some(level) = &cp_log {
        println!("control planes run with KUMA_LOG_LEVEL={level}");
    }
    let mut federation = Federation::start_global_with(Vec::new(), &log_env).await;
    for zone in ZONES {
        let options = ZoneOptions {
            env: log_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..ZoneOptions::default()
        };
        federation.add_zone(zone, options).await;
    }
    for zone in ZONES {
        federation.wait_online(zone, DEADLINE).await;
    }
    federation.apply(GLOBAL, MESH_MTLS);
    let ingresses: Vec<Sidecar> = ZONES
        .iter()
        .map(|zone| Sidecar::zone_ingress(&federation, zone))
        .collect();
    for ingress in &ingresses {
        ingress.wait_live().await;
    }
    let (_local, local_app) = app(
        &federation,
        "zone-1",
        "backend-local-1",
        "backend-local",
        &[],
    )
    .await;
    let (_remote, _) = app(
        &federation,
        "zone-2",
        "backend-remote-1",
        "backend-remote",
        &[],
    )
    .await;
    let (local_out, remote_out) = (free_port(), free_port());
    let new_outs: Vec<(u16, String)> = (1..=rounds)
        .map(|k| (free_port(), format!("backend-new-{k}")))
        .collect();
    let mut outbounds = vec![(local_out, "backend-local"), (remote_out, "backend-remote")];
    outbounds.extend(new_outs.iter().map(|(p, s)| (*p, s.as_str())));
    let (frontend, _) = app(&federation, "zone-1", "frontend-1", "frontend", &outbounds).await;
    let http = http_client();
    wait_reaches(&http, local_out, "backend-local-1@zone-1", "same-zone path").await;
    wait_reaches(
        &http,
        remote_out,
        "backend-remote-1@zone-2",
        "cross-zone path",
    )
    .await;
    println!(
        "setup: {:.1} s (global, 2 zones, 2 ingresses, 3 sidecars)",
        setup.elapsed().as_secs_f64()
    );

    println!("\nsettings (GET /config of each control plane; none set by this bench):");
    for (cp, pointer) in SETTINGS {
        let value = match federation.get(cp, "/config").await {
            Ok(Some(config)) => config
                .pointer(pointer)
                .map(|v| v.as_str().map(str::to_string).unwrap_or(v.to_string()))
                .unwrap_or_else(|| "(absent)".to_string()),
            Ok(None) => "(no /config)".to_string(),
            Err(e) => format!("({e})"),
        };
        let key = pointer.trim_start_matches('/').replace('/', ".");
        println!("  {cp:<7} {key:<55} {value}");
    }

    let paths = [
        Path {
            label: "direct to the app (baseline)",
            port: local_app,
            instance: "backend-local-1@zone-1".into(),
        },
        Path {
            label: "same-zone (2 sidecars)",
            port: local_out,
            instance: "backend-local-1@zone-1".into(),
        },
        Path {
            label: "cross-zone (2 sidecars + ingress)",
            port: remote_out,
            instance: "backend-remote-1@zone-2".into(),
        },
    ];

    println!(
        "\n1. latency, {requests} sequential GETs per path over one kept-alive connection, interleaved (ms)"
    );
    println!(
        "  {:<34} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "path", "p50", "p90", "p99", "max", "errors"
    );
    let results = latency(&paths, requests).await;
    for (path, (s, errors)) in paths.iter().zip(&results) {
        println!(
            "  {:<34} {:>9} {:>9} {:>9} {:>9} {:>7}",
            path.label,
            ms(s.p50),
            ms(s.p90),
            ms(s.p99),
            ms(s.max),
            errors
        );
    }
    let (same, cross) = (&results[1].0, &results[2].0);
    if same.count > 0 && cross.count > 0 {
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
        println!(
            "  cross/same: p50 {:.2}×, p99 {:.2}×; the ingress adds {} ms at p50",
            ratio(cross.p50, same.p50),
            ratio(cross.p99, same.p99),
            ms(cross.p50.saturating_sub(same.p50))
        );
    }

    // The cross-zone path really crosses zone-2's ingress (TLS passthrough: it counts
    // connections; Envoy writes the ':' of cluster names as '_').
    let stat = "cluster.default_backend-remote.upstream_cx_total";
    let counted = ingresses[1]
        .admin(&format!("/stats?filter=^{}$", stat.replace('.', "\\.")))
        .await
        .unwrap_or_default();
    println!(
        "  zone-2's ingress: {}",
        counted.trim().lines().next().unwrap_or("(no such stat)")
    );

    println!("\n2. throughput, {clients} clients (own connection each) for {seconds} s per path");
    println!(
        "  {:<34} {:>9} {:>9} {:>7} {:>9} {:>9}",
        "path", "req/s", "ok", "errors", "p50 ms", "p99 ms"
    );
    for path in &paths {
        let l = load(path, clients, seconds).await;
        println!(
            "  {:<34} {:>9.0} {:>9} {:>7} {:>9} {:>9}",
            path.label,
            l.rps,
            l.ok,
            l.errors,
            ms(l.latency.p50),
            ms(l.latency.p99)
        );
    }

    println!(
        "\n3. time to reach a new service in zone-2 from zone-1's frontend ({rounds} rounds, polled every {POLL:?})"
    );
    println!(
        "  ms from spawning kuma-dp to: reg = the Dataplane is in zone-2's store; endpoint = the frontend's Envoy has an endpoint (zone-2's ingress) for it; LIVE = its own Envoy's /ready; 200 = the first 200 through the frontend"
    );
    println!(
        "  {:<6} {:<14} {:>7} {:>9} {:>7} {:>7} {:>11} {:>9}",
        "round", "service", "reg", "endpoint", "LIVE", "200", "reg→endpt", "LIVE→200"
    );
    let mut new_sidecars = Vec::new();
    let mut figures = Vec::new();
    for (round, (port, service)) in (1..=rounds).zip(&new_outs) {
        let (sidecar, result) = reach_round(&federation, round, *port, frontend.admin_port).await;
        match result {
            Ok(r) => {
                println!(
                    "  {round:<6} {service:<14} {:>7} {:>9} {:>7} {:>7} {:>11} {:>9}",
                    whole(r.registered),
                    whole(r.endpoint),
                    whole(r.live),
                    whole(r.first_200),
                    whole(r.endpoint - r.registered),
                    whole(r.first_200 - r.live)
                );
                figures.push(r);
            }
            Err(why) => println!("  {round:<6} {service:<14} failed: {why}"),
        }
        new_sidecars.push(sidecar);
    }
    println!("  {:<40} {:>8} {:>8} {:>8}", "(ms)", "min", "median", "max");
    let rows: [(&str, Figure); 4] = [
        ("registered in zone-2 → frontend endpoint", |r| {
            r.endpoint - r.registered
        }),
        ("new Envoy LIVE → first 200", |r| r.first_200 - r.live),
        ("kuma-dp spawned → new Envoy LIVE", |r| r.live),
        ("kuma-dp spawned → first 200", |r| r.first_200),
    ];
    for (label, f) in rows {
        println!(
            "  {label:<40} {}",
            min_median_max(figures.iter().map(f).collect())
        );
    }
    println!("  rounds reached: {} of {rounds}", figures.len());
    if let Some(to) = std::env::var_os("CROSSZONE_LOGS") {
        let to = std::path::PathBuf::from(to);
        match copy_logs(federation.dir(), &to) {
            Ok(n) => println!("  {n} log files copied to {}", to.display()),
            Err(e) => eprintln!("copying the logs to {}: {e}", to.display()),
        }
    }
    drop(new_sidecars);
    drop(ingresses);
}
