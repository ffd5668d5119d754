//! Classic ("selector") policies in sidecar generation (reference:
//! `kuma-api.md` §3.6, §5.3, §5.4): which policy applies where, and what it
//! turns into.
//!
//! * This module: selection. For an inbound, the TrafficPermission whose
//!   best `destinations` selector ranks highest against the inbound's tags.
//!   For an outbound, the TrafficRoute maximising (best `sources` rank
//!   against the proxy) + (best `destinations` rank against
//!   `{kuma.io/service: <outbound service>}`). Ranks compare as
//!   [`model::selector::Rank`] (more matched tags, then more exact ones); a
//!   tie goes to the newer policy (later `creationTime`), then, so that the
//!   outcome never depends on input order, to the name that sorts first.
//! * [`permissions`]: the RBAC network filter of a selected TrafficPermission.
//! * [`routes`]: the clusters, weights, HTTP rules and load balancer of a
//!   selected TrafficRoute; [`http`]: the Envoy routes of an HTTP outbound.
//!
//! The proxy as a source: a selector matches when it matches the tags of one
//! of the proxy's inbounds (or of its gateway), and its rank is the best over
//! them, as Kuma matches a Dataplane. A proxy with neither inbounds nor a
//! gateway (which validation refuses) matches no source selector, so no
//! TrafficRoute selects its outbounds and they are all skipped.
//!
//! Policies that validation would refuse are never selected rather than
//! trusted: one without `sources` or `destinations`, one with a selector
//! without tags, a TrafficRoute without `conf`. Policies of other meshes and
//! resources of other types are ignored. Pure: no I/O.

pub mod http;
pub mod permissions;
pub mod routes;

use std::cmp::Reverse;
use std::collections::HashMap;

use model::labels::tags;
use model::mesh_pb::dataplane::Networking;
use model::mesh_pb::{Selector, TrafficPermission, TrafficRoute};
use model::selector::{Rank, best_rank};
use model::{Resource, Spec};

/// A policy of type `P` with the resource it came from (name, creation time).
#[derive(Debug, Clone, Copy)]
pub struct Selected<'a, P> {
    pub resource: &'a Resource,
    pub spec: &'a P,
}

impl<P> Selected<'_, P> {
    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.resource.meta.name
    }
}

