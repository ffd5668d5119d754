//! The lab's child processes: each started in its own process group (so a Ctrl-C in the
//! terminal reaches only the lab, which then stops them in order), with stdout and stderr
//! appended to its log file, and stopped tier by tier: proxies, then zones, then the global.
//!
//! [`Procs`] SIGKILLs whatever still runs when it is dropped (an error, a panic), and with a
//! kuma-dp also the Envoy it started (Envoy runs in its own process group, so it would survive
//! its kuma-dp). Processes left behind by a lab that was itself SIGKILLed are found by
//! [`leftovers`] on the next start.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

/// Lines of a log shown with a failure.
pub const TAIL_LINES: usize = 40;

/// How long a tier may take to exit after SIGTERM before it is SIGKILLed.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// The order processes stop in: the highest tier first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    Global,
    Zone,
    /// kuma-dp: sidecars and zone ingresses.
    Proxy,
}

/// One child process.
pub struct Proc {
    pub name: String,
    pub tier: Tier,
    pub log: PathBuf,
    /// Where this run's output starts in the log (the log is appended across runs).
    log_start: u64,
    /// `(label, port)` for the summary table.
    pub ports: Vec<(&'static str, u16)>,
    /// For a kuma-dp: its work dir, which the command line of its Envoy names.
    envoy_marker: Option<String>,
    child: Child,
    status: Option<ExitStatus>,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status once it has exited (reaped once, remembered).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// This run's log.
    pub fn log_text(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(&self.log)
            && file.seek(SeekFrom::Start(self.log_start)).is_ok()
        {
            let mut bytes = Vec::new();
            let _ = file.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        text
    }

    /// The last `lines` lines of this run's log, under a header naming the file.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        format!(
            "--- last {} lines of {} ({})\n{}",
            lines.min(all.len()),
            self.name,
            self.log.display(),
            all[all.len().saturating_sub(lines)..].join("\n")
        )
    }

    /// The Envoys a kuma-dp started (its `Envoy started pid=N` lines) that still run.
    fn live_envoys(&self) -> Vec<u32> {
        let Some(marker) = &self.envoy_marker else {
            return Vec::new();
        };
        self.log_text()
            .lines()
            .filter_map(|line| line.split_once("Envoy started pid=").map(|(_, rest)| rest))
            .filter_map(|rest| {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            })
            .filter(|pid| alive(*pid) && cmdline(*pid).contains(marker.as_str()))
            .collect()
    }

    fn signal(&self, signal: &str) {
        send(self.pid(), signal);
    }
}

/// Every child of the lab, in start order.
#[derive(Default)]
pub struct Procs {
    procs: Vec<Proc>,
}

