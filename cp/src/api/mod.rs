//! The REST API (`apiServer`, HTTP 5681 / HTTPS 5682), wire-compatible with Kuma's so that
//! the real `kumactl` and Kuma's GUI work against it.
//!
//! Read first: [`routes`] — the one table of every route (method, path, what it does), from
//! which both the axum router ([`router`]) and the OpenAPI document (`GET /openapi.json`,
//! `openapi`) are built, so the two cannot drift. Then `resources` (CRUD on every
//! registry type), [`list`] (paging and filters), `overview` (resource + insight pairs,
//! `/global-insight`, `/mesh-insights`, the empty zone egress lists), `service_insights`
//! (per-service dataplane counts), `meta` (index, `/config`, `/_resources`, `/policies`, ...).
//!
//! Cross-cutting: every failure is an [`ApiError`] rendered as Kuma's error body; request
//! bodies go through [`Json`], whose rejections are `ApiError`s too. [`auth::authenticate`]
//! puts the caller's [`Identity`](crate::auth::Identity) into the request extensions (loopback
//! = admin, else a bearer user token, else anonymous) and refuses writes by non-admins;
//! [`metrics::observe`] records a request counter and a latency histogram per matched route
//! and opens the `api_request{method, matched_path}` span. Bodies are never logged.
//!
//! Mounting (in a binary):
//!
//! ```ignore
//! let metrics = cp::api::ApiMetrics::register(&mut registry);
//! let state = cp::api::ApiState::new(store, authenticator, metrics, settings);
//! // other routers (e.g. `/tokens/*`) get the same auth, limits, metrics and panic guard:
//! let app = cp::api::router_with(state, tokens_router);
//! axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//! // on the HTTPS listener, `app.layer(axum::Extension(cp::api::Https))` makes `next` links https
//! ```

pub mod auth;
mod context;
mod error;
mod json;
pub mod list;
mod locate;
mod meta;
pub mod metrics;
mod openapi;
mod overview;
mod render;
mod resources;
pub mod routes;
mod service_insights;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use futures::FutureExt;
use model::CpMode;
use store::ResourceStore;

use crate::auth::Authenticator;
use crate::config::{Config, Mode};

pub use auth::{Authn, authenticate};
pub use context::Https;
pub use error::{ApiError, InvalidParameter};
pub use json::Json;
pub use metrics::ApiMetrics;
/// Kuma's status of proxies and zones, shared with the GUI.
pub(crate) use overview::{ProxyKind, Status, dataplane_status, insight_online};
pub use routes::{Endpoint, Route};

/// The largest request body accepted; larger ones get 413.
pub const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// What `GET /` tells clients about this control plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerInfo {
    /// Always `Kuma`: kumactl refuses a control plane whose product is anything else.
    pub product: String,
    pub version: String,
    pub hostname: String,
    /// `{hostname}-{4 random hex chars}`, per process.
    pub instance_id: String,
    /// The cluster id shared by every instance (kept in the store by the leader).
    pub cluster_id: String,
    /// The GUI path (`/gui`), or empty when the GUI is not served.
    pub gui: String,
}

impl ServerInfo {
    /// Info for this process: the instance id is derived from `hostname`.
    pub fn new(
        version: impl Into<String>,
        hostname: impl Into<String>,
        cluster_id: impl Into<String>,
        gui: impl Into<String>,
    ) -> Self {
        let hostname = hostname.into();
        let random = uuid::Uuid::new_v4().simple().to_string();
        let instance_id = format!("{hostname}-{}", &random[..4]);
        ServerInfo {
            product: "Kuma".into(),
            version: version.into(),
            hostname,
            instance_id,
            cluster_id: cluster_id.into(),
            gui: gui.into(),
        }
    }

    /// The `gui` value of the index: the GUI path, empty when disabled or on a federated zone.
    pub fn gui_path(config: &Config) -> String {
        if !config.api_server.gui.enabled || cp_mode(config) == CpMode::FederatedZone {
            String::new()
        } else {
            config.api_server.gui.base_path.clone()
        }
    }
}

/// The role the config gives this control plane.
pub fn cp_mode(config: &Config) -> CpMode {
    match config.mode {
        Mode::Global => CpMode::Global,
        Mode::Zone if config.multizone.zone.global_address.is_some() => CpMode::FederatedZone,
        Mode::Zone => CpMode::Standalone,
    }
}

