//! Typed access to the sealed metadata records: their keys (keyed hashes, see `schema`), how
//! each kind is sealed and opened, and the cached reads of inodes and extents. The store knows
//! only bytes; this is where records get their types. Nothing here writes: transactions
//! (`txn`) do.

use sealvol_crypto::{ChunkAddr, Domain};
use sealvol_store::Cf;

use crate::error::{FsError, Result};
use crate::schema::*;
use crate::volume::{hex, Volume};

impl Volume {
    pub(crate) fn binding(&self, parts: &[&[u8]]) -> Vec<u8> {
        let mut b = self.volume_id.to_vec();
        for p in parts {
            b.extend_from_slice(p);
        }
        b
    }

    pub(crate) fn seal_meta<T: serde::Serialize>(
        &self,
        domain: Domain,
        key: &[u8],
        v: &T,
    ) -> Result<Vec<u8>> {
        Ok(self.keys.meta_seal.seal(
            domain,
            self.epoch,
            &self.binding(&[key]),
            &encode(v, META_PAD)?,
        )?)
    }

    pub(crate) fn open_meta<T: for<'de> serde::Deserialize<'de>>(
        &self,
        domain: Domain,
        key: &[u8],
        sealed: &[u8],
        ino: u64,
    ) -> Result<T> {
        let plain = self
            .keys
            .meta_seal
            .open(domain, &self.binding(&[key]), sealed)
            .map_err(|e| self.corrupt(ino, format!("{domain:?} record: {e}")))?;
        decode(&plain)
            .ok_or_else(|| self.corrupt(ino, format!("{domain:?} record does not decode")))
    }

    pub(crate) fn corrupt(&self, ino: u64, detail: String) -> FsError {
        tracing::error!(volume = %hex(&self.volume_id), ino, %detail, "damaged data");
        FsError::Corrupt {
            volume: hex(&self.volume_id),
            ino,
            detail,
        }
    }

    pub(crate) fn inode_key(&self, ino: u64) -> [u8; 16] {
        self.keys
            .record_key
            .record_key(b"inode", &[&ino.to_le_bytes()])
    }

    pub(crate) fn dir_prefix(&self, parent: u64) -> [u8; 8] {
        self.keys
            .record_key
            .record_key(b"dir", &[&parent.to_le_bytes()])
    }

    pub(crate) fn dirent_key(&self, parent: u64, name: &[u8]) -> [u8; 24] {
        let mut k = [0u8; 24];
        k[..8].copy_from_slice(&self.dir_prefix(parent));
        let h: [u8; 16] = self
            .keys
            .record_key
            .record_key(b"name", &[&parent.to_le_bytes(), name]);
        k[8..].copy_from_slice(&h);
        k
    }

    pub(crate) fn extent_key(&self, ino: u64, index: u64) -> [u8; 16] {
        self.keys
            .record_key
            .record_key(b"extent", &[&ino.to_le_bytes(), &index.to_le_bytes()])
    }

    pub(crate) fn read_inode(&self, ino: u64) -> Result<Option<Inode>> {
        if let Some(i) = self.inodes.get(&ino) {
            return Ok(Some(i));
        }
        let generation = self.inodes.generation();
        let inode = self.read_inode_from_store(ino)?;
        if let Some(i) = &inode {
            self.inodes.fill(ino, i, generation);
        }
        Ok(inode)
    }

    /// The inode record as the store holds it, past the cache.
    pub(crate) fn read_inode_from_store(&self, ino: u64) -> Result<Option<Inode>> {
        let key = self.inode_key(ino);
        match self.engine.get(Cf::Inodes, &key)? {
            None => Ok(None),
            Some(s) => {
                let inode: Inode = self.open_meta(Domain::Inode, &key, &s, ino)?;
                if inode.ino != ino {
                    return Err(self.corrupt(ino, "inode record names another inode".into()));
                }
                Ok(Some(inode))
            }
        }
    }

    pub(crate) fn read_dirent(&self, parent: u64, name: &[u8]) -> Result<Option<Dirent>> {
        let key = self.dirent_key(parent, name);
        match self.engine.get(Cf::Dirents, &key)? {
            None => Ok(None),
            Some(s) => {
                let d: Dirent = self.open_meta(Domain::Dirent, &key, &s, parent)?;
                if d.name != name {
                    return Err(self.corrupt(parent, "directory entry names another file".into()));
                }
                Ok(Some(d))
            }
        }
    }

    pub(crate) fn read_extent(&self, ino: u64, index: u64) -> Result<Option<Extent>> {
        if let Some(e) = self.extents.get(&(ino, index)) {
            return Ok(Some(e));
        }
        let generation = self.extents.generation();
        let extent = self.read_extent_from_store(ino, index)?;
        if let Some(e) = &extent {
            self.extents.fill((ino, index), e, generation);
        }
        Ok(extent)
    }

    /// The extent as the store holds it, past the cache.
    pub(crate) fn read_extent_from_store(&self, ino: u64, index: u64) -> Result<Option<Extent>> {
        let key = self.extent_key(ino, index);
        match self.engine.get(Cf::Extents, &key)? {
            None => Ok(None),
            Some(s) => {
                let b = self.binding(&[&ino.to_le_bytes(), &index.to_le_bytes()]);
                let plain = self
                    .keys
                    .meta_seal
                    .open(Domain::Extent, &b, &s)
                    .map_err(|e| self.corrupt(ino, format!("extent {index}: {e}")))?;
                decode(&plain)
                    .map(Some)
                    .ok_or_else(|| self.corrupt(ino, format!("extent {index} does not decode")))
            }
        }
    }

    pub(crate) fn seal_extent(&self, ino: u64, index: u64, e: &Extent) -> Result<Vec<u8>> {
        let b = self.binding(&[&ino.to_le_bytes(), &index.to_le_bytes()]);
        Ok(self
            .keys
            .meta_seal
            .seal(Domain::Extent, self.epoch, &b, &encode(e, META_PAD)?)?)
    }

    pub(crate) fn read_ref(&self, addr: &ChunkAddr) -> Result<Option<RefCount>> {
        match self.engine.get(Cf::Refs, &addr.0)? {
            None => Ok(None),
            Some(s) => self.open_meta(Domain::RefCount, &addr.0, &s, 0).map(Some),
        }
    }
}
