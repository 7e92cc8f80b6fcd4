//! A replica: its own chain of entries, the chains of every other member as far as it has them
//! (its version vector), and the state they fold into.
//!
//! Receiving an entry: authenticate it (sealed under the volume's sync key, bound to the volume,
//! its origin and its sequence number), check it extends its origin's chain (dense sequence,
//! hash of the previous entry), hold it if it comes early (a gap, an origin not yet admitted, a
//! stamp too far in the future), refuse it if it contradicts what is known (a fork, a removed
//! member), and fold it: undo the operations that sort after it, apply it, redo them; all in one
//! atomic batch with the entry itself and the new chain head.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use sealvol_crypto::Domain;
use sealvol_store::{Cf, Durability, Engine, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::apply::{apply, Applied, Member};
use crate::error::{corrupt, Error, Result};
use crate::ids::{Hlc, NodeId, OpId, ReplicaId};
use crate::op::{ChunkRef, Extent, Kind, Op, Slice, Victim, MAX_SLICES};
use crate::state::{
    decode, encode, pieces, ExtentRec, InodeRec, NameRec, NodeRec, PriorRec, RecKey, RecordCache,
    RefRec, ReplicaKeys, Table, Trace, Tx, UndoItem,
};

/// Wall-clock milliseconds, injected so that simulations can skew and step it.
pub trait WallClock: Send + Sync {
    fn now_ms(&self) -> u64;
}

#[derive(Debug, Default)]
pub struct SystemWallClock;

impl WallClock for SystemWallClock {
    fn now_ms(&self) -> u64 {
        #[allow(clippy::disallowed_methods)]
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        d.as_millis() as u64
    }
}

/// An entry as it travels and is stored: sealed; origin and sequence number in the clear (they
/// are bound into the seal).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedEntry {
    pub origin: ReplicaId,
    pub seq: u64,
    pub bytes: Vec<u8>,
    /// Ed25519 signature by the origin's member key over the volume, origin, sequence number
    /// and sealed bytes: another key holder cannot write as this member.
    pub sig: Vec<u8>,
}

impl SealedEntry {
    /// As stored: the sealed bytes, then the signature.
    fn stored(&self) -> Vec<u8> {
        let mut v = self.bytes.clone();
        v.extend_from_slice(&self.sig);
        v
    }
    fn from_stored(origin: ReplicaId, seq: u64, mut v: Vec<u8>) -> SealedEntry {
        let sig = v.split_off(v.len().saturating_sub(SIG_LEN));
        SealedEntry {
            origin,
            seq,
            bytes: v,
            sig,
        }
    }
}

const SIG_LEN: usize = 64;

/// An entry that extends its chain in fold order: its id, operation, new head, and its
/// origin's member key (to check its signature with).
type InOrder = (OpId, Op, Head, [u8; 32]);

/// A member's Ed25519 signing key (PKCS#8), made by the member itself; only its public half
/// leaves the host (in the `AddMember` operation that admits it). Zeroized on drop.
pub struct MemberKey(Vec<u8>);

impl MemberKey {
    pub fn generate() -> Result<MemberKey> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| corrupt("the system's random generator failed"))?;
        Ok(MemberKey(pkcs8.as_ref().to_vec()))
    }
    fn pair(&self) -> Result<ring::signature::Ed25519KeyPair> {
        ring::signature::Ed25519KeyPair::from_pkcs8(&self.0)
            .map_err(|_| corrupt("the member's signing key is malformed"))
    }
    /// The same key twice (the benchmark applies one history twice, as one joiner).
    pub(crate) fn to_pkcs8_for_bench(&self) -> Vec<u8> {
        self.0.clone()
    }
    pub(crate) fn from_pkcs8_for_bench(v: Vec<u8>) -> MemberKey {
        MemberKey(v)
    }

    /// The public half, for [`Replica::admit`].
    pub fn public(&self) -> Result<[u8; 32]> {
        use ring::signature::KeyPair;
        let mut out = [0u8; 32];
        out.copy_from_slice(self.pair()?.public_key().as_ref());
        Ok(out)
    }
}

impl Drop for MemberKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl std::fmt::Debug for MemberKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemberKey(..)")
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct EntryBody {
    prev: [u8; 32],
    hlc: Hlc,
    op: Op,
}

/// The newest entry of an origin's chain that a replica has applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub seq: u64,
    pub hash: [u8; 32],
    pub hlc: Hlc,
}

/// Per origin, the newest entry applied.
pub type VersionVector = BTreeMap<ReplicaId, Head>;

/// Settings.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// An entry stamped further than this ahead of the local clock is held (and reported), not
    /// applied: it would win every later conflict.
    pub max_skew_ms: u64,
    /// A member silent for longer than this (its newest entry is older) is removed by
    /// [`Replica::trim`]: it no longer holds trimming back, and must re-join.
    pub silent_ms: u64,
    /// The piece size of a volume [`Replica::found`] makes (a replica that opens or joins a
    /// volume takes the volume's, which every replica shares).
    pub chunk_size: u32,
    /// Bugs to inject, for the simulator's own tests only.
    pub faults: Faults,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_skew_ms: 60_000,
            silent_ms: 7 * 24 * 3600 * 1000,
            chunk_size: 128 << 10,
            faults: Faults::default(),
        }
    }
}

/// Deliberate bugs, so that tests can show the simulator catches them. Never set outside tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Apply an entry again when it arrives twice.
    pub reapply_duplicates: bool,
    /// A `chmod` sends every attribute as its author sees them (last writer wins per record).
    pub whole_record_attrs: bool,
    /// Apply entries in arrival order, without undoing and redoing later ones.
    pub no_undo_redo: bool,
    /// Lay a concurrent write's pieces over the newer contents instead of its own base.
    pub mix_concurrent_writes: bool,
}

/// What became of a received entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    Applied,
    /// Seen before: nothing to do.
    Duplicate,
    Held(Hold),
    Refused(Refusal),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// Entries before it in its chain are missing (the sender or the path lags).
    Gap,
    /// Its origin is not (yet) a member here.
    UnknownMember,
    /// Stamped this far ahead of the local clock.
    Future { ahead_ms: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Does not authenticate under this volume's key (or was made for another volume).
    Forged,
    /// A second, different entry for one (origin, sequence number): two replicas claim one id
    /// (a copied store), or a member rewrote its history.
    Fork,
    /// Older than the history kept here, and not verifiable: a replay of old state.
    Stale,
    /// From a replica removed from the volume.
    RemovedMember,
}

/// A fork: two different entries for one position of one chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fork {
    pub origin: ReplicaId,
    pub seq: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Local {
    id: ReplicaId,
    volume: [u8; 16],
    /// The next node number this replica allocates.
    next_node: u64,
    /// Replicas this one has admitted.
    admitted: u64,
    /// The largest HLC stamp seen.
    hlc: Hlc,
    /// The last operation in fold order.
    last: Option<OpId>,
    /// This member's signing key (PKCS#8).
    key: Vec<u8>,
}

impl Drop for Local {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct LogRec {
    op: Op,
    undo: Vec<UndoItem>,
}

/// A point-in-time copy of a replica's replicated state, sealed as a whole: a new replica
/// starts from it, then applies the entries after its version vector.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Snapshot {
    pub bytes: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    volume: [u8; 16],
    last: Option<OpId>,
    hlc: Hlc,
    pairs: Vec<(u8, Vec<u8>, Vec<u8>)>,
}

/// Counters, for reports and benchmarks.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    pub applied: u64,
    pub undone: u64,
    pub skipped: u64,
    /// Runs of late entries folded together ([`Replica::receive_batch`]), and their entries.
    pub late_runs: u64,
    pub late_entries: u64,
    /// Late runs that commuted with every operation after them: folded without undo or redo.
    pub commuted_runs: u64,
}

const LOCAL_KEY: &[u8] = b"L";
const HEAD_PREFIX: u8 = b'h';
const ENTRY_PREFIX: u8 = b'e';
const OPLOG_PREFIX: u8 = b'o';
const FORK_PREFIX: u8 = b'f';

pub struct Replica {
    eng: Arc<dyn Engine>,
    keys: Arc<ReplicaKeys>,
    clock: Arc<dyn WallClock>,
    cfg: Config,
    local: Local,
    vv: VersionVector,
    held: BTreeMap<(ReplicaId, u64), SealedEntry>,
    forks: Vec<Fork>,
    refused: Vec<(ReplicaId, u64, Refusal)>,
    counters: Counters,
    cache: Arc<RecordCache>,
    /// What each folded operation after some point read and wrote, for `fold_commuting`.
    footprints: Footprints,
    /// This member's signing key, parsed once.
    signer: Option<ring::signature::Ed25519KeyPair>,
    changes: Changes,
    /// Counts chunks received; readers waiting for a pending chunk wait on it.
    arrivals: Arc<(parking_lot::Mutex<u64>, parking_lot::Condvar)>,
}

/// What committed folds changed since [`Replica::take_changes`]: the names (directory, name)
/// and the inodes (attributes, contents, link counts) a mount must tell the kernel to forget,
/// so that no stale name, attribute or page is served once a remote change is applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub names: BTreeSet<(NodeId, Vec<u8>)>,
    pub inodes: BTreeSet<NodeId>,
}

impl Changes {
    fn note(&mut self, written: &crate::state::Written) {
        for (t, id) in written.keys() {
            match t {
                Table::Name => {
                    if let Some(parent) = NodeId::from_bytes(id) {
                        self.names.insert((parent, id[17..].to_vec()));
                    }
                }
                Table::Inode => {
                    if let Some(n) = NodeId::from_bytes(id) {
                        self.inodes.insert(n);
                    }
                }
                _ => {}
            }
        }
    }
}

/// The records one folded operation wrote and read.
#[derive(Debug)]
struct Footprint {
    writes: Vec<RecKey>,
    reads: Vec<RecKey>,
}

impl Footprint {
    fn of(undo: &[UndoItem], reads: &[RecKey]) -> Footprint {
        Footprint {
            writes: crate::state::written_by(undo).collect(),
            reads: reads.to_vec(),
        }
    }
}

/// The footprints of the folded operations after `covers`, every one of them, taken as each was
/// applied (at most [`Footprints::MAX`]); `covers` `None`: none kept. A late run that cannot
/// use them undoes and redoes every operation after it, which makes them known from there on.
/// Forgotten whenever memory is reloaded from the store. Memory only: the fold log keeps undo
/// records, not read sets.
#[derive(Debug, Default)]
struct Footprints {
    covers: Option<OpId>,
    ops: BTreeMap<OpId, Arc<Footprint>>,
}

