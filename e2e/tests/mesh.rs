//! A mesh in one standalone zone, as an operator builds it: Dataplanes run by `kuma-dp`
//! (real Envoy 1.40) with tokens from `kumactl`, the default mesh switched to builtin mTLS with
//! `kumactl apply`, and requests sent by the test through a sidecar's outbound listener.
//!
//! What a user would see is checked: the HTTP status and which instance answered, the caller's
//! SPIFFE identity as the callee's sidecar saw it (`x-forwarded-client-cert`), the certificate
//! in Envoy's admin `/certs`, traffic refused and allowed again as TrafficPermissions change,
//! an 80/20 TrafficRoute split, tcp and gRPC services, and a proxy that keeps serving while the
//! zone control plane is down.
//!
//! Needs `ENVOY_BINARY` and the built binaries (`cargo build -p zone -p ctl -p dp`; `cargo
//! xtask test` does both).

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use support::sidecar::{Sidecar, envoy_binary};
use support::traffic::{dataplane, get, http_client, wait_reaches, wait_refused};
use support::{Federation, apps, eventually, free_port};

const ZONE: &str = "zone-1";
const MESH_MTLS: &str = "type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
    - name: ca-1
      type: builtin
";
const DEADLINE: Duration = Duration::from_secs(30);

/// `kuma-dp` for [`dataplane`] `name` of the default mesh in front of the application on
/// `app_port`.
fn sidecar(
    zone: &Federation,
    name: &str,
    app_port: u16,
    tags: &[(&str, &str)],
    outbounds: &[(u16, &str)],
) -> Sidecar {
    let yaml = dataplane(name, free_port(), app_port, tags, outbounds);
    Sidecar::start(zone, ZONE, name, "default", &yaml)
}

async fn zone() -> Federation {
    // Fail before starting anything when Envoy is missing.
    let _ = envoy_binary();
    let zone = Federation::start_standalone(ZONE, Vec::new()).await;
    zone.apply(ZONE, MESH_MTLS);
    zone
}

/// A backend (HTTP app + sidecar, service `backend`, `version` tag) and a frontend sidecar
/// whose outbound `backend` is on the returned port.
struct Pair {
    backend: Sidecar,
    frontend: Sidecar,
    outbound: u16,
}

async fn pair(zone: &Federation) -> Pair {
    let backend_app = apps::http("backend-1").await;
    let backend = sidecar(
        zone,
        "backend-1",
        backend_app,
        &[
            ("kuma.io/service", "backend"),
            ("kuma.io/protocol", "http"),
            ("version", "v1"),
        ],
        &[],
    );
    let frontend_app = apps::http("frontend-1").await;
    let outbound = free_port();
    let frontend = sidecar(
        zone,
        "frontend-1",
        frontend_app,
        &[
            ("kuma.io/service", "frontend"),
            ("kuma.io/protocol", "http"),
        ],
        &[(outbound, "backend")],
    );
    backend.wait_live().await;
    frontend.wait_live().await;
    Pair {
        backend,
        frontend,
        outbound,
    }
}

const ALLOW_FRONTEND: &str = "type: TrafficPermission
mesh: default
name: frontend-to-backend
sources:
  - match:
      kuma.io/service: frontend
destinations:
  - match:
      kuma.io/service: backend
";

