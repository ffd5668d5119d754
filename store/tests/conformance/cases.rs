//! The cases every backend must pass, written against `ResourceStore` only.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use model::{Resource, ResourceKey, ResourceType, Spec};
use serde_json::json;
use store::{
    Action, ChangeEvent, ChangeFeed, ListPage, ListQuery, Op, ResourceStore, Revision, StoreError,
};

use crate::harness::{DEADLINE, Harness, eventually};

// ---- resources -------------------------------------------------------------------------

pub fn spec(kind: ResourceType, value: serde_json::Value) -> Spec {
    Spec::from_json(kind, &value, true).unwrap_or_else(|e| panic!("test spec: {e}"))
}

pub fn mesh(name: &str) -> Resource {
    Resource::new("", name, Spec::default_for(ResourceType::Mesh))
}

pub fn zone(name: &str) -> Resource {
    Resource::new("", name, Spec::default_for(ResourceType::Zone))
}

pub fn dataplane(mesh: &str, name: &str, port: u32) -> Resource {
    let spec = spec(
        ResourceType::Dataplane,
        json!({
            "networking": {
                "address": "10.0.0.1",
                "inbound": [
                    {"port": port, "tags": {"kuma.io/service": name, "kuma.io/protocol": "http"}},
                    {"port": port + 1, "tags": {"kuma.io/service": format!("{name}-admin")}}
                ]
            }
        }),
    );
    Resource::new(mesh, name, spec)
}

pub fn route(mesh: &str, name: &str) -> Resource {
    Resource::new(mesh, name, Spec::default_for(ResourceType::TrafficRoute))
}

pub fn dataplane_insight(mesh: &str, name: &str) -> Resource {
    Resource::new(
        mesh,
        name,
        Spec::default_for(ResourceType::DataplaneInsight),
    )
}

// ---- feed helpers ----------------------------------------------------------------------

/// The next `n` events of `feed`, passing over `Unavailable` interruptions.
pub async fn take_events(feed: &mut ChangeFeed, n: usize) -> Vec<ChangeEvent> {
    let mut events = Vec::with_capacity(n);
    while events.len() < n {
        match tokio::time::timeout(DEADLINE, feed.next()).await {
            Err(_) => panic!(
                "timed out waiting for event {} of {n}; got {events:?}",
                events.len() + 1
            ),
            Ok(None) => panic!("feed ended after {events:?}"),
            Ok(Some(Ok(event))) => events.push(event),
            Ok(Some(Err(e))) if e.is_transient() => {}
            Ok(Some(Err(e))) => panic!("feed failed: {e}"),
        }
    }
    events
}

/// The first item of a feed that is not an `Unavailable` interruption.
pub async fn first_item(feed: &mut ChangeFeed) -> Result<ChangeEvent, StoreError> {
    loop {
        match tokio::time::timeout(DEADLINE, feed.next()).await {
            Err(_) => panic!("timed out waiting for the feed"),
            Ok(None) => panic!("feed ended"),
            Ok(Some(Err(e))) if e.is_transient() => {}
            Ok(Some(item)) => return item,
        }
    }
}

fn assert_consecutive(events: &[ChangeEvent], first: Revision) {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e.revision,
            first + i as u64,
            "revisions must be consecutive: {events:?}"
        );
    }
}

/// The next events of `feed`: they must be `want` (action and key, in order) at consecutive
/// revisions from `first`.
async fn expect_events(
    feed: &mut ChangeFeed,
    first: Revision,
    want: &[(Action, ResourceKey)],
) -> Vec<ChangeEvent> {
    let events = take_events(feed, want.len()).await;
    assert_consecutive(&events, first);
    let got: Vec<(Action, ResourceKey)> = events.iter().map(|e| (e.action, e.key())).collect();
    assert_eq!(got, want);
    events
}

/// The value of a store call that must succeed; a failure panics, naming `what` was done.
fn ok<T>(what: impl Display, result: Result<T, StoreError>) -> T {
    result.unwrap_or_else(|e| panic!("{what}: {e}"))
}

async fn create(store: &Arc<dyn ResourceStore>, r: Resource) -> Resource {
    let what = format!("creating {}", r.key());
    ok(what, store.create(r, None).await)
}

async fn create_owned(store: &Arc<dyn ResourceStore>, r: Resource, owner: &Resource) -> Resource {
    let what = format!("creating {}", r.key());
    ok(what, store.create(r, Some(owner.key())).await)
}

async fn list(store: &Arc<dyn ResourceStore>, query: &ListQuery) -> ListPage {
    ok(format!("listing {query:?}"), store.list(query).await)
}

