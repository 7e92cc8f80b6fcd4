//! The engine trait and its batch type.

use std::sync::Arc;

pub mod memory;
pub(crate) mod packs;
pub mod rocks;

/// Column families. Each holds one kind of record; see `sealvol-volume`'s schema module for
/// what their keys and values are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cf {
    /// Small singleton records: volume configuration, counters, allocators.
    Meta,
    /// Sealed chunk contents, by chunk address.
    Chunks,
    /// Sealed reference counts, by chunk address.
    Refs,
    /// Sealed inodes, by keyed hash of the inode number.
    Inodes,
    /// Sealed directory entries, by keyed hash of (directory, name).
    Dirents,
    /// Sealed extents (chunk index → chunk address), by keyed hash of (inode, index).
    Extents,
    /// The operation log, by (hybrid logical clock, origin host).
    Log,
}

impl Cf {
    pub const ALL: [Cf; 7] = [
        Cf::Meta,
        Cf::Chunks,
        Cf::Refs,
        Cf::Inodes,
        Cf::Dirents,
        Cf::Extents,
        Cf::Log,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Cf::Meta => "meta",
            Cf::Chunks => "chunks",
            Cf::Refs => "refs",
            Cf::Inodes => "inodes",
            Cf::Dirents => "dirents",
            Cf::Extents => "extents",
            Cf::Log => "log",
        }
    }
}

/// How durable a write must be when `write` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Visible to readers and in the write-ahead log: survives a crash of this process, not
    /// necessarily a power loss or kernel crash.
    Process,
    /// The write-ahead log is fsync'd before return: survives power loss.
    Disk,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the store at {path} is in use by another process (another mount or a running sealvol); unmount it first"
    )]
    Locked { path: String },
    #[error("no sealvol store at {path}: {reason}")]
    Missing { path: String, reason: String },
    #[error("the storage engine reports corruption: {0}")]
    Corruption(String),
    #[error("the disk is full: {0}")]
    NoSpace(String),
    #[error("storage engine I/O error: {0}")]
    Io(String),
}

/// A set of writes applied atomically: after a crash either all of them are there or none.
#[derive(Default, Debug)]
pub struct WriteBatch {
    pub(crate) ops: Vec<(Cf, Vec<u8>, Value)>,
    bytes: u64,
}

/// What a batch does to one key.
#[derive(Debug)]
pub(crate) enum Value {
    Put(Vec<u8>),
    /// A value put aside ([`Engine::put_aside`]), in the form the engine stores it.
    Aside(Vec<u8>),
    Delete,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn put(&mut self, cf: Cf, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        let (k, v) = (key.into(), value.into());
        self.bytes += (k.len() + v.len()) as u64;
        self.ops.push((cf, k, Value::Put(v)));
    }
    /// Name a chunk value put aside by the same engine's [`Engine::put_aside`] under `key` in
    /// the chunks family. Keep `aside` until the batch is written (its space is held until then).
    pub fn put_chunk_aside(&mut self, key: impl Into<Vec<u8>>, aside: &Aside) {
        let k = key.into();
        self.bytes += (k.len() + aside.stored.len()) as u64;
        self.ops
            .push((Cf::Chunks, k, Value::Aside(aside.stored.clone())));
    }
    pub fn delete(&mut self, cf: Cf, key: impl Into<Vec<u8>>) {
        let k = key.into();
        self.bytes += k.len() as u64;
        self.ops.push((cf, k, Value::Delete));
    }
    /// Bytes of keys and values in the batch.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
    pub fn len(&self) -> usize {
        self.ops.len()
    }
}

/// A chunk value stored durably by [`Engine::put_aside`], not yet named by any key.
#[derive(Clone, Debug)]
pub struct Aside {
    /// What the chunks family holds for it (the value itself, or the engine's pointer to it).
    pub(crate) stored: Vec<u8>,
    /// While any copy lives, the engine does not reclaim the value's space.
    pub(crate) _hold: Option<Arc<packs::Hold>>,
}

