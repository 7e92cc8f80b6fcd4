//! Property tests: sealing round-trips, and any single flipped bit or any swap is detected.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use proptest::prelude::*;
use sealvol_crypto::{Domain, SealKey};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn round_trip(data in proptest::collection::vec(any::<u8>(), 0..4096),
                  binding in proptest::collection::vec(any::<u8>(), 0..64)) {
        let k = SealKey::new(&[9; 32]);
        let s = k.seal(Domain::Chunk, 0, &binding, &data).unwrap();
        prop_assert_eq!(k.open(Domain::Chunk, &binding, &s).unwrap(), data);
    }

    #[test]
    fn any_flipped_bit_fails(data in proptest::collection::vec(any::<u8>(), 0..512),
                             bit in any::<proptest::sample::Index>()) {
        let k = SealKey::new(&[9; 32]);
        let mut s = k.seal(Domain::Extent, 3, b"pos", &data).unwrap();
        let i = bit.index(s.len() * 8);
        s[i / 8] ^= 1 << (i % 8);
        prop_assert!(k.open(Domain::Extent, b"pos", &s).is_err());
    }

    #[test]
    fn swapped_positions_fail(a in proptest::collection::vec(any::<u8>(), 1..256),
                              b in proptest::collection::vec(any::<u8>(), 1..256)) {
        // Two chunks sealed for positions 0 and 1 cannot be exchanged.
        let k = SealKey::new(&[9; 32]);
        let s0 = k.seal(Domain::Extent, 0, b"ino=1 idx=0", &a).unwrap();
        let s1 = k.seal(Domain::Extent, 0, b"ino=1 idx=1", &b).unwrap();
        prop_assert!(k.open(Domain::Extent, b"ino=1 idx=1", &s0).is_err());
        prop_assert!(k.open(Domain::Extent, b"ino=1 idx=0", &s1).is_err());
    }
}
