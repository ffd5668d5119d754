//! The lifecycle of Dataplanes registered inline (reference: `kuma-api.md`
//! §4.3): `kuma-dp run --dataplane ...` sends its Dataplane with the
//! bootstrap request; the bootstrap server stores it and puts it in the
//! Envoy bootstrap as node metadata `dataplane.resource` (Kuma's marker).
//! That metadata, on the first request of an ADS stream, is what makes a
//! proxy "inline" here:
//!
//! * on connect, a missing Dataplane is created again from the metadata (the
//!   proxy reconnected after its deregistration; its token was checked by
//!   [`crate::xds_auth`]);
//! * when the last stream of the proxy on this instance closes, the Dataplane
//!   is deleted `xdsServer.dataplaneDeregistrationDelay` later, unless a
//!   stream for the same proxy opened meanwhile, here or on another instance
//!   (the newest subscription of its DataplaneInsight is open on another
//!   instance).
//!
//! Zone ingresses registered inline (node id `.name`, a ZoneIngress in the
//! metadata) live the same way. Dataplanes applied with kumactl (no metadata) are never deleted. The
//! [`StreamEvents`] hooks only send to a channel; one task does the store work.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::value::Kind;
use model::{Resource, ResourceKey, ResourceType, Spec};
use store::StoreError;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn};
use xds::ads::{ConnectInfo, NodeId, StreamEvents, StreamId};
use xds::bootstrap::DATAPLANE_RESOURCE_METADATA;

use crate::tokens::SharedStore;

/// The inline Dataplane of a node's metadata, when it has one that parses,
/// validates and names the node's mesh and name.
pub fn inline_dataplane(node: &NodeId, envoy_node: &Node) -> Option<Resource> {
    let value = envoy_node
        .metadata
        .as_ref()?
        .fields
        .get(DATAPLANE_RESOURCE_METADATA)?;
    let Some(Kind::StringValue(text)) = &value.kind else {
        return None;
    };
    let mut resources = model::format::parse_documents(text).ok()?;
    if resources.len() != 1 {
        return None;
    }
    let dataplane = resources.remove(0);
    let kind = if node.is_zone_ingress() {
        ResourceType::ZoneIngress
    } else {
        ResourceType::Dataplane
    };
    let matches = dataplane.kind() == kind
        && dataplane.meta.mesh == node.mesh
        && dataplane.meta.name == node.name
        && model::validate::validate(&dataplane).is_ok();
    matches.then_some(dataplane)
}

enum Event {
    Connected {
        stream: StreamId,
        node: NodeId,
        dataplane: Box<Resource>,
    },
    Disconnected {
        stream: StreamId,
        node: NodeId,
    },
}

/// The [`StreamEvents`] side: hands inline proxies' connects and every
/// disconnect to the lifecycle task.
pub struct Lifecycle {
    tx: mpsc::UnboundedSender<Event>,
}

impl StreamEvents for Lifecycle {
    fn connected(&self, stream: StreamId, node: &NodeId, info: &ConnectInfo) {
        if let Some(dataplane) = inline_dataplane(node, &info.node) {
            let _ = self.tx.send(Event::Connected {
                stream,
                node: node.clone(),
                dataplane: Box::new(dataplane),
            });
        }
    }

    fn disconnected(&self, stream: StreamId, node: &NodeId) {
        let _ = self.tx.send(Event::Disconnected {
            stream,
            node: node.clone(),
        });
    }
}

/// An inline proxy as this instance sees it.
#[derive(Default)]
struct Proxy {
    open: HashSet<StreamId>,
    /// When to delete the Dataplane (no stream open).
    deregister_at: Option<Instant>,
}

/// Starts the lifecycle of inline Dataplanes on `store`: the hooks to give
/// the ADS server and the task to run until `stop`. `instance_id` is this
/// control plane's (the DataplaneInsight's `controlPlaneInstanceId`).
pub fn start(
    store: SharedStore,
    instance_id: String,
    delay: Duration,
    stop: impl Future<Output = ()> + Send + 'static,
) -> (Arc<Lifecycle>, impl Future<Output = ()> + Send + 'static) {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = run(store, instance_id, delay, rx, stop);
    (Arc::new(Lifecycle { tx }), task)
}

