#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use model::mesh_pb::dataplane::Networking;
use model::mesh_pb::dataplane::networking::Inbound;
use model::mesh_pb::{self, CertificateAuthorityBackend, Dataplane};
use model::{Resource, Spec};
use store::ResourceStore;
use store::memory::MemoryStore;
use x509_parser::extensions::GeneralName;

use super::*;

fn string(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}

fn object(fields: &[(&str, Value)]) -> Value {
    Value {
        kind: Some(Kind::StructValue(Struct {
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).to_string(), v.clone()))
                .collect(),
        })),
    }
}

fn mesh_with(backend: CertificateAuthorityBackend) -> Resource {
    let spec = mesh_pb::Mesh {
        mtls: Some(mesh_pb::mesh::Mtls {
            enabled_backend: backend.name.clone(),
            backends: vec![backend],
            ..Default::default()
        }),
        ..Default::default()
    };
    Resource::new("", "demo", Spec::Mesh(spec))
}

fn builtin_backend(conf: Option<Value>) -> CertificateAuthorityBackend {
    CertificateAuthorityBackend {
        name: "ca-1".into(),
        r#type: BUILTIN.into(),
        conf: conf.map(|v| match v.kind {
            Some(Kind::StructValue(s)) => s,
            _ => panic!("conf must be an object"),
        }),
        ..Default::default()
    }
}

fn provided_backend(cert: Value, key: Value) -> CertificateAuthorityBackend {
    CertificateAuthorityBackend {
        name: "ca-1".into(),
        r#type: PROVIDED.into(),
        conf: match object(&[("cert", cert), ("key", key)]).kind {
            Some(Kind::StructValue(s)) => Some(s),
            _ => None,
        },
        ..Default::default()
    }
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn uris(pem_text: &str) -> Vec<String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem_text.as_bytes()).unwrap();
    let cert = pem.parse_x509().unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some((*u).to_string()),
            _ => None,
        })
        .collect()
}

async fn store_with(resources: Vec<Resource>) -> MemoryStore {
    let store = MemoryStore::new();
    for r in resources {
        store.create(r, None).await.unwrap();
    }
    store
}

#[tokio::test]
async fn a_builtin_ca_is_generated_once_and_loads() {
    let mesh = mesh_with(builtin_backend(None));
    let store = MemoryStore::new();
    let secrets = ca_secrets_to_create(&store, &mesh, now()).await.unwrap();
    let names: Vec<_> = secrets.iter().map(|s| s.meta.name.as_str()).collect();
    assert_eq!(
        names,
        ["demo.ca-builtin-cert-ca-1", "demo.ca-builtin-key-ca-1"]
    );
    assert!(secrets.iter().all(|s| s.meta.mesh == "demo"));

    let err = load(&store, &mesh).await.unwrap_err();
    assert!(matches!(err, CaError::MissingSecret { .. }), "{err}");

    for s in secrets {
        store.create(s, None).await.unwrap();
    }
    assert!(
        ca_secrets_to_create(&store, &mesh, now())
            .await
            .unwrap()
            .is_empty()
    );
    let ca = load(&store, &mesh).await.unwrap().unwrap();
    assert_eq!(uris(&ca.cert_pem), ["spiffe://demo"]);
    let (_, pem) = x509_parser::pem::parse_x509_pem(ca.cert_pem.as_bytes()).unwrap();
    let cert = pem.parse_x509().unwrap();
    assert!(cert.is_ca());
    assert_eq!(cert.subject().to_string(), "O=Kuma, OU=Mesh, CN=demo");
    let years = (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp())
        / (365 * 24 * 3600);
    assert_eq!(years, 10);
    assert!(
        !format!("{ca:?}").contains("PRIVATE"),
        "Debug shows the key"
    );
}

#[tokio::test]
async fn mtls_off_needs_nothing() {
    let mesh = Resource::new("", "demo", Spec::Mesh(mesh_pb::Mesh::default()));
    let store = MemoryStore::new();
    assert!(
        ca_secrets_to_create(&store, &mesh, now())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(load(&store, &mesh).await.unwrap().is_none());
}

#[tokio::test]
async fn bad_builtin_conf_names_the_field() {
    let store = MemoryStore::new();
    let conf = object(&[("caCert", object(&[("RSAbits", string("1000"))]))]);
    let err = ca_secrets_to_create(&store, &mesh_with(builtin_backend(Some(conf))), now())
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("mtls.backends[0].conf.caCert.RSAbits"));
    assert!(
        err.to_string().contains("mesh demo: mTLS backend ca-1"),
        "{err}"
    );

    let conf = object(&[("caCert", object(&[("expiration", string("soon"))]))]);
    let err = ca_secrets_to_create(&store, &mesh_with(builtin_backend(Some(conf))), now())
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("mtls.backends[0].conf.caCert.expiration"));
}

