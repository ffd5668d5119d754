//! `kumactl`, the command-line client of a Kuma control plane, for kuma-rs.
//!
//! It holds what Kuma's kumactl (v2.14) does against the REST API: the configuration file
//! `~/.kumactl/config` and `config control-planes add|list|remove|switch`, `get` (tables with
//! Kuma's columns, YAML, JSON), `apply` (multi-document, `-v` variables, `--dry-run`),
//! `delete`, `inspect` (overviews and insights), `generate` (tokens through the control plane
//! or signed offline, signing keys, TLS certificates) and `version`. Its output is meant to be
//! byte-for-byte what Kuma's kumactl prints, so scripts written for one work with the other.
//!
//! It must not do the control plane's work: it checks only what kumactl checks before sending
//! (the meta of applied resources) and leaves validation, defaults and storage to the server.
//! It talks only to the configured control plane (and to an `apply -f` URL), never writes
//! outside the configuration file and the files a `generate` command is told to write, and
//! never prints secrets it was not asked for.

mod cli;
mod client;
mod commands;
mod config;
mod go;
mod output;
mod root;
mod table;
mod template;
mod yaml;

use anyhow::{Context as _, Result};
use clap::Parser as _;

use crate::cli::{Cli, Command};
use crate::client::{ApiError, ClientError};
use crate::root::Root;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() { 1 } else { 0 });
        }
    };
    if let Err(e) = run(cli) {
        eprintln!("Error: {}", error_message(&e));
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    runtime.block_on(dispatch(cli))
}

async fn dispatch(cli: Cli) -> Result<()> {
    let mut root = Root::load(&cli)?;
    match &cli.command {
        Command::Apply(args) => commands::apply::run(&root, args).await,
        Command::Config { command } => commands::config::run(&mut root, command).await,
        Command::Delete(args) => commands::delete::run(&root, args).await,
        Command::Generate { command } => commands::generate::run(&root, command).await,
        Command::Get(args) => commands::get::run(&root, args).await,
        Command::Inspect(args) => commands::inspect::run(&root, args).await,
        Command::Version { detailed } => commands::version::run(&root, *detailed).await,
    }
}

/// What follows `Error: `. Like kumactl, an error from the control plane is shown as its title
/// and detail with one `* field: reason` line per invalid field, without the local context.
fn error_message(e: &anyhow::Error) -> String {
    for cause in e.chain() {
        if let Some(ClientError::Api(api)) = cause.downcast_ref::<ClientError>() {
            return api.formatted();
        }
        if let Some(api) = cause.downcast_ref::<ApiError>() {
            return api.formatted();
        }
    }
    format!("{e:#}")
}
