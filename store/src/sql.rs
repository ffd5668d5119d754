//! What the SQL backends (SQLite, PostgreSQL) share, written once: every store operation
//! ([`SqlOps`], the [`ResourceStore`](crate::ResourceStore) methods and the [`WriteTxn`] steps
//! over a [`SqlCore`]'s pools), turning a `resources` or `changes` row into model values, the
//! labels column encoding, and sorting database errors into [`StoreError`]s.
//!
//! What a database does its own way is its [`Dialect`], implemented in its backend module: the
//! SQL text where the two differ (list filters and paging, the resource columns), how a write
//! takes the writer lock, deleting rows, appending to the change log (with PostgreSQL's
//! NOTIFY), how times are stored, and which error messages say so. Statements that differ
//! only in their placeholders are built here with [`QueryBuilder`].

use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::Arc;

use async_trait::async_trait;
use model::{Meta, Resource, ResourceKey, Spec};
use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};
use sqlx::types::Json;
use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, QueryBuilder, Row,
    SqlSafeStr, Transaction, Type,
};
use time::OffsetDateTime;

use crate::engine::{self, WriteTxn, action_from_name, kind_from_name};
use crate::feed::{self, ChangeBatch, ChangeSource, Waker};
use crate::query::next_offset;
use crate::{
    Applied, ChangeEvent, ChangeFeed, ListPage, ListQuery, Op, Result, Revision, Snapshot,
    StoreError, Stored,
};

/// What one SQL database does its own way; implemented for [`sqlx::Sqlite`] in `sqlite` and
/// for [`sqlx::Postgres`] in `postgres`. Everything else is [`SqlOps`], written once.
#[async_trait]
pub(crate) trait Dialect: Database {
    /// The backend name errors use.
    const BACKEND: &'static str;
    /// The statement that starts a write transaction; `None` for a plain `BEGIN`.
    const BEGIN_WRITE: Option<&'static str>;
    /// The statement that starts the transaction a snapshot is read in; `None` for a plain
    /// `BEGIN`.
    const BEGIN_SNAPSHOT: Option<&'static str>;
    /// Reads the store revision inside a write transaction and takes the writer lock, unless
    /// [`Dialect::BEGIN_WRITE`] took it already.
    const LOCK_REVISION: &'static str;
    /// What a failing [`Dialect::LOCK_REVISION`] in [`WriteTxn::lock`] was doing.
    const LOCK_CONTEXT: &'static str;
    /// What a failing commit of a write was doing.
    const COMMIT_CONTEXT: &'static str;
    /// The columns of a `resources` row as [`SqlOps::decode_row`] reads them (labels as text).
    const RESOURCE_COLUMNS: &'static str;
    /// The function `f(text, part)` that gives the 1-based position of `part` in `text`, 0 when
    /// it is absent (the list filter `name_contains`, free of LIKE's wildcards).
    const POSITION_FN: &'static str;

    /// How the `creation_time` and `modification_time` columns are bound and read.
    type Time: for<'r> Decode<'r, Self> + for<'q> Encode<'q, Self> + Type<Self> + Send + Sync;
    fn time_to_db(time: OffsetDateTime) -> Result<Self::Time>;
    /// The time read from `column`; the error message names the column.
    fn time_from_db(column: &str, value: Self::Time) -> Result<OffsetDateTime, String>;

    /// How many rows a statement changed.
    fn rows_affected(result: &Self::QueryResult) -> u64;

    /// Appends ` AND <resource carries every one of labels>` to a list query.
    fn push_label_filter(qb: &mut QueryBuilder<Self>, labels: &BTreeMap<String, String>);
    /// Appends the LIMIT and OFFSET of the page `query` asks for, if any.
    fn push_page(qb: &mut QueryBuilder<Self>, query: &ListQuery);

    /// [`WriteTxn::delete`].
    async fn delete(conn: &mut Self::Connection, keys: &[ResourceKey]) -> Result<()>;
    /// [`WriteTxn::record`].
    async fn record(conn: &mut Self::Connection, events: &[ChangeEvent]) -> Result<()>;
}

