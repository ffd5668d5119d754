//! The real `kumactl` against a real `kuma-global`: what a user types, what they see on stdout
//! and stderr, the exit code, and what the control plane then holds (REST API, store).
//!
//! Cargo exposes `CARGO_BIN_EXE_*` only for binaries of the package under test, so kumactl
//! (package `ctl`) is found next to this test's executable: `<target>/<profile>/kumactl`.
//! `cargo nextest run --workspace` and `cargo xtask test` build it; with `-p global` alone,
//! run `cargo build -p ctl` first (otherwise a missing kumactl fails the tests, and an old one
//! is used as is).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use support::{Global, fresh_database, postgres_env, run_to_end};

/// The Mesh and TrafficPermission of the seed (kuma-api.md §9): builtin mTLS, allow-all.
const SEED: &str = r#"type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: builtin
    dpCert:
      rotation:
        expiration: 1d
    conf:
      caCert:
        RSAbits: 2048
        expiration: 10y
---
type: TrafficPermission
mesh: default
name: allow-all-default
sources:
- match:
    kuma.io/service: '*'
destinations:
- match:
    kuma.io/service: '*'
"#;

/// `<target>/<profile>/kumactl`, next to `<target>/<profile>/deps/kumactl-<hash>` (this test).
fn kumactl_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the test executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in <target>/<profile>/deps");
    let bin = profile_dir.join(format!("kumactl{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "kumactl is not built: {} is missing; build it with `cargo build -p ctl`; `cargo xtask test` builds every binary",
        bin.display()
    );
    bin
}

/// What one kumactl run left: exit code, stdout, stderr, and the command line for messages.
struct Run {
    command: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn describe(&self) -> String {
        format!(
            "`{}` exited with {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.command, self.code, self.stdout, self.stderr
        )
    }

    /// Asserts exit code 0; returns stdout.
    #[track_caller]
    fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "{}", self.describe());
        &self.stdout
    }

    /// Asserts exit code 1 (kumactl's code for every failed command); returns stderr.
    #[track_caller]
    fn fails(&self) -> &str {
        assert_eq!(self.code, Some(1), "{}", self.describe());
        &self.stderr
    }
}

/// kumactl with its own config file and home in a temp dir, never the user's.
struct Kumactl {
    bin: PathBuf,
    config: PathBuf,
    home: PathBuf,
}

impl Kumactl {
    fn new(dir: &Path) -> Kumactl {
        let home = dir.join("kumactl-home");
        std::fs::create_dir_all(&home).expect("kumactl home");
        Kumactl {
            bin: kumactl_binary(),
            config: home.join("config"),
            home,
        }
    }

    /// A kumactl whose active control plane is `global` (checked by kumactl, as a user adds it).
    fn connected(dir: &Path, global: &Global) -> Kumactl {
        let kumactl = Kumactl::new(dir);
        kumactl
            .run(&[
                "config",
                "control-planes",
                "add",
                "--name",
                "g",
                "--address",
                &global.api,
            ])
            .ok();
        kumactl
    }

