//! Rebuilding metadata from the operation log, and a canonical dump of the tree to compare
//! replicas with.
//!
//! The log is keyed by (hybrid logical clock, origin), so however entries arrive, a replica
//! stores them in one order; each operation sets or removes one record, so applying them in that
//! order yields the same metadata everywhere. (Resolving *concurrent* edits from several hosts is
//! the sync layer's job; this is the substrate it replays.)

use std::collections::BTreeMap;

use sealvol_store::{Cf, Durability, WriteBatch};

use crate::error::{FsError, Result};
use crate::holes;

/// Directory entries `dump` reads per page.
const DUMP_PAGE: usize = 1024;
use crate::records::{DirentId, ExtentId, InodeId, RefId};
use crate::schema::*;
use crate::volume::Volume;

/// One file in a canonical dump: everything but times that the log does not order.
#[derive(Clone, Debug, PartialEq)]
pub struct DumpEntry {
    pub kind: Kind,
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub size: u64,
    pub target: Vec<u8>,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    pub extents: Vec<(u64, Extent)>,
    pub holes: Vec<(u64, u64)>,
}

impl Volume {
    /// Store log entries (from this or another replica of the same volume) and apply their
    /// operations to the metadata. Reference counts are not touched: call
    /// [`Volume::rebuild_refcounts`] after a replay.
    pub fn apply_log_entries(&self, entries: &[LogEntry]) -> Result<()> {
        let mut sorted: Vec<&LogEntry> = entries.iter().collect();
        sorted.sort_by_key(|e| (e.hlc, e.origin));
        let mut c = self.commit.lock();
        for e in sorted {
            let mut b = WriteBatch::new();
            for op in &e.ops {
                match op {
                    Op::PutInode(i) => {
                        let (k, v) = self.seal_record(&InodeId(i.ino), i)?;
                        b.put(Cf::Inodes, k, v);
                    }
                    Op::DelInode { ino } => b.delete(Cf::Inodes, self.inode_key(*ino).to_vec()),
                    Op::PutDirent { parent, dirent } => {
                        let (k, v) = self.seal_record(&DirentId(*parent, &dirent.name), dirent)?;
                        b.put(Cf::Dirents, k, v);
                    }
                    Op::DelDirent { parent, name } => {
                        b.delete(Cf::Dirents, self.dirent_key(*parent, name).to_vec())
                    }
                    Op::PutExtent { ino, index, extent } => {
                        let (k, v) = self.seal_record(&ExtentId(*ino, *index), extent)?;
                        b.put(Cf::Extents, k, v);
                    }
                    Op::DelExtent { ino, index } => {
                        b.delete(Cf::Extents, self.extent_key(*ino, *index).to_vec())
                    }
                }
            }
            let key = log_key(e.hlc, e.origin);
            let new_entry = self.engine.get(Cf::Log, &key)?.is_none();
            self.put_log_entry(&mut b, e)?;
            c.counters.last_hlc = c.counters.last_hlc.max(e.hlc);
            let written = self.engine.write(b, Durability::Process);
            // Records changed past the transactions that keep the caches current.
            self.inodes.clear();
            self.extents.clear();
            written?;
            if let Some(n) = &mut c.log_len {
                *n += u64::from(new_entry);
            }
        }
        Ok(())
    }

    /// Recount chunk references from the extents of every file reachable from the root.
    pub fn rebuild_refcounts(&self) -> Result<()> {
        let dump = self.dump()?;
        let mut counts: BTreeMap<sealvol_crypto::ChunkAddr, (u64, u32)> = BTreeMap::new();
        let mut seen = std::collections::HashSet::new();
        for (ino, entry) in dump.values() {
            if !seen.insert(*ino) {
                continue;
            }
            for s in entry.extents.iter().flat_map(|(_, e)| &e.slices) {
                let c = counts.entry(s.addr).or_insert((0, s.len));
                c.0 += 1;
            }
        }
        let mut b = WriteBatch::new();
        for (addr, (count, plain_len)) in counts {
            let stored_len = self
                .engine
                .get(Cf::Chunks, &addr.0)?
                .map(|s| s.len() as u32)
                .ok_or_else(|| FsError::Setup(format!("chunk {addr} is not in this store")))?;
            let rc = RefCount {
                count,
                plain_len,
                stored_len,
            };
            let (k, v) = self.seal_record(&RefId(&addr), &rc)?;
            b.put(Cf::Refs, k, v);
        }
        self.engine.write(b, Durability::Disk)?;
        Ok(())
    }

    /// The whole tree, by path: (inode number, entry).
    pub fn dump(&self) -> Result<BTreeMap<String, (u64, DumpEntry)>> {
        let mut out = BTreeMap::new();
        let mut stack = vec![(ROOT_INO, "/".to_string())];
        let geo = self.cfg.chunk_size;
        while let Some((ino, path)) = stack.pop() {
            let i = self.read_inode(ino)?.ok_or(FsError::NotFound)?;
            let mut extents = Vec::new();
            if i.kind == Kind::File {
                for index in holes::data_indices(&i.holes, 0, geo.count(i.size)) {
                    if let Some(e) = self.read_extent(ino, index)? {
                        extents.push((index, e));
                    }
                }
            }
            if i.kind == Kind::Dir {
                let mut cookie = 2;
                loop {
                    let page = self.readdir(ino, cookie, DUMP_PAGE)?;
                    if page.is_empty() {
                        break;
                    }
                    for d in &page {
                        cookie = d.cookie;
                        let p = if path == "/" {
                            format!("/{}", String::from_utf8_lossy(&d.name))
                        } else {
                            format!("{path}/{}", String::from_utf8_lossy(&d.name))
                        };
                        stack.push((d.ino, p));
                    }
                }
            }
            out.insert(
                path,
                (
                    ino,
                    DumpEntry {
                        kind: i.kind,
                        perm: i.perm,
                        uid: i.uid,
                        gid: i.gid,
                        nlink: i.nlink,
                        size: i.size,
                        target: i.target,
                        xattrs: i.xattrs,
                        extents,
                        holes: i.holes,
                    },
                ),
            );
        }
        Ok(out)
    }
}
