//! Names and attributes: lookup, create, link, unlink, rename, readdir, setattr, xattrs.
//! Permission checks are the kernel's (the mount uses `default_permissions`); this layer keeps
//! POSIX semantics of the tree itself.

use sealvol_store::Durability;

use crate::error::{FsError, Result};

use crate::schema::*;
use crate::txn::Txn;
use crate::volume::Volume;

pub const RENAME_NOREPLACE: u32 = 1;
pub const RENAME_EXCHANGE: u32 = 2;
const NAME_MAX: usize = 255;
/// Deepest directory: mkdir and rename refuse to go below it. Bounds every walk up the tree
/// (rename must not move a directory into itself), which reads one record per level. A path
/// through the kernel holds at most 4096 bytes, about 2,048 levels.
pub const MAX_DIR_DEPTH: usize = 4096;
/// A symlink's target: at most PATH_MAX - 1 bytes, as the kernel accepts.
const SYMLINK_MAX: usize = 4095;

/// Who asks: owner of what they create.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
}

/// Attribute changes; `None` leaves a field alone.
#[derive(Clone, Debug, Default)]
pub struct SetAttr {
    pub perm: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<Ts>,
    pub mtime: Option<Ts>,
    pub ctime: Option<Ts>,
    /// With a size change: clear setuid, and setgid where it means "set group id", as a
    /// truncate by a caller without CAP_FSETID does (the kernel leaves this to the filesystem
    /// under FUSE_HANDLE_KILLPRIV_V2).
    pub kill_suidgid: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DirEntry {
    /// Pass back to `readdir` to continue after this entry.
    pub cookie: u64,
    pub ino: u64,
    pub kind: Kind,
    pub name: Vec<u8>,
}

fn check_name(name: &[u8]) -> Result<()> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
        return Err(FsError::Invalid("bad file name"));
    }
    if name.len() > NAME_MAX {
        return Err(FsError::NameTooLong);
    }
    Ok(())
}

fn dir_inode(t: &mut Txn<'_>, ino: u64) -> Result<Inode> {
    let d = t.inode(ino)?.ok_or(FsError::NotFound)?;
    if d.kind != Kind::Dir {
        return Err(FsError::NotDir);
    }
    Ok(d)
}

/// Cookie of a directory entry from its key: monotonic in key order, above 2 ("." and "..").
fn cookie_of(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[8..16]);
    (u64::from_be_bytes(b) >> 2) + 3
}

impl Volume {
    /// Attributes, including size and times of data still buffered for an open file.
    pub fn getattr(&self, ino: u64) -> Result<Inode> {
        let mut inode = self.read_inode(ino)?.ok_or(FsError::NotFound)?;
        self.overlay_open_state(&mut inode);
        Ok(inode)
    }

    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<Inode> {
        if name.len() > NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        let d = self.read_dirent(parent, name)?;
        match d {
            Some(d) => {
                let ino = d.ino;
                let inode = self.getattr(ino).map_err(|e| match e {
                    FsError::NotFound => {
                        self.corrupt(parent, format!("entry points at missing inode {ino}"))
                    }
                    e => e,
                })?;
                Ok(inode)
            }
            None => {
                let p = self.read_inode(parent)?.ok_or(FsError::NotFound)?;
                if p.kind != Kind::Dir {
                    return Err(FsError::NotDir);
                }
                Err(FsError::NotFound)
            }
        }
    }

    fn new_inode(
        &self,
        t: &mut Txn<'_>,
        parent: &Inode,
        who: Caller,
        kind: Kind,
        perm: u32,
    ) -> Result<Inode> {
        let now = self.clock.now();
        let mut perm = perm & 0o7777;
        let gid = if parent.perm & 0o2000 != 0 {
            if kind == Kind::Dir {
                perm |= 0o2000;
            }
            parent.gid
        } else {
            who.gid
        };
        Ok(Inode {
            ino: t.alloc_ino()?,
            kind,
            perm,
            uid: who.uid,
            gid,
            nlink: if kind == Kind::Dir { 2 } else { 1 },
            size: 0,
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            rdev: 0,
            parent: parent.ino,
            target: Vec::new(),
            xattrs: Default::default(),
            holes: Vec::new(),
        })
    }

