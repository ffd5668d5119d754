//! `kumactl delete TYPE NAME`: `deleted <Type> "name"`, or `there is no <Type> with name "x"`.

use anyhow::{Context as _, Result, bail};
use model::ResourceType;

use super::{cli_type, print};
use crate::cli::DeleteArgs;
use crate::client::item_path;
use crate::root::Root;

/// The singular names `delete` accepts, sorted (Kuma's "Allowed values").
fn allowed_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = ResourceType::ALL
        .iter()
        .map(|k| k.descriptor())
        .filter(|d| d.has_rest && !d.system_only)
        .map(|d| d.cli_singular)
        .collect();
    names.push("global-secret");
    names.sort_unstable();
    names
}

pub async fn run(root: &Root, args: &DeleteArgs) -> Result<()> {
    let client = root.client()?;
    root.check_compatibility(&client).await;
    let kind = match cli_type(&args.type_arg) {
        Some((kind, false)) => kind,
        _ => bail!(
            "unknown TYPE: {}. Allowed values: {}",
            args.type_arg,
            allowed_names().join(", ")
        ),
    };
    if kind.descriptor().system_only {
        bail!(
            "TYPE: {} is readOnly, can't use it for write action",
            args.type_arg
        );
    }
    let name = &args.name;
    let response = client
        .send(
            reqwest::Method::DELETE,
            &item_path(kind, &root.mesh, name),
            None,
        )
        .await
        .with_context(|| format!("failed to delete {kind} with the name {name:?}"))?;
    match response.status {
        200 | 204 => {
            print(&format!("deleted {kind} {name:?}\n"));
            Ok(())
        }
        404 => bail!("there is no {kind} with name {name:?}"),
        405 if response.api_error.is_none() => bail!("{}", response.text()),
        _ => Err(response.into_error())
            .with_context(|| format!("failed to delete {kind} with the name {name:?}")),
    }
}
