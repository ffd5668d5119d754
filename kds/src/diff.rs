//! The catch-up core: per type, the delta between what the receiver holds (`name → version`,
//! from `initial_resource_versions` on a reconnect or from what was last sent on this
//! stream) and the sender's current set. Only new and changed resources are sent, and the
//! names that are gone; after a reconnect nothing unchanged crosses the wire again.
//!
//! A receiver can tell what it holds without remembering anything: the version of a resource
//! is the hash of the bytes it was sent as, and [`held_versions`] re-encodes the receiver's
//! stored copies to the same bytes.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::service::discovery::v3::Resource as DeltaResource;
use model::Resource;
use prost::Message;

use crate::wire;

/// `delta name → version` of the resources of one type that a receiver holds.
pub type VersionMap = BTreeMap<String, String>;

/// What to send for one type: new and changed resources, and the names that are gone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delta {
    /// Sorted by name.
    pub resources: Vec<DeltaResource>,
    /// `removed_resources`, sorted.
    pub removed: Vec<String>,
}

/// The delta that brings a receiver holding `held` to `current`. `current` may be in any
/// order; if a name appears twice the last one counts.
pub fn diff(held: &VersionMap, current: &[DeltaResource]) -> Delta {
    let mut by_name: BTreeMap<&str, &DeltaResource> = BTreeMap::new();
    for r in current {
        by_name.insert(r.name.as_str(), r);
    }
    let resources = by_name
        .values()
        .filter(|r| held.get(&r.name) != Some(&r.version))
        .map(|r| (*r).clone())
        .collect();
    let removed = held
        .keys()
        .filter(|name| !by_name.contains_key(name.as_str()))
        .cloned()
        .collect();
    Delta { resources, removed }
}

/// The versions of resources a receiver stored, as the sender computed them: the basis of
/// `initial_resource_versions` on reconnect. Pass only the resources the receiver got from
/// this sender ([`crate::reconcile::Receiver::owns`]).
pub fn held_versions(resources: &[Resource]) -> VersionMap {
    resources
        .iter()
        .map(|r| {
            let delta = wire::to_delta_resource(r);
            (delta.name, delta.version)
        })
        .collect()
}

/// Room left in a message for everything but resources and removed names (type URL, nonce,
/// system version, control plane identifier).
pub const ENVELOPE_RESERVE: usize = 1024;

/// A resource too large to fit in one message: never sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Oversized {
    /// Delta name, `<name>.<mesh>`.
    pub name: String,
    /// Its encoded size in bytes.
    pub size: usize,
}

/// A delta cut into messages that each fit the size limit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Split {
    /// At least one part (an empty delta gives one empty part: the first response of a type
    /// is sent even when there is nothing).
    pub parts: Vec<Delta>,
    pub oversized: Vec<Oversized>,
}

/// Bytes a repeated length-delimited field adds to a message for a payload of `len` bytes.
fn field_len(len: usize) -> usize {
    1 + prost::encoding::encoded_len_varint(len as u64) + len
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty() && self.removed.is_empty()
    }

    /// Records in `held` what the receiver holds once it applied this delta.
    pub fn apply_to(&self, held: &mut VersionMap) {
        for name in &self.removed {
            held.remove(name);
        }
        for r in &self.resources {
            held.insert(r.name.clone(), r.version.clone());
        }
    }

    /// The names this delta sends or removes.
    pub fn names(&self) -> BTreeSet<&str> {
        self.resources
            .iter()
            .map(|r| r.name.as_str())
            .chain(self.removed.iter().map(String::as_str))
            .collect()
    }

    /// The bytes its resources and removed names take in a response.
    pub fn encoded_len(&self) -> usize {
        self.resources
            .iter()
            .map(|r| field_len(r.encoded_len()))
            .chain(self.removed.iter().map(|n| field_len(n.len())))
            .sum()
    }

    /// Cuts the delta into parts whose responses stay within `max_message_bytes` (KDS's
    /// `maxMsgSize`, 10 MiB by default), keeping [`ENVELOPE_RESERVE`] for the rest of the
    /// message. A resource that cannot fit alone is left out and reported.
    pub fn split(self, max_message_bytes: usize) -> Split {
        let budget = max_message_bytes.saturating_sub(ENVELOPE_RESERVE);
        let mut split = Split::default();
        let mut part = Delta::default();
        let mut used = 0;
        let push = |part: &mut Delta, used: &mut usize, len: usize, parts: &mut Vec<Delta>| {
            if *used + len > budget && !part.is_empty() {
                parts.push(std::mem::take(part));
                *used = 0;
            }
            *used += len;
        };
        for r in self.resources {
            let len = field_len(r.encoded_len());
            if len > budget {
                split.oversized.push(Oversized {
                    name: r.name.clone(),
                    size: r.encoded_len(),
                });
                continue;
            }
            push(&mut part, &mut used, len, &mut split.parts);
            part.resources.push(r);
        }
        for name in self.removed {
            let len = field_len(name.len());
            push(&mut part, &mut used, len, &mut split.parts);
            part.removed.push(name);
        }
        if !part.is_empty() || split.parts.is_empty() {
            split.parts.push(part);
        }
        split
    }
}

