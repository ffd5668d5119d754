//! A zone cut off from the global by the network while both keep running, which loopback
//! processes cannot show: the images of `cargo xtask images` in docker containers (started
//! with testcontainers by `support::containers`), wired like compose/docker-compose.yaml,
//! whose `lab/` files (init.sh, proxy.sh, the Dataplane and ZoneIngress files, mesh.yaml)
//! are mounted: a global, zone-1 and zone-2 (SQLite each), an ingress per zone, `frontend`
//! in zone-1 and `backend` in zone-2 with kuma-dp sidecars, builtin mTLS.
//!
//! Two networks: `kds` joins the global and the zone control planes; `data` joins the zone
//! control planes and every proxy. The cut is `docker network disconnect` of zone-1's
//! container from `kds`, later undone; every container keeps running.
//!
//! Checked, in order:
//! 1. the global marks zone-1 offline;
//! 2. meanwhile zone-1 keeps serving its proxies (the frontend's sidecar stays connected to
//!    it) and the cross-zone call frontend (zone-1) -> backend (zone-2), through zone-2's
//!    ingress, keeps answering: it needs no global;
//! 3. changes made on the global meanwhile (a TrafficPermission added, one of 20 deleted)
//!    reach zone-2 but not zone-1;
//! 4. reconnected, zone-1 is online again and converges to zone-2's TrafficPermissions, and
//!    the global sent zone-1 only what changed:
//!    `kds_resources_sent_total{zone="zone-1",direction="globalToZone"}` on the global grows
//!    by a handful, not by the full set (30 or so) sent since zone-1 first connected.
//!
//! Skipped with a message when Docker does not answer or an image is missing, unless
//! `KUMA_E2E_REQUIRE_DOCKER` is set (`cargo xtask test` builds the images first and sets
//! it). The images hold release binaries: rebuild them (`cargo xtask images`) to test a
//! change.

mod support;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use testcontainers::bollard::Docker;
use testcontainers::bollard::models::HostConfig;
use testcontainers::core::{AccessMode, Mount};
use testcontainers::{ContainerRequest, GenericImage, Healthcheck, ImageExt};

use support::containers::{DockerLab, docker_or_skip, removed_on_termination};
use support::{eventually, get_json_opt, metric_at};

const IMAGES: &[&str] = &["kuma-global", "kuma-zone", "kuma-dp", "kumactl", "demo-app"];
const ZONES: [&str; 2] = ["zone-1", "zone-2"];

/// How long a container may take to be healthy, and a one-off container to finish.
const STARTUP: Duration = Duration::from_secs(90);
/// How long a change may take to reach a zone, or a zone to show its new status.
const SYNC: Duration = Duration::from_secs(60);
/// The global's zone health-check timeout (set below), and the bound on noticing a cut zone.
const HEALTH_TIMEOUT: &str = "3s";
const OFFLINE: Duration = Duration::from_secs(30);
/// Cross-zone calls that must all answer during the cut, at each of two moments.
const CALLS: usize = 5;

/// TrafficPermissions on the global before the cut (`bulk-00`, ...), so that the full set
/// stands out from a catch-up.
const BULK: usize = 20;
/// While zone-1 is cut off, the global gets a new TrafficPermission and loses `bulk-00`.
const ADDED: &str = "added-during-the-cut";
const DELETED: &str = "bulk-00";
/// At most this many resources may be sent to zone-1 when it comes back: the two changes,
/// with room for a few that change by themselves (e.g. zone-2's ingress).
const CATCH_UP_MAX: f64 = 5.0;

/// The global notices a silent zone within 3 s (see docs/settings.md).
const GLOBAL_ENV: &[(&str, &str)] = &[
    (
        "KUMA_MULTIZONE_GLOBAL_KDS_ZONE_INSIGHT_FLUSH_INTERVAL",
        "300ms",
    ),
    (
        "KUMA_MULTIZONE_GLOBAL_KDS_ZONE_HEALTH_CHECK_POLL_INTERVAL",
        "300ms",
    ),
    (
        "KUMA_MULTIZONE_GLOBAL_KDS_ZONE_HEALTH_CHECK_TIMEOUT",
        HEALTH_TIMEOUT,
    ),
];

/// Zones reconnect quickly.
const ZONE_ENV: &[(&str, &str)] = &[
    ("KUMA_GENERAL_RESILIENT_COMPONENT_BASE_BACKOFF", "200ms"),
    ("KUMA_GENERAL_RESILIENT_COMPONENT_MAX_BACKOFF", "2s"),
];

