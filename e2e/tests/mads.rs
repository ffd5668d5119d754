//! Prometheus discovery of a zone's dataplanes (reference: `kuma-api.md` §7), against a real
//! `kuma-zone`:
//!
//! * a client that sends the requests Prometheus's `kuma_sd` sends (headers, proto-JSON body
//!   with proto field names, `fetch-timeout=2m0s`) gets the full answer, then 304 for the same
//!   version, then, while long-polling, the new answer as soon as a Dataplane is applied;
//! * the gRPC `FetchMonitoringAssignments` and the HTTP SD list give the same targets; a bad
//!   body is a 400 with Kuma's error JSON; the `mads_*` and `xds_*` metrics are on `/metrics`;
//! * a real Prometheus (Debian's `prometheus`, `http_sd_configs` pointed at the zone) scrapes
//!   two dataplanes run by kuma-dp with real Envoy, and PromQL returns `envoy_server_live` for
//!   each service.
//!
//! Needs the built binaries (`cargo build -p zone -p ctl -p dp`), `ENVOY_BINARY`, and
//! `prometheus` on the PATH (or `PROMETHEUS_BINARY`); a missing one fails the test.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::sidecar::{Sidecar, envoy_binary};
use support::{Federation, apps, eventually, free_port};

const ZONE: &str = "zone-1";
const TYPE_URL: &str = "type.googleapis.com/kuma.observability.v1.MonitoringAssignment";
const MESH_WITH_METRICS: &str = "type: Mesh
name: default
metrics:
  enabledBackend: prometheus-1
  backends:
    - name: prometheus-1
      type: prometheus
";
const DEADLINE: Duration = Duration::from_secs(30);

fn dataplane(name: &str, service: &str, port: u16, metrics_port: Option<u16>) -> String {
    let mut yaml = format!(
        "type: Dataplane
mesh: default
name: {name}
networking:
  address: 127.0.0.1
  inbound:
    - port: {port}
      servicePort: {}
      tags:
        kuma.io/service: {service}
        kuma.io/protocol: http
",
        port + 1
    );
    if let Some(metrics_port) = metrics_port {
        yaml.push_str(&format!(
            "metrics:\n  type: prometheus\n  conf:\n    port: {metrics_port}\n"
        ));
    }
    yaml
}

/// The body Prometheus's kuma_sd sends (protojson with proto names).
fn kuma_sd_body(version: &str, nonce: &str) -> String {
    format!(
        r#"{{"version_info":"{version}","response_nonce":"{nonce}","type_url":"{TYPE_URL}","resource_names":[],"node":{{"id":"prometheus-e2e"}}}}"#
    )
}

/// POST as kuma_sd does; `(status, body)`.
async fn kuma_sd_fetch(port: u16, body: String, fetch_timeout: &str) -> (u16, String) {
    let client = reqwest::Client::builder()
        .no_proxy()
        // kuma_sd's client timeout is fetch_timeout + 15s; here: long enough for any fetch of
        // this test, short enough to fail clearly.
        .timeout(Duration::from_secs(100))
        .build()
        .expect("HTTP client");
    let response = client
        .post(format!(
            "http://127.0.0.1:{port}/v3/discovery:monitoringassignments?fetch-timeout={fetch_timeout}"
        ))
        .header("Content-Type", "application/json")
        .header("Accept", "application/json")
        .header("User-Agent", "Prometheus/2.42.0")
        .body(body)
        .send()
        .await
        .expect("MADS fetch");
    let status = response.status().as_u16();
    (status, response.text().await.expect("MADS body"))
}

