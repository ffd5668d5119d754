//! The kumactl configuration file (`~/.kumactl/config`): Kuma's YAML form of
//! `kumactl.config.v1alpha1.Configuration` (camelCase keys; snake_case accepted on input),
//! control planes, contexts and the current context.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Why the configuration file could not be used. The messages are Kuma's.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("Failed to access configuration file {0:?}")]
    Access(PathBuf),
    #[error("Failed to read configuration from file {path:?}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("Failed to parse configuration from file {path:?}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("Failed to create a directory {path:?}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("Failed to write configuration into file {path:?}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Configuration {
    #[serde(
        default,
        alias = "control_planes",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub control_planes: Vec<ControlPlane>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contexts: Vec<Context>,
    #[serde(
        default,
        alias = "current_context",
        skip_serializing_if = "String::is_empty"
    )]
    pub current_context: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ControlPlane {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default)]
    pub coordinates: Coordinates,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Coordinates {
    #[serde(default, alias = "api_server")]
    pub api_server: ApiServer,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiServer {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    #[serde(
        default,
        alias = "ca_cert_file",
        skip_serializing_if = "String::is_empty"
    )]
    pub ca_cert_file: String,
    #[serde(
        default,
        alias = "client_cert_file",
        skip_serializing_if = "String::is_empty"
    )]
    pub client_cert_file: String,
    #[serde(
        default,
        alias = "client_key_file",
        skip_serializing_if = "String::is_empty"
    )]
    pub client_key_file: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<Header>,
    #[serde(default, alias = "auth_type", skip_serializing_if = "String::is_empty")]
    pub auth_type: String,
    #[serde(
        default,
        alias = "auth_conf",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub auth_conf: BTreeMap<String, String>,
    #[serde(default, alias = "skip_verify", skip_serializing_if = "is_false")]
    pub skip_verify: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Header {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Context {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(
        default,
        alias = "control_plane",
        skip_serializing_if = "String::is_empty"
    )]
    pub control_plane: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<ContextDefaults>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContextDefaults {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mesh: String,
}

/// The address of the control plane kumactl talks to when nothing was configured.
pub const DEFAULT_URL: &str = "http://localhost:5681";

impl Configuration {
    /// Kuma's first-use configuration: one control plane `local` at localhost:5681.
    pub fn default_config() -> Self {
        Configuration {
            control_planes: vec![ControlPlane {
                name: "local".into(),
                coordinates: Coordinates {
                    api_server: ApiServer {
                        url: DEFAULT_URL.into(),
                        ..ApiServer::default()
                    },
                },
            }],
            contexts: vec![Context {
                name: "local".into(),
                control_plane: "local".into(),
                defaults: None,
            }],
            current_context: "local".into(),
        }
    }

    pub fn context(&self, name: &str) -> Option<&Context> {
        self.contexts.iter().find(|c| c.name == name)
    }

    pub fn current(&self) -> Option<&Context> {
        self.context(&self.current_context)
    }

    pub fn control_plane(&self, name: &str) -> Option<&ControlPlane> {
        self.control_planes.iter().find(|c| c.name == name)
    }

    /// Adds a context; an existing one of that name is replaced only with `force`.
    pub fn add_context(&mut self, context: Context, force: bool) -> bool {
        match self.contexts.iter_mut().find(|c| c.name == context.name) {
            Some(_) if !force => false,
            Some(old) => {
                *old = context;
                true
            }
            None => {
                self.contexts.push(context);
                true
            }
        }
    }

    /// Removes a context; when it was current, the first remaining one becomes current.
    pub fn remove_context(&mut self, name: &str) -> bool {
        let Some(i) = self.contexts.iter().position(|c| c.name == name) else {
            return false;
        };
        self.contexts.remove(i);
        if self.current_context == name {
            self.current_context = self
                .contexts
                .first()
                .map(|c| c.name.clone())
                .unwrap_or_default();
        }
        true
    }

    pub fn switch_context(&mut self, name: &str) -> bool {
        if self.context(name).is_none() {
            return false;
        }
        self.current_context = name.to_string();
        true
    }

    /// Adds a control plane; an existing one of that name is replaced only with `force`.
    pub fn add_control_plane(&mut self, cp: ControlPlane, force: bool) -> bool {
        match self.control_planes.iter_mut().find(|c| c.name == cp.name) {
            Some(_) if !force => false,
            Some(old) => {
                *old = cp;
                true
            }
            None => {
                self.control_planes.push(cp);
                true
            }
        }
    }

    /// Removes a control plane and every context that uses it.
    pub fn remove_control_plane(&mut self, name: &str) -> bool {
        let Some(i) = self.control_planes.iter().position(|c| c.name == name) else {
            return false;
        };
        let contexts: Vec<String> = self
            .contexts
            .iter()
            .filter(|c| c.control_plane == name)
            .map(|c| c.name.clone())
            .collect();
        for context in contexts {
            self.remove_context(&context);
        }
        self.control_planes.remove(i);
        true
    }

    /// The YAML kumactl writes (keys sorted, empty values left out).
    pub fn to_yaml(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        crate::yaml::to_yaml(&value)
    }

    pub fn from_yaml(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Configuration::default());
        }
        serde_yaml_ng::from_str(text).map_err(|e| e.to_string())
    }
}

