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
//!
//! mTLS: when a mesh enables a backend, its CA is read from the store (a
//! change of a Secret of the mesh regenerates it) and every proxy gets a
//! workload certificate from [`ca::issue()`]. Certificates are kept per proxy
//! and reused while their SANs, the CA's fingerprint and the configured
//! lifetime stay the same, so regenerating a mesh for an unrelated change
//! resends no secret. Each is reissued at 80% of its lifetime: the task
//! sleeps until the earliest such moment (no polling). A mesh whose CA cannot
//! be read (e.g. its secrets have not arrived yet) is logged and its proxies
//! keep the snapshots they have (those of deleted Dataplanes are removed)
//! until the next change.
//!
//! Other zones: every ZoneIngress is read, and a change of another zone's
//! ingress (its available services, its address) regenerates every mesh:
//! with mTLS on, a mesh's outbounds get those services as endpoints
//! ([`crate::endpoints`]); without it, a warning says they cannot be reached.
//!
//! VIPs: the mesh's service VIPs are read from the Config `kuma-{mesh}-dns-vips`
//! (written by the zone's `dns` allocator; parsed by [`dns::vips::decode`]) and
//! a change of that Config regenerates the mesh, so transparent-proxy
//! Dataplanes get their VIP outbounds ([`crate::transparent`]). A Config that
//! cannot be parsed is logged and the VIPs last read for the mesh are kept.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use model::{Resource, ResourceKey, ResourceType, Spec};
use store::{ListQuery, ResourceStore, StoreError};
use tracing::{debug, warn};

use crate::ads::SnapshotCache;
use crate::endpoints::RemoteIngresses;
use crate::transparent::{ServiceVips, Vips};
use crate::{MeshContext, MeshIndex, MeshTls, ProxyIdentity, generate_indexed};

/// The policy types generation reads (the mesh's resources of these types
/// are its [`MeshContext::policies`]).
pub const POLICY_TYPES: &[ResourceType] =
    &[ResourceType::TrafficPermission, ResourceType::TrafficRoute];

/// Wait before retrying after the store failed.
const RETRY: Duration = Duration::from_secs(1);

/// Runs until `stop` resolves: keeps `cache` equal to what [`generate()`]
/// gives for every Dataplane in `store` (VIP outbounds on port 80).
pub async fn run(
    store: Arc<dyn ResourceStore>,
    cache: SnapshotCache,
    stop: impl Future<Output = ()>,
) {
    run_with(store, cache, FeedSettings::default(), stop).await;
}

/// What the feed needs to know about the zone it runs in.
#[derive(Debug, Clone, Default)]
pub struct FeedSettings {
    /// `dnsServer.serviceVipEnabled` / `serviceVipPort`.
    pub service_vips: ServiceVips,
    /// This zone's name: ZoneIngresses of other zones carry their services.
    pub local_zone: String,
}

/// [`run`] with the zone's settings.
pub async fn run_with(
    store: Arc<dyn ResourceStore>,
    cache: SnapshotCache,
    settings: FeedSettings,
    stop: impl Future<Output = ()>,
) {
    let mut feed = Feed {
        store,
        cache,
        service_vips: settings.service_vips,
        local_zone: settings.local_zone,
        zone_ingresses: Vec::new(),
        remote_without_mtls: BTreeSet::new(),
        known: HashMap::new(),
        indexes: HashMap::new(),
        certs: HashMap::new(),
        vips: HashMap::new(),
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
    service_vips: ServiceVips,
    local_zone: String,
    /// Every ZoneIngress, as last read (other zones' make services available).
    zone_ingresses: Vec<Resource>,
    /// Meshes told they cannot reach other zones' services without mTLS.
    remote_without_mtls: BTreeSet<String>,
    /// Per mesh, the VIPs last read from its Config.
    vips: HashMap<String, Vips>,
    /// Per mesh, the Dataplane names that have a snapshot in the cache.
    known: HashMap<String, BTreeSet<String>>,
    /// Per node id, the workload certificate last issued.
    certs: HashMap<String, IssuedCert>,
    /// Per mesh, the index of the last pass (its load assignments are shared
    /// again when unchanged).
    indexes: HashMap<String, MeshIndex>,
}

/// What a workload certificate was issued for: a change of any part means
/// a new certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CertKey {
    sans: Vec<String>,
    ca_fingerprint: String,
    validity: time::Duration,
}

