//! Showing a config: `/config` JSON, the defaults file and the settings page, all from the
//! settings table.

use std::fmt::Write as _;

use serde_json::{Map, Value as Json};

use super::Config;
use super::settings::{SECTIONS, SETTINGS, Section, Setting};

/// What `/config` shows in place of a secret.
pub(crate) const MASK: &str = "*****";

pub(crate) fn sanitized(config: &Config) -> Json {
    let mut root = Map::new();
    for setting in SETTINGS {
        let value = if setting.is_secret() {
            Json::from(MASK)
        } else {
            setting.value(config)
        };
        insert(&mut root, setting.key, value);
    }
    Json::Object(root)
}

fn insert(root: &mut Map<String, Json>, key: &str, value: Json) {
    let mut node = root;
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            node.insert(part.to_owned(), value);
            return;
        }
        let child = node
            .entry(part.to_owned())
            .or_insert_with(|| Json::Object(Map::new()));
        if !child.is_object() {
            *child = Json::Object(Map::new());
        }
        let Json::Object(child) = child else { return };
        node = child;
    }
}

fn section_of(key: &str) -> Option<&'static Section> {
    SECTIONS.iter().find(|s| s.contains(key))
}

/// A default value as a YAML scalar.
fn yaml_scalar(value: &Json) -> String {
    match value {
        Json::String(s) if s.is_empty() => "\"\"".to_owned(),
        Json::String(s) => serde_yaml_ng::to_string(s)
            .map(|yaml| yaml.trim_end().to_owned())
            .unwrap_or_else(|_| format!("{s:?}")),
        other => other.to_string(),
    }
}

fn env_comment(setting: &Setting) -> String {
    let mut comment = format!("ENV: {}", setting.env);
    for alias in setting.aliases {
        let _ = write!(comment, " (also {alias})");
    }
    comment
}

/// `cp/kuma-cp.defaults.yaml`: every setting with its default, meaning and variable.
pub fn defaults_yaml() -> String {
    let defaults = Config::default();
    let mut out = String::from(
        "# Every kuma-rs control plane setting with its default value and the environment variable\n\
         # that overrides it. Pass a file like this one with `--config-file`; keys left out keep\n\
         # their defaults. See docs/settings.md.\n\
         #\n\
         # Generated from cp/src/config/settings.rs: run `UPDATE_GENERATED=1 cargo test -p cp`\n\
         # after changing a setting. A test fails when this file is stale.\n\n",
    );
    let mut open: Vec<&str> = Vec::new();
    let mut section: Option<&str> = None;
    let mut group: Option<&str> = None;
    for setting in SETTINGS {
        let parts: Vec<&str> = setting.key.split('.').collect();
        let (leaf, parents) = parts.split_last().unwrap_or((&setting.key, &[]));
        // Top-level keys without children form one group; a blank line separates groups.
        let this_group = parents.first().copied().unwrap_or("");
        if group.is_some_and(|g| g != this_group) {
            out.push('\n');
        }
        group = Some(this_group);
        let mut banner = None;
        let this_section = section_of(setting.key);
        if this_section.map(|s| s.prefix) != section {
            section = this_section.map(|s| s.prefix);
            banner = this_section;
        }
        let common = open.iter().zip(parents).take_while(|(a, b)| a == b).count();
        // The banner goes before the header of the section's own key, or before the leaf.
        let mut write_banner = |out: &mut String, level: usize| {
            let depth = |s: &Section| {
                s.prefix
                    .split('.')
                    .filter(|p| !p.is_empty())
                    .count()
                    .saturating_sub(1)
            };
            if let Some(s) = banner.filter(|s| depth(s) == level) {
                let _ = writeln!(out, "{}# === {} ===", "  ".repeat(level), s.title);
                banner = None;
            }
        };
        for (level, parent) in parents.iter().enumerate().skip(common) {
            write_banner(&mut out, level);
            let _ = writeln!(out, "{}{parent}:", "  ".repeat(level));
        }
        write_banner(&mut out, parents.len());
        let indent = "  ".repeat(parents.len());
        let value = yaml_scalar(&setting.value(&defaults));
        let _ = writeln!(out, "{indent}# {}", setting.help);
        let _ = writeln!(out, "{indent}{leaf}: {value} # {}", env_comment(setting));
        open = parents.to_vec();
    }
    out
}

