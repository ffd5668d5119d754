//! Router tests without a socket: every request goes through `router(state)` with
//! `tower::ServiceExt::oneshot`, on a memory store, with a fake authenticator and
//! `MockConnectInfo` to play a local or a remote caller.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use model::test_util as builders;
use model::{CpMode, Resource, ResourceKey, ResourceType, Spec};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use store::memory::MemoryStore;
use store::{
    Applied, ChangeFeed, ListPage, ListQuery, Op, ResourceStore, Revision, Snapshot, StoreError,
    Stored,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tower::ServiceExt;

use super::routes::{self, Endpoint};
use super::*;
use crate::auth::{AUTHENTICATED_GROUP, AuthError, Authenticator, Identity};

// === test doubles ===

/// Test fake of the token room's authenticator: two known tokens, everything else refused.
struct FakeAuthenticator;

const ADMIN_TOKEN: &str = "fake-admin-token";
const USER_TOKEN: &str = "fake-user-token";

#[async_trait]
impl Authenticator for FakeAuthenticator {
    async fn authenticate(&self, token: &str) -> Result<Identity, AuthError> {
        match token {
            ADMIN_TOKEN => Ok(Identity::admin()),
            USER_TOKEN => Ok(Identity {
                name: "jane".into(),
                groups: vec![AUTHENTICATED_GROUP.into()],
            }),
            _ => Err(AuthError("user token: signature is not valid".into())),
        }
    }
}

/// A memory store that can lose a race (the next update meets a concurrent writer) or be
/// down (every call fails as unreachable).
#[derive(Default)]
struct TestStore {
    inner: MemoryStore,
    race_next_update: AtomicBool,
    down: AtomicBool,
}

impl TestStore {
    fn check_up(&self) -> store::Result<()> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable {
                backend: "test",
                message: "connection refused (secret internal detail)".into(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl ResourceStore for TestStore {
    async fn list(&self, query: &ListQuery) -> store::Result<ListPage> {
        self.check_up()?;
        self.inner.list(query).await
    }

    async fn revision(&self) -> store::Result<Revision> {
        self.inner.revision().await
    }

    fn changes(&self, after: Revision) -> ChangeFeed {
        self.inner.changes(after)
    }

    async fn commit(&self, ops: Vec<Op>) -> store::Result<Vec<Applied>> {
        self.check_up()?;
        if self.race_next_update.swap(false, Ordering::SeqCst)
            && let Some(Op::Update { resource }) = ops.first()
        {
            // Someone else writes the same version first.
            self.inner
                .commit(vec![Op::Update {
                    resource: resource.clone(),
                }])
                .await?;
        }
        self.inner.commit(ops).await
    }

    async fn get_stored(&self, key: &ResourceKey) -> store::Result<Option<Stored>> {
        self.check_up()?;
        self.inner.get_stored(key).await
    }

    async fn snapshot(&self) -> store::Result<Snapshot> {
        self.inner.snapshot().await
    }

    async fn prune_changes(&self, keep_after: Revision) -> store::Result<u64> {
        self.inner.prune_changes(keep_after).await
    }

    fn backend_name(&self) -> &'static str {
        "test"
    }
}

// === harness ===

struct Harness {
    store: Arc<TestStore>,
    state: ApiState,
    registry: Registry,
}

fn harness(mode: CpMode) -> Harness {
    harness_with(mode, |_| {})
}

fn harness_with(mode: CpMode, tweak: impl FnOnce(&mut ApiSettings)) -> Harness {
    let store = Arc::new(TestStore::default());
    let mut registry = Registry::default();
    let metrics = ApiMetrics::register(&mut registry);
    let info = ServerInfo::new("2.14.3", "cp-host", "cluster-uuid-1", "/gui");
    let mut settings = ApiSettings::new(mode, info);
    settings.config = json!({ "mode": "global", "store": { "postgres": { "password": "*****" } } });
    if mode != CpMode::Global {
        settings.zone_name = Some("zone-1".into());
    }
    tweak(&mut settings);
    let state = ApiState::new(
        store.clone(),
        Arc::new(FakeAuthenticator),
        metrics,
        settings,
    );
    Harness {
        store,
        state,
        registry,
    }
}

impl Harness {
    fn local(&self) -> Client {
        Client::new(
            router(self.state.clone()),
            ([127, 0, 0, 1], 51000),
            "localhost:5681",
            None,
        )
    }

    fn remote(&self, token: Option<&str>) -> Client {
        Client::new(
            router(self.state.clone()),
            ([10, 0, 0, 7], 51000),
            "cp.example.com:5681",
            token,
        )
    }

    async fn seed(&self, resource: Resource) -> Resource {
        self.store.create(resource, None).await.expect("seed")
    }

    /// Seeds a dataplane with an inbound per `(port, service)`.
    async fn seed_dataplane(
        &self,
        mesh: &str,
        name: &str,
        address: &str,
        inbounds: &[(u32, &str)],
    ) -> Resource {
        self.seed(builders::dataplane(mesh, name, address, inbounds))
            .await
    }

    async fn count(&self, kind: ResourceType) -> usize {
        self.store
            .list(&ListQuery::all(kind))
            .await
            .expect("list")
            .total
    }
}

#[derive(Clone)]
struct Client {
    app: Router,
    host: &'static str,
    token: Option<String>,
}

#[derive(Debug)]
struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    json: Value,
    text: String,
}

impl Resp {
    fn field_reasons(&self) -> Vec<(String, String)> {
        self.json["invalid_parameters"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| {
                        (
                            p["field"].as_str().unwrap_or("").to_string(),
                            p["reason"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Asserts Kuma's error envelope with `status`.
    fn assert_error(&self, status: StatusCode) -> &Self {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(
            self.headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{}",
            self.text
        );
        assert_eq!(self.json["type"], "/std-errors", "{}", self.text);
        assert_eq!(self.json["status"], status.as_u16(), "{}", self.text);
        assert!(
            self.json["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{}",
            self.text
        );
        assert_eq!(self.json["detail"], self.json["details"], "{}", self.text);
        let params = self.json["invalid_parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let causes = self.json["causes"].as_array().cloned().unwrap_or_default();
        assert_eq!(params.len(), causes.len(), "{}", self.text);
        for (p, c) in params.iter().zip(&causes) {
            assert_eq!(p["field"], c["field"]);
            assert_eq!(p["reason"], c["message"]);
        }
        self
    }
}

impl Client {
    fn new(app: Router, peer: ([u8; 4], u16), host: &'static str, token: Option<&str>) -> Self {
        Client {
            app: app.layer(MockConnectInfo(SocketAddr::from(peer))),
            host,
            token: token.map(str::to_string),
        }
    }

    async fn send(
        &self,
        method: Method,
        uri: &str,
        body: Option<Vec<u8>>,
        content_type: Option<&str>,
    ) -> Resp {
        let mut builder = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, self.host);
        if let Some(token) = &self.token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(ct) = content_type {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        let request = builder
            .body(body.map(Body::from).unwrap_or_else(Body::empty))
            .expect("request");
        let response = self.app.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            json,
            text,
        }
    }

    async fn get(&self, uri: &str) -> Resp {
        self.send(Method::GET, uri, None, None).await
    }

    async fn put(&self, uri: &str, body: &Value) -> Resp {
        self.send(
            Method::PUT,
            uri,
            Some(serde_json::to_vec(body).expect("json")),
            Some("application/json"),
        )
        .await
    }

    async fn delete(&self, uri: &str) -> Resp {
        self.send(Method::DELETE, uri, None, None).await
    }

    /// A PUT of raw `body` bytes with the given Content-Type.
    async fn put_bytes(&self, uri: &str, body: &[u8], content_type: &str) -> Resp {
        self.send(Method::PUT, uri, Some(body.to_vec()), Some(content_type))
            .await
    }

    /// Asserts that `uri` lists nothing: 200 with an empty page.
    async fn assert_empty_list(&self, uri: &str) {
        let r = self.get(uri).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.text);
        assert_eq!(
            r.json,
            json!({ "total": 0, "items": [], "next": null }),
            "{uri}"
        );
    }
}

fn permission(mesh: &str, name: &str, source: &str) -> Value {
    json!({
        "type": "TrafficPermission",
        "mesh": mesh,
        "name": name,
        "sources": [{ "match": { "kuma.io/service": source } }],
        "destinations": [{ "match": { "kuma.io/service": "*" } }],
    })
}

fn parse_time(value: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(value.as_str().expect("time string"), &Rfc3339).expect("RFC 3339")
}

// === index and system endpoints ===

#[tokio::test]
async fn index_is_kuma_and_skips_auth() {
    let h = harness(CpMode::Global);
    for client in [h.local(), h.remote(None), h.remote(Some("garbage"))] {
        let r = client.get("/").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json["product"], "Kuma");
        assert_eq!(r.json["tagline"], "Kuma");
        assert_eq!(r.json["version"], "2.14.3");
        assert_eq!(r.json["hostname"], "cp-host");
        assert_eq!(r.json["clusterId"], "cluster-uuid-1");
        assert_eq!(r.json["gui"], "/gui");
        let instance = r.json["instanceId"].as_str().expect("instanceId");
        assert!(instance.starts_with("cp-host-") && instance.len() == "cp-host-".len() + 4);
        assert!(r.json.get("basedOnKuma").is_none());
    }
}

#[tokio::test]
async fn system_endpoints() {
    let h = harness(CpMode::Global);
    let c = h.local();
    let config = c.get("/config").await;
    assert_eq!(config.status, StatusCode::OK);
    assert_eq!(config.json["store"]["postgres"]["password"], "*****");

    let versions = c.get("/versions").await;
    assert!(
        versions.json["kumaDp"]["2.14.3"].is_object(),
        "{}",
        versions.text
    );

    let who = h.remote(Some(USER_TOKEN)).get("/who-am-i").await;
    assert_eq!(
        who.json,
        json!({ "name": "jane", "groups": [AUTHENTICATED_GROUP] })
    );

    let policies = c.get("/policies").await;
    let names: Vec<&str> = policies.json["policies"]
        .as_array()
        .expect("policies")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(names.contains(&"TrafficPermission") && !names.contains(&"Mesh"));
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    let tp = &policies.json["policies"][names
        .iter()
        .position(|n| *n == "TrafficPermission")
        .expect("tp")];
    assert_eq!(tp["path"], "traffic-permissions");
    assert_eq!(tp["pluralDisplayName"], "Traffic Permissions");
    assert_eq!(tp["isTargetRefBased"], false);
}

#[tokio::test]
async fn resource_types_for_kumactl_export() {
    let h = harness(CpMode::Global);
    let r = h.local().get("/_resources").await;
    assert_eq!(r.status, StatusCode::OK);
    let items = r.json["resources"].as_array().expect("resources");
    let find = |name: &str| {
        items
            .iter()
            .find(|i| i["name"] == name)
            .cloned()
            .expect(name)
    };
    let tp = find("TrafficPermission");
    assert_eq!(tp["path"], "traffic-permissions");
    assert_eq!(tp["kumactlArg"], "traffic-permission");
    assert_eq!(tp["kumactlListArg"], "traffic-permissions");
    assert_eq!(tp["scope"], "Mesh");
    assert_eq!(tp["includeInFederation"], true);
    assert_eq!(tp["readOnly"], false);
    assert_eq!(tp["singularDisplayName"], "Traffic Permission");
    assert!(tp["policy"].is_object());
    let hc = find("HealthCheck");
    assert_eq!(hc["kumactlArg"], "healthcheck");
    let dp = find("Dataplane");
    assert_eq!(dp["readOnly"], true, "zone-owned on a global");
    assert_eq!(dp["includeInFederation"], false);
    assert_eq!(find("Mesh")["scope"], "Global");
    assert_eq!(find("ZoneInsight")["readOnly"], true);
    assert!(
        items.iter().all(|i| i["name"] != "Config"),
        "Config has no REST path"
    );
    let names: Vec<&str> = items.iter().filter_map(|i| i["name"].as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
}

// === create, update, get, delete ===

#[tokio::test]
async fn crud_lifecycle() {
    let h = harness(CpMode::Global);
    let c = h.local();
    // Without the default policies, so the lists below hold only what the test writes.
    let r = c
        .put(
            "/meshes/default",
            &json!({ "type": "Mesh", "name": "default", "skipCreatingInitialPolicies": ["*"] }),
        )
        .await;
    assert_eq!(
        (r.status, &r.json),
        (StatusCode::CREATED, &json!({})),
        "{}",
        r.text
    );

    let url = "/meshes/default/traffic-permissions/allow-web";
    let r = c.put(url, &permission("default", "allow-web", "web")).await;
    assert_eq!(
        (r.status, &r.json),
        (StatusCode::CREATED, &json!({})),
        "{}",
        r.text
    );
    let created = c.get(url).await;
    assert_eq!(created.status, StatusCode::OK);

    let mut body = permission("default", "allow-web", "frontend");
    body["labels"] = json!({ "team": "payments" });
    let r = c.put(url, &body).await;
    assert_eq!(
        (r.status, &r.json),
        (StatusCode::OK, &json!({})),
        "{}",
        r.text
    );

    let got = c.get(url).await;
    assert_eq!(got.status, StatusCode::OK);
    let j = &got.json;
    assert_eq!(j["type"], "TrafficPermission");
    assert_eq!(j["mesh"], "default");
    assert_eq!(j["name"], "allow-web");
    assert_eq!(
        j["sources"],
        json!([{ "match": { "kuma.io/service": "frontend" } }]),
        "spec inline"
    );
    assert_eq!(
        j["labels"],
        json!({ "kuma.io/mesh": "default", "kuma.io/origin": "global", "team": "payments" })
    );
    assert_eq!(
        j["creationTime"], created.json["creationTime"],
        "update keeps the creation time"
    );
    assert!(parse_time(&j["modificationTime"]) >= parse_time(&j["creationTime"]));
    let keys: Vec<&String> = j.as_object().expect("object").keys().collect();
    assert_eq!(
        &keys[..5],
        ["type", "mesh", "name", "creationTime", "modificationTime"]
    );

    let list = c.get("/meshes/default/traffic-permissions").await;
    assert_eq!(list.json["total"], 1);
    assert_eq!(list.json["next"], Value::Null);
    assert_eq!(list.json["items"][0]["name"], "allow-web");
    let across = c.get("/traffic-permissions").await;
    assert_eq!(across.json["total"], 1);

    let r = c.delete(url).await;
    assert_eq!(
        (r.status, &r.json),
        (StatusCode::OK, &json!({})),
        "{}",
        r.text
    );
    let r = c.get(url).await;
    r.assert_error(StatusCode::NOT_FOUND);
    assert_eq!(r.json["title"], "Could not retrieve a resource");
    assert_eq!(r.json["detail"], "Not found");
    let r = c.delete(url).await;
    r.assert_error(StatusCode::NOT_FOUND);
    assert_eq!(r.json["title"], "Could not delete a resource");
}

#[tokio::test]
async fn alternative_plurals_and_global_secrets() {
    let h = harness(CpMode::Global);
    let c = h.local();
    let body = json!({ "type": "GlobalSecret", "name": "s1", "data": "c2VjcmV0" });
    let r = c.put("/global-secrets/s1", &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = c.get("/globalsecrets/s1").await;
    assert_eq!(r.json["data"], "c2VjcmV0");
    assert!(r.json.get("mesh").is_none());
    assert_eq!(c.get("/global-secrets").await.json["total"], 1);
}

#[tokio::test]
async fn put_into_a_missing_mesh_is_404() {
    let h = harness(CpMode::Global);
    let r = h
        .local()
        .put(
            "/meshes/nope/traffic-permissions/tp",
            &permission("nope", "tp", "web"),
        )
        .await;
    r.assert_error(StatusCode::NOT_FOUND);
    assert_eq!(r.json["title"], "Failed to retrieve Mesh");
    assert_eq!(h.count(ResourceType::TrafficPermission).await, 0);
}

#[tokio::test]
async fn validation_lists_every_problem_and_stores_nothing() {
    let h = harness(CpMode::Standalone);
    h.seed(builders::mesh("default")).await;
    let body = json!({
        "type": "Dataplane", "mesh": "default", "name": "dp-1",
        "networking": {
            "address": "10.0.0.1",
            "inbound": [
                { "port": 0, "tags": { "kuma.io/service": "web" } },
                { "port": 8080, "tags": { "version": "v1" } },
            ],
        },
    });
    let r = h
        .local()
        .put("/meshes/default/dataplanes/dp-1", &body)
        .await;
    r.assert_error(StatusCode::BAD_REQUEST);
    assert_eq!(r.json["title"], "Could not process a resource");
    assert_eq!(r.json["detail"], "Resource is not valid");
    let fields: Vec<String> = r.field_reasons().into_iter().map(|(f, _)| f).collect();
    assert!(
        fields.contains(&"networking.inbound[0].port".to_string()),
        "{fields:?}"
    );
    assert!(
        fields.contains(&"networking.inbound[1].tags".to_string()),
        "{fields:?}"
    );
    assert_eq!(h.count(ResourceType::Dataplane).await, 0);
}

#[tokio::test]
async fn url_and_body_must_agree_in_one_400() {
    let h = harness(CpMode::Global);
    h.seed(builders::mesh("default")).await;
    h.seed(builders::mesh("other")).await;
    let mut body = permission("other", "b", "web");
    body["type"] = json!("TrafficRoute");
    body["destinations"] = json!([]);
    let r = h
        .local()
        .put("/meshes/default/traffic-permissions/a", &body)
        .await;
    r.assert_error(StatusCode::BAD_REQUEST);
    let reasons = r.field_reasons();
    for (field, reason) in [
        ("type", "type from the URL has to be the same as in body"),
        ("name", "name from the URL has to be the same as in body"),
        ("mesh", "mesh from the URL has to be the same as in body"),
        ("destinations", "must have at least one element"),
    ] {
        assert!(
            reasons.iter().any(|(f, m)| f == field && m == reason),
            "missing {field}: {reason} in {reasons:?}"
        );
    }
    assert_eq!(h.count(ResourceType::TrafficPermission).await, 0);
}

#[tokio::test]
async fn unknown_field_is_named() {
    let h = harness(CpMode::Global);
    h.seed(builders::mesh("default")).await;
    let mut body = permission("default", "tp", "web");
    body["sourcez"] = json!([]);
    let r = h
        .local()
        .put("/meshes/default/traffic-permissions/tp", &body)
        .await;
    r.assert_error(StatusCode::BAD_REQUEST);
    let reasons = r.field_reasons();
    assert!(
        reasons
            .iter()
            .any(|(f, m)| f.contains("sourcez") || m.contains("sourcez")),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn malformed_bodies_get_the_kuma_envelope() {
    let h = harness(CpMode::Global);
    let c = h.local();
    let r = c
        .put_bytes("/meshes/m1", b"{\"type\": \"Mesh\", ", "application/json")
        .await;
    r.assert_error(StatusCode::BAD_REQUEST);
    assert_eq!(r.json["title"], "Bad Request");
    assert!(
        r.json["detail"]
            .as_str()
            .is_some_and(|d| d.contains("not valid JSON"))
    );

    let r = c.put_bytes("/meshes/m1", b"type: Mesh", "text/plain").await;
    r.assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let r = c.put("/meshes/m1", &json!(["not", "an", "object"])).await;
    r.assert_error(StatusCode::BAD_REQUEST);

    // No Content-Type at all is read as JSON.
    let body = serde_json::to_vec(&json!({ "type": "Mesh", "name": "m1" })).expect("json");
    let r = c.send(Method::PUT, "/meshes/m1", Some(body), None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let h = harness(CpMode::Global);
    let big = json!({ "type": "GlobalSecret", "name": "big", "data": "A".repeat(BODY_LIMIT + 10) });
    let r = h.local().put("/globalsecrets/big", &big).await;
    r.assert_error(StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(h.count(ResourceType::GlobalSecret).await, 0);
}

#[tokio::test]
async fn mesh_with_dataplanes_cannot_be_deleted_unless_unsafe() {
    let h = harness(CpMode::Global);
    h.seed(builders::mesh("m1")).await;
    h.seed_dataplane("m1", "dp-1", "10.0.0.1", &[(8080, "web")])
        .await;
    let r = h.local().delete("/meshes/m1").await;
    r.assert_error(StatusCode::BAD_REQUEST);
    assert_eq!(
        r.field_reasons(),
        [(
            "mesh".to_string(),
            "unable to delete mesh, there are still some dataplanes attached".to_string()
        )]
    );

    let h = harness_with(CpMode::Global, |s| s.unsafe_delete = true);
    h.seed(builders::mesh("m1")).await;
    h.seed_dataplane("m1", "dp-1", "10.0.0.1", &[(8080, "web")])
        .await;
    let r = h.local().delete("/meshes/m1").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(h.count(ResourceType::Dataplane).await, 0, "cascade");
}

#[tokio::test]
async fn origin_and_zone_labels_on_a_zone() {
    let h = harness(CpMode::Standalone);
    h.seed(builders::mesh("default")).await;
    let c = h.local();
    let body = json!({
        "type": "Dataplane", "mesh": "default", "name": "dp-1",
        "networking": { "address": "10.0.0.1", "inbound": [{ "port": 8080, "tags": { "kuma.io/service": "web" } }] },
    });
    let r = c.put("/meshes/default/dataplanes/dp-1", &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let got = c.get("/meshes/default/dataplanes/dp-1").await;
    assert_eq!(
        got.json["labels"],
        json!({
            "kuma.io/env": "universal",
            "kuma.io/mesh": "default",
            "kuma.io/origin": "zone",
            "kuma.io/zone": "zone-1",
        })
    );

    // Immutable labels: omitted ones are kept, changed ones refused.
    let r = c.put("/meshes/default/dataplanes/dp-1", &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        c.get("/meshes/default/dataplanes/dp-1").await.json["labels"]["kuma.io/zone"],
        "zone-1"
    );
    let mut changed = body.clone();
    changed["labels"] = json!({ "kuma.io/origin": "global", "kuma.io/display-name": "x" });
    let r = c.put("/meshes/default/dataplanes/dp-1", &changed).await;
    r.assert_error(StatusCode::BAD_REQUEST);
    let reasons = r.field_reasons();
    assert!(
        reasons
            .iter()
            .any(|(f, m)| f == "labels[\"kuma.io/origin\"]" && m.contains("immutable")),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn stale_version_is_409() {
    let h = harness(CpMode::Global);
    let c = h.local();
    assert_eq!(
        c.put("/meshes/m1", &json!({ "type": "Mesh", "name": "m1" }))
            .await
            .status,
        StatusCode::CREATED
    );
    h.store.race_next_update.store(true, Ordering::SeqCst);
    let r = c
        .put(
            "/meshes/m1",
            &json!({ "type": "Mesh", "name": "m1", "labels": { "a": "b" } }),
        )
        .await;
    r.assert_error(StatusCode::CONFLICT);
    assert_eq!(r.json["title"], "Conflict");
}

#[tokio::test]
async fn unavailable_store_is_503_without_internals() {
    let h = harness(CpMode::Global);
    h.store.down.store(true, Ordering::SeqCst);
    let r = h.local().get("/meshes").await;
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE);
    assert!(!r.text.contains("secret internal detail"), "{}", r.text);
}

// === lists ===

#[tokio::test]
async fn paging_follows_next_links() {
    let h = harness(CpMode::Global);
    h.seed(builders::mesh("default")).await;
    for i in 0..250 {
        h.seed(builders::traffic_permission(
            "default",
            &format!("tp-{i:03}"),
            "a",
            "b",
        ))
        .await;
    }
    let c = h.local();
    let mut url = "/meshes/default/traffic-permissions?name=tp&size=100".to_string();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let r = c.get(&url).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json["total"], 250);
        for item in r.json["items"].as_array().expect("items") {
            seen.push(item["name"].as_str().expect("name").to_string());
        }
        pages += 1;
        match r.json["next"].as_str() {
            None => {
                assert!(r.json["next"].is_null(), "next is present as null");
                break;
            }
            Some(next) => {
                let prefix = "http://localhost:5681/meshes/default/traffic-permissions?";
                assert!(next.starts_with(prefix), "{next}");
                assert!(
                    next.contains("size=100") && next.contains("name=tp"),
                    "{next}"
                );
                url = next.trim_start_matches("http://localhost:5681").to_string();
            }
        }
        assert!(pages < 10, "runaway paging");
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..250).map(|i| format!("tp-{i:03}")).collect();
    assert_eq!(seen, expected, "every item once, sorted by name");
    let r = c
        .get("/meshes/default/traffic-permissions?offset=1000")
        .await;
    assert_eq!(
        (
            r.json["total"].clone(),
            r.json["items"].clone(),
            r.json["next"].clone()
        ),
        (json!(250), json!([]), Value::Null)
    );
}

#[tokio::test]
async fn bad_page_parameters_are_400() {
    let h = harness(CpMode::Global);
    let c = h.local();
    for (query, reason) in [
        ("size=0", "must be greater than 0"),
        (
            "size=1001",
            "invalid page size of 1001. Maximum page size is 1000",
        ),
        ("size=abc", "invalid format"),
    ] {
        let r = c.get(&format!("/meshes?{query}")).await;
        r.assert_error(StatusCode::BAD_REQUEST);
        assert_eq!(r.json["detail"], "Invalid page size");
        assert_eq!(
            r.field_reasons(),
            [("size".to_string(), reason.to_string())]
        );
    }
    let r = c.get("/meshes?offset=-4").await;
    r.assert_error(StatusCode::BAD_REQUEST);
    assert_eq!(r.json["detail"], "Invalid offset");
}

#[tokio::test]
async fn label_filter() {
    let h = harness(CpMode::Global);
    let c = h.local();
    for (name, env) in [("a", "prod"), ("b", "dev"), ("c", "prod")] {
        let body = json!({ "type": "Mesh", "name": name, "labels": { "env": env } });
        assert_eq!(
            c.put(&format!("/meshes/{name}"), &body).await.status,
            StatusCode::CREATED
        );
    }
    let r = c.get("/meshes?filter%5Blabels.env%5D=prod").await;
    let names: Vec<&str> = r.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(names, ["a", "c"]);
    assert_eq!(r.json["total"], 2);
    let r = c
        .get("/meshes?filter[labels.kuma.io/origin]=global&filter[labels.env]=dev")
        .await;
    assert_eq!(r.json["total"], 1, "{}", r.text);
    let r = c.get("/meshes?filter[spec.x]=1").await;
    r.assert_error(StatusCode::BAD_REQUEST);
    assert_eq!(
        r.field_reasons()[0].1,
        "filters are only supported on labels"
    );
    let r = c.get("/meshes?filter[labels.env]x=1").await;
    assert_eq!(r.field_reasons()[0].1, "advanced filters are not supported");
}

#[tokio::test]
async fn tag_and_gateway_filters_on_dataplanes() {
    let h = harness(CpMode::Standalone);
    h.seed(builders::mesh("default")).await;
    h.seed_dataplane("default", "backend-1", "10.0.0.1", &[(8080, "backend")])
        .await;
    h.seed_dataplane(
        "default",
        "api-1",
        "10.0.0.2",
        &[(8080, "web"), (9090, "backend-api")],
    )
    .await;
    h.seed_dataplane("default", "web-1", "10.0.0.3", &[(8080, "web")])
        .await;
    let mut gateway = builders::dataplane("default", "gw-1", "10.0.0.4", &[]);
    if let Spec::Dataplane(dp) = &mut gateway.spec
        && let Some(n) = dp.networking.as_mut()
    {
        n.gateway = Some(model::mesh_pb::dataplane::networking::Gateway {
            tags: [("kuma.io/service".to_string(), "edge".to_string())].into(),
            r#type: 1,
        });
    }
    h.seed(gateway).await;
    let c = h.local();
    let names = |r: &Resp| -> Vec<String> {
        r.json["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|i| i["name"].as_str().map(str::to_string))
            .collect()
    };
    let r = c
        .get("/meshes/default/dataplanes?tag=kuma.io/service:backend")
        .await;
    assert_eq!(
        names(&r),
        ["api-1", "backend-1"],
        "fuzzy: any inbound contains the value"
    );
    assert_eq!(r.json["total"], 2);
    let r = c
        .get("/meshes/default/dataplanes?tag=kuma.io/service:web&tag=version:v1")
        .await;
    assert_eq!(names(&r), ["api-1", "web-1"]);
    let r = c
        .get("/meshes/default/dataplanes?tag=kuma.io/service:*&size=1")
        .await;
    assert_eq!(names(&r), ["api-1"]);
    assert_eq!(r.json["total"], 4);
    assert!(
        r.json["next"]
            .as_str()
            .is_some_and(|n| n.contains("offset=1") && n.contains("tag=kuma.io%2Fservice%3A%2A")),
        "{}",
        r.text
    );
    let r = c.get("/meshes/default/dataplanes?gateway=true").await;
    assert_eq!(names(&r), ["gw-1"]);
    let r = c.get("/meshes/default/dataplanes?gateway=builtin").await;
    assert_eq!(names(&r), ["gw-1"]);
    let r = c.get("/meshes/default/dataplanes?gateway=false").await;
    assert_eq!(names(&r).len(), 3);
    c.get("/meshes/default/dataplanes?gateway=sometimes")
        .await
        .assert_error(StatusCode::BAD_REQUEST);
    let r = c
        .get("/meshes/default/dataplanes/_overview?tag=kuma.io/service:edge")
        .await;
    assert_eq!(names(&r), ["gw-1"]);
}

// === read-only rules ===

#[tokio::test]
async fn read_only_types_are_405() {
    let h = harness(CpMode::Global);
    h.seed(builders::mesh("default")).await;
    let c = h.local();
    let dp = json!({ "type": "Dataplane", "mesh": "default", "name": "x" });
    let r = c.put("/meshes/default/dataplanes/x", &dp).await;
    r.assert_error(StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.json["title"], "Method not allowed");
    assert!(
        r.json["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("On global control plane"))
    );
    c.delete("/meshes/default/dataplanes/x")
        .await
        .assert_error(StatusCode::METHOD_NOT_ALLOWED);
    let r = c
        .put(
            "/zone-insights/z1",
            &json!({ "type": "ZoneInsight", "name": "z1" }),
        )
        .await;
    r.assert_error(StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(h.count(ResourceType::ZoneInsight).await, 0);

    let zone = harness(CpMode::FederatedZone);
    let r = zone
        .local()
        .put("/meshes/m1", &json!({ "type": "Mesh", "name": "m1" }))
        .await;
    r.assert_error(StatusCode::METHOD_NOT_ALLOWED);
    assert!(
        r.json["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("On zone control plane"))
    );

    let ro = harness_with(CpMode::Global, |s| s.read_only = true);
    let r = ro
        .local()
        .put("/meshes/m1", &json!({ "type": "Mesh", "name": "m1" }))
        .await;
    r.assert_error(StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(ro.local().get("/meshes").await.status, StatusCode::OK);
    let r = ro.local().get("/_resources").await;
    assert!(
        r.json["resources"]
            .as_array()
            .expect("items")
            .iter()
            .all(|i| i["readOnly"] == true)
    );
}

// === authentication and authorization ===

#[tokio::test]
async fn remote_callers() {
    let h = harness(CpMode::Global);
    h.seed(builders::mesh("default")).await;
    h.seed(builders::secret("default", "s1", b"top")).await;
    let mesh = json!({ "type": "Mesh", "name": "m2" });

    let anonymous = h.remote(None);
    assert_eq!(anonymous.get("/meshes").await.status, StatusCode::OK);
    assert_eq!(
        anonymous.get("/meshes/default").await.status,
        StatusCode::OK
    );
    anonymous
        .put("/meshes/m2", &mesh)
        .await
        .assert_error(StatusCode::FORBIDDEN);
    anonymous
        .delete("/meshes/default")
        .await
        .assert_error(StatusCode::FORBIDDEN);
    let r = anonymous.get("/meshes/default/secrets/s1").await;
    r.assert_error(StatusCode::FORBIDDEN);
    assert_eq!(r.json["title"], "Access Denied");
    for uri in ["/meshes/default/secrets", "/secrets", "/global-secrets"] {
        anonymous.get(uri).await.assert_error(StatusCode::FORBIDDEN);
    }

    let bad = h.remote(Some("stolen"));
    let r = bad.get("/meshes").await;
    r.assert_error(StatusCode::UNAUTHORIZED);
    assert_eq!(r.json["title"], "Invalid authentication data");

    let user = h.remote(Some(USER_TOKEN));
    assert_eq!(user.get("/meshes").await.status, StatusCode::OK);
    user.put("/meshes/m2", &mesh)
        .await
        .assert_error(StatusCode::FORBIDDEN);
    user.get("/meshes/default/secrets/s1")
        .await
        .assert_error(StatusCode::FORBIDDEN);

    let admin = h.remote(Some(ADMIN_TOKEN));
    assert_eq!(
        admin.put("/meshes/m2", &mesh).await.status,
        StatusCode::CREATED
    );
    let r = admin.get("/meshes/default/secrets/s1").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["data"], "dG9w");

    // A loopback peer behind a proxy, or with a foreign Host, is not trusted as admin.
    let proxied = h.local();
    let request = Request::builder()
        .method(Method::PUT)
        .uri("/meshes/m3")
        .header(header::HOST, "localhost:5681")
        .header("x-forwarded-for", "203.0.113.9")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"type":"Mesh","name":"m3"}"#))
        .expect("request");
    let response = proxied
        .app
        .clone()
        .oneshot(request)
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let rebinding = Client {
        host: "evil.example.com",
        ..h.local()
    };
    rebinding
        .put("/meshes/m3", &json!({ "type": "Mesh", "name": "m3" }))
        .await
        .assert_error(StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn merged_routers_see_the_identity() {
    let h = harness(CpMode::Global);
    let extra = Router::new().route(
        "/tokens/probe",
        axum::routing::post(
            |axum::Extension(identity): axum::Extension<Identity>| async move { identity.name },
        ),
    );
    let app = router_with(h.state.clone(), extra);
    let admin = Client::new(
        app.clone(),
        ([10, 0, 0, 7], 1),
        "cp:5681",
        Some(ADMIN_TOKEN),
    );
    let r = admin.send(Method::POST, "/tokens/probe", None, None).await;
    assert_eq!(
        (r.status, r.text.as_str()),
        (StatusCode::OK, "mesh-system:admin")
    );
    let anonymous = Client::new(app, ([10, 0, 0, 7], 1), "cp:5681", None);
    anonymous
        .send(Method::POST, "/tokens/probe", None, None)
        .await
        .assert_error(StatusCode::FORBIDDEN);
}

// === overviews and insights ===

fn connected_subscription() -> model::mesh_pb::DiscoverySubscription {
    model::mesh_pb::DiscoverySubscription {
        id: "stream-1".into(),
        control_plane_instance_id: "cp-1".into(),
        connect_time: Some(envoy_types::pb::google::protobuf::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn dataplane_and_zone_overviews() {
    let h = harness(CpMode::Global);
    h.seed(builders::mesh("default")).await;
    h.seed_dataplane("default", "dp-1", "10.0.0.1", &[(8080, "web")])
        .await;
    h.seed_dataplane("default", "dp-2", "10.0.0.2", &[(8080, "web")])
        .await;
    let insight = model::mesh_pb::DataplaneInsight {
        subscriptions: vec![connected_subscription()],
        ..Default::default()
    };
    h.seed(Resource::new(
        "default",
        "dp-1",
        Spec::DataplaneInsight(insight),
    ))
    .await;
    h.seed(builders::zone("zone-1")).await;
    let zone_insight = model::system_pb::ZoneInsight {
        subscriptions: vec![model::system_pb::KdsSubscription {
            id: "s".into(),
            connect_time: Some(envoy_types::pb::google::protobuf::Timestamp {
                seconds: 1,
                nanos: 0,
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    h.seed(Resource::new("", "zone-1", Spec::ZoneInsight(zone_insight)))
        .await;
    let c = h.local();

    for url in [
        "/meshes/default/dataplanes/_overview",
        "/meshes/default/dataplanes+insights",
        "/dataplanes/_overview",
    ] {
        let r = c.get(url).await;
        assert_eq!(r.status, StatusCode::OK, "{url}: {}", r.text);
        assert_eq!(r.json["total"], 2);
        let first = &r.json["items"][0];
        assert_eq!(first["type"], "DataplaneOverview");
        assert_eq!(first["mesh"], "default");
        assert_eq!(first["name"], "dp-1");
        assert_eq!(first["dataplane"]["networking"]["address"], "10.0.0.1");
        assert_eq!(
            first["dataplaneInsight"]["subscriptions"][0]["id"],
            "stream-1"
        );
        assert!(r.json["items"][1].get("dataplaneInsight").is_none());
    }
    for url in [
        "/meshes/default/dataplanes/dp-1/_overview",
        "/meshes/default/dataplanes+insights/dp-1",
    ] {
        let r = c.get(url).await;
        assert_eq!(r.json["type"], "DataplaneOverview", "{url}: {}", r.text);
        assert!(r.json["dataplaneInsight"].is_object());
    }
    c.get("/meshes/default/dataplanes/nope/_overview")
        .await
        .assert_error(StatusCode::NOT_FOUND);

    for url in ["/zones/_overview", "/zones+insights"] {
        let r = c.get(url).await;
        assert_eq!(
            r.json["items"][0]["type"], "ZoneOverview",
            "{url}: {}",
            r.text
        );
        assert_eq!(r.json["items"][0]["name"], "zone-1");
        assert_eq!(r.json["items"][0]["zone"], json!({ "enabled": true }));
        assert!(r.json["items"][0]["zoneInsight"]["subscriptions"].is_array());
    }
    let r = c.get("/zones/zone-1/_overview").await;
    assert_eq!(r.json["name"], "zone-1", "{}", r.text);
    assert_eq!(
        c.get("/zones+insights/zone-1").await.json["type"],
        "ZoneOverview"
    );
    assert_eq!(c.get("/zoneingresses/_overview").await.json["total"], 0);
    assert_eq!(c.get("/zoneingresses+insights").await.json["total"], 0);

    let r = c.get("/global-insight").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let g = &r.json;
    parse_time(&g["createdAt"]);
    assert_eq!(g["meshes"]["total"], 1);
    assert_eq!(
        g["zones"]["controlPlanes"],
        json!({ "total": 1, "online": 1, "offline": 0, "partiallyDegraded": 0 })
    );
    assert_eq!(g["dataplanes"]["standard"]["total"], 2);
    assert_eq!(g["dataplanes"]["standard"]["online"], 1);
    assert_eq!(g["dataplanes"]["standard"]["offline"], 1);
    assert_eq!(g["services"]["internal"]["total"], 1);
    assert_eq!(g["services"]["internal"]["partiallyDegraded"], 1);
    assert_eq!(g["policies"]["total"], 0);
    assert_eq!(g["resources"]["Dataplane"]["total"], 2);
    assert_eq!(g["resources"]["Mesh"]["total"], 1);

    let r = c.get("/mesh-insights").await;
    assert_eq!(r.json["total"], 1, "{}", r.text);
    let mi = &r.json["items"][0];
    assert_eq!(mi["type"], "MeshInsight");
    assert_eq!(mi["name"], "default");
    assert_eq!(
        mi["dataplanes"],
        json!({ "total": 2, "online": 1, "offline": 1, "partiallyDegraded": 0 })
    );
    assert_eq!(mi["dataplanesByType"]["standard"]["total"], 2);
    assert_eq!(mi["policies"]["TrafficPermission"]["total"], 0);
    assert_eq!(
        mi["services"],
        json!({ "total": 1, "internal": 1, "external": 0 })
    );
    assert_eq!(mi["dpVersions"]["kumaDp"]["unknown"]["total"], 2);
    assert_eq!(
        c.get("/mesh-insights/default").await.json["name"],
        "default"
    );
    c.get("/mesh-insights/nope")
        .await
        .assert_error(StatusCode::NOT_FOUND);
}

fn spec(kind: ResourceType, value: Value) -> Spec {
    Spec::from_json(kind, &value, true).expect("valid spec JSON")
}

/// A DataplaneInsight with one subscription: connected, or connected then disconnected;
/// with the certificate of `backend` when given.
fn dp_insight(mesh: &str, name: &str, connected: bool, backend: Option<&str>) -> Resource {
    let mut subscription = json!({ "id": "s-1", "controlPlaneInstanceId": "cp-1",
        "connectTime": "2025-12-31T23:00:00Z" });
    if !connected {
        subscription["disconnectTime"] = json!("2025-12-31T23:30:00Z");
    }
    let mut insight = json!({ "subscriptions": [subscription] });
    if let Some(backend) = backend {
        insight["mTLS"] = json!({ "issuedBackend": backend });
    }
    Resource::new(mesh, name, spec(ResourceType::DataplaneInsight, insight))
}

#[tokio::test]
async fn service_insights_count_dataplanes_per_service() {
    let h = harness(CpMode::Global);
    h.seed(builders::mesh("default")).await;
    h.seed(builders::mesh("other")).await;
    // web: dp-1 online, dp-2 without insight (offline), dp-3 disconnected (offline).
    h.seed_dataplane("default", "dp-1", "10.0.0.1", &[(8080, "web")])
        .await;
    h.seed(dp_insight("default", "dp-1", true, Some("ca-1")))
        .await;
    h.seed_dataplane("default", "dp-2", "10.0.0.2", &[(8080, "web")])
        .await;
    h.seed_dataplane(
        "default",
        "dp-3",
        "10.0.0.3",
        &[(8080, "web"), (9090, "backend")],
    )
    .await;
    h.seed(dp_insight("default", "dp-3", false, None)).await;
    // db: one online dataplane with two inbounds of it (counted once) in zone-1, plus an
    // ignored inbound of `hidden` that provides nothing.
    let db = json!({ "networking": { "address": "10.0.0.4", "inbound": [
        { "port": 5432, "tags": { "kuma.io/service": "db", "kuma.io/zone": "zone-1" } },
        { "port": 5433, "tags": { "kuma.io/service": "db", "kuma.io/zone": "zone-1" } },
        { "port": 7000, "state": "Ignored", "tags": { "kuma.io/service": "hidden" } },
    ] } });
    h.seed(Resource::new(
        "default",
        "dp-4",
        spec(ResourceType::Dataplane, db),
    ))
    .await;
    h.seed(dp_insight("default", "dp-4", true, Some("ca-1")))
        .await;
    // A delegated gateway, online.
    let gateway = json!({ "networking": { "address": "10.0.0.5",
        "gateway": { "tags": { "kuma.io/service": "edge" } } } });
    h.seed(Resource::new(
        "default",
        "gw-1",
        spec(ResourceType::Dataplane, gateway),
    ))
    .await;
    h.seed(dp_insight("default", "gw-1", true, None)).await;
    let external = json!({ "networking": { "address": "httpbin.org:443" },
        "tags": { "kuma.io/service": "httpbin", "kuma.io/protocol": "http" } });
    h.seed(Resource::new(
        "default",
        "httpbin",
        spec(ResourceType::ExternalService, external),
    ))
    .await;
    // Another mesh.
    h.seed_dataplane("other", "api-1", "10.1.0.1", &[(80, "api")])
        .await;
    h.seed(dp_insight("other", "api-1", true, None)).await;
    let c = h.local();

    let r = c.get("/meshes/default/service-insights").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["total"], 5, "{}", r.text);
    assert_eq!(r.json["next"], Value::Null);
    let items = r.json["items"].as_array().expect("items");
    let names: Vec<&str> = items
        .iter()
        .map(|i| i["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["backend", "db", "edge", "httpbin", "web"]);
    let by_name = |name: &str| -> Value {
        items
            .iter()
            .find(|i| i["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {}", r.text))
    };
    let mut web = by_name("web");
    for key in ["creationTime", "modificationTime"] {
        parse_time(&web[key]);
        web.as_object_mut().expect("object").remove(key);
    }
    assert_eq!(
        web,
        json!({ "type": "ServiceInsight", "mesh": "default", "name": "web",
            "status": "partially_degraded",
            "dataplanes": { "total": 3, "online": 1, "offline": 2 },
            "issuedBackends": { "ca-1": 1 },
            "serviceType": "internal", "addressPort": "web.mesh:80" })
    );
    let backend = by_name("backend");
    assert_eq!(backend["status"], "offline");
    assert_eq!(
        backend["dataplanes"],
        json!({ "total": 1, "online": 0, "offline": 1 })
    );
    assert!(backend.get("issuedBackends").is_none(), "{backend}");
    let db = by_name("db");
    assert_eq!(db["status"], "online");
    assert_eq!(
        db["dataplanes"],
        json!({ "total": 1, "online": 1, "offline": 0 })
    );
    assert_eq!(db["zones"], json!(["zone-1"]));
    assert_eq!(db["addressPort"], "db.mesh:80");
    let edge = by_name("edge");
    assert_eq!(edge["serviceType"], "gateway_delegated");
    assert_eq!(edge["status"], "online");
    assert!(edge.get("addressPort").is_none(), "{edge}");
    let httpbin = by_name("httpbin");
    assert_eq!(httpbin["serviceType"], "external");
    assert_eq!(httpbin["status"], "not_available");
    assert_eq!(httpbin["addressPort"], "httpbin.org:443");
    assert_eq!(httpbin["dataplanes"]["total"], 0);
    // The mesh's creation time; modified no earlier than anything counted.
    let mesh = c.get("/meshes/default").await;
    assert_eq!(by_name("web")["creationTime"], mesh.json["creationTime"]);
    assert!(
        parse_time(&by_name("web")["modificationTime"]) >= parse_time(&mesh.json["creationTime"])
    );

    // Every mesh: sorted by mesh, then name.
    let r = c.get("/service-insights").await;
    assert_eq!(r.json["total"], 6, "{}", r.text);
    assert_eq!(r.json["items"][5]["mesh"], "other");
    assert_eq!(r.json["items"][5]["name"], "api");
    assert_eq!(r.json["items"][5]["status"], "online");

    // Filters and paging.
    let names_of = |r: &Resp| -> Vec<String> {
        r.json["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["name"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let r = c.get("/meshes/default/service-insights?name=back").await;
    assert_eq!(names_of(&r), ["backend"], "{}", r.text);
    let r = c
        .get("/meshes/default/service-insights?type=external,Gateway_Delegated")
        .await;
    assert_eq!(names_of(&r), ["edge", "httpbin"], "{}", r.text);
    let r = c.get("/meshes/default/service-insights?type=bogus").await;
    r.assert_error(StatusCode::BAD_REQUEST);
    assert_eq!(r.json["detail"], "bad request: unsupported service type");
    let r = c.get("/meshes/default/service-insights?size=2").await;
    assert_eq!(r.json["total"], 5, "{}", r.text);
    assert_eq!(names_of(&r), ["backend", "db"]);
    assert_eq!(
        r.json["next"],
        "http://localhost:5681/meshes/default/service-insights?offset=2&size=2"
    );
    let r = c
        .get("/meshes/default/service-insights?size=2&offset=4")
        .await;
    assert_eq!(names_of(&r), ["web"], "{}", r.text);
    assert_eq!(r.json["next"], Value::Null);
    c.get("/meshes/default/service-insights?size=0")
        .await
        .assert_error(StatusCode::BAD_REQUEST);

    // One service.
    let r = c.get("/meshes/default/service-insights/web").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["name"], "web");
    assert_eq!(r.json["dataplanes"]["total"], 3);
    // A service nobody provides: zero dataplanes, as Kuma answers.
    let r = c.get("/meshes/default/service-insights/nobody").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.json["dataplanes"],
        json!({ "total": 0, "online": 0, "offline": 0 })
    );
    assert!(r.json.get("status").is_none(), "{}", r.text);
    // A missing mesh: 404 for one service, an empty list for the list.
    c.get("/meshes/nope/service-insights/web")
        .await
        .assert_error(StatusCode::NOT_FOUND);
    let r = c.get("/meshes/nope/service-insights").await;
    assert_eq!(
        r.json,
        json!({ "total": 0, "items": [], "next": null }),
        "{}",
        r.text
    );

    // Service insights are computed: nothing to write.
    c.put("/meshes/default/service-insights/web", &json!({}))
        .await
        .assert_error(StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn service_insights_of_an_empty_mesh() {
    let h = harness(CpMode::Global);
    h.seed(builders::mesh("default")).await;
    let c = h.local();
    for url in ["/meshes/default/service-insights", "/service-insights"] {
        c.assert_empty_list(url).await;
    }
    // A dataplane without services (no inbounds) adds none.
    let bare = json!({ "networking": { "address": "10.0.0.9" } });
    h.seed(Resource::new(
        "default",
        "bare",
        spec(ResourceType::Dataplane, bare),
    ))
    .await;
    assert_eq!(
        c.get("/meshes/default/service-insights").await.json["total"],
        0
    );
}

#[tokio::test]
async fn zone_egress_overviews_are_empty() {
    let h = harness(CpMode::Global);
    let c = h.local();
    for url in ["/zoneegresses/_overview", "/zoneegressoverviews"] {
        c.assert_empty_list(url).await;
    }
    c.get("/zoneegresses/_overview?size=abc")
        .await
        .assert_error(StatusCode::BAD_REQUEST);
}

// === router plumbing ===

#[tokio::test]
async fn unknown_paths_and_methods_get_json_errors() {
    let h = harness(CpMode::Global);
    let c = h.local();
    let r = c.get("/no/such/thing").await;
    r.assert_error(StatusCode::NOT_FOUND);
    assert_eq!(r.json["title"], "Unknown endpoint");
    c.send(Method::POST, "/meshes", None, None)
        .await
        .assert_error(StatusCode::METHOD_NOT_ALLOWED);
    c.send(Method::PUT, "/zones/_overview", Some(b"{}".to_vec()), None)
        .await
        .assert_error(StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn metrics_count_requests_per_route() {
    let h = harness(CpMode::Global);
    let c = h.local();
    c.get("/meshes").await;
    c.get("/meshes").await;
    c.get("/meshes/nope").await;
    c.get("/nowhere").await;
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &h.registry).expect("encode");
    assert!(
        text.contains(
            r#"api_server_http_requests_total{method="GET",route="/meshes",status="200"} 2"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"api_server_http_requests_total{method="GET",route="/meshes/{name}",status="404"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"route="unmatched",status="404"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("api_server_http_request_duration_seconds_bucket"),
        "{text}"
    );
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r.clone());
            }
            map.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// Fills the path parameters of a route template.
fn concrete(path: &str) -> String {
    path.replace("{mesh}", "default").replace("{name}", "x")
}

#[tokio::test]
async fn openapi_covers_every_route_the_router_serves() {
    let h = harness(CpMode::Standalone);
    h.seed(builders::mesh("default")).await;
    let c = h.local();
    let r = c.get("/openapi.json").await;
    assert_eq!(r.status, StatusCode::OK);
    let doc = &r.json;
    assert_eq!(doc["openapi"], "3.0.3");
    assert!(doc["components"]["schemas"]["Error"].is_object());
    assert!(doc["components"]["schemas"]["TrafficPermissionList"].is_object());
    assert!(
        doc["components"]["schemas"]["kuma.mesh.v1alpha1.Dataplane"]["properties"]["networking"]
            .is_object()
    );

    let table = routes::routes();
    let mut operation_ids = std::collections::BTreeSet::new();
    for route in &table {
        let method = route.method.as_str().to_ascii_lowercase();
        let op = &doc["paths"][&route.path][&method];
        assert!(
            op.is_object(),
            "{} {} missing from openapi",
            route.method,
            route.path
        );
        assert!(
            operation_ids.insert(op["operationId"].as_str().expect("operationId").to_string()),
            "duplicate operationId {}",
            op["operationId"]
        );
        for param in route.path.split('/').filter(|s| s.starts_with('{')) {
            let name = param.trim_matches(|c| c == '{' || c == '}');
            let params = op["parameters"].as_array().expect("parameters");
            assert!(
                params
                    .iter()
                    .any(|p| p["name"] == name && p["in"] == "path"),
                "{} lacks {name}",
                route.path
            );
        }
        // The router serves it: never the unknown-endpoint fallback.
        let body = (route.method == Method::PUT).then(|| b"{}".to_vec());
        let resp = c
            .send(route.method.clone(), &concrete(&route.path), body, None)
            .await;
        assert_ne!(
            resp.json["title"], "Unknown endpoint",
            "{} {}",
            route.method, route.path
        );
        if route.endpoint == Endpoint::Index || matches!(route.endpoint, Endpoint::List(..)) {
            assert_eq!(
                resp.status,
                StatusCode::OK,
                "{} {}: {}",
                route.method,
                route.path,
                resp.text
            );
        }
    }
    // Every $ref points at a schema the document defines.
    let mut refs = Vec::new();
    collect_refs(doc, &mut refs);
    for r in refs {
        let name = r
            .trim_start_matches("#/components/schemas/")
            .trim_start_matches("#/components/responses/");
        assert!(
            doc["components"]["schemas"][name].is_object()
                || doc["components"]["responses"][name].is_object(),
            "dangling {r}"
        );
    }
    // And the document has nothing the table lacks.
    let documented: usize = doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|ops| ops.as_object().map_or(0, |o| o.len()))
        .sum();
    assert_eq!(documented, table.len());
}

// === garbage in, 4xx out ===

/// xorshift64*: a small deterministic generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const KEYS: &[&str] = &[
    "type",
    "name",
    "mesh",
    "labels",
    "sources",
    "destinations",
    "match",
    "networking",
    "address",
    "inbound",
    "outbound",
    "gateway",
    "port",
    "servicePort",
    "tags",
    "kuma.io/service",
    "conf",
    "data",
    "mtls",
    "enabledBackend",
    "backends",
    "metrics",
    "enabled",
    "http",
    "tcp",
    "timeout",
    "connectTimeout",
    "selectors",
    "destination",
    "split",
    "weight",
    "creationTime",
    "extra",
];
const STRINGS: &[&str] = &[
    "",
    "default",
    "Mesh",
    "TrafficPermission",
    "Dataplane",
    "*",
    "10.0.0.1",
    "::1",
    "not an ip",
    "5s",
    "-1s",
    "99999999999999999999s",
    "1.5",
    "c2VjcmV0",
    "!!!",
    "\u{0}",
    "é",
    "kuma.io/service",
    "9223372036854775808",
    "NaN",
    "2018-07-17T16:05:36.995Z",
];

fn random_value(rng: &mut Rng, depth: u32) -> Value {
    let choice = if depth > 4 {
        rng.below(5)
    } else {
        rng.below(8)
    };
    match choice {
        0 => Value::Null,
        1 => json!(rng.below(2) == 0),
        2 => match rng.below(5) {
            0 => json!(rng.next() as i64),
            1 => json!(-(rng.below(70_000) as i64)),
            2 => json!(rng.below(70_000)),
            3 => json!((rng.next() as f64) / 7.0),
            _ => json!(1e300),
        },
        3 | 4 => json!(rng.pick(STRINGS)),
        5 => Value::Array(
            (0..rng.below(4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let mut map = serde_json::Map::new();
            for _ in 0..rng.below(5) {
                map.insert(rng.pick(KEYS).to_string(), random_value(rng, depth + 1));
            }
            Value::Object(map)
        }
    }
}

#[tokio::test]
async fn garbled_bodies_get_4xx_and_store_nothing() {
    let h = harness(CpMode::Standalone);
    h.seed(builders::mesh("default")).await;
    let c = h.local();
    let targets = [
        ("/meshes/fuzz-target", "Mesh"),
        ("/zones/fuzz-target", "Zone"),
        ("/global-secrets/fuzz-target", "GlobalSecret"),
        (
            "/meshes/default/traffic-permissions/fuzz-target",
            "TrafficPermission",
        ),
        ("/meshes/default/traffic-routes/fuzz-target", "TrafficRoute"),
        ("/meshes/default/dataplanes/fuzz-target", "Dataplane"),
        ("/meshes/default/secrets/fuzz-target", "Secret"),
        (
            "/meshes/default/external-services/fuzz-target",
            "ExternalService",
        ),
        ("/meshes/default/timeouts/fuzz-target", "Timeout"),
        ("/meshes/default/health-checks/fuzz-target", "HealthCheck"),
        (
            "/meshes/default/proxytemplates/fuzz-target",
            "ProxyTemplate",
        ),
    ];
    let before = h.store.snapshot().await.expect("snapshot").resources.len();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for i in 0..600 {
        let (url, kind) = targets[i % targets.len()];
        let body: Vec<u8> = match rng.below(6) {
            // Raw bytes.
            0 => (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
            // A valid-looking resource cut short.
            1 => {
                let text = serde_json::to_string(&json!({ "type": kind, "name": "fuzz-target", "mesh": "default", "networking": { "inbound": [] } }))
                    .expect("json");
                let cut = rng.below(text.len());
                text.as_bytes()[..cut].to_vec()
            }
            // Random JSON of any shape.
            2 => serde_json::to_vec(&random_value(&mut rng, 0)).expect("json"),
            // The right type with random fields; the name never matches the URL, so the
            // request must fail, but only after the spec has been parsed and validated.
            _ => {
                let mut object = serde_json::Map::new();
                for _ in 0..rng.below(6) {
                    object.insert(rng.pick(KEYS).to_string(), random_value(&mut rng, 1));
                }
                object.insert("type".into(), json!(kind));
                object.insert("mesh".into(), json!("default"));
                object.insert(
                    "name".into(),
                    json!(rng.pick(&["other", "", "FUZZ", "fuzz-target-2"])),
                );
                serde_json::to_vec(&Value::Object(object)).expect("json")
            }
        };
        let content_type = match rng.below(10) {
            0 => None,
            1 => Some("text/plain"),
            _ => Some("application/json"),
        };
        let r = c
            .send(Method::PUT, url, Some(body.clone()), content_type)
            .await;
        assert!(
            r.status.is_client_error(),
            "case {i}: PUT {url} {} -> {}: {}",
            String::from_utf8_lossy(&body),
            r.status,
            r.text
        );
        r.assert_error(r.status);
    }
    let after = h.store.snapshot().await.expect("snapshot").resources.len();
    assert_eq!(before, after, "nothing was stored");
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_without_details() {
    let h = harness(CpMode::Global);
    let extra = Router::new().route(
        "/tokens/boom",
        axum::routing::get(|| async {
            let empty: Vec<u8> = Vec::new();
            // An out-of-bounds index the compiler cannot see through.
            empty
                .get(std::hint::black_box(3))
                .copied()
                .map(|b| b.to_string())
                .unwrap_or_else(|| panic!("index 3 of secret data"))
        }),
    );
    let client = Client::new(
        router_with(h.state.clone(), extra),
        ([127, 0, 0, 1], 1),
        "localhost",
        None,
    );
    let r = client.get("/tokens/boom").await;
    r.assert_error(StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.json["detail"], "Internal Server Error");
    assert!(!r.text.contains("secret"), "{}", r.text);
}

/// A `MakeWriter` into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

/// Requests whose logs must not show the token or the secret data.
async fn requests_with_secrets(token: &str) {
    let h = harness(CpMode::Global);
    h.seed(builders::mesh("default")).await;
    h.remote(Some(token))
        .get("/meshes")
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    let c = h.local();
    // A secret whose data is valid, then one whose data the parser rejects (and may quote).
    let ok = json!({ "type": "Secret", "mesh": "default", "name": "s1", "data": "c3VwZXItc2VjcmV0LXZhbHVl" });
    assert_eq!(
        c.put("/meshes/default/secrets/s1", &ok).await.status,
        StatusCode::CREATED
    );
    let bad =
        json!({ "type": "Secret", "mesh": "default", "name": "s2", "data": "super-secret-value!" });
    c.put("/meshes/default/secrets/s2", &bad)
        .await
        .assert_error(StatusCode::BAD_REQUEST);
    assert_eq!(
        c.get("/meshes/default/secrets/s1").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn tokens_and_bodies_never_reach_the_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let token = "eyJhbGciOiJSUzI1NiJ9.very-secret-token-payload.sig";
    // Tests in other threads may register callsites while no subscriber of ours exists, which
    // leaves them disabled: run once so every callsite exists, recompute their interest, then
    // run again and judge that run's logs.
    requests_with_secrets(token).await;
    tracing::callsite::rebuild_interest_cache();
    captured.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    requests_with_secrets(token).await;

    let logs = captured.text();
    for expected in [
        "api_request",
        "/meshes/{mesh}/secrets/{name}",
        "user token refused",
        "request refused",
        "request served",
    ] {
        assert!(logs.contains(expected), "{expected:?} is logged: {logs}");
    }
    for secret in [
        "very-secret-token-payload",
        "c3VwZXItc2VjcmV0LXZhbHVl",
        "super-secret-value",
    ] {
        assert!(
            !logs.contains(secret),
            "{secret} leaked into the logs: {logs}"
        );
    }
}

#[tokio::test]
async fn odd_urls_get_4xx() {
    let h = harness(CpMode::Global);
    h.seed(builders::mesh("default")).await;
    let c = h.local();
    for (method, url) in [
        (Method::GET, "/meshes/%FF"),
        (Method::PUT, "/meshes/%FF"),
        (Method::GET, "/meshes/default/traffic-permissions/%00"),
        (Method::DELETE, "/meshes/default/traffic-permissions/a%2Fb"),
        (Method::GET, "/meshes?size=5&size=abc&name=%ZZ"),
        (
            Method::GET,
            "/meshes/default/dataplanes?tag=&tag=:&gateway=",
        ),
        (
            Method::GET,
            "/meshes/default/traffic-permissions/x?format=kubernetes",
        ),
    ] {
        let body = (method == Method::PUT).then(|| b"{}".to_vec());
        let r = c.send(method.clone(), url, body, None).await;
        if r.status.is_success() {
            continue;
        }
        assert!(
            r.status.is_client_error(),
            "{method} {url}: {} {}",
            r.status,
            r.text
        );
        r.assert_error(r.status);
    }
}

// === mesh mTLS and default policies (Kuma's mesh manager) ===

fn builtin_mesh(name: &str) -> Value {
    json!({
        "type": "Mesh",
        "name": name,
        "mtls": {
            "enabledBackend": "ca-1",
            "backends": [{ "name": "ca-1", "type": "builtin" }],
        },
    })
}

#[tokio::test]
async fn a_new_mesh_gets_its_default_policies_and_ca() {
    let h = harness(CpMode::Global);
    let admin = h.local();
    let r = admin.put("/meshes/m1", &builtin_mesh("m1")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    // The CA exists as soon as the apply returns.
    for name in ["m1.ca-builtin-cert-ca-1", "m1.ca-builtin-key-ca-1"] {
        let r = admin.get(&format!("/meshes/m1/secrets/{name}")).await;
        assert_eq!(r.status, StatusCode::OK, "{name}: {}", r.text);
        assert_eq!(r.json["labels"]["kuma.io/origin"], "global", "{}", r.text);
    }
    let r = admin
        .get("/meshes/m1/traffic-permissions/allow-all-m1")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.json["sources"],
        json!([{ "match": { "kuma.io/service": "*" } }])
    );
    let r = admin.get("/meshes/m1/traffic-routes/route-all-m1").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.json["conf"],
        json!({ "destination": { "kuma.io/service": "*" }, "loadBalancer": { "roundRobin": {} } })
    );
    let cert = h
        .store
        .get(&ResourceKey::new(
            ResourceType::Secret,
            "m1",
            "m1.ca-builtin-cert-ca-1",
        ))
        .await
        .expect("cert");

    // Updating the mesh keeps its CA and does not recreate deleted default policies.
    let r = admin
        .delete("/meshes/m1/traffic-permissions/allow-all-m1")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = admin.put("/meshes/m1", &builtin_mesh("m1")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let again = h
        .store
        .get(&ResourceKey::new(
            ResourceType::Secret,
            "m1",
            "m1.ca-builtin-cert-ca-1",
        ))
        .await
        .expect("cert");
    assert_eq!(again.meta.version, cert.meta.version, "CA regenerated");
    assert_eq!(h.count(ResourceType::TrafficPermission).await, 0);

    // Deleting the mesh takes its CA and policies along.
    let r = admin.delete("/meshes/m1").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(h.count(ResourceType::Secret).await, 0);
    assert_eq!(h.count(ResourceType::TrafficRoute).await, 0);
}

#[tokio::test]
async fn enabling_mtls_on_an_existing_mesh_creates_the_ca() {
    let h = harness(CpMode::Standalone);
    let admin = h.local();
    let r = admin
        .put(
            "/meshes/m1",
            &json!({ "type": "Mesh", "name": "m1", "skipCreatingInitialPolicies": ["*"] }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(h.count(ResourceType::Secret).await, 0);
    assert_eq!(h.count(ResourceType::TrafficPermission).await, 0);
    assert_eq!(h.count(ResourceType::TrafficRoute).await, 0);
    let r = admin.put("/meshes/m1", &builtin_mesh("m1")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(h.count(ResourceType::Secret).await, 2);
    assert_eq!(h.count(ResourceType::TrafficPermission).await, 0);
}

#[tokio::test]
async fn a_provided_ca_without_its_secrets_is_400_and_stores_nothing() {
    let h = harness(CpMode::Global);
    let mesh = json!({
        "type": "Mesh",
        "name": "m1",
        "mtls": {
            "enabledBackend": "ca-1",
            "backends": [{
                "name": "ca-1",
                "type": "provided",
                "conf": { "cert": { "secret": "my-cert" }, "key": { "secret": "my-key" } },
            }],
        },
    });
    let r = h.local().put("/meshes/m1", &mesh).await;
    r.assert_error(StatusCode::BAD_REQUEST);
    let reasons = r.field_reasons();
    assert_eq!(reasons.len(), 1, "{}", r.text);
    assert_eq!(reasons[0].0, "mtls.backends[0].conf.cert.secret");
    assert!(reasons[0].1.contains("\"my-cert\" not found"), "{}", r.text);
    assert_eq!(h.count(ResourceType::Mesh).await, 0);
    assert_eq!(h.count(ResourceType::TrafficPermission).await, 0);
}