    fn run(&self, args: &[&str]) -> Run {
        let out = Command::new(&self.bin)
            .arg("--config-file")
            .arg(&self.config)
            .args(["--api-timeout", "30s"])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .output()
            .expect("run kumactl");
        Run {
            command: format!("kumactl {}", args.join(" ")),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn config_text(&self) -> String {
        std::fs::read_to_string(&self.config).unwrap_or_default()
    }
}

use model::test_util::kumactl_table as table;

fn headers(out: &str) -> Vec<String> {
    let first = out.lines().next().unwrap_or_default();
    first
        .split("  ")
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .collect()
}

async fn get(client: &Client, url: String) -> (StatusCode, Value) {
    let r = client.get(url).send().await.expect("GET");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a resource file");
    path.to_str().expect("utf-8 temp path").to_string()
}

/// Applies the seed twice and reads it back as a user and through the REST API.
async fn apply_seed_and_get(dir: &Path, global: &Global, kumactl: &Kumactl) {
    let file = write(dir, "seed.yaml", SEED);

    // The default mesh and its default policy allow-all-default exist from the first start,
    // so both are updated.
    let out = kumactl.run(&["apply", "-f", &file]);
    assert_eq!(
        out.ok(),
        "resource type=\"Mesh\" mesh=\"\" name=\"default\" Updated\n\
         resource type=\"TrafficPermission\" mesh=\"default\" name=\"allow-all-default\" Updated\n",
        "{}",
        out.describe()
    );
    let out = kumactl.run(&["apply", "-f", &file]);
    assert_eq!(
        out.ok(),
        "resource type=\"Mesh\" mesh=\"\" name=\"default\" Updated\n\
         resource type=\"TrafficPermission\" mesh=\"default\" name=\"allow-all-default\" Updated\n",
        "{}",
        out.describe()
    );

    let out = kumactl.run(&["get", "meshes"]);
    let rows = table(out.ok());
    assert_eq!(
        headers(&out.stdout),
        [
            "NAME",
            "mTLS",
            "METRICS",
            "LOGGING",
            "TRACING",
            "LOCALITY",
            "ZONEEGRESS",
            "AGE"
        ],
        "{}",
        out.describe()
    );
    assert_eq!(rows.len(), 1, "{}", out.describe());
    assert_eq!(rows[0]["NAME"], "default", "{}", out.describe());
    assert_eq!(rows[0]["mTLS"], "builtin/ca-1", "{}", out.describe());
    assert_eq!(rows[0]["METRICS"], "off", "{}", out.describe());

    let out = kumactl.run(&["get", "traffic-permissions"]);
    let rows = table(out.ok());
    assert_eq!(
        headers(&out.stdout),
        ["MESH", "NAME", "AGE"],
        "{}",
        out.describe()
    );
    assert_eq!(rows.len(), 1, "{}", out.describe());
    assert_eq!(
        (rows[0]["MESH"].as_str(), rows[0]["NAME"].as_str()),
        ("default", "allow-all-default"),
        "{}",
        out.describe()
    );

    // What the server holds.
    let client = Client::new();
    let (status, mesh) = get(&client, format!("{}/meshes/default", global.api)).await;
    assert_eq!(status, StatusCode::OK, "{mesh}");
    assert_eq!(mesh["mtls"]["enabledBackend"], "ca-1", "{mesh}");
    assert_eq!(mesh["mtls"]["backends"][0]["type"], "builtin", "{mesh}");
    let (status, tp) = get(
        &client,
        format!(
            "{}/meshes/default/traffic-permissions/allow-all-default",
            global.api
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tp}");
    assert_eq!(tp["sources"][0]["match"]["kuma.io/service"], "*", "{tp}");
}

#[tokio::test]
async fn control_planes_add_accepts_kuma_and_refuses_anything_else() {
    let dir = tempfile::tempdir().expect("temp dir");
    let global = Global::start(dir.path(), &[]).await;
    let kumactl = Kumactl::new(dir.path());

    // The diagnostics port answers 404 on `/`: not a Kuma API server, nothing saved.
    let out = kumactl.run(&[
        "config",
        "control-planes",
        "add",
        "--name",
        "g",
        "--address",
        &global.diagnostics,
    ]);
    let err = out.fails();
    assert!(
        err.starts_with("Error: could not connect to the Control Plane API Server"),
        "{}",
        out.describe()
    );
    assert_eq!(out.stdout, "", "{}", out.describe());
    assert!(
        !kumactl.config_text().contains(&global.diagnostics),
        "a refused address is not saved:\n{}",
        kumactl.config_text()
    );

    let out = kumactl.run(&[
        "config",
        "control-planes",
        "add",
        "--name",
        "g",
        "--address",
        &global.api,
    ]);
    assert_eq!(
        out.ok(),
        "added Control Plane \"g\"\nswitched active Control Plane to \"g\"\n",
        "{}",
        out.describe()
    );
    assert_eq!(out.stderr, "", "{}", out.describe());

    let out = kumactl.run(&["config", "control-planes", "list"]);
    let rows = table(out.ok());
    let g = rows
        .iter()
        .find(|r| r["NAME"] == "g")
        .unwrap_or_else(|| panic!("g is listed: {}", out.describe()));
    assert_eq!(g["ADDRESS"], global.api, "{}", out.describe());
    assert_eq!(g["ACTIVE"], "*", "g is the active one: {}", out.describe());

    // The active control plane answers: a command goes through without a warning.
    let out = kumactl.run(&["get", "meshes"]);
    let rows = table(out.ok());
    assert_eq!(out.stderr, "", "{}", out.describe());
    assert!(
        rows.iter().any(|r| r["NAME"] == "default"),
        "{}",
        out.describe()
    );
}

#[tokio::test]
async fn apply_get_inspect_and_delete() {
    let dir = tempfile::tempdir().expect("temp dir");
    let global = Global::start(dir.path(), &[]).await;
    let kumactl = Kumactl::connected(dir.path(), &global);
    apply_seed_and_get(dir.path(), &global, &kumactl).await;

    // YAML and JSON output parse back and carry the spec.
    let out = kumactl.run(&["get", "meshes", "-o", "yaml"]);
    let list: Value = serde_yaml_ng::from_str(out.ok())
        .unwrap_or_else(|e| panic!("YAML ({e}): {}", out.describe()));
    assert_eq!(list["total"], 1, "{list}");
    let mesh = &list["items"][0];
    assert_eq!(
        (&mesh["type"], &mesh["name"]),
        (&json!("Mesh"), &json!("default")),
        "{mesh}"
    );
    assert_eq!(mesh["mtls"]["enabledBackend"], "ca-1", "{mesh}");
    assert_eq!(
        mesh["mtls"]["backends"][0],
        json!({"name": "ca-1", "type": "builtin",
               "dpCert": {"rotation": {"expiration": "1d"}},
               "conf": {"caCert": {"RSAbits": 2048, "expiration": "10y"}}}),
        "{mesh}"
    );

    let out = kumactl.run(&["get", "traffic-permissions", "-o", "json"]);
    let list: Value =
        serde_json::from_str(out.ok()).unwrap_or_else(|e| panic!("JSON ({e}): {}", out.describe()));
    assert_eq!(list["total"], 1, "{list}");
    let tp = &list["items"][0];
    assert_eq!(tp["name"], "allow-all-default", "{tp}");
    assert_eq!(
        (&tp["sources"], &tp["destinations"]),
        (
            &json!([{"match": {"kuma.io/service": "*"}}]),
            &json!([{"match": {"kuma.io/service": "*"}}])
        ),
        "{tp}"
    );

    let out = kumactl.run(&[
        "get",
        "traffic-permission",
        "allow-all-default",
        "-o",
        "yaml",
    ]);
    let tp: Value = serde_yaml_ng::from_str(out.ok())
        .unwrap_or_else(|e| panic!("YAML ({e}): {}", out.describe()));
    assert_eq!(
        (&tp["type"], &tp["mesh"], &tp["name"]),
        (
            &json!("TrafficPermission"),
            &json!("default"),
            &json!("allow-all-default")
        ),
        "{tp}"
    );
    assert_eq!(tp["sources"][0]["match"]["kuma.io/service"], "*", "{tp}");

    // Inspect: overviews and insights.
    let out = kumactl.run(&["inspect", "meshes"]);
    let rows = table(out.ok());
    assert_eq!(rows.len(), 1, "{}", out.describe());
    assert_eq!(rows[0]["MESH"], "default", "{}", out.describe());
    assert_eq!(rows[0]["DATAPLANES"], "0/0", "{}", out.describe());
    // Nothing registered yet: the other inspect tables are empty but well-formed. Services are
    // computed from dataplanes; there is no ZoneEgress type, so that list is always empty.
    for (what, leading_headers) in [
        ("dataplanes", &["MESH", "NAME", "TAGS", "STATUS"][..]),
        ("zones", &["NAME", "STATUS"][..]),
        ("services", &["SERVICE", "STATUS", "DATAPLANES"][..]),
        ("zoneegresses", &["NAME", "STATUS"][..]),
    ] {
        let out = kumactl.run(&["inspect", what]);
        assert_eq!(table(out.ok()), [], "no {what}: {}", out.describe());
        assert_eq!(
            headers(&out.stdout)[..leading_headers.len()],
            *leading_headers,
            "{}",
            out.describe()
        );
    }

    // Delete, then it is gone for kumactl and for the API.
    let out = kumactl.run(&["delete", "traffic-permission", "allow-all-default"]);
    assert_eq!(
        out.ok(),
        "deleted TrafficPermission \"allow-all-default\"\n",
        "{}",
        out.describe()
    );
    let out = kumactl.run(&["get", "traffic-permission", "allow-all-default"]);
    assert_eq!(
        out.fails(),
        "Error: No resources found in default mesh\n",
        "{}",
        out.describe()
    );
    let out = kumactl.run(&["get", "traffic-permissions"]);
    assert_eq!(table(out.ok()), [], "{}", out.describe());
    let out = kumactl.run(&["delete", "traffic-permission", "allow-all-default"]);
    assert_eq!(
        out.fails(),
        "Error: there is no TrafficPermission with name \"allow-all-default\"\n",
        "{}",
        out.describe()
    );
    let (status, body) = get(
        &Client::new(),
        format!(
            "{}/meshes/default/traffic-permissions/allow-all-default",
            global.api
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn dataplane_token_is_signed_with_the_mesh_signing_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let global = Global::start(dir.path(), &[]).await;
    let kumactl = Kumactl::connected(dir.path(), &global);

    let out = kumactl.run(&[
        "generate",
        "dataplane-token",
        "--name",
        "dp-1",
        "--mesh",
        "default",
        "--valid-for",
        "24h",
    ]);
    let token = out.ok().trim().to_string();
    assert_eq!(out.stderr, "", "{}", out.describe());
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT: {}", out.describe());

    let header: Value = URL_SAFE_NO_PAD
        .decode(parts[0])
        .ok()
        .and_then(|h| serde_json::from_slice(&h).ok())
        .unwrap_or_else(|| panic!("a JSON JWT header: {}", out.describe()));
    assert_eq!(header["alg"], "RS256", "{header}");
    let kid = header["kid"]
        .as_str()
        .unwrap_or_else(|| panic!("a kid: {header}"));
    let serial: u64 = kid
        .parse()
        .unwrap_or_else(|_| panic!("kid is a key serial: {header}"));

    // The signing key the server keeps for mesh `default`, under the name the kid maps to.
    let scope = cp::tokens::KeyScope::dataplane("default");
    let store = store::sqlite::SqliteStore::open(dir.path().join("kuma.db"))
        .await
        .expect("open the store");
    let secret = store::ResourceStore::get(&store, &scope.secret_key(serial))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "Secret {} in mesh default (kid {kid}): {e}",
                scope.secret_name(serial)
            )
        });
    let model::Spec::Secret(secret) = secret.spec else {
        panic!("a Secret")
    };
    let private = String::from_utf8(secret.data.expect("secret data").value).expect("PEM");
    let public = cp::tokens::public_key_pem(&private).expect("the public half of the key");

    let key = DecodingKey::from_rsa_pem(public.as_bytes()).expect("an RSA public key");
    let verified = jsonwebtoken::decode::<Value>(&token, &key, &Validation::new(Algorithm::RS256))
        .unwrap_or_else(|e| panic!("the signature verifies with the mesh key: {e}"));
    let claims = verified.claims;
    assert_eq!(claims["Name"], "dp-1", "{claims}");
    assert_eq!(claims["Mesh"], "default", "{claims}");
    let lifetime =
        claims["exp"].as_i64().unwrap_or_default() - claims["iat"].as_i64().unwrap_or_default();
    assert!(
        (24 * 3600..=24 * 3600 + 10).contains(&lifetime),
        "--valid-for 24h: exp - iat = {lifetime} s: {claims}"
    );
}

#[tokio::test]
async fn invalid_resource_is_explained_and_not_stored() {
    let dir = tempfile::tempdir().expect("temp dir");
    let global = Global::start(dir.path(), &[]).await;
    let kumactl = Kumactl::connected(dir.path(), &global);
    let client = Client::new();
    let url = format!("{}/meshes/default/traffic-permissions/bad", global.api);

    // What the server says about this resource, asked directly.
    let bad = json!({"type": "TrafficPermission", "mesh": "default", "name": "bad",
                     "sources": [], "destinations": [{"match": {"version": "v1"}}]});
    let r = client.put(&url).json(&bad).send().await.expect("PUT");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let error: Value = r.json().await.expect("a Kuma error body");
    let title = error["title"].as_str().expect("title").to_string();
    let fields: Vec<(String, String)> = error["invalid_parameters"]
        .as_array()
        .expect("invalid_parameters")
        .iter()
        .map(|p| {
            (
                p["field"].as_str().unwrap_or_default().to_string(),
                p["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert!(
        fields.iter().any(|(f, _)| f == "sources")
            && fields.iter().any(|(f, _)| f.starts_with("destinations[0]")),
        "{error}"
    );

    // The same resource through kumactl: the title and every field, nothing on stdout.
    let file = write(
        dir.path(),
        "bad.yaml",
        "type: TrafficPermission\nmesh: default\nname: bad\nsources: []\n\
         destinations:\n- match:\n    version: v1\n",
    );
    let out = kumactl.run(&["apply", "-f", &file]);
    let err = out.fails();
    assert_eq!(out.stdout, "", "{}", out.describe());
    assert!(
        err.starts_with(
            "Error: resource type=\"TrafficPermission\" mesh=\"default\" name=\"bad\": failed server side: "
        ),
        "{}",
        out.describe()
    );
    assert!(err.contains(&title), "title {title:?}: {}", out.describe());
    for (field, reason) in &fields {
        assert!(
            err.contains(&format!("{field}={reason}")),
            "{field}: {reason}: {}",
            out.describe()
        );
    }

    let (status, body) = get(&client, url).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing stored: {body}");
    let out = kumactl.run(&["get", "traffic-permissions"]);
    let names: Vec<String> = table(out.ok())
        .iter()
        .map(|row| row["NAME"].clone())
        .collect();
    assert_eq!(names, ["allow-all-default"], "{}", out.describe());
}

#[tokio::test]
async fn postgres_apply_and_get() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (url, name) = fresh_database().await;
    let env = postgres_env(&url, &name);
    let (ok, text) = run_to_end(dir.path(), &["migrate", "up"], &env);
    assert!(ok, "{text}");
    let global = Global::start(dir.path(), &env).await;
    let kumactl = Kumactl::connected(dir.path(), &global);
    apply_seed_and_get(dir.path(), &global, &kumactl).await;
}
