//! The pages' view models, built by pure functions from an [`Inventory`] (and, for the zone
//! charts, the lag history): zones and their sync state, meshes, services per zone with the
//! ingresses that carry them, dataplanes with their xDS status, zone ingresses, policies.
//! Everything here is plain data; escaping is the templates' job.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use envoy_types::pb::google::protobuf::Timestamp;
use model::mesh_pb::dataplane::networking::inbound::State as InboundState;
use model::{Resource, ResourceType, Spec, labels};

use super::data::Inventory;
use crate::api;

/// Online, offline or not known, as the pages colour it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Health {
    Online,
    Degraded,
    Offline,
    Unknown,
}

impl Health {
    /// The CSS class and `data-status` value.
    pub fn class(&self) -> &'static str {
        match self {
            Health::Online => "online",
            Health::Degraded => "degraded",
            Health::Offline => "offline",
            Health::Unknown => "unknown",
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Health::Online => "Online",
            Health::Degraded => "Partially degraded",
            Health::Offline => "Offline",
            Health::Unknown => "Unknown",
        }
    }
}

/// `2026-12-02 03:04:05 UTC (12s ago)`, or `-` when unset.
pub fn when(t: Option<&Timestamp>, now: SystemTime) -> String {
    let Some(t) = t else {
        return "-".into();
    };
    let Ok(at) = time::OffsetDateTime::from_unix_timestamp(t.seconds) else {
        return "-".into();
    };
    let stamp = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    );
    let then = SystemTime::UNIX_EPOCH + Duration::from_secs(t.seconds.max(0) as u64);
    match now.duration_since(then) {
        Ok(age) => format!("{stamp} ({} ago)", short_duration(age)),
        Err(_) => stamp,
    }
}

/// `3s`, `4m 10s`, `2h 5m`, `3d 4h`.
pub fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86400, (s % 86400) / 3600),
    }
}

/// `a=1, b=2`, sorted by key.
pub fn tags_text<'a>(tags: impl IntoIterator<Item = (&'a String, &'a String)>) -> String {
    let sorted: BTreeMap<&String, &String> = tags.into_iter().collect();
    sorted
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `s` percent-encoded for use as one URL path segment (unreserved characters kept).
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The name users gave a resource: `kuma.io/display-name` on synced copies, else the name.
pub fn display_name(r: &Resource) -> &str {
    r.meta
        .labels
        .get(labels::DISPLAY_NAME)
        .map(String::as_str)
        .unwrap_or(&r.meta.name)
}

/// The zone a Dataplane or ZoneIngress runs in: its `kuma.io/zone` label, its ingress spec's
/// zone, an inbound's `kuma.io/zone` tag, else `local` (this control plane's own zone).
pub fn zone_of<'a>(r: &'a Resource, local: &'a str) -> &'a str {
    if let Some(z) = r.meta.labels.get(labels::ZONE).filter(|z| !z.is_empty()) {
        return z;
    }
    match &r.spec {
        Spec::ZoneIngress(i) if !i.zone.is_empty() => &i.zone,
        Spec::Dataplane(d) => d
            .networking
            .as_ref()
            .and_then(|n| {
                n.inbound
                    .iter()
                    .find_map(|i| i.tags.get(labels::tags::ZONE).filter(|z| !z.is_empty()))
            })
            .map(String::as_str)
            .unwrap_or(local),
        _ => local,
    }
}

/// The rows most pages derive from, computed once per request: every dataplane with its
/// status, every ingress, every service.
pub struct Digest {
    pub dataplanes: Vec<DataplaneRow>,
    pub ingresses: Vec<IngressRow>,
    pub services: Vec<ServiceRow>,
}

