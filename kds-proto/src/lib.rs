//! Wire types of kuma-rs, generated from our own `.proto` files that use
//! Kuma's package names, message names and field numbers, so that the bytes
//! are interchangeable with a real Kuma (v2.14) control plane:
//!
//! * KDS, the global <-> zone protocol: [`mesh::v1alpha1::KumaResource`] and
//!   the `GlobalKDSService` / `KDSSyncService` gRPC clients and servers;
//! * resource specs: `Mesh`, `Dataplane`, the insights, zone proxies, the
//!   classic policies ([`mesh::v1alpha1`]), `Zone`, `ZoneInsight`, `Secret`,
//!   `Config` ([`system::v1alpha1`]);
//! * MADS, the Prometheus service discovery ([`observability::v1`]).
//!
//! Envoy and Google well-known types come from the `envoy-types` crate.
//! [`descriptor_pool`] describes every message (ours and their
//! dependencies) for proto-JSON through `prost-reflect`.
//!
//! This crate only holds data types and generated gRPC glue: no I/O, no
//! business logic, no validation.

use std::sync::LazyLock;

use prost_reflect::DescriptorPool;

/// Package `kuma.mesh.v1alpha1`.
pub mod mesh {
    /// KDS messages and services, mesh-level resources and classic policies.
    #[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
    pub mod v1alpha1 {
        tonic::include_proto!("kuma.mesh.v1alpha1");
    }
}

/// Package `kuma.system.v1alpha1`.
pub mod system {
    /// Zone, ZoneInsight, Secret/GlobalSecret, Config, DataSource, inter-CP ping.
    #[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
    pub mod v1alpha1 {
        tonic::include_proto!("kuma.system.v1alpha1");
    }
}

/// Package `kuma.observability.v1`.
pub mod observability {
    /// MADS: MonitoringAssignment and its discovery service.
    #[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
    pub mod v1 {
        tonic::include_proto!("kuma.observability.v1");
    }
}

/// Encoded `google.protobuf.FileDescriptorSet` of all our protos and
/// everything they import (Envoy discovery, google.protobuf WKTs, ...).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/kds_descriptor.bin"));

/// Type URL of the KDS envelope carried in delta xDS `Resource.resource`.
pub const KUMA_RESOURCE_TYPE_URL: &str = "type.googleapis.com/kuma.mesh.v1alpha1.KumaResource";

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    // The bytes are produced by our build script from our own protos, so a
    // failure here is a build defect, never bad input.
    #[allow(clippy::expect_used)]
    DescriptorPool::decode(FILE_DESCRIPTOR_SET)
        .expect("kds-proto: embedded FILE_DESCRIPTOR_SET must decode")
});

/// Descriptors of every message in this crate and of its dependencies, for
/// `prost_reflect::DynamicMessage` (e.g. canonical proto3 JSON).
pub fn descriptor_pool() -> &'static DescriptorPool {
    &POOL
}

/// `type.googleapis.com/<package>.<Message>` for a generated message, as used
/// in `google.protobuf.Any.type_url`.
pub fn type_url<M: prost::Name>() -> String {
    M::type_url()
}
