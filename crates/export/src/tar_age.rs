//! tar.age: the volume's files as a POSIX (pax) tar, encrypted with age, so that
//! `age -d -i key.txt backup.tar.age | tar -x` restores it with no sealvol at hand.
//!
//! The tar: the root as `./`, then every name, each directory before its children. Each entry
//! has a pax extended header with its `path` (and `linkpath`), `uid`, `gid`, `mtime`, `atime`
//! and `ctime` to the nanosecond, and its xattrs as `SCHILY.xattr.NAME` (GNU tar restores them
//! with `--xattrs`). Regular files are written whole (holes as zeros: a sealvol import makes
//! them holes again); a hard link's later names are `Link` entries naming its first; devices
//! carry their major and minor numbers; sockets are left out (tar cannot hold them: GNU tar
//! skips them too), and counted in the summary.
//!
//! `export --since FILE` writes a layer: only what changed since that export, with OCI-style
//! whiteouts for what is gone ([`layers`]).
//!
//! Import reads such a tar (or any tar, or layers in order) into a new volume. It never writes outside the volume's
//! root: names are resolved only through directories it made itself, never through a symlink;
//! entries whose path is absolute or holds `..`, and hard links naming anything but a file
//! restored before them, are refused and listed. Symlinks are restored as they are, whatever
//! their target (a container's absolute symlinks point into its own root): import never follows
//! one.

use std::collections::HashMap;
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::time::Instant;

use age::secrecy::SecretString;
use sealvol_crypto::Secret;
use sealvol_volume::{Kind, Ts, Volume};
use tar::{EntryType, Header};

use crate::error::{io, ExportError, Result};
use crate::format::display_path;
use crate::progress::{Progress, Summary};
use crate::walk::walk;

mod import;
pub mod layers;

pub use import::{
    import, import_layers, is_age, open_reader, open_source, source_reader, verify, OutsideSymlinks,
};

/// What a tar.age export is encrypted to.
pub enum AgeKey<'a> {
    /// An X25519 recipient (`age1…`).
    Recipient(&'a str),
    /// A passphrase (age's scrypt recipient): `age -d` asks for it.
    Passphrase(&'a Secret),
}

/// What opens a tar.age export.
pub enum AgeOpen<'a> {
    /// An age identity file (as `age -i` takes).
    Identity(&'a Path),
    Passphrase(&'a Secret),
}

pub(crate) fn passphrase(s: &Secret) -> Result<SecretString> {
    match s {
        Secret::Passphrase(p) => std::str::from_utf8(p)
            .map(|p| SecretString::from(p.to_string()))
            .map_err(|_| ExportError::Refused("an age passphrase must be UTF-8 text".into())),
        Secret::KeyFile(_) => Err(ExportError::Refused(
            "age takes a passphrase here, not a key file".into(),
        )),
    }
}

fn encryptor(key: &AgeKey<'_>) -> Result<age::Encryptor> {
    Ok(match key {
        AgeKey::Recipient(r) => {
            let r: age::x25519::Recipient = r.trim().parse().map_err(|e| {
                ExportError::Refused(format!(
                    "{r:?} is not an age X25519 recipient ({e}); it looks like age1… (`age-keygen -y key.txt` prints it)"
                ))
            })?;
            age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient))
                .map_err(|e| ExportError::Age(e.to_string()))?
        }
        AgeKey::Passphrase(p) => age::Encryptor::with_user_passphrase(passphrase(p)?),
    })
}

/// Export `v` as tar.age to the file `target` (which must not exist; it appears only once
/// complete), or to stdout for `-`.
pub fn export_to_path(
    v: &Volume,
    target: &Path,
    key: &AgeKey<'_>,
    progress: &dyn Progress,
) -> Result<Summary> {
    export_file(v, target, key, None, progress)
}

/// Layers of a file export: the volume's master key (it seals the state written beside the
/// file, `FILE.state`), and the previous export this one is a layer on, if any.
pub struct Layering<'a> {
    pub master: &'a sealvol_crypto::MasterKey,
    pub since: Option<&'a Path>,
}

/// [`export_to_path`], writing the state beside a file target and, with `since`, only what
/// changed since that export (a layer).
pub fn export_file(
    v: &Volume,
    target: &Path,
    key: &AgeKey<'_>,
    layering: Option<&Layering<'_>>,
    progress: &dyn Progress,
) -> Result<Summary> {
    let base = match layering {
        Some(Layering {
            master,
            since: Some(prev),
        }) => Some(layers::load(prev, master, &v.volume_id_hex())?),
        _ => None,
    };
    if target.as_os_str() == "-" {
        // (No state is kept for a stream: a layer on it needs a file export.)
        let out = std::io::stdout().lock();
        return export_layer(
            v,
            BufWriter::with_capacity(1 << 20, out),
            key,
            base.as_ref(),
            progress,
        )
        .map(|(s, _)| s);
    }
    if target.exists() {
        return Err(ExportError::Refused(format!(
            "{} exists; a tar.age export writes a new file (remove it, or name another)",
            target.display()
        )));
    }
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let tmp = dir.join(format!(".{name}.partial"));
    let f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    let done = export_layer(
        v,
        BufWriter::with_capacity(1 << 20, f),
        key,
        base.as_ref(),
        progress,
    )
    .and_then(|(s, state)| {
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io(&tmp))?;
        // The state first: a file without its state is only not a base for layers.
        if let Some(l) = layering {
            layers::save(&state, l.master, &layers::state_path(target))?;
        }
        std::fs::rename(&tmp, target).map_err(io(target))?;
        Ok(s)
    });
    if done.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    done
}

