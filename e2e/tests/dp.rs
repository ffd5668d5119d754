//! `kuma-dp` against a standalone `kuma-zone` with a real Envoy: an inline Dataplane
//! template and a token from `kumactl generate dataplane-token` bootstrap Envoy, which serves a
//! request through its inbound listener; a SIGKILLed Envoy is restarted; SIGTERM drains and
//! stops Envoy and exits 0; a wrong token, a missing Envoy and an unreachable control plane
//! end kuma-dp with a clear error.
//!
//! Needs `ENVOY_BINARY` (exported by `cargo xtask test`; `cargo xtask envoy` prints a path);
//! without it the tests fail, never skip. Build the binaries first:
//! `cargo build -p zone -p ctl -p dp`.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::dp::{KumaDp, alive, envoy_binary, get_body, http_server, signal};
use support::{Federation, eventually, free_port};

const ZONE: &str = "zone-1";

/// A Dataplane template: the name and ports come from `--dataplane-var`.
const DATAPLANE: &str = "type: Dataplane
mesh: default
name: {{ name }}
networking:
  address: 127.0.0.1
  inbound:
    - port: {{ inbound }}
      servicePort: {{ app }}
      tags:
        kuma.io/service: web
        kuma.io/protocol: http
";

/// A standalone zone whose bootstrap server is on the returned port.
async fn zone() -> (Federation, u16) {
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
    (zone, bootstrap_port)
}

/// A dataplane token for `default/name`, written to `<dir>/<name>.token`.
fn token_file(zone: &Federation, dir: &Path, name: &str) -> (PathBuf, String) {
    let token = zone
        .kumactl(
            ZONE,
            &[
                "generate",
                "dataplane-token",
                "--name",
                name,
                "--mesh",
                "default",
                "--valid-for",
                "1h",
            ],
        )
        .ok()
        .trim()
        .to_string();
    assert!(!token.is_empty(), "kumactl printed no token");
    let path = dir.join(format!("{name}.token"));
    std::fs::write(&path, &token).expect("write the token");
    (path, token)
}

fn template_file(dir: &Path) -> PathBuf {
    let path = dir.join("dataplane.yaml");
    std::fs::write(&path, DATAPLANE).expect("write the dataplane template");
    path
}

