//! Envoy under kuma-dp: finding the binary, writing the bootstrap (mode 0600: it holds the
//! token), running Envoy with its output passed through behind `[envoy] `, restarting it
//! with backoff when it dies, and draining then stopping it on shutdown.
//!
//! Envoy runs in its own process group, so a Ctrl-C in a terminal reaches only kuma-dp, which
//! drains Envoy before stopping it. Signals are sent with `nix` (no unsafe code).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cli::EnvoyLogLevel;

/// The bootstrap file's name in the work dir.
pub const BOOTSTRAP_FILE: &str = "bootstrap.yaml";
/// The prefix of every line Envoy prints.
pub const OUTPUT_PREFIX: &str = "[envoy] ";

/// Why Envoy cannot run (or stopped for good).
#[derive(Debug, thiserror::Error)]
pub enum EnvoyError {
    #[error("Envoy binary {path}: {message}")]
    Binary { path: String, message: String },
    #[error(
        "Envoy binary not found: no --binary-path, no ENVOY_BINARY and no `envoy` in PATH ({path})"
    )]
    NotOnPath { path: String },
    #[error("writing the Envoy bootstrap {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("starting Envoy ({path}): {source}")]
    Spawn {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("waiting for Envoy: {0}")]
    Wait(#[source] std::io::Error),
    #[error(
        "Envoy keeps failing: {failures} exits within {quick} of starting, the last {status}; giving up"
    )]
    CrashLoop {
        failures: u32,
        quick: String,
        status: String,
    },
}

/// The Envoy binary: `--binary-path`, else `ENVOY_BINARY`, else `envoy` in `PATH`. It must be
/// an executable file.
pub fn find_binary(
    flag: Option<&Path>,
    envoy_binary: Option<OsString>,
    path_var: Option<OsString>,
) -> Result<PathBuf, EnvoyError> {
    let given = flag
        .map(Path::to_path_buf)
        .or_else(|| envoy_binary.filter(|v| !v.is_empty()).map(PathBuf::from));
    if let Some(path) = given {
        check_executable(&path)?;
        return Ok(path);
    }
    let path_var = path_var.unwrap_or_default();
    for dir in std::env::split_paths(&path_var) {
        let candidate = dir.join("envoy");
        if check_executable(&candidate).is_ok() {
            return Ok(candidate);
        }
    }
    Err(EnvoyError::NotOnPath {
        path: path_var.to_string_lossy().into_owned(),
    })
}

fn check_executable(path: &Path) -> Result<(), EnvoyError> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |message: String| EnvoyError::Binary {
        path: path.display().to_string(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() {
        return Err(fail("not a file".to_string()));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(fail("not executable".to_string()));
    }
    Ok(())
}

/// `envoy --version`: the version (`1.40.0`) and the whole build string.
pub async fn version(binary: &Path) -> Result<(String, String), EnvoyError> {
    let fail = |message: String| EnvoyError::Binary {
        path: binary.display().to_string(),
        message,
    };
    let output = Command::new(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| fail(format!("running --version: {e}")))?;
    if !output.status.success() {
        return Err(fail(format!("--version exited with {}", output.status)));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    parse_version(&text).ok_or_else(|| fail(format!("unexpected --version output {text:?}")))
}

/// `envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL` → (`1.40.0`, `<sha>/1.40.0/...`).
fn parse_version(text: &str) -> Option<(String, String)> {
    let build = text.split("version:").nth(1)?.trim().to_string();
    let version = build.split('/').nth(1)?.to_string();
    (!version.is_empty()).then_some((version, build))
}

/// Writes `yaml` to `<work_dir>/bootstrap.yaml`, readable by the owner only.
pub fn write_bootstrap(work_dir: &Path, yaml: &str) -> Result<PathBuf, EnvoyError> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let path = work_dir.join(BOOTSTRAP_FILE);
    let fail = |source| EnvoyError::Write {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(work_dir).map_err(fail)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(fail)?;
    // An existing file keeps its mode on open: tighten it.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(fail)?;
    file.write_all(yaml.as_bytes()).map_err(fail)?;
    Ok(path)
}

/// The admin address in the bootstrap (`admin.address.socketAddress` or its snake_case
/// spelling), `None` when it has none (e.g. a unix socket).
pub fn admin_address(yaml: &str) -> Option<SocketAddr> {
    let value: serde_json::Value = serde_yaml_ng::from_str(yaml).ok()?;
    let address = value.get("admin")?.get("address")?;
    let socket = address
        .get("socketAddress")
        .or_else(|| address.get("socket_address"))?;
    let ip = socket.get("address")?.as_str()?;
    let port = socket
        .get("portValue")
        .or_else(|| socket.get("port_value"))?;
    let port = match port {
        serde_json::Value::Number(n) => u16::try_from(n.as_u64()?).ok()?,
        serde_json::Value::String(s) => s.parse().ok()?,
        _ => return None,
    };
    let ip: std::net::IpAddr = ip.parse().ok()?;
    Some(SocketAddr::new(ip, port))
}

/// When to stop restarting a crashing Envoy.
#[derive(Debug, Clone)]
pub struct RestartPolicy {
    /// First wait before a restart (then doubling up to `max_delay`).
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// A run shorter than this is a quick failure.
    pub quick: Duration,
    /// Quick failures in a row that end kuma-dp.
    pub max_quick_failures: u32,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(15),
            quick: Duration::from_secs(30),
            max_quick_failures: 5,
        }
    }
}

