//! Workload certificates (reference: `kuma-api.md` §5.5): what a proxy's
//! certificate says ([`workload_sans`]) and issuing it ([`issue`]).

use std::collections::BTreeSet;

use model::labels::tags;
use model::{Resource, Spec};
use rcgen::{
    CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use sha2::{Digest, Sha256};

use crate::{BackendRef, CaError, MeshCa};

/// How long before `now` a workload certificate starts being valid (clock skew).
const BACKDATE: time::Duration = time::Duration::seconds(10);

/// A proxy's certificate and key, PEM, with its validity.
#[derive(Clone, PartialEq, Eq)]
pub struct WorkloadCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub not_before: time::OffsetDateTime,
    pub not_after: time::OffsetDateTime,
}

impl std::fmt::Debug for WorkloadCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key never reaches a log line.
        f.debug_struct("WorkloadCert")
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// The URI SANs of `dataplane`'s certificate: `spiffe://{mesh}/{service}`
/// for every `kuma.io/service` of its inbounds, then `kuma://{tag}/{value}`
/// for every tag of its inbounds, each group sorted and without duplicates.
/// Ignored inbounds count too (they are still the proxy's identity in Kuma).
pub fn workload_sans(dataplane: &Resource) -> Vec<String> {
    let Spec::Dataplane(dp) = &dataplane.spec else {
        return Vec::new();
    };
    let mesh = &dataplane.meta.mesh;
    let mut services = BTreeSet::new();
    let mut tag_sans = BTreeSet::new();
    let inbounds = dp.networking.iter().flat_map(|n| &n.inbound);
    for inbound in inbounds {
        for (tag, value) in &inbound.tags {
            if tag == tags::SERVICE {
                services.insert(format!("spiffe://{mesh}/{value}"));
            }
            tag_sans.insert(format!("kuma://{tag}/{value}"));
        }
    }
    services.into_iter().chain(tag_sans).collect()
}

/// Issues a workload certificate with `sans` (URIs), signed by `ca`, valid
/// from `now` - 10 s for `validity`. The key is ECDSA P-256 (see the crate
/// docs).
pub fn issue(
    ca: &MeshCa,
    sans: &[String],
    validity: time::Duration,
    now: time::OffsetDateTime,
) -> Result<WorkloadCert, CaError> {
    let crypto = |what: &str, source| CaError::Crypto {
        mesh: ca.mesh.clone(),
        backend: ca.backend.clone(),
        what: what.to_string(),
        source,
    };
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(|e| crypto("reading the CA key", e))?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)
        .map_err(|e| crypto("reading the CA certificate", e))?;

    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| crypto("generating a workload key", e))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = sans
        .iter()
        .map(|san| {
            san.as_str()
                .try_into()
                .map(SanType::URI)
                .map_err(|e| crypto(&format!("SAN {san:?}"), e))
        })
        .collect::<Result<_, _>>()?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::KeyAgreement,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    // 128 random bits: the fresh key's hash (its key is random), positive.
    let mut serial: Vec<u8> = Sha256::digest(key.subject_public_key_info())[..16].to_vec();
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from(serial));
    params.not_before = now - BACKDATE;
    params.not_after = now + validity;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| crypto("signing a workload certificate", e))?;
    Ok(WorkloadCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        not_before: params.not_before,
        not_after: params.not_after,
    })
}

/// Checks that the CA's certificate and key parse and belong together.
pub(crate) fn check_pair(ca: &MeshCa, at: &BackendRef<'_>, field: &str) -> Result<(), CaError> {
    let key = KeyPair::from_pem(&ca.key_pem)
        .map_err(|e| at.bad_material(field, format!("the CA key is not a PEM private key: {e}")))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(ca.cert_pem.as_bytes())
        .map_err(|e| at.bad_material(field, format!("the CA certificate is not PEM: {e}")))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| at.bad_material(field, format!("the CA certificate cannot be parsed: {e}")))?;
    if cert.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(at.bad_material(field, "the CA key does not belong to the CA certificate"));
    }
    if !cert.is_ca() {
        return Err(at.bad_material(field, "the certificate is not a CA (basicConstraints)"));
    }
    Ok(())
}
