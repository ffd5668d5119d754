//! The types of setting values and how each is read from text (an environment variable or a
//! YAML scalar) and shown (in `/config` JSON and the defaults file).
//!
//! Every check that needs only the value itself lives here, so a bad value is reported with
//! the key or the variable it came from; checks across settings live in `validate.rs`.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde_json::Value as Json;

/// A setting's value type: parsed from text, shown as JSON.
pub(crate) trait Field: Sized {
    /// Parses `text`; the error completes "invalid value "…": " (e.g. "expected a port number").
    fn parse(text: &str) -> Result<Self, String>;
    /// The value as `/config` and the defaults file show it. `parse` of its text form gives the
    /// value back.
    fn to_json(&self) -> Json;
}

// === impl Field for plain types ===

/// `u16` settings are TCP/UDP ports; 0 ("pick any") is not a valid setting.
impl Field for u16 {
    fn parse(text: &str) -> Result<Self, String> {
        match text.trim().parse::<u16>() {
            Ok(port) if port != 0 => Ok(port),
            _ => Err("expected a port number (1-65535)".to_owned()),
        }
    }
    fn to_json(&self) -> Json {
        Json::from(*self)
    }
}

impl Field for u32 {
    fn parse(text: &str) -> Result<Self, String> {
        text.trim()
            .parse()
            .map_err(|_| "expected a whole number (0-4294967295)".to_owned())
    }
    fn to_json(&self) -> Json {
        Json::from(*self)
    }
}

impl Field for bool {
    /// Accepts what Go's `strconv.ParseBool` accepts, as Kuma does.
    fn parse(text: &str) -> Result<Self, String> {
        match text.trim() {
            "true" | "True" | "TRUE" | "t" | "T" | "1" => Ok(true),
            "false" | "False" | "FALSE" | "f" | "F" | "0" => Ok(false),
            _ => Err("expected true or false".to_owned()),
        }
    }
    fn to_json(&self) -> Json {
        Json::from(*self)
    }
}

impl Field for String {
    fn parse(text: &str) -> Result<Self, String> {
        Ok(text.to_owned())
    }
    fn to_json(&self) -> Json {
        Json::from(self.as_str())
    }
}

impl Field for PathBuf {
    fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("expected a path".to_owned());
        }
        Ok(PathBuf::from(text))
    }
    fn to_json(&self) -> Json {
        Json::from(self.to_string_lossy().as_ref())
    }
}

impl Field for IpAddr {
    fn parse(text: &str) -> Result<Self, String> {
        text.trim()
            .parse()
            .map_err(|_| "expected an IP address such as 0.0.0.0 or ::".to_owned())
    }
    fn to_json(&self) -> Json {
        Json::from(self.to_string())
    }
}

impl Field for IpNet {
    fn parse(text: &str) -> Result<Self, String> {
        text.trim()
            .parse()
            .map_err(|_| "expected a CIDR such as 240.0.0.0/4".to_owned())
    }
    fn to_json(&self) -> Json {
        Json::from(self.to_string())
    }
}

/// A duration that may be zero (a delay or a limit where 0 means "none").
impl Field for Duration {
    fn parse(text: &str) -> Result<Self, String> {
        parse_duration(text)
            .ok_or_else(|| "expected a duration such as 1s, 500ms, 10m or 1h30m".to_owned())
    }
    fn to_json(&self) -> Json {
        Json::from(format_duration(*self))
    }
}

/// An empty value means "not set".
impl<T: Field> Field for Option<T> {
    fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            Ok(None)
        } else {
            T::parse(text).map(Some)
        }
    }
    fn to_json(&self) -> Json {
        match self {
            Some(value) => value.to_json(),
            None => Json::from(""),
        }
    }
}

// === impl Interval ===

/// A duration greater than zero: the period of something that repeats, or a timeout.
/// Zero is refused when the config is read, so a zero never reaches `tokio::time::interval`
/// (which panics on it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval(Duration);

impl Interval {
    /// `None` for a zero duration.
    pub const fn new(duration: Duration) -> Option<Self> {
        if duration.is_zero() {
            None
        } else {
            Some(Self(duration))
        }
    }

    /// `secs` seconds; `secs` must not be 0 (checked at compile time in const contexts).
    pub const fn from_secs(secs: u64) -> Self {
        assert!(secs > 0, "an interval must be longer than zero");
        Self(Duration::from_secs(secs))
    }

    /// `millis` milliseconds; `millis` must not be 0.
    pub const fn from_millis(millis: u64) -> Self {
        assert!(millis > 0, "an interval must be longer than zero");
        Self(Duration::from_millis(millis))
    }

