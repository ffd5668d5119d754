//! The SQLite backend (the default): an embedded, durable database file, conventionally
//! `<workDir>/kuma.db`, migrated automatically when opened.
//!
//! Durability: WAL journal with `synchronous=FULL`, so every commit is fsynced before it
//! returns and survives a SIGKILL of the process and a power loss alike. Writes go through a
//! single-connection pool and `BEGIN IMMEDIATE`, which serializes them in this process without
//! SQLite's busy-wait; other processes on the same file wait up to the busy timeout. Reads use
//! a separate small pool and see a consistent snapshot per statement (WAL).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use model::{Resource, ResourceKey};
use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, SqlSafeStr, Sqlite, Transaction};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::engine::{self, WriteTxn, action_name};
use crate::feed::{self, ChangeBatch, ChangeSource, Waker};
use crate::query::next_offset;
use crate::sql::{
    RawChange, RawResource, db_error, encode_labels, revision_from_db, revision_to_db,
};
use crate::{
    Applied, ChangeEvent, ChangeFeed, ListPage, ListQuery, Op, ResourceStore, Result, Revision,
    Snapshot, StoreError, Stored,
};

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
    Migrator::with_migrations(vec![Migration::new(
        1,
        "init".into(),
        MigrationType::Simple,
        include_str!("../migrations/sqlite/0001_init.sql").into_sql_str(),
        false,
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
    writer: SqlitePool,
    reader: SqlitePool,
    waker: Waker,
}

const COLUMNS: &str =
    "type, mesh, name, version, spec, labels, creation_time, modification_time, revision";

fn format_time(t: OffsetDateTime) -> Result<String> {
    t.format(&Rfc3339).map_err(|e| StoreError::Backend {
        backend: BACKEND,
        message: format!("formatting time: {e}"),
    })
}

fn raw_resource(row: &SqliteRow) -> std::result::Result<RawResource, String> {
    let text = |col: &str| row.try_get::<String, _>(col).map_err(|e| e.to_string());
    let time = |col: &str| {
        let s: String = row.try_get(col).map_err(|e| e.to_string())?;
        OffsetDateTime::parse(&s, &Rfc3339).map_err(|e| format!("{col} {s:?}: {e}"))
    };
    Ok(RawResource {
        kind: text("type")?,
        mesh: text("mesh")?,
        name: text("name")?,
        version: row.try_get("version").map_err(|e| e.to_string())?,
        spec: text("spec")?,
        labels: row.try_get("labels").map_err(|e| e.to_string())?,
        creation_time: time("creation_time")?,
        modification_time: time("modification_time")?,
        revision: row.try_get("revision").map_err(|e| e.to_string())?,
    })
}

/// Decodes a `resources` row read for `key` (or, in scans, for whatever it names).
fn decode_row(row: &SqliteRow, key: Option<&ResourceKey>) -> Result<Option<Stored>> {
    match raw_resource(row) {
        Ok(raw) => raw.decode(BACKEND),
        Err(message) => Err(match key {
            Some(key) => StoreError::Corrupt {
                key: key.clone(),
                message,
            },
            None => StoreError::Backend {
                backend: BACKEND,
                message: format!("unreadable resources row: {message}"),
            },
        }),
    }
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
                writer,
                reader,
                waker: Waker::new(),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Closes the connections (they also close when the last clone is dropped).
    pub async fn close(&self) {
        self.inner.reader.close().await;
        self.inner.writer.close().await;
    }

    /// The raw read pool, for benchmarks that compare against plain SQL.
    pub fn read_pool(&self) -> &SqlitePool {
        &self.inner.reader
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        self.inner
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| db_error(BACKEND, "starting a write", e))
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
        MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) => {
            db_error(BACKEND, format!("migrating {}", path.display()), e)
        }
        other => StoreError::Backend {
            backend: BACKEND,
            message: format!("migrating {}: {other}", path.display()),
        },
    }
}

struct Txn {
    tx: Transaction<'static, Sqlite>,
}

#[async_trait]
impl WriteTxn for Txn {
    async fn lock(&mut self) -> Result<Revision> {
        // BEGIN IMMEDIATE already holds the database's write lock.
        let revision: i64 = sqlx::query_scalar("SELECT revision FROM store_revision WHERE id = 1")
            .fetch_one(&mut *self.tx)
            .await
            .map_err(|e| db_error(BACKEND, "reading the store revision", e))?;
        revision_from_db(BACKEND, revision)
    }