    /// Create a node of any kind but directory or symlink (regular file, fifo, socket, device).
    pub fn mknod(
        &self,
        who: Caller,
        parent: u64,
        name: &[u8],
        kind: Kind,
        perm: u32,
        rdev: u32,
    ) -> Result<Inode> {
        if matches!(kind, Kind::Dir | Kind::Symlink) {
            return Err(FsError::Invalid("mknod of a directory or symlink"));
        }
        self.create_node(who, parent, name, kind, perm, |i| i.rdev = rdev)
    }

    /// A new directory: refused ([`FsError::TooDeep`]) below a directory [`MAX_DIR_DEPTH`]
    /// levels deep, so that the walks up a tree (rename's "not into itself") stay bounded.
    pub fn mkdir(&self, who: Caller, parent: u64, name: &[u8], perm: u32) -> Result<Inode> {
        self.walk_up(&mut self.begin(), parent, Some(ROOT_INO))?;
        self.create_node(who, parent, name, Kind::Dir, perm, |_| {})
    }

    pub fn symlink(&self, who: Caller, parent: u64, name: &[u8], target: &[u8]) -> Result<Inode> {
        if target.is_empty() || target.len() > SYMLINK_MAX {
            return Err(FsError::Invalid("symlink target length"));
        }
        self.create_node(who, parent, name, Kind::Symlink, 0o777, |i| {
            i.target = target.to_vec();
            i.size = target.len() as u64;
        })
    }

    fn create_node(
        &self,
        who: Caller,
        parent: u64,
        name: &[u8],
        kind: Kind,
        perm: u32,
        fill: impl FnOnce(&mut Inode),
    ) -> Result<Inode> {
        check_name(name)?;
        let mut t = self.begin();
        let mut p = dir_inode(&mut t, parent)?;
        if t.dirent(parent, name)?.is_some() {
            return Err(FsError::Exists);
        }
        let mut inode = self.new_inode(&mut t, &p, who, kind, perm)?;
        fill(&mut inode);
        t.put_dirent(
            parent,
            Dirent {
                name: name.to_vec(),
                ino: inode.ino,
                kind,
            },
        )?;
        let now = self.clock.now();
        p.mtime = now;
        p.ctime = now;
        if kind == Kind::Dir {
            p.nlink += 1;
        }
        t.put_inode(p);
        t.put_inode(inode.clone());
        t.commit(Durability::Process)?;
        Ok(inode)
    }

    pub fn link(&self, ino: u64, newparent: u64, newname: &[u8]) -> Result<Inode> {
        check_name(newname)?;
        let mut t = self.begin();
        let mut p = dir_inode(&mut t, newparent)?;
        let mut inode = t.inode(ino)?.ok_or(FsError::NotFound)?;
        if inode.kind == Kind::Dir {
            return Err(FsError::IsDir);
        }
        if inode.nlink == 0 {
            return Err(FsError::NotFound);
        }
        if t.dirent(newparent, newname)?.is_some() {
            return Err(FsError::Exists);
        }
        t.put_dirent(
            newparent,
            Dirent {
                name: newname.to_vec(),
                ino,
                kind: inode.kind,
            },
        )?;
        let now = self.clock.now();
        inode.nlink += 1;
        inode.ctime = now;
        p.mtime = now;
        p.ctime = now;
        t.put_inode(p);
        t.put_inode(inode);
        t.commit(Durability::Process)?;
        self.getattr(ino)
    }

    pub fn unlink(&self, parent: u64, name: &[u8]) -> Result<()> {
        let mut t = self.begin();
        let mut p = dir_inode(&mut t, parent)?;
        let d = t.dirent(parent, name)?.ok_or(FsError::NotFound)?;
        if d.kind == Kind::Dir {
            return Err(FsError::IsDir);
        }
        t.del_dirent(parent, name);
        let now = self.clock.now();
        p.mtime = now;
        p.ctime = now;
        t.put_inode(p);
        self.drop_link(&mut t, d.ino)?;
        t.commit(Durability::Process)
    }

