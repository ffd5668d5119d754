//! The sending side of one KDS stream (the delta xDS server role): the global on
//! GlobalToZoneSync, the zone on ZoneToGlobalSync. Both run this same loop.
//!
//! Per type it keeps what it offers (from the [`Mirror`], through an [`Offer`]) and what the
//! receiver holds (its `initial_resource_versions`, then everything sent). It wakes on the
//! mirror's revision, not on a timer, so a commit reaches the receiver as soon as the
//! receiver acknowledged the previous response of that type (one response in flight per
//! type, as go-control-plane does). A response that is not acknowledged within the stall
//! timeout ends the stream with [`SyncError::Stalled`] so that it is re-established.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use envoy_types::pb::envoy::config::core::v3::ControlPlane;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource as DeltaResource,
};
use futures::{Stream, StreamExt};
use model::{Resource, ResourceKey, ResourceType};
use prost::Message;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::diff::{self, VersionMap};
use crate::error::{Error, SyncError};
use crate::mirror::{Cursor, Mirror};
use crate::stats::{Direction, Lag, RejectionRecord, StreamStats};
use crate::wire;

/// What one side sends to one peer.
pub trait Offer: Send + Sync {
    /// The types it serves.
    fn kinds(&self) -> Vec<ResourceType>;
    /// The delta resource to send for `resource` (current in the mirror), `Ok(None)` when it
    /// is not for this peer.
    fn offer(&self, resource: &Resource) -> Result<Option<DeltaResource>, Error>;
    /// Whether a change of `key` (of a type it does not serve) can change what it offers
    /// (e.g. a Zone being disabled): everything is recomputed then.
    fn affects_all(&self, _key: &ResourceKey) -> bool {
        false
    }
}

/// Limits of a sender.
#[derive(Clone, Debug)]
pub struct SenderSettings {
    /// Largest response, in bytes (KDS `maxMsgSize`).
    pub max_message_bytes: usize,
    /// A response unacknowledged this long ends the stream.
    pub stall_timeout: Duration,
    /// `control_plane.identifier` of responses (`global` or the zone name).
    pub identifier: String,
    pub direction: Direction,
    /// Where to count resources and bytes sent: the metrics and the peer zone's name.
    pub metrics: Option<(crate::metrics::KdsMetrics, String)>,
}

struct Sent {
    at: Instant,
    kind: ResourceType,
    versions: BTreeMap<String, String>,
}

#[derive(Default)]
struct TypeState {
    subscribed: bool,
    /// The first request is answered even when there is nothing to send.
    answer_pending: bool,
    dirty: bool,
    /// Compare everything with what the receiver holds (after a (re)subscription or a
    /// recompute); otherwise only the names in `touched`.
    full: bool,
    /// Delta names changed since the last flush.
    touched: BTreeSet<String>,
    /// Delta name → what is offered.
    current: BTreeMap<String, DeltaResource>,
    /// Store key → delta name, to drop an entry when its resource changes or goes.
    names: HashMap<ResourceKey, String>,
    /// What the receiver holds (as far as this stream knows).
    held: VersionMap,
}

/// Runs the sender until the receiver hangs up (`Ok`) or something fails.
pub async fn run<S>(
    offer: Arc<dyn Offer>,
    mirror: Mirror,
    mut requests: S,
    out: mpsc::Sender<DeltaDiscoveryResponse>,
    settings: SenderSettings,
    stats: Arc<StreamStats>,
) -> Result<(), SyncError>
where
    S: Stream<Item = Result<DeltaDiscoveryRequest, tonic::Status>> + Unpin + Send,
{
    let mut sender = Sender {
        offer: offer.clone(),
        mirror: mirror.clone(),
        settings,
        stats,
        types: offer
            .kinds()
            .into_iter()
            .map(|k| (k, TypeState::default()))
            .collect(),
        foreign: Vec::new(),
        awaiting: BTreeMap::new(),
        cursor: mirror.cursor(),
        acked_revision: 0,
        behind_since: None,
        nonce: 0,
    };
    let mut wake = mirror.subscribe();
    let tick = (sender.settings.stall_timeout / 4)
        .clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            request = requests.next() => match request {
                None => return Ok(()),
                Some(Err(status)) => return Err(SyncError::Peer(status.to_string())),
                Some(Ok(request)) => sender.on_request(request),
            },
            changed = wake.changed() => {
                if changed.is_err() {
                    return Err(SyncError::Store("the store's change feed stopped".into()));
                }
                sender.on_mirror();
            }
            _ = ticker.tick() => sender.check_stall()?,
        }
        sender.flush(&out).await?;
        sender.update_lag();
    }
}

