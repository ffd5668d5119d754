//! The PostgreSQL backend: Kuma's `resources` table plus our change log, a connection pool
//! configured by Kuma's `store.postgres.*` settings, schema migrations embedded in the binary
//! and applied only by [`migrate_up`] (`migrate up`), and a LISTEN/NOTIFY listener that wakes
//! change-feed subscribers when any process commits.
//!
//! Every write transaction first locks the single `store_revision` row (`SELECT … FOR UPDATE`),
//! allocates its revisions from it and holds the lock until it commits; so revisions are dense
//! and commit order is revision order, and a feed reader can never see revision n+1 before n.
//! The NOTIFY is sent inside the transaction and therefore delivered only on commit.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBuilder};
use model::{Resource, ResourceKey};
use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow, PgSslMode};
use sqlx::{Postgres, QueryBuilder, Row, SqlSafeStr, Transaction};
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};
use tokio::task::JoinHandle;

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
pub const BACKEND: &str = "postgres";

/// The NOTIFY channel writers signal on commit; the payload is the newest revision.
pub const CHANNEL: &str = "kuma_rs_store_changes";

/// TLS towards PostgreSQL (`store.postgres.tls.mode`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum TlsMode {
    /// `disable`: plain TCP.
    #[default]
    Disable,
    /// `verifyNone`: TLS without verifying the server certificate.
    VerifyNone,
    /// `verifyCa`: TLS, the server certificate must be signed by the CA.
    VerifyCa,
    /// `verifyFull`: like `verifyCa`, and the host name must match the certificate.
    VerifyFull,
}

impl FromStr for TlsMode {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "disable" => TlsMode::Disable,
            "verifyNone" => TlsMode::VerifyNone,
            "verifyCa" => TlsMode::VerifyCa,
            "verifyFull" => TlsMode::VerifyFull,
            other => {
                return Err(StoreError::Backend {
                    backend: BACKEND,
                    message: format!(
                        "store.postgres.tls.mode {other:?} is not one of disable, verifyNone, verifyCa, verifyFull"
                    ),
                });
            }
        })
    }
}

/// `store.postgres.tls.*`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PostgresTls {
    pub mode: TlsMode,
    /// `caPath`: CA certificate (PEM) for `verifyCa` / `verifyFull`.
    pub ca_path: Option<PathBuf>,
    /// `certPath`: client certificate (PEM).
    pub cert_path: Option<PathBuf>,
    /// `keyPath`: client key (PEM).
    pub key_path: Option<PathBuf>,
}

/// Connection and pool settings, named after Kuma's `store.postgres.*` keys (the config crate
/// maps them onto this struct). Defaults are Kuma's.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresSettings {
    /// `host`
    pub host: String,
    /// `port` (Kuma's default 15432)
    pub port: u16,
    /// `user`
    pub user: String,
    /// `password`
    pub password: String,
    /// `dbName`
    pub db_name: String,
    /// `connectionTimeout` (seconds in Kuma's config): how long to wait for a connection.
    pub connection_timeout: Duration,
    /// `maxOpenConnections`
    pub max_open_connections: u32,
    /// `minOpenConnections`
    pub min_open_connections: u32,
    /// `maxConnectionIdleTime`; zero keeps idle connections forever.
    pub max_connection_idle_time: Duration,
    /// `maxConnectionLifetime`; zero keeps connections forever.
    pub max_connection_lifetime: Duration,
    /// `tls.*`
    pub tls: PostgresTls,
    /// A `postgres://user:password@host:port/db?sslmode=…` URL (tests, tools). When set it
    /// replaces host, port, user, password, dbName and TLS; the pool settings still apply.
    pub url: Option<String>,
}

impl Default for PostgresSettings {
    fn default() -> Self {
        PostgresSettings {
            host: "127.0.0.1".into(),
            port: 15432,
            user: "kuma".into(),
            password: "kuma".into(),
            db_name: "kuma".into(),
            connection_timeout: Duration::from_secs(5),
            max_open_connections: 50,
            min_open_connections: 0,
            max_connection_idle_time: Duration::from_secs(30 * 60),
            max_connection_lifetime: Duration::from_secs(60 * 60),
            tls: PostgresTls::default(),
            url: None,
        }
    }
}