fn target_names(response: &Value) -> Vec<String> {
    let mut names: Vec<String> = response["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn e2e_mads_kuma_sd_fetch_not_modified_and_long_poll() {
    let zone = Federation::start_standalone(ZONE, Vec::new()).await;
    zone.apply(ZONE, MESH_WITH_METRICS);
    zone.apply(ZONE, &dataplane("web-1", "web", 20001, None));
    let port = zone.mads_port(ZONE);

    // 1. Full answer (the first fetch has no version yet).
    let first = eventually(DEADLINE, "web-1 assigned", async || {
        let (status, body) = kuma_sd_fetch(port, kuma_sd_body("", ""), "2m0s").await;
        let json: Value =
            serde_json::from_str(&body).map_err(|e| format!("{status} {e}: {body}"))?;
        if status == 200 && target_names(&json) == ["web-1"] {
            Ok(json)
        } else {
            Err(format!("{status}: {body}"))
        }
    })
    .await;
    let version = first["version_info"]
        .as_str()
        .expect("version_info")
        .to_string();
    let nonce = first["nonce"].as_str().expect("nonce").to_string();
    assert!(!version.is_empty());
    assert_eq!(first["type_url"], TYPE_URL);
    let resource = &first["resources"][0];
    assert_eq!(resource["@type"], TYPE_URL, "{first}");
    assert_eq!(resource["mesh"], "default");
    assert_eq!(resource["service"], "web");
    assert_eq!(
        resource["targets"][0],
        json!({
            "name": "web-1",
            "scheme": "http",
            "address": "127.0.0.1:5670",
            "metrics_path": "/metrics",
            "labels": {
                "kuma_io_protocol": "http",
                "kuma_io_protocols": ",http,",
                "kuma_io_service": "web",
                "kuma_io_services": ",web,",
            },
        })
    );

    // 2. Same version: 304 and no body (after the short fetch-timeout).
    let (status, body) = kuma_sd_fetch(port, kuma_sd_body(&version, &nonce), "1s").await;
    assert_eq!(status, 304, "{body}");
    assert!(body.is_empty(), "{body}");

    // 3. A long-poll at the current version returns the new answer when a Dataplane appears,
    //    long before its fetch-timeout of 2 minutes.
    let poll = tokio::spawn(kuma_sd_fetch(port, kuma_sd_body(&version, &nonce), "2m0s"));
    eventually(DEADLINE, "the long-poll is waiting", async || {
        match zone.metric(ZONE, "mads_watches", &[]).await {
            Some(n) if n >= 1.0 => Ok(()),
            other => Err(format!("mads_watches = {other:?}")),
        }
    })
    .await;
    assert!(
        !poll.is_finished(),
        "the long-poll returned before any change"
    );
    zone.apply(ZONE, &dataplane("web-2", "web", 20003, None));
    let (status, body) = tokio::time::timeout(Duration::from_secs(60), poll)
        .await
        .expect("the long-poll did not return after a Dataplane was applied")
        .expect("long-poll task");
    assert_eq!(status, 200, "{body}");
    let second: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(target_names(&second), ["web-1", "web-2"]);
    assert_ne!(second["version_info"], first["version_info"]);

    // A minimal protojson body (empty fields left out, camelCase accepted) works too.
    let (status, _) = kuma_sd_fetch(
        port,
        format!(r#"{{"typeUrl":"{TYPE_URL}","node":{{"id":"other"}}}}"#),
        "0s",
    )
    .await;
    assert_eq!(status, 200);

    // Bad input: 400 with Kuma's error JSON, and the server keeps serving.
    let (status, body) = kuma_sd_fetch(port, "{not json".into(), "2m0s").await;
    assert_eq!(status, 400, "{body}");
    let error: Value = serde_json::from_str(&body).expect("error JSON");
    assert_eq!(error["status"], 400);
    assert_eq!(error["invalid_parameters"][0]["field"], "body", "{error}");
    let (status, body) = kuma_sd_fetch(port, kuma_sd_body("", ""), "soon").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("fetch-timeout"), "{body}");

    // gRPC FetchMonitoringAssignments on the same port.
    let mut grpc = kds_proto::observability::v1::monitoring_assignment_discovery_service_client::MonitoringAssignmentDiscoveryServiceClient::connect(format!("http://127.0.0.1:{port}"))
        .await
        .expect("gRPC connect");
    let response = grpc
        .fetch_monitoring_assignments(
            envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest {
                type_url: TYPE_URL.into(),
                ..Default::default()
            },
        )
        .await
        .expect("gRPC fetch")
        .into_inner();
    assert_eq!(
        response.version_info,
        second["version_info"].as_str().unwrap_or_default()
    );
    assert_eq!(response.resources.len(), 2);
    assert!(response.resources.iter().all(|r| r.type_url == TYPE_URL));

    // Prometheus HTTP SD: one group per target, kuma_sd's labels.
    let groups: Value = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("HTTP client")
        .get(format!("http://127.0.0.1:{port}/v3/http-sd"))
        .send()
        .await
        .expect("http-sd")
        .json()
        .await
        .expect("http-sd JSON");
    assert_eq!(groups.as_array().map(Vec::len), Some(2), "{groups}");
    assert_eq!(groups[0]["targets"], json!(["127.0.0.1:5670"]));
    assert_eq!(groups[0]["labels"]["__meta_kuma_dataplane"], "web-1");
    assert_eq!(groups[0]["labels"]["__meta_kuma_service"], "web");
    assert_eq!(groups[0]["labels"]["__meta_kuma_mesh"], "default");
    assert_eq!(
        groups[0]["labels"]["__meta_kuma_label_kuma_io_service"],
        "web"
    );
    assert_eq!(groups[0]["labels"]["__metrics_path__"], "/metrics");

    // The zone's own metrics count what happened.
    let sent = zone
        .metric(
            ZONE,
            "mads_requests_total",
            &[("transport", "http"), ("result", "sent")],
        )
        .await;
    assert!(sent.is_some_and(|n| n >= 3.0), "mads sent: {sent:?}");
    let not_modified = zone
        .metric(
            ZONE,
            "mads_requests_total",
            &[("transport", "http"), ("result", "not_modified")],
        )
        .await;
    assert!(not_modified.is_some_and(|n| n >= 1.0), "{not_modified:?}");
    assert_eq!(zone.metric(ZONE, "mads_targets", &[]).await, Some(2.0));
}

/// The Prometheus binary: `PROMETHEUS_BINARY`, else `prometheus` on the PATH (Debian's
/// package installs `/usr/bin/prometheus`).
fn prometheus_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("PROMETHEUS_BINARY") {
        return PathBuf::from(path);
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let candidate = dir.join("prometheus");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "prometheus not found: install Debian's `prometheus` package (apt-get install -y prometheus; \
         .ci/run does) or set PROMETHEUS_BINARY"
    );
}