/// (items on the page, total, next offset).
fn counts(page: &ListPage) -> (usize, usize, Option<usize>) {
    (page.items.len(), page.total, page.next_offset)
}

async fn assert_gone<const N: usize>(store: &Arc<dyn ResourceStore>, gone: [&Resource; N]) {
    for r in gone {
        assert!(
            matches!(store.get(&r.key()).await, Err(StoreError::NotFound(_))),
            "{} should be gone",
            r.key()
        );
    }
}

/// A create without owner, for a batch.
fn create_op(resource: Resource) -> Op {
    Op::Create {
        resource,
        owner: None,
    }
}

// ---- CRUD ------------------------------------------------------------------------------

pub async fn crud_roundtrip(h: &Harness) {
    let store = h.open().await;
    let input =
        dataplane("default", "web-1", 8080).with_labels([("team", "a"), ("kuma.io/zone", "z1")]);
    let created = create(&store, input.clone()).await;
    assert_eq!(created.meta.version, 1);
    assert_eq!(created.meta.labels, input.meta.labels);
    assert_eq!(created.spec, input.spec);
    assert_eq!(created.meta.creation_time, created.meta.modification_time);
    assert!(created.meta.creation_time > time::OffsetDateTime::UNIX_EPOCH);

    let got = ok("get", store.get(&created.key()).await);
    assert_eq!(got, created);

    let mut changed = got.clone();
    changed.spec = dataplane("default", "web-1", 9090).spec;
    changed.meta.labels.insert("team".into(), "b".into());
    let updated = ok("update", store.update(changed.clone()).await);
    assert_eq!(updated.meta.version, 2);
    assert_eq!(updated.spec, changed.spec);
    assert_eq!(
        updated.meta.labels.get("team").map(String::as_str),
        Some("b")
    );
    assert_eq!(updated.meta.creation_time, created.meta.creation_time);
    assert!(updated.meta.modification_time >= created.meta.modification_time);
    assert_eq!(ok("get", store.get(&created.key()).await), updated);

    let stored = ok("get_stored", store.get_stored(&created.key()).await);
    let stored = stored.unwrap_or_else(|| panic!("get_stored found nothing"));
    assert_eq!(stored.resource, updated);
    assert_eq!(stored.revision, 2);

    ok("delete", store.delete(&created.key()).await);
    assert!(
        matches!(store.get(&created.key()).await, Err(StoreError::NotFound(k)) if k == created.key())
    );
    assert!(matches!(
        store.delete(&created.key()).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.update(updated).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.get_stored(&created.key()).await.ok(), Some(None));
}

pub async fn global_scope_has_no_mesh(h: &Harness) {
    let store = h.open().await;
    let mut z = zone("zone-1");
    z.meta.mesh = "ignored".into();
    let created = create(&store, z).await;
    assert_eq!(created.meta.mesh, "");
    let got = store
        .get(&ResourceKey::new(ResourceType::Zone, "whatever", "zone-1"))
        .await;
    assert_eq!(got.ok(), Some(created));
}

pub async fn create_twice_is_already_exists(h: &Harness) {
    let store = h.open().await;
    create(&store, mesh("default")).await;
    let err = store.create(mesh("default"), None).await.err();
    match err {
        Some(StoreError::AlreadyExists(key)) => {
            assert_eq!(key, ResourceKey::global(ResourceType::Mesh, "default"));
            assert!(
                StoreError::AlreadyExists(key)
                    .to_string()
                    .contains("\"default\"")
            );
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    // Same name in another mesh or of another type is fine.
    create(&store, route("m1", "x")).await;
    create(&store, route("m2", "x")).await;
    create(&store, dataplane("m1", "x", 80)).await;
    assert!(matches!(
        store.create(route("m1", "x"), None).await,
        Err(StoreError::AlreadyExists(_))
    ));
}

pub async fn stale_update_is_conflict(h: &Harness) {
    let store = h.open().await;
    let v1 = create(&store, route("default", "route-1")).await;
    let v2 = ok("update", store.update(v1.clone()).await);
    assert_eq!(v2.meta.version, 2);
    match store.update(v1.clone()).await {
        Err(e @ StoreError::Conflict { .. }) => {
            let message = e.to_string();
            assert!(
                message.contains("route-1") && message.contains("default"),
                "{message}"
            );
            let StoreError::Conflict { key, expected } = e else {
                unreachable!()
            };
            assert_eq!(key, v1.key());
            assert_eq!(expected, 1);
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    let mut future = v2.clone();
    future.meta.version = u64::MAX;
    assert!(matches!(
        store.update(future).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(store.get(&v1.key()).await.ok(), Some(v2));
}

pub async fn concurrent_updates_one_wins(h: &Harness) {
    let store = h.open().await;
    let base = create(&store, route("default", "contended")).await;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            let mut r = base.clone();
            r.meta.labels.insert("writer".into(), i.to_string());
            tokio::spawn(async move { store.update(r).await })
        })
        .collect();
    let mut wins = 0;
    let mut conflicts = 0;
    for task in tasks {
        match task.await.unwrap_or_else(|e| panic!("task: {e}")) {
            Ok(r) => {
                assert_eq!(r.meta.version, 2);
                wins += 1;
            }
            Err(StoreError::Conflict { key, expected: 1 }) if key == base.key() => conflicts += 1,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!((wins, conflicts), (1, 15));
    let stored = ok("get", store.get(&base.key()).await);
    assert_eq!(stored.meta.version, 2);
}

pub async fn owner_must_exist(h: &Harness) {
    let store = h.open().await;
    let owner = ResourceKey::global(ResourceType::Zone, "missing");
    match store
        .create(
            Resource::new("", "missing", Spec::default_for(ResourceType::ZoneInsight)),
            Some(owner.clone()),
        )
        .await
    {
        Err(StoreError::NotFound(k)) => assert_eq!(k, owner),
        other => panic!("expected NotFound(owner), got {other:?}"),
    }
    assert_eq!(store.revision().await.ok(), Some(0));
}

// ---- cascades --------------------------------------------------------------------------

pub async fn deleting_a_mesh_deletes_its_resources(h: &Harness) {
    let store = h.open().await;
    let m1 = create(&store, mesh("m1")).await;
    create(&store, mesh("m2")).await;
    let dp1 = create_owned(&store, dataplane("m1", "dp-1", 80), &m1).await;
    let dp2 = create(&store, dataplane("m1", "dp-2", 80)).await; // no owner: the mesh rule removes it
    let insight = create_owned(&store, dataplane_insight("m1", "dp-1"), &dp1).await;
    let tr = create(&store, route("m1", "route")).await;
    let other = create(&store, dataplane("m2", "dp-1", 80)).await;
    let z = create(&store, zone("z1")).await;
    let before = ok("revision", store.revision().await);

    ok("delete", store.delete(&m1.key()).await);

    assert_gone(&store, [&m1, &dp1, &dp2, &insight, &tr]).await;
    for kept in [&other, &z] {
        assert!(
            store.get(&kept.key()).await.is_ok(),
            "{} should remain",
            kept.key()
        );
    }
    let mut feed = store.changes(before);
    let events = take_events(&mut feed, 5).await;
    assert_consecutive(&events, before + 1);
    assert!(events.iter().all(|e| e.action == Action::Delete));
    assert_eq!(events[0].key(), m1.key(), "the named resource comes first");
    let got: BTreeSet<ResourceKey> = events.iter().map(ChangeEvent::key).collect();
    let want: BTreeSet<ResourceKey> = [&m1, &dp1, &dp2, &insight, &tr]
        .iter()
        .map(|r| r.key())
        .collect();
    assert_eq!(got, want);
    assert_eq!(store.revision().await.ok(), Some(before + 5));
}

pub async fn deleting_an_owner_deletes_what_it_owns(h: &Harness) {
    let store = h.open().await;
    let z = create(&store, zone("z1")).await;
    let zi = create_owned(
        &store,
        Resource::new("", "z1", Spec::default_for(ResourceType::ZoneInsight)),
        &z,
    )
    .await;
    // A three-level chain: zone → dataplane → insight.
    let dp = create_owned(&store, dataplane("default", "dp", 80), &z).await;
    let dpi = create_owned(&store, dataplane_insight("default", "dp"), &dp).await;
    let unrelated = create(&store, zone("z2")).await;
    let before = ok("revision", store.revision().await);

    // Deleting a leaf removes only the leaf.
    ok("delete", store.delete(&dpi.key()).await);
    assert!(store.get(&dp.key()).await.is_ok());
    let dpi = create_owned(&store, dataplane_insight("default", "dp"), &dp).await;

    ok("delete", store.delete(&z.key()).await);
    assert_gone(&store, [&z, &zi, &dp, &dpi]).await;
    assert!(store.get(&unrelated.key()).await.is_ok());
    let mut feed = store.changes(before);
    expect_events(
        &mut feed,
        before + 1,
        &[
            (Action::Delete, dpi.key()),
            (Action::Create, dpi.key()),
            // the named resource first, then by (type, mesh, name)
            (Action::Delete, z.key()),
            (Action::Delete, dp.key()),
            (Action::Delete, dpi.key()),
            (Action::Delete, zi.key()),
        ],
    )
    .await;
}

// ---- lists -----------------------------------------------------------------------------

pub async fn paging_and_sorting(h: &Harness) {
    let store = h.open().await;
    let mut ops = Vec::new();
    // Created out of order, in two meshes.
    for i in (0..25).rev() {
        let mesh = if i % 2 == 0 { "b-mesh" } else { "a-mesh" };
        ops.push(create_op(route(mesh, &format!("route-{i:02}"))));
    }
    ok("apply", store.apply(ops).await);
    create(&store, dataplane("a-mesh", "not-a-route", 80)).await;

    let routes = ListQuery::all(ResourceType::TrafficRoute);
    let all = list(&store, &routes).await;
    assert_eq!(counts(&all), (25, 25, None));
    let order: Vec<(String, String)> = all
        .items
        .iter()
        .map(|r| (r.meta.mesh.clone(), r.meta.name.clone()))
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "sorted by (mesh, name)");
    assert_eq!(order[0], ("a-mesh".to_string(), "route-01".to_string()));

    // (offset, size): (items, total, next offset), and the items are that slice of `all`.
    let pages = [
        ((0, Some(10)), (10, 25, Some(10))),
        ((10, Some(10)), (10, 25, Some(20))),
        ((20, Some(10)), (5, 25, None)),
        ((40, Some(10)), (0, 25, None)),
        ((23, None), (2, 25, None)),
    ];
    for ((offset, size), want) in pages {
        let page = list(
            &store,
            &ListQuery {
                offset,
                size,
                ..routes.clone()
            },
        )
        .await;
        assert_eq!(counts(&page), want, "page at {offset}, size {size:?}");
        let end = all.items.len().min(offset + page.items.len());
        assert_eq!(page.items, all.items[offset.min(end)..end].to_vec());
    }

    let in_mesh = ListQuery {
        size: Some(5),
        ..ListQuery::in_mesh(ResourceType::TrafficRoute, "b-mesh")
    };
    let in_mesh = list(&store, &in_mesh).await;
    assert_eq!(counts(&in_mesh), (5, 13, Some(5)));
    assert!(in_mesh.items.iter().all(|r| r.meta.mesh == "b-mesh"));

    let empty = list(&store, &ListQuery::all(ResourceType::Retry)).await;
    assert_eq!(counts(&empty), (0, 0, None));
}

pub async fn name_and_label_filters(h: &Harness) {
    let store = h.open().await;
    let specs = [
        ("backend-1", "m", [("app", "backend"), ("env", "prod")]),
        ("backend-2", "m", [("app", "backend"), ("env", "dev")]),
        ("frontend-1", "m", [("app", "frontend"), ("env", "prod")]),
        ("backend-3", "n", [("app", "backend"), ("env", "prod")]),
        ("odd%_name", "n", [("app", "x.y/z"), ("env", "prod")]),
    ];
    for (name, mesh, labels) in specs {
        create(&store, dataplane(mesh, name, 80).with_labels(labels)).await;
    }
    let base = ListQuery::all(ResourceType::Dataplane);
    let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let named = |part: &str| ListQuery {
        name_contains: Some(part.into()),
        ..base.clone()
    };
    let labelled = |pairs: &[(&str, &str)]| ListQuery {
        labels: labels(pairs),
        ..base.clone()
    };
    let cases: Vec<(ListQuery, Vec<&str>)> = vec![
        (
            named("backend"),
            vec!["backend-1", "backend-2", "backend-3"],
        ),
        // LIKE wildcards are plain characters.
        (named("%_"), vec!["odd%_name"]),
        (named("_"), vec!["odd%_name"]),
        (named("BACKEND"), vec![]),
        (
            labelled(&[("app", "backend"), ("env", "prod")]),
            vec!["backend-1", "backend-3"],
        ),
        (labelled(&[("app", "x.y/z")]), vec!["odd%_name"]),
        (labelled(&[("missing", "x")]), vec![]),
        (
            ListQuery {
                mesh: Some("m".into()),
                name_contains: Some("-1".into()),
                labels: labels(&[("env", "prod")]),
                ..base.clone()
            },
            vec!["backend-1", "frontend-1"],
        ),
    ];
    for (query, want) in cases {
        let page = list(&store, &query).await;
        assert_eq!(page.total, page.items.len(), "{query:?}");
        let names: Vec<String> = page.items.into_iter().map(|r| r.meta.name).collect();
        assert_eq!(names, want, "{query:?}");
    }
}

// ---- change feed -----------------------------------------------------------------------

pub async fn feed_order_and_resume(h: &Harness) {
    let store = h.open().await;
    assert_eq!(store.revision().await.ok(), Some(0));
    let a = create(&store, route("default", "a")).await;
    let b = create(&store, route("default", "b")).await;
    ok("update", store.update(a.clone()).await);
    ok("delete", store.delete(&b.key()).await);
    assert_eq!(store.revision().await.ok(), Some(4));

    let mut feed = store.changes(0);
    let events = expect_events(
        &mut feed,
        1,
        &[
            (Action::Create, a.key()),
            (Action::Create, b.key()),
            (Action::Update, a.key()),
            (Action::Delete, b.key()),
        ],
    )
    .await;

    // Resume in the middle.
    let mut resumed = store.changes(2);
    let tail = take_events(&mut resumed, 2).await;
    assert_eq!(tail, events[2..].to_vec());

    // Live: both feeds get the next change.
    let c = create(&store, route("default", "c")).await;
    for f in [&mut feed, &mut resumed] {
        expect_events(f, 5, &[(Action::Create, c.key())]).await;
    }
    // From the current revision: nothing old, the next one live.
    let mut from_now = store.changes(5);
    let d = create(&store, route("default", "d")).await;
    let next = take_events(&mut from_now, 1).await;
    assert_eq!((next[0].revision, next[0].key()), (6, d.key()));
}

pub async fn feed_with_concurrent_writers(h: &Harness) {
    let store = h.open().await;
    let mut feed = store.changes(0);
    const WRITERS: usize = 8;
    const EACH: usize = 25;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..EACH {
                    let r = route(&format!("mesh-{w}"), &format!("r-{i}"));
                    ok("create", store.create(r, None).await);
                }
            })
        })
        .collect();
    // Read while they write.
    let events = take_events(&mut feed, WRITERS * EACH).await;
    for t in tasks {
        t.await.unwrap_or_else(|e| panic!("writer: {e}"));
    }
    assert_consecutive(&events, 1);
    let keys: BTreeSet<ResourceKey> = events.iter().map(ChangeEvent::key).collect();
    assert_eq!(keys.len(), WRITERS * EACH, "each create exactly once");
    // Per writer, its creates appear in the order it made them.
    for w in 0..WRITERS {
        let names: Vec<String> = events
            .iter()
            .filter(|e| e.mesh == format!("mesh-{w}"))
            .map(|e| e.name.clone())
            .collect();
        let want: Vec<String> = (0..EACH).map(|i| format!("r-{i}")).collect();
        assert_eq!(names, want);
    }
    assert_eq!(store.revision().await.ok(), Some((WRITERS * EACH) as u64));
}

pub async fn apply_is_atomic(h: &Harness) {
    let store = h.open().await;
    let existing = create(&store, route("default", "existing")).await;
    let before = ok("revision", store.revision().await);

    // The last op fails: nothing of the batch may remain, and no event may be emitted.
    let batch = vec![
        create_op(route("default", "new-1")),
        Op::Update {
            resource: existing.clone(),
        },
        Op::Delete {
            key: existing.key(),
        },
        create_op(route("default", "new-2")),
        create_op(route("default", "new-1")),
    ];
    assert!(
        matches!(store.apply(batch).await, Err(StoreError::AlreadyExists(k)) if k.name == "new-1")
    );
    assert_eq!(store.revision().await.ok(), Some(before));
    assert!(matches!(
        store.get(&route("default", "new-1").key()).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.get(&route("default", "new-2").key()).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.get(&existing.key()).await.ok(),
        Some(existing.clone())
    );
    let stale = vec![
        create_op(route("default", "new-3")),
        Op::Update {
            resource: Resource {
                meta: model::Meta {
                    version: 7,
                    ..existing.meta.clone()
                },
                ..existing.clone()
            },
        },
    ];
    assert!(matches!(
        store.apply(stale).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        store
            .apply(vec![Op::Delete {
                key: route("x", "missing").key()
            }])
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.revision().await.ok(), Some(before));

    // The next event after the failed batches is the marker.
    let marker = create(&store, route("default", "marker")).await;
    let mut feed = store.changes(before);
    let next = take_events(&mut feed, 1).await;
    assert_eq!(
        (next[0].revision, next[0].key()),
        (before + 1, marker.key())
    );

    // A good batch: every op, consecutive revisions in op order, apply returns the last one.
    let good = vec![
        create_op(route("default", "b-1")),
        Op::Update {
            resource: existing.clone(),
        },
        create_op(route("default", "b-2")),
        Op::Delete { key: marker.key() },
    ];
    let last = ok("apply", store.apply(good).await);
    assert_eq!(last, before + 5);
    expect_events(
        &mut feed,
        before + 2,
        &[
            (Action::Create, route("default", "b-1").key()),
            (Action::Update, existing.key()),
            (Action::Create, route("default", "b-2").key()),
            (Action::Delete, marker.key()),
        ],
    )
    .await;
    assert_eq!(
        store
            .get(&existing.key())
            .await
            .ok()
            .map(|r| r.meta.version),
        Some(2)
    );
    assert_eq!(store.apply(Vec::new()).await.ok(), Some(before + 5));
}

pub async fn prune_makes_old_revisions_compacted(h: &Harness) {
    let store = h.open().await;
    for i in 0..10 {
        create(&store, route("default", &format!("r-{i}"))).await;
    }
    assert_eq!(store.prune_changes(6).await.ok(), Some(6));
    assert_eq!(
        store.prune_changes(3).await.ok(),
        Some(0),
        "pruning never goes back"
    );
    for after in [0, 5] {
        match first_item(&mut store.changes(after)).await {
            Err(StoreError::Compacted { requested, oldest }) => {
                assert_eq!((requested, oldest), (after, 7))
            }
            other => panic!("expected Compacted from {after}, got {other:?}"),
        }
    }
    let events = take_events(&mut store.changes(6), 4).await;
    assert_consecutive(&events, 7);
    // Pruning past the end stops at the current revision; a later write still flows.
    assert_eq!(store.prune_changes(1000).await.ok(), Some(4));
    let mut live = store.changes(10);
    create(&store, route("default", "after-prune")).await;
    assert_eq!(take_events(&mut live, 1).await[0].revision, 11);
    assert!(matches!(
        first_item(&mut store.changes(9)).await,
        Err(StoreError::Compacted { oldest: 11, .. })
    ));
}

pub async fn feed_from_the_future_fails(h: &Harness) {
    let store = h.open().await;
    create(&store, route("default", "r")).await;
    match first_item(&mut store.changes(100)).await {
        Err(StoreError::RevisionAhead {
            requested: 100,
            current: 1,
        }) => {}
        other => panic!("expected RevisionAhead, got {other:?}"),
    }
}

pub async fn snapshot_is_consistent(h: &Harness) {
    let store = h.open().await;
    create(&store, mesh("default")).await;
    let dp = create(&store, dataplane("default", "dp", 80)).await;
    ok("update", store.update(dp.clone()).await);
    let snapshot = ok("snapshot", store.snapshot().await);
    assert_eq!(snapshot.revision, 3);
    let mut got: Vec<(ResourceKey, u64, u64)> = snapshot
        .resources
        .iter()
        .map(|s| (s.resource.key(), s.resource.meta.version, s.revision))
        .collect();
    got.sort();
    assert_eq!(got, vec![(mesh("default").key(), 1, 1), (dp.key(), 2, 3)]);
}

/// A second store instance (another process) sees the first one's writes.
pub async fn second_instance_sees_writes(h: &Harness) {
    let first = h.open().await;
    let second = h.open().await;
    let mut feed = second.changes(0);
    let created = create(&first, dataplane("default", "dp", 80)).await;
    let event = take_events(&mut feed, 1).await;
    assert_eq!(event[0].key(), created.key());
    let seen = eventually("the second instance to see the create", async || {
        second.get(&created.key()).await.ok()
    })
    .await;
    assert_eq!(seen, created);
    let updated = ok("update", second.update(seen).await);
    eventually("the first instance to see the update", async || {
        first
            .get(&created.key())
            .await
            .ok()
            .filter(|r| r.meta.version == updated.meta.version)
    })
    .await;
    ok("delete", first.delete(&created.key()).await);
    eventually("the second instance to see the delete", async || {
        matches!(
            second.get(&created.key()).await,
            Err(StoreError::NotFound(_))
        )
        .then_some(())
    })
    .await;
    let list = eventually("the list to be empty", async || {
        let page = second
            .list(&ListQuery::all(ResourceType::Dataplane))
            .await
            .ok()?;
        (page.total == 0).then_some(page)
    })
    .await;
    assert!(list.items.is_empty());
}

// ---- persistence (SQLite, PostgreSQL) ----------------------------------------------------

pub async fn feed_resumes_after_reopen(h: &Harness) {
    assert!(h.persistent());
    let revision = {
        let store = h.open().await;
        create(&store, mesh("default")).await;
        create(&store, route("default", "before")).await;
        ok("revision", store.revision().await)
    };
    assert_eq!(revision, 2);
    // A new process: the data and the revision counter are still there.
    let store = h.open().await;
    assert_eq!(store.revision().await.ok(), Some(2));
    assert!(store.get(&route("default", "before").key()).await.is_ok());
    let after = create(&store, route("default", "after")).await;
    let events = take_events(&mut store.changes(revision), 1).await;
    assert_eq!((events[0].revision, events[0].key()), (3, after.key()));
    let all = take_events(&mut store.changes(0), 3).await;
    assert_consecutive(&all, 1);
}

/// Kills a writer process with SIGKILL mid-burst: every write it reported as committed must be
/// there, in the feed in order.
pub async fn no_committed_write_lost_on_sigkill(h: &Harness) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    assert!(h.persistent());
    // Make sure the schema exists before the writer starts (PostgreSQL is migrated already).
    drop(h.open().await);
    let (backend, location) = match (&h.sqlite_path(), &h.pg) {
        (Some(path), _) => ("sqlite", path.display().to_string()),
        (_, Some(pg)) => ("postgres", pg.url.clone()),
        _ => panic!("not a persistent backend"),
    };
    const KILL_AFTER: usize = 150;
    let mut child = Command::new(env!("CARGO_BIN_EXE_store-burst"))
        .args([backend, &location, "burst", "1000000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting store-burst: {e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let (printed, pipe) = tokio::task::spawn_blocking(move || {
        let mut names = Vec::new();
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        while names.len() < KILL_AFTER {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => names.push(line.trim_end().to_string()),
            }
        }
        // Keep the pipe open until the kill, so the writer does not stop on a broken pipe.
        (names, reader)
    })
    .await
    .unwrap_or_else(|e| panic!("reading store-burst: {e}"));
    // Child::kill sends SIGKILL on Unix.
    child
        .kill()
        .unwrap_or_else(|e| panic!("killing store-burst: {e}"));
    let status = child
        .wait()
        .unwrap_or_else(|e| panic!("waiting for store-burst: {e}"));
    drop(pipe);
    assert_eq!(
        printed.len(),
        KILL_AFTER,
        "store-burst ended early ({status})"
    );
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "killed by SIGKILL");
    }

    let store = h.open().await;
    for name in &printed {
        let key = ResourceKey::global(ResourceType::Mesh, name.as_str());
        assert!(
            store.get(&key).await.is_ok(),
            "{key} was reported committed but is missing"
        );
    }
    let revision = ok("revision", store.revision().await);
    assert!(revision >= KILL_AFTER as u64);
    let events = take_events(&mut store.changes(0), revision as usize).await;
    assert_consecutive(&events, 1);
    let names: Vec<&str> = events
        .iter()
        .take(KILL_AFTER)
        .map(|e| e.name.as_str())
        .collect();
    let printed: Vec<&str> = printed.iter().map(String::as_str).collect();
    assert_eq!(
        names, printed,
        "the feed lists the committed creates in order"
    );
    // Whatever committed after the last printed line is complete too.
    for e in &events {
        assert!(
            store.get(&e.key()).await.is_ok(),
            "{} is in the feed but missing",
            e.key()
        );
    }
    // And the store keeps working.
    create(&store, mesh("after-kill")).await;
}

