//! KDS end to end: a real `kuma-global` and real `kuma-zone`s syncing over TLS with zone
//! tokens, checked through their REST APIs, `kumactl` and the global's metrics.
//!
//! Every test starts its own federation on free ports (see `support`); nextest runs these
//! tests one at a time (`.config/nextest.toml`: names containing `e2e`). Build the binaries
//! first: `cargo build -p global -p zone -p ctl`.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use model::hash::hashed_name;
use serde_json::{Value, json};
use support::{Federation, GLOBAL, HEALTH_TIMEOUT, Token, ZoneOptions, eventually, label, str_at};
use tokio::time::Instant;

/// How long a change may take to reach a zone (or the global).
const SYNC: Duration = Duration::from_secs(30);
/// How long a zone may take to (re)connect and show online.
const CONNECT: Duration = Duration::from_secs(30);

const ORIGIN: &str = "kuma.io/origin";
const ZONE: &str = "kuma.io/zone";
const DISPLAY_NAME: &str = "kuma.io/display-name";

const TPS: &str = "/meshes/default/traffic-permissions";

fn tp_yaml(name: &str, service: &str) -> String {
    format!(
        "type: TrafficPermission\nmesh: default\nname: {name}\nsources:\n- match:\n    kuma.io/service: '*'\ndestinations:\n- match:\n    kuma.io/service: '{service}'\n"
    )
}

fn tps_yaml(names: impl IntoIterator<Item = String>, service: &str) -> String {
    names
        .into_iter()
        .map(|name| tp_yaml(&name, service))
        .collect::<Vec<_>>()
        .join("---\n")
}

fn dataplane_yaml(name: &str) -> String {
    format!(
        "type: Dataplane\nmesh: default\nname: {name}\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: 8080\n    servicePort: 80\n    tags:\n      kuma.io/service: {name}\n"
    )
}

fn ingress_yaml(name: &str, port: u16) -> String {
    format!(
        "type: ZoneIngress\nname: {name}\nnetworking:\n  address: 127.0.0.1\n  advertisedAddress: 127.0.0.1\n  advertisedPort: {port}\n  port: {port}\n"
    )
}

fn secret_yaml(name: &str, data_base64: &str) -> String {
    format!("type: Secret\nmesh: default\nname: {name}\ndata: {data_base64}\n")
}

/// The name a global policy of mesh `default` has in every zone.
fn in_zones(name: &str) -> String {
    hashed_name("default", name, &[])
}

/// The name a Dataplane of mesh `default` created in `zone` has on the global.
fn dataplane_on_global(name: &str, zone: &str) -> String {
    hashed_name("default", name, &[zone])
}

/// The name a ZoneIngress created in `zone` has on the global and in the other zones.
fn ingress_synced(name: &str, zone: &str) -> String {
    hashed_name("", name, &[zone])
}

/// What must be equal between a TrafficPermission on the global and its copy in a zone.
fn tp_content(item: &Value) -> Value {
    json!({
        "sources": item.get("sources"),
        "destinations": item.get("destinations"),
    })
}

/// The global's TrafficPermissions as each zone must hold them: synced name -> content.
async fn global_tps(fed: &Federation) -> Result<BTreeMap<String, Value>, String> {
    Ok(fed
        .list(GLOBAL, TPS)
        .await?
        .iter()
        .map(|item| (in_zones(str_at(item, "/name")), tp_content(item)))
        .collect())
}

async fn zone_tps(fed: &Federation, zone: &str) -> Result<BTreeMap<String, Value>, String> {
    Ok(fed
        .list(zone, TPS)
        .await?
        .iter()
        .map(|item| (str_at(item, "/name").to_string(), tp_content(item)))
        .collect())
}

/// TrafficPermissions of the `default` mesh the tests do not write: `allow-all-default`,
/// created with the mesh (docs/mtls.md).
const DEFAULT_TPS: usize = 1;

/// Waits until `zone` holds exactly the global's TrafficPermissions (names, count and
/// content); returns the count.
async fn wait_tps_match(fed: &Federation, zone: &str) -> usize {
    eventually(
        SYNC,
        &format!("{zone} holds the global's TrafficPermissions"),
        async || {
            let want = global_tps(fed).await?;
            let have = zone_tps(fed, zone).await?;
            if want == have {
                return Ok(want.len());
            }
            let missing: Vec<String> = want
                .iter()
                .filter(|(k, v)| have.get(*k) != Some(*v))
                .map(|(k, v)| format!("{k} {v} (has {:?})", have.get(k)))
                .collect();
            let extra: Vec<&String> = have.keys().filter(|k| !want.contains_key(*k)).collect();
            Err(format!(
                "global {}, {zone} {}: {} missing or different (first: {:?}), {} extra (first: {:?})",
                want.len(),
                have.len(),
                missing.len(),
                missing.iter().take(3).collect::<Vec<_>>(),
                extra.len(),
                extra.iter().take(3).collect::<Vec<_>>(),
            ))
        },
    )
    .await
}

