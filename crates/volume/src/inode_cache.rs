//! Decoded inode records kept in memory, so that the requests that only read an inode (the
//! kernel's GETATTR, which follows every unlink and create in a directory) and transactions
//! that read the inodes they change skip the store read and the decryption.
//!
//! Unlike chunk plaintext, an inode changes: the cache must never answer with an older record
//! than the store holds. Every write of the inode family goes through a [`Txn`] commit or a log
//! replay, both under the commit lock, and both update the cache after the store write
//! succeeded. A read that missed fills the cache only if no write was applied since it began
//! (the generation did not move), so a record read just before a commit cannot land after it.
//!
//! [`Txn`]: crate::txn::Txn

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::schema::Inode;

/// Records kept. One takes about 200 bytes here plus at most [`MAX_RECORD_EXTRA`]: typically
/// a few MiB in all, 20 MiB at the very worst.
const CAPACITY: usize = 16_384;

#[derive(Default)]
struct Inner {
    map: HashMap<u64, Inode>,
    /// Moves at every applied write: a read that began under another generation does not fill.
    generation: u64,
}

/// Records whose xattrs, symlink target and hole list exceed this are not kept, so that the
/// cache stays within a few MiB whatever the files carry (an xattr value may be 64 KiB).
const MAX_RECORD_EXTRA: usize = 1024;

fn extra_bytes(i: &Inode) -> usize {
    i.xattrs
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum::<usize>()
        + i.target.len()
        + i.holes.len() * 16
}

impl Inner {
    fn insert(&mut self, inode: &Inode) {
        if extra_bytes(inode) > MAX_RECORD_EXTRA {
            // Not kept; an older record of the same inode must not stay either.
            self.map.remove(&inode.ino);
            return;
        }
        if self.map.len() >= CAPACITY && !self.map.contains_key(&inode.ino) {
            // Any entry: the kernel keeps what it uses in its own attribute cache anyway.
            if let Some(victim) = self.map.keys().next().copied() {
                self.map.remove(&victim);
            }
        }
        self.map.insert(inode.ino, inode.clone());
    }
}

#[derive(Default)]
pub(crate) struct InodeCache {
    inner: Mutex<Inner>,
}

impl InodeCache {
    pub(crate) fn get(&self, ino: u64) -> Option<Inode> {
        self.inner.lock().map.get(&ino).cloned()
    }

    /// Taken before a store read whose result goes to [`InodeCache::fill`].
    pub(crate) fn generation(&self) -> u64 {
        self.inner.lock().generation
    }

    /// Keep `inode`, read from the store after [`InodeCache::generation`] returned `generation`.
    pub(crate) fn fill(&self, inode: &Inode, generation: u64) {
        let mut g = self.inner.lock();
        if g.generation != generation {
            return;
        }
        g.insert(inode);
    }

    /// The store now holds these records (`None`: deleted). Called under the commit lock, after
    /// the write.
    pub(crate) fn apply<'a>(&self, changes: impl Iterator<Item = (u64, Option<&'a Inode>)>) {
        let mut g = self.inner.lock();
        g.generation = g.generation.wrapping_add(1);
        for (ino, inode) in changes {
            match inode {
                Some(i) => g.insert(i),
                None => {
                    g.map.remove(&ino);
                }
            }
        }
    }

    /// Forget everything (after writes that bypass transactions, such as a log replay).
    pub(crate) fn clear(&self) {
        let mut g = self.inner.lock();
        g.generation = g.generation.wrapping_add(1);
        g.map.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Kind;

    fn inode(ino: u64, size: u64) -> Inode {
        Inode {
            ino,
            kind: Kind::File,
            perm: 0o644,
            uid: 0,
            gid: 0,
            nlink: 1,
            size,
            atime: Default::default(),
            mtime: Default::default(),
            ctime: Default::default(),
            crtime: Default::default(),
            rdev: 0,
            parent: 1,
            target: Vec::new(),
            xattrs: Default::default(),
            holes: Vec::new(),
        }
    }

    #[test]
    fn a_read_that_began_before_a_write_does_not_fill() {
        let c = InodeCache::default();
        let before = c.generation();
        // A commit of size 2 lands while the read of the old record (size 1) is in flight.
        c.apply([(5, Some(&inode(5, 2)))].into_iter());
        c.fill(&inode(5, 1), before);
        assert_eq!(c.get(5).map(|i| i.size), Some(2));
        c.clear();
        // A read begun after the commit fills, and later commits update the entry.
        let g = c.generation();
        c.fill(&inode(5, 2), g);
        assert_eq!(c.get(5).map(|i| i.size), Some(2));
        // Nor does one that began before a clear.
        let before = c.generation();
        c.clear();
        c.fill(&inode(5, 1), before);
        assert_eq!(c.get(5), None);
        c.fill(&inode(5, 2), c.generation());
        c.apply([(5, Some(&inode(5, 3)))].into_iter());
        assert_eq!(c.get(5).map(|i| i.size), Some(3));
        c.apply([(5, None)].into_iter());
        assert_eq!(c.get(5), None);
        let g = c.generation();
        c.fill(&inode(6, 1), g);
        c.clear();
        assert_eq!(c.get(6), None);
    }

    #[test]
    fn large_records_are_not_kept_and_do_not_leave_an_older_one_behind() {
        let c = InodeCache::default();
        c.fill(&inode(7, 1), c.generation());
        let mut big = inode(7, 2);
        big.xattrs
            .insert(b"user.big".to_vec(), vec![0; MAX_RECORD_EXTRA]);
        c.apply([(7, Some(&big))].into_iter());
        assert_eq!(c.get(7), None);
        c.fill(&big, c.generation());
        assert_eq!(c.get(7), None);
    }

    #[test]
    fn stays_within_its_capacity() {
        let c = InodeCache::default();
        for ino in 0..(CAPACITY as u64 + 100) {
            let g = c.generation();
            c.fill(&inode(ino, ino), g);
        }
        let g = c.inner.lock();
        assert_eq!(g.map.len(), CAPACITY);
        assert!(g.map.iter().all(|(k, v)| v.ino == *k && v.size == *k));
    }
}
