//! What the global and the zone control plane share. Today: the config tree ([`config`]),
//! loaded from YAML and `KUMA_*` variables with Kuma's names. The REST API, the GUI,
//! diagnostics, tokens and the built-in CA arrive here later.
//!
//! This crate holds no sync (KDS) and no xDS logic: those live in their own rooms and take
//! their settings from [`config::Config`].

pub mod api;
pub mod auth;
pub mod config;
pub mod defaults;
pub mod diagnostics;
pub mod server;
pub mod store_metrics;
mod store_settings;
pub mod tls;
pub mod tokens;