/// Waits until `zone` is online on the global and holds the `default` mesh.
async fn wait_synced(fed: &Federation, zone: &str) {
    fed.wait_online(zone, CONNECT).await;
    eventually(SYNC, &format!("mesh default in {zone}"), async || {
        fed.get(zone, "/meshes/default")
            .await?
            .map(|_| ())
            .ok_or_else(|| "no mesh default yet".to_string())
    })
    .await;
}

/// Fails unless `resource` carries `labels`.
fn check_labels(what: &str, resource: &Value, labels: &[(&str, &str)]) -> Result<(), String> {
    for (key, value) in labels {
        let found = label(resource, key);
        if found != *value {
            return Err(format!(
                "{what}: label {key} is {found:?}, want {value:?}: {resource}"
            ));
        }
    }
    Ok(())
}

/// The row of `zone` in `kumactl inspect zones` on the global.
fn inspect_row(fed: &Federation, zone: &str) -> Result<BTreeMap<String, String>, String> {
    fed.inspect_zones()
        .into_iter()
        .find(|row| row.get("NAME").map(String::as_str) == Some(zone))
        .ok_or_else(|| format!("{zone} is not listed by kumactl inspect zones"))
}

async fn wait_status(fed: &Federation, zone: &str, status: &str, deadline: Duration) {
    eventually(
        deadline,
        &format!("kumactl inspect zones shows {zone} {status}"),
        async || {
            let row = inspect_row(fed, zone)?;
            if row.get("STATUS").map(String::as_str) == Some(status) {
                Ok(())
            } else {
                Err(format!("{row:?}"))
            }
        },
    )
    .await;
}

// === 1. both directions ===

async fn sync_both_ways(fed: Federation) {
    let zones = ["zone-1", "zone-2"];
    for zone in zones {
        wait_synced(&fed, zone).await;
    }

    // Global -> zones: a Mesh keeps its name, a policy gets the hashed one.
    fed.apply(
        GLOBAL,
        &format!("type: Mesh\nname: demo\n---\n{}", tp_yaml("allow-all", "*")),
    );
    let tp = in_zones("allow-all");
    for zone in zones {
        eventually(SYNC, &format!("Mesh and policy in {zone}"), async || {
            let policy = fed
                .get(zone, &format!("{TPS}/{tp}"))
                .await?
                .ok_or_else(|| format!("no TrafficPermission {tp}"))?;
            check_labels(
                "TrafficPermission",
                &policy,
                &[(ORIGIN, "global"), (DISPLAY_NAME, "allow-all")],
            )?;
            let mesh = fed.get(zone, "/meshes/demo").await?.ok_or("no Mesh demo")?;
            check_labels("Mesh", &mesh, &[(ORIGIN, "global")])
        })
        .await;
    }

    // A federated zone does not take writes of what the global owns (Kuma's 405).
    let refused = fed.try_apply("zone-1", &tp_yaml("local-policy", "*"));
    assert!(
        !refused.success && refused.stderr.contains("On zone control plane"),
        "a policy written to a federated zone must be refused:\n{}",
        refused.stderr
    );

    // Zone -> global: a Dataplane, under its zone-hashed name.
    fed.apply("zone-1", &dataplane_yaml("web-1"));
    let dp = dataplane_on_global("web-1", "zone-1");
    eventually(SYNC, "the Dataplane of zone-1 on the global", async || {
        let found = fed
            .get(GLOBAL, &format!("/meshes/default/dataplanes/{dp}"))
            .await?
            .ok_or_else(|| format!("no Dataplane {dp}"))?;
        check_labels(
            "Dataplane",
            &found,
            &[(ORIGIN, "zone"), (ZONE, "zone-1"), (DISPLAY_NAME, "web-1")],
        )
    })
    .await;

    // Zone -> global -> other zones: a ZoneIngress.
    fed.apply("zone-1", &ingress_yaml("ingress-1", 10001));
    let zi = ingress_synced("ingress-1", "zone-1");
    eventually(SYNC, "the ZoneIngress of zone-1 in zone-2", async || {
        let found = fed
            .get("zone-2", &format!("/zoneingresses/{zi}"))
            .await?
            .ok_or_else(|| format!("no ZoneIngress {zi}"))?;
        check_labels(
            "ZoneIngress",
            &found,
            &[(ZONE, "zone-1"), (DISPLAY_NAME, "ingress-1")],
        )?;
        match str_at(&found, "/zone") {
            "zone-1" => Ok(()),
            other => Err(format!("ZoneIngress zone is {other:?}: {found}")),
        }
    })
    .await;
    // The ZoneIngress went through the same stream after the Dataplane: had the Dataplane
    // been sent to zone-2, it would be there by now.
    let leaked = fed.names("zone-2", "/meshes/default/dataplanes").await;
    assert_eq!(
        leaked,
        Ok(Vec::new()),
        "Dataplanes are not sent to other zones"
    );

    eventually(
        SYNC,
        "kumactl inspect zones: both Online, no lag",
        async || {
            for zone in zones {
                let row = inspect_row(&fed, zone)?;
                let cell = |h: &str| row.get(h).cloned().unwrap_or_default();
                if cell("STATUS") != "Online"
                    || !cell("GLOBAL->ZONE LAG").starts_with("0 (")
                    || !cell("ZONE->GLOBAL LAG").starts_with("0 (")
                {
                    return Err(format!("{row:?}"));
                }
            }
            Ok(())
        },
    )
    .await;

    // Deletes travel too.
    fed.delete(GLOBAL, &format!("{TPS}/allow-all")).await;
    for zone in zones {
        eventually(
            SYNC,
            &format!("policy deleted in {zone}"),
            async || match fed.get(zone, &format!("{TPS}/{tp}")).await? {
                None => Ok(()),
                Some(_) => Err("still there".into()),
            },
        )
        .await;
    }
    fed.delete("zone-1", "/meshes/default/dataplanes/web-1")
        .await;
    eventually(SYNC, "Dataplane deleted on the global", async || match fed
        .get(GLOBAL, &format!("/meshes/default/dataplanes/{dp}"))
        .await?
    {
        None => Ok(()),
        Some(_) => Err("still there".into()),
    })
    .await;
}