#[tokio::test(flavor = "multi_thread")]
async fn e2e_containers_zone_cut_off_from_the_global_by_the_network() {
    let Some(docker) = docker_or_skip(IMAGES).await else {
        return;
    };
    removed_on_termination(zone_cut_off(docker)).await;
}

async fn zone_cut_off(docker: Docker) {
    let t0 = Instant::now();
    let step = |what: &str| println!("[{:>5.1}s] {what}", t0.elapsed().as_secs_f64());
    let lab = Mesh::start(DockerLab::new(docker)).await;
    step("lab up: both zones online, the cross-zone call answers");
    let http = &lab.http;
    let sent_to_zone_1 = async || {
        metric_at(
            http,
            &lab.global_metrics,
            "kds_resources_sent_total",
            &[("zone", "zone-1"), ("direction", "globalToZone")],
        )
        .await
        .ok_or_else(|| "no kds_resources_sent_total for zone-1 on the global".to_string())
    };
    let bulk: Vec<String> = (0..BULK).map(|i| format!("bulk-{i:02}")).collect();
    let yaml: Vec<String> = bulk.iter().map(|n| traffic_permission(n)).collect();
    lab.kumactl(
        &["apply", "-f", "/tmp/apply.yaml"],
        Some(&yaml.join("---\n")),
    )
    .await;
    for zone in ZONES {
        lab.wait_policies(zone, "the bulk TrafficPermissions", |names| {
            bulk.iter().all(|b| names.contains(b))
        })
        .await;
    }
    let full_set = eventually(SYNC, "the global's KDS counters", sent_to_zone_1).await;
    step(&format!(
        "{BULK} TrafficPermissions in both zones; {full_set} resources sent to zone-1 so far"
    ));

    // The cut: zone-1 leaves the network of the global; both keep running.
    lab.docker.disconnect("zone-1", &lab.kds).await;
    step("zone-1 disconnected from the kds network");

    // 1. The global marks zone-1 offline.
    eventually(OFFLINE, "zone-1 offline on the global", async || match lab
        .zone_online("zone-1")
        .await?
    {
        false => Ok(()),
        true => Err("still online".into()),
    })
    .await;
    step("1. the global shows zone-1 offline");
    assert!(
        lab.zone_online("zone-2")
            .await
            .expect("zones on the global"),
        "zone-2 went offline too"
    );
    // Nothing goes to zone-1 from now on: what is sent after the reconnection is the catch-up.
    let before = eventually(SYNC, "the global's KDS counters", sent_to_zone_1).await;

    // 2. zone-1 keeps serving its proxies; the cross-zone call needs no global.
    assert!(
        lab.sidecar_connected("zone-1", "frontend")
            .await
            .expect("dataplanes of zone-1"),
        "the frontend's sidecar lost zone-1"
    );
    lab.calls_answer("while zone-1 is cut off").await;
    step("2. zone-1 serves its proxies; the cross-zone call answers");

    // 3. Changes on the global meanwhile reach zone-2, not zone-1.
    lab.kumactl(
        &["apply", "-f", "/tmp/apply.yaml"],
        Some(&traffic_permission(ADDED)),
    )
    .await;
    lab.kumactl(
        &["delete", "traffic-permission", DELETED, "--mesh", "default"],
        None,
    )
    .await;
    let changed =
        |names: &[String]| names.iter().any(|n| n == ADDED) && !names.iter().any(|n| n == DELETED);
    lab.wait_policies("zone-2", "the changes", changed).await;
    let in_zone_1 = lab.policies("zone-1").await.expect("zone-1's API");
    assert!(
        !in_zone_1.iter().any(|n| n == ADDED) && in_zone_1.iter().any(|n| n == DELETED),
        "the cut-off zone-1 got a change of the global: {in_zone_1:?}"
    );
    assert!(
        !lab.zone_online("zone-1")
            .await
            .expect("zones on the global"),
        "zone-1 came back while cut off"
    );
    lab.calls_answer("after the change on the global").await;
    step("3. the changes reached zone-2, not zone-1; the call still answers");

    // 4. Reconnected: zone-1 catches up with only what changed.
    lab.docker.connect("zone-1", &lab.kds, &[]).await;
    step("zone-1 reconnected to the kds network");
    eventually(
        SYNC,
        "zone-1 online on the global again",
        async || match lab.zone_online("zone-1").await? {
            true => Ok(()),
            false => Err("still offline".into()),
        },
    )
    .await;
    step("4. zone-1 online again");
    lab.wait_policies("zone-1", "the changes", changed).await;
    step("4. the changes arrived in zone-1");
    let after = eventually(SYNC, "the global's KDS counters", sent_to_zone_1).await;
    let caught_up = after - before;
    step(&format!(
        "4. the catch-up sent zone-1 {caught_up} resources (counter {before} -> {after}; {full_set} before the cut)"
    ));
    assert!(
        (1.0..=CATCH_UP_MAX).contains(&caught_up),
        "the global sent zone-1 {caught_up} resources when it came back ({full_set} since its first connection); want the 2 changes, at most {CATCH_UP_MAX}"
    );
    assert_eq!(
        lab.policies("zone-1").await.expect("zone-1's API"),
        lab.policies("zone-2").await.expect("zone-2's API"),
        "zone-1 and zone-2 hold different TrafficPermissions after the catch-up"
    );
    lab.calls_answer("after the reconnection").await;
    step("4. the cross-zone call answers; done");
}

