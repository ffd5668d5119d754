//! The bytes on the wire: model [`Resource`] ⇄ `KumaResource` ⇄ delta xDS `Resource`
//! (reference §1.4, §1.6).
//!
//! * Type URLs on requests and responses are bare Kuma type names (`Mesh`,
//!   `TrafficPermission`), not `type.googleapis.com/...`.
//! * A delta resource is `{name: "<name>.<mesh>", version, resource: Any(KumaResource)}`; for
//!   global-scoped types the mesh is empty, so the name ends with a dot (`default.`).
//!   `removed_resources` use the same keys, split on the last dot.
//! * The version is the lowercase hex SHA-256 of the deterministic `KumaResource` bytes,
//!   which are exactly the bytes sent, so a receiver can recompute the version of what it
//!   stored (see [`crate::diff::held_versions`]).
//! * `KumaResource.meta.version` is always `""`; the spec is an `Any` typed
//!   `type.googleapis.com/<spec proto>` (GlobalSecret and Secret use
//!   `kuma.system.v1alpha1.Secret`); classic types have no status.
//!
//! Decoding never panics on peer input: every problem is an [`Error`] naming the type, the
//! resource and what is wrong.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::service::discovery::v3::Resource as DeltaResource;
use envoy_types::pb::google::protobuf::Any;
use kds_proto::KUMA_RESOURCE_TYPE_URL;
use model::mesh_pb::KumaResource;
use model::mesh_pb::kuma_resource::Meta as WireMeta;
use model::{Meta, Resource, ResourceKey, ResourceType, Spec};
use prost::Message;
use sha2::{Digest, Sha256};

use crate::canonical;
use crate::error::{Error, Rejection};

const KUMA_RESOURCE_PROTO: &str = "kuma.mesh.v1alpha1.KumaResource";
const TYPE_URL_PREFIX: &str = "type.googleapis.com/";

/// The type URL of `kind` on KDS requests and responses: its bare Kuma name.
pub fn type_url(kind: ResourceType) -> &'static str {
    kind.name()
}

/// The type a request or response names; an unknown one is an error.
pub fn kind_of(type_url: &str) -> Result<ResourceType, Error> {
    ResourceType::from_name(type_url).ok_or_else(|| Error::UnknownType {
        type_url: type_url.to_string(),
    })
}

/// The `Any` type URL of `kind`'s spec, e.g. `type.googleapis.com/kuma.mesh.v1alpha1.Mesh`.
pub fn spec_type_url(kind: ResourceType) -> String {
    format!("{TYPE_URL_PREFIX}{}", kind.descriptor().spec_proto)
}

/// The delta resource name: `<name>.<mesh>` (a trailing dot for global-scoped types).
pub fn resource_name(name: &str, mesh: &str) -> String {
    format!("{name}.{mesh}")
}

/// The delta resource name of `key`.
pub fn key_name(key: &ResourceKey) -> String {
    resource_name(&key.name, &key.mesh)
}

/// Reads a delta resource name (as in `removed_resources`): split on the last dot, the right
/// part is the mesh (names may contain dots, meshes may not).
pub fn parse_resource_name(kind: ResourceType, key: &str) -> Result<ResourceKey, Error> {
    let bad = || Error::BadResourceKey {
        kind,
        key: key.to_string(),
    };
    let (name, mesh) = key.rsplit_once('.').ok_or_else(bad)?;
    if name.is_empty() || (!kind.is_mesh_scoped() && !mesh.is_empty()) {
        return Err(bad());
    }
    Ok(ResourceKey::new(kind, mesh, name))
}

/// The `KumaResource` of a model resource: name, mesh, labels, version `""`, the spec as a
/// typed `Any` with deterministic bytes, no status.
pub fn to_kuma_resource(resource: &Resource) -> KumaResource {
    let kind = resource.kind();
    let proto = kind.descriptor().spec_proto;
    KumaResource {
        meta: Some(WireMeta {
            name: resource.meta.name.clone(),
            mesh: resource.meta.mesh.clone(),
            version: String::new(),
            labels: resource
                .meta
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }),
        spec: Some(Any {
            type_url: spec_type_url(kind),
            value: canonical::canonicalize(proto, resource.spec.encode_proto()),
        }),
        status: None,
    }
}

