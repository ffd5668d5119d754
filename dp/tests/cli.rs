//! The built `kuma-dp` binary's command line: `KUMA_*` variables set the flags and flags win
//! over them, and failures exit non-zero with the reason on stderr. No control plane runs
//! here (nothing listens on the addresses used) and Envoy is a stand-in shell script that
//! only answers `--version`; the real ones are run in `e2e/tests/dp.rs`.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A script answering `--version` like Envoy 1.40.
fn fake_envoy(dir: &Path) -> PathBuf {
    let path = dir.join("envoy");
    std::fs::write(
        &path,
        "#!/bin/sh\necho 'envoy  version: 0000/1.40.0/Clean/RELEASE/BoringSSL'\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A loopback port nothing listens on (free a moment ago).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn kuma_dp(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kuma-dp"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn variables_set_the_flags_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let envoy = fake_envoy(dir.path());
    let from_env = format!("http://127.0.0.1:{}", closed_port());
    let env = [
        ("ENVOY_BINARY", envoy.to_str().unwrap()),
        ("KUMA_CONTROL_PLANE_URL", from_env.as_str()),
        ("KUMA_DATAPLANE_NAME", "web-1"),
        ("KUMA_DATAPLANE_MESH", "default"),
        ("KUMA_DATAPLANE_RUNTIME_TOKEN", "SECRET-TOKEN-VALUE"),
        ("KUMA_CONTROL_PLANE_RETRY_BACKOFF", "50ms"),
        ("KUMA_CONTROL_PLANE_RETRY_MAX_DURATION", "200ms"),
    ];
    let out = kuma_dp(&["run"], &env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!(
            "control plane at {from_env}/bootstrap within 200ms"
        )),
        "{stderr}"
    );

    let from_flag = format!("http://127.0.0.1:{}", closed_port());
    let out = kuma_dp(
        &[
            "run",
            "--cp-address",
            &from_flag,
            "--cp-retry-max-duration",
            "100ms",
        ],
        &env,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!(
            "control plane at {from_flag}/bootstrap within 100ms"
        )),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("dataplane default.web-1"), "{stdout}");
    assert!(!stdout.contains("SECRET-TOKEN-VALUE") && !stderr.contains("SECRET-TOKEN-VALUE"));
}

#[test]
fn a_missing_envoy_is_reported_before_the_control_plane_is_asked() {
    let out = kuma_dp(
        &["run", "--name", "web-1", "--mesh", "default"],
        &[("PATH", "/nonexistent-bin")],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "Envoy binary not found: no --binary-path, no ENVOY_BINARY and no `envoy` in PATH (/nonexistent-bin)"
        ),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("fetching"));
}

#[test]
fn bad_flags_exit_non_zero_naming_them() {
    let out = kuma_dp(&["run", "--name", "web-1"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--mesh is required"), "{stderr}");

    let out = kuma_dp(&["run", "--drain-time", "later"], &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--drain-time"), "{stderr}");
}
