//! The Envoy config of a zone ingress (reference: `kuma-multizone.md` §4.3).
//!
//! * One listener `inbound:{address}:{port}` on the ZoneIngress's
//!   `networking.address:port`, with the TLS inspector. TLS is never
//!   terminated here: the ingress holds no mesh certificate, mTLS runs end
//!   to end between the two sidecars.
//! * One filter chain per destination, chosen by SNI (`transport_protocol:
//!   tls`, `server_names: [<sni>]`, the SNI the calling sidecar sends,
//!   [`xds::tls::sni`]), with a `tcp_proxy` to the destination's cluster.
//!   Destinations: every service with a ready instance in the zone, and every
//!   tag subset of such a service a TrafficRoute of its mesh names (the
//!   sidecar's split clusters send the subset's tags in their SNI).
//! * Clusters `{mesh}:{service}` / `{mesh}:{service}-{hash}`, by EDS, whose
//!   endpoints are the zone's own instances of that service (subset).
//! * No destination at all: one chain to an empty cluster, so that Envoy
//!   accepts the listener and closes what arrives.
//!
//! Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::{
    FilterChain, FilterChainMatch, Listener, ListenerFilter, listener_filter,
};
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::util::pack_any;
use model::labels::tags;
use model::mesh_pb::traffic_route;
use model::{Resource, Spec};
use xds::endpoints::{Instance, load_assignment, local_instances};
use xds::generate::{eds_cluster, socket_address, tcp_proxy};
use xds::{EnvoyResources, GenerateError, Protocol, names, tls};

/// The cluster that takes connections no destination matches.
pub const NO_DESTINATION_CLUSTER: &str = "kuma:ingress:no-destination";

/// Why a ZoneIngress gets no config. Names the resource and the field.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error("{kind} {name} is not a ZoneIngress")]
    NotAZoneIngress { kind: String, name: String },
    #[error("ZoneIngress {name}: networking: is missing")]
    NoNetworking { name: String },
    #[error("ZoneIngress {name}: networking.address: must not be empty")]
    NoAddress { name: String },
    #[error("ZoneIngress {name}: networking.port: {port} is not a port from 1 to 65535")]
    BadPort { name: String, port: u32 },
    #[error(transparent)]
    Dataplanes(#[from] GenerateError),
}

/// What the ingress routes to: the zone's Dataplanes and TrafficRoutes, of
/// every mesh.
#[derive(Debug, Clone, Copy)]
pub struct IngressContext<'a> {
    pub dataplanes: &'a [Resource],
    pub traffic_routes: &'a [Resource],
}

/// A service (or tag subset of one) the ingress forwards to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Destination {
    mesh: String,
    service: String,
    /// `kuma.io/service` and the subset's tags.
    tags: BTreeMap<String, String>,
}

impl Destination {
    fn cluster(&self) -> String {
        format!(
            "{}:{}",
            self.mesh,
            names::split_cluster(&self.service, &self.tags)
        )
    }

    fn sni(&self) -> String {
        tls::sni(&self.mesh, &self.service, &self.tags)
    }
}