    pub fn rmdir(&self, parent: u64, name: &[u8]) -> Result<()> {
        if name == b"." {
            return Err(FsError::Invalid("rmdir of ."));
        }
        let mut t = self.begin();
        let mut p = dir_inode(&mut t, parent)?;
        let d = t.dirent(parent, name)?.ok_or(FsError::NotFound)?;
        if d.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        if !self.dir_is_empty(d.ino)? {
            return Err(FsError::NotEmpty);
        }
        t.del_dirent(parent, name);
        t.del_inode(d.ino)?;
        let now = self.clock.now();
        p.nlink = p.nlink.saturating_sub(1);
        p.mtime = now;
        p.ctime = now;
        t.put_inode(p);
        t.commit(Durability::Process)
    }

    fn dir_is_empty(&self, ino: u64) -> Result<bool> {
        Ok(self
            .engine
            .scan(sealvol_store::Cf::Dirents, &self.dir_prefix(ino), b"", 1)?
            .is_empty())
    }

    /// One fewer name for a non-directory: at zero links it is deleted, or kept as an orphan
    /// while open.
    fn drop_link(&self, t: &mut Txn<'_>, ino: u64) -> Result<()> {
        let mut inode = t.inode(ino)?.ok_or(FsError::NotFound)?;
        inode.nlink = inode.nlink.saturating_sub(1);
        inode.ctime = self.clock.now();
        if inode.nlink > 0 {
            t.put_inode(inode);
            return Ok(());
        }
        if self.is_in_use(ino) {
            t.put_inode(inode);
            if !t.counters.orphans.contains(&ino) {
                t.counters.orphans.push(ino);
            }
            return Ok(());
        }
        if !self.purge_inode(t, &inode)? {
            // Too many extents for one transaction: the purger finishes it.
            self.deferred_purge.lock().push(ino);
        }
        Ok(())
    }

    /// rename(2) and renameat2(2) with RENAME_NOREPLACE or RENAME_EXCHANGE.
    pub fn rename(
        &self,
        parent: u64,
        name: &[u8],
        newparent: u64,
        newname: &[u8],
        flags: u32,
    ) -> Result<()> {
        check_name(newname)?;
        if flags & !(RENAME_NOREPLACE | RENAME_EXCHANGE) != 0
            || flags == RENAME_NOREPLACE | RENAME_EXCHANGE
        {
            return Err(FsError::Invalid("rename flags"));
        }
        let mut t = self.begin();
        dir_inode(&mut t, parent)?;
        dir_inode(&mut t, newparent)?;
        let src = t.dirent(parent, name)?.ok_or(FsError::NotFound)?;
        let dst = t.dirent(newparent, newname)?;
        if parent == newparent && name == newname {
            return if flags & RENAME_EXCHANGE != 0 && dst.is_none() {
                Err(FsError::NotFound)
            } else {
                Ok(())
            };
        }
        if src.kind == Kind::Dir && self.is_ancestor(&mut t, src.ino, newparent)? {
            return Err(FsError::Invalid("cannot move a directory into itself"));
        }
        let now = self.clock.now();
        if flags & RENAME_EXCHANGE != 0 {
            let dst = dst.ok_or(FsError::NotFound)?;
            if dst.kind == Kind::Dir && self.is_ancestor(&mut t, dst.ino, parent)? {
                return Err(FsError::Invalid("cannot move a directory into itself"));
            }
            t.put_dirent(parent, dst.with_name(name))?;
            t.put_dirent(newparent, src.with_name(newname))?;
            if parent != newparent {
                self.reparent(&mut t, src.ino, newparent, parent, now)?;
                self.reparent(&mut t, dst.ino, parent, newparent, now)?;
            }
            self.touch_dirs(&mut t, parent, newparent, now)?;
            return t.commit(Durability::Process);
        }
        if let Some(dst) = &dst {
            if flags & RENAME_NOREPLACE != 0 {
                return Err(FsError::Exists);
            }
            if dst.ino == src.ino {
                // Two names of one file: POSIX says do nothing.
                return Ok(());
            }
            match (src.kind == Kind::Dir, dst.kind == Kind::Dir) {
                (true, false) => return Err(FsError::NotDir),
                (false, true) => return Err(FsError::IsDir),
                (true, true) => {
                    if !self.dir_is_empty(dst.ino)? {
                        return Err(FsError::NotEmpty);
                    }
                    t.del_inode(dst.ino)?;
                    let mut np = dir_inode(&mut t, newparent)?;
                    np.nlink = np.nlink.saturating_sub(1);
                    t.put_inode(np);
                }
                (false, false) => self.drop_link(&mut t, dst.ino)?,
            }
        }
        t.del_dirent(parent, name);
        t.put_dirent(newparent, src.with_name(newname))?;
        if parent != newparent {
            self.reparent(&mut t, src.ino, newparent, parent, now)?;
        }
        let mut moved = t.inode(src.ino)?.ok_or(FsError::NotFound)?;
        moved.ctime = now;
        t.put_inode(moved);
        self.touch_dirs(&mut t, parent, newparent, now)?;
        t.commit(Durability::Process)
    }

