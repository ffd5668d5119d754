//! Real Envoy 1.40 configured over our ADS server: a tiny HTTP server in the
//! test, a dataplane whose HTTP inbound fronts it, `xds::generate` for its
//! snapshot, and an Envoy with a minimal ADS bootstrap. A GET through the
//! inbound listener must reach the server.
//!
//! Needs `ENVOY_BINARY` (exported by `cargo xtask test`; `cargo xtask envoy`
//! prints a path). Without it the test fails: it never skips silently.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod envoy_cli;

use envoy_cli::*;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::TcpListenerStream;
use xds::ads::{AdsServer, SnapshotCache};

const NODE: &str = "default.web-1";
const BODY: &str = "hello from the ads_envoy test server";
const DEADLINE: Duration = Duration::from_secs(60);

/// Envoy, killed when dropped.
struct Envoy(Child);

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free TCP port on 127.0.0.1 (bound then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Answers every connection with `200 OK` and [`BODY`].
async fn http_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut read = Vec::new();
                // Read the request head, then answer and close.
                while !read.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read.extend_from_slice(&buf[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
                    BODY.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    port
}

/// The ADS server on a free port, serving `cache`.
async fn ads_server(cache: SnapshotCache) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AdsServer::new(cache).into_service())
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    port
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

fn bootstrap(ads_port: u16, admin_port: u16) -> serde_json::Value {
    json!({
        "node": { "id": NODE, "cluster": "web" },
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": admin_port } } },
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "set_node_on_first_message_only": true,
                "grpc_services": [ { "envoy_grpc": { "cluster_name": "ads_cluster" } } ]
            },
            "cds_config": { "ads": {}, "resource_api_version": "V3" },
            "lds_config": { "ads": {}, "resource_api_version": "V3" }
        },
        "static_resources": {
            "clusters": [ {
                "name": "ads_cluster",
                "type": "STATIC",
                "connect_timeout": "1s",
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": { "http2_protocol_options": {} }
                    }
                },
                "load_assignment": {
                    "cluster_name": "ads_cluster",
                    "endpoints": [ { "lb_endpoints": [ { "endpoint": { "address": {
                        "socket_address": { "address": "127.0.0.1", "port_value": ads_port }
                    } } } ] } ]
                }
            } ]
        }
    })
}

/// One plain HTTP/1.1 GET; the whole response, or why not.
async fn get(port: u16) -> Result<String, String> {
    let mut socket = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    socket
        .write_all(b"GET / HTTP/1.1\r\nhost: web\r\nconnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    socket
        .read_to_string(&mut response)
        .await
        .map_err(|e| e.to_string())?;
    Ok(response)
}

#[tokio::test]
async fn envoy_serves_an_inbound_configured_over_ads() {
    let envoy_binary = envoy_binary();
    let app_port = http_server().await;
    let inbound_port = free_port();
    let cache = SnapshotCache::new();
    cache.set(NODE, web_resources(inbound_port, app_port));
    let ads_port = ads_server(cache).await;

    let admin_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bootstrap.json");
    std::fs::write(&config, bootstrap(ads_port, admin_port).to_string()).unwrap();
    let log = dir.path().join("envoy.log");
    let child = Command::new(&envoy_binary)
        .arg("-c")
        .arg(&config)
        .args(["--base-id", &(u32::from(admin_port) + 100_000).to_string()])
        .args(["--log-level", "info", "--log-path"])
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {envoy_binary}: {e}"));
    let mut envoy = Envoy(child);

    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Ok(Some(status)) = envoy.0.try_wait() {
            panic!(
                "Envoy exited ({status}):\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        let last = match get(inbound_port).await {
            Ok(response) if response.starts_with("HTTP/1.1 200") && response.contains(BODY) => {
                assert!(response.contains("server: envoy"), "{response}");
                break;
            }
            Ok(response) => response,
            Err(e) => e,
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "no 200 through Envoy on {inbound_port}; last: {last}\n--- envoy log ---\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
