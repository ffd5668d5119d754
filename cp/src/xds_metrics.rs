//! xDS metric families from the ADS server's [`StreamEvents`], registered in
//! the registry the diagnostics server renders (`/metrics` on 5680):
//!
//! * `xds_streams` (gauge): ADS streams open now;
//! * `xds_streams_connected_total` (counter): streams opened since start;
//! * `xds_responses_sent_total{type_url}`, `xds_responses_acked_total{type_url}`,
//!   `xds_responses_nacked_total{type_url}` (counters): responses sent to
//!   proxies, and how they answered.
//!
//! Counting only: the hooks run on the stream tasks and never block.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use xds::ads::{ConnectInfo, NodeId, StreamEvents, StreamId};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabels {
    type_url: String,
}

/// The families; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct XdsMetrics {
    streams: Gauge,
    connected: Counter,
    sent: Family<TypeLabels, Counter>,
    acked: Family<TypeLabels, Counter>,
    nacked: Family<TypeLabels, Counter>,
}

impl XdsMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = XdsMetrics::default();
        registry.register("xds_streams", "ADS streams open now", m.streams.clone());
        registry.register(
            "xds_streams_connected",
            "ADS streams opened (authenticated) since start",
            m.connected.clone(),
        );
        registry.register(
            "xds_responses_sent",
            "xDS responses sent to proxies, by type URL",
            m.sent.clone(),
        );
        registry.register(
            "xds_responses_acked",
            "xDS responses proxies accepted (ACK), by type URL",
            m.acked.clone(),
        );
        registry.register(
            "xds_responses_nacked",
            "xDS responses proxies rejected (NACK), by type URL",
            m.nacked.clone(),
        );
        m
    }
}

fn labels(type_url: &str) -> TypeLabels {
    TypeLabels {
        type_url: type_url.to_string(),
    }
}

impl StreamEvents for XdsMetrics {
    fn connected(&self, _stream: StreamId, _node: &NodeId, _info: &ConnectInfo) {
        self.streams.inc();
        self.connected.inc();
    }
    fn sent(&self, _stream: StreamId, _node: &NodeId, type_url: &str, _version: &str) {
        self.sent.get_or_create(&labels(type_url)).inc();
    }
    fn acked(&self, _stream: StreamId, _node: &NodeId, type_url: &str, _version: &str) {
        self.acked.get_or_create(&labels(type_url)).inc();
    }
    fn nacked(
        &self,
        _stream: StreamId,
        _node: &NodeId,
        type_url: &str,
        _version: &str,
        _reason: &str,
    ) {
        self.nacked.get_or_create(&labels(type_url)).inc();
    }
    fn disconnected(&self, _stream: StreamId, _node: &NodeId) {
        self.streams.dec();
    }
}
