//! `POST /bootstrap` of the zone's dp-server (reference: `kuma-api.md` §4.2,
//! Kuma's `pkg/xds/bootstrap/handler.go`): `kuma-dp run` sends who it is and
//! gets the Envoy bootstrap that makes its Envoy dial our ADS server.
//!
//! The request is Kuma's `BootstrapRequest` JSON. Read here: `mesh`, `name`,
//! `proxyType` (only `dataplane`), `dataplaneToken`, `dataplaneResource`
//! (JSON or YAML text of a Dataplane, universal "inline" dataplanes),
//! `adminPort` (1.x; else the Dataplane's `networking.admin.port`, else
//! 9901), `caCert` (the PEM the proxy trusts for the control plane) and
//! `features` (`feature-delta-grpc` selects delta ADS); other fields are
//! accepted and ignored. A field of the wrong type is a 400 naming it.
//!
//! Processing:
//! 1. the token is required unless [`BootstrapSettings::require_token`] is
//!    off: none is 401;
//! 2. the Dataplane comes from `dataplaneResource` (parsed and validated with
//!    [`model`], its mesh must exist: 422 otherwise) or from the store (404
//!    with an empty body when missing: kuma-dp retries on that);
//! 3. the token is checked with [`TokenValidator::validate_dataplane_token`]
//!    against that Dataplane (and against the stored one an inline Dataplane
//!    would replace): a bad, expired, revoked or unknown-key token is 401, a
//!    valid token for another mesh, proxy, type, tag or workload is 403; the
//!    message says which rule failed and never contains the token;
//! 4. an inline Dataplane is then upserted into the store, and the Envoy
//!    bootstrap carries it as node metadata `dataplane.resource` (Kuma's
//!    marker of an inline Dataplane: see [`crate::xds_lifecycle`]);
//! 5. the answer (200) is, with `Accept: application/json` (kuma-dp), Kuma's
//!    `{"bootstrap": <base64 YAML>, "kumaSidecarConfiguration": {...}}`, and
//!    otherwise the bootstrap itself as proto3 JSON (which is also YAML, for
//!    older clients).
//!
//! Error bodies are plain text, as Kuma's bootstrap handler writes them.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use model::{Resource, ResourceKey, ResourceType, Spec};
use serde_json::{Map, Value, json};
use store::StoreError;
use xds::bootstrap::{AdsApiType, BootstrapParams, XdsServer};

use crate::tokens::{DataplaneInfo, SharedStore, TokenError, TokenValidator};

/// kuma-dp's feature flag for delta xDS.
pub const FEATURE_DELTA_GRPC: &str = "feature-delta-grpc";

/// What the bootstrap needs to know about this control plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootstrapSettings {
    /// Host name or IP address proxies dial for xDS; empty: the host of the
    /// request (the address kuma-dp reached this server on), else 127.0.0.1.
    pub xds_host: String,
    pub xds_port: u16,
    /// Whether the xDS server is served over TLS.
    pub tls: bool,
    /// The CA (PEM) of the xDS server certificate; used when the request has
    /// no `caCert`. TLS without either is a 500.
    pub ca_pem: Option<String>,
    /// Kuma's `dpServer.authn.dpProxy.type: dpToken` (on) or `none` (off).
    pub require_token: bool,
    /// This zone's name: a zone ingress's token must be a zone token of
    /// scope `ingress` for it.
    pub zone: String,
}

/// The handler's state: the store, a token validator on it, the settings.
#[derive(Clone)]
pub struct BootstrapState {
    pub(crate) store: SharedStore,
    pub(crate) validator: TokenValidator,
    pub(crate) settings: Arc<BootstrapSettings>,
}

impl BootstrapState {
    pub fn new(store: SharedStore, settings: BootstrapSettings) -> Self {
        BootstrapState {
            validator: TokenValidator::new(store.clone()),
            store,
            settings: Arc::new(settings),
        }
    }
}

/// `POST /bootstrap`.
pub fn router() -> Router<BootstrapState> {
    Router::new().route("/bootstrap", post(handle))
}

