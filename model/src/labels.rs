//! Label keys Kuma gives meaning to.

/// Where a resource was authored: `global` or `zone`.
pub const ORIGIN: &str = "kuma.io/origin";
pub const ORIGIN_GLOBAL: &str = "global";
pub const ORIGIN_ZONE: &str = "zone";
/// The zone a resource came from.
pub const ZONE: &str = "kuma.io/zone";
/// The name a user gave a resource before KDS renamed it.
pub const DISPLAY_NAME: &str = "kuma.io/display-name";
pub const MESH: &str = "kuma.io/mesh";
pub const ENV: &str = "kuma.io/env";
pub const KDS_SYNC: &str = "kuma.io/kds-sync";
pub const K8S_NAMESPACE: &str = "k8s.kuma.io/namespace";

/// Tags with meaning on dataplane inbounds.
pub mod tags {
    pub const SERVICE: &str = "kuma.io/service";
    pub const PROTOCOL: &str = "kuma.io/protocol";
    pub const ZONE: &str = "kuma.io/zone";
    pub const INSTANCE: &str = "kuma.io/instance";
    /// Known values of `kuma.io/protocol`.
    pub const PROTOCOLS: &[&str] = &["http", "http2", "grpc", "tcp", "kafka"];
}
