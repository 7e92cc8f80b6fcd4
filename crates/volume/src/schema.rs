//! The on-disk schema of a sealvol store. Everything that reaches the disk is listed here.
//!
//! ```text
//! STORE_DIR/
//!   keys.json        key header (clear JSON): volume id, key epoch, key slots (salts, Argon2id
//!                    parameters, wrapped master key). No plaintext key, no file data.
//!   INCOMPLETE       only while `import` fills the store: why it is not whole yet. A store
//!                    with this file is refused on open (`volume_admin::mark_incomplete`).
//!   db/              RocksDB, one column family per kind of record:
//!   db/packs/        the chunks of bulk write-outs, outside RocksDB (sealvol-store's packs
//!                    module): the chunks family then holds a pointer (pack, offset, length).
//!
//! cf        key (bytes)                                   value
//! meta      b"config"                                     seal(Config)
//!           b"counters"                                   seal(Counters)
//! chunks    addr[32] = keyed BLAKE3(plaintext)            seal_chunk(plaintext): segments
//!                                                         (inline, or in a pack file: below)
//! refs      addr[32]                                      seal(RefCount)
//! inodes    H("inode", ino)[16]                           seal(Inode)
//! dirents   H("dir", parent)[8] ‖ H("name", parent, name)[16]   seal(Dirent)
//! extents   H("extent", ino, index)[16]                   seal(Extent): the chunk's slices
//! log       hlc[8, BE] ‖ origin host tag[8, BE]           seal(LogEntry)
//! ```
//!
//! `H` is keyed BLAKE3 under the record-key subkey; `seal` is XChaCha20-Poly1305 under the
//! metadata subkey (the chunk subkey for chunks), with associated data binding the volume id and
//! the record's identity (its key, or inode and index), so no record can be moved or swapped.
//! Values are encoded with postcard (length-prefixed, see [`encode`]) and, for metadata, padded to a multiple of
//! [`META_PAD`] bytes before sealing, so their lengths say little.
//!
//! Format version: [`FORMAT_VERSION`], recorded in `Config`.

use std::collections::BTreeMap;

use sealvol_crypto::ChunkAddr;

use crate::geometry::ChunkSize;
use serde::{Deserialize, Serialize};

/// 2: chunks sealed in 16 KiB segments (sealvol-crypto's `chunk` module).
/// 3: chunks padded to a size class (Padmé), their exact length sealed in the trailer.
/// 4: records encoded with postcard (was bincode 1.3, unmaintained), bounded on decode.
/// 5: an extent is a stack of slices (small overwrites add a slice instead of a whole chunk).
/// 6: the chunks of bulk write-outs live in pack files beside RocksDB, with a pointer in the
///    chunks family (sealvol-store's RocksDB engine tags every chunk value).
pub const FORMAT_VERSION: u32 = 6;
pub const META_PAD: usize = 64;
pub const ROOT_INO: u64 = 1;
pub const KEY_HEADER_FILE: &str = "keys.json";
pub const DB_DIR: &str = "db";

pub const META_CONFIG: &[u8] = b"config";
pub const META_COUNTERS: &[u8] = b"counters";

/// Per-volume settings fixed at `init`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Config {
    pub format_version: u32,
    pub chunk_size: ChunkSize,
    /// Random tag of the host that created the volume; high bits of its inode numbers and the
    /// origin of its log entries.
    pub host_tag: u32,
    pub created_unix: u64,
}

/// Running totals kept in one record, updated in the same batch as every change.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Counters {
    pub next_ino: u64,
    pub files: u64,
    pub dirs: u64,
    pub others: u64,
    /// Sum of regular files' sizes.
    pub logical_bytes: u64,
    /// Distinct chunks stored.
    pub chunks: u64,
    /// Plaintext bytes of distinct chunks.
    pub chunk_plain_bytes: u64,
    /// Sealed bytes of distinct chunks.
    pub chunk_stored_bytes: u64,
    /// Plaintext bytes of all chunk references (before dedup).
    pub referenced_bytes: u64,
    /// Inodes unlinked while open: purged on their last release, or at the next mount.
    pub orphans: Vec<u64>,
    /// Highest hybrid logical clock value used.
    pub last_hlc: u64,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDev,
    BlockDev,
}

/// Seconds and nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ts {
    pub secs: i64,
    pub nanos: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Inode {
    pub ino: u64,
    pub kind: Kind,
    /// Permission bits including setuid, setgid and sticky (mask 0o7777).
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub size: u64,
    pub atime: Ts,
    pub mtime: Ts,
    pub ctime: Ts,
    pub crtime: Ts,
    pub rdev: u32,
    /// For directories: the parent directory (the root is its own parent).
    pub parent: u64,
    /// For symlinks: the target.
    pub target: Vec<u8>,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// For regular files: chunk index ranges `[start, end)` that are holes. Every chunk index
    /// below `ceil(size / chunk_size)` has either an extent or lies in a hole, so a missing
    /// extent is damage, never zeros.
    pub holes: Vec<(u64, u64)>,
}

