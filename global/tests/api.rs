//! `kuma-global` as a user runs it: a real process on free ports, its REST API over HTTP, and
//! what it stored (SQLite and PostgreSQL).

mod support;

use std::collections::BTreeSet;

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use support::{Global, fresh_database, postgres_env, run_to_end};

async fn put(client: &Client, url: String, body: Value) -> (StatusCode, Value) {
    let r = client.put(url).json(&body).send().await.expect("PUT");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(client: &Client, url: String) -> (StatusCode, Value) {
    let r = client.get(url).send().await.expect("GET");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn traffic_permission(name: &str) -> Value {
    json!({
        "type": "TrafficPermission", "mesh": "default", "name": name,
        "sources": [{"match": {"kuma.io/service": "web"}}],
        "destinations": [{"match": {"kuma.io/service": "backend"}}]
    })
}

/// The walk a newcomer takes: index, the default mesh, a policy created, updated, listed
/// across pages, deleted.
async fn crud_walk(global: &Global) {
    let client = Client::new();
    let api = &global.api;

    let (status, index) = get(&client, format!("{api}/")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(index["product"], "Kuma");
    assert_eq!(index["tagline"], "Kuma");
    assert!(
        index["clusterId"].as_str().is_some_and(|id| id.len() == 36),
        "{index}"
    );

    let (status, mesh) = get(&client, format!("{api}/meshes/default")).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the default mesh exists on first start: {mesh}"
    );

    let url = format!("{api}/meshes/default/traffic-permissions/web-to-backend");
    let (status, body) = put(&client, url.clone(), traffic_permission("web-to-backend")).await;
    assert_eq!((status, body), (StatusCode::CREATED, json!({})));
    let (status, _) = put(&client, url.clone(), traffic_permission("web-to-backend")).await;
    assert_eq!(status, StatusCode::OK, "a second PUT updates");
    let (status, tp) = get(&client, url.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        tp["sources"][0]["match"]["kuma.io/service"], "web",
        "spec fields inline: {tp}"
    );
    assert!(
        tp["creationTime"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{tp}"
    );

    // Validation: every bad field named, nothing stored.
    let bad = json!({"type": "TrafficPermission", "mesh": "default", "name": "bad",
                     "sources": [], "destinations": [{"match": {"version": "v1"}}]});
    let (status, err) = put(
        &client,
        format!("{api}/meshes/default/traffic-permissions/bad"),
        bad,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    let fields: BTreeSet<&str> = err["invalid_parameters"]
        .as_array()
        .expect("invalid_parameters")
        .iter()
        .filter_map(|p| p["field"].as_str())
        .collect();
    assert!(
        fields.contains("sources") && fields.contains("destinations[0].match"),
        "{err}"
    );
    let (status, _) = get(
        &client,
        format!("{api}/meshes/default/traffic-permissions/bad"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Paging across `next` links.
    for i in 0..120 {
        let name = format!("tp-{i:03}");
        let (status, body) = put(
            &client,
            format!("{api}/meshes/default/traffic-permissions/{name}"),
            traffic_permission(&name),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{name}: {body}");
    }
    let mut seen = Vec::new();
    let mut next = Some(format!("{api}/meshes/default/traffic-permissions?size=50"));
    let mut pages = 0;
    while let Some(url) = next {
        let (status, page) = get(&client, url).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(
            page["total"], 122,
            "120, web-to-backend and the default allow-all-default"
        );
        for item in page["items"].as_array().expect("items") {
            seen.push(item["name"].as_str().expect("name").to_string());
        }
        next = page["next"].as_str().map(str::to_string);
        pages += 1;
    }
    assert_eq!(pages, 3);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "sorted by name");
    assert_eq!(seen.len(), 122, "every item exactly once");

    let r = client.delete(url.clone()).send().await.expect("DELETE");
    assert_eq!(r.status(), StatusCode::OK);
    let (status, _) = get(&client, url).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn sqlite_crud_paging_and_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut global = Global::start(dir.path(), &[]).await;
    crud_walk(&global).await;
    let status = global.terminate().await;
    assert!(
        status.success(),
        "graceful exit on SIGTERM: {status}\n{}",
        global.logs()
    );
    assert!(
        dir.path().join("kuma.db").exists(),
        "the default store is <workDir>/kuma.db"
    );

    // A second start reuses the data: same cluster id, the policies are still there.
    let global = Global::start(dir.path(), &[]).await;
    let client = Client::new();
    let (status, list) = get(
        &client,
        format!("{}/meshes/default/traffic-permissions", global.api),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["total"], 121, "{list}");
}

#[tokio::test]
async fn postgres_needs_migrate_up_then_serves() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (url, name) = fresh_database().await;
    let env = postgres_env(&url, &name);

    let (mut cmd, _, _) = Global::command(dir.path(), &["run"], &env);
    let out = cmd.output().expect("run kuma-global");
    assert!(!out.status.success(), "an unmigrated database is refused");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("migrate up"),
        "the error says what to do: {text}"
    );

    let (ok, text) = run_to_end(dir.path(), &["migrate", "up"], &env);
    assert!(ok, "{text}");
    assert!(text.contains("migrated"), "{text}");
    let (ok, text) = run_to_end(dir.path(), &["migrate", "up"], &env);
    assert!(
        ok && text.contains("already"),
        "a second migrate up is a no-op: {text}"
    );

    let global = Global::start(dir.path(), &env).await;
    crud_walk(&global).await;
}

#[tokio::test]
async fn remote_callers_need_a_token() {
    let dir = tempfile::tempdir().expect("temp dir");
    let env = [(
        "KUMA_API_SERVER_AUTHN_LOCALHOST_IS_ADMIN",
        "false".to_string(),
    )];
    let global = Global::start(dir.path(), &env).await;
    let client = Client::new();
    let api = &global.api;

    let (status, _) = get(&client, format!("{api}/meshes")).await;
    assert_eq!(status, StatusCode::OK, "anyone may read meshes");
    let (status, err) = put(
        &client,
        format!("{api}/meshes/default/traffic-permissions/x"),
        traffic_permission("x"),
    )
    .await;
    assert!(
        status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED,
        "{status} {err}"
    );
    let (status, _) = get(&client, format!("{api}/global-secrets")).await;
    assert!(
        status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED,
        "secrets need admin"
    );
    let r = client
        .put(format!("{api}/meshes/default/traffic-permissions/x"))
        .bearer_auth("not.a.token")
        .json(&traffic_permission("x"))
        .send()
        .await
        .expect("PUT");
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "a bad token is refused"
    );

    // The admin token is created on first start, as GlobalSecret admin-user-token.
    let store = store::sqlite::SqliteStore::open(dir.path().join("kuma.db"))
        .await
        .expect("open the store");
    let key = model::ResourceKey::global(model::ResourceType::GlobalSecret, "admin-user-token");
    let secret = store::ResourceStore::get(&store, &key)
        .await
        .expect("admin-user-token exists");
    let model::Spec::GlobalSecret(s) = secret.spec else {
        panic!("a GlobalSecret")
    };
    let token = String::from_utf8(s.data.expect("data").value).expect("utf-8 token");

    let r = client
        .put(format!("{api}/meshes/default/traffic-permissions/x"))
        .bearer_auth(token.trim())
        .json(&traffic_permission("x"))
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::CREATED, "the admin token may write");
    assert!(
        !global.logs().contains(token.trim()),
        "the token never reaches the logs"
    );
}

/// Every read route of the API answers through the real process, write errors carry the
/// right codes, and diagnostics report what happened.
#[tokio::test]
async fn every_route_answers_and_metrics_count_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let global = Global::start(dir.path(), &[]).await;
    let client = Client::new();
    let api = &global.api;

    let mut paths: Vec<String> = [
        "/",
        "/meshes",
        "/zones/_overview",
        "/zones+insights",
        "/zoneingresses/_overview",
        "/meshes/default/dataplanes/_overview",
        "/meshes/default/dataplanes+insights",
        "/global-insight",
        "/mesh-insights",
        "/config",
        "/versions",
        "/_resources",
        "/policies",
        "/openapi.json",
    ]
    .iter()
    .map(|p| p.to_string())
    .collect();
    for kind in model::ResourceType::ALL {
        let d = kind.descriptor();
        if d.has_rest {
            paths.push(match d.scope {
                model::Scope::Global => format!("/{}", d.plural),
                model::Scope::Mesh => format!("/meshes/default/{}", d.plural),
            });
        }
    }
    for path in &paths {
        let r = client
            .get(format!("{api}{path}"))
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
    }
    let (_, config) = get(&client, format!("{api}/config")).await;
    assert_eq!(config["store"]["type"], "sqlite", "{config}");

    // A type the global does not own.
    let dp = json!({"type": "Dataplane", "mesh": "default", "name": "dp-1",
                    "networking": {"address": "10.0.0.1", "inbound": [{"port": 80, "tags": {"kuma.io/service": "web"}}]}});
    let (status, err) = put(&client, format!("{api}/meshes/default/dataplanes/dp-1"), dp).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{err}");
    assert!(
        err["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{err}"
    );
    // A mesh that does not exist.
    let (status, _) = put(
        &client,
        format!("{api}/meshes/nope/traffic-permissions/x"),
        traffic_permission("x"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A body over the limit.
    let huge = json!({"type": "TrafficPermission", "mesh": "default", "name": "big",
                      "sources": [{"match": {"kuma.io/service": "x".repeat(3 * 1024 * 1024)}}],
                      "destinations": [{"match": {"kuma.io/service": "y"}}]});
    // The server answers before reading the rest of the body and closes that connection, so
    // this request gets a client of its own (a pooled connection would be dead afterwards).
    let (status, err) = put(
        &Client::new(),
        format!("{api}/meshes/default/traffic-permissions/big"),
        huge,
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{err}");
    // Malformed JSON.
    let r = client
        .put(format!("{api}/meshes/default/traffic-permissions/x"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let err: Value = r.json().await.expect("Kuma error body");
    assert_eq!(err["type"], "/std-errors");

    let metrics = client
        .get(format!("{}/metrics", global.diagnostics))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("api_server_http_requests_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"store_operation_duration_seconds_count{operation="list",result="ok"}"#),
        "{metrics}"
    );
}