    async fn get(&mut self, key: &ResourceKey) -> Result<Option<Stored>> {
        let row = sqlx::query(
            "SELECT type, mesh, name, version, spec, labels, creation_time, modification_time, revision \
             FROM resources WHERE type = ? AND mesh = ? AND name = ?",
        )
        .bind(key.kind.name())
        .bind(&key.mesh)
        .bind(&key.name)
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(|e| db_error(BACKEND, format!("reading {key}"), e))?;
        match row {
            Some(row) => decode_row(&row, Some(key)),
            None => Ok(None),
        }
    }

    async fn insert(
        &mut self,
        resource: &Resource,
        owner: Option<&ResourceKey>,
        revision: Revision,
    ) -> Result<bool> {
        let key = resource.key();
        let result = sqlx::query(
            "INSERT INTO resources (name, mesh, type, version, spec, creation_time, modification_time, \
             owner_name, owner_mesh, owner_type, labels, status, revision) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '{}', ?) ON CONFLICT DO NOTHING",
        )
        .bind(&key.name)
        .bind(&key.mesh)
        .bind(key.kind.name())
        .bind(i64::try_from(resource.meta.version).unwrap_or(i64::MAX))
        .bind(resource.spec.to_json_string())
        .bind(format_time(resource.meta.creation_time)?)
        .bind(format_time(resource.meta.modification_time)?)
        .bind(owner.map(|o| o.name.clone()))
        .bind(owner.map(|o| o.mesh.clone()))
        .bind(owner.map(|o| o.kind.name()))
        .bind(encode_labels(&resource.meta.labels))
        .bind(revision_to_db(BACKEND, revision)?)
        .execute(&mut *self.tx)
        .await
        .map_err(|e| db_error(BACKEND, format!("creating {key}"), e))?;
        Ok(result.rows_affected() == 1)
    }

    async fn update(
        &mut self,
        resource: &Resource,
        expected: i64,
        revision: Revision,
    ) -> Result<Option<OffsetDateTime>> {
        let key = resource.key();
        let created: Option<String> = sqlx::query_scalar(
            "UPDATE resources SET spec = ?, version = ?, modification_time = ?, labels = ?, revision = ? \
             WHERE type = ? AND mesh = ? AND name = ? AND version = ? RETURNING creation_time",
        )
        .bind(resource.spec.to_json_string())
        .bind(i64::try_from(resource.meta.version).unwrap_or(i64::MAX))
        .bind(format_time(resource.meta.modification_time)?)
        .bind(encode_labels(&resource.meta.labels))
        .bind(revision_to_db(BACKEND, revision)?)
        .bind(key.kind.name())
        .bind(&key.mesh)
        .bind(&key.name)
        .bind(expected)
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(|e| db_error(BACKEND, format!("updating {key}"), e))?;
        match created {
            None => Ok(None),
            Some(text) => OffsetDateTime::parse(&text, &Rfc3339)
                .map(Some)
                .map_err(|e| StoreError::Corrupt {
                    key,
                    message: format!("creation_time {text:?}: {e}"),
                }),
        }
    }

    async fn cascade(&mut self, key: &ResourceKey) -> Result<Vec<ResourceKey>> {
        let rows = sqlx::query(
            "WITH RECURSIVE doomed(name, mesh, type) AS ( \
                SELECT name, mesh, type FROM resources WHERE type = ? AND mesh = ? AND name = ? \
              UNION \
                SELECT r.name, r.mesh, r.type FROM resources r JOIN doomed d \
                  ON (r.owner_type = d.type AND r.owner_mesh = d.mesh AND r.owner_name = d.name) \
                  OR (d.type = 'Mesh' AND r.mesh = d.name AND r.mesh <> '') \
             ) SELECT type, mesh, name FROM doomed",
        )
        .bind(key.kind.name())
        .bind(&key.mesh)
        .bind(&key.name)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(|e| db_error(BACKEND, format!("finding what deleting {key} removes"), e))?;
        decode_keys(&rows, key)
    }

    async fn delete(&mut self, keys: &[ResourceKey]) -> Result<()> {
        for key in keys {
            sqlx::query("DELETE FROM resources WHERE type = ? AND mesh = ? AND name = ?")
                .bind(key.kind.name())
                .bind(&key.mesh)
                .bind(&key.name)
                .execute(&mut *self.tx)
                .await
                .map_err(|e| db_error(BACKEND, format!("deleting {key}"), e))?;
        }
        Ok(())
    }

    async fn record(&mut self, events: &[ChangeEvent]) -> Result<()> {
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
                .execute(&mut *self.tx)
                .await
                .map_err(|e| db_error(BACKEND, "appending to the change log", e))?;
        }
        sqlx::query("UPDATE store_revision SET revision = ? WHERE id = 1")
            .bind(revision_to_db(BACKEND, last.revision)?)
            .execute(&mut *self.tx)
            .await
            .map_err(|e| db_error(BACKEND, "moving the store revision", e))?;
        Ok(())
    }
}

