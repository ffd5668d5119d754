//! One DNS query in, one decision out: the reply bytes, "forward it upstream", or "drop it".
//! Pure (no sockets, no clock) so every input can be tested; the server in
//! [`crate::server`] does the I/O.
//!
//! * A name of the domain with a VIP: an authoritative answer (A for an IPv4 VIP, AAAA for an
//!   IPv6 one, TTL [`TTL`]); other types of such a name get an empty NOERROR answer.
//! * A name of the domain without a VIP: NXDOMAIN (authoritative).
//! * A name outside the domain: forwarded when upstream resolvers are set, else REFUSED.
//! * Bytes that do not parse as a DNS query, and responses: dropped (never answered, so a
//!   spoofed response cannot start a loop). A query with other than one question: FORMERR. An
//!   opcode other than QUERY: NOTIMP.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::vips::Vips;

/// TTL of the answers, in seconds: Kuma's own DNS server (≤ 1.6) answered with 60.
pub const TTL: u32 = 60;

/// The EDNS payload size we announce (the DNS flag day 2020 value).
const EDNS_PAYLOAD: u16 = 1232;

/// The names this server answers: `{service}.{domain}` and, when different, the name with
/// every `_` of the service replaced by `.` (reference §6.2), lowercased.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    names: HashMap<String, IpAddr>,
}

impl Table {
    /// The table of every mesh's VIPs. A name two meshes both define goes to the mesh first in
    /// name order (its VIP is then the only one served under that name).
    pub fn build(domain: &str, meshes: &BTreeMap<String, Vips>) -> Table {
        let domain = normalize(domain);
        let mut names = HashMap::new();
        for vips in meshes.values() {
            for (service, address) in vips {
                let service = service.to_ascii_lowercase();
                names
                    .entry(format!("{service}.{domain}"))
                    .or_insert(*address);
                let dotted = service.replace('_', ".");
                if dotted != service {
                    names
                        .entry(format!("{dotted}.{domain}"))
                        .or_insert(*address);
                }
            }
        }
        Table { names }
    }

    /// The VIP of `name` (any case, with or without the final dot).
    pub fn lookup(&self, name: &str) -> Option<IpAddr> {
        self.names.get(&normalize(name)).copied()
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Lowercase, without leading or trailing dots.
fn normalize(name: &str) -> String {
    name.trim_matches('.').to_ascii_lowercase()
}

/// What became of a query; the label of `dns_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueryResult {
    /// NOERROR from our table (with or without records).
    Answered,
    NxDomain,
    /// REFUSED (outside the domain, no upstream), or NOTIMP (not a QUERY).
    Refused,
    /// Answered by an upstream resolver.
    Forwarded,
    /// No upstream resolver answered: SERVFAIL.
    ForwardFailed,
    /// Not a DNS query: dropped, or FORMERR.
    Malformed,
}

impl QueryResult {
    pub const ALL: [QueryResult; 6] = [
        QueryResult::Answered,
        QueryResult::NxDomain,
        QueryResult::Refused,
        QueryResult::Forwarded,
        QueryResult::ForwardFailed,
        QueryResult::Malformed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QueryResult::Answered => "answered",
            QueryResult::NxDomain => "nxdomain",
            QueryResult::Refused => "refused",
            QueryResult::Forwarded => "forwarded",
            QueryResult::ForwardFailed => "forward_failed",
            QueryResult::Malformed => "malformed",
        }
    }
}

/// What to do with a packet.
#[derive(Debug)]
pub enum Outcome {
    /// Send these bytes back.
    Reply(Vec<u8>, QueryResult),
    /// Send the packet to the upstream resolvers; on failure answer [`servfail`] of the
    /// request.
    Forward(Box<Message>),
    /// Send nothing.
    Drop,
}

