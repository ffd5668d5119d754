//! The one route table. [`routes`] lists every route the API serves; the router
//! ([`super::router`]) and the OpenAPI document (`openapi`) are both built from it.
//!
//! Resource routes follow Kuma's scheme (`pkg/api-server/resource_endpoints.go`): for every
//! registry type with a REST path `P` (and its older spelling, when it has one):
//! global-scoped `GET /P`, `GET|PUT|DELETE /P/{name}`; mesh-scoped `GET /meshes/{mesh}/P`,
//! `GET /P` (across meshes), `GET|PUT|DELETE /meshes/{mesh}/P/{name}`. Types with insights
//! add `_overview` routes and the legacy `+insights` paths older kumactl uses. Computed views
//! with no stored type behind them — mesh insights, service insights, the (always empty) zone
//! egress overviews — have routes of their own.

use axum::extract::State;
use axum::http::Method;
use axum::routing::{MethodRouter, delete, get, put};
use model::{ResourceType, Scope};

use super::ApiState;
use super::context::Ctx;
use super::error::ApiError;
use super::json::Json;
use super::{meta, openapi, overview, resources, service_insights};

/// Which resources a list route covers.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Listing {
    /// `/meshes/{mesh}/P`: one mesh.
    InMesh,
    /// `/P` of a mesh-scoped type: every mesh.
    AllMeshes,
    /// `/P` of a global-scoped type.
    Global,
}

/// A resource type joined with its insight, served as `{type}Overview`.
#[derive(Debug, PartialEq, Eq)]
pub struct Overview {
    pub kind: ResourceType,
    pub insight: ResourceType,
    /// `type` of each item, e.g. `ZoneOverview`.
    pub type_name: &'static str,
    /// Key holding the resource's spec, e.g. `zone`.
    pub field: &'static str,
    /// Key holding the insight's spec, e.g. `zoneInsight`; left out when there is none.
    pub insight_field: &'static str,
    /// Kuma's legacy list path (`zones+insights`) that kumactl 1.x uses.
    pub legacy_path: &'static str,
}

pub static ZONE_OVERVIEW: Overview = Overview {
    kind: ResourceType::Zone,
    insight: ResourceType::ZoneInsight,
    type_name: "ZoneOverview",
    field: "zone",
    insight_field: "zoneInsight",
    legacy_path: "zones+insights",
};

pub static ZONE_INGRESS_OVERVIEW: Overview = Overview {
    kind: ResourceType::ZoneIngress,
    insight: ResourceType::ZoneIngressInsight,
    type_name: "ZoneIngressOverview",
    field: "zoneIngress",
    insight_field: "zoneIngressInsight",
    legacy_path: "zoneingresses+insights",
};

pub static DATAPLANE_OVERVIEW: Overview = Overview {
    kind: ResourceType::Dataplane,
    insight: ResourceType::DataplaneInsight,
    type_name: "DataplaneOverview",
    field: "dataplane",
    insight_field: "dataplaneInsight",
    legacy_path: "dataplanes+insights",
};

/// Every overview the API serves.
pub static OVERVIEWS: [&Overview; 3] =
    [&ZONE_OVERVIEW, &ZONE_INGRESS_OVERVIEW, &DATAPLANE_OVERVIEW];

/// What a route does.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /`: product, version, instance and cluster ids.
    Index,
    /// `GET /who-am-i`: the caller's name and groups.
    WhoAmI,
    /// `GET /config`: the sanitized config.
    Config,
    /// `GET /versions`: the kuma-dp/Envoy compatibility map (Kuma 1.2–1.7).
    Versions,
    /// `GET /_resources`: every type, for `kumactl export`.
    ResourceTypes,
    /// `GET /policies`: the policy types, for the GUI.
    Policies,
    /// `GET /global-insight`: dashboard counts.
    GlobalInsight,
    /// `GET /openapi.json`: this table as OpenAPI 3.0.
    OpenApi,
    /// `GET /mesh-insights`: per-mesh counts, computed (kumactl `inspect meshes`, the GUI).
    MeshInsights,
    /// `GET /mesh-insights/{name}`.
    MeshInsight,
    /// `GET /meshes/{mesh}/service-insights`, `GET /service-insights`: one computed
    /// `ServiceInsight` per service (kumactl `inspect services`, the GUI).
    ServiceInsights(Listing),
    /// `GET /meshes/{mesh}/service-insights/{name}`.
    ServiceInsight,
    /// `GET /zoneegresses/_overview`, `GET /zoneegressoverviews`: always empty, there is no
    /// ZoneEgress type (kumactl `inspect zoneegresses`, the GUI).
    ZoneEgressOverviews,
    List(ResourceType, Listing),
    Get(ResourceType),
    Put(ResourceType),
    Delete(ResourceType),
    OverviewList(&'static Overview, Listing),
    OverviewGet(&'static Overview),
}

/// One route: method, axum path (`/meshes/{mesh}/dataplanes/{name}`) and endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub method: Method,
    pub path: String,
    pub endpoint: Endpoint,
    /// One line for the OpenAPI document.
    pub summary: String,
}