#[tokio::test]
async fn e2e_sync_both_ways_sqlite() {
    sync_both_ways(Federation::start(&["zone-1", "zone-2"]).await).await;
}

#[tokio::test]
async fn e2e_sync_both_ways_postgres() {
    sync_both_ways(Federation::start_postgres(&["zone-1", "zone-2"]).await).await;
}

// === 2. catch-up after a partition ===

#[tokio::test]
async fn e2e_partition_catch_up_sends_only_changes() {
    let fed = Federation::start(&["zone-1", "zone-2"]).await;
    for zone in ["zone-1", "zone-2"] {
        wait_synced(&fed, zone).await;
    }
    let name = |i: usize| format!("tp-{i:03}");
    fed.apply(GLOBAL, &tps_yaml((0..300).map(name), "web"));
    for zone in ["zone-1", "zone-2"] {
        assert_eq!(wait_tps_match(&fed, zone).await, 300 + DEFAULT_TPS);
    }
    fed.apply("zone-2", &ingress_yaml("ingress-2", 10002));
    let zi = ingress_synced("ingress-2", "zone-2");
    let zi_path = format!("/zoneingresses/{zi}");
    eventually(SYNC, "the ZoneIngress of zone-2 in zone-1", async || {
        fed.get("zone-1", &zi_path)
            .await?
            .map(|_| ())
            .ok_or_else(|| "not yet".to_string())
    })
    .await;

    fed.pause("zone-2");
    fed.wait_offline("zone-2", HEALTH_TIMEOUT + Duration::from_secs(10))
        .await;
    let sent = async || {
        fed.metric(
            GLOBAL,
            "kds_resources_sent_total",
            &[("zone", "zone-2"), ("direction", "globalToZone")],
        )
        .await
        .expect(
            "kds_resources_sent_total{zone=\"zone-2\",direction=\"globalToZone\"} on the global",
        )
    };
    let before = sent().await;

    // 100 changes while zone-2 is away: 40 updates, 30 deletes, 30 creates.
    fed.apply(GLOBAL, &tps_yaml((0..40).map(name), "updated"));
    for i in 40..70 {
        fed.delete(GLOBAL, &format!("{TPS}/{}", name(i))).await;
    }
    fed.apply(GLOBAL, &tps_yaml((300..330).map(name), "web"));

    assert_eq!(wait_tps_match(&fed, "zone-1").await, 300 + DEFAULT_TPS);
    assert!(
        fed.get("zone-1", &zi_path).await.expect("GET").is_some(),
        "zone-1 lost the ZoneIngress of the partitioned zone-2"
    );
    assert!(
        fed.get(GLOBAL, &zi_path).await.expect("GET").is_some(),
        "the global lost the ZoneIngress of the partitioned zone-2"
    );
    assert!(
        !fed.online("zone-2").await.expect("zone status"),
        "zone-2 is paused"
    );

    fed.resume("zone-2");
    let held = wait_tps_match(&fed, "zone-2").await;
    fed.wait_online("zone-2", CONNECT).await;
    let after = sent().await;
    let delta = after - before;
    println!(
        "catch-up of zone-2: {held} TrafficPermissions held, 100 changes, kds_resources_sent_total grew from {before} to {after} (+{delta})"
    );
    assert_eq!(held, 300 + DEFAULT_TPS);
    assert!(
        (100.0..=200.0).contains(&delta),
        "catch-up sent {delta} resources for 100 changes (at least 100, at most 200 expected; 300 exist)"
    );
}

