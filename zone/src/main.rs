//! `kuma-zone`: the zone control plane. It reads the config and runs the shared control-plane
//! server (`cp::server`) as a zone: federated with a global when
//! `multizone.zone.globalAddress` is set, standalone otherwise; `migrate up` prepares a
//! PostgreSQL database.
//!
//! This binary only wires rooms together: no API, store, sync or xDS logic lives here.

use anyhow::{Context, Result};
use clap::Parser;
use cp::cli::{Command, MigrateAction};
use cp::config::{Config, Mode};
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

fn main() -> Result<()> {
    let cli = Cli::parse();
    cp::cli::init_tracing();
    // One TLS crypto provider for the whole process.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Run { config_file } => {
                let (config, mode) = zone_config(
                    cp::cli::load_config(config_file.as_deref())
                        .context("loading the configuration")?,
                )?;
                cp::server::run(config, mode, cp::server::shutdown_signal())
                    .await
                    .context("kuma-zone stopped with an error")
            }
            Command::Migrate {
                action: MigrateAction::Up { config_file },
            } => {
                println!("{}", cp::cli::migrate_up(config_file.as_deref()).await?);
                Ok(())
            }
        }
    })
}
