use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::load::{apply_env, apply_yaml};
use super::settings::SECTIONS;
use super::value::format_duration;
use super::*;

// === helpers ===

fn env(pairs: &[(&str, &str)]) -> Env {
    pairs.iter().copied().collect()
}

/// A YAML document setting `key` (dotted) to `value` (a plain string).
fn yaml_for(key: &str, value: &str) -> String {
    let parts: Vec<&str> = key.split('.').collect();
    let mut out = String::new();
    for (depth, part) in parts.iter().enumerate() {
        out.push_str(&"  ".repeat(depth));
        out.push_str(part);
        out.push(':');
        if depth + 1 == parts.len() {
            out.push_str(&format!(" {}", serde_json::Value::from(value)));
        }
        out.push('\n');
    }
    out
}

fn from_env_only(env: &Env) -> Result<Config, Vec<Problem>> {
    let mut config = Config::default();
    let mut problems = Vec::new();
    apply_env(&mut config, env, &mut problems);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

fn problems_of(result: Result<impl std::fmt::Debug, Error>) -> Vec<String> {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(error) => {
            let problems: Vec<String> = error.problems().iter().map(ToString::to_string).collect();
            assert!(!problems.is_empty(), "expected problems, got {error}");
            problems
        }
    }
}

fn crate_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Compares a generated file with the one in the tree; `UPDATE_GENERATED=1` rewrites it.
fn check_generated(relative: &str, generated: &str) {
    let path = crate_file(relative);
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if current == generated {
        return;
    }
    if std::env::var_os("UPDATE_GENERATED").is_some() {
        std::fs::write(&path, generated).expect("writing the generated file");
        return;
    }
    panic!(
        "{} is stale: run `UPDATE_GENERATED=1 cargo test -p cp` and commit the result",
        path.display()
    );
}

// === the defaults file and the docs ===

#[test]
fn defaults_file_parses_to_default_config() {
    let text = std::fs::read_to_string(crate_file("kuma-cp.defaults.yaml"))
        .expect("reading the defaults file");
    let parsed = Config::from_yaml_str(&text).expect("the defaults file parses strictly");
    assert_eq!(parsed, Config::default());
}

#[test]
fn defaults_file_is_current() {
    check_generated("kuma-cp.defaults.yaml", &defaults_yaml());
}

#[test]
fn defaults_file_names_every_variable() {
    let text = defaults_yaml();
    for setting in SETTINGS {
        for var in setting.env_names() {
            assert!(
                text.contains(var),
                "{var} is missing from the defaults file"
            );
        }
    }
}

#[test]
fn settings_doc_is_current() {
    check_generated("../docs/settings.md", &settings_markdown());
}

