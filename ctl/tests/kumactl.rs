//! Runs the built `kumactl` against a real HTTP server on 127.0.0.1 (for now the
//! `FakeKumaApi` stand-in of `tests/fake`), with its configuration in a temporary directory.

mod fake;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use fake::FakeKumaApi;
use serde_json::{Value, json};

/// A kumactl whose HOME and config file live in a temp dir.
struct Kumactl {
    dir: tempfile::TempDir,
}

impl Kumactl {
    fn new() -> Kumactl {
        Kumactl {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("kumactl-config")
    }

    /// A kumactl already pointed at `api` (without contacting it).
    fn pointed_at(api_url: &str) -> Kumactl {
        let k = Kumactl::new();
        let out = k.add_control_plane("test", api_url, &["--skip-check"]);
        assert!(out.status.success(), "{}", stderr(&out));
        k
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, None)
    }

    /// `kumactl config control-planes add --name NAME --address ADDRESS EXTRA...`.
    fn add_control_plane(&self, name: &str, address: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            "config",
            "control-planes",
            "add",
            "--name",
            name,
            "--address",
            address,
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kumactl"));
        command
            .arg("--config-file")
            .arg(self.config_path())
            .args(args)
            .env("HOME", self.dir.path())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn kumactl");
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())
                .expect("write stdin");
        }
        child.wait_with_output().expect("kumactl output")
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write file");
        path
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

const MESH_AND_PERMISSION: &str = r#"
type: Mesh
name: demo
mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: builtin
---
type: TrafficPermission
name: allow-all
mesh: demo
sources:
  - match:
      kuma.io/service: '*'
destinations:
  - match:
      kuma.io/service: '*'
"#;