// ---- PostgreSQL --------------------------------------------------------------------------

/// Terminates every backend connection mid-use: operations fail with `Unavailable` or succeed
/// after the pool reconnects; the feed keeps delivering everything, in order.
pub async fn survives_terminated_connections(h: &Harness) {
    let pg = h.pg.as_ref().unwrap_or_else(|| panic!("needs PostgreSQL"));
    let store = h.open().await;
    let mut feed = store.changes(0);
    let mut created = Vec::new();
    let mut write = async |name: String| {
        let r = route("default", &name);
        let mut attempted = false;
        eventually(&format!("creating {name} after the outage"), async || {
            match store.create(r.clone(), None).await {
                Ok(_) => Some(()),
                Err(e) if e.is_transient() => {
                    attempted = true;
                    None
                }
                // An Unavailable while committing may still have committed.
                Err(StoreError::AlreadyExists(_)) if attempted => Some(()),
                Err(e) => panic!("creating {name}: expected success or Unavailable, got {e}"),
            }
        })
        .await;
        created.push(r.key());
    };
    for i in 0..5 {
        write(format!("r-{i:02}")).await;
    }
    // Mid-use: while the feed is waiting and the pool holds idle connections.
    let killed = pg.terminate_connections().await;
    assert!(killed > 0, "there were connections to terminate");
    for i in 5..10 {
        write(format!("r-{i:02}")).await;
    }
    // Again, with writes running concurrently with the termination.
    let terminate = async {
        for _ in 0..3 {
            pg.terminate_connections().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let writes = async {
        for i in 10..20 {
            write(format!("r-{i:02}")).await;
        }
    };
    tokio::join!(terminate, writes);
    let events = take_events(&mut feed, created.len()).await;
    assert_consecutive(&events, 1);
    let keys: Vec<ResourceKey> = events.iter().map(ChangeEvent::key).collect();
    assert_eq!(keys, created);
    // Reads work again.
    let page = store
        .list(&ListQuery::all(ResourceType::TrafficRoute))
        .await;
    assert_eq!(page.ok().map(|p| p.total), Some(20));
    // The change listener is back on its channel.
    eventually("the change listener to LISTEN again", async || {
        pg.listening().await.then_some(())
    })
    .await;
}

/// A reader that reacts to an event by reading the resource sees that change or a newer one
/// (the cache holds each event back until it applied it). KDS mirrors rely on this.
pub async fn reads_after_an_event_see_it(h: &Harness) {
    let store = h.open().await;
    let mut feed = store.changes(0);
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..100 {
                let name = format!("r-{}", i % 10);
                let key = ResourceKey::new(ResourceType::TrafficRoute, "default", name.clone());
                match store.get(&key).await {
                    Ok(mut existing) => {
                        existing.spec = route("default", &format!("{name}-{i}")).spec;
                        ok("update", store.update(existing).await);
                    }
                    Err(_) => {
                        ok("create", store.create(route("default", &name), None).await);
                    }
                }
            }
        })
    };
    for event in take_events(&mut feed, 100).await {
        let stored = ok("get_stored", store.get_stored(&event.key()).await);
        let revision = stored.map(|s| s.revision).unwrap_or(0);
        assert!(
            revision >= event.revision,
            "event {} for {} but the store returned revision {revision}",
            event.revision,
            event.key()
        );
    }
    writer.await.unwrap_or_else(|e| panic!("writer: {e}"));
}