impl fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("db_name", &self.db_name)
            .field("connection_timeout", &self.connection_timeout)
            .field("max_open_connections", &self.max_open_connections)
            .field("min_open_connections", &self.min_open_connections)
            .field("max_connection_idle_time", &self.max_connection_idle_time)
            .field("max_connection_lifetime", &self.max_connection_lifetime)
            .field("tls", &self.tls)
            .field("url", &self.url.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl PostgresSettings {
    /// Settings that connect by URL, with Kuma's pool defaults.
    pub fn from_url(url: impl Into<String>) -> Self {
        PostgresSettings {
            url: Some(url.into()),
            ..PostgresSettings::default()
        }
    }

    /// The connection options these settings describe.
    pub fn connect_options(&self) -> Result<PgConnectOptions> {
        let mut options = match &self.url {
            Some(url) => PgConnectOptions::from_str(url).map_err(|e| StoreError::Backend {
                backend: BACKEND,
                message: format!("store.postgres URL is invalid: {e}"),
            })?,
            None => PgConnectOptions::new_without_pgpass()
                .host(&self.host)
                .port(self.port)
                .username(&self.user)
                .password(&self.password)
                .database(&self.db_name)
                .ssl_mode(match self.tls.mode {
                    TlsMode::Disable => PgSslMode::Disable,
                    TlsMode::VerifyNone => PgSslMode::Require,
                    TlsMode::VerifyCa => PgSslMode::VerifyCa,
                    TlsMode::VerifyFull => PgSslMode::VerifyFull,
                }),
        };
        if let Some(ca) = &self.tls.ca_path {
            options = options.ssl_root_cert(ca);
        }
        if let Some(cert) = &self.tls.cert_path {
            options = options.ssl_client_cert(cert);
        }
        if let Some(key) = &self.tls.key_path {
            options = options.ssl_client_key(key);
        }
        Ok(options.application_name("kuma-rs"))
    }

    /// `host:port/db`, for messages (never the password).
    pub fn describe(&self) -> String {
        match self.connect_options() {
            Ok(o) => format!(
                "{}:{}/{}",
                o.get_host(),
                o.get_port(),
                o.get_database().unwrap_or("")
            ),
            Err(_) => "an invalid URL".into(),
        }
    }

    fn pool_options(&self) -> PgPoolOptions {
        let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
        PgPoolOptions::new()
            .max_connections(self.max_open_connections.max(1))
            .min_connections(
                self.min_open_connections
                    .min(self.max_open_connections.max(1)),
            )
            .acquire_timeout(self.connection_timeout)
            .idle_timeout(nonzero(self.max_connection_idle_time))
            .max_lifetime(nonzero(self.max_connection_lifetime))
            .test_before_acquire(true)
    }

    async fn connect(&self, pool_options: PgPoolOptions) -> Result<PgPool> {
        let options = self.connect_options()?;
        pool_options
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unavailable {
                backend: BACKEND,
                message: format!("connecting to PostgreSQL at {}: {e}", self.describe()),
            })
    }
}

/// What [`migrate_up`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MigrateOutcome {
    /// The schema was moved from version `from` (0: empty database) to `to`.
    Migrated { from: i64, to: i64 },
    /// The schema was already at `version`.
    AlreadyMigrated { version: i64 },
}

impl fmt::Display for MigrateOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MigrateOutcome::Migrated { from, to } => {
                write!(f, "DB has been migrated from version {from} to {to}")
            }
            MigrateOutcome::AlreadyMigrated { version } => {
                write!(f, "DB has already been migrated (version {version})")
            }
        }
    }
}