impl Route {
    fn new(
        method: Method,
        path: impl Into<String>,
        endpoint: Endpoint,
        summary: impl Into<String>,
    ) -> Self {
        Route {
            method,
            path: path.into(),
            endpoint,
            summary: summary.into(),
        }
    }
}

/// Every route the API serves, in a stable order.
pub fn routes() -> Vec<Route> {
    let mut out = vec![
        Route::new(
            Method::GET,
            "/",
            Endpoint::Index,
            "Control plane product, version and ids",
        ),
        Route::new(
            Method::GET,
            "/who-am-i",
            Endpoint::WhoAmI,
            "The calling user and its groups",
        ),
        Route::new(
            Method::GET,
            "/config",
            Endpoint::Config,
            "The effective control plane configuration, secrets masked",
        ),
        Route::new(
            Method::GET,
            "/versions",
            Endpoint::Versions,
            "Compatible kuma-dp and Envoy versions",
        ),
        Route::new(
            Method::GET,
            "/_resources",
            Endpoint::ResourceTypes,
            "Every resource type the API serves",
        ),
        Route::new(
            Method::GET,
            "/policies",
            Endpoint::Policies,
            "Every policy type the API serves",
        ),
        Route::new(
            Method::GET,
            "/global-insight",
            Endpoint::GlobalInsight,
            "Counts of meshes, zones, dataplanes, services and policies",
        ),
        Route::new(
            Method::GET,
            "/openapi.json",
            Endpoint::OpenApi,
            "This document",
        ),
        Route::new(
            Method::GET,
            "/mesh-insights",
            Endpoint::MeshInsights,
            "Per-mesh counts of dataplanes, policies, services and versions",
        ),
        Route::new(
            Method::GET,
            "/mesh-insights/{name}",
            Endpoint::MeshInsight,
            "Counts of dataplanes, policies, services and versions of one mesh",
        ),
        Route::new(
            Method::GET,
            "/meshes/{mesh}/service-insights",
            Endpoint::ServiceInsights(Listing::InMesh),
            "Per-service dataplane counts of a mesh",
        ),
        Route::new(
            Method::GET,
            "/service-insights",
            Endpoint::ServiceInsights(Listing::AllMeshes),
            "Per-service dataplane counts of every mesh",
        ),
        Route::new(
            Method::GET,
            "/meshes/{mesh}/service-insights/{name}",
            Endpoint::ServiceInsight,
            "Dataplane counts of one service of a mesh",
        ),
        // No ZoneEgress type exists here, so these lists are always empty (see
        // `overview::zone_egress_overviews`); they exist for kumactl and the GUI.
        Route::new(
            Method::GET,
            "/zoneegresses/_overview",
            Endpoint::ZoneEgressOverviews,
            "List ZoneEgress resources with their insights (always empty: no ZoneEgress type)",
        ),
        Route::new(
            Method::GET,
            "/zoneegressoverviews",
            Endpoint::ZoneEgressOverviews,
            "List ZoneEgress resources with their insights (legacy path; always empty)",
        ),
    ];
    for &kind in ResourceType::ALL {
        let d = kind.descriptor();
        if !d.has_rest {
            continue;
        }
        let plurals = std::iter::once(d.plural).chain(d.alt_plural);
        for plural in plurals {
            match d.scope {
                Scope::Global => {
                    out.push(Route::new(
                        Method::GET,
                        format!("/{plural}"),
                        Endpoint::List(kind, Listing::Global),
                        format!("List {} resources", d.name),
                    ));
                    push_item_routes(&mut out, kind, &format!("/{plural}/{{name}}"));
                }
                Scope::Mesh => {
                    out.push(Route::new(
                        Method::GET,
                        format!("/meshes/{{mesh}}/{plural}"),
                        Endpoint::List(kind, Listing::InMesh),
                        format!("List {} resources of a mesh", d.name),
                    ));
                    out.push(Route::new(
                        Method::GET,
                        format!("/{plural}"),
                        Endpoint::List(kind, Listing::AllMeshes),
                        format!("List {} resources of every mesh", d.name),
                    ));
                    push_item_routes(
                        &mut out,
                        kind,
                        &format!("/meshes/{{mesh}}/{plural}/{{name}}"),
                    );
                }
            }
        }
    }
    for overview in OVERVIEWS {
        push_overview_routes(&mut out, overview);
    }
    out
}

fn push_item_routes(out: &mut Vec<Route>, kind: ResourceType, path: &str) {
    let name = kind.name();
    out.push(Route::new(
        Method::GET,
        path,
        Endpoint::Get(kind),
        format!("Get a {name}"),
    ));
    out.push(Route::new(
        Method::PUT,
        path,
        Endpoint::Put(kind),
        format!("Create or update a {name}"),
    ));
    out.push(Route::new(
        Method::DELETE,
        path,
        Endpoint::Delete(kind),
        format!("Delete a {name}"),
    ));
}

