//! A PostgreSQL for the tests: the one named by `DATABASE_URL`, or a throwaway cluster from
//! local PostgreSQL binaries, or a container from a local `postgres:15` image. Whatever this
//! module starts, it stops and removes when the returned value is dropped, also after a
//! failure or Ctrl-C.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cmd;

/// The image used when no local binaries exist. It is never pulled (no registry is reachable).
const DOCKER_IMAGE: &str = "postgres:15";
/// The OS user that runs the cluster when we are root (initdb refuses to run as root).
const PG_USER: &str = "postgres";
const READY_TIMEOUT: Duration = Duration::from_secs(60);

const NO_POSTGRES: &str = "no PostgreSQL for the tests. Provide one of:\n\
    \x20 1. DATABASE_URL=postgres://USER@HOST:PORT/DB naming a server the tests may use;\n\
    \x20 2. local PostgreSQL binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql/*/bin\n\
    \x20    (Debian: apt-get install postgresql-15);\n\
    \x20 3. Docker with a local image named postgres:15 (it is not pulled).";

/// A running PostgreSQL; dropping it stops and removes what was started.
pub struct Postgres {
    url: String,
    description: String,
    _owned: Option<Box<dyn Owned>>,
}

/// Something started for the tests, torn down on drop.
trait Owned {}

impl Postgres {
    /// `postgres://…` to connect to, with a database the tests may use.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Where it came from, for messages.
    pub fn description(&self) -> &str {
        &self.description
    }
}

/// `DATABASE_URL` if set; else a throwaway server.
pub fn for_tests() -> Result<Postgres> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Ok(Postgres {
            description: "DATABASE_URL from the environment".to_owned(),
            url,
            _owned: None,
        }),
        _ => throwaway(),
    }
}

/// A new, empty server: a local cluster if PostgreSQL's binaries are here, else a container
/// from a local `postgres:15` image; else an error naming the three options.
pub fn throwaway() -> Result<Postgres> {
    if let Some(bin_dir) = find_local_binaries() {
        let cluster = LocalCluster::start(&bin_dir)?;
        return Ok(Postgres {
            url: url_for_port(cluster.port),
            description: format!(
                "throwaway cluster from {} in {}",
                bin_dir.display(),
                cluster.dir.display()
            ),
            _owned: Some(Box::new(cluster)),
        });
    }
    if docker_image_present(DOCKER_IMAGE) {
        let container = Container::start(DOCKER_IMAGE)?;
        return Ok(Postgres {
            url: url_for_port(container.port),
            description: format!("container {} from image {DOCKER_IMAGE}", container.name),
            _owned: Some(Box::new(container)),
        });
    }
    bail!("{NO_POSTGRES}")
}

/// `url` with its password, if any, replaced by `*****`, for logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:*****{}", &rest[at..]),
        None => url.to_owned(),
    }
}

fn url_for_port(port: u16) -> String {
    format!("postgres://{PG_USER}@127.0.0.1:{port}/postgres")
}

/// A port that was free a moment ago, on 127.0.0.1.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

fn accepts_tcp(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

// === local binaries ===

/// The directory holding `initdb` and `pg_ctl`: from `PATH` first, else the newest of
/// `/usr/lib/postgresql/*/bin` (15 if present).
fn find_local_binaries() -> Option<PathBuf> {
    if let (Some(initdb), Some(_)) = (cmd::find_on_path("initdb"), cmd::find_on_path("pg_ctl")) {
        // PATH may hold symlinks; the real directory also has pg_isready and postgres.
        let initdb = fs::canonicalize(&initdb).unwrap_or(initdb);
        if let Some(dir) = initdb
            .parent()
            .filter(|d| cmd::is_executable(&d.join("pg_ctl")))
        {
            return Some(dir.to_owned());
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            let complete =
                cmd::is_executable(&bin.join("initdb")) && cmd::is_executable(&bin.join("pg_ctl"));
            complete.then_some((version, bin))
        })
        .collect();
    versions.sort();
    pick_version(versions)
}

/// Version 15 when present (the one the project targets), else the newest.
fn pick_version(mut versions: Vec<(u32, PathBuf)>) -> Option<PathBuf> {
    if let Some(i) = versions.iter().position(|(v, _)| *v == 15) {
        return Some(versions.swap_remove(i).1);
    }
    versions.pop().map(|(_, dir)| dir)
}

/// How the PostgreSQL programs are run: directly, or as `postgres` when we are root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RunAs {
    CurrentUser,
    Runuser,
    Su,
}

