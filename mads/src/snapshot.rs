//! One version of every monitoring assignment, with the bodies the server
//! sends, rendered once per version (not once per request):
//!
//! * the MADS `DiscoveryResponse` as proto-JSON with proto field names
//!   (`version_info`, `resources` with `@type`, `type_url`, `nonce`), what
//!   Prometheus's `kuma_sd` reads;
//! * the Prometheus HTTP service discovery list (rendered on first use);
//! * the gRPC `DiscoveryResponse` resources (encoded on first use).
//!
//! Each assignment's JSON is rendered once ([`Rendered`]) and kept by the
//! feed, so a new version joins the fragments instead of serializing every
//! assignment again.
//!
//! The version is a content hash of the assignments: equal assignments give
//! equal versions, also across restarts, so a client never refetches what it
//! has.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use envoy_types::pb::google::protobuf::Any;
use kds_proto::observability::v1::MonitoringAssignment;
use kds_proto::observability::v1::monitoring_assignment::Target as ProtoTarget;
use prost::Message;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::assign::{ASSIGNMENT_TYPE_URL, Assignment};

/// An assignment with its proto-JSON, rendered once: the feed keeps one per
/// dataplane and reuses it in every snapshot until the dataplane or its mesh
/// changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub assignment: Assignment,
    json: Vec<u8>,
}

impl Rendered {
    pub fn new(assignment: Assignment) -> Rendered {
        // Serializing our own plain structs cannot fail.
        let json = serde_json::to_vec(&assignment).unwrap_or_default();
        Rendered { assignment, json }
    }
}

/// The monitoring assignments at one version.
#[derive(Debug)]
pub struct Snapshot {
    version: String,
    assignments: Vec<Arc<Rendered>>,
    discovery_json: Bytes,
    http_sd_json: OnceLock<Bytes>,
    grpc_resources: OnceLock<Vec<Any>>,
}

impl Snapshot {
    /// The snapshot of `assignments` (in the order given).
    pub fn new(assignments: Vec<Assignment>) -> Snapshot {
        Snapshot::from_rendered(
            assignments
                .into_iter()
                .map(|a| Arc::new(Rendered::new(a)))
                .collect(),
        )
    }

    /// The snapshot of already rendered assignments (in the order given):
    /// their JSON is joined, not serialized again.
    pub fn from_rendered(assignments: Vec<Arc<Rendered>>) -> Snapshot {
        let size: usize = assignments.iter().map(|r| r.json.len() + 1).sum();
        let mut resources = Vec::with_capacity(size + 2);
        resources.push(b'[');
        for (i, rendered) in assignments.iter().enumerate() {
            if i > 0 {
                resources.push(b',');
            }
            resources.extend_from_slice(&rendered.json);
        }
        resources.push(b']');
        let digest = Sha256::digest(&resources);
        let version: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        let mut body = Vec::with_capacity(resources.len() + 200);
        body.extend_from_slice(b"{\"version_info\":\"");
        body.extend_from_slice(version.as_bytes());
        body.extend_from_slice(b"\",\"resources\":");
        body.extend_from_slice(&resources);
        body.extend_from_slice(b",\"type_url\":\"");
        body.extend_from_slice(ASSIGNMENT_TYPE_URL.as_bytes());
        body.extend_from_slice(b"\",\"nonce\":\"");
        body.extend_from_slice(version.as_bytes());
        body.extend_from_slice(b"\"}");
        Snapshot {
            version,
            assignments,
            discovery_json: Bytes::from(body),
            http_sd_json: OnceLock::new(),
            grpc_resources: OnceLock::new(),
        }
    }

    /// The content version (also the response nonce).
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn assignments(&self) -> impl Iterator<Item = &Assignment> {
        self.assignments.iter().map(|r| &r.assignment)
    }

    /// Number of scrape targets.
    pub fn targets(&self) -> usize {
        self.assignments().map(|a| a.targets.len()).sum()
    }

    /// The MADS `DiscoveryResponse` as proto-JSON (proto field names).
    pub fn discovery_response_json(&self) -> Bytes {
        self.discovery_json.clone()
    }

    /// The Prometheus HTTP SD body: one target group per target, with the
    /// labels `kuma_sd` gives a target (`__meta_kuma_mesh`,
    /// `__meta_kuma_service`, `__meta_kuma_dataplane`,
    /// `__meta_kuma_label_<name>` for every assignment then target label,
    /// `__metrics_path__`, `__scheme__` and `instance`).
    pub fn http_sd_json(&self) -> Bytes {
        self.http_sd_json
            .get_or_init(|| {
                let groups: Vec<TargetGroup<'_>> = self
                    .assignments()
                    .flat_map(|a| a.targets.iter().map(move |t| TargetGroup::of(a, t)))
                    .collect();
                Bytes::from(serde_json::to_vec(&groups).unwrap_or_else(|_| b"[]".to_vec()))
            })
            .clone()
    }

