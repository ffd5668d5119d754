//! Endpoints about the control plane itself: `/` (index), `/who-am-i`, `/config`,
//! `/versions`, `/_resources` (for `kumactl export`) and `/policies` (for the GUI).

use axum::Extension;
use axum::extract::State;
use model::{ResourceType, Scope, SyncDirection};
use serde_json::{Map, Value, json};

use super::ApiState;
use super::json::Json;
use crate::auth::Identity;

/// `GET /`. `tagline` is what kumactl ≤ 2.8 checks, `product` what later ones check.
pub(super) async fn index(State(state): State<ApiState>) -> Json<Value> {
    let info = &state.settings.info;
    Json(json!({
        "hostname": info.hostname,
        "tagline": info.product,
        "product": info.product,
        "version": info.version,
        "instanceId": info.instance_id,
        "clusterId": info.cluster_id,
        "gui": info.gui,
    }))
}

/// `GET /who-am-i`.
pub(super) async fn who_am_i(identity: Option<Extension<Identity>>) -> Json<Value> {
    let identity = identity
        .map(|Extension(i)| i)
        .unwrap_or_else(Identity::anonymous);
    Json(json!({ "name": identity.name, "groups": identity.groups }))
}

/// `GET /config`: the sanitized config (secrets masked).
pub(super) async fn config(State(state): State<ApiState>) -> Json<Value> {
    Json(state.settings.config.clone())
}

/// `GET /versions` (Kuma 1.2–1.7): which Envoy each kuma-dp version runs. This build's
/// kuma-dp is the only one it knows.
pub(super) async fn versions(State(state): State<ApiState>) -> Json<Value> {
    let mut kuma_dp = Map::new();
    kuma_dp.insert(state.settings.info.version.clone(), json!({ "envoy": "*" }));
    Json(json!({ "kumaDp": kuma_dp }))
}

/// `TrafficPermission` → `Traffic Permission`.
pub(crate) fn singular_display_name(type_name: &str) -> String {
    let mut out = String::with_capacity(type_name.len() + 4);
    for (i, c) in type_name.chars().enumerate() {
        if i > 0 && c.is_ascii_uppercase() {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// `Traffic Permission` → `Traffic Permissions`, `Retry` → `Retries`, `Mesh` → `Meshes`.
pub(crate) fn plural_display_name(type_name: &str) -> String {
    let singular = singular_display_name(type_name);
    if let Some(stem) = singular.strip_suffix('y')
        && !stem.ends_with(['a', 'e', 'i', 'o', 'u'])
    {
        return format!("{stem}ies");
    }
    if singular.ends_with('s')
        || singular.ends_with("sh")
        || singular.ends_with("ch")
        || singular.ends_with('x')
    {
        return format!("{singular}es");
    }
    format!("{singular}s")
}

/// Short names Kuma gives types (used in KRIs and by kumactl).
fn short_name(kind: ResourceType) -> Option<&'static str> {
    match kind {
        ResourceType::Mesh => Some("m"),
        ResourceType::Dataplane => Some("dp"),
        _ => None,
    }
}

/// Whether users can write `kind` here.
fn read_only(state: &ApiState, kind: ResourceType) -> bool {
    state.settings.read_only || kind.descriptor().is_read_only(state.settings.mode)
}

/// `GET /_resources`: every type with a REST path, sorted by name
/// (`pkg/api-server/mappers/resource_type_description.go`), plus the kumactl arguments.
pub(super) async fn resource_types(State(state): State<ApiState>) -> Json<Value> {
    let mut kinds: Vec<ResourceType> = ResourceType::ALL
        .iter()
        .copied()
        .filter(|k| k.descriptor().has_rest)
        .collect();
    kinds.sort_by_key(|k| k.name());
    let resources: Vec<Value> = kinds
        .into_iter()
        .map(|kind| {
            let d = kind.descriptor();
            let mut item = Map::new();
            item.insert(
                "includeInFederation".into(),
                json!(d.sync == SyncDirection::GlobalToZone),
            );
            item.insert("name".into(), json!(d.name));
            item.insert("path".into(), json!(d.plural));
            item.insert(
                "pluralDisplayName".into(),
                json!(plural_display_name(d.name)),
            );
            if d.is_policy {
                item.insert(
                    "policy".into(),
                    json!({
                        "hasFromTargetRef": false,
                        "hasToTargetRef": false,
                        "isFromAsRules": false,
                        "isTargetRef": false,
                    }),
                );
            }
            item.insert("readOnly".into(), json!(read_only(&state, kind)));
            item.insert(
                "scope".into(),
                json!(match d.scope {
                    Scope::Global => "Global",
                    Scope::Mesh => "Mesh",
                }),
            );
            item.insert(
                "singularDisplayName".into(),
                json!(singular_display_name(d.name)),
            );
            item.insert("kumactlArg".into(), json!(d.cli_singular));
            item.insert("kumactlListArg".into(), json!(d.cli_plural));
            if let Some(short) = short_name(kind) {
                item.insert("shortName".into(), json!(short));
            }
            Value::Object(item)
        })
        .collect();
    Json(json!({ "resources": resources }))
}

/// `GET /policies`: the classic policy types, sorted by name (`pkg/api-server/policies_endpoints.go`).
pub(super) async fn policies(State(state): State<ApiState>) -> Json<Value> {
    let mut kinds: Vec<ResourceType> = ResourceType::ALL
        .iter()
        .copied()
        .filter(|k| k.descriptor().is_policy && k.descriptor().has_rest)
        .collect();
    kinds.sort_by_key(|k| k.name());
    let policies: Vec<Value> = kinds
        .into_iter()
        .map(|kind| {
            let d = kind.descriptor();
            json!({
                "name": d.name,
                "readOnly": read_only(&state, kind),
                "path": d.plural,
                "singularDisplayName": singular_display_name(d.name),
                "pluralDisplayName": plural_display_name(d.name),
                "isExperimental": false,
                "isTargetRefBased": false,
                "isInbound": false,
                "isOutbound": false,
            })
        })
        .collect();
    Json(json!({ "policies": policies }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_like_kuma() {
        let cases = [
            (
                "TrafficPermission",
                "Traffic Permission",
                "Traffic Permissions",
            ),
            ("Retry", "Retry", "Retries"),
            ("Mesh", "Mesh", "Meshes"),
            ("ZoneIngress", "Zone Ingress", "Zone Ingresses"),
            ("HealthCheck", "Health Check", "Health Checks"),
            (
                "DataplaneInsight",
                "Dataplane Insight",
                "Dataplane Insights",
            ),
            ("GlobalSecret", "Global Secret", "Global Secrets"),
        ];
        for (name, singular, plural) in cases {
            assert_eq!(singular_display_name(name), singular);
            assert_eq!(plural_display_name(name), plural);
        }
    }
}
