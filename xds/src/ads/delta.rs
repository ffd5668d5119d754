//! The state of one delta ADS stream (`DeltaAggregatedResources`), without
//! I/O: per xDS type, what Envoy subscribed to, which version of each
//! resource it has, and the last nonce sent. It classifies each request
//! (initial, ACK, NACK, stale) and decides which resources and removals a
//! snapshot calls for.
//!
//! Rules (reference: `rust-dependencies.md` §4.3, §4.4, `kuma-api.md` §5.1):
//! * the first request of a type subscribes to it: an empty
//!   `resource_names_subscribe` is Envoy's legacy wildcard, `"*"` the
//!   explicit one, other names subscribe by name (EDS, secrets);
//!   `resource_names_unsubscribe` drops names (or `"*"` the wildcard);
//!   subscription changes apply whatever the nonce;
//! * `initial_resource_versions` of a type's first request is what a
//!   reconnecting Envoy already has: a resource at that version is not sent
//!   again;
//! * a resource's version is the content hash of that resource alone; a
//!   subscribed resource is sent when Envoy does not have its version, and
//!   named in `removed_resources` when Envoy has it but the snapshot no
//!   longer does;
//! * a request whose `response_nonce` is the last one sent for its type is
//!   an ACK, or a NACK when it carries `error_detail`; what was sent counts
//!   as held by Envoy either way, so a NACKed resource is resent only when it
//!   changes; any other non-empty nonce is stale;
//! * the first answer of a wildcard type goes out even when empty (Envoy
//!   waits for it to finish initialising), unless Envoy already holds
//!   resources of the type (a reconnect: nothing new, nothing sent);
//! * when clusters go out, the load assignments of those clusters go out
//!   too (an updated cluster warms until it gets its endpoints);
//! * responses go out in Envoy's order: CDS, EDS, LDS, then the rest.
//!
//! Each response's `system_version_info` is the type's version (the content
//! hash of all its resources), which ACK/NACK events report.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource,
};

use super::cache::Snapshot;
use super::state::{RequestKind, type_order};
use crate::generate::{CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL};

/// The explicit wildcard subscription.
const WILDCARD: &str = "*";

/// The per-type state of a delta stream.
#[derive(Debug, Clone, Default)]
struct TypeState {
    /// Subscribed to every resource of the type.
    wildcard: bool,
    /// Resources subscribed by name.
    names: BTreeSet<String>,
    /// Per resource name, the version Envoy has (said or sent).
    known: BTreeMap<String, String>,
    /// Whether a response of this type went out on the stream.
    answered: bool,
    /// Nonce and type version of the last response.
    nonce: String,
    sent_version: String,
}

impl TypeState {
    fn subscribed(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }
}

/// One delta stream's state machine.
#[derive(Debug, Default)]
pub struct DeltaState {
    types: BTreeMap<String, TypeState>,
    next_nonce: u64,
}

impl DeltaState {
    /// A fresh stream: nothing subscribed, nothing sent.
    pub fn new() -> DeltaState {
        DeltaState::default()
    }

    /// Records `request` (subscription changes, versions held) and says what
    /// it was.
    pub fn on_request(&mut self, request: &DeltaDiscoveryRequest) -> RequestKind {
        let first = !self.types.contains_key(&request.type_url);
        let state = self.types.entry(request.type_url.clone()).or_default();
        if first {
            state.wildcard = request.resource_names_subscribe.is_empty();
            state.known.extend(
                request
                    .initial_resource_versions
                    .iter()
                    .map(|(name, version)| (name.clone(), version.clone())),
            );
        }
        for name in &request.resource_names_subscribe {
            if name == WILDCARD {
                state.wildcard = true;
            } else {
                state.names.insert(name.clone());
            }
        }
        for name in &request.resource_names_unsubscribe {
            if name == WILDCARD {
                state.wildcard = false;
            } else {
                state.names.remove(name);
            }
        }
        // Envoy forgets what it no longer subscribes to: send it again if
        // it subscribes again.
        let forgotten: Vec<String> = state
            .known
            .keys()
            .filter(|name| !state.subscribed(name))
            .cloned()
            .collect();
        for name in forgotten {
            state.known.remove(&name);
        }
        let nonce = request.response_nonce.as_str();
        if nonce.is_empty() {
            return RequestKind::Initial;
        }
        if nonce != state.nonce {
            return RequestKind::Stale;
        }
        match &request.error_detail {
            Some(status) => RequestKind::Nack {
                version: state.sent_version.clone(),
                accepted: String::new(),
                reason: status.message.clone(),
            },
            None => RequestKind::Ack {
                version: state.sent_version.clone(),
            },
        }
    }

