//! The RocksDB engine: the default, embedded store.
//!
//! One RocksDB database per volume, one column family per [`Cf`]. Chunk values go to RocksDB
//! blob files (key-value separation) when `RocksTuning::blob_files` is on, so compaction of the
//! small metadata does not rewrite bulk data.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rocksdb::{
    BlockBasedOptions, ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteOptions, DB,
};

use super::{scan_from, Cf, Durability, Engine, EngineMemory, KvPairs, StoreError, WriteBatch};

/// Settings that change performance, never the data.
#[derive(Clone, Debug)]
pub struct RocksTuning {
    /// Store chunk values in blob files.
    pub blob_files: bool,
    /// Memtable size for the chunk family, bytes.
    pub chunk_write_buffer: usize,
    /// Memtable size for each metadata family, bytes.
    pub metadata_write_buffer: usize,
    /// Memtables of all families together, bytes (`db_write_buffer_size`: RocksDB's write
    /// buffer manager flushes the largest memtable once they pass it); 0 for no limit.
    pub all_write_buffers: usize,
    /// Shared block cache, bytes. Index and filter blocks are kept in it too (level-0 ones
    /// pinned), so the memory they take stays within it however large the store grows.
    pub block_cache: usize,
    /// Write table and blob files with O_DIRECT (flushes and compactions), where the store's
    /// filesystem allows it.
    pub direct_writes: bool,
}

impl RocksTuning {
    /// Tuning for `memtables` bytes of memtables in all (the chunk family's may take half of
    /// it, each metadata family's a quarter; the write buffer manager keeps their sum near
    /// `memtables`) and a block cache of `block_cache` bytes.
    pub fn with_memory(memtables: usize, block_cache: usize) -> RocksTuning {
        RocksTuning {
            blob_files: true,
            chunk_write_buffer: (memtables / 2).max(MIN_WRITE_BUFFER),
            metadata_write_buffer: (memtables / 4).max(MIN_WRITE_BUFFER),
            all_write_buffers: memtables.max(MIN_WRITE_BUFFER),
            block_cache,
            direct_writes: true,
        }
    }
}

/// The smallest memtable worth having (RocksDB itself refuses less than 64 KiB).
const MIN_WRITE_BUFFER: usize = 1 << 20;

impl Default for RocksTuning {
    /// The shares of sealvol's default memory budget (256 MiB; see `sealvol-volume`'s budget).
    fn default() -> Self {
        RocksTuning::with_memory(32 << 20, 8 << 20)
    }
}

pub struct RocksEngine {
    db: DB,
    /// The block cache every family shares.
    cache: rocksdb::Cache,
    path: PathBuf,
    /// Set by the first failed write: RocksDB must not be asked to write or sync again (Debian's
    /// build aborts the process on a sync after a failed write), so later writes fail cleanly.
    failed: Mutex<Option<String>>,
    /// The last free-space reading: when, how many bytes were free, and how many bytes this
    /// engine has been asked to write since.
    space: Mutex<(std::time::Instant, u64, u64)>,
}

/// Bytes per RocksDB batch in `write_bulk` (see there).
const BULK_PIECE: usize = 1 << 20;

/// While this much more than needed was free at the last reading (under 100 ms ago, minus what
/// was written since), a write does not read the free space again.
const SPACE_HEADROOM: u64 = 256 << 20;

/// Free space kept on the store's filesystem: writes that would eat into it fail with ENOSPC
/// before RocksDB ever meets a full disk (which it does not survive gracefully).
const RESERVE: u64 = 64 << 20;
/// Small batches (deletions, metadata) may go on down to this, so that space can be freed.
const FLOOR: u64 = 8 << 20;

