//! Test applications that sit behind sidecars: an HTTP server, a TCP echo server and a gRPC
//! server, each answering with the instance name it was started with, so a test sees which
//! instance a request reached. They run on the test's tokio runtime, on 127.0.0.1.

use std::convert::Infallible;
use std::net::SocketAddr;

use kds_proto::system::v1alpha1::inter_cp_ping_service_server::{
    InterCpPingService, InterCpPingServiceServer,
};
use kds_proto::system::v1alpha1::{PingRequest, PingResponse};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// The header in which Envoy's inbound passes the caller's certificate details
/// (`forward_client_cert_details`).
pub const XFCC: &str = "x-forwarded-client-cert";

async fn bind() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a test application");
    let port = listener.local_addr().expect("local address").port();
    (listener, port)
}

/// An HTTP/1.1 and HTTP/2 (h2c) server answering every request with 200 and the body
/// `{name}\n{x-forwarded-client-cert}` (the second line empty without the header). Returns its
/// port.
pub async fn http(name: &str) -> u16 {
    let (listener, port) = bind().await;
    let name = name.to_string();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let name = name.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
                    let xfcc = request
                        .headers()
                        .get(XFCC)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    let body = format!("{name}\n{xfcc}");
                    async move {
                        Ok::<_, Infallible>(hyper::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from(body),
                        )))
                    }
                });
                let io = hyper_util::rt::TokioIo::new(socket);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(io, service)
                .await;
            });
        }
    });
    port
}

/// A TCP server that reads lines and answers each with `{name}: {line}`. Returns its port.
pub async fn tcp_echo(name: &str) -> u16 {
    let (listener, port) = bind().await;
    let name = name.to_string();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let name = name.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if write
                        .write_all(format!("{name}: {line}\n").as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// A gRPC server (the `InterCpPingService` of our protos: any unary service does) whose
/// `Ping` answers `leader: true` exactly when the request's `instance_id` equals `name`, so a
/// caller can tell which instance answered. Returns its port.
pub async fn grpc(name: &str) -> u16 {
    let (listener, port) = bind().await;
    let server = InterCpPingServiceServer::new(Pinger {
        name: name.to_string(),
    });
    tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let _ = tonic::transport::Server::builder()
            .add_service(server)
            .serve_with_incoming(incoming)
            .await;
    });
    port
}

struct Pinger {
    name: String,
}

#[tonic::async_trait]
impl InterCpPingService for Pinger {
    async fn ping(
        &self,
        request: tonic::Request<PingRequest>,
    ) -> Result<tonic::Response<PingResponse>, tonic::Status> {
        Ok(tonic::Response::new(PingResponse {
            leader: request.into_inner().instance_id == self.name,
        }))
    }
}

/// Calls `Ping` on `address` (plaintext HTTP/2) with `instance_id`; `Ok(leader)`.
pub async fn grpc_ping(address: SocketAddr, instance_id: &str) -> Result<bool, String> {
    use kds_proto::system::v1alpha1::inter_cp_ping_service_client::InterCpPingServiceClient;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let response = InterCpPingServiceClient::new(channel)
        .ping(PingRequest {
            instance_id: instance_id.to_string(),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("Ping: {e}"))?;
    Ok(response.into_inner().leader)
}

/// Sends `line` over a new TCP connection to `address` and returns the answer line.
pub async fn tcp_call(address: SocketAddr, line: &str) -> Result<String, String> {
    let socket = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::net::TcpStream::connect(address),
    )
    .await
    .map_err(|_| "connect timed out".to_string())?
    .map_err(|e| format!("connect: {e}"))?;
    let (read, mut write) = socket.into_split();
    write
        .write_all(format!("{line}\n").as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut lines = BufReader::new(read).lines();
    match tokio::time::timeout(std::time::Duration::from_secs(5), lines.next_line()).await {
        Err(_) => Err("no answer within 5s".to_string()),
        Ok(Err(e)) => Err(format!("read: {e}")),
        Ok(Ok(None)) => Err("connection closed without an answer".to_string()),
        Ok(Ok(Some(answer))) => Ok(answer),
    }
}
