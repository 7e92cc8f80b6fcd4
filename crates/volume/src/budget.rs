//! One memory budget per mounted volume, and its split among what holds memory.
//!
//! | share | of budget B | at 256 MiB | what |
//! |---|---|---|---|
//! | memtables | B/8 | 32 MiB | RocksDB memtables, all column families (write buffer manager) |
//! | block cache | B/32 | 8 MiB | RocksDB blocks, index and filter blocks included |
//! | write buffers | B/4 | 64 MiB | buffered writes and write-outs in flight |
//! | overhead | 7B/16, at least 32 MiB | 112 MiB | code, thread stacks, FUSE request buffers, decoded-record caches, allocator slack |
//! | plaintext cache | the rest | 40 MiB | verified plaintext by chunk address |
//!
//! While nothing is written, the write buffers and memtables hold next to nothing, and the
//! plaintext cache may borrow their shares ([`MemorySplit::cache_loan`]: 96 MiB at the default,
//! so 136 MiB of cache): the mount's housekeeping lends them after a few seconds without a
//! write, if the process has room, and the next write takes them back before it buffers
//! anything (evicting at once). Random reads of a 128 MiB file then stay in the cache.
//!
//! The overhead share is what measurements asked for: a fresh mount is 17 to 34 MiB resident,
//! and during a long sequential write glibc's arenas hold 60 to 110 MiB of freed buffers not
//! yet reused (the mount limits glibc to two arenas and trims them whenever the process holds
//! more than 15/16 of its budget, at most once a second: trimming more often cost throughput;
//! docs/benchmarks.md, "Memory").
//!
//! The write share W bounds what buffered writes and write-outs in flight hold together. A
//! write-out in flight is charged twice its buffer (its plaintext, and the sealed copy while it is
//! sealed and staged) from its start until it is done, and one that would not fit beside those in
//! flight and all files' buffers waits for one of them to finish (`Volume::wait_for_room`). A
//! file's flush threshold is a fifth of what the others leave free (room for its buffer and two
//! write-outs, each plaintext and sealed: 12.8 MiB for a file written alone at the default, at
//! most the 32 MiB it was before budgets; at least 1 MiB), so files written at once share W
//! instead of each buffering a fixed fifth of it. All files' buffers together write out early
//! past W / 2.

use std::fmt;
use std::str::FromStr;

use sealvol_store::RocksTuning;

use crate::filestate::{MIN_FLUSH_THRESHOLD, THRESHOLD_SHARE};
use crate::size::parse_size;
use crate::volume::DEFAULT_FLUSH_THRESHOLD;

/// The memory one mounted volume may use, from [`MemoryBudget::MIN`] to [`MemoryBudget::MAX`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryBudget(u64);

/// A memory budget sealvol does not accept, with the accepted range in its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid memory budget {given}: give a size from 64M to 64G (suffixes K, M, G), \
     or leave it out for the default 256M"
)]
pub struct BadMemoryBudget {
    given: String,
}

/// A plaintext cache larger than its share of the budget.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a cache size of {cache} does not fit in the memory budget {budget}, which leaves {share} for \
     the plaintext cache: raise the memory budget or lower the cache size"
)]
pub struct CacheOverBudget {
    cache: String,
    budget: String,
    share: String,
}

/// Bytes that do not grow with the budget: code, thread stacks, the FUSE threads' request
/// buffers, the decoded-record caches (at most about 20 MiB).
const MIN_OVERHEAD: usize = 32 << 20;

impl MemoryBudget {
    /// 64 MiB: the fixed overhead (32 MiB) and a little of everything else.
    pub const MIN: u64 = 64 << 20;
    /// 64 GiB.
    pub const MAX: u64 = 64 << 30;
    /// 256 MiB.
    pub const DEFAULT: MemoryBudget = MemoryBudget(256 << 20);

    /// `bytes` if it is a budget sealvol accepts.
    pub fn new(bytes: u64) -> Result<MemoryBudget, BadMemoryBudget> {
        if (Self::MIN..=Self::MAX).contains(&bytes) {
            Ok(MemoryBudget(bytes))
        } else {
            Err(BadMemoryBudget {
                given: format_size(bytes),
            })
        }
    }

    /// The budget in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// The budget's shares (the table at the top of this module).
    pub fn split(self) -> MemorySplit {
        // At most 64 GiB: fits a usize on the 64-bit systems sealvol runs on.
        let b = usize::try_from(self.0).unwrap_or(usize::MAX);
        let memtables = b / 8;
        let block_cache = b / 32;
        let write_buffers = b / 4;
        let overhead = (b / 16 * 7).max(MIN_OVERHEAD);
        let cache = b.saturating_sub(memtables + block_cache + write_buffers + overhead);
        MemorySplit {
            total: b,
            memtables,
            block_cache,
            write_buffers,
            flush_threshold: (write_buffers / THRESHOLD_SHARE)
                .clamp(MIN_FLUSH_THRESHOLD, DEFAULT_FLUSH_THRESHOLD),
            buffer_budget: write_buffers / 2,
            cache,
            cache_loan: write_buffers + memtables,
            overhead,
        }
    }
}

impl Default for MemoryBudget {
    fn default() -> Self {
        MemoryBudget::DEFAULT
    }
}

impl FromStr for MemoryBudget {
    type Err = BadMemoryBudget;