impl Digest {
    pub fn new(inv: &Inventory, local: &str) -> Digest {
        let dataplanes = dataplanes(inv, local);
        let services = services_of(inv, local, &dataplanes);
        Digest {
            ingresses: ingresses(inv, local),
            dataplanes,
            services,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Zones

/// One direction's lag, formatted.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LagView {
    pub seconds: f64,
    pub revisions: u64,
}

impl LagView {
    pub fn text(&self) -> String {
        format!("{:.1}s / {} rev", self.seconds, self.revisions)
    }
}

/// A zone of the federation, as the global sees it.
#[derive(Clone, Debug)]
pub struct ZoneRow {
    pub name: String,
    pub health: Health,
    pub enabled: bool,
    pub version: String,
    pub global_to_zone: Option<LagView>,
    pub zone_to_global: Option<LagView>,
    pub dataplanes_online: usize,
    pub dataplanes_total: usize,
    pub ingresses: usize,
    pub rejections: usize,
    pub last_seen: String,
}

impl ZoneRow {
    /// A zone known by name only: status unknown, no figures.
    pub fn unknown(name: &str) -> ZoneRow {
        ZoneRow {
            name: name.to_string(),
            health: Health::Unknown,
            enabled: true,
            version: String::new(),
            global_to_zone: None,
            zone_to_global: None,
            dataplanes_online: 0,
            dataplanes_total: 0,
            ingresses: 0,
            rejections: 0,
            last_seen: "-".into(),
        }
    }

    /// The lag shown on the topology and in lists: the larger of the two directions.
    pub fn lag_text(&self) -> String {
        let worst = [&self.global_to_zone, &self.zone_to_global]
            .into_iter()
            .flatten()
            .max_by(|a, b| a.seconds.total_cmp(&b.seconds));
        match worst {
            Some(lag) => format!("lag {}", lag.text()),
            None => "lag -".into(),
        }
    }
}

/// One KDS subscription of a zone.
#[derive(Clone, Debug)]
pub struct SubscriptionRow {
    pub id: String,
    pub global_instance: String,
    pub zone_instance: String,
    pub connected: String,
    pub disconnected: String,
    pub version: String,
    pub sent: u64,
    pub acked: u64,
    pub rejected: u64,
}

/// Per-type KDS counters of the newest subscription.
#[derive(Clone, Debug)]
pub struct TypeStatRow {
    pub kind: String,
    pub sent: u64,
    pub acked: u64,
    pub rejected: u64,
}

/// A resource one side refused.
#[derive(Clone, Debug)]
pub struct RejectionRow {
    pub direction: String,
    pub kind: String,
    pub mesh: String,
    pub name: String,
    pub reason: String,
    pub time: String,
}

/// The zone detail page.
#[derive(Clone, Debug)]
pub struct ZoneDetail {
    pub row: ZoneRow,
    pub subscriptions: Vec<SubscriptionRow>,
    pub stats: Vec<TypeStatRow>,
    pub rejections: Vec<RejectionRow>,
    pub stalls: u64,
    pub health_check: String,
}

fn zone_enabled(r: &Resource) -> bool {
    match &r.spec {
        Spec::Zone(z) => z.enabled.as_ref().is_none_or(|e| e.value),
        _ => true,
    }
}

fn lag_view(lag: Option<&model::system_pb::KdsLag>) -> Option<LagView> {
    lag.map(|l| LagView {
        seconds: l.seconds,
        revisions: l.revisions,
    })
}

fn zone_insight<'a>(inv: &'a Inventory, zone: &str) -> Option<&'a model::system_pb::ZoneInsight> {
    inv.all(ResourceType::ZoneInsight)
        .iter()
        .find(|r| r.meta.name == zone)
        .and_then(|r| match &r.spec {
            Spec::ZoneInsight(i) => Some(i),
            _ => None,
        })
}

/// Every Zone, with its insight, dataplane counts and ingresses (global).
pub fn zones(inv: &Inventory, dataplanes: &[DataplaneRow], now: SystemTime) -> Vec<ZoneRow> {
    inv.all(ResourceType::Zone)
        .iter()
        .map(|zone| {
            let name = zone.meta.name.clone();
            let enabled = zone_enabled(zone);
            let insight = zone_insight(inv, &name);
            let health = match insight {
                None => Health::Unknown,
                Some(i) if enabled && kds::status::is_online(i) => Health::Online,
                Some(_) => Health::Offline,
            };
            let version = insight
                .and_then(|i| i.subscriptions.last())
                .and_then(|s| s.version.as_ref())
                .and_then(|v| v.kuma_cp.as_ref())
                .map(|v| v.version.clone())
                .unwrap_or_default();
            let sync = insight.and_then(|i| i.kds_sync.as_ref());
            let last_seen = insight
                .and_then(|i| i.health_check.as_ref())
                .map(|h| when(h.time.as_ref(), now))
                .unwrap_or_else(|| "-".into());
            let in_zone: Vec<&DataplaneRow> =
                dataplanes.iter().filter(|d| d.zone == name).collect();
            ZoneRow {
                health,
                enabled,
                version,
                global_to_zone: lag_view(sync.and_then(|s| s.global_to_zone.as_ref())),
                zone_to_global: lag_view(sync.and_then(|s| s.zone_to_global.as_ref())),
                dataplanes_online: in_zone
                    .iter()
                    .filter(|d| d.health == Health::Online)
                    .count(),
                dataplanes_total: in_zone.len(),
                ingresses: inv
                    .all(ResourceType::ZoneIngress)
                    .iter()
                    .filter(|i| zone_of(i, "") == name)
                    .count(),
                rejections: sync.map(|s| s.rejections.len()).unwrap_or(0),
                last_seen,
                name,
            }
        })
        .collect()
}

