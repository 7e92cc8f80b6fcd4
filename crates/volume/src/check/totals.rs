//! The second half of `check`: reference counts and totals against the recount, the operation
//! log, and `--repair`.

use std::collections::HashSet;

use sealvol_crypto::{ChunkAddr, Domain};
use sealvol_store::{Cf, Durability, WriteBatch};

use super::{DamageKind, Repaired, Walk};
use crate::error::Result;
use crate::schema::*;
use crate::volume::Volume;

impl Volume {
    /// Every stored chunk verifies; every reference count opens and equals the recount.
    pub(super) fn scan_chunks_and_refs(&self, w: &mut Walk) -> Result<()> {
        let mut stored = Vec::new();
        self.engine.for_each(Cf::Chunks, b"", &mut |k, v| {
            stored.push((k.to_vec(), v.len() as u64));
            Ok(())
        })?;
        for (k, len) in stored {
            w.report.chunks += 1;
            let Ok(addr) = <[u8; 32]>::try_from(k.as_slice()).map(ChunkAddr) else {
                w.damage(
                    "<chunks>",
                    DamageKind::Unreadable,
                    "a chunk key is not 32 bytes",
                );
                continue;
            };
            if w.uses.contains_key(&addr) {
                continue;
            }
            w.report.reclaimable_chunks += 1;
            w.report.reclaimable_bytes += len;
            if let Err((kind, detail)) = self.verify_chunk(&addr, None) {
                w.damage("<unused chunk>", kind, format!("{addr}: {detail}"));
            }
        }
        let mut refs = Vec::new();
        self.engine.for_each(Cf::Refs, b"", &mut |k, v| {
            refs.push((k.to_vec(), v.to_vec()));
            Ok(())
        })?;
        let mut counted = HashSet::new();
        for (k, v) in refs {
            w.report.refs += 1;
            let Ok(addr) = <[u8; 32]>::try_from(k.as_slice()).map(ChunkAddr) else {
                w.damage(
                    "<refs>",
                    DamageKind::Unreadable,
                    "a reference count key is not 32 bytes",
                );
                continue;
            };
            counted.insert(addr);
            let user = w.uses.get(&addr).map(|u| u.2.clone());
            let path = user.clone().unwrap_or_else(|| "<unused chunk>".into());
            match self.open_meta::<RefCount>(Domain::RefCount, &k, &v, 0) {
                Ok(rc) => {
                    let want = w.uses.get(&addr).map(|u| u.0).unwrap_or(0);
                    if rc.count != want && !(want == 0 && user.is_none()) {
                        w.damage(
                            path,
                            DamageKind::RefCount,
                            format!("chunk {addr}: reference count {} but {want} uses", rc.count),
                        );
                    }
                }
                Err(e) => w.damage(
                    path,
                    DamageKind::Unreadable,
                    format!("count of {addr}: {e}"),
                ),
            }
        }
        let missing: Vec<(ChunkAddr, String)> = w
            .uses
            .iter()
            .filter(|(a, _)| !counted.contains(*a))
            .map(|(a, u)| (*a, u.2.clone()))
            .collect();
        for (addr, path) in missing {
            w.damage(
                path,
                DamageKind::RefCount,
                format!("chunk {addr} has no reference count"),
            );
        }
        Ok(())
    }

    /// The recount of what [`Counters`] keeps, from the walk.
    fn recount(&self, w: &Walk) -> Result<Counters> {
        let mut c = self.commit.lock().counters.clone();
        (c.files, c.dirs, c.others, c.logical_bytes) = (0, 0, 0, 0);
        for (_, i) in w.inodes.values() {
            match i.kind {
                Kind::File => {
                    c.files += 1;
                    c.logical_bytes += i.size;
                }
                Kind::Dir => c.dirs += 1,
                _ => c.others += 1,
            }
        }
        (
            c.chunks,
            c.chunk_plain_bytes,
            c.chunk_stored_bytes,
            c.referenced_bytes,
        ) = (0, 0, 0, 0);
        for (addr, (n, plain_len, _)) in &w.uses {
            if let Some(sealed) = self.engine.get(Cf::Chunks, &addr.0)? {
                c.chunks += 1;
                c.chunk_plain_bytes += *plain_len as u64;
                c.chunk_stored_bytes += sealed.len() as u64;
            }
            c.referenced_bytes += n * *plain_len as u64;
        }
        Ok(c)
    }

