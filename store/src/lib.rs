//! The resource store: one trait ([`ResourceStore`]) with SQLite (default, embedded),
//! PostgreSQL and memory backends, optimistic concurrency, owner/mesh cascade deletes and a
//! change feed in which every committed change has a monotonically increasing revision.
//!
//! It knows resources only through `model`; it does not validate them (that is the API's job)
//! and it does not sync or serve anything.
//!
//! Modules: [`memory`], [`sqlite`] and [`postgres`] are the backends; [`cache`] wraps any of
//! them to serve reads from memory; [`open`] builds the configured one; [`follow`] is the one
//! loop components use to keep in step with the change feed. Inside, `engine` holds
//! the write semantics the backends share, `feed` the change feed, `sql` what the SQL backends
//! do alike (the store operations over each one's dialect, row and error handling), `query`
//! in-memory list filtering.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use model::{Resource, ResourceKey, ResourceType};

pub mod cache;
mod engine;
mod feed;
pub mod follow;
pub mod memory;
pub mod postgres;
mod query;
mod sql;
pub mod sqlite;

pub use postgres::{MigrateOutcome, PostgresSettings, PostgresTls, TlsMode};

/// Position in the change feed. Revision 0 is "before the first change".
pub type Revision = u64;

/// What a change did.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Create,
    Update,
    Delete,
}

/// One committed change, as delivered by the change feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeEvent {
    pub revision: Revision,
    pub action: Action,
    pub kind: ResourceType,
    /// Empty for global-scoped types.
    pub mesh: String,
    pub name: String,
}

impl ChangeEvent {
    pub fn key(&self) -> ResourceKey {
        ResourceKey::new(self.kind, self.mesh.clone(), self.name.clone())
    }
}

/// Which resources a list returns. Results are sorted by (mesh, name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListQuery {
    pub kind: ResourceType,
    /// Only this mesh (mesh-scoped types); `None` lists across meshes.
    pub mesh: Option<String>,
    /// Keep names that contain this substring.
    pub name_contains: Option<String>,
    /// Keep resources that carry every one of these labels with exactly these values.
    pub labels: BTreeMap<String, String>,
    /// Index of the first item of the page in the filtered, sorted list.
    pub offset: usize,
    /// Page size; `None` returns everything from `offset` on.
    pub size: Option<usize>,
}

impl ListQuery {
    /// Every resource of `kind`, unpaged.
    pub fn all(kind: ResourceType) -> Self {
        ListQuery {
            kind,
            mesh: None,
            name_contains: None,
            labels: BTreeMap::new(),
            offset: 0,
            size: None,
        }
    }

    /// Every resource of `kind` in `mesh`, unpaged.
    pub fn in_mesh(kind: ResourceType, mesh: impl Into<String>) -> Self {
        ListQuery {
            mesh: Some(mesh.into()),
            ..ListQuery::all(kind)
        }
    }
}

/// One page of a list.
#[derive(Clone, Debug, PartialEq)]
pub struct ListPage {
    pub items: Vec<Resource>,
    /// Number of resources matching the query, over all pages.
    pub total: usize,
    /// Offset of the next page, `None` on the last page.
    pub next_offset: Option<usize>,
}

/// One write inside an atomic batch.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Create; with an owner, deleting the owner deletes this resource too.
    Create {
        resource: Resource,
        owner: Option<ResourceKey>,
    },
    /// Update; `resource.meta.version` must be the version last read.
    Update {
        resource: Resource,
    },
    Delete {
        key: ResourceKey,
    },
}