/// A proxy's workload certificate and when to replace it.
#[derive(Debug, Clone)]
struct IssuedCert {
    mesh: String,
    key: CertKey,
    identity: ProxyIdentity,
    renew_at: time::OffsetDateTime,
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
            loop {
                let renewal = self.next_renewal();
                let change = tokio::select! {
                    change = changes.next() => change,
                    () = tokio::time::sleep_until(renewal) => {
                        if let Err(e) = self.renew_due().await {
                            warn!(error = %e, "xDS feed: reading the store failed; resyncing");
                            break;
                        }
                        continue;
                    }
                };
                let Some(change) = change else { break };
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
                    ResourceType::ZoneIngress => {
                        // Another zone's services came, went or moved: every mesh.
                        if let Err(e) = self.resync_ingresses().await {
                            warn!(error = %e, "xDS feed: reading the store failed; resyncing");
                            break;
                        }
                        continue;
                    }
                    ResourceType::Mesh => event.name,
                    // A Secret may be the mesh's CA.
                    ResourceType::Dataplane | ResourceType::Secret => event.mesh,
                    kind if POLICY_TYPES.contains(&kind) => event.mesh,
                    ResourceType::Config => match dns::vips::mesh_of_config(&event.name) {
                        Some(mesh) => mesh.to_owned(),
                        None => continue,
                    },
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
        self.zone_ingresses = self.read_zone_ingresses().await?;
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

    async fn read_zone_ingresses(&self) -> Result<Vec<Resource>, StoreError> {
        Ok(self
            .store
            .list(&ListQuery::all(ResourceType::ZoneIngress))
            .await?
            .items)
    }

    /// Rereads the ZoneIngresses; when another zone's changed, regenerates
    /// every mesh with proxies (a change of this zone's own ingresses, e.g.
    /// its available services, changes nothing for its sidecars).
    async fn resync_ingresses(&mut self) -> Result<(), StoreError> {
        let ingresses = self.read_zone_ingresses().await?;
        let remote = |all: &[Resource]| -> Vec<Resource> {
            let mut remote: Vec<Resource> = all
                .iter()
                .filter(|r| match &r.spec {
                    Spec::ZoneIngress(zi) => !zi.zone.is_empty() && zi.zone != self.local_zone,
                    _ => false,
                })
                .cloned()
                .collect();
            remote.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
            remote
        };
        let changed = remote(&ingresses) != remote(&self.zone_ingresses);
        self.zone_ingresses = ingresses;
        if changed {
            let meshes: Vec<String> = self.known.keys().cloned().collect();
            for mesh in meshes {
                self.regenerate_mesh(&mesh).await?;
            }
        }
        Ok(())
    }

    /// Warns once (until it changes) that other zones offer services in
    /// `mesh` its proxies cannot reach because the mesh has no mTLS
    /// (cross-zone traffic is routed by SNI).
    fn report_remote_without_mtls(&mut self, mesh: &Resource, mtls: bool) {
        let name = &mesh.meta.name;
        let remote = RemoteIngresses {
            zone_ingresses: &self.zone_ingresses,
            local_zone: &self.local_zone,
        };
        let unreachable = !mtls && !crate::endpoints::remote_instances(name, remote).is_empty();
        if !unreachable {
            self.remote_without_mtls.remove(name);
        } else if self.remote_without_mtls.insert(name.clone()) {
            warn!(
                mesh = name,
                "other zones offer services in this mesh, but cross-zone traffic needs mTLS: enable an mTLS backend on the Mesh to reach them"
            );
        }
    }

    /// When the earliest certificate is due for renewal (far away when none).
    fn next_renewal(&self) -> tokio::time::Instant {
        let now = time::OffsetDateTime::now_utc();
        let far = tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600);
        self.certs
            .values()
            .map(|c| c.renew_at)
            .min()
            .map_or(far, |at| {
                let wait = Duration::try_from(at - now).unwrap_or(Duration::ZERO);
                tokio::time::Instant::now() + wait.min(Duration::from_secs(365 * 24 * 3600))
            })
    }

