//! Verified chunk plaintext kept in memory, by chunk address, within a byte budget.
//!
//! A chunk's address is the keyed hash of its plaintext, so a cached plaintext can never go
//! stale: whatever happens to the files that use it, the bytes at an address stay the same.
//! Entries are whole chunks (read or written whole) or single segments of chunks read in part
//! (a 4 KiB random read opens one 16 KiB segment, and the next reads of that segment are served
//! from here). Eviction is CLOCK: an entry used since the hand last passed gets another turn.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use sealvol_sys::WipedVec;

/// Verified plaintext, shared between the cache and its readers, zeroed when the last of them
/// lets go (an evicted entry still being read is zeroed after that read), at `memset` speed.
pub(crate) type Plain = Arc<WipedVec>;

pub(crate) fn plain(v: Vec<u8>) -> Plain {
    Arc::new(WipedVec::new(v))
}

use parking_lot::Mutex;
use sealvol_crypto::{ChunkAddr, SEGMENT};

/// What the cache holds for an address: the whole chunk, or one segment of it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) enum Part {
    Whole,
    Segment(u32),
}

struct Entry {
    data: Plain,
    used: bool,
}

#[derive(Default)]
struct Inner {
    map: HashMap<(ChunkAddr, Part), Entry>,
    /// The CLOCK ring: every key in `map` once, the hand at the front.
    ring: VecDeque<(ChunkAddr, Part)>,
    bytes: usize,
}

/// The plaintext cache (see the module documentation).
pub(crate) struct PlainCache {
    budget: AtomicUsize,
    /// Bytes the cache may hold beyond its budget for now: memory lent by the write path while
    /// nothing is written, taken back at the next write (see [`PlainCache::repay`]).
    loan: AtomicUsize,
    inner: Mutex<Inner>,
}

/// Bookkeeping per entry, counted against the budget with its bytes.
const ENTRY_OVERHEAD: usize = 128;

