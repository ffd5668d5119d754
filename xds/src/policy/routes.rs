//! TrafficRoute -> what an outbound forwards to (reference: `kuma-api.md`
//! §5.2, §5.4): its clusters with their weights, and their load balancer.
//!
//! * `conf.split[]`: one destination per entry with a weight above 0 (0 and
//!   absent weights are dropped); entries naming the same tag subset are one
//!   destination whose weight is their sum, in the order of first mention.
//! * `conf.destination`: one destination (weight 100).
//! * A destination is a tag subset of a service: `kuma.io/service: '*'` (the
//!   `route-all` route) stands for the outbound's own service, and so does a
//!   missing `kuma.io/service`. Its cluster is `{service}` when the subset has
//!   no other tag, else `{service}-{hash}` ([`names::split_cluster`]); its
//!   endpoints are the instances of the service whose tags match the subset
//!   (`*` = the tag is present).
//! * `conf.http[]`: [`HttpRule`]s, each a request match, optional
//!   modifications and its own destinations (as above), tried in order before
//!   the route's `split`/`destination` on HTTP outbounds (made into Envoy
//!   routes by [`super::http`]); TCP outbounds use `split`/`destination` only.
//! * `conf.loadBalancer` -> [`LoadBalancer`], set on every cluster of the
//!   route (round robin when absent).
//!
//! A route that leaves nothing to forward to, or that Envoy would refuse (a
//! load balancer or an HTTP rule it rejects, which would make it refuse the
//! proxy's whole cluster or listener update), is a [`RouteError`]: the
//! outbound is skipped instead. Pure: no I/O.

use std::collections::BTreeMap;
use std::fmt;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    LbConfig, LbPolicy, LeastRequestLbConfig, RingHashLbConfig, ring_hash_lb_config,
};
use envoy_types::pb::google::protobuf::{UInt32Value, UInt64Value};
use model::labels::tags;
use model::mesh_pb::TrafficRoute;
use model::mesh_pb::traffic_route::Split;
use model::mesh_pb::traffic_route::http::r#match::StringMatcher;
use model::mesh_pb::traffic_route::http::r#match::string_matcher::MatcherType;
use model::mesh_pb::traffic_route::http::modify::{self, Headers};
use model::mesh_pb::traffic_route::http::{Match, Modify};
use model::mesh_pb::traffic_route::load_balancer::LbType;
use model::selector::WILDCARD;

use super::Selected;
use crate::names;

/// Envoy's bound on `minimum_ring_size` and `maximum_ring_size` (8M).
pub const MAX_RING_SIZE: u64 = 8 * 1024 * 1024;

/// Weight of a `conf.destination` (alone, so any positive value would do).
const SINGLE_DESTINATION_WEIGHT: u32 = 100;

/// One cluster an outbound forwards to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// `{service}` or `{service}-{hash}`.
    pub cluster: String,
    /// The service whose instances are the endpoints.
    pub service: String,
    /// The subset: every tag the endpoints must carry, `kuma.io/service`
    /// included (resolved, never `*`).
    pub tags: BTreeMap<String, String>,
    /// Share of the traffic, above 0.
    pub weight: u32,
}

/// Cluster load balancing (`conf.loadBalancer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoadBalancer {
    #[default]
    RoundRobin,
    /// `choice_count`: `None` leaves Envoy's default (2).
    LeastRequest {
        choice_count: Option<u32>,
    },
    RingHash {
        murmur: bool,
        min_ring_size: Option<u64>,
        max_ring_size: Option<u64>,
    },
    Random,
    Maglev,
}

