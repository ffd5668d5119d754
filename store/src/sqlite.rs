//! The SQLite backend (the default): an embedded, durable database file, conventionally
//! `<workDir>/kuma.db`, migrated automatically when opened.
//!
//! Durability: WAL journal with `synchronous=FULL`, so every commit is fsynced before it
//! returns and survives a SIGKILL of the process and a power loss alike. Writes go through a
//! single-connection pool and `BEGIN IMMEDIATE`, which serializes them in this process without
//! SQLite's busy-wait; other processes on the same file wait up to the busy timeout. Reads use
//! a separate small pool and see a consistent snapshot per statement (WAL).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use model::ResourceKey;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteQueryResult, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::engine::action_name;
use crate::sql::{
    self, Dialect, SqlCore, count_to_db, db_error, embedded_migrator, revision_to_db,
    sql_resource_store,
};
use crate::{ChangeEvent, ListQuery, Result, StoreError};

/// The backend name errors use.
pub const BACKEND: &str = "sqlite";

/// The database file name inside the work directory.
pub const FILE_NAME: &str = "kuma.db";

/// How long a write waits for another process holding the database lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How many connections serve reads.
const READERS: u32 = 4;

/// `<work_dir>/kuma.db`.
pub fn default_path(work_dir: impl AsRef<Path>) -> PathBuf {
    work_dir.as_ref().join(FILE_NAME)
}

/// The embedded schema migrations.
fn migrator() -> Migrator {
    embedded_migrator(&[(
        1,
        "init",
        include_str!("../migrations/sqlite/0001_init.sql"),
    )])
}

/// A store in one SQLite file.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    /// Reads through a pool of [`READERS`], writes through a single connection.
    core: SqlCore<Sqlite>,
}

impl SqliteStore {
    /// Opens (creating it if needed) the database file at `path` and applies the embedded
    /// migrations.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        let path = path.as_ref().to_path_buf();
        let unavailable = |message: String| StoreError::Unavailable {
            backend: BACKEND,
            message,
        };
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| unavailable(format!("creating directory {}: {e}", dir.display())))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let context = format!("opening {}", path.display());
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await
            .map_err(|e| db_error(BACKEND, &context, e))?;
        migrator()
            .run(&writer)
            .await
            .map_err(|e| migrate_error(&path, e))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.create_if_missing(false))
            .await
            .map_err(|e| db_error(BACKEND, &context, e))?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path,
                core: SqlCore::new(reader, writer),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Closes the connections (they also close when the last clone is dropped).
    pub async fn close(&self) {
        self.inner.core.close().await;
    }

    /// The raw read pool, for benchmarks that compare against plain SQL.
    pub fn read_pool(&self) -> &SqlitePool {
        &self.inner.core.read
    }
}

fn migrate_error(path: &Path, error: MigrateError) -> StoreError {
    match error {
        MigrateError::VersionMissing(version) => StoreError::Backend {
            backend: BACKEND,
            message: format!(
                "{}: the schema has migration {version}, which this build does not know: it was written by a newer version",
                path.display()
            ),
        },
        other => sql::migrate_error(BACKEND, path.display(), other),
    }
}

#[async_trait]
impl Dialect for Sqlite {
    const BACKEND: &'static str = BACKEND;
    const BEGIN_WRITE: Option<&'static str> = Some("BEGIN IMMEDIATE");
    // A deferred transaction reads one snapshot of the WAL.
    const BEGIN_SNAPSHOT: Option<&'static str> = None;
    // BEGIN IMMEDIATE already holds the database's write lock.
    const LOCK_REVISION: &'static str = "SELECT revision FROM store_revision WHERE id = 1";
    const LOCK_CONTEXT: &'static str = "reading the store revision";
    const COMMIT_CONTEXT: &'static str = "committing";
    const RESOURCE_COLUMNS: &'static str =
        "type, mesh, name, version, spec, labels, creation_time, modification_time, revision";
    const POSITION_FN: &'static str = "instr";

    /// RFC 3339 text.
    type Time = String;

    fn time_to_db(time: OffsetDateTime) -> Result<String> {
        time.format(&Rfc3339).map_err(|e| StoreError::Backend {
            backend: BACKEND,
            message: format!("formatting time: {e}"),
        })
    }

    fn time_from_db(column: &str, value: String) -> Result<OffsetDateTime, String> {
        OffsetDateTime::parse(&value, &Rfc3339).map_err(|e| format!("{column} {value:?}: {e}"))
    }

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    fn push_label_filter(qb: &mut QueryBuilder<Sqlite>, labels: &BTreeMap<String, String>) {
        for (k, v) in labels {
            qb.push(" AND EXISTS (SELECT 1 FROM json_each(resources.labels) WHERE key = ")
                .push_bind(k.clone())
                .push(" AND value = ")
                .push_bind(v.clone())
                .push(")");
        }
    }

    /// SQLite takes an OFFSET only after a LIMIT; -1 is none.
    fn push_page(qb: &mut QueryBuilder<Sqlite>, query: &ListQuery) {
        if query.size.is_some() || query.offset > 0 {
            qb.push(" LIMIT ")
                .push_bind(query.size.map(count_to_db).unwrap_or(-1));
            qb.push(" OFFSET ").push_bind(count_to_db(query.offset));
        }
    }

    async fn delete(conn: &mut SqliteConnection, keys: &[ResourceKey]) -> Result<()> {
        for key in keys {
            sqlx::query("DELETE FROM resources WHERE type = ? AND mesh = ? AND name = ?")
                .bind(key.kind.name())
                .bind(&key.mesh)
                .bind(&key.name)
                .execute(&mut *conn)
                .await
                .map_err(|e| db_error(BACKEND, format!("deleting {key}"), e))?;
        }
        Ok(())
    }

    async fn record(conn: &mut SqliteConnection, events: &[ChangeEvent]) -> Result<()> {
        let Some(last) = events.last() else {
            return Ok(());
        };
        for chunk in events.chunks(500) {
            let mut insert: QueryBuilder<Sqlite> =
                QueryBuilder::new("INSERT INTO changes (revision, action, type, mesh, name) ");
            let mut bad_revision = None;
            insert.push_values(chunk, |mut row, event| {
                let revision = i64::try_from(event.revision).unwrap_or_else(|_| {
                    bad_revision = Some(event.revision);
                    i64::MAX
                });
                row.push_bind(revision)
                    .push_bind(action_name(event.action))
                    .push_bind(event.kind.name())
                    .push_bind(event.mesh.clone())
                    .push_bind(event.name.clone());
            });
            if let Some(revision) = bad_revision {
                revision_to_db(BACKEND, revision)?;
            }
            insert
                .build()
                .execute(&mut *conn)
                .await
                .map_err(|e| db_error(BACKEND, "appending to the change log", e))?;
        }
        sqlx::query("UPDATE store_revision SET revision = ? WHERE id = 1")
            .bind(revision_to_db(BACKEND, last.revision)?)
            .execute(&mut *conn)
            .await
            .map_err(|e| db_error(BACKEND, "moving the store revision", e))?;
        Ok(())
    }
}

sql_resource_store!(SqliteStore, Sqlite, inner.core);
