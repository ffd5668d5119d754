//! Per-backend fixtures: a fresh store (memory, SQLite in a temp dir, a fresh PostgreSQL
//! database on the `DATABASE_URL` server ([`PgDatabase`], from `pgdb.rs`), or a cache over one
//! of them), reopening it as a new process would, and cleaning up afterwards.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use sqlx::Connection;
use store::{BackendSettings, PostgresSettings, ResourceStore, StoreSettings};

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Memory,
    Sqlite,
    CachedSqlite,
    Postgres,
    CachedPostgres,
}

impl Kind {
    pub fn cached(self) -> bool {
        matches!(self, Kind::CachedSqlite | Kind::CachedPostgres)
    }
}

pub use crate::pgdb::PgDatabase;

pub fn database_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "PostgreSQL tests need a server: set DATABASE_URL (a superuser URL such as \
             postgres://postgres@127.0.0.1:55432/postgres) or run `cargo xtask test`, which starts a \
             throwaway PostgreSQL"
        ),
    }
}

/// The suite's databases: a fresh one per test on the `DATABASE_URL` server, dropped by
/// [`Harness::cleanup`].
impl PgDatabase {
    /// Creates an empty database with a unique name.
    pub async fn create() -> PgDatabase {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "kuma_store_test_{}_{}_{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        PgDatabase::create_on(database_url(), name).await
    }

    pub fn settings(&self) -> PostgresSettings {
        PostgresSettings {
            max_open_connections: 8,
            connection_timeout: Duration::from_secs(5),
            ..PostgresSettings::from_url(self.url.clone())
        }
    }

    /// A superuser connection to the server (not to this database).
    pub async fn admin(&self) -> sqlx::PgConnection {
        sqlx::PgConnection::connect(&self.admin_url)
            .await
            .unwrap_or_else(|e| panic!("connecting to DATABASE_URL: {e}"))
    }

    /// The first column of each row of `sql`, run on an admin connection with `$1` bound to
    /// this database's name; a failure panics, saying it was `what`.
    async fn admin_query<T>(&self, sql: &'static str, what: &str) -> Vec<T>
    where
        (T,): for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
        T: Send + Unpin,
    {
        let mut admin = self.admin().await;
        let rows = sqlx::query_scalar(sql)
            .bind(&self.name)
            .fetch_all(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let _ = admin.close().await;
        rows
    }

    /// Terminates every connection to this database except the admin one.
    pub async fn terminate_connections(&self) -> u64 {
        let terminated: Vec<bool> = self
            .admin_query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                "terminating connections",
            )
            .await;
        terminated.into_iter().filter(|t| *t).count() as u64
    }

    /// Whether a connection to this database is listening for change notifications.
    pub async fn listening(&self) -> bool {
        let listeners: Vec<i64> = self
            .admin_query(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'LISTEN %'",
                "reading pg_stat_activity",
            )
            .await;
        listeners.first().is_some_and(|n| *n > 0)
    }
}

/// One backend under test.
pub struct Harness {
    pub kind: Kind,
    dir: Option<tempfile::TempDir>,
    pub pg: Option<PgDatabase>,
    memory: Option<Arc<dyn ResourceStore>>,
}

impl Harness {
    pub async fn new(kind: Kind) -> Harness {
        let mut harness = Harness {
            kind,
            dir: None,
            pg: None,
            memory: None,
        };
        match kind {
            Kind::Memory => harness.memory = Some(Arc::new(store::memory::MemoryStore::new())),
            Kind::Sqlite | Kind::CachedSqlite => {
                harness.dir = Some(tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}")));
            }
            Kind::Postgres | Kind::CachedPostgres => {
                let db = PgDatabase::create().await;
                let outcome = store::postgres::migrate_up(&db.settings())
                    .await
                    .unwrap_or_else(|e| panic!("migrating {}: {e}", db.name));
                assert!(
                    matches!(outcome, store::MigrateOutcome::Migrated { .. }),
                    "{outcome:?}"
                );
                harness.pg = Some(db);
            }
        }
        harness
    }

    /// Data survives [`Harness::open`] again (a new process opening the same database).
    pub fn persistent(&self) -> bool {
        self.kind != Kind::Memory
    }

    pub fn sqlite_path(&self) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| store::sqlite::default_path(d.path()))
    }

    pub fn settings(&self) -> StoreSettings {
        let backend = match (&self.dir, &self.pg) {
            (Some(_), _) => BackendSettings::Sqlite {
                path: self.sqlite_path().unwrap_or_default(),
            },
            (_, Some(pg)) => BackendSettings::Postgres(pg.settings()),
            _ => BackendSettings::Memory,
        };
        StoreSettings {
            backend,
            cache: self.kind.cached(),
        }
    }

    /// A store instance on the backend: for persistent backends a new one each time, as a new
    /// process would open it; for memory the one instance.
    pub async fn open(&self) -> Arc<dyn ResourceStore> {
        if let Some(memory) = &self.memory {
            return memory.clone();
        }
        store::open(&self.settings())
            .await
            .unwrap_or_else(|e| panic!("opening {:?}: {e}", self.kind))
    }

    pub async fn cleanup(self) {
        if let Some(pg) = &self.pg {
            pg.drop_database().await;
        }
    }
}

/// Runs `case` against a fresh `kind` backend and cleans up, also when the case panics.
pub async fn run(kind: Kind, case: impl AsyncFnOnce(&Harness)) {
    let harness = Harness::new(kind).await;
    let result = AssertUnwindSafe(case(&harness)).catch_unwind().await;
    harness.cleanup().await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// How long a test waits for something that should happen promptly.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `check` until it returns `Some`, failing after [`DEADLINE`].
pub async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
