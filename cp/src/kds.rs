//! Wires the KDS rooms into a control plane: on the global, the KDS server on
//! `multizone.global.kds.grpcPort` (TLS by default, with a generated certificate when none is
//! configured) and zone authentication by zone token; in a federated zone, the client that
//! dials `multizone.zone.globalAddress`. The sync logic itself lives in the `kds` crate.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use kds::global::{GlobalKds, GlobalSettings, NoAuthentication, ZoneAuthenticator};
use kds::zone::{ZoneLink, ZoneSettings};
use prometheus_client::registry::Registry;
use store::ResourceStore;
use tokio::net::TcpListener;
use tracing::info;

use crate::config::{Config, KdsAuthType};
use crate::server::{RunError, VERSION};
use crate::tls;
use crate::tokens::TokenValidator;

/// Accepts a zone only with a zone token of scope `cp` issued by this global, naming the zone.
pub struct ZoneTokenAuthenticator {
    validator: TokenValidator,
}

impl ZoneTokenAuthenticator {
    pub fn new(store: Arc<dyn ResourceStore>) -> Self {
        ZoneTokenAuthenticator {
            validator: TokenValidator::new(store),
        }
    }
}

#[async_trait::async_trait]
impl ZoneAuthenticator for ZoneTokenAuthenticator {
    async fn authenticate(&self, client_id: &str, token: Option<&str>) -> Result<String, String> {
        let Some(token) = token else {
            return Err(
                "no zone token: generate one with `kumactl generate zone-token --zone <name> --scope cp` and set multizone.zone.kds.auth.tokenPath on the zone".into(),
            );
        };
        let claims = self
            .validator
            .validate_zone_token(token, "cp", client_id)
            .await
            .map_err(|e| format!("invalid zone token: {e}"))?;
        if claims.zone.is_empty() {
            return Err("the zone token names no zone (generate it with --zone)".into());
        }
        Ok(claims.zone)
    }
}

fn public_key(private_pem: &str) -> Result<String, String> {
    crate::tokens::signing::public_key_pem(private_pem).map_err(|e| e.to_string())
}

/// The global's KDS: its server task and the handle that reports on zones.
pub struct GlobalKdsRunning {
    pub kds: GlobalKds,
    pub addr: SocketAddr,
}

/// Binds the KDS port and serves until `shutdown`; returns the server future to spawn.
pub async fn start_global(
    config: &Config,
    store: Arc<dyn ResourceStore>,
    registry: &mut Registry,
    instance_id: &str,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<
    (
        GlobalKdsRunning,
        impl std::future::Future<Output = Result<(), RunError>> + Send + 'static,
    ),
    RunError,
> {
    let kds_config = &config.multizone.global.kds;
    let tls = if kds_config.tls_enabled {
        Some(Arc::new(server_tls(config)?))
    } else {
        tracing::warn!(
            "KDS TLS is disabled (multizone.global.kds.tlsEnabled=false): zones connect in plaintext"
        );
        None
    };
    let auth: Arc<dyn ZoneAuthenticator> = match kds_config.auth.kind {
        KdsAuthType::ZoneToken => Arc::new(ZoneTokenAuthenticator::new(store.clone())),
        KdsAuthType::None => {
            tracing::warn!(
                "KDS zone authentication is off (multizone.global.kds.auth.type=none): the client-id header is trusted"
            );
            Arc::new(NoAuthentication)
        }
    };
    let settings = GlobalSettings {
        instance_id: instance_id.to_string(),
        version: VERSION.to_string(),
        max_message_bytes: kds_config.max_msg_size as usize,
        stall_timeout: kds_config.stall_timeout.get(),
        health_interval: kds_config.zone_health_check.poll_interval.get(),
        health_timeout: kds_config.zone_health_check.timeout.get(),
        flush_interval: kds_config.zone_insight_flush_interval.get(),
        public_key: Some(public_key),
    };
    let (kds, background) = GlobalKds::start(store, settings, auth, registry)
        .await
        .map_err(|e| RunError::Setup(format!("KDS: {e}")))?;
    let addr = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), kds_config.grpc_port);
    let listener = bind(addr).await?;
    let addr = listener.local_addr().unwrap_or(addr);
    let router = kds::transport::server_builder()
        .add_service(kds.sync_service())
        .add_service(kds.health_service());
    info!(%addr, tls = tls.is_some(), "KDS server listening");
    let serve = async move {
        let result = kds::transport::serve(router, listener, tls, shutdown).await;
        background.abort();
        result.map_err(|e| RunError::Serve {
            what: "KDS",
            source: std::io::Error::other(kds::transport::error_chain(&e)),
        })
    };
    Ok((GlobalKdsRunning { kds, addr }, serve))
}

/// Binds on all interfaces (IPv6 with IPv4 mapped), falling back to IPv4 only.
async fn bind(addr: SocketAddr) -> Result<TcpListener, RunError> {
    match TcpListener::bind(addr).await {
        Ok(l) => Ok(l),
        Err(_) => {
            let v4 = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), addr.port());
            TcpListener::bind(v4)
                .await
                .map_err(|source| RunError::Listen {
                    what: "KDS",
                    addr: v4,
                    source,
                })
        }
    }
}

