//! Receiver side (reference §1.9): the store operations that apply one upstream batch of one
//! type to the local store, as a plan the caller commits in one atomic batch before it ACKs.
//!
//! * A full-state batch (the sender's whole set: the first response after a request without
//!   `initial_resource_versions`) deletes every owned local resource absent upstream. With
//!   catch-up (the request carried the versions held, [`crate::diff::held_versions`]) the
//!   first response is incremental like every later one: it deletes only its removed names.
//! * Creates for new keys, updates when spec or labels differ (the local version is kept for
//!   the store's optimistic concurrency), nothing for identical resources.
//! * Only resources the receiver [`Receiver::owns`] are ever updated or deleted: a zone
//!   touches only what came from the global for types it also authors, the global only what
//!   came from this very zone. A zone can never overwrite another zone's or the global's
//!   resources.
//! * Upstream resources that cannot be stored (undecodable, invalid per
//!   `model::validate`, or clashing with a resource the receiver does not own) are
//!   [`Rejection`]s, reported one by one for the NACK, while the rest is planned; their local
//!   copies are left as they are.

use std::collections::{BTreeMap, BTreeSet};

use model::validate::ValidationError;
use model::{Resource, ResourceKey, ResourceType, labels};
use store::Op;

use crate::error::Rejection;
use crate::mapping;
use crate::wire::DecodedResponse;

/// Who receives the batch, which decides what it may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receiver {
    /// A zone, receiving from the global (GlobalToZoneSync).
    Zone,
    /// The global, receiving from zone `zone` (ZoneToGlobalSync). `zone` is the identity of
    /// the stream (its credential), never what the resources claim.
    Global { zone: String },
}

impl Receiver {
    /// Whether `resource` (local, or upstream after the receive rules) belongs to what this
    /// receiver gets from its peer, and so may be created, updated or deleted by a batch.
    ///
    /// * Zone: for types the zone does not author, everything; for types it also authors
    ///   (Secret, GlobalSecret, Config, ZoneIngress), only `kuma.io/origin: global`.
    /// * Global: only `kuma.io/origin: zone` with `kuma.io/zone` = this zone.
    pub fn owns(&self, resource: &Resource) -> bool {
        let label = |key: &str| resource.meta.labels.get(key).map(String::as_str);
        match self {
            Receiver::Zone => {
                !resource.kind().descriptor().provided_by_zone
                    || label(labels::ORIGIN) == Some(labels::ORIGIN_GLOBAL)
            }
            Receiver::Global { zone } => {
                label(labels::ORIGIN) == Some(labels::ORIGIN_ZONE)
                    && label(labels::ZONE) == Some(zone.as_str())
            }
        }
    }

    /// The owner of created resources: on the global, the zone's `Zone` resource (deleting
    /// the zone deletes what it synced).
    pub fn owner(&self) -> Option<ResourceKey> {
        match self {
            Receiver::Zone => None,
            Receiver::Global { zone } => Some(ResourceKey::global(ResourceType::Zone, zone)),
        }
    }

    fn describe(&self) -> String {
        match self {
            Receiver::Zone => "the global".into(),
            Receiver::Global { zone } => format!("zone {zone:?}"),
        }
    }
}

/// One upstream batch of one type.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    pub kind: ResourceType,
    /// The sender's whole set: absent owned resources are deleted.
    pub full_state: bool,
    pub resources: Vec<Resource>,
    pub removed: Vec<ResourceKey>,
    /// Already refused while decoding ([`crate::wire::decode_response`]).
    pub rejected: Vec<Rejection>,
}

impl Upstream {
    pub fn from_decoded(decoded: DecodedResponse, full_state: bool) -> Self {
        Upstream {
            kind: decoded.kind,
            full_state,
            resources: decoded.resources,
            removed: decoded.removed,
            rejected: decoded.rejected,
        }
    }
}