/// The embedded schema migrations.
fn migrator() -> Migrator {
    Migrator::with_migrations(vec![Migration::new(
        1,
        "init".into(),
        MigrationType::Simple,
        include_str!("../migrations/postgres/0001_init.sql").into_sql_str(),
        false,
    )])
}

/// The newest schema version this build has.
pub fn schema_version() -> i64 {
    migrator().iter().map(|m| m.version).max().unwrap_or(0)
}

/// Where a database's schema stands relative to this build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SchemaState {
    Current {
        version: i64,
    },
    /// Needs `migrate up`.
    Behind {
        found: i64,
        wanted: i64,
    },
    /// Written by a newer build.
    Ahead {
        found: i64,
        wanted: i64,
    },
    /// An applied migration differs from the embedded one, or failed half-way.
    Damaged {
        message: String,
    },
}

/// Reads the applied migrations and compares them with the embedded ones.
pub async fn schema_state(pool: &PgPool) -> Result<SchemaState> {
    let migrator = migrator();
    let wanted = schema_version();
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await
        .map_err(|e| db_error(BACKEND, "reading the schema version", e))?;
    let rows = if exists {
        sqlx::query("SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version")
            .fetch_all(pool)
            .await
            .map_err(|e| db_error(BACKEND, "reading the schema version", e))?
    } else {
        Vec::new()
    };
    let mut found = 0;
    let mut ahead = false;
    for row in &rows {
        let read = |e: sqlx::Error| db_error(BACKEND, "reading the schema version", e);
        let version: i64 = row.try_get("version").map_err(read)?;
        let success: bool = row.try_get("success").map_err(read)?;
        let checksum: Vec<u8> = row.try_get("checksum").map_err(read)?;
        if !success {
            return Ok(SchemaState::Damaged {
                message: format!("migration {version} did not complete"),
            });
        }
        match migrator.iter().find(|m| m.version == version) {
            Some(m) if *m.checksum != *checksum => {
                return Ok(SchemaState::Damaged {
                    message: format!(
                        "migration {version} applied to the database differs from this build's"
                    ),
                });
            }
            Some(_) => {}
            None => ahead = true,
        }
        found = found.max(version);
    }
    if ahead || found > wanted {
        return Ok(SchemaState::Ahead { found, wanted });
    }
    let complete = migrator.iter().all(|m| {
        rows.iter().any(|r| {
            r.try_get::<i64, _>("version")
                .map(|v| v == m.version)
                .unwrap_or(false)
        })
    });
    if complete {
        Ok(SchemaState::Current { version: found })
    } else {
        Ok(SchemaState::Behind { found, wanted })
    }
}

/// `migrate up`: applies the embedded migrations that the database lacks (serialized against
/// concurrent migrators with an advisory lock).
pub async fn migrate_up(settings: &PostgresSettings) -> Result<MigrateOutcome> {
    let pool = settings
        .connect(
            settings
                .pool_options()
                .max_connections(2)
                .min_connections(0),
        )
        .await?;
    let result = async {
        let from = match schema_state(&pool).await? {
            SchemaState::Current { version } => {
                return Ok(MigrateOutcome::AlreadyMigrated { version });
            }
            SchemaState::Behind { found, .. } => found,
            SchemaState::Ahead { found, wanted } => {
                return Err(StoreError::Backend {
                    backend: BACKEND,
                    message: format!(
                        "DB at {} is migrated to version {found}, newer than this build's {wanted}",
                        settings.describe()
                    ),
                });
            }
            SchemaState::Damaged { message } => {
                return Err(StoreError::Backend {
                    backend: BACKEND,
                    message: format!("{}: {message}", settings.describe()),
                });
            }
        };
        migrator().run(&pool).await.map_err(|e| match e {
            MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) => {
                db_error(BACKEND, format!("migrating {}", settings.describe()), e)
            }
            other => StoreError::Backend {
                backend: BACKEND,
                message: format!("migrating {}: {other}", settings.describe()),
            },
        })?;
        Ok(MigrateOutcome::Migrated {
            from,
            to: schema_version(),
        })
    }
    .await;
    pool.close().await;
    result
}

