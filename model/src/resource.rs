//! Typed resources: meta (name, mesh, version, times, labels) plus a typed spec.

use std::collections::BTreeMap;
use std::fmt;

use prost::Message;
use prost_reflect::{DeserializeOptions, DynamicMessage, SerializeOptions};
use time::OffsetDateTime;

use kds_proto::mesh::v1alpha1 as mesh_pb;
use kds_proto::system::v1alpha1 as system_pb;

use crate::registry::ResourceType;

/// Identifies one resource: type, mesh (empty for global-scoped types) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    pub kind: ResourceType,
    pub mesh: String,
    pub name: String,
}

impl ResourceKey {
    pub fn new(kind: ResourceType, mesh: impl Into<String>, name: impl Into<String>) -> Self {
        let mesh = if kind.is_mesh_scoped() {
            mesh.into()
        } else {
            String::new()
        };
        ResourceKey {
            kind,
            mesh,
            name: name.into(),
        }
    }

    /// The key of a global-scoped resource.
    pub fn global(kind: ResourceType, name: impl Into<String>) -> Self {
        ResourceKey::new(kind, "", name)
    }
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mesh.is_empty() {
            write!(f, "{} {:?}", self.kind, self.name)
        } else {
            write!(f, "{} {:?} in mesh {:?}", self.kind, self.name, self.mesh)
        }
    }
}

/// The part of a resource every type shares.
#[derive(Clone, Debug, PartialEq)]
pub struct Meta {
    pub name: String,
    /// Empty for global-scoped types.
    pub mesh: String,
    /// Optimistic-concurrency counter kept by the store; 0 before the first write.
    pub version: u64,
    pub creation_time: OffsetDateTime,
    pub modification_time: OffsetDateTime,
    pub labels: BTreeMap<String, String>,
}

impl Meta {
    pub fn new(mesh: impl Into<String>, name: impl Into<String>) -> Self {
        Meta {
            name: name.into(),
            mesh: mesh.into(),
            version: 0,
            creation_time: OffsetDateTime::UNIX_EPOCH,
            modification_time: OffsetDateTime::UNIX_EPOCH,
            labels: BTreeMap::new(),
        }
    }
}

/// A resource of any registered type.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    pub meta: Meta,
    pub spec: Spec,
}

impl Resource {
    /// A resource of `spec`'s type; the mesh is dropped for global-scoped types.
    pub fn new(mesh: impl Into<String>, name: impl Into<String>, spec: Spec) -> Self {
        let mesh = if spec.kind().is_mesh_scoped() {
            mesh.into()
        } else {
            String::new()
        };
        Resource {
            meta: Meta::new(mesh, name),
            spec,
        }
    }

    pub fn kind(&self) -> ResourceType {
        self.spec.kind()
    }

    pub fn key(&self) -> ResourceKey {
        ResourceKey {
            kind: self.kind(),
            mesh: self.meta.mesh.clone(),
            name: self.meta.name.clone(),
        }
    }

    /// The name users know it by: the `kuma.io/display-name` label, else the name.
    pub fn display_name(&self) -> &str {
        match self.meta.labels.get(crate::labels::DISPLAY_NAME) {
            Some(d) if !d.is_empty() => d,
            _ => &self.meta.name,
        }
    }

    pub fn with_labels<'a>(mut self, labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        for (k, v) in labels {
            self.meta.labels.insert(k.to_string(), v.to_string());
        }
        self
    }
}

/// Why a spec could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error("{kind} spec: {message}")]
    Json { kind: ResourceType, message: String },
    #[error("{kind} spec: invalid protobuf: {message}")]
    Proto { kind: ResourceType, message: String },
}

macro_rules! specs {
    ($( $kind:ident => $ty:ty ),* $(,)?) => {
        /// The typed spec of a resource; the variant names its type.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Spec { $( $kind($ty) ),* }

        impl Spec {
            pub fn kind(&self) -> ResourceType {
                match self { $( Spec::$kind(_) => ResourceType::$kind ),* }
            }

            /// An empty spec of `kind`.
            pub fn default_for(kind: ResourceType) -> Spec {
                match kind { $( ResourceType::$kind => Spec::$kind(<$ty>::default()) ),* }
            }

            /// Deterministic protobuf encoding (the bytes of a KDS `Any`).
            pub fn encode_proto(&self) -> Vec<u8> {
                match self { $( Spec::$kind(m) => m.encode_to_vec() ),* }
            }

            pub fn decode_proto(kind: ResourceType, bytes: &[u8]) -> Result<Spec, SpecError> {
                let err = |e: prost::DecodeError| SpecError::Proto { kind, message: e.to_string() };
                Ok(match kind { $( ResourceType::$kind => Spec::$kind(<$ty>::decode(bytes).map_err(err)?) ),* })
            }
        }
    };
}