    /// `ino` moved from directory `from` to `to`: a directory's parent and link counts follow.
    fn reparent(&self, t: &mut Txn<'_>, ino: u64, to: u64, from: u64, now: Ts) -> Result<()> {
        let mut i = t.inode(ino)?.ok_or(FsError::NotFound)?;
        if i.kind != Kind::Dir {
            return Ok(());
        }
        i.parent = to;
        i.ctime = now;
        t.put_inode(i);
        let mut f = dir_inode(t, from)?;
        f.nlink = f.nlink.saturating_sub(1);
        t.put_inode(f);
        let mut n = dir_inode(t, to)?;
        n.nlink += 1;
        t.put_inode(n);
        Ok(())
    }

    fn touch_dirs(&self, t: &mut Txn<'_>, a: u64, b: u64, now: Ts) -> Result<()> {
        for d in [a, b] {
            let mut i = dir_inode(t, d)?;
            i.mtime = now;
            i.ctime = now;
            t.put_inode(i);
        }
        Ok(())
    }

    /// Is `dir` `node` itself or one of its ancestors? Walks up from `node`, at most
    /// [`MAX_DIR_DEPTH`] levels: a directory deeper than that is refused ([`FsError::TooDeep`]),
    /// and a parent chain that comes back on itself is damage.
    fn is_ancestor(&self, t: &mut Txn<'_>, dir: u64, node: u64) -> Result<bool> {
        Ok(self.walk_up(t, node, Some(dir))?.is_some())
    }

    /// Walk from directory `node` up to the root: `Some(levels)` when `stop` is met on the way
    /// (`node` itself is level 0), `None` once the root is reached without meeting it.
    /// Costs at most [`MAX_DIR_DEPTH`] record reads, whatever the tree.
    fn walk_up(&self, t: &mut Txn<'_>, mut node: u64, stop: Option<u64>) -> Result<Option<usize>> {
        let mut seen: std::collections::HashSet<u64> = std::collections::HashSet::new();
        for level in 0..MAX_DIR_DEPTH {
            if Some(node) == stop {
                return Ok(Some(level));
            }
            if node == ROOT_INO {
                return Ok(None);
            }
            if !seen.insert(node) {
                return Err(self.corrupt(node, "directory parent chain loops".into()));
            }
            node = dir_inode(t, node)?.parent;
        }
        Err(FsError::TooDeep)
    }
    /// Up to `max` entries after `cookie` (0 = from the start; "." and ".." included).
    pub fn readdir(&self, ino: u64, cookie: u64, max: usize) -> Result<Vec<DirEntry>> {
        let dir = self.read_inode(ino)?.ok_or(FsError::NotFound)?;
        if dir.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        let mut out = Vec::new();
        if cookie < 1 {
            out.push(DirEntry {
                cookie: 1,
                ino,
                kind: Kind::Dir,
                name: b".".to_vec(),
            });
        }
        if cookie < 2 {
            out.push(DirEntry {
                cookie: 2,
                ino: dir.parent,
                kind: Kind::Dir,
                name: b"..".to_vec(),
            });
        }
        let prefix = self.dir_prefix(ino);
        let mut start = prefix.to_vec();
        if cookie >= 3 {
            start.extend_from_slice(&((cookie - 3) << 2).to_be_bytes());
        }
        while out.len() < max {
            let page =
                self.engine
                    .scan(sealvol_store::Cf::Dirents, &prefix, &start, max.min(512))?;
            let n = page.len();
            for (k, v) in &page {
                let c = cookie_of(k);
                if c <= cookie {
                    continue;
                }
                let d: Dirent = self.open_meta(sealvol_crypto::Domain::Dirent, k, v, ino)?;
                out.push(DirEntry {
                    cookie: c,
                    ino: d.ino,
                    kind: d.kind,
                    name: d.name,
                });
                if out.len() >= max {
                    break;
                }
            }
            match page.last() {
                Some((k, _)) if n >= max.min(512) => {
                    start = k.clone();
                    start.push(0);
                }
                _ => break,
            }
        }
        Ok(out)
    }

    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>> {
        let i = self.read_inode(ino)?.ok_or(FsError::NotFound)?;
        if i.kind != Kind::Symlink {
            return Err(FsError::Invalid("not a symlink"));
        }
        Ok(i.target)
    }

