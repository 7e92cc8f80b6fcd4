//! Records rolled back to older copies (an attacker with the store's files, or a restored old
//! copy of one file) must not make sealvol destroy live data.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;
use common::*;

use std::sync::Arc;

use sealvol_store::{Cf, Engine, WriteBatch};
use sealvol_volume::{StepClock, Volume, ROOT_INO};

#[test]
fn a_rolled_back_counters_record_never_hands_out_a_live_inode_number() {
    let (v, h, mk, e) = mem_volume(4096);
    let old_counters = e.get(Cf::Meta, b"counters").unwrap().unwrap();
    let a = write_file(&v, ROOT_INO, "a", b"first file");
    let b = write_file(&v, ROOT_INO, "b", b"second file");
    v.close().unwrap();
    drop(v);

    // Roll the counters back to before `a` and `b` were created.
    let mut batch = WriteBatch::default();
    batch.put(Cf::Meta, b"counters".to_vec(), old_counters);
    e.write(batch, sealvol_store::Durability::Disk).unwrap();

    let v = Volume::open_in(
        e.clone(),
        &h,
        &mk,
        Arc::new(StepClock::new(1_800_000_000_000)),
    )
    .unwrap();
    let c = write_file(&v, ROOT_INO, "c", b"third file");
    let d = write_file(&v, ROOT_INO, "d", b"fourth file");
    assert!(c != a && c != b && d != a && d != b, "{a} {b} {c} {d}");
    for (name, ino, data) in [
        ("a", a, &b"first file"[..]),
        ("b", b, b"second file"),
        ("c", c, b"third file"),
        ("d", d, b"fourth file"),
    ] {
        assert_eq!(v.lookup(ROOT_INO, name.as_bytes()).unwrap().ino, ino);
        assert_eq!(read_all(&v, ino), data, "{name}");
    }
}