/// Decides what to answer to `packet`. `domain` is the served domain (e.g. `mesh`);
/// `forward` whether upstream resolvers are configured.
pub fn handle(table: &Table, domain: &str, forward: bool, packet: &[u8]) -> Outcome {
    let Ok(request) = Message::from_vec(packet) else {
        return Outcome::Drop;
    };
    if request.metadata.message_type != MessageType::Query {
        return Outcome::Drop;
    }
    if request.metadata.op_code != OpCode::Query {
        return reply(
            response(&request, ResponseCode::NotImp, false),
            QueryResult::Refused,
        );
    }
    let [query] = request.queries.as_slice() else {
        return reply(
            response(&request, ResponseCode::FormErr, false),
            QueryResult::Malformed,
        );
    };
    let name = name_text(query.name());
    let domain = normalize(domain);
    let in_domain = name == domain
        || name
            .strip_suffix(domain.as_str())
            .is_some_and(|rest| rest.ends_with('.'));
    if !in_domain {
        if forward {
            return Outcome::Forward(Box::new(request));
        }
        return reply(
            response(&request, ResponseCode::Refused, false),
            QueryResult::Refused,
        );
    }
    if name == domain {
        // The apex exists but holds no records of ours.
        return reply(
            response(&request, ResponseCode::NoError, true),
            QueryResult::Answered,
        );
    }
    let Some(address) = table.names.get(&name).copied() else {
        return reply(
            response(&request, ResponseCode::NXDomain, true),
            QueryResult::NxDomain,
        );
    };
    let mut message = response(&request, ResponseCode::NoError, true);
    let qtype = query.query_type();
    let rdata = match address {
        IpAddr::V4(v4) if matches!(qtype, RecordType::A | RecordType::ANY) => Some(RData::A(A(v4))),
        IpAddr::V6(v6) if matches!(qtype, RecordType::AAAA | RecordType::ANY) => {
            Some(RData::AAAA(AAAA(v6)))
        }
        _ => None,
    };
    if let Some(rdata) = rdata {
        message.add_answer(Record::from_rdata(query.name().clone(), TTL, rdata));
    }
    reply(message, QueryResult::Answered)
}

/// SERVFAIL for a request that could not be forwarded; `None` if it cannot be encoded.
pub fn servfail(request: &Message) -> Option<Vec<u8>> {
    response(request, ResponseCode::ServFail, false)
        .to_vec()
        .ok()
}

fn reply(message: Message, result: QueryResult) -> Outcome {
    match message.to_vec() {
        Ok(bytes) => Outcome::Reply(bytes, result),
        // A name that decoded but does not encode again: nothing sensible to send.
        Err(_) => Outcome::Drop,
    }
}

/// An empty response to `request` with its id, question and RD bit.
fn response(request: &Message, code: ResponseCode, authoritative: bool) -> Message {
    let mut message = Message::response(request.metadata.id, request.metadata.op_code);
    message.metadata.response_code = code;
    message.metadata.authoritative = authoritative;
    message.metadata.recursion_desired = request.metadata.recursion_desired;
    if let Some(query) = request.queries.first() {
        message.add_query(query.clone());
    }
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        message.set_edns(edns);
    }
    message
}

