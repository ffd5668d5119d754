//! The command line: kumactl's commands and flags (`app/kumactl/cmd/**` in Kuma), with the
//! older spellings users still type (`--dataplane`, `--cp-hostname`, `--admin-client-cert`)
//! accepted as hidden aliases.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::go::{duration_arg, key_values_arg};
use crate::output::Format;

type KeyValues = Vec<(String, String)>;

#[derive(Debug, Parser)]
#[command(
    name = "kumactl",
    about = "Management tool for Kuma",
    long_about = "Management tool for Kuma.",
    version
)]
pub struct Cli {
    /// path to the configuration file to use
    #[arg(long, global = true, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// context to use
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// log level
    #[arg(long, global = true, value_enum, default_value_t = LogLevel::Off)]
    pub log_level: LogLevel,
    /// if set no config file and config directory will be created
    #[arg(long, global = true)]
    pub no_config: bool,
    /// the timeout for api calls. It includes connection time, any redirects, and reading the
    /// response body. A timeout of zero means no timeout
    #[arg(long, global = true, default_value = "1m", value_parser = duration_arg)]
    pub api_timeout: Duration,
    /// mesh to use
    #[arg(short = 'm', long, global = true, default_value = "default")]
    pub mesh: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Off,
    Info,
    Debug,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or modify Kuma resources
    Apply(ApplyArgs),
    /// Modify kumactl config files
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Delete Kuma resources
    Delete(DeleteArgs),
    /// Generate resources, tokens, etc
    Generate {
        #[command(subcommand)]
        command: GenerateCommand,
    },
    /// Show Kuma resources
    Get(GetArgs),
    /// Inspect Kuma resources
    Inspect(InspectArgs),
    /// Print version
    Version {
        /// Print detailed version
        #[arg(short = 'a', long)]
        detailed: bool,
    },
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Path to file or directory to apply. When a directory is provided, all .yaml, .yml, and
    /// .json files are applied. Pass `-` to read from stdin
    #[arg(short = 'f', long, required = true)]
    pub file: String,
    /// Variable to replace in configuration
    #[arg(short = 'v', long = "var", value_parser = key_values_arg)]
    pub vars: Vec<KeyValues>,
    /// Resolve variable and prints result out without actual applying
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Show kumactl config
    View,
    /// Manage known Control Planes
    #[command(name = "control-planes")]
    ControlPlanes {
        #[command(subcommand)]
        command: ControlPlanesCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ControlPlanesCommand {
    /// Add a Control Plane
    Add(AddControlPlaneArgs),
    /// List Control Planes
    List,
    /// Remove a Control Plane
    Remove(NameArg),
    /// Switch active Control Plane
    #[command(alias = "use")]
    Switch(NameArg),
}

#[derive(Debug, Args)]
pub struct NameArg {
    /// reference name for the Control Plane (required)
    #[arg(long = "name", value_name = "NAME")]
    pub flag: Option<String>,
    #[arg(value_name = "NAME", conflicts_with = "flag")]
    pub positional: Option<String>,
}

impl NameArg {
    pub fn name(&self) -> Option<&str> {
        self.flag.as_deref().or(self.positional.as_deref())
    }
}

#[derive(Debug, Args)]
pub struct AddControlPlaneArgs {
    /// reference name for the Control Plane (required)
    #[arg(long, required = true)]
    pub name: String,
    /// URL of the Control Plane API Server (required). Example: http://localhost:5681 or
    /// https://localhost:5682)
    #[arg(long, required = true)]
    pub address: String,
    /// overwrite existing Control Plane with the same reference name
    #[arg(long)]
    pub overwrite: bool,
    /// path to the certificate of a client that is authorized to use the Admin operations of
    /// the Control Plane (kumactl stores only a reference to this file)
    #[arg(long, alias = "admin-client-cert", default_value = "")]
    pub client_cert_file: String,
    /// path to the certificate key of a client that is authorized to use the Admin operations
    /// of the Control Plane (kumactl stores only a reference to this file)
    #[arg(long, alias = "admin-client-key", default_value = "")]
    pub client_key_file: String,
    /// path to the certificate authority which will be used to verify the Control Plane
    /// certificate (kumactl stores only a reference to this file)
    #[arg(long, default_value = "")]
    pub ca_cert_file: String,
    /// skip CA verification
    #[arg(long)]
    pub skip_verify: bool,
    /// add these headers while communicating to control plane, format key=value
    #[arg(long, value_parser = key_values_arg)]
    pub headers: Vec<KeyValues>,
    /// authentication type (for example: "tokens")
    #[arg(long, default_value = "")]
    pub auth_type: String,
    /// authentication configuration for defined authentication type format key=value
    #[arg(long, value_parser = key_values_arg)]
    pub auth_conf: Vec<KeyValues>,
    /// skip checking if we can connect to the CP
    #[arg(long)]
    pub skip_check: bool,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// the resource type, e.g. traffic-permission
    #[arg(value_name = "TYPE")]
    pub type_arg: String,
    pub name: String,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// output format
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// maximum number of elements to return
    #[arg(long)]
    pub size: Option<u32>,
    /// the offset that indicates starting element of the resources list to retrieve
    #[arg(long)]
    pub offset: Option<String>,
    /// the resource type: a plural (meshes, traffic-permissions) lists, a singular with a
    /// NAME shows one
    #[arg(value_name = "TYPE")]
    pub type_arg: String,
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// output format
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table, global = true)]
    pub output: Format,
    #[command(subcommand)]
    pub command: InspectCommand,
}

