//! Pack files: where the RocksDB engine keeps the chunk values of bulk writes, outside RocksDB.
//!
//! Values put aside ([`Engine::put_aside`]: a large write-out's sealed chunks) are appended to
//! the current pack file with plain writes and made durable with one `fdatasync`; the
//! transaction that later references them carries only a small pointer per value (pack,
//! offset, length) through RocksDB's write-ahead log, unsynced like any other. Before this, bulk
//! values went into RocksDB's memtables and a forced flush (blob file, table file, manifest and
//! directory, each synced) after a synced record of them: about 18 syncs per write-out, which
//! on a disk with slow syncs made sequential writes a tenth of the peers' speed
//! (docs/benchmarks.md, issue 10). Now it is one.
//!
//! Layout, in the database directory:
//! - `packs/NNNNNNNN.pack`: append-only files of values laid end to end, no framing (the
//!   pointers say where each value is; the values are sealed, so every read above the engine
//!   authenticates them). Each open of the engine starts a new file at its first bulk write,
//!   and a file is closed for appends at [`PACK_ROLL`] bytes. A crash can leave bytes past the
//!   last committed pointer: garbage, collected like any other.
//! - `packs/lease-PID-N`: a [`crate::Snapshot`] in progress (another process copying the
//!   database, hard-linking the packs). While a live one exists, nothing is punched or deleted.
//!
//! Space comes back in [`Engine::compact`]: every pointer is read, the ranges no pointer covers
//! are punched out (`fallocate(PUNCH_HOLE)`), and a pack with no live value left is deleted.
//! Why this is safe:
//! - values put aside but not yet named are *held* (registered until their last [`Aside`] is
//!   dropped, which is after the batch naming them is written); the writer's position and the
//!   held ranges are read together under the writer's lock before the pointer scan starts, so
//!   every value below that position is either held or, if live, has its pointer in the scan,
//!   and a range is never written twice;
//! - the write-ahead log is synced after the scan, so the deletions it saw survive a power loss
//!   before their space goes;
//! - reads hold a shared lock from the pointer lookup to the file read, and punching holds it
//!   exclusively, so no read meets a hole that was a value when it looked the pointer up;
//! - a snapshot takes its lease before copying anything, so the state it copies is at least as
//!   new as any scan that saw no lease; packs linked into a copy (more than one link) are never
//!   punched by either side.
//!
//! [`Engine::put_aside`]: super::Engine::put_aside
//! [`Aside`]: super::Aside
//! [`Engine::compact`]: super::Engine::compact

use std::collections::HashMap;
use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock, RwLockReadGuard};

use super::StoreError;

/// First byte of a chunk value as RocksDB holds it: the value follows.
pub(crate) const TAG_INLINE: u8 = 0;
/// First byte of a chunk value as RocksDB holds it: a [`Pointer`] into a pack follows.
pub(crate) const TAG_PACKED: u8 = 1;

/// A pack is closed for appends once it holds this many bytes.
pub(crate) const PACK_ROLL: u64 = 256 << 20;

/// The directory of pack files inside a database directory.
pub(crate) const PACKS_DIR: &str = "packs";

/// Reads of at most this many bytes (any sealed chunk a volume makes: its chunks are at most
/// 4 MiB) trust the pointer's length; longer ones, from a damaged pointer, are cut at the
/// file's end first.
const SMALL_READ: u32 = 8 << 20;

/// Where a value lives in the packs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pointer {
    pub(crate) pack: u32,
    pub(crate) offset: u64,
    pub(crate) len: u32,
}

const POINTER_LEN: usize = 1 + 4 + 8 + 4;

impl Pointer {
    pub(crate) fn encode(&self) -> [u8; POINTER_LEN] {
        let mut out = [0u8; POINTER_LEN];
        out[0] = TAG_PACKED;
        out[1..5].copy_from_slice(&self.pack.to_le_bytes());
        out[5..13].copy_from_slice(&self.offset.to_le_bytes());
        out[13..17].copy_from_slice(&self.len.to_le_bytes());
        out
    }