impl LoadBalancer {
    /// Sets `lb_policy` and its config on `cluster`.
    pub fn apply(&self, cluster: &mut Cluster) {
        let (policy, config) = match *self {
            LoadBalancer::RoundRobin => (LbPolicy::RoundRobin, None),
            LoadBalancer::LeastRequest { choice_count } => (
                LbPolicy::LeastRequest,
                choice_count.map(|value| {
                    LbConfig::LeastRequestLbConfig(LeastRequestLbConfig {
                        choice_count: Some(UInt32Value { value }),
                        ..Default::default()
                    })
                }),
            ),
            LoadBalancer::RingHash {
                murmur,
                min_ring_size,
                max_ring_size,
            } => {
                let hash_function = if murmur {
                    ring_hash_lb_config::HashFunction::MurmurHash2
                } else {
                    ring_hash_lb_config::HashFunction::XxHash
                };
                let config = RingHashLbConfig {
                    minimum_ring_size: min_ring_size.map(|value| UInt64Value { value }),
                    maximum_ring_size: max_ring_size.map(|value| UInt64Value { value }),
                    hash_function: hash_function as i32,
                };
                (LbPolicy::RingHash, Some(LbConfig::RingHashLbConfig(config)))
            }
            LoadBalancer::Random => (LbPolicy::Random, None),
            LoadBalancer::Maglev => (LbPolicy::Maglev, None),
        };
        cluster.lb_policy = policy as i32;
        cluster.lb_config = config;
    }
}

/// What a TrafficRoute makes of one outbound.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundRoute {
    /// The TrafficRoute's name.
    pub route: String,
    /// At least one, each cluster once: where the traffic no HTTP rule
    /// matches goes (all of it on TCP).
    pub destinations: Vec<Destination>,
    /// `conf.http[]`, in order.
    pub http: Vec<HttpRule>,
    pub load_balancer: LoadBalancer,
}

impl OutboundRoute {
    /// Every destination: the HTTP rules' first, then the route's (a
    /// cluster may appear more than once).
    pub fn all_destinations(&self) -> impl Iterator<Item = &Destination> {
        self.http
            .iter()
            .flat_map(|rule| &rule.destinations)
            .chain(&self.destinations)
    }
}

/// One `conf.http[]` entry of a TrafficRoute.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRule {
    /// Which requests (all of them when absent).
    pub matcher: Option<Match>,
    pub modify: Option<Modify>,
    /// At least one, each cluster once.
    pub destinations: Vec<Destination>,
}

/// Why a selected TrafficRoute cannot be applied to an outbound; names the
/// route and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("TrafficRoute {route}: conf: no destination with a weight above 0")]
    NoDestination { route: String },
    #[error(
        "TrafficRoute {route}: conf.loadBalancer.ringHash.hashFunction: {value:?} is neither XX_HASH nor MURMUR_HASH_2"
    )]
    HashFunction { route: String, value: String },
    #[error(
        "TrafficRoute {route}: conf.loadBalancer.ringHash.{field}: {value} is above {MAX_RING_SIZE}"
    )]
    RingSizeTooLarge {
        route: String,
        field: &'static str,
        value: u64,
    },
    #[error(
        "TrafficRoute {route}: conf.loadBalancer.ringHash: minRingSize {min} is above maxRingSize {max}"
    )]
    RingSizes { route: String, min: u64, max: u64 },
    #[error("TrafficRoute {route}: {field}: {reason}")]
    Http {
        route: String,
        field: String,
        reason: String,
    },
}

