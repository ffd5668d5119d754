//! `GET /openapi.json`: an OpenAPI 3.0 document generated from the route table
//! ([`routes::routes`], the same table the router is built from) and the resource registry.
//! Resource schemas come from the protobuf descriptors of the specs (protojson field names),
//! so a new type or field shows up here without anyone writing JSON by hand.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::http::Method;
use model::{ResourceType, Scope};
use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value, json};

use super::json::Json;
use super::list::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use super::routes::{self, Endpoint, Listing, Route};

static DOCUMENT: LazyLock<Value> = LazyLock::new(build);

/// The document (built once).
pub(crate) fn document() -> &'static Value {
    &DOCUMENT
}

/// `GET /openapi.json`.
pub(super) async fn serve() -> Json<Value> {
    Json(document().clone())
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// Schemas collected while walking routes and messages.
#[derive(Default)]
struct Schemas(BTreeMap<String, Value>);

impl Schemas {
    /// `$ref` to the schema of a protobuf message, adding it (and what it uses) when new.
    fn message(&mut self, desc: &MessageDescriptor) -> Value {
        if let Some(schema) = well_known(desc.full_name()) {
            return schema;
        }
        let name = desc.full_name().to_string();
        if !self.0.contains_key(&name) {
            // Placeholder first: messages may refer to themselves.
            self.0.insert(name.clone(), Value::Null);
            let mut properties = Map::new();
            for field in desc.fields() {
                let schema = self.field(&field);
                properties.insert(field.json_name().to_string(), schema);
            }
            self.0.insert(
                name.clone(),
                json!({ "type": "object", "description": format!("protobuf {name}"), "properties": properties }),
            );
        }
        schema_ref(&name)
    }

    fn field(&mut self, field: &FieldDescriptor) -> Value {
        if field.is_map() {
            let value = match field.kind() {
                Kind::Message(entry) => {
                    let value_field = entry.map_entry_value_field();
                    self.single(&value_field.kind())
                }
                other => self.single(&other),
            };
            return json!({ "type": "object", "additionalProperties": value });
        }
        let single = self.single(&field.kind());
        if field.is_list() {
            json!({ "type": "array", "items": single })
        } else {
            single
        }
    }

    fn single(&mut self, kind: &Kind) -> Value {
        match kind {
            Kind::Double | Kind::Float => json!({ "type": "number" }),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                json!({ "type": "integer", "format": "int32" })
            }
            Kind::Uint32 | Kind::Fixed32 => {
                json!({ "type": "integer", "format": "int32", "minimum": 0 })
            }
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 | Kind::Uint64 | Kind::Fixed64 => {
                json!({ "type": "string", "format": "int64", "description": "64-bit integer (a JSON string in responses; numbers accepted)" })
            }
            Kind::Bool => json!({ "type": "boolean" }),
            Kind::String => json!({ "type": "string" }),
            Kind::Bytes => json!({ "type": "string", "format": "byte" }),
            Kind::Enum(e) => {
                let values: Vec<String> = e.values().map(|v| v.name().to_string()).collect();
                json!({ "type": "string", "enum": values })
            }
            Kind::Message(m) => self.message(m),
        }
    }
}

/// protojson forms of the well-known types.
fn well_known(full_name: &str) -> Option<Value> {
    let schema = match full_name {
        "google.protobuf.Duration" => {
            json!({ "type": "string", "description": "duration, e.g. \"5s\"" })
        }
        "google.protobuf.Timestamp" => json!({ "type": "string", "format": "date-time" }),
        "google.protobuf.BoolValue" => json!({ "type": "boolean" }),
        "google.protobuf.StringValue" => json!({ "type": "string" }),
        "google.protobuf.BytesValue" => json!({ "type": "string", "format": "byte" }),
        "google.protobuf.Int32Value" | "google.protobuf.UInt32Value" => {
            json!({ "type": "integer", "format": "int32" })
        }
        "google.protobuf.Int64Value" | "google.protobuf.UInt64Value" => {
            json!({ "type": "string", "format": "int64" })
        }
        "google.protobuf.DoubleValue" | "google.protobuf.FloatValue" => json!({ "type": "number" }),
        "google.protobuf.Struct" | "google.protobuf.Any" | "google.protobuf.Empty" => {
            json!({ "type": "object", "additionalProperties": true })
        }
        "google.protobuf.ListValue" => json!({ "type": "array", "items": {} }),
        "google.protobuf.Value" => json!({}),
        _ => return None,
    };
    Some(schema)
}

