//! The receiving side of one KDS stream (the delta xDS client role): the zone on
//! GlobalToZoneSync, the global on ZoneToGlobalSync. Both run this same loop.
//!
//! It subscribes to every type with the versions it already holds (catch-up: the sender
//! answers with only what changed, deletions included), then for each response: decodes,
//! plans ([`crate::reconcile`]), commits, and only then ACKs. Resources it cannot store are
//! NACKed one by one, with structured details, while the rest of the batch is committed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::SystemTime;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use futures::{Stream, StreamExt};
use model::{Resource, ResourceKey, ResourceType};
use prost::Message;
use store::{ListQuery, Op, ResourceStore, StoreError};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::error::{Rejection, SyncError};
use crate::reconcile::{self, Receiver, Upstream};
use crate::stats::{Direction, RejectionRecord, StreamStats};
use crate::{diff, wire};

/// Above this many resources in one response, the receiver lists the whole type once instead
/// of reading each named resource.
const LIST_THRESHOLD: usize = 64;

/// Who is receiving, and from whom.
#[derive(Clone, Debug)]
pub struct ReceiverSettings {
    pub receiver: Receiver,
    pub kinds: Vec<ResourceType>,
    /// Sent on the first request of each type.
    pub node: Node,
    pub direction: Direction,
}

/// Runs the receiver until the sender hangs up (`Ok`) or something fails.
pub async fn run<S>(
    store: Arc<dyn ResourceStore>,
    settings: ReceiverSettings,
    mut responses: S,
    out: mpsc::Sender<DeltaDiscoveryRequest>,
    stats: Arc<StreamStats>,
) -> Result<(), SyncError>
where
    S: Stream<Item = Result<DeltaDiscoveryResponse, tonic::Status>> + Unpin + Send,
{
    for kind in &settings.kinds {
        let held = held(store.as_ref(), &settings.receiver, *kind).await?;
        let request = DeltaDiscoveryRequest {
            node: Some(settings.node.clone()),
            type_url: wire::type_url(*kind).to_string(),
            resource_names_subscribe: vec!["*".to_string()],
            initial_resource_versions: held.into_iter().collect(),
            ..Default::default()
        };
        out.send(request).await.map_err(|_| SyncError::Closed)?;
    }
    while let Some(response) = responses.next().await {
        let response = response.map_err(|status| SyncError::Peer(status.to_string()))?;
        let request = apply(store.as_ref(), &settings, &response, &stats).await?;
        out.send(request).await.map_err(|_| SyncError::Closed)?;
    }
    Ok(())
}

/// What the receiver holds of `kind` from its sender, as `initial_resource_versions`.
async fn held(
    store: &dyn ResourceStore,
    receiver: &Receiver,
    kind: ResourceType,
) -> Result<diff::VersionMap, SyncError> {
    let page = store
        .list(&ListQuery::all(kind))
        .await
        .map_err(store_error)?;
    let owned: Vec<Resource> = page
        .items
        .into_iter()
        .filter(|r| receiver.owns(r))
        .collect();
    Ok(diff::held_versions(&owned))
}

