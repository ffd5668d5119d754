//! Name and label rewriting (reference §1.10) and the rules the global applies to what a
//! zone sends (§1.9, `GlobalSyncCallback`).
//!
//! * [`zone_to_global`]: on the zone, before sending up: `kuma.io/origin=zone`,
//!   `kuma.io/zone=<zone>`, no deletion-grace-period label, subscription generations zeroed,
//!   name = `hashed_name(mesh, display name, [zone(, namespace)])`.
//! * [`GlobalToZone::map`]: on the global, before sending down: `kuma.io/origin=global` on
//!   everything, zone-token signing keys replaced by their public halves, and every type but
//!   Mesh, Secret, GlobalSecret and Config renamed to `hashed_name(mesh, display name,
//!   [kuma.io/zone label if any(, namespace)])`. A zone-origin resource therefore keeps the
//!   name its zone gave it, on the global and on every other zone.
//! * [`receive_from_zone`]: on the global, on what zone `client_id` sent: the zone and origin
//!   labels are forced and every zone attribution inside the spec is pinned to `client_id`,
//!   so a zone can only ever speak for itself.
//!
//! Whenever a resource is renamed, `kuma.io/display-name` is first set to the name before the
//! rename, unless it is already there. Kubernetes-store suffixes and the pre-2.6 "no
//! hash-suffix" naming are not implemented (kuma-rs has no Kubernetes store; every supported
//! zone sends `hash-suffix`).

use std::collections::HashMap;

use model::hash::hashed_name;
use model::labels;
use model::mesh_pb::DiscoverySubscription;
use model::{Resource, ResourceType, Spec};

use crate::error::Error;

/// Label a zone puts on a resource it is about to delete after a grace period; never synced.
pub const DELETION_GRACE_PERIOD_STARTED_AT: &str = "kuma.io/deletion-grace-period-started-at";

/// GlobalSecret name prefix of the zone-token signing keys (private, global only).
pub const ZONE_TOKEN_SIGNING_KEY_PREFIX: &str = "zone-token-signing-key";
/// What zones receive instead: the public halves.
pub const ZONE_TOKEN_SIGNING_PUBLIC_KEY_PREFIX: &str = "zone-token-signing-public-key";

/// Types that keep their names across KDS (`SkipKDSHash` in Kuma).
pub fn keeps_name(kind: ResourceType) -> bool {
    matches!(
        kind,
        ResourceType::Mesh
            | ResourceType::Secret
            | ResourceType::GlobalSecret
            | ResourceType::Config
    )
}

/// The synced name of `resource`: `hashed_name(mesh, display name, [zone label, namespace
/// label])`, each extra input only when the label is present and non-empty.
pub fn synced_name(resource: &Resource) -> String {
    let extra: Vec<&str> = [labels::ZONE, labels::K8S_NAMESPACE]
        .iter()
        .filter_map(|key| resource.meta.labels.get(*key))
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .collect();
    hashed_name(&resource.meta.mesh, resource.display_name(), &extra)
}

/// Renames `resource`, first recording the old name as `kuma.io/display-name` when absent.
pub fn rename(resource: &mut Resource, new_name: String) {
    if resource.meta.name == new_name {
        return;
    }
    let old = std::mem::replace(&mut resource.meta.name, new_name);
    resource
        .meta
        .labels
        .entry(labels::DISPLAY_NAME.to_string())
        .or_insert(old);
}

fn zero_generations(subscriptions: &mut [DiscoverySubscription]) {
    for s in subscriptions {
        s.generation = 0;
    }
}

/// The zone → global mapper chain: what zone `zone` sends up for a resource it authored.
pub fn zone_to_global(mut resource: Resource, zone: &str) -> Resource {
    let labels = &mut resource.meta.labels;
    labels.insert(labels::ORIGIN.into(), labels::ORIGIN_ZONE.into());
    labels.insert(labels::ZONE.into(), zone.into());
    labels.remove(DELETION_GRACE_PERIOD_STARTED_AT);
    match &mut resource.spec {
        Spec::DataplaneInsight(i) => zero_generations(&mut i.subscriptions),
        Spec::ZoneIngressInsight(i) => zero_generations(&mut i.subscriptions),
        _ => {}
    }
    let name = synced_name(&resource);
    rename(&mut resource, name);
    resource
}