fn spec_descriptor(kind: ResourceType) -> Option<MessageDescriptor> {
    message_descriptor(kind.descriptor().spec_proto)
}

/// `#/components/schemas/<Type>`: meta keys with the spec's fields inline, as Kuma's classic
/// resources are written; and `<Type>List`.
fn resource_schemas(schemas: &mut Schemas, kind: ResourceType) {
    let name = kind.name();
    if schemas.0.contains_key(name) {
        return;
    }
    let mut all_of = vec![schema_ref("ResourceMeta")];
    if let Some(desc) = spec_descriptor(kind) {
        all_of.push(schemas.message(&desc));
    }
    let mut required = vec!["type", "name"];
    if kind.scope() == Scope::Mesh {
        required.push("mesh");
    }
    all_of.push(json!({
        "type": "object",
        "required": required,
        "properties": { "type": { "type": "string", "enum": [name] } },
    }));
    schemas
        .0
        .insert(name.to_string(), json!({ "allOf": all_of }));
    schemas.0.insert(format!("{name}List"), list_schema(name));
}

fn list_schema(item: &str) -> Value {
    json!({
        "type": "object",
        "required": ["total", "items", "next"],
        "properties": {
            "total": { "type": "integer", "description": "number of items over all pages" },
            "items": { "type": "array", "items": schema_ref(item) },
            "next": { "type": "string", "nullable": true, "description": "URL of the next page; null on the last page" },
        },
    })
}

fn overview_schemas(schemas: &mut Schemas, overview: &routes::Overview) {
    let name = overview.type_name;
    if schemas.0.contains_key(name) {
        return;
    }
    let mut properties = Map::new();
    properties.insert("type".into(), json!({ "type": "string", "enum": [name] }));
    if let Some(desc) = spec_descriptor(overview.kind) {
        properties.insert(overview.field.into(), schemas.message(&desc));
    }
    if let Some(desc) = spec_descriptor(overview.insight) {
        properties.insert(overview.insight_field.into(), schemas.message(&desc));
    }
    schemas.0.insert(
        name.to_string(),
        json!({ "allOf": [schema_ref("ResourceMeta"), { "type": "object", "properties": properties }] }),
    );
    schemas.0.insert(format!("{name}List"), list_schema(name));
}

fn message_descriptor(full_name: &str) -> Option<MessageDescriptor> {
    kds_proto::descriptor_pool().get_message_by_name(full_name)
}

/// `ServiceInsight` (one exploded service: meta plus `ServiceInsight.Service`) and its list.
fn service_insight_schemas(schemas: &mut Schemas) {
    const NAME: &str = "ServiceInsight";
    if schemas.0.contains_key(NAME) {
        return;
    }
    let mut all_of = vec![schema_ref("ResourceMeta")];
    if let Some(desc) = message_descriptor("kuma.mesh.v1alpha1.ServiceInsight.Service") {
        all_of.push(schemas.message(&desc));
    }
    all_of.push(json!({
        "type": "object",
        "required": ["type", "mesh", "name"],
        "properties": {
            "type": { "type": "string", "enum": [NAME] },
            "name": { "type": "string", "description": "the service (`kuma.io/service`)" },
        },
    }));
    schemas.0.insert(NAME.into(), json!({ "allOf": all_of }));
    schemas.0.insert(format!("{NAME}List"), list_schema(NAME));
}

