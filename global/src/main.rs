//! `kuma-global`: the global control plane. It reads the config, opens the store and runs
//! the shared control-plane server (`cp::server`) in global mode; `migrate up` prepares a
//! PostgreSQL database.
//!
//! This binary only wires rooms together: no API, store or sync logic lives here.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use cp::config::{Config, Env};

#[derive(Parser)]
#[command(
    name = "kuma-global",
    version,
    about = "Global control plane of a kuma-rs federation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the global control plane.
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
                let config = load_config(config_file.as_ref())?;
                cp::server::run(config, model::CpMode::Global, cp::server::shutdown_signal())
                    .await
                    .context("kuma-global stopped with an error")
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