/// Many creates in one batch (written in chunks by the SQL backends): consecutive revisions in
/// op order, all readable; a clash anywhere in a later batch fails it whole, naming the key.
pub async fn bulk_creates_are_atomic_and_in_order(h: &Harness) {
    let store = h.open().await;
    let ops: Vec<Op> = (0..450)
        .map(|i| create_op(route("default", &format!("bulk-{i:03}"))))
        .collect();
    let applied = ok("commit", store.commit(ops).await);
    assert_eq!(applied.len(), 450);
    for (i, a) in applied.iter().enumerate() {
        assert_eq!(a.revision, i as u64 + 1);
        assert_eq!(a.key.name, format!("bulk-{i:03}"));
        let stored = a.resource.as_ref().map(|r| r.meta.version);
        assert_eq!(stored, Some(1));
    }
    let page = ok(
        "list",
        store
            .list(&ListQuery::all(ResourceType::TrafficRoute))
            .await,
    );
    assert_eq!(page.total, 450);
    let got = ok(
        "get",
        store
            .get(&ResourceKey::new(
                ResourceType::TrafficRoute,
                "default",
                "bulk-321",
            ))
            .await,
    );
    assert_eq!(got.spec, route("default", "bulk-321").spec);

    // 300 new creates, one of them (the 251st) clashing with an existing resource
    let ops: Vec<Op> = (0..300)
        .map(|i| {
            let name = if i == 250 {
                "bulk-007".to_string()
            } else {
                format!("more-{i:03}")
            };
            create_op(route("default", &name))
        })
        .collect();
    match store.commit(ops).await {
        Err(StoreError::AlreadyExists(key)) => assert_eq!(key.name, "bulk-007"),
        other => panic!("expected AlreadyExists(bulk-007), got {other:?}"),
    }
    let page = ok(
        "list",
        store
            .list(&ListQuery::all(ResourceType::TrafficRoute))
            .await,
    );
    assert_eq!(page.total, 450, "nothing of the failed batch is kept");
    assert_eq!(store.revision().await.ok(), Some(450));
}
