//! The state of one state-of-the-world ADS stream, without I/O: per xDS
//! type, what Envoy asked for and the last version and nonce sent. It
//! classifies each request (initial, ACK, NACK, stale) and decides which
//! responses a snapshot calls for.
//!
//! Rules (reference: `rust-dependencies.md` §4.3, §4.4):
//! * a request with an empty nonce subscribes to its type (again) and is
//!   always answered once a snapshot exists;
//! * a request whose nonce is the last one sent for its type is an ACK, or a
//!   NACK when it carries `error_detail`; a NACKed version is not resent;
//! * a request with any other nonce is stale and ignored;
//! * a type is sent when its version differs from the one last sent, or when
//!   the requested resource names changed (EDS after a new cluster); EDS is
//!   also resent whenever CDS goes out, since Envoy re-warms an updated
//!   cluster until it gets its endpoints (Kuma forces a new EDS version);
//! * responses go out in Envoy's order: CDS, EDS, LDS, then the rest.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};

use super::cache::Snapshot;
use crate::generate::{CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL, LISTENER_TYPE_URL};

/// Envoy's order of xDS types in a push: CDS, EDS, LDS, then the rest (a
/// stable sort keeps the rest in type URL order).
pub(crate) fn type_order(type_url: &str) -> u8 {
    match type_url {
        CLUSTER_TYPE_URL => 0,
        ENDPOINT_TYPE_URL => 1,
        LISTENER_TYPE_URL => 2,
        _ => 3,
    }
}

/// What a request meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestKind {
    /// A (re)subscription: empty nonce.
    Initial,
    /// Envoy accepted `version`.
    Ack { version: String },
    /// Envoy rejected `version` (the one sent with the echoed nonce) and
    /// keeps `accepted` (its `version_info`).
    Nack {
        version: String,
        accepted: String,
        reason: String,
    },
    /// The nonce is not the last one sent for the type: ignored.
    Stale,
}

/// The per-type state of a stream.
#[derive(Debug, Clone, Default)]
struct TypeState {
    /// Resource names of the last request (empty: wildcard).
    names: Vec<String>,
    /// Version and resource names of the last response, if any.
    sent: Option<(String, Vec<String>)>,
    /// Nonce of the last response.
    nonce: String,
}

/// One SotW stream's state machine.
#[derive(Debug, Default)]
pub struct StreamState {
    types: BTreeMap<String, TypeState>,
    next_nonce: u64,
}

impl StreamState {
    /// A fresh stream: nothing subscribed, nothing sent.
    pub fn new() -> StreamState {
        StreamState::default()
    }

    /// Records `request` and says what it was.
    pub fn on_request(&mut self, request: &DiscoveryRequest) -> RequestKind {
        let nonce = request.response_nonce.as_str();
        if nonce.is_empty() {
            let state = self.types.entry(request.type_url.clone()).or_default();
            state.names = request.resource_names.clone();
            state.sent = None;
            return RequestKind::Initial;
        }
        let Some(state) = self.types.get_mut(&request.type_url) else {
            return RequestKind::Stale;
        };
        if state.nonce != nonce {
            return RequestKind::Stale;
        }
        state.names = request.resource_names.clone();
        let sent_version = state
            .sent
            .as_ref()
            .map(|(version, _)| version.clone())
            .unwrap_or_default();
        match &request.error_detail {
            Some(status) => RequestKind::Nack {
                version: sent_version,
                accepted: request.version_info.clone(),
                reason: status.message.clone(),
            },
            None => RequestKind::Ack {
                version: request.version_info.clone(),
            },
        }
    }