    /// The resources of the gRPC `DiscoveryResponse`.
    pub fn grpc_resources(&self) -> Vec<Any> {
        self.grpc_resources
            .get_or_init(|| {
                self.assignments()
                    .map(|a| Any {
                        type_url: ASSIGNMENT_TYPE_URL.to_string(),
                        value: to_proto(a).encode_to_vec(),
                    })
                    .collect()
            })
            .clone()
    }
}

/// The generated message of an [`Assignment`].
pub fn to_proto(assignment: &Assignment) -> MonitoringAssignment {
    let map = |m: &BTreeMap<String, String>| -> HashMap<String, String> {
        m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    MonitoringAssignment {
        mesh: assignment.mesh.clone(),
        service: assignment.service.clone(),
        targets: assignment
            .targets
            .iter()
            .map(|t| ProtoTarget {
                name: t.name.clone(),
                scheme: t.scheme.clone(),
                address: t.address.clone(),
                metrics_path: t.metrics_path.clone(),
                labels: map(&t.labels),
            })
            .collect(),
        labels: map(&assignment.labels),
    }
}

/// One Prometheus HTTP SD target group.
#[derive(Serialize)]
struct TargetGroup<'a> {
    targets: [&'a str; 1],
    labels: BTreeMap<String, &'a str>,
}

impl<'a> TargetGroup<'a> {
    fn of(assignment: &'a Assignment, target: &'a crate::assign::Target) -> TargetGroup<'a> {
        let mut labels = BTreeMap::new();
        labels.insert("__meta_kuma_mesh".to_string(), assignment.mesh.as_str());
        labels.insert(
            "__meta_kuma_service".to_string(),
            assignment.service.as_str(),
        );
        labels.insert("__meta_kuma_dataplane".to_string(), target.name.as_str());
        // Target labels win over assignment labels.
        for (k, v) in assignment.labels.iter().chain(&target.labels) {
            labels.insert(
                format!(
                    "__meta_kuma_label_{}",
                    crate::assign::sanitize_label_name(k)
                ),
                v.as_str(),
            );
        }
        if !target.metrics_path.is_empty() {
            labels.insert("__metrics_path__".to_string(), target.metrics_path.as_str());
        }
        labels.insert("__scheme__".to_string(), target.scheme.as_str());
        labels.insert("instance".to_string(), target.name.as_str());
        TargetGroup {
            targets: [target.address.as_str()],
            labels,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::assign::Target;

    fn sample() -> Vec<Assignment> {
        vec![Assignment {
            type_url: ASSIGNMENT_TYPE_URL,
            mesh: "default".into(),
            service: "web".into(),
            targets: vec![Target {
                name: "web-1".into(),
                scheme: "http".into(),
                address: "10.0.0.1:5670".into(),
                metrics_path: "/metrics".into(),
                labels: [("kuma_io_service".to_string(), "web".to_string())].into(),
            }],
            labels: BTreeMap::new(),
        }]
    }

    #[test]
    fn the_discovery_response_is_proto_json_with_proto_names() {
        let snapshot = Snapshot::new(sample());
        let json: serde_json::Value =
            serde_json::from_slice(&snapshot.discovery_response_json()).unwrap();
        assert_eq!(json["version_info"], snapshot.version());
        assert_eq!(json["nonce"], snapshot.version());
        assert_eq!(json["type_url"], ASSIGNMENT_TYPE_URL);
        assert_eq!(json["resources"][0]["@type"], ASSIGNMENT_TYPE_URL);
        assert_eq!(
            json["resources"][0]["targets"][0]["metrics_path"],
            "/metrics"
        );
    }

    #[test]
    fn the_version_follows_the_content() {
        assert_eq!(
            Snapshot::new(sample()).version(),
            Snapshot::new(sample()).version()
        );
        assert_ne!(
            Snapshot::new(sample()).version(),
            Snapshot::new(Vec::new()).version()
        );
    }

    #[test]
    fn http_sd_has_kuma_sd_labels() {
        let snapshot = Snapshot::new(sample());
        let json: serde_json::Value = serde_json::from_slice(&snapshot.http_sd_json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{
                "targets": ["10.0.0.1:5670"],
                "labels": {
                    "__meta_kuma_mesh": "default",
                    "__meta_kuma_service": "web",
                    "__meta_kuma_dataplane": "web-1",
                    "__meta_kuma_label_kuma_io_service": "web",
                    "__metrics_path__": "/metrics",
                    "__scheme__": "http",
                    "instance": "web-1",
                },
            }])
        );
    }

    #[test]
    fn grpc_resources_decode_as_monitoring_assignments() {
        let snapshot = Snapshot::new(sample());
        let resources = snapshot.grpc_resources();
        assert_eq!(resources[0].type_url, ASSIGNMENT_TYPE_URL);
        let decoded = MonitoringAssignment::decode(resources[0].value.as_slice()).unwrap();
        assert_eq!(decoded.targets[0].address, "10.0.0.1:5670");
    }
}
