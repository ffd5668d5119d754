//! The settings table: every setting's YAML key, variable, meaning, and how to read and show
//! it. The loader, `/config`, the defaults file and `docs/settings.md` are all driven by it.
//!
//! To add a setting: a field in `Config` (and its default), its variable in `env.rs`, a row
//! here, then `UPDATE_GENERATED=1 cargo test -p cp` to rewrite the defaults file and the docs.

use serde_json::Value as Json;

use super::Config;
use super::env::vars;
use super::value::Field;

/// One setting.
#[derive(Clone, Copy)]
pub struct Setting {
    /// Kuma's YAML key, dotted (`apiServer.http.port`).
    pub key: &'static str,
    /// Kuma's environment variable (`KUMA_API_SERVER_HTTP_PORT`).
    pub env: &'static str,
    /// Other spellings of the variable that Kuma also reads. Where Kuma's documentation and
    /// its code disagree, `env` is the documented one and the code's is an alias.
    pub aliases: &'static [&'static str],
    /// What the setting means, in one line.
    pub help: &'static str,
    /// A valid value other than the default (tests set every setting to it).
    pub example: &'static str,
    pub(crate) get: fn(&Config) -> Json,
    pub(crate) set: fn(&mut Config, &str) -> Result<(), String>,
}

impl Setting {
    /// Whether `/config` must hide the value: passwords, tokens and key material (but not
    /// the path of a file holding one: `tokenPath`).
    pub fn is_secret(&self) -> bool {
        let leaf = self
            .key
            .rsplit('.')
            .next()
            .unwrap_or(self.key)
            .to_ascii_lowercase();
        let names_a_file = leaf.ends_with("path") || leaf.ends_with("file");
        leaf.contains("password")
            || (leaf.contains("token") && !names_a_file)
            || leaf.ends_with("keydata")
    }

    /// The value of this setting in `config`, as `/config` shows it (unmasked).
    pub fn value(&self, config: &Config) -> Json {
        (self.get)(config)
    }

    /// Every variable name that sets this setting, `env` first.
    pub fn env_names(&self) -> impl Iterator<Item = &'static str> {
        std::iter::once(self.env).chain(self.aliases.iter().copied())
    }
}

impl std::fmt::Debug for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setting")
            .field("key", &self.key)
            .field("env", &self.env)
            .finish()
    }
}

/// A group of settings in the docs: the keys under `prefix` ("" for top-level keys).
pub(crate) struct Section {
    pub prefix: &'static str,
    pub title: &'static str,
    pub about: &'static str,
}

impl Section {
    pub fn contains(&self, key: &str) -> bool {
        if self.prefix.is_empty() {
            !key.contains('.')
        } else {
            key.strip_prefix(self.prefix)
                .is_some_and(|rest| rest.starts_with('.'))
        }
    }
}

pub(crate) const SECTIONS: &[Section] = &[
    Section {
        prefix: "",
        title: "Control plane",
        about: "What this control plane is.",
    },
    Section {
        prefix: "general",
        title: "General",
        about: "Settings every server of the control plane shares.",
    },
    Section {
        prefix: "store",
        title: "Store",
        about: "Where resources are kept. One store per control plane; replicas of one control plane share a PostgreSQL store.",
    },
    Section {
        prefix: "apiServer",
        title: "API server",
        about: "The REST API used by kumactl and the GUI.",
    },
    Section {
        prefix: "diagnostics",
        title: "Diagnostics",
        about: "Health (`/healthy`), readiness (`/ready`), metrics (`/metrics`) and `/config`.",
    },
    Section {
        prefix: "multizone.global",
        title: "Multizone: global",
        about: "Used when `mode` is `global`: the KDS server that zones connect to.",
    },
    Section {
        prefix: "multizone.zone",
        title: "Multizone: zone",
        about: "Used when `mode` is `zone`: this zone's name and how it connects to the global.",
    },
    Section {
        prefix: "xdsServer",
        title: "xDS server",
        about: "The ADS server that the zone's Envoy proxies connect to.",
    },
    Section {
        prefix: "bootstrapServer",
        title: "Bootstrap server",
        about: "Serves the Envoy bootstrap config to `kuma-dp`.",
    },
    Section {
        prefix: "dpServer",
        title: "Dataplane server",
        about: "How the zone authenticates its proxies on `/bootstrap` and on the ADS stream.",
    },
    Section {
        prefix: "dnsServer",
        title: "DNS server",
        about: "Names `<service>.mesh` and the virtual IPs behind them.",
    },
    Section {
        prefix: "monitoringAssignmentServer",
        title: "Monitoring assignment server (MADS)",
        about: "Tells Prometheus which proxies to scrape.",
    },
    Section {
        prefix: "adminServer",
        title: "Admin server",
        about: "Administrative endpoints reachable only from localhost.",
    },
    Section {
        prefix: "defaults",
        title: "Defaults",
        about: "What the control plane creates on first start.",
    },
];

