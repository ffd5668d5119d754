//! Who is calling the API: the identity a request carries, and the contract between the
//! REST API (which asks) and the token room (which answers).

use async_trait::async_trait;

/// Kuma's group of administrators: may read and write everything, secrets included.
pub const ADMIN_GROUP: &str = "mesh-system:admin";
/// Every caller that presented a valid token.
pub const AUTHENTICATED_GROUP: &str = "mesh-system:authenticated";
/// Callers without a token.
pub const ANONYMOUS_GROUP: &str = "mesh-system:unauthenticated";
/// The user name of the built-in administrator (localhost and the admin token).
pub const ADMIN_USER: &str = "mesh-system:admin";
/// The user name of a caller without a token.
pub const ANONYMOUS_USER: &str = "mesh-system:anonymous";

/// The caller of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub groups: Vec<String>,
}

impl Identity {
    /// The administrator: requests from localhost, and holders of an admin token.
    pub fn admin() -> Self {
        Identity {
            name: ADMIN_USER.into(),
            groups: vec![ADMIN_GROUP.into(), AUTHENTICATED_GROUP.into()],
        }
    }

    /// A caller that presented no token.
    pub fn anonymous() -> Self {
        Identity {
            name: ANONYMOUS_USER.into(),
            groups: vec![ANONYMOUS_GROUP.into()],
        }
    }

    pub fn is_admin(&self) -> bool {
        self.groups.iter().any(|g| g == ADMIN_GROUP)
    }

    pub fn is_authenticated(&self) -> bool {
        self.groups.iter().any(|g| g == AUTHENTICATED_GROUP)
    }
}

/// Why a presented token was refused. The message is safe to show to the caller: it never
/// contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AuthError(pub String);

/// Turns a bearer token (a user token JWT) into an identity.
#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    async fn authenticate(&self, token: &str) -> Result<Identity, AuthError>;
}
