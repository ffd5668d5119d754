//! Runs a control plane: opens the store, creates what a first start needs, serves the REST
//! API and diagnostics, and shuts down gracefully. Both binaries call [`run`]; the global and
//! zone differ only in the mode they pass (and, later, the sync and xDS rooms they add).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use model::CpMode;
use prometheus_client::registry::Registry;
use store::{ResourceStore, StoreError};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::api::{self, ApiMetrics, ApiSettings, ApiState, ServerInfo};
use crate::bootstrap::{self, BootstrapSettings, BootstrapState};
use crate::config::{Config, Mode};
use crate::diagnostics::{self, Readiness};
use crate::store_metrics::MeteredStore;
use crate::{defaults, tokens};

/// Why a control plane could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("opening the {backend} store: {source}")]
    Store {
        backend: &'static str,
        source: StoreError,
    },
    #[error("first-start setup: {0}")]
    Setup(String),
    #[error("listening on {addr} ({what}): {source}")]
    Listen {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{what} server failed: {source}")]
    Serve {
        what: &'static str,
        source: std::io::Error,
    },
}

/// The version this build reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

fn backend_of(config: &Config) -> &'static str {
    config.store.kind.as_str()
}

/// Runs the control plane until `shutdown` resolves, then stops accepting connections,
/// finishes requests in flight and closes the store.
pub async fn run(
    mut config: Config,
    mode: CpMode,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    if mode == CpMode::Global {
        config.mode = Mode::Global;
    }
    let readiness = Readiness::default();
    readiness.register("store");
    readiness.register("api-server");
    let mut registry = Registry::default();

    let backend = backend_of(&config);
    let opened = store::open(&config.store_settings())
        .await
        .map_err(|source| RunError::Store { backend, source })?;
    let store: Arc<dyn ResourceStore> = Arc::new(MeteredStore::new(opened, &mut registry));
    readiness.set_ready("store", true);
    info!(backend, "store opened");

    let cluster_id =
        defaults::ensure_cluster_id_with(store.as_ref(), mode != CpMode::FederatedZone)
            .await
            .map_err(|e| RunError::Setup(format!("cluster id: {e}")))?;
    if mode != CpMode::FederatedZone {
        if !config.defaults.skip_mesh_creation
            && defaults::ensure_default_mesh(store.as_ref())
                .await
                .map_err(|e| RunError::Setup(format!("default mesh: {e}")))?
        {
            info!(mesh = defaults::DEFAULT_MESH, "mesh created");
        }
        if let Err(e) = tokens::bootstrap_admin_token(&store).await {
            warn!(error = %e, "could not create the admin user token");
        }
    }

    let hostname = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let info = ServerInfo::new(
        VERSION,
        hostname.clone(),
        cluster_id,
        ServerInfo::gui_path(&config),
    );
    let metrics = ApiMetrics::register(&mut registry);
    let authenticator = Arc::new(tokens::UserTokenAuthenticator::new(store.clone()));
    let state = ApiState::new(
        store.clone(),
        authenticator,
        metrics,
        ApiSettings::from_config(&config, info),
    );
    let tokens_state = if mode == CpMode::FederatedZone {
        tokens::TokensState::federated_zone(store.clone())
    } else {
        tokens::TokensState::new(store.clone())
    };
    let gui_enabled = config.api_server.gui.enabled;
    let gui_settings = crate::gui::GuiSettings {
        base: match config.api_server.gui.base_path.trim_end_matches('/') {
            "" => "/gui".to_string(),
            base => base.to_string(),
        },
        mode,
        zone: config.multizone.zone.name.clone(),
        version: VERSION.to_string(),
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let mut servers = JoinSet::new();
    let instance_id = format!(
        "{}-{}",
        if hostname.is_empty() {
            "kuma-rs"
        } else {
            hostname.as_str()
        },
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let mut zone_link = None;
    match mode {
        CpMode::Global => {
            readiness.register("kds");
            let (running, serve) = crate::kds::start_global(
                &config,
                store.clone(),
                &mut registry,
                &instance_id,
                stopped(stop_rx.clone()),
            )
            .await?;
            info!(kds = %running.addr, "KDS ready");
            servers.spawn(serve);
            readiness.set_ready("kds", true);
        }
        CpMode::FederatedZone => {
            if let Some((link, task)) = crate::kds::start_zone(
                &config,
                store.clone(),
                &mut registry,
                &instance_id,
                stopped(stop_rx.clone()),
            )
            .await?
            {
                zone_link = Some(link);
                servers.spawn(async move {
                    let _ = task.await;
                    Ok(())
                });
            }
        }
        CpMode::Standalone => {}
    }
    let mut extra = tokens::router().with_state(tokens_state.clone());
    if gui_enabled {
        let live = crate::gui::Live::start(store.clone(), stop_rx.clone());
        extra = extra.merge(crate::gui::router(crate::gui::GuiState {
            store: store.clone(),
            live,
            settings: Arc::new(gui_settings),
            link: zone_link,
        }));
    }
    let app = api::router_with(state, extra);
    if matches!(mode, CpMode::Standalone | CpMode::FederatedZone) {
        readiness.register("xds-server");
        start_dataplane_servers(
            &config,
            store.clone(),
            &instance_id,
            tokens_state,
            &mut registry,
            &mut servers,
            &stop_rx,
        )
        .await?;
        readiness.set_ready("xds-server", true);
        let mads_addr = crate::mads::start(
            &config,
            store.clone(),
            &mut registry,
            &mut servers,
            &stop_rx,
        )
        .await?;
        info!(mads = %mads_addr, "monitoring assignment server ready");
        crate::dns::start(
            &config,
            mode,
            store.clone(),
            &mut registry,
            &mut servers,
            || stopped(stop_rx.clone()),
        )
        .await?;
    }
    servers.spawn(prune_changes(store.clone(), stopped(stop_rx.clone())));
    let registry = Arc::new(Mutex::new(registry));
    let diag = diagnostics::router(readiness.clone(), registry);

    let api_addr = SocketAddr::new(
        config.api_server.http.interface,
        config.api_server.http.port,
    );
    let diag_addr = SocketAddr::new(
        config.api_server.http.interface,
        config.diagnostics.server_port,
    );
    let api_listener = TcpListener::bind(api_addr)
        .await
        .map_err(|source| RunError::Listen {
            what: "API",
            addr: api_addr,
            source,
        })?;
    let diag_listener = TcpListener::bind(diag_addr)
        .await
        .map_err(|source| RunError::Listen {
            what: "diagnostics",
            addr: diag_addr,
            source,
        })?;

    let api_stop = stopped(stop_rx.clone());
    servers.spawn(async move {
        axum::serve(
            api_listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(api_stop)
        .await
        .map_err(|source| RunError::Serve {
            what: "API",
            source,
        })
    });
    let diag_stop = stopped(stop_rx.clone());
    servers.spawn(async move {
        axum::serve(diag_listener, diag.into_make_service())
            .with_graceful_shutdown(diag_stop)
            .await
            .map_err(|source| RunError::Serve {
                what: "diagnostics",
                source,
            })
    });
    readiness.set_ready("api-server", true);
    info!(api = %api_addr, diagnostics = %diag_addr, mode = ?mode, "control plane ready");

    let mut result = Ok(());
    tokio::select! {
        () = shutdown => info!("shutting down"),
        Some(joined) = servers.join_next() => {
            result = flatten(joined);
        }
    }
    let _ = stop_tx.send(true);
    while let Some(joined) = servers.join_next().await {
        if let Err(e) = flatten(joined)
            && result.is_ok()
        {
            result = Err(e);
        }
    }
    drop(store);
    info!("stopped");
    result
}

/// Starts what serves Envoy in a zone: the xDS feed (store → snapshot cache), the ADS server
/// on `xdsServer.grpcPort` (dataplane tokens checked, DataplaneInsight written, inline
/// Dataplanes deregistered), `POST /bootstrap` on `bootstrapServer.port`, both on the API
/// interface, and `POST /tokens/dataplane` on `adminServer.local.port` of 127.0.0.1. Each
/// stops when `stop` turns true.
async fn start_dataplane_servers(
    config: &Config,
    store: Arc<dyn ResourceStore>,
    instance_id: &str,
    tokens_state: tokens::TokensState,
    registry: &mut Registry,
    servers: &mut JoinSet<Result<(), RunError>>,
    stop: &watch::Receiver<bool>,
) -> Result<(), RunError> {
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let interface = config.api_server.http.interface;
    let xds_addr = SocketAddr::new(interface, config.xds_server.grpc_port);
    let bootstrap_addr = SocketAddr::new(interface, config.bootstrap_server.port);
    let xds_listener = TcpListener::bind(xds_addr)
        .await
        .map_err(|source| RunError::Listen {
            what: "xDS",
            addr: xds_addr,
            source,
        })?;
    let bootstrap_listener =
        TcpListener::bind(bootstrap_addr)
            .await
            .map_err(|source| RunError::Listen {
                what: "bootstrap",
                addr: bootstrap_addr,
                source,
            })?;

    let admin_addr = SocketAddr::new(
        std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        config.admin_server.local.port,
    );
    let admin_listener =
        TcpListener::bind(admin_addr)
            .await
            .map_err(|source| RunError::Listen {
                what: "admin",
                addr: admin_addr,
                source,
            })?;
    let require_token = config.dp_server.dp_proxy_auth == crate::config::DpProxyAuthType::DpToken;

    let cache = xds::ads::SnapshotCache::new();
    let service_vips = xds::ServiceVips {
        enabled: config.dns_server.service_vip_enabled,
        port: config.dns_server.service_vip_port,
    };
    let feed_settings = xds::feed::FeedSettings {
        service_vips,
        local_zone: config.multizone.zone.name.clone(),
    };
    let feed = xds::feed::run_with(
        store.clone(),
        cache.clone(),
        feed_settings,
        stopped(stop.clone()),
    );
    servers.spawn(async move {
        feed.await;
        Ok(())
    });
    // The zone's ingresses: their available services and their snapshots.
    let ingress_feed = ingress::feed::run(
        store.clone(),
        cache.clone(),
        config.multizone.zone.name.clone(),
        stopped(stop.clone()),
    );
    servers.spawn(async move {
        ingress_feed.await;
        Ok(())
    });

    // Plaintext for now: proxies dial the xDS server on 127.0.0.1 without TLS.
    warn!(xds = %xds_addr, "the xDS server is served without TLS (TLS on the dataplane server comes later)");
    let (insights, insight_writer) = crate::xds_insight::start(
        store.clone(),
        instance_id.to_owned(),
        config.xds_server.dataplane_status_flush_interval.into(),
        stopped(stop.clone()),
    );
    servers.spawn(async move {
        insight_writer.await;
        Ok(())
    });
    let (lifecycle, lifecycle_task) = crate::xds_lifecycle::start(
        store.clone(),
        instance_id.to_owned(),
        config.xds_server.dataplane_deregistration_delay,
        stopped(stop.clone()),
    );
    servers.spawn(async move {
        lifecycle_task.await;
        Ok(())
    });
    let xds_metrics = Arc::new(crate::xds_metrics::XdsMetrics::register(registry));
    let events: Vec<Arc<dyn xds::ads::StreamEvents>> = vec![insights, lifecycle, xds_metrics];
    let authenticator =
        crate::xds_auth::DataplaneStreamAuthenticator::new(store.clone(), require_token)
            .with_zone(config.multizone.zone.name.clone());
    let ads = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(
            xds::ads::AdsServer::with_events(cache, Arc::new(events))
                .with_authenticator(Arc::new(authenticator))
                .with_shutdown(stop.clone())
                .into_service(),
        );
    let xds_stop = stopped(stop.clone());
    let xds_deadline = stopped(stop.clone());
    servers.spawn(async move {
        // On stop the ADS server ends its streams; a client that keeps its half of a stream
        // open would hold the graceful shutdown forever, so it gets XDS_SHUTDOWN_GRACE.
        let serve = kds::transport::serve(ads, xds_listener, None, xds_stop);
        tokio::select! {
            result = serve => result.map_err(|e| RunError::Serve {
                what: "xDS",
                source: std::io::Error::other(e.to_string()),
            }),
            () = async {
                xds_deadline.await;
                tokio::time::sleep(XDS_SHUTDOWN_GRACE).await;
            } => Ok(()),
        }
    });

    let params = &config.bootstrap_server.params;
    let settings = BootstrapSettings {
        xds_host: params.xds_host.clone(),
        xds_port: params.xds_port.unwrap_or(xds_addr.port()),
        tls: false,
        ca_pem: None,
        require_token,
        zone: config.multizone.zone.name.clone(),
    };
    let admin = tokens::http::local_admin_router(tokens_state);
    let admin_stop = stopped(stop.clone());
    servers.spawn(async move {
        axum::serve(admin_listener, admin.into_make_service())
            .with_graceful_shutdown(admin_stop)
            .await
            .map_err(|source| RunError::Serve {
                what: "admin",
                source,
            })
    });
    let app = bootstrap::router().with_state(BootstrapState::new(store, settings));
    let bootstrap_stop = stopped(stop.clone());
    servers.spawn(async move {
        axum::serve(bootstrap_listener, app.into_make_service())
            .with_graceful_shutdown(bootstrap_stop)
            .await
            .map_err(|source| RunError::Serve {
                what: "bootstrap",
                source,
            })
    });
    info!(xds = %xds_addr, bootstrap = %bootstrap_addr, admin = %admin_addr, "dataplane servers ready");
    Ok(())
}

/// How long a stopping zone waits for its ADS connections to close after ending their streams.
const XDS_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Change-feed rows kept: the feed serves live followers (KDS mirrors, caches), which resync
/// from a snapshot when they fall further behind.
const CHANGES_KEPT: u64 = 100_000;

/// Forgets change-feed rows older than the newest [`CHANGES_KEPT`], every minute.
async fn prune_changes(
    store: Arc<dyn ResourceStore>,
    stop: impl Future<Output = ()>,
) -> Result<(), RunError> {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return Ok(()),
            () = tokio::time::sleep(std::time::Duration::from_secs(60)) => {}
        }
        if let Ok(current) = store.revision().await
            && current > CHANGES_KEPT
            && let Err(e) = store.prune_changes(current - CHANGES_KEPT).await
        {
            warn!(error = %e, "pruning the change feed failed");
        }
    }
}

fn flatten(joined: Result<Result<(), RunError>, tokio::task::JoinError>) -> Result<(), RunError> {
    match joined {
        Ok(r) => r,
        Err(e) => Err(RunError::Serve {
            what: "server task",
            source: std::io::Error::other(e.to_string()),
        }),
    }
}
