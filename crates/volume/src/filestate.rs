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

/// A piece of a write-out, hashed and sealed: chunk `index` whole (`at: None`) or a slice of it
/// at byte `at`. `chunk` is `None` for a whole chunk of zeros (a hole).
pub(crate) struct Prepared {
    pub(crate) index: u64,
    pub(crate) at: Option<u32>,
    pub(crate) chunk: Option<SealedPiece>,
}

/// A piece's chunk: its address, plaintext length, and sealed bytes if it was not stored when
/// hashed.
pub(crate) struct SealedPiece {
    pub(crate) addr: ChunkAddr,
    pub(crate) len: u32,
    pub(crate) sealed: Option<Vec<u8>>,
}

/// One piece of a write-out to hash and seal: chunk index, slice offset (`None`: whole), bytes.
pub(crate) type Job<'a> = (u64, Option<u32>, &'a [u8]);

/// The pieces a write-out stored, by (index, slice offset or `None` for whole): address and
/// plaintext length (their buffers are verified plaintext, worth caching).
pub(crate) type Cached = std::collections::HashMap<(u64, Option<u32>), (ChunkAddr, u32)>;

/// What a committed write-out leaves to do.
#[derive(Default)]
pub(crate) struct Written {
    pub(crate) cached: Cached,
    /// Chunks with more than [`MAX_SLICES`] slices, to compact.
    pub(crate) fragmented: Vec<u64>,
}

/// Most patches a chunk's buffer holds; past it, the chunk is buffered whole.
pub(crate) const MAX_PATCHES: usize = 4;

/// Bookkeeping counted per buffered patch, beside its bytes.
const PATCH_OVERHEAD: usize = 64;

/// A chunk's bytes not written out yet.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ChunkBuf {
    /// The chunk from byte 0: replaces whatever is stored (bytes past its end, within the
    /// file's size, read as zeros).
    Whole(Vec<u8>),
    /// Byte ranges laid over the stored chunk, by start: sorted, never overlapping or touching.
    /// Written out as slices, without reading or rewriting the rest of the chunk.
    Patches(BTreeMap<u32, Vec<u8>>),
}

impl ChunkBuf {
    /// Memory held, counted against the buffer budget.
    pub(crate) fn bytes(&self) -> usize {
        match self {
            ChunkBuf::Whole(b) => b.capacity(),
            ChunkBuf::Patches(p) => p.values().map(|b| b.capacity() + PATCH_OVERHEAD).sum(),
        }
    }

    /// Patches enough (more than [`MAX_PATCHES`], or a quarter of the chunk) that writing the
    /// chunk out whole costs less than as slices.
    pub(crate) fn is_fragmented(&self, chunk_size: usize) -> bool {
        match self {
            ChunkBuf::Whole(_) => false,
            ChunkBuf::Patches(p) => {
                p.len() > MAX_PATCHES || p.values().map(Vec::len).sum::<usize>() >= chunk_size / 4
            }
        }
    }

    /// Write `src` at byte `at` of the chunk.
    pub(crate) fn write(&mut self, at: usize, src: &[u8]) {
        match self {
            ChunkBuf::Whole(buf) => write_into(buf, at, src),
            ChunkBuf::Patches(p) => add_patch(p, at as u32, src),
        }
    }

    /// `upper` laid over this chunk's bytes.
    pub(crate) fn compose(mut self, upper: &ChunkBuf) -> ChunkBuf {
        match upper {
            ChunkBuf::Whole(_) => upper.clone(),
            ChunkBuf::Patches(p) => {
                for (at, b) in p {
                    self.write(*at as usize, b);
                }
                self
            }
        }
    }

    /// Lay the bytes this buffer holds within `range` of the chunk over `out`, which holds
    /// that range (a whole buffer also zeroes what it does not hold: it replaces the chunk).
    pub(crate) fn overlay(&self, range: std::ops::Range<usize>, out: &mut [u8]) {
        if let ChunkBuf::Whole(_) = self {
            out.fill(0);
        }
        let mut put = |at: usize, b: &[u8]| {
            let (lo, hi) = (at.max(range.start), (at + b.len()).min(range.end));
            if lo < hi {
                out[lo - range.start..hi - range.start].copy_from_slice(&b[lo - at..hi - at]);
            }
        };
        match self {
            ChunkBuf::Whole(b) => put(0, b),
            ChunkBuf::Patches(p) => {
                for (at, b) in p {
                    put(*at as usize, b);
                }
            }
        }
    }
}

/// Overwrite what `buf` holds at `at`, append the rest (zeros fill a gap; appending without
/// zero-filling first: sequential writes would write every byte twice).
fn write_into(buf: &mut Vec<u8>, at: usize, src: &[u8]) {
    if buf.len() < at {
        buf.resize(at, 0);
    }
    let overlap = (buf.len() - at).min(src.len());
    buf[at..at + overlap].copy_from_slice(&src[..overlap]);
    buf.extend_from_slice(&src[overlap..]);
}

