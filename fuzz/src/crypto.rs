//! Fuzz target bodies for `sealvol_crypto`: the key header (`keys.json`) and sealed objects and
//! chunks, under fixed test keys.
//!
//! This file is also compiled into `crates/crypto/tests/fuzz_seeds.rs` (no fuzz engine there),
//! which runs it over the committed seeds in `fuzz/seeds/key_header` and `fuzz/seeds/sealed`.

use sealvol_crypto::{
    sealed_chunk_len, ChunkAddr, Domain, HashKey, KdfParams, KeyHeader, SealKey, Secret, Verify,
    SEGMENT,
};

/// Key header: arbitrary bytes decode or fail, never panic, never run a KDF (`from_json`
/// does not unlock). Whatever decodes re-encodes to JSON that decodes to the same header.
pub fn key_header(data: &[u8]) {
    if let Ok(h) = KeyHeader::from_json(data) {
        let json = h.to_json();
        let again = KeyHeader::from_json(&json).expect("a re-encoded header decodes");
        assert_eq!(again.to_json(), json, "key header round trip");
    }
}

/// Key-header seeds: a key-file slot and a passphrase slot (weakest KDF parameters, so
/// making it is quick), as `sealvol init` and `key add` write them.
pub fn key_header_seeds() -> Vec<(String, Vec<u8>)> {
    let secret = Secret::key_file(&[7; 32]);
    let (mut h, master) =
        KeyHeader::create(&secret, KdfParams::MIN, 1_700_000_000).expect("header");
    let one = h.to_json();
    let pass = Secret::Passphrase(b"correct horse".to_vec().into());
    h.add_slot(&master, &pass, KdfParams::MIN, 1_700_000_001)
        .expect("slot");
    vec![
        ("keyfile-slot".to_string(), one),
        ("two-slots".to_string(), h.to_json()),
    ]
}

const BINDING: &[u8] = b"fuzz-volume\0addr";

fn keys() -> (SealKey, HashKey) {
    (SealKey::new(&[5; 32]), HashKey::new(&[6; 32]))
}

/// Plaintext up to this long in the seal-and-tamper mode: five segments.
const MAX_PLAIN: usize = 5 * SEGMENT;

fn u32_at(b: &[u8], at: usize) -> usize {
    let mut w = [0u8; 4];
    for (i, x) in b.iter().skip(at).take(4).enumerate() {
        w[i] = *x;
    }
    u32::from_le_bytes(w) as usize
}

/// `v[range]` clamped to `v`, as `open_chunk_range` clamps.
fn clamp(v: &[u8], start: usize, end: usize) -> &[u8] {
    let end = end.min(v.len());
    if start >= end {
        &[]
    } else {
        &v[start..end]
    }
}

/// Sealed objects and chunks. Input: a selector byte, then
/// - 0: a sealed metadata object (domain from the next byte), opened under the test key;
/// - 1: a 32-byte address, a range (two u32 LE), then a sealed chunk, opened whole and by range;
/// - 2: seal-then-tamper: plaintext length (u24 LE, up to five segments), tamper kind, tamper
///   position (u32 LE), range (two u32 LE), then a pattern the plaintext repeats.
///
/// Properties: no panic, no allocation past the input's scale; an untampered seal opens to its
/// plaintext whole and by any range; a tampered one never opens whole, and any range it still
/// opens (a segment the damage does not touch) gives exactly the original bytes.
pub fn sealed(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let (seal, hash) = keys();
    match sel % 3 {
        0 => {
            let Some((&d, sealed)) = rest.split_first() else {
                return;
            };
            let domains = [
                Domain::Chunk,
                Domain::Inode,
                Domain::Dirent,
                Domain::Extent,
                Domain::RefCount,
                Domain::LogEntry,
                Domain::Counters,
                Domain::Config,
                Domain::KeySlot,
            ];
            let domain = domains[d as usize % domains.len()];
            if let Ok(plain) = seal.open(domain, BINDING, sealed) {
                assert_eq!(plain.len() + sealvol_crypto::SEALED_OVERHEAD, sealed.len());
            }
        }
        1 => {
            if rest.len() < 40 {
                return;
            }
            let addr = ChunkAddr(rest[..32].try_into().expect("32 bytes"));
            let (start, end) = (u32_at(rest, 32), u32_at(rest, 36));
            let sealed = &rest[40..];
            let whole = seal.open_chunk(Verify::Address(&hash), BINDING, &addr, sealed);
            let part =
                seal.open_chunk_range(Verify::Address(&hash), BINDING, &addr, sealed, start..end);
            if let Ok(plain) = &whole {
                assert_eq!(hash.chunk_addr(plain), addr);
                assert_eq!(sealed.len(), sealed_chunk_len(plain.len()));
                assert_eq!(
                    part.expect("a chunk that opens opens by range"),
                    clamp(plain, start, end)
                );
            }
        }
        _ => tamper(&seal, &hash, rest),
    }
}