/// The settings of the API, fixed at startup.
#[derive(Clone, Debug)]
pub struct ApiSettings {
    pub mode: CpMode,
    pub info: ServerInfo,
    /// The sanitized config ([`Config::sanitized`]) served by `/config`.
    pub config: serde_json::Value,
    /// `apiServer.readOnly`: every write gets 405.
    pub read_only: bool,
    /// `store.unsafeDelete`: a Mesh may be deleted while dataplanes are in it.
    pub unsafe_delete: bool,
    /// `multizone.zone.name` on a zone CP: the `kuma.io/zone` label of what users write here.
    pub zone_name: Option<String>,
    /// `apiServer.authn.localhostIsAdmin` (Kuma's default true): loopback callers are admins.
    pub localhost_is_admin: bool,
    /// `dnsServer.domain` (`mesh`): the domain of the `addressPort` service insights show.
    pub dns_domain: String,
    /// `dnsServer.serviceVipPort` (80): the port of that `addressPort`.
    pub service_vip_port: u16,
}

impl ApiSettings {
    /// Settings for a CP in `mode` with defaults elsewhere (nothing read-only, no zone name).
    pub fn new(mode: CpMode, info: ServerInfo) -> Self {
        ApiSettings {
            mode,
            info,
            config: serde_json::Value::Object(Default::default()),
            read_only: false,
            unsafe_delete: false,
            zone_name: None,
            localhost_is_admin: true,
            dns_domain: "mesh".into(),
            service_vip_port: 80,
        }
    }

    /// The settings a loaded config gives.
    pub fn from_config(config: &Config, info: ServerInfo) -> Self {
        let mode = cp_mode(config);
        let zone_name = (mode != CpMode::Global && !config.multizone.zone.name.is_empty())
            .then(|| config.multizone.zone.name.clone());
        ApiSettings {
            mode,
            info,
            config: config.sanitized(),
            read_only: config.api_server.read_only,
            unsafe_delete: config.store.unsafe_delete,
            zone_name,
            localhost_is_admin: config.api_server.authn.localhost_is_admin,
            dns_domain: config.dns_server.domain.clone(),
            service_vip_port: config.dns_server.service_vip_port,
        }
    }
}

/// Everything the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn ResourceStore>,
    pub authenticator: Arc<dyn Authenticator>,
    pub metrics: ApiMetrics,
    pub settings: Arc<ApiSettings>,
    pub(crate) rendered: Arc<render::RenderCache>,
}

impl ApiState {
    pub fn new(
        store: Arc<dyn ResourceStore>,
        authenticator: Arc<dyn Authenticator>,
        metrics: ApiMetrics,
        settings: ApiSettings,
    ) -> Self {
        ApiState {
            store,
            authenticator,
            metrics,
            settings: Arc::new(settings),
            rendered: Arc::default(),
        }
    }
}

/// The REST API router: every route of [`routes::routes`] behind authentication, the body
/// limit, metrics, the request span and a panic guard.
pub fn router(state: ApiState) -> Router {
    router_with(state, Router::new())
}

/// [`router`] with `extra` routes (e.g. `/tokens/*`) merged in under the same layers, so they
/// see the caller's `Extension<Identity>`. `extra` must not set a fallback.
pub fn router_with(state: ApiState, extra: Router) -> Router {
    let mut by_path: BTreeMap<String, MethodRouter<ApiState>> = BTreeMap::new();
    for route in routes::routes() {
        let method_router = routes::handler(&route);
        let merged = match by_path.remove(&route.path) {
            Some(existing) => existing.merge(method_router),
            None => method_router,
        };
        by_path.insert(route.path, merged);
    }
    let mut app: Router<ApiState> = Router::new();
    for (path, method_router) in by_path {
        app = app.route(&path, method_router);
    }
    let authn = Authn::new(
        state.authenticator.clone(),
        state.settings.localhost_is_admin,
    );
    let metrics = state.metrics.clone();
    app.fallback(unknown_endpoint)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .merge(extra)
        .layer(middleware::from_fn(catch_panic))
        .layer(middleware::from_fn_with_state(authn, authenticate))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(metrics, metrics::observe))
}

/// Any path no route serves.
async fn unknown_endpoint(method: Method) -> ApiError {
    ApiError::not_found("Unknown endpoint").with_parameters([InvalidParameter::new(
        "path",
        format!("no {method} endpoint at this path; see /openapi.json"),
    )])
}

/// A known path with a method it does not serve.
async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::method_not_allowed(format!("{method} is not supported on this path"))
}

/// Turns a panic in a handler into a 500 instead of a dropped connection.
async fn catch_panic(req: Request, next: Next) -> Response {
    match std::panic::AssertUnwindSafe(next.run(req))
        .catch_unwind()
        .await
    {
        Ok(response) => response,
        Err(_) => ApiError::internal("Internal Server Error", "a request handler panicked")
            .into_response(),
    }
}