/// How to run Envoy.
#[derive(Debug, Clone)]
pub struct EnvoySettings {
    pub binary: PathBuf,
    pub config: PathBuf,
    pub log_level: EnvoyLogLevel,
    pub concurrency: Option<u32>,
    pub drain_time: Duration,
    /// Envoy's admin address, for draining; `None`: stop without draining.
    pub admin: Option<SocketAddr>,
    pub restart: RestartPolicy,
    /// How long Envoy may take to exit after SIGTERM before it gets SIGKILL.
    pub stop_grace: Duration,
}

impl EnvoySettings {
    /// Envoy's arguments.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "-c".to_string(),
            self.config.display().to_string(),
            "--disable-hot-restart".to_string(),
            "--log-level".to_string(),
            self.log_level.as_str().to_string(),
            "--drain-time-s".to_string(),
            self.drain_time.as_secs().max(1).to_string(),
        ];
        if let Some(concurrency) = self.concurrency {
            args.push("--concurrency".to_string());
            args.push(concurrency.to_string());
        }
        args
    }
}

/// Copies each line of `from` to stdout (`to_stderr` false) or stderr with the prefix.
fn pass_through(from: impl AsyncRead + Unpin + Send + 'static, to_stderr: bool) {
    tokio::spawn(async move {
        let mut reader = BufReader::new(from);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    let text = text.trim_end_matches(['\n', '\r']);
                    if to_stderr {
                        eprintln!("{OUTPUT_PREFIX}{text}");
                    } else {
                        println!("{OUTPUT_PREFIX}{text}");
                    }
                }
            }
        }
    });
}

fn spawn(settings: &EnvoySettings) -> Result<Child, EnvoyError> {
    let mut child = Command::new(&settings.binary)
        .args(settings.args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| EnvoyError::Spawn {
            path: settings.binary.display().to_string(),
            source,
        })?;
    if let Some(out) = child.stdout.take() {
        pass_through(out, false);
    }
    if let Some(err) = child.stderr.take() {
        pass_through(err, true);
    }
    Ok(child)
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => match Signal::try_from(signal) {
            Ok(s) => format!("signal {s}"),
            Err(_) => format!("signal {signal}"),
        },
        _ => status.to_string(),
    }
}

/// Runs Envoy until `shutdown` is cancelled (then drains and stops it: `Ok`), restarting it
/// when it exits; too many quick exits in a row is an error.
pub async fn supervise(
    settings: &EnvoySettings,
    shutdown: &CancellationToken,
) -> Result<(), EnvoyError> {
    let policy = &settings.restart;
    let new_delays = || {
        ExponentialBuilder::default()
            .with_min_delay(policy.min_delay)
            .with_max_delay(policy.max_delay.max(policy.min_delay))
            .with_jitter()
            .without_max_times()
            .build()
    };
    let mut delays = new_delays();
    let mut quick_failures = 0;
    loop {
        let mut child = spawn(settings)?;
        let started = Instant::now();
        let pid = child.id();
        tracing::info!(pid, config = %settings.config.display(), "Envoy started");
        let status = tokio::select! {
            status = child.wait() => status.map_err(EnvoyError::Wait)?,
            () = shutdown.cancelled() => {
                drain(settings).await;
                stop(&mut child, settings.stop_grace).await?;
                return Ok(());
            }
        };
        let ran = started.elapsed();
        let status = describe(status);
        if ran < policy.quick {
            quick_failures += 1;
        } else {
            // A long run: the crash loop, if any, is over.
            quick_failures = 0;
            delays = new_delays();
        }
        if quick_failures >= policy.max_quick_failures {
            return Err(EnvoyError::CrashLoop {
                failures: quick_failures,
                quick: humantime::format_duration(policy.quick).to_string(),
                status,
            });
        }
        let delay = delays.next().unwrap_or(policy.max_delay);
        tracing::warn!(
            pid,
            ran = ?ran,
            restart_in = ?delay,
            quick_failures,
            "Envoy exited unexpectedly with {status}; restarting it"
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.cancelled() => return Ok(()),
        }
    }
}

