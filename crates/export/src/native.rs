//! Writing a native export: the volume's tree as entries, its file data as chunk objects the
//! target does not hold yet, and a manifest naming the export before it.

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sealvol_objstore::{LocalDir, ObjectStore};

use sealvol_crypto::{KdfParams, KeyHeader, MasterKey};
use sealvol_volume::{Inode, Kind, Volume};

use crate::cache;
use crate::chain::{
    manifest_name, meta_name, object_key, remote_meta_key, ExportKey, Target, EXPORTS,
};
use crate::error::{io, ExportError, Result};
use crate::format::{ChunkRef, Entry, EntryKind, Manifest, FORMAT_VERSION};
use crate::lock;
use crate::progress::{Progress, Summary};
use crate::walk::{walk, Node};

pub struct ExportOptions<'a> {
    pub key: ExportKey<'a>,
    /// Argon2id cost of a backup passphrase's slot.
    pub kdf: KdfParams,
    /// Objects held elsewhere (earlier archives of the chain, see [`crate::archive`]): not
    /// written, as if the target held them.
    pub held: HashSet<[u8; 32]>,
}

fn kind(k: Kind) -> EntryKind {
    match k {
        Kind::File => EntryKind::File,
        Kind::Dir => EntryKind::Dir,
        Kind::Symlink => EntryKind::Symlink,
        Kind::Fifo => EntryKind::Fifo,
        Kind::Socket => EntryKind::Socket,
        Kind::CharDev => EntryKind::CharDev,
        Kind::BlockDev => EntryKind::BlockDev,
    }
}

/// An entry for `node` (its chunks not yet filled in).
pub(crate) fn entry_of(node: &Node) -> Entry {
    let i: &Inode = &node.inode;
    Entry {
        path: node.path.clone(),
        ino: i.ino,
        kind: if node.hardlink {
            EntryKind::HardLink
        } else {
            kind(i.kind)
        },
        perm: i.perm,
        uid: i.uid,
        gid: i.gid,
        rdev: i.rdev,
        size: i.size,
        atime: (i.atime.secs, i.atime.nanos),
        mtime: (i.mtime.secs, i.mtime.nanos),
        ctime: (i.ctime.secs, i.ctime.nanos),
        target: i.target.clone(),
        xattrs: i.xattrs.clone(),
        chunks: Vec::new(),
        partial: false,
    }
}

/// The sealed size of an object of `len` plaintext bytes (objects are length-prefixed and
/// padded to the length's Padmé class).
fn sealed_object_len(len: usize) -> u64 {
    (sealvol_crypto::SEALED_OVERHEAD + 4 + sealvol_crypto::padded_len(len)) as u64
}

