//! The DNS server's I/O: UDP and TCP (RFC 1035 §4.2) on one port, answers from the current
//! [`Table`], forwarding to the configured upstream resolvers, and the request counters.
//!
//! UDP is served by [`UDP_WORKERS`] tasks reading the same socket; a forwarded query runs in
//! its own task so a slow upstream never holds the others. Each TCP connection gets a task,
//! at most [`MAX_TCP_CONNECTIONS`] at once, closed after [`TCP_IDLE`] without a query.
//! Nothing here panics on what a client sends: unparseable packets are counted as
//! `malformed` and dropped.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use crate::handler::{self, Outcome, QueryResult, Table};
use crate::metrics::DnsMetrics;

/// Tasks reading the UDP socket.
pub const UDP_WORKERS: usize = 2;
/// TCP connections served at once; more are closed at accept.
pub const MAX_TCP_CONNECTIONS: usize = 256;
/// A TCP connection without a query for this long is closed.
pub const TCP_IDLE: Duration = Duration::from_secs(10);
/// How long one upstream resolver gets to answer a forwarded query.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest UDP datagram read; a longer one is cut and then fails to parse.
const UDP_BUFFER: usize = 4096;

/// What the server answers with, shared with the VIP allocator that replaces the table.
pub struct DnsState {
    table: ArcSwap<Table>,
    domain: String,
    upstreams: Vec<SocketAddr>,
    metrics: DnsMetrics,
}

impl DnsState {
    /// A server for `domain` with an empty table; queries outside the domain go to
    /// `upstreams` in order (none: REFUSED).
    pub fn new(domain: &str, upstreams: Vec<SocketAddr>, metrics: DnsMetrics) -> Arc<Self> {
        Arc::new(DnsState {
            table: ArcSwap::from_pointee(Table::default()),
            domain: domain.trim_matches('.').to_ascii_lowercase(),
            upstreams,
            metrics,
        })
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Replaces the names served.
    pub fn set_table(&self, table: Table) {
        self.table.store(Arc::new(table));
    }

    pub fn table(&self) -> Arc<Table> {
        self.table.load_full()
    }

    pub fn metrics(&self) -> &DnsMetrics {
        &self.metrics
    }

    /// What to do with `packet`; replies and drops are counted here.
    fn decide(&self, packet: &[u8]) -> Outcome {
        let outcome = {
            let table = self.table.load();
            handler::handle(&table, &self.domain, !self.upstreams.is_empty(), packet)
        };
        match &outcome {
            Outcome::Reply(_, result) => self.metrics.count(*result),
            Outcome::Drop => self.metrics.count(QueryResult::Malformed),
            Outcome::Forward(_) => {}
        }
        outcome
    }

    /// The upstream's reply to `packet` (the bytes of `request`), or SERVFAIL.
    async fn forwarded(
        &self,
        request: &hickory_proto::op::Message,
        packet: &[u8],
    ) -> Option<Vec<u8>> {
        match forward(&self.upstreams, packet, request.metadata.id).await {
            Some(bytes) => {
                self.metrics.count(QueryResult::Forwarded);
                Some(bytes)
            }
            None => {
                self.metrics.count(QueryResult::ForwardFailed);
                handler::servfail(request)
            }
        }
    }

    /// The reply to `packet`, forwarding it when it is for an upstream; `None` to stay silent.
    async fn answer(&self, packet: &[u8]) -> Option<Vec<u8>> {
        match self.decide(packet) {
            Outcome::Reply(bytes, _) => Some(bytes),
            Outcome::Drop => None,
            Outcome::Forward(request) => self.forwarded(&request, packet).await,
        }
    }
}

/// Serves `udp` and `tcp` until `stop` resolves.
pub async fn serve(
    udp: UdpSocket,
    tcp: TcpListener,
    state: Arc<DnsState>,
    stop: impl Future<Output = ()>,
) {
    let udp = Arc::new(udp);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..UDP_WORKERS {
        tasks.spawn(serve_udp(udp.clone(), state.clone()));
    }
    tasks.spawn(serve_tcp(tcp, state));
    stop.await;
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

async fn serve_udp(socket: Arc<UdpSocket>, state: Arc<DnsState>) {
    let mut buffer = vec![0u8; UDP_BUFFER];
    loop {
        let (len, peer) = match socket.recv_from(&mut buffer).await {
            Ok(received) => received,
            Err(e) => {
                // E.g. an ICMP error from an earlier reply: the socket itself is fine.
                debug!(error = %e, "DNS: UDP receive failed");
                continue;
            }
        };
        let reply = match state.decide(&buffer[..len]) {
            Outcome::Reply(bytes, _) => bytes,
            Outcome::Drop => continue,
            Outcome::Forward(request) => {
                // Forwarding waits on the network: not in the receive loop.
                let packet = buffer[..len].to_vec();
                let (socket, state) = (socket.clone(), state.clone());
                tokio::spawn(async move {
                    if let Some(reply) = state.forwarded(&request, &packet).await {
                        let _ = socket.send_to(&reply, peer).await;
                    }
                });
                continue;
            }
        };
        if let Err(e) = socket.send_to(&reply, peer).await {
            debug!(%peer, error = %e, "DNS: UDP send failed");
        }
    }
}

async fn serve_tcp(listener: TcpListener, state: Arc<DnsState>) {
    let slots = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(error = %e, "DNS: TCP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!(%peer, "DNS: too many TCP connections; closed");
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            serve_tcp_connection(stream, &state).await;
            drop(slot);
        });
    }
}

