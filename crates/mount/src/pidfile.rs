//! `STORE/mount.pid`: the mount process's id and mount point, one per line, written once the
//! filesystem is mounted and removed after the volume is closed. `umount` and the plugin read
//! it to wait for the process to finish writing. Nothing secret.

use std::path::{Path, PathBuf};

use crate::MountError;

pub const PID_FILE: &str = "mount.pid";

/// The pid file of a serving mount process; [`PidFile::remove`] when done.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Record this process as the one serving `store` at `mountpoint`.
    pub fn create(store: &Path, mountpoint: &Path) -> Result<PidFile, MountError> {
        let path = store.join(PID_FILE);
        std::fs::write(
            &path,
            format!("{}\n{}\n", std::process::id(), mountpoint.display()),
        )
        .map_err(|cause| MountError::PidFile {
            path: path.clone(),
            cause,
        })?;
        Ok(PidFile { path })
    }

    pub fn remove(self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the pid file");
        }
    }
}

/// The pid in `STORE/mount.pid`, if the file is there and holds one.
pub fn read_pid(store: &Path) -> Option<u32> {
    std::fs::read_to_string(store.join(PID_FILE))
        .ok()
        .and_then(|s| s.lines().next().and_then(|l| l.trim().parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_read_and_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read_pid(dir.path()), None);
        let f = PidFile::create(dir.path(), Path::new("/mnt/x")).expect("pid file");
        assert_eq!(read_pid(dir.path()), Some(std::process::id()));
        let text = std::fs::read_to_string(dir.path().join(PID_FILE)).expect("read");
        assert_eq!(text.lines().nth(1), Some("/mnt/x"));
        f.remove();
        assert_eq!(read_pid(dir.path()), None);
        std::fs::write(dir.path().join(PID_FILE), "not a pid\n").expect("write");
        assert_eq!(read_pid(dir.path()), None);
    }
}
