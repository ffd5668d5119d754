//! Maps the `store.*` settings onto the store crate's settings.

use store::postgres::{PostgresSettings, PostgresTls, TlsMode};
use store::{BackendSettings, StoreSettings};

use crate::config::{Config, PgTlsMode, StoreKind};

impl Config {
    /// Where and how to open the store this config names. The SQLite file defaults to
    /// `<general.workDir>/kuma.db`.
    pub fn store_settings(&self) -> StoreSettings {
        let backend = match self.store.kind {
            StoreKind::Memory => BackendSettings::Memory,
            StoreKind::Sqlite => BackendSettings::Sqlite {
                path: self
                    .store
                    .sqlite
                    .path
                    .clone()
                    .unwrap_or_else(|| store::sqlite::default_path(&self.general.work_dir)),
            },
            StoreKind::Postgres => {
                let pg = &self.store.postgres;
                BackendSettings::Postgres(PostgresSettings {
                    host: pg.host.clone(),
                    port: pg.port,
                    user: pg.user.clone(),
                    password: pg.password.expose().to_string(),
                    db_name: pg.db_name.clone(),
                    connection_timeout: std::time::Duration::from_secs(u64::from(
                        pg.connection_timeout,
                    )),
                    max_open_connections: pg.max_open_connections,
                    min_open_connections: pg.min_open_connections,
                    max_connection_idle_time: pg.max_connection_idle_time,
                    max_connection_lifetime: pg.max_connection_lifetime,
                    tls: PostgresTls {
                        mode: match pg.tls.mode {
                            PgTlsMode::Disable => TlsMode::Disable,
                            PgTlsMode::VerifyNone => TlsMode::VerifyNone,
                            PgTlsMode::VerifyCa => TlsMode::VerifyCa,
                            PgTlsMode::VerifyFull => TlsMode::VerifyFull,
                        },
                        ca_path: pg.tls.ca_path.clone(),
                        cert_path: pg.tls.cert_path.clone(),
                        key_path: pg.tls.key_path.clone(),
                    },
                    url: None,
                })
            }
        };
        StoreSettings {
            backend,
            cache: self.store.cache.enabled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Env;

    fn load(env: &[(&str, &str)]) -> Config {
        let env: Env = env
            .iter()
            .copied()
            .chain([("HOME", "/home/kuma")])
            .collect();
        Config::load(None, &env).expect("valid config").config
    }

    #[test]
    fn sqlite_is_the_default_under_the_work_dir() {
        let config = load(&[("KUMA_GENERAL_WORK_DIR", "/var/lib/kuma")]);
        assert_eq!(
            config.store_settings().backend,
            BackendSettings::Sqlite {
                path: "/var/lib/kuma/kuma.db".into()
            }
        );
    }

    #[test]
    fn postgres_settings_carry_over() {
        let config = load(&[
            ("KUMA_STORE_TYPE", "postgres"),
            ("KUMA_STORE_POSTGRES_HOST", "db.internal"),
            ("KUMA_STORE_POSTGRES_PORT", "5432"),
            ("KUMA_STORE_POSTGRES_PASSWORD", "s3cret"),
            ("KUMA_STORE_POSTGRES_TLS_MODE", "verifyFull"),
            (
                "KUMA_STORE_POSTGRES_TLS_ROOT_CERT_PATH",
                "/etc/kuma/pg-ca.pem",
            ),
            ("KUMA_STORE_CACHE_ENABLED", "false"),
        ]);
        let settings = config.store_settings();
        assert!(!settings.cache);
        let BackendSettings::Postgres(pg) = settings.backend else {
            panic!("postgres")
        };
        assert_eq!(
            (pg.host.as_str(), pg.port, pg.password.as_str()),
            ("db.internal", 5432, "s3cret")
        );
        assert_eq!(pg.tls.mode, TlsMode::VerifyFull);
        assert_eq!(pg.tls.ca_path, Some("/etc/kuma/pg-ca.pem".into()));
    }

    #[test]
    fn memory_store() {
        let config = load(&[("KUMA_STORE_TYPE", "memory")]);
        assert_eq!(config.store_settings().backend, BackendSettings::Memory);
    }
}
