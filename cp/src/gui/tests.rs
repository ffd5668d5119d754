//! Page handlers over HTTP (`tower::ServiceExt::oneshot`, no socket) on a memory store:
//! status codes, the content a user reads, escaping of hostile names, redaction.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use envoy_types::pb::google::protobuf::Timestamp;
use model::mesh_pb::{self, DataplaneInsight, DiscoverySubscription};
use model::system_pb::{KdsLag, KdsRejection, KdsSubscription, KdsSyncState, ZoneInsight};
use model::test_util as builders;
use model::{CpMode, Resource, Spec, labels};
use store::ResourceStore;
use store::memory::MemoryStore;
use tower::ServiceExt;

use super::svg::Sample;
use super::*;

fn now_ts() -> Timestamp {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Timestamp {
        seconds: secs,
        nanos: 0,
    }
}

fn zone_insight(zone: &str, online: bool) -> Resource {
    let insight = ZoneInsight {
        subscriptions: vec![KdsSubscription {
            id: format!("{zone}-sub"),
            global_instance_id: "global-1".into(),
            connect_time: Some(now_ts()),
            disconnect_time: (!online).then(now_ts),
            ..Default::default()
        }],
        kds_sync: Some(KdsSyncState {
            global_to_zone: Some(KdsLag {
                revisions: 3,
                seconds: 1.5,
                ..Default::default()
            }),
            zone_to_global: Some(KdsLag::default()),
            rejections: vec![KdsRejection {
                direction: "globalToZone".into(),
                r#type: "TrafficRoute".into(),
                mesh: "default".into(),
                name: "broken-route".into(),
                reason: "spec.conf.destination: must not be empty".into(),
                time: Some(now_ts()),
                ..Default::default()
            }],
            stalls: 0,
        }),
        ..Default::default()
    };
    Resource::new("", zone, Spec::ZoneInsight(insight))
}

