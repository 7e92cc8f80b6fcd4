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

#[test]
fn rocks_memtables_stay_near_their_budget_and_are_reported() {
    // Chunks written through the write-ahead log (small files) fill the chunk family's memtable;
    // the per-family sizes and the write buffer manager must keep all memtables near the budget
    // however much is written, and `memory` must say what they hold.
    let d = tempfile::tempdir().unwrap();
    let budget = 4 << 20;
    let e = RocksEngine::open(d.path(), true, &RocksTuning::with_memory(budget, 1 << 20)).unwrap();
    let mut most = 0;
    for i in 0u32..320 {
        let mut b = WriteBatch::new();
        b.put(
            Cf::Chunks,
            i.to_be_bytes().to_vec(),
            vec![i as u8; 128 << 10],
        );
        b.put(Cf::Log, i.to_be_bytes().to_vec(), vec![1u8; 400]);
        e.write(b, Durability::Process).unwrap();
        most = most.max(e.memory().unwrap().memtables);
    }
    assert!(most > 0);
    // The budget, plus what a memtable being flushed and arena slack add (4.2 MiB measured).
    assert!(most <= 2 * budget as u64, "memtables held {most} bytes");
    let m = e.memory().unwrap();
    assert!(m.block_cache <= 1 << 20, "{m:?}");
    e.flush_memtables().unwrap();
    let after = e.memory().unwrap().memtables;
    assert!(
        after < most,
        "{after} after the flush, at most {most} before"
    );
    assert_eq!(MemoryEngine::new().memory(), None);
}

/// Every executable of the workspace exports sealvol-sys's hardware CRC32C, so Debian's RocksDB
/// checksums with it instead of its portable loop (`.cargo/config.toml`). This test binary is
/// built like the others: if the export is lost, this fails instead of every write quietly
/// costing a fifth more CPU. (The checksums are the same either way: the data written by one
/// and read back by the other is what `rocks_reopen_keeps_data` and the mount tests exercise.)
#[test]
fn rocksdb_calls_the_exported_hardware_crc32c() {
    let (interposed, hardware) = sealvol_sys::crc32c_interposed();
    assert!(
        interposed,
        "RocksDB's crc32c::Extend does not resolve to sealvol-sys's"
    );
    assert_eq!(hardware, std::arch::is_x86_feature_detected!("sse4.2"));
}
