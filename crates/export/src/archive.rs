//! A native export as one file or stream: the files of a native export directory in a plain
//! tar (the sealed parts need no second layer of encryption). An archive holds one export: the
//! chain's marker and key files, the manifests of the chain so far, the export's metadata and
//! the objects it added. The first archive of a chain holds every object; an archive made
//! `--since` a previous one (an archive or an export directory) holds only the objects the
//! previous ones lack, and restores together with them: `import A1 A2 A3`.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sealvol_crypto::{KeyHeader, MasterKey};
use sealvol_volume::Volume;

use crate::chain::{BACKUP_KEY_AGE, CHAIN_KEYS, EXPORTS, MARKER, OBJECTS, VOLUME_KEYS};
use crate::error::{io, ExportError, Result};
use crate::native::{export, ExportOptions};
use crate::progress::{Progress, Summary};

/// A directory of our own, removed on drop.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// A new directory under `parent` (or the system's temporary directory).
    pub fn new(parent: Option<&Path>, what: &str) -> Result<ScratchDir> {
        let base = parent.map_or_else(std::env::temp_dir, Path::to_path_buf);
        let mut r = [0u8; 8];
        sealvol_crypto::random_bytes(&mut r)?;
        let p = base.join(format!(".sealvol-{what}-{}", hex::encode(r)));
        std::fs::create_dir(&p).map_err(io(&p))?;
        Ok(ScratchDir(p))
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(dir = %self.0.display(), error = %e, "could not remove a scratch directory; delete it by hand");
        }
    }
}

/// Whether `name` (a path inside an archive) is one a native export holds; anything else is
/// refused on unpacking.
fn allowed(name: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    let hexname = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    match parts.as_slice() {
        [f] => [MARKER, CHAIN_KEYS, VOLUME_KEYS, BACKUP_KEY_AGE].contains(f),
        [d, f] if *d == EXPORTS => {
            (f.ends_with(".meta") || f.ends_with(".manifest"))
                && hexname(f.split('.').next().unwrap_or(""))
        }
        [d, sub, f] if *d == OBJECTS => {
            sub.len() == 2 && hexname(sub) && f.len() == 64 && hexname(f) && f.starts_with(sub)
        }
        _ => false,
    }
}

