//! Transparent proxying in a sidecar's config (reference: `kuma-api.md` §5.2, §6.2): what a
//! Dataplane with `networking.transparentProxying` gets besides its inbounds and outbounds.
//!
//! * The passthrough listeners `outbound:passthrough:ipv4` (on `0.0.0.0:{redirectPortOutbound}`)
//!   and `inbound:passthrough:ipv4` (on `0.0.0.0:{redirectPortInbound}`), both with
//!   `use_original_dst: true`: a redirected connection is handed to the listener of its original
//!   destination, or, when there is none, sent on unchanged by `tcp_proxy` to the ORIGINAL_DST
//!   cluster of the same name (the inbound one binds its upstream side to `127.0.0.6`, Kuma's
//!   marker that keeps the connection out of the redirect).
//! * One outbound per service of the mesh with a VIP (Config `kuma-{mesh}-dns-vips`), listener
//!   `outbound:{VIP}:{dnsServer.serviceVipPort}`, unless `dnsServer.serviceVipEnabled` is false
//!   or `transparentProxying.reachableServices` leaves the service out. Kuma adds them to every
//!   transparent-proxy Dataplane of the mesh, including for the services the proxy itself
//!   serves (calling one's own service through the mesh is allowed), and so do we.
//!   [`crate::generate`] routes them like explicit outbounds.
//! * Every inbound and outbound listener gets `bind_to_port: false`: only the passthrough
//!   listeners own a socket.
//!
//! A Dataplane is in transparent-proxy mode when both redirect ports are set (as in Kuma).
//! Pure: no I/O.

use std::net::IpAddr;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, LbPolicy,
};
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::envoy::config::core::v3::{BindConfig, SocketAddress, TrafficDirection};
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::google::protobuf::{BoolValue, Duration};
use model::mesh_pb::dataplane::Networking;

/// The mesh's services with a virtual IP, by name (as `dns::vips` reads them from the
/// `kuma-{mesh}-dns-vips` Config).
pub type Vips = dns::vips::Vips;

/// Listener and cluster of redirected outgoing connections.
pub const OUTBOUND_PASSTHROUGH_IPV4: &str = "outbound:passthrough:ipv4";
/// Listener and cluster of redirected incoming connections.
pub const INBOUND_PASSTHROUGH_IPV4: &str = "inbound:passthrough:ipv4";
/// Source address of connections the inbound passthrough makes to the application.
pub const INBOUND_PASSTHROUGH_SOURCE: &str = "127.0.0.6";
/// Where the passthrough listeners listen.
const ANY_IPV4: &str = "0.0.0.0";
/// Connect timeout of the passthrough clusters.
const CONNECT_TIMEOUT_SECONDS: i64 = 5;

/// `dnsServer.serviceVipEnabled` and `dnsServer.serviceVipPort`: whether VIP outbounds are
/// generated, and on which port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceVips {
    pub enabled: bool,
    pub port: u16,
}

impl Default for ServiceVips {
    /// Kuma's defaults: enabled, port 80.
    fn default() -> Self {
        ServiceVips {
            enabled: true,
            port: 80,
        }
    }
}

/// The redirect ports of a transparent-proxy Dataplane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redirect {
    pub inbound: u32,
    pub outbound: u32,
}

/// The redirect ports when `networking` is in transparent-proxy mode (both ports set).
pub fn redirect(networking: &Networking) -> Option<Redirect> {
    let tp = networking.transparent_proxying.as_ref()?;
    (tp.redirect_port_inbound != 0 && tp.redirect_port_outbound != 0).then_some(Redirect {
        inbound: tp.redirect_port_inbound,
        outbound: tp.redirect_port_outbound,
    })
}

/// A VIP outbound to generate: the service, its VIP, and the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipOutbound {
    pub service: String,
    pub address: IpAddr,
    pub port: u32,
}

/// The VIP outbounds of a transparent-proxy Dataplane, in service-name order.
pub fn vip_outbounds(
    networking: &Networking,
    vips: &Vips,
    settings: ServiceVips,
) -> Vec<VipOutbound> {
    if !settings.enabled {
        return Vec::new();
    }
    let reachable = networking
        .transparent_proxying
        .as_ref()
        .map(|tp| tp.reachable_services.as_slice())
        .unwrap_or_default();
    vips.iter()
        .filter(|(service, _)| reachable.is_empty() || reachable.contains(service))
        .map(|(service, address)| VipOutbound {
            service: service.clone(),
            address: *address,
            port: u32::from(settings.port),
        })
        .collect()
}

