//! `cargo xtask images`: every container image the docker-compose lab (compose/) uses, built
//! from local material, since our machines reach no image registry.
//!
//! 1. The base, tagged under the name the Dockerfiles default to (`debian:bookworm-slim`):
//!    left alone when that tag exists (pulled or made earlier), else made with
//!    `debootstrap --variant=minbase bookworm` and `docker import`.
//! 2. The binaries: `cargo build --release` of kuma-global, kuma-zone, kumactl, kuma-dp and
//!    the lab's demo-app, into the target dir cargo uses (`CARGO_TARGET_DIR` honoured); Envoy
//!    1.40 as `cargo xtask envoy` finds it.
//! 3. One image per directory of compose/images/, built with `docker build` from a small
//!    context holding that directory's files and the binaries the image needs (never the
//!    target dir). Each image carries a label with the hash of its context, the base image's
//!    id and the build arguments; an image whose label matches is not built again, so a
//!    second run does no Docker work at all.
//!
//! The PostgreSQL image is built only when its tag is missing or was built here: an image of
//! that name from elsewhere (the official one) is used as it is.
//!
//! Nothing here starts containers or talks to a registry (`docker build` never pulls here:
//! the base exists locally by then).

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::{cmd, envoy};

/// The label holding the hash of an image's build inputs.
pub const HASH_LABEL: &str = "io.kuma-rs.build-hash";
/// Changes when the way the hash is computed changes, so old labels never match.
const HASH_FORMAT: &str = "kuma-rs images v1";
/// What `debootstrap` adds to the minimal base: TLS roots, curl for health checks and
/// `ip` for looking at the network of a container.
const BASE_PACKAGES: &str = "ca-certificates,curl,iproute2";
const SUITE: &str = "bookworm";

/// Settings of `cargo xtask images`.
#[derive(clap::Args, Debug)]
pub struct Options {
    /// The base image: the Dockerfiles' `BASE_IMAGE`. Made with debootstrap when missing.
    #[arg(long, default_value = "debian:bookworm-slim")]
    pub base_image: String,
    /// The PostgreSQL image the lab's docker-compose.yaml uses (`POSTGRES_IMAGE`).
    #[arg(long, default_value = "postgres:15")]
    pub postgres_image: String,
    /// The tag of our images (`kuma-rs/kuma-global:<tag>`, ...; `KUMA_RS_TAG` in compose).
    #[arg(long, default_value = "latest")]
    pub tag: String,
    /// The Debian mirror debootstrap installs the base from.
    #[arg(
        long,
        env = "DEBIAN_MIRROR",
        default_value = "http://deb.debian.org/debian"
    )]
    pub mirror: String,
}

impl Options {
    /// The defaults of `cargo xtask images` (the mirror from `DEBIAN_MIRROR` when set).
    pub fn defaults() -> Options {
        Options {
            base_image: "debian:bookworm-slim".to_owned(),
            postgres_image: "postgres:15".to_owned(),
            tag: "latest".to_owned(),
            mirror: std::env::var("DEBIAN_MIRROR")
                .ok()
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| "http://deb.debian.org/debian".to_owned()),
        }
    }
}

/// A binary copied into an image: built by cargo in `package`, or Envoy.
#[derive(Clone, Copy)]
enum Binary {
    Cargo {
        name: &'static str,
        package: &'static str,
    },
    Envoy,
}

const KUMA_GLOBAL: Binary = Binary::Cargo {
    name: "kuma-global",
    package: "global",
};
const KUMA_ZONE: Binary = Binary::Cargo {
    name: "kuma-zone",
    package: "zone",
};
const KUMACTL: Binary = Binary::Cargo {
    name: "kumactl",
    package: "ctl",
};
const KUMA_DP: Binary = Binary::Cargo {
    name: "kuma-dp",
    package: "dp",
};
const DEMO_APP: Binary = Binary::Cargo {
    name: "demo-app",
    package: "xtask",
};

/// The binaries `cargo build --release` makes for the images.
const CARGO_BINARIES: &[Binary] = &[KUMA_GLOBAL, KUMA_ZONE, KUMACTL, KUMA_DP, DEMO_APP];

