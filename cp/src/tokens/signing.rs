//! Signing keys: RSA-2048 private keys kept in secrets named `<prefix>-<serial>`.
//!
//! Keys are generated with rcgen (aws-lc-rs) and stored as PEM `RSA PRIVATE KEY` (PKCS#1),
//! the encoding Kuma writes and the only private-key encoding Kuma reads, so a real Kuma
//! sharing the store, or receiving the keys, can use them. Reading accepts PKCS#1 and PKCS#8
//! PEM and Kuma's legacy raw PKCS#1 DER. The key with the highest serial signs new tokens;
//! `kid` is that serial in decimal, and kid `"0"` names the bare prefix (Kuma 1.3).
//!
//! Zones validate zone tokens with public keys only: the global turns
//! `zone-token-signing-key-<N>` into `zone-token-signing-public-key-<N>` holding
//! [`public_key_pem`] of the private key ([`zone_public_key_secret`]).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use envoy_types::pb::google::protobuf::BytesValue;
use jsonwebtoken::{DecodingKey, EncodingKey};
use model::{Resource, ResourceKey, ResourceType, Spec, system_pb};
use store::{ListQuery, StoreError};

use super::{SharedStore, TokenError, TokenKind};

pub const USER_TOKEN_SIGNING_KEY_PREFIX: &str = "user-token-signing-key";
pub const ZONE_TOKEN_SIGNING_KEY_PREFIX: &str = "zone-token-signing-key";
pub const ZONE_TOKEN_SIGNING_PUBLIC_KEY_PREFIX: &str = "zone-token-signing-public-key";
/// Followed by the mesh name: `dataplane-token-signing-key-<mesh>`.
pub const DATAPLANE_TOKEN_SIGNING_KEY_PREFIX: &str = "dataplane-token-signing-key-";
pub const USER_TOKEN_REVOCATIONS: &str = "user-token-revocations";
pub const ZONE_TOKEN_REVOCATIONS: &str = "zone-token-revocations";
/// Followed by the mesh name: `dataplane-token-revocations-<mesh>`.
pub const DATAPLANE_TOKEN_REVOCATIONS_PREFIX: &str = "dataplane-token-revocations-";

/// The serial Kuma gives the first key it creates.
pub const DEFAULT_SERIAL: u64 = 1;

const RSA_PRIVATE_KEY: &str = "RSA PRIVATE KEY";
const RSA_PUBLIC_KEY: &str = "RSA PUBLIC KEY";

/// Where one family of signing keys lives: secret type, mesh and name prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyScope {
    pub token: TokenKind,
    /// `GlobalSecret` or `Secret`.
    pub secret_type: ResourceType,
    /// Empty for GlobalSecrets.
    pub mesh: String,
    pub prefix: String,
    /// The secrets hold public keys only (zone tokens on a federated zone).
    pub public_only: bool,
}

impl KeyScope {
    /// GlobalSecrets `user-token-signing-key-<N>`.
    pub fn user() -> Self {
        Self::global(TokenKind::User, USER_TOKEN_SIGNING_KEY_PREFIX, false)
    }

    /// GlobalSecrets `zone-token-signing-key-<N>` (private keys, on the global).
    pub fn zone() -> Self {
        Self::global(TokenKind::Zone, ZONE_TOKEN_SIGNING_KEY_PREFIX, false)
    }

    /// GlobalSecrets `zone-token-signing-public-key-<N>` (what a federated zone holds).
    pub fn zone_public() -> Self {
        Self::global(TokenKind::Zone, ZONE_TOKEN_SIGNING_PUBLIC_KEY_PREFIX, true)
    }

    /// Secrets `dataplane-token-signing-key-<mesh>-<N>` in `mesh`.
    pub fn dataplane(mesh: &str) -> Self {
        KeyScope {
            token: TokenKind::Dataplane,
            secret_type: ResourceType::Secret,
            mesh: mesh.to_string(),
            prefix: format!("{DATAPLANE_TOKEN_SIGNING_KEY_PREFIX}{mesh}"),
            public_only: false,
        }
    }

