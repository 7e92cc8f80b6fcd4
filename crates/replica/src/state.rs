//! The replicated state as sealed records in an [`Engine`], and the transaction every fold step
//! runs in: it reads through its own writes and records, per operation, the value each key had
//! before the operation first touched it (the undo record).

use std::collections::{BTreeMap, BTreeSet};

use sealvol_crypto::{Domain, HashKey, MasterKey, Purpose, SealKey};
use sealvol_store::{Cf, Engine, WriteBatch};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{corrupt, Result};
use crate::ids::{NodeId, OpId};
use crate::op::{ChunkRef, Extent, Kind};

/// The subkeys a replica uses, derived from the volume's master key.
pub struct ReplicaKeys {
    /// Seals (and so authenticates) chain entries and snapshots.
    pub(crate) entry_seal: SealKey,
    /// Keyed hash: entry hashes of the chains, and the store keys of state records.
    pub(crate) hash: HashKey,
    /// Seals state records.
    pub(crate) record_seal: SealKey,
    pub(crate) chunk_seal: SealKey,
    pub(crate) chunk_addr: HashKey,
}

impl ReplicaKeys {
    pub fn derive(master: &MasterKey) -> ReplicaKeys {
        ReplicaKeys {
            entry_seal: master.seal_key(Purpose::SyncAuth),
            hash: master.hash_key(Purpose::SyncHash),
            record_seal: master.seal_key(Purpose::MetadataSeal),
            chunk_seal: master.seal_key(Purpose::ChunkSeal),
            chunk_addr: master.hash_key(Purpose::ChunkAddress),
        }
    }

    pub(crate) fn record_key(&self, t: Table, id: &[u8]) -> Vec<u8> {
        let (_, tag) = t.place();
        let mut k = Vec::with_capacity(1 + 8 + 16);
        k.push(tag);
        if t == Table::Name {
            // Names share an 8-byte prefix per directory, so a directory lists by prefix.
            let parent = &id[..17.min(id.len())];
            k.extend_from_slice(&self.hash.record_key::<8>(b"replica/dir", &[parent]));
        }
        k.extend_from_slice(&self.hash.record_key::<16>(t.label(), &[id]));
        k
    }

    pub(crate) fn dir_prefix(&self, dir: NodeId) -> Vec<u8> {
        let mut k = vec![Table::Name.place().1];
        k.extend_from_slice(
            &self
                .hash
                .record_key::<8>(b"replica/dir", &[dir.bytes().as_slice()]),
        );
        k
    }

    pub(crate) fn seal_record(&self, key: &[u8], plain: &[u8]) -> Result<Vec<u8>> {
        self.record_seal
            .seal(Domain::ReplicaRecord, 0, key, plain)
            .map_err(|e| corrupt(format!("sealing a record: {e}")))
    }

    pub(crate) fn open_record(&self, key: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        self.record_seal
            .open(Domain::ReplicaRecord, key, sealed)
            .map_err(|e| corrupt(format!("a replica record does not authenticate: {e}")))
    }
}

/// The kinds of state record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) enum Table {
    /// A tree node: where it is (parent, name) and which inode it names.
    Node,
    /// An inode: attributes and contents.
    Inode,
    /// The index (directory, name) → node.
    Name,
    /// Reference count of a chunk.
    Ref,
    /// Which inode holds a content version now.
    VerHome,
    /// The member list.
    Member,
    /// One piece of a file's current contents: (inode, index) → [`ExtentRec`].
    Extent,
    /// What a write replaced, per piece: (version, index) → [`PriorRec`]. Kept until the write
    /// is stable: a concurrent write based on an older version rebuilds that version from them.
    Prior,
    /// A write's place in its file's lineage: version → [`PriorHead`].
    PriorHead,
    /// The writes applied on a version: version → their ids (a rebuild of a version whose
    /// file moved on looks for a descendant still current somewhere).
    Children,
    /// Volume-wide settings every replica shares (the piece size).
    Volume,
    /// Only in undo records: what an operation added to a chunk's reference count. Undoing
    /// subtracts it from the count as it is then, so that references released outside the fold
    /// meanwhile (by trimming) are not put back, as a restored old count would.
    RefDelta,
}