async fn run(
    store: SharedStore,
    instance_id: String,
    delay: Duration,
    mut rx: mpsc::UnboundedReceiver<Event>,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut proxies: HashMap<(String, String), Proxy> = HashMap::new();
    loop {
        let next = proxies.values().filter_map(|p| p.deregister_at).min();
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut stop => return,
            event = rx.recv() => match event {
                None => return,
                Some(Event::Connected { stream, node, dataplane }) => {
                    let proxy = proxies.entry((node.mesh.clone(), node.name.clone())).or_default();
                    proxy.open.insert(stream);
                    proxy.deregister_at = None;
                    register_again(store.as_ref(), *dataplane).await;
                }
                Some(Event::Disconnected { stream, node }) => {
                    if let Some(proxy) = proxies.get_mut(&(node.mesh.clone(), node.name.clone()))
                        && proxy.open.remove(&stream)
                        && proxy.open.is_empty()
                    {
                        proxy.deregister_at = Some(Instant::now() + delay);
                    }
                }
            },
            () = sleep => {
                let now = Instant::now();
                let due: Vec<(String, String)> = proxies
                    .iter()
                    .filter(|(_, p)| p.deregister_at.is_some_and(|at| at <= now))
                    .map(|(key, _)| key.clone())
                    .collect();
                for (mesh, name) in due {
                    proxies.remove(&(mesh.clone(), name.clone()));
                    deregister(store.as_ref(), &instance_id, &mesh, &name).await;
                }
            }
        }
    }
}

/// Creates the Dataplane of a reconnecting inline proxy when it is missing.
async fn register_again(store: &dyn store::ResourceStore, dataplane: Resource) {
    let key = dataplane.key();
    match store.get(&key).await {
        Ok(_) => {}
        Err(StoreError::NotFound(_)) => match store.create(dataplane, None).await {
            Ok(_) => {
                info!(mesh = %key.mesh, name = %key.name, "inline dataplane registered again by its ADS stream")
            }
            Err(StoreError::AlreadyExists(_)) => {}
            Err(e) => {
                warn!(mesh = %key.mesh, name = %key.name, error = %e, "registering an inline dataplane failed")
            }
        },
        Err(e) => {
            warn!(mesh = %key.mesh, name = %key.name, error = %e, "reading an inline dataplane failed")
        }
    }
}

/// Whether the DataplaneInsight's newest subscription (subscriptions are kept most recent
/// last; a new one closes the older ones) is a stream still open on another instance.
async fn open_elsewhere(
    store: &dyn store::ResourceStore,
    instance_id: &str,
    mesh: &str,
    name: &str,
) -> bool {
    let key = if mesh.is_empty() {
        ResourceKey::global(ResourceType::ZoneIngressInsight, name)
    } else {
        ResourceKey::new(ResourceType::DataplaneInsight, mesh, name)
    };
    let subscriptions = match store.get(&key).await {
        Ok(Resource {
            spec: Spec::DataplaneInsight(insight),
            ..
        }) => insight.subscriptions,
        Ok(Resource {
            spec: Spec::ZoneIngressInsight(insight),
            ..
        }) => insight.subscriptions,
        _ => return false,
    };
    subscriptions.last().is_some_and(|s| {
        s.control_plane_instance_id != instance_id
            && s.connect_time.is_some()
            && s.disconnect_time.is_none()
    })
}

async fn deregister(store: &dyn store::ResourceStore, instance_id: &str, mesh: &str, name: &str) {
    if open_elsewhere(store, instance_id, mesh, name).await {
        info!(
            mesh,
            name, "inline dataplane kept: connected to another control plane instance"
        );
        return;
    }
    // A zone ingress has no mesh.
    let key = if mesh.is_empty() {
        ResourceKey::global(ResourceType::ZoneIngress, name)
    } else {
        ResourceKey::new(ResourceType::Dataplane, mesh, name)
    };
    match store.delete(&key).await {
        Ok(()) => info!(
            mesh,
            name, "inline dataplane deregistered after its ADS stream closed"
        ),
        Err(StoreError::NotFound(_)) => {}
        Err(e) => warn!(mesh, name, error = %e, "deregistering an inline dataplane failed"),
    }
}
