//! The zone's ingress task: keeps every local ZoneIngress's
//! `availableServices` equal to what the zone's Dataplanes offer
//! ([`crate::available`]) and every local ingress's xDS snapshot (node id
//! `.{name}`) equal to what [`crate::generate()`] gives.
//!
//! It follows the store's change feed: a change of a Dataplane, a
//! TrafficRoute, a Mesh or a ZoneIngress starts a pass, after every change
//! already queued has been taken (a burst costs one pass). Nothing polls.
//! A pass reads the zone's Dataplanes, TrafficRoutes and ZoneIngresses.
//! Its own writes come back as ZoneIngress changes and end in a pass that
//! finds nothing to write. A write that loses a race is retried by the next
//! pass; a lost change feed means a full pass and following again.
//!
//! Local ingresses: those with an empty `zone` or this zone's, not
//! received from the global (`kuma.io/origin: global`).

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use model::labels;
use model::{Resource, ResourceType, Spec};
use store::{ListQuery, ResourceStore, StoreError};
use tracing::{debug, info, warn};
use xds::ads::SnapshotCache;

use crate::available::available_services;
use crate::generate::{IngressContext, generate};

/// Wait before retrying after the store failed.
const RETRY: Duration = Duration::from_secs(1);

/// The resource types whose changes start a pass.
const WATCHED: &[ResourceType] = &[
    ResourceType::Dataplane,
    ResourceType::TrafficRoute,
    ResourceType::Mesh,
    ResourceType::ZoneIngress,
];

/// The node id of the zone ingress `name`: Kuma's `.{name}` (no mesh).
pub fn node_id(name: &str) -> String {
    format!(".{name}")
}

/// Whether `ingress` is one of `zone`'s own ingresses.
pub fn is_local(ingress: &Resource, zone: &str) -> bool {
    let Spec::ZoneIngress(spec) = &ingress.spec else {
        return false;
    };
    let from_global = ingress
        .meta
        .labels
        .get(labels::ORIGIN)
        .is_some_and(|o| o == labels::ORIGIN_GLOBAL);
    !from_global && (spec.zone.is_empty() || spec.zone == zone)
}

/// Runs until `stop` resolves: the ingresses of `zone` in `store` get their
/// available services and their snapshots in `cache`.
pub async fn run(
    store: Arc<dyn ResourceStore>,
    cache: SnapshotCache,
    zone: String,
    stop: impl Future<Output = ()>,
) {
    let follow_store = store.clone();
    let mut feed = Feed {
        store,
        cache,
        zone,
        known: BTreeSet::new(),
    };
    tokio::pin!(stop);
    tokio::select! {
        () = &mut stop => {}
        () = store::follow::follow(follow_store.as_ref(), &mut feed, RETRY) => {}
    }
}

struct Feed {
    store: Arc<dyn ResourceStore>,
    cache: SnapshotCache,
    zone: String,
    /// Names of the ingresses with a snapshot.
    known: BTreeSet<String>,
}

#[store::follow::async_trait]
impl store::follow::Follower for Feed {
    fn name(&self) -> &'static str {
        "ingress feed"
    }

    async fn resync(&mut self, _store: &dyn ResourceStore) -> Result<(), StoreError> {
        self.pass().await
    }

    /// One pass for a burst of changes, when one of them matters.
    async fn apply(
        &mut self,
        _store: &dyn ResourceStore,
        batch: Vec<store::ChangeEvent>,
    ) -> Result<(), StoreError> {
        if batch.iter().any(|event| WATCHED.contains(&event.kind)) {
            self.pass().await?;
        }
        Ok(())
    }
}

impl Feed {
    /// Reads the zone and brings every local ingress up to date.
    async fn pass(&mut self) -> Result<(), StoreError> {
        let ingresses: Vec<Resource> = self
            .store
            .list(&ListQuery::all(ResourceType::ZoneIngress))
            .await?
            .items
            .into_iter()
            .filter(|i| is_local(i, &self.zone))
            .collect();
        let present: BTreeSet<String> = ingresses.iter().map(|i| i.meta.name.clone()).collect();
        for gone in self.known.difference(&present) {
            self.cache.remove(&node_id(gone));
        }
        self.known = present;
        if ingresses.is_empty() {
            return Ok(());
        }
        let dataplanes = self
            .store
            .list(&ListQuery::all(ResourceType::Dataplane))
            .await?
            .items;
        let traffic_routes = self
            .store
            .list(&ListQuery::all(ResourceType::TrafficRoute))
            .await?
            .items;
        let available = match available_services(&self.zone, &dataplanes) {
            Ok(available) => Some(available),
            Err(e) => {
                warn!(error = %e, "ingress feed: the zone's available services cannot be computed; left as they are");
                None
            }
        };
        let context = IngressContext {
            dataplanes: &dataplanes,
            traffic_routes: &traffic_routes,
        };
        for ingress in ingresses {
            let name = ingress.meta.name.clone();
            match generate(&ingress, &context) {
                Ok(resources) => {
                    if self.cache.set(&node_id(&name), resources) {
                        debug!(ingress = name, "ingress xDS snapshot updated");
                    }
                }
                Err(e) => {
                    warn!(ingress = name, error = %e, "generating the ingress's Envoy config failed; skipped");
                    self.cache.remove(&node_id(&name));
                }
            }
            if let Some(available) = &available {
                self.write_available(ingress, available).await;
            }
        }
        Ok(())
    }

    /// Stores `available` in `ingress` when it differs. A lost race is left
    /// to the pass its winner's change starts.
    async fn write_available(
        &self,
        mut ingress: Resource,
        available: &[model::mesh_pb::zone_ingress::AvailableService],
    ) {
        let Spec::ZoneIngress(spec) = &mut ingress.spec else {
            return;
        };
        if spec.available_services == available {
            return;
        }
        let total: u32 = available.iter().map(|s| s.instances).sum();
        spec.available_services = available.to_vec();
        let name = ingress.meta.name.clone();
        match self.store.update(ingress).await {
            Ok(_) => info!(
                ingress = name,
                services = available.len(),
                instances = total,
                "zone ingress: available services updated"
            ),
            Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => {
                debug!(
                    ingress = name,
                    "zone ingress changed meanwhile; the next pass retries"
                );
            }
            Err(e) => {
                warn!(ingress = name, error = %e, "zone ingress: writing available services failed")
            }
        }
    }
}
