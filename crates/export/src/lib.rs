//! Encrypted backup export and restore of a sealvol volume.
//!
//! Two formats:
//! - **native** ([`native`], [`restore`]): a directory holding a chain of exports of one
//!   volume. Deduplicated and incremental (an export writes only the chunks the directory does
//!   not hold yet, plus its metadata), encrypted under a chain data key that the volume's key
//!   opens, and optionally a backup passphrase or an age recipient too, each export with an
//!   authenticated manifest naming its parent.
//! - **tar.age** ([`tar_age`]): a POSIX (pax) tar of the files, encrypted with age, restorable
//!   with `age -d | tar -x` and nothing else.
//!
//! Both read the volume through [`sealvol_volume::Volume`]'s public calls only (readdir,
//! getattr, read, readlink), so they see what a mount would show. A consistent point in time is
//! the caller's: it opens the store exclusively, or opens a snapshot copy of a live store
//! (`sealvol_store::snapshot_copy`).
//!
//! ## The native layout (format 2)
//!
//! ```text
//! TARGET/
//!   sealvol-export.json   clear: {format, version, chain id, volume id, backup kind}
//!   chain-keys.json       clear key header of the chain's data key K (sealvol-crypto's
//!                         KeyHeader: volume id = chain id, slots wrapping K): a key-file slot
//!                         whose secret derives from the volume's master key (Purpose::
//!                         ExportSlot), plus a passphrase slot (--backup-passphrase-file) or a
//!                         key-file slot whose random secret is in backup-key.age (--recipient)
//!   volume-keys.json      copy of the volume's keys.json (only without a backup key), so
//!                         `import` opens K with the volume's own passphrase or key file
//!   backup-key.age        age-encrypted 32-byte slot secret (only with --recipient)
//!   lock                  flock'd while an export writes
//!   objects/ab/abcd…      one file per distinct chunk of file data, named by keyed BLAKE3 of
//!                         its plaintext under K's address subkey (Purpose::ExportAddress):
//!                         seal(ExportChunk, binding = chain id ‖ name,
//!                              len u32 ‖ plaintext ‖ zeros up to the Padmé class of len)
//!   exports/00000001.meta       entries, each framed: len u32 LE ‖
//!                               seal(ExportEntry, binding = chain id ‖ seq ‖ index, Entry):
//!                               the whole tree, or (a delta, manifest `base` = seq - 1) the
//!                               entries that changed (a large file's as its changed chunks
//!                               only, `partial`) and a `Gone` per path removed, in tree
//!                               order; a whole listing at least every 16 exports
//!   exports/00000001.manifest   seal(ExportManifest, binding = chain id ‖ seq, Manifest):
//!                               parent = BLAKE3 of the previous manifest file, the meta
//!                               file's length and BLAKE3, entry count, the whole tree's
//!                               entry count, base, totals
//! ```
//!
//! Sealing is sealvol-crypto's XChaCha20-Poly1305 under `K.seal_key(Purpose::Export)`;
//! encodings are postcard. An export writes its objects, then its meta file, syncs the target's
//! filesystem, and publishes its manifest last (temp file, rename, fsync): an interrupted export
//! leaves the chain as it was, plus objects the next export reuses.
//!
//! The target is read and written through `sealvol_objstore::ObjectStore`: a directory (as
//! above) or an S3 bucket (`s3://bucket/prefix`, the same keys under the prefix). A bucket has
//! no lock: its manifests are published with a conditional write (`If-None-Match: *`), so of
//! two exporters racing for the same number the second is refused, and its metadata is named
//! `exports/0000000N.HASH16.meta` (by its hash) so that the loser never overwrites the
//! winner's. See [`native::export_to`].

pub mod archive;
mod cache;
pub mod chain;
pub mod error;
pub mod format;
pub mod native;
pub mod progress;
pub mod restore;
pub mod tar_age;
mod walk;

pub use error::{ExportError, Result};
pub use progress::{NoProgress, Progress, Summary};

/// How many threads read, seal and store (export) or read, open and write (import) chunks:
/// one more than the cores for a local target, where they work the CPU and the disk; 16 for a
/// remote one, where each mostly waits for its request's round trip.
pub(crate) fn workers(remote: bool) -> usize {
    if remote {
        return 16;
    }
    std::thread::available_parallelism()
        .map(|n| n.get() + 1)
        .unwrap_or(3)
        .clamp(2, 8)
}

/// How many threads restore file contents. An import reads one object file per chunk, mostly
/// cold: its workers wait on the disk's latency as much as they work, so a local import runs
/// four per core (3 workers on 2 cores imported the benchmark's 1.1 GB in a median 3.88 s, 6 in
/// 3.28 s, 12 in 3.24 s); a remote one 16, as an export.
pub(crate) fn import_workers(remote: bool) -> usize {
    if remote {
        return 16;
    }
    std::thread::available_parallelism()
        .map(|n| n.get() * 4)
        .unwrap_or(8)
        .clamp(4, 16)
}

/// A mutex's guard; a poisoned one (a worker panicked) is taken as it is: what it guards
/// (sets and lists the workers add to) stays consistent item by item.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
