//! Who may call what. [`authenticate`] is the middleware that turns a request into an
//! [`Identity`] and stores it in the request extensions (so any merged router, e.g. the token
//! endpoints, can take `Extension<Identity>`):
//!
//! 1. a request from a loopback peer, without proxy headers (`Forwarded`, `X-Forwarded-For`,
//!    `X-Real-IP`), with a loopback `Host` and no cross-site browser marker is the admin
//!    (Kuma's `localhostIsAdmin`);
//! 2. else `Authorization: Bearer <user token>` is checked by the [`Authenticator`]; a refused
//!    token is a 401 (except on `GET /`, whose auth Kuma skips);
//! 3. else the caller is anonymous.
//!
//! Then, keeping it simple and safe: every write (any method but GET/HEAD/OPTIONS) needs an
//! admin (403 otherwise), and reading an admin-only type (Secret, GlobalSecret) needs an
//! admin too (`authorize_read`). Other reads are open, as Kuma's default `access.static`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use model::ResourceType;

use super::error::ApiError;
use crate::auth::{Authenticator, Identity};

/// State of the [`authenticate`] middleware.
#[derive(Clone)]
pub struct Authn {
    authenticator: Arc<dyn Authenticator>,
    localhost_is_admin: bool,
}

impl Authn {
    pub fn new(authenticator: Arc<dyn Authenticator>, localhost_is_admin: bool) -> Self {
        Authn {
            authenticator,
            localhost_is_admin,
        }
    }
}

/// The authentication middleware: puts the caller's [`Identity`] into the request extensions
/// and refuses writes by non-admins. Use with
/// `axum::middleware::from_fn_with_state(Authn::new(..), authenticate)`.
pub async fn authenticate(State(authn): State<Authn>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let identity = match identify(&authn, &mut parts).await {
        Ok(identity) => identity,
        // Kuma skips authentication for the index, so kumactl can always reach it.
        Err(_) if parts.uri.path() == "/" => Identity::anonymous(),
        Err(e) => return e.into_response(),
    };
    if is_write(&parts.method) && !identity.is_admin() {
        return ApiError::access_denied(format!(
            "user {:?} may not {} here: writes need an admin (a request from localhost, or a user token of group mesh-system:admin)",
            identity.name, parts.method
        ))
        .into_response();
    }
    parts.extensions.insert(identity);
    next.run(Request::from_parts(parts, body)).await
}

fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

async fn identify(authn: &Authn, parts: &mut Parts) -> Result<Identity, ApiError> {
    if authn.localhost_is_admin && is_local(parts).await {
        return Ok(Identity::admin());
    }
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Ok(Identity::anonymous());
    };
    let Ok(value) = value.to_str() else {
        return Err(ApiError::unauthenticated(
            "the Authorization header is not valid text",
        ));
    };
    let Some(token) = bearer_token(value) else {
        // Another scheme is not ours to judge (Kuma passes it on): the caller is anonymous.
        return Ok(Identity::anonymous());
    };
    if token.is_empty() {
        return Err(ApiError::unauthenticated(
            "Unauthenticated: the bearer token is empty",
        ));
    }
    authn.authenticator.authenticate(token).await.map_err(|e| {
        // The reason never contains the token.
        tracing::debug!(reason = %e, "user token refused");
        ApiError::unauthenticated(format!("Unauthenticated: {e}"))
    })
}

/// The token of `Bearer <token>` (scheme case-insensitive), `None` for other schemes.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// Whether the request comes straight from this host: loopback peer, loopback `Host`, not
/// relayed by a proxy, not a cross-site browser request.
async fn is_local(parts: &mut Parts) -> bool {
    let Ok(ConnectInfo(peer)) = ConnectInfo::<SocketAddr>::from_request_parts(parts, &()).await
    else {
        return false;
    };
    if !is_loopback(peer.ip()) {
        return false;
    }
    let headers = &parts.headers;
    if ["forwarded", "x-forwarded-for", "x-real-ip"]
        .iter()
        .any(|h| headers.contains_key(*h))
    {
        return false;
    }
    if let Some(site) = headers.get("sec-fetch-site")
        && !matches!(site.to_str(), Ok("same-origin" | "none"))
    {
        return false;
    }
    match host_of(headers, parts) {
        Some(host) => is_loopback_host(&host),
        None => true,
    }
}

fn host_of(headers: &HeaderMap, parts: &Parts) -> Option<String> {
    headers
        .get(header::HOST)
        .map(|h| h.to_str().unwrap_or("\u{0}").to_string())
        .or_else(|| parts.uri.authority().map(|a| a.as_str().to_string()))
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// `localhost`, `127.0.0.1:5681`, `[::1]:5681`, ...
fn is_loopback_host(host: &str) -> bool {
    let host = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                host
            }
        })
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(is_loopback)
}

/// Reading resources of `kind` needs an admin when the type is admin-only (secrets).
pub(crate) fn authorize_read(kind: ResourceType, identity: &Identity) -> Result<(), ApiError> {
    if kind.descriptor().admin_only && !identity.is_admin() {
        return Err(ApiError::access_denied(format!(
            "user {:?} cannot access resources of type {:?}: only admins can",
            identity.name,
            kind.name()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost",
            "LOCALHOST:5681",
            "127.0.0.1",
            "127.0.0.1:5681",
            "[::1]:5681",
            "[::1]",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "example.com",
            "10.0.0.1:5681",
            "localhost.evil.com",
            "[::2]:1",
            "\u{0}",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn bearer() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer "), Some(""));
    }
}