impl PlainCache {
    pub(crate) fn new(budget: usize) -> Self {
        PlainCache {
            budget: AtomicUsize::new(budget),
            loan: AtomicUsize::new(0),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// What the cache may hold now: its budget and the loan.
    fn limit(&self) -> usize {
        self.budget
            .load(Ordering::Relaxed)
            .saturating_add(self.loan.load(Ordering::Relaxed))
    }

    /// Change the budget; shrinking evicts at once.
    pub(crate) fn set_budget(&self, budget: usize) {
        self.budget.store(budget, Ordering::Relaxed);
        let mut g = self.inner.lock();
        Self::evict(&mut g, self.limit());
    }

    /// Lend the cache `bytes` beyond its budget (0 ends a loan, evicting at once).
    pub(crate) fn lend(&self, bytes: usize) {
        self.loan.store(bytes, Ordering::Relaxed);
        let mut g = self.inner.lock();
        Self::evict(&mut g, self.limit());
    }

    /// Bytes lent now.
    pub(crate) fn loan(&self) -> usize {
        self.loan.load(Ordering::Relaxed)
    }

    /// End the loan, if any, evicting down to the budget at once; true if there was one. Cheap
    /// when there is none (one atomic load): meant to be called before every write.
    pub(crate) fn repay(&self) -> bool {
        if self.loan.load(Ordering::Relaxed) == 0 || self.loan.swap(0, Ordering::Relaxed) == 0 {
            return false;
        }
        let mut g = self.inner.lock();
        Self::evict(&mut g, self.limit());
        true
    }

    /// Bytes held, bookkeeping included.
    pub(crate) fn bytes(&self) -> usize {
        self.inner.lock().bytes
    }

    fn get(&self, addr: &ChunkAddr, part: Part) -> Option<Plain> {
        let mut g = self.inner.lock();
        let e = g.map.get_mut(&(*addr, part))?;
        e.used = true;
        Some(e.data.clone())
    }

    /// The whole chunk at `addr`, if cached.
    pub(crate) fn whole(&self, addr: &ChunkAddr) -> Option<Plain> {
        self.get(addr, Part::Whole)
    }

    /// Bytes `range` of the chunk at `addr` (clamped to its length `len`), if the cache holds
    /// the whole chunk or every segment the range touches.
    pub(crate) fn range(
        &self,
        addr: &ChunkAddr,
        len: usize,
        range: std::ops::Range<usize>,
    ) -> Option<Vec<u8>> {
        let end = range.end.min(len);
        if range.start >= end {
            return Some(Vec::new());
        }
        if let Some(c) = self.whole(addr) {
            return Some(c.get(range.start..end)?.to_vec());
        }
        let mut out = Vec::with_capacity(end - range.start);
        let mut pos = range.start;
        while pos < end {
            let seg = pos / SEGMENT;
            let s = self.get(addr, Part::Segment(seg as u32))?;
            let at = pos - seg * SEGMENT;
            let take = (end - pos).min(s.len().checked_sub(at)?);
            if take == 0 {
                return None;
            }
            out.extend_from_slice(&s[at..at + take]);
            pos += take;
        }
        Some(out)
    }

    pub(crate) fn put_whole(&self, addr: ChunkAddr, data: Plain) {
        self.put(addr, Part::Whole, data);
    }

    /// Whole segments of a chunk, from segment `first` on (as `open_chunk_segments` returns
    /// them).
    pub(crate) fn put_segments(&self, addr: ChunkAddr, first: usize, segments: &[u8]) {
        for (i, s) in segments.chunks(SEGMENT).enumerate() {
            self.put(addr, Part::Segment((first + i) as u32), plain(s.to_vec()));
        }
    }

    fn put(&self, addr: ChunkAddr, part: Part, data: Plain) {
        let budget = self.limit();
        let size = data.len() + ENTRY_OVERHEAD;
        if size > budget / 4 {
            return; // one entry never takes over the cache
        }
        let mut g = self.inner.lock();
        let g = &mut *g;
        match g.map.get_mut(&(addr, part)) {
            Some(e) => e.used = true,
            None => {
                g.map.insert((addr, part), Entry { data, used: false });
                g.ring.push_back((addr, part));
                g.bytes += size;
                Self::evict(g, budget);
            }
        }
    }

    fn evict(g: &mut Inner, budget: usize) {
        while g.bytes > budget {
            let Some(k) = g.ring.pop_front() else { break };
            let Some(e) = g.map.get_mut(&k) else { continue };
            if e.used {
                e.used = false;
                g.ring.push_back(k);
            } else if let Some(e) = g.map.remove(&k) {
                g.bytes -= e.data.len() + ENTRY_OVERHEAD;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(n: u8) -> ChunkAddr {
        ChunkAddr([n; 32])
    }

    #[test]
    fn segments_serve_ranges_they_cover_and_only_those() {
        let c = PlainCache::new(1 << 20);
        let plain: Vec<u8> = (0..3 * SEGMENT).map(|i| (i % 251) as u8).collect();
        // Segments 1 and 2 of a chunk of 2.5 segments.
        let len = 2 * SEGMENT + SEGMENT / 2;
        c.put_segments(addr(1), 1, &plain[SEGMENT..len]);
        let r = SEGMENT + 10..2 * SEGMENT + 20;
        assert_eq!(c.range(&addr(1), len, r.clone()).unwrap(), plain[r]);
        // Past the chunk's end: clamped.
        let r = 2 * SEGMENT..len + 100;
        assert_eq!(c.range(&addr(1), len, r).unwrap(), plain[2 * SEGMENT..len]);
        // Segment 0 is not cached, nor is another address.
        assert!(c.range(&addr(1), len, 10..20).is_none());
        assert!(c.range(&addr(2), len, SEGMENT..SEGMENT + 1).is_none());
    }

    #[test]
    fn whole_chunks_serve_any_range() {
        let c = PlainCache::new(1 << 20);
        let plain: Vec<u8> = (0..40_000).map(|i| (i % 13) as u8).collect();
        c.put_whole(addr(3), super::plain(plain.clone()));
        assert_eq!(
            c.range(&addr(3), plain.len(), 5..39_000).unwrap(),
            plain[5..39_000]
        );
        assert_eq!(c.whole(&addr(3)).unwrap()[..], plain[..]);
    }

    #[test]
    fn stays_within_budget_and_keeps_what_is_used() {
        let budget = 10 * (SEGMENT + ENTRY_OVERHEAD);
        let c = PlainCache::new(budget);
        let seg = vec![7u8; SEGMENT];
        c.put_segments(addr(0), 0, &seg);
        for n in 1..100u8 {
            // Address 0 is used between every insertion: CLOCK keeps it.
            assert!(c.range(&addr(0), SEGMENT, 0..1).is_some(), "evicted at {n}");
            c.put_segments(addr(n), 0, &seg);
            assert!(c.bytes() <= budget);
        }
        assert!(c.range(&addr(1), SEGMENT, 0..1).is_none());
        assert!(c.range(&addr(99), SEGMENT, 0..1).is_some());
        c.set_budget(0);
        assert_eq!(c.bytes(), 0);
        assert!(c.range(&addr(99), SEGMENT, 0..1).is_none());
    }

    #[test]
    fn a_loan_lets_the_cache_grow_until_repaid() {
        let entry = SEGMENT + ENTRY_OVERHEAD;
        let c = PlainCache::new(4 * entry);
        let seg = vec![7u8; SEGMENT];
        assert!(!c.repay(), "nothing lent");
        c.lend(6 * entry);
        assert_eq!(c.loan(), 6 * entry);
        for n in 0..20u8 {
            c.put_segments(addr(n), 0, &seg);
        }
        assert_eq!(c.bytes(), 10 * entry, "budget and loan");
        assert!(c.repay());
        assert_eq!(
            (c.bytes(), c.loan()),
            (4 * entry, 0),
            "back within the budget at once"
        );
        assert!(!c.repay());
        c.lend(2 * entry);
        for n in 20..30u8 {
            c.put_segments(addr(n), 0, &seg);
        }
        c.lend(0);
        assert_eq!(c.bytes(), 4 * entry);
    }
}
