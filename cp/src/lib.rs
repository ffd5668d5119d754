//! What the global and the zone control plane share: the config tree ([`config`], Kuma's
//! names and `KUMA_*` variables), the REST API, the GUI ([`gui`]), diagnostics, tokens, KDS TLS material and the
//! server that runs them ([`server`]), which also wires in the KDS rooms ([`kds`]).
//!
//! This crate holds no sync (KDS) and no xDS logic: those live in their own crates and take
//! their settings from [`config::Config`]; [`kds`] only connects them.

pub mod api;
pub mod auth;
pub mod bootstrap;
pub mod cli;
pub mod config;
pub mod defaults;
pub mod diagnostics;
pub mod dns;
pub mod gui;
mod ingress_bootstrap;
pub mod kds;
pub mod mads;
pub mod migrate;
pub mod server;
pub mod store_metrics;
mod store_settings;
pub mod tls;
pub mod tokens;
pub mod xds_auth;
pub mod xds_insight;
pub mod xds_lifecycle;
pub mod xds_metrics;