/// Asks Envoy to drain its inbound listeners, then waits until no listener has an active
/// connection or the drain time is over. Failures are logged: stopping goes on.
async fn drain(settings: &EnvoySettings) {
    let Some(admin) = settings.admin else {
        tracing::info!("no Envoy admin address in the bootstrap: stopping without draining");
        return;
    };
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
    {
        Ok(http) => http,
        Err(e) => {
            tracing::warn!("draining Envoy: HTTP client: {e}");
            return;
        }
    };
    let base = format!("http://{admin}");
    let drain_url = format!("{base}/drain_listeners?graceful&inboundonly");
    match http.post(&drain_url).send().await {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => {
            tracing::warn!(status = %r.status(), "draining Envoy: {drain_url} refused");
            return;
        }
        Err(e) => {
            tracing::warn!("draining Envoy: {drain_url}: {e}");
            return;
        }
    }
    tracing::info!(drain_time = ?settings.drain_time, "draining Envoy's inbound listeners");
    let deadline = Instant::now() + settings.drain_time;
    let stats_url = format!("{base}/stats?filter=^listener\\..*\\.downstream_cx_active$");
    loop {
        let active = match http.get(&stats_url).send().await {
            Ok(r) => match r.text().await {
                Ok(text) => active_connections(&text),
                Err(e) => {
                    tracing::warn!("draining Envoy: {stats_url}: {e}");
                    return;
                }
            },
            Err(e) => {
                tracing::warn!("draining Envoy: {stats_url}: {e}");
                return;
            }
        };
        if active == 0 {
            tracing::info!("Envoy drained: no active connections");
            return;
        }
        if Instant::now() >= deadline {
            tracing::info!(
                active,
                "drain time over; stopping Envoy with connections open"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The sum of `listener.<name>.downstream_cx_active` over every listener but the admin's.
fn active_connections(stats: &str) -> u64 {
    stats
        .lines()
        .filter_map(|line| line.split_once(": "))
        .filter(|(name, _)| {
            name.starts_with("listener.")
                && name.ends_with(".downstream_cx_active")
                && !name.starts_with("listener.admin.")
        })
        .filter_map(|(_, value)| value.trim().parse::<u64>().ok())
        .sum()
}

/// SIGTERM, then SIGKILL after `grace`; reaps the child.
async fn stop(child: &mut Child, grace: Duration) -> Result<(), EnvoyError> {
    let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) else {
        // Already reaped.
        return Ok(());
    };
    tracing::info!(pid, "stopping Envoy (SIGTERM)");
    if let Err(e) = kill(Pid::from_raw(pid), Signal::SIGTERM) {
        tracing::warn!(pid, "SIGTERM to Envoy: {e}");
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => {
            let status = status.map_err(EnvoyError::Wait)?;
            tracing::info!(pid, "Envoy stopped with {}", describe(status));
        }
        Err(_) => {
            tracing::warn!(pid, grace = ?grace, "Envoy did not stop after SIGTERM: SIGKILL");
            child.kill().await.map_err(EnvoyError::Wait)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn executable(dir: &Path, name: &str, script: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn the_binary_is_the_flag_then_envoy_binary_then_path() {
        let dir = tempfile::tempdir().unwrap();
        let a = executable(dir.path(), "a", "#!/bin/sh\n");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let on_path = executable(&bin, "envoy", "#!/bin/sh\n");
        let path_var = Some(OsString::from(format!("/nonexistent:{}", bin.display())));

        assert_eq!(
            find_binary(Some(&a), Some("/x".into()), path_var.clone()).unwrap(),
            a
        );
        assert_eq!(
            find_binary(None, Some(a.clone().into()), path_var.clone()).unwrap(),
            a
        );
        assert_eq!(
            find_binary(None, Some("".into()), path_var.clone()).unwrap(),
            on_path
        );
        assert_eq!(find_binary(None, None, path_var).unwrap(), on_path);

        let err = find_binary(Some(Path::new("/no/such/envoy")), None, None).unwrap_err();
        assert!(
            err.to_string().starts_with("Envoy binary /no/such/envoy: "),
            "{err}"
        );
        let err = find_binary(None, None, Some("/nonexistent".into())).unwrap_err();
        assert!(
            err.to_string()
                .contains("no `envoy` in PATH (/nonexistent)"),
            "{err}"
        );
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "").unwrap();
        let err = find_binary(Some(&plain), None, None).unwrap_err();
        assert!(err.to_string().ends_with("not executable"), "{err}");
        let err = find_binary(Some(dir.path()), None, None).unwrap_err();
        assert!(err.to_string().ends_with("not a file"), "{err}");
    }

    #[test]
    fn versions_are_parsed() {
        let text = "\nenvoy  version: 8d8f6ad1d2a3/1.40.0/Clean/RELEASE/BoringSSL\n\n";
        assert_eq!(
            parse_version(text).unwrap(),
            (
                "1.40.0".to_string(),
                "8d8f6ad1d2a3/1.40.0/Clean/RELEASE/BoringSSL".to_string()
            )
        );
        assert_eq!(parse_version("hello"), None);
    }

    #[test]
    fn the_bootstrap_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        let path = write_bootstrap(&work, "a: 1\n").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_bootstrap(&work, "b: 2\n").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "b: 2\n");
    }

    #[test]
    fn the_admin_address_is_read_from_the_bootstrap() {
        let camel = "admin:\n  address:\n    socketAddress:\n      address: 127.0.0.1\n      portValue: 19901\n";
        assert_eq!(
            admin_address(camel),
            Some("127.0.0.1:19901".parse().unwrap())
        );
        let snake = "admin: {address: {socket_address: {address: '::1', port_value: 9901}}}";
        assert_eq!(admin_address(snake), Some("[::1]:9901".parse().unwrap()));
        assert_eq!(
            admin_address("admin:\n  address:\n    pipe: {path: /x}\n"),
            None
        );
        assert_eq!(admin_address("node: {}"), None);
    }

    #[test]
    fn envoy_arguments() {
        let settings = EnvoySettings {
            binary: "envoy".into(),
            config: "/w/bootstrap.yaml".into(),
            log_level: EnvoyLogLevel::Warning,
            concurrency: Some(2),
            drain_time: Duration::from_secs(30),
            admin: None,
            restart: RestartPolicy::default(),
            stop_grace: Duration::from_secs(1),
        };
        assert_eq!(
            settings.args().join(" "),
            "-c /w/bootstrap.yaml --disable-hot-restart --log-level warning --drain-time-s 30 --concurrency 2"
        );
    }

    #[test]
    fn active_connections_skip_the_admin_listener() {
        let stats = "listener.admin.downstream_cx_active: 3\nlistener.127.0.0.1_10001.downstream_cx_active: 2\nlistener.0.0.0.0_15001.downstream_cx_active: 1\nhttp.admin.downstream_cx_active: 1\n";
        assert_eq!(active_connections(stats), 3);
        assert_eq!(active_connections(""), 0);
    }

    /// A shell script standing in for Envoy (the real one is run in the e2e tests): it exits
    /// at once, so kuma-dp restarts it until the quick-failure limit.
    #[tokio::test]
    async fn a_crash_loop_gives_up_after_the_quick_failures() {
        let dir = tempfile::tempdir().unwrap();
        let counter = dir.path().join("starts");
        let script = format!("#!/bin/sh\necho started >> {}\nexit 3\n", counter.display());
        let binary = executable(dir.path(), "fake-envoy", &script);
        let settings = EnvoySettings {
            binary,
            config: dir.path().join("b.yaml"),
            log_level: EnvoyLogLevel::Info,
            concurrency: None,
            drain_time: Duration::from_secs(1),
            admin: None,
            restart: RestartPolicy {
                min_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(50),
                quick: Duration::from_secs(60),
                max_quick_failures: 3,
            },
            stop_grace: Duration::from_secs(1),
        };
        let err = supervise(&settings, &CancellationToken::new())
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Envoy keeps failing: 3 exits within 1m of starting, the last exit code 3; giving up"
        );
        let starts = std::fs::read_to_string(&counter).unwrap();
        assert_eq!(starts.lines().count(), 3);
    }

    /// A stand-in that ignores SIGTERM is SIGKILLed after the grace period; shutdown is `Ok`.
    #[tokio::test]
    async fn shutdown_stops_a_stubborn_child() {
        let dir = tempfile::tempdir().unwrap();
        let ready = dir.path().join("ready");
        let script = format!(
            "#!/bin/sh\ntrap '' TERM\ntouch {}\nwhile true; do sleep 1; done\n",
            ready.display()
        );
        let binary = executable(dir.path(), "stubborn", &script);
        let settings = EnvoySettings {
            binary,
            config: dir.path().join("b.yaml"),
            log_level: EnvoyLogLevel::Info,
            concurrency: None,
            drain_time: Duration::from_secs(1),
            admin: None,
            restart: RestartPolicy::default(),
            stop_grace: Duration::from_millis(300),
        };
        let shutdown = CancellationToken::new();
        let cancel = shutdown.clone();
        let ready_path = ready.clone();
        tokio::spawn(async move {
            // Polled with a deadline; on timeout the test below fails on what it asserts.
            let deadline = Instant::now() + Duration::from_secs(30);
            while !ready_path.exists() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            cancel.cancel();
        });
        tokio::time::timeout(Duration::from_secs(30), supervise(&settings, &shutdown))
            .await
            .unwrap()
            .unwrap();
    }
}