/// Aborts a background task when dropped.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A store in a PostgreSQL database.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: PgPool,
    waker: Waker,
    _listener: AbortOnDrop,
}

impl PostgresStore {
    /// Connects, checks that the schema is the one this build needs (else
    /// [`StoreError::NotMigrated`]: run `migrate up`) and starts the change listener.
    pub async fn open(settings: &PostgresSettings) -> Result<PostgresStore> {
        let pool = settings.connect(settings.pool_options()).await?;
        match schema_state(&pool).await {
            Ok(SchemaState::Current { .. }) => {}
            Ok(SchemaState::Behind { found, wanted }) => {
                pool.close().await;
                return Err(StoreError::NotMigrated { found, wanted });
            }
            Ok(SchemaState::Ahead { found, wanted }) => {
                pool.close().await;
                return Err(StoreError::Backend {
                    backend: BACKEND,
                    message: format!(
                        "DB at {} is migrated to version {found}, newer than this build's {wanted}",
                        settings.describe()
                    ),
                });
            }
            Ok(SchemaState::Damaged { message }) => {
                pool.close().await;
                return Err(StoreError::Backend {
                    backend: BACKEND,
                    message: format!("{}: {message}", settings.describe()),
                });
            }
            Err(e) => {
                pool.close().await;
                return Err(e);
            }
        }
        let listener_pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(settings.connection_timeout)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_lazy_with(settings.connect_options()?);
        let waker = Waker::new();
        let listener = tokio::spawn(listen(listener_pool, waker.clone()));
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                pool,
                waker,
                _listener: AbortOnDrop(listener),
            }),
        })
    }

    /// The connection pool, for benchmarks that compare against plain SQL.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.inner.pool.close().await;
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>> {
        self.inner
            .pool
            .begin()
            .await
            .map_err(|e| db_error(BACKEND, "starting a write", e))
    }
}

