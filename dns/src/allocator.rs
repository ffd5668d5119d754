//! The VIP allocator task of a zone: keeps, per mesh, the Config `kuma-{mesh}-dns-vips` equal
//! to [`vips::allocate`] of the mesh's wanted services, and the server's [`Table`] equal to
//! what the Configs hold.
//!
//! At start (and whenever the change feed is lost) every mesh is recomputed; then the task
//! follows the change feed ([`store::follow`]): a Mesh or Dataplane change recomputes its mesh, a
//! ZoneIngress change every mesh, a change of a `kuma-{mesh}-dns-vips` Config (another
//! replica wrote it, or a user) that mesh. No polling.
//!
//! Stability: the previous VIPs are read from the stored Config on every recomputation, so a
//! restart, a resync or a KDS reconnect starts from what was persisted and never moves the VIP
//! of a service that still exists. A Config that cannot be read is logged and the VIPs this
//! task last knew are used instead (and then written back). The Config is created owned by
//! its Mesh, so deleting the Mesh deletes it. A full CIDR is logged as an error naming the
//! mesh and the CIDR and counted in `dns_vip_allocation_errors_total`; the services that fit
//! keep being served.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use model::{Resource, ResourceKey, ResourceType, Spec, system_pb};
use store::{ListQuery, Op, ResourceStore, StoreError};
use tracing::{debug, error, info, warn};

use crate::handler::Table;
use crate::server::DnsState;
use crate::vips::{self, Vips};

/// Wait before retrying after the store failed.
const RETRY: Duration = Duration::from_secs(1);

/// What the allocator needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocatorSettings {
    /// `dnsServer.CIDR`.
    pub cidr: IpNet,
    /// This zone's name when it is federated: ZoneIngresses of this zone are skipped (their
    /// services are its own Dataplanes).
    pub local_zone: Option<String>,
    /// `dnsServer.serviceVipEnabled`: when false no service gets a VIP (Kuma gives VIPs only
    /// to services; kuma-rs has no other kind of entry yet), so every mesh's VIPs are
    /// released.
    pub service_vips: bool,
}

/// Runs until `stop` resolves.
pub async fn run(
    store: Arc<dyn ResourceStore>,
    settings: AllocatorSettings,
    state: Arc<DnsState>,
    stop: impl Future<Output = ()>,
) {
    let follow_store = store.clone();
    let mut allocator = Allocator {
        store,
        settings,
        state,
        meshes: BTreeMap::new(),
        full: BTreeMap::new(),
    };
    tokio::pin!(stop);
    tokio::select! {
        () = &mut stop => {}
        () = store::follow::follow(follow_store.as_ref(), &mut allocator, RETRY) => {}
    }
}

struct Allocator {
    store: Arc<dyn ResourceStore>,
    settings: AllocatorSettings,
    state: Arc<DnsState>,
    /// Per mesh, the VIPs last written (or read).
    meshes: BTreeMap<String, Vips>,
    /// Per mesh, the services left without a VIP at the last computation.
    full: BTreeMap<String, Vec<String>>,
}

#[store::follow::async_trait]
impl store::follow::Follower for Allocator {
    fn name(&self) -> &'static str {
        "DNS VIPs"
    }

    async fn resync(&mut self, _store: &dyn ResourceStore) -> Result<(), StoreError> {
        self.recompute_all().await
    }

    /// Recomputes the meshes the changes touch, then hands the server the new names.
    async fn apply(
        &mut self,
        _store: &dyn ResourceStore,
        batch: Vec<store::ChangeEvent>,
    ) -> Result<(), StoreError> {
        let mut meshes = BTreeSet::new();
        for event in batch {
            match event.kind {
                ResourceType::Mesh => {
                    meshes.insert(event.name);
                }
                ResourceType::Dataplane => {
                    meshes.insert(event.mesh);
                }
                ResourceType::ZoneIngress => meshes.extend(self.meshes.keys().cloned()),
                ResourceType::Config => {
                    if let Some(mesh) = vips::mesh_of_config(&event.name) {
                        meshes.insert(mesh.to_owned());
                    }
                }
                _ => {}
            }
        }
        let mut result = Ok(());
        for mesh in meshes {
            if let Err(e) = self.recompute(&mesh).await {
                warn!(mesh, error = %e, "DNS VIPs: updating the mesh failed");
                result = Err(e);
                break;
            }
        }
        self.publish();
        result
    }
}

impl Allocator {
    /// Recomputes every mesh.
    async fn recompute_all(&mut self) -> Result<(), StoreError> {
        let stored = self
            .store
            .list(&ListQuery::all(ResourceType::Mesh))
            .await?
            .items;
        let mut names: BTreeSet<String> = stored.into_iter().map(|m| m.meta.name).collect();
        names.extend(self.meshes.keys().cloned());
        let result = async {
            for mesh in &names {
                self.recompute(mesh).await?;
            }
            Ok(())
        }
        .await;
        self.publish();
        result
    }

