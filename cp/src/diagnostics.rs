//! The diagnostics server (`diagnostics.serverPort`, 5680): `/healthy` (the process runs),
//! `/ready` (every component has started; 503 until then) and `/metrics` (Prometheus text
//! of the control plane's own metrics).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;

/// Which components are ready. Components register themselves as not ready at startup and
/// mark themselves ready once serving.
#[derive(Clone, Default)]
pub struct Readiness(Arc<Mutex<BTreeMap<String, bool>>>);

impl Readiness {
    /// Registers a component that is not ready yet.
    pub fn register(&self, component: &str) {
        self.lock().insert(component.to_string(), false);
    }

    pub fn set_ready(&self, component: &str, ready: bool) {
        self.lock().insert(component.to_string(), ready);
    }

    /// Components that are not ready; empty when the process is ready.
    pub fn not_ready(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, ready)| !**ready)
            .map(|(name, _)| name.clone())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, bool>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[derive(Clone)]
struct DiagnosticsState {
    readiness: Readiness,
    metrics: Arc<Mutex<Registry>>,
}

/// The diagnostics router.
pub fn router(readiness: Readiness, metrics: Arc<Mutex<Registry>>) -> Router {
    Router::new()
        .route("/healthy", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .with_state(DiagnosticsState { readiness, metrics })
}

async fn ready(State(state): State<DiagnosticsState>) -> impl IntoResponse {
    let waiting = state.readiness.not_ready();
    if waiting.is_empty() {
        (StatusCode::OK, "ready".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}", waiting.join(", ")),
        )
    }
}

async fn metrics_text(State(state): State<DiagnosticsState>) -> impl IntoResponse {
    let mut text = String::new();
    let encoded = {
        let registry = state
            .metrics
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        prometheus_client::encoding::text::encode(&mut text, &registry)
    };
    match encoded {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "encoding metrics failed").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn status(app: &Router, path: &str) -> (StatusCode, String) {
        let response = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("response");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn ready_only_when_every_component_is() {
        let readiness = Readiness::default();
        readiness.register("api-server");
        readiness.register("store");
        let app = router(readiness.clone(), Arc::new(Mutex::new(Registry::default())));
        assert_eq!(status(&app, "/healthy").await.0, StatusCode::OK);
        let (code, body) = status(&app, "/ready").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "not ready: api-server, store");
        readiness.set_ready("api-server", true);
        readiness.set_ready("store", true);
        assert_eq!(
            status(&app, "/ready").await,
            (StatusCode::OK, "ready".to_string())
        );
    }

    #[tokio::test]
    async fn metrics_are_prometheus_text() {
        let mut registry = Registry::default();
        let counter: prometheus_client::metrics::counter::Counter = Default::default();
        counter.inc();
        registry.register("store_operations", "Store operations", counter);
        let app = router(Readiness::default(), Arc::new(Mutex::new(registry)));
        let (code, body) = status(&app, "/metrics").await;
        assert_eq!(code, StatusCode::OK);
        assert!(body.contains("store_operations_total 1"), "{body}");
    }
}