    fn global(token: TokenKind, prefix: &str, public_only: bool) -> Self {
        KeyScope {
            token,
            secret_type: ResourceType::GlobalSecret,
            mesh: String::new(),
            prefix: prefix.to_string(),
            public_only,
        }
    }

    /// The secret name of key `serial`: `<prefix>-<serial>`, or the bare prefix for 0.
    pub fn secret_name(&self, serial: u64) -> String {
        if serial == 0 {
            self.prefix.clone()
        } else {
            format!("{}-{serial}", self.prefix)
        }
    }

    pub fn secret_key(&self, serial: u64) -> ResourceKey {
        ResourceKey::new(
            self.secret_type,
            self.mesh.clone(),
            self.secret_name(serial),
        )
    }

    /// The serial of a secret named like a key of this scope, `None` for other names.
    pub fn serial_of(&self, name: &str) -> Option<u64> {
        if name == self.prefix {
            return Some(0);
        }
        let digits = name.strip_prefix(&self.prefix)?.strip_prefix('-')?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }

    fn store_error(&self, source: StoreError) -> TokenError {
        TokenError::Store {
            kind: self.token,
            source,
        }
    }

    fn invalid_key(&self, serial: u64, reason: &'static str) -> TokenError {
        TokenError::InvalidSigningKey {
            kind: self.token,
            secret: self.secret_name(serial),
            mesh: self.mesh.clone(),
            reason,
        }
    }
}

/// A private signing key read from (or written to) the store. Debug output hides the key.
#[derive(Clone)]
pub struct SigningKey {
    pub serial: u64,
    encoding: EncodingKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("serial", &self.serial)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// The `kid` header of tokens signed with this key.
    pub fn kid(&self) -> String {
        self.serial.to_string()
    }

    pub(crate) fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }
}

/// Generates a new RSA-2048 signing key, PEM `RSA PRIVATE KEY` (PKCS#1) as Kuma stores it.
pub fn generate_signing_key_pem() -> Result<String, TokenError> {
    let crypto = |reason| TokenError::Crypto {
        kind: TokenKind::User,
        reason,
    };
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
        .map_err(|_| crypto("could not generate an RSA key"))?;
    // PKCS#8 -> the PKCS#1 RSAPrivateKey inside it.
    let pkcs8 = pair.serialize_pem();
    let key = EncodingKey::from_rsa_pem(pkcs8.as_bytes())
        .map_err(|_| crypto("could not re-read the generated RSA key"))?;
    Ok(pem_encode(RSA_PRIVATE_KEY, key.as_bytes()))
}

/// The public half of a private signing key (PKCS#1 or PKCS#8 PEM, or raw PKCS#1 DER), as
/// PEM `RSA PUBLIC KEY` (PKCS#1): exactly what Kuma's global writes into
/// `zone-token-signing-public-key-<N>`, readable by every Kuma zone version. The error never
/// contains key material.
pub fn public_key_pem(private_pem: &str) -> Result<String, TokenError> {
    let (n, e) = private_components(private_pem.as_bytes()).ok_or(TokenError::Crypto {
        kind: TokenKind::Zone,
        reason: "the signing key is not an RSA private key",
    })?;
    let mut body = der_integer(&n);
    body.extend(der_integer(&e));
    Ok(pem_encode(RSA_PUBLIC_KEY, &der_tlv(0x30, &body)))
}

