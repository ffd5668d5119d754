//! The issuing endpoints of the REST API (`pkg/tokens/builtin/server/webservice.go`,
//! `pkg/plugins/authn/api-server/tokens/ws/server/webservice.go`):
//!
//! * `POST /tokens/dataplane` (and 1.x `POST /tokens`) `{name, mesh, tags, type, workload,
//!   validFor}`: `mesh` required, `type` one of `""`, `dataplane`, `ingress`, `egress`,
//!   empty `validFor` = 10 years;
//! * `POST /tokens/zone` `{zone, scope, validFor}`: `scope` required, each `ingress`, `egress`
//!   or `cp`, empty `validFor` = 10 years;
//! * `POST /tokens/user` `{name, groups, validFor}`: `name` and a non-zero `validFor` required.
//!
//! Success is `200 text/plain` with the raw JWT. Validation errors are 400 with Kuma's error
//! body, title "Invalid request" and one `invalid_parameters` entry per field. The caller is
//! the [`Identity`] the API's auth middleware put in the request extensions (none: anonymous);
//! only the users and groups of the static access lists (default: `mesh-system:admin`) may
//! issue, others get 403 "Access Denied".

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::issuer::{DEFAULT_DATAPLANE_TOKEN_VALIDITY, DataplaneIdentity, TokenIssuer};
use super::{SharedStore, TokenError, parse_go_duration};
use crate::auth::{ADMIN_GROUP, Identity};

/// Who may issue one kind of token (Kuma's `access.static.generate*Token`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessList {
    pub users: Vec<String>,
    pub groups: Vec<String>,
}

impl Default for AccessList {
    /// Kuma's default: the `mesh-system:admin` group.
    fn default() -> Self {
        AccessList {
            users: Vec::new(),
            groups: vec![ADMIN_GROUP.to_string()],
        }
    }
}

impl AccessList {
    pub fn allows(&self, who: &Identity) -> bool {
        self.users.contains(&who.name) || who.groups.iter().any(|g| self.groups.contains(g))
    }
}

/// `access.static.generateDpToken`, `generateZoneToken`, `generateUserToken`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenAccess {
    pub dataplane: AccessList,
    pub zone: AccessList,
    pub user: AccessList,
}

/// State of the token endpoints.
#[derive(Clone)]
pub struct TokensState {
    pub issuer: TokenIssuer,
    pub access: TokenAccess,
}

impl TokensState {
    /// Global or standalone CP: missing signing keys are created on first issue.
    pub fn new(store: SharedStore) -> Self {
        TokensState {
            issuer: TokenIssuer::new(store),
            access: TokenAccess::default(),
        }
    }

    /// Federated zone: zone tokens cannot be issued here (the zone holds only public zone
    /// keys), as in Kuma: 404 "Signing Key not found".
    pub fn federated_zone(store: SharedStore) -> Self {
        TokensState {
            issuer: TokenIssuer::new(store).without_zone_key_creation(),
            access: TokenAccess::default(),
        }
    }
}

/// The token routes, relative to the API root. Merge with
/// `api.merge(tokens::router().with_state(state))`.
pub fn router() -> Router<TokensState> {
    Router::new()
        .route("/tokens", post(issue_dataplane))
        .route("/tokens/dataplane", post(issue_dataplane))
        .route("/tokens/zone", post(issue_zone))
        .route("/tokens/user", post(issue_user))
}

