//! Writing a native export: the volume's tree as entries, its file data as chunk objects the
//! target does not hold yet, and a manifest naming the export before it.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use sealvol_objstore::{LocalDir, ObjectStore};

use sealvol_crypto::{KdfParams, KeyHeader, MasterKey};
use sealvol_volume::{Inode, Kind, Volume};

use crate::cache;
use crate::chain::{
    manifest_name, meta_name, object_key, remote_meta_key, ExportKey, Target, EXPORTS,
};
use crate::error::{io, ExportError, Result};
use crate::format::{ChunkRef, Entry, EntryKind, Manifest, FORMAT_VERSION};
use crate::progress::{Progress, Summary};
use crate::walk::{walk, Node};

pub struct ExportOptions<'a> {
    pub key: ExportKey<'a>,
    /// Argon2id cost of a backup passphrase's slot.
    pub kdf: KdfParams,
    /// Objects held elsewhere (earlier archives of the chain, see [`crate::archive`]): not
    /// written, as if the target held them.
    pub held: HashSet<[u8; 32]>,
}

fn kind(k: Kind) -> EntryKind {
    match k {
        Kind::File => EntryKind::File,
        Kind::Dir => EntryKind::Dir,
        Kind::Symlink => EntryKind::Symlink,
        Kind::Fifo => EntryKind::Fifo,
        Kind::Socket => EntryKind::Socket,
        Kind::CharDev => EntryKind::CharDev,
        Kind::BlockDev => EntryKind::BlockDev,
    }
}

/// An entry for `node` (its chunks not yet filled in).
pub(crate) fn entry_of(node: &Node) -> Entry {
    let i: &Inode = &node.inode;
    Entry {
        path: node.path.clone(),
        ino: i.ino,
        kind: if node.hardlink {
            EntryKind::HardLink
        } else {
            kind(i.kind)
        },
        perm: i.perm,
        uid: i.uid,
        gid: i.gid,
        rdev: i.rdev,
        size: i.size,
        atime: (i.atime.secs, i.atime.nanos),
        mtime: (i.mtime.secs, i.mtime.nanos),
        ctime: (i.ctime.secs, i.ctime.nanos),
        target: i.target.clone(),
        xattrs: i.xattrs.clone(),
        chunks: Vec::new(),
    }
}

/// The sealed size of an object of `len` plaintext bytes (objects are length-prefixed and
/// padded to the length's Padmé class).
fn sealed_object_len(len: usize) -> u64 {
    (sealvol_crypto::SEALED_OVERHEAD + 4 + sealvol_crypto::padded_len(len)) as u64
}

