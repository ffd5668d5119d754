//! What a GUI page reads: the resources of the types it shows, listed from the store in one
//! pass and indexed by key. Secrets are never loaded (no GUI page shows them).

use std::collections::HashMap;

use model::{Resource, ResourceType};
use store::{ListQuery, ResourceStore, StoreError};

/// Resources by type, each list sorted by (mesh, name) as the store returns them.
#[derive(Default)]
pub struct Inventory {
    by_kind: HashMap<ResourceType, Vec<Resource>>,
}

impl Inventory {
    /// Lists every resource of `kinds`. Admin-only types (Secrets) are refused here, so no
    /// page can show one by mistake.
    pub async fn load(
        store: &dyn ResourceStore,
        kinds: &[ResourceType],
    ) -> Result<Inventory, StoreError> {
        let mut by_kind = HashMap::new();
        for &kind in kinds {
            if kind.descriptor().admin_only {
                continue;
            }
            let page = store.list(&ListQuery::all(kind)).await?;
            by_kind.insert(kind, page.items);
        }
        Ok(Inventory { by_kind })
    }

    /// The resources of `kind` (empty when not loaded).
    pub fn all(&self, kind: ResourceType) -> &[Resource] {
        self.by_kind.get(&kind).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The resources of `kind` by (mesh, name).
    pub fn index(&self, kind: ResourceType) -> HashMap<(&str, &str), &Resource> {
        self.all(kind)
            .iter()
            .map(|r| ((r.meta.mesh.as_str(), r.meta.name.as_str()), r))
            .collect()
    }
}
