//! KDS over real gRPC on loopback, global and zone in one process with memory stores: the
//! rules that are about one message or one resource (version skew, identity, size limit, a
//! resource the zone cannot store, a disabled zone). Multi-process runs with SQLite and
//! PostgreSQL are in the e2e crate.

use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use kds::global::{GlobalKds, GlobalSettings, NoAuthentication};
use kds::zone::ZoneSettings;
use kds_proto::mesh::v1alpha1::kds_sync_service_client::KdsSyncServiceClient;
use kds_proto::system::v1alpha1 as system_pb;
use model::{Resource, ResourceKey, ResourceType, Spec, test_util};
use prometheus_client::registry::Registry;
use store::memory::MemoryStore;
use store::{ListQuery, ResourceStore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Request;

struct Global {
    store: Arc<dyn ResourceStore>,
    port: u16,
    kds: GlobalKds,
}

async fn start_global(max_message_bytes: usize) -> Global {
    start_global_with(max_message_bytes, Duration::from_secs(30)).await
}

async fn start_global_with(max_message_bytes: usize, stall_timeout: Duration) -> Global {
    start_global_auth(max_message_bytes, stall_timeout, Arc::new(NoAuthentication)).await
}

async fn start_global_auth(
    max_message_bytes: usize,
    stall_timeout: Duration,
    auth: Arc<dyn kds::global::ZoneAuthenticator>,
) -> Global {
    let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
    store
        .create(test_util::mesh("default"), None)
        .await
        .expect("mesh");
    let settings = GlobalSettings {
        instance_id: "test-global".into(),
        version: "1.4.0".into(),
        max_message_bytes,
        stall_timeout,
        health_interval: Duration::from_millis(200),
        health_timeout: Duration::from_secs(5),
        flush_interval: Duration::from_millis(100),
        public_key: None,
    };
    let mut registry = Registry::default();
    let (kds, _task) = GlobalKds::start(store.clone(), settings, auth, &mut registry)
        .await
        .expect("start");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let router = kds::transport::server_builder()
        .add_service(kds.sync_service())
        .add_service(kds.health_service());
    tokio::spawn(kds::transport::serve(
        router,
        listener,
        None,
        std::future::pending(),
    ));
    Global { store, port, kds }
}

async fn start_zone(global: &Global, zone: &str, store: Arc<dyn ResourceStore>) {
    start_zone_with(global, zone, store, None).await;
}

async fn start_zone_with(
    global: &Global,
    zone: &str,
    store: Arc<dyn ResourceStore>,
    token_path: Option<std::path::PathBuf>,
) {
    let settings = ZoneSettings {
        zone: zone.into(),
        host: "127.0.0.1".into(),
        port: global.port,
        tls: None,
        token: None,
        token_path,
        version: "1.4.0".into(),
        instance_id: format!("{zone}-cp"),
        config_json: "{}".into(),
        max_message_bytes: 10 * 1024 * 1024,
        stall_timeout: Duration::from_secs(30),
        base_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
    };
    let mut registry = Registry::default();
    kds::zone::start(store, settings, &mut registry, std::future::pending())
        .await
        .expect("zone");
}

/// Polls `check` until it returns `Some`, failing after 10 s.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn secret(name: &str, data: &[u8]) -> Resource {
    test_util::secret("default", name, data)
}

async fn names(store: &dyn ResourceStore, kind: ResourceType) -> Vec<String> {
    store
        .list(&ListQuery::all(kind))
        .await
        .expect("list")
        .items
        .into_iter()
        .map(|r| r.meta.name)
        .collect()
}

async fn insight(store: &dyn ResourceStore, zone: &str) -> Option<system_pb::ZoneInsight> {
    match store
        .get(&ResourceKey::global(ResourceType::ZoneInsight, zone))
        .await
        .ok()?
        .spec
    {
        Spec::ZoneInsight(i) => Some(i),
        _ => None,
    }
}