/// The lab of this test and how to reach it from the host.
struct Mesh {
    docker: DockerLab,
    http: reqwest::Client,
    kds: String,
    /// `http://<ip>:5681` of the global and of each zone (on `data`, which zones never leave).
    global_api: String,
    global_metrics: String,
    zone_api: [(String, String); 2],
}

impl Mesh {
    /// Starts everything as compose/docker-compose.yaml does and waits until both zones are
    /// online and the cross-zone call answers.
    async fn start(mut docker: DockerLab) -> Mesh {
        let kds = docker.network("kds").await;
        let data = docker.network("data").await;
        let global_work = docker.volume("global-work").await;
        let secrets = docker.volume("secrets").await;
        let scripts = lab_scripts();

        let mut global = docker
            .image("kuma-global")
            .with_network(&kds)
            // The global's KDS certificate names its host name; zones dial `global`.
            .with_hostname("global")
            .with_mount(Mount::volume_mount(&global_work, "/var/lib/kuma"))
            .with_health_check(health("http://127.0.0.1:5680/ready"))
            .with_host_config_modifier(no_ports);
        for (key, value) in GLOBAL_ENV {
            global = global.with_env_var(*key, *value);
        }
        docker.start("global", global).await;
        docker.wait_healthy("global", STARTUP).await;
        let global_id = docker.id("global");
        let global_ip = docker.ip("global", &kds).await.expect("the global on kds");

        // compose's `init`: the mTLS mesh, the KDS CA, zone and dataplane tokens.
        let init = docker
            .image("kumactl")
            .with_entrypoint("/bin/sh")
            .with_cmd(["/lab/scripts/init.sh"])
            .with_user("root")
            .with_mount(read_only(Mount::bind_mount(&scripts, "/lab/scripts")))
            .with_mount(read_only(Mount::volume_mount(&global_work, "/global")))
            .with_mount(Mount::volume_mount(&secrets, "/lab/secrets"));
        docker
            .run("init", in_netns_of(init, &global_id), STARTUP)
            .await;

        for zone in ZONES {
            let mut cp = docker
                .image("kuma-zone")
                .with_network(&kds)
                .with_hostname(zone)
                .with_env_var("KUMA_MULTIZONE_ZONE_NAME", zone)
                .with_env_var("KUMA_MULTIZONE_ZONE_GLOBAL_ADDRESS", "grpcs://global:5685")
                .with_env_var(
                    "KUMA_MULTIZONE_ZONE_KDS_ROOT_CA_FILE",
                    "/lab/secrets/kds-ca.crt",
                )
                .with_env_var(
                    "KUMA_MULTIZONE_ZONE_KDS_AUTH_TOKEN_PATH",
                    format!("/lab/secrets/{zone}.token"),
                )
                // No alias can be given on the first network: the global by address.
                .with_host("global", testcontainers::core::Host::Addr(global_ip))
                .with_mount(read_only(Mount::volume_mount(&secrets, "/lab/secrets")))
                .with_health_check(health("http://127.0.0.1:5680/ready"))
                .with_host_config_modifier(no_ports);
            for (key, value) in ZONE_ENV {
                cp = cp.with_env_var(*key, *value);
            }
            docker.start(zone, cp).await;
            // The proxies find their zone control plane by its name on `data`.
            docker.connect(zone, &data, &[zone]).await;
        }
        for zone in ZONES {
            docker.wait_healthy(zone, STARTUP).await;
        }

        let mut zone_api = Vec::new();
        for zone in ZONES {
            let ip = docker.ip(zone, &data).await.expect("zone on data");
            zone_api.push((zone.to_string(), api(ip, 5681)));
        }
        let zone_api: [(String, String); 2] = zone_api.try_into().expect("two zones");
        let mut mesh = Mesh {
            docker,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("an HTTP client"),
            kds,
            global_api: api(global_ip, 5681),
            global_metrics: format!("{}/metrics", api(global_ip, 5680)),
            zone_api,
        };
        for zone in ZONES {
            eventually(
                SYNC,
                &format!("{zone} online on the global"),
                async || match mesh.zone_online(zone).await? {
                    true => Ok(()),
                    false => Err("not online".into()),
                },
            )
            .await;
        }
        mesh.start_proxies(&data, &secrets, &scripts).await;
        eventually(SYNC, "the cross-zone call", async || mesh.call().await).await;
        mesh
    }

