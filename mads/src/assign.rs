//! Monitoring assignments as a pure function of (meshes, dataplanes)
//! (reference: `kuma-api.md` §7.2).
//!
//! One [`Assignment`] per Dataplane whose Mesh enables a `prometheus`
//! metrics backend: its mesh, its identifying service, and one target (the
//! dataplane's name, `http`/`https`, `{address}:{port}`, the metrics path and
//! Kuma's labels from its tags, see [`dataplane_labels`]). The endpoint is
//! [`xds::metrics::prometheus_endpoint`], the same one the proxy's listener
//! is generated from. Pure: no I/O, no clock.

use std::collections::{BTreeMap, BTreeSet};

use model::{Resource, Spec};
use serde::Serialize;

/// `Any.type_url` of a MonitoringAssignment.
pub const ASSIGNMENT_TYPE_URL: &str =
    "type.googleapis.com/kuma.observability.v1.MonitoringAssignment";

/// One MonitoringAssignment, in the field order and with the proto (snake
/// case) names of its proto-JSON; empty fields are left out, as protojson
/// does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assignment {
    #[serde(rename = "@type")]
    pub type_url: &'static str,
    pub mesh: String,
    pub service: String,
    pub targets: Vec<Target>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// One scrape target of an [`Assignment`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    pub name: String,
    pub scheme: String,
    pub address: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub metrics_path: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A dataplane that could not be assigned (its metrics configuration is
/// invalid); the others are assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub mesh: String,
    pub dataplane: String,
    pub reason: String,
}

/// The assignment of `dataplane` in `mesh`: `Ok(None)` when the mesh
/// enables no prometheus metrics backend.
pub fn assignment(mesh: &Resource, dataplane: &Resource) -> Result<Option<Assignment>, Skipped> {
    let skipped = |reason: String| Skipped {
        mesh: dataplane.meta.mesh.clone(),
        dataplane: dataplane.meta.name.clone(),
        reason,
    };
    let endpoint = match xds::metrics::prometheus_endpoint(mesh, dataplane) {
        Ok(Some(endpoint)) => endpoint,
        Ok(None) => return Ok(None),
        Err(e) => return Err(skipped(e.to_string())),
    };
    if endpoint.address.is_empty() {
        return Err(skipped("networking.address is empty".into()));
    }
    let address = match endpoint.address.parse::<std::net::Ipv6Addr>() {
        Ok(_) => format!("[{}]:{}", endpoint.address, endpoint.port),
        Err(_) => format!("{}:{}", endpoint.address, endpoint.port),
    };
    Ok(Some(Assignment {
        type_url: ASSIGNMENT_TYPE_URL,
        mesh: dataplane.meta.mesh.clone(),
        service: xds::bootstrap::node_cluster(dataplane),
        targets: vec![Target {
            name: dataplane.meta.name.clone(),
            scheme: endpoint.scheme.to_string(),
            address,
            metrics_path: endpoint.path,
            labels: dataplane_labels(dataplane),
        }],
        labels: BTreeMap::new(),
    }))
}

/// Every assignment of `dataplanes` (each paired with its mesh by name from
/// `meshes`), sorted by (mesh, dataplane name), and those skipped.
pub fn assignments(
    meshes: &[Resource],
    dataplanes: &[Resource],
) -> (Vec<Assignment>, Vec<Skipped>) {
    let by_name: BTreeMap<&str, &Resource> =
        meshes.iter().map(|m| (m.meta.name.as_str(), m)).collect();
    let mut sorted: Vec<&Resource> = dataplanes.iter().collect();
    sorted.sort_by(|a, b| (&a.meta.mesh, &a.meta.name).cmp(&(&b.meta.mesh, &b.meta.name)));
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for dataplane in sorted {
        let Some(mesh) = by_name.get(dataplane.meta.mesh.as_str()) else {
            continue;
        };
        match assignment(mesh, dataplane) {
            Ok(Some(a)) => out.push(a),
            Ok(None) => {}
            Err(s) => skipped.push(s),
        }
    }
    (out, skipped)
}

/// Kuma's target labels of a dataplane: for every tag key `k` of its
/// inbounds and gateway (sanitised, see [`sanitize_label_name`]), `k` = the
/// first of its values in sorted order and `k` + `s` = `,v1,v2,` (every
/// value, sorted): `kuma_io_service="web"`, `kuma_io_services=",web,"`.
pub fn dataplane_labels(dataplane: &Resource) -> BTreeMap<String, String> {
    let mut values: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    if let Spec::Dataplane(dp) = &dataplane.spec
        && let Some(networking) = &dp.networking
    {
        let inbound_tags = networking.inbound.iter().map(|i| &i.tags);
        let gateway_tags = networking.gateway.iter().map(|g| &g.tags);
        for tag_map in inbound_tags.chain(gateway_tags) {
            for (k, v) in tag_map {
                values.entry(k).or_default().insert(v);
            }
        }
    }
    let mut labels = BTreeMap::new();
    for (key, set) in values {
        let Some(first) = set.iter().next() else {
            continue;
        };
        let joined: Vec<&str> = set.iter().copied().collect();
        labels.insert(sanitize_label_name(key), (*first).to_string());
        labels.insert(
            sanitize_label_name(&format!("{key}s")),
            format!(",{},", joined.join(",")),
        );
    }
    labels
}

