//! Virtual IPs of a mesh's services (reference: `kuma-api.md` §6.1), pure: which services
//! need one, how addresses are handed out, and the persisted form.
//!
//! * [`wanted_services`]: every `kuma.io/service` of a non-ignored Dataplane inbound of the
//!   mesh, plus every service of the mesh that a ZoneIngress of another zone makes available.
//! * [`allocate`]: keeps the address of every service that is still wanted (so recomputing
//!   never moves a VIP), releases those of services that are gone, and gives new services the
//!   lowest free address of the CIDR, starting at the network address (as Kuma does).
//! * [`encode`] / [`decode`]: Kuma's JSON of the `kuma-{mesh}-dns-vips` Config
//!   (`{"0:backend":{"address":"240.0.0.0","outbounds":[…]}}`); [`decode`] also reads Kuma
//!   1.0–1.3's flat `{"backend":"240.0.0.0"}`.
//!
//! No I/O here: the task in [`crate::allocator`] reads and writes the store.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;
use model::labels::tags;
use model::mesh_pb::dataplane::networking::inbound::State;
use model::{Resource, Spec};
use serde_json::{Value as Json, json};

/// The Config resource that holds the VIPs of `mesh`.
pub fn config_name(mesh: &str) -> String {
    format!("kuma-{mesh}-dns-vips")
}

/// The mesh whose VIPs a Config named `name` holds, if it is one.
pub fn mesh_of_config(name: &str) -> Option<&str> {
    name.strip_prefix("kuma-")?.strip_suffix("-dns-vips")
}

/// Services of one mesh, by name, with their VIP.
pub type Vips = BTreeMap<String, IpAddr>;

/// The services of `mesh` that need a VIP. `dataplanes` and `zone_ingresses` may hold
/// resources of any mesh (only those of `mesh` count); ingresses of `local_zone` are skipped
/// (their services are the zone's own Dataplanes).
pub fn wanted_services(
    mesh: &str,
    dataplanes: &[Resource],
    zone_ingresses: &[Resource],
    local_zone: Option<&str>,
) -> BTreeSet<String> {
    let mut wanted = BTreeSet::new();
    for dataplane in dataplanes.iter().filter(|d| d.meta.mesh == mesh) {
        let Spec::Dataplane(spec) = &dataplane.spec else {
            continue;
        };
        let Some(networking) = &spec.networking else {
            continue;
        };
        for inbound in &networking.inbound {
            if inbound.state == State::Ignored as i32 {
                continue;
            }
            if let Some(service) = inbound.tags.get(tags::SERVICE)
                && !service.is_empty()
            {
                wanted.insert(service.clone());
            }
        }
    }
    for ingress in zone_ingresses {
        let Spec::ZoneIngress(spec) = &ingress.spec else {
            continue;
        };
        if local_zone.is_some_and(|zone| spec.zone.is_empty() || spec.zone == zone) {
            continue;
        }
        for available in spec.available_services.iter().filter(|s| s.mesh == mesh) {
            if let Some(service) = available.tags.get(tags::SERVICE)
                && !service.is_empty()
            {
                wanted.insert(service.clone());
            }
        }
    }
    wanted
}

/// The result of one allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub vips: Vips,
    /// Wanted services that got no address because the CIDR is full, sorted.
    pub unallocated: Vec<String>,
}

/// VIPs for `wanted` from `cidr`, keeping every address of `previous` that still belongs to a
/// wanted service and lies in `cidr`. A previous address held by two services (a hand-edited
/// Config) stays with the first in name order; the other gets a new one.
pub fn allocate(cidr: IpNet, previous: &Vips, wanted: &BTreeSet<String>) -> Allocation {
    let mut vips = Vips::new();
    let mut used: HashSet<u128> = HashSet::new();
    for (service, address) in previous {
        if !wanted.contains(service) {
            continue;
        }
        if let Some(offset) = offset_in(cidr, *address)
            && used.insert(offset)
        {
            vips.insert(service.clone(), *address);
        }
    }
    let size = cidr_size(cidr);
    let mut cursor: u128 = 0;
    let mut unallocated = Vec::new();
    for service in wanted {
        if vips.contains_key(service) {
            continue;
        }
        while cursor < size && used.contains(&cursor) {
            cursor += 1;
        }
        if cursor >= size {
            unallocated.push(service.clone());
            continue;
        }
        used.insert(cursor);
        vips.insert(service.clone(), address_at(cidr, cursor));
        cursor += 1;
    }
    Allocation { vips, unallocated }
}