    pub const fn get(self) -> Duration {
        self.0
    }
}

impl From<Interval> for Duration {
    fn from(interval: Interval) -> Self {
        interval.0
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl Field for Interval {
    fn parse(text: &str) -> Result<Self, String> {
        parse_duration(text).and_then(Interval::new).ok_or_else(|| {
            "expected a duration greater than zero, such as 1s, 500ms or 10m".to_owned()
        })
    }
    fn to_json(&self) -> Json {
        Json::from(format_duration(self.0))
    }
}

/// Parses Go-style durations ("1s", "500ms", "1h30m", "0") with humantime.
fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text == "0" {
        return Some(Duration::ZERO);
    }
    humantime::parse_duration(text).ok()
}

/// Formats a duration the way Go prints it for whole units: "1h30m", "10s", "500ms".
pub(crate) fn format_duration(duration: Duration) -> String {
    const UNITS: [(&str, u128); 6] = [
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
        ("ns", 1),
    ];
    if duration.is_zero() {
        return "0s".to_owned();
    }
    let mut rest = duration.as_nanos();
    let mut out = String::new();
    for (unit, nanos) in UNITS {
        let count = rest / nanos;
        if count > 0 {
            out.push_str(&count.to_string());
            out.push_str(unit);
        }
        rest %= nanos;
    }
    out
}

// === impl Password ===

/// A secret string: its `Debug` never shows it and `/config` masks it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Password(String);

impl Password {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for the one place that needs it (e.g. building a connection).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(*****)")
    }
}

impl Field for Password {
    fn parse(text: &str) -> Result<Self, String> {
        Ok(Self(text.to_owned()))
    }
    fn to_json(&self) -> Json {
        Json::from(self.0.as_str())
    }
}

// === impl GrpcUrl ===

/// The address of a gRPC server as a URL: `grpc://host:port` (plain) or `grpcs://host:port`
/// (TLS). Without a port, KDS's 5685 is meant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrpcUrl {
    tls: bool,
    host: String,
    port: u16,
}

impl GrpcUrl {
    /// The port used when the URL names none: the global's KDS port.
    pub const DEFAULT_PORT: u16 = 5685;

    /// Whether the scheme is `grpcs` (TLS).
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// The host: a name or an IP address (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for GrpcUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "grpcs" } else { "grpc" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl std::str::FromStr for GrpcUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let expected = || {
            "expected a URL such as grpcs://global.example:5685 (scheme grpc or grpcs)".to_owned()
        };
        let text = text.trim();
        let (tls, rest) = if let Some(rest) = text.strip_prefix("grpcs://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("grpc://") {
            (false, rest)
        } else {
            return Err(expected());
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
            return Err(expected());
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            // [v6]:port or [v6]
            let (host, after) = bracketed.split_once(']').ok_or_else(expected)?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or_else(expected)?),
            };
            (host, port)
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(expected());
        }
        let port = match port {
            None => Self::DEFAULT_PORT,
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(expected)?,
        };
        Ok(Self {
            tls,
            host: host.to_owned(),
            port,
        })
    }
}

impl Field for GrpcUrl {
    fn parse(text: &str) -> Result<Self, String> {
        text.parse()
    }
    fn to_json(&self) -> Json {
        Json::from(self.to_string())
    }
}

/// `dnsServer.upstreams`: resolver addresses, comma-separated; a missing port is 53.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsUpstreams(pub Vec<std::net::SocketAddr>);

impl Field for DnsUpstreams {
    fn parse(text: &str) -> Result<Self, String> {
        let mut upstreams = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let addr = match part.parse::<std::net::SocketAddr>() {
                Ok(addr) => addr,
                Err(_) => match part.parse::<IpAddr>() {
                    Ok(ip) => std::net::SocketAddr::new(ip, 53),
                    Err(_) => {
                        return Err(format!(
                            "{part:?} is not a resolver address: expected an IP with an optional port, such as 10.0.0.2 or 10.0.0.2:53 or [::1]:53"
                        ));
                    }
                },
            };
            if addr.port() == 0 {
                return Err(format!("{part:?}: port 0 is not a resolver port"));
            }
            upstreams.push(addr);
        }
        Ok(DnsUpstreams(upstreams))
    }
    fn to_json(&self) -> Json {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        Json::from(parts.join(","))
    }
}

// === enums ===

