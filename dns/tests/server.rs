//! The DNS server over real sockets: UDP, TCP, garbage, and forwarding to an upstream (a
//! second instance of the server, authoritative for another domain).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use dns::handler::{QueryResult, Table};
use dns::{DnsMetrics, DnsState};
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

async fn start(
    domain: &str,
    service: &str,
    vip: Ipv4Addr,
    upstreams: Vec<SocketAddr>,
) -> (SocketAddr, Arc<DnsState>) {
    let udp = UdpSocket::bind("127.0.0.1:0").await.expect("udp");
    let addr = udp.local_addr().expect("addr");
    let tcp = TcpListener::bind(addr).await.expect("tcp on the same port");
    let state = DnsState::new(domain, upstreams, DnsMetrics::default());
    let meshes: BTreeMap<String, dns::vips::Vips> = [(
        "default".to_owned(),
        [(service.to_owned(), IpAddr::V4(vip))].into(),
    )]
    .into();
    state.set_table(Table::build(domain, &meshes));
    tokio::spawn(dns::server::serve(
        udp,
        tcp,
        state.clone(),
        std::future::pending(),
    ));
    (addr, state)
}

fn query(name: &str) -> Vec<u8> {
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(
        Name::from_ascii(name).expect("name"),
        RecordType::A,
    ));
    message.to_vec().expect("encode")
}

async fn udp_ask(server: SocketAddr, packet: &[u8]) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("client");
    socket.send_to(packet, server).await.expect("send");
    let mut buffer = vec![0u8; 4096];
    let len = tokio::time::timeout(Duration::from_secs(10), socket.recv(&mut buffer))
        .await
        .expect("a reply within 10 s")
        .expect("recv");
    Message::from_vec(&buffer[..len]).expect("reply parses")
}

fn first_a(message: &Message) -> Option<Ipv4Addr> {
    message.answers.iter().find_map(|r| match &r.data {
        RData::A(a) => Some(a.0),
        _ => None,
    })
}

#[tokio::test]
async fn udp_and_tcp_answer_and_garbage_does_not_stop_the_server() {
    let (addr, state) = start("mesh", "backend", Ipv4Addr::new(240, 0, 0, 0), Vec::new()).await;
    let reply = udp_ask(addr, &query("backend.mesh.")).await;
    assert_eq!(first_a(&reply), Some(Ipv4Addr::new(240, 0, 0, 0)));
    let reply = udp_ask(addr, &query("example.com.")).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);

    // Garbage over UDP: dropped and counted, the server keeps answering.
    let garbage = UdpSocket::bind("127.0.0.1:0").await.expect("client");
    for packet in [
        &b""[..],
        b"\x01",
        &[0xffu8; 3000],
        b"\x00\x01\x00\x00\x00\x05garbage",
    ] {
        garbage.send_to(packet, addr).await.expect("send");
    }
    let reply = udp_ask(addr, &query("backend.mesh.")).await;
    assert_eq!(first_a(&reply), Some(Ipv4Addr::new(240, 0, 0, 0)));
    assert!(state.metrics().requests(QueryResult::Malformed) >= 3);

    // TCP: two queries on one connection, length-prefixed.
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    for name in ["backend.mesh.", "nope.mesh."] {
        let packet = query(name);
        let len = u16::try_from(packet.len()).expect("small");
        stream.write_all(&len.to_be_bytes()).await.expect("write");
        stream.write_all(&packet).await.expect("write");
        let mut prefix = [0u8; 2];
        stream.read_exact(&mut prefix).await.expect("read");
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        stream.read_exact(&mut reply).await.expect("read");
        let reply = Message::from_vec(&reply).expect("parses");
        if name == "nope.mesh." {
            assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
        } else {
            assert_eq!(first_a(&reply), Some(Ipv4Addr::new(240, 0, 0, 0)));
        }
    }
    // Garbage on TCP closes that connection only.
    let mut bad = TcpStream::connect(addr).await.expect("connect");
    bad.write_all(&[0, 4, 1, 2, 3, 4]).await.expect("write");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), bad.read_to_end(&mut rest)).await;
    assert!(rest.is_empty());
    let reply = udp_ask(addr, &query("backend.mesh.")).await;
    assert_eq!(first_a(&reply), Some(Ipv4Addr::new(240, 0, 0, 0)));
}

#[tokio::test]
async fn names_outside_the_domain_go_to_the_configured_upstream() {
    let (upstream, _) = start("corp", "db", Ipv4Addr::new(10, 1, 2, 3), Vec::new()).await;
    let (addr, state) = start(
        "mesh",
        "backend",
        Ipv4Addr::new(240, 0, 0, 0),
        vec![upstream],
    )
    .await;
    let reply = udp_ask(addr, &query("db.corp.")).await;
    assert_eq!(first_a(&reply), Some(Ipv4Addr::new(10, 1, 2, 3)));
    assert_eq!(state.metrics().requests(QueryResult::Forwarded), 1);
    // The mesh domain is still ours.
    let reply = udp_ask(addr, &query("backend.mesh.")).await;
    assert_eq!(first_a(&reply), Some(Ipv4Addr::new(240, 0, 0, 0)));

    // An upstream that never answers: SERVFAIL after the timeout.
    let silent = UdpSocket::bind("127.0.0.1:0").await.expect("silent");
    let (addr, state) = start(
        "mesh",
        "backend",
        Ipv4Addr::new(240, 0, 0, 0),
        vec![silent.local_addr().expect("addr")],
    )
    .await;
    let reply = udp_ask(addr, &query("db.corp.")).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(state.metrics().requests(QueryResult::ForwardFailed), 1);
}
