//! A standalone `kuma-zone` serving a real Envoy: a Dataplane applied with `kumactl`, its
//! token from `kumactl generate dataplane-token`, the Envoy bootstrap from `POST /bootstrap`,
//! and a request through Envoy's inbound listener reaching a test HTTP server.
//!
//! Needs `ENVOY_BINARY` (exported by `cargo xtask test`; `cargo xtask envoy` prints a path).
//! Without it the test fails: it never skips silently. Build the binaries first:
//! `cargo build -p zone -p ctl`.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::dp::{envoy_binary, get_body, http_server};
use support::{Federation, eventually, free_port};

const ZONE: &str = "zone-1";

/// Envoy, killed on drop.
struct Envoy {
    child: Child,
    log: std::path::PathBuf,
}

impl Envoy {
    fn start(config: &Path, base_id: u32, log: std::path::PathBuf) -> Envoy {
        let binary = envoy_binary();
        let child = Command::new(&binary)
            .arg("-c")
            .arg(config)
            .args(["--base-id", &base_id.to_string()])
            .args(["--log-level", "info", "--log-path"])
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting Envoy ({binary}): {e}"));
        Envoy { child, log }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- Envoy log (tail)\n{}", self.log_tail());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn post_bootstrap(port: u16, body: serde_json::Value) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/bootstrap"))
        .json(&body)
        .send()
        .await
        .expect("POST /bootstrap");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn e2e_envoy_serves_a_dataplane_of_a_standalone_zone() {
    // Fail before starting anything when Envoy is missing.
    let _ = envoy_binary();
    let xds_port = free_port();
    let bootstrap_port = free_port();
    let zone = Federation::start_standalone(
        ZONE,
        vec![
            ("KUMA_XDS_SERVER_GRPC_PORT".into(), xds_port.to_string()),
            (
                "KUMA_BOOTSTRAP_SERVER_PORT".into(),
                bootstrap_port.to_string(),
            ),
        ],
    )
    .await;

    let app_port = http_server().await;
    let inbound_port = free_port();
    zone.apply(
        ZONE,
        &format!(
            "type: Dataplane
mesh: default
name: web-1
networking:
  address: 127.0.0.1
  inbound:
    - port: {inbound_port}
      servicePort: {app_port}
      tags:
        kuma.io/service: web
        kuma.io/protocol: http
"
        ),
    );
    let token = zone
        .kumactl(
            ZONE,
            &[
                "generate",
                "dataplane-token",
                "--name",
                "web-1",
                "--mesh",
                "default",
                "--valid-for",
                "1h",
            ],
        )
        .ok()
        .trim()
        .to_string();

    // A wrong token is refused.
    let (status, body) = post_bootstrap(
        bootstrap_port,
        serde_json::json!({"mesh": "default", "name": "web-1", "dataplaneToken": "not-a-token"}),
    )
    .await;
    assert!(
        status == 401 || status == 403,
        "a wrong token got {status}: {body}"
    );

    let admin_port = free_port();
    let (status, bootstrap) = post_bootstrap(
        bootstrap_port,
        serde_json::json!({
            "mesh": "default",
            "name": "web-1",
            "dataplaneToken": token,
            "adminPort": admin_port,
        }),
    )
    .await;
    assert_eq!(status, 200, "POST /bootstrap: {bootstrap}");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("envoy.json");
    std::fs::write(&config, &bootstrap).expect("write the bootstrap");
    let envoy = Envoy::start(
        &config,
        u32::from(admin_port) + 200_000,
        dir.path().join("envoy.log"),
    );

    eventually(
        Duration::from_secs(60),
        "a 200 from the test server through Envoy's inbound listener",
        async || get_body(inbound_port).await,
    )
    .await;
    drop(envoy);
}

/// The same over delta ADS (`feature-delta-grpc`), for a Dataplane that comes inline with the
/// bootstrap request and a token from the zone's admin port: Envoy serves the inbound, its
/// DataplaneInsight shows it online with its Envoy version, and once Envoy is gone the inline
/// Dataplane is deregistered.
#[tokio::test(flavor = "multi_thread")]
async fn e2e_envoy_over_delta_ads_with_an_inline_dataplane() {
    let _ = envoy_binary();
    let bootstrap_port = free_port();
    let admin_api_port = free_port();
    let zone = Federation::start_standalone(
        ZONE,
        vec![
            (
                "KUMA_BOOTSTRAP_SERVER_PORT".into(),
                bootstrap_port.to_string(),
            ),
            (
                "KUMA_ADMIN_SERVER_LOCAL_PORT".into(),
                admin_api_port.to_string(),
            ),
            (
                "KUMA_XDS_DATAPLANE_DEREGISTRATION_DELAY".into(),
                "1s".into(),
            ),
        ],
    )
    .await;
    let token = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{admin_api_port}/tokens/dataplane"
        ))
        .json(&serde_json::json!({"name": "web-2", "mesh": "default", "validFor": "1h"}))
        .send()
        .await
        .expect("POST /tokens/dataplane on the admin port")
        .text()
        .await
        .expect("the token");

    let app_port = http_server().await;
    let inbound_port = free_port();
    let admin_port = free_port();
    let (status, bootstrap) = post_bootstrap(
        bootstrap_port,
        serde_json::json!({
            "mesh": "default",
            "name": "web-2",
            "dataplaneToken": token.trim(),
            "adminPort": admin_port,
            "features": ["feature-delta-grpc"],
            "dataplaneResource": format!(
                "type: Dataplane
mesh: default
name: web-2
networking:
  address: 127.0.0.1
  inbound:
    - port: {inbound_port}
      servicePort: {app_port}
      tags:
        kuma.io/service: web
        kuma.io/protocol: http
"
            ),
        }),
    )
    .await;
    assert_eq!(status, 200, "POST /bootstrap: {bootstrap}");
    assert!(bootstrap.contains("DELTA_GRPC"), "{bootstrap}");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("envoy.json");
    std::fs::write(&config, &bootstrap).expect("write the bootstrap");
    let envoy = Envoy::start(
        &config,
        u32::from(admin_port) + 200_000,
        dir.path().join("envoy.log"),
    );

    eventually(
        Duration::from_secs(60),
        "a 200 through Envoy configured over delta ADS",
        async || get_body(inbound_port).await,
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "web-2 online with its Envoy version",
        async || {
            let overview = zone
                .get(ZONE, "/meshes/default/dataplanes+insights/web-2")
                .await?
                .ok_or("no overview")?;
            let last = overview
                .pointer("/dataplaneInsight/subscriptions")
                .and_then(serde_json::Value::as_array)
                .and_then(|s| s.last())
                .cloned()
                .unwrap_or_default();
            let envoy = last
                .pointer("/version/envoy/version")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default();
            if last.get("disconnectTime").is_none() && envoy.starts_with("1.") {
                Ok(())
            } else {
                Err(overview.to_string())
            }
        },
    )
    .await;

    drop(envoy);
    eventually(
        Duration::from_secs(30),
        "the inline web-2 deregistered after Envoy left",
        async || match zone.get(ZONE, "/meshes/default/dataplanes/web-2").await? {
            None => Ok(()),
            Some(dp) => Err(dp.to_string()),
        },
    )
    .await;
}
