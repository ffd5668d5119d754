//! [`Json`]: the request body extractor whose every rejection is an [`ApiError`] (so a
//! malformed, oversized or non-JSON body gets Kuma's error envelope), and the JSON response.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON body in, or a JSON body out.
#[derive(Debug, Clone, PartialEq)]
pub struct Json<T>(pub T);

/// Whether a `Content-Type` names JSON (`application/json`, `application/merge-patch+json`,
/// with or without parameters).
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl<S, T> FromRequest<S> for Json<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        // No Content-Type is accepted (curl -T); a different one is refused as Kuma does.
        if let Some(value) = req.headers().get(header::CONTENT_TYPE) {
            let text = value.to_str().unwrap_or("");
            if !is_json(text) {
                return Err(ApiError::unsupported_media_type(format!(
                    "expected Content-Type application/json, got {:?}",
                    text.chars().take(100).collect::<String>()
                )));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::payload_too_large(super::BODY_LIMIT)
            } else {
                ApiError::bad_request("Bad Request", rejection.body_text())
            }
        })?;
        serde_json::from_slice(&bytes).map(Json).map_err(|e| {
            ApiError::bad_request("Bad Request", format!("the body is not valid JSON: {e}"))
        })
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(bytes) => {
                let mut response = bytes.into_response();
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                response
            }
            Err(e) => ApiError::internal("Could not write the response", e).into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_json;

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("Application/JSON"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
        assert!(!is_json(""));
    }
}
