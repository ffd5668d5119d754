//! The cases shared by the golden and the Envoy tests: `testdata/{case}.input.yaml`
//! holds a Mesh, Dataplanes and policies in kumactl YAML; the first Dataplane
//! is the proxy, every other resource is one of the mesh's policies. When the Mesh
//! enables mTLS, the proxy's certificate and the CA are the fixed test ones in
//! `testdata/mtls_identity.{pem,key}` and `testdata/mtls_ca.pem`. A Config
//! `kuma-{mesh}-dns-vips` holds the mesh's VIPs.

use std::path::PathBuf;

use model::{Resource, ResourceType};
use xds::EnvoyResources;

pub fn testdata(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(file)
}

/// The resources generated for the proxy of `case`.
pub fn generate_case(case: &str) -> EnvoyResources {
    let path = testdata(&format!("{case}.input.yaml"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let resources = model::format::parse_documents(&text)
        .unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
    let mesh = find(&resources, ResourceType::Mesh, case);
    let proxy = find(&resources, ResourceType::Dataplane, case);
    let dataplanes: Vec<Resource> = resources
        .iter()
        .filter(|r| r.kind() == ResourceType::Dataplane)
        .cloned()
        .collect();
    let policies: Vec<Resource> = resources
        .iter()
        .filter(|r| {
            !matches!(
                r.kind(),
                ResourceType::Mesh | ResourceType::Dataplane | ResourceType::Config
            )
        })
        .cloned()
        .collect();
    let vips_config = dns::vips::config_name(&mesh.meta.name);
    let vips = match resources.iter().find(|r| r.meta.name == vips_config) {
        Some(Resource {
            spec: model::Spec::Config(config),
            ..
        }) => dns::vips::decode(&vips_config, &config.config)
            .unwrap_or_else(|e| panic!("{case}: {e}")),
        _ => xds::Vips::new(),
    };
    let (tls, identity) = test_certificates();
    let mut context = xds::MeshContext::new(mesh, &dataplanes);
    context.policies = &policies;
    context.tls = Some(&tls);
    context.identity = Some(&identity);
    context.vips = &vips;
    xds::generate(proxy, &context).unwrap_or_else(|e| panic!("{case}: {e}"))
}

/// The fixed test CA and proxy certificate (generation uses them only when the mesh
/// enables mTLS).
pub fn test_certificates() -> (xds::MeshTls, xds::ProxyIdentity) {
    let read = |file: &str| {
        std::fs::read_to_string(testdata(file)).unwrap_or_else(|e| panic!("reading {file}: {e}"))
    };
    (
        xds::MeshTls {
            ca_bundle_pem: read("mtls_ca.pem"),
        },
        xds::ProxyIdentity {
            cert_chain_pem: read("mtls_identity.pem"),
            key_pem: read("mtls_identity.key"),
        },
    )
}

fn find<'a>(resources: &'a [Resource], kind: ResourceType, case: &str) -> &'a Resource {
    resources
        .iter()
        .find(|r| r.kind() == kind)
        .unwrap_or_else(|| panic!("{case}: no {kind} in the input"))
}