    /// The pointer in a stored chunk value, if it is one.
    pub(crate) fn decode(v: &[u8]) -> Option<Pointer> {
        if v.len() != POINTER_LEN || v[0] != TAG_PACKED {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes([v[i], v[i + 1], v[i + 2], v[i + 3]]);
        let mut off = [0u8; 8];
        off.copy_from_slice(&v[5..13]);
        Some(Pointer {
            pack: u32_at(1),
            offset: u64::from_le_bytes(off),
            len: u32_at(13),
        })
    }
}

pub(crate) fn pack_name(id: u32) -> String {
    format!("{id:08}.pack")
}

/// The id of a pack file's name, if it is one.
pub(crate) fn pack_id(name: &str) -> Option<u32> {
    let stem = name.strip_suffix(".pack")?;
    (stem.len() == 8 && stem.bytes().all(|b| b.is_ascii_digit()))
        .then(|| stem.parse().ok())
        .flatten()
}

fn io(what: &str, p: &Path, e: std::io::Error) -> StoreError {
    if e.raw_os_error() == Some(28) {
        StoreError::NoSpace(format!("{what} {}: {e}", p.display()))
    } else {
        StoreError::Io(format!("{what} {}: {e}", p.display()))
    }
}

fn sync_dir(p: &Path) -> Result<(), StoreError> {
    File::open(p)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("syncing the directory", p, e))
}

/// The pack being appended to.
struct Writer {
    id: u32,
    file: Arc<File>,
    len: u64,
}

struct WriterState {
    current: Option<Writer>,
    /// The id the next new pack gets.
    next: u32,
}

/// Where appends stood when a collection began: packs from `next` on are not looked at, and
/// of the open one only the bytes before `len`.
struct Fence {
    next: u32,
    open: Option<(u32, u64)>,
    held: Vec<(u32, u64, u64)>,
}

type Held = Arc<Mutex<HashMap<u64, (u32, u64, u64)>>>;

/// Ranges of one `put_aside` (pack, start, end), held from reclaiming while this lives.
#[derive(Debug)]
pub(crate) struct Hold {
    set: Held,
    id: u64,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.set.lock().remove(&self.id);
    }
}

/// The pack files of one database directory.
pub(crate) struct Packs {
    dir: PathBuf,
    /// Read handles, opened on first use.
    files: RwLock<HashMap<u32, Arc<File>>>,
    writer: Mutex<WriterState>,
    /// Values put aside and not yet named, by hold id.
    held: Held,
    next_hold: AtomicU64,
    /// Shared by reads from pointer lookup to file read; exclusive while punching.
    gc: RwLock<()>,
}

/// What a collection of pack space did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Collected {
    pub(crate) punched_bytes: u64,
    pub(crate) deleted_packs: u32,
    /// Skipped: a snapshot was being taken, or packs were shared with a copy.
    pub(crate) deferred: bool,
}