/// One image: the directory of compose/images/ with its Dockerfile, and the binaries its
/// context needs next to the Dockerfile.
struct Image {
    dir: &'static str,
    binaries: &'static [Binary],
    /// `true` for an image whose tag may hold an image from elsewhere, left untouched.
    foreign_ok: bool,
}

const IMAGES: &[Image] = &[
    Image {
        dir: "postgres",
        binaries: &[],
        foreign_ok: true,
    },
    Image {
        dir: "kuma-global",
        binaries: &[KUMA_GLOBAL],
        foreign_ok: false,
    },
    Image {
        dir: "kuma-zone",
        binaries: &[KUMA_ZONE],
        foreign_ok: false,
    },
    Image {
        dir: "kumactl",
        binaries: &[KUMACTL],
        foreign_ok: false,
    },
    Image {
        dir: "kuma-dp",
        binaries: &[KUMA_DP, Binary::Envoy],
        foreign_ok: false,
    },
    Image {
        dir: "demo-app",
        binaries: &[DEMO_APP],
        foreign_ok: false,
    },
];

impl Image {
    fn tag(&self, options: &Options) -> String {
        match self.dir {
            "postgres" => options.postgres_image.clone(),
            dir => format!("kuma-rs/{dir}:{}", options.tag),
        }
    }
}

/// What happened to one image.
enum Outcome {
    Built,
    UpToDate,
    /// The tag holds an image not built here; it is used as it is.
    Foreign,
}

impl Outcome {
    fn describe(&self) -> &'static str {
        match self {
            Outcome::Built => "built",
            Outcome::UpToDate => "up to date",
            Outcome::Foreign => "present (not built here), kept",
        }
    }
}

pub fn run(root: &Path, options: &Options) -> Result<()> {
    let start = Instant::now();
    let docker =
        cmd::quiet(Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]))
            .context("Docker is needed: `docker version` cannot reach the daemon")?;
    eprintln!(
        "xtask: Docker Engine {}",
        String::from_utf8_lossy(&docker.stdout).trim()
    );
    let cache = envoy::cache_dir()?.join("images");
    fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;

    let step = Instant::now();
    let base_made = ensure_base(&options.base_image, &options.mirror, &cache)?;
    eprintln!(
        "xtask: base image {}: {} ({:.1?})",
        options.base_image,
        if base_made {
            "made with debootstrap"
        } else {
            "present"
        },
        step.elapsed()
    );
    let base_id = image_id(&options.base_image)?
        .with_context(|| format!("the base image {} is missing", options.base_image))?;

    let step = Instant::now();
    let target_dir = build_binaries(root)?;
    let envoy = envoy::ensure()?;
    eprintln!(
        "xtask: binaries in {} and Envoy {} ready ({:.1?})",
        target_dir.join("release").display(),
        envoy.path.display(),
        step.elapsed()
    );
    let binary_path = |binary: Binary| -> PathBuf {
        match binary {
            Binary::Cargo { name, .. } => target_dir.join("release").join(name),
            Binary::Envoy => envoy.path.clone(),
        }
    };

    let mut report = Vec::new();
    for image in IMAGES {
        let step = Instant::now();
        let tag = image.tag(options);
        let dir = root.join("compose").join("images").join(image.dir);
        let mut files = dockerfile_dir_files(&dir)?;
        for binary in image.binaries {
            let path = binary_path(*binary);
            let name = match binary {
                Binary::Cargo { name, .. } => *name,
                Binary::Envoy => "envoy",
            };
            files.push((name.to_owned(), path));
        }
        let outcome = ensure_image(&tag, &files, options, &base_id, image.foreign_ok, &cache)
            .with_context(|| format!("image {tag}"))?;
        report.push(format!(
            "  {tag:<32} {} ({:.1?})",
            outcome.describe(),
            step.elapsed()
        ));
    }
    eprintln!("\nimages (base {}):", options.base_image);
    for line in report {
        eprintln!("{line}");
    }
    eprintln!("total {:.1?}", start.elapsed());
    Ok(())
}

// === base image ===

