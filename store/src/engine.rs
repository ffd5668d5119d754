//! The write semantics every backend shares: how a batch of [`Op`]s turns into row changes,
//! errors and revisions, over a backend's write transaction ([`WriteTxn`]).
//!
//! A backend opens its transaction, takes the writer lock (which it holds until commit, so
//! that commit order is revision order), lets [`execute`] do the ops, then commits; any error
//! drops the transaction and nothing is changed.

use async_trait::async_trait;
use model::{Resource, ResourceKey, ResourceType};
use time::OffsetDateTime;

use crate::{Action, Applied, ChangeEvent, Op, Result, Revision, StoreError, Stored};

/// One backend's write transaction. Every method runs inside it.
#[async_trait]
pub(crate) trait WriteTxn: Send {
    /// Takes the store-wide writer lock, held until the transaction ends, and returns the
    /// newest committed revision.
    async fn lock(&mut self) -> Result<Revision>;

    async fn get(&mut self, key: &ResourceKey) -> Result<Option<Stored>>;

    /// Inserts a new row; `false` when one with the same key exists.
    async fn insert(
        &mut self,
        resource: &Resource,
        owner: Option<&ResourceKey>,
        revision: Revision,
    ) -> Result<bool>;

    /// Inserts new rows without owners, in one statement per chunk where the backend can;
    /// returns, in order, whether each was inserted (`false`: a row with its key exists).
    async fn insert_many(&mut self, rows: &[(&Resource, Revision)]) -> Result<Vec<bool>> {
        let mut inserted = Vec::with_capacity(rows.len());
        for (resource, revision) in rows {
            inserted.push(self.insert(resource, None, *revision).await?);
        }
        Ok(inserted)
    }

    /// Stores spec, labels, version and modification time of `resource` when the stored
    /// version is `expected`; returns the creation time, `None` when no row matched.
    async fn update(
        &mut self,
        resource: &Resource,
        expected: i64,
        revision: Revision,
    ) -> Result<Option<OffsetDateTime>>;

    /// `key` and every resource deleted with it (owned ones recursively; everything in the
    /// mesh when `key` is a Mesh), in any order; empty when `key` does not exist.
    async fn cascade(&mut self, key: &ResourceKey) -> Result<Vec<ResourceKey>>;

    async fn delete(&mut self, keys: &[ResourceKey]) -> Result<()>;

    /// Appends the events to the change log, moves the revision counter to the last one and
    /// arranges for subscribers to be woken once the transaction commits.
    async fn record(&mut self, events: &[ChangeEvent]) -> Result<()>;
}

/// Rows per multi-row INSERT: 13 parameters each stays far below SQLite's and PostgreSQL's
/// bind limits.
const BULK_INSERT_ROWS: usize = 200;

/// The current time as stored: UTC, whole microseconds (what PostgreSQL keeps).
pub(crate) fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000)
        .unwrap_or(now)
}

/// Orders the rows a delete removes: the named one first, then by (type, mesh, name).
pub(crate) fn order_cascade(root: &ResourceKey, mut keys: Vec<ResourceKey>) -> Vec<ResourceKey> {
    keys.retain(|k| k != root);
    keys.sort_by(|a, b| (a.kind.name(), &a.mesh, &a.name).cmp(&(b.kind.name(), &b.mesh, &b.name)));
    keys.dedup();
    keys.insert(0, root.clone());
    keys
}

/// Normalises a key: global-scoped types have an empty mesh.
fn normalized(resource: &mut Resource) -> ResourceKey {
    let key = ResourceKey::new(
        resource.kind(),
        resource.meta.mesh.clone(),
        resource.meta.name.clone(),
    );
    resource.meta.mesh = key.mesh.clone();
    key
}