/// One zone's detail; `None` when no such Zone.
pub fn zone_detail(inv: &Inventory, name: &str, now: SystemTime) -> Option<ZoneDetail> {
    let row = zones(inv, &dataplanes(inv, ""), now)
        .into_iter()
        .find(|z| z.name == name)?;
    let insight = zone_insight(inv, name);
    let subscriptions = insight
        .map(|i| {
            i.subscriptions
                .iter()
                .rev()
                .map(|s| {
                    let total = s.status.as_ref().and_then(|st| st.total.as_ref());
                    SubscriptionRow {
                        id: s.id.clone(),
                        global_instance: s.global_instance_id.clone(),
                        zone_instance: s.zone_instance_id.clone(),
                        connected: when(s.connect_time.as_ref(), now),
                        disconnected: when(s.disconnect_time.as_ref(), now),
                        version: s
                            .version
                            .as_ref()
                            .and_then(|v| v.kuma_cp.as_ref())
                            .map(|v| v.version.clone())
                            .unwrap_or_default(),
                        sent: total.map(|t| t.responses_sent).unwrap_or(0),
                        acked: total.map(|t| t.responses_acknowledged).unwrap_or(0),
                        rejected: total.map(|t| t.responses_rejected).unwrap_or(0),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let stats = insight
        .and_then(|i| i.subscriptions.last())
        .and_then(|s| s.status.as_ref())
        .map(|st| {
            let sorted: BTreeMap<&String, _> = st.stat.iter().collect();
            sorted
                .into_iter()
                .map(|(kind, c)| TypeStatRow {
                    kind: kind.clone(),
                    sent: c.responses_sent,
                    acked: c.responses_acknowledged,
                    rejected: c.responses_rejected,
                })
                .collect()
        })
        .unwrap_or_default();
    let sync = insight.and_then(|i| i.kds_sync.as_ref());
    let rejections = sync
        .map(|s| {
            s.rejections
                .iter()
                .rev()
                .map(|r| RejectionRow {
                    direction: r.direction.clone(),
                    kind: r.r#type.clone(),
                    mesh: r.mesh.clone(),
                    name: r.name.clone(),
                    reason: r.reason.clone(),
                    time: when(r.time.as_ref(), now),
                })
                .collect()
        })
        .unwrap_or_default();
    Some(ZoneDetail {
        row,
        subscriptions,
        stats,
        rejections,
        stalls: sync.map(|s| s.stalls).unwrap_or(0),
        health_check: insight
            .and_then(|i| i.health_check.as_ref())
            .map(|h| when(h.time.as_ref(), now))
            .unwrap_or_else(|| "-".into()),
    })
}

// ---------------------------------------------------------------------------------------
// Dataplanes

/// One dataplane in a list.
#[derive(Clone, Debug)]
pub struct DataplaneRow {
    pub mesh: String,
    /// The store name (synced copies carry a hashed one): the detail link uses it.
    pub name: String,
    pub display: String,
    pub zone: String,
    pub services: Vec<String>,
    pub address: String,
    pub health: Health,
    pub kind: &'static str,
}

impl DataplaneRow {
    pub fn services_text(&self) -> String {
        self.services.join(", ")
    }
}

/// A dataplane list filter (query parameters `mesh`, `zone`, `service`, `status`; empty = any)
/// and the page shown (`offset`, pages of [`DATAPLANES_PER_PAGE`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default)]
pub struct DataplaneFilter {
    pub mesh: String,
    pub zone: String,
    pub service: String,
    pub status: String,
    pub offset: usize,
}

/// Rows on one page of the dataplane list.
pub const DATAPLANES_PER_PAGE: usize = 100;

impl DataplaneFilter {
    /// The query string of this filter at `offset`, values percent-encoded.
    pub fn query_at(&self, offset: usize) -> String {
        let mut pairs: Vec<String> = [
            ("mesh", &self.mesh),
            ("zone", &self.zone),
            ("service", &self.service),
            ("status", &self.status),
        ]
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", path_segment(v)))
        .collect();
        if offset > 0 {
            pairs.push(format!("offset={offset}"));
        }
        pairs.join("&")
    }

    pub fn matches(&self, row: &DataplaneRow) -> bool {
        (self.mesh.is_empty() || row.mesh == self.mesh)
            && (self.zone.is_empty() || row.zone == self.zone)
            && (self.service.is_empty() || row.services.contains(&self.service))
            && (self.status.is_empty() || row.health.class() == self.status)
    }
}

fn dataplane_insight<'a>(
    inv: &'a Inventory,
    mesh: &str,
    name: &str,
) -> Option<&'a model::mesh_pb::DataplaneInsight> {
    inv.all(ResourceType::DataplaneInsight)
        .iter()
        .find(|r| r.meta.mesh == mesh && r.meta.name == name)
        .and_then(|r| match &r.spec {
            Spec::DataplaneInsight(i) => Some(i),
            _ => None,
        })
}

/// Every Dataplane; `local` names this control plane's zone (empty on the global).
pub fn dataplanes(inv: &Inventory, local: &str) -> Vec<DataplaneRow> {
    let insights = inv.index(ResourceType::DataplaneInsight);
    inv.all(ResourceType::Dataplane)
        .iter()
        .filter_map(|r| {
            let Spec::Dataplane(dp) = &r.spec else {
                return None;
            };
            let insight = insights
                .get(&(r.meta.mesh.as_str(), r.meta.name.as_str()))
                .copied();
            let (kind, status, services) = api::dataplane_status(r, insight);
            Some(DataplaneRow {
                mesh: r.meta.mesh.clone(),
                name: r.meta.name.clone(),
                display: display_name(r).to_string(),
                zone: zone_of(r, local).to_string(),
                services: services
                    .into_iter()
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect(),
                address: dp
                    .networking
                    .as_ref()
                    .map(|n| n.address.clone())
                    .unwrap_or_default(),
                health: match status {
                    api::Status::Online => Health::Online,
                    api::Status::PartiallyDegraded => Health::Degraded,
                    api::Status::Offline => Health::Offline,
                },
                kind: if kind == api::ProxyKind::Standard {
                    "sidecar"
                } else {
                    "gateway"
                },
            })
        })
        .collect()
}

/// One inbound of a dataplane.
#[derive(Clone, Debug)]
pub struct InboundRow {
    pub address: String,
    pub service_port: String,
    pub tags: String,
    pub ready: &'static str,
}

/// One outbound of a dataplane.
#[derive(Clone, Debug)]
pub struct OutboundRow {
    pub address: String,
    pub service: String,
    pub tags: String,
}

/// One ADS stream of a dataplane.
#[derive(Clone, Debug)]
pub struct XdsRow {
    pub control_plane: String,
    pub connected: String,
    pub disconnected: String,
    pub sent: u64,
    pub acked: u64,
    pub rejected: u64,
    pub versions: String,
}

/// The last configuration a proxy refused.
#[derive(Clone, Debug)]
pub struct NackView {
    pub type_url: String,
    pub version: String,
    pub reason: String,
    pub time: String,
}

/// The dataplane detail page.
#[derive(Clone, Debug)]
pub struct DataplaneDetail {
    pub row: DataplaneRow,
    pub tags: String,
    pub inbounds: Vec<InboundRow>,
    pub outbounds: Vec<OutboundRow>,
    pub xds: Vec<XdsRow>,
    pub last_nack: Option<NackView>,
    pub certificate: String,
}

/// One dataplane's detail; `None` when no such Dataplane.
pub fn dataplane_detail(
    inv: &Inventory,
    local: &str,
    mesh: &str,
    name: &str,
    now: SystemTime,
) -> Option<DataplaneDetail> {
    let resource = inv
        .all(ResourceType::Dataplane)
        .iter()
        .find(|r| r.meta.mesh == mesh && r.meta.name == name)?;
    let Spec::Dataplane(dp) = &resource.spec else {
        return None;
    };
    let row = dataplanes(inv, local)
        .into_iter()
        .find(|d| d.mesh == mesh && d.name == name)?;
    let networking = dp.networking.clone().unwrap_or_default();
    let mut all_tags: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for inbound in &networking.inbound {
        for (k, v) in &inbound.tags {
            all_tags.entry(k.clone()).or_default().insert(v.clone());
        }
    }
    if let Some(g) = &networking.gateway {
        for (k, v) in &g.tags {
            all_tags.entry(k.clone()).or_default().insert(v.clone());
        }
    }
    let tags = all_tags
        .iter()
        .map(|(k, vs)| format!("{k}={}", vs.iter().cloned().collect::<Vec<_>>().join("|")))
        .collect::<Vec<_>>()
        .join(", ");
    let inbounds = networking
        .inbound
        .iter()
        .map(|i| {
            let address = if i.address.is_empty() {
                &networking.address
            } else {
                &i.address
            };
            let ready = if i.state == InboundState::Ignored as i32 {
                "ignored"
            } else if i.health.as_ref().is_none_or(|h| h.ready)
                && i.state != InboundState::NotReady as i32
            {
                "ready"
            } else {
                "not ready"
            };
            InboundRow {
                address: format!("{address}:{}", i.port),
                service_port: if i.service_port == 0 {
                    "-".into()
                } else {
                    let host = if i.service_address.is_empty() {
                        "127.0.0.1"
                    } else {
                        &i.service_address
                    };
                    format!("{host}:{}", i.service_port)
                },
                tags: tags_text(&i.tags),
                ready,
            }
        })
        .collect();
    let outbounds = networking
        .outbound
        .iter()
        .map(|o| OutboundRow {
            address: format!(
                "{}:{}",
                if o.address.is_empty() {
                    "127.0.0.1"
                } else {
                    &o.address
                },
                o.port
            ),
            service: o
                .tags
                .get(labels::tags::SERVICE)
                .cloned()
                .unwrap_or_default(),
            tags: tags_text(&o.tags),
        })
        .collect();
    let insight = dataplane_insight(inv, mesh, name);
    let xds = insight
        .map(|i| {
            i.subscriptions
                .iter()
                .rev()
                .map(|s| {
                    let total = s.status.as_ref().and_then(|st| st.total.as_ref());
                    let versions = s
                        .version
                        .as_ref()
                        .map(|v| {
                            let dp = v
                                .kuma_dp
                                .as_ref()
                                .map(|d| d.version.clone())
                                .unwrap_or_default();
                            let envoy = v
                                .envoy
                                .as_ref()
                                .map(|e| e.version.clone())
                                .unwrap_or_default();
                            [("kuma-dp", dp), ("envoy", envoy)]
                                .into_iter()
                                .filter(|(_, v)| !v.is_empty())
                                .map(|(what, v)| format!("{what} {v}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        })
                        .unwrap_or_default();
                    XdsRow {
                        control_plane: s.control_plane_instance_id.clone(),
                        connected: when(s.connect_time.as_ref(), now),
                        disconnected: when(s.disconnect_time.as_ref(), now),
                        sent: total.map(|t| t.responses_sent).unwrap_or(0),
                        acked: total.map(|t| t.responses_acknowledged).unwrap_or(0),
                        rejected: total.map(|t| t.responses_rejected).unwrap_or(0),
                        versions,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let last_nack = insight
        .and_then(|i| i.last_nack.as_ref())
        .map(|n| NackView {
            type_url: n.type_url.clone(),
            version: n.version.clone(),
            reason: n.reason.clone(),
            time: when(n.time.as_ref(), now),
        });
    let certificate = insight
        .and_then(|i| i.m_tls.as_ref())
        .map(|m| {
            format!(
                "issued by {} backend, expires {}, {} regenerations",
                if m.issued_backend.is_empty() {
                    "-"
                } else {
                    &m.issued_backend
                },
                when(m.certificate_expiration_time.as_ref(), now),
                m.certificate_regenerations
            )
        })
        .unwrap_or_else(|| "not reported".into());
    Some(DataplaneDetail {
        row,
        tags,
        inbounds,
        outbounds,
        xds,
        last_nack,
        certificate,
    })
}

// ---------------------------------------------------------------------------------------
// Zone ingresses

/// One zone ingress.
#[derive(Clone, Debug)]
pub struct IngressRow {
    pub name: String,
    pub display: String,
    pub zone: String,
    pub address: String,
    pub advertised: String,
    pub health: Health,
    /// `mesh/service{tags} ×instances`, one per available service entry.
    pub services: Vec<String>,
    /// The (mesh, service) pairs it carries.
    pub carries: BTreeSet<(String, String)>,
}

impl IngressRow {
    /// `1 service`, `3 services`.
    pub fn services_count(&self) -> String {
        match self.carries.len() {
            1 => "1 service".into(),
            n => format!("{n} services"),
        }
    }
}

/// Every ZoneIngress with the services it carries; `local` is this CP's zone.
pub fn ingresses(inv: &Inventory, local: &str) -> Vec<IngressRow> {
    let insights = inv.index(ResourceType::ZoneIngressInsight);
    inv.all(ResourceType::ZoneIngress)
        .iter()
        .filter_map(|r| {
            let Spec::ZoneIngress(z) = &r.spec else {
                return None;
            };
            let health = match insights.get(&("", r.meta.name.as_str())) {
                None => Health::Unknown,
                Some(i) if api::insight_online(Some(i)) => Health::Online,
                Some(_) => Health::Offline,
            };
            let n = z.networking.clone().unwrap_or_default();
            let services = z
                .available_services
                .iter()
                .map(|s| {
                    let service = s
                        .tags
                        .get(labels::tags::SERVICE)
                        .cloned()
                        .unwrap_or_default();
                    let extra: BTreeMap<&String, &String> = s
                        .tags
                        .iter()
                        .filter(|(k, _)| k.as_str() != labels::tags::SERVICE)
                        .collect();
                    let extra = if extra.is_empty() {
                        String::new()
                    } else {
                        format!(" {{{}}}", tags_text(extra))
                    };
                    format!("{}/{service}{extra} ×{}", s.mesh, s.instances)
                })
                .collect();
            let carries = z
                .available_services
                .iter()
                .filter_map(|s| {
                    s.tags
                        .get(labels::tags::SERVICE)
                        .map(|name| (s.mesh.clone(), name.clone()))
                })
                .collect();
            Some(IngressRow {
                carries,
                name: r.meta.name.clone(),
                display: display_name(r).to_string(),
                zone: zone_of(r, local).to_string(),
                address: format!("{}:{}", n.address, n.port),
                advertised: if n.advertised_address.is_empty() {
                    "-".into()
                } else {
                    format!("{}:{}", n.advertised_address, n.advertised_port)
                },
                health,
                services,
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Services

/// A service's instances in one zone.
#[derive(Clone, Debug)]
pub struct ZoneInstances {
    pub zone: String,
    pub instances: u32,
    pub online: u32,
    /// How other zones reach these instances: `ingress-name (address)` of the zone's ingresses
    /// that advertise the service.
    pub via: Vec<String>,
}

impl ZoneInstances {
    pub fn via_text(&self) -> String {
        if self.via.is_empty() {
            "-".into()
        } else {
            self.via.join(", ")
        }
    }
}

/// One service of a mesh.
#[derive(Clone, Debug)]
pub struct ServiceRow {
    pub mesh: String,
    pub name: String,
    pub zones: Vec<ZoneInstances>,
    pub health: Health,
}

impl ServiceRow {
    pub fn total(&self) -> u32 {
        self.zones.iter().map(|z| z.instances).sum()
    }
}

/// Every service of every mesh with its instances per zone: counted from the Dataplanes this
/// control plane holds and, for zones whose Dataplanes it does not hold (another zone, seen
/// from a zone), from the instance counts their ingresses advertise.
pub fn services(inv: &Inventory, local: &str) -> Vec<ServiceRow> {
    services_of(inv, local, &dataplanes(inv, local))
}

/// [`services`] from dataplane rows already built.
pub fn services_of(inv: &Inventory, local: &str, dataplanes: &[DataplaneRow]) -> Vec<ServiceRow> {
    // (mesh, service) -> zone -> instances
    let mut table: BTreeMap<(String, String), BTreeMap<String, ZoneInstances>> = BTreeMap::new();
    let mut zones_with_dataplanes: BTreeSet<String> = BTreeSet::new();
    for dp in dataplanes {
        zones_with_dataplanes.insert(dp.zone.clone());
        if dp.kind == "gateway" {
            continue;
        }
        for service in &dp.services {
            let entry = table
                .entry((dp.mesh.clone(), service.clone()))
                .or_default()
                .entry(dp.zone.clone())
                .or_insert_with(|| ZoneInstances {
                    zone: dp.zone.clone(),
                    instances: 0,
                    online: 0,
                    via: Vec::new(),
                });
            entry.instances += 1;
            if dp.health == Health::Online {
                entry.online += 1;
            }
        }
    }
    for r in inv.all(ResourceType::ZoneIngress) {
        let Spec::ZoneIngress(z) = &r.spec else {
            continue;
        };
        let zone = zone_of(r, local).to_string();
        let n = z.networking.clone().unwrap_or_default();
        let address = if n.advertised_address.is_empty() {
            format!("{}:{}", n.address, n.port)
        } else {
            format!("{}:{}", n.advertised_address, n.advertised_port)
        };
        let via = format!("{} ({address})", display_name(r));
        let mut counted: BTreeMap<(String, String), u32> = BTreeMap::new();
        for s in &z.available_services {
            let Some(service) = s.tags.get(labels::tags::SERVICE) else {
                continue;
            };
            *counted
                .entry((s.mesh.clone(), service.clone()))
                .or_default() += s.instances;
        }
        for ((mesh, service), instances) in counted {
            let entry = table
                .entry((mesh, service))
                .or_default()
                .entry(zone.clone())
                .or_insert_with(|| ZoneInstances {
                    zone: zone.clone(),
                    instances: 0,
                    online: 0,
                    via: Vec::new(),
                });
            if !zones_with_dataplanes.contains(&zone) && entry.instances < instances {
                // Another zone's instances, known only through its ingress (all reachable).
                entry.instances = instances;
                entry.online = instances;
            }
            if !entry.via.contains(&via) {
                entry.via.push(via.clone());
            }
        }
    }
    table
        .into_iter()
        .map(|((mesh, name), zones)| {
            let zones: Vec<ZoneInstances> = zones.into_values().collect();
            let total: u32 = zones.iter().map(|z| z.instances).sum();
            let online: u32 = zones.iter().map(|z| z.online).sum();
            let health = if online == 0 {
                Health::Offline
            } else if online < total {
                Health::Degraded
            } else {
                Health::Online
            };
            ServiceRow {
                mesh,
                name,
                zones,
                health,
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Meshes and policies

/// One mesh.
#[derive(Clone, Debug)]
pub struct MeshRow {
    pub name: String,
    pub mtls: String,
    pub locality_aware: bool,
    pub dataplanes_online: usize,
    pub dataplanes_total: usize,
    pub services: usize,
    pub policies: usize,
}

/// Every Mesh with its counts.
pub fn meshes(inv: &Inventory, digest: &Digest) -> Vec<MeshRow> {
    let dps = &digest.dataplanes;
    let services = &digest.services;
    let policies = policies(inv);
    inv.all(ResourceType::Mesh)
        .iter()
        .filter_map(|r| {
            let Spec::Mesh(m) = &r.spec else {
                return None;
            };
            let name = r.meta.name.clone();
            let mtls = match m.mtls.as_ref().filter(|t| !t.enabled_backend.is_empty()) {
                Some(t) => {
                    let kind = t
                        .backends
                        .iter()
                        .find(|b| b.name == t.enabled_backend)
                        .map(|b| b.r#type.clone())
                        .unwrap_or_default();
                    format!("{} ({kind})", t.enabled_backend)
                }
                None => "off".into(),
            };
            let in_mesh: Vec<&DataplaneRow> = dps.iter().filter(|d| d.mesh == name).collect();
            Some(MeshRow {
                mtls,
                locality_aware: m
                    .routing
                    .as_ref()
                    .is_some_and(|r| r.locality_aware_load_balancing),
                dataplanes_online: in_mesh
                    .iter()
                    .filter(|d| d.health == Health::Online)
                    .count(),
                dataplanes_total: in_mesh.len(),
                services: services.iter().filter(|s| s.mesh == name).count(),
                policies: policies.iter().map(|p| p.count_in(&name)).sum(),
                name,
            })
        })
        .collect()
}

/// One policy type with its resources.
#[derive(Clone, Debug)]
pub struct PolicyType {
    pub name: &'static str,
    pub plural: &'static str,
    pub items: Vec<PolicyItem>,
}

impl PolicyType {
    pub fn count_in(&self, mesh: &str) -> usize {
        self.items.iter().filter(|i| i.mesh == mesh).count()
    }
}

/// One policy.
#[derive(Clone, Debug)]
pub struct PolicyItem {
    pub mesh: String,
    pub name: String,
    pub display: String,
    pub modified: String,
}

/// The policy types (every registry type that is a policy), each with its resources.
pub fn policies(inv: &Inventory) -> Vec<PolicyType> {
    ResourceType::ALL
        .iter()
        .filter(|k| k.descriptor().is_policy && k.descriptor().has_rest)
        .map(|&kind| {
            let d = kind.descriptor();
            PolicyType {
                name: d.name,
                plural: d.plural,
                items: inv
                    .all(kind)
                    .iter()
                    .map(|r| PolicyItem {
                        mesh: r.meta.mesh.clone(),
                        name: r.meta.name.clone(),
                        display: display_name(r).to_string(),
                        modified: model::format::format_time(r.meta.modification_time),
                    })
                    .collect(),
            }
        })
        .collect()
}

/// The policy types [`policies`] needs loaded.
pub fn policy_kinds() -> Vec<ResourceType> {
    ResourceType::ALL
        .iter()
        .copied()
        .filter(|k| k.descriptor().is_policy && k.descriptor().has_rest)
        .collect()
}

/// The JSON of a resource as kumactl prints it, with every inline data source value
/// (`inline`, `inlineString`: a provided CA's key, say) replaced by `<redacted>`, as YAML.
pub fn redacted_yaml(resource: &Resource) -> String {
    let mut value = model::format::to_json_value(resource);
    redact(&mut value);
    serde_yaml_ng::to_string(&value).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
}

fn redact(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if matches!(key.as_str(), "inline" | "inlineString") && !v.is_object() {
                    *v = serde_json::Value::String("<redacted>".into());
                } else {
                    redact(v);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------
// Cross-zone paths

/// A dataplane calling a service whose instances run in another zone: the request leaves
/// `from_zone`, enters `to_zone` through `via` (that zone's ingress) and lands on one of
/// `instances`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrossZonePath {
    pub mesh: String,
    pub from: String,
    pub from_zone: String,
    pub service: String,
    pub to_zone: String,
    /// The ingress's display name.
    pub via: String,
    pub instances: u32,
}

/// Every cross-zone path the explicit outbounds of the known dataplanes take.
pub fn cross_zone_paths(inv: &Inventory, local: &str, digest: &Digest) -> Vec<CrossZonePath> {
    let services: std::collections::HashMap<(&str, &str), &ServiceRow> = digest
        .services
        .iter()
        .map(|s| ((s.mesh.as_str(), s.name.as_str()), s))
        .collect();
    let ingresses = &digest.ingresses;
    let mut paths = BTreeSet::new();
    for r in inv.all(ResourceType::Dataplane) {
        let Spec::Dataplane(dp) = &r.spec else {
            continue;
        };
        let from_zone = zone_of(r, local);
        let Some(networking) = dp.networking.as_ref() else {
            continue;
        };
        for outbound in &networking.outbound {
            let Some(service) = outbound.tags.get(labels::tags::SERVICE) else {
                continue;
            };
            let Some(row) = services.get(&(r.meta.mesh.as_str(), service.as_str())) else {
                continue;
            };
            for zone in row.zones.iter().filter(|z| z.zone != from_zone) {
                let wanted = (r.meta.mesh.clone(), service.clone());
                for ingress in ingresses
                    .iter()
                    .filter(|i| i.zone == zone.zone && i.carries.contains(&wanted))
                {
                    paths.insert((
                        r.meta.mesh.clone(),
                        display_name(r).to_string(),
                        from_zone.to_string(),
                        service.clone(),
                        zone.zone.clone(),
                        ingress.display.clone(),
                        zone.instances,
                    ));
                }
            }
        }
    }
    paths
        .into_iter()
        .map(
            |(mesh, from, from_zone, service, to_zone, via, instances)| CrossZonePath {
                mesh,
                from,
                from_zone,
                service,
                to_zone,
                via,
                instances,
            },
        )
        .collect()
}