fn now_unix() -> u64 {
    #[allow(clippy::disallowed_methods)]
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Export `v` (a consistent view: the caller holds the store, or a snapshot of it) into the
/// chain in `dir`, starting one if `dir` is empty or absent. `volume_header` and
/// `volume_master` are the volume's key header and master key (they open the chain's key).
pub fn export(
    v: &Volume,
    volume_header: &KeyHeader,
    volume_master: &MasterKey,
    dir: &Path,
    opts: &ExportOptions<'_>,
    progress: &dyn Progress,
) -> Result<Summary> {
    export_to(
        v,
        volume_header,
        volume_master,
        Arc::new(LocalDir::new(dir)),
        opts,
        progress,
    )
}

/// A local temporary file, removed on drop unless it was moved away.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// [`export`] into any object store: a directory, or a bucket. On a bucket, the objects the
/// target holds are listed once; the metadata is written to a local temporary file, then
/// stored; the manifest is published last with a conditional write, so that of two exporters
/// racing for the same number one wins and the other is refused, the chain as the winner left
/// it.
pub fn export_to(
    v: &Volume,
    volume_header: &KeyHeader,
    volume_master: &MasterKey,
    store: Arc<dyn ObjectStore>,
    opts: &ExportOptions<'_>,
    progress: &dyn Progress,
) -> Result<Summary> {
    let started = Instant::now();
    let (mut target, _lock) =
        Target::open_for_export(store, volume_header, volume_master, &opts.key, opts.kdf)?;
    let dir = &target.dir.clone();
    let local = target.store.local_dir().map(Path::to_path_buf);
    let chain = target.chain()?;
    if !chain.problems.is_empty() {
        return Err(ExportError::Refused(format!(
            "the exports in {} do not form an intact chain ({}); `sealvol verify` says more. Export into a new directory",
            dir.display(),
            chain.problems.join("; ")
        )));
    }
    let parent = chain.manifests.last();
    let seq = parent.map_or(1, |(m, _)| m.seq + 1);
    // What the parent listed, to write only what changed (a delta), unless the deltas since
    // the last whole listing are already many or the parent's listing cannot be read whole.
    let prev = match parent {
        Some((pm, _)) if deltas_before(&chain.manifests, pm.seq) + 1 < MAX_DELTAS => {
            let mut damaged = Vec::new();
            let mut listed = Vec::new();
            let read = crate::restore::listing(&target, pm, &mut damaged, &mut |e, _| {
                let chunks = (e.kind == EntryKind::File)
                    .then(|| e.chunks.iter().map(|c| (c.index, chunk_hash(c))).collect());
                listed.push(ParentEntry {
                    path: e.path.clone(),
                    hash: entry_hash(&e)?,
                    chunks,
                });
                Ok(())
            });
            match read {
                Ok(()) if damaged.is_empty() => Some(listed),
                _ => {
                    tracing::info!(
                        export = pm.seq,
                        "its listing cannot be read whole here: this export lists the whole tree"
                    );
                    None
                }
            }
        }
        _ => None,
    };
    let base = prev.as_ref().and(parent.map(|(m, _)| m.seq));
    let stats = v.stats()?;
    progress.start("export", stats.logical_bytes);

    target.load_present()?;
    // The metadata is written beside its final name in a directory, to a local temporary file
    // for another store.
    let tmp_meta = match &local {
        Some(d) => d.join(EXPORTS).join(format!(".{}.tmp", meta_name(seq))),
        None => {
            let mut r = [0u8; 8];
            sealvol_crypto::random_bytes(&mut r)?;
            std::env::temp_dir().join(format!(".sealvol-export-{}.meta", hex::encode(r)))
        }
    };
    let tmp_guard = TempFile(tmp_meta.clone());
    let f = File::create(&tmp_meta).map_err(io(&tmp_meta))?;
    let meta = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, f),
        hash: blake3::Hasher::new(),
        len: 0,
    };
    let sum = Summary {
        seq,
        ..Summary::default()
    };
    let cs = v.chunk_size().get();
    let this_export: Mutex<HashSet<[u8; 32]>> = Mutex::new(HashSet::new());
    let mut asm = Assembler {
        seq,
        tmp_meta: &tmp_meta,
        meta,
        entries: 0,
        sum,
        extent_cache: cache::ExtentCache::load(&target),
        new_objects: Vec::new(),
        pending: VecDeque::new(),
        in_flight: 0,
        progress,
        prev,
        prev_at: 0,
        listing: 0,
    };
    let workers = crate::workers(local.is_none());
    let (jobs_tx, jobs_rx) = std::sync::mpsc::sync_channel::<ChunkJob>(4 * workers);
    let jobs_rx = Mutex::new(jobs_rx);
    let stop = AtomicBool::new(false);
    let target_ref = &target;
    let (this_export_ref, stop_ref, jobs_ref) = (&this_export, &stop, &jobs_rx);
    std::thread::scope(|scope| -> Result<()> {
        // Workers read (and decrypt) chunks from the volume, hash them, and seal and store
        // the objects the target lacks; this thread walks the tree and writes the entries, in
        // order, once their chunks are known.
        for _ in 0..workers {
            scope.spawn(move || loop {
                let next = lock(jobs_ref).recv();
                let Ok(job) = next else { break };
                let r = if stop_ref.load(Ordering::Relaxed) {
                    Err(ExportError::Refused("stopped".into()))
                } else {
                    job.run(v, cs, target_ref, opts, this_export_ref)
                };
                if r.is_err() {
                    stop_ref.store(true, Ordering::Relaxed);
                }
                let _ = job.done.send(r);
            });
        }
        let walked = walk(v, &mut |node| {
            let e = entry_of(&node);
            match e.kind {
                EntryKind::Dir => asm.sum.dirs += 1,
                EntryKind::File => asm.sum.files += 1,
                _ => asm.sum.others += 1,
            }
            let mut p = Pending {
                e,
                done: None,
                expect: 0,
                received: 0,
            };
            if p.e.kind != EntryKind::File {
                return asm.push(p, target_ref);
            }
            let (ino, size) = (p.e.ino, p.e.size);
            let shown: Arc<str> = p.e.display_path().into();
            // Chunks whose extent an earlier export met are not read again (see `cache`);
            // holes are not read either. The others go to the workers.
            let extents: std::collections::HashMap<u64, _> = v
                .file_extents(ino)
                .map_err(|err| {
                    ExportError::Refused(format!(
                        "reading {shown}: {err} (`sealvol check` names the damage)"
                    ))
                })?
                .into_iter()
                .collect();
            let holes = &node.inode.holes;
            let mut to_read: Vec<(u64, Option<[u8; 32]>)> = Vec::new();
            for index in 0..size.div_ceil(cs as u64) {
                let len = (size - index * cs as u64).min(cs as u64) as usize;
                let Some(ext) = extents.get(&index) else {
                    if holes.iter().any(|(a, b)| *a <= index && index < *b) {
                        asm.sum.logical_bytes += len as u64;
                    } else {
                        // Missing and not a hole: the read names the damage.
                        to_read.push((index, None));
                    }
                    continue;
                };
                let fp = cache::fingerprint(ext, len);
                match asm.extent_cache.get(&fp) {
                    Some(None) => {
                        asm.extent_cache.keep(fp, None);
                        asm.sum.logical_bytes += len as u64;
                    }
                    Some(Some(addr))
                        if lock(this_export_ref).contains(&addr)
                            || opts.held.contains(&addr)
                            || target_ref.holds(&addr, sealed_object_len(len)) =>
                    {
                        asm.extent_cache.keep(fp, Some(addr));
                        asm.sum.logical_bytes += len as u64;
                        p.e.chunks.push(ChunkRef {
                            index,
                            len: len as u32,
                            addr,
                        });
                        if lock(this_export_ref).insert(addr) {
                            asm.sum.reused_chunks += 1;
                        }
                    }
                    _ => to_read.push((index, Some(fp))),
                }
            }
            if to_read.is_empty() {
                return asm.push(p, target_ref);
            }
            let (tx, rx) = std::sync::mpsc::channel();
            p.done = Some(rx);
            p.expect = to_read.len();
            for (index, fp) in to_read {
                // Bounded: the entries before this one are finished first, then this one's
                // chunks taken as they come.
                while asm.in_flight >= MAX_IN_FLIGHT {
                    if asm.pending.is_empty() {
                        asm.absorb_one(&mut p)?;
                    } else {
                        asm.finish_oldest(target_ref)?;
                    }
                }
                asm.in_flight += 1;
                let job = ChunkJob {
                    ino,
                    index,
                    fp,
                    size,
                    shown: shown.clone(),
                    done: tx.clone(),
                };
                if jobs_tx.send(job).is_err() {
                    return Err(ExportError::Refused("the export's workers stopped".into()));
                }
            }
            asm.pending.push_back(p);
            Ok(())
        });
        let drained = walked.and_then(|()| {
            while !asm.pending.is_empty() {
                asm.finish_oldest(target_ref)?;
            }
            asm.gone_before(None, target_ref)
        });
        if drained.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        // Dropping the sender ends the workers once the jobs sent are done.
        drop(jobs_tx);
        drained
    })?;
    let Assembler {
        meta,
        entries,
        mut sum,
        extent_cache,
        new_objects,
        listing,
        ..
    } = asm;
    for (addr, n) in new_objects {
        target.stored(addr, n);
    }
    let this_export = this_export
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let HashingWriter { inner, hash, len } = meta;
    let f = inner
        .into_inner()
        .map_err(|e| io(&tmp_meta)(e.into_error()))?;
    if local.is_some() {
        f.sync_all().map_err(io(&tmp_meta))?;
    }
    drop(f);
    let meta_hash = *hash.finalize().as_bytes();
    let meta_key = match &local {
        Some(_) => format!("{EXPORTS}/{}", meta_name(seq)),
        None => remote_meta_key(seq, &meta_hash),
    };
    target.store.put_file(&meta_key, &tmp_meta)?;
    drop(tmp_guard);
    sum.bytes_written += len;
    // Every object and the meta file on stable storage before the manifest that names them
    // (a directory: syncfs; S3 has stored an object when its PUT returns).
    target.store.sync()?;
    let m = Manifest {
        format: FORMAT_VERSION,
        chain_id: target.keys.chain_id,
        volume_id: target.marker.volume.clone(),
        seq,
        parent: parent.map(|(_, h)| *h),
        created_unix: now_unix(),
        chunk_size: cs,
        entries,
        meta_bytes: len,
        meta_hash,
        files: sum.files,
        dirs: sum.dirs,
        others: sum.others,
        logical_bytes: sum.logical_bytes,
        chunks: this_export.len() as u64,
        new_objects: sum.new_chunks,
        new_object_bytes: sum.bytes_written - len,
        base,
        listing,
    };
    let sealed = target.keys.seal_manifest(&m)?;
    let manifest_key = format!("{EXPORTS}/{}", manifest_name(seq));
    if !target.store.put_if_absent(&manifest_key, &sealed)? {
        if local.is_none() {
            // Our metadata is named by its hash: nobody else's. Not removing it is harmless.
            if let Err(e) = target.store.delete(&meta_key) {
                tracing::warn!(error = %e, "could not remove the metadata of a refused export");
            }
        }
        return Err(ExportError::Refused(format!(
            "another export published export {seq} to {} while this one ran (its manifest is kept; this one is not published); the objects this one stored stay there for the next export to reuse: run the export again (it will be export {})",
            dir.display(),
            seq + 1
        )));
    }
    // After the manifest: the cache names only objects an intact export holds.
    extent_cache.save(&target)?;
    sum.bytes_written += sealed.len() as u64;
    sum.seconds = started.elapsed().as_secs_f64();
    progress.finish();
    Ok(sum)
}

