//! `.mesh` DNS of a zone (reference: `kuma-api.md` §6): stable virtual IPs for every service
//! of a mesh and a DNS server that answers `{service}.{domain}` with them.
//!
//! * [`vips`]: which services need a VIP, the allocation that never moves an existing one,
//!   and the persisted form (Config `kuma-{mesh}-dns-vips`, Kuma's JSON). Pure.
//! * [`handler`]: one query → reply bytes, "forward", or "drop". Pure.
//! * [`allocator`]: the task that follows the store's change feed, recomputes a mesh's VIPs
//!   when its Dataplanes, the ZoneIngresses or its Config change, writes the Config and
//!   hands the new table to the server.
//! * [`server`]: UDP and TCP on `dnsServer.port`, forwarding to configured upstreams.
//! * [`metrics`]: `dns_requests_total{result}` and the allocator's errors.
//!
//! It runs only in a zone control plane; it does not generate Envoy config (that is `xds`).

pub mod allocator;
pub mod handler;
pub mod metrics;
pub mod server;
pub mod vips;

pub use allocator::AllocatorSettings;
pub use metrics::DnsMetrics;
pub use server::DnsState;
