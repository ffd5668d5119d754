//! Request metrics and the request span. [`ApiMetrics::register`] adds the families to the
//! registry the diagnostics server renders at `/metrics`; [`observe`] is the middleware that
//! feeds them and opens `api_request{method, matched_path}` around each request:
//!
//! * `api_server_http_requests_total{method, route, status}` (counter);
//! * `api_server_http_request_duration_seconds{method, route}` (histogram).
//!
//! `route` is the matched route template (`/meshes/{mesh}/dataplanes/{name}`), never the raw
//! path, so its values are bounded; requests no route matched count as `unmatched`.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tracing::Instrument;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
}

fn duration_histogram() -> Histogram {
    // 1ms .. ~32s
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// The API's metric families. Cheap to clone (shared inside).
#[derive(Clone, Debug)]
pub struct ApiMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
}

impl ApiMetrics {
    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = ApiMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
        };
        registry.register(
            "api_server_http_requests",
            "Requests served by the REST API, by method, route and status",
            metrics.requests.clone(),
        );
        registry.register(
            "api_server_http_request_duration_seconds",
            "Time to serve a REST API request, by method and route",
            metrics.duration.clone(),
        );
        metrics
    }

    fn record(&self, method: &'static str, route: String, status: u16, seconds: f64) {
        self.duration
            .get_or_create(&RouteLabels {
                method,
                route: route.clone(),
            })
            .observe(seconds);
        self.requests
            .get_or_create(&RequestLabels {
                method,
                route,
                status,
            })
            .inc();
    }
}

/// A bounded label for the method.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The middleware: request span, counter and latency per matched route. Never logs bodies
/// or headers (tokens, secrets).
pub async fn observe(State(metrics): State<ApiMetrics>, req: Request, next: Next) -> Response {
    let method = method_label(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let span = tracing::info_span!("api_request", method, matched_path = %route);
    let start = Instant::now();
    let response = next.run(req).instrument(span.clone()).await;
    let elapsed = start.elapsed();
    let status = response.status().as_u16();
    span.in_scope(|| {
        tracing::debug!(
            status,
            elapsed_ms = elapsed.as_millis() as u64,
            "request served"
        )
    });
    metrics.record(method, route, status, elapsed.as_secs_f64());
    response
}