/// The model resource carried by a `KumaResource` of type `kind`. The result has version 0
/// and no times: the receiver keeps its own. A status is ignored (classic types have none).
pub fn from_kuma_resource(kind: ResourceType, wire: &KumaResource) -> Result<Resource, Error> {
    let meta = wire.meta.as_ref().ok_or_else(|| Error::MissingMeta {
        kind,
        name: String::new(),
    })?;
    let name = meta.name.clone();
    if !kind.is_mesh_scoped() && !meta.mesh.is_empty() {
        return Err(Error::MeshOnGlobalType {
            kind,
            name,
            mesh: meta.mesh.clone(),
        });
    }
    let spec_any = wire.spec.as_ref().ok_or_else(|| Error::MissingSpec {
        kind,
        name: name.clone(),
    })?;
    let expected = spec_type_url(kind);
    if spec_any.type_url != expected {
        return Err(Error::SpecTypeMismatch {
            kind,
            name,
            found: spec_any.type_url.clone(),
            expected,
        });
    }
    let spec = Spec::decode_proto(kind, &spec_any.value).map_err(|e| Error::UndecodableSpec {
        kind,
        name: name.clone(),
        message: spec_error_message(&e),
    })?;
    let mut out = Meta::new(meta.mesh.clone(), name);
    out.labels = meta
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(Resource { meta: out, spec })
}

fn spec_error_message(e: &model::SpecError) -> String {
    match e {
        model::SpecError::Json { message, .. } | model::SpecError::Proto { message, .. } => {
            message.clone()
        }
    }
}

