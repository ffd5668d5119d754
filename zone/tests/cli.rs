//! Runs the built `kuma-zone` binary with a clean environment and a temporary work dir: its
//! commands, and the errors that stop it before it opens a store or a port.

use std::process::{Command, Output};

/// `kuma-zone ARGS` with only `HOME`, a work dir and `vars` in its environment.
fn kuma_zone(args: &[&str], vars: &[(&str, &str)]) -> (Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_kuma-zone"))
        .args(args)
        .env_clear()
        .env("HOME", dir.path())
        .env("KUMA_GENERAL_WORK_DIR", dir.path())
        .envs(vars.iter().copied())
        .output()
        .expect("run kuma-zone");
    (output, dir)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn help_lists_run_and_migrate() {
    let (out, _dir) = kuma_zone(&["--help"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("kuma-zone"), "{help}");
    for command in ["run", "migrate"] {
        assert!(
            help.lines()
                .any(|line| line.trim_start().starts_with(command)),
            "{command} is not listed:\n{help}"
        );
    }
    let (out, _dir) = kuma_zone(&["migrate", "--help"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("up"));
}

#[test]
fn run_refuses_a_global_address_that_is_not_grpc() {
    let (out, _dir) = kuma_zone(
        &["run"],
        &[
            ("KUMA_MULTIZONE_ZONE_NAME", "zone-1"),
            ("KUMA_MULTIZONE_ZONE_GLOBAL_ADDRESS", "http://x:1"),
        ],
    );
    let output = text(&out);
    assert!(!out.status.success(), "{output}");
    assert!(
        output.contains(r#"KUMA_MULTIZONE_ZONE_GLOBAL_ADDRESS="http://x:1""#)
            && output.contains("grpc or grpcs"),
        "{output}"
    );
}

#[test]
fn run_refuses_a_federated_zone_without_a_valid_name() {
    let (out, _dir) = kuma_zone(
        &["run"],
        &[
            ("KUMA_MULTIZONE_ZONE_NAME", "Zone_1"),
            (
                "KUMA_MULTIZONE_ZONE_GLOBAL_ADDRESS",
                "grpcs://global.example:5685",
            ),
        ],
    );
    let output = text(&out);
    assert!(!out.status.success(), "{output}");
    assert!(
        output.contains("multizone.zone.name") && output.contains("not a DNS label"),
        "{output}"
    );
}

#[test]
fn run_refuses_an_unreadable_zone_token_file() {
    let (out, _dir) = kuma_zone(
        &["run"],
        &[
            ("KUMA_MULTIZONE_ZONE_NAME", "zone-1"),
            (
                "KUMA_MULTIZONE_ZONE_GLOBAL_ADDRESS",
                "grpcs://global.example:5685",
            ),
            (
                "KUMA_MULTIZONE_ZONE_KDS_AUTH_TOKEN_PATH",
                "/nonexistent/zone-token",
            ),
        ],
    );
    let output = text(&out);
    assert!(!out.status.success(), "{output}");
    assert!(
        output.contains("multizone.zone.kds.auth.tokenPath")
            && output.contains("/nonexistent/zone-token"),
        "{output}"
    );
}

#[test]
fn migrate_up_explains_that_sqlite_migrates_itself() {
    let (out, _dir) = kuma_zone(&["migrate", "up"], &[]);
    let output = text(&out);
    assert!(!out.status.success(), "{output}");
    assert!(
        output.contains(r#"store.type is "sqlite""#) && output.contains("SQLite migrates itself"),
        "{output}"
    );
}
