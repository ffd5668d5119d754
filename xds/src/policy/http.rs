//! The Envoy routes of an HTTP outbound (and the catch-all of an inbound):
//! a TrafficRoute's `conf.http[]` rules in order, then everything else to
//! the route's `split`/`destination` (reference: `kuma-api.md` §3.6, §5.4).
//!
//! * match: `path` prefix/exact/regex -> the route's path (`prefix: /` when
//!   absent); `method` -> a `:method` header matcher; `headers` -> header
//!   matchers, in name order; regexes are RE2 (`safe_regex`).
//! * modify: `path.rewritePrefix` -> `prefix_rewrite`, `path.regex` ->
//!   `regex_rewrite`; `host.value` -> `host_rewrite_literal`,
//!   `host.fromPath` -> `host_rewrite_path_regex`; request and response
//!   headers to add (`append: true` appends to an existing value, else
//!   overwrites) and to remove.
//! * one cluster -> `cluster`, several -> `weighted_clusters`.
//!
//! What Envoy would refuse was refused earlier by [`super::routes::resolve`].
//! Pure: no I/O.

use envoy_types::pb::envoy::config::core::v3::{
    HeaderValue, HeaderValueOption, header_value_option,
};
use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, Route, RouteAction, RouteMatch, WeightedCluster, header_matcher, route,
    route_action, route_match, weighted_cluster,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    RegexMatchAndSubstitute, RegexMatcher, StringMatcher as EnvoyStringMatcher, string_matcher,
};
use envoy_types::pb::google::protobuf::UInt32Value;
use model::mesh_pb::traffic_route::http::r#match::StringMatcher;
use model::mesh_pb::traffic_route::http::r#match::string_matcher::MatcherType;
use model::mesh_pb::traffic_route::http::modify::{self, Headers, RegexReplace};
use model::mesh_pb::traffic_route::http::{Match, Modify};

use super::routes::{Destination, HttpRule, OutboundRoute};

/// The routes of an HTTP outbound: one per HTTP rule, then the catch-all.
pub fn outbound_routes(route: &OutboundRoute) -> Vec<Route> {
    route
        .http
        .iter()
        .map(rule_route)
        .chain([catch_all(&weights(&route.destinations))])
        .collect()
}

/// Every request (`prefix: /`) to `clusters` (name, weight).
pub fn catch_all(clusters: &[(&str, u32)]) -> Route {
    Route {
        r#match: Some(prefix_slash()),
        action: Some(route::Action::Route(forward(clusters))),
        ..Default::default()
    }
}

/// (cluster, weight) of each destination.
pub fn weights(destinations: &[Destination]) -> Vec<(&str, u32)> {
    destinations
        .iter()
        .map(|d| (d.cluster.as_str(), d.weight))
        .collect()
}

fn prefix_slash() -> RouteMatch {
    RouteMatch {
        path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_string())),
        ..Default::default()
    }
}

