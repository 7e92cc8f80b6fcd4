//! `sealvol check`: a full consistency check of a store, as `git fsck` and `restic check
//! --read-data` are for theirs, and `check --repair` for what can be rebuilt.
//!
//! It reads the store itself (never the record caches) and establishes, in order:
//! 1. **The tree.** From the root and the listed orphans, every directory entry opens, decodes
//!    and sits under the key its parent and name give; every entry points to an inode that
//!    exists, opens and is of the kind the entry says; a directory has one name only.
//! 2. **Links.** A file's `nlink` equals the entries naming it (0 for an orphan); a
//!    directory's is 2 plus its subdirectories, and its `parent` is the directory naming it.
//! 3. **Data.** Every chunk index of a file below its size that lies in no hole has an extent;
//!    every extent's chunk exists and verifies (authenticated, decrypted, re-hashed against its
//!    address; the plaintext length matches the extent).
//! 4. **Every record of every column family is accounted for.** Inode, directory entry and
//!    extent records that no walk reached are reported (inode records are opened and named by
//!    number); every reference count opens and equals a recount; every chunk verifies; chunks
//!    nothing references are reported as reclaimable.
//! 5. **Totals.** The `counters` record matches a recount (files, directories, others, logical
//!    bytes, chunks, their plaintext and sealed bytes, referenced bytes).
//! 6. **The operation log.** Every entry opens, decodes and matches its key.
//!
//! `repair` deletes reclaimable chunks and their counts, rewrites every reference count and the
//! totals from the recount, in one durable batch. It never touches file data or the tree:
//! damage there is reported for a person to decide.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use sealvol_crypto::{ChunkAddr, Domain};
use sealvol_store::{Cf, Durability, WriteBatch};

use crate::error::Result;
use crate::holes;
use crate::schema::*;
use crate::volume::Volume;

