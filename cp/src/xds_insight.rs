//! DataplaneInsight, written from the ADS server's stream events (reference:
//! `kuma-api.md` §4.3, §5.1): per proxy, one `DiscoverySubscription` per
//! stream (id, this instance's `controlPlaneInstanceId`, connect and
//! disconnect times, per-type and total `responsesSent/Acknowledged/Rejected`,
//! `lastUpdateTime`, Envoy's and kuma-dp's versions, a generation), the
//! node metadata (without the inline `dataplane.resource`), and our
//! `lastNack` extension (type, version, Envoy's reason, time).
//!
//! The hooks ([`InsightRecorder`]) only send to a channel; one writer task
//! owns the counters and writes to the store: every
//! `xdsServer.dataplaneStatusFlushInterval` for counters, and within
//! [`PROMPT`] after a connect, a disconnect or a NACK, so the API shows them
//! quickly. When the control plane stops, the writer closes the subscriptions of its
//! streams and writes them before it returns. A write merges into the stored insight: subscriptions of other
//! instances are kept, a new subscription closes every older one left open
//! (their stream is gone: Kuma's finalisation), and the newest
//! [`SUBSCRIPTIONS_KEPT`] are kept. The insight is owned by its Dataplane
//! (deleted with it); none is written for a proxy without a Dataplane.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use envoy_types::pb::envoy::config::core::v3::node::UserAgentVersionType;
use envoy_types::pb::google::protobuf::Timestamp;
use envoy_types::pb::google::protobuf::value::Kind;
use model::mesh_pb::dataplane_insight::XdsRejection;
use model::mesh_pb::{
    DataplaneInsight, DiscoveryServiceStats, DiscoverySubscription, DiscoverySubscriptionStatus,
    EnvoyVersion, KumaDpVersion, Version, ZoneIngressInsight,
};
use model::{Resource, ResourceKey, ResourceType, Spec};
use store::StoreError;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::warn;
use xds::ads::{ConnectInfo, NodeId, StreamEvents, StreamId};
use xds::bootstrap::DATAPLANE_RESOURCE_METADATA;
use xds::{CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL, LISTENER_TYPE_URL};

use crate::tokens::SharedStore;

/// How soon a connect, disconnect or NACK reaches the store.
pub const PROMPT: Duration = Duration::from_secs(1);

/// Subscriptions kept per insight (the newest).
pub const SUBSCRIPTIONS_KEPT: usize = 5;

const ROUTE_TYPE_URL: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";

enum Event {
    Connected {
        stream: StreamId,
        node: NodeId,
        info: Box<ConnectInfo>,
        at: SystemTime,
    },
    Sent {
        stream: StreamId,
        node: NodeId,
        type_url: String,
    },
    Acked {
        stream: StreamId,
        node: NodeId,
        type_url: String,
    },
    Nacked {
        stream: StreamId,
        node: NodeId,
        type_url: String,
        version: String,
        reason: String,
        at: SystemTime,
    },
    Disconnected {
        stream: StreamId,
        node: NodeId,
        at: SystemTime,
    },
}

/// The [`StreamEvents`] side: every event goes to the writer task.
pub struct InsightRecorder {
    tx: mpsc::UnboundedSender<Event>,
}

impl StreamEvents for InsightRecorder {
    fn connected(&self, stream: StreamId, node: &NodeId, info: &ConnectInfo) {
        let _ = self.tx.send(Event::Connected {
            stream,
            node: node.clone(),
            info: Box::new(info.clone()),
            at: SystemTime::now(),
        });
    }
    fn sent(&self, stream: StreamId, node: &NodeId, type_url: &str, _version: &str) {
        let _ = self.tx.send(Event::Sent {
            stream,
            node: node.clone(),
            type_url: type_url.to_owned(),
        });
    }
    fn acked(&self, stream: StreamId, node: &NodeId, type_url: &str, _version: &str) {
        let _ = self.tx.send(Event::Acked {
            stream,
            node: node.clone(),
            type_url: type_url.to_owned(),
        });
    }
    fn nacked(&self, stream: StreamId, node: &NodeId, type_url: &str, version: &str, reason: &str) {
        let _ = self.tx.send(Event::Nacked {
            stream,
            node: node.clone(),
            type_url: type_url.to_owned(),
            version: version.to_owned(),
            reason: reason.to_owned(),
            at: SystemTime::now(),
        });
    }
    fn disconnected(&self, stream: StreamId, node: &NodeId) {
        let _ = self.tx.send(Event::Disconnected {
            stream,
            node: node.clone(),
            at: SystemTime::now(),
        });
    }
}