/// The configured certificate, or the one generated into the work dir.
fn server_tls(config: &Config) -> Result<rustls::ServerConfig, RunError> {
    let kds_config = &config.multizone.global.kds;
    let cert = kds_config
        .tls_cert_file
        .clone()
        .or_else(|| config.general.tls_cert_file.clone());
    let key = kds_config
        .tls_key_file
        .clone()
        .or_else(|| config.general.tls_key_file.clone());
    let tls_error = |e: tls::TlsError| RunError::Setup(format!("KDS TLS: {e}"));
    match (cert, key) {
        (Some(cert), Some(key)) => {
            let read = |p: &std::path::Path| {
                std::fs::read_to_string(p)
                    .map_err(|e| RunError::Setup(format!("KDS TLS: reading {}: {e}", p.display())))
            };
            tls::server_config(&read(&cert)?, &read(&key)?).map_err(tls_error)
        }
        _ => {
            let hostname = hostname::get()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default();
            let generated = tls::ensure_server_certificate(&config.general.work_dir, &[hostname])
                .map_err(tls_error)?;
            info!(
                ca = %generated.ca_cert_path.display(),
                generated = generated.generated,
                "KDS uses a certificate from the work dir; give zones this CA file as multizone.zone.kds.rootCaFile"
            );
            tls::server_config(&generated.cert_pem, &generated.key_pem).map_err(tls_error)
        }
    }
}

/// Starts a federated zone's KDS client.
pub async fn start_zone(
    config: &Config,
    store: Arc<dyn ResourceStore>,
    registry: &mut Registry,
    instance_id: &str,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Option<(ZoneLink, tokio::task::JoinHandle<()>)>, RunError> {
    let zone_config = &config.multizone.zone;
    let Some(address) = &zone_config.global_address else {
        return Ok(None);
    };
    let tls = if address.tls() {
        let client = tls::client_config(
            zone_config.kds.root_ca_file.as_deref(),
            zone_config.kds.tls_skip_verify,
        )
        .map_err(|e| RunError::Setup(format!("KDS TLS: {e}")))?;
        if zone_config.kds.tls_skip_verify && zone_config.kds.root_ca_file.is_none() {
            tracing::warn!(
                "the global's KDS certificate is not verified (multizone.zone.kds.tlsSkipVerify)"
            );
        }
        Some(Arc::new(client))
    } else {
        None
    };
    let token = config
        .zone_kds_token()
        .map_err(|e| RunError::Setup(e.to_string()))?;
    let settings = ZoneSettings {
        zone: zone_config.name.clone(),
        host: address.host().to_string(),
        port: address.port(),
        tls,
        token,
        token_path: zone_config.kds.auth.token_path.clone(),
        version: VERSION.to_string(),
        instance_id: instance_id.to_string(),
        config_json: config.sanitized().to_string(),
        max_message_bytes: zone_config.kds.max_msg_size as usize,
        stall_timeout: zone_config.kds.stall_timeout.get(),
        base_backoff: config.general.resilient_component_base_backoff.get(),
        max_backoff: config.general.resilient_component_max_backoff.get(),
    };
    info!(global = %address, zone = %zone_config.name, "federated: syncing with the global");
    let started = kds::zone::start(store, settings, registry, shutdown)
        .await
        .map_err(|e| RunError::Setup(format!("KDS: {e}")))?;
    Ok(Some(started))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use store::memory::MemoryStore;

    use super::*;
    use crate::tokens::TokenIssuer;

    async fn token(issuer: &TokenIssuer, zone: &str, scope: &str) -> String {
        issuer
            .issue_zone_token(zone, &[scope.to_string()], Duration::from_secs(3600))
            .await
            .expect("token")
    }

    #[tokio::test]
    async fn the_zone_name_comes_from_the_token() {
        let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
        let issuer = TokenIssuer::new(store.clone());
        let auth = ZoneTokenAuthenticator::new(store);
        let zone_1 = token(&issuer, "zone-1", "cp").await;

        assert_eq!(
            auth.authenticate("zone-1", Some(&zone_1)).await,
            Ok("zone-1".to_string())
        );
        // an impostor presenting another zone's token
        let impostor = auth
            .authenticate("zone-2", Some(&zone_1))
            .await
            .expect_err("impostor");
        assert!(impostor.contains("zone-1"), "{impostor}");
        // no token, a token for proxies, a token for no zone, garbage
        let none = auth.authenticate("zone-1", None).await.expect_err("none");
        assert!(none.contains("kumactl generate zone-token"), "{none}");
        let ingress = token(&issuer, "zone-1", "ingress").await;
        assert!(auth.authenticate("zone-1", Some(&ingress)).await.is_err());
        let anyzone = token(&issuer, "", "cp").await;
        let err = auth
            .authenticate("zone-1", Some(&anyzone))
            .await
            .expect_err("no zone");
        assert!(err.contains("names no zone"), "{err}");
        assert!(
            auth.authenticate("zone-1", Some("not.a.jwt"))
                .await
                .is_err()
        );
    }
}