/// Number of addresses in `cidr`.
fn cidr_size(cidr: IpNet) -> u128 {
    let host_bits = u32::from(cidr.max_prefix_len() - cidr.prefix_len());
    1u128.checked_shl(host_bits).unwrap_or(u128::MAX)
}

/// `address`'s distance from the network address of `cidr`, when it lies inside.
fn offset_in(cidr: IpNet, address: IpAddr) -> Option<u128> {
    if !cidr.contains(&address) {
        return None;
    }
    match (cidr.network(), address) {
        (IpAddr::V4(net), IpAddr::V4(a)) => Some(u128::from(u32::from(a) - u32::from(net))),
        (IpAddr::V6(net), IpAddr::V6(a)) => Some(u128::from(a) - u128::from(net)),
        _ => None,
    }
}

/// The address `offset` after the network address of `cidr` (`offset` < its size).
fn address_at(cidr: IpNet, offset: u128) -> IpAddr {
    match cidr.network() {
        IpAddr::V4(net) => {
            let offset = u32::try_from(offset).unwrap_or(u32::MAX);
            IpAddr::V4(std::net::Ipv4Addr::from(
                u32::from(net).saturating_add(offset),
            ))
        }
        IpAddr::V6(net) => IpAddr::V6(std::net::Ipv6Addr::from(
            u128::from(net).saturating_add(offset),
        )),
    }
}

/// Why a stored Config could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("Config {config:?}: field `config` is not JSON: {message}")]
    NotJson { config: String, message: String },
    #[error("Config {config:?}: entry {entry:?}: {message}")]
    Entry {
        config: String,
        entry: String,
        message: String,
    },
}

/// The Config's `config` text for `vips`, in Kuma's current format (service entries, type 0).
pub fn encode(vips: &Vips) -> String {
    let mut entries = serde_json::Map::new();
    for (service, address) in vips {
        entries.insert(
            format!("0:{service}"),
            json!({
                "address": address.to_string(),
                "outbounds": [{
                    "Port": 0,
                    "TagSet": { tags::SERVICE: service },
                    "Origin": "service",
                }],
            }),
        );
    }
    Json::Object(entries).to_string()
}