/// The Envoy resources of the zone ingress `ingress`.
pub fn generate(
    ingress: &Resource,
    context: &IngressContext<'_>,
) -> Result<EnvoyResources, IngressError> {
    let name = &ingress.meta.name;
    let Spec::ZoneIngress(spec) = &ingress.spec else {
        return Err(IngressError::NotAZoneIngress {
            kind: ingress.kind().to_string(),
            name: name.clone(),
        });
    };
    let networking = spec
        .networking
        .as_ref()
        .ok_or_else(|| IngressError::NoNetworking { name: name.clone() })?;
    if networking.address.is_empty() {
        return Err(IngressError::NoAddress { name: name.clone() });
    }
    if !(1..=65535).contains(&networking.port) {
        return Err(IngressError::BadPort {
            name: name.clone(),
            port: networking.port,
        });
    }

    let mut instances: BTreeMap<String, Vec<Instance>> = BTreeMap::new();
    let meshes: BTreeSet<&str> = context
        .dataplanes
        .iter()
        .map(|d| d.meta.mesh.as_str())
        .collect();
    for mesh in meshes {
        instances.insert(mesh.to_string(), local_instances(mesh, context.dataplanes)?);
    }

    let mut chains = Vec::new();
    let mut clusters = Vec::new();
    let mut load_assignments = Vec::new();
    for destination in destinations(&instances, context.traffic_routes) {
        let members: Vec<&Instance> = instances
            .get(&destination.mesh)
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .filter(|i| {
                i.tags.get(tags::SERVICE) == Some(&destination.service)
                    && xds::policy::routes::in_subset(&destination.tags, &i.tags)
            })
            .collect();
        if members.is_empty() {
            continue;
        }
        let cluster = destination.cluster();
        chains.push(FilterChain {
            filter_chain_match: Some(FilterChainMatch {
                server_names: vec![destination.sni()],
                transport_protocol: "tls".to_string(),
                ..Default::default()
            }),
            filters: vec![tcp_proxy(&cluster, &[(&cluster, 1)])],
            ..Default::default()
        });
        clusters.push(eds_cluster(&cluster, Protocol::Tcp));
        load_assignments.push(Arc::new(load_assignment(&cluster, &members, false)));
    }
    if chains.is_empty() {
        chains.push(FilterChain {
            filters: vec![tcp_proxy(
                NO_DESTINATION_CLUSTER,
                &[(NO_DESTINATION_CLUSTER, 1)],
            )],
            ..Default::default()
        });
        clusters.push(empty_cluster());
    }
    let listener = Listener {
        name: names::inbound_listener(&networking.address, networking.port),
        address: Some(socket_address(&networking.address, networking.port)),
        filter_chains: chains,
        listener_filters: vec![ListenerFilter {
            name: tls::TLS_INSPECTOR_FILTER.to_string(),
            config_type: Some(listener_filter::ConfigType::TypedConfig(pack_any(
                TlsInspector::default(),
            ))),
            ..Default::default()
        }],
        traffic_direction: TrafficDirection::Inbound as i32,
        ..Default::default()
    };
    Ok(EnvoyResources {
        listeners: vec![listener],
        clusters,
        load_assignments,
        ..Default::default()
    })
}

/// Every service with instances, and every subset of one that a
/// TrafficRoute of its mesh names, in a stable order.
fn destinations(
    instances: &BTreeMap<String, Vec<Instance>>,
    traffic_routes: &[Resource],
) -> BTreeSet<Destination> {
    let mut services: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (mesh, list) in instances {
        for instance in list {
            if let Some(service) = instance.tags.get(tags::SERVICE) {
                services.entry(mesh).or_default().insert(service);
            }
        }
    }
    let mut destinations = BTreeSet::new();
    for (mesh, names) in &services {
        for service in names {
            destinations.insert(Destination {
                mesh: mesh.to_string(),
                service: service.to_string(),
                tags: [(tags::SERVICE.to_string(), service.to_string())].into(),
            });
        }
    }
    for route in traffic_routes {
        let Spec::TrafficRoute(spec) = &route.spec else {
            continue;
        };
        let Some(names) = services.get(route.meta.mesh.as_str()) else {
            continue;
        };
        let Some(conf) = &spec.conf else {
            continue;
        };
        for wanted in route_destinations(conf) {
            let subset: BTreeMap<String, String> = wanted
                .iter()
                .filter(|(k, v)| k.as_str() != tags::SERVICE && v.as_str() != "*")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if subset.is_empty() {
                continue;
            }
            let targets: Vec<&str> = match wanted.get(tags::SERVICE).map(String::as_str) {
                Some("*") => names.iter().copied().collect(),
                Some(service) if names.contains(service) => vec![service],
                _ => continue,
            };
            for service in targets {
                let mut tags = subset.clone();
                tags.insert(tags::SERVICE.to_string(), service.to_string());
                destinations.insert(Destination {
                    mesh: route.meta.mesh.clone(),
                    service: service.to_string(),
                    tags,
                });
            }
        }
    }
    destinations
}

/// Every destination tag map of a TrafficRoute's conf.
fn route_destinations(
    conf: &traffic_route::Conf,
) -> impl Iterator<Item = &std::collections::HashMap<String, String>> {
    let top = std::iter::once(&conf.destination).chain(conf.split.iter().map(|s| &s.destination));
    let http = conf.http.iter().flat_map(|h| {
        std::iter::once(&h.destination).chain(h.split.iter().map(|s| &s.destination))
    });
    top.chain(http).filter(|d| !d.is_empty())
}

