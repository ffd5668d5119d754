//! Validating tokens as Kuma does (`pkg/core/tokens/validator.go`): the `kid` header is
//! required and names the one key to verify with; RS256 (and Kuma < 1.4's HS256, keyed with
//! the bare-prefix secret) are accepted; `exp` and `nbf` are checked without leeway (the
//! issuer already back-dated `nbf` by 5s); then the revocation secret; then, for dataplane and
//! zone tokens, the binding rules of `pkg/xds/auth/universal/authenticator.go`.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use jsonwebtoken::{Algorithm, DecodingKey};
use model::{Resource, ResourceKey, ResourceType, Spec};
use serde_json::{Map, Value};
use store::StoreError;

use super::claims::{self, Claims, DataplaneClaims, UserClaims, ZoneClaims};
use super::issuer::now;
use super::signing::{
    self, DATAPLANE_TOKEN_REVOCATIONS_PREFIX, KeyScope, USER_TOKEN_REVOCATIONS,
    ZONE_TOKEN_REVOCATIONS,
};
use super::{SharedStore, TokenError, TokenKind};

/// The label that binds a dataplane to a workload (`kuma.io/workload`).
pub const WORKLOAD_LABEL: &str = "kuma.io/workload";

/// Base64url, padding optional (Go's RawURLEncoding writes none; be lenient on reading).
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What a dataplane token is checked against: the proxy that presents it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataplaneInfo {
    pub name: String,
    pub mesh: String,
    /// Every tag of every inbound (and of the gateway), with all its values.
    pub tags: BTreeMap<String, BTreeSet<String>>,
    /// `dataplane` for Dataplane resources.
    pub proxy_type: String,
    /// The `kuma.io/workload` label.
    pub workload: Option<String>,
}

impl DataplaneInfo {
    /// The identity of a Dataplane resource (Kuma's `TagSet()`: inbound and gateway tags);
    /// `None` for other types.
    pub fn from_resource(resource: &Resource) -> Option<Self> {
        let Spec::Dataplane(dp) = &resource.spec else {
            return None;
        };
        let mut tags: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        if let Some(net) = &dp.networking {
            let inbound = net.inbound.iter().flat_map(|i| i.tags.iter());
            let gateway = net.gateway.iter().flat_map(|g| g.tags.iter());
            for (k, v) in inbound.chain(gateway) {
                tags.entry(k.clone()).or_default().insert(v.clone());
            }
        }
        Some(DataplaneInfo {
            name: resource.meta.name.clone(),
            mesh: resource.meta.mesh.clone(),
            tags,
            proxy_type: "dataplane".to_string(),
            workload: resource.meta.labels.get(WORKLOAD_LABEL).cloned(),
        })
    }
}

/// Validates the three kinds of token against the keys and revocations in the store.
#[derive(Clone)]
pub struct TokenValidator {
    store: SharedStore,
}

impl TokenValidator {
    pub fn new(store: SharedStore) -> Self {
        TokenValidator { store }
    }

    /// A user token: signature, times, `user-token-revocations`.
    pub async fn validate_user_token(&self, token: &str) -> Result<UserClaims, TokenError> {
        let revocations = ResourceKey::global(ResourceType::GlobalSecret, USER_TOKEN_REVOCATIONS);
        self.verify(token, &[KeyScope::user()], &revocations, now())
            .await
    }

    /// A dataplane token presented by `dataplane`: verified with the key of the dataplane's
    /// mesh, then every non-empty claim must match: `Mesh`, `Name`, `Type`, each `Tags` entry
    /// (the dataplane must have the tag and each of its values must be allowed) and `Workload`
    /// (the `kuma.io/workload` label).
    pub async fn validate_dataplane_token(
        &self,
        token: &str,
        dataplane: &DataplaneInfo,
    ) -> Result<DataplaneClaims, TokenError> {
        let kind = TokenKind::Dataplane;
        // A token of another mesh cannot verify with this mesh's key; say why up front.
        let (_, _, unverified) = split::<DataplaneClaims>(token)?;
        if !unverified.mesh.is_empty() && unverified.mesh != dataplane.mesh {
            return Err(TokenError::WrongMesh {
                kind,
                token: clip(&unverified.mesh),
                requested: clip(&dataplane.mesh),
            });
        }
        let revocations = ResourceKey::new(
            ResourceType::Secret,
            dataplane.mesh.clone(),
            format!("{DATAPLANE_TOKEN_REVOCATIONS_PREFIX}{}", dataplane.mesh),
        );
        let claims: DataplaneClaims = self
            .verify(
                token,
                &[KeyScope::dataplane(&dataplane.mesh)],
                &revocations,
                now(),
            )
            .await?;
        check_dataplane(&claims, dataplane)?;
        Ok(claims)
    }