async fn serves(port: u16, what: &str) {
    eventually(Duration::from_secs(60), what, async || get_body(port).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn e2e_kuma_dp_runs_restarts_and_drains_envoy() {
    let envoy = envoy_binary();
    let (zone, bootstrap_port) = zone().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (token, _) = token_file(&zone, dir.path(), "web-1");
    let template = template_file(dir.path());
    let app = http_server().await;
    let inbound = free_port();
    let admin = free_port();
    let cp = format!("http://127.0.0.1:{bootstrap_port}");
    let (app, admin) = (app.to_string(), admin.to_string());
    let work = dir.path().join("work");
    let mut dp = KumaDp::start(
        dir.path(),
        &[
            "run",
            "--cp-address",
            &cp,
            "--dataplane-token-file",
            token.to_str().expect("UTF-8 path"),
            "--dataplane-file",
            template.to_str().expect("UTF-8 path"),
            "-v",
            "name=web-1",
            "--dataplane-var",
            &format!("inbound={inbound}"),
            "-v",
            &format!("app={app}"),
            "--admin-port",
            &admin,
            "--work-dir",
            work.to_str().expect("UTF-8 path"),
            "--drain-time",
            "10s",
        ],
        &[("ENVOY_BINARY", envoy.as_str())],
    );

    // (1) The inline Dataplane is registered and Envoy serves through its inbound listener.
    serves(inbound, "a 200 through Envoy's inbound listener").await;
    let registered = zone
        .get(ZONE, "/meshes/default/dataplanes/web-1")
        .await
        .expect("GET the dataplane");
    assert!(registered.is_some(), "web-1 is not registered");
    let bootstrap = work.join("bootstrap.yaml");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&bootstrap)
            .expect("the bootstrap file")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the bootstrap holds the token");
    assert!(dp.stderr().contains("[envoy] "), "{}", dp.logs());
    let pids = dp.envoy_pids();
    assert_eq!(pids.len(), 1, "{}", dp.logs());
    let first = pids[0];

    // (3) Envoy killed with SIGKILL is restarted and serves again.
    signal(first, "KILL");
    eventually(
        Duration::from_secs(30),
        "a second Envoy",
        async || match dp.envoy_pids().get(1) {
            Some(&pid) => Ok(pid),
            None => Err(dp.stdout()),
        },
    )
    .await;
    assert!(
        dp.stdout()
            .contains("Envoy exited unexpectedly with signal SIGKILL"),
        "{}",
        dp.logs()
    );
    serves(inbound, "a 200 through the restarted Envoy").await;
    let second = dp.envoy_pids()[1];
    assert_ne!(first, second);
    assert!(dp.try_status().is_none(), "kuma-dp exited: {}", dp.logs());

    // (2) SIGTERM: kuma-dp drains, stops Envoy and exits 0.
    signal(dp.pid(), "TERM");
    let status = dp.wait_exit(Duration::from_secs(60)).await;
    assert!(
        status.success(),
        "kuma-dp exited with {status}\n{}",
        dp.logs()
    );
    eventually(
        Duration::from_secs(10),
        "Envoy gone",
        async || match alive(second) {
            true => Err(format!("Envoy {second} is still running")),
            false => Ok(()),
        },
    )
    .await;
    let out = dp.stdout();
    assert!(out.contains("draining Envoy's inbound listeners"), "{out}");
    assert!(out.contains("Envoy stopped"), "{out}");
    assert!(
        !bootstrap.exists(),
        "the bootstrap (with the token) was left behind"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn e2e_kuma_dp_with_a_wrong_token_exits_with_the_reason() {
    let envoy = envoy_binary();
    let (zone, bootstrap_port) = zone().await;
    let dir = tempfile::tempdir().expect("temp dir");
    // A valid token, but for another proxy.
    let (token, token_text) = token_file(&zone, dir.path(), "web-2");
    let template = template_file(dir.path());
    let cp = format!("http://127.0.0.1:{bootstrap_port}");
    let mut dp = KumaDp::start(
        dir.path(),
        &[
            "run",
            "--cp-address",
            &cp,
            "--dataplane-token-file",
            token.to_str().expect("UTF-8 path"),
            "-d",
            template.to_str().expect("UTF-8 path"),
            "-v",
            "name=web-1",
            "-v",
            "inbound=20001",
            "-v",
            "app=20002",
        ],
        &[("ENVOY_BINARY", envoy.as_str())],
    );
    let status = dp.wait_exit(Duration::from_secs(60)).await;
    assert!(!status.success(), "{}", dp.logs());
    let stderr = dp.stderr();
    assert!(
        stderr.contains(&format!(
            "the control plane at {cp}/bootstrap refused the bootstrap (403)"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("is for proxy \"web-2\", not \"web-1\""),
        "{stderr}"
    );
    assert!(dp.envoy_pids().is_empty(), "{}", dp.logs());
    assert!(!dp.logs().contains(&token_text), "the token leaked");
}

#[tokio::test(flavor = "multi_thread")]
async fn e2e_kuma_dp_reports_a_missing_envoy_and_an_unreachable_control_plane() {
    let envoy = envoy_binary();
    let dir = tempfile::tempdir().expect("temp dir");
    let template = template_file(dir.path());
    let template = template.to_str().expect("UTF-8 path");
    let vars = ["-v", "name=web-1", "-v", "inbound=20001", "-v", "app=20002"];
    // Nothing listens here.
    let cp = format!("http://127.0.0.1:{}", free_port());

    let mut args = vec!["run", "--cp-address", &cp, "-d", template];
    args.extend(vars);
    let missing = dir.path().join("no-such-envoy");
    let mut with_missing = args.clone();
    with_missing.extend(["--binary-path", missing.to_str().expect("UTF-8 path")]);
    let mut dp = KumaDp::start(dir.path(), &with_missing, &[]);
    let status = dp.wait_exit(Duration::from_secs(30)).await;
    assert!(!status.success(), "{}", dp.logs());
    let stderr = dp.stderr();
    assert!(
        stderr.contains(&format!("Envoy binary {}: ", missing.display())),
        "{stderr}"
    );
    drop(dp);

    let mut dp = KumaDp::start(
        dir.path(),
        &args,
        &[
            ("ENVOY_BINARY", envoy.as_str()),
            ("KUMA_CONTROL_PLANE_RETRY_BACKOFF", "100ms"),
            ("KUMA_CONTROL_PLANE_RETRY_MAX_DURATION", "1s"),
        ],
    );
    let status = dp.wait_exit(Duration::from_secs(60)).await;
    assert!(!status.success(), "{}", dp.logs());
    let stderr = dp.stderr();
    assert!(
        stderr.contains(&format!(
            "no bootstrap from the control plane at {cp}/bootstrap within 1s"
        )),
        "{stderr}"
    );
    assert!(stderr.to_lowercase().contains("connect"), "{stderr}");
    assert!(dp.envoy_pids().is_empty(), "{}", dp.logs());
}