impl Table {
    pub(crate) fn place(self) -> (Cf, u8) {
        match self {
            Table::Node => (Cf::Inodes, b'n'),
            Table::Inode => (Cf::Inodes, b'i'),
            Table::Name => (Cf::Dirents, b'd'),
            Table::Ref => (Cf::Refs, b'r'),
            Table::VerHome => (Cf::Meta, b'v'),
            Table::Member => (Cf::Meta, b'm'),
            Table::Extent => (Cf::Inodes, b'x'),
            Table::Prior => (Cf::Meta, b'p'),
            Table::PriorHead => (Cf::Meta, b'q'),
            Table::Children => (Cf::Meta, b'k'),
            Table::Volume => (Cf::Meta, b'c'),
            Table::RefDelta => (Cf::Refs, b'R'),
        }
    }
    fn label(self) -> &'static [u8] {
        match self {
            Table::Node => b"replica/node",
            Table::Inode => b"replica/inode",
            Table::Name => b"replica/name",
            Table::Ref => b"replica/ref",
            Table::VerHome => b"replica/verhome",
            Table::Member => b"replica/member",
            Table::Extent => b"replica/extent",
            Table::Prior => b"replica/prior",
            Table::PriorHead => b"replica/prior-head",
            Table::Children => b"replica/children",
            Table::Volume => b"replica/volume",
            Table::RefDelta => b"replica/ref-delta",
        }
    }
}

/// A tree node. Directories are their own inode; every other node is one name of a file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeRec {
    pub id: NodeId,
    pub parent: NodeId,
    pub name: Vec<u8>,
    pub inode: NodeId,
    pub is_dir: bool,
    /// Where the node was when it was moved into the trash, to bring it back (modify beats
    /// delete; a directory that receives a child comes back).
    pub trashed_from: Option<(NodeId, Vec<u8>)>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InodeRec {
    pub id: NodeId,
    pub kind: Kind,
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: i64,
    pub mtime: i64,
    pub ctime: i64,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    pub target: Vec<u8>,
    pub rdev: u32,
    /// The version of the contents: the write that made them (`None`: never written).
    pub version: Option<OpId>,
    /// Bytes; the contents are the pieces `0..ceil(size / chunk_size)` in [`Table::Extent`].
    pub size: u64,
    /// Live names (for a directory: itself while it is in the tree). Derived, kept sorted.
    pub links: Vec<NodeId>,
    /// Names in the trash, most recently removed last.
    pub trashed: Vec<NodeId>,
    /// Directories: live entries. Derived.
    pub children: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct NameRec {
    pub parent: NodeId,
    pub name: Vec<u8>,
    pub node: NodeId,
}

/// One piece of a file's contents.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct ExtentRec {
    pub inode: NodeId,
    pub index: u64,
    pub extent: Extent,
}

/// A piece as it was before write `version` changed it (`None`: there was none).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct PriorRec {
    pub version: OpId,
    pub index: u64,
    pub extent: Option<Extent>,
}

/// Where write `version` started: the version it was applied on, that version's size, and the
/// pieces it changed (each has a [`PriorRec`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct PriorHead {
    pub base: Option<OpId>,
    pub size: u64,
    pub indexes: Vec<u64>,
}

/// Pieces of a file of `size` bytes, in pieces of `chunk` bytes.
pub(crate) fn pieces(size: u64, chunk: u64) -> u64 {
    size.div_ceil(chunk.max(1))
}

/// A chunk's reference count (the address is kept so that a scan can name the chunk).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct RefRec {
    pub addr: [u8; 32],
    pub n: u64,
}

pub(crate) type UndoItem = (Table, Vec<u8>, Option<Vec<u8>>);

/// One operation's undo record so far, and the keys it has already recorded.
type Recording = (Vec<UndoItem>, BTreeSet<(Table, Vec<u8>)>);

/// A state record's key.
pub(crate) type RecKey = (Table, Vec<u8>);

/// What applying one operation did: its undo record (the previous value of each record it
/// wrote) and every record it read. Two operations commute when neither writes what the other
/// read or wrote.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Trace {
    pub(crate) undo: Vec<UndoItem>,
    /// `None`: not tracked ([`Tx::tracking`]).
    pub(crate) reads: Option<Vec<RecKey>>,
}

