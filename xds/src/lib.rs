//! Envoy configuration for Kuma sidecars: the pure half of the zone's xDS
//! room (reference: `kuma-api.md` §5).
//!
//! * [`names`]: Kuma's names for listeners, clusters, routes and secrets, so
//!   that our sidecars interoperate with Kuma's.
//! * [`mod@generate`]: from a proxy's Dataplane, its Mesh and the mesh's
//!   Dataplanes in the zone, the Envoy listeners, clusters and load
//!   assignments (envoy-types messages), grouped by xDS type URL.
//! * [`render`]: proto3 JSON/YAML of those messages (golden tests, Envoy
//!   bootstraps, inspect output), through an embedded descriptor set of the
//!   Envoy protos.
//!
//! This crate must stay free of I/O in these modules: no files, no network,
//! no clock, no store access. Generation is a pure function of its inputs,
//! so that the same inputs always give the same resources (and the same
//! content-hash versions later). The ADS server (planned) will live here too,
//! in its own module, and is the only place allowed to do I/O.

pub mod generate;
pub mod names;
pub mod render;

pub use generate::{
    CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL, EnvoyResources, GenerateError, LISTENER_TYPE_URL,
    NamedResource, Protocol, generate,
};
