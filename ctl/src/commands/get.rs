//! `kumactl get <plural>` lists resources of a type, `kumactl get <singular> NAME` shows one.

use anyhow::{Context as _, Result, bail};
use model::ResourceType;

use super::{cli_type, now, print};
use crate::cli::GetArgs;
use crate::client::{item_path, list_path};
use crate::go::encode_query;
use crate::output::{List, get_table, render_item};
use crate::root::Root;

pub async fn run(root: &Root, args: &GetArgs) -> Result<()> {
    let Some((kind, plural)) = cli_type(&args.type_arg) else {
        bail!(
            "unknown command {:?} for \"kumactl get\"\nRun 'kumactl get --help' for usage.",
            args.type_arg
        );
    };
    // Arguments are checked before anything is sent, as cobra does.
    let name = match (plural, &args.name) {
        (true, Some(extra)) => bail!(
            "unknown command {extra:?} for \"kumactl get {}\"",
            args.type_arg
        ),
        (false, None) => bail!("accepts 1 arg(s), received 0"),
        (_, name) => name.clone(),
    };
    let client = root.client()?;
    root.check_compatibility(&client).await;
    match name {
        None => list(root, &client, kind, args).await,
        Some(name) => get_one(root, &client, kind, &name, args).await,
    }
}

async fn list(
    root: &Root,
    client: &crate::client::ApiClient,
    kind: ResourceType,
    args: &GetArgs,
) -> Result<()> {
    let mut query = Vec::new();
    if let Some(offset) = args.offset.as_ref().filter(|o| !o.is_empty()) {
        query.push(("offset".to_string(), offset.clone()));
    }
    if let Some(size) = args.size.filter(|s| *s != 0) {
        query.push(("size".to_string(), size.to_string()));
    }
    let mut path = list_path(kind, &root.mesh);
    if !query.is_empty() {
        path = format!("{path}?{}", encode_query(&query));
    }
    let context = || format!("failed to list {kind}");
    let response = client.get(&path).await.with_context(context)?;
    if response.status != 200 {
        return Err(response.into_error()).with_context(context);
    }
    let body = response.json().with_context(context)?;
    let list = List::from_value(&body);
    let now = now();
    print(&list.render(args.output, |items| get_table(kind, items, now)));
    Ok(())
}

async fn get_one(
    root: &Root,
    client: &crate::client::ApiClient,
    kind: ResourceType,
    name: &str,
    args: &GetArgs,
) -> Result<()> {
    let mesh = root.mesh.as_str();
    let context = || {
        if kind.is_mesh_scoped() {
            format!("failed to get {name} in mesh {mesh}")
        } else {
            format!("failed to get {name}")
        }
    };
    let response = client
        .get(&item_path(kind, mesh, name))
        .await
        .with_context(context)?;
    if response.status == 404 {
        if kind.is_mesh_scoped() {
            bail!("No resources found in {mesh} mesh");
        }
        bail!("No resources found");
    }
    if response.status != 200 {
        return Err(response.into_error()).with_context(context);
    }
    let item = response.json().with_context(context)?;
    print(&render_item(kind, &item, args.output, now()));
    Ok(())
}
