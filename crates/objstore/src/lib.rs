//! Object storage behind one small synchronous trait: [`ObjectStore`], with two backends, a
//! local directory ([`LocalDir`]) and an S3-compatible bucket ([`S3Store`], configured by
//! [`S3Config`]).
//!
//! Keys are relative, `/`-separated names (`objects/ab/abcd…`, `exports/00000001.manifest`);
//! a store lives under a root (a directory, or `s3://bucket/prefix`). The trait's promises,
//! which every backend keeps:
//!
//! - [`put`](ObjectStore::put) is atomic: a reader sees the whole new object or none (or the
//!   old one). It is durable once [`sync`](ObjectStore::sync) returns (S3: when `put` returns).
//! - [`put_if_absent`](ObjectStore::put_if_absent) stores the object only if nothing is stored
//!   under its key, atomically with respect to other writers (a directory: a hard link, which
//!   fails on an existing name; S3: a conditional PUT with `If-None-Match: *`), and durably.
//! - [`list`](ObjectStore::list) returns every key under a prefix (a "directory" of keys),
//!   with sizes and modification times.
//!
//! This crate knows nothing of what the objects are; sealvol's export uses it for its native
//! chain, and multi-host sync can use it for whatever it stores.

mod error;
mod local;
mod s3;

pub use error::{Error, Result};
pub use local::LocalDir;
pub use s3::{S3Config, S3Location, S3Store};

/// An object's name, size and modification time, as [`ObjectStore::list`] and
/// [`ObjectStore::head`] report them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The key, relative to the store's root.
    pub key: String,
    pub size: u64,
    /// Unix seconds (0 if unknown).
    pub modified_unix: u64,
}

/// A new object written as a stream ([`ObjectStore::put_writer`]). Nothing is visible under its
/// key until [`finish`](ObjectWriter::finish) returns `Ok`; dropped unfinished (an error on the
/// way), the object is abandoned and nothing is stored.
pub trait ObjectWriter: std::io::Write + Send {
    /// Publish the object (atomically, as [`ObjectStore::put`]).
    fn finish(self: Box<Self>) -> Result<()>;
}

/// [`ObjectStore::put_writer`]'s fallback: the bytes gathered in memory, one `put` at the end.
struct BufferedWriter<'a, S: ObjectStore + ?Sized> {
    store: &'a S,
    key: String,
    buf: Vec<u8>,
}

impl<S: ObjectStore + ?Sized> std::io::Write for BufferedWriter<'_, S> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<S: ObjectStore + ?Sized> ObjectWriter for BufferedWriter<'_, S> {
    fn finish(self: Box<Self>) -> Result<()> {
        self.store.put(&self.key, &self.buf)?;
        self.store.sync()
    }
}

/// Reads an object front to back in ranged reads of [`ObjectReader::PIECE`] bytes, so a large
/// object (a tar.age export) is never held whole.
#[derive(Debug)]
pub struct ObjectReader {
    store: std::sync::Arc<dyn ObjectStore>,
    key: String,
    size: u64,
    next: u64,
    piece: Vec<u8>,
    at: usize,
}

impl ObjectReader {
    /// Bytes per ranged read.
    pub const PIECE: u64 = 8 << 20;

    /// A reader of the object under `key` ([`Error::NotFound`] if there is none).
    pub fn open(store: std::sync::Arc<dyn ObjectStore>, key: &str) -> Result<ObjectReader> {
        let Some(meta) = store.head(key)? else {
            return Err(Error::NotFound {
                store: store.describe(),
                key: key.to_string(),
            });
        };
        Ok(ObjectReader {
            store,
            key: key.to_string(),
            size: meta.size,
            next: 0,
            piece: Vec::new(),
            at: 0,
        })
    }
}

impl std::io::Read for ObjectReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.piece.len() {
            if self.next >= self.size {
                return Ok(0);
            }
            let end = (self.next + Self::PIECE).min(self.size);
            self.piece = self
                .store
                .get_range(&self.key, self.next..end)
                .map_err(std::io::Error::other)?;
            if self.piece.len() as u64 != end - self.next {
                return Err(std::io::Error::other(format!(
                    "{} {}: asked for bytes {}..{end}, got {}: the object changed while it was read",
                    self.store.describe(),
                    self.key,
                    self.next,
                    self.piece.len()
                )));
            }
            self.next = end;
            self.at = 0;
        }
        let n = out.len().min(self.piece.len() - self.at);
        out[..n].copy_from_slice(&self.piece[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// A store of objects under string keys. Synchronous; safe to share between threads.
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// The store's root, for messages: a directory, or `s3://bucket/prefix`.
    fn describe(&self) -> String;
    /// The object under `key`, whole ([`Error::NotFound`] if there is none).
    fn get(&self, key: &str) -> Result<Vec<u8>>;
    /// The object's size and time, or `None` if there is none.
    fn head(&self, key: &str) -> Result<Option<ObjectMeta>>;
    /// Store `bytes` under `key`, replacing what is there (atomic; durable after `sync`).
    fn put(&self, key: &str, bytes: &[u8]) -> Result<()>;
    /// Store `bytes` under `key` only if nothing is stored there: `true` if stored, `false`
    /// if the key was taken (by this or another writer). Durable when it returns `true`.
    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool>;
    /// Store the contents of the local file `path` under `key` (as `put`).
    fn put_file(&self, key: &str, path: &std::path::Path) -> Result<()> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            store: self.describe(),
            op: "reading",
            key: path.display().to_string(),
            source,
        })?;
        self.put(key, &bytes)
    }
    /// Bytes `range` of the object under `key` (fewer if it ends first). The default reads the
    /// whole object; backends override it with a ranged read.
    fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<Vec<u8>> {
        let all = self.get(key)?;
        let len = all.len() as u64;
        let (from, to) = (range.start.min(len) as usize, range.end.min(len) as usize);
        Ok(all[from..to.max(from)].to_vec())
    }
    /// A writer of a new object under `key`, for objects too large to hold in memory (an S3
    /// multipart upload). The default gathers the bytes and `put`s them at `finish`.
    fn put_writer(&self, key: &str) -> Result<Box<dyn ObjectWriter + '_>> {
        check_key(key).map_err(|why| Error::Config(format!("{}: {why}", self.describe())))?;
        Ok(Box::new(BufferedWriter {
            store: self,
            key: key.to_string(),
            buf: Vec::new(),
        }))
    }
    /// Every object whose key starts with `prefix/` (every object for an empty prefix),
    /// in no particular order.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;
    /// Remove the object under `key`; removing an absent one is not an error.
    fn delete(&self, key: &str) -> Result<()>;
    /// Make every `put` so far durable.
    fn sync(&self) -> Result<()> {
        Ok(())
    }
    /// The local directory this store keeps its objects in, if it is a [`LocalDir`].
    fn local_dir(&self) -> Option<&std::path::Path> {
        None
    }
}

/// Check a key: relative, `/`-separated, no empty, `.` or `..` part, no part starting with
/// `.` (a directory store keeps its temporary files under such names).
pub fn check_key(key: &str) -> std::result::Result<(), String> {
    if key.is_empty() {
        return Err("an empty key".into());
    }
    for part in key.split('/') {
        if part.is_empty() || part.starts_with('.') {
            return Err(format!(
                "key {key:?} has an empty part or a part starting with '.'"
            ));
        }
        if part.bytes().any(|b| b < 0x20 || b == 0x7f || b == b'\\') {
            return Err(format!("key {key:?} holds a control character or '\\'"));
        }
    }
    Ok(())
}