/// Makes `listener` one that only receives connections handed over by a passthrough listener.
pub fn unbind(listener: &mut Listener) {
    listener.bind_to_port = Some(BoolValue { value: false });
}

/// The passthrough listeners of `redirect`.
pub fn passthrough_listeners(redirect: Redirect) -> [Listener; 2] {
    let listener = |name: &str, port: u32, direction: TrafficDirection| {
        let filter = crate::generate::tcp_proxy(&crate::names::stat_prefix(name), &[(name, 1)]);
        let mut listener = crate::generate::listener(name, ANY_IPV4, port, direction, filter);
        listener.use_original_dst = Some(BoolValue { value: true });
        listener
    };
    [
        listener(
            OUTBOUND_PASSTHROUGH_IPV4,
            redirect.outbound,
            TrafficDirection::Outbound,
        ),
        listener(
            INBOUND_PASSTHROUGH_IPV4,
            redirect.inbound,
            TrafficDirection::Inbound,
        ),
    ]
}

/// The ORIGINAL_DST clusters of the passthrough listeners.
pub fn passthrough_clusters() -> [Cluster; 2] {
    let cluster = |name: &str| Cluster {
        name: name.to_owned(),
        connect_timeout: Some(Duration {
            seconds: CONNECT_TIMEOUT_SECONDS,
            nanos: 0,
        }),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(
            DiscoveryType::OriginalDst as i32,
        )),
        lb_policy: LbPolicy::ClusterProvided as i32,
        ..Default::default()
    };
    let mut inbound = cluster(INBOUND_PASSTHROUGH_IPV4);
    inbound.upstream_bind_config = Some(BindConfig {
        source_address: Some(SocketAddress {
            address: INBOUND_PASSTHROUGH_SOURCE.to_owned(),
            port_specifier: Some(PortSpecifier::PortValue(0)),
            ..Default::default()
        }),
        ..Default::default()
    });
    [cluster(OUTBOUND_PASSTHROUGH_IPV4), inbound]
}

#[cfg(test)]
mod tests {
    use model::mesh_pb::dataplane::networking::TransparentProxying;

    use super::*;

    fn networking(inbound: u32, outbound: u32, reachable: &[&str]) -> Networking {
        Networking {
            address: "10.0.0.1".into(),
            transparent_proxying: Some(TransparentProxying {
                redirect_port_inbound: inbound,
                redirect_port_outbound: outbound,
                reachable_services: reachable.iter().map(|s| (*s).to_owned()).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn vips() -> Vips {
        [
            ("backend".to_owned(), "240.0.0.0".parse().expect("ip")),
            ("db".to_owned(), "240.0.0.1".parse().expect("ip")),
        ]
        .into()
    }

    #[test]
    fn transparent_proxying_needs_both_redirect_ports() {
        assert_eq!(
            redirect(&networking(15006, 15001, &[])),
            Some(Redirect {
                inbound: 15006,
                outbound: 15001
            })
        );
        assert_eq!(redirect(&networking(0, 15001, &[])), None);
        assert_eq!(redirect(&Networking::default()), None);
    }

    #[test]
    fn vip_outbounds_follow_the_settings_and_reachable_services() {
        let all = vip_outbounds(&networking(1, 2, &[]), &vips(), ServiceVips::default());
        let names: Vec<_> = all.iter().map(|o| (o.service.as_str(), o.port)).collect();
        assert_eq!(names, [("backend", 80), ("db", 80)]);
        let custom = ServiceVips {
            enabled: true,
            port: 8080,
        };
        let only_db = vip_outbounds(&networking(1, 2, &["db"]), &vips(), custom);
        assert_eq!(
            only_db,
            [VipOutbound {
                service: "db".into(),
                address: "240.0.0.1".parse().expect("ip"),
                port: 8080
            }]
        );
        let off = ServiceVips {
            enabled: false,
            port: 80,
        };
        assert!(vip_outbounds(&networking(1, 2, &[]), &vips(), off).is_empty());
    }
}
