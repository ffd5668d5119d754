//! Store benchmarks: `get`, `list` of 375 and of 10 000 Dataplanes, `create` and `update`, for
//! the memory, SQLite, PostgreSQL and cached PostgreSQL stores, with a plain sqlx query of the
//! same rows on the same table as the baseline (`sqlite_raw`, `postgres_raw`).
//!
//! PostgreSQL comes from `DATABASE_URL` (a superuser URL; a throwaway database is created and
//! dropped); without it the PostgreSQL groups are skipped with a note.
//! Run: `DATABASE_URL=… cargo bench -p store --bench store`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use model::{Resource, ResourceKey, ResourceType, Spec};
use serde_json::json;
use store::{ListQuery, Op, ResourceStore};
use tokio::runtime::Runtime;
use tokio::sync::Mutex;

#[path = "../tests/conformance/pgdb.rs"]
mod pgdb;
use pgdb::PgDatabase;

const SMALL_MESH: &str = "bench-375";
const LARGE_MESH: &str = "bench-10000";
const WRITE_MESH: &str = "bench-writes";
const SMALL: usize = 375;
const LARGE: usize = 10_000;

/// A Dataplane as a Kubernetes zone would register it: two inbounds, the usual tags and labels.
fn dataplane(mesh: &str, i: usize) -> Resource {
    let service = format!("svc-{}", i % 50);
    let value = json!({
        "networking": {
            "address": format!("10.{}.{}.{}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff),
            "inbound": [
                {
                    "port": 8080,
                    "servicePort": 80,
                    "tags": {
                        "kuma.io/service": format!("{service}_ns-{}_svc_80", i % 10),
                        "kuma.io/protocol": "http",
                        "kuma.io/zone": "zone-1",
                        "app": service,
                        "version": "v1",
                        "k8s.kuma.io/namespace": format!("ns-{}", i % 10),
                    }
                },
                {
                    "port": 9090,
                    "tags": {
                        "kuma.io/service": format!("{service}-metrics_ns-{}_svc_9090", i % 10),
                        "kuma.io/protocol": "tcp",
                        "kuma.io/zone": "zone-1",
                    }
                }
            ]
        }
    });
    let spec = Spec::from_json(ResourceType::Dataplane, &value, true)
        .unwrap_or_else(|e| panic!("bench dataplane: {e}"));
    Resource::new(mesh, format!("{service}-{i:05}.ns-{}", i % 10), spec).with_labels([
        ("kuma.io/zone", "zone-1"),
        ("kuma.io/origin", "zone"),
        ("kuma.io/env", "kubernetes"),
    ])
}

fn small_key(i: usize) -> ResourceKey {
    dataplane(SMALL_MESH, i % SMALL).key()
}

async fn populate(store: &Arc<dyn ResourceStore>) {
    for (mesh, count) in [(SMALL_MESH, SMALL), (LARGE_MESH, LARGE)] {
        let all: Vec<usize> = (0..count).collect();
        for chunk in all.chunks(500) {
            let ops = chunk
                .iter()
                .map(|i| Op::Create {
                    resource: dataplane(mesh, *i),
                    owner: None,
                })
                .collect();
            store
                .apply(ops)
                .await
                .unwrap_or_else(|e| panic!("populating {mesh}: {e}"));
        }
    }
}

/// Short measurements keep the whole run within a few minutes.
fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

/// get, list 375, list 10 000, create, update through `store`.
fn bench_store(c: &mut Criterion, rt: &Runtime, group: &str, store: Arc<dyn ResourceStore>) {
    let mut g = c.benchmark_group(group);
    let keys: Vec<ResourceKey> = (0..SMALL).map(small_key).collect();
    let next = AtomicU64::new(0);
    g.bench_function("get", |b| {
        b.to_async(rt).iter(|| async {
            let i = next.fetch_add(1, Ordering::Relaxed) as usize % keys.len();
            store
                .get(&keys[i])
                .await
                .unwrap_or_else(|e| panic!("get: {e}"))
        })
    });
    for (name, mesh, count) in [
        ("list_375", SMALL_MESH, SMALL),
        ("list_10000", LARGE_MESH, LARGE),
    ] {
        let query = ListQuery::in_mesh(ResourceType::Dataplane, mesh);
        g.bench_function(name, |b| {
            b.to_async(rt).iter(|| async {
                let page = store
                    .list(&query)
                    .await
                    .unwrap_or_else(|e| panic!("list: {e}"));
                assert_eq!(page.items.len(), count);
                page
            })
        });
    }
    let created = AtomicU64::new(0);
    let prefix = group.to_string();
    g.bench_function("create", |b| {
        b.to_async(rt).iter(|| async {
            let i = created.fetch_add(1, Ordering::Relaxed) as usize;
            let mut r = dataplane(WRITE_MESH, i);
            r.meta.name = format!("{prefix}-{}", r.meta.name);
            store
                .create(r, None)
                .await
                .unwrap_or_else(|e| panic!("create: {e}"))
        })
    });
    let target = rt.block_on(async {
        let mut r = dataplane(WRITE_MESH, 999_999);
        r.meta.name = format!("{group}-update-target");
        store
            .create(r, None)
            .await
            .unwrap_or_else(|e| panic!("create: {e}"))
    });
    let current = Mutex::new(target);
    g.bench_function("update", |b| {
        b.to_async(rt).iter(|| async {
            let mut r = current.lock().await;
            let mut next = r.clone();
            next.meta
                .labels
                .insert("bench".into(), next.meta.version.to_string());
            *r = store
                .update(next)
                .await
                .unwrap_or_else(|e| panic!("update: {e}"));
        })
    });
    g.finish();
}

/// The same reads as plain sqlx queries on the same table: the floor the store adds to.
macro_rules! bench_raw {
    ($c:expr, $rt:expr, $group:expr, $pool:expr, $get:expr, $list:expr) => {{
        let pool = $pool;
        let mut g = $c.benchmark_group($group);
        let keys: Vec<ResourceKey> = (0..SMALL).map(small_key).collect();
        let next = AtomicU64::new(0);
        g.bench_function("get", |b| {
            b.to_async($rt).iter(|| async {
                let k = &keys[next.fetch_add(1, Ordering::Relaxed) as usize % keys.len()];
                let row: Option<(String, String, String, i64, String, Option<String>, i64)> =
                    sqlx::query_as($get)
                        .bind(k.kind.name())
                        .bind(&k.mesh)
                        .bind(&k.name)
                        .fetch_optional(pool)
                        .await
                        .unwrap_or_else(|e| panic!("raw get: {e}"));
                assert!(row.is_some());
                row
            })
        });
        for (name, mesh, count) in [
            ("list_375", SMALL_MESH, SMALL),
            ("list_10000", LARGE_MESH, LARGE),
        ] {
            g.bench_function(name, |b| {
                b.to_async($rt).iter(|| async {
                    let rows: Vec<(String, String, String, i64, String, Option<String>, i64)> =
                        sqlx::query_as($list)
                            .bind("Dataplane")
                            .bind(mesh)
                            .fetch_all(pool)
                            .await
                            .unwrap_or_else(|e| panic!("raw list: {e}"));
                    assert_eq!(rows.len(), count);
                    rows
                })
            });
        }
        g.finish();
    }};
}

/// A throwaway database on the `DATABASE_URL` server; `None` (with a note) without one.
fn bench_database(rt: &Runtime) -> Option<PgDatabase> {
    let admin_url = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            eprintln!(
                "note: DATABASE_URL is not set: skipping the PostgreSQL benchmarks \
                 (`cargo xtask pg` prints one)"
            );
            return None;
        }
    };
    let name = format!("kuma_store_bench_{}", std::process::id());
    Some(rt.block_on(PgDatabase::create_on(admin_url, name)))
}

