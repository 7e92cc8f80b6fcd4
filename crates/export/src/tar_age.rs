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
//! Import reads such a tar (or any tar) into a new volume. It never writes outside the volume's
//! root: names are resolved only through directories it made itself, never through a symlink;
//! entries whose path is absolute or holds `..`, and hard links naming anything but a file
//! restored before them, are refused and listed. Symlinks are restored as they are, whatever
//! their target (a container's absolute symlinks point into its own root): import never follows
//! one.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::time::Instant;

use age::secrecy::SecretString;
use sealvol_crypto::Secret;
use sealvol_volume::{Caller, Kind, SetAttr, Ts, Volume, ROOT_INO};
use tar::{EntryType, Header};

use crate::error::{io, ExportError, Result};
use crate::format::display_path;
use crate::progress::{Progress, Summary};
use crate::walk::walk;

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

fn passphrase(s: &Secret) -> Result<SecretString> {
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
    if target.as_os_str() == "-" {
        let out = std::io::stdout().lock();
        return export(v, BufWriter::with_capacity(1 << 20, out), key, progress);
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
    let done = export(v, BufWriter::with_capacity(1 << 20, f), key, progress).and_then(|s| {
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io(&tmp))?;
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
    let started = Instant::now();
    let counted = Counting { inner: out, n: 0 };
    let w = encryptor(key)?
        .wrap_output(counted)
        .map_err(|e| ExportError::Age(e.to_string()))?;
    let mut tar = tar::Builder::new(w);
    let mut sum = Summary::default();
    progress.start("export", v.stats()?.logical_bytes);
    let mut first_name: HashMap<u64, Vec<u8>> = HashMap::new();
    let cs = v.chunk_size().get();
    let wr = |e: std::io::Error| ExportError::Io {
        path: "<tar.age output>".into(),
        source: e,
    };
    walk(v, &mut |node| {
        let i = &node.inode;
        let mut path = if node.path.is_empty() {
            b".".to_vec()
        } else {
            node.path.clone()
        };
        let mut h = Header::new_ustar();
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        let mut size = 0;
        match i.kind {
            _ if node.hardlink => {
                h.set_entry_type(EntryType::Link);
                let first = first_name.get(&i.ino).cloned().unwrap_or_default();
                pax.push(("linkpath".into(), first));
                sum.others += 1;
            }
            Kind::Dir => {
                h.set_entry_type(EntryType::Directory);
                path.push(b'/');
                sum.dirs += 1;
            }
            Kind::File => {
                h.set_entry_type(EntryType::Regular);
                size = i.size;
                sum.files += 1;
            }
            Kind::Symlink => {
                h.set_entry_type(EntryType::Symlink);
                pax.push(("linkpath".into(), i.target.clone()));
                sum.others += 1;
            }
            Kind::Fifo => {
                h.set_entry_type(EntryType::Fifo);
                sum.others += 1;
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
                h.set_device_major(major).map_err(wr)?;
                h.set_device_minor(minor).map_err(wr)?;
                sum.others += 1;
            }
            Kind::Socket => {
                progress.damaged(
                    &display_path(&node.path),
                    "a socket: tar cannot hold it; left out",
                );
                return Ok(());
            }
        }
        if i.kind != Kind::Dir && i.nlink > 1 && !node.hardlink {
            first_name.insert(i.ino, path.clone());
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
        if std::str::from_utf8(&path).is_err()
            || pax
                .iter()
                .any(|(k, v)| k == "linkpath" && std::str::from_utf8(v).is_err())
        {
            pax.insert(0, ("hdrcharset".into(), b"BINARY".to_vec()));
        }
        for (k, val) in &i.xattrs {
            pax.push((
                format!("SCHILY.xattr.{}", String::from_utf8_lossy(k)),
                val.clone(),
            ));
        }
        tar.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .map_err(wr)?;
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
            v,
            ino: i.ino,
            size,
            off: 0,
            cs,
        };
        tar.append(&h, reader).map_err(|e| {
            ExportError::Refused(format!(
                "reading {} for the tar: {e}",
                display_path(&node.path)
            ))
        })?;
        sum.logical_bytes += size;
        progress.advance(&display_path(&node.path), size);
        Ok(())
    })?;
    let w = tar.into_inner().map_err(wr)?;
    let mut counted = w.finish().map_err(wr)?;
    counted.flush().map_err(wr)?;
    sum.bytes_written = counted.n;
    sum.seconds = started.elapsed().as_secs_f64();
    progress.finish();
    Ok(sum)
}

/// A pax time: seconds, and nanoseconds as a fraction where there are any.
fn pax_time(t: Ts) -> Vec<u8> {
    if t.nanos == 0 || t.secs < 0 {
        t.secs.to_string().into_bytes()
    } else {
        format!("{}.{:09}", t.secs, t.nanos).into_bytes()
    }
}

fn parse_pax_time(v: &[u8]) -> Option<Ts> {
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

/// Open a tar.age file (or stdin for `-`) and check the key on its header: a wrong key is
/// refused here, before anything is made.
pub fn open_source(source: &Path, key: &AgeOpen<'_>) -> Result<Box<dyn Read>> {
    open_reader(source_reader(source)?, source, key)
}

/// The bytes of `source`: a file, or stdin for `-`.
pub fn source_reader(source: &Path) -> Result<Box<dyn Read>> {
    Ok(if source.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(source).map_err(io(source))?)
    })
}

/// Whether `head` (the first bytes of a file) is the start of an age file.
pub fn is_age(head: &[u8]) -> bool {
    head.starts_with(b"age-encryption.org/")
}

/// [`open_source`] on bytes already opened (`source` names them in messages).
pub fn open_reader(
    input: Box<dyn Read>,
    source: &Path,
    key: &AgeOpen<'_>,
) -> Result<Box<dyn Read>> {
    let d =
        age::Decryptor::new_buffered(BufReader::with_capacity(1 << 20, input)).map_err(|e| {
            ExportError::NotAnExport {
                path: source.to_path_buf(),
                why: format!("it is neither a native export directory nor an age file ({e})"),
            }
        })?;
    let ids: Vec<Box<dyn age::Identity>> = match key {
        AgeOpen::Identity(f) => crate::chain::age_identities(f)?
            .into_iter()
            .map(|i| i as Box<dyn age::Identity>)
            .collect(),
        AgeOpen::Passphrase(p) => vec![Box::new(age::scrypt::Identity::new(passphrase(p)?))],
    };
    let r = d
        .decrypt(ids.iter().map(|i| i.as_ref()))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys | age::DecryptError::DecryptionFailed => {
                ExportError::WrongKey {
                    path: source.to_path_buf(),
                }
            }
            e => ExportError::Age(format!("{}: {e}", source.display())),
        })?;
    Ok(Box::new(r))
}

