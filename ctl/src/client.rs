//! HTTP access to a control plane's REST API as kumactl does it: base URL from the config,
//! `User-Agent: kumactl/<version>`, configured headers, `Authorization: Bearer <token>` for
//! `authType: tokens`, CA file / client certificate / skip-verify for HTTPS, and Kuma's error
//! bodies (`title`, `detail`, `invalid_parameters`) recognised on any 4xx/5xx.

use std::time::Duration;

use model::ResourceType;
use serde::Deserialize;

use crate::config::ApiServer;
use crate::go::path_escape;

/// The only authentication plugin Kuma ships.
pub const AUTH_TYPE_TOKENS: &str = "tokens";
pub const AUTH_CONF_TOKEN: &str = "token";

/// A failed exchange with the control plane.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("Failed to parse API Server URL: {0}")]
    BadUrl(String),
    #[error("could not configure HTTP client with TLS: {0}")]
    Tls(String),
    #[error("authentication plugin of type {0:?} not found")]
    UnknownAuthType(String),
    #[error("could not connect to the control plane at {base} ({reason}); {hint}")]
    Connect {
        base: String,
        reason: String,
        hint: &'static str,
    },
    #[error("{method} {url}: no answer within {timeout} (set --api-timeout to wait longer)")]
    Timeout {
        method: String,
        url: String,
        timeout: String,
    },
    #[error("{method} {url}: {reason}")]
    Transport {
        method: String,
        url: String,
        reason: String,
    },
    /// A Kuma error body (non-empty `title`).
    #[error(transparent)]
    Api(Box<ApiError>),
    /// Any other unexpected status: `(code): body`, as kumactl prints it.
    #[error("({status}): {body}")]
    Status { status: u16, body: String },
    /// 405 from a read-only control plane: the body is the explanation.
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("could not decode the response: {0}")]
    Decode(String),
}

impl From<ApiError> for ClientError {
    fn from(e: ApiError) -> Self {
        ClientError::Api(Box::new(e))
    }
}

/// One invalid field in a Kuma error.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct InvalidParameter {
    #[serde(default)]
    pub field: String,
    #[serde(default)]
    pub reason: String,
}

/// The 1.x form of an invalid field.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Cause {
    #[serde(default)]
    pub field: String,
    #[serde(default)]
    pub message: String,
}

/// Kuma's REST error body (`/std-errors`), both the 2.x and the 1.x fields.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ApiError {
    #[serde(default)]
    pub status: i64,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub details: String,
    #[serde(default)]
    pub invalid_parameters: Option<Vec<InvalidParameter>>,
    #[serde(default)]
    pub causes: Option<Vec<Cause>>,
}

impl ApiError {
    /// Parses a body as a Kuma error; `None` unless it has a title.
    pub fn from_body(body: &[u8]) -> Option<ApiError> {
        let error: ApiError = serde_json::from_slice(body).ok()?;
        (!error.title.is_empty()).then_some(error)
    }

    fn detail_text(&self) -> &str {
        if self.detail.is_empty() {
            &self.details
        } else {
            &self.detail
        }
    }

    /// `field: reason` pairs: `invalid_parameters`, or the 1.x `causes` when there are none.
    pub fn fields(&self) -> Vec<(&str, &str)> {
        match (&self.invalid_parameters, &self.causes) {
            (None, Some(causes)) => causes
                .iter()
                .map(|c| (c.field.as_str(), c.message.as_str()))
                .collect(),
            (Some(params), _) => params
                .iter()
                .map(|p| (p.field.as_str(), p.reason.as_str()))
                .collect(),
            (None, None) => Vec::new(),
        }
    }

    /// What kumactl prints for an API error: `Title (detail)` and one `* field: reason` line
    /// per invalid field.
    pub fn formatted(&self) -> String {
        let mut out = format!("{} ({})", self.title, self.detail_text());
        for (field, reason) in self.fields() {
            out.push_str(&format!("\n* {field}: {reason}"));
        }
        out
    }
}

/// Kuma's `Error()` form, used when the error is embedded in another message (apply):
/// `Title (detail);field=reason ;field=reason `.
impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.title, self.detail_text())?;
        for (field, reason) in self.fields() {
            write!(f, ";{field}={reason} ")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// A response: status, body, and the Kuma error it carries if any.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    pub api_error: Option<ApiError>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The Kuma error if there is one, else `(status): body`.
    pub fn into_error(self) -> ClientError {
        match self.api_error {
            Some(e) => ClientError::Api(Box::new(e)),
            None => ClientError::Status {
                status: self.status,
                body: String::from_utf8_lossy(&self.body).into_owned(),
            },
        }
    }

    pub fn json(&self) -> Result<serde_json::Value, ClientError> {
        serde_json::from_slice(&self.body).map_err(|e| ClientError::Decode(e.to_string()))
    }
}