/// Why a bootstrap request was refused. Messages never contain the token.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapRequestError {
    #[error("{field}: {message}")]
    BadRequest {
        field: &'static str,
        message: String,
    },
    #[error(
        "Dataplane Token is required. Generate token using 'kumactl generate dataplane-token > /path/file'"
    )]
    TokenRequired,
    #[error("{0}")]
    Token(#[source] TokenError),
    #[error("dataplane {mesh}.{name} not found")]
    DataplaneNotFound { mesh: String, name: String },
    #[error("dataplaneResource: {0}")]
    InvalidDataplane(String),
    #[error("{0}")]
    Internal(String),
}

impl BootstrapRequestError {
    pub fn status(&self) -> StatusCode {
        match self {
            BootstrapRequestError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            BootstrapRequestError::TokenRequired => StatusCode::UNAUTHORIZED,
            BootstrapRequestError::Token(e) => token_status(e),
            BootstrapRequestError::DataplaneNotFound { .. } => StatusCode::NOT_FOUND,
            BootstrapRequestError::InvalidDataplane(_) => StatusCode::UNPROCESSABLE_ENTITY,
            BootstrapRequestError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// 401: the token does not prove anything; 403: it is valid but for another
/// proxy; 500: the store failed.
pub(crate) fn token_status(error: &TokenError) -> StatusCode {
    match error {
        TokenError::WrongMesh { .. }
        | TokenError::WrongName { .. }
        | TokenError::WrongType { .. }
        | TokenError::MissingTag { .. }
        | TokenError::TagValueNotAllowed { .. }
        | TokenError::MissingWorkload { .. }
        | TokenError::WrongWorkload { .. }
        | TokenError::ScopeNotAllowed { .. }
        | TokenError::WrongZone { .. } => StatusCode::FORBIDDEN,
        TokenError::Store { .. } | TokenError::Crypto { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::UNAUTHORIZED,
    }
}

impl IntoResponse for BootstrapRequestError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let BootstrapRequestError::DataplaneNotFound { .. } = self {
            // kuma-dp retries on a 404 with an empty body ("not registered yet").
            return status.into_response();
        }
        let text = self.to_string();
        let mut response = (status, text).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}

/// What kind of proxy asks (`proxyType`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProxyKind {
    #[default]
    Dataplane,
    /// A zone ingress: a ZoneIngress resource, no mesh, a zone token.
    Ingress,
}

/// The fields of Kuma's `BootstrapRequest` this control plane uses.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct BootstrapRequest {
    pub(crate) kind: ProxyKind,
    pub(crate) mesh: String,
    pub(crate) name: String,
    pub(crate) token: Option<String>,
    pub(crate) dataplane_resource: Option<String>,
    admin_port: Option<u32>,
    ca_cert: Option<String>,
    delta: bool,
}

pub(crate) fn bad(field: &'static str, message: impl Into<String>) -> BootstrapRequestError {
    BootstrapRequestError::BadRequest {
        field,
        message: message.into(),
    }
}

fn string_field(
    object: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, BootstrapRequestError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(field, "must be a string")),
    }
}

fn parse_request(body: &[u8]) -> Result<BootstrapRequest, BootstrapRequestError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| bad("body", format!("not valid JSON: {e}")))?;
    let Value::Object(object) = value else {
        return Err(bad("body", "must be a JSON object"));
    };
    let kind = match string_field(&object, "proxyType")?.as_deref() {
        None | Some("dataplane") => ProxyKind::Dataplane,
        Some("ingress") => ProxyKind::Ingress,
        Some(other) => {
            let shown = if other == "egress" { other } else { "(other)" };
            return Err(bad(
                "proxyType",
                format!("must be dataplane or ingress, not {shown}"),
            ));
        }
    };
    let admin_port = match object.get("adminPort") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(0) => None,
            Some(p) if p <= u64::from(u16::MAX) => u32::try_from(p).ok(),
            _ => return Err(bad("adminPort", "must be a port number from 1 to 65535")),
        },
        Some(_) => return Err(bad("adminPort", "must be a port number from 1 to 65535")),
    };
    let delta = match object.get("features") {
        None | Some(Value::Null) => false,
        Some(Value::Array(items)) => {
            let mut delta = false;
            for item in items {
                match item {
                    Value::String(s) => delta |= s == FEATURE_DELTA_GRPC,
                    _ => return Err(bad("features", "must be a list of strings")),
                }
            }
            delta
        }
        Some(_) => return Err(bad("features", "must be a list of strings")),
    };
    Ok(BootstrapRequest {
        kind,
        mesh: string_field(&object, "mesh")?.unwrap_or_default(),
        name: string_field(&object, "name")?.unwrap_or_default(),
        token: string_field(&object, "dataplaneToken")?,
        dataplane_resource: string_field(&object, "dataplaneResource")?,
        admin_port,
        ca_cert: string_field(&object, "caCert")?,
        delta,
    })
}

