//! The Envoy bootstrap of a Kuma sidecar (reference: `kuma-api.md` §4.2,
//! Kuma's `pkg/xds/bootstrap/template_v3.go`), as an envoy-types
//! [`Bootstrap`] message:
//!
//! * `node`: id `{mesh}.{name}`, cluster = the dataplane's service (first
//!   inbound's `kuma.io/service`, else the gateway's, else `unknown`); ADS
//!   needs both;
//! * `static_resources.clusters`: `kuma:envoy:admin` (Envoy's own admin
//!   API, where the generated Prometheus listener sends scrapes) and
//!   `ads_cluster`, the control plane's xDS
//!   server (STATIC for an IP, STRICT_DNS for a host name), always HTTP/2
//!   (Envoy silently speaks HTTP/1.1 to a gRPC server otherwise), with an
//!   `UpstreamTlsContext` trusting an inline CA PEM (SNI and SAN = the xDS
//!   host) when the server is reached over TLS;
//! * `dynamic_resources`: `ads_config` (`GRPC` or `DELTA_GRPC`, transport
//!   V3, node sent on the first message only) through `ads_cluster`, the
//!   dataplane token as gRPC metadata `authorization: Bearer <token>`;
//!   `cds_config` and `lds_config` over ADS;
//! * `admin` on `127.0.0.1:{admin_port}` (or the given address).
//!
//! Pure: no I/O. [`to_json`] and [`to_yaml`] render it through
//! [`crate::render`] (the bootstrap and TLS protos are in the descriptor set).

use std::net::IpAddr;

use envoy_types::pb::envoy::config::bootstrap::v3::bootstrap::{DynamicResources, StaticResources};
use envoy_types::pb::envoy::config::bootstrap::v3::{Admin, Bootstrap};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::core::v3::address::Address as AddressKind;
use envoy_types::pb::envoy::config::core::v3::api_config_source::ApiType;
use envoy_types::pb::envoy::config::core::v3::config_source::ConfigSourceSpecifier;
use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
use envoy_types::pb::envoy::config::core::v3::grpc_service::{EnvoyGrpc, TargetSpecifier};
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType;
use envoy_types::pb::envoy::config::core::v3::{
    Address, AggregatedConfigSource, ApiConfigSource, ApiVersion, ConfigSource, DataSource,
    GrpcService, HeaderValue, Http2ProtocolOptions, Node, SocketAddress, TransportSocket,
};
use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::common_tls_context::ValidationContextType;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::subject_alt_name_matcher::SanType;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::tls_parameters::TlsProtocol;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, SubjectAltNameMatcher, TlsParameters,
    UpstreamTlsContext,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
    ExplicitHttpConfig, UpstreamProtocolOptions, explicit_http_config,
};
use envoy_types::pb::envoy::r#type::matcher::v3::StringMatcher;
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use envoy_types::pb::google::protobuf::value::Kind;
use envoy_types::pb::google::protobuf::{Duration, Struct, Value as ProtoValue};
use envoy_types::util::pack_any;
use model::labels::tags;
use model::{Resource, Spec};
use serde_json::Value;

use crate::generate::HTTP_PROTOCOL_OPTIONS_KEY;
use crate::render::{self, RenderError};

/// The static cluster of the control plane's xDS server.
pub const ADS_CLUSTER: &str = "ads_cluster";
/// The gRPC metadata key that carries the dataplane token on the ADS stream.
pub const AUTHORIZATION_METADATA: &str = "authorization";
/// The scheme before the token in [`AUTHORIZATION_METADATA`].
pub const AUTHORIZATION_SCHEME: &str = "Bearer";
/// The static cluster of Envoy's own admin API (Kuma's name).
pub const ADMIN_CLUSTER: &str = "kuma:envoy:admin";
/// Kuma's default Envoy admin address and port.
pub const DEFAULT_ADMIN_ADDRESS: &str = "127.0.0.1";
pub const DEFAULT_ADMIN_PORT: u32 = 9901;
/// The node cluster of a dataplane without any service (Kuma's `ServiceUnknown`).
pub const UNKNOWN_SERVICE: &str = "unknown";