#[tokio::test(flavor = "multi_thread")]
async fn e2e_mesh_mtls_and_traffic_permissions() {
    let zone = zone().await;
    let http = http_client();
    let pair = pair(&zone).await;

    // mTLS: the backend's sidecar saw the frontend's SPIFFE identity.
    let body = wait_reaches(
        &http,
        pair.outbound,
        "backend-1",
        "frontend -> backend over mTLS",
    )
    .await;
    assert!(
        body.contains("URI=spiffe://default/frontend"),
        "the backend's sidecar did not pass the caller's SPIFFE identity: {body:?}"
    );
    // Envoy's admin shows the proxy's identity certificate.
    let certs = pair.backend.admin("/certs").await.expect("admin /certs");
    assert!(
        certs.contains("spiffe://default/backend"),
        "no SPIFFE identity in /certs of the backend:\n{certs}"
    );

    // Without the default allow-all permission, traffic is denied.
    zone.kumactl(
        ZONE,
        &[
            "delete",
            "traffic-permission",
            "allow-all-default",
            "--mesh",
            "default",
        ],
    )
    .ok();
    wait_refused(
        &http,
        pair.outbound,
        "frontend -> backend refused without a TrafficPermission",
    )
    .await;

    // A permission for exactly this caller allows it again.
    zone.apply(ZONE, ALLOW_FRONTEND);
    wait_reaches(
        &http,
        pair.outbound,
        "backend-1",
        "frontend -> backend allowed by frontend-to-backend",
    )
    .await;

    // A client of another service is refused.
    let other_app = apps::http("other-1").await;
    let other_outbound = free_port();
    let other = sidecar(
        &zone,
        "other-1",
        other_app,
        &[("kuma.io/service", "other"), ("kuma.io/protocol", "http")],
        &[(other_outbound, "backend")],
    );
    other.wait_live().await;
    wait_refused(&http, other_outbound, "other -> backend refused").await;
    // ... while the permitted caller still gets through.
    let (status, body) = get(&http, pair.outbound)
        .await
        .expect("frontend -> backend");
    assert_eq!(status, 200, "{body}");
    drop(pair.frontend);
}

