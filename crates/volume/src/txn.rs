//! A transaction: every change of one filesystem operation, committed as one atomic batch with
//! its log entry, counters and reference counts. Transactions run one at a time (the commit
//! mutex); the expensive work (hashing, sealing chunk data) happens before one starts.

use std::collections::{BTreeMap, HashMap};

use parking_lot::MutexGuard;
use sealvol_crypto::{ChunkAddr, Domain};
use sealvol_store::{Aside, Cf, Durability, WriteBatch};

use crate::clock::hlc_next;
use crate::error::{FsError, Result};
use crate::records::{DirentId, ExtentId, InodeId, RefId};
use crate::schema::*;
use crate::volume::{CommitState, Volume};

/// A chunk a transaction may have to store: its address, plaintext length and sealed bytes.
pub(crate) type NewChunk = (ChunkAddr, u32, Vec<u8>);

pub(crate) struct Txn<'a> {
    vol: &'a Volume,
    guard: MutexGuard<'a, CommitState>,
    pub(crate) counters: Counters,
    batch: WriteBatch,
    ops: Vec<Op>,
    inodes: HashMap<u64, Option<Inode>>,
    /// Inodes this transaction writes or deletes (their new state is in `inodes`).
    written_inodes: Vec<u64>,
    /// Extents this transaction writes or deletes (their new state is in `extents`).
    written_extents: Vec<(u64, u64)>,
    /// A record that could not be sealed: the commit fails instead of writing without it.
    failed: Option<FsError>,
    dirents: HashMap<(u64, Vec<u8>), Option<Dirent>>,
    extents: HashMap<(u64, u64), Option<Extent>>,
    refs: BTreeMap<ChunkAddr, i64>,
    new_chunks: HashMap<ChunkAddr, (Vec<u8>, u32)>,
    /// Chunks a bulk write already put aside in the store: (plaintext length, stored length,
    /// the value to name if the chunk is not stored when this commits).
    staged_chunks: HashMap<ChunkAddr, (u32, u32, Aside)>,
}

impl Volume {
    pub(crate) fn begin(&self) -> Txn<'_> {
        let guard = self.commit.lock();
        let counters = guard.counters.clone();
        Txn {
            vol: self,
            guard,
            counters,
            batch: WriteBatch::new(),
            ops: Vec::new(),
            inodes: HashMap::new(),
            written_inodes: Vec::new(),
            written_extents: Vec::new(),
            failed: None,
            dirents: HashMap::new(),
            extents: HashMap::new(),
            refs: BTreeMap::new(),
            new_chunks: HashMap::new(),
            staged_chunks: HashMap::new(),
        }
    }
}

fn kind_counter(c: &mut Counters, kind: Kind) -> &mut u64 {
    match kind {
        Kind::File => &mut c.files,
        Kind::Dir => &mut c.dirs,
        _ => &mut c.others,
    }
}

impl<'a> Txn<'a> {
    pub(crate) fn inode(&mut self, ino: u64) -> Result<Option<Inode>> {
        if let Some(v) = self.inodes.get(&ino) {
            return Ok(v.clone());
        }
        let v = self.vol.read_inode(ino)?;
        self.inodes.insert(ino, v.clone());
        Ok(v)
    }

    pub(crate) fn put_inode(&mut self, inode: Inode) {
        let old = self.inode(inode.ino).ok().flatten();
        if let Some(o) = &old {
            *kind_counter(&mut self.counters, o.kind) -= 1;
            if o.kind == Kind::File {
                self.counters.logical_bytes -= o.size;
            }
        }
        *kind_counter(&mut self.counters, inode.kind) += 1;
        if inode.kind == Kind::File {
            self.counters.logical_bytes += inode.size;
        }
        match self.vol.seal_record(&InodeId(inode.ino), &inode) {
            Ok((key, s)) => self.batch.put(Cf::Inodes, key, s),
            Err(e) => {
                tracing::error!("sealing an inode record failed: {e}");
                self.failed.get_or_insert(e);
            }
        }
        self.ops.push(Op::PutInode(inode.clone()));
        self.written_inodes.push(inode.ino);
        self.inodes.insert(inode.ino, Some(inode));
    }

    pub(crate) fn del_inode(&mut self, ino: u64) -> Result<()> {
        if let Some(o) = self.inode(ino)? {
            *kind_counter(&mut self.counters, o.kind) -= 1;
            if o.kind == Kind::File {
                self.counters.logical_bytes -= o.size;
            }
        }
        self.batch
            .delete(Cf::Inodes, self.vol.inode_key(ino).to_vec());
        self.ops.push(Op::DelInode { ino });
        self.written_inodes.push(ino);
        self.inodes.insert(ino, None);
        Ok(())
    }