/// The zone's admin server (`adminServer.local.port`, bound to 127.0.0.1 only):
/// `POST /tokens/dataplane` (and 1.x/0.x `POST /tokens`), the same handler as
/// the REST API's. A caller reaching it is on the control plane's host, so
/// it acts as the administrator (Kuma 0.x issued tokens this way).
pub fn local_admin_router(state: TokensState) -> Router {
    Router::new()
        .route("/tokens", post(issue_dataplane))
        .route("/tokens/dataplane", post(issue_dataplane))
        .layer(Extension(Identity::admin()))
        .with_state(state)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DataplaneTokenRequest {
    name: Option<String>,
    mesh: Option<String>,
    tags: Option<BTreeMap<String, Option<Vec<String>>>>,
    #[serde(rename = "type")]
    proxy_type: Option<String>,
    workload: Option<String>,
    #[serde(rename = "validFor")]
    valid_for: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ZoneTokenRequest {
    zone: Option<String>,
    scope: Option<Vec<String>>,
    #[serde(rename = "validFor")]
    valid_for: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct UserTokenRequest {
    name: Option<String>,
    groups: Option<Vec<String>>,
    #[serde(rename = "validFor")]
    valid_for: Option<String>,
}

const PROXY_TYPES: &[&str] = &["dataplane", "ingress", "egress"];
const ZONE_SCOPES: &[&str] = &["ingress", "egress", "cp"];

async fn issue_dataplane(
    State(state): State<TokensState>,
    identity: Option<Extension<Identity>>,
    body: Bytes,
) -> Response {
    let who = caller(identity);
    if !state.access.dataplane.allows(&who) {
        return access_denied(format!(
            "user {:?} cannot access generate dataplane token",
            user_string(&who)
        ));
    }
    let req: DataplaneTokenRequest = match parse_body(&body) {
        Ok(r) => r,
        Err(detail) => return bad_request(&detail),
    };
    let mut violations = Violations::default();
    let mesh = req.mesh.unwrap_or_default();
    if mesh.is_empty() {
        violations.add("mesh", "cannot be empty");
    }
    let valid_for = valid_for(
        &mut violations,
        req.valid_for.as_deref(),
        Some(DEFAULT_DATAPLANE_TOKEN_VALIDITY),
    );
    let proxy_type = req.proxy_type.unwrap_or_default();
    if !proxy_type.is_empty() && !PROXY_TYPES.contains(&proxy_type.as_str()) {
        violations.add("type", format!("{proxy_type} is not a valid proxy type"));
    }
    if let Some(resp) = violations.into_response() {
        return resp;
    }
    let identity = DataplaneIdentity {
        name: req.name.unwrap_or_default(),
        mesh,
        tags: req
            .tags
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect(),
        proxy_type,
        workload: req.workload.unwrap_or_default(),
    };
    match state
        .issuer
        .issue_dataplane_token(&identity, valid_for)
        .await
    {
        Ok(token) => token_response(token),
        Err(e) => issue_error(e),
    }
}

async fn issue_zone(
    State(state): State<TokensState>,
    identity: Option<Extension<Identity>>,
    body: Bytes,
) -> Response {
    let who = caller(identity);
    let req: ZoneTokenRequest = match parse_body(&body) {
        Ok(r) => r,
        Err(detail) => return bad_request(&detail),
    };
    let zone = req.zone.unwrap_or_default();
    if !state.access.zone.allows(&who) {
        return access_denied(format!(
            "user {:?} cannot access generate zone token for zone '{zone}'",
            user_string(&who)
        ));
    }
    let mut violations = Violations::default();
    let scope = req.scope.unwrap_or_default();
    if scope.is_empty() {
        violations.add("scope", "cannot be empty");
    }
    for (i, s) in scope.iter().enumerate() {
        if !ZONE_SCOPES.contains(&s.as_str()) {
            violations.add(
                format!("scope[{i}]"),
                format!("{s:?} is not a valid scope: must be one of ingress, egress, cp"),
            );
        }
    }
    let valid_for = valid_for(
        &mut violations,
        req.valid_for.as_deref(),
        Some(DEFAULT_DATAPLANE_TOKEN_VALIDITY),
    );
    if let Some(resp) = violations.into_response() {
        return resp;
    }
    let valid_for = valid_for.unwrap_or(DEFAULT_DATAPLANE_TOKEN_VALIDITY);
    match state
        .issuer
        .issue_zone_token(&zone, &scope, valid_for)
        .await
    {
        Ok(token) => token_response(token),
        Err(e) => issue_error(e),
    }
}

async fn issue_user(
    State(state): State<TokensState>,
    identity: Option<Extension<Identity>>,
    body: Bytes,
) -> Response {
    let who = caller(identity);
    if !state.access.user.allows(&who) {
        return access_denied("action not allowed".to_string());
    }
    let req: UserTokenRequest = match parse_body(&body) {
        Ok(r) => r,
        Err(detail) => return bad_request(&detail),
    };
    let mut violations = Violations::default();
    let name = req.name.unwrap_or_default();
    if name.is_empty() {
        violations.add("name", "cannot be empty");
    }
    let valid_for = valid_for(&mut violations, req.valid_for.as_deref(), None);
    if valid_for == Some(Duration::ZERO) {
        violations.add("validFor", "cannot be empty or nil");
    }
    if let Some(resp) = violations.into_response() {
        return resp;
    }
    let valid_for = valid_for.unwrap_or_default();
    match state
        .issuer
        .issue_user_token(&name, &req.groups.unwrap_or_default(), valid_for)
        .await
    {
        Ok(token) => token_response(token),
        Err(e) => issue_error(e),
    }
}

fn caller(identity: Option<Extension<Identity>>) -> Identity {
    identity
        .map(|Extension(i)| i)
        .unwrap_or_else(Identity::anonymous)
}

/// Go's `User.String()`: `name/group1,group2`.
fn user_string(who: &Identity) -> String {
    format!("{}/{}", who.name, who.groups.join(","))
}

/// `validFor`: empty gives `default` (a violation when there is none), else a Go duration.
fn valid_for(
    violations: &mut Violations,
    text: Option<&str>,
    default: Option<Duration>,
) -> Option<Duration> {
    match text.unwrap_or_default() {
        "" => {
            if default.is_none() {
                violations.add("validFor", "cannot be empty");
            }
            default
        }
        text => match parse_go_duration(text) {
            Ok(d) => Some(d),
            Err(reason) => {
                violations.add("validFor", reason);
                None
            }
        },
    }
}

/// The request body; the error is the detail of a 400 "Bad Request".
fn parse_body<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("could not parse the request body: {e}"))
}

fn bad_request(detail: &str) -> Response {
    error_response(StatusCode::BAD_REQUEST, "Bad Request", detail, &[])
}

fn token_response(token: String) -> Response {
    let mut resp = token.into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

/// Kuma's `HandleError(..., "Could not issue a token")`.
fn issue_error(err: TokenError) -> Response {
    const TITLE: &str = "Could not issue a token";
    match &err {
        TokenError::SigningKeyNotFound { .. } => error_response(
            StatusCode::NOT_FOUND,
            "Signing Key not found",
            &err.to_string(),
            &[],
        ),
        TokenError::MeshNotFound { mesh, .. } => error_response(
            StatusCode::BAD_REQUEST,
            TITLE,
            "Mesh is not found",
            &[(
                "mesh".to_string(),
                format!("mesh of name {mesh} is not found"),
            )],
        ),
        _ => {
            tracing::error!(error = %err, "could not issue a token");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                TITLE,
                "Internal Server Error",
                &[],
            )
        }
    }
}

fn access_denied(reason: String) -> Response {
    error_response(StatusCode::FORBIDDEN, "Access Denied", &reason, &[])
}

/// Field violations of one request, in the order found.
#[derive(Default)]
struct Violations(Vec<(String, String)>);

impl Violations {
    fn add(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.0.push((field.into(), reason.into()));
    }

    /// 400 "Invalid request" / "Resource is not valid" when there is any violation.
    fn into_response(self) -> Option<Response> {
        (!self.0.is_empty()).then(|| {
            error_response(
                StatusCode::BAD_REQUEST,
                "Invalid request",
                "Resource is not valid",
                &self.0,
            )
        })
    }
}

/// Kuma's error body (`pkg/core/rest/errors/types`): both the current (`detail`,
/// `invalid_parameters`) and the legacy (`details`, `causes`) fields; empty lists left out.
pub(crate) fn error_response(
    status: StatusCode,
    title: &str,
    detail: &str,
    params: &[(String, String)],
) -> Response {
    let mut body = serde_json::Map::new();
    body.insert("type".into(), "/std-errors".into());
    body.insert("status".into(), status.as_u16().into());
    body.insert("title".into(), title.into());
    body.insert("detail".into(), detail.into());
    if !params.is_empty() {
        let list = params
            .iter()
            .map(|(f, r)| serde_json::json!({"field": f, "reason": r}))
            .collect::<Vec<_>>();
        body.insert("invalid_parameters".into(), list.into());
    }
    body.insert("details".into(), detail.into());
    if !params.is_empty() {
        let list = params
            .iter()
            .map(|(f, r)| serde_json::json!({"field": f, "message": r}))
            .collect::<Vec<_>>();
        body.insert("causes".into(), list.into());
    }
    let mut resp = (status, serde_json::Value::Object(body).to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