/// A Prometheus process killed on drop (its log printed when the test fails).
struct Prometheus {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- prometheus log (last lines)");
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

impl Prometheus {
    fn start(dir: &std::path::Path, mads_port: u16) -> Prometheus {
        let binary = prometheus_binary();
        let port = free_port();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: kuma-dataplanes
    http_sd_configs:
      - url: http://127.0.0.1:{mads_port}/v3/http-sd
        refresh_interval: 1s
    relabel_configs:
      - source_labels: [__meta_kuma_service]
        target_label: kuma_io_service
      - source_labels: [__meta_kuma_mesh]
        target_label: mesh
"
            ),
        )
        .expect("write prometheus.yml");
        let data = dir.join("prometheus-data");
        let log = dir.join("prometheus.log");
        let log_file = std::fs::File::create(&log).expect("prometheus log");
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::from(log_file.try_clone().expect("log file")))
            .stderr(Stdio::from(log_file))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        Prometheus { child, port, log }
    }

    /// The result vector of an instant PromQL query.
    async fn query(&self, promql: &str) -> Result<Vec<Value>, String> {
        let response = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?
            .get(format!(
                "http://127.0.0.1:{}/api/v1/query?query={}",
                self.port,
                percent_encode(promql)
            ))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        if body["status"] != "success" {
            return Err(body.to_string());
        }
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}

/// A URL query value: everything but unreserved characters percent-encoded.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn e2e_prometheus_http_sd_scrapes_envoy_of_two_services() {
    let _ = envoy_binary();
    let _ = prometheus_binary();
    let zone = Federation::start_standalone(ZONE, Vec::new()).await;
    zone.apply(ZONE, MESH_WITH_METRICS);
    // Two dataplanes on 127.0.0.1: each needs its own metrics port.
    let mut sidecars = Vec::new();
    for (name, service) in [("web-1", "web"), ("backend-1", "backend")] {
        let app_port = apps::http(name).await;
        let inbound = free_port();
        let metrics_port = free_port();
        let yaml = format!(
            "type: Dataplane
mesh: default
name: {name}
networking:
  address: 127.0.0.1
  inbound:
    - port: {inbound}
      servicePort: {app_port}
      tags:
        kuma.io/service: {service}
        kuma.io/protocol: http
metrics:
  type: prometheus
  conf:
    port: {metrics_port}
"
        );
        let sidecar = Sidecar::start(&zone, ZONE, name, "default", &yaml);
        sidecar.wait_live().await;
        // The proxy itself serves its metrics where the assignment says.
        eventually(DEADLINE, &format!("{name} serves /metrics"), async || {
            let text = reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(5))
                .build()
                .map_err(|e| e.to_string())?
                .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
                .send()
                .await
                .map_err(|e| e.to_string())?
                .text()
                .await
                .map_err(|e| e.to_string())?;
            if text.contains("envoy_server_live") {
                Ok(())
            } else {
                Err(text.chars().take(300).collect())
            }
        })
        .await;
        sidecars.push(sidecar);
    }

    let prometheus = Prometheus::start(zone.dir(), zone.mads_port(ZONE));
    let services = eventually(
        Duration::from_secs(90),
        "Prometheus has envoy_server_live of both services",
        async || {
            let result = prometheus
                .query(r#"envoy_server_live{job="kuma-dataplanes"}"#)
                .await?;
            let mut services: Vec<String> = result
                .iter()
                .filter(|s| s["value"][1] == "1")
                .filter_map(|s| s["metric"]["kuma_io_service"].as_str().map(str::to_string))
                .collect();
            services.sort();
            if services == ["backend", "web"] {
                Ok(result)
            } else {
                Err(format!("{result:?}"))
            }
        },
    )
    .await;
    for series in &services {
        assert_eq!(series["metric"]["mesh"], "default", "{series}");
        let instance = series["metric"]["instance"].as_str().unwrap_or_default();
        assert!(
            ["web-1", "backend-1"].contains(&instance),
            "instance is the dataplane name: {series}"
        );
    }
    // The zone counts the two ADS streams and what their Envoys accepted.
    eventually(DEADLINE, "xds_streams = 2", async || {
        match zone.metric(ZONE, "xds_streams", &[]).await {
            Some(2.0) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let acked = zone
        .metric(
            ZONE,
            "xds_responses_acked_total",
            &[(
                "type_url",
                "type.googleapis.com/envoy.config.listener.v3.Listener",
            )],
        )
        .await;
    assert!(acked.is_some_and(|n| n >= 2.0), "listener ACKs: {acked:?}");
    drop(sidecars);
}
