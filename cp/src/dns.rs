//! Starts a zone's `.mesh` DNS (crate `dns`): the VIP allocator task and the DNS server on
//! `dnsServer.port` (UDP and TCP) of the API interface, with its metrics on `/metrics`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use model::CpMode;
use prometheus_client::registry::Registry;
use store::ResourceStore;
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinSet;
use tracing::info;

use crate::config::Config;
use crate::server::RunError;

/// Binds the DNS port and spawns the server and the allocator into `servers`; both stop when
/// `stop()`'s futures resolve.
pub async fn start<S, F>(
    config: &Config,
    mode: CpMode,
    store: Arc<dyn ResourceStore>,
    registry: &mut Registry,
    servers: &mut JoinSet<Result<(), RunError>>,
    stop: S,
) -> Result<(), RunError>
where
    S: Fn() -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let settings = &config.dns_server;
    let addr = SocketAddr::new(config.api_server.http.interface, settings.port);
    let listen_error = |source| RunError::Listen {
        what: "DNS",
        addr,
        source,
    };
    let udp = UdpSocket::bind(addr).await.map_err(listen_error)?;
    let tcp = TcpListener::bind(addr).await.map_err(listen_error)?;

    let metrics = dns::DnsMetrics::register(registry);
    let state = dns::DnsState::new(&settings.domain, settings.upstreams.0.clone(), metrics);
    let allocator = dns::AllocatorSettings {
        cidr: settings.cidr,
        local_zone: (mode == CpMode::FederatedZone).then(|| config.multizone.zone.name.clone()),
        service_vips: settings.service_vip_enabled,
    };
    let allocate = dns::allocator::run(store, allocator, state.clone(), stop());
    servers.spawn(async move {
        allocate.await;
        Ok(())
    });
    let serve = dns::server::serve(udp, tcp, state, stop());
    servers.spawn(async move {
        serve.await;
        Ok(())
    });
    info!(dns = %addr, domain = settings.domain, cidr = %settings.cidr, upstreams = settings.upstreams.0.len(), "DNS server ready");
    Ok(())
}