impl RunAs {
    fn detect() -> Result<Self> {
        let uid = cmd::quiet(Command::new("id").arg("-u"))?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return Ok(Self::CurrentUser);
        }
        if !cmd::works("id", &[PG_USER]) {
            bail!(
                "running as root, and initdb refuses root, but there is no `{PG_USER}` user to run \
                 PostgreSQL as (Debian's postgresql-15 package creates it)"
            );
        }
        Ok(if cmd::find_on_path("runuser").is_some() {
            Self::Runuser
        } else {
            Self::Su
        })
    }

    /// `program args…`, run as the cluster's user.
    fn command(self, program: &Path, args: &[String]) -> Command {
        match self {
            Self::CurrentUser => {
                let mut command = Command::new(program);
                command.args(args);
                command
            }
            Self::Runuser => {
                let mut command = Command::new("runuser");
                command.args(["-u", PG_USER, "--"]).arg(program).args(args);
                command
            }
            Self::Su => {
                let line: Vec<String> = std::iter::once(program.to_string_lossy().into_owned())
                    .chain(args.iter().cloned())
                    .map(|word| shell_quote(&word))
                    .collect();
                let mut command = Command::new("su");
                command.args([PG_USER, "-s", "/bin/sh", "-c", &line.join(" ")]);
                command
            }
        }
    }
}

fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// A cluster in a fresh temporary directory, stopped and deleted on drop.
struct LocalCluster {
    bin: PathBuf,
    run_as: RunAs,
    dir: PathBuf,
    port: u16,
    started: bool,
}

impl Owned for LocalCluster {}

