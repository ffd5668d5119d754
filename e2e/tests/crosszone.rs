//! Cross-zone traffic through zone ingresses, with real processes: a global, zone-1 and
//! zone-2 (SQLite), a zone ingress per zone and sidecars, all run by `kuma-dp` with real
//! Envoy 1.40; policies applied on the global with `kumactl`.
//!
//! What a user would see is checked: the frontend in zone-1 gets 200 from a backend instance
//! that runs only in zone-2, the backend's sidecar saw the frontend's SPIFFE identity (mTLS end
//! to end), zone-2's ingress Envoy counted the connection; a TrafficPermission on the global
//! stops and restores the call; with instances in both zones the traffic follows instance
//! counts and fails over to zone-1 when zone-2's instances stop; and a killed zone-2 control
//! plane leaves traffic through its ingress working.
//!
//! Needs `ENVOY_BINARY` and the built binaries (`cargo xtask test` builds them).

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::sidecar::{Sidecar, envoy_binary};
use support::traffic::{dataplane, get, http_client, wait_reaches, wait_refused};
use support::{Federation, GLOBAL, ZoneOptions, apps, eventually, free_port};

const MESH_MTLS: &str = "type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
    - name: ca-1
      type: builtin
";

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

/// How long a change may take to reach the other zone's proxies.
const DEADLINE: Duration = Duration::from_secs(45);

/// A global with zone-1 and zone-2 (inline dataplanes deregistered 1 s after they leave),
/// builtin mTLS on the default mesh, and an ingress in each zone.
struct Lab {
    // Dropped in this order: the proxies before the control planes and their temp dir.
    ingresses: BTreeMap<String, Sidecar>,
    federation: Federation,
}

impl Lab {
    async fn start() -> Lab {
        // Fail before starting anything when Envoy is missing.
        let _ = envoy_binary();
        let mut federation = Federation::start_global(Vec::new()).await;
        for zone in ["zone-1", "zone-2"] {
            let options = ZoneOptions {
                env: vec![(
                    "KUMA_XDS_SERVER_DATAPLANE_DEREGISTRATION_DELAY".into(),
                    "1s".into(),
                )],
                ..ZoneOptions::default()
            };
            federation.add_zone(zone, options).await;
        }
        for zone in ["zone-1", "zone-2"] {
            federation.wait_online(zone, DEADLINE).await;
        }
        federation.apply(GLOBAL, MESH_MTLS);
        let mut ingresses = BTreeMap::new();
        for zone in ["zone-1", "zone-2"] {
            ingresses.insert(zone.to_string(), Sidecar::zone_ingress(&federation, zone));
        }
        for ingress in ingresses.values() {
            ingress.wait_live().await;
        }
        Lab {
            ingresses,
            federation,
        }
    }

    /// An HTTP app answering `{name}@{zone}` and its sidecar `name` (service `service`) in
    /// `zone`.
    async fn app(
        &self,
        zone: &str,
        name: &str,
        service: &str,
        outbounds: &[(u16, &str)],
    ) -> Sidecar {
        let app = apps::http(&format!("{name}@{zone}")).await;
        let yaml = dataplane(
            name,
            free_port(),
            app,
            &[("kuma.io/service", service), ("kuma.io/protocol", "http")],
            outbounds,
        );
        let sidecar = Sidecar::start(&self.federation, zone, name, "default", &yaml);
        sidecar.wait_live().await;
        sidecar
    }

    /// The frontend in zone-1 with an outbound to `backend`; returns it and the outbound port.
    async fn frontend(&self) -> (Sidecar, u16) {
        let outbound = free_port();
        let sidecar = self
            .app("zone-1", "frontend-1", "frontend", &[(outbound, "backend")])
            .await;
        (sidecar, outbound)
    }
}

/// The value of counter `stat` in Envoy's admin `/stats` of `proxy` (0 when absent).
async fn envoy_stat(proxy: &Sidecar, stat: &str) -> u64 {
    let text = proxy
        .admin(&format!("/stats?filter=^{}$", stat.replace('.', "\\.")))
        .await
        .unwrap_or_default();
    text.lines()
        .filter_map(|line| line.strip_prefix(&format!("{stat}: ")))
        .filter_map(|v| v.trim().parse().ok())
        .next()
        .unwrap_or(0)
}