// === 3. a global restart ===

#[tokio::test]
async fn e2e_global_restart_loses_nothing() {
    let mut fed = Federation::start(&["zone-1", "zone-2"]).await;
    for zone in ["zone-1", "zone-2"] {
        wait_synced(&fed, zone).await;
    }
    fed.apply(
        GLOBAL,
        &tps_yaml((0..50).map(|i| format!("a-{i:02}")), "web"),
    );
    fed.apply("zone-1", &dataplane_yaml("web-1"));
    fed.apply("zone-2", &dataplane_yaml("web-2"));
    let mut dataplanes = vec![
        dataplane_on_global("web-1", "zone-1"),
        dataplane_on_global("web-2", "zone-2"),
    ];
    dataplanes.sort();
    let global_dataplanes = async || {
        let names = fed.names(GLOBAL, "/meshes/default/dataplanes").await?;
        if names == dataplanes {
            Ok(())
        } else {
            Err(format!("{names:?}, want {dataplanes:?}"))
        }
    };
    for zone in ["zone-1", "zone-2"] {
        assert_eq!(wait_tps_match(&fed, zone).await, 50 + DEFAULT_TPS);
    }
    eventually(
        SYNC,
        "the zones' Dataplanes on the global",
        global_dataplanes,
    )
    .await;

    fed.kill(GLOBAL);
    fed.restart_global().await;
    fed.apply(
        GLOBAL,
        &tps_yaml((0..50).map(|i| format!("b-{i:02}")), "web"),
    );
    for zone in ["zone-1", "zone-2"] {
        fed.wait_online(zone, CONNECT).await;
        assert_eq!(wait_tps_match(&fed, zone).await, 100 + DEFAULT_TPS);
    }
    let names = fed
        .names(GLOBAL, "/meshes/default/dataplanes")
        .await
        .expect("list");
    assert_eq!(
        names, dataplanes,
        "the global holds exactly the zones' Dataplanes"
    );
    // The subscriptions of the killed instance are closed: one open subscription per zone.
    for zone in ["zone-1", "zone-2"] {
        eventually(
            SYNC,
            &format!("one open subscription of {zone}"),
            async || {
                let item = fed
                    .zone_overview(zone)
                    .await?
                    .ok_or_else(|| format!("{zone} is not listed"))?;
                let subscriptions = item
                    .pointer("/zoneInsight/subscriptions")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let open = subscriptions
                    .iter()
                    .filter(|s| s.get("disconnectTime").is_none())
                    .count();
                if open == 1 && subscriptions.len() >= 2 {
                    Ok(())
                } else {
                    Err(format!("{open} open of {}", subscriptions.len()))
                }
            },
        )
        .await;
    }
}

// === 4. one bad resource ===

/// The base64 data of Secret `name` in mesh `default` on `cp`.
async fn secret_data(fed: &Federation, cp: &str, name: &str) -> Result<String, String> {
    let secret = fed
        .get(cp, &format!("/meshes/default/secrets/{name}"))
        .await?
        .ok_or_else(|| format!("no Secret {name} on {cp}"))?;
    Ok(str_at(&secret, "/data").to_string())
}

