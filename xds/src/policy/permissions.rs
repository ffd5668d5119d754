//! TrafficPermission -> the `envoy.filters.network.rbac` filter of an
//! inbound listener (reference: `kuma-api.md` §5.3).
//!
//! Only meaningful when the mesh has mTLS enabled: the principals are the
//! URI SANs of the caller's client certificate. The filter goes first in
//! every filter chain of the inbound listener; its action is ALLOW with one
//! policy named after the selected TrafficPermission, allowing everything
//! (`permissions: [any]`) to its principals, one per `sources[]` selector:
//! the AND of exact `authenticated.principal_name` matchers, one per tag
//! whose value is not `*` (`kuma.io/service` -> `spiffe://{mesh}/{service}`,
//! any other tag -> `kuma://{tag}/{value}`), tags in name order; a single
//! matcher stands alone; a selector of wildcards only -> `any`. Without a
//! TrafficPermission the filter has no policy at all: every connection is
//! refused. Pure: no I/O.

use envoy_types::pb::envoy::config::listener::v3::{Filter, Listener, filter};
use envoy_types::pb::envoy::config::rbac::v3::{
    Permission, Policy, Principal, Rbac as RbacRules, permission, principal, rbac,
};
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac;
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
use envoy_types::util::pack_any;
use model::labels::tags;
use model::mesh_pb::{Selector, TrafficPermission};
use model::selector::WILDCARD;

use super::Selected;
use crate::names;

/// Envoy's name of the RBAC network filter.
pub const RBAC_FILTER: &str = "envoy.filters.network.rbac";

/// The RBAC filter of the inbound listener `listener` in `mesh`, allowing
/// what `permission` allows (nothing when `None`).
pub fn rbac_filter(
    listener: &str,
    mesh: &str,
    permission: Option<Selected<'_, TrafficPermission>>,
) -> Filter {
    let policies = permission
        .map(|p| {
            let policy = Policy {
                permissions: vec![Permission {
                    rule: Some(permission::Rule::Any(true)),
                }],
                principals: p
                    .spec
                    .sources
                    .iter()
                    .map(|s| principal_of(s, mesh))
                    .collect(),
                ..Default::default()
            };
            (p.name().to_string(), policy)
        })
        .into_iter()
        .collect();
    let config = Rbac {
        rules: Some(RbacRules {
            action: rbac::Action::Allow as i32,
            policies,
            ..Default::default()
        }),
        stat_prefix: format!("{}.", names::stat_prefix(listener)),
        ..Default::default()
    };
    Filter {
        name: RBAC_FILTER.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(pack_any(config))),
    }
}

/// Puts `rbac` first in every filter chain of `listener`.
pub fn prepend(listener: &mut Listener, rbac: &Filter) {
    for chain in &mut listener.filter_chains {
        chain.filters.insert(0, rbac.clone());
    }
}

/// The principal a `sources[]` selector stands for.
fn principal_of(selector: &Selector, mesh: &str) -> Principal {
    let mut pairs: Vec<(&String, &String)> = selector
        .r#match
        .iter()
        .filter(|(_, value)| value.as_str() != WILDCARD)
        .collect();
    pairs.sort();
    let mut ids: Vec<Principal> = pairs
        .into_iter()
        .map(|(tag, value)| {
            let name = if tag == tags::SERVICE {
                format!("spiffe://{mesh}/{value}")
            } else {
                format!("kuma://{tag}/{value}")
            };
            authenticated(name)
        })
        .collect();
    let identifier = match ids.len() {
        0 => principal::Identifier::Any(true),
        1 => return ids.remove(0),
        _ => principal::Identifier::AndIds(principal::Set { ids }),
    };
    Principal {
        identifier: Some(identifier),
    }
}

fn authenticated(exact: String) -> Principal {
    Principal {
        identifier: Some(principal::Identifier::Authenticated(
            principal::Authenticated {
                principal_name: Some(StringMatcher {
                    match_pattern: Some(string_matcher::MatchPattern::Exact(exact)),
                    ..Default::default()
                }),
            },
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use envoy_types::pb::envoy::config::rbac::v3::Principal;
    use model::{Resource, Spec};
    use prost::Message;

    use super::*;

    fn selector(pairs: &[(&str, &str)]) -> Selector {
        Selector {
            r#match: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn decode(filter: &Filter) -> Rbac {
        let Some(filter::ConfigType::TypedConfig(any)) = &filter.config_type else {
            panic!("no typed config");
        };
        Rbac::decode(any.value.as_slice()).unwrap()
    }

    fn exact(p: &Principal) -> &str {
        match &p.identifier {
            Some(principal::Identifier::Authenticated(a)) => {
                match &a.principal_name.as_ref().unwrap().match_pattern {
                    Some(string_matcher::MatchPattern::Exact(e)) => e,
                    other => panic!("not exact: {other:?}"),
                }
            }
            other => panic!("not authenticated: {other:?}"),
        }
    }

    #[test]
    fn sources_become_spiffe_and_kuma_principals() {
        let resource = Resource::new(
            "default",
            "web-to-backend",
            Spec::TrafficPermission(TrafficPermission {
                sources: vec![
                    selector(&[("kuma.io/service", "web")]),
                    selector(&[
                        ("kuma.io/service", "admin"),
                        ("version", "v1"),
                        ("zone", "*"),
                    ]),
                    selector(&[("kuma.io/service", "*")]),
                ],
                destinations: vec![selector(&[("kuma.io/service", "backend")])],
            }),
        );
        let Spec::TrafficPermission(spec) = &resource.spec else {
            unreachable!()
        };
        let selected = Selected {
            resource: &resource,
            spec,
        };
        let filter = rbac_filter("inbound:10.0.0.1:8080", "demo", Some(selected));
        assert_eq!(filter.name, RBAC_FILTER);
        let rbac = decode(&filter);
        assert_eq!(rbac.stat_prefix, "inbound_10_0_0_1_8080.");
        let rules = rbac.rules.unwrap();
        assert_eq!(rules.action, rbac::Action::Allow as i32);
        let policy = &rules.policies["web-to-backend"];
        assert_eq!(
            policy.permissions[0].rule,
            Some(permission::Rule::Any(true))
        );
        let principals = &policy.principals;
        assert_eq!(principals.len(), 3);
        assert_eq!(exact(&principals[0]), "spiffe://demo/web");
        let Some(principal::Identifier::AndIds(set)) = &principals[1].identifier else {
            panic!("not an AND: {:?}", principals[1]);
        };
        let names: Vec<_> = set.ids.iter().map(exact).collect();
        assert_eq!(names, ["spiffe://demo/admin", "kuma://version/v1"]);
        assert_eq!(
            principals[2].identifier,
            Some(principal::Identifier::Any(true))
        );
    }

    #[test]
    fn without_a_permission_nothing_is_allowed() {
        let rbac = decode(&rbac_filter("inbound:10.0.0.1:8080", "demo", None));
        let rules = rbac.rules.unwrap();
        assert_eq!(rules.action, rbac::Action::Allow as i32);
        assert!(rules.policies.is_empty());
    }
}