#[test]
fn config_control_planes_add_requires_a_kuma_control_plane() {
    let kuma = FakeKumaApi::start("Kuma");
    let k = Kumactl::new();
    let out = k.add_control_plane("kuma", &kuma.url(), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "added Control Plane \"kuma\"\nswitched active Control Plane to \"kuma\"\n"
    );
    assert_eq!(kuma.requests()[0].path_and_query, "/");
    let config = std::fs::read_to_string(k.config_path()).expect("config written");
    assert_eq!(
        config,
        format!(
            "contexts:\n- controlPlane: local\n  name: local\n- controlPlane: kuma\n  name: kuma\ncontrolPlanes:\n- coordinates:\n    apiServer:\n      url: http://localhost:5681\n  name: local\n- coordinates:\n    apiServer:\n      url: {}\n  name: kuma\ncurrentContext: kuma\n",
            kuma.url()
        )
    );

    let other = FakeKumaApi::start("Other Mesh");
    let out = k.add_control_plane("other", &other.url(), &[]);
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out),
        "Error: this CLI is for Kuma but the control plane you're connected to is Other Mesh. Please use the CLI for your control plane\n"
    );

    // the same name again needs --overwrite
    let out = k.add_control_plane("kuma", &kuma.url(), &[]);
    assert_eq!(
        stderr(&out),
        "Error: Control Plane with name \"kuma\" already exists. Use --overwrite to replace an existing one.\n"
    );

    let out = k.run(&["config", "control-planes", "list"]);
    assert_eq!(
        stdout(&out),
        format!(
            "ACTIVE   NAME    ADDRESS\n         local   http://localhost:5681\n*        kuma    {}\n",
            kuma.url()
        )
    );
    let out = k.run(&["config", "control-planes", "switch", "--name", "local"]);
    assert_eq!(stdout(&out), "switched active Control Plane to \"local\"\n");
    let out = k.run(&["config", "control-planes", "remove", "--name", "local"]);
    assert_eq!(
        stdout(&out),
        "removed Control Plane \"local\"\nswitched active Control Plane to \"kuma\"\n"
    );
    let out = k.run(&["config", "view"]);
    assert!(
        stdout(&out).ends_with("currentContext: kuma\n\n"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn apply_multi_document_then_get_in_every_format_then_delete() {
    let api = FakeKumaApi::start("Kuma");
    let k = Kumactl::pointed_at(&api.url());
    let file = k.write("resources.yaml", MESH_AND_PERMISSION);

    let out = k.run(&["apply", "-f", path_str(&file)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "resource type=\"Mesh\" mesh=\"\" name=\"demo\" Created\nresource type=\"TrafficPermission\" mesh=\"demo\" name=\"allow-all\" Created\n"
    );
    let calls: Vec<String> = api
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path_and_query))
        .collect();
    assert_eq!(
        calls,
        vec![
            "GET /",
            "GET /meshes/demo",
            "PUT /meshes/demo",
            "GET /meshes/demo/traffic-permissions/allow-all",
            "PUT /meshes/demo/traffic-permissions/allow-all",
        ]
    );
    let put: Value = serde_json::from_str(&api.requests()[4].body).expect("json body");
    assert_eq!(
        put,
        json!({"type": "TrafficPermission", "mesh": "demo", "name": "allow-all",
               "sources": [{"match": {"kuma.io/service": "*"}}],
               "destinations": [{"match": {"kuma.io/service": "*"}}]})
    );

    // the same file from stdin: both exist now
    let out = k.run_with_stdin(&["apply", "-f", "-"], Some(MESH_AND_PERMISSION));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "resource type=\"Mesh\" mesh=\"\" name=\"demo\" Updated\nresource type=\"TrafficPermission\" mesh=\"demo\" name=\"allow-all\" Updated\n"
    );

    let out = k.run(&["get", "meshes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "NAME   mTLS           METRICS   LOGGING   TRACING   LOCALITY   ZONEEGRESS   AGE\n\
         demo   builtin/ca-1   off       off       off       off        off          292y\n"
    );

    let out = k.run(&["get", "traffic-permissions", "--mesh", "demo"]);
    assert_eq!(
        stdout(&out),
        "MESH   NAME        AGE\ndemo   allow-all   292y\n"
    );

    let out = k.run(&[
        "get",
        "traffic-permission",
        "allow-all",
        "-m",
        "demo",
        "-o",
        "yaml",
    ]);
    assert_eq!(
        stdout(&out),
        "creationTime: \"0001-01-01T00:00:00Z\"\nmesh: demo\nmodificationTime: \"0001-01-01T00:00:00Z\"\nname: allow-all\ntype: TrafficPermission\ndestinations:\n- match:\n    kuma.io/service: '*'\nsources:\n- match:\n    kuma.io/service: '*'\n"
    );

    let out = k.run(&[
        "get",
        "traffic-permission",
        "allow-all",
        "-m",
        "demo",
        "-o",
        "json",
    ]);
    assert_eq!(
        stdout(&out),
        r#"{
  "type": "TrafficPermission",
  "mesh": "demo",
  "name": "allow-all",
  "creationTime": "0001-01-01T00:00:00Z",
  "modificationTime": "0001-01-01T00:00:00Z",
  "sources": [
    {
      "match": {
        "kuma.io/service": "*"
      }
    }
  ],
  "destinations": [
    {
      "match": {
        "kuma.io/service": "*"
      }
    }
  ]
}
"#
    );

    let out = k.run(&["get", "meshes", "-o", "yaml"]);
    assert_eq!(
        stdout(&out),
        "items:\n- creationTime: \"0001-01-01T00:00:00Z\"\n  modificationTime: \"0001-01-01T00:00:00Z\"\n  mtls:\n    backends:\n    - name: ca-1\n      type: builtin\n    enabledBackend: ca-1\n  name: demo\n  type: Mesh\nnext: null\ntotal: 1\n"
    );

    let out = k.run(&["get", "mesh", "nope"]);
    assert!(!out.status.success());
    assert_eq!(stderr(&out), "Error: No resources found\n");
    let out = k.run(&["get", "traffic-permission", "nope", "-m", "demo"]);
    assert_eq!(stderr(&out), "Error: No resources found in demo mesh\n");

    let out = k.run(&["delete", "traffic-permission", "allow-all", "-m", "demo"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "deleted TrafficPermission \"allow-all\"\n");
    let out = k.run(&["delete", "traffic-permission", "allow-all", "-m", "demo"]);
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out),
        "Error: there is no TrafficPermission with name \"allow-all\"\n"
    );
}

