//! What is sent (reference §1.11): the types each side requests, and the per-resource filters
//! applied to the sender's own store before mapping.

use model::{Resource, ResourceType, SyncDirection, labels};

/// Config names the global sends to zones (`KDSSyncedConfigs`).
pub const SYNCED_CONFIGS: &[&str] = &["kuma-cluster-id"];

/// GlobalSecrets never sent to zones, by exact name.
pub const GLOBAL_ONLY_SECRETS: &[&str] = &[
    "envoy-admin-ca",
    "admin-user-token",
    "inter-cp-ca",
    "user-token-revocations",
];
/// GlobalSecrets never sent to zones, by name prefix.
pub const GLOBAL_ONLY_SECRET_PREFIXES: &[&str] = &["user-token-signing-key"];

/// Value of `kuma.io/kds-sync` that keeps a resource out of KDS.
pub const KDS_SYNC_DISABLED: &str = "disabled";

/// Whether the global sends `kind` to zones: its own (global → zone) types and the zone types
/// it re-broadcasts (zone → global → zones).
pub fn sent_by_global(kind: ResourceType) -> bool {
    matches!(
        kind.descriptor().sync,
        SyncDirection::GlobalToZone | SyncDirection::ZoneToGlobalToZones
    )
}

/// Whether zones send `kind` to the global.
pub fn sent_by_zone(kind: ResourceType) -> bool {
    matches!(
        kind.descriptor().sync,
        SyncDirection::ZoneToGlobal | SyncDirection::ZoneToGlobalToZones
    )
}

/// The types a zone requests on GlobalToZoneSync (`TypesSentByGlobal`), in registry order.
pub fn types_sent_by_global() -> Vec<ResourceType> {
    ResourceType::ALL
        .iter()
        .copied()
        .filter(|k| sent_by_global(*k))
        .collect()
}

/// The types the global requests on ZoneToGlobalSync (`TypesSentByZone`), in registry order.
pub fn types_sent_by_zone() -> Vec<ResourceType> {
    ResourceType::ALL
        .iter()
        .copied()
        .filter(|k| sent_by_zone(*k))
        .collect()
}

fn label<'a>(resource: &'a Resource, key: &str) -> Option<&'a str> {
    resource.meta.labels.get(key).map(String::as_str)
}

fn sync_disabled(resource: &Resource) -> bool {
    label(resource, labels::KDS_SYNC) == Some(KDS_SYNC_DISABLED)
}

/// Authored on the global: no origin label, or `kuma.io/origin: global`.
pub fn is_global_origin(resource: &Resource) -> bool {
    matches!(
        label(resource, labels::ORIGIN),
        None | Some(labels::ORIGIN_GLOBAL)
    )
}

/// Authored in a zone: no origin label, or `kuma.io/origin: zone` (as a zone sees its own
/// resources; a zone-authored resource always carries the label once synced).
pub fn is_zone_origin(resource: &Resource) -> bool {
    matches!(
        label(resource, labels::ORIGIN),
        None | Some(labels::ORIGIN_ZONE)
    )
}

/// Whether a GlobalSecret may leave the global.
pub fn global_secret_syncable(name: &str) -> bool {
    !GLOBAL_ONLY_SECRETS.contains(&name)
        && !GLOBAL_ONLY_SECRET_PREFIXES
            .iter()
            .any(|p| name.starts_with(p))
}

/// Global → zone (`GlobalProvidedFilter`): whether the global sends `resource` (as stored on
/// the global, before mapping) to zone `zone`.
///
/// `zone_enabled(name)` answers whether the Zone `name` is enabled (`None` when it cannot be
/// told: the resource is then sent, as Kuma does). It decides whether a zone-origin resource
/// is re-broadcast.
pub fn global_to_zone(
    resource: &Resource,
    zone: &str,
    zone_enabled: &dyn Fn(&str) -> Option<bool>,
) -> bool {
    let kind = resource.kind();
    if !sent_by_global(kind) || sync_disabled(resource) {
        return false;
    }
    match kind {
        ResourceType::Config if !SYNCED_CONFIGS.contains(&resource.meta.name.as_str()) => {
            return false;
        }
        ResourceType::GlobalSecret if !global_secret_syncable(&resource.meta.name) => {
            return false;
        }
        _ => {}
    }
    match kind.descriptor().sync {
        SyncDirection::GlobalToZone => is_global_origin(resource),
        SyncDirection::ZoneToGlobalToZones => {
            if label(resource, labels::ORIGIN) != Some(labels::ORIGIN_ZONE) {
                return false;
            }
            match label(resource, labels::ZONE) {
                Some(origin) if origin == zone => false,
                Some(origin) => zone_enabled(origin) != Some(false),
                None => true,
            }
        }
        SyncDirection::ZoneToGlobal | SyncDirection::None => false,
    }
}