/// Secret `name` came from the global and holds `data`.
async fn check_global_secret(
    fed: &Federation,
    zone: &str,
    name: &str,
    data: &str,
) -> Result<(), String> {
    let secret = fed
        .get(zone, &format!("/meshes/default/secrets/{name}"))
        .await?
        .ok_or_else(|| format!("no Secret {name} in {zone}"))?;
    check_labels("Secret", &secret, &[(ORIGIN, "global")])?;
    match str_at(&secret, "/data") {
        found if found == data => Ok(()),
        other => Err(format!("Secret {name} holds {other}, want {data}")),
    }
}

async fn check_tp(fed: &Federation, zone: &str, name: &str) -> Result<(), String> {
    fed.get(zone, &format!("{TPS}/{}", in_zones(name)))
        .await?
        .map(|_| ())
        .ok_or_else(|| format!("no TrafficPermission {name} in {zone}"))
}

/// The rejections of Secret `name` the global reports for `zone`.
async fn secret_rejections(fed: &Federation, zone: &str, name: &str) -> Result<Vec<Value>, String> {
    let item = fed
        .zone_overview(zone)
        .await?
        .ok_or_else(|| format!("{zone} is not listed"))?;
    let all = item
        .pointer("/zoneInsight/kdsSync/rejections")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    Ok(all
        .into_iter()
        .filter(|r| str_at(r, "/type") == "Secret" && str_at(r, "/name") == name)
        .collect())
}

/// `zoneInsight.kdsSync.globalToZone.updateTime` of `zone`: changes on every status write.
async fn status_written_at(fed: &Federation, zone: &str) -> Result<String, String> {
    let item = fed.zone_overview(zone).await?.unwrap_or_default();
    Ok(str_at(&item, "/zoneInsight/kdsSync/globalToZone/updateTime").to_string())
}

#[tokio::test]
async fn e2e_bad_resource_is_rejected_alone() {
    let mut fed = Federation::start(&["zone-1"]).await;
    wait_synced(&fed, "zone-1").await;
    let zone_data = "em9uZS1vd24="; // "zone-own"
    let run = fed.try_apply("zone-1", &secret_yaml("clash", zone_data));
    if !run.success {
        assert!(
            run.stderr.contains("405") || run.stderr.contains("Method not allowed"),
            "creating a Secret in zone-1 failed:\n{}",
            run.stderr
        );
        println!("a federated zone refuses Secret writes: creating `clash` standalone first");
        let standalone = ZoneOptions {
            federated: false,
            ..ZoneOptions::default()
        };
        fed.restart_zone_with("zone-1", standalone).await;
        fed.apply("zone-1", &secret_yaml("clash", zone_data));
        fed.restart_zone_with("zone-1", ZoneOptions::default())
            .await;
        fed.wait_online("zone-1", CONNECT).await;
    }
    assert_eq!(
        secret_data(&fed, "zone-1", "clash").await.as_deref(),
        Ok(zone_data)
    );

    fed.apply(
        GLOBAL,
        &[
            secret_yaml("clash", "Z2xvYmFs"), // "global"
            secret_yaml("fine", "ZmluZQ=="),  // "fine"
            tp_yaml("after-clash", "web"),
        ]
        .join("---\n"),
    );
    eventually(SYNC, "the rest of the batch in zone-1", async || {
        check_tp(&fed, "zone-1", "after-clash").await?;
        check_global_secret(&fed, "zone-1", "fine", "ZmluZQ==").await
    })
    .await;
    assert_eq!(
        secret_data(&fed, "zone-1", "clash").await.as_deref(),
        Ok(zone_data),
        "zone-1 keeps its own Secret clash"
    );
    let first = eventually(SYNC, "a rejection of Secret clash for zone-1", async || {
        let found = secret_rejections(&fed, "zone-1", "clash").await?;
        if found.is_empty() {
            Err("none yet".to_string())
        } else {
            Ok(found)
        }
    })
    .await;
    println!("rejection reported: {}", first[0]);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(str_at(&first[0], "/mesh"), "default");
    assert_eq!(str_at(&first[0], "/direction"), "globalToZone");

    // More changes, and a new stream (zone-1 restarts: the global offers clash again).
    fed.apply(
        GLOBAL,
        &[
            secret_yaml("fine", "ZmluZS0y"), // "fine-2"
            tp_yaml("after-clash-2", "web"),
        ]
        .join("---\n"),
    );
    eventually(SYNC, "the next changes in zone-1", async || {
        check_tp(&fed, "zone-1", "after-clash-2").await?;
        check_global_secret(&fed, "zone-1", "fine", "ZmluZS0y").await
    })
    .await;
    fed.restart("zone-1").await;
    fed.wait_online("zone-1", CONNECT).await;
    // Two status writes after the reconnection: whatever the new stream reported is in.
    for _ in 0..2 {
        let seen = status_written_at(&fed, "zone-1")
            .await
            .expect("zone status");
        eventually(SYNC, "a new zone-1 status write", async || {
            let now = status_written_at(&fed, "zone-1").await?;
            if now != seen && !now.is_empty() {
                Ok(())
            } else {
                Err(format!("updateTime still {seen:?}"))
            }
        })
        .await;
    }
    let again = secret_rejections(&fed, "zone-1", "clash")
        .await
        .expect("zone status");
    assert_eq!(
        again.len(),
        1,
        "Secret clash is reported exactly once: {again:?}"
    );
    assert_eq!(
        secret_data(&fed, "zone-1", "clash").await.as_deref(),
        Ok(zone_data),
        "zone-1 keeps its own Secret clash"
    );
}