/// A migrator over a backend's embedded `(version, description, SQL)` schema migrations.
pub(crate) fn embedded_migrator(migrations: &[(i64, &'static str, &'static str)]) -> Migrator {
    Migrator::with_migrations(
        migrations
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    description.into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// Sorts an error of migrating the database at `location`: a failing statement like any
/// database error ([`db_error`]), the rest as [`StoreError::Backend`].
pub(crate) fn migrate_error(
    backend: &'static str,
    location: impl Display,
    error: MigrateError,
) -> StoreError {
    match error {
        MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) => {
            db_error(backend, format!("migrating {location}"), e)
        }
        other => StoreError::Backend {
            backend,
            message: format!("migrating {location}: {other}"),
        },
    }
}

/// The pools and the wake-up signal of one SQL store.
#[derive(Debug)]
pub(crate) struct SqlCore<D: Database> {
    /// Reads and change-feed reads.
    pub read: Pool<D>,
    /// Write transactions (may be the same pool as `read`).
    pub write: Pool<D>,
    /// Woken after every commit of this process.
    pub waker: Waker,
}

impl<D: Database> SqlCore<D> {
    pub(crate) fn new(read: Pool<D>, write: Pool<D>) -> Self {
        SqlCore {
            read,
            write,
            waker: Waker::new(),
        }
    }

    /// Closes the read pool, then the write pool.
    pub(crate) async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

/// A SQL backend's write transaction: [`SqlOps`] steps, and the [`Dialect`]'s own ones.
struct Txn<D: Database> {
    tx: Transaction<'static, D>,
}

/// A SQL backend's change log, read from the read pool.
struct Source<D: Database> {
    pool: Pool<D>,
}

const READ_REVISION: &str = "SELECT revision FROM store_revision WHERE id = 1";

/// Every store operation of the SQL backends, over any [`Dialect`].
///
/// Its one (blanket) impl states once the sqlx bounds the generic code needs (executors,
/// encodable and decodable column types); both dialects meet them, and generic callers such
/// as [`Txn`]'s [`WriteTxn`] impl need only `D: SqlOps`.
#[async_trait]
pub(crate) trait SqlOps: Dialect {
    async fn list(core: &SqlCore<Self>, query: &ListQuery) -> Result<ListPage>;
    async fn revision(core: &SqlCore<Self>) -> Result<Revision>;
    fn changes(core: &SqlCore<Self>, after: Revision) -> ChangeFeed;
    async fn commit(core: &SqlCore<Self>, ops: Vec<Op>) -> Result<Vec<Applied>>;
    async fn get_stored(core: &SqlCore<Self>, key: &ResourceKey) -> Result<Option<Stored>>;
    async fn snapshot(core: &SqlCore<Self>) -> Result<Snapshot>;
    async fn prune_changes(core: &SqlCore<Self>, keep_after: Revision) -> Result<u64>;

    /// Runs `sql`, which reads the store revision, on `conn`.
    async fn fetch_revision(
        conn: &mut Self::Connection,
        sql: &'static str,
        context: &str,
    ) -> Result<Revision>;
    async fn fetch_stored(conn: &mut Self::Connection, key: &ResourceKey)
    -> Result<Option<Stored>>;
    /// [`WriteTxn::insert`].
    async fn insert(
        conn: &mut Self::Connection,
        resource: &Resource,
        owner: Option<&ResourceKey>,
        revision: Revision,
    ) -> Result<bool>;
    /// [`WriteTxn::insert_many`].
    async fn insert_many(
        conn: &mut Self::Connection,
        rows: &[(&Resource, Revision)],
    ) -> Result<Vec<bool>>;
    /// [`WriteTxn::update`].
    async fn update(
        conn: &mut Self::Connection,
        resource: &Resource,
        expected: i64,
        revision: Revision,
    ) -> Result<Option<OffsetDateTime>>;
    /// [`WriteTxn::cascade`].
    async fn cascade(conn: &mut Self::Connection, key: &ResourceKey) -> Result<Vec<ResourceKey>>;
    async fn read_changes(pool: &Pool<Self>, after: Revision, limit: u32) -> Result<ChangeBatch>;

    /// Decodes a `resources` row read for `key` (or, in scans, for whatever it names).
    fn decode_row(row: &Self::Row, key: Option<&ResourceKey>) -> Result<Option<Stored>>;
    fn raw_resource(row: &Self::Row) -> Result<RawResource, String>;
}

#[async_trait]
impl<D> SqlOps for D
where
    D: Dialect,
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    D::Arguments: IntoArguments<D>,
    for<'q> &'q str: Encode<'q, D> + Type<D>,
    for<'q> Option<&'q str>: Encode<'q, D>,
    for<'q> i64: Encode<'q, D> + Decode<'q, D> + Type<D>,
    for<'q> String: Decode<'q, D> + Type<D>,
    for<'q> Option<String>: Decode<'q, D>,
    for<'q, 'a> Json<&'a BTreeMap<String, String>>: Encode<'q, D> + Type<D>,
    for<'a> &'a str: ColumnIndex<D::Row>,
{
    async fn list(core: &SqlCore<D>, query: &ListQuery) -> Result<ListPage> {
        let context = || format!("listing {}", query.kind);
        let mut qb = QueryBuilder::<D>::new(format!(
            "SELECT {}, count(*) OVER () AS total FROM resources",
            D::RESOURCE_COLUMNS
        ));
        push_filters(&mut qb, query);
        qb.push(" ORDER BY mesh, name");
        D::push_page(&mut qb, query);
        let rows = qb
            .build()
            .fetch_all(&core.read)
            .await
            .map_err(|e| db_error(D::BACKEND, context(), e))?;
        let mut items = Vec::with_capacity(rows.len());
        let mut total = None;
        for row in &rows {
            if total.is_none() {
                let t: i64 = row
                    .try_get("total")
                    .map_err(|e| db_error(D::BACKEND, context(), e))?;
                total = Some(usize::try_from(t).unwrap_or(0));
            }
            if let Some(stored) = D::decode_row(row, None)? {
                items.push(stored.resource);
            }
        }
        let total = match total {
            Some(total) => total,
            None if query.offset == 0 => 0,
            None => {
                let mut qb = QueryBuilder::<D>::new("SELECT count(*) AS total FROM resources");
                push_filters(&mut qb, query);
                let row = qb
                    .build()
                    .fetch_one(&core.read)
                    .await
                    .map_err(|e| db_error(D::BACKEND, context(), e))?;
                let n: i64 = row
                    .try_get("total")
                    .map_err(|e| db_error(D::BACKEND, context(), e))?;
                usize::try_from(n).unwrap_or(0)
            }
        };
        Ok(ListPage {
            next_offset: next_offset(query.offset, items.len(), total),
            items,
            total,
        })
    }

    async fn revision(core: &SqlCore<D>) -> Result<Revision> {
        let context = "reading the store revision";
        let mut conn = core
            .read
            .acquire()
            .await
            .map_err(|e| db_error(D::BACKEND, context, e))?;
        D::fetch_revision(&mut conn, READ_REVISION, context).await
    }

    fn changes(core: &SqlCore<D>, after: Revision) -> ChangeFeed {
        let source = Arc::new(Source {
            pool: core.read.clone(),
        });
        feed::feed(source, core.waker.subscribe(), after)
    }

    async fn commit(core: &SqlCore<D>, ops: Vec<Op>) -> Result<Vec<Applied>> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let mut txn = Txn {
            tx: begin(&core.write, D::BEGIN_WRITE, "starting a write").await?,
        };
        let applied = engine::execute(&mut txn, ops).await?;
        commit(txn.tx, D::COMMIT_CONTEXT).await?;
        // Other processes learn of it from the database (PostgreSQL's NOTIFY, or their poll);
        // wake this one's subscribers at once.
        if !applied.is_empty() {
            core.waker.wake();
        }
        Ok(applied)
    }

    async fn get_stored(core: &SqlCore<D>, key: &ResourceKey) -> Result<Option<Stored>> {
        let key = ResourceKey::new(key.kind, key.mesh.clone(), key.name.clone());
        let mut conn = core
            .read
            .acquire()
            .await
            .map_err(|e| db_error(D::BACKEND, format!("reading {key}"), e))?;
        D::fetch_stored(&mut conn, &key).await
    }

    async fn snapshot(core: &SqlCore<D>) -> Result<Snapshot> {
        let context = "reading a snapshot of every resource";
        let mut tx = begin(&core.read, D::BEGIN_SNAPSHOT, context).await?;
        let revision = D::fetch_revision(&mut tx, READ_REVISION, context).await?;
        let rows = select_resources::<D>()
            .build()
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| db_error(D::BACKEND, context, e))?;
        commit(tx, context).await?;
        let mut resources = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(stored) = D::decode_row(row, None)? {
                resources.push(stored);
            }
        }
        Ok(Snapshot {
            revision,
            resources,
        })
    }

    async fn prune_changes(core: &SqlCore<D>, keep_after: Revision) -> Result<u64> {
        let context = "pruning the change log";
        let mut tx = begin(&core.write, D::BEGIN_WRITE, "starting a write").await?;
        let current = D::fetch_revision(&mut tx, D::LOCK_REVISION, context).await?;
        let through = revision_to_db(D::BACKEND, keep_after.min(current))?;
        let removed = QueryBuilder::<D>::new("DELETE FROM changes WHERE revision <= ")
            .push_bind(through)
            .build()
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error(D::BACKEND, context, e))?;
        QueryBuilder::<D>::new("UPDATE store_revision SET pruned_through = ")
            .push_bind(through)
            .push(" WHERE id = 1 AND pruned_through < ")
            .push_bind(through)
            .build()
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error(D::BACKEND, context, e))?;
        commit(tx, context).await?;
        Ok(D::rows_affected(&removed))
    }

    async fn fetch_revision(
        conn: &mut D::Connection,
        sql: &'static str,
        context: &str,
    ) -> Result<Revision> {
        let row = sqlx::query(sql)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| db_error(D::BACKEND, context, e))?;
        let revision: i64 = row
            .try_get("revision")
            .map_err(|e| db_error(D::BACKEND, context, e))?;
        revision_from_db(D::BACKEND, revision)
    }

    async fn fetch_stored(conn: &mut D::Connection, key: &ResourceKey) -> Result<Option<Stored>> {
        let mut qb = select_resources::<D>();
        push_key(&mut qb, key);
        let row = qb
            .build()
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| db_error(D::BACKEND, format!("reading {key}"), e))?;
        match row {
            Some(row) => D::decode_row(&row, Some(key)),
            None => Ok(None),
        }
    }

    async fn insert(
        conn: &mut D::Connection,
        resource: &Resource,
        owner: Option<&ResourceKey>,
        revision: Revision,
    ) -> Result<bool> {
        let key = resource.key();
        let mut qb = QueryBuilder::<D>::new(
            "INSERT INTO resources (name, mesh, type, version, spec, creation_time,              modification_time, owner_name, owner_mesh, owner_type, labels, status, revision)              VALUES (",
        );
        qb.separated(", ")
            .push_bind(key.name.as_str())
            .push_bind(key.mesh.as_str())
            .push_bind(key.kind.name())
            .push_bind(version_to_db(resource.meta.version))
            .push_bind(resource.spec.to_json_string().as_str())
            .push_bind(D::time_to_db(resource.meta.creation_time)?)
            .push_bind(D::time_to_db(resource.meta.modification_time)?)
            .push_bind(owner.map(|o| o.name.as_str()))
            .push_bind(owner.map(|o| o.mesh.as_str()))
            .push_bind(owner.map(|o| o.kind.name()))
            .push_bind(Json(&resource.meta.labels))
            .push("'{}'")
            .push_bind(revision_to_db(D::BACKEND, revision)?);
        qb.push(") ON CONFLICT DO NOTHING");
        let result = qb
            .build()
            .execute(&mut *conn)
            .await
            .map_err(|e| db_error(D::BACKEND, format!("creating {key}"), e))?;
        Ok(D::rows_affected(&result) == 1)
    }

    async fn insert_many(
        conn: &mut D::Connection,
        rows: &[(&Resource, Revision)],
    ) -> Result<Vec<bool>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        // Encode first: binds borrow these strings.
        let mut values = Vec::with_capacity(rows.len());
        for (resource, revision) in rows {
            values.push((
                resource.key(),
                resource.spec.to_json_string(),
                D::time_to_db(resource.meta.creation_time)?,
                D::time_to_db(resource.meta.modification_time)?,
                revision_to_db(D::BACKEND, *revision)?,
                version_to_db(resource.meta.version),
                &resource.meta.labels,
            ));
        }
        let mut qb = QueryBuilder::<D>::new(
            "INSERT INTO resources (name, mesh, type, version, spec, creation_time, \
             modification_time, owner_name, owner_mesh, owner_type, labels, status, revision) ",
        );
        qb.push_values(
            &values,
            |mut row, (key, spec, created, modified, revision, version, labels)| {
                row.push_bind(key.name.as_str())
                    .push_bind(key.mesh.as_str())
                    .push_bind(key.kind.name())
                    .push_bind(*version)
                    .push_bind(spec.as_str())
                    .push_bind(created)
                    .push_bind(modified)
                    .push_bind(None::<&str>)
                    .push_bind(None::<&str>)
                    .push_bind(None::<&str>)
                    .push_bind(Json(*labels))
                    .push("'{}'")
                    .push_bind(*revision);
            },
        );
        qb.push(" ON CONFLICT DO NOTHING RETURNING name, mesh, type");
        let returned =
            qb.build().fetch_all(&mut *conn).await.map_err(|e| {
                db_error(D::BACKEND, format!("creating {} resources", rows.len()), e)
            })?;
        let mut created = std::collections::HashSet::with_capacity(returned.len());
        for row in &returned {
            let name: String = row
                .try_get("name")
                .map_err(|e| db_error(D::BACKEND, "reading inserted keys", e))?;
            let mesh: String = row
                .try_get("mesh")
                .map_err(|e| db_error(D::BACKEND, "reading inserted keys", e))?;
            let kind: String = row
                .try_get("type")
                .map_err(|e| db_error(D::BACKEND, "reading inserted keys", e))?;
            created.insert((kind, mesh, name));
        }
        Ok(values
            .iter()
            .map(|(key, ..)| {
                created.contains(&(
                    key.kind.name().to_string(),
                    key.mesh.clone(),
                    key.name.clone(),
                ))
            })
            .collect())
    }

    async fn update(
        conn: &mut D::Connection,
        resource: &Resource,
        expected: i64,
        revision: Revision,
    ) -> Result<Option<OffsetDateTime>> {
        let key = resource.key();
        let mut qb = QueryBuilder::<D>::new("UPDATE resources SET spec = ");
        qb.push_bind(resource.spec.to_json_string().as_str())
            .push(", version = ")
            .push_bind(version_to_db(resource.meta.version))
            .push(", modification_time = ")
            .push_bind(D::time_to_db(resource.meta.modification_time)?)
            .push(", labels = ")
            .push_bind(Json(&resource.meta.labels))
            .push(", revision = ")
            .push_bind(revision_to_db(D::BACKEND, revision)?);
        push_key(&mut qb, &key);
        qb.push(" AND version = ")
            .push_bind(expected)
            .push(" RETURNING creation_time");
        let context = || format!("updating {key}");
        let row = qb
            .build()
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| db_error(D::BACKEND, context(), e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let created: D::Time = row
            .try_get("creation_time")
            .map_err(|e| db_error(D::BACKEND, context(), e))?;
        D::time_from_db("creation_time", created)
            .map(Some)
            .map_err(|message| StoreError::Corrupt {
                key: key.clone(),
                message,
            })
    }

    async fn cascade(conn: &mut D::Connection, key: &ResourceKey) -> Result<Vec<ResourceKey>> {
        let mut qb = QueryBuilder::<D>::new(
            "WITH RECURSIVE doomed(name, mesh, type) AS (                 SELECT name, mesh, type FROM resources",
        );
        push_key(&mut qb, key);
        qb.push(
            " UNION                 SELECT r.name, r.mesh, r.type FROM resources r JOIN doomed d                   ON (r.owner_type = d.type AND r.owner_mesh = d.mesh AND r.owner_name = d.name)                   OR (d.type = 'Mesh' AND r.mesh = d.name AND r.mesh <> '')              ) SELECT type, mesh, name FROM doomed",
        );
        let rows = qb.build().fetch_all(&mut *conn).await.map_err(|e| {
            db_error(
                D::BACKEND,
                format!("finding what deleting {key} removes"),
                e,
            )
        })?;
        let mut keys = Vec::with_capacity(rows.len());
        for row in &rows {
            let read = |col: &str| {
                row.try_get::<String, _>(col)
                    .map_err(|e| StoreError::Corrupt {
                        key: key.clone(),
                        message: e.to_string(),
                    })
            };
            let kind_name = read("type")?;
            // A resource of a type this build does not know is still deleted by the cascade of
            // its owner (foreign key), but it has no key we can name; leave it out of the events.
            let Some(kind) = kind_from_name(&kind_name) else {
                tracing::warn!(backend = D::BACKEND, kind = %kind_name, "cascade removes a resource of an unknown type");
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

    async fn read_changes(pool: &Pool<D>, after: Revision, limit: u32) -> Result<ChangeBatch> {
        let mut qb = QueryBuilder::<D>::new(
            "SELECT s.revision AS current, s.pruned_through, c.revision, c.action, c.type,                     c.mesh, c.name              FROM store_revision s              LEFT JOIN (SELECT revision, action, type, mesh, name FROM changes                         WHERE revision > ",
        );
        qb.push_bind(revision_to_db(D::BACKEND, after)?)
            .push(" ORDER BY revision LIMIT ")
            .push_bind(i64::from(limit))
            .push(") c ON true WHERE s.id = 1 ORDER BY c.revision");
        let rows = qb.build().fetch_all(pool).await.map_err(|e| {
            db_error(
                D::BACKEND,
                format!("reading the change log after revision {after}"),
                e,
            )
        })?;
        if rows.is_empty() {
            return Err(StoreError::Backend {
                backend: D::BACKEND,
                message: "the store_revision row is missing".into(),
            });
        }
        let mut batch = ChangeBatch::default();
        for row in &rows {
            let get = |e: sqlx::Error| StoreError::Backend {
                backend: D::BACKEND,
                message: format!("change log row: {e}"),
            };
            batch.current = revision_from_db(D::BACKEND, row.try_get("current").map_err(get)?)?;
            batch.pruned_through =
                revision_from_db(D::BACKEND, row.try_get("pruned_through").map_err(get)?)?;
            let revision: Option<i64> = row.try_get("revision").map_err(get)?;
            if let Some(revision) = revision {
                let raw = RawChange {
                    revision,
                    action: row.try_get("action").map_err(get)?,
                    kind: row.try_get("type").map_err(get)?,
                    mesh: row.try_get("mesh").map_err(get)?,
                    name: row.try_get("name").map_err(get)?,
                };
                batch.events.push(raw.decode(D::BACKEND)?);
            }
        }
        Ok(batch)
    }

    fn decode_row(row: &D::Row, key: Option<&ResourceKey>) -> Result<Option<Stored>> {
        match D::raw_resource(row) {
            Ok(raw) => raw.decode(D::BACKEND),
            Err(message) => Err(match key {
                Some(key) => StoreError::Corrupt {
                    key: key.clone(),
                    message,
                },
                None => StoreError::Backend {
                    backend: D::BACKEND,
                    message: format!("unreadable resources row: {message}"),
                },
            }),
        }
    }

    fn raw_resource(row: &D::Row) -> Result<RawResource, String> {
        let get = |e: sqlx::Error| e.to_string();
        let time = |col: &str| D::time_from_db(col, row.try_get(col).map_err(get)?);
        Ok(RawResource {
            kind: row.try_get("type").map_err(get)?,
            mesh: row.try_get("mesh").map_err(get)?,
            name: row.try_get("name").map_err(get)?,
            version: row.try_get("version").map_err(get)?,
            spec: row.try_get("spec").map_err(get)?,
            labels: row.try_get("labels").map_err(get)?,
            creation_time: time("creation_time")?,
            modification_time: time("modification_time")?,
            revision: row.try_get("revision").map_err(get)?,
        })
    }
}

#[async_trait]
impl<D: SqlOps> WriteTxn for Txn<D> {
    async fn lock(&mut self) -> Result<Revision> {
        D::fetch_revision(&mut self.tx, D::LOCK_REVISION, D::LOCK_CONTEXT).await
    }

    async fn get(&mut self, key: &ResourceKey) -> Result<Option<Stored>> {
        D::fetch_stored(&mut self.tx, key).await
    }

    async fn insert(
        &mut self,
        resource: &Resource,
        owner: Option<&ResourceKey>,
        revision: Revision,
    ) -> Result<bool> {
        D::insert(&mut self.tx, resource, owner, revision).await
    }

    async fn insert_many(&mut self, rows: &[(&Resource, Revision)]) -> Result<Vec<bool>> {
        D::insert_many(&mut self.tx, rows).await
    }

    async fn update(
        &mut self,
        resource: &Resource,
        expected: i64,
        revision: Revision,
    ) -> Result<Option<OffsetDateTime>> {
        D::update(&mut self.tx, resource, expected, revision).await
    }

    async fn cascade(&mut self, key: &ResourceKey) -> Result<Vec<ResourceKey>> {
        D::cascade(&mut self.tx, key).await
    }

    async fn delete(&mut self, keys: &[ResourceKey]) -> Result<()> {
        D::delete(&mut self.tx, keys).await
    }

    async fn record(&mut self, events: &[ChangeEvent]) -> Result<()> {
        D::record(&mut self.tx, events).await
    }
}

#[async_trait]
impl<D: SqlOps> ChangeSource for Source<D> {
    fn backend(&self) -> &'static str {
        D::BACKEND
    }

    async fn read_changes(&self, after: Revision, limit: u32) -> Result<ChangeBatch> {
        D::read_changes(&self.pool, after, limit).await
    }
}

/// Implements [`ResourceStore`](crate::ResourceStore) for the store type `$store` of dialect
/// `$dialect` by handing every method to [`SqlOps`] with the [`SqlCore`] at `self.$core`.
macro_rules! sql_resource_store {
    ($store:ty, $dialect:ty, $($core:ident).+) => {
        #[async_trait::async_trait]
        impl $crate::ResourceStore for $store {
            async fn list(&self, query: &$crate::ListQuery) -> $crate::Result<$crate::ListPage> {
                <$dialect as $crate::sql::SqlOps>::list(&self.$($core).+, query).await
            }

            async fn revision(&self) -> $crate::Result<$crate::Revision> {
                <$dialect as $crate::sql::SqlOps>::revision(&self.$($core).+).await
            }

            fn changes(&self, after: $crate::Revision) -> $crate::ChangeFeed {
                <$dialect as $crate::sql::SqlOps>::changes(&self.$($core).+, after)
            }

            async fn commit(
                &self,
                ops: Vec<$crate::Op>,
            ) -> $crate::Result<Vec<$crate::Applied>> {
                <$dialect as $crate::sql::SqlOps>::commit(&self.$($core).+, ops).await
            }

            async fn get_stored(
                &self,
                key: &::model::ResourceKey,
            ) -> $crate::Result<Option<$crate::Stored>> {
                <$dialect as $crate::sql::SqlOps>::get_stored(&self.$($core).+, key).await
            }

            async fn snapshot(&self) -> $crate::Result<$crate::Snapshot> {
                <$dialect as $crate::sql::SqlOps>::snapshot(&self.$($core).+).await
            }

            async fn prune_changes(&self, keep_after: $crate::Revision) -> $crate::Result<u64> {
                <$dialect as $crate::sql::SqlOps>::prune_changes(&self.$($core).+, keep_after)
                    .await
            }

            fn backend_name(&self) -> &'static str {
                <$dialect as $crate::sql::Dialect>::BACKEND
            }
        }
    };
}
pub(crate) use sql_resource_store;

/// Starts a transaction on `pool` with `statement` (`None`: a plain `BEGIN`); [`commit`] ends it.
async fn begin<D: Dialect>(
    pool: &Pool<D>,
    statement: Option<&'static str>,
    context: &str,
) -> Result<Transaction<'static, D>> {
    match statement {
        Some(statement) => pool.begin_with(statement).await,
        None => pool.begin().await,
    }
    .map_err(|e| db_error(D::BACKEND, context, e))
}

