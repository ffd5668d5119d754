//! Dataplane metrics (reference: `kuma-api.md` §3.1, §3.2, §5.2): when the
//! proxy's Mesh enables a metrics backend of type `prometheus`
//! (`metrics.enabledBackend`), the sidecar exposes Envoy's own stats in
//! Prometheus format on `{networking.address}:{port}{path}` (defaults 5670
//! and `/metrics`), the Dataplane's `metrics` overriding the mesh's `conf`
//! field by field (as Kuma merges them).
//!
//! * [`prometheus_endpoint`]: the effective endpoint of a dataplane, shared
//!   with the monitoring assignments (`mads`), so that what Prometheus is
//!   told to scrape is what the proxy serves.
//! * [`prometheus_listener`]: the listener `kuma:metrics:prometheus`, an
//!   HTTP connection manager whose one route sends `{path}` to the static
//!   bootstrap cluster `kuma:envoy:admin`
//!   ([`crate::bootstrap::ADMIN_CLUSTER`]) with the path rewritten to
//!   `/stats/prometheus`. Kuma puts kuma-dp's metrics hijacker in between
//!   (to merge application metrics, `aggregate`); we go to the admin
//!   directly, so `aggregate`, `envoy.filterRegex`, `envoy.usedOnly` and the
//!   TLS modes are not applied (the listener is plain HTTP).
//!
//! Pure: no I/O. It reads only the Mesh and the Dataplane it is given.

use envoy_types::pb::envoy::config::core::v3::address::Address as AddressKind;
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, TrafficDirection};
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, route, route_action,
    route_match,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, http_connection_manager, http_filter,
};
use envoy_types::pb::google::protobuf::Struct;
use envoy_types::pb::google::protobuf::value::Kind;
use envoy_types::util::pack_any;
use model::{Resource, Spec};

use crate::bootstrap::ADMIN_CLUSTER;
use crate::generate::{HTTP_CONNECTION_MANAGER_FILTER, ROUTER_FILTER};

/// Kuma's name of the listener that serves a proxy's metrics.
pub const PROMETHEUS_LISTENER: &str = "kuma:metrics:prometheus";
/// The only metrics backend type Kuma knows.
pub const PROMETHEUS_TYPE: &str = "prometheus";
/// Kuma's defaults of a prometheus backend's `conf`.
pub const DEFAULT_PORT: u32 = 5670;
pub const DEFAULT_PATH: &str = "/metrics";
/// Envoy's admin path of its stats in Prometheus text format.
pub const ENVOY_PROMETHEUS_STATS_PATH: &str = "/stats/prometheus";

/// A metrics configuration that cannot be served; names the resource and
/// the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    #[error("{resource}: {field}: {reason}")]
    Invalid {
        /// `mesh {name}` or `dataplane {name}`.
        resource: String,
        field: String,
        reason: String,
    },
}

/// Where a dataplane serves its metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrometheusEndpoint {
    /// The mesh's enabled backend.
    pub backend: String,
    /// `networking.address` of the dataplane.
    pub address: String,
    pub port: u32,
    pub path: String,
    /// `https` when the backend's `tls.mode` is `providedTLS`, else `http`.
    pub scheme: &'static str,
}