/// What to commit for one batch, and what to NACK.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Creates, then deletes, then updates, each group sorted by key; commit them in one
    /// atomic batch.
    pub ops: Vec<Op>,
    /// Refused resources, each with its reason; NACK them, ACK the rest.
    pub rejected: Vec<Rejection>,
    /// Zone attributions the global had to correct in what the zone sent
    /// (`kds_zone_attribution_rewrites_total`); always 0 on a zone.
    pub attribution_rewrites: usize,
}

impl Plan {
    /// The NACK's `error_detail` message: every rejection, joined; `None` to ACK.
    pub fn nack_message(&self) -> Option<String> {
        if self.rejected.is_empty() {
            return None;
        }
        let reasons: Vec<&str> = self.rejected.iter().map(|r| r.reason.as_str()).collect();
        Some(reasons.join("; "))
    }
}

/// Plans how to apply `upstream` to `local`, the local resources of the batch's type: all of
/// them for a full-state batch; for an incremental one at least those the batch names
/// (passing all of them is fine: only named keys are considered).
pub fn plan(receiver: &Receiver, upstream: Upstream, local: &[Resource]) -> Plan {
    let kind = upstream.kind;
    let mut plan = Plan {
        rejected: upstream.rejected,
        ..Plan::default()
    };
    let local: BTreeMap<ResourceKey, &Resource> = local
        .iter()
        .filter(|r| r.kind() == kind)
        .map(|r| (r.key(), r))
        .collect();

    let mut wanted: BTreeMap<ResourceKey, Resource> = BTreeMap::new();
    for mut resource in upstream.resources {
        if resource.kind() != kind {
            plan.rejected.push(Rejection::new(
                &resource.key(),
                format!(
                    "{} {:?}: sent in a {kind} batch",
                    resource.kind(),
                    resource.meta.name
                ),
            ));
            continue;
        }
        if let Receiver::Global { zone } = receiver {
            plan.attribution_rewrites += mapping::receive_from_zone(&mut resource, zone);
        }
        let key = resource.key();
        if !receiver.owns(&resource) {
            plan.rejected.push(Rejection::new(
                &key,
                format!(
                    "{kind} {:?}: not a resource {} may send (labels {} / {})",
                    key.name,
                    receiver.describe(),
                    label_text(&resource, labels::ORIGIN),
                    label_text(&resource, labels::ZONE),
                ),
            ));
            continue;
        }
        if let Err(e) = validate_synced(&resource) {
            plan.rejected.push(Rejection::new(&key, e.to_string()));
            continue;
        }
        if let Some(existing) = local.get(&key)
            && !receiver.owns(existing)
        {
            plan.rejected.push(Rejection::new(
                &key,
                format!(
                    "{kind} {:?}: a resource of that name already exists here and does not come from {} ({} / {}); it is not overwritten",
                    key.name,
                    receiver.describe(),
                    label_text(existing, labels::ORIGIN),
                    label_text(existing, labels::ZONE),
                ),
            ));
            continue;
        }
        wanted.insert(key, resource);
    }
    let rejected_keys: BTreeSet<ResourceKey> = plan.rejected.iter().map(|r| r.key()).collect();

    let mut creates = Vec::new();
    let mut updates = Vec::new();
    for (key, resource) in &wanted {
        match local.get(key) {
            None => creates.push(Op::Create {
                resource: resource.clone(),
                owner: receiver.owner(),
            }),
            Some(existing) => {
                if existing.spec != resource.spec || existing.meta.labels != resource.meta.labels {
                    let mut updated = (*existing).clone();
                    updated.spec = resource.spec.clone();
                    updated.meta.labels = resource.meta.labels.clone();
                    updates.push(Op::Update { resource: updated });
                }
            }
        }
    }

    let deletes: Vec<Op> = if upstream.full_state {
        local
            .iter()
            .filter(|(key, existing)| {
                receiver.owns(existing) && !wanted.contains_key(key) && !rejected_keys.contains(key)
            })
            .map(|(key, _)| Op::Delete { key: key.clone() })
            .collect()
    } else {
        let removed: BTreeSet<ResourceKey> = upstream
            .removed
            .into_iter()
            .filter(|key| key.kind == kind)
            .collect();
        removed
            .into_iter()
            .filter(|key| {
                !wanted.contains_key(key)
                    && !rejected_keys.contains(key)
                    && local
                        .get(key)
                        .is_some_and(|existing| receiver.owns(existing))
            })
            .map(|key| Op::Delete { key })
            .collect()
    };

    plan.ops = creates;
    plan.ops.extend(deletes);
    plan.ops.extend(updates);
    plan
}

