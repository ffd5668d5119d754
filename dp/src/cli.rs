//! The `kuma-dp` command line: Kuma's `kuma-dp run` flags and their `KUMA_*` variables
//! (reference: `kuma-api.md` §4.4), and [`RunArgs::resolve`], which reads the files they name
//! and renders the dataplane template into a [`RunConfig`].
//!
//! Only argument handling lives here: no network, no processes. The token is kept in a
//! [`Secret`], whose `Debug` never shows it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::template::{self, TemplateError};

/// Where the zone control plane serves `POST /bootstrap` by default (our
/// `bootstrapServer.port`, plain HTTP).
pub const DEFAULT_CP_ADDRESS: &str = "http://localhost:5682";

#[derive(Parser, Debug)]
#[command(
    name = "kuma-dp",
    version,
    about = "Dataplane agent of kuma-rs: fetches the Envoy bootstrap from the zone control plane and runs Envoy"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Bootstraps and runs Envoy until SIGTERM or SIGINT.
    Run(Box<RunArgs>),
}

/// The kind of proxy this agent runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProxyType {
    /// A sidecar next to one workload.
    Dataplane,
    /// A zone ingress (not served by the zone control plane yet).
    Ingress,
}

impl ProxyType {
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyType::Dataplane => "dataplane",
            ProxyType::Ingress => "ingress",
        }
    }

    /// The resource `type` of this proxy's inline resource.
    fn resource_type(self) -> &'static str {
        match self {
            ProxyType::Dataplane => "Dataplane",
            ProxyType::Ingress => "ZoneIngress",
        }
    }
}

/// Envoy's `--log-level` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EnvoyLogLevel {
    Trace,
    Debug,
    Info,
    #[value(alias = "warn")]
    Warning,
    Error,
    Critical,
    Off,
}

impl EnvoyLogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            EnvoyLogLevel::Trace => "trace",
            EnvoyLogLevel::Debug => "debug",
            EnvoyLogLevel::Info => "info",
            EnvoyLogLevel::Warning => "warning",
            EnvoyLogLevel::Error => "error",
            EnvoyLogLevel::Critical => "critical",
            EnvoyLogLevel::Off => "off",
        }
    }
}

/// A secret string (the dataplane token): `Debug` and `Display` print `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (e.g. 30s, 5m)"))
}

fn parse_var(text: &str) -> Result<(String, String), String> {
    template::parse_var(text).map_err(|e| e.to_string())
}

