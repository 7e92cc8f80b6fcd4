#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The RocksDB engine's pack files (values put aside, outside RocksDB): what is named is read
//! back after reopening, what is never named is reclaimed, what is held or leased is not.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use sealvol_store::{Cf, Durability, Engine, RocksEngine, RocksTuning, Snapshot, WriteBatch};

const MIB: usize = 1 << 20;

fn open(p: &Path, create: bool) -> RocksEngine {
    RocksEngine::open(p, create, &RocksTuning::default()).unwrap()
}

fn value(seed: u8) -> Vec<u8> {
    (0..MIB)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

/// Bytes the pack files occupy on disk (holes excluded), and how many there are.
fn packs(db: &Path) -> (u64, usize) {
    let Ok(list) = std::fs::read_dir(db.join("packs")) else {
        return (0, 0);
    };
    let mut bytes = 0;
    let mut n = 0;
    for e in list {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().ends_with(".pack") {
            bytes += e.metadata().unwrap().blocks() * 512;
            n += 1;
        }
    }
    (bytes, n)
}

fn name(e: &RocksEngine, keys_values: &[(&[u8], &sealvol_store::Aside)]) {
    let mut b = WriteBatch::new();
    for (k, a) in keys_values {
        b.put_chunk_aside(k.to_vec(), a);
    }
    e.write(b, Durability::Process).unwrap();
}

fn delete(e: &RocksEngine, keys: &[&[u8]]) {
    let mut b = WriteBatch::new();
    for k in keys {
        b.delete(Cf::Chunks, k.to_vec());
    }
    e.write(b, Durability::Process).unwrap();
}

#[test]
fn named_values_survive_reopening_and_unnamed_ones_are_reclaimed() {
    let d = tempfile::tempdir().unwrap();
    {
        let e = open(d.path(), true);
        let a = e.put_aside(vec![value(1), value(2), value(3)]).unwrap();
        name(&e, &[(b"one", &a[0]), (b"three", &a[2])]);
        // Put aside, never named: the writer "crashes" before its batch.
        let _lost = e.put_aside(vec![value(4), value(5)]).unwrap();
    }
    assert!(packs(d.path()).0 >= 5 * MIB as u64);
    let e = open(d.path(), false);
    assert_eq!(e.get(Cf::Chunks, b"one").unwrap(), Some(value(1)));
    assert_eq!(e.get(Cf::Chunks, b"three").unwrap(), Some(value(3)));
    assert_eq!(e.scan(Cf::Chunks, b"", b"", 10).unwrap().len(), 2);
    e.compact().unwrap();
    let (bytes, _) = packs(d.path());
    assert!(
        bytes <= 2 * MIB as u64 + 16 * 4096,
        "only the two named values keep their space: {bytes} bytes"
    );
    assert_eq!(e.get(Cf::Chunks, b"one").unwrap(), Some(value(1)));
    assert_eq!(e.get(Cf::Chunks, b"three").unwrap(), Some(value(3)));
    // Deleted, then reclaimed: a pack with nothing named goes entirely (it is not the one
    // this open appends to).
    delete(&e, &[b"one", b"three"]);
    e.compact().unwrap();
    assert_eq!(packs(d.path()), (0, 0));
}

#[test]
fn a_value_put_aside_is_held_until_its_batch_names_it() {
    let d = tempfile::tempdir().unwrap();
    let e = open(d.path(), true);
    let a = e.put_aside(vec![value(7), value(8)]).unwrap();
    // Reclaiming now must not take the values a writer is about to name.
    e.compact().unwrap();
    name(&e, &[(b"seven", &a[0]), (b"eight", &a[1])]);
    drop(a);
    assert_eq!(e.get(Cf::Chunks, b"seven").unwrap(), Some(value(7)));
    assert_eq!(e.get(Cf::Chunks, b"eight").unwrap(), Some(value(8)));
    // Once named and then deleted, the space goes, even in the pack still being appended to.
    delete(&e, &[b"seven"]);
    e.compact().unwrap();
    let (bytes, n) = packs(d.path());
    assert_eq!(n, 1);
    assert!(bytes <= MIB as u64 + 8192, "{bytes}");
    assert_eq!(e.get(Cf::Chunks, b"eight").unwrap(), Some(value(8)));
}

#[test]
fn a_snapshot_copy_keeps_reading_what_the_writer_deletes_and_reclaims() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let e = open(&db, true);
    let a = e.put_aside(vec![value(1), value(2)]).unwrap();
    name(&e, &[(b"one", &a[0]), (b"two", &a[1])]);
    drop(a);
    e.sync().unwrap();
    let snap = Snapshot::take(&db, dir.path()).unwrap();
    delete(&e, &[b"one", b"two"]);
    // Packs shared with the copy, and a lease on them: nothing is punched.
    e.compact().unwrap();
    assert!(packs(&db).0 >= 2 * MIB as u64);
    {
        let copy = open(snap.path(), false);
        assert_eq!(copy.get(Cf::Chunks, b"one").unwrap(), Some(value(1)));
        assert_eq!(copy.get(Cf::Chunks, b"two").unwrap(), Some(value(2)));
        // The copy's own reclaiming does not touch the shared packs either.
        copy.compact().unwrap();
        assert_eq!(copy.get(Cf::Chunks, b"two").unwrap(), Some(value(2)));
    }
    drop(snap);
    assert_eq!(e.get(Cf::Chunks, b"one").unwrap(), None);
    e.compact().unwrap();
    assert!(packs(&db).0 <= 8192, "reclaimed once the copy is gone");
    assert!(
        std::fs::read_dir(db.join("packs")).unwrap().all(|f| !f
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("lease-")),
        "the lease went with the copy"
    );
}

