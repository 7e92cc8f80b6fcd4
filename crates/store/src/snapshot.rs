//! A point-in-time copy of a RocksDB database that another process has open (a mounted
//! volume): for export and backup, which must not stop the writer.
//!
//! RocksDB's own checkpoint needs the database open in this process, which its lock forbids
//! while a mount holds it. The copy is made the way a checkpoint makes it, from outside:
//! table and blob files are immutable once written, so they are hard-linked (copied where the
//! filesystem refuses links); `CURRENT`, the `MANIFEST`, `OPTIONS` and the write-ahead logs are
//! copied. If the database's version changed meanwhile (`CURRENT` or the manifest's length
//! moved: a flush or compaction finished, which may delete logs and tables), the copy is thrown
//! away and made again. Otherwise the copy holds every table the manifest names and every log
//! written since, each log a prefix of what the writer wrote: opening it recovers the state of
//! some moment during the copy, whole write batches only (a torn last record is dropped, as
//! after a crash: the engine opens with `TolerateCorruptedTailRecords`). So the copy is what a
//! crash at that moment would have left, which sealvol's transactions are built to survive.
//!
//! Pack files (the chunks of bulk writes, outside RocksDB: see the engine's packs module) are
//! hard-linked after the database's own files, so every pointer the copy holds names a pack
//! that was linked. Appends past the copy's pointers change nothing it reads. What could
//! change it is the writer giving back the space of deleted chunks; a lease file
//! (`packs/lease-PID-N`), made before anything is copied and removed with the copy, holds that
//! off, and packs with more than one link are never punched by either side.

use std::path::{Path, PathBuf};

use crate::engine::packs::{pack_id, Lease, PACKS_DIR};
use crate::StoreError;

/// Attempts before giving up on a database that changes version during every copy.
const ATTEMPTS: usize = 20;

/// A snapshot copy of a database in a directory of its own, removed on drop.
#[derive(Debug)]
pub struct Snapshot {
    dir: PathBuf,
    /// Held until the copy is removed (dropped after `dir` is: see `Drop`).
    _lease: Option<Lease>,
}

fn io(what: &str, p: &Path, e: std::io::Error) -> StoreError {
    if e.raw_os_error() == Some(28) {
        StoreError::NoSpace(format!("{what} {}: {e}", p.display()))
    } else {
        StoreError::Io(format!("{what} {}: {e}", p.display()))
    }
}

/// What says which version of the database is current: `CURRENT`'s contents and the length
/// of the manifest it names.
fn version(db: &Path) -> Result<(Vec<u8>, u64), StoreError> {
    let cur = db.join("CURRENT");
    let current = std::fs::read(&cur).map_err(|e| io("reading", &cur, e))?;
    let name = String::from_utf8_lossy(&current).trim().to_string();
    let m = db.join(&name);
    let len = std::fs::metadata(&m)
        .map_err(|e| io("reading", &m, e))?
        .len();
    Ok((current, len))
}

/// Files that are not part of the database's state.
fn skipped(name: &str) -> bool {
    name == "LOCK" || name.starts_with("LOG") || name.ends_with(".tmp") || name.ends_with(".dbtmp")
}

fn immutable(name: &str) -> bool {
    name.ends_with(".sst") || name.ends_with(".blob")
}

impl Snapshot {
    /// Copy the database in `db` into a new directory under `parent` (on the same filesystem,
    /// so that table files can be hard-linked; the store's own directory is the natural one).
    pub fn take(db: &Path, parent: &Path) -> Result<Snapshot, StoreError> {
        remove_stale(parent);
        let mut lease = Some(Lease::take(db)?);
        for attempt in 0..ATTEMPTS {
            let dir = parent.join(format!(".snapshot-{}-{attempt}", std::process::id()));
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(|e| io("removing", &dir, e))?;
            }
            std::fs::create_dir(&dir).map_err(|e| io("creating", &dir, e))?;
            let mut snap = Snapshot { dir, _lease: None };
            let before = version(db)?;
            snap.copy_files(db)?;
            if version(db)? == before {
                snap.link_packs(db)?;
                snap._lease = lease.take();
                return Ok(snap);
            }
            drop(snap);
            std::thread::sleep(std::time::Duration::from_millis(20 << attempt.min(5)));
        }
        Err(StoreError::Io(format!(
            "the database in {} changed version during each of {ATTEMPTS} attempts to copy it; try again when it is less busy",
            db.display()
        )))
    }

    fn copy_files(&self, db: &Path) -> Result<(), StoreError> {
        let list = std::fs::read_dir(db).map_err(|e| io("listing", db, e))?;
        for entry in list {
            let entry = entry.map_err(|e| io("listing", db, e))?;
            let name = entry.file_name();
            let name_s = name.to_string_lossy();
            if skipped(&name_s) || entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let (from, to) = (entry.path(), self.dir.join(&name));
            let done = if immutable(&name_s) {
                std::fs::hard_link(&from, &to).or_else(|_| std::fs::copy(&from, &to).map(|_| ()))
            } else {
                std::fs::copy(&from, &to).map(|_| ())
            };
            match done {
                Ok(()) => {}
                // Deleted since the listing: obsolete by then, or the version check catches it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("copying", &from, e)),
            }
        }
        Ok(())
    }

    /// Hard-link (or copy, where links are refused) every pack file.
    fn link_packs(&self, db: &Path) -> Result<(), StoreError> {
        let from_dir = db.join(PACKS_DIR);
        let list = match std::fs::read_dir(&from_dir) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io("listing", &from_dir, e)),
        };
        let to_dir = self.dir.join(PACKS_DIR);
        std::fs::create_dir(&to_dir).map_err(|e| io("creating", &to_dir, e))?;
        for entry in list {
            let entry = entry.map_err(|e| io("listing", &from_dir, e))?;
            if pack_id(&entry.file_name().to_string_lossy()).is_none() {
                continue;
            }
            let (from, to) = (entry.path(), to_dir.join(entry.file_name()));
            std::fs::hard_link(&from, &to)
                .or_else(|_| std::fs::copy(&from, &to).map(|_| ()))
                .map_err(|e| io("copying", &from, e))?;
        }
        Ok(())
    }

    /// The copy: a database directory to open.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

/// Remove the copies in `parent` left by processes that are gone (an export killed before it
/// could remove its copy): they hold links to pack files, which keeps the writer from giving
/// back the space of chunks deleted since.
fn remove_stale(parent: &Path) {
    let Ok(list) = std::fs::read_dir(parent) else {
        return;
    };
    for e in list.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(".snapshot-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if !crate::engine::packs::process_alive(pid) {
            tracing::info!(dir = %e.path().display(), "removing a snapshot copy left by a process that is gone");
            if let Err(err) = std::fs::remove_dir_all(e.path()) {
                tracing::warn!(dir = %e.path().display(), error = %err, "could not remove a stale snapshot copy; delete it by hand");
            }
        }
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not remove a snapshot copy; delete it by hand");
        }
    }
}