    /// A size as users write it: `256M`, `1G`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // At most 64 characters of what was given: the message goes back to clients.
        let bad = || BadMemoryBudget {
            given: match s.char_indices().nth(64) {
                Some((cut, _)) => format!("{:?}...", &s[..cut]),
                None => format!("{s:?}"),
            },
        };
        let bytes = parse_size(s).ok_or_else(bad)?;
        MemoryBudget::new(bytes).map_err(|_| bad())
    }
}

impl fmt::Display for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_size(self.0))
    }
}

/// A size as `parse_size` reads it: with the largest suffix that divides it exactly.
fn format_size(bytes: u64) -> String {
    for (shift, suffix) in [(30, "G"), (20, "M"), (10, "K")] {
        if bytes != 0 && bytes % (1 << shift) == 0 {
            return format!("{}{suffix}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// A budget's shares in bytes (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MemorySplit {
    /// The whole budget.
    pub total: usize,
    /// RocksDB memtables, all column families together.
    pub memtables: usize,
    /// RocksDB's block cache.
    pub block_cache: usize,
    /// Buffered writes and write-outs in flight.
    pub write_buffers: usize,
    /// One file's buffered bytes before it is written out.
    pub flush_threshold: usize,
    /// All files' buffered bytes before files holding a share of it write out early.
    pub buffer_budget: usize,
    /// The plaintext cache.
    pub cache: usize,
    /// What the plaintext cache may borrow while nothing is written: the write buffers' and
    /// memtables' shares.
    pub cache_loan: usize,
    /// Code, stacks, request buffers, decoded-record caches and allocator slack.
    pub overhead: usize,
}

impl MemorySplit {
    /// The split with the plaintext cache set to `bytes` (`--cache-size`, plugin option
    /// `cache-size`): smaller than its share leaves the rest unused, and the cache borrows
    /// nothing (a size given is a size meant); larger is refused.
    pub fn with_cache_size(self, bytes: u64) -> Result<MemorySplit, CacheOverBudget> {
        match usize::try_from(bytes) {
            Ok(c) if c <= self.cache => Ok(MemorySplit {
                cache: c,
                cache_loan: 0,
                ..self
            }),
            _ => Err(CacheOverBudget {
                cache: format_size(bytes),
                budget: format_size(self.total as u64),
                share: format_size(self.cache as u64),
            }),
        }
    }

    /// The RocksDB settings for these shares.
    pub fn rocks_tuning(&self) -> RocksTuning {
        RocksTuning::with_memory(self.memtables, self.block_cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_are_checked_and_read_as_users_write_them() {
        assert_eq!("256M".parse(), Ok(MemoryBudget::DEFAULT));
        assert_eq!("1G".parse::<MemoryBudget>().unwrap().bytes(), 1 << 30);
        assert_eq!(MemoryBudget::DEFAULT.to_string(), "256M");
        assert_eq!(MemoryBudget::new(3 << 30).unwrap().to_string(), "3G");
        for bad in ["63M", "0", "65G", "lots", "", "-1M"] {
            let e = bad.parse::<MemoryBudget>().unwrap_err().to_string();
            assert!(e.contains("64M to 64G"), "{bad}: {e}");
        }
        assert!(MemoryBudget::new(MemoryBudget::MIN).is_ok());
        assert!(MemoryBudget::new(MemoryBudget::MAX).is_ok());
    }

    #[test]
    fn the_shares_add_up_to_the_budget_and_one_file_fits_its_share() {
        for b in [
            MemoryBudget::MIN,
            100 << 20,
            256 << 20,
            1 << 30,
            MemoryBudget::MAX,
        ] {
            let s = MemoryBudget::new(b).unwrap().split();
            let sum = s.memtables + s.block_cache + s.write_buffers + s.cache + s.overhead;
            assert_eq!(sum as u64, b, "{s:?}");
            assert!(s.cache > 0 && s.overhead >= MIN_OVERHEAD, "{s:?}");
            // One file: its buffer and two write-outs in flight, each plaintext and sealed.
            assert!(5 * s.flush_threshold <= s.write_buffers, "{s:?}");
            assert!(s.buffer_budget <= s.write_buffers);
        }
        let d = MemoryBudget::DEFAULT.split();
        assert_eq!(
            (d.memtables, d.block_cache, d.write_buffers, d.cache),
            (32 << 20, 8 << 20, 64 << 20, 40 << 20)
        );
        assert_eq!(d.rocks_tuning().all_write_buffers, 32 << 20);
        assert_eq!(d.flush_threshold, (64 << 20) / 5);
        // Large budgets keep the threshold the write path was tuned with.
        assert_eq!(
            MemoryBudget::new(4 << 30).unwrap().split().flush_threshold,
            DEFAULT_FLUSH_THRESHOLD
        );
    }

    #[test]
    fn a_cache_size_must_fit_its_share() {
        let d = MemoryBudget::DEFAULT.split();
        assert_eq!(d.with_cache_size(0).unwrap().cache, 0);
        assert_eq!(d.with_cache_size(40 << 20).unwrap().cache, 40 << 20);
        assert_eq!(d.cache_loan, 96 << 20);
        assert_eq!(d.with_cache_size(40 << 20).unwrap().cache_loan, 0);
        let e = d.with_cache_size(256 << 20).unwrap_err().to_string();
        assert!(
            e.contains("256M") && e.contains("40M") && e.contains("raise the memory budget"),
            "{e}"
        );
    }
}
