//! sealvol's filesystem model: files, directories and their data as sealed records in an
//! [`Engine`](sealvol_store::Engine). It knows nothing of FUSE, HTTP or Docker; the FUSE crate
//! maps kernel requests onto [`Volume`]'s methods, and later layers (sync, export) read its
//! operation log.

mod budget;
mod cache;
pub mod check;
mod chunks;
pub mod clock;
mod compact;
mod data;
pub mod error;
mod filestate;
pub mod geometry;
mod holes;
mod namespace;
mod oplog;
mod purge;
mod record_cache;
mod records;
pub mod replay;
pub mod schema;
mod size;
mod txn;
mod volume;
mod writeout;
mod xattr;

pub use budget::{BadMemoryBudget, CacheOverBudget, MemoryBudget, MemorySplit};
pub use clock::{Clock, StepClock, SystemClock};
pub use error::{FsError, Result};
pub use geometry::{BadChunkSize, ChunkSize};
pub use namespace::{Caller, DirEntry, SetAttr, MAX_DIR_DEPTH, RENAME_EXCHANGE, RENAME_NOREPLACE};
pub use schema::{Inode, Kind, Ts, ROOT_INO};
pub use size::parse_size;
pub use volume::{
    volume_admin, CreateOptions, Stats, Volume, DEFAULT_BUFFER_BUDGET, DEFAULT_CACHE_SIZE,
    DEFAULT_LOG_KEEP, DEFAULT_WRITE_BUDGET,
};
pub use xattr::{XATTR_CREATE, XATTR_REPLACE, XATTR_TOTAL_MAX};
