//! Traffic through sidecars as a test sees it: Dataplane YAML for a test application on
//! 127.0.0.1, and GETs through an outbound listener, polled until they reach an instance or
//! are refused (with a deadline).

use std::time::Duration;

use super::eventually;

/// How long traffic may take to converge after a change.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A Dataplane on 127.0.0.1: one inbound (service, protocol, extra tags) in front of the
/// application on `app_port`, and outbounds `(port, service)`.
pub fn dataplane(
    name: &str,
    inbound_port: u16,
    app_port: u16,
    tags: &[(&str, &str)],
    outbounds: &[(u16, &str)],
) -> String {
    let mut yaml = format!(
        "type: Dataplane
mesh: default
name: {name}
networking:
  address: 127.0.0.1
  inbound:
    - port: {inbound_port}
      servicePort: {app_port}
      tags:
"
    );
    for (k, v) in tags {
        yaml.push_str(&format!("        {k}: {v}\n"));
    }
    if !outbounds.is_empty() {
        yaml.push_str("  outbound:\n");
        for (port, service) in outbounds {
            yaml.push_str(&format!(
                "    - port: {port}\n      tags:\n        kuma.io/service: {service}\n"
            ));
        }
    }
    yaml
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .expect("HTTP client")
}

/// GET through an outbound listener: `(status, body)`.
pub async fn get(http: &reqwest::Client, port: u16) -> Result<(u16, String), String> {
    let response = http
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(|e| e.to_string())?;
    Ok((status, body))
}

/// Waits until a GET through `port` answers 200 from an instance whose name starts with
/// `instance`; returns the body.
pub async fn wait_reaches(http: &reqwest::Client, port: u16, instance: &str, what: &str) -> String {
    eventually(DEADLINE, what, async || match get(http, port).await? {
        (200, body) if body.starts_with(instance) => Ok(body),
        (status, body) => Err(format!("{status}: {body}")),
    })
    .await
}

/// Waits until a GET through `port` is refused: no 200 any more (Envoy answers 503 when the
/// callee's sidecar resets the connection).
pub async fn wait_refused(http: &reqwest::Client, port: u16, what: &str) {
    eventually(DEADLINE, what, async || match get(http, port).await {
        Ok((200, body)) => Err(format!("still 200: {body}")),
        Ok(_) | Err(_) => Ok(()),
    })
    .await;
}
