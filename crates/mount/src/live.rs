//! Is a mount live: listed in the mount table as sealvol's, its process alive, and answering.

use std::path::Path;
use std::time::Duration;

use crate::{mountinfo, pidfile};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MountState {
    /// Listed, its process alive, and `statfs` answered within the bound.
    Live,
    /// Listed, but its process is gone or it does not answer: detach it (`-uz`).
    Dead,
    /// No sealvol mount there.
    Absent,
}

/// The state of the sealvol mount at `mountpoint` (canonical), served from `store`; `within`
/// bounds how long a hung mount may keep us waiting.
pub fn mount_state(mountpoint: &Path, store: &Path, within: Duration) -> MountState {
    match mountinfo::sealvol_at(mountpoint) {
        Ok(Some(_)) => {}
        Ok(None) => return MountState::Absent,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the mount table; taking the volume as not mounted");
            return MountState::Absent;
        }
    }
    let alive = pidfile::read_pid(store).is_some_and(process_alive);
    if alive && responsive(mountpoint, within) {
        MountState::Live
    } else {
        MountState::Dead
    }
}

/// Is process `pid` running (not gone, not a zombie)?
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// statfs(2) with a deadline: it always reaches the FUSE server (stat may be answered from the
/// kernel's attribute cache even after the server died), and a hung server must not hang us.
/// The thread asking stays blocked as long as the server hangs; detaching the mount ends it.
fn responsive(path: &Path, within: Duration) -> bool {
    let (tx, rx) = std::sync::mpsc::channel();
    let p = path.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("sealvol-statfs".into())
        .spawn(move || {
            let _ = tx.send(rustix::fs::statvfs(&p).is_ok());
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start a thread to probe the mount; taking it as unresponsive");
        return false;
    }
    rx.recv_timeout(within).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_reaped_child_is_not() {
        assert!(process_alive(std::process::id()));
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        child.wait().expect("wait");
        assert!(!process_alive(pid));
    }

    #[test]
    fn a_zombie_is_not_alive() {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        // Not reaped yet: a zombie once it exits. Bounded wait for it to get there.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while process_alive(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            !process_alive(pid),
            "exited child {pid} still counted as alive"
        );
        assert!(
            std::fs::metadata(format!("/proc/{pid}")).is_ok(),
            "zombie still listed"
        );
        child.wait().expect("wait");
    }

    #[test]
    fn a_plain_directory_is_absent() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            mount_state(dir.path(), dir.path(), Duration::from_secs(1)),
            MountState::Absent
        );
        assert!(responsive(dir.path(), Duration::from_secs(5)));
    }
}
