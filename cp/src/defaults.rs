//! What a control plane creates on its first start (the cluster id and the `default` mesh),
//! and what comes with a Mesh on the control plane that owns meshes (Kuma's mesh manager): the
//! CA Secrets of its enabled builtin mTLS backend and, for a new mesh, the default policies
//! (`allow-all-{mesh}`, `route-all-{mesh}`). The start-up steps are idempotent, so restarts and
//! several replicas starting at once are fine. A federated zone creates none of this: it
//! receives meshes, their secrets and policies from the global over KDS.

use std::collections::HashMap;

use model::labels::tags;
use model::{Resource, ResourceKey, ResourceType, Spec, mesh_pb, system_pb};
use store::{Op, ResourceStore, StoreError};

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

/// Why the `default` mesh could not be created.
#[derive(Debug, thiserror::Error)]
pub enum DefaultMeshError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ca(#[from] ca::CaError),
}

/// Creates the `default` mesh with its default policies unless it exists, in one batch.
/// Returns whether it was created.
pub async fn ensure_default_mesh(store: &dyn ResourceStore) -> Result<bool, DefaultMeshError> {
    let key = ResourceKey::global(ResourceType::Mesh, DEFAULT_MESH);
    if store.get_stored(&key).await?.is_some() {
        return Ok(false);
    }
    let mesh = Resource::new("", DEFAULT_MESH, Spec::Mesh(mesh_pb::Mesh::default()));
    let companions = mesh_companions(store, &mesh, true).await?;
    let ops = std::iter::once(mesh)
        .chain(companions)
        .map(|resource| Op::Create {
            resource,
            owner: None,
        })
        .collect();
    match store.apply(ops).await {
        Ok(_) => Ok(true),
        // Another replica won the race.
        Err(StoreError::AlreadyExists(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The resources to create together with `mesh` (a Mesh about to be stored): the CA Secrets
/// its enabled builtin mTLS backend lacks (a provided backend's material is checked), and when
/// `creating` a new mesh its default policies. Errors name the mesh, backend and field.
pub async fn mesh_companions(
    store: &dyn ResourceStore,
    mesh: &Resource,
    creating: bool,
) -> Result<Vec<Resource>, ca::CaError> {
    let mut resources =
        ca::ca_secrets_to_create(store, mesh, time::OffsetDateTime::now_utc()).await?;
    if creating {
        resources.extend(default_policies(mesh));
    }
    Ok(resources)
}

/// Name of the default TrafficPermission of `mesh`.
pub fn allow_all_name(mesh: &str) -> String {
    format!("allow-all-{mesh}")
}

/// Name of the default TrafficRoute of `mesh`.
pub fn route_all_name(mesh: &str) -> String {
    format!("route-all-{mesh}")
}

/// Kuma's default policies of a new mesh, minus those its `skipCreatingInitialPolicies` names
/// (by type, e.g. `TrafficPermission`; `*` skips all): TrafficPermission `allow-all-{mesh}`
/// (every service to every service) and TrafficRoute `route-all-{mesh}` (every service to
/// `kuma.io/service: '*'`, round robin).
pub fn default_policies(mesh: &Resource) -> Vec<Resource> {
    let Spec::Mesh(spec) = &mesh.spec else {
        return Vec::new();
    };
    let skip = |kind: ResourceType| {
        spec.skip_creating_initial_policies
            .iter()
            .any(|s| s == "*" || s == kind.name())
    };
    let name = &mesh.meta.name;
    let any = || {
        vec![mesh_pb::Selector {
            r#match: HashMap::from([(tags::SERVICE.to_string(), "*".to_string())]),
        }]
    };
    let mut policies = Vec::new();
    if !skip(ResourceType::TrafficPermission) {
        let spec = mesh_pb::TrafficPermission {
            sources: any(),
            destinations: any(),
        };
        policies.push(Resource::new(
            name,
            allow_all_name(name),
            Spec::TrafficPermission(spec),
        ));
    }
    if !skip(ResourceType::TrafficRoute) {
        use mesh_pb::traffic_route::{Conf, LoadBalancer, load_balancer};
        let spec = mesh_pb::TrafficRoute {
            sources: any(),
            destinations: any(),
            conf: Some(Conf {
                destination: HashMap::from([(tags::SERVICE.to_string(), "*".to_string())]),
                load_balancer: Some(LoadBalancer {
                    lb_type: Some(load_balancer::LbType::RoundRobin(
                        load_balancer::RoundRobin {},
                    )),
                }),
                ..Default::default()
            }),
        };
        policies.push(Resource::new(
            name,
            route_all_name(name),
            Spec::TrafficRoute(spec),
        ));
    }
    policies
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
        for (kind, name) in [
            (ResourceType::TrafficPermission, "allow-all-default"),
            (ResourceType::TrafficRoute, "route-all-default"),
        ] {
            let policy = store.get(&ResourceKey::new(kind, DEFAULT_MESH, name)).await;
            assert!(policy.is_ok(), "{kind} {name}: {policy:?}");
        }
    }

    #[test]
    fn skip_creating_initial_policies_by_type_or_all() {
        let with_skip = |skip: &[&str]| {
            let spec = mesh_pb::Mesh {
                skip_creating_initial_policies: skip.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            };
            let mesh = Resource::new("", "demo", Spec::Mesh(spec));
            default_policies(&mesh)
                .into_iter()
                .map(|p| p.meta.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(with_skip(&[]), ["allow-all-demo", "route-all-demo"]);
        assert_eq!(with_skip(&["TrafficPermission"]), ["route-all-demo"]);
        assert!(with_skip(&["*"]).is_empty());
    }
}