impl Packs {
    /// The packs of the database in `db` (the directory is made at the first bulk write).
    pub(crate) fn open(db: &Path) -> Result<Packs, StoreError> {
        let dir = db.join(PACKS_DIR);
        let mut next = 0;
        match std::fs::read_dir(&dir) {
            Ok(list) => {
                for e in list {
                    let e = e.map_err(|e| io("listing", &dir, e))?;
                    if let Some(id) = pack_id(&e.file_name().to_string_lossy()) {
                        next = next.max(id.checked_add(1).ok_or_else(|| {
                            StoreError::Corruption(format!(
                                "pack file {} has the largest possible number",
                                e.path().display()
                            ))
                        })?);
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io("listing", &dir, e)),
        }
        Ok(Packs {
            dir,
            files: RwLock::new(HashMap::new()),
            writer: Mutex::new(WriterState {
                current: None,
                next,
            }),
            held: Arc::new(Mutex::new(HashMap::new())),
            next_hold: AtomicU64::new(0),
            gc: RwLock::new(()),
        })
    }

    /// Hold while looking a pointer up and reading what it points to.
    pub(crate) fn reading(&self) -> RwLockReadGuard<'_, ()> {
        self.gc.read()
    }

    fn file(&self, id: u32) -> Result<Option<Arc<File>>, StoreError> {
        if let Some(f) = self.files.read().get(&id) {
            return Ok(Some(f.clone()));
        }
        let p = self.dir.join(pack_name(id));
        match File::open(&p) {
            Ok(f) => {
                let f = Arc::new(f);
                self.files.write().insert(id, f.clone());
                Ok(Some(f))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("opening", &p, e)),
        }
    }

    /// The bytes a pointer names. A missing pack or a pack too short gives what there is (maybe
    /// nothing): the reader's authentication then names the chunk as damaged, as it does any
    /// other changed value. Other I/O errors are errors.
    pub(crate) fn read(&self, p: Pointer) -> Result<Vec<u8>, StoreError> {
        let mut buf = Vec::new();
        self.read_into(p, &mut buf)?;
        Ok(buf)
    }

    /// [`Packs::read`] into `buf` (its allocation reused: a chunk read is on every cache miss).
    pub(crate) fn read_into(&self, p: Pointer, buf: &mut Vec<u8>) -> Result<(), StoreError> {
        buf.clear();
        let Some(f) = self.file(p.pack)? else {
            tracing::warn!(pack = %self.dir.join(pack_name(p.pack)).display(), "a chunk's pack file is missing");
            return Ok(());
        };
        let path = || self.dir.join(pack_name(p.pack));
        // A length no chunk has comes from a damaged pointer: only then is the file's size
        // asked, so as not to allocate what a damaged pointer claims.
        let n = if p.len <= SMALL_READ {
            u64::from(p.len)
        } else {
            let size = f.metadata().map_err(|e| io("reading", &path(), e))?.len();
            u64::from(p.len).min(size.saturating_sub(p.offset))
        };
        // (A damaged pointer can hold any offset: every sum below saturates.)
        buf.resize(n as usize, 0);
        let mut got = 0;
        while got < buf.len() {
            match f.read_at(&mut buf[got..], p.offset.saturating_add(got as u64)) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(io("reading", &path(), e)),
            }
        }
        buf.truncate(got);
        if got < p.len as usize {
            tracing::warn!(pack = %path().display(), offset = p.offset, len = p.len, got, "a chunk's pack file is shorter than its pointer says");
        }
        Ok(())
    }

    /// Append `values` to the open pack (a new one when there is none or it is full) and make
    /// them durable. Their space is held until the returned [`Hold`] is dropped.
    pub(crate) fn put_aside(
        &self,
        values: &[Vec<u8>],
    ) -> Result<(Vec<Pointer>, Arc<Hold>), StoreError> {
        let mut w = self.writer.lock();
        let pointers = match self.append(&mut w, values) {
            Ok(p) => p,
            Err(e) => {
                // What was written is garbage past the last pointer; a new pack starts next time.
                w.current = None;
                return Err(e);
            }
        };
        let id = self.next_hold.fetch_add(1, Ordering::Relaxed);
        if let (Some(first), Some(last)) = (pointers.first(), pointers.last()) {
            let range = (first.pack, first.offset, last.offset + u64::from(last.len));
            self.held.lock().insert(id, range);
        }
        let hold = Arc::new(Hold {
            set: self.held.clone(),
            id,
        });
        Ok((pointers, hold))
    }

    fn append(&self, w: &mut WriterState, values: &[Vec<u8>]) -> Result<Vec<Pointer>, StoreError> {
        if w.current.as_ref().is_none_or(|c| c.len >= PACK_ROLL) {
            w.current = Some(self.create(w)?);
        }
        let Some(cur) = w.current.as_mut() else {
            return Err(StoreError::Io("no pack file open".into()));
        };
        let path = self.dir.join(pack_name(cur.id));
        let mut pointers = Vec::with_capacity(values.len());
        for v in values {
            let len = u32::try_from(v.len()).map_err(|_| {
                StoreError::Io(format!(
                    "a value of {} bytes is too large for a pack",
                    v.len()
                ))
            })?;
            cur.file
                .write_all_at(v, cur.len)
                .map_err(|e| io("writing", &path, e))?;
            pointers.push(Pointer {
                pack: cur.id,
                offset: cur.len,
                len,
            });
            cur.len += u64::from(len);
        }
        cur.file.sync_data().map_err(|e| io("syncing", &path, e))?;
        Ok(pointers)
    }

