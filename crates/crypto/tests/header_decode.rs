//! Decoding arbitrary bytes as a key header (`keys.json`, which whoever holds the store can
//! write) never panics and never allocates more than a fixed bound, whatever lengths and counts
//! the bytes claim.
//!
//! Every allocation of the process is counted (an instrumented global allocator), so the tests
//! of this file take one lock and run one at a time.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::alloc::System;
use std::sync::{Mutex, OnceLock};

use proptest::prelude::*;
use sealvol_crypto::slots::{MAX_HEADER_BYTES, MAX_SLOTS};
use sealvol_crypto::{CryptoError, KdfParams, KeyHeader, Secret};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use zeroize::Zeroizing;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The most bytes one decode may allocate in all (so also at its peak). The input is at most
/// 64 KiB: its strings, at most 32 slots and the error messages fit in a few times that (the
/// worst case below, 60 KB of escaped characters, allocates about 62 KB).
const DECODE_ALLOC_BOUND: usize = 256 * 1024;
/// What a decode may allocate for an input it refuses by its size alone: the error message.
const REFUSED_ALLOC_BOUND: usize = 1024;

static SERIAL: Mutex<()> = Mutex::new(());

/// Decode `bytes`, returning the result and the bytes allocated meanwhile.
fn decode_counted(bytes: &[u8]) -> (Result<KeyHeader, CryptoError>, usize) {
    let region = Region::new(GLOBAL);
    let result = KeyHeader::from_json(bytes);
    let change = region.change();
    let allocated = change.bytes_allocated + change.bytes_reallocated.max(0) as usize;
    (result, allocated)
}

fn check_bounded(bytes: &[u8]) -> Result<KeyHeader, CryptoError> {
    let (result, allocated) = decode_counted(bytes);
    let bound = if bytes.len() > MAX_HEADER_BYTES {
        REFUSED_ALLOC_BOUND
    } else {
        DECODE_ALLOC_BOUND
    };
    assert!(
        allocated <= bound,
        "decoding {} bytes allocated {allocated} bytes (bound {bound}); result: {:?}",
        bytes.len(),
        result.as_ref().map(|_| "ok").map_err(|e| e.to_string())
    );
    result
}

/// A valid header with a passphrase slot (minimum Argon2id cost) and a key-file slot.
fn valid_header() -> &'static serde_json::Value {
    static HEADER: OnceLock<serde_json::Value> = OnceLock::new();
    HEADER.get_or_init(|| {
        let pass = Secret::Passphrase(Zeroizing::new(b"p".to_vec()));
        let (mut h, mk) = KeyHeader::create(&pass, KdfParams::MIN, 1).unwrap();
        h.add_slot(&mk, &Secret::key_file(&[5; 32]), KdfParams::MIN, 2)
            .unwrap();
        serde_json::from_slice(&h.to_json()).unwrap()
    })
}

fn json(v: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

#[test]
fn the_valid_header_decodes_within_the_bound() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let h = check_bounded(&json(valid_header())).unwrap();
    assert_eq!(h.slots.len(), 2);
}

#[test]
fn hand_crafted_huge_lengths_and_counts_are_refused_within_the_bound() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let valid = valid_header();
    let slot = valid["slots"][0].clone();
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();

    let mut v = valid.clone();
    v["slots"][0]["salt"] = "00".repeat(1 << 20).into();
    cases.push(("1 MiB salt (file over 64 KiB)", json(&v)));
    let mut v = valid.clone();
    v["slots"][0]["salt"] = "00".repeat(30_000).into();
    cases.push(("30,000-byte salt (file under 64 KiB)", json(&v)));
    let mut v = valid.clone();
    v["magic"] = "\u{1}".repeat(10_000).into(); // escaped: 60,000 bytes of JSON, an owned string
    cases.push(("60 KB of escapes in the magic", json(&v)));
    let mut v = valid.clone();
    v["slots"] = (0..(MAX_SLOTS as u32 + 100))
        .map(|id| {
            let mut s = slot.clone();
            s["id"] = id.into();
            s
        })
        .collect::<Vec<_>>()
        .into();
    cases.push(("132 slots", json(&v)));
    let mut v = valid.clone();
    v["slots"] = vec![serde_json::json!({}); 20_000].into();
    cases.push(("20,000 empty slots", json(&v)));
    let mut v = valid.clone();
    v["slots"][0]["kind"]["kdf"]["m_cost_kib"] = u32::MAX.into();
    cases.push(("4 TiB Argon2id memory", json(&v)));
    let mut v = valid.clone();
    v["slots"][0]["kind"]["kdf"]["t_cost"] = u32::MAX.into();
    cases.push(("2^32 - 1 Argon2id passes", json(&v)));
    cases.push((
        "60,000-deep nesting",
        [
            b"{\"slots\":".as_slice(),
            &[b'['; 60_000],
            &[b']'; 60_000],
            b"}",
        ]
        .concat(),
    ));
    cases.push((
        "a 60,000-digit number",
        format!("{{\"epoch\":{}}}", "9".repeat(60_000)).into_bytes(),
    ));
    cases.push(("a 16 MiB file of zeros", vec![0; 16 << 20]));
    cases.push((
        "an unterminated string",
        [b"{\"magic\":\"".as_slice(), &[b'a'; 60_000]].concat(),
    ));

    for (what, bytes) in cases {
        match check_bounded(&bytes) {
            Ok(_) => panic!("{what}: accepted"),
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("tampered") || msg.contains("malformed"),
                    "{what}: {msg}"
                );
            }
        }
    }
}

/// A valid header with some of its bytes replaced, inserted or cut.
fn mutated_header() -> impl Strategy<Value = Vec<u8>> {
    let edits = prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8);
    edits.prop_map(|edits| {
        let mut bytes = json(valid_header());
        for (at, byte, op) in edits {
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => bytes.truncate(i),
            }
            if bytes.is_empty() {
                break;
            }
        }
        bytes
    })
}

/// A valid header with arbitrary numbers in its numeric fields.
fn header_with_numbers() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(|(m, t, p, id, epoch)| {
            let mut v = valid_header().clone();
            v["slots"][0]["kind"]["kdf"] =
                serde_json::json!({"m_cost_kib": m, "t_cost": t, "p_cost": p});
            v["slots"][1]["id"] = id.into();
            v["epoch"] = epoch.into();
            json(&v)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_nor_allocate_past_the_bound(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..2048),
            mutated_header(),
            header_with_numbers(),
        ]
    ) {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(h) = check_bounded(&bytes) {
            // Whatever decodes is within every bound.
            prop_assert!(!h.slots.is_empty() && h.slots.len() <= MAX_SLOTS);
            prop_assert_eq!(h.volume_id.len(), 16);
            for s in &h.slots {
                prop_assert_eq!(s.salt.len(), 32);
                if let sealvol_crypto::SlotKind::Passphrase { kdf } = &s.kind {
                    prop_assert!(kdf.check(sealvol_crypto::slots::KdfOrigin::Slot(s.id)).is_ok());
                }
            }
        }
    }
}
