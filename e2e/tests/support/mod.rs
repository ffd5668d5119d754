//! The e2e harness: a [`Federation`] of real processes — one `kuma-global` and any number of
//! `kuma-zone`s, each with its own temp work dir, free loopback ports and a log file — driven
//! with the real `kumactl` and plain HTTP.
//!
//! The binaries are taken from the target dir this test was built into
//! (`<target>/<profile>/kuma-global`, ...), or from `KUMA_E2E_BIN_DIR` when set: build them
//! first with `cargo build -p global -p zone -p ctl -p dp` (`cargo xtask test` builds every
//! binary).
//!
//! Every child is SIGKILLed when the [`Federation`] is dropped, also when the test panics; a
//! panicking test gets the tail of every log on stderr first. Waiting is always a polled
//! condition with a deadline ([`eventually`]), never a fixed sleep.

#![allow(dead_code)]

pub mod apps;
pub mod browser;
pub mod containers;
pub mod dp;
pub mod sidecar;
pub mod traffic;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::time::{Instant, sleep};

/// The name the global goes by in [`Federation`] methods that take a control plane.
pub const GLOBAL: &str = "global";

/// Lines of each log printed when a test fails.
const LOG_TAIL_LINES: usize = 60;

/// How long a control plane may take to answer `/ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Settings that make the global notice zones quickly (see docs/settings.md).
const GLOBAL_FAST_ENV: &[(&str, &str)] = &[
    (
        "KUMA_MULTIZONE_GLOBAL_KDS_ZONE_INSIGHT_FLUSH_INTERVAL",
        "300ms",
    ),
    (
        "KUMA_MULTIZONE_GLOBAL_KDS_ZONE_HEALTH_CHECK_POLL_INTERVAL",
        "300ms",
    ),
    ("KUMA_MULTIZONE_GLOBAL_KDS_ZONE_HEALTH_CHECK_TIMEOUT", "3s"),
];

/// The global's zone health-check timeout set by [`GLOBAL_FAST_ENV`].
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

/// Settings that make zones reconnect quickly.
const ZONE_FAST_ENV: &[(&str, &str)] = &[
    ("KUMA_GENERAL_RESILIENT_COMPONENT_BASE_BACKOFF", "200ms"),
    ("KUMA_GENERAL_RESILIENT_COMPONENT_MAX_BACKOFF", "2s"),
];

/// A port free right now and never handed out before by this test process: the kernel may
/// give a just-released port again, and two settings of one process on one port fail its
/// config check.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Polls `check` every 100 ms until it returns `Ok`; after `deadline` the test fails with
/// `what` and the last reason `check` gave.
pub async fn eventually<T>(
    deadline: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let start = Instant::now();
    loop {
        let last = match check().await {
            Ok(value) => return value,
            Err(why) => why,
        };
        assert!(
            start.elapsed() < deadline,
            "{what}: not within {deadline:?}; last: {last}"
        );
        sleep(Duration::from_millis(100)).await;
    }
}

/// `<target>/<profile>/<name>`, next to `<target>/<profile>/deps/<this test>`; or
/// `$KUMA_E2E_BIN_DIR/<name>` when that is set (binaries of a given build kept aside, e.g.
/// while a shared target dir is rebuilt from another checkout).
fn binary(name: &str, package: &str) -> PathBuf {
    let profile_dir = match std::env::var_os("KUMA_E2E_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let exe = std::env::current_exe().expect("the path of the test executable");
            exe.parent()
                .and_then(Path::parent)
                .expect("the test executable lives in <target>/<profile>/deps")
                .to_path_buf()
        }
    };
    let bin = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{name} is not built: {} is missing; run `cargo build -p global -p zone -p ctl -p dp` (package `{package}`); `cargo xtask test` builds every binary",
        bin.display()
    );
    bin
}