/// Makes `tag` with debootstrap unless it exists; returns whether it was made.
fn ensure_base(tag: &str, mirror: &str, cache: &Path) -> Result<bool> {
    if image_id(tag)?.is_some() {
        return Ok(false);
    }
    eprintln!("xtask: {tag} is missing; making it with debootstrap from {mirror} (about a minute)");
    let uid = cmd::quiet(Command::new("id").arg("-u"))?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        bail!(
            "making the base image {tag} needs root (debootstrap): run as root, or provide an \
             image of that name (e.g. `docker pull {tag}` where a registry is reachable)"
        );
    }
    let debootstrap = cmd::find_on_path("debootstrap")
        .or_else(|| Some(PathBuf::from("/usr/sbin/debootstrap")).filter(|p| cmd::is_executable(p)))
        .context(
            "making the base image needs debootstrap (Debian: apt-get install -y debootstrap)",
        )?;
    let work = tempfile::Builder::new()
        .prefix(".rootfs-")
        .tempdir_in(cache)
        .with_context(|| format!("creating a temporary directory in {}", cache.display()))?;
    let rootfs = work.path().join("rootfs");
    let log = cache.join("debootstrap.log");
    let log_file = fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let mut command = Command::new(&debootstrap);
    command
        .args(["--variant=minbase", &format!("--include={BASE_PACKAGES}")])
        .arg(SUITE)
        .arg(&rootfs)
        .arg(mirror)
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    let status = cmd::status(&mut command)?;
    if !status.success() {
        bail!(
            "`{}` failed ({status}); its output is in {}:\n{}",
            cmd::display(&command),
            log.display(),
            tail(&log, 15)
        );
    }
    slim_down(&rootfs)?;

    // The root file system becomes a one-layer image. (Through a file: `docker import`
    // stops reading at the end-of-archive marker, before tar has written its padding.)
    let archive = work.path().join("rootfs.tar");
    cmd::quiet(
        Command::new("tar")
            .arg("--numeric-owner")
            .arg("--file")
            .arg(&archive)
            .arg("--directory")
            .arg(&rootfs)
            .args(["--create", "."]),
    )?;
    cmd::quiet(
        Command::new("docker")
            .args([
                "import",
                "--change",
                "CMD [\"bash\"]",
                "--change",
                &format!("LABEL io.kuma-rs.made-by=\"cargo xtask images (debootstrap {SUITE})\""),
            ])
            .arg(&archive)
            .arg(tag),
    )?;
    Ok(true)
}

/// Removes what a container base does not need (package caches and lists, documentation,
/// translations) and tells dpkg to skip documentation in later installs, as Debian's slim
/// images do.
fn slim_down(rootfs: &Path) -> Result<()> {
    for dir in [
        "var/cache/apt/archives",
        "var/lib/apt/lists",
        "usr/share/doc",
        "usr/share/man",
        "usr/share/info",
        "usr/share/locale",
    ] {
        let dir = rootfs.join(dir);
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry?.path();
            // Directories apt and dpkg expect stay (archives/partial, lists/partial).
            if path.is_dir() && path.file_name().is_some_and(|n| n == "partial") {
                continue;
            }
            let removed = if path.is_dir() && !path.is_symlink() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            removed.with_context(|| format!("removing {}", path.display()))?;
        }
    }
    for file in [
        "var/cache/apt/pkgcache.bin",
        "var/cache/apt/srcpkgcache.bin",
    ] {
        let _ = fs::remove_file(rootfs.join(file));
    }
    let excludes = rootfs.join("etc/dpkg/dpkg.cfg.d/docker-slim");
    fs::write(
        &excludes,
        "# cargo xtask images: no documentation in the image (as Debian's slim images)\n\
         path-exclude /usr/share/doc/*\n\
         path-include /usr/share/doc/*/copyright\n\
         path-exclude /usr/share/man/*\n\
         path-exclude /usr/share/groff/*\n\
         path-exclude /usr/share/info/*\n\
         path-exclude /usr/share/locale/*\n",
    )
    .with_context(|| format!("writing {}", excludes.display()))?;
    Ok(())
}

/// The last `lines` lines of a text file, for error messages.
fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// === binaries ===