fn decode_keys(rows: &[SqliteRow], context: &ResourceKey) -> Result<Vec<ResourceKey>> {
    let mut keys = Vec::with_capacity(rows.len());
    for row in rows {
        let read = |col: &str| {
            row.try_get::<String, _>(col)
                .map_err(|e| StoreError::Corrupt {
                    key: context.clone(),
                    message: e.to_string(),
                })
        };
        let kind_name = read("type")?;
        // A resource of a type this build does not know is still deleted by the cascade of
        // its owner (foreign key), but it has no key we can name; leave it out of the events.
        let Some(kind) = engine::kind_from_name(&kind_name) else {
            tracing::warn!(backend = BACKEND, kind = %kind_name, "cascade removes a resource of an unknown type");
            continue;
        };
        keys.push(ResourceKey {
            kind,
            mesh: read("mesh")?,
            name: read("name")?,
        });
    }
    Ok(keys)
}

struct Source {
    reader: SqlitePool,
}

#[async_trait]
impl ChangeSource for Source {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn read_changes(&self, after: Revision, limit: u32) -> Result<ChangeBatch> {
        read_changes(&self.reader, after, limit).await
    }
}

async fn read_changes(reader: &SqlitePool, after: Revision, limit: u32) -> Result<ChangeBatch> {
    let rows = sqlx::query(
        "SELECT s.revision AS current, s.pruned_through, c.revision, c.action, c.type, c.mesh, c.name \
         FROM store_revision s \
         LEFT JOIN (SELECT revision, action, type, mesh, name FROM changes \
                    WHERE revision > ? ORDER BY revision LIMIT ?) c ON true \
         WHERE s.id = 1 ORDER BY c.revision",
    )
    .bind(revision_to_db(BACKEND, after)?)
    .bind(i64::from(limit))
    .fetch_all(reader)
    .await
    .map_err(|e| db_error(BACKEND, format!("reading the change log after revision {after}"), e))?;
    let mut batch = ChangeBatch::default();
    for row in &rows {
        let get = |e: sqlx::Error| StoreError::Backend {
            backend: BACKEND,
            message: format!("change log row: {e}"),
        };
        batch.current = revision_from_db(BACKEND, row.try_get("current").map_err(get)?)?;
        batch.pruned_through =
            revision_from_db(BACKEND, row.try_get("pruned_through").map_err(get)?)?;
        let revision: Option<i64> = row.try_get("revision").map_err(get)?;
        if let Some(revision) = revision {
            let raw = RawChange {
                revision,
                action: row.try_get("action").map_err(get)?,
                kind: row.try_get("type").map_err(get)?,
                mesh: row.try_get("mesh").map_err(get)?,
                name: row.try_get("name").map_err(get)?,
            };
            batch.events.push(raw.decode(BACKEND)?);
        }
    }
    if rows.is_empty() {
        return Err(StoreError::Backend {
            backend: BACKEND,
            message: "the store_revision row is missing".into(),
        });
    }
    Ok(batch)
}