    /// chmod, chown, utimens and truncate.
    pub fn setattr(&self, ino: u64, a: &SetAttr) -> Result<Inode> {
        if let Some(size) = a.size {
            self.truncate(ino, size)?;
        }
        let now = self.clock.now();
        let times_only = a.perm.is_none() && a.uid.is_none() && a.gid.is_none();
        if times_only
            && a.size.is_none()
            && self.set_pending_times(ino, a.atime, a.mtime, a.ctime.unwrap_or(now))
        {
            return self.getattr(ino);
        }
        if let Some(mt) = a.mtime {
            // A write-out pending since the truncate above commits this mtime too.
            self.set_pending_times(ino, None, Some(mt), a.ctime.unwrap_or(now));
        }
        // The kernel's writeback cache sends the times it kept of a file as it drops the
        // inode, which after an unlink is just before the delete (an `rm -rf` sends one per
        // file, and waits for the answer). With no name and no open handle, nothing but the
        // kernel can see these times: they are answered, not committed (nor logged for other
        // hosts to replay), and without waiting for the commit lock: an inode without links
        // never gains one again, and the open count is not under that lock anyway.
        if times_only && a.size.is_none() && !self.is_open(ino) {
            let mut i = self.read_inode(ino)?.ok_or(FsError::NotFound)?;
            if i.nlink == 0 {
                i.apply_times(a.atime, a.mtime, a.ctime.unwrap_or(now));
                self.overlay_open_state(&mut i);
                return Ok(i);
            }
        }
        let mut t = self.begin();
        let mut i = t.inode(ino)?.ok_or(FsError::NotFound)?;
        if a.uid.is_some() || a.gid.is_some() {
            // chown clears setuid, and setgid where it means "set group id" (group-executable),
            // whoever calls it.
            i.kill_suidgid();
            i.uid = a.uid.unwrap_or(i.uid);
            i.gid = a.gid.unwrap_or(i.gid);
        }
        if let Some(p) = a.perm {
            i.perm = p & 0o7777;
        }
        if a.kill_suidgid && a.size.is_some() {
            i.kill_suidgid();
        }
        i.apply_times(a.atime, a.mtime, a.ctime.unwrap_or(now));
        t.put_inode(i.clone());
        t.commit(Durability::Process)?;
        self.overlay_open_state(&mut i);
        Ok(i)
    }

    /// A write by a caller without CAP_FSETID (the kernel flags it under
    /// FUSE_HANDLE_KILLPRIV_V2): clear setuid, and setgid where it means "set group id". A
    /// transaction only when a bit is set, which the kernel checked before flagging the write.
    /// Returns whether a bit was cleared (the kernel's cached mode is then stale).
    pub fn kill_suidgid(&self, ino: u64) -> Result<bool> {
        let i = self.read_inode(ino)?.ok_or(FsError::NotFound)?;
        if i.suidgid_to_kill() == 0 {
            return Ok(false);
        }
        let mut t = self.begin();
        let mut i = t.inode(ino)?.ok_or(FsError::NotFound)?;
        if i.suidgid_to_kill() == 0 {
            return Ok(false);
        }
        i.kill_suidgid();
        i.ctime = self.clock.now();
        t.put_inode(i);
        t.commit(Durability::Process)?;
        Ok(true)
    }
}
