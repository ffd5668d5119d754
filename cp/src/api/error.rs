//! [`ApiError`]: every failure of the REST API, rendered as Kuma's error body.
//!
//! Kuma 2.x (`pkg/core/rest/errors/types/error.go`) writes `type`, `status`, `title`,
//! `detail` and `invalid_parameters`; kumactl 1.x reads `title`, `details` and `causes`. Both
//! sets are always written, so every kumactl prints `"{title} ({detail})"` and one
//! `* field: reason` line per parameter. A 500 never shows its cause: the cause is logged
//! (once, inside the request span) and the body says "Internal Server Error".

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use model::validate::Violation;
use serde::Serialize;
use store::StoreError;

/// The `type` of every error body.
pub const ERROR_TYPE: &str = "/std-errors";

/// One bad field of a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InvalidParameter {
    pub field: String,
    pub reason: String,
}

impl InvalidParameter {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        InvalidParameter {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<Violation> for InvalidParameter {
    fn from(v: Violation) -> Self {
        InvalidParameter::new(v.field, v.message)
    }
}

/// A failed API request: status, Kuma's title and detail, the bad fields.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {title}: {detail}")]
pub struct ApiError {
    pub status: StatusCode,
    pub title: String,
    pub detail: String,
    pub invalid_parameters: Vec<InvalidParameter>,
    /// What really went wrong behind a 5xx; logged, never sent.
    hidden_cause: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, title: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            title: title.into(),
            detail: detail.into(),
            invalid_parameters: Vec::new(),
            hidden_cause: None,
        }
    }

    pub fn with_parameters(
        mut self,
        parameters: impl IntoIterator<Item = InvalidParameter>,
    ) -> Self {
        self.invalid_parameters.extend(parameters);
        self
    }

    /// 404 with Kuma's detail "Not found"; `title` says what was attempted
    /// ("Could not retrieve a resource").
    pub fn not_found(title: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, title, "Not found")
    }

    /// 400 "Resource is not valid" listing every violation.
    pub fn invalid(
        title: impl Into<String>,
        parameters: impl IntoIterator<Item = InvalidParameter>,
    ) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, title, "Resource is not valid")
            .with_parameters(parameters)
    }

    pub fn bad_request(title: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, title, detail)
    }

    /// 405 for a write the API does not take (read-only type or read-only server).
    pub fn method_not_allowed(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed", detail)
    }

    /// 401: a token was presented and refused, or a write came without one.
    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Invalid authentication data",
            detail,
        )
    }

    /// 403: the caller is known but may not do this.
    pub fn access_denied(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "Access Denied", detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, "Conflict", detail)
    }

    pub fn payload_too_large(limit: usize) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request body too large",
            format!("the request body exceeds the limit of {limit} bytes"),
        )
    }

    pub fn unsupported_media_type(detail: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported Media Type",
            detail,
        )
    }

    /// 500 whose body says only "Internal Server Error"; `cause` is logged.
    pub fn internal(title: impl Into<String>, cause: impl std::fmt::Display) -> Self {
        let mut e = ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            title,
            "Internal Server Error",
        );
        e.hidden_cause = Some(cause.to_string());
        e
    }

    /// Maps a store failure; `title` says what was attempted.
    pub fn from_store(title: &str, err: StoreError) -> Self {
        match err {
            StoreError::NotFound(_) => ApiError::not_found(title),
            StoreError::AlreadyExists(key) => ApiError::conflict(format!("{key} already exists")),
            StoreError::Conflict { key, .. } => ApiError::conflict(format!(
                "{key} was changed by someone else at the same time; read it again and retry"
            )),
            StoreError::Unavailable { .. } => {
                let mut e = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    title,
                    "the store is unavailable, retry later",
                );
                e.hidden_cause = Some(err.to_string());
                e
            }
            other => ApiError::internal(title, other),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

/// The wire form (field order as Kuma's Go struct).
#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    status: u16,
    title: &'a str,
    detail: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    invalid_parameters: &'a [InvalidParameter],
    details: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    causes: Vec<Cause<'a>>,
}

#[derive(Serialize)]
struct Cause<'a> {
    field: &'a str,
    message: &'a str,
}

impl ApiError {
    /// The JSON body Kuma writes for this error.
    pub fn body(&self) -> serde_json::Value {
        let body = Body {
            kind: ERROR_TYPE,
            status: self.status.as_u16(),
            title: &self.title,
            detail: &self.detail,
            invalid_parameters: &self.invalid_parameters,
            details: &self.detail,
            causes: self
                .invalid_parameters
                .iter()
                .map(|p| Cause {
                    field: &p.field,
                    message: &p.reason,
                })
                .collect(),
        };
        serde_json::to_value(body).unwrap_or_default()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(
                status = self.status.as_u16(),
                title = %self.title,
                cause = self.hidden_cause.as_deref().unwrap_or(""),
                "request failed"
            );
        } else {
            // Not the detail: parser messages may quote the body, which may hold secrets.
            tracing::debug!(status = self.status.as_u16(), title = %self.title, "request refused");
        }
        let bytes = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut response = (self.status, bytes).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}