/// `docs/settings.md`: the user's page of every setting, grouped by section.
pub fn settings_markdown() -> String {
    let defaults = Config::default();
    let mut out = String::from(
        "# Control plane settings\n\
         \n\
         <!-- Generated from cp/src/config/settings.rs by `UPDATE_GENERATED=1 cargo test -p cp`. Do not edit by hand: a test fails when this page is stale. -->\n\
         \n\
         A kuma-rs control plane (global or zone) reads its settings in three layers, each\n\
         overriding the one before:\n\
         \n\
         1. the defaults below (also in [`cp/kuma-cp.defaults.yaml`](../cp/kuma-cp.defaults.yaml),\n\
         \x20  a complete commented file to start from);\n\
         2. a YAML file given with `--config-file`, using the keys below (Kuma's camelCase names,\n\
         \x20  nested: `apiServer.http.port` is `port` under `http` under `apiServer`);\n\
         3. environment variables, named as in Kuma (`KUMA_API_SERVER_HTTP_PORT=5681`).\n\
         \n\
         Names, meanings and defaults follow Kuma, so an existing Kuma configuration carries over.\n\
         Where kuma-rs differs: `store.type` defaults to `sqlite` (Kuma: `memory`);\n\
         `apiServer.https.enabled` defaults to `false` (its port, 5682, is also the bootstrap\n\
         server's); the zone health check is on by default (Kuma: off); zones authenticate to the\n\
         global with a zone token by default (`multizone.global.kds.auth.type`; Kuma OSS trusts\n\
         the zone's name); the restart backoff is 1s to 30s (Kuma: 5s to 1m); and\n\
         `stallTimeout` and the `auth` token settings of a zone are kuma-rs settings.\n\
         Where Kuma's documentation and its code spell a variable differently, both\n\
         spellings work; the second is listed as \"also\".\n\
         \n\
         Value formats:\n\
         \n\
         - **durations** are written as in Go: `500ms`, `1s`, `10m`, `1h30m`; where a duration is a\n\
         \x20 period or a timeout, `0` is refused;\n\
         - **booleans** are `true` or `false`;\n\
         - **paths** left empty mean \"not set\"; `~` at the start of `general.workDir` and\n\
         \x20 `store.sqlite.path` is the home directory (`HOME`).\n\
         \n\
         A key in the file that is not listed here, or a value that cannot be read, stops the\n\
         control plane with an error naming the key (for example\n\
         `apiServer.http.port: invalid value \"abc\": expected a port number (1-65535)`) or the\n\
         variable (`KUMA_API_SERVER_HTTP_PORT=\"abc\": ...`). A `KUMA_*` variable that names no\n\
         setting is only logged as a warning, since other Kuma tools use the same prefix.\n\
         The running configuration, with passwords and tokens masked, is served at `/config`.\n",
    );
    for section in SECTIONS {
        let _ = write!(
            out,
            "\n## {}\n\n{}\n\n| Setting | Variable | Default | Meaning |\n|---|---|---|---|\n",
            section.title, section.about
        );
        for setting in SETTINGS.iter().filter(|s| section.contains(s.key)) {
            let mut vars = format!("`{}`", setting.env);
            for alias in setting.aliases {
                let _ = write!(vars, "<br>(also `{alias}`)");
            }
            let default = match setting.value(&defaults) {
                Json::String(s) if s.is_empty() => "not set".to_owned(),
                Json::String(s) => format!("`{s}`"),
                other => format!("`{other}`"),
            };
            let _ = writeln!(
                out,
                "| `{}` | {vars} | {default} | {} |",
                setting.key,
                setting.help.replace('|', "\\|")
            );
        }
    }
    out
}
