//! Reading a native export back: `import` into a new volume and `verify`. Damage is named
//! (by path where the entry opened) and the run goes on: every undamaged file is restored.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sealvol_volume::{Caller, Kind, SetAttr, Ts, Volume, ROOT_INO};

use crate::chain::{meta_name, object_key, remote_meta_key, Target, EXPORTS};
use crate::error::{io, ExportError, Result};
use crate::format::{ChunkRef, Entry, EntryKind, Manifest, MAX_FRAME};
use crate::lock;
use crate::progress::{Progress, Summary};

/// The export to read: the newest whose manifest opens, or the one numbered `seq`.
pub fn pick(target: &Target, seq: Option<u64>) -> Result<(Manifest, Vec<String>)> {
    let chain = target.chain()?;
    let found = match seq {
        Some(s) => chain.manifests.iter().find(|(m, _)| m.seq == s),
        None => chain.manifests.last(),
    };
    match found {
        Some((m, _)) => Ok((m.clone(), chain.problems)),
        None => Err(ExportError::Damaged {
            path: target.dir.clone(),
            what: match seq {
                Some(s) => format!(
                    "it holds no readable export {s} ({})",
                    if chain.problems.is_empty() {
                        "`sealvol export-ls` lists those it holds".to_string()
                    } else {
                        chain.problems.join("; ")
                    }
                ),
                None if chain.problems.is_empty() => "it holds no export yet".into(),
                None => chain.problems.join("; "),
            },
        }),
    }
}

/// Read the entries of export `m` one by one; damage goes to `damaged`, and reading goes on
/// where the framing allows.
fn entries(
    target: &Target,
    m: &Manifest,
    damaged: &mut Vec<String>,
    f: &mut dyn FnMut(Entry, &mut Vec<String>) -> Result<()>,
) -> Result<()> {
    // A directory's metadata is read as a stream; another store's is fetched whole (under
    // its name with the hash, or the plain one an archive or directory copy has).
    let opened: std::result::Result<(PathBuf, Box<dyn Read>), String> =
        match target.store.local_dir() {
            Some(_) => {
                let path = target.exports_dir().join(meta_name(m.seq));
                File::open(&path)
                    .map(|f| (path.clone(), Box::new(f) as Box<dyn Read>))
                    .map_err(|e| {
                        format!(
                            "export {} metadata ({}): cannot be read ({e})",
                            m.seq,
                            path.display()
                        )
                    })
            }
            None => {
                let hashed = remote_meta_key(m.seq, &m.meta_hash);
                let plain = format!("{EXPORTS}/{}", meta_name(m.seq));
                let got = match target.store.get(&hashed) {
                    Err(e) if e.is_not_found() => target.store.get(&plain).map(|b| (plain, b)),
                    r => r.map(|b| (hashed, b)),
                };
                got.map(|(k, b)| {
                    (
                        target.dir.join(k),
                        Box::new(std::io::Cursor::new(b)) as Box<dyn Read>,
                    )
                })
                .map_err(|e| format!("export {} metadata: cannot be read ({e})", m.seq))
            }
        };
    let (path, file) = match opened {
        Ok(x) => x,
        Err(why) => {
            damaged.push(format!("{why}: no file of this export can be restored"));
            return Ok(());
        }
    };
    let part = format!("export {} metadata ({})", m.seq, path.display());
    let mut r = HashingReader {
        inner: BufReader::with_capacity(1 << 20, file),
        hash: blake3::Hasher::new(),
        len: 0,
    };
    let mut index = 0u64;
    let mut frame = Vec::new();
    loop {
        let mut len = [0u8; 4];
        match read_full(&mut r, &mut len) {
            Ok(0) => break,
            Ok(4) => {}
            Ok(_) => {
                damaged.push(format!("{part}: truncated inside entry {index}"));
                break;
            }
            Err(e) => return Err(io(&path)(e)),
        }
        let n = u32::from_le_bytes(len) as usize;
        if n > MAX_FRAME {
            damaged.push(format!(
                "{part}: entry {index} claims {n} bytes: the rest of the metadata is unreadable"
            ));
            break;
        }
        frame.resize(n, 0);
        let got = read_full(&mut r, &mut frame).map_err(io(&path))?;
        if got < n {
            damaged.push(format!("{part}: truncated inside entry {index}"));
            break;
        }
        match target.keys.open_entry(m.seq, index, &frame) {
            Ok(e) => f(e, damaged)?,
            Err(why) if m.base.is_some() => damaged.push(format!(
                "{part}: entry {index} {why}; a file this export changed, added or removed is restored as export {} had it, or is missing",
                m.seq - 1
            )),
            Err(why) => damaged.push(format!("{part}: entry {index} {why}; its file is lost")),
        }
        index += 1;
    }
    if index != m.entries {
        damaged.push(format!(
            "{part}: holds {index} entries where its manifest says {}",
            m.entries
        ));
    } else if r.len != m.meta_bytes || *r.hash.finalize().as_bytes() != m.meta_hash {
        damaged.push(format!("{part}: does not match its manifest's hash"));
    }
    Ok(())
}