/// Chunks read and not yet taken into their entries, at most.
const MAX_IN_FLIGHT: usize = 256;

/// Most exports in a row that list only what changed: the next lists the whole tree again, so
/// that an import reads at most this many metadata files besides a whole listing.
pub(crate) const MAX_DELTAS: usize = 16;

/// How many exports before `seq` (counting back from `seq - 1`) list only what changed.
fn deltas_before(manifests: &[(Manifest, [u8; 32])], seq: u64) -> usize {
    manifests
        .iter()
        .rev()
        .skip_while(|(m, _)| m.seq > seq)
        .take_while(|(m, _)| m.base.is_some())
        .count()
}

/// An entry of the parent export, as far as a delta needs it: its path, what it says, and for
/// a file a short hash of each chunk by index.
struct ParentEntry {
    path: Vec<u8>,
    hash: [u8; 32],
    chunks: Option<Vec<(u64, u64)>>,
}

fn chunk_hash(c: &ChunkRef) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(&c.len.to_le_bytes());
    h.update(&c.addr);
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.finalize().as_bytes()[..8]);
    u64::from_le_bytes(b)
}

/// A changed file's entry in a delta: only the chunks that differ from `prev`'s (and a
/// zero-length marker for each it no longer has), when that is less than half of them; else
/// the whole entry.
fn partial_of(e: &Entry, prev: &[(u64, u64)]) -> Option<Entry> {
    let was: std::collections::HashMap<u64, u64> = prev.iter().copied().collect();
    let mut changed: Vec<ChunkRef> = e
        .chunks
        .iter()
        .filter(|c| was.get(&c.index) != Some(&chunk_hash(c)))
        .copied()
        .collect();
    // Every chunk it no longer has is marked, past the new size too: a later delta that grows
    // the file again must not bring an old chunk back.
    let now: HashSet<u64> = e.chunks.iter().map(|c| c.index).collect();
    changed.extend(
        prev.iter()
            .filter(|(i, _)| !now.contains(i))
            .map(|(i, _)| ChunkRef {
                index: *i,
                len: 0,
                addr: [0; 32],
            }),
    );
    if changed.len() * 2 >= e.chunks.len().max(1) {
        return None;
    }
    changed.sort_unstable_by_key(|c| c.index);
    Some(Entry {
        chunks: changed,
        partial: true,
        ..e.clone()
    })
}

