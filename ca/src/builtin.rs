//! The `builtin` backend: a CA the control plane generates once per mesh and
//! backend, kept as two mesh Secrets (reference: `kuma-api.md` §3.1).
//!
//! `conf: {caCert: {RSAbits: 2048, expiration: "10y"}}`: the CA key is RSA
//! of `RSAbits` (2048, 3072 or 4096; default 2048), the certificate is
//! self-signed, `O=Kuma, OU=Mesh, CN={mesh}`, URI SAN `spiffe://{mesh}`, a
//! CA (key usages cert sign, CRL sign, digital signature), valid from now
//! for `expiration` (default 10 years).

use envoy_types::pb::google::protobuf::value::Kind;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    RsaKeySize, SanType,
};
use store::ResourceStore;

use crate::{BackendRef, CaError, MeshCa, parse_duration, secret, secret_data, struct_str};

/// Default validity of a builtin CA.
const DEFAULT_CA_VALIDITY: &str = "10y";

/// `{mesh}.ca-builtin-cert-{backend}`: the CA certificate, PEM.
pub fn cert_secret_name(mesh: &str, backend: &str) -> String {
    format!("{mesh}.ca-builtin-cert-{backend}")
}

/// `{mesh}.ca-builtin-key-{backend}`: the CA private key, PEM.
pub fn key_secret_name(mesh: &str, backend: &str) -> String {
    format!("{mesh}.ca-builtin-key-{backend}")
}

/// Generates the CA of a builtin backend, valid from `now`.
pub(crate) fn generate(at: &BackendRef<'_>, now: time::OffsetDateTime) -> Result<MeshCa, CaError> {
    let ca_cert = match at.conf("caCert").and_then(|v| v.kind.as_ref()) {
        None | Some(Kind::NullValue(_)) => None,
        Some(Kind::StructValue(s)) => Some(s),
        Some(_) => return Err(at.invalid("conf.caCert", "must be an object")),
    };
    let bits = match ca_cert
        .and_then(|c| c.fields.get("RSAbits"))
        .and_then(|v| v.kind.as_ref())
    {
        None | Some(Kind::NullValue(_)) => 2048.0,
        Some(Kind::NumberValue(n)) => *n,
        Some(Kind::StringValue(s)) => s
            .parse()
            .map_err(|_| at.invalid("conf.caCert.RSAbits", format!("{s:?} is not a number")))?,
        Some(_) => return Err(at.invalid("conf.caCert.RSAbits", "must be a number")),
    };
    let size = match bits {
        0.0 | 2048.0 => RsaKeySize::_2048,
        3072.0 => RsaKeySize::_3072,
        4096.0 => RsaKeySize::_4096,
        other => {
            return Err(at.invalid(
                "conf.caCert.RSAbits",
                format!("{other} is not supported: use 2048, 3072 or 4096"),
            ));
        }
    };
    let expiration = ca_cert
        .and_then(|c| struct_str(c, "expiration"))
        .filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_CA_VALIDITY);
    let validity = parse_duration(expiration)
        .map_err(|reason| at.invalid("conf.caCert.expiration", reason))?;

    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Kuma");
    dn.push(DnType::OrganizationalUnitName, "Mesh");
    dn.push(DnType::CommonName, at.mesh);
    params.distinguished_name = dn;
    let trust_domain = format!("spiffe://{}", at.mesh);
    params.subject_alt_names = vec![SanType::URI(
        trust_domain
            .try_into()
            .map_err(|e| at.crypto("the CA's SAN", e))?,
    )];
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now;
    params.not_after = now + validity;
    let key = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, size)
        .map_err(|e| at.crypto("generating the CA key", e))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| at.crypto("signing the CA certificate", e))?;
    Ok(MeshCa {
        mesh: at.mesh.to_string(),
        backend: at.backend.name.clone(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The two Secrets that hold `ca`.
pub(crate) fn secrets(ca: &MeshCa) -> Vec<model::Resource> {
    vec![
        secret(
            &ca.mesh,
            &cert_secret_name(&ca.mesh, &ca.backend),
            ca.cert_pem.as_bytes(),
        ),
        secret(
            &ca.mesh,
            &key_secret_name(&ca.mesh, &ca.backend),
            ca.key_pem.as_bytes(),
        ),
    ]
}

/// Reads the CA of a builtin backend from its Secrets.
pub(crate) async fn load(
    store: &dyn ResourceStore,
    at: &BackendRef<'_>,
) -> Result<MeshCa, CaError> {
    let cert_name = cert_secret_name(at.mesh, &at.backend.name);
    let key_name = key_secret_name(at.mesh, &at.backend.name);
    let cert = secret_data(store, at, &cert_name)
        .await?
        .ok_or_else(|| at.missing_secret("name", &cert_name))?;
    let key = secret_data(store, at, &key_name)
        .await?
        .ok_or_else(|| at.missing_secret("name", &key_name))?;
    let text = |bytes: Vec<u8>, secret: &str| {
        String::from_utf8(bytes)
            .map_err(|_| at.bad_material("name", format!("secret {secret:?} is not PEM text")))
    };
    let ca = MeshCa {
        mesh: at.mesh.to_string(),
        backend: at.backend.name.clone(),
        cert_pem: text(cert, &cert_name)?,
        key_pem: text(key, &key_name)?,
    };
    crate::issue::check_pair(&ca, at, "name")?;
    Ok(ca)
}