const TLS_TRANSPORT_SOCKET: &str = "envoy.transport_sockets.tls";
const ADS_CONNECT_TIMEOUT_SECONDS: i64 = 1;

/// Why a bootstrap could not be built or rendered. Never quotes the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootstrapError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("xDS server URL {url:?}: {message}")]
    BadServerUrl { url: String, message: String },
    #[error("rendering the bootstrap: {0}")]
    Render(#[from] RenderError),
}

fn invalid(field: &'static str, message: impl Into<String>) -> BootstrapError {
    BootstrapError::Invalid {
        field,
        message: message.into(),
    }
}

/// The ADS protocol variant (Kuma: `DELTA_GRPC` when kuma-dp advertises
/// `feature-delta-grpc`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum AdsApiType {
    /// State of the world.
    #[default]
    Grpc,
    /// Incremental.
    DeltaGrpc,
}

/// Where and how Envoy reaches the control plane's xDS (ADS) server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdsServer {
    /// Host name or IP address (no brackets for IPv6).
    pub host: String,
    pub port: u16,
    /// `Some(CA PEM)`: TLS, trusting that CA for the server certificate,
    /// whose SAN must match `host`. `None`: plaintext HTTP/2.
    pub tls_ca_pem: Option<String>,
}

impl XdsServer {
    /// From a URL `scheme://host:port`: `https` and `grpcs` mean TLS (then
    /// `ca_pem` is required), `http` and `grpc` plaintext. The port is
    /// required; a path is not allowed.
    pub fn from_url(url: &str, ca_pem: Option<&str>) -> Result<XdsServer, BootstrapError> {
        let bad = |message: &str| BootstrapError::BadServerUrl {
            url: url.to_string(),
            message: message.to_string(),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected scheme://host:port"))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "https" | "grpcs" => true,
            "http" | "grpc" => false,
            _ => return Err(bad("scheme must be https, grpcs, http or grpc")),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains('/') {
            return Err(bad("must not have a path"));
        }
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| bad("the port is required"))?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| bad("the port must be a number from 1 to 65535"))?;
        if port == 0 {
            return Err(bad("the port must be a number from 1 to 65535"));
        }
        let tls_ca_pem = if tls {
            match ca_pem {
                Some(pem) if !pem.trim().is_empty() => Some(pem.to_string()),
                _ => return Err(bad("TLS needs the CA certificate (PEM) of the server")),
            }
        } else {
            None
        };
        Ok(XdsServer {
            host: host.to_string(),
            port,
            tls_ca_pem,
        })
    }
}

/// Everything a sidecar's bootstrap depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootstrapParams {
    pub mesh: String,
    pub name: String,
    /// `node.cluster`: the dataplane's service.
    pub service: String,
    /// The dataplane token; `None` when the control plane does not
    /// authenticate dataplanes.
    pub token: Option<String>,
    pub xds: XdsServer,
    pub api_type: AdsApiType,
    pub admin_address: String,
    pub admin_port: u32,
    /// The Dataplane as JSON when it came inline with the bootstrap request
    /// (universal `kuma-dp run --dataplane`): sent to the ADS server as node
    /// metadata [`DATAPLANE_RESOURCE_METADATA`], which marks the proxy as
    /// registered by its stream (re-created on connect, deleted after it
    /// leaves).
    pub dataplane_resource: Option<String>,
}

/// Kuma's node metadata key of an inline Dataplane (JSON text).
pub const DATAPLANE_RESOURCE_METADATA: &str = "dataplane.resource";

/// `node.cluster` of a zone ingress (which has no mesh: its node id is `.{name}`).
pub const ZONE_INGRESS_CLUSTER: &str = "ingress";

