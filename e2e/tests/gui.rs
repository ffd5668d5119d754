//! The GUI in a real browser: a headless Chromium (Debian's `chromium` + `chromedriver`,
//! driven over WebDriver) opens the global's `/gui` while a federation of real processes
//! runs, and watches it change without a reload. Screenshots of the main pages are saved under
//! `<target>/tmp/gui-screenshots/` (CARGO_TARGET_TMPDIR).

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use support::browser::Browser;
use support::{Federation, GLOBAL, HEALTH_TIMEOUT, eventually};
use tokio::time::Instant;

/// How long a zone may take to connect, or a change to reach the global.
const SYNC: Duration = Duration::from_secs(30);

fn dataplane_yaml(name: &str, service: &str) -> String {
    format!(
        "type: Dataplane\nmesh: default\nname: {name}\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: 8080\n    servicePort: 80\n    tags:\n      kuma.io/service: {service}\n"
    )
}

fn zone_node(zone: &str) -> String {
    format!(r#"svg#topology g.node[data-kind="zone"][data-name="{zone}"]"#)
}

/// Polls the page until the zone's box on the topology has `status`.
async fn wait_zone_status(browser: &Browser, zone: &str, status: &str, deadline: Duration) {
    let css = zone_node(zone);
    eventually(
        deadline,
        &format!("{zone} shown {status}"),
        async || match browser.attr(&css, "data-status").await {
            Some(s) if s == status => Ok(()),
            other => Err(format!("data-status {other:?}")),
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn e2e_gui_shows_the_federation_live_in_chromium() {
    let fed = Federation::start(&["zone-1", "zone-2"]).await;
    fed.wait_online("zone-1", SYNC).await;
    fed.wait_online("zone-2", SYNC).await;
    fed.apply("zone-1", &dataplane_yaml("web-1", "web"));
    fed.apply("zone-2", &dataplane_yaml("api-1", "api"));
    eventually(SYNC, "both dataplanes on the global", async || {
        let names = fed.names(GLOBAL, "/meshes/default/dataplanes").await?;
        if names.len() == 2 {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    })
    .await;

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gui-screenshots");
    let browser = Browser::start(&shots).await;
    let gui = format!("http://127.0.0.1:{}/gui", fed.api(GLOBAL));

    // The overview: both zones online on the topology, live updates connected.
    browser.goto(&gui).await;
    wait_zone_status(&browser, "zone-1", "online", SYNC).await;
    wait_zone_status(&browser, "zone-2", "online", SYNC).await;
    eventually(SYNC, "live updates connected", async || {
        match browser.attr("body", "data-live").await.as_deref() {
            Some("connected") => Ok(()),
            other => Err(format!("body data-live {other:?}")),
        }
    })
    .await;
    browser.screenshot("overview").await;

    // zone-2's control plane stops answering (SIGSTOP): the open page turns it offline by
    // itself, within the global's offline timeout plus 2 s. A mark in the page's JavaScript
    // state proves there was no reload.
    browser.eval("window.kumaMark = 42; return true;").await;
    let stopped = Instant::now();
    fed.pause("zone-2");
    wait_zone_status(
        &browser,
        "zone-2",
        "offline",
        HEALTH_TIMEOUT + Duration::from_secs(2),
    )
    .await;
    let shown_after = stopped.elapsed();
    assert_eq!(
        browser.eval("return window.kumaMark;").await,
        Value::from(42),
        "the page was reloaded instead of updated"
    );
    assert_eq!(
        browser
            .attr(&zone_node("zone-1"), "data-status")
            .await
            .as_deref(),
        Some("online"),
        "zone-1 is unaffected"
    );
    assert_eq!(
        browser
            .attr(r#"#zones tr[data-zone="zone-2"]"#, "data-status")
            .await
            .as_deref(),
        Some("offline"),
        "the zone table agrees with the picture"
    );
    browser.screenshot("overview-zone-2-offline").await;
    eprintln!(
        "zone-2 shown offline {shown_after:?} after it stopped (offline timeout {HEALTH_TIMEOUT:?})"
    );

    // Back: the same page turns it online again.
    fed.resume("zone-2");
    wait_zone_status(&browser, "zone-2", "online", SYNC).await;
    assert_eq!(
        browser.eval("return window.kumaMark;").await,
        Value::from(42)
    );

    // A zone's page: its subscriptions and lag charts.
    browser.goto(&format!("{gui}/zones/zone-1")).await;
    assert_eq!(
        browser
            .attr("h1[data-zone]", "data-status")
            .await
            .as_deref(),
        Some("online")
    );
    assert!(
        browser.exists("#subscriptions tbody tr").await,
        "zone-1 has a subscription row"
    );
    assert!(browser.exists("svg.chart").await);
    browser.screenshot("zone").await;

    browser.goto(&format!("{gui}/services")).await;
    assert!(
        browser
            .exists(r#"tr[data-service="api"][data-zone="zone-2"]"#)
            .await,
        "api's instance in zone-2 is listed"
    );
    browser.screenshot("services").await;

    // The dataplane list, filtered by zone, and a dataplane's page opened from it.
    browser.goto(&format!("{gui}/dataplanes?zone=zone-1")).await;
    assert!(
        !browser
            .exists(r#"tr[data-dataplane="default/api-1"]"#)
            .await,
        "the zone filter hides zone-2's dataplane"
    );
    browser.screenshot("dataplanes").await;
    browser
        .click(r#"tr[data-dataplane="default/web-1"] a.dataplane-link"#)
        .await;
    eventually(SYNC, "the dataplane's page", async || {
        match browser
            .attr("h1#dataplane", "data-dataplane")
            .await
            .as_deref()
        {
            Some("default/web-1") => Ok(()),
            other => Err(format!("h1 data-dataplane {other:?}")),
        }
    })
    .await;
    let url = browser.client.current_url().await.expect("url");
    assert!(
        url.path().starts_with("/gui/meshes/default/dataplanes/"),
        "{url}"
    );
    browser.screenshot("dataplane").await;
    eprintln!("screenshots in {}", shots.display());
    browser.close().await;
}