/// Add `src` at `at` to a patch set, merging the patches it overlaps or touches into one.
fn add_patch(p: &mut BTreeMap<u32, Vec<u8>>, at: u32, src: &[u8]) {
    if src.is_empty() {
        return;
    }
    let end = at + src.len() as u32;
    let before = p
        .range(..=at)
        .next_back()
        .filter(|(s, b)| **s + b.len() as u32 >= at)
        .map(|(s, _)| *s);
    let start = before.unwrap_or(at);
    let later = p.range(at.saturating_add(1)..=end).next().is_some();
    // The common case (appending to, or writing inside, one patch): in place.
    if let (Some(s), false) = (before, later) {
        if let Some(buf) = p.get_mut(&s) {
            write_into(buf, (at - s) as usize, src);
            return;
        }
    }
    let merged: Vec<u32> = p.range(start..=end).map(|(s, _)| *s).collect();
    let mut buf = Vec::new();
    for s in merged {
        if let Some(b) = p.remove(&s) {
            write_into(&mut buf, (s - start) as usize, &b);
        }
    }
    write_into(&mut buf, (at - start) as usize, src);
    p.insert(start, buf);
}

/// What one bulk write put aside in the store: (address, plaintext length, stored length,
/// the value to name) of each chunk. Dropping it lets the store reclaim what was not named.
pub(crate) struct Staging {
    pub(crate) chunks: Vec<(ChunkAddr, u32, u32, sealvol_store::Aside)>,
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
    /// Chunks not yet written out, by index.
    pub(crate) dirty: BTreeMap<u64, ChunkBuf>,
    pub(crate) dirty_bytes: usize,
    /// The file's size including buffered writes (valid when `size_known`).
    pub(crate) size: u64,
    pub(crate) size_known: bool,
    /// Times the next write-out commits with the data (set by writes, and by setattr while a
    /// write-out is pending).
    pub(crate) times: Option<PendingTimes>,
    /// Write-outs run by threads that released the file's lock, oldest first: reads see their
    /// chunks (under `dirty`, newest on top) until they are committed, or merged back into
    /// `dirty` on failure.
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

/// At most this many write-outs of one file in flight (each holds up to the flush threshold),
/// and fewer if the write share has no room for them (see [`Room`]).
pub(crate) const MAX_INFLIGHT: usize = 2;

/// A file's flush threshold is its part of the free write share divided by this: room for its
/// buffer and [`MAX_INFLIGHT`] write-outs in flight, each plaintext and sealed (1 + 2 × 2). A
/// third (one write-out in flight, larger) measured no faster on random writes and up to 15%
/// slower on random overwrites: the next write-out waited for the previous one with the file's
/// lock held (docs/benchmarks.md, "Issue 10").
pub(crate) const THRESHOLD_SHARE: usize = 1 + 2 * MAX_INFLIGHT;

/// The smallest flush threshold: below it write-outs are too small to be worth their
/// transactions.
pub(crate) const MIN_FLUSH_THRESHOLD: usize = 1 << 20;

/// Where write-outs wait for room in the write share: a write-out starting while those in flight
/// and the buffers already hold the share waits for one of them to finish.
#[derive(Default)]
pub(crate) struct Room {
    pub(crate) waiting: Mutex<usize>,
    pub(crate) cv: parking_lot::Condvar,
}

impl Room {
    /// A write-out's charge against the write share, given back (`Volume::release_room`) when
    /// dropped.
    pub(crate) fn held(vol: &crate::volume::Volume, charge: usize) -> HeldRoom<'_> {
        HeldRoom { vol, charge }
    }
}

/// See [`Room::held`].
pub(crate) struct HeldRoom<'a> {
    vol: &'a crate::volume::Volume,
    charge: usize,
}

impl Drop for HeldRoom<'_> {
    fn drop(&mut self) {
        self.vol.release_room(self.charge);
    }
}

/// Past the volume's budget for buffered data, a file holding this share of the budget
/// (1/PRESSED_SHARE) writes out at once.
pub(crate) const PRESSED_SHARE: usize = 64;

/// What a write-out stores: chunks by index, and the file's size and times with them.
pub(crate) struct FileData<'a> {
    pub(crate) chunks: &'a BTreeMap<u64, ChunkBuf>,
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
    /// What memory holds of chunk `index`: the write-outs in flight (oldest first) and the
    /// buffer laid over each other; `None` if none has it.
    pub(crate) fn buffered(&self, index: u64) -> Option<ChunkBuf> {
        let layers = self.inflight.iter().map(|b| &b.chunks).chain([&self.dirty]);
        let mut view: Option<ChunkBuf> = None;
        for layer in layers {
            if let Some(c) = layer.get(&index) {
                view = Some(match view {
                    None => c.clone(),
                    Some(v) => v.compose(c),
                });
            }
        }
        view
    }
}

/// A file's buffered chunks handed to a write-out, with the size and times they go with.
pub(crate) struct Batch {
    pub(crate) ticket: u64,
    pub(crate) chunks: BTreeMap<u64, ChunkBuf>,
    pub(crate) size: u64,
    pub(crate) times: Option<PendingTimes>,
    /// What it is charged against the write share while in flight (`Volume::writing`).
    pub(crate) charge: usize,
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
