//! The RocksDB engine: the default, embedded store.
//!
//! One RocksDB database per volume, one column family per [`Cf`]. Chunk values go to RocksDB
//! blob files (key-value separation) when `RocksTuning::blob_files` is on, so compaction of the
//! small metadata does not rewrite bulk data. The chunks of bulk writes go to pack files
//! beside the database instead, with a pointer in RocksDB (see [`super::packs`]): every chunk
//! value as RocksDB holds it starts with a tag byte saying which.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rocksdb::{
    BlockBasedOptions, ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteOptions, DB,
};

use super::packs::{Packs, Pointer, TAG_INLINE, TAG_PACKED};
use super::{
    scan_from, Aside, Cf, Durability, Engine, EngineMemory, KvPairs, StoreError, Value, WriteBatch,
};

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
    /// The pack files of bulk writes.
    packs: Packs,
}

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
            packs: Packs::open(path)?,
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

    /// Write a batch to RocksDB; a failure stops every later write (see `failed`).
    fn commit(&self, wb: rocksdb::WriteBatch, sync: bool) -> Result<(), StoreError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.db.write_opt(wb, &wo).map_err(|e| {
            let e = self.err(e);
            self.record_failure(&e);
            e
        })
    }

    /// A chunk value as stored (tagged): the value itself, or read from its pack. A value with
    /// an unknown tag is handed on whole, so that its authentication fails above and names the
    /// chunk as damaged (chunk values are read without RocksDB's checksums).
    fn chunk_value<'a>(&self, stored: &'a [u8]) -> Result<ChunkValue<'a>, StoreError> {
        match stored.first() {
            Some(&TAG_INLINE) => Ok(ChunkValue::Inline(&stored[1..])),
            Some(&TAG_PACKED) => match Pointer::decode(stored) {
                Some(p) => Ok(ChunkValue::Packed(self.packs.read(p)?)),
                None => Ok(ChunkValue::Inline(stored)),
            },
            _ => Ok(ChunkValue::Inline(stored)),
        }
    }

    /// Give back the space of pack values no pointer uses any more (see the packs module).
    fn collect_packs(&self) -> Result<(), StoreError> {
        let chunks = self.cf(Cf::Chunks)?;
        let scan = || {
            // With RocksDB's checksums on: a pointer is not sealed, and one damaged unnoticed
            // here would have its chunk's bytes punched out for good.
            let ro = rocksdb::ReadOptions::default();
            let mut pointers = Vec::new();
            for item in self.db.iterator_cf_opt(chunks, ro, IteratorMode::Start) {
                let (_, v) = item.map_err(|e| self.err(e))?;
                if let Some(p) = Pointer::decode(&v) {
                    pointers.push(p);
                }
            }
            Ok(pointers)
        };
        let done = self.packs.collect(scan, || self.sync())?;
        if done != Default::default() {
            tracing::info!(
                punched_mib = done.punched_bytes >> 20,
                deleted_packs = done.deleted_packs,
                deferred = done.deferred,
                "gave back the space of deleted chunks in pack files"
            );
        }
        Ok(())
    }
}