/// Listens on [`CHANNEL`] and wakes the feed subscribers of this process on each notification
/// and after every (re)connection (notifications sent while disconnected are lost; the woken
/// subscribers re-read the log). Reconnects with exponential backoff, forever.
async fn listen(pool: PgPool, waker: Waker) {
    let backoff_builder = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(10))
        .with_jitter()
        .without_max_times();
    let mut backoff = backoff_builder.build();
    loop {
        let connected = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        match connected {
            Ok(mut listener) => {
                backoff = backoff_builder.build();
                tracing::debug!(channel = CHANNEL, "change listener connected");
                waker.wake();
                loop {
                    match listener.try_recv().await {
                        // A notification, or a lost connection that was re-established.
                        Ok(_) => waker.wake(),
                        Err(e) => {
                            tracing::warn!(error = %e, "change listener lost its connection to PostgreSQL; reconnecting");
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "change listener cannot connect to PostgreSQL; retrying")
            }
        }
        // Subscribers fall back to polling meanwhile.
        waker.wake();
        tokio::time::sleep(backoff.next().unwrap_or(Duration::from_secs(10))).await;
    }
}

fn to_db_time(t: OffsetDateTime) -> PrimitiveDateTime {
    let utc = t.to_offset(UtcOffset::UTC);
    PrimitiveDateTime::new(utc.date(), utc.time())
}

const SELECT_RESOURCE: &str = "SELECT type, mesh, name, version, spec, labels::text AS labels, creation_time, \
     modification_time, revision FROM resources";

fn raw_resource(row: &PgRow) -> std::result::Result<RawResource, sqlx::Error> {
    Ok(RawResource {
        kind: row.try_get("type")?,
        mesh: row.try_get("mesh")?,
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        spec: row.try_get("spec")?,
        labels: row.try_get("labels")?,
        creation_time: row
            .try_get::<PrimitiveDateTime, _>("creation_time")?
            .assume_utc(),
        modification_time: row
            .try_get::<PrimitiveDateTime, _>("modification_time")?
            .assume_utc(),
        revision: row.try_get("revision")?,
    })
}

fn decode_row(row: &PgRow, key: Option<&ResourceKey>) -> Result<Option<Stored>> {
    match raw_resource(row) {
        Ok(raw) => raw.decode(BACKEND),
        Err(e) => Err(match key {
            Some(key) => StoreError::Corrupt {
                key: key.clone(),
                message: e.to_string(),
            },
            None => StoreError::Backend {
                backend: BACKEND,
                message: format!("unreadable resources row: {e}"),
            },
        }),
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

struct Txn {
    tx: Transaction<'static, Postgres>,
}

#[async_trait]
impl WriteTxn for Txn {
    async fn lock(&mut self) -> Result<Revision> {
        let revision: i64 =
            sqlx::query_scalar("SELECT revision FROM store_revision WHERE id = 1 FOR UPDATE")
                .fetch_one(&mut *self.tx)
                .await
                .map_err(|e| db_error(BACKEND, "locking the store revision", e))?;
        revision_from_db(BACKEND, revision)
    }

    async fn get(&mut self, key: &ResourceKey) -> Result<Option<Stored>> {
        let row = sqlx::query(SELECT_ONE)
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, '{}'::jsonb, $12) ON CONFLICT DO NOTHING",
        )
        .bind(&key.name)
        .bind(&key.mesh)
        .bind(key.kind.name())
        .bind(to_i64(resource.meta.version))
        .bind(resource.spec.to_json_string())
        .bind(to_db_time(resource.meta.creation_time))
        .bind(to_db_time(resource.meta.modification_time))
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
        let created: Option<PrimitiveDateTime> = sqlx::query_scalar(
            "UPDATE resources SET spec = $1, version = $2, modification_time = $3, labels = $4::jsonb, revision = $5 \
             WHERE type = $6 AND mesh = $7 AND name = $8 AND version = $9 RETURNING creation_time",
        )
        .bind(resource.spec.to_json_string())
        .bind(to_i64(resource.meta.version))
        .bind(to_db_time(resource.meta.modification_time))
        .bind(encode_labels(&resource.meta.labels))
        .bind(revision_to_db(BACKEND, revision)?)
        .bind(key.kind.name())
        .bind(&key.mesh)
        .bind(&key.name)
        .bind(expected)
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(|e| db_error(BACKEND, format!("updating {key}"), e))?;
        Ok(created.map(PrimitiveDateTime::assume_utc))
    }

    async fn cascade(&mut self, key: &ResourceKey) -> Result<Vec<ResourceKey>> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "WITH RECURSIVE doomed(name, mesh, type) AS ( \
                SELECT name, mesh, type FROM resources WHERE type = $1 AND mesh = $2 AND name = $3 \
              UNION \
                SELECT r.name, r.mesh, r.type FROM resources r JOIN doomed d \
                  ON (r.owner_type = d.type AND r.owner_mesh = d.mesh AND r.owner_name = d.name) \
                  OR (d.type = 'Mesh' AND r.mesh = d.name AND r.mesh <> '') \
             ) SELECT type::text, mesh::text, name::text FROM doomed",
        )
        .bind(key.kind.name())
        .bind(&key.mesh)
        .bind(&key.name)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(|e| db_error(BACKEND, format!("finding what deleting {key} removes"), e))?;
        let mut keys = Vec::with_capacity(rows.len());
        for (kind_name, mesh, name) in rows {
            match engine::kind_from_name(&kind_name) {
                Some(kind) => keys.push(ResourceKey { kind, mesh, name }),
                // Still deleted (owner foreign key), but it has no key we can name.
                None => {
                    tracing::warn!(backend = BACKEND, kind = %kind_name, "cascade removes a resource of an unknown type")
                }
            }
        }
        Ok(keys)
    }

    async fn delete(&mut self, keys: &[ResourceKey]) -> Result<()> {
        let kinds: Vec<&str> = keys.iter().map(|k| k.kind.name()).collect();
        let meshes: Vec<&str> = keys.iter().map(|k| k.mesh.as_str()).collect();
        let names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
        let context = || match keys.first() {
            Some(first) => format!("deleting {first}"),
            None => "deleting".into(),
        };
        sqlx::query(
            "DELETE FROM resources WHERE (type, mesh, name) IN \
             (SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[]))",
        )
        .bind(kinds)
        .bind(meshes)
        .bind(names)
        .execute(&mut *self.tx)
        .await
        .map_err(|e| db_error(BACKEND, context(), e))?;
        Ok(())
    }

    async fn record(&mut self, events: &[ChangeEvent]) -> Result<()> {
        let Some(last) = events.last() else {
            return Ok(());
        };
        let mut revisions = Vec::with_capacity(events.len());
        for e in events {
            revisions.push(revision_to_db(BACKEND, e.revision)?);
        }
        let actions: Vec<&str> = events.iter().map(|e| action_name(e.action)).collect();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.name()).collect();
        let meshes: Vec<&str> = events.iter().map(|e| e.mesh.as_str()).collect();
        let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
        let last = revision_to_db(BACKEND, last.revision)?;
        sqlx::query(
            "WITH ins AS ( \
                INSERT INTO changes (revision, action, type, mesh, name) \
                SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[]) \
             ), upd AS ( \
                UPDATE store_revision SET revision = $6 WHERE id = 1 \
             ) SELECT pg_notify($7, $6::text)",
        )
        .bind(revisions)
        .bind(actions)
        .bind(kinds)
        .bind(meshes)
        .bind(names)
        .bind(last)
        .bind(CHANNEL)
        .execute(&mut *self.tx)
        .await
        .map_err(|e| db_error(BACKEND, "appending to the change log", e))?;
        Ok(())
    }
}

