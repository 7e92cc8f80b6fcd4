//! File data: chunked reads and buffered writes.
//!
//! A file is cut into fixed-size chunks at offsets `index * chunk_size`. Writes go into a
//! per-file buffer of whole chunks; the buffer is written out (hashed, sealed, committed in one
//! batch) when it passes the flush threshold, on `flush` (every close), `fsync` and `release`.
//! Reads see buffered data first. A chunk of zeros becomes a hole, not a stored chunk.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::Mutex;
use sealvol_crypto::{ChunkAddr, Domain};
use sealvol_store::{Cf, Durability, WriteBatch};

use crate::cache::{plain, Plain};
use crate::error::{FsError, Result};
use crate::geometry::Piece;
use crate::holes;
use crate::schema::*;
use crate::txn::Txn;
use crate::volume::Volume;

/// Forgotten unlinked inodes deleted per transaction by [`Volume::purge_deferred`].
const PURGE_BATCH: usize = 8;

/// Threads that hash and seal, or load and open, one request's chunks in parallel.
const WORKER_THREADS: usize = 4;

/// A write-out with at least this many bytes of new sealed chunks stages them with a bulk write
/// (around the write-ahead log, durable before the commit) instead of putting them in the
/// commit's batch, which would write them twice: log, then table files.
const BULK_MIN: usize = 8 << 20;

/// Largest file: 2^50 bytes (1 PiB).
const MAX_FILE_SIZE: u64 = 1 << 50;

/// A chunk index ready to commit: `None` for zeros (a hole), else its address, plaintext
/// length, and sealed bytes if it was not stored when hashed.
type Prepared = (u64, Option<(ChunkAddr, u32, Option<Vec<u8>>)>);

/// What one bulk write staged: its record's key, and (address, plaintext length, stored
/// length) of each chunk.
pub(crate) struct Staging {
    key: Vec<u8>,
    chunks: Vec<(ChunkAddr, u32, u32)>,
}

/// A file's times not committed yet: they go into the inode with the next write-out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct PendingTimes {
    mtime: Ts,
    atime: Option<Ts>,
    /// The change time, if set explicitly (else the commit takes the later of ctime and mtime).
    ctime: Option<Ts>,
}

impl PendingTimes {
    fn apply(&self, inode: &mut Inode) {
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
    dirty: BTreeMap<u64, Vec<u8>>,
    dirty_bytes: usize,
    /// The file's size including buffered writes (valid when `size_known`).
    size: u64,
    size_known: bool,
    /// Times the next write-out commits with the data (set by writes, and by setattr while a
    /// write-out is pending).
    times: Option<PendingTimes>,
    /// Write-outs run by threads that released the file's lock, oldest first: reads and partial
    /// writes see their chunks (after `dirty`, newest first) until they are committed, or merged
    /// back into `dirty` on failure.
    inflight: Vec<Arc<Batch>>,
    /// The order in which this file's write-outs commit (by ticket).
    order: Arc<Order>,
    /// The ticket of the next write-out.
    next_ticket: u64,
}

/// Write-outs of one file hash and seal in parallel but commit strictly in ticket order, so
/// newer data always lands after older.
#[derive(Default)]
pub(crate) struct Order {
    turn: Mutex<u64>,
    cv: parking_lot::Condvar,
}

impl Order {
    fn wait_turn(&self, ticket: u64) {
        let mut t = self.turn.lock();
        while *t != ticket {
            self.cv.wait(&mut t);
        }
    }
    fn wait_done(&self, ticket: u64) {
        let mut t = self.turn.lock();
        while *t <= ticket {
            self.cv.wait(&mut t);
        }
    }
    fn done(&self) {
        *self.turn.lock() += 1;
        self.cv.notify_all();
    }
}

/// At most this many write-outs of one file in flight (each holds up to the flush threshold).
const MAX_INFLIGHT: usize = 2;

/// Past the volume's budget for buffered data, a file holding this share of the budget
/// (1/PRESSED_SHARE) writes out at once.
const PRESSED_SHARE: usize = 64;

/// What a write-out stores: chunks by index, and the file's size and times with them.
struct FileData<'a> {
    chunks: &'a BTreeMap<u64, Vec<u8>>,
    size: u64,
    times: Option<PendingTimes>,
}

/// Marks a write-out's turn done when dropped (also on an early return or error).
struct Done<'a>(&'a Order);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.done();
    }
}

