//! Fills an [`ads::SnapshotCache`](crate::ads::SnapshotCache) from the store
//! and keeps it current.
//!
//! At start (and after the change feed is lost) every Mesh is regenerated;
//! then the task follows [`ResourceStore::changes`] and, on any change of a
//! Mesh, a Dataplane or a policy generation reads ([`POLICY_TYPES`]),
//! regenerates the snapshot of every Dataplane of that mesh (node id
//! `mesh.name`). Outbounds that generation skipped are logged as warnings
//! whenever the snapshot changes. Snapshots of Dataplanes that no longer exist
//! (or whose Mesh is gone) are removed. A Dataplane whose generation fails is
//! logged and left without a snapshot.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use model::{Resource, ResourceKey, ResourceType};
use store::{ListQuery, ResourceStore, StoreError};
use tracing::{debug, warn};

use crate::ads::SnapshotCache;
use crate::{MeshContext, generate};

/// The policy types generation reads (the mesh's resources of these types
/// are its [`MeshContext::policies`]).
pub const POLICY_TYPES: &[ResourceType] =
    &[ResourceType::TrafficPermission, ResourceType::TrafficRoute];

/// Wait before retrying after the store failed.
const RETRY: Duration = Duration::from_secs(1);

/// Runs until `stop` resolves: keeps `cache` equal to what [`generate`]
/// gives for every Dataplane in `store`.
pub async fn run(
    store: Arc<dyn ResourceStore>,
    cache: SnapshotCache,
    stop: impl Future<Output = ()>,
) {
    let mut feed = Feed {
        store,
        cache,
        known: HashMap::new(),
    };
    tokio::pin!(stop);
    tokio::select! {
        () = &mut stop => {}
        () = feed.follow() => {}
    }
}

struct Feed {
    store: Arc<dyn ResourceStore>,
    cache: SnapshotCache,
    /// Per mesh, the Dataplane names that have a snapshot in the cache.
    known: HashMap<String, BTreeSet<String>>,
}