/// To the one cluster, or weighted between several.
fn forward(clusters: &[(&str, u32)]) -> RouteAction {
    let specifier = match clusters {
        [(cluster, _)] => route_action::ClusterSpecifier::Cluster(cluster.to_string()),
        _ => route_action::ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: clusters
                .iter()
                .map(|(name, weight)| weighted_cluster::ClusterWeight {
                    name: name.to_string(),
                    weight: Some(UInt32Value { value: *weight }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
    };
    RouteAction {
        cluster_specifier: Some(specifier),
        ..Default::default()
    }
}

fn rule_route(rule: &HttpRule) -> Route {
    let mut route = Route {
        r#match: Some(rule.matcher.as_ref().map_or_else(prefix_slash, route_match)),
        ..Default::default()
    };
    let mut action = forward(&weights(&rule.destinations));
    if let Some(modify) = &rule.modify {
        apply_modify(modify, &mut route, &mut action);
    }
    route.action = Some(route::Action::Route(action));
    route
}

fn route_match(m: &Match) -> RouteMatch {
    let path = match m.path.as_ref().and_then(|p| p.matcher_type.as_ref()) {
        Some(MatcherType::Prefix(p)) => route_match::PathSpecifier::Prefix(p.clone()),
        Some(MatcherType::Exact(p)) => route_match::PathSpecifier::Path(p.clone()),
        Some(MatcherType::Regex(r)) => route_match::PathSpecifier::SafeRegex(regex(r)),
        None => route_match::PathSpecifier::Prefix("/".to_string()),
    };
    let mut headers: Vec<HeaderMatcher> = Vec::new();
    if let Some(method) = &m.method {
        headers.extend(header_matcher(":method", method));
    }
    let mut named: Vec<_> = m.headers.iter().collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    headers.extend(
        named
            .into_iter()
            .filter_map(|(name, matcher)| header_matcher(name, matcher)),
    );
    RouteMatch {
        path_specifier: Some(path),
        headers,
        ..Default::default()
    }
}

/// `None` for a matcher without a pattern (it constrains nothing).
fn header_matcher(name: &str, matcher: &StringMatcher) -> Option<HeaderMatcher> {
    let pattern = match matcher.matcher_type.as_ref()? {
        MatcherType::Prefix(p) => string_matcher::MatchPattern::Prefix(p.clone()),
        MatcherType::Exact(e) => string_matcher::MatchPattern::Exact(e.clone()),
        MatcherType::Regex(r) => string_matcher::MatchPattern::SafeRegex(regex(r)),
    };
    Some(HeaderMatcher {
        name: name.to_string(),
        header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(
            EnvoyStringMatcher {
                match_pattern: Some(pattern),
                ..Default::default()
            },
        )),
        ..Default::default()
    })
}

/// An RE2 regex (Envoy's default engine).
fn regex(pattern: &str) -> RegexMatcher {
    RegexMatcher {
        regex: pattern.to_string(),
        ..Default::default()
    }
}

fn substitute(r: &RegexReplace) -> RegexMatchAndSubstitute {
    RegexMatchAndSubstitute {
        pattern: Some(regex(&r.pattern)),
        substitution: r.substitution.clone(),
    }
}

fn apply_modify(modify: &Modify, route: &mut Route, action: &mut RouteAction) {
    match modify.path.as_ref().and_then(|p| p.r#type.as_ref()) {
        Some(modify::path::Type::RewritePrefix(prefix)) => action.prefix_rewrite = prefix.clone(),
        Some(modify::path::Type::Regex(r)) => action.regex_rewrite = Some(substitute(r)),
        None => {}
    }
    match modify.host.as_ref().and_then(|h| h.r#type.as_ref()) {
        Some(modify::host::Type::Value(host)) => {
            action.host_rewrite_specifier = Some(
                route_action::HostRewriteSpecifier::HostRewriteLiteral(host.clone()),
            );
        }
        Some(modify::host::Type::FromPath(r)) => {
            action.host_rewrite_specifier = Some(
                route_action::HostRewriteSpecifier::HostRewritePathRegex(substitute(r)),
            );
        }
        None => {}
    }
    if let Some(headers) = &modify.request_headers {
        route.request_headers_to_add = to_add(headers);
        route.request_headers_to_remove = to_remove(headers);
    }
    if let Some(headers) = &modify.response_headers {
        route.response_headers_to_add = to_add(headers);
        route.response_headers_to_remove = to_remove(headers);
    }
}

fn to_add(headers: &Headers) -> Vec<HeaderValueOption> {
    headers
        .add
        .iter()
        .map(|add| {
            let action = if add.append {
                header_value_option::HeaderAppendAction::AppendIfExistsOrAdd
            } else {
                header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd
            };
            HeaderValueOption {
                header: Some(HeaderValue {
                    key: add.name.clone(),
                    value: add.value.clone(),
                    ..Default::default()
                }),
                append_action: action as i32,
                ..Default::default()
            }
        })
        .collect()
}

fn to_remove(headers: &Headers) -> Vec<String> {
    headers.remove.iter().map(|r| r.name.clone()).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use model::mesh_pb::traffic_route::http::{r#match, modify::headers};

    use super::*;

    fn destination(cluster: &str, weight: u32) -> Destination {
        Destination {
            cluster: cluster.to_string(),
            service: "backend".to_string(),
            tags: BTreeMap::new(),
            weight,
        }
    }

    fn matcher(t: MatcherType) -> StringMatcher {
        r#match::StringMatcher {
            matcher_type: Some(t),
        }
    }

    #[test]
    fn rules_come_first_then_the_catch_all() {
        let route = OutboundRoute {
            route: "r".into(),
            destinations: vec![destination("backend", 100)],
            http: vec![HttpRule {
                matcher: Some(Match {
                    method: Some(matcher(MatcherType::Exact("GET".into()))),
                    path: Some(matcher(MatcherType::Regex("^/api/v[0-9]+/".into()))),
                    headers: [
                        ("x-b".to_string(), matcher(MatcherType::Prefix("b".into()))),
                        ("x-a".to_string(), matcher(MatcherType::Exact("a".into()))),
                    ]
                    .into(),
                }),
                modify: Some(Modify {
                    host: Some(modify::Host {
                        r#type: Some(modify::host::Type::Value("api.internal".into())),
                    }),
                    request_headers: Some(Headers {
                        add: vec![headers::Add {
                            name: "x-canary".into(),
                            value: "1".into(),
                            append: true,
                        }],
                        remove: vec![headers::Remove {
                            name: "x-debug".into(),
                        }],
                    }),
                    ..Default::default()
                }),
                destinations: vec![destination("backend-v1", 90), destination("backend-v2", 10)],
            }],
            load_balancer: Default::default(),
        };
        let routes = outbound_routes(&route);
        assert_eq!(routes.len(), 2);
        let first = routes[0].r#match.as_ref().unwrap();
        assert!(matches!(
            &first.path_specifier,
            Some(route_match::PathSpecifier::SafeRegex(r)) if r.regex == "^/api/v[0-9]+/"
        ));
        let names: Vec<_> = first.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, [":method", "x-a", "x-b"]);
        let Some(route::Action::Route(action)) = &routes[0].action else {
            panic!("no route action");
        };
        assert!(matches!(
            &action.cluster_specifier,
            Some(route_action::ClusterSpecifier::WeightedClusters(w)) if w.clusters.len() == 2
        ));
        assert_eq!(
            action.host_rewrite_specifier,
            Some(route_action::HostRewriteSpecifier::HostRewriteLiteral(
                "api.internal".into()
            ))
        );
        assert_eq!(routes[0].request_headers_to_remove, ["x-debug"]);
        assert_eq!(
            routes[0].request_headers_to_add[0].append_action,
            header_value_option::HeaderAppendAction::AppendIfExistsOrAdd as i32
        );
        assert_eq!(routes[1], catch_all(&[("backend", 100)]));
    }
}
