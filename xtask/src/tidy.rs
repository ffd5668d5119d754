//! Checks of the repository's own rules that the compiler does not make.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value as Json;

use crate::cmd;

/// Crates that must not depend directly on some crates, and why. (`model` reaches tokio
/// through envoy-types' generated messages, which pull in tonic; what matters is that its own
/// code cannot do I/O, so only direct dependencies are checked.)
const FORBIDDEN_DEPENDENCIES: &[(&str, &[&str], &str)] = &[(
    "model",
    &["tokio", "tonic", "sqlx", "hyper", "axum", "reqwest"],
    "model does no I/O (ARCHITECTURE.md)",
)];

/// Runs every check; the error lists every problem found.
pub fn run(root: &Path) -> Result<()> {
    let metadata = cmd::quiet(
        Command::new("cargo")
            .args(["metadata", "--no-deps", "--format-version", "1"])
            .current_dir(root),
    )?;
    let metadata: Json =
        serde_json::from_slice(&metadata.stdout).context("reading `cargo metadata`")?;

    let mut problems = Vec::new();
    for (path, text) in crate_roots(&metadata)? {
        if let Some(problem) = check_crate_doc(&path, &text) {
            problems.push(problem);
        }
    }
    for &(krate, forbidden, why) in FORBIDDEN_DEPENDENCIES {
        if !package_names(&metadata).any(|name| name == krate) {
            problems.push(format!("no package `{krate}` in the workspace to check"));
            continue;
        }
        let mut tree = Command::new("cargo");
        tree.args([
            "tree", "-p", krate, "-e", "normal", "--depth", "1", "--prefix", "none", "--format",
            "{p}",
        ])
        .current_dir(root);
        let out = cmd::output(&mut tree)?;
        if !out.status.success() {
            problems.push(format!(
                "`cargo tree -p {krate}` failed:\n{}",
                String::from_utf8_lossy(&out.stderr).trim_end()
            ));
            continue;
        }
        problems.extend(check_direct_deps(krate, forbidden, why, &out.stdout));
    }
    if !problems.is_empty() {
        bail!(
            "{} tidy problem(s):\n- {}",
            problems.len(),
            problems.join("\n- ")
        );
    }
    Ok(())
}

fn package_names(metadata: &Json) -> impl Iterator<Item = &str> {
    metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str())
}

/// Every workspace crate's `src/lib.rs` and `src/main.rs` with its text.
fn crate_roots(metadata: &Json) -> Result<Vec<(String, String)>> {
    let mut roots = Vec::new();
    let targets = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten());
    for target in targets {
        let Some(path) = target["src_path"].as_str() else {
            continue;
        };
        if path.ends_with("/src/lib.rs") || path.ends_with("/src/main.rs") {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
            roots.push((path.to_owned(), text));
        }
    }
    roots.sort();
    roots.dedup();
    Ok(roots)
}

/// A crate root must open with a `//!` line saying what the crate is for.
fn check_crate_doc(path: &str, text: &str) -> Option<String> {
    if text
        .lines()
        .next()
        .is_some_and(|line| line.starts_with("//!"))
    {
        None
    } else {
        Some(format!(
            "{path}: the first line must be a `//!` comment saying what the crate is for"
        ))
    }
}

/// Reads `cargo tree -p KRATE --depth 1 --prefix none`: one `name vX.Y` line per direct
/// dependency (the first line is the crate itself).
fn check_direct_deps(krate: &str, forbidden: &[&str], why: &str, stdout: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| forbidden.contains(name))
        .map(|name| format!("`{krate}` depends directly on `{name}` ({why})"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_roots_must_open_with_an_inner_doc_comment() {
        assert_eq!(
            check_crate_doc("a/src/lib.rs", "//! Does one thing.\n\nmod x;\n"),
            None
        );
        assert!(check_crate_doc("a/src/lib.rs", "// Does one thing.\n").is_some());
        assert!(check_crate_doc("a/src/lib.rs", "\n//! Late.\n").is_some());
        assert!(check_crate_doc("a/src/lib.rs", "").is_some());
    }

    #[test]
    fn direct_dependencies_are_checked() {
        let tree = b"model v0.1.0 (/w/model)\nkds-proto v0.1.0 (/w/kds-proto)\nserde v1.0.228\n";
        assert!(check_direct_deps("model", &["tokio"], "why", tree).is_empty());
        let tree = b"model v0.1.0 (/w/model)\ntokio v1.54.1\nserde v1.0.228 (*)\n";
        let found = check_direct_deps("model", &["tokio", "tonic"], "why", tree);
        assert_eq!(found, ["`model` depends directly on `tokio` (why)"]);
    }

    #[test]
    fn this_crate_passes_its_own_doc_check() {
        let main = include_str!("main.rs");
        assert_eq!(check_crate_doc("xtask/src/main.rs", main), None);
    }
}