#[test]
fn a_lease_left_by_a_dead_process_does_not_block_reclaiming_forever() {
    let d = tempfile::tempdir().unwrap();
    let e = open(d.path(), true);
    let a = e.put_aside(vec![value(1)]).unwrap();
    name(&e, &[(b"one", &a[0])]);
    drop(a);
    delete(&e, &[b"one"]);
    // A pid that cannot be alive (above the kernel's pid_max limit of 2^22).
    let stale = d.path().join("packs").join("lease-99999999-0");
    std::fs::write(&stale, b"").unwrap();
    e.compact().unwrap();
    assert!(!stale.exists());
    assert!(packs(d.path()).0 <= 8192);
}

#[test]
fn a_missing_or_short_pack_reads_as_a_damaged_value_not_an_error() {
    let d = tempfile::tempdir().unwrap();
    {
        let e = open(d.path(), true);
        let a = e.put_aside(vec![value(1), value(2)]).unwrap();
        name(&e, &[(b"one", &a[0]), (b"two", &a[1])]);
    }
    let pack = std::fs::read_dir(d.path().join("packs"))
        .unwrap()
        .map(|f| f.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "pack"))
        .unwrap();
    // Cut in the middle of the second value.
    let f = std::fs::OpenOptions::new().write(true).open(&pack).unwrap();
    f.set_len((MIB + MIB / 2) as u64).unwrap();
    let e = open(d.path(), false);
    assert_eq!(e.get(Cf::Chunks, b"one").unwrap(), Some(value(1)));
    assert_eq!(
        e.get(Cf::Chunks, b"two").unwrap(),
        Some(value(2)[..MIB / 2].to_vec()),
        "what is there, for the reader's authentication to refuse"
    );
    drop(e);
    std::fs::remove_file(&pack).unwrap();
    let e = open(d.path(), false);
    assert_eq!(e.get(Cf::Chunks, b"one").unwrap(), Some(Vec::new()));
}

#[test]
fn a_copy_left_by_a_killed_export_is_removed_by_the_next_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let e = open(&db, true);
    let a = e.put_aside(vec![value(1)]).unwrap();
    name(&e, &[(b"one", &a[0])]);
    drop(a);
    // What an export killed with SIGKILL leaves: its copy, packs linked, under a dead pid.
    let left = dir.path().join(".snapshot-99999999-0");
    std::fs::create_dir_all(left.join("packs")).unwrap();
    for f in std::fs::read_dir(db.join("packs")).unwrap() {
        let f = f.unwrap();
        std::fs::hard_link(f.path(), left.join("packs").join(f.file_name())).unwrap();
    }
    delete(&e, &[b"one"]);
    e.compact().unwrap();
    assert!(packs(&db).0 >= MIB as u64, "shared with the copy: kept");
    drop(Snapshot::take(&db, dir.path()).unwrap());
    assert!(!left.exists(), "the stale copy is gone");
    e.compact().unwrap();
    assert!(packs(&db).0 <= 8192, "and the space comes back");
}
