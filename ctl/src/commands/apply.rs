//! `kumactl apply -f FILE|DIR|URL|- [-v key=value ...] [--dry-run]`, as Kuma's
//! `app/kumactl/cmd/apply/apply.go`: split the input on `---`, render `-v` variables, parse
//! and check the meta of every document before sending anything, then for each resource GET
//! it (to say Created or Updated) and PUT it.

use std::sync::LazyLock;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use model::{Resource, ResourceType};
use regex::Regex;
use serde_json::Value;

use super::print;
use crate::cli::ApplyArgs;
use crate::client::{ApiClient, ClientError, item_path};
use crate::output::ZERO_TIME;
use crate::root::Root;
use crate::template::{Vars, render};

/// How long fetching `-f http(s)://...` may take.
const URL_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(root: &Root, args: &ApplyArgs) -> Result<()> {
    let vars = Vars::new(args.vars.iter().flatten().cloned());
    let client = if args.dry_run {
        None
    } else {
        let client = root.client()?;
        root.check_compatibility(&client).await;
        Some(client)
    };
    let content = read_content(&args.file).await?;
    if content.is_empty() {
        bail!("no resource(s) passed to apply");
    }
    let resources = parse_all(&content, &vars)?;
    let Some(client) = client else {
        let documents: Vec<String> = resources.iter().map(dry_run_yaml).collect();
        print(&documents.join("---\n"));
        return Ok(());
    };
    for resource in &resources {
        let (warnings, updated) = upsert(&client, resource).await.map_err(|e| {
            anyhow!(
                "resource type={:?} mesh={:?} name={:?}: failed server side: {e}",
                resource.kind().name(),
                resource.meta.mesh,
                resource.meta.name
            )
        })?;
        let action = if updated { "Updated" } else { "Created" };
        print(&format!(
            "resource type={:?} mesh={:?} name={:?} {action}\n",
            resource.kind().name(),
            resource.meta.mesh,
            resource.meta.name
        ));
        for warning in warnings {
            eprintln!("Warning: {warning}");
        }
    }
    Ok(())
}

/// Parses every document; each bad one is reported on stderr (`resource[i]: ...`) and then
/// the whole input is refused.
pub fn parse_all(content: &str, vars: &Vars) -> Result<Vec<Resource>> {
    let mut resources = Vec::new();
    let mut has_errors = false;
    for (i, document) in split_yaml(content).iter().enumerate() {
        let text = if vars.is_empty() {
            document.clone()
        } else {
            render(document, vars)
        };
        match parse_document(&text) {
            Err(message) => {
                eprintln!("resource[{i}]: failed to parse resource: {message}");
                has_errors = true;
            }
            Ok(parsed) => {
                for resource in parsed {
                    if let Some(message) = meta_violations(&resource) {
                        eprintln!("resource[{i}]: failed to read meta: {message}");
                        has_errors = true;
                    } else {
                        resources.push(resource);
                    }
                }
            }
        }
    }
    if has_errors {
        bail!("failed to validate some resources");
    }
    Ok(resources)
}

fn parse_document(text: &str) -> Result<Vec<Resource>, String> {
    model::format::parse_documents(text).map_err(|mut e| {
        e.doc = None;
        e.to_string()
    })
}

/// kumactl checks only the meta (name, mesh) before sending; the server checks the rest.
fn meta_violations(resource: &Resource) -> Option<String> {
    let Err(e) = model::validate::validate(resource) else {
        return None;
    };
    let meta: Vec<String> = e
        .violations
        .iter()
        .filter(|v| v.field == "name" || v.field == "mesh")
        .map(|v| format!("{}: {}", v.field, v.message))
        .collect();
    (!meta.is_empty()).then(|| meta.join("; "))
}

static SEPARATOR: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:^|\s*\n)---\s*").expect("static regex"));

/// Kuma's `SplitYAML`: documents separated by `---` lines, empty ones and one-line comments
/// dropped, each trimmed.
pub fn split_yaml(text: &str) -> Vec<String> {
    SEPARATOR
        .split(text.trim())
        .filter(|doc| !doc.starts_with('#') || doc.contains('\n'))
        .map(str::trim)
        .filter(|doc| !doc.is_empty())
        .map(str::to_string)
        .collect()
}

async fn read_content(file: &str) -> Result<String> {
    if file == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("error while reading provided file")?;
        return Ok(text);
    }
    if file.starts_with("http://") || file.starts_with("https://") {
        return read_url(file).await;
    }
    let metadata = std::fs::metadata(file)
        .map_err(|e| anyhow!("stat {file}: {e}"))
        .context("error while reading provided file")?;
    if metadata.is_dir() {
        return read_directory(file);
    }
    std::fs::read_to_string(file)
        .map_err(|e| anyhow!("read {file}: {e}"))
        .context("error while reading provided file")
}

async fn read_url(url: &str) -> Result<String> {
    reqwest::Url::parse(url).context("invalid URL for --file")?;
    let client = reqwest::Client::builder()
        .timeout(URL_TIMEOUT)
        .build()
        .context("error creating new http request")?;
    let response = client
        .get(url)
        .send()
        .await
        .context("error with GET http request")?;
    if response.status() != reqwest::StatusCode::OK {
        bail!("error while retrieving URL");
    }
    response
        .text()
        .await
        .context("error while reading provided file")
}

/// Every `.yaml`, `.yml` and `.json` file of a directory (not its subdirectories), by name,
/// joined as documents.
fn read_directory(dir: &str) -> Result<String> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).context("error reading directory")? {
        let path = entry.context("error reading directory")?.path();
        if !path.is_file() {
            continue;
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        if matches!(ext.as_deref(), Some("yaml" | "yml" | "json")) {
            files.push(path);
        }
    }
    files.sort();
    let mut combined = String::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("error reading file {}", file.display()))?;
        if !combined.is_empty() {
            combined.push_str("\n---\n");
        }
        combined.push_str(&text);
    }
    Ok(combined)
}

