//! `FakeKumaApi`: a STAND-IN for the real control plane REST API (`cp::api::router`), which is
//! being written at the same time as kumactl. It serves only the Kuma routes the kumactl tests
//! exercise, with the bodies Kuma documents (list envelope, `{}` on PUT/DELETE, titled error
//! bodies with `invalid_parameters`, text/plain tokens). Once `cp::api` exists these tests
//! should run against it instead.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Every timestamp the fake hands out: Go's zero time, so AGE columns read `292y`.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub authorization: Option<String>,
    pub body: String,
}

#[derive(Default)]
struct Inner {
    /// collection path (`meshes`, `meshes/demo/traffic-permissions`) -> name -> item
    collections: BTreeMap<String, BTreeMap<String, Value>>,
    requests: Vec<Seen>,
    overviews: BTreeMap<String, Value>,
}

#[derive(Clone)]
struct Shared {
    product: String,
    inner: Arc<Mutex<Inner>>,
}

/// A running fake; stops when dropped.
pub struct FakeKumaApi {
    pub addr: SocketAddr,
    scheme: &'static str,
    shared: Shared,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeKumaApi {
    /// A fake whose `GET /` reports `product` (and `tagline`).
    pub fn start(product: &str) -> FakeKumaApi {
        FakeKumaApi::start_with(product, None)
    }

    /// The same over HTTPS with the given server certificate chain and key (PEM).
    pub fn start_tls(product: &str, cert_pem: &str, key_pem: &str) -> FakeKumaApi {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .expect("certificate PEM");
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key PEM");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server certificate");
        FakeKumaApi::start_with(product, Some(Arc::new(config)))
    }

    fn start_with(product: &str, tls: Option<Arc<rustls::ServerConfig>>) -> FakeKumaApi {
        let shared = Shared {
            product: product.to_string(),
            inner: Arc::new(Mutex::new(Inner::default())),
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let scheme = if tls.is_some() { "https" } else { "http" };
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                match tls {
                    None => axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await
                        .expect("serve"),
                    Some(config) => serve_tls(listener, app, config, stopped).await,
                }
            });
        });
        FakeKumaApi {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
            scheme,
        }
    }

    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.shared.inner.lock().expect("lock").requests.clone()
    }

    pub fn clear_requests(&self) {
        self.shared.inner.lock().expect("lock").requests.clear();
    }

    /// Serves `body` as the list at `path` (e.g. `meshes/default/dataplanes/_overview`).
    pub fn set_overview(&self, path: &str, body: Value) {
        self.shared
            .inner
            .lock()
            .expect("lock")
            .overviews
            .insert(path.to_string(), body);
    }

    /// Stores an item directly, as if it had been created.
    pub fn insert(&self, collection: &str, item: Value) {
        let name = item["name"].as_str().expect("name").to_string();
        self.shared
            .inner
            .lock()
            .expect("lock")
            .collections
            .entry(collection.to_string())
            .or_default()
            .insert(name, item);
    }
}

/// Accepts TLS connections until `stopped`, serving `app` on each (HTTP/1.1 and HTTP/2).
async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    config: Arc<rustls::ServerConfig>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(_) => continue,
            },
            _ = &mut stopped => return,
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            // A client that refuses our certificate just goes away.
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
        });
    }
}

impl Drop for FakeKumaApi {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn kuma_error(
    status: StatusCode,
    title: &str,
    detail: &str,
    invalid: &[(String, String)],
) -> Response {
    let mut body = json!({
        "type": "/std-errors",
        "status": status.as_u16(),
        "title": title,
        "detail": detail,
        "details": detail,
    });
    if !invalid.is_empty() {
        body["invalid_parameters"] = invalid
            .iter()
            .map(|(f, r)| json!({"field": f, "reason": r}))
            .collect();
        body["causes"] = invalid
            .iter()
            .map(|(f, r)| json!({"field": f, "message": r}))
            .collect();
    }
    (status, axum::Json(body)).into_response()
}

fn query_param(uri: &Uri, key: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| v.to_string())
    })
}

