//! What one side offers the other for one type: its own resources, filtered
//! ([`crate::filter`]), mapped ([`crate::mapping`]) and encoded ([`crate::wire`]), sorted by
//! delta name. The result is the "current set" that [`crate::diff`] compares with what the
//! receiver holds.

use envoy_types::pb::envoy::service::discovery::v3::Resource as DeltaResource;
use model::Resource;

use crate::error::Error;
use crate::filter;
use crate::mapping::{self, GlobalToZone};
use crate::wire;

/// What the global offers zone `zone`: every resource of `resources` (one type, as stored on
/// the global) that passes [`filter::global_to_zone`], mapped by `mapper`. A resource that
/// cannot be mapped is left out and its error returned beside the rest.
pub fn global_to_zone(
    resources: &[Resource],
    zone: &str,
    zone_enabled: &dyn Fn(&str) -> Option<bool>,
    mapper: &GlobalToZone,
) -> (Vec<DeltaResource>, Vec<Error>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for resource in resources {
        if !filter::global_to_zone(resource, zone, zone_enabled) {
            continue;
        }
        match mapper.map(resource.clone()) {
            Ok(mapped) => out.push(wire::to_delta_resource(&mapped)),
            Err(e) => errors.push(e),
        }
    }
    (sorted(out), errors)
}

/// What zone `zone` offers the global: every resource of `resources` (one type, as stored in
/// the zone) that passes [`filter::zone_to_global`], mapped for the global.
pub fn zone_to_global(resources: &[Resource], zone: &str) -> Vec<DeltaResource> {
    let out = resources
        .iter()
        .filter(|r| filter::zone_to_global(r))
        .map(|r| wire::to_delta_resource(&mapping::zone_to_global(r.clone(), zone)))
        .collect();
    sorted(out)
}

fn sorted(mut resources: Vec<DeltaResource>) -> Vec<DeltaResource> {
    resources.sort_by(|a, b| a.name.cmp(&b.name));
    resources
}

#[cfg(test)]
mod tests {
    use model::hash::hashed_name;
    use model::test_util;
    use model::{ResourceType, labels};

    use super::*;

    #[test]
    fn a_global_policy_is_offered_to_a_zone_hashed() {
        let tp = test_util::traffic_permission("default", "mtp-1", "a", "b");
        let (offered, errors) =
            global_to_zone(&[tp], "zone-1", &|_| Some(true), &GlobalToZone::default());
        assert!(errors.is_empty());
        assert_eq!(offered.len(), 1);
        let name = hashed_name("default", "mtp-1", &[]);
        assert_eq!(offered[0].name, format!("{name}.default"));
        let back = wire::from_delta_resource(ResourceType::TrafficPermission, &offered[0])
            .expect("decodes");
        assert_eq!(back.meta.name, name);
        assert_eq!(back.meta.labels[labels::DISPLAY_NAME], "mtp-1");
        assert_eq!(back.meta.labels[labels::ORIGIN], labels::ORIGIN_GLOBAL);
    }

    #[test]
    fn a_zone_dataplane_is_offered_under_the_synced_name() {
        let own = test_util::dataplane("default", "web-1", "10.0.0.1", &[(80, "web")]);
        let mut from_global = test_util::dataplane("default", "x", "10.0.0.2", &[(80, "x")]);
        from_global
            .meta
            .labels
            .insert(labels::ORIGIN.into(), labels::ORIGIN_GLOBAL.into());
        let offered = zone_to_global(&[own, from_global], "zone-1");
        assert_eq!(offered.len(), 1);
        let name = hashed_name("default", "web-1", &["zone-1"]);
        assert_eq!(offered[0].name, format!("{name}.default"));
    }

    #[test]
    fn unmappable_resources_are_reported_not_sent() {
        let key = Resource::new(
            "",
            "zone-token-signing-key-1",
            model::Spec::GlobalSecret(Default::default()),
        );
        let mesh = test_util::mesh("default");
        let (offered, errors) =
            global_to_zone(&[key, mesh], "zone-1", &|_| None, &GlobalToZone::default());
        assert_eq!(offered.len(), 1);
        assert_eq!(offered[0].name, "default.");
        assert_eq!(errors.len(), 1);
    }
}