/// `model::validate::validate` for a synced resource: the same rules, except that
/// `kuma.io/display-name` may hold any resource name (KDS copies names of up to 253
/// characters into it; the 63-character limit is for label values users write).
pub fn validate_synced(resource: &Resource) -> Result<(), ValidationError> {
    match resource.meta.labels.get(labels::DISPLAY_NAME) {
        Some(display) if display.len() > 63 => {
            let mut copy = resource.clone();
            copy.meta.labels.remove(labels::DISPLAY_NAME);
            model::validate::validate(&copy)
        }
        _ => model::validate::validate(resource),
    }
}

fn label_text(resource: &Resource, key: &str) -> String {
    match resource.meta.labels.get(key) {
        Some(v) => format!("{key}={v}"),
        None => format!("no {key}"),
    }
}

#[cfg(test)]
mod tests {
    use model::hash::hashed_name;
    use model::test_util;
    use model::{Spec, mesh_pb};

    use super::*;
    use crate::mapping::{GlobalToZone, zone_to_global};
    use crate::wire;

    fn with(mut r: Resource, pairs: &[(&str, &str)]) -> Resource {
        for (k, v) in pairs {
            r.meta.labels.insert(k.to_string(), v.to_string());
        }
        r
    }

    fn global(r: Resource) -> Resource {
        with(r, &[(labels::ORIGIN, labels::ORIGIN_GLOBAL)])
    }

    fn stored(mut r: Resource, version: u64) -> Resource {
        r.meta.version = version;
        r
    }

    fn tp(name: &str, dest: &str) -> Resource {
        global(test_util::traffic_permission("default", name, "a", dest))
    }

    /// `(action, name)` of each op, in order.
    fn summary(plan: &Plan) -> Vec<(&'static str, String)> {
        plan.ops
            .iter()
            .map(|op| match op {
                Op::Create { resource, .. } => ("create", resource.meta.name.clone()),
                Op::Update { resource } => ("update", resource.meta.name.clone()),
                Op::Delete { key } => ("delete", key.name.clone()),
            })
            .collect()
    }

    fn s(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
        pairs.iter().map(|(a, n)| (*a, n.to_string())).collect()
    }

    fn full(kind: ResourceType, resources: Vec<Resource>) -> Upstream {
        Upstream {
            kind,
            full_state: true,
            resources,
            removed: vec![],
            rejected: vec![],
        }
    }

    #[test]
    fn zone_full_state_creates_updates_and_deletes() {
        let local = vec![
            stored(tp("same", "b"), 3),
            stored(tp("changed", "b"), 4),
            stored(tp("gone", "b"), 5),
        ];
        let upstream = full(
            ResourceType::TrafficPermission,
            vec![tp("same", "b"), tp("changed", "c"), tp("new", "b")],
        );
        let plan = plan(&Receiver::Zone, upstream, &local);
        assert_eq!(
            summary(&plan),
            s(&[("create", "new"), ("delete", "gone"), ("update", "changed")])
        );
        assert!(plan.rejected.is_empty());
        assert_eq!(plan.nack_message(), None);
        let Op::Update { resource } = &plan.ops[2] else {
            panic!()
        };
        assert_eq!(
            resource.meta.version, 4,
            "the local version is kept for the CAS"
        );
        assert_eq!(resource.spec, tp("changed", "c").spec);
        let Op::Create { owner, .. } = &plan.ops[0] else {
            panic!()
        };
        assert_eq!(*owner, None);
    }

