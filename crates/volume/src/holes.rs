//! A regular file's holes: the chunk index ranges `[start, end)` that hold no data.
//!
//! Every chunk index below the file's chunk count has either an extent or lies in a hole (see
//! [`Inode::holes`](crate::Inode)), so the chunks that exist are the complement of the holes,
//! and every walk over a file's data goes through [`data_indices`]: its cost follows the
//! extents that exist, never the file's nominal size (a file truncated to a petabyte has one
//! hole and no extents).
//!
//! The list is kept sorted, disjoint and non-adjacent (merged), so lookups are binary searches.

use std::ops::Range;

/// Index of the first hole that ends after `index` (the only one that can contain it).
fn first_ending_after(holes: &[(u64, u64)], index: u64) -> usize {
    holes.partition_point(|&(_, e)| e <= index)
}

/// Does chunk `index` lie in a hole?
pub(crate) fn contains(holes: &[(u64, u64)], index: u64) -> bool {
    holes
        .get(first_ending_after(holes, index))
        .is_some_and(|&(s, _)| s <= index)
}

/// Chunk `index` now holds data.
pub(crate) fn remove(holes: &mut Vec<(u64, u64)>, index: u64) {
    let i = first_ending_after(holes, index);
    let Some(&(s, e)) = holes.get(i) else {
        return;
    };
    if index < s {
        return;
    }
    match (s < index, index + 1 < e) {
        (true, true) => {
            holes[i] = (s, index);
            holes.insert(i + 1, (index + 1, e));
        }
        (true, false) => holes[i] = (s, index),
        (false, true) => holes[i] = (index + 1, e),
        (false, false) => {
            holes.remove(i);
        }
    }
}

/// Chunks `[start, end)` hold no data.
pub(crate) fn add(holes: &mut Vec<(u64, u64)>, start: u64, end: u64) {
    if start >= end {
        return;
    }
    // Holes that touch or overlap [start, end) merge with it: those from `lo` to `hi`.
    let lo = holes.partition_point(|&(_, e)| e < start);
    let hi = holes.partition_point(|&(s, _)| s <= end);
    if lo == hi {
        holes.insert(lo, (start, end));
        return;
    }
    let merged = (start.min(holes[lo].0), end.max(holes[hi - 1].1));
    holes.splice(lo..hi, std::iter::once(merged));
}

/// The file now has `n_chunks` chunks: holes past them go.
pub(crate) fn truncate(holes: &mut Vec<(u64, u64)>, n_chunks: u64) {
    let keep = holes.partition_point(|&(s, _)| s < n_chunks);
    holes.truncate(keep);
    if let Some(last) = holes.last_mut() {
        last.1 = last.1.min(n_chunks);
    }
}

/// The ranges of chunk indices in `[from, to)` that hold data (are in no hole), in order.
pub(crate) fn data_ranges(holes: &[(u64, u64)], from: u64, to: u64) -> DataRanges<'_> {
    let next = first_ending_after(holes, from);
    DataRanges {
        holes: &holes[next..],
        at: from,
        to,
    }
}

/// The chunk indices in `[from, to)` that hold data, in order.
pub(crate) fn data_indices(
    holes: &[(u64, u64)],
    from: u64,
    to: u64,
) -> impl Iterator<Item = u64> + '_ {
    data_ranges(holes, from, to).flatten()
}

/// How many chunk indices in `[from, to)` hold data.
pub(crate) fn data_count(holes: &[(u64, u64)], from: u64, to: u64) -> u64 {
    data_ranges(holes, from, to).map(|r| r.end - r.start).sum()
}

/// Iterator of [`data_ranges`].
pub(crate) struct DataRanges<'a> {
    holes: &'a [(u64, u64)],
    at: u64,
    to: u64,
}

impl Iterator for DataRanges<'_> {
    type Item = Range<u64>;

    fn next(&mut self) -> Option<Range<u64>> {
        while self.at < self.to {
            match self.holes.split_first() {
                Some((&(s, e), rest)) if s <= self.at => {
                    self.at = self.at.max(e);
                    self.holes = rest;
                }
                Some((&(s, _), _)) => {
                    let r = self.at..s.min(self.to);
                    self.at = r.end;
                    return Some(r);
                }
                None => {
                    let r = self.at..self.to;
                    self.at = self.to;
                    return Some(r);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hole_ranges() {
        let mut h = Vec::new();
        add(&mut h, 2, 5);
        add(&mut h, 5, 7);
        assert_eq!(h, vec![(2, 7)]);
        remove(&mut h, 4);
        assert_eq!(h, vec![(2, 4), (5, 7)]);
        assert!(contains(&h, 3) && !contains(&h, 4) && contains(&h, 6) && !contains(&h, 7));
        truncate(&mut h, 6);
        assert_eq!(h, vec![(2, 4), (5, 6)]);
        truncate(&mut h, 3);
        assert_eq!(h, vec![(2, 3)]);
    }

    #[test]
    fn data_of_a_petabyte_hole_costs_nothing() {
        let n = (1u64 << 50) / 4096;
        let mut h = Vec::new();
        add(&mut h, 1, n);
        assert_eq!(data_indices(&h, 0, n).collect::<Vec<_>>(), vec![0]);
        assert_eq!(data_count(&h, 0, n + 2), 3);
        remove(&mut h, n - 1);
        assert_eq!(
            data_ranges(&h, 0, n).collect::<Vec<_>>(),
            vec![0..1, n - 1..n]
        );
    }

    /// A model: a set of hole indices over a small range.
    fn model(h: &[(u64, u64)], n: u64) -> Vec<bool> {
        (0..n).map(|i| contains(h, i)).collect()
    }

    proptest! {
        #[test]
        fn operations_match_a_bitmap(ops in proptest::collection::vec((0u8..3, 0u64..64, 0u64..64), 0..60)) {
            let mut h = Vec::new();
            let mut bits = vec![false; 64];
            for (op, a, b) in ops {
                match op {
                    0 => { add(&mut h, a.min(b), a.max(b)); for i in a.min(b)..a.max(b) { bits[i as usize] = true; } }
                    1 => { remove(&mut h, a); bits[a as usize] = false; }
                    _ => { truncate(&mut h, a); for bit in bits.iter_mut().skip(a as usize) { *bit = false; } }
                }
                // Sorted, disjoint, merged.
                prop_assert!(h.windows(2).all(|w| w[0].1 < w[1].0), "{:?}", h);
                prop_assert!(h.iter().all(|(s, e)| s < e));
                prop_assert_eq!(model(&h, 64), bits.clone());
                let data: Vec<u64> = (0..64).filter(|i| !bits[*i as usize]).collect();
                prop_assert_eq!(data_indices(&h, 0, 64).collect::<Vec<_>>(), data.clone());
                prop_assert_eq!(data_count(&h, 0, 64), data.len() as u64);
                let tail: Vec<u64> = data.iter().copied().filter(|i| (b..64).contains(i)).collect();
                prop_assert_eq!(data_indices(&h, b, 64).collect::<Vec<_>>(), tail);
            }
        }
    }
}
