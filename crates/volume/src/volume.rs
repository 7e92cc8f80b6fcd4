//! Opening, creating and unlocking a volume; reading and writing its sealed records.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use sealvol_crypto::{Domain, KdfParams, KeyHeader, MasterKey, Secret, VolumeKeys};
use sealvol_store::{Cf, Durability, Engine, RocksEngine, RocksTuning, WriteBatch};

use crate::budget::{MemoryBudget, MemorySplit};
use crate::cache::PlainCache;
use crate::clock::Clock;
use crate::error::{FsError, Result};
use crate::filestate::FileState;
use crate::geometry::ChunkSize;
use crate::record_cache::{ExtentCache, InodeCache, EXTENT_CAPACITY, INODE_CAPACITY};
use crate::schema::*;

/// 256 MiB: the plaintext cache's budget of a volume made on an engine directly
/// ([`Volume::init_in`], [`Volume::open_in`]); a store opened by path takes its shares from a
/// [`MemoryBudget`] (see [`Volume::set_cache_size`]).
pub const DEFAULT_CACHE_SIZE: usize = 256 << 20;

pub struct CreateOptions {
    pub chunk_size: ChunkSize,
    pub kdf: KdfParams,
    pub root_uid: u32,
    pub root_gid: u32,
    pub root_perm: u32,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            chunk_size: ChunkSize::DEFAULT,
            kdf: KdfParams::default(),
            root_uid: 0,
            root_gid: 0,
            root_perm: 0o755,
        }
    }
}

/// Totals for `sealvol stats` and Docker's volume status.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Stats {
    pub files: u64,
    pub dirs: u64,
    pub others: u64,
    pub logical_bytes: u64,
    pub stored_bytes: u64,
    pub chunk_plain_bytes: u64,
    pub referenced_bytes: u64,
    pub chunks: u64,
    pub dedup_ratio: f64,
    pub chunk_size: u32,
    pub disk_bytes: u64,
    pub log_hlc: u64,
}

pub(crate) struct CommitState {
    pub(crate) counters: Counters,
    /// Entries in the operation log: counted by the first `trim_log` (not at open, which must
    /// stay quick), then kept up to date.
    pub(crate) log_len: Option<u64>,
}

/// 256 MiB: buffered writes of all files together before files write out early (one file
/// alone writes out every 32 MiB).
pub const DEFAULT_BUFFER_BUDGET: usize = 256 << 20;

/// 512 MiB: what buffered writes and write-outs in flight may hold together in a volume made
/// on an engine directly ([`Volume::init_in`], [`Volume::open_in`]); a store opened by path takes
/// its write share from a [`MemoryBudget`] (see [`Volume::set_write_budget`]).
pub const DEFAULT_WRITE_BUDGET: usize = 512 << 20;

/// Operation log entries kept by default: older ones are folded into the tables and deleted
/// (see [`Volume::trim_log`]), so a busy volume's log does not grow without bound.
pub const DEFAULT_LOG_KEEP: u64 = 65_536;

/// Dirty bytes of one open file before its buffer is written out (see `Volume::write`).
pub(crate) const DEFAULT_FLUSH_THRESHOLD: usize = 32 << 20;

/// `reclaim_if_wasteful` compacts once the store takes more than this many times its live
/// sealed chunks ...
const RECLAIM_FACTOR: u64 = 2;
/// ... plus this much (small stores are never worth compacting).
const RECLAIM_SLACK: u64 = 256 << 20;