/// A tar path made safe: relative, without `.` or `..`; `None` if it is absolute or climbs.
fn clean(p: &[u8]) -> Option<Vec<Vec<u8>>> {
    if p.first() == Some(&b'/') {
        return None;
    }
    let mut out = Vec::new();
    for c in p.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return None,
            c => out.push(c.to_vec()),
        }
    }
    Some(out)
}

/// Attributes read from an entry's headers.
struct Attrs {
    perm: u32,
    uid: u32,
    gid: u32,
    mtime: Ts,
    atime: Option<Ts>,
    ctime: Option<Ts>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn attrs<R: Read>(e: &mut tar::Entry<'_, R>) -> std::io::Result<Attrs> {
    let h = e.header();
    let mut a = Attrs {
        perm: h.mode().unwrap_or(0o644) & 0o7777,
        uid: h.uid().unwrap_or(0) as u32,
        gid: h.gid().unwrap_or(0) as u32,
        mtime: Ts {
            secs: h.mtime().unwrap_or(0) as i64,
            nanos: 0,
        },
        atime: None,
        ctime: None,
        xattrs: Vec::new(),
    };
    if let Some(exts) = e.pax_extensions()? {
        for x in exts {
            let x = x?;
            let (k, v) = (x.key_bytes(), x.value_bytes());
            let num = || {
                std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse::<u32>().ok())
            };
            match k {
                b"uid" => a.uid = num().unwrap_or(a.uid),
                b"gid" => a.gid = num().unwrap_or(a.gid),
                b"mtime" => a.mtime = parse_pax_time(v).unwrap_or(a.mtime),
                b"atime" => a.atime = parse_pax_time(v),
                b"ctime" => a.ctime = parse_pax_time(v),
                _ => {
                    if let Some(name) = k.strip_prefix(b"SCHILY.xattr.") {
                        a.xattrs.push((name.to_vec(), v.to_vec()));
                    }
                }
            }
        }
    }
    Ok(a)
}

fn set(v: &Volume, ino: u64, a: &Attrs, symlink: bool) -> sealvol_volume::Result<()> {
    v.setattr(
        ino,
        &SetAttr {
            perm: (!symlink).then_some(a.perm),
            uid: Some(a.uid),
            gid: Some(a.gid),
            mtime: Some(a.mtime),
            atime: Some(a.atime.unwrap_or(a.mtime)),
            ctime: a.ctime,
            ..SetAttr::default()
        },
    )
    .map(|_| ())
}