struct Sender {
    offer: Arc<dyn Offer>,
    mirror: Mirror,
    settings: SenderSettings,
    stats: Arc<StreamStats>,
    types: BTreeMap<ResourceType, TypeState>,
    /// Types requested that this side does not serve: answered empty once.
    foreign: Vec<String>,
    /// Nonce → what that response carried.
    awaiting: BTreeMap<String, Sent>,
    cursor: Cursor,
    acked_revision: u64,
    behind_since: Option<Instant>,
    nonce: u64,
}

impl Sender {
    fn on_request(&mut self, request: DeltaDiscoveryRequest) {
        let kind = match wire::kind_of(&request.type_url) {
            Ok(kind) if self.types.contains_key(&kind) => kind,
            _ => {
                if request.response_nonce.is_empty() {
                    debug!(type_url = %request.type_url, "request for a type this side does not send: answered empty");
                    self.foreign.push(request.type_url);
                }
                return;
            }
        };
        if !request.response_nonce.is_empty() {
            let Some(sent) = self.awaiting.remove(&request.response_nonce) else {
                debug!(nonce = %request.response_nonce, "reply to an unknown nonce ignored");
                return;
            };
            match &request.error_detail {
                None => self.stats.acked(kind.name()),
                Some(status) => {
                    let records = rejections_of(status, &sent, self.settings.direction);
                    warn!(
                        kind = %kind,
                        direction = self.settings.direction.as_str(),
                        reason = %status.message,
                        "receiver rejected resources; the rest was applied"
                    );
                    self.stats.rejected(kind.name(), records);
                }
            }
            return;
        }
        // A (re)subscription: the receiver tells what it holds.
        let fresh = !self.types[&kind].subscribed;
        if fresh {
            self.recompute(kind);
        }
        if let Some(state) = self.types.get_mut(&kind) {
            state.subscribed = true;
            state.answer_pending = true;
            state.dirty = true;
            state.held = request.initial_resource_versions.into_iter().collect();
            state.full = true;
        }
    }

    fn on_mirror(&mut self) {
        match self.mirror.changed_since(self.cursor) {
            None => {
                let kinds: Vec<ResourceType> = self.types.keys().copied().collect();
                for kind in kinds {
                    self.recompute(kind);
                }
                self.cursor = self.mirror.cursor();
            }
            Some(changes) => {
                let mut everything = false;
                for key in &changes.keys {
                    if self.types.contains_key(&key.kind) {
                        self.refresh(key);
                    } else if self.offer.affects_all(key) {
                        everything = true;
                    }
                }
                if everything {
                    let kinds: Vec<ResourceType> = self.types.keys().copied().collect();
                    for kind in kinds {
                        self.recompute(kind);
                    }
                }
                self.cursor = Cursor {
                    epoch: self.cursor.epoch,
                    revision: changes.revision,
                };
            }
        }
    }

    /// Rebuilds the offered set of `kind` from the mirror.
    fn recompute(&mut self, kind: ResourceType) {
        let resources = self.mirror.list(kind);
        let mut current = BTreeMap::new();
        let mut names = HashMap::new();
        for resource in &resources {
            if let Some(delta) = self.offered(resource) {
                names.insert(resource.key(), delta.name.clone());
                current.insert(delta.name.clone(), delta);
            }
        }
        if let Some(state) = self.types.get_mut(&kind) {
            state.current = current;
            state.names = names;
            state.dirty = true;
            state.full = true;
        }
    }

