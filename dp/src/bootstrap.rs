//! The bootstrap client: `POST {cp-address}/bootstrap` with Kuma's `BootstrapRequest` JSON
//! (reference: `kuma-api.md` §4.2), retried with backoff while the control plane is
//! unreachable, failing (5xx) or does not know the Dataplane yet (404 with an empty body).
//!
//! Refusals (400, 401, 403, 422 and other 4xx) end at once with the control plane's message.
//! The token is sent in the body and never logged; a message that somehow contains it is
//! redacted before it is shown.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use tokio::time::Instant;

use crate::cli::{ProxyType, RunConfig, Secret};

/// The longest wait between two attempts.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
/// How long one attempt may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Version information kuma-dp reports (Kuma's `version` object).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    pub kuma_dp: KumaDpVersion,
    pub envoy: EnvoyVersion,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KumaDpVersion {
    pub version: String,
    pub git_tag: String,
    pub git_commit: String,
    pub build_date: String,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EnvoyVersion {
    pub version: String,
    pub build: String,
    pub kuma_dp_compatible: bool,
}

impl KumaDpVersion {
    /// This build of kuma-dp.
    pub fn current() -> KumaDpVersion {
        KumaDpVersion {
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        }
    }
}

/// Kuma's `BootstrapRequest`: the fields this agent fills.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapRequest<'a> {
    pub mesh: &'a str,
    pub name: &'a str,
    pub proxy_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataplane_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataplane_resource: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_port: Option<u16>,
    pub version: &'a VersionInfo,
    /// The CA Envoy should trust for the control plane (from `--ca-cert-file`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<&'a str>,
    pub operating_system: &'static str,
    /// Features this agent supports: none of Kuma's optional ones yet.
    pub features: Vec<&'static str>,
    pub workdir: &'a str,
}

impl<'a> BootstrapRequest<'a> {
    pub fn new(config: &'a RunConfig, version: &'a VersionInfo, workdir: &'a str) -> Self {
        BootstrapRequest {
            mesh: &config.mesh,
            name: &config.name,
            proxy_type: config.proxy_type.as_str(),
            dataplane_token: config.token.as_ref().map(Secret::expose),
            dataplane_resource: config.dataplane_resource.as_deref(),
            admin_port: config.admin_port,
            version,
            ca_cert: config.ca_cert.as_deref(),
            operating_system: std::env::consts::OS,
            features: Vec::new(),
            workdir,
        }
    }
}

/// What the control plane answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootstrap {
    /// The Envoy bootstrap (YAML; it holds the token).
    pub yaml: String,
    /// `kumaSidecarConfiguration.networking.address`, when given.
    pub address: Option<String>,
}

/// Why there is no bootstrap.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("the control plane at {url} refused the bootstrap ({status}): {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    #[error(
        "{url} answered 404 with {message:?}: that is not the bootstrap server of a control plane (check --cp-address)"
    )]
    NotABootstrapServer { url: String, message: String },
    #[error("the control plane at {url} sent a bad bootstrap answer: {message}")]
    BadAnswer { url: String, message: String },
    #[error(
        "no bootstrap from the control plane at {url} within {max} ({attempts} attempts); last: {last}"
    )]
    GaveUp {
        url: String,
        max: String,
        attempts: u32,
        last: String,
    },
    #[error("HTTP client for {url}: {message}")]
    Client { url: String, message: String },
}

/// One attempt's outcome.
#[derive(Debug)]
enum Attempt {
    Done(Bootstrap),
    /// Worth another try; the cause.
    Retry(String),
    Fail(BootstrapError),
}

/// The bootstrap URL of a control-plane address (`{cp-address}/bootstrap`, keeping a path
/// prefix).
pub fn bootstrap_url(cp_address: &reqwest::Url) -> String {
    format!("{}/bootstrap", cp_address.as_str().trim_end_matches('/'))
}

/// Maps an answer to an outcome.
fn classify(url: &str, status: u16, body: &str, token: Option<&Secret>) -> Attempt {
    let message = redact(body.trim(), token);
    match status {
        200 => match parse_answer(body) {
            Ok(bootstrap) => Attempt::Done(bootstrap),
            Err(message) => Attempt::Fail(BootstrapError::BadAnswer {
                url: url.to_string(),
                message,
            }),
        },
        404 if message.is_empty() => Attempt::Retry(
            "404: the Dataplane is not registered yet (apply it, or pass it with --dataplane-file)"
                .to_string(),
        ),
        404 => Attempt::Fail(BootstrapError::NotABootstrapServer {
            url: url.to_string(),
            message,
        }),
        500..=599 => Attempt::Retry(format!("{status}: {message}")),
        _ => Attempt::Fail(BootstrapError::Refused {
            url: url.to_string(),
            status,
            message: if message.is_empty() {
                "(no message)".to_string()
            } else {
                message
            },
        }),
    }
}

