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

use envoy_types::pb::envoy::config::cluster::v3::OutlierDetection;
use envoy_types::pb::envoy::config::core::v3::{Locality, Metadata};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::google::protobuf::{Duration, Struct, UInt32Value, Value, value};
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

/// The outlier detection of a cluster with endpoints behind other zones'
/// ingresses: an ingress that refuses connections (its zone is gone, not
/// just its control plane) is ejected at its first failure for 5 s (longer
/// on each repeat, at most 30 s), so the traffic goes to the other
/// endpoints until it answers again. Failures of the application behind a
/// live ingress are not counted here (`split_external_local_origin_errors`).
pub fn remote_outlier_detection() -> OutlierDetection {
    let seconds = |seconds| Duration { seconds, nanos: 0 };
    OutlierDetection {
        interval: Some(seconds(1)),
        base_ejection_time: Some(seconds(5)),
        max_ejection_time: Some(seconds(30)),
        max_ejection_percent: Some(UInt32Value { value: 100 }),
        split_external_local_origin_errors: true,
        consecutive_local_origin_failure: Some(UInt32Value { value: 1 }),
        enforcing_consecutive_local_origin_failure: Some(UInt32Value { value: 100 }),
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use model::mesh_pb::ZoneIngress;
    use model::mesh_pb::zone_ingress::{AvailableService, Networking};
    use model::test_util::dataplane;

    use super::*;

    fn ingress(name: &str, zone: &str, address: &str, services: &[(&str, &str, u32)]) -> Resource {
        Resource::new(
            "",
            name,
            Spec::ZoneIngress(ZoneIngress {
                zone: zone.into(),
                networking: Some(Networking {
                    address: "10.0.0.1".into(),
                    port: 10001,
                    advertised_address: address.into(),
                    advertised_port: 10001,
                    ..Default::default()
                }),
                available_services: services
                    .iter()
                    .map(|(mesh, service, instances)| AvailableService {
                        tags: [(tags::SERVICE.to_string(), service.to_string())].into(),
                        instances: *instances,
                        mesh: mesh.to_string(),
                        external_service: false,
                    })
                    .collect(),
            }),
        )
    }

    fn remote<'a>(ingresses: &'a [Resource]) -> RemoteIngresses<'a> {
        RemoteIngresses {
            zone_ingresses: ingresses,
            local_zone: "zone-1",
        }
    }

    #[test]
    fn remote_services_are_one_weighted_endpoint_per_ingress() {
        let ingresses = vec![
            ingress(
                "zi-2",
                "zone-2",
                "192.0.2.2",
                &[("default", "backend", 3), ("other", "backend", 1)],
            ),
            // This zone's own ingress, one received without a zone, and a hostname: skipped.
            ingress("zi-1", "zone-1", "192.0.2.1", &[("default", "backend", 5)]),
            ingress("zi-x", "", "192.0.2.9", &[("default", "backend", 5)]),
            ingress(
                "zi-h",
                "zone-3",
                "ingress.example.com",
                &[("default", "backend", 5)],
            ),
            // A second ingress of zone-2 on the same address stands for nothing more.
            ingress("zi-2b", "zone-2", "192.0.2.2", &[("default", "backend", 3)]),
        ];
        let got = remote_instances("default", remote(&ingresses));
        assert_eq!(got.len(), 1, "{got:?}");
        let instance = &got[0];
        assert_eq!(
            (instance.address.as_str(), instance.port),
            ("192.0.2.2", 10001)
        );
        assert_eq!(instance.weight, 3);
        assert_eq!(instance.remote_zone.as_deref(), Some("zone-2"));
        assert_eq!(instance.tags[tags::ZONE], "zone-2");
    }

    #[test]
    fn local_and_remote_instances_share_a_priority_unless_locality_aware() {
        let dataplanes = vec![dataplane(
            "default",
            "backend-1",
            "10.0.0.5",
            &[(8080, "backend")],
        )];
        let ingresses = vec![ingress(
            "zi-2",
            "zone-2",
            "192.0.2.2",
            &[("default", "backend", 2)],
        )];
        let subset = [(tags::SERVICE.to_string(), "backend".to_string())].into();
        for (aware, remote_priority) in [(false, 0), (true, 1)] {
            let index =
                EndpointIndex::build("default", &dataplanes, Some(remote(&ingresses)), aware)
                    .unwrap();
            let instances = index.in_subset("backend", &subset);
            let assignment = index.load_assignment("backend", &instances);
            assert_eq!(assignment.endpoints.len(), 2, "a locality per zone");
            let local = &assignment.endpoints[0];
            assert!(local.locality.is_none());
            assert_eq!(local.priority, 0);
            assert_eq!(
                local.lb_endpoints[0].load_balancing_weight, None,
                "weight 1"
            );
            let remote = &assignment.endpoints[1];
            assert_eq!(remote.locality.as_ref().unwrap().zone, "zone-2");
            assert_eq!(remote.priority, remote_priority, "locality aware: {aware}");
            assert_eq!(
                remote.lb_endpoints[0].load_balancing_weight,
                Some(UInt32Value { value: 2 })
            );
        }
        // Only remote instances: priority 0 even when locality aware (nothing to prefer).
        let index = EndpointIndex::build("default", &[], Some(remote(&ingresses)), true).unwrap();
        let instances = index.in_subset("backend", &subset);
        assert_eq!(
            index.load_assignment("backend", &instances).endpoints[0].priority,
            0
        );
        // Without remote ingresses (a mesh without mTLS), only the local instance.
        let index = EndpointIndex::build("default", &dataplanes, None, false).unwrap();
        assert_eq!(index.in_subset("backend", &subset).len(), 1);
    }
}