impl Footprints {
    const MAX: usize = 50_000;

    /// Keeping every operation's footprint after `from` (none yet).
    fn after(from: OpId) -> Footprints {
        Footprints {
            covers: Some(from),
            ops: BTreeMap::new(),
        }
    }

    /// Keep `id`'s footprint, if footprints are kept (only after a late run asked for them).
    fn note(&mut self, id: OpId, f: impl FnOnce() -> Footprint) {
        if self.covers.is_none() {
            return;
        }
        self.ops.insert(id, Arc::new(f()));
        if self.ops.len() > Self::MAX {
            // Forget the older half; what is known starts after it.
            let keep = self
                .ops
                .split_off(&self.ops.keys().nth(Self::MAX / 2).copied().unwrap_or(id));
            let dropped = std::mem::replace(&mut self.ops, keep);
            if let (Some(c), Some(last)) = (self.covers, dropped.keys().next_back()) {
                self.covers = Some(c.max(*last));
            }
        }
    }
}

/// Counts the chunks that arrived from elsewhere and wakes those waiting for one
/// ([`Replica::arrivals`]).
#[derive(Clone)]
pub struct Arrivals(Arc<(parking_lot::Mutex<u64>, parking_lot::Condvar)>);

impl Arrivals {
    /// How many chunks have arrived so far.
    pub fn count(&self) -> u64 {
        *self.0 .0.lock()
    }

    /// Wait until more than `seen` chunks have arrived or `deadline` passes; `false` if it
    /// passed with none.
    pub fn wait_past(&self, seen: u64, deadline: std::time::Instant) -> bool {
        let (n, arrived) = &*self.0;
        let mut g = n.lock();
        while *g == seen {
            if arrived.wait_until(&mut g, deadline).timed_out() {
                return *g != seen;
            }
        }
        true
    }
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("id", &self.local.id)
            .finish_non_exhaustive()
    }
}

fn meta_key(prefix: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = vec![prefix];
    k.extend_from_slice(rest);
    k
}

