//! Resources joined with their insights (`ZoneOverview`, `ZoneIngressOverview`,
//! `DataplaneOverview`, as `pkg/api-server/resource_endpoints.go` serves them; the always
//! empty `ZoneEgressOverview` lists), the dashboard counts of `/global-insight` and the
//! computed `/mesh-insights`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use model::format::format_time;
use model::mesh_pb::dataplane::networking::gateway::GatewayType;
use model::mesh_pb::dataplane::networking::inbound::State as InboundState;
use model::{Resource, ResourceKey, ResourceType, Spec, labels};
use serde_json::{Map, Value, json};
use store::ListQuery;
use time::OffsetDateTime;

use super::ApiState;
use super::context::Ctx;
use super::error::ApiError;
use super::json::Json;
use super::list::{ListParams, envelope, page_envelope};
use super::routes::{Listing, Overview};

/// One overview item: the resource's meta with `type` = the overview type, then the
/// resource's spec and (when there is one) the insight's spec.
fn item(overview: &Overview, resource: &Resource, insight: Option<&Resource>) -> Value {
    let mut object = model::format::meta_json(resource, overview.type_name);
    let mut spec = resource.spec.to_json();
    // An unset `enabled` means enabled; clients (kumactl, the GUI) read the field.
    if let (Spec::Zone(_), Value::Object(fields)) = (&resource.spec, &mut spec) {
        fields.entry("enabled").or_insert(Value::Bool(true));
    }
    object.insert(overview.field.into(), spec);
    if let Some(insight) = insight {
        object.insert(overview.insight_field.into(), insight.spec.to_json());
    }
    Value::Object(object)
}

/// `GET .../_overview`, `GET .../P+insights`.
pub(super) async fn list(
    state: ApiState,
    overview: &'static Overview,
    listing: Listing,
    ctx: Ctx,
) -> Result<Json<Value>, ApiError> {
    const TITLE: &str = "Could not retrieve resources";
    let params = ListParams::parse(&ctx.query, TITLE)?;
    let mesh = (listing == Listing::InMesh).then(|| ctx.param("mesh"));
    let store = state.store.as_ref();
    let page = params
        .fetch(store, overview.kind, mesh)
        .await
        .map_err(|e| ApiError::from_store(TITLE, e))?;
    // Insights are not paged along (nothing says both lists have the same items): join.
    let insights = params
        .fetch_all(store, overview.insight, mesh)
        .await
        .map_err(|e| ApiError::from_store(TITLE, e))?;
    let items = page
        .items
        .iter()
        .map(|r| {
            let key = (r.meta.mesh.clone(), r.meta.name.clone());
            item(overview, r, insights.get(&key))
        })
        .collect();
    Ok(Json(page_envelope(&ctx, &page, items)))
}

/// `GET .../{name}/_overview`, `GET .../P+insights/{name}`.
pub(super) async fn get(
    state: ApiState,
    overview: &'static Overview,
    ctx: Ctx,
) -> Result<Json<Value>, ApiError> {
    const TITLE: &str = "Could not retrieve a resource";
    let key = ResourceKey::new(overview.kind, ctx.param("mesh"), ctx.param("name"));
    let resource = state
        .store
        .get(&key)
        .await
        .map_err(|e| ApiError::from_store(TITLE, e))?;
    let insight_key = ResourceKey::new(overview.insight, key.mesh.clone(), key.name.clone());
    let insight = state
        .store
        .get_stored(&insight_key)
        .await
        .map_err(|e| ApiError::from_store("Could not retrieve insights", e))?;
    Ok(Json(item(
        overview,
        &resource,
        insight.as_ref().map(|s| &s.resource),
    )))
}