    /// Re-reads one changed resource.
    fn refresh(&mut self, key: &ResourceKey) {
        let offered = self.mirror.get(key).and_then(|r| self.offered(&r));
        let Some(state) = self.types.get_mut(&key.kind) else {
            return;
        };
        if let Some(old) = state.names.remove(key) {
            state.current.remove(&old);
            state.touched.insert(old);
        }
        if let Some(delta) = offered {
            state.names.insert(key.clone(), delta.name.clone());
            state.touched.insert(delta.name.clone());
            state.current.insert(delta.name.clone(), delta);
        }
        state.dirty = true;
    }

    fn offered(&self, resource: &Resource) -> Option<DeltaResource> {
        match self.offer.offer(resource) {
            Ok(found) => found,
            Err(e) => {
                warn!(error = %e, "resource not sent");
                None
            }
        }
    }

    fn check_stall(&self) -> Result<(), SyncError> {
        if let Some((_, sent)) = self
            .awaiting
            .iter()
            .find(|(_, s)| s.at.elapsed() > self.settings.stall_timeout)
        {
            return Err(SyncError::Stalled {
                kind: sent.kind,
                waited: sent.at.elapsed(),
            });
        }
        Ok(())
    }

    fn next_nonce(&mut self) -> String {
        self.nonce += 1;
        self.nonce.to_string()
    }

    async fn flush(&mut self, out: &mpsc::Sender<DeltaDiscoveryResponse>) -> Result<(), SyncError> {
        for type_url in std::mem::take(&mut self.foreign) {
            let nonce = self.next_nonce();
            let response = self.response(type_url, Vec::new(), Vec::new(), nonce);
            out.send(response).await.map_err(|_| SyncError::Closed)?;
        }
        let busy: Vec<ResourceType> = self.awaiting.values().map(|s| s.kind).collect();
        let kinds: Vec<ResourceType> = self.types.keys().copied().collect();
        for kind in kinds {
            if busy.contains(&kind) {
                continue;
            }
            let Some(state) = self.types.get_mut(&kind) else {
                continue;
            };
            if !state.subscribed || !state.dirty {
                continue;
            }
            state.dirty = false;
            let delta = if std::mem::take(&mut state.full) {
                state.touched.clear();
                let current: Vec<DeltaResource> = state.current.values().cloned().collect();
                diff::diff(&state.held, &current)
            } else {
                touched_delta(
                    &state.held,
                    &state.current,
                    std::mem::take(&mut state.touched),
                )
            };
            if delta.is_empty() && !state.answer_pending {
                continue;
            }
            state.answer_pending = false;
            let split = delta.split(self.settings.max_message_bytes);
            if !split.oversized.is_empty() {
                let mut records = Vec::new();
                for big in &split.oversized {
                    if let Some(r) = state.current.get(&big.name) {
                        state.held.insert(big.name.clone(), r.version.clone());
                    }
                    let version = state
                        .current
                        .get(&big.name)
                        .map(|r| r.version.clone())
                        .unwrap_or_default();
                    let (name, mesh) = big
                        .name
                        .rsplit_once('.')
                        .map(|(n, m)| (n.to_string(), m.to_string()))
                        .unwrap_or((big.name.clone(), String::new()));
                    warn!(%kind, %name, %mesh, size = big.size, limit = self.settings.max_message_bytes, "resource too large to send");
                    records.push(RejectionRecord {
                        direction: self.settings.direction,
                        kind: kind.name().to_string(),
                        mesh,
                        name,
                        version,
                        reason: format!(
                            "{kind} {:?}: {} bytes encoded, over the KDS message limit of {} bytes (maxMsgSize); not sent",
                            big.name, big.size, self.settings.max_message_bytes
                        ),
                        time: SystemTime::now(),
                    });
                }
                self.stats.refused_to_send(records);
            }
            let mut responses = Vec::new();
            if let Some(state) = self.types.get_mut(&kind) {
                for part in &split.parts {
                    part.apply_to(&mut state.held);
                }
            }
            for part in split.parts {
                let nonce = self.next_nonce();
                let versions = part
                    .resources
                    .iter()
                    .map(|r| (r.name.clone(), r.version.clone()))
                    .collect();
                self.awaiting.insert(
                    nonce.clone(),
                    Sent {
                        at: Instant::now(),
                        kind,
                        versions,
                    },
                );
                responses.push(self.response(
                    wire::type_url(kind).to_string(),
                    part.resources,
                    part.removed,
                    nonce,
                ));
            }
            for response in responses {
                let count = response.resources.len() + response.removed_resources.len();
                let bytes = response.encoded_len();
                out.send(response).await.map_err(|_| SyncError::Closed)?;
                self.stats.sent(kind.name());
                if let Some((metrics, zone)) = &self.settings.metrics {
                    metrics.sent(zone, self.settings.direction, count as u64, bytes as u64);
                }
            }
        }
        Ok(())
    }