#[tokio::test(flavor = "multi_thread")]
async fn e2e_mesh_traffic_route_splits_80_20() {
    let zone = zone().await;
    let http = http_client();
    let mut sidecars = Vec::new();
    for version in ["v1", "v2"] {
        let name = format!("backend-{version}");
        let app = apps::http(&name).await;
        sidecars.push(sidecar(
            &zone,
            &name,
            app,
            &[
                ("kuma.io/service", "backend"),
                ("kuma.io/protocol", "http"),
                ("version", version),
            ],
            &[],
        ));
    }
    let frontend_app = apps::http("frontend-1").await;
    let outbound = free_port();
    let frontend = sidecar(
        &zone,
        "frontend-1",
        frontend_app,
        &[
            ("kuma.io/service", "frontend"),
            ("kuma.io/protocol", "http"),
        ],
        &[(outbound, "backend")],
    );
    for sidecar in &sidecars {
        sidecar.wait_live().await;
    }
    frontend.wait_live().await;
    wait_reaches(&http, outbound, "backend-v", "frontend -> backend").await;

    zone.apply(
        ZONE,
        "type: TrafficRoute
mesh: default
name: backend-split
sources:
  - match:
      kuma.io/service: '*'
destinations:
  - match:
      kuma.io/service: backend
conf:
  split:
    - weight: 80
      destination:
        kuma.io/service: backend
        version: v1
    - weight: 20
      destination:
        kuma.io/service: backend
        version: v2
",
    );
    // The split is in place when the frontend's listener routes to the per-version clusters
    // (LDS comes after CDS), and then requests succeed again.
    eventually(
        DEADLINE,
        "the frontend's listener on the split",
        async || {
            let listeners = frontend
                .admin("/config_dump?resource=dynamic_listeners")
                .await?;
            let split = listeners.matches("\"backend-").count();
            if split >= 2 {
                Ok(())
            } else {
                Err(format!("{split} split clusters in the listeners"))
            }
        },
    )
    .await;
    wait_reaches(
        &http,
        outbound,
        "backend-v",
        "frontend -> backend on the split",
    )
    .await;

    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..1000 {
        let (status, body) = get(&http, outbound).await.expect("frontend -> backend");
        assert_eq!(status, 200, "{body}");
        let instance = body.lines().next().unwrap_or_default().to_string();
        *counts.entry(instance).or_default() += 1;
    }
    let v1 = counts.get("backend-v1").copied().unwrap_or(0);
    let v2 = counts.get("backend-v2").copied().unwrap_or(0);
    assert_eq!(v1 + v2, 1000, "answers from unknown instances: {counts:?}");
    // 80/20 within ±5% of the requests.
    assert!(
        (750..=850).contains(&v1),
        "v1 got {v1} of 1000 requests, v2 {v2}: not 80/20 ±5%"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn e2e_mesh_tcp_and_grpc_services() {
    let zone = zone().await;
    let echo_app = apps::tcp_echo("echo-1").await;
    let echo = sidecar(
        &zone,
        "echo-1",
        echo_app,
        &[("kuma.io/service", "echo"), ("kuma.io/protocol", "tcp")],
        &[],
    );
    let grpc_app = apps::grpc("pinger-1").await;
    let pinger = sidecar(
        &zone,
        "pinger-1",
        grpc_app,
        &[("kuma.io/service", "pinger"), ("kuma.io/protocol", "grpc")],
        &[],
    );
    let client_app = apps::http("client-1").await;
    let (echo_out, grpc_out) = (free_port(), free_port());
    let client = sidecar(
        &zone,
        "client-1",
        client_app,
        &[("kuma.io/service", "client"), ("kuma.io/protocol", "http")],
        &[(echo_out, "echo"), (grpc_out, "pinger")],
    );
    for sidecar in [&echo, &pinger, &client] {
        sidecar.wait_live().await;
    }

    let echo_addr = SocketAddr::from(([127, 0, 0, 1], echo_out));
    let answer = eventually(DEADLINE, "tcp through the mesh", async || {
        apps::tcp_call(echo_addr, "hello").await
    })
    .await;
    assert_eq!(answer, "echo-1: hello");

    let grpc_addr = SocketAddr::from(([127, 0, 0, 1], grpc_out));
    let leader = eventually(DEADLINE, "gRPC through the mesh", async || {
        apps::grpc_ping(grpc_addr, "pinger-1").await
    })
    .await;
    assert!(leader, "the gRPC call did not reach pinger-1");
    // gRPC went over HTTP/2 end to end: the callee's sidecar counted it as a gRPC request.
    let stats = pinger.admin("/stats?filter=http2").await.expect("stats");
    assert!(
        stats.contains("http2"),
        "no HTTP/2 stats on the gRPC callee:\n{stats}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn e2e_mesh_proxies_keep_serving_while_the_zone_is_down() {
    let mut zone = zone().await;
    let http = http_client();
    let pair = pair(&zone).await;
    wait_reaches(&http, pair.outbound, "backend-1", "frontend -> backend").await;

    zone.kill(ZONE);
    for _ in 0..20 {
        let (status, body) = get(&http, pair.outbound)
            .await
            .expect("frontend -> backend with the zone CP down");
        assert_eq!(status, 200, "the last config must keep serving: {body}");
    }

    // The zone comes back; its proxies reconnect and take new config.
    zone.restart(ZONE).await;
    zone.kumactl(
        ZONE,
        &[
            "delete",
            "traffic-permission",
            "allow-all-default",
            "--mesh",
            "default",
        ],
    )
    .ok();
    wait_refused(
        &http,
        pair.outbound,
        "the proxies converge on the restarted zone's config",
    )
    .await;
    drop(pair.backend);
}

#[tokio::test(flavor = "multi_thread")]
async fn e2e_mesh_bad_tokens_are_refused() {
    let zone = zone().await;
    let app = apps::http("web-1").await;
    let yaml = dataplane(
        "web-1",
        free_port(),
        app,
        &[("kuma.io/service", "web")],
        &[],
    );
    // A token of another dataplane.
    let other = zone
        .kumactl(
            ZONE,
            &[
                "generate",
                "dataplane-token",
                "--name",
                "db-1",
                "--mesh",
                "default",
                "--valid-for",
                "1h",
            ],
        )
        .ok()
        .trim()
        .to_string();
    for (what, token) in [
        ("garbage", "not-a-token"),
        ("another proxy's", other.as_str()),
    ] {
        let mut sidecar = Sidecar::start_with_token(&zone, ZONE, "web-1", "default", &yaml, token);
        let status = sidecar.wait_exit(Duration::from_secs(30)).await;
        assert!(
            !status.success(),
            "kuma-dp with {what} token exited with {status}"
        );
        let logs = sidecar.logs();
        assert!(
            logs.contains("401") || logs.contains("403") || logs.to_lowercase().contains("token"),
            "kuma-dp with {what} token does not say why:\n{logs}"
        );
        assert!(!logs.contains(token), "kuma-dp printed the token:\n{logs}");
    }
    // Nothing was registered by the refused proxies.
    assert!(
        zone.get(ZONE, "/meshes/default/dataplanes/web-1")
            .await
            .expect("GET the dataplane")
            .is_none(),
        "a refused proxy registered its Dataplane"
    );
}