    /// Regenerates every mesh with a certificate due for renewal.
    async fn renew_due(&mut self) -> Result<(), StoreError> {
        let now = time::OffsetDateTime::now_utc();
        let due: BTreeSet<String> = self
            .certs
            .values()
            .filter(|c| c.renew_at <= now)
            .map(|c| c.mesh.clone())
            .collect();
        for mesh in due {
            debug!(mesh, "renewing workload certificates");
            // A mesh whose CA cannot be read keeps its due certificates: forget
            // them so the timer does not fire again at once.
            self.certs.retain(|_, c| c.mesh != mesh || c.renew_at > now);
            self.regenerate_mesh(&mesh).await?;
        }
        Ok(())
    }

    /// Reads the VIPs of `mesh` from its Config into `self.vips` (none when
    /// there is no Config; the last good ones when it cannot be parsed).
    async fn read_vips(&mut self, mesh: &str) -> Result<(), StoreError> {
        let name = dns::vips::config_name(mesh);
        let key = ResourceKey::global(ResourceType::Config, name.clone());
        let text = match self.store.get_stored(&key).await? {
            Some(stored) => match stored.resource.spec {
                Spec::Config(config) => config.config,
                _ => String::new(),
            },
            None => String::new(),
        };
        match dns::vips::decode(&name, &text) {
            Ok(vips) => {
                self.vips.insert(mesh.to_owned(), vips);
            }
            Err(e) => {
                warn!(mesh, error = %e, "VIPs: the Config cannot be read; the VIPs last read are kept");
            }
        }
        Ok(())
    }

    /// The CA bundle of `mesh` and a way to get each proxy's certificate,
    /// when it enables mTLS. `Err(None)` when its CA cannot be used (logged).
    async fn mesh_tls(&self, mesh: &Resource) -> Result<Option<MeshCerts>, Option<StoreError>> {
        let ca = match ca::load(self.store.as_ref(), mesh).await {
            Ok(Some(ca)) => ca,
            Ok(None) => return Ok(None),
            Err(ca::CaError::Store { source, .. }) => return Err(Some(*source)),
            Err(e) => {
                warn!(mesh = mesh.meta.name, error = %e, "mTLS: the mesh CA cannot be used; its proxies keep their config");
                return Err(None);
            }
        };
        let validity = ca::mesh_spec(mesh)
            .and_then(ca::enabled_backend)
            .map(|(index, backend)| ca::workload_validity(&mesh.meta.name, index, backend));
        let validity = match validity {
            Some(Ok(v)) => v,
            Some(Err(e)) => {
                warn!(mesh = mesh.meta.name, error = %e, "mTLS: bad certificate settings; its proxies keep their config");
                return Err(None);
            }
            None => return Ok(None),
        };
        Ok(Some(MeshCerts {
            tls: MeshTls {
                ca_bundle_pem: ca.cert_pem.clone(),
            },
            ca,
            validity,
        }))
    }

