//! Finds which field of a request body a spec parse error is about.
//!
//! `model::format` reports spec problems with the parser's message only ("invalid type:
//! string, expected a list"); users need the field. This walks the JSON along the spec's
//! protobuf descriptor with protojson's rules (camelCase or proto names, `null` = unset,
//! 64-bit integers as strings, well-known types in their JSON forms) and returns the path of
//! the first value that cannot be read, in the validator's form:
//! `networking.inbound[0].port`, `tags["kuma.io/service"]`.

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::Value;

use model::ResourceType;
use model::format::META_KEYS;

/// `(field path, reason)` of the first value of `body` that is not valid for `kind`'s spec.
pub(crate) fn bad_field(kind: ResourceType, body: &Value) -> Option<(String, String)> {
    let desc = kds_proto::descriptor_pool().get_message_by_name(kind.descriptor().spec_proto)?;
    let object = body.as_object()?;
    for (key, value) in object {
        if META_KEYS.contains(&key.as_str()) {
            continue;
        }
        if let Some(found) = check_key(&desc, key, value, key) {
            return Some(found);
        }
    }
    None
}

fn find_field(desc: &MessageDescriptor, key: &str) -> Option<FieldDescriptor> {
    desc.fields()
        .find(|f| f.json_name() == key || f.name() == key)
}

fn check_key(
    desc: &MessageDescriptor,
    key: &str,
    value: &Value,
    path: &str,
) -> Option<(String, String)> {
    let Some(field) = find_field(desc, key) else {
        return Some((path.to_string(), format!("unknown field {key:?}")));
    };
    check_field(&field, value, path)
}

fn check_field(field: &FieldDescriptor, value: &Value, path: &str) -> Option<(String, String)> {
    if value.is_null() {
        return None;
    }
    if field.is_map() {
        let Value::Object(map) = value else {
            return Some((path.to_string(), "must be an object".into()));
        };
        let value_kind = match field.kind() {
            Kind::Message(entry) => entry.map_entry_value_field().kind(),
            other => other,
        };
        return map
            .iter()
            .find_map(|(k, v)| check_kind(&value_kind, v, &format!("{path}[{k:?}]")));
    }
    if field.is_list() {
        let Value::Array(items) = value else {
            return Some((path.to_string(), "must be a list".into()));
        };
        let kind = field.kind();
        return items
            .iter()
            .enumerate()
            .find_map(|(i, v)| check_kind(&kind, v, &format!("{path}[{i}]")));
    }
    check_kind(&field.kind(), value, path)
}

fn integer_in(value: &Value, min: i128, max: i128) -> bool {
    let n: Option<i128> = match value {
        Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 1e38)
                    .map(|f| f as i128)
            }),
        Value::String(s) => s.trim().parse::<i128>().ok(),
        _ => None,
    };
    n.is_some_and(|n| (min..=max).contains(&n))
}

fn check_kind(kind: &Kind, value: &Value, path: &str) -> Option<(String, String)> {
    if value.is_null() {
        return None;
    }
    let fail = |reason: &str| Some((path.to_string(), reason.to_string()));
    match kind {
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            (!integer_in(value, i32::MIN.into(), i32::MAX.into()))
                .then(|| (path.to_string(), "must be a 32-bit integer".to_string()))
        }
        Kind::Uint32 | Kind::Fixed32 => (!integer_in(value, 0, u32::MAX.into())).then(|| {
            (
                path.to_string(),
                "must be an integer from 0 to 4294967295".to_string(),
            )
        }),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            (!integer_in(value, i64::MIN.into(), i64::MAX.into()))
                .then(|| (path.to_string(), "must be a 64-bit integer".to_string()))
        }
        Kind::Uint64 | Kind::Fixed64 => (!integer_in(value, 0, u64::MAX.into())).then(|| {
            (
                path.to_string(),
                "must be a non-negative 64-bit integer".to_string(),
            )
        }),
        Kind::Double | Kind::Float => match value {
            Value::Number(_) => None,
            Value::String(s)
                if matches!(s.as_str(), "NaN" | "Infinity" | "-Infinity")
                    || s.parse::<f64>().is_ok() =>
            {
                None
            }
            _ => fail("must be a number"),
        },
        Kind::Bool => {
            (!value.is_boolean()).then(|| (path.to_string(), "must be true or false".to_string()))
        }
        Kind::String => {
            (!value.is_string()).then(|| (path.to_string(), "must be a string".to_string()))
        }
        Kind::Bytes => {
            (!value.is_string()).then(|| (path.to_string(), "must be a base64 string".to_string()))
        }
        Kind::Enum(e) => {
            let ok = match value {
                Value::String(s) => e.get_value_by_name(s).is_some(),
                Value::Number(n) => n.as_i64().and_then(|n| i32::try_from(n).ok()).is_some(),
                _ => false,
            };
            if ok {
                None
            } else {
                let names: Vec<String> = e.values().map(|v| v.name().to_string()).collect();
                Some((
                    path.to_string(),
                    format!("must be one of {}", names.join(", ")),
                ))
            }
        }
        Kind::Message(m) => check_message(m, value, path),
    }
}