/// `ZoneEgressOverview` and its list (never any items: there is no ZoneEgress type).
fn zone_egress_overview_schemas(schemas: &mut Schemas) {
    const NAME: &str = "ZoneEgressOverview";
    if schemas.0.contains_key(NAME) {
        return;
    }
    let mut properties = Map::new();
    properties.insert("type".into(), json!({ "type": "string", "enum": [NAME] }));
    for (field, message) in [
        ("zoneEgress", "kuma.mesh.v1alpha1.ZoneEgress"),
        ("zoneEgressInsight", "kuma.mesh.v1alpha1.ZoneEgressInsight"),
    ] {
        if let Some(desc) = message_descriptor(message) {
            properties.insert(field.into(), schemas.message(&desc));
        }
    }
    schemas.0.insert(
        NAME.into(),
        json!({ "allOf": [schema_ref("ResourceMeta"), { "type": "object", "properties": properties }] }),
    );
    schemas.0.insert(format!("{NAME}List"), list_schema(NAME));
}

fn base_schemas(schemas: &mut Schemas) {
    let s = &mut schemas.0;
    s.insert(
        "ResourceMeta".into(),
        json!({
            "type": "object",
            "properties": {
                "type": { "type": "string" },
                "mesh": { "type": "string", "description": "mesh-scoped types only" },
                "name": { "type": "string" },
                "creationTime": { "type": "string", "format": "date-time", "readOnly": true },
                "modificationTime": { "type": "string", "format": "date-time", "readOnly": true },
                "labels": { "type": "object", "additionalProperties": { "type": "string" } },
            },
        }),
    );
    s.insert(
        "InvalidParameter".into(),
        json!({ "type": "object", "required": ["field", "reason"], "properties": {
            "field": { "type": "string" }, "reason": { "type": "string" } } }),
    );
    s.insert(
        "Cause".into(),
        json!({ "type": "object", "properties": {
            "field": { "type": "string" }, "message": { "type": "string" } } }),
    );
    s.insert(
        "Error".into(),
        json!({
            "type": "object",
            "required": ["type", "status", "title", "detail"],
            "properties": {
                "type": { "type": "string", "enum": ["/std-errors"] },
                "status": { "type": "integer" },
                "title": { "type": "string" },
                "detail": { "type": "string" },
                "invalid_parameters": { "type": "array", "items": schema_ref("InvalidParameter") },
                "details": { "type": "string", "description": "legacy copy of detail" },
                "causes": { "type": "array", "items": schema_ref("Cause"), "description": "legacy copy of invalid_parameters" },
            },
        }),
    );
    s.insert(
        "Index".into(),
        json!({
            "type": "object",
            "properties": {
                "hostname": { "type": "string" },
                "tagline": { "type": "string" },
                "product": { "type": "string" },
                "version": { "type": "string" },
                "instanceId": { "type": "string" },
                "clusterId": { "type": "string" },
                "gui": { "type": "string" },
            },
        }),
    );
    s.insert("Empty".into(), json!({ "type": "object" }));
    s.insert(
        "Object".into(),
        json!({ "type": "object", "additionalProperties": true }),
    );
    s.insert("ObjectList".into(), list_schema("Object"));
}

fn json_content(schema: Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

fn ok(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": json_content(schema) })
}

fn path_parameters(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| {
            let description = match name {
                "mesh" => "name of the mesh",
                _ => "name of the resource",
            };
            json!({ "name": name, "in": "path", "required": true, "description": description, "schema": { "type": "string" } })
        })
        .collect()
}

/// `size` and `offset`.
fn paging_parameters() -> Vec<Value> {
    vec![
        json!({ "name": "size", "in": "query", "description": "page size",
            "schema": { "type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": DEFAULT_PAGE_SIZE } }),
        json!({ "name": "offset", "in": "query", "description": "offset of the page, from the `next` link",
            "schema": { "type": "string" } }),
    ]
}

