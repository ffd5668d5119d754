//! `cargo xtask lab` end to end: the built xtask binary (`<target>/debug/xtask`, which
//! `cargo xtask test` itself is) runs the lab with the debug binaries already built
//! (`--debug --no-build`), on a free port range (`--port-base`) and a temp state dir. The test
//! waits for the printed curl, makes that cross-zone request (zone-1 frontend -> zone-2
//! ingress -> backend), stops the lab with SIGINT and checks that nothing it started is left;
//! then starts it again on the same state dir.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use support::dp::{alive, envoy_binary, signal};

/// Ports the lab uses with a port base: 16 for the global and for each of its two zones.
const SPAN: u16 = 48;
/// How long the lab may take to come up (debug binaries, two zones, four Envoys).
const UP: Duration = Duration::from_secs(180);
/// How long it may take to stop after SIGINT.
const DOWN: Duration = Duration::from_secs(90);

/// `<target>/debug/xtask`, next to `<target>/debug/deps/<this test>`.
fn xtask_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the test executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in <target>/<profile>/deps");
    let bin = profile_dir.join(format!("xtask{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "xtask is not built: {} is missing; run `cargo build -p xtask -p global -p zone -p ctl -p dp` (`cargo xtask test` builds them)",
        bin.display()
    );
    bin
}

/// A base below the kernel's ephemeral range whose SPAN ports are free (TCP, and UDP for DNS).
fn free_base() -> u16 {
    let first = std::process::id() % 200;
    (0..200)
        .map(|i| 20_000 + ((first + i) % 200) as u16 * SPAN)
        .find(|base| {
            (*base..*base + SPAN).all(|port| {
                TcpListener::bind(("127.0.0.1", port)).is_ok()
                    && UdpSocket::bind(("127.0.0.1", port)).is_ok()
            })
        })
        .expect("a free range of 48 ports between 20000 and 29600")
}

/// A running `xtask lab`, its output (stdout and stderr) read line by line.
struct Lab {
    child: Child,
    lines: Receiver<String>,
    output: Vec<String>,
}

impl Lab {
    fn start(state: &Path, base: u16) -> Lab {
        let bin = xtask_binary();
        let target = bin
            .parent()
            .and_then(Path::parent)
            .expect("<target>/<profile>/xtask");
        let mut child = Command::new(&bin)
            .args(["lab", "--debug", "--no-build", "--port-base"])
            .arg(base.to_string())
            .arg("--state-dir")
            .arg(state)
            .env("ENVOY_BINARY", envoy_binary())
            // The lab finds the binaries where this test's were built.
            .env("CARGO_TARGET_DIR", target)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx2.send(format!("[stderr] {line}"));
            }
        });
        Lab {
            child,
            lines,
            output: Vec::new(),
        }
    }

    fn transcript(&self) -> String {
        self.output.join("\n")
    }

    /// Reads output until a line matches `want`; fails on a line saying FAILED, on the end
    /// of the output, or after `deadline`.
    fn wait_line(&mut self, deadline: Duration, want: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let left = deadline.saturating_sub(start.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.output.push(line.clone());
                    assert!(
                        !line.contains("FAILED"),
                        "the lab failed:\n{}",
                        self.transcript()
                    );
                    if want(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no such line within {deadline:?}:\n{}", self.transcript())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    panic!(
                        "the lab ended ({status:?}) before the line:\n{}",
                        self.transcript()
                    )
                }
            }
        }
    }

    /// SIGINT, as Ctrl-C in a terminal, then waits for the exit.
    fn interrupt(&mut self) -> ExitStatus {
        signal(self.child.id(), "INT");
        let mut status = None;
        let _ = poll_until(DOWN, || {
            while let Ok(line) = self.lines.try_recv() {
                self.output.push(line);
            }
            status = self.child.try_wait().expect("wait for the lab");
            status.map(|_| ()).ok_or_else(String::new)
        });
        let Some(status) = status else {
            panic!(
                "the lab did not exit within {DOWN:?} of SIGINT:\n{}",
                self.transcript()
            );
        };
        // The rest of the output (the reader threads end with the pipes).
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.output.push(line);
        }
        status
    }
}

