//! The GUI at `apiServer.gui.basePath` (`/gui`) on the API port: the federation (on the
//! global) or the zone (on a zone CP) at a glance, live. Server-side HTML from askama
//! templates (`cp/templates/gui/`, auto-escaped), one stylesheet and one script served from
//! the binary; no JavaScript build step. Pages work without JavaScript; `live.js` only swaps
//! in a fresh `<main>` when the store's revision moves (server-sent events, [`live`]).
//!
//! Read first: `view.rs` (the pure view models), then `pages.rs` (handlers + templates).
//! The GUI is read-only (every route is a GET) and never loads or shows a Secret.

mod data;
pub mod live;
mod pages;
pub mod svg;
pub mod view;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use kds::zone::ZoneLink;
use model::CpMode;
use store::ResourceStore;

pub use live::Live;

/// What the GUI is told at startup.
#[derive(Clone, Debug)]
pub struct GuiSettings {
    /// The path the GUI is served under, without a trailing slash (`/gui`).
    pub base: String,
    pub mode: CpMode,
    /// This zone's name on a zone CP (empty on the global).
    pub zone: String,
    pub version: String,
}

/// The GUI handlers' state. Cheap to clone.
#[derive(Clone)]
pub struct GuiState {
    pub store: Arc<dyn ResourceStore>,
    pub live: Live,
    pub settings: Arc<GuiSettings>,
    /// A federated zone's link to the global.
    pub link: Option<ZoneLink>,
}

const STYLE: &str = include_str!("assets/style.css");
const SCRIPT: &str = include_str!("assets/live.js");

/// The GUI's routes, to merge into the API router (so they share its authentication,
/// metrics and panic guard).
pub fn router(state: GuiState) -> Router {
    let base = state.settings.base.clone();
    let at = |path: &str| format!("{base}{path}");
    Router::new()
        .route(&at(""), get(pages::overview))
        .route(&at("/"), get(pages::overview))
        .route(&at("/zones"), get(pages::zones))
        .route(&at("/zones/{name}"), get(pages::zone))
        .route(&at("/meshes"), get(pages::meshes))
        .route(&at("/meshes/{mesh}"), get(pages::mesh))
        .route(
            &at("/meshes/{mesh}/dataplanes/{name}"),
            get(pages::dataplane),
        )
        .route(
            &at("/meshes/{mesh}/policies/{plural}/{name}"),
            get(pages::policy),
        )
        .route(&at("/services"), get(pages::services))
        .route(&at("/dataplanes"), get(pages::dataplanes))
        .route(&at("/zone-ingresses"), get(pages::ingresses))
        .route(&at("/policies"), get(pages::policies))
        .route(&at("/policies/{plural}"), get(pages::policy_type))
        .route(&at("/events"), get(events))
        .route(&at("/static/style.css"), get(style))
        .route(&at("/static/live.js"), get(script))
        .route(&at("/{*rest}"), get(pages::not_found))
        .with_state(state)
}

async fn events(State(state): State<GuiState>) -> impl IntoResponse {
    state.live.events()
}

async fn style() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        STYLE,
    )
}

async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SCRIPT,
    )
}

#[cfg(test)]
mod tests;