/// What can go wrong. Every variant names the resource or the backend it concerns.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(ResourceKey),
    #[error("{0} already exists")]
    AlreadyExists(ResourceKey),
    #[error("{key} was changed by someone else: version {expected} is stale")]
    Conflict { key: ResourceKey, expected: u64 },
    #[error("{key}: stored data cannot be read: {message}")]
    Corrupt { key: ResourceKey, message: String },
    #[error(
        "change feed: revision {requested} is older than the oldest kept revision {oldest}; resync from a full list"
    )]
    Compacted {
        requested: Revision,
        oldest: Revision,
    },
    #[error("{backend} store is unavailable: {message}")]
    Unavailable {
        backend: &'static str,
        message: String,
    },
    #[error("database schema is at version {found}, this build needs {wanted}: run `migrate up`")]
    NotMigrated { found: i64, wanted: i64 },
    #[error(
        "change feed: revision {requested} is newer than the store's revision {current} (was the database replaced?); resync from a full list"
    )]
    RevisionAhead {
        requested: Revision,
        current: Revision,
    },
    #[error("{backend} store: {message}")]
    Backend {
        backend: &'static str,
        message: String,
    },
}

impl StoreError {
    /// Whether retrying later may succeed (the backend was unreachable). A write that failed
    /// with this error while committing may or may not have been committed; the change feed
    /// tells.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}

/// A resource together with the revision of the change that last wrote it.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    pub resource: Resource,
    pub revision: Revision,
}

/// One row change made by a committed write. A write returns them in revision order; a
/// cascading delete yields one per removed resource, the named one first.
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    pub revision: Revision,
    pub action: Action,
    pub key: ResourceKey,
    /// The stored resource after a create or update; `None` for a delete.
    pub resource: Option<Resource>,
}

impl Applied {
    /// The change event the feed delivers for this change.
    pub fn event(&self) -> ChangeEvent {
        ChangeEvent {
            revision: self.revision,
            action: self.action,
            kind: self.key.kind,
            mesh: self.key.mesh.clone(),
            name: self.key.name.clone(),
        }
    }
}

/// Every resource as of one revision, read from one consistent snapshot: following the change
/// feed from `revision` on keeps a copy of it current.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub revision: Revision,
    pub resources: Vec<Stored>,
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The change feed: events with revisions strictly greater than the start, in order, then live.
pub type ChangeFeed = BoxStream<'static, Result<ChangeEvent>>;

/// The one store interface every component uses.
///
/// Backends implement the required methods; `create`, `update`, `delete`, `get` and `apply`
/// are provided on top of [`ResourceStore::commit`] and [`ResourceStore::get_stored`].
#[async_trait]
pub trait ResourceStore: Send + Sync + 'static {
    /// Creates a resource. Version (1), creation and modification times are set by the store;
    /// the stored resource is returned. With an owner, the owner must exist
    /// ([`StoreError::NotFound`] names it otherwise).
    async fn create(&self, resource: Resource, owner: Option<ResourceKey>) -> Result<Resource> {
        let key = resource.key();
        let applied = self.commit(vec![Op::Create { resource, owner }]).await?;
        stored_resource(applied, &key, self.backend_name())
    }

    /// Updates spec and labels when `resource.meta.version` is the stored version; a stale
    /// version fails with [`StoreError::Conflict`]. Returns the stored resource.
    async fn update(&self, resource: Resource) -> Result<Resource> {
        let key = resource.key();
        let applied = self.commit(vec![Op::Update { resource }]).await?;
        stored_resource(applied, &key, self.backend_name())
    }

    /// Deletes a resource and, recursively, the resources it owns; deleting a Mesh also deletes
    /// every resource in that mesh. Each removed resource gets its own change event.
    async fn delete(&self, key: &ResourceKey) -> Result<()> {
        self.commit(vec![Op::Delete { key: key.clone() }])
            .await
            .map(|_| ())
    }

    async fn get(&self, key: &ResourceKey) -> Result<Resource> {
        match self.get_stored(key).await? {
            Some(stored) => Ok(stored.resource),
            None => Err(StoreError::NotFound(ResourceKey::new(
                key.kind,
                key.mesh.clone(),
                key.name.clone(),
            ))),
        }
    }

    async fn list(&self, query: &ListQuery) -> Result<ListPage>;

    /// Applies every op or none. Returns the revision of the last change it committed (the
    /// current revision when `ops` is empty).
    async fn apply(&self, ops: Vec<Op>) -> Result<Revision> {
        let applied = self.commit(ops).await?;
        match applied.last() {
            Some(last) => Ok(last.revision),
            None => self.revision().await,
        }
    }

    /// The revision of the newest committed change.
    async fn revision(&self) -> Result<Revision>;

    /// Change events with revision greater than `after`, in order, then new ones as they commit.
    ///
    /// The stream never skips or reorders an event. When the backend is unreachable it yields
    /// [`StoreError::Unavailable`] and keeps retrying from where it was (with backoff); any other
    /// error ([`StoreError::Compacted`], [`StoreError::RevisionAhead`], ...) is the last item.
    /// Events of resource types this build does not know (written by a newer version) are
    /// passed over with a warning.
    fn changes(&self, after: Revision) -> ChangeFeed;

    /// Applies every op or none, like [`ResourceStore::apply`], and returns every row change it
    /// committed (cascaded deletes included) in revision order.
    async fn commit(&self, ops: Vec<Op>) -> Result<Vec<Applied>>;

    /// The resource with the revision that last wrote it; `None` when it does not exist.
    async fn get_stored(&self, key: &ResourceKey) -> Result<Option<Stored>>;

    /// Every resource and the revision they are current at, from one consistent read.
    async fn snapshot(&self) -> Result<Snapshot>;

    /// Forgets the change events with revision `<= keep_after` (at most up to the current
    /// revision); a feed asked to start before them then fails with
    /// [`StoreError::Compacted`]. Returns how many events were removed.
    async fn prune_changes(&self, keep_after: Revision) -> Result<u64>;

    /// The backend's name as errors spell it (`memory`, `sqlite`, `postgres`).
    fn backend_name(&self) -> &'static str;
}