impl Drop for Lab {
    /// A failing test still stops the lab (SIGINT, so that it stops its children), and
    /// SIGKILLs it when it does not exit.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            signal(self.child.id(), "INT");
            let exited = poll_until(DOWN, || match self.child.try_wait() {
                Ok(Some(_)) => Ok(()),
                _ => Err(String::new()),
            });
            if exited.is_err() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// `GET url` (`http://127.0.0.1:PORT/`): status and body.
fn get(url: &str) -> Result<(u16, String), String> {
    let rest = url
        .strip_prefix("http://127.0.0.1:")
        .ok_or_else(|| format!("not a loopback URL: {url}"))?;
    let (port, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("not a loopback URL: {url}"))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no headers: {text}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no status: {head}"))?;
    Ok((status, body.to_string()))
}

/// Processes of this user whose command line or environment names `dir`.
fn processes_naming(dir: &Path) -> Vec<String> {
    let marker = format!("{}/", dir.display());
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me || !alive(pid) {
            continue;
        }
        let read = |file: &str| {
            std::fs::read(entry.path().join(file))
                .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
                .unwrap_or_default()
        };
        let cmdline = read("cmdline");
        if cmdline.contains(&marker) || read("environ").contains(&marker) {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}

/// Polls `check` every 100 ms until it returns `Ok`; after `deadline`, its last `Err`.
fn poll_until(
    deadline: Duration,
    mut check: impl FnMut() -> Result<(), String>,
) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let last = match check() {
            Ok(()) => return Ok(()),
            Err(why) => why,
        };
        if start.elapsed() >= deadline {
            return Err(last);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// [`poll_until`], failing the test with `what` after `deadline`.
fn eventually(deadline: Duration, what: &str, check: impl FnMut() -> Result<(), String>) {
    if let Err(last) = poll_until(deadline, check) {
        panic!("{what}: not within {deadline:?}; last: {last}");
    }
}

/// One lab run: up, the cross-zone request answered by the backend in zone-2, SIGINT, exit
/// 0, nothing left behind.
fn round(state: &Path, base: u16) {
    let mut lab = Lab::start(state, base);
    let gui = lab.wait_line(UP, |line| line.trim_start().starts_with("GUI "));
    let gui = gui
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let curl = lab.wait_line(UP, |line| line.trim_start().starts_with("curl http://"));
    let url = curl.trim().trim_start_matches("curl ").to_string();
    lab.wait_line(UP, |line| line.contains("cross-zone path ready"));
    eventually(
        Duration::from_secs(30),
        "the cross-zone request answered by the backend",
        || match get(&url)? {
            (200, body) if body.contains("backend") && body.contains("zone-2") => Ok(()),
            (status, body) => Err(format!("{status}: {body}")),
        },
    );

    // The printed GUI address shows both zones online, the cross-zone path and the backend
    // reached through zone-2's ingress.
    eventually(
        Duration::from_secs(30),
        "the GUI's overview shows both zones and the cross-zone path",
        || {
            let (status, body) = get(&gui)?;
            let want = [
                r#"data-kind="zone" data-name="zone-1" data-status="online""#,
                r#"data-kind="zone" data-name="zone-2" data-status="online""#,
                r#"<tr data-path="frontend-1-backend">"#,
            ];
            match want.iter().find(|w| !body.contains(**w)) {
                None if status == 200 => Ok(()),
                missing => Err(format!("{status}, missing {missing:?}")),
            }
        },
    );
    let (status, services) = get(&format!("{gui}/services")).expect("the GUI's services");
    assert_eq!(status, 200);
    assert!(
        services.contains(r#"<tr data-service="backend" data-zone="zone-2">"#)
            && services.contains("ingress-2 ("),
        "{services}"
    );

    let status = lab.interrupt();
    assert!(
        status.success(),
        "the lab exited with {status} after SIGINT:\n{}",
        lab.transcript()
    );
    eventually(
        Duration::from_secs(10),
        "no process of the lab left",
        || match processes_naming(state).as_slice() {
            [] => Ok(()),
            left => Err(left.join("\n")),
        },
    );
    eventually(Duration::from_secs(10), "every lab port closed", || {
        let open: Vec<u16> = (base..base + SPAN)
            .filter(|port| {
                TcpStream::connect_timeout(
                    &SocketAddr::from(([127, 0, 0, 1], *port)),
                    Duration::from_millis(200),
                )
                .is_ok()
            })
            .collect();
        if open.is_empty() {
            Ok(())
        } else {
            Err(format!("still accepting: {open:?}"))
        }
    });
}

#[test]
fn e2e_lab_serves_the_cross_zone_path_stops_on_sigint_and_starts_again_on_its_state() {
    let state = tempfile::Builder::new()
        .prefix("kuma-e2e-lab-")
        .tempdir()
        .expect("temp dir");
    let base = free_base();
    round(state.path(), base);
    let ca = std::fs::read(state.path().join("global").join("kds-ca.crt")).expect("the KDS CA");
    let token =
        std::fs::read(state.path().join("tokens").join("zone-1-cp.token")).expect("zone-1's token");
    assert!(
        state.path().join("logs").join("global.log").is_file(),
        "no global log in the state dir"
    );

    // The same state dir again: the same stores, KDS CA and zone tokens.
    round(state.path(), base);
    assert_eq!(
        std::fs::read(state.path().join("global").join("kds-ca.crt")).expect("the KDS CA"),
        ca,
        "the second start made a new KDS CA"
    );
    assert_eq!(
        std::fs::read(state.path().join("tokens").join("zone-1-cp.token")).expect("token"),
        token,
        "the second start issued a new zone token"
    );
}
