//! A throwaway PostgreSQL database on the server a superuser URL points to: created empty,
//! dropped afterwards. Shared by the conformance suite (`harness.rs`) and the benchmark
//! (`benches/store.rs` includes this file).

use sqlx::Connection;

/// An empty database `name` on the server of `admin_url`, reachable at `url`.
pub struct PgDatabase {
    pub admin_url: String,
    pub name: String,
    pub url: String,
}

/// `url` with its database replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let root = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(query) => format!("{root}/{db}?{query}"),
        None => format!("{root}/{db}"),
    }
}

impl PgDatabase {
    /// Creates the empty database `name` on the server of `admin_url`.
    pub async fn create_on(admin_url: String, name: String) -> PgDatabase {
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("connecting to DATABASE_URL: {e}"));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("creating database {name}: {e}"));
        let _ = admin.close().await;
        let url = with_database(&admin_url, &name);
        PgDatabase {
            admin_url,
            name,
            url,
        }
    }

    /// Drops the database, closing whatever connections still use it; errors are ignored.
    pub async fn drop_database(&self) {
        let Ok(mut admin) = sqlx::PgConnection::connect(&self.admin_url).await else {
            return;
        };
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        )))
        .execute(&mut admin)
        .await;
        let _ = admin.close().await;
    }
}
