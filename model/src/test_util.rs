//! Builders of realistic resources for tests in this and other crates
//! (enabled by the `test-util` feature).

use std::collections::{BTreeMap, HashMap};

use crate::labels::tags;
use crate::mesh_pb::{self, dataplane};
use crate::resource::{Resource, Spec};
use crate::system_pb;

fn tag_map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A Mesh with no backends.
pub fn mesh(name: &str) -> Resource {
    Resource::new("", name, Spec::Mesh(mesh_pb::Mesh::default()))
}

/// A Dataplane at `address` with one inbound per `(port, service)`.
pub fn dataplane(mesh: &str, name: &str, address: &str, inbounds: &[(u32, &str)]) -> Resource {
    let inbound = inbounds
        .iter()
        .map(|(port, service)| dataplane::networking::Inbound {
            port: *port,
            service_port: port + 10000,
            tags: tag_map(&[
                (tags::SERVICE, service),
                (tags::PROTOCOL, "http"),
                ("version", "v1"),
            ]),
            ..Default::default()
        })
        .collect();
    let spec = mesh_pb::Dataplane {
        networking: Some(dataplane::Networking {
            address: address.to_string(),
            inbound,
            ..Default::default()
        }),
        ..Default::default()
    };
    Resource::new(mesh, name, Spec::Dataplane(spec))
}

/// A TrafficPermission from `source` to `destination` services.
pub fn traffic_permission(mesh: &str, name: &str, source: &str, destination: &str) -> Resource {
    let spec = mesh_pb::TrafficPermission {
        sources: vec![mesh_pb::Selector {
            r#match: tag_map(&[(tags::SERVICE, source)]),
        }],
        destinations: vec![mesh_pb::Selector {
            r#match: tag_map(&[(tags::SERVICE, destination)]),
        }],
    };
    Resource::new(mesh, name, Spec::TrafficPermission(spec))
}

/// A Secret holding `data`.
pub fn secret(mesh: &str, name: &str, data: &[u8]) -> Resource {
    let spec = system_pb::Secret {
        data: Some(envoy_types::pb::google::protobuf::BytesValue {
            value: data.to_vec(),
        }),
    };
    Resource::new(mesh, name, Spec::Secret(spec))
}

/// A Zone, enabled.
pub fn zone(name: &str) -> Resource {
    Resource::new("", name, Spec::Zone(system_pb::Zone::default()))
}

/// A kumactl table as header -> cell maps, one per row. Cells are cut at the columns where
/// the header's cells start (columns are separated by at least two spaces; header cells such
/// as `LAST CONNECTED AGO` contain single ones), so empty cells stay in place.
pub fn kumactl_table(out: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = out.lines();
    let header = lines.next().unwrap_or_default();
    let bytes = header.as_bytes();
    let starts: Vec<usize> = (0..bytes.len())
        .filter(|&i| bytes[i] != b' ' && (i == 0 || (i >= 2 && &bytes[i - 2..i] == b"  ")))
        .collect();
    let cut = |line: &str| -> Vec<String> {
        starts
            .iter()
            .enumerate()
            .map(|(n, &from)| {
                let to = starts.get(n + 1).copied().unwrap_or(usize::MAX);
                line.get(from.min(line.len())..to.min(line.len()))
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            })
            .collect()
    };
    let names = cut(header);
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|line| names.iter().cloned().zip(cut(line)).collect())
        .collect()
}