fn list_parameters(kind: ResourceType) -> Vec<Value> {
    let mut out = paging_parameters();
    out.extend([
        json!({ "name": "name", "in": "query", "description": "keep resources whose name contains this",
            "schema": { "type": "string" } }),
        json!({ "name": "filter", "in": "query", "style": "deepObject", "explode": true,
            "description": "`filter[labels.KEY]=VALUE`: keep resources with this label",
            "schema": { "type": "object", "additionalProperties": { "type": "string" } } }),
    ]);
    if matches!(
        kind,
        ResourceType::Dataplane | ResourceType::ExternalService
    ) {
        out.push(json!({ "name": "tag", "in": "query", "explode": true,
            "description": "`key:value`; keep resources with a tag `key` whose value contains `value` (`*`: any)",
            "schema": { "type": "array", "items": { "type": "string" } } }));
    }
    if kind == ResourceType::Dataplane {
        out.push(json!({ "name": "gateway", "in": "query", "description": "keep gateways (`true`), sidecars (`false`) or one kind of gateway",
            "schema": { "type": "string", "enum": ["true", "false", "builtin", "delegated"] } }));
    }
    out
}

/// `getMeshesMeshDataplanes` from `GET /meshes/{mesh}/dataplanes`.
fn operation_id(method: &Method, path: &str) -> String {
    let mut id = method.as_str().to_ascii_lowercase();
    for word in path
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            id.push(first.to_ascii_uppercase());
            id.extend(chars);
        }
    }
    if path == "/" {
        id.push_str("Index");
    }
    id
}

fn tag_of(endpoint: &Endpoint) -> String {
    match endpoint {
        Endpoint::List(kind, _)
        | Endpoint::Get(kind)
        | Endpoint::Put(kind)
        | Endpoint::Delete(kind) => kind.name().to_string(),
        Endpoint::OverviewList(ov, _) | Endpoint::OverviewGet(ov) => ov.kind.name().to_string(),
        Endpoint::MeshInsights | Endpoint::MeshInsight => "Mesh".to_string(),
        Endpoint::ServiceInsights(_) | Endpoint::ServiceInsight => "ServiceInsight".to_string(),
        Endpoint::ZoneEgressOverviews => "ZoneEgress".to_string(),
        _ => "System".to_string(),
    }
}

