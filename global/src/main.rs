//! `kuma-global`: the global control plane. It reads the config, opens the store and runs
//! the shared control-plane server (`cp::server`) in global mode; `migrate up` prepares a
//! PostgreSQL database.
//!
//! This binary only wires rooms together: no API, store or sync logic lives here.

use anyhow::{Context, Result};
use clap::Parser;
use cp::cli::{Command, MigrateAction};

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

fn main() -> Result<()> {
    let cli = Cli::parse();
    cp::cli::init_tracing();
    // One TLS crypto provider for the whole process.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Run { config_file } => {
                let config = cp::cli::load_config(config_file.as_deref())
                    .context("loading the configuration")?;
                cp::server::run(config, model::CpMode::Global, cp::server::shutdown_signal())
                    .await
                    .context("kuma-global stopped with an error")
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