    fn response(
        &self,
        type_url: String,
        resources: Vec<DeltaResource>,
        removed: Vec<String>,
        nonce: String,
    ) -> DeltaDiscoveryResponse {
        DeltaDiscoveryResponse {
            system_version_info: self.cursor.revision.to_string(),
            resources,
            type_url,
            removed_resources: removed,
            nonce,
            control_plane: Some(ControlPlane {
                identifier: self.settings.identifier.clone(),
            }),
            ..Default::default()
        }
    }

    fn update_lag(&mut self) {
        let pending = !self.awaiting.is_empty()
            || self
                .types
                .values()
                .any(|t| t.subscribed && (t.dirty || t.answer_pending));
        let waiting_for_subscription = self.types.values().all(|t| !t.subscribed);
        if !pending && !waiting_for_subscription {
            self.acked_revision = self.cursor.revision;
            self.behind_since = None;
        } else if self.behind_since.is_none() && self.cursor.revision > self.acked_revision {
            let age = self
                .mirror
                .age_of_first_change_after(self.acked_revision)
                .unwrap_or_default();
            self.behind_since = Some(Instant::now() - age);
        }
        self.stats.set_lag(Lag {
            revisions: self.cursor.revision.saturating_sub(self.acked_revision),
            seconds: self
                .behind_since
                .map(|t| t.elapsed().as_secs_f64())
                .unwrap_or(0.0),
            sender_revision: self.cursor.revision,
            acked_revision: self.acked_revision,
        });
    }
}

/// The delta for the names in `touched` only: what changed since the last flush, compared
/// with what the receiver holds. Equal to [`diff::diff`] restricted to those names.
fn touched_delta(
    held: &VersionMap,
    current: &BTreeMap<String, DeltaResource>,
    touched: BTreeSet<String>,
) -> diff::Delta {
    let mut delta = diff::Delta::default();
    for name in touched {
        match current.get(&name) {
            Some(r) if held.get(&name) != Some(&r.version) => delta.resources.push(r.clone()),
            Some(_) => {}
            None if held.contains_key(&name) => delta.removed.push(name),
            None => {}
        }
    }
    delta
}

/// The rejections a NACK reports: the structured details when the receiver sent them (kuma-rs
/// receivers do), else one record for the whole response with the message (a Kuma receiver).
fn rejections_of(
    status: &envoy_types::pb::google::rpc::Status,
    sent: &Sent,
    direction: Direction,
) -> Vec<RejectionRecord> {
    let now = SystemTime::now();
    let mut records: Vec<RejectionRecord> = status
        .details
        .iter()
        .filter(|any| any.type_url == crate::REJECTION_TYPE_URL)
        .filter_map(|any| {
            kds_proto::system::v1alpha1::KdsRejection::decode(any.value.as_slice()).ok()
        })
        .map(|r| {
            let wire_name = wire::resource_name(&r.name, &r.mesh);
            let version = if r.version.is_empty() {
                sent.versions.get(&wire_name).cloned().unwrap_or_default()
            } else {
                r.version
            };
            RejectionRecord {
                direction,
                kind: if r.r#type.is_empty() {
                    sent.kind.name().to_string()
                } else {
                    r.r#type
                },
                mesh: r.mesh,
                name: r.name,
                version,
                reason: r.reason,
                time: now,
            }
        })
        .collect();
    if records.is_empty() {
        records.push(RejectionRecord {
            direction,
            kind: sent.kind.name().to_string(),
            mesh: String::new(),
            name: String::new(),
            version: String::new(),
            reason: status.message.clone(),
            time: now,
        });
    }
    records
}
