//! What a native export holds: entries (one per name in the tree) and the manifest, their
//! encodings and seals, and the chunk objects. The layout is in the crate's documentation.

use std::collections::BTreeMap;

use sealvol_crypto::{ChunkAddr, Domain, HashKey, SealKey};
use serde::{Deserialize, Serialize};

use crate::error::{ExportError, Result};

/// Version of the native format, in the marker and in every manifest.
pub const FORMAT_VERSION: u32 = 2;
/// Largest sealed entry frame read (a file's chunk list: 45 bytes per chunk, so about 10 TiB
/// of data at 128 KiB chunks); a longer length is damage, never an allocation.
pub const MAX_FRAME: usize = 256 << 20;
/// Largest manifest file read.
pub const MAX_MANIFEST: usize = 64 << 10;

/// What kind of node an entry is.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDev,
    BlockDev,
    /// Another name of the file with the same `ino` met earlier in the stream (a hard link).
    HardLink,
    /// Only in a delta's metadata: this path was in the export the delta applies to and is no
    /// longer there (nothing below it either, unless listed).
    Gone,
}

/// Seconds and nanoseconds since the Unix epoch.
pub type Time = (i64, u32);

/// One chunk of a file: `len` bytes at `index * chunk_size`, stored as object `addr`.
/// Indices without a chunk are holes (zeros).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChunkRef {
    pub index: u64,
    pub len: u32,
    pub addr: [u8; 32],
}

/// One name in the tree, with its node's attributes (for a hard link, only the path and the
/// inode number it shares). Parents come before their children; the root is the first entry,
/// with an empty path.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    /// Relative path, components joined by `/` (bytes: names need not be UTF-8).
    pub path: Vec<u8>,
    /// The volume's inode number, to tie hard links together.
    pub ino: u64,
    pub kind: EntryKind,
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    pub size: u64,
    pub atime: Time,
    pub mtime: Time,
    pub ctime: Time,
    /// A symlink's target.
    pub target: Vec<u8>,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    pub chunks: Vec<ChunkRef>,
    /// Only in a delta, for a file that was a file at this path in the export before: `chunks`
    /// holds only the chunks that differ from that entry's (one of `len` 0 marks a chunk that
    /// is now a hole); every other chunk below the new size is as it was.
    pub partial: bool,
}

impl Entry {
    /// Lay a partial entry's chunks (`self`) over `base`'s, cut at `self.size`: the whole chunk
    /// list, and `self` no longer partial.
    pub fn over(mut self, base: &[ChunkRef], chunk_size: u32) -> Entry {
        let mut all: BTreeMap<u64, ChunkRef> = base.iter().map(|c| (c.index, *c)).collect();
        for c in &self.chunks {
            if c.len == 0 {
                all.remove(&c.index);
            } else {
                all.insert(c.index, *c);
            }
        }
        let n = self.size.div_ceil(u64::from(chunk_size.max(1)));
        self.chunks = all.into_values().filter(|c| c.index < n).collect();
        self.partial = false;
        self
    }

    /// The path for messages (lossy UTF-8; the root is `/`).
    pub fn display_path(&self) -> String {
        display_path(&self.path)
    }
}

/// Tree order, as the walk lists a tree: parents before children, siblings by name bytes. Paths
/// compare component by component (so `a/b` comes before `a!`, which a byte compare would not
/// say).
pub fn tree_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    a.split(|c| *c == b'/').cmp(b.split(|c| *c == b'/'))
}

pub fn display_path(p: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(p))
}

/// An export's manifest: sealed, published last, naming its parent.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: u32,
    pub chain_id: [u8; 16],
    /// The exported volume's id (hex, as `sealvol stats` shows it).
    pub volume_id: String,
    /// 1 for the first export of the chain, then one more each time.
    pub seq: u64,
    /// BLAKE3 of the previous export's manifest file; `None` for seq 1.
    pub parent: Option<[u8; 32]>,
    pub created_unix: u64,
    pub chunk_size: u32,
    /// Entries in the meta file, its length and BLAKE3.
    pub entries: u64,
    pub meta_bytes: u64,
    pub meta_hash: [u8; 32],
    /// Totals of the volume at this export.
    pub files: u64,
    pub dirs: u64,
    pub others: u64,
    pub logical_bytes: u64,
    /// Chunks the files reference (distinct), and those this export added to the target.
    pub chunks: u64,
    pub new_objects: u64,
    pub new_object_bytes: u64,
    /// `None`: the metadata lists the whole tree. `Some(n)`: it lists only what changed since
    /// export `n` (this one's parent): entries that differ, in tree order, and a `Gone` entry
    /// for each path no longer there; the tree is export `n`'s with these laid over it.
    pub base: Option<u64>,
    /// Entries in the whole tree (what a full listing would hold).
    pub listing: u64,
}

/// The keys of one export chain, derived from its data key K.
pub struct ChainKeys {
    pub chain_id: [u8; 16],
    pub(crate) seal: SealKey,
    pub(crate) addr: HashKey,
}

impl ChainKeys {
    pub(crate) fn new(chain_id: [u8; 16], k: &sealvol_crypto::MasterKey) -> ChainKeys {
        ChainKeys {
            chain_id,
            seal: k.seal_key(sealvol_crypto::Purpose::Export),
            addr: k.hash_key(sealvol_crypto::Purpose::ExportAddress),
        }
    }

