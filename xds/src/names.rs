//! Kuma's classic ("legacy") names of a sidecar's Envoy resources
//! (reference: `kuma-api.md` §5.2, Kuma's `pkg/xds/envoy/names`).
//!
//! Other sidecars and Kuma's tooling see these names (stats, config dumps,
//! SNI later), so they must match Kuma's byte for byte.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// `ip:port`, with an IPv6 address in brackets (Go's `net.JoinHostPort`).
pub fn join_host_port(host: &str, port: u32) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Listener of a `networking.inbound`: `inbound:{ip}:{port}`.
pub fn inbound_listener(ip: &str, port: u32) -> String {
    format!("inbound:{}", join_host_port(ip, port))
}

/// Listener of a `networking.outbound`: `outbound:{ip}:{port}`.
pub fn outbound_listener(ip: &str, port: u32) -> String {
    format!("outbound:{}", join_host_port(ip, port))
}

/// Cluster of an inbound's local application: `localhost:{servicePort}`.
pub fn local_cluster(service_port: u32) -> String {
    format!("localhost:{service_port}")
}

/// Cluster of an outbound service: the service name itself.
pub fn outbound_cluster(service: &str) -> String {
    service.to_string()
}

/// Cluster of a TrafficRoute destination (a tag subset of a service): the
/// service alone when the subset has no other tag, else
/// `{service}-{16 hex digits}`, the digits being the first 8 bytes of the
/// SHA-256 of every tag's name then value, tags in name order (`kuma.io/service`
/// included): Kuma's naming since 2.3.
pub fn split_cluster(service: &str, tags: &BTreeMap<String, String>) -> String {
    if tags.keys().all(|k| k == model::labels::tags::SERVICE) {
        return outbound_cluster(service);
    }
    let mut hasher = Sha256::new();
    for (key, value) in tags {
        hasher.update(key.as_bytes());
        hasher.update(value.as_bytes());
    }
    let digest = hasher.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{service}-{hex}")
}

/// Inline route configuration of an inbound: `inbound:{service}`.
pub fn inbound_route_config(service: &str) -> String {
    format!("inbound:{service}")
}

/// Inline route configuration of an outbound: `outbound:{service}`.
pub fn outbound_route_config(service: &str) -> String {
    format!("outbound:{service}")
}

/// Virtual host of an inbound or outbound route configuration: `{service}`.
pub fn virtual_host(service: &str) -> String {
    service.to_string()
}

/// Secret holding the proxy's certificate and key: `identity_cert:secret:{mesh}`.
pub fn identity_cert_secret(mesh: &str) -> String {
    format!("identity_cert:secret:{mesh}")
}

/// Secret holding the mesh's CA certificates: `mesh_ca:secret:{mesh}`.
pub fn mesh_ca_secret(mesh: &str) -> String {
    format!("mesh_ca:secret:{mesh}")
}

/// A name made safe as an Envoy stat prefix, as Kuma's `SanitizeMetric`:
/// every character other than ASCII letters, digits, `_` and `-` becomes `_`
/// (`localhost:8080` -> `localhost_8080`).
pub fn stat_prefix(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_names_join_host_and_port_as_go_does() {
        assert_eq!(inbound_listener("10.0.0.1", 8080), "inbound:10.0.0.1:8080");
        assert_eq!(
            outbound_listener("127.0.0.1", 10001),
            "outbound:127.0.0.1:10001"
        );
        assert_eq!(inbound_listener("fd00::1", 80), "inbound:[fd00::1]:80");
        assert_eq!(outbound_listener("::1", 80), "outbound:[::1]:80");
    }

    #[test]
    fn cluster_route_and_secret_names() {
        assert_eq!(local_cluster(18080), "localhost:18080");
        assert_eq!(outbound_cluster("backend"), "backend");
        assert_eq!(inbound_route_config("web"), "inbound:web");
        assert_eq!(outbound_route_config("backend"), "outbound:backend");
        assert_eq!(virtual_host("backend"), "backend");
        assert_eq!(
            identity_cert_secret("default"),
            "identity_cert:secret:default"
        );
        assert_eq!(mesh_ca_secret("default"), "mesh_ca:secret:default");
    }

    #[test]
    fn split_clusters_hash_their_sorted_tags() {
        let tags = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            split_cluster("backend", &tags(&[("kuma.io/service", "backend")])),
            "backend"
        );
        // Expected values: Python's hashlib over "kuma.io/servicebackendversionv1".
        assert_eq!(
            split_cluster(
                "backend",
                &tags(&[("version", "v1"), ("kuma.io/service", "backend")])
            ),
            "backend-154693772bc47249"
        );
        assert_eq!(
            split_cluster(
                "backend",
                &tags(&[("kuma.io/service", "backend"), ("version", "v2")])
            ),
            "backend-5b73b3f4adf20020"
        );
    }

    #[test]
    fn stat_prefixes_are_sanitized() {
        assert_eq!(stat_prefix("localhost:8080"), "localhost_8080");
        assert_eq!(
            stat_prefix("backend_kuma-demo_svc_8080"),
            "backend_kuma-demo_svc_8080"
        );
        assert_eq!(stat_prefix("a.b/c"), "a_b_c");
    }
}
