//! MADS, the Monitoring Assignment Discovery Service of a zone (reference:
//! `kuma-api.md` §7; operators: `docs/monitoring.md`): tells Prometheus
//! which dataplanes to scrape, and where.
//!
//! * [`assign`]: the pure part, (meshes, dataplanes) → monitoring
//!   assignments with Kuma's labels.
//! * [`snapshot`]: one version of them, with the response bodies rendered
//!   once (MADS proto-JSON, Prometheus HTTP SD, gRPC).
//! * [`feed`]: the task that keeps the current snapshot from the store's
//!   change feed (no polling loop).
//! * [`server`]: `POST /v3/discovery:monitoringassignments` (long-poll,
//!   304), gRPC `FetchMonitoringAssignments` and `GET /v3/http-sd` on one
//!   port.
//! * [`metrics`]: `mads_*` families for the control plane's `/metrics`.
//!
//! It reads the store and never writes it.

pub mod assign;
pub mod feed;
pub mod metrics;
pub mod server;
pub mod snapshot;

pub use assign::{ASSIGNMENT_TYPE_URL, Assignment, Target, assignments};
pub use metrics::MadsMetrics;
pub use server::{FETCH_PATH, HTTP_SD_PATH, MadsState, router, serve};
pub use snapshot::Snapshot;
