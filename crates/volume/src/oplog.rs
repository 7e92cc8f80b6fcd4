//! The operation log: one sealed entry per committed change, keyed by (hybrid logical clock,
//! origin host), written in the same batch as the change. Entries are encoded and sealed here
//! only ([`Volume::put_log_entry`]), read back here only ([`Volume::log_entries`]), and trimmed
//! here ([`Volume::trim_log`]).

use sealvol_crypto::Domain;
use sealvol_store::{Cf, Durability, WriteBatch};

use crate::error::Result;
use crate::schema::*;
use crate::volume::Volume;

impl Volume {
    /// How many operation log entries [`Volume::close`] and the mount's housekeeping keep.
    pub fn log_keep(&self) -> u64 {
        self.log_keep.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn set_log_keep(&self, n: u64) {
        self.log_keep.store(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// Delete the oldest operation log entries beyond the newest `keep`, once the log has grown
    /// an eighth past that. What they did is in the tables (inodes, entries, extents), which
    /// are the snapshot a replica that has not seen them would need; the log only replays
    /// changes since. Returns how many entries were deleted.
    pub fn trim_log(&self, keep: u64) -> Result<u64> {
        let known = self.commit.lock().log_len;
        let len = match known {
            Some(n) => n,
            None => {
                let mut n = 0u64;
                self.engine.for_each(Cf::Log, b"", &mut |_, _| {
                    n += 1;
                    Ok(())
                })?;
                // (Entries committed during the count may be missed: a few, at most.)
                self.commit.lock().log_len = Some(n);
                n
            }
        };
        if len <= keep + keep / 8 {
            return Ok(0);
        }
        let mut left = len - keep;
        let mut deleted = 0;
        let mut start = Vec::new();
        while left > 0 {
            let page = self
                .engine
                .scan(Cf::Log, b"", &start, left.min(4096) as usize)?;
            let Some((last, _)) = page.last() else { break };
            start = last.clone();
            start.push(0);
            let mut b = WriteBatch::new();
            for (k, _) in &page {
                b.delete(Cf::Log, k.clone());
            }
            self.engine.write(b, Durability::Process)?;
            let n = page.len() as u64;
            let mut c = self.commit.lock();
            c.log_len = c.log_len.map(|l| l.saturating_sub(n));
            drop(c);
            left = left.saturating_sub(n);
            deleted += n;
        }
        tracing::info!(deleted, kept = keep, "trimmed the operation log");
        Ok(deleted)
    }

    /// Every log entry, in log order.
    pub fn log_entries(&self) -> Result<Vec<LogEntry>> {
        let mut out = Vec::new();
        self.engine.for_each(Cf::Log, b"", &mut |k, v| {
            let b = self.binding(&[k]);
            let plain = self
                .keys
                .meta_seal
                .open(Domain::LogEntry, &b, v)
                .map_err(|e| sealvol_store::StoreError::Corruption(format!("log entry: {e}")))?;
            let e = decode_log_entry(k, &plain)
                .map_err(|e| sealvol_store::StoreError::Corruption(format!("log entry: {e}")))?;
            out.push(e);
            Ok(())
        })?;
        Ok(out)
    }

    /// Put `entry` into `batch`, sealed under its key: the one place log entries are encoded.
    pub(crate) fn put_log_entry(&self, batch: &mut WriteBatch, entry: &LogEntry) -> Result<()> {
        let key = log_key(entry.hlc, entry.origin);
        let sealed = self.seal_meta(Domain::LogEntry, &key, entry)?;
        batch.put(Cf::Log, key.to_vec(), sealed);
        Ok(())
    }
}
