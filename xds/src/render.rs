//! Proto3 JSON and YAML of Envoy messages, through an embedded descriptor
//! set of the Envoy protos (`build.rs`): `Any` values come out with their
//! `@type`, durations as `"5s"`, enums by name, as Envoy and
//! `/config_dump` write them. Used by the golden tests and to write Envoy
//! bootstraps; later by inspect endpoints.
//!
//! Pure: no I/O.

use std::sync::LazyLock;

use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MessageDescriptor, SerializeOptions};
use serde_json::Value;

use crate::generate::EnvoyResources;

/// Encoded `google.protobuf.FileDescriptorSet` of the Envoy protos this crate uses.
const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/envoy_descriptor.bin"));

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    // The bytes come from our build script, so a failure is a build defect,
    // never bad input.
    #[allow(clippy::expect_used)]
    DescriptorPool::decode(FILE_DESCRIPTOR_SET)
        .expect("xds: embedded FILE_DESCRIPTOR_SET must decode")
});

/// Why a message could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("{0} is not in the embedded Envoy descriptor set (add its .proto to xds/build.rs)")]
    UnknownMessage(String),
    #[error("{message}: {reason}")]
    Decode { message: String, reason: String },
    #[error("{message}: proto3 JSON: {reason}")]
    Json { message: String, reason: String },
    #[error("YAML: {0}")]
    Yaml(String),
}

/// Descriptors of the Envoy messages this crate generates and every message
/// they contain or pack into an `Any`.
pub fn descriptor_pool() -> &'static DescriptorPool {
    &POOL
}

/// The proto3 JSON of an Envoy message (default fields omitted, map keys sorted).
pub fn to_json<M: prost::Message + prost::Name>(message: &M) -> Result<Value, RenderError> {
    let name = M::full_name();
    let descriptor = descriptor_pool()
        .get_message_by_name(&name)
        .ok_or_else(|| RenderError::UnknownMessage(name.clone()))?;
    let dynamic = DynamicMessage::decode(descriptor.clone(), message.encode_to_vec().as_slice())
        .map_err(|e| RenderError::Decode {
            message: name.clone(),
            reason: e.to_string(),
        })?;
    let mut value = dynamic
        .serialize_with_options(serde_json::value::Serializer, &SerializeOptions::new())
        .map_err(|e| RenderError::Json {
            message: name,
            reason: e.to_string(),
        })?;
    sort_map_fields(&mut value, &descriptor);
    Ok(value)
}

/// Proto map fields come out of prost-reflect in hash order; sorting their
/// keys makes the output stable. Fields keep their proto order (name first),
/// which reads like Envoy's own documentation. `Any` values are followed
/// through their `@type`.
fn sort_map_fields(value: &mut Value, descriptor: &MessageDescriptor) {
    let Value::Object(object) = value else {
        return;
    };
    if descriptor.full_name() == "google.protobuf.Any" {
        let inner = object
            .get("@type")
            .and_then(Value::as_str)
            .and_then(|url| url.rsplit('/').next())
            .and_then(|name| descriptor_pool().get_message_by_name(name));
        if let Some(inner) = inner {
            sort_map_fields(value, &inner);
        }
        return;
    }
    for (key, item) in object.iter_mut() {
        let Some(field) = descriptor
            .fields()
            .find(|f| f.json_name() == key || f.name() == key)
        else {
            continue;
        };
        if field.is_map() {
            let Value::Object(map) = item else { continue };
            map.sort_keys();
            if let Kind::Message(entry) = field.kind()
                && let Kind::Message(values) = entry.map_entry_value_field().kind()
            {
                map.values_mut().for_each(|v| sort_map_fields(v, &values));
            }
        } else if let Kind::Message(inner) = field.kind() {
            match item {
                Value::Array(items) => items.iter_mut().for_each(|v| sort_map_fields(v, &inner)),
                other => sort_map_fields(other, &inner),
            }
        }
    }
}

/// `{type URL: [resource JSON, ...]}` for every type, resources by name.
pub fn resources_to_json(resources: &EnvoyResources) -> Result<Value, RenderError> {
    use crate::generate::{CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL, LISTENER_TYPE_URL};
    let mut out = serde_json::Map::new();
    let clusters = resources.clusters.iter().map(to_json);
    out.insert(
        CLUSTER_TYPE_URL.into(),
        Value::Array(clusters.collect::<Result<_, _>>()?),
    );
    let assignments = resources.load_assignments.iter().map(|a| to_json(&**a));
    out.insert(
        ENDPOINT_TYPE_URL.into(),
        Value::Array(assignments.collect::<Result<_, _>>()?),
    );
    let listeners = resources.listeners.iter().map(to_json);
    out.insert(
        LISTENER_TYPE_URL.into(),
        Value::Array(listeners.collect::<Result<_, _>>()?),
    );
    Ok(Value::Object(out))
}

/// The YAML form of [`resources_to_json`]: what the golden files hold.
pub fn resources_to_yaml(resources: &EnvoyResources) -> Result<String, RenderError> {
    serde_yaml_ng::to_string(&resources_to_json(resources)?)
        .map_err(|e| RenderError::Yaml(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use envoy_types::pb::envoy::config::listener::v3::Listener;
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;

    use super::*;

    #[test]
    fn renders_proto3_json_with_default_fields_omitted() {
        let listener = Listener {
            name: "inbound:10.0.0.1:80".into(),
            ..Default::default()
        };
        assert_eq!(
            to_json(&listener).unwrap(),
            serde_json::json!({"name": "inbound:10.0.0.1:80"})
        );
    }

    #[test]
    fn a_message_outside_the_descriptor_set_is_an_error() {
        assert_eq!(
            to_json(&DiscoveryRequest::default()).unwrap_err(),
            RenderError::UnknownMessage("envoy.service.discovery.v3.DiscoveryRequest".into())
        );
    }
}