    /// The responses `snapshot` calls for, in Envoy's order, recorded as sent.
    pub fn responses(&mut self, snapshot: Option<&Snapshot>) -> Vec<DiscoveryResponse> {
        let Some(snapshot) = snapshot else {
            return Vec::new();
        };
        let mut type_urls: Vec<String> = self.types.keys().cloned().collect();
        type_urls.sort_by_key(|t| type_order(t));
        let mut responses: Vec<DiscoveryResponse> = Vec::new();
        for type_url in type_urls {
            let cds_sent = responses.iter().any(|r| r.type_url == CLUSTER_TYPE_URL);
            let Some(current) = snapshot.get(&type_url) else {
                continue;
            };
            let Some(state) = self.types.get_mut(&type_url) else {
                continue;
            };
            let due = match &state.sent {
                None => true,
                Some((version, names)) => {
                    *version != current.version
                        || *names != state.names
                        || (cds_sent && type_url == ENDPOINT_TYPE_URL)
                }
            };
            if !due {
                continue;
            }
            let wildcard = state.names.is_empty() || state.names.iter().any(|n| n == "*");
            let resources = current
                .resources
                .iter()
                .filter(|r| wildcard || state.names.contains(&r.name))
                .map(|r| r.resource.clone())
                .collect();
            self.next_nonce += 1;
            state.nonce = self.next_nonce.to_string();
            state.sent = Some((current.version.clone(), state.names.clone()));
            responses.push(DiscoveryResponse {
                version_info: current.version.clone(),
                resources,
                type_url,
                nonce: state.nonce.clone(),
                ..Default::default()
            });
        }
        responses
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::google::rpc::Status;

    use super::*;
    use crate::EnvoyResources;

    fn snapshot(clusters: &[&str]) -> Snapshot {
        crate::ads::test_util::snapshot(clusters, &[])
    }

    fn request(type_url: &str, version: &str, nonce: &str, names: &[&str]) -> DiscoveryRequest {
        DiscoveryRequest {
            type_url: type_url.to_owned(),
            version_info: version.to_owned(),
            response_nonce: nonce.to_owned(),
            resource_names: names.iter().map(|n| (*n).to_owned()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn nothing_before_a_snapshot_then_the_subscribed_types_in_order() {
        let mut state = StreamState::new();
        let kind = state.on_request(&request(ENDPOINT_TYPE_URL, "", "", &["a"]));
        assert_eq!(kind, RequestKind::Initial);
        state.on_request(&request(CLUSTER_TYPE_URL, "", "", &[]));
        assert!(state.responses(None).is_empty());
        let snap = snapshot(&["a", "b"]);
        let responses = state.responses(Some(&snap));
        let types: Vec<_> = responses.iter().map(|r| r.type_url.as_str()).collect();
        assert_eq!(types, [CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL]);
        assert_eq!(responses[0].resources.len(), 2, "CDS is wildcard");
        assert_eq!(responses[1].resources.len(), 1, "EDS only names a");
        assert_ne!(responses[0].nonce, responses[1].nonce);
        assert!(state.responses(Some(&snap)).is_empty(), "sent twice");
    }

    #[test]
    fn ack_nack_stale_and_new_names() {
        let mut state = StreamState::new();
        state.on_request(&request(ENDPOINT_TYPE_URL, "", "", &["a"]));
        let snap = snapshot(&["a", "b"]);
        let sent = state.responses(Some(&snap)).remove(0);
        let version = sent.version_info.clone();

        let stale = request(ENDPOINT_TYPE_URL, &version, "999", &["a"]);
        assert_eq!(state.on_request(&stale), RequestKind::Stale);
        let ack = request(ENDPOINT_TYPE_URL, &version, &sent.nonce, &["a"]);
        assert_eq!(
            state.on_request(&ack),
            RequestKind::Ack {
                version: version.clone()
            }
        );
        assert!(state.responses(Some(&snap)).is_empty());

        // An ACK naming one more cluster gets an answer at the same version.
        let more = request(ENDPOINT_TYPE_URL, &version, &sent.nonce, &["a", "b"]);
        state.on_request(&more);
        let again = state.responses(Some(&snap)).remove(0);
        assert_eq!(again.version_info, version);
        assert_eq!(again.resources.len(), 2);

        let mut nack = request(ENDPOINT_TYPE_URL, "", &again.nonce, &["a", "b"]);
        nack.error_detail = Some(Status {
            code: 13,
            message: "bad".to_owned(),
            details: Vec::new(),
        });
        assert_eq!(
            state.on_request(&nack),
            RequestKind::Nack {
                version: version.clone(),
                accepted: String::new(),
                reason: "bad".to_owned()
            }
        );
        assert!(state.responses(Some(&snap)).is_empty(), "NACKed resent");
        let next = snapshot(&["a", "c"]);
        let sent = state.responses(Some(&next));
        assert_eq!(sent.len(), 1);
        assert_ne!(sent[0].version_info, version);
    }

    #[test]
    fn secrets_are_served_by_name() {
        use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
        let secret = |name: &str| Secret {
            name: name.to_owned(),
            ..Default::default()
        };
        let snap = Snapshot::new(EnvoyResources {
            secrets: vec![
                secret("identity_cert:secret:default"),
                secret("mesh_ca:secret:default"),
            ],
            ..snapshot(&["a"]).resources().clone()
        });
        let mut state = StreamState::new();
        state.on_request(&request(
            crate::SECRET_TYPE_URL,
            "",
            "",
            &["mesh_ca:secret:default"],
        ));
        state.on_request(&request(CLUSTER_TYPE_URL, "", "", &[]));
        let sent = state.responses(Some(&snap));
        let types: Vec<_> = sent.iter().map(|r| r.type_url.as_str()).collect();
        assert_eq!(types, [CLUSTER_TYPE_URL, crate::SECRET_TYPE_URL]);
        assert_eq!(sent[1].resources.len(), 1, "only the named secret");
        // Envoy names the second secret once a listener references it.
        let both = request(
            crate::SECRET_TYPE_URL,
            &sent[1].version_info,
            &sent[1].nonce,
            &["identity_cert:secret:default", "mesh_ca:secret:default"],
        );
        assert!(matches!(state.on_request(&both), RequestKind::Ack { .. }));
        let again = state.responses(Some(&snap));
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].resources.len(), 2);
    }

    #[test]
    fn eds_is_resent_with_every_cds() {
        let mut state = StreamState::new();
        state.on_request(&request(CLUSTER_TYPE_URL, "", "", &[]));
        state.on_request(&request(ENDPOINT_TYPE_URL, "", "", &["a"]));
        let sent = state.responses(Some(&snapshot(&["a"])));
        assert_eq!(sent.len(), 2);
        // Cluster "b" appears; EDS of "a" is unchanged but goes out again.
        let sent = state.responses(Some(&snapshot(&["a", "b"])));
        let types: Vec<_> = sent.iter().map(|r| r.type_url.as_str()).collect();
        assert_eq!(types, [CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL]);
        assert_eq!(sent[1].resources.len(), 1);
    }
}
