//! Reading a native export back: `import` into a new volume and `verify`. Damage is named
//! (by path where the entry opened) and the run goes on: every undamaged file is restored.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::time::Instant;

use sealvol_volume::{Caller, Kind, SetAttr, Ts, Volume, ROOT_INO};

use crate::chain::{meta_name, object_key, remote_meta_key, Target, EXPORTS};
use crate::error::{io, ExportError, Result};
use crate::format::{Entry, EntryKind, Manifest, MAX_FRAME};
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
            for c in &e.chunks {
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
pub fn restore(
    target: &Target,
    m: &Manifest,
    v: &Volume,
    progress: &dyn Progress,
) -> Result<Summary> {
    let started = Instant::now();
    progress.start("import", m.logical_bytes);
    let mut r = Restorer {
        target,
        v,
        progress,
        cs: m.chunk_size as u64,
        sum: Summary {
            seq: m.seq,
            ..Summary::default()
        },
        dirs: HashMap::from([(Vec::new(), ROOT_INO)]),
        dir_attrs: Vec::new(),
        new_ino: HashMap::new(),
        relinked: HashSet::new(),
        late: Vec::new(),
    };
    let mut damaged = Vec::new();
    // Entries are restored in batches: a helper thread reads, opens and verifies the objects
    // of a batch, in order, while this thread makes the batch's files and writes the objects
    // into the volume (which hashes and seals them again).
    let mut batch: Vec<Entry> = Vec::new();
    let mut batch_chunks = 0;
    entries(target, m, &mut damaged, &mut |e, damaged| {
        batch_chunks += e.chunks.len();
        batch.push(e);
        if batch.len() >= BATCH_ENTRIES || batch_chunks >= BATCH_ENTRIES {
            r.batch(std::mem::take(&mut batch), damaged)?;
            batch_chunks = 0;
        }
        Ok(())
    })?;
    r.batch(batch, &mut damaged)?;
    for (ino, e) in r.late.iter().filter(|(ino, _)| r.relinked.contains(ino)) {
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

/// Entries (or chunks) restored per batch.
const BATCH_ENTRIES: usize = 256;

/// What a restore keeps between entries.
struct Restorer<'a> {
    target: &'a Target,
    v: &'a Volume,
    progress: &'a dyn Progress,
    cs: u64,
    sum: Summary,
    /// Directories restored, by path.
    dirs: HashMap<Vec<u8>, u64>,
    /// Directories get their attributes last (children change their times) ...
    dir_attrs: Vec<(u64, Entry)>,
    /// The new inode of each restored file, by its inode number in the export.
    new_ino: HashMap<u64, u64>,
    /// ... and hard-linked files again at the end (each link changes ctime).
    relinked: HashSet<u64>,
    late: Vec<(u64, Entry)>,
}

type Loaded = std::result::Result<Vec<u8>, String>;

impl Restorer<'_> {
    fn batch(&mut self, batch: Vec<Entry>, damaged: &mut Vec<String>) -> Result<()> {
        let chunks: Vec<[u8; 32]> = batch
            .iter()
            .filter(|e| e.kind == EntryKind::File)
            .flat_map(|e| e.chunks.iter().map(|c| c.addr))
            .collect();
        let target = self.target;
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Loaded>(16);
            scope.spawn(move || {
                for addr in &chunks {
                    if tx.send(load_object(target, addr)).is_err() {
                        break;
                    }
                }
            });
            let mut loaded = rx.iter();
            for e in batch {
                let n = if e.kind == EntryKind::File {
                    e.chunks.len()
                } else {
                    0
                };
                let mut taken = 0;
                let r = self.entry(e, &mut loaded, &mut taken, damaged);
                // Whatever happened, the objects of this entry are consumed: the next
                // entry's come after them.
                for _ in taken..n {
                    loaded.next();
                }
                r?;
            }
            // Dropping the receiver stops the helper at its next send.
            Ok(())
        })
    }

    fn entry(
        &mut self,
        e: Entry,
        loaded: &mut dyn Iterator<Item = Loaded>,
        taken: &mut usize,
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
        let who = Caller {
            uid: e.uid,
            gid: e.gid,
        };
        let made = match e.kind {
            EntryKind::Dir => v.mkdir(who, parent, name, e.perm & 0o7777),
            EntryKind::Symlink => v.symlink(who, parent, name, &e.target),
            EntryKind::HardLink => {
                let Some(&ino) = self.new_ino.get(&e.ino) else {
                    damaged.push(format!(
                        "{shown}: the file it is a hard link of was not restored"
                    ));
                    return Ok(());
                };
                v.link(ino, parent, name)?;
                self.relinked.insert(ino);
                self.sum.others += 1;
                self.progress.advance(&shown, 0);
                return Ok(());
            }
            k => v.mknod(
                who,
                parent,
                name,
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
        self.new_ino.insert(e.ino, ino);
        if e.kind == EntryKind::File {
            v.open_file(ino)?;
            let mut bad = None;
            let mut written = Ok(());
            for c in &e.chunks {
                *taken += 1;
                match loaded.next() {
                    Some(Ok(plain)) if plain.len() == c.len as usize => {
                        if let Err(err) = v.write(ino, c.index * self.cs, &plain) {
                            written = Err(err);
                            break;
                        }
                        self.sum.logical_bytes += plain.len() as u64;
                    }
                    Some(Ok(_)) => {
                        bad = Some(format!(
                            "chunk {} has the wrong length",
                            crate::format::short(&c.addr)
                        ));
                        break;
                    }
                    Some(Err(why)) => {
                        bad = Some(why);
                        break;
                    }
                    None => {
                        bad = Some("its chunks could not be read".to_string());
                        break;
                    }
                }
            }
            if let Err(err) = written {
                let _ = v.release_file(ino);
                return Err(err.into());
            }
            v.release_file(ino)?;
            if let Some(why) = bad {
                v.unlink(parent, name)?;
                self.new_ino.remove(&e.ino);
                self.progress.damaged(&shown, &why);
                damaged.push(format!("{shown}: {why}; not restored"));
                return Ok(());
            }
            self.sum.files += 1;
        } else if e.kind == EntryKind::Dir {
            self.sum.dirs += 1;
            self.dirs.insert(e.path.clone(), ino);
        } else {
            self.sum.others += 1;
        }
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
        if e.kind == EntryKind::Dir {
            self.dir_attrs.push((ino, e));
        } else {
            set_attrs(v, ino, &e)?;
            // Kept small: only what set_attrs needs.
            let mut e = e;
            e.chunks = Vec::new();
            e.xattrs.clear();
            e.target.clear();
            self.late.push((ino, e));
        }
        Ok(())
    }
}

/// Run `load` over `items` on a helper thread, a few items ahead, and `use_it` on each result
/// here, in order, until it returns `false` or fails.
pub(crate) fn prefetched<I: Sync, T: Send>(
    items: &[I],
    load: impl Fn(&I) -> T + Sync,
    mut use_it: impl FnMut(&I, T) -> Result<bool>,
) -> Result<()> {
    if items.len() < 2 {
        for i in items {
            if !use_it(i, load(i))? {
                break;
            }
        }
        return Ok(());
    }
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel(8);
        let load = &load;
        scope.spawn(move || {
            for i in items {
                if tx.send(load(i)).is_err() {
                    break;
                }
            }
        });
        for (i, t) in items.iter().zip(rx.iter()) {
            if !use_it(i, t)? {
                break;
            }
        }
        // Dropping the receiver stops the helper at its next send.
        Ok(())
    })
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
