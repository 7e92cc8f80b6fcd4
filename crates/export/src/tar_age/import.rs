//! Reading tar.age: opening it (the key is checked on the age header before anything is
//! made), `verify`, and `import` of one tar or of layers applied in order (OCI whiteouts:
//! `.wh.NAME` removes NAME from the layers below, `.wh..wh..opq` empties its directory).
//!
//! Import never writes outside the volume: paths are resolved only through directories this
//! import made or kept, never through a symlink; absolute paths, `..`, and hard links to
//! anything but a file restored before are refused and listed. So are symlinks pointing out of
//! the volume (an absolute target, or one whose `..` climb above the volume's root), and every
//! entry under one, unless [`OutsideSymlinks::Keep`] asks to restore such links as they are
//! (import never follows a link either way: a container's absolute links then round-trip).

use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::path::Path;
use std::time::Instant;

use sealvol_volume::{Caller, FsError, Kind, SetAttr, Ts, Volume, ROOT_INO};
use tar::EntryType;

use super::{parse_pax_time, passphrase, AgeOpen};
use crate::error::{io, ExportError, Result};
use crate::progress::{Progress, Summary};

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
                why: format!("it is neither a native export nor an age file ({e})"),
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
#[derive(Clone)]
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

/// What import does with a symlink pointing out of the volume.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutsideSymlinks {
    /// Refuse it, and every entry under its path, and list them.
    #[default]
    Refuse,
    /// Restore it as it is (never followed).
    Keep,
}

/// Whether a symlink at `up/NAME` with target `target` points out of the volume: an absolute
/// target, or one whose `..` climb above the root (resolved by name alone: a link inside the
/// volume is not followed to tell).
fn points_out(up: &[Vec<u8>], target: &[u8]) -> bool {
    if target.first() == Some(&b'/') {
        return true;
    }
    let mut depth = up.len();
    for c in target.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return true,
            },
            _ => depth += 1,
        }
    }
    false
}

/// Restore a tar (decrypted: see [`open_source`]) into `v`, a new volume. Entries that are
/// refused or damaged are listed in the summary; an error is returned only when the volume
/// cannot be written.
pub fn import(input: Box<dyn Read>, v: &Volume, progress: &dyn Progress) -> Result<Summary> {
    import_layers(vec![input], v, OutsideSymlinks::Refuse, progress)
}

/// Restore layers (the first a full export, each next one made `--since` the one before) into
/// `v`, in order.
pub fn import_layers(
    inputs: Vec<Box<dyn Read>>,
    v: &Volume,
    outside: OutsideSymlinks,
    progress: &dyn Progress,
) -> Result<Summary> {
    let started = Instant::now();
    progress.start("import", 0);
    let mut im = Importer::new(Some(v));
    im.outside = outside;
    for (i, input) in inputs.into_iter().enumerate() {
        if !im.layer(input, i + 1, progress)? {
            break;
        }
    }
    im.finish()?;
    im.sum.seconds = started.elapsed().as_secs_f64();
    progress.finish();
    Ok(im.sum)
}

/// Read a tar.age through, authenticating every part, and check its entries' paths.
pub fn verify(input: Box<dyn Read>, progress: &dyn Progress) -> Result<Summary> {
    let started = Instant::now();
    progress.start("verify", 0);
    let mut im = Importer::new(None);
    im.layer(input, 1, progress)?;
    im.sum.seq = 1;
    im.sum.seconds = started.elapsed().as_secs_f64();
    progress.finish();
    Ok(im.sum)
}

type Parts = Vec<Vec<u8>>;

struct Importer<'v> {
    v: Option<&'v Volume>,
    sum: Summary,
    /// Directories made or kept, by path.
    dirs: HashMap<Parts, u64>,
    /// Regular files restored, by path (hard links may name them).
    files: HashMap<Parts, u64>,
    /// Directories' attributes, set at the end, deepest last in, first out.
    dir_attrs: Vec<(u64, Attrs)>,
    /// Times of files, set again at the end on those that gained hard links (a link moves
    /// ctime).
    times: HashMap<u64, Attrs>,
    linked: Vec<u64>,
    outside: OutsideSymlinks,
    /// Paths of symlinks refused for pointing out: entries under them are refused too.
    refused_links: std::collections::HashSet<Parts>,
}

