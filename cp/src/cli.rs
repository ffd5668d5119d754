//! What the control-plane binaries (`kuma-global`, `kuma-zone`) share on the command line:
//! the `run` and `migrate up` subcommands, loading the config with its warnings logged, and
//! the log setup. Each binary keeps only its name and what `run` does.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use crate::config::{Config, Env, Error};
use crate::migrate::MigrateError;

#[derive(Subcommand)]
pub enum Command {
    /// Runs the control plane.
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
pub enum MigrateAction {
    /// Applies every migration this version carries to the configured PostgreSQL database.
    Up {
        #[arg(short = 'c', long = "config-file")]
        config_file: Option<PathBuf>,
    },
}

/// The config from `file` (if any) and the process's `KUMA_*` variables; warnings (e.g.
/// unknown variables) are logged.
pub fn load_config(file: Option<&Path>) -> Result<Config, Error> {
    let loaded = Config::load(file, &Env::from_process())?;
    for warning in &loaded.warnings {
        tracing::warn!(%warning, "configuration");
    }
    Ok(loaded.config)
}

/// Logs to stdout, filtered by `KUMA_LOG_LEVEL` (`info` by default), coloured only on a
/// terminal so that log files and collectors get plain text.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KUMA_LOG_LEVEL")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .init();
}

/// Why `migrate up` failed: the config, or the migration.
#[derive(Debug, thiserror::Error)]
pub enum MigrateUpError {
    #[error("loading the configuration: {0}")]
    Config(#[from] Error),
    #[error(transparent)]
    Migrate(#[from] MigrateError),
}

/// `migrate up` for both binaries: loads the config from `file` and migrates its store.
pub async fn migrate_up(file: Option<&Path>) -> Result<store::MigrateOutcome, MigrateUpError> {
    let config = load_config(file)?;
    Ok(crate::migrate::up(&config).await?)
}