fn timestamp(at: SystemTime) -> Timestamp {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
    }
}

/// What this instance knows of one proxy since its last write.
#[derive(Default)]
struct Proxy {
    subscriptions: BTreeMap<StreamId, DiscoverySubscription>,
    metadata: Option<envoy_types::pb::google::protobuf::Struct>,
    last_nack: Option<XdsRejection>,
    dirty: bool,
}

/// Which counter of a status a type URL moves (besides `total`).
fn per_type<'a>(
    status: &'a mut DiscoverySubscriptionStatus,
    type_url: &str,
) -> Option<&'a mut Option<DiscoveryServiceStats>> {
    match type_url {
        CLUSTER_TYPE_URL => Some(&mut status.cds),
        ENDPOINT_TYPE_URL => Some(&mut status.eds),
        LISTENER_TYPE_URL => Some(&mut status.lds),
        ROUTE_TYPE_URL => Some(&mut status.rds),
        _ => None,
    }
}

fn count(
    subscription: &mut DiscoverySubscription,
    type_url: &str,
    bump: impl Fn(&mut DiscoveryServiceStats),
) {
    let status = subscription.status.get_or_insert_with(Default::default);
    bump(status.total.get_or_insert_with(Default::default));
    if let Some(stats) = per_type(status, type_url) {
        bump(stats.get_or_insert_with(Default::default));
    }
    status.last_update_time = Some(timestamp(SystemTime::now()));
    subscription.generation = subscription.generation.wrapping_add(1);
}

/// The versions a proxy reports: Envoy's build from the node, kuma-dp's from
/// the metadata Kuma's kuma-dp sends (`version.kumaDp.version`).
fn version_of(info: &ConnectInfo) -> Version {
    let envoy = match &info.node.user_agent_version_type {
        Some(UserAgentVersionType::UserAgentBuildVersion(build)) => build.version.as_ref(),
        _ => None,
    }
    .map(|v| EnvoyVersion {
        version: format!("{}.{}.{}", v.major_number, v.minor_number, v.patch),
        ..Default::default()
    });
    let kuma_dp = info
        .node
        .metadata
        .as_ref()
        .and_then(|m| m.fields.get("version"))
        .and_then(|v| match &v.kind {
            Some(Kind::StructValue(s)) => s.fields.get("kumaDp"),
            _ => None,
        })
        .and_then(|v| match &v.kind {
            Some(Kind::StructValue(s)) => s.fields.get("version"),
            _ => None,
        })
        .and_then(|v| match &v.kind {
            Some(Kind::StringValue(s)) => Some(KumaDpVersion {
                version: s.clone(),
                ..Default::default()
            }),
            _ => None,
        });
    Version {
        kuma_dp,
        envoy,
        ..Default::default()
    }
}

/// Starts the DataplaneInsight writer on `store`: the hooks to give the ADS
/// server and the task to run until `stop` (which writes what is pending
/// before it returns).
pub fn start(
    store: SharedStore,
    instance_id: String,
    flush_interval: Duration,
    stop: impl Future<Output = ()> + Send + 'static,
) -> (
    Arc<InsightRecorder>,
    impl Future<Output = ()> + Send + 'static,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let writer = Writer {
        store,
        instance_id,
        proxies: HashMap::new(),
    };
    let task = writer.run(rx, flush_interval, stop);
    (Arc::new(InsightRecorder { tx }), task)
}

