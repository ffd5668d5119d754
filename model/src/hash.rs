//! Synced-name hashing: the names KDS gives resources that cross between global and zones.
//!
//! Global and every zone must compute the same name from the same inputs, so this follows
//! Kuma's scheme exactly: FNV-1a 64 over the concatenated inputs, written as 16 lowercase hex
//! digits, each digit mapped through a 27-letter alphabet with no vowels, appended to the name
//! cut to 236 characters.

const ALPHABET: &[u8; 27] = b"bcdfghjklmnpqrstvwxz2456789";
const MAX_NAME: usize = 253 - 17;

fn fnv1a64(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

/// The suffix only: 16 characters of the safe alphabet.
pub fn hash_suffix(mesh: &str, name: &str, extra: &[&str]) -> String {
    let mut parts = vec![mesh, name];
    parts.extend_from_slice(extra);
    let hex = format!("{:016x}", fnv1a64(&parts));
    hex.bytes()
        .map(|c| char::from(ALPHABET[usize::from(c) % ALPHABET.len()]))
        .collect()
}

/// `name` (cut to 236 characters) + `-` + the hash of mesh, name and the extra inputs
/// (the origin zone, then the namespace when there is one).
pub fn hashed_name(mesh: &str, name: &str, extra: &[&str]) -> String {
    let mut cut = name;
    if cut.len() > MAX_NAME {
        let mut end = MAX_NAME;
        while !cut.is_char_boundary(end) {
            end -= 1;
        }
        cut = &cut[..end];
    }
    format!("{cut}-{}", hash_suffix(mesh, name, extra))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(mesh: &str, name: &str, extra: &[&str], expected: &str) {
        assert_eq!(
            hashed_name(mesh, name, extra),
            expected,
            "hashed_name({mesh:?}, {name:?}, {extra:?})"
        );
    }

    // Vectors verified against Kuma's golden files (kuma-multizone.md §1.10).
    #[test]
    fn kuma_test_vectors() {
        check(
            "mesh-1",
            "backend",
            &["zone-uni"],
            "backend-586b984b597z5874",
        );
        check(
            "mesh-1",
            "backend",
            &["zone-k8s", "ns-k8s"],
            "backend-z7f47x24v9f5x2b4",
        );
        check("mesh-1", "backend", &[], "backend-z6v4648zfz9c6wbv");
        check(
            "mesh-1",
            "matched-for-rules-mt-bbbbbb",
            &["zone-uni"],
            "matched-for-rules-mt-bbbbbb-49cz499w5458c56v",
        );
    }

    #[test]
    fn long_names_are_cut_to_fit_253() {
        let long = "a".repeat(300);
        let hashed = hashed_name("m", &long, &[]);
        assert_eq!(hashed.len(), 253);
        assert!(hashed.starts_with(&"a".repeat(236)));
    }
}