/// `cargo build --release` of every binary the images hold; returns cargo's target dir.
/// One cargo run per package set: the control-plane binaries exactly as a developer builds
/// them (same features, so the same cached artifacts), the demo app on its own.
fn build_binaries(root: &Path) -> Result<PathBuf> {
    let mut control_plane = crate::cargo(root, &["build", "--release"]);
    let mut others = crate::cargo(root, &["build", "--release"]);
    let mut any_other = false;
    for binary in CARGO_BINARIES {
        if let Binary::Cargo { name, package } = binary {
            if *package == "xtask" {
                others.args(["--package", package, "--bin", name]);
                any_other = true;
            } else {
                control_plane.args(["--package", package]);
            }
        }
    }
    cmd::run(&mut control_plane)?;
    if any_other {
        cmd::run(&mut others)?;
    }
    let metadata = cmd::quiet(&mut crate::cargo(
        root,
        &["metadata", "--format-version", "1", "--no-deps"],
    ))?;
    let metadata: serde_json::Value =
        serde_json::from_slice(&metadata.stdout).context("parsing `cargo metadata`")?;
    let target = metadata["target_directory"]
        .as_str()
        .context("`cargo metadata` names no target_directory")?;
    Ok(PathBuf::from(target))
}

// === images ===

/// The regular files directly in `dir` (the Dockerfile and what it copies), by name.
fn dockerfile_dir_files(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_file() {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .with_context(|| format!("{} has a name that is not UTF-8", path.display()))?
                .to_owned();
            files.push((name, path));
        }
    }
    if !files.iter().any(|(name, _)| name == "Dockerfile") {
        bail!("{} has no Dockerfile", dir.display());
    }
    Ok(files)
}

/// Builds `tag` from `files` unless its label says it was built from the same inputs.
fn ensure_image(
    tag: &str,
    files: &[(String, PathBuf)],
    options: &Options,
    base_id: &str,
    foreign_ok: bool,
    cache: &Path,
) -> Result<Outcome> {
    let mut files = files.to_vec();
    files.sort();
    let build_args = [format!("BASE_IMAGE={}", options.base_image)];
    let hash = build_hash(&files, base_id, &build_args)?;
    if image_id(tag)?.is_some() {
        match label(tag, HASH_LABEL)? {
            Some(existing) if existing == hash => return Ok(Outcome::UpToDate),
            None if foreign_ok => return Ok(Outcome::Foreign),
            _ => {}
        }
    }

    // A context with only this image's files: hard links where possible, else copies.
    let context = tempfile::Builder::new()
        .prefix(".context-")
        .tempdir_in(cache)
        .with_context(|| format!("creating a temporary directory in {}", cache.display()))?;
    for (name, source) in &files {
        let target = context.path().join(name);
        if fs::hard_link(source, &target).is_err() {
            fs::copy(source, &target)
                .with_context(|| format!("copying {} to {}", source.display(), target.display()))?;
        }
    }
    let mut build = Command::new("docker");
    build.arg("build").args(["--tag", tag]);
    build.args(["--label", &format!("{HASH_LABEL}={hash}")]);
    for arg in &build_args {
        build.args(["--build-arg", arg]);
    }
    build.arg(context.path());
    // The classic builder works offline with local base images; BuildKit is used only when
    // asked for.
    if std::env::var_os("DOCKER_BUILDKIT").is_none() {
        build.env("DOCKER_BUILDKIT", "0");
    }
    eprintln!("xtask: building {tag}");
    // Its output only when it fails: a build log per image would bury the summary.
    cmd::quiet(&mut build)?;
    Ok(Outcome::Built)
}

/// SHA-256 over what an image is built from: the files (name, executable bit, SHA-256 of the
/// content), the base image id and the build arguments.
fn build_hash(files: &[(String, PathBuf)], base_id: &str, build_args: &[String]) -> Result<String> {
    // Each field is preceded by its length, so that field boundaries count.
    fn field(hasher: &mut Sha256, bytes: &[u8]) {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    }
    let mut hasher = Sha256::new();
    field(&mut hasher, HASH_FORMAT.as_bytes());
    field(&mut hasher, base_id.as_bytes());
    for arg in build_args {
        field(&mut hasher, arg.as_bytes());
    }
    let digests = file_digests(files)?;
    for ((name, path), digest) in files.iter().zip(digests) {
        let metadata = fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
        field(&mut hasher, name.as_bytes());
        field(
            &mut hasher,
            &[u8::from(metadata.permissions().mode() & 0o111 != 0)],
        );
        field(&mut hasher, digest.as_bytes());
    }
    Ok(hex(&hasher.finalize()))
}