    /// The responses `snapshot` calls for, in Envoy's order, recorded as
    /// sent (and so as held by Envoy).
    pub fn responses(&mut self, snapshot: Option<&Snapshot>) -> Vec<DeltaDiscoveryResponse> {
        let Some(snapshot) = snapshot else {
            return Vec::new();
        };
        let mut type_urls: Vec<String> = self.types.keys().cloned().collect();
        type_urls.sort_by_key(|t| type_order(t));
        let mut responses = Vec::new();
        let mut clusters_sent: BTreeSet<String> = BTreeSet::new();
        for type_url in type_urls {
            let Some(state) = self.types.get_mut(&type_url) else {
                continue;
            };
            let current = snapshot.get(&type_url);
            let mut resources = Vec::new();
            let mut in_snapshot = BTreeSet::new();
            for r in current.map(|c| c.resources.as_slice()).unwrap_or_default() {
                in_snapshot.insert(r.name.as_str());
                if !state.subscribed(&r.name) {
                    continue;
                }
                let version = current
                    .and_then(|c| c.resource_version(&r.name))
                    .unwrap_or_default();
                let forced = type_url == ENDPOINT_TYPE_URL && clusters_sent.contains(&r.name);
                if !forced && state.known.get(&r.name).map(String::as_str) == Some(version) {
                    continue;
                }
                resources.push(Resource {
                    name: r.name.clone(),
                    version: version.to_owned(),
                    resource: Some(r.resource.clone()),
                    ..Default::default()
                });
            }
            let removed: Vec<String> = state
                .known
                .keys()
                .filter(|name| !in_snapshot.contains(name.as_str()))
                .cloned()
                .collect();
            let first_wildcard = state.wildcard && !state.answered && state.known.is_empty();
            if resources.is_empty() && removed.is_empty() && !first_wildcard {
                continue;
            }
            for r in &resources {
                state.known.insert(r.name.clone(), r.version.clone());
            }
            for name in &removed {
                state.known.remove(name);
            }
            if type_url == CLUSTER_TYPE_URL {
                clusters_sent.extend(resources.iter().map(|r| r.name.clone()));
            }
            self.next_nonce += 1;
            state.nonce = self.next_nonce.to_string();
            state.sent_version = current.map(|c| c.version.clone()).unwrap_or_default();
            state.answered = true;
            responses.push(DeltaDiscoveryResponse {
                system_version_info: state.sent_version.clone(),
                resources,
                type_url,
                removed_resources: removed,
                nonce: state.nonce.clone(),
                ..Default::default()
            });
        }
        responses
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use envoy_types::pb::google::rpc::Status;

    use super::*;
    use crate::ads::test_util::snapshot;
    use crate::generate::LISTENER_TYPE_URL;

    fn subscribe(type_url: &str, names: &[&str]) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            type_url: type_url.to_owned(),
            resource_names_subscribe: names.iter().map(|n| (*n).to_owned()).collect(),
            ..Default::default()
        }
    }

    fn reply(type_url: &str, nonce: &str) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            type_url: type_url.to_owned(),
            response_nonce: nonce.to_owned(),
            ..Default::default()
        }
    }

    fn names(response: &DeltaDiscoveryResponse) -> Vec<&str> {
        response.resources.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn wildcard_and_named_subscriptions_in_order() {
        let mut state = DeltaState::new();
        assert_eq!(
            state.on_request(&subscribe(LISTENER_TYPE_URL, &[])),
            RequestKind::Initial
        );
        state.on_request(&subscribe(CLUSTER_TYPE_URL, &["*"]));
        state.on_request(&subscribe(ENDPOINT_TYPE_URL, &["a"]));
        assert!(state.responses(None).is_empty());
        let snap = snapshot(&["a", "b"], &[]);
        let sent = state.responses(Some(&snap));
        let types: Vec<_> = sent.iter().map(|r| r.type_url.as_str()).collect();
        assert_eq!(
            types,
            [CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL, LISTENER_TYPE_URL]
        );
        assert_eq!(names(&sent[0]), ["a", "b"]);
        assert_eq!(names(&sent[1]), ["a"], "EDS only what was named");
        assert!(
            sent[2].resources.is_empty(),
            "first wildcard answer even empty"
        );
        assert_eq!(
            sent[0].resources[0].version,
            snap.get(CLUSTER_TYPE_URL)
                .and_then(|t| t.resource_version("a"))
                .unwrap_or_default()
        );
        assert!(state.responses(Some(&snap)).is_empty(), "sent twice");

        // Subscribing to one more name sends just that one.
        state.on_request(&DeltaDiscoveryRequest {
            response_nonce: sent[1].nonce.clone(),
            ..subscribe(ENDPOINT_TYPE_URL, &["b"])
        });
        let more = state.responses(Some(&snap));
        assert_eq!(more.len(), 1);
        assert_eq!(names(&more[0]), ["b"]);
    }

    #[test]
    fn a_reconnect_with_what_envoy_has_gets_nothing() {
        let snap = snapshot(&["a"], &["l"]);
        let mut first = DeltaState::new();
        first.on_request(&subscribe(CLUSTER_TYPE_URL, &[]));
        first.on_request(&subscribe(LISTENER_TYPE_URL, &[]));
        let sent = first.responses(Some(&snap));
        let held = |response: &DeltaDiscoveryResponse| -> HashMap<String, String> {
            response
                .resources
                .iter()
                .map(|r| (r.name.clone(), r.version.clone()))
                .collect()
        };
        let mut again = DeltaState::new();
        for response in &sent {
            again.on_request(&DeltaDiscoveryRequest {
                initial_resource_versions: held(response),
                ..subscribe(&response.type_url, &[])
            });
        }
        assert!(again.responses(Some(&snap)).is_empty());
        // A changed listener, and only it, goes out.
        let changed = snapshot(&["a"], &["l", "m"]);
        let sent = again.responses(Some(&changed));
        assert_eq!(sent.len(), 1);
        assert_eq!(names(&sent[0]), ["m"]);
    }

    #[test]
    fn removals_ack_nack_stale() {
        let mut state = DeltaState::new();
        state.on_request(&subscribe(CLUSTER_TYPE_URL, &[]));
        let sent = state.responses(Some(&snapshot(&["a", "b"], &[]))).remove(0);
        assert_eq!(
            state.on_request(&reply(CLUSTER_TYPE_URL, "999")),
            RequestKind::Stale
        );
        assert_eq!(
            state.on_request(&reply(CLUSTER_TYPE_URL, &sent.nonce)),
            RequestKind::Ack {
                version: sent.system_version_info.clone()
            }
        );
        let next = state.responses(Some(&snapshot(&["a"], &[]))).remove(0);
        assert!(next.resources.is_empty());
        assert_eq!(next.removed_resources, ["b"]);
        let mut nack = reply(CLUSTER_TYPE_URL, &next.nonce);
        nack.error_detail = Some(Status {
            code: 13,
            message: "bad cluster".to_owned(),
            details: Vec::new(),
        });
        assert_eq!(
            state.on_request(&nack),
            RequestKind::Nack {
                version: next.system_version_info.clone(),
                accepted: String::new(),
                reason: "bad cluster".to_owned()
            }
        );
        assert!(state.responses(Some(&snapshot(&["a"], &[]))).is_empty());
    }

    #[test]
    fn unsubscribe_forgets_and_eds_follows_cds() {
        let mut state = DeltaState::new();
        state.on_request(&subscribe(CLUSTER_TYPE_URL, &[]));
        state.on_request(&subscribe(ENDPOINT_TYPE_URL, &["a"]));
        assert_eq!(state.responses(Some(&snapshot(&["a"], &[]))).len(), 2);

        // Cluster "a" changes; its (unchanged) endpoints go out again.
        let mut changed = snapshot(&["a"], &[]);
        let mut resources = changed.resources().clone();
        resources.clusters[0].alt_stat_name = "changed".to_owned();
        changed = Snapshot::new(resources);
        let sent = state.responses(Some(&changed));
        let types: Vec<_> = sent.iter().map(|r| r.type_url.as_str()).collect();
        assert_eq!(types, [CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL]);

        state.on_request(&DeltaDiscoveryRequest {
            resource_names_unsubscribe: vec!["a".to_owned()],
            ..reply(ENDPOINT_TYPE_URL, "")
        });
        assert!(state.responses(Some(&changed)).is_empty(), "unsubscribed");
        state.on_request(&subscribe(ENDPOINT_TYPE_URL, &["a"]));
        let again = state.responses(Some(&changed));
        assert_eq!(names(&again[0]), ["a"], "resubscribed gets it again");
    }
}
