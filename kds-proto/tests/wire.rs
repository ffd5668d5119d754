//! Wire-compatibility checks of the generated types.
//!
//! The "independent" tests describe the Kuma messages with descriptors written
//! out by hand below, with the field numbers taken from the reference spec (not
//! from our `.proto` files), and check that bytes produced by the generated
//! code decode under them field by field, and back.

use std::collections::HashMap;

use envoy_types::pb::google::protobuf::{
    Any, BoolValue, BytesValue, Duration, ListValue, Struct, UInt32Value, Value as PbValue,
    value::Kind,
};
use kds_proto::mesh::v1alpha1 as mesh;
use kds_proto::observability::v1 as obs;
use kds_proto::system::v1alpha1 as system;
use prost::{Message, Name};
use prost_reflect::prost_types::field_descriptor_proto::{Label, Type};
use prost_reflect::prost_types::{
    DescriptorProto, FieldDescriptorProto, FileDescriptorProto, MessageOptions,
};
use prost_reflect::{
    DescriptorPool, DynamicMessage, MapKey, MessageDescriptor, ReflectMessage, Value,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

// ---------------------------------------------------------------------------
// Type URLs
// ---------------------------------------------------------------------------

#[test]
fn type_urls_carry_the_googleapis_domain() {
    let cases = [
        (
            kds_proto::type_url::<mesh::KumaResource>(),
            "kuma.mesh.v1alpha1.KumaResource",
        ),
        (
            kds_proto::type_url::<mesh::Mesh>(),
            "kuma.mesh.v1alpha1.Mesh",
        ),
        (
            kds_proto::type_url::<mesh::Dataplane>(),
            "kuma.mesh.v1alpha1.Dataplane",
        ),
        (
            kds_proto::type_url::<mesh::TrafficRoute>(),
            "kuma.mesh.v1alpha1.TrafficRoute",
        ),
        (
            kds_proto::type_url::<system::Secret>(),
            "kuma.system.v1alpha1.Secret",
        ),
        (
            kds_proto::type_url::<system::Zone>(),
            "kuma.system.v1alpha1.Zone",
        ),
        (
            kds_proto::type_url::<system::ZoneInsight>(),
            "kuma.system.v1alpha1.ZoneInsight",
        ),
        (
            kds_proto::type_url::<obs::MonitoringAssignment>(),
            "kuma.observability.v1.MonitoringAssignment",
        ),
    ];
    for (url, full_name) in cases {
        assert_eq!(url, format!("type.googleapis.com/{full_name}"));
    }
    assert_eq!(
        mesh::Mesh::type_url(),
        "type.googleapis.com/kuma.mesh.v1alpha1.Mesh"
    );
    assert_eq!(
        kds_proto::KUMA_RESOURCE_TYPE_URL,
        mesh::KumaResource::type_url()
    );
    // Nested messages keep the nesting in their full name.
    assert_eq!(
        mesh::dataplane::networking::Inbound::full_name(),
        "kuma.mesh.v1alpha1.Dataplane.Networking.Inbound"
    );
}

#[test]
fn descriptor_pool_knows_our_types_and_their_dependencies() {
    let pool = kds_proto::descriptor_pool();
    for name in [
        mesh::KumaResource::full_name(),
        mesh::Mesh::full_name(),
        mesh::Dataplane::full_name(),
        mesh::ZoneIngress::full_name(),
        mesh::TrafficRoute::full_name(),
        system::Secret::full_name(),
        system::ZoneInsight::full_name(),
        obs::MonitoringAssignment::full_name(),
        "envoy.service.discovery.v3.DeltaDiscoveryRequest".to_owned(),
        "google.protobuf.Struct".to_owned(),
        "google.protobuf.Any".to_owned(),
    ] {
        assert!(
            pool.get_message_by_name(&name).is_some(),
            "{name} missing from the pool"
        );
    }
}

// ---------------------------------------------------------------------------
// Hand-written reference descriptors (package `reference`)
// ---------------------------------------------------------------------------

fn scalar(name: &str, number: i32, ty: Type) -> FieldDescriptorProto {
    FieldDescriptorProto {
        name: Some(name.to_owned()),
        number: Some(number),
        label: Some(Label::Optional as i32),
        r#type: Some(ty as i32),
        json_name: None,
        ..Default::default()
    }
}

fn message(name: &str, number: i32, type_name: &str) -> FieldDescriptorProto {
    FieldDescriptorProto {
        type_name: Some(type_name.to_owned()),
        ..scalar(name, number, Type::Message)
    }
}

fn repeated(mut field: FieldDescriptorProto) -> FieldDescriptorProto {
    field.label = Some(Label::Repeated as i32);
    field
}

/// A `map<string, string>` field named `name`; `entry` is the synthetic entry
/// message that must be nested in the owning message.
fn string_map(
    name: &str,
    number: i32,
    owner: &str,
    entry: &str,
) -> (FieldDescriptorProto, DescriptorProto) {
    let field = repeated(message(name, number, &format!("{owner}.{entry}")));
    let entry = DescriptorProto {
        name: Some(entry.to_owned()),
        field: vec![
            scalar("key", 1, Type::String),
            scalar("value", 2, Type::String),
        ],
        options: Some(MessageOptions {
            map_entry: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    (field, entry)
}

fn msg(
    name: &str,
    field: Vec<FieldDescriptorProto>,
    nested_type: Vec<DescriptorProto>,
) -> DescriptorProto {
    DescriptorProto {
        name: Some(name.to_owned()),
        field,
        nested_type,
        ..Default::default()
    }
}

/// Field numbers as documented in the reference specs (kuma-multizone.md
/// 1.4, 4.1; kuma-api.md 3.1, 3.2, 3.4, 7.1).
fn reference_pool() -> DescriptorPool {
    // KumaResource { Meta meta = 1 { name=1 mesh=2 version=5 labels=6 }, spec=2, status=3 }
    let (meta_labels, meta_labels_entry) =
        string_map("labels", 6, ".reference.KumaResource.Meta", "LabelsEntry");
    let meta = msg(
        "Meta",
        vec![
            scalar("name", 1, Type::String),
            scalar("mesh", 2, Type::String),
            scalar("version", 5, Type::String),
            meta_labels,
        ],
        vec![meta_labels_entry],
    );
    let kuma_resource = msg(
        "KumaResource",
        vec![
            message("meta", 1, ".reference.KumaResource.Meta"),
            message("spec", 2, ".reference.AnyLike"),
            message("status", 3, ".reference.AnyLike"),
        ],
        vec![meta],
    );
    // google.protobuf.Any modelled structurally.
    let any_like = msg(
        "AnyLike",
        vec![
            scalar("type_url", 1, Type::String),
            scalar("value", 2, Type::Bytes),
        ],
        vec![],
    );
    // Mesh { Mtls mtls = 1 { enabledBackend = 1, backends = 2 { name = 1, type = 2 } } }
    let ca_backend = msg(
        "CaBackend",
        vec![
            scalar("name", 1, Type::String),
            scalar("type", 2, Type::String),
        ],
        vec![],
    );
    let mtls = msg(
        "Mtls",
        vec![
            scalar("enabledBackend", 1, Type::String),
            repeated(message("backends", 2, ".reference.Mesh.CaBackend")),
        ],
        vec![],
    );
    let mesh = msg(
        "Mesh",
        vec![message("mtls", 1, ".reference.Mesh.Mtls")],
        vec![mtls, ca_backend],
    );
    // Dataplane { networking = 1 { address = 5, inbound = 1 { port = 3, servicePort = 4, tags = 2 } } }
    let (inbound_tags, inbound_tags_entry) =
        string_map("tags", 2, ".reference.Dataplane.Inbound", "TagsEntry");
    let inbound = msg(
        "Inbound",
        vec![
            scalar("port", 3, Type::Uint32),
            scalar("servicePort", 4, Type::Uint32),
            inbound_tags,
        ],
        vec![inbound_tags_entry],
    );
    let dp_networking = msg(
        "Networking",
        vec![
            scalar("address", 5, Type::String),
            repeated(message("inbound", 1, ".reference.Dataplane.Inbound")),
        ],
        vec![],
    );
    let dataplane = msg(
        "Dataplane",
        vec![message("networking", 1, ".reference.Dataplane.Networking")],
        vec![dp_networking, inbound],
    );
    // Secret { BytesValue data = 1 { bytes value = 1 } }
    let bytes_value = msg(
        "BytesValueLike",
        vec![scalar("value", 1, Type::Bytes)],
        vec![],
    );
    let secret = msg(
        "Secret",
        vec![message("data", 1, ".reference.BytesValueLike")],
        vec![],
    );
    // ZoneIngress { zone = 1, networking = 2 { advertisedAddress = 2, advertisedPort = 4 },
    //               availableServices = 3 { tags = 1, instances = 2, mesh = 3 } }
    let (svc_tags, svc_tags_entry) = string_map(
        "tags",
        1,
        ".reference.ZoneIngress.AvailableService",
        "TagsEntry",
    );
    let available_service = msg(
        "AvailableService",
        vec![
            svc_tags,
            scalar("instances", 2, Type::Uint32),
            scalar("mesh", 3, Type::String),
        ],
        vec![svc_tags_entry],
    );
    let zi_networking = msg(
        "Networking",
        vec![
            scalar("advertisedAddress", 2, Type::String),
            scalar("advertisedPort", 4, Type::Uint32),
        ],
        vec![],
    );
    let zone_ingress = msg(
        "ZoneIngress",
        vec![
            scalar("zone", 1, Type::String),
            message("networking", 2, ".reference.ZoneIngress.Networking"),
            repeated(message(
                "availableServices",
                3,
                ".reference.ZoneIngress.AvailableService",
            )),
        ],
        vec![zi_networking, available_service],
    );
    // MonitoringAssignment { mesh = 2, service = 3, targets = 4 { name = 1, scheme = 2,
    //   address = 3, metrics_path = 4, labels = 5 }, labels = 5 }
    let (target_labels, target_labels_entry) = string_map(
        "labels",
        5,
        ".reference.MonitoringAssignment.Target",
        "LabelsEntry",
    );
    let target = msg(
        "Target",
        vec![
            scalar("name", 1, Type::String),
            scalar("scheme", 2, Type::String),
            scalar("address", 3, Type::String),
            scalar("metrics_path", 4, Type::String),
            target_labels,
        ],
        vec![target_labels_entry],
    );
    let (ma_labels, ma_labels_entry) = string_map(
        "labels",
        5,
        ".reference.MonitoringAssignment",
        "LabelsEntry",
    );
    let assignment = msg(
        "MonitoringAssignment",
        vec![
            scalar("mesh", 2, Type::String),
            scalar("service", 3, Type::String),
            repeated(message(
                "targets",
                4,
                ".reference.MonitoringAssignment.Target",
            )),
            ma_labels,
        ],
        vec![target, ma_labels_entry],
    );

    let file = FileDescriptorProto {
        name: Some("reference.proto".to_owned()),
        package: Some("reference".to_owned()),
        syntax: Some("proto3".to_owned()),
        message_type: vec![
            kuma_resource,
            any_like,
            mesh,
            dataplane,
            bytes_value,
            secret,
            zone_ingress,
            assignment,
        ],
        ..Default::default()
    };
    let mut pool = DescriptorPool::new();
    pool.add_file_descriptor_proto(file)
        .expect("hand-written reference descriptor is valid");
    pool
}

fn reference(name: &str) -> MessageDescriptor {
    reference_pool()
        .get_message_by_name(&format!("reference.{name}"))
        .unwrap_or_else(|| panic!("reference.{name} is defined"))
}

// --- small accessors on DynamicMessage, by field number ---

fn field(msg: &DynamicMessage, number: u32) -> Value {
    assert!(
        msg.descriptor().get_field(number).is_some(),
        "no field {number}"
    );
    assert!(
        msg.has_field_by_number(number),
        "field {number} of {} not set",
        msg.descriptor().full_name()
    );
    msg.get_field_by_number(number)
        .expect("field exists")
        .into_owned()
}

fn str_field(msg: &DynamicMessage, number: u32) -> String {
    field(msg, number)
        .as_str()
        .expect("string field")
        .to_owned()
}

fn u32_field(msg: &DynamicMessage, number: u32) -> u32 {
    field(msg, number).as_u32().expect("uint32 field")
}

fn bytes_field(msg: &DynamicMessage, number: u32) -> Vec<u8> {
    field(msg, number).as_bytes().expect("bytes field").to_vec()
}

fn msg_field(msg: &DynamicMessage, number: u32) -> DynamicMessage {
    field(msg, number)
        .as_message()
        .expect("message field")
        .clone()
}

fn list_field(msg: &DynamicMessage, number: u32) -> Vec<DynamicMessage> {
    field(msg, number)
        .as_list()
        .expect("repeated field")
        .iter()
        .map(|v| v.as_message().expect("message element").clone())
        .collect()
}

fn string_map_field(msg: &DynamicMessage, number: u32) -> HashMap<String, String> {
    field(msg, number)
        .as_map()
        .expect("map field")
        .iter()
        .map(|(k, v)| match k {
            MapKey::String(k) => (k.clone(), v.as_str().expect("string value").to_owned()),
            other => panic!("unexpected key {other:?}"),
        })
        .collect()
}

/// Decodes `bytes` under the reference descriptor `name`, insisting that
/// every field the generated code wrote is a field the reference knows.
fn decode_reference(name: &str, bytes: &[u8]) -> DynamicMessage {
    let msg = DynamicMessage::decode(reference(name), bytes)
        .expect("decodes under the reference descriptor");
    assert_no_unknown_fields(&msg);
    msg
}

fn assert_no_unknown_fields(msg: &DynamicMessage) {
    let unknown: Vec<u32> = msg.unknown_fields().map(|f| f.number()).collect();
    assert!(
        unknown.is_empty(),
        "{} has fields unknown to the reference: {unknown:?}",
        msg.descriptor().full_name()
    );
    for (_, value) in msg.fields() {
        match value {
            Value::Message(m) => assert_no_unknown_fields(m),
            Value::List(items) => items
                .iter()
                .filter_map(Value::as_message)
                .for_each(assert_no_unknown_fields),
            Value::Map(entries) => entries
                .values()
                .filter_map(Value::as_message)
                .for_each(assert_no_unknown_fields),
            _ => {}
        }
    }
}

fn tags(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn sample_mesh() -> mesh::Mesh {
    mesh::Mesh {
        mtls: Some(mesh::mesh::Mtls {
            enabled_backend: "ca-1".into(),
            backends: vec![mesh::CertificateAuthorityBackend {
                name: "ca-1".into(),
                r#type: "builtin".into(),
                ..Default::default()
            }],
            skip_validation: false,
        }),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------
// Independent descriptor checks
// ---------------------------------------------------------------------------

#[test]
fn kuma_resource_matches_reference_numbers() -> TestResult {
    let spec = sample_mesh();
    let resource = mesh::KumaResource {
        meta: Some(mesh::kuma_resource::Meta {
            name: "default".into(),
            mesh: "default".into(),
            version: "7".into(),
            labels: tags(&[("kuma.io/origin", "global")]),
        }),
        spec: Some(Any {
            type_url: mesh::Mesh::type_url(),
            value: spec.encode_to_vec(),
        }),
        status: Some(Any {
            type_url: String::new(),
            value: b"{}".to_vec(),
        }),
    };
    let bytes = resource.encode_to_vec();

    let decoded = decode_reference("KumaResource", &bytes);
    let meta = msg_field(&decoded, 1);
    assert_eq!(str_field(&meta, 1), "default");
    assert_eq!(str_field(&meta, 2), "default");
    assert_eq!(str_field(&meta, 5), "7");
    assert_eq!(
        string_map_field(&meta, 6),
        tags(&[("kuma.io/origin", "global")])
    );

    let any = msg_field(&decoded, 2);
    assert_eq!(
        str_field(&any, 1),
        "type.googleapis.com/kuma.mesh.v1alpha1.Mesh"
    );
    let spec_ref = decode_reference("Mesh", &bytes_field(&any, 2));
    let mtls = msg_field(&spec_ref, 1);
    assert_eq!(str_field(&mtls, 1), "ca-1");
    let backends = list_field(&mtls, 2);
    assert_eq!(backends.len(), 1);
    assert_eq!(str_field(&backends[0], 1), "ca-1");
    assert_eq!(str_field(&backends[0], 2), "builtin");

    let status = msg_field(&decoded, 3);
    assert_eq!(bytes_field(&status, 2), b"{}");

    // And back: bytes written from the reference descriptor decode into ours.
    let back = mesh::KumaResource::decode(decoded.encode_to_vec().as_slice())?;
    assert_eq!(back, resource);
    let back_spec = mesh::Mesh::decode(
        back.spec
            .as_ref()
            .map(|a| a.value.as_slice())
            .unwrap_or_default(),
    )?;
    assert_eq!(back_spec, spec);
    Ok(())
}

#[test]
fn dataplane_matches_reference_numbers() -> TestResult {
    let dp = mesh::Dataplane {
        networking: Some(mesh::dataplane::Networking {
            address: "10.0.0.1".into(),
            inbound: vec![mesh::dataplane::networking::Inbound {
                port: 10001,
                service_port: 8080,
                tags: tags(&[("kuma.io/service", "backend"), ("kuma.io/protocol", "http")]),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let decoded = decode_reference("Dataplane", &dp.encode_to_vec());
    let networking = msg_field(&decoded, 1);
    assert_eq!(str_field(&networking, 5), "10.0.0.1");
    let inbound = list_field(&networking, 1);
    assert_eq!(inbound.len(), 1);
    assert_eq!(u32_field(&inbound[0], 3), 10001);
    assert_eq!(u32_field(&inbound[0], 4), 8080);
    assert_eq!(
        string_map_field(&inbound[0], 2),
        tags(&[("kuma.io/service", "backend"), ("kuma.io/protocol", "http")])
    );
    assert_eq!(
        mesh::Dataplane::decode(decoded.encode_to_vec().as_slice())?,
        dp
    );
    Ok(())
}

#[test]
fn secret_matches_reference_numbers() -> TestResult {
    let secret = system::Secret {
        data: Some(BytesValue {
            value: b"s3cr3t".to_vec(),
        }),
    };
    let decoded = decode_reference("Secret", &secret.encode_to_vec());
    let data = msg_field(&decoded, 1);
    assert_eq!(bytes_field(&data, 1), b"s3cr3t");
    assert_eq!(
        system::Secret::decode(decoded.encode_to_vec().as_slice())?,
        secret
    );
    Ok(())
}

#[test]
fn zone_ingress_matches_reference_numbers() -> TestResult {
    let zi = mesh::ZoneIngress {
        zone: "zone-1".into(),
        networking: Some(mesh::zone_ingress::Networking {
            advertised_address: "203.0.113.7".into(),
            advertised_port: 10001,
            ..Default::default()
        }),
        available_services: vec![mesh::zone_ingress::AvailableService {
            tags: tags(&[("kuma.io/service", "backend")]),
            instances: 3,
            mesh: "default".into(),
            external_service: false,
        }],
    };
    let decoded = decode_reference("ZoneIngress", &zi.encode_to_vec());
    assert_eq!(str_field(&decoded, 1), "zone-1");
    let networking = msg_field(&decoded, 2);
    assert_eq!(str_field(&networking, 2), "203.0.113.7");
    assert_eq!(u32_field(&networking, 4), 10001);
    let services = list_field(&decoded, 3);
    assert_eq!(services.len(), 1);
    assert_eq!(
        string_map_field(&services[0], 1),
        tags(&[("kuma.io/service", "backend")])
    );
    assert_eq!(u32_field(&services[0], 2), 3);
    assert_eq!(str_field(&services[0], 3), "default");
    assert_eq!(
        mesh::ZoneIngress::decode(decoded.encode_to_vec().as_slice())?,
        zi
    );
    Ok(())
}

#[test]
fn monitoring_assignment_matches_reference_numbers() -> TestResult {
    let assignment = obs::MonitoringAssignment {
        mesh: "default".into(),
        service: "backend".into(),
        targets: vec![obs::monitoring_assignment::Target {
            name: "backend-01".into(),
            scheme: "http".into(),
            address: "10.0.0.1:5670".into(),
            metrics_path: "/metrics".into(),
            labels: tags(&[("kuma_io_service", "backend")]),
        }],
        labels: tags(&[("team", "core")]),
    };
    let decoded = decode_reference("MonitoringAssignment", &assignment.encode_to_vec());
    assert_eq!(str_field(&decoded, 2), "default");
    assert_eq!(str_field(&decoded, 3), "backend");
    assert_eq!(string_map_field(&decoded, 5), tags(&[("team", "core")]));
    let targets = list_field(&decoded, 4);
    assert_eq!(targets.len(), 1);
    assert_eq!(str_field(&targets[0], 1), "backend-01");
    assert_eq!(str_field(&targets[0], 2), "http");
    assert_eq!(str_field(&targets[0], 3), "10.0.0.1:5670");
    assert_eq!(str_field(&targets[0], 4), "/metrics");
    assert_eq!(
        string_map_field(&targets[0], 5),
        tags(&[("kuma_io_service", "backend")])
    );
    assert_eq!(
        obs::MonitoringAssignment::decode(decoded.encode_to_vec().as_slice())?,
        assignment
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// gRPC services
// ---------------------------------------------------------------------------

#[test]
fn service_names_and_method_paths() {
    use tonic::server::NamedService;

    use mesh::global_kds_service_server::GlobalKdsServiceServer;
    use mesh::kds_sync_service_server::KdsSyncServiceServer;
    use obs::monitoring_assignment_discovery_service_server::MonitoringAssignmentDiscoveryServiceServer;

    assert_eq!(
        <KdsSyncServiceServer<SyncImpl> as NamedService>::NAME,
        "kuma.mesh.v1alpha1.KDSSyncService"
    );
    assert_eq!(
        <GlobalKdsServiceServer<GlobalImpl> as NamedService>::NAME,
        "kuma.mesh.v1alpha1.GlobalKDSService"
    );
    assert_eq!(
        mesh::kds_sync_service_server::SERVICE_NAME,
        "kuma.mesh.v1alpha1.KDSSyncService"
    );
    assert_eq!(
        mesh::global_kds_service_server::SERVICE_NAME,
        "kuma.mesh.v1alpha1.GlobalKDSService"
    );
    assert_eq!(
        <MonitoringAssignmentDiscoveryServiceServer<MadsImpl> as NamedService>::NAME,
        "kuma.observability.v1.MonitoringAssignmentDiscoveryService"
    );

    // The exact paths the generated client dials and the server routes.
    let generated = include_str!(concat!(env!("OUT_DIR"), "/kuma.mesh.v1alpha1.rs"));
    for path in [
        "/kuma.mesh.v1alpha1.KDSSyncService/GlobalToZoneSync",
        "/kuma.mesh.v1alpha1.KDSSyncService/ZoneToGlobalSync",
        "/kuma.mesh.v1alpha1.GlobalKDSService/StreamXDSConfigs",
        "/kuma.mesh.v1alpha1.GlobalKDSService/StreamStats",
        "/kuma.mesh.v1alpha1.GlobalKDSService/StreamClusters",
        "/kuma.mesh.v1alpha1.GlobalKDSService/HealthCheck",
    ] {
        // Once in the client, once in the server's router.
        assert_eq!(
            generated.matches(&format!("\"{path}\"")).count(),
            2,
            "{path}"
        );
    }
    let generated = include_str!(concat!(env!("OUT_DIR"), "/kuma.observability.v1.rs"));
    assert_eq!(
        generated
            .matches("\"/kuma.observability.v1.MonitoringAssignmentDiscoveryService/FetchMonitoringAssignments\"")
            .count(),
        2
    );
}

#[test]
fn service_signatures_in_the_descriptor() {
    let pool = kds_proto::descriptor_pool();
    let expect = [
        // (service, method, input, output)
        (
            "kuma.mesh.v1alpha1.KDSSyncService",
            "GlobalToZoneSync",
            "envoy.service.discovery.v3.DeltaDiscoveryRequest",
            "envoy.service.discovery.v3.DeltaDiscoveryResponse",
        ),
        (
            "kuma.mesh.v1alpha1.KDSSyncService",
            "ZoneToGlobalSync",
            "envoy.service.discovery.v3.DeltaDiscoveryResponse",
            "envoy.service.discovery.v3.DeltaDiscoveryRequest",
        ),
        (
            "kuma.mesh.v1alpha1.GlobalKDSService",
            "StreamXDSConfigs",
            "kuma.mesh.v1alpha1.XDSConfigResponse",
            "kuma.mesh.v1alpha1.XDSConfigRequest",
        ),
        (
            "kuma.mesh.v1alpha1.GlobalKDSService",
            "StreamStats",
            "kuma.mesh.v1alpha1.StatsResponse",
            "kuma.mesh.v1alpha1.StatsRequest",
        ),
        (
            "kuma.mesh.v1alpha1.GlobalKDSService",
            "StreamClusters",
            "kuma.mesh.v1alpha1.ClustersResponse",
            "kuma.mesh.v1alpha1.ClustersRequest",
        ),
        (
            "kuma.mesh.v1alpha1.GlobalKDSService",
            "HealthCheck",
            "kuma.mesh.v1alpha1.ZoneHealthCheckRequest",
            "kuma.mesh.v1alpha1.ZoneHealthCheckResponse",
        ),
        (
            "kuma.observability.v1.MonitoringAssignmentDiscoveryService",
            "FetchMonitoringAssignments",
            "envoy.service.discovery.v3.DiscoveryRequest",
            "envoy.service.discovery.v3.DiscoveryResponse",
        ),
    ];
    for (service, method, input, output) in expect {
        let svc = pool.get_service_by_name(service).expect(service);
        let m = svc
            .methods()
            .find(|m| m.name() == method)
            .unwrap_or_else(|| panic!("{service}/{method}"));
        assert_eq!(m.input().full_name(), input, "{method} input");
        assert_eq!(m.output().full_name(), output, "{method} output");
        let streaming = !matches!(method, "HealthCheck" | "FetchMonitoringAssignments");
        assert_eq!(
            m.is_client_streaming(),
            streaming,
            "{method} client streaming"
        );
        assert_eq!(
            m.is_server_streaming(),
            streaming,
            "{method} server streaming"
        );
    }
    assert_eq!(
        pool.get_service_by_name("kuma.mesh.v1alpha1.KDSSyncService")
            .map(|s| s.methods().len()),
        Some(2)
    );
    assert_eq!(
        pool.get_service_by_name("kuma.mesh.v1alpha1.GlobalKDSService")
            .map(|s| s.methods().len()),
        Some(4)
    );
}

// Minimal service implementations, used for the names above and the
// loopback round trip below.

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource,
};
use std::pin::Pin;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

struct SyncImpl;

#[tonic::async_trait]
impl mesh::kds_sync_service_server::KdsSyncService for SyncImpl {
    type GlobalToZoneSyncStream = BoxStream<DeltaDiscoveryResponse>;
    type ZoneToGlobalSyncStream = BoxStream<DeltaDiscoveryRequest>;

    async fn global_to_zone_sync(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::GlobalToZoneSyncStream>, Status> {
        // Answer each subscription with one Mesh wrapped in a KumaResource.
        let out = request.into_inner().map(|req| {
            let req = req?;
            let resource = mesh::KumaResource {
                meta: Some(mesh::kuma_resource::Meta {
                    name: "default".into(),
                    ..Default::default()
                }),
                spec: Some(Any {
                    type_url: mesh::Mesh::type_url(),
                    value: sample_mesh().encode_to_vec(),
                }),
                status: None,
            };
            Ok(DeltaDiscoveryResponse {
                type_url: req.type_url,
                nonce: "1".into(),
                resources: vec![Resource {
                    name: "default".into(),
                    version: "v1".into(),
                    resource: Some(Any {
                        type_url: kds_proto::KUMA_RESOURCE_TYPE_URL.into(),
                        value: resource.encode_to_vec(),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            })
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn zone_to_global_sync(
        &self,
        _request: Request<Streaming<DeltaDiscoveryResponse>>,
    ) -> Result<Response<Self::ZoneToGlobalSyncStream>, Status> {
        Err(Status::unimplemented("test"))
    }
}

struct GlobalImpl;

#[tonic::async_trait]
impl mesh::global_kds_service_server::GlobalKdsService for GlobalImpl {
    type StreamXDSConfigsStream = BoxStream<mesh::XdsConfigRequest>;
    type StreamStatsStream = BoxStream<mesh::StatsRequest>;
    type StreamClustersStream = BoxStream<mesh::ClustersRequest>;

    async fn stream_xds_configs(
        &self,
        _request: Request<Streaming<mesh::XdsConfigResponse>>,
    ) -> Result<Response<Self::StreamXDSConfigsStream>, Status> {
        Err(Status::unimplemented("test"))
    }

    async fn stream_stats(
        &self,
        _request: Request<Streaming<mesh::StatsResponse>>,
    ) -> Result<Response<Self::StreamStatsStream>, Status> {
        Err(Status::unimplemented("test"))
    }

    async fn stream_clusters(
        &self,
        _request: Request<Streaming<mesh::ClustersResponse>>,
    ) -> Result<Response<Self::StreamClustersStream>, Status> {
        Err(Status::unimplemented("test"))
    }

    async fn health_check(
        &self,
        _request: Request<mesh::ZoneHealthCheckRequest>,
    ) -> Result<Response<mesh::ZoneHealthCheckResponse>, Status> {
        Ok(Response::new(mesh::ZoneHealthCheckResponse {
            interval: Some(Duration {
                seconds: 5,
                nanos: 0,
            }),
            ..Default::default()
        }))
    }
}

struct MadsImpl;

#[tonic::async_trait]
impl obs::monitoring_assignment_discovery_service_server::MonitoringAssignmentDiscoveryService
    for MadsImpl
{
    async fn fetch_monitoring_assignments(
        &self,
        _request: Request<DiscoveryRequest>,
    ) -> Result<Response<DiscoveryResponse>, Status> {
        Err(Status::unimplemented("test"))
    }
}

#[tokio::test]
async fn kds_loopback_round_trip() -> TestResult {
    use mesh::global_kds_service_client::GlobalKdsServiceClient;
    use mesh::global_kds_service_server::GlobalKdsServiceServer;
    use mesh::kds_sync_service_client::KdsSyncServiceClient;
    use mesh::kds_sync_service_server::KdsSyncServiceServer;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(KdsSyncServiceServer::new(SyncImpl))
            .add_service(GlobalKdsServiceServer::new(GlobalImpl))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;

    let health = GlobalKdsServiceClient::new(channel.clone())
        .health_check(mesh::ZoneHealthCheckRequest::default())
        .await?
        .into_inner();
    assert_eq!(
        health.interval,
        Some(Duration {
            seconds: 5,
            nanos: 0
        })
    );

    let request = DeltaDiscoveryRequest {
        type_url: "Mesh".into(),
        ..Default::default()
    };
    let mut responses = KdsSyncServiceClient::new(channel)
        .global_to_zone_sync(tokio_stream::iter(vec![request]))
        .await?
        .into_inner();
    let first = responses.message().await?.ok_or("no response")?;
    assert_eq!(first.type_url, "Mesh");
    let any = first.resources[0].resource.as_ref().ok_or("no resource")?;
    assert_eq!(any.type_url, kds_proto::KUMA_RESOURCE_TYPE_URL);
    let resource = mesh::KumaResource::decode(any.value.as_slice())?;
    let spec = resource.spec.ok_or("no spec")?;
    assert_eq!(spec.type_url, "type.googleapis.com/kuma.mesh.v1alpha1.Mesh");
    assert_eq!(mesh::Mesh::decode(spec.value.as_slice())?, sample_mesh());

    server.abort();
    Ok(())
}

// ---------------------------------------------------------------------------
// Canonical proto3 JSON through prost-reflect
// ---------------------------------------------------------------------------

fn pb_string(s: &str) -> PbValue {
    PbValue {
        kind: Some(Kind::StringValue(s.to_owned())),
    }
}

fn pb_struct(fields: Vec<(&str, PbValue)>) -> Struct {
    Struct {
        fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    }
}

fn to_json<M: Message + Name>(
    message: &M,
) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let desc = kds_proto::descriptor_pool()
        .get_message_by_name(&M::full_name())
        .ok_or("not in pool")?;
    let dynamic = DynamicMessage::decode(desc, message.encode_to_vec().as_slice())?;
    Ok(serde_json::to_value(&dynamic)?)
}

fn from_json<M: Message + Name + Default>(
    json: &serde_json::Value,
) -> Result<M, Box<dyn std::error::Error>> {
    let desc = kds_proto::descriptor_pool()
        .get_message_by_name(&M::full_name())
        .ok_or("not in pool")?;
    let dynamic = DynamicMessage::deserialize(desc, json)?;
    Ok(M::decode(dynamic.encode_to_vec().as_slice())?)
}

#[test]
fn mesh_json_round_trip() -> TestResult {
    let ca_conf = pb_struct(vec![(
        "caCert",
        PbValue {
            kind: Some(Kind::StructValue(pb_struct(vec![
                (
                    "RSAbits",
                    PbValue {
                        kind: Some(Kind::NumberValue(2048.0)),
                    },
                ),
                ("expiration", pb_string("10y")),
            ]))),
        },
    )]);
    let spec = mesh::Mesh {
        mtls: Some(mesh::mesh::Mtls {
            enabled_backend: "ca-1".into(),
            backends: vec![mesh::CertificateAuthorityBackend {
                name: "ca-1".into(),
                r#type: "builtin".into(),
                dp_cert: Some(mesh::certificate_authority_backend::DpCert {
                    rotation: Some(mesh::certificate_authority_backend::dp_cert::Rotation {
                        expiration: "1d".into(),
                    }),
                    request_timeout: Some(Duration {
                        seconds: 5,
                        nanos: 0,
                    }),
                }),
                conf: Some(ca_conf),
                mode: mesh::certificate_authority_backend::Mode::Permissive as i32,
                root_chain: None,
            }],
            skip_validation: false,
        }),
        networking: Some(mesh::Networking {
            outbound: Some(mesh::networking::Outbound {
                passthrough: Some(BoolValue { value: false }),
            }),
        }),
        logging: Some(mesh::Logging {
            default_backend: "file".into(),
            backends: vec![mesh::LoggingBackend {
                name: "file".into(),
                r#type: "file".into(),
                conf: Some(pb_struct(vec![(
                    "tags",
                    PbValue {
                        kind: Some(Kind::ListValue(ListValue {
                            values: vec![
                                pb_string("a"),
                                PbValue {
                                    kind: Some(Kind::BoolValue(true)),
                                },
                            ],
                        })),
                    },
                )])),
                ..Default::default()
            }],
        }),
        skip_creating_initial_policies: vec!["*".into()],
        mesh_services: Some(mesh::mesh::MeshServices {
            mode: mesh::mesh::mesh_services::Mode::Exclusive as i32,
        }),
        ..Default::default()
    };

    let json = to_json(&spec)?;
    let backend = &json["mtls"]["backends"][0];
    assert_eq!(json["mtls"]["enabledBackend"], "ca-1");
    assert_eq!(backend["type"], "builtin");
    assert_eq!(backend["mode"], "PERMISSIVE");
    assert_eq!(backend["dpCert"]["rotation"]["expiration"], "1d");
    assert_eq!(backend["dpCert"]["requestTimeout"], "5s");
    // Struct is a plain JSON object. (Numbers come out as JSON floats.)
    assert_eq!(backend["conf"]["caCert"]["expiration"], "10y");
    assert_eq!(backend["conf"]["caCert"]["RSAbits"].as_f64(), Some(2048.0));
    assert_eq!(
        json["logging"]["backends"][0]["conf"]["tags"],
        serde_json::json!(["a", true])
    );
    // BoolValue is a bare boolean, even when false.
    assert_eq!(json["networking"]["outbound"]["passthrough"], false);
    assert_eq!(
        json["skipCreatingInitialPolicies"],
        serde_json::json!(["*"])
    );
    assert_eq!(json["meshServices"]["mode"], "Exclusive");
    // Defaults are omitted.
    assert!(json["mtls"].get("skipValidation").is_none());
    assert!(json.get("tracing").is_none());

    assert_eq!(from_json::<mesh::Mesh>(&json)?, spec);

    // Kuma-style input (integers in Struct, snake_case accepted too).
    let input = serde_json::json!({
        "mtls": {
            "enabledBackend": "ca-1",
            "backends": [{"name": "ca-1", "type": "builtin", "conf": {"caCert": {"RSAbits": 2048}}}]
        },
        "networking": {"outbound": {"passthrough": true}}
    });
    let parsed: mesh::Mesh = from_json(&input)?;
    assert_eq!(
        parsed
            .networking
            .and_then(|n| n.outbound)
            .and_then(|o| o.passthrough),
        Some(BoolValue { value: true })
    );
    Ok(())
}

#[test]
fn secret_json_round_trip() -> TestResult {
    let secret = system::Secret {
        data: Some(BytesValue {
            value: b"hello kuma".to_vec(),
        }),
    };
    let json = to_json(&secret)?;
    assert_eq!(json, serde_json::json!({"data": "aGVsbG8ga3VtYQ=="}));
    assert_eq!(from_json::<system::Secret>(&json)?, secret);
    Ok(())
}

#[test]
fn dataplane_json_uses_camel_case_and_bare_wrappers() -> TestResult {
    let dp = mesh::Dataplane {
        networking: Some(mesh::dataplane::Networking {
            address: "10.0.0.1".into(),
            inbound: vec![mesh::dataplane::networking::Inbound {
                port: 10001,
                service_port: 8080,
                tags: tags(&[("kuma.io/service", "backend")]),
                service_probe: Some(mesh::dataplane::networking::inbound::ServiceProbe {
                    interval: Some(Duration {
                        seconds: 1,
                        nanos: 500_000_000,
                    }),
                    unhealthy_threshold: Some(UInt32Value { value: 3 }),
                    tcp: Some(mesh::dataplane::networking::inbound::service_probe::Tcp {}),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            transparent_proxying: Some(mesh::dataplane::networking::TransparentProxying {
                redirect_port_inbound: 15006,
                redirect_port_outbound: 15001,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let json = to_json(&dp)?;
    let inbound = &json["networking"]["inbound"][0];
    assert_eq!(inbound["servicePort"], 8080);
    assert_eq!(inbound["serviceProbe"]["interval"], "1.500s");
    assert_eq!(inbound["serviceProbe"]["unhealthyThreshold"], 3);
    assert_eq!(inbound["serviceProbe"]["tcp"], serde_json::json!({}));
    assert_eq!(
        json["networking"]["transparentProxying"]["redirectPortInbound"],
        15006
    );
    assert_eq!(from_json::<mesh::Dataplane>(&json)?, dp);

    // snake_case input is accepted as well.
    let snake = serde_json::json!({"networking": {"transparent_proxying": {"redirect_port_outbound": 15001}}});
    let parsed: mesh::Dataplane = from_json(&snake)?;
    assert_eq!(
        parsed
            .networking
            .and_then(|n| n.transparent_proxying)
            .map(|t| t.redirect_port_outbound),
        Some(15001)
    );
    Ok(())
}

#[test]
fn mads_discovery_response_json_embeds_assignments_with_type() -> TestResult {
    let assignment = obs::MonitoringAssignment {
        mesh: "default".into(),
        service: "backend".into(),
        targets: vec![obs::monitoring_assignment::Target {
            name: "backend-01".into(),
            scheme: "http".into(),
            address: "10.0.0.1:5670".into(),
            metrics_path: "/metrics".into(),
            labels: HashMap::new(),
        }],
        labels: HashMap::new(),
    };
    let response = DiscoveryResponse {
        version_info: "v1".into(),
        type_url: obs::MonitoringAssignment::type_url(),
        resources: vec![Any {
            type_url: obs::MonitoringAssignment::type_url(),
            value: assignment.encode_to_vec(),
        }],
        ..Default::default()
    };
    let desc = kds_proto::descriptor_pool()
        .get_message_by_name("envoy.service.discovery.v3.DiscoveryResponse")
        .ok_or("no DiscoveryResponse")?;
    let dynamic = DynamicMessage::decode(desc, response.encode_to_vec().as_slice())?;
    // Kuma's MADS answers with the original (snake_case) field names.
    let options = prost_reflect::SerializeOptions::new().use_proto_field_name(true);
    let json = dynamic.serialize_with_options(serde_json::value::Serializer, &options)?;
    assert_eq!(json["version_info"], "v1");
    let resource = &json["resources"][0];
    assert_eq!(
        resource["@type"],
        "type.googleapis.com/kuma.observability.v1.MonitoringAssignment"
    );
    assert_eq!(resource["targets"][0]["metrics_path"], "/metrics");
    assert_eq!(resource["mesh"], "default");
    Ok(())
}
