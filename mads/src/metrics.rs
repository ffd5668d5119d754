//! MADS metric families, registered in the registry the diagnostics server
//! renders (`/metrics` on 5680):
//!
//! * `mads_requests_total{transport, result}` (counter): `transport` is
//!   `http` (kuma_sd's fetch), `grpc` or `http_sd`; `result` is `sent` (200
//!   with assignments), `not_modified` (304 / version up to date) or
//!   `bad_request`;
//! * `mads_watches` (gauge): fetches waiting for a change now (long-polling
//!   clients);
//! * `mads_targets` (gauge): scrape targets in the current assignments.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// How a request came.
#[derive(Clone, Copy, Debug)]
pub enum Transport {
    Http,
    Grpc,
    HttpSd,
}

/// How a request ended.
#[derive(Clone, Copy, Debug)]
pub enum Outcome {
    Sent,
    NotModified,
    BadRequest,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    transport: &'static str,
    result: &'static str,
}

/// The families; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct MadsMetrics {
    requests: Family<RequestLabels, Counter>,
    watches: Gauge,
    targets: Gauge,
}

impl MadsMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = MadsMetrics::default();
        registry.register(
            "mads_requests",
            "Monitoring assignment requests, by transport (http, grpc, http_sd) and result (sent, not_modified, bad_request)",
            m.requests.clone(),
        );
        registry.register(
            "mads_watches",
            "Monitoring assignment fetches waiting for a change (long-polling clients)",
            m.watches.clone(),
        );
        registry.register(
            "mads_targets",
            "Scrape targets in the current monitoring assignments",
            m.targets.clone(),
        );
        m
    }

    pub fn request(&self, transport: Transport, outcome: Outcome) {
        let labels = RequestLabels {
            transport: match transport {
                Transport::Http => "http",
                Transport::Grpc => "grpc",
                Transport::HttpSd => "http_sd",
            },
            result: match outcome {
                Outcome::Sent => "sent",
                Outcome::NotModified => "not_modified",
                Outcome::BadRequest => "bad_request",
            },
        };
        self.requests.get_or_create(&labels).inc();
    }

    /// Counts a waiting fetch until the guard drops.
    pub fn watching(&self) -> WatchGuard {
        self.watches.inc();
        WatchGuard(self.watches.clone())
    }

    /// Fetches waiting for a change right now.
    pub fn watches(&self) -> i64 {
        self.watches.get()
    }

    pub fn set_targets(&self, targets: usize) {
        self.targets.set(i64::try_from(targets).unwrap_or(i64::MAX));
    }
}

/// See [`MadsMetrics::watching`].
pub struct WatchGuard(Gauge);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