/// The effective Prometheus endpoint of `dataplane` in `mesh`: `None` when
/// the mesh enables no metrics backend, or one that is not `prometheus`.
pub fn prometheus_endpoint(
    mesh: &Resource,
    dataplane: &Resource,
) -> Result<Option<PrometheusEndpoint>, MetricsError> {
    let (Spec::Mesh(mesh_spec), Spec::Dataplane(dp_spec)) = (&mesh.spec, &dataplane.spec) else {
        return Ok(None);
    };
    let Some(metrics) = &mesh_spec.metrics else {
        return Ok(None);
    };
    if metrics.enabled_backend.is_empty() {
        return Ok(None);
    }
    let mesh_resource = format!("mesh {}", mesh.meta.name);
    let Some((index, backend)) = metrics
        .backends
        .iter()
        .enumerate()
        .find(|(_, b)| b.name == metrics.enabled_backend)
    else {
        return Err(MetricsError::Invalid {
            resource: mesh_resource,
            field: "metrics.enabledBackend".into(),
            reason: format!("no backend named {:?}", metrics.enabled_backend),
        });
    };
    if !backend.r#type.is_empty() && backend.r#type != PROMETHEUS_TYPE {
        return Ok(None);
    }
    let mut endpoint = PrometheusEndpoint {
        backend: backend.name.clone(),
        address: dp_spec
            .networking
            .as_ref()
            .map(|n| n.address.clone())
            .unwrap_or_default(),
        port: DEFAULT_PORT,
        path: DEFAULT_PATH.to_string(),
        scheme: "http",
    };
    if let Some(conf) = &backend.conf {
        apply_conf(
            &mut endpoint,
            conf,
            &mesh_resource,
            &format!("metrics.backends[{index}].conf"),
        )?;
    }
    if let Some(own) = &dp_spec.metrics {
        let resource = format!("dataplane {}", dataplane.meta.name);
        if !own.r#type.is_empty() && own.r#type != PROMETHEUS_TYPE {
            return Err(MetricsError::Invalid {
                resource,
                field: "metrics.type".into(),
                reason: format!("{:?} is not a known metrics backend type", own.r#type),
            });
        }
        if let Some(conf) = &own.conf {
            apply_conf(&mut endpoint, conf, &resource, "metrics.conf")?;
        }
    }
    Ok(Some(endpoint))
}

/// Sets what `conf` sets (a zero port or an empty path keeps the previous
/// value, as a proto merge would).
fn apply_conf(
    endpoint: &mut PrometheusEndpoint,
    conf: &Struct,
    resource: &str,
    field: &str,
) -> Result<(), MetricsError> {
    let invalid = |name: &str, reason: &str| MetricsError::Invalid {
        resource: resource.to_string(),
        field: format!("{field}.{name}"),
        reason: reason.to_string(),
    };
    match conf.fields.get("port").and_then(|v| v.kind.as_ref()) {
        None | Some(Kind::NullValue(_)) => {}
        Some(Kind::NumberValue(n)) if *n == 0.0 => {}
        Some(Kind::NumberValue(n)) if n.fract() == 0.0 && (1.0..=65535.0).contains(n) => {
            endpoint.port = *n as u32;
        }
        Some(Kind::StringValue(s)) => match s.parse::<u16>() {
            Ok(0) => {}
            Ok(p) => endpoint.port = u32::from(p),
            Err(_) => return Err(invalid("port", "must be a port number from 1 to 65535")),
        },
        Some(_) => return Err(invalid("port", "must be a port number from 1 to 65535")),
    }
    match conf.fields.get("path").and_then(|v| v.kind.as_ref()) {
        None | Some(Kind::NullValue(_)) => {}
        Some(Kind::StringValue(s)) if s.is_empty() => {}
        Some(Kind::StringValue(s)) if s.starts_with('/') => endpoint.path = s.clone(),
        Some(_) => return Err(invalid("path", "must be a path starting with /")),
    }
    if let Some(Kind::StructValue(tls)) = conf.fields.get("tls").and_then(|v| v.kind.as_ref()) {
        match tls.fields.get("mode").and_then(|v| v.kind.as_ref()) {
            Some(Kind::StringValue(mode)) if mode == "providedTLS" => endpoint.scheme = "https",
            Some(Kind::StringValue(mode)) if mode == "activeMTLSBackend" || mode == "disabled" => {
                endpoint.scheme = "http";
            }
            None | Some(Kind::NullValue(_)) => {}
            Some(_) => {
                return Err(invalid(
                    "tls.mode",
                    "must be activeMTLSBackend, providedTLS or disabled",
                ));
            }
        }
    }
    Ok(())
}