/// Derives the PEM public key from a PEM private signing key. The global wires
/// `cp::tokens::signing::public_key_pem` here (kds does not depend on cp); the error text
/// must not contain key material.
pub type PublicKeyFn = fn(&str) -> Result<String, String>;

/// The global → zone mapper chain. The same for every zone (which resources a zone gets is
/// [`crate::filter`]'s job, done before mapping).
#[derive(Clone, Copy, Debug, Default)]
pub struct GlobalToZone {
    /// Turns a zone-token signing key into its public half. Without it the private keys are
    /// never sent (mapping them is an error).
    pub public_key: Option<PublicKeyFn>,
}

impl GlobalToZone {
    pub fn new(public_key: PublicKeyFn) -> Self {
        GlobalToZone {
            public_key: Some(public_key),
        }
    }

    /// What the global sends to a zone for `resource`. The only error is a zone-token signing
    /// key whose public half cannot be derived: that one resource is not sent.
    pub fn map(&self, mut resource: Resource) -> Result<Resource, Error> {
        resource
            .meta
            .labels
            .insert(labels::ORIGIN.into(), labels::ORIGIN_GLOBAL.into());
        if resource.kind() == ResourceType::GlobalSecret
            && let Some(serial) = resource
                .meta
                .name
                .strip_prefix(ZONE_TOKEN_SIGNING_KEY_PREFIX)
        {
            let new_name = format!("{ZONE_TOKEN_SIGNING_PUBLIC_KEY_PREFIX}{serial}");
            let name = resource.meta.name.clone();
            let fail = |message: &str| Error::PublicKey {
                name: name.clone(),
                message: message.to_string(),
            };
            let convert = self
                .public_key
                .ok_or_else(|| fail("no public-key converter is configured"))?;
            let Spec::GlobalSecret(secret) = &mut resource.spec else {
                return Err(fail("not a secret"));
            };
            let data = secret.data.get_or_insert_with(Default::default);
            let pem = std::str::from_utf8(&data.value)
                .map_err(|_| fail("the private key is not PEM text"))?;
            let public = convert(pem).map_err(|e| fail(&e))?;
            data.value = public.into_bytes();
            resource.meta.name = new_name;
        }
        if !keeps_name(resource.kind()) {
            let name = synced_name(&resource);
            rename(&mut resource, name);
        }
        Ok(resource)
    }
}

/// Applies the global's receive rules to a resource zone `client_id` sent: forces
/// `kuma.io/zone=<client_id>` and `kuma.io/origin=zone`, and pins `ZoneIngress.zone` and any
/// `kuma.io/zone` tag (ZoneIngress available services, Dataplane inbounds and gateway) to
/// `client_id`. Returns how many values it had to change (a well-behaved zone: 0), for
/// Kuma's `kds_zone_attribution_rewrites_total`.
pub fn receive_from_zone(resource: &mut Resource, client_id: &str) -> usize {
    fn pin(value: &mut String, wanted: &str, rewrites: &mut usize) {
        if value != wanted {
            *value = wanted.to_string();
            *rewrites += 1;
        }
    }
    fn pin_tag(tags: &mut HashMap<String, String>, zone: &str, rewrites: &mut usize) {
        if let Some(value) = tags.get_mut(labels::tags::ZONE) {
            pin(value, zone, rewrites);
        }
    }
    let mut rewrites = 0;
    let meta_labels = &mut resource.meta.labels;
    pin(
        meta_labels.entry(labels::ZONE.into()).or_default(),
        client_id,
        &mut rewrites,
    );
    pin(
        meta_labels.entry(labels::ORIGIN.into()).or_default(),
        labels::ORIGIN_ZONE,
        &mut rewrites,
    );
    match &mut resource.spec {
        Spec::ZoneIngress(zi) => {
            pin(&mut zi.zone, client_id, &mut rewrites);
            for service in &mut zi.available_services {
                pin_tag(&mut service.tags, client_id, &mut rewrites);
            }
        }
        Spec::Dataplane(dp) => {
            if let Some(net) = dp.networking.as_mut() {
                for inbound in &mut net.inbound {
                    pin_tag(&mut inbound.tags, client_id, &mut rewrites);
                }
                if let Some(gw) = net.gateway.as_mut() {
                    pin_tag(&mut gw.tags, client_id, &mut rewrites);
                }
            }
        }
        _ => {}
    }
    rewrites
}