/// What an entry says, to tell whether it changed since the parent export.
fn entry_hash(e: &Entry) -> Result<[u8; 32]> {
    let bytes = postcard::to_allocvec(e)
        .map_err(|err| ExportError::Refused(format!("encoding an entry: {err}")))?;
    Ok(*blake3::hash(&bytes).as_bytes())
}

/// An entry waiting for its chunks (if `done` is set) before it is written.
struct Pending {
    e: Entry,
    done: Option<Receiver<Result<Outcome>>>,
    expect: usize,
    received: usize,
}

/// This thread's side of an export: entries written in order once their chunks are in.
struct Assembler<'a> {
    seq: u64,
    tmp_meta: &'a Path,
    meta: HashingWriter<BufWriter<File>>,
    entries: u64,
    sum: Summary,
    extent_cache: cache::ExtentCache,
    /// Objects stored by this export, and their sealed sizes.
    new_objects: Vec<([u8; 32], u64)>,
    /// Entries sent to the workers, oldest first.
    pending: VecDeque<Pending>,
    /// Chunks sent to the workers and not yet taken in.
    in_flight: usize,
    progress: &'a dyn Progress,
    /// The parent export's listing, in tree order, when this export is a delta; how far it
    /// has been matched.
    prev: Option<Vec<ParentEntry>>,
    prev_at: usize,
    /// Entries in the whole tree.
    listing: u64,
}

