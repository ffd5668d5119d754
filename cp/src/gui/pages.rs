//! The page handlers: each loads an [`Inventory`], builds its view with [`view`] and renders
//! an askama template (`cp/templates/gui/`, HTML auto-escaped). Errors are HTML pages too.

use std::time::SystemTime;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use model::{CpMode, ResourceKey, ResourceType};

use super::GuiState;
use super::data::Inventory;
use super::svg::{self, Chart, Topology};
use super::view::{
    self, CrossZonePath, DataplaneDetail, DataplaneFilter, DataplaneRow, Digest, Health,
    IngressRow, LagView, MeshRow, PolicyItem, PolicyType, ServiceRow, ZoneDetail, ZoneRow,
};

/// What every page's frame shows.
pub struct Frame {
    pub base: String,
    pub title: String,
    pub active: &'static str,
    pub role: String,
    pub version: String,
    pub revision: u64,
    pub global: bool,
}

impl GuiState {
    fn frame(&self, title: impl Into<String>, active: &'static str) -> Frame {
        let s = &self.settings;
        let role = match s.mode {
            CpMode::Global => "Global control plane".to_string(),
            CpMode::FederatedZone => format!("Zone control plane · {} (federated)", s.zone),
            CpMode::Standalone => format!("Zone control plane · {} (standalone)", s.zone),
        };
        Frame {
            base: s.base.clone(),
            title: title.into(),
            active,
            role,
            version: s.version.clone(),
            revision: self.live.revision(),
            global: s.mode == CpMode::Global,
        }
    }

    /// This CP's zone name for resources without a zone label (empty on the global).
    fn local(&self) -> &str {
        if self.settings.mode == CpMode::Global {
            ""
        } else {
            &self.settings.zone
        }
    }

    async fn inventory(&self, extra: &[ResourceType]) -> Result<Inventory, PageError> {
        let mut kinds = vec![
            ResourceType::Mesh,
            ResourceType::Zone,
            ResourceType::ZoneInsight,
            ResourceType::ZoneIngress,
            ResourceType::ZoneIngressInsight,
            ResourceType::Dataplane,
            ResourceType::DataplaneInsight,
        ];
        kinds.extend_from_slice(extra);
        Inventory::load(self.store.as_ref(), &kinds)
            .await
            .map_err(|e| PageError::internal(self, e))
    }

    /// The zones the overview and topology show: every Zone on the global; on a zone, this
    /// zone (with its link's lag) and the other zones its ingresses list reveal.
    fn zone_rows(&self, inv: &Inventory, digest: &Digest, now: SystemTime) -> Vec<ZoneRow> {
        if self.settings.mode == CpMode::Global {
            return view::zones(inv, &digest.dataplanes, now);
        }
        let local = self.local().to_string();
        let dataplanes = &digest.dataplanes;
        let ingresses = &digest.ingresses;
        let link = self.link.as_ref().map(|l| l.state());
        let mut rows = vec![ZoneRow {
            name: local.clone(),
            health: Health::Online,
            enabled: true,
            version: self.settings.version.clone(),
            global_to_zone: link
                .as_ref()
                .and_then(|l| l.global_to_zone.as_ref())
                .map(|l| LagView {
                    seconds: l.seconds,
                    revisions: l.revisions,
                }),
            zone_to_global: link.as_ref().map(|l| LagView {
                seconds: l.zone_to_global.seconds,
                revisions: l.zone_to_global.revisions,
            }),
            dataplanes_online: dataplanes
                .iter()
                .filter(|d| d.zone == local && d.health == Health::Online)
                .count(),
            dataplanes_total: dataplanes.iter().filter(|d| d.zone == local).count(),
            ingresses: ingresses.iter().filter(|i| i.zone == local).count(),
            rejections: 0,
            last_seen: "-".into(),
        }];
        let others: std::collections::BTreeSet<&str> = ingresses
            .iter()
            .map(|i| i.zone.as_str())
            .filter(|z| *z != local)
            .collect();
        for zone in others {
            rows.push(ZoneRow {
                ingresses: ingresses.iter().filter(|i| i.zone == zone).count(),
                ..ZoneRow::unknown(zone)
            });
        }
        rows
    }