/// Declares a setting enum whose values are fixed words, with `as_str` and `Field`.
macro_rules! word_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $word:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $( $(#[$vmeta])* $variant ),+ }

        impl $name {
            /// The word used in YAML, environment variables and `/config`.
            pub const fn as_str(self) -> &'static str {
                match self { $( Self::$variant => $word ),+ }
            }

            fn from_word(word: &str) -> Option<Self> {
                match word { $( $word => Some(Self::$variant), )+ _ => None }
            }

            fn expected() -> String {
                let words: &[&str] = &[$($word),+];
                format!("expected one of: {}", words.join(", "))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

word_enum! {
    /// Where the control plane runs. Only `universal` (VMs, bare metal, containers) exists
    /// here; Kuma's `kubernetes` environment is not implemented.
    pub enum Environment {
        Universal = "universal",
    }
}

impl Field for Environment {
    fn parse(text: &str) -> Result<Self, String> {
        match text.trim() {
            "kubernetes" => {
                Err("kubernetes is not supported by kuma-rs; expected universal".to_owned())
            }
            word => Self::from_word(word).ok_or_else(Self::expected),
        }
    }
    fn to_json(&self) -> Json {
        Json::from(self.as_str())
    }
}

word_enum! {
    /// Which control plane this is.
    pub enum Mode {
        /// Holds the meshes and policies; zones connect to it over KDS.
        Global = "global",
        /// Serves the proxies of one zone; federated when `multizone.zone.globalAddress` is set.
        Zone = "zone",
    }
}

impl Field for Mode {
    /// `standalone` (Kuma 1.x) is read as `zone`, as Kuma 2.x does.
    fn parse(text: &str) -> Result<Self, String> {
        match text.trim() {
            "standalone" => Ok(Self::Zone),
            word => Self::from_word(word)
                .ok_or_else(|| format!("{} (standalone means zone)", Self::expected())),
        }
    }
    fn to_json(&self) -> Json {
        Json::from(self.as_str())
    }
}

word_enum! {
    /// Which store backend holds the resources.
    pub enum StoreKind {
        /// An embedded SQLite file (`store.sqlite.path`): durable, no server to run.
        Sqlite = "sqlite",
        /// A PostgreSQL server (`store.postgres.*`): for several replicas of a control plane.
        Postgres = "postgres",
        /// In memory: lost on restart; for tests and demos.
        Memory = "memory",
    }
}

impl Field for StoreKind {
    fn parse(text: &str) -> Result<Self, String> {
        Self::from_word(text.trim()).ok_or_else(Self::expected)
    }
    fn to_json(&self) -> Json {
        Json::from(self.as_str())
    }
}

word_enum! {
    /// How the PostgreSQL connection uses TLS (Kuma's names).
    pub enum PgTlsMode {
        /// No TLS.
        Disable = "disable",
        /// TLS without checking the server's certificate (libpq `require`).
        VerifyNone = "verifyNone",
        /// TLS; the server's certificate must be signed by `caPath` (libpq `verify-ca`).
        VerifyCa = "verifyCa",
        /// As `verifyCa`, and the certificate must name the host (libpq `verify-full`).
        VerifyFull = "verifyFull",
    }
}

impl Field for PgTlsMode {
    fn parse(text: &str) -> Result<Self, String> {
        Self::from_word(text.trim()).ok_or_else(Self::expected)
    }
    fn to_json(&self) -> Json {
        Json::from(self.as_str())
    }
}

word_enum! {
    /// How the global's KDS server knows which zone dialled it.
    pub enum KdsAuthType {
        /// A zone is accepted only with a zone token of scope `cp` that this global issued
        /// (`kumactl generate zone-token --zone NAME --scope cp`), naming that zone.
        ZoneToken = "zoneToken",
        /// Kuma OSS behaviour: the zone's `client-id` header is trusted as is.
        None = "none",
    }
}

word_enum! {
    /// How the zone authenticates its proxies (`dpServer.authn.dpProxy.type`).
    pub enum DpProxyAuthType {
        /// A dataplane token (`kumactl generate dataplane-token`) on `/bootstrap` and on the
        /// ADS stream, checked against the Dataplane it names.
        DpToken = "dpToken",
        /// No check: any proxy may fetch any Dataplane's bootstrap and configuration.
        None = "none",
    }
}

impl Field for DpProxyAuthType {
    fn parse(text: &str) -> Result<Self, String> {
        Self::from_word(text.trim()).ok_or_else(Self::expected)
    }
    fn to_json(&self) -> Json {
        Json::from(self.as_str())
    }
}

impl Field for KdsAuthType {
    fn parse(text: &str) -> Result<Self, String> {
        Self::from_word(text.trim()).ok_or_else(Self::expected)
    }
    fn to_json(&self) -> Json {
        Json::from(self.as_str())
    }
}
