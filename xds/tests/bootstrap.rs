//! The sidecar bootstrap: golden proto3 YAML in `testdata/bootstrap_*.golden.yaml`
//! (`UPDATE_GOLDEN=1` rewrites them), and real Envoy 1.40 `--mode validate`
//! on every case.
//!
//! Needs `ENVOY_BINARY` (exported by `cargo xtask test`; `cargo xtask envoy`
//! prints a path). Without it the Envoy tests fail: they never skip silently.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod envoy_cli;

use envoy_cli::*;

use std::path::PathBuf;

use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use model::mesh_pb::Dataplane;
use model::mesh_pb::dataplane::Networking;
use model::mesh_pb::dataplane::networking::Inbound;
use model::{Resource, Spec};
use xds::bootstrap::{AdsApiType, BootstrapParams, XdsServer, bootstrap, to_json, to_yaml};

const TOKEN: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJOYW1lIjoid2ViLTEifQ.c2lnbmF0dXJl";

fn testdata(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(file)
}

fn ca_pem() -> String {
    std::fs::read_to_string(testdata("bootstrap_ca.pem")).unwrap()
}

fn web_1() -> Resource {
    let inbound = Inbound {
        port: 8080,
        service_port: 80,
        tags: [("kuma.io/service".to_string(), "web".to_string())].into(),
        ..Default::default()
    };
    let dp = Dataplane {
        networking: Some(Networking {
            address: "10.0.0.1".into(),
            inbound: vec![inbound],
            ..Default::default()
        }),
        ..Default::default()
    };
    Resource::new("default", "web-1", Spec::Dataplane(dp))
}

/// The cases: plaintext to an IP with SotW, TLS to a host name with delta.
fn case(name: &str) -> Bootstrap {
    let params = match name {
        "bootstrap_plaintext" => {
            let xds = XdsServer::from_url("grpc://127.0.0.1:5678", None).unwrap();
            BootstrapParams::for_dataplane(&web_1(), xds, Some(TOKEN.into())).unwrap()
        }
        "bootstrap_tls_delta" => {
            let xds = XdsServer::from_url("https://kuma-cp.example:5678", Some(&ca_pem())).unwrap();
            let mut params =
                BootstrapParams::for_dataplane(&web_1(), xds, Some(TOKEN.into())).unwrap();
            params.api_type = AdsApiType::DeltaGrpc;
            params.admin_port = 19901;
            params
        }
        other => panic!("no case {other}"),
    };
    bootstrap(&params).unwrap()
}

const CASES: &[&str] = &["bootstrap_plaintext", "bootstrap_tls_delta"];

#[test]
fn golden_bootstraps() {
    for name in CASES {
        let actual = to_yaml(&case(name)).unwrap();
        let path = testdata(&format!("{name}.golden.yaml"));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
                path.display()
            )
        });
        assert!(
            actual == expected,
            "{name}: bootstrap differs from {} (UPDATE_GOLDEN=1 rewrites it)\n--- actual ---\n{actual}",
            path.display()
        );
    }
}

#[test]
fn bootstrap_carries_identity_token_and_http2() {
    let json = to_json(&case("bootstrap_plaintext")).unwrap();
    assert_eq!(json["node"]["id"], "default.web-1");
    assert_eq!(json["node"]["cluster"], "web");
    let ads = &json["dynamicResources"]["adsConfig"];
    assert_eq!(ads["apiType"], "GRPC");
    assert_eq!(ads["transportApiVersion"], "V3");
    let service = &ads["grpcServices"][0];
    assert_eq!(service["envoyGrpc"]["clusterName"], "ads_cluster");
    assert_eq!(service["initialMetadata"][0]["key"], "authorization");
    assert_eq!(
        service["initialMetadata"][0]["value"],
        format!("Bearer {TOKEN}")
    );
    let cluster = &json["staticResources"]["clusters"][0];
    assert_eq!(cluster["type"], "STATIC");
    let options = &cluster["typedExtensionProtocolOptions"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
    assert!(
        options["explicitHttpConfig"]["http2ProtocolOptions"].is_object(),
        "{options}"
    );
    assert!(cluster.get("transportSocket").is_none());

    let tls = to_json(&case("bootstrap_tls_delta")).unwrap();
    let cluster = &tls["staticResources"]["clusters"][0];
    assert_eq!(cluster["type"], "STRICT_DNS");
    assert_eq!(
        cluster["transportSocket"]["name"],
        "envoy.transport_sockets.tls"
    );
    assert_eq!(
        tls["dynamicResources"]["adsConfig"]["apiType"],
        "DELTA_GRPC"
    );
}

#[test]
fn without_a_token_there_is_no_authorization_metadata() {
    let xds = XdsServer::from_url("grpc://127.0.0.1:5678", None).unwrap();
    let params = BootstrapParams::for_dataplane(&web_1(), xds, None).unwrap();
    let json = to_json(&bootstrap(&params).unwrap()).unwrap();
    let service = &json["dynamicResources"]["adsConfig"]["grpcServices"][0];
    assert!(service.get("initialMetadata").is_none(), "{service}");
}

#[test]
fn envoy_accepts_the_bootstraps() {
    for name in CASES {
        let json = to_json(&case(name)).unwrap();
        if let Err(e) = envoy_validate(name, &json) {
            panic!("{name}: {e}");
        }
    }
}

/// The check has teeth: ADS without `node.cluster` is refused.
#[test]
fn envoy_refuses_ads_without_node_cluster() {
    let mut json = to_json(&case("bootstrap_plaintext")).unwrap();
    json["node"].as_object_mut().unwrap().remove("cluster");
    let err = envoy_validate("no_cluster", &json).expect_err("Envoy accepted ADS without cluster");
    assert!(err.contains("'cluster' are required"), "{err}");
}
