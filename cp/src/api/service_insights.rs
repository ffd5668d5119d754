//! `ServiceInsight`: per-service dataplane counts of a mesh (`kumactl inspect services`, the
//! GUI's service pages), computed on request from the Dataplanes, DataplaneInsights and
//! ExternalServices in the store.
//!
//! Kuma keeps one ServiceInsight per mesh (`all-services-<mesh>`, a `services` map written by
//! its insight resyncer, `pkg/insights/resyncer.go`) and the API explodes it
//! (`pkg/api-server/service_insight_endpoints.go`): each list item is one service,
//! `{type: "ServiceInsight", mesh, name: <service>, creationTime, modificationTime, status,
//! dataplanes: {total, online, offline}, issuedBackends?, serviceType, addressPort?, zones?}`,
//! sorted by (mesh, name), filtered by `name` (contains) and `type` (service types), paged by
//! `size`/`offset`. We serve the same items without storing anything:
//!
//! - every non-ignored inbound of a sidecar makes its `kuma.io/service` an `internal` service;
//!   a gateway's `kuma.io/service` tag a `gateway_builtin`/`gateway_delegated` one; an
//!   ExternalService's an `external` one (status `not_available`, `addressPort` = its address);
//! - a dataplane counts as online for each of its services when Kuma's proxy status is Online
//!   (its DataplaneInsight has a subscription with `connectTime` and no `disconnectTime`, and
//!   its inbounds are ready); Offline and Partially degraded proxies count as offline, as in
//!   Kuma. Unlike Kuma, a dataplane with two inbounds of one service counts once;
//! - status: `offline` when no dataplane is online, `online` when all are,
//!   `partially_degraded` otherwise;
//! - `addressPort` of internal services is `<service>.<dnsServer.domain>:<dnsServer.serviceVipPort>`;
//! - `zones`: the `kuma.io/zone` tags seen, sorted; `issuedBackends`: CA backend name ->
//!   number of dataplanes whose certificate it issued.
//!
//! creationTime is the mesh's; modificationTime the latest change of the mesh or of anything
//! counted. `GET /meshes/{mesh}/service-insights/{service}` of a service nobody provides is,
//! as in Kuma, 200 with zero dataplanes (and no status); only a missing mesh is a 404.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use model::format::format_time;
use model::mesh_pb::dataplane::networking::gateway::GatewayType;
use model::mesh_pb::dataplane::networking::inbound::State as InboundState;
use model::{Resource, ResourceKey, ResourceType, Spec, labels};
use serde_json::{Map, Value, json};
use store::{ListQuery, ResourceStore, StoreError};
use time::OffsetDateTime;

use super::ApiState;
use super::context::Ctx;
use super::error::{ApiError, InvalidParameter};
use super::json::Json;
use super::list::{ListParams, envelope, next_url};
use super::overview::{Status, dataplane_status};
use super::routes::Listing;

/// `ServiceInsight.Service.Type`, with Kuma's protojson names.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum ServiceType {
    Internal,
    External,
    GatewayDelegated,
    GatewayBuiltin,
}

impl ServiceType {
    const ALL: [ServiceType; 4] = [
        ServiceType::Internal,
        ServiceType::External,
        ServiceType::GatewayDelegated,
        ServiceType::GatewayBuiltin,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            ServiceType::Internal => "internal",
            ServiceType::External => "external",
            ServiceType::GatewayDelegated => "gateway_delegated",
            ServiceType::GatewayBuiltin => "gateway_builtin",
        }
    }

    fn parse(text: &str) -> Option<ServiceType> {
        let text = text.trim().to_ascii_lowercase();
        ServiceType::ALL.into_iter().find(|t| t.name() == text)
    }
}

/// What one service of a mesh adds up to.
#[derive(Debug)]
struct ServiceStat {
    service_type: ServiceType,
    online: u32,
    offline: u32,
    issued_backends: BTreeMap<String, u32>,
    /// External services only; internal ones get theirs when rendered.
    address_port: Option<String>,
    zones: BTreeSet<String>,
}

impl ServiceStat {
    fn new(service_type: ServiceType, address_port: Option<String>) -> Self {
        ServiceStat {
            service_type,
            online: 0,
            offline: 0,
            issued_backends: BTreeMap::new(),
            address_port,
            zones: BTreeSet::new(),
        }
    }

    /// Kuma's `status` of the service, from its type and counts.
    fn status(&self) -> &'static str {
        if self.service_type == ServiceType::External {
            "not_available"
        } else if self.online == 0 {
            "offline"
        } else if self.offline == 0 {
            "online"
        } else {
            "partially_degraded"
        }
    }
}

/// The services of one mesh.
struct MeshServices {
    mesh: String,
    creation_time: OffsetDateTime,
    modification_time: OffsetDateTime,
    services: BTreeMap<String, ServiceStat>,
}

impl MeshServices {
    fn new(mesh: &Resource) -> Self {
        MeshServices {
            mesh: mesh.meta.name.clone(),
            creation_time: mesh.meta.creation_time,
            modification_time: mesh.meta.modification_time,
            services: BTreeMap::new(),
        }
    }