    fn binding(&self, parts: &[&[u8]]) -> Vec<u8> {
        let mut b = self.chain_id.to_vec();
        for p in parts {
            b.extend_from_slice(p);
        }
        b
    }

    /// An object's name: the keyed hash of its plaintext.
    pub fn object_addr(&self, plain: &[u8]) -> [u8; 32] {
        self.addr.chunk_addr(plain).0
    }

    /// Seal a chunk's plaintext as object `addr`: its length, the bytes, zeros up to the
    /// length's Padmé class (what the target sees is the class, as in the store).
    pub fn seal_object(&self, addr: &[u8; 32], plain: &[u8]) -> Result<Vec<u8>> {
        let padded = sealvol_crypto::padded_len(plain.len());
        let mut buf = Vec::with_capacity(4 + padded);
        buf.extend_from_slice(&(plain.len() as u32).to_le_bytes());
        buf.extend_from_slice(plain);
        buf.resize(4 + padded, 0);
        let sealed = self
            .seal
            .seal(Domain::ExportChunk, 0, &self.binding(&[addr]), &buf);
        zeroize::Zeroize::zeroize(&mut buf);
        Ok(sealed?)
    }

    /// Open object `addr`: authenticated, its padding checked, and its plaintext re-hashed
    /// against its name. `Err` says what is wrong, for the damage report.
    pub fn open_object(
        &self,
        addr: &[u8; 32],
        sealed: &[u8],
    ) -> std::result::Result<Vec<u8>, String> {
        let mut buf = self
            .seal
            .open(Domain::ExportChunk, &self.binding(&[addr]), sealed)
            .map_err(|e| format!("does not authenticate ({e})"))?;
        let len = buf
            .get(..4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_le_bytes)
            .ok_or("too short")? as usize;
        if buf.len() != 4 + sealvol_crypto::padded_len(len)
            || buf[4 + len..].iter().any(|b| *b != 0)
        {
            return Err("bad padding".into());
        }
        buf.truncate(4 + len);
        buf.drain(..4);
        if self.object_addr(&buf) != *addr {
            return Err("its contents do not match its name".into());
        }
        Ok(buf)
    }

    pub fn seal_entry(&self, seq: u64, index: u64, e: &Entry) -> Result<Vec<u8>> {
        let plain = encode(e)?;
        Ok(self.seal.seal(
            Domain::ExportEntry,
            0,
            &self.binding(&[&seq.to_le_bytes(), &index.to_le_bytes()]),
            &plain,
        )?)
    }

    pub fn open_entry(
        &self,
        seq: u64,
        index: u64,
        sealed: &[u8],
    ) -> std::result::Result<Entry, String> {
        let plain = self
            .seal
            .open(
                Domain::ExportEntry,
                &self.binding(&[&seq.to_le_bytes(), &index.to_le_bytes()]),
                sealed,
            )
            .map_err(|e| format!("does not authenticate ({e})"))?;
        postcard::from_bytes(&plain).map_err(|e| format!("does not decode ({e})"))
    }

    /// Seal the extent cache (see `crate::cache`), bound to this chain.
    pub(crate) fn seal_cache(&self, plain: &[u8]) -> Result<Vec<u8>> {
        Ok(self.seal.seal(
            Domain::ExportState,
            0,
            &self.binding(&[b"extent cache"]),
            plain,
        )?)
    }

    pub(crate) fn open_cache(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        self.seal
            .open(
                Domain::ExportState,
                &self.binding(&[b"extent cache"]),
                sealed,
            )
            .ok()
    }

    pub fn seal_manifest(&self, m: &Manifest) -> Result<Vec<u8>> {
        let plain = encode(m)?;
        Ok(self.seal.seal(
            Domain::ExportManifest,
            0,
            &self.binding(&[&m.seq.to_le_bytes()]),
            &plain,
        )?)
    }

    pub fn open_manifest(&self, seq: u64, sealed: &[u8]) -> std::result::Result<Manifest, String> {
        let plain = self
            .seal
            .open(
                Domain::ExportManifest,
                &self.binding(&[&seq.to_le_bytes()]),
                sealed,
            )
            .map_err(|e| format!("does not authenticate ({e})"))?;
        let m: Manifest =
            postcard::from_bytes(&plain).map_err(|e| format!("does not decode ({e})"))?;
        if m.seq != seq || m.chain_id != self.chain_id {
            return Err("names another export".into());
        }
        if m.format != FORMAT_VERSION {
            return Err(format!(
                "is format {} (this sealvol reads format {FORMAT_VERSION})",
                m.format
            ));
        }
        Ok(m)
    }
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    postcard::to_allocvec(v).map_err(|e| ExportError::Refused(format!("encoding: {e}")))
}

/// An object's file name under `objects/`.
pub fn object_path(addr: &[u8; 32]) -> String {
    let h = hex::encode(addr);
    format!("{}/{}", &h[..2], h)
}

/// A chunk address as the volume's crate names it, for messages.
pub fn short(addr: &[u8; 32]) -> String {
    ChunkAddr(*addr).to_string()
}