impl LocalCluster {
    fn start(bin: &Path) -> Result<Self> {
        let run_as = RunAs::detect()?;
        // As root, TMPDIR may be somewhere the postgres user cannot enter; /tmp it can.
        let parent = match run_as {
            RunAs::CurrentUser => std::env::temp_dir(),
            RunAs::Runuser | RunAs::Su => PathBuf::from("/tmp"),
        };
        let dir = tempfile::Builder::new()
            .prefix("kuma-rs-pg-")
            .tempdir_in(parent)
            .context("creating a temporary directory for PostgreSQL")?
            .keep();
        // From here on, dropping `cluster` removes the directory (and stops the server).
        let mut cluster = Self {
            bin: bin.to_owned(),
            run_as,
            dir,
            port: 0,
            started: false,
        };
        if run_as != RunAs::CurrentUser {
            cmd::quiet(
                Command::new("chown")
                    .arg(format!("{PG_USER}:{PG_USER}"))
                    .arg(&cluster.dir),
            )?;
        }
        let socket_dir = cluster.dir.join("socket");
        fs::create_dir(&socket_dir).context("creating the socket directory")?;
        if run_as != RunAs::CurrentUser {
            cmd::quiet(
                Command::new("chown")
                    .arg(format!("{PG_USER}:{PG_USER}"))
                    .arg(&socket_dir),
            )?;
        }

        let data = cluster.data_dir();
        cluster.pg_quiet(
            "initdb",
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                PG_USER,
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )?;

        cluster.port = free_port()?;
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200 \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            cluster.port,
            socket_dir.display()
        );
        let log = cluster.dir.join("postgres.log").display().to_string();
        cluster.started = true; // a half-started server is stopped too
        if let Err(error) = cluster.pg_quiet(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-o", &options, "-w", "-t", "60", "start",
            ],
        ) {
            let log_text = fs::read_to_string(&log).unwrap_or_default();
            return Err(error.context(format!("starting PostgreSQL; its log:\n{log_text}")));
        }
        let pg_isready = cluster.bin.join("pg_isready");
        let port = cluster.port.to_string();
        cmd::wait_until("PostgreSQL to accept connections", READY_TIMEOUT, || {
            if cmd::is_executable(&pg_isready) {
                cmd::works(
                    &pg_isready,
                    &["-q", "-h", "127.0.0.1", "-p", &port, "-U", PG_USER],
                )
            } else {
                accepts_tcp(cluster.port)
            }
        })?;
        Ok(cluster)
    }

    fn data_dir(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// Runs one of PostgreSQL's programs as the cluster's user, in the cluster's directory.
    fn pg_command(&self, program: &str, args: &[&str]) -> Command {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let mut command = self.run_as.command(&self.bin.join(program), &args);
        command.current_dir(&self.dir);
        command
    }

    fn pg_quiet(&self, program: &str, args: &[&str]) -> Result<()> {
        cmd::quiet(&mut self.pg_command(program, args)).map(drop)
    }

    /// Stops the server however it can: a fast shutdown, an immediate one, then SIGKILL.
    fn stop(&self) {
        let data = self.data_dir();
        for mode in ["fast", "immediate"] {
            if self
                .pg_quiet(
                    "pg_ctl",
                    &["-D", &data, "-m", mode, "-w", "-t", "30", "stop"],
                )
                .is_ok()
            {
                return;
            }
        }
        let pid_file = self.dir.join("data").join("postmaster.pid");
        if let Some(pid) = fs::read_to_string(pid_file)
            .ok()
            .and_then(|t| t.lines().next().map(str::to_owned))
        {
            let _ = Command::new("kill")
                .args(["-KILL", pid.trim()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if self.started {
            self.stop();
            eprintln!("xtask: stopped PostgreSQL on port {}", self.port);
        }
        if let Err(error) = fs::remove_dir_all(&self.dir) {
            eprintln!("xtask: could not remove {}: {error}", self.dir.display());
        }
    }
}

// === docker ===

fn docker_image_present(image: &str) -> bool {
    cmd::works("docker", &["image", "inspect", image])
}

/// A container removed on drop.
struct Container {
    name: String,
    port: u16,
}

impl Owned for Container {}

impl Container {
    fn start(image: &str) -> Result<Self> {
        let port = free_port()?;
        let container = Self {
            name: format!("kuma-rs-pg-{}", std::process::id()),
            port,
        };
        cmd::quiet(Command::new("docker").args([
            "run",
            "--detach",
            "--rm",
            "--name",
            &container.name,
            "--env",
            "POSTGRES_HOST_AUTH_METHOD=trust",
            "--publish",
            &format!("127.0.0.1:{port}:5432"),
            image,
            "-c",
            "fsync=off",
            "-c",
            "max_connections=200",
        ]))?;
        // The image's entrypoint runs a temporary server on a socket first; the real one
        // is up when it answers on TCP inside the container and through the published port.
        cmd::wait_until(
            "the PostgreSQL container to accept connections",
            READY_TIMEOUT,
            || {
                cmd::works(
                    "docker",
                    &[
                        "exec",
                        &container.name,
                        "pg_isready",
                        "-q",
                        "-h",
                        "127.0.0.1",
                        "-U",
                        PG_USER,
                    ],
                ) && accepts_tcp(port)
            },
        )?;
        Ok(container)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = cmd::output(Command::new("docker").args(["rm", "--force", &self.name]));
        eprintln!("xtask: removed container {}", self.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_15_is_preferred_then_the_newest() {
        let dirs = |versions: &[u32]| -> Vec<(u32, PathBuf)> {
            versions
                .iter()
                .map(|v| (*v, PathBuf::from(format!("/pg/{v}"))))
                .collect()
        };
        assert_eq!(
            pick_version(dirs(&[13, 15, 16])),
            Some(PathBuf::from("/pg/15"))
        );
        assert_eq!(pick_version(dirs(&[13, 14])), Some(PathBuf::from("/pg/14")));
        assert_eq!(pick_version(dirs(&[])), None);
    }

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact("postgres://kuma:s3cret@db:5432/kuma"),
            "postgres://kuma:*****@db:5432/kuma"
        );
        assert_eq!(
            redact("postgres://kuma@db:5432/kuma"),
            "postgres://kuma@db:5432/kuma"
        );
        assert_eq!(redact("postgres://db:5432/a@b"), "postgres://db:5432/a@b");
        assert_eq!(redact("not a url"), "not a url");
    }

    #[test]
    fn the_url_names_the_local_port() {
        assert_eq!(
            url_for_port(54321),
            "postgres://postgres@127.0.0.1:54321/postgres"
        );
    }

    #[test]
    fn su_command_lines_are_quoted() {
        let command = RunAs::Su.command(
            Path::new("/usr/bin/pg_ctl"),
            &["-o".to_owned(), "-p 5 -c a='b'".to_owned()],
        );
        let args: Vec<String> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args[..4], ["postgres", "-s", "/bin/sh", "-c"]);
        assert_eq!(args[4], r"'/usr/bin/pg_ctl' '-o' '-p 5 -c a='\''b'\'''");
    }

    #[test]
    fn the_message_without_postgres_names_all_three_ways() {
        assert!(NO_POSTGRES.contains("DATABASE_URL"));
        assert!(NO_POSTGRES.contains("initdb"));
        assert!(NO_POSTGRES.contains("postgres:15"));
    }
}