    #[test]
    fn labels_alone_make_an_update() {
        let local = vec![stored(tp("x", "b"), 1)];
        let up = with(tp("x", "b"), &[("team", "a")]);
        let plan = plan(
            &Receiver::Zone,
            full(ResourceType::TrafficPermission, vec![up]),
            &local,
        );
        assert_eq!(summary(&plan), s(&[("update", "x")]));
    }

    #[test]
    fn a_zone_never_touches_what_it_authored() {
        let secret = |name: &str| test_util::secret("default", name, b"data");
        let local = vec![
            with(secret("mine"), &[(labels::ORIGIN, labels::ORIGIN_ZONE)]),
            secret("also-mine-unlabelled"),
            global(secret("old")),
            global(secret("kept")),
        ];
        let upstream = full(
            ResourceType::Secret,
            vec![global(secret("kept")), global(secret("mine"))],
        );
        let plan = plan(&Receiver::Zone, upstream, &local);
        assert_eq!(summary(&plan), s(&[("delete", "old")]));
        assert_eq!(plan.rejected.len(), 1);
        assert_eq!(plan.rejected[0].name, "mine");
        assert!(
            plan.rejected[0].reason.contains("already exists"),
            "{}",
            plan.rejected[0].reason
        );
    }

    #[test]
    fn a_bad_resource_is_reported_alone_and_the_rest_is_planned() {
        let mut bad = tp("bad", "b");
        if let Spec::TrafficPermission(p) = &mut bad.spec {
            p.sources.clear();
        }
        let local = vec![stored(tp("bad", "b"), 2), stored(tp("stale", "b"), 2)];
        let decoded_reject = Rejection::new(
            &ResourceKey::new(ResourceType::TrafficPermission, "default", "garbled"),
            "TrafficPermission \"garbled\": KumaResource bytes cannot be decoded",
        );
        let mut upstream = full(
            ResourceType::TrafficPermission,
            vec![tp("good-1", "b"), bad, tp("good-2", "b")],
        );
        upstream.rejected.push(decoded_reject.clone());
        let plan = plan(&Receiver::Zone, upstream, &local);
        assert_eq!(
            summary(&plan),
            s(&[
                ("create", "good-1"),
                ("create", "good-2"),
                ("delete", "stale")
            ]),
            "the invalid one's local copy is kept"
        );
        assert_eq!(plan.rejected.len(), 2);
        assert_eq!(plan.rejected[0], decoded_reject);
        let bad = &plan.rejected[1];
        assert_eq!(
            (bad.kind, bad.name.as_str()),
            (ResourceType::TrafficPermission, "bad")
        );
        assert!(
            bad.reason.contains("TrafficPermission \"bad\" is invalid"),
            "{}",
            bad.reason
        );
        assert!(bad.reason.contains("sources"), "{}", bad.reason);
        let nack = plan.nack_message().expect("nack");
        assert!(
            nack.contains("garbled") && nack.contains("\"bad\""),
            "{nack}"
        );
    }

    #[test]
    fn incremental_batches_delete_only_removed_owned_names() {
        let secret = |name: &str| test_util::secret("default", name, b"data");
        let local = vec![
            global(secret("a")),
            global(secret("b")),
            global(secret("c")),
            secret("local"),
        ];
        let key = |n: &str| ResourceKey::new(ResourceType::Secret, "default", n);
        let upstream = Upstream {
            kind: ResourceType::Secret,
            full_state: false,
            resources: vec![global(test_util::secret("default", "b", b"new"))],
            removed: vec![key("a"), key("b"), key("local"), key("unknown")],
            rejected: vec![],
        };
        let plan = plan(&Receiver::Zone, upstream, &local);
        // c is absent upstream but this is not the full state: kept
        assert_eq!(summary(&plan), s(&[("delete", "a"), ("update", "b")]));
    }

