//! Real Envoy 1.40 configured over our ADS server applies what
//! TrafficRoutes and TrafficPermissions generate: requests go to the subset
//! an HTTP rule picks, and an inbound without a permission refuses
//! connections while one with a permission serves them.
//!
//! Needs `ENVOY_BINARY` (exported by `cargo xtask test`; `cargo xtask envoy`
//! prints a path). Without it the test fails: it never skips silently.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod envoy_cli;
mod envoy_run;

use std::time::Duration;

use envoy_run::{Envoy, free_port, get, http_server};
use model::{Resource, ResourceType};
use xds::ads::SnapshotCache;

const NODE: &str = "default.web-1";
const DEADLINE: Duration = Duration::from_secs(60);

/// The resources of the first Dataplane of `yaml` (a Mesh, Dataplanes and
/// policies).
fn generate(yaml: &str) -> xds::EnvoyResources {
    let resources = model::format::parse_documents(yaml).unwrap();
    let of = |kind: ResourceType| -> Vec<Resource> {
        resources
            .iter()
            .filter(|r| r.kind() == kind)
            .cloned()
            .collect()
    };
    let (mesh, dataplanes) = (of(ResourceType::Mesh), of(ResourceType::Dataplane));
    let policies: Vec<Resource> = resources
        .iter()
        .filter(|r| !matches!(r.kind(), ResourceType::Mesh | ResourceType::Dataplane))
        .cloned()
        .collect();
    // Placeholder certificates: generation only places the texts, and the
    // RBAC test takes the TLS off again (its requests are plain).
    let tls = xds::MeshTls {
        ca_bundle_pem: "CA".into(),
    };
    let identity = xds::ProxyIdentity {
        cert_chain_pem: "CERT".into(),
        key_pem: "KEY".into(),
    };
    let mut context = xds::MeshContext::new(&mesh[0], &dataplanes);
    context.policies = &policies;
    context.tls = Some(&tls);
    context.identity = Some(&identity);
    let out = xds::generate(&dataplanes[0], &context).unwrap();
    assert!(out.skipped.is_empty(), "{:?}", out.skipped);
    out
}

/// Polls `port` until a response satisfies `done`; panics with the last
/// outcome and Envoy's log at the deadline.
async fn until(
    envoy: &mut Envoy,
    port: u16,
    headers: &[&str],
    what: &str,
    done: impl Fn(&Result<String, String>) -> bool,
) -> Result<String, String> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        envoy.assert_running();
        let outcome = get(port, headers).await;
        if done(&outcome) {
            return outcome;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} on {port}: never; last: {outcome:?}\n--- envoy log ---\n{}",
            envoy.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ok_with(outcome: &Result<String, String>, body: &str) -> bool {
    matches!(outcome, Ok(r) if r.starts_with("HTTP/1.1 200") && r.ends_with(body))
}

#[tokio::test]
async fn an_http_rule_sends_matching_requests_to_its_subset() {
    let v1 = http_server("answered by backend v1").await;
    let v2 = http_server("answered by backend v2").await;
    let (inbound, app, outbound) = (free_port(), free_port(), free_port());
    let yaml = format!(
        "type: Mesh
name: default
---
type: Dataplane
mesh: default
name: web-1
networking:
  address: 127.0.0.1
  inbound:
  - port: {inbound}
    servicePort: {app}
    tags:
      kuma.io/service: web
  outbound:
  - port: {outbound}
    tags:
      kuma.io/service: backend
---
type: Dataplane
mesh: default
name: backend-1
networking:
  address: 127.0.0.1
  inbound:
  - port: {v1}
    tags:
      kuma.io/service: backend
      kuma.io/protocol: http
      version: v1
---
type: Dataplane
mesh: default
name: backend-2
networking:
  address: 127.0.0.1
  inbound:
  - port: {v2}
    tags:
      kuma.io/service: backend
      kuma.io/protocol: http
      version: v2
---
type: TrafficRoute
mesh: default
name: canary-by-header
sources:
- match:
    kuma.io/service: web
destinations:
- match:
    kuma.io/service: backend
conf:
  http:
  - match:
      headers:
        x-canary:
          exact: '1'
    destination:
      kuma.io/service: backend
      version: v2
  destination:
    kuma.io/service: backend
    version: v1
"
    );
    let cache = SnapshotCache::new();
    cache.set(NODE, generate(&yaml));
    let mut envoy = Envoy::start(NODE, cache).await;

    let _served = until(&mut envoy, outbound, &[], "v1 without the header", |o| {
        ok_with(o, "answered by backend v1")
    })
    .await;
    // The same snapshot carries the rule: no wait is needed for it.
    let canary = get(outbound, &["x-canary: 1"]).await;
    assert!(ok_with(&canary, "answered by backend v2"), "{canary:?}");
    let other = get(outbound, &["x-canary: 2"]).await;
    assert!(ok_with(&other, "answered by backend v1"), "{other:?}");
}

#[tokio::test]
async fn rbac_serves_a_permitted_inbound_and_refuses_the_other() {
    let app = http_server("answered by the app").await;
    let (open, closed) = (free_port(), free_port());
    let yaml = format!(
        "type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: builtin
---
type: Dataplane
mesh: default
name: web-1
networking:
  address: 127.0.0.1
  inbound:
  - port: {open}
    servicePort: {app}
    tags:
      kuma.io/service: open
      kuma.io/protocol: http
  - port: {closed}
    servicePort: {app}
    tags:
      kuma.io/service: closed
      kuma.io/protocol: http
---
type: TrafficPermission
mesh: default
name: anyone-to-open
sources:
- match:
    kuma.io/service: '*'
destinations:
- match:
    kuma.io/service: open
"
    );
    let mut resources = generate(&yaml);
    // Plain requests for this test: whatever TLS the mesh's mTLS adds to
    // the inbounds is taken off, so that requests reach the RBAC filter
    // without a client certificate ("any" principals need none).
    for listener in &mut resources.listeners {
        for chain in &mut listener.filter_chains {
            chain.transport_socket = None;
        }
    }
    resources.secrets.clear();
    let cache = SnapshotCache::new();
    cache.set(NODE, resources);
    let mut envoy = Envoy::start(NODE, cache).await;

    let _served = until(
        &mut envoy,
        open,
        &[],
        "the permitted inbound serving",
        |o| ok_with(o, "answered by the app"),
    )
    .await;
    // Both listeners came in the same update and share the application's
    // cluster: the other one accepts the connection, then RBAC closes it.
    let refused = until(&mut envoy, closed, &[], "a connection to the other", |o| {
        o.is_ok()
    })
    .await;
    assert_eq!(refused, Ok(String::new()), "RBAC let a request through");
}