const SELECT_ONE: &str = "SELECT type, mesh, name, version, spec, labels::text AS labels, creation_time, \
     modification_time, revision FROM resources WHERE type = $1 AND mesh = $2 AND name = $3";

struct Source {
    pool: PgPool,
}

#[async_trait]
impl ChangeSource for Source {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn read_changes(&self, after: Revision, limit: u32) -> Result<ChangeBatch> {
        let rows = sqlx::query(
            "SELECT s.revision AS current, s.pruned_through, c.revision, c.action::text, c.type::text, \
                    c.mesh::text, c.name::text \
             FROM store_revision s \
             LEFT JOIN (SELECT revision, action, type, mesh, name FROM changes \
                        WHERE revision > $1 ORDER BY revision LIMIT $2) c ON true \
             WHERE s.id = 1 ORDER BY c.revision",
        )
        .bind(revision_to_db(BACKEND, after)?)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| db_error(BACKEND, format!("reading the change log after revision {after}"), e))?;
        if rows.is_empty() {
            return Err(StoreError::Backend {
                backend: BACKEND,
                message: "the store_revision row is missing".into(),
            });
        }
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
        Ok(batch)
    }
}

/// Appends the WHERE clause of `query` (type, mesh, name and label filters).
fn push_filters(qb: &mut QueryBuilder<Postgres>, query: &ListQuery) {
    qb.push(" WHERE type = ").push_bind(query.kind.name());
    if let Some(mesh) = &query.mesh
        && query.kind.is_mesh_scoped()
    {
        qb.push(" AND mesh = ").push_bind(mesh.clone());
    }
    if let Some(part) = &query.name_contains {
        qb.push(" AND strpos(name, ")
            .push_bind(part.clone())
            .push(") > 0");
    }
    if !query.labels.is_empty() {
        qb.push(" AND labels @> ")
            .push_bind(encode_labels(&query.labels))
            .push("::jsonb");
    }
}

