//! Real Envoy configured over our ADS server, for tests that send traffic
//! through it: the Envoy process (killed when dropped) and its minimal ADS
//! bootstrap, the ADS server, tiny HTTP servers with a known body, and a plain
//! HTTP/1.1 GET.

// Each test file uses what it needs.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::TcpListenerStream;
use xds::ads::{AdsServer, SnapshotCache};

use crate::envoy_cli::envoy_binary;

/// A running Envoy, killed when dropped, with its log.
pub struct Envoy {
    child: Child,
    log: PathBuf,
    /// Envoy's admin port.
    pub admin_port: u16,
    _dir: tempfile::TempDir,
}

impl Envoy {
    /// Starts Envoy as node `node`, configured over ADS from `cache`.
    pub async fn start(node: &str, cache: SnapshotCache) -> Envoy {
        Envoy::on_ads(node, ads_server(cache).await)
    }

    /// Starts Envoy as node `node` on the (state of the world) ADS server at
    /// `ads_port`.
    pub fn on_ads(node: &str, ads_port: u16) -> Envoy {
        let admin_port = free_port();
        Envoy::launch(&bootstrap(node, ads_port, admin_port, "GRPC"), admin_port)
    }

    /// Starts Envoy on `bootstrap`, whose admin listens on `admin_port`.
    pub fn launch(bootstrap: &serde_json::Value, admin_port: u16) -> Envoy {
        let envoy_binary = envoy_binary();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("bootstrap.json");
        std::fs::write(&config, bootstrap.to_string()).unwrap();
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
        Envoy {
            child,
            log,
            admin_port,
            _dir: dir,
        }
    }

    /// Panics (with the log) if Envoy has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("Envoy exited ({status}):\n{}", self.log());
        }
    }

    /// Envoy's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Answers every connection with `200 OK` and `body`; returns its port.
pub async fn http_server(body: &'static str) -> u16 {
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
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    port
}

/// The ADS server on a free port, serving `cache`.
pub async fn ads_server(cache: SnapshotCache) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AdsServer::new(cache).into_service())
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    port
}

/// A minimal bootstrap: node `node`, ADS (`api_type` `GRPC` or
/// `DELTA_GRPC`) on 127.0.0.1:`ads_port` over HTTP/2, admin on `admin_port`.
pub fn bootstrap(node: &str, ads_port: u16, admin_port: u16, api_type: &str) -> serde_json::Value {
    json!({
        "node": { "id": node, "cluster": "test" },
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": admin_port } } },
        "dynamic_resources": {
            "ads_config": {
                "api_type": api_type,
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

/// One plain HTTP/1.1 GET of `/` on 127.0.0.1:`port` with the extra
/// `headers` lines: the whole response (empty when the connection was
/// closed without one), or the connection error.
pub async fn get(port: u16, headers: &[&str]) -> Result<String, String> {
    get_path(port, "/", headers).await
}

/// [`get`] of `path`; no answer within 5 s is an error.
pub async fn get_path(port: u16, path: &str, headers: &[&str]) -> Result<String, String> {
    let mut socket = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let mut request = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    socket
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    // A reset after the request is "closed without a response" too.
    let read = socket.read_to_end(&mut response);
    if tokio::time::timeout(std::time::Duration::from_secs(5), read)
        .await
        .is_err()
    {
        return Err("no answer within 5 s".to_string());
    }
    Ok(String::from_utf8_lossy(&response).into_owned())
}
