//! Write-out: a file's buffered chunks hashed and sealed (outside any lock, in parallel), large
//! batches staged into the store ahead of their transaction, and the transaction that points
//! the file at them. Write-outs of one file commit in the order they were started.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::Mutex;
use sealvol_crypto::ChunkAddr;
use sealvol_store::Durability;

use crate::cache::plain;
use crate::error::{FsError, Result};
use crate::filestate::*;
use crate::holes;
use crate::schema::*;
use crate::txn::NewChunk;
use crate::volume::Volume;

impl Volume {
    /// Write out the buffered chunks of `ino` now, after the write-outs in flight.
    pub(crate) fn write_out(
        &self,
        ino: u64,
        st: &mut FileState,
        durability: Durability,
    ) -> Result<()> {
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
        let written = self.commit_batch(ino, &data, prepared, durability)?;
        self.cache_written(std::mem::take(&mut st.dirty), &written.cached);
        self.compact(ino, &written.fragmented);
        self.buffered.fetch_sub(st.dirty_bytes, Ordering::Relaxed);
        st.dirty_bytes = 0;
        st.times = None;
        Ok(())
    }

    /// Write out a full buffer without holding the file's lock meanwhile, so that other
    /// requests keep filling a fresh buffer (and reading) while this one is hashed, sealed and
    /// committed; hashing and sealing even overlap the previous write-out's commit. At most
    /// [`MAX_INFLIGHT`] per file; the next one waits.
    pub(crate) fn write_out_behind(
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
        let charge = 2 * st.dirty_bytes;
        self.wait_for_room(st.dirty_bytes);
        self.writing.fetch_add(charge, Ordering::Relaxed);
        // Given back when the write-out is done, or if this thread unwinds before that (a
        // charge never given back would make every later writer wait).
        let room = Room::held(self, charge);
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        let batch = Arc::new(Batch {
            ticket,
            chunks: std::mem::take(&mut st.dirty),
            size: st.size,
            times: st.times,
            charge,
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
            self.commit_write_out(ino, &data, p, staging.as_ref(), Durability::Process)
        });
        *batch.outcome.lock() = Some(r.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        order.done();
        // Its room goes back before the file's lock is taken: a writer waiting for room may
        // hold that lock.
        drop(room);
        self.settle(&mut state.lock());
        let written = r?;
        if let Ok(b) = Arc::try_unwrap(batch) {
            self.cache_written(b.chunks, &written.cached);
        }
        self.compact(ino, &written.fragmented);
        Ok(())
    }

    /// Wait, if need be, until the write share has room for a write-out of a `dirty`-byte buffer:
    /// charged twice that (plaintext and sealed) in place of the buffer, it must fit beside the
    /// write-outs in flight and all files' buffers, unless none is in flight (a write-out always
    /// starts when nothing else can make room). Called with the file's lock held: write-outs in
    /// flight give their room back before they take their file's lock.
    pub(crate) fn wait_for_room(&self, dirty: usize) {
        let fits = || {
            let writing = self.writing.load(Ordering::Relaxed);
            let buffered = self.buffered.load(Ordering::Relaxed);
            writing == 0
                || writing + 2 * dirty + buffered.saturating_sub(dirty)
                    <= self.write_budget.load(Ordering::Relaxed)
        };
        if fits() {
            return;
        }
        let mut waiting = self.room.waiting.lock();
        *waiting += 1;
        while !fits() {
            // (Woken by `release_room`, which takes this lock to notify; the timeout only
            // re-checks the buffers, which change without notice.)
            self.room
                .cv
                .wait_for(&mut waiting, std::time::Duration::from_millis(50));
        }
        *waiting -= 1;
    }

    /// A write-out is done (committed or failed): its charge goes back to the write share.
    pub(crate) fn release_room(&self, charge: usize) {
        self.writing.fetch_sub(charge, Ordering::Relaxed);
        let _g = self.room.waiting.lock();
        self.room.cv.notify_all();
    }

    /// Retire the finished write-outs in flight, oldest first: committed, they are dropped;
    /// failed, their chunks go back into the buffer (unless newer data for the same chunk is
    /// buffered or in flight) to be written out again, so nothing written is lost.
    pub(crate) fn settle(&self, st: &mut FileState) {
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
                    // Back into the buffer, under what was written since (the write-outs
                    // still in flight and the buffer), so a newer byte always wins.
                    for (index, buf) in &b.chunks {
                        let newer = st.inflight.iter().filter_map(|n| n.chunks.get(index));
                        let mut merged = buf.clone();
                        for n in newer {
                            merged = merged.compose(n);
                        }
                        let old = st.dirty.remove(index);
                        let freed = old.as_ref().map_or(0, ChunkBuf::bytes);
                        if let Some(d) = &old {
                            merged = merged.compose(d);
                        }
                        let added = merged.bytes();
                        st.dirty.insert(*index, merged);
                        st.dirty_bytes = (st.dirty_bytes + added).saturating_sub(freed);
                        self.buffered.fetch_add(added, Ordering::Relaxed);
                        self.buffered.fetch_sub(freed, Ordering::Relaxed);
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
    pub(crate) fn cache_written(&self, chunks: BTreeMap<u64, ChunkBuf>, cached: &Cached) {
        let put = |key: (u64, Option<u32>), b: Vec<u8>| {
            if let Some((addr, len)) = cached.get(&key) {
                if b.len() == *len as usize {
                    self.cache.put_whole(*addr, plain(b));
                }
            }
        };
        for (index, buf) in chunks {
            match buf {
                ChunkBuf::Whole(b) => put((index, None), b),
                ChunkBuf::Patches(p) => {
                    for (at, b) in p {
                        // (A patch from 0 over the whole chunk was written out as the chunk.)
                        let whole = at == 0 && cached.contains_key(&(index, None));
                        put((index, if whole { None } else { Some(at) }), b);
                    }
                }
            }
        }
    }

    /// Hash each chunk of a write-out and seal those not stored yet (outside any lock, on up
    /// to `WORKER_THREADS` threads).
    pub(crate) fn prepare_batch(
        &self,
        chunks: &BTreeMap<u64, ChunkBuf>,
        size: u64,
    ) -> Result<Vec<Prepared>> {
        let geo = self.cfg.chunk_size;
        let mut jobs: Vec<Job<'_>> = Vec::new();
        for (&index, buf) in chunks {
            // Bytes past the end of the file (after a truncate) are not data.
            let limit = geo.len_within(index, size);
            match buf {
                ChunkBuf::Whole(b) => jobs.push((index, None, &b[..b.len().min(limit)])),
                // One patch from 0 over every byte the file has there replaces the chunk.
                ChunkBuf::Patches(p)
                    if p.len() == 1 && p.get(&0).is_some_and(|b| b.len() >= limit) =>
                {
                    if let Some(b) = p.get(&0) {
                        jobs.push((index, None, &b[..limit]));
                    }
                }
                ChunkBuf::Patches(p) => {
                    for (&at, b) in p.range(..limit as u32) {
                        let n = b.len().min(limit - at as usize);
                        jobs.push((index, Some(at), &b[..n]));
                    }
                }
            }
        }
        self.prepare_chunks(&jobs)
    }

    /// Store and commit a prepared write-out as the file's data, with the file's `size` and
    /// `mtime`.
    pub(crate) fn commit_batch(
        &self,
        ino: u64,
        data: &FileData<'_>,
        mut prepared: Vec<Prepared>,
        durability: Durability,
    ) -> Result<Written> {
        let staging = self.stage_bulk(&mut prepared)?;
        self.commit_write_out(ino, data, prepared, staging.as_ref(), durability)
    }

    pub(crate) fn commit_write_out(
        &self,
        ino: u64,
        data: &FileData<'_>,
        prepared: Vec<Prepared>,
        staging: Option<&Staging>,
        durability: Durability,
    ) -> Result<Written> {
        let FileData {
            chunks,
            size,
            times,
        } = *data;
        let geo = self.cfg.chunk_size;
        let mut t = self.begin();
        if let Some(s) = staging {
            for (addr, plain_len, stored_len, aside) in &s.chunks {
                t.use_staged(*addr, *plain_len, *stored_len, aside.clone());
            }
        }
        let staged_here =
            |a: &ChunkAddr| staging.is_some_and(|s| s.chunks.iter().any(|c| c.0 == *a));
        let mut inode = t.inode(ino)?.ok_or(FsError::NotFound)?;
        let old_n = geo.count(inode.size);
        let mut written = Written::default();
        // Pieces come by index, a chunk's slices by offset: one extent per run of one index.
        let mut pieces = prepared.into_iter().peekable();
        while let Some(first) = pieces.next() {
            let index = first.index;
            let mut run = vec![first];
            while let Some(p) = pieces.next_if(|p| p.index == index) {
                run.push(p);
            }
            let mut extent = match run[0].at {
                None => None,
                Some(_) => Some(
                    t.extent(ino, index)?
                        .unwrap_or(Extent { slices: Vec::new() }),
                ),
            };
            let mut new: Vec<NewChunk> = Vec::new();
            for Prepared { at, chunk, .. } in run {
                let Some(SealedPiece { addr, len, sealed }) = chunk else {
                    // A whole chunk of zeros: a hole.
                    t.del_extent(ino, index)?;
                    holes::add(&mut inode.holes, index, index + 1);
                    continue;
                };
                let sealed = match sealed {
                    Some(s) => Some(s),
                    None if staged_here(&addr) => None,
                    // Stored when we looked, but possibly released since: seal again.
                    None if self.read_ref(&addr)?.is_none() => {
                        let plain = piece_plain(&chunks[&index], at, len);
                        let tree = self.keys.chunk_addr.chunk_tree(plain);
                        Some(self.seal_chunk(&tree, plain)?)
                    }
                    None => None,
                };
                new.extend(sealed.map(|s| (addr, len, s)));
                written.cached.insert((index, at), (addr, len));
                match (&mut extent, at) {
                    (Some(e), Some(at)) => e.add(Slice { at, len, addr }),
                    _ => extent = Some(Extent::whole(addr, len)),
                }
            }
            if let Some(e) = extent {
                if e.slices.len() > MAX_SLICES {
                    written.fragmented.push(index);
                }
                t.put_extent(ino, index, e, new)?;
                holes::remove(&mut inode.holes, index);
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
        Ok(written)
    }

    /// Put a large write-out's new sealed chunks aside in the store now, durably, before its
    /// transaction (which then names them: [`sealvol_store::Engine::put_aside`]). Takes their
    /// sealed bytes out of `prepared`. `None`: too small, nothing put aside. A crash or failure
    /// before the transaction leaves only unnamed values, which the store reclaims itself.
    pub(crate) fn stage_bulk(&self, prepared: &mut [Prepared]) -> Result<Option<Staging>> {
        let bytes: usize = prepared
            .iter()
            .filter_map(|p| p.chunk.as_ref()?.sealed.as_ref().map(Vec::len))
            .sum();
        if bytes < BULK_MIN {
            return Ok(None);
        }
        let mut chunks: Vec<(ChunkAddr, u32, u32)> = Vec::new();
        let mut values = Vec::new();
        for p in prepared.iter_mut() {
            if let Some(SealedPiece { addr, len, sealed }) = &mut p.chunk {
                if let Some(s) = sealed.take() {
                    if !chunks.iter().any(|c| c.0 == *addr) {
                        chunks.push((*addr, *len, s.len() as u32));
                        values.push(s);
                    }
                }
            }
        }
        let asides = self.engine.put_aside(values)?;
        Ok(Some(Staging {
            chunks: chunks
                .into_iter()
                .zip(asides)
                .map(|((addr, plain, stored), aside)| (addr, plain, stored, aside))
                .collect(),
        }))
    }

    /// Hash each piece, and seal those not stored yet. A whole chunk of zeros is a hole (`chunk:
    /// None`); a slice of zeros is data (it hides what lies under it).
    pub(crate) fn prepare_chunks(&self, jobs: &[Job<'_>]) -> Result<Vec<Prepared>> {
        let one = |&(index, at, data): &Job<'_>| -> Result<Prepared> {
            // Zeros read the same from a hole (bytes past a chunk's length read as zeros too).
            if at.is_none() && data.iter().all(|b| *b == 0) {
                return Ok(Prepared {
                    index,
                    at,
                    chunk: None,
                });
            }
            let tree = self.keys.chunk_addr.chunk_tree(data);
            let addr = tree.addr;
            let sealed = if self.read_ref(&addr)?.is_some() {
                None
            } else {
                Some(self.seal_chunk(&tree, data)?)
            };
            let len = data.len() as u32;
            Ok(Prepared {
                index,
                at,
                chunk: Some(SealedPiece { addr, len, sealed }),
            })
        };
        par_map(jobs, WORKER_THREADS, one)
    }
}

/// The plaintext of one piece of a write-out: chunk buffer `buf` whole (`at: None`, as far as
/// `len`), or its patch at `at`.
fn piece_plain(buf: &ChunkBuf, at: Option<u32>, len: u32) -> &[u8] {
    let b = match (buf, at) {
        (ChunkBuf::Whole(b), _) => Some(b),
        (ChunkBuf::Patches(p), at) => p.get(&at.unwrap_or(0)),
    };
    b.map_or(&[][..], |b| &b[..(len as usize).min(b.len())])
}
