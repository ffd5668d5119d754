//! The crate's one error enum and the per-resource rejection a receiver NACKs.

use std::fmt;

use model::{ResourceKey, ResourceType};

/// What can be wrong with a KDS message or with one resource in it. Every variant names the
/// type and, where there is one, the resource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A request or response names a type this control plane does not know. On a response
    /// this fails the stream (Kuma does the same); on a request the type is answered empty.
    #[error("unknown KDS type {type_url:?}: not a resource type this control plane knows")]
    UnknownType { type_url: String },
    /// The delta `Resource.resource` is missing or not a KumaResource.
    #[error("{kind} {name:?}: resource is wrapped as {found:?}, expected {expected:?}")]
    WrongEnvelope {
        kind: ResourceType,
        name: String,
        found: String,
        expected: &'static str,
    },
    #[error("{kind} {name:?}: KumaResource bytes cannot be decoded: {message}")]
    UndecodableEnvelope {
        kind: ResourceType,
        name: String,
        message: String,
    },
    #[error("{kind} {name:?}: KumaResource has no meta")]
    MissingMeta { kind: ResourceType, name: String },
    #[error("{kind} {name:?}: KumaResource has no spec")]
    MissingSpec { kind: ResourceType, name: String },
    /// The spec `Any` carries another message than the type's spec.
    #[error("{kind} {name:?}: spec has type URL {found:?}, expected {expected:?}")]
    SpecTypeMismatch {
        kind: ResourceType,
        name: String,
        found: String,
        expected: String,
    },
    #[error("{kind} {name:?}: spec cannot be decoded: {message}")]
    UndecodableSpec {
        kind: ResourceType,
        name: String,
        message: String,
    },
    #[error("{kind} {name:?}: a global-scoped type cannot be in mesh {mesh:?}")]
    MeshOnGlobalType {
        kind: ResourceType,
        name: String,
        mesh: String,
    },
    /// A delta resource key (`removed_resources`) that is not `<name>.<mesh>`.
    #[error("{kind}: resource key {key:?} is not of the form <name>.<mesh>")]
    BadResourceKey { kind: ResourceType, key: String },
    /// A zone-token signing key whose public half cannot be derived: it is not sent.
    #[error("GlobalSecret {name:?}: cannot derive the public key to send to zones: {message}")]
    PublicKey { name: String, message: String },
}

impl Error {
    /// The resource type the error is about, when it is about one.
    pub fn kind(&self) -> Option<ResourceType> {
        match self {
            Error::UnknownType { .. } => None,
            Error::PublicKey { .. } => Some(ResourceType::GlobalSecret),
            Error::WrongEnvelope { kind, .. }
            | Error::UndecodableEnvelope { kind, .. }
            | Error::MissingMeta { kind, .. }
            | Error::MissingSpec { kind, .. }
            | Error::SpecTypeMismatch { kind, .. }
            | Error::UndecodableSpec { kind, .. }
            | Error::MeshOnGlobalType { kind, .. }
            | Error::BadResourceKey { kind, .. } => Some(*kind),
        }
    }
}

/// One resource of an upstream batch that the receiver refuses (undecodable, invalid, or
/// clashing with a resource it may not overwrite). The receiver NACKs it alone, with
/// [`Rejection::reason`], and applies the rest of the batch; its local copy, if any, is
/// left untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub kind: ResourceType,
    /// Empty for global-scoped types, and when the mesh could not be read.
    pub mesh: String,
    /// The name as sent (best effort when the resource could not be decoded).
    pub name: String,
    /// Why, naming the type, the resource and what is wrong.
    pub reason: String,
}

impl Rejection {
    pub fn new(key: &ResourceKey, reason: impl Into<String>) -> Self {
        Rejection {
            kind: key.kind,
            mesh: key.mesh.clone(),
            name: key.name.clone(),
            reason: reason.into(),
        }
    }

    /// The key of the refused resource.
    pub fn key(&self) -> ResourceKey {
        ResourceKey::new(self.kind, self.mesh.clone(), self.name.clone())
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Why a KDS stream ended. Every variant is a reason to reconnect (zone) or to let the zone
/// reconnect (global); none of them is about one resource.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SyncError {
    #[error("the peer ended the stream: {0}")]
    Peer(String),
    #[error("the stream was closed")]
    Closed,
    #[error("store: {0}")]
    Store(String),
    #[error("protocol: {0}")]
    Protocol(String),
    /// A response stayed unacknowledged longer than the stall timeout.
    #[error("stalled: a {kind} response was not acknowledged for {waited:?}")]
    Stalled {
        kind: ResourceType,
        waited: std::time::Duration,
    },
}