/// A client bound to one control plane.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    headers: Vec<(String, String)>,
    timeout: Duration,
}

/// The version kumactl announces in `User-Agent`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

impl ApiClient {
    /// A client for `api` whose requests give up after `timeout` (zero: never).
    pub fn new(api: &ApiServer, timeout: Duration) -> Result<ApiClient, ClientError> {
        let base = api.url.trim_end_matches('/').to_string();
        let parsed =
            reqwest::Url::parse(&api.url).map_err(|e| ClientError::BadUrl(e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ClientError::BadUrl(format!(
                "unsupported scheme {:?} in {:?}",
                parsed.scheme(),
                api.url
            )));
        }
        let mut builder = reqwest::Client::builder();
        if !timeout.is_zero() {
            builder = builder.timeout(timeout);
        }
        if api.skip_verify {
            builder = builder.tls_danger_accept_invalid_certs(true);
        } else if !api.ca_cert_file.is_empty() {
            let pem = std::fs::read(&api.ca_cert_file)
                .map_err(|e| ClientError::Tls(format!("could not read CA cert: {e}")))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|_| ClientError::Tls("could not add certificate".into()))?;
            if certs.is_empty() {
                return Err(ClientError::Tls("could not add certificate".into()));
            }
            builder = builder.tls_certs_only(certs);
        }
        if !api.client_cert_file.is_empty() && !api.client_key_file.is_empty() {
            let mut pem = std::fs::read(&api.client_cert_file).map_err(|e| {
                ClientError::Tls(format!(
                    "could not create key pair from client cert and client key: {e}"
                ))
            })?;
            pem.push(b'\n');
            pem.extend(std::fs::read(&api.client_key_file).map_err(|e| {
                ClientError::Tls(format!(
                    "could not create key pair from client cert and client key: {e}"
                ))
            })?);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                ClientError::Tls(format!(
                    "could not create key pair from client cert and client key: {e}"
                ))
            })?;
            builder = builder.identity(identity);
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Tls(error_chain(&e)))?;
        let mut headers = vec![("User-Agent".to_string(), format!("kumactl/{VERSION}"))];
        for h in &api.headers {
            headers.push((h.key.clone(), h.value.clone()));
        }
        match api.auth_type.as_str() {
            "" => {}
            AUTH_TYPE_TOKENS => {
                let token = api
                    .auth_conf
                    .get(AUTH_CONF_TOKEN)
                    .cloned()
                    .unwrap_or_default();
                headers.push(("Authorization".to_string(), format!("Bearer {token}")));
            }
            other => return Err(ClientError::UnknownAuthType(other.to_string())),
        }
        Ok(ApiClient {
            http,
            base,
            headers,
            timeout,
        })
    }

    /// The absolute URL of `path` (which starts with `/`, query included).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends one request. Transport problems are errors; every status is a [`Response`].
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        json_body: Option<&serde_json::Value>,
    ) -> Result<Response, ClientError> {
        let url = self.url(path);
        let mut request = self
            .http
            .request(method.clone(), &url)
            .header("Accept", "application/json");
        for (k, v) in &self.headers {
            request = request.header(k, v);
        }
        if let Some(body) = json_body {
            let bytes = serde_json::to_vec(body).map_err(|e| ClientError::Decode(e.to_string()))?;
            request = request
                .header("Content-Type", "application/json")
                .body(bytes);
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.transport_error(&method, &url, e))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(&method, &url, e))?
            .to_vec();
        let api_error = if status >= 400 {
            ApiError::from_body(&body)
        } else {
            None
        };
        Ok(Response {
            status,
            body,
            api_error,
        })
    }

    pub async fn get(&self, path: &str) -> Result<Response, ClientError> {
        self.send(reqwest::Method::GET, path, None).await
    }

    fn transport_error(
        &self,
        method: &reqwest::Method,
        url: &str,
        e: reqwest::Error,
    ) -> ClientError {
        if e.is_timeout() {
            return ClientError::Timeout {
                method: method.to_string(),
                url: url.to_string(),
                timeout: crate::go::format_duration(self.timeout),
            };
        }
        if e.is_connect() {
            let (reason, tls) = connect_reason(&e);
            return ClientError::Connect {
                base: self.base.clone(),
                reason,
                hint: if tls { HINT_TLS } else { HINT_UNREACHABLE },
            };
        }
        ClientError::Transport {
            method: method.to_string(),
            url: url.to_string(),
            reason: error_chain(&e),
        }
    }
}