/// A chunk value as the engine hands it out.
enum ChunkValue<'a> {
    Inline(&'a [u8]),
    Packed(Vec<u8>),
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
        let handle = self.cf(cf)?;
        if cf != Cf::Chunks {
            let v = self
                .db
                .get_pinned_cf(handle, key)
                .map_err(|e| self.err(e))?;
            f(v.as_deref());
            return Ok(());
        }
        // Chunk values are sealed: every read above this layer authenticates them
        // (XChaCha20-Poly1305 tags, the address in the associated data), so a changed byte
        // fails there. RocksDB's checksums would only check the same bytes a second time, at a
        // third of read throughput. Off here, RocksDB 7.8 skips both the table block checksum
        // and, for values in blob files, the blob record's CRC (`BlobFileReader::GetBlob` reads
        // and verifies the record only with `verify_checksums`). Metadata column families keep
        // verifying theirs.
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_verify_checksums(false);
        // From the pointer's lookup to the read of its pack: no collection punches it meanwhile.
        let _reading = self.packs.reading();
        let v = self
            .db
            .get_pinned_cf_opt(handle, key, &ro)
            .map_err(|e| self.err(e))?;
        match v.as_deref() {
            None => f(None),
            Some(stored) => match Pointer::decode(stored) {
                Some(p) if stored.first() == Some(&TAG_PACKED) => {
                    // Into this thread's buffer, reused from read to read (taken, so that a
                    // nested read gets one of its own).
                    thread_local! {
                        static BUF: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
                    }
                    let mut buf = BUF.take();
                    let r = self.packs.read_into(p, &mut buf);
                    if r.is_ok() {
                        f(Some(&buf));
                    }
                    BUF.set(buf);
                    r?;
                }
                _ => match self.chunk_value(stored)? {
                    ChunkValue::Inline(v) => f(Some(v)),
                    ChunkValue::Packed(v) => f(Some(&v)),
                },
            },
        }
        Ok(())
    }

    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), StoreError> {
        perf_counters_off();
        self.check_failed()?;
        self.check_space(batch.bytes())?;
        let mut ops = batch.ops;
        // In key order per family: each memtable's skiplist keeps the place of its last insert
        // and a key that goes right after it is inserted in a couple of comparisons, where any
        // other key is searched for from the top (~50 comparisons). A fold's batch alternated
        // between two ranges of the log (entries, fold records), so every log key was searched
        // for; sorted, they append (6% fewer instructions applying a history). The sort is
        // stable: two writes of one key keep their order, and the later still wins.
        ops.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let mut wb = rocksdb::WriteBatch::default();
        for (cf, k, v) in ops {
            match v {
                Value::Put(v) if cf == Cf::Chunks => {
                    let mut tagged = Vec::with_capacity(v.len() + 1);
                    tagged.push(TAG_INLINE);
                    tagged.extend_from_slice(&v);
                    wb.put_cf(self.cf(cf)?, k, tagged)
                }
                // Already tagged (a pointer into a pack).
                Value::Put(v) | Value::Aside(v) => wb.put_cf(self.cf(cf)?, k, v),
                Value::Delete => wb.delete_cf(self.cf(cf)?, k),
            }
        }
        self.commit(wb, durability == Durability::Disk)
    }

    fn put_aside(&self, values: Vec<Vec<u8>>) -> Result<Vec<Aside>, StoreError> {
        // Appended to a pack file and synced once (see the packs module): the bytes go to disk
        // once, with no log, memtable, table file or manifest in between.
        self.check_failed()?;
        self.check_space(values.iter().map(|v| v.len() as u64).sum())?;
        let (pointers, hold) = self.packs.put_aside(&values)?;
        Ok(pointers
            .iter()
            .map(|p| Aside {
                stored: p.encode().to_vec(),
                _hold: Some(hold.clone()),
            })
            .collect())
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
        // Before the iterator pins its view: no pointer it sees is punched meanwhile.
        let _reading = (cf == Cf::Chunks).then(|| self.packs.reading());
        let it = self
            .db
            .iterator_cf(self.cf(cf)?, IteratorMode::From(from, Direction::Forward));
        let mut out = Vec::new();
        for item in it {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if !k.starts_with(prefix) || out.len() >= limit {
                break;
            }
            let v = match cf {
                Cf::Chunks => match self.chunk_value(&v)? {
                    ChunkValue::Inline(v) => v.to_vec(),
                    ChunkValue::Packed(v) => v,
                },
                _ => v.into_vec(),
            };
            out.push((k.into_vec(), v));
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
        self.collect_packs()?;
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
        use std::os::unix::fs::MetadataExt;
        fn walk(p: &Path) -> std::io::Result<u64> {
            let mut n = 0;
            for e in std::fs::read_dir(p)? {
                let e = e?;
                // RocksDB deletes obsolete logs and tables on its own threads (right after an
                // open, too): one listed a moment ago may be gone, and then takes no space.
                let m = match e.metadata() {
                    Ok(m) => m,
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(err),
                };
                n += if m.is_dir() {
                    match walk(&e.path()) {
                        Err(err) if err.kind() == std::io::ErrorKind::NotFound => 0,
                        r => r?,
                    }
                } else if e.file_name().to_string_lossy().ends_with(".pack") {
                    // Packs have holes where deleted chunks were: what they occupy.
                    m.blocks() * 512
                } else {
                    m.len()
                };
            }
            Ok(n)
        }
        walk(&self.path)
            .map_err(|e| StoreError::Io(format!("measuring {}: {e}", self.path.display())))
    }
}
