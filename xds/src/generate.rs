//! A sidecar's Envoy resources as a pure function of (its Dataplane, its Mesh,
//! the mesh's Dataplanes in the zone): reference `kuma-api.md` §5.3, §5.4.
//!
//! * One inbound listener `inbound:{ip}:{port}` per `networking.inbound`,
//!   forwarding to the application through the static cluster
//!   `localhost:{servicePort}` (endpoint `serviceAddress`, default
//!   `127.0.0.1`).
//! * One outbound listener `outbound:{ip}:{port}` per `networking.outbound`
//!   (ip default `127.0.0.1`) that a TrafficRoute selects (the others are
//!   skipped and listed in [`EnvoyResources::skipped`]), to the EDS clusters
//!   of the route's destinations (config source ADS, see
//!   [`crate::policy::routes`]), weighted when there are several; each load
//!   assignment lists the ready inbounds of the mesh tagged with the
//!   destination's `kuma.io/service` and subset tags (`advertisedAddress` or
//!   `address` : `port`), with their other tags as `envoy.lb` metadata.
//! * When the mesh enables mTLS (`mtls.enabledBackend`), the RBAC network
//!   filter of the inbound's TrafficPermission goes first on each inbound
//!   ([`crate::policy::permissions`]).
//! * `kuma.io/protocol` picks the filter: `http`, `http2`, `grpc` -> HTTP
//!   connection manager with an inline route configuration (an inbound's:
//!   everything to the application; an outbound's: the route's `conf.http[]`
//!   rules, then everything to its destinations, [`crate::policy::http`])
//!   and the router filter, `http2`/`grpc` clusters speak HTTP/2 upstream;
//!   `tcp`, `kafka`, absent or unknown -> tcp_proxy.
//!
//! * mTLS (when the mesh enables a backend; [`crate::tls`]): a
//!   `DownstreamTlsContext` on every inbound listener, an
//!   `UpstreamTlsContext` (SNI, ALPN `kuma`) on every outbound EDS cluster,
//!   and the SDS secrets both reference, from [`MeshContext::tls`] and
//!   [`MeshContext::identity`].
//!
//! * When the mesh enables a prometheus metrics backend, the listener
//!   `kuma:metrics:prometheus` ([`crate::metrics`]).
//!
//! * Transparent proxying (`networking.transparentProxying` with both
//!   redirect ports): the passthrough listeners and clusters, an outbound on
//!   every service VIP of [`MeshContext::vips`], routed like the explicit
//!   ones, and `bind_to_port: false` on every inbound and outbound listener
//!   ([`crate::transparent`]).
//!
//! TODO (later slices of issue 5, each its own module):
//! * Locality grouping by `kuma.io/zone`.
//! * Admin/probe/DNS listeners, timeouts,
//!   inbound listener metadata (tags), HealthCheck, CircuitBreaker, ...

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, EdsClusterConfig,
};
use envoy_types::pb::envoy::config::core::v3::address::Address as AddressKind;
use envoy_types::pb::envoy::config::core::v3::config_source::ConfigSourceSpecifier;
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::envoy::config::core::v3::{
    Address, AggregatedConfigSource, ApiVersion, ConfigSource, Http2ProtocolOptions, SocketAddress,
    TrafficDirection,
};
use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use envoy_types::pb::envoy::config::route::v3::{Route, RouteConfiguration, VirtualHost};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, http_connection_manager, http_filter,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
    ExplicitHttpConfig, UpstreamProtocolOptions, explicit_http_config,
};
use envoy_types::pb::google::protobuf::{Any, Duration};
use envoy_types::util::pack_any;
use model::labels::tags;
use model::mesh_pb::dataplane::Networking;
use model::mesh_pb::dataplane::networking::inbound::State;
use model::{Resource, ResourceType, Spec};

use crate::endpoints::{EndpointIndex, RemoteIngresses, common_protocol};
use crate::names;
use crate::policy::routes::{self, Destination, LoadBalancer, SkippedOutbound};
use crate::policy::{self, http, permissions};
use crate::tls::{self, MeshTls, ProxyIdentity};
use crate::transparent::{self, ServiceVips, Vips};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;

/// Every xDS type a sidecar snapshot holds.
pub const TYPE_URLS: [&str; 4] = [
    LISTENER_TYPE_URL,
    CLUSTER_TYPE_URL,
    ENDPOINT_TYPE_URL,
    tls::SECRET_TYPE_URL,
];

/// `Any.type_url` and xDS type of listeners (LDS).
pub const LISTENER_TYPE_URL: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// `Any.type_url` and xDS type of clusters (CDS).
pub const CLUSTER_TYPE_URL: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// `Any.type_url` and xDS type of load assignments (EDS).
pub const ENDPOINT_TYPE_URL: &str =
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

/// Envoy's name of the TCP proxy network filter.
pub const TCP_PROXY_FILTER: &str = "envoy.filters.network.tcp_proxy";
/// Envoy's name of the HTTP connection manager network filter.
pub const HTTP_CONNECTION_MANAGER_FILTER: &str = "envoy.filters.network.http_connection_manager";
/// Envoy's name of the router HTTP filter.
pub const ROUTER_FILTER: &str = "envoy.filters.http.router";
/// Key of `Cluster.typed_extension_protocol_options` for upstream HTTP options.
pub const HTTP_PROTOCOL_OPTIONS_KEY: &str =
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// Endpoint metadata namespace of load-balancer subsets (tags of the instance).
pub const ENVOY_LB_METADATA: &str = "envoy.lb";

/// Where an outbound listener binds when `networking.outbound[].address` is empty,
/// and where an inbound's application is when `serviceAddress` is empty.
pub const LOCALHOST: &str = "127.0.0.1";
/// Connect timeout of every cluster (Kuma's default for outbounds).
const CONNECT_TIMEOUT_SECONDS: i64 = 5;