struct Writer {
    store: SharedStore,
    instance_id: String,
    proxies: HashMap<(String, String), Proxy>,
}

impl Writer {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Event>,
        flush_interval: Duration,
        stop: impl Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        let flush_interval = flush_interval.max(Duration::from_millis(100));
        let mut regular = Instant::now() + flush_interval;
        let mut prompt: Option<Instant> = None;
        loop {
            let next = prompt.map_or(regular, |p| p.min(regular));
            tokio::select! {
                () = &mut stop => {
                    // This instance stops and its streams with it: say so.
                    while let Ok(event) = rx.try_recv() {
                        self.apply(event);
                    }
                    self.close_all(SystemTime::now());
                    self.flush().await;
                    return;
                }
                event = rx.recv() => match event {
                    None => {
                        self.flush().await;
                        return;
                    }
                    Some(event) => {
                        if self.apply(event) && prompt.is_none() {
                            prompt = Some(Instant::now() + PROMPT.min(flush_interval));
                        }
                    }
                },
                () = tokio::time::sleep_until(next) => {
                    self.flush().await;
                    prompt = None;
                    regular = Instant::now() + flush_interval;
                }
            }
        }
    }

    /// Records `event`; true when it should reach the store promptly.
    fn apply(&mut self, event: Event) -> bool {
        let instance_id = self.instance_id.clone();
        match event {
            Event::Connected {
                stream,
                node,
                info,
                at,
            } => {
                let p = self.proxy(&node);
                let mut metadata = info.node.metadata.clone();
                if let Some(m) = metadata.as_mut() {
                    m.fields.remove(DATAPLANE_RESOURCE_METADATA);
                }
                p.metadata = metadata;
                p.subscriptions.insert(
                    stream,
                    DiscoverySubscription {
                        id: format!("{instance_id}-{stream}"),
                        control_plane_instance_id: instance_id,
                        connect_time: Some(timestamp(at)),
                        disconnect_time: None,
                        status: Some(DiscoverySubscriptionStatus {
                            last_update_time: Some(timestamp(at)),
                            total: Some(DiscoveryServiceStats::default()),
                            ..Default::default()
                        }),
                        version: Some(version_of(&info)),
                        generation: 1,
                    },
                );
                true
            }
            Event::Sent {
                stream,
                node,
                type_url,
            } => {
                if let Some(s) = self.proxy(&node).subscriptions.get_mut(&stream) {
                    count(s, &type_url, |c| c.responses_sent += 1);
                }
                false
            }
            Event::Acked {
                stream,
                node,
                type_url,
            } => {
                if let Some(s) = self.proxy(&node).subscriptions.get_mut(&stream) {
                    count(s, &type_url, |c| c.responses_acknowledged += 1);
                }
                false
            }
            Event::Nacked {
                stream,
                node,
                type_url,
                version,
                reason,
                at,
            } => {
                let p = self.proxy(&node);
                let id = p.subscriptions.get_mut(&stream).map(|s| {
                    count(s, &type_url, |c| c.responses_rejected += 1);
                    s.id.clone()
                });
                p.last_nack = Some(XdsRejection {
                    type_url,
                    version,
                    reason,
                    time: Some(timestamp(at)),
                    subscription_id: id.unwrap_or_default(),
                });
                true
            }
            Event::Disconnected { stream, node, at } => {
                if let Some(s) = self.proxy(&node).subscriptions.get_mut(&stream) {
                    s.disconnect_time = Some(timestamp(at));
                    s.generation = s.generation.wrapping_add(1);
                }
                true
            }
        }
    }

    /// Marks every open subscription disconnected at `at`.
    fn close_all(&mut self, at: SystemTime) {
        for proxy in self.proxies.values_mut() {
            for s in proxy.subscriptions.values_mut() {
                if s.disconnect_time.is_none() {
                    s.disconnect_time = Some(timestamp(at));
                    s.generation = s.generation.wrapping_add(1);
                    proxy.dirty = true;
                }
            }
        }
    }

    fn proxy(&mut self, node: &NodeId) -> &mut Proxy {
        let proxy = self
            .proxies
            .entry((node.mesh.clone(), node.name.clone()))
            .or_default();
        proxy.dirty = true;
        proxy
    }

    /// Writes every changed proxy; forgets closed streams once written.
    async fn flush(&mut self) {
        let dirty: Vec<(String, String)> = self
            .proxies
            .iter()
            .filter(|(_, p)| p.dirty)
            .map(|(k, _)| k.clone())
            .collect();
        for (mesh, name) in dirty {
            let Some(proxy) = self.proxies.get_mut(&(mesh.clone(), name.clone())) else {
                continue;
            };
            match write(self.store.as_ref(), &mesh, &name, proxy).await {
                Ok(()) => {
                    proxy.dirty = false;
                    proxy.last_nack = None;
                    proxy.metadata = None;
                    proxy
                        .subscriptions
                        .retain(|_, s| s.disconnect_time.is_none());
                    if proxy.subscriptions.is_empty() {
                        self.proxies.remove(&(mesh, name));
                    }
                }
                Err(WriteError::NoDataplane) => {
                    // Deregistered or never stored: nothing to describe.
                    if let Some(proxy) = self.proxies.get_mut(&(mesh.clone(), name.clone())) {
                        proxy.dirty = false;
                        proxy
                            .subscriptions
                            .retain(|_, s| s.disconnect_time.is_none());
                        if proxy.subscriptions.is_empty() {
                            self.proxies.remove(&(mesh, name));
                        }
                    }
                }
                Err(WriteError::Store(e)) => {
                    warn!(mesh, name, error = %e, "writing a DataplaneInsight failed; retried at the next flush");
                }
            }
        }
    }
}

