//! `.mesh` DNS of a zone, queried with the real `dig` (Debian's `dnsutils`): a local service
//! applied with kumactl, NXDOMAIN and REFUSED, garbage packets, the VIP kept across a restart
//! of the zone; and in a federation, a service that a ZoneIngress of zone-2 makes available
//! answered by zone-1, its VIP kept across zone-1's reconnect to the global.
//!
//! Needs `dig` on the PATH (`.ci/run` installs `dnsutils`); without it the tests fail, they
//! never skip. Build the binaries first: `cargo build -p zone -p global -p ctl`.

mod support;

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use support::{Federation, GLOBAL, eventually, label};

const SYNC: Duration = Duration::from_secs(30);

/// What `dig` printed for one query.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    status: String,
    addresses: Vec<Ipv4Addr>,
    /// TTL of the first A record.
    ttl: Option<u32>,
}

fn dig_binary() -> &'static str {
    let found = Command::new("dig").arg("-v").output();
    match found {
        Ok(_) => "dig",
        Err(e) => panic!(
            "`dig` is not installed ({e}): install Debian's dnsutils (`apt-get install -y dnsutils`; `.ci/run` does it)"
        ),
    }
}

/// `dig @127.0.0.1 -p PORT NAME A` (over TCP with `tcp`), parsed.
fn dig(port: u16, name: &str, tcp: bool) -> Result<Answer, String> {
    let mut command = Command::new(dig_binary());
    command.args([
        "@127.0.0.1",
        "-p",
        &port.to_string(),
        name,
        "A",
        "+tries=1",
        "+time=2",
    ]);
    if tcp {
        command.arg("+tcp");
    }
    let out = command.output().map_err(|e| format!("running dig: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .ok_or_else(|| format!("dig printed no status:\n{text}"))?
        .to_owned();
    let mut addresses = Vec::new();
    let mut ttl = None;
    if let Some(section) = text.split(";; ANSWER SECTION:").nth(1) {
        for line in section.lines().skip(1).take_while(|l| !l.trim().is_empty()) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if let [_, record_ttl, "IN", "A", address] = fields.as_slice() {
                ttl = ttl.or(record_ttl.parse().ok());
                addresses.push(
                    address
                        .parse()
                        .map_err(|_| format!("bad address in {line:?}"))?,
                );
            }
        }
    }
    Ok(Answer {
        status,
        addresses,
        ttl,
    })
}

/// Waits until `name` answers one address on zone `zone`'s DNS port; returns it.
async fn vip_of(federation: &Federation, zone: &str, name: &str) -> Ipv4Addr {
    let port = federation.dns_port(zone);
    eventually(SYNC, &format!("{name} answered by {zone}"), async || {
        let answer = dig(port, name, false)?;
        match (answer.status.as_str(), answer.addresses.as_slice()) {
            ("NOERROR", [address]) => Ok(*address),
            _ => Err(format!("{answer:?}")),
        }
    })
    .await
}

fn dataplane_yaml(name: &str, service: &str, port: u16) -> String {
    format!(
        "type: Dataplane\nmesh: default\nname: {name}\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: {port}\n    servicePort: {}\n    tags:\n      kuma.io/service: {service}\n",
        port + 1
    )
}

fn in_cidr(address: Ipv4Addr) -> bool {
    address.octets()[0] & 0xf0 == 240
}

#[tokio::test]
async fn e2e_dns_answers_local_services_refuses_others_and_keeps_vips_across_a_restart() {
    dig_binary();
    let mut zone = Federation::start_standalone("zone-1", Vec::new()).await;
    let port = zone.dns_port("zone-1");
    zone.apply(
        "zone-1",
        &dataplane_yaml("backend-e2e-1", "backend-e2e", 21001),
    );
    let backend = vip_of(&zone, "zone-1", "backend-e2e.mesh").await;
    assert!(in_cidr(backend), "{backend} is outside 240.0.0.0/4");
    // A second service, sorting before the first: it gets a new VIP, the first keeps its own.
    zone.apply("zone-1", &dataplane_yaml("aaa-e2e-1", "aaa-e2e", 21003));
    let aaa = vip_of(&zone, "zone-1", "aaa-e2e.mesh").await;
    assert_ne!(aaa, backend);
    assert_eq!(vip_of(&zone, "zone-1", "backend-e2e.mesh").await, backend);

    let answer = dig(port, "backend-e2e.mesh", false).expect("dig");
    assert_eq!(answer.ttl, Some(60), "{answer:?}");
    let answer = dig(port, "backend-e2e.mesh", true).expect("dig over TCP");
    assert_eq!(answer.addresses, vec![backend], "over TCP: {answer:?}");
    let answer = dig(port, "nope-e2e.mesh", false).expect("dig");
    assert_eq!(answer.status, "NXDOMAIN", "{answer:?}");
    let answer = dig(port, "example.com", false).expect("dig");
    assert_eq!(answer.status, "REFUSED", "{answer:?}");

    // Garbage does not stop the server, and is counted.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    for round in 0..200u32 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = (state % 700) as usize;
        let packet: Vec<u8> = (0..len)
            .map(|i| (state >> (i % 8 * 8)) as u8 ^ round as u8)
            .collect();
        socket.send_to(&packet, ("127.0.0.1", port)).expect("send");
    }
    socket
        .send_to(&[0u8; 1], ("127.0.0.1", port))
        .expect("send");
    socket
        .send_to(&[0xffu8; 4000], ("127.0.0.1", port))
        .expect("send");
    assert_eq!(vip_of(&zone, "zone-1", "backend-e2e.mesh").await, backend);
    let malformed = zone
        .metric("zone-1", "dns_requests_total", &[("result", "malformed")])
        .await
        .unwrap_or(0.0);
    assert!(malformed >= 2.0, "malformed counted: {malformed}");
    let answered = zone
        .metric("zone-1", "dns_requests_total", &[("result", "answered")])
        .await
        .unwrap_or(0.0);
    assert!(answered >= 1.0, "answered counted: {answered}");

    // A restart of the zone keeps both VIPs (read back from the Config it persisted).
    zone.restart("zone-1").await;
    assert_eq!(vip_of(&zone, "zone-1", "backend-e2e.mesh").await, backend);
    assert_eq!(vip_of(&zone, "zone-1", "aaa-e2e.mesh").await, aaa);

    // A service that disappears releases its name.
    zone.kumactl(
        "zone-1",
        &["delete", "dataplane", "aaa-e2e-1", "--mesh", "default"],
    )
    .ok();
    eventually(SYNC, "aaa-e2e.mesh gone", async || {
        let answer = dig(port, "aaa-e2e.mesh", false)?;
        if answer.status == "NXDOMAIN" {
            Ok(())
        } else {
            Err(format!("{answer:?}"))
        }
    })
    .await;
    assert_eq!(vip_of(&zone, "zone-1", "backend-e2e.mesh").await, backend);
}

