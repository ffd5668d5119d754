//! Wires the `mads` crate into a zone: the assignment feed (store → current
//! snapshot) and the MADS server on `monitoringAssignmentServer.port` (on the
//! API interface), with the `mads_*` metrics in the control plane's registry.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use store::ResourceStore;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::server::RunError;

/// Starts the feed and the server; both stop when `stop` turns true.
/// Returns the address the server listens on.
pub async fn start(
    config: &Config,
    store: Arc<dyn ResourceStore>,
    registry: &mut Registry,
    servers: &mut JoinSet<Result<(), RunError>>,
    stop: &watch::Receiver<bool>,
) -> Result<SocketAddr, RunError> {
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let settings = &config.monitoring_assignment_server;
    let addr = SocketAddr::new(config.api_server.http.interface, settings.port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Listen {
            what: "MADS",
            addr,
            source,
        })?;
    let metrics = mads::MadsMetrics::register(registry);
    let (snapshots, feed) = mads::feed::start(store, metrics.clone(), stopped(stop.clone()));
    servers.spawn(async move {
        feed.await;
        Ok(())
    });
    let state = mads::MadsState::new(snapshots, settings.default_fetch_timeout.into(), metrics);
    let router = mads::router(state);
    let mads_stop = stopped(stop.clone());
    servers.spawn(async move {
        mads::serve(listener, router, mads_stop)
            .await
            .map_err(|source| RunError::Serve {
                what: "MADS",
                source,
            })
    });
    Ok(addr)
}