    pub(super) fn check_totals(&self, w: &mut Walk) -> Result<()> {
        let have = self.commit.lock().counters.clone();
        let want = self.recount(w)?;
        let pairs = [
            ("files", have.files, want.files),
            ("directories", have.dirs, want.dirs),
            ("other inodes", have.others, want.others),
            ("logical bytes", have.logical_bytes, want.logical_bytes),
            ("chunks", have.chunks, want.chunks),
            (
                "chunk plaintext bytes",
                have.chunk_plain_bytes,
                want.chunk_plain_bytes,
            ),
            (
                "chunk stored bytes",
                have.chunk_stored_bytes,
                want.chunk_stored_bytes,
            ),
            (
                "referenced bytes",
                have.referenced_bytes,
                want.referenced_bytes,
            ),
        ];
        for (what, h, x) in pairs {
            // Reclaimable chunks are counted as stored until reclaimed.
            let reclaimable = matches!(
                what,
                "chunks" | "chunk plaintext bytes" | "chunk stored bytes"
            ) && w.report.reclaimable_chunks > 0
                && h >= x;
            if h != x && !reclaimable {
                w.damage(
                    "<counters>",
                    DamageKind::Totals,
                    format!("{what}: {h} recorded, {x} counted"),
                );
            }
        }
        Ok(())
    }

    /// The operation log opens and decodes entry by entry, each matching its key.
    pub(super) fn check_log(&self, w: &mut Walk) -> Result<()> {
        let mut bad = Vec::new();
        let mut n = 0u64;
        self.engine.for_each(Cf::Log, b"", &mut |k, v| {
            n += 1;
            let res = match self
                .keys
                .meta_seal
                .open(Domain::LogEntry, &self.binding(&[k]), v)
            {
                Err(_) => Err("an entry fails authentication".to_string()),
                Ok(plain) => decode_log_entry(k, &plain).map(|_| ()),
            };
            if let Err(e) = res {
                bad.push(e);
            }
            Ok(())
        })?;
        w.report.log_entries = n;
        for e in bad {
            w.damage("<operation log>", DamageKind::Log, e);
        }
        Ok(())
    }

    pub(super) fn repair(&self, w: &Walk) -> Result<Repaired> {
        let mut out = Repaired::default();
        let mut b = WriteBatch::new();
        let mut gone = Vec::new();
        self.engine.for_each(Cf::Chunks, b"", &mut |k, _| {
            if let Ok(a) = <[u8; 32]>::try_from(k) {
                if !w.uses.contains_key(&ChunkAddr(a)) {
                    gone.push(a);
                }
            }
            Ok(())
        })?;
        for a in &gone {
            b.delete(Cf::Chunks, a.to_vec());
            b.delete(Cf::Refs, a.to_vec());
            out.chunks_deleted += 1;
        }
        for (addr, (n, plain_len, _)) in &w.uses {
            let Some(sealed) = self.engine.get(Cf::Chunks, &addr.0)? else {
                continue; // missing data is for a person to decide; nothing to count
            };
            let rc = RefCount {
                count: *n,
                plain_len: *plain_len,
                stored_len: sealed.len() as u32,
            };
            let (k, v) = self.seal_record(&crate::records::RefId(addr), &rc)?;
            b.put(Cf::Refs, k, v);
            out.refcounts_rewritten += 1;
        }
        let want = self.recount(w)?;
        let mut commit = self.commit.lock();
        b.put(
            Cf::Meta,
            META_COUNTERS.to_vec(),
            self.seal_meta(Domain::Counters, META_COUNTERS, &want)?,
        );
        self.engine.write(b, Durability::Disk)?;
        commit.counters = want;
        out.totals_rewritten = true;
        Ok(out)
    }

    /// Read a stored chunk, authenticate, decrypt and re-hash it against its address; with
    /// `len`, its plaintext must be that long. (Unlike the read path, which authenticates only:
    /// `check` also finds a chunk sealed with a valid tag over other bytes than its address's.)
    pub(super) fn verify_chunk(
        &self,
        addr: &ChunkAddr,
        len: Option<u32>,
    ) -> std::result::Result<(), (DamageKind, String)> {
        let sealed = match self.engine.get(Cf::Chunks, &addr.0) {
            Ok(Some(s)) => s,
            Ok(None) => return Err((DamageKind::MissingChunk, "chunk is missing".into())),
            Err(e) => return Err((DamageKind::BadChunk, e.to_string())),
        };
        let plain = self
            .open_chunk(addr, &sealed)
            .map_err(|e| (DamageKind::BadChunk, e.to_string()))?;
        match len {
            Some(l) if plain.len() != l as usize => Err((
                DamageKind::BadChunk,
                format!("holds {} bytes, the extent says {l}", plain.len()),
            )),
            _ => Ok(()),
        }
    }
}