    /// A zone token used for `scope` (`ingress`, `egress`, `cp`) on the control plane of zone
    /// `cp_zone`: `Scope` must contain `scope`, and `Zone`, when set, must be `cp_zone`. Keys
    /// are read from `zone-token-signing-key-<kid>` (global, standalone) or else
    /// `zone-token-signing-public-key-<kid>` (federated zone).
    pub async fn validate_zone_token(
        &self,
        token: &str,
        scope: &str,
        cp_zone: &str,
    ) -> Result<ZoneClaims, TokenError> {
        let kind = TokenKind::Zone;
        let revocations = ResourceKey::global(ResourceType::GlobalSecret, ZONE_TOKEN_REVOCATIONS);
        let claims: ZoneClaims = self
            .verify(
                token,
                &[KeyScope::zone(), KeyScope::zone_public()],
                &revocations,
                now(),
            )
            .await?;
        if !claims.scope.iter().any(|s| s == scope) {
            return Err(TokenError::ScopeNotAllowed {
                kind,
                token: claims.scope.iter().map(|s| clip(s)).collect(),
                requested: scope.to_string(),
            });
        }
        if !claims.zone.is_empty() && claims.zone != cp_zone {
            return Err(TokenError::WrongZone {
                kind,
                token: clip(&claims.zone),
                requested: cp_zone.to_string(),
            });
        }
        Ok(claims)
    }

    /// Signature (key named by `kid`, looked up in `scopes` in order), `exp`/`nbf` against
    /// `now`, then revocation.
    pub(crate) async fn verify<C: Claims>(
        &self,
        token: &str,
        scopes: &[KeyScope],
        revocations: &ResourceKey,
        now: i64,
    ) -> Result<C, TokenError> {
        let kind = C::KIND;
        let (signed, header, claims) = split::<C>(token)?;
        let alg = match header.get("alg") {
            Some(Value::String(alg)) => alg.as_str(),
            _ => {
                return Err(TokenError::Malformed {
                    kind,
                    reason: "header has no alg",
                });
            }
        };
        let kid = match header.get("kid") {
            None | Some(Value::Null) => return Err(TokenError::MissingKid { kind }),
            Some(Value::String(kid)) => kid.as_str(),
            Some(_) => return Err(TokenError::InvalidKid { kind }),
        };
        if kid.is_empty() || kid.len() > 19 || !kid.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TokenError::InvalidKid { kind });
        }
        let serial: u64 = kid.parse().map_err(|_| TokenError::InvalidKid { kind })?;
        let (algorithm, serial) = match alg {
            "RS256" => (Algorithm::RS256, serial),
            // Kuma < 1.4 signed with HMAC keyed by the bare-prefix secret, whatever the kid.
            "HS256" => (Algorithm::HS256, 0),
            other => {
                return Err(TokenError::UnsupportedAlgorithm {
                    kind,
                    alg: clip_alg(other),
                });
            }
        };

        let mut found = None;
        for scope in scopes {
            if let Some(key) = signing::verification_key(&self.store, scope, serial).await? {
                found = Some((scope, key));
                break;
            }
        }
        let Some((scope, key)) = found else {
            let scope = &scopes[0];
            return Err(TokenError::UnknownKey {
                kind,
                kid: kid.to_string(),
                secret: scope.secret_name(serial),
                mesh: scope.mesh.clone(),
            });
        };
        let decoding = match algorithm {
            Algorithm::HS256 => match &key.legacy_hmac {
                Some(secret) => DecodingKey::from_secret(secret),
                None => {
                    return Err(TokenError::UnsupportedAlgorithm {
                        kind,
                        alg: "HS256".into(),
                    });
                }
            },
            _ => key.rsa.ok_or_else(|| signing::not_rsa(scope, serial))?,
        };
        let valid = jsonwebtoken::crypto::verify(
            signed.signature,
            signed.message.as_bytes(),
            &decoding,
            algorithm,
        )
        .unwrap_or(false);
        if !valid {
            return Err(TokenError::BadSignature {
                kind,
                kid: kid.to_string(),
            });
        }

        let registered = claims.registered();
        if registered.exp.is_some_and(|exp| now >= exp) {
            return Err(TokenError::Expired { kind });
        }
        if registered.nbf.is_some_and(|nbf| now < nbf) {
            return Err(TokenError::NotYetValid { kind });
        }
        if self.is_revoked(kind, revocations, &registered.jti).await? {
            return Err(TokenError::Revoked { kind });
        }
        Ok(claims)
    }

    /// Whether `jti` is in the comma-separated list of the revocation secret.
    async fn is_revoked(
        &self,
        kind: TokenKind,
        key: &ResourceKey,
        jti: &str,
    ) -> Result<bool, TokenError> {
        let resource = match self.store.get(key).await {
            Ok(r) => r,
            Err(StoreError::NotFound(_)) => return Ok(false),
            Err(source) => return Err(TokenError::Store { kind, source }),
        };
        let data = signing::secret_data(&resource).unwrap_or_default();
        let text = String::from_utf8_lossy(data);
        Ok(text
            .trim_end_matches('\n')
            .split(',')
            .map(str::trim)
            .any(|id| !id.is_empty() && id == jti))
    }
}