    fn create(&self, w: &mut WriterState) -> Result<Writer, StoreError> {
        // The directory may have been made by a snapshot's lease meanwhile; either way its
        // entry is synced before a pack in it is named.
        match std::fs::create_dir(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io("creating", &self.dir, e)),
        }
        if let Some(db) = self.dir.parent() {
            sync_dir(db)?;
        }
        let id = w.next;
        w.next = id.checked_add(1).ok_or_else(|| {
            StoreError::Io("every pack file number is used; compact the store".into())
        })?;
        let p = self.dir.join(pack_name(id));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&p)
            .map_err(|e| io("creating", &p, e))?;
        sync_dir(&self.dir)?;
        let file = Arc::new(file);
        self.files.write().insert(id, file.clone());
        Ok(Writer { id, file, len: 0 })
    }

    /// Where appends stand now, and what is held (see [`Fence`]). Taken under the writer's
    /// lock, so no value is between its append and its hold.
    fn fence(&self) -> Fence {
        let w = self.writer.lock();
        Fence {
            next: w.next,
            open: w.current.as_ref().map(|c| (c.id, c.len)),
            held: self.held.lock().values().copied().collect(),
        }
    }

    /// Give back the space no pointer uses. `scan` lists every pointer in the database, and
    /// `sync` makes the deletions it saw durable; both run after the fence is taken.
    pub(crate) fn collect(
        &self,
        scan: impl FnOnce() -> Result<Vec<Pointer>, StoreError>,
        sync: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<Collected, StoreError> {
        let mut done = Collected::default();
        if !self.dir.exists() {
            return Ok(done);
        }
        let fence = self.fence();
        let mut live: HashMap<u32, Vec<(u64, u64)>> = HashMap::new();
        for &(pack, start, end) in &fence.held {
            live.entry(pack).or_default().push((start, end));
        }
        for p in scan()? {
            live.entry(p.pack)
                .or_default()
                .push((p.offset, p.offset.saturating_add(u64::from(p.len))));
        }
        sync()?;
        if self.leased()? {
            done.deferred = true;
            return Ok(done);
        }
        let mut packs = Vec::new();
        for e in std::fs::read_dir(&self.dir).map_err(|e| io("listing", &self.dir, e))? {
            let e = e.map_err(|e| io("listing", &self.dir, e))?;
            if let Some(id) = pack_id(&e.file_name().to_string_lossy()) {
                if id < fence.next {
                    packs.push((id, e.path()));
                }
            }
        }
        packs.sort();
        let _exclusive = self.gc.write();
        let mut deleted = false;
        for (id, path) in packs {
            let meta = match std::fs::metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(io("reading", &path, e)),
            };
            if meta.nlink() > 1 {
                // Linked into a snapshot copy: one being used now, or one left behind by an
                // export that was killed (`Snapshot::take` removes those of dead processes).
                tracing::warn!(pack = %path.display(), "a pack file is shared with a snapshot copy (STORE/.snapshot-*): its deleted chunks' space comes back once the copy is gone; if no export is running, delete that directory");
                done.deferred = true;
                continue;
            }
            let open = fence.open.filter(|(o, _)| *o == id);
            let ranges = live.remove(&id).unwrap_or_default();
            if ranges.is_empty() && open.is_none() {
                std::fs::remove_file(&path).map_err(|e| io("removing", &path, e))?;
                self.files.write().remove(&id);
                done.deleted_packs += 1;
                deleted = true;
                continue;
            }
            let end = open.map_or(meta.len(), |(_, len)| len);
            done.punched_bytes += punch_gaps(&path, ranges, end)?;
        }
        if deleted {
            sync_dir(&self.dir)?;
        }
        Ok(done)
    }

    /// Whether a live snapshot holds a lease on these packs (stale leases are removed).
    fn leased(&self) -> Result<bool, StoreError> {
        let mut alive = false;
        for e in std::fs::read_dir(&self.dir).map_err(|e| io("listing", &self.dir, e))? {
            let e = e.map_err(|e| io("listing", &self.dir, e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = lease_pid(&name) else {
                continue;
            };
            if process_alive(pid) {
                alive = true;
            } else {
                tracing::info!(lease = %e.path().display(), "removing the lease of a snapshot whose process is gone");
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(alive)
    }
}

fn lease_pid(name: &str) -> Option<i32> {
    name.strip_prefix("lease-")?.split('-').next()?.parse().ok()
}

pub(crate) fn process_alive(pid: i32) -> bool {
    match rustix::process::Pid::from_raw(pid) {
        Some(p) => !matches!(
            rustix::process::test_kill_process(p),
            Err(rustix::io::Errno::SRCH)
        ),
        None => false,
    }
}

/// Punch out every whole filesystem block of `[0, end)` that no range in `live` touches.
/// Returns the bytes punched (blocks already holes count again: the figure is what was asked).
fn punch_gaps(path: &Path, mut live: Vec<(u64, u64)>, end: u64) -> Result<u64, StoreError> {
    const BLOCK: u64 = 4096;
    live.sort_unstable();
    let mut gaps = Vec::new();
    let mut at = 0u64;
    for (s, e) in live {
        if s > at {
            gaps.push((at, s.min(end)));
        }
        at = at.max(e);
    }
    if at < end {
        gaps.push((at, end));
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| io("opening", path, e))?;
    let mut punched = 0;
    for (s, e) in gaps {
        let (s, e) = (s.div_ceil(BLOCK) * BLOCK, e / BLOCK * BLOCK);
        if e <= s {
            continue;
        }
        let flags = rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE;
        match rustix::fs::fallocate(&file, flags, s, e - s) {
            Ok(()) => punched += e - s,
            Err(rustix::io::Errno::OPNOTSUPP) => {
                tracing::info!(pack = %path.display(), "this filesystem cannot punch holes: the space of deleted chunks in packs comes back only when a whole pack is dead");
                return Ok(punched);
            }
            Err(e) => return Err(io("punching a hole in", path, e.into())),
        }
    }
    Ok(punched)
}

/// A lease on the packs of the database in `db`, for the life of a snapshot copy.
#[derive(Debug)]
pub(crate) struct Lease {
    path: PathBuf,
}

impl Lease {
    pub(crate) fn take(db: &Path) -> Result<Lease, StoreError> {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = db.join(PACKS_DIR);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io("creating", &dir, e)),
        }
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join(format!("lease-{}-{n}", std::process::id()));
        File::create(&path).map_err(|e| io("creating", &path, e))?;
        Ok(Lease { path })
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(lease = %self.path.display(), error = %e, "could not remove a snapshot's lease on pack files; delete it by hand");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_round_trip_and_nothing_else_decodes() {
        let p = Pointer {
            pack: 7,
            offset: 1 << 40,
            len: 131_115,
        };
        assert_eq!(Pointer::decode(&p.encode()), Some(p));
        let mut inline = p.encode().to_vec();
        inline[0] = TAG_INLINE;
        assert_eq!(Pointer::decode(&inline), None);
        assert_eq!(Pointer::decode(&p.encode()[..16]), None);
    }

    #[test]
    fn pack_names_parse_back() {
        assert_eq!(pack_id(&pack_name(42)), Some(42));
        assert_eq!(pack_id("lease-1-0"), None);
        assert_eq!(pack_id("0000004.pack"), None);
        assert_eq!(lease_pid("lease-123-4"), Some(123));
    }
}