async fn commit<D: Dialect>(tx: Transaction<'static, D>, context: &str) -> Result<()> {
    tx.commit()
        .await
        .map_err(|e| db_error(D::BACKEND, context, e))
}

/// `SELECT <resource columns> FROM resources`.
fn select_resources<D: Dialect>() -> QueryBuilder<D> {
    QueryBuilder::new(format!("SELECT {} FROM resources", D::RESOURCE_COLUMNS))
}

/// Appends the WHERE clause of `query` (type, mesh, name and label filters).
fn push_filters<D: Dialect>(qb: &mut QueryBuilder<D>, query: &ListQuery)
where
    for<'q> &'q str: Encode<'q, D> + Type<D>,
{
    qb.push(" WHERE type = ").push_bind(query.kind.name());
    if let Some(mesh) = &query.mesh
        && query.kind.is_mesh_scoped()
    {
        qb.push(" AND mesh = ").push_bind(mesh.as_str());
    }
    if let Some(part) = &query.name_contains {
        qb.push(format_args!(" AND {}(name, ", D::POSITION_FN))
            .push_bind(part.as_str())
            .push(") > 0");
    }
    if !query.labels.is_empty() {
        D::push_label_filter(qb, &query.labels);
    }
}

/// Appends ` WHERE type = … AND mesh = … AND name = …` for `key`.
fn push_key<D: Database>(qb: &mut QueryBuilder<D>, key: &ResourceKey)
where
    for<'q> &'q str: Encode<'q, D> + Type<D>,
{
    qb.push(" WHERE type = ")
        .push_bind(key.kind.name())
        .push(" AND mesh = ")
        .push_bind(key.mesh.as_str())
        .push(" AND name = ")
        .push_bind(key.name.as_str());
}

