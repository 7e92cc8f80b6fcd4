//! File data: chunked reads and buffered writes.
//!
//! A file is cut into fixed-size chunks at offsets `index * chunk_size`. Writes go into a
//! per-file buffer of whole chunks; the buffer is written out (hashed, sealed, committed in one
//! batch) when it passes the flush threshold, on `flush` (every close), `fsync` and `release`.
//! Reads see buffered data first. A chunk of zeros becomes a hole, not a stored chunk.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::Mutex;
use sealvol_store::Durability;

use crate::cache::{plain, Plain};
use crate::error::{FsError, Result};
use crate::geometry::Piece;
use crate::holes;
use crate::schema::*;
use crate::txn::Txn;
use crate::volume::Volume;

use crate::filestate::*;

impl Volume {
    pub(crate) fn state(&self, ino: u64) -> Arc<Mutex<FileState>> {
        self.files.lock().entry(ino).or_default().clone()
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

    pub(crate) fn load_size(&self, ino: u64, st: &mut FileState) -> Result<()> {
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
    pub(crate) fn stored_chunk(&self, inode: &Inode, index: u64) -> Result<Plain> {
        match self.read_extent(inode.ino, index)? {
            Some(e) => self.chunk_plain(inode.ino, index, &e),
            None => self.no_extent(inode, index),
        }
    }

    /// The plaintext of a stored chunk: its slices laid over each other.
    pub(crate) fn chunk_plain(&self, ino: u64, index: u64, e: &Extent) -> Result<Plain> {
        if let Some(addr) = e.whole_addr() {
            let c = self.load_chunk(ino, &addr)?;
            self.check_chunk_len(ino, index, c.len(), e.len())?;
            return Ok(c);
        }
        let mut out = vec![0u8; e.len() as usize];
        for s in &e.slices {
            let c = self.load_chunk(ino, &s.addr)?;
            self.check_chunk_len(ino, index, c.len(), s.len)?;
            out[s.at as usize..s.end() as usize].copy_from_slice(&c);
        }
        Ok(plain(out))
    }

    /// Bytes `range` of stored chunk `index` appended to `out` (zeros where no slice has
    /// data, and past the chunk's end); `keep`: see [`Volume::load_chunk_into`].
    fn read_stored(
        &self,
        ino: u64,
        index: u64,
        e: &Extent,
        range: std::ops::Range<usize>,
        out: &mut Vec<u8>,
        keep: bool,
    ) -> Result<()> {
        let start = out.len();
        match e.whole_addr() {
            Some(addr) if range.start == 0 && range.end >= e.len() as usize => {
                self.load_chunk_into(ino, &addr, out, keep)?;
                self.check_chunk_len(ino, index, out.len() - start, e.len())?;
            }
            Some(addr) => {
                out.extend_from_slice(&self.load_chunk_range(
                    ino,
                    &addr,
                    e.len(),
                    range.clone(),
                )?);
            }
            None => {
                out.resize(start + range.len(), 0);
                for s in &e.slices {
                    let (lo, hi) = (
                        range.start.max(s.at as usize),
                        range.end.min(s.end() as usize),
                    );
                    if lo < hi {
                        let at = s.at as usize;
                        let part = self.load_chunk_range(ino, &s.addr, s.len, lo - at..hi - at)?;
                        if part.len() != hi - lo {
                            return Err(
                                self.corrupt(ino, format!("chunk {index}: a slice is short"))
                            );
                        }
                        out[start + lo - range.start..start + hi - range.start]
                            .copy_from_slice(&part);
                    }
                }
            }
        }
        out.resize(start + range.len(), 0);
        Ok(())
    }

    /// A chunk opened whole must be as long as its extent says.
    pub(crate) fn check_chunk_len(
        &self,
        ino: u64,
        index: u64,
        got: usize,
        want: u32,
    ) -> Result<()> {
        if got != want as usize {
            return Err(self.corrupt(ino, format!("chunk {index} has the wrong length")));
        }
        Ok(())
    }

    /// Chunk `index` has no extent: a hole (empty), or damage if the file says it has data.
    pub(crate) fn no_extent(&self, inode: &Inode, index: u64) -> Result<Plain> {
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
            let mut buffered: BTreeMap<u64, ChunkBuf> = BTreeMap::new();
            if !st.dirty.is_empty() || !st.inflight.is_empty() {
                for index in geo.indices(offset, end) {
                    if let Some(b) = st.buffered(index) {
                        buffered.insert(index, b);
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
            let range = in_chunk..in_chunk + take;
            let buf = buffered.get(&index);
            // A buffered whole chunk replaces what is stored; patches are laid over it.
            if !matches!(buf, Some(ChunkBuf::Whole(_))) {
                match self.read_extent(ino, index)? {
                    Some(e) => self.read_stored(ino, index, &e, range.clone(), &mut out, keep)?,
                    None => {
                        if inode.is_none() {
                            inode = Some(self.read_inode(ino)?.ok_or(FsError::NotFound)?);
                        }
                        if let Some(i) = &inode {
                            self.no_extent(i, index)?;
                        }
                    }
                }
            }
            out.resize(start + take, 0);
            if let Some(b) = buf {
                b.overlay(range, &mut out[start..]);
            }
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
        let mut inode: Option<Inode> = None;
        let fs: &mut FileState = &mut st;
        for piece in geo.pieces(offset, end) {
            let Piece { index, at, len } = piece;
            let from = (geo.start_of(index) + at as u64 - offset) as usize;
            let src = &data[from..from + len];
            let fresh = !fs.dirty.contains_key(&index);
            let buf = fs.dirty.entry(index).or_insert_with(|| {
                // A chunk written whole, or one past the file's end (nothing stored or in
                // flight there), is buffered whole; a part of one with data becomes a patch
                // laid over it at write-out (no read of the stored chunk, no rewrite of it).
                if piece.is_whole(geo) || geo.start_of(index) >= fs.size {
                    ChunkBuf::Whole(Vec::with_capacity(geo.get() as usize))
                } else {
                    ChunkBuf::Patches(BTreeMap::new())
                }
            });
            let before = if fresh { 0 } else { buf.bytes() };
            buf.write(at, src);
            // A chunk written in many places is cheaper to write out whole (once, from the
            // stored chunk and everything buffered over it) than as as many slices.
            if buf.is_fragmented(geo.get() as usize) {
                let inode = match &inode {
                    Some(i) => i,
                    None => inode.insert(self.read_inode(ino)?.ok_or(FsError::NotFound)?),
                };
                let mut whole = ChunkBuf::Whole(self.stored_chunk(inode, index)?.to_vec());
                for layer in fs.inflight.iter().filter_map(|b| b.chunks.get(&index)) {
                    whole = whole.compose(layer);
                }
                if let Some(b) = fs.dirty.get_mut(&index) {
                    *b = whole.compose(b);
                }
            }
            let after = fs.dirty.get(&index).map_or(0, ChunkBuf::bytes);
            fs.dirty_bytes = (fs.dirty_bytes + after).saturating_sub(before);
            self.buffered.fetch_add(after, Ordering::Relaxed);
            self.buffered.fetch_sub(before, Ordering::Relaxed);
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
        if st.dirty_bytes >= self.flush_threshold_now(&st) || pressed {
            self.write_out_behind(ino, &state, st)?;
        }
        Ok(data.len())
    }

    /// The flush threshold of a file now: a [`THRESHOLD_SHARE`]-th of the write share less what
    /// other files' buffers and write-outs hold (room for its buffer and its write-outs in
    /// flight, plaintext and sealed), within [`MIN_FLUSH_THRESHOLD`] and the volume's threshold.
    /// A file written alone gets a fifth of the share; many written at once get less each,
    /// instead of each buffering a fixed amount.
    pub(crate) fn flush_threshold_now(&self, st: &FileState) -> usize {
        let own_writing: usize = st.inflight.iter().map(|b| b.charge).sum();
        let others = self
            .buffered
            .load(Ordering::Relaxed)
            .saturating_sub(st.dirty_bytes)
            + self
                .writing
                .load(Ordering::Relaxed)
                .saturating_sub(own_writing);
        let free = self
            .write_budget
            .load(Ordering::Relaxed)
            .saturating_sub(others);
        (free / THRESHOLD_SHARE).clamp(
            MIN_FLUSH_THRESHOLD,
            self.flush_threshold.max(MIN_FLUSH_THRESHOLD),
        )
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
        let mut cut: Option<(u64, crate::txn::NewChunk)> = None;
        if size < inode.size && geo.offset_in(size) != 0 {
            let index = geo.index_of(size);
            let keep = geo.offset_in(size);
            let stored = self.stored_chunk(&inode, index)?;
            if stored.len() > keep {
                cut = Some((index, self.seal_new_chunk(&stored[..keep])?));
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
        if let Some((index, chunk)) = cut {
            t.put_whole_extent(ino, index, chunk)?;
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
