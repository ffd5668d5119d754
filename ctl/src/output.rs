//! `-o table|yaml|json`: how resources and lists from the REST API are printed, in Kuma's
//! key order, YAML style and table columns (`app/kumactl/cmd/get/table_printer.go`).

use std::collections::{BTreeMap, BTreeSet};

use model::{ResourceType, Spec, mesh_pb};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::table::{self, Table};

/// An output format.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Yaml,
    Json,
}

/// Go's zero `time.Time` as JSON.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Keys of the REST form that belong to the meta, in the order kumactl prints them.
const META_ORDER: &[&str] = &[
    "type",
    "mesh",
    "name",
    "creationTime",
    "modificationTime",
    "labels",
    "kri",
];

/// Splits a REST item into its meta (Kuma's key order; times always present, labels and
/// kri only when set) and its spec fields (server order).
pub fn split_item(item: &Value) -> (Map<String, Value>, Map<String, Value>) {
    let empty = Map::new();
    let object = item.as_object().unwrap_or(&empty);
    let mut meta = Map::new();
    for key in META_ORDER {
        match (*key, object.get(*key)) {
            ("creationTime" | "modificationTime", None | Some(Value::Null)) => {
                meta.insert((*key).into(), Value::String(ZERO_TIME.into()));
            }
            ("labels", Some(Value::Object(labels))) if labels.is_empty() => {}
            ("kri", Some(Value::String(kri))) if kri.is_empty() => {}
            (_, Some(value)) if !value.is_null() => {
                meta.insert((*key).into(), value.clone());
            }
            _ => {}
        }
    }
    let spec = object
        .iter()
        .filter(|(k, _)| !META_ORDER.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (meta, spec)
}

/// One item as kumactl's JSON prints it: meta first, then the spec fields.
pub fn item_json(item: &Value) -> Value {
    let (mut meta, spec) = split_item(item);
    meta.extend(spec);
    Value::Object(meta)
}

/// Go's `json.MarshalIndent(v, "", "  ")` with its HTML escaping, plus a newline.
pub fn json_text(value: &Value) -> String {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into());
    let mut out = String::with_capacity(text.len() + 1);
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('\n');
    out
}

/// One resource as kumactl's YAML prints it: the meta (sorted), then the spec (sorted),
/// leaving the spec out when it is empty.
pub fn item_yaml(item: &Value) -> String {
    let (meta, spec) = split_item(item);
    let mut out = crate::yaml::to_yaml(&Value::Object(meta));
    if !spec.is_empty() {
        out.push_str(&crate::yaml::to_yaml(&Value::Object(spec)));
    }
    out
}

/// A list as kumactl prints it: `{total, items, next: null}` (kumactl never repeats the
/// server's `next`; the table footer tells the offset instead).
pub fn list_value(total: u64, items: &[Value]) -> Value {
    let mut object = Map::new();
    object.insert("total".into(), Value::from(total));
    object.insert(
        "items".into(),
        Value::Array(items.iter().map(item_json).collect()),
    );
    object.insert("next".into(), Value::Null);
    Value::Object(object)
}

/// A REST list body: `{total, items, next}`.
#[derive(Debug, Clone, Default)]
pub struct List {
    pub total: u64,
    pub items: Vec<Value>,
    /// The `offset` query parameter of `next`, when there are more items.
    pub next_offset: Option<String>,
}

impl List {
    pub fn from_value(body: &Value) -> List {
        let items = body
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let total = body
            .get("total")
            .and_then(Value::as_u64)
            .unwrap_or(items.len() as u64);
        let next_offset = body
            .get("next")
            .and_then(Value::as_str)
            .and_then(offset_of_next);
        List {
            total,
            items,
            next_offset,
        }
    }

    pub fn render(&self, format: Format, table: impl FnOnce(&[Value]) -> Table) -> String {
        match format {
            Format::Json => json_text(&list_value(self.total, &self.items)),
            Format::Yaml => crate::yaml::to_yaml(&list_value(self.total, &self.items)),
            Format::Table => {
                let mut t = table(&self.items);
                t.footer = self.next_offset.as_ref().map(|offset| {
                    format!(
                        "Rerun command with --offset={offset} argument to retrieve more resources"
                    )
                });
                t.render()
            }
        }
    }
}