/// Why a proxy's resources could not be generated. Every variant names the
/// offending resource and field; input is never trusted to be validated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenerateError {
    #[error("expected a Dataplane, got a {kind} ({name})")]
    NotADataplane { kind: ResourceType, name: String },
    #[error("expected a Mesh, got a {kind} ({name})")]
    NotAMesh { kind: ResourceType, name: String },
    #[error("dataplane {name} is in mesh {dataplane_mesh:?}, not in mesh {mesh:?}")]
    WrongMesh {
        name: String,
        dataplane_mesh: String,
        mesh: String,
    },
    #[error("dataplane {name}: networking is not defined")]
    NoNetworking { name: String },
    #[error("dataplane {name}: {field}: {port} is not a valid port (1-65535)")]
    InvalidPort {
        name: String,
        field: String,
        port: u32,
    },
    #[error("dataplane {name}: {field}: mandatory tag \"kuma.io/service\" is missing")]
    MissingService { name: String, field: String },
    #[error(
        "dataplane {name}: mesh {mesh} enables mTLS but no certificate was given for the proxy"
    )]
    MtlsWithoutCertificates { name: String, mesh: String },
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error("dataplane {name}: {field}: listener {listener} is already defined")]
    DuplicateListener {
        name: String,
        field: String,
        listener: String,
    },
}

/// The application protocol of a service (`kuma.io/protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Http,
    Http2,
    Grpc,
    Kafka,
    /// Absent or not a protocol Kuma knows: treated as TCP.
    Unknown,
}

impl Protocol {
    /// The protocol a `kuma.io/protocol` tag value names.
    pub fn from_tag(value: Option<&str>) -> Protocol {
        match value {
            Some("tcp") => Protocol::Tcp,
            Some("http") => Protocol::Http,
            Some("http2") => Protocol::Http2,
            Some("grpc") => Protocol::Grpc,
            Some("kafka") => Protocol::Kafka,
            _ => Protocol::Unknown,
        }
    }

    /// Protocols this one can also be spoken as, most specific first
    /// (Kuma's protocol stacks: grpc is http2 is tcp, http is tcp).
    fn stack(self) -> &'static [Protocol] {
        match self {
            Protocol::Grpc => &[Protocol::Grpc, Protocol::Http2, Protocol::Tcp],
            Protocol::Http2 => &[Protocol::Http2, Protocol::Tcp],
            Protocol::Http => &[Protocol::Http, Protocol::Tcp],
            Protocol::Kafka => &[Protocol::Kafka, Protocol::Tcp],
            Protocol::Tcp => &[Protocol::Tcp],
            Protocol::Unknown => &[],
        }
    }

    /// The most specific protocol both can speak (Kuma's `GetCommonProtocol`):
    /// `grpc` + `http2` -> `http2`, `http` + `http2` -> `tcp`, anything with
    /// an unknown protocol -> unknown.
    pub fn common(self, other: Protocol) -> Protocol {
        if self == other {
            return self;
        }
        self.stack()
            .iter()
            .find(|p| other.stack().contains(p))
            .copied()
            .unwrap_or(Protocol::Unknown)
    }

    /// Whether listeners for it use the HTTP connection manager.
    pub fn is_http(self) -> bool {
        matches!(self, Protocol::Http | Protocol::Http2 | Protocol::Grpc)
    }

    /// Whether its clusters speak HTTP/2 upstream.
    pub fn is_http2(self) -> bool {
        matches!(self, Protocol::Http2 | Protocol::Grpc)
    }
}

/// A resource packed for the wire, with the name xDS knows it by.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedResource {
    pub name: String,
    pub resource: Any,
}

/// Everything generated for one proxy, each list sorted by name. Its `Debug`
/// (in [`crate::tls`]) shows secrets by name only, never their keys.
#[derive(Clone, Default, PartialEq)]
pub struct EnvoyResources {
    pub listeners: Vec<Listener>,
    pub clusters: Vec<Cluster>,
    /// The EDS resources of the EDS clusters (static clusters carry theirs inline).
    pub load_assignments: Vec<std::sync::Arc<ClusterLoadAssignment>>,
    /// The SDS secrets (mTLS): the proxy's certificate and the mesh CA.
    pub secrets: Vec<Secret>,
    /// Outbounds left out, with the reason (for the caller to log); not sent.
    pub skipped: Vec<SkippedOutbound>,
}

impl EnvoyResources {
    /// The resources packed in `Any`, grouped by xDS type URL (every type
    /// present, possibly empty, so that a SotW response can say "none").
    pub fn by_type_url(&self) -> BTreeMap<&'static str, Vec<NamedResource>> {
        TYPE_URLS
            .iter()
            .map(|type_url| (*type_url, self.of_type(type_url)))
            .collect()
    }

    /// The resources of `type_url` packed in `Any` (none for a type this
    /// struct does not hold).
    pub fn of_type(&self, type_url: &str) -> Vec<NamedResource> {
        fn pack<'a, T: prost::Name + Clone + 'a>(
            items: impl Iterator<Item = (&'a String, &'a T)>,
        ) -> Vec<NamedResource> {
            items
                .map(|(name, item)| NamedResource {
                    name: name.clone(),
                    resource: pack_any(item.clone()),
                })
                .collect()
        }
        match type_url {
            LISTENER_TYPE_URL => pack(self.listeners.iter().map(|l| (&l.name, l))),
            CLUSTER_TYPE_URL => pack(self.clusters.iter().map(|c| (&c.name, c))),
            ENDPOINT_TYPE_URL => pack(
                self.load_assignments
                    .iter()
                    .map(|a| (&a.cluster_name, &**a)),
            ),
            tls::SECRET_TYPE_URL => pack(self.secrets.iter().map(|s| (&s.name, s))),
            _ => Vec::new(),
        }
    }

    /// Whether `self` and `other` hold equal resources of `type_url`.
    pub fn same_of_type(&self, other: &EnvoyResources, type_url: &str) -> bool {
        match type_url {
            LISTENER_TYPE_URL => self.listeners == other.listeners,
            CLUSTER_TYPE_URL => self.clusters == other.clusters,
            // Shared assignments compare by pointer first (see MeshIndex::build_after).
            ENDPOINT_TYPE_URL => {
                self.load_assignments.len() == other.load_assignments.len()
                    && self
                        .load_assignments
                        .iter()
                        .zip(&other.load_assignments)
                        .all(|(a, b)| std::sync::Arc::ptr_eq(a, b) || a == b)
            }
            tls::SECRET_TYPE_URL => self.secrets == other.secrets,
            _ => false,
        }
    }
}