fn operation(route: &Route, schemas: &mut Schemas) -> Value {
    let mut parameters = path_parameters(&route.path);
    let mut op = Map::new();
    op.insert(
        "operationId".into(),
        json!(operation_id(&route.method, &route.path)),
    );
    op.insert("summary".into(), json!(route.summary));
    op.insert("tags".into(), json!([tag_of(&route.endpoint)]));
    let mut responses = Map::new();
    match route.endpoint {
        Endpoint::Index => {
            responses.insert(
                "200".into(),
                ok("product, version and ids", schema_ref("Index")),
            );
        }
        Endpoint::List(kind, listing) => {
            resource_schemas(schemas, kind);
            parameters.extend(list_parameters(kind));
            let scope = match listing {
                Listing::InMesh => "one mesh",
                Listing::AllMeshes => "every mesh",
                Listing::Global => "global",
            };
            responses.insert(
                "200".into(),
                ok(
                    &format!("a page of {} resources ({scope})", kind.name()),
                    schema_ref(&format!("{}List", kind.name())),
                ),
            );
        }
        Endpoint::Get(kind) => {
            resource_schemas(schemas, kind);
            parameters.push(json!({ "name": "format", "in": "query", "schema": { "type": "string", "enum": ["universal"] } }));
            responses.insert("200".into(), ok("the resource", schema_ref(kind.name())));
        }
        Endpoint::Put(kind) => {
            resource_schemas(schemas, kind);
            op.insert(
                "requestBody".into(),
                json!({ "required": true, "content": json_content(schema_ref(kind.name())) }),
            );
            responses.insert("200".into(), ok("updated", schema_ref("Empty")));
            responses.insert("201".into(), ok("created", schema_ref("Empty")));
        }
        Endpoint::Delete(_) => {
            responses.insert("200".into(), ok("deleted", schema_ref("Empty")));
        }
        Endpoint::OverviewList(ov, _) => {
            overview_schemas(schemas, ov);
            parameters.extend(list_parameters(ov.kind));
            responses.insert(
                "200".into(),
                ok(
                    "a page of overviews",
                    schema_ref(&format!("{}List", ov.type_name)),
                ),
            );
        }
        Endpoint::OverviewGet(ov) => {
            overview_schemas(schemas, ov);
            responses.insert("200".into(), ok("the overview", schema_ref(ov.type_name)));
        }
        Endpoint::MeshInsights => {
            parameters.extend(list_parameters(ResourceType::Mesh));
            responses.insert(
                "200".into(),
                ok("a page of mesh insights", schema_ref("ObjectList")),
            );
        }
        Endpoint::ServiceInsights(listing) => {
            service_insight_schemas(schemas);
            parameters.extend(paging_parameters());
            parameters.push(json!({ "name": "name", "in": "query",
                "description": "keep services whose name contains this", "schema": { "type": "string" } }));
            parameters.push(
                json!({ "name": "type", "in": "query", "style": "form", "explode": false,
                "description": "keep services of these types (comma-separated)",
                "schema": { "type": "array", "items": { "type": "string",
                    "enum": ["internal", "external", "gateway_delegated", "gateway_builtin"] } } }),
            );
            let scope = match listing {
                Listing::InMesh => "one mesh",
                _ => "every mesh",
            };
            responses.insert(
                "200".into(),
                ok(
                    &format!("a page of services ({scope}), sorted by mesh and name"),
                    schema_ref("ServiceInsightList"),
                ),
            );
        }
        Endpoint::ServiceInsight => {
            service_insight_schemas(schemas);
            responses.insert(
                "200".into(),
                ok(
                    "the service; zero dataplanes when no proxy provides it (404 only for a missing mesh)",
                    schema_ref("ServiceInsight"),
                ),
            );
        }
        Endpoint::ZoneEgressOverviews => {
            zone_egress_overview_schemas(schemas);
            parameters.extend(paging_parameters());
            responses.insert(
                "200".into(),
                ok(
                    "always an empty list: this control plane has no ZoneEgress type",
                    schema_ref("ZoneEgressOverviewList"),
                ),
            );
        }
        Endpoint::WhoAmI
        | Endpoint::MeshInsight
        | Endpoint::Config
        | Endpoint::Versions
        | Endpoint::ResourceTypes
        | Endpoint::Policies
        | Endpoint::GlobalInsight
        | Endpoint::OpenApi => {
            responses.insert("200".into(), ok("OK", schema_ref("Object")));
        }
    }
    responses.insert(
        "default".into(),
        json!({ "$ref": "#/components/responses/Error" }),
    );
    if !parameters.is_empty() {
        op.insert("parameters".into(), Value::Array(parameters));
    }
    op.insert("responses".into(), Value::Object(responses));
    Value::Object(op)
}

fn build() -> Value {
    let mut schemas = Schemas::default();
    base_schemas(&mut schemas);
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for route in routes::routes() {
        let op = operation(&route, &mut schemas);
        paths
            .entry(route.path.clone())
            .or_default()
            .insert(route.method.as_str().to_ascii_lowercase(), op);
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Kuma API (kuma-rs)",
            "description": "The REST API of a Kuma control plane. Errors are JSON bodies of type /std-errors.",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "paths": paths,
        "components": {
            "schemas": schemas.0,
            "responses": {
                "Error": {
                    "description": "Kuma error: 400 invalid input, 401 bad token, 403 denied, 404 not found, 405 read-only, 409 conflict, 413 body too large, 415 not JSON, 5xx server",
                    "content": json_content(schema_ref("Error")),
                },
            },
        },
    })
}
