//! `cargo xtask lab`: the local multi-zone lab, on loopback, in one command. It builds the
//! binaries, then starts a global, two federated zones, a zone ingress per zone and a demo (a
//! `frontend` in zone-1 calling a `backend` in zone-2 through zone-2's ingress, each behind a
//! kuma-dp sidecar; the two applications are served by this process), prints where
//! everything is, checks the cross-zone path and runs until Ctrl-C or SIGTERM. Guide:
//! docs/lab.md.
//!
//! Everything lives in a state directory (`.lab/` by default) that a second start reuses:
//! stores (SQLite), the global's KDS CA and certificates, zone tokens, logs. The lab never
//! hangs: every wait has a deadline, a child that exits or is not ready in time ends the lab
//! with the tail of its log, and no child outlives it.

mod http;
mod ports;
mod procs;

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{cmd, envoy};
use ports::{Port, Ports};
use procs::{Proc, Procs, TAIL_LINES, Tier};

/// How many zones the lab runs.
const ZONES: u16 = 2;
/// The zone of the frontend (the caller) and of the backend (behind the ingress).
const FRONTEND_ZONE: u16 = 1;
const BACKEND_ZONE: u16 = 2;
/// The mesh of the demo.
const MESH: &str = "default";

/// How long a control plane may take to answer `/ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long zones may take to show Online on the global and to receive the mesh.
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a kuma-dp may take until its Envoy is LIVE and the zone shows it Online.
const PROXY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the cross-zone request may take to succeed.
const PATH_TIMEOUT: Duration = Duration::from_secs(60);
/// Lifetime of the tokens the lab issues; a kept zone token is renewed when older than
/// [`TOKEN_RENEW_AFTER`].
const TOKEN_VALID_FOR: &str = "8760h";
const TOKEN_RENEW_AFTER: Duration = Duration::from_secs(300 * 24 * 3600);
/// kuma-dp's `--drain-time`: the lab stops quickly.
const DRAIN_TIME: &str = "1s";

/// `cargo xtask lab` options.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct LabArgs {
    /// Directory of the stores, certificates, tokens and logs; a second start reuses it
    /// (remove it to start afresh). Default: `.lab` at the repository root.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Derive every port from this base: the global uses BASE.., zone-N BASE+N*16.. (16 ports
    /// each). 0 means the standard ports: Kuma's for the global (API 5681, KDS 5685, ...),
    /// and N*10000 more for zone-N (zone-1's API on 15681, zone-2's on 25681).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub port_base: u16,
    /// Use a debug build instead of a release build.
    #[arg(long)]
    pub debug: bool,
    /// Do not run `cargo build`: use the binaries already in the target dir.
    #[arg(long)]
    pub no_build: bool,
}

/// Runs the lab until Ctrl-C or SIGTERM (exit 0), or until something fails (an error, after
/// everything was stopped).
pub fn run(args: &LabArgs, root: &Path) -> Result<()> {
    let ports = Ports::new(args.port_base, ZONES)?;
    let state = match &args.state_dir {
        Some(dir) => std::path::absolute(dir)
            .with_context(|| format!("resolving --state-dir {}", dir.display()))?,
        None => root.join(".lab"),
    };
    fs::create_dir_all(&state)
        .with_context(|| format!("creating the state dir {}", state.display()))?;
    let lock = Lock::take(&state)?;
    let mut lab = Lab {
        root: root.to_owned(),
        state,
        ports,
        profile: if args.debug { "debug" } else { "release" },
        bins: None,
        procs: Procs::default(),
    };
    let result = lab.up(!args.no_build).and_then(|()| lab.serve());
    let interrupted = cmd::interrupted();
    if let Err(error) = &result
        && !interrupted
    {
        println!("\nlab: FAILED: {error:#}");
    }
    if lab.procs.iter().next().is_some() {
        println!("stopping...");
        lab.procs.stop_all(|line| println!("  {line}"));
    }
    drop(lock);
    if result.is_err() && !interrupted {
        // The error and the log tails were printed above.
        bail!("the lab failed (see above)");
    }
    println!("lab stopped");
    Ok(())
}

/// The binaries the lab runs.
struct Bins {
    global: PathBuf,
    zone: PathBuf,
    kumactl: PathBuf,
    dp: PathBuf,
    envoy: PathBuf,
}

struct Lab {
    root: PathBuf,
    state: PathBuf,
    ports: Ports,
    profile: &'static str,
    bins: Option<Bins>,
    procs: Procs,
}

impl Lab {
    fn bins(&self) -> Result<&Bins> {
        self.bins
            .as_ref()
            .context("the binaries are not located yet")
    }

