//! Deterministic protobuf bytes: fields in number order, map entries sorted by key.
//!
//! prost writes map fields (`labels`, tags, selectors, `Struct` values) in `HashMap` order,
//! which differs between two maps with the same content. KDS versions are the SHA-256 of the
//! encoded `KumaResource` (as Go's deterministic marshalling gives), so the same resource
//! must always give the same bytes or every tick would resend everything. This rewrites
//! prost's output using the message descriptors of `kds-proto`; it only ever sees bytes this
//! crate encoded itself.

use prost::encoding::{decode_varint, encode_varint};
use prost_reflect::{Kind, MessageDescriptor};

/// Nesting deeper than this is refused (the caller falls back to the bytes as they are).
const MAX_DEPTH: usize = 100;

/// The descriptor of a message by its full name, e.g. `kuma.mesh.v1alpha1.Dataplane`.
pub(crate) fn descriptor(full_name: &str) -> Option<MessageDescriptor> {
    kds_proto::descriptor_pool().get_message_by_name(full_name)
}

/// `bytes` (an encoding of a `full_name` message) in canonical form; the bytes unchanged when
/// the descriptor is unknown or the bytes are not a well-formed encoding.
pub(crate) fn canonicalize(full_name: &str, bytes: Vec<u8>) -> Vec<u8> {
    match descriptor(full_name).and_then(|d| canonical(&d, &bytes, 0)) {
        Some(canonical) => canonical,
        None => bytes,
    }
}

/// Sort position of a map entry: its key.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum MapKey {
    NotAMap,
    Int(u64),
    Bytes(Vec<u8>),
}

struct Record {
    number: u32,
    map_key: MapKey,
    bytes: Vec<u8>,
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if buf.len() < n {
        return None;
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Some(head)
}

fn canonical(desc: &MessageDescriptor, bytes: &[u8], depth: usize) -> Option<Vec<u8>> {
    if depth > MAX_DEPTH {
        return None;
    }
    let mut records = Vec::new();
    let mut buf = bytes;
    while !buf.is_empty() {
        let key = decode_varint(&mut buf).ok()?;
        let number = u32::try_from(key >> 3).ok()?;
        if number == 0 {
            return None;
        }
        let mut out = Vec::new();
        encode_varint(key, &mut out);
        let mut map_key = MapKey::NotAMap;
        match key & 7 {
            0 => encode_varint(decode_varint(&mut buf).ok()?, &mut out),
            1 => out.extend_from_slice(take(&mut buf, 8)?),
            5 => out.extend_from_slice(take(&mut buf, 4)?),
            2 => {
                let len = usize::try_from(decode_varint(&mut buf).ok()?).ok()?;
                let payload = take(&mut buf, len)?;
                let field = desc.get_field(number);
                let payload = match field.as_ref().map(|f| f.kind()) {
                    Some(Kind::Message(inner)) => canonical(&inner, payload, depth + 1)?,
                    _ => payload.to_vec(),
                };
                if field.is_some_and(|f| f.is_map()) {
                    map_key = entry_key(&payload)?;
                }
                encode_varint(payload.len() as u64, &mut out);
                out.extend_from_slice(&payload);
            }
            // groups (3, 4) are not used by any of our messages
            _ => return None,
        }
        records.push(Record {
            number,
            map_key,
            bytes: out,
        });
    }
    // stable: repeated fields keep their order, map entries are ordered by key
    records.sort_by(|a, b| {
        a.number
            .cmp(&b.number)
            .then_with(|| a.map_key.cmp(&b.map_key))
    });
    Some(records.into_iter().flat_map(|r| r.bytes).collect())
}

/// The key (field 1) of an encoded map entry; an absent key is the default (empty/zero).
fn entry_key(entry: &[u8]) -> Option<MapKey> {
    let mut buf = entry;
    while !buf.is_empty() {
        let key = decode_varint(&mut buf).ok()?;
        let is_key = key >> 3 == 1;
        let value = match key & 7 {
            0 => MapKey::Int(decode_varint(&mut buf).ok()?),
            1 => MapKey::Bytes(take(&mut buf, 8)?.to_vec()),
            5 => MapKey::Bytes(take(&mut buf, 4)?.to_vec()),
            2 => {
                let len = usize::try_from(decode_varint(&mut buf).ok()?).ok()?;
                MapKey::Bytes(take(&mut buf, len)?.to_vec())
            }
            _ => return None,
        };
        if is_key {
            return Some(value);
        }
    }
    Some(MapKey::Bytes(Vec::new()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use model::mesh_pb;
    use prost::Message;

    use super::*;

    fn dataplane_with_tags(pairs: &[(&str, &str)]) -> mesh_pb::Dataplane {
        let mut tags = HashMap::new();
        for (k, v) in pairs {
            tags.insert(k.to_string(), v.to_string());
        }
        mesh_pb::Dataplane {
            networking: Some(mesh_pb::dataplane::Networking {
                address: "10.0.0.1".into(),
                inbound: vec![mesh_pb::dataplane::networking::Inbound {
                    port: 8080,
                    tags,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn same_content_same_bytes_whatever_the_insertion_order() {
        let pairs: Vec<(String, String)> = (0..40)
            .map(|i| (format!("key-{i}"), format!("v{i}")))
            .collect();
        let forward: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut backward = forward.clone();
        backward.reverse();
        let a = dataplane_with_tags(&forward).encode_to_vec();
        let b = dataplane_with_tags(&backward).encode_to_vec();
        let name = "kuma.mesh.v1alpha1.Dataplane";
        let ca = canonicalize(name, a.clone());
        let cb = canonicalize(name, b);
        assert_eq!(ca, cb);
        // still a valid encoding of the same message
        let decoded = mesh_pb::Dataplane::decode(ca.as_slice()).expect("decodes");
        assert_eq!(
            decoded,
            mesh_pb::Dataplane::decode(a.as_slice()).expect("x")
        );
        // and stable
        assert_eq!(canonicalize(name, ca.clone()), ca);
    }

    #[test]
    fn garbage_is_returned_unchanged() {
        let junk = vec![0xff, 0xff, 0xff];
        assert_eq!(
            canonicalize("kuma.mesh.v1alpha1.Dataplane", junk.clone()),
            junk
        );
        assert_eq!(canonicalize("no.such.Message", vec![8, 1]), vec![8, 1]);
    }
}
