//! Chunk I/O: sealing chunks, and reading them back authenticated and verified through the
//! plaintext cache. A chunk's bytes are only ever returned after they were authenticated and
//! checked against their address.

use sealvol_crypto::ChunkAddr;
use sealvol_crypto::{ChunkTree, Verify, SEGMENT};
use sealvol_store::Cf;

use crate::cache::Plain;
use crate::error::Result;
use crate::volume::Volume;

impl Volume {
    /// Seal a chunk's plaintext; `tree` is its address and segment hashes
    /// (`chunk_tree` over the same plaintext).
    pub(crate) fn seal_chunk(&self, tree: &ChunkTree, plain: &[u8]) -> Result<Vec<u8>> {
        Ok(self.keys.chunk_seal.seal_chunk(
            self.epoch,
            &self.binding(&[&tree.addr.0]),
            tree,
            plain,
        )?)
    }

    /// Hash and seal `plain` as a chunk that may be new to the store: (address, plaintext
    /// length, sealed bytes), as a transaction takes it.
    pub(crate) fn seal_new_chunk(&self, plain: &[u8]) -> Result<crate::txn::NewChunk> {
        let tree = self.keys.chunk_addr.chunk_tree(plain);
        let sealed = self.seal_chunk(&tree, plain)?;
        Ok((tree.addr, plain.len() as u32, sealed))
    }

    /// Authenticate, decrypt and verify a chunk against its address (re-hash): for `check`,
    /// and for chunks whose bytes come from elsewhere.
    pub(crate) fn open_chunk(
        &self,
        addr: &ChunkAddr,
        sealed: &[u8],
    ) -> std::result::Result<Vec<u8>, sealvol_crypto::CryptoError> {
        let b = self.binding(&[&addr.0]);
        let verify = Verify::Address(&self.keys.chunk_addr);
        (self.keys.chunk_seal).open_chunk(verify, &b, addr, sealed)
    }

    /// Authenticate and decrypt only the segments of a chunk read from this volume's store that
    /// `range` touches (no re-hash: `Verify::LocalStore`): the first one's index, and their
    /// plaintext.
    pub(crate) fn open_chunk_segments(
        &self,
        addr: &ChunkAddr,
        sealed: &[u8],
        range: std::ops::Range<usize>,
    ) -> std::result::Result<sealvol_crypto::Segments, sealvol_crypto::CryptoError> {
        let b = self.binding(&[&addr.0]);
        let k = &self.keys.chunk_seal;
        k.open_chunk_segments(Verify::LocalStore, &b, addr, sealed, range)
    }

    /// Read, authenticate and decrypt a chunk of this volume's store (no re-hash: its tags
    /// bind it to its address). Never returns unauthenticated bytes.
    pub(crate) fn load_chunk(&self, ino: u64, addr: &ChunkAddr) -> Result<Plain> {
        if let Some(c) = self.cache.whole(addr) {
            return Ok(c);
        }
        let mut plain = Vec::new();
        self.open_stored_chunk(ino, addr, &mut plain)?;
        let plain = crate::cache::plain(plain);
        self.cache.put_whole(*addr, plain.clone());
        Ok(plain)
    }

    /// [`load_chunk`](Self::load_chunk), appending the plaintext to `out`; `keep` says whether
    /// a chunk opened from the store goes into the plaintext cache too (a copy). On error, `out`
    /// is as it was.
    pub(crate) fn load_chunk_into(
        &self,
        ino: u64,
        addr: &ChunkAddr,
        out: &mut Vec<u8>,
        keep: bool,
    ) -> Result<()> {
        if let Some(c) = self.cache.whole(addr) {
            out.extend_from_slice(&c);
            return Ok(());
        }
        let start = out.len();
        self.open_stored_chunk(ino, addr, out)?;
        if keep {
            self.cache
                .put_whole(*addr, crate::cache::plain(out[start..].to_vec()));
        }
        Ok(())
    }

    /// Open the stored chunk at `addr` where RocksDB holds it (no copy of the sealed bytes),
    /// appending its authenticated plaintext to `out` (`Verify::LocalStore`: bytes from this
    /// volume's own store).
    fn open_stored_chunk(&self, ino: u64, addr: &ChunkAddr, out: &mut Vec<u8>) -> Result<()> {
        // (The error is made, and logged, only if the chunk is missing or damaged.)
        let mut opened = None;
        self.engine.get_with(Cf::Chunks, &addr.0, &mut |sealed| {
            opened = sealed.map(|sealed| {
                let b = self.binding(&[&addr.0]);
                (self.keys.chunk_seal)
                    .open_chunk_append(Verify::LocalStore, &b, addr, sealed, out)
                    .map(|_| ())
                    .map_err(|e| self.corrupt(ino, format!("chunk {addr}: {e}")))
            });
        })?;
        opened.unwrap_or_else(|| Err(self.corrupt(ino, format!("chunk {addr} is missing"))))
    }

    /// Bytes `range` of a chunk of `len` bytes, verified: from the cache, or by opening only
    /// the segments the range touches (which are cached: a small read costs a segment, not a
    /// chunk, and the next small reads of that segment cost neither).
    pub(crate) fn load_chunk_range(
        &self,
        ino: u64,
        addr: &ChunkAddr,
        len: u32,
        range: std::ops::Range<usize>,
    ) -> Result<Vec<u8>> {
        if let Some(c) = self.cache.range(addr, len as usize, range.clone()) {
            return Ok(c);
        }
        // Opened in place: the sealed chunk is not copied out of the store.
        // (The error is made, and logged, only if the chunk is missing or damaged.)
        let mut out = None;
        self.engine.get_with(Cf::Chunks, &addr.0, &mut |sealed| {
            out = sealed.map(|sealed| {
                self.open_chunk_segments(addr, sealed, range.clone())
                    .map_err(|e| self.corrupt(ino, format!("chunk {addr}: {e}")))
            });
        })?;
        let s =
            out.unwrap_or_else(|| Err(self.corrupt(ino, format!("chunk {addr} is missing"))))?;
        if s.chunk_len != len as usize {
            return Err(self.corrupt(ino, format!("chunk {addr} has the wrong length")));
        }
        let off = s.first * SEGMENT;
        let (start, end) = (range.start.max(off), range.end.min(off + s.plain.len()));
        let part = if start < end {
            s.plain[start - off..end - off].to_vec()
        } else {
            Vec::new()
        };
        self.cache.put_segments(*addr, s.first, &s.plain);
        Ok(part)
    }
}