/// The name as lowercase dotted text without the final dot; bytes outside ASCII are kept
/// (lossily), so such names are never in the table.
fn name_text(name: &Name) -> String {
    let mut text = String::new();
    for (i, label) in name.iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        text.push_str(&String::from_utf8_lossy(label).to_ascii_lowercase());
    }
    text
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::op::Query;

    use super::*;

    fn table() -> Table {
        let default: Vips = [
            (
                "backend".to_owned(),
                IpAddr::V4(Ipv4Addr::new(240, 0, 0, 0)),
            ),
            (
                "web_ns_svc_80".to_owned(),
                IpAddr::V4(Ipv4Addr::new(240, 0, 0, 1)),
            ),
            ("six".to_owned(), "fd00::1".parse().expect("v6")),
        ]
        .into();
        let other: Vips = [
            (
                "backend".to_owned(),
                IpAddr::V4(Ipv4Addr::new(240, 0, 0, 7)),
            ),
            (
                "only-other".to_owned(),
                IpAddr::V4(Ipv4Addr::new(240, 0, 0, 8)),
            ),
        ]
        .into();
        Table::build(
            "mesh",
            &[("default".to_owned(), default), ("other".to_owned(), other)].into(),
        )
    }

    fn query(name: &str, qtype: RecordType) -> Vec<u8> {
        let mut message = Message::query();
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
        message.to_vec().expect("encode")
    }

    fn answer(packet: &[u8], forward: bool) -> (Message, QueryResult) {
        match handle(&table(), "mesh", forward, packet) {
            Outcome::Reply(bytes, result) => {
                (Message::from_vec(&bytes).expect("reply parses"), result)
            }
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    fn addresses(message: &Message) -> Vec<String> {
        message
            .answers
            .iter()
            .map(|r| match &r.data {
                RData::A(a) => a.0.to_string(),
                RData::AAAA(a) => a.0.to_string(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_service_name_answers_its_vip_authoritatively_with_kumas_ttl() {
        let packet = query("backend.mesh.", RecordType::A);
        let (message, result) = answer(&packet, false);
        assert_eq!(result, QueryResult::Answered);
        assert_eq!(message.metadata.response_code, ResponseCode::NoError);
        assert!(message.metadata.authoritative);
        assert!(message.metadata.recursion_desired);
        assert_eq!(
            message.metadata.id,
            Message::from_vec(&packet).expect("q").metadata.id
        );
        assert_eq!(addresses(&message), vec!["240.0.0.0"]);
        assert_eq!(message.answers[0].ttl, TTL);
        assert_eq!(message.queries.len(), 1);
    }

    #[test]
    fn names_are_case_insensitive_and_the_dotted_variant_answers() {
        let (message, _) = answer(&query("BackEnd.MESH.", RecordType::A), false);
        assert_eq!(addresses(&message), vec!["240.0.0.0"]);
        let (message, _) = answer(&query("web.ns.svc.80.mesh.", RecordType::A), false);
        assert_eq!(addresses(&message), vec!["240.0.0.1"]);
        let (message, _) = answer(&query("web_ns_svc_80.mesh.", RecordType::A), false);
        assert_eq!(addresses(&message), vec!["240.0.0.1"]);
    }

    #[test]
    fn the_first_mesh_in_name_order_owns_a_shared_name() {
        let (message, _) = answer(&query("backend.mesh.", RecordType::A), false);
        assert_eq!(addresses(&message), vec!["240.0.0.0"]);
        let (message, _) = answer(&query("only-other.mesh.", RecordType::A), false);
        assert_eq!(addresses(&message), vec!["240.0.0.8"]);
    }

    #[test]
    fn other_types_of_a_known_name_get_an_empty_answer() {
        let (message, result) = answer(&query("backend.mesh.", RecordType::AAAA), false);
        assert_eq!(result, QueryResult::Answered);
        assert_eq!(message.metadata.response_code, ResponseCode::NoError);
        assert!(message.answers.is_empty());
        let (message, _) = answer(&query("six.mesh.", RecordType::AAAA), false);
        assert_eq!(addresses(&message), vec!["fd00::1"]);
    }

    #[test]
    fn unknown_names_of_the_domain_are_nxdomain() {
        let (message, result) = answer(&query("nope.mesh.", RecordType::A), false);
        assert_eq!(result, QueryResult::NxDomain);
        assert_eq!(message.metadata.response_code, ResponseCode::NXDomain);
        assert!(message.metadata.authoritative);
        // A name that merely ends in the domain's letters is outside it.
        let (message, result) = answer(&query("backend.notmesh.", RecordType::A), false);
        assert_eq!(result, QueryResult::Refused);
        assert_eq!(message.metadata.response_code, ResponseCode::Refused);
    }

    #[test]
    fn names_outside_the_domain_are_refused_or_forwarded() {
        let (message, result) = answer(&query("example.com.", RecordType::A), false);
        assert_eq!(result, QueryResult::Refused);
        assert_eq!(message.metadata.response_code, ResponseCode::Refused);
        assert!(!message.metadata.authoritative);
        match handle(
            &table(),
            "mesh",
            true,
            &query("example.com.", RecordType::A),
        ) {
            Outcome::Forward(request) => {
                let bytes = servfail(&request).expect("servfail encodes");
                let message = Message::from_vec(&bytes).expect("parses");
                assert_eq!(message.metadata.response_code, ResponseCode::ServFail);
                assert_eq!(message.metadata.id, request.metadata.id);
            }
            other => panic!("expected forward, got {other:?}"),
        }
        // In-domain names are never forwarded.
        let (_, result) = answer(&query("nope.mesh.", RecordType::A), true);
        assert_eq!(result, QueryResult::NxDomain);
    }

    #[test]
    fn the_configured_domain_is_used() {
        let table = Table::build(
            "internal.",
            &[(
                "m".to_owned(),
                [("a".to_owned(), IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4)))].into(),
            )]
            .into(),
        );
        assert_eq!(
            table.lookup("A.internal"),
            Some(IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4)))
        );
        match handle(&table, "internal", false, &query("a.mesh.", RecordType::A)) {
            Outcome::Reply(_, result) => assert_eq!(result, QueryResult::Refused),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn edns_queries_get_an_opt_record_back() {
        let mut message = Message::query();
        message.add_query(Query::query(
            Name::from_ascii("backend.mesh.").expect("name"),
            RecordType::A,
        ));
        message.set_edns(Edns::new());
        let (reply, _) = answer(&message.to_vec().expect("encode"), false);
        assert!(reply.edns.is_some());
    }

    #[test]
    fn responses_and_garbage_are_dropped_and_odd_queries_get_errors() {
        let mut response = Message::from_vec(&query("backend.mesh.", RecordType::A)).expect("q");
        response.metadata.message_type = MessageType::Response;
        assert!(matches!(
            handle(&table(), "mesh", false, &response.to_vec().expect("encode")),
            Outcome::Drop
        ));
        for garbage in [
            &b""[..],
            b"\x00",
            b"\x12\x34\x01\x00\x00\x01",
            b"not dns at all!!",
        ] {
            assert!(
                matches!(handle(&table(), "mesh", false, garbage), Outcome::Drop),
                "{garbage:?}"
            );
        }
        let mut two = Message::query();
        two.add_query(Query::query(
            Name::from_ascii("a.mesh.").expect("n"),
            RecordType::A,
        ));
        two.add_query(Query::query(
            Name::from_ascii("b.mesh.").expect("n"),
            RecordType::A,
        ));
        let (reply, result) = answer(&two.to_vec().expect("encode"), false);
        assert_eq!(result, QueryResult::Malformed);
        assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
        let mut notify = Message::new(7, MessageType::Query, OpCode::Notify);
        notify.add_query(Query::query(
            Name::from_ascii("a.mesh.").expect("n"),
            RecordType::A,
        ));
        let (reply, result) = answer(&notify.to_vec().expect("encode"), false);
        assert_eq!(result, QueryResult::Refused);
        assert_eq!(reply.metadata.response_code, ResponseCode::NotImp);
    }

    /// A small xorshift generator: deterministic, no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn no_input_makes_the_handler_panic() {
        let table = table();
        let valid = query("backend.mesh.", RecordType::A);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        // Every truncation of a valid query.
        for len in 0..valid.len() {
            let _ = handle(&table, "mesh", true, &valid[..len]);
        }
        // Oversized: a valid query followed by junk, and a 64 KiB packet.
        let mut long = valid.clone();
        long.extend(std::iter::repeat_n(0xff, 70_000));
        let _ = handle(&table, "mesh", true, &long);
        let _ = handle(&table, "mesh", true, &vec![0u8; 65_535]);
        // Random bytes, and valid queries with random bytes flipped.
        for round in 0..20_000 {
            let len = (rng.next() % 600) as usize;
            let mut packet: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if round % 2 == 0 {
                packet = valid.clone();
                for _ in 0..1 + rng.next() % 4 {
                    let at = (rng.next() as usize) % packet.len();
                    packet[at] = rng.next() as u8;
                }
            }
            let _ = handle(&table, "mesh", round % 3 == 0, &packet);
        }
        // Compression pointers that loop.
        let mut looping = valid[..12].to_vec();
        looping[5] = 1; // one question
        looping.extend([0xc0, 12, 0, 1, 0, 1]);
        let _ = handle(&table, "mesh", false, &looping);
    }
}
