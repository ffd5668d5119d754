//! What one KDS stream did, shared between the stream's task and whoever reports on it (the
//! global's zone status, heartbeats, metrics): per-type counters, the lag the sender sees, the
//! receiver's applied revision, and the resources the other side refused.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::SystemTime;

use store::Revision;

/// Which way a stream carries resources.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    GlobalToZone,
    ZoneToGlobal,
}

impl Direction {
    /// The spelling used in ZoneInsight (`globalToZone`, `zoneToGlobal`).
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::GlobalToZone => "globalToZone",
            Direction::ZoneToGlobal => "zoneToGlobal",
        }
    }
}

/// Responses sent, acknowledged and rejected (Kuma's `KDSServiceStats`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub sent: u64,
    pub acked: u64,
    pub rejected: u64,
}

/// How far the receiver is behind the sender, as the sender sees it.
#[derive(Copy, Clone, Debug, Default, PartialEq)]
pub struct Lag {
    /// Store revisions the sender has processed but the receiver has not acknowledged.
    pub revisions: u64,
    /// Age of the oldest unacknowledged change; 0 when in sync.
    pub seconds: f64,
    /// The sender's store revision.
    pub sender_revision: Revision,
    /// The sender revision through which the receiver acknowledged everything.
    pub acked_revision: Revision,
}

/// One resource the receiving side refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectionRecord {
    pub direction: Direction,
    pub kind: String,
    pub mesh: String,
    pub name: String,
    /// KDS version (content hash) of the refused copy; empty when unknown.
    pub version: String,
    pub reason: String,
    pub time: SystemTime,
}

/// Most rejections a stream keeps (oldest dropped first).
pub const REJECTIONS_KEPT: usize = 100;

#[derive(Clone, Debug, Default)]
pub struct StatsSnapshot {
    /// Per type name.
    pub per_type: BTreeMap<String, Counters>,
    pub lag: Lag,
    /// The highest sender revision whose response the receiver committed.
    pub applied_revision: Revision,
    pub rejections: Vec<RejectionRecord>,
    /// Bumped on every change, so reporters can skip unchanged snapshots.
    pub generation: u64,
}

impl StatsSnapshot {
    pub fn total(&self) -> Counters {
        self.per_type
            .values()
            .fold(Counters::default(), |a, c| Counters {
                sent: a.sent + c.sent,
                acked: a.acked + c.acked,
                rejected: a.rejected + c.rejected,
            })
    }
}

/// Shared, updated by the stream, read by reporters.
#[derive(Debug, Default)]
pub struct StreamStats {
    inner: Mutex<StatsSnapshot>,
}

impl StreamStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StatsSnapshot> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut StatsSnapshot)) {
        let mut s = self.lock();
        f(&mut s);
        s.generation += 1;
    }

    pub fn sent(&self, kind: &str) {
        self.update(|s| s.per_type.entry(kind.to_string()).or_default().sent += 1);
    }

    pub fn acked(&self, kind: &str) {
        self.update(|s| s.per_type.entry(kind.to_string()).or_default().acked += 1);
    }

    pub fn rejected(&self, kind: &str, records: Vec<RejectionRecord>) {
        self.update(|s| {
            s.per_type.entry(kind.to_string()).or_default().rejected += 1;
            push_rejections(&mut s.rejections, records);
        });
    }

    /// Rejections found by the sender itself (e.g. a resource too large to send).
    pub fn refused_to_send(&self, records: Vec<RejectionRecord>) {
        self.update(|s| push_rejections(&mut s.rejections, records));
    }

    pub fn set_lag(&self, lag: Lag) {
        let mut s = self.lock();
        if s.lag != lag {
            s.lag = lag;
            s.generation += 1;
        }
    }

    pub fn applied(&self, revision: Revision) {
        self.update(|s| s.applied_revision = s.applied_revision.max(revision));
    }
}

/// Appends, keeping one entry per (direction, type, mesh, name, version) and at most
/// [`REJECTIONS_KEPT`].
pub fn push_rejections(list: &mut Vec<RejectionRecord>, records: Vec<RejectionRecord>) {
    for r in records {
        list.retain(|old| {
            !(old.direction == r.direction
                && old.kind == r.kind
                && old.mesh == r.mesh
                && old.name == r.name
                && old.version == r.version)
        });
        list.push(r);
    }
    if list.len() > REJECTIONS_KEPT {
        let excess = list.len() - REJECTIONS_KEPT;
        list.drain(..excess);
    }
}
