//! The store conformance suite: the same cases (`cases.rs`) against every backend — memory,
//! SQLite (temp dir), PostgreSQL (a fresh database per test on the `DATABASE_URL` server) and
//! the cache over SQLite and over PostgreSQL.
//!
//! PostgreSQL tests fail, never skip, when `DATABASE_URL` is unset: run them through
//! `cargo xtask test`, which starts a throwaway server, or point `DATABASE_URL` at a superuser
//! URL of a server you run.

mod cases;
mod harness;
mod pgdb;

/// One `#[tokio::test]` per case, running it against `$kind`.
macro_rules! tests {
    ($kind:expr => $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                crate::harness::run($kind, crate::cases::$case).await;
            }
        )*
    };
}

/// The cases every backend runs.
macro_rules! common {
    ($kind:expr) => {
        tests!($kind =>
            crud_roundtrip,
            global_scope_has_no_mesh,
            create_twice_is_already_exists,
            stale_update_is_conflict,
            concurrent_updates_one_wins,
            owner_must_exist,
            deleting_a_mesh_deletes_its_resources,
            deleting_an_owner_deletes_what_it_owns,
            paging_and_sorting,
            name_and_label_filters,
            feed_order_and_resume,
            feed_with_concurrent_writers,
            apply_is_atomic,
            prune_makes_old_revisions_compacted,
            feed_from_the_future_fails,
            snapshot_is_consistent,
            second_instance_sees_writes,
            reads_after_an_event_see_it,
            bulk_creates_are_atomic_and_in_order,
        );
    };
}

/// The cases of backends that persist: a reopened store is a new process.
macro_rules! persistent {
    ($kind:expr) => {
        tests!($kind =>
            feed_resumes_after_reopen,
            no_committed_write_lost_on_sigkill,
        );
    };
}

mod memory {
    common!(crate::harness::Kind::Memory);
}

mod sqlite {
    common!(crate::harness::Kind::Sqlite);
    persistent!(crate::harness::Kind::Sqlite);
}

mod cached_sqlite {
    common!(crate::harness::Kind::CachedSqlite);
    persistent!(crate::harness::Kind::CachedSqlite);
}

mod postgres {
    common!(crate::harness::Kind::Postgres);
    persistent!(crate::harness::Kind::Postgres);
    tests!(crate::harness::Kind::Postgres => survives_terminated_connections);

    /// `open` refuses a database that `migrate up` has not prepared, and says so.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_requires_migrate_up() {
        let db = crate::harness::PgDatabase::create().await;
        let settings = db.settings();
        let result = async {
            match store::postgres::PostgresStore::open(&settings).await {
                Err(e @ store::StoreError::NotMigrated { found: 0, .. }) => {
                    assert!(e.to_string().contains("migrate up"), "{e}");
                }
                Err(e) => panic!("expected NotMigrated, got {e}"),
                Ok(_) => panic!("expected NotMigrated, the store opened"),
            }
            let first = store::postgres::migrate_up(&settings).await;
            assert_eq!(
                first.ok(),
                Some(store::MigrateOutcome::Migrated {
                    from: 0,
                    to: store::postgres::schema_version()
                })
            );
            let second = store::postgres::migrate_up(&settings).await;
            assert_eq!(
                second.ok(),
                Some(store::MigrateOutcome::AlreadyMigrated {
                    version: store::postgres::schema_version()
                })
            );
            assert!(
                store::postgres::PostgresStore::open(&settings)
                    .await
                    .is_ok()
            );
        };
        let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(result)).await;
        db.drop_database().await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    /// A server that is not there is `Unavailable`, naming where it was looked for.
    #[tokio::test]
    async fn unreachable_server_is_unavailable() {
        let settings = store::PostgresSettings {
            host: "127.0.0.1".into(),
            port: 1,
            connection_timeout: std::time::Duration::from_secs(2),
            ..store::PostgresSettings::default()
        };
        match store::postgres::PostgresStore::open(&settings).await {
            Err(e @ store::StoreError::Unavailable { .. }) => {
                assert!(e.to_string().contains("127.0.0.1:1"), "{e}")
            }
            Err(e) => panic!("expected Unavailable, got {e}"),
            Ok(_) => panic!("expected Unavailable, the store opened"),
        }
    }
}

mod cached_postgres {
    common!(crate::harness::Kind::CachedPostgres);
    persistent!(crate::harness::Kind::CachedPostgres);
    tests!(crate::harness::Kind::CachedPostgres => survives_terminated_connections);
}