/// The service VIPs a Config named `config` holds in `text` (empty text: none). Host and
/// FQDN entries (types 1 and 2) are not ours and are ignored.
pub fn decode(config: &str, text: &str) -> Result<Vips, DecodeError> {
    if text.trim().is_empty() {
        return Ok(Vips::new());
    }
    let value: Json = serde_json::from_str(text).map_err(|e| DecodeError::NotJson {
        config: config.to_owned(),
        message: e.to_string(),
    })?;
    let Json::Object(entries) = value else {
        return Err(DecodeError::NotJson {
            config: config.to_owned(),
            message: "expected an object".to_owned(),
        });
    };
    let mut vips = Vips::new();
    for (entry, value) in entries {
        let bad = |message: &str| DecodeError::Entry {
            config: config.to_owned(),
            entry: entry.clone(),
            message: message.to_owned(),
        };
        let (service, address) = match &value {
            // Kuma 1.0–1.3: {"backend": "240.0.0.3"}
            Json::String(address) => (entry.as_str(), address.as_str()),
            Json::Object(fields) => {
                let Some((kind, name)) = entry.split_once(':') else {
                    return Err(bad("expected a key `<type>:<name>`"));
                };
                if kind != "0" {
                    continue;
                }
                let address = fields
                    .get("address")
                    .and_then(Json::as_str)
                    .ok_or_else(|| bad("field `address` is missing or not a string"))?;
                (name, address)
            }
            _ => return Err(bad("expected an address or an object")),
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| bad(&format!("{address:?} is not an IP address")))?;
        if service.is_empty() {
            return Err(bad("empty service name"));
        }
        vips.insert(service.to_owned(), address);
    }
    Ok(vips)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use model::mesh_pb::dataplane::Networking;
    use model::mesh_pb::dataplane::networking::Inbound;
    use model::mesh_pb::zone_ingress::AvailableService;
    use model::mesh_pb::{Dataplane, ZoneIngress};

    use super::*;

    fn cidr(text: &str) -> IpNet {
        text.parse().expect("test CIDR")
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    #[test]
    fn new_services_get_the_lowest_free_addresses_from_the_network_address() {
        let got = allocate(cidr("240.0.0.0/4"), &Vips::new(), &set(&["b", "a"]));
        assert_eq!(got.vips["a"], v4(240, 0, 0, 0));
        assert_eq!(got.vips["b"], v4(240, 0, 0, 1));
        assert!(got.unallocated.is_empty());
    }

    #[test]
    fn recomputation_keeps_every_vip_of_a_service_that_still_exists() {
        let first = allocate(cidr("240.0.0.0/4"), &Vips::new(), &set(&["m", "x", "z"]));
        // A service sorting before the others appears: nobody moves.
        let second = allocate(
            cidr("240.0.0.0/4"),
            &first.vips,
            &set(&["a", "m", "x", "z"]),
        );
        for service in ["m", "x", "z"] {
            assert_eq!(second.vips[service], first.vips[service], "{service} moved");
        }
        assert_eq!(second.vips["a"], v4(240, 0, 0, 3));
        // The same input again is the same output.
        assert_eq!(
            allocate(
                cidr("240.0.0.0/4"),
                &second.vips,
                &set(&["a", "m", "x", "z"])
            ),
            second
        );
    }

    #[test]
    fn a_service_that_disappears_releases_its_vip_for_the_next_new_one() {
        let first = allocate(cidr("10.0.0.0/30"), &Vips::new(), &set(&["a", "b", "c"]));
        let second = allocate(cidr("10.0.0.0/30"), &first.vips, &set(&["a", "c"]));
        assert!(!second.vips.contains_key("b"));
        let third = allocate(
            cidr("10.0.0.0/30"),
            &second.vips,
            &set(&["a", "c", "d", "e"]),
        );
        assert_eq!(third.vips["a"], first.vips["a"]);
        assert_eq!(third.vips["c"], first.vips["c"]);
        assert_eq!(
            third.vips["d"], first.vips["b"],
            "the released address is reused"
        );
        assert_eq!(third.vips["e"], v4(10, 0, 0, 3));
    }

    #[test]
    fn a_full_cidr_leaves_the_rest_unallocated_and_keeps_the_existing_ones() {
        let first = allocate(cidr("10.0.0.0/31"), &Vips::new(), &set(&["b", "c"]));
        let got = allocate(
            cidr("10.0.0.0/31"),
            &first.vips,
            &set(&["a", "b", "c", "d"]),
        );
        assert_eq!(got.vips.len(), 2);
        assert_eq!(got.vips["b"], first.vips["b"]);
        assert_eq!(got.vips["c"], first.vips["c"]);
        assert_eq!(got.unallocated, vec!["a".to_owned(), "d".to_owned()]);
    }

    #[test]
    fn addresses_outside_the_cidr_or_held_twice_are_reassigned() {
        let previous: Vips = [
            ("a".to_owned(), v4(10, 0, 0, 5)),
            ("b".to_owned(), v4(10, 0, 0, 5)),
            ("c".to_owned(), v4(192, 168, 0, 1)),
        ]
        .into();
        let got = allocate(cidr("10.0.0.0/24"), &previous, &set(&["a", "b", "c"]));
        assert_eq!(got.vips["a"], v4(10, 0, 0, 5));
        assert_eq!(got.vips["b"], v4(10, 0, 0, 0));
        assert_eq!(got.vips["c"], v4(10, 0, 0, 1));
    }

    #[test]
    fn ipv6_cidrs_work_too() {
        let got = allocate(cidr("fd00::/120"), &Vips::new(), &set(&["a", "b"]));
        assert_eq!(got.vips["b"], "fd00::1".parse::<IpAddr>().expect("v6"));
    }

    #[test]
    fn kuma_format_round_trips_and_the_flat_format_is_read() {
        let vips: Vips = [
            ("backend".to_owned(), v4(240, 0, 0, 0)),
            ("web_x".to_owned(), v4(240, 0, 0, 1)),
        ]
        .into();
        let text = encode(&vips);
        assert!(text.contains(r#""0:backend":{"address":"240.0.0.0","outbounds":[{"Port":0,"TagSet":{"kuma.io/service":"backend"},"Origin":"service"}]}"#), "{text}");
        assert_eq!(decode("c", &text), Ok(vips));
        assert_eq!(
            decode(
                "c",
                r#"{"backend":"240.0.0.3","1:example.com":{"address":"240.0.0.9"}}"#
            ),
            Ok([("backend".to_owned(), v4(240, 0, 0, 3))].into())
        );
        assert_eq!(decode("c", ""), Ok(Vips::new()));
    }

    #[test]
    fn bad_configs_name_the_config_and_the_entry() {
        let err = decode("kuma-default-dns-vips", r#"{"0:a":{"address":"nope"}}"#)
            .expect_err("bad address");
        assert_eq!(
            err.to_string(),
            r#"Config "kuma-default-dns-vips": entry "0:a": "nope" is not an IP address"#
        );
        assert!(decode("c", "[").is_err());
        assert!(decode("c", "[]").is_err());
        assert_eq!(mesh_of_config(&config_name("default")), Some("default"));
        assert_eq!(mesh_of_config("kuma-cluster-id"), None);
    }

    fn dataplane(mesh: &str, services: &[(&str, bool)]) -> Resource {
        let inbound = services
            .iter()
            .map(|(service, ignored)| Inbound {
                port: 8080,
                tags: [(tags::SERVICE.to_owned(), (*service).to_owned())].into(),
                state: if *ignored { State::Ignored as i32 } else { 0 },
                ..Default::default()
            })
            .collect();
        Resource::new(
            mesh,
            "dp",
            Spec::Dataplane(Dataplane {
                networking: Some(Networking {
                    address: "10.0.0.1".into(),
                    inbound,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        )
    }

    fn ingress(zone: &str, services: &[(&str, &str)]) -> Resource {
        Resource::new(
            "",
            format!("ingress-{zone}"),
            Spec::ZoneIngress(ZoneIngress {
                zone: zone.to_owned(),
                available_services: services
                    .iter()
                    .map(|(mesh, service)| AvailableService {
                        mesh: (*mesh).to_owned(),
                        tags: [(tags::SERVICE.to_owned(), (*service).to_owned())].into(),
                        instances: 1,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
        )
    }

    #[test]
    fn wanted_services_are_local_inbounds_and_remote_ingress_services_of_the_mesh() {
        let dataplanes = [
            dataplane("default", &[("backend", false), ("hidden", true)]),
            dataplane("other", &[("elsewhere", false)]),
        ];
        let ingresses = [
            ingress("zone-2", &[("default", "remote-svc"), ("other", "x")]),
            ingress("zone-1", &[("default", "own-svc")]),
        ];
        assert_eq!(
            wanted_services("default", &dataplanes, &ingresses, Some("zone-1")),
            set(&["backend", "remote-svc"])
        );
        assert_eq!(
            wanted_services("default", &dataplanes, &ingresses, None),
            set(&["backend", "own-svc", "remote-svc"])
        );
    }
}