/// A STATIC cluster with no endpoint.
fn empty_cluster() -> Cluster {
    let mut cluster = eds_cluster(NO_DESTINATION_CLUSTER, Protocol::Tcp);
    cluster.eds_cluster_config = None;
    cluster.cluster_discovery_type = Some(
        envoy_types::pb::envoy::config::cluster::v3::cluster::ClusterDiscoveryType::Type(
            envoy_types::pb::envoy::config::cluster::v3::cluster::DiscoveryType::Static as i32,
        ),
    );
    cluster.load_assignment = Some(ClusterLoadAssignment {
        cluster_name: NO_DESTINATION_CLUSTER.to_string(),
        ..Default::default()
    });
    cluster
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use model::mesh_pb::zone_ingress::Networking;
    use model::mesh_pb::{TrafficRoute, ZoneIngress};
    use model::test_util::dataplane;
    use xds::CLUSTER_TYPE_URL;

    use super::*;

    pub(crate) fn zone_ingress(name: &str, port: u32) -> Resource {
        Resource::new(
            "",
            name,
            Spec::ZoneIngress(ZoneIngress {
                networking: Some(Networking {
                    address: "10.0.0.100".into(),
                    port,
                    advertised_address: "192.0.2.1".into(),
                    advertised_port: port,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        )
    }

    fn route(mesh: &str, destination: &[(&str, &str)]) -> Resource {
        Resource::new(
            mesh,
            "split",
            Spec::TrafficRoute(TrafficRoute {
                conf: Some(traffic_route::Conf {
                    split: vec![traffic_route::Split {
                        weight: Some(envoy_types::pb::google::protobuf::UInt32Value { value: 1 }),
                        destination: destination
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect(),
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            }),
        )
    }

    fn chains(resources: &EnvoyResources) -> Vec<(String, String)> {
        resources.listeners[0]
            .filter_chains
            .iter()
            .map(|c| {
                let sni = c
                    .filter_chain_match
                    .as_ref()
                    .map(|m| m.server_names.join(","))
                    .unwrap_or_default();
                (sni, c.filters[0].name.clone())
            })
            .collect()
    }

    #[test]
    fn one_chain_per_service_and_routed_subset_by_sni() {
        let mut v2 = dataplane("default", "backend-2", "10.0.0.2", &[(8080, "backend")]);
        if let Spec::Dataplane(spec) = &mut v2.spec {
            spec.networking.as_mut().unwrap().inbound[0]
                .tags
                .insert("version".into(), "v2".into());
        }
        let dataplanes = vec![
            dataplane("default", "backend-1", "10.0.0.1", &[(8080, "backend")]),
            v2,
            dataplane("demo", "web-1", "10.0.1.1", &[(9090, "web")]),
        ];
        let routes = vec![
            route(
                "default",
                &[("kuma.io/service", "backend"), ("version", "v2")],
            ),
            // A subset with no instance gets no chain.
            route(
                "default",
                &[("kuma.io/service", "backend"), ("version", "v3")],
            ),
        ];
        let context = IngressContext {
            dataplanes: &dataplanes,
            traffic_routes: &routes,
        };
        let out = generate(&zone_ingress("ingress-1", 10001), &context).unwrap();
        let listener = &out.listeners[0];
        assert_eq!(listener.name, "inbound:10.0.0.100:10001");
        assert_eq!(listener.listener_filters[0].name, tls::TLS_INSPECTOR_FILTER);
        let snis: Vec<String> = chains(&out).into_iter().map(|(sni, _)| sni).collect();
        assert_eq!(
            snis,
            vec![
                "backend{mesh=default}",
                "backend{mesh=default,version=v2}",
                "web{mesh=demo}"
            ]
        );
        // No chain terminates TLS.
        assert!(
            listener
                .filter_chains
                .iter()
                .all(|c| c.transport_socket.is_none())
        );
        let clusters: Vec<&str> = out.clusters.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(clusters[0], "default:backend");
        assert!(clusters[1].starts_with("default:backend-"), "{clusters:?}");
        assert_eq!(clusters[2], "demo:web");
        let endpoints = |i: usize| -> usize {
            out.load_assignments[i]
                .endpoints
                .iter()
                .map(|l| l.lb_endpoints.len())
                .sum()
        };
        assert_eq!((endpoints(0), endpoints(1), endpoints(2)), (2, 1, 1));
        assert_eq!(out.of_type(CLUSTER_TYPE_URL).len(), 3);
    }

    #[test]
    fn without_destinations_the_listener_still_has_a_chain() {
        let context = IngressContext {
            dataplanes: &[],
            traffic_routes: &[],
        };
        let out = generate(&zone_ingress("ingress-1", 10001), &context).unwrap();
        assert_eq!(
            chains(&out),
            vec![(String::new(), "envoy.filters.network.tcp_proxy".into())]
        );
        assert_eq!(out.clusters[0].name, NO_DESTINATION_CLUSTER);
    }

    #[test]
    fn bad_networking_is_an_error_naming_the_field() {
        let context = IngressContext {
            dataplanes: &[],
            traffic_routes: &[],
        };
        let err = generate(&zone_ingress("ingress-1", 0), &context).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ZoneIngress ingress-1: networking.port: 0 is not a port from 1 to 65535"
        );
    }
}