/// The destinations and load balancer `route` gives the outbound to `service`.
pub fn resolve(
    route: Selected<'_, TrafficRoute>,
    service: &str,
) -> Result<OutboundRoute, RouteError> {
    let name = route.name().to_string();
    let conf = route.spec.conf.clone().unwrap_or_default();
    let default = destinations(&conf.split, &conf.destination, service);
    if default.is_empty() {
        return Err(RouteError::NoDestination { route: name });
    }
    let mut http = Vec::new();
    for (index, entry) in conf.http.into_iter().enumerate() {
        let field = format!("conf.http[{index}]");
        let destinations = destinations(&entry.split, &entry.destination, service);
        if destinations.is_empty() {
            return Err(http_error(
                &name,
                field,
                "no destination with a weight above 0",
            ));
        }
        check_http_rule(&name, &field, entry.r#match.as_ref(), entry.modify.as_ref())?;
        http.push(HttpRule {
            matcher: entry.r#match,
            modify: entry.modify,
            destinations,
        });
    }
    let load_balancer = load_balancer(&name, conf.load_balancer.and_then(|lb| lb.lb_type))?;
    Ok(OutboundRoute {
        route: name,
        destinations: default,
        http,
        load_balancer,
    })
}

/// The destinations of `split` (entries of weight 0 dropped, equal subsets
/// merged), or else of `destination`; empty when neither gives one.
fn destinations(
    split: &[Split],
    destination: &std::collections::HashMap<String, String>,
    service: &str,
) -> Vec<Destination> {
    let entries: Vec<(&std::collections::HashMap<String, String>, u32)> = if split.is_empty() {
        if destination.is_empty() {
            Vec::new()
        } else {
            vec![(destination, SINGLE_DESTINATION_WEIGHT)]
        }
    } else {
        split
            .iter()
            .map(|s| (&s.destination, s.weight.as_ref().map_or(0, |w| w.value)))
            .collect()
    };
    let mut destinations: Vec<Destination> = Vec::new();
    for (selector, weight) in entries {
        if weight == 0 {
            continue;
        }
        let mut subset: BTreeMap<String, String> = selector
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let target = match subset.get(tags::SERVICE) {
            Some(s) if s != WILDCARD => s.clone(),
            _ => service.to_string(),
        };
        subset.insert(tags::SERVICE.to_string(), target.clone());
        let cluster = names::split_cluster(&target, &subset);
        match destinations.iter_mut().find(|d| d.cluster == cluster) {
            Some(existing) => existing.weight = existing.weight.saturating_add(weight),
            None => destinations.push(Destination {
                cluster,
                service: target,
                tags: subset,
                weight,
            }),
        }
    }
    destinations
}

fn http_error(route: &str, field: String, reason: impl Into<String>) -> RouteError {
    RouteError::Http {
        route: route.to_string(),
        field,
        reason: reason.into(),
    }
}

/// Refuses what Envoy would refuse in an HTTP rule: a regex that does not
/// compile (checked with the `regex` crate, whose syntax RE2's matches for
/// the features both have), a prefix rewrite after a regex path match, an
/// empty header name, a pseudo-header (`:path`, ...) or `host` to add or
/// remove, NUL, CR or LF in a header name or value, a host or a prefix.
fn check_http_rule(
    route: &str,
    field: &str,
    matcher: Option<&Match>,
    modify: Option<&Modify>,
) -> Result<(), RouteError> {
    let check_regex = |field: String, pattern: &str| match regex::Regex::new(pattern) {
        Ok(_) => Ok(()),
        Err(e) => Err(http_error(
            route,
            field,
            format!("{pattern:?} is not a valid regex: {e}"),
        )),
    };
    // Envoy's header name and value rule: no NUL, CR or LF.
    let check_text = |field: String, what: &str, text: &str| {
        if text.contains(['\0', '\r', '\n']) {
            Err(http_error(
                route,
                field,
                format!("{what} {text:?} contains NUL, CR or LF"),
            ))
        } else {
            Ok(())
        }
    };
    let check_matcher = |field: String, matcher: &StringMatcher| match &matcher.matcher_type {
        Some(MatcherType::Regex(pattern)) => check_regex(format!("{field}.regex"), pattern),
        Some(MatcherType::Exact(text) | MatcherType::Prefix(text)) => {
            check_text(field, "value", text)
        }
        None => Ok(()),
    };
    let mut path_is_regex = false;
    if let Some(m) = matcher {
        if let Some(method) = &m.method {
            check_matcher(format!("{field}.match.method"), method)?;
        }
        if let Some(path) = &m.path {
            path_is_regex = matches!(path.matcher_type, Some(MatcherType::Regex(_)));
            if let Some(MatcherType::Regex(pattern)) = &path.matcher_type {
                check_regex(format!("{field}.match.path.regex"), pattern)?;
            }
        }
        for (name, header) in &m.headers {
            let at = format!("{field}.match.headers[{name:?}]");
            if name.is_empty() {
                return Err(http_error(route, at, "a header name cannot be empty"));
            }
            check_text(at.clone(), "header name", name)?;
            check_matcher(at, header)?;
        }
    }
    let Some(modify) = modify else {
        return Ok(());
    };
    match modify.path.as_ref().and_then(|p| p.r#type.as_ref()) {
        Some(modify::path::Type::RewritePrefix(prefix)) => {
            let at = format!("{field}.modify.path.rewritePrefix");
            if path_is_regex {
                return Err(http_error(route, at, "cannot follow a regex path match"));
            }
            check_text(at, "prefix", prefix)?;
        }
        Some(modify::path::Type::Regex(r)) => {
            check_regex(format!("{field}.modify.path.regex.pattern"), &r.pattern)?;
        }
        None => {}
    }
    match modify.host.as_ref().and_then(|h| h.r#type.as_ref()) {
        Some(modify::host::Type::Value(host)) => {
            check_text(format!("{field}.modify.host.value"), "host", host)?;
        }
        Some(modify::host::Type::FromPath(r)) => {
            check_regex(format!("{field}.modify.host.fromPath.pattern"), &r.pattern)?;
        }
        None => {}
    }
    let check_headers = |which: &str, headers: Option<&Headers>| {
        let Some(headers) = headers else {
            return Ok(());
        };
        let names = headers
            .add
            .iter()
            .map(|a| ("add", a.name.as_str(), a.value.as_str()))
            .chain(
                headers
                    .remove
                    .iter()
                    .map(|r| ("remove", r.name.as_str(), "")),
            );
        for (op, name, value) in names {
            let at = format!("{field}.modify.{which}.{op}");
            let refused = name.is_empty()
                || name.starts_with(':')
                || (which == "requestHeaders" && name.eq_ignore_ascii_case("host"));
            if refused {
                return Err(http_error(
                    route,
                    at,
                    format!("header {name:?} cannot be modified"),
                ));
            }
            check_text(at.clone(), "header name", name)?;
            check_text(at, "header value", value)?;
        }
        Ok(())
    };
    check_headers("requestHeaders", modify.request_headers.as_ref())?;
    check_headers("responseHeaders", modify.response_headers.as_ref())
}

fn load_balancer(route: &str, lb: Option<LbType>) -> Result<LoadBalancer, RouteError> {
    Ok(match lb {
        None | Some(LbType::RoundRobin(_)) => LoadBalancer::RoundRobin,
        Some(LbType::LeastRequest(c)) => LoadBalancer::LeastRequest {
            // Envoy refuses a choice count below 2; 0 and 1 mean its default.
            choice_count: (c.choice_count >= 2).then_some(c.choice_count),
        },
        Some(LbType::RingHash(r)) => {
            let murmur = match r.hash_function.as_str() {
                "" | "XX_HASH" => false,
                "MURMUR_HASH_2" => true,
                other => {
                    return Err(RouteError::HashFunction {
                        route: route.to_string(),
                        value: other.to_string(),
                    });
                }
            };
            let size = |field: &'static str, value: u64| match value {
                0 => Ok(None),
                v if v > MAX_RING_SIZE => Err(RouteError::RingSizeTooLarge {
                    route: route.to_string(),
                    field,
                    value: v,
                }),
                v => Ok(Some(v)),
            };
            let min_ring_size = size("minRingSize", r.min_ring_size)?;
            let max_ring_size = size("maxRingSize", r.max_ring_size)?;
            // Envoy's defaults: 1024 and 8M.
            let (min, max) = (
                min_ring_size.unwrap_or(1024),
                max_ring_size.unwrap_or(MAX_RING_SIZE),
            );
            if min > max {
                return Err(RouteError::RingSizes {
                    route: route.to_string(),
                    min,
                    max,
                });
            }
            LoadBalancer::RingHash {
                murmur,
                min_ring_size,
                max_ring_size,
            }
        }
        Some(LbType::Random(_)) => LoadBalancer::Random,
        Some(LbType::Maglev(_)) => LoadBalancer::Maglev,
    })
}