#[cfg(test)]
mod tests {
    use model::mesh_pb;
    use model::test_util;

    use super::*;

    fn labelled(mut r: Resource, pairs: &[(&str, &str)]) -> Resource {
        for (k, v) in pairs {
            r.meta.labels.insert(k.to_string(), v.to_string());
        }
        r
    }

    fn label<'a>(r: &'a Resource, key: &str) -> Option<&'a str> {
        r.meta.labels.get(key).map(String::as_str)
    }

    /// The hashed-name vectors of reference §1.10, through the mappers.
    #[test]
    fn kuma_name_vectors_through_the_mappers() {
        // (zone, namespace label, expected) for a Dataplane `backend` in `mesh-1`
        let zone_cases: &[(&str, Option<&str>, &str)] = &[
            ("zone-uni", None, "backend-586b984b597z5874"),
            ("zone-k8s", Some("ns-k8s"), "backend-z7f47x24v9f5x2b4"),
        ];
        for (zone, ns, expected) in zone_cases {
            let mut dp = test_util::dataplane("mesh-1", "backend", "10.0.0.1", &[(80, "b")]);
            if let Some(ns) = ns {
                dp = labelled(dp, &[(labels::K8S_NAMESPACE, ns)]);
            }
            let up = zone_to_global(dp, zone);
            assert_eq!(up.meta.name, *expected, "{zone}");
            assert_eq!(label(&up, labels::DISPLAY_NAME), Some("backend"));
        }
        // a global-origin policy: no zone label
        let tp = test_util::traffic_permission("mesh-1", "backend", "a", "b");
        let down = GlobalToZone::default().map(tp).expect("maps");
        assert_eq!(down.meta.name, "backend-z6v4648zfz9c6wbv");
        let tp = test_util::traffic_permission("mesh-1", "matched-for-rules-mt-bbbbbb", "a", "b");
        let tp = labelled(tp, &[(labels::ZONE, "zone-uni")]);
        let down = GlobalToZone::default().map(tp).expect("maps");
        assert_eq!(
            down.meta.name,
            "matched-for-rules-mt-bbbbbb-49cz499w5458c56v"
        );
    }

    #[test]
    fn a_global_policy_reaches_zones_hashed_with_display_name_and_origin() {
        let tp = test_util::traffic_permission("default", "mtp-1", "a", "b");
        let down = GlobalToZone::default().map(tp.clone()).expect("maps");
        assert_eq!(down.meta.name, hashed_name("default", "mtp-1", &[]));
        assert_eq!(label(&down, labels::DISPLAY_NAME), Some("mtp-1"));
        assert_eq!(label(&down, labels::ORIGIN), Some(labels::ORIGIN_GLOBAL));
        assert_eq!(down.spec, tp.spec);
        assert_eq!(down.meta.mesh, "default");
    }

    #[test]
    fn a_zone_dataplane_keeps_its_zone_name_on_the_global_and_other_zones() {
        let mut dp = test_util::dataplane("default", "web-1", "10.0.0.1", &[(80, "web")]);
        dp.meta
            .labels
            .insert(DELETION_GRACE_PERIOD_STARTED_AT.into(), "2024".into());
        let up = zone_to_global(dp, "zone-1");
        let expected = hashed_name("default", "web-1", &["zone-1"]);
        assert_eq!(up.meta.name, expected);
        assert_eq!(label(&up, labels::ORIGIN), Some(labels::ORIGIN_ZONE));
        assert_eq!(label(&up, labels::ZONE), Some("zone-1"));
        assert_eq!(label(&up, labels::DISPLAY_NAME), Some("web-1"));
        assert_eq!(label(&up, DELETION_GRACE_PERIOD_STARTED_AT), None);

        // the global stores it as received (rules of a well-behaved zone change nothing)
        let mut stored = up.clone();
        assert_eq!(receive_from_zone(&mut stored, "zone-1"), 0);
        assert_eq!(stored, up);

        // re-broadcast (e.g. a ZoneIngress) recomputes the very same name
        let down = GlobalToZone::default().map(stored).expect("maps");
        assert_eq!(down.meta.name, expected);
        assert_eq!(label(&down, labels::ORIGIN), Some(labels::ORIGIN_GLOBAL));
        assert_eq!(label(&down, labels::ZONE), Some("zone-1"));
    }

    #[test]
    fn an_existing_display_name_is_kept() {
        let dp = labelled(
            test_util::dataplane("default", "web-1.ns", "10.0.0.1", &[(80, "web")]),
            &[(labels::DISPLAY_NAME, "web-1")],
        );
        let up = zone_to_global(dp, "z");
        assert_eq!(up.meta.name, hashed_name("default", "web-1", &["z"]));
        assert_eq!(label(&up, labels::DISPLAY_NAME), Some("web-1"));
    }

    #[test]
    fn insight_generations_are_zeroed() {
        let sub = |g| DiscoverySubscription {
            id: "s".into(),
            generation: g,
            ..Default::default()
        };
        let insight = Resource::new(
            "default",
            "dp-1",
            Spec::DataplaneInsight(mesh_pb::DataplaneInsight {
                subscriptions: vec![sub(3), sub(7)],
                ..Default::default()
            }),
        );
        let up = zone_to_global(insight, "z");
        let Spec::DataplaneInsight(i) = &up.spec else {
            panic!("kind changed")
        };
        assert!(i.subscriptions.iter().all(|s| s.generation == 0));
        assert_eq!(up.meta.name, hashed_name("default", "dp-1", &["z"]));

        let zi = Resource::new(
            "",
            "zi-1",
            Spec::ZoneIngressInsight(mesh_pb::ZoneIngressInsight {
                subscriptions: vec![sub(9)],
                ..Default::default()
            }),
        );
        let up = zone_to_global(zi, "z");
        let Spec::ZoneIngressInsight(i) = &up.spec else {
            panic!("kind changed")
        };
        assert_eq!(i.subscriptions[0].generation, 0);
    }

    #[test]
    fn names_kept_for_skip_hash_types() {
        let g = GlobalToZone::default();
        for r in [
            test_util::mesh("default"),
            test_util::secret("default", "s1", b"x"),
            Resource::new("", "kuma-cluster-id", Spec::Config(Default::default())),
            Resource::new("", "gs", Spec::GlobalSecret(secret_spec(b"d"))),
        ] {
            let name = r.meta.name.clone();
            let down = g.map(r).expect("maps");
            assert_eq!(down.meta.name, name);
            assert_eq!(label(&down, labels::DISPLAY_NAME), None);
            assert_eq!(label(&down, labels::ORIGIN), Some(labels::ORIGIN_GLOBAL));
        }
    }

    fn secret_spec(data: &[u8]) -> model::system_pb::Secret {
        model::system_pb::Secret {
            data: Some(envoy_types::pb::google::protobuf::BytesValue {
                value: data.to_vec(),
            }),
        }
    }

    fn secret_data(spec: &Spec) -> &[u8] {
        match spec {
            Spec::Secret(s) | Spec::GlobalSecret(s) => s
                .data
                .as_ref()
                .map(|d| d.value.as_slice())
                .unwrap_or_default(),
            _ => panic!("not a secret"),
        }
    }

    fn global_secret(name: &str, data: &[u8]) -> Resource {
        Resource::new("", name, Spec::GlobalSecret(secret_spec(data)))
    }

    #[test]
    fn zone_token_signing_keys_reach_zones_as_public_keys() {
        let to_public: PublicKeyFn = |pem| {
            pem.strip_prefix("PRIVATE:")
                .map(|k| format!("PUBLIC:{k}"))
                .ok_or_else(|| "not a private key".to_string())
        };
        let g = GlobalToZone::new(to_public);
        let down = g
            .map(global_secret("zone-token-signing-key-2", b"PRIVATE:abc"))
            .expect("maps");
        assert_eq!(down.meta.name, "zone-token-signing-public-key-2");
        assert_eq!(secret_data(&down.spec), b"PUBLIC:abc");

        let err = g
            .map(global_secret("zone-token-signing-key-3", b"garbage"))
            .expect_err("bad key");
        assert!(
            matches!(&err, Error::PublicKey { name, .. } if name == "zone-token-signing-key-3"),
            "{err}"
        );
        // without a converter the private key is never sent
        let err = GlobalToZone::default()
            .map(global_secret("zone-token-signing-key-1", b"PRIVATE:k"))
            .expect_err("no converter");
        assert!(matches!(err, Error::PublicKey { .. }));
        // other secrets pass unchanged
        let other = g
            .map(global_secret("zone-token-revocations", b"x"))
            .expect("maps");
        assert_eq!(other.meta.name, "zone-token-revocations");
    }

    #[test]
    fn the_global_pins_zone_attribution_to_the_client() {
        let mut dp = test_util::dataplane("default", "dp", "10.0.0.1", &[(80, "web")]);
        if let Spec::Dataplane(spec) = &mut dp.spec
            && let Some(net) = spec.networking.as_mut()
        {
            net.inbound[0]
                .tags
                .insert(labels::tags::ZONE.into(), "zone-2".into());
            net.gateway = Some(mesh_pb::dataplane::networking::Gateway {
                tags: [(labels::tags::ZONE.to_string(), "zone-3".to_string())].into(),
                ..Default::default()
            });
        }
        // claims to be from zone-2 and to be global-origin
        let mut dp = labelled(
            dp,
            &[
                (labels::ZONE, "zone-2"),
                (labels::ORIGIN, labels::ORIGIN_GLOBAL),
            ],
        );
        let rewrites = receive_from_zone(&mut dp, "zone-1");
        assert_eq!(rewrites, 4);
        assert_eq!(label(&dp, labels::ZONE), Some("zone-1"));
        assert_eq!(label(&dp, labels::ORIGIN), Some(labels::ORIGIN_ZONE));
        let Spec::Dataplane(spec) = &dp.spec else {
            panic!()
        };
        let net = spec.networking.as_ref().expect("networking");
        assert_eq!(net.inbound[0].tags[labels::tags::ZONE], "zone-1");
        let gw = net.gateway.as_ref().expect("gateway");
        assert_eq!(gw.tags[labels::tags::ZONE], "zone-1");

        // tags without kuma.io/zone stay without it
        let mut plain = test_util::dataplane("default", "dp", "10.0.0.1", &[(80, "web")]);
        receive_from_zone(&mut plain, "zone-1");
        let Spec::Dataplane(spec) = &plain.spec else {
            panic!()
        };
        assert!(
            !spec.networking.as_ref().expect("n").inbound[0]
                .tags
                .contains_key(labels::tags::ZONE)
        );

        let mut zi = Resource::new(
            "",
            "zi",
            Spec::ZoneIngress(mesh_pb::ZoneIngress {
                zone: "zone-9".into(),
                available_services: vec![mesh_pb::zone_ingress::AvailableService {
                    tags: [(labels::tags::ZONE.to_string(), "zone-9".to_string())].into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        );
        receive_from_zone(&mut zi, "zone-1");
        let Spec::ZoneIngress(spec) = &zi.spec else {
            panic!()
        };
        assert_eq!(spec.zone, "zone-1");
        assert_eq!(
            spec.available_services[0].tags[labels::tags::ZONE],
            "zone-1"
        );
    }
}