impl Trace {
    /// The records written.
    pub(crate) fn writes(&self) -> impl Iterator<Item = RecKey> + '_ {
        written_by(&self.undo)
    }
}

/// The records an undo record says were written (a reference count delta stands for its count
/// record).
pub(crate) fn written_by(undo: &[UndoItem]) -> impl Iterator<Item = RecKey> + '_ {
    undo.iter().map(|(t, id, _)| match t {
        Table::RefDelta => (Table::Ref, id.clone()),
        t => (*t, id.clone()),
    })
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    // Into a buffer reused across calls, then copied out at its exact size: grown from empty, the
    // vector was reallocated four or five times per inode record, and a vector sized ahead would
    // keep its spare room in the record cache.
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|s| {
        let mut buf = std::mem::take(&mut *s.borrow_mut());
        buf.clear();
        let buf = postcard::to_extend(v, buf).map_err(|e| corrupt(format!("encoding: {e}")))?;
        let out = buf.to_vec();
        *s.borrow_mut() = buf;
        Ok(out)
    })
}

pub(crate) fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T> {
    postcard::from_bytes(b).map_err(|e| corrupt(format!("decoding: {e}")))
}

/// Opened records by (table, id), so that a fold step does not read and open the same records
/// from the engine again (the tree's upper directories, the member list). Holds committed
/// values only: a transaction adds its writes after they are in the engine.
///
/// Two generations of at most `GENERATION` records each: when the newer is full it becomes the
/// older, and the old older is dropped on another thread. So no fold step waits for a large
/// map to be rehashed or freed (a single map cleared when full stalled one batch for 150 ms).
#[derive(Default)]
pub(crate) struct RecordCache {
    gens: parking_lot::Mutex<(Generation, Generation)>,
}

type Generation = std::collections::HashMap<RecordAt, Option<Vec<u8>>>;

/// A record's table and id.
type RecordAt = (Table, Vec<u8>);

/// Records per generation (about 10 MiB of small records).
const GENERATION: usize = 50_000;

impl RecordCache {
    fn get(&self, k: &(Table, Vec<u8>)) -> Option<Option<Vec<u8>>> {
        let g = self.gens.lock();
        g.0.get(k).or_else(|| g.1.get(k)).cloned()
    }
    fn insert(&self, k: (Table, Vec<u8>), v: Option<Vec<u8>>) {
        let mut g = self.gens.lock();
        if g.0.capacity() == 0 {
            g.0.reserve(GENERATION);
        }
        if g.0.len() >= GENERATION {
            let newer = std::mem::replace(&mut g.0, Generation::with_capacity(GENERATION));
            let older = std::mem::replace(&mut g.1, newer);
            // Freeing 50,000 records takes milliseconds: not on the fold's thread.
            let _ = std::thread::Builder::new()
                .name("sealvol-cache-drop".into())
                .spawn(move || drop(older));
        }
        g.0.insert(k, v);
    }
    /// After a commit: what it wrote.
    pub(crate) fn committed(&self, writes: Written) {
        for (k, v) in writes {
            self.insert(k, v);
        }
    }
}

/// A transaction's writes, in plaintext, to update the cache with once committed.
pub(crate) type Written = BTreeMap<(Table, Vec<u8>), Option<Vec<u8>>>;

/// A transaction over the state records.
pub(crate) struct Tx<'a> {
    eng: &'a dyn Engine,
    keys: &'a ReplicaKeys,
    cache: Option<&'a RecordCache>,
    writes: BTreeMap<(Table, Vec<u8>), Option<Vec<u8>>>,
    recording: Option<Recording>,
    /// While recording, if `track_reads`: the records read (with repeats).
    reads: std::cell::RefCell<Option<Vec<RecKey>>>,
    track_reads: bool,
    /// Operations were undone in this transaction (and most likely redone): at the end, records
    /// written back as they were are left out.
    restored: bool,
    /// The simulator's injected bug [`crate::Faults::mix_concurrent_writes`].
    pub(crate) mix: bool,
}

