//! Mesh mTLS in a sidecar's Envoy config (reference: `kuma-api.md` §5.3,
//! §5.4, §5.5), pure like the rest of generation: the certificates come in
//! as input ([`MeshTls`], [`ProxyIdentity`]); issuing and rotating them is
//! `feed.rs`'s job.
//!
//! * [`downstream`]: the transport socket of an inbound listener: TLS that
//!   requires a client certificate whose URI SAN starts with
//!   `spiffe://{mesh}/`, signed by the mesh CA; [`secure_inbound`] puts it
//!   on an inbound listener by the backend's mode.
//! * [`upstream`]: the transport socket of an outbound cluster: TLS with SNI
//!   `{service}{mesh=...,tags}`, ALPN `kuma`, the proxy's own certificate,
//!   and a server certificate that must carry `spiffe://{mesh}/{service}`.
//! * [`secrets`]: the two SDS secrets both reference over ADS,
//!   `identity_cert:secret:{mesh}` (the proxy's certificate and key) and
//!   `mesh_ca:secret:{mesh}` (the CA bundle).
//!
//! Modes (`mtls.backends[].mode`): STRICT (the default) puts the TLS socket
//! on every filter chain of an inbound, so it accepts mTLS only. PERMISSIVE
//! adds the TLS inspector listener filter and splits each chain in two: one
//! for plaintext (`transport_protocol: raw_buffer`) and one for mesh mTLS
//! (`transport_protocol: tls`, ALPN `kuma`). Kuma's third PERMISSIVE chain,
//! TLS from a client outside the mesh passed through to the application, is
//! not generated (such a connection matches no chain and is closed).
//! Outbounds always speak mTLS; a PERMISSIVE inbound accepts it.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::config_source::ConfigSourceSpecifier;
use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
use envoy_types::pb::envoy::config::core::v3::{
    AggregatedConfigSource, ApiVersion, ConfigSource, DataSource, TransportSocket, transport_socket,
};
use envoy_types::pb::envoy::config::listener::v3::{
    FilterChainMatch, Listener, ListenerFilter, listener_filter,
};
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::common_tls_context::{
    CombinedCertificateValidationContext, ValidationContextType,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SdsSecretConfig, Secret,
    SubjectAltNameMatcher, TlsCertificate, UpstreamTlsContext, secret, subject_alt_name_matcher,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
use envoy_types::pb::google::protobuf::BoolValue;
use envoy_types::util::pack_any;
use model::labels::tags;

use crate::names;

/// `Any.type_url` and xDS type of SDS secrets.
pub const SECRET_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
/// Envoy's name of the TLS transport socket.
pub const TLS_TRANSPORT_SOCKET: &str = "envoy.transport_sockets.tls";
/// ALPN of mesh traffic between sidecars.
pub const KUMA_ALPN: &str = "kuma";
/// Envoy's name of the TLS inspector listener filter.
pub const TLS_INSPECTOR_FILTER: &str = "envoy.filters.listener.tls_inspector";

/// How an inbound takes connections when mTLS is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundMode {
    /// mTLS only.
    Strict,
    /// mTLS from the mesh, and plaintext.
    Permissive,
}

/// What generation needs of a mesh whose mTLS is enabled: the CA bundle
/// peers are verified against.
#[derive(Clone, PartialEq, Eq)]
pub struct MeshTls {
    /// PEM certificates of the mesh CA(s), joined by newlines.
    pub ca_bundle_pem: String,
}

impl std::fmt::Debug for MeshTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshTls").finish_non_exhaustive()
    }
}

/// A proxy's workload certificate: what it presents to its peers.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyIdentity {
    /// PEM certificate chain, leaf first.
    pub cert_chain_pem: String,
    /// PEM private key.
    pub key_pem: String,
}

impl std::fmt::Debug for ProxyIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key never reaches a log line.
        f.debug_struct("ProxyIdentity").finish_non_exhaustive()
    }
}

/// mTLS as one generation applies it: the material and the inbound mode.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Active<'a> {
    pub tls: &'a MeshTls,
    pub identity: &'a ProxyIdentity,
    pub mode: InboundMode,
}

/// Whether mTLS applies to a proxy (`proxy`) of the mesh `mesh` (`spec`):
/// when the mesh enables a backend, and then never without certificates.
pub(crate) fn active<'a>(
    spec: &model::mesh_pb::Mesh,
    context: &crate::MeshContext<'a>,
    proxy: &str,
    mesh: &str,
) -> Result<Option<Active<'a>>, crate::GenerateError> {
    let Some((_, backend)) = ca::enabled_backend(spec) else {
        return Ok(None);
    };
    let (Some(tls), Some(identity)) = (context.tls, context.identity) else {
        return Err(crate::GenerateError::MtlsWithoutCertificates {
            name: proxy.to_string(),
            mesh: mesh.to_string(),
        });
    };
    let mode = if backend.mode == ca::Mode::Permissive as i32 {
        InboundMode::Permissive
    } else {
        InboundMode::Strict
    };
    Ok(Some(Active {
        tls,
        identity,
        mode,
    }))
}