/// Export `v` as tar.age into `out`.
pub fn export<W: Write>(
    v: &Volume,
    out: W,
    key: &AgeKey<'_>,
    progress: &dyn Progress,
) -> Result<Summary> {
    export_layer(v, out, key, None, progress).map(|(s, _)| s)
}

/// Export `v` as tar.age into `out`: everything, or with `base` a layer holding what changed
/// since the export `base` describes (see [`layers`]). Returns the state the next layer is
/// made against.
pub fn export_layer<W: Write>(
    v: &Volume,
    out: W,
    key: &AgeKey<'_>,
    base: Option<&layers::LayerState>,
    progress: &dyn Progress,
) -> Result<(Summary, layers::LayerState)> {
    let started = Instant::now();
    let counted = Counting { inner: out, n: 0 };
    let w = encryptor(key)?
        .wrap_output(counted)
        .map_err(|e| ExportError::Age(e.to_string()))?;
    let mut tar = tar::Builder::new(w);
    let mut sum = Summary::default();
    progress.start("export", v.stats()?.logical_bytes);
    let mut first_name: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut sigs = std::collections::BTreeMap::new();
    let cs = v.chunk_size().get();
    let wr = |e: std::io::Error| ExportError::Io {
        path: "<tar.age output>".into(),
        source: e,
    };
    // Directories seen, for a layer: an entry replaced by tar -x changes its directory's
    // times on the host, so a layer carries the directories above each entry it holds.
    let mut dir_inodes: HashMap<Vec<u8>, sealvol_volume::Inode> = HashMap::new();
    let mut emitted_dirs: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
    let mut em = Emit {
        tar: &mut tar,
        v,
        cs,
        sum: &mut sum,
        progress,
    };
    walk(v, &mut |node| {
        let i = &node.inode;
        let first = node
            .hardlink
            .then(|| first_name.get(&i.ino).cloned())
            .flatten();
        let sig = layers::signature(i, first.as_deref());
        sigs.insert(node.path.clone(), sig);
        if i.kind != Kind::Dir && i.nlink > 1 && !node.hardlink {
            first_name.insert(i.ino, node.path.clone());
        }
        if i.kind == Kind::Dir && base.is_some() {
            dir_inodes.insert(node.path.clone(), i.clone());
        }
        if base.is_some_and(|b| b.sigs.get(&node.path) == Some(&sig)) {
            return Ok(());
        }
        if base.is_some() {
            for anc in ancestors(&node.path) {
                if !emitted_dirs.contains(anc) {
                    if let Some(ai) = dir_inodes.get(anc) {
                        em.entry(anc, ai, None)?;
                        emitted_dirs.insert(anc.to_vec());
                    }
                }
            }
            if i.kind == Kind::Dir {
                emitted_dirs.insert(node.path.clone());
            }
        }
        let link_first = if node.hardlink {
            Some(first.unwrap_or_default())
        } else {
            None
        };
        em.entry(&node.path, i, link_first)
    })?;
    if let Some(b) = base {
        for w in layers::whiteouts(b, &sigs) {
            tar.append_pax_extensions([("path", w.as_slice())])
                .map_err(wr)?;
            let mut h = Header::new_ustar();
            let short = &w[..w.len().min(99)];
            h.as_old_mut().name[..short.len()].copy_from_slice(short);
            h.set_entry_type(EntryType::Regular);
            h.set_mode(0o600);
            h.set_size(0);
            h.set_cksum();
            tar.append(&h, std::io::empty()).map_err(wr)?;
            sum.others += 1;
        }
    }
    let w = tar.into_inner().map_err(wr)?;
    let mut counted = w.finish().map_err(wr)?;
    counted.flush().map_err(wr)?;
    sum.bytes_written = counted.n;
    sum.seconds = started.elapsed().as_secs_f64();
    progress.finish();
    let state = layers::LayerState {
        layer: base.map_or(1, |b| b.layer + 1),
        volume_id: v.volume_id_hex(),
        sigs,
    };
    sum.seq = state.layer;
    Ok((sum, state))
}

/// Appends entries to a tar.age being written.
struct Emit<'a, 'b, W: Write> {
    tar: &'a mut tar::Builder<W>,
    v: &'b Volume,
    cs: u32,
    sum: &'a mut Summary,
    progress: &'a dyn Progress,
}

fn out_err(e: std::io::Error) -> ExportError {
    ExportError::Io {
        path: "<tar.age output>".into(),
        source: e,
    }
}

/// The paths of the directories above `path`, the root (empty) first.
fn ancestors(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::once(&path[..0]).chain(
        path.iter()
            .enumerate()
            .filter(|(_, b)| **b == b'/')
            .map(move |(i, _)| &path[..i]),
    )
}