impl Assembler<'_> {
    /// Add `p` after the entries pending; write every entry at the front that waits on
    /// nothing.
    fn push(&mut self, p: Pending, target: &Target) -> Result<()> {
        self.pending.push_back(p);
        while self.pending.front().is_some_and(|p| p.received == p.expect) {
            self.finish_oldest(target)?;
        }
        Ok(())
    }

    /// Take in the next chunk of `p` from its worker.
    fn absorb_one(&mut self, p: &mut Pending) -> Result<()> {
        let Some(rx) = &p.done else {
            return Ok(());
        };
        let o = rx
            .recv()
            .map_err(|_| ExportError::Refused("an export worker stopped".into()))??;
        p.received += 1;
        self.in_flight -= 1;
        self.sum.logical_bytes += o.len as u64;
        self.sum.read_chunks += 1;
        let Some(addr) = o.addr else {
            if let Some(fp) = o.fp {
                self.extent_cache.keep(fp, None);
            }
            return Ok(());
        };
        if let Some(fp) = o.fp {
            self.extent_cache.keep(fp, Some(addr));
        }
        p.e.chunks.push(ChunkRef {
            index: o.index,
            len: o.len,
            addr,
        });
        match o.stored {
            Stored::New(n) => {
                self.sum.new_chunks += 1;
                self.sum.bytes_written += n;
                self.new_objects.push((addr, n));
            }
            Stored::Held => self.sum.reused_chunks += 1,
            Stored::Twice => {}
        }
        Ok(())
    }

    /// Finish the oldest pending entry: the rest of its chunks, then the entry itself.
    fn finish_oldest(&mut self, target: &Target) -> Result<()> {
        let Some(mut p) = self.pending.pop_front() else {
            return Ok(());
        };
        while p.received < p.expect {
            self.absorb_one(&mut p)?;
        }
        p.e.chunks.sort_unstable_by_key(|c| c.index);
        let e = &p.e;
        self.listing += 1;
        self.progress.advance(
            &e.display_path(),
            if e.kind == EntryKind::File { e.size } else { 0 },
        );
        self.gone_before(Some(&e.path), target)?;
        let mut partial = None;
        if let Some(prev) = &self.prev {
            if let Some(was) = prev.get(self.prev_at).filter(|l| l.path == e.path) {
                self.prev_at += 1;
                if was.hash == entry_hash(e)? {
                    return Ok(());
                }
                if let (EntryKind::File, Some(chunks)) = (e.kind, &was.chunks) {
                    partial = partial_of(e, chunks);
                }
            }
        }
        match partial {
            Some(p) => self.write(&p, target),
            None => self.write(e, target),
        }
    }

    /// In a delta: a `Gone` entry for every path of the parent's listing before `path` (all
    /// that are left, with `None`) that this export has not met.
    fn gone_before(&mut self, path: Option<&[u8]>, target: &Target) -> Result<()> {
        loop {
            let Some(prev) = &self.prev else {
                return Ok(());
            };
            let Some(l) = prev.get(self.prev_at) else {
                return Ok(());
            };
            if path
                .is_some_and(|x| crate::format::tree_order(&l.path, x) != std::cmp::Ordering::Less)
            {
                return Ok(());
            }
            let gone = Entry {
                path: l.path.clone(),
                ino: 0,
                kind: EntryKind::Gone,
                perm: 0,
                uid: 0,
                gid: 0,
                rdev: 0,
                size: 0,
                atime: (0, 0),
                mtime: (0, 0),
                ctime: (0, 0),
                target: Vec::new(),
                xattrs: Default::default(),
                chunks: Vec::new(),
                partial: false,
            };
            self.prev_at += 1;
            self.write(&gone, target)?;
        }
    }

    fn write(&mut self, e: &Entry, target: &Target) -> Result<()> {
        let sealed = target.keys.seal_entry(self.seq, self.entries, e)?;
        self.meta
            .write_all(&(sealed.len() as u32).to_le_bytes())
            .and_then(|_| self.meta.write_all(&sealed))
            .map_err(io(self.tmp_meta))?;
        self.entries += 1;
        Ok(())
    }
}