/// Restore a tar (decrypted: see [`open_source`]) into `v`, a new volume. Entries that are
/// refused or damaged are listed in the summary; an error is returned only when the volume
/// cannot be written.
pub fn import(input: Box<dyn Read>, v: &Volume, progress: &dyn Progress) -> Result<Summary> {
    read_tar(input, Some(v), progress)
}

/// Read a tar.age through, authenticating every part, and check its entries' paths.
pub fn verify(input: Box<dyn Read>, progress: &dyn Progress) -> Result<Summary> {
    read_tar(input, None, progress)
}

fn read_tar(input: Box<dyn Read>, v: Option<&Volume>, progress: &dyn Progress) -> Result<Summary> {
    let started = Instant::now();
    progress.start(if v.is_some() { "import" } else { "verify" }, 0);
    let mut sum = Summary::default();
    let mut ar = tar::Archive::new(input);
    let mut dirs: HashMap<Vec<Vec<u8>>, u64> = HashMap::new();
    dirs.insert(Vec::new(), ROOT_INO);
    let mut files: HashMap<Vec<Vec<u8>>, u64> = HashMap::new();
    let mut dir_attrs: Vec<(u64, Attrs)> = Vec::new();
    // Times of files, set again at the end on those that gained hard links (a link moves
    // ctime).
    let mut times: HashMap<u64, Attrs> = HashMap::new();
    let mut linked: Vec<u64> = Vec::new();
    let mut last = String::from("the start of the archive");
    let entries = match ar.entries() {
        Ok(e) => e,
        Err(e) => {
            sum.damaged.push(format!("the archive cannot be read: {e}"));
            return Ok(sum);
        }
    };
    for e in entries {
        let mut e = match e {
            Ok(e) => e,
            Err(err) => {
                sum.damaged.push(format!(
                    "the archive is damaged after {last} ({err}): the entries after it are lost"
                ));
                break;
            }
        };
        let raw = e.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw)
            .trim_start_matches("./")
            .to_string();
        let shown = if shown.starts_with('/') {
            shown
        } else {
            format!("/{shown}")
        };
        let Some(parts) = clean(&raw) else {
            sum.damaged.push(format!(
                "{shown}: refused: an absolute path or one with `..`"
            ));
            continue;
        };
        let kind = e.header().entry_type();
        let a = attrs(&mut e).map_err(|err| ExportError::Refused(format!("{shown}: {err}")))?;
        let link = e.link_name_bytes().map(|l| l.into_owned());
        let Some(v) = v else {
            // Verify: read the data through (age authenticates it).
            if let Err(err) = std::io::copy(&mut e, &mut std::io::sink()) {
                sum.damaged.push(format!(
                    "{shown}: {err}: it and the entries after it are lost"
                ));
                break;
            }
            match kind {
                EntryType::Directory => sum.dirs += 1,
                EntryType::Regular | EntryType::Continuous => sum.files += 1,
                _ => sum.others += 1,
            }
            sum.logical_bytes += e.size();
            last = shown.clone();
            progress.advance(&shown, e.size());
            continue;
        };
        if parts.is_empty() {
            if kind == EntryType::Directory {
                dir_attrs.push((ROOT_INO, a));
                sum.dirs += 1;
            }
            continue;
        }
        let (name, parent_parts) = match parts.split_last() {
            Some((n, p)) => (n.clone(), p.to_vec()),
            None => continue,
        };
        let parent = match make_dirs(v, &mut dirs, &parent_parts) {
            Ok(p) => p,
            Err(why) => {
                sum.damaged.push(format!("{shown}: refused: {why}"));
                continue;
            }
        };
        let who = Caller {
            uid: a.uid,
            gid: a.gid,
        };
        let made = match kind {
            EntryType::Directory => match dirs.get(&parts) {
                Some(&ino) => Ok(ino),
                None => v.mkdir(who, parent, &name, a.perm).map(|i| i.ino),
            },
            EntryType::Regular | EntryType::Continuous => v
                .mknod(who, parent, &name, Kind::File, a.perm, 0)
                .map(|i| i.ino),
            EntryType::Symlink => v
                .symlink(who, parent, &name, link.as_deref().unwrap_or_default())
                .map(|i| i.ino),
            EntryType::Link => {
                let target = link
                    .as_deref()
                    .and_then(clean)
                    .and_then(|t| files.get(&t).copied());
                match target {
                    Some(ino) => {
                        linked.push(ino);
                        v.link(ino, parent, &name).map(|i| i.ino)
                    }
                    None => {
                        sum.damaged.push(format!(
                            "{shown}: refused: a hard link to {} , which is not a file restored before it",
                            String::from_utf8_lossy(link.as_deref().unwrap_or_default())
                        ));
                        continue;
                    }
                }
            }
            EntryType::Fifo | EntryType::Char | EntryType::Block => {
                let h = e.header();
                let (major, minor) = (
                    h.device_major().ok().flatten().unwrap_or(0),
                    h.device_minor().ok().flatten().unwrap_or(0),
                );
                let rdev = ((major & 0xfff) << 8) | (minor & 0xff) | ((minor & 0xfff00) << 12);
                let k = match kind {
                    EntryType::Fifo => Kind::Fifo,
                    EntryType::Char => Kind::CharDev,
                    _ => Kind::BlockDev,
                };
                v.mknod(who, parent, &name, k, a.perm, rdev).map(|i| i.ino)
            }
            other => {
                sum.damaged.push(format!(
                    "{shown}: left out: tar entry type {other:?} is not restored"
                ));
                continue;
            }
        };
        let ino = match made {
            Ok(i) => i,
            Err(err @ sealvol_volume::FsError::Store(_)) => return Err(err.into()),
            Err(err) => {
                sum.damaged.push(format!("{shown}: cannot be made ({err})"));
                continue;
            }
        };
        if matches!(kind, EntryType::Regular | EntryType::Continuous) {
            v.open_file(ino)?;
            let copied = copy_into(v, ino, &mut e);
            v.release_file(ino)?;
            match copied {
                Ok(n) => sum.logical_bytes += n,
                Err(CopyError::Volume(err)) => return Err(err.into()),
                Err(CopyError::Input(err)) => {
                    v.unlink(parent, &name)?;
                    sum.damaged.push(format!(
                        "{shown}: {err}: not restored, nor the entries after it (the archive is damaged or truncated here)"
                    ));
                    break;
                }
            }
            files.insert(parts.clone(), ino);
            sum.files += 1;
        } else if kind == EntryType::Directory {
            dirs.insert(parts.clone(), ino);
            sum.dirs += 1;
        } else {
            sum.others += 1;
        }
        for (k, val) in &a.xattrs {
            if let Err(err) = v.setxattr(ino, k, val, 0) {
                sum.damaged.push(format!(
                    "{shown}: extended attribute {} not restored ({err})",
                    String::from_utf8_lossy(k)
                ));
            }
        }
        if kind == EntryType::Directory {
            dir_attrs.push((ino, a));
        } else if kind != EntryType::Link {
            set(v, ino, &a, kind == EntryType::Symlink)?;
            if matches!(kind, EntryType::Regular | EntryType::Continuous) {
                times.insert(
                    ino,
                    Attrs {
                        xattrs: Vec::new(),
                        ..a
                    },
                );
            }
        }
        last = shown.clone();
        progress.advance(&shown, e.size());
    }
    if let Some(v) = v {
        for ino in linked {
            if let Some(a) = times.get(&ino) {
                set(v, ino, a, false)?;
            }
        }
        for (ino, a) in dir_attrs.iter().rev() {
            set(v, *ino, a, false)?;
        }
        v.sync_all()?;
    }
    sum.seconds = started.elapsed().as_secs_f64();
    progress.finish();
    Ok(sum)
}