/// The listener `kuma:metrics:prometheus` of `endpoint`: `{path}` (and
/// anything under it) to Envoy's `/stats/prometheus` through the bootstrap's
/// admin cluster.
pub fn prometheus_listener(endpoint: &PrometheusEndpoint) -> Listener {
    let route = Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix(endpoint.path.clone())),
            ..Default::default()
        }),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
                ADMIN_CLUSTER.to_string(),
            )),
            prefix_rewrite: ENVOY_PROMETHEUS_STATS_PATH.to_string(),
            ..Default::default()
        })),
        ..Default::default()
    };
    let manager = HttpConnectionManager {
        stat_prefix: "kuma_metrics_prometheus".to_string(),
        codec_type: http_connection_manager::CodecType::Auto as i32,
        route_specifier: Some(http_connection_manager::RouteSpecifier::RouteConfig(
            RouteConfiguration {
                name: PROMETHEUS_LISTENER.to_string(),
                virtual_hosts: vec![VirtualHost {
                    name: PROMETHEUS_LISTENER.to_string(),
                    domains: vec!["*".to_string()],
                    routes: vec![route],
                    ..Default::default()
                }],
                ..Default::default()
            },
        )),
        http_filters: vec![HttpFilter {
            name: ROUTER_FILTER.to_string(),
            config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(
                Router::default(),
            ))),
            ..Default::default()
        }],
        ..Default::default()
    };
    Listener {
        name: PROMETHEUS_LISTENER.to_string(),
        address: Some(Address {
            address: Some(AddressKind::SocketAddress(SocketAddress {
                address: endpoint.address.clone(),
                port_specifier: Some(PortSpecifier::PortValue(endpoint.port)),
                ..Default::default()
            })),
        }),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: HTTP_CONNECTION_MANAGER_FILTER.to_string(),
                config_type: Some(filter::ConfigType::TypedConfig(pack_any(manager))),
            }],
            ..Default::default()
        }],
        traffic_direction: TrafficDirection::Inbound as i32,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn resource(yaml: &str) -> Resource {
        model::format::parse_documents(yaml).unwrap().remove(0)
    }

    const DP: &str = "type: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  address: 10.0.0.1\n  inbound:\n  - port: 8080\n    tags:\n      kuma.io/service: web\n";

    #[test]
    fn no_metrics_no_endpoint() {
        let mesh = resource("type: Mesh\nname: default\n");
        assert_eq!(prometheus_endpoint(&mesh, &resource(DP)).unwrap(), None);
    }

    #[test]
    fn defaults_then_mesh_conf_then_dataplane_override() {
        let mesh = resource(
            "type: Mesh\nname: default\nmetrics:\n  enabledBackend: prom\n  backends:\n  - name: prom\n    type: prometheus\n",
        );
        let endpoint = prometheus_endpoint(&mesh, &resource(DP)).unwrap().unwrap();
        assert_eq!(
            (
                endpoint.address.as_str(),
                endpoint.port,
                endpoint.path.as_str()
            ),
            ("10.0.0.1", 5670, "/metrics")
        );
        let mesh = resource(
            "type: Mesh\nname: default\nmetrics:\n  enabledBackend: prom\n  backends:\n  - name: prom\n    type: prometheus\n    conf:\n      port: 1234\n      path: /stats\n",
        );
        let dp = resource(&format!(
            "{DP}metrics:\n  type: prometheus\n  conf:\n    port: 4321\n"
        ));
        let endpoint = prometheus_endpoint(&mesh, &dp).unwrap().unwrap();
        assert_eq!((endpoint.port, endpoint.path.as_str()), (4321, "/stats"));
    }

    #[test]
    fn bad_conf_names_the_field() {
        let mesh = resource(
            "type: Mesh\nname: default\nmetrics:\n  enabledBackend: prom\n  backends:\n  - name: prom\n    type: prometheus\n    conf:\n      port: 70000\n",
        );
        let error = prometheus_endpoint(&mesh, &resource(DP)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "mesh default: metrics.backends[0].conf.port: must be a port number from 1 to 65535"
        );
    }
}