/// One chunk of a file to read, hash, and store if the target lacks it.
struct ChunkJob {
    ino: u64,
    index: u64,
    /// The fingerprint of its extent, for the extent cache (none where the chunk is missing).
    fp: Option<[u8; 32]>,
    size: u64,
    shown: Arc<str>,
    done: Sender<Result<Outcome>>,
}

/// What became of a chunk.
struct Outcome {
    index: u64,
    len: u32,
    fp: Option<[u8; 32]>,
    /// Its object; `None` for a chunk of zeros (a hole).
    addr: Option<[u8; 32]>,
    stored: Stored,
}

enum Stored {
    /// Stored by this job: the sealed bytes written.
    New(u64),
    /// The target (or an earlier archive) held it.
    Held,
    /// Another chunk of this export had the same contents.
    Twice,
}

impl ChunkJob {
    fn run(
        &self,
        v: &Volume,
        cs: u32,
        target: &Target,
        opts: &ExportOptions<'_>,
        this_export: &Mutex<HashSet<[u8; 32]>>,
    ) -> Result<Outcome> {
        let (shown, size) = (&self.shown, self.size);
        let off = self.index * cs as u64;
        let data = v.read(self.ino, off, cs).map_err(|err| {
            ExportError::Refused(format!(
                "reading {shown} at byte {off}: {err} (`sealvol check` names the damage)"
            ))
        })?;
        if data.is_empty() {
            return Err(ExportError::Refused(format!(
                "{shown} ended at byte {off} of {size} while being exported"
            )));
        }
        let mut o = Outcome {
            index: self.index,
            len: data.len() as u32,
            fp: self.fp,
            addr: None,
            stored: Stored::Twice,
        };
        if data.iter().all(|b| *b == 0) {
            return Ok(o);
        }
        let addr = target.keys.object_addr(&data);
        o.addr = Some(addr);
        if !lock(this_export).insert(addr) {
            return Ok(o);
        }
        let want = sealed_object_len(data.len());
        if opts.held.contains(&addr) || target.holds(&addr, want) {
            o.stored = Stored::Held;
            return Ok(o);
        }
        let sealed = target.keys.seal_object(&addr, &data)?;
        target.store.put(&object_key(&addr), &sealed)?;
        o.stored = Stored::New(sealed.len() as u64);
        Ok(o)
    }
}

struct HashingWriter<W: Write> {
    inner: W,
    hash: blake3::Hasher,
    len: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