// === 5. authentication ===

async fn refused_for_authentication(fed: &Federation) -> f64 {
    fed.metric(
        GLOBAL,
        "kds_zone_refused_total",
        &[("reason", "authentication")],
    )
    .await
    .unwrap_or(0.0)
}

#[tokio::test]
async fn e2e_impostor_zone_is_refused() {
    let mut fed = Federation::start(&["zone-1"]).await;
    fed.wait_online("zone-1", CONNECT).await;
    let before = refused_for_authentication(&fed).await;

    // zone-3 presents zone-1's token; zone-4 presents none.
    fed.add_zone(
        "zone-3",
        ZoneOptions {
            token: Token::Of("zone-1".into()),
            ..ZoneOptions::default()
        },
    )
    .await;
    fed.add_zone(
        "zone-4",
        ZoneOptions {
            token: Token::None,
            ..ZoneOptions::default()
        },
    )
    .await;
    eventually(SYNC, "both impostors refused", async || {
        let count = refused_for_authentication(&fed).await;
        let logs_say = ["zone-3", "zone-4"]
            .iter()
            .all(|z| fed.proc(z).logs().contains("refused"));
        // Each zone is refused at least twice: a first attempt and a retry.
        if count >= before + 4.0 && logs_say {
            Ok(())
        } else {
            Err(format!(
                "kds_zone_refused_total{{reason=\"authentication\"}} {before} -> {count}, zone logs say refused: {logs_say}"
            ))
        }
    })
    .await;
    for zone in ["zone-3", "zone-4"] {
        let line = fed
            .proc(zone)
            .logs()
            .lines()
            .find(|l| l.contains("refused"))
            .unwrap_or_default()
            .to_string();
        println!("{zone}: {line}");
        assert!(
            !fed.online(zone).await.expect("zone status"),
            "{zone} must never be online"
        );
        assert_eq!(
            fed.get(GLOBAL, &format!("/zones/{zone}")).await,
            Ok(None),
            "a refused zone is not registered"
        );
    }
    assert!(fed.online("zone-1").await.expect("zone status"));
}

// === 6. offline and back ===

#[tokio::test]
async fn e2e_zone_goes_offline_and_back() {
    let mut fed = Federation::start(&["zone-1", "zone-2"]).await;
    for zone in ["zone-1", "zone-2"] {
        wait_status(&fed, zone, "Online", CONNECT).await;
    }

    fed.kill("zone-1");
    let killed = Instant::now();
    wait_status(&fed, "zone-1", "Offline", Duration::from_secs(10)).await;
    println!("zone-1 killed: Offline after {:?}", killed.elapsed());
    fed.restart("zone-1").await;
    wait_status(&fed, "zone-1", "Online", CONNECT).await;

    fed.pause("zone-2");
    let paused = Instant::now();
    wait_status(
        &fed,
        "zone-2",
        "Offline",
        HEALTH_TIMEOUT + Duration::from_secs(2),
    )
    .await;
    println!("zone-2 paused: Offline after {:?}", paused.elapsed());
    fed.resume("zone-2");
    let resumed = Instant::now();
    wait_status(&fed, "zone-2", "Online", CONNECT).await;
    println!("zone-2 resumed: Online after {:?}", resumed.elapsed());
    assert_eq!(
        inspect_row(&fed, "zone-1")
            .expect("zone-1 row")
            .get("STATUS")
            .map(String::as_str),
        Some("Online")
    );
}
