//! Unmount and wait for the mount process to write everything out and exit.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{pidfile, process_alive, MountError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnmountMode {
    /// `fusermount3 -u`: refused while the mount is busy.
    Clean,
    /// `fusermount3 -uz`: detach even if busy (for dead mounts).
    Lazy,
}

/// How often to look whether the mount process has exited (it is not our child to wait for).
const POLL: Duration = Duration::from_millis(20);

/// Unmount `mountpoint`, served from `store`, then wait up to `wait` for the mount process
/// named in the store's pid file to exit (it writes out buffered data and closes the store
/// first). [`MountError::StillWriting`] if it is still at it after `wait`: it will finish on its
/// own, and the mount is gone either way.
pub fn unmount_and_wait(
    mountpoint: &Path,
    store: &Path,
    mode: UnmountMode,
    wait: Duration,
) -> Result<(), MountError> {
    // Read first: the process removes its pid file on its way out.
    let pid = pidfile::read_pid(store);
    let flag = match mode {
        UnmountMode::Clean => "-u",
        UnmountMode::Lazy => "-uz",
    };
    let out = Command::new("fusermount3")
        .arg(flag)
        .arg(mountpoint)
        .output()
        .map_err(MountError::Fusermount)?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if stderr.contains("busy") {
            return Err(MountError::Busy {
                mountpoint: mountpoint.to_path_buf(),
            });
        }
        return Err(MountError::Unmount {
            flag,
            mountpoint: mountpoint.to_path_buf(),
            stderr,
        });
    }
    if let Some(pid) = pid {
        let deadline = Instant::now() + wait;
        while process_alive(pid) {
            if Instant::now() >= deadline {
                return Err(MountError::StillWriting {
                    mountpoint: mountpoint.to_path_buf(),
                    pid,
                    waited: wait,
                });
            }
            std::thread::sleep(POLL);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmounting_what_is_not_mounted_names_the_mount_point() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = unmount_and_wait(dir.path(), dir.path(), UnmountMode::Clean, Duration::ZERO)
            .expect_err("nothing is mounted there");
        let msg = e.to_string();
        match e {
            MountError::Unmount { flag, .. } => assert_eq!(flag, "-u"),
            // Without fuse3 installed the error says to install it.
            MountError::Fusermount(_) => assert!(msg.contains("install the fuse3 package")),
            other => panic!("unexpected error: {other}"),
        }
        assert!(
            msg.contains(&dir.path().display().to_string()) || msg.contains("fuse3"),
            "{msg}"
        );
    }
}