fn check_message(desc: &MessageDescriptor, value: &Value, path: &str) -> Option<(String, String)> {
    let fail = |reason: &str| Some((path.to_string(), reason.to_string()));
    match desc.full_name() {
        "google.protobuf.Duration" => {
            let ok = value
                .as_str()
                .is_some_and(|s| s.ends_with('s') && s[..s.len() - 1].parse::<f64>().is_ok());
            return if ok {
                None
            } else {
                fail("must be a duration like \"5s\" or \"0.5s\"")
            };
        }
        "google.protobuf.Timestamp" => {
            return if value.is_string() {
                None
            } else {
                fail("must be an RFC 3339 time")
            };
        }
        "google.protobuf.Value" => return None,
        "google.protobuf.Struct" | "google.protobuf.Any" => {
            return if value.is_object() {
                None
            } else {
                fail("must be an object")
            };
        }
        "google.protobuf.ListValue" => {
            return if value.is_array() {
                None
            } else {
                fail("must be a list")
            };
        }
        "google.protobuf.BoolValue"
        | "google.protobuf.StringValue"
        | "google.protobuf.BytesValue"
        | "google.protobuf.Int32Value"
        | "google.protobuf.UInt32Value"
        | "google.protobuf.Int64Value"
        | "google.protobuf.UInt64Value"
        | "google.protobuf.DoubleValue"
        | "google.protobuf.FloatValue" => {
            let inner = desc.get_field_by_name("value")?;
            return check_kind(&inner.kind(), value, path);
        }
        _ => {}
    }
    let Value::Object(object) = value else {
        return fail("must be an object");
    };
    object.iter().find_map(|(key, v)| {
        let child = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        check_key(desc, key, v, &child)
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(kind: ResourceType, body: Value) -> Option<(String, String)> {
        bad_field(kind, &body)
    }

    #[test]
    fn names_the_field() {
        let dp = json!({
            "type": "Dataplane", "name": "dp",
            "networking": { "address": "1.1.1.1", "inbound": [{ "port": 1 }, { "port": "abc" }] },
        });
        assert_eq!(
            check(ResourceType::Dataplane, dp).map(|(f, _)| f),
            Some("networking.inbound[1].port".into())
        );
        let tp = json!({ "sources": [{ "match": { "kuma.io/service": 5 } }] });
        assert_eq!(
            check(ResourceType::TrafficPermission, tp).map(|(f, _)| f),
            Some("sources[0].match[\"kuma.io/service\"]".into())
        );
        assert_eq!(
            check(ResourceType::TrafficPermission, json!({ "sourcez": [] })),
            Some(("sourcez".into(), "unknown field \"sourcez\"".into()))
        );
        assert_eq!(
            check(
                ResourceType::Dataplane,
                json!({ "networking": { "inbound": [{ "port": 70000000000u64 }] } })
            )
            .map(|(f, _)| f),
            Some("networking.inbound[0].port".into())
        );
        assert_eq!(
            check(
                ResourceType::Dataplane,
                json!({ "networking": { "transparent_proxying": { "redirectPortInbound": 15006 } } })
            ),
            None,
            "proto names are accepted"
        );
    }

    #[test]
    fn valid_bodies_pass() {
        let tp = json!({
            "type": "TrafficPermission", "name": "x", "mesh": "m", "labels": { "a": "b" },
            "sources": [{ "match": { "kuma.io/service": "*" } }],
            "destinations": [{ "match": { "kuma.io/service": "web" } }],
        });
        assert_eq!(check(ResourceType::TrafficPermission, tp), None);
    }
}