    fn topology(&self, inv: &Inventory, digest: &Digest, zones: &[ZoneRow]) -> Topology {
        let ingresses = &digest.ingresses;
        let global = self.settings.mode == CpMode::Global;
        let hub = match self.settings.mode {
            CpMode::Global => Some((
                "global".to_string(),
                Health::Online,
                format!("{} zones", zones.len()),
            )),
            CpMode::FederatedZone => {
                let state = self.link.as_ref().map(|l| l.state()).unwrap_or_default();
                Some((
                    "global".to_string(),
                    if state.connected {
                        Health::Online
                    } else {
                        Health::Offline
                    },
                    if state.connected {
                        "KDS connected".to_string()
                    } else {
                        "KDS disconnected".to_string()
                    },
                ))
            }
            CpMode::Standalone => None,
        };
        let paths = view::cross_zone_paths(inv, self.local(), digest);
        svg::topology(hub, zones, ingresses, &paths, &self.settings.base, global)
    }
}

/// A page that could not be rendered: 404 or 500, as HTML.
pub struct PageError {
    status: StatusCode,
    page: ErrorPage,
}

#[derive(Template)]
#[template(path = "gui/error.html")]
struct ErrorPage {
    frame: Frame,
    message: String,
}

impl PageError {
    fn not_found(state: &GuiState, what: String) -> PageError {
        PageError {
            status: StatusCode::NOT_FOUND,
            page: ErrorPage {
                frame: state.frame("Not found", ""),
                message: what,
            },
        }
    }

    fn bad_request(state: &GuiState, what: String) -> PageError {
        PageError {
            status: StatusCode::BAD_REQUEST,
            page: ErrorPage {
                frame: state.frame("Bad request", ""),
                message: what,
            },
        }
    }

    fn internal(state: &GuiState, error: impl std::fmt::Display) -> PageError {
        tracing::warn!(%error, "a GUI page failed");
        PageError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            page: ErrorPage {
                frame: state.frame("Error", ""),
                message: format!("The control plane could not read its store: {error}"),
            },
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self.page.render() {
            Ok(html) => (
                self.status,
                [("content-type", "text/html; charset=utf-8")],
                html,
            )
                .into_response(),
            Err(_) => self.status.into_response(),
        }
    }
}

type PageResult<T> = Result<T, PageError>;

// ---------------------------------------------------------------------------------------

/// A count shown on the overview.
pub struct Count {
    pub label: &'static str,
    pub value: String,
    pub href: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "gui/overview.html")]
