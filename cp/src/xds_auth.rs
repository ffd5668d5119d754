//! Who may open an ADS stream for a proxy (reference: `kuma-api.md` §4.1,
//! §4.3): the zone's [`xds::ads::StreamAuthenticator`], checking the
//! dataplane token of the stream's `authorization` metadata against the
//! Dataplane the node id `mesh.name` names.
//!
//! * Token authentication off (`require_token: false`, Kuma's
//!   `dpServer.authn.dpProxy.type: none`): every stream is admitted.
//! * No token: `Unauthenticated` "dataplane token is required ...".
//! * The Dataplane is the stored one; when none is stored but the node
//!   metadata carries an inline `dataplane.resource` (a proxy reconnecting
//!   after its deregistration), the token is checked against that one and
//!   [`crate::xds_lifecycle`] registers it again.
//! * The token's verdict comes from [`TokenValidator::validate_dataplane_token`]:
//!   a bad, expired, revoked or unknown-key token is `Unauthenticated`, a
//!   valid token for another mesh, proxy, type, tag or workload is
//!   `PermissionDenied`, with the validator's message (which names both
//!   sides and never the token); a store failure is `Unavailable`.
//! * A proxy that is not registered at all is `NotFound`, told only to a
//!   holder of a token valid for that mesh and name.

use axum::http::StatusCode;
use envoy_types::pb::envoy::config::core::v3::Node;
use model::{ResourceKey, ResourceType};
use store::StoreError;
use tonic::Status;
use xds::ads::{NodeId, StreamAuthenticator};

use crate::bootstrap::token_status;
use crate::tokens::{DataplaneInfo, SharedStore, TokenError, TokenValidator};
use crate::xds_lifecycle::inline_dataplane;

/// The message of a stream without a token.
pub const TOKEN_REQUIRED: &str = "dataplane token is required: the ADS stream carries no authorization metadata; generate one with 'kumactl generate dataplane-token'";

/// Checks dataplane tokens on ADS streams.
#[derive(Clone)]
pub struct DataplaneStreamAuthenticator {
    store: SharedStore,
    validator: TokenValidator,
    require_token: bool,
}

impl DataplaneStreamAuthenticator {
    /// `require_token`: the same switch as the bootstrap server's.
    pub fn new(store: SharedStore, require_token: bool) -> Self {
        DataplaneStreamAuthenticator {
            validator: TokenValidator::new(store.clone()),
            store,
            require_token,
        }
    }
}

/// The gRPC status of a token refusal.
fn token_refusal(error: &TokenError) -> Status {
    match token_status(error) {
        StatusCode::FORBIDDEN => Status::permission_denied(error.to_string()),
        StatusCode::INTERNAL_SERVER_ERROR => Status::unavailable(error.to_string()),
        _ => Status::unauthenticated(error.to_string()),
    }
}

#[tonic::async_trait]
impl StreamAuthenticator for DataplaneStreamAuthenticator {
    async fn authenticate(
        &self,
        node: &NodeId,
        envoy_node: &Node,
        token: Option<&str>,
    ) -> Result<(), Status> {
        if !self.require_token {
            return Ok(());
        }
        let Some(token) = token else {
            return Err(Status::unauthenticated(TOKEN_REQUIRED));
        };
        let key = ResourceKey::new(ResourceType::Dataplane, node.mesh.clone(), node.name.clone());
        let dataplane = match self.store.get(&key).await {
            Ok(dataplane) => dataplane,
            Err(StoreError::NotFound(_)) => match inline_dataplane(node, envoy_node) {
                Some(dataplane) => dataplane,
                None => {
                    let bare = DataplaneInfo {
                        name: node.name.clone(),
                        mesh: node.mesh.clone(),
                        proxy_type: "dataplane".to_owned(),
                        ..Default::default()
                    };
                    if let Err(e) = self.validator.validate_dataplane_token(token, &bare).await
                        && token_status(&e) != StatusCode::FORBIDDEN
                    {
                        return Err(token_refusal(&e));
                    }
                    return Err(Status::not_found(format!(
                        "dataplane {}.{} not found: create it first, or pass it to kuma-dp",
                        node.mesh, node.name
                    )));
                }
            },
            Err(e) => return Err(Status::unavailable(format!("store: {e}"))),
        };
        let info = DataplaneInfo::from_resource(&dataplane)
            .ok_or_else(|| Status::internal(format!("{} is not a Dataplane", node.id)))?;
        self.validator
            .validate_dataplane_token(token, &info)
            .await
            .map(|_| ())
            .map_err(|e| token_refusal(&e))
    }
}