/// A path in tree order (see [`crate::format::tree_order`]).
#[derive(PartialEq, Eq)]
struct TreeKey(Vec<u8>);

impl Ord for TreeKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        crate::format::tree_order(&self.0, &other.0)
    }
}

impl PartialOrd for TreeKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Most exports a listing is rebuilt through (a delta of a delta …); exports write a whole
/// listing long before (see `native::MAX_DELTAS`).
const MAX_CHAIN: usize = 1024;

/// The whole tree of export `m`, in tree order: its own metadata if it is a full listing, else
/// the full listing it descends from with every delta after it laid over, oldest first (deltas
/// are held in memory; the full listing streams). Damage goes to `damaged`, as for `entries`.
pub(crate) fn listing(
    target: &Target,
    m: &Manifest,
    damaged: &mut Vec<String>,
    f: &mut dyn FnMut(Entry, &mut Vec<String>) -> Result<()>,
) -> Result<()> {
    if m.base.is_none() {
        return entries(target, m, damaged, f);
    }
    let chain = target.chain()?;
    let mut deltas = vec![m.clone()];
    let mut full = None;
    while let Some(b) = deltas.last().and_then(|d| d.base) {
        let Some((bm, _)) = chain.manifests.iter().find(|(x, _)| x.seq == b) else {
            damaged.push(format!(
                "export {} lists only what changed since export {b}, which cannot be read: no file of export {} can be restored",
                m.seq, m.seq
            ));
            return Ok(());
        };
        if deltas.len() > MAX_CHAIN {
            return Err(ExportError::Damaged {
                path: target.dir.clone(),
                what: format!("export {}'s chain of deltas does not end", m.seq),
            });
        }
        if bm.base.is_none() {
            full = Some(bm.clone());
            break;
        }
        deltas.push(bm.clone());
    }
    let Some(full) = full else {
        return Ok(());
    };
    let cs = m.chunk_size;
    let mut over: std::collections::BTreeMap<TreeKey, Option<Entry>> = Default::default();
    for d in deltas.iter().rev() {
        entries(target, d, damaged, &mut |e, damaged| {
            let k = TreeKey(e.path.clone());
            let v = match (e.kind, e.partial, over.get(&k)) {
                (EntryKind::Gone, ..) => None,
                (_, true, Some(Some(p))) if !p.partial => Some(e.over(&p.chunks, cs)),
                (_, true, Some(Some(p))) => {
                    // Two partial entries: both relative to the whole listing's, the newer's
                    // chunks (and hole markers) over the older's.
                    let mut all: std::collections::BTreeMap<u64, ChunkRef> =
                        p.chunks.iter().map(|c| (c.index, *c)).collect();
                    all.extend(e.chunks.iter().map(|c| (c.index, *c)));
                    Some(Entry {
                        chunks: all.into_values().collect(),
                        ..e
                    })
                }
                (_, true, Some(None)) => {
                    damaged.push(format!(
                        "export {}: {}: changed chunks of a file the export before had removed; it is not restored",
                        d.seq,
                        e.display_path()
                    ));
                    None
                }
                _ => Some(e),
            };
            over.insert(k, v);
            Ok(())
        })?;
    }
    let mut over = over.into_iter().peekable();
    let mut count = 0u64;
    let mut emit = |e: Option<Entry>, damaged: &mut Vec<String>| -> Result<()> {
        match e {
            Some(e) if e.partial => {
                damaged.push(format!(
                    "export {}: {}: changed chunks of a file export {} does not hold; it is not restored",
                    m.seq,
                    e.display_path(),
                    full.seq
                ));
                Ok(())
            }
            Some(e) => {
                count += 1;
                f(e, damaged)
            }
            None => Ok(()),
        }
    };
    entries(target, &full, damaged, &mut |e, damaged| {
        let k = TreeKey(e.path.clone());
        while over.peek().is_some_and(|(o, _)| *o < k) {
            if let Some((_, v)) = over.next() {
                emit(v, damaged)?;
            }
        }
        if over.peek().is_some_and(|(o, _)| *o == k) {
            if let Some((_, v)) = over.next() {
                return match v {
                    Some(p) if p.partial && e.kind == EntryKind::File => {
                        emit(Some(p.over(&e.chunks, cs)), damaged)
                    }
                    v => emit(v, damaged),
                };
            }
        }
        emit(Some(e), damaged)
    })?;
    for (_, v) in over {
        emit(v, damaged)?;
    }
    if count != m.listing && damaged.is_empty() {
        damaged.push(format!(
            "export {}: its listing rebuilt from export {} and the deltas after it holds {count} entries where its manifest says {}",
            m.seq, full.seq, m.listing
        ));
    }
    Ok(())
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

struct HashingReader<R: Read> {
    inner: R,
    hash: blake3::Hasher,
    len: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// Read and open object `addr`, or say why not.
fn load_object(target: &Target, addr: &[u8; 32]) -> std::result::Result<Vec<u8>, String> {
    let sealed = target.store.get(&object_key(addr)).map_err(|e| {
        if e.is_not_found() {
            format!("chunk {} is missing", crate::format::short(addr))
        } else {
            format!("chunk {} cannot be read ({e})", crate::format::short(addr))
        }
    })?;
    target
        .keys
        .open_object(addr, &sealed)
        .map_err(|why| format!("chunk {} {why}", crate::format::short(addr)))
}

/// Check export `seq` (the newest if `None`) and every earlier one: each manifest, each
/// metadata stream and each chunk object it names is read and authenticated, chunk contents
/// re-hashed against their names. Damage is named by export and path.
pub fn verify(target: &Target, progress: &dyn Progress) -> Result<Summary> {
    let started = Instant::now();
    let chain = target.chain()?;
    let mut sum = Summary::default();
    sum.damaged.extend(chain.problems.iter().cloned());
    if chain.manifests.is_empty() && chain.problems.is_empty() {
        return Err(ExportError::Damaged {
            path: target.dir.clone(),
            what: "it holds no export yet".into(),
        });
    }
    let total: u64 = chain.manifests.iter().map(|(m, _)| m.logical_bytes).sum();
    progress.start("verify", total);
    let mut checked: HashMap<[u8; 32], Option<String>> = HashMap::new();
    for (m, _) in &chain.manifests {
        sum.seq = m.seq;
        let mut damaged = Vec::new();
        entries(target, m, &mut damaged, &mut |e, damaged| {
            let mut bad = None;
            for c in e.chunks.iter().filter(|c| c.len > 0) {
                let verdict = checked.entry(c.addr).or_insert_with(|| {
                    sum.new_chunks += 1;
                    match load_object(target, &c.addr) {
                        Ok(plain) if plain.len() == c.len as usize => None,
                        Ok(_) => Some(format!(
                            "chunk {} has the wrong length",
                            crate::format::short(&c.addr)
                        )),
                        Err(why) => Some(why),
                    }
                });
                if bad.is_none() {
                    bad.clone_from(verdict);
                }
                sum.logical_bytes += c.len as u64;
            }
            match e.kind {
                EntryKind::Dir => sum.dirs += 1,
                EntryKind::File => sum.files += 1,
                EntryKind::Gone => {}
                _ => sum.others += 1,
            }
            if let Some(why) = bad {
                progress.damaged(&e.display_path(), &why);
                damaged.push(format!("export {}: {}: {why}", m.seq, e.display_path()));
            }
            progress.advance(&e.display_path(), 0);
            Ok(())
        })?;
        sum.damaged.extend(damaged);
    }
    sum.seconds = started.elapsed().as_secs_f64();
    progress.finish();
    Ok(sum)
}

fn ts((secs, nanos): (i64, u32)) -> Ts {
    Ts { secs, nanos }
}

fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

/// Restore export `m` of `target` into `v` (a new, empty volume). Damaged files are left out
/// and listed in the summary; an error is returned only for what stops the whole restore (the
/// new volume cannot be written: a full disk, an engine error).
///
/// This thread reads the entries in order and makes every name (directories before their
/// children, hard links after their file); file contents are restored by a pool of workers,
/// each reading, opening and verifying its objects and writing them into the volume (which
/// hashes and seals them again, and waits for the store's flushes): a large file is cut into
/// pieces that workers write side by side, as the kernel's writes come to a mount.
pub fn restore(
    target: &Target,
    m: &Manifest,
    v: &Volume,
    progress: &dyn Progress,
) -> Result<Summary> {
    let started = Instant::now();
    progress.start("import", m.logical_bytes);
    let shared = Shared::default();
    let workers = crate::import_workers(target.store.local_dir().is_none());
    let mut damaged = Vec::new();
    let mut r = Restorer {
        v,
        progress,
        shared: &shared,
        cs: m.chunk_size as u64,
        sum: Summary {
            seq: m.seq,
            ..Summary::default()
        },
        dirs: HashMap::from([(Vec::new(), ROOT_INO)]),
        dir_attrs: Vec::new(),
        files: HashMap::new(),
        relinked: HashSet::new(),
        late: Vec::new(),
    };
    let (tx, rx) = std::sync::mpsc::sync_channel::<Piece>(2 * workers);
    let rx = Mutex::new(rx);
    let read = std::thread::scope(|scope| {
        for _ in 0..workers {
            let (rx, shared) = (&rx, &shared);
            scope.spawn(move || loop {
                // The lock is held only to take the next piece.
                let next = lock(rx).recv();
                match next {
                    Ok(piece) => piece.restore(target, v, shared),
                    Err(_) => break,
                }
            });
        }
        let read = listing(target, m, &mut damaged, &mut |e, damaged| {
            r.report(damaged);
            if let Some(err) = lock(&shared.fatal).take() {
                return Err(err);
            }
            r.entry(e, &tx, damaged)
        });
        // Dropping the sender ends the workers once the pieces sent are done.
        drop(tx);
        read
    });
    r.report(&mut damaged);
    if let Some(err) = lock(&shared.fatal).take() {
        return Err(err);
    }
    read?;
    r.sum.files += shared.files.load(Ordering::Relaxed);
    r.sum.logical_bytes += shared.bytes.load(Ordering::Relaxed);
    let lost = lock(&shared.lost);
    for (ino, e) in r
        .late
        .iter()
        .filter(|(ino, _)| r.relinked.contains(ino) && !lost.contains(ino))
    {
        set_attrs(v, *ino, e)?;
    }
    for (ino, e) in r.dir_attrs.iter().rev() {
        set_attrs(v, *ino, e)?;
    }
    v.sync_all()?;
    let mut sum = r.sum;
    sum.damaged = damaged;
    sum.seconds = started.elapsed().as_secs_f64();
    progress.finish();
    Ok(sum)
}

/// Chunks per piece of a file given to one worker.
const PIECE_CHUNKS: usize = 64;

/// What the workers report back.
#[derive(Default)]
struct Shared {
    /// The first error that stops the whole restore.
    fatal: Mutex<Option<ExportError>>,
    /// Files not restored: (path, why), for this thread to report.
    damaged: Mutex<Vec<(String, String)>>,
    /// The inodes of files taken away again.
    lost: Mutex<HashSet<u64>>,
    files: AtomicU64,
    bytes: AtomicU64,
}

impl Shared {
    fn fail(&self, e: ExportError) {
        lock(&self.fatal).get_or_insert(e);
    }
    fn failed(&self) -> bool {
        lock(&self.fatal).is_some()
    }
}

/// A file whose contents are being restored, shared by the pieces it was cut into.
struct FileJob {
    ino: u64,
    shown: String,
    /// Kept small: only what set_attrs needs.
    attrs: Entry,
    /// Bytes of data in its chunks.
    data: u64,
    /// Pieces not yet done; the one that brings it to 0 finishes the file.
    remaining: AtomicUsize,
    /// Why the file cannot be restored, once known.
    bad: Mutex<Option<String>>,
    /// Its names, and whether it is finished.
    names: Mutex<Names>,
}

/// A file's names (parent, name): the first, then hard links made while it is restored; and,
/// once it is finished, whether it was restored. A damaged file loses all its names when it is
/// finished; a hard link to a file finished damaged is not made.
struct Names {
    names: Vec<(u64, Vec<u8>)>,
    restored: Option<bool>,
}

/// Some chunks of a file, for one worker.
struct Piece {
    file: Arc<FileJob>,
    chunks: Vec<ChunkRef>,
    cs: u64,
}

impl Piece {
    fn restore(self, target: &Target, v: &Volume, shared: &Shared) {
        let f = &self.file;
        for c in &self.chunks {
            if shared.failed() || lock(&f.bad).is_some() {
                break;
            }
            match load_object(target, &c.addr) {
                Ok(plain) if plain.len() == c.len as usize => {
                    if let Err(err) = v.write(f.ino, c.index * self.cs, &plain) {
                        shared.fail(err.into());
                        break;
                    }
                }
                Ok(_) => {
                    lock(&f.bad).get_or_insert(format!(
                        "chunk {} has the wrong length",
                        crate::format::short(&c.addr)
                    ));
                }
                Err(why) => {
                    lock(&f.bad).get_or_insert(why);
                }
            }
        }
        if f.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Err(err) = finish(f, v, shared) {
                shared.fail(err);
            }
        }
    }
}

/// The last piece of a file is done: close it, and give it its attributes, or take it away
/// again if it is damaged.
fn finish(f: &FileJob, v: &Volume, shared: &Shared) -> Result<()> {
    v.release_file(f.ino)?;
    let bad = lock(&f.bad).take();
    let mut names = lock(&f.names);
    names.restored = Some(bad.is_none());
    match bad {
        Some(why) => {
            for (parent, name) in names.names.drain(..) {
                v.unlink(parent, &name)?;
            }
            lock(&shared.lost).insert(f.ino);
            lock(&shared.damaged).push((f.shown.clone(), why));
        }
        None => {
            set_attrs(v, f.ino, &f.attrs)?;
            shared.files.fetch_add(1, Ordering::Relaxed);
            shared.bytes.fetch_add(f.data, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// What a restore keeps between entries.
struct Restorer<'a> {
    v: &'a Volume,
    progress: &'a dyn Progress,
    shared: &'a Shared,
    cs: u64,
    sum: Summary,
    /// Directories restored, by path.
    dirs: HashMap<Vec<u8>, u64>,
    /// Directories get their attributes last (children change their times) ...
    dir_attrs: Vec<(u64, Entry)>,
    /// Each restored file, by its inode number in the export.
    files: HashMap<u64, Arc<FileJob>>,
    /// ... and hard-linked files again at the end (each link changes ctime).
    relinked: HashSet<u64>,
    late: Vec<(u64, Entry)>,
}

impl Restorer<'_> {
    /// Pass on what the workers found damaged.
    fn report(&mut self, damaged: &mut Vec<String>) {
        for (shown, why) in lock(&self.shared.damaged).drain(..) {
            self.progress.damaged(&shown, &why);
            damaged.push(format!("{shown}: {why}; not restored"));
        }
    }

    fn entry(
        &mut self,
        e: Entry,
        pieces: &std::sync::mpsc::SyncSender<Piece>,
        damaged: &mut Vec<String>,
    ) -> Result<()> {
        let v = self.v;
        let shown = e.display_path();
        if e.path.is_empty() {
            self.sum.dirs += 1;
            self.dir_attrs.push((ROOT_INO, e));
            return Ok(());
        }
        let (parent_path, name) = split(&e.path);
        let Some(&parent) = self.dirs.get(parent_path) else {
            damaged.push(format!("{shown}: its directory was not restored"));
            return Ok(());
        };
        let name = name.to_vec();
        let who = Caller {
            uid: e.uid,
            gid: e.gid,
        };
        let made = match e.kind {
            EntryKind::Dir => v.mkdir(who, parent, &name, e.perm & 0o7777),
            EntryKind::Symlink => v.symlink(who, parent, &name, &e.target),
            EntryKind::HardLink => return self.hard_link(&e, parent, &name, damaged),
            EntryKind::Gone => {
                damaged.push(format!("{shown}: a deletion marker outside a delta"));
                return Ok(());
            }
            k => v.mknod(
                who,
                parent,
                &name,
                match k {
                    EntryKind::Fifo => Kind::Fifo,
                    EntryKind::Socket => Kind::Socket,
                    EntryKind::CharDev => Kind::CharDev,
                    EntryKind::BlockDev => Kind::BlockDev,
                    _ => Kind::File,
                },
                e.perm & 0o7777,
                e.rdev,
            ),
        };
        let ino = match made {
            Ok(i) => i.ino,
            Err(err @ sealvol_volume::FsError::Store(_)) => return Err(err.into()),
            Err(err) => {
                damaged.push(format!("{shown}: cannot be made ({err})"));
                return Ok(());
            }
        };
        for (k, val) in &e.xattrs {
            if let Err(err) = v.setxattr(ino, k, val, 0) {
                damaged.push(format!(
                    "{shown}: extended attribute {} not restored ({err})",
                    String::from_utf8_lossy(k)
                ));
            }
        }
        self.progress
            .advance(&shown, if e.kind == EntryKind::File { e.size } else { 0 });
        match e.kind {
            EntryKind::Dir => {
                self.sum.dirs += 1;
                self.dirs.insert(e.path.clone(), ino);
                self.dir_attrs.push((ino, e));
            }
            EntryKind::File => {
                let mut e = e;
                let chunks = std::mem::take(&mut e.chunks);
                e.xattrs.clear();
                e.target.clear();
                let job = Arc::new(FileJob {
                    ino,
                    shown,
                    attrs: e.clone(),
                    data: chunks.iter().map(|c| c.len as u64).sum(),
                    remaining: AtomicUsize::new(chunks.len().div_ceil(PIECE_CHUNKS).max(1)),
                    bad: Mutex::new(None),
                    names: Mutex::new(Names {
                        names: vec![(parent, name)],
                        restored: None,
                    }),
                });
                self.files.insert(e.ino, job.clone());
                self.late.push((ino, e));
                v.open_file(ino)?;
                let mut sent = false;
                for part in chunks.chunks(PIECE_CHUNKS) {
                    sent = true;
                    self.send(pieces, &job, part.to_vec())?;
                }
                if !sent {
                    self.send(pieces, &job, Vec::new())?;
                }
            }
            _ => {
                self.sum.others += 1;
                set_attrs(v, ino, &e)?;
                let mut e = e;
                e.target.clear();
                e.xattrs.clear();
                self.late.push((ino, e));
            }
        }
        Ok(())
    }

    fn send(
        &self,
        pieces: &std::sync::mpsc::SyncSender<Piece>,
        file: &Arc<FileJob>,
        chunks: Vec<ChunkRef>,
    ) -> Result<()> {
        let piece = Piece {
            file: file.clone(),
            chunks,
            cs: self.cs,
        };
        if pieces.send(piece).is_err() {
            // The workers are gone only after one of them failed.
            return Err(lock(&self.shared.fatal)
                .take()
                .unwrap_or_else(|| ExportError::Damaged {
                    path: Default::default(),
                    what: "the restore's workers stopped".into(),
                }));
        }
        Ok(())
    }

    fn hard_link(
        &mut self,
        e: &Entry,
        parent: u64,
        name: &[u8],
        damaged: &mut Vec<String>,
    ) -> Result<()> {
        let shown = e.display_path();
        let Some(file) = self.files.get(&e.ino) else {
            damaged.push(format!(
                "{shown}: the file it is a hard link of was not restored"
            ));
            return Ok(());
        };
        let mut names = lock(&file.names);
        if names.restored == Some(false) {
            damaged.push(format!(
                "{shown}: the file it is a hard link of was not restored"
            ));
            return Ok(());
        }
        self.v.link(file.ino, parent, name)?;
        names.names.push((parent, name.to_vec()));
        self.relinked.insert(file.ino);
        self.sum.others += 1;
        self.progress.advance(&shown, 0);
        Ok(())
    }
}

/// Owner, mode, size (a file's trailing hole) and times, as the entry says.
fn set_attrs(v: &Volume, ino: u64, e: &Entry) -> Result<()> {
    let a = SetAttr {
        perm: (e.kind != EntryKind::Symlink).then_some(e.perm & 0o7777),
        uid: Some(e.uid),
        gid: Some(e.gid),
        size: (e.kind == EntryKind::File).then_some(e.size),
        atime: Some(ts(e.atime)),
        mtime: Some(ts(e.mtime)),
        ctime: Some(ts(e.ctime)),
        kill_suidgid: false,
    };
    v.setattr(ino, &a)?;
    Ok(())
}