impl<'a> Tx<'a> {
    pub(crate) fn new(eng: &'a dyn Engine, keys: &'a ReplicaKeys) -> Self {
        Tx {
            eng,
            keys,
            cache: None,
            writes: BTreeMap::new(),
            recording: None,
            reads: std::cell::RefCell::new(None),
            track_reads: false,
            restored: false,
            mix: false,
        }
    }

    /// Record what each operation reads, for its [`Trace`].
    pub(crate) fn tracking(mut self, on: bool) -> Self {
        self.track_reads = on;
        self
    }

    pub(crate) fn mixing(mut self, mix: bool) -> Self {
        self.mix = mix;
        self
    }

    pub(crate) fn cached(mut self, cache: &'a RecordCache) -> Self {
        self.cache = Some(cache);
        self
    }

    pub(crate) fn raw_get(&self, t: Table, id: &[u8]) -> Result<Option<Vec<u8>>> {
        let k = (t, id.to_vec());
        if let Some(r) = self.reads.borrow_mut().as_mut() {
            r.push(k.clone());
        }
        if let Some(v) = self.writes.get(&k) {
            return Ok(v.clone());
        }
        if let Some(v) = self.cache.and_then(|c| c.get(&k)) {
            return Ok(v);
        }
        let key = self.keys.record_key(t, id);
        let v = match self.eng.get(t.place().0, &key)? {
            None => None,
            Some(sealed) => Some(self.keys.open_record(&key, &sealed)?),
        };
        if let Some(c) = self.cache {
            c.insert(k, v.clone());
        }
        Ok(v)
    }

    pub(crate) fn get<T: DeserializeOwned>(&self, t: Table, id: &[u8]) -> Result<Option<T>> {
        match self.raw_get(t, id)? {
            None => Ok(None),
            Some(b) => Ok(Some(decode(&b)?)),
        }
    }

    pub(crate) fn raw_set(&mut self, t: Table, id: &[u8], v: Option<Vec<u8>>) -> Result<()> {
        let pre = match &self.recording {
            Some((_, seen)) if !seen.contains(&(t, id.to_vec())) => Some(self.raw_get(t, id)?),
            _ => None,
        };
        if let (Some(pre), Some((undo, seen))) = (pre, self.recording.as_mut()) {
            seen.insert((t, id.to_vec()));
            undo.push((t, id.to_vec(), pre));
        }
        self.writes.insert((t, id.to_vec()), v);
        Ok(())
    }

    pub(crate) fn put<T: Serialize>(&mut self, t: Table, id: &[u8], v: &T) -> Result<()> {
        let b = encode(v)?;
        self.raw_set(t, id, Some(b))
    }

    pub(crate) fn del(&mut self, t: Table, id: &[u8]) -> Result<()> {
        self.raw_set(t, id, None)
    }

    /// Start recording pre-images for one operation.
    pub(crate) fn begin(&mut self) {
        self.recording = Some((Vec::new(), BTreeSet::new()));
        *self.reads.borrow_mut() = self.track_reads.then(Vec::new);
    }

    /// Stop recording; the operation's undo record and the records it read.
    pub(crate) fn finish(&mut self) -> Result<Trace> {
        let mut reads = self.reads.borrow_mut().take();
        if let Some(r) = reads.as_mut() {
            r.sort_unstable();
            r.dedup();
        }
        let undo = self.recording.take().map(|(u, _)| u).unwrap_or_default();
        let mut out = Vec::with_capacity(undo.len());
        for (t, id, pre) in undo {
            if t != Table::Ref {
                out.push((t, id, pre));
                continue;
            }
            let before = match &pre {
                Some(b) => decode::<RefRec>(b)?.n,
                None => 0,
            };
            let after = self.get::<RefRec>(Table::Ref, &id)?.map_or(0, |r| r.n);
            let delta = after as i64 - before as i64;
            if delta != 0 {
                out.push((Table::RefDelta, id, Some(encode(&delta)?)));
            }
        }
        Ok(Trace { undo: out, reads })
    }