/// The files of a native export directory, for an archive: everything but the lock, earlier
/// exports' metadata, and objects the previous archives hold.
fn files_of(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for f in [MARKER, CHAIN_KEYS, VOLUME_KEYS, BACKUP_KEY_AGE] {
        if dir.join(f).exists() {
            out.push(f.to_string());
        }
    }
    for sub in [EXPORTS, OBJECTS] {
        let d = dir.join(sub);
        let mut stack = vec![(d.clone(), sub.to_string())];
        while let Some((p, rel)) = stack.pop() {
            for e in std::fs::read_dir(&p).map_err(io(&p))? {
                let e = e.map_err(io(&p))?;
                let name = e.file_name().to_string_lossy().into_owned();
                let r = format!("{rel}/{name}");
                if e.file_type().map_err(io(&p))?.is_dir() {
                    stack.push((e.path(), r));
                } else if allowed(&r) {
                    out.push(r);
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// What a previous export (a directory, or archive files) tells the next archive: the chain's
/// files but its objects, unpacked into `into`, and the names of the objects it holds.
fn previous(since: &[PathBuf], into: &Path) -> Result<HashSet<[u8; 32]>> {
    let mut held = HashSet::new();
    for p in since {
        if p.is_dir() {
            for f in files_of(p)? {
                if let Some(name) = f.strip_prefix(&format!("{OBJECTS}/")) {
                    held.insert(object_name(name));
                } else if !f.ends_with(".meta") {
                    copy_into(&p.join(&f), &into.join(&f))?;
                }
            }
        } else {
            let file = std::fs::File::open(p).map_err(io(p))?;
            unpack(file, p, into, Some(&mut held))?;
        }
    }
    Ok(held)
}

fn object_name(rel: &str) -> [u8; 32] {
    let mut a = [0u8; 32];
    let h = rel.rsplit('/').next().unwrap_or("");
    if let Ok(b) = hex::decode(h) {
        if b.len() == 32 {
            a.copy_from_slice(&b);
        }
    }
    a
}

fn copy_into(from: &Path, to: &Path) -> Result<()> {
    if let Some(d) = to.parent() {
        std::fs::create_dir_all(d).map_err(io(d))?;
    }
    std::fs::copy(from, to).map_err(io(from))?;
    Ok(())
}

/// Unpack the archive read from `r` (named `what` in messages) into `into`, files keeping
/// their modification times. With `held`, objects are only listed there, not unpacked, and
/// neither is metadata (for `--since` and listings). Returns the bytes of the objects it holds.
pub fn unpack(
    r: impl Read,
    what: &Path,
    into: &Path,
    mut held: Option<&mut HashSet<[u8; 32]>>,
) -> Result<u64> {
    let not = |why: String| ExportError::NotAnExport {
        path: what.to_path_buf(),
        why,
    };
    let mut ar = tar::Archive::new(r);
    let entries = ar
        .entries()
        .map_err(|e| not(format!("it is not a tar ({e})")))?;
    let mut any = false;
    let mut object_bytes = 0;
    for e in entries {
        let mut e = e.map_err(|e| ExportError::Damaged {
            path: what.to_path_buf(),
            what: format!("the archive is damaged or cut short ({e})"),
        })?;
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        if e.header().entry_type() != tar::EntryType::Regular || !allowed(&name) {
            return Err(not(format!(
                "it holds {name:?}, which no sealvol export holds"
            )));
        }
        any = true;
        if name.starts_with(&format!("{OBJECTS}/")) {
            object_bytes += e.size();
        }
        if let Some(held) = held.as_deref_mut() {
            if let Some(obj) = name.strip_prefix(&format!("{OBJECTS}/")) {
                held.insert(object_name(obj));
                continue;
            }
            if name.ends_with(".meta") {
                continue;
            }
        }
        let to = into.join(&name);
        if let Some(d) = to.parent() {
            std::fs::create_dir_all(d).map_err(io(d))?;
        }
        let mut f = std::fs::File::create(&to).map_err(io(&to))?;
        let mtime = e.header().mtime().unwrap_or(0);
        std::io::copy(&mut e, &mut f).map_err(|err| ExportError::Damaged {
            path: what.to_path_buf(),
            what: format!("{name}: {err}"),
        })?;
        f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime))
            .map_err(io(&to))?;
    }
    if !any {
        return Err(not("it is an empty tar".into()));
    }
    for sub in [OBJECTS, EXPORTS] {
        std::fs::create_dir_all(into.join(sub)).map_err(io(into))?;
    }
    Ok(object_bytes)
}

/// Export `v` as an archive into `out`: a new chain, or with `since` the next export of the
/// chain those previous exports (archives or a directory) hold. `scratch` is where the export
/// is assembled before it is streamed (as large as what the archive adds).
#[allow(clippy::too_many_arguments)]
pub fn export_archive(
    v: &Volume,
    volume_header: &KeyHeader,
    volume_master: &MasterKey,
    out: impl Write,
    opts: ExportOptions<'_>,
    since: &[PathBuf],
    scratch: &ScratchDir,
    progress: &dyn Progress,
) -> Result<Summary> {
    let dir = scratch.path().join("export");
    let held = if since.is_empty() {
        HashSet::new()
    } else {
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        previous(since, &dir)?
    };
    let opts = ExportOptions { held, ..opts };
    let mut sum = export(v, volume_header, volume_master, &dir, &opts, progress)?;
    let mut tar = tar::Builder::new(out);
    // Complete headers: the files' times go along (`export-ls` of an archive shows them).
    tar.mode(tar::HeaderMode::Complete);
    let mut written = 0;
    for f in files_of(&dir)? {
        if f.ends_with(".meta") && !f.ends_with(&crate::chain::meta_name(sum.seq)) {
            continue;
        }
        let p = dir.join(&f);
        let mut file = std::fs::File::open(&p).map_err(io(&p))?;
        written += file.metadata().map_err(io(&p))?.len() + 512;
        tar.append_file(&f, &mut file).map_err(io(&p))?;
    }
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|e| ExportError::Io {
            path: "<archive output>".into(),
            source: e,
        })?;
    sum.bytes_written = written;
    Ok(sum)
}