#[test]
fn get_pages_with_size_and_offset() {
    let api = FakeKumaApi::start("Kuma");
    for name in ["a", "b", "c"] {
        api.insert(
            "zones",
            json!({"type": "Zone", "name": name, "creationTime": fake::ZERO_TIME,
                   "modificationTime": fake::ZERO_TIME}),
        );
    }
    let k = Kumactl::pointed_at(&api.url());
    let out = k.run(&["get", "zones", "--size", "2"]);
    assert_eq!(
        stdout(&out),
        "NAME   AGE\na      292y\nb      292y\n\nRerun command with --offset=2 argument to retrieve more resources\n"
    );
    assert!(
        api.requests()
            .iter()
            .any(|r| r.path_and_query == "/zones?size=2")
    );
    let out = k.run(&["get", "zones", "--size", "2", "--offset", "2"]);
    assert_eq!(stdout(&out), "NAME   AGE\nc      292y\n");
    assert!(
        api.requests()
            .iter()
            .any(|r| r.path_and_query == "/zones?offset=2&size=2")
    );
}

#[test]
fn a_bad_document_stops_apply_before_anything_is_sent() {
    let api = FakeKumaApi::start("Kuma");
    let k = Kumactl::pointed_at(&api.url());
    let file = k.write(
        "bad.yaml",
        "type: Mesh\nname: fine\n---\ntype: Foo\nname: bam\n---\ntype: Mesh\nname: Not_Valid\n",
    );
    let out = k.run(&["apply", "-f", path_str(&file)]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(
            "resource[1]: failed to parse resource: type: unknown resource type \"Foo\"\n"
        ),
        "{err}"
    );
    assert!(
        err.contains("resource[2]: failed to read meta: name: "),
        "{err}"
    );
    assert!(
        err.ends_with("Error: failed to validate some resources\n"),
        "{err}"
    );
    assert!(
        api.requests().iter().all(|r| r.method != "PUT"),
        "{:?}",
        api.requests()
    );
}

#[test]
fn apply_with_variables_and_dry_run_sends_nothing() {
    let api = FakeKumaApi::start("Kuma");
    let k = Kumactl::pointed_at(&api.url());
    let file = k.write(
        "dp.yaml",
        "type: Dataplane\nmesh: default\nname: sample\nnetworking:\n  address: \"{{ address }}\"\n  inbound:\n  - port: 80\n    tags:\n      kuma.io/service: web\n",
    );
    let out = k.run(&[
        "apply",
        "-f",
        path_str(&file),
        "-v",
        "address=2.2.2.2",
        "--dry-run",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "creationTime: \"0001-01-01T00:00:00Z\"\nkri: kri_dp_default___sample_\nmesh: default\nmodificationTime: \"0001-01-01T00:00:00Z\"\nname: sample\ntype: Dataplane\nnetworking:\n  address: 2.2.2.2\n  inbound:\n  - port: 80\n    tags:\n      kuma.io/service: web\n"
    );
    assert!(api.requests().is_empty(), "{:?}", api.requests());
}

#[test]
fn server_errors_show_the_title_and_each_bad_field() {
    let api = FakeKumaApi::start("Kuma");
    let k = Kumactl::pointed_at(&api.url());

    // An error on its own: title (detail), then one line per field.
    let out = k.run(&["get", "meshes", "--size", "5000"]);
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out),
        "Error: Bad Request (Invalid page size)\n* size: invalid page size of 5000. Maximum page size is 1000\n"
    );

    // Inside apply, kumactl embeds the error in its message (Kuma's `Error()` form).
    let file = k.write(
        "tp.yaml",
        "type: TrafficPermission\nname: broken\nmesh: default\nsources: []\ndestinations: []\n",
    );
    let out = k.run(&["apply", "-f", path_str(&file)]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.starts_with("Error: resource type=\"TrafficPermission\" mesh=\"default\" name=\"broken\": failed server side: Could not process a resource (Resource is not valid);sources="),
        "{err}"
    );
    assert!(err.contains(";destinations="), "{err}");
}