/// Whether an instance with `instance_tags` belongs to the subset `subset`.
pub fn in_subset(
    subset: &BTreeMap<String, String>,
    instance_tags: &BTreeMap<String, String>,
) -> bool {
    subset.iter().all(|(key, wanted)| {
        instance_tags
            .get(key)
            .is_some_and(|value| wanted == WILDCARD || value == wanted)
    })
}

/// An outbound left out of the generated config, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedOutbound {
    /// The Dataplane's name.
    pub dataplane: String,
    /// `networking.outbound[{index}]`.
    pub field: String,
    pub service: String,
    /// `None`: no TrafficRoute selects it.
    pub error: Option<RouteError>,
}

impl fmt::Display for SkippedOutbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "dataplane {}: {}: outbound to {:?} skipped: ",
            self.dataplane, self.field, self.service
        )?;
        match &self.error {
            None => write!(f, "no TrafficRoute selects it"),
            Some(e) => write!(f, "{e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use model::mesh_pb::traffic_route::{Conf, LoadBalancer as LbProto, Split, load_balancer};
    use model::{Resource, Spec};

    use super::*;

    fn route(conf: Conf) -> Resource {
        Resource::new(
            "default",
            "r",
            Spec::TrafficRoute(TrafficRoute {
                conf: Some(conf),
                ..Default::default()
            }),
        )
    }

    fn resolve_conf(conf: Conf, service: &str) -> Result<OutboundRoute, RouteError> {
        let resource = route(conf);
        let Spec::TrafficRoute(spec) = &resource.spec else {
            unreachable!()
        };
        resolve(
            Selected {
                resource: &resource,
                spec,
            },
            service,
        )
    }

    fn map(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn split(weight: u32, pairs: &[(&str, &str)]) -> Split {
        Split {
            weight: Some(UInt32Value { value: weight }),
            destination: map(pairs),
        }
    }

    #[test]
    fn route_all_resolves_to_the_outbound_service() {
        let out = resolve_conf(
            Conf {
                destination: map(&[("kuma.io/service", "*")]),
                ..Default::default()
            },
            "backend",
        )
        .unwrap();
        assert_eq!(out.route, "r");
        assert_eq!(out.destinations.len(), 1);
        assert_eq!(out.destinations[0].cluster, "backend");
        assert_eq!(out.destinations[0].service, "backend");
        assert_eq!(out.load_balancer, LoadBalancer::RoundRobin);
    }

    #[test]
    fn splits_drop_zero_weights_and_merge_equal_subsets() {
        let out = resolve_conf(
            Conf {
                split: vec![
                    split(80, &[("kuma.io/service", "backend"), ("version", "v1")]),
                    split(0, &[("kuma.io/service", "backend"), ("version", "v3")]),
                    split(10, &[("kuma.io/service", "backend"), ("version", "v2")]),
                    split(10, &[("version", "v2"), ("kuma.io/service", "backend")]),
                    split(5, &[("kuma.io/service", "backend-next")]),
                ],
                ..Default::default()
            },
            "backend",
        )
        .unwrap();
        let got: Vec<_> = out
            .destinations
            .iter()
            .map(|d| (d.cluster.as_str(), d.service.as_str(), d.weight))
            .collect();
        assert_eq!(
            got,
            [
                ("backend-154693772bc47249", "backend", 80),
                ("backend-5b73b3f4adf20020", "backend", 20),
                ("backend-next", "backend-next", 5),
            ]
        );
    }

    #[test]
    fn nothing_to_forward_to_is_an_error() {
        let err = resolve_conf(
            Conf {
                split: vec![split(0, &[("kuma.io/service", "backend")])],
                ..Default::default()
            },
            "backend",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "TrafficRoute r: conf: no destination with a weight above 0"
        );
        assert!(resolve_conf(Conf::default(), "backend").is_err());
    }

    fn lb(lb_type: load_balancer::LbType) -> Result<LoadBalancer, RouteError> {
        resolve_conf(
            Conf {
                destination: map(&[("kuma.io/service", "*")]),
                load_balancer: Some(LbProto {
                    lb_type: Some(lb_type),
                }),
                ..Default::default()
            },
            "backend",
        )
        .map(|r| r.load_balancer)
    }

    #[test]
    fn load_balancers_map_to_envoy_policies() {
        use load_balancer::{LbType, LeastRequest, Maglev, Random, RingHash, RoundRobin};
        assert_eq!(
            lb(LbType::RoundRobin(RoundRobin {})).unwrap(),
            LoadBalancer::RoundRobin
        );
        assert_eq!(
            lb(LbType::LeastRequest(LeastRequest { choice_count: 4 })).unwrap(),
            LoadBalancer::LeastRequest {
                choice_count: Some(4)
            }
        );
        assert_eq!(
            lb(LbType::LeastRequest(LeastRequest { choice_count: 1 })).unwrap(),
            LoadBalancer::LeastRequest { choice_count: None }
        );
        assert_eq!(
            lb(LbType::RingHash(RingHash {
                hash_function: "MURMUR_HASH_2".into(),
                min_ring_size: 64,
                max_ring_size: 0,
            }))
            .unwrap(),
            LoadBalancer::RingHash {
                murmur: true,
                min_ring_size: Some(64),
                max_ring_size: None
            }
        );
        assert_eq!(lb(LbType::Random(Random {})).unwrap(), LoadBalancer::Random);
        assert_eq!(lb(LbType::Maglev(Maglev {})).unwrap(), LoadBalancer::Maglev);

        let mut cluster = Cluster::default();
        LoadBalancer::RingHash {
            murmur: true,
            min_ring_size: Some(64),
            max_ring_size: None,
        }
        .apply(&mut cluster);
        assert_eq!(cluster.lb_policy, LbPolicy::RingHash as i32);
        let Some(LbConfig::RingHashLbConfig(config)) = &cluster.lb_config else {
            panic!("no ring hash config");
        };
        assert_eq!(
            config.hash_function,
            ring_hash_lb_config::HashFunction::MurmurHash2 as i32
        );
        assert_eq!(config.minimum_ring_size, Some(UInt64Value { value: 64 }));
        assert_eq!(config.maximum_ring_size, None);
    }

    #[test]
    fn ring_hash_settings_envoy_would_refuse_are_errors() {
        use load_balancer::{LbType, RingHash};
        let ring = |hash: &str, min, max| {
            lb(LbType::RingHash(RingHash {
                hash_function: hash.into(),
                min_ring_size: min,
                max_ring_size: max,
            }))
            .unwrap_err()
            .to_string()
        };
        assert_eq!(
            ring("SHA1", 0, 0),
            "TrafficRoute r: conf.loadBalancer.ringHash.hashFunction: \"SHA1\" is neither XX_HASH nor MURMUR_HASH_2"
        );
        assert_eq!(
            ring("", 0, MAX_RING_SIZE + 1),
            "TrafficRoute r: conf.loadBalancer.ringHash.maxRingSize: 8388609 is above 8388608"
        );
        assert_eq!(
            ring("", 2048, 1024),
            "TrafficRoute r: conf.loadBalancer.ringHash: minRingSize 2048 is above maxRingSize 1024"
        );
        assert_eq!(
            ring("", 0, 512),
            "TrafficRoute r: conf.loadBalancer.ringHash: minRingSize 1024 is above maxRingSize 512",
            "Envoy's default minimum counts"
        );
    }

    #[test]
    fn http_rules_keep_their_order_and_destinations() {
        use model::mesh_pb::traffic_route::Http;
        let out = resolve_conf(
            Conf {
                destination: map(&[("kuma.io/service", "*")]),
                http: vec![
                    Http {
                        split: vec![split(1, &[("kuma.io/service", "*"), ("version", "v2")])],
                        ..Default::default()
                    },
                    Http {
                        destination: map(&[("kuma.io/service", "legacy")]),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            },
            "backend",
        )
        .unwrap();
        let clusters: Vec<_> = out.all_destinations().map(|d| d.cluster.as_str()).collect();
        assert_eq!(clusters, ["backend-5b73b3f4adf20020", "legacy", "backend"]);
        assert_eq!(out.http.len(), 2);
    }

    #[test]
    fn http_rules_envoy_would_refuse_are_errors() {
        use model::mesh_pb::traffic_route::Http;
        use model::mesh_pb::traffic_route::http::r#match::{StringMatcher, string_matcher};
        use model::mesh_pb::traffic_route::http::modify::{Headers, Path, headers, path};
        use model::mesh_pb::traffic_route::http::{Match, Modify};
        let with = |r#match: Option<Match>, modify: Option<Modify>| {
            resolve_conf(
                Conf {
                    destination: map(&[("kuma.io/service", "*")]),
                    http: vec![
                        Http {
                            destination: map(&[("kuma.io/service", "*")]),
                            ..Default::default()
                        },
                        Http {
                            r#match,
                            modify,
                            destination: map(&[("kuma.io/service", "*")]),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                },
                "backend",
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
        };
        let regex = |r: &str| StringMatcher {
            matcher_type: Some(string_matcher::MatcherType::Regex(r.into())),
        };
        assert_eq!(
            with(
                Some(Match {
                    path: Some(regex("^/(unclosed")),
                    ..Default::default()
                }),
                None
            )
            .unwrap_err()
            .lines()
            .next()
            .unwrap(),
            "TrafficRoute r: conf.http[1].match.path.regex: \"^/(unclosed\" is not a valid regex: regex parse error:"
        );
        let rewrite = Some(Modify {
            path: Some(Path {
                r#type: Some(path::Type::RewritePrefix("/v2".into())),
            }),
            ..Default::default()
        });
        assert_eq!(
            with(
                Some(Match {
                    path: Some(regex("^/v1")),
                    ..Default::default()
                }),
                rewrite.clone()
            ),
            Err(
                "TrafficRoute r: conf.http[1].modify.path.rewritePrefix: cannot follow a regex path match"
                    .into()
            )
        );
        assert_eq!(with(None, rewrite), Ok(()));
        let add = |name: &str| {
            Some(Modify {
                request_headers: Some(Headers {
                    add: vec![headers::Add {
                        name: name.into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            })
        };
        assert_eq!(
            with(None, add("Host")),
            Err(
                "TrafficRoute r: conf.http[1].modify.requestHeaders.add: header \"Host\" cannot be modified"
                    .into()
            )
        );
        assert!(with(None, add(":path")).is_err());
        let mut injected = add("x-ok");
        if let Some(headers) = injected.as_mut().and_then(|m| m.request_headers.as_mut()) {
            headers.add[0].value = "a\r\nx-evil: 1".into();
        }
        assert_eq!(
            with(None, injected),
            Err(
                "TrafficRoute r: conf.http[1].modify.requestHeaders.add: header value \"a\\r\\nx-evil: 1\" contains NUL, CR or LF"
                    .into()
            )
        );
        assert_eq!(with(None, add("x-ok")), Ok(()));
        let none = resolve_conf(
            Conf {
                destination: map(&[("kuma.io/service", "*")]),
                http: vec![Http {
                    split: vec![split(0, &[("kuma.io/service", "*")])],
                    ..Default::default()
                }],
                ..Default::default()
            },
            "backend",
        );
        assert_eq!(
            none.unwrap_err().to_string(),
            "TrafficRoute r: conf.http[0]: no destination with a weight above 0"
        );
    }

    #[test]
    fn subsets_match_like_selectors() {
        let subset: BTreeMap<String, String> = [
            ("kuma.io/service".to_string(), "backend".to_string()),
            ("version".to_string(), "*".to_string()),
        ]
        .into();
        let with = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(in_subset(
            &subset,
            &with(&[("kuma.io/service", "backend"), ("version", "v1")])
        ));
        assert!(!in_subset(
            &subset,
            &with(&[("kuma.io/service", "backend")])
        ));
        assert!(!in_subset(
            &subset,
            &with(&[("kuma.io/service", "web"), ("version", "v1")])
        ));
    }
}
