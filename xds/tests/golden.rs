//! Golden tests: the generated resources of each case, as proto3 YAML, must
//! equal `testdata/{case}.golden.yaml`. `UPDATE_GOLDEN=1 cargo test -p xds`
//! rewrites the files; review the diff before committing it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

fn check(case: &str) {
    let actual = xds::render::resources_to_yaml(&common::generate_case(case))
        .unwrap_or_else(|e| panic!("{case}: rendering: {e}"));
    let path = common::testdata(&format!("{case}.golden.yaml"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    assert!(
        actual == expected,
        "{case}: generated resources differ from {} (UPDATE_GOLDEN=1 rewrites it)\n--- actual ---\n{actual}",
        path.display()
    );
}

#[test]
fn golden_tcp_inbound() {
    check("tcp_inbound");
}

#[test]
fn golden_http_inbound_and_outbound() {
    check("http_inbound_and_outbound");
}

#[test]
fn golden_grpc_outbound() {
    check("grpc_outbound");
}

#[test]
fn golden_outbound_without_instances() {
    check("outbound_without_instances");
}

#[test]
fn golden_rbac_permission() {
    check("rbac_permission");
}

#[test]
fn golden_rbac_deny_all() {
    check("rbac_deny_all");
}

#[test]
fn golden_split_by_version() {
    check("split_by_version");
}

#[test]
fn golden_load_balancers() {
    check("load_balancers");
}

#[test]
fn golden_http_rules() {
    check("http_rules");
}

#[test]
fn golden_transparent_proxy_vips() {
    check("transparent_proxy_vips");
}

#[test]
fn golden_mtls_strict() {
    check("mtls_strict");
}

#[test]
fn golden_mtls_permissive() {
    check("mtls_permissive");
}

#[test]
fn golden_metrics_prometheus() {
    check("metrics_prometheus");
}