pub type KvPairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Memory an engine holds, in bytes (see [`Engine::memory`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineMemory {
    /// Memtables of every column family, mutable and immutable (not yet flushed).
    pub memtables: u64,
    /// Blocks in the block cache (index and filter blocks included, where they are cached).
    pub block_cache: u64,
    /// Held by open table files outside the block cache.
    pub table_readers: u64,
}

/// Records `for_each` reads per scan of the engine.
const FOR_EACH_PAGE: usize = 1024;

/// A callback over key-value pairs; an error stops the walk.
pub type Visitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), StoreError> + 'a;

/// An ordered key-value store with column families.
///
/// Durability, per method:
/// - `write(.., Durability::Process)`: on return, visible to every reader and in the WAL
///   (survives `kill -9` of this process).
/// - `write(.., Durability::Disk)` and `sync()`: on return, every write so far survives power
///   loss.
/// - `get`/`scan` see every write that returned before they were called.
pub trait Engine: Send + Sync + 'static {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Look at a value in place, without copying it out (for large values read in part).
    fn get_with(
        &self,
        cf: Cf,
        key: &[u8],
        f: &mut dyn FnMut(Option<&[u8]>),
    ) -> Result<(), StoreError> {
        f(self.get(cf, key)?.as_deref());
        Ok(())
    }

    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), StoreError>;

    fn sync(&self) -> Result<(), StoreError>;

    /// Store chunk values durably ahead of the batch that will name them: on return each value
    /// survives power loss, but no key names it yet. A later `write` names it with
    /// [`WriteBatch::put_chunk_aside`], with any durability: the bytes are already on disk, so
    /// the batch stays small and a crash can never leave a key naming a value that is not
    /// there. A value never named (its writer failed, or crashed) is garbage that `compact`
    /// reclaims; its space is held while a copy of its [`Aside`] lives. Meant for large sealed
    /// chunks (a bulk write-out's): the RocksDB engine appends them to a pack file with one
    /// sync, where a `write` would put them through its log and then its table files.
    fn put_aside(&self, values: Vec<Vec<u8>>) -> Result<Vec<Aside>, StoreError> {
        Ok(values
            .into_iter()
            .map(|v| Aside {
                stored: v,
                _hold: None,
            })
            .collect())
    }

    /// Up to `limit` pairs whose key starts with `prefix` and is `>= start`, in key order.
    /// (`start` shorter than `prefix`, e.g. empty, means from the first key of the prefix.)
    fn scan(
        &self,
        cf: Cf,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<KvPairs, StoreError>;

    /// Move everything from the write-ahead log into checksummed table files, so that the data
    /// no longer depends on replaying the log (done at a clean close).
    fn flush_memtables(&self) -> Result<(), StoreError>;

    /// Reclaim the space of deleted and overwritten records now (rewrites what is live: run
    /// it when garbage has piled up, not on every change).
    fn compact(&self) -> Result<(), StoreError>;

    /// Bytes the engine occupies on disk (0 for memory engines).
    fn disk_bytes(&self) -> Result<u64, StoreError>;

    /// What the engine holds in memory now, for reports; `None` where it is not measured (the
    /// memory engine holds everything).
    fn memory(&self) -> Option<EngineMemory> {
        None
    }

    /// Visit every pair under `prefix`, in key order, in pages.
    fn for_each(&self, cf: Cf, prefix: &[u8], f: &mut Visitor<'_>) -> Result<(), StoreError> {
        let mut start = prefix.to_vec();
        loop {
            let page = self.scan(cf, prefix, &start, FOR_EACH_PAGE)?;
            let last = match page.last() {
                Some((k, _)) => k.clone(),
                None => return Ok(()),
            };
            for (k, v) in &page {
                f(k, v)?;
            }
            if page.len() < 1024 {
                return Ok(());
            }
            start = last;
            start.push(0);
        }
    }
}

/// The effective scan start: the larger of `prefix` and `start`.
pub(crate) fn scan_from<'a>(prefix: &'a [u8], start: &'a [u8]) -> &'a [u8] {
    if start > prefix {
        start
    } else {
        prefix
    }
}
