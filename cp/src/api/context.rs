//! [`Ctx`]: what a resource handler needs from a request besides its body — the caller, the
//! path parameters, the query and where to point `next` links — extracted once, with every
//! failure an [`ApiError`].

use std::collections::HashMap;

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, OriginalUri, Path, Query};
use axum::http::header;
use axum::http::request::Parts;

use super::error::ApiError;
use crate::auth::Identity;

/// Marks requests that arrived over TLS, so `next` links say `https`. The binary adds it to
/// the HTTPS listener's router: `router.layer(Extension(cp::api::Https))`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Https;

/// The request, minus its body.
#[derive(Clone, Debug)]
pub(crate) struct Ctx {
    /// Set by the authentication middleware; anonymous if it did not run.
    pub identity: Identity,
    params: HashMap<String, String>,
    /// Decoded query pairs, in request order.
    pub query: Vec<(String, String)>,
    /// The request path as the client sent it (before any nesting).
    pub path: String,
    /// `Host` header (or `:authority`), for absolute `next` links.
    pub host: String,
    pub scheme: &'static str,
}

impl Ctx {
    /// A path parameter (`mesh`, `name`); empty when the route has none of that name.
    pub fn param(&self, name: &str) -> &str {
        self.params.get(name).map(String::as_str).unwrap_or("")
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let identity = parts
            .extensions
            .get::<Identity>()
            .cloned()
            .unwrap_or_else(Identity::anonymous);
        let params = match Path::<HashMap<String, String>>::from_request_parts(parts, state).await {
            Ok(Path(params)) => params,
            Err(PathRejection::MissingPathParams(_)) => HashMap::new(),
            Err(e) => return Err(ApiError::bad_request("Bad Request", e.body_text())),
        };
        let query = match parts.uri.query() {
            None => Vec::new(),
            Some(_) => Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
                .map(|Query(pairs)| pairs)
                .map_err(|e| ApiError::bad_request("Bad Request", e.body_text()))?,
        };
        let path = parts
            .extensions
            .get::<OriginalUri>()
            .map(|u| u.0.path().to_string())
            .unwrap_or_else(|| parts.uri.path().to_string());
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| parts.uri.authority().map(|a| a.to_string()))
            .unwrap_or_else(|| "localhost".to_string());
        let tls =
            parts.extensions.get::<Https>().is_some() || parts.uri.scheme_str() == Some("https");
        Ok(Ctx {
            identity,
            params,
            query,
            path,
            host,
            scheme: if tls { "https" } else { "http" },
        })
    }
}