impl FileState {
    /// The newest buffered version of chunk `index`: the buffer, else the newest write-out in
    /// flight that has it.
    fn buffered(&self, index: u64) -> Option<&Vec<u8>> {
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
    ticket: u64,
    chunks: BTreeMap<u64, Vec<u8>>,
    size: u64,
    times: Option<PendingTimes>,
    /// `None` while the write-out runs; then its result.
    outcome: Mutex<Option<std::result::Result<(), String>>>,
}

/// `f` over `items` on up to `WORKER_THREADS` scoped threads (one core: in this thread), in
/// order; fewer than `min_parallel` items run in this thread too.
fn par_map<T: Sync, R: Send>(
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

impl Volume {
    fn state(&self, ino: u64) -> Arc<Mutex<FileState>> {
        self.files.lock().entry(ino).or_default().clone()
    }

    /// Is the inode still reachable without a name: open, or known to the kernel (looked up
    /// and not yet forgotten)? Lock order: a file's state, then the commit lock; the open and
    /// lookup maps are leaves, so this may be called inside a transaction.
    pub(crate) fn is_in_use(&self, ino: u64) -> bool {
        self.is_open(ino) || self.lookups.lock().get(&ino).copied().unwrap_or(0) > 0
    }

    /// Does some application hold `ino` open?
    pub(crate) fn is_open(&self, ino: u64) -> bool {
        self.opens.lock().get(&ino).copied().unwrap_or(0) > 0
    }

    /// The kernel now holds one more reference to `ino` (a lookup, create, mkdir, link, ...).
    pub fn remember(&self, ino: u64) {
        if ino != ROOT_INO {
            *self.lookups.lock().entry(ino).or_default() += 1;
        }
    }

    /// The kernel dropped `n` references to `ino`. An unlinked inode nobody holds is deleted.
    pub fn forget(&self, ino: u64, n: u64) -> Result<()> {
        match self.drop_lookups(ino, n) {
            true => self.purge_if_orphan(ino),
            false => Ok(()),
        }
    }

    /// Like [`Volume::forget`], but an inode to delete is queued for [`Volume::purge_deferred`]
    /// (which the mount calls every few milliseconds, and `sync_all` calls too), so that the
    /// thousands of forgets after an `rm -rf` are deleted many per transaction.
    pub fn forget_deferred(&self, ino: u64, n: u64) {
        if self.drop_lookups(ino, n) {
            self.deferred_purge.lock().push(ino);
        }
    }

    /// Count down the kernel's references to `ino`; true when none are left.
    fn drop_lookups(&self, ino: u64, n: u64) -> bool {
        let mut l = self.lookups.lock();
        let Some(c) = l.get_mut(&ino) else {
            return false;
        };
        *c = c.saturating_sub(n);
        if *c > 0 {
            return false;
        }
        l.remove(&ino);
        true
    }

    /// Delete the queued forgotten inodes that are unlinked and unused, [`PURGE_BATCH`] per
    /// transaction.
    pub fn purge_deferred(&self) -> Result<()> {
        loop {
            let inos = std::mem::take(&mut *self.deferred_purge.lock());
            if inos.is_empty() {
                return Ok(());
            }
            // A few per transaction: each holds the commit lock while it reads the inodes,
            // extents and reference counts it deletes, and an `rm -rf` waits behind it for
            // every unlink. Files too big for one transaction come back in the queue.
            for (i, some) in inos.chunks(PURGE_BATCH).enumerate() {
                if let Err(e) = self.purge_orphans_among(some) {
                    // Still orphans in the counters: retried here, and at the next open.
                    self.deferred_purge
                        .lock()
                        .extend_from_slice(&inos[i * PURGE_BATCH..]);
                    return Err(e);
                }
            }
        }
    }

    fn purge_if_orphan(&self, ino: u64) -> Result<()> {
        self.purge_orphans_among(&[ino])
    }

    /// Delete those of `inos` that are unlinked orphans nobody holds, in one transaction.
    fn purge_orphans_among(&self, inos: &[u64]) -> Result<()> {
        let any = {
            let c = self.commit.lock();
            inos.iter()
                .any(|i| c.counters.orphans.contains(i) && !self.is_in_use(*i))
        };
        if !any {
            return Ok(());
        }
        let mut t = self.begin();
        let mut unfinished = Vec::new();
        for &ino in inos {
            if !t.counters.orphans.contains(&ino) || self.is_in_use(ino) {
                continue;
            }
            if let Some(i) = t.inode(ino)? {
                if i.nlink == 0 && !self.purge_inode(&mut t, &i)? {
                    unfinished.push(ino);
                }
            }
        }
        t.commit(Durability::Process)?;
        // Files with more extents than one transaction deletes: the purger goes on with them.
        self.deferred_purge.lock().extend(unfinished);
        Ok(())
    }

    pub(crate) fn overlay_open_state(&self, inode: &mut Inode) {
        let st = self.files.lock().get(&inode.ino).cloned();
        if let Some(st) = st {
            let st = st.lock();
            if st.size_known {
                inode.size = st.size;
            }
            if let Some(t) = st.times {
                t.apply(inode);
            }
        }
    }

    /// Times set on a file whose next write-out is pending (it has buffered data, or times
    /// of its own): they go with that write-out, which a close, fsync or unmount makes happen,
    /// instead of a transaction now; `false` if there is no such write-out. (A crash before it
    /// loses these times with the data they describe.)
    pub(crate) fn set_pending_times(
        &self,
        ino: u64,
        atime: Option<Ts>,
        mtime: Option<Ts>,
        ctime: Ts,
    ) -> bool {
        let Some(st) = self.files.lock().get(&ino).cloned() else {
            return false;
        };
        let mut st = st.lock();
        let Some(t) = &mut st.times else {
            return false;
        };
        t.mtime = mtime.unwrap_or(t.mtime);
        t.atime = atime.or(t.atime);
        t.ctime = Some(t.ctime.map_or(ctime, |c| c.max(ctime)));
        true
    }

    /// A file was opened (counts opens, so an unlinked open file lives until its release).
    pub fn open_file(&self, ino: u64) -> Result<Inode> {
        let inode = self.read_inode(ino)?.ok_or(FsError::NotFound)?;
        *self.opens.lock().entry(ino).or_default() += 1;
        Ok(inode)
    }

    /// The last handle of one open went away: write out, and delete the file if it was
    /// unlinked meanwhile and no one else has it open.
    pub fn release_file(&self, ino: u64) -> Result<()> {
        let flushed = self.flush(ino);
        let last = {
            let mut opens = self.opens.lock();
            let n = opens.entry(ino).or_default();
            *n = n.saturating_sub(1);
            let last = *n == 0;
            if last {
                opens.remove(&ino);
            }
            last
        };
        if last {
            // Drop the file's buffer state only if it is clean and nobody opened the file again
            // meanwhile: a new opener increments the open count before its first write, so
            // checking the count under the map lock never retires a state someone writes into.
            let mut files = self.files.lock();
            let clean = files
                .get(&ino)
                .map(|s| {
                    let s = s.lock();
                    s.dirty.is_empty() && s.inflight.is_empty()
                })
                .unwrap_or(true);
            let reopened = self.opens.lock().get(&ino).copied().unwrap_or(0) > 0;
            if clean && !reopened && flushed.is_ok() {
                files.remove(&ino);
            }
            drop(files);
            self.purge_if_orphan(ino)?;
        }
        flushed
    }

    fn load_size(&self, ino: u64, st: &mut FileState) -> Result<()> {
        if !st.size_known {
            let i = self.read_inode(ino)?.ok_or(FsError::NotFound)?;
            if i.kind != Kind::File {
                return Err(FsError::IsDir);
            }
            st.size = i.size;
            st.size_known = true;
        }
        Ok(())
    }

    /// The stored plaintext of chunk `index` (without buffered writes): empty for holes.
    fn stored_chunk(&self, inode: &Inode, index: u64) -> Result<Plain> {
        match self.read_extent(inode.ino, index)? {
            Some(e) => {
                let c = self.load_chunk(inode.ino, &e.addr)?;
                self.check_chunk_len(inode.ino, index, c.len(), e.len)?;
                Ok(c)
            }
            None => self.no_extent(inode, index),
        }
    }

    /// A chunk opened whole must be as long as its extent says.
    fn check_chunk_len(&self, ino: u64, index: u64, got: usize, want: u32) -> Result<()> {
        if got != want as usize {
            return Err(self.corrupt(ino, format!("chunk {index} has the wrong length")));
        }
        Ok(())
    }

    /// Chunk `index` has no extent: a hole (empty), or damage if the file says it has data.
    fn no_extent(&self, inode: &Inode, index: u64) -> Result<Plain> {
        let n = self.cfg.chunk_size.count(inode.size);
        if index < n && !holes::contains(&inode.holes, index) {
            return Err(self.corrupt(inode.ino, format!("chunk {index} is missing")));
        }
        Ok(plain(Vec::new()))
    }

    pub fn read(&self, ino: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        let geo = self.cfg.chunk_size;
        // Hold the file's lock only to learn its size and copy buffered chunks: reads of the
        // stored chunks (decrypt + verify) then run in parallel with other reads and writes.
        let (file_size, buffered) = {
            let st = self.state(ino);
            let mut st = st.lock();
            self.load_size(ino, &mut st)?;
            let end = st.size.min(offset.saturating_add(size as u64));
            let mut buffered: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
            if !st.dirty.is_empty() || !st.inflight.is_empty() {
                for index in geo.indices(offset, end) {
                    if let Some(b) = st.buffered(index) {
                        buffered.insert(index, b.clone());
                    }
                }
            }
            (st.size, buffered)
        };
        if offset >= file_size {
            return Ok(Vec::new());
        }
        let end = file_size.min(offset + size as u64);
        // Filled in order, each chunk's bytes copied once into the reply: a stored chunk read
        // whole is decrypted in place there. What a chunk does not hold (a hole, or past a
        // short chunk's end) reads as zeros. Chunks are opened one after the other: the kernel
        // keeps several reads of a stream in flight (readahead), and those run in parallel.
        //
        // A read spanning several chunks is a stream (readahead, a copy, a scan): the kernel's
        // page cache keeps its plaintext (FOPEN_KEEP_CACHE), so its whole chunks are not copied
        // into ours, where they would only push out the segments that small reads rely on.
        let keep = geo.indices(offset, end).count() < 2;
        let mut out = Vec::with_capacity((end - offset) as usize);
        let mut inode = None;
        for Piece {
            index,
            at: in_chunk,
            len: take,
        } in geo.pieces(offset, end)
        {
            let start = out.len();
            match buffered.get(&index) {
                Some(b) => {
                    let n = b.len().saturating_sub(in_chunk).min(take);
                    if n > 0 {
                        out.extend_from_slice(&b[in_chunk..in_chunk + n]);
                    }
                }
                None => match self.read_extent(ino, index)? {
                    Some(e) if in_chunk == 0 && take >= e.len as usize => {
                        self.load_chunk_into(ino, &e.addr, &mut out, keep)?;
                        self.check_chunk_len(ino, index, out.len() - start, e.len)?;
                    }
                    Some(e) => {
                        let part =
                            self.load_chunk_range(ino, &e.addr, e.len, in_chunk..in_chunk + take)?;
                        out.extend_from_slice(&part);
                    }
                    None => {
                        if inode.is_none() {
                            inode = Some(self.read_inode(ino)?.ok_or(FsError::NotFound)?);
                        }
                        if let Some(i) = &inode {
                            self.no_extent(i, index)?;
                        }
                    }
                },
            }
            out.resize(start + take, 0);
        }
        Ok(out)
    }

    pub fn write(&self, ino: u64, offset: u64, data: &[u8]) -> Result<usize> {
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|e| *e <= MAX_FILE_SIZE)
            .ok_or(FsError::TooBig)?;
        let state = self.state(ino);
        let mut st = state.lock();
        self.load_size(ino, &mut st)?;
        let geo = self.cfg.chunk_size;
        let cs = geo.get() as usize;
        let mut inode: Option<Inode> = None;
        let fs: &mut FileState = &mut st;
        for piece in geo.pieces(offset, end) {
            let Piece { index, at, len } = piece;
            let from = (geo.start_of(index) + at as u64 - offset) as usize;
            let src = &data[from..from + len];
            let buf = match fs.dirty.entry(index) {
                std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::btree_map::Entry::Vacant(slot) => {
                    let base = if piece.is_whole(geo) {
                        Vec::with_capacity(cs)
                    } else if let Some(b) =
                        fs.inflight.iter().rev().find_map(|f| f.chunks.get(&index))
                    {
                        let mut v = Vec::with_capacity(cs);
                        v.extend_from_slice(b);
                        v
                    } else if geo.start_of(index) >= fs.size {
                        Vec::new()
                    } else {
                        let inode = match &inode {
                            Some(i) => i,
                            None => inode.insert(self.read_inode(ino)?.ok_or(FsError::NotFound)?),
                        };
                        let stored = self.stored_chunk(inode, index)?;
                        let mut v = Vec::with_capacity(cs);
                        v.extend_from_slice(&stored);
                        v
                    };
                    fs.dirty_bytes += cs;
                    self.buffered.fetch_add(cs, Ordering::Relaxed);
                    slot.insert(base)
                }
            };
            // Overwrite what the buffer holds, append the rest (appending without zero-filling
            // first: sequential writes would write every byte twice).
            if buf.len() < at {
                buf.resize(at, 0);
            }
            let overlap = (buf.len() - at).min(len);
            buf[at..at + overlap].copy_from_slice(&src[..overlap]);
            buf.extend_from_slice(&src[overlap..]);
        }
        st.size = st.size.max(end);
        let now = self.clock.now();
        st.times = Some(match st.times {
            Some(t) => PendingTimes { mtime: now, ..t },
            None => PendingTimes {
                mtime: now,
                atime: None,
                ctime: None,
            },
        });
        // Past the volume's budget for buffered data (many files written at once), every file
        // holding a PRESSED_SHARE-th of it writes out now instead of waiting for its own threshold.
        let budget = self.buffer_budget.load(Ordering::Relaxed);
        let pressed = self.buffered.load(Ordering::Relaxed) > budget
            && st.dirty_bytes >= budget / PRESSED_SHARE;
        if st.dirty_bytes >= self.flush_threshold || pressed {
            self.write_out_behind(ino, &state, st)?;
        }
        Ok(data.len())
    }

    /// Write out buffered data of `ino`.
    pub fn flush(&self, ino: u64) -> Result<()> {
        let st = self.files.lock().get(&ino).cloned();
        if let Some(st) = st {
            let mut st = st.lock();
            self.write_out(ino, &mut st, Durability::Process)?;
        }
        Ok(())
    }

    /// fsync(2): buffered data written out and the write-ahead log synced.
    pub fn fsync(&self, ino: u64) -> Result<()> {
        self.flush(ino)?;
        self.engine.sync()?;
        Ok(())
    }

    /// Write out the buffered chunks of `ino` now, after the write-outs in flight.
    fn write_out(&self, ino: u64, st: &mut FileState, durability: Durability) -> Result<()> {
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        let order = st.order.clone();
        // The write-outs in flight finish without this file's lock.
        order.wait_turn(ticket);
        let _done = Done(&order);
        self.settle(st);
        if st.dirty.is_empty() && st.times.is_none() {
            return Ok(());
        }
        let prepared = self.prepare_batch(&st.dirty, st.size)?;
        let data = FileData {
            chunks: &st.dirty,
            size: st.size,
            times: st.times,
        };
        let cached = self.commit_batch(ino, &data, prepared, durability)?;
        self.cache_written(std::mem::take(&mut st.dirty), &cached);
        self.buffered.fetch_sub(st.dirty_bytes, Ordering::Relaxed);
        st.dirty_bytes = 0;
        st.times = None;
        Ok(())
    }

    /// Write out a full buffer without holding the file's lock meanwhile, so that other
    /// requests keep filling a fresh buffer (and reading) while this one is hashed, sealed and
    /// committed; hashing and sealing even overlap the previous write-out's commit. At most
    /// [`MAX_INFLIGHT`] per file; the next one waits.
    fn write_out_behind(
        &self,
        ino: u64,
        state: &Arc<Mutex<FileState>>,
        mut st: parking_lot::MutexGuard<'_, FileState>,
    ) -> Result<()> {
        while st.inflight.len() >= MAX_INFLIGHT {
            let (order, oldest) = (st.order.clone(), st.inflight[0].ticket);
            order.wait_done(oldest);
            self.settle(&mut st);
        }
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        let batch = Arc::new(Batch {
            ticket,
            chunks: std::mem::take(&mut st.dirty),
            size: st.size,
            times: st.times,
            outcome: Mutex::new(None),
        });
        self.buffered.fetch_sub(st.dirty_bytes, Ordering::Relaxed);
        st.dirty_bytes = 0;
        st.inflight.push(batch.clone());
        let order = st.order.clone();
        drop(st);
        // Hashing, sealing and staging (chunks durable, referenced by nothing yet) need no
        // order: they overlap the previous batch. Only the commit waits for this batch's turn.
        let staged = self
            .prepare_batch(&batch.chunks, batch.size)
            .and_then(|mut p| {
                let s = self.stage_bulk(&mut p)?;
                Ok((p, s))
            });
        order.wait_turn(ticket);
        let data = FileData {
            chunks: &batch.chunks,
            size: batch.size,
            times: batch.times,
        };
        let r = staged.and_then(|(p, staging)| {
            let r = self.commit_write_out(ino, &data, p, staging.as_ref(), Durability::Process);
            if let Some(s) = staging {
                self.unstage(s, r.is_ok());
            }
            r
        });
        *batch.outcome.lock() = Some(r.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        order.done();
        self.settle(&mut state.lock());
        let cached = r?;
        if let Ok(b) = Arc::try_unwrap(batch) {
            self.cache_written(b.chunks, &cached);
        }
        Ok(())
    }

    /// Retire the finished write-outs in flight, oldest first: committed, they are dropped;
    /// failed, their chunks go back into the buffer (unless newer data for the same chunk is
    /// buffered or in flight) to be written out again, so nothing written is lost.
    fn settle(&self, st: &mut FileState) {
        while let Some(b) = st.inflight.first().cloned() {
            let outcome = b.outcome.lock().clone();
            match outcome {
                None => break,
                Some(Ok(())) => {
                    st.inflight.remove(0);
                }
                Some(Err(e)) => {
                    st.inflight.remove(0);
                    tracing::warn!(error = %e, "a write-out failed; its data stays buffered for the next one");
                    for (index, buf) in &b.chunks {
                        let newer = st.dirty.contains_key(index)
                            || st.inflight.iter().any(|n| n.chunks.contains_key(index));
                        if !newer {
                            st.dirty.insert(*index, buf.clone());
                            st.dirty_bytes += self.cfg.chunk_size.get() as usize;
                            (self.buffered)
                                .fetch_add(self.cfg.chunk_size.get() as usize, Ordering::Relaxed);
                        }
                    }
                    if st.times.is_none() {
                        st.times = b.times;
                    }
                }
            }
        }
    }

    /// The written-out plaintexts are verified by construction: keep them in the chunk cache,
    /// so the next partial write or read of these chunks needs no decrypt.
    fn cache_written(&self, chunks: BTreeMap<u64, Vec<u8>>, cached: &HashMap<u64, ChunkAddr>) {
        for (index, buf) in chunks {
            if let Some(addr) = cached.get(&index) {
                self.cache.put_whole(*addr, plain(buf));
            }
        }
    }

    /// Hash each chunk of a write-out and seal those not stored yet (outside any lock, on up
    /// to `WORKER_THREADS` threads).
    fn prepare_batch(&self, chunks: &BTreeMap<u64, Vec<u8>>, size: u64) -> Result<Vec<Prepared>> {
        let geo = self.cfg.chunk_size;
        let jobs: Vec<(u64, &[u8])> = chunks
            .iter()
            .map(|(&index, buf)| {
                // Bytes past the end of the file (after a truncate) are not data.
                let limit = geo.len_within(index, size);
                (index, &buf[..buf.len().min(limit)])
            })
            .collect();
        self.prepare_chunks(&jobs)
    }

    /// Store and commit a prepared write-out as the file's data, with the file's `size` and
    /// `mtime`. Returns the addresses of the chunks stored whole (to cache).
    fn commit_batch(
        &self,
        ino: u64,
        data: &FileData<'_>,
        mut prepared: Vec<Prepared>,
        durability: Durability,
    ) -> Result<HashMap<u64, ChunkAddr>> {
        let staging = self.stage_bulk(&mut prepared)?;
        let r = self.commit_write_out(ino, data, prepared, staging.as_ref(), durability);
        if let Some(s) = staging {
            self.unstage(s, r.is_ok());
        }
        r
    }

    fn commit_write_out(
        &self,
        ino: u64,
        data: &FileData<'_>,
        prepared: Vec<Prepared>,
        staging: Option<&Staging>,
        durability: Durability,
    ) -> Result<HashMap<u64, ChunkAddr>> {
        let FileData {
            chunks,
            size,
            times,
        } = *data;
        let geo = self.cfg.chunk_size;
        let mut t = self.begin();
        if let Some(s) = staging {
            for (addr, plain_len, stored_len) in &s.chunks {
                t.use_staged(*addr, *plain_len, *stored_len);
            }
            t.delete_meta(&s.key);
        }
        let staged_here =
            |a: &ChunkAddr| staging.is_some_and(|s| s.chunks.iter().any(|c| c.0 == *a));
        let mut inode = t.inode(ino)?.ok_or(FsError::NotFound)?;
        let old_n = geo.count(inode.size);
        let mut cached: HashMap<u64, ChunkAddr> = HashMap::new();
        for (index, p) in prepared {
            match p {
                None => {
                    t.del_extent(ino, index)?;
                    holes::add(&mut inode.holes, index, index + 1);
                }
                Some((addr, len, sealed)) => {
                    let sealed = match sealed {
                        Some(s) => Some(s),
                        None if staged_here(&addr) => None,
                        // Stored when we looked, but possibly released since: seal again.
                        None if self.read_ref(&addr)?.is_none() => {
                            let plain = &chunks[&index][..len as usize];
                            let tree = self.keys.chunk_addr.chunk_tree(plain);
                            Some(self.seal_chunk(&tree, plain)?)
                        }
                        None => None,
                    };
                    t.put_extent(ino, index, Extent { addr, len }, sealed)?;
                    holes::remove(&mut inode.holes, index);
                    if len as usize == chunks[&index].len() {
                        cached.insert(index, addr);
                    }
                }
            }
        }
        // Indices the file grows by and this write-out does not fill are holes: one range per
        // gap between written chunks, never one step per index (the file may grow by petabytes).
        let new_n = geo.count(size);
        let mut from = old_n;
        for &index in chunks.range(old_n..new_n).map(|(i, _)| i) {
            holes::add(&mut inode.holes, from, index);
            from = index + 1;
        }
        holes::add(&mut inode.holes, from.max(old_n), new_n);
        inode.size = size;
        if let Some(t) = times {
            t.apply(&mut inode);
        }
        t.put_inode(inode);
        t.commit(durability)?;
        Ok(cached)
    }

    /// Put a large write-out's new sealed chunks in the store now, with a bulk write, after a
    /// synced record of what is being staged (so a crash in between is cleaned up at the next
    /// open). Takes their sealed bytes out of `prepared`. `None`: too small, nothing staged.
    fn stage_bulk(&self, prepared: &mut [Prepared]) -> Result<Option<Staging>> {
        let bytes: usize = prepared
            .iter()
            .filter_map(|(_, p)| p.as_ref()?.2.as_ref().map(|s| s.len()))
            .sum();
        if bytes < BULK_MIN {
            return Ok(None);
        }
        let mut chunks: Vec<(ChunkAddr, u32, u32)> = Vec::new();
        let mut batch = WriteBatch::new();
        for (_, p) in prepared.iter_mut() {
            if let Some((addr, len, sealed)) = p {
                if let Some(s) = sealed.take() {
                    if !chunks.iter().any(|c| c.0 == *addr) {
                        chunks.push((*addr, *len, s.len() as u32));
                        batch.put(Cf::Chunks, addr.0.to_vec(), s);
                    }
                }
            }
        }
        let mut id = [0u8; 16];
        sealvol_crypto::random_bytes(&mut id)?;
        let staging = Staging {
            key: [META_STAGED, &id[..]].concat(),
            chunks,
        };
        {
            let mut g = self.staged.lock();
            for (a, _, _) in &staging.chunks {
                *g.entry(*a).or_default() += 1;
            }
        }
        let record = Staged {
            addrs: staging.chunks.iter().map(|c| c.0).collect(),
        };
        let r = (|| -> Result<()> {
            let mut wb = WriteBatch::new();
            let sealed = self.seal_meta(Domain::Staged, &staging.key, &record)?;
            wb.put(Cf::Meta, staging.key.clone(), sealed);
            self.engine.write(wb, Durability::Disk)?;
            self.engine.write_bulk(batch)?;
            Ok(())
        })();
        match r {
            Ok(()) => Ok(Some(staging)),
            Err(e) => {
                self.unstage(staging, false);
                Err(e)
            }
        }
    }

    /// A bulk write's transaction committed (or failed): its chunks are no longer staged. After
    /// a failure, the chunks that gained no reference are deleted with the record; if even that
    /// fails, the record stays and the next open does it.
    fn unstage(&self, s: Staging, committed: bool) {
        {
            let mut g = self.staged.lock();
            for (a, _, _) in &s.chunks {
                if let Some(n) = g.get_mut(a) {
                    *n -= 1;
                    if *n == 0 {
                        g.remove(a);
                    }
                }
            }
        }
        if !committed {
            let addrs: Vec<ChunkAddr> = s.chunks.iter().map(|c| c.0).collect();
            if let Err(e) = self.drop_unreferenced(&s.key, &addrs) {
                tracing::warn!(error = %e, "cleaning up after a failed bulk write failed; the next open retries");
            }
        }
    }

    /// Delete the chunks of `addrs` that have no reference and are not staged by another
    /// writer, and the staging record `key`, in one transaction.
    fn drop_unreferenced(&self, key: &[u8], addrs: &[ChunkAddr]) -> Result<()> {
        let mut t = self.begin();
        for a in addrs {
            if self.read_ref(a)?.is_none() && !self.staged.lock().contains_key(a) {
                t.delete_unreferenced_chunk(a);
            }
        }
        t.delete_meta(key);
        t.commit(Durability::Process)
    }

    /// At open: finish what interrupted bulk writes left (see [`Staged`]).
    pub(crate) fn recover_staged(&self) -> Result<()> {
        let mut found: Vec<(Vec<u8>, Staged)> = Vec::new();
        self.engine.for_each(Cf::Meta, META_STAGED, &mut |k, v| {
            let s: Staged = self
                .open_meta(Domain::Staged, k, v, 0)
                .map_err(|e| sealvol_store::StoreError::Corruption(e.to_string()))?;
            found.push((k.to_vec(), s));
            Ok(())
        })?;
        for (key, s) in found {
            tracing::info!(
                chunks = s.addrs.len(),
                "cleaning up a bulk write interrupted by a crash"
            );
            self.drop_unreferenced(&key, &s.addrs)?;
        }
        Ok(())
    }

    /// Hash each chunk, and seal those not stored yet. `None` marks a chunk of zeros (a hole).
    fn prepare_chunks(&self, jobs: &[(u64, &[u8])]) -> Result<Vec<Prepared>> {
        let one = |&(index, data): &(u64, &[u8])| -> Result<Prepared> {
            // Zeros read the same from a hole (bytes past a chunk's length read as zeros too).
            if data.iter().all(|b| *b == 0) {
                return Ok((index, None));
            }
            let tree = self.keys.chunk_addr.chunk_tree(data);
            let addr = tree.addr;
            let sealed = if self.read_ref(&addr)?.is_some() {
                None
            } else {
                Some(self.seal_chunk(&tree, data)?)
            };
            Ok((index, Some((addr, data.len() as u32, sealed))))
        };
        par_map(jobs, 4, one)
    }

    /// Change a file's size. Shrinking releases chunks past the end and cuts the last one;
    /// growing adds a hole.
    pub(crate) fn truncate(&self, ino: u64, size: u64) -> Result<()> {
        if size > MAX_FILE_SIZE {
            return Err(FsError::TooBig);
        }
        let st = self.state(ino);
        let mut st = st.lock();
        self.load_size(ino, &mut st)?;
        self.write_out(ino, &mut st, Durability::Process)?;
        let geo = self.cfg.chunk_size;
        let inode = self.read_inode(ino)?.ok_or(FsError::NotFound)?;
        // Cut the chunk that will hold the new end, before taking the commit lock.
        let mut cut: Option<(u64, ChunkAddr, Vec<u8>, u32)> = None;
        if size < inode.size && geo.offset_in(size) != 0 {
            let index = geo.index_of(size);
            let keep = geo.offset_in(size);
            let stored = self.stored_chunk(&inode, index)?;
            if stored.len() > keep {
                let data = &stored[..keep];
                let tree = self.keys.chunk_addr.chunk_tree(data);
                let addr = tree.addr;
                let sealed = self.seal_chunk(&tree, data)?;
                cut = Some((index, addr, sealed, keep as u32));
            }
        }
        let mut t: Txn<'_> = self.begin();
        let mut inode = t.inode(ino)?.ok_or(FsError::NotFound)?;
        let old_n = geo.count(inode.size);
        let new_n = geo.count(size);
        let gone: Vec<u64> = holes::data_indices(&inode.holes, new_n, old_n).collect();
        for index in gone {
            t.del_extent(ino, index)?;
        }
        holes::truncate(&mut inode.holes, new_n);
        if let Some((index, addr, sealed, len)) = cut {
            t.put_extent(ino, index, Extent { addr, len }, Some(sealed))?;
        }
        if new_n > old_n {
            holes::add(&mut inode.holes, old_n, new_n);
        }
        let now = self.clock.now();
        inode.size = size;
        inode.mtime = now;
        inode.ctime = now;
        t.put_inode(inode);
        t.commit(Durability::Process)?;
        st.size = size;
        st.size_known = true;
        Ok(())
    }
}