/// What generation reads besides the proxy itself: its mesh as the zone
/// knows it. Every field is input, never fetched; later slices add fields
/// (policies, the proxy's identity) rather than arguments.
#[derive(Debug, Clone, Copy)]
pub struct MeshContext<'a> {
    /// The proxy's Mesh.
    pub mesh: &'a Resource,
    /// Every Dataplane of the mesh in the zone (those of other meshes are
    /// ignored; the proxy may or may not be among them).
    pub dataplanes: &'a [Resource],
    /// The mesh's policies, of any type and in any order (TrafficPermission,
    /// TrafficRoute, ...); generation picks the types it knows.
    pub policies: &'a [Resource],
    /// The mesh CA bundle, when the mesh enables mTLS.
    pub tls: Option<&'a MeshTls>,
    /// The proxy's own certificate, when the mesh enables mTLS.
    pub identity: Option<&'a ProxyIdentity>,
    /// The mesh's services with a virtual IP (Config `kuma-{mesh}-dns-vips`):
    /// transparent-proxy Dataplanes get an outbound on each ([`crate::transparent`]).
    pub vips: &'a Vips,
    /// `dnsServer.serviceVipEnabled` / `serviceVipPort`.
    pub service_vips: ServiceVips,
    /// Other zones' ingresses: with mTLS on, the services they make
    /// available are endpoints too ([`crate::endpoints`]).
    pub remote: RemoteIngresses<'a>,
}

/// No VIPs.
static NO_VIPS: Vips = Vips::new();

impl<'a> MeshContext<'a> {
    /// A context with no policies.
    pub fn new(mesh: &'a Resource, dataplanes: &'a [Resource]) -> MeshContext<'a> {
        MeshContext {
            mesh,
            dataplanes,
            policies: &[],
            tls: None,
            identity: None,
            vips: &NO_VIPS,
            service_vips: ServiceVips::default(),
            remote: RemoteIngresses::default(),
        }
    }
}

/// The Envoy resources of the sidecar `proxy` (a Dataplane of
/// `context.mesh`).
pub fn generate(
    proxy: &Resource,
    context: &MeshContext<'_>,
) -> Result<EnvoyResources, GenerateError> {
    generate_indexed(proxy, context, &MeshIndex::build(context)?)
}

/// What generation derives from a mesh once for all its proxies: the
/// instances of every service. Indexing costs a pass over every Dataplane
/// of the mesh, so a caller generating many proxies of one mesh builds it
/// once and calls [`generate_indexed`] (the xDS feed does); [`generate`]
/// builds one per call.
///
/// It also remembers the load assignment of every outbound cluster it was
/// asked for: a cluster's name determines its service and subset, hence its
/// endpoints, so all proxies of the mesh share one copy per pass.
pub struct MeshIndex {
    endpoints: EndpointIndex,
    assignments: std::sync::Mutex<BTreeMap<String, std::sync::Arc<ClusterLoadAssignment>>>,
    /// The assignments of the previous pass over the mesh: an unchanged one
    /// is shared again, so snapshots compare it by pointer.
    previous: BTreeMap<String, std::sync::Arc<ClusterLoadAssignment>>,
    protocols: std::sync::Mutex<BTreeMap<String, Option<Protocol>>>,
}

impl MeshIndex {
    /// The index of `context.dataplanes` (those of other meshes ignored).
    pub fn build(context: &MeshContext<'_>) -> Result<MeshIndex, GenerateError> {
        let (mtls, locality_aware) = match &context.mesh.spec {
            Spec::Mesh(mesh) => (
                mesh.mtls
                    .as_ref()
                    .is_some_and(|m| !m.enabled_backend.is_empty()),
                mesh.routing
                    .as_ref()
                    .is_some_and(|r| r.locality_aware_load_balancing),
            ),
            _ => (false, false),
        };
        // Cross-zone traffic is routed by SNI, so it needs mTLS.
        let remote = mtls.then_some(context.remote);
        Ok(MeshIndex {
            endpoints: EndpointIndex::build(
                &context.mesh.meta.name,
                context.dataplanes,
                remote,
                locality_aware,
            )?,
            assignments: std::sync::Mutex::default(),
            previous: BTreeMap::new(),
            protocols: std::sync::Mutex::default(),
        })
    }

    /// [`MeshIndex::build`] for the pass that follows `previous` over the
    /// same mesh: a load assignment equal to one `previous` handed out is
    /// that very `Arc`, so an unchanged endpoint list costs a pointer
    /// comparison in [`crate::ads::SnapshotCache::set`], not a deep one per proxy.
    pub fn build_after(
        context: &MeshContext<'_>,
        previous: MeshIndex,
    ) -> Result<MeshIndex, GenerateError> {
        let mut index = MeshIndex::build(context)?;
        index.previous = previous
            .assignments
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(index)
    }

    /// The protocol every instance of the outbound cluster `destination`
    /// speaks; `None` when it has no instance.
    fn subset_protocol(&self, destination: &Destination) -> Option<Protocol> {
        let mut protocols = self
            .protocols
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *protocols
            .entry(destination.cluster.clone())
            .or_insert_with(|| {
                let instances = self
                    .endpoints
                    .in_subset(&destination.service, &destination.tags);
                (!instances.is_empty()).then(|| common_protocol(instances))
            })
    }

    /// Whether some endpoint of the outbound cluster `destination` is
    /// another zone's ingress.
    fn has_remote(&self, destination: &Destination) -> bool {
        self.endpoints
            .in_subset(&destination.service, &destination.tags)
            .iter()
            .any(|i| i.remote_zone.is_some())
    }

    /// The load assignment of the outbound cluster `destination`.
    fn load_assignment(&self, destination: &Destination) -> std::sync::Arc<ClusterLoadAssignment> {
        let mut assignments = self
            .assignments
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        assignments
            .entry(destination.cluster.clone())
            .or_insert_with(|| {
                let instances = self
                    .endpoints
                    .in_subset(&destination.service, &destination.tags);
                let assignment = self
                    .endpoints
                    .load_assignment(&destination.cluster, &instances);
                match self.previous.get(&destination.cluster) {
                    Some(previous) if **previous == assignment => previous.clone(),
                    _ => std::sync::Arc::new(assignment),
                }
            })
            .clone()
    }
}