    /// The certificate of `proxy`: the one issued before when still right,
    /// else a new one.
    fn certificate(
        &mut self,
        node_id: &str,
        proxy: &Resource,
        certs: &MeshCerts,
    ) -> Result<ProxyIdentity, ca::CaError> {
        let key = CertKey {
            sans: ca::workload_sans(proxy),
            ca_fingerprint: certs.ca.fingerprint(),
            validity: certs.validity,
        };
        let now = time::OffsetDateTime::now_utc();
        if let Some(issued) = self.certs.get(node_id)
            && issued.key == key
            && issued.renew_at > now
        {
            return Ok(issued.identity.clone());
        }
        let cert = ca::issue(&certs.ca, &key.sans, certs.validity, now)?;
        debug!(node = node_id, not_after = %cert.not_after, "workload certificate issued");
        let identity = ProxyIdentity {
            cert_chain_pem: cert.cert_pem,
            key_pem: cert.key_pem,
        };
        self.certs.insert(
            node_id.to_owned(),
            IssuedCert {
                mesh: proxy.meta.mesh.clone(),
                key,
                identity: identity.clone(),
                renew_at: now + certs.validity * 0.8,
            },
        );
        Ok(identity)
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
                self.read_vips(mesh_name).await?;
                (Some(stored.resource), dataplanes, policies)
            }
            None => {
                self.vips.remove(mesh_name);
                (None, Vec::new(), Vec::new())
            }
        };
        let no_vips = Vips::new();
        let vips = self.vips.get(mesh_name).cloned().unwrap_or(no_vips);
        let certs = match &mesh {
            Some(mesh) => match self.mesh_tls(mesh).await {
                Ok(certs) => certs,
                Err(Some(e)) => return Err(e),
                Err(None) => {
                    // Keep the snapshots of the proxies still there, as they are.
                    let names: BTreeSet<String> =
                        dataplanes.iter().map(|d| d.meta.name.clone()).collect();
                    let previous = self.known.remove(mesh_name).unwrap_or_default();
                    for gone in previous.difference(&names) {
                        self.cache.remove(&format!("{mesh_name}.{gone}"));
                        self.certs.remove(&format!("{mesh_name}.{gone}"));
                    }
                    let kept: BTreeSet<String> = previous.intersection(&names).cloned().collect();
                    if !kept.is_empty() {
                        self.known.insert(mesh_name.to_owned(), kept);
                    }
                    return Ok(());
                }
            },
            None => None,
        };
        let mut present = BTreeSet::new();
        if let Some(mesh) = &mesh {
            self.report_remote_without_mtls(mesh, certs.is_some());
        }
        // The mesh's endpoints are indexed once for all its proxies.
        let index = match &mesh {
            Some(mesh) => {
                let mut context = MeshContext::new(mesh, &dataplanes);
                context.remote = RemoteIngresses {
                    zone_ingresses: &self.zone_ingresses,
                    local_zone: &self.local_zone,
                };
                let built = match self.indexes.remove(mesh_name) {
                    Some(previous) => MeshIndex::build_after(&context, previous),
                    None => MeshIndex::build(&context),
                };
                match built {
                    Ok(index) => Some(index),
                    Err(e) => {
                        warn!(mesh = mesh_name, error = %e, "indexing the mesh's dataplanes failed; its proxies keep their config");
                        return Ok(());
                    }
                }
            }
            None => None,
        };
        if let (Some(mesh), Some(index)) = (&mesh, &index) {
            for proxy in &dataplanes {
                let node_id = node_id(proxy);
                let identity = match &certs {
                    None => None,
                    Some(certs) => match self.certificate(&node_id, proxy, certs) {
                        Ok(identity) => Some(identity),
                        Err(e) => {
                            warn!(node = node_id, error = %e, "mTLS: issuing the workload certificate failed; skipped");
                            self.cache.remove(&node_id);
                            continue;
                        }
                    },
                };
                let mut context = MeshContext::new(mesh, &dataplanes);
                context.policies = &policies;
                context.tls = certs.as_ref().map(|c| &c.tls);
                context.identity = identity.as_ref();
                context.vips = &vips;
                context.service_vips = self.service_vips;
                context.remote = RemoteIngresses {
                    zone_ingresses: &self.zone_ingresses,
                    local_zone: &self.local_zone,
                };
                match generate_indexed(proxy, &context, index) {
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
            self.certs.remove(&format!("{mesh_name}.{gone}"));
        }
        if certs.is_none() {
            self.certs.retain(|_, c| c.mesh != mesh_name);
        }
        if !present.is_empty() {
            self.known.insert(mesh_name.to_owned(), present);
        }
        if let Some(index) = index {
            self.indexes.insert(mesh_name.to_owned(), index);
        }
        Ok(())
    }
}

