//! What can go wrong in a mount's lifecycle, each with what failed and what to do. The command
//! line and the plugin map these onto their own errors at their edges. Each message carries its
//! cause in full (the plugin hands messages to Docker as one string), so none is also chained
//! as a `source`, which would print it twice.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("reading the mount table {path}: {cause}")]
    MountTable {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "opening the mount log {path}: {cause}; check that its directory exists and is writable"
    )]
    Log {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("starting the mount process {exe}: {cause}; check that the sealvol binary is there and executable")]
    Spawn { exe: PathBuf, cause: std::io::Error },
    #[error("handing the key to the mount process: {0}")]
    Handover(std::io::Error),
    #[error("reading the secret from the parent process: {0}")]
    ReceiveSecret(std::io::Error),
    #[error("the secret from the parent process is longer than {0} bytes; the mount process takes it only from `sealvol mount` or `sealvol serve`")]
    SecretTooLong(usize),
    #[error("no valid secret arrived from the parent process; the mount process takes it only from `sealvol mount` or `sealvol serve`")]
    BadSecret,
    /// The mount process said `ERROR <message>`: its own words, which name the cause.
    #[error("{0}")]
    Reported(String),
    #[error("the mount process exited ({status}) without mounting; {hint}")]
    Exited { status: String, hint: String },
    #[error("the mount process did not report ready within {} s and was stopped; {hint}", .waited.as_secs())]
    Timeout { waited: Duration, hint: String },
    #[error("the mount process said {0:?} instead of READY or ERROR; is the sealvol binary the same version as this one?")]
    Protocol(String),
    #[error("writing the pid file {path}: {cause}")]
    PidFile {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("running fusermount3: {0}; install the fuse3 package")]
    Fusermount(std::io::Error),
    #[error("{} is busy: a process still uses files there; close them (`fuser -vm {}` lists them) and try again", .mountpoint.display(), .mountpoint.display())]
    Busy { mountpoint: PathBuf },
    #[error("fusermount3 {flag} {} failed: {stderr}", .mountpoint.display())]
    Unmount {
        flag: &'static str,
        mountpoint: PathBuf,
        stderr: String,
    },
    #[error("unmounted {}, but the mount process {pid} is still writing after {} s; it will finish on its own", .mountpoint.display(), .waited.as_secs())]
    StillWriting {
        mountpoint: PathBuf,
        pid: u32,
        waited: Duration,
    },
    #[error("starting the housekeeping thread {name}: {cause}")]
    Thread { name: String, cause: std::io::Error },
    #[error("creating a store in {}: {cause}; nothing was left behind, so fix the cause and run it again", .dir.display())]
    Create {
        dir: PathBuf,
        cause: sealvol_volume::FsError,
    },
    #[error(
        "creating a store in {} failed ({first}), and removing what it had made there failed too: {cause}; \
         remove {} by hand before trying again", .dir.display(), .leftover.display()
    )]
    Cleanup {
        dir: PathBuf,
        first: String,
        leftover: PathBuf,
        cause: std::io::Error,
    },
}