fn tamper(seal: &SealKey, hash: &HashKey, rest: &[u8]) {
    if rest.len() < 16 {
        return;
    }
    let len =
        (rest[0] as usize | (rest[1] as usize) << 8 | (rest[2] as usize) << 16) % (MAX_PLAIN + 1);
    let kind = rest[3];
    let pos = u32_at(rest, 4);
    let (start, end) = (u32_at(rest, 8), u32_at(rest, 12));
    let pattern = &rest[16..];
    let plain: Vec<u8> = if pattern.is_empty() {
        vec![0; len]
    } else {
        pattern.iter().copied().cycle().take(len).collect()
    };
    let tree = hash.chunk_tree(&plain);
    let Ok(mut sealed) = seal.seal_chunk(0, BINDING, &tree, &plain) else {
        assert!(plain.is_empty(), "only an empty chunk is refused");
        return;
    };
    assert_eq!(sealed.len(), sealed_chunk_len(len));
    let addr = tree.addr;
    let mut binding = BINDING.to_vec();
    let mut addr_used = addr;
    let tampered = match kind % 6 {
        0 => false,
        1 => {
            let bit = pos % (sealed.len() * 8);
            sealed[bit / 8] ^= 1 << (bit % 8);
            true
        }
        2 => {
            sealed.truncate(pos % sealed.len());
            true
        }
        3 => {
            sealed.extend(std::iter::repeat_n(kind, 1 + pos % 64));
            true
        }
        4 => {
            let at = pos % binding.len();
            binding[at] ^= 1;
            true
        }
        _ => {
            addr_used.0[pos % 32] ^= 1;
            true
        }
    };
    let whole = seal.open_chunk(Verify::Address(hash), &binding, &addr_used, &sealed);
    let part = seal.open_chunk_range(
        Verify::Address(hash),
        &binding,
        &addr_used,
        &sealed,
        start..end,
    );
    let segs = seal.open_chunk_segments(
        Verify::Address(hash),
        &binding,
        &addr_used,
        &sealed,
        start..end,
    );
    if !tampered {
        assert_eq!(whole.expect("an untampered chunk opens"), plain);
        assert_eq!(part.expect("and opens by range"), clamp(&plain, start, end));
        let s = segs.expect("and by segments");
        assert_eq!(s.chunk_len, len);
        if start < end.min(len) {
            assert_eq!(s.first, start / SEGMENT);
            let last = (end.min(len) - 1) / SEGMENT;
            let want = clamp(&plain, s.first * SEGMENT, (last + 1) * SEGMENT);
            assert_eq!(s.plain, want);
        } else {
            assert!(s.plain.is_empty());
        }
        return;
    }
    assert!(
        whole.is_err(),
        "a tampered chunk (kind {}) opened",
        kind % 6
    );
    if let Ok(p) = part {
        assert_eq!(
            p,
            clamp(&plain, start, end),
            "a tampered chunk gave other bytes"
        );
    }
    if let Ok(s) = segs {
        assert!(s.first * SEGMENT + s.plain.len() <= len);
        assert_eq!(
            s.plain,
            clamp(&plain, s.first * SEGMENT, s.first * SEGMENT + s.plain.len())
        );
    }
}

/// Sealed seeds: a metadata object and a one-segment chunk under the test keys (random nonces,
/// so regenerated seeds differ in their bytes), and seal-and-tamper inputs.
pub fn sealed_seeds() -> Vec<(String, Vec<u8>)> {
    let (seal, hash) = keys();
    let mut object = vec![0, 1];
    object.extend(
        seal.seal(Domain::Inode, 0, BINDING, b"an inode record")
            .expect("seal"),
    );
    let plain = b"a small file's only chunk".to_vec();
    let tree = hash.chunk_tree(&plain);
    let mut chunk = vec![1];
    chunk.extend(tree.addr.0);
    chunk.extend(3u32.to_le_bytes());
    chunk.extend(9u32.to_le_bytes());
    chunk.extend(seal.seal_chunk(0, BINDING, &tree, &plain).expect("seal"));
    let tamper = |name: &str, len: usize, kind: u8, pos: u32, start: u32, end: u32| {
        let mut v = vec![2, len as u8, (len >> 8) as u8, (len >> 16) as u8, kind];
        v.extend(pos.to_le_bytes());
        v.extend(start.to_le_bytes());
        v.extend(end.to_le_bytes());
        v.extend(b"pattern");
        (format!("tamper-{name}"), v)
    };
    let s = SEGMENT as u32;
    vec![
        ("object-inode".to_string(), object),
        ("chunk-one-segment".to_string(), chunk),
        tamper("none-3-segments", 2 * SEGMENT + 5, 0, 0, s - 1, s + 1),
        tamper("bit-in-segment-1", 2 * SEGMENT + 5, 1, (40 + s) * 8, 0, 10),
        tamper("truncated", SEGMENT + 1, 2, 100, 0, 100),
        tamper("extended", 1000, 3, 1, 0, 1),
        tamper("binding", 5 * SEGMENT, 4, 3, 4 * s, 5 * s),
        tamper("addr", 1, 5, 0, 0, 1),
    ]
}