/// Whether files in the database directory `path` (created here if `create`) can be written
/// with O_DIRECT: not on every filesystem (tmpfs before Linux 6.6, some FUSE and network
/// filesystems), and RocksDB would find out only at its first flush, as a background error that
/// stops all writes.
fn create_dir_and_probe_direct_io(path: &Path, create: bool) -> bool {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if create && std::fs::create_dir_all(path).is_err() {
        return false;
    }
    let probe = path.join("direct-io-probe.tmp");
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
            .open(&probe)?;
        // O_DIRECT wants the buffer, offset and length aligned to the logical block size.
        let buf = vec![0u8; 3 * 4096];
        let at = buf.as_ptr().align_offset(4096);
        f.write_all(&buf[at..at + 4096])
    })();
    let _ = std::fs::remove_file(&probe);
    written.is_ok()
}

thread_local! {
    static PERF_OFF: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Turn RocksDB's per-thread performance counters off on this thread (once). They are on by
/// default (`kEnableCount`): every memtable key comparison then bumps a counter in a
/// thread-local of the shared library, two `__tls_get_addr` calls that were a sixth of the
/// instructions of a fold's writes. sealvol never reads them.
fn perf_counters_off() {
    PERF_OFF.with(|off| {
        if !off.get() {
            rocksdb::perf::set_perf_stats(rocksdb::perf::PerfStatsLevel::Disable);
            off.set(true);
        }
    });
}

fn map_err(path: &Path, e: rocksdb::Error) -> StoreError {
    let s = e.into_string();
    if s.contains("lock") && (s.contains("LOCK") || s.contains("Resource temporarily unavailable"))
    {
        StoreError::Locked {
            path: path.display().to_string(),
        }
    } else if s.contains("No space left") {
        StoreError::NoSpace(s)
    } else if s.contains("Corruption") {
        StoreError::Corruption(s)
    } else {
        StoreError::Io(s)
    }
}

/// Say once per process which CRC32C RocksDB computes its checksums with (see
/// `sealvol_sys::crc32c_interposed`): the hardware one this executable exports, or the library's
/// portable one (same values, several times the CPU).
fn report_crc32c() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| match sealvol_sys::crc32c_interposed() {
        (true, true) => tracing::debug!("RocksDB checksums use the hardware CRC32C"),
        (true, false) => tracing::info!("RocksDB checksums use a portable CRC32C: this CPU has no SSE4.2"),
        (false, _) => tracing::info!(
            "RocksDB checksums use the library's portable CRC32C: this executable does not export the faster one (built without the workspace's .cargo/config.toml?)"
        ),
    });
}

