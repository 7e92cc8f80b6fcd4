#![allow(dead_code)]
//! Helpers for end-to-end tests: a real store, a real FUSE mount through the real binary.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sealvol")
}

pub fn sealvol(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .output()
        .expect("run sealvol")
}

pub fn sh(script: &str) -> Output {
    Command::new("bash")
        .arg("-c")
        .arg(script)
        .output()
        .expect("run bash")
}

pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "command failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A new age identity in `path` (age-keygen, package age): its public key, the recipient.
pub fn age_identity(path: &Path) -> String {
    let keygen = Command::new("age-keygen")
        .arg("-o")
        .arg(path)
        .output()
        .expect("age-keygen (package age)");
    assert!(keygen.status.success());
    String::from_utf8_lossy(&keygen.stderr)
        .trim()
        .trim_start_matches("Public key: ")
        .to_string()
}

/// A store with a key file, and a mount point; unmounted on drop.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub store: PathBuf,
    pub key: PathBuf,
    pub mnt: PathBuf,
}

impl Fixture {
    pub fn new() -> Fixture {
        Self::with_chunk("64K")
    }

    pub fn with_chunk(chunk: &str) -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("sealvol-e2e")
            .tempdir_in("/var/tmp")
            .unwrap();
        let store = dir.path().join("store");
        let key = dir.path().join("key");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let bytes: Vec<u8> = (0..32u8)
            .map(|i| i.wrapping_mul(37).wrapping_add(11))
            .collect();
        std::fs::write(&key, bytes).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        ok(&sealvol(&[
            "init",
            "--store",
            store.to_str().unwrap(),
            "--keyfile",
            key.to_str().unwrap(),
            "--chunk-size",
            chunk,
        ]));
        Fixture {
            dir,
            store,
            key,
            mnt,
        }
    }

    pub fn s(p: &Path) -> &str {
        p.to_str().unwrap()
    }

    pub fn mount(&self) {
        ok(&self.try_mount());
    }

    pub fn try_mount(&self) -> Output {
        sealvol(&[
            "mount",
            "--store",
            Self::s(&self.store),
            "--keyfile",
            Self::s(&self.key),
            "--log-file",
            Self::s(&self.dir.path().join("mount.log")),
            Self::s(&self.mnt),
        ])
    }

    pub fn umount(&self) {
        ok(&sealvol(&["umount", Self::s(&self.mnt)]));
    }

    pub fn check(&self) -> Output {
        self.keyed("check", &[])
    }

    /// `sealvol CMD --store STORE --keyfile KEY EXTRA...` on this fixture's store.
    pub fn keyed(&self, cmd: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            cmd,
            "--store",
            Self::s(&self.store),
            "--keyfile",
            Self::s(&self.key),
        ];
        args.extend_from_slice(extra);
        sealvol(&args)
    }

    pub fn m(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    pub fn is_mounted(&self) -> bool {
        sealvol_mount::mountinfo::entry_at(&self.mnt)
            .unwrap()
            .is_some()
    }

    /// The mount process's pid, from the store's pid file.
    pub fn mount_pid(&self) -> u32 {
        sealvol_mount::pidfile::read_pid(&self.store).expect("a pid file while mounted")
    }

    /// Detach the mount even if busy or dead (`fusermount3 -uz`), and wait for its process.
    pub fn detach(&self) {
        sealvol_mount::unmount_and_wait(
            &self.mnt,
            &self.store,
            sealvol_mount::UnmountMode::Lazy,
            std::time::Duration::from_secs(30),
        )
        .unwrap();
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if self.is_mounted() {
            let _ = sealvol_mount::unmount_and_wait(
                &self.mnt,
                &self.store,
                sealvol_mount::UnmountMode::Lazy,
                std::time::Duration::from_secs(10),
            );
        }
    }
}