/// A resource version as the database stores it.
fn version_to_db(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

/// A page size or offset as the database takes it.
pub(crate) fn count_to_db(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The columns of a `resources` row, as every SQL backend reads them.
pub(crate) struct RawResource {
    pub kind: String,
    pub mesh: String,
    pub name: String,
    pub version: i64,
    pub spec: String,
    pub labels: Option<String>,
    pub creation_time: OffsetDateTime,
    pub modification_time: OffsetDateTime,
    pub revision: i64,
}

impl RawResource {
    /// The model value of the row; `Ok(None)` for a type this build does not know.
    pub(crate) fn decode(self, backend: &'static str) -> Result<Option<Stored>, StoreError> {
        let Some(kind) = kind_from_name(&self.kind) else {
            tracing::warn!(backend, kind = %self.kind, mesh = %self.mesh, name = %self.name,
                "skipping a resource of a type this build does not know");
            return Ok(None);
        };
        let key = ResourceKey::new(kind, self.mesh.clone(), self.name.clone());
        let corrupt = |message: String| StoreError::Corrupt {
            key: key.clone(),
            message,
        };
        let spec = Spec::from_json_str(kind, &self.spec).map_err(|e| corrupt(e.to_string()))?;
        let labels =
            decode_labels(self.labels.as_deref()).map_err(|e| corrupt(format!("labels: {e}")))?;
        let version = u64::try_from(self.version)
            .map_err(|_| corrupt(format!("negative version {}", self.version)))?;
        let revision = u64::try_from(self.revision)
            .map_err(|_| corrupt(format!("negative revision {}", self.revision)))?;
        let meta = Meta {
            name: self.name,
            mesh: self.mesh,
            version,
            creation_time: self.creation_time,
            modification_time: self.modification_time,
            labels,
        };
        Ok(Some(Stored {
            resource: Resource { meta, spec },
            revision,
        }))
    }
}

/// A row of the `changes` table.
pub(crate) struct RawChange {
    pub revision: i64,
    pub action: String,
    pub kind: String,
    pub mesh: String,
    pub name: String,
}

impl RawChange {
    /// The revision and the event; the event is `None` for a type this build does not know.
    pub(crate) fn decode(
        self,
        backend: &'static str,
    ) -> Result<(Revision, Option<ChangeEvent>), StoreError> {
        let revision = u64::try_from(self.revision).map_err(|_| StoreError::Backend {
            backend,
            message: format!("change log holds a negative revision {}", self.revision),
        })?;
        let Some(kind) = kind_from_name(&self.kind) else {
            return Ok((revision, None));
        };
        let action = action_from_name(&self.action).ok_or_else(|| StoreError::Backend {
            backend,
            message: format!(
                "change log revision {revision}: unknown action {:?}",
                self.action
            ),
        })?;
        Ok((
            revision,
            Some(ChangeEvent {
                revision,
                action,
                kind,
                mesh: self.mesh,
                name: self.name,
            }),
        ))
    }
}

/// The labels column: a JSON object of strings.
pub(crate) fn encode_labels(labels: &BTreeMap<String, String>) -> String {
    serde_json::Value::Object(
        labels
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect(),
    )
    .to_string()
}

pub(crate) fn decode_labels(
    text: Option<&str>,
) -> Result<BTreeMap<String, String>, serde_json::Error> {
    match text {
        None | Some("null") | Some("") => Ok(BTreeMap::new()),
        Some(text) => serde_json::from_str(text),
    }
}

/// A counter value read from the database as a revision.
pub(crate) fn revision_from_db(backend: &'static str, value: i64) -> Result<Revision, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Backend {
        backend,
        message: format!("negative revision {value} in the database"),
    })
}