/// Opens GlobalToZoneSync with the given metadata and returns the status it ends with.
async fn open_with(port: u16, metadata: &[(&'static str, &str)]) -> tonic::Status {
    let channel = kds::transport::dial("127.0.0.1", port, None)
        .await
        .expect("dial");
    let mut client = KdsSyncServiceClient::new(channel);
    let (_tx, rx) = tokio::sync::mpsc::channel::<DeltaDiscoveryRequest>(1);
    let mut request = Request::new(ReceiverStream::new(rx));
    for (k, v) in metadata {
        request.metadata_mut().insert(*k, v.parse().expect("ascii"));
    }
    match client.global_to_zone_sync(request).await {
        Err(status) => status,
        Ok(_) => panic!("the stream was accepted"),
    }
}

#[tokio::test]
async fn a_zone_newer_than_the_global_is_refused_naming_both_versions() {
    let global = start_global(1 << 20).await;
    let status = open_with(
        global.port,
        &[("client-id", "zone-1"), ("version", "1.6.0")],
    )
    .await;
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(
        status.message().contains("1.6.0") && status.message().contains("1.4.0"),
        "{}",
        status.message()
    );
    let old = open_with(
        global.port,
        &[("client-id", "zone-1"), ("version", "1.1.0")],
    )
    .await;
    assert_eq!(old.code(), tonic::Code::FailedPrecondition);
    assert!(old.message().contains("behind"), "{}", old.message());
}

#[tokio::test]
async fn a_connection_without_client_id_is_refused() {
    let global = start_global(1 << 20).await;
    let status = open_with(global.port, &[("version", "1.4.0")]).await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("client-id"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn a_disabled_zone_is_refused() {
    let global = start_global(1 << 20).await;
    let mut zone = test_util::zone("zone-off");
    if let Spec::Zone(z) = &mut zone.spec {
        z.enabled = Some(envoy_types::pb::google::protobuf::BoolValue { value: false });
    }
    global.store.create(zone, None).await.expect("zone");
    let status = open_with(
        global.port,
        &[("client-id", "zone-off"), ("version", "1.4.0")],
    )
    .await;
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(
        status.message().contains("disabled"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn a_resource_the_zone_cannot_store_is_rejected_alone_and_reported_once() {
    let global = start_global(1 << 20).await;
    let zone_store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
    zone_store
        .create(test_util::mesh("default"), None)
        .await
        .expect("mesh");
    // a zone-local secret: the global's secret of the same name must not overwrite it
    zone_store
        .create(secret("clash", b"zone's own"), None)
        .await
        .expect("local secret");
    global
        .store
        .create(secret("clash", b"global's"), None)
        .await
        .expect("secret");
    global
        .store
        .create(secret("fine", b"ok"), None)
        .await
        .expect("secret");
    start_zone(&global, "zone-1", zone_store.clone()).await;

    eventually("the fine secret in the zone", || {
        let store = zone_store.clone();
        async move {
            names(store.as_ref(), ResourceType::Secret)
                .await
                .contains(&"fine".to_string())
                .then_some(())
        }
    })
    .await;
    let kept = zone_store
        .get(&ResourceKey::new(ResourceType::Secret, "default", "clash"))
        .await
        .expect("clash");
    assert!(!kept.meta.labels.contains_key(model::labels::ORIGIN));

    // a later change still flows, and the rejection is recorded once
    global
        .store
        .create(
            test_util::traffic_permission("default", "later", "a", "b"),
            None,
        )
        .await
        .expect("tp");
    let hashed = model::hash::hashed_name("default", "later", &[]);
    eventually("the later policy in the zone", || {
        let store = zone_store.clone();
        let hashed = hashed.clone();
        async move {
            names(store.as_ref(), ResourceType::TrafficPermission)
                .await
                .contains(&hashed)
                .then_some(())
        }
    })
    .await;
    let rejections = eventually("the rejection in the zone insight", || {
        let store = global.store.clone();
        async move {
            let i = insight(store.as_ref(), "zone-1").await?;
            let r = i.kds_sync?.rejections;
            (!r.is_empty()).then_some(r)
        }
    })
    .await;
    assert_eq!(rejections.len(), 1, "{rejections:?}");
    assert_eq!(rejections[0].r#type, "Secret");
    assert_eq!(rejections[0].name, "clash");
    assert_eq!(rejections[0].direction, "globalToZone");
    assert!(!rejections[0].version.is_empty());
    assert!(
        rejections[0].reason.contains("already exists"),
        "{}",
        rejections[0].reason
    );
    assert_eq!(global.kds.connected_zones(), vec!["zone-1".to_string()]);
}

#[tokio::test]
async fn a_resource_over_the_size_limit_is_not_sent_and_is_reported() {
    let global = start_global(16 * 1024).await;
    global
        .store
        .create(secret("huge", &vec![b'x'; 32 * 1024]), None)
        .await
        .expect("huge");
    for i in 0..40 {
        global
            .store
            .create(secret(&format!("small-{i:02}"), &[b'y'; 1024]), None)
            .await
            .expect("small");
    }
    let zone_store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
    start_zone(&global, "zone-1", zone_store.clone()).await;
    // 40 KiB of small secrets do not fit one 16 KiB message: they arrive split
    eventually("the small secrets", || {
        let store = zone_store.clone();
        async move { (names(store.as_ref(), ResourceType::Secret).await.len() == 40).then_some(()) }
    })
    .await;
    assert!(
        !names(zone_store.as_ref(), ResourceType::Secret)
            .await
            .contains(&"huge".to_string())
    );
    let rejection = eventually("the size rejection", || {
        let store = global.store.clone();
        async move {
            let i = insight(store.as_ref(), "zone-1").await?;
            i.kds_sync?
                .rejections
                .into_iter()
                .find(|r| r.name == "huge")
        }
    })
    .await;
    assert!(rejection.reason.contains("bytes"), "{}", rejection.reason);
    assert!(
        rejection.reason.contains("maxMsgSize"),
        "{}",
        rejection.reason
    );
}

#[tokio::test]
async fn zone_resources_reach_the_global_and_deletes_follow_both_ways() {
    let global = start_global(1 << 20).await;
    let zone_store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
    zone_store
        .create(test_util::mesh("default"), None)
        .await
        .expect("mesh");
    start_zone(&global, "zone-1", zone_store.clone()).await;
    zone_store
        .create(
            test_util::dataplane("default", "web-1", "10.0.0.1", &[(80, "web")]),
            None,
        )
        .await
        .expect("dp");
    let synced = model::hash::hashed_name("default", "web-1", &["zone-1"]);
    let dp_key = ResourceKey::new(ResourceType::Dataplane, "default", synced.clone());
    let on_global = eventually("the dataplane on the global", || {
        let store = global.store.clone();
        let key = dp_key.clone();
        async move { store.get(&key).await.ok() }
    })
    .await;
    assert_eq!(on_global.meta.labels[model::labels::ZONE], "zone-1");
    assert_eq!(on_global.meta.labels[model::labels::ORIGIN], "zone");

    zone_store
        .delete(&ResourceKey::new(
            ResourceType::Dataplane,
            "default",
            "web-1",
        ))
        .await
        .expect("delete");
    eventually("the dataplane gone from the global", || {
        let store = global.store.clone();
        let key = dp_key.clone();
        async move { store.get(&key).await.is_err().then_some(()) }
    })
    .await;

    global
        .store
        .create(
            test_util::traffic_permission("default", "tp", "a", "b"),
            None,
        )
        .await
        .expect("tp");
    let hashed = model::hash::hashed_name("default", "tp", &[]);
    let tp_key = ResourceKey::new(ResourceType::TrafficPermission, "default", hashed);
    eventually("the policy in the zone", || {
        let store = zone_store.clone();
        let key = tp_key.clone();
        async move { store.get(&key).await.ok() }
    })
    .await;
    global
        .store
        .delete(&ResourceKey::new(
            ResourceType::TrafficPermission,
            "default",
            "tp",
        ))
        .await
        .expect("delete");
    eventually("the policy gone from the zone", || {
        let store = zone_store.clone();
        let key = tp_key.clone();
        async move { store.get(&key).await.is_err().then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn a_zone_that_stops_acknowledging_is_torn_down_and_counted() {
    use futures::StreamExt;
    let global = start_global_with(1 << 20, Duration::from_millis(300)).await;
    let channel = kds::transport::dial("127.0.0.1", global.port, None)
        .await
        .expect("dial");
    let mut client = KdsSyncServiceClient::new(channel);
    let (tx, rx) = tokio::sync::mpsc::channel::<DeltaDiscoveryRequest>(4);
    let mut request = Request::new(ReceiverStream::new(rx));
    request
        .metadata_mut()
        .insert("client-id", "zone-1".parse().expect("ascii"));
    request
        .metadata_mut()
        .insert("version", "1.4.0".parse().expect("ascii"));
    // subscribe to meshes, then never acknowledge the response
    tx.send(DeltaDiscoveryRequest {
        type_url: kds::wire::type_url(ResourceType::Mesh).into(),
        resource_names_subscribe: vec!["*".into()],
        ..Default::default()
    })
    .await
    .expect("send");
    let mut responses = client
        .global_to_zone_sync(request)
        .await
        .expect("accepted")
        .into_inner();
    let first = responses.next().await.expect("a response").expect("ok");
    assert_eq!(first.resources.len(), 1, "the default mesh");
    let ended = tokio::time::timeout(Duration::from_secs(10), responses.next())
        .await
        .expect("the stream ends")
        .expect("with a status");
    let status = ended.expect_err("an error status");
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
    assert!(status.message().contains("stalled"), "{}", status.message());
    drop(tx);
    let stalls = eventually("the stall in the zone insight", || {
        let store = global.store.clone();
        async move {
            let stalls = insight(store.as_ref(), "zone-1").await?.kds_sync?.stalls;
            (stalls > 0).then_some(stalls)
        }
    })
    .await;
    assert_eq!(stalls, 1);
}

/// Accepts exactly one token, for zone-1 (a stand-in for the zone-token authenticator, which
/// is tested in cp).
struct OnlyToken(&'static str, Arc<std::sync::atomic::AtomicUsize>);

#[async_trait::async_trait]
impl kds::global::ZoneAuthenticator for OnlyToken {
    async fn authenticate(&self, client_id: &str, token: Option<&str>) -> Result<String, String> {
        match token {
            Some(t) if t == self.0 && client_id == "zone-1" => Ok("zone-1".into()),
            _ => {
                self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Err("not the expected token".into())
            }
        }
    }
}

#[tokio::test]
async fn a_rotated_token_file_is_read_again_on_reconnect() {
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let global = start_global_auth(
        1 << 20,
        Duration::from_secs(30),
        Arc::new(OnlyToken("second", refused.clone())),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("zone-1.token");
    std::fs::write(&token, "first\n").expect("write");
    let zone_store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
    start_zone_with(&global, "zone-1", zone_store, Some(token.clone())).await;
    // refused with the old token, on several reconnects
    eventually("two refused attempts", || {
        let n = refused.load(std::sync::atomic::Ordering::SeqCst);
        async move { (n >= 2).then_some(()) }
    })
    .await;
    assert!(
        global.kds.connected_zones().is_empty(),
        "accepted with the wrong token"
    );
    std::fs::write(&token, "second\n").expect("rotate");
    eventually("the zone connected with the rotated token", || {
        let zones = global.kds.connected_zones();
        async move { (zones == vec!["zone-1".to_string()]).then_some(()) }
    })
    .await;
}
