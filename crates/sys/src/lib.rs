//! What safe Rust cannot do, in one small crate to audit: the rest of the workspace forbids
//! `unsafe` (`unsafe_code = "forbid"`), and this crate keeps each unsafe operation in a block of
//! its own with the reason it is sound.
//!
//! - [`LockedKey`]: 32 bytes of key material in a page locked into RAM (`mlock`, so it never
//!   reaches swap) and left out of core dumps (`MADV_DONTDUMP`), zeroized when dropped. Keys share
//!   pages, so a mount locks a page or two, not its whole memory.
//! - [`release_free_memory`], [`limit_malloc_arenas`] and [`allocator_stats`]: glibc's
//!   `malloc_trim(0)`, `mallopt(M_ARENA_MAX, n)` and `mallinfo2()`, so that a mount's allocator
//!   keeps less memory it does not use, gives it back when idle, and says how much it keeps.
//! - [`crc32c_interposed`]: a hardware CRC32C in place of the portable one in Debian's RocksDB
//!   library (ELF symbol interposition of `rocksdb::crc32c::Extend`; see the module).
//! - [`wipe`] and [`WipedVec`]: plaintext zeroed at `memset` speed, in a way the compiler keeps.
//!
//! It knows nothing of sealvol's formats, files or keys' meaning.

mod crc32c;
mod locked;
mod malloc;
mod wipe;

pub use crc32c::crc32c_interposed;
pub use locked::LockedKey;
pub use malloc::{
    allocator_stats, keep_large_buffers, limit_malloc_arenas, release_free_memory, AllocatorStats,
};
pub use wipe::{wipe, WipedVec};