/// For the global -> zone KDS mapper: GlobalSecret `zone-token-signing-key-<N>` becomes
/// `zone-token-signing-public-key-<N>` holding the public key. `None` for any other resource.
pub fn zone_public_key_secret(secret: &Resource) -> Option<Result<Resource, TokenError>> {
    let Spec::GlobalSecret(spec) = &secret.spec else {
        return None;
    };
    let serial = KeyScope::zone().serial_of(&secret.meta.name)?;
    let data = spec
        .data
        .as_ref()
        .map(|d| d.value.as_slice())
        .unwrap_or_default();
    let public = std::str::from_utf8(data)
        .ok()
        .and_then(|pem| public_key_pem(pem).ok())
        .or_else(|| {
            // legacy raw DER private key
            let (n, e) = private_components(data)?;
            let mut body = der_integer(&n);
            body.extend(der_integer(&e));
            Some(pem_encode(RSA_PUBLIC_KEY, &der_tlv(0x30, &body)))
        });
    let Some(public) = public else {
        return Some(Err(
            KeyScope::zone().invalid_key(serial, "not an RSA private key")
        ));
    };
    let mut out = secret_resource(&KeyScope::zone_public(), serial, public.into_bytes());
    out.meta.labels = secret.meta.labels.clone();
    Some(Ok(out))
}

/// A secret resource of `scope`'s type holding `data`, named for `serial`.
pub fn secret_resource(scope: &KeyScope, serial: u64, data: Vec<u8>) -> Resource {
    let spec = system_pb::Secret {
        data: Some(BytesValue { value: data }),
    };
    let spec = match scope.secret_type {
        ResourceType::Secret => Spec::Secret(spec),
        _ => Spec::GlobalSecret(spec),
    };
    Resource::new(scope.mesh.clone(), scope.secret_name(serial), spec)
}

/// The bytes in a Secret or GlobalSecret (`None` for other types).
pub(crate) fn secret_data(resource: &Resource) -> Option<&[u8]> {
    match &resource.spec {
        Spec::Secret(s) | Spec::GlobalSecret(s) => Some(
            s.data
                .as_ref()
                .map(|d| d.value.as_slice())
                .unwrap_or_default(),
        ),
        _ => None,
    }
}

/// Every key secret of `scope`: (serial, resource), highest serial last.
async fn list_keys(
    store: &SharedStore,
    scope: &KeyScope,
) -> Result<Vec<(u64, Resource)>, TokenError> {
    let query = ListQuery {
        mesh: (!scope.mesh.is_empty()).then(|| scope.mesh.clone()),
        name_contains: Some(scope.prefix.clone()),
        ..ListQuery::all(scope.secret_type)
    };
    let page = store.list(&query).await.map_err(|e| scope.store_error(e))?;
    let mut keys: Vec<(u64, Resource)> = page
        .items
        .into_iter()
        .filter(|r| r.meta.mesh == scope.mesh)
        .filter_map(|r| scope.serial_of(&r.meta.name).map(|s| (s, r)))
        .collect();
    keys.sort_by_key(|(serial, _)| *serial);
    Ok(keys)
}

/// The serials of the stored keys of `scope`, ascending.
pub async fn signing_key_serials(
    store: &SharedStore,
    scope: &KeyScope,
) -> Result<Vec<u64>, TokenError> {
    Ok(list_keys(store, scope)
        .await?
        .into_iter()
        .map(|(s, _)| s)
        .collect())
}

/// The key with the highest serial, `None` when the scope has no key.
pub async fn latest_signing_key(
    store: &SharedStore,
    scope: &KeyScope,
) -> Result<Option<SigningKey>, TokenError> {
    let Some((serial, resource)) = list_keys(store, scope).await?.pop() else {
        return Ok(None);
    };
    let data = secret_data(&resource).unwrap_or_default();
    Ok(Some(SigningKey {
        serial,
        encoding: encoding_key(scope, serial, data)?,
    }))
}