impl BootstrapParams {
    /// The parameters for a proxy resource, Kuma's default admin address and
    /// the admin port of its `networking.admin.port` (else Kuma's default):
    /// a Dataplane (mesh and name from its meta, the service from
    /// [`node_cluster`]) or a ZoneIngress (no mesh, node cluster
    /// [`ZONE_INGRESS_CLUSTER`]).
    pub fn for_dataplane(
        proxy: &Resource,
        xds: XdsServer,
        token: Option<String>,
    ) -> Result<BootstrapParams, BootstrapError> {
        let (mesh, service, admin) = match &proxy.spec {
            Spec::Dataplane(dp) => (
                proxy.meta.mesh.clone(),
                node_cluster(proxy),
                dp.networking.as_ref().and_then(|n| n.admin.as_ref()),
            ),
            Spec::ZoneIngress(zi) => (
                String::new(),
                ZONE_INGRESS_CLUSTER.to_string(),
                zi.networking.as_ref().and_then(|n| n.admin.as_ref()),
            ),
            _ => {
                return Err(invalid(
                    "type",
                    format!("{} is neither a Dataplane nor a ZoneIngress", proxy.kind()),
                ));
            }
        };
        let admin_port = admin
            .map(|a| a.port)
            .filter(|p| *p != 0)
            .unwrap_or(DEFAULT_ADMIN_PORT);
        Ok(BootstrapParams {
            mesh,
            name: proxy.meta.name.clone(),
            service,
            token,
            xds,
            api_type: AdsApiType::Grpc,
            admin_address: DEFAULT_ADMIN_ADDRESS.to_string(),
            admin_port,
            dataplane_resource: None,
        })
    }
}

/// Kuma's identifying service of a dataplane: the first inbound's
/// `kuma.io/service`, else the gateway's, else [`UNKNOWN_SERVICE`].
pub fn node_cluster(dataplane: &Resource) -> String {
    let Spec::Dataplane(dp) = &dataplane.spec else {
        return UNKNOWN_SERVICE.to_string();
    };
    let Some(net) = &dp.networking else {
        return UNKNOWN_SERVICE.to_string();
    };
    if let Some(first) = net.inbound.first() {
        return first
            .tags
            .get(tags::SERVICE)
            .filter(|s| !s.is_empty())
            .cloned()
            .unwrap_or_else(|| UNKNOWN_SERVICE.to_string());
    }
    net.gateway
        .as_ref()
        .and_then(|g| g.tags.get(tags::SERVICE))
        .filter(|s| !s.is_empty())
        .cloned()
        .unwrap_or_else(|| UNKNOWN_SERVICE.to_string())
}

/// `{mesh}.{name}`: the node id the ADS server reads the proxy from.
pub fn node_id(mesh: &str, name: &str) -> String {
    format!("{mesh}.{name}")
}