/// The directory `parts` names, made (0755, root's) where missing; refused if a name on the
/// way is not a directory this import made (never through a symlink).
fn make_dirs(
    v: &Volume,
    dirs: &mut HashMap<Vec<Vec<u8>>, u64>,
    parts: &[Vec<u8>],
) -> std::result::Result<u64, String> {
    if let Some(&ino) = dirs.get(parts) {
        return Ok(ino);
    }
    let (name, up) = parts.split_last().ok_or("no parent")?;
    let parent = make_dirs(v, dirs, up)?;
    let ino = v
        .mkdir(Caller { uid: 0, gid: 0 }, parent, name, 0o755)
        .map_err(|e| {
            format!(
                "{} is not a directory made by this import ({e})",
                String::from_utf8_lossy(&parts.join(&b'/'))
            )
        })?
        .ino;
    dirs.insert(parts.to_vec(), ino);
    Ok(ino)
}

enum CopyError {
    Input(std::io::Error),
    Volume(sealvol_volume::FsError),
}

fn copy_into(v: &Volume, ino: u64, r: &mut impl Read) -> std::result::Result<u64, CopyError> {
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(off),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Input(e)),
        };
        // (A whole chunk of zeros becomes a hole in the volume.)
        v.write(ino, off, &buf[..n]).map_err(CopyError::Volume)?;
        off += n as u64;
    }
}