    /// Hands the server the names of every mesh's VIPs.
    fn publish(&self) {
        self.state
            .set_table(Table::build(self.state.domain(), &self.meshes));
    }

    /// Brings the Config of `mesh` (and this task's copy) up to date.
    async fn recompute(&mut self, mesh: &str) -> Result<(), StoreError> {
        let mesh_key = ResourceKey::global(ResourceType::Mesh, mesh);
        if self.store.get_stored(&mesh_key).await?.is_none() {
            // Its Config went with it (owned by the Mesh).
            if self.meshes.remove(mesh).is_some() {
                info!(mesh, "DNS VIPs: mesh deleted; its VIPs are released");
            }
            self.full.remove(mesh);
            self.state.metrics().forget_mesh(mesh);
            return Ok(());
        }
        let dataplanes = self
            .store
            .list(&ListQuery::in_mesh(ResourceType::Dataplane, mesh))
            .await?
            .items;
        let ingresses = self
            .store
            .list(&ListQuery::all(ResourceType::ZoneIngress))
            .await?
            .items;
        let wanted = if self.settings.service_vips {
            vips::wanted_services(
                mesh,
                &dataplanes,
                &ingresses,
                self.settings.local_zone.as_deref(),
            )
        } else {
            BTreeSet::new()
        };

        let config_key = ResourceKey::global(ResourceType::Config, vips::config_name(mesh));
        let stored = self
            .store
            .get_stored(&config_key)
            .await?
            .map(|s| s.resource);
        let stored_text = stored.as_ref().and_then(|r| match &r.spec {
            Spec::Config(c) => Some(c.config.clone()),
            _ => None,
        });
        let previous = match stored_text
            .as_deref()
            .map(|t| vips::decode(&config_key.name, t))
        {
            Some(Ok(previous)) => previous,
            Some(Err(e)) => {
                warn!(mesh, error = %e, "DNS VIPs: the stored VIPs cannot be read; keeping the ones this control plane knew");
                self.meshes.get(mesh).cloned().unwrap_or_default()
            }
            None => self.meshes.get(mesh).cloned().unwrap_or_default(),
        };

        let allocation = vips::allocate(self.settings.cidr, &previous, &wanted);
        if allocation.unallocated.is_empty() {
            self.full.remove(mesh);
        } else if self.full.get(mesh) != Some(&allocation.unallocated) {
            error!(
                mesh,
                cidr = %self.settings.cidr,
                services = ?allocation.unallocated,
                "DNS VIPs: dnsServer.CIDR {} is full: {} service(s) of mesh {mesh:?} get no VIP",
                self.settings.cidr,
                allocation.unallocated.len(),
            );
            self.state.metrics().allocation_failed(mesh);
            self.full
                .insert(mesh.to_owned(), allocation.unallocated.clone());
        }
        for (service, address) in &allocation.vips {
            if previous.get(service) != Some(address) {
                debug!(mesh, service, %address, "DNS VIP allocated");
            }
        }

        let text = vips::encode(&allocation.vips);
        if stored_text.as_deref() != Some(text.as_str()) {
            let spec = Spec::Config(system_pb::Config {
                config: text.clone(),
            });
            let op = match stored {
                Some(mut existing) => {
                    existing.spec = spec;
                    Op::Update { resource: existing }
                }
                None => Op::Create {
                    resource: Resource::new("", config_key.name.clone(), spec),
                    owner: Some(mesh_key),
                },
            };
            self.store.commit(vec![op]).await?;
        }
        self.state.metrics().set_vips(mesh, allocation.vips.len());
        self.meshes.insert(mesh.to_owned(), allocation.vips);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use model::mesh_pb::dataplane::Networking;
    use model::mesh_pb::dataplane::networking::Inbound;
    use model::mesh_pb::{Dataplane, Mesh};
    use store::memory::MemoryStore;

    use super::*;
    use crate::metrics::DnsMetrics;

    fn dataplane(mesh: &str, name: &str, service: &str) -> Resource {
        Resource::new(
            mesh,
            name,
            Spec::Dataplane(Dataplane {
                networking: Some(Networking {
                    address: "10.0.0.1".into(),
                    inbound: vec![Inbound {
                        port: 8080,
                        tags: [(model::labels::tags::SERVICE.to_owned(), service.to_owned())]
                            .into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            }),
        )
    }

    /// Polls `check` until it holds, failing after 10 s.
    async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn start(
        store: Arc<dyn ResourceStore>,
        cidr: &str,
    ) -> (
        Arc<DnsState>,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let state = DnsState::new("mesh", Vec::new(), DnsMetrics::default());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let settings = AllocatorSettings {
            cidr: cidr.parse().expect("cidr"),
            local_zone: None,
            service_vips: true,
        };
        let task = tokio::spawn(run(store, settings, state.clone(), async {
            let _ = rx.await;
        }));
        (state, tx, task)
    }

    fn ip(a: u8, b: u8, c: u8, d: u8) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
    }

    #[tokio::test]
    async fn vips_follow_the_store_persist_and_survive_a_restart() {
        let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
        store
            .create(
                Resource::new("", "default", Spec::Mesh(Mesh::default())),
                None,
            )
            .await
            .expect("mesh");
        store
            .create(dataplane("default", "b", "backend"), None)
            .await
            .expect("dp");
        let (state, stop, task) = start(store.clone(), "240.0.0.0/4");
        eventually("backend", || {
            state.table().lookup("backend.mesh") == ip(240, 0, 0, 0)
        })
        .await;

        store
            .create(dataplane("default", "a", "api"), None)
            .await
            .expect("dp");
        eventually("api", || {
            state.table().lookup("api.mesh") == ip(240, 0, 0, 1)
        })
        .await;
        assert_eq!(
            state.table().lookup("backend.mesh"),
            ip(240, 0, 0, 0),
            "backend kept its VIP"
        );

        let config = store
            .get(&ResourceKey::global(
                ResourceType::Config,
                "kuma-default-dns-vips",
            ))
            .await
            .expect("config written");
        let Spec::Config(config) = config.spec else {
            panic!("not a config")
        };
        assert_eq!(
            vips::decode("c", &config.config).expect("decodes"),
            [
                ("api".to_owned(), IpAddr::V4(Ipv4Addr::new(240, 0, 0, 1))),
                (
                    "backend".to_owned(),
                    IpAddr::V4(Ipv4Addr::new(240, 0, 0, 0))
                ),
            ]
            .into()
        );

        // A restart: a fresh task with no memory reads the persisted VIPs back. A service
        // sorting first appears meanwhile; nobody moves.
        let _ = stop.send(());
        task.await.expect("task ends");
        store
            .create(dataplane("default", "c", "aaa"), None)
            .await
            .expect("dp");
        let (state, stop, task) = start(store.clone(), "240.0.0.0/4");
        eventually("aaa", || {
            state.table().lookup("aaa.mesh") == ip(240, 0, 0, 2)
        })
        .await;
        assert_eq!(state.table().lookup("backend.mesh"), ip(240, 0, 0, 0));
        assert_eq!(state.table().lookup("api.mesh"), ip(240, 0, 0, 1));

        // A service that disappears releases its VIP.
        store
            .delete(&ResourceKey::new(ResourceType::Dataplane, "default", "a"))
            .await
            .expect("delete");
        eventually("api released", || {
            state.table().lookup("api.mesh").is_none()
        })
        .await;

        // Deleting the mesh deletes its Config.
        store
            .delete(&ResourceKey::global(ResourceType::Mesh, "default"))
            .await
            .expect("delete mesh");
        eventually("mesh gone", || state.table().is_empty()).await;
        assert!(
            store
                .get_stored(&ResourceKey::global(
                    ResourceType::Config,
                    "kuma-default-dns-vips"
                ))
                .await
                .expect("read")
                .is_none()
        );
        let _ = stop.send(());
        task.await.expect("task ends");
    }

    #[tokio::test]
    async fn a_full_cidr_is_counted_and_the_rest_is_served() {
        let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
        store
            .create(
                Resource::new("", "default", Spec::Mesh(Mesh::default())),
                None,
            )
            .await
            .expect("mesh");
        for (name, service) in [("a", "a"), ("b", "b"), ("c", "c")] {
            store
                .create(dataplane("default", name, service), None)
                .await
                .expect("dp");
        }
        let (state, stop, task) = start(store.clone(), "10.0.0.0/31");
        eventually("error counted", || {
            state.metrics().allocation_errors("default") >= 1
        })
        .await;
        eventually("two served", || state.table().len() == 2).await;
        assert_eq!(state.table().lookup("a.mesh"), ip(10, 0, 0, 0));
        assert_eq!(state.table().lookup("c.mesh"), None);
        // Freeing an address lets the waiting service in.
        store
            .delete(&ResourceKey::new(ResourceType::Dataplane, "default", "a"))
            .await
            .expect("delete");
        eventually("c served", || {
            state.table().lookup("c.mesh") == ip(10, 0, 0, 0)
        })
        .await;
        let _ = stop.send(());
        task.await.expect("task ends");
    }
}
