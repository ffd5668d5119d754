//! `kuma-dp` under test: [`KumaDp`] runs the built binary (`cargo build -p dp`) with its
//! stdout and stderr in files, finds the Envoy it started from its log, and sends signals;
//! plus the Envoy binary (`ENVOY_BINARY`) and a small HTTP server to reach through Envoy.
//!
//! On drop, kuma-dp and every Envoy it started are SIGKILLed (Envoy runs in its own process
//! group, so killing kuma-dp alone would leave it behind); a panicking test first gets the
//! tail of both logs on stderr.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::{Instant, sleep};

/// What the test HTTP server answers.
pub const BODY: &str = "hello from the kuma-dp e2e test server";

/// The Envoy binary of the tests; fails (never skips) when `ENVOY_BINARY` is unset.
pub fn envoy_binary() -> String {
    std::env::var("ENVOY_BINARY").unwrap_or_else(|_| {
        panic!(
            "ENVOY_BINARY is not set: run `cargo xtask test`, or `export ENVOY_BINARY=$(cargo xtask envoy | tail -1)`"
        )
    })
}

/// An HTTP/1.1 server answering every request with 200 and [`BODY`]; returns its port.
pub async fn http_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the test HTTP server");
    let port = listener.local_addr().expect("local address").port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut read = Vec::new();
                while !read.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read.extend_from_slice(&buf[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
                    BODY.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    port
}

/// GET `http://127.0.0.1:port/` with a fresh client (no connection kept open afterwards);
/// `Ok` when it answers 200 with [`BODY`].
pub async fn get_body(port: u16) -> Result<(), String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .map_err(|e| e.to_string())?;
    let response = http
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let text = response.text().await.map_err(|e| e.to_string())?;
    if status == 200 && text == BODY {
        Ok(())
    } else {
        Err(format!("{status}: {text}"))
    }
}

/// Whether process `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) state ...": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

/// The child processes of `pid` (from `/proc/{pid}/task/*/children`; none when it is gone).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Sends `signal` (`TERM`, `KILL`, ...) to `pid` with kill(1).
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// A running `kuma-dp`.
pub struct KumaDp {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    status: Option<ExitStatus>,
}

impl KumaDp {
    /// `kuma-dp ARGS` with a clean environment (`PATH`, `HOME`, then `env`), its output in
    /// `<dir>/kuma-dp.out` and `<dir>/kuma-dp.err`.
    pub fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> KumaDp {
        let bin = super::binary("kuma-dp", "dp");
        let stdout = dir.join("kuma-dp.out");
        let stderr = dir.join("kuma-dp.err");
        let out = std::fs::File::create(&stdout).expect("kuma-dp stdout file");
        let err = std::fs::File::create(&stderr).expect("kuma-dp stderr file");
        let child = Command::new(&bin)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", dir)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", bin.display()));
        KumaDp {
            child,
            stdout,
            stderr,
            status: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Both logs.
    pub fn logs(&self) -> String {
        format!(
            "--- kuma-dp stdout\n{}\n--- kuma-dp stderr\n{}",
            self.stdout(),
            self.stderr()
        )
    }

    /// The pids of the Envoys kuma-dp started, in order (from its `Envoy started pid=N` lines).
    pub fn envoy_pids(&self) -> Vec<u32> {
        self.stdout()
            .lines()
            .filter_map(|line| line.split_once("Envoy started pid=").map(|(_, rest)| rest))
            .filter_map(|rest| {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            })
            .collect()
    }

    /// Its exit status, if it has exited (reaped once, remembered).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("wait for kuma-dp");
        }
        self.status
    }

    /// Polls until kuma-dp exits; fails the test with its logs after `deadline`.
    pub async fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_status() {
                return status;
            }
            assert!(
                start.elapsed() < deadline,
                "kuma-dp did not exit within {deadline:?}\n{}",
                self.logs()
            );
            sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for KumaDp {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let tail = |text: String| {
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(60)..].join("\n")
            };
            eprintln!(
                "--- kuma-dp stdout (tail)\n{}\n--- kuma-dp stderr (tail)\n{}",
                tail(self.stdout()),
                tail(self.stderr())
            );
        }
        // Envoy runs in its own process group: find it before kuma-dp dies (its children),
        // and from kuma-dp's log (an Envoy of an earlier run, or a log still there).
        let mut envoys = children(self.child.id());
        if self.try_status().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        envoys.extend(self.envoy_pids());
        for pid in envoys {
            let is_envoy = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| cmdline.contains("envoy"));
            if alive(pid) && is_envoy {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}
