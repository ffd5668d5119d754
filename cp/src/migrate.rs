//! `migrate up`, shared by `kuma-global` and `kuma-zone`: applies the schema migrations this
//! version carries to the configured PostgreSQL database. SQLite migrates itself when it
//! opens and the memory store has no schema, so for them this only explains why it does
//! nothing.

use store::{BackendSettings, MigrateOutcome, StoreError};

use crate::config::{Config, StoreKind};

/// Why `migrate up` did not migrate.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// `store.type` is not `postgres`.
    #[error(
        "migrate up applies to the postgres store; store.type is {:?} ({})",
        .0.as_str(),
        nothing_to_do(*.0)
    )]
    NotPostgres(StoreKind),
    /// The database could not be reached or migrated.
    #[error("migrating {target}: {source}")]
    Postgres { target: String, source: StoreError },
}

fn nothing_to_do(kind: StoreKind) -> &'static str {
    match kind {
        StoreKind::Sqlite => "SQLite migrates itself when it opens",
        StoreKind::Memory => "the memory store has no schema",
        StoreKind::Postgres => "",
    }
}

/// Applies the migrations the PostgreSQL database of `config` lacks (safe to run from several
/// replicas at once: migrators take an advisory lock).
pub async fn up(config: &Config) -> Result<MigrateOutcome, MigrateError> {
    let BackendSettings::Postgres(pg) = config.store_settings().backend else {
        return Err(MigrateError::NotPostgres(config.store.kind));
    };
    store::postgres::migrate_up(&pg)
        .await
        .map_err(|source| MigrateError::Postgres {
            target: pg.describe(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn other_stores_explain_why_nothing_is_migrated() {
        let config = Config::default();
        let error = up(&config).await.expect_err("sqlite");
        assert_eq!(
            error.to_string(),
            r#"migrate up applies to the postgres store; store.type is "sqlite" (SQLite migrates itself when it opens)"#
        );
        let mut config = Config::default();
        config.store.kind = StoreKind::Memory;
        let error = up(&config).await.expect_err("memory");
        assert!(error.to_string().contains("no schema"), "{error}");
    }
}
