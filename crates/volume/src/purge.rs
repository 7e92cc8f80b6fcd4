//! Unlinked inodes: the kernel's references to inodes (lookups), inodes kept as orphans while
//! open or known to the kernel, and their deletion when nobody holds them any more, in
//! transactions whose size follows the extents that exist, never a file's nominal size.

use sealvol_store::Durability;

use crate::error::Result;
use crate::holes;
use crate::schema::*;
use crate::txn::Txn;
use crate::volume::Volume;

/// Forgotten inodes deleted per transaction by [`Volume::purge_deferred`].
pub(crate) const PURGE_BATCH: usize = 8;

/// Extents one transaction deletes at most when purging a file: bounds the memory and the
/// commit-lock time of deleting a huge file (the rest goes in later transactions).
pub(crate) const PURGE_EXTENTS: u64 = 4096;

impl Volume {
    /// Is the inode still reachable without a name: open, or known to the kernel (looked up
    /// and not yet forgotten)? Lock order: a file's state, then the commit lock; the open and
    /// lookup maps are leaves, so this may be called inside a transaction.
    pub(crate) fn is_in_use(&self, ino: u64) -> bool {
        self.is_open(ino) || self.lookups.lock().get(&ino).copied().unwrap_or(0) > 0
    }

    /// Does some application hold `ino` open?
    pub(crate) fn is_open(&self, ino: u64) -> bool {
        self.opens.lock().get(&ino).copied().unwrap_or(0) > 0
    }

    /// The kernel now holds one more reference to `ino` (a lookup, create, mkdir, link, ...).
    pub fn remember(&self, ino: u64) {
        if ino != ROOT_INO {
            *self.lookups.lock().entry(ino).or_default() += 1;
        }
    }

    /// The kernel dropped `n` references to `ino`. An unlinked inode nobody holds is deleted.
    pub fn forget(&self, ino: u64, n: u64) -> Result<()> {
        match self.drop_lookups(ino, n) {
            true => self.purge_if_orphan(ino),
            false => Ok(()),
        }
    }

    /// Like [`Volume::forget`], but an inode to delete is queued for [`Volume::purge_deferred`]
    /// (which the mount calls every few milliseconds, and `sync_all` calls too), so that the
    /// thousands of forgets after an `rm -rf` are deleted many per transaction.
    pub fn forget_deferred(&self, ino: u64, n: u64) {
        if self.drop_lookups(ino, n) {
            self.deferred_purge.lock().push(ino);
        }
    }

    /// Count down the kernel's references to `ino`; true when none are left.
    pub(crate) fn drop_lookups(&self, ino: u64, n: u64) -> bool {
        let mut l = self.lookups.lock();
        let Some(c) = l.get_mut(&ino) else {
            return false;
        };
        *c = c.saturating_sub(n);
        if *c > 0 {
            return false;
        }
        l.remove(&ino);
        true
    }

    /// Delete the queued forgotten inodes that are unlinked and unused, [`PURGE_BATCH`] per
    /// transaction.
    pub fn purge_deferred(&self) -> Result<()> {
        loop {
            let inos = std::mem::take(&mut *self.deferred_purge.lock());
            if inos.is_empty() {
                return Ok(());
            }
            // A few per transaction: each holds the commit lock while it reads the inodes,
            // extents and reference counts it deletes, and an `rm -rf` waits behind it for
            // every unlink. Files too big for one transaction come back in the queue.
            for (i, some) in inos.chunks(PURGE_BATCH).enumerate() {
                if let Err(e) = self.purge_orphans_among(some) {
                    // Still orphans in the counters: retried here, and at the next open.
                    self.deferred_purge
                        .lock()
                        .extend_from_slice(&inos[i * PURGE_BATCH..]);
                    return Err(e);
                }
            }
        }
    }

    pub(crate) fn purge_if_orphan(&self, ino: u64) -> Result<()> {
        self.purge_orphans_among(&[ino])
    }

    /// Delete those of `inos` that are unlinked orphans nobody holds, in one transaction.
    pub(crate) fn purge_orphans_among(&self, inos: &[u64]) -> Result<()> {
        let any = {
            let c = self.commit.lock();
            inos.iter()
                .any(|i| c.counters.orphans.contains(i) && !self.is_in_use(*i))
        };
        if !any {
            return Ok(());
        }
        let mut t = self.begin();
        let mut unfinished = Vec::new();
        for &ino in inos {
            if !t.counters.orphans.contains(&ino) || self.is_in_use(ino) {
                continue;
            }
            if let Some(i) = t.inode(ino)? {
                if i.nlink == 0 && !self.purge_inode(&mut t, &i)? {
                    unfinished.push(ino);
                }
            }
        }
        t.commit(Durability::Process)?;
        // Files with more extents than one transaction deletes: the purger goes on with them.
        self.deferred_purge.lock().extend(unfinished);
        Ok(())
    }
}

impl Volume {
    /// Delete an unlinked inode and release its chunks, in `t`. A file with more than
    /// [`PURGE_EXTENTS`] extents sheds that many here and stays a listed orphan (its shed
    /// chunks become holes): the caller commits and calls again. True when the inode is gone.
    ///
    /// The cost follows the extents that exist, never the file's size: a petabyte-sized sparse
    /// file is one hole and goes in one step.
    pub(crate) fn purge_inode(&self, t: &mut Txn<'_>, inode: &Inode) -> Result<bool> {
        if inode.kind == Kind::File {
            let n = self.cfg.chunk_size.count(inode.size);
            if holes::data_count(&inode.holes, 0, n) > PURGE_EXTENTS {
                let mut shed = inode.clone();
                let mut left = PURGE_EXTENTS;
                for r in holes::data_ranges(&inode.holes, 0, n) {
                    let end = r.start + left.min(r.end - r.start);
                    for index in r.start..end {
                        t.del_extent(inode.ino, index)?;
                    }
                    holes::add(&mut shed.holes, r.start, end);
                    left -= end - r.start;
                    if left == 0 {
                        break;
                    }
                }
                t.put_inode(shed);
                if !t.counters.orphans.contains(&inode.ino) {
                    t.counters.orphans.push(inode.ino);
                }
                return Ok(false);
            }
            for index in holes::data_indices(&inode.holes, 0, n) {
                t.del_extent(inode.ino, index)?;
            }
        }
        t.del_inode(inode.ino)?;
        t.counters.orphans.retain(|o| *o != inode.ino);
        Ok(true)
    }

    /// Orphans whose last opener went away in a crash are deleted on open (in as many
    /// transactions as their extents need).
    pub(crate) fn purge_orphans(&self) -> Result<()> {
        loop {
            let orphans = self.commit.lock().counters.orphans.clone();
            if orphans.is_empty() {
                return Ok(());
            }
            let mut t = self.begin();
            let mut done = true;
            for ino in orphans {
                match t.inode(ino)? {
                    Some(i) if i.nlink == 0 => done &= self.purge_inode(&mut t, &i)?,
                    _ => t.counters.orphans.retain(|o| *o != ino),
                }
            }
            t.commit(Durability::Process)?;
            if done {
                return Ok(());
            }
        }
    }
}
