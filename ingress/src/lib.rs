//! The zone ingress (reference: `kuma-multizone.md` §4): how a zone offers
//! its services to the other zones.
//!
//! * [`available`]: `ZoneIngress.availableServices`, the zone's services
//!   with their tag sets and instance counts (pure).
//! * [`mod@generate`]: the ingress's Envoy config: one listener whose filter
//!   chains pick a local service by SNI and pass TLS through untouched, EDS
//!   clusters of the zone's instances (pure).
//! * [`feed`]: the zone task that writes the available services into the
//!   zone's own ZoneIngresses and keeps the ingresses' xDS snapshots current.
//!
//! What sidecars do with other zones' ingresses (endpoints weighted by
//! instances, locality) is `xds::endpoints`; registering an ingress and
//! checking its token is the zone control plane's (`cp`). Nothing here
//! serves a network port; only [`feed`] does I/O (the store and the cache).

pub mod available;
pub mod feed;
pub mod generate;

pub use generate::{IngressContext, IngressError, generate};