fn now_unix() -> u64 {
    #[allow(clippy::disallowed_methods)]
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Export `v` (a consistent view: the caller holds the store, or a snapshot of it) into the
/// chain in `dir`, starting one if `dir` is empty or absent. `volume_header` and
/// `volume_master` are the volume's key header and master key (they open the chain's key).
pub fn export(
    v: &Volume,
    volume_header: &KeyHeader,
    volume_master: &MasterKey,
    dir: &Path,
    opts: &ExportOptions<'_>,
    progress: &dyn Progress,
) -> Result<Summary> {
    export_to(
        v,
        volume_header,
        volume_master,
        Arc::new(LocalDir::new(dir)),
        opts,
        progress,
    )
}

/// A local temporary file, removed on drop unless it was moved away.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// [`export`] into any object store: a directory, or a bucket. On a bucket, the objects the
/// target holds are listed once; the metadata is written to a local temporary file, then
/// stored; the manifest is published last with a conditional write, so that of two exporters
/// racing for the same number one wins and the other is refused, the chain as the winner left
/// it.
pub fn export_to(
    v: &Volume,
    volume_header: &KeyHeader,
    volume_master: &MasterKey,
    store: Arc<dyn ObjectStore>,
    opts: &ExportOptions<'_>,
    progress: &dyn Progress,
) -> Result<Summary> {
    let started = Instant::now();
    let (mut target, _lock) =
        Target::open_for_export(store, volume_header, volume_master, &opts.key, opts.kdf)?;
    let dir = &target.dir.clone();
    let local = target.store.local_dir().map(Path::to_path_buf);
    let chain = target.chain()?;
    if !chain.problems.is_empty() {
        return Err(ExportError::Refused(format!(
            "the exports in {} do not form an intact chain ({}); `sealvol verify` says more. Export into a new directory",
            dir.display(),
            chain.problems.join("; ")
        )));
    }
    let parent = chain.manifests.last();
    let seq = parent.map_or(1, |(m, _)| m.seq + 1);
    let stats = v.stats()?;
    progress.start("export", stats.logical_bytes);

    target.load_present()?;
    // The metadata is written beside its final name in a directory, to a local temporary file
    // for another store.
    let tmp_meta = match &local {
        Some(d) => d.join(EXPORTS).join(format!(".{}.tmp", meta_name(seq))),
        None => {
            let mut r = [0u8; 8];
            sealvol_crypto::random_bytes(&mut r)?;
            std::env::temp_dir().join(format!(".sealvol-export-{}.meta", hex::encode(r)))
        }
    };
    let tmp_guard = TempFile(tmp_meta.clone());
    let f = File::create(&tmp_meta).map_err(io(&tmp_meta))?;
    let mut meta = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, f),
        hash: blake3::Hasher::new(),
        len: 0,
    };
    let mut sum = Summary {
        seq,
        ..Summary::default()
    };
    let cs = v.chunk_size().get();
    let mut this_export: HashSet<[u8; 32]> = HashSet::new();
    let mut extent_cache = cache::ExtentCache::load(&target);
    let mut entries = 0u64;
    walk(v, &mut |node| {
        let mut e = entry_of(&node);
        match e.kind {
            EntryKind::Dir => sum.dirs += 1,
            EntryKind::File => sum.files += 1,
            _ => sum.others += 1,
        }
        if e.kind == EntryKind::File {
            let (ino, shown, size) = (e.ino, e.display_path(), e.size);
            let mut chunks = Vec::new();
            // Chunks whose extent an earlier export met are not read again (see `cache`);
            // holes are not read either. The others are read (and decrypted) from the volume
            // on a helper thread while this one hashes, seals and writes the previous ones.
            let extents: std::collections::HashMap<u64, _> = v
                .file_extents(ino)
                .map_err(|err| {
                    ExportError::Refused(format!(
                        "reading {shown}: {err} (`sealvol check` names the damage)"
                    ))
                })?
                .into_iter()
                .collect();
            let holes = &node.inode.holes;
            let mut to_read: Vec<(u64, Option<[u8; 32]>)> = Vec::new();
            for index in 0..size.div_ceil(cs as u64) {
                let len = (size - index * cs as u64).min(cs as u64) as usize;
                let Some(ext) = extents.get(&index) else {
                    if holes.iter().any(|(a, b)| *a <= index && index < *b) {
                        sum.logical_bytes += len as u64;
                    } else {
                        // Missing and not a hole: the read names the damage.
                        to_read.push((index, None));
                    }
                    continue;
                };
                let fp = cache::fingerprint(ext, len);
                match extent_cache.get(&fp) {
                    Some(None) => {
                        extent_cache.keep(fp, None);
                        sum.logical_bytes += len as u64;
                    }
                    Some(Some(addr))
                        if this_export.contains(&addr)
                            || opts.held.contains(&addr)
                            || target.holds(&addr, sealed_object_len(len)) =>
                    {
                        extent_cache.keep(fp, Some(addr));
                        sum.logical_bytes += len as u64;
                        chunks.push(ChunkRef {
                            index,
                            len: len as u32,
                            addr,
                        });
                        if this_export.insert(addr) {
                            sum.reused_chunks += 1;
                        }
                    }
                    _ => to_read.push((index, Some(fp))),
                }
            }
            let offsets: Vec<u64> = to_read.iter().map(|(i, _)| i * cs as u64).collect();
            let fps: std::collections::HashMap<u64, [u8; 32]> = to_read
                .iter()
                .filter_map(|(i, fp)| fp.map(|f| (*i, f)))
                .collect();
            crate::restore::prefetched(
                &offsets,
                |off| v.read(ino, *off, cs),
                |&off, data| {
                    let data = data.map_err(|err| {
                        ExportError::Refused(format!(
                            "reading {shown} at byte {off}: {err} (`sealvol check` names the damage)"
                        ))
                    })?;
                    if data.is_empty() {
                        return Err(ExportError::Refused(format!(
                            "{shown} ended at byte {off} of {size} while being exported"
                        )));
                    }
                    let index = off / cs as u64;
                    sum.logical_bytes += data.len() as u64;
                    sum.read_chunks += 1;
                    if data.iter().all(|b| *b == 0) {
                        if let Some(fp) = fps.get(&index) {
                            extent_cache.keep(*fp, None);
                        }
                        return Ok(true);
                    }
                    let addr = target.keys.object_addr(&data);
                    if let Some(fp) = fps.get(&index) {
                        extent_cache.keep(*fp, Some(addr));
                    }
                    chunks.push(ChunkRef {
                        index,
                        len: data.len() as u32,
                        addr,
                    });
                    if !this_export.insert(addr) {
                        return Ok(true);
                    }
                    let want = sealed_object_len(data.len());
                    if opts.held.contains(&addr) || target.holds(&addr, want) {
                        sum.reused_chunks += 1;
                        return Ok(true);
                    }
                    let sealed = target.keys.seal_object(&addr, &data)?;
                    target.store.put(&object_key(&addr), &sealed)?;
                    target.stored(addr, sealed.len() as u64);
                    sum.new_chunks += 1;
                    sum.bytes_written += sealed.len() as u64;
                    Ok(true)
                },
            )?;
            chunks.sort_unstable_by_key(|c| c.index);
            e.chunks = chunks;
        }
        let sealed = target.keys.seal_entry(seq, entries, &e)?;
        meta.write_all(&(sealed.len() as u32).to_le_bytes())
            .and_then(|_| meta.write_all(&sealed))
            .map_err(io(&tmp_meta))?;
        entries += 1;
        progress.advance(
            &e.display_path(),
            if e.kind == EntryKind::File { e.size } else { 0 },
        );
        Ok(())
    })?;
    let HashingWriter { inner, hash, len } = meta;
    let f = inner
        .into_inner()
        .map_err(|e| io(&tmp_meta)(e.into_error()))?;
    if local.is_some() {
        f.sync_all().map_err(io(&tmp_meta))?;
    }
    drop(f);
    let meta_hash = *hash.finalize().as_bytes();
    let meta_key = match &local {
        Some(_) => format!("{EXPORTS}/{}", meta_name(seq)),
        None => remote_meta_key(seq, &meta_hash),
    };
    target.store.put_file(&meta_key, &tmp_meta)?;
    drop(tmp_guard);
    sum.bytes_written += len;
    // Every object and the meta file on stable storage before the manifest that names them
    // (a directory: syncfs; S3 has stored an object when its PUT returns).
    target.store.sync()?;
    let m = Manifest {
        format: FORMAT_VERSION,
        chain_id: target.keys.chain_id,
        volume_id: target.marker.volume.clone(),
        seq,
        parent: parent.map(|(_, h)| *h),
        created_unix: now_unix(),
        chunk_size: cs,
        entries,
        meta_bytes: len,
        meta_hash,
        files: sum.files,
        dirs: sum.dirs,
        others: sum.others,
        logical_bytes: sum.logical_bytes,
        chunks: this_export.len() as u64,
        new_objects: sum.new_chunks,
        new_object_bytes: sum.bytes_written - len,
    };
    let sealed = target.keys.seal_manifest(&m)?;
    let manifest_key = format!("{EXPORTS}/{}", manifest_name(seq));
    if !target.store.put_if_absent(&manifest_key, &sealed)? {
        if local.is_none() {
            // Our metadata is named by its hash: nobody else's. Not removing it is harmless.
            if let Err(e) = target.store.delete(&meta_key) {
                tracing::warn!(error = %e, "could not remove the metadata of a refused export");
            }
        }
        return Err(ExportError::Refused(format!(
            "another export published export {seq} to {} while this one ran (its manifest is kept; this one is not published); the objects this one stored stay there for the next export to reuse: run the export again (it will be export {})",
            dir.display(),
            seq + 1
        )));
    }
    // After the manifest: the cache names only objects an intact export holds.
    extent_cache.save(&target)?;
    sum.bytes_written += sealed.len() as u64;
    sum.seconds = started.elapsed().as_secs_f64();
    progress.finish();
    Ok(sum)
}

struct HashingWriter<W: Write> {
    inner: W,
    hash: blake3::Hasher,
    len: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
