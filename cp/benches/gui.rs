//! GUI page rendering on a memory store holding a federation of two zones with N dataplanes
//! (each with an online DataplaneInsight), an ingress per zone and a few policies, through the
//! GUI router as a browser would request the pages. Baselines in the same run are the REST
//! API answers that read the same resources: `GET /global-insight` (the counts of every
//! dataplane, as the overview needs them) and `GET /meshes/default/dataplanes/_overview` with
//! a page of 100 (the GUI's dataplane list shows pages of 100).
//!
//! Run: `cargo bench -p cp --bench gui`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use envoy_types::pb::google::protobuf::Timestamp;
use model::mesh_pb::{self, DataplaneInsight, DiscoverySubscription};
use model::system_pb::{KdsSubscription, ZoneInsight};
use model::test_util as builders;
use model::{CpMode, Resource, Spec, labels};
use prometheus_client::registry::Registry;
use store::ResourceStore;
use store::memory::MemoryStore;
use tokio::runtime::Runtime;
use tower::ServiceExt;

fn now() -> Timestamp {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Timestamp {
        seconds: secs,
        nanos: 0,
    }
}

fn federation(n: usize) -> Vec<Resource> {
    let mut out = vec![builders::mesh("default")];
    for zone in ["zone-1", "zone-2"] {
        out.push(builders::zone(zone));
        out.push(Resource::new(
            "",
            zone,
            Spec::ZoneInsight(ZoneInsight {
                subscriptions: vec![KdsSubscription {
                    id: format!("{zone}-s"),
                    global_instance_id: "global".into(),
                    connect_time: Some(now()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        ));
        let mut ingress = Resource::new(
            "",
            format!("{zone}-ingress"),
            Spec::ZoneIngress(mesh_pb::ZoneIngress {
                zone: zone.into(),
                networking: Some(mesh_pb::zone_ingress::Networking {
                    address: "10.0.0.1".into(),
                    port: 10001,
                    ..Default::default()
                }),
                available_services: (0..50)
                    .map(|s| mesh_pb::zone_ingress::AvailableService {
                        tags: [(labels::tags::SERVICE.to_string(), format!("svc-{s}"))]
                            .into_iter()
                            .collect(),
                        instances: (n / 100) as u32,
                        mesh: "default".into(),
                        external_service: false,
                    })
                    .collect(),
            }),
        );
        ingress.meta.labels.insert(labels::ZONE.into(), zone.into());
        out.push(ingress);
    }
    for i in 0..n {
        let name = format!("dp-{i}");
        let service = format!("svc-{}", i % 50);
        let mut dp = builders::dataplane("default", &name, "10.1.0.1", &[(8080, &service)]);
        let zone = if i % 2 == 0 { "zone-1" } else { "zone-2" };
        dp.meta.labels.insert(labels::ZONE.into(), zone.into());
        out.push(dp);
        out.push(Resource::new(
            "default",
            &name,
            Spec::DataplaneInsight(DataplaneInsight {
                subscriptions: vec![DiscoverySubscription {
                    id: "s".into(),
                    control_plane_instance_id: "cp".into(),
                    connect_time: Some(now()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        ));
    }
    for p in 0..20 {
        out.push(builders::traffic_permission(
            "default",
            &format!("tp-{p}"),
            "svc-1",
            "svc-2",
        ));
    }
    out
}

struct Apps {
    gui: Router,
    api: Router,
}

async fn apps(n: usize) -> Apps {
    let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
    for r in federation(n) {
        store.create(r, None).await.expect("create");
    }
    let gui = cp::gui::router(cp::gui::GuiState {
        store: store.clone(),
        live: cp::gui::Live::fixed(1),
        settings: Arc::new(cp::gui::GuiSettings {
            base: "/gui".into(),
            mode: CpMode::Global,
            zone: String::new(),
            version: "bench".into(),
        }),
        link: None,
    });
    let mut registry = Registry::default();
    let api = cp::api::router(cp::api::ApiState::new(
        store.clone(),
        Arc::new(cp::tokens::UserTokenAuthenticator::new(store.clone())),
        cp::api::ApiMetrics::register(&mut registry),
        cp::api::ApiSettings::new(
            CpMode::Global,
            cp::api::ServerInfo::new("bench", "bench", "cluster", "/gui"),
        ),
    ));
    Apps { gui, api }
}

async fn fetch(app: &Router, path: &str) -> usize {
    let response = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    axum::body::to_bytes(response.into_body(), 256 << 20)
        .await
        .expect("body")
        .len()
}

fn bench(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let mut group = c.benchmark_group("gui");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    for n in [1_000usize, 10_000] {
        let apps = rt.block_on(apps(n));
        let pages: [(&str, &Router, &str); 5] = [
            ("gui_overview", &apps.gui, "/gui"),
            ("api_global_insight(baseline)", &apps.api, "/global-insight"),
            ("gui_dataplanes_page", &apps.gui, "/gui/dataplanes"),
            (
                "api_dataplanes_overview_page(baseline)",
                &apps.api,
                "/meshes/default/dataplanes/_overview?size=100",
            ),
            (
                "gui_dataplanes_filtered",
                &apps.gui,
                "/gui/dataplanes?zone=zone-1&service=svc-2",
            ),
        ];
        for (name, app, path) in pages {
            let bytes = rt.block_on(fetch(app, path));
            eprintln!("{name} at {n} dataplanes: {bytes} bytes");
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.to_async(&rt).iter(|| fetch(app, path));
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