/// [`generate`] with the mesh's [`MeshIndex`], built from the same
/// `context`.
pub fn generate_indexed(
    proxy: &Resource,
    context: &MeshContext<'_>,
    mesh_index: &MeshIndex,
) -> Result<EnvoyResources, GenerateError> {
    let mesh = context.mesh;
    let Spec::Mesh(mesh_spec) = &mesh.spec else {
        return Err(GenerateError::NotAMesh {
            kind: mesh.kind(),
            name: mesh.meta.name.clone(),
        });
    };
    let networking = dataplane_networking(proxy)?.ok_or_else(|| GenerateError::NoNetworking {
        name: proxy.meta.name.clone(),
    })?;
    if proxy.meta.mesh != mesh.meta.name {
        return Err(GenerateError::WrongMesh {
            name: proxy.meta.name.clone(),
            dataplane_mesh: proxy.meta.mesh.clone(),
            mesh: mesh.meta.name.clone(),
        });
    }
    let name = &proxy.meta.name;
    let mtls = tls::active(mesh_spec, context, name, &mesh.meta.name)?;
    let proxy_tags = policy::proxy_tags(networking);
    let mut skipped = Vec::new();
    let mut outbound_listeners = BTreeSet::new();
    let redirect = transparent::redirect(networking);

    let mut listeners = BTreeMap::new();
    let mut clusters = BTreeMap::new();
    let mut load_assignments = BTreeMap::new();

    for (index, inbound) in networking.inbound.iter().enumerate() {
        let field = format!("networking.inbound[{index}]");
        if inbound.state == State::Ignored as i32 {
            continue;
        }
        // Kuma skips an inbound without a service (it has nothing to serve).
        let Some(service) = inbound.tags.get(tags::SERVICE) else {
            continue;
        };
        let port = valid_port(name, &format!("{field}.port"), inbound.port)?;
        let service_port = match inbound.service_port {
            0 => port,
            p => valid_port(name, &format!("{field}.servicePort"), p)?,
        };
        let ip = non_empty_or(&inbound.address, &networking.address);
        let app_ip = non_empty_or(&inbound.service_address, LOCALHOST);
        let protocol = Protocol::from_tag(inbound.tags.get(tags::PROTOCOL).map(String::as_str));
        let cluster_name = names::local_cluster(service_port);

        clusters
            .entry(cluster_name.clone())
            .or_insert_with(|| local_cluster(&cluster_name, app_ip, service_port, protocol));
        let listener_name = names::inbound_listener(ip, port);
        let filter = if protocol.is_http() {
            http_connection_manager(
                TrafficDirection::Inbound,
                &names::stat_prefix(&cluster_name),
                &names::inbound_route_config(service),
                service,
                vec![http::catch_all(&[(&cluster_name, 1)])],
            )
        } else {
            tcp_proxy(&names::stat_prefix(&cluster_name), &[(&cluster_name, 1)])
        };
        let mut listener = listener(&listener_name, ip, port, TrafficDirection::Inbound, filter);
        if redirect.is_some() {
            transparent::unbind(&mut listener);
        }
        if let Some(mtls) = &mtls {
            tls::secure_inbound(&mut listener, &mesh.meta.name, mtls.mode);
            // After the TLS chains exist: RBAC goes first in every one of them.
            let permission =
                policy::select_permission(context.policies, &mesh.meta.name, &inbound.tags);
            let rbac = permissions::rbac_filter(&listener_name, &mesh.meta.name, permission);
            permissions::prepend(&mut listener, &rbac);
        }
        insert_listener(&mut listeners, listener, name, &field)?;
    }

    // The explicit outbounds, then (transparent proxying) one per service VIP.
    let mut planned = Vec::new();
    for (index, outbound) in networking.outbound.iter().enumerate() {
        let field = format!("networking.outbound[{index}]");
        let service =
            outbound
                .tags
                .get(tags::SERVICE)
                .ok_or_else(|| GenerateError::MissingService {
                    name: name.clone(),
                    field: field.clone(),
                })?;
        let port = valid_port(name, &format!("{field}.port"), outbound.port)?;
        let ip = non_empty_or(&outbound.address, LOCALHOST);
        planned.push((field, service.clone(), ip.to_owned(), port));
    }
    if redirect.is_some() {
        for vip in transparent::vip_outbounds(networking, context.vips, context.service_vips) {
            let field = format!("VIP {} of {:?}", vip.address, vip.service);
            planned.push((field, vip.service, vip.address.to_string(), vip.port));
        }
    }

    for (field, service, ip, port) in planned {
        let (service, ip) = (&service, ip.as_str());
        let listener_name = names::outbound_listener(ip, port);
        // A clash is an error even when an outbound is skipped.
        if listeners.contains_key(&listener_name)
            || !outbound_listeners.insert(listener_name.clone())
        {
            return Err(GenerateError::DuplicateListener {
                name: name.clone(),
                field,
                listener: listener_name,
            });
        }
        let route = policy::select_route(context.policies, &mesh.meta.name, &proxy_tags, service)
            .ok_or(None)
            .and_then(|selected| routes::resolve(selected, service).map_err(Some));
        let route = match route {
            Ok(route) => route,
            Err(error) => {
                skipped.push(SkippedOutbound {
                    dataplane: name.clone(),
                    field,
                    service: service.clone(),
                    error,
                });
                continue;
            }
        };
        let targets: Vec<&Destination> = route.all_destinations().collect();
        // The protocol all instances of all targets speak (unknown: none).
        let protocol = targets
            .iter()
            .filter_map(|d| mesh_index.subset_protocol(d))
            .reduce(Protocol::common)
            .unwrap_or(Protocol::Unknown);
        // HTTP rules apply to HTTP outbounds only; a TCP one needs the
        // route's own destinations alone (the last ones).
        let used = if protocol.is_http() {
            &targets[..]
        } else {
            &targets[targets.len() - route.destinations.len()..]
        };
        for destination in used {
            clusters
                .entry(destination.cluster.clone())
                .or_insert_with(|| {
                    let mut cluster = outbound_cluster(destination, protocol, &route.load_balancer);
                    if mesh_index.has_remote(destination) {
                        cluster.outlier_detection =
                            Some(crate::endpoints::remote_outlier_detection());
                    }
                    if mtls.is_some() {
                        cluster.transport_socket = Some(tls::upstream(
                            &mesh.meta.name,
                            &destination.service,
                            &destination.tags,
                        ));
                    }
                    cluster
                });
            load_assignments
                .entry(destination.cluster.clone())
                .or_insert_with(|| mesh_index.load_assignment(destination));
        }
        let filter = if protocol.is_http() {
            http_connection_manager(
                TrafficDirection::Outbound,
                &names::stat_prefix(service),
                &names::outbound_route_config(service),
                service,
                http::outbound_routes(&route),
            )
        } else {
            tcp_proxy(
                &names::stat_prefix(service),
                &http::weights(&route.destinations),
            )
        };
        let mut listener = listener(&listener_name, ip, port, TrafficDirection::Outbound, filter);
        if redirect.is_some() {
            transparent::unbind(&mut listener);
        }
        insert_listener(&mut listeners, listener, name, &field)?;
    }

    if let Some(redirect) = redirect {
        for listener in transparent::passthrough_listeners(redirect) {
            insert_listener(
                &mut listeners,
                listener,
                name,
                "networking.transparentProxying",
            )?;
        }
        for cluster in transparent::passthrough_clusters() {
            clusters.insert(cluster.name.clone(), cluster);
        }
    }

    if let Some(endpoint) = crate::metrics::prometheus_endpoint(mesh, proxy)? {
        // Envoy refuses two listeners on one address.
        let clash = names::inbound_listener(&endpoint.address, endpoint.port);
        if listeners.contains_key(&clash) {
            return Err(GenerateError::DuplicateListener {
                name: name.clone(),
                field: "metrics.conf.port".into(),
                listener: clash,
            });
        }
        let listener = crate::metrics::prometheus_listener(&endpoint);
        insert_listener(&mut listeners, listener, name, "metrics")?;
    }

    Ok(EnvoyResources {
        listeners: listeners.into_values().collect(),
        clusters: clusters.into_values().collect(),
        load_assignments: load_assignments.into_values().collect(),
        secrets: mtls
            .map(|m| tls::secrets(&mesh.meta.name, m.tls, m.identity))
            .unwrap_or_default(),
        skipped,
    })
}

