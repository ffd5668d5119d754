//! `kumactl inspect dataplanes|meshes|services|zones|zoneingresses|zoneegresses`: the
//! overview and insight endpoints, with the columns of Kuma's `app/kumactl/cmd/inspect/*.go`.

use anyhow::Result;
use model::{ResourceType, Spec, mesh_pb, system_pb};
use serde_json::Value;
use time::OffsetDateTime;

use super::{now, print};
use crate::cli::{InspectArgs, InspectCommand};
use crate::client::ApiClient;
use crate::go::{encode_query, path_escape};
use crate::output::{List, dataplane_tags};
use crate::root::Root;
use crate::table::{Table, ago, date};

/// Builds the table of one inspect command from the listed items.
type TableFn = fn(&[Value], OffsetDateTime) -> Table;

pub async fn run(root: &Root, args: &InspectArgs) -> Result<()> {
    let client = root.client()?;
    root.check_compatibility(&client).await;
    let now = now();
    let mesh = path_escape(&root.mesh);
    let (path, table): (String, TableFn) = match &args.command {
        InspectCommand::Dataplanes {
            tag,
            gateway,
            ingress,
        } => {
            let mut query = Vec::new();
            if *gateway {
                query.push(("gateway".to_string(), "true".to_string()));
            }
            if *ingress {
                query.push(("ingress".to_string(), "true".to_string()));
            }
            for (k, v) in tag.iter().flatten() {
                query.push(("tag".to_string(), format!("{k}:{v}")));
            }
            let mut path = format!("/meshes/{mesh}/dataplanes/_overview");
            if !query.is_empty() {
                path = format!("{path}?{}", encode_query(&query));
            }
            (path, dataplanes_table)
        }
        InspectCommand::Meshes => ("/mesh-insights".to_string(), meshes_table),
        InspectCommand::Services => (format!("/meshes/{mesh}/service-insights"), services_table),
        InspectCommand::Zones => ("/zones/_overview".to_string(), zones_table),
        InspectCommand::Zoneingresses => {
            ("/zoneingresses/_overview".to_string(), zone_ingresses_table)
        }
        InspectCommand::Zoneegresses => {
            ("/zoneegresses/_overview".to_string(), zone_egresses_table)
        }
    };
    let list = fetch_list(&client, &path).await?;
    print(&list.render(args.output, |items| table(items, now)));
    Ok(())
}

async fn fetch_list(client: &ApiClient, path: &str) -> Result<List> {
    let response = client.get(path).await?;
    if response.status != 200 {
        return Err(response.into_error().into());
    }
    Ok(List::from_value(&response.json()?))
}

fn str_field<'a>(item: &'a Value, key: &str) -> &'a str {
    item.get(key).and_then(Value::as_str).unwrap_or("")
}

fn typed(kind: ResourceType, value: Option<&Value>) -> Spec {
    value
        .and_then(|v| Spec::from_json(kind, v, false).ok())
        .unwrap_or_else(|| Spec::default_for(kind))
}

fn to_time(seconds: i64, nanos: i32) -> Option<OffsetDateTime> {
    let nanos = i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
    OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
}

/// A protobuf `Timestamp` option as a time.
macro_rules! timestamp {
    ($ts:expr $(,)?) => {
        $ts.and_then(|t| to_time(t.seconds, t.nanos))
    };
}

/// The LAST CONNECTED AGO and LAST UPDATED AGO columns of the last subscription of an
/// insight (a proxy's xDS or a zone's KDS subscription).
macro_rules! subscription_ages {
    ($last:expr, $now:expr $(,)?) => {{
        let last = $last;
        [
            ago(timestamp!(last.and_then(|s| s.connect_time.as_ref())), $now),
            ago(
                timestamp!(
                    last.and_then(|s| s.status.as_ref())
                        .and_then(|s| s.last_update_time.as_ref()),
                ),
                $now,
            ),
        ]
    }};
}

/// The sum of one counter (`responses_sent`, `responses_rejected`) over the totals of all
/// subscriptions of an insight (a proxy's xDS or a zone's KDS subscriptions).
macro_rules! subscriptions_total {
    ($subscriptions:expr, $counter:ident $(,)?) => {
        $subscriptions
            .iter()
            .map(|s| {
                s.status
                    .as_ref()
                    .and_then(|st| st.total.as_ref())
                    .map_or(0, |t| t.$counter)
            })
            .sum::<u64>()
    };
}