    fn log(&self, name: &str) -> PathBuf {
        self.state.join("logs").join(format!("{name}.log"))
    }

    /// Starts everything, in order, and prints the summary.
    fn up(&mut self, build: bool) -> Result<()> {
        println!("lab: state dir {}", self.state.display());
        if build {
            self.build()?;
        }
        self.bins = Some(self.locate()?);
        self.clear_leftovers()?;
        self.check_ports_free()?;

        let global_fresh = !self.state.join("global").join("kuma.db").exists();
        self.start_global()?;
        self.configure_kumactl("global", self.ports.global(Port::Api))?;
        self.apply_mesh()?;
        for zone in 1..=ZONES {
            self.zone_token(zone, "cp", !global_fresh)?;
            self.zone_token(zone, "ingress", !global_fresh)?;
        }
        self.start_zones()?;
        self.start_ingresses()?;
        self.start_demo()?;
        self.print_summary();
        self.check_cross_zone();
        Ok(())
    }

    /// Runs until interrupted; fails when a child exits.
    fn serve(&mut self) -> Result<()> {
        println!("\nthe lab runs; Ctrl-C stops it");
        loop {
            if cmd::interrupted() {
                return Ok(());
            }
            if let Some((proc, status)) = self.procs.first_exited() {
                bail!(
                    "{} exited ({status})\n{}",
                    proc.name,
                    proc.log_tail(TAIL_LINES)
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    // === binaries ===

    fn build(&self) -> Result<()> {
        let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        command.arg("build");
        if self.profile == "release" {
            command.arg("--release");
        }
        command
            .args(["-p", "global", "-p", "zone", "-p", "ctl", "-p", "dp"])
            .current_dir(&self.root);
        let shown: Vec<String> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        println!("building ({}): cargo {}", self.profile, shown.join(" "));
        let start = Instant::now();
        cmd::run(&mut command)?;
        println!("built ({})", secs(start));
        Ok(())
    }

    /// The built binaries in `<target dir>/<profile>/` (the target dir as cargo sees it, so
    /// CARGO_TARGET_DIR is honoured), and Envoy.
    fn locate(&self) -> Result<Bins> {
        let out = cmd::quiet(
            Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
                .args(["metadata", "--format-version", "1", "--no-deps"])
                .current_dir(&self.root),
        )?;
        let metadata: Value =
            serde_json::from_slice(&out.stdout).context("reading `cargo metadata`")?;
        let target = metadata["target_directory"]
            .as_str()
            .context("`cargo metadata` names no target_directory")?;
        let dir = Path::new(target).join(self.profile);
        let bin = |name: &str| -> Result<PathBuf> {
            let path = dir.join(name);
            if !cmd::is_executable(&path) {
                bail!(
                    "{} is missing: build it (`cargo build{} -p global -p zone -p ctl -p dp`) or run the lab without --no-build",
                    path.display(),
                    if self.profile == "release" {
                        " --release"
                    } else {
                        ""
                    }
                );
            }
            Ok(path)
        };
        let envoy = envoy::ensure()?;
        println!("envoy: {} ({})", envoy.path.display(), envoy.description);
        Ok(Bins {
            global: bin("kuma-global")?,
            zone: bin("kuma-zone")?,
            kumactl: bin("kumactl")?,
            dp: bin("kuma-dp")?,
            envoy: envoy.path,
        })
    }

    // === hygiene ===

    /// Kills what a lab on this state dir that was itself killed left running.
    fn clear_leftovers(&self) -> Result<()> {
        let bins = self.bins()?;
        let programs = [
            bins.global.clone(),
            bins.zone.clone(),
            bins.dp.clone(),
            bins.envoy.clone(),
        ];
        let found = procs::leftovers(&programs, &self.state);
        if found.is_empty() {
            return Ok(());
        }
        for (pid, line) in &found {
            println!("killing a leftover of an earlier lab: pid {pid}: {line}");
            procs::send(*pid, "KILL");
        }
        cmd::wait_until(
            "leftover processes to exit",
            Duration::from_secs(10),
            || found.iter().all(|(pid, _)| !procs::alive(*pid)),
        )
    }

    /// Every port the lab listens on, with what it is for.
    fn all_ports(&self) -> Vec<(String, u16)> {
        let mut all = Vec::new();
        for port in [Port::Api, Port::Diagnostics, Port::Kds] {
            all.push((format!("global {}", port.label()), self.ports.global(port)));
        }
        for zone in 1..=ZONES {
            for port in Port::ALL {
                if port == Port::Kds || (port == Port::Outbound && zone != FRONTEND_ZONE) {
                    continue;
                }
                all.push((
                    format!("zone-{zone} {}", port.label()),
                    self.ports.zone(zone, port),
                ));
            }
        }
        all
    }

    /// Fails, naming them, when ports the lab needs are taken.
    fn check_ports_free(&self) -> Result<()> {
        let busy: Vec<String> = self
            .all_ports()
            .into_iter()
            .filter(|(what, port)| {
                std::net::TcpListener::bind(("127.0.0.1", *port)).is_err()
                    || (what.ends_with(" dns")
                        && std::net::UdpSocket::bind(("127.0.0.1", *port)).is_err())
            })
            .map(|(what, port)| format!("{port} ({what})"))
            .collect();
        if !busy.is_empty() {
            bail!(
                "ports in use: {}; is another lab or a Kuma control plane running? Stop it, or pass --port-base to move the lab",
                busy.join(", ")
            );
        }
        Ok(())
    }

    // === control planes ===

    fn start_global(&mut self) -> Result<()> {
        let bins = self.bins()?;
        let mut command = Command::new(&bins.global);
        command.arg("run");
        clean_env(&mut command);
        let p = self.ports;
        command
            .env("KUMA_GENERAL_WORK_DIR", self.state.join("global"))
            .env("KUMA_API_SERVER_HTTP_INTERFACE", "127.0.0.1")
            .env("KUMA_API_SERVER_HTTP_PORT", p.global(Port::Api).to_string())
            .env(
                "KUMA_DIAGNOSTICS_SERVER_PORT",
                p.global(Port::Diagnostics).to_string(),
            )
            .env(
                "KUMA_MULTIZONE_GLOBAL_KDS_GRPC_PORT",
                p.global(Port::Kds).to_string(),
            );
        let ports = [Port::Api, Port::Diagnostics, Port::Kds]
            .map(|port| (port.label(), p.global(port)))
            .to_vec();
        let log = self.log("global");
        progress("starting global", "ready", || {
            self.procs
                .spawn("global", Tier::Global, command, &log, ports, None)?;
            let diagnostics = p.global(Port::Diagnostics);
            wait(
                &mut self.procs,
                &["global"],
                "global /ready",
                READY_TIMEOUT,
                || ready(diagnostics),
            )
        })?;
        let ca = self.ca_file();
        if !ca.is_file() {
            bail!("the global wrote no KDS CA at {}", ca.display());
        }
        Ok(())
    }

    /// The KDS CA the global generates in its work dir, which zones trust.
    fn ca_file(&self) -> PathBuf {
        self.state.join("global").join("kds-ca.crt")
    }

    fn zone_name(zone: u16) -> String {
        format!("zone-{zone}")
    }

    fn start_zones(&mut self) -> Result<()> {
        let names: Vec<String> = (1..=ZONES).map(Lab::zone_name).collect();
        let label = format!("starting {}", names.join(", "));
        let kds = format!("grpcs://127.0.0.1:{}", self.ports.global(Port::Kds));
        let global_api = self.ports.global(Port::Api);
        // A kept store remembers earlier connections: only a new one counts as Online.
        let earlier: Vec<Vec<String>> = names
            .iter()
            .map(|name| {
                subscription_ids(
                    global_api,
                    &format!("/zones/{name}/_overview"),
                    "zoneInsight",
                )
            })
            .collect();
        progress(&label, "ready", || {
            for zone in 1..=ZONES {
                let name = Lab::zone_name(zone);
                let mut command = Command::new(&self.bins()?.zone);
                command.arg("run");
                clean_env(&mut command);
                let p = self.ports;
                command
                    .env("KUMA_MULTIZONE_ZONE_NAME", &name)
                    .env("KUMA_MULTIZONE_ZONE_GLOBAL_ADDRESS", &kds)
                    .env("KUMA_MULTIZONE_ZONE_KDS_ROOT_CA_FILE", self.ca_file())
                    .env(
                        "KUMA_MULTIZONE_ZONE_KDS_AUTH_TOKEN_PATH",
                        self.token_path(&name, "cp"),
                    )
                    .env("KUMA_GENERAL_WORK_DIR", self.state.join(&name))
                    .env("KUMA_API_SERVER_HTTP_INTERFACE", "127.0.0.1");
                let settings = [
                    ("KUMA_API_SERVER_HTTP_PORT", Port::Api),
                    ("KUMA_DIAGNOSTICS_SERVER_PORT", Port::Diagnostics),
                    ("KUMA_XDS_SERVER_GRPC_PORT", Port::Xds),
                    ("KUMA_BOOTSTRAP_SERVER_PORT", Port::Bootstrap),
                    ("KUMA_DNS_SERVER_PORT", Port::Dns),
                    ("KUMA_MONITORING_ASSIGNMENT_SERVER_PORT", Port::Mads),
                    ("KUMA_ADMIN_SERVER_LOCAL_PORT", Port::Admin),
                ];
                for (key, port) in settings {
                    command.env(key, p.zone(zone, port).to_string());
                }
                let ports = settings
                    .map(|(_, port)| (port.label(), p.zone(zone, port)))
                    .to_vec();
                let log = self.log(&name);
                self.procs
                    .spawn(&name, Tier::Zone, command, &log, ports, None)?;
            }
            for zone in 1..=ZONES {
                let name = Lab::zone_name(zone);
                let diagnostics = self.ports.zone(zone, Port::Diagnostics);
                wait(
                    &mut self.procs,
                    &[&name],
                    &format!("{name} /ready"),
                    READY_TIMEOUT,
                    || ready(diagnostics),
                )?;
            }
            Ok(())
        })?;
        for zone in 1..=ZONES {
            let name = Lab::zone_name(zone);
            self.configure_kumactl(&name, self.ports.zone(zone, Port::Api))?;
        }
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        progress(
            "waiting for the zones to be Online on the global",
            "online",
            || {
                for (name, earlier) in names.iter().zip(&earlier) {
                    wait(
                        &mut self.procs,
                        &refs,
                        &format!("{name} Online on the global"),
                        SYNC_TIMEOUT,
                        || {
                            let overview =
                                http::get_json(global_api, &format!("/zones/{name}/_overview"))?;
                            if !insight_online(&overview, "zoneInsight", earlier) {
                                bail!("{name} is Offline");
                            }
                            Ok(())
                        },
                    )?;
                }
                Ok(())
            },
        )?;
        progress(
            "waiting for the mesh with mTLS in the zones",
            "synced",
            || {
                for zone in 1..=ZONES {
                    let name = Lab::zone_name(zone);
                    let api = self.ports.zone(zone, Port::Api);
                    wait(
                        &mut self.procs,
                        &refs,
                        &format!("mesh {MESH} with mTLS in {name}"),
                        SYNC_TIMEOUT,
                        || {
                            let mesh = http::get_json(api, &format!("/meshes/{MESH}"))?;
                            match mesh.pointer("/mtls/enabledBackend").and_then(Value::as_str) {
                                Some(backend) if !backend.is_empty() => Ok(()),
                                _ => bail!("mesh {MESH} in {name} has no mTLS backend enabled yet"),
                            }
                        },
                    )?;
                }
                Ok(())
            },
        )
    }

    // === kumactl and tokens ===

    fn kumactl_config(&self, cp: &str) -> PathBuf {
        self.state.join("kumactl").join(format!("{cp}.yaml"))
    }

    fn configure_kumactl(&self, cp: &str, api: u16) -> Result<()> {
        let address = format!("http://127.0.0.1:{api}");
        self.kumactl(
            cp,
            &[
                "config",
                "control-planes",
                "add",
                "--name",
                cp,
                "--address",
                &address,
                "--overwrite",
            ],
        )
        .map(drop)
    }

    /// `kumactl ARGS` against control plane `cp` (its own config file); its stdout.
    fn kumactl(&self, cp: &str, args: &[&str]) -> Result<String> {
        let mut command = Command::new(&self.bins()?.kumactl);
        command
            .arg("--config-file")
            .arg(self.kumactl_config(cp))
            .args(["--api-timeout", "30s"])
            .args(args);
        clean_env(&mut command);
        let out = cmd::quiet(&mut command)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn token_path(&self, name: &str, scope: &str) -> PathBuf {
        self.state
            .join("tokens")
            .join(format!("{name}-{scope}.token"))
    }

    /// A zone token of `scope` for zone `zone`, issued by the global; a token from an earlier
    /// start is kept when `keep` (the global's store, and so its signing key, was kept) and it
    /// is not old.
    fn zone_token(&self, zone: u16, scope: &str, keep: bool) -> Result<()> {
        let name = Lab::zone_name(zone);
        let path = self.token_path(&name, scope);
        let young = fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| SystemTime::now().duration_since(modified).ok())
            .is_some_and(|age| age < TOKEN_RENEW_AFTER);
        if keep && young {
            return Ok(());
        }
        let token = self.kumactl(
            "global",
            &[
                "generate",
                "zone-token",
                "--zone",
                &name,
                "--scope",
                scope,
                "--valid-for",
                TOKEN_VALID_FOR,
            ],
        )?;
        write_secret(&path, token.trim())
    }

    /// The Mesh `default` with a builtin CA: cross-zone traffic needs mTLS.
    fn apply_mesh(&self) -> Result<()> {
        let path = self.state.join("mesh.yaml");
        fs::write(
            &path,
            format!(
                "# Applied on the global by `cargo xtask lab`: cross-zone traffic needs mTLS.\n\
                 type: Mesh\nname: {MESH}\nmtls:\n  enabledBackend: ca-1\n  backends:\n    - name: ca-1\n      type: builtin\n"
            ),
        )
        .with_context(|| format!("writing {}", path.display()))?;
        let path_text = path.to_string_lossy().into_owned();
        progress(
            &format!("applying mesh {MESH} with builtin mTLS on the global"),
            "done",
            || {
                self.kumactl("global", &["apply", "-f", &path_text])
                    .map(drop)
            },
        )
    }

    // === proxies ===

    fn start_ingresses(&mut self) -> Result<()> {
        for zone in 1..=ZONES {
            let name = format!("ingress-{zone}");
            let port = self.ports.zone(zone, Port::Ingress);
            let yaml = format!(
                "type: ZoneIngress\nname: {name}\nnetworking:\n  address: 127.0.0.1\n  port: {port}\n  advertisedAddress: 127.0.0.1\n  advertisedPort: {port}\n"
            );
            let token = self.token_path(&Lab::zone_name(zone), "ingress");
            let admin = self.ports.zone(zone, Port::IngressAdmin);
            let ports = vec![
                (Port::Ingress.label(), port),
                (Port::IngressAdmin.label(), admin),
            ];
            progress(&format!("starting {name} in zone-{zone}"), "online", || {
                let api = self.ports.zone(zone, Port::Api);
                let path = format!("/zoneingresses/{name}/_overview");
                let insight = "zoneIngressInsight";
                let earlier = subscription_ids(api, &path, insight);
                self.start_dp(zone, &name, "ingress", &yaml, &token, admin, ports)?;
                self.wait_proxy(&name, admin, api, &path, insight, &earlier)
            })?;
        }
        Ok(())
    }

    /// The demo: the applications (served by this process) and their sidecars, the backend
    /// in zone-2 first.
    fn start_demo(&mut self) -> Result<()> {
        let demo = [
            (BACKEND_ZONE, "backend", None),
            (
                FRONTEND_ZONE,
                "frontend",
                Some(self.ports.zone(FRONTEND_ZONE, Port::Outbound)),
            ),
        ];
        for (zone, service, outbound) in demo {
            let name = format!("{service}-1");
            let zone_name = Lab::zone_name(zone);
            let app = self.ports.zone(zone, Port::App);
            http::serve_text(app, format!("hello from {name} in {zone_name}"))?;
            let inbound = self.ports.zone(zone, Port::Inbound);
            let admin = self.ports.zone(zone, Port::SidecarAdmin);
            let mut yaml = format!(
                "type: Dataplane\nmesh: {MESH}\nname: {name}\nnetworking:\n  address: 127.0.0.1\n  inbound:\n    - port: {inbound}\n      servicePort: {app}\n      tags:\n        kuma.io/service: {service}\n        kuma.io/protocol: http\n"
            );
            let mut ports = vec![
                (Port::App.label(), app),
                (Port::Inbound.label(), inbound),
                (Port::SidecarAdmin.label(), admin),
            ];
            if let Some(outbound) = outbound {
                let _ = write!(
                    yaml,
                    "  outbound:\n    - port: {outbound}\n      tags:\n        kuma.io/service: backend\n"
                );
                ports.push((Port::Outbound.label(), outbound));
            }
            progress(&format!("starting {name} in {zone_name}"), "online", || {
                // Dataplane tokens are issued anew on each start: cheap, and they stay valid
                // whatever the zone did with its signing keys meanwhile.
                let token = self.kumactl(
                    &zone_name,
                    &[
                        "generate",
                        "dataplane-token",
                        "--name",
                        &name,
                        "--mesh",
                        MESH,
                        "--valid-for",
                        TOKEN_VALID_FOR,
                    ],
                )?;
                let token_file = self.token_path(&name, "dataplane");
                write_secret(&token_file, token.trim())?;
                let api = self.ports.zone(zone, Port::Api);
                let path = format!("/meshes/{MESH}/dataplanes/{name}/_overview");
                let insight = "dataplaneInsight";
                let earlier = subscription_ids(api, &path, insight);
                self.start_dp(zone, &name, "dataplane", &yaml, &token_file, admin, ports)?;
                self.wait_proxy(&name, admin, api, &path, insight, &earlier)
            })?;
        }
        Ok(())
    }

    /// Starts `kuma-dp run` for the proxy `name` of zone `zone` with the resource `yaml`.
    #[allow(clippy::too_many_arguments)]
    fn start_dp(
        &mut self,
        zone: u16,
        name: &str,
        proxy_type: &str,
        yaml: &str,
        token: &Path,
        admin: u16,
        ports: Vec<(&'static str, u16)>,
    ) -> Result<()> {
        let dir = self.state.join("dp").join(name);
        let work = dir.join("work");
        fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
        let resource = dir.join(format!("{proxy_type}.yaml"));
        fs::write(&resource, yaml).with_context(|| format!("writing {}", resource.display()))?;
        let bins = self.bins()?;
        let mut command = Command::new(&bins.dp);
        command
            .args(["run", "--proxy-type", proxy_type, "--name", name])
            .arg("--cp-address")
            .arg(format!(
                "http://127.0.0.1:{}",
                self.ports.zone(zone, Port::Bootstrap)
            ))
            .arg("--dataplane-token-file")
            .arg(token)
            .arg("--dataplane-file")
            .arg(&resource)
            .arg("--admin-port")
            .arg(admin.to_string())
            .arg("--binary-path")
            .arg(&bins.envoy)
            .arg("--work-dir")
            .arg(&work)
            .args(["--drain-time", DRAIN_TIME]);
        if proxy_type == "dataplane" {
            command.args(["--mesh", MESH]);
        }
        clean_env(&mut command);
        let log = self.log(name);
        let marker = work.to_string_lossy().into_owned();
        self.procs
            .spawn(name, Tier::Proxy, command, &log, ports, Some(marker))?;
        Ok(())
    }

    /// Waits until the Envoy of `name` is LIVE and the zone (API `api`, overview `path`)
    /// shows it Online with a subscription not among `earlier`.
    fn wait_proxy(
        &mut self,
        name: &str,
        admin: u16,
        api: u16,
        path: &str,
        insight: &str,
        earlier: &[String],
    ) -> Result<()> {
        wait(
            &mut self.procs,
            &[name],
            &format!("the Envoy of {name} LIVE"),
            PROXY_TIMEOUT,
            || {
                let response = http::get(admin, "/ready")?;
                match response.body.trim() {
                    "LIVE" => Ok(()),
                    state => bail!("Envoy says {state:?}"),
                }
            },
        )?;
        wait(
            &mut self.procs,
            &[name],
            &format!("{name} Online in its zone"),
            PROXY_TIMEOUT,
            || {
                let overview = http::get_json(api, path)?;
                if !insight_online(&overview, insight, earlier) {
                    bail!("{name} is Offline");
                }
                Ok(())
            },
        )
    }

    // === the summary and the cross-zone check ===

    fn curl_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/",
            self.ports.zone(FRONTEND_ZONE, Port::Outbound)
        )
    }

    fn print_summary(&self) {
        let api = self.ports.global(Port::Api);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nthe lab is up (state dir {})\n",
            self.state.display()
        );
        let gui_note = match http::get(api, "/gui") {
            Ok(response) if response.status < 400 => "",
            _ => "  (not answering: see .lab/logs/global.log)",
        };
        let _ = writeln!(
            out,
            "  GUI  http://127.0.0.1:{api}/gui{gui_note}  (each zone's own: http://127.0.0.1:{}/gui, http://127.0.0.1:{}/gui)",
            self.ports.zone(FRONTEND_ZONE, Port::Api),
            self.ports.zone(BACKEND_ZONE, Port::Api)
        );
        let _ = writeln!(out, "  API  http://127.0.0.1:{api}/");
        let _ = writeln!(
            out,
            "  kumactl: {} --config-file {} inspect zones",
            self.bins
                .as_ref()
                .map(|b| b.kumactl.display().to_string())
                .unwrap_or_else(|| "kumactl".to_owned()),
            self.kumactl_config("global").display()
        );
        let _ = writeln!(out);
        let rows: Vec<[String; 4]> = self
            .procs
            .iter()
            .map(|p: &Proc| {
                [
                    p.name.clone(),
                    p.pid().to_string(),
                    p.ports
                        .iter()
                        .map(|(label, port)| format!("{label} {port}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    relative(&p.log),
                ]
            })
            .collect();
        let header = [
            "PROCESS".to_owned(),
            "PID".to_owned(),
            "PORTS".to_owned(),
            "LOG".to_owned(),
        ];
        let widths: Vec<usize> = (0..3)
            .map(|i| {
                rows.iter()
                    .map(|r| r[i].len())
                    .chain([header[i].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in std::iter::once(&header).chain(&rows) {
            let _ = writeln!(
                out,
                "  {:<w0$}  {:<w1$}  {:<w2$}  {}",
                row[0],
                row[1],
                row[2],
                row[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2]
            );
        }
        let _ = writeln!(
            out,
            "  (the frontend and backend applications are served by this process, on their app ports)"
        );
        let _ = writeln!(
            out,
            "\nzone-{FRONTEND_ZONE} frontend -> zone-{BACKEND_ZONE} ingress -> backend:\n  curl {}",
            self.curl_url()
        );
        print!("{out}");
        let _ = std::io::stdout().flush();
    }

    /// Polls the cross-zone request until it answers the backend, and says whether it did.
    fn check_cross_zone(&mut self) {
        let port = self.ports.zone(FRONTEND_ZONE, Port::Outbound);
        let start = Instant::now();
        print!("checking the cross-zone path... ");
        let _ = std::io::stdout().flush();
        let result = wait(
            &mut self.procs,
            &[],
            "the cross-zone request",
            PATH_TIMEOUT,
            || {
                let response = http::get(port, "/")?;
                let body = response.body.trim();
                if response.status == 200 && body.contains("backend") {
                    Ok(())
                } else {
                    bail!("{} {body}", response.status)
                }
            },
        );
        match result {
            Ok(()) => {
                let body = http::get(port, "/")
                    .map(|r| r.body.trim().to_owned())
                    .unwrap_or_default();
                println!("cross-zone path ready ({}): {body}", secs(start));
            }
            Err(error) => {
                println!("FAILED: {error:#}");
                for name in [
                    "frontend-1".to_owned(),
                    format!("ingress-{BACKEND_ZONE}"),
                    "backend-1".to_owned(),
                ] {
                    if let Some(proc) = self.procs.get(&name) {
                        println!("{}", proc.log_tail(20));
                    }
                }
                println!(
                    "(the lab keeps running for a look around; the logs are in {})",
                    self.state.join("logs").display()
                );
            }
        }
    }
}

/// Runs `step`, printing `what... done (1.2s)` or `what... FAILED`.
fn progress<T>(what: &str, done: &str, step: impl FnOnce() -> Result<T>) -> Result<T> {
    print!("{what}... ");
    let _ = std::io::stdout().flush();
    let start = Instant::now();
    match step() {
        Ok(value) => {
            println!("{done} ({})", secs(start));
            Ok(value)
        }
        Err(error) => {
            println!(
                "{}",
                if cmd::interrupted() {
                    "interrupted"
                } else {
                    "FAILED"
                }
            );
            Err(error)
        }
    }
}

fn secs(start: Instant) -> String {
    format!("{:.1}s", start.elapsed().as_secs_f64())
}

/// Polls `check` until it succeeds. Fails when a child exits meanwhile (with its log tail),
/// on interrupt, or after `timeout` (with the last reason and the tails of `logs`).
fn wait(
    procs: &mut Procs,
    logs: &[&str],
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<()>,
) -> Result<()> {
    let start = Instant::now();
    loop {
        cmd::check_interrupted()?;
        if let Some((proc, status)) = procs.first_exited() {
            bail!(
                "{} exited ({status}) while waiting for {what}\n{}",
                proc.name,
                proc.log_tail(TAIL_LINES)
            );
        }
        let last = match check() {
            Ok(()) => return Ok(()),
            Err(error) => format!("{error:#}"),
        };
        if start.elapsed() > timeout {
            let mut message = format!("{what}: not within {timeout:?}; last: {last}");
            for name in logs {
                if let Some(proc) = procs.get(name) {
                    let _ = write!(message, "\n{}", proc.log_tail(TAIL_LINES));
                }
            }
            bail!(message);
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// `Ok` when `GET /ready` on the diagnostics port answers 200.
fn ready(diagnostics: u16) -> Result<()> {
    let response = http::get(diagnostics, "/ready")?;
    if response.status != 200 {
        bail!("/ready: {} {}", response.status, response.body.trim());
    }
    Ok(())
}

/// The ids of the subscriptions in the overview at `path` (none when there is no such
/// resource yet).
fn subscription_ids(api: u16, path: &str, insight: &str) -> Vec<String> {
    http::get_json(api, path)
        .ok()
        .and_then(|overview| {
            overview
                .pointer(&format!("/{insight}/subscriptions"))
                .and_then(Value::as_array)
                .map(|subs| {
                    subs.iter()
                        .filter_map(|s| s.get("id").and_then(Value::as_str))
                        .map(str::to_owned)
                        .collect()
                })
        })
        .unwrap_or_default()
}

/// Whether an overview (`/zones/{name}/_overview`, ...) shows its zone or proxy connected:
/// the newest subscription of `insight` is not one of `earlier` (a kept store remembers old
/// connections, whose disconnect may not have been written), has connected and has not
/// disconnected; and a zone is not disabled.
fn insight_online(overview: &Value, insight: &str, earlier: &[String]) -> bool {
    let enabled = overview
        .pointer("/zone/enabled")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let newest = overview
        .pointer(&format!("/{insight}/subscriptions"))
        .and_then(Value::as_array)
        .and_then(|subs| subs.last());
    enabled
        && newest.is_some_and(|s| {
            s.get("id")
                .and_then(Value::as_str)
                .is_none_or(|id| !earlier.iter().any(|e| e == id))
                && s.get("connectTime").is_some_and(|t| !t.is_null())
                && s.get("disconnectTime").is_none_or(Value::is_null)
        })
}

/// Removes every `KUMA_*` variable from the child's environment: the lab's settings must not
/// mix with the caller's (a `KUMA_STORE_TYPE=postgres` in the shell, ...).
fn clean_env(command: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("KUMA_") {
            command.env_remove(key);
        }
    }
}

/// Writes a token to `path` (mode 0600).
fn write_secret(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if text.is_empty() {
        bail!("kumactl printed no token for {}", path.display());
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut file = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// `path` relative to the current directory when it is under it.
fn relative(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_owned())
        .display()
        .to_string()
}

/// `<state>/lab.pid`: one lab per state dir. Removed when dropped.
struct Lock {
    path: PathBuf,
}

impl Lock {
    fn take(state: &Path) -> Result<Lock> {
        let path = state.join("lab.pid");
        if let Ok(text) = fs::read_to_string(&path)
            && let Ok(pid) = text.trim().parse::<u32>()
            && pid != std::process::id()
            && procs::alive(pid)
            && is_lab(&procs::cmdline(pid))
        {
            bail!(
                "another lab (pid {pid}) runs on the state dir {}: stop it (Ctrl-C), or pass another --state-dir",
                state.display()
            );
        }
        fs::write(&path, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(Lock { path })
    }
}

/// Whether a command line is `.../xtask lab ...`.
fn is_lab(cmdline: &str) -> bool {
    let mut words = cmdline.split_whitespace();
    words
        .next()
        .is_some_and(|program| program.ends_with("xtask"))
        && words.any(|word| word == "lab")
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        lab: LabArgs,
    }

    fn parse(args: &[&str]) -> Result<LabArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("lab").chain(args.iter().copied())).map(|c| c.lab)
    }

    #[test]
    fn the_defaults_are_a_release_build_standard_ports_and_the_default_state_dir() {
        let args = parse(&[]).expect("no arguments");
        assert_eq!(
            args,
            LabArgs {
                state_dir: None,
                port_base: 0,
                debug: false,
                no_build: false,
            }
        );
    }

    #[test]
    fn every_option_is_read() {
        let args = parse(&[
            "--state-dir",
            "/tmp/lab",
            "--port-base",
            "30000",
            "--debug",
            "--no-build",
        ])
        .expect("all options");
        assert_eq!(args.state_dir, Some(PathBuf::from("/tmp/lab")));
        assert_eq!(args.port_base, 30000);
        assert!(args.debug && args.no_build);
    }

    #[test]
    fn a_port_base_that_is_no_port_is_refused() {
        assert!(parse(&["--port-base", "70000"]).is_err());
        assert!(parse(&["--port-base", "x"]).is_err());
    }

    #[test]
    fn the_lock_belongs_to_an_xtask_lab_only() {
        assert!(is_lab("/t/debug/xtask lab --debug"));
        assert!(!is_lab("/t/debug/xtask test"));
        assert!(!is_lab("vim lab"));
        assert!(!is_lab(""));
    }

    #[test]
    fn online_means_a_new_newest_subscription_that_is_connected() {
        use serde_json::json;
        let overview = |subs: Value| json!({"zone": {}, "zoneInsight": {"subscriptions": subs}});
        let online = |overview: &Value, earlier: &[&str]| {
            let earlier: Vec<String> = earlier.iter().map(|e| e.to_string()).collect();
            insight_online(overview, "zoneInsight", &earlier)
        };
        let connected = json!({"id": "b", "connectTime": "2026-01-01T00:02:00Z"});
        let closed = json!({"id": "a", "connectTime": "2026-01-01T00:00:00Z", "disconnectTime": "2026-01-01T00:01:00Z"});
        assert!(online(&overview(json!([connected])), &[]));
        assert!(online(&overview(json!([closed, connected])), &["a"]));
        assert!(!online(&overview(json!([connected, closed])), &[]));
        assert!(!online(&overview(json!([])), &[]));
        // An old connection whose disconnect was never written does not count.
        assert!(!online(&overview(json!([closed, connected])), &["a", "b"]));
        assert!(!insight_online(&json!({}), "dataplaneInsight", &[]));
        let disabled =
            json!({"zone": {"enabled": false}, "zoneInsight": {"subscriptions": [connected]}});
        assert!(!online(&disabled, &[]));
    }
}