/// Appends the WHERE clause of `query` (type, mesh, name and label filters).
fn push_filters(qb: &mut QueryBuilder<Sqlite>, query: &ListQuery) {
    qb.push(" WHERE type = ").push_bind(query.kind.name());
    if let Some(mesh) = &query.mesh
        && query.kind.is_mesh_scoped()
    {
        qb.push(" AND mesh = ").push_bind(mesh.clone());
    }
    if let Some(part) = &query.name_contains {
        qb.push(" AND instr(name, ")
            .push_bind(part.clone())
            .push(") > 0");
    }
    for (k, v) in &query.labels {
        qb.push(" AND EXISTS (SELECT 1 FROM json_each(resources.labels) WHERE key = ")
            .push_bind(k.clone())
            .push(" AND value = ")
            .push_bind(v.clone())
            .push(")");
    }
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl ResourceStore for SqliteStore {
    async fn list(&self, query: &ListQuery) -> Result<ListPage> {
        let context = || format!("listing {}", query.kind);
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
            "SELECT {COLUMNS}, count(*) OVER () AS total FROM resources"
        ));
        push_filters(&mut qb, query);
        qb.push(" ORDER BY mesh, name");
        if query.size.is_some() || query.offset > 0 {
            qb.push(" LIMIT ")
                .push_bind(query.size.map(to_i64).unwrap_or(-1));
            qb.push(" OFFSET ").push_bind(to_i64(query.offset));
        }
        let rows = qb
            .build()
            .fetch_all(&self.inner.reader)
            .await
            .map_err(|e| db_error(BACKEND, context(), e))?;
        let mut items = Vec::with_capacity(rows.len());
        let mut total = None;
        for row in &rows {
            if total.is_none() {
                let t: i64 = row
                    .try_get("total")
                    .map_err(|e| db_error(BACKEND, context(), e))?;
                total = Some(usize::try_from(t).unwrap_or(0));
            }
            if let Some(stored) = decode_row(row, None)? {
                items.push(stored.resource);
            }
        }
        let total = match total {
            Some(total) => total,
            None if query.offset == 0 => 0,
            None => {
                let mut qb: QueryBuilder<Sqlite> =
                    QueryBuilder::new("SELECT count(*) FROM resources");
                push_filters(&mut qb, query);
                let n: i64 = qb
                    .build_query_scalar()
                    .fetch_one(&self.inner.reader)
                    .await
                    .map_err(|e| db_error(BACKEND, context(), e))?;
                usize::try_from(n).unwrap_or(0)
            }
        };
        Ok(ListPage {
            next_offset: next_offset(query.offset, items.len(), total),
            items,
            total,
        })
    }

    async fn revision(&self) -> Result<Revision> {
        let revision: i64 = sqlx::query_scalar("SELECT revision FROM store_revision WHERE id = 1")
            .fetch_one(&self.inner.reader)
            .await
            .map_err(|e| db_error(BACKEND, "reading the store revision", e))?;
        revision_from_db(BACKEND, revision)
    }

    fn changes(&self, after: Revision) -> ChangeFeed {
        let source = Arc::new(Source {
            reader: self.inner.reader.clone(),
        });
        feed::feed(source, self.inner.waker.subscribe(), after)
    }

    async fn commit(&self, ops: Vec<Op>) -> Result<Vec<Applied>> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let mut txn = Txn {
            tx: self.begin_write().await?,
        };
        let applied = engine::execute(&mut txn, ops).await?;
        txn.tx
            .commit()
            .await
            .map_err(|e| db_error(BACKEND, "committing", e))?;
        if !applied.is_empty() {
            self.inner.waker.wake();
        }
        Ok(applied)
    }

    async fn get_stored(&self, key: &ResourceKey) -> Result<Option<Stored>> {
        let key = ResourceKey::new(key.kind, key.mesh.clone(), key.name.clone());
        let row = sqlx::query(
            "SELECT type, mesh, name, version, spec, labels, creation_time, modification_time, revision \
             FROM resources WHERE type = ? AND mesh = ? AND name = ?",
        )
        .bind(key.kind.name())
        .bind(&key.mesh)
        .bind(&key.name)
        .fetch_optional(&self.inner.reader)
        .await
        .map_err(|e| db_error(BACKEND, format!("reading {key}"), e))?;
        match row {
            Some(row) => decode_row(&row, Some(&key)),
            None => Ok(None),
        }
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        let context = "reading a snapshot of every resource";
        let mut tx = self
            .inner
            .reader
            .begin()
            .await
            .map_err(|e| db_error(BACKEND, context, e))?;
        let revision: i64 = sqlx::query_scalar("SELECT revision FROM store_revision WHERE id = 1")
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| db_error(BACKEND, context, e))?;
        let rows = sqlx::query(
            "SELECT type, mesh, name, version, spec, labels, creation_time, modification_time, revision FROM resources",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| db_error(BACKEND, context, e))?;
        tx.commit()
            .await
            .map_err(|e| db_error(BACKEND, context, e))?;
        let mut resources = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(stored) = decode_row(row, None)? {
                resources.push(stored);
            }
        }
        Ok(Snapshot {
            revision: revision_from_db(BACKEND, revision)?,
            resources,
        })
    }

    async fn prune_changes(&self, keep_after: Revision) -> Result<u64> {
        let context = "pruning the change log";
        let mut tx = self.begin_write().await?;
        let current: i64 = sqlx::query_scalar("SELECT revision FROM store_revision WHERE id = 1")
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| db_error(BACKEND, context, e))?;
        let through = revision_to_db(BACKEND, keep_after.min(revision_from_db(BACKEND, current)?))?;
        let removed = sqlx::query("DELETE FROM changes WHERE revision <= ?")
            .bind(through)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error(BACKEND, context, e))?
            .rows_affected();
        sqlx::query(
            "UPDATE store_revision SET pruned_through = max(pruned_through, ?) WHERE id = 1",
        )
        .bind(through)
        .execute(&mut *tx)
        .await
        .map_err(|e| db_error(BACKEND, context, e))?;
        tx.commit()
            .await
            .map_err(|e| db_error(BACKEND, context, e))?;
        Ok(removed)
    }

    fn backend_name(&self) -> &'static str {
        BACKEND
    }
}
