//! `validFor` values: Go durations (`24h`, `10m`, `8760h`, `1h30m`, `1.5h`, `300ms`).

use std::time::Duration;

/// Parses a Go duration string (Kuma's `time.ParseDuration`) with humantime, which accepts
/// every unsigned Go form. Negative durations are refused: they would issue expired tokens.
/// The error is the reason part of a validation message (`is invalid: ...`).
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.starts_with('-') {
        return Err(format!("is invalid: {text:?} is negative"));
    }
    let unsigned = trimmed.strip_prefix('+').unwrap_or(trimmed);
    humantime::parse_duration(unsigned).map_err(|e| format!("is invalid: {text:?}: {e}"))
}
