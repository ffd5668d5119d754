//! Compiles our `.proto` files (under `proto/kuma/`) with protox (pure Rust,
//! no `protoc`) and generates prost messages plus tonic clients/servers.
//!
//! Envoy, xDS, validate and Google types are not generated here: they map to
//! the pre-generated types of the `envoy-types` crate, so that e.g. a
//! `DeltaDiscoveryRequest` from our KDS service is the very type the Envoy ADS
//! code uses. The files under `proto/vendor/` only exist so the compiler can
//! resolve the imports.

use std::error::Error;
use std::path::{Path, PathBuf};

use prost::Message;

/// Include roots: our own protos (imported as `kuma/...`) and the vendored
/// third-party ones (imported as `envoy/...`, `google/rpc/...`, ...).
const OUR_ROOT: &str = "proto";
const VENDOR_ROOT: &str = "proto/vendor";
/// Folder (relative to `OUR_ROOT`) holding the files we compile.
const OUR_TREE: &str = "kuma";

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=build.rs");

    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    // Every .proto of ours, as a path relative to the include root, sorted
    // so the generated output does not depend on directory iteration order.
    let mut files = Vec::new();
    collect_protos(
        &manifest_dir.join(OUR_ROOT),
        &manifest_dir.join(OUR_ROOT).join(OUR_TREE),
        &mut files,
    )?;
    files.sort();
    if files.is_empty() {
        return Err("no .proto files found under proto/kuma".into());
    }

    let includes = [manifest_dir.join(OUR_ROOT), manifest_dir.join(VENDOR_ROOT)];
    // `protox::compile` keeps source info (for doc comments in the generated
    // code) and includes every imported file, WKTs included.
    let fds = protox::compile(&files, includes)?;

    // Embedded descriptor set for runtime reflection (proto-JSON). Source
    // info is dropped there: it is only useful for codegen and triples the
    // size.
    let mut embedded = fds.clone();
    for file in &mut embedded.file {
        file.source_code_info = None;
    }
    std::fs::write(out_dir.join("kds_descriptor.bin"), embedded.encode_to_vec())?;

    let mut config = tonic_prost_build::Config::new();
    // `impl prost::Name` for every message, with the domain Kuma/Go expect
    // in `Any.type_url` (the default would be "/kuma.mesh.v1alpha1.X").
    config.enable_type_names();
    config.type_name_domain(["."], "type.googleapis.com");

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Needed so that `.google.protobuf` can be mapped to envoy-types
        // (otherwise prost-build's own prost-types mapping collides).
        .compile_well_known_types(true)
        .extern_path(".envoy", "::envoy_types::pb::envoy")
        .extern_path(".google.protobuf", "::envoy_types::pb::google::protobuf")
        .extern_path(".google.rpc", "::envoy_types::pb::google::rpc")
        .extern_path(".xds", "::envoy_types::pb::xds")
        .extern_path(".udpa", "::envoy_types::pb::udpa")
        .extern_path(".validate", "::envoy_types::pb::validate")
        .compile_fds_with_config(fds, config)?;

    Ok(())
}

/// Appends to `out` every `*.proto` below `dir`, relative to `root`.
fn collect_protos(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Box<dyn Error>> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(root, &path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            out.push(path.strip_prefix(root)?.to_path_buf());
        }
    }
    Ok(())
}
