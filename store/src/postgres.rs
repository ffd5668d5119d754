//! The PostgreSQL backend: Kuma's `resources` table plus our change log, a connection pool
//! configured by Kuma's `store.postgres.*` settings, schema migrations embedded in the binary
//! and applied only by [`migrate_up`] (`migrate up`), and a LISTEN/NOTIFY listener that wakes
//! change-feed subscribers when any process commits.
//!
//! Every write transaction first locks the single `store_revision` row (`SELECT … FOR UPDATE`),
//! allocates its revisions from it and holds the lock until it commits; so revisions are dense
//! and commit order is revision order, and a feed reader can never see revision n+1 before n.
//! The NOTIFY is sent inside the transaction and therefore delivered only on commit.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBuilder};
use model::ResourceKey;
use sqlx::migrate::Migrator;
use sqlx::postgres::{
    PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions, PgQueryResult, PgSslMode,
};
use sqlx::{Postgres, QueryBuilder, Row};
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};
use tokio::task::JoinHandle;

use crate::engine::action_name;
use crate::sql::{
    Dialect, SqlCore, count_to_db, db_error, embedded_migrator, encode_labels, migrate_error,
    revision_to_db, sql_resource_store,
};
use crate::{ChangeEvent, ListQuery, Result, StoreError};

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
    embedded_migrator(&[(
        1,
        "init",
        include_str!("../migrations/postgres/0001_init.sql"),
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

/// The error for a database migrated by a newer build.
fn newer_schema(settings: &PostgresSettings, found: i64, wanted: i64) -> StoreError {
    StoreError::Backend {
        backend: BACKEND,
        message: format!(
            "DB at {} is migrated to version {found}, newer than this build's {wanted}",
            settings.describe()
        ),
    }
}

/// The error for a database whose [`SchemaState::Damaged`] `message` says what is wrong.
fn damaged_schema(settings: &PostgresSettings, message: &str) -> StoreError {
    StoreError::Backend {
        backend: BACKEND,
        message: format!("{}: {message}", settings.describe()),
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
                return Err(newer_schema(settings, found, wanted));
            }
            SchemaState::Damaged { message } => return Err(damaged_schema(settings, &message)),
        };
        migrator()
            .run(&pool)
            .await
            .map_err(|e| migrate_error(BACKEND, settings.describe(), e))?;
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
    /// One pool for reads and writes.
    core: SqlCore<Postgres>,
    _listener: AbortOnDrop,
}

impl PostgresStore {
    /// Connects, checks that the schema is the one this build needs (else
    /// [`StoreError::NotMigrated`]: run `migrate up`) and starts the change listener.
    pub async fn open(settings: &PostgresSettings) -> Result<PostgresStore> {
        let pool = settings.connect(settings.pool_options()).await?;
        let problem = match schema_state(&pool).await {
            Ok(SchemaState::Current { .. }) => None,
            Ok(SchemaState::Behind { found, wanted }) => {
                Some(StoreError::NotMigrated { found, wanted })
            }
            Ok(SchemaState::Ahead { found, wanted }) => Some(newer_schema(settings, found, wanted)),
            Ok(SchemaState::Damaged { message }) => Some(damaged_schema(settings, &message)),
            Err(e) => Some(e),
        };
        if let Some(e) = problem {
            pool.close().await;
            return Err(e);
        }
        let listener_pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(settings.connection_timeout)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_lazy_with(settings.connect_options()?);
        let core = SqlCore::new(pool.clone(), pool);
        let listener = tokio::spawn(listen(listener_pool, core.waker.clone()));
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                core,
                _listener: AbortOnDrop(listener),
            }),
        })
    }

    /// The connection pool, for benchmarks that compare against plain SQL.
    pub fn pool(&self) -> &PgPool {
        &self.inner.core.read
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.inner.core.close().await;
    }
}

/// Listens on [`CHANNEL`] and wakes the feed subscribers of this process on each notification
/// and after every (re)connection (notifications sent while disconnected are lost; the woken
/// subscribers re-read the log). Reconnects with exponential backoff, forever.
async fn listen(pool: PgPool, waker: crate::feed::Waker) {
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

#[async_trait]
impl Dialect for Postgres {
    const BACKEND: &'static str = BACKEND;
    const BEGIN_WRITE: Option<&'static str> = None;
    const BEGIN_SNAPSHOT: Option<&'static str> =
        Some("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    const LOCK_REVISION: &'static str =
        "SELECT revision FROM store_revision WHERE id = 1 FOR UPDATE";
    const LOCK_CONTEXT: &'static str = "locking the store revision";
    const COMMIT_CONTEXT: &'static str = "committing (the outcome is unknown)";
    const RESOURCE_COLUMNS: &'static str = "type, mesh, name, version, spec, labels::text AS labels, \
         creation_time, modification_time, revision";
    const POSITION_FN: &'static str = "strpos";

    /// `timestamp` (without time zone), in UTC.
    type Time = PrimitiveDateTime;

    fn time_to_db(time: OffsetDateTime) -> Result<PrimitiveDateTime> {
        let utc = time.to_offset(UtcOffset::UTC);
        Ok(PrimitiveDateTime::new(utc.date(), utc.time()))
    }

    fn time_from_db(_column: &str, value: PrimitiveDateTime) -> Result<OffsetDateTime, String> {
        Ok(value.assume_utc())
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }

    fn push_label_filter(qb: &mut QueryBuilder<Postgres>, labels: &BTreeMap<String, String>) {
        qb.push(" AND labels @> ")
            .push_bind(encode_labels(labels))
            .push("::jsonb");
    }

    fn push_page(qb: &mut QueryBuilder<Postgres>, query: &ListQuery) {
        if let Some(size) = query.size {
            qb.push(" LIMIT ").push_bind(count_to_db(size));
        }
        if query.offset > 0 {
            qb.push(" OFFSET ").push_bind(count_to_db(query.offset));
        }
    }

    async fn delete(conn: &mut PgConnection, keys: &[ResourceKey]) -> Result<()> {
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
        .execute(&mut *conn)
        .await
        .map_err(|e| db_error(BACKEND, context(), e))?;
        Ok(())
    }

    /// One statement: append the events, move the revision and NOTIFY [`CHANNEL`] (delivered
    /// on commit).
    async fn record(conn: &mut PgConnection, events: &[ChangeEvent]) -> Result<()> {
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
        .execute(&mut *conn)
        .await
        .map_err(|e| db_error(BACKEND, "appending to the change log", e))?;
        Ok(())
    }
}

sql_resource_store!(PostgresStore, Postgres, inner.core);

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
