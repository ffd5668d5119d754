//! The MADS server on `monitoringAssignmentServer.port` (5676), HTTP/1.1 and
//! HTTP/2 (cleartext) on one port:
//!
//! * `POST /v3/discovery:monitoringassignments` (reference: `kuma-api.md`
//!   §7.1, §7.3): the body is a proto-JSON `DiscoveryRequest` (proto or JSON
//!   field names; unknown fields ignored); query `fetch-timeout` (a Go
//!   duration such as `2m0s`, default `monitoringAssignmentServer.defaultFetchTimeout`).
//!   When `version_info` is the current version the request long-polls until
//!   the assignments change or the timeout fires, then answers 200 with the
//!   new ones or 304 with no body. A malformed body or timeout is a 400 with
//!   Kuma's error JSON. Every client (node id) gets the same assignments
//!   (Kuma's `_kuma-default-client` for Mesh metrics backends).
//! * gRPC `kuma.observability.v1.MonitoringAssignmentDiscoveryService/FetchMonitoringAssignments`:
//!   the same, long-polling up to the default fetch timeout; an unchanged
//!   version ends with status `UNKNOWN` "skip fetch: version up to date", as
//!   go-control-plane's fetch does.
//! * `GET /v3/http-sd` (beyond Kuma): the same targets as a Prometheus HTTP
//!   service discovery list, for a Prometheus without `kuma_sd`.
//!
//! It reads the snapshots of [`crate::feed`] and writes nothing.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use kds_proto::observability::v1::monitoring_assignment_discovery_service_server::{
    MonitoringAssignmentDiscoveryService, MonitoringAssignmentDiscoveryServiceServer,
};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::debug;

use crate::assign::ASSIGNMENT_TYPE_URL;
use crate::metrics::{MadsMetrics, Outcome, Transport};
use crate::snapshot::Snapshot;

/// The HTTP path of Kuma's MADS fetch.
pub const FETCH_PATH: &str = "/v3/discovery:monitoringassignments";
/// The HTTP path of the Prometheus HTTP service discovery list.
pub const HTTP_SD_PATH: &str = "/v3/http-sd";

/// What every handler shares.
#[derive(Clone)]
pub struct MadsState {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    default_fetch_timeout: Duration,
    metrics: MadsMetrics,
}

impl MadsState {
    pub fn new(
        snapshots: watch::Receiver<Arc<Snapshot>>,
        default_fetch_timeout: Duration,
        metrics: MadsMetrics,
    ) -> MadsState {
        MadsState {
            snapshots,
            default_fetch_timeout,
            metrics,
        }
    }

    /// The newest snapshot whose version differs from `version`, waiting up
    /// to `timeout` for one; `None` when the version is still current.
    async fn changed_since(&self, version: &str, timeout: Duration) -> Option<Arc<Snapshot>> {
        let mut rx = self.snapshots.clone();
        let current = rx.borrow_and_update().clone();
        if current.version() != version {
            return Some(current);
        }
        if timeout.is_zero() {
            return None;
        }
        let _watching = self.metrics.watching();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {
                    let current = rx.borrow_and_update().clone();
                    if current.version() != version {
                        return Some(current);
                    }
                }
                // Timed out, or the feed stopped (shutting down).
                Ok(Err(_)) | Err(_) => return None,
            }
        }
    }
}

/// The router of the whole port: the HTTP endpoints and the gRPC service.
pub fn router(state: MadsState) -> Router {
    let grpc = tonic::service::Routes::new(MonitoringAssignmentDiscoveryServiceServer::new(
        GrpcMads(state.clone()),
    ))
    .into_axum_router();
    Router::new()
        .route(FETCH_PATH, post(fetch))
        .route(HTTP_SD_PATH, get(http_sd))
        .with_state(state)
        .merge(grpc)
}

/// Serves `router` on `listener` (HTTP/1.1 and cleartext HTTP/2) until
/// `stop` resolves; then open connections (long-polls included) are closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let service = hyper_util::service::TowerToHyperService::new(router);
    let mut connections = JoinSet::new();
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    debug!(error = %e, "MADS: accept failed");
                    continue;
                }
            },
            // Reap finished connections.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        connections.spawn(async move {
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = builder.serve_connection(io, service).await {
                debug!(%peer, error = %e, "MADS: connection ended with an error");
            }
        });
    }
    connections.abort_all();
    Ok(())
}

/// The body of a `DiscoveryRequest` over HTTP (proto-JSON).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FetchBody {
    #[serde(alias = "versionInfo")]
    version_info: String,
    #[serde(alias = "responseNonce")]
    #[allow(dead_code)]
    response_nonce: String,
    #[serde(alias = "typeUrl")]
    #[allow(dead_code)]
    type_url: String,
    #[serde(alias = "resourceNames")]
    #[allow(dead_code)]
    resource_names: Vec<String>,
    node: Option<FetchNode>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FetchNode {
    id: String,
}

