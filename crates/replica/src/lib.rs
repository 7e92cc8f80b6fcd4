//! sealvol's replication core (docs/sync.md): what a change is, how replicas of a volume merge
//! changes, and a deterministic simulator that shows they converge without losing anything.
//!
//! - Each member of a volume writes a chain of entries (dense sequence numbers, hash of the
//!   previous entry, a hybrid logical clock stamp), sealed under the volume's sync key.
//! - Every replica folds every operation in one total order (HLC, origin, sequence): an entry
//!   that arrives late undoes the operations after it, applies, and redoes them (Kleppmann et
//!   al.'s move operation, generalised to the whole state), so the state is a function of the
//!   set of operations, whatever order and however often they arrive.
//! - The operations are written so that concurrent changes merge: attributes per field, moves
//!   without cycles, both files of a name clash kept, both versions of concurrent writes kept
//!   whole, modify beating delete.
//!
//! It knows nothing of FUSE, HTTP or Docker, nor yet of the network (the transport is the next
//! layer), and is not yet what the single-host volume runs on: see docs/sync.md, "Status".

mod apply;
pub mod bench;
mod check;
pub mod error;
mod ids;
mod op;
mod replica;
pub mod sim;
mod state;

pub use apply::{conflict_name, Applied, Member, MAX_DEPTH};
pub use check::{CheckReport, DumpEntry};
pub use error::{Error, Result};
pub use ids::{Hlc, NodeId, NodeTag, OpId, ReplicaId};
pub use op::{ChunkRef, Extent, Kind, Op, Slice, Victim, MAX_SLICES};
pub use replica::{
    Arrivals, Changes, Config, Counters, Faults, Fork, Head, Hold, MemberKey, Received, Refusal,
    Replica, SealedEntry, Snapshot, SystemWallClock, VersionVector, WallClock,
};
pub use state::{InodeRec, NodeRec, ReplicaKeys};