/// A mesh's CA, its bundle for generation, and the workload certificates' lifetime.
struct MeshCerts {
    ca: ca::MeshCa,
    tls: MeshTls,
    validity: time::Duration,
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
        let secrets =
            ca::ca_secrets_to_create(store.as_ref(), &mesh, time::OffsetDateTime::now_utc())
                .await
                .expect("CA");
        for secret in secrets {
            store.create(secret, None).await.expect("store write");
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

    /// The listener names of `node`'s snapshot.
    fn listener_names(cache: &SnapshotCache, node: &str) -> Vec<String> {
        cache.get(node).map_or_else(Vec::new, |snapshot| {
            snapshot
                .resources()
                .listeners
                .iter()
                .map(|l| l.name.clone())
                .collect()
        })
    }

    #[tokio::test]
    async fn a_changed_vip_config_regenerates_the_mesh() {
        use model::mesh_pb::dataplane::networking::TransparentProxying;
        let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
        store
            .create(
                Resource::new("", "default", Spec::Mesh(Mesh::default())),
                None,
            )
            .await
            .expect("store write");
        store.create(route_all(), None).await.expect("store write");
        let mut web = dataplane("web-1", "10.0.0.1", "web", None);
        if let Spec::Dataplane(spec) = &mut web.spec
            && let Some(networking) = spec.networking.as_mut()
        {
            networking.transparent_proxying = Some(TransparentProxying {
                redirect_port_inbound: 15006,
                redirect_port_outbound: 15001,
                ..Default::default()
            });
        }
        store.create(web, None).await.expect("store write");
        store
            .create(dataplane("backend-1", "10.0.0.2", "backend", None), None)
            .await
            .expect("store write");
        let config = |text: &str| {
            Resource::new(
                "",
                "kuma-default-dns-vips",
                Spec::Config(model::system_pb::Config {
                    config: text.to_owned(),
                }),
            )
        };
        store
            .create(config(r#"{"0:backend":{"address":"240.0.0.0"}}"#), None)
            .await
            .expect("store write");

        let cache = SnapshotCache::new();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(store.clone(), cache.clone(), async move {
            let _ = stop_rx.await;
        }));
        let has = |cache: &SnapshotCache, listener: &str| {
            listener_names(cache, "default.web-1").contains(&listener.to_owned())
        };
        eventually("the VIP outbound", || has(&cache, "outbound:240.0.0.0:80")).await;
        assert!(has(&cache, "outbound:passthrough:ipv4"));

        // The allocator (or a user) rewrites the Config: the listener follows.
        let key = ResourceKey::global(ResourceType::Config, "kuma-default-dns-vips");
        let mut stored = store.get(&key).await.expect("config");
        stored.spec =
            config(r#"{"0:backend":{"address":"240.0.0.5"},"0:web":{"address":"240.0.0.6"}}"#).spec;
        store.update(stored).await.expect("store write");
        eventually("the moved VIP outbound", || {
            has(&cache, "outbound:240.0.0.5:80")
                && has(&cache, "outbound:240.0.0.6:80")
                && !has(&cache, "outbound:240.0.0.0:80")
        })
        .await;

        // A Config that cannot be parsed changes nothing; another mesh's
        // change shows the feed went past it.
        let mut stored = store.get(&key).await.expect("config");
        stored.spec = config("not json").spec;
        store.update(stored).await.expect("store write");
        store
            .create(
                Resource::new("", "elsewhere", Spec::Mesh(Mesh::default())),
                None,
            )
            .await
            .expect("store write");
        let mut other = dataplane("other-1", "10.0.0.9", "other", None);
        other.meta.mesh = "elsewhere".into();
        store.create(other, None).await.expect("store write");
        eventually("the other mesh's snapshot", || {
            cache.get("elsewhere.other-1").is_some()
        })
        .await;
        assert!(has(&cache, "outbound:240.0.0.5:80"), "VIPs lost");

        // The plain (non transparent) proxy never gets VIP outbounds.
        assert!(
            !listener_names(&cache, "default.backend-1")
                .iter()
                .any(|l| l.starts_with("outbound:240."))
        );

        stop_tx.send(()).expect("feed running");
        task.await.expect("feed task");
    }

    /// A mesh with a builtin CA whose workload certificates live `expiration`.
    async fn mtls_mesh(store: &dyn ResourceStore, expiration: &str) {
        use model::mesh_pb::certificate_authority_backend::{DpCert, dp_cert::Rotation};
        use model::mesh_pb::{CertificateAuthorityBackend, mesh::Mtls};
        let spec = Mesh {
            mtls: Some(Mtls {
                enabled_backend: "ca-1".into(),
                backends: vec![CertificateAuthorityBackend {
                    name: "ca-1".into(),
                    r#type: "builtin".into(),
                    dp_cert: Some(DpCert {
                        rotation: Some(Rotation {
                            expiration: expiration.into(),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let mesh = Resource::new("", "default", Spec::Mesh(spec));
        let secrets = ca::ca_secrets_to_create(store, &mesh, time::OffsetDateTime::now_utc())
            .await
            .expect("CA");
        store.create(mesh, None).await.expect("store write");
        for secret in secrets {
            store.create(secret, None).await.expect("store write");
        }
        store.create(route_all(), None).await.expect("store write");
    }

    /// The PEM certificate `node` currently has, if any.
    fn identity_cert(cache: &SnapshotCache, node: &str) -> Option<Vec<u8>> {
        use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
        use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::secret::Type;
        let snapshot = cache.get(node)?;
        let secret = snapshot
            .resources()
            .secrets
            .iter()
            .find(|s| s.name == "identity_cert:secret:default")?
            .clone();
        match secret.r#type? {
            Type::TlsCertificate(c) => match c.certificate_chain?.specifier? {
                Specifier::InlineBytes(b) => Some(b),
                _ => None,
            },
            _ => None,
        }
    }

    #[tokio::test]
    async fn certificates_are_reused_across_unrelated_changes() {
        let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
        mtls_mesh(store.as_ref(), "").await;
        store
            .create(dataplane("web-1", "10.0.0.1", "web", Some("backend")), None)
            .await
            .expect("store write");
        let cache = SnapshotCache::new();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(store.clone(), cache.clone(), async move {
            let _ = stop_rx.await;
        }));
        eventually("a certificate", || {
            identity_cert(&cache, "default.web-1").is_some()
        })
        .await;
        let first = identity_cert(&cache, "default.web-1");
        let snapshot = cache.get("default.web-1").expect("snapshot");
        assert_eq!(snapshot.resources().secrets.len(), 2);
        assert!(
            snapshot.resources().clusters[0].transport_socket.is_some(),
            "outbound cluster without TLS"
        );
        let secrets_version = snapshot.version(crate::SECRET_TYPE_URL).map(str::to_owned);

        store
            .create(dataplane("backend-1", "10.0.0.2", "backend", None), None)
            .await
            .expect("store write");
        eventually("one backend endpoint", || {
            endpoints(&cache, "default.web-1", "backend") == Some(1)
        })
        .await;
        assert_eq!(identity_cert(&cache, "default.web-1"), first, "reissued");
        let snapshot = cache.get("default.web-1").expect("snapshot");
        assert_eq!(
            snapshot.version(crate::SECRET_TYPE_URL).map(str::to_owned),
            secrets_version
        );
        assert!(identity_cert(&cache, "default.backend-1").is_some());

        stop_tx.send(()).expect("feed running");
        task.await.expect("feed task");
    }

    #[tokio::test]
    async fn a_mesh_waits_for_its_ca_secrets() {
        // As on a federated zone: the Mesh arrives before its CA secrets.
        let source: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
        mtls_mesh(source.as_ref(), "").await;
        let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
        let mesh_key = ResourceKey::new(ResourceType::Mesh, "", "default");
        store
            .create(source.get(&mesh_key).await.expect("mesh"), None)
            .await
            .expect("store write");
        store
            .create(dataplane("web-1", "10.0.0.1", "web", None), None)
            .await
            .expect("store write");
        let cache = SnapshotCache::new();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(store.clone(), cache.clone(), async move {
            let _ = stop_rx.await;
        }));
        // A change the feed handles after the mesh: once it is done, the mesh was seen.
        let mut other = dataplane("other-1", "10.0.0.9", "other", None);
        other.meta.mesh = "elsewhere".into();
        store
            .create(
                Resource::new("", "elsewhere", Spec::Mesh(Mesh::default())),
                None,
            )
            .await
            .expect("store write");
        store.create(other, None).await.expect("store write");
        eventually("the plaintext mesh's snapshot", || {
            cache.get("elsewhere.other-1").is_some()
        })
        .await;
        assert!(
            cache.get("default.web-1").is_none(),
            "mTLS config without a CA"
        );

        let secrets = source
            .list(&ListQuery::in_mesh(ResourceType::Secret, "default"))
            .await
            .expect("list")
            .items;
        for secret in secrets {
            store.create(secret, None).await.expect("store write");
        }
        eventually("a certificate once the CA arrived", || {
            identity_cert(&cache, "default.web-1").is_some()
        })
        .await;

        stop_tx.send(()).expect("feed running");
        task.await.expect("feed task");
    }

    #[tokio::test]
    async fn certificates_are_renewed_before_they_expire() {
        let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
        // Renewed at 80% of 2 s, with no change in the store.
        mtls_mesh(store.as_ref(), "2s").await;
        store
            .create(dataplane("web-1", "10.0.0.1", "web", None), None)
            .await
            .expect("store write");
        let cache = SnapshotCache::new();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(store.clone(), cache.clone(), async move {
            let _ = stop_rx.await;
        }));
        eventually("a certificate", || {
            identity_cert(&cache, "default.web-1").is_some()
        })
        .await;
        let first = identity_cert(&cache, "default.web-1");
        eventually("a renewed certificate", || {
            identity_cert(&cache, "default.web-1").is_some_and(|c| Some(c) != first)
        })
        .await;

        stop_tx.send(()).expect("feed running");
        task.await.expect("feed task");
    }
}
