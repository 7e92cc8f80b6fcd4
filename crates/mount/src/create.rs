//! Creating a store so that a failure leaves nothing behind, and a retry works.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sealvol_crypto::Secret;
use sealvol_volume::{CreateOptions, FsError, SystemClock, Volume};

use crate::MountError;

/// Create a store in `dir` (made if missing, with its parents) and close it, ready to mount.
/// On failure everything this call created is removed: the directories it made, or, in a
/// directory that existed, the entries that were not there before (never the others).
pub fn create_store(
    dir: &Path,
    secret: &Secret,
    opts: &CreateOptions,
) -> Result<Volume, MountError> {
    remove_on_failure(dir, || {
        let v = Volume::create(dir, secret, opts, Arc::new(SystemClock))?;
        v.close()?;
        Ok::<_, FsError>(v)
    })
    .map_err(|e| match e {
        Cleanup::Failed(cause) => MountError::Create {
            dir: dir.to_path_buf(),
            cause,
        },
        Cleanup::Incomplete {
            cause,
            leftover,
            source,
        } => MountError::Cleanup {
            dir: dir.to_path_buf(),
            first: cause.to_string(),
            leftover,
            cause: source,
        },
    })
}

/// Why [`remove_on_failure`] failed.
#[derive(Debug)]
pub enum Cleanup<E> {
    /// `make` failed, and what it created is gone.
    Failed(E),
    /// `make` failed, and removing `leftover` failed too.
    Incomplete {
        cause: E,
        leftover: PathBuf,
        source: std::io::Error,
    },
}

/// Run `make`, which creates things in `dir`; if it fails, remove what it created there.
pub fn remove_on_failure<T, E>(
    dir: &Path,
    make: impl FnOnce() -> Result<T, E>,
) -> Result<T, Cleanup<E>> {
    let before = Before::look(dir);
    match make() {
        Ok(v) => Ok(v),
        Err(cause) => match before.undo(dir) {
            Ok(()) => Err(Cleanup::Failed(cause)),
            Err((leftover, source)) => Err(Cleanup::Incomplete {
                cause,
                leftover,
                source,
            }),
        },
    }
}

/// What was there before.
enum Before {
    /// `dir` existed, with these entries.
    Entries(HashSet<OsString>),
    /// `dir` did not exist; this is the highest directory that creating it would make.
    Missing(PathBuf),
    /// It could not be listed: nothing will be removed.
    Unknown,
}

impl Before {
    fn look(dir: &Path) -> Before {
        match std::fs::read_dir(dir) {
            Ok(rd) => Before::Entries(rd.filter_map(|e| e.ok().map(|e| e.file_name())).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut top = dir.to_path_buf();
                while let Some(parent) = top.parent() {
                    if parent.as_os_str().is_empty() || parent.exists() {
                        break;
                    }
                    top = parent.to_path_buf();
                }
                Before::Missing(top)
            }
            Err(_) => Before::Unknown,
        }
    }

    fn undo(self, dir: &Path) -> Result<(), (PathBuf, std::io::Error)> {
        match self {
            Before::Missing(top) => match std::fs::remove_dir_all(&top) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err((top, e)),
                _ => Ok(()),
            },
            Before::Entries(had) => {
                let Ok(rd) = std::fs::read_dir(dir) else {
                    return Ok(());
                };
                for entry in rd.flatten() {
                    if had.contains(&entry.file_name()) {
                        continue;
                    }
                    let p = entry.path();
                    let removed = match entry.file_type() {
                        Ok(t) if t.is_dir() => std::fs::remove_dir_all(&p),
                        _ => std::fs::remove_file(&p),
                    };
                    if let Err(e) = removed {
                        return Err((p, e));
                    }
                }
                Ok(())
            }
            Before::Unknown => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail_after_making(dir: &Path) -> Result<(), Cleanup<&'static str>> {
        remove_on_failure(dir, || {
            std::fs::create_dir_all(dir.join("db/sub")).map_err(|_| "mkdir")?;
            std::fs::write(dir.join("keys.json"), b"{}").map_err(|_| "write")?;
            Err("the engine failed")
        })
    }

    #[test]
    fn a_failure_removes_the_directories_it_made() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("a/b/store");
        match fail_after_making(&dir) {
            Err(Cleanup::Failed("the engine failed")) => {}
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            !root.path().join("a").exists(),
            "made parents are removed too"
        );
        assert!(root.path().exists(), "what existed stays");
        // A retry starts from nothing.
        let made = remove_on_failure(&dir, || std::fs::create_dir_all(&dir));
        assert!(made.is_ok() && dir.is_dir());
    }

    #[test]
    fn a_failure_in_an_existing_directory_keeps_what_was_there() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("store");
        std::fs::create_dir_all(dir.join("mine")).expect("mkdir");
        std::fs::write(dir.join("notes.txt"), b"the user's").expect("write");
        assert!(matches!(fail_after_making(&dir), Err(Cleanup::Failed(_))));
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .expect("dir stays")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["mine", "notes.txt"]);
        assert_eq!(
            std::fs::read(dir.join("notes.txt")).expect("read"),
            b"the user's"
        );
    }

    #[test]
    fn success_keeps_everything() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("store");
        let r = remove_on_failure(&dir, || std::fs::create_dir(&dir).map(|()| 7));
        assert_eq!(r.ok(), Some(7));
        assert!(dir.is_dir());
    }

    #[test]
    fn an_existing_store_is_refused_and_left_alone() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("store");
        let secret = Secret::Passphrase(b"create test".to_vec().into());
        let opts = CreateOptions {
            kdf: sealvol_crypto::KdfParams {
                m_cost_kib: 8 << 10,
                t_cost: 1,
                p_cost: 1,
            },
            ..Default::default()
        };
        drop(create_store(&dir, &secret, &opts).expect("create"));
        let before: HashSet<OsString> = std::fs::read_dir(&dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        let Err(e) = create_store(&dir, &secret, &opts) else {
            panic!("a second create is refused");
        };
        assert!(
            e.to_string().contains("already holds a sealvol store"),
            "{e}"
        );
        let after: HashSet<OsString> = std::fs::read_dir(&dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(before, after);
        assert!(Volume::open(&dir, &secret, Arc::new(SystemClock)).is_ok());
    }
}
