//! Real Envoy 1.40 accepts what we generate: each case's listeners and
//! clusters go into a static bootstrap, checked with `envoy --mode validate`.
//! EDS needs an ADS server, so for this test only each EDS cluster becomes
//! STATIC with its load assignment inlined.
//!
//! Needs `ENVOY_BINARY` (exported by `cargo xtask test`; `cargo xtask envoy`
//! prints a path). Without it the test fails: it never skips silently.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod envoy_cli;

use envoy_cli::*;

use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use serde_json::json;
use xds::EnvoyResources;

/// The case's resources as a static bootstrap (JSON).
fn static_bootstrap(resources: &EnvoyResources) -> serde_json::Value {
    let mut clusters = Vec::new();
    for cluster in &resources.clusters {
        let mut cluster = cluster.clone();
        if cluster.eds_cluster_config.take().is_some() {
            let assignment = resources
                .load_assignments
                .iter()
                .find(|a| a.cluster_name == cluster.name)
                .unwrap_or_else(|| panic!("EDS cluster {} has no load assignment", cluster.name));
            cluster.cluster_discovery_type =
                Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32));
            cluster.load_assignment = Some((**assignment).clone());
        }
        clusters.push(xds::render::to_json(&cluster).unwrap());
    }
    // The Prometheus listener routes to the bootstrap's admin cluster.
    clusters.push(xds::render::to_json(&xds::bootstrap::admin_cluster("127.0.0.1", 9901)).unwrap());
    let listeners: Vec<_> = resources
        .listeners
        .iter()
        .map(|l| xds::render::to_json(l).unwrap())
        .collect();
    if resources.secrets.is_empty() {
        return json!({
            "node": { "id": "default.test", "cluster": "test" },
            "static_resources": { "listeners": listeners, "clusters": clusters },
        });
    }
    // mTLS: validate mode cannot run ADS (Envoy 1.40 crashes), so the SDS references become
    // references to static secrets (no `sds_config`), and the secrets are static ones.
    let secrets: Vec<_> = resources
        .secrets
        .iter()
        .map(|s| xds::render::to_json(s).unwrap())
        .collect();
    let mut static_resources =
        json!({ "listeners": listeners, "clusters": clusters, "secrets": secrets });
    drop_sds_config(&mut static_resources);
    json!({
        "node": { "id": "default.test", "cluster": "test" },
        "static_resources": static_resources,
    })
}

/// Removes every `sdsConfig` (the JSON rendering's name) in `value`.
fn drop_sds_config(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.remove("sdsConfig");
            map.remove("sds_config");
            map.values_mut().for_each(drop_sds_config);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_sds_config),
        _ => {}
    }
}

fn validate(case: &str) {
    let resources = common::generate_case(case);
    assert!(
        !resources.listeners.is_empty(),
        "{case}: no listeners generated"
    );
    if let Err(e) = envoy_validate(case, &static_bootstrap(&resources)) {
        panic!("{case}: {e}");
    }
}

/// The check has teeth: an HTTP listener whose route names a cluster the
/// bootstrap lacks is refused.
#[test]
fn envoy_refuses_a_route_to_a_missing_cluster() {
    let mut resources = common::generate_case("http_inbound_and_outbound");
    resources.clusters.retain(|c| c.name != "backend");
    let err = envoy_validate("missing_cluster", &static_bootstrap(&resources))
        .expect_err("Envoy accepted a route to a cluster that does not exist");
    assert!(err.contains("unknown cluster 'backend'"), "{err}");
}

#[test]
fn envoy_accepts_tcp_inbound() {
    validate("tcp_inbound");
}

#[test]
fn envoy_accepts_http_inbound_and_outbound() {
    validate("http_inbound_and_outbound");
}

#[test]
fn envoy_accepts_grpc_outbound() {
    validate("grpc_outbound");
}

#[test]
fn envoy_accepts_outbound_without_instances() {
    validate("outbound_without_instances");
}

#[test]
fn envoy_accepts_rbac_permission() {
    validate("rbac_permission");
}

#[test]
fn envoy_accepts_rbac_deny_all() {
    validate("rbac_deny_all");
}

#[test]
fn envoy_accepts_split_by_version() {
    validate("split_by_version");
}

#[test]
fn envoy_accepts_load_balancers() {
    validate("load_balancers");
}

/// Why `policy::routes` refuses a ring hash whose minimum ring size is above
/// its maximum: Envoy refuses the cluster (and with it the whole update).
#[test]
fn envoy_refuses_a_ring_hash_minimum_above_its_maximum() {
    use envoy_types::pb::envoy::config::cluster::v3::cluster::LbConfig;
    use envoy_types::pb::google::protobuf::UInt64Value;
    let mut resources = common::generate_case("load_balancers");
    let cluster = resources
        .clusters
        .iter_mut()
        .find(|c| c.name == "ring-hash")
        .expect("ring-hash cluster");
    let Some(LbConfig::RingHashLbConfig(config)) = &mut cluster.lb_config else {
        panic!("no ring hash config: {cluster:?}");
    };
    config.minimum_ring_size = Some(UInt64Value { value: 2048 });
    let err = envoy_validate("ring_hash_sizes", &static_bootstrap(&resources))
        .expect_err("Envoy accepted a minimum ring size above the maximum");
    assert!(
        err.contains("minimum_ring_size (2048) > maximum_ring_size (1024)"),
        "{err}"
    );
}

#[test]
fn envoy_accepts_http_rules() {
    validate("http_rules");
}

#[test]
fn envoy_accepts_mtls_strict() {
    let resources = common::generate_case("mtls_strict");
    assert_eq!(resources.secrets.len(), 2, "mTLS case without secrets");
    validate("mtls_strict");
}

#[test]
fn envoy_accepts_mtls_permissive() {
    validate("mtls_permissive");
}

/// The mTLS check has teeth: a secret whose certificate is not PEM is refused.
#[test]
fn envoy_refuses_a_broken_secret() {
    use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::secret::Type;
    let mut resources = common::generate_case("mtls_strict");
    for secret in &mut resources.secrets {
        if let Some(Type::ValidationContext(v)) = &mut secret.r#type {
            v.trusted_ca.as_mut().unwrap().specifier =
                Some(Specifier::InlineBytes(b"not a certificate".to_vec()));
        }
    }
    let err = envoy_validate("broken_secret", &static_bootstrap(&resources))
        .expect_err("Envoy accepted a CA bundle that is not PEM");
    assert!(
        err.contains("Failed to load trusted CA certificates"),
        "{err}"
    );
}

#[test]
fn envoy_accepts_metrics_prometheus() {
    validate("metrics_prometheus");
}

#[test]
fn envoy_accepts_transparent_proxy_vips() {
    let resources = common::generate_case("transparent_proxy_vips");
    let names: Vec<&str> = resources
        .listeners
        .iter()
        .map(|l| l.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "inbound:10.0.0.1:18080",
            "inbound:passthrough:ipv4",
            "outbound:240.0.0.0:80",
            "outbound:240.0.0.1:80",
            "outbound:passthrough:ipv4",
        ]
    );
    validate("transparent_proxy_vips");
}
