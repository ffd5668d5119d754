//! `kuma-dp`, the dataplane agent: gets the Envoy bootstrap from the zone control plane's
//! bootstrap server and runs Envoy on it, restarting it when it dies and draining it on
//! shutdown (reference: `kuma-api.md` §4.2, §4.4; operator docs: `docs/kuma-dp.md`).
//!
//! - [`cli`]: the `kuma-dp run` flags and `KUMA_*` variables, resolved into a [`cli::RunConfig`];
//! - [`template`]: `{{ name }}` variables of the inline Dataplane;
//! - [`bootstrap`]: the `POST /bootstrap` client with its retry rules;
//! - [`envoy`]: the Envoy binary, its bootstrap file and its supervision.
//!
//! The binary (`src/main.rs`) only wires these together and handles signals.

pub mod bootstrap;
pub mod cli;
pub mod envoy;
pub mod template;