fn entry_key(origin: ReplicaId, seq: u64) -> Vec<u8> {
    let mut k = vec![ENTRY_PREFIX];
    k.extend_from_slice(&origin.0.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

impl Replica {
    /// A new volume, with this replica as its first member.
    pub fn found(
        eng: Arc<dyn Engine>,
        keys: Arc<ReplicaKeys>,
        clock: Arc<dyn WallClock>,
        cfg: Config,
        volume: [u8; 16],
        id: ReplicaId,
    ) -> Result<Replica> {
        let key = MemberKey::generate()?;
        let public = key.public()?;
        let mut r = Replica::blank(
            eng,
            keys,
            clock,
            cfg,
            volume,
            id,
            None,
            Hlc(0),
            key.0.clone(),
        );
        let mut tx = Tx::new(&*r.eng, &r.keys);
        if r.cfg.chunk_size == 0 {
            return Err(Error::Invalid("the piece size must be at least 1 byte"));
        }
        tx.put(Table::Volume, b"chunk-size", &r.cfg.chunk_size)?;
        let root = NodeRec {
            id: NodeId::ROOT,
            parent: NodeId::ROOT,
            name: Vec::new(),
            inode: NodeId::ROOT,
            is_dir: true,
            trashed_from: None,
        };
        tx.put_node(&root)?;
        tx.put_inode(&InodeRec {
            id: NodeId::ROOT,
            kind: Kind::Dir,
            perm: 0o755,
            uid: 0,
            gid: 0,
            atime: 0,
            mtime: 0,
            ctime: 0,
            xattrs: Default::default(),
            target: Vec::new(),
            rdev: 0,
            version: None,
            size: 0,
            links: vec![NodeId::ROOT],
            trashed: Vec::new(),
            children: 0,
        })?;
        let mut b = WriteBatch::new();
        tx.into_batch(&mut b)?;
        r.put_local(&mut b)?;
        r.eng.write(b, Durability::Disk)?;
        r.commit_local(Op::AddMember { id, key: public })?;
        Ok(r)
    }

    #[allow(clippy::too_many_arguments)]
    fn blank(
        eng: Arc<dyn Engine>,
        keys: Arc<ReplicaKeys>,
        clock: Arc<dyn WallClock>,
        cfg: Config,
        volume: [u8; 16],
        id: ReplicaId,
        last: Option<OpId>,
        hlc: Hlc,
        key: Vec<u8>,
    ) -> Replica {
        Replica {
            eng,
            keys,
            clock,
            cfg,
            local: Local {
                id,
                volume,
                next_node: 1,
                admitted: 0,
                hlc,
                last,
                key,
            },
            vv: BTreeMap::new(),
            held: BTreeMap::new(),
            forks: Vec::new(),
            refused: Vec::new(),
            counters: Counters::default(),
            cache: Arc::new(RecordCache::default()),
            footprints: Footprints::default(),
            signer: None,
            changes: Changes::default(),
            arrivals: Arc::default(),
        }
    }

    /// Open a replica from its store (after a restart or a crash).
    pub fn open(
        eng: Arc<dyn Engine>,
        keys: Arc<ReplicaKeys>,
        clock: Arc<dyn WallClock>,
        cfg: Config,
    ) -> Result<Replica> {
        let sealed = eng
            .get(Cf::Meta, LOCAL_KEY)?
            .ok_or_else(|| corrupt("no replica in this store"))?;
        let local: Local = decode(&keys.open_record(LOCAL_KEY, &sealed)?)?;
        let mut r = Replica::blank(
            eng,
            keys,
            clock,
            cfg,
            local.volume,
            local.id,
            local.last,
            local.hlc,
            Vec::new(),
        );
        r.local = local;
        r.load_vv()?;
        r.load_forks()?;
        for (m, state) in r.member_states()? {
            if matches!(state, Member::Removed { .. }) {
                r.drop_beyond_cutoff(m)?;
            }
        }
        Ok(r)
    }

    fn load_vv(&mut self) -> Result<()> {
        let mut vv = BTreeMap::new();
        let keys = self.keys.clone();
        self.eng.for_each(Cf::Meta, &[HEAD_PREFIX], &mut |k, v| {
            let head: Head =
                decode(&keys.open_record(k, v).map_err(to_store)?).map_err(to_store)?;
            let mut o = [0u8; 8];
            o.copy_from_slice(&k[1..9]);
            vv.insert(ReplicaId(u64::from_be_bytes(o)), head);
            Ok(())
        })?;
        self.vv = vv;
        Ok(())
    }

    pub fn id(&self) -> ReplicaId {
        self.local.id
    }
    pub fn version_vector(&self) -> &VersionVector {
        &self.vv
    }
    pub fn forks(&self) -> &[Fork] {
        &self.forks
    }
    pub fn refused(&self) -> &[(ReplicaId, u64, Refusal)] {
        &self.refused
    }
    pub fn held(&self) -> usize {
        self.held.len()
    }
    /// Held entries: (origin, seq), with the head applied from that origin.
    pub fn held_summary(&self) -> Vec<(String, u64, u64)> {
        self.held
            .keys()
            .map(|(o, s)| (o.short(), *s, self.vv.get(o).map_or(0, |h| h.seq)))
            .collect()
    }
    pub fn counters(&self) -> Counters {
        self.counters
    }
    /// The names and inodes changed since the last call.
    pub fn take_changes(&mut self) -> Changes {
        std::mem::take(&mut self.changes)
    }
    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.eng
    }
    pub(crate) fn keys_ref(&self) -> &ReplicaKeys {
        &self.keys
    }
    pub(crate) fn version_home(&self, v: OpId) -> Result<Option<NodeId>> {
        self.tx().verhome(v)
    }
    pub(crate) fn receive_chunk_check(&self, addr: &[u8; 32], sealed: &[u8]) -> bool {
        self.open_chunk(addr, sealed).is_ok()
    }

    fn put_local(&self, b: &mut WriteBatch) -> Result<()> {
        let plain = encode(&self.local)?;
        b.put(
            Cf::Meta,
            LOCAL_KEY.to_vec(),
            self.keys.seal_record(LOCAL_KEY, &plain)?,
        );
        Ok(())
    }

    fn tick(&mut self) -> Hlc {
        let phys = Hlc::from_ms(self.clock.now_ms());
        self.local.hlc = Hlc(phys.0.max(self.local.hlc.0 + 1));
        self.local.hlc
    }

    fn binding(&self, origin: ReplicaId, seq: u64) -> Vec<u8> {
        let mut b = self.local.volume.to_vec();
        b.extend_from_slice(&origin.0.to_be_bytes());
        b.extend_from_slice(&seq.to_be_bytes());
        b
    }

    fn entry_hash(&self, origin: ReplicaId, seq: u64, plain: &[u8]) -> [u8; 32] {
        self.keys.hash.record_key::<32>(
            b"replica/entry",
            &[&origin.0.to_be_bytes(), &seq.to_be_bytes(), plain],
        )
    }

    fn sig_msg(&self, origin: ReplicaId, seq: u64, bytes: &[u8]) -> Vec<u8> {
        let mut m = b"sealvol/sync-entry-sig".to_vec();
        m.extend_from_slice(&self.binding(origin, seq));
        m.extend_from_slice(bytes);
        m
    }

    /// Whether `e` is signed by the member key `key`.
    fn signed_by(&self, e: &SealedEntry, key: &[u8; 32]) -> bool {
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key)
            .verify(&self.sig_msg(e.origin, e.seq, &e.bytes), &e.sig)
            .is_ok()
    }

    /// Authenticate and decode an entry; its hash.
    fn open_entry(&self, e: &SealedEntry) -> Option<(EntryBody, [u8; 32])> {
        let plain = self
            .keys
            .entry_seal
            .open(Domain::SyncEntry, &self.binding(e.origin, e.seq), &e.bytes)
            .ok()?;
        let body: EntryBody = decode(&plain).ok()?;
        Some((body, self.entry_hash(e.origin, e.seq, &plain)))
    }

    /// Make, apply and store a local change: the returned id acknowledges it.
    pub(crate) fn commit_local(&mut self, op: Op) -> Result<OpId> {
        let me = self.local.id;
        if let Some(Member::Removed { .. }) = self.member(me)? {
            return Err(Error::Invalid(
                "this replica was removed from the volume (silent too long, or its store was copied): re-join from a snapshot",
            ));
        }
        let head = self.vv.get(&me).copied();
        let seq = head.map_or(1, |h| h.seq + 1);
        let hlc = self.tick();
        let body = EntryBody {
            prev: head.map_or([0; 32], |h| h.hash),
            hlc,
            op,
        };
        let plain = encode(&body)?;
        let bytes = self
            .keys
            .entry_seal
            .seal(Domain::SyncEntry, 0, &self.binding(me, seq), &plain)
            .map_err(|e| corrupt(format!("sealing an entry: {e}")))?;
        let hash = self.entry_hash(me, seq, &plain);
        if self.signer.is_none() {
            self.signer = Some(MemberKey(self.local.key.clone()).pair()?);
        }
        let msg = self.sig_msg(me, seq, &bytes);
        let sig = match &self.signer {
            Some(k) => k.sign(&msg).as_ref().to_vec(),
            None => return Err(corrupt("no signing key")),
        };
        let entry = SealedEntry {
            origin: me,
            seq,
            bytes,
            sig,
        };
        let id = OpId {
            hlc,
            origin: me,
            seq,
        };
        self.integrate(id, &body.op, &entry, Head { seq, hash, hlc })?;
        Ok(id)
    }

    /// Fold `op` in at its place, with its entry and the new head of its chain, atomically.
    fn integrate(&mut self, id: OpId, op: &Op, entry: &SealedEntry, head: Head) -> Result<Applied> {
        let later = if self.cfg.faults.no_undo_redo || self.local.last.is_none_or(|l| l < id) {
            Vec::new()
        } else {
            self.log_after(id)?
        };
        let keys = self.keys.clone();
        let eng = self.eng.clone();
        let cache = self.cache.clone();
        let mut tx = Tx::new(&*eng, &keys)
            .cached(&cache)
            .mixing(self.cfg.faults.mix_concurrent_writes)
            .tracking(self.footprints.covers.is_some());
        let mut b = WriteBatch::new();
        let applied = self.fold_into(&mut tx, &mut b, id, op, later)?;
        self.note_applied(&mut b, id, op, entry, head);
        self.commit(tx, b, &cache, &[entry.origin])?;
        if let Op::RemoveMember { id: gone, .. } = op {
            self.drop_beyond_cutoff(*gone)?;
        }
        Ok(applied)
    }

    /// A removed member's operations after its cutoff leave the fold on every replica (they
    /// may have been applied here before the removal arrived): undo from the first of them,
    /// forget them, redo the rest. Also run at open, in case a crash came between.
    fn drop_beyond_cutoff(&mut self, gone: ReplicaId) -> Result<()> {
        let Some(Member::Removed { upto, .. }) = self.member(gone)? else {
            return Ok(());
        };
        self.held.retain(|(o, s), _| *o != gone || *s <= upto);
        let all = self.log_from(None)?;
        let beyond = |id: &OpId| id.origin == gone && id.seq > upto;
        let Some(first) = all.iter().position(|(id, _)| beyond(id)) else {
            return Ok(());
        };
        let tail = &all[first..];
        let keys = self.keys.clone();
        let eng = self.eng.clone();
        let cache = self.cache.clone();
        let mut tx = Tx::new(&*eng, &keys)
            .cached(&cache)
            .mixing(self.cfg.faults.mix_concurrent_writes);
        let mut b = WriteBatch::new();
        for (_, rec) in tail.iter().rev() {
            tx.restore(&rec.undo)?;
        }
        let mut dropped = 0u64;
        for (id, rec) in tail {
            if beyond(id) {
                b.delete(Cf::Log, meta_key(OPLOG_PREFIX, &id.key()));
                b.delete(Cf::Log, entry_key(id.origin, id.seq));
                dropped += 1;
            } else {
                tx.begin();
                apply(&mut tx, *id, &rec.op)?;
                let undo = tx.finish()?;
                self.put_logrec(&mut b, *id, &rec.op, undo)?;
            }
        }
        self.counters.undone += tail.len() as u64;
        // Its chain ends at the cutoff here.
        let head = match self.eng.get(Cf::Log, &entry_key(gone, upto))? {
            Some(v) => self
                .open_entry(&SealedEntry::from_stored(gone, upto, v))
                .map(|(body, hash)| Head {
                    seq: upto,
                    hash,
                    hlc: body.hlc,
                }),
            None => None,
        };
        let hk = meta_key(HEAD_PREFIX, &gone.0.to_be_bytes());
        match head {
            Some(h) => {
                self.vv.insert(gone, h);
            }
            None if upto == 0 => {
                self.vv.remove(&gone);
                b.delete(Cf::Meta, hk);
            }
            None => {
                let h = Head {
                    seq: upto,
                    hash: [0; 32],
                    hlc: Hlc(0),
                };
                self.vv.insert(gone, h);
            }
        }
        self.commit(tx, b, &cache, &[gone])?;
        tracing::warn!(member = %gone.short(), dropped, upto,
            "dropped a removed member's operations after its cutoff");
        Ok(())
    }

    /// Members whose newest entry is older than `silent_ms`.
    pub fn silent_members(&self) -> Result<Vec<ReplicaId>> {
        let now = self.clock.now_ms();
        let mut out = Vec::new();
        for m in self.members()? {
            if m == self.local.id {
                continue;
            }
            let last = self.vv.get(&m).map_or(0, |h| h.hlc.ms());
            let since = match self.member(m)? {
                Some(Member::Active { since, .. }) => since.hlc.ms(),
                _ => continue,
            };
            if now.saturating_sub(last.max(since)) > self.cfg.silent_ms {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// Fold `op` into `tx` at its place: undo `later` (the operations after it, in order),
    /// apply it, redo them; their new undo records into `b`.
    fn fold_into(
        &mut self,
        tx: &mut Tx<'_>,
        b: &mut WriteBatch,
        id: OpId,
        op: &Op,
        later: Vec<(OpId, LogRec)>,
    ) -> Result<Applied> {
        for (_, rec) in later.iter().rev() {
            tx.restore(&rec.undo)?;
        }
        self.counters.undone += later.len() as u64;
        tx.begin();
        let applied = apply(tx, id, op)?;
        let undo = tx.finish()?;
        self.put_logrec(b, id, op, undo)?;
        if applied != Applied::Done {
            self.counters.skipped += 1;
        }
        for (lid, rec) in later {
            tx.begin();
            apply(tx, lid, &rec.op)?;
            let undo = tx.finish()?;
            self.put_logrec(b, lid, &rec.op, undo)?;
        }
        Ok(applied)
    }

    /// The entry itself into `b`; the chain head and this replica's counters in memory (written
    /// by [`Replica::commit`]).
    fn note_applied(
        &mut self,
        b: &mut WriteBatch,
        id: OpId,
        op: &Op,
        entry: &SealedEntry,
        head: Head,
    ) {
        b.put(Cf::Log, entry_key(entry.origin, entry.seq), entry.stored());
        self.local.last = Some(self.local.last.map_or(id, |l| l.max(id)));
        self.local.hlc = Hlc(self.local.hlc.0.max(id.hlc.0));
        if let Op::Create { node, .. } | Op::Link { node, .. } = op {
            if node.origin == self.local.id.0 && node.tag == crate::ids::NodeTag::Made {
                self.local.next_node = self.local.next_node.max(node.n + 1);
            }
        }
        self.vv.insert(entry.origin, head);
        self.counters.applied += 1;
    }

    /// Write a fold's records, the heads of `origins` and this replica's counters atomically. On
    /// failure, what is in memory is reloaded from the store.
    fn commit(
        &mut self,
        tx: Tx<'_>,
        mut b: WriteBatch,
        cache: &RecordCache,
        origins: &[ReplicaId],
    ) -> Result<()> {
        let written = tx.into_batch(&mut b)?;
        for o in origins {
            if let Some(head) = self.vv.get(o) {
                let hk = meta_key(HEAD_PREFIX, &o.0.to_be_bytes());
                b.put(
                    Cf::Meta,
                    hk.clone(),
                    self.keys.seal_record(&hk, &encode(head)?)?,
                );
            }
        }
        self.put_local(&mut b)?;
        match self.eng.write(b, Durability::Process) {
            Ok(()) => {
                self.changes.note(&written);
                cache.committed(written);
                Ok(())
            }
            Err(e) => {
                self.reload()?;
                Err(e.into())
            }
        }
    }

    /// Back to what the store holds (after a failed commit).
    fn reload(&mut self) -> Result<()> {
        let sealed = self
            .eng
            .get(Cf::Meta, LOCAL_KEY)?
            .ok_or_else(|| corrupt("no replica in this store"))?;
        self.local = decode(&self.keys.open_record(LOCAL_KEY, &sealed)?)?;
        self.cache = Arc::new(RecordCache::default());
        self.footprints = Footprints::default();
        self.load_vv()
    }

    /// Take in many entries: runs of entries that extend their chains in fold order are folded
    /// in one transaction and written in one batch; anything else goes through
    /// [`Replica::receive`]'s path one by one.
    pub fn receive_batch(&mut self, entries: &[SealedEntry]) -> Result<Vec<Received>> {
        const RUN: usize = 256;
        let keys = self.keys.clone();
        let eng = self.eng.clone();
        let mut out = Vec::with_capacity(entries.len());
        let mut i = 0;
        while i < entries.len() {
            let cache = self.cache.clone();
            let mut tx = Tx::new(&*eng, &keys)
                .cached(&cache)
                .mixing(self.cfg.faults.mix_concurrent_writes)
                .tracking(self.footprints.covers.is_some());
            let mut b = WriteBatch::new();
            // Per origin, the last entry of the run and its member key: its signature covers
            // the entries before it through the hash chain, so one check per origin and run.
            let mut last: BTreeMap<ReplicaId, (usize, [u8; 32])> = BTreeMap::new();
            let start = i;
            let mut n = 0;
            while i < entries.len() && n < RUN {
                let e = &entries[i];
                let step = self.in_order(&tx, e).and_then(|x| match x {
                    Some((id, op, head, key)) => self
                        .fold_into(&mut tx, &mut b, id, &op, Vec::new())
                        .map(|_| Some((id, op, head, key))),
                    None => Ok(None),
                });
                let (id, op, head, key) = match step {
                    Ok(Some(x)) => x,
                    Ok(None) => break,
                    Err(e) => {
                        // Nothing of the run is committed: forget what memory holds of it.
                        drop(tx);
                        self.reload()?;
                        return Err(e);
                    }
                };
                self.note_applied(&mut b, id, &op, e, head);
                last.insert(e.origin, (i, key));
                i += 1;
                n += 1;
            }
            if n > 0 {
                if last
                    .values()
                    .all(|(j, key)| self.signed_by(&entries[*j], key))
                {
                    let origins: Vec<ReplicaId> = last.keys().copied().collect();
                    self.commit(tx, b, &cache, &origins)?;
                    out.extend(std::iter::repeat_n(Received::Applied, n));
                } else {
                    // A bad signature somewhere: forget the run, take its entries one by one.
                    drop(tx);
                    self.reload()?;
                    for e in &entries[start..i] {
                        out.push(self.receive_one(e)?);
                    }
                }
            } else {
                drop(tx);
                let late = self.fold_late(&entries[i..(i + RUN).min(entries.len())])?;
                if late > 0 {
                    out.extend(std::iter::repeat_n(Received::Applied, late));
                    i += late;
                } else {
                    out.push(self.receive_one(&entries[i])?);
                    i += 1;
                }
            }
        }
        self.drain_held()?;
        Ok(out)
    }

    /// Fold a run of entries that extend their chains but sort before operations folded here
    /// already (a peer catching up while this replica went on changing): one undo back to the
    /// oldest of them, the run and the undone operations applied together in fold order, one
    /// transaction. Entry by entry, each would undo and redo everything after it. The state is
    /// the same: the fold of the same operations in the same order. Returns how many entries of
    /// the front of `entries` it folded (0: none qualifies, they go one by one).
    fn fold_late(&mut self, entries: &[SealedEntry]) -> Result<usize> {
        if self.cfg.faults.no_undo_redo || self.cfg.faults.reapply_duplicates {
            return Ok(0);
        }
        let keys = self.keys.clone();
        let eng = self.eng.clone();
        let cache = self.cache.clone();
        let mut run: Vec<(OpId, Op, Head)> = Vec::new();
        let mut heads: BTreeMap<ReplicaId, Head> = BTreeMap::new();
        let mut last: BTreeMap<ReplicaId, (usize, [u8; 32])> = BTreeMap::new();
        {
            let tx = Tx::new(&*eng, &keys).cached(&cache);
            for (j, e) in entries.iter().enumerate() {
                let have = heads.get(&e.origin).or(self.vv.get(&e.origin)).copied();
                let Some((id, op, head, key)) = self.extends(&tx, e, have, true)? else {
                    break;
                };
                // Membership changes go one by one: later entries' keys depend on them.
                if matches!(op, Op::AddMember { .. } | Op::RemoveMember { .. }) {
                    break;
                }
                heads.insert(e.origin, head);
                last.insert(e.origin, (j, key));
                run.push((id, op, head));
            }
        }
        if run.is_empty()
            || !last
                .values()
                .all(|(j, key)| self.signed_by(&entries[*j], key))
        {
            return Ok(0);
        }
        let oldest = run.iter().map(|r| r.0).min().unwrap_or(run[0].0);
        let any_later = self.local.last.is_some_and(|l| l > oldest);
        // The footprints of the operations after the run, if memory has all of them.
        if any_later && self.footprints.covers.is_some_and(|c| c <= oldest) {
            let footprints: Vec<Arc<Footprint>> = self
                .footprints
                .ops
                .range((
                    std::ops::Bound::Excluded(oldest),
                    std::ops::Bound::Unbounded,
                ))
                .map(|(_, f)| f.clone())
                .collect();
            if let Some((tx, b)) = self.fold_commuting(&eng, &keys, &cache, &run, &footprints)? {
                return self.commit_late(tx, b, &cache, &run, entries, &last, true);
            }
        }
        let later = if any_later {
            // Everything after `oldest` is redone below, its footprint noted: from now on
            // memory knows every operation after it.
            self.footprints = Footprints::after(oldest);
            self.log_after(oldest)?
        } else {
            Vec::new()
        };
        let mut tx = Tx::new(&*eng, &keys)
            .cached(&cache)
            .mixing(self.cfg.faults.mix_concurrent_writes)
            .tracking(self.footprints.covers.is_some());
        let mut b = WriteBatch::new();
        for (_, rec) in later.iter().rev() {
            tx.restore(&rec.undo)?;
        }
        self.counters.undone += later.len() as u64;
        let mut all: Vec<(OpId, &Op, bool)> =
            later.iter().map(|(id, r)| (*id, &r.op, false)).collect();
        all.extend(run.iter().map(|(id, op, _)| (*id, op, true)));
        all.sort_by_key(|x| x.0);
        let step = (|| {
            for (id, op, new) in &all {
                tx.begin();
                let applied = apply(&mut tx, *id, op)?;
                let undo = tx.finish()?;
                self.put_logrec(&mut b, *id, op, undo)?;
                if *new && applied != Applied::Done {
                    self.counters.skipped += 1;
                }
            }
            Ok::<(), Error>(())
        })();
        if let Err(e) = step {
            drop(tx);
            self.reload()?;
            return Err(e);
        }
        self.commit_late(tx, b, &cache, &run, entries, &last, false)
    }

    /// The late run's entries noted and everything committed.
    #[allow(clippy::too_many_arguments)]
    fn commit_late(
        &mut self,
        tx: Tx<'_>,
        mut b: WriteBatch,
        cache: &RecordCache,
        run: &[(OpId, Op, Head)],
        entries: &[SealedEntry],
        last: &BTreeMap<ReplicaId, (usize, [u8; 32])>,
        commuted: bool,
    ) -> Result<usize> {
        for ((id, op, head), e) in run.iter().zip(entries) {
            self.note_applied(&mut b, *id, op, e, *head);
        }
        let origins: Vec<ReplicaId> = last.keys().copied().collect();
        self.counters.late_runs += 1;
        self.counters.late_entries += run.len() as u64;
        if commuted {
            self.counters.commuted_runs += 1;
        }
        self.commit(tx, b, cache, &origins)?;
        Ok(run.len())
    }

    /// A late run applied on top of the operations after it, without undoing them, when it
    /// commutes with each of them: no operation of the run writes a record that a later one
    /// read or wrote, nor reads one that a later one wrote (their read sets and undo records
    /// say which). Applied in its proper place the run would then read the same values and
    /// leave the same records, and the later operations would too, with the same undo records.
    /// `None`: it does not commute (or applying it failed); the caller undoes and redoes.
    fn fold_commuting<'e>(
        &mut self,
        eng: &'e Arc<dyn Engine>,
        keys: &'e ReplicaKeys,
        cache: &'e RecordCache,
        run: &[(OpId, Op, Head)],
        later: &[Arc<Footprint>],
    ) -> Result<Option<(Tx<'e>, WriteBatch)>> {
        if later.is_empty() || self.cfg.faults.mix_concurrent_writes {
            return Ok(None);
        }
        let mut order: Vec<&(OpId, Op, Head)> = run.iter().collect();
        order.sort_by_key(|r| r.0);
        let mut tx = Tx::new(&**eng, keys).cached(cache).tracking(true);
        let mut b = WriteBatch::new();
        let mut skipped = 0;
        // What the run wrote, and what it read: small sets, each later operation checked
        // against them.
        let mut wrote: std::collections::HashSet<RecKey> = std::collections::HashSet::new();
        let mut read: std::collections::HashSet<RecKey> = std::collections::HashSet::new();
        let mut traced = Vec::with_capacity(order.len());
        for (id, op, _) in order {
            tx.begin();
            let Ok(applied) = apply(&mut tx, *id, op) else {
                return Ok(None);
            };
            let trace = tx.finish()?;
            wrote.extend(trace.writes());
            read.extend(trace.reads.iter().flatten().cloned());
            if applied != Applied::Done {
                skipped += 1;
            }
            traced.push((*id, op, trace));
        }
        let clash = later.iter().any(|f| {
            f.writes
                .iter()
                .any(|k| wrote.contains(k) || read.contains(k))
                || f.reads.iter().any(|k| wrote.contains(k))
        });
        if clash {
            return Ok(None);
        }
        for (id, op, trace) in traced {
            self.put_logrec(&mut b, id, op, trace)?;
        }
        self.counters.skipped += skipped;
        Ok(Some((tx, b)))
    }

    /// `e`, if it simply extends its chain and sorts after everything folded so far (no hold,
    /// no undo, no refusal): its id, operation and new head.
    fn in_order(&self, tx: &Tx<'_>, e: &SealedEntry) -> Result<Option<InOrder>> {
        self.extends(tx, e, self.vv.get(&e.origin).copied(), false)
    }

    /// `e`, if it extends its chain from `have` (no hold, no refusal) and, unless `late`, sorts
    /// after everything folded so far: its id, operation and new head.
    fn extends(
        &self,
        tx: &Tx<'_>,
        e: &SealedEntry,
        have: Option<Head>,
        late: bool,
    ) -> Result<Option<InOrder>> {
        let Some((body, hash)) = self.open_entry(e) else {
            return Ok(None);
        };
        if e.seq != have.map_or(1, |h| h.seq + 1) || body.prev != have.map_or([0; 32], |h| h.hash) {
            return Ok(None);
        }
        let id = OpId {
            hlc: body.hlc,
            origin: e.origin,
            seq: e.seq,
        };
        if (!late && self.local.last.is_some_and(|l| l > id))
            || body.hlc.ms() > self.clock.now_ms() + self.cfg.max_skew_ms
        {
            return Ok(None);
        }
        let key = match tx.get::<(ReplicaId, Member)>(Table::Member, &e.origin.0.to_be_bytes())? {
            Some((_, Member::Active { key, .. })) => key,
            _ => return Ok(None),
        };
        Ok(Some((
            id,
            body.op,
            Head {
                seq: e.seq,
                hash,
                hlc: body.hlc,
            },
            key,
        )))
    }

    fn put_logrec(&mut self, b: &mut WriteBatch, id: OpId, op: &Op, trace: Trace) -> Result<()> {
        match &trace.reads {
            Some(reads) => self
                .footprints
                .note(id, || Footprint::of(&trace.undo, reads)),
            // Applied without tracking its reads: what memory knows is no longer complete.
            None if self.footprints.covers.is_some() => self.footprints = Footprints::default(),
            None => {}
        }
        let k = meta_key(OPLOG_PREFIX, &id.key());
        let rec = LogRec {
            op: op.clone(),
            undo: trace.undo,
        };
        b.put(
            Cf::Log,
            k.clone(),
            self.keys.seal_record(&k, &encode(&rec)?)?,
        );
        Ok(())
    }

    /// Operations folded after `id`, in fold order.
    fn log_after(&self, id: OpId) -> Result<Vec<(OpId, LogRec)>> {
        self.log_from(Some(id))
    }

    /// Operations folded after `id` (all of them: `None`), in fold order.
    fn log_from(&self, id: Option<OpId>) -> Result<Vec<(OpId, LogRec)>> {
        let mut out = Vec::new();
        let keys = self.keys.clone();
        let mut err = None;
        let mut start = vec![OPLOG_PREFIX];
        if let Some(id) = id {
            start = meta_key(OPLOG_PREFIX, &id.key());
            start.push(0);
        }
        loop {
            let page = self.eng.scan(Cf::Log, &[OPLOG_PREFIX], &start, 1024)?;
            for (k, v) in &page {
                let Some(lid) = OpId::from_key(&k[1..]) else {
                    err = Some(corrupt("a malformed operation log key"));
                    break;
                };
                let rec: LogRec = decode(&keys.open_record(k, v)?)?;
                out.push((lid, rec));
            }
            match page.last() {
                Some((k, _)) if page.len() == 1024 => {
                    start = k.clone();
                    start.push(0);
                }
                _ => break,
            }
        }
        match err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    fn member(&self, id: ReplicaId) -> Result<Option<Member>> {
        Ok(Tx::new(&*self.eng, &self.keys)
            .cached(&self.cache)
            .get::<(ReplicaId, Member)>(Table::Member, &id.0.to_be_bytes())?
            .map(|(_, m)| m))
    }

    /// Take in an entry from a peer or a bucket.
    pub fn receive(&mut self, e: &SealedEntry) -> Result<Received> {
        let r = self.receive_one(e)?;
        if r == Received::Applied {
            self.drain_held()?;
        }
        Ok(r)
    }

    /// Try held entries again (after the clock moved, or entries arrived).
    pub fn retry_held(&mut self) -> Result<()> {
        self.drain_held()
    }

    fn drain_held(&mut self) -> Result<()> {
        loop {
            let mut progress = false;
            let keys: Vec<(ReplicaId, u64)> = self.held.keys().copied().collect();
            for k in keys {
                let next = self.vv.get(&k.0).map_or(1, |h| h.seq + 1);
                if k.1 > next {
                    continue;
                }
                let Some(e) = self.held.remove(&k) else {
                    continue;
                };
                if self.receive_one(&e)? == Received::Applied {
                    progress = true;
                }
            }
            if !progress {
                return Ok(());
            }
        }
    }

    fn refuse(&mut self, e: &SealedEntry, why: Refusal) -> Result<Received> {
        if why == Refusal::Fork {
            tracing::error!(origin = %e.origin.short(), seq = e.seq,
                "FORK: two different entries for one position of a chain (a copied store, or a member rewrote its history); not merged: the copy must re-join");
            let f = Fork {
                origin: e.origin,
                seq: e.seq,
            };
            if !self.forks.contains(&f) {
                // Kept in the store: a fork is reported until someone deals with it, across
                // restarts.
                let mut k = vec![FORK_PREFIX];
                k.extend_from_slice(&e.origin.0.to_be_bytes());
                k.extend_from_slice(&e.seq.to_be_bytes());
                let v = self.keys.seal_record(&k, &encode(&(e.origin, e.seq))?)?;
                let mut b = WriteBatch::new();
                b.put(Cf::Meta, k, v);
                self.eng.write(b, Durability::Process)?;
                self.forks.push(f);
            }
        } else {
            tracing::warn!(origin = %e.origin.short(), seq = e.seq, ?why, "refused an entry");
        }
        self.refused.push((e.origin, e.seq, why));
        Ok(Received::Refused(why))
    }

    fn load_forks(&mut self) -> Result<()> {
        let keys = self.keys.clone();
        let mut forks = Vec::new();
        self.eng.for_each(Cf::Meta, &[FORK_PREFIX], &mut |k, v| {
            let (origin, seq): (ReplicaId, u64) =
                decode(&keys.open_record(k, v).map_err(to_store)?).map_err(to_store)?;
            forks.push(Fork { origin, seq });
            Ok(())
        })?;
        self.forks = forks;
        Ok(())
    }

    fn hold(&mut self, e: &SealedEntry, why: Hold) -> Result<Received> {
        if let Some(other) = self.held.get(&(e.origin, e.seq)) {
            if other.bytes != e.bytes {
                let a = self.open_entry(other).map(|x| x.1);
                let b = self.open_entry(e).map(|x| x.1);
                if a != b {
                    return self.refuse(e, Refusal::Fork);
                }
            }
        }
        if let Hold::Future { ahead_ms } = why {
            tracing::warn!(origin = %e.origin.short(), seq = e.seq, ahead_ms,
                "held an entry stamped too far in the future (its origin's clock is off)");
        }
        self.held.insert((e.origin, e.seq), e.clone());
        Ok(Received::Held(why))
    }

    fn receive_one(&mut self, e: &SealedEntry) -> Result<Received> {
        let Some((body, hash)) = self.open_entry(e) else {
            return self.refuse(e, Refusal::Forged);
        };
        let have = self.vv.get(&e.origin).copied();
        if let Some(h) = have {
            if e.seq <= h.seq {
                let stored = match self.eng.get(Cf::Log, &entry_key(e.origin, e.seq))? {
                    Some(v) => self
                        .open_entry(&SealedEntry::from_stored(e.origin, e.seq, v))
                        .map(|x| x.1),
                    None if e.seq == h.seq => Some(h.hash),
                    None => None,
                };
                return Ok(match stored {
                    Some(s) if s == hash => {
                        if self.cfg.faults.reapply_duplicates {
                            let id = OpId {
                                hlc: body.hlc,
                                origin: e.origin,
                                seq: e.seq,
                            };
                            self.integrate(id, &body.op, e, h)?;
                        }
                        Received::Duplicate
                    }
                    Some(_) => self.refuse(e, Refusal::Fork)?,
                    None => self.refuse(e, Refusal::Stale)?,
                });
            }
        }
        let key = match self.member(e.origin)? {
            Some(Member::Active { key, .. }) => key,
            Some(Member::Removed { upto, key, .. }) if e.seq <= upto => key,
            Some(Member::Removed { .. }) => return self.refuse(e, Refusal::RemovedMember),
            None => return self.hold(e, Hold::UnknownMember),
        };
        if !self.signed_by(e, &key) {
            // Sealed under the volume's key, but not signed by its origin: another member
            // writing as this one.
            return self.refuse(e, Refusal::Forged);
        }
        let next = have.map_or(1, |h| h.seq + 1);
        if e.seq > next {
            return self.hold(e, Hold::Gap);
        }
        if body.prev != have.map_or([0; 32], |h| h.hash) {
            return self.refuse(e, Refusal::Fork);
        }
        let now = self.clock.now_ms();
        if body.hlc.ms() > now + self.cfg.max_skew_ms {
            return self.hold(
                e,
                Hold::Future {
                    ahead_ms: body.hlc.ms() - now,
                },
            );
        }
        let id = OpId {
            hlc: body.hlc,
            origin: e.origin,
            seq: e.seq,
        };
        self.integrate(
            id,
            &body.op,
            e,
            Head {
                seq: e.seq,
                hash,
                hlc: body.hlc,
            },
        )?;
        Ok(Received::Applied)
    }

    /// Entries a peer whose version vector is `theirs` lacks, as far as this replica still has
    /// them; `Err` names an origin whose needed entries were trimmed here (the peer must start
    /// from a snapshot).
    pub fn entries_for(&self, theirs: &VersionVector) -> Result<Vec<SealedEntry>> {
        let mut out = Vec::new();
        for (origin, head) in &self.vv {
            let from = theirs.get(origin).map_or(0, |h| h.seq) + 1;
            if from > head.seq {
                continue;
            }
            let mut prefix = vec![ENTRY_PREFIX];
            prefix.extend_from_slice(&origin.0.to_be_bytes());
            let start = entry_key(*origin, from);
            let mut expect = from;
            for (k, v) in self
                .eng
                .scan(Cf::Log, &prefix, &start, (head.seq - from + 1) as usize)?
            {
                let mut s = [0u8; 8];
                s.copy_from_slice(&k[9..17]);
                let seq = u64::from_be_bytes(s);
                if seq != expect {
                    break; // a gap: trimmed
                }
                expect += 1;
                out.push(SealedEntry::from_stored(*origin, seq, v));
            }
            if expect <= head.seq {
                return Err(Error::Invalid(
                    "entries the peer needs were trimmed here: it must re-join from a snapshot",
                ));
            }
        }
        Ok(out)
    }

    // ---- Reading -------------------------------------------------------------------------

    fn tx(&self) -> Tx<'_> {
        Tx::new(&*self.eng, &self.keys).cached(&self.cache)
    }

    pub fn node(&self, n: NodeId) -> Result<Option<NodeRec>> {
        self.tx().node(n)
    }
    pub fn inode(&self, n: NodeId) -> Result<Option<InodeRec>> {
        self.tx().inode(n)
    }
    pub fn lookup(&self, parent: NodeId, name: &[u8]) -> Result<Option<NodeId>> {
        self.tx().lookup(parent, name)
    }

    /// A directory's entries, by name.
    pub fn readdir(&self, dir: NodeId) -> Result<Vec<(Vec<u8>, NodeId)>> {
        let prefix = self.keys.dir_prefix(dir);
        let mut out = Vec::new();
        let keys = self.keys.clone();
        self.eng.for_each(Cf::Dirents, &prefix, &mut |k, v| {
            let r: NameRec =
                decode(&keys.open_record(k, v).map_err(to_store)?).map_err(to_store)?;
            if r.parent == dir {
                out.push((r.name, r.node));
            }
            Ok(())
        })?;
        out.sort();
        Ok(out)
    }

    /// A file's contents; a chunk that has not arrived yet is `Pending`, not zeros.
    pub fn read(&self, inode: NodeId) -> Result<Vec<u8>> {
        let i = self.inode(inode)?.ok_or(Error::NotFound)?;
        let cs = self.chunk_size()?;
        let mut out = vec![0u8; usize::try_from(i.size).map_err(|_| Error::Invalid("too big"))?];
        for (n, piece) in out.chunks_mut(cs as usize).enumerate() {
            if let Some(e) = self.extent(inode, n as u64)? {
                self.read_piece(&e, piece, cs)?;
            }
        }
        Ok(out)
    }

    /// Up to `len` bytes of a file's contents from byte `offset` (fewer at its end): only the
    /// pieces the range touches are read. A chunk that has not arrived yet is `Pending`.
    pub fn read_at(&self, inode: NodeId, offset: u64, len: u64) -> Result<Vec<u8>> {
        let i = self.inode(inode)?.ok_or(Error::NotFound)?;
        let end = offset.saturating_add(len).min(i.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let cs = self.chunk_size()?;
        let n = usize::try_from(end - offset).map_err(|_| Error::Invalid("too big"))?;
        let mut out = vec![0u8; n];
        let mut piece = vec![0u8; cs as usize];
        for index in offset / cs..end.div_ceil(cs) {
            let Some(e) = self.extent(inode, index)? else {
                continue;
            };
            piece.fill(0);
            self.read_piece(&e, &mut piece, cs)?;
            let (from, to) = ((index * cs).max(offset), ((index + 1) * cs).min(end));
            out[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&piece[(from - index * cs) as usize..(to - index * cs) as usize]);
        }
        Ok(out)
    }

    /// What tells a reader that chunks arrived ([`Replica::receive_chunk`]), to wait on
    /// without holding the replica.
    pub fn arrivals(&self) -> Arrivals {
        Arrivals(self.arrivals.clone())
    }

    /// Lay a piece's slices over `out` (zeros where no slice is).
    fn read_piece(&self, e: &Extent, out: &mut [u8], cs: u64) -> Result<()> {
        for s in &e.slices {
            let data = self.chunk(&s.chunk.addr)?;
            let at = s.at as usize;
            let len = (s.len as usize).min(out.len().saturating_sub(at));
            if data.len() < s.len as usize || s.end() > cs {
                return Err(corrupt(format!(
                    "a slice of chunk {} runs past its chunk or its piece",
                    hex8(&s.chunk.addr)
                )));
            }
            out[at..at + len].copy_from_slice(&data[..len]);
        }
        Ok(())
    }

    /// The volume's piece size: a file's byte `n` is in piece `n / chunk_size`.
    pub fn chunk_size(&self) -> Result<u64> {
        self.tx().chunk_size()
    }

    /// Piece `index` of a file's current contents.
    pub fn extent(&self, inode: NodeId, index: u64) -> Result<Option<Extent>> {
        self.tx().extent(inode, index)
    }

    fn chunk(&self, addr: &[u8; 32]) -> Result<Vec<u8>> {
        let sealed = self
            .eng
            .get(Cf::Chunks, addr)?
            .ok_or_else(|| Error::Pending(hex8(addr)))?;
        self.open_chunk(addr, &sealed)
    }

    fn open_chunk(&self, addr: &[u8; 32], sealed: &[u8]) -> Result<Vec<u8>> {
        let plain = self
            .keys
            .chunk_seal
            .open(Domain::Chunk, addr, sealed)
            .map_err(|e| corrupt(format!("chunk {}: {e}", hex8(addr))))?;
        if self.keys.chunk_addr.chunk_addr(&plain).0 != *addr {
            return Err(corrupt(format!(
                "chunk {} does not match its address",
                hex8(addr)
            )));
        }
        Ok(plain)
    }

    /// Store a chunk of local data; what a write names.
    pub fn put_chunk(&self, data: &[u8]) -> Result<ChunkRef> {
        let addr = self.keys.chunk_addr.chunk_addr(data).0;
        if self.eng.get(Cf::Chunks, &addr)?.is_none() {
            let sealed = self
                .keys
                .chunk_seal
                .seal(Domain::Chunk, 0, &addr, data)
                .map_err(|e| corrupt(format!("sealing a chunk: {e}")))?;
            let mut b = WriteBatch::new();
            b.put(Cf::Chunks, addr.to_vec(), sealed);
            self.eng.write(b, Durability::Process)?;
        }
        Ok(ChunkRef {
            addr,
            len: data.len() as u32,
        })
    }

    /// A chunk as stored (sealed), to send to a peer.
    pub fn sealed_chunk(&self, addr: &[u8; 32]) -> Result<Option<Vec<u8>>> {
        Ok(self.eng.get(Cf::Chunks, addr)?)
    }

    /// Take in a chunk from elsewhere: authenticated and re-hashed against its address before
    /// it is stored. `false`: refused.
    pub fn receive_chunk(&self, addr: &[u8; 32], sealed: &[u8]) -> Result<bool> {
        if self.open_chunk(addr, sealed).is_err() {
            tracing::warn!(chunk = %hex8(addr), "refused a chunk that does not authenticate or match its address");
            return Ok(false);
        }
        let mut b = WriteBatch::new();
        b.put(Cf::Chunks, addr.to_vec(), sealed.to_vec());
        self.eng.write(b, Durability::Process)?;
        let (n, arrived) = &*self.arrivals;
        *n.lock() += 1;
        arrived.notify_all();
        Ok(true)
    }

    /// A file's contents, waiting up to `bound` for chunks that have not been replicated here
    /// yet (another thread takes them in with [`Replica::receive_chunk`]); then `Pending`, with
    /// a log line naming the chunk.
    pub fn read_waiting(&self, inode: NodeId, bound: std::time::Duration) -> Result<Vec<u8>> {
        let deadline = std::time::Instant::now() + bound;
        let (n, arrived) = &*self.arrivals;
        loop {
            let seen = *n.lock();
            match self.read(inode) {
                Err(Error::Pending(c)) => {
                    let mut g = n.lock();
                    if *g == seen {
                        let timed_out = arrived.wait_until(&mut g, deadline).timed_out();
                        if timed_out && *g == seen {
                            tracing::warn!(chunk = %c,
                                "a read waited for a chunk that has not been replicated here yet; it fails with EIO until the chunk arrives");
                            return Err(Error::Pending(c));
                        }
                    }
                }
                other => return other,
            }
        }
    }

    /// Every chunk stored here.
    pub fn chunk_addrs(&self) -> Result<Vec<[u8; 32]>> {
        let mut out = Vec::new();
        self.eng.for_each(Cf::Chunks, b"", &mut |k, _| {
            if let Ok(a) = <[u8; 32]>::try_from(k) {
                out.push(a);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Chunks referenced here that have not arrived.
    pub fn pending_chunks(&self) -> Result<Vec<[u8; 32]>> {
        let mut out = Vec::new();
        for r in self.refs()? {
            if self.eng.get(Cf::Chunks, &r.addr)?.is_none() {
                out.push(r.addr);
            }
        }
        Ok(out)
    }

    fn refs(&self) -> Result<Vec<RefRec>> {
        let mut out = Vec::new();
        let keys = self.keys.clone();
        self.eng
            .for_each(Cf::Refs, &[Table::Ref.place().1], &mut |k, v| {
                out.push(decode(&keys.open_record(k, v).map_err(to_store)?).map_err(to_store)?);
                Ok(())
            })?;
        Ok(out)
    }

    // ---- Local changes -------------------------------------------------------------------

    fn alloc(&mut self) -> NodeId {
        let n = NodeId::made(self.local.id, self.local.next_node);
        self.local.next_node += 1;
        n
    }

    fn live_dir(&self, n: NodeId) -> Result<NodeRec> {
        let r = self.node(n)?.ok_or(Error::NotFound)?;
        if r.parent == NodeId::TRASH {
            return Err(Error::NotFound);
        }
        if !r.is_dir {
            return Err(Error::NotDir);
        }
        Ok(r)
    }

    fn check_name(name: &[u8]) -> Result<()> {
        if name.is_empty()
            || name.len() > 255
            || name.contains(&b'/')
            || name == b"."
            || name == b".."
        {
            return Err(Error::Invalid(
                "a name must be 1-255 bytes, without '/', not . or ..",
            ));
        }
        Ok(())
    }

    /// Create a file, directory, symlink or special file. Returns (node, inode).
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        &mut self,
        parent: NodeId,
        name: &[u8],
        kind: Kind,
        perm: u32,
        uid: u32,
        gid: u32,
        target: &[u8],
    ) -> Result<(NodeId, NodeId, OpId)> {
        self.create_node(parent, name, kind, (perm, uid, gid), target, 0)
    }

    /// [`Replica::create`] with a device number (for a character or block device).
    pub fn create_node(
        &mut self,
        parent: NodeId,
        name: &[u8],
        kind: Kind,
        (perm, uid, gid): (u32, u32, u32),
        target: &[u8],
        rdev: u32,
    ) -> Result<(NodeId, NodeId, OpId)> {
        Self::check_name(name)?;
        self.live_dir(parent)?;
        if self.lookup(parent, name)?.is_some() {
            return Err(Error::Exists);
        }
        let node = self.alloc();
        let inode = if kind == Kind::Dir {
            node
        } else {
            self.alloc()
        };
        let id = self.commit_local(Op::Create {
            node,
            inode,
            parent,
            name: name.to_vec(),
            kind,
            perm,
            uid,
            gid,
            target: target.to_vec(),
            rdev,
        })?;
        Ok((node, inode, id))
    }

    /// Another name for a file.
    pub fn link(&mut self, inode: NodeId, parent: NodeId, name: &[u8]) -> Result<(NodeId, OpId)> {
        Self::check_name(name)?;
        self.live_dir(parent)?;
        let i = self.inode(inode)?.ok_or(Error::NotFound)?;
        if i.kind == Kind::Dir {
            return Err(Error::IsDir);
        }
        if self.lookup(parent, name)?.is_some() {
            return Err(Error::Exists);
        }
        let node = self.alloc();
        let id = self.commit_local(Op::Link {
            node,
            inode,
            parent,
            name: name.to_vec(),
        })?;
        Ok((node, id))
    }

    /// rename(2), replacing what is at the new name (a file, or an empty directory).
    pub fn rename(
        &mut self,
        parent: NodeId,
        name: &[u8],
        newparent: NodeId,
        newname: &[u8],
    ) -> Result<OpId> {
        Self::check_name(newname)?;
        let node = self.lookup(parent, name)?.ok_or(Error::NotFound)?;
        self.live_dir(newparent)?;
        let src = self.node(node)?.ok_or(Error::NotFound)?;
        // A directory may not move under itself.
        let mut cur = newparent;
        for _ in 0..crate::apply::MAX_DEPTH {
            if cur == node {
                return Err(Error::Invalid("a directory cannot move into itself"));
            }
            if cur == NodeId::ROOT {
                break;
            }
            cur = self.node(cur)?.ok_or(Error::NotFound)?.parent;
        }
        let mut replace = None;
        if let Some(y) = self.lookup(newparent, newname)? {
            if y == node {
                return Err(Error::Invalid("renaming a name onto itself"));
            }
            let yr = self.node(y)?.ok_or(Error::NotFound)?;
            let yi = self.inode(yr.inode)?.ok_or(Error::NotFound)?;
            match (src.is_dir, yr.is_dir) {
                (true, false) => return Err(Error::NotDir),
                (false, true) => return Err(Error::IsDir),
                (true, true) if yi.children > 0 => return Err(Error::NotEmpty),
                _ => {}
            }
            replace = Some(Victim {
                node: y,
                seen: if yr.is_dir { None } else { yi.version },
            });
        }
        self.commit_local(Op::Move {
            node,
            parent: newparent,
            name: newname.to_vec(),
            replace,
        })
    }

    /// unlink(2).
    pub fn unlink(&mut self, parent: NodeId, name: &[u8]) -> Result<OpId> {
        let node = self.lookup(parent, name)?.ok_or(Error::NotFound)?;
        let r = self.node(node)?.ok_or(Error::NotFound)?;
        if r.is_dir {
            return Err(Error::IsDir);
        }
        let seen = self.inode(r.inode)?.ok_or(Error::NotFound)?.version;
        self.commit_local(Op::Remove { node, seen })
    }

    /// rmdir(2).
    pub fn rmdir(&mut self, parent: NodeId, name: &[u8]) -> Result<OpId> {
        let node = self.lookup(parent, name)?.ok_or(Error::NotFound)?;
        let r = self.node(node)?.ok_or(Error::NotFound)?;
        if !r.is_dir {
            return Err(Error::NotDir);
        }
        if self.inode(node)?.ok_or(Error::NotFound)?.children > 0 {
            return Err(Error::NotEmpty);
        }
        self.commit_local(Op::Remove { node, seen: None })
    }

    /// Set some attributes (`None`: unchanged).
    pub fn setattr(
        &mut self,
        inode: NodeId,
        perm: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        atime: Option<i64>,
        mtime: Option<i64>,
    ) -> Result<OpId> {
        let i = self.inode(inode)?.ok_or(Error::NotFound)?;
        let op = if self.cfg.faults.whole_record_attrs {
            Op::SetAttr {
                inode,
                perm: Some(perm.unwrap_or(i.perm)),
                uid: Some(uid.unwrap_or(i.uid)),
                gid: Some(gid.unwrap_or(i.gid)),
                atime: Some(atime.unwrap_or(i.atime)),
                mtime: Some(mtime.unwrap_or(i.mtime)),
            }
        } else {
            Op::SetAttr {
                inode,
                perm,
                uid,
                gid,
                atime,
                mtime,
            }
        };
        self.commit_local(op)
    }

    pub fn setxattr(&mut self, inode: NodeId, name: &[u8], value: Option<&[u8]>) -> Result<OpId> {
        let i = self.inode(inode)?.ok_or(Error::NotFound)?;
        if value.is_none() && !i.xattrs.contains_key(name) {
            return Err(Error::NotFound);
        }
        self.commit_local(Op::SetXattr {
            inode,
            name: name.to_vec(),
            value: value.map(<[u8]>::to_vec),
        })
    }

    /// Change a file's contents: its new size, and the pieces that changed, each whole as it
    /// is now (`None`: a hole; chunks already stored with [`Replica::put_chunk`]). Pieces past
    /// `size` are dropped and the piece `size` falls in is cut there without being listed.
    /// Works on an open file that another replica unlinked meanwhile: the write brings it back.
    pub fn write(
        &mut self,
        inode: NodeId,
        size: u64,
        extents: Vec<(u64, Option<Extent>)>,
    ) -> Result<OpId> {
        let i = self.inode(inode)?.ok_or(Error::NotFound)?;
        if i.kind != Kind::File {
            return Err(Error::IsDir);
        }
        let cs = self.chunk_size()?;
        if extents
            .iter()
            .any(|(_, e)| e.as_ref().is_some_and(|e| e.len() > cs))
        {
            return Err(Error::Invalid(
                "a piece is longer than the volume's piece size",
            ));
        }
        let mut extents = extents;
        if i.links.is_empty() {
            // Removed here, written through a handle still open: once the removal is stable a
            // replica may release the contents this write started from, so it names every
            // piece, not only the changed ones.
            let listed: BTreeSet<u64> = extents.iter().map(|(n, _)| *n).collect();
            for n in 0..pieces(size.min(i.size), cs) {
                if !listed.contains(&n) {
                    if let Some(e) = self.extent(inode, n)? {
                        extents.push((n, Some(e)));
                    }
                }
            }
        }
        self.commit_local(Op::Write {
            inode,
            base: i.version,
            size,
            extents,
        })
    }

    /// Replace a file's contents with `data`, sending only the pieces that differ from what the
    /// file holds now.
    pub fn write_all(&mut self, inode: NodeId, data: &[u8]) -> Result<OpId> {
        let cs = self.chunk_size()? as usize;
        let mut extents = Vec::new();
        for (n, piece) in data.chunks(cs).enumerate() {
            let n = n as u64;
            let addr = self.keys.chunk_addr.chunk_addr(piece).0;
            let now = self.extent(inode, n)?;
            let same = matches!(&now, Some(e) if e.slices.len() == 1
                && e.slices[0].at == 0
                && e.slices[0].chunk.addr == addr
                && e.slices[0].len as usize == piece.len());
            if !same {
                extents.push((n, Some(Extent::whole(self.put_chunk(piece)?))));
            }
        }
        self.write(inode, data.len() as u64, extents)
    }

    /// Write `data` at byte `offset` of a file: each piece it touches gains a slice (a piece
    /// with more than [`MAX_SLICES`] is stored whole again). The file grows if the write ends
    /// past its size; bytes between the old end and `offset` read as zeros.
    pub fn write_at(&mut self, inode: NodeId, offset: u64, data: &[u8]) -> Result<OpId> {
        let i = self.inode(inode)?.ok_or(Error::NotFound)?;
        let cs = self.chunk_size()?;
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or(Error::Invalid("a write past the largest file size"))?;
        let mut extents = Vec::new();
        let mut at = offset;
        while at < end {
            let n = at / cs;
            let within = at % cs;
            let len = (cs - within).min(end - at);
            let part = &data[(at - offset) as usize..(at - offset + len) as usize];
            // Bytes of the piece past the old size read as zeros already; a slice keeps them so.
            let live = i.size.saturating_sub(n * cs).min(cs);
            let mut e = self
                .extent(inode, n)?
                .and_then(|e| e.clipped(live))
                .unwrap_or_default();
            e.add(Slice {
                at: within as u32,
                len: len as u32,
                chunk: self.put_chunk(part)?,
            });
            if e.slices.len() > MAX_SLICES {
                let mut whole = vec![0u8; e.len() as usize];
                self.read_piece(&e, &mut whole, cs)?;
                e = Extent::whole(self.put_chunk(&whole)?);
            }
            extents.push((n, Some(e)));
            at += len;
        }
        self.write(inode, i.size.max(end), extents)
    }

    // ---- Membership and snapshots --------------------------------------------------------

    /// Admit a new replica, whose signing key's public half is `key` ([`MemberKey::public`]):
    /// its id, unique in the volume (checked against the member list).
    pub fn admit(&mut self, key: [u8; 32]) -> Result<ReplicaId> {
        loop {
            self.local.admitted += 1;
            let id = ReplicaId::admitted(self.local.id, self.local.admitted);
            if self.member(id)?.is_none() {
                self.commit_local(Op::AddMember { id, key })?;
                return Ok(id);
            }
        }
    }

    /// Remove a member (it lost its store, or was silent too long).
    pub fn expel(&mut self, id: ReplicaId) -> Result<OpId> {
        let upto = self.vv.get(&id).map_or(0, |h| h.seq);
        self.commit_local(Op::RemoveMember { id, upto })
    }

    /// Active members.
    pub fn members(&self) -> Result<Vec<ReplicaId>> {
        Ok(self
            .member_states()?
            .into_iter()
            .filter(|(_, m)| matches!(m, Member::Active { .. }))
            .map(|(id, _)| id)
            .collect())
    }

    /// Every member ever admitted, and its state.
    pub fn member_states(&self) -> Result<Vec<(ReplicaId, Member)>> {
        let mut out = Vec::new();
        let keys = self.keys.clone();
        self.eng
            .for_each(Cf::Meta, &[Table::Member.place().1], &mut |k, v| {
                let rec: (ReplicaId, Member) =
                    decode(&keys.open_record(k, v).map_err(to_store)?).map_err(to_store)?;
                out.push(rec);
                Ok(())
            })?;
        out.sort_by_key(|(id, _)| *id);
        Ok(out)
    }

    /// A consistent copy of the replicated state (not this replica's identity), sealed.
    pub fn snapshot(&self) -> Result<Snapshot> {
        let mut pairs = Vec::new();
        for (i, cf) in Cf::ALL.iter().enumerate() {
            self.eng.for_each(*cf, b"", &mut |k, v| {
                if !(*cf == Cf::Meta && k == LOCAL_KEY) {
                    pairs.push((i as u8, k.to_vec(), v.to_vec()));
                }
                Ok(())
            })?;
        }
        let body = SnapshotBody {
            volume: self.local.volume,
            last: self.local.last,
            hlc: self.local.hlc,
            pairs,
        };
        let bytes = self
            .keys
            .entry_seal
            .seal(Domain::Snapshot, 0, &self.local.volume, &encode(&body)?)
            .map_err(|e| corrupt(format!("sealing a snapshot: {e}")))?;
        Ok(Snapshot { bytes })
    }

    /// A replica that starts from `snap` as member `id` (admitted by the replica that made the
    /// snapshot, before it made it).
    #[allow(clippy::too_many_arguments)]
    pub fn join(
        eng: Arc<dyn Engine>,
        keys: Arc<ReplicaKeys>,
        clock: Arc<dyn WallClock>,
        cfg: Config,
        volume: [u8; 16],
        snap: &Snapshot,
        id: ReplicaId,
        key: MemberKey,
    ) -> Result<Replica> {
        let plain = keys
            .entry_seal
            .open(Domain::Snapshot, &volume, &snap.bytes)
            .map_err(|_| {
                Error::Invalid("the snapshot does not authenticate under this volume's key")
            })?;
        let body: SnapshotBody = decode(&plain)?;
        let mut b = WriteBatch::new();
        for (i, k, v) in body.pairs {
            let cf = *Cf::ALL
                .get(i as usize)
                .ok_or_else(|| corrupt("a snapshot names an unknown column family"))?;
            b.put(cf, k, v);
        }
        eng.write(b, Durability::Disk)?;
        let public = key.public()?;
        let mut r = Replica::blank(
            eng,
            keys,
            clock,
            cfg,
            volume,
            id,
            body.last,
            body.hlc,
            key.0.clone(),
        );
        match r.member(id)? {
            Some(Member::Active { key, .. }) if key == public => {}
            Some(Member::Active { .. }) => {
                return Err(Error::Invalid(
                    "this replica id was admitted with another signing key",
                ))
            }
            _ => {
                return Err(Error::Invalid(
                    "this replica id was not admitted in the snapshot: admit it first",
                ))
            }
        }
        r.load_vv()?;
        let mut b = WriteBatch::new();
        r.put_local(&mut b)?;
        r.eng.write(b, Durability::Disk)?;
        Ok(r)
    }

    // ---- Trimming ------------------------------------------------------------------------

    /// Forget what every member has: `acks` holds each member's version vector as it last
    /// reported it. An operation is stable once every active member has applied it and this
    /// replica has applied everything each member had made when it said so: nothing concurrent
    /// with it can still arrive. Stable operations lose their undo records, entries every member
    /// has are deleted, the contents of files removed by stable operations are released, and
    /// chunks nothing references are reclaimed. Returns the number of operations made stable.
    pub fn trim(&mut self, acks: &BTreeMap<ReplicaId, VersionVector>) -> Result<u64> {
        for m in self.silent_members()? {
            tracing::warn!(member = %m.short(), "removing a member silent for too long: it must re-join from a snapshot");
            self.expel(m)?;
        }
        let members = self.members()?;
        let mut own = BTreeMap::new();
        own.insert(self.local.id, self.vv.clone());
        // This replica's own state is what it has applied now, whatever `acks` says of it.
        let ack = |m: &ReplicaId| own.get(m).or_else(|| acks.get(m));
        // Per origin, the highest sequence number that is stable.
        let mut stable: BTreeMap<ReplicaId, u64> = BTreeMap::new();
        for origin in self.vv.keys() {
            let mut s = self.vv[origin].seq;
            for m in &members {
                let Some(a) = ack(m) else { return Ok(0) };
                let mine = a.get(m).map_or(0, |h| h.seq);
                if self.vv.get(m).map_or(0, |h| h.seq) < mine {
                    s = 0; // this replica has not applied everything m had made
                }
                s = s.min(a.get(origin).map_or(0, |h| h.seq));
            }
            stable.insert(*origin, s);
        }
        let is_stable = |id: &OpId| stable.get(&id.origin).is_some_and(|s| id.seq <= *s);
        // Stable operations: drop their log records; remember the rest's undo records.
        let mut b = WriteBatch::new();
        let mut n = 0;
        let mut live_undo: BTreeSet<Vec<u8>> = BTreeSet::new();
        let mut undo_chunks: BTreeSet<[u8; 32]> = BTreeSet::new();
        let mut stable_writes = Vec::new();
        let keys = self.keys.clone();
        let mut recs = Vec::new();
        self.eng.for_each(Cf::Log, &[OPLOG_PREFIX], &mut |k, v| {
            recs.push((k.to_vec(), v.to_vec()));
            Ok(())
        })?;
        for (k, v) in recs {
            let id = OpId::from_key(&k[1..]).ok_or_else(|| corrupt("a malformed log key"))?;
            let rec: LogRec = decode(&keys.open_record(&k, &v)?)?;
            if is_stable(&id) {
                b.delete(Cf::Log, k);
                n += 1;
                if matches!(rec.op, Op::Write { .. }) {
                    stable_writes.push(id);
                }
            } else {
                for (t, tid, pre) in rec.undo {
                    match (t, pre) {
                        (Table::Inode, _) => {
                            live_undo.insert(tid);
                        }
                        (Table::Extent, Some(p)) => {
                            let e: ExtentRec = decode(&p)?;
                            undo_chunks.extend(e.extent.chunks().map(|c| c.addr));
                        }
                        (Table::Prior, Some(p)) => {
                            let e: PriorRec = decode(&p)?;
                            undo_chunks
                                .extend(e.extent.iter().flat_map(|e| e.chunks()).map(|c| c.addr));
                        }
                        _ => {}
                    }
                }
            }
        }
        // Entries every member has applied, once this replica has applied everything each
        // member had made when it said so: otherwise a member admitted meanwhile, not yet in
        // the list here, may still need them.
        let caught_up = members.iter().all(|m| {
            let said = ack(m).and_then(|a| a.get(m)).map_or(0, |h| h.seq);
            self.vv.get(m).map_or(0, |h| h.seq) >= said
        });
        for (origin, head) in self.vv.iter().filter(|_| caught_up) {
            let mut upto = head.seq;
            for m in &members {
                upto = upto.min(ack(m).and_then(|a| a.get(origin)).map_or(0, |h| h.seq));
            }
            // From the first entry still kept: an earlier trim deleted those before it, and
            // deleting them again would add a tombstone per entry ever made, every time.
            let mut prefix = vec![ENTRY_PREFIX];
            prefix.extend_from_slice(&origin.0.to_be_bytes());
            let first = self
                .eng
                .scan(Cf::Log, &prefix, &entry_key(*origin, 1), 1)?
                .first()
                .and_then(|(k, _)| <[u8; 8]>::try_from(k.get(9..17)?).ok())
                .map_or(upto + 1, u64::from_be_bytes);
            for s in first..=upto {
                b.delete(Cf::Log, entry_key(*origin, s));
            }
        }
        self.eng.write(b, Durability::Process)?;
        // Files whose last name was removed by a stable operation: release their contents.
        let cache = self.cache.clone();
        let mut tx = Tx::new(&*self.eng, &keys).cached(&cache);
        // Stable writes: nothing based on an older version can still arrive, so what they
        // replaced is needed no more.
        for v in stable_writes {
            tx.drop_prior(v)?;
        }
        let cs = tx.chunk_size()?;
        let mut inodes = Vec::new();
        self.eng
            .for_each(Cf::Inodes, &[Table::Inode.place().1], &mut |k, v| {
                inodes.push(
                    decode::<InodeRec>(&keys.open_record(k, v).map_err(to_store)?)
                        .map_err(to_store)?,
                );
                Ok(())
            })?;
        for mut i in inodes {
            // Every operation that touched an inode records its old value in its undo record:
            // none left means every one of them (the removal too) is stable.
            if !i.links.is_empty()
                || i.kind != Kind::File
                || (i.size == 0 && i.version.is_none())
                || live_undo.contains(i.id.bytes().as_slice())
            {
                continue;
            }
            for n in 0..pieces(i.size, cs) {
                tx.set_extent(i.id, n, None, false)?;
            }
            if let Some(v) = i.version {
                if tx.verhome(v)? == Some(i.id) {
                    tx.set_verhome(v, None)?;
                }
            }
            i.size = 0;
            i.version = None;
            tx.put_inode(&i)?;
        }
        let mut b = WriteBatch::new();
        let written = tx.into_batch(&mut b)?;
        self.eng.write(b, Durability::Process)?;
        cache.committed(written);
        // Chunks nothing references (and no undo record could bring back).
        let referenced: BTreeSet<[u8; 32]> = self.refs()?.into_iter().map(|r| r.addr).collect();
        let mut b = WriteBatch::new();
        self.eng.for_each(Cf::Chunks, b"", &mut |k, _| {
            let mut a = [0u8; 32];
            if k.len() == 32 {
                a.copy_from_slice(k);
                if !referenced.contains(&a) && !undo_chunks.contains(&a) {
                    b.delete(Cf::Chunks, k.to_vec());
                }
            }
            Ok(())
        })?;
        self.eng.write(b, Durability::Process)?;
        Ok(n)
    }
}

fn to_store(e: Error) -> sealvol_store::StoreError {
    sealvol_store::StoreError::Corruption(e.to_string())
}

pub(crate) fn hex8(a: &[u8; 32]) -> String {
    a[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sealvol_store::MemoryEngine;

    /// A member that holds the volume key writes an entry as another member: the seal is valid
    /// (one volume key), the signature is not the origin's.
    #[test]
    fn a_member_cannot_write_as_another_member() {
        let master = sealvol_crypto::MasterKey::generate().unwrap();
        let keys = Arc::new(ReplicaKeys::derive(&master));
        let clock: Arc<dyn WallClock> = Arc::new(SystemWallClock);
        let mk = |r: &mut Replica| {
            let key = MemberKey::generate().unwrap();
            let id = r.admit(key.public().unwrap()).unwrap();
            let snap = r.snapshot().unwrap();
            (id, snap, key)
        };
        let mut a = Replica::found(
            Arc::new(MemoryEngine::new()),
            keys.clone(),
            clock.clone(),
            Config::default(),
            [1; 16],
            ReplicaId(11),
        )
        .unwrap();
        let (bid, bsnap, bkey) = mk(&mut a);
        let (cid, csnap, ckey) = mk(&mut a);
        let join = |id, snap: &Snapshot, key| {
            Replica::join(
                Arc::new(MemoryEngine::new()),
                keys.clone(),
                clock.clone(),
                Config::default(),
                [1; 16],
                snap,
                id,
                key,
            )
            .unwrap()
        };
        let mut b = join(bid, &bsnap, bkey);
        let mut c = join(cid, &csnap, ckey);
        for e in a.entries_for(c.version_vector()).unwrap() {
            c.receive(&e).unwrap();
        }
        // b poses as a: the next entry of a's chain, sealed correctly, signed with b's key.
        b.vv = a.vv.clone();
        b.local.id = a.id();
        b.create(NodeId::ROOT, b"forged", Kind::File, 0o644, 0, 0, b"")
            .unwrap();
        let forged = b.entries_for(c.version_vector()).unwrap();
        let forged = forged.iter().find(|e| e.origin == a.id()).unwrap();
        assert!(b.open_entry(forged).is_some(), "the seal itself is valid");
        assert_eq!(
            c.receive(forged).unwrap(),
            Received::Refused(Refusal::Forged)
        );
        assert!(c.dump().unwrap().is_empty());
        // The same entry through the batch path.
        assert_eq!(
            c.receive_batch(std::slice::from_ref(forged)).unwrap(),
            vec![Received::Refused(Refusal::Forged)]
        );
        // And a's genuine next entry is taken.
        a.create(NodeId::ROOT, b"genuine", Kind::File, 0o644, 0, 0, b"")
            .unwrap();
        let genuine = a.entries_for(c.version_vector()).unwrap();
        assert_eq!(c.receive_batch(&genuine).unwrap(), vec![Received::Applied]);
    }
}