/// The `offset` parameter of a `next` URL (kumactl reads only that).
pub fn offset_of_next(next: &str) -> Option<String> {
    let query = next.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (crate::go::query_unescape(k) == "offset").then(|| crate::go::query_unescape(v))
    })
}

/// The typed spec of a REST item (unknown fields ignored), or the empty spec.
pub fn typed_spec(kind: ResourceType, item: &Value) -> Spec {
    let (_, spec) = split_item(item);
    Spec::from_json(kind, &Value::Object(spec), false).unwrap_or_else(|_| Spec::default_for(kind))
}

fn str_field<'a>(item: &'a Value, key: &str) -> &'a str {
    item.get(key).and_then(Value::as_str).unwrap_or("")
}

/// AGE of an item: time since its `modificationTime`.
pub fn age(item: &Value, now: OffsetDateTime) -> String {
    let t = table::parse_time(str_field(item, "modificationTime"))
        .or_else(|| table::parse_time(ZERO_TIME))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    table::time_since(t, now)
}

/// `k=v1,v2 k2=v` with keys and values sorted (Kuma's `MultiValueTagSet.String()`).
pub fn multi_value_tags<'a>(tags: impl IntoIterator<Item = (&'a String, &'a String)>) -> String {
    let mut set: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (k, v) in tags {
        set.entry(k.as_str()).or_default().insert(v.as_str());
    }
    set.iter()
        .map(|(k, vs)| format!("{k}={}", vs.iter().copied().collect::<Vec<_>>().join(",")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The tags of a dataplane: every inbound's and the gateway's.
pub fn dataplane_tags(dp: &mesh_pb::Dataplane) -> String {
    let Some(networking) = &dp.networking else {
        return String::new();
    };
    let inbound = networking.inbound.iter().flat_map(|i| i.tags.iter());
    let gateway = networking.gateway.iter().flat_map(|g| g.tags.iter());
    multi_value_tags(inbound.chain(gateway))
}

/// The columns of `kumactl get <type>` and the row of one item.
pub fn get_table(kind: ResourceType, items: &[Value], now: OffsetDateTime) -> Table {
    let headers: &[&str] = match kind {
        ResourceType::Mesh => &[
            "NAME",
            "mTLS",
            "METRICS",
            "LOGGING",
            "TRACING",
            "LOCALITY",
            "ZONEEGRESS",
            "AGE",
        ],
        ResourceType::Dataplane | ResourceType::ExternalService => {
            &["MESH", "NAME", "TAGS", "ADDRESS", "AGE"]
        }
        k if k.is_mesh_scoped() => &["MESH", "NAME", "AGE"],
        _ => &["NAME", "AGE"],
    };
    let mut t = Table::new(headers);
    for item in items {
        t.rows.push(get_row(kind, item, now));
    }
    t
}

/// A mesh's MTLS or METRICS column: `type/name` of the enabled backend, `off` when none is
/// enabled. `backends` are `(name, type)` pairs.
fn enabled_backend<'a>(
    enabled: &str,
    mut backends: impl Iterator<Item = (&'a str, &'a str)>,
) -> String {
    if enabled.is_empty() {
        return "off".to_string();
    }
    let backend_type = backends
        .find(|(name, _)| *name == enabled)
        .map_or("", |(_, kind)| kind);
    format!("{backend_type}/{enabled}")
}

/// A mesh's LOGGING or TRACING column: every `type/name`, `off` when there is none.
/// `backends` are `(name, type)` pairs.
fn backend_list<'a>(backends: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let list = backends
        .map(|(name, kind)| format!("{kind}/{name}"))
        .collect::<Vec<_>>()
        .join(", ");
    if list.is_empty() { "off".into() } else { list }
}

