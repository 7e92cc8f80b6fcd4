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

mod totals;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use sealvol_crypto::{ChunkAddr, Domain};
use sealvol_store::Cf;

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
    /// An extent's slices do not describe a chunk (none, empty, or past the chunk size).
    BadExtent,
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
            if let Some(bad) = bad_slices(&e, geo.get()) {
                w.damage(path, DamageKind::BadExtent, format!("chunk {index}: {bad}"));
            }
            for s in &e.slices {
                let u = w.uses.entry(s.addr).or_insert((0, s.len, path.to_string()));
                u.0 += 1;
                w.verified
                    .entry(s.addr)
                    .or_insert_with(|| self.verify_chunk(&s.addr, Some(s.len)).err());
                if let Some(Some((kind, detail))) = w.verified.get(&s.addr).cloned() {
                    w.damage(path, kind, format!("chunk {index} ({}): {detail}", s.addr));
                }
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

    /// A file's stored chunks as their extents (slices), by index; holes left out. For readers
    /// that tell chunks apart without reading them (an incremental export).
    pub fn file_extents(&self, ino: u64) -> Result<Vec<(u64, crate::schema::Extent)>> {
        let i = self.read_inode(ino)?.ok_or(crate::FsError::NotFound)?;
        let mut out = Vec::new();
        for index in holes::data_indices(&i.holes, 0, self.cfg.chunk_size.count(i.size)) {
            if let Some(e) = self.read_extent(ino, index)? {
                out.push((index, e));
            }
        }
        Ok(out)
    }

    /// The chunk addresses of a file's stored chunks, by index (holes left out), one per slice.
    pub fn file_chunks(&self, ino: u64) -> Result<Vec<(u64, ChunkAddr)>> {
        let i = self.read_inode(ino)?.ok_or(crate::FsError::NotFound)?;
        let mut out = Vec::new();
        for index in holes::data_indices(&i.holes, 0, self.cfg.chunk_size.count(i.size)) {
            if let Some(e) = self.read_extent(ino, index)? {
                out.extend(e.slices.iter().map(|s| (index, s.addr)));
            }
        }
        Ok(out)
    }
}

/// What is wrong with an extent's slices, if anything: a chunk needs at least one slice, and
/// every slice some bytes within the chunk size.
fn bad_slices(e: &crate::schema::Extent, chunk_size: u32) -> Option<String> {
    if e.slices.is_empty() {
        return Some("an extent without slices".into());
    }
    e.slices
        .iter()
        .find(|s| s.len == 0 || s.at.checked_add(s.len).is_none_or(|end| end > chunk_size))
        .map(|s| {
            format!(
                "a slice of {} bytes at {} does not fit the chunk",
                s.len, s.at
            )
        })
}