/// Applies one response and returns the ACK or NACK to send.
async fn apply(
    store: &dyn ResourceStore,
    settings: &ReceiverSettings,
    response: &DeltaDiscoveryResponse,
    stats: &StreamStats,
) -> Result<DeltaDiscoveryRequest, SyncError> {
    let started = std::time::Instant::now();
    let decoded = wire::decode_response(
        &response.type_url,
        &response.resources,
        &response.removed_resources,
    )
    .map_err(|e| SyncError::Protocol(e.to_string()))?;
    let kind = decoded.kind;
    let upstream = Upstream::from_decoded(decoded, false);
    let local = local_for(store, &upstream).await?;
    let plan = reconcile::plan(&settings.receiver, upstream, &local);
    let planned = started.elapsed();
    let ops = plan.ops.len();
    let mut rejected = plan.rejected;
    if let Err(e) = store.commit(plan.ops.clone()).await {
        if e.is_transient() {
            return Err(store_error(e));
        }
        // One op spoiled the batch (e.g. a name taken meanwhile): commit one by one.
        debug!(error = %e, %kind, "batch refused; applying its resources one by one");
        for op in plan.ops {
            let key = op_key(&op);
            if let Err(e) = store.commit(vec![op]).await {
                if e.is_transient() {
                    return Err(store_error(e));
                }
                rejected.push(Rejection::new(&key, e.to_string()));
            }
        }
    }
    debug!(
        %kind,
        resources = response.resources.len(),
        ops,
        planned_ms = planned.as_millis() as u64,
        total_ms = started.elapsed().as_millis() as u64,
        "response applied"
    );
    if let Ok(revision) = response.system_version_info.parse::<u64>() {
        stats.applied(revision);
    }
    let mut request = DeltaDiscoveryRequest {
        type_url: response.type_url.clone(),
        response_nonce: response.nonce.clone(),
        node: Some(Node {
            id: settings.node.id.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    if !rejected.is_empty() {
        let versions: BTreeMap<&str, &str> = response
            .resources
            .iter()
            .map(|r| (r.name.as_str(), r.version.as_str()))
            .collect();
        let message = rejected
            .iter()
            .map(|r| r.reason.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        warn!(
            %kind,
            direction = settings.direction.as_str(),
            count = rejected.len(),
            reason = %message,
            "resources refused; the rest of the batch was applied"
        );
        let now = SystemTime::now();
        let mut records = Vec::new();
        let details = rejected
            .iter()
            .map(|r| {
                let version = versions
                    .get(wire::resource_name(&r.name, &r.mesh).as_str())
                    .copied()
                    .unwrap_or_default()
                    .to_string();
                records.push(RejectionRecord {
                    direction: settings.direction,
                    kind: r.kind.name().to_string(),
                    mesh: r.mesh.clone(),
                    name: r.name.clone(),
                    version: version.clone(),
                    reason: r.reason.clone(),
                    time: now,
                });
                Any {
                    type_url: crate::REJECTION_TYPE_URL.to_string(),
                    value: kds_proto::system::v1alpha1::KdsRejection {
                        direction: settings.direction.as_str().to_string(),
                        r#type: r.kind.name().to_string(),
                        mesh: r.mesh.clone(),
                        name: r.name.clone(),
                        version,
                        reason: r.reason.clone(),
                        time: None,
                    }
                    .encode_to_vec(),
                }
            })
            .collect();
        stats.rejected(kind.name(), records);
        request.resource_names_subscribe = vec!["*".to_string()];
        request.error_detail = Some(RpcStatus {
            // INVALID_ARGUMENT
            code: 3,
            message,
            details,
        });
    } else {
        stats.acked(kind.name());
    }
    Ok(request)
}

/// The local resources a batch may touch: the named ones, or the whole type for big batches.
async fn local_for(
    store: &dyn ResourceStore,
    upstream: &Upstream,
) -> Result<Vec<Resource>, SyncError> {
    let named: BTreeSet<ResourceKey> = upstream
        .resources
        .iter()
        .map(Resource::key)
        .chain(upstream.removed.iter().cloned())
        .collect();
    if named.len() > LIST_THRESHOLD {
        let page = store
            .list(&ListQuery::all(upstream.kind))
            .await
            .map_err(store_error)?;
        return Ok(page.items);
    }
    let mut local = Vec::with_capacity(named.len());
    for key in named {
        if let Some(stored) = store.get_stored(&key).await.map_err(store_error)? {
            local.push(stored.resource);
        }
    }
    Ok(local)
}

fn op_key(op: &Op) -> ResourceKey {
    match op {
        Op::Create { resource, .. } | Op::Update { resource } => resource.key(),
        Op::Delete { key } => key.clone(),
    }
}

fn store_error(e: StoreError) -> SyncError {
    SyncError::Store(e.to_string())
}
