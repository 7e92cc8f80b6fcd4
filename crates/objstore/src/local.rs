//! A directory as an object store: one file per object, keys as relative paths.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{check_key, Error, ObjectMeta, ObjectStore, Result};

/// Objects as files under a directory. Temporary files are named `.NAME.PID.N.tmp` beside
/// their object, and left out of listings.
#[derive(Debug)]
pub struct LocalDir {
    root: PathBuf,
    tmp_seq: AtomicU64,
}

impl LocalDir {
    /// The directory `root` (it need not exist yet: the first `put` makes it).
    pub fn new(root: impl Into<PathBuf>) -> LocalDir {
        LocalDir {
            root: root.into(),
            tmp_seq: AtomicU64::new(0),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        check_key(key).map_err(|why| Error::Config(format!("{}: {why}", self.describe())))?;
        Ok(self.root.join(key))
    }

    fn io(&self, op: &'static str, key: &str) -> impl FnOnce(std::io::Error) -> Error {
        let (store, key) = (self.describe(), key.to_string());
        move |source| Error::Io {
            store,
            op,
            key,
            source,
        }
    }

    /// Write `bytes` to a new temporary file beside `dst` (its directory made if needed).
    fn write_tmp(&self, key: &str, dst: &Path, bytes: &[u8], durable: bool) -> Result<PathBuf> {
        let dir = dst.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).map_err(self.io("creating the directory of", key))?;
        let name = dst
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            self.tmp_seq.fetch_add(1, Ordering::Relaxed)
        ));
        let r = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(bytes)?;
            if durable {
                f.sync_all()?;
            }
            Ok(())
        })();
        if let Err(e) = r {
            let _ = std::fs::remove_file(&tmp);
            return Err(self.io("writing", key)(e));
        }
        Ok(tmp)
    }

    fn sync_dir(&self, key: &str, dst: &Path) -> Result<()> {
        let dir = dst.parent().unwrap_or(&self.root);
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(self.io("syncing the directory of", key))
    }
}

fn modified_unix(md: &std::fs::Metadata) -> u64 {
    md.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

impl ObjectStore for LocalDir {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        let p = self.path(key)?;
        std::fs::read(&p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::NotFound {
                    store: self.describe(),
                    key: key.to_string(),
                }
            } else {
                self.io("reading", key)(e)
            }
        })
    }

    fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        let p = self.path(key)?;
        match std::fs::metadata(&p) {
            Ok(md) if md.is_file() => Ok(Some(ObjectMeta {
                key: key.to_string(),
                size: md.len(),
                modified_unix: modified_unix(&md),
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io("reading", key)(e)),
        }
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let dst = self.path(key)?;
        let tmp = self.write_tmp(key, &dst, bytes, false)?;
        std::fs::rename(&tmp, &dst).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            self.io("writing", key)(e)
        })
    }

    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool> {
        let dst = self.path(key)?;
        let tmp = self.write_tmp(key, &dst, bytes, true)?;
        // link(2) fails on an existing name: of two writers, exactly one stores its object.
        let r = std::fs::hard_link(&tmp, &dst);
        let _ = std::fs::remove_file(&tmp);
        match r {
            Ok(()) => {
                self.sync_dir(key, &dst)?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(self.io("writing", key)(e)),
        }
    }

    fn put_file(&self, key: &str, path: &Path) -> Result<()> {
        let dst = self.path(key)?;
        if let Some(dir) = dst.parent() {
            std::fs::create_dir_all(dir).map_err(self.io("creating the directory of", key))?;
        }
        // A file already beside its object (a temporary in the same directory) is renamed;
        // any other is copied.
        if path.parent() == dst.parent() {
            return std::fs::rename(path, &dst).map_err(self.io("writing", key));
        }
        let tmp = dst.with_file_name(format!(
            ".{}.{}.{}.tmp",
            dst.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            std::process::id(),
            self.tmp_seq.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::copy(path, &tmp).map_err(self.io("writing", key))?;
        std::fs::rename(&tmp, &dst).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            self.io("writing", key)(e)
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let start = if prefix.is_empty() {
            self.root.clone()
        } else {
            self.path(prefix)?
        };
        let mut out = Vec::new();
        let mut stack = vec![(start, prefix.to_string())];
        while let Some((dir, rel)) = stack.pop() {
            let it = match std::fs::read_dir(&dir) {
                Ok(it) => it,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.io("listing", &rel)(e)),
            };
            for e in it {
                let e = e.map_err(self.io("listing", &rel))?;
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let key = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                let md = e.metadata().map_err(self.io("listing", &key))?;
                if md.is_dir() {
                    stack.push((e.path(), key));
                } else if md.is_file() {
                    out.push(ObjectMeta {
                        key,
                        size: md.len(),
                        modified_unix: modified_unix(&md),
                    });
                }
            }
        }
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<()> {
        let p = self.path(key)?;
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io("removing", key)(e)),
        }
    }

    fn sync(&self) -> Result<()> {
        let d = File::open(&self.root).map_err(self.io("syncing", ""))?;
        rustix::fs::syncfs(&d).map_err(|e| self.io("syncing", "")(e.into()))
    }

    fn local_dir(&self) -> Option<&Path> {
        Some(&self.root)
    }
}