pub struct Volume {
    pub(crate) engine: Arc<dyn Engine>,
    pub(crate) keys: VolumeKeys,
    pub(crate) volume_id: [u8; 16],
    pub(crate) epoch: u32,
    pub(crate) cfg: Config,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) commit: Mutex<CommitState>,
    pub(crate) files: Mutex<HashMap<u64, Arc<Mutex<FileState>>>>,
    pub(crate) opens: Mutex<HashMap<u64, u32>>,
    pub(crate) lookups: Mutex<HashMap<u64, u64>>,
    pub(crate) cache: PlainCache,
    /// Decoded inode records (see [`crate::record_cache`]).
    pub(crate) inodes: InodeCache,
    /// Decoded extents, by (inode, chunk index).
    pub(crate) extents: ExtentCache,
    /// Forgotten inodes to delete if they are unlinked orphans (`forget_deferred`).
    pub(crate) deferred_purge: Mutex<Vec<u64>>,
    /// Operation log entries to keep (see [`Volume::trim_log`]).
    pub(crate) log_keep: std::sync::atomic::AtomicU64,
    /// Bytes buffered by writes in all files, not yet handed to a write-out.
    pub(crate) buffered: std::sync::atomic::AtomicUsize,
    /// Past this many buffered bytes, files write out early (see `Volume::write`).
    pub(crate) buffer_budget: std::sync::atomic::AtomicUsize,
    /// Dirty bytes per open file before its buffer is written out, at most (see
    /// `Volume::flush_threshold_now`).
    pub(crate) flush_threshold: usize,
    /// The write share of the memory budget: buffered writes and write-outs in flight.
    pub(crate) write_budget: std::sync::atomic::AtomicUsize,
    /// What the write-outs in flight hold: each is charged twice its buffer (the plaintext, and
    /// the sealed copy while it is sealed and staged) from its start until it is done.
    pub(crate) writing: std::sync::atomic::AtomicUsize,
    /// Write-outs waiting for room in the write share, and where they wait.
    pub(crate) room: crate::filestate::Room,
    store_dir: Option<PathBuf>,
}

fn now_unix(clock: &dyn Clock) -> u64 {
    clock.now().secs.max(0) as u64
}