    /// Put back what an operation changed (its undo record), newest change last undone first.
    pub(crate) fn restore(&mut self, undo: &[UndoItem]) -> Result<()> {
        self.restored = true;
        for (t, id, pre) in undo.iter().rev() {
            if *t == Table::RefDelta {
                let delta: i64 = decode(pre.as_deref().unwrap_or_default())?;
                let now = self.get::<RefRec>(Table::Ref, id)?.map_or(0, |r| r.n);
                let n = now as i64 - delta;
                let v = match n {
                    0 => None,
                    n if n > 0 => {
                        let addr: [u8; 32] = id
                            .as_slice()
                            .try_into()
                            .map_err(|_| corrupt("a malformed chunk address in an undo record"))?;
                        Some(encode(&RefRec { addr, n: n as u64 })?)
                    }
                    _ => return Err(corrupt("undoing took a reference count below zero")),
                };
                self.writes.insert((Table::Ref, id.clone()), v);
            } else {
                self.writes.insert((*t, id.clone()), pre.clone());
            }
        }
        Ok(())
    }

    /// Seal every write into `batch`; the writes, for [`RecordCache::committed`].
    pub(crate) fn into_batch(mut self, batch: &mut WriteBatch) -> Result<Written> {
        if self.restored {
            // An undo and redo rewrites every record the redone operations touch, mostly with
            // what they held: only real changes are written (and reported to a mount, which
            // would otherwise invalidate every name the redone operations made).
            let writes = std::mem::take(&mut self.writes);
            for ((t, id), v) in writes {
                if self.raw_get(t, &id)? != v {
                    self.writes.insert((t, id), v);
                }
            }
        }
        for ((t, id), v) in &self.writes {
            let key = self.keys.record_key(*t, id);
            let cf = t.place().0;
            match v {
                Some(plain) => {
                    let sealed = self.keys.seal_record(&key, plain)?;
                    batch.put(cf, key, sealed);
                }
                None => batch.delete(cf, key),
            }
        }
        Ok(self.writes)
    }

    // Typed accessors.