#[derive(Debug, Subcommand)]
pub enum InspectCommand {
    /// Inspect Dataplanes
    Dataplanes {
        /// filter by tag in format of key=value. You can provide many tags
        #[arg(long, value_parser = key_values_arg)]
        tag: Vec<KeyValues>,
        /// filter gateway dataplanes
        #[arg(long)]
        gateway: bool,
        /// filter ingress dataplanes
        #[arg(long)]
        ingress: bool,
    },
    /// Inspect Meshes
    Meshes,
    /// Inspect Services
    Services,
    /// Inspect Zones
    Zones,
    /// Inspect Zone Ingresses
    #[command(alias = "zone-ingresses")]
    Zoneingresses,
    /// Inspect Zone Egresses
    Zoneegresses,
}

#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// Generate Dataplane Token
    DataplaneToken(DataplaneTokenArgs),
    /// Generate Zone Token
    ZoneToken(ZoneTokenArgs),
    /// Generate User Token
    UserToken(UserTokenArgs),
    /// Generate signing keys
    SigningKey {
        /// format of signing key. Available values: pem-base64, pem
        #[arg(long, default_value = "pem-base64")]
        format: String,
    },
    /// Generate a TLS certificate
    TlsCertificate(TlsCertificateArgs),
}

#[derive(Debug, Args)]
pub struct DataplaneTokenArgs {
    /// name of the Dataplane
    #[arg(long, alias = "dataplane", default_value = "")]
    pub name: String,
    /// type of the Dataplane ("dataplane", "ingress")
    #[arg(long, alias = "type", default_value = "")]
    pub proxy_type: String,
    /// required tag values for dataplane (split values by comma to provide multiple values)
    #[arg(long, value_parser = key_values_arg)]
    pub tag: Vec<KeyValues>,
    /// required workload label value for dataplane
    #[arg(long, default_value = "")]
    pub workload: String,
    /// how long the token will be valid (for example "24h")
    #[arg(long, required = true, value_parser = duration_arg)]
    pub valid_for: Duration,
    #[command(flatten)]
    pub signing: OfflineSigning,
}

#[derive(Debug, Args)]
pub struct OfflineSigning {
    /// path to a file that contains private signing key. When specified, control plane won't
    /// be used to issue the token.
    #[arg(long, default_value = "")]
    pub signing_key_path: String,
    /// ID of the key that is used to issue a token. Required when --signing-key-path is used.
    #[arg(long, default_value = "")]
    pub kid: String,
}

#[derive(Debug, Args)]
pub struct ZoneTokenArgs {
    /// name of the zone where resides
    #[arg(long, required = true)]
    pub zone: String,
    /// scope of resources which the token will be able to identify (can be: [ingress egress cp]; cp: a zone control plane dialling the global)
    #[arg(long, value_delimiter = ',', default_values_t = ["ingress".to_string(), "egress".to_string()])]
    pub scope: Vec<String>,
    /// how long the token will be valid (for example "24h")
    #[arg(long, required = true, value_parser = duration_arg)]
    pub valid_for: Duration,
    #[command(flatten)]
    pub signing: OfflineSigning,
}

#[derive(Debug, Args)]
pub struct UserTokenArgs {
    /// name of the user
    #[arg(long, required = true)]
    pub name: String,
    /// group of the user
    #[arg(long, value_delimiter = ',')]
    pub group: Vec<String>,
    /// how long the token will be valid (for example "24h")
    #[arg(long, required = true, value_parser = duration_arg)]
    pub valid_for: Duration,
    #[command(flatten)]
    pub signing: OfflineSigning,
}

#[derive(Debug, Args)]
pub struct TlsCertificateArgs {
    /// type of the certificate: one of client|server
    #[arg(long = "type", required = true)]
    pub cert_type: String,
    /// DNS hostname(s) to issue the certificate for
    #[arg(long, alias = "cp-hostname", value_delimiter = ',', required = true)]
    pub hostname: Vec<String>,
    /// path to a file with a generated private key ('-' for stdout)
    #[arg(long, default_value = "key.pem")]
    pub key_file: String,
    /// path to a file with a generated TLS certificate ('-' for stdout)
    #[arg(long, default_value = "cert.pem")]
    pub cert_file: String,
    /// type of the private key: one of rsa|ecdsa
    #[arg(long, default_value = "")]
    pub key_type: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_users_type() {
        let cli = Cli::try_parse_from([
            "kumactl",
            "apply",
            "-f",
            "-",
            "-v",
            "a=1",
            "--var",
            "b=2,c=3",
            "--dry-run",
        ])
        .expect("apply");
        let Command::Apply(args) = cli.command else {
            panic!("apply")
        };
        assert_eq!(args.vars.concat().len(), 3);
        let cli = Cli::try_parse_from(["kumactl", "get", "meshes", "-o", "yaml", "--size", "2"])
            .expect("get");
        assert!(matches!(
            cli.command,
            Command::Get(GetArgs {
                output: Format::Yaml,
                size: Some(2),
                ..
            })
        ));
        let cli = Cli::try_parse_from([
            "kumactl",
            "generate",
            "dataplane-token",
            "--dataplane=web-dp",
            "--valid-for",
            "24h",
            "-m",
            "demo",
        ])
        .expect("token");
        assert_eq!(cli.mesh, "demo");
        let cli = Cli::try_parse_from(["kumactl", "inspect", "dataplanes", "-o", "json"])
            .expect("inspect");
        assert!(matches!(
            cli.command,
            Command::Inspect(InspectArgs {
                output: Format::Json,
                ..
            })
        ));
    }
}
