//! Which object each of the volume's chunks became, by the chunk's extent: an incremental
//! export skips reading, decrypting and hashing the chunks it exported before.
//!
//! A chunk's fingerprint is BLAKE3 over its length and its extent's slices (position, length
//! and store address of each, oldest first): the store's addresses are keyed hashes of the
//! slices' contents, so equal fingerprints mean equal contents (the store's own dedup rests on
//! the same). The cache maps fingerprints to object names (or to "all zeros") and lives in the
//! export target as `extent-cache`, sealed under the chain's key and bound to the chain (an
//! older copy only loses entries; nothing in it can name a wrong object, since an object's name
//! is checked on every restore). Each export rewrites it with the chunks it met, so it follows
//! the volume rather than growing forever. Missing or unreadable, it is simply empty.

use std::collections::HashMap;

use sealvol_volume::schema::Extent;

use crate::chain::{put_durable, Target};
use crate::error::Result;

const FILE: &str = "extent-cache";

/// A chunk's fingerprint.
pub(crate) fn fingerprint(e: &Extent, len: usize) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&(len as u64).to_le_bytes());
    for s in &e.slices {
        h.update(&s.at.to_le_bytes());
        h.update(&s.len.to_le_bytes());
        h.update(&s.addr.0);
    }
    *h.finalize().as_bytes()
}

#[derive(Default)]
pub(crate) struct ExtentCache {
    old: HashMap<[u8; 32], Option<[u8; 32]>>,
    new: HashMap<[u8; 32], Option<[u8; 32]>>,
}

impl ExtentCache {
    pub(crate) fn load(target: &Target) -> ExtentCache {
        let Ok(sealed) = target.store.get(FILE) else {
            return ExtentCache::default();
        };
        let old = target.keys.open_cache(&sealed).and_then(|plain| {
            postcard::from_bytes::<Vec<([u8; 32], Option<[u8; 32]>)>>(&plain).ok()
        });
        match old {
            Some(v) => ExtentCache {
                old: v.into_iter().collect(),
                new: HashMap::new(),
            },
            None => {
                tracing::warn!(dir = %target.dir.display(), "the extent cache does not open; this export reads every chunk");
                ExtentCache::default()
            }
        }
    }

    /// The object of the chunk with fingerprint `fp` (`Some(None)`: all zeros), if known.
    pub(crate) fn get(&self, fp: &[u8; 32]) -> Option<Option<[u8; 32]>> {
        self.new.get(fp).or_else(|| self.old.get(fp)).copied()
    }

    /// Remember `fp` for the next export.
    pub(crate) fn keep(&mut self, fp: [u8; 32], addr: Option<[u8; 32]>) {
        self.new.insert(fp, addr);
    }

    /// Write the chunks this export met, for the next one.
    pub(crate) fn save(&self, target: &Target) -> Result<()> {
        let v: Vec<_> = self.new.iter().map(|(k, v)| (*k, *v)).collect();
        let plain = postcard::to_allocvec(&v)
            .map_err(|e| crate::ExportError::Refused(format!("encoding the extent cache: {e}")))?;
        put_durable(
            target.store.as_ref(),
            FILE,
            &target.keys.seal_cache(&plain)?,
        )
    }
}