/// `setting!(key, ENV | ALIAS.., field.path, example, help)`
macro_rules! setting {
    ($key:literal, $env:ident $(| $alias:ident)*, $($field:ident).+, $example:literal, $help:literal $(,)?) => {
        Setting {
            key: $key,
            env: vars::$env,
            aliases: &[$(vars::$alias),*],
            help: $help,
            example: $example,
            get: |config| Field::to_json(&config.$($field).+),
            set: |config, text| {
                config.$($field).+ = Field::parse(text)?;
                Ok(())
            },
        }
    };
}

/// Every setting, in the order of the defaults file. Keys that share a parent are adjacent.
pub static SETTINGS: &[Setting] = &[
    setting!(
        "environment",
        KUMA_ENVIRONMENT,
        environment,
        "universal",
        "Where the control plane runs; only `universal` is supported"
    ),
    setting!(
        "mode",
        KUMA_MODE,
        mode,
        "global",
        "Which control plane this is: `global` or `zone` (`standalone` is read as `zone`)"
    ),
    // general
    setting!(
        "general.workDir",
        KUMA_GENERAL_WORK_DIR,
        general.work_dir,
        "/var/lib/kuma",
        "Directory for generated files (certificates, the SQLite database); `~` is the user's home"
    ),
    setting!(
        "general.tlsCertFile",
        KUMA_GENERAL_TLS_CERT_FILE,
        general.tls_cert_file,
        "/etc/kuma/tls.crt",
        "PEM certificate for every TLS server that has none of its own; generated into workDir if unset"
    ),
    setting!(
        "general.tlsKeyFile",
        KUMA_GENERAL_TLS_KEY_FILE,
        general.tls_key_file,
        "/etc/kuma/tls.key",
        "PEM key of general.tlsCertFile"
    ),
    setting!(
        "general.resilientComponentBaseBackoff",
        KUMA_GENERAL_RESILIENT_COMPONENT_BASE_BACKOFF,
        general.resilient_component_base_backoff,
        "5s",
        "First wait before a failed component (a zone's connection to the global) restarts; each further failure doubles it, with jitter"
    ),
    setting!(
        "general.resilientComponentMaxBackoff",
        KUMA_GENERAL_RESILIENT_COMPONENT_MAX_BACKOFF,
        general.resilient_component_max_backoff,
        "1m",
        "Longest wait before a failed component restarts; not shorter than resilientComponentBaseBackoff"
    ),
    // store
    setting!(
        "store.type",
        KUMA_STORE_TYPE,
        store.kind,
        "postgres",
        "Store backend: `sqlite` (embedded file), `postgres` or `memory` (lost on restart)"
    ),
    setting!(
        "store.sqlite.path",
        KUMA_STORE_SQLITE_PATH,
        store.sqlite.path,
        "/var/lib/kuma/store.db",
        "SQLite database file; unset means `<workDir>/kuma.db`"
    ),
    setting!(
        "store.postgres.host",
        KUMA_STORE_POSTGRES_HOST,
        store.postgres.host,
        "db.internal",
        "PostgreSQL host"
    ),
    setting!(
        "store.postgres.port",
        KUMA_STORE_POSTGRES_PORT,
        store.postgres.port,
        "5432",
        "PostgreSQL port"
    ),
    setting!(
        "store.postgres.user",
        KUMA_STORE_POSTGRES_USER,
        store.postgres.user,
        "kuma-cp",
        "PostgreSQL user"
    ),
    setting!(
        "store.postgres.password",
        KUMA_STORE_POSTGRES_PASSWORD,
        store.postgres.password,
        "s3cret",
        "PostgreSQL password (masked in `/config`)"
    ),
    setting!(
        "store.postgres.dbName",
        KUMA_STORE_POSTGRES_DB_NAME,
        store.postgres.db_name,
        "kuma_zone",
        "PostgreSQL database name"
    ),
    setting!(
        "store.postgres.connectionTimeout",
        KUMA_STORE_POSTGRES_CONNECTION_TIMEOUT,
        store.postgres.connection_timeout,
        "10",
        "Seconds to wait for a connection; 0 waits forever"
    ),
    setting!(
        "store.postgres.maxOpenConnections",
        KUMA_STORE_POSTGRES_MAX_OPEN_CONNECTIONS,
        store.postgres.max_open_connections,
        "20",
        "Most connections open at once; 0 means no limit"
    ),
    setting!(
        "store.postgres.maxIdleConnections",
        KUMA_STORE_POSTGRES_MAX_IDLE_CONNECTIONS,
        store.postgres.max_idle_connections,
        "10",
        "Most idle connections kept in the pool"
    ),
    setting!(
        "store.postgres.minOpenConnections",
        KUMA_STORE_POSTGRES_MIN_OPEN_CONNECTIONS,
        store.postgres.min_open_connections,
        "2",
        "Connections kept open even when idle"
    ),
    setting!(
        "store.postgres.maxConnectionLifetime",
        KUMA_STORE_POSTGRES_MAX_CONNECTION_LIFETIME,
        store.postgres.max_connection_lifetime,
        "2h",
        "A connection older than this is closed; 0 keeps it"
    ),
    setting!(
        "store.postgres.maxConnectionIdleTime",
        KUMA_STORE_POSTGRES_MAX_CONNECTION_IDLE_TIME,
        store.postgres.max_connection_idle_time,
        "10m",
        "A connection idle for longer is closed; 0 keeps it"
    ),
    setting!(
        "store.postgres.tls.mode",
        KUMA_STORE_POSTGRES_TLS_MODE,
        store.postgres.tls.mode,
        "verifyFull",
        "TLS to PostgreSQL: `disable`, `verifyNone`, `verifyCa` or `verifyFull`"
    ),
    setting!(
        "store.postgres.tls.certPath",
        KUMA_STORE_POSTGRES_TLS_CERT_PATH,
        store.postgres.tls.cert_path,
        "/etc/kuma/pg.crt",
        "Client certificate, for servers that authenticate clients by certificate"
    ),
    setting!(
        "store.postgres.tls.keyPath",
        KUMA_STORE_POSTGRES_TLS_KEY_PATH,
        store.postgres.tls.key_path,
        "/etc/kuma/pg.key",
        "Key of the client certificate"
    ),
    setting!(
        "store.postgres.tls.caPath",
        KUMA_STORE_POSTGRES_TLS_ROOT_CERT_PATH | KUMA_STORE_POSTGRES_TLS_CA_PATH,
        store.postgres.tls.ca_path,
        "/etc/kuma/pg-ca.crt",
        "CA that signs the server's certificate; required by `verifyCa` and `verifyFull`"
    ),
    setting!(
        "store.cache.enabled",
        KUMA_STORE_CACHE_ENABLED,
        store.cache.enabled,
        "false",
        "Cache reads of the store in memory"
    ),
    setting!(
        "store.cache.expirationTime",
        KUMA_STORE_CACHE_EXPIRATION_TIME,
        store.cache.expiration_time,
        "500ms",
        "How long a cached read is served"
    ),
    setting!(
        "store.unsafeDelete",
        KUMA_STORE_UNSAFE_DELETE,
        store.unsafe_delete,
        "true",
        "Allow deleting a Mesh that still has dataplanes in it"
    ),
    // apiServer
    setting!(
        "apiServer.http.enabled",
        KUMA_API_SERVER_HTTP_ENABLED,
        api_server.http.enabled,
        "false",
        "Serve the API over plain HTTP"
    ),
    setting!(
        "apiServer.http.interface",
        KUMA_API_SERVER_HTTP_INTERFACE,
        api_server.http.interface,
        "127.0.0.1",
        "Address the HTTP API listens on"
    ),
    setting!(
        "apiServer.http.port",
        KUMA_API_SERVER_HTTP_PORT,
        api_server.http.port,
        "15681",
        "Port of the HTTP API"
    ),
    setting!(
        "apiServer.https.enabled",
        KUMA_API_SERVER_HTTPS_ENABLED,
        api_server.https.enabled,
        "true",
        "Serve the API over HTTPS (off by default: its port is also bootstrapServer.port)"
    ),
    setting!(
        "apiServer.https.interface",
        KUMA_API_SERVER_HTTPS_INTERFACE,
        api_server.https.interface,
        "127.0.0.1",
        "Address the HTTPS API listens on"
    ),
    setting!(
        "apiServer.https.port",
        KUMA_API_SERVER_HTTPS_PORT,
        api_server.https.port,
        "15682",
        "Port of the HTTPS API"
    ),
    setting!(
        "apiServer.https.tlsCertFile",
        KUMA_API_SERVER_HTTPS_TLS_CERT_FILE,
        api_server.https.tls_cert_file,
        "/etc/kuma/api.crt",
        "PEM certificate of the HTTPS API; unset means general.tlsCertFile"
    ),
    setting!(
        "apiServer.https.tlsKeyFile",
        KUMA_API_SERVER_HTTPS_TLS_KEY_FILE,
        api_server.https.tls_key_file,
        "/etc/kuma/api.key",
        "PEM key of apiServer.https.tlsCertFile"
    ),
    setting!(
        "apiServer.https.tlsCaFile",
        KUMA_API_SERVER_HTTPS_CLIENT_CERTS_CA_FILE | KUMA_API_SERVER_HTTPS_TLS_CA_FILE,
        api_server.https.tls_ca_file,
        "/etc/kuma/clients-ca.crt",
        "CA that signs accepted client certificates"
    ),
    setting!(
        "apiServer.https.requireClientCert",
        KUMA_API_SERVER_HTTPS_REQUIRE_CLIENT_CERT,
        api_server.https.require_client_cert,
        "true",
        "Refuse HTTPS clients without a certificate signed by tlsCaFile"
    ),
    setting!(
        "apiServer.readOnly",
        KUMA_API_SERVER_READ_ONLY,
        api_server.read_only,
        "true",
        "Serve only GET requests"
    ),
    setting!(
        "apiServer.authn.localhostIsAdmin",
        KUMA_API_SERVER_AUTHN_LOCALHOST_IS_ADMIN,
        api_server.authn.localhost_is_admin,
        "false",
        "Treat requests from localhost as the admin user (set false to require tokens everywhere)"
    ),
    setting!(
        "apiServer.gui.enabled",
        KUMA_API_SERVER_GUI_ENABLED,
        api_server.gui.enabled,
        "false",
        "Serve the GUI"
    ),
    setting!(
        "apiServer.gui.basePath",
        KUMA_API_SERVER_GUI_BASE_PATH,
        api_server.gui.base_path,
        "/ui",
        "Path the GUI is served under"
    ),
    // diagnostics
    setting!(
        "diagnostics.serverPort",
        KUMA_DIAGNOSTICS_SERVER_PORT,
        diagnostics.server_port,
        "15680",
        "Port of the diagnostics server"
    ),
    // multizone.global
    setting!(
        "multizone.global.kds.grpcPort",
        KUMA_MULTIZONE_GLOBAL_KDS_GRPC_PORT,
        multizone.global.kds.grpc_port,
        "15685",
        "Port of the KDS server zones connect to"
    ),
    setting!(
        "multizone.global.kds.refreshInterval",
        KUMA_MULTIZONE_GLOBAL_KDS_REFRESH_INTERVAL,
        multizone.global.kds.refresh_interval,
        "2s",
        "Accepted for compatibility; unused: kuma-rs sends each change as it commits (change feed)"
    ),
    setting!(
        "multizone.global.kds.zoneInsightFlushInterval",
        KUMA_MULTIZONE_GLOBAL_KDS_ZONE_INSIGHT_FLUSH_INTERVAL,
        multizone.global.kds.zone_insight_flush_interval,
        "30s",
        "How often zone connection statistics are written to the store"
    ),
    setting!(
        "multizone.global.kds.tlsEnabled",
        KUMA_MULTIZONE_GLOBAL_KDS_TLS_ENABLED,
        multizone.global.kds.tls_enabled,
        "false",
        "Serve KDS over TLS"
    ),
    setting!(
        "multizone.global.kds.tlsCertFile",
        KUMA_MULTIZONE_GLOBAL_KDS_TLS_CERT_FILE,
        multizone.global.kds.tls_cert_file,
        "/etc/kuma/kds.crt",
        "PEM certificate of the KDS server; unset means general.tlsCertFile"
    ),
    setting!(
        "multizone.global.kds.tlsKeyFile",
        KUMA_MULTIZONE_GLOBAL_KDS_TLS_KEY_FILE,
        multizone.global.kds.tls_key_file,
        "/etc/kuma/kds.key",
        "PEM key of multizone.global.kds.tlsCertFile"
    ),
    setting!(
        "multizone.global.kds.maxMsgSize",
        KUMA_MULTIZONE_GLOBAL_KDS_MAX_MSG_SIZE,
        multizone.global.kds.max_msg_size,
        "20971520",
        "Largest KDS message in bytes"
    ),
    setting!(
        "multizone.global.kds.stallTimeout",
        KUMA_MULTIZONE_GLOBAL_KDS_STALL_TIMEOUT,
        multizone.global.kds.stall_timeout,
        "1m",
        "A stream to a zone that has changes the zone has not acknowledged for this long is torn down and re-established (and counted)"
    ),
    setting!(
        "multizone.global.kds.auth.type",
        KUMA_MULTIZONE_GLOBAL_KDS_AUTH_TYPE,
        multizone.global.kds.auth.kind,
        "none",
        "How zones are authenticated: `zoneToken` accepts a zone only with a zone token of scope `cp` this global issued (`kumactl generate zone-token --zone NAME --scope cp`); `none` trusts the zone's client-id header (Kuma OSS behaviour)"
    ),
    setting!(
        "multizone.global.kds.zoneHealthCheck.pollInterval",
        KUMA_MULTIZONE_GLOBAL_KDS_ZONE_HEALTH_CHECK_POLL_INTERVAL,
        multizone.global.kds.zone_health_check.poll_interval,
        "2s",
        "How often the global asks zones to ping it"
    ),
    setting!(
        "multizone.global.kds.zoneHealthCheck.timeout",
        KUMA_MULTIZONE_GLOBAL_KDS_ZONE_HEALTH_CHECK_TIMEOUT,
        multizone.global.kds.zone_health_check.timeout,
        "10s",
        "A zone whose pings stop for this long has its streams closed and is marked offline; longer than pollInterval"
    ),
    // multizone.zone
    setting!(
        "multizone.zone.name",
        KUMA_MULTIZONE_ZONE_NAME,
        multizone.zone.name,
        "zone-1",
        "Name of this zone: a DNS label (lowercase letters, digits, `-`; at most 63)"
    ),
    setting!(
        "multizone.zone.globalAddress",
        KUMA_MULTIZONE_ZONE_GLOBAL_ADDRESS,
        multizone.zone.global_address,
        "grpcs://global.example:5685",
        "KDS address of the global, `grpcs://host:port` or `grpc://host:port`; unset means a non-federated zone"
    ),
    setting!(
        "multizone.zone.kds.refreshInterval",
        KUMA_MULTIZONE_ZONE_KDS_REFRESH_INTERVAL,
        multizone.zone.kds.refresh_interval,
        "5s",
        "Accepted for compatibility; unused: kuma-rs sends each change as it commits (change feed)"
    ),
    setting!(
        "multizone.zone.kds.rootCaFile",
        KUMA_MULTIZONE_ZONE_KDS_ROOT_CA_FILE,
        multizone.zone.kds.root_ca_file,
        "/etc/kuma/global-ca.crt",
        "PEM CA that signs the global's KDS certificate (only these are trusted); required for grpcs unless tlsSkipVerify"
    ),
    setting!(
        "multizone.zone.kds.tlsSkipVerify",
        KUMA_MULTIZONE_ZONE_KDS_TLS_SKIP_VERIFY,
        multizone.zone.kds.tls_skip_verify,
        "true",
        "Do not verify the global's certificate (for tests only)"
    ),
    setting!(
        "multizone.zone.kds.maxMsgSize",
        KUMA_MULTIZONE_ZONE_KDS_MAX_MSG_SIZE,
        multizone.zone.kds.max_msg_size,
        "4194304",
        "Largest KDS message in bytes"
    ),
    setting!(
        "multizone.zone.kds.stallTimeout",
        KUMA_MULTIZONE_ZONE_KDS_STALL_TIMEOUT,
        multizone.zone.kds.stall_timeout,
        "45s",
        "A stream to the global that has changes the global has not acknowledged for this long is torn down and re-established (and counted)"
    ),
    setting!(
        "multizone.zone.kds.auth.tokenPath",
        KUMA_MULTIZONE_ZONE_KDS_AUTH_TOKEN_PATH,
        multizone.zone.kds.auth.token_path,
        "/etc/kuma/zone-token",
        "File holding the zone token (scope `cp`) presented to the global; not together with tokenInline"
    ),
    setting!(
        "multizone.zone.kds.auth.tokenInline",
        KUMA_MULTIZONE_ZONE_KDS_AUTH_TOKEN_INLINE,
        multizone.zone.kds.auth.token_inline,
        "eyJhbGciOiJSUzI1NiJ9.e30.c2ln",
        "The zone token itself (masked in `/config`); not together with tokenPath"
    ),
    // xdsServer
    setting!(
        "xdsServer.grpcPort",
        KUMA_XDS_SERVER_GRPC_PORT,
        xds_server.grpc_port,
        "15678",
        "Port of the xDS (ADS) server"
    ),
    setting!(
        "xdsServer.dataplaneConfigurationRefreshInterval",
        KUMA_XDS_SERVER_DATAPLANE_CONFIGURATION_REFRESH_INTERVAL,
        xds_server.dataplane_configuration_refresh_interval,
        "2s",
        "How often proxy configurations are recomputed"
    ),
    setting!(
        "xdsServer.dataplaneStatusFlushInterval",
        KUMA_XDS_SERVER_DATAPLANE_STATUS_FLUSH_INTERVAL | KUMA_XDS_DATAPLANE_STATUS_FLUSH_INTERVAL,
        xds_server.dataplane_status_flush_interval,
        "1m",
        "How often proxy connection statistics (DataplaneInsight counters) are written to the store; connects, disconnects and NACKs are written within a second"
    ),
    setting!(
        "xdsServer.dataplaneDeregistrationDelay",
        KUMA_XDS_DATAPLANE_DEREGISTRATION_DELAY | KUMA_XDS_SERVER_DATAPLANE_DEREGISTRATION_DELAY,
        xds_server.dataplane_deregistration_delay,
        "0s",
        "Wait after the last ADS stream of a proxy registered inline (kuma-dp with a dataplane resource) closes before deleting its Dataplane, unless it reconnected; 0 deletes at once. Dataplanes applied with kumactl are never deleted"
    ),
    // bootstrapServer
    setting!(
        "bootstrapServer.port",
        KUMA_BOOTSTRAP_SERVER_PORT,
        bootstrap_server.port,
        "16682",
        "Port of the bootstrap server"
    ),
    setting!(
        "bootstrapServer.params.xdsHost",
        KUMA_BOOTSTRAP_SERVER_PARAMS_XDS_HOST,
        bootstrap_server.params.xds_host,
        "zone-1.example.com",
        "Host the bootstrap tells proxies to dial for xDS; empty: the host kuma-dp reached the bootstrap server on (its `--cp-address`)"
    ),
    setting!(
        "bootstrapServer.params.xdsPort",
        KUMA_BOOTSTRAP_SERVER_PARAMS_XDS_PORT,
        bootstrap_server.params.xds_port,
        "15678",
        "Port the bootstrap tells proxies to dial for xDS; empty: `xdsServer.grpcPort`"
    ),
    // dpServer
    setting!(
        "dpServer.authn.dpProxy.type",
        KUMA_DP_SERVER_AUTHN_DP_PROXY_TYPE,
        dp_server.dp_proxy_auth,
        "none",
        "How proxies are authenticated: `dpToken` requires a dataplane token (`kumactl generate dataplane-token`) on `/bootstrap` and on the ADS stream; `none` checks nothing"
    ),
    // dnsServer
    setting!(
        "dnsServer.port",
        KUMA_DNS_SERVER_PORT,
        dns_server.port,
        "15653",
        "Port of the DNS server (UDP and TCP), served by a zone"
    ),
    setting!(
        "dnsServer.domain",
        KUMA_DNS_SERVER_DOMAIN,
        dns_server.domain,
        "internal",
        "Domain the DNS server answers for"
    ),
    setting!(
        "dnsServer.CIDR",
        KUMA_DNS_SERVER_CIDR,
        dns_server.cidr,
        "241.0.0.0/8",
        "Range service VIPs are allocated from"
    ),
    setting!(
        "dnsServer.serviceVipEnabled",
        KUMA_DNS_SERVER_SERVICE_VIP_ENABLED,
        dns_server.service_vip_enabled,
        "false",
        "Give every service a VIP and a DNS name; false releases every VIP"
    ),
    setting!(
        "dnsServer.serviceVipPort",
        KUMA_DNS_SERVICE_SERVICE_VIP_PORT | KUMA_DNS_SERVER_SERVICE_VIP_PORT,
        dns_server.service_vip_port,
        "8080",
        "Port a service is reached on at its VIP"
    ),
    setting!(
        "dnsServer.upstreams",
        KUMA_DNS_SERVER_UPSTREAMS,
        dns_server.upstreams,
        "127.0.0.53:53,[::1]:5353",
        "Resolvers (`ip` or `ip:port`, comma-separated) that names outside the domain are forwarded to, in order; empty answers them REFUSED (kuma-rs only)"
    ),
    // monitoringAssignmentServer
    setting!(
        "monitoringAssignmentServer.port",
        KUMA_MONITORING_ASSIGNMENT_SERVER_PORT,
        monitoring_assignment_server.port,
        "15676",
        "Port of the MADS server: `POST /v3/discovery:monitoringassignments` (Prometheus kuma_sd), gRPC FetchMonitoringAssignments and `GET /v3/http-sd` (Prometheus http_sd)"
    ),
    setting!(
        "monitoringAssignmentServer.assignmentRefreshInterval",
        KUMA_MONITORING_ASSIGNMENT_SERVER_ASSIGNMENT_REFRESH_INTERVAL,
        monitoring_assignment_server.assignment_refresh_interval,
        "5s",
        "Accepted for compatibility with Kuma and not used: assignments follow the store's change feed (a new Dataplane reaches waiting clients at once) instead of being recomputed periodically"
    ),
    setting!(
        "monitoringAssignmentServer.defaultFetchTimeout",
        KUMA_MONITORING_ASSIGNMENT_SERVER_DEFAULT_FETCH_TIMEOUT,
        monitoring_assignment_server.default_fetch_timeout,
        "1m",
        "How long a fetch waits for a change when the client names no `fetch-timeout` (and for every gRPC fetch)"
    ),
    // adminServer
    setting!(
        "adminServer.local.port",
        KUMA_ADMIN_SERVER_LOCAL_PORT,
        admin_server.local.port,
        "15679",
        "Port of the admin server on localhost"
    ),
    // defaults
    setting!(
        "defaults.skipMeshCreation",
        KUMA_DEFAULTS_SKIP_MESH_CREATION,
        defaults.skip_mesh_creation,
        "true",
        "Do not create the `default` Mesh on first start"
    ),
];

/// The setting with this YAML key.
pub(crate) fn by_key(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == key)
}

/// Whether `key` holds settings (`apiServer`, `apiServer.http`).
pub(crate) fn is_section(key: &str) -> bool {
    SETTINGS.iter().any(|s| {
        s.key
            .strip_prefix(key)
            .is_some_and(|rest| rest.starts_with('.'))
    })
}