    /// compose's ingresses, demo apps and their sidecars; waits until all are healthy.
    async fn start_proxies(&mut self, data: &str, secrets: &str, scripts: &str) {
        let docker = &mut self.docker;
        // lab/proxy.sh runs kuma-dp against the zone control plane $ZONE_CP.
        let proxy = |docker: &DockerLab, zone: &str, args: Vec<String>| {
            docker
                .image("kuma-dp")
                .with_entrypoint("/bin/sh")
                .with_cmd(std::iter::once("/lab/scripts/proxy.sh".to_string()).chain(args))
                .with_env_var("ZONE_CP", zone)
                .with_mount(read_only(Mount::bind_mount(scripts, "/lab/scripts")))
                .with_mount(read_only(Mount::volume_mount(secrets, "/lab/secrets")))
                .with_health_check(health("http://127.0.0.1:9901/ready"))
        };
        let mut started = Vec::new();
        for zone in ZONES {
            let name = format!("{zone}-ingress");
            let args = vec![
                "--proxy-type=ingress".to_string(),
                format!("--dataplane-token-file=/lab/secrets/ingress-{zone}.token"),
                "--dataplane-file=/lab/scripts/ingress.yaml".to_string(),
                format!("--dataplane-var=name={name}"),
            ];
            let ingress = proxy(docker, zone, args)
                .with_network(data)
                .with_host_config_modifier(no_ports);
            docker.start(&name, ingress).await;
            started.push(name);
        }
        // Each app and its sidecar share one network namespace, like a pod.
        for (app, zone) in [("frontend", "zone-1"), ("backend", "zone-2")] {
            let image = docker
                .image("demo-app")
                .with_network(data)
                .with_env_var("DEMO_APP_NAME", app)
                .with_env_var("DEMO_APP_ZONE", zone)
                .with_env_var("DEMO_APP_LISTEN", "127.0.0.1:8080")
                .with_health_check(health("http://127.0.0.1:8080/"))
                // docker's init as PID 1 passes SIGTERM on (demo-app sets no handler).
                .with_host_config_modifier(|h| {
                    no_ports(h);
                    h.init = Some(true);
                });
            docker.start(app, image).await;
            let args = vec![
                format!("--dataplane-token-file=/lab/secrets/{app}.token"),
                format!("--dataplane-file=/lab/scripts/{app}.yaml"),
            ];
            let sidecar = in_netns_of(proxy(docker, zone, args), &docker.id(app));
            let name = format!("{app}-sidecar");
            docker.start(&name, sidecar).await;
            started.push(app.to_string());
            started.push(name);
        }
        for name in &started {
            docker.wait_healthy(name, STARTUP).await;
        }
    }

    /// Whether the global shows `zone` online: a subscription without a disconnect time.
    async fn zone_online(&self, zone: &str) -> Result<bool, String> {
        let url = format!("{}/zones+insights", self.global_api);
        let list = get_json(&self.http, &url).await?;
        let item = list["items"]
            .as_array()
            .and_then(|items| items.iter().find(|i| i["name"] == zone))
            .ok_or_else(|| format!("the global lists no zone {zone}"))?;
        Ok(connected(&item["zoneInsight"]))
    }

    /// Whether `zone` shows the dataplane `name` connected to it.
    async fn sidecar_connected(&self, zone: &str, name: &str) -> Result<bool, String> {
        let url = format!(
            "{}/meshes/default/dataplanes+insights/{name}",
            self.zone_url(zone)
        );
        let item = get_json(&self.http, &url).await?;
        Ok(connected(&item["dataplaneInsight"]))
    }