    fn touched(&mut self, resource: &Resource) {
        self.modification_time = self.modification_time.max(resource.meta.modification_time);
    }

    /// The service `name`, created as `service_type` when first seen (the first kind wins,
    /// as in Kuma).
    fn service(&mut self, name: &str, service_type: ServiceType) -> &mut ServiceStat {
        self.services
            .entry(name.to_string())
            .or_insert_with(|| ServiceStat::new(service_type, None))
    }

    fn add_dataplane(&mut self, dp: &Resource, insight: Option<&Resource>) {
        let Spec::Dataplane(spec) = &dp.spec else {
            return;
        };
        let Some(networking) = spec.networking.as_ref() else {
            return;
        };
        self.touched(dp);
        if let Some(insight) = insight {
            self.touched(insight);
        }
        let (_, status, _) = dataplane_status(dp, insight);
        let online = status == Status::Online;
        let backend = match insight.map(|r| &r.spec) {
            Some(Spec::DataplaneInsight(i)) => i
                .m_tls
                .as_ref()
                .map(|m| m.issued_backend.clone())
                .filter(|b| !b.is_empty()),
            _ => None,
        };
        // (service, type, zone) of everything this dataplane provides.
        let mut provided: Vec<(&str, ServiceType, Option<&str>)> = Vec::new();
        if let Some(gateway) = &networking.gateway {
            let kind = if gateway.r#type == GatewayType::Builtin as i32 {
                ServiceType::GatewayBuiltin
            } else {
                ServiceType::GatewayDelegated
            };
            if let (Some(service), zone) = service_and_zone(&gateway.tags) {
                provided.push((service, kind, zone));
            }
        }
        for inbound in &networking.inbound {
            if inbound.state == InboundState::Ignored as i32 {
                continue;
            }
            if let (Some(service), zone) = service_and_zone(&inbound.tags) {
                provided.push((service, ServiceType::Internal, zone));
            }
        }
        let mut counted = BTreeSet::new();
        for (service, kind, zone) in provided {
            if service.is_empty() {
                continue;
            }
            let stat = self.service(service, kind);
            if let Some(zone) = zone.filter(|z| !z.is_empty()) {
                stat.zones.insert(zone.to_string());
            }
            // One dataplane counts once per service, however many inbounds it has for it.
            if !counted.insert(service) {
                continue;
            }
            if online {
                stat.online += 1;
            } else {
                stat.offline += 1;
            }
            if let Some(backend) = &backend {
                *stat.issued_backends.entry(backend.clone()).or_default() += 1;
            }
        }
    }

    fn add_external_service(&mut self, es: &Resource) {
        let Spec::ExternalService(spec) = &es.spec else {
            return;
        };
        let Some(service) = spec
            .tags
            .get(labels::tags::SERVICE)
            .filter(|s| !s.is_empty())
        else {
            return;
        };
        self.touched(es);
        let address = spec
            .networking
            .as_ref()
            .map(|n| n.address.clone())
            .filter(|a| !a.is_empty());
        let stat = self
            .services
            .entry(service.clone())
            .or_insert_with(|| ServiceStat::new(ServiceType::External, address));
        if let Some(zone) = spec.tags.get(labels::tags::ZONE).filter(|z| !z.is_empty()) {
            stat.zones.insert(zone.clone());
        }
    }
}

/// The `kuma.io/service` and `kuma.io/zone` tags of an inbound or gateway.
fn service_and_zone(tags: &HashMap<String, String>) -> (Option<&str>, Option<&str>) {
    (
        tags.get(labels::tags::SERVICE).map(String::as_str),
        tags.get(labels::tags::ZONE).map(String::as_str),
    )
}

/// The services of `mesh` (every mesh when `None`), sorted by mesh name. A mesh that does
/// not exist has none.
async fn compute(
    store: &dyn ResourceStore,
    mesh: Option<&str>,
) -> Result<Vec<MeshServices>, StoreError> {
    let query = |kind| match mesh {
        Some(mesh) => ListQuery::in_mesh(kind, mesh),
        None => ListQuery::all(kind),
    };
    let meshes = match mesh {
        Some(name) => store
            .get_stored(&ResourceKey::global(ResourceType::Mesh, name))
            .await?
            .map(|s| s.resource)
            .into_iter()
            .collect(),
        None => store.list(&ListQuery::all(ResourceType::Mesh)).await?.items,
    };
    let mut by_mesh: BTreeMap<String, MeshServices> = meshes
        .iter()
        .map(|m| (m.meta.name.clone(), MeshServices::new(m)))
        .collect();
    if by_mesh.is_empty() {
        return Ok(Vec::new());
    }
    let insights: HashMap<(String, String), Resource> = store
        .list(&query(ResourceType::DataplaneInsight))
        .await?
        .items
        .into_iter()
        .map(|r| ((r.meta.mesh.clone(), r.meta.name.clone()), r))
        .collect();
    for dp in store.list(&query(ResourceType::Dataplane)).await?.items {
        if let Some(services) = by_mesh.get_mut(&dp.meta.mesh) {
            let insight = insights.get(&(dp.meta.mesh.clone(), dp.meta.name.clone()));
            services.add_dataplane(&dp, insight);
        }
    }
    for es in store
        .list(&query(ResourceType::ExternalService))
        .await?
        .items
    {
        if let Some(services) = by_mesh.get_mut(&es.meta.mesh) {
            services.add_external_service(&es);
        }
    }
    Ok(by_mesh.into_values().collect())
}

