//! A sealvol mount's lifecycle, in one place for the `sealvol` command line and the Docker
//! plugin server.
//!
//! - [`MountCommand`]: start `sealvol mount --foreground --secret-stdin ...` with typed options,
//!   hand it the secret over a pipe (never its command line), and wait, bounded, for its `READY`
//!   or `ERROR` line ([`handshake`], whose other half the mount process uses).
//! - [`pidfile`]: `STORE/mount.pid`, written by the mount process while it serves.
//! - [`mountinfo`]: the kernel's mount table (`/proc/self/mountinfo`), escapes decoded.
//! - [`mount_state`]: is a mount live (listed, its process alive, and answering `statfs` within
//!   a bound), dead, or absent.
//! - [`unmount_and_wait`]: `fusermount3 -u` (or `-uz`), then wait, bounded, for the mount
//!   process to write everything out and exit.
//! - [`Housekeeping`]: a mount's background work (purging forgotten files, publishing stats,
//!   giving memory back under memory pressure and when idle ([`memory`]), trimming the log and
//!   reclaiming space), stopped and joined before the volume is closed.
//! - [`create_store`]: create a store so that a failure leaves nothing behind.
//!
//! It calls `sealvol-volume` (the housekeeping tasks, store creation) and `sealvol-crypto`
//! (secret framing), never the plugin or the command line.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod create;
mod error;
pub mod handshake;
mod housekeeping;
mod live;
pub mod memory;
pub mod mountinfo;
pub mod pidfile;
mod spawn;
mod unmount;

pub use create::{create_store, remove_on_failure, Cleanup};
pub use error::MountError;
pub use housekeeping::{publish_stats, Housekeeping, HousekeepingConfig};
pub use live::{mount_state, process_alive, MountState};
pub use spawn::{receive_secret, MountCommand, MountProcess};
pub use unmount::{unmount_and_wait, UnmountMode};