impl<W: Write> Emit<'_, '_, W> {
    /// Append the entry for the node `i` at `path_in` (a hard link's later name with
    /// `link_first`, the first name).
    fn entry(
        &mut self,
        path_in: &[u8],
        i: &sealvol_volume::Inode,
        link_first: Option<Vec<u8>>,
    ) -> Result<()> {
        let mut path = if path_in.is_empty() {
            b".".to_vec()
        } else {
            path_in.to_vec()
        };
        let mut h = Header::new_ustar();
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        let mut size = 0;
        match i.kind {
            _ if link_first.is_some() => {
                h.set_entry_type(EntryType::Link);
                pax.push(("linkpath".into(), link_first.unwrap_or_default()));
                self.sum.others += 1;
            }
            Kind::Dir => {
                h.set_entry_type(EntryType::Directory);
                path.push(b'/');
                self.sum.dirs += 1;
            }
            Kind::File => {
                h.set_entry_type(EntryType::Regular);
                size = i.size;
                self.sum.files += 1;
            }
            Kind::Symlink => {
                h.set_entry_type(EntryType::Symlink);
                pax.push(("linkpath".into(), i.target.clone()));
                self.sum.others += 1;
            }
            Kind::Fifo => {
                h.set_entry_type(EntryType::Fifo);
                self.sum.others += 1;
            }
            Kind::CharDev | Kind::BlockDev => {
                h.set_entry_type(if i.kind == Kind::CharDev {
                    EntryType::Char
                } else {
                    EntryType::Block
                });
                let (major, minor) = (
                    (i.rdev >> 8) & 0xfff,
                    (i.rdev & 0xff) | ((i.rdev >> 12) & 0xfff00),
                );
                h.set_device_major(major).map_err(out_err)?;
                h.set_device_minor(minor).map_err(out_err)?;
                self.sum.others += 1;
            }
            Kind::Socket => {
                self.progress.damaged(
                    &display_path(path_in),
                    "a socket: tar cannot hold it; left out",
                );
                return Ok(());
            }
        }
        pax.push(("path".into(), path.clone()));
        pax.push(("uid".into(), i.uid.to_string().into_bytes()));
        pax.push(("gid".into(), i.gid.to_string().into_bytes()));
        pax.push(("mtime".into(), pax_time(i.mtime)));
        pax.push(("atime".into(), pax_time(i.atime)));
        pax.push(("ctime".into(), pax_time(i.ctime)));
        if size > 0o77777777777 {
            pax.push(("size".into(), size.to_string().into_bytes()));
        }
        for (k, val) in &i.xattrs {
            pax.push((
                format!("SCHILY.xattr.{}", String::from_utf8_lossy(k)),
                val.clone(),
            ));
        }
        self.tar
            .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .map_err(out_err)?;
        // The ustar fields too, for readers that ignore pax (names cut to fit).
        let short = &path[..path.len().min(99)];
        h.as_old_mut().name[..short.len()].copy_from_slice(short);
        h.set_mode(i.perm & 0o7777);
        h.set_uid(i.uid.min(0o7777777) as u64);
        h.set_gid(i.gid.min(0o7777777) as u64);
        h.set_mtime(i.mtime.secs.max(0) as u64);
        h.set_size(size);
        h.set_cksum();
        let reader = FileReader {
            v: self.v,
            ino: i.ino,
            size,
            off: 0,
            cs: self.cs,
        };
        self.tar.append(&h, reader).map_err(|e| {
            ExportError::Refused(format!(
                "reading {} for the tar: {e}",
                display_path(path_in)
            ))
        })?;
        self.sum.logical_bytes += size;
        self.progress.advance(&display_path(path_in), size);
        Ok(())
    }
}

/// A pax time: seconds, and nanoseconds as a fraction where there are any.
fn pax_time(t: Ts) -> Vec<u8> {
    if t.nanos == 0 || t.secs < 0 {
        t.secs.to_string().into_bytes()
    } else {
        format!("{}.{:09}", t.secs, t.nanos).into_bytes()
    }
}

pub(crate) fn parse_pax_time(v: &[u8]) -> Option<Ts> {
    let s = std::str::from_utf8(v).ok()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let nanos: u32 = digits.parse().ok()?;
    Some(Ts { secs, nanos })
}

/// A file's contents, read chunk by chunk from the volume.
struct FileReader<'a> {
    v: &'a Volume,
    ino: u64,
    /// Bytes to read: the file's size, 0 for anything but a file's first name.
    size: u64,
    off: u64,
    cs: u32,
}

impl Read for FileReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.off >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let want = (buf.len() as u64)
            .min(self.size - self.off)
            .min(self.cs as u64) as u32;
        let data = self
            .v
            .read(self.ino, self.off, want)
            .map_err(std::io::Error::other)?;
        if data.is_empty() {
            return Err(std::io::Error::other("the file ended early"));
        }
        buf[..data.len()].copy_from_slice(&data);
        self.off += data.len() as u64;
        Ok(data.len())
    }
}

struct Counting<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