/// The SPIFFE ID of `service` in `mesh`: `spiffe://{mesh}/{service}`.
pub fn service_spiffe_id(mesh: &str, service: &str) -> String {
    format!("spiffe://{mesh}/{service}")
}

/// The SNI an outbound cluster of `service` (restricted to `subset_tags`)
/// sends: `{service}{k1=v1,k2=v2}` over the subset tags plus `mesh={mesh}`,
/// without `kuma.io/service`, sorted by key, e.g. `backend{mesh=default}`.
pub fn sni(mesh: &str, service: &str, subset_tags: &BTreeMap<String, String>) -> String {
    let mut pairs: BTreeMap<&str, &str> = subset_tags
        .iter()
        .filter(|(k, _)| k.as_str() != tags::SERVICE)
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pairs.insert("mesh", mesh);
    let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{service}{{{}}}", inner.join(","))
}

/// An SDS reference to `name`, delivered over ADS.
fn sds(name: String) -> SdsSecretConfig {
    SdsSecretConfig {
        name,
        sds_config: Some(ConfigSource {
            resource_api_version: ApiVersion::V3 as i32,
            config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
            ..Default::default()
        }),
    }
}

fn uri_matcher(pattern: string_matcher::MatchPattern) -> SubjectAltNameMatcher {
    SubjectAltNameMatcher {
        san_type: subject_alt_name_matcher::SanType::Uri as i32,
        matcher: Some(StringMatcher {
            match_pattern: Some(pattern),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The proxy's certificate and the CA check, both from SDS, with the peer's
/// URI SAN matched by `san`.
fn common_tls_context(
    mesh: &str,
    san: string_matcher::MatchPattern,
    alpn: &[&str],
) -> CommonTlsContext {
    CommonTlsContext {
        alpn_protocols: alpn.iter().map(|p| (*p).to_string()).collect(),
        tls_certificate_sds_secret_configs: vec![sds(names::identity_cert_secret(mesh))],
        validation_context_type: Some(ValidationContextType::CombinedValidationContext(
            CombinedCertificateValidationContext {
                default_validation_context: Some(CertificateValidationContext {
                    match_typed_subject_alt_names: vec![uri_matcher(san)],
                    ..Default::default()
                }),
                validation_context_sds_secret_config: Some(sds(names::mesh_ca_secret(mesh))),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

/// The transport socket of an inbound listener of a proxy in `mesh`: mTLS
/// required, any service of the mesh may connect (TrafficPermission decides
/// later who may).
pub fn downstream(mesh: &str) -> TransportSocket {
    let context = DownstreamTlsContext {
        common_tls_context: Some(common_tls_context(
            mesh,
            string_matcher::MatchPattern::Prefix(format!("spiffe://{mesh}/")),
            &[],
        )),
        require_client_certificate: Some(BoolValue { value: true }),
        ..Default::default()
    };
    TransportSocket {
        name: TLS_TRANSPORT_SOCKET.to_string(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(pack_any(context))),
    }
}

/// Makes the inbound `listener` of a proxy in `mesh` take mTLS as `mode`
/// says (see the module docs).
pub fn secure_inbound(listener: &mut Listener, mesh: &str, mode: InboundMode) {
    match mode {
        InboundMode::Strict => {
            for chain in &mut listener.filter_chains {
                chain.transport_socket = Some(downstream(mesh));
            }
        }
        InboundMode::Permissive => {
            let chains = std::mem::take(&mut listener.filter_chains);
            for chain in chains {
                let mut plain = chain.clone();
                plain.filter_chain_match = Some(FilterChainMatch {
                    transport_protocol: "raw_buffer".to_string(),
                    ..Default::default()
                });
                let mut mtls = chain;
                mtls.filter_chain_match = Some(FilterChainMatch {
                    transport_protocol: "tls".to_string(),
                    application_protocols: vec![KUMA_ALPN.to_string()],
                    ..Default::default()
                });
                mtls.transport_socket = Some(downstream(mesh));
                listener.filter_chains.push(plain);
                listener.filter_chains.push(mtls);
            }
            listener.listener_filters.push(ListenerFilter {
                name: TLS_INSPECTOR_FILTER.to_string(),
                config_type: Some(listener_filter::ConfigType::TypedConfig(pack_any(
                    TlsInspector::default(),
                ))),
                ..Default::default()
            });
        }
    }
}

/// The transport socket of an outbound cluster to `service` in `mesh`
/// (restricted to `subset_tags`, empty for the whole service).
pub fn upstream(
    mesh: &str,
    service: &str,
    subset_tags: &BTreeMap<String, String>,
) -> TransportSocket {
    let context = UpstreamTlsContext {
        common_tls_context: Some(common_tls_context(
            mesh,
            string_matcher::MatchPattern::Exact(service_spiffe_id(mesh, service)),
            &[KUMA_ALPN],
        )),
        sni: sni(mesh, service, subset_tags),
        ..Default::default()
    };
    TransportSocket {
        name: TLS_TRANSPORT_SOCKET.to_string(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(pack_any(context))),
    }
}

fn inline(pem: &str) -> DataSource {
    DataSource {
        specifier: Some(Specifier::InlineBytes(pem.as_bytes().to_vec())),
        ..Default::default()
    }
}

/// The SDS secrets of a proxy in `mesh`, sorted by name:
/// `identity_cert:secret:{mesh}` and `mesh_ca:secret:{mesh}`.
pub fn secrets(mesh: &str, tls: &MeshTls, identity: &ProxyIdentity) -> Vec<Secret> {
    vec![
        Secret {
            name: names::identity_cert_secret(mesh),
            r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
                certificate_chain: Some(inline(&identity.cert_chain_pem)),
                private_key: Some(inline(&identity.key_pem)),
                ..Default::default()
            })),
        },
        Secret {
            name: names::mesh_ca_secret(mesh),
            r#type: Some(secret::Type::ValidationContext(
                CertificateValidationContext {
                    trusted_ca: Some(inline(&tls.ca_bundle_pem)),
                    ..Default::default()
                },
            )),
        },
    ]
}

impl std::fmt::Debug for crate::EnvoyResources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets hold private keys: their names only, so no log line or
        // panic message ever carries a key.
        let secrets: Vec<&str> = self.secrets.iter().map(|s| s.name.as_str()).collect();
        f.debug_struct("EnvoyResources")
            .field("listeners", &self.listeners)
            .field("clusters", &self.clusters)
            .field("load_assignments", &self.load_assignments)
            .field("secrets", &secrets)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use prost::{Message, Name};

    use super::*;

    #[test]
    fn sni_is_the_service_with_sorted_tags_and_the_mesh() {
        let none = BTreeMap::new();
        assert_eq!(sni("default", "backend", &none), "backend{mesh=default}");
        let subset = BTreeMap::from([
            ("version".to_string(), "v2".to_string()),
            ("kuma.io/service".to_string(), "backend".to_string()),
            ("az".to_string(), "a".to_string()),
        ]);
        assert_eq!(
            sni("demo", "backend", &subset),
            "backend{az=a,mesh=demo,version=v2}"
        );
    }

    #[test]
    fn an_mtls_mesh_without_certificates_is_an_error() {
        let yaml = "type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: builtin
---
type: Dataplane
mesh: default
name: web-1
networking:
  address: 10.0.0.1
  inbound:
  - port: 8080
    tags:
      kuma.io/service: web
";
        let resources = model::format::parse_documents(yaml).unwrap();
        let context = crate::MeshContext::new(&resources[0], &resources[1..]);
        let err = crate::generate(&resources[1], &context).unwrap_err();
        assert_eq!(
            err.to_string(),
            "dataplane web-1: mesh default enables mTLS but no certificate was given for the proxy"
        );
    }

    #[test]
    fn secret_type_url_is_the_messages_own() {
        assert_eq!(SECRET_TYPE_URL, Secret::type_url());
    }

    #[test]
    fn upstream_verifies_the_service_and_offers_kuma_alpn() {
        let socket = upstream("default", "backend", &BTreeMap::new());
        let Some(transport_socket::ConfigType::TypedConfig(any)) = socket.config_type else {
            panic!("no typed config");
        };
        let context = UpstreamTlsContext::decode(any.value.as_slice()).unwrap();
        assert_eq!(context.sni, "backend{mesh=default}");
        let common = context.common_tls_context.unwrap();
        assert_eq!(common.alpn_protocols, ["kuma"]);
        assert_eq!(
            common.tls_certificate_sds_secret_configs[0].name,
            "identity_cert:secret:default"
        );
        let Some(ValidationContextType::CombinedValidationContext(combined)) =
            common.validation_context_type
        else {
            panic!("no combined validation context");
        };
        assert_eq!(
            combined.validation_context_sds_secret_config.unwrap().name,
            "mesh_ca:secret:default"
        );
        let san = &combined
            .default_validation_context
            .unwrap()
            .match_typed_subject_alt_names[0];
        assert_eq!(
            san.matcher.as_ref().unwrap().match_pattern,
            Some(string_matcher::MatchPattern::Exact(
                "spiffe://default/backend".into()
            ))
        );
    }

    #[test]
    fn identities_and_resources_do_not_print_their_keys() {
        let identity = ProxyIdentity {
            cert_chain_pem: "CERT".into(),
            key_pem: "SECRET KEY".into(),
        };
        assert!(!format!("{identity:?}").contains("SECRET"));
        let tls = MeshTls {
            ca_bundle_pem: "CA".into(),
        };
        let resources = crate::EnvoyResources {
            secrets: secrets("default", &tls, &identity),
            ..Default::default()
        };
        let text = format!("{resources:?}");
        assert!(text.contains("identity_cert:secret:default"), "{text}");
        assert!(!text.contains("83, 69, 67"), "key bytes printed: {text}");
        let snapshot = crate::ads::Snapshot::new(resources);
        let text = format!("{snapshot:?}");
        assert!(!text.contains("83, 69, 67"), "key bytes printed: {text}");
    }
}
