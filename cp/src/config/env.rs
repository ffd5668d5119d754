//! The environment as a value, and the name of every variable the config reads.

use std::collections::BTreeMap;

/// Environment variables, read once. Binaries take [`Env::from_process`]; tests build one
/// from pairs, so no test touches the process environment.
///
/// ```
/// let env: cp::config::Env = [("KUMA_MODE", "global")].into_iter().collect();
/// assert_eq!(env.get("KUMA_MODE"), Some("global"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Env(BTreeMap<String, String>);

impl Env {
    /// The process environment. Variables whose name or value is not UTF-8 are left out.
    pub fn from_process() -> Self {
        std::env::vars_os()
            .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Every variable name, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Env {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

/// Declares each name as a constant whose value is its own name, and lists them all.
macro_rules! env_vars {
    ($($name:ident),+ $(,)?) => {
        $(
            #[doc = concat!("`", stringify!($name), "`")]
            pub const $name: &str = stringify!($name);
        )+
        /// Every `KUMA_*` variable the config reads, including Kuma's alternative spellings.
        pub const ALL: &[&str] = &[$($name),+];
    };
}

/// The variable names, one constant each (`vars::KUMA_API_SERVER_HTTP_PORT`). The settings
/// table says which setting each sets; `docs/settings.md` lists them for users.
pub mod vars {
    /// `HOME`: where `~` in paths points.
    pub const HOME: &str = "HOME";

    env_vars! {
        KUMA_ENVIRONMENT,
        KUMA_MODE,
        KUMA_GENERAL_WORK_DIR,
        KUMA_GENERAL_TLS_CERT_FILE,
        KUMA_GENERAL_TLS_KEY_FILE,
        KUMA_GENERAL_RESILIENT_COMPONENT_BASE_BACKOFF,
        KUMA_GENERAL_RESILIENT_COMPONENT_MAX_BACKOFF,
        KUMA_STORE_TYPE,
        KUMA_STORE_SQLITE_PATH,
        KUMA_STORE_POSTGRES_HOST,
        KUMA_STORE_POSTGRES_PORT,
        KUMA_STORE_POSTGRES_USER,
        KUMA_STORE_POSTGRES_PASSWORD,
        KUMA_STORE_POSTGRES_DB_NAME,
        KUMA_STORE_POSTGRES_CONNECTION_TIMEOUT,
        KUMA_STORE_POSTGRES_MAX_OPEN_CONNECTIONS,
        KUMA_STORE_POSTGRES_MAX_IDLE_CONNECTIONS,
        KUMA_STORE_POSTGRES_MIN_OPEN_CONNECTIONS,
        KUMA_STORE_POSTGRES_MAX_CONNECTION_LIFETIME,
        KUMA_STORE_POSTGRES_MAX_CONNECTION_IDLE_TIME,
        KUMA_STORE_POSTGRES_TLS_MODE,
        KUMA_STORE_POSTGRES_TLS_CERT_PATH,
        KUMA_STORE_POSTGRES_TLS_KEY_PATH,
        KUMA_STORE_POSTGRES_TLS_ROOT_CERT_PATH,
        KUMA_STORE_POSTGRES_TLS_CA_PATH,
        KUMA_STORE_CACHE_ENABLED,
        KUMA_STORE_CACHE_EXPIRATION_TIME,
        KUMA_STORE_UNSAFE_DELETE,
        KUMA_API_SERVER_HTTP_ENABLED,
        KUMA_API_SERVER_HTTP_INTERFACE,
        KUMA_API_SERVER_HTTP_PORT,
        KUMA_API_SERVER_HTTPS_ENABLED,
        KUMA_API_SERVER_HTTPS_INTERFACE,
        KUMA_API_SERVER_HTTPS_PORT,
        KUMA_API_SERVER_HTTPS_TLS_CERT_FILE,
        KUMA_API_SERVER_HTTPS_TLS_KEY_FILE,
        KUMA_API_SERVER_HTTPS_CLIENT_CERTS_CA_FILE,
        KUMA_API_SERVER_HTTPS_TLS_CA_FILE,
        KUMA_API_SERVER_HTTPS_REQUIRE_CLIENT_CERT,
        KUMA_API_SERVER_READ_ONLY,
        KUMA_API_SERVER_AUTHN_LOCALHOST_IS_ADMIN,
        KUMA_API_SERVER_GUI_ENABLED,
        KUMA_API_SERVER_GUI_BASE_PATH,
        KUMA_DIAGNOSTICS_SERVER_PORT,
        KUMA_MULTIZONE_GLOBAL_KDS_GRPC_PORT,
        KUMA_MULTIZONE_GLOBAL_KDS_REFRESH_INTERVAL,
        KUMA_MULTIZONE_GLOBAL_KDS_ZONE_INSIGHT_FLUSH_INTERVAL,
        KUMA_MULTIZONE_GLOBAL_KDS_TLS_ENABLED,
        KUMA_MULTIZONE_GLOBAL_KDS_TLS_CERT_FILE,
        KUMA_MULTIZONE_GLOBAL_KDS_TLS_KEY_FILE,
        KUMA_MULTIZONE_GLOBAL_KDS_MAX_MSG_SIZE,
        KUMA_MULTIZONE_GLOBAL_KDS_STALL_TIMEOUT,
        KUMA_MULTIZONE_GLOBAL_KDS_AUTH_TYPE,
        KUMA_MULTIZONE_GLOBAL_KDS_ZONE_HEALTH_CHECK_POLL_INTERVAL,
        KUMA_MULTIZONE_GLOBAL_KDS_ZONE_HEALTH_CHECK_TIMEOUT,
        KUMA_MULTIZONE_ZONE_NAME,
        KUMA_MULTIZONE_ZONE_GLOBAL_ADDRESS,
        KUMA_MULTIZONE_ZONE_KDS_REFRESH_INTERVAL,
        KUMA_MULTIZONE_ZONE_KDS_ROOT_CA_FILE,
        KUMA_MULTIZONE_ZONE_KDS_TLS_SKIP_VERIFY,
        KUMA_MULTIZONE_ZONE_KDS_MAX_MSG_SIZE,
        KUMA_MULTIZONE_ZONE_KDS_STALL_TIMEOUT,
        KUMA_MULTIZONE_ZONE_KDS_AUTH_TOKEN_PATH,
        KUMA_MULTIZONE_ZONE_KDS_AUTH_TOKEN_INLINE,
        KUMA_XDS_SERVER_GRPC_PORT,
        KUMA_XDS_SERVER_DATAPLANE_CONFIGURATION_REFRESH_INTERVAL,
        KUMA_XDS_SERVER_DATAPLANE_STATUS_FLUSH_INTERVAL,
        KUMA_XDS_DATAPLANE_STATUS_FLUSH_INTERVAL,
        KUMA_XDS_DATAPLANE_DEREGISTRATION_DELAY,
        KUMA_XDS_SERVER_DATAPLANE_DEREGISTRATION_DELAY,
        KUMA_BOOTSTRAP_SERVER_PORT,
        KUMA_BOOTSTRAP_SERVER_PARAMS_XDS_HOST,
        KUMA_BOOTSTRAP_SERVER_PARAMS_XDS_PORT,
        KUMA_DP_SERVER_AUTHN_DP_PROXY_TYPE,
        KUMA_DNS_SERVER_PORT,
        KUMA_DNS_SERVER_DOMAIN,
        KUMA_DNS_SERVER_CIDR,
        KUMA_DNS_SERVER_SERVICE_VIP_ENABLED,
        KUMA_DNS_SERVER_SERVICE_VIP_PORT,
        KUMA_DNS_SERVICE_SERVICE_VIP_PORT,
        KUMA_DNS_SERVER_UPSTREAMS,
        KUMA_MONITORING_ASSIGNMENT_SERVER_PORT,
        KUMA_MONITORING_ASSIGNMENT_SERVER_ASSIGNMENT_REFRESH_INTERVAL,
        KUMA_MONITORING_ASSIGNMENT_SERVER_DEFAULT_FETCH_TIMEOUT,
        KUMA_ADMIN_SERVER_LOCAL_PORT,
        KUMA_DEFAULTS_SKIP_MESH_CREATION,
    }
}