/// The TrafficPermission that applies to an inbound with `inbound_tags` in
/// `mesh`, if any.
pub fn select_permission<'a>(
    policies: &'a [Resource],
    mesh: &str,
    inbound_tags: &HashMap<String, String>,
) -> Option<Selected<'a, TrafficPermission>> {
    best(policies.iter().filter_map(|resource| {
        let Spec::TrafficPermission(spec) = &resource.spec else {
            return None;
        };
        if resource.meta.mesh != mesh || !usable(&spec.sources) || !usable(&spec.destinations) {
            return None;
        }
        let rank = best_rank(spec.destinations.iter().map(|s| &s.r#match), inbound_tags)?;
        Some((rank, Selected { resource, spec }))
    }))
}

/// The TrafficRoute that applies to the outbound to `service` of a proxy
/// whose tag sets (one per inbound, and the gateway's) are `proxy_tags`.
pub fn select_route<'a>(
    policies: &'a [Resource],
    mesh: &str,
    proxy_tags: &[&HashMap<String, String>],
    service: &str,
) -> Option<Selected<'a, TrafficRoute>> {
    let destination = HashMap::from([(tags::SERVICE.to_string(), service.to_string())]);
    best(policies.iter().filter_map(|resource| {
        let Spec::TrafficRoute(spec) = &resource.spec else {
            return None;
        };
        if resource.meta.mesh != mesh
            || !usable(&spec.sources)
            || !usable(&spec.destinations)
            || spec.conf.is_none()
        {
            return None;
        }
        let source = proxy_tags
            .iter()
            .filter_map(|tags| best_rank(spec.sources.iter().map(|s| &s.r#match), tags))
            .max()?;
        let dest = best_rank(spec.destinations.iter().map(|s| &s.r#match), &destination)?;
        let rank = Rank {
            exact: source.exact + dest.exact,
            wildcard: source.wildcard + dest.wildcard,
        };
        Some((rank, Selected { resource, spec }))
    }))
}

/// The proxy as a source of traffic: the tags of each of its inbounds, and
/// of its gateway when it is one.
pub fn proxy_tags(networking: &Networking) -> Vec<&HashMap<String, String>> {
    networking
        .inbound
        .iter()
        .map(|inbound| &inbound.tags)
        .chain(networking.gateway.as_ref().map(|gateway| &gateway.tags))
        .collect()
}

/// At least one selector, and every selector with at least one tag (an
/// empty selector would otherwise match everything).
fn usable(selectors: &[Selector]) -> bool {
    !selectors.is_empty() && selectors.iter().all(|s| !s.r#match.is_empty())
}

/// The highest-ranked candidate; ties -> newer, then the name sorting first.
fn best<'a, P>(
    candidates: impl Iterator<Item = (Rank, Selected<'a, P>)>,
) -> Option<Selected<'a, P>> {
    candidates
        .max_by(|(rank_a, a), (rank_b, b)| {
            rank_a
                .cmp(rank_b)
                .then_with(|| {
                    a.resource
                        .meta
                        .creation_time
                        .cmp(&b.resource.meta.creation_time)
                })
                .then_with(|| Reverse(a.name()).cmp(&Reverse(b.name())))
        })
        .map(|(_, selected)| selected)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use model::mesh_pb::traffic_route;

    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn selectors(list: &[&[(&str, &str)]]) -> Vec<Selector> {
        list.iter()
            .map(|pairs| Selector {
                r#match: tags(pairs),
            })
            .collect()
    }

    fn at(resource: Resource, seconds: u64) -> Resource {
        let mut resource = resource;
        resource.meta.creation_time += std::time::Duration::from_secs(seconds);
        resource
    }

    fn permission(name: &str, sources: &[&[(&str, &str)]], dest: &[&[(&str, &str)]]) -> Resource {
        Resource::new(
            "default",
            name,
            Spec::TrafficPermission(TrafficPermission {
                sources: selectors(sources),
                destinations: selectors(dest),
            }),
        )
    }

    fn route(name: &str, sources: &[&[(&str, &str)]], dest: &[&[(&str, &str)]]) -> Resource {
        Resource::new(
            "default",
            name,
            Spec::TrafficRoute(TrafficRoute {
                sources: selectors(sources),
                destinations: selectors(dest),
                conf: Some(traffic_route::Conf {
                    destination: tags(&[("kuma.io/service", "*")]),
                    ..Default::default()
                }),
            }),
        )
    }

    const ANY: &[(&str, &str)] = &[("kuma.io/service", "*")];

    #[test]
    fn the_most_specific_destination_wins_for_an_inbound() {
        let inbound = tags(&[("kuma.io/service", "backend"), ("version", "v1")]);
        let policies = [
            permission("all", &[ANY], &[ANY]),
            permission("backend", &[ANY], &[&[("kuma.io/service", "backend")]]),
            permission(
                "backend-any-version",
                &[ANY],
                &[&[("kuma.io/service", "backend"), ("version", "*")]],
            ),
            permission("web", &[ANY], &[&[("kuma.io/service", "web")]]),
        ];
        let chosen = select_permission(&policies, "default", &inbound).unwrap();
        assert_eq!(chosen.name(), "backend-any-version", "two tags beat one");

        let inbound = tags(&[("kuma.io/service", "backend")]);
        let chosen = select_permission(&policies, "default", &inbound).unwrap();
        assert_eq!(chosen.name(), "backend", "exact beats wildcard");

        let inbound = tags(&[("kuma.io/service", "db")]);
        assert_eq!(
            select_permission(&policies, "default", &inbound)
                .unwrap()
                .name(),
            "all"
        );
        assert!(select_permission(&policies[3..], "default", &inbound).is_none());
    }

    #[test]
    fn sources_do_not_select_a_permission() {
        // Kuma ranks TrafficPermissions by destination only: the specific
        // source of "only-web" does not make it win over a newer equal one.
        let inbound = tags(&[("kuma.io/service", "backend")]);
        let policies = [
            at(
                permission(
                    "only-web",
                    &[&[("kuma.io/service", "web")]],
                    &[&[("kuma.io/service", "backend")]],
                ),
                10,
            ),
            at(
                permission("anyone", &[ANY], &[&[("kuma.io/service", "backend")]]),
                20,
            ),
        ];
        let chosen = select_permission(&policies, "default", &inbound).unwrap();
        assert_eq!(chosen.name(), "anyone");
    }

    #[test]
    fn ties_go_to_the_newer_policy_then_the_first_name() {
        let inbound = tags(&[("kuma.io/service", "backend")]);
        let dest: &[&[(&str, &str)]] = &[&[("kuma.io/service", "backend")]];
        let older = at(permission("b-older", &[ANY], dest), 100);
        let newer = at(permission("c-newer", &[ANY], dest), 200);
        for policies in [
            [older.clone(), newer.clone()],
            [newer.clone(), older.clone()],
        ] {
            let chosen = select_permission(&policies, "default", &inbound).unwrap();
            assert_eq!(chosen.name(), "c-newer");
        }
        let twin = at(permission("a-twin", &[ANY], dest), 200);
        for policies in [[newer.clone(), twin.clone()], [twin.clone(), newer.clone()]] {
            let chosen = select_permission(&policies, "default", &inbound).unwrap();
            assert_eq!(chosen.name(), "a-twin");
        }
    }

    #[test]
    fn a_route_ranks_by_source_plus_destination() {
        let web = tags(&[("kuma.io/service", "web"), ("version", "v1")]);
        let policies = [
            at(route("route-all", &[ANY], &[ANY]), 300),
            at(
                route(
                    "web-any-to-backend",
                    &[&[("kuma.io/service", "web")]],
                    &[ANY],
                ),
                100,
            ),
            at(
                route(
                    "anyone-to-backend",
                    &[ANY],
                    &[&[("kuma.io/service", "backend")]],
                ),
                200,
            ),
            route(
                "web-v1",
                &[&[("kuma.io/service", "web"), ("version", "v1")]],
                &[&[("kuma.io/service", "db")]],
            ),
        ];
        // backend: "web-any-to-backend" (1 exact + 1 wildcard) ties with
        // "anyone-to-backend" (1 wildcard + 1 exact): the newer wins.
        let chosen = select_route(&policies, "default", &[&web], "backend").unwrap();
        assert_eq!(chosen.name(), "anyone-to-backend");
        // db: three tags of "web-v1" beat everything.
        let chosen = select_route(&policies, "default", &[&web], "db").unwrap();
        assert_eq!(chosen.name(), "web-v1");
        // Another source: only the wildcard sources match.
        let other = tags(&[("kuma.io/service", "other")]);
        let chosen = select_route(&policies, "default", &[&other], "cache").unwrap();
        assert_eq!(chosen.name(), "route-all");
    }

    #[test]
    fn any_inbound_of_the_proxy_can_be_the_source() {
        let a = tags(&[("kuma.io/service", "a")]);
        let b = tags(&[("kuma.io/service", "b"), ("team", "x")]);
        let policies = [
            route("from-a", &[&[("kuma.io/service", "a")]], &[ANY]),
            route(
                "from-b-team-x",
                &[&[("kuma.io/service", "b"), ("team", "x")]],
                &[ANY],
            ),
        ];
        let chosen = select_route(&policies, "default", &[&a, &b], "backend").unwrap();
        assert_eq!(chosen.name(), "from-b-team-x");
        let chosen = select_route(&policies, "default", &[&a], "backend").unwrap();
        assert_eq!(chosen.name(), "from-a");
        assert!(
            select_route(&policies, "default", &[], "backend").is_none(),
            "a proxy without inbounds is no source"
        );
    }

    #[test]
    fn invalid_and_foreign_policies_are_never_selected() {
        let inbound = tags(&[("kuma.io/service", "backend")]);
        let mut other_mesh = permission("other-mesh", &[ANY], &[ANY]);
        other_mesh.meta.mesh = "other".into();
        let policies = [
            permission("no-sources", &[], &[ANY]),
            permission("no-destinations", &[ANY], &[]),
            permission("empty-selector", &[ANY], &[&[]]),
            other_mesh,
            route("a-route", &[ANY], &[ANY]),
        ];
        assert!(select_permission(&policies, "default", &inbound).is_none());

        let mut no_conf = route("no-conf", &[ANY], &[ANY]);
        if let Spec::TrafficRoute(spec) = &mut no_conf.spec {
            spec.conf = None;
        }
        let policies = [
            no_conf,
            route("empty-source", &[&[]], &[ANY]),
            permission("a-permission", &[ANY], &[ANY]),
        ];
        assert!(select_route(&policies, "default", &[&inbound], "backend").is_none());
    }
}