/// The networking of a Dataplane resource (None when it has none).
pub(crate) fn dataplane_networking(
    resource: &Resource,
) -> Result<Option<&Networking>, GenerateError> {
    match &resource.spec {
        Spec::Dataplane(dp) => Ok(dp.networking.as_ref()),
        _ => Err(GenerateError::NotADataplane {
            kind: resource.kind(),
            name: resource.meta.name.clone(),
        }),
    }
}

fn valid_port(name: &str, field: &str, port: u32) -> Result<u32, GenerateError> {
    if (1..=65535).contains(&port) {
        Ok(port)
    } else {
        Err(GenerateError::InvalidPort {
            name: name.to_string(),
            field: field.to_string(),
            port,
        })
    }
}

fn non_empty_or<'a>(value: &'a str, default: &'a str) -> &'a str {
    if value.is_empty() { default } else { value }
}

fn insert_listener(
    listeners: &mut BTreeMap<String, Listener>,
    listener: Listener,
    name: &str,
    field: &str,
) -> Result<(), GenerateError> {
    if listeners.contains_key(&listener.name) {
        return Err(GenerateError::DuplicateListener {
            name: name.to_string(),
            field: field.to_string(),
            listener: listener.name,
        });
    }
    listeners.insert(listener.name.clone(), listener);
    Ok(())
}