    #[test]
    fn identical_state_plans_nothing() {
        let local = vec![stored(tp("a", "b"), 1), stored(tp("c", "d"), 9)];
        let upstream = full(
            ResourceType::TrafficPermission,
            vec![tp("a", "b"), tp("c", "d")],
        );
        assert_eq!(plan(&Receiver::Zone, upstream, &local), Plan::default());
    }

    fn from_zone(zone: &str, name: &str) -> Resource {
        zone_to_global(
            test_util::dataplane("default", name, "10.0.0.1", &[(80, "web")]),
            zone,
        )
    }

    #[test]
    fn the_global_never_deletes_another_zones_resources() {
        let receiver = Receiver::Global {
            zone: "zone-1".into(),
        };
        let local = vec![
            from_zone("zone-1", "kept"),
            from_zone("zone-1", "gone"),
            from_zone("zone-2", "other"),
            from_zone("zone-2", "gone"),
        ];
        let upstream = full(ResourceType::Dataplane, vec![from_zone("zone-1", "kept")]);
        let plan = plan(&receiver, upstream, &local);
        let gone = hashed_name("default", "gone", &["zone-1"]);
        assert_eq!(summary(&plan), s(&[("delete", &gone)]));

        // an empty full state (the zone has no dataplanes left) deletes only its own
        let plan2 = super::plan(&receiver, full(ResourceType::Dataplane, vec![]), &local);
        assert_eq!(plan2.ops.len(), 2);
        for op in &plan2.ops {
            let Op::Delete { key } = op else { panic!() };
            assert!(
                local
                    .iter()
                    .any(|r| r.key() == *key && r.meta.labels[labels::ZONE] == "zone-1")
            );
        }
    }

    #[test]
    fn a_zone_cannot_overwrite_another_zones_or_the_globals_resources() {
        let receiver = Receiver::Global {
            zone: "zone-1".into(),
        };
        let other = from_zone("zone-2", "web");
        // zone-1 sends a resource under zone-2's synced name, claiming to be zone-2
        let impostor = other.clone();
        let plan = plan(
            &receiver,
            full(ResourceType::Dataplane, vec![impostor]),
            std::slice::from_ref(&other),
        );
        assert!(plan.ops.is_empty(), "{:?}", plan.ops);
        assert_eq!(plan.rejected.len(), 1);
        assert!(plan.rejected[0].reason.contains("not overwritten"));
        assert_eq!(plan.attribution_rewrites, 1, "the zone label was forced");
    }