const HINT_UNREACHABLE: &str = "check that it is running, or point kumactl at the right one with \"kumactl config control-planes add\" (see \"kumactl config control-planes list\")";
const HINT_TLS: &str = "its certificate is not trusted: give the CA that signed it with \"kumactl config control-planes add --ca-cert-file\" (or --skip-verify)";

/// The innermost cause of a connection failure (e.g. `connection refused`), and whether it
/// is the TLS handshake that failed.
fn connect_reason(e: &reqwest::Error) -> (String, bool) {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut last = e.to_string();
    while let Some(s) = source {
        if let Some(tls) = s.downcast_ref::<rustls::Error>() {
            return (tls.to_string(), true);
        }
        if let Some(mut io) = s.downcast_ref::<std::io::Error>() {
            // io errors nest (hyper wraps the TLS stream's), hiding the rustls error inside.
            while let Some(inner) = io.get_ref() {
                if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                    return (tls.to_string(), true);
                }
                match inner.downcast_ref::<std::io::Error>() {
                    Some(nested) => io = nested,
                    None => break,
                }
            }
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => ("connection refused".to_string(), false),
                _ => (io.to_string(), false),
            };
        }
        last = s.to_string();
        source = s.source();
    }
    (last, false)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// `/meshes/{mesh}/{plural}` or `/{plural}`.
pub fn list_path(kind: ResourceType, mesh: &str) -> String {
    let plural = kind.descriptor().plural;
    if kind.is_mesh_scoped() {
        format!("/meshes/{}/{plural}", path_escape(mesh))
    } else {
        format!("/{plural}")
    }
}

/// `/meshes/{mesh}/{plural}/{name}` or `/{plural}/{name}`.
pub fn item_path(kind: ResourceType, mesh: &str, name: &str) -> String {
    format!("{}/{}", list_path(kind, mesh), path_escape(name))
}

/// The index (`GET /`) fields kumactl reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Index {
    #[serde(default)]
    pub product: String,
    #[serde(default)]
    pub tagline: String,
    #[serde(default)]
    pub version: String,
}

impl Index {
    /// `product`, or the `tagline` of servers before 2.1.
    pub fn product_name(&self) -> &str {
        if self.product.is_empty() {
            &self.tagline
        } else {
            &self.product
        }
    }
}

/// `GET /`: the control plane's product and version.
pub async fn fetch_index(client: &ApiClient) -> Result<Index, ClientError> {
    let response = client.get("/").await?;
    if let Some(e) = response.api_error {
        return Err(ClientError::Api(Box::new(e)));
    }
    if response.status != 200 {
        return Err(ClientError::Status {
            status: response.status,
            body: response.text(),
        });
    }
    serde_json::from_slice(&response.body).map_err(|e| ClientError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_formats() {
        let body = br#"{"type":"/std-errors","status":400,"title":"Could not process a resource","detail":"Resource is not valid","details":"Resource is not valid","invalid_parameters":[{"field":"name","reason":"cannot be empty"},{"field":"mesh","reason":"cannot be empty"}]}"#;
        let e = ApiError::from_body(body).expect("kuma error");
        assert_eq!(
            e.formatted(),
            "Could not process a resource (Resource is not valid)\n* name: cannot be empty\n* mesh: cannot be empty"
        );
        assert_eq!(
            e.to_string(),
            "Could not process a resource (Resource is not valid);name=cannot be empty ;mesh=cannot be empty "
        );
        let old = ApiError::from_body(
            br#"{"title":"Could not process resource","details":"Resource is not valid","causes":[{"field":"path","message":"cannot be empty"}]}"#,
        )
        .expect("1.x error");
        assert_eq!(
            old.formatted(),
            "Could not process resource (Resource is not valid)\n* path: cannot be empty"
        );
        assert!(ApiError::from_body(b"not json").is_none());
        assert!(ApiError::from_body(br#"{"title":""}"#).is_none());
    }

    #[test]
    fn paths() {
        assert_eq!(
            item_path(ResourceType::HealthCheck, "default", "hc-1"),
            "/meshes/default/health-checks/hc-1"
        );
        assert_eq!(list_path(ResourceType::Mesh, "ignored"), "/meshes");
        assert_eq!(
            item_path(ResourceType::GlobalSecret, "", "admin-user-token"),
            "/globalsecrets/admin-user-token"
        );
    }
}