/// `kuma-dp run` flags. Every flag with a variable can be set by either; the flag wins.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// URL of the control plane's bootstrap server (http or https).
    #[arg(long = "cp-address", env = "KUMA_CONTROL_PLANE_URL", default_value = DEFAULT_CP_ADDRESS)]
    pub cp_address: String,
    /// CA certificate (PEM) that signed the control plane's certificate (https only); it is
    /// also sent to the control plane as the CA Envoy trusts for xDS.
    #[arg(long = "ca-cert-file", env = "KUMA_CONTROL_PLANE_CA_CERT_FILE")]
    pub ca_cert_file: Option<PathBuf>,
    /// Do not verify the control plane's certificate (https only; for tests).
    #[arg(long = "skip-verify", env = "KUMA_CONTROL_PLANE_SKIP_VERIFY")]
    pub skip_verify: bool,
    /// Name of the proxy (default: the inline resource's `name`).
    #[arg(long, env = "KUMA_DATAPLANE_NAME")]
    pub name: Option<String>,
    /// Mesh of the proxy (default: the inline resource's `mesh`).
    #[arg(long, env = "KUMA_DATAPLANE_MESH")]
    pub mesh: Option<String>,
    /// Kind of proxy.
    #[arg(long = "proxy-type", env = "KUMA_DATAPLANE_PROXY_TYPE", value_enum, default_value_t = ProxyType::Dataplane)]
    pub proxy_type: ProxyType,
    /// Dataplane token (prefer --dataplane-token-file: arguments are visible to other users).
    #[arg(
        long = "dataplane-token",
        env = "KUMA_DATAPLANE_RUNTIME_TOKEN",
        hide_env_values = true,
        conflicts_with = "dataplane_token_file"
    )]
    pub dataplane_token: Option<Secret>,
    /// File holding the dataplane token.
    #[arg(
        long = "dataplane-token-file",
        env = "KUMA_DATAPLANE_RUNTIME_TOKEN_PATH"
    )]
    pub dataplane_token_file: Option<PathBuf>,
    /// Inline Dataplane resource (YAML or JSON), a template for --dataplane-var.
    #[arg(
        long = "dataplane",
        env = "KUMA_DATAPLANE_RUNTIME_RESOURCE",
        conflicts_with = "dataplane_file"
    )]
    pub dataplane: Option<String>,
    /// File with the Dataplane resource (YAML or JSON), a template for --dataplane-var.
    #[arg(
        short = 'd',
        long = "dataplane-file",
        env = "KUMA_DATAPLANE_RUNTIME_RESOURCE_PATH"
    )]
    pub dataplane_file: Option<PathBuf>,
    /// A template variable NAME=VALUE: `{{ NAME }}` in the Dataplane becomes VALUE (repeatable).
    #[arg(short = 'v', long = "dataplane-var", value_parser = parse_var)]
    pub dataplane_vars: Vec<(String, String)>,
    /// Envoy admin port on 127.0.0.1 (default: the Dataplane's `networking.admin.port`, else 9901).
    #[arg(long = "admin-port", env = "KUMA_DATAPLANE_ADMIN_PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub admin_port: Option<u16>,
    /// Envoy binary (default: $ENVOY_BINARY, else `envoy` on PATH).
    #[arg(long = "binary-path", env = "KUMA_DATAPLANE_RUNTIME_BINARY_PATH")]
    pub binary_path: Option<PathBuf>,
    /// Directory for the Envoy bootstrap (default: a new temp directory, removed on exit).
    #[arg(long = "work-dir", env = "KUMA_DATAPLANE_RUNTIME_WORK_DIR")]
    pub work_dir: Option<PathBuf>,
    /// How long Envoy drains connections on shutdown (also Envoy's --drain-time-s).
    #[arg(long = "drain-time", env = "KUMA_DATAPLANE_DRAIN_TIME", default_value = "30s", value_parser = parse_duration)]
    pub drain_time: Duration,
    /// Envoy log level.
    #[arg(long = "envoy-log-level", env = "KUMA_DATAPLANE_RUNTIME_ENVOY_LOG_LEVEL", value_enum, default_value_t = EnvoyLogLevel::Info)]
    pub envoy_log_level: EnvoyLogLevel,
    /// Envoy worker threads (default: Envoy's, one per core).
    #[arg(long, env = "KUMA_DATAPLANE_RUNTIME_CONCURRENCY", value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: Option<u32>,
    /// First wait between bootstrap attempts (then growing, up to 30s).
    #[arg(long = "cp-retry-backoff", env = "KUMA_CONTROL_PLANE_RETRY_BACKOFF", default_value = "3s", value_parser = parse_duration)]
    pub retry_backoff: Duration,
    /// How long to keep trying to get the bootstrap before giving up.
    #[arg(long = "cp-retry-max-duration", env = "KUMA_CONTROL_PLANE_RETRY_MAX_DURATION", default_value = "5m", value_parser = parse_duration)]
    pub retry_max_duration: Duration,
}

/// Why the arguments do not make a runnable configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--{flag} {path}: {source}")]
    Read {
        flag: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--dataplane-token-file {path}: the file is empty")]
    EmptyTokenFile { path: String },
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("--dataplane-var {name}: given twice")]
    DuplicateVar { name: String },
    #[error("--dataplane-var given without --dataplane or --dataplane-file")]
    VarsWithoutTemplate,
    #[error("dataplane resource: {0}")]
    Resource(String),
    #[error("--{flag} {given:?} differs from the dataplane resource's {field} {found:?}")]
    Mismatch {
        flag: &'static str,
        field: &'static str,
        given: String,
        found: String,
    },
    #[error(
        "--{flag} is required (or give an inline resource with --dataplane or --dataplane-file)"
    )]
    Required { flag: &'static str },
    #[error("--cp-address {given:?}: {message}")]
    CpAddress { given: String, message: String },
    #[error("--ca-cert-file and --skip-verify are only for an https --cp-address, not {given:?}")]
    TlsOnHttp { given: String },
}

/// Everything `kuma-dp run` needs, files read and template rendered.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub cp_address: reqwest::Url,
    /// PEM of `--ca-cert-file`.
    pub ca_cert: Option<String>,
    pub skip_verify: bool,
    pub name: String,
    pub mesh: String,
    pub proxy_type: ProxyType,
    pub token: Option<Secret>,
    /// The rendered inline resource.
    pub dataplane_resource: Option<String>,
    pub admin_port: Option<u16>,
    pub binary_path: Option<PathBuf>,
    pub work_dir: Option<PathBuf>,
    pub drain_time: Duration,
    pub envoy_log_level: EnvoyLogLevel,
    pub concurrency: Option<u32>,
    pub retry_backoff: Duration,
    pub retry_max_duration: Duration,
}