/// Runs `ops` in `tx` (which the caller commits on `Ok`) and records their change events.
pub(crate) async fn execute<T: WriteTxn + ?Sized>(
    tx: &mut T,
    ops: Vec<Op>,
) -> Result<Vec<Applied>> {
    if ops.is_empty() {
        return Ok(Vec::new());
    }
    let mut revision = tx.lock().await?;
    let now = now();
    let mut applied: Vec<Applied> = Vec::new();
    let mut ops = ops.into_iter().peekable();
    while let Some(op) = ops.next() {
        // A run of creates without owners (a bulk load, a KDS batch) goes in chunks.
        if matches!(&op, Op::Create { owner: None, .. })
            && matches!(ops.peek(), Some(Op::Create { owner: None, .. }))
        {
            let mut run = vec![op];
            while run.len() < BULK_INSERT_ROWS
                && matches!(ops.peek(), Some(Op::Create { owner: None, .. }))
            {
                if let Some(next) = ops.next() {
                    run.push(next);
                }
            }
            let mut rows: Vec<(Resource, ResourceKey, Revision)> = Vec::with_capacity(run.len());
            for op in run {
                if let Op::Create { mut resource, .. } = op {
                    let key = normalized(&mut resource);
                    resource.meta.version = 1;
                    resource.meta.creation_time = now;
                    resource.meta.modification_time = now;
                    revision += 1;
                    rows.push((resource, key, revision));
                }
            }
            let refs: Vec<(&Resource, Revision)> =
                rows.iter().map(|(r, _, rev)| (r, *rev)).collect();
            let inserted = tx.insert_many(&refs).await?;
            for ((resource, key, rev), ok) in rows.into_iter().zip(inserted) {
                if !ok {
                    return Err(StoreError::AlreadyExists(key));
                }
                applied.push(Applied {
                    revision: rev,
                    action: Action::Create,
                    key,
                    resource: Some(resource),
                });
            }
            continue;
        }
        match op {
            Op::Create {
                mut resource,
                owner,
            } => {
                let key = normalized(&mut resource);
                if let Some(owner) = &owner {
                    let owner_key =
                        ResourceKey::new(owner.kind, owner.mesh.clone(), owner.name.clone());
                    if tx.get(&owner_key).await?.is_none() {
                        return Err(StoreError::NotFound(owner_key));
                    }
                }
                let owner = owner.map(|o| ResourceKey::new(o.kind, o.mesh, o.name));
                resource.meta.version = 1;
                resource.meta.creation_time = now;
                resource.meta.modification_time = now;
                revision += 1;
                if !tx.insert(&resource, owner.as_ref(), revision).await? {
                    return Err(StoreError::AlreadyExists(key));
                }
                applied.push(Applied {
                    revision,
                    action: Action::Create,
                    key,
                    resource: Some(resource),
                });
            }
            Op::Update { mut resource } => {
                let key = normalized(&mut resource);
                let expected = resource.meta.version;
                let conflict = || StoreError::Conflict {
                    key: key.clone(),
                    expected,
                };
                let Ok(expected_db) = i64::try_from(expected) else {
                    return Err(match tx.get(&key).await? {
                        Some(_) => conflict(),
                        None => StoreError::NotFound(key.clone()),
                    });
                };
                resource.meta.version = expected.saturating_add(1);
                resource.meta.modification_time = now;
                revision += 1;
                match tx.update(&resource, expected_db, revision).await? {
                    Some(created) => resource.meta.creation_time = created,
                    None => {
                        return Err(match tx.get(&key).await? {
                            Some(_) => conflict(),
                            None => StoreError::NotFound(key.clone()),
                        });
                    }
                }
                applied.push(Applied {
                    revision,
                    action: Action::Update,
                    key,
                    resource: Some(resource),
                });
            }
            Op::Delete { key } => {
                let key = ResourceKey::new(key.kind, key.mesh, key.name);
                let doomed = tx.cascade(&key).await?;
                if !doomed.contains(&key) {
                    return Err(StoreError::NotFound(key));
                }
                let doomed = order_cascade(&key, doomed);
                tx.delete(&doomed).await?;
                for key in doomed {
                    revision += 1;
                    applied.push(Applied {
                        revision,
                        action: Action::Delete,
                        key,
                        resource: None,
                    });
                }
            }
        }
    }
    let events: Vec<ChangeEvent> = applied.iter().map(Applied::event).collect();
    tx.record(&events).await?;
    Ok(applied)
}

/// The name under which a change log or resources row stores an action.
pub(crate) fn action_name(action: Action) -> &'static str {
    match action {
        Action::Create => "Create",
        Action::Update => "Update",
        Action::Delete => "Delete",
    }
}

pub(crate) fn action_from_name(name: &str) -> Option<Action> {
    match name {
        "Create" => Some(Action::Create),
        "Update" => Some(Action::Update),
        "Delete" => Some(Action::Delete),
        _ => None,
    }
}

/// The resource type a row names, if this build knows it.
pub(crate) fn kind_from_name(name: &str) -> Option<ResourceType> {
    ResourceType::from_name(name)
}
