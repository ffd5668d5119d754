//! Zone status on the global: the `ZoneInsight` of each zone (Kuma's subscriptions with
//! connect/disconnect times and per-type counters, plus kuma-rs's `kdsSync`: lag both ways,
//! rejections, stalls), written from the sessions of [`crate::global`].
//!
//! A zone is online while one of its subscriptions has a connect time and no disconnect
//! time. Subscriptions left open by a global instance that died are closed by
//! [`close_stale_subscriptions`].

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use envoy_types::pb::google::protobuf::Timestamp;
use kds_proto::system::v1alpha1 as system_pb;
use model::{Resource, ResourceKey, ResourceType, Spec};
use store::{ListQuery, ResourceStore, StoreError};

use crate::stats::{Lag, RejectionRecord, StatsSnapshot};

/// Subscriptions kept per zone (Kuma's `metrics.zone.subscriptionLimit`).
pub const SUBSCRIPTION_LIMIT: usize = 10;

/// One GlobalToZone stream, as the global tracks it.
#[derive(Clone, Debug)]
pub struct SubscriptionView {
    pub stream_id: u64,
    pub id: String,
    pub global_instance_id: String,
    pub connect_time: SystemTime,
    pub disconnect_time: Option<SystemTime>,
    pub version: String,
    pub config: String,
    pub zone_instance_id: String,
    pub auth_token_provided: bool,
    pub live_stats: Option<StatsSnapshot>,
    pub final_stats: Option<StatsSnapshot>,
}

impl SubscriptionView {
    pub fn new(stream_id: u64, instance: &str, version: &str, token: bool) -> Self {
        SubscriptionView {
            stream_id,
            id: uuid::Uuid::new_v4().to_string(),
            global_instance_id: instance.to_string(),
            connect_time: SystemTime::now(),
            disconnect_time: None,
            version: version.to_string(),
            config: String::new(),
            zone_instance_id: String::new(),
            auth_token_provided: token,
            live_stats: None,
            final_stats: None,
        }
    }
}

/// Everything written for one zone.
#[derive(Clone, Debug)]
pub struct SessionView {
    pub zone: String,
    pub instance_id: String,
    pub subscriptions: Vec<SubscriptionView>,
    pub g2z_connect: Option<SystemTime>,
    pub z2g_connect: Option<SystemTime>,
    pub heartbeat: Option<SystemTime>,
    pub global_to_zone: Option<Lag>,
    pub zone_to_global: Option<Lag>,
    pub rejections: Vec<RejectionRecord>,
    pub stalls: u64,
}

pub fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

fn to_system_time(t: &Timestamp) -> SystemTime {
    let secs = u64::try_from(t.seconds).unwrap_or(0);
    let nanos = u32::try_from(t.nanos).unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::new(secs, nanos)
}

pub fn lag_proto(lag: &Lag, now: SystemTime) -> system_pb::KdsLag {
    system_pb::KdsLag {
        revisions: lag.revisions,
        seconds: lag.seconds,
        sender_revision: lag.sender_revision,
        acked_revision: lag.acked_revision,
        update_time: Some(timestamp(now)),
    }
}

fn subscription_proto(sub: &SubscriptionView, now: SystemTime) -> system_pb::KdsSubscription {
    let stats = sub.final_stats.as_ref().or(sub.live_stats.as_ref());
    let counters = |c: &crate::stats::Counters| system_pb::KdsServiceStats {
        responses_sent: c.sent,
        responses_acknowledged: c.acked,
        responses_rejected: c.rejected,
    };
    let status = system_pb::KdsSubscriptionStatus {
        last_update_time: Some(timestamp(now)),
        total: stats.map(|s| counters(&s.total())),
        stat: stats
            .map(|s| {
                s.per_type
                    .iter()
                    .map(|(k, c)| (k.clone(), counters(c)))
                    .collect::<HashMap<_, _>>()
            })
            .unwrap_or_default(),
    };
    system_pb::KdsSubscription {
        id: sub.id.clone(),
        global_instance_id: sub.global_instance_id.clone(),
        connect_time: Some(timestamp(sub.connect_time)),
        disconnect_time: sub.disconnect_time.map(timestamp),
        status: Some(status),
        version: Some(system_pb::Version {
            kuma_cp: Some(system_pb::KumaCpVersion {
                version: sub.version.clone(),
                kuma_cp_global_compatible: true,
                ..Default::default()
            }),
        }),
        generation: 0,
        config: sub.config.clone(),
        auth_token_provided: sub.auth_token_provided,
        zone_instance_id: sub.zone_instance_id.clone(),
    }
}

fn rejection_proto(r: &RejectionRecord) -> system_pb::KdsRejection {
    system_pb::KdsRejection {
        direction: r.direction.as_str().to_string(),
        r#type: r.kind.clone(),
        mesh: r.mesh.clone(),
        name: r.name.clone(),
        version: r.version.clone(),
        reason: r.reason.clone(),
        time: Some(timestamp(r.time)),
    }
}