/// One control-plane process that can be stopped and started again with the same work dir,
/// ports and environment. Its output goes to `<work dir>/cp.log`, appended across restarts.
pub struct Proc {
    pub name: String,
    bin: PathBuf,
    pub work_dir: PathBuf,
    pub api_port: u16,
    pub diag_port: u16,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Proc {
    fn new(name: &str, bin: PathBuf, work_dir: PathBuf, env: Vec<(String, String)>) -> Proc {
        std::fs::create_dir_all(&work_dir).expect("work dir");
        Proc {
            name: name.to_string(),
            bin,
            log: work_dir.join("cp.log"),
            work_dir,
            api_port: free_port(),
            diag_port: free_port(),
            env,
            child: None,
            starts: 0,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &self.work_dir)
            .env("KUMA_GENERAL_WORK_DIR", &self.work_dir)
            .env("KUMA_API_SERVER_HTTP_INTERFACE", "127.0.0.1")
            .env("KUMA_API_SERVER_HTTP_PORT", self.api_port.to_string())
            .env("KUMA_DIAGNOSTICS_SERVER_PORT", self.diag_port.to_string())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `<binary> ARGS` to completion (e.g. `migrate up`); panics with its output on failure.
    fn run_to_end(&self, args: &[&str]) {
        let out = self
            .command(args)
            .output()
            .unwrap_or_else(|e| panic!("running {} {args:?}: {e}", self.bin.display()));
        assert!(
            out.status.success(),
            "{} {args:?} failed ({}):\n{}{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts `<binary> run` and waits until `/ready`.
    async fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        writeln!(
            log,
            "===== e2e: start #{} of {} =====",
            self.starts, self.name
        )
        .expect("write the log file");
        let err = log.try_clone().expect("log file");
        let child = self
            .command(&["run"])
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", self.bin.display()));
        self.child = Some(child);
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let http = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{}/ready", self.diag_port);
        let start = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "{} exited with {status} before it was ready:\n{}",
                    self.name,
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            if let Ok(r) = http.get(&url).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(
                start.elapsed() < READY_TIMEOUT,
                "{} not ready within {READY_TIMEOUT:?}:\n{}",
                self.name,
                self.log_tail(LOG_TAIL_LINES)
            );
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// The value this process was started with for the environment variable `key`.
    pub fn env_value(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .unwrap_or_else(|| panic!("{} is not running", self.name))
            .id()
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) with kill(1).
    fn signal(&self, signal: &str) {
        let pid = self.pid().to_string();
        let status = Command::new("kill")
            .args([format!("-{signal}").as_str(), pid.as_str()])
            .status()
            .expect("run kill");
        assert!(
            status.success(),
            "kill -{signal} {pid} ({}) failed",
            self.name
        );
    }

    /// SIGTERM, then waits (polling, with a deadline) for the exit and reaps it.
    fn terminate(&mut self, deadline: Duration) -> std::process::ExitStatus {
        self.signal("TERM");
        let start = Instant::now();
        loop {
            let child = self
                .child
                .as_mut()
                .unwrap_or_else(|| panic!("{} is not running", self.name));
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return status;
            }
            assert!(
                start.elapsed() < deadline,
                "{} did not exit within {deadline:?} of SIGTERM",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, then reap.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let logs = self.logs();
        let all: Vec<&str> = logs.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// How a zone proves who it is.
#[derive(Clone, Debug)]
pub enum Token {
    /// A zone token issued by the global for this zone.
    Own,
    /// The token of another zone (an impostor).
    Of(String),
    /// No token at all.
    None,
}

/// How a zone is started.
#[derive(Clone, Debug)]
pub struct ZoneOptions {
    pub token: Token,
    /// Dials the global; `false` starts a standalone zone control plane.
    pub federated: bool,
    /// More `KUMA_*` settings.
    pub env: Vec<(String, String)>,
}

impl Default for ZoneOptions {
    fn default() -> Self {
        ZoneOptions {
            token: Token::Own,
            federated: true,
            env: Vec::new(),
        }
    }
}

/// What one kumactl run left.
pub struct Run {
    pub command: String,
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert!(
            self.success,
            "`{}` failed\n--- stdout\n{}\n--- stderr\n{}",
            self.command, self.stdout, self.stderr
        );
        &self.stdout
    }
}

/// A global and its zones, each a child process; all killed on drop.
pub struct Federation {
    dir: tempfile::TempDir,
    pub kds_port: u16,
    procs: BTreeMap<String, Proc>,
    tokens: BTreeMap<String, PathBuf>,
    kumactl: PathBuf,
    http: reqwest::Client,
    applies: std::cell::Cell<u32>,
}

impl Federation {
    /// A global on SQLite and the zones `zones`, all federated with their own tokens.
    pub async fn start(zones: &[&str]) -> Federation {
        let mut federation = Federation::start_global(Vec::new()).await;
        federation.add_zones(zones).await;
        federation
    }

    /// A global on a fresh PostgreSQL database (on the server of `DATABASE_URL`) and the
    /// zones `zones` (SQLite).
    pub async fn start_postgres(zones: &[&str]) -> Federation {
        let (url, name) = fresh_database().await;
        let mut federation = Federation::start_global(postgres_env(&url, &name)).await;
        federation.add_zones(zones).await;
        federation
    }

    /// Only the global (its store from `store_env`; SQLite when empty), with the settings
    /// that make it notice zones quickly.
    pub async fn start_global(store_env: Vec<(String, String)>) -> Federation {
        Federation::start_global_with(store_env, GLOBAL_FAST_ENV).await
    }

    /// Only the global (its store from `store_env`; SQLite when empty) with `settings` as its
    /// extra `KUMA_*` variables instead of the quick ones of [`Federation::start_global`]
    /// (`&[]`: the defaults, as benchmarks want them).
    pub async fn start_global_with(
        store_env: Vec<(String, String)>,
        settings: &[(&str, &str)],
    ) -> Federation {
        let dir = tempfile::Builder::new()
            .prefix("kuma-e2e-")
            .tempdir()
            .expect("temp dir");
        let kds_port = free_port();
        let mut env: Vec<(String, String)> = settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.push((
            "KUMA_MULTIZONE_GLOBAL_KDS_GRPC_PORT".into(),
            kds_port.to_string(),
        ));
        let postgres = !store_env.is_empty();
        env.extend(store_env);
        let global = Proc::new(
            GLOBAL,
            binary("kuma-global", "global"),
            dir.path().join(GLOBAL),
            env,
        );
        let mut federation = Federation {
            kumactl: binary("kumactl", "ctl"),
            dir,
            kds_port,
            procs: BTreeMap::new(),
            tokens: BTreeMap::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("HTTP client"),
            applies: std::cell::Cell::new(0),
        };
        if postgres {
            global.run_to_end(&["migrate", "up"]);
        }
        federation.procs.insert(GLOBAL.to_string(), global);
        federation.proc_mut(GLOBAL).start().await;
        assert!(
            federation.ca_file().is_file(),
            "the global did not write its KDS CA to {}",
            federation.ca_file().display()
        );
        federation.configure_kumactl(GLOBAL);
        federation
    }

    /// Only a standalone zone control plane `name` (no global), with `env` added to its
    /// environment (later entries win, e.g. to choose the xDS and bootstrap ports).
    pub async fn start_standalone(name: &str, env: Vec<(String, String)>) -> Federation {
        let dir = tempfile::Builder::new()
            .prefix("kuma-e2e-")
            .tempdir()
            .expect("temp dir");
        let mut federation = Federation {
            kumactl: binary("kumactl", "ctl"),
            dir,
            kds_port: 0,
            procs: BTreeMap::new(),
            tokens: BTreeMap::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("HTTP client"),
            applies: std::cell::Cell::new(0),
        };
        let options = ZoneOptions {
            token: Token::None,
            federated: false,
            env: Vec::new(),
        };
        let mut zone_env = federation.zone_env(name, &options);
        zone_env.extend(env);
        let proc = Proc::new(
            name,
            binary("kuma-zone", "zone"),
            federation.dir.path().join(name),
            zone_env,
        );
        federation.procs.insert(name.to_string(), proc);
        federation.proc_mut(name).start().await;
        federation.configure_kumactl(name);
        federation
    }

    pub async fn add_zones(&mut self, zones: &[&str]) {
        for zone in zones {
            self.add_zone(zone, ZoneOptions::default()).await;
        }
    }

    /// Starts zone `name` and waits until it is ready (not until it is synced).
    pub async fn add_zone(&mut self, name: &str, options: ZoneOptions) {
        assert!(!self.procs.contains_key(name), "{name} exists already");
        let env = self.zone_env(name, &options);
        let proc = Proc::new(
            name,
            binary("kuma-zone", "zone"),
            self.dir.path().join(name),
            env,
        );
        self.procs.insert(name.to_string(), proc);
        self.proc_mut(name).start().await;
        self.configure_kumactl(name);
    }

    fn zone_env(&mut self, name: &str, options: &ZoneOptions) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = ZONE_FAST_ENV
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.push(("KUMA_MULTIZONE_ZONE_NAME".into(), name.to_string()));
        // A zone serves xDS and bootstraps: free ports, so that several zones share the host.
        env.push(("KUMA_XDS_SERVER_GRPC_PORT".into(), free_port().to_string()));
        env.push(("KUMA_BOOTSTRAP_SERVER_PORT".into(), free_port().to_string()));
        env.push((
            "KUMA_ADMIN_SERVER_LOCAL_PORT".into(),
            free_port().to_string(),
        ));
        env.push((
            "KUMA_MONITORING_ASSIGNMENT_SERVER_PORT".into(),
            free_port().to_string(),
        ));
        // UDP and TCP; a TCP port free now is almost always free for UDP too.
        env.push(("KUMA_DNS_SERVER_PORT".into(), free_port().to_string()));
        env.extend(options.env.iter().cloned());
        if !options.federated {
            return env;
        }
        env.push((
            "KUMA_MULTIZONE_ZONE_GLOBAL_ADDRESS".into(),
            format!("grpcs://localhost:{}", self.kds_port),
        ));
        env.push((
            "KUMA_MULTIZONE_ZONE_KDS_ROOT_CA_FILE".into(),
            self.ca_file().display().to_string(),
        ));
        let token = match &options.token {
            Token::Own => Some(self.zone_token(name)),
            Token::Of(other) => Some(self.zone_token(other)),
            Token::None => None,
        };
        if let Some(path) = token {
            env.push((
                "KUMA_MULTIZONE_ZONE_KDS_AUTH_TOKEN_PATH".into(),
                path.display().to_string(),
            ));
        }
        env
    }

    /// Stops zone `name` and starts it again with new options (same work dir and ports).
    pub async fn restart_zone_with(&mut self, name: &str, options: ZoneOptions) {
        let env = self.zone_env(name, &options);
        let proc = self.proc_mut(name);
        proc.kill();
        proc.env = env;
        proc.start().await;
    }

    /// The global's generated KDS CA, which zones trust.
    pub fn ca_file(&self) -> PathBuf {
        self.proc(GLOBAL).work_dir.join("kds-ca.crt")
    }

    /// A file with a zone token (scope `cp`) for `zone`, issued by the global with kumactl.
    pub fn zone_token(&mut self, zone: &str) -> PathBuf {
        if let Some(path) = self.tokens.get(zone) {
            return path.clone();
        }
        let run = self.kumactl(
            GLOBAL,
            &[
                "generate",
                "zone-token",
                "--zone",
                zone,
                "--scope",
                "cp",
                "--valid-for",
                "24h",
            ],
        );
        let token = run.ok().trim().to_string();
        assert!(!token.is_empty(), "kumactl printed no zone token");
        let path = self.dir.path().join(format!("{zone}.token"));
        std::fs::write(&path, token).expect("write the zone token");
        self.tokens.insert(zone.to_string(), path.clone());
        path
    }

    pub fn proc(&self, name: &str) -> &Proc {
        self.procs
            .get(name)
            .unwrap_or_else(|| panic!("no control plane {name}"))
    }

    fn proc_mut(&mut self, name: &str) -> &mut Proc {
        self.procs
            .get_mut(name)
            .unwrap_or_else(|| panic!("no control plane {name}"))
    }

    /// The temp dir every process of this federation keeps its files under.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The port of zone `name`'s bootstrap server (`POST /bootstrap`, kuma-dp's `--cp-address`).
    pub fn bootstrap_port(&self, name: &str) -> u16 {
        self.port_setting(name, "KUMA_BOOTSTRAP_SERVER_PORT")
    }

    /// The port of zone `name`'s ADS server.
    pub fn xds_port(&self, name: &str) -> u16 {
        self.port_setting(name, "KUMA_XDS_SERVER_GRPC_PORT")
    }

    /// The port of zone `name`'s monitoring assignment server (MADS, Prometheus discovery).
    pub fn mads_port(&self, name: &str) -> u16 {
        self.port_setting(name, "KUMA_MONITORING_ASSIGNMENT_SERVER_PORT")
    }

    /// The port of zone `name`'s DNS server (UDP and TCP).
    pub fn dns_port(&self, name: &str) -> u16 {
        self.port_setting(name, "KUMA_DNS_SERVER_PORT")
    }

    fn port_setting(&self, name: &str, key: &str) -> u16 {
        self.proc(name)
            .env_value(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} was started without a numeric {key}"))
    }

    pub fn api(&self, name: &str) -> u16 {
        self.proc(name).api_port
    }

    pub fn diagnostics(&self, name: &str) -> u16 {
        self.proc(name).diag_port
    }

    /// SIGSTOP: the process stays, its connections stay open, it answers nothing.
    pub fn pause(&self, name: &str) {
        self.proc(name).signal("STOP");
    }

    /// SIGCONT after [`Federation::pause`].
    pub fn resume(&self, name: &str) {
        self.proc(name).signal("CONT");
    }

    /// SIGKILL.
    pub fn kill(&mut self, name: &str) {
        self.proc_mut(name).kill();
    }

    /// Stops `name` with SIGTERM (a graceful shutdown) and returns its exit status.
    pub fn terminate(&mut self, name: &str, deadline: Duration) -> std::process::ExitStatus {
        self.proc_mut(name).terminate(deadline)
    }

    /// Starts a killed (or running: it is killed first) zone again, same work dir and ports.
    pub async fn restart(&mut self, name: &str) {
        let proc = self.proc_mut(name);
        proc.kill();
        proc.start().await;
    }

    /// SIGKILLs the global (when running) and starts it again, same work dir and ports.
    pub async fn restart_global(&mut self) {
        self.restart(GLOBAL).await;
    }

    // === kumactl ===

    fn configure_kumactl(&self, name: &str) {
        let address = format!("http://127.0.0.1:{}", self.api(name));
        self.kumactl(
            name,
            &[
                "config",
                "control-planes",
                "add",
                "--name",
                name,
                "--address",
                &address,
                "--overwrite",
            ],
        )
        .ok();
    }

    /// `kumactl ARGS` against control plane `name` (its own config file and home).
    pub fn kumactl(&self, name: &str, args: &[&str]) -> Run {
        let home = self.dir.path().join("kumactl").join(name);
        std::fs::create_dir_all(&home).expect("kumactl home");
        let out = Command::new(&self.kumactl)
            .arg("--config-file")
            .arg(home.join("config"))
            .args(["--api-timeout", "30s"])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &home)
            .stdin(Stdio::null())
            .output()
            .expect("run kumactl");
        Run {
            command: format!("kumactl {} (on {name})", args.join(" ")),
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `kumactl apply -f` of `yaml` (one or more documents) on control plane `name`.
    pub fn try_apply(&self, name: &str, yaml: &str) -> Run {
        let n = self.applies.get() + 1;
        self.applies.set(n);
        let path = self.dir.path().join(format!("apply-{n}-{name}.yaml"));
        std::fs::write(&path, yaml).expect("write a resource file");
        let path = path.to_str().expect("UTF-8 temp path").to_string();
        self.kumactl(name, &["apply", "-f", &path])
    }

    #[track_caller]
    pub fn apply(&self, name: &str, yaml: &str) {
        self.try_apply(name, yaml).ok();
    }

    /// `kumactl inspect zones` on the global, as rows of header -> cell.
    pub fn inspect_zones(&self) -> Vec<BTreeMap<String, String>> {
        model::test_util::kumactl_table(self.kumactl(GLOBAL, &["inspect", "zones"]).ok())
    }

    // === HTTP ===

    /// GET `path` on the API of `name`: `Ok(None)` on 404.
    pub async fn get(&self, name: &str, path: &str) -> Result<Option<Value>, String> {
        let url = format!("http://127.0.0.1:{}{path}", self.api(name));
        get_json_opt(&self.http, &url).await
    }

    /// Every item of the list at `path` on the API of `name`.
    pub async fn list(&self, name: &str, path: &str) -> Result<Vec<Value>, String> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let value = self
            .get(name, &format!("{path}{sep}size=1000"))
            .await?
            .ok_or_else(|| format!("{name}: GET {path}: 404"))?;
        let total = value.get("total").and_then(Value::as_u64).unwrap_or(0);
        let items = value
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if items.len() as u64 != total {
            return Err(format!(
                "{name}: GET {path}: {} items of {total} (more than a page)",
                items.len()
            ));
        }
        Ok(items)
    }

    /// The names of the items of the list at `path` on `name`, sorted.
    pub async fn names(&self, name: &str, path: &str) -> Result<Vec<String>, String> {
        let mut names: Vec<String> = self
            .list(name, path)
            .await?
            .iter()
            .map(|item| str_at(item, "/name").to_string())
            .collect();
        names.sort();
        Ok(names)
    }

    /// DELETE `path` on the API of `name`; panics unless it succeeds.
    pub async fn delete(&self, name: &str, path: &str) {
        let url = format!("http://127.0.0.1:{}{path}", self.api(name));
        let r = self
            .http
            .delete(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("DELETE {url}: {e}"));
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        assert!(status.is_success(), "DELETE {url}: {status}: {body}");
    }

    /// Value of metric `name` with `labels` on the diagnostics port of `cp`.
    pub async fn metric(&self, cp: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        metric(&self.http, self.diagnostics(cp), name, labels).await
    }

    // === zone status on the global ===

    /// The global's `/zones+insights` item of `zone`, `None` when it lists no such zone.
    pub async fn zone_overview(&self, zone: &str) -> Result<Option<Value>, String> {
        let items = self.list(GLOBAL, "/zones+insights").await?;
        Ok(items
            .into_iter()
            .find(|item| item.get("name").and_then(Value::as_str) == Some(zone)))
    }

    /// Whether the global shows `zone` online: a subscription without a disconnect time.
    pub async fn online(&self, zone: &str) -> Result<bool, String> {
        let Some(item) = self.zone_overview(zone).await? else {
            return Ok(false);
        };
        let subscriptions = item
            .pointer("/zoneInsight/subscriptions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(subscriptions
            .iter()
            .any(|s| s.get("connectTime").is_some() && s.get("disconnectTime").is_none()))
    }

    pub async fn wait_online(&self, zone: &str, deadline: Duration) {
        self.wait_status(zone, true, deadline).await;
    }

    pub async fn wait_offline(&self, zone: &str, deadline: Duration) {
        self.wait_status(zone, false, deadline).await;
    }

    async fn wait_status(&self, zone: &str, online: bool, deadline: Duration) {
        let wanted = if online { "online" } else { "offline" };
        eventually(
            deadline,
            &format!("{zone} {wanted} on the global"),
            async || match self.online(zone).await? == online {
                true => Ok(()),
                false => Err(format!("{zone} is not {wanted}")),
            },
        )
        .await;
    }

    /// Prints the tail of every log (called on drop while panicking).
    pub fn print_logs(&self) {
        for proc in self.procs.values() {
            eprintln!(
                "\n===== last {LOG_TAIL_LINES} lines of {} ({}) =====\n{}",
                proc.name,
                proc.log.display(),
                proc.log_tail(LOG_TAIL_LINES)
            );
        }
    }
}

impl Drop for Federation {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_logs();
        }
        // Zones first, so that they do not log a lost global while the test ends.
        let names: Vec<String> = self.procs.keys().cloned().collect();
        for name in names.iter().filter(|n| n.as_str() != GLOBAL) {
            self.proc_mut(name).kill();
        }
        if let Some(global) = self.procs.get_mut(GLOBAL) {
            global.kill();
        }
    }
}

/// GET `url` as JSON; `None` on 404.
pub async fn get_json_opt(http: &reqwest::Client, url: &str) -> Result<Option<Value>, String> {
    let r = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = r.status();
    if status == 404 {
        return Ok(None);
    }
    let body = r.text().await.map_err(|e| format!("GET {url}: {e}"))?;
    if !status.is_success() {
        return Err(format!("GET {url}: {status}: {body}"));
    }
    serde_json::from_str(&body)
        .map(Some)
        .map_err(|e| format!("GET {url}: not JSON ({e}): {body}"))
}

/// GET `path` on `127.0.0.1:port` as JSON; 404 is an error too.
pub async fn get_json(port: u16, path: &str) -> Result<Value, String> {
    let url = format!("http://127.0.0.1:{port}{path}");
    get_json_opt(&reqwest::Client::new(), &url)
        .await?
        .ok_or_else(|| format!("GET {url}: 404"))
}

/// The value of the sample `name{labels...}` (every given label matches; others may be there)
/// in the Prometheus text on `127.0.0.1:port/metrics`; `None` when there is no such sample.
pub async fn metric(
    http: &reqwest::Client,
    port: u16,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    metric_at(
        http,
        &format!("http://127.0.0.1:{port}/metrics"),
        name,
        labels,
    )
    .await
}

/// As [`metric`], from the Prometheus text at `url`.
pub async fn metric_at(
    http: &reqwest::Client,
    url: &str,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    let text = http.get(url).send().await.ok()?.text().await.ok()?;
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| sample(line, name, labels))
}

fn sample(line: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let rest = line.strip_prefix(name)?;
    let (label_text, value) = if let Some(inner) = rest.strip_prefix('{') {
        let (inside, after) = inner.split_once('}')?;
        (inside, after)
    } else if rest.starts_with(' ') {
        ("", rest)
    } else {
        return None;
    };
    let present: Vec<(&str, &str)> = label_text
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim().trim_matches('"')))
        .collect();
    if !labels.iter().all(|wanted| present.contains(wanted)) {
        return None;
    }
    value.split_whitespace().next()?.parse().ok()
}