#[cfg(test)]
mod tests {
    use model::test_util;

    use super::*;

    fn current(n: usize, changed: &[usize]) -> Vec<Resource> {
        (0..n)
            .map(|i| {
                let dest = if changed.contains(&i) { "changed" } else { "b" };
                test_util::traffic_permission("default", &format!("tp-{i:03}"), "a", dest)
            })
            .collect()
    }

    fn encode(resources: &[Resource]) -> Vec<DeltaResource> {
        resources.iter().map(wire::to_delta_resource).collect()
    }

    #[test]
    fn first_sync_sends_everything() {
        let now = encode(&current(5, &[]));
        let delta = diff(&VersionMap::new(), &now);
        assert_eq!(delta.resources.len(), 5);
        assert!(delta.removed.is_empty());
    }

    #[test]
    fn after_a_reconnect_only_changes_and_removals_are_sent() {
        // the receiver holds 100 resources, synced before the partition
        let before = current(100, &[]);
        let held = held_versions(&before);
        assert_eq!(held.len(), 100);

        // while it was away: 3 changed, 2 deleted (98, 99), 4 created
        let mut after = current(98, &[5, 17, 42]);
        for i in 0..4 {
            after.push(test_util::traffic_permission(
                "default",
                &format!("new-{i}"),
                "a",
                "b",
            ));
        }
        // order of the current set does not matter
        after.reverse();
        let delta = diff(&held, &encode(&after));
        let sent: Vec<&str> = delta.resources.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            sent,
            vec![
                "new-0.default",
                "new-1.default",
                "new-2.default",
                "new-3.default",
                "tp-005.default",
                "tp-017.default",
                "tp-042.default",
            ]
        );
        assert_eq!(delta.removed, vec!["tp-098.default", "tp-099.default"]);

        // once applied, the receiver is in sync: nothing more to send
        let mut held = held;
        delta.apply_to(&mut held);
        assert_eq!(held, wire::versions(&encode(&after)));
        assert!(diff(&held, &encode(&after)).is_empty());
    }

    #[test]
    fn unchanged_state_sends_nothing() {
        let now = encode(&current(10, &[]));
        assert!(diff(&wire::versions(&now), &now).is_empty());
    }

    #[test]
    fn split_respects_the_limit_and_keeps_everything() {
        let now = encode(&current(50, &[]));
        let mut delta = diff(&VersionMap::new(), &now);
        delta.removed = (0..30).map(|i| format!("gone-{i}.default")).collect();
        let total = delta.encoded_len();
        let limit = ENVELOPE_RESERVE + total / 4;
        let names = delta
            .names()
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        let split = delta.split(limit);
        assert!(split.oversized.is_empty());
        assert!(split.parts.len() >= 4, "{}", split.parts.len());
        for part in &split.parts {
            assert!(!part.is_empty());
            assert!(part.encoded_len() <= limit - ENVELOPE_RESERVE);
        }
        let mut seen: Vec<String> = split
            .parts
            .iter()
            .flat_map(|p| p.names().into_iter().map(String::from).collect::<Vec<_>>())
            .collect();
        seen.sort();
        assert_eq!(seen, names);
    }

    #[test]
    fn an_oversized_resource_is_reported_alone() {
        let mut big = test_util::secret("default", "big", &[7u8; 4096]);
        big.meta.labels.insert("a".into(), "b".into());
        let small = test_util::secret("default", "small", b"x");
        let delta = diff(&VersionMap::new(), &encode(&[big, small]));
        let split = delta.split(ENVELOPE_RESERVE + 1000);
        assert_eq!(split.oversized.len(), 1);
        assert_eq!(split.oversized[0].name, "big.default");
        assert!(split.oversized[0].size > 4096);
        assert_eq!(split.parts.len(), 1);
        assert_eq!(split.parts[0].resources[0].name, "small.default");
    }

    #[test]
    fn an_empty_delta_is_one_empty_part() {
        let split = Delta::default().split(10 << 20);
        assert_eq!(split.parts, vec![Delta::default()]);
    }
}
