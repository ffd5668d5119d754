//! What every command starts from (Kuma's `RootContext`): the configuration file (written
//! with the default `local` control plane on first use), the current control plane, the
//! mesh and the API timeout.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};

use crate::cli::Cli;
use crate::client::{ApiClient, ClientError, fetch_index};
use crate::config::{self, Configuration, ControlPlane};

/// The product name a Kuma control plane reports.
pub const PRODUCT: &str = "Kuma";

pub struct Root {
    pub config: Configuration,
    pub config_path: PathBuf,
    pub context_override: Option<String>,
    pub api_timeout: Duration,
    pub mesh: String,
}

impl Root {
    /// Loads the configuration as kumactl does before every command: with `--no-config` the
    /// default in memory; otherwise the file, first written with the default when missing.
    pub fn load(cli: &Cli) -> Result<Root> {
        let config_path = cli.config_file.clone().unwrap_or_else(config::default_path);
        let config = if cli.no_config {
            Configuration::default_config()
        } else {
            if !config_path.exists() {
                config::save(&config_path, &Configuration::default_config())?;
            }
            config::load(&config_path)?
        };
        Ok(Root {
            config,
            config_path,
            context_override: cli.context.clone(),
            api_timeout: cli.api_timeout,
            mesh: cli.mesh.clone(),
        })
    }

    pub fn save(&self) -> Result<()> {
        config::save(&self.config_path, &self.config)?;
        Ok(())
    }

    /// The control plane of the current context (or of `--context`).
    pub fn current_control_plane(&self) -> Result<&ControlPlane> {
        if self.config.current_context.is_empty() {
            return Err(anyhow!(
                "active Control Plane is not set. Use `kumactl config control-planes add` to add a Control Plane and make it active"
            ));
        }
        let broken = || {
            anyhow!(
                "apparently, configuration is broken. Use `kumactl config control-planes add` to add a Control Plane and make it active"
            )
        };
        let current = self.config.current().ok_or_else(broken)?;
        let cp_name = match &self.context_override {
            Some(name) => self
                .config
                .context(name)
                .map_or(name.as_str(), |c| c.control_plane.as_str()),
            None => current.control_plane.as_str(),
        };
        self.config.control_plane(cp_name).ok_or_else(broken)
    }

    /// A client for the current control plane.
    pub fn client(&self) -> Result<ApiClient> {
        let cp = self.current_control_plane()?;
        ApiClient::new(&cp.coordinates.api_server, self.api_timeout)
            .with_context(|| format!("failed to create a client for Control Plane {:?}", cp.name))
    }

    /// Kuma's `CheckCompatibility`: asks `GET /` and warns on stderr when that fails or the
    /// server is not Kuma. Never fails the command. An unreachable server is not reported here:
    /// the command's own request fails right after with the explanation.
    pub async fn check_compatibility(&self, client: &ApiClient) {
        match fetch_index(client).await {
            // The command itself fails with the same explanation right after.
            Err(ClientError::Connect { .. }) => {}
            Err(e) => eprintln!(
                "WARNING: Failed to retrieve server version, can't check compatibility: Unable to retrieve server version: {e}"
            ),
            Ok(index) => {
                let product = index.product_name();
                if product != PRODUCT && !index.version.contains("preview") {
                    eprintln!(
                        "WARNING: You are using kumactl version {} for {PRODUCT}, but the server returned version: {} for {product}",
                        crate::client::VERSION,
                        index.version
                    );
                }
            }
        }
    }
}