async fn handle(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    shared.inner.lock().expect("lock").requests.push(Seen {
        method: method.to_string(),
        path_and_query: uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        authorization,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let path = uri.path().trim_matches('/').to_string();
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost")
        .to_string();

    if path.is_empty() && method == Method::GET {
        return axum::Json(json!({
            "hostname": "fake",
            "tagline": shared.product,
            "product": shared.product,
            "version": "2.14.3",
            "instanceId": "fake-1234",
            "clusterId": "00000000-0000-0000-0000-000000000000",
            "gui": "/gui",
        }))
        .into_response();
    }
    if path == "tokens/dataplane" && method == Method::POST {
        let request: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return kuma_error(StatusCode::BAD_REQUEST, "Bad Request", &e.to_string(), &[]);
            }
        };
        if request["mesh"].as_str().unwrap_or("").is_empty() {
            return kuma_error(
                StatusCode::BAD_REQUEST,
                "Invalid request",
                "Resource is not valid",
                &[("mesh".into(), "cannot be empty".into())],
            );
        }
        let token = format!(
            "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEiLCJ0eXAiOiJKV1QifQ.{}.c2ln",
            request["name"].as_str().unwrap_or("")
        );
        return ([("content-type", "text/plain")], token).into_response();
    }
    if path == "tokens/zone" && method == Method::POST {
        let request: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return kuma_error(StatusCode::BAD_REQUEST, "Bad Request", &e.to_string(), &[]);
            }
        };
        // Kuma's `POST /tokens/zone` (and cp's): every scope one of ingress, egress, cp.
        let scopes = request["scope"].as_array().cloned().unwrap_or_default();
        if scopes.is_empty() {
            return kuma_error(
                StatusCode::BAD_REQUEST,
                "Invalid request",
                "Resource is not valid",
                &[("scope".into(), "cannot be empty".into())],
            );
        }
        for (i, scope) in scopes.iter().enumerate() {
            if !matches!(scope.as_str(), Some("ingress" | "egress" | "cp")) {
                return kuma_error(
                    StatusCode::BAD_REQUEST,
                    "Invalid request",
                    "Resource is not valid",
                    &[(format!("scope[{i}]"), "is not a valid scope".into())],
                );
            }
        }
        let token = format!(
            "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEiLCJ0eXAiOiJKV1QifQ.{}.c2ln",
            request["zone"].as_str().unwrap_or("")
        );
        return ([("content-type", "text/plain")], token).into_response();
    }
    if let Some(overview) = shared.inner.lock().expect("lock").overviews.get(&path) {
        return axum::Json(overview.clone()).into_response();
    }

    let segments: Vec<&str> = path.split('/').collect();
    // meshes | meshes/{m} | meshes/{m}/{plural} | meshes/{m}/{plural}/{name} | {plural} | {plural}/{name}
    let (collection, name) = match segments.as_slice() {
        ["meshes", mesh, plural] => (format!("meshes/{mesh}/{plural}"), None),
        ["meshes", mesh, plural, name] => (format!("meshes/{mesh}/{plural}"), Some(*name)),
        [plural] => (plural.to_string(), None),
        [plural, name] => (plural.to_string(), Some(*name)),
        _ => return kuma_error(StatusCode::NOT_FOUND, "Not found", "no such route", &[]),
    };
    let mut inner = shared.inner.lock().expect("lock");
    match (method, name) {
        (Method::GET, None) => {
            let size = match query_param(&uri, "size") {
                None => 100,
                Some(s) => match s.parse::<usize>() {
                    Ok(n) if n > 1000 => {
                        return kuma_error(
                            StatusCode::BAD_REQUEST,
                            "Bad Request",
                            "Invalid page size",
                            &[(
                                "size".into(),
                                format!("invalid page size of {n}. Maximum page size is 1000"),
                            )],
                        );
                    }
                    Ok(n) if n > 0 => n,
                    _ => {
                        return kuma_error(
                            StatusCode::BAD_REQUEST,
                            "Bad Request",
                            "Invalid page size",
                            &[("size".into(), "must be greater than 0".into())],
                        );
                    }
                },
            };
            let offset: usize = query_param(&uri, "offset")
                .and_then(|o| o.parse().ok())
                .unwrap_or(0);
            let all: Vec<Value> = inner
                .collections
                .get(&collection)
                .map(|c| c.values().cloned().collect())
                .unwrap_or_default();
            let items: Vec<Value> = all.iter().skip(offset).take(size).cloned().collect();
            let next = (offset + size < all.len())
                .then(|| format!("http://{host}/{path}?offset={}&size={size}", offset + size));
            axum::Json(json!({"total": all.len(), "items": items, "next": next})).into_response()
        }
        (Method::GET, Some(name)) => {
            match inner.collections.get(&collection).and_then(|c| c.get(name)) {
                Some(item) => axum::Json(item.clone()).into_response(),
                None => kuma_error(
                    StatusCode::NOT_FOUND,
                    "Could not retrieve a resource",
                    "Not found",
                    &[],
                ),
            }
        }
        (Method::PUT, Some(name)) => {
            let mut item: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => {
                    return kuma_error(StatusCode::BAD_REQUEST, "Bad Request", &e.to_string(), &[]);
                }
            };
            let mut invalid = Vec::new();
            if item["name"].as_str() != Some(name) {
                invalid.push((
                    "name".to_string(),
                    "name from the URL has to be the same as in body".to_string(),
                ));
            }
            match model::format::from_json_value(&item) {
                Err(e) => invalid.push((e.field.clone(), e.message.clone())),
                Ok(resource) => {
                    if let Err(e) = model::validate::validate(&resource) {
                        for v in e.violations {
                            invalid.push((v.field, v.message));
                        }
                    }
                }
            }
            if !invalid.is_empty() {
                return kuma_error(
                    StatusCode::BAD_REQUEST,
                    "Could not process a resource",
                    "Resource is not valid",
                    &invalid,
                );
            }
            item["creationTime"] = json!(ZERO_TIME);
            item["modificationTime"] = json!(ZERO_TIME);
            let existed = inner
                .collections
                .entry(collection)
                .or_default()
                .insert(name.to_string(), item)
                .is_some();
            let status = if existed {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            (status, axum::Json(json!({}))).into_response()
        }
        (Method::DELETE, Some(name)) => {
            let removed = inner
                .collections
                .get_mut(&collection)
                .and_then(|c| c.remove(name));
            match removed {
                Some(_) => axum::Json(json!({})).into_response(),
                None => kuma_error(
                    StatusCode::NOT_FOUND,
                    "Could not delete a resource",
                    "Not found",
                    &[],
                ),
            }
        }
        _ => kuma_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed",
            "method not allowed",
            &[],
        ),
    }
}
