//! TEST HELPER, not part of the product: opens a store and creates Mesh resources
//! `<prefix>-0`, `<prefix>-1`, … one at a time, printing each name on stdout only after its
//! commit returned. The durability test (`tests/conformance`) kills it with SIGKILL mid-burst
//! and checks that every printed resource survived.
//!
//! Usage: `store-burst sqlite <file> <prefix> <count>` or
//!        `store-burst postgres <url> <prefix> <count>` (the database must be migrated).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use model::{Resource, ResourceType, Spec};
use store::{BackendSettings, PostgresSettings, StoreSettings};

fn usage() -> ExitCode {
    eprintln!("usage: store-burst (sqlite <file> | postgres <url>) <prefix> <count>");
    ExitCode::from(2)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [backend, location, prefix, count] = args.as_slice() else {
        return usage();
    };
    let Ok(count) = count.parse::<u64>() else {
        return usage();
    };
    let backend = match backend.as_str() {
        "sqlite" => BackendSettings::Sqlite {
            path: PathBuf::from(location),
        },
        "postgres" => BackendSettings::Postgres(PostgresSettings {
            max_open_connections: 2,
            ..PostgresSettings::from_url(location.clone())
        }),
        _ => return usage(),
    };
    let store = match store::open(&StoreSettings {
        backend,
        cache: false,
    })
    .await
    {
        Ok(store) => store,
        Err(e) => {
            eprintln!("store-burst: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    for i in 0..count {
        let name = format!("{prefix}-{i}");
        let resource = Resource::new("", name.clone(), Spec::default_for(ResourceType::Mesh));
        if let Err(e) = store.create(resource, None).await {
            eprintln!("store-burst: creating {name}: {e}");
            return ExitCode::FAILURE;
        }
        if writeln!(stdout, "{name}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