impl Inode {
    /// Clear setuid, and setgid where it means "set group id" (group-executable), of a
    /// non-directory: what write, truncate and chown do to a file's privileges.
    pub(crate) fn kill_suidgid(&mut self) {
        self.perm &= !self.suidgid_to_kill();
    }

    /// The bits [`Inode::kill_suidgid`] would clear.
    pub(crate) fn suidgid_to_kill(&self) -> u32 {
        if self.kind == Kind::Dir {
            return 0;
        }
        let sgid = if self.perm & 0o010 != 0 { 0o2000 } else { 0 };
        self.perm & (0o4000 | sgid)
    }

    /// A setattr's times: atime and mtime where given, ctime always.
    pub(crate) fn apply_times(&mut self, atime: Option<Ts>, mtime: Option<Ts>, ctime: Ts) {
        if let Some(at) = atime {
            self.atime = at;
        }
        if let Some(mt) = mtime {
            self.mtime = mt;
        }
        self.ctime = ctime;
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Dirent {
    pub name: Vec<u8>,
    pub ino: u64,
    pub kind: Kind,
}

impl Dirent {
    /// The same file under another name (for renames).
    pub fn with_name(&self, name: &[u8]) -> Dirent {
        Dirent {
            name: name.to_vec(),
            ino: self.ino,
            kind: self.kind,
        }
    }
}

/// Part of a chunk's contents: `len` plaintext bytes at byte `at` of the chunk, stored as the
/// chunk at `addr` (content-addressed like any other: equal slices are stored once).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Slice {
    pub at: u32,
    pub len: u32,
    pub addr: ChunkAddr,
}

impl Slice {
    pub fn end(&self) -> u32 {
        self.at + self.len
    }
}

/// Most slices one chunk holds before it is compacted into a single one (see `compact`).
pub const MAX_SLICES: usize = 8;

/// One chunk of a file, at `index * chunk_size`: slices laid over each other, oldest first (a
/// newer slice's bytes win where they overlap). A chunk written whole is one slice at 0; a small
/// overwrite adds a slice instead of rewriting the chunk. The chunk's length is where its
/// furthest slice ends; bytes below it that no slice covers read as zeros, like bytes past it
/// within the file's size.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Extent {
    pub slices: Vec<Slice>,
}

impl Extent {
    /// A chunk stored whole: `len` bytes at `addr`.
    pub fn whole(addr: ChunkAddr, len: u32) -> Extent {
        Extent {
            slices: vec![Slice { at: 0, len, addr }],
        }
    }

    /// The chunk's length in bytes.
    pub fn len(&self) -> u32 {
        self.slices.iter().map(Slice::end).max().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The address of a chunk stored whole (one slice from 0).
    pub fn whole_addr(&self) -> Option<ChunkAddr> {
        match self.slices.as_slice() {
            [s] if s.at == 0 => Some(s.addr),
            _ => None,
        }
    }

    /// Lay `new` over the chunk, dropping the older slices it hides entirely.
    pub fn add(&mut self, new: Slice) {
        self.slices.retain(|s| s.at < new.at || s.end() > new.end());
        self.slices.push(new);
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RefCount {
    pub count: u64,
    pub plain_len: u32,
    pub stored_len: u32,
}

/// One state change, as recorded in the operation log. Each sets or removes one record, so
/// applying a log's entries in key order (hlc, origin) rebuilds the same metadata on any replica,
/// whatever order the entries arrived in.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Op {
    PutInode(Inode),
    DelInode {
        ino: u64,
    },
    PutDirent {
        parent: u64,
        dirent: Dirent,
    },
    DelDirent {
        parent: u64,
        name: Vec<u8>,
    },
    PutExtent {
        ino: u64,
        index: u64,
        extent: Extent,
    },
    DelExtent {
        ino: u64,
        index: u64,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LogEntry {
    pub hlc: u64,
    pub origin: u32,
    pub ops: Vec<Op>,
}

pub fn log_key(hlc: u64, origin: u32) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&hlc.to_be_bytes());
    k[8..].copy_from_slice(&(origin as u64).to_be_bytes());
    k
}

/// Largest encoded record sealvol reads or writes (an inode with its xattrs, symlink target
/// and hole list is the largest kind). A longer length prefix is damage, never an allocation.
pub const MAX_RECORD: usize = 16 << 20;

/// Decode a log entry's plaintext and check it against the key it was stored under: the key
/// is authenticated (it is the entry's associated data), the stamps inside must say the same.
pub fn decode_log_entry(key: &[u8], plain: &[u8]) -> Result<LogEntry, String> {
    let e: LogEntry = decode(plain).ok_or("it does not decode")?;
    if key != log_key(e.hlc, e.origin) {
        return Err(format!(
            "its stamps (hlc {}, origin {}) differ from its key",
            e.hlc, e.origin
        ));
    }
    Ok(e)
}

/// Encode a record for sealing: postcard, length-prefixed (u32 LE), zero-padded to a
/// multiple of `pad` bytes.
pub fn encode<T: Serialize>(v: &T, pad: usize) -> Result<Vec<u8>, RecordError> {
    let body = postcard::to_allocvec(v).map_err(|e| RecordError(e.to_string()))?;
    if body.len() > MAX_RECORD {
        return Err(RecordError(format!(
            "record of {} bytes is over the {MAX_RECORD}-byte limit",
            body.len()
        )));
    }
    let mut out = Vec::with_capacity(body.len() + 4 + pad);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    if pad > 1 {
        let target = out.len().div_ceil(pad) * pad;
        out.resize(target, 0);
    }
    Ok(out)
}

/// Decode what [`encode`] made. `None` for anything else: a length past the bytes or over
/// [`MAX_RECORD`], a body that does not decode, or bytes after the body other than padding.
/// postcard reads lengths as it goes and never allocates more than the input could hold.
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Option<T> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    if len > MAX_RECORD {
        return None;
    }
    let body = bytes.get(4..4 + len)?;
    if bytes[4 + len..].iter().any(|b| *b != 0) {
        return None;
    }
    let (v, rest) = postcard::take_from_bytes(body).ok()?;
    rest.is_empty().then_some(v)
}

/// The format version at the head of a `config` record, read without decoding the rest. Every
/// format so far starts the record with a u32 length and the version (postcard's varint of a
/// small number and bincode's little-endian u32 share their first byte).
pub(crate) fn config_version(plain: &[u8]) -> Option<u32> {
    let first = *plain.get(4)?;
    (first < 0x80).then_some(first as u32)
}

/// A record that cannot be encoded.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode a record: {0}")]
pub struct RecordError(String);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(version: u32) -> Config {
        Config {
            format_version: version,
            chunk_size: ChunkSize::DEFAULT,
            host_tag: 0x000f_ffff,
            created_unix: 1_700_000_000,
        }
    }