/// `GET /zoneegresses/_overview`, `GET /zoneegressoverviews`: always an empty list. The
/// resource model has no ZoneEgress type (nothing can create one, and no zone egress proxy
/// connects to this control plane), so there is never a ZoneEgressOverview to show; the
/// routes exist so that `kumactl inspect zoneegresses` and the GUI get Kuma's empty list
/// instead of "Unknown endpoint". The paging parameters are still checked, as Kuma does.
pub(super) async fn zone_egress_overviews(ctx: Ctx) -> Result<Json<Value>, ApiError> {
    ListParams::parse(&ctx.query, "Could not retrieve resources")?;
    Ok(Json(envelope(0, Vec::new(), None)))
}

/// Whether a proxy or zone is connected: some subscription connected and not disconnected.
fn online<T>(subscriptions: &[T], times: impl Fn(&T) -> (bool, bool)) -> bool {
    subscriptions.iter().any(|s| {
        let (connected, disconnected) = times(s);
        connected && !disconnected
    })
}

/// A proxy is online when its newest subscription (subscriptions are kept most recent last)
/// is connected and not disconnected: an older one left open by a control plane instance
/// that stopped without closing it does not make a disconnected proxy look online.
pub(crate) fn insight_online(insight: Option<&Resource>) -> bool {
    match insight.map(|r| &r.spec) {
        Some(Spec::DataplaneInsight(i)) => online(i.subscriptions.last().as_slice(), |s| {
            (s.connect_time.is_some(), s.disconnect_time.is_some())
        }),
        Some(Spec::ZoneIngressInsight(i)) => online(&i.subscriptions, |s| {
            (s.connect_time.is_some(), s.disconnect_time.is_some())
        }),
        Some(Spec::ZoneInsight(i)) => online(&i.subscriptions, |s| {
            (s.connect_time.is_some(), s.disconnect_time.is_some())
        }),
        _ => false,
    }
}

/// Kuma's proxy status (`dataplane_overview_helpers.go`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Online,
    Offline,
    PartiallyDegraded,
}

/// Counts of one kind of thing by status.
#[derive(Default)]
struct StatusCount {
    online: usize,
    offline: usize,
    degraded: usize,
}

impl StatusCount {
    fn add(&mut self, status: Status) {
        match status {
            Status::Online => self.online += 1,
            Status::Offline => self.offline += 1,
            Status::PartiallyDegraded => self.degraded += 1,
        }
    }

    fn json(&self) -> Value {
        json!({
            "total": self.online + self.offline + self.degraded,
            "online": self.online,
            "offline": self.offline,
            "partiallyDegraded": self.degraded,
        })
    }
}

/// What a dataplane is, for the dashboard.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ProxyKind {
    Standard,
    GatewayBuiltin,
    GatewayDelegated,
}

/// A dataplane's kind, status and services (`kuma.io/service` of its inbounds or gateway).
pub(crate) fn dataplane_status(
    dp: &Resource,
    insight: Option<&Resource>,
) -> (ProxyKind, Status, Vec<String>) {
    let Spec::Dataplane(spec) = &dp.spec else {
        return (ProxyKind::Standard, Status::Offline, Vec::new());
    };
    let connected = insight_online(insight);
    let Some(networking) = spec.networking.as_ref() else {
        return (ProxyKind::Standard, Status::Offline, Vec::new());
    };
    if let Some(gateway) = &networking.gateway {
        let kind = if gateway.r#type == GatewayType::Builtin as i32 {
            ProxyKind::GatewayBuiltin
        } else {
            ProxyKind::GatewayDelegated
        };
        let services = gateway
            .tags
            .get(labels::tags::SERVICE)
            .cloned()
            .into_iter()
            .collect();
        let status = if connected {
            Status::Online
        } else {
            Status::Offline
        };
        return (kind, status, services);
    }
    let services = networking
        .inbound
        .iter()
        .filter_map(|i| i.tags.get(labels::tags::SERVICE).cloned())
        .collect();
    let ready = networking
        .inbound
        .iter()
        .filter(|i| {
            i.health.as_ref().is_none_or(|h| h.ready) && i.state != InboundState::NotReady as i32
        })
        .count();
    let status = if !connected || ready == 0 {
        Status::Offline
    } else if ready < networking.inbound.len() {
        Status::PartiallyDegraded
    } else {
        Status::Online
    };
    (ProxyKind::Standard, status, services)
}