/// Zone → global (`ZoneProvidedFilter`): whether a zone sends `resource` (as stored in the
/// zone) to the global: only what this zone authored, never what it received from the
/// global, and nothing marked `kuma.io/kds-sync: disabled`.
pub fn zone_to_global(resource: &Resource) -> bool {
    sent_by_zone(resource.kind()) && !sync_disabled(resource) && is_zone_origin(resource)
}

#[cfg(test)]
mod tests {
    use model::mesh_pb;
    use model::test_util;
    use model::{Spec, system_pb};

    use super::*;

    fn with(mut r: Resource, pairs: &[(&str, &str)]) -> Resource {
        for (k, v) in pairs {
            r.meta.labels.insert(k.to_string(), v.to_string());
        }
        r
    }

    fn global_secret(name: &str) -> Resource {
        Resource::new(
            "",
            name,
            Spec::GlobalSecret(system_pb::Secret {
                data: Some(envoy_types::pb::google::protobuf::BytesValue {
                    value: b"x".to_vec(),
                }),
            }),
        )
    }

    fn ingress(zone: &str) -> Resource {
        with(
            Resource::new(
                "",
                format!("zi-{zone}"),
                Spec::ZoneIngress(mesh_pb::ZoneIngress {
                    zone: zone.into(),
                    ..Default::default()
                }),
            ),
            &[(labels::ORIGIN, labels::ORIGIN_ZONE), (labels::ZONE, zone)],
        )
    }

    fn all_enabled(_: &str) -> Option<bool> {
        Some(true)
    }

    #[test]
    fn type_sets_follow_the_registry() {
        use ResourceType::*;
        let down = types_sent_by_global();
        for kind in [
            Mesh,
            Secret,
            GlobalSecret,
            Config,
            TrafficPermission,
            ZoneIngress,
        ] {
            assert!(down.contains(&kind), "{kind}");
        }
        for kind in [
            Dataplane,
            DataplaneInsight,
            ZoneIngressInsight,
            Zone,
            ZoneInsight,
        ] {
            assert!(!down.contains(&kind), "{kind}");
        }
        let up = types_sent_by_zone();
        assert_eq!(
            up,
            vec![ZoneIngress, ZoneIngressInsight, Dataplane, DataplaneInsight]
        );
    }

