//! `kuma-dp run`: reads the flags, checks the Envoy binary, fetches the bootstrap from the
//! zone control plane, writes it to the work dir and supervises Envoy until SIGTERM or
//! SIGINT, then drains and stops Envoy and exits 0. Any failure exits 1 with the reason on
//! stderr. The logic lives in the `dp` library; this file only wires it together.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use dp::bootstrap::{self, EnvoyVersion, KumaDpVersion, VersionInfo};
use dp::cli::{Cli, Command, RunConfig};
use dp::envoy::{self, EnvoySettings, RestartPolicy};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// How long Envoy may take to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("kuma-dp: error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Run(args) => runtime.block_on(run(*args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("kuma-dp: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stdout, filtered by `KUMA_LOG_LEVEL` (`info` by default), coloured only on a
/// terminal.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KUMA_LOG_LEVEL")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .init();
}

/// Cancelled on the first SIGTERM or SIGINT.
fn shutdown_on_signals() -> Result<CancellationToken> {
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let cancel = token.clone();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!("{name} received: shutting down");
        cancel.cancel();
    });
    Ok(token)
}

async fn run(args: dp::cli::RunArgs) -> Result<()> {
    let shutdown = shutdown_on_signals()?;
    let config: RunConfig = args.resolve()?;
    let binary = envoy::find_binary(
        config.binary_path.as_deref(),
        std::env::var_os("ENVOY_BINARY"),
        std::env::var_os("PATH"),
    )?;
    let (envoy_version, envoy_build) = envoy::version(&binary).await?;
    tracing::info!(binary = %binary.display(), version = %envoy_version, "using Envoy");

    // A directory we create is removed on exit (it holds the token); a given one is kept.
    let temp_dir;
    let work_dir = match &config.work_dir {
        Some(dir) => dir.clone(),
        None => {
            temp_dir = tempfile::Builder::new()
                .prefix("kuma-dp-")
                .tempdir()
                .context("creating a work dir under the system temp dir")?;
            temp_dir.path().to_path_buf()
        }
    };
    let work_dir_text = work_dir.display().to_string();

    let version = VersionInfo {
        kuma_dp: KumaDpVersion::current(),
        envoy: EnvoyVersion {
            version: envoy_version,
            build: envoy_build,
            kuma_dp_compatible: true,
        },
    };
    tracing::info!(
        cp = %config.cp_address,
        "fetching the Envoy bootstrap for {}",
        bootstrap::describe(&config)
    );
    let fetched = tokio::select! {
        fetched = bootstrap::fetch(&config, &version, &work_dir_text) => fetched?,
        () = shutdown.cancelled() => {
            tracing::info!("stopped before the bootstrap arrived");
            return Ok(());
        }
    };
    if let Some(address) = &fetched.address {
        tracing::info!(%address, "the control plane knows this proxy by its address");
    }
    let bootstrap_path = envoy::write_bootstrap(&work_dir, &fetched.yaml)?;
    let admin = envoy::admin_address(&fetched.yaml);
    let settings = EnvoySettings {
        binary,
        config: bootstrap_path.clone(),
        log_level: config.envoy_log_level,
        concurrency: config.concurrency,
        drain_time: config.drain_time,
        admin,
        restart: RestartPolicy::default(),
        stop_grace: STOP_GRACE,
    };
    let result = envoy::supervise(&settings, &shutdown).await;
    if config.work_dir.is_some() {
        // Do not leave the token behind in a kept work dir.
        let _ = std::fs::remove_file(&bootstrap_path);
    }
    result?;
    tracing::info!("stopped");
    Ok(())
}
