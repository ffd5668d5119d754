//! KDS metric families, registered in the registry the diagnostics server renders:
//!
//! * `kds_zone_connected{zone, direction}` (gauge, 1 while the stream is open);
//! * `kds_zone_lag_revisions{zone, direction}`, `kds_zone_lag_seconds{zone, direction}`
//!   (gauges: how far the receiving side is behind);
//! * `kds_resources_sent{zone, direction}`, `kds_bytes_sent{zone, direction}` (counters:
//!   resources and removed names sent, and response bytes, by the sending side);
//! * `kds_nack{zone, type}` (counter, Kuma's `kds_nack_total`);
//! * `kds_stream_stalls{zone, direction}` (counter: streams torn down for not advancing);
//! * `kds_zone_refused{reason}` (counter: connections refused: authentication, version,
//!   disabled, no-client-id);
//! * `kds_zone_heartbeat_timeouts{zone}` (counter).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::stats::{Direction, Lag};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabels {
    zone: String,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabels {
    zone: String,
    r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ZoneLabels {
    zone: String,
}

/// The families; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct KdsMetrics {
    connected: Family<StreamLabels, Gauge>,
    lag_revisions: Family<StreamLabels, Gauge>,
    lag_seconds: Family<StreamLabels, Gauge<f64, AtomicU64>>,
    nacks: Family<TypeLabels, Counter>,
    resources_sent: Family<StreamLabels, Counter>,
    bytes_sent: Family<StreamLabels, Counter>,
    stalls: Family<StreamLabels, Counter>,
    refused: Family<ReasonLabels, Counter>,
    heartbeat_timeouts: Family<ZoneLabels, Counter>,
}

fn labels(zone: &str, direction: Direction) -> StreamLabels {
    StreamLabels {
        zone: zone.to_string(),
        direction: direction.as_str(),
    }
}

impl KdsMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = KdsMetrics::default();
        registry.register(
            "kds_zone_connected",
            "1 while a zone's KDS stream is open, by zone and direction",
            m.connected.clone(),
        );
        registry.register(
            "kds_zone_lag_revisions",
            "Store revisions the receiving side has not acknowledged, by zone and direction",
            m.lag_revisions.clone(),
        );
        registry.register(
            "kds_zone_lag_seconds",
            "Age of the oldest change the receiving side has not acknowledged, by zone and direction",
            m.lag_seconds.clone(),
        );
        registry.register(
            "kds_resources_sent",
            "Resources and removed names sent, by zone and direction",
            m.resources_sent.clone(),
        );
        registry.register(
            "kds_bytes_sent",
            "Bytes of KDS responses sent, by zone and direction",
            m.bytes_sent.clone(),
        );
        registry.register(
            "kds_nack",
            "Responses a receiver rejected (in part), by zone and type",
            m.nacks.clone(),
        );
        registry.register(
            "kds_stream_stalls",
            "KDS streams closed because they stopped advancing, by zone and direction",
            m.stalls.clone(),
        );
        registry.register(
            "kds_zone_refused",
            "KDS connections refused, by reason",
            m.refused.clone(),
        );
        registry.register(
            "kds_zone_heartbeat_timeouts",
            "Zones whose streams were closed because their heartbeats stopped",
            m.heartbeat_timeouts.clone(),
        );
        m
    }

    pub fn connected(&self, zone: &str, direction: Direction, up: bool) {
        self.connected
            .get_or_create(&labels(zone, direction))
            .set(i64::from(up));
    }

    pub fn lag(&self, zone: &str, direction: Direction, lag: &Lag) {
        let l = labels(zone, direction);
        self.lag_revisions
            .get_or_create(&l)
            .set(i64::try_from(lag.revisions).unwrap_or(i64::MAX));
        self.lag_seconds.get_or_create(&l).set(lag.seconds);
    }

    pub fn sent(&self, zone: &str, direction: Direction, resources: u64, bytes: u64) {
        let l = labels(zone, direction);
        self.resources_sent.get_or_create(&l).inc_by(resources);
        self.bytes_sent.get_or_create(&l).inc_by(bytes);
    }

    pub fn nacks(&self, zone: &str, kind: &str, count: u64) {
        if count > 0 {
            self.nacks
                .get_or_create(&TypeLabels {
                    zone: zone.to_string(),
                    r#type: kind.to_string(),
                })
                .inc_by(count);
        }
    }

    pub fn stalled(&self, zone: &str, direction: Direction) {
        self.stalls.get_or_create(&labels(zone, direction)).inc();
    }

    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn heartbeat_timeout(&self, zone: &str) {
        self.heartbeat_timeouts
            .get_or_create(&ZoneLabels {
                zone: zone.to_string(),
            })
            .inc();
    }
}
