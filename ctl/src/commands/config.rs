//! `kumactl config view` and `kumactl config control-planes add|list|remove|switch`.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result, anyhow, bail};

use super::print;
use crate::cli::{AddControlPlaneArgs, ConfigCommand, ControlPlanesCommand, NameArg};
use crate::client::{AUTH_CONF_TOKEN, AUTH_TYPE_TOKENS, ApiClient, fetch_index};
use crate::config::{ApiServer, Context, ControlPlane, Coordinates, Header};
use crate::root::{PRODUCT, Root};
use crate::table::{Table, check};

pub async fn run(root: &mut Root, command: &ConfigCommand) -> Result<()> {
    match command {
        ConfigCommand::View => {
            // kumactl prints the YAML with Println: one more newline.
            print(&format!("{}\n", root.config.to_yaml()));
            Ok(())
        }
        ConfigCommand::ControlPlanes { command } => match command {
            ControlPlanesCommand::Add(args) => add(root, args).await,
            ControlPlanesCommand::List => {
                list(root);
                Ok(())
            }
            ControlPlanesCommand::Remove(name) => remove(root, name),
            ControlPlanesCommand::Switch(name) => switch(root, name),
        },
    }
}

fn required_name(arg: &NameArg) -> Result<&str> {
    arg.name()
        .ok_or_else(|| anyhow!("required flag(s) \"name\" not set"))
}

async fn add(root: &mut Root, args: &AddControlPlaneArgs) -> Result<()> {
    let url = reqwest::Url::parse(&args.address)
        .map_err(|e| anyhow!("API Server URL is invalid: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!(
            "API Server URL is invalid: unsupported scheme {:?}",
            url.scheme()
        );
    }
    if args.client_cert_file.is_empty() != args.client_key_file.is_empty() {
        bail!("Both --client-cert-file and --client-key-file needs to be specified");
    }
    let auth_conf: BTreeMap<String, String> = args.auth_conf.iter().flatten().cloned().collect();
    match args.auth_type.as_str() {
        "" => {}
        AUTH_TYPE_TOKENS => {
            if auth_conf.get(AUTH_CONF_TOKEN).is_none_or(String::is_empty) {
                bail!("--auth-conf is not valid: provide token=YOUR_TOKEN");
            }
        }
        other => bail!("authentication plugin of type {other:?} is not found"),
    }
    let headers: BTreeMap<String, String> = args.headers.iter().flatten().cloned().collect();
    let api_server = ApiServer {
        url: args.address.clone(),
        ca_cert_file: args.ca_cert_file.clone(),
        client_cert_file: args.client_cert_file.clone(),
        client_key_file: args.client_key_file.clone(),
        headers: headers
            .into_iter()
            .map(|(key, value)| Header { key, value })
            .collect(),
        auth_type: args.auth_type.clone(),
        auth_conf,
        skip_verify: args.skip_verify,
    };
    if !args.skip_check {
        validate_coordinates(&api_server, root).await?;
    }
    let cp = ControlPlane {
        name: args.name.clone(),
        coordinates: Coordinates { api_server },
    };
    if !root.config.add_control_plane(cp, args.overwrite) {
        bail!(
            "Control Plane with name {:?} already exists. Use --overwrite to replace an existing one.",
            args.name
        );
    }
    let context = Context {
        name: args.name.clone(),
        control_plane: args.name.clone(),
        defaults: None,
    };
    if !root.config.add_context(context, args.overwrite) {
        bail!("Context with name {:?} already exists", args.name);
    }
    root.config.current_context = args.name.clone();
    root.save()?;
    print(&format!(
        "added Control Plane {:?}\nswitched active Control Plane to {:?}\n",
        args.name, args.name
    ));
    Ok(())
}

/// Kuma's `ValidateCpCoordinates`: the address must answer `GET /` as a Kuma control plane.
async fn validate_coordinates(api_server: &ApiServer, root: &Root) -> Result<()> {
    // The index needs no authentication; Kuma checks it without the auth plugin.
    let unauthenticated = ApiServer {
        auth_type: String::new(),
        auth_conf: BTreeMap::new(),
        ..api_server.clone()
    };
    let client = ApiClient::new(&unauthenticated, root.api_timeout)?;
    let index = fetch_index(&client)
        .await
        .context("could not connect to the Control Plane API Server")?;
    let product = index.product_name();
    if product != PRODUCT && !index.version.contains("preview") {
        bail!(
            "this CLI is for {PRODUCT} but the control plane you're connected to is {product}. Please use the CLI for your control plane"
        );
    }
    Ok(())
}

fn list(root: &Root) {
    let active = root.config.current().map(|c| c.control_plane.as_str());
    let mut table = Table::new(&["ACTIVE", "NAME", "ADDRESS"]);
    for cp in &root.config.control_planes {
        table.rows.push(vec![
            check(active == Some(cp.name.as_str())).to_string(),
            cp.name.clone(),
            cp.coordinates.api_server.url.clone(),
        ]);
    }
    print(&table.render());
}

fn remove(root: &mut Root, arg: &NameArg) -> Result<()> {
    let name = required_name(arg)?.to_string();
    if !root.config.remove_control_plane(&name) {
        bail!("there is no Control Plane with name {name:?}");
    }
    root.save()?;
    let mut out = format!("removed Control Plane {name:?}\n");
    match root.config.current() {
        Some(context) => out.push_str(&format!(
            "switched active Control Plane to {:?}\n",
            context.control_plane
        )),
        None => out.push_str("there is no active Control Plane left. Use `kumactl config control-planes add` to add a Control Plane and make it active\n"),
    }
    print(&out);
    Ok(())
}

fn switch(root: &mut Root, arg: &NameArg) -> Result<()> {
    let name = required_name(arg)?.to_string();
    if !root.config.switch_context(&name) {
        bail!("there is no Control Plane with name {name:?}");
    }
    root.save()?;
    print(&format!("switched active Control Plane to {name:?}\n"));
    Ok(())
}
