//! Chunk geometry: the one place that knows how byte offsets map to chunk indices.
//!
//! A file's contents are cut at multiples of the volume's chunk size, fixed at `init`.
//! [`ChunkSize`] is parsed and checked once (CLI flag, Docker volume option, [`CreateOptions`])
//! and then carries the arithmetic that every data path needs, so no caller divides by hand.
//!
//! [`CreateOptions`]: crate::CreateOptions

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::size::parse_size;

/// A volume's chunk size: a power of two from [`ChunkSize::MIN`] to [`ChunkSize::MAX`] bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct ChunkSize(u32);

/// A chunk size that is not one sealvol accepts, with the fix in its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid chunk size {given}: use a power of two from 4K to 4M (4K, 8K, ... 128K, ... 4M), \
     or leave it out for the default 128K"
)]
pub struct BadChunkSize {
    given: String,
}

impl ChunkSize {
    /// 4 KiB: the page size; smaller chunks would cost more in metadata than they save.
    pub const MIN: ChunkSize = ChunkSize(4 << 10);
    /// 4 MiB: a chunk is read, sealed and cached whole, so it bounds a small write's cost.
    pub const MAX: ChunkSize = ChunkSize(4 << 20);
    /// 128 KiB: the FUSE kernel's default request size, so a sequential read decrypts each
    /// chunk once, and a 4 KiB random write rewrites at most 128 KiB.
    pub const DEFAULT: ChunkSize = ChunkSize(128 << 10);

    /// `bytes` if it is a valid chunk size.
    pub fn new(bytes: u64) -> Result<ChunkSize, BadChunkSize> {
        match u32::try_from(bytes) {
            Ok(b) if b.is_power_of_two() && (Self::MIN.0..=Self::MAX.0).contains(&b) => {
                Ok(ChunkSize(b))
            }
            _ => Err(BadChunkSize {
                given: bytes.to_string(),
            }),
        }
    }

    /// The size in bytes.
    pub fn get(self) -> u32 {
        self.0
    }

    /// The size in bytes, as a u64 for offset arithmetic.
    pub fn bytes(self) -> u64 {
        self.0 as u64
    }

    /// The index of the chunk holding byte `offset`.
    pub fn index_of(self, offset: u64) -> u64 {
        offset >> self.0.trailing_zeros()
    }

    /// Where byte `offset` lies inside its chunk.
    pub fn offset_in(self, offset: u64) -> usize {
        (offset & (self.bytes() - 1)) as usize
    }

    /// How many chunks a file of `size` bytes spans (the last one possibly short).
    pub fn count(self, size: u64) -> u64 {
        size.div_ceil(self.bytes())
    }

    /// The file offset at which chunk `index` starts (saturating: indices past the largest
    /// file start past its end).
    pub fn start_of(self, index: u64) -> u64 {
        index.saturating_mul(self.bytes())
    }

    /// The chunk indices that bytes `[from, to)` touch.
    pub fn indices(self, from: u64, to: u64) -> std::ops::Range<u64> {
        if from >= to {
            return 0..0;
        }
        self.index_of(from)..self.count(to)
    }

    /// Bytes `[from, to)` cut at chunk boundaries, in order.
    pub fn pieces(self, from: u64, to: u64) -> impl Iterator<Item = Piece> {
        let mut pos = from;
        std::iter::from_fn(move || {
            if pos >= to {
                return None;
            }
            let index = self.index_of(pos);
            let at = self.offset_in(pos);
            let len = (self.bytes() - at as u64).min(to - pos) as usize;
            pos += len as u64;
            Some(Piece { index, at, len })
        })
    }

    /// How many bytes of chunk `index` lie inside a file of `size` bytes.
    pub fn len_within(self, index: u64, size: u64) -> usize {
        size.saturating_sub(self.start_of(index)).min(self.bytes()) as usize
    }
}

/// The part of a byte range that falls in one chunk: `len` bytes from `at` in chunk `index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    pub index: u64,
    pub at: usize,
    pub len: usize,
}

impl Piece {
    /// Does the piece cover its whole chunk?
    pub fn is_whole(&self, chunk: ChunkSize) -> bool {
        self.at == 0 && self.len as u64 == chunk.bytes()
    }
}

