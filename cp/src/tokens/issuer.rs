//! Issuing tokens: [`TokenIssuer`] signs claims with the latest signing key of their scope,
//! exactly as Kuma's `jwtTokenIssuer` does (RS256, `kid` = key serial, `jti` = UUID v4,
//! `iat = nbf = now - 5s`, `exp = now - 5s + validFor + 5s`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;

use super::claims::{self, Claims, DataplaneClaims, RegisteredClaims, UserClaims, ZoneClaims};
use super::signing::{self, KeyScope};
use super::{SharedStore, TokenError};

/// Kuma's clock skew allowance: tokens are valid from 5 seconds before they were issued.
pub(crate) const CLOCK_SKEW_SECS: i64 = 5;

/// `validFor` of a dataplane token when the request leaves it empty (Kuma: 10 years, for
/// backwards compatibility).
pub const DEFAULT_DATAPLANE_TOKEN_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Which proxies a dataplane token is for. Empty fields do not restrict.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataplaneIdentity {
    pub name: String,
    /// Required: the token is signed with this mesh's key.
    pub mesh: String,
    /// Tag -> allowed values.
    pub tags: BTreeMap<String, Vec<String>>,
    /// `""`, `dataplane`, `ingress` or `egress`.
    pub proxy_type: String,
    pub workload: String,
}

/// Issues the three kinds of token. Missing signing keys are created on first use (key 1),
/// except zone keys when [`TokenIssuer::without_zone_key_creation`] was called.
#[derive(Clone)]
pub struct TokenIssuer {
    store: SharedStore,
    create_zone_keys: bool,
}

impl TokenIssuer {
    pub fn new(store: SharedStore) -> Self {
        TokenIssuer {
            store,
            create_zone_keys: true,
        }
    }

    /// For a federated zone: it holds only the public zone keys the global sent, so issuing a
    /// zone token fails with [`TokenError::SigningKeyNotFound`] (HTTP 404) as in Kuma, instead
    /// of creating a zone-local key nobody else knows.
    pub fn without_zone_key_creation(mut self) -> Self {
        self.create_zone_keys = false;
        self
    }

    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    /// A user token (REST API bearer token) for `name` in `groups`.
    pub async fn issue_user_token(
        &self,
        name: &str,
        groups: &[String],
        valid_for: Duration,
    ) -> Result<String, TokenError> {
        let claims = UserClaims {
            name: name.to_string(),
            groups: groups.to_vec(),
            registered: RegisteredClaims::default(),
        };
        self.issue(&KeyScope::user(), true, claims, valid_for, now())
            .await
    }

    /// A dataplane token, signed with the key of `identity.mesh` (created with the mesh's
    /// first token; the mesh must exist). `valid_for: None` means Kuma's 10 years.
    pub async fn issue_dataplane_token(
        &self,
        identity: &DataplaneIdentity,
        valid_for: Option<Duration>,
    ) -> Result<String, TokenError> {
        let valid_for = valid_for.unwrap_or(DEFAULT_DATAPLANE_TOKEN_VALIDITY);
        self.issue(
            &KeyScope::dataplane(&identity.mesh),
            true,
            dataplane_claims(identity),
            valid_for,
            now(),
        )
        .await
    }

    /// A zone token for `zone` (empty: any zone) with `scope` (`ingress`, `egress`, `cp`).
    pub async fn issue_zone_token(
        &self,
        zone: &str,
        scope: &[String],
        valid_for: Duration,
    ) -> Result<String, TokenError> {
        let claims = ZoneClaims {
            zone: zone.to_string(),
            scope: scope.to_vec(),
            registered: RegisteredClaims::default(),
        };
        self.issue(
            &KeyScope::zone(),
            self.create_zone_keys,
            claims,
            valid_for,
            now(),
        )
        .await
    }

    /// Signs `claims` with the latest key of `scope` as if the time were `now` (Unix seconds).
    pub(crate) async fn issue<C: Claims>(
        &self,
        scope: &KeyScope,
        create_missing_key: bool,
        mut claims: C,
        valid_for: Duration,
        now: i64,
    ) -> Result<String, TokenError> {
        let key = if create_missing_key {
            signing::ensure_signing_key(&self.store, scope).await?
        } else {
            signing::latest_signing_key(&self.store, scope)
                .await?
                .ok_or_else(|| TokenError::SigningKeyNotFound {
                    kind: scope.token,
                    secret: scope.secret_name(signing::DEFAULT_SERIAL),
                    mesh: scope.mesh.clone(),
                })?
        };
        let issued = now - CLOCK_SKEW_SECS;
        let valid_secs = i64::try_from(valid_for.as_secs()).unwrap_or(i64::MAX);
        *claims.registered_mut() = RegisteredClaims {
            jti: uuid::Uuid::new_v4().to_string(),
            iat: Some(issued),
            nbf: Some(issued),
            exp: Some(
                issued
                    .saturating_add(valid_secs)
                    .saturating_add(CLOCK_SKEW_SECS),
            ),
        };
        // golang-jwt writes the header map with sorted keys: alg, kid, typ.
        let header = serde_json::json!({"alg": "RS256", "kid": key.kid(), "typ": "JWT"});
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims::to_payload(&claims)?)
        );
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), key.encoding_key(), Algorithm::RS256)
                .map_err(|_| TokenError::InvalidSigningKey {
                    kind: scope.token,
                    secret: scope.secret_name(key.serial),
                    mesh: scope.mesh.clone(),
                    reason: "signing failed",
                })?;
        Ok(format!("{message}.{signature}"))
    }
}

/// Kuma's claims for a dataplane identity: tag values de-duplicated and sorted.
pub(crate) fn dataplane_claims(identity: &DataplaneIdentity) -> DataplaneClaims {
    let tags = identity
        .tags
        .iter()
        .map(|(k, vs)| {
            (
                k.clone(),
                vs.iter()
                    .cloned()
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect(),
            )
        })
        .collect();
    DataplaneClaims {
        name: identity.name.clone(),
        mesh: identity.mesh.clone(),
        tags,
        proxy_type: identity.proxy_type.clone(),
        workload: identity.workload.clone(),
        registered: RegisteredClaims::default(),
    }
}

/// Unix seconds.
pub(crate) fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