fn redact(text: &str, token: Option<&Secret>) -> String {
    match token {
        Some(token) if !token.expose().is_empty() => text.replace(token.expose(), "[redacted]"),
        _ => text.to_string(),
    }
}

/// Kuma's JSON answer: `{"bootstrap": <base64 YAML>, "kumaSidecarConfiguration": {...}}`.
fn parse_answer(body: &str) -> Result<Bootstrap, String> {
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    let encoded = value
        .get("bootstrap")
        .and_then(serde_json::Value::as_str)
        .ok_or("no \"bootstrap\" string")?;
    let bytes = STANDARD
        .decode(encoded)
        .map_err(|e| format!("bootstrap: not base64: {e}"))?;
    let yaml = String::from_utf8(bytes).map_err(|_| "bootstrap: not UTF-8".to_string())?;
    if yaml.trim().is_empty() {
        return Err("bootstrap: empty".to_string());
    }
    let address = value
        .pointer("/kumaSidecarConfiguration/networking/address")
        .and_then(serde_json::Value::as_str)
        .filter(|a| !a.is_empty())
        .map(str::to_string);
    Ok(Bootstrap { yaml, address })
}

/// An error and its causes on one line (reqwest's own message hides the cause).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The HTTP client for the control plane: its CA (or none verified with `--skip-verify`).
pub fn client(config: &RunConfig) -> Result<reqwest::Client, BootstrapError> {
    let url = bootstrap_url(&config.cp_address);
    let fail = |message: String| BootstrapError::Client {
        url: url.clone(),
        message,
    };
    let mut builder = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .no_proxy();
    if config.skip_verify {
        builder = builder.tls_danger_accept_invalid_certs(true);
    } else if let Some(pem) = &config.ca_cert {
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| fail(format!("--ca-cert-file: {}", chain(&e))))?;
        if certs.is_empty() {
            return Err(fail(
                "--ca-cert-file: no certificate in the file".to_string(),
            ));
        }
        builder = builder.tls_certs_only(certs);
    }
    builder.build().map_err(|e| fail(chain(&e)))
}

async fn attempt(
    http: &reqwest::Client,
    url: &str,
    body: &BootstrapRequest<'_>,
    token: Option<&Secret>,
) -> Attempt {
    let response = match http
        .post(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .json(body)
        .send()
        .await
    {
        Ok(response) => response,
        Err(e) => return Attempt::Retry(redact(&chain(&e), token)),
    };
    let status = response.status().as_u16();
    match response.text().await {
        Ok(text) => classify(url, status, &text, token),
        Err(e) => Attempt::Retry(redact(&chain(&e), token)),
    }
}

/// Fetches the bootstrap, retrying (first wait `config.retry_backoff`, doubling up to
/// [`MAX_RETRY_DELAY`], with jitter) until `config.retry_max_duration` has passed.
pub async fn fetch(
    config: &RunConfig,
    version: &VersionInfo,
    workdir: &str,
) -> Result<Bootstrap, BootstrapError> {
    let http = client(config)?;
    let url = bootstrap_url(&config.cp_address);
    let body = BootstrapRequest::new(config, version, workdir);
    let token = config.token.as_ref();
    let start = Instant::now();
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(config.retry_backoff)
        .with_max_delay(MAX_RETRY_DELAY.max(config.retry_backoff))
        .with_jitter()
        .without_max_times()
        .build();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let cause = match attempt(&http, &url, &body, token).await {
            Attempt::Done(bootstrap) => {
                tracing::info!(%url, attempts, "got the Envoy bootstrap");
                return Ok(bootstrap);
            }
            Attempt::Fail(error) => return Err(error),
            Attempt::Retry(cause) => cause,
        };
        let elapsed = start.elapsed();
        let delay = delays.next().unwrap_or(MAX_RETRY_DELAY);
        if elapsed >= config.retry_max_duration {
            return Err(BootstrapError::GaveUp {
                url,
                max: humantime::format_duration(config.retry_max_duration).to_string(),
                attempts,
                last: cause,
            });
        }
        let delay = delay.min(config.retry_max_duration - elapsed);
        tracing::warn!(%url, attempt = attempts, retry_in = ?delay, "no bootstrap yet: {cause}");
        tokio::time::sleep(delay).await;
    }
}