/// Write the key header atomically: temp file, fsync, rename, fsync the directory.
pub(crate) fn write_key_header(store_dir: &Path, header: &KeyHeader) -> Result<()> {
    use std::io::Write;
    let io = |e: std::io::Error| {
        FsError::Setup(format!(
            "cannot write key header in {}: {e}",
            store_dir.display()
        ))
    };
    let tmp = store_dir.join(".keys.json.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&header.to_json()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, store_dir.join(KEY_HEADER_FILE)).map_err(io)?;
    std::fs::File::open(store_dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(())
}

/// A store that a tool is still filling (import): while this file is in its directory, the
/// store is refused, with the file's text as the reason.
pub(crate) const INCOMPLETE_FILE: &str = "INCOMPLETE";

pub(crate) fn read_key_header(store_dir: &Path) -> Result<KeyHeader> {
    let marker = store_dir.join(INCOMPLETE_FILE);
    if let Ok(why) = std::fs::read_to_string(&marker) {
        return Err(FsError::Setup(format!(
            "{} is not a complete store: {} ({})",
            store_dir.display(),
            why.trim(),
            marker.display()
        )));
    }
    let p = store_dir.join(KEY_HEADER_FILE);
    let bytes = sealvol_crypto::slots::read_header_bytes(&p).map_err(|e| {
        FsError::Setup(format!(
            "{} is not a sealvol store ({}: {e}); create one with `sealvol init --store {}`",
            store_dir.display(),
            p.display(),
            store_dir.display()
        ))
    })?;
    Ok(KeyHeader::from_json(&bytes)?)
}

impl Volume {
    /// Create a new store in `store_dir` (which must be empty or absent) and return it opened.
    pub fn create(
        store_dir: &Path,
        secret: &Secret,
        opts: &CreateOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<Volume> {
        if store_dir.join(KEY_HEADER_FILE).exists() || store_dir.join(DB_DIR).exists() {
            return Err(FsError::Setup(format!(
                "{} already holds a sealvol store; refusing to overwrite it",
                store_dir.display()
            )));
        }
        std::fs::create_dir_all(store_dir)
            .map_err(|e| FsError::Setup(format!("cannot create {}: {e}", store_dir.display())))?;
        let (header, master) = KeyHeader::create(secret, opts.kdf, now_unix(&*clock))?;
        let engine = RocksEngine::open(&store_dir.join(DB_DIR), true, &RocksTuning::default())?;
        let mut v = Self::init_in(Arc::new(engine), &header, &master, opts, clock)?;
        // The header goes last: a crash before this leaves no half-made store that opens.
        write_key_header(store_dir, &header)?;
        v.store_dir = Some(store_dir.to_path_buf());
        Ok(v)
    }

    /// Open an existing store with a passphrase or key file, within the default memory budget.
    pub fn open(store_dir: &Path, secret: &Secret, clock: Arc<dyn Clock>) -> Result<Volume> {
        Self::open_within(store_dir, secret, clock, &MemoryBudget::DEFAULT.split())
    }

    /// Open an existing store with a passphrase or key file, its RocksDB memtables and block
    /// cache, write buffers and plaintext cache sized by `memory` (see [`crate::budget`]).
    pub fn open_within(
        store_dir: &Path,
        secret: &Secret,
        clock: Arc<dyn Clock>,
        memory: &MemorySplit,
    ) -> Result<Volume> {
        let header = read_key_header(store_dir)?;
        let (master, _slot) = header.unlock(secret)?;
        let engine = RocksEngine::open(&store_dir.join(DB_DIR), false, &memory.rocks_tuning())?;
        let mut v = Self::open_in(Arc::new(engine), &header, &master, clock)?;
        v.store_dir = Some(store_dir.to_path_buf());
        v.flush_threshold = memory.flush_threshold;
        v.set_buffer_budget(memory.buffer_budget);
        v.set_write_budget(memory.write_buffers);
        v.set_cache_size(memory.cache);
        Ok(v)
    }

    /// Initialise a fresh engine as a volume under `master`.
    pub fn init_in(
        engine: Arc<dyn Engine>,
        header: &KeyHeader,
        master: &MasterKey,
        opts: &CreateOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<Volume> {
        let mut tag = [0u8; 4];
        sealvol_crypto::random_bytes(&mut tag)?;
        let cfg = Config {
            format_version: FORMAT_VERSION,
            chunk_size: opts.chunk_size,
            host_tag: (u32::from_le_bytes(tag) & 0x000f_ffff).max(1),
            created_unix: now_unix(&*clock),
        };
        let v = Self::assemble(engine, header, master, cfg, Counters::default(), clock)?;
        let now = v.clock.now();
        let root = Inode {
            ino: ROOT_INO,
            kind: Kind::Dir,
            perm: opts.root_perm & 0o7777,
            uid: opts.root_uid,
            gid: opts.root_gid,
            nlink: 2,
            size: 0,
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            rdev: 0,
            parent: ROOT_INO,
            target: Vec::new(),
            xattrs: Default::default(),
            holes: Vec::new(),
        };
        let mut b = WriteBatch::new();
        b.put(
            Cf::Meta,
            META_CONFIG,
            v.seal_meta(Domain::Config, META_CONFIG, &v.cfg)?,
        );
        b.put(
            Cf::Meta,
            META_COUNTERS,
            v.seal_meta(Domain::Counters, META_COUNTERS, &Counters::default())?,
        );
        v.engine.write(b, Durability::Disk)?;
        let mut t = v.begin();
        t.put_inode(root);
        t.commit(Durability::Disk)?;
        Ok(v)
    }

    /// Open an engine that already holds a volume.
    pub fn open_in(
        engine: Arc<dyn Engine>,
        header: &KeyHeader,
        master: &MasterKey,
        clock: Arc<dyn Clock>,
    ) -> Result<Volume> {
        let keys = master.volume_keys();
        let vid = volume_id(header)?;
        let read = |key: &[u8], domain: Domain| -> Result<Vec<u8>> {
            let sealed = engine.get(Cf::Meta, key)?.ok_or_else(|| {
                FsError::Setup(format!(
                    "the store has no {} record: it was never initialised, or is damaged",
                    String::from_utf8_lossy(key)
                ))
            })?;
            let mut binding = vid.to_vec();
            binding.extend_from_slice(key);
            keys.meta_seal
                .open(domain, &binding, &sealed)
                .map_err(|e| FsError::Corrupt {
                    volume: hex(&vid),
                    ino: 0,
                    detail: format!("{} record: {e}", String::from_utf8_lossy(key)),
                })
        };
        let config = read(META_CONFIG, Domain::Config)?;
        // The version first, alone: a store of another format need not decode as this one.
        let version = config_version(&config).ok_or_else(|| {
            FsError::Setup("config record does not decode: the store is damaged".into())
        })?;
        if version != FORMAT_VERSION {
            return Err(FsError::Setup(format!(
                "store format version {} is not supported by this sealvol (it knows {FORMAT_VERSION}){}",
                version,
                if version < FORMAT_VERSION {
                    ": the store was made by an older, pre-release sealvol; mount it with that \
                     build and copy the files to a new volume"
                } else {
                    ": the store was made by a newer sealvol; use that version"
                }
            )));
        }
        let cfg: Config = decode(&config).ok_or_else(|| {
            FsError::Setup("config record does not decode: the store is damaged".into())
        })?;
        let counters: Counters = decode(&read(META_COUNTERS, Domain::Counters)?)
            .ok_or_else(|| FsError::Setup("counters record does not decode".into()))?;
        let v = Self::assemble(engine, header, master, cfg, counters, clock)?;
        v.purge_orphans()?;
        Ok(v)
    }

    fn assemble(
        engine: Arc<dyn Engine>,
        header: &KeyHeader,
        master: &MasterKey,
        cfg: Config,
        counters: Counters,
        clock: Arc<dyn Clock>,
    ) -> Result<Volume> {
        Ok(Volume {
            engine,
            keys: master.volume_keys(),
            volume_id: volume_id(header)?,
            epoch: header.epoch,
            cfg,
            clock,
            commit: Mutex::new(CommitState {
                counters,
                log_len: None,
            }),
            files: Mutex::new(HashMap::new()),
            opens: Mutex::new(HashMap::new()),
            lookups: Mutex::new(HashMap::new()),
            inodes: InodeCache::new(INODE_CAPACITY),
            extents: ExtentCache::new(EXTENT_CAPACITY),
            cache: PlainCache::new(DEFAULT_CACHE_SIZE),
            log_keep: std::sync::atomic::AtomicU64::new(DEFAULT_LOG_KEEP),
            buffered: std::sync::atomic::AtomicUsize::new(0),
            buffer_budget: std::sync::atomic::AtomicUsize::new(DEFAULT_BUFFER_BUDGET),
            deferred_purge: Mutex::new(Vec::new()),
            flush_threshold: DEFAULT_FLUSH_THRESHOLD,
            write_budget: std::sync::atomic::AtomicUsize::new(DEFAULT_WRITE_BUDGET),
            writing: std::sync::atomic::AtomicUsize::new(0),
            room: Default::default(),
            store_dir: None,
        })
    }

    pub fn chunk_size(&self) -> ChunkSize {
        self.cfg.chunk_size
    }

    pub fn volume_id_hex(&self) -> String {
        hex(&self.volume_id)
    }

    pub fn store_dir(&self) -> Option<&Path> {
        self.store_dir.as_deref()
    }

    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
    }

    pub fn set_flush_threshold(&mut self, bytes: usize) {
        self.flush_threshold = bytes;
    }

    pub fn stats(&self) -> Result<Stats> {
        let c = self.commit.lock().counters.clone();
        Ok(Stats {
            files: c.files,
            dirs: c.dirs,
            others: c.others,
            logical_bytes: c.logical_bytes,
            stored_bytes: c.chunk_stored_bytes,
            chunk_plain_bytes: c.chunk_plain_bytes,
            referenced_bytes: c.referenced_bytes,
            chunks: c.chunks,
            dedup_ratio: if c.chunk_plain_bytes == 0 {
                1.0
            } else {
                c.referenced_bytes as f64 / c.chunk_plain_bytes as f64
            },
            chunk_size: self.cfg.chunk_size.get(),
            disk_bytes: self.engine.disk_bytes()?,
            log_hlc: c.last_hlc,
        })
    }

    /// Make every change so far durable on disk.
    pub fn sync_all(&self) -> Result<()> {
        self.purge_deferred()?;
        let inos: Vec<u64> = self.files.lock().keys().copied().collect();
        for ino in inos {
            match self.flush(ino) {
                // Deleted since it was last written: nothing left to write out.
                Err(FsError::NotFound) => {
                    self.files.lock().remove(&ino);
                }
                r => r?,
            }
        }
        self.engine.sync()?;
        Ok(())
    }

    /// A clean close: everything durable, and out of the write-ahead log.
    pub fn close(&self) -> Result<()> {
        self.sync_all()?;
        // The kernel's references are gone with the mount: unlinked files go now.
        self.opens.lock().clear();
        self.lookups.lock().clear();
        self.purge_orphans()?;
        self.trim_log(self.log_keep())?;
        self.engine.flush_memtables()?;
        self.reclaim_if_wasteful()?;
        Ok(())
    }

    /// Compact the store (which gives back the space of deleted data) when it occupies more
    /// than [`RECLAIM_FACTOR`] times its live sealed chunks plus [`RECLAIM_SLACK`]. Returns whether it did. Cheap to call:
    /// one walk of the store directory.
    pub fn reclaim_if_wasteful(&self) -> Result<bool> {
        let live = self.commit.lock().counters.chunk_stored_bytes;
        let disk = self.engine.disk_bytes()?;
        if disk <= live.saturating_mul(RECLAIM_FACTOR) + RECLAIM_SLACK {
            return Ok(false);
        }
        tracing::info!(
            disk_mib = disk >> 20,
            live_mib = live >> 20,
            "reclaiming the space of deleted data"
        );
        self.engine.compact()?;
        Ok(true)
    }

    // ---- record keys and sealing ----

    /// The plaintext cache's budget in bytes (see [`DEFAULT_CACHE_SIZE`]).
    pub fn set_cache_size(&self, bytes: usize) {
        self.cache.set_budget(bytes);
    }

    /// Bytes the plaintext cache holds now.
    pub fn cached_bytes(&self) -> usize {
        self.cache.bytes()
    }

    /// Let the plaintext cache hold `bytes` beyond its budget until the next write (memory the
    /// write path does not use while nothing is written; see `crate::budget`). 0 ends a loan.
    pub fn lend_cache(&self, bytes: usize) {
        self.cache.lend(bytes);
    }

    /// Bytes the plaintext cache has borrowed now.
    pub fn cache_loan(&self) -> usize {
        self.cache.loan()
    }

    /// End the plaintext cache's loan, if any, evicting down to its budget at once: call it
    /// before a write, which needs the memory back. One atomic load when nothing is lent.
    pub fn repay_cache_loan(&self) -> bool {
        self.cache.repay()
    }

    /// Bytes buffered by writes, in all files, not yet handed to a write-out.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The budget for [`Volume::buffered_bytes`] (see [`DEFAULT_BUFFER_BUDGET`]).
    pub fn set_buffer_budget(&self, bytes: usize) {
        self.buffer_budget
            .store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// What the write-outs in flight hold, as charged against the write share (twice their
    /// buffers: plaintext and sealed).
    pub fn writing_bytes(&self) -> usize {
        self.writing.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Write-outs waiting now for the ones in flight to make room in the write share.
    pub fn write_outs_waiting(&self) -> usize {
        *self.room.waiting.lock()
    }

    /// The write share: what buffered writes and write-outs in flight hold together (see
    /// [`DEFAULT_WRITE_BUDGET`] and `crate::budget`). A write-out that would pass it waits for
    /// those in flight to finish.
    pub fn set_write_budget(&self, bytes: usize) {
        self.write_budget
            .store(bytes, std::sync::atomic::Ordering::Relaxed);
    }
}

fn volume_id(header: &KeyHeader) -> Result<[u8; 16]> {
    header
        .volume_id
        .as_slice()
        .try_into()
        .map_err(|_| FsError::Setup("volume id is not 16 bytes".into()))
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Key-slot administration on a store directory. Slots change only the key header; the data is
/// never re-encrypted.
pub mod volume_admin {
    use std::path::Path;

    use sealvol_crypto::{KdfParams, KeyHeader, Secret};

    use super::{read_key_header, write_key_header};
    use crate::error::{FsError, Result};

    pub fn read_header(store_dir: &Path) -> Result<KeyHeader> {
        read_key_header(store_dir)
    }

    /// Mark `store_dir` (made if absent) as being filled: until [`mark_complete`], opening it
    /// fails with `why` as the reason (say what happened and what to do). Durable on return.
    pub fn mark_incomplete(store_dir: &Path, why: &str) -> Result<()> {
        let io = |e: std::io::Error| {
            FsError::Setup(format!(
                "cannot mark {} as incomplete: {e}",
                store_dir.display()
            ))
        };
        std::fs::create_dir_all(store_dir).map_err(io)?;
        let mut f = std::fs::File::create(store_dir.join(super::INCOMPLETE_FILE)).map_err(io)?;
        std::io::Write::write_all(&mut f, why.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::File::open(store_dir)
            .and_then(|d| d.sync_all())
            .map_err(io)
    }

    /// The store in `store_dir` is whole (everything in it durable): it opens again.
    pub fn mark_complete(store_dir: &Path) -> Result<()> {
        let io = |e: std::io::Error| {
            FsError::Setup(format!(
                "cannot mark {} as complete: {e}",
                store_dir.display()
            ))
        };
        match std::fs::remove_file(store_dir.join(super::INCOMPLETE_FILE)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(e)),
        }
        std::fs::File::open(store_dir)
            .and_then(|d| d.sync_all())
            .map_err(io)
    }

    /// Add a slot for `new`, authorised by `current`. Returns the new slot id.
    pub fn add_slot(
        store_dir: &Path,
        current: &Secret,
        new: &Secret,
        kdf: KdfParams,
    ) -> Result<u32> {
        let mut h = read_key_header(store_dir)?;
        let (master, _) = h.unlock(current)?;
        #[allow(clippy::disallowed_methods)]
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let id = h.add_slot(&master, new, kdf, now)?;
        write_key_header(store_dir, &h)?;
        Ok(id)
    }

    /// Remove slot `id`, authorised by `current` (any slot's key).
    pub fn remove_slot(store_dir: &Path, current: &Secret, id: u32) -> Result<()> {
        let mut h = read_key_header(store_dir)?;
        h.unlock(current)?;
        h.remove_slot(id)?;
        write_key_header(store_dir, &h)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sealvol_crypto::{Domain, KdfParams, KeyHeader, Secret};
    use sealvol_store::{Cf, Durability, Engine, MemoryEngine, WriteBatch};

    use crate::schema::{Config, FORMAT_VERSION, META_CONFIG};
    use crate::{CreateOptions, StepClock, Volume};

    #[test]
    fn a_store_of_another_format_is_refused_with_what_to_do() {
        let secret = Secret::key_file(&[3u8; 32]);
        let (h, mk) = KeyHeader::create(&secret, KdfParams::MIN, 0).unwrap();
        let e = Arc::new(MemoryEngine::new());
        let clock = Arc::new(StepClock::new(1_700_000_000_000));
        let opts = CreateOptions {
            kdf: KdfParams::MIN,
            ..CreateOptions::default()
        };
        let v = Volume::init_in(e.clone(), &h, &mk, &opts, clock.clone()).unwrap();
        let (older, newer) = (FORMAT_VERSION - 1, FORMAT_VERSION + 1);
        for (format, says) in [(older, "older, pre-release"), (newer, "newer")] {
            let cfg = Config {
                format_version: format,
                ..v.cfg.clone()
            };
            let mut b = WriteBatch::new();
            b.put(
                Cf::Meta,
                META_CONFIG,
                v.seal_meta(Domain::Config, META_CONFIG, &cfg).unwrap(),
            );
            e.write(b, Durability::Process).unwrap();
            let err = Volume::open_in(e.clone() as Arc<dyn Engine>, &h, &mk, clock.clone())
                .err()
                .expect("refused");
            let msg = err.to_string();
            assert!(msg.contains(&format!("format version {format}")), "{msg}");
            assert!(msg.contains(says), "{msg}");
        }
    }
}