pub fn socket_address(ip: &str, port: u32) -> Address {
    Address {
        address: Some(AddressKind::SocketAddress(SocketAddress {
            address: ip.to_string(),
            port_specifier: Some(PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    }
}

pub(crate) fn listener(
    name: &str,
    ip: &str,
    port: u32,
    direction: TrafficDirection,
    filter: Filter,
) -> Listener {
    Listener {
        name: name.to_string(),
        address: Some(socket_address(ip, port)),
        filter_chains: vec![FilterChain {
            filters: vec![filter],
            ..Default::default()
        }],
        traffic_direction: direction as i32,
        ..Default::default()
    }
}

/// To `clusters` (name, weight): the cluster itself when alone, else
/// weighted (weights ignored for a single cluster).
pub fn tcp_proxy(stat_prefix: &str, clusters: &[(&str, u32)]) -> Filter {
    let specifier = match clusters {
        [(cluster, _)] => tcp_proxy::ClusterSpecifier::Cluster(cluster.to_string()),
        _ => tcp_proxy::ClusterSpecifier::WeightedClusters(tcp_proxy::WeightedCluster {
            clusters: clusters
                .iter()
                .map(
                    |(name, weight)| tcp_proxy::weighted_cluster::ClusterWeight {
                        name: name.to_string(),
                        weight: *weight,
                        ..Default::default()
                    },
                )
                .collect(),
        }),
    };
    let config = TcpProxy {
        stat_prefix: stat_prefix.to_string(),
        cluster_specifier: Some(specifier),
        ..Default::default()
    };
    Filter {
        name: TCP_PROXY_FILTER.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(pack_any(config))),
    }
}

/// The HTTP connection manager of a listener. An inbound one passes the
/// caller's certificate URI SANs (its SPIFFE identity under mTLS) to the
/// application in `x-forwarded-client-cert`, replacing whatever the caller
/// sent (Kuma's `SANITIZE_SET`).
fn http_connection_manager(
    direction: TrafficDirection,
    stat_prefix: &str,
    route_config: &str,
    service: &str,
    routes: Vec<Route>,
) -> Filter {
    let route_config = RouteConfiguration {
        name: route_config.to_string(),
        virtual_hosts: vec![VirtualHost {
            name: names::virtual_host(service),
            domains: vec!["*".to_string()],
            routes,
            ..Default::default()
        }],
        ..Default::default()
    };
    let inbound = direction == TrafficDirection::Inbound;
    let config = HttpConnectionManager {
        forward_client_cert_details: if inbound {
            http_connection_manager::ForwardClientCertDetails::SanitizeSet as i32
        } else {
            http_connection_manager::ForwardClientCertDetails::Sanitize as i32
        },
        set_current_client_cert_details: inbound.then(|| {
            http_connection_manager::SetCurrentClientCertDetails {
                uri: true,
                ..Default::default()
            }
        }),
        stat_prefix: stat_prefix.to_string(),
        codec_type: http_connection_manager::CodecType::Auto as i32,
        route_specifier: Some(http_connection_manager::RouteSpecifier::RouteConfig(
            route_config,
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
    Filter {
        name: HTTP_CONNECTION_MANAGER_FILTER.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(pack_any(config))),
    }
}

fn base_cluster(name: &str, discovery: DiscoveryType, protocol: Protocol) -> Cluster {
    let mut cluster = Cluster {
        name: name.to_string(),
        connect_timeout: Some(Duration {
            seconds: CONNECT_TIMEOUT_SECONDS,
            nanos: 0,
        }),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(discovery as i32)),
        ..Default::default()
    };
    if protocol.is_http2() {
        let options = HttpProtocolOptions {
            upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
                ExplicitHttpConfig {
                    protocol_config: Some(
                        explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
                            Http2ProtocolOptions::default(),
                        ),
                    ),
                },
            )),
            ..Default::default()
        };
        cluster
            .typed_extension_protocol_options
            .insert(HTTP_PROTOCOL_OPTIONS_KEY.to_string(), pack_any(options));
    }
    cluster
}

/// `localhost:{port}`: STATIC, one endpoint, the application.
fn local_cluster(name: &str, ip: &str, port: u32, protocol: Protocol) -> Cluster {
    let mut cluster = base_cluster(name, DiscoveryType::Static, protocol);
    cluster.load_assignment = Some(ClusterLoadAssignment {
        cluster_name: name.to_string(),
        endpoints: vec![locality_endpoints([(ip, port)])],
        ..Default::default()
    });
    cluster
}

/// The cluster of an outbound destination (`{service}` or
/// `{service}-{hash}` for a tag subset): EDS over ADS, with the route's load
/// balancer. Every outbound EDS cluster is built here.
fn outbound_cluster(
    destination: &Destination,
    protocol: Protocol,
    load_balancer: &LoadBalancer,
) -> Cluster {
    let mut cluster = eds_cluster(&destination.cluster, protocol);
    load_balancer.apply(&mut cluster);
    cluster
}

/// A cluster named `name` whose endpoints come by EDS over ADS.
pub fn eds_cluster(name: &str, protocol: Protocol) -> Cluster {
    let mut cluster = base_cluster(name, DiscoveryType::Eds, protocol);
    cluster.eds_cluster_config = Some(EdsClusterConfig {
        eds_config: Some(ConfigSource {
            resource_api_version: ApiVersion::V3 as i32,
            config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
            ..Default::default()
        }),
        service_name: String::new(),
    });
    cluster
}

pub(crate) fn locality_endpoints<'a>(
    addresses: impl IntoIterator<Item = (&'a str, u32)>,
) -> LocalityLbEndpoints {
    LocalityLbEndpoints {
        lb_endpoints: addresses
            .into_iter()
            .map(|(ip, port)| LbEndpoint {
                host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
                    address: Some(socket_address(ip, port)),
                    ..Default::default()
                })),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use model::mesh_pb::dataplane::networking::{Inbound, Outbound, inbound};
    use model::mesh_pb::{Dataplane, Mesh, Selector, TrafficRoute, traffic_route};
    use prost::Name;

    use super::*;

    fn mesh() -> Resource {
        Resource::new("", "default", Spec::Mesh(Mesh::default()))
    }

    fn any_service() -> std::collections::HashMap<String, String> {
        [(tags::SERVICE.into(), "*".into())].into()
    }

    /// The `route-all` TrafficRoute Kuma creates with a mesh.
    fn route_all() -> Resource {
        let any = Selector {
            r#match: any_service(),
        };
        Resource::new(
            "default",
            "route-all",
            Spec::TrafficRoute(TrafficRoute {
                sources: vec![any.clone()],
                destinations: vec![any],
                conf: Some(traffic_route::Conf {
                    destination: any_service(),
                    ..Default::default()
                }),
            }),
        )
    }

    /// Generates with `policies`.
    fn generate_with(
        proxy: &Resource,
        mesh: &Resource,
        dataplanes: &[Resource],
        policies: &[Resource],
    ) -> EnvoyResources {
        let context = MeshContext {
            policies,
            ..MeshContext::new(mesh, dataplanes)
        };
        generate(proxy, &context).unwrap()
    }

    fn inbound(port: u32, service: &str, protocol: Option<&str>) -> Inbound {
        let mut tags = std::collections::HashMap::from([(tags::SERVICE.into(), service.into())]);
        if let Some(p) = protocol {
            tags.insert(tags::PROTOCOL.into(), p.into());
        }
        Inbound {
            port,
            tags,
            ..Default::default()
        }
    }

    fn outbound(port: u32, service: &str) -> Outbound {
        Outbound {
            port,
            tags: [(tags::SERVICE.into(), service.into())].into(),
            ..Default::default()
        }
    }

    fn dataplane(
        name: &str,
        address: &str,
        inbound: Vec<Inbound>,
        outbound: Vec<Outbound>,
    ) -> Resource {
        let networking = Networking {
            address: address.into(),
            inbound,
            outbound,
            ..Default::default()
        };
        Resource::new(
            "default",
            name,
            Spec::Dataplane(Dataplane {
                networking: Some(networking),
                ..Default::default()
            }),
        )
    }

    #[test]
    fn type_urls_are_the_messages_own() {
        assert_eq!(LISTENER_TYPE_URL, Listener::type_url());
        assert_eq!(CLUSTER_TYPE_URL, Cluster::type_url());
        assert_eq!(ENDPOINT_TYPE_URL, ClusterLoadAssignment::type_url());
    }

    #[test]
    fn common_protocol_follows_kumas_stacks() {
        use Protocol::*;
        assert_eq!(Grpc.common(Grpc), Grpc);
        assert_eq!(Grpc.common(Http2), Http2);
        assert_eq!(Http2.common(Grpc), Http2);
        assert_eq!(Http.common(Http2), Tcp);
        assert_eq!(Http.common(Tcp), Tcp);
        assert_eq!(Http.common(Unknown), Unknown);
        assert_eq!(Protocol::from_tag(Some("HTTP")), Unknown);
        assert_eq!(Protocol::from_tag(None), Unknown);
        assert!(!Unknown.is_http() && !Kafka.is_http() && Grpc.is_http2() && !Http.is_http2());
    }

    #[test]
    fn mixed_protocols_make_a_tcp_outbound() {
        let proxy = dataplane(
            "web-1",
            "10.0.0.1",
            vec![inbound(80, "web", None)],
            vec![outbound(10001, "backend")],
        );
        let a = dataplane(
            "backend-1",
            "10.0.0.2",
            vec![inbound(80, "backend", Some("http"))],
            vec![],
        );
        let b = dataplane(
            "backend-2",
            "10.0.0.3",
            vec![inbound(80, "backend", Some("http2"))],
            vec![],
        );
        let out = generate_with(&proxy, &mesh(), &[proxy.clone(), a, b], &[route_all()]);
        let outbound = &out.listeners[1];
        assert_eq!(outbound.name, "outbound:127.0.0.1:10001");
        let Some(filter::ConfigType::TypedConfig(any)) =
            &outbound.filter_chains[0].filters[0].config_type
        else {
            panic!("no typed config");
        };
        assert_eq!(any.type_url, TcpProxy::type_url());
        assert!(out.clusters[0].typed_extension_protocol_options.is_empty());
    }

    #[test]
    fn unready_instances_and_other_meshes_are_not_endpoints() {
        let proxy = dataplane(
            "web-1",
            "10.0.0.1",
            vec![inbound(80, "web", None)],
            vec![outbound(10001, "backend")],
        );
        let mut sick = inbound(80, "backend", None);
        sick.health = Some(inbound::Health { ready: false });
        let mut ignored = inbound(81, "backend", None);
        ignored.state = State::Ignored as i32;
        let unready = dataplane("backend-1", "10.0.0.2", vec![sick, ignored], vec![]);
        let mut elsewhere = dataplane(
            "backend-2",
            "10.0.0.3",
            vec![inbound(80, "backend", None)],
            vec![],
        );
        elsewhere.meta.mesh = "other".into();
        let ok = dataplane(
            "backend-3",
            "10.0.0.4",
            vec![inbound(0, "backend", None), inbound(82, "backend", None)],
            vec![],
        );
        let out = generate_with(&proxy, &mesh(), &[unready, elsewhere, ok], &[route_all()]);
        let endpoints = &out.load_assignments[0].endpoints[0].lb_endpoints;
        assert_eq!(endpoints.len(), 1, "{endpoints:?}");
    }

    #[test]
    fn shared_clusters_are_generated_once() {
        let proxy = dataplane(
            "web-1",
            "10.0.0.1",
            vec![inbound(80, "web", None)],
            vec![outbound(10001, "backend"), outbound(10002, "backend")],
        );
        let out = generate_with(&proxy, &mesh(), &[], &[route_all()]);
        assert_eq!(out.listeners.len(), 3);
        let clusters: Vec<_> = out.clusters.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(clusters, ["backend", "localhost:80"]);
        assert_eq!(out.load_assignments.len(), 1);
        let by_type = out.by_type_url();
        assert_eq!(by_type[LISTENER_TYPE_URL].len(), 3);
        assert_eq!(by_type[ENDPOINT_TYPE_URL][0].name, "backend");
        assert_eq!(
            by_type[CLUSTER_TYPE_URL][0].resource.type_url,
            CLUSTER_TYPE_URL
        );
    }

    #[test]
    fn an_outbound_without_a_route_is_skipped_and_reported() {
        let proxy = dataplane(
            "web-1",
            "10.0.0.1",
            vec![inbound(80, "web", None)],
            vec![outbound(10001, "backend"), outbound(10002, "db")],
        );
        let mut only_backend = route_all();
        only_backend.meta.name = "to-backend".into();
        if let Spec::TrafficRoute(spec) = &mut only_backend.spec {
            spec.destinations[0]
                .r#match
                .insert(tags::SERVICE.into(), "backend".into());
        }
        let out = generate_with(&proxy, &mesh(), &[], &[only_backend]);
        let listeners: Vec<_> = out.listeners.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(
            listeners,
            ["inbound:10.0.0.1:80", "outbound:127.0.0.1:10001"]
        );
        assert_eq!(out.skipped.len(), 1);
        assert_eq!(
            out.skipped[0].to_string(),
            "dataplane web-1: networking.outbound[1]: outbound to \"db\" skipped: no TrafficRoute selects it"
        );

        let mut broken = route_all();
        if let Spec::TrafficRoute(spec) = &mut broken.spec {
            spec.conf = Some(traffic_route::Conf {
                split: vec![traffic_route::Split {
                    weight: Some(envoy_types::pb::google::protobuf::UInt32Value { value: 0 }),
                    destination: any_service(),
                }],
                ..Default::default()
            });
        }
        let out = generate_with(&proxy, &mesh(), &[], &[broken]);
        assert_eq!(out.listeners.len(), 1);
        assert_eq!(
            out.skipped[0].to_string(),
            "dataplane web-1: networking.outbound[0]: outbound to \"backend\" skipped: \
             TrafficRoute route-all: conf: no destination with a weight above 0"
        );
        // The skipped outbounds are no xDS resource.
        assert_eq!(out.by_type_url()[LISTENER_TYPE_URL].len(), 1);
    }

    #[test]
    fn rbac_comes_first_on_inbounds_only_with_mtls() {
        let proxy = dataplane(
            "web-1",
            "10.0.0.1",
            vec![inbound(80, "web", Some("http"))],
            vec![outbound(10001, "backend")],
        );
        let filters = |out: &EnvoyResources, listener: usize| -> Vec<String> {
            out.listeners[listener].filter_chains[0]
                .filters
                .iter()
                .map(|f| f.name.clone())
                .collect()
        };
        let plain = generate_with(&proxy, &mesh(), &[], &[route_all()]);
        assert_eq!(filters(&plain, 0), [HTTP_CONNECTION_MANAGER_FILTER]);

        let mut mtls = mesh();
        if let Spec::Mesh(spec) = &mut mtls.spec {
            spec.mtls = Some(model::mesh_pb::mesh::Mtls {
                enabled_backend: "ca-1".into(),
                backends: vec![model::mesh_pb::CertificateAuthorityBackend {
                    name: "ca-1".into(),
                    r#type: "builtin".into(),
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
        // Generation only places the PEM texts; it does not parse them.
        let tls = MeshTls {
            ca_bundle_pem: "CA".into(),
        };
        let identity = ProxyIdentity {
            cert_chain_pem: "CERT".into(),
            key_pem: "KEY".into(),
        };
        let policies = [route_all()];
        let mut context = MeshContext::new(&mtls, &[]);
        context.policies = &policies;
        context.tls = Some(&tls);
        context.identity = Some(&identity);
        let out = generate(&proxy, &context).unwrap();
        assert_eq!(
            filters(&out, 0),
            [permissions::RBAC_FILTER, HTTP_CONNECTION_MANAGER_FILTER]
        );
        assert_eq!(
            filters(&out, 1),
            [TCP_PROXY_FILTER],
            "outbounds get no RBAC"
        );
    }

    #[test]
    fn vip_outbounds_only_for_transparent_proxies_and_only_when_enabled() {
        use model::mesh_pb::dataplane::networking::TransparentProxying;
        let vips: Vips = [
            ("backend".to_owned(), "240.0.0.0".parse().unwrap()),
            ("web".to_owned(), "240.0.0.1".parse().unwrap()),
        ]
        .into();
        let plain = dataplane(
            "web-1",
            "10.0.0.1",
            vec![inbound(80, "web", None)],
            vec![outbound(10001, "backend")],
        );
        let mut tp = plain.clone();
        if let Spec::Dataplane(spec) = &mut tp.spec {
            let networking = spec.networking.as_mut().unwrap();
            networking.outbound.clear();
            networking.transparent_proxying = Some(TransparentProxying {
                redirect_port_inbound: 15006,
                redirect_port_outbound: 15001,
                ..Default::default()
            });
        }
        let policies = [route_all()];
        let mesh = mesh();
        let listeners = |proxy: &Resource, service_vips: ServiceVips| -> Vec<(String, bool)> {
            let mut context = MeshContext::new(&mesh, &[]);
            context.policies = &policies;
            context.vips = &vips;
            context.service_vips = service_vips;
            generate(proxy, &context)
                .unwrap()
                .listeners
                .into_iter()
                .map(|l| (l.name, l.bind_to_port.is_none_or(|b| b.value)))
                .collect()
        };
        let owned = |list: &[(&str, bool)]| -> Vec<(String, bool)> {
            list.iter().map(|(n, b)| ((*n).to_owned(), *b)).collect()
        };

        // Without transparent proxying the VIPs change nothing.
        assert_eq!(
            listeners(&plain, ServiceVips::default()),
            owned(&[
                ("inbound:10.0.0.1:80", true),
                ("outbound:127.0.0.1:10001", true)
            ])
        );
        // With it: one outbound per VIP (its own service included), the
        // passthrough listeners, and only those bind.
        assert_eq!(
            listeners(
                &tp,
                ServiceVips {
                    enabled: true,
                    port: 8000
                }
            ),
            owned(&[
                ("inbound:10.0.0.1:80", false),
                ("inbound:passthrough:ipv4", true),
                ("outbound:240.0.0.0:8000", false),
                ("outbound:240.0.0.1:8000", false),
                ("outbound:passthrough:ipv4", true),
            ])
        );
        // dnsServer.serviceVipEnabled: false: no VIP outbound.
        assert_eq!(
            listeners(
                &tp,
                ServiceVips {
                    enabled: false,
                    port: 80
                }
            ),
            owned(&[
                ("inbound:10.0.0.1:80", false),
                ("inbound:passthrough:ipv4", true),
                ("outbound:passthrough:ipv4", true),
            ])
        );
    }

    #[test]
    fn an_inbound_without_service_is_skipped() {
        let mut anonymous = inbound(80, "web", None);
        anonymous.tags.clear();
        let proxy = dataplane("web-1", "10.0.0.1", vec![anonymous], vec![]);
        assert_eq!(
            generate(&proxy, &MeshContext::new(&mesh(), &[])).unwrap(),
            EnvoyResources::default()
        );
    }

    #[test]
    fn bad_input_is_an_error_naming_the_field() {
        let mesh = mesh();
        let not_dp = mesh.clone();
        assert!(matches!(
            generate(&not_dp, &MeshContext::new(&mesh, &[])),
            Err(GenerateError::NotADataplane { .. })
        ));

        let proxy = dataplane("web-1", "10.0.0.1", vec![], vec![]);
        assert!(matches!(
            generate(&proxy, &MeshContext::new(&proxy, &[])),
            Err(GenerateError::NotAMesh { .. })
        ));

        let empty = Resource::new("default", "web-1", Spec::Dataplane(Dataplane::default()));
        assert_eq!(
            generate(&empty, &MeshContext::new(&mesh, &[]))
                .unwrap_err()
                .to_string(),
            "dataplane web-1: networking is not defined"
        );

        let mut other = proxy.clone();
        other.meta.mesh = "other".into();
        assert!(matches!(
            generate(&other, &MeshContext::new(&mesh, &[])),
            Err(GenerateError::WrongMesh { .. })
        ));

        let mut nameless = outbound(10001, "backend");
        nameless.tags.clear();
        let proxy = dataplane("web-1", "10.0.0.1", vec![], vec![nameless]);
        assert_eq!(
            generate(&proxy, &MeshContext::new(&mesh, &[]))
                .unwrap_err()
                .to_string(),
            "dataplane web-1: networking.outbound[0]: mandatory tag \"kuma.io/service\" is missing"
        );

        let proxy = dataplane(
            "web-1",
            "10.0.0.1",
            vec![inbound(70000, "web", None)],
            vec![],
        );
        assert_eq!(
            generate(&proxy, &MeshContext::new(&mesh, &[]))
                .unwrap_err()
                .to_string(),
            "dataplane web-1: networking.inbound[0].port: 70000 is not a valid port (1-65535)"
        );

        let proxy = dataplane(
            "web-1",
            "10.0.0.1",
            vec![],
            vec![outbound(1, "a"), outbound(1, "b")],
        );
        assert_eq!(
            generate(&proxy, &MeshContext::new(&mesh, &[]))
                .unwrap_err()
                .to_string(),
            "dataplane web-1: networking.outbound[1]: listener outbound:127.0.0.1:1 is already defined"
        );
    }
}
