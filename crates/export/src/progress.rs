//! Progress of a long export, import or verify, and the summary at its end. The library only
//! reports; the command line draws a bar on a terminal or prints JSON lines.

use serde::Serialize;

/// What a run reports while it works. Calls come from the working thread.
pub trait Progress {
    /// Work starts: `total_bytes` of file data to go through (0 if unknown).
    fn start(&self, _what: &str, _total_bytes: u64) {}
    /// One more file (or other node) done, with `bytes` of its data.
    fn advance(&self, _path: &str, _bytes: u64) {}
    /// Something could not be read or restored (the run goes on).
    fn damaged(&self, _path: &str, _why: &str) {}
    /// Work is over.
    fn finish(&self) {}
}

/// Reports nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

/// Totals of a finished run.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Summary {
    /// Which export of the chain (native format).
    pub seq: u64,
    pub files: u64,
    pub dirs: u64,
    /// Symlinks, devices, fifos, sockets, and extra hard links.
    pub others: u64,
    /// File data gone through (plaintext).
    pub logical_bytes: u64,
    /// Bytes written to the target (objects, metadata, manifest; or the tar.age file).
    pub bytes_written: u64,
    /// Chunks written by this run, and chunks the target held already.
    pub new_chunks: u64,
    pub reused_chunks: u64,
    /// Chunks read from the volume (an incremental export skips those it met before).
    pub read_chunks: u64,
    pub seconds: f64,
    /// Damage found, each "PATH: why" (or the part of the export, where no path is known).
    pub damaged: Vec<String>,
}