fn synced_dataplane(zone: &str, name: &str, service: &str, online: bool) -> Vec<Resource> {
    let mut dp = builders::dataplane("default", name, "10.0.0.1", &[(8080, service)]);
    dp.meta.labels.insert(labels::ZONE.into(), zone.into());
    let insight = DataplaneInsight {
        subscriptions: vec![DiscoverySubscription {
            id: "s".into(),
            control_plane_instance_id: format!("{zone}-cp"),
            connect_time: Some(now_ts()),
            disconnect_time: (!online).then(now_ts),
            ..Default::default()
        }],
        last_nack: Some(mesh_pb::dataplane_insight::XdsRejection {
            type_url: "type.googleapis.com/envoy.config.listener.v3.Listener".into(),
            reason: "duplicate listener name".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    vec![
        dp,
        Resource::new("default", name, Spec::DataplaneInsight(insight)),
    ]
}

fn ingress(zone: &str, name: &str, services: &[(&str, u32)]) -> Resource {
    let spec = mesh_pb::ZoneIngress {
        zone: zone.into(),
        networking: Some(mesh_pb::zone_ingress::Networking {
            address: "10.1.0.1".into(),
            port: 10001,
            advertised_address: "192.0.2.1".into(),
            advertised_port: 10001,
            ..Default::default()
        }),
        available_services: services
            .iter()
            .map(|(s, n)| mesh_pb::zone_ingress::AvailableService {
                tags: [(labels::tags::SERVICE.to_string(), s.to_string())]
                    .into_iter()
                    .collect(),
                instances: *n,
                mesh: "default".into(),
                external_service: false,
            })
            .collect(),
    };
    let mut r = Resource::new("", name, Spec::ZoneIngress(spec));
    r.meta.labels.insert(labels::ZONE.into(), zone.into());
    r
}

async fn store_with(resources: Vec<Resource>) -> Arc<dyn ResourceStore> {
    let store = Arc::new(MemoryStore::new());
    for r in resources {
        store.create(r, None).await.expect("create");
    }
    store
}

fn app(store: Arc<dyn ResourceStore>, mode: CpMode, zone: &str) -> axum::Router {
    app_with(store, mode, zone, Live::fixed(7))
}

fn app_with(store: Arc<dyn ResourceStore>, mode: CpMode, zone: &str, live: Live) -> axum::Router {
    router(GuiState {
        store,
        live,
        settings: Arc::new(GuiSettings {
            base: "/gui".into(),
            mode,
            zone: zone.into(),
            version: "0.1.0".into(),
        }),
        link: None,
    })
}

async fn get(app: &axum::Router, path: &str) -> (StatusCode, String, String) {
    let response = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = axum::body::to_bytes(response.into_body(), 4 << 20)
        .await
        .expect("body");
    (status, content_type, String::from_utf8_lossy(&bytes).into())
}

async fn federation() -> Arc<dyn ResourceStore> {
    let mut resources = vec![
        builders::mesh("default"),
        builders::zone("zone-1"),
        builders::zone("zone-2"),
        zone_insight("zone-1", true),
        zone_insight("zone-2", false),
        ingress("zone-2", "zone-2-ingress", &[("backend", 2)]),
        builders::traffic_permission("default", "allow-frontend", "frontend", "backend"),
        builders::secret("default", "db-password", b"hunter2-very-secret"),
    ];
    resources.extend(synced_dataplane("zone-1", "frontend-1", "frontend", true));
    resources.extend(synced_dataplane("zone-2", "backend-1", "backend", true));
    resources.extend(synced_dataplane("zone-2", "backend-2", "backend", false));
    store_with(resources).await
}

#[tokio::test]
async fn the_overview_shows_every_zone_coloured_by_status_and_the_counts() {
    let app = app(federation().await, CpMode::Global, "");
    let (status, content_type, body) = get(&app, "/gui").await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(
        body.contains(r#"data-kind="zone" data-name="zone-1" data-status="online""#),
        "{body}"
    );
    assert!(body.contains(r#"data-kind="zone" data-name="zone-2" data-status="offline""#));
    assert!(body.contains(r#"<tr data-zone="zone-2" data-status="offline">"#));
    assert!(
        body.contains("lag 1.5s / 3 rev"),
        "the zone's lag is on the picture"
    );
    assert!(
        body.contains("<div class=\"value\">1 / 2</div><div class=\"label\">Zones online</div>")
    );
    assert!(
        body.contains(
            "<div class=\"value\">2 / 3</div><div class=\"label\">Dataplanes online</div>"
        )
    );
    assert!(body.contains(r#"data-kind="ingress" data-name="zone-2-ingress""#));
    assert!(!body.contains("hunter2"), "no secret on any page");
    // `/gui/` is the same page.
    assert_eq!(get(&app, "/gui/").await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_zone_page_shows_subscriptions_rejections_and_the_lag_charts() {
    let store = federation().await;
    let live = Live::fixed(1);
    let t0 = SystemTime::now();
    for (i, lag) in [0.0, 2.0, 0.5].into_iter().enumerate() {
        live.record(
            "zone-1",
            Sample {
                at: t0 + std::time::Duration::from_secs(i as u64 * 5),
                global_to_zone_seconds: lag,
                global_to_zone_revisions: i as u64,
                zone_to_global_seconds: 0.0,
                zone_to_global_revisions: 0,
            },
        );
    }
    let app = app_with(store, CpMode::Global, "", live);
    let (status, _, body) = get(&app, "/gui/zones/zone-1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("global-1"),
        "the global instance of the subscription"
    );
    assert!(
        body.contains("broken-route") && body.contains("spec.conf.destination: must not be empty")
    );
    assert!(body.contains("3 samples over 10s"), "{body}");
    assert!(body.contains("<polyline class=\"series-g2z\""));
    let (status, _, body) = get(&app, "/gui/zones/nowhere").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body.contains("There is no zone &#34;nowhere&#34;."),
        "{body}"
    );
}

#[tokio::test]
async fn hostile_names_and_labels_are_escaped_everywhere() {
    let hostile = r#"<script>alert("x")</script>"#;
    let mut dp = builders::dataplane("default", "evil", "10.0.0.9", &[(8080, hostile)]);
    dp.meta
        .labels
        .insert(labels::ZONE.into(), format!("z{hostile}"));
    let mut zone = builders::zone("zone-x");
    zone.meta.labels.insert("note".into(), hostile.into());
    let store = store_with(vec![builders::mesh("default"), dp, zone]).await;
    let app = app(store, CpMode::Global, "");
    for path in [
        "/gui",
        "/gui/services",
        "/gui/dataplanes",
        "/gui/meshes/default",
        "/gui/meshes/default/dataplanes/evil",
        &format!("/gui/dataplanes?service={}", "%3Cscript%3E"),
    ] {
        let (status, _, body) = get(&app, path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(!body.contains("<script>alert"), "{path}: {body}");
    }
    let (_, _, body) = get(&app, "/gui/dataplanes").await;
    assert!(
        body.contains("&#60;script&#62;alert(&#34;x&#34;)&#60;/script&#62;"),
        "{body}"
    );
    // A hostile path is echoed escaped in the 404 page too.
    let (status, _, body) = get(&app, "/gui/zones/%3Cscript%3Ealert(1)%3C%2Fscript%3E").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!body.contains("<script>alert"), "{body}");
}

#[tokio::test]
async fn the_dataplane_list_filters_and_links_to_a_detail_with_the_last_nack() {
    let app = app(federation().await, CpMode::Global, "");
    let (status, _, body) = get(&app, "/gui/dataplanes?zone=zone-2&status=online").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(r#"data-dataplane="default/backend-1""#));
    assert!(
        !body.contains(r#"data-dataplane="default/backend-2""#),
        "offline filtered out"
    );
    assert!(
        !body.contains(r#"data-dataplane="default/frontend-1""#),
        "zone-1 filtered out"
    );
    assert!(body.contains("1 of 3 dataplanes."));
    assert!(body.contains(r#"href="/gui/meshes/default/dataplanes/backend-1""#));
    // A parameter that does not parse is refused, naming it.
    let (status, _, body) = get(&app, "/gui/dataplanes?zone=zone-2&offset=abc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("offset"), "{body}");
    assert!(body.contains("The dataplane filter is not valid"), "{body}");
    // An unknown filter value matches nothing rather than failing.
    let (status, _, body) = get(&app, "/gui/dataplanes?status=sideways").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("0 of 3 dataplanes."));

    let (status, _, body) = get(&app, "/gui/meshes/default/dataplanes/backend-1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("10.0.0.1:8080"), "the inbound");
    assert!(body.contains("kuma.io/service=backend"), "the tags");
    assert!(body.contains("duplicate listener name"), "the last NACK");
    assert!(body.contains("zone-2-cp"), "the xDS stream's control plane");
    let (status, _, _) = get(&app, "/gui/meshes/default/dataplanes/nobody").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn services_show_instances_per_zone_and_the_ingress_that_carries_them() {
    let app = app(federation().await, CpMode::Global, "");
    let (status, _, body) = get(&app, "/gui/services").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains(r#"<tr data-service="backend" data-zone="zone-2">"#),
        "{body}"
    );
    assert!(body.contains("2 (1)"), "two instances, one online");
    assert!(body.contains("zone-2-ingress (192.0.2.1:10001)"));
}

#[tokio::test]
async fn a_zone_counts_other_zones_services_from_their_ingresses() {
    // On zone-1: its own frontend, and zone-2's backend known only through zone-2's ingress.
    let mut resources = vec![
        builders::mesh("default"),
        ingress("zone-2", "zone-2-ingress", &[("backend", 3)]),
    ];
    let mut local = synced_dataplane("zone-1", "frontend-1", "frontend", true);
    local[0].meta.labels.clear();
    resources.extend(local);
    let app = app(store_with(resources).await, CpMode::FederatedZone, "zone-1");
    let (_, _, body) = get(&app, "/gui/services").await;
    assert!(
        body.contains(r#"<tr data-service="frontend" data-zone="zone-1">"#),
        "{body}"
    );
    assert!(body.contains(r#"<tr data-service="backend" data-zone="zone-2">"#));
    assert!(body.contains("3 (3)"));
    let (_, _, body) = get(&app, "/gui").await;
    assert!(body.contains("Zone control plane · zone-1 (federated)"));
    assert!(body.contains(r#"data-kind="global" data-name="global" data-status="offline""#));
    assert!(body.contains(r#"data-kind="zone" data-name="zone-2" data-status="unknown""#));
}

#[tokio::test]
async fn policies_are_listed_by_type_with_their_yaml_and_inline_keys_are_redacted() {
    let mesh = model::format::from_json_value(&serde_json::json!({
        "type": "Mesh",
        "name": "secure",
        "mtls": {
            "enabledBackend": "ca-1",
            "backends": [{
                "name": "ca-1",
                "type": "provided",
                "conf": {
                    "cert": {"inlineString": "-----BEGIN CERTIFICATE-----"},
                    "key": {"inlineString": "-----BEGIN PRIVATE KEY----- do not show"}
                }
            }]
        }
    }))
    .expect("mesh");
    let store = store_with(vec![
        mesh,
        builders::traffic_permission("secure", "allow-frontend", "frontend", "backend"),
    ])
    .await;
    let app = app(store, CpMode::Global, "");
    let (status, _, body) = get(&app, "/gui/policies/traffic-permissions").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains(r#"data-policy="secure/allow-frontend""#),
        "{body}"
    );
    let (status, _, body) = get(
        &app,
        "/gui/meshes/secure/policies/traffic-permissions/allow-frontend",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("kuma.io/service: frontend"), "{body}");
    let (status, _, body) = get(&app, "/gui/meshes/secure").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("ca-1 (provided)"));
    assert!(!body.contains("do not show"), "{body}");
    assert!(body.contains("&#60;redacted&#62;"));
    assert_eq!(
        get(&app, "/gui/policies/secrets").await.0,
        StatusCode::NOT_FOUND,
        "secrets are not a policy type the GUI lists"
    );
    assert_eq!(
        get(&app, "/gui/nothing/here").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn assets_and_the_event_stream_are_served() {
    let app = app(store_with(vec![]).await, CpMode::Global, "");
    let (status, content_type, body) = get(&app, "/gui/static/style.css").await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::OK, "text/css; charset=utf-8")
    );
    assert!(body.contains("svg.topology"));
    let (status, content_type, body) = get(&app, "/gui/static/live.js").await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/javascript"));
    assert!(body.contains("EventSource"));

    let response = app
        .clone()
        .oneshot(
            Request::get("/gui/events")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.as_bytes()),
        Some(&b"text/event-stream"[..])
    );
    let mut body = response.into_body().into_data_stream();
    use futures::StreamExt;
    let first = tokio::time::timeout(std::time::Duration::from_secs(5), body.next())
        .await
        .expect("an event at once")
        .expect("a chunk")
        .expect("bytes");
    let text = String::from_utf8_lossy(&first);
    assert!(
        text.contains("event: revision") && text.contains("data: 7"),
        "{text}"
    );
}

#[tokio::test]
async fn live_follows_the_change_feed_and_samples_zone_lag() {
    let store = store_with(vec![builders::zone("zone-1")]).await;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let live = Live::start(store.clone(), stop);
    let before = store.revision().await.expect("revision");
    store
        .create(zone_insight("zone-1", true), None)
        .await
        .expect("insight");
    // The follower records a sample before it publishes the revision that brought it.
    tokio::time::timeout(std::time::Duration::from_secs(10), live.passed(before))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "live saw revision {} (store at {before}+1), {} samples",
                live.revision(),
                live.history("zone-1").len()
            )
        });
    assert!(!live.history("zone-1").is_empty(), "no lag sample");
    assert_eq!(live.history("zone-1")[0].global_to_zone_revisions, 3);
    let _ = stop_tx.send(true);
}

#[tokio::test]
async fn the_dataplane_list_pages_and_keeps_its_filter_in_the_links() {
    let mut resources = vec![builders::mesh("default")];
    for i in 0..250 {
        resources.extend(synced_dataplane(
            "zone-1",
            &format!("web-{i:03}"),
            "web",
            true,
        ));
    }
    resources.extend(synced_dataplane("zone-2", "api-1", "api", true));
    let app = app(store_with(resources).await, CpMode::Global, "");
    let (status, _, body) = get(&app, "/gui/dataplanes?zone=zone-1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("250 of 251 dataplanes, showing 1–100."),
        "{body}"
    );
    assert_eq!(body.matches("<tr data-dataplane=").count(), 100);
    assert!(
        body.contains(r#"<a href="/gui/dataplanes?zone=zone-1&#38;offset=100" rel="next">"#),
        "{body}"
    );
    assert!(!body.contains(r#"rel="prev""#));
    let (_, _, body) = get(&app, "/gui/dataplanes?zone=zone-1&offset=200").await;
    assert!(body.contains("showing 201–250."), "{body}");
    assert_eq!(body.matches("<tr data-dataplane=").count(), 50);
    assert!(body.contains(r#"<tr data-dataplane="default/web-249""#));
    assert!(body.contains(r#"href="/gui/dataplanes?zone=zone-1&#38;offset=100" rel="prev""#));
    assert!(!body.contains(r#"rel="next""#));
    // Past the end: the first page.
    let (_, _, body) = get(&app, "/gui/dataplanes?zone=zone-1&offset=9999").await;
    assert!(body.contains("showing 1–100."));
}

#[tokio::test]
async fn the_event_stream_ends_when_the_control_plane_stops() {
    // An open page must not hold a stopping control plane (graceful shutdown waits for
    // every response to finish).
    let store = store_with(vec![]).await;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let live = Live::start(store, stop);
    let app = app_with(store_with(vec![]).await, CpMode::Global, "", live);
    let response = app
        .oneshot(
            Request::get("/gui/events")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    let mut body = response.into_body().into_data_stream();
    use futures::StreamExt;
    let first = tokio::time::timeout(std::time::Duration::from_secs(5), body.next()).await;
    assert!(matches!(first, Ok(Some(Ok(_)))), "the first event");
    let _ = stop_tx.send(true);
    let rest = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Some(chunk) = body.next().await {
            chunk.expect("chunk");
        }
    })
    .await;
    assert!(rest.is_ok(), "the stream did not end after stop");
}

#[tokio::test]
async fn a_standalone_zone_shows_itself_without_a_global() {
    let mut resources = vec![builders::mesh("default")];
    resources.extend(synced_dataplane("zone-a", "web-1", "web", true));
    resources[1].meta.labels.clear();
    let app = app(store_with(resources).await, CpMode::Standalone, "zone-a");
    let (status, _, body) = get(&app, "/gui").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Zone control plane · zone-a (standalone)"));
    assert!(
        body.contains(r#"data-kind="zone" data-name="zone-a" data-status="online""#),
        "{body}"
    );
    assert!(!body.contains(r#"data-kind="global""#), "no global to draw");
    let (status, _, body) = get(&app, "/gui/zones").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(r#"<tr data-zone="zone-a" data-status="online">"#));
    assert!(!body.contains("Link to the global"));
}
