//! Compaction: a chunk whose slices pile up (many small overwrites of one chunk) is folded back
//! into one whole chunk, so that a read of it stays a few chunk opens and the store stops
//! keeping bytes that newer slices hide.

use sealvol_store::Durability;

use crate::error::Result;
use crate::schema::MAX_SLICES;
use crate::volume::Volume;

impl Volume {
    /// Fold each chunk `indices` of `ino` that has more than [`MAX_SLICES`] slices into one.
    /// Optimistic: the chunk is read and sealed outside the commit lock, and replaced only if
    /// nothing changed it meanwhile. A failure is logged, not returned: the data is intact
    /// either way, and the next write-out of the chunk tries again.
    pub(crate) fn compact(&self, ino: u64, indices: &[u64]) {
        for &index in indices {
            if let Err(e) = self.compact_chunk(ino, index) {
                tracing::warn!(ino, index, error = %e, "compacting a chunk's slices failed; it stays as it is");
            }
        }
    }

    /// Fold chunk `index` of `ino` into one slice if it has too many: whether it did.
    pub(crate) fn compact_chunk(&self, ino: u64, index: u64) -> Result<bool> {
        let Some(e) = self.read_extent(ino, index)? else {
            return Ok(false);
        };
        if e.slices.len() <= MAX_SLICES {
            return Ok(false);
        }
        let merged = self.chunk_plain(ino, index, &e)?;
        let chunk = self.seal_new_chunk(&merged)?;
        let addr = chunk.0;
        let mut t = self.begin();
        if t.extent(ino, index)?.as_ref() != Some(&e) {
            return Ok(false);
        }
        t.put_whole_extent(ino, index, chunk)?;
        t.commit(Durability::Process)?;
        self.cache.put_whole(addr, merged);
        Ok(true)
    }
}