enum WriteError {
    NoDataplane,
    Store(StoreError),
}

/// `stored` with `proxy`'s subscriptions, metadata and NACK merged in.
fn merge(mut stored: DataplaneInsight, proxy: &Proxy) -> DataplaneInsight {
    for ours in proxy.subscriptions.values() {
        if let Some(existing) = stored.subscriptions.iter_mut().find(|s| s.id == ours.id) {
            *existing = ours.clone();
            continue;
        }
        // A new stream: every subscription still open is over.
        for old in &mut stored.subscriptions {
            if old.disconnect_time.is_none() {
                old.disconnect_time = ours.connect_time;
                old.generation = old.generation.wrapping_add(1);
            }
        }
        stored.subscriptions.push(ours.clone());
    }
    let excess = stored
        .subscriptions
        .len()
        .saturating_sub(SUBSCRIPTIONS_KEPT);
    stored.subscriptions.drain(..excess);
    if let Some(metadata) = &proxy.metadata {
        stored.metadata = Some(metadata.clone());
    }
    if let Some(nack) = &proxy.last_nack {
        stored.last_nack = Some(nack.clone());
    }
    stored
}

async fn write(
    store: &dyn store::ResourceStore,
    mesh: &str,
    name: &str,
    proxy: &Proxy,
) -> Result<(), WriteError> {
    if mesh.is_empty() {
        // A zone ingress: its ZoneIngressInsight (subscriptions and metadata).
        let key = ResourceKey::global(ResourceType::ZoneIngressInsight, name);
        let owner = ResourceKey::global(ResourceType::ZoneIngress, name);
        return upsert(store, key, owner, |stored| {
            let stored = match stored {
                Some(Spec::ZoneIngressInsight(i)) => i.clone(),
                _ => ZoneIngressInsight::default(),
            };
            let as_dataplane = DataplaneInsight {
                subscriptions: stored.subscriptions,
                metadata: stored.metadata,
                ..Default::default()
            };
            let merged = merge(as_dataplane, proxy);
            Spec::ZoneIngressInsight(ZoneIngressInsight {
                subscriptions: merged.subscriptions,
                metadata: merged.metadata,
            })
        })
        .await;
    }
    let key = ResourceKey::new(ResourceType::DataplaneInsight, mesh, name);
    let owner = ResourceKey::new(ResourceType::Dataplane, mesh, name);
    upsert(store, key, owner, |stored| {
        let stored = match stored {
            Some(Spec::DataplaneInsight(i)) => i.clone(),
            _ => DataplaneInsight::default(),
        };
        Spec::DataplaneInsight(merge(stored, proxy))
    })
    .await
}

