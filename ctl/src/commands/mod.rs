//! One module per top-level kumactl command.

pub mod apply;
pub mod config;
pub mod delete;
pub mod generate;
pub mod get;
pub mod inspect;
pub mod version;

use model::ResourceType;
use time::OffsetDateTime;

/// A type as kumactl names it on the command line, and whether the name is the plural.
/// Only types served over the REST API.
pub fn cli_type(arg: &str) -> Option<(ResourceType, bool)> {
    ResourceType::ALL.iter().find_map(|&kind| {
        let d = kind.descriptor();
        if !d.has_rest {
            return None;
        }
        let global_secret = kind == ResourceType::GlobalSecret;
        if d.cli_plural == arg || (global_secret && arg == "global-secrets") {
            Some((kind, true))
        } else if d.cli_singular == arg || (global_secret && arg == "global-secret") {
            Some((kind, false))
        } else {
            None
        }
    })
}

/// The time AGE columns are measured from.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Writes command output to stdout as is.
pub fn print(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}
