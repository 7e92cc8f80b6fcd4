#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]
#[path = "support/conformance_suite.rs"]
mod conformance;

use sealvol_store::{
    Cf, Durability, Engine, MemoryEngine, RocksEngine, RocksTuning, StoreError, WriteBatch,
};

#[test]
fn memory_engine_conforms() {
    conformance::run_all(&MemoryEngine::new());
}

#[test]
fn rocks_engine_conforms() {
    let d = tempfile::tempdir().unwrap();
    let e = RocksEngine::open(d.path(), true, &RocksTuning::default()).unwrap();
    conformance::run_all(&e);
}

#[test]
fn rocks_engine_without_blob_files_conforms() {
    let d = tempfile::tempdir().unwrap();
    let t = RocksTuning {
        blob_files: false,
        ..RocksTuning::default()
    };
    conformance::run_all(&RocksEngine::open(d.path(), true, &t).unwrap());
}

#[test]
fn rocks_engine_with_buffered_table_writes_conforms() {
    // The default writes table and blob files with O_DIRECT where the filesystem allows it;
    // this is the path for filesystems that do not.
    let d = tempfile::tempdir().unwrap();
    let t = RocksTuning {
        direct_writes: false,
        ..RocksTuning::default()
    };
    conformance::run_all(&RocksEngine::open(d.path(), true, &t).unwrap());
}

#[test]
fn rocks_reopen_keeps_data() {
    let d = tempfile::tempdir().unwrap();
    {
        let e = RocksEngine::open(d.path(), true, &RocksTuning::default()).unwrap();
        let mut b = WriteBatch::new();
        b.put(Cf::Chunks, b"k".to_vec(), vec![7u8; 10000]);
        e.write(b, Durability::Disk).unwrap();
    }
    let e = RocksEngine::open(d.path(), false, &RocksTuning::default()).unwrap();
    assert_eq!(e.get(Cf::Chunks, b"k").unwrap(), Some(vec![7u8; 10000]));
}

#[test]
fn rocks_second_open_is_refused_as_locked() {
    let d = tempfile::tempdir().unwrap();
    let _e = RocksEngine::open(d.path(), true, &RocksTuning::default()).unwrap();
    let err = RocksEngine::open(d.path(), false, &RocksTuning::default())
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
}

#[test]
fn rocks_open_missing_is_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let err = RocksEngine::open(&d.path().join("nothing"), false, &RocksTuning::default())
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::Missing { .. }), "{err}");
}