/// `$HOME/.kumactl/config`.
pub fn default_path() -> PathBuf {
    let home = std::env::var_os("HOME").unwrap_or_default();
    PathBuf::from(home).join(".kumactl").join("config")
}

/// Reads the file at `path`.
pub fn load(path: &Path) -> Result<Configuration, ConfigError> {
    if !path.is_file() {
        return Err(ConfigError::Access(path.to_path_buf()));
    }
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Configuration::from_yaml(&text).map_err(|message| ConfigError::Parse {
        path: path.to_path_buf(),
        message,
    })
}

/// Writes `config` to `path` (mode 0600), creating its directory (0755) when missing.
pub fn save(path: &Path, config: &Configuration) -> Result<(), ConfigError> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        create_dir(dir).map_err(|source| ConfigError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    write_private(path, config.to_yaml().as_bytes()).map_err(|source| ConfigError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(unix)]
fn create_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
}

#[cfg(not(unix))]
fn create_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Writes a file readable only by its owner (like Go's `os.WriteFile(f, b, 0o600)`, which
/// keeps the mode of an existing file).
pub fn write_file_mode(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path)?;
    file.write_all(contents)
}

fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_file_mode(path, contents, 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_yaml_is_kumas() {
        assert_eq!(
            Configuration::default_config().to_yaml(),
            "contexts:\n- controlPlane: local\n  name: local\ncontrolPlanes:\n- coordinates:\n    apiServer:\n      url: http://localhost:5681\n  name: local\ncurrentContext: local\n"
        );
    }

    #[test]
    fn round_trip_in_a_temp_dir() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("nested").join("config");
        let mut config = Configuration::default_config();
        let mut auth_conf = BTreeMap::new();
        auth_conf.insert("token".to_string(), "abc".to_string());
        assert!(config.add_control_plane(
            ControlPlane {
                name: "prod".into(),
                coordinates: Coordinates {
                    api_server: ApiServer {
                        url: "https://prod:5682".into(),
                        ca_cert_file: "/ca.pem".into(),
                        skip_verify: true,
                        auth_type: "tokens".into(),
                        auth_conf,
                        headers: vec![Header {
                            key: "X-A".into(),
                            value: "1".into()
                        }],
                        ..ApiServer::default()
                    }
                }
            },
            false
        ));
        assert!(config.add_context(
            Context {
                name: "prod".into(),
                control_plane: "prod".into(),
                defaults: Some(ContextDefaults {
                    mesh: "default".into()
                }),
            },
            false
        ));
        assert!(config.switch_context("prod"));
        save(&path, &config).expect("save");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains("currentContext: prod\n"), "{text}");
        assert!(
            text.contains("      authConf:\n        token: abc\n"),
            "{text}"
        );
        assert!(text.contains("defaults:\n    mesh: default"), "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(load(&path).expect("load"), config);
    }

    #[test]
    fn snake_case_input_and_removal() {
        let mut config = Configuration::from_yaml(
            "control_planes:\n- name: a\n  coordinates:\n    api_server:\n      url: http://a\ncontexts:\n- name: a\n  control_plane: a\ncurrent_context: a\n",
        )
        .expect("parse");
        assert_eq!(
            config.control_planes[0].coordinates.api_server.url,
            "http://a"
        );
        assert!(config.remove_control_plane("a"));
        assert!(config.contexts.is_empty());
        assert_eq!(config.current_context, "");
        assert!(!config.remove_control_plane("a"));
    }
}