/// The SHA-256 (hex) of each file, by coreutils' `sha256sum`: the binaries are large and
/// xtask's dependencies are not optimised in a dev build.
fn file_digests(files: &[(String, PathBuf)]) -> Result<Vec<String>> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let mut command = Command::new("sha256sum");
    command.arg("--binary").arg("--");
    for (_, path) in files {
        command.arg(path);
    }
    let out = cmd::quiet(&mut command)?;
    let text = String::from_utf8_lossy(&out.stdout);
    let digests: Vec<String> = text
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    if digests.len() != files.len() || digests.iter().any(|d| d.len() != 64) {
        bail!("unexpected output of `{}`: {text}", cmd::display(&command));
    }
    Ok(digests)
}

fn hex(bytes: &[u8]) -> String {
    let mut hex = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// The id of local image `tag`, or `None` when there is none.
fn image_id(tag: &str) -> Result<Option<String>> {
    let out =
        cmd::output(Command::new("docker").args(["image", "inspect", "--format", "{{.Id}}", tag]))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("No such image") || stderr.contains("No such object") {
            return Ok(None);
        }
        bail!("`docker image inspect {tag}` failed: {}", stderr.trim());
    }
    Ok(Some(String::from_utf8_lossy(&out.stdout).trim().to_owned()))
}

/// Label `key` of local image `tag`; `None` when the image has no such label.
fn label(tag: &str, key: &str) -> Result<Option<String>> {
    let format = format!("{{{{index .Config.Labels \"{key}\"}}}}");
    let out =
        cmd::quiet(Command::new("docker").args(["image", "inspect", "--format", &format, tag]))?;
    let value = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Ok(Some(value).filter(|v| !v.is_empty() && v != "<no value>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> (String, PathBuf) {
        let path = dir.join(name);
        fs::write(&path, text).expect("write");
        (name.to_owned(), path)
    }

    #[test]
    fn the_test_task_uses_the_command_line_defaults() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            options: Options,
        }
        let parsed = Cli::try_parse_from(["images"])
            .expect("defaults parse")
            .options;
        let defaults = Options::defaults();
        assert_eq!(
            (
                parsed.base_image,
                parsed.postgres_image,
                parsed.tag,
                parsed.mirror
            ),
            (
                defaults.base_image,
                defaults.postgres_image,
                defaults.tag,
                defaults.mirror
            )
        );
    }

    #[test]
    fn the_build_hash_follows_contents_names_base_and_arguments() {
        let dir = tempfile::tempdir().expect("temp dir");
        let a = write(dir.path(), "a", "one");
        let b = write(dir.path(), "b", "two");
        let args = vec!["BASE_IMAGE=x".to_owned()];
        let hash = |files: &[(String, PathBuf)], base: &str, args: &[String]| {
            build_hash(files, base, args).expect("hash")
        };
        let first = hash(&[a.clone(), b.clone()], "sha256:1", &args);
        assert_eq!(first.len(), 64);
        assert_eq!(first, hash(&[a.clone(), b.clone()], "sha256:1", &args));
        assert_ne!(first, hash(&[a.clone(), b.clone()], "sha256:2", &args));
        assert_ne!(
            first,
            hash(
                &[a.clone(), b.clone()],
                "sha256:1",
                &["BASE_IMAGE=y".to_owned()]
            )
        );
        // The same bytes under another name are another context.
        let renamed = (String::from("c"), b.1.clone());
        assert_ne!(first, hash(&[a.clone(), renamed], "sha256:1", &args));
        fs::write(&b.1, "changed").expect("write");
        assert_ne!(first, hash(&[a, b], "sha256:1", &args));
    }

    #[test]
    fn every_image_dir_exists_with_a_dockerfile() {
        let root = crate::workspace_root();
        for image in IMAGES {
            let dir = root.join("compose").join("images").join(image.dir);
            let files = dockerfile_dir_files(&dir).expect("image dir");
            assert!(
                files.iter().any(|(n, _)| n == "Dockerfile"),
                "{}",
                image.dir
            );
        }
    }
}
