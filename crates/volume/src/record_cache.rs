//! Decoded metadata records kept in memory: inodes and extents. The requests that only read an
//! inode (the kernel's GETATTR, which follows every unlink and create in a directory), reads
//! that look up a chunk's extent, and transactions that read the records they change then skip
//! the store read and the decryption.
//!
//! Unlike chunk plaintext, these records change: a cache must never answer with an older record
//! than the store holds. Every write of the inode and extent families goes through a [`Txn`]
//! commit or a log replay, both under the commit lock, and both update the caches after the
//! store write succeeded. A read that missed fills a cache only if no write was applied to it
//! since the read began (the generation did not move), so a record read just before a commit
//! cannot land after it.
//!
//! [`Txn`]: crate::txn::Txn

use std::collections::HashMap;
use std::hash::Hash;

use parking_lot::Mutex;

use crate::schema::{Extent, Inode};

/// Inode records kept. One takes about 200 bytes here plus at most [`MAX_INODE_EXTRA`]:
/// typically a few MiB in all, 20 MiB at the very worst.
pub(crate) const INODE_CAPACITY: usize = 16_384;

/// Extents kept (about 100 bytes each, with the map): those of 8 GiB of file data at 128 KiB
/// chunks.
pub(crate) const EXTENT_CAPACITY: usize = 65_536;

/// Inode records whose xattrs, symlink target and hole list exceed this are not kept, so that
/// the cache stays small whatever the files carry (an xattr value may be 64 KiB).
const MAX_INODE_EXTRA: usize = 1024;

/// Which records a cache keeps.
pub(crate) trait Keep {
    fn keep(&self) -> bool {
        true
    }
}

impl Keep for Inode {
    fn keep(&self) -> bool {
        self.xattrs
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
            + self.target.len()
            + self.holes.len() * 16
            <= MAX_INODE_EXTRA
    }
}

impl Keep for Extent {}

struct Inner<K, V> {
    map: HashMap<K, V>,
    /// Moves at every applied write: a read that began under another generation does not fill.
    generation: u64,
}

impl<K: Hash + Eq + Copy, V: Clone + Keep> Inner<K, V> {
    fn insert(&mut self, key: K, value: &V, capacity: usize) {
        if !value.keep() {
            // Not kept; an older record of the same key must not stay either.
            self.map.remove(&key);
            return;
        }
        if self.map.len() >= capacity && !self.map.contains_key(&key) {
            // Any entry: the kernel keeps what it uses in its own caches anyway.
            if let Some(victim) = self.map.keys().next().copied() {
                self.map.remove(&victim);
            }
        }
        self.map.insert(key, value.clone());
    }
}

pub(crate) struct RecordCache<K, V> {
    inner: Mutex<Inner<K, V>>,
    capacity: usize,
}

impl<K: Hash + Eq + Copy, V: Clone + Keep> RecordCache<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        RecordCache {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                generation: 0,
            }),
            capacity,
        }
    }

    pub(crate) fn get(&self, key: &K) -> Option<V> {
        self.inner.lock().map.get(key).cloned()
    }

    /// Taken before a store read whose result goes to [`RecordCache::fill`].
    pub(crate) fn generation(&self) -> u64 {
        self.inner.lock().generation
    }

    /// Keep `value`, read from the store after [`RecordCache::generation`] returned
    /// `generation`.
    pub(crate) fn fill(&self, key: K, value: &V, generation: u64) {
        let mut g = self.inner.lock();
        if g.generation != generation {
            return;
        }
        g.insert(key, value, self.capacity);
    }

    /// The store now holds these records (`None`: deleted). Called under the commit lock, after
    /// the write.
    pub(crate) fn apply<'a>(&self, changes: impl Iterator<Item = (K, Option<&'a V>)>)
    where
        V: 'a,
    {
        let mut g = self.inner.lock();
        g.generation = g.generation.wrapping_add(1);
        for (key, value) in changes {
            match value {
                Some(v) => g.insert(key, v, self.capacity),
                None => {
                    g.map.remove(&key);
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

pub(crate) type InodeCache = RecordCache<u64, Inode>;
pub(crate) type ExtentCache = RecordCache<(u64, u64), Extent>;

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
        let c = InodeCache::new(INODE_CAPACITY);
        let before = c.generation();
        // A commit of size 2 lands while the read of the old record (size 1) is in flight.
        c.apply([(5, Some(&inode(5, 2)))].into_iter());
        c.fill(5, &inode(5, 1), before);
        assert_eq!(c.get(&5).map(|i| i.size), Some(2));
        c.clear();
        // A read begun after the commit fills, and later commits update the entry.
        let g = c.generation();
        c.fill(5, &inode(5, 2), g);
        assert_eq!(c.get(&5).map(|i| i.size), Some(2));
        // Nor does one that began before a clear.
        let before = c.generation();
        c.clear();
        c.fill(5, &inode(5, 1), before);
        assert_eq!(c.get(&5), None);
        c.fill(5, &inode(5, 2), c.generation());
        c.apply([(5, Some(&inode(5, 3)))].into_iter());
        assert_eq!(c.get(&5).map(|i| i.size), Some(3));
        c.apply([(5, None)].into_iter());
        assert_eq!(c.get(&5), None);
        let g = c.generation();
        c.fill(6, &inode(6, 1), g);
        c.clear();
        assert_eq!(c.get(&6), None);
    }

    #[test]
    fn large_records_are_not_kept_and_do_not_leave_an_older_one_behind() {
        let c = InodeCache::new(INODE_CAPACITY);
        c.fill(7, &inode(7, 1), c.generation());
        let mut big = inode(7, 2);
        big.xattrs
            .insert(b"user.big".to_vec(), vec![0; MAX_INODE_EXTRA]);
        c.apply([(7, Some(&big))].into_iter());
        assert_eq!(c.get(&7), None);
        c.fill(7, &big, c.generation());
        assert_eq!(c.get(&7), None);
    }

    #[test]
    fn stays_within_its_capacity() {
        let c = InodeCache::new(INODE_CAPACITY);
        for ino in 0..(INODE_CAPACITY as u64 + 100) {
            let g = c.generation();
            c.fill(ino, &inode(ino, ino), g);
        }
        let g = c.inner.lock();
        assert_eq!(g.map.len(), INODE_CAPACITY);
        assert!(g.map.iter().all(|(k, v)| v.ino == *k && v.size == *k));
    }
}
