//! A file's open state, shared by the data path (`data`: reads, buffered writes) and its
//! write-outs (`writeout`): the buffer of dirty chunks, the write-outs in flight and the order
//! they commit in, the pending times, and the constants that bound them.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use sealvol_crypto::ChunkAddr;

use crate::error::{FsError, Result};
use crate::schema::*;

/// Threads that hash and seal, or load and open, one request's chunks in parallel.
pub(crate) const WORKER_THREADS: usize = 4;

/// A write-out with at least this many bytes of new sealed chunks stages them with a bulk write
/// (around the write-ahead log, durable before the commit) instead of putting them in the
/// commit's batch, which would write them twice: log, then table files.
pub(crate) const BULK_MIN: usize = 8 << 20;

/// Largest file: 2^50 bytes (1 PiB).
pub(crate) const MAX_FILE_SIZE: u64 = 1 << 50;

/// A chunk index ready to commit: `None` for zeros (a hole), else its address, plaintext
/// length, and sealed bytes if it was not stored when hashed.
pub(crate) type Prepared = (u64, Option<(ChunkAddr, u32, Option<Vec<u8>>)>);

/// What one bulk write staged: its record's key, and (address, plaintext length, stored
/// length) of each chunk.
pub(crate) struct Staging {
    pub(crate) key: Vec<u8>,
    pub(crate) chunks: Vec<(ChunkAddr, u32, u32)>,
}

/// A file's times not committed yet: they go into the inode with the next write-out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct PendingTimes {
    pub(crate) mtime: Ts,
    pub(crate) atime: Option<Ts>,
    /// The change time, if set explicitly (else the commit takes the later of ctime and mtime).
    pub(crate) ctime: Option<Ts>,
}

impl PendingTimes {
    pub(crate) fn apply(&self, inode: &mut Inode) {
        inode.mtime = self.mtime;
        inode.ctime = inode
            .ctime
            .max(self.mtime)
            .max(self.ctime.unwrap_or(self.mtime));
        if let Some(a) = self.atime {
            inode.atime = a;
        }
    }
}

#[derive(Default)]
pub(crate) struct FileState {
    /// Whole or partial chunks not yet written out, by index.
    pub(crate) dirty: BTreeMap<u64, Vec<u8>>,
    pub(crate) dirty_bytes: usize,
    /// The file's size including buffered writes (valid when `size_known`).
    pub(crate) size: u64,
    pub(crate) size_known: bool,
    /// Times the next write-out commits with the data (set by writes, and by setattr while a
    /// write-out is pending).
    pub(crate) times: Option<PendingTimes>,
    /// Write-outs run by threads that released the file's lock, oldest first: reads and partial
    /// writes see their chunks (after `dirty`, newest first) until they are committed, or merged
    /// back into `dirty` on failure.
    pub(crate) inflight: Vec<Arc<Batch>>,
    /// The order in which this file's write-outs commit (by ticket).
    pub(crate) order: Arc<Order>,
    /// The ticket of the next write-out.
    pub(crate) next_ticket: u64,
}

/// Write-outs of one file hash and seal in parallel but commit strictly in ticket order, so
/// newer data always lands after older.
#[derive(Default)]
pub(crate) struct Order {
    pub(crate) turn: Mutex<u64>,
    pub(crate) cv: parking_lot::Condvar,
}

impl Order {
    pub(crate) fn wait_turn(&self, ticket: u64) {
        let mut t = self.turn.lock();
        while *t != ticket {
            self.cv.wait(&mut t);
        }
    }
    pub(crate) fn wait_done(&self, ticket: u64) {
        let mut t = self.turn.lock();
        while *t <= ticket {
            self.cv.wait(&mut t);
        }
    }
    pub(crate) fn done(&self) {
        *self.turn.lock() += 1;
        self.cv.notify_all();
    }
}

/// At most this many write-outs of one file in flight (each holds up to the flush threshold).
pub(crate) const MAX_INFLIGHT: usize = 2;

/// Past the volume's budget for buffered data, a file holding this share of the budget
/// (1/PRESSED_SHARE) writes out at once.
pub(crate) const PRESSED_SHARE: usize = 64;

/// What a write-out stores: chunks by index, and the file's size and times with them.
pub(crate) struct FileData<'a> {
    pub(crate) chunks: &'a BTreeMap<u64, Vec<u8>>,
    pub(crate) size: u64,
    pub(crate) times: Option<PendingTimes>,
}

/// Marks a write-out's turn done when dropped (also on an early return or error).
pub(crate) struct Done<'a>(pub(crate) &'a Order);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.done();
    }
}

impl FileState {
    /// The newest buffered version of chunk `index`: the buffer, else the newest write-out in
    /// flight that has it.
    pub(crate) fn buffered(&self, index: u64) -> Option<&Vec<u8>> {
        self.dirty.get(&index).or_else(|| {
            self.inflight
                .iter()
                .rev()
                .find_map(|b| b.chunks.get(&index))
        })
    }
}

/// A file's buffered chunks handed to a write-out, with the size and times they go with.
pub(crate) struct Batch {
    pub(crate) ticket: u64,
    pub(crate) chunks: BTreeMap<u64, Vec<u8>>,
    pub(crate) size: u64,
    pub(crate) times: Option<PendingTimes>,
    /// `None` while the write-out runs; then its result.
    pub(crate) outcome: Mutex<Option<std::result::Result<(), String>>>,
}

/// `f` over `items` on up to `WORKER_THREADS` scoped threads (one core: in this thread), in
/// order; fewer than `min_parallel` items run in this thread too.
pub(crate) fn par_map<T: Sync, R: Send>(
    items: &[T],
    min_parallel: usize,
    f: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    // `available_parallelism` reads cgroup files on every call: ask once.
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let threads = (*CORES.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    }))
    .min(WORKER_THREADS);
    if threads < 2 || items.len() < min_parallel.max(2) {
        return items.iter().map(f).collect();
    }
    let per = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(per)
            .map(|part| s.spawn(move || part.iter().map(f).collect::<Result<Vec<_>>>()))
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for h in handles {
            out.extend(
                h.join()
                    .map_err(|_| FsError::Setup("a worker thread panicked".into()))??,
            );
        }
        Ok(out)
    })
}