    pub(crate) fn node(&self, n: NodeId) -> Result<Option<NodeRec>> {
        self.get(Table::Node, &n.bytes())
    }
    pub(crate) fn put_node(&mut self, r: &NodeRec) -> Result<()> {
        self.put(Table::Node, &r.id.bytes(), r)
    }
    pub(crate) fn inode(&self, n: NodeId) -> Result<Option<InodeRec>> {
        self.get(Table::Inode, &n.bytes())
    }
    pub(crate) fn put_inode(&mut self, r: &InodeRec) -> Result<()> {
        self.put(Table::Inode, &r.id.bytes(), r)
    }
    pub(crate) fn lookup(&self, parent: NodeId, name: &[u8]) -> Result<Option<NodeId>> {
        Ok(self
            .get::<NameRec>(Table::Name, &name_id(parent, name))?
            .map(|r| r.node))
    }
    pub(crate) fn set_name(
        &mut self,
        parent: NodeId,
        name: &[u8],
        node: Option<NodeId>,
    ) -> Result<()> {
        let id = name_id(parent, name);
        match node {
            Some(node) => self.put(
                Table::Name,
                &id,
                &NameRec {
                    parent,
                    name: name.to_vec(),
                    node,
                },
            ),
            None => self.del(Table::Name, &id),
        }
    }
    pub(crate) fn refs(&self, addr: &[u8; 32]) -> Result<u64> {
        Ok(self.get::<RefRec>(Table::Ref, addr)?.map_or(0, |r| r.n))
    }
    pub(crate) fn add_refs<'c>(
        &mut self,
        chunks: impl IntoIterator<Item = &'c ChunkRef>,
        delta: i64,
    ) -> Result<()> {
        for c in chunks {
            let n = self.refs(&c.addr)? as i64 + delta;
            if n < 0 {
                return Err(corrupt("a chunk's reference count fell below zero"));
            }
            if n == 0 {
                self.del(Table::Ref, &c.addr)?;
            } else {
                self.put(
                    Table::Ref,
                    &c.addr,
                    &RefRec {
                        addr: c.addr,
                        n: n as u64,
                    },
                )?;
            }
        }
        Ok(())
    }
    /// The volume's piece size (set when the volume was founded).
    pub(crate) fn chunk_size(&self) -> Result<u64> {
        self.get::<u32>(Table::Volume, b"chunk-size")?
            .map(u64::from)
            .filter(|c| *c > 0)
            .ok_or_else(|| corrupt("the volume's piece size is missing"))
    }
    pub(crate) fn extent(&self, inode: NodeId, index: u64) -> Result<Option<Extent>> {
        Ok(self
            .get::<ExtentRec>(Table::Extent, &piece_id(&inode.bytes(), index))?
            .map(|r| r.extent))
    }
    /// Set one piece, keeping reference counts: the old piece's chunks lose a reference
    /// (unless `keep_old`: a [`PriorRec`] takes them over), the new one's gain one.
    pub(crate) fn set_extent(
        &mut self,
        inode: NodeId,
        index: u64,
        new: Option<&Extent>,
        keep_old: bool,
    ) -> Result<Option<Extent>> {
        let old = self.extent(inode, index)?;
        if !keep_old {
            if let Some(o) = &old {
                self.add_refs(o.chunks(), -1)?;
            }
        }
        let id = piece_id(&inode.bytes(), index);
        match new {
            Some(e) if !e.is_empty() => {
                self.add_refs(e.chunks(), 1)?;
                self.put(
                    Table::Extent,
                    &id,
                    &ExtentRec {
                        inode,
                        index,
                        extent: e.clone(),
                    },
                )?;
            }
            _ => self.del(Table::Extent, &id)?,
        }
        Ok(old)
    }
    pub(crate) fn prior(&self, v: OpId, index: u64) -> Result<Option<Option<Extent>>> {
        Ok(self
            .get::<PriorRec>(Table::Prior, &piece_id(&v.key(), index))?
            .map(|r| r.extent))
    }
    pub(crate) fn put_prior(&mut self, v: OpId, index: u64, e: Option<Extent>) -> Result<()> {
        self.put(
            Table::Prior,
            &piece_id(&v.key(), index),
            &PriorRec {
                version: v,
                index,
                extent: e,
            },
        )
    }
    pub(crate) fn prior_head(&self, v: OpId) -> Result<Option<PriorHead>> {
        self.get(Table::PriorHead, &v.key())
    }
    pub(crate) fn children(&self, v: OpId) -> Result<Vec<OpId>> {
        Ok(self.get(Table::Children, &v.key())?.unwrap_or_default())
    }
    fn set_children(&mut self, v: OpId, c: &[OpId]) -> Result<()> {
        if c.is_empty() {
            self.del(Table::Children, &v.key())
        } else {
            self.put(Table::Children, &v.key(), &c)
        }
    }
    /// Record where write `v` started (`h`), linking it under its base.
    pub(crate) fn put_prior_head(&mut self, v: OpId, h: &PriorHead) -> Result<()> {
        if let Some(b) = h.base {
            let mut c = self.children(b)?;
            c.push(v);
            self.set_children(b, &c)?;
        }
        self.put(Table::PriorHead, &v.key(), h)
    }
    /// Forget what write `v` replaced (it is stable): its chunks lose those references.
    pub(crate) fn drop_prior(&mut self, v: OpId) -> Result<()> {
        let Some(h) = self.prior_head(v)? else {
            return Ok(());
        };
        if let Some(b) = h.base {
            let mut c = self.children(b)?;
            c.retain(|x| *x != v);
            self.set_children(b, &c)?;
        }
        for i in h.indexes {
            if let Some(Some(e)) = self.prior(v, i)? {
                self.add_refs(e.chunks(), -1)?;
            }
            self.del(Table::Prior, &piece_id(&v.key(), i))?;
        }
        self.del(Table::PriorHead, &v.key())
    }
    pub(crate) fn verhome(&self, v: OpId) -> Result<Option<NodeId>> {
        self.get(Table::VerHome, &v.key())
    }
    pub(crate) fn set_verhome(&mut self, v: OpId, home: Option<NodeId>) -> Result<()> {
        match home {
            Some(h) => self.put(Table::VerHome, &v.key(), &h),
            None => self.del(Table::VerHome, &v.key()),
        }
    }
}

fn piece_id(prefix: &[u8], index: u64) -> Vec<u8> {
    let mut id = prefix.to_vec();
    id.extend_from_slice(&index.to_be_bytes());
    id
}

pub(crate) fn name_id(parent: NodeId, name: &[u8]) -> Vec<u8> {
    let mut id = parent.bytes().to_vec();
    id.extend_from_slice(name);
    id
}