/// `GET /global-insight`: the dashboard counts, shaped as Kuma's OpenAPI `GlobalInsight`.
pub(super) async fn global_insight(
    axum::extract::State(state): axum::extract::State<ApiState>,
) -> Result<Json<Value>, ApiError> {
    const TITLE: &str = "Could not retrieve global insight";
    let store = state.store.as_ref();
    let err = |e| ApiError::from_store(TITLE, e);
    let all = |kind| async move {
        store
            .list(&ListQuery::all(kind))
            .await
            .map(|page| page.items)
    };

    let mut resources = BTreeMap::new();
    let mut policies = 0usize;
    for &kind in ResourceType::ALL {
        let d = kind.descriptor();
        if !d.has_rest {
            continue;
        }
        let query = ListQuery {
            size: Some(1),
            ..ListQuery::all(kind)
        };
        let total = store.list(&query).await.map_err(err)?.total;
        if d.is_policy {
            policies += total;
        }
        resources.insert(d.name, json!({ "total": total }));
    }

    let by_key = |items: Vec<Resource>| -> HashMap<(String, String), Resource> {
        items
            .into_iter()
            .map(|r| ((r.meta.mesh.clone(), r.meta.name.clone()), r))
            .collect()
    };
    let zone_insights = by_key(all(ResourceType::ZoneInsight).await.map_err(err)?);
    let mut zones = StatusCount::default();
    for zone in all(ResourceType::Zone).await.map_err(err)? {
        let enabled = match &zone.spec {
            Spec::Zone(z) => z.enabled.as_ref().is_none_or(|e| e.value),
            _ => true,
        };
        let connected =
            insight_online(zone_insights.get(&(zone.meta.mesh.clone(), zone.meta.name.clone())));
        zones.add(if enabled && connected {
            Status::Online
        } else {
            Status::Offline
        });
    }
    let ingress_insights = by_key(all(ResourceType::ZoneIngressInsight).await.map_err(err)?);
    let mut ingresses = StatusCount::default();
    for ingress in all(ResourceType::ZoneIngress).await.map_err(err)? {
        let key = (ingress.meta.mesh.clone(), ingress.meta.name.clone());
        ingresses.add(if insight_online(ingress_insights.get(&key)) {
            Status::Online
        } else {
            Status::Offline
        });
    }

    let dp_insights = by_key(all(ResourceType::DataplaneInsight).await.map_err(err)?);
    let mut proxies: BTreeMap<ProxyKind, StatusCount> = BTreeMap::new();
    // (kind, mesh, service) → statuses of its proxies.
    let mut services: BTreeMap<(ProxyKind, String, String), Vec<Status>> = BTreeMap::new();
    for dp in all(ResourceType::Dataplane).await.map_err(err)? {
        let key = (dp.meta.mesh.clone(), dp.meta.name.clone());
        let (kind, status, names) = dataplane_status(&dp, dp_insights.get(&key));
        proxies.entry(kind).or_default().add(status);
        for name in names.into_iter().collect::<BTreeSet<_>>() {
            services
                .entry((kind, dp.meta.mesh.clone(), name))
                .or_default()
                .push(status);
        }
    }
    let mut service_counts: BTreeMap<ProxyKind, StatusCount> = BTreeMap::new();
    for ((kind, _, _), statuses) in &services {
        let online = statuses.iter().filter(|s| **s == Status::Online).count();
        let status = if online == statuses.len() {
            Status::Online
        } else if statuses.iter().all(|s| *s == Status::Offline) {
            Status::Offline
        } else {
            Status::PartiallyDegraded
        };
        service_counts.entry(*kind).or_default().add(status);
    }
    let count_json = |map: &BTreeMap<ProxyKind, StatusCount>, kind| {
        map.get(&kind)
            .map(StatusCount::json)
            .unwrap_or_else(|| StatusCount::default().json())
    };
    let external = all(ResourceType::ExternalService).await.map_err(err)?.len();
    let meshes = resources
        .get(ResourceType::Mesh.name())
        .and_then(|v| v.get("total"))
        .cloned()
        .unwrap_or(json!(0));
    Ok(Json(json!({
        "createdAt": format_time(OffsetDateTime::now_utc()),
        "services": {
            "total": services.len() + external,
            "internal": count_json(&service_counts, ProxyKind::Standard),
            "external": { "total": external },
            "gatewayBuiltin": count_json(&service_counts, ProxyKind::GatewayBuiltin),
            "gatewayDelegated": count_json(&service_counts, ProxyKind::GatewayDelegated),
        },
        "zones": {
            "controlPlanes": zones.json(),
            "zoneIngresses": ingresses.json(),
            "zoneEgresses": StatusCount::default().json(),
        },
        "dataplanes": {
            "standard": count_json(&proxies, ProxyKind::Standard),
            "gatewayBuiltin": count_json(&proxies, ProxyKind::GatewayBuiltin),
            "gatewayDelegated": count_json(&proxies, ProxyKind::GatewayDelegated),
        },
        "policies": { "total": policies },
        "meshes": { "total": meshes },
        "resources": resources,
    })))
}