impl<'v> Importer<'v> {
    fn new(v: Option<&'v Volume>) -> Self {
        let mut dirs = HashMap::new();
        dirs.insert(Vec::new(), ROOT_INO);
        Importer {
            v,
            sum: Summary::default(),
            dirs,
            files: HashMap::new(),
            dir_attrs: Vec::new(),
            times: HashMap::new(),
            linked: Vec::new(),
            outside: OutsideSymlinks::Refuse,
            refused_links: std::collections::HashSet::new(),
        }
    }

    /// Apply one layer; `false` if it was damaged (later layers are then not applied).
    fn layer(&mut self, input: Box<dyn Read>, n: usize, progress: &dyn Progress) -> Result<bool> {
        let mut ar = tar::Archive::new(input);
        let mut last = format!("the start of layer {n}");
        let entries = match ar.entries() {
            Ok(e) => e,
            Err(e) => {
                self.sum
                    .damaged
                    .push(format!("layer {n} cannot be read: {e}"));
                return Ok(false);
            }
        };
        for e in entries {
            let mut e = match e {
                Ok(e) => e,
                Err(err) => {
                    self.sum.damaged.push(format!(
                        "the archive is damaged after {last} ({err}): the entries after it are lost"
                    ));
                    return Ok(false);
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
                self.sum.damaged.push(format!(
                    "{shown}: refused: an absolute path or one with `..`"
                ));
                continue;
            };
            if self.v.is_none() {
                // Verify: read the data through (age authenticates it).
                if let Err(err) = std::io::copy(&mut e, &mut std::io::sink()) {
                    self.sum.damaged.push(format!(
                        "{shown}: {err}: it and the entries after it are lost"
                    ));
                    return Ok(false);
                }
                match e.header().entry_type() {
                    EntryType::Directory => self.sum.dirs += 1,
                    EntryType::Regular | EntryType::Continuous => self.sum.files += 1,
                    _ => self.sum.others += 1,
                }
                self.sum.logical_bytes += e.size();
                progress.advance(&shown, e.size());
                last = shown;
                continue;
            }
            match self.entry(&mut e, parts, &shown)? {
                Step::Next => {}
                Step::Stop => return Ok(false),
            }
            progress.advance(&shown, e.size());
            last = shown;
        }
        Ok(true)
    }

    fn entry<R: Read>(
        &mut self,
        e: &mut tar::Entry<'_, R>,
        parts: Parts,
        shown: &str,
    ) -> Result<Step> {
        let Some(v) = self.v else {
            return Ok(Step::Next);
        };
        let kind = e.header().entry_type();
        let a = attrs(e).map_err(|err| ExportError::Refused(format!("{shown}: {err}")))?;
        let link = e.link_name_bytes().map(|l| l.into_owned());
        let Some((name, up)) = parts.split_last() else {
            if kind == EntryType::Directory {
                self.dir_attrs.retain(|(i, _)| *i != ROOT_INO);
                self.dir_attrs.push((ROOT_INO, a));
                self.sum.dirs += 1;
            }
            return Ok(Step::Next);
        };
        let (name, up) = (name.clone(), up.to_vec());
        if (1..=up.len()).any(|n| self.refused_links.contains(&up[..n])) {
            self.sum.damaged.push(format!(
                "{shown}: refused: it lies under a symlink refused for pointing out of the volume"
            ));
            return Ok(Step::Next);
        }
        if kind == EntryType::Symlink
            && self.outside == OutsideSymlinks::Refuse
            && points_out(&up, link.as_deref().unwrap_or_default())
        {
            self.sum.damaged.push(format!(
                "{shown}: refused: a symlink pointing out of the volume (to {}); `import --keep-outside-symlinks` restores such links as they are (import never follows them)",
                String::from_utf8_lossy(link.as_deref().unwrap_or_default())
            ));
            self.refused_links.insert(parts);
            return Ok(Step::Next);
        }
        // Whatever a later layer puts at a refused link's path replaces it.
        self.refused_links.remove(&parts);
        let parent = match self.make_dirs(v, &up) {
            Ok(p) => p,
            Err(why) => {
                self.sum.damaged.push(format!("{shown}: refused: {why}"));
                return Ok(Step::Next);
            }
        };
        // Whiteouts: remove what the layers below hold under that name.
        if let Some(gone) = name.strip_prefix(b".wh.") {
            // A refused link it removes no longer shadows what later layers put there.
            self.refused_links.retain(|r| {
                let under = r.len() > up.len() && r[..up.len()] == up[..];
                !(under && (gone == b".wh..opq" || r[up.len()] == gone))
            });
            if gone == b".wh..opq" {
                for d in children(v, parent)? {
                    self.remove(v, parent, &up, &d)?;
                }
            } else {
                self.remove(v, parent, &up, gone)?;
            }
            return Ok(Step::Next);
        }
        // A name a lower layer holds is replaced (a directory kept, its attributes updated).
        if let Ok(old) = v.lookup(parent, &name) {
            if !(kind == EntryType::Directory && old.kind == Kind::Dir) {
                self.remove(v, parent, &up, &name)?;
            }
        }
        let who = Caller {
            uid: a.uid,
            gid: a.gid,
        };
        let made = match kind {
            EntryType::Directory => match v.lookup(parent, &name) {
                Ok(i) if i.kind == Kind::Dir => Ok(i.ino),
                _ => v.mkdir(who, parent, &name, a.perm).map(|i| i.ino),
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
                    .and_then(|t| self.files.get(&t).copied());
                match target {
                    Some(ino) => {
                        self.linked.push(ino);
                        v.link(ino, parent, &name).map(|i| i.ino)
                    }
                    None => {
                        self.sum.damaged.push(format!(
                            "{shown}: refused: a hard link to {}, which is not a file restored before it",
                            String::from_utf8_lossy(link.as_deref().unwrap_or_default())
                        ));
                        return Ok(Step::Next);
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
                self.sum.damaged.push(format!(
                    "{shown}: left out: tar entry type {other:?} is not restored"
                ));
                return Ok(Step::Next);
            }
        };
        let ino = match made {
            Ok(i) => i,
            Err(err @ FsError::Store(_)) => return Err(err.into()),
            Err(err) => {
                self.sum
                    .damaged
                    .push(format!("{shown}: cannot be made ({err})"));
                return Ok(Step::Next);
            }
        };
        let mut path = up.clone();
        path.push(name.clone());
        if matches!(kind, EntryType::Regular | EntryType::Continuous) {
            v.open_file(ino)?;
            let copied = copy_into(v, ino, e);
            v.release_file(ino)?;
            match copied {
                Ok(n) => self.sum.logical_bytes += n,
                Err(CopyError::Volume(err)) => return Err(err.into()),
                Err(CopyError::Input(err)) => {
                    v.unlink(parent, &name)?;
                    self.sum.damaged.push(format!(
                        "{shown}: {err}: not restored, nor the entries after it (the archive is damaged or truncated here)"
                    ));
                    return Ok(Step::Stop);
                }
            }
            self.files.insert(path, ino);
            self.sum.files += 1;
        } else if kind == EntryType::Directory {
            self.dirs.insert(path, ino);
            self.sum.dirs += 1;
        } else {
            self.sum.others += 1;
        }
        for (k, val) in &a.xattrs {
            if let Err(err) = v.setxattr(ino, k, val, 0) {
                self.sum.damaged.push(format!(
                    "{shown}: extended attribute {} not restored ({err})",
                    String::from_utf8_lossy(k)
                ));
            }
        }
        if kind == EntryType::Directory {
            self.dir_attrs.retain(|(i, _)| *i != ino);
            self.dir_attrs.push((ino, a));
        } else if kind != EntryType::Link {
            set(v, ino, &a, kind == EntryType::Symlink)?;
            if matches!(kind, EntryType::Regular | EntryType::Continuous) {
                self.times.insert(
                    ino,
                    Attrs {
                        xattrs: Vec::new(),
                        ..a
                    },
                );
            }
        }
        Ok(Step::Next)
    }

    /// Remove `name` in directory `parent` (at path `up`), with everything below it, and
    /// forget the paths it held.
    fn remove(&mut self, v: &Volume, parent: u64, up: &[Vec<u8>], name: &[u8]) -> Result<()> {
        rm_rf(v, parent, name)?;
        let mut gone = up.to_vec();
        gone.push(name.to_vec());
        let under = |p: &Parts| p.len() >= gone.len() && p[..gone.len()] == gone[..];
        self.dirs.retain(|p, _| !under(p));
        self.files.retain(|p, _| !under(p));
        Ok(())
    }

    /// The directory `parts` names, made (0755, root's) where missing; refused if a name on
    /// the way is not a directory this import made or kept (never through a symlink).
    fn make_dirs(&mut self, v: &Volume, parts: &[Vec<u8>]) -> std::result::Result<u64, String> {
        if let Some(&ino) = self.dirs.get(parts) {
            return Ok(ino);
        }
        let (name, up) = parts.split_last().ok_or("no parent")?;
        let parent = self.make_dirs(v, up)?;
        let ino = v
            .mkdir(Caller { uid: 0, gid: 0 }, parent, name, 0o755)
            .map_err(|e| {
                format!(
                    "{} is not a directory made by this import ({e})",
                    String::from_utf8_lossy(&parts.join(&b'/'))
                )
            })?
            .ino;
        self.dirs.insert(parts.to_vec(), ino);
        Ok(ino)
    }

    fn finish(&mut self) -> Result<()> {
        let Some(v) = self.v else {
            return Ok(());
        };
        for ino in std::mem::take(&mut self.linked) {
            if let Some(a) = self.times.get(&ino) {
                // (A file removed by a later layer has nothing to set.)
                match set(v, ino, a, false) {
                    Ok(()) | Err(FsError::NotFound) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        for (ino, a) in self.dir_attrs.iter().rev() {
            match set(v, *ino, a, false) {
                Ok(()) | Err(FsError::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
        }
        v.sync_all()?;
        Ok(())
    }
}

enum Step {
    Next,
    Stop,
}

/// The names in directory `dir`.
fn children(v: &Volume, dir: u64) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut cookie = 0;
    loop {
        let page = v.readdir(dir, cookie, 1024)?;
        let Some(last) = page.last() else { break };
        cookie = last.cookie;
        out.extend(
            page.into_iter()
                .filter(|d| d.name != b"." && d.name != b"..")
                .map(|d| d.name),
        );
    }
    Ok(out)
}

/// Remove `name` in `parent` and everything below it (nothing if it is not there).
fn rm_rf(v: &Volume, parent: u64, name: &[u8]) -> Result<()> {
    let i = match v.lookup(parent, name) {
        Ok(i) => i,
        Err(FsError::NotFound) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if i.kind == Kind::Dir {
        for c in children(v, i.ino)? {
            rm_rf(v, i.ino, &c)?;
        }
        v.rmdir(parent, name)?;
    } else {
        v.unlink(parent, name)?;
    }
    Ok(())
}

enum CopyError {
    Input(std::io::Error),
    Volume(FsError),
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

#[cfg(test)]
mod tests {
    use super::points_out;

    fn up(p: &str) -> Vec<Vec<u8>> {
        p.split('/')
            .filter(|c| !c.is_empty())
            .map(|c| c.as_bytes().to_vec())
            .collect()
    }

    #[test]
    fn a_symlink_points_out_when_absolute_or_climbing_above_the_root() {
        assert!(points_out(&up(""), b"/etc/passwd"));
        assert!(points_out(&up("a/b"), b"/a"));
        assert!(points_out(&up(""), b".."));
        assert!(points_out(&up("a/b"), b"../../../x"));
        assert!(points_out(&up("a"), b"x/../../../y"));
        assert!(!points_out(&up("a/b"), b"../big"));
        assert!(!points_out(&up("a/b"), b"../../top"));
        assert!(!points_out(&up(""), b"./x/./y"));
        assert!(!points_out(&up("a"), b"x/../../y"));
        assert!(!points_out(&up(""), b""));
    }
}