/// The bootstrap of one sidecar.
pub fn bootstrap(params: &BootstrapParams) -> Result<Bootstrap, BootstrapError> {
    if params.name.is_empty() {
        return Err(invalid("name", "must not be empty"));
    }
    if params.mesh.is_empty() && params.service != ZONE_INGRESS_CLUSTER {
        return Err(invalid("mesh", "must not be empty"));
    }
    if params.service.is_empty() {
        return Err(invalid("service", "must not be empty"));
    }
    if params.xds.host.is_empty() {
        return Err(invalid("xds.host", "must not be empty"));
    }
    if params.xds.port == 0 {
        return Err(invalid("xds.port", "must be from 1 to 65535"));
    }
    if params.admin_port == 0 || params.admin_port > u32::from(u16::MAX) {
        return Err(invalid("adminPort", "must be from 1 to 65535"));
    }
    if params.admin_address.parse::<IpAddr>().is_err() {
        return Err(invalid("adminAddress", "must be an IP address"));
    }
    let mut initial_metadata = Vec::new();
    if let Some(token) = &params.token {
        let token = token.trim();
        // A header value must not carry control characters; say so without quoting it.
        if token.is_empty() || token.bytes().any(|b| b.is_ascii_control()) {
            return Err(invalid(
                "dataplaneToken",
                "must be non-empty printable text",
            ));
        }
        initial_metadata.push(HeaderValue {
            key: AUTHORIZATION_METADATA.to_string(),
            value: format!("{AUTHORIZATION_SCHEME} {token}"),
            ..Default::default()
        });
    }
    let api_type = match params.api_type {
        AdsApiType::Grpc => ApiType::Grpc,
        AdsApiType::DeltaGrpc => ApiType::DeltaGrpc,
    };
    let ads_source = || ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        ..Default::default()
    };
    Ok(Bootstrap {
        node: Some(Node {
            id: node_id(&params.mesh, &params.name),
            cluster: params.service.clone(),
            metadata: params.dataplane_resource.as_ref().map(|json| Struct {
                fields: [(
                    DATAPLANE_RESOURCE_METADATA.to_string(),
                    ProtoValue {
                        kind: Some(Kind::StringValue(json.clone())),
                    },
                )]
                .into_iter()
                .collect(),
            }),
            ..Default::default()
        }),
        static_resources: Some(StaticResources {
            clusters: vec![
                ads_cluster(&params.xds),
                admin_cluster(&params.admin_address, params.admin_port),
            ],
            ..Default::default()
        }),
        dynamic_resources: Some(DynamicResources {
            lds_config: Some(ads_source()),
            cds_config: Some(ads_source()),
            ads_config: Some(ApiConfigSource {
                api_type: api_type as i32,
                transport_api_version: ApiVersion::V3 as i32,
                set_node_on_first_message_only: true,
                grpc_services: vec![GrpcService {
                    target_specifier: Some(TargetSpecifier::EnvoyGrpc(EnvoyGrpc {
                        cluster_name: ADS_CLUSTER.to_string(),
                        ..Default::default()
                    })),
                    initial_metadata,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }),
        admin: Some(Admin {
            address: Some(socket_address(&params.admin_address, params.admin_port)),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The proto3 JSON of a bootstrap (what Envoy reads with `-c`).
pub fn to_json(bootstrap: &Bootstrap) -> Result<Value, BootstrapError> {
    Ok(render::to_json(bootstrap)?)
}

/// The YAML form of [`to_json`] (what kuma-dp writes to `bootstrap.yaml`).
pub fn to_yaml(bootstrap: &Bootstrap) -> Result<String, BootstrapError> {
    serde_yaml_ng::to_string(&to_json(bootstrap)?)
        .map_err(|e| BootstrapError::Render(RenderError::Yaml(e.to_string())))
}

fn socket_address(address: &str, port: u32) -> Address {
    Address {
        address: Some(AddressKind::SocketAddress(SocketAddress {
            address: address.to_string(),
            port_specifier: Some(PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    }
}

/// The static cluster `kuma:envoy:admin` ([`ADMIN_CLUSTER`]): Envoy's own
/// admin API, so that generated listeners (the Prometheus endpoint of
/// [`crate::metrics`]) can route to it without knowing its port.
pub fn admin_cluster(address: &str, port: u32) -> Cluster {
    Cluster {
        name: ADMIN_CLUSTER.to_string(),
        connect_timeout: Some(Duration {
            seconds: ADS_CONNECT_TIMEOUT_SECONDS,
            nanos: 0,
        }),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: ADMIN_CLUSTER.to_string(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![LbEndpoint {
                    host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
                        address: Some(socket_address(address, port)),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `ads_cluster`: HTTP/2 to the xDS server, TLS when configured.
fn ads_cluster(xds: &XdsServer) -> Cluster {
    let ip = xds.host.parse::<IpAddr>().ok();
    let discovery = if ip.is_some() {
        DiscoveryType::Static
    } else {
        DiscoveryType::StrictDns
    };
    let http2 = HttpProtocolOptions {
        upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
                    Http2ProtocolOptions::default(),
                )),
            },
        )),
        ..Default::default()
    };
    let mut cluster = Cluster {
        name: ADS_CLUSTER.to_string(),
        connect_timeout: Some(Duration {
            seconds: ADS_CONNECT_TIMEOUT_SECONDS,
            nanos: 0,
        }),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(discovery as i32)),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: ADS_CLUSTER.to_string(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![LbEndpoint {
                    host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
                        address: Some(socket_address(&xds.host, u32::from(xds.port))),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    cluster
        .typed_extension_protocol_options
        .insert(HTTP_PROTOCOL_OPTIONS_KEY.to_string(), pack_any(http2));
    if let Some(ca_pem) = &xds.tls_ca_pem {
        let san_type = if ip.is_some() {
            SanType::IpAddress
        } else {
            SanType::Dns
        };
        let tls = UpstreamTlsContext {
            sni: xds.host.clone(),
            common_tls_context: Some(CommonTlsContext {
                tls_params: Some(TlsParameters {
                    tls_minimum_protocol_version: TlsProtocol::TlSv12 as i32,
                    ..Default::default()
                }),
                validation_context_type: Some(ValidationContextType::ValidationContext(
                    CertificateValidationContext {
                        trusted_ca: Some(DataSource {
                            specifier: Some(Specifier::InlineString(ca_pem.clone())),
                            ..Default::default()
                        }),
                        match_typed_subject_alt_names: vec![SubjectAltNameMatcher {
                            san_type: san_type as i32,
                            matcher: Some(StringMatcher {
                                match_pattern: Some(MatchPattern::Exact(xds.host.clone())),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }],
                        ..Default::default()
                    },
                )),
                ..Default::default()
            }),
            ..Default::default()
        };
        cluster.transport_socket = Some(TransportSocket {
            name: TLS_TRANSPORT_SOCKET.to_string(),
            config_type: Some(ConfigType::TypedConfig(pack_any(tls))),
        });
    }
    cluster
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn server_urls() {
        let s = XdsServer::from_url("grpcs://cp.example:5678", Some("PEM")).unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.tls_ca_pem.as_deref()),
            ("cp.example", 5678, Some("PEM"))
        );
        let s = XdsServer::from_url("http://[::1]:5678/", None).unwrap();
        assert_eq!((s.host.as_str(), s.port, s.tls_ca_pem), ("::1", 5678, None));
        for (url, why) in [
            ("cp:5678", "scheme"),
            ("ftp://cp:5678", "scheme"),
            ("https://cp", "port"),
            ("https://cp:0", "port"),
            ("https://cp:x", "port"),
            ("http://cp:1/x", "path"),
            ("https://cp:5678", "CA"),
        ] {
            let err = XdsServer::from_url(url, None).unwrap_err().to_string();
            assert!(err.contains(why), "{url}: {err}");
        }
    }

    #[test]
    fn bad_params_name_the_field_and_never_the_token() {
        let params = BootstrapParams {
            mesh: "default".into(),
            name: "web-1".into(),
            service: "web".into(),
            token: Some("secret\ntoken".into()),
            xds: XdsServer {
                host: "127.0.0.1".into(),
                port: 5678,
                tls_ca_pem: None,
            },
            api_type: AdsApiType::Grpc,
            admin_address: DEFAULT_ADMIN_ADDRESS.into(),
            admin_port: DEFAULT_ADMIN_PORT,
            dataplane_resource: None,
        };
        let err = bootstrap(&params).unwrap_err().to_string();
        assert!(err.starts_with("dataplaneToken"), "{err}");
        assert!(!err.contains("secret"), "{err}");
        let mut p = params.clone();
        p.token = None;
        p.admin_port = 70000;
        assert!(
            bootstrap(&p)
                .unwrap_err()
                .to_string()
                .starts_with("adminPort")
        );
        p.admin_port = 9901;
        p.name.clear();
        assert!(bootstrap(&p).unwrap_err().to_string().starts_with("name"));
    }
}