fn usize_to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl ResourceStore for PostgresStore {
    async fn list(&self, query: &ListQuery) -> Result<ListPage> {
        let context = || format!("listing {}", query.kind);
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(SELECT_RESOURCE_WITH_TOTAL);
        push_filters(&mut qb, query);
        qb.push(" ORDER BY mesh, name");
        if let Some(size) = query.size {
            qb.push(" LIMIT ").push_bind(usize_to_i64(size));
        }
        if query.offset > 0 {
            qb.push(" OFFSET ").push_bind(usize_to_i64(query.offset));
        }
        let rows = qb
            .build()
            .fetch_all(&self.inner.pool)
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
                let mut qb: QueryBuilder<Postgres> =
                    QueryBuilder::new("SELECT count(*) FROM resources");
                push_filters(&mut qb, query);
                let n: i64 = qb
                    .build_query_scalar()
                    .fetch_one(&self.inner.pool)
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
            .fetch_one(&self.inner.pool)
            .await
            .map_err(|e| db_error(BACKEND, "reading the store revision", e))?;
        revision_from_db(BACKEND, revision)
    }

    fn changes(&self, after: Revision) -> ChangeFeed {
        let source = Arc::new(Source {
            pool: self.inner.pool.clone(),
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
            .map_err(|e| db_error(BACKEND, "committing (the outcome is unknown)", e))?;
        // Other processes learn from the NOTIFY; wake this one's subscribers without waiting
        // for it to come back.
        self.inner.waker.wake();
        Ok(applied)
    }

    async fn get_stored(&self, key: &ResourceKey) -> Result<Option<Stored>> {
        let key = ResourceKey::new(key.kind, key.mesh.clone(), key.name.clone());
        let row = sqlx::query(SELECT_ONE)
            .bind(key.kind.name())
            .bind(&key.mesh)
            .bind(&key.name)
            .fetch_optional(&self.inner.pool)
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
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(|e| db_error(BACKEND, context, e))?;
        let revision: i64 = sqlx::query_scalar("SELECT revision FROM store_revision WHERE id = 1")
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| db_error(BACKEND, context, e))?;
        let rows = sqlx::query(SELECT_RESOURCE)
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
        let current: i64 =
            sqlx::query_scalar("SELECT revision FROM store_revision WHERE id = 1 FOR UPDATE")
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| db_error(BACKEND, context, e))?;
        let through = revision_to_db(BACKEND, keep_after.min(revision_from_db(BACKEND, current)?))?;
        let removed = sqlx::query("DELETE FROM changes WHERE revision <= $1")
            .bind(through)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error(BACKEND, context, e))?
            .rows_affected();
        sqlx::query(
            "UPDATE store_revision SET pruned_through = GREATEST(pruned_through, $1) WHERE id = 1",
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

const SELECT_RESOURCE_WITH_TOTAL: &str = "SELECT type, mesh, name, version, spec, labels::text AS labels, \
     creation_time, modification_time, revision, count(*) OVER () AS total FROM resources";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kuma_defaults_and_names() {
        let s = PostgresSettings::default();
        assert_eq!(
            (s.port, s.max_open_connections, s.min_open_connections),
            (15432, 50, 0)
        );
        assert_eq!(s.connection_timeout, Duration::from_secs(5));
        assert_eq!(
            "verifyFull".parse::<TlsMode>().ok(),
            Some(TlsMode::VerifyFull)
        );
        assert_eq!(
            "verifyNone".parse::<TlsMode>().ok(),
            Some(TlsMode::VerifyNone)
        );
        assert!("verify-full".parse::<TlsMode>().is_err());
    }

    #[test]
    fn debug_hides_the_password() {
        let s = PostgresSettings {
            password: "s3cret".into(),
            ..PostgresSettings::from_url("postgres://u:s3cret@h/db")
        };
        let printed = format!("{s:?}");
        assert!(!printed.contains("s3cret"), "{printed}");
        assert_eq!(s.describe(), "h:5432/db");
    }

    #[test]
    fn settings_without_url_describe_host_port_db() {
        let s = PostgresSettings {
            host: "db.local".into(),
            db_name: "kuma".into(),
            ..PostgresSettings::default()
        };
        assert_eq!(s.describe(), "db.local:15432/kuma");
    }
}