    /// The TrafficPermissions of the default mesh in `zone`, by their name on the global.
    async fn policies(&self, zone: &str) -> Result<Vec<String>, String> {
        let url = format!(
            "{}/meshes/default/traffic-permissions?size=1000",
            self.zone_url(zone)
        );
        let list = get_json(&self.http, &url).await?;
        let mut names: Vec<String> = list["items"]
            .as_array()
            .ok_or_else(|| format!("GET {url}: no items: {list}"))?
            .iter()
            .map(|item| {
                let display = &item["labels"]["kuma.io/display-name"];
                display
                    .as_str()
                    .or(item["name"].as_str())
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        names.sort();
        Ok(names)
    }

    fn zone_url(&self, zone: &str) -> &str {
        self.zone_api
            .iter()
            .find(|(z, _)| z == zone)
            .map(|(_, url)| url.as_str())
            .unwrap_or_else(|| panic!("no zone {zone}"))
    }

    /// The cross-zone call from the frontend (zone-1) to `backend` (zone-2 only).
    async fn call(&self) -> Result<(), String> {
        let out = self
            .docker
            .exec(
                "frontend",
                &["curl", "-sS", "-m", "5", "http://127.0.0.1:10002/"],
            )
            .await?;
        match out.lines().next() {
            Some("hello from backend in zone-2") => Ok(()),
            _ => Err(format!("the cross-zone call answered {out:?}")),
        }
    }

    /// [`CALLS`] cross-zone calls in a row, each answered from zone-2.
    async fn calls_answer(&self, when: &str) {
        for i in 1..=CALLS {
            if let Err(e) = self.call().await {
                panic!("cross-zone call {i} of {CALLS} {when}: {e}");
            }
        }
    }

    /// Waits until the TrafficPermissions of `zone` pass `check`.
    async fn wait_policies(&self, zone: &str, what: &str, check: impl Fn(&[String]) -> bool) {
        eventually(SYNC, &format!("{what} in {zone}"), async || {
            let names = self.policies(zone).await?;
            match check(&names) {
                true => Ok(()),
                false => Err(format!("TrafficPermissions: {names:?}")),
            }
        })
        .await;
    }

    /// `kumactl ARGS` as the global's admin (in its network namespace), with `yaml` in
    /// /tmp/apply.yaml when given.
    async fn kumactl(&self, args: &[&str], yaml: Option<&str>) {
        let mut kumactl = self.docker.image("kumactl").with_cmd(args.iter().copied());
        if let Some(yaml) = yaml {
            kumactl = kumactl.with_copy_to("/tmp/apply.yaml", yaml.as_bytes().to_vec());
        }
        let kumactl = in_netns_of(kumactl, &self.docker.id("global"));
        self.docker.run("kumactl", kumactl, STARTUP).await;
    }
}

/// A KDS or xDS insight shows a subscription that is connected and not disconnected.
fn connected(insight: &Value) -> bool {
    insight["subscriptions"].as_array().is_some_and(|subs| {
        subs.iter()
            .any(|s| s.get("connectTime").is_some() && s.get("disconnectTime").is_none())
    })
}

fn traffic_permission(name: &str) -> String {
    format!(
        "type: TrafficPermission
mesh: default
name: {name}
sources:
  - match:
      kuma.io/service: frontend
destinations:
  - match:
      kuma.io/service: backend
"
    )
}

/// GET `url` as JSON; 404 is an error too.
async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    get_json_opt(http, url)
        .await?
        .ok_or_else(|| format!("GET {url}: 404"))
}

fn api(ip: IpAddr, port: u16) -> String {
    format!("http://{ip}:{port}")
}

/// compose/lab, mounted into the containers as compose mounts it.
fn lab_scripts() -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../compose/lab");
    let dir = dir
        .canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir.to_string_lossy().into_owned()
}

fn read_only(mount: Mount) -> Mount {
    mount.with_access_mode(AccessMode::ReadOnly)
}

/// A health check running `curl` on `url` inside the container, every second.
fn health(url: &str) -> Healthcheck {
    Healthcheck::cmd(["curl", "-fsS", "-o", "/dev/null", url])
        .with_interval(Duration::from_secs(1))
        .with_timeout(Duration::from_secs(5))
        .with_retries(3)
}

/// Publishes nothing on the host (testcontainers publishes every exposed port by default).
fn no_ports(host: &mut HostConfig) {
    host.publish_all_ports = Some(false);
    host.port_bindings = None;
}

/// `request` in the network namespace of container `id`, like compose's
/// `network_mode: service:...` (testcontainers' `with_network` would try to create a network).
fn in_netns_of(
    request: ContainerRequest<GenericImage>,
    id: &str,
) -> ContainerRequest<GenericImage> {
    let mode = format!("container:{id}");
    request.with_host_config_modifier(move |h| {
        no_ports(h);
        h.network_mode = Some(mode.clone());
    })
}