impl RocksEngine {
    /// Open (or with `create`, create) the database in `path`.
    pub fn open(path: &Path, create: bool, tuning: &RocksTuning) -> Result<Self, StoreError> {
        report_crc32c();
        if !create && !path.join("CURRENT").exists() {
            return Err(StoreError::Missing {
                path: path.display().to_string(),
                reason: "no RocksDB database there".into(),
            });
        }
        let mut db_opts = Options::default();
        db_opts.create_if_missing(create);
        db_opts.create_missing_column_families(create);
        db_opts.increase_parallelism(2);
        db_opts.set_max_background_jobs(2);
        db_opts.set_keep_log_file_num(3);
        db_opts.set_bytes_per_sync(1 << 20);
        // Table and blob files written by flushes and compactions bypass the page cache: the
        // bulk of a large write is copied once into RocksDB's aligned buffer instead of into
        // page-cache pages the kernel then allocates, tracks and writes back (measured in
        // docs/benchmarks.md). Sealed bytes gain nothing from staying cached: reads keep
        // verified plaintext in sealvol's own cache.
        if tuning.direct_writes && create_dir_and_probe_direct_io(path, create) {
            db_opts.set_use_direct_io_for_flush_and_compaction(true);
            db_opts.set_compaction_readahead_size(2 << 20);
        } else if tuning.direct_writes {
            tracing::info!(
                path = %path.display(),
                "the store's filesystem refuses O_DIRECT: table and blob files go through the page cache"
            );
        }
        // A torn last record (power loss mid-write) is dropped; damage anywhere else in the
        // write-ahead log refuses to open, instead of silently rolling back to an older state.
        db_opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::TolerateCorruptedTailRecords);
        if tuning.all_write_buffers > 0 {
            db_opts.set_db_write_buffer_size(tuning.all_write_buffers);
        }
        let cache = rocksdb::Cache::new_lru_cache(tuning.block_cache);
        let cfs = Cf::ALL.iter().map(|cf| {
            let mut o = Options::default();
            let mut bo = BlockBasedOptions::default();
            bo.set_block_cache(&cache);
            // Index and filter blocks in the cache, within its budget, instead of held by each
            // open table file beside it (memory that grew with the store).
            bo.set_cache_index_and_filter_blocks(true);
            bo.set_pin_l0_filter_and_index_blocks_in_cache(true);
            if *cf != Cf::Chunks && *cf != Cf::Log {
                bo.set_bloom_filter(10.0, false);
            }
            o.set_block_based_table_factory(&bo);
            if *cf != Cf::Chunks {
                // A Bloom filter over each memtable's keys (a fiftieth of its size): a lookup of
                // a key the memtable lacks (a record not yet made, the common case when
                // changes arrive) skips the skiplist search, ~25 key comparisons.
                o.set_memtable_prefix_bloom_ratio(0.02);
                o.set_memtable_whole_key_filtering(true);
            }
            o.set_max_write_buffer_number(2);
            o.set_write_buffer_size(tuning.metadata_write_buffer);
            if *cf == Cf::Chunks {
                o.set_write_buffer_size(tuning.chunk_write_buffer);
                if tuning.blob_files {
                    o.set_enable_blob_files(true);
                    o.set_min_blob_size(4096);
                    // No garbage collection in every compaction: with many small flushes it
                    // relocated a quarter of freshly written blobs again and again (a third of
                    // the CPU of a sequential write). Files holding only garbage are dropped
                    // anyway; `compact` collects the rest, run when garbage piles up.
                    o.set_enable_blob_gc(false);
                }
            }
            ColumnFamilyDescriptor::new(cf.name(), o)
        });
        let db = DB::open_cf_descriptors(&db_opts, path, cfs).map_err(|e| map_err(path, e))?;
        Ok(RocksEngine {
            db,
            cache,
            path: path.to_path_buf(),
            failed: Mutex::new(None),
            space: Mutex::new((std::time::Instant::now(), 0, 0)),
        })
    }

    fn check_failed(&self) -> Result<(), StoreError> {
        match &*self.failed.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(StoreError::Io(format!(
                "an earlier write to the store failed ({e}); nothing more is written until it is reopened: unmount, fix the cause, mount again"
            ))),
            None => Ok(()),
        }
    }

    fn record_failure(&self, e: &StoreError) {
        *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
    }

    fn check_space(&self, batch_bytes: u64) -> Result<(), StoreError> {
        let need = if batch_bytes < 64 * 1024 {
            FLOOR
        } else {
            RESERVE + 2 * batch_bytes
        };
        // A statfs per small metadata write was a tenth of a small-file workload's syscalls:
        // reuse a recent reading while it leaves a wide margin. Near full, always read.
        let mut space = self.space.lock().unwrap_or_else(|p| p.into_inner());
        let (at, free_then, written) = *space;
        let estimate = free_then.saturating_sub(written + 2 * batch_bytes);
        if at.elapsed() < std::time::Duration::from_millis(100) && estimate > need + SPACE_HEADROOM
        {
            space.2 += batch_bytes;
            return Ok(());
        }
        let Ok(st) = rustix::fs::statvfs(&self.path) else {
            return Ok(());
        };
        let free = st.f_bavail.saturating_mul(st.f_frsize);
        *space = (std::time::Instant::now(), free, batch_bytes);
        if free < need {
            return Err(StoreError::NoSpace(format!(
                "{} MiB free on the disk holding {}; sealvol keeps {} MiB in reserve so the store stays consistent: free some space",
                free >> 20,
                self.path.display(),
                RESERVE >> 20
            )));
        }
        Ok(())
    }

    /// The handle of a column family (every one is opened in [`RocksEngine::open`], so a
    /// missing one means a database this code did not open: an error, never a panic).
    fn cf(&self, cf: Cf) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db.cf_handle(cf.name()).ok_or_else(|| {
            StoreError::Corruption(format!("column family {} is missing", cf.name()))
        })
    }

    fn err(&self, e: rocksdb::Error) -> StoreError {
        map_err(&self.path, e)
    }
}

