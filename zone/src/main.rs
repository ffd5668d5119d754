//! `kuma-zone`: the zone control plane. It reads the config and runs the shared control-plane
//! server (`cp::server`) as a zone: federated with a global when
//! `multizone.zone.globalAddress` is set, standalone otherwise; `migrate up` prepares a
//! PostgreSQL database.
//!
//! This binary only wires rooms together: no API, store, sync or xDS logic lives here.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use cp::config::{Config, Env, Mode};
use model::CpMode;

#[derive(Parser)]
#[command(
    name = "kuma-zone",
    version,
    about = "Zone control plane of a kuma-rs federation (or a standalone control plane)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the zone control plane.
    Run {
        /// YAML config file (Kuma's kuma-cp format); KUMA_* variables override it.
        #[arg(short = 'c', long = "config-file")]
        config_file: Option<PathBuf>,
    },
    /// Database schema migrations.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
}

#[derive(Subcommand)]
enum MigrateAction {
    /// Applies every migration this version carries to the configured PostgreSQL database.
    Up {
        #[arg(short = 'c', long = "config-file")]
        config_file: Option<PathBuf>,
    },
}

fn load_config(file: Option<&PathBuf>) -> Result<Config> {
    let loaded = Config::load(file.map(PathBuf::as_path), &Env::from_process())
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("loading the configuration")?;
    for warning in &loaded.warnings {
        tracing::warn!(%warning, "configuration");
    }
    Ok(loaded.config)
}

/// The config of a zone: `mode` forced to `zone` (and checked again, since some rules depend
/// on the mode), and whether it is federated.
fn zone_config(mut config: Config) -> Result<(Config, CpMode)> {
    if config.mode != Mode::Zone {
        tracing::warn!(
            mode = config.mode.as_str(),
            "kuma-zone runs a zone control plane; the mode setting is ignored"
        );
        config.mode = Mode::Zone;
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("checking the configuration as a zone")?;
    }
    let zone = &config.multizone.zone;
    let mode = match &zone.global_address {
        Some(address) => {
            tracing::info!("federated with global {address} as zone {}", zone.name);
            // Fail at start, not at the first dial, when the token file cannot be read.
            if config
                .zone_kds_token()
                .context("reading the zone token")?
                .is_none()
            {
                tracing::warn!(
                    "no zone token is set (multizone.zone.kds.auth.tokenPath or tokenInline); \
                     a global with multizone.global.kds.auth.type zoneToken will refuse this zone"
                );
            }
            CpMode::FederatedZone
        }
        None => {
            tracing::info!("standalone");
            CpMode::Standalone
        }
    };
    Ok((config, mode))
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KUMA_LOG_LEVEL")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .init();
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    init_tracing();
    // One TLS crypto provider for the whole process.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Run { config_file } => {
                let (config, mode) = zone_config(load_config(config_file.as_ref())?)?;
                cp::server::run(config, mode, cp::server::shutdown_signal())
                    .await
                    .context("kuma-zone stopped with an error")
            }
            Command::Migrate {
                action: MigrateAction::Up { config_file },
            } => {
                let config = load_config(config_file.as_ref())?;
                let outcome = cp::migrate::up(&config).await?;
                println!("{outcome}");
                Ok(())
            }
        }
    })
}