    #[test]
    fn global_to_zone_cases() {
        use labels::*;
        let tp = || test_util::traffic_permission("default", "tp", "a", "b");
        let cases: Vec<(&str, Resource, &str, bool)> = vec![
            ("global policy", tp(), "zone-1", true),
            (
                "explicit global origin",
                with(tp(), &[(ORIGIN, ORIGIN_GLOBAL)]),
                "zone-1",
                true,
            ),
            (
                "kds-sync disabled",
                with(tp(), &[(KDS_SYNC, "disabled")]),
                "zone-1",
                false,
            ),
            (
                "kds-sync enabled",
                with(tp(), &[(KDS_SYNC, "enabled")]),
                "zone-1",
                true,
            ),
            (
                "zone-origin policy",
                with(tp(), &[(ORIGIN, ORIGIN_ZONE)]),
                "zone-1",
                false,
            ),
            ("mesh", test_util::mesh("default"), "zone-1", true),
            (
                "cluster id",
                Resource::new("", "kuma-cluster-id", Spec::Config(Default::default())),
                "zone-1",
                true,
            ),
            (
                "other config",
                Resource::new("", "cp-catalog", Spec::Config(Default::default())),
                "zone-1",
                false,
            ),
            (
                "envoy-admin-ca",
                global_secret("envoy-admin-ca"),
                "zone-1",
                false,
            ),
            (
                "admin-user-token",
                global_secret("admin-user-token"),
                "zone-1",
                false,
            ),
            ("inter-cp-ca", global_secret("inter-cp-ca"), "zone-1", false),
            (
                "revocations",
                global_secret("user-token-revocations"),
                "zone-1",
                false,
            ),
            (
                "user signing key",
                global_secret("user-token-signing-key-1"),
                "zone-1",
                false,
            ),
            (
                "zone signing key",
                global_secret("zone-token-signing-key-1"),
                "zone-1",
                true,
            ),
            (
                "zone revocations",
                global_secret("zone-token-revocations"),
                "zone-1",
                true,
            ),
            (
                "mesh secret",
                test_util::secret("default", "s", b"x"),
                "zone-1",
                true,
            ),
            ("own ingress", ingress("zone-1"), "zone-1", false),
            ("other zone's ingress", ingress("zone-2"), "zone-1", true),
            (
                "global-origin ingress",
                with(ingress("zone-2"), &[(ORIGIN, ORIGIN_GLOBAL)]),
                "zone-1",
                false,
            ),
            (
                "dataplane",
                with(
                    test_util::dataplane("default", "dp", "1.1.1.1", &[(1, "a")]),
                    &[(ORIGIN, ORIGIN_ZONE), (ZONE, "zone-2")],
                ),
                "zone-1",
                false,
            ),
            ("zone", test_util::zone("zone-2"), "zone-1", false),
        ];
        for (what, resource, zone, expected) in cases {
            assert_eq!(
                global_to_zone(&resource, zone, &all_enabled),
                expected,
                "{what}"
            );
        }
    }

    #[test]
    fn rebroadcast_only_from_enabled_zones() {
        let zi = ingress("zone-2");
        assert!(!global_to_zone(&zi, "zone-1", &|z| Some(z != "zone-2")));
        // the zone cannot be read: sent
        assert!(global_to_zone(&zi, "zone-1", &|_| None));
        assert!(global_to_zone(&zi, "zone-3", &|_| Some(true)));
    }

    #[test]
    fn a_zone_never_gets_its_own_resource_back_and_never_excluded_secrets() {
        let zones = ["zone-1", "zone-2", "zone-3"];
        let mut store = vec![
            global_secret("envoy-admin-ca"),
            global_secret("admin-user-token"),
            global_secret("inter-cp-ca"),
            global_secret("user-token-revocations"),
            global_secret("user-token-signing-key-7"),
            test_util::mesh("default"),
        ];
        store.extend(zones.iter().map(|z| ingress(z)));
        for zone in zones {
            let sent: Vec<&Resource> = store
                .iter()
                .filter(|r| global_to_zone(r, zone, &all_enabled))
                .collect();
            assert!(
                sent.iter()
                    .all(|r| r.meta.labels.get(labels::ZONE).map(String::as_str) != Some(zone)),
                "{zone} got its own resource back"
            );
            assert!(
                sent.iter().all(|r| r.kind() != ResourceType::GlobalSecret),
                "{zone} got a global-only secret"
            );
            assert_eq!(sent.len(), 1 + zones.len() - 1, "{zone}");
        }
    }

    #[test]
    fn zone_to_global_cases() {
        use labels::*;
        let dp = || test_util::dataplane("default", "dp", "1.1.1.1", &[(1, "a")]);
        let cases: Vec<(&str, Resource, bool)> = vec![
            ("own dataplane", dp(), true),
            (
                "labelled own dataplane",
                with(dp(), &[(ORIGIN, ORIGIN_ZONE)]),
                true,
            ),
            (
                "sync disabled",
                with(dp(), &[(KDS_SYNC, "disabled")]),
                false,
            ),
            ("own ingress", ingress("zone-1"), true),
            (
                "other zone's ingress received from global",
                with(ingress("zone-2"), &[(ORIGIN, ORIGIN_GLOBAL)]),
                false,
            ),
            (
                "policy from global",
                with(
                    test_util::traffic_permission("default", "tp", "a", "b"),
                    &[(ORIGIN, ORIGIN_GLOBAL)],
                ),
                false,
            ),
            (
                "zone-local secret (not a zone→global type)",
                test_util::secret("default", "s", b"x"),
                false,
            ),
        ];
        for (what, resource, expected) in cases {
            assert_eq!(zone_to_global(&resource), expected, "{what}");
        }
    }
}