/// Stores `make(stored spec)` at `key` (created owned by `owner`), retrying
/// lost races; a missing owner is [`WriteError::NoDataplane`].
async fn upsert(
    store: &dyn store::ResourceStore,
    key: ResourceKey,
    owner: ResourceKey,
    make: impl Fn(Option<&Spec>) -> Spec,
) -> Result<(), WriteError> {
    const ATTEMPTS: usize = 3;
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let result = match store.get(&key).await {
            Ok(mut stored) => {
                stored.spec = make(Some(&stored.spec));
                store.update(stored).await
            }
            Err(StoreError::NotFound(_)) => {
                let resource = Resource::new(&key.mesh, &key.name, make(None));
                match store.create(resource, Some(owner.clone())).await {
                    Err(StoreError::NotFound(_)) => return Err(WriteError::NoDataplane),
                    other => other,
                }
            }
            Err(e) => return Err(WriteError::Store(e)),
        };
        match result {
            Ok(_) => return Ok(()),
            Err(e @ (StoreError::Conflict { .. } | StoreError::AlreadyExists(_))) => {
                last = Some(e);
            }
            Err(StoreError::NotFound(_)) => return Err(WriteError::NoDataplane),
            Err(e) => return Err(WriteError::Store(e)),
        }
    }
    Err(WriteError::Store(
        last.unwrap_or_else(|| StoreError::NotFound(key.clone())),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription(id: &str, instance: &str, open: bool) -> DiscoverySubscription {
        DiscoverySubscription {
            id: id.to_owned(),
            control_plane_instance_id: instance.to_owned(),
            connect_time: Some(Timestamp {
                seconds: 10,
                nanos: 0,
            }),
            disconnect_time: (!open).then_some(Timestamp {
                seconds: 20,
                nanos: 0,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_new_stream_closes_older_ones_and_updates_replace_by_id() {
        let stored = DataplaneInsight {
            subscriptions: vec![subscription("other-1", "other", true)],
            ..Default::default()
        };
        let mut proxy = Proxy::default();
        proxy
            .subscriptions
            .insert(1, subscription("me-1", "me", true));
        let merged = merge(stored, &proxy);
        assert_eq!(merged.subscriptions.len(), 2);
        assert!(
            merged.subscriptions[0].disconnect_time.is_some(),
            "finalised"
        );
        assert!(merged.subscriptions[1].disconnect_time.is_none());

        proxy
            .subscriptions
            .insert(1, subscription("me-1", "me", false));
        proxy.last_nack = Some(XdsRejection {
            reason: "bad".to_owned(),
            ..Default::default()
        });
        let merged = merge(merged, &proxy);
        assert_eq!(merged.subscriptions.len(), 2, "replaced by id");
        assert!(merged.subscriptions[1].disconnect_time.is_some());
        assert_eq!(merged.last_nack.map(|n| n.reason).as_deref(), Some("bad"));
    }

    #[test]
    fn only_the_newest_subscriptions_are_kept() {
        let mut insight = DataplaneInsight::default();
        for i in 0..(SUBSCRIPTIONS_KEPT + 3) {
            let mut proxy = Proxy::default();
            proxy
                .subscriptions
                .insert(1, subscription(&format!("s-{i}"), "me", true));
            insight = merge(insight, &proxy);
        }
        assert_eq!(insight.subscriptions.len(), SUBSCRIPTIONS_KEPT);
        assert_eq!(
            insight.subscriptions.last().map(|s| s.id.as_str()),
            Some(format!("s-{}", SUBSCRIPTIONS_KEPT + 2).as_str())
        );
    }
}
