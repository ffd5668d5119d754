//! Kuma's tokens: user tokens (REST API bearer tokens), dataplane tokens (a `kuma-dp`
//! proves which proxy it is) and zone tokens (zone ingress/egress proxies, and `cp` scope for
//! zone control planes). Every token is an RS256 JWT that real Kuma issues and accepts:
//!
//! * header `{"alg":"RS256","kid":"<serial>","typ":"JWT"}`, where `kid` names the signing key
//!   secret `<prefix>-<serial>` (kid `"0"` is the bare prefix, Kuma 1.3 compatibility);
//! * claims serialised with Go's field names (`Name`, `Groups`, `Mesh`, `Tags`, `Type`,
//!   `Workload`, `Zone`, `Scope`) followed by `exp`, `nbf`, `iat`, `jti`, with Kuma's clock
//!   skew: `iat = nbf = now - 5s`, `exp = now - 5s + validFor + 5s`;
//! * signing keys are RSA-2048 private keys in secrets, PEM `RSA PRIVATE KEY` (PKCS#1, the
//!   only form Kuma itself reads); the latest serial signs, any stored serial verifies;
//! * revocations are a secret holding comma-separated `jti`s.
//!
//! | token | signing keys | revocations |
//! |---|---|---|
//! | user | GlobalSecret `user-token-signing-key-<N>` | GlobalSecret `user-token-revocations` |
//! | zone | GlobalSecret `zone-token-signing-key-<N>` (zones: `zone-token-signing-public-key-<N>`) | GlobalSecret `zone-token-revocations` |
//! | dataplane | Secret `dataplane-token-signing-key-<mesh>-<N>` in that mesh | Secret `dataplane-token-revocations-<mesh>` |
//!
//! Modules: [`signing`] (keys: generate, store, rotate, derive the public key), [`issuer`]
//! ([`TokenIssuer`]), [`validator`] ([`TokenValidator`] and the dataplane/zone binding rules),
//! [`http`] (`POST /tokens/user|dataplane|zone` and 1.x `POST /tokens`), [`bootstrap`]
//! (the `admin-user-token` GlobalSecret) and [`UserTokenAuthenticator`], which answers
//! [`crate::auth::Authenticator`] for the REST API.
//!
//! No function here logs or returns a token or a key inside an error: [`TokenError`] messages
//! name the token kind and the rule that failed and are safe to show to the caller.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use store::{ResourceStore, StoreError};

use crate::auth::{AUTHENTICATED_GROUP, AuthError, Authenticator, Identity};

pub mod bootstrap;
mod claims;
mod duration;
pub mod http;
pub mod issuer;
pub mod signing;
pub mod validator;

#[cfg(test)]
mod tests;

pub use bootstrap::{ADMIN_USER_TOKEN, bootstrap_admin_token};
pub use claims::{DataplaneClaims, RegisteredClaims, UserClaims, ZoneClaims};
pub use duration::parse_go_duration;
pub use http::{TokensState, router};
pub use issuer::{DEFAULT_DATAPLANE_TOKEN_VALIDITY, DataplaneIdentity, TokenIssuer};
pub use signing::{KeyScope, public_key_pem};
pub use validator::{DataplaneInfo, TokenValidator};

/// The shared store handle every part of the token room works on.
pub type SharedStore = Arc<dyn ResourceStore>;

/// Which kind of token an operation concerns; error messages start with it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum TokenKind {
    User,
    Dataplane,
    Zone,
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenKind::User => "user",
            TokenKind::Dataplane => "dataplane",
            TokenKind::Zone => "zone",
        })
    }
}