impl Engine for RocksEngine {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        perf_counters_off();
        if cf == Cf::Chunks {
            let mut out = None;
            self.get_with(cf, key, &mut |v| out = v.map(<[u8]>::to_vec))?;
            return Ok(out);
        }
        self.db.get_cf(self.cf(cf)?, key).map_err(|e| self.err(e))
    }

    fn get_with(
        &self,
        cf: Cf,
        key: &[u8],
        f: &mut dyn FnMut(Option<&[u8]>),
    ) -> Result<(), StoreError> {
        perf_counters_off();
        let mut ro = rocksdb::ReadOptions::default();
        if cf == Cf::Chunks {
            // Chunk values are sealed: every read above this layer authenticates them
            // (XChaCha20-Poly1305 tags, the address in the associated data), so a changed byte
            // fails there. RocksDB's checksums (software CRC32C in Debian's portable build)
            // would only check the same bytes a second time, at a third of read throughput.
            // Off here, RocksDB 7.8 skips both the table block checksum and, for values in blob
            // files, the blob record's CRC (`BlobFileReader::GetBlob` reads and verifies the
            // record only with `verify_checksums`). Writing a blob still computes that CRC
            // (`BlobLogRecord::EncodeHeaderTo`, no option turns it off in 7.8). Metadata column
            // families keep verifying theirs.
            ro.set_verify_checksums(false);
        }
        let v = self
            .db
            .get_pinned_cf_opt(self.cf(cf)?, key, &ro)
            .map_err(|e| self.err(e))?;
        f(v.as_deref());
        Ok(())
    }

    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), StoreError> {
        perf_counters_off();
        self.check_failed()?;
        self.check_space(batch.bytes())?;
        let mut wb = rocksdb::WriteBatch::default();
        let mut ops = batch.ops;
        // In key order per family: each memtable's skiplist keeps the place of its last insert
        // and a key that goes right after it is inserted in a couple of comparisons, where any
        // other key is searched for from the top (~50 comparisons). A fold's batch alternated
        // between two ranges of the log (entries, fold records), so every log key was searched
        // for; sorted, they append (6% fewer instructions applying a history). The sort is
        // stable: two writes of one key keep their order, and the later still wins.
        ops.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        for (cf, k, v) in ops {
            match v {
                Some(v) => wb.put_cf(self.cf(cf)?, k, v),
                None => wb.delete_cf(self.cf(cf)?, k),
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(durability == Durability::Disk);
        self.db.write_opt(wb, &wo).map_err(|e| {
            let e = self.err(e);
            self.record_failure(&e);
            e
        })
    }

    fn write_bulk(&self, batch: WriteBatch) -> Result<(), StoreError> {
        perf_counters_off();
        // Into the memtables without the write-ahead log, then flushed (table and blob files
        // written and synced, the manifest updated) before returning: the bytes go to disk
        // once, instead of twice (log, then table) with a software CRC32C over each.
        //
        // Handed to RocksDB in batches of about BULK_PIECE bytes: its batch is one string that
        // grows by doubling, and one 32 MiB batch was copied again at every doubling into
        // freshly mapped memory, whose page faults cost a fifth of a sequential write's CPU.
        // Small batches reuse the same heap memory. (The call is atomic only per key anyway.)
        self.check_failed()?;
        self.check_space(batch.bytes())?;
        let mut wo = WriteOptions::default();
        wo.disable_wal(true);
        let mut cfs: Vec<Cf> = Vec::new();
        let mut wb = rocksdb::WriteBatch::default();
        let mut written = Ok(());
        for (cf, k, v) in batch.ops {
            if !cfs.contains(&cf) {
                cfs.push(cf);
            }
            match v {
                Some(v) => wb.put_cf(self.cf(cf)?, k, v),
                None => wb.delete_cf(self.cf(cf)?, k),
            }
            if wb.size_in_bytes() >= BULK_PIECE {
                written = self.db.write_opt(std::mem::take(&mut wb), &wo);
                if written.is_err() {
                    break;
                }
            }
        }
        let mut fo = rocksdb::FlushOptions::default();
        fo.set_wait(true);
        let handles = cfs
            .iter()
            .map(|cf| self.cf(*cf))
            .collect::<Result<Vec<_>, _>>()?;
        let r = written
            .and_then(|()| match wb.is_empty() {
                true => Ok(()),
                false => self.db.write_opt(wb, &wo),
            })
            .and_then(|()| {
                handles
                    .iter()
                    .try_for_each(|h| self.db.flush_cf_opt(*h, &fo))
            });
        r.map_err(|e| {
            let e = self.err(e);
            self.record_failure(&e);
            e
        })
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.check_failed()?;
        self.db.flush_wal(true).map_err(|e| {
            let e = self.err(e);
            self.record_failure(&e);
            e
        })
    }

    fn scan(
        &self,
        cf: Cf,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<KvPairs, StoreError> {
        perf_counters_off();
        let from = scan_from(prefix, start);
        let it = self
            .db
            .iterator_cf(self.cf(cf)?, IteratorMode::From(from, Direction::Forward));
        let mut out = Vec::new();
        for item in it {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if !k.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }

    fn flush_memtables(&self) -> Result<(), StoreError> {
        self.check_failed()?;
        if self.check_space(2 * RESERVE).is_err() {
            // Everything is in the write-ahead log already; it is replayed at the next open.
            tracing::warn!(path = %self.path.display(), "low disk space: leaving data in the write-ahead log instead of flushing it to table files");
            return Ok(());
        }
        for cf in Cf::ALL {
            self.db.flush_cf(self.cf(cf)?).map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    fn compact(&self) -> Result<(), StoreError> {
        self.check_failed()?;
        // Every level, the bottommost included, with blob garbage collection over every blob
        // file for this one pass: live blobs move to new files, the old files go.
        let chunks = self.cf(Cf::Chunks)?;
        let gc = |on: &str| {
            self.db.set_options_cf(
                chunks,
                &[
                    ("enable_blob_garbage_collection", on),
                    ("blob_garbage_collection_age_cutoff", "1.0"),
                ],
            )
        };
        gc("true").map_err(|e| self.err(e))?;
        let mut co = rocksdb::CompactOptions::default();
        co.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        for cf in Cf::ALL {
            self.db
                .compact_range_cf_opt(self.cf(cf)?, None::<&[u8]>, None::<&[u8]>, &co);
        }
        gc("false").map_err(|e| self.err(e))?;
        Ok(())
    }

    fn memory(&self) -> Option<EngineMemory> {
        // Every column family's memtables (the `cur-size-all-mem-tables` property covers only
        // the default family, which sealvol does not use).
        let m =
            rocksdb::perf::get_memory_usage_stats(Some(&[&self.db]), Some(&[&self.cache])).ok()?;
        Some(EngineMemory {
            memtables: m.mem_table_total,
            block_cache: m.cache_total,
            table_readers: m.mem_table_readers_total,
        })
    }

    fn disk_bytes(&self) -> Result<u64, StoreError> {
        fn walk(p: &Path) -> std::io::Result<u64> {
            let mut n = 0;
            for e in std::fs::read_dir(p)? {
                let e = e?;
                let m = e.metadata()?;
                n += if m.is_dir() {
                    walk(&e.path())?
                } else {
                    m.len()
                };
            }
            Ok(n)
        }
        walk(&self.path).map_err(|e| StoreError::Io(e.to_string()))
    }
}
