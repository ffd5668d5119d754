//! KDS, the global <-> zone sync engine: its pure parts — mapping, filtering, encoding,
//! diffing and reconciliation planning.
//!
//! Everything here is a function of its inputs: no streams, no tasks, no store I/O, no
//! clock. The gRPC streams (`kds::server` on the global, `kds::client` in a zone, planned)
//! read the store and its change feed, call into these modules and commit the plans they
//! return. One resource crosses the wire like this (reference: `kuma-multizone.md` §1):
//!
//! ```text
//! sender:   own resources ─ filter ─ mapping ─ wire ─> current set         (outbound)
//!           diff(versions the receiver holds, current set) ─> response(s)  (diff)
//! receiver: wire::decode_response ─> reconcile::plan ─> commit the ops ─> ACK, or NACK
//!           the rejected resources alone
//! ```
//!
//! Modules:
//! - [`wire`]: model `Resource` ⇄ `KumaResource` ⇄ delta xDS `Resource`, type URLs, the
//!   `<name>.<mesh>` keys; never panics on peer input.
//! - [`mapping`]: the zone→global and global→zone mapper chains (hashed names, origin/zone/
//!   display-name labels) and the rules the global applies to what a zone sends.
//! - [`filter`]: which types each side requests and which resources each side sends.
//! - [`outbound`]: filter + mapping + wire for one type, what one side offers the other.
//! - [`diff`]: the delta between what the receiver holds and the current set (catch-up).
//! - [`reconcile`]: the store operations a receiver commits for one upstream batch.
//!
//! Errors are [`Error`] (whole-message problems) and [`Rejection`] (one resource refused,
//! to be NACKed alone while the rest of its batch is applied).

mod canonical;
pub mod diff;
mod error;
pub mod filter;
pub mod global;
pub mod mapping;
pub mod metadata;
pub mod metrics;
pub mod mirror;
pub mod outbound;
pub mod receiver;
pub mod reconcile;
pub mod sender;
pub mod stats;
pub mod status;
pub mod transport;
pub mod version;
pub mod wire;
pub mod zone;

pub use error::{Error, Rejection, SyncError};

/// Type URL of the structured per-resource details a kuma-rs receiver puts in a NACK's
/// `error_detail.details`.
pub const REJECTION_TYPE_URL: &str = "type.googleapis.com/kuma.system.v1alpha1.KdsRejection";
