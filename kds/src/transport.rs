//! gRPC plumbing for KDS: serving on a listener with an optional rustls config (TLS is the
//! default; the certificate comes from `cp::tls`), and dialling the global with an optional
//! rustls client config (which may carry a custom verifier, so the TLS handshake is done
//! here and not by tonic's own TLS layer).

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::{Channel, Endpoint, Uri};
use tracing::debug;

/// HTTP/2 keepalive both ways (Kuma: 15 s ping, 15 s timeout): a dead peer is noticed even
/// when no message is due.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(15);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why dialling failed.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("global address {0:?} is not a usable URI: {1}")]
    Address(String, String),
    #[error("connecting to {0}: {1}")]
    Connect(String, String),
}

/// A tonic server builder with KDS's keepalive.
pub fn server_builder() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .tcp_nodelay(true)
}

/// Serves `router` on `listener` until `shutdown` resolves; TLS when `tls` is given (its ALPN
/// must offer `h2`).
pub async fn serve(
    router: tonic::transport::server::Router,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    match tls {
        None => {
            router
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
                .await
        }
        Some(config) => {
            let acceptor = TlsAcceptor::from(config);
            let (tx, rx) = tokio::sync::mpsc::channel(64);
            let accept = tokio::spawn(async move {
                loop {
                    let (tcp, peer) = match listener.accept().await {
                        Ok(accepted) => accepted,
                        Err(e) => {
                            debug!(error = %e, "KDS accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = tcp.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(tls)) => {
                                let _ = tx.send(Ok::<_, std::io::Error>(tls)).await;
                            }
                            Ok(Err(e)) => debug!(%peer, error = %e, "KDS TLS handshake failed"),
                            Err(_) => debug!(%peer, "KDS TLS handshake timed out"),
                        }
                    });
                }
            });
            let result = router
                .serve_with_incoming_shutdown(ReceiverStream::new(rx), shutdown)
                .await;
            accept.abort();
            result
        }
    }
}

/// Dials `host:port`, over TLS with `tls` (server name `host`), plaintext without.
pub async fn dial(
    host: &str,
    port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Channel, DialError> {
    let address = format!("http://{host}:{port}");
    let endpoint = Endpoint::from_shared(address.clone())
        .map_err(|e| DialError::Address(address.clone(), e.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .tcp_nodelay(true);
    let target = format!("{host}:{port}");
    match tls {
        None => endpoint
            .connect()
            .await
            .map_err(|e| DialError::Connect(target, error_chain(&e))),
        Some(config) => {
            let server_name = rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| DialError::Address(host.to_string(), e.to_string()))?;
            let connector = TlsConnector::from(config);
            let tcp_target = target.clone();
            let connect = tower::service_fn(move |_: Uri| {
                let connector = connector.clone();
                let server_name = server_name.clone();
                let tcp_target = tcp_target.clone();
                async move {
                    let tcp = TcpStream::connect(&tcp_target).await?;
                    tcp.set_nodelay(true)?;
                    let tls = connector.connect(server_name, tcp).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(tls))
                }
            });
            endpoint
                .connect_with_connector(connect)
                .await
                .map_err(|e| DialError::Connect(target, error_chain(&e)))
        }
    }
}

/// An error with its sources, joined: TLS problems hide two levels down.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}