    #[test]
    fn records_round_trip_and_the_version_reads_alone() {
        let c = config(FORMAT_VERSION);
        let bytes = encode(&c, META_PAD).unwrap();
        assert_eq!(bytes.len() % META_PAD, 0);
        assert_eq!(decode::<Config>(&bytes), Some(c));
        assert_eq!(config_version(&bytes), Some(FORMAT_VERSION));
        // A format-3 store's config (bincode: u32 length, then the version as a u32 LE).
        let mut old = 24u32.to_le_bytes().to_vec();
        old.extend_from_slice(&3u32.to_le_bytes());
        old.extend_from_slice(&(128u32 << 10).to_le_bytes());
        old.resize(64, 0);
        assert_eq!(config_version(&old), Some(3));
    }

    #[test]
    fn decoding_refuses_bad_lengths_and_trailing_bytes() {
        let bytes = encode(&config(FORMAT_VERSION), META_PAD).unwrap();
        let mut long = bytes.clone();
        long[..4].copy_from_slice(&(MAX_RECORD as u32 + 1).to_le_bytes());
        assert_eq!(decode::<Config>(&long), None);
        let mut past = bytes.clone();
        past[..4].copy_from_slice(&(bytes.len() as u32).to_le_bytes());
        assert_eq!(decode::<Config>(&past), None);
        let mut trailing = bytes.clone();
        *trailing.last_mut().unwrap() = 1;
        assert_eq!(decode::<Config>(&trailing), None);
        // A chunk size that is not one sealvol accepts does not decode.
        #[derive(Serialize)]
        struct Raw {
            format_version: u32,
            chunk_size: u32,
            host_tag: u32,
            created_unix: u64,
        }
        let raw = |chunk_size| Raw {
            format_version: FORMAT_VERSION,
            chunk_size,
            host_tag: 1,
            created_unix: 2,
        };
        assert!(decode::<Config>(&encode(&raw(128 << 10), 1).unwrap()).is_some());
        assert_eq!(decode::<Config>(&encode(&raw(100 << 10), 1).unwrap()), None);
    }

    #[test]
    fn a_log_entry_must_match_its_key() {
        let e = LogEntry {
            hlc: 77,
            origin: 5,
            ops: vec![Op::DelInode { ino: 9 }],
        };
        let plain = encode(&e, META_PAD).unwrap();
        assert_eq!(decode_log_entry(&log_key(77, 5), &plain), Ok(e));
        let err = decode_log_entry(&log_key(78, 5), &plain).unwrap_err();
        assert!(err.contains("differ from its key"), "{err}");
        assert!(decode_log_entry(&log_key(77, 6), &plain).is_err());
    }

    #[test]
    fn a_huge_element_count_is_refused_without_allocating_it() {
        // An inode whose xattr map claims 2^62 entries, in a 64-byte record.
        let mut body = vec![];
        body.extend_from_slice(&[1, 0, 0xa4, 3, 0, 0, 1, 0]); // ino, kind, perm, uid, gid, nlink, size
        body.extend_from_slice(&[0; 8 * 2 + 1]); // times, rdev, parent, target (lengths 0)
        body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f]);
        let mut rec = (body.len() as u32).to_le_bytes().to_vec();
        rec.extend_from_slice(&body);
        assert_eq!(decode::<Inode>(&rec), None);
    }
}
