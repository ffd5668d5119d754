//! Real Envoy for the tests: where the binary is (`ENVOY_BINARY`, which `cargo xtask test`
//! exports) and `envoy --mode validate` on a config.

// Each test file uses what it needs.
#![allow(dead_code)]

use std::process::Command;

/// `$ENVOY_BINARY`; a test that needs Envoy fails (never skips) without it.
pub fn envoy_binary() -> String {
    std::env::var("ENVOY_BINARY").unwrap_or_else(|_| {
        panic!(
            "ENVOY_BINARY is not set: run `cargo xtask test`, or `export ENVOY_BINARY=$(cargo xtask envoy | tail -1)`"
        )
    })
}

/// Runs `envoy --mode validate` on `config`: Ok(stdout), or Err(everything a reader needs to
/// see why Envoy refused it).
pub fn envoy_validate(name: &str, config: &serde_json::Value) -> Result<String, String> {
    let envoy = envoy_binary();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(format!("{name}.json"));
    let text = serde_json::to_string_pretty(config).expect("json");
    std::fs::write(&path, &text).expect("write the config");
    let output = Command::new(&envoy)
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "--log-level",
            "warn",
            "-c",
        ])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("running {envoy}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() && stdout.contains("OK") {
        Ok(stdout)
    } else {
        Err(format!(
            "Envoy refused the config ({})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n--- config ---\n{text}",
            output.status
        ))
    }
}