/// Sends `count` GETs through `port`; per answering instance (first body line), how many.
async fn tally(http: &reqwest::Client, port: u16, count: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..count {
        let who = match get(http, port).await {
            Ok((200, body)) => body.lines().next().unwrap_or_default().to_string(),
            Ok((status, body)) => format!("HTTP {status}: {body}"),
            Err(e) => format!("error: {e}"),
        };
        *seen.entry(who).or_default() += 1;
    }
    seen
}

/// Waits until `count` GETs in a row through `port` all answer from `instance`.
async fn wait_only(http: &reqwest::Client, port: u16, instance: &str, count: usize, what: &str) {
    eventually(DEADLINE, what, async || {
        let seen = tally(http, port, count).await;
        if seen.get(instance) == Some(&count) {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    })
    .await;
}

/// Waits until some of 30 GETs through `port` answer from an instance in `zone`.
async fn wait_zone_answers(http: &reqwest::Client, port: u16, zone: &str, what: &str) {
    let suffix = format!("@{zone}");
    eventually(DEADLINE, what, async || {
        let seen = tally(http, port, 30).await;
        if seen.keys().any(|k| k.ends_with(&suffix)) {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn e2e_crosszone_call_through_the_ingress_over_mtls() {
    let mut lab = Lab::start().await;
    let http = http_client();
    let _backend = lab.app("zone-2", "backend-1", "backend", &[]).await;
    let (_frontend, outbound) = lab.frontend().await;

    // zone-1 -> zone-2 through zone-2's ingress, mTLS end to end.
    let body = wait_reaches(
        &http,
        outbound,
        "backend-1@zone-2",
        "frontend (zone-1) -> backend (zone-2)",
    )
    .await;
    assert!(
        body.contains("URI=spiffe://default/frontend"),
        "the backend's sidecar did not see the frontend's SPIFFE identity: {body:?}"
    );
    let ingress = &lab.ingresses["zone-2"];
    // Envoy writes the ':' of cluster names as '_' in stat names.
    let connections = envoy_stat(ingress, "cluster.default_backend.upstream_cx_total").await;
    assert!(
        connections > 0,
        "zone-2's ingress counted no connection to default:backend:\n{}",
        ingress
            .admin("/stats?filter=default:backend")
            .await
            .unwrap_or_default()
    );

    // The global knows zone-2's ingress and what it offers.
    let fed = &lab.federation;
    let ingress_of_zone_2 = eventually(DEADLINE, "zone-2's ingress on the global", async || {
        let items = fed.list(GLOBAL, "/zoneingresses").await?;
        items
            .into_iter()
            .find(|i| i["zone"] == "zone-2")
            .ok_or_else(|| "not yet".to_string())
    })
    .await;
    let services = ingress_of_zone_2["availableServices"].to_string();
    assert!(
        services.contains("\"backend\"") && services.contains("\"instances\":1"),
        "{ingress_of_zone_2}"
    );

    // zone-2 shows its ingress online, as kumactl prints it.
    eventually(
        DEADLINE,
        "kumactl inspect zoneingresses on zone-2",
        async || {
            let out = fed.kumactl("zone-2", &["inspect", "zoneingresses"]);
            let table = model::test_util::kumactl_table(out.ok());
            match table.iter().find(|row| row["NAME"] == "ingress-zone-2") {
                Some(row) if row["STATUS"] == "Online" => Ok(()),
                _ => Err(out.stdout.clone()),
            }
        },
    )
    .await;

    // A TrafficPermission change on the global stops and restores the cross-zone call.
    fed.kumactl(
        GLOBAL,
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
        outbound,
        "cross-zone call refused without a permission",
    )
    .await;
    fed.apply(GLOBAL, ALLOW_FRONTEND);
    wait_reaches(
        &http,
        outbound,
        "backend-1@zone-2",
        "cross-zone call allowed by frontend-to-backend",
    )
    .await;

    // zone-2's control plane dies: its ingress and sidecars keep their last config, and the
    // global keeps zone-2's ingress, so the call keeps working even once zone-2 is offline.
    lab.federation.kill("zone-2");
    lab.federation.wait_offline("zone-2", DEADLINE).await;
    let seen = tally(&http, outbound, 50).await;
    assert_eq!(
        seen.get("backend-1@zone-2"),
        Some(&50),
        "with zone-2's control plane down: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn e2e_crosszone_traffic_follows_instances_and_fails_over() {
    let mut lab = Lab::start().await;
    let http = http_client();
    let _local = lab.app("zone-1", "backend-1", "backend", &[]).await;
    let remote_a = lab.app("zone-2", "backend-2", "backend", &[]).await;
    let remote_b = lab.app("zone-2", "backend-3", "backend", &[]).await;
    let (_frontend, outbound) = lab.frontend().await;

    // zone-2's ingress stands for two instances (weight 2) against one in zone-1 (weight 1):
    // a third of the requests go to zone-1. (Which zone-2 instance answers is the ingress's
    // choice per connection: it forwards TLS it cannot read.)
    let fed = &lab.federation;
    eventually(
        DEADLINE,
        "zone-1 sees 2 instances behind zone-2's ingress",
        async || {
            let items = fed.list("zone-1", "/zoneingresses").await?;
            let text = serde_json::to_string(&items).map_err(|e| e.to_string())?;
            if text.contains("\"instances\":2") {
                Ok(())
            } else {
                Err(text)
            }
        },
    )
    .await;
    eventually(DEADLINE, "both zones answer", async || {
        let seen = tally(&http, outbound, 30).await;
        let zone_1 = seen.contains_key("backend-1@zone-1");
        let zone_2 = seen.keys().any(|k| k.ends_with("@zone-2"));
        if zone_1 && zone_2 && seen.values().sum::<usize>() == 30 {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    })
    .await;
    let seen = tally(&http, outbound, 1000).await;
    let local = seen.get("backend-1@zone-1").copied().unwrap_or(0);
    let remote = seen.get("backend-2@zone-2").copied().unwrap_or(0)
        + seen.get("backend-3@zone-2").copied().unwrap_or(0);
    assert_eq!(local + remote, 1000, "every request answered: {seen:?}");
    let local_share = local as f64 / 1000.0;
    assert!(
        (local_share - 1.0 / 3.0).abs() <= 0.10,
        "zone-1 got {local_share:.3} of the traffic, expected 1/3 ± 0.10: {seen:?}"
    );

    // Locality-aware load balancing on the mesh: zone-1's instance takes everything while it
    // is there; switched off again, both zones answer again.
    fed.apply(
        GLOBAL,
        &format!("{MESH_MTLS}routing:\n  localityAwareLoadBalancing: true\n"),
    );
    wait_only(
        &http,
        outbound,
        "backend-1@zone-1",
        30,
        "locality-aware: all traffic in zone-1",
    )
    .await;
    fed.apply(GLOBAL, MESH_MTLS);
    wait_zone_answers(&http, outbound, "zone-2", "both zones answer again").await;

    // All of zone-2 goes away (control plane and ingress; the global still lists the ingress):
    // zone-1's sidecar ejects the dead ingress and keeps the traffic local.
    lab.federation.kill("zone-2");
    drop(lab.ingresses.remove("zone-2"));
    wait_only(
        &http,
        outbound,
        "backend-1@zone-1",
        20,
        "all traffic in zone-1 with zone-2 gone",
    )
    .await;
    let seen = tally(&http, outbound, 100).await;
    assert_eq!(
        seen.get("backend-1@zone-1"),
        Some(&100),
        "with zone-2 gone every request reaches zone-1: {seen:?}"
    );

    // zone-2 comes back (control plane, then a new ingress): routing to it resumes.
    lab.federation.restart("zone-2").await;
    lab.federation.wait_online("zone-2", DEADLINE).await;
    let ingress_2 = Sidecar::zone_ingress(&lab.federation, "zone-2");
    ingress_2.wait_live().await;
    wait_zone_answers(&http, outbound, "zone-2", "traffic reaches zone-2 again").await;

    // zone-2's instances stop: once zone-2 has told the others, all traffic stays in zone-1
    // and no request fails.
    drop(remote_a);
    drop(remote_b);
    wait_only(
        &http,
        outbound,
        "backend-1@zone-1",
        20,
        "all traffic in zone-1",
    )
    .await;
    let seen = tally(&http, outbound, 200).await;
    assert_eq!(
        seen.get("backend-1@zone-1"),
        Some(&200),
        "after convergence every request reaches zone-1: {seen:?}"
    );
}