    pub(crate) fn dirent(&mut self, parent: u64, name: &[u8]) -> Result<Option<Dirent>> {
        let k = (parent, name.to_vec());
        if let Some(v) = self.dirents.get(&k) {
            return Ok(v.clone());
        }
        let v = self.vol.read_dirent(parent, name)?;
        self.dirents.insert(k, v.clone());
        Ok(v)
    }

    pub(crate) fn put_dirent(&mut self, parent: u64, d: Dirent) -> Result<()> {
        let (key, sealed) = self.vol.seal_record(&DirentId(parent, &d.name), &d)?;
        self.batch.put(Cf::Dirents, key, sealed);
        self.ops.push(Op::PutDirent {
            parent,
            dirent: d.clone(),
        });
        self.dirents.insert((parent, d.name.clone()), Some(d));
        Ok(())
    }

    pub(crate) fn del_dirent(&mut self, parent: u64, name: &[u8]) {
        let key = self.vol.dirent_key(parent, name);
        self.batch.delete(Cf::Dirents, key.to_vec());
        self.ops.push(Op::DelDirent {
            parent,
            name: name.to_vec(),
        });
        self.dirents.insert((parent, name.to_vec()), None);
    }

    pub(crate) fn extent(&mut self, ino: u64, index: u64) -> Result<Option<Extent>> {
        if let Some(v) = self.extents.get(&(ino, index)) {
            return Ok(v.clone());
        }
        let v = self.vol.read_extent(ino, index)?;
        self.extents.insert((ino, index), v.clone());
        Ok(v)
    }

    /// Point chunk `index` of `ino` at `extent`. `sealed` holds the sealed bytes of its slices'
    /// chunks that may not be stored yet: (address, plaintext length, sealed bytes).
    pub(crate) fn put_extent(
        &mut self,
        ino: u64,
        index: u64,
        extent: Extent,
        sealed: Vec<NewChunk>,
    ) -> Result<()> {
        let old = self.extent(ino, index)?;
        if old.as_ref() == Some(&extent) {
            return Ok(());
        }
        for s in old.iter().flat_map(|o| &o.slices) {
            *self.refs.entry(s.addr).or_default() -= 1;
        }
        for s in &extent.slices {
            *self.refs.entry(s.addr).or_default() += 1;
        }
        for (addr, len, bytes) in sealed {
            self.new_chunks.insert(addr, (bytes, len));
        }
        let (key, sealed_ext) = self.vol.seal_record(&ExtentId(ino, index), &extent)?;
        self.batch.put(Cf::Extents, key, sealed_ext);
        self.ops.push(Op::PutExtent {
            ino,
            index,
            extent: extent.clone(),
        });
        self.extents.insert((ino, index), Some(extent));
        self.written_extents.push((ino, index));
        Ok(())
    }

    /// Point chunk `index` of `ino` at one whole chunk (sealed bytes given, in case it is new).
    pub(crate) fn put_whole_extent(&mut self, ino: u64, index: u64, chunk: NewChunk) -> Result<()> {
        let extent = Extent::whole(chunk.0, chunk.1);
        self.put_extent(ino, index, extent, vec![chunk])
    }

    pub(crate) fn del_extent(&mut self, ino: u64, index: u64) -> Result<()> {
        if let Some(o) = self.extent(ino, index)? {
            for s in &o.slices {
                *self.refs.entry(s.addr).or_default() -= 1;
            }
            self.batch
                .delete(Cf::Extents, self.vol.extent_key(ino, index).to_vec());
            self.ops.push(Op::DelExtent { ino, index });
            self.extents.insert((ino, index), None);
            self.written_extents.push((ino, index));
        }
        Ok(())
    }

    /// Chunk `addr` was put aside in the store by a bulk write: a reference to it needs no
    /// sealed bytes, only the aside value named (if the chunk is not stored when this commits).
    pub(crate) fn use_staged(
        &mut self,
        addr: ChunkAddr,
        plain_len: u32,
        stored_len: u32,
        aside: Aside,
    ) {
        self.staged_chunks
            .insert(addr, (plain_len, stored_len, aside));
    }

    /// A fresh inode number: the counter's next one that no inode holds. The counter alone is
    /// not trusted: a rolled-back `counters` record (an old copy of the store's files, or a
    /// tampered one) would otherwise hand out the number of a live inode, and the create would
    /// overwrite it while other entries still point to it.
    pub(crate) fn alloc_ino(&mut self) -> Result<u64> {
        loop {
            let n = self.counters.next_ino.max(2);
            self.counters.next_ino = n + 1;
            let ino = ((self.vol.cfg.host_tag as u64) << 40) | n;
            if self.inode(ino)?.is_none() {
                return Ok(ino);
            }
            tracing::warn!(
                ino,
                "inode number counter was behind a live inode (counters record rolled back?); skipping"
            );
        }
    }

