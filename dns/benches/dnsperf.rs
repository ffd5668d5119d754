//! DNS throughput and latency with `dnsperf`, against our server and against `dnsmasq`
//! answering the same records, in the same run, from the same query file.
//!
//! ```sh
//! apt-get install -y dnsperf dnsmasq-base     # once
//! cargo bench -p dns --bench dnsperf
//! DNS_BENCH_SECONDS=5 DNS_BENCH_SERVICES=100 cargo bench -p dns --bench dnsperf
//! ```
//!
//! Records: `DNS_BENCH_SERVICES` (default 1 000) names `svc-N.mesh` → `240.0.N/256.N%256`;
//! the query file asks each once, and one unknown `nope-N.mesh` for every nine known
//! (NXDOMAIN on both servers). Each server gets two runs: **throughput** (`dnsperf -l
//! SECONDS`, 100 queries in flight, as fast as it goes) and **latency** (`dnsperf -v` at a
//! fixed `DNS_BENCH_QPS`, default 10 000 queries/s, every response's latency collected for
//! p50/p99). dnsperf runs on the same cores as the server, so the numbers are a floor.
//! Our server runs in this process on a 2-worker tokio runtime, as in the zone.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dns::handler::Table;
use dns::{DnsMetrics, DnsState};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn require(tool: &str, package: &str) {
    if Command::new(tool)
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("`{tool}` is not installed: apt-get install -y {package}");
        std::process::exit(1);
    }
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Run {
    qps: f64,
    lost: String,
    p50_ms: f64,
    p99_ms: f64,
}

/// `dnsperf` against `port`: throughput, then latency at a fixed rate.
fn measure(port: u16, queries: &std::path::Path, seconds: u64, qps: u64) -> Run {
    let base = |extra: &[&str]| {
        let mut command = Command::new("dnsperf");
        command
            .args(["-s", "127.0.0.1", "-p", &port.to_string(), "-d"])
            .arg(queries)
            .args(["-l", &seconds.to_string()])
            .args(extra);
        command.output().expect("running dnsperf")
    };
    let out = base(&[]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name).map(|r| r.trim().to_owned()))
            .unwrap_or_else(|| panic!("dnsperf printed no {name:?}:\n{text}"))
    };
    let qps_done: f64 = field("Queries per second:").parse().expect("qps");
    let lost = field("Queries lost:");

    let out = base(&["-v", "-Q", &qps.to_string()]);
    let mut latencies: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("> "))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let i = ((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1));
        latencies.get(i).copied().unwrap_or(f64::NAN) * 1000.0
    };
    Run {
        qps: qps_done,
        lost,
        p50_ms: at(0.50),
        p99_ms: at(0.99),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to filter.
    require("dnsperf", "dnsperf");
    require("dnsmasq", "dnsmasq-base");
    let services = env_or("DNS_BENCH_SERVICES", 1000);
    let seconds = env_or("DNS_BENCH_SECONDS", 10);
    let fixed_qps = env_or("DNS_BENCH_QPS", 10_000);
    let dir = tempfile_dir();

    let mut vips = dns::vips::Vips::new();
    let mut hosts = String::new();
    let mut queries = String::new();
    for i in 0..services {
        let ip = Ipv4Addr::new(240, 0, (i / 256) as u8, (i % 256) as u8);
        vips.insert(format!("svc-{i}"), IpAddr::V4(ip));
        hosts.push_str(&format!("{ip} svc-{i}.mesh\n"));
        queries.push_str(&format!("svc-{i}.mesh A\n"));
        if i % 9 == 0 {
            queries.push_str(&format!("nope-{i}.mesh A\n"));
        }
    }
    let hosts_file = dir.join("hosts");
    let query_file = dir.join("queries");
    std::fs::write(&hosts_file, hosts).expect("hosts file");
    std::fs::write(&query_file, queries).expect("query file");

    // Ours.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let ours_port = free_udp_port();
    runtime.block_on(async {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, ours_port));
        let udp = tokio::net::UdpSocket::bind(addr).await.expect("udp");
        let tcp = tokio::net::TcpListener::bind(addr).await.expect("tcp");
        let state = DnsState::new("mesh", Vec::new(), DnsMetrics::default());
        let meshes: BTreeMap<String, dns::vips::Vips> = [("default".to_owned(), vips)].into();
        state.set_table(Table::build("mesh", &meshes));
        tokio::spawn(dns::server::serve(udp, tcp, state, std::future::pending()));
    });

    // dnsmasq: the same names from a hosts file, authoritative for `mesh` (unknown names
    // NXDOMAIN), nothing forwarded, TTL 60 like ours, no logging.
    let dnsmasq_port = free_udp_port();
    let mut dnsmasq: Child = Command::new("dnsmasq")
        .args([
            "--no-daemon",
            "--conf-file=/dev/null",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--local=/mesh/",
            "--local-ttl=60",
            "--user=root",
            &format!("--port={dnsmasq_port}"),
            &format!("--addn-hosts={}", hosts_file.display()),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting dnsmasq");
    wait_answers(dnsmasq_port);
    wait_answers(ours_port);

    println!(
        "{services} names, {} queries in the file, {seconds} s per throughput run, latency at {fixed_qps} queries/s",
        std::fs::read_to_string(&query_file)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    );
    println!("| server | queries/s | lost | p50 at {fixed_qps}/s | p99 at {fixed_qps}/s |");
    println!("|---|---:|---|---:|---:|");
    for (name, port) in [
        ("kuma-rs (dns crate)", ours_port),
        ("dnsmasq", dnsmasq_port),
    ] {
        let run = measure(port, &query_file, seconds, fixed_qps);
        println!(
            "| {name} | {:.0} | {} | {:.3} ms | {:.3} ms |",
            run.qps, run.lost, run.p50_ms, run.p99_ms
        );
        let _ = std::io::stdout().flush();
    }
    let _ = dnsmasq.kill();
    let _ = dnsmasq.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sends `svc-0.mesh A` to `port` until a reply comes back; panics after 10 s.
fn wait_answers(port: u16) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    // Header (id 0x4b52, recursion desired, one question), then svc-0.mesh IN A.
    let mut query = vec![0x4b, 0x52, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["svc-0", "mesh"] {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut reply = [0u8; 512];
    loop {
        let _ = socket.send_to(&query, (Ipv4Addr::LOCALHOST, port));
        if socket
            .recv(&mut reply)
            .is_ok_and(|n| n >= 2 && reply[..2] == query[..2])
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing answers DNS on 127.0.0.1:{port}"
        );
    }
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("dns-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
