//! The gRPC metadata and node metadata of KDS connections (reference §1.5, §1.6): what a zone
//! sends, read by the global.

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::{ListValue, Struct, Value, value::Kind};
use tonic::metadata::{AsciiMetadataValue, MetadataMap};

pub const CLIENT_ID: &str = "client-id";
pub const KDS_VERSION: &str = "kds-version";
pub const FEATURES: &str = "features";
pub const VERSION: &str = "version";
pub const AUTHORIZATION: &str = "authorization";

/// Features a kuma-rs zone advertises (as two separate metadata entries).
pub const ZONE_FEATURES: &[&str] = &["zone-ping-health", "hash-suffix"];

/// The first value of `key`, when it is printable text.
pub fn text(metadata: &MetadataMap, key: &str) -> Option<String> {
    metadata
        .get(key)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Every value of `key`.
pub fn all(metadata: &MetadataMap, key: &str) -> Vec<String> {
    metadata
        .get_all(key)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect()
}

/// The bearer token of `authorization`, if one was sent.
pub fn bearer(metadata: &MetadataMap) -> Option<String> {
    let value = text(metadata, AUTHORIZATION)?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .unwrap_or(&value)
        .trim();
    (!token.is_empty()).then(|| token.to_string())
}

/// Why metadata could not be attached.
#[derive(Debug, thiserror::Error)]
#[error("{key}: value cannot be sent as gRPC metadata (printable ASCII only)")]
pub struct BadValue {
    pub key: &'static str,
}

/// The metadata a zone attaches to every KDS call.
pub fn zone_metadata(
    zone: &str,
    version: &str,
    token: Option<&str>,
) -> Result<MetadataMap, BadValue> {
    let value = |key: &'static str, text: &str| {
        text.parse::<AsciiMetadataValue>()
            .map_err(|_| BadValue { key })
    };
    let mut metadata = MetadataMap::new();
    metadata.insert(CLIENT_ID, value(CLIENT_ID, zone)?);
    metadata.insert(KDS_VERSION, value(KDS_VERSION, "v3")?);
    for feature in ZONE_FEATURES {
        metadata.append(FEATURES, value(FEATURES, feature)?);
    }
    metadata.insert(VERSION, value(VERSION, version)?);
    if let Some(token) = token {
        metadata.insert(
            AUTHORIZATION,
            value(AUTHORIZATION, &format!("Bearer {token}"))?,
        );
    }
    Ok(metadata)
}

fn string(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.to_string())),
    }
}

/// The node of a KDS delta request: id = zone name, metadata with the control plane id, the
/// sender's config (JSON, secrets removed) and its features.
pub fn node(zone: &str, control_plane_id: &str, config: &str) -> Node {
    let mut fields = std::collections::HashMap::new();
    fields.insert("control-plane-id".to_string(), string(control_plane_id));
    fields.insert("config".to_string(), string(config));
    fields.insert(
        "features".to_string(),
        Value {
            kind: Some(Kind::ListValue(ListValue {
                values: ["hash-suffix"].iter().map(|f| string(f)).collect(),
            })),
        },
    );
    Node {
        id: zone.to_string(),
        metadata: Some(Struct {
            fields: fields.into_iter().collect(),
        }),
        ..Default::default()
    }
}

/// `(config, control-plane-id)` from a node's metadata; empty when absent.
pub fn node_config(node: &Node) -> (String, String) {
    let field = |name: &str| {
        node.metadata
            .as_ref()
            .and_then(|m| m.fields.get(name))
            .and_then(|v| match &v.kind {
                Some(Kind::StringValue(s)) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default()
    };
    (field("config"), field("control-plane-id"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_metadata_carries_identity_features_and_token() {
        let md = zone_metadata("zone-1", "0.1.0", Some("abc")).expect("metadata");
        assert_eq!(text(&md, CLIENT_ID).as_deref(), Some("zone-1"));
        assert_eq!(all(&md, FEATURES), vec!["zone-ping-health", "hash-suffix"]);
        assert_eq!(bearer(&md).as_deref(), Some("abc"));
        assert!(zone_metadata("zone\n1", "0.1.0", None).is_err());
    }

    #[test]
    fn node_metadata_round_trips() {
        let n = node("zone-1", "cp-1", "{}");
        assert_eq!(node_config(&n), ("{}".to_string(), "cp-1".to_string()));
    }
}