impl Procs {
    /// Starts `command` in its own process group with its output appended to `log`.
    /// `envoy_marker`, for a kuma-dp, is a string every command line of its Envoy holds.
    pub fn spawn(
        &mut self,
        name: &str,
        tier: Tier,
        mut command: Command,
        log: &Path,
        ports: Vec<(&'static str, u16)>,
        envoy_marker: Option<String>,
    ) -> Result<&mut Proc> {
        if let Some(dir) = log.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening the log {}", log.display()))?;
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        writeln!(
            file,
            "===== lab: starting {name} (unix time {since_epoch}): {} =====",
            crate::cmd::display(&command)
        )
        .with_context(|| format!("writing the log {}", log.display()))?;
        let log_start = file.metadata().map(|m| m.len()).unwrap_or(0);
        let err = file.try_clone().context("duplicating the log file")?;
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err))
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {name}: `{}`", crate::cmd::display(&command)))?;
        self.procs.push(Proc {
            name: name.to_owned(),
            tier,
            log: log.to_owned(),
            log_start,
            ports,
            envoy_marker,
            child,
            status: None,
        });
        let last = self.procs.len() - 1;
        Ok(&mut self.procs[last])
    }

    pub fn iter(&self) -> impl Iterator<Item = &Proc> {
        self.procs.iter()
    }

    pub fn get(&self, name: &str) -> Option<&Proc> {
        self.procs.iter().find(|p| p.name == name)
    }

    /// The first process that has exited, with its status.
    pub fn first_exited(&mut self) -> Option<(&Proc, ExitStatus)> {
        let index = self.procs.iter_mut().position(|p| p.exited().is_some())?;
        let proc = &self.procs[index];
        proc.status.map(|status| (proc, status))
    }

    /// Stops every process, the highest tier first: SIGTERM to the tier, a wait of at most
    /// [`STOP_GRACE`], SIGKILL to what is left; then any Envoy a kuma-dp left behind.
    /// `report` gets one line per tier.
    pub fn stop_all(&mut self, mut report: impl FnMut(&str)) {
        let mut tiers: Vec<Tier> = self.procs.iter().map(|p| p.tier).collect();
        tiers.sort_unstable();
        tiers.dedup();
        for tier in tiers.into_iter().rev() {
            let start = Instant::now();
            let names: Vec<String> = self
                .procs
                .iter()
                .filter(|p| p.tier == tier)
                .map(|p| p.name.clone())
                .collect();
            for proc in self.procs.iter_mut().filter(|p| p.tier == tier) {
                if proc.exited().is_none() {
                    proc.signal("TERM");
                }
            }
            let mut killed = Vec::new();
            loop {
                let running = self
                    .procs
                    .iter_mut()
                    .filter(|p| p.tier == tier)
                    .filter_map(|p| p.exited().is_none().then_some(()))
                    .count();
                if running == 0 {
                    break;
                }
                if start.elapsed() > STOP_GRACE {
                    for proc in self.procs.iter_mut().filter(|p| p.tier == tier) {
                        if proc.exited().is_none() {
                            let _ = proc.child.kill();
                            let _ = proc.child.wait();
                            killed.push(proc.name.clone());
                        }
                    }
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
            for proc in self.procs.iter().filter(|p| p.tier == tier) {
                for pid in proc.live_envoys() {
                    send(pid, "KILL");
                    killed.push(format!("Envoy of {} (pid {pid})", proc.name));
                }
            }
            let mut line = format!("stopped {} ({:.1?})", names.join(", "), start.elapsed());
            if !killed.is_empty() {
                line.push_str(&format!(
                    "; killed after {STOP_GRACE:?}: {}",
                    killed.join(", ")
                ));
            }
            report(&line);
        }
    }

    /// SIGKILLs every process still running and any Envoy a kuma-dp left.
    fn kill_all(&mut self) {
        for proc in &mut self.procs {
            if proc.exited().is_none() {
                let _ = proc.child.kill();
                let _ = proc.child.wait();
            }
            for pid in proc.live_envoys() {
                send(pid, "KILL");
            }
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Sends `signal` (`TERM`, `KILL`, ...) to `pid` with kill(1).
pub fn send(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Whether process `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) state ...": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

/// The command line of `pid`, arguments joined by spaces (empty if unreadable).
pub fn cmdline(pid: u32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            String::from_utf8_lossy(&raw)
                .split('\0')
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// Processes running one of `programs` (by their executable) whose command line or
/// environment names `state_dir`: what a lab that was SIGKILLed left behind. Never this
/// process.
pub fn leftovers(programs: &[PathBuf], state_dir: &Path) -> Vec<(u32, String)> {
    // With the separator, so that `.lab` does not match `.lab2`.
    let marker = format!("{}/", state_dir.to_string_lossy());
    let programs: Vec<PathBuf> = programs
        .iter()
        .filter_map(|p| fs::canonicalize(p).ok())
        .collect();
    let me = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
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
        let Ok(exe) = fs::read_link(entry.path().join("exe")) else {
            continue; // another user's process, or gone
        };
        // A binary rebuilt since the process started shows as "<path> (deleted)".
        let exe = exe
            .to_str()
            .and_then(|s| s.strip_suffix(" (deleted)"))
            .map_or(exe.clone(), PathBuf::from);
        if !programs.contains(&exe) {
            continue;
        }
        let environ = fs::read(entry.path().join("environ"))
            .map(|raw| String::from_utf8_lossy(&raw).into_owned())
            .unwrap_or_default();
        let line = cmdline(pid);
        if line.contains(&marker) || environ.contains(&marker) {
            found.push((pid, line));
        }
    }
    found
}