/// The KUMA-DP VERSION and ENVOY VERSION columns of a proxy's version.
fn proxy_versions(version: Option<&mesh_pb::Version>) -> [String; 2] {
    [
        version
            .and_then(|v| v.kuma_dp.as_ref())
            .map(|v| v.version.clone())
            .unwrap_or_default(),
        version
            .and_then(|v| v.envoy.as_ref())
            .map(|v| v.version.clone())
            .unwrap_or_default(),
    ]
}

fn dataplane_insight_parts(
    insight: &mesh_pb::DataplaneInsight,
) -> (Option<&mesh_pb::DiscoverySubscription>, u64, u64) {
    let last = insight.subscriptions.last();
    let sent = subscriptions_total!(insight.subscriptions, responses_sent);
    let rejected = subscriptions_total!(insight.subscriptions, responses_rejected);
    (last, sent, rejected)
}

fn dataplane_online(insight: &mesh_pb::DataplaneInsight) -> bool {
    insight
        .subscriptions
        .iter()
        .any(|s| s.connect_time.is_some() && s.disconnect_time.is_none())
}

/// Kuma's `DataplaneOverviewResource.Status()`: status and the notes about what is not ready.
pub fn dataplane_status(
    dp: &mesh_pb::Dataplane,
    insight: &mesh_pb::DataplaneInsight,
) -> (&'static str, Vec<String>) {
    use mesh_pb::dataplane::networking::{inbound, listener};
    let online = dataplane_online(insight);
    let Some(networking) = &dp.networking else {
        return ("Offline", Vec::new());
    };
    if networking.gateway.is_some() {
        return (if online { "Online" } else { "Offline" }, Vec::new());
    }
    let total = networking.inbound.len() + networking.listeners.len();
    let mut ready = 0;
    let mut errs = Vec::new();
    for i in &networking.inbound {
        let not_ready =
            i.health.is_some_and(|h| !h.ready) || i.state == inbound::State::NotReady as i32;
        if not_ready {
            let service = i
                .tags
                .get(model::labels::tags::SERVICE)
                .map_or("", String::as_str);
            errs.push(format!(
                "inbound[port={},svc={service}] is not ready",
                i.port
            ));
        } else {
            ready += 1;
        }
    }
    for l in &networking.listeners {
        if l.state == listener::State::Ready as i32 {
            ready += 1;
        } else {
            let kind = listener::Type::try_from(l.r#type)
                .map(|t| t.as_str_name())
                .unwrap_or("");
            errs.push(format!(
                "listener[port={},type={kind}] is not ready",
                l.port
            ));
        }
    }
    if !online || ready == 0 {
        ("Offline", errs)
    } else if ready < total {
        ("Partially degraded", errs)
    } else {
        ("Online", Vec::new())
    }
}

fn dataplanes_table(items: &[Value], now: OffsetDateTime) -> Table {
    let mut t = Table::new(&[
        "MESH",
        "NAME",
        "TAGS",
        "STATUS",
        "LAST CONNECTED AGO",
        "LAST UPDATED AGO",
        "TOTAL UPDATES",
        "TOTAL ERRORS",
        "CERT REGENERATED AGO",
        "CERT EXPIRATION",
        "CERT REGENERATIONS",
        "CERT BACKEND",
        "SUPPORTED CERT BACKENDS",
        "KUMA-DP VERSION",
        "ENVOY VERSION",
        "DEPENDENCIES VERSIONS",
        "NOTES",
    ]);
    for item in items {
        let Spec::Dataplane(dp) = typed(ResourceType::Dataplane, item.get("dataplane")) else {
            continue;
        };
        let Spec::DataplaneInsight(insight) =
            typed(ResourceType::DataplaneInsight, item.get("dataplaneInsight"))
        else {
            continue;
        };
        let (last, sent, rejected) = dataplane_insight_parts(&insight);
        let (status, errs) = dataplane_status(&dp, &insight);
        let [connected, updated] = subscription_ages!(last, now);
        let mtls = insight.m_tls.as_ref();
        let version = last.and_then(|s| s.version.as_ref());
        let [kuma_dp_version, envoy_version] = proxy_versions(version);
        let mut dependencies: Vec<String> = version
            .map(|v| {
                v.dependencies
                    .iter()
                    .map(|(name, version)| format!("{name}: {version}"))
                    .collect()
            })
            .unwrap_or_default();
        dependencies.sort();
        let dependencies = if dependencies.is_empty() {
            "-".to_string()
        } else {
            dependencies.join(", ")
        };
        t.rows.push(vec![
            str_field(item, "mesh").to_string(),
            str_field(item, "name").to_string(),
            dataplane_tags(&dp),
            status.to_string(),
            connected,
            updated,
            sent.to_string(),
            rejected.to_string(),
            ago(
                timestamp!(mtls.and_then(|m| m.last_certificate_regeneration.as_ref())),
                now,
            ),
            date(timestamp!(
                mtls.and_then(|m| m.certificate_expiration_time.as_ref()),
            )),
            mtls.map_or(0, |m| m.certificate_regenerations).to_string(),
            mtls.map_or("-".to_string(), |m| m.issued_backend.clone()),
            mtls.map(|m| m.supported_backends.join(","))
                .unwrap_or_default(),
            kuma_dp_version,
            envoy_version,
            dependencies,
            errs.join(";"),
        ]);
    }
    t
}

fn zones_table(items: &[Value], now: OffsetDateTime) -> Table {
    let mut t = Table::new(&[
        "NAME",
        "STATUS",
        "LAST CONNECTED AGO",
        "LAST UPDATED AGO",
        "TOTAL UPDATES",
        "TOTAL ERRORS",
        "ZONE-CP VERSION",
        "BACKEND",
        "GLOBAL->ZONE LAG",
        "ZONE->GLOBAL LAG",
    ]);
    for item in items {
        let Spec::Zone(zone) = typed(ResourceType::Zone, item.get("zone")) else {
            continue;
        };
        let Spec::ZoneInsight(insight) = typed(ResourceType::ZoneInsight, item.get("zoneInsight"))
        else {
            continue;
        };
        t.rows.push(zone_row(item, &zone, &insight, now));
    }
    t
}

fn zone_row(
    item: &Value,
    zone: &system_pb::Zone,
    insight: &system_pb::ZoneInsight,
    now: OffsetDateTime,
) -> Vec<String> {
    let last = insight.subscriptions.last();
    let online = insight
        .subscriptions
        .iter()
        .any(|s| s.connect_time.is_some() && s.disconnect_time.is_none());
    let enabled = zone.enabled.as_ref().is_none_or(|e| e.value);
    let backend = last
        .filter(|s| !s.config.is_empty())
        .and_then(|s| serde_json::from_str::<Value>(&s.config).ok())
        .and_then(|c| {
            c.pointer("/store/type")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default();
    let [connected, updated] = subscription_ages!(last, now);
    vec![
        str_field(item, "name").to_string(),
        if online && enabled {
            "Online"
        } else {
            "Offline"
        }
        .to_string(),
        connected,
        updated,
        subscriptions_total!(insight.subscriptions, responses_sent).to_string(),
        subscriptions_total!(insight.subscriptions, responses_rejected).to_string(),
        last.and_then(|s| s.version.as_ref())
            .and_then(|v| v.kuma_cp.as_ref())
            .map(|v| v.version.clone())
            .unwrap_or_default(),
        backend,
        kds_lag(item, "globalToZone"),
        kds_lag(item, "zoneToGlobal"),
    ]
}

/// A LAG cell of `inspect zones`: `zoneInsight.kdsSync.<direction>` (a kuma-rs extension of
/// ZoneInsight, read from the raw item so that an older generated model does not drop it) as
/// `REVISIONS (SECONDSs)`, e.g. `3 (1.2s)`; `-` when the control plane reports none. Proto3
/// JSON leaves zero fields out and may write the uint64 `revisions` as a string.
fn kds_lag(item: &Value, direction: &str) -> String {
    let Some(lag) = item
        .pointer(&format!("/zoneInsight/kdsSync/{direction}"))
        .filter(|lag| lag.is_object())
    else {
        return "-".to_string();
    };
    let revisions = match lag.get("revisions") {
        None | Some(Value::Null) => Some(0),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse::<u64>().ok(),
        Some(_) => None,
    };
    let seconds = match lag.get("seconds") {
        None | Some(Value::Null) => Some(0.0),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.parse::<f64>().ok(),
        Some(_) => None,
    };
    match (revisions, seconds.filter(|s| s.is_finite())) {
        (Some(revisions), Some(seconds)) => format!("{revisions} ({seconds:.1}s)"),
        _ => "-".to_string(),
    }
}

fn proxy_insight_table(items: &[Value], now: OffsetDateTime, insight_key: &str) -> Table {
    let mut t = Table::new(&[
        "NAME",
        "STATUS",
        "LAST CONNECTED AGO",
        "LAST UPDATED AGO",
        "TOTAL UPDATES",
        "TOTAL ERRORS",
        "KUMA-DP VERSION",
        "ENVOY VERSION",
    ]);
    for item in items {
        // Zone proxy insights have the shape of a DataplaneInsight (subscriptions).
        let Spec::DataplaneInsight(insight) =
            typed(ResourceType::DataplaneInsight, item.get(insight_key))
        else {
            continue;
        };
        let (last, sent, rejected) = dataplane_insight_parts(&insight);
        let [connected, updated] = subscription_ages!(last, now);
        let [kuma_dp_version, envoy_version] =
            proxy_versions(last.and_then(|s| s.version.as_ref()));
        t.rows.push(vec![
            str_field(item, "name").to_string(),
            if dataplane_online(&insight) {
                "Online"
            } else {
                "Offline"
            }
            .to_string(),
            connected,
            updated,
            sent.to_string(),
            rejected.to_string(),
            kuma_dp_version,
            envoy_version,
        ]);
    }
    t
}

fn zone_ingresses_table(items: &[Value], now: OffsetDateTime) -> Table {
    proxy_insight_table(items, now, "zoneIngressInsight")
}

fn zone_egresses_table(items: &[Value], now: OffsetDateTime) -> Table {
    proxy_insight_table(items, now, "zoneEgressInsight")
}

fn u64_at(value: &Value, pointer: &str) -> u64 {
    value.pointer(pointer).and_then(Value::as_u64).unwrap_or(0)
}

/// The DATAPLANES column: online of total.
fn dataplanes_online_of_total(item: &Value) -> String {
    format!(
        "{}/{}",
        u64_at(item, "/dataplanes/online"),
        u64_at(item, "/dataplanes/total")
    )
}

fn meshes_table(items: &[Value], _now: OffsetDateTime) -> Table {
    const POLICIES: &[&str] = &[
        "TrafficPermission",
        "TrafficRoute",
        "CircuitBreaker",
        "HealthCheck",
        "FaultInjection",
        "ExternalService",
        "TrafficTrace",
        "TrafficLog",
        "ProxyTemplate",
        "RateLimit",
    ];
    let mut t = Table::new(&[
        "MESH",
        "DATAPLANES",
        "TRAFFIC PERMISSIONS",
        "TRAFFIC ROUTES",
        "CIRCUIT BREAKERS",
        "HEALTH CHECKS",
        "FAULT INJECTIONS",
        "EXTERNAL SERVICES",
        "TRAFFIC TRACES",
        "TRAFFIC LOGS",
        "PROXY TEMPLATES",
        "RATE LIMITS",
    ]);
    for item in items {
        let mut row = vec![
            str_field(item, "name").to_string(),
            dataplanes_online_of_total(item),
        ];
        for policy in POLICIES {
            row.push(u64_at(item, &format!("/policies/{policy}/total")).to_string());
        }
        t.rows.push(row);
    }
    t
}

fn services_table(items: &[Value], _now: OffsetDateTime) -> Table {
    let mut t = Table::new(&["SERVICE", "STATUS", "DATAPLANES"]);
    for item in items {
        let status = match str_field(item, "status") {
            "online" => "Online",
            "partially_degraded" => "Partially degraded",
            _ => "Offline",
        };
        t.rows.push(vec![
            str_field(item, "name").to_string(),
            status.to_string(),
            dataplanes_online_of_total(item),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-01-01 00:00:00 UTC);

    fn overview(inbound_ready: bool, connected: bool) -> Value {
        let mut subscription = json!({"id": "1", "connectTime": "2025-12-31T23:00:00Z",
            "status": {"lastUpdateTime": "2025-12-31T23:59:00Z",
                       "total": {"responsesSent": "3", "responsesRejected": "1"}},
            "version": {"kumaDp": {"version": "2.14.3"}, "envoy": {"version": "1.34.1"},
                        "dependencies": {"coredns": "1.11.3"}}});
        if !connected {
            subscription["disconnectTime"] = json!("2025-12-31T23:30:00Z");
        }
        json!({"type": "DataplaneOverview", "mesh": "default", "name": "web-1",
            "dataplane": {"networking": {"address": "10.0.0.1", "inbound": [
                {"port": 80, "tags": {"kuma.io/service": "web"}},
                {"port": 81, "tags": {"kuma.io/service": "web-admin"},
                 "health": {"ready": inbound_ready}}]}},
            "dataplaneInsight": {"subscriptions": [subscription]}})
    }

    #[test]
    fn dataplane_rows() {
        let table = dataplanes_table(&[overview(true, true)], NOW);
        assert_eq!(
            table.rows[0],
            vec![
                "default",
                "web-1",
                "kuma.io/service=web,web-admin",
                "Online",
                "1h",
                "1m",
                "3",
                "1",
                "never",
                "-",
                "0",
                "-",
                "",
                "2.14.3",
                "1.34.1",
                "coredns: 1.11.3",
                "",
            ]
        );
        let degraded = dataplanes_table(&[overview(false, true)], NOW);
        assert_eq!(degraded.rows[0][3], "Partially degraded");
        assert_eq!(
            degraded.rows[0][16],
            "inbound[port=81,svc=web-admin] is not ready"
        );
        let offline = dataplanes_table(&[overview(true, false)], NOW);
        assert_eq!(offline.rows[0][3], "Offline");
    }

    #[test]
    fn zone_lag_cells() {
        let zone = |kds_sync: Value| {
            json!({"name": "zone-1", "zone": {"enabled": true},
                   "zoneInsight": {"subscriptions": [], "kdsSync": kds_sync}})
        };
        let item = zone(json!({
            "globalToZone": {"revisions": "3", "seconds": 1.23, "senderRevision": "10"},
            "zoneToGlobal": {}
        }));
        assert_eq!(kds_lag(&item, "globalToZone"), "3 (1.2s)");
        // proto3 JSON leaves zeros out: an empty object is "in sync".
        assert_eq!(kds_lag(&item, "zoneToGlobal"), "0 (0.0s)");
        let item = zone(json!({"globalToZone": {"revisions": 7, "seconds": "0.5"}}));
        assert_eq!(kds_lag(&item, "globalToZone"), "7 (0.5s)");
        assert_eq!(kds_lag(&item, "zoneToGlobal"), "-");
        let item = zone(json!({"globalToZone": {"revisions": "many", "seconds": 1}}));
        assert_eq!(kds_lag(&item, "globalToZone"), "-");
        let item = zone(json!({"globalToZone": {"revisions": 1, "seconds": "NaN"}}));
        assert_eq!(kds_lag(&item, "globalToZone"), "-");
        assert_eq!(kds_lag(&json!({"name": "old-cp"}), "globalToZone"), "-");

        let table = zones_table(
            &[zone(
                json!({"globalToZone": {"revisions": "2", "seconds": 0.4}}),
            )],
            NOW,
        );
        let row = &table.rows[0];
        assert_eq!(row[row.len() - 2..], ["2 (0.4s)", "-"]);
    }

    #[test]
    fn mesh_and_service_rows() {
        let meshes = meshes_table(
            &[
                json!({"name": "default", "dataplanes": {"online": 1, "total": 2},
                     "policies": {"TrafficPermission": {"total": 3}, "RateLimit": {"total": 1}}}),
            ],
            NOW,
        );
        assert_eq!(
            meshes.rows[0],
            vec![
                "default", "1/2", "3", "0", "0", "0", "0", "0", "0", "0", "0", "1"
            ]
        );
        let services = services_table(
            &[json!({"name": "web", "status": "partially_degraded",
                     "dataplanes": {"online": 1, "total": 2}})],
            NOW,
        );
        assert_eq!(
            services.render(),
            "SERVICE   STATUS               DATAPLANES\nweb       Partially degraded   1/2\n"
        );
    }
}