/// One exploded item: the service `name` of `mesh` (`None`: nobody provides it).
fn item(state: &ApiState, mesh: &MeshServices, name: &str, stat: Option<&ServiceStat>) -> Value {
    let settings = &state.settings;
    let mut object = Map::new();
    object.insert("type".into(), json!("ServiceInsight"));
    object.insert("mesh".into(), json!(mesh.mesh));
    object.insert("name".into(), json!(name));
    object.insert(
        "creationTime".into(),
        json!(format_time(mesh.creation_time)),
    );
    object.insert(
        "modificationTime".into(),
        json!(format_time(mesh.modification_time)),
    );
    if let Some(stat) = stat {
        object.insert("status".into(), json!(stat.status()));
    }
    let (online, offline) = stat.map_or((0, 0), |s| (s.online, s.offline));
    object.insert(
        "dataplanes".into(),
        json!({ "total": online + offline, "online": online, "offline": offline }),
    );
    if let Some(stat) = stat.filter(|s| !s.issued_backends.is_empty()) {
        object.insert("issuedBackends".into(), json!(stat.issued_backends));
    }
    let service_type = stat.map_or(ServiceType::Internal, |s| s.service_type);
    object.insert("serviceType".into(), json!(service_type.name()));
    let address_port = match service_type {
        ServiceType::Internal => Some(format!(
            "{name}.{}:{}",
            settings.dns_domain, settings.service_vip_port
        )),
        _ => stat.and_then(|s| s.address_port.clone()),
    };
    if let Some(address_port) = address_port {
        object.insert("addressPort".into(), json!(address_port));
    }
    if let Some(stat) = stat.filter(|s| !s.zones.is_empty()) {
        object.insert("zones".into(), json!(stat.zones));
    }
    Value::Object(object)
}

/// The `type` filter: `None` keeps every type; an unknown name is a 400 (Kuma's wording).
fn type_filter(query: &[(String, String)]) -> Result<Option<Vec<ServiceType>>, ApiError> {
    let Some((_, text)) = query.iter().find(|(k, _)| k == "type") else {
        return Ok(None);
    };
    if text.is_empty() {
        return Ok(None);
    }
    text.split(',')
        .map(|name| {
            ServiceType::parse(name).ok_or_else(|| {
                ApiError::bad_request("Bad Request", "bad request: unsupported service type")
                    .with_parameters([InvalidParameter::new(
                        "type",
                        format!(
                            "unsupported service type {:?}; use internal, external, \
                             gateway_delegated or gateway_builtin",
                            name.trim()
                        ),
                    )])
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// `GET /meshes/{mesh}/service-insights`, `GET /service-insights`.
pub(super) async fn list(
    state: ApiState,
    listing: Listing,
    ctx: Ctx,
) -> Result<Json<Value>, ApiError> {
    const TITLE: &str = "Could not retrieve resources";
    let params = ListParams::parse(&ctx.query, TITLE)?;
    let types = type_filter(&ctx.query)?;
    let mesh = (listing == Listing::InMesh).then(|| ctx.param("mesh"));
    let meshes = compute(state.store.as_ref(), mesh)
        .await
        .map_err(|e| ApiError::from_store(TITLE, e))?;
    let name_contains = params.name.as_deref().unwrap_or("");
    let mut items = Vec::new();
    for mesh in &meshes {
        for (name, stat) in &mesh.services {
            let type_ok = types
                .as_ref()
                .is_none_or(|t| t.contains(&stat.service_type));
            if type_ok && name.contains(name_contains) {
                items.push(item(&state, mesh, name, Some(stat)));
            }
        }
    }
    let total = items.len();
    let page: Vec<Value> = items
        .into_iter()
        .skip(params.offset)
        .take(params.size)
        .collect();
    let next = params.offset.saturating_add(params.size);
    let next = next_url(&ctx, (next < total).then_some(next));
    Ok(Json(envelope(total, page, next)))
}

/// `GET /meshes/{mesh}/service-insights/{name}`.
pub(super) async fn get(state: ApiState, ctx: Ctx) -> Result<Json<Value>, ApiError> {
    const TITLE: &str = "Could not retrieve a resource";
    let mesh_name = ctx.param("mesh");
    let meshes = compute(state.store.as_ref(), Some(mesh_name))
        .await
        .map_err(|e| ApiError::from_store(TITLE, e))?;
    let Some(mesh) = meshes.first() else {
        return Err(ApiError::not_found(TITLE));
    };
    let name = ctx.param("name");
    Ok(Json(item(&state, mesh, name, mesh.services.get(name))))
}