/// Kuma's KRI short names of the types that have one.
fn kri_short_name(kind: ResourceType) -> Option<&'static str> {
    match kind {
        ResourceType::Mesh => Some("m"),
        ResourceType::Dataplane => Some("dp"),
        ResourceType::Zone => Some("z"),
        ResourceType::ZoneIngress => Some("zi"),
        _ => None,
    }
}

fn kri(resource: &Resource) -> Option<String> {
    let short = kri_short_name(resource.kind())?;
    let label = |k: &str| resource.meta.labels.get(k).cloned().unwrap_or_default();
    Some(format!(
        "kri_{short}_{}_{}_{}_{}_",
        resource.meta.mesh,
        label(model::labels::ZONE),
        label(model::labels::K8S_NAMESPACE),
        resource.display_name()
    ))
}

/// What `--dry-run` prints for one resource: its meta as kumactl would send it (zero
/// times), then its spec, each with sorted keys.
pub fn dry_run_yaml(resource: &Resource) -> String {
    let mut meta = model::format::meta_json(resource, resource.kind().name());
    for time in ["creationTime", "modificationTime"] {
        meta.insert(time.into(), Value::String(ZERO_TIME.into()));
    }
    if let Some(kri) = kri(resource) {
        meta.insert("kri".into(), Value::String(kri));
    }
    let mut out = crate::yaml::to_yaml(&Value::Object(meta));
    if let Value::Object(spec) = resource.spec.to_json()
        && !spec.is_empty()
    {
        out.push_str(&crate::yaml::to_yaml(&Value::Object(spec)));
    }
    out
}

/// The PUT body: type, mesh, name, labels and the spec inline.
fn put_body(resource: &Resource) -> Value {
    let mut value = model::format::to_json_value(resource);
    if let Value::Object(object) = &mut value {
        object.shift_remove("creationTime");
        object.shift_remove("modificationTime");
    }
    value
}

/// Creates or updates one resource; returns the server's warnings and whether it existed.
async fn upsert(
    client: &ApiClient,
    resource: &Resource,
) -> Result<(Vec<String>, bool), ClientError> {
    let path = item_path(resource.kind(), &resource.meta.mesh, &resource.meta.name);
    let existing = client.get(&path).await?;
    let updated = match existing.status {
        404 => false,
        200 => true,
        _ => return Err(existing.into_error()),
    };
    let response = client
        .send(reqwest::Method::PUT, &path, Some(&put_body(resource)))
        .await?;
    match response.status {
        200 | 201 => {
            let warnings = serde_json::from_slice::<Value>(&response.body)
                .ok()
                .and_then(|v| v.get("warnings").cloned())
                .and_then(|w| serde_json::from_value::<Vec<String>>(w).ok())
                .unwrap_or_default();
            Ok((warnings, updated))
        }
        405 if response.api_error.is_none() => Err(ClientError::MethodNotAllowed(response.text())),
        _ => Err(response.into_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_kuma() {
        let input = "# Just a starting comment\n---\nname: sample1\n# --- not a separator\nmesh: default\ntype: Mesh\n---\n\n---\ntype: Mesh\nname: two\n";
        let docs = split_yaml(input);
        assert_eq!(docs.len(), 2, "{docs:?}");
        assert!(docs[0].starts_with("name: sample1"));
        // Like Go's regexp split, the second of two adjacent separators stays in the document,
        // where it reads as a YAML document start.
        assert_eq!(docs[1], "---\ntype: Mesh\nname: two");
        assert_eq!(parse_all(input, &Vars::default()).expect("parses").len(), 2);
    }

    #[test]
    fn variables_are_rendered_before_parsing() {
        let vars = Vars::new([("address".to_string(), "2.2.2.2".to_string())]);
        let resources = parse_all(
            "type: Dataplane\nmesh: default\nname: sample\nnetworking:\n  address: \"{{ address }}\"\n  inbound:\n  - port: 80\n    tags:\n      kuma.io/service: web\n",
            &vars,
        )
        .expect("parses");
        assert_eq!(
            dry_run_yaml(&resources[0]),
            "creationTime: \"0001-01-01T00:00:00Z\"\nkri: kri_dp_default___sample_\nmesh: default\nmodificationTime: \"0001-01-01T00:00:00Z\"\nname: sample\ntype: Dataplane\nnetworking:\n  address: 2.2.2.2\n  inbound:\n  - port: 80\n    tags:\n      kuma.io/service: web\n"
        );
    }

    #[test]
    fn a_bad_document_refuses_the_input() {
        let err = parse_all(
            "type: Mesh\nname: ok\n---\ntype: Foo\nname: bam\n",
            &Vars::default(),
        )
        .expect_err("bad type");
        assert_eq!(err.to_string(), "failed to validate some resources");
        let err =
            parse_all("type: Mesh\nname: Bad_Name\n", &Vars::default()).expect_err("bad name");
        assert_eq!(err.to_string(), "failed to validate some resources");
    }

    #[test]
    fn put_body_has_no_times() {
        let resources = parse_all(
            "type: TrafficPermission\nmesh: default\nname: tp\nsources:\n- match:\n    kuma.io/service: '*'\ndestinations:\n- match:\n    kuma.io/service: '*'\n",
            &Vars::default(),
        )
        .expect("parses");
        let body = put_body(&resources[0]);
        assert_eq!(body["type"], "TrafficPermission");
        assert_eq!(body["mesh"], "default");
        assert!(body.get("creationTime").is_none());
        assert_eq!(body["sources"][0]["match"]["kuma.io/service"], "*");
    }
}