fn read(flag: &'static str, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        flag,
        path: path.display().to_string(),
        source,
    })
}

impl RunArgs {
    /// Reads the token, CA and resource files, renders the template and checks that the
    /// flags fit together.
    pub fn resolve(self) -> Result<RunConfig, ConfigError> {
        let cp_address = parse_cp_address(&self.cp_address)?;
        if cp_address.scheme() == "http" && (self.ca_cert_file.is_some() || self.skip_verify) {
            return Err(ConfigError::TlsOnHttp {
                given: self.cp_address,
            });
        }
        let ca_cert = match &self.ca_cert_file {
            Some(path) => Some(read("ca-cert-file", path)?),
            None => None,
        };
        let token = match (&self.dataplane_token, &self.dataplane_token_file) {
            (Some(token), _) => Some(token.clone()),
            (None, Some(path)) => {
                let text = read("dataplane-token-file", path)?;
                let token = text.trim();
                if token.is_empty() {
                    return Err(ConfigError::EmptyTokenFile {
                        path: path.display().to_string(),
                    });
                }
                Some(Secret::new(token))
            }
            (None, None) => None,
        };
        let template = match (&self.dataplane, &self.dataplane_file) {
            (Some(text), _) => Some(text.clone()),
            (None, Some(path)) => Some(read("dataplane-file", path)?),
            (None, None) => None,
        };
        let mut vars = BTreeMap::new();
        for (name, value) in self.dataplane_vars {
            if vars.insert(name.clone(), value).is_some() {
                return Err(ConfigError::DuplicateVar { name });
            }
        }
        let dataplane_resource = match template {
            Some(text) => Some(template::render(&text, &vars)?),
            None if !vars.is_empty() => return Err(ConfigError::VarsWithoutTemplate),
            None => None,
        };
        let (name, mesh) = identity(
            self.proxy_type,
            self.name,
            self.mesh,
            dataplane_resource.as_deref(),
        )?;
        Ok(RunConfig {
            cp_address,
            ca_cert,
            skip_verify: self.skip_verify,
            name,
            mesh,
            proxy_type: self.proxy_type,
            token,
            dataplane_resource,
            admin_port: self.admin_port,
            binary_path: self.binary_path,
            work_dir: self.work_dir,
            drain_time: self.drain_time,
            envoy_log_level: self.envoy_log_level,
            concurrency: self.concurrency,
            retry_backoff: self.retry_backoff,
            retry_max_duration: self.retry_max_duration,
        })
    }
}