/// Length-prefixed queries until the client closes, stays idle or sends garbage.
async fn serve_tcp_connection(mut stream: TcpStream, state: &DnsState) {
    let _ = stream.set_nodelay(true);
    loop {
        let mut prefix = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut prefix)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let len = usize::from(u16::from_be_bytes(prefix));
        let mut packet = vec![0u8; len];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut packet)).await {
            Ok(Ok(_)) => {}
            _ => {
                state.metrics.count(QueryResult::Malformed);
                return;
            }
        }
        let Some(reply) = state.answer(&packet).await else {
            // Garbage on a stream: the framing cannot be trusted any more.
            return;
        };
        let Ok(reply_len) = u16::try_from(reply.len()) else {
            return;
        };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&reply_len.to_be_bytes());
        framed.extend_from_slice(&reply);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}

/// Sends `packet` to each upstream in turn until one answers with the same id.
async fn forward(upstreams: &[SocketAddr], packet: &[u8], id: u16) -> Option<Vec<u8>> {
    for upstream in upstreams {
        match forward_one(*upstream, packet, id).await {
            Ok(Some(reply)) => return Some(reply),
            Ok(None) => debug!(%upstream, "DNS: upstream resolver did not answer in time"),
            Err(e) => debug!(%upstream, error = %e, "DNS: forwarding failed"),
        }
    }
    None
}

async fn forward_one(
    upstream: SocketAddr,
    packet: &[u8],
    id: u16,
) -> std::io::Result<Option<Vec<u8>>> {
    let bind: SocketAddr = if upstream.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(upstream).await?;
    socket.send(packet).await?;
    let mut buffer = vec![0u8; UDP_BUFFER];
    let wait = async {
        loop {
            let len = socket.recv(&mut buffer).await?;
            if len >= 2 && u16::from_be_bytes([buffer[0], buffer[1]]) == id {
                return Ok::<_, std::io::Error>(buffer[..len].to_vec());
            }
        }
    };
    match tokio::time::timeout(FORWARD_TIMEOUT, wait).await {
        Ok(Ok(reply)) => Ok(Some(reply)),
        Ok(Err(e)) => Err(e),
        Err(_) => Ok(None),
    }
}