    /// Apply reference-count changes, append the log entry, write everything atomically.
    pub(crate) fn commit(mut self, durability: Durability) -> Result<()> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let refs = std::mem::take(&mut self.refs);
        for (addr, delta) in refs {
            if delta == 0 {
                continue;
            }
            let old = self.vol.read_ref(&addr)?;
            let old_count = old.map(|r| r.count).unwrap_or(0) as i64;
            let new_count = old_count + delta;
            let (plain_len, stored_len) = match (old, self.new_chunks.get(&addr)) {
                (Some(r), _) if r.count > 0 => (r.plain_len, r.stored_len),
                (_, Some((sealed, len))) => (*len, sealed.len() as u32),
                (_, None) if self.staged_chunks.contains_key(&addr) => {
                    let (plain, stored, _) = &self.staged_chunks[&addr];
                    (*plain, *stored)
                }
                (_, None) => {
                    return Err(self.vol.corrupt(
                        0,
                        format!(
                            "chunk {addr} gains a reference but is neither stored nor supplied"
                        ),
                    ))
                }
            };
            if new_count < 0 {
                return Err(self.vol.corrupt(
                    0,
                    format!("chunk {addr}: reference count would drop below zero"),
                ));
            }
            let c = &mut self.counters;
            if delta > 0 {
                c.referenced_bytes += plain_len as u64 * delta as u64;
            } else {
                c.referenced_bytes = c
                    .referenced_bytes
                    .saturating_sub(plain_len as u64 * (-delta) as u64);
            }
            if old_count == 0 && new_count > 0 {
                match self.new_chunks.remove(&addr) {
                    Some((sealed, _)) => self.batch.put(Cf::Chunks, addr.0.to_vec(), sealed),
                    // Put aside in the store by a bulk write: named now.
                    None if self.staged_chunks.contains_key(&addr) => {
                        let (_, _, aside) = &self.staged_chunks[&addr];
                        self.batch.put_chunk_aside(addr.0.to_vec(), aside);
                    }
                    None => {
                        return Err(self.vol.corrupt(
                            0,
                            format!("chunk {addr} is not stored and was not supplied"),
                        ))
                    }
                }
                c.chunks += 1;
                c.chunk_plain_bytes += plain_len as u64;
                c.chunk_stored_bytes += stored_len as u64;
            }
            if new_count == 0 {
                c.chunks = c.chunks.saturating_sub(1);
                c.chunk_plain_bytes = c.chunk_plain_bytes.saturating_sub(plain_len as u64);
                c.chunk_stored_bytes = c.chunk_stored_bytes.saturating_sub(stored_len as u64);
                // (A bulk write that put the same chunk aside names its own copy when it
                // commits.)
                self.batch.delete(Cf::Chunks, addr.0.to_vec());
                self.batch.delete(Cf::Refs, addr.0.to_vec());
            } else {
                let r = RefCount {
                    count: new_count as u64,
                    plain_len,
                    stored_len,
                };
                let (key, s) = self.vol.seal_record(&RefId(&addr), &r)?;
                self.batch.put(Cf::Refs, key, s);
            }
        }
        let logged = !self.ops.is_empty();
        if logged {
            let hlc = hlc_next(self.counters.last_hlc, self.vol.clock.now());
            self.counters.last_hlc = hlc;
            let entry = LogEntry {
                hlc,
                origin: self.vol.cfg.host_tag,
                ops: std::mem::take(&mut self.ops),
            };
            self.vol.put_log_entry(&mut self.batch, &entry)?;
        }
        let sealed = self
            .vol
            .seal_meta(Domain::Counters, META_COUNTERS, &self.counters)?;
        self.batch.put(Cf::Meta, META_COUNTERS.to_vec(), sealed);
        let batch = std::mem::take(&mut self.batch);
        self.vol.engine.write(batch, durability)?;
        let inodes = &self.inodes;
        self.vol.inodes.apply(
            self.written_inodes
                .iter()
                .map(|ino| (*ino, inodes.get(ino).and_then(|i| i.as_ref()))),
        );
        let extents = &self.extents;
        self.vol.extents.apply(
            self.written_extents
                .iter()
                .map(|k| (*k, extents.get(k).and_then(|e| e.as_ref()))),
        );
        self.guard.counters = std::mem::take(&mut self.counters);
        if let Some(n) = &mut self.guard.log_len {
            *n += u64::from(logged);
        }
        Ok(())
    }
}