/// What kind of damage (stable names: `--json` output and scripts use them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DamageKind {
    /// A record fails authentication or does not decode.
    Unreadable,
    /// An entry or orphan list names an inode whose record is missing.
    MissingInode,
    /// An entry's kind, or its key, disagrees with what it points to.
    EntryMismatch,
    /// A directory reached through more than one entry.
    DirectoryLinkedTwice,
    /// `nlink` differs from the entries that name the inode.
    LinkCount,
    /// A directory's `parent` is not the directory naming it.
    WrongParent,
    /// A chunk index holding data (no hole) has no extent.
    MissingExtent,
    /// A referenced chunk is not stored.
    MissingChunk,
    /// A stored chunk fails authentication or verification, or has the wrong length.
    BadChunk,
    /// A record that no file, directory or chunk accounts for.
    Unreachable,
    /// A reference count differs from the recount, or is missing.
    RefCount,
    /// The `counters` record differs from a recount.
    Totals,
    /// An operation log entry fails authentication, does not decode, or differs from its key.
    Log,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Damage {
    /// Path of the damaged file inside the volume ("?" parts where a name is unreadable;
    /// `<...>` where no file is concerned).
    pub path: String,
    pub kind: DamageKind,
    pub detail: String,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CheckReport {
    pub inodes: u64,
    pub dirents: u64,
    pub extents: u64,
    pub chunks: u64,
    pub refs: u64,
    pub log_entries: u64,
    pub damage: Vec<Damage>,
    /// Stored chunks no file uses (after a crash, or a damaged count): `--repair` reclaims them.
    pub reclaimable_chunks: u64,
    pub reclaimable_bytes: u64,
    /// What `--repair` did, when asked.
    pub repaired: Option<Repaired>,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Repaired {
    pub chunks_deleted: u64,
    pub refcounts_rewritten: u64,
    pub totals_rewritten: bool,
}

impl CheckReport {
    /// No damage. Reclaimable chunks are not damage.
    pub fn is_clean(&self) -> bool {
        self.damage.is_empty()
    }

    /// The damage of one kind.
    pub fn of_kind(&self, kind: DamageKind) -> impl Iterator<Item = &Damage> {
        self.damage.iter().filter(move |d| d.kind == kind)
    }
}

fn join(parent: &str, name: &[u8]) -> String {
    let n = String::from_utf8_lossy(name);
    if parent == "/" {
        format!("/{n}")
    } else {
        format!("{parent}/{n}")
    }
}

/// What the walk learns, for the scans that follow.
#[derive(Default)]
struct Walk {
    report: CheckReport,
    /// Reachable inodes: path, record.
    inodes: HashMap<u64, (String, Inode)>,
    /// Entries naming each inode, and for directories the directory naming them.
    links: HashMap<u64, u32>,
    named_by: HashMap<u64, u64>,
    subdirs: HashMap<u64, u32>,
    dirent_keys: HashSet<Vec<u8>>,
    extent_keys: HashSet<[u8; 16]>,
    /// Chunk address → (uses, plaintext length, first user's path).
    uses: BTreeMap<ChunkAddr, (u64, u32, String)>,
    /// Chunks verified so far: None if good, or what is wrong.
    verified: HashMap<ChunkAddr, Option<(DamageKind, String)>>,
}

impl Walk {
    fn damage(&mut self, path: impl Into<String>, kind: DamageKind, detail: impl Into<String>) {
        self.report.damage.push(Damage {
            path: path.into(),
            kind,
            detail: detail.into(),
        });
    }
}

impl Volume {
    /// Read and verify everything (see the module documentation). Damage is reported, never
    /// repaired.
    pub fn check(&self) -> Result<CheckReport> {
        Ok(self.check_walk()?.report)
    }

    /// [`Volume::check`], then rebuild what can be rebuilt: reclaim unreferenced chunks,
    /// rewrite reference counts and totals from the recount. Run on an unmounted store.
    pub fn check_and_repair(&self) -> Result<CheckReport> {
        let mut w = self.check_walk()?;
        let repaired = self.repair(&w)?;
        w.report.repaired = Some(repaired);
        Ok(w.report)
    }

    fn check_walk(&self) -> Result<Walk> {
        let mut w = Walk::default();
        self.walk_tree(&mut w)?;
        self.check_links(&mut w);
        self.scan_records(&mut w)?;
        self.scan_chunks_and_refs(&mut w)?;
        self.check_totals(&mut w)?;
        self.check_log(&mut w)?;
        Ok(w)
    }

    fn walk_tree(&self, w: &mut Walk) -> Result<()> {
        let geo = self.cfg.chunk_size;
        let orphans = self.commit.lock().counters.orphans.clone();
        // (inode, path, kind the naming entry claims)
        let mut queue = VecDeque::from([(ROOT_INO, "/".to_string(), Some(Kind::Dir))]);
        queue.extend(
            orphans
                .iter()
                .map(|o| (*o, format!("<orphan inode {o}>"), None)),
        );
        while let Some((ino, path, claimed)) = queue.pop_front() {
            if w.inodes.contains_key(&ino) {
                continue;
            }
            let inode = match self.read_inode_from_store(ino) {
                Ok(Some(i)) => i,
                Ok(None) => {
                    w.damage(
                        path,
                        DamageKind::MissingInode,
                        format!("inode {ino} is missing"),
                    );
                    continue;
                }
                Err(e) => {
                    w.damage(path, DamageKind::Unreadable, e.to_string());
                    continue;
                }
            };
            if let Some(k) = claimed.filter(|k| *k != inode.kind) {
                w.damage(
                    &path,
                    DamageKind::EntryMismatch,
                    format!("the entry says {k:?}, the inode is a {:?}", inode.kind),
                );
            }
            match inode.kind {
                Kind::Dir => {
                    let mut entries = Vec::new();
                    self.engine
                        .for_each(Cf::Dirents, &self.dir_prefix(ino), &mut |k, v| {
                            entries.push((k.to_vec(), v.to_vec()));
                            Ok(())
                        })?;
                    for (k, v) in entries {
                        w.report.dirents += 1;
                        w.dirent_keys.insert(k.clone());
                        let d = match self.open_meta::<Dirent>(Domain::Dirent, &k, &v, ino) {
                            Ok(d) => d,
                            Err(e) => {
                                w.damage(join(&path, b"?"), DamageKind::Unreadable, e.to_string());
                                continue;
                            }
                        };
                        let child = join(&path, &d.name);
                        if self.dirent_key(ino, &d.name)[..] != k[..] {
                            w.damage(
                                &child,
                                DamageKind::EntryMismatch,
                                "the entry is stored under another name's key",
                            );
                            continue;
                        }
                        *w.links.entry(d.ino).or_default() += 1;
                        if d.kind == Kind::Dir {
                            *w.subdirs.entry(ino).or_default() += 1;
                            if w.named_by.insert(d.ino, ino).is_some() {
                                w.damage(
                                    &child,
                                    DamageKind::DirectoryLinkedTwice,
                                    format!("directory inode {} has several names", d.ino),
                                );
                                continue;
                            }
                        }
                        queue.push_back((d.ino, child, Some(d.kind)));
                    }
                }
                Kind::File => self.walk_file_data(w, &inode, &path, geo)?,
                _ => {}
            }
            w.inodes.insert(ino, (path, inode));
        }
        w.report.inodes = w.inodes.len() as u64;
        Ok(())
    }

    fn walk_file_data(
        &self,
        w: &mut Walk,
        inode: &Inode,
        path: &str,
        geo: crate::ChunkSize,
    ) -> Result<()> {
        let ino = inode.ino;
        for index in holes::data_indices(&inode.holes, 0, geo.count(inode.size)) {
            w.extent_keys.insert(self.extent_key(ino, index));
            let e = match self.read_extent_from_store(ino, index) {
                Ok(Some(e)) => e,
                Ok(None) => {
                    w.damage(
                        path,
                        DamageKind::MissingExtent,
                        format!("chunk {index} is missing"),
                    );
                    continue;
                }
                Err(e) => {
                    w.damage(path, DamageKind::Unreadable, format!("extent {index}: {e}"));
                    continue;
                }
            };
            w.report.extents += 1;
            let u = w.uses.entry(e.addr).or_insert((0, e.len, path.to_string()));
            u.0 += 1;
            w.verified
                .entry(e.addr)
                .or_insert_with(|| self.verify_chunk(&e.addr, Some(e.len)).err());
            if let Some(Some((kind, detail))) = w.verified.get(&e.addr).cloned() {
                w.damage(path, kind, format!("chunk {index} ({}): {detail}", e.addr));
            }
        }
        Ok(())
    }

    fn check_links(&self, w: &mut Walk) {
        let mut found = Vec::new();
        for (ino, (path, inode)) in &w.inodes {
            let names = w.links.get(ino).copied().unwrap_or(0);
            let want = match inode.kind {
                Kind::Dir => 2 + w.subdirs.get(ino).copied().unwrap_or(0),
                _ => names,
            };
            if inode.nlink != want {
                found.push((
                    path.clone(),
                    DamageKind::LinkCount,
                    format!("nlink is {} but {want} expected", inode.nlink),
                ));
            }
            if inode.kind == Kind::Dir {
                let by = if *ino == ROOT_INO {
                    Some(ROOT_INO)
                } else {
                    w.named_by.get(ino).copied()
                };
                if by.is_some_and(|p| p != inode.parent) {
                    found.push((
                        path.clone(),
                        DamageKind::WrongParent,
                        format!("its parent field says inode {}", inode.parent),
                    ));
                }
            }
        }
        found.sort();
        for (p, k, d) in found {
            w.damage(p, k, d);
        }
    }

    /// Inode, directory entry and extent records that the walk did not reach.
    fn scan_records(&self, w: &mut Walk) -> Result<()> {
        let reached: HashSet<[u8; 16]> = w.inodes.keys().map(|i| self.inode_key(*i)).collect();
        let mut stray = Vec::new();
        self.engine.for_each(Cf::Inodes, b"", &mut |k, v| {
            if !reached.contains(k) {
                stray.push((k.to_vec(), v.to_vec()));
            }
            Ok(())
        })?;
        for (k, v) in stray {
            match self.open_meta::<Inode>(Domain::Inode, &k, &v, 0) {
                Ok(i) => w.damage(
                    format!("<inode {}>", i.ino),
                    DamageKind::Unreachable,
                    format!("a {:?} in no directory and not a listed orphan", i.kind),
                ),
                Err(e) => w.damage("<inode ?>", DamageKind::Unreadable, e.to_string()),
            }
        }
        let mut dirents = 0u64;
        self.engine.for_each(Cf::Dirents, b"", &mut |k, _| {
            if !w.dirent_keys.contains(k) {
                dirents += 1;
            }
            Ok(())
        })?;
        if dirents > 0 {
            w.damage(
                "<none>",
                DamageKind::Unreachable,
                format!("{dirents} directory entries lie in no reachable directory"),
            );
        }
        let mut extents = 0u64;
        self.engine.for_each(Cf::Extents, b"", &mut |k, _| {
            if !w.extent_keys.contains(k) {
                extents += 1;
            }
            Ok(())
        })?;
        if extents > 0 {
            w.damage(
                "<none>",
                DamageKind::Unreachable,
                format!("{extents} extent records belong to no file's data"),
            );
        }
        Ok(())
    }

    /// Every stored chunk verifies; every reference count opens and equals the recount.
    fn scan_chunks_and_refs(&self, w: &mut Walk) -> Result<()> {
        let mut stored = Vec::new();
        self.engine.for_each(Cf::Chunks, b"", &mut |k, v| {
            stored.push((k.to_vec(), v.len() as u64));
            Ok(())
        })?;
        for (k, len) in stored {
            w.report.chunks += 1;
            let Ok(addr) = <[u8; 32]>::try_from(k.as_slice()).map(ChunkAddr) else {
                w.damage(
                    "<chunks>",
                    DamageKind::Unreadable,
                    "a chunk key is not 32 bytes",
                );
                continue;
            };
            if w.uses.contains_key(&addr) {
                continue;
            }
            w.report.reclaimable_chunks += 1;
            w.report.reclaimable_bytes += len;
            if let Err((kind, detail)) = self.verify_chunk(&addr, None) {
                w.damage("<unused chunk>", kind, format!("{addr}: {detail}"));
            }
        }
        let mut refs = Vec::new();
        self.engine.for_each(Cf::Refs, b"", &mut |k, v| {
            refs.push((k.to_vec(), v.to_vec()));
            Ok(())
        })?;
        let mut counted = HashSet::new();
        for (k, v) in refs {
            w.report.refs += 1;
            let Ok(addr) = <[u8; 32]>::try_from(k.as_slice()).map(ChunkAddr) else {
                w.damage(
                    "<refs>",
                    DamageKind::Unreadable,
                    "a reference count key is not 32 bytes",
                );
                continue;
            };
            counted.insert(addr);
            let user = w.uses.get(&addr).map(|u| u.2.clone());
            let path = user.clone().unwrap_or_else(|| "<unused chunk>".into());
            match self.open_meta::<RefCount>(Domain::RefCount, &k, &v, 0) {
                Ok(rc) => {
                    let want = w.uses.get(&addr).map(|u| u.0).unwrap_or(0);
                    if rc.count != want && !(want == 0 && user.is_none()) {
                        w.damage(
                            path,
                            DamageKind::RefCount,
                            format!("chunk {addr}: reference count {} but {want} uses", rc.count),
                        );
                    }
                }
                Err(e) => w.damage(
                    path,
                    DamageKind::Unreadable,
                    format!("count of {addr}: {e}"),
                ),
            }
        }
        let missing: Vec<(ChunkAddr, String)> = w
            .uses
            .iter()
            .filter(|(a, _)| !counted.contains(*a))
            .map(|(a, u)| (*a, u.2.clone()))
            .collect();
        for (addr, path) in missing {
            w.damage(
                path,
                DamageKind::RefCount,
                format!("chunk {addr} has no reference count"),
            );
        }
        Ok(())
    }

    /// The recount of what [`Counters`] keeps, from the walk.
    fn recount(&self, w: &Walk) -> Result<Counters> {
        let mut c = self.commit.lock().counters.clone();
        (c.files, c.dirs, c.others, c.logical_bytes) = (0, 0, 0, 0);
        for (_, i) in w.inodes.values() {
            match i.kind {
                Kind::File => {
                    c.files += 1;
                    c.logical_bytes += i.size;
                }
                Kind::Dir => c.dirs += 1,
                _ => c.others += 1,
            }
        }
        (
            c.chunks,
            c.chunk_plain_bytes,
            c.chunk_stored_bytes,
            c.referenced_bytes,
        ) = (0, 0, 0, 0);
        for (addr, (n, plain_len, _)) in &w.uses {
            if let Some(sealed) = self.engine.get(Cf::Chunks, &addr.0)? {
                c.chunks += 1;
                c.chunk_plain_bytes += *plain_len as u64;
                c.chunk_stored_bytes += sealed.len() as u64;
            }
            c.referenced_bytes += n * *plain_len as u64;
        }
        Ok(c)
    }

    fn check_totals(&self, w: &mut Walk) -> Result<()> {
        let have = self.commit.lock().counters.clone();
        let want = self.recount(w)?;
        let pairs = [
            ("files", have.files, want.files),
            ("directories", have.dirs, want.dirs),
            ("other inodes", have.others, want.others),
            ("logical bytes", have.logical_bytes, want.logical_bytes),
            ("chunks", have.chunks, want.chunks),
            (
                "chunk plaintext bytes",
                have.chunk_plain_bytes,
                want.chunk_plain_bytes,
            ),
            (
                "chunk stored bytes",
                have.chunk_stored_bytes,
                want.chunk_stored_bytes,
            ),
            (
                "referenced bytes",
                have.referenced_bytes,
                want.referenced_bytes,
            ),
        ];
        for (what, h, x) in pairs {
            // Reclaimable chunks are counted as stored until reclaimed.
            let reclaimable = matches!(
                what,
                "chunks" | "chunk plaintext bytes" | "chunk stored bytes"
            ) && w.report.reclaimable_chunks > 0
                && h >= x;
            if h != x && !reclaimable {
                w.damage(
                    "<counters>",
                    DamageKind::Totals,
                    format!("{what}: {h} recorded, {x} counted"),
                );
            }
        }
        Ok(())
    }

    /// The operation log opens and decodes entry by entry, each matching its key.
    fn check_log(&self, w: &mut Walk) -> Result<()> {
        let mut bad = Vec::new();
        let mut n = 0u64;
        self.engine.for_each(Cf::Log, b"", &mut |k, v| {
            n += 1;
            let res = match self
                .keys
                .meta_seal
                .open(Domain::LogEntry, &self.binding(&[k]), v)
            {
                Err(_) => Err("an entry fails authentication".to_string()),
                Ok(plain) => decode_log_entry(k, &plain).map(|_| ()),
            };
            if let Err(e) = res {
                bad.push(e);
            }
            Ok(())
        })?;
        w.report.log_entries = n;
        for e in bad {
            w.damage("<operation log>", DamageKind::Log, e);
        }
        Ok(())
    }

    fn repair(&self, w: &Walk) -> Result<Repaired> {
        let mut out = Repaired::default();
        let mut b = WriteBatch::new();
        let mut gone = Vec::new();
        self.engine.for_each(Cf::Chunks, b"", &mut |k, _| {
            if let Ok(a) = <[u8; 32]>::try_from(k) {
                if !w.uses.contains_key(&ChunkAddr(a)) {
                    gone.push(a);
                }
            }
            Ok(())
        })?;
        for a in &gone {
            b.delete(Cf::Chunks, a.to_vec());
            b.delete(Cf::Refs, a.to_vec());
            out.chunks_deleted += 1;
        }
        for (addr, (n, plain_len, _)) in &w.uses {
            let Some(sealed) = self.engine.get(Cf::Chunks, &addr.0)? else {
                continue; // missing data is for a person to decide; nothing to count
            };
            let rc = RefCount {
                count: *n,
                plain_len: *plain_len,
                stored_len: sealed.len() as u32,
            };
            b.put(
                Cf::Refs,
                addr.0.to_vec(),
                self.seal_meta(Domain::RefCount, &addr.0, &rc)?,
            );
            out.refcounts_rewritten += 1;
        }
        let want = self.recount(w)?;
        let mut commit = self.commit.lock();
        b.put(
            Cf::Meta,
            META_COUNTERS.to_vec(),
            self.seal_meta(Domain::Counters, META_COUNTERS, &want)?,
        );
        self.engine.write(b, Durability::Disk)?;
        commit.counters = want;
        out.totals_rewritten = true;
        Ok(out)
    }

    /// The chunk addresses of a file's stored chunks, by index (holes left out).
    pub fn file_chunks(&self, ino: u64) -> Result<Vec<(u64, ChunkAddr)>> {
        let i = self.read_inode(ino)?.ok_or(crate::FsError::NotFound)?;
        let mut out = Vec::new();
        for index in holes::data_indices(&i.holes, 0, self.cfg.chunk_size.count(i.size)) {
            if let Some(e) = self.read_extent(ino, index)? {
                out.push((index, e.addr));
            }
        }
        Ok(out)
    }

    /// Read a stored chunk, authenticate, decrypt and re-hash it against its address; with
    /// `len`, its plaintext must be that long. (Unlike the read path, which authenticates only:
    /// `check` also finds a chunk sealed with a valid tag over other bytes than its address's.)
    fn verify_chunk(
        &self,
        addr: &ChunkAddr,
        len: Option<u32>,
    ) -> std::result::Result<(), (DamageKind, String)> {
        let sealed = match self.engine.get(Cf::Chunks, &addr.0) {
            Ok(Some(s)) => s,
            Ok(None) => return Err((DamageKind::MissingChunk, "chunk is missing".into())),
            Err(e) => return Err((DamageKind::BadChunk, e.to_string())),
        };
        let plain = self
            .open_chunk(addr, &sealed)
            .map_err(|e| (DamageKind::BadChunk, e.to_string()))?;
        match len {
            Some(l) if plain.len() != l as usize => Err((
                DamageKind::BadChunk,
                format!("holds {} bytes, the extent says {l}", plain.len()),
            )),
            _ => Ok(()),
        }
    }
}