/// Merges `view` into the zone's ZoneInsight (created, owned by the Zone, when absent).
pub async fn write(store: &dyn ResourceStore, view: &SessionView) -> Result<(), StoreError> {
    let key = ResourceKey::global(ResourceType::ZoneInsight, view.zone.clone());
    let now = SystemTime::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let existing = store.get_stored(&key).await?.map(|s| s.resource);
        let mut insight = match existing.as_ref().map(|r| &r.spec) {
            Some(Spec::ZoneInsight(i)) => i.clone(),
            _ => system_pb::ZoneInsight::default(),
        };
        merge(&mut insight, view, now);
        let result = match existing {
            Some(mut resource) => {
                resource.spec = Spec::ZoneInsight(insight);
                store.update(resource).await.map(|_| ())
            }
            None => {
                let resource = Resource::new("", view.zone.clone(), Spec::ZoneInsight(insight));
                let owner = ResourceKey::global(ResourceType::Zone, view.zone.clone());
                store.create(resource, Some(owner)).await.map(|_| ())
            }
        };
        match result {
            Ok(()) => return Ok(()),
            Err(StoreError::Conflict { .. } | StoreError::AlreadyExists(_)) if attempts < 5 => {}
            Err(e) => return Err(e),
        }
    }
}

fn merge(insight: &mut system_pb::ZoneInsight, view: &SessionView, now: SystemTime) {
    for sub in &view.subscriptions {
        let proto = subscription_proto(sub, now);
        if let Some(existing) = insight.subscriptions.iter_mut().find(|s| s.id == sub.id) {
            *existing = proto;
        } else {
            // A newer stream: older subscriptions still open are over.
            for old in insight.subscriptions.iter_mut() {
                if old.disconnect_time.is_none() {
                    old.disconnect_time = Some(timestamp(sub.connect_time));
                }
            }
            insight.subscriptions.push(proto);
        }
    }
    if insight.subscriptions.len() > SUBSCRIPTION_LIMIT {
        let excess = insight.subscriptions.len() - SUBSCRIPTION_LIMIT;
        insight.subscriptions.drain(..excess);
    }
    if let Some(t) = view.heartbeat {
        insight.health_check = Some(system_pb::HealthCheck {
            time: Some(timestamp(t)),
        });
    }
    let streams = insight.kds_streams.get_or_insert_with(Default::default);
    if let Some(t) = view.g2z_connect {
        streams.global_to_zone = Some(system_pb::KdsStream {
            global_instance_id: view.instance_id.clone(),
            connect_time: Some(timestamp(t)),
        });
    }
    if let Some(t) = view.z2g_connect {
        streams.zone_to_global = Some(system_pb::KdsStream {
            global_instance_id: view.instance_id.clone(),
            connect_time: Some(timestamp(t)),
        });
    }
    let sync = insight.kds_sync.get_or_insert_with(Default::default);
    if let Some(lag) = &view.global_to_zone {
        sync.global_to_zone = Some(lag_proto(lag, now));
    }
    if let Some(lag) = &view.zone_to_global {
        sync.zone_to_global = Some(lag_proto(lag, now));
    }
    let mut rejections: Vec<system_pb::KdsRejection> = sync.rejections.clone();
    for r in &view.rejections {
        let proto = rejection_proto(r);
        rejections.retain(|old| {
            !(old.direction == proto.direction
                && old.r#type == proto.r#type
                && old.mesh == proto.mesh
                && old.name == proto.name
                && old.version == proto.version)
        });
        rejections.push(proto);
    }
    if rejections.len() > crate::stats::REJECTIONS_KEPT {
        let excess = rejections.len() - crate::stats::REJECTIONS_KEPT;
        rejections.drain(..excess);
    }
    sync.rejections = rejections;
    sync.stalls = sync.stalls.max(view.stalls);
}

/// Whether a ZoneInsight shows the zone online.
pub fn is_online(insight: &system_pb::ZoneInsight) -> bool {
    insight
        .subscriptions
        .iter()
        .any(|s| s.connect_time.is_some() && s.disconnect_time.is_none())
}

/// Closes open subscriptions of zones not connected to this instance (`live`) whose last
/// heartbeat is older than `stale_after` (or that never had one): their global instance is
/// gone. Returns the zones it marked offline.
pub async fn close_stale_subscriptions(
    store: &dyn ResourceStore,
    live: &[String],
    stale_after: Duration,
) -> Result<Vec<String>, StoreError> {
    let page = store
        .list(&ListQuery::all(ResourceType::ZoneInsight))
        .await?;
    let now = SystemTime::now();
    let mut closed = Vec::new();
    for mut resource in page.items {
        if live.contains(&resource.meta.name) {
            continue;
        }
        let Spec::ZoneInsight(insight) = &mut resource.spec else {
            continue;
        };
        if !is_online(insight) {
            continue;
        }
        let last = insight
            .health_check
            .as_ref()
            .and_then(|h| h.time.as_ref())
            .map(to_system_time)
            .or_else(|| {
                insight
                    .subscriptions
                    .iter()
                    .filter_map(|s| s.connect_time.as_ref())
                    .map(to_system_time)
                    .max()
            });
        let stale = last.is_none_or(|t| now.duration_since(t).unwrap_or_default() > stale_after);
        if !stale {
            continue;
        }
        for sub in insight.subscriptions.iter_mut() {
            if sub.disconnect_time.is_none() {
                sub.disconnect_time = Some(timestamp(now));
            }
        }
        let name = resource.meta.name.clone();
        match store.update(resource).await {
            Ok(_) => closed.push(name),
            Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(closed)
}