/// The latest key, creating key 1 when the scope has none. Two control planes racing here
/// end up with the same key: the loser's create fails with AlreadyExists and it re-reads
/// (waiting briefly for a cached store to see the winner's key).
pub async fn ensure_signing_key(
    store: &SharedStore,
    scope: &KeyScope,
) -> Result<SigningKey, TokenError> {
    if let Some(key) = latest_signing_key(store, scope).await? {
        return Ok(key);
    }
    create_signing_key(store, scope, DEFAULT_SERIAL).await?;
    for _ in 0..30 {
        if let Some(key) = latest_signing_key(store, scope).await? {
            return Ok(key);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(TokenError::SigningKeyNotFound {
        kind: scope.token,
        secret: scope.secret_name(DEFAULT_SERIAL),
        mesh: scope.mesh.clone(),
    })
}

/// Adds key `latest + 1` (key 1 in an empty scope): new tokens are signed with it, tokens
/// signed with older keys keep validating while their secrets exist. Returns the new serial.
pub async fn rotate_signing_key(store: &SharedStore, scope: &KeyScope) -> Result<u64, TokenError> {
    let next = signing_key_serials(store, scope)
        .await?
        .last()
        .map_or(DEFAULT_SERIAL, |s| s + 1);
    create_signing_key(store, scope, next).await?;
    Ok(next)
}

/// Generates and stores key `serial`. AlreadyExists is success (someone else created it
/// first: the stored key stands). Dataplane keys need their mesh, which owns them.
pub async fn create_signing_key(
    store: &SharedStore,
    scope: &KeyScope,
    serial: u64,
) -> Result<(), TokenError> {
    if scope.public_only {
        return Err(scope.invalid_key(serial, "public-key scopes cannot create keys"));
    }
    let owner = if scope.secret_type == ResourceType::Secret {
        let mesh_key = ResourceKey::global(ResourceType::Mesh, scope.mesh.clone());
        match store.get(&mesh_key).await {
            Ok(_) => Some(mesh_key),
            Err(StoreError::NotFound(_)) => {
                return Err(TokenError::MeshNotFound {
                    kind: scope.token,
                    mesh: scope.mesh.clone(),
                });
            }
            Err(e) => return Err(scope.store_error(e)),
        }
    } else {
        None
    };
    // RSA generation takes a while (~0.1 s release, more in debug): keep it off the executor.
    let pem = tokio::task::spawn_blocking(generate_signing_key_pem)
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or(TokenError::Crypto {
            kind: scope.token,
            reason: "could not generate an RSA signing key",
        })?;
    match store
        .create(secret_resource(scope, serial, pem.into_bytes()), owner)
        .await
    {
        Ok(_) => {
            tracing::info!(secret = %scope.secret_key(serial), "created token signing key");
            Ok(())
        }
        Err(StoreError::AlreadyExists(_)) => Ok(()),
        Err(StoreError::NotFound(_)) if scope.secret_type == ResourceType::Secret => {
            Err(TokenError::MeshNotFound {
                kind: scope.token,
                mesh: scope.mesh.clone(),
            })
        }
        Err(e) => Err(scope.store_error(e)),
    }
}

/// What verifies a token signed with one stored key.
pub(crate) struct VerificationKey {
    /// `None` when the secret is not an RSA key (then only legacy HS256 can use it).
    pub rsa: Option<DecodingKey>,
    /// The secret bytes, for legacy (Kuma < 1.4) HS256 tokens; `None` for public keys.
    pub legacy_hmac: Option<Vec<u8>>,
}

/// Reads key `serial` of `scope` for verification; `Ok(None)` when the secret does not exist.
pub(crate) async fn verification_key(
    store: &SharedStore,
    scope: &KeyScope,
    serial: u64,
) -> Result<Option<VerificationKey>, TokenError> {
    let resource = match store.get(&scope.secret_key(serial)).await {
        Ok(r) => r,
        Err(StoreError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(scope.store_error(e)),
    };
    let data = secret_data(&resource).unwrap_or_default();
    let rsa = match private_components(data) {
        Some((n, e)) => Some(DecodingKey::from_rsa_raw_components(&n, &e)),
        None => public_decoding_key(data),
    };
    let legacy_hmac = (!scope.public_only).then(|| data.to_vec());
    if rsa.is_none() && legacy_hmac.is_none() {
        return Err(scope.invalid_key(serial, "not an RSA key"));
    }
    Ok(Some(VerificationKey { rsa, legacy_hmac }))
}

/// The error for a stored key that cannot verify RS256 tokens.
pub(crate) fn not_rsa(scope: &KeyScope, serial: u64) -> TokenError {
    scope.invalid_key(serial, "not an RSA key")
}

fn encoding_key(scope: &KeyScope, serial: u64, data: &[u8]) -> Result<EncodingKey, TokenError> {
    if scope.public_only {
        return Err(scope.invalid_key(
            serial,
            "only a public key is stored; tokens cannot be signed here",
        ));
    }
    let der =
        private_der(data).ok_or_else(|| scope.invalid_key(serial, "not an RSA private key"))?;
    // Checked here so that a broken key fails with a message that names it.
    if private_components(data).is_none() {
        return Err(scope.invalid_key(serial, "not an RSA private key"));
    }
    Ok(EncodingKey::from_rsa_der(&der))
}

/// The PKCS#1 DER of a private key: PEM (PKCS#1 or PKCS#8) or raw DER (Kuma's legacy form).
fn private_der(data: &[u8]) -> Option<Vec<u8>> {
    if is_pem(data) {
        let label = pem_label(data)?;
        if label != RSA_PRIVATE_KEY && label != "PRIVATE KEY" {
            return None;
        }
        EncodingKey::from_rsa_pem(data)
            .ok()
            .map(|k| k.as_bytes().to_vec())
    } else {
        Some(data.to_vec())
    }
}

/// (n, e) of a private key, `None` when `data` is not an RSA private key.
fn private_components(data: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let der = private_der(data)?;
    let utils = &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.key_utils;
    (utils.rsa_pub_components_from_private_key)(&der).ok()
}

/// A public key: PEM `RSA PUBLIC KEY` / `PUBLIC KEY` or raw PKCS#1 DER.
fn public_decoding_key(data: &[u8]) -> Option<DecodingKey> {
    let utils = &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.key_utils;
    let der = if is_pem(data) {
        let label = pem_label(data)?;
        if label != RSA_PUBLIC_KEY && label != "PUBLIC KEY" {
            return None;
        }
        match DecodingKey::from_rsa_pem(data).ok()?.kind() {
            jsonwebtoken::DecodingKeyKind::SecretOrDer(der) => der.clone(),
            jsonwebtoken::DecodingKeyKind::RsaModulusExponent { n, e } => {
                return Some(DecodingKey::from_rsa_raw_components(n, e));
            }
        }
    } else {
        data.to_vec()
    };
    let (n, e) = (utils.rsa_pub_components_from_public_key)(&der).ok()?;
    Some(DecodingKey::from_rsa_raw_components(&n, &e))
}

fn is_pem(data: &[u8]) -> bool {
    data.trim_ascii_start().starts_with(b"-----BEGIN ")
}

fn pem_label(data: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(data.trim_ascii_start()).ok()?;
    let rest = text.strip_prefix("-----BEGIN ")?;
    Some(&rest[..rest.find("-----")?])
}

/// PEM as Go's `pem.Encode` writes it: 64-character lines, trailing newline.
fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn der_tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = body.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(body);
    out
}

/// A DER INTEGER holding the unsigned big-endian `value`.
fn der_integer(value: &[u8]) -> Vec<u8> {
    let trimmed: &[u8] = match value.iter().position(|b| *b != 0) {
        Some(i) => &value[i..],
        None => &[0],
    };
    let mut body = Vec::with_capacity(trimmed.len() + 1);
    if trimmed[0] & 0x80 != 0 {
        body.push(0);
    }
    body.extend_from_slice(trimmed);
    der_tlv(0x02, &body)
}
