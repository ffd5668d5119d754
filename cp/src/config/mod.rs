//! The control plane's one config tree: defaults, then a YAML file (`--config-file`), then
//! `KUMA_*` environment variables, with Kuma's key and variable names so existing
//! deployments carry over.
//!
//! Read first: [`Config::load`] and the settings table in `settings.rs`, which gives every
//! setting its YAML key, its variable, a one-line meaning and how to read and show it. The
//! loader, `/config` ([`Config::sanitized`]), `cp/kuma-cp.defaults.yaml` and
//! `docs/settings.md` are all driven by that table; tests fail when the two files are stale.
//!
//! Tests never touch the process environment: the environment is an [`Env`] value, made by
//! [`Env::from_process`] in binaries and from a list of pairs in tests.

mod env;
mod load;
mod render;
mod settings;
mod validate;
mod value;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};

pub use env::Env;
pub use env::vars;
pub use load::{Loaded, Warning};
pub use render::{defaults_yaml, settings_markdown};
pub use settings::{SETTINGS, Setting};
pub use value::{
    DnsUpstreams, DpProxyAuthType, Environment, GrpcUrl, Interval, KdsAuthType, Mode, Password,
    PgTlsMode, StoreKind,
};

/// A problem with one setting, naming where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// A key in the file that is no setting (`apiServer.http.portt`).
    UnknownKey { key: String },
    /// A key that holds settings was given a single value, or a setting a list or mapping.
    WrongShape { key: String, expected: &'static str },
    /// A value in the file that cannot be read.
    InvalidValue {
        key: String,
        value: String,
        reason: String,
    },
    /// A value in an environment variable that cannot be read.
    InvalidEnv {
        var: String,
        value: String,
        reason: String,
    },
    /// A value that can be read but breaks a rule (found by [`Config::validate`]).
    Rule { key: String, message: String },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownKey { key } => write!(f, "{key}: unknown setting"),
            Self::WrongShape { key, expected } => write!(f, "{key}: expected {expected}"),
            Self::InvalidValue { key, value, reason } => {
                write!(f, "{key}: invalid value {value:?}: {reason}")
            }
            Self::InvalidEnv { var, value, reason } => write!(f, "{var}={value:?}: {reason}"),
            Self::Rule { key, message } => write!(f, "{key}: {message}"),
        }
    }
}

/// Why [`Config::zone_kds_token`] could not read the zone token file.
#[derive(Debug, thiserror::Error)]
pub enum ZoneTokenError {
    #[error("multizone.zone.kds.auth.tokenPath: reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("multizone.zone.kds.auth.tokenPath: {path} holds no token")]
    Empty { path: PathBuf },
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not YAML, or its top level is not a mapping.
    #[error("config file {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    /// Every problem found, each naming its key or variable.
    #[error("invalid configuration: {}", Problems(.0))]
    Invalid(Vec<Problem>),
}

impl Error {
    /// The problems of an [`Error::Invalid`]; empty for the other kinds.
    pub fn problems(&self) -> &[Problem] {
        match self {
            Self::Invalid(problems) => problems,
            _ => &[],
        }
    }
}

struct Problems<'a>(&'a [Problem]);

impl std::fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// The whole configuration of a control plane. Field docs give the YAML key; the settings
/// table gives each variable.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `environment`
    pub environment: Environment,
    /// `mode`
    pub mode: Mode,
    /// `general`
    pub general: General,
    /// `store`
    pub store: Store,
    /// `apiServer`
    pub api_server: ApiServer,
    /// `diagnostics`
    pub diagnostics: Diagnostics,
    /// `multizone`
    pub multizone: Multizone,
    /// `xdsServer`
    pub xds_server: XdsServer,
    /// `bootstrapServer`
    pub bootstrap_server: BootstrapServer,
    /// `dpServer`
    pub dp_server: DpServer,
    /// `dnsServer`
    pub dns_server: DnsServer,
    /// `monitoringAssignmentServer`
    pub monitoring_assignment_server: MonitoringAssignmentServer,
    /// `adminServer`
    pub admin_server: AdminServer,
    /// `defaults`
    pub defaults: Defaults,
}