impl Default for ChunkSize {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl FromStr for ChunkSize {
    type Err = BadChunkSize;

    /// A size as users write it: `131072`, `128K`, `1M`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // At most 64 characters of what was given: the message goes back to clients.
        let bad = || BadChunkSize {
            given: match s.char_indices().nth(64) {
                Some((cut, _)) => format!("{:?}...", &s[..cut]),
                None => format!("{s:?}"),
            },
        };
        let n = parse_size(s).ok_or_else(bad)?;
        ChunkSize::new(n).map_err(|_| bad())
    }
}

impl fmt::Display for ChunkSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 >= 1 << 20 {
            write!(f, "{}M", self.0 >> 20)
        } else {
            write!(f, "{}K", self.0 >> 10)
        }
    }
}

impl TryFrom<u32> for ChunkSize {
    type Error = BadChunkSize;
    fn try_from(v: u32) -> Result<Self, Self::Error> {
        ChunkSize::new(v as u64)
    }
}

impl From<ChunkSize> for u32 {
    fn from(c: ChunkSize) -> u32 {
        c.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_powers_of_two_in_range_only() {
        for ok in ["4K", "4096", "8k", "128K", "1M", "4M", "4194304"] {
            assert!(ok.parse::<ChunkSize>().is_ok(), "{ok}");
        }
        // 100K: not a power of two (the example); 2K and 8M: out of range; junk.
        for bad in [
            "100K",
            "2K",
            "8M",
            "0",
            "",
            "K",
            "12Q",
            "-4K",
            "99999999999999999999G",
        ] {
            let e = bad.parse::<ChunkSize>().unwrap_err().to_string();
            assert!(e.contains("power of two from 4K to 4M"), "{bad}: {e}");
        }
        assert_eq!(ChunkSize::new(1 << 33).unwrap_err().given, "8589934592");
    }

    #[test]
    fn arithmetic() {
        let c: ChunkSize = "128K".parse().unwrap();
        assert_eq!(c.to_string(), "128K");
        assert_eq!(ChunkSize::MAX.to_string(), "4M");
        assert_eq!(c.index_of(0), 0);
        assert_eq!(c.index_of(128 * 1024 - 1), 0);
        assert_eq!(c.index_of(128 * 1024), 1);
        assert_eq!(c.offset_in(128 * 1024 + 5), 5);
        assert_eq!(c.count(0), 0);
        assert_eq!(c.count(1), 1);
        assert_eq!(c.count(128 * 1024), 1);
        assert_eq!(c.count(128 * 1024 + 1), 2);
        assert_eq!(c.start_of(3), 3 * 128 * 1024);
        assert_eq!(c.start_of(u64::MAX), u64::MAX);
        assert_eq!(c.len_within(1, 128 * 1024 + 10), 10);
        assert_eq!(c.len_within(0, 128 * 1024 + 10), 128 * 1024);
        assert_eq!(c.len_within(5, 10), 0);
        assert_eq!(c.count(u64::MAX), u64::MAX / (128 * 1024) + 1);
        let k = 128 * 1024;
        assert_eq!(c.indices(5, 5), 0..0);
        assert_eq!(c.indices(k - 1, k + 1), 0..2);
        assert_eq!(c.indices(k, 2 * k), 1..2);
        let p: Vec<Piece> = c.pieces(k - 1, 2 * k + 3).collect();
        assert_eq!(
            p,
            vec![
                Piece {
                    index: 0,
                    at: (k - 1) as usize,
                    len: 1
                },
                Piece {
                    index: 1,
                    at: 0,
                    len: k as usize
                },
                Piece {
                    index: 2,
                    at: 0,
                    len: 3
                },
            ]
        );
        assert!(p[1].is_whole(c) && !p[0].is_whole(c) && !p[2].is_whole(c));
        assert_eq!(c.pieces(7, 7).count(), 0);
    }

    #[test]
    fn serde_refuses_invalid_sizes() {
        let v: u32 = 100 * 1024;
        assert!(ChunkSize::try_from(v).is_err());
        assert_eq!(u32::from(ChunkSize::DEFAULT), 131072);
    }
}
