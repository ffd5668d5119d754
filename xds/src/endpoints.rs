//! The instances of a mesh's services as a zone sees them, and the EDS load
//! assignments made of them (reference: `kuma-multizone.md` §4.4).
//!
//! An instance is either a ready inbound of a Dataplane of this zone, or,
//! for a mesh with mTLS, a service another zone makes available through its
//! zone ingress: one endpoint at the ingress's advertised address, weighted
//! by the number of instances behind it, in the locality of that zone (at
//! priority 1 when the Mesh enables `routing.localityAwareLoadBalancing`
//! and the service also has local instances, so Envoy prefers them).
//!
//! Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use envoy_types::pb::envoy::config::core::v3::{Locality, Metadata};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::google::protobuf::{Struct, UInt32Value, Value, value};
use model::labels::tags;
use model::mesh_pb::dataplane::networking::inbound::State;
use model::{Resource, Spec};

use crate::Protocol;
use crate::generate::{ENVOY_LB_METADATA, GenerateError, dataplane_networking, locality_endpoints};
use crate::policy::routes;

/// One instance of a service: a ready inbound of a Dataplane of this zone,
/// or another zone's ingress standing for `weight` instances there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instance {
    /// The Dataplane's name, or `ingress:{zone}/{name}` for a remote ingress.
    pub dataplane: String,
    pub address: String,
    pub port: u32,
    /// The inbound's tags (`kuma.io/service` included).
    pub tags: BTreeMap<String, String>,
    /// How many instances the endpoint stands for (1 for a local one).
    pub weight: u32,
    /// The zone behind a remote ingress; `None` for a local instance.
    pub remote_zone: Option<String>,
}

impl Instance {
    pub fn protocol(&self) -> Protocol {
        Protocol::from_tag(self.tags.get(tags::PROTOCOL).map(String::as_str))
    }
}

/// Where the remote instances come from: the ZoneIngresses the zone knows
/// and the zone's own name (its own ingresses are skipped).
#[derive(Debug, Clone, Copy, Default)]
pub struct RemoteIngresses<'a> {
    /// ZoneIngress resources (any; only remote, public ones count).
    pub zone_ingresses: &'a [Resource],
    /// This zone's name; an ingress whose `zone` is empty or this is local.
    pub local_zone: &'a str,
}

/// Instances of every service of a mesh, each list in a stable order.
#[derive(Debug, Default)]
pub struct EndpointIndex {
    by_service: BTreeMap<String, Vec<Instance>>,
    /// Whether remote instances get priority 1 where local ones exist.
    locality_aware: bool,
}

impl EndpointIndex {
    /// The ready inbounds of `mesh`'s Dataplanes in `dataplanes` (others
    /// ignored) and, when `remote` is given, the services other zones'
    /// ingresses make available in `mesh`.
    pub fn build(
        mesh: &str,
        dataplanes: &[Resource],
        remote: Option<RemoteIngresses<'_>>,
        locality_aware: bool,
    ) -> Result<EndpointIndex, GenerateError> {
        let mut by_service: BTreeMap<String, BTreeSet<Instance>> = BTreeMap::new();
        for instance in local_instances(mesh, dataplanes)? {
            let service = instance
                .tags
                .get(tags::SERVICE)
                .cloned()
                .unwrap_or_default();
            by_service.entry(service).or_default().insert(instance);
        }
        if let Some(remote) = remote {
            for instance in remote_instances(mesh, remote) {
                let service = instance
                    .tags
                    .get(tags::SERVICE)
                    .cloned()
                    .unwrap_or_default();
                by_service.entry(service).or_default().insert(instance);
            }
        }
        let by_service = by_service
            .into_iter()
            .map(|(service, instances)| (service, instances.into_iter().collect()))
            .collect();
        Ok(EndpointIndex {
            by_service,
            locality_aware,
        })
    }

    /// The instances of `service` whose tags match `subset`.
    pub fn in_subset(&self, service: &str, subset: &BTreeMap<String, String>) -> Vec<&Instance> {
        self.by_service
            .get(service)
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .filter(|i| routes::in_subset(subset, &i.tags))
            .collect()
    }

    /// The EDS resource `name` of `instances` (as [`load_assignment`]).
    pub fn load_assignment(&self, name: &str, instances: &[&Instance]) -> ClusterLoadAssignment {
        load_assignment(name, instances, self.locality_aware)
    }
}

/// The ready inbounds of the Dataplanes of `mesh` with a service, an
/// address and a valid port, in a stable order.
pub fn local_instances(
    mesh: &str,
    dataplanes: &[Resource],
) -> Result<Vec<Instance>, GenerateError> {
    let mut instances = BTreeSet::new();
    for dataplane in dataplanes {
        if dataplane.meta.mesh != mesh {
            continue;
        }
        let Some(networking) = dataplane_networking(dataplane)? else {
            continue;
        };
        let address = if networking.advertised_address.is_empty() {
            &networking.address
        } else {
            &networking.advertised_address
        };
        if address.is_empty() {
            continue;
        }
        for inbound in &networking.inbound {
            let not_ready = inbound.state != State::Ready as i32
                || inbound.health.as_ref().is_some_and(|h| !h.ready);
            if !inbound.tags.contains_key(tags::SERVICE) {
                continue;
            }
            // A bad port on another dataplane must not break this proxy.
            if not_ready || !(1..=65535).contains(&inbound.port) {
                continue;
            }
            instances.insert(Instance {
                dataplane: dataplane.meta.name.clone(),
                address: address.clone(),
                port: inbound.port,
                tags: inbound
                    .tags
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                weight: 1,
                remote_zone: None,
            });
        }
    }
    Ok(instances.into_iter().collect())
}