/// A revision as the database stores it.
pub(crate) fn revision_to_db(backend: &'static str, value: Revision) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Backend {
        backend,
        message: format!("revision {value} does not fit the database"),
    })
}

/// Sorts a database error: connection trouble is [`StoreError::Unavailable`], the rest is
/// [`StoreError::Backend`]. `context` says what was being done (naming the resource).
pub(crate) fn db_error(
    backend: &'static str,
    context: impl Display,
    error: sqlx::Error,
) -> StoreError {
    let message = format!("{context}: {error}");
    if is_unavailable(backend, &error) {
        StoreError::Unavailable { backend, message }
    } else {
        StoreError::Backend { backend, message }
    }
}

fn is_unavailable(backend: &'static str, error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => {
                let code = code.as_ref();
                if backend == crate::sqlite::BACKEND {
                    // SQLite: busy (5), locked (6), I/O error (10), full (13), cannot open
                    // (14); extended codes keep the primary code in the low byte.
                    code.parse::<i64>()
                        .map(|c| matches!(c & 0xff, 5 | 6 | 10 | 13 | 14))
                        .unwrap_or(false)
                } else {
                    // PostgreSQL: connection exception (08…), operator intervention such as
                    // pg_terminate_backend or shutdown (57P0…), too many connections or out of
                    // resources (53…).
                    code.starts_with("08") || code.starts_with("57P") || code.starts_with("53")
                }
            }
            None => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_roundtrip_and_tolerate_null() {
        let labels: BTreeMap<String, String> = [("kuma.io/zone", "z\"1"), ("a", "")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let text = encode_labels(&labels);
        assert_eq!(decode_labels(Some(&text)).ok(), Some(labels));
        assert_eq!(decode_labels(None).ok(), Some(BTreeMap::new()));
        assert_eq!(decode_labels(Some("null")).ok(), Some(BTreeMap::new()));
        assert!(decode_labels(Some("[1]")).is_err());
    }

    /// Writes bind labels as [`Json`]; SQLite keeps that text, which must stay what
    /// [`encode_labels`] (and so every existing database) has.
    #[tokio::test]
    async fn labels_bound_as_json_are_the_labels_column_text() {
        use sqlx::Connection;
        let labels: BTreeMap<String, String> = [("kuma.io/zone", "z\"1"), ("a", ""), ("é", "ü")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let stored: String = sqlx::query_scalar("SELECT ?")
            .bind(Json(&labels))
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(stored, encode_labels(&labels));
    }

    #[test]
    fn connection_errors_are_unavailable() {
        let io = || {
            sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "refused",
            ))
        };
        assert!(db_error("postgres", "reading x", io()).is_transient());
        assert!(db_error("postgres", "reading x", sqlx::Error::PoolTimedOut).is_transient());
        let other = db_error("sqlite", "reading x", sqlx::Error::RowNotFound);
        assert!(!other.is_transient());
        assert!(other.to_string().contains("reading x"), "{other}");
    }

    #[test]
    fn rows_of_unknown_types_are_skipped_and_bad_specs_are_corrupt() {
        let raw = |kind: &str, spec: &str| RawResource {
            kind: kind.into(),
            mesh: "m".into(),
            name: "n".into(),
            version: 1,
            spec: spec.into(),
            labels: None,
            creation_time: OffsetDateTime::UNIX_EPOCH,
            modification_time: OffsetDateTime::UNIX_EPOCH,
            revision: 1,
        };
        assert!(matches!(
            raw("MeshFutureThing", "{}").decode("sqlite"),
            Ok(None)
        ));
        match raw("TrafficRoute", "not json").decode("sqlite") {
            Err(e @ StoreError::Corrupt { .. }) => assert!(e.to_string().contains("\"n\""), "{e}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert!(matches!(
            raw("TrafficRoute", "{}").decode("sqlite"),
            Ok(Some(_))
        ));
    }
}