async fn handle(
    State(state): State<BootstrapState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, BootstrapRequestError> {
    let result = bootstrap(&state, &headers, &body).await;
    if let Err(e) = &result {
        // Safe to log: no message carries the token.
        tracing::warn!(status = %e.status(), error = %e, "dataplane bootstrap refused");
    }
    result
}

async fn bootstrap(
    state: &BootstrapState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, BootstrapRequestError> {
    let request = parse_request(body)?;
    let token = request.token.as_deref();
    if token.is_none() && state.settings.require_token {
        return Err(BootstrapRequestError::TokenRequired);
    }
    if request.kind == ProxyKind::Ingress {
        let ingress = crate::ingress_bootstrap::zone_ingress(state, &request).await?;
        return respond(state, headers, &request, &ingress);
    }
    let dataplane = match &request.dataplane_resource {
        Some(text) => {
            let dataplane = inline_dataplane(state, &request, text).await?;
            if let Some(token) = token {
                check_token(state, token, &dataplane).await?;
            }
            upsert(state, token, dataplane).await?
        }
        None => {
            if request.mesh.is_empty() {
                return Err(bad("mesh", "must not be empty"));
            }
            if request.name.is_empty() {
                return Err(bad("name", "must not be empty"));
            }
            let key = ResourceKey::new(
                ResourceType::Dataplane,
                request.mesh.clone(),
                request.name.clone(),
            );
            match state.store.get(&key).await {
                Ok(dataplane) => {
                    if let Some(token) = token {
                        check_token(state, token, &dataplane).await?;
                    }
                    dataplane
                }
                Err(StoreError::NotFound(_)) => {
                    // Do not tell a caller without a valid token whether it exists.
                    if let Some(token) = token {
                        let bare = DataplaneInfo {
                            name: request.name.clone(),
                            mesh: request.mesh.clone(),
                            proxy_type: "dataplane".to_string(),
                            ..Default::default()
                        };
                        if let Err(e) = state.validator.validate_dataplane_token(token, &bare).await
                            && token_status(&e) != StatusCode::FORBIDDEN
                        {
                            return Err(BootstrapRequestError::Token(e));
                        }
                    }
                    return Err(BootstrapRequestError::DataplaneNotFound {
                        mesh: request.mesh,
                        name: request.name,
                    });
                }
                Err(e) => return Err(BootstrapRequestError::Internal(format!("store: {e}"))),
            }
        }
    };
    respond(state, headers, &request, &dataplane)
}

/// Parses and validates `dataplaneResource`; its mesh must exist.
async fn inline_dataplane(
    state: &BootstrapState,
    request: &BootstrapRequest,
    text: &str,
) -> Result<Resource, BootstrapRequestError> {
    let invalid = |m: String| BootstrapRequestError::InvalidDataplane(m);
    let mut resources = model::format::parse_documents(text).map_err(|e| invalid(e.to_string()))?;
    if resources.len() != 1 {
        return Err(invalid(format!(
            "expected one resource, got {}",
            resources.len()
        )));
    }
    let mut dataplane = resources.remove(0);
    if dataplane.kind() != ResourceType::Dataplane {
        return Err(invalid(format!(
            "expected a Dataplane, got {}",
            dataplane.kind()
        )));
    }
    for (field, requested, value) in [
        ("mesh", &request.mesh, &mut dataplane.meta.mesh),
        ("name", &request.name, &mut dataplane.meta.name),
    ] {
        if value.is_empty() {
            value.clone_from(requested);
        } else if !requested.is_empty() && requested != value {
            return Err(bad(
                field,
                format!("{requested:?} differs from the dataplaneResource's {value:?}"),
            ));
        }
    }
    if dataplane.meta.mesh.is_empty() {
        return Err(bad("mesh", "must not be empty"));
    }
    model::validate::validate(&dataplane).map_err(|e| invalid(e.to_string()))?;
    let mesh = ResourceKey::global(ResourceType::Mesh, dataplane.meta.mesh.clone());
    match state.store.get(&mesh).await {
        Ok(_) => Ok(dataplane),
        Err(StoreError::NotFound(_)) => Err(invalid(format!(
            "mesh {:?} does not exist",
            dataplane.meta.mesh
        ))),
        Err(e) => Err(BootstrapRequestError::Internal(format!("store: {e}"))),
    }
}

async fn check_token(
    state: &BootstrapState,
    token: &str,
    dataplane: &Resource,
) -> Result<(), BootstrapRequestError> {
    let info = DataplaneInfo::from_resource(dataplane)
        .ok_or_else(|| BootstrapRequestError::Internal("not a Dataplane".to_string()))?;
    state
        .validator
        .validate_dataplane_token(token, &info)
        .await
        .map(|_| ())
        .map_err(BootstrapRequestError::Token)
}

/// Creates or replaces the inline Dataplane. A stored Dataplane is replaced
/// only when the token also holds for it. A concurrent write is retried.
async fn upsert(
    state: &BootstrapState,
    token: Option<&str>,
    dataplane: Resource,
) -> Result<Resource, BootstrapRequestError> {
    upsert_with(state, dataplane, token, |_, new| new).await
}

/// Creates `resource`, or replaces the stored one with what `replacing`
/// makes of (stored, `resource`) (e.g. carrying fields over), only when the
/// dataplane `token`, if given, also holds for the stored one; an unchanged
/// spec and labels write nothing. A concurrent write is retried.
pub(crate) async fn upsert_with(
    state: &BootstrapState,
    resource: Resource,
    token: Option<&str>,
    replacing: impl Fn(&Resource, Resource) -> Resource,
) -> Result<Resource, BootstrapRequestError> {
    const ATTEMPTS: usize = 3;
    let key = resource.key();
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let existing = match state.store.get(&key).await {
            Ok(existing) => Some(existing),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(BootstrapRequestError::Internal(format!("store: {e}"))),
        };
        let result = match existing {
            Some(existing) => {
                if let Some(token) = token {
                    check_token(state, token, &existing).await?;
                }
                let mut update = replacing(&existing, resource.clone());
                if existing.spec == update.spec && existing.meta.labels == update.meta.labels {
                    return Ok(existing);
                }
                update.meta.version = existing.meta.version;
                state.store.update(update).await
            }
            None => state.store.create(resource.clone(), None).await,
        };
        match result {
            Ok(stored) => return Ok(stored),
            Err(
                e @ (StoreError::Conflict { .. }
                | StoreError::AlreadyExists(_)
                | StoreError::NotFound(_)),
            ) => last = Some(e),
            Err(e) => return Err(BootstrapRequestError::Internal(format!("store: {e}"))),
        }
    }
    Err(BootstrapRequestError::Internal(format!(
        "store: {}",
        last.map(|e| e.to_string()).unwrap_or_default()
    )))
}

/// The xDS host of the bootstrap: `configured`, else the host of the
/// request's `Host` header (without its port; an IPv6 address without its
/// brackets), else 127.0.0.1.
fn xds_host(configured: &str, headers: &HeaderMap) -> String {
    if !configured.is_empty() {
        return configured.to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .and_then(|authority| authority.parse::<axum::http::uri::Authority>().ok())
        .map(|authority| {
            authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string()
        })
        .filter(|host| !host.is_empty());
    host.unwrap_or_else(|| "127.0.0.1".to_string())
}

fn respond(
    state: &BootstrapState,
    headers: &HeaderMap,
    request: &BootstrapRequest,
    dataplane: &Resource,
) -> Result<Response, BootstrapRequestError> {
    let settings = &state.settings;
    let tls_ca_pem = if settings.tls {
        let ca = request.ca_cert.clone().or_else(|| settings.ca_pem.clone());
        Some(ca.ok_or_else(|| {
            BootstrapRequestError::Internal(
                "the xDS server uses TLS but no CA certificate is configured".to_string(),
            )
        })?)
    } else {
        None
    };
    let xds = XdsServer {
        host: xds_host(&settings.xds_host, headers),
        port: settings.xds_port,
        tls_ca_pem,
    };
    let internal =
        |e: xds::bootstrap::BootstrapError| BootstrapRequestError::Internal(e.to_string());
    let mut params =
        BootstrapParams::for_dataplane(dataplane, xds, request.token.clone()).map_err(internal)?;
    if let Some(port) = request.admin_port {
        params.admin_port = port;
    }
    if request.delta {
        params.api_type = AdsApiType::DeltaGrpc;
    }
    if request.dataplane_resource.is_some() {
        // Marks the proxy as registered inline: its ADS stream re-creates the
        // Dataplane if missing, and it is deleted after the stream ends
        // (`crate::xds_lifecycle`).
        params.dataplane_resource = Some(model::format::to_json_value(dataplane).to_string());
    }
    let envoy = xds::bootstrap::bootstrap(&params).map_err(|e| match e {
        xds::bootstrap::BootstrapError::Invalid { field, message } => bad(field, message),
        other => internal(other),
    })?;
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    if wants_json {
        let yaml = xds::bootstrap::to_yaml(&envoy).map_err(internal)?;
        let address = match &dataplane.spec {
            Spec::Dataplane(dp) => dp
                .networking
                .as_ref()
                .map(|n| n.address.clone())
                .unwrap_or_default(),
            Spec::ZoneIngress(zi) => zi
                .networking
                .as_ref()
                .map(|n| n.address.clone())
                .unwrap_or_default(),
            _ => String::new(),
        };
        let body = json!({
            "bootstrap": STANDARD.encode(yaml),
            "kumaSidecarConfiguration": {
                "networking": { "address": address, "corefileTemplate": null },
                "metrics": { "aggregate": [] },
            },
        });
        Ok((StatusCode::OK, axum::Json(body)).into_response())
    } else {
        let body = xds::bootstrap::to_json(&envoy).map_err(internal)?;
        Ok((StatusCode::OK, axum::Json(body)).into_response())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use model::mesh_pb;
    use model::mesh_pb::dataplane::Networking;
    use model::mesh_pb::dataplane::networking::Inbound;
    use store::memory::MemoryStore;
    use tower::ServiceExt;

    use super::*;
    use crate::tokens::{DataplaneIdentity, TokenIssuer};

    struct Fixture {
        store: SharedStore,
        app: Router,
    }

    fn web(name: &str, address: &str) -> Resource {
        let inbound = Inbound {
            port: 8080,
            service_port: 80,
            tags: [("kuma.io/service".to_string(), "web".to_string())].into(),
            ..Default::default()
        };
        let dp = mesh_pb::Dataplane {
            networking: Some(Networking {
                address: address.into(),
                inbound: vec![inbound],
                ..Default::default()
            }),
            ..Default::default()
        };
        Resource::new("default", name, Spec::Dataplane(dp))
    }

    async fn fixture(settings: BootstrapSettings) -> Fixture {
        let store: SharedStore = Arc::new(MemoryStore::new());
        for mesh in ["default", "other"] {
            let mesh = Resource::new("", mesh, Spec::Mesh(mesh_pb::Mesh::default()));
            store.create(mesh, None).await.unwrap();
        }
        store.create(web("web-1", "10.0.0.1"), None).await.unwrap();
        let app = router().with_state(BootstrapState::new(store.clone(), settings));
        Fixture { store, app }
    }

    fn plaintext() -> BootstrapSettings {
        BootstrapSettings {
            xds_host: "127.0.0.1".into(),
            xds_port: 5678,
            tls: false,
            ca_pem: None,
            require_token: true,
            zone: "zone-1".into(),
        }
    }

    async fn token(
        store: &SharedStore,
        mesh: &str,
        name: &str,
        valid_for: Option<Duration>,
    ) -> String {
        let identity = DataplaneIdentity {
            name: name.into(),
            mesh: mesh.into(),
            ..Default::default()
        };
        TokenIssuer::new(store.clone())
            .issue_dataplane_token(&identity, valid_for)
            .await
            .unwrap()
    }

    async fn post(app: &Router, body: &str, accept_json: bool) -> (StatusCode, String) {
        let mut request =
            Request::post("/bootstrap").header(header::CONTENT_TYPE, "application/json");
        if accept_json {
            request = request.header(header::ACCEPT, "application/json");
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    fn request(mesh: &str, name: &str, token: Option<&str>) -> String {
        let mut body =
            json!({"mesh": mesh, "name": name, "version": {"kumaDp": {"version": "2.9.0"}}});
        if let Some(token) = token {
            body["dataplaneToken"] = json!(token);
        }
        body.to_string()
    }

    async fn zone_token(store: &SharedStore, zone: &str, scope: &str) -> String {
        TokenIssuer::new(store.clone())
            .issue_zone_token(zone, &[scope.to_string()], Duration::from_secs(3600))
            .await
            .unwrap()
    }

    fn ingress_request(name: &str, port: u32, token: &str) -> String {
        let resource = format!(
            "type: ZoneIngress\nname: {name}\nnetworking:\n  address: 127.0.0.1\n  port: {port}\n  advertisedAddress: 192.0.2.1\n  advertisedPort: {port}\n  admin:\n    port: 19002\n"
        );
        json!({"name": name, "proxyType": "ingress", "dataplaneToken": token, "dataplaneResource": resource})
            .to_string()
    }

    #[tokio::test]
    async fn a_zone_ingress_registers_with_a_zone_token_of_scope_ingress() {
        let f = fixture(plaintext()).await;
        let token = zone_token(&f.store, "zone-1", "ingress").await;
        let (status, body) =
            post(&f.app, &ingress_request("ingress-1", 10001, &token), false).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let json: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["node"]["id"], ".ingress-1");
        assert_eq!(json["node"]["cluster"], "ingress");
        assert_eq!(
            json["admin"]["address"]["socketAddress"]["portValue"],
            19002
        );
        let key = ResourceKey::global(ResourceType::ZoneIngress, "ingress-1");
        let mut stored = f.store.get(&key).await.unwrap();
        let Spec::ZoneIngress(spec) = &mut stored.spec else {
            panic!("not a ZoneIngress")
        };
        assert_eq!(spec.zone, "", "a local ingress");
        assert_eq!(spec.networking.as_ref().unwrap().advertised_port, 10001);

        // The zone's available services survive the ingress's restart.
        spec.available_services = vec![mesh_pb::zone_ingress::AvailableService {
            tags: [("kuma.io/service".to_string(), "backend".to_string())].into(),
            instances: 2,
            mesh: "default".into(),
            external_service: false,
        }];
        f.store.update(stored).await.unwrap();
        let (status, body) =
            post(&f.app, &ingress_request("ingress-1", 10002, &token), false).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let Spec::ZoneIngress(spec) = f.store.get(&key).await.unwrap().spec else {
            panic!("not a ZoneIngress")
        };
        assert_eq!(spec.available_services.len(), 1);
        assert_eq!(spec.networking.unwrap().port, 10002);
    }

    #[tokio::test]
    async fn a_zone_ingress_needs_an_ingress_token_for_this_zone() {
        let f = fixture(plaintext()).await;
        let key = ResourceKey::global(ResourceType::ZoneIngress, "ingress-1");
        let cases = [
            (
                zone_token(&f.store, "zone-1", "cp").await,
                StatusCode::FORBIDDEN,
            ),
            (
                zone_token(&f.store, "zone-2", "ingress").await,
                StatusCode::FORBIDDEN,
            ),
            (
                token(&f.store, "default", "web-1", None).await,
                StatusCode::UNAUTHORIZED,
            ),
            ("garbage".to_string(), StatusCode::UNAUTHORIZED),
        ];
        for (token, want) in cases {
            let (status, body) =
                post(&f.app, &ingress_request("ingress-1", 10001, &token), false).await;
            assert_eq!(status, want, "{body}");
            assert!(!body.contains(&token), "the token is never echoed: {body}");
        }
        assert!(matches!(
            f.store.get(&key).await,
            Err(StoreError::NotFound(_))
        ));
        let token = zone_token(&f.store, "zone-1", "ingress").await;
        let dataplane = json!({"name": "ingress-1", "proxyType": "ingress", "dataplaneToken": token,
            "dataplaneResource": "type: Dataplane\nmesh: default\nname: ingress-1\n"});
        let (status, body) = post(&f.app, &dataplane.to_string(), false).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(body.contains("expected a ZoneIngress"), "{body}");
    }

    #[test]
    fn the_xds_host_is_the_setting_else_the_host_kuma_dp_dialled() {
        let headers = |host: Option<&str>| {
            let mut headers = HeaderMap::new();
            if let Some(host) = host {
                headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
            }
            headers
        };
        assert_eq!(
            xds_host("cp.example", &headers(Some("zone-1:5682"))),
            "cp.example"
        );
        assert_eq!(xds_host("", &headers(Some("zone-1:5682"))), "zone-1");
        assert_eq!(xds_host("", &headers(Some("10.0.0.7"))), "10.0.0.7");
        assert_eq!(xds_host("", &headers(Some("[fd00::1]:5682"))), "fd00::1");
        assert_eq!(xds_host("", &headers(None)), "127.0.0.1");
        assert_eq!(xds_host("", &headers(Some("bad host!"))), "127.0.0.1");
    }

    #[tokio::test]
    async fn a_good_token_gets_the_bootstrap() {
        let f = fixture(plaintext()).await;
        let token = token(&f.store, "default", "web-1", None).await;
        let (status, body) = post(&f.app, &request("default", "web-1", Some(&token)), false).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let json: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["node"]["id"], "default.web-1");
        assert_eq!(json["node"]["cluster"], "web");
        let metadata =
            &json["dynamicResources"]["adsConfig"]["grpcServices"][0]["initialMetadata"][0];
        assert_eq!(metadata["value"], format!("Bearer {token}"));
        assert!(body.contains("default.web-1"));
    }

    #[tokio::test]
    async fn kuma_dp_gets_kumas_json_envelope() {
        let f = fixture(plaintext()).await;
        let token = token(&f.store, "default", "web-1", None).await;
        let body = json!({
            "mesh": "default", "name": "web-1", "dataplaneToken": token,
            "adminPort": 19901, "features": ["feature-delta-grpc"],
        });
        let (status, body) = post(&f.app, &body.to_string(), true).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let json: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            json["kumaSidecarConfiguration"]["networking"]["address"],
            "10.0.0.1"
        );
        let yaml = STANDARD
            .decode(json["bootstrap"].as_str().unwrap())
            .unwrap();
        let yaml = String::from_utf8(yaml).unwrap();
        assert!(yaml.contains("id: default.web-1"), "{yaml}");
        assert!(yaml.contains("apiType: DELTA_GRPC"), "{yaml}");
        assert!(yaml.contains("portValue: 19901"), "{yaml}");
    }

    #[tokio::test]
    async fn tls_trusts_the_configured_ca() {
        let mut settings = plaintext();
        settings.xds_host = "kuma-cp.example".into();
        settings.tls = true;
        settings.ca_pem =
            Some("-----BEGIN CERTIFICATE-----\nCONFIGURED\n-----END CERTIFICATE-----\n".into());
        let f = fixture(settings).await;
        let token = token(&f.store, "default", "web-1", None).await;
        let (status, body) = post(&f.app, &request("default", "web-1", Some(&token)), false).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains("CONFIGURED"), "{body}");
        assert!(body.contains("UpstreamTlsContext"), "{body}");
    }

    #[tokio::test]
    async fn bad_tokens_are_refused_with_the_reason() {
        let f = fixture(plaintext()).await;
        let other_name = token(&f.store, "default", "web-2", None).await;
        let other_mesh = token(&f.store, "other", "web-1", None).await;
        let expired = token(&f.store, "default", "web-1", Some(Duration::ZERO)).await;
        let garbage = "not-a-jwt-SECRETSTUFF";
        let cases = [
            (
                None,
                StatusCode::UNAUTHORIZED,
                "Dataplane Token is required",
            ),
            (
                Some(other_name.as_str()),
                StatusCode::FORBIDDEN,
                "is for proxy \"web-2\", not \"web-1\"",
            ),
            (
                Some(other_mesh.as_str()),
                StatusCode::FORBIDDEN,
                "is for mesh \"other\", not \"default\"",
            ),
            (
                Some(expired.as_str()),
                StatusCode::UNAUTHORIZED,
                "dataplane token expired",
            ),
            (
                Some(garbage),
                StatusCode::UNAUTHORIZED,
                "dataplane token is malformed",
            ),
        ];
        for (token, want, reason) in cases {
            let (status, body) = post(&f.app, &request("default", "web-1", token), false).await;
            assert_eq!(status, want, "{reason}: {body}");
            assert!(body.contains(reason), "want {reason:?}, got {body:?}");
            if let Some(token) = token {
                assert!(!body.contains(token), "the token leaked: {body}");
                assert!(!body.contains("SECRETSTUFF"), "the token leaked: {body}");
            }
        }
    }

    #[tokio::test]
    async fn a_missing_dataplane_is_an_empty_404_only_for_a_valid_token() {
        let f = fixture(plaintext()).await;
        let good = token(&f.store, "default", "web-9", None).await;
        let (status, body) = post(&f.app, &request("default", "web-9", Some(&good)), false).await;
        assert_eq!((status, body.as_str()), (StatusCode::NOT_FOUND, ""));
        let (status, body) = post(&f.app, &request("default", "web-9", Some("x.y.z")), false).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }

    #[tokio::test]
    async fn malformed_bodies_name_the_field() {
        let f = fixture(plaintext()).await;
        let cases = [
            ("{", "body: not valid JSON"),
            ("[]", "body: must be a JSON object"),
            (r#"{"mesh": 1, "name": "web-1"}"#, "mesh: must be a string"),
            (
                r#"{"mesh": "default", "name": ["web-1"]}"#,
                "name: must be a string",
            ),
            (
                r#"{"mesh": "default", "name": "web-1", "dataplaneToken": 5}"#,
                "dataplaneToken: must be a string",
            ),
            (
                r#"{"mesh": "default", "name": "web-1", "adminPort": 70000}"#,
                "adminPort: must be a port number",
            ),
            (
                r#"{"mesh": "default", "name": "web-1", "features": "x"}"#,
                "features: must be a list",
            ),
            (
                r#"{"mesh": "default", "name": "web-1", "proxyType": "egress"}"#,
                "proxyType: must be dataplane or ingress, not egress",
            ),
        ];
        for (body, want) in cases {
            let (status, text) = post(&f.app, body, false).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {text}");
            assert!(
                text.starts_with(want),
                "{body}: want {want:?}, got {text:?}"
            );
        }
        let (status, text) = post(
            &f.app,
            r#"{"mesh": "default", "dataplaneToken": "a.b.c"}"#,
            false,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        assert!(text.starts_with("name: must not be empty"), "{text}");
    }

    const WEB_2: &str = "type: Dataplane\nmesh: default\nname: web-2\nnetworking:\n  address: 10.0.0.2\n  inbound:\n  - port: 8080\n    servicePort: 80\n    tags:\n      kuma.io/service: web\n";

    #[tokio::test]
    async fn an_inline_dataplane_is_validated_and_upserted() {
        let f = fixture(plaintext()).await;
        let token = token(&f.store, "default", "web-2", None).await;
        let body = json!({"mesh": "default", "name": "web-2", "dataplaneToken": token, "dataplaneResource": WEB_2});
        let (status, text) = post(&f.app, &body.to_string(), false).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert!(text.contains("default.web-2"), "{text}");
        let key = ResourceKey::new(ResourceType::Dataplane, "default", "web-2");
        let stored = f.store.get(&key).await.unwrap();
        assert_eq!(stored.meta.version, 1);
        // Again: unchanged, not rewritten.
        let (status, _) = post(&f.app, &body.to_string(), false).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(f.store.get(&key).await.unwrap().meta.version, 1);

        // A token for web-1 cannot register web-2.
        let web_1 = super::tests::token(&f.store, "default", "web-1", None).await;
        let body = json!({"dataplaneToken": web_1, "dataplaneResource": WEB_2});
        let (status, text) = post(&f.app, &body.to_string(), false).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{text}");

        // Invalid resources are 422 with the model's message.
        let bad = WEB_2.replace("port: 8080", "port: 0");
        let body = json!({"dataplaneToken": "a.b.c", "dataplaneResource": bad});
        let (status, text) = post(&f.app, &body.to_string(), false).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
        assert!(text.starts_with("dataplaneResource: "), "{text}");
        let body = json!({"dataplaneToken": "a.b.c", "dataplaneResource": WEB_2.replace("mesh: default", "mesh: nope")});
        let (status, text) = post(&f.app, &body.to_string(), false).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
        assert!(text.contains("mesh \"nope\" does not exist"), "{text}");
        let body = json!({"name": "web-3", "dataplaneToken": "a.b.c", "dataplaneResource": WEB_2});
        let (status, text) = post(&f.app, &body.to_string(), false).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        assert!(text.starts_with("name: "), "{text}");
    }

    #[tokio::test]
    async fn without_auth_no_token_is_needed() {
        let mut settings = plaintext();
        settings.require_token = false;
        let f = fixture(settings).await;
        let (status, body) = post(&f.app, &request("default", "web-1", None), false).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(!body.contains("initialMetadata"), "{body}");
    }
}
