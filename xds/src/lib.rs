//! Envoy configuration for Kuma sidecars (reference: `kuma-api.md` §5): its
//! pure generation, the Envoy bootstrap, and the ADS server that serves it.
//!
//! * [`names`]: Kuma's names for listeners, clusters, routes and secrets, so
//!   that our sidecars interoperate with Kuma's.
//! * [`mod@generate`]: from a proxy's Dataplane, its Mesh and the mesh's
//!   Dataplanes in the zone, the Envoy listeners, clusters and load
//!   assignments (envoy-types messages), grouped by xDS type URL.
//! * [`endpoints`]: the instances of a mesh's services, local and behind
//!   other zones' ingresses, and the EDS load assignments made of them.
//! * [`policy`]: which TrafficPermission and TrafficRoute apply to an
//!   inbound or outbound, and the RBAC filter, clusters, weights and load
//!   balancers they turn into.
//! * [`tls`]: mesh mTLS in the generated config: the inbound and outbound
//!   TLS transport sockets and the SDS secrets (certificates are input).
//! * [`transparent`]: transparent proxying: the passthrough listeners and
//!   clusters, and the outbounds on the mesh's service VIPs.
//! * [`render`]: proto3 JSON/YAML of those messages (golden tests, Envoy
//!   bootstraps, inspect output), through an embedded descriptor set of the
//!   Envoy protos.
//! * [`bootstrap`]: the Envoy bootstrap for a dataplane (node id, the HTTP/2
//!   ADS cluster, admin).
//! * [`ads`]: the ADS server (state of the world and delta): a snapshot cache
//!   per node, per-stream state machines (nonces, ACK/NACK, delta
//!   subscriptions), stream authentication, stream events.
//! * [`feed`]: the task that fills the [`ads::SnapshotCache`] from the store
//!   and keeps it current by following the change feed.
//!
//! Everything but [`ads`] and [`feed`] must stay free of I/O: no files, no network, no
//! clock, no store access. Generation is a pure function of its inputs, so
//! that the same inputs always give the same resources and the same
//! content-hash versions. [`ads`] and [`feed`] are the only modules that do I/O.

pub mod ads;
pub mod bootstrap;
pub mod endpoints;
pub mod feed;
pub mod generate;
pub mod metrics;
pub mod names;
pub mod policy;
pub mod render;
pub mod tls;
pub mod transparent;

pub use generate::{
    CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL, EnvoyResources, GenerateError, LISTENER_TYPE_URL,
    MeshContext, MeshIndex, NamedResource, Protocol, generate, generate_indexed,
};
pub use policy::routes::{RouteError, SkippedOutbound};
pub use tls::{MeshTls, ProxyIdentity, SECRET_TYPE_URL};
pub use transparent::{ServiceVips, Vips};
