//! The admin token bootstrap (Kuma's `adminTokenBootstrap`): on first start the control plane
//! stores a user token for `mesh-system:admin` in GlobalSecret `admin-user-token`, which
//! users read from localhost:
//! `curl localhost:5681/global-secrets/admin-user-token | jq -r .data | base64 -d`.

use std::time::Duration;

use envoy_types::pb::google::protobuf::BytesValue;
use model::{Resource, ResourceKey, ResourceType, Spec, system_pb};
use store::StoreError;

use super::issuer::TokenIssuer;
use super::{SharedStore, TokenError, TokenKind};
use crate::auth::{ADMIN_GROUP, ADMIN_USER};

/// The GlobalSecret holding the bootstrap admin token.
pub const ADMIN_USER_TOKEN: &str = "admin-user-token";

/// Validity of the bootstrap admin token (Kuma: 10 years).
pub const ADMIN_TOKEN_VALIDITY: Duration = Duration::from_secs(24 * 365 * 10 * 3600);

/// Creates GlobalSecret `admin-user-token` holding an admin user token, unless it exists.
/// Idempotent across restarts and replicas: a replica that loses the race gets AlreadyExists,
/// which is success (the first token stands). Creates the user-token signing key if needed.
/// Never logs the token.
pub async fn bootstrap_admin_token(store: &SharedStore) -> Result<(), TokenError> {
    let key = ResourceKey::global(ResourceType::GlobalSecret, ADMIN_USER_TOKEN);
    let store_err = |source| TokenError::Store {
        kind: TokenKind::User,
        source,
    };
    match store.get(&key).await {
        Ok(_) => {
            tracing::debug!("admin user token already exists");
            return Ok(());
        }
        Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(store_err(e)),
    }
    tracing::info!("admin user token not found, generating");
    let token = TokenIssuer::new(store.clone())
        .issue_user_token(ADMIN_USER, &[ADMIN_GROUP.to_string()], ADMIN_TOKEN_VALIDITY)
        .await?;
    let spec = system_pb::Secret {
        data: Some(BytesValue {
            value: token.into_bytes(),
        }),
    };
    match store
        .create(
            Resource::new("", ADMIN_USER_TOKEN, Spec::GlobalSecret(spec)),
            None,
        )
        .await
    {
        Ok(_) => {
            tracing::info!(
                global_secret = ADMIN_USER_TOKEN,
                "saved the admin user token; read it from localhost with \
                 'curl http://localhost:5681/global-secrets/admin-user-token | jq -r .data | base64 -d'"
            );
            Ok(())
        }
        Err(StoreError::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(store_err(e)),
    }
}