#[test]
fn generate_dataplane_token_prints_the_token_and_sends_the_bearer() {
    let api = FakeKumaApi::start("Kuma");
    let k = Kumactl::new();
    let out = k.add_control_plane(
        "secured",
        &api.url(),
        &["--auth-type", "tokens", "--auth-conf", "token=admin-token"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = k.run(&[
        "generate",
        "dataplane-token",
        "--name",
        "backend-1",
        "--mesh",
        "default",
        "--tag",
        "kuma.io/service=backend,backend-api",
        "--valid-for",
        "24h",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEiLCJ0eXAiOiJKV1QifQ.backend-1.c2ln"
    );
    let post = api
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .expect("token request");
    assert_eq!(post.path_and_query, "/tokens/dataplane");
    assert_eq!(post.authorization.as_deref(), Some("Bearer admin-token"));
    let body: Value = serde_json::from_str(&post.body).expect("json");
    assert_eq!(
        body,
        json!({"name": "backend-1", "mesh": "default",
               "tags": {"kuma.io/service": ["backend", "backend-api"]},
               "type": "", "workload": "", "validFor": "24h0m0s"})
    );
}

#[test]
fn inspect_dataplanes_and_zones() {
    let api = FakeKumaApi::start("Kuma");
    api.set_overview(
        "meshes/default/dataplanes/_overview",
        json!({"total": 1, "next": null, "items": [{
            "type": "DataplaneOverview", "mesh": "default", "name": "backend-1",
            "creationTime": fake::ZERO_TIME, "modificationTime": fake::ZERO_TIME,
            "dataplane": {"networking": {"address": "192.168.0.2", "inbound": [
                {"port": 10001, "servicePort": 8080, "tags": {"kuma.io/service": "backend", "version": "v1"}}]}},
            "dataplaneInsight": {
                "subscriptions": [{"id": "1", "controlPlaneInstanceId": "cp-1",
                    "connectTime": "2020-01-01T00:00:00Z",
                    "status": {"lastUpdateTime": "2020-01-01T00:00:00Z",
                               "total": {"responsesSent": "5", "responsesRejected": "1"}},
                    "version": {"kumaDp": {"version": "2.14.3"}, "envoy": {"version": "1.34.1"}}}],
                "mTLS": {"certificateExpirationTime": "2030-01-02T03:04:05Z",
                         "lastCertificateRegeneration": "2020-01-01T00:00:00Z",
                         "certificateRegenerations": 2, "issuedBackend": "ca-1",
                         "supportedBackends": ["ca-1"]}}
        }]}),
    );
    api.set_overview(
        "zones/_overview",
        json!({"total": 2, "next": null, "items": [{
            "type": "ZoneOverview", "name": "zone-1",
            "creationTime": fake::ZERO_TIME, "modificationTime": fake::ZERO_TIME,
            "zone": {"enabled": true},
            "zoneInsight": {"subscriptions": [{"id": "1", "globalInstanceId": "g",
                "connectTime": "2020-01-01T00:00:00Z",
                "status": {"lastUpdateTime": "2020-01-01T00:00:00Z", "total": {"responsesSent": "7"}},
                "version": {"kumaCp": {"version": "2.14.3"}},
                "config": "{\"store\":{\"type\":\"postgres\"}}"}],
                "kdsSync": {
                    "globalToZone": {"revisions": "3", "seconds": 1.2, "senderRevision": "40"},
                    "zoneToGlobal": {"senderRevision": "12", "ackedRevision": "12"}}}
        }, {
            // A Kuma global, or a zone that never connected: no kdsSync.
            "type": "ZoneOverview", "name": "zone-2",
            "creationTime": fake::ZERO_TIME, "modificationTime": fake::ZERO_TIME,
            "zone": {"enabled": true},
            "zoneInsight": {}
        }]}),
    );
    let k = Kumactl::pointed_at(&api.url());
    let out = k.run(&["inspect", "dataplanes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let header: Vec<&str> = lines[0]
        .split("   ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(
        header,
        vec![
            "MESH",
            "NAME",
            "TAGS",
            "STATUS",
            "LAST CONNECTED AGO",
            "LAST UPDATED AGO",
            "TOTAL UPDATES",
            "TOTAL ERRORS",
            "CERT REGENERATED AGO",
            "CERT EXPIRATION",
            "CERT REGENERATIONS",
            "CERT BACKEND",
            "SUPPORTED CERT BACKENDS",
            "KUMA-DP VERSION",
            "ENVOY VERSION",
            "DEPENDENCIES VERSIONS",
            "NOTES"
        ]
    );
    for cell in [
        "default",
        "backend-1",
        "kuma.io/service=backend version=v1",
        "Online",
        "5",
        "1",
        "2030-01-02 03:04:05",
        "ca-1",
        "2.14.3",
        "1.34.1",
    ] {
        assert!(lines[1].contains(cell), "{cell:?} missing in {}", lines[1]);
    }

    let out = k.run(&["inspect", "zones"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let cells = |line: &str| -> Vec<String> {
        line.split("   ")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(
        cells(lines[0]),
        [
            "NAME",
            "STATUS",
            "LAST CONNECTED AGO",
            "LAST UPDATED AGO",
            "TOTAL UPDATES",
            "TOTAL ERRORS",
            "ZONE-CP VERSION",
            "BACKEND",
            "GLOBAL->ZONE LAG",
            "ZONE->GLOBAL LAG"
        ]
    );
    let zone_1 = cells(lines[1]);
    assert_eq!(zone_1[..2], ["zone-1", "Online"], "{text}");
    assert_eq!(
        zone_1[4..],
        ["7", "0", "2.14.3", "postgres", "3 (1.2s)", "0 (0.0s)"],
        "{text}"
    );
    // Columns keep their places when cells are empty: zone-2 ends with two `-`.
    assert!(lines[2].starts_with("zone-2   Offline"), "{text}");
    assert!(lines[2].ends_with("   -                  -"), "{text}");
}

#[test]
fn generate_zone_token_accepts_the_cp_scope() {
    let api = FakeKumaApi::start("Kuma");
    let k = Kumactl::pointed_at(&api.url());
    for (scopes, sent) in [
        (&["--scope", "cp"][..], json!(["cp"])),
        (&["--scope", "cp,ingress"][..], json!(["cp", "ingress"])),
        (
            &["--scope", "egress", "--scope", "cp"][..],
            json!(["egress", "cp"]),
        ),
    ] {
        api.clear_requests();
        let mut args = vec![
            "generate",
            "zone-token",
            "--zone",
            "zone-1",
            "--valid-for",
            "720h",
        ];
        args.extend_from_slice(scopes);
        let out = k.run(&args);
        assert!(out.status.success(), "{scopes:?}: {}", stderr(&out));
        assert_eq!(
            stdout(&out),
            "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEiLCJ0eXAiOiJKV1QifQ.zone-1.c2ln"
        );
        let post = api
            .requests()
            .into_iter()
            .find(|r| r.method == "POST")
            .expect("token request");
        assert_eq!(post.path_and_query, "/tokens/zone");
        let body: Value = serde_json::from_str(&post.body).expect("json");
        assert_eq!(
            body,
            json!({"zone": "zone-1", "scope": sent, "validFor": "720h0m0s"})
        );
    }

    let out = k.run(&[
        "generate",
        "zone-token",
        "--zone",
        "zone-1",
        "--valid-for",
        "1h",
        "--scope",
        "cp,admin",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out)
            .contains("invalid --scope values: [admin] (supported scopes: [ingress egress cp])"),
        "{}",
        stderr(&out)
    );

    // Offline signing puts the scope in Kuma's `Scope` claim.
    let key = k.dir.path().join("signing-key.pem");
    let out = k.run(&["generate", "signing-key", "--format", "pem"]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(&key, stdout(&out)).expect("write key");
    let out = k.run(&[
        "generate",
        "zone-token",
        "--zone",
        "zone-1",
        "--valid-for",
        "1h",
        "--scope",
        "cp",
        "--signing-key-path",
        path_str(&key),
        "--kid",
        "1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out);
    let payload = token.split('.').nth(1).expect("a JWT");
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64url"),
    )
    .expect("claims JSON");
    assert_eq!(claims["Zone"], "zone-1");
    assert_eq!(claims["Scope"], json!(["cp"]));
}

#[test]
fn connection_refused_names_the_address_and_the_fix() {
    // A port nothing listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let address = format!("http://127.0.0.1:{port}");
    let k = Kumactl::pointed_at(&address);
    let out = k.run(&["get", "meshes"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    let last = err.lines().last().expect("error line");
    assert!(
        last.starts_with("Error: failed to list Mesh: could not connect to the control plane at "),
        "{err}"
    );
    assert!(last.contains(&address), "{err}");
    assert!(last.contains("connection refused"), "{err}");
    assert!(last.contains("kumactl config control-planes"), "{err}");

    let out = k.add_control_plane("x", &address, &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).starts_with("Error: could not connect to the Control Plane API Server: could not connect to the control plane at "), "{}", stderr(&out));
}

#[test]
fn local_generators() {
    let k = Kumactl::new();
    let out = k.run(&["generate", "signing-key", "--format", "pem"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));

    let key = k.dir.path().join("key.pem");
    let cert = k.dir.path().join("cert.pem");
    let out = k.run(&[
        "generate",
        "tls-certificate",
        "--type",
        "server",
        "--hostname",
        "localhost",
        "--key-file",
        path_str(&key),
        "--cert-file",
        path_str(&cert),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "Private key saved in {}\nCertificate saved in {}\n",
            key.display(),
            cert.display()
        )
    );
    assert!(
        std::fs::read_to_string(&cert)
            .expect("cert")
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it, as PEM.
fn test_pki() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kumactl test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = rcgen::KeyPair::generate().expect("server key");
    let server_params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("server params");
    let server_cert = server_params
        .signed_by(&server_key, &issuer)
        .expect("server cert");
    (ca_cert.pem(), server_cert.pem(), server_key.serialize_pem())
}

#[test]
fn https_control_plane_with_ca_file_or_skip_verify() {
    let (ca, cert, key) = test_pki();
    let api = FakeKumaApi::start_tls("Kuma", &cert, &key);
    assert!(api.url().starts_with("https://127.0.0.1:"));
    let k = Kumactl::new();
    let ca_file = k.write("ca.pem", &ca);

    // Without the CA the certificate is not trusted.
    let out = k.add_control_plane("tls", &api.url(), &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).starts_with("Error: could not connect to the Control Plane API Server: "),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("--ca-cert-file"), "{}", stderr(&out));

    let out = k.add_control_plane("tls", &api.url(), &["--ca-cert-file", path_str(&ca_file)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let config = std::fs::read_to_string(k.config_path()).expect("config");
    assert!(
        config.contains(&format!("      caCertFile: {}\n", ca_file.display())),
        "{config}"
    );
    let out = k.run(&["get", "meshes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "NAME   mTLS   METRICS   LOGGING   TRACING   LOCALITY   ZONEEGRESS   AGE\n"
    );

    let out = k.add_control_plane("insecure", &api.url(), &["--skip-verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        std::fs::read_to_string(k.config_path())
            .expect("config")
            .contains("      skipVerify: true\n")
    );
    let out = k.run(&["get", "meshes"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn apply_from_a_directory_and_from_a_url() {
    let api = FakeKumaApi::start("Kuma");
    let k = Kumactl::pointed_at(&api.url());
    let dir = k.dir.path().join("resources");
    std::fs::create_dir(&dir).expect("dir");
    std::fs::write(dir.join("01-mesh.yaml"), "type: Mesh\nname: demo\n").expect("mesh");
    std::fs::write(
        dir.join("02-tp.yml"),
        "type: TrafficPermission\nname: tp\nmesh: demo\nsources:\n- match:\n    kuma.io/service: '*'\ndestinations:\n- match:\n    kuma.io/service: '*'\n",
    )
    .expect("tp");
    std::fs::write(dir.join("notes.txt"), "not a resource").expect("txt");
    let out = k.run(&["apply", "-f", path_str(&dir)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "resource type=\"Mesh\" mesh=\"\" name=\"demo\" Created\nresource type=\"TrafficPermission\" mesh=\"demo\" name=\"tp\" Created\n"
    );

    // Any HTTP(S) address serving YAML or JSON; the fake serves stored JSON.
    api.insert("files", json!({"type": "Mesh", "name": "from-url"}));
    let url = format!("{}/files/from-url", api.url());
    let out = k.run(&["apply", "-f", &url]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "resource type=\"Mesh\" mesh=\"\" name=\"from-url\" Created\n"
    );

    let empty = k.dir.path().join("empty");
    std::fs::create_dir(&empty).expect("empty dir");
    let out = k.run(&["apply", "-f", path_str(&empty)]);
    assert_eq!(stderr(&out), "Error: no resource(s) passed to apply\n");
}