impl Feed {
    /// Resyncs, follows the change feed, and resyncs again whenever it is
    /// lost. Never returns.
    async fn follow(&mut self) {
        loop {
            let revision = match self.resync().await {
                Ok(revision) => revision,
                Err(e) => {
                    warn!(error = %e, "xDS feed: reading the store failed; retrying");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            let mut changes = self.store.changes(revision);
            while let Some(change) = changes.next().await {
                let event = match change {
                    Ok(event) => event,
                    Err(e) if e.is_transient() => {
                        debug!(error = %e, "xDS feed: store unavailable");
                        continue;
                    }
                    Err(e) => {
                        warn!(error = %e, "xDS feed: change feed lost; resyncing");
                        break;
                    }
                };
                let mesh = match event.kind {
                    ResourceType::Mesh => event.name,
                    ResourceType::Dataplane => event.mesh,
                    kind if POLICY_TYPES.contains(&kind) => event.mesh,
                    _ => continue,
                };
                if let Err(e) = self.regenerate_mesh(&mesh).await {
                    warn!(mesh, error = %e, "xDS feed: reading the store failed; resyncing");
                    break;
                }
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// Regenerates every mesh (those stored and those with snapshots);
    /// returns the revision to follow the change feed from.
    async fn resync(&mut self) -> Result<store::Revision, StoreError> {
        let revision = self.store.revision().await?;
        let meshes = self
            .store
            .list(&ListQuery::all(ResourceType::Mesh))
            .await?
            .items;
        let mut names: BTreeSet<String> = meshes.into_iter().map(|m| m.meta.name).collect();
        names.extend(self.known.keys().cloned());
        for mesh in names {
            self.regenerate_mesh(&mesh).await?;
        }
        Ok(revision)
    }

    /// Sets the snapshot of every Dataplane of `mesh` and removes those of
    /// Dataplanes that are gone.
    async fn regenerate_mesh(&mut self, mesh_name: &str) -> Result<(), StoreError> {
        let key = ResourceKey::new(ResourceType::Mesh, "", mesh_name);
        let (mesh, dataplanes, policies) = match self.store.get_stored(&key).await? {
            Some(stored) => {
                let dataplanes = self
                    .store
                    .list(&ListQuery::in_mesh(ResourceType::Dataplane, mesh_name))
                    .await?
                    .items;
                let mut policies = Vec::new();
                for kind in POLICY_TYPES {
                    let query = ListQuery::in_mesh(*kind, mesh_name);
                    policies.extend(self.store.list(&query).await?.items);
                }
                (Some(stored.resource), dataplanes, policies)
            }
            None => (None, Vec::new(), Vec::new()),
        };
        let mut present = BTreeSet::new();
        if let Some(mesh) = &mesh {
            for proxy in &dataplanes {
                let node_id = node_id(proxy);
                let context = MeshContext {
                    policies: &policies,
                    ..MeshContext::new(mesh, &dataplanes)
                };
                match generate(proxy, &context) {
                    Ok(resources) => {
                        let skipped = resources.skipped.clone();
                        if self.cache.set(&node_id, resources) {
                            debug!(node = node_id, "xDS snapshot updated");
                            for outbound in &skipped {
                                warn!(node = node_id, "{outbound}");
                            }
                        }
                        present.insert(proxy.meta.name.clone());
                    }
                    Err(e) => {
                        warn!(node = node_id, error = %e, "generating the Envoy config failed; skipped");
                        self.cache.remove(&node_id);
                    }
                }
            }
        }
        let previous = self.known.remove(mesh_name).unwrap_or_default();
        for gone in previous.difference(&present) {
            self.cache.remove(&format!("{mesh_name}.{gone}"));
        }
        if !present.is_empty() {
            self.known.insert(mesh_name.to_owned(), present);
        }
        Ok(())
    }
}

/// The node id of a Dataplane: `mesh.name`.
fn node_id(dataplane: &Resource) -> String {
    format!("{}.{}", dataplane.meta.mesh, dataplane.meta.name)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use model::Spec;
    use model::mesh_pb::dataplane::Networking;
    use model::mesh_pb::dataplane::networking::Inbound;
    use model::mesh_pb::dataplane::networking::Outbound;
    use model::mesh_pb::{
        Dataplane, Mesh, Selector, TrafficPermission, TrafficRoute, traffic_route,
    };
    use store::memory::MemoryStore;

    use super::*;

    fn dataplane(name: &str, address: &str, service: &str, outbound: Option<&str>) -> Resource {
        let inbound = Inbound {
            port: 8080,
            service_port: 80,
            tags: [
                ("kuma.io/service".into(), service.into()),
                ("kuma.io/protocol".into(), "http".into()),
            ]
            .into(),
            ..Default::default()
        };
        let outbound = outbound
            .map(|s| Outbound {
                port: 10001,
                tags: [("kuma.io/service".into(), s.into())].into(),
                ..Default::default()
            })
            .into_iter()
            .collect();
        Resource::new(
            "default",
            name,
            Spec::Dataplane(Dataplane {
                networking: Some(Networking {
                    address: address.into(),
                    inbound: vec![inbound],
                    outbound,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        )
    }

    /// The `route-all` TrafficRoute Kuma creates with a mesh.
    fn route_all() -> Resource {
        let any = || Selector {
            r#match: [("kuma.io/service".into(), "*".into())].into(),
        };
        Resource::new(
            "default",
            "route-all-default",
            Spec::TrafficRoute(TrafficRoute {
                sources: vec![any()],
                destinations: vec![any()],
                conf: Some(traffic_route::Conf {
                    destination: any().r#match,
                    ..Default::default()
                }),
            }),
        )
    }

    /// The number of endpoints in the load assignments of `node` for `service`.
    fn endpoints(cache: &SnapshotCache, node: &str, service: &str) -> Option<usize> {
        let snapshot = cache.get(node)?;
        let assignment = snapshot
            .resources()
            .load_assignments
            .iter()
            .find(|a| a.cluster_name == service)?
            .clone();
        Some(
            assignment
                .endpoints
                .iter()
                .map(|l| l.lb_endpoints.len())
                .sum(),
        )
    }

    /// The policy names of the RBAC filter of `node`'s first listener, if
    /// it has one.
    fn rbac_policies(cache: &SnapshotCache, node: &str) -> Option<Vec<String>> {
        use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
        use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac;
        use prost::Message;
        let snapshot = cache.get(node)?;
        let listener = snapshot.resources().listeners.first()?.clone();
        let filter = listener.filter_chains.first()?.filters.first()?.clone();
        if filter.name != crate::policy::permissions::RBAC_FILTER {
            return None;
        }
        let Some(ConfigType::TypedConfig(any)) = filter.config_type else {
            return None;
        };
        let rbac = Rbac::decode(any.value.as_slice()).ok()?;
        let mut names: Vec<String> = rbac.rules?.policies.into_keys().collect();
        names.sort();
        Some(names)
    }

    async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn snapshots_follow_the_store() {
        let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
        store
            .create(
                Resource::new("", "default", Spec::Mesh(Mesh::default())),
                None,
            )
            .await
            .expect("store write");
        store
            .create(dataplane("web-1", "10.0.0.1", "web", Some("backend")), None)
            .await
            .expect("store write");
        store
            .create(dataplane("backend-1", "10.0.0.2", "backend", None), None)
            .await
            .expect("store write");

        let cache = SnapshotCache::new();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(store.clone(), cache.clone(), async move {
            let _ = stop_rx.await;
        }));

        eventually("both snapshots", || {
            cache.get("default.web-1").is_some() && cache.get("default.backend-1").is_some()
        })
        .await;
        // No TrafficRoute yet: the outbound is skipped.
        assert_eq!(endpoints(&cache, "default.web-1", "backend"), None);

        store.create(route_all(), None).await.expect("store write");
        eventually("one backend endpoint once a route exists", || {
            endpoints(&cache, "default.web-1", "backend") == Some(1)
        })
        .await;

        store
            .create(dataplane("backend-2", "10.0.0.3", "backend", None), None)
            .await
            .expect("store write");
        eventually("two backend endpoints", || {
            endpoints(&cache, "default.web-1", "backend") == Some(2)
        })
        .await;
        assert!(cache.get("default.backend-2").is_some());

        store
            .delete(&ResourceKey::new(
                ResourceType::Dataplane,
                "default",
                "backend-2",
            ))
            .await
            .expect("store write");
        eventually("the deleted dataplane's snapshot removed", || {
            cache.get("default.backend-2").is_none()
                && endpoints(&cache, "default.web-1", "backend") == Some(1)
        })
        .await;

        store
            .delete(&ResourceKey::new(
                ResourceType::TrafficRoute,
                "default",
                "route-all-default",
            ))
            .await
            .expect("store write");
        eventually("the outbound gone with its route", || {
            endpoints(&cache, "default.web-1", "backend").is_none()
        })
        .await;

        // TrafficPermissions count once the mesh enables mTLS: first the
        // RBAC filter denies all, then it names the permission.
        let mesh_key = ResourceKey::new(ResourceType::Mesh, "", "default");
        let mut mesh = store
            .get_stored(&mesh_key)
            .await
            .expect("store read")
            .expect("mesh stored")
            .resource;
        if let Spec::Mesh(spec) = &mut mesh.spec {
            spec.mtls = Some(model::mesh_pb::mesh::Mtls {
                enabled_backend: "ca-1".into(),
                backends: vec![model::mesh_pb::CertificateAuthorityBackend {
                    name: "ca-1".into(),
                    r#type: "builtin".into(),
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
        store.update(mesh).await.expect("store write");
        eventually("RBAC without policies", || {
            rbac_policies(&cache, "default.backend-1") == Some(Vec::new())
        })
        .await;
        store
            .create(
                Resource::new(
                    "default",
                    "allow-web",
                    Spec::TrafficPermission(TrafficPermission {
                        sources: vec![Selector {
                            r#match: [("kuma.io/service".into(), "web".into())].into(),
                        }],
                        destinations: vec![Selector {
                            r#match: [("kuma.io/service".into(), "backend".into())].into(),
                        }],
                    }),
                ),
                None,
            )
            .await
            .expect("store write");
        eventually("RBAC naming the permission", || {
            rbac_policies(&cache, "default.backend-1") == Some(vec!["allow-web".to_string()])
        })
        .await;

        stop_tx.send(()).expect("feed running");
        task.await.expect("feed task");
    }
}