#[tokio::test]
async fn e2e_dns_answers_a_service_of_another_zone_and_keeps_its_vip_across_a_kds_reconnect() {
    dig_binary();
    let mut federation = Federation::start(&["zone-1", "zone-2"]).await;
    federation.wait_online("zone-1", SYNC).await;
    federation.wait_online("zone-2", SYNC).await;
    // The ZoneIngress is authored in zone-2 (kumactl in a zone may write it); zone-2 fills in
    // its available services from its Dataplanes, and it travels zone-2 → global → zone-1.
    federation.apply(
        "zone-2",
        "type: ZoneIngress
name: ingress-e2e
networking:
  address: 127.0.0.1
  port: 10001
  advertisedAddress: 127.0.0.1
  advertisedPort: 10001
",
    );
    federation.apply(
        "zone-2",
        &dataplane_yaml("remote-e2e-1", "remote-svc", 22001),
    );
    federation.apply("zone-1", &dataplane_yaml("local-e2e-1", "local-e2e", 21001));
    let remote = vip_of(&federation, "zone-1", "remote-svc.mesh").await;
    let local = vip_of(&federation, "zone-1", "local-e2e.mesh").await;
    assert!(in_cidr(remote) && in_cidr(local));
    assert_ne!(remote, local);
    // zone-1's own service is not offered by zone-2.
    let answer = dig(federation.dns_port("zone-2"), "local-e2e.mesh", false).expect("dig");
    assert_eq!(answer.status, "NXDOMAIN", "zone-2: {answer:?}");

    // zone-1 loses the global and reconnects: the catch-up sync must not move the VIP. A
    // policy applied on the restarted global reaching zone-1 proves the new session synced.
    federation.restart_global().await;
    federation.apply(
        GLOBAL,
        "type: TrafficPermission\nmesh: default\nname: after-restart-e2e\nsources:\n- match:\n    kuma.io/service: '*'\ndestinations:\n- match:\n    kuma.io/service: '*'\n",
    );
    eventually(
        SYNC,
        "the new policy in zone-1 after the reconnect",
        async || {
            let items = federation
                .list("zone-1", "/meshes/default/traffic-permissions")
                .await?;
            if items
                .iter()
                .any(|item| label(item, "kuma.io/display-name") == "after-restart-e2e")
            {
                Ok(())
            } else {
                Err(format!("{} policies, not the new one", items.len()))
            }
        },
    )
    .await;
    assert_eq!(
        vip_of(&federation, "zone-1", "remote-svc.mesh").await,
        remote
    );
    assert_eq!(vip_of(&federation, "zone-1", "local-e2e.mesh").await, local);
    // And zone-1 itself restarting (a fresh KDS session and a full resync) keeps them too.
    federation.restart("zone-1").await;
    federation.wait_online("zone-1", SYNC).await;
    assert_eq!(
        vip_of(&federation, "zone-1", "remote-svc.mesh").await,
        remote
    );
    assert_eq!(vip_of(&federation, "zone-1", "local-e2e.mesh").await, local);
}
