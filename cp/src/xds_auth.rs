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
    /// This zone's name (zone ingresses hold a zone token for it).
    zone: String,
}

impl DataplaneStreamAuthenticator {
    /// `require_token`: the same switch as the bootstrap server's.
    pub fn new(store: SharedStore, require_token: bool) -> Self {
        DataplaneStreamAuthenticator {
            validator: TokenValidator::new(store.clone()),
            store,
            require_token,
            zone: String::new(),
        }
    }

    /// Zone ingresses (node id `.name`) of zone `zone` are checked too.
    pub fn with_zone(mut self, zone: impl Into<String>) -> Self {
        self.zone = zone.into();
        self
    }

    /// A zone ingress: a zone token of scope `ingress` for this zone, and a
    /// ZoneIngress of that name stored or inline.
    async fn authenticate_ingress(
        &self,
        node: &NodeId,
        envoy_node: &Node,
        token: &str,
    ) -> Result<(), Status> {
        self.validator
            .validate_zone_token(token, "ingress", &self.zone)
            .await
            .map_err(|e| token_refusal(&e))?;
        let key = ResourceKey::global(ResourceType::ZoneIngress, node.name.clone());
        match self.store.get(&key).await {
            Ok(_) => Ok(()),
            Err(StoreError::NotFound(_)) if inline_dataplane(node, envoy_node).is_some() => Ok(()),
            Err(StoreError::NotFound(_)) => Err(Status::not_found(format!(
                "zone ingress {} not found: pass it to kuma-dp with --dataplane-file",
                node.name
            ))),
            Err(e) => Err(Status::unavailable(format!("store: {e}"))),
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
        if node.is_zone_ingress() {
            return self.authenticate_ingress(node, envoy_node, token).await;
        }
        let key = ResourceKey::new(
            ResourceType::Dataplane,
            node.mesh.clone(),
            node.name.clone(),
        );
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use model::test_util::{dataplane, mesh};
    use store::memory::MemoryStore;
    use tonic::Code;

    use super::*;
    use crate::tokens::issuer::now;
    use crate::tokens::{DataplaneClaims, KeyScope, TokenIssuer};

    async fn setup() -> (SharedStore, TokenIssuer, DataplaneStreamAuthenticator) {
        let store: SharedStore = Arc::new(MemoryStore::new());
        for name in ["default", "other"] {
            store.create(mesh(name), None).await.expect("mesh");
        }
        store
            .create(
                dataplane("default", "web-1", "10.0.0.1", &[(8080, "web")]),
                None,
            )
            .await
            .expect("dataplane");
        let issuer = TokenIssuer::new(store.clone());
        let auth = DataplaneStreamAuthenticator::new(store.clone(), true);
        (store, issuer, auth)
    }

    /// A dataplane token of `mesh`/`name` issued at `iat`, valid for an hour.
    async fn token(issuer: &TokenIssuer, mesh: &str, name: &str, iat: i64) -> String {
        let claims = DataplaneClaims {
            name: name.to_owned(),
            mesh: mesh.to_owned(),
            ..Default::default()
        };
        issuer
            .issue(
                &KeyScope::dataplane(mesh),
                true,
                claims,
                Duration::from_secs(3600),
                iat,
            )
            .await
            .expect("issue")
    }

    fn node(id: &str) -> NodeId {
        NodeId::parse(id).expect("node id")
    }

    #[tokio::test]
    async fn tokens_on_the_stream() {
        let (_store, issuer, auth) = setup().await;
        let web1 = node("default.web-1");
        let envoy = Node::default();

        let good = token(&issuer, "default", "web-1", now()).await;
        assert!(auth.authenticate(&web1, &envoy, Some(&good)).await.is_ok());

        let none = auth
            .authenticate(&web1, &envoy, None)
            .await
            .expect_err("none");
        assert_eq!(none.code(), Code::Unauthenticated);
        assert!(
            none.message().contains("dataplane token is required"),
            "{none:?}"
        );

        let old = token(&issuer, "default", "web-1", now() - 3 * 3600).await;
        let expired = auth
            .authenticate(&web1, &envoy, Some(&old))
            .await
            .expect_err("old");
        assert_eq!(expired.code(), Code::Unauthenticated);
        assert!(expired.message().contains("expired"), "{expired:?}");

        let garbage = auth
            .authenticate(&web1, &envoy, Some("not.a.token"))
            .await
            .expect_err("garbage");
        assert_eq!(garbage.code(), Code::Unauthenticated);

        let other_mesh = token(&issuer, "other", "web-1", now()).await;
        let denied = auth
            .authenticate(&web1, &envoy, Some(&other_mesh))
            .await
            .expect_err("other mesh");
        assert_eq!(denied.code(), Code::PermissionDenied);
        assert!(
            denied.message().contains("\"other\"") && denied.message().contains("\"default\""),
            "{denied:?}"
        );
        assert!(!denied.message().contains(&other_mesh));

        let other_name = token(&issuer, "default", "web-2", now()).await;
        let denied = auth
            .authenticate(&web1, &envoy, Some(&other_name))
            .await
            .expect_err("other name");
        assert_eq!(denied.code(), Code::PermissionDenied);

        // Unknown proxy: NotFound, but only for a token valid for it.
        let web9 = node("default.web-9");
        let for_web9 = token(&issuer, "default", "web-9", now()).await;
        let missing = auth
            .authenticate(&web9, &envoy, Some(&for_web9))
            .await
            .expect_err("missing");
        assert_eq!(missing.code(), Code::NotFound);
        let hidden = auth
            .authenticate(&web9, &envoy, Some("not.a.token"))
            .await
            .expect_err("hidden");
        assert_eq!(hidden.code(), Code::Unauthenticated);
    }

    #[tokio::test]
    async fn authentication_off_admits_everyone() {
        let (store, _issuer, _) = setup().await;
        let auth = DataplaneStreamAuthenticator::new(store, false);
        let result = auth
            .authenticate(&node("default.nobody"), &Node::default(), None)
            .await;
        assert!(result.is_ok());
    }
}
