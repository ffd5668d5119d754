//! `ZoneIngress.availableServices`: what a zone offers the others
//! (reference: `kuma-multizone.md` §4.2): per mesh, each distinct tag set of
//! the ready inbounds of the zone's Dataplanes, with how many inbounds carry
//! it. Each tag set gets `kuma.io/zone: <zone>`, so other zones can route to
//! a zone by tag. Sorted by mesh, then tags, so equal inputs give equal
//! lists (and an unchanged list is never written).
//!
//! Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet};

use model::Resource;
use model::labels::tags;
use model::mesh_pb::zone_ingress::AvailableService;
use xds::GenerateError;
use xds::endpoints::local_instances;

/// The available services of `dataplanes` (any mesh) in `zone`.
pub fn available_services(
    zone: &str,
    dataplanes: &[Resource],
) -> Result<Vec<AvailableService>, GenerateError> {
    let meshes: BTreeSet<&str> = dataplanes.iter().map(|d| d.meta.mesh.as_str()).collect();
    let mut counts: BTreeMap<(String, BTreeMap<String, String>), u32> = BTreeMap::new();
    for mesh in meshes {
        for instance in local_instances(mesh, dataplanes)? {
            let mut tags = instance.tags;
            if !zone.is_empty() {
                tags.insert(tags::ZONE.to_string(), zone.to_string());
            }
            *counts.entry((mesh.to_string(), tags)).or_default() += 1;
        }
    }
    Ok(counts
        .into_iter()
        .map(|((mesh, tags), instances)| AvailableService {
            tags: tags.into_iter().collect(),
            instances,
            mesh,
            external_service: false,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use model::mesh_pb::dataplane::networking::inbound;
    use model::test_util::dataplane;
    use model::{Resource, Spec};

    use super::*;

    fn with_version(mut dp: Resource, version: &str) -> Resource {
        if let Spec::Dataplane(spec) = &mut dp.spec {
            for inbound in &mut spec.networking.as_mut().unwrap().inbound {
                inbound.tags.insert("version".into(), version.into());
            }
        }
        dp
    }

    #[test]
    fn instances_are_counted_per_mesh_and_exact_tag_set() {
        let dataplanes = vec![
            with_version(
                dataplane("default", "backend-1", "10.0.0.1", &[(8080, "backend")]),
                "v1",
            ),
            with_version(
                dataplane("default", "backend-2", "10.0.0.2", &[(8080, "backend")]),
                "v1",
            ),
            with_version(
                dataplane("default", "backend-3", "10.0.0.3", &[(8080, "backend")]),
                "v2",
            ),
            dataplane("other", "backend-1", "10.0.1.1", &[(8080, "backend")]),
            dataplane(
                "default",
                "web-1",
                "10.0.0.9",
                &[(8080, "web"), (8081, "web-admin")],
            ),
        ];
        let got = available_services("zone-2", &dataplanes).unwrap();
        let summary: Vec<(String, String, Option<String>, u32)> = got
            .iter()
            .map(|s| {
                (
                    s.mesh.clone(),
                    s.tags[tags::SERVICE].clone(),
                    s.tags.get("version").cloned(),
                    s.instances,
                )
            })
            .collect();
        let row = |mesh: &str, service: &str, version: Option<&str>, n| {
            (
                mesh.to_string(),
                service.to_string(),
                version.map(str::to_string),
                n,
            )
        };
        assert_eq!(
            summary,
            vec![
                row("default", "backend", Some("v1"), 2),
                row("default", "backend", Some("v2"), 1),
                row("default", "web", Some("v1"), 1),
                row("default", "web-admin", Some("v1"), 1),
                row("other", "backend", Some("v1"), 1),
            ]
        );
        assert!(got.iter().all(|s| s.tags[tags::ZONE] == "zone-2"));
    }

    #[test]
    fn unready_inbounds_are_not_available() {
        let mut dp = dataplane("default", "backend-1", "10.0.0.1", &[(8080, "backend")]);
        if let Spec::Dataplane(spec) = &mut dp.spec {
            spec.networking.as_mut().unwrap().inbound[0].state = inbound::State::NotReady as i32;
        }
        assert!(available_services("zone-2", &[dp]).unwrap().is_empty());
    }
}