#[test]
fn settings_doc_lists_every_variable_the_code_reads() {
    let doc = std::fs::read_to_string(crate_file("../docs/settings.md"))
        .expect("reading docs/settings.md");
    let missing: Vec<&str> = vars::ALL
        .iter()
        .copied()
        .filter(|var| !doc.contains(&format!("`{var}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/settings.md does not list {missing:?}"
    );
}

// === the settings table ===

#[test]
fn table_keys_and_variables_are_unique_and_match_the_constants() {
    let keys: BTreeSet<&str> = SETTINGS.iter().map(|s| s.key).collect();
    assert_eq!(keys.len(), SETTINGS.len(), "duplicate keys");
    let from_table: Vec<&str> = SETTINGS.iter().flat_map(|s| s.env_names()).collect();
    let unique: BTreeSet<&str> = from_table.iter().copied().collect();
    assert_eq!(
        unique.len(),
        from_table.len(),
        "a variable sets two settings"
    );
    let constants: BTreeSet<&str> = vars::ALL.iter().copied().collect();
    assert_eq!(
        unique, constants,
        "vars::ALL and the settings table disagree"
    );
    for var in &unique {
        assert!(
            var.starts_with("KUMA_")
                && var
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'),
            "{var} is not a KUMA_* name"
        );
    }
}

#[test]
fn table_groups_keys_by_parent_and_section() {
    let mut closed: BTreeSet<String> = BTreeSet::new();
    let mut open: Vec<String> = Vec::new();
    for setting in SETTINGS {
        assert!(
            !settings::is_section(setting.key),
            "{} is both a setting and a section",
            setting.key
        );
        assert!(
            SECTIONS.iter().any(|s| s.contains(setting.key)),
            "{} is in no docs section",
            setting.key
        );
        let parts: Vec<&str> = setting.key.split('.').collect();
        let parents: Vec<String> = (1..parts.len()).map(|n| parts[..n].join(".")).collect();
        for old in open.iter().filter(|p| !parents.contains(p)) {
            closed.insert(old.clone());
        }
        for parent in &parents {
            assert!(
                !closed.contains(parent),
                "settings under {parent} are not adjacent ({})",
                setting.key
            );
        }
        open = parents;
    }
}

#[test]
fn every_example_is_valid_and_round_trips() {
    for setting in SETTINGS {
        let mut config = Config::default();
        (setting.set)(&mut config, setting.example)
            .unwrap_or_else(|e| panic!("{}: example {:?}: {e}", setting.key, setting.example));
        let shown = match setting.value(&config) {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        let mut again = Config::default();
        (setting.set)(&mut again, &shown)
            .unwrap_or_else(|e| panic!("{}: shown {shown:?}: {e}", setting.key));
        assert_eq!(
            config, again,
            "{} does not round-trip through {shown:?}",
            setting.key
        );
    }
}

// === loading: file and environment ===

#[test]
fn every_setting_can_be_set_from_a_file_and_from_the_environment() {
    for setting in SETTINGS {
        let from_file = Config::from_yaml_str(&yaml_for(setting.key, setting.example))
            .unwrap_or_else(|e| panic!("{}: {e}", setting.key));
        for var in setting.env_names() {
            let from_env = from_env_only(&env(&[(var, setting.example)]))
                .unwrap_or_else(|e| panic!("{var}: {e:?}"));
            assert_eq!(
                from_file, from_env,
                "{} from a file differs from {var}",
                setting.key
            );
        }
        // `environment` has a single possible value.
        if setting.key != "environment" {
            assert_ne!(
                from_file,
                Config::default(),
                "{}: the example {:?} is the default",
                setting.key,
                setting.example
            );
        }
    }
}

#[test]
fn all_settings_at_once_from_a_file_equal_all_from_the_environment() {
    let yaml: String = SETTINGS
        .iter()
        .map(|s| yaml_for(s.key, s.example))
        .collect::<Vec<_>>()
        .join("---\n");
    // Separate documents cannot be merged by the loader, so build one nested mapping instead.
    let mut mapping = serde_yaml_ng::Mapping::new();
    for document in yaml.split("---\n") {
        let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(document).expect("test YAML");
        merge(&mut mapping, value);
    }
    let mut from_file = Config::default();
    let mut problems = Vec::new();
    apply_yaml(&mut from_file, &mapping, &mut problems);
    assert_eq!(problems, []);

    let all: Vec<(&str, &str)> = SETTINGS.iter().map(|s| (s.env, s.example)).collect();
    let from_env = from_env_only(&env(&all)).expect("every example is valid");
    assert_eq!(from_file, from_env);
}

fn merge(into: &mut serde_yaml_ng::Mapping, value: serde_yaml_ng::Value) {
    let serde_yaml_ng::Value::Mapping(mapping) = value else {
        return;
    };
    for (key, value) in mapping {
        match (into.get_mut(&key), value) {
            (
                Some(serde_yaml_ng::Value::Mapping(existing)),
                value @ serde_yaml_ng::Value::Mapping(_),
            ) => merge(existing, value),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

#[test]
fn the_environment_overrides_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("kuma-cp.yaml");
    std::fs::write(
        &file,
        "apiServer:\n  http:\n    port: 1111\ndiagnostics:\n  serverPort: 2222\n",
    )
    .expect("write");
    let loaded = Config::load(
        Some(&file),
        &env(&[("HOME", "/home/k"), ("KUMA_API_SERVER_HTTP_PORT", "3333")]),
    )
    .expect("valid config");
    assert_eq!(loaded.config.api_server.http.port, 3333);
    assert_eq!(loaded.config.diagnostics.server_port, 2222);
    assert_eq!(loaded.warnings, []);
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let error = Config::load(Some(Path::new("/nonexistent/kuma-cp.yaml")), &env(&[]))
        .expect_err("no such file");
    assert!(
        error.to_string().contains("/nonexistent/kuma-cp.yaml"),
        "{error}"
    );
}

#[test]
fn an_empty_file_means_defaults() {
    assert_eq!(
        Config::from_yaml_str("").expect("empty is fine"),
        Config::default()
    );
    assert_eq!(
        Config::from_yaml_str("# only a comment\n").expect("comment is fine"),
        Config::default()
    );
}

#[test]
fn unknown_keys_are_errors_naming_the_full_key() {
    let problems = problems_of(Config::from_yaml_str(
        "apiServer:\n  http:\n    portt: 5681\n",
    ));
    assert_eq!(problems, ["apiServer.http.portt: unknown setting"]);

    let problems = problems_of(Config::from_yaml_str(
        "apiSrever:\n  http:\n    port: 5681\nmode: zone\nfoo: 1\n",
    ));
    assert_eq!(
        problems,
        ["apiSrever: unknown setting", "foo: unknown setting"]
    );
}

#[test]
fn wrong_shapes_are_errors_naming_the_key() {
    let problems = problems_of(Config::from_yaml_str(
        "apiServer: 5681\nstore:\n  type: [sqlite]\n",
    ));
    assert_eq!(
        problems,
        [
            "apiServer: expected a mapping of settings",
            "store.type: expected a single value"
        ]
    );
}

#[test]
fn a_document_that_is_not_a_mapping_is_a_syntax_error() {
    let error = Config::from_yaml_str("- a\n- b\n").expect_err("a list");
    assert!(matches!(error, Error::Syntax { .. }), "{error}");
    let error = Config::from_yaml_str("apiServer: {http: [}\n").expect_err("broken YAML");
    assert!(matches!(error, Error::Syntax { .. }), "{error}");
}

#[test]
fn bad_values_in_the_file_name_the_key() {
    let problems = problems_of(Config::from_yaml_str(
        "apiServer:\n  http:\n    port: abc\n",
    ));
    assert_eq!(
        problems,
        [r#"apiServer.http.port: invalid value "abc": expected a port number (1-65535)"#]
    );

    let problems = problems_of(Config::from_yaml_str(
        "store:\n  type: kubernetes\n  cache:\n    expirationTime: 0s\nxdsServer:\n  grpcPort: 70000\n",
    ));
    assert_eq!(
        problems,
        [
            r#"store.type: invalid value "kubernetes": expected one of: sqlite, postgres, memory"#,
            r#"store.cache.expirationTime: invalid value "0s": expected a duration greater than zero, such as 1s, 500ms or 10m"#,
            r#"xdsServer.grpcPort: invalid value "70000": expected a port number (1-65535)"#,
        ]
    );
}

#[test]
fn bad_values_in_the_environment_name_the_variable() {
    let error = from_env_only(&env(&[("KUMA_API_SERVER_HTTP_PORT", "abc")])).expect_err("bad port");
    let shown: Vec<String> = error.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [r#"KUMA_API_SERVER_HTTP_PORT="abc": expected a port number (1-65535)"#]
    );

    let loaded = Config::load(
        None,
        &env(&[
            ("HOME", "/root"),
            ("KUMA_MULTIZONE_ZONE_GLOBAL_ADDRESS", "http://global:5685"),
            (
                "KUMA_XDS_SERVER_DATAPLANE_CONFIGURATION_REFRESH_INTERVAL",
                "0",
            ),
            ("KUMA_MULTIZONE_ZONE_KDS_TLS_SKIP_VERIFY", "maybe"),
        ]),
    );
    assert_eq!(
        problems_of(loaded),
        [
            r#"KUMA_MULTIZONE_ZONE_GLOBAL_ADDRESS="http://global:5685": expected a URL such as grpcs://global.example:5685 (scheme grpc or grpcs)"#,
            r#"KUMA_MULTIZONE_ZONE_KDS_TLS_SKIP_VERIFY="maybe": expected true or false"#,
            r#"KUMA_XDS_SERVER_DATAPLANE_CONFIGURATION_REFRESH_INTERVAL="0": expected a duration greater than zero, such as 1s, 500ms or 10m"#,
        ]
    );
}

#[test]
fn unknown_kuma_variables_are_warnings_and_others_are_ignored() {
    let loaded = Config::load(
        None,
        &env(&[
            ("HOME", "/root"),
            ("KUMA_DATAPLANE_ADMIN_PORT", "9901"),
            ("PATH", "/bin"),
            ("KUMA_MODE", "global"),
        ]),
    )
    .expect("valid");
    assert_eq!(loaded.config.mode, Mode::Global);
    let warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        ["KUMA_DATAPLANE_ADMIN_PORT: no such setting, ignored"]
    );
}

#[test]
fn both_spellings_of_a_variable_work_and_the_documented_one_wins() {
    let ca = |env: &Env| {
        from_env_only(env)
            .expect("valid")
            .store
            .postgres
            .tls
            .ca_path
    };
    assert_eq!(
        ca(&env(&[("KUMA_STORE_POSTGRES_TLS_CA_PATH", "/a")])),
        Some(PathBuf::from("/a"))
    );
    assert_eq!(
        ca(&env(&[("KUMA_STORE_POSTGRES_TLS_ROOT_CERT_PATH", "/b")])),
        Some(PathBuf::from("/b"))
    );

    let both = env(&[
        ("HOME", "/root"),
        ("KUMA_STORE_POSTGRES_TLS_CA_PATH", "/a"),
        ("KUMA_STORE_POSTGRES_TLS_ROOT_CERT_PATH", "/b"),
    ]);
    assert_eq!(ca(&both), Some(PathBuf::from("/b")));
    let loaded = Config::load(None, &both).expect("valid");
    assert_eq!(
        loaded.warnings,
        [Warning::ConflictingEnv {
            key: "store.postgres.tls.caPath",
            used: "KUMA_STORE_POSTGRES_TLS_ROOT_CERT_PATH",
            ignored: "KUMA_STORE_POSTGRES_TLS_CA_PATH",
        }]
    );
}

#[test]
fn standalone_mode_means_zone() {
    let config = from_env_only(&env(&[("KUMA_MODE", "standalone")])).expect("valid");
    assert_eq!(config.mode, Mode::Zone);
    let problems = problems_of(Config::from_yaml_str("mode: remote\n"));
    assert_eq!(
        problems,
        [r#"mode: invalid value "remote": expected one of: global, zone (standalone means zone)"#]
    );
}

#[test]
fn the_issue_table_holds() {
    let defaults = Config::default();
    let rows: [(&str, &str, serde_json::Value); 9] = [
        (
            "apiServer.http.port",
            "KUMA_API_SERVER_HTTP_PORT",
            5681.into(),
        ),
        (
            "diagnostics.serverPort",
            "KUMA_DIAGNOSTICS_SERVER_PORT",
            5680.into(),
        ),
        (
            "multizone.global.kds.grpcPort",
            "KUMA_MULTIZONE_GLOBAL_KDS_GRPC_PORT",
            5685.into(),
        ),
        (
            "xdsServer.grpcPort",
            "KUMA_XDS_SERVER_GRPC_PORT",
            5678.into(),
        ),
        (
            "bootstrapServer.port",
            "KUMA_BOOTSTRAP_SERVER_PORT",
            5682.into(),
        ),
        ("dnsServer.port", "KUMA_DNS_SERVER_PORT", 5653.into()),
        (
            "monitoringAssignmentServer.port",
            "KUMA_MONITORING_ASSIGNMENT_SERVER_PORT",
            5676.into(),
        ),
        (
            "adminServer.local.port",
            "KUMA_ADMIN_SERVER_LOCAL_PORT",
            5679.into(),
        ),
        ("general.workDir", "KUMA_GENERAL_WORK_DIR", "~/.kuma".into()),
    ];
    for (key, var, default) in rows {
        let setting = settings::by_key(key).unwrap_or_else(|| panic!("{key} is no setting"));
        assert_eq!(setting.env, var);
        assert_eq!(setting.value(&defaults), default, "{key}");
    }
}

// === paths ===

#[test]
fn work_dir_expands_from_home_and_places_the_sqlite_file() {
    let loaded = Config::load(None, &env(&[("HOME", "/home/kuma")])).expect("valid");
    assert_eq!(
        loaded.config.general.work_dir,
        PathBuf::from("/home/kuma/.kuma")
    );
    assert_eq!(
        loaded.config.store.sqlite.path,
        Some(PathBuf::from("/home/kuma/.kuma/kuma.db"))
    );

    let loaded = Config::load(
        None,
        &env(&[("HOME", "/h"), ("KUMA_GENERAL_WORK_DIR", "/var/lib/kuma")]),
    )
    .expect("valid");
    assert_eq!(
        loaded.config.store.sqlite.path,
        Some(PathBuf::from("/var/lib/kuma/kuma.db"))
    );

    let loaded = Config::load(
        None,
        &env(&[("HOME", "/h"), ("KUMA_STORE_SQLITE_PATH", "~/db/zone.db")]),
    )
    .expect("valid");
    assert_eq!(
        loaded.config.store.sqlite.path,
        Some(PathBuf::from("/h/db/zone.db"))
    );
}

#[test]
fn a_tilde_without_home_is_an_error() {
    assert_eq!(
        problems_of(Config::load(None, &env(&[]))),
        ["general.workDir: ~/.kuma starts with ~ but HOME is not set"]
    );
    let loaded = Config::load(None, &env(&[("KUMA_GENERAL_WORK_DIR", "/srv/kuma")]))
        .expect("no ~, no HOME needed");
    assert_eq!(loaded.config.general.work_dir, PathBuf::from("/srv/kuma"));
}

// === validation ===

#[test]
fn the_defaults_are_valid() {
    Config::default().validate().expect("defaults are valid");
}

#[test]
fn validation_names_every_problem() {
    let mut config = Config::default();
    config.multizone.zone.name = "Zone_1".to_owned();
    config.api_server.http.port = 0;
    config.api_server.https.enabled = true;
    config.general.tls_cert_file = Some(PathBuf::from("/c.crt"));
    config.store.postgres.tls.mode = PgTlsMode::VerifyFull;
    config.multizone.global.kds.max_msg_size = 0;
    assert_eq!(
        problems_of(config.validate()),
        [
            "apiServer.http.port: must be a port number between 1 and 65535",
            "bootstrapServer.port: port 5682 is also used by apiServer.https.port",
            r#"multizone.zone.name: "Zone_1" is not a DNS label: must start with a lowercase letter"#,
            "multizone.global.kds.maxMsgSize: must be greater than 0",
            "general.tlsKeyFile: must be set when general.tlsCertFile is set",
            "store.postgres.tls.caPath: must be set when store.postgres.tls.mode is verifyFull",
        ]
    );
}

#[test]
fn zone_names_follow_dns_label_rules() {
    use validate::check_dns_label;
    assert!(check_dns_label("zone-1").is_ok());
    assert!(check_dns_label(&"a".repeat(63)).is_ok());
    assert!(check_dns_label(&"a".repeat(64)).is_err());
    assert!(check_dns_label("1zone").is_err());
    assert!(check_dns_label("zone-").is_err());
    assert!(check_dns_label("zone.1").is_err());
    assert!(check_dns_label("").is_err());

    let mut config = Config::default();
    config.multizone.zone.name.clear();
    assert_eq!(
        problems_of(config.validate()),
        ["multizone.zone.name: must be set on a zone control plane"]
    );
    config.mode = Mode::Global;
    config.validate().expect("a global needs no zone name");
}

#[test]
fn listeners_only_conflict_within_a_mode() {
    let mut config = Config {
        mode: Mode::Global,
        ..Config::default()
    };
    config.api_server.https.enabled = true;
    config
        .validate()
        .expect("a global serves no bootstrap, so 5682 is free for HTTPS");
    config.multizone.global.kds.grpc_port = 5681;
    assert_eq!(
        problems_of(config.validate()),
        ["multizone.global.kds.grpcPort: port 5681 is also used by apiServer.http.port"]
    );
}

#[test]
fn global_address_is_a_grpc_url() {
    let url: GrpcUrl = "grpcs://global.example:5685".parse().expect("valid");
    assert!(url.tls());
    assert_eq!((url.host(), url.port()), ("global.example", 5685));
    let url: GrpcUrl = "grpc://[::1]".parse().expect("valid");
    assert_eq!(
        (url.tls(), url.host(), url.port()),
        (false, "::1", GrpcUrl::DEFAULT_PORT)
    );
    assert_eq!(url.to_string(), "grpc://[::1]:5685");
    for bad in [
        "global:5685",
        "https://global:5685",
        "grpcs://",
        "grpcs://:5685",
        "grpcs://g:0",
        "grpcs://g/path",
        "grpcs://g:x",
    ] {
        assert!(bad.parse::<GrpcUrl>().is_err(), "{bad} was accepted");
    }
}

#[test]
fn new_kds_settings_have_their_defaults_and_kuma_names() {
    let defaults = Config::default();
    let rows: [(&str, &str, serde_json::Value); 9] = [
        (
            "multizone.global.kds.auth.type",
            "KUMA_MULTIZONE_GLOBAL_KDS_AUTH_TYPE",
            "zoneToken".into(),
        ),
        (
            "multizone.global.kds.zoneHealthCheck.pollInterval",
            "KUMA_MULTIZONE_GLOBAL_KDS_ZONE_HEALTH_CHECK_POLL_INTERVAL",
            "1s".into(),
        ),
        (
            "multizone.global.kds.zoneHealthCheck.timeout",
            "KUMA_MULTIZONE_GLOBAL_KDS_ZONE_HEALTH_CHECK_TIMEOUT",
            "6s".into(),
        ),
        (
            "multizone.global.kds.stallTimeout",
            "KUMA_MULTIZONE_GLOBAL_KDS_STALL_TIMEOUT",
            "20s".into(),
        ),
        (
            "multizone.zone.kds.stallTimeout",
            "KUMA_MULTIZONE_ZONE_KDS_STALL_TIMEOUT",
            "20s".into(),
        ),
        (
            "multizone.zone.kds.auth.tokenPath",
            "KUMA_MULTIZONE_ZONE_KDS_AUTH_TOKEN_PATH",
            "".into(),
        ),
        (
            "multizone.zone.kds.auth.tokenInline",
            "KUMA_MULTIZONE_ZONE_KDS_AUTH_TOKEN_INLINE",
            "".into(),
        ),
        (
            "general.resilientComponentBaseBackoff",
            "KUMA_GENERAL_RESILIENT_COMPONENT_BASE_BACKOFF",
            "1s".into(),
        ),
        (
            "general.resilientComponentMaxBackoff",
            "KUMA_GENERAL_RESILIENT_COMPONENT_MAX_BACKOFF",
            "30s".into(),
        ),
    ];
    for (key, var, default) in rows {
        let setting = settings::by_key(key).unwrap_or_else(|| panic!("{key} is no setting"));
        assert_eq!(setting.env, var);
        assert_eq!(setting.value(&defaults), default, "{key}");
    }
    let config =
        from_env_only(&env(&[("KUMA_MULTIZONE_GLOBAL_KDS_AUTH_TYPE", "none")])).expect("valid");
    assert_eq!(config.multizone.global.kds.auth.kind, KdsAuthType::None);
    assert_eq!(
        problems_of(Config::from_yaml_str(
            "multizone:\n  global:\n    kds:\n      auth:\n        type: jwt\n"
        )),
        [
            r#"multizone.global.kds.auth.type: invalid value "jwt": expected one of: zoneToken, none"#
        ]
    );
}

#[test]
fn the_health_check_timeout_must_exceed_its_poll_interval() {
    let load = |poll: &str, timeout: &str| {
        Config::load(
            None,
            &env(&[
                ("HOME", "/root"),
                (
                    "KUMA_MULTIZONE_GLOBAL_KDS_ZONE_HEALTH_CHECK_POLL_INTERVAL",
                    poll,
                ),
                (
                    "KUMA_MULTIZONE_GLOBAL_KDS_ZONE_HEALTH_CHECK_TIMEOUT",
                    timeout,
                ),
            ]),
        )
    };
    let loaded = load("500ms", "2s").expect("valid");
    assert_eq!(
        loaded
            .config
            .multizone
            .global
            .kds
            .zone_health_check
            .poll_interval,
        Interval::from_millis(500)
    );
    assert_eq!(
        problems_of(load("5s", "5s")),
        [
            "multizone.global.kds.zoneHealthCheck.timeout: must be longer than multizone.global.kds.zoneHealthCheck.pollInterval (5s)"
        ]
    );
    assert_eq!(
        problems_of(load("10s", "6s")),
        [
            "multizone.global.kds.zoneHealthCheck.timeout: must be longer than multizone.global.kds.zoneHealthCheck.pollInterval (10s)"
        ]
    );
    assert_eq!(
        problems_of(load("0s", "6s")),
        [
            r#"KUMA_MULTIZONE_GLOBAL_KDS_ZONE_HEALTH_CHECK_POLL_INTERVAL="0s": expected a duration greater than zero, such as 1s, 500ms or 10m"#
        ]
    );
}

#[test]
fn the_backoff_base_must_not_exceed_its_cap() {
    let mut config = Config::default();
    config.general.resilient_component_base_backoff = Interval::from_secs(30);
    config.validate().expect("base == max is fine");
    config.general.resilient_component_base_backoff = Interval::from_secs(31);
    assert_eq!(
        problems_of(config.validate()),
        [
            "general.resilientComponentMaxBackoff: must not be shorter than general.resilientComponentBaseBackoff (31s)"
        ]
    );
}

#[test]
fn stall_timeouts_are_positive_durations() {
    let config = from_env_only(&env(&[
        ("KUMA_MULTIZONE_GLOBAL_KDS_STALL_TIMEOUT", "1m30s"),
        ("KUMA_MULTIZONE_ZONE_KDS_STALL_TIMEOUT", "5s"),
    ]))
    .expect("valid");
    assert_eq!(
        config.multizone.global.kds.stall_timeout.get(),
        Duration::from_secs(90)
    );
    assert_eq!(
        config.multizone.zone.kds.stall_timeout.get(),
        Duration::from_secs(5)
    );
    let problems = from_env_only(&env(&[("KUMA_MULTIZONE_ZONE_KDS_STALL_TIMEOUT", "0")]))
        .expect_err("zero stall timeout");
    assert_eq!(problems.len(), 1, "{problems:?}");
}

#[test]
fn a_federated_zone_needs_a_dns_label_name() {
    let load = |name: &str, address: &str| {
        Config::load(
            None,
            &env(&[
                ("HOME", "/root"),
                ("KUMA_MULTIZONE_ZONE_NAME", name),
                ("KUMA_MULTIZONE_ZONE_GLOBAL_ADDRESS", address),
            ]),
        )
    };
    let loaded = load("zone-1", "grpcs://global.example:5685").expect("valid");
    let address = loaded.config.multizone.zone.global_address.expect("set");
    assert_eq!((address.tls(), address.host()), (true, "global.example"));
    load("zone-1", "grpc://10.0.0.1:5685").expect("plain grpc is allowed");

    assert_eq!(
        problems_of(load("", "grpcs://global.example")),
        ["multizone.zone.name: must be set when multizone.zone.globalAddress is set"]
    );
    assert_eq!(
        problems_of(load("Zone_1", "grpcs://global.example")),
        [r#"multizone.zone.name: "Zone_1" is not a DNS label: must start with a lowercase letter"#]
    );
    assert_eq!(
        problems_of(load(&"z".repeat(64), "grpcs://global.example")),
        [format!(
            "multizone.zone.name: {:?} is not a DNS label: longer than 63 characters",
            "z".repeat(64)
        )]
    );
    assert_eq!(
        problems_of(load("zone-1", "http://x:1")),
        [
            r#"KUMA_MULTIZONE_ZONE_GLOBAL_ADDRESS="http://x:1": expected a URL such as grpcs://global.example:5685 (scheme grpc or grpcs)"#
        ]
    );

    // The rule holds whatever the mode says.
    let mut config = Config {
        mode: Mode::Global,
        ..Config::default()
    };
    config.multizone.zone.name.clear();
    config
        .validate()
        .expect("a global without globalAddress needs no zone name");
    config.multizone.zone.global_address = Some("grpcs://g".parse().expect("url"));
    assert_eq!(
        problems_of(config.validate()),
        ["multizone.zone.name: must be set when multizone.zone.globalAddress is set"]
    );
}

#[test]
fn the_zone_token_comes_from_one_place() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("zone-token");
    std::fs::write(&file, "  file.jwt.token\n").expect("write");
    let path = file.to_str().expect("utf-8");

    let mut config = Config::default();
    assert_eq!(config.zone_kds_token().expect("none"), None);

    config.multizone.zone.kds.auth.token_path = Some(file.clone());
    config.validate().expect("a path alone is valid");
    assert_eq!(
        config.zone_kds_token().expect("read").as_deref(),
        Some("file.jwt.token")
    );

    config.multizone.zone.kds.auth.token_inline = Some(Password::new("inline.jwt.token\n"));
    assert_eq!(
        problems_of(config.validate()),
        [
            "multizone.zone.kds.auth.tokenInline: must not be set together with multizone.zone.kds.auth.tokenPath"
        ]
    );
    config.multizone.zone.kds.auth.token_path = None;
    assert_eq!(
        config.zone_kds_token().expect("inline").as_deref(),
        Some("inline.jwt.token")
    );

    // Both from the environment: the loader refuses, naming the setting.
    assert_eq!(
        problems_of(Config::load(
            None,
            &env(&[
                ("HOME", "/root"),
                ("KUMA_MULTIZONE_ZONE_KDS_AUTH_TOKEN_PATH", path),
                ("KUMA_MULTIZONE_ZONE_KDS_AUTH_TOKEN_INLINE", "t"),
            ]),
        )),
        [
            "multizone.zone.kds.auth.tokenInline: must not be set together with multizone.zone.kds.auth.tokenPath"
        ]
    );

    // A missing or empty file is an error naming the setting and the path.
    config.multizone.zone.kds.auth.token_inline = None;
    let missing = dir.path().join("no-such-token");
    config.multizone.zone.kds.auth.token_path = Some(missing.clone());
    let error = config
        .zone_kds_token()
        .expect_err("missing file")
        .to_string();
    assert!(
        error.starts_with("multizone.zone.kds.auth.tokenPath: reading ")
            && error.contains(&missing.display().to_string()),
        "{error}"
    );
    std::fs::write(&file, "\n").expect("write");
    config.multizone.zone.kds.auth.token_path = Some(file.clone());
    assert_eq!(
        config.zone_kds_token().expect_err("empty file").to_string(),
        format!(
            "multizone.zone.kds.auth.tokenPath: {} holds no token",
            file.display()
        )
    );
}

// === durations ===

#[test]
fn durations_read_and_print_go_style() {
    for (text, duration) in [
        ("1s", Duration::from_secs(1)),
        ("500ms", Duration::from_millis(500)),
        ("10m", Duration::from_secs(600)),
        ("1h30m", Duration::from_secs(5400)),
        ("2m0s", Duration::from_secs(120)),
        ("0", Duration::ZERO),
    ] {
        let mut config = Config::default();
        (settings::by_key("store.postgres.maxConnectionLifetime")
            .expect("setting")
            .set)(&mut config, text)
        .unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(
            config.store.postgres.max_connection_lifetime, duration,
            "{text}"
        );
    }
    assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
    assert_eq!(format_duration(Duration::from_secs(72 * 3600)), "72h");
    assert_eq!(format_duration(Duration::from_millis(1500)), "1s500ms");
    assert_eq!(format_duration(Duration::ZERO), "0s");
    assert_eq!(Interval::new(Duration::ZERO), None);
}

// === showing ===

#[test]
fn sanitized_masks_secrets_and_keeps_kuma_keys() {
    let mut config = Config::default();
    config.store.postgres.password = Password::new("hunter2");
    let json = config.sanitized();
    assert_eq!(json["store"]["postgres"]["password"], "*****");
    assert_eq!(json["store"]["type"], "sqlite");
    assert_eq!(json["apiServer"]["http"]["port"], 5681);
    assert_eq!(json["multizone"]["global"]["kds"]["refreshInterval"], "1s");
    assert_eq!(json["dnsServer"]["CIDR"], "240.0.0.0/4");
    assert!(!json.to_string().contains("hunter2"));
}

#[test]
fn debug_output_hides_the_password() {
    let mut config = Config::default();
    config.store.postgres.password = Password::new("hunter2");
    let debug = format!("{config:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("Password(*****)"));
}

#[test]
fn secrets_are_recognised_by_name() {
    let secret: Vec<&str> = SETTINGS
        .iter()
        .filter(|s| s.is_secret())
        .map(|s| s.key)
        .collect();
    assert_eq!(
        secret,
        [
            "store.postgres.password",
            "multizone.zone.kds.auth.tokenInline"
        ]
    );
}

#[test]
fn the_zone_token_is_masked_everywhere() {
    let loaded = Config::load(
        None,
        &env(&[
            ("HOME", "/root"),
            (
                "KUMA_MULTIZONE_ZONE_KDS_AUTH_TOKEN_INLINE",
                "zone-secret-jwt",
            ),
        ]),
    )
    .expect("valid");
    let config = loaded.config;
    assert_eq!(
        config
            .multizone
            .zone
            .kds
            .auth
            .token_inline
            .as_ref()
            .map(Password::expose),
        Some("zone-secret-jwt")
    );
    let json = config.sanitized();
    assert_eq!(
        json["multizone"]["zone"]["kds"]["auth"]["tokenInline"],
        "*****"
    );
    // The path of a token file is no secret.
    assert_eq!(json["multizone"]["zone"]["kds"]["auth"]["tokenPath"], "");
    assert!(!json.to_string().contains("zone-secret-jwt"));
    let debug = format!("{config:?}");
    assert!(!debug.contains("zone-secret-jwt"), "{debug}");
}