/// The subscription of an insight whose version and mTLS facts are current: the last one.
fn dataplane_facts(
    insight: Option<&Resource>,
) -> (Option<String>, Option<String>, Option<String>, Vec<String>) {
    let Some(Spec::DataplaneInsight(i)) = insight.map(|r| &r.spec) else {
        return (None, None, None, Vec::new());
    };
    let version = i.subscriptions.last().and_then(|s| s.version.as_ref());
    let kuma_dp = version
        .and_then(|v| v.kuma_dp.as_ref())
        .map(|v| v.version.clone())
        .filter(|v| !v.is_empty());
    let envoy = version
        .and_then(|v| v.envoy.as_ref())
        .map(|v| v.version.clone())
        .filter(|v| !v.is_empty());
    let issued = i
        .m_tls
        .as_ref()
        .map(|m| m.issued_backend.clone())
        .filter(|b| !b.is_empty());
    let supported = i
        .m_tls
        .as_ref()
        .map(|m| m.supported_backends.clone())
        .unwrap_or_default();
    (kuma_dp, envoy, issued, supported)
}

/// One `MeshInsight` (`api/mesh/v1alpha1/mesh_insight.proto`), computed from the store.
async fn mesh_insight(state: &ApiState, mesh: &Resource) -> Result<Value, store::StoreError> {
    let store = state.store.as_ref();
    let name = mesh.meta.name.as_str();
    let in_mesh = |kind| async move {
        store
            .list(&ListQuery::in_mesh(kind, name))
            .await
            .map(|page| page.items)
    };
    let insights: HashMap<String, Resource> = in_mesh(ResourceType::DataplaneInsight)
        .await?
        .into_iter()
        .map(|r| (r.meta.name.clone(), r))
        .collect();
    let mut dataplanes = StatusCount::default();
    let mut by_type: BTreeMap<&str, StatusCount> = BTreeMap::new();
    let mut kuma_dp: BTreeMap<String, StatusCount> = BTreeMap::new();
    let mut envoy: BTreeMap<String, StatusCount> = BTreeMap::new();
    let mut issued: BTreeMap<String, StatusCount> = BTreeMap::new();
    let mut supported: BTreeMap<String, StatusCount> = BTreeMap::new();
    let mut services = BTreeSet::new();
    for dp in in_mesh(ResourceType::Dataplane).await? {
        let insight = insights.get(&dp.meta.name);
        let (kind, status, names) = dataplane_status(&dp, insight);
        dataplanes.add(status);
        let kind_name = match kind {
            ProxyKind::Standard => "standard",
            ProxyKind::GatewayBuiltin => "gatewayBuiltin",
            ProxyKind::GatewayDelegated => "gatewayDelegated",
        };
        by_type.entry(kind_name).or_default().add(status);
        if kind != ProxyKind::Standard {
            by_type.entry("gateway").or_default().add(status);
        } else {
            services.extend(names);
        }
        let (dp_version, envoy_version, issued_backend, supported_backends) =
            dataplane_facts(insight);
        let unknown = || "unknown".to_string();
        kuma_dp
            .entry(dp_version.unwrap_or_else(unknown))
            .or_default()
            .add(status);
        envoy
            .entry(envoy_version.unwrap_or_else(unknown))
            .or_default()
            .add(status);
        if let Some(backend) = issued_backend {
            issued.entry(backend).or_default().add(status);
        }
        for backend in supported_backends {
            supported.entry(backend).or_default().add(status);
        }
    }
    let counts = |map: &BTreeMap<String, StatusCount>| -> Map<String, Value> {
        map.iter().map(|(k, v)| (k.clone(), v.json())).collect()
    };
    let mut policies = Map::new();
    let mut resources = Map::new();
    for &kind in ResourceType::ALL {
        let d = kind.descriptor();
        if !d.has_rest || !kind.is_mesh_scoped() {
            continue;
        }
        let query = ListQuery {
            size: Some(1),
            ..ListQuery::in_mesh(kind, name)
        };
        let total = store.list(&query).await?.total;
        if d.is_policy {
            policies.insert(d.name.into(), json!({ "total": total }));
        }
        resources.insert(d.name.into(), json!({ "total": total }));
    }
    let external = resources
        .get(ResourceType::ExternalService.name())
        .and_then(|v| v["total"].as_u64())
        .unwrap_or(0) as usize;
    let mut by_type_json = Map::new();
    for kind in ["standard", "gateway", "gatewayBuiltin", "gatewayDelegated"] {
        let count = by_type
            .get(kind)
            .map(StatusCount::json)
            .unwrap_or_else(|| StatusCount::default().json());
        by_type_json.insert(kind.into(), count);
    }
    let now = format_time(OffsetDateTime::now_utc());
    Ok(json!({
        "type": "MeshInsight",
        "name": name,
        "creationTime": format_time(mesh.meta.creation_time),
        "modificationTime": now,
        "lastSync": now,
        "dataplanes": dataplanes.json(),
        "policies": policies,
        "dpVersions": { "kumaDp": counts(&kuma_dp), "envoy": counts(&envoy) },
        "mTLS": { "issuedBackends": counts(&issued), "supportedBackends": counts(&supported) },
        "services": { "total": services.len() + external, "internal": services.len(), "external": external },
        "dataplanesByType": by_type_json,
        "resources": resources,
    }))
}