/// Why issuing or validating a token failed. Every message names the token kind and the rule;
/// none contains a token or key material, so all of them may be shown to the caller.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{kind} token is malformed: {reason}")]
    Malformed {
        kind: TokenKind,
        reason: &'static str,
    },
    #[error("{kind} token has no kid header: Kuma tokens must name their signing key")]
    MissingKid { kind: TokenKind },
    #[error("{kind} token has an invalid kid header: expected a signing key serial number")]
    InvalidKid { kind: TokenKind },
    #[error(
        "{kind} token uses unsupported algorithm {alg}: allowed algorithms are RS256 and HS256"
    )]
    UnsupportedAlgorithm { kind: TokenKind, alg: String },
    #[error(
        "{kind} token signed by unknown key kid={kid}: {} not found; if the signing key was rotated, regenerate the token",
        describe_secret(secret, mesh)
    )]
    UnknownKey {
        kind: TokenKind,
        kid: String,
        secret: String,
        mesh: String,
    },
    #[error("{kind} token signature does not match signing key kid={kid}")]
    BadSignature { kind: TokenKind, kid: String },
    #[error("{kind} token expired")]
    Expired { kind: TokenKind },
    #[error(
        "{kind} token is not yet valid: its 'nbf' date is in the future; check the clock of the control plane that issued it"
    )]
    NotYetValid { kind: TokenKind },
    #[error("{kind} token revoked")]
    Revoked { kind: TokenKind },
    #[error("{kind} token is for mesh {token:?}, not {requested:?}")]
    WrongMesh {
        kind: TokenKind,
        token: String,
        requested: String,
    },
    #[error("{kind} token is for proxy {token:?}, not {requested:?}")]
    WrongName {
        kind: TokenKind,
        token: String,
        requested: String,
    },
    #[error("{kind} token is for proxy type {token:?}, not {requested:?}")]
    WrongType {
        kind: TokenKind,
        token: String,
        requested: String,
    },
    #[error("{kind} token requires tag {tag:?}, which the dataplane does not have")]
    MissingTag { kind: TokenKind, tag: String },
    #[error(
        "{kind} token does not allow tag {tag:?} with value {value:?}: allowed values are {allowed:?}"
    )]
    TagValueNotAllowed {
        kind: TokenKind,
        tag: String,
        value: String,
        allowed: Vec<String>,
    },
    #[error(
        "{kind} token is for workload {token:?}, but the dataplane has no kuma.io/workload label"
    )]
    MissingWorkload { kind: TokenKind, token: String },
    #[error("{kind} token is for workload {token:?}, not {requested:?}")]
    WrongWorkload {
        kind: TokenKind,
        token: String,
        requested: String,
    },
    #[error("{kind} token scope {token:?} does not contain {requested:?}")]
    ScopeNotAllowed {
        kind: TokenKind,
        token: Vec<String>,
        requested: String,
    },
    #[error("{kind} token is for zone {token:?}, not {requested:?}")]
    WrongZone {
        kind: TokenKind,
        token: String,
        requested: String,
    },
    #[error(
        "{kind} token: there is no signing key: {} not found",
        describe_secret(secret, mesh)
    )]
    SigningKeyNotFound {
        kind: TokenKind,
        secret: String,
        mesh: String,
    },
    #[error("{kind} token: mesh {mesh:?} is not found")]
    MeshNotFound { kind: TokenKind, mesh: String },
    #[error(
        "{kind} token: signing key {} cannot be used: {reason}",
        describe_secret(secret, mesh)
    )]
    InvalidSigningKey {
        kind: TokenKind,
        secret: String,
        mesh: String,
        reason: &'static str,
    },
    #[error("{kind} token: {reason}")]
    Crypto {
        kind: TokenKind,
        reason: &'static str,
    },
    #[error("{kind} token: store: {source}")]
    Store {
        kind: TokenKind,
        #[source]
        source: StoreError,
    },
}

fn describe_secret(name: &str, mesh: &str) -> String {
    if mesh.is_empty() {
        format!("GlobalSecret {name:?}")
    } else {
        format!("Secret {name:?} in mesh {mesh:?}")
    }
}

impl TokenError {
    /// The kind of token the error concerns.
    pub fn kind(&self) -> TokenKind {
        match self {
            TokenError::Malformed { kind, .. }
            | TokenError::MissingKid { kind }
            | TokenError::InvalidKid { kind }
            | TokenError::UnsupportedAlgorithm { kind, .. }
            | TokenError::UnknownKey { kind, .. }
            | TokenError::BadSignature { kind, .. }
            | TokenError::Expired { kind }
            | TokenError::NotYetValid { kind }
            | TokenError::Revoked { kind }
            | TokenError::WrongMesh { kind, .. }
            | TokenError::WrongName { kind, .. }
            | TokenError::WrongType { kind, .. }
            | TokenError::MissingTag { kind, .. }
            | TokenError::TagValueNotAllowed { kind, .. }
            | TokenError::MissingWorkload { kind, .. }
            | TokenError::WrongWorkload { kind, .. }
            | TokenError::ScopeNotAllowed { kind, .. }
            | TokenError::WrongZone { kind, .. }
            | TokenError::SigningKeyNotFound { kind, .. }
            | TokenError::MeshNotFound { kind, .. }
            | TokenError::InvalidSigningKey { kind, .. }
            | TokenError::Crypto { kind, .. }
            | TokenError::Store { kind, .. } => *kind,
        }
    }

    /// Whether the presented token was refused (as opposed to the control plane failing to
    /// check it: store unavailable, broken key).
    pub fn is_rejection(&self) -> bool {
        !matches!(
            self,
            TokenError::Store { .. }
                | TokenError::InvalidSigningKey { .. }
                | TokenError::Crypto { .. }
                | TokenError::SigningKeyNotFound { .. }
                | TokenError::MeshNotFound { .. }
        )
    }
}

/// The REST API's bearer-token authenticator: a valid user token becomes
/// `Identity { name: Name, groups: Groups + mesh-system:authenticated }`.
#[derive(Clone)]
pub struct UserTokenAuthenticator {
    validator: TokenValidator,
}

impl UserTokenAuthenticator {
    pub fn new(store: SharedStore) -> Self {
        UserTokenAuthenticator {
            validator: TokenValidator::new(store),
        }
    }
}

#[async_trait]
impl Authenticator for UserTokenAuthenticator {
    async fn authenticate(&self, token: &str) -> Result<Identity, AuthError> {
        let claims = self
            .validator
            .validate_user_token(token)
            .await
            .map_err(|e| AuthError(e.to_string()))?;
        let mut groups = claims.groups;
        if !groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
            groups.push(AUTHENTICATED_GROUP.to_string());
        }
        Ok(Identity {
            name: claims.name,
            groups,
        })
    }
}