fn get_row(kind: ResourceType, item: &Value, now: OffsetDateTime) -> Vec<String> {
    let mesh = str_field(item, "mesh").to_string();
    let name = str_field(item, "name").to_string();
    let age = age(item, now);
    match typed_spec(kind, item) {
        Spec::Mesh(m) => {
            let mtls = m.mtls.as_ref().map_or("off".to_string(), |t| {
                enabled_backend(
                    &t.enabled_backend,
                    t.backends
                        .iter()
                        .map(|b| (b.name.as_str(), b.r#type.as_str())),
                )
            });
            let metrics = m.metrics.as_ref().map_or("off".to_string(), |t| {
                enabled_backend(
                    &t.enabled_backend,
                    t.backends
                        .iter()
                        .map(|b| (b.name.as_str(), b.r#type.as_str())),
                )
            });
            let logging = backend_list(
                m.logging
                    .iter()
                    .flat_map(|l| l.backends.iter())
                    .map(|b| (b.name.as_str(), b.r#type.as_str())),
            );
            let tracing = backend_list(
                m.tracing
                    .iter()
                    .flat_map(|l| l.backends.iter())
                    .map(|b| (b.name.as_str(), b.r#type.as_str())),
            );
            let routing = m.routing.unwrap_or_default();
            vec![
                name,
                mtls,
                metrics,
                logging,
                tracing,
                table::on_off(routing.locality_aware_load_balancing).into(),
                table::on_off(routing.zone_egress).into(),
                age,
            ]
        }
        Spec::Dataplane(dp) => {
            let address = dp
                .networking
                .as_ref()
                .map(|n| {
                    if n.advertised_address.is_empty() {
                        n.address.clone()
                    } else {
                        n.advertised_address.clone()
                    }
                })
                .unwrap_or_default();
            vec![mesh, name, dataplane_tags(&dp), address, age]
        }
        Spec::ExternalService(es) => {
            let mut tags: Vec<String> = es.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
            tags.sort();
            let address = es
                .networking
                .as_ref()
                .map(|n| n.address.clone())
                .unwrap_or_default();
            vec![mesh, name, tags.join(" "), address, age]
        }
        _ if kind.is_mesh_scoped() => vec![mesh, name, age],
        _ => vec![name, age],
    }
}

/// One resource in `format`.
pub fn render_item(
    kind: ResourceType,
    item: &Value,
    format: Format,
    now: OffsetDateTime,
) -> String {
    match format {
        Format::Json => json_text(&item_json(item)),
        Format::Yaml => item_yaml(item),
        Format::Table => get_table(kind, std::slice::from_ref(item), now).render(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-01-01 00:00:00 UTC);

    fn list(items: Vec<Value>, next: Option<&str>) -> List {
        List::from_value(&json!({"total": items.len(), "items": items, "next": next}))
    }

    #[test]
    fn meshes_table() {
        let items = vec![
            json!({"type": "Mesh", "name": "default", "creationTime": "2025-12-31T23:00:00Z",
                   "modificationTime": "2025-12-31T23:00:00Z"}),
            json!({"type": "Mesh", "name": "mesh-1", "creationTime": "0001-01-01T00:00:00Z",
                   "modificationTime": "0001-01-01T00:00:00Z",
                   "mtls": {"enabledBackend": "builtin-1", "backends": [{"name": "builtin-1", "type": "builtin"}]},
                   "metrics": {"enabledBackend": "prometheus-1", "backends": [{"name": "prometheus-1", "type": "prometheus"}]},
                   "logging": {"backends": [{"name": "logstash", "type": "tcp", "conf": {"address": "127.0.0.1:5000"}},
                                            {"name": "file", "type": "file", "conf": {"path": "/tmp/service.log"}}]},
                   "tracing": {"backends": [{"name": "zipkin-us", "type": "zipkin", "conf": {"url": "http://zipkin.us:8080/v1/spans"}}]},
                   "routing": {"localityAwareLoadBalancing": true, "zoneEgress": true}}),
        ];
        let out = list(items, None).render(Format::Table, |items| {
            get_table(ResourceType::Mesh, items, NOW)
        });
        assert_eq!(
            out,
            "NAME      mTLS                METRICS                   LOGGING                   TRACING            LOCALITY   ZONEEGRESS   AGE\n\
             default   off                 off                       off                       off                off        off          1h\n\
             mesh-1    builtin/builtin-1   prometheus/prometheus-1   tcp/logstash, file/file   zipkin/zipkin-us   on         on           292y\n"
        );
    }

    #[test]
    fn dataplanes_table_with_pagination() {
        let items = vec![json!({
            "type": "Dataplane", "mesh": "default", "name": "example",
            "creationTime": "0001-01-01T00:00:00Z", "modificationTime": "0001-01-01T00:00:00Z",
            "networking": {"address": "127.0.0.2", "inbound": [
                {"port": 8080, "servicePort": 80, "tags": {"kuma.io/service": "web", "version": "v2"}},
                {"port": 8081, "servicePort": 81, "tags": {"kuma.io/service": "metrics", "version": "v2"}}]}
        })];
        let out = list(
            items,
            Some("http://localhost:5681/meshes/default/dataplanes?offset=1&size=1"),
        )
        .render(Format::Table, |items| {
            get_table(ResourceType::Dataplane, items, NOW)
        });
        assert_eq!(
            out,
            "MESH      NAME      TAGS                                     ADDRESS     AGE\n\
             default   example   kuma.io/service=metrics,web version=v2   127.0.0.2   292y\n\
             \n\
             Rerun command with --offset=1 argument to retrieve more resources\n"
        );
    }

    #[test]
    fn policies_and_global_tables() {
        let tp = json!({"type": "TrafficPermission", "mesh": "default", "name": "traffic-permission-1",
                        "modificationTime": "0001-01-01T00:00:00Z"});
        assert_eq!(
            render_item(ResourceType::TrafficPermission, &tp, Format::Table, NOW),
            "MESH      NAME                   AGE\ndefault   traffic-permission-1   292y\n"
        );
        let zone =
            json!({"type": "Zone", "name": "zone-1", "modificationTime": "2025-12-31T23:59:00Z"});
        assert_eq!(
            render_item(ResourceType::Zone, &zone, Format::Table, NOW),
            "NAME     AGE\nzone-1   1m\n"
        );
    }

    #[test]
    fn item_json_and_yaml_like_kuma() {
        let item = json!({
            "type": "TrafficPermission", "mesh": "default", "name": "traffic-permission-1",
            "creationTime": "0001-01-01T00:00:00Z", "modificationTime": "0001-01-01T00:00:00Z",
            "labels": {"kuma.io/mesh": "default"},
            "sources": [{"match": {"kuma.io/service": "web1", "version": "1.0"}}],
            "destinations": [{"match": {"env": "dev", "kuma.io/service": "backend1"}}]
        });
        assert_eq!(
            render_item(ResourceType::TrafficPermission, &item, Format::Yaml, NOW),
            "creationTime: \"0001-01-01T00:00:00Z\"\nlabels:\n  kuma.io/mesh: default\nmesh: default\nmodificationTime: \"0001-01-01T00:00:00Z\"\nname: traffic-permission-1\ntype: TrafficPermission\ndestinations:\n- match:\n    env: dev\n    kuma.io/service: backend1\nsources:\n- match:\n    kuma.io/service: web1\n    version: \"1.0\"\n"
        );
        let json = render_item(ResourceType::TrafficPermission, &item, Format::Json, NOW);
        assert!(json.starts_with("{\n  \"type\": \"TrafficPermission\",\n  \"mesh\": \"default\",\n  \"name\": \"traffic-permission-1\",\n  \"creationTime\""), "{json}");
        assert!(json.ends_with("}\n"));
    }

    #[test]
    fn list_yaml_and_json() {
        let l = list(
            vec![
                json!({"type": "Zone", "name": "z", "creationTime": "0001-01-01T00:00:00Z", "modificationTime": "0001-01-01T00:00:00Z", "enabled": true}),
            ],
            Some("http://x/zones?offset=1"),
        );
        assert_eq!(
            l.render(Format::Yaml, |_| Table::default()),
            "items:\n- creationTime: \"0001-01-01T00:00:00Z\"\n  enabled: true\n  modificationTime: \"0001-01-01T00:00:00Z\"\n  name: z\n  type: Zone\nnext: null\ntotal: 1\n"
        );
        let json = l.render(Format::Json, |_| Table::default());
        assert!(
            json.starts_with("{\n  \"total\": 1,\n  \"items\": ["),
            "{json}"
        );
        assert!(json.ends_with("  \"next\": null\n}\n"), "{json}");
    }

    #[test]
    fn next_offsets() {
        assert_eq!(
            offset_of_next("http://h/meshes?size=2&offset=2"),
            Some("2".into())
        );
        assert_eq!(offset_of_next("http://h/meshes"), None);
    }
}
