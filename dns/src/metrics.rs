//! The DNS server's and the VIP allocator's metrics, registered on the zone's `/metrics`
//! (diagnostics port): `dns_requests_total{result}`, `dns_vip_allocation_errors_total{mesh}`
//! and `dns_vips{mesh}`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::handler::QueryResult;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MeshLabels {
    mesh: String,
}

/// Counters and gauges of the DNS room. Clones share the same values.
#[derive(Clone, Debug, Default)]
pub struct DnsMetrics {
    requests: Family<ResultLabels, Counter>,
    allocation_errors: Family<MeshLabels, Counter>,
    vips: Family<MeshLabels, Gauge>,
}

impl DnsMetrics {
    /// New metrics, registered in `registry`; every result starts at 0.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = DnsMetrics::default();
        for result in QueryResult::ALL {
            let _ = metrics.requests.get_or_create(&ResultLabels {
                result: result.as_str(),
            });
        }
        registry.register(
            "dns_requests",
            "DNS queries by result: answered, nxdomain, refused, forwarded, forward_failed, malformed",
            metrics.requests.clone(),
        );
        registry.register(
            "dns_vip_allocation_errors",
            "VIP allocations that left services without a VIP because dnsServer.CIDR is full",
            metrics.allocation_errors.clone(),
        );
        registry.register(
            "dns_vips",
            "Services with a VIP, per mesh",
            metrics.vips.clone(),
        );
        metrics
    }

    pub fn count(&self, result: QueryResult) {
        self.requests
            .get_or_create(&ResultLabels {
                result: result.as_str(),
            })
            .inc();
    }

    /// How many queries ended with `result` so far.
    pub fn requests(&self, result: QueryResult) -> u64 {
        self.requests
            .get_or_create(&ResultLabels {
                result: result.as_str(),
            })
            .get()
    }

    pub fn allocation_failed(&self, mesh: &str) {
        self.allocation_errors
            .get_or_create(&MeshLabels {
                mesh: mesh.to_owned(),
            })
            .inc();
    }

    pub fn allocation_errors(&self, mesh: &str) -> u64 {
        self.allocation_errors
            .get_or_create(&MeshLabels {
                mesh: mesh.to_owned(),
            })
            .get()
    }

    pub fn set_vips(&self, mesh: &str, count: usize) {
        self.vips
            .get_or_create(&MeshLabels {
                mesh: mesh.to_owned(),
            })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    pub fn forget_mesh(&self, mesh: &str) {
        self.vips.remove(&MeshLabels {
            mesh: mesh.to_owned(),
        });
    }
}
