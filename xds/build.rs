//! Compiles the Envoy `.proto` files vendored under `proto/vendor/` with
//! protox (pure Rust, no `protoc`) into one descriptor set, embedded in the
//! crate for proto3 JSON/YAML rendering through `prost-reflect`.
//!
//! No Rust code is generated: the messages themselves are the pre-generated
//! types of the `envoy-types` crate, built from the very same files.

use std::error::Error;
use std::path::PathBuf;

use prost::Message;

/// Every Envoy message this crate generates or packs into an `Any`; protox
/// pulls in their imports (all of which must be vendored).
const ROOTS: &[&str] = &[
    "envoy/config/listener/v3/listener.proto",
    "envoy/config/cluster/v3/cluster.proto",
    "envoy/config/endpoint/v3/endpoint.proto",
    "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto",
    "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
    "envoy/extensions/filters/http/router/v3/router.proto",
    "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
    "envoy/config/bootstrap/v3/bootstrap.proto",
    "envoy/extensions/transport_sockets/tls/v3/tls.proto",
    "envoy/extensions/filters/network/rbac/v3/rbac.proto",
    "envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto",
];

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=build.rs");

    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    let mut fds = protox::compile(ROOTS, [manifest_dir.join("proto/vendor")])?;
    // Source info is only useful for codegen; dropping it keeps the
    // embedded set small.
    for file in &mut fds.file {
        file.source_code_info = None;
    }
    std::fs::write(out_dir.join("envoy_descriptor.bin"), fds.encode_to_vec())?;
    Ok(())
}
