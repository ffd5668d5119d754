//! The resource model shared by every room: the registry of types, typed resources, validation
//! with field paths, tag selectors, the kumactl YAML/JSON format and KDS name hashing.
//!
//! Read `registry.rs` first, then `resource.rs`. This crate does no I/O: no files, no network,
//! no tokio; it must stay usable from any layer.

pub mod format;
pub mod hash;
pub mod labels;
pub mod registry;
pub mod resource;
pub mod selector;
pub mod validate;

pub use registry::{CpMode, ResourceType, Scope, SyncDirection, TypeDescriptor};
pub use resource::{Meta, Resource, ResourceKey, Spec, SpecError};

/// Generated wire types, re-exported so that users of the model need not name kds-proto.
pub use kds_proto::mesh::v1alpha1 as mesh_pb;
pub use kds_proto::system::v1alpha1 as system_pb;

#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