/// The string at JSON pointer `pointer`, `""` when absent.
pub fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// Label `key` of a resource in the REST format.
pub fn label<'a>(resource: &'a Value, key: &str) -> &'a str {
    resource
        .get("labels")
        .and_then(|l| l.get(key))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// A fresh database on the server named by `DATABASE_URL`; fails the test when it is unset.
pub async fn fresh_database() -> (String, String) {
    use sqlx::Connection;
    let url = std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| {
        panic!(
            "this test needs PostgreSQL: set DATABASE_URL to a PostgreSQL superuser URL, or run `cargo xtask test`, which starts a throwaway PostgreSQL and sets it (`cargo xtask pg` prints one)"
        )
    });
    let name = format!("e2e_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&url)
        .await
        .expect("connect to DATABASE_URL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut conn)
        .await
        .expect("create database");
    (url, name)
}

/// `KUMA_STORE_*` variables that point a control plane at database `name` on the server of `url`.
pub fn postgres_env(url: &str, name: &str) -> Vec<(String, String)> {
    let parsed = reqwest::Url::parse(url).expect("DATABASE_URL is a URL");
    let mut env = vec![
        ("KUMA_STORE_TYPE".into(), "postgres".to_string()),
        (
            "KUMA_STORE_POSTGRES_HOST".into(),
            parsed.host_str().unwrap_or("127.0.0.1").to_string(),
        ),
        (
            "KUMA_STORE_POSTGRES_PORT".into(),
            parsed.port().unwrap_or(5432).to_string(),
        ),
        (
            "KUMA_STORE_POSTGRES_USER".into(),
            parsed.username().to_string(),
        ),
        ("KUMA_STORE_POSTGRES_DB_NAME".into(), name.to_string()),
    ];
    if let Some(password) = parsed.password() {
        env.push(("KUMA_STORE_POSTGRES_PASSWORD".into(), password.to_string()));
    }
    env
}