/// The proxy type's name on the wire (for logs).
pub fn describe(config: &RunConfig) -> String {
    match config.proxy_type {
        ProxyType::Dataplane => format!("dataplane {}.{}", config.mesh, config.name),
        ProxyType::Ingress => format!("zone ingress {}", config.name),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::post;
    use serde_json::{Value, json};

    use super::*;
    use crate::cli::EnvoyLogLevel;

    fn config(cp: &str) -> RunConfig {
        RunConfig {
            cp_address: reqwest::Url::parse(cp).unwrap(),
            ca_cert: None,
            skip_verify: false,
            name: "web-1".into(),
            mesh: "default".into(),
            proxy_type: ProxyType::Dataplane,
            token: Some(Secret::new("TOKEN-abc.def")),
            dataplane_resource: Some("type: Dataplane\n".into()),
            admin_port: Some(19901),
            binary_path: None,
            work_dir: None,
            drain_time: Duration::from_secs(1),
            envoy_log_level: EnvoyLogLevel::Info,
            concurrency: None,
            retry_backoff: Duration::from_millis(10),
            retry_max_duration: Duration::from_secs(5),
        }
    }

    #[test]
    fn the_request_body_is_kumas_bootstrap_request() {
        let config = config("http://cp:5682");
        let version = VersionInfo {
            kuma_dp: KumaDpVersion::current(),
            envoy: EnvoyVersion {
                version: "1.40.0".into(),
                build: "abc/1.40.0/Clean/RELEASE".into(),
                kuma_dp_compatible: true,
            },
        };
        let body =
            serde_json::to_value(BootstrapRequest::new(&config, &version, "/tmp/w")).unwrap();
        assert_eq!(
            body,
            json!({
                "mesh": "default",
                "name": "web-1",
                "proxyType": "dataplane",
                "dataplaneToken": "TOKEN-abc.def",
                "dataplaneResource": "type: Dataplane\n",
                "adminPort": 19901,
                "version": {
                    "kumaDp": {"version": env!("CARGO_PKG_VERSION"), "gitTag": "", "gitCommit": "", "buildDate": ""},
                    "envoy": {"version": "1.40.0", "build": "abc/1.40.0/Clean/RELEASE", "kumaDpCompatible": true},
                },
                "operatingSystem": std::env::consts::OS,
                "features": [],
                "workdir": "/tmp/w",
            })
        );
        let mut bare = config.clone();
        bare.token = None;
        bare.dataplane_resource = None;
        bare.admin_port = None;
        bare.ca_cert = Some("PEM".into());
        let body = serde_json::to_value(BootstrapRequest::new(&bare, &version, "")).unwrap();
        for absent in ["dataplaneToken", "dataplaneResource", "adminPort"] {
            assert!(body.get(absent).is_none(), "{absent}: {body}");
        }
        assert_eq!(body["caCert"], "PEM");
    }

    #[test]
    fn urls_keep_a_path_prefix() {
        let url = |s: &str| bootstrap_url(&reqwest::Url::parse(s).unwrap());
        assert_eq!(url("http://cp:5682"), "http://cp:5682/bootstrap");
        assert_eq!(url("https://cp:5682/"), "https://cp:5682/bootstrap");
        assert_eq!(url("http://cp/kuma/"), "http://cp/kuma/bootstrap");
    }

    #[test]
    fn answers_map_to_done_retry_or_fail() {
        let token = Secret::new("SECRET");
        let ok = json!({"bootstrap": STANDARD.encode("node:\n  id: default.web-1\n"),
            "kumaSidecarConfiguration": {"networking": {"address": "10.0.0.1"}}});
        match classify("u", 200, &ok.to_string(), Some(&token)) {
            Attempt::Done(b) => {
                assert_eq!(b.yaml, "node:\n  id: default.web-1\n");
                assert_eq!(b.address.as_deref(), Some("10.0.0.1"));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(classify("u", 404, "", None), Attempt::Retry(c) if c.contains("not registered yet"))
        );
        assert!(matches!(classify("u", 503, "busy", None), Attempt::Retry(c) if c == "503: busy"));
        assert!(matches!(
            classify("u", 404, "404 page not found", None),
            Attempt::Fail(BootstrapError::NotABootstrapServer { .. })
        ));
        for status in [400, 401, 403, 422, 405] {
            match classify(
                "http://cp/bootstrap",
                status,
                "dataplane token expired SECRET\n",
                Some(&token),
            ) {
                Attempt::Fail(e @ BootstrapError::Refused { .. }) => {
                    let text = e.to_string();
                    assert_eq!(
                        text,
                        format!(
                            "the control plane at http://cp/bootstrap refused the bootstrap ({status}): dataplane token expired [redacted]"
                        )
                    );
                }
                other => panic!("{status}: {other:?}"),
            }
        }
        for bad in ["{", "{}", r#"{"bootstrap": "%%%"}"#, r#"{"bootstrap": ""}"#] {
            assert!(
                matches!(
                    classify("u", 200, bad, None),
                    Attempt::Fail(BootstrapError::BadAnswer { .. })
                ),
                "{bad}"
            );
        }
    }

    /// A stand-in control plane (an axum router on a free port) for the retry rules; the real
    /// zone control plane is exercised in the e2e tests.
    async fn fake_cp(router: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn retries_while_not_registered_then_succeeds() {
        let calls = Arc::new(AtomicU32::new(0));
        let seen = calls.clone();
        let router = Router::new().route(
            "/bootstrap",
            post(move |body: axum::Json<Value>| {
                let seen = seen.clone();
                async move {
                    assert_eq!(body["dataplaneToken"], "TOKEN-abc.def");
                    if seen.fetch_add(1, Ordering::SeqCst) < 2 {
                        (StatusCode::NOT_FOUND, String::new())
                    } else {
                        let yaml = STANDARD.encode("admin: {}\n");
                        (StatusCode::OK, json!({"bootstrap": yaml}).to_string())
                    }
                }
            }),
        );
        let cp = fake_cp(router).await;
        let bootstrap = fetch(&config(&cp), &VersionInfo::default(), "/w")
            .await
            .unwrap();
        assert_eq!(bootstrap.yaml, "admin: {}\n");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_refusal_ends_at_once() {
        let calls = Arc::new(AtomicU32::new(0));
        let seen = calls.clone();
        let router = Router::new().route(
            "/bootstrap",
            post(move || {
                seen.fetch_add(1, Ordering::SeqCst);
                async { (StatusCode::UNAUTHORIZED, "dataplane token is malformed") }
            }),
        );
        let cp = fake_cp(router).await;
        let err = fetch(&config(&cp), &VersionInfo::default(), "/w")
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .ends_with("(401): dataplane token is malformed"),
            "{err}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    /// A CA and a server certificate for 127.0.0.1 signed by it, as PEM.
    fn test_pki() -> (String, String, String) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let server_key = rcgen::KeyPair::generate().unwrap();
        let server_cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&server_key, &issuer)
            .unwrap();
        (ca_cert.pem(), server_cert.pem(), server_key.serialize_pem())
    }

    /// The HTTPS stand-in: serves `router` with the given certificate; returns its URL.
    async fn fake_tls_cp(router: Router, cert_pem: &str, key_pem: &str) -> String {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let router = router.clone();
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper_util::service::TowerToHyperService::new(router);
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
                });
            }
        });
        format!("https://{addr}")
    }

    #[tokio::test]
    async fn https_with_the_ca_or_skip_verify_and_the_ca_is_sent() {
        let (ca, cert, key) = test_pki();
        let router = Router::new().route(
            "/bootstrap",
            post(|body: axum::Json<Value>| async move {
                let yaml = format!("caCert: {}\n", body["caCert"].is_string());
                json!({"bootstrap": STANDARD.encode(yaml)}).to_string()
            }),
        );
        let cp = fake_tls_cp(router, &cert, &key).await;

        let mut with_ca = config(&cp);
        with_ca.ca_cert = Some(ca.clone());
        let bootstrap = fetch(&with_ca, &VersionInfo::default(), "/w")
            .await
            .unwrap();
        assert_eq!(bootstrap.yaml, "caCert: true\n");

        let mut untrusted = config(&cp);
        untrusted.retry_max_duration = Duration::from_millis(100);
        let err = fetch(&untrusted, &VersionInfo::default(), "/w")
            .await
            .unwrap_err();
        assert!(
            err.to_string().to_lowercase().contains("certificate"),
            "{err}"
        );

        let mut skip = config(&cp);
        skip.skip_verify = true;
        let bootstrap = fetch(&skip, &VersionInfo::default(), "/w").await.unwrap();
        assert_eq!(bootstrap.yaml, "caCert: false\n");

        let mut garbage = config(&cp);
        garbage.ca_cert = Some("not a PEM".into());
        let err = fetch(&garbage, &VersionInfo::default(), "/w")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("--ca-cert-file"), "{err}");
    }

    #[tokio::test]
    async fn an_unreachable_control_plane_is_given_up_naming_it_and_the_cause() {
        // A port that was free a moment ago: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut config = config(&format!("http://127.0.0.1:{port}"));
        config.retry_max_duration = Duration::from_millis(300);
        let err = fetch(&config, &VersionInfo::default(), "/w")
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, BootstrapError::GaveUp { attempts, .. } if attempts >= 2),
            "{text}"
        );
        assert!(
            text.contains(&format!("http://127.0.0.1:{port}/bootstrap")),
            "{text}"
        );
        assert!(text.to_lowercase().contains("connect"), "{text}");
    }
}
