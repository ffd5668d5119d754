//! Reading a config: the YAML file over the defaults, then the environment, then `~` and
//! derived paths, then validation.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_yaml_ng::{Mapping, Value as Yaml};

use super::env::vars;
use super::settings::{self, SETTINGS, Setting};
use super::{Config, Env, Error, Problem};

/// A loaded configuration and what the binary should log about it.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Warning>,
}

/// Something odd in the environment that does not stop the control plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Warning {
    /// A `KUMA_*` variable that names no setting (it may belong to another Kuma tool).
    UnknownEnv { var: String },
    /// Two spellings of one setting's variable with different values; `used` wins.
    ConflictingEnv {
        key: &'static str,
        used: &'static str,
        ignored: &'static str,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownEnv { var } => write!(f, "{var}: no such setting, ignored"),
            Self::ConflictingEnv { key, used, ignored } => {
                write!(
                    f,
                    "{used} and {ignored} both set {key} differently; using {used}"
                )
            }
        }
    }
}

pub(crate) fn load(file: Option<&Path>, env: &Env) -> Result<Loaded, Error> {
    let mut config = Config::default();
    let mut problems = Vec::new();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        let yaml = parse_yaml(&text, path)?;
        apply_yaml(&mut config, &yaml, &mut problems);
    }
    let warnings = apply_env(&mut config, env, &mut problems);
    if !problems.is_empty() {
        return Err(Error::Invalid(problems));
    }
    resolve_paths(&mut config, env.get(vars::HOME))?;
    config.validate()?;
    Ok(Loaded { config, warnings })
}

pub(crate) fn from_yaml_str(text: &str) -> Result<Config, Error> {
    let mut config = Config::default();
    let mut problems = Vec::new();
    let yaml = parse_yaml(text, Path::new("(string)"))?;
    apply_yaml(&mut config, &yaml, &mut problems);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(Error::Invalid(problems))
    }
}

fn parse_yaml(text: &str, path: &Path) -> Result<Mapping, Error> {
    let syntax = |message: String| Error::Syntax {
        path: path.to_owned(),
        message,
    };
    match serde_yaml_ng::from_str::<Yaml>(text).map_err(|e| syntax(e.to_string()))? {
        Yaml::Null => Ok(Mapping::new()),
        Yaml::Mapping(mapping) => Ok(mapping),
        _ => Err(syntax(
            "expected a mapping of settings at the top level".to_owned(),
        )),
    }
}

/// Sets every setting the YAML mapping names; every unknown key and bad value is a problem.
pub(crate) fn apply_yaml(config: &mut Config, yaml: &Mapping, problems: &mut Vec<Problem>) {
    walk(config, "", yaml, problems);
}

fn walk(config: &mut Config, prefix: &str, mapping: &Mapping, problems: &mut Vec<Problem>) {
    for (name, value) in mapping {
        let name = scalar_text(name).unwrap_or_else(|| "?".to_owned());
        let key = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}.{name}")
        };
        if let Some(setting) = settings::by_key(&key) {
            match scalar_text(value) {
                Some(text) => {
                    if let Err(reason) = (setting.set)(config, &text) {
                        let value = shown(setting, text);
                        problems.push(Problem::InvalidValue { key, value, reason });
                    }
                }
                None => problems.push(Problem::WrongShape {
                    key,
                    expected: "a single value",
                }),
            }
        } else if settings::is_section(&key) {
            match value {
                Yaml::Mapping(inner) => walk(config, &key, inner, problems),
                Yaml::Null => {}
                _ => problems.push(Problem::WrongShape {
                    key,
                    expected: "a mapping of settings",
                }),
            }
        } else {
            problems.push(Problem::UnknownKey { key });
        }
    }
}

/// A YAML scalar as the text an environment variable would hold; `None` for lists and maps.
fn scalar_text(value: &Yaml) -> Option<String> {
    match value {
        Yaml::Null => Some(String::new()),
        Yaml::Bool(b) => Some(b.to_string()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::String(s) => Some(s.clone()),
        Yaml::Sequence(_) | Yaml::Mapping(_) | Yaml::Tagged(_) => None,
    }
}

/// The value as an error may show it: secrets are masked.
fn shown(setting: &Setting, text: String) -> String {
    if setting.is_secret() {
        "*****".to_owned()
    } else {
        text
    }
}

/// Sets every setting whose variable is set; returns the warnings. Kuma's alternative
/// spellings are read first so that the documented name wins.
pub(crate) fn apply_env(
    config: &mut Config,
    env: &Env,
    problems: &mut Vec<Problem>,
) -> Vec<Warning> {
    let mut warnings = Vec::new();
    for setting in SETTINGS {
        let mut used: Option<(&'static str, &str)> = None;
        for var in setting.aliases.iter().copied().chain([setting.env]) {
            let Some(value) = env.get(var) else { continue };
            if let Some((previous, previous_value)) = used
                && previous_value != value
            {
                warnings.push(Warning::ConflictingEnv {
                    key: setting.key,
                    used: var,
                    ignored: previous,
                });
            }
            if let Err(reason) = (setting.set)(config, value) {
                let value = shown(setting, value.to_owned());
                problems.push(Problem::InvalidEnv {
                    var: var.to_owned(),
                    value,
                    reason,
                });
            }
            used = Some((var, value));
        }
    }
    for var in env.names().filter(|name| name.starts_with("KUMA_")) {
        if !SETTINGS
            .iter()
            .any(|s| s.env_names().any(|name| name == var))
        {
            warnings.push(Warning::UnknownEnv {
                var: var.to_owned(),
            });
        }
    }
    warnings
}

/// Expands `~` in `general.workDir` and `store.sqlite.path`, and derives the SQLite path from
/// the work dir when it is unset.
fn resolve_paths(config: &mut Config, home: Option<&str>) -> Result<(), Error> {
    let mut problems = Vec::new();
    let mut expand = |key: &str, path: &mut PathBuf| match expand_home(path, home) {
        Some(expanded) => *path = expanded,
        None => problems.push(Problem::Rule {
            key: key.to_owned(),
            message: format!("{} starts with ~ but HOME is not set", path.display()),
        }),
    };
    expand("general.workDir", &mut config.general.work_dir);
    match &mut config.store.sqlite.path {
        Some(path) => expand("store.sqlite.path", path),
        None => config.store.sqlite.path = Some(config.general.work_dir.join("kuma.db")),
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(problems))
    }
}

/// `path` with a leading `~` replaced by `home`; `None` when it needs `home` and has none.
fn expand_home(path: &Path, home: Option<&str>) -> Option<PathBuf> {
    let Ok(rest) = path.strip_prefix("~") else {
        return Some(path.to_owned());
    };
    let home = Path::new(home.filter(|h| !h.is_empty())?);
    Some(if rest.as_os_str().is_empty() {
        home.to_owned()
    } else {
        home.join(rest)
    })
}