specs! {
    Mesh => mesh_pb::Mesh,
    Zone => system_pb::Zone,
    ZoneInsight => system_pb::ZoneInsight,
    ZoneIngress => mesh_pb::ZoneIngress,
    ZoneIngressInsight => mesh_pb::ZoneIngressInsight,
    GlobalSecret => system_pb::Secret,
    Config => system_pb::Config,
    Dataplane => mesh_pb::Dataplane,
    DataplaneInsight => mesh_pb::DataplaneInsight,
    Secret => system_pb::Secret,
    ExternalService => mesh_pb::ExternalService,
    CircuitBreaker => mesh_pb::CircuitBreaker,
    FaultInjection => mesh_pb::FaultInjection,
    HealthCheck => mesh_pb::HealthCheck,
    ProxyTemplate => mesh_pb::ProxyTemplate,
    RateLimit => mesh_pb::RateLimit,
    Retry => mesh_pb::Retry,
    Timeout => mesh_pb::Timeout,
    TrafficLog => mesh_pb::TrafficLog,
    TrafficPermission => mesh_pb::TrafficPermission,
    TrafficRoute => mesh_pb::TrafficRoute,
    TrafficTrace => mesh_pb::TrafficTrace,
}

fn message_descriptor(kind: ResourceType) -> prost_reflect::MessageDescriptor {
    let name = kind.descriptor().spec_proto;
    kds_proto::descriptor_pool()
        .get_message_by_name(name)
        .unwrap_or_else(|| panic!("registry names {name}, which kds-proto does not define"))
}

/// Go's protojson prints a double that holds a whole number without a fraction (`2048`, not
/// `2048.0`); Struct values (`conf: {port: 5670}`) are doubles, so users would see the
/// difference.
fn whole_floats_as_integers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(n) => {
            if let Some(f) = n.as_f64()
                && n.is_f64()
                && f.fract() == 0.0
                && f.abs() < 9.0e15
            {
                *n = serde_json::Number::from(f as i64);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(whole_floats_as_integers),
        serde_json::Value::Object(map) => map.values_mut().for_each(whole_floats_as_integers),
        _ => {}
    }
}

/// Map fields (tags, selectors) and Struct values (`conf`) come out of prost-reflect in hash
/// order; Go sorts them. Sorting keeps output stable between runs and equal to Kuma's.
fn sort_map_keys(value: &mut serde_json::Value, desc: &prost_reflect::MessageDescriptor) {
    use prost_reflect::Kind;
    if desc.full_name() == "google.protobuf.Struct" {
        sort_all_objects(value);
        return;
    }
    let serde_json::Value::Object(object) = value else {
        return;
    };
    for (key, item) in object.iter_mut() {
        let Some(field) = desc
            .fields()
            .find(|f| f.json_name() == key || f.name() == key)
        else {
            continue;
        };
        let Kind::Message(message) = field.kind() else {
            continue;
        };
        if field.is_map() {
            if let serde_json::Value::Object(entries) = item {
                entries.sort_keys();
                if let Kind::Message(values) = message.map_entry_value_field().kind() {
                    entries.values_mut().for_each(|v| sort_map_keys(v, &values));
                }
            }
        } else if field.is_list() {
            if let serde_json::Value::Array(items) = item {
                items.iter_mut().for_each(|v| sort_map_keys(v, &message));
            }
        } else {
            sort_map_keys(item, &message);
        }
    }
}

fn sort_all_objects(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.sort_keys();
            map.values_mut().for_each(sort_all_objects);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(sort_all_objects),
        _ => {}
    }
}

impl Spec {
    /// The proto3 JSON form (camelCase names, default values left out) as Kuma renders it.
    pub fn to_json(&self) -> serde_json::Value {
        let desc = message_descriptor(self.kind());
        let bytes = self.encode_proto();
        // Our own encoding of a message of this descriptor always decodes.
        let dynamic = DynamicMessage::decode(desc, bytes.as_slice())
            .unwrap_or_else(|e| panic!("re-decoding own {} spec: {e}", self.kind()));
        let options = SerializeOptions::new().skip_default_fields(true);
        let mut value = dynamic
            .serialize_with_options(serde_json::value::Serializer, &options)
            .unwrap_or_else(|e| panic!("serializing own {} spec: {e}", self.kind()));
        whole_floats_as_integers(&mut value);
        sort_map_keys(&mut value, &message_descriptor(self.kind()));
        value
    }

    /// Parses the proto3 JSON form; both camelCase and snake_case names are accepted.
    /// With `deny_unknown` a field the type does not have is an error that names it.
    pub fn from_json(
        kind: ResourceType,
        value: &serde_json::Value,
        deny_unknown: bool,
    ) -> Result<Spec, SpecError> {
        let desc = message_descriptor(kind);
        let options = DeserializeOptions::new().deny_unknown_fields(deny_unknown);
        let dynamic =
            DynamicMessage::deserialize_with_options(desc, value, &options).map_err(|e| {
                SpecError::Json {
                    kind,
                    message: e.to_string(),
                }
            })?;
        Spec::decode_proto(kind, &dynamic.encode_to_vec())
    }

    /// The JSON text stored in a database column.
    pub fn to_json_string(&self) -> String {
        self.to_json().to_string()
    }

    /// Reads the JSON text stored in a database column (unknown fields tolerated, as a newer
    /// writer may have added some).
    pub fn from_json_str(kind: ResourceType, text: &str) -> Result<Spec, SpecError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| SpecError::Json {
            kind,
            message: e.to_string(),
        })?;
        Spec::from_json(kind, &value, false)
    }
}