/// The deterministic bytes of a `KumaResource` (sorted map entries).
pub fn encode_kuma_resource(wire: &KumaResource) -> Vec<u8> {
    canonical::canonicalize(KUMA_RESOURCE_PROTO, wire.encode_to_vec())
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn version_of(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The delta resource that carries `resource` (already mapped for the receiver).
pub fn to_delta_resource(resource: &Resource) -> DeltaResource {
    let bytes = encode_kuma_resource(&to_kuma_resource(resource));
    DeltaResource {
        name: resource_name(&resource.meta.name, &resource.meta.mesh),
        version: version_of(&bytes),
        resource: Some(Any {
            type_url: KUMA_RESOURCE_TYPE_URL.to_string(),
            value: bytes,
        }),
        ..Default::default()
    }
}

/// The model resource in a delta resource of type `kind`. The resource's identity is its
/// `KumaResource.meta`; the delta name is only used to name it in errors.
pub fn from_delta_resource(kind: ResourceType, delta: &DeltaResource) -> Result<Resource, Error> {
    let name = || {
        delta
            .name
            .rsplit_once('.')
            .map_or(delta.name.as_str(), |(n, _)| n)
            .to_string()
    };
    let any = delta
        .resource
        .as_ref()
        .ok_or_else(|| Error::WrongEnvelope {
            kind,
            name: name(),
            found: String::new(),
            expected: KUMA_RESOURCE_TYPE_URL,
        })?;
    if any.type_url != KUMA_RESOURCE_TYPE_URL {
        return Err(Error::WrongEnvelope {
            kind,
            name: name(),
            found: any.type_url.clone(),
            expected: KUMA_RESOURCE_TYPE_URL,
        });
    }
    let wire =
        KumaResource::decode(any.value.as_slice()).map_err(|e| Error::UndecodableEnvelope {
            kind,
            name: name(),
            message: e.to_string(),
        })?;
    from_kuma_resource(kind, &wire).map_err(|e| match e {
        Error::MissingMeta { kind, .. } => Error::MissingMeta { kind, name: name() },
        other => other,
    })
}

/// One delta response (or a zone's response on ZoneToGlobalSync), decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedResponse {
    pub kind: ResourceType,
    pub resources: Vec<Resource>,
    pub removed: Vec<ResourceKey>,
    /// Resources and removed keys that could not be read, each to be NACKed alone.
    pub rejected: Vec<Rejection>,
}

/// Decodes the resources and removed keys of a response for `type_url`. An unknown type is
/// an error for the whole response; a bad resource or key is a [`Rejection`] of its own.
pub fn decode_response(
    type_url: &str,
    resources: &[DeltaResource],
    removed: &[String],
) -> Result<DecodedResponse, Error> {
    let kind = kind_of(type_url)?;
    let mut out = DecodedResponse {
        kind,
        resources: Vec::with_capacity(resources.len()),
        removed: Vec::with_capacity(removed.len()),
        rejected: Vec::new(),
    };
    for delta in resources {
        match from_delta_resource(kind, delta) {
            Ok(resource) => out.resources.push(resource),
            Err(e) => out.rejected.push(rejection_for(kind, &delta.name, &e)),
        }
    }
    for key in removed {
        match parse_resource_name(kind, key) {
            Ok(key) => out.removed.push(key),
            Err(e) => out.rejected.push(Rejection {
                kind,
                mesh: String::new(),
                name: key.clone(),
                reason: e.to_string(),
            }),
        }
    }
    Ok(out)
}

/// A rejection for an undecodable delta resource, keyed by its delta name when readable so
/// that the receiver leaves its local copy alone.
fn rejection_for(kind: ResourceType, delta_name: &str, e: &Error) -> Rejection {
    match parse_resource_name(kind, delta_name) {
        Ok(key) => Rejection::new(&key, e.to_string()),
        Err(_) => Rejection {
            kind,
            mesh: String::new(),
            name: delta_name.to_string(),
            reason: e.to_string(),
        },
    }
}

/// `name → version` of delta resources (the form of `initial_resource_versions`).
pub fn versions(resources: &[DeltaResource]) -> BTreeMap<String, String> {
    resources
        .iter()
        .map(|r| (r.name.clone(), r.version.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use model::labels;
    use model::mesh_pb;
    use model::system_pb;
    use model::test_util;

    use super::*;

    /// A resource of every registered type, with a spec that is not all defaults where the
    /// type has an obvious field, and labels.
    fn sample(kind: ResourceType) -> Resource {
        let mut spec = match kind {
            ResourceType::Dataplane => {
                test_util::dataplane("m", "x", "10.0.0.1", &[(8080, "web"), (8081, "api")]).spec
            }
            ResourceType::TrafficPermission => {
                test_util::traffic_permission("m", "x", "a", "b").spec
            }
            _ => Spec::default_for(kind),
        };
        match &mut spec {
            Spec::Secret(s) | Spec::GlobalSecret(s) => {
                s.data = Some(envoy_types::pb::google::protobuf::BytesValue {
                    value: b"c2VjcmV0".to_vec(),
                });
            }
            Spec::Config(c) => c.config = "{\"a\":1}".into(),
            Spec::ZoneIngress(zi) => {
                zi.zone = "zone-1".into();
                zi.available_services = vec![mesh_pb::zone_ingress::AvailableService {
                    tags: HashMap::from([
                        ("kuma.io/service".to_string(), "web".to_string()),
                        ("kuma.io/zone".to_string(), "zone-1".to_string()),
                    ]),
                    instances: 2,
                    mesh: "default".into(),
                    external_service: false,
                }];
            }
            Spec::Zone(z) => {
                z.enabled = Some(envoy_types::pb::google::protobuf::BoolValue { value: true })
            }
            _ => {}
        }
        let name = format!("{}-1", kind.name().to_lowercase());
        Resource::new("default", name, spec).with_labels([
            (labels::ORIGIN, labels::ORIGIN_GLOBAL),
            ("team", "a"),
            ("env", "prod"),
        ])
    }

    #[test]
    fn every_type_round_trips_through_the_wire() {
        for &kind in ResourceType::ALL {
            let resource = sample(kind);
            let delta = to_delta_resource(&resource);
            let expected_name = if kind.is_mesh_scoped() {
                format!("{}.default", resource.meta.name)
            } else {
                format!("{}.", resource.meta.name)
            };
            assert_eq!(delta.name, expected_name, "{kind}");
            assert_eq!(delta.version.len(), 64, "{kind}");
            assert!(
                delta
                    .version
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            );
            let any = delta.resource.as_ref().expect("resource");
            assert_eq!(any.type_url, KUMA_RESOURCE_TYPE_URL);
            let wire = KumaResource::decode(any.value.as_slice()).expect("decodes");
            let meta = wire.meta.as_ref().expect("meta");
            assert_eq!(meta.version, "", "{kind}: version is never sent");
            assert!(
                wire.status.is_none(),
                "{kind}: classic types have no status"
            );
            assert_eq!(
                wire.spec.as_ref().expect("spec").type_url,
                format!("type.googleapis.com/{}", kind.descriptor().spec_proto)
            );
            let back = from_delta_resource(kind, &delta).expect("round trip");
            assert_eq!(back, resource, "{kind}");
            // the key in removed_resources form reads back to the same key
            assert_eq!(
                parse_resource_name(kind, &delta.name).expect("key"),
                resource.key()
            );
            // and the receiver recomputes the same version from what it stored
            assert_eq!(to_delta_resource(&back).version, delta.version, "{kind}");
        }
    }

    #[test]
    fn global_secret_spec_is_a_system_secret() {
        assert_eq!(
            spec_type_url(ResourceType::GlobalSecret),
            "type.googleapis.com/kuma.system.v1alpha1.Secret"
        );
        assert_eq!(
            spec_type_url(ResourceType::Mesh),
            "type.googleapis.com/kuma.mesh.v1alpha1.Mesh"
        );
        assert_eq!(
            type_url(ResourceType::TrafficPermission),
            "TrafficPermission"
        );
        assert_eq!(kind_of("Mesh"), Ok(ResourceType::Mesh));
    }

    #[test]
    fn every_registry_spec_has_a_descriptor() {
        for &kind in ResourceType::ALL {
            assert!(
                canonical::descriptor(kind.descriptor().spec_proto).is_some(),
                "{kind}"
            );
        }
        assert!(canonical::descriptor(KUMA_RESOURCE_PROTO).is_some());
    }

    #[test]
    fn version_is_stable_whatever_the_map_order() {
        // many labels and tags: HashMap iteration order differs between maps
        let mut a = test_util::dataplane("m", "dp", "10.0.0.1", &[(1, "s1"), (2, "s2")]);
        for i in 0..30 {
            a.meta.labels.insert(format!("l{i}"), format!("v{i}"));
        }
        let versions: std::collections::BTreeSet<String> = (0..20)
            .map(|_| {
                let mut copy = a.clone();
                if let Spec::Dataplane(dp) = &mut copy.spec
                    && let Some(net) = dp.networking.as_mut()
                {
                    for inbound in &mut net.inbound {
                        // rebuild the map: a fresh HashMap with a fresh hasher seed
                        inbound.tags = inbound.tags.clone().into_iter().collect();
                    }
                }
                to_delta_resource(&copy).version
            })
            .collect();
        assert_eq!(versions.len(), 1, "{versions:?}");
        let mut changed = a.clone();
        changed.meta.labels.insert("l0".into(), "other".into());
        assert!(!versions.contains(&to_delta_resource(&changed).version));
    }

    #[test]
    fn resource_names_split_on_the_last_dot() {
        /// (type, key, expected (mesh, name) or a BadResourceKey error)
        type Case = (
            ResourceType,
            &'static str,
            Option<(&'static str, &'static str)>,
        );
        let cases: &[Case] = &[
            (ResourceType::Mesh, "default.", Some(("", "default"))),
            (ResourceType::Mesh, "a.b.", Some(("", "a.b"))),
            (
                ResourceType::TrafficPermission,
                "tp-1.default",
                Some(("default", "tp-1")),
            ),
            (
                ResourceType::Dataplane,
                "web.v1-abc.mesh-1",
                Some(("mesh-1", "web.v1-abc")),
            ),
            (ResourceType::Mesh, "default", None),
            (ResourceType::Mesh, "x.mesh", None),
            (ResourceType::Dataplane, ".mesh", None),
            (ResourceType::Dataplane, "", None),
        ];
        for (kind, key, expected) in cases {
            let got = parse_resource_name(*kind, key);
            match expected {
                Some((mesh, name)) => {
                    let got = got.unwrap_or_else(|e| panic!("{key:?}: {e}"));
                    assert_eq!((got.mesh.as_str(), got.name.as_str()), (*mesh, *name));
                    assert_eq!(key_name(&got), *key);
                }
                None => assert!(
                    matches!(got, Err(Error::BadResourceKey { .. })),
                    "{key:?}: {got:?}"
                ),
            }
        }
    }

    fn delta_with(kind: ResourceType, wire: &KumaResource) -> DeltaResource {
        let _ = kind;
        DeltaResource {
            name: "x.default".into(),
            version: "v".into(),
            resource: Some(Any {
                type_url: KUMA_RESOURCE_TYPE_URL.into(),
                value: wire.encode_to_vec(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn hostile_envelopes_are_errors_that_name_the_problem() {
        let kind = ResourceType::TrafficPermission;
        let good = to_kuma_resource(&test_util::traffic_permission("default", "x", "a", "b"));

        // not a KumaResource
        let mut delta = delta_with(kind, &good);
        delta.resource.as_mut().expect("any").type_url = "type.googleapis.com/foo.Bar".into();
        let err = from_delta_resource(kind, &delta).expect_err("wrong envelope");
        assert!(matches!(err, Error::WrongEnvelope { .. }), "{err}");
        assert!(err.to_string().contains("TrafficPermission \"x\""), "{err}");
        assert!(err.to_string().contains("foo.Bar"), "{err}");

        // no resource at all
        let mut delta = delta_with(kind, &good);
        delta.resource = None;
        assert!(matches!(
            from_delta_resource(kind, &delta),
            Err(Error::WrongEnvelope { .. })
        ));

        // spec of another type
        let mut wrong = good.clone();
        wrong.spec.as_mut().expect("spec").type_url = spec_type_url(ResourceType::Mesh);
        let err = from_delta_resource(kind, &delta_with(kind, &wrong)).expect_err("mismatch");
        assert!(matches!(err, Error::SpecTypeMismatch { .. }), "{err}");
        assert!(err.to_string().contains("kuma.mesh.v1alpha1.Mesh"), "{err}");

        // undecodable spec bytes
        let mut junk = good.clone();
        junk.spec.as_mut().expect("spec").value = vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f];
        let err = from_delta_resource(kind, &delta_with(kind, &junk)).expect_err("junk");
        assert!(matches!(err, Error::UndecodableSpec { .. }), "{err}");

        // no meta, no spec
        let mut no_meta = good.clone();
        no_meta.meta = None;
        let err = from_delta_resource(kind, &delta_with(kind, &no_meta)).expect_err("meta");
        assert_eq!(
            err,
            Error::MissingMeta {
                kind,
                name: "x".into()
            }
        );
        let mut no_spec = good.clone();
        no_spec.spec = None;
        assert!(matches!(
            from_delta_resource(kind, &delta_with(kind, &no_spec)),
            Err(Error::MissingSpec { .. })
        ));

        // a mesh on a global-scoped type
        let mut meshed = to_kuma_resource(&test_util::mesh("m1"));
        meshed.meta.as_mut().expect("meta").mesh = "default".into();
        assert!(matches!(
            from_delta_resource(ResourceType::Mesh, &delta_with(ResourceType::Mesh, &meshed)),
            Err(Error::MeshOnGlobalType { .. })
        ));

        // unknown type URL on a response
        assert_eq!(
            decode_response("type.googleapis.com/kuma.mesh.v1alpha1.Mesh", &[], &[]),
            Err(Error::UnknownType {
                type_url: "type.googleapis.com/kuma.mesh.v1alpha1.Mesh".into()
            })
        );
    }

    /// xorshift64*: deterministic pseudo-random bytes without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn bytes(&mut self, max: usize) -> Vec<u8> {
            let len = (self.next() as usize) % (max + 1);
            (0..len).map(|_| self.next() as u8).collect()
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let good = to_delta_resource(&test_util::dataplane("m", "dp", "10.0.0.1", &[(1, "a")]));
        let good_bytes = good.resource.as_ref().expect("any").value.clone();
        for i in 0..5000 {
            let kind = ResourceType::ALL[i % ResourceType::ALL.len()];
            // random envelope bytes
            let delta = DeltaResource {
                name: String::from_utf8_lossy(&rng.bytes(12)).into_owned(),
                resource: Some(Any {
                    type_url: KUMA_RESOURCE_TYPE_URL.into(),
                    value: rng.bytes(64),
                }),
                ..Default::default()
            };
            let _ = from_delta_resource(kind, &delta);
            // a valid envelope with flipped bytes
            let mut flipped = good_bytes.clone();
            let at = (rng.next() as usize) % flipped.len();
            flipped[at] ^= rng.next() as u8 | 1;
            let delta = DeltaResource {
                resource: Some(Any {
                    type_url: KUMA_RESOURCE_TYPE_URL.into(),
                    value: flipped,
                }),
                ..Default::default()
            };
            let _ = from_delta_resource(ResourceType::Dataplane, &delta);
            // random spec bytes in a well-formed envelope, right type URL
            let wire = KumaResource {
                meta: Some(WireMeta {
                    name: "x".into(),
                    ..Default::default()
                }),
                spec: Some(Any {
                    type_url: spec_type_url(kind),
                    value: rng.bytes(48),
                }),
                status: None,
            };
            let _ = from_kuma_resource(kind, &wire);
            // random removed keys
            let key = String::from_utf8_lossy(&rng.bytes(16)).into_owned();
            let _ = parse_resource_name(kind, &key);
            // random type URLs
            let url = String::from_utf8_lossy(&rng.bytes(20)).into_owned();
            let _ = decode_response(&url, &[delta_with(kind, &wire)], &[key]);
        }
    }

    #[test]
    fn a_response_decodes_per_resource() {
        let good = to_delta_resource(&test_util::traffic_permission("default", "tp-1", "a", "b"));
        let bad = DeltaResource {
            name: "tp-2.default".into(),
            version: "1".into(),
            resource: Some(Any {
                type_url: KUMA_RESOURCE_TYPE_URL.into(),
                value: vec![0xff; 7],
            }),
            ..Default::default()
        };
        let decoded = decode_response(
            "TrafficPermission",
            &[good, bad],
            &["tp-3.default".into(), "nodot".into()],
        )
        .expect("known type");
        assert_eq!(decoded.kind, ResourceType::TrafficPermission);
        assert_eq!(decoded.resources.len(), 1);
        assert_eq!(
            decoded.removed,
            vec![ResourceKey::new(
                ResourceType::TrafficPermission,
                "default",
                "tp-3"
            )]
        );
        assert_eq!(decoded.rejected.len(), 2);
        let first = &decoded.rejected[0];
        assert_eq!(
            (first.mesh.as_str(), first.name.as_str()),
            ("default", "tp-2")
        );
        assert!(
            first.reason.contains("TrafficPermission \"tp-2\""),
            "{}",
            first.reason
        );
        assert!(decoded.rejected[1].reason.contains("nodot"));
    }

    #[test]
    fn system_secret_bytes_survive() {
        let spec = system_pb::Secret {
            data: Some(envoy_types::pb::google::protobuf::BytesValue {
                value: vec![0, 1, 2, 255],
            }),
        };
        let r = Resource::new("", "s", Spec::GlobalSecret(spec));
        let back = from_delta_resource(ResourceType::GlobalSecret, &to_delta_resource(&r))
            .expect("round trip");
        assert_eq!(back, r);
    }
}