fn push_overview_routes(out: &mut Vec<Route>, overview: &'static Overview) {
    let d = overview.kind.descriptor();
    let list_summary = format!("List {} resources with their insights", d.name);
    let get_summary = format!("Get a {} with its insight", d.name);
    let plurals = std::iter::once(d.plural).chain(d.alt_plural);
    match d.scope {
        Scope::Global => {
            for plural in plurals {
                out.push(Route::new(
                    Method::GET,
                    format!("/{plural}/_overview"),
                    Endpoint::OverviewList(overview, Listing::Global),
                    list_summary.clone(),
                ));
                out.push(Route::new(
                    Method::GET,
                    format!("/{plural}/{{name}}/_overview"),
                    Endpoint::OverviewGet(overview),
                    get_summary.clone(),
                ));
            }
            let legacy = overview.legacy_path;
            out.push(Route::new(
                Method::GET,
                format!("/{legacy}"),
                Endpoint::OverviewList(overview, Listing::Global),
                format!("{list_summary} (legacy path)"),
            ));
            out.push(Route::new(
                Method::GET,
                format!("/{legacy}/{{name}}"),
                Endpoint::OverviewGet(overview),
                format!("{get_summary} (legacy path)"),
            ));
        }
        Scope::Mesh => {
            for plural in plurals {
                out.push(Route::new(
                    Method::GET,
                    format!("/meshes/{{mesh}}/{plural}/_overview"),
                    Endpoint::OverviewList(overview, Listing::InMesh),
                    list_summary.clone(),
                ));
                out.push(Route::new(
                    Method::GET,
                    format!("/{plural}/_overview"),
                    Endpoint::OverviewList(overview, Listing::AllMeshes),
                    format!("{list_summary}, every mesh"),
                ));
                out.push(Route::new(
                    Method::GET,
                    format!("/meshes/{{mesh}}/{plural}/{{name}}/_overview"),
                    Endpoint::OverviewGet(overview),
                    get_summary.clone(),
                ));
            }
            let legacy = overview.legacy_path;
            out.push(Route::new(
                Method::GET,
                format!("/meshes/{{mesh}}/{legacy}"),
                Endpoint::OverviewList(overview, Listing::InMesh),
                format!("{list_summary} (legacy path)"),
            ));
            out.push(Route::new(
                Method::GET,
                format!("/{legacy}"),
                Endpoint::OverviewList(overview, Listing::AllMeshes),
                format!("{list_summary}, every mesh (legacy path)"),
            ));
            out.push(Route::new(
                Method::GET,
                format!("/meshes/{{mesh}}/{legacy}/{{name}}"),
                Endpoint::OverviewGet(overview),
                format!("{get_summary} (legacy path)"),
            ));
        }
    }
}

/// The axum handler of one route.
pub(super) fn handler(route: &Route) -> MethodRouter<ApiState> {
    match route.endpoint {
        Endpoint::Index => get(meta::index),
        Endpoint::WhoAmI => get(meta::who_am_i),
        Endpoint::Config => get(meta::config),
        Endpoint::Versions => get(meta::versions),
        Endpoint::ResourceTypes => get(meta::resource_types),
        Endpoint::Policies => get(meta::policies),
        Endpoint::GlobalInsight => get(overview::global_insight),
        Endpoint::OpenApi => get(openapi::serve),
        Endpoint::MeshInsights => get(overview::mesh_insights),
        Endpoint::MeshInsight => get(overview::mesh_insight_of),
        Endpoint::ServiceInsights(listing) => {
            get(move |State(state): State<ApiState>, ctx: Ctx| {
                service_insights::list(state, listing, ctx)
            })
        }
        Endpoint::ServiceInsight => {
            get(|State(state): State<ApiState>, ctx: Ctx| service_insights::get(state, ctx))
        }
        Endpoint::ZoneEgressOverviews => get(overview::zone_egress_overviews),
        Endpoint::List(kind, listing) => get(move |State(state): State<ApiState>, ctx: Ctx| {
            resources::list(state, kind, listing, ctx)
        }),
        Endpoint::Get(kind) => {
            get(move |State(state): State<ApiState>, ctx: Ctx| resources::get(state, kind, ctx))
        }
        Endpoint::Put(kind) => put(
            move |State(state): State<ApiState>,
                  ctx: Ctx,
                  body: Result<Json<serde_json::Value>, ApiError>| {
                resources::put(state, kind, ctx, body)
            },
        ),
        Endpoint::Delete(kind) => delete(move |State(state): State<ApiState>, ctx: Ctx| {
            resources::delete(state, kind, ctx)
        }),
        Endpoint::OverviewList(ov, listing) => {
            get(move |State(state): State<ApiState>, ctx: Ctx| {
                overview::list(state, ov, listing, ctx)
            })
        }
        Endpoint::OverviewGet(ov) => {
            get(move |State(state): State<ApiState>, ctx: Ctx| overview::get(state, ov, ctx))
        }
    }
}