/// The resource a single create or update stored.
fn stored_resource(
    applied: Vec<Applied>,
    key: &ResourceKey,
    backend: &'static str,
) -> Result<Resource> {
    applied
        .into_iter()
        .find_map(|a| a.resource)
        .ok_or_else(|| StoreError::Backend {
            backend,
            message: format!("writing {key} returned no resource"),
        })
}

/// Which database a store keeps its data in.
// Built once at startup: the size of the Postgres variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendSettings {
    /// In memory only: for tests and `KUMA_STORE_TYPE=memory`.
    Memory,
    /// An embedded SQLite database file, conventionally `<workDir>/kuma.db`
    /// (see [`sqlite::default_path`]).
    Sqlite {
        path: PathBuf,
    },
    Postgres(PostgresSettings),
}

impl BackendSettings {
    /// SQLite in `<work_dir>/kuma.db`.
    pub fn sqlite_in(work_dir: impl AsRef<std::path::Path>) -> Self {
        BackendSettings::Sqlite {
            path: sqlite::default_path(work_dir),
        }
    }
}

/// How to open the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreSettings {
    pub backend: BackendSettings,
    /// Serve reads from an in-memory copy kept current by the change feed
    /// ([`cache::CachedStore`]).
    pub cache: bool,
}

/// Opens the configured store. SQLite creates and migrates its file; PostgreSQL must have been
/// migrated with [`postgres::migrate_up`] (`migrate up`) before.
pub async fn open(settings: &StoreSettings) -> Result<Arc<dyn ResourceStore>> {
    let store: Arc<dyn ResourceStore> = match &settings.backend {
        BackendSettings::Memory => Arc::new(memory::MemoryStore::new()),
        BackendSettings::Sqlite { path } => Arc::new(sqlite::SqliteStore::open(path).await?),
        BackendSettings::Postgres(pg) => Arc::new(postgres::PostgresStore::open(pg).await?),
    };
    if settings.cache {
        Ok(Arc::new(cache::CachedStore::new(store).await?))
    } else {
        Ok(store)
    }
}
