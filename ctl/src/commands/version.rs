//! `kumactl version [-a]`: the client's version and the control plane's.

use anyhow::Result;

use super::print;
use crate::client::{VERSION, fetch_index};
use crate::root::{PRODUCT, Root};

pub async fn run(root: &Root, detailed: bool) -> Result<()> {
    print(&format!("Client: {PRODUCT} {VERSION}\n"));
    let index = match root.client() {
        Ok(client) => fetch_index(&client).await.map_err(anyhow::Error::from),
        Err(e) => Err(e),
    };
    match index {
        Ok(index) => {
            if detailed {
                let client = root.client()?;
                let body = client.get("/").await?.json()?;
                print(&format!(
                    "Server: {}",
                    serde_json::to_string_pretty(&body).unwrap_or_default()
                ));
                print("\n");
            } else {
                print(&format!(
                    "Server: {} {}\n",
                    index.product_name(),
                    index.version
                ));
            }
        }
        Err(e) => eprintln!("Unable to connect to control plane: {e:#}"),
    }
    Ok(())
}