    #[test]
    fn the_global_creates_with_forced_labels_and_the_zone_as_owner() {
        let receiver = Receiver::Global {
            zone: "zone-1".into(),
        };
        let up = from_zone("zone-1", "web");
        let plan = plan(
            &receiver,
            full(ResourceType::Dataplane, vec![up.clone()]),
            &[],
        );
        let [Op::Create { resource, owner }] = plan.ops.as_slice() else {
            panic!("{:?}", plan.ops)
        };
        assert_eq!(resource, &up);
        assert_eq!(
            resource.meta.name,
            hashed_name("default", "web", &["zone-1"])
        );
        assert_eq!(
            owner,
            &Some(ResourceKey::global(ResourceType::Zone, "zone-1"))
        );
        assert_eq!(plan.attribution_rewrites, 0);

        // an ingress naming another zone is pinned to the stream's zone
        let zi = zone_to_global(
            Resource::new(
                "",
                "zi",
                Spec::ZoneIngress(mesh_pb::ZoneIngress {
                    zone: "zone-2".into(),
                    networking: Some(mesh_pb::zone_ingress::Networking {
                        address: "10.0.0.9".into(),
                        advertised_address: "1.2.3.4".into(),
                        port: 10001,
                        advertised_port: 10001,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            ),
            "zone-1",
        );
        let plan = super::plan(&receiver, full(ResourceType::ZoneIngress, vec![zi]), &[]);
        assert!(plan.rejected.is_empty(), "{:?}", plan.rejected);
        let [Op::Create { resource, .. }] = plan.ops.as_slice() else {
            panic!()
        };
        let Spec::ZoneIngress(spec) = &resource.spec else {
            panic!()
        };
        assert_eq!(spec.zone, "zone-1");
        assert_eq!(plan.attribution_rewrites, 1);
    }

    /// The whole path of a policy: global store → filter/map/encode → decode → plan in a zone.
    #[test]
    fn a_global_policy_lands_in_a_zone_under_its_hashed_name() {
        let on_global = test_util::traffic_permission("default", "mtp-1", "a", "b");
        let (offered, errors) = crate::outbound::global_to_zone(
            &[on_global],
            "zone-1",
            &|_| Some(true),
            &GlobalToZone::default(),
        );
        assert!(errors.is_empty());
        let decoded = wire::decode_response("TrafficPermission", &offered, &[]).expect("decodes");
        let plan = plan(&Receiver::Zone, Upstream::from_decoded(decoded, true), &[]);
        let [Op::Create { resource, .. }] = plan.ops.as_slice() else {
            panic!("{:?}", plan)
        };
        assert_eq!(resource.meta.name, hashed_name("default", "mtp-1", &[]));
        assert_eq!(resource.meta.labels[labels::DISPLAY_NAME], "mtp-1");
        assert_eq!(resource.meta.labels[labels::ORIGIN], labels::ORIGIN_GLOBAL);

        // the zone can tell the global what it holds: exactly what was sent
        let held = crate::diff::held_versions(std::slice::from_ref(resource));
        assert_eq!(held, wire::versions(&offered));
    }

    #[test]
    fn long_names_survive_the_trip() {
        let long = format!("policy-{}", "x".repeat(120));
        let (offered, _) = crate::outbound::global_to_zone(
            &[test_util::traffic_permission("default", &long, "a", "b")],
            "zone-1",
            &|_| None,
            &GlobalToZone::default(),
        );
        let decoded = wire::decode_response("TrafficPermission", &offered, &[]).expect("ok");
        let plan = plan(&Receiver::Zone, Upstream::from_decoded(decoded, true), &[]);
        assert!(plan.rejected.is_empty(), "{:?}", plan.rejected);
        assert_eq!(plan.ops.len(), 1);
        // other over-long label values are still refused
        let mut bad = tp("x", "b");
        bad.meta.labels.insert("team".into(), "y".repeat(70));
        let plan = super::plan(
            &Receiver::Zone,
            full(ResourceType::TrafficPermission, vec![bad]),
            &[],
        );
        assert_eq!(plan.rejected.len(), 1);
    }

    #[test]
    fn owns_rules() {
        let zone = Receiver::Zone;
        assert!(
            zone.owns(&test_util::mesh("m")),
            "zone does not author meshes"
        );
        assert!(zone.owns(&global(test_util::secret("m", "s", b"x"))));
        assert!(!zone.owns(&test_util::secret("m", "s", b"x")));
        let g = Receiver::Global { zone: "z1".into() };
        assert!(g.owns(&from_zone("z1", "a")));
        assert!(!g.owns(&from_zone("z2", "a")));
        assert!(!g.owns(&test_util::dataplane("m", "a", "1.1.1.1", &[(1, "a")])));
        let mut global_labelled = from_zone("z1", "a");
        global_labelled
            .meta
            .labels
            .insert(labels::ORIGIN.into(), labels::ORIGIN_GLOBAL.into());
        assert!(!g.owns(&global_labelled));
    }
}