pub struct OverviewPage {
    frame: Frame,
    topology: Topology,
    counts: Vec<Count>,
    zones: Vec<ZoneRow>,
    paths: Vec<CrossZonePath>,
    policies: Vec<(String, &'static str, usize)>,
}

pub async fn overview(State(state): State<GuiState>) -> PageResult<OverviewPage> {
    let now = SystemTime::now();
    let inv = state.inventory(&view::policy_kinds()).await?;
    let local = state.local().to_string();
    let digest = Digest::new(&inv, &local);
    let zones = state.zone_rows(&inv, &digest, now);
    let dataplanes = &digest.dataplanes;
    let services = &digest.services;
    let ingresses = &digest.ingresses;
    let policies = view::policies(&inv);
    let base = &state.settings.base;
    let mut counts = vec![
        Count {
            label: "Meshes",
            value: inv.all(ResourceType::Mesh).len().to_string(),
            href: format!("{base}/meshes"),
        },
        Count {
            label: "Services",
            value: services.len().to_string(),
            href: format!("{base}/services"),
        },
        Count {
            label: "Dataplanes online",
            value: format!(
                "{} / {}",
                dataplanes
                    .iter()
                    .filter(|d| d.health == Health::Online)
                    .count(),
                dataplanes.len()
            ),
            href: format!("{base}/dataplanes"),
        },
        Count {
            label: "Zone ingresses online",
            value: format!(
                "{} / {}",
                ingresses
                    .iter()
                    .filter(|i| i.health == Health::Online)
                    .count(),
                ingresses.len()
            ),
            href: format!("{base}/zone-ingresses"),
        },
        Count {
            label: "Policies",
            value: policies
                .iter()
                .map(|p| p.items.len())
                .sum::<usize>()
                .to_string(),
            href: format!("{base}/policies"),
        },
    ];
    if state.settings.mode == CpMode::Global {
        counts.insert(
            0,
            Count {
                label: "Zones online",
                value: format!(
                    "{} / {}",
                    zones.iter().filter(|z| z.health == Health::Online).count(),
                    zones.len()
                ),
                href: format!("{base}/zones"),
            },
        );
    }
    let topology = state.topology(&inv, &digest, &zones);
    Ok(OverviewPage {
        frame: state.frame("Overview", "overview"),
        topology,
        counts,
        zones,
        paths: view::cross_zone_paths(&inv, &local, &digest),
        policies: policies
            .iter()
            .map(|p| (p.name.to_string(), p.plural, p.items.len()))
            .collect(),
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "gui/zones.html")]
pub struct ZonesPage {
    frame: Frame,
    zones: Vec<ZoneRow>,
    link: Option<LinkView>,
}

/// A zone's link to the global, as the zone sees it.
pub struct LinkView {
    pub health: Health,
    pub connects: u64,
    pub last_error: String,
    pub global_revision: u64,
    pub global_to_zone: String,
    pub zone_to_global: String,
}

pub async fn zones(State(state): State<GuiState>) -> PageResult<ZonesPage> {
    let now = SystemTime::now();
    let inv = state.inventory(&[]).await?;
    let digest = Digest::new(&inv, state.local());
    let zones = state.zone_rows(&inv, &digest, now);
    let link = state.link.as_ref().map(|l| {
        let s = l.state();
        LinkView {
            health: if s.connected {
                Health::Online
            } else {
                Health::Offline
            },
            connects: s.connects,
            last_error: s.last_error.unwrap_or_else(|| "-".into()),
            global_revision: s.global_revision,
            global_to_zone: s
                .global_to_zone
                .map(|l| {
                    LagView {
                        seconds: l.seconds,
                        revisions: l.revisions,
                    }
                    .text()
                })
                .unwrap_or_else(|| "-".into()),
            zone_to_global: LagView {
                seconds: s.zone_to_global.seconds,
                revisions: s.zone_to_global.revisions,
            }
            .text(),
        }
    });
    Ok(ZonesPage {
        frame: state.frame("Zones", "zones"),
        zones,
        link,
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "gui/zone.html")]
pub struct ZonePage {
    frame: Frame,
    zone: ZoneDetail,
    charts: Vec<Chart>,
    ingresses: Vec<IngressRow>,
}

pub async fn zone(State(state): State<GuiState>, Path(name): Path<String>) -> PageResult<ZonePage> {
    let now = SystemTime::now();
    let inv = state.inventory(&[]).await?;
    let Some(zone) = view::zone_detail(&inv, &name, now) else {
        return Err(PageError::not_found(
            &state,
            format!("There is no zone {name:?}."),
        ));
    };
    let history = state.live.history(&name);
    let ingresses = view::ingresses(&inv, "")
        .into_iter()
        .filter(|i| i.zone == name)
        .collect();
    Ok(ZonePage {
        frame: state.frame(format!("Zone {name}"), "zones"),
        zone,
        charts: vec![
            svg::lag_chart(&history, false),
            svg::lag_chart(&history, true),
        ],
        ingresses,
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "gui/meshes.html")]
pub struct MeshesPage {
    frame: Frame,
    meshes: Vec<MeshRow>,
}

pub async fn meshes(State(state): State<GuiState>) -> PageResult<MeshesPage> {
    let inv = state.inventory(&view::policy_kinds()).await?;
    Ok(MeshesPage {
        frame: state.frame("Meshes", "meshes"),
        meshes: view::meshes(&inv, &Digest::new(&inv, state.local())),
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "gui/mesh.html")]
pub struct MeshPage {
    frame: Frame,
    mesh: MeshRow,
    services: Vec<ServiceRow>,
    policies: Vec<(String, &'static str, Vec<PolicyItem>)>,
    yaml: String,
}

pub async fn mesh(State(state): State<GuiState>, Path(name): Path<String>) -> PageResult<MeshPage> {
    let inv = state.inventory(&view::policy_kinds()).await?;
    let local = state.local().to_string();
    let digest = Digest::new(&inv, &local);
    let Some(mesh) = view::meshes(&inv, &digest)
        .into_iter()
        .find(|m| m.name == name)
    else {
        return Err(PageError::not_found(
            &state,
            format!("There is no mesh {name:?}."),
        ));
    };
    let resource = inv
        .all(ResourceType::Mesh)
        .iter()
        .find(|m| m.meta.name == name)
        .map(view::redacted_yaml)
        .unwrap_or_default();
    Ok(MeshPage {
        frame: state.frame(format!("Mesh {name}"), "meshes"),
        services: digest
            .services
            .into_iter()
            .filter(|s| s.mesh == name)
            .collect(),
        policies: view::policies(&inv)
            .into_iter()
            .map(|p: PolicyType| {
                let items = p.items.into_iter().filter(|i| i.mesh == name).collect();
                (p.name.to_string(), p.plural, items)
            })
            .collect(),
        mesh,
        yaml: resource,
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "gui/services.html")]
pub struct ServicesPage {
    frame: Frame,
    services: Vec<ServiceRow>,
}

pub async fn services(State(state): State<GuiState>) -> PageResult<ServicesPage> {
    let inv = state.inventory(&[]).await?;
    Ok(ServicesPage {
        frame: state.frame("Services", "services"),
        services: view::services(&inv, state.local()),
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "gui/dataplanes.html")]
pub struct DataplanesPage {
    frame: Frame,
    filter: DataplaneFilter,
    rows: Vec<DataplaneRow>,
    total: usize,
    matching: usize,
    /// `first–last` of the rows shown (1-based), or empty.
    shown: String,
    previous: Option<String>,
    next: Option<String>,
    meshes: Vec<String>,
    zones: Vec<String>,
    services: Vec<String>,
    statuses: Vec<(&'static str, &'static str)>,
}

pub async fn dataplanes(
    State(state): State<GuiState>,
    filter: Result<Query<DataplaneFilter>, QueryRejection>,
) -> PageResult<DataplanesPage> {
    // A query that does not parse (`offset=abc`, a repeated key) is refused with the reason,
    // which names the parameter.
    let filter = match filter {
        Ok(Query(filter)) => filter,
        Err(rejection) => {
            return Err(PageError::bad_request(
                &state,
                format!(
                    "The dataplane filter is not valid: {}. Parameters: mesh, zone, service, status (online, degraded, offline), offset (a number).",
                    rejection.body_text()
                ),
            ));
        }
    };
    let inv = state.inventory(&[]).await?;
    let all = view::dataplanes(&inv, state.local());
    let sorted = |items: Vec<String>| -> Vec<String> {
        items
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    let meshes = sorted(all.iter().map(|d| d.mesh.clone()).collect());
    let zones = sorted(all.iter().map(|d| d.zone.clone()).collect());
    let services = sorted(all.iter().flat_map(|d| d.services.clone()).collect());
    let total = all.len();
    let matching: Vec<DataplaneRow> = all.into_iter().filter(|d| filter.matches(d)).collect();
    let count = matching.len();
    let offset = if filter.offset < count {
        filter.offset
    } else {
        0
    };
    let rows: Vec<DataplaneRow> = matching
        .into_iter()
        .skip(offset)
        .take(view::DATAPLANES_PER_PAGE)
        .collect();
    let link = |at: usize| format!("{}/dataplanes?{}", state.settings.base, filter.query_at(at));
    let previous = (offset > 0).then(|| link(offset.saturating_sub(view::DATAPLANES_PER_PAGE)));
    let next = (offset + rows.len() < count).then(|| link(offset + rows.len()));
    let shown = if rows.is_empty() {
        String::new()
    } else {
        format!("{}–{}", offset + 1, offset + rows.len())
    };
    Ok(DataplanesPage {
        frame: state.frame("Dataplanes", "dataplanes"),
        filter,
        rows,
        total,
        matching: count,
        shown,
        previous,
        next,
        meshes,
        zones,
        services,
        statuses: [Health::Online, Health::Degraded, Health::Offline]
            .iter()
            .map(|h| (h.class(), h.label()))
            .collect(),
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "gui/dataplane.html")]
pub struct DataplanePage {
    frame: Frame,
    dp: DataplaneDetail,
    yaml: String,
}

pub async fn dataplane(
    State(state): State<GuiState>,
    Path((mesh, name)): Path<(String, String)>,
) -> PageResult<DataplanePage> {
    let inv = state.inventory(&[]).await?;
    let Some(dp) = view::dataplane_detail(&inv, state.local(), &mesh, &name, SystemTime::now())
    else {
        return Err(PageError::not_found(
            &state,
            format!("There is no dataplane {name:?} in mesh {mesh:?}."),
        ));
    };
    let yaml = inv
        .all(ResourceType::Dataplane)
        .iter()
        .find(|r| r.meta.mesh == mesh && r.meta.name == name)
        .map(view::redacted_yaml)
        .unwrap_or_default();
    Ok(DataplanePage {
        frame: state.frame(format!("Dataplane {}", dp.row.display), "dataplanes"),
        dp,
        yaml,
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "gui/ingresses.html")]
pub struct IngressesPage {
    frame: Frame,
    ingresses: Vec<IngressRow>,
}

pub async fn ingresses(State(state): State<GuiState>) -> PageResult<IngressesPage> {
    let inv = state.inventory(&[]).await?;
    Ok(IngressesPage {
        frame: state.frame("Zone ingresses", "zone-ingresses"),
        ingresses: view::ingresses(&inv, state.local()),
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "gui/policies.html")]
pub struct PoliciesPage {
    frame: Frame,
    types: Vec<PolicyType>,
    selected: Option<PolicyType>,
}

pub async fn policies(State(state): State<GuiState>) -> PageResult<PoliciesPage> {
    policies_page(state, None).await
}

pub async fn policy_type(
    State(state): State<GuiState>,
    Path(plural): Path<String>,
) -> PageResult<PoliciesPage> {
    policies_page(state, Some(plural)).await
}

async fn policies_page(state: GuiState, plural: Option<String>) -> PageResult<PoliciesPage> {
    let inv = Inventory::load(state.store.as_ref(), &view::policy_kinds())
        .await
        .map_err(|e| PageError::internal(&state, e))?;
    let types = view::policies(&inv);
    let selected = match &plural {
        None => None,
        Some(p) => match types.iter().find(|t| t.plural == p) {
            Some(t) => Some(t.clone()),
            None => {
                return Err(PageError::not_found(
                    &state,
                    format!("There is no policy type {p:?}."),
                ));
            }
        },
    };
    let title = selected
        .as_ref()
        .map(|t| t.name.to_string())
        .unwrap_or_else(|| "Policies".into());
    Ok(PoliciesPage {
        frame: state.frame(title, "policies"),
        types,
        selected,
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "gui/policy.html")]
pub struct PolicyPage {
    frame: Frame,
    kind: &'static str,
    plural: &'static str,
    mesh: String,
    name: String,
    yaml: String,
}

pub async fn policy(
    State(state): State<GuiState>,
    Path((mesh, plural, name)): Path<(String, String, String)>,
) -> PageResult<PolicyPage> {
    let Some(kind) = view::policy_kinds()
        .into_iter()
        .find(|k| k.descriptor().plural == plural)
    else {
        return Err(PageError::not_found(
            &state,
            format!("There is no policy type {plural:?}."),
        ));
    };
    let key = ResourceKey::new(kind, mesh.clone(), name.clone());
    let resource = match state.store.get_stored(&key).await {
        Ok(Some(stored)) => stored.resource,
        Ok(None) => {
            return Err(PageError::not_found(
                &state,
                format!("There is no {} {name:?} in mesh {mesh:?}.", kind.name()),
            ));
        }
        Err(e) => return Err(PageError::internal(&state, e)),
    };
    Ok(PolicyPage {
        frame: state.frame(format!("{} {name}", kind.name()), "policies"),
        kind: kind.name(),
        plural: kind.descriptor().plural,
        yaml: view::redacted_yaml(&resource),
        mesh,
        name,
    })
}

/// Any other path under the GUI.
pub async fn not_found(State(state): State<GuiState>) -> PageError {
    PageError::not_found(&state, "There is no such page.".into())
}
