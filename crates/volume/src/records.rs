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
        self.get_record(&InodeId(ino))
    }

    pub(crate) fn read_dirent(&self, parent: u64, name: &[u8]) -> Result<Option<Dirent>> {
        self.get_record(&DirentId(parent, name))
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
        self.get_record(&ExtentId(ino, index))
    }

    pub(crate) fn read_ref(&self, addr: &ChunkAddr) -> Result<Option<RefCount>> {
        self.get_record(&RefId(addr))
    }

    /// The record `id` names, opened and checked against its key; `None` if there is none.
    pub(crate) fn get_record<I: RecordId>(&self, id: &I) -> Result<Option<I::Value>> {
        let key = id.key(self);
        match self.engine.get(I::CF, &key)? {
            None => Ok(None),
            Some(sealed) => self.open_record(id, &key, &sealed).map(Some),
        }
    }

    /// Open a sealed record of kind `I` stored under `key` (which `id` names): authenticated
    /// against its place, decoded, and checked to agree with its key.
    pub(crate) fn open_record<I: RecordId>(
        &self,
        id: &I,
        key: &[u8],
        sealed: &[u8],
    ) -> Result<I::Value> {
        let what = I::DOMAIN;
        let plain = self
            .keys
            .meta_seal
            .open(what, &self.binding(&[&id.bound(key)]), sealed)
            .map_err(|e| self.corrupt(id.ino(), format!("{what:?} record: {e}")))?;
        let v: I::Value = decode(&plain)
            .ok_or_else(|| self.corrupt(id.ino(), format!("{what:?} record does not decode")))?;
        match id.disagrees(&v) {
            Some(why) => Err(self.corrupt(id.ino(), why.into())),
            None => Ok(v),
        }
    }

    /// A record of kind `I` sealed for its place: (key, sealed value).
    pub(crate) fn seal_record<I: RecordId>(
        &self,
        id: &I,
        v: &I::Value,
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        let key = id.key(self);
        let sealed = self.keys.meta_seal.seal(
            I::DOMAIN,
            self.epoch,
            &self.binding(&[&id.bound(&key)]),
            &encode(v, META_PAD)?,
        )?;
        Ok((key, sealed))
    }
}

/// What names one record of a kind, and so the kind's typed store: the column family, the
/// sealing domain, the key (a keyed hash, see `schema`), what the seal binds the record to,
/// and what its decoded value must agree with. `get_record`, `open_record` and
/// `seal_record` are the one path every kind is stored and read through.
pub(crate) trait RecordId {
    type Value: serde::Serialize + serde::de::DeserializeOwned;
    const CF: Cf;
    const DOMAIN: Domain;
    fn key(&self, v: &Volume) -> Vec<u8>;
    /// What the seal binds the record to (beside the volume id): its key by default.
    fn bound(&self, key: &[u8]) -> Vec<u8> {
        key.to_vec()
    }
    /// The inode damage to this record is reported under.
    fn ino(&self) -> u64;
    /// How a decoded value contradicts its key, if it does.
    fn disagrees(&self, _v: &Self::Value) -> Option<&'static str> {
        None
    }
}

/// An inode record, by inode number.
pub(crate) struct InodeId(pub(crate) u64);
/// A directory entry, by parent directory and name.
pub(crate) struct DirentId<'a>(pub(crate) u64, pub(crate) &'a [u8]);
/// A file's chunk `index`.
pub(crate) struct ExtentId(pub(crate) u64, pub(crate) u64);
/// A chunk's reference count.
pub(crate) struct RefId<'a>(pub(crate) &'a ChunkAddr);

impl RecordId for InodeId {
    type Value = Inode;
    const CF: Cf = Cf::Inodes;
    const DOMAIN: Domain = Domain::Inode;
    fn key(&self, v: &Volume) -> Vec<u8> {
        v.inode_key(self.0).to_vec()
    }
    fn ino(&self) -> u64 {
        self.0
    }
    fn disagrees(&self, i: &Inode) -> Option<&'static str> {
        (i.ino != self.0).then_some("inode record names another inode")
    }
}

impl RecordId for DirentId<'_> {
    type Value = Dirent;
    const CF: Cf = Cf::Dirents;
    const DOMAIN: Domain = Domain::Dirent;
    fn key(&self, v: &Volume) -> Vec<u8> {
        v.dirent_key(self.0, self.1).to_vec()
    }
    fn ino(&self) -> u64 {
        self.0
    }
    fn disagrees(&self, d: &Dirent) -> Option<&'static str> {
        (d.name != self.1).then_some("directory entry names another file")
    }
}

impl RecordId for ExtentId {
    type Value = Extent;
    const CF: Cf = Cf::Extents;
    const DOMAIN: Domain = Domain::Extent;
    fn key(&self, v: &Volume) -> Vec<u8> {
        v.extent_key(self.0, self.1).to_vec()
    }
    /// Bound to the inode and index themselves (the key is their keyed hash).
    fn bound(&self, _key: &[u8]) -> Vec<u8> {
        [self.0.to_le_bytes(), self.1.to_le_bytes()].concat()
    }
    fn ino(&self) -> u64 {
        self.0
    }
}

impl RecordId for RefId<'_> {
    type Value = RefCount;
    const CF: Cf = Cf::Refs;
    const DOMAIN: Domain = Domain::RefCount;
    fn key(&self, _v: &Volume) -> Vec<u8> {
        self.0 .0.to_vec()
    }
    fn ino(&self) -> u64 {
        0
    }
}