fn parse_cp_address(given: &str) -> Result<reqwest::Url, ConfigError> {
    let bad = |message: String| ConfigError::CpAddress {
        given: given.to_string(),
        message,
    };
    let url = reqwest::Url::parse(given).map_err(|e| bad(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(format!(
            "the scheme must be http or https, not {:?}",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host".to_string()));
    }
    Ok(url)
}

/// The proxy's name and mesh: from the flags, else from the inline resource; both given must
/// agree. A dataplane needs both; an ingress only a name.
fn identity(
    proxy_type: ProxyType,
    name: Option<String>,
    mesh: Option<String>,
    resource: Option<&str>,
) -> Result<(String, String), ConfigError> {
    let name = name.filter(|n| !n.is_empty());
    let mesh = mesh.filter(|m| !m.is_empty());
    let (found_name, found_mesh) = match resource {
        Some(text) => resource_identity(proxy_type, text)?,
        None => (None, None),
    };
    let pick = |flag: &'static str,
                field: &'static str,
                given: Option<String>,
                found: Option<String>| match (given, found) {
        (Some(given), Some(found)) if given != found => Err(ConfigError::Mismatch {
            flag,
            field,
            given,
            found,
        }),
        (Some(value), _) | (None, Some(value)) => Ok(Some(value)),
        (None, None) => Ok(None),
    };
    let name =
        pick("name", "name", name, found_name)?.ok_or(ConfigError::Required { flag: "name" })?;
    let mesh = pick("mesh", "mesh", mesh, found_mesh)?;
    let mesh = match proxy_type {
        ProxyType::Dataplane => mesh.ok_or(ConfigError::Required { flag: "mesh" })?,
        ProxyType::Ingress => mesh.unwrap_or_default(),
    };
    Ok((name, mesh))
}

/// `name` and `mesh` of the inline resource, which must be one YAML/JSON object of the
/// proxy's type. The control plane validates the rest.
fn resource_identity(
    proxy_type: ProxyType,
    text: &str,
) -> Result<(Option<String>, Option<String>), ConfigError> {
    let value: serde_json::Value = serde_yaml_ng::from_str(text)
        .map_err(|e| ConfigError::Resource(format!("not valid YAML or JSON: {e}")))?;
    let serde_json::Value::Object(object) = value else {
        return Err(ConfigError::Resource("must be an object".to_string()));
    };
    let field = |key: &'static str| -> Result<Option<String>, ConfigError> {
        match object.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) if s.is_empty() => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ConfigError::Resource(format!("{key}: must be a string"))),
        }
    };
    let kind = field("type")?;
    let want = proxy_type.resource_type();
    if kind.as_deref() != Some(want) {
        return Err(ConfigError::Resource(format!(
            "type: must be {want} for --proxy-type {}, not {:?}",
            proxy_type.as_str(),
            kind.unwrap_or_default()
        )));
    }
    Ok((field("name")?, field("mesh")?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(args: &[&str]) -> Result<RunArgs, clap::Error> {
        let mut argv = vec!["kuma-dp", "run"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).map(|cli| match cli.command {
            Command::Run(args) => *args,
        })
    }

    const WEB: &str = "type: Dataplane\nmesh: default\nname: {{ name }}\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: {{ port }}\n    servicePort: 80\n    tags:\n      kuma.io/service: web\n";

    #[test]
    fn defaults_are_kumas() {
        let args = parse(&["--name", "web-1", "--mesh", "default"]).unwrap();
        assert_eq!(args.cp_address, DEFAULT_CP_ADDRESS);
        assert_eq!(args.drain_time, Duration::from_secs(30));
        assert_eq!(args.proxy_type, ProxyType::Dataplane);
        assert_eq!(args.envoy_log_level, EnvoyLogLevel::Info);
        assert_eq!(args.retry_backoff, Duration::from_secs(3));
        assert_eq!(args.retry_max_duration, Duration::from_secs(300));
        let config = args.resolve().unwrap();
        assert_eq!(config.cp_address.as_str(), "http://localhost:5682/");
        assert_eq!(
            (config.name.as_str(), config.mesh.as_str()),
            ("web-1", "default")
        );
        assert!(config.token.is_none() && config.dataplane_resource.is_none());
    }

    /// Which variable sets which flag. (That clap reads them, and that the flag wins, is
    /// tested on the built binary in `tests/cli.rs`: setting variables in this process would
    /// need `unsafe`.)
    #[test]
    fn each_flag_has_kumas_variable() {
        let cmd = <Cli as clap::CommandFactory>::command();
        let run = cmd.find_subcommand("run").unwrap();
        let envs: BTreeMap<String, String> = run
            .get_arguments()
            .filter_map(|a| {
                Some((
                    a.get_long()?.to_string(),
                    a.get_env()?.to_string_lossy().into_owned(),
                ))
            })
            .collect();
        for (flag, env) in [
            ("cp-address", "KUMA_CONTROL_PLANE_URL"),
            ("ca-cert-file", "KUMA_CONTROL_PLANE_CA_CERT_FILE"),
            ("name", "KUMA_DATAPLANE_NAME"),
            ("mesh", "KUMA_DATAPLANE_MESH"),
            ("proxy-type", "KUMA_DATAPLANE_PROXY_TYPE"),
            ("dataplane-token", "KUMA_DATAPLANE_RUNTIME_TOKEN"),
            ("dataplane-token-file", "KUMA_DATAPLANE_RUNTIME_TOKEN_PATH"),
            ("dataplane", "KUMA_DATAPLANE_RUNTIME_RESOURCE"),
            ("dataplane-file", "KUMA_DATAPLANE_RUNTIME_RESOURCE_PATH"),
            ("drain-time", "KUMA_DATAPLANE_DRAIN_TIME"),
            ("cp-retry-backoff", "KUMA_CONTROL_PLANE_RETRY_BACKOFF"),
            (
                "cp-retry-max-duration",
                "KUMA_CONTROL_PLANE_RETRY_MAX_DURATION",
            ),
        ] {
            assert_eq!(envs.get(flag).map(String::as_str), Some(env), "--{flag}");
        }
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let args = parse(&[
            "--name",
            "a",
            "--mesh",
            "m",
            "--dataplane-token",
            "SECRET-JWT",
        ])
        .unwrap();
        assert!(!format!("{args:?}").contains("SECRET-JWT"));
        let config = args.resolve().unwrap();
        assert!(!format!("{config:?}").contains("SECRET-JWT"));
        assert_eq!(config.token.unwrap().expose(), "SECRET-JWT");
    }

    #[test]
    fn token_flag_and_file_exclude_each_other_and_the_file_is_trimmed() {
        assert!(parse(&["--dataplane-token", "a", "--dataplane-token-file", "/x"]).is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  the.jwt.token\n").unwrap();
        let p = path.to_str().unwrap();
        let config = parse(&["--name", "a", "--mesh", "m", "--dataplane-token-file", p])
            .unwrap()
            .resolve()
            .unwrap();
        assert_eq!(config.token.unwrap().expose(), "the.jwt.token");
        std::fs::write(&path, "\n").unwrap();
        let err = parse(&["--name", "a", "--mesh", "m", "--dataplane-token-file", p])
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(err.to_string().contains("is empty"), "{err}");
        let err = parse(&[
            "--name",
            "a",
            "--mesh",
            "m",
            "--dataplane-token-file",
            "/nonexistent/t",
        ])
        .unwrap()
        .resolve()
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--dataplane-token-file /nonexistent/t: "),
            "{err}"
        );
    }

    #[test]
    fn the_template_is_rendered_and_gives_name_and_mesh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dp.yaml");
        std::fs::write(&path, WEB).unwrap();
        let config = parse(&[
            "-d",
            path.to_str().unwrap(),
            "-v",
            "name=web-7",
            "--dataplane-var",
            "port=10001",
        ])
        .unwrap()
        .resolve()
        .unwrap();
        assert_eq!(
            (config.name.as_str(), config.mesh.as_str()),
            ("web-7", "default")
        );
        let resource = config.dataplane_resource.unwrap();
        assert!(
            resource.contains("name: web-7") && resource.contains("port: 10001"),
            "{resource}"
        );

        let err = parse(&["--dataplane", WEB, "-v", "name=web-7"])
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(err.to_string().contains("{{ port }} has no value"), "{err}");
        let err = parse(&[
            "--dataplane",
            WEB,
            "-v",
            "name=a",
            "-v",
            "port=1",
            "--name",
            "b",
        ])
        .unwrap()
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("--name \"b\" differs"), "{err}");
        let err = parse(&["--dataplane", WEB, "-v", "name=a", "-v", "name=b"])
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(err.to_string().contains("given twice"), "{err}");
        assert!(parse(&["--dataplane", WEB, "-d", "/x"]).is_err());
        assert!(parse(&["-v", "novalue"]).is_err());
    }

    #[test]
    fn bad_combinations_name_the_flag() {
        let cases: &[(&[&str], &str)] = &[
            (&["--mesh", "m"], "--name is required"),
            (&["--name", "a"], "--mesh is required"),
            (
                &["--name", "a", "--mesh", "m", "--cp-address", "grpc://x:1"],
                "--cp-address \"grpc://x:1\": the scheme",
            ),
            (
                &["--name", "a", "--mesh", "m", "--cp-address", "nope"],
                "--cp-address \"nope\"",
            ),
            (
                &["--name", "a", "--mesh", "m", "--skip-verify"],
                "only for an https --cp-address",
            ),
            (
                &["--dataplane", "type: Mesh\nname: x\n"],
                "type: must be Dataplane",
            ),
            (&["--dataplane", "[1, 2]"], "must be an object"),
            (
                &["--name", "a", "--mesh", "m", "-v", "a=b"],
                "without --dataplane",
            ),
        ];
        for (args, want) in cases {
            let err = parse(args).unwrap().resolve().unwrap_err();
            assert!(
                err.to_string().contains(want),
                "{args:?}: want {want:?}, got {err}"
            );
        }
        for args in [
            &["--admin-port", "0"][..],
            &["--admin-port", "70000"],
            &["--drain-time", "soon"],
            &["--proxy-type", "gateway"],
            &["--concurrency", "0"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn an_ingress_needs_no_mesh() {
        let config = parse(&["--proxy-type", "ingress", "--name", "ingress-1"])
            .unwrap()
            .resolve()
            .unwrap();
        assert_eq!(config.proxy_type.as_str(), "ingress");
        assert_eq!(config.mesh, "");
    }
}