/// The services of `mesh` that remote, public ingresses make available: one
/// instance per (ingress address, tag set), weighted by its instance count.
/// An ingress whose advertised address is not an IP address is skipped
/// (EDS endpoints are IP addresses); of several ingresses advertising one
/// address, the first (by name) with services stands for it.
pub fn remote_instances(mesh: &str, remote: RemoteIngresses<'_>) -> Vec<Instance> {
    let mut seen_addresses = BTreeSet::new();
    let mut ingresses: Vec<&Resource> = remote.zone_ingresses.iter().collect();
    ingresses.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
    let mut instances = Vec::new();
    for ingress in ingresses {
        let Spec::ZoneIngress(spec) = &ingress.spec else {
            continue;
        };
        if spec.zone.is_empty() || spec.zone == remote.local_zone {
            continue;
        }
        let Some(networking) = &spec.networking else {
            continue;
        };
        let port = networking.advertised_port;
        if networking.advertised_address.is_empty()
            || !(1..=65535).contains(&port)
            || networking.advertised_address.parse::<IpAddr>().is_err()
            || spec.available_services.is_empty()
        {
            continue;
        }
        if !seen_addresses.insert((networking.advertised_address.clone(), port)) {
            continue;
        }
        for available in spec.available_services.iter().filter(|s| s.mesh == mesh) {
            if available.instances == 0 || available.external_service {
                continue;
            }
            let mut tags: BTreeMap<String, String> = available
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if tags.get(tags::SERVICE).is_none_or(String::is_empty) {
                continue;
            }
            tags.insert(tags::ZONE.to_string(), spec.zone.clone());
            instances.push(Instance {
                dataplane: format!("ingress:{}/{}", spec.zone, ingress.meta.name),
                address: networking.advertised_address.clone(),
                port,
                tags,
                weight: available.instances,
                remote_zone: Some(spec.zone.clone()),
            });
        }
    }
    instances
}

/// The protocol every instance can speak; no instance -> unknown (TCP).
pub fn common_protocol<'a>(instances: impl IntoIterator<Item = &'a Instance>) -> Protocol {
    let mut protocols = instances.into_iter().map(Instance::protocol);
    match protocols.next() {
        Some(first) => protocols.fold(first, Protocol::common),
        None => Protocol::Unknown,
    }
}

/// The EDS resource `name` of `instances`; none -> no endpoints. Local
/// instances form one locality; each remote zone its own (`zone` set), at
/// priority 1 when `locality_aware` and local instances exist. Each
/// endpoint carries its instance's tags but `kuma.io/service` as `envoy.lb`
/// metadata, and its weight when above 1.
pub fn load_assignment(
    name: &str,
    instances: &[&Instance],
    locality_aware: bool,
) -> ClusterLoadAssignment {
    let mut groups: BTreeMap<Option<&str>, Vec<&Instance>> = BTreeMap::new();
    for instance in instances {
        groups
            .entry(instance.remote_zone.as_deref())
            .or_default()
            .push(instance);
    }
    let has_local = groups.contains_key(&None);
    let endpoints = groups
        .into_iter()
        .map(|(zone, members)| {
            let mut locality =
                locality_endpoints(members.iter().map(|i| (i.address.as_str(), i.port)));
            for (endpoint, instance) in locality.lb_endpoints.iter_mut().zip(&members) {
                endpoint.metadata = lb_metadata(&instance.tags);
                if instance.weight > 1 {
                    endpoint.load_balancing_weight = Some(UInt32Value {
                        value: instance.weight,
                    });
                }
            }
            if let Some(zone) = zone {
                locality.locality = Some(Locality {
                    zone: zone.to_string(),
                    ..Default::default()
                });
                if locality_aware && has_local {
                    locality.priority = 1;
                }
            }
            locality
        })
        .collect();
    ClusterLoadAssignment {
        cluster_name: name.to_string(),
        endpoints,
        ..Default::default()
    }
}

/// `filter_metadata["envoy.lb"]` = `tags` without `kuma.io/service`; none
/// when nothing is left.
pub fn lb_metadata(tags: &BTreeMap<String, String>) -> Option<Metadata> {
    let fields: BTreeMap<String, Value> = tags
        .iter()
        .filter(|(key, _)| key.as_str() != tags::SERVICE)
        .map(|(key, value)| {
            let value = Value {
                kind: Some(value::Kind::StringValue(value.clone())),
            };
            (key.clone(), value)
        })
        .collect();
    if fields.is_empty() {
        return None;
    }
    let lb = Struct {
        fields: fields.into_iter().collect(),
    };
    Some(Metadata {
        filter_metadata: [(ENVOY_LB_METADATA.to_string(), lb)].into(),
        ..Default::default()
    })
}