#[tokio::test]
async fn a_provided_ca_loads_from_secrets_inline_and_files() {
    let generated = builtin::generate(
        &BackendRef {
            mesh: "demo",
            backend: &builtin_backend(None),
            path: "mtls.backends[0]".into(),
        },
        now(),
    )
    .unwrap();

    // Secrets.
    let mesh = mesh_with(provided_backend(
        object(&[("secret", string("my-cert"))]),
        object(&[("secret", string("my-key"))]),
    ));
    let store = MemoryStore::new();
    let err = ca_secrets_to_create(&store, &mesh, now())
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("mtls.backends[0].conf.cert.secret"));
    assert!(err.to_string().contains("\"my-cert\" not found"), "{err}");
    let store = store_with(vec![
        secret("demo", "my-cert", generated.cert_pem.as_bytes()),
        secret("demo", "my-key", generated.key_pem.as_bytes()),
    ])
    .await;
    assert!(
        ca_secrets_to_create(&store, &mesh, now())
            .await
            .unwrap()
            .is_empty()
    );
    let ca = load(&store, &mesh).await.unwrap().unwrap();
    assert_eq!(ca.fingerprint(), generated.fingerprint());

    // inline (base64) and inlineString.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&generated.cert_pem);
    let mesh = mesh_with(provided_backend(
        object(&[("inline", string(&b64))]),
        object(&[("inlineString", string(&generated.key_pem))]),
    ));
    let ca = load(&MemoryStore::new(), &mesh).await.unwrap().unwrap();
    assert_eq!(ca.cert_pem, generated.cert_pem);

    // A file.
    let dir = std::env::temp_dir().join(format!("ca-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("key.pem");
    std::fs::write(&path, &generated.key_pem).unwrap();
    let mesh = mesh_with(provided_backend(
        object(&[("inlineString", string(&generated.cert_pem))]),
        object(&[("file", string(path.to_str().unwrap()))]),
    ));
    assert!(load(&MemoryStore::new(), &mesh).await.unwrap().is_some());
    std::fs::remove_dir_all(&dir).unwrap();

    // A key of another CA.
    let other = builtin::generate(
        &BackendRef {
            mesh: "demo",
            backend: &builtin_backend(None),
            path: "mtls.backends[0]".into(),
        },
        now(),
    )
    .unwrap();
    let mesh = mesh_with(provided_backend(
        object(&[("inlineString", string(&generated.cert_pem))]),
        object(&[("inlineString", string(&other.key_pem))]),
    ));
    let err = load(&MemoryStore::new(), &mesh).await.unwrap_err();
    assert!(err.to_string().contains("does not belong"), "{err}");
}

fn dataplane() -> Resource {
    let inbound = |service: &str, version: &str| Inbound {
        port: 8080,
        tags: [
            ("kuma.io/service".to_string(), service.to_string()),
            ("version".to_string(), version.to_string()),
        ]
        .into(),
        ..Default::default()
    };
    Resource::new(
        "demo",
        "web-1",
        Spec::Dataplane(Dataplane {
            networking: Some(Networking {
                address: "10.0.0.1".into(),
                inbound: vec![inbound("web", "v1"), inbound("admin", "v1")],
                ..Default::default()
            }),
            ..Default::default()
        }),
    )
}

#[test]
fn workload_sans_name_services_and_tags() {
    assert_eq!(
        workload_sans(&dataplane()),
        [
            "spiffe://demo/admin",
            "spiffe://demo/web",
            "kuma://kuma.io/service/admin",
            "kuma://kuma.io/service/web",
            "kuma://version/v1",
        ]
    );
}

#[test]
fn a_workload_certificate_carries_the_sans_and_the_validity() {
    let ca = builtin::generate(
        &BackendRef {
            mesh: "demo",
            backend: &builtin_backend(None),
            path: "mtls.backends[0]".into(),
        },
        now(),
    )
    .unwrap();
    let sans = workload_sans(&dataplane());
    let start = now();
    let cert = issue(&ca, &sans, time::Duration::hours(24), start).unwrap();
    assert_eq!(uris(&cert.cert_pem), sans);
    assert_eq!(
        cert.not_after - cert.not_before,
        time::Duration::seconds(24 * 3600 + 10)
    );
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert.cert_pem.as_bytes()).unwrap();
    let parsed = pem.parse_x509().unwrap();
    let eku = parsed.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    assert!(!parsed.is_ca());
    assert_eq!(parsed.issuer().to_string(), "O=Kuma, OU=Mesh, CN=demo");
    // Two issues give two keys and two serials.
    let again = issue(&ca, &sans, time::Duration::hours(24), start).unwrap();
    assert_ne!(again.key_pem, cert.key_pem);
    assert!(!format!("{cert:?}").contains("PRIVATE"));
}

#[test]
fn dp_cert_expiration_defaults_to_a_day() {
    let mut backend = builtin_backend(None);
    assert_eq!(
        workload_validity("demo", 0, &backend).unwrap(),
        time::Duration::hours(24)
    );
    backend.dp_cert = Some(mesh_pb::certificate_authority_backend::DpCert {
        rotation: Some(mesh_pb::certificate_authority_backend::dp_cert::Rotation {
            expiration: "2h".into(),
        }),
        ..Default::default()
    });
    assert_eq!(
        workload_validity("demo", 0, &backend).unwrap(),
        time::Duration::hours(2)
    );
    backend
        .dp_cert
        .as_mut()
        .unwrap()
        .rotation
        .as_mut()
        .unwrap()
        .expiration = "x".into();
    let err = workload_validity("demo", 0, &backend).unwrap_err();
    assert_eq!(
        err.field(),
        Some("mtls.backends[0].dpCert.rotation.expiration")
    );
}

/// Why workload keys are ECDSA: prints what a key of each kind costs here
/// (`cargo nextest run -p ca --no-capture workload_key`).
#[test]
fn workload_key_generation_cost() {
    let time = |f: &dyn Fn()| {
        let start = Instant::now();
        for _ in 0..5 {
            f();
        }
        start.elapsed() / 5
    };
    let rsa = time(&|| {
        rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
            .unwrap();
    });
    let ecdsa = time(&|| {
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    });
    println!("RSA 2048 key: {rsa:?}, ECDSA P-256 key: {ecdsa:?}");
}