fn benches(c: &mut Criterion) {
    let rt = Runtime::new().unwrap_or_else(|e| panic!("runtime: {e}"));

    // memory
    let memory: Arc<dyn ResourceStore> = Arc::new(store::memory::MemoryStore::new());
    rt.block_on(populate(&memory));
    bench_store(c, &rt, "memory", memory);

    // sqlite
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let sqlite = rt
        .block_on(store::sqlite::SqliteStore::open(
            store::sqlite::default_path(dir.path()),
        ))
        .unwrap_or_else(|e| panic!("sqlite: {e}"));
    let sqlite_dyn: Arc<dyn ResourceStore> = Arc::new(sqlite.clone());
    rt.block_on(populate(&sqlite_dyn));
    bench_store(c, &rt, "sqlite", sqlite_dyn);
    bench_raw!(
        c,
        &rt,
        "sqlite_raw",
        sqlite.read_pool(),
        "SELECT type, mesh, name, version, spec, labels, revision FROM resources \
         WHERE type = ? AND mesh = ? AND name = ?",
        "SELECT type, mesh, name, version, spec, labels, revision FROM resources \
         WHERE type = ? AND mesh = ? ORDER BY mesh, name"
    );

    // postgres
    if let Some(db) = bench_database(&rt) {
        let settings = store::PostgresSettings::from_url(db.url.clone());
        rt.block_on(store::postgres::migrate_up(&settings))
            .unwrap_or_else(|e| panic!("migrate: {e}"));
        let pg = rt
            .block_on(store::postgres::PostgresStore::open(&settings))
            .unwrap_or_else(|e| panic!("pg: {e}"));
        let pg_dyn: Arc<dyn ResourceStore> = Arc::new(pg.clone());
        rt.block_on(populate(&pg_dyn));
        bench_store(c, &rt, "postgres", pg_dyn.clone());
        let cached = rt
            .block_on(store::cache::CachedStore::new(pg_dyn))
            .unwrap_or_else(|e| panic!("cache: {e}"));
        bench_store(c, &rt, "postgres_cached", Arc::new(cached));
        bench_raw!(
            c,
            &rt,
            "postgres_raw",
            pg.pool(),
            "SELECT type::text, mesh::text, name::text, version, spec, labels::text, revision FROM resources \
             WHERE type = $1 AND mesh = $2 AND name = $3",
            "SELECT type::text, mesh::text, name::text, version, spec, labels::text, revision FROM resources \
             WHERE type = $1 AND mesh = $2 ORDER BY mesh, name"
        );
        rt.block_on(pg.close());
        rt.block_on(db.drop_database());
    }
}

criterion_group! {
    name = store_benches;
    config = config();
    targets = benches
}
criterion_main!(store_benches);
