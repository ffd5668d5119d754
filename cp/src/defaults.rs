//! What a control plane creates on its first start: the cluster id and the `default` mesh.
//! Both are idempotent, so restarts and several replicas starting at once are fine.

use model::{Resource, ResourceKey, ResourceType, Spec, mesh_pb, system_pb};
use store::{ResourceStore, StoreError};

/// Name of the Config resource holding the cluster id (Kuma's).
pub const CLUSTER_ID_CONFIG: &str = "kuma-cluster-id";
/// Name of the mesh created on first start.
pub const DEFAULT_MESH: &str = "default";

/// The cluster id, created as a UUID on the first start.
pub async fn ensure_cluster_id(store: &dyn ResourceStore) -> Result<String, StoreError> {
    ensure_cluster_id_with(store, true).await
}

/// The cluster id when it exists; creates it only when `create` (a federated zone does not:
/// its id comes from the global over KDS, and an own one would clash with it).
pub async fn ensure_cluster_id_with(
    store: &dyn ResourceStore,
    create: bool,
) -> Result<String, StoreError> {
    let key = ResourceKey::global(ResourceType::Config, CLUSTER_ID_CONFIG);
    match store.get(&key).await {
        Ok(resource) => return Ok(config_text(&resource)),
        Err(StoreError::NotFound(_)) if !create => return Ok(String::new()),
        Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(e),
    }
    let id = uuid::Uuid::new_v4().to_string();
    let resource = Resource::new(
        "",
        CLUSTER_ID_CONFIG,
        Spec::Config(system_pb::Config { config: id.clone() }),
    );
    match store.create(resource, None).await {
        Ok(_) => Ok(id),
        // Another replica won the race: its id is the cluster's.
        Err(StoreError::AlreadyExists(_)) => store.get(&key).await.map(|r| config_text(&r)),
        Err(e) => Err(e),
    }
}

fn config_text(resource: &Resource) -> String {
    match &resource.spec {
        Spec::Config(c) => c.config.clone(),
        _ => String::new(),
    }
}

/// Creates the `default` mesh unless it exists. Returns whether it was created.
pub async fn ensure_default_mesh(store: &dyn ResourceStore) -> Result<bool, StoreError> {
    let mesh = Resource::new("", DEFAULT_MESH, Spec::Mesh(mesh_pb::Mesh::default()));
    match store.create(mesh, None).await {
        Ok(_) => Ok(true),
        Err(StoreError::AlreadyExists(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::memory::MemoryStore;

    #[tokio::test]
    async fn cluster_id_is_created_once() {
        let store = MemoryStore::new();
        let first = ensure_cluster_id(&store).await.expect("created");
        assert_eq!(first.len(), 36, "a UUID");
        assert_eq!(ensure_cluster_id(&store).await.expect("read"), first);
    }

    #[tokio::test]
    async fn default_mesh_is_created_once() {
        let store = MemoryStore::new();
        assert!(ensure_default_mesh(&store).await.expect("created"));
        assert!(!ensure_default_mesh(&store).await.expect("exists"));
        let mesh = store
            .get(&ResourceKey::global(ResourceType::Mesh, DEFAULT_MESH))
            .await;
        assert!(mesh.is_ok());
    }
}