/// A Prometheus label name: every character outside `[a-zA-Z0-9_]` becomes
/// `_` (`kuma.io/service` → `kuma_io_service`).
pub fn sanitize_label_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(yaml: &str) -> Vec<Resource> {
        model::format::parse_documents(yaml).unwrap()
    }

    const MESH_WITH_METRICS: &str = "type: Mesh\nname: default\nmetrics:\n  enabledBackend: prometheus-1\n  backends:\n  - name: prometheus-1\n    type: prometheus\n";

    const WEB: &str = "type: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  address: 10.0.0.1\n  inbound:\n  - port: 8080\n    tags:\n      kuma.io/service: web\n      version: v2\n  - port: 8081\n    tags:\n      kuma.io/service: web-admin\n      version: v1\n";

    #[test]
    fn a_dataplane_gets_kumas_labels() {
        let meshes = parse(MESH_WITH_METRICS);
        let dataplanes = parse(WEB);
        let (assignments, skipped) = assignments(&meshes, &dataplanes);
        assert!(skipped.is_empty());
        assert_eq!(assignments.len(), 1);
        let json = serde_json::to_value(&assignments[0]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "@type": ASSIGNMENT_TYPE_URL,
                "mesh": "default",
                "service": "web",
                "targets": [{
                    "name": "web-1",
                    "scheme": "http",
                    "address": "10.0.0.1:5670",
                    "metrics_path": "/metrics",
                    "labels": {
                        "kuma_io_service": "web",
                        "kuma_io_services": ",web,web-admin,",
                        "version": "v1",
                        "versions": ",v1,v2,",
                    },
                }],
            })
        );
    }

    #[test]
    fn a_dataplane_override_changes_port_and_path() {
        let meshes = parse(MESH_WITH_METRICS);
        let dataplanes = parse(&format!(
            "{WEB}metrics:\n  type: prometheus\n  conf:\n    port: 9999\n    path: /own\n"
        ));
        let (assignments, _) = assignments(&meshes, &dataplanes);
        let target = &assignments[0].targets[0];
        assert_eq!(
            (target.address.as_str(), target.metrics_path.as_str()),
            ("10.0.0.1:9999", "/own")
        );
    }

    #[test]
    fn meshes_without_metrics_produce_nothing() {
        let meshes = parse(
            "type: Mesh\nname: default\n---\ntype: Mesh\nname: other\nmetrics:\n  backends:\n  - name: prometheus-1\n    type: prometheus\n",
        );
        let dataplanes = parse(&format!(
            "{WEB}---\n{}",
            WEB.replace("mesh: default", "mesh: other")
        ));
        let (assignments, skipped) = assignments(&meshes, &dataplanes);
        assert!(assignments.is_empty(), "{assignments:?}");
        assert!(skipped.is_empty());
    }

    #[test]
    fn dataplanes_without_their_mesh_are_ignored_and_order_is_by_mesh_then_name() {
        let meshes = parse(MESH_WITH_METRICS);
        let dataplanes = parse(&format!(
            "{}---\n{WEB}---\n{}",
            WEB.replace("web-1", "web-2"),
            WEB.replace("mesh: default", "mesh: gone")
        ));
        let (assignments, _) = assignments(&meshes, &dataplanes);
        let names: Vec<_> = assignments
            .iter()
            .map(|a| a.targets[0].name.as_str())
            .collect();
        assert_eq!(names, ["web-1", "web-2"]);
    }

    #[test]
    fn an_invalid_metrics_conf_skips_the_dataplane_with_a_reason() {
        let meshes = parse(MESH_WITH_METRICS);
        let dataplanes = parse(&format!(
            "{WEB}metrics:\n  type: prometheus\n  conf:\n    port: 123456\n"
        ));
        let (assignments, skipped) = assignments(&meshes, &dataplanes);
        assert!(assignments.is_empty());
        assert_eq!(skipped.len(), 1);
        assert!(
            skipped[0]
                .reason
                .contains("dataplane web-1: metrics.conf.port"),
            "{:?}",
            skipped[0]
        );
    }

    #[test]
    fn label_names_are_sanitised() {
        assert_eq!(sanitize_label_name("kuma.io/zone"), "kuma_io_zone");
        assert_eq!(sanitize_label_name("a-b c"), "a_b_c");
    }
}