/// `GET /mesh-insights`: one computed `MeshInsight` per mesh (kumactl `inspect meshes`).
pub(super) async fn mesh_insights(
    axum::extract::State(state): axum::extract::State<ApiState>,
    ctx: Ctx,
) -> Result<Json<Value>, ApiError> {
    const TITLE: &str = "Could not retrieve resources";
    let params = ListParams::parse(&ctx.query, TITLE)?;
    let page = params
        .fetch(state.store.as_ref(), ResourceType::Mesh, None)
        .await
        .map_err(|e| ApiError::from_store(TITLE, e))?;
    let mut items = Vec::with_capacity(page.items.len());
    for mesh in &page.items {
        items.push(
            mesh_insight(&state, mesh)
                .await
                .map_err(|e| ApiError::from_store(TITLE, e))?,
        );
    }
    Ok(Json(page_envelope(&ctx, &page, items)))
}

/// `GET /mesh-insights/{name}`.
pub(super) async fn mesh_insight_of(
    axum::extract::State(state): axum::extract::State<ApiState>,
    ctx: Ctx,
) -> Result<Json<Value>, ApiError> {
    const TITLE: &str = "Could not retrieve a resource";
    let mesh = state
        .store
        .get(&ResourceKey::global(ResourceType::Mesh, ctx.param("name")))
        .await
        .map_err(|e| ApiError::from_store(TITLE, e))?;
    mesh_insight(&state, &mesh)
        .await
        .map(Json)
        .map_err(|e| ApiError::from_store(TITLE, e))
}