#[derive(Debug, Deserialize)]
struct FetchQuery {
    #[serde(rename = "fetch-timeout")]
    fetch_timeout: Option<String>,
}

async fn fetch(
    State(state): State<MadsState>,
    Query(query): Query<FetchQuery>,
    body: Bytes,
) -> Response {
    let request: FetchBody = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            state.metrics.request(Transport::Http, Outcome::BadRequest);
            return bad_request("body", &format!("not a DiscoveryRequest: {e}"));
        }
    };
    let timeout = match query.fetch_timeout.as_deref() {
        None => state.default_fetch_timeout,
        Some(text) => match parse_go_duration(text) {
            Ok(timeout) => timeout,
            Err(reason) => {
                state.metrics.request(Transport::Http, Outcome::BadRequest);
                return bad_request("fetch-timeout", &reason);
            }
        },
    };
    let client = request.node.map(|n| n.id).unwrap_or_default();
    debug!(
        client,
        version = request.version_info,
        ?timeout,
        "MADS fetch"
    );
    match state.changed_since(&request.version_info, timeout).await {
        Some(snapshot) => {
            state.metrics.request(Transport::Http, Outcome::Sent);
            json_response(StatusCode::OK, snapshot.discovery_response_json())
        }
        None => {
            state.metrics.request(Transport::Http, Outcome::NotModified);
            StatusCode::NOT_MODIFIED.into_response()
        }
    }
}

async fn http_sd(State(state): State<MadsState>) -> Response {
    state.metrics.request(Transport::HttpSd, Outcome::Sent);
    let snapshot = state.snapshots.borrow().clone();
    json_response(StatusCode::OK, snapshot.http_sd_json())
}

fn json_response(status: StatusCode, body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Kuma's error body (`type`, `status`, `title`, `detail`,
/// `invalid_parameters`, and kumactl 1.x's `details` and `causes`).
fn bad_request(field: &str, reason: &str) -> Response {
    let title = "Could not process the monitoring assignments request";
    let body = serde_json::json!({
        "type": "/std-errors",
        "status": 400,
        "title": title,
        "detail": format!("{field}: {reason}"),
        "invalid_parameters": [{ "field": field, "reason": reason }],
        "details": title,
        "causes": [{ "field": field, "message": reason }],
    });
    json_response(
        StatusCode::BAD_REQUEST,
        Bytes::from(body.to_string().into_bytes()),
    )
}

/// A Go `time.Duration` string (`2m0s`, `30s`, `1.5h`, `500ms`, `0`):
/// decimal numbers each followed by `ns`, `us`, `µs`, `ms`, `s`, `m` or `h`.
/// Negative durations are refused (a fetch cannot wait less than nothing).
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration such as 30s or 2m0s");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let rest = text.strip_prefix('+').unwrap_or(text);
    if rest.is_empty() || rest.starts_with('-') {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = rest;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if number_len == 0 {
            return Err(bad());
        }
        let number: f64 = rest[..number_len].parse().map_err(|_| bad())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += number * seconds;
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// The gRPC face of the same assignments.
#[derive(Clone)]
struct GrpcMads(MadsState);

#[tonic::async_trait]
impl MonitoringAssignmentDiscoveryService for GrpcMads {
    async fn fetch_monitoring_assignments(
        &self,
        request: tonic::Request<DiscoveryRequest>,
    ) -> Result<tonic::Response<DiscoveryResponse>, tonic::Status> {
        let state = &self.0;
        let request = request.into_inner();
        match state
            .changed_since(&request.version_info, state.default_fetch_timeout)
            .await
        {
            Some(snapshot) => {
                state.metrics.request(Transport::Grpc, Outcome::Sent);
                Ok(tonic::Response::new(DiscoveryResponse {
                    version_info: snapshot.version().to_string(),
                    resources: snapshot.grpc_resources(),
                    type_url: ASSIGNMENT_TYPE_URL.to_string(),
                    nonce: snapshot.version().to_string(),
                    ..Default::default()
                }))
            }
            None => {
                state.metrics.request(Transport::Grpc, Outcome::NotModified);
                Err(tonic::Status::unknown("skip fetch: version up to date"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let ok = |s: &str| parse_go_duration(s).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ok("2m0s"), Duration::from_secs(120));
        assert_eq!(ok("30s"), Duration::from_secs(30));
        assert_eq!(ok("1h2m3s"), Duration::from_secs(3723));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("0"), Duration::ZERO);
        for bad in ["", "2", "-1s", "s", "2x", "1m-2s", "abc"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
