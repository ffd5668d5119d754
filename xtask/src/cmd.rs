//! Running other programs, and stopping cleanly on Ctrl-C or SIGTERM.
//!
//! The interrupt handler only raises a flag. Whoever waits on a child sees it, passes SIGTERM
//! on to the child, and returns an error; the callers' `Drop` guards then stop what they
//! started (a PostgreSQL cluster, a container).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// How often a waiting loop looks at the child and the flag.
const POLL: Duration = Duration::from_millis(50);
/// How long a child may take to exit after being passed SIGTERM.
const GRACE: Duration = Duration::from_secs(20);

/// Makes Ctrl-C, SIGTERM and SIGHUP raise the flag instead of killing this process.
pub fn install_interrupt_handler() -> Result<()> {
    ctrlc::set_handler(|| {
        if !INTERRUPTED.swap(true, Ordering::SeqCst) {
            eprintln!("\nxtask: interrupted, cleaning up");
        }
    })
    .context("installing the Ctrl-C handler")
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Fails if the user asked to stop.
pub fn check_interrupted() -> Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

/// Blocks until Ctrl-C (or SIGTERM, SIGHUP).
pub fn wait_for_interrupt() {
    while !interrupted() {
        thread::sleep(POLL);
    }
}

/// Waits up to `timeout` for `ready` to return true, polling; fails when the time is up or on
/// interrupt. `what` completes "timed out waiting for …".
pub fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return Ok(());
        }
        check_interrupted()?;
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(POLL);
    }
}

/// A command line as a user would type it, for messages.
pub fn display(command: &Command) -> String {
    let mut words = vec![command.get_program().to_string_lossy().into_owned()];
    words.extend(command.get_args().map(|a| a.to_string_lossy().into_owned()));
    words.join(" ")
}

/// Runs `command` with inherited stdio and returns its status. On interrupt the child is
/// passed SIGTERM, given [`GRACE`] to exit, then killed, and an error is returned.
pub fn status(command: &mut Command) -> Result<ExitStatus> {
    let mut child = command
        .spawn()
        .with_context(|| format!("starting `{}`", display(command)))?;
    let mut interrupted_at: Option<Instant> = None;
    loop {
        if let Some(status) = child.try_wait()? {
            check_interrupted()?;
            return Ok(status);
        }
        match interrupted_at {
            None if interrupted() => {
                interrupted_at = Some(Instant::now());
                // The terminal already sent SIGINT to the whole group; SIGTERM covers the
                // case where only this process was signalled.
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .stderr(Stdio::null())
                    .status();
            }
            Some(at) if at.elapsed() > GRACE => {
                let _ = child.kill();
            }
            _ => {}
        }
        thread::sleep(POLL);
    }
}

/// Runs `command` with inherited stdio; fails unless it exits with 0.
pub fn run(command: &mut Command) -> Result<()> {
    let status = status(command)?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(command));
    }
    Ok(())
}

/// Runs `command` capturing its output; fails if it cannot be started (not if it fails).
pub fn output(command: &mut Command) -> Result<Output> {
    command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting `{}`", display(command)))
}

/// Runs `command` capturing its output; fails, showing the output, unless it exits with 0.
pub fn quiet(command: &mut Command) -> Result<Output> {
    let out = output(command)?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}):\n{}{}",
            display(command),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// Whether `program --version` (or the given probe arguments) runs and exits with 0.
pub fn works<S: AsRef<OsStr>>(program: impl AsRef<OsStr>, args: &[S]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The first directory on `PATH` holding an executable `name`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