#[derive(Clone, Debug, PartialEq)]
pub struct General {
    /// `general.workDir`: where generated files (certificates, the SQLite database) go.
    /// `~` is expanded from `HOME` when the config is loaded.
    pub work_dir: PathBuf,
    /// `general.tlsCertFile`: certificate used by every TLS server that has none of its own.
    pub tls_cert_file: Option<PathBuf>,
    /// `general.tlsKeyFile`
    pub tls_key_file: Option<PathBuf>,
    /// `general.resilientComponentBaseBackoff`: the first wait before a failed component
    /// (the zone's KDS client) restarts; the wait doubles, with jitter, on each failure.
    pub resilient_component_base_backoff: Interval,
    /// `general.resilientComponentMaxBackoff`: the longest such wait. Not shorter than the base.
    pub resilient_component_max_backoff: Interval,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Store {
    /// `store.type`
    pub kind: StoreKind,
    /// `store.sqlite`
    pub sqlite: Sqlite,
    /// `store.postgres`
    pub postgres: Postgres,
    /// `store.cache`
    pub cache: StoreCache,
    /// `store.unsafeDelete`: delete a Mesh without first deleting what is in it.
    pub unsafe_delete: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Sqlite {
    /// `store.sqlite.path`; unset means `<workDir>/kuma.db`, filled in by [`Config::load`].
    pub path: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Postgres {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Password,
    /// `store.postgres.dbName`
    pub db_name: String,
    /// `store.postgres.connectionTimeout`, in whole seconds as in Kuma; 0 waits forever.
    pub connection_timeout: u32,
    pub max_open_connections: u32,
    pub max_idle_connections: u32,
    pub min_open_connections: u32,
    /// 0 keeps connections forever.
    pub max_connection_lifetime: Duration,
    /// 0 keeps idle connections forever.
    pub max_connection_idle_time: Duration,
    pub tls: PostgresTls,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PostgresTls {
    pub mode: PgTlsMode,
    pub cert_path: Option<PathBuf>,
    pub key_path: Option<PathBuf>,
    /// `store.postgres.tls.caPath` (variable `KUMA_STORE_POSTGRES_TLS_ROOT_CERT_PATH`).
    pub ca_path: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StoreCache {
    pub enabled: bool,
    pub expiration_time: Interval,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ApiServer {
    pub http: HttpListener,
    pub https: HttpsListener,
    /// `apiServer.readOnly`: only GET requests are served.
    pub read_only: bool,
    pub authn: ApiAuthn,
    pub gui: Gui,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ApiAuthn {
    /// `apiServer.authn.localhostIsAdmin`: requests from loopback are the admin user.
    pub localhost_is_admin: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct HttpListener {
    pub enabled: bool,
    pub interface: IpAddr,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq)]
pub struct HttpsListener {
    pub enabled: bool,
    pub interface: IpAddr,
    pub port: u16,
    /// Unset means `general.tlsCertFile`.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// CA that signs the client certificates accepted.
    pub tls_ca_file: Option<PathBuf>,
    pub require_client_cert: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Gui {
    pub enabled: bool,
    pub base_path: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostics {
    pub server_port: u16,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Multizone {
    pub global: MultizoneGlobal,
    pub zone: MultizoneZone,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MultizoneGlobal {
    pub kds: GlobalKds,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GlobalKds {
    pub grpc_port: u16,
    pub refresh_interval: Interval,
    pub zone_insight_flush_interval: Interval,
    pub tls_enabled: bool,
    /// Unset means `general.tlsCertFile`.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Largest KDS message, in bytes.
    pub max_msg_size: u32,
    /// `multizone.global.kds.stallTimeout`: a stream to a zone that has changes the zone has
    /// not acknowledged for this long is torn down (and counted) so the zone reconnects.
    pub stall_timeout: Interval,
    /// `multizone.global.kds.auth`
    pub auth: GlobalKdsAuth,
    /// `multizone.global.kds.zoneHealthCheck`
    pub zone_health_check: ZoneHealthCheck,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GlobalKdsAuth {
    /// `multizone.global.kds.auth.type`: how the global knows which zone dialled it.
    pub kind: KdsAuthType,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ZoneHealthCheck {
    /// `multizone.global.kds.zoneHealthCheck.pollInterval`: how often the global asks zones
    /// to ping it (the interval its HealthCheck replies carry).
    pub poll_interval: Interval,
    /// `multizone.global.kds.zoneHealthCheck.timeout`: a zone whose pings stop for this long
    /// has its streams closed and is marked offline. Longer than `poll_interval`.
    pub timeout: Interval,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MultizoneZone {
    /// The zone's name: an RFC 1035 DNS label.
    pub name: String,
    /// The global's KDS address; a zone with one is federated.
    pub global_address: Option<GrpcUrl>,
    pub kds: ZoneKds,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ZoneKds {
    pub refresh_interval: Interval,
    pub root_ca_file: Option<PathBuf>,
    pub tls_skip_verify: bool,
    pub max_msg_size: u32,
    /// `multizone.zone.kds.stallTimeout`: a stream to the global that has changes the global
    /// has not acknowledged for this long is torn down (and counted) and dialled again.
    pub stall_timeout: Interval,
    /// `multizone.zone.kds.auth`
    pub auth: ZoneKdsAuth,
}

/// The zone token a federated zone presents to the global: from a file or inline, not both.
/// Read it with [`Config::zone_kds_token`].
#[derive(Clone, Debug, PartialEq)]
pub struct ZoneKdsAuth {
    /// `multizone.zone.kds.auth.tokenPath`: a file holding the token.
    pub token_path: Option<PathBuf>,
    /// `multizone.zone.kds.auth.tokenInline`: the token itself (a secret: masked in `/config`
    /// and in `Debug`).
    pub token_inline: Option<Password>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct XdsServer {
    pub grpc_port: u16,
    pub dataplane_configuration_refresh_interval: Interval,
    pub dataplane_status_flush_interval: Interval,
    /// 0 deregisters a proxy as soon as its stream ends.
    pub dataplane_deregistration_delay: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BootstrapServer {
    pub port: u16,
    /// `bootstrapServer.params`: what the bootstrap tells proxies.
    pub params: BootstrapServerParams,
}

/// `bootstrapServer.params`.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct BootstrapServerParams {
    /// `xdsHost`: the host proxies dial for xDS; empty: the host kuma-dp reached the
    /// bootstrap server on.
    pub xds_host: String,
    /// `xdsPort`: the port proxies dial for xDS; unset: `xdsServer.grpcPort`.
    pub xds_port: Option<u16>,
}

/// `dpServer`: how the zone's dataplane server treats proxies.
#[derive(Clone, Debug, PartialEq)]
pub struct DpServer {
    /// `dpServer.authn.dpProxy.type`
    pub dp_proxy_auth: DpProxyAuthType,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DnsServer {
    pub port: u16,
    pub domain: String,
    /// `dnsServer.CIDR`: where service VIPs are allocated.
    pub cidr: IpNet,
    pub service_vip_enabled: bool,
    pub service_vip_port: u16,
    /// `dnsServer.upstreams`: resolvers for names outside the domain (none: REFUSED).
    pub upstreams: DnsUpstreams,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MonitoringAssignmentServer {
    pub port: u16,
    pub assignment_refresh_interval: Interval,
    pub default_fetch_timeout: Interval,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AdminServer {
    pub local: AdminLocal,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AdminLocal {
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Defaults {
    /// Do not create the `default` Mesh on first start.
    pub skip_mesh_creation: bool,
}

/// Kuma's KDS message limit: 10 MiB.
const DEFAULT_MAX_MSG_SIZE: u32 = 10 * 1024 * 1024;

impl Default for Config {
    /// Kuma's defaults, except `store.type` (`sqlite` here, `memory` in Kuma),
    /// `apiServer.https.enabled` (off: its port 5682 is also `bootstrapServer.port`), the
    /// resilient-component backoff (1s to 30s; Kuma: 5s to 1m), the zone health check (on,
    /// 1s/6s; off in Kuma) and KDS zone authentication (`zoneToken`; Kuma OSS has none).
    /// `stallTimeout` is a kuma-rs setting.
    fn default() -> Self {
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        Self {
            environment: Environment::Universal,
            mode: Mode::Zone,
            general: General {
                work_dir: PathBuf::from("~/.kuma"),
                tls_cert_file: None,
                tls_key_file: None,
                resilient_component_base_backoff: Interval::from_secs(1),
                resilient_component_max_backoff: Interval::from_secs(30),
            },
            store: Store {
                kind: StoreKind::Sqlite,
                sqlite: Sqlite { path: None },
                postgres: Postgres {
                    host: "127.0.0.1".to_owned(),
                    port: 15432,
                    user: "kuma".to_owned(),
                    password: Password::new("kuma"),
                    db_name: "kuma".to_owned(),
                    connection_timeout: 5,
                    max_open_connections: 50,
                    max_idle_connections: 50,
                    min_open_connections: 0,
                    max_connection_lifetime: Duration::from_secs(60 * 60),
                    max_connection_idle_time: Duration::from_secs(30 * 60),
                    tls: PostgresTls {
                        mode: PgTlsMode::Disable,
                        cert_path: None,
                        key_path: None,
                        ca_path: None,
                    },
                },
                cache: StoreCache {
                    enabled: true,
                    expiration_time: Interval::from_secs(1),
                },
                unsafe_delete: false,
            },
            api_server: ApiServer {
                http: HttpListener {
                    enabled: true,
                    interface: any,
                    port: 5681,
                },
                https: HttpsListener {
                    enabled: false,
                    interface: any,
                    port: 5682,
                    tls_cert_file: None,
                    tls_key_file: None,
                    tls_ca_file: None,
                    require_client_cert: false,
                },
                read_only: false,
                authn: ApiAuthn {
                    localhost_is_admin: true,
                },
                gui: Gui {
                    enabled: true,
                    base_path: "/gui".to_owned(),
                },
            },
            diagnostics: Diagnostics { server_port: 5680 },
            multizone: Multizone {
                global: MultizoneGlobal {
                    kds: GlobalKds {
                        grpc_port: 5685,
                        refresh_interval: Interval::from_secs(1),
                        zone_insight_flush_interval: Interval::from_secs(10),
                        tls_enabled: true,
                        tls_cert_file: None,
                        tls_key_file: None,
                        max_msg_size: DEFAULT_MAX_MSG_SIZE,
                        stall_timeout: Interval::from_secs(20),
                        auth: GlobalKdsAuth {
                            kind: KdsAuthType::ZoneToken,
                        },
                        zone_health_check: ZoneHealthCheck {
                            poll_interval: Interval::from_secs(1),
                            timeout: Interval::from_secs(6),
                        },
                    },
                },
                zone: MultizoneZone {
                    name: "default".to_owned(),
                    global_address: None,
                    kds: ZoneKds {
                        refresh_interval: Interval::from_secs(1),
                        root_ca_file: None,
                        tls_skip_verify: false,
                        max_msg_size: DEFAULT_MAX_MSG_SIZE,
                        stall_timeout: Interval::from_secs(20),
                        auth: ZoneKdsAuth {
                            token_path: None,
                            token_inline: None,
                        },
                    },
                },
            },
            xds_server: XdsServer {
                grpc_port: 5678,
                dataplane_configuration_refresh_interval: Interval::from_secs(1),
                dataplane_status_flush_interval: Interval::from_secs(10),
                dataplane_deregistration_delay: Duration::from_secs(10),
            },
            bootstrap_server: BootstrapServer {
                port: 5682,
                params: BootstrapServerParams::default(),
            },
            dp_server: DpServer {
                dp_proxy_auth: DpProxyAuthType::DpToken,
            },
            dns_server: DnsServer {
                port: 5653,
                domain: "mesh".to_owned(),
                cidr: IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(240, 0, 0, 0), 4)),
                service_vip_enabled: true,
                service_vip_port: 80,
                upstreams: DnsUpstreams::default(),
            },
            monitoring_assignment_server: MonitoringAssignmentServer {
                port: 5676,
                assignment_refresh_interval: Interval::from_secs(1),
                default_fetch_timeout: Interval::from_secs(30),
            },
            admin_server: AdminServer {
                local: AdminLocal { port: 5679 },
            },
            defaults: Defaults {
                skip_mesh_creation: false,
            },
        }
    }
}

impl Config {
    /// Loads the configuration the way `kuma-cp run` does: defaults, then `file` (if any),
    /// then the `KUMA_*` variables of `env`; then `~` in paths is expanded from `HOME` (also
    /// read from `env`), `store.sqlite.path` is derived from `general.workDir` when unset, and
    /// the result is [validated](Config::validate).
    ///
    /// Every problem found is returned, each naming its key or variable. Variables that start
    /// with `KUMA_` but name no setting are returned as warnings, not errors: other Kuma tools
    /// share the prefix.
    pub fn load(file: Option<&Path>, env: &Env) -> Result<Loaded, Error> {
        load::load(file, env)
    }

    /// Reads a YAML document strictly over the defaults: no environment, no `~` expansion, no
    /// validation.
    pub fn from_yaml_str(yaml: &str) -> Result<Config, Error> {
        load::from_yaml_str(yaml)
    }

    /// Checks the rules that span settings or that a type cannot hold: ports not 0, the
    /// zone name an RFC 1035 label (required on a zone and when `globalAddress` is set), TLS
    /// file pairs, listeners sharing a port, timeouts longer than their periods, backoff base
    /// not above its cap, at most one zone token source. Returns every
    /// problem, each naming its key. (Zero intervals and bad URLs cannot reach a `Config`
    /// read by [`Config::load`]: [`Interval`] and [`GrpcUrl`] refuse them when parsed.)
    pub fn validate(&self) -> Result<(), Error> {
        let problems = validate::validate(self);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(problems))
        }
    }

    /// The zone token this zone presents to the global: `multizone.zone.kds.auth.tokenInline`,
    /// or the content of `multizone.zone.kds.auth.tokenPath`; surrounding whitespace (a
    /// trailing newline) is trimmed. `None` when neither is set ([`Config::validate`] refuses
    /// both). Read the file anew on each call, so a rotated token is picked up on reconnect.
    pub fn zone_kds_token(&self) -> Result<Option<String>, ZoneTokenError> {
        let auth = &self.multizone.zone.kds.auth;
        if let Some(inline) = &auth.token_inline {
            let token = inline.expose().trim();
            if !token.is_empty() {
                return Ok(Some(token.to_owned()));
            }
        }
        let Some(path) = &auth.token_path else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|source| ZoneTokenError::Read {
            path: path.clone(),
            source,
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(ZoneTokenError::Empty { path: path.clone() });
        }
        Ok(Some(token.to_owned()))
    }

    /// The configuration as JSON with Kuma's camelCase keys, secrets (passwords, tokens, key
    /// data) replaced by `"*****"`: what `/config` serves and what a zone reports to the
    /// global.
    pub fn sanitized(&self) -> serde_json::Value {
        render::sanitized(self)
    }
}