/// The binding rules for a verified dataplane token.
fn check_dataplane(claims: &DataplaneClaims, dp: &DataplaneInfo) -> Result<(), TokenError> {
    let kind = TokenKind::Dataplane;
    if !claims.mesh.is_empty() && claims.mesh != dp.mesh {
        return Err(TokenError::WrongMesh {
            kind,
            token: clip(&claims.mesh),
            requested: clip(&dp.mesh),
        });
    }
    if !claims.name.is_empty() && claims.name != dp.name {
        return Err(TokenError::WrongName {
            kind,
            token: clip(&claims.name),
            requested: clip(&dp.name),
        });
    }
    if !claims.proxy_type.is_empty() && claims.proxy_type != dp.proxy_type {
        return Err(TokenError::WrongType {
            kind,
            token: clip(&claims.proxy_type),
            requested: clip(&dp.proxy_type),
        });
    }
    for (tag, allowed) in &claims.tags {
        let Some(values) = dp.tags.get(tag) else {
            return Err(TokenError::MissingTag {
                kind,
                tag: clip(tag),
            });
        };
        if let Some(value) = values.iter().find(|v| !allowed.contains(v)) {
            return Err(TokenError::TagValueNotAllowed {
                kind,
                tag: clip(tag),
                value: clip(value),
                allowed: allowed.iter().map(|a| clip(a)).collect(),
            });
        }
    }
    if !claims.workload.is_empty() {
        match &dp.workload {
            None => {
                return Err(TokenError::MissingWorkload {
                    kind,
                    token: clip(&claims.workload),
                });
            }
            Some(w) if *w != claims.workload => {
                return Err(TokenError::WrongWorkload {
                    kind,
                    token: clip(&claims.workload),
                    requested: clip(w),
                });
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Splits a compact JWT into the signed message, the header object and the (unverified)
/// claims. Errors never quote the token.
fn split<C: Claims>(token: &str) -> Result<(Signed<'_>, Map<String, Value>, C), TokenError> {
    let kind = C::KIND;
    let malformed = |reason| TokenError::Malformed { kind, reason };
    let token = token.trim();
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("expected a JWT of three dot-separated parts"));
    };
    let message = &token[..header.len() + 1 + payload.len()];
    let header_bytes = B64
        .decode(header)
        .map_err(|_| malformed("header is not base64url"))?;
    let header: Map<String, Value> = serde_json::from_slice(&header_bytes)
        .map_err(|_| malformed("header is not a JSON object"))?;
    let payload_bytes = B64
        .decode(payload)
        .map_err(|_| malformed("claims are not base64url"))?;
    let claims = claims::from_payload::<C>(&payload_bytes)?;
    Ok((Signed { message, signature }, header, claims))
}

/// The signed part of a JWT and its signature (base64url).
struct Signed<'a> {
    message: &'a str,
    signature: &'a str,
}

/// A claim value quoted in an error, cut short: a forged token must not fill logs.
fn clip(value: &str) -> String {
    const MAX: usize = 128;
    if value.len() <= MAX {
        return value.to_string();
    }
    let mut end = MAX;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &value[..end])
}

fn clip_alg(alg: &str) -> String {
    if alg.len() <= 16 && alg.bytes().all(|b| b.is_ascii_alphanumeric()) {
        alg.to_string()
    } else {
        "(invalid)".to_string()
    }
}
