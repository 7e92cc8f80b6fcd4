//! The FUSE adapter: kernel requests onto [`Volume`] methods. Each callback replies exactly
//! once; errors map to an errno in one place ([`errno`]); nothing here panics on I/O.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, MountOption, Notifier, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, SessionACL, TimeOrNow, WriteFlags,
};
use sealvol_store::StoreError;
pub mod replica;

use sealvol_volume::{Caller, FsError, Inode, Kind, SetAttr, Ts, Volume, ROOT_INO};

/// The largest read or write request the kernel sends (and readahead request it makes): 1 MiB.
pub const MAX_REQUEST: u32 = 1 << 20;

/// The mount's readahead window in KiB, set through the mount's backing device in sysfs (the
/// mount process does it; FUSE's default is 128 KiB, one request at a time). A window of several
/// requests keeps them in flight, opened in parallel while the store waits for the disk
/// (measured in docs/benchmarks.md).
pub const READAHEAD_KB: u32 = 4096;

/// How long the kernel may cache names and attributes. This mount is the only writer of its
/// store, so caching is safe; it stays short so that a future sync layer's changes show soon.
const TTL: Duration = Duration::from_secs(1);

/// The one mapping from volume errors to errno.
pub fn errno(e: &FsError) -> Errno {
    match e {
        FsError::NotFound => Errno::ENOENT,
        FsError::Exists => Errno::EEXIST,
        FsError::NotDir => Errno::ENOTDIR,
        FsError::IsDir => Errno::EISDIR,
        FsError::NotEmpty => Errno::ENOTEMPTY,
        FsError::Invalid(_) => Errno::EINVAL,
        FsError::NameTooLong => Errno::ENAMETOOLONG,
        FsError::NoXattr => Errno::ENODATA,
        FsError::Range => Errno::ERANGE,
        FsError::TooBig => Errno::EFBIG,
        FsError::TooDeep => Errno::EMLINK,
        FsError::NotSupported(_) => Errno::EOPNOTSUPP,
        FsError::Store(StoreError::NoSpace(_)) | FsError::XattrSpace => Errno::ENOSPC,
        FsError::Corrupt { .. }
        | FsError::Store(_)
        | FsError::Crypto(_)
        | FsError::Record(_)
        | FsError::Setup(_) => Errno::EIO,
    }
}

fn to_system_time(t: Ts) -> SystemTime {
    if t.secs >= 0 {
        UNIX_EPOCH + Duration::new(t.secs as u64, t.nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs((-t.secs) as u64) + Duration::from_nanos(t.nanos as u64)
    }
}

fn to_ts(t: SystemTime) -> Ts {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => Ts {
            secs: d.as_secs() as i64,
            nanos: d.subsec_nanos(),
        },
        Err(e) => {
            let d = e.duration();
            let mut secs = -(d.as_secs() as i64);
            let mut nanos = d.subsec_nanos();
            if nanos > 0 {
                secs -= 1;
                nanos = 1_000_000_000 - nanos;
            }
            Ts { secs, nanos }
        }
    }
}

fn file_type(k: Kind) -> FileType {
    match k {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
        Kind::CharDev => FileType::CharDevice,
        Kind::BlockDev => FileType::BlockDevice,
    }
}

fn attr(i: &Inode) -> FileAttr {
    FileAttr {
        ino: INodeNo(i.ino),
        size: i.size,
        blocks: i.size.div_ceil(512),
        atime: to_system_time(i.atime),
        mtime: to_system_time(i.mtime),
        ctime: to_system_time(i.ctime),
        crtime: to_system_time(i.crtime),
        kind: file_type(i.kind),
        perm: (i.perm & 0o7777) as u16,
        nlink: i.nlink,
        uid: i.uid,
        gid: i.gid,
        rdev: i.rdev,
        blksize: 4096,
        flags: 0,
    }
}

/// The generation the kernel gets with every entry of `i` (lookup, create, mkdir, link,
/// READDIRPLUS). The kernel keys its inodes by number; when a number comes back with another
/// generation it treats the inode it holds as gone (a "bad" inode, dropped from its cache,
/// its dentries invalidated) instead of carrying the old object's cached type, mode and owner
/// over to the new one, which `default_permissions` would check against. Numbers are not meant
/// to be reused, but if one ever is (a rolled-back counters record, a replayed log), a
/// constant generation would let the kernel confuse the two objects.
///
/// Derived from the creation time, which is set once when the inode is made and never changes
/// (so the kernel never sees an inode's generation change while it lives), and folded to 32
/// bits because the kernel keeps 32. The root is generation 0, as the kernel made it at mount.
fn generation(i: &Inode) -> Generation {
    if i.ino == ROOT_INO {
        return Generation(0);
    }
    let t = (i.crtime.secs as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(u64::from(i.crtime.nanos));
    Generation(u64::from((t ^ (t >> 32)) as u32))
}

fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
    }
}

/// An xattr value or name list: its size when the caller asks for it (`size` 0), else the
/// bytes if they fit.
pub(crate) fn reply_xattr(r: Result<Vec<u8>, Errno>, size: u32, reply: ReplyXattr) {
    match r {
        Ok(v) if size == 0 => reply.size(v.len() as u32),
        Ok(v) if v.len() <= size as usize => reply.data(&v),
        Ok(_) => reply.error(Errno::ERANGE),
        Err(e) => reply.error(e),
    }
}

/// statfs(2) of a mount: the space of the filesystem holding its store, `files` files in use
/// and 2^32 more free.
pub(crate) fn reply_statfs(store_dir: &Path, files: u64, reply: ReplyStatfs) {
    match rustix::fs::statvfs(store_dir) {
        Ok(s) => {
            let ffree = 1u64 << 32;
            reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                files + ffree,
                ffree,
                s.f_bsize as u32,
                255,
                s.f_frsize as u32,
            )
        }
        Err(_) => reply.error(Errno::EIO),
    }
}

/// A mounted volume.
pub struct SealFs {
    vol: Arc<Volume>,
    /// Where the store lives, for statfs.
    store_dir: PathBuf,
    /// Messages to the kernel outside replies, set once the session exists.
    notifier: Arc<OnceLock<Notifier>>,
    /// Requests served so far (see [`SealFs::requests`]).
    requests: Arc<AtomicU64>,
    /// Write requests served so far (see [`SealFs::writes`]).
    writes: Arc<AtomicU64>,
}

impl SealFs {
    pub fn new(vol: Arc<Volume>, store_dir: &Path) -> Self {
        SealFs {
            vol,
            store_dir: store_dir.to_path_buf(),
            notifier: Arc::new(OnceLock::new()),
            requests: Arc::default(),
            writes: Arc::default(),
        }
    }

    /// A counter of the write requests served: the mount's housekeeping lends the plaintext
    /// cache the write path's memory while it stands still (each write takes it back first).
    pub fn writes(&self) -> Arc<AtomicU64> {
        self.writes.clone()
    }

    /// A counter of the requests served, every one but `statfs` (which liveness checks send
    /// to idle mounts): the mount's housekeeping reads it to tell an idle volume, whose memory
    /// it gives back.
    pub fn requests(&self) -> Arc<AtomicU64> {
        self.requests.clone()
    }

    /// Count a request (see [`SealFs::requests`]).
    fn busy(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Where the session's notifier goes once the session is created (before it serves).
    pub fn notifier_slot(&self) -> Arc<OnceLock<Notifier>> {
        self.notifier.clone()
    }

    /// Make the kernel read `ino`'s attributes again at their next use.
    fn invalidate_attrs(&self, ino: u64) {
        let sent = match self.notifier.get() {
            Some(n) => n.inval_inode(INodeNo(ino), -1, 0),
            None => Err(std::io::Error::other("no notifier")),
        };
        if let Err(e) = sent {
            tracing::error!(ino, error = %e, "cannot make the kernel drop stale attributes");
        }
    }

    /// Mount options: every user may enter (containers run as any uid) and the kernel checks
    /// permissions against the modes we report.
    pub fn config(store_dir: &Path, threads: usize) -> Config {
        let mut c = Config::default();
        c.mount_options = vec![
            MountOption::FSName(format!("sealvol:{}", store_dir.display())),
            MountOption::Subtype("sealvol".into()),
            MountOption::DefaultPermissions,
            MountOption::Dev,
            MountOption::Suid,
        ];
        c.acl = SessionACL::All;
        c.n_threads = Some(threads.max(1));
        c.clone_fd = true;
        c
    }

    fn log_err(&self, op: &str, ino: u64, e: &FsError) -> Errno {
        let n = errno(e);
        if n == Errno::EIO {
            tracing::error!(op, ino, error = %e, "I/O error returned to the application");
        }
        n
    }

    fn entry(&self, r: Result<Inode, FsError>, op: &str, parent: u64, reply: ReplyEntry) {
        match r {
            Ok(i) => {
                // Every entry reply is one more kernel reference, until FORGET.
                self.vol.remember(i.ino);
                reply.entry(&TTL, &attr(&i), generation(&i))
            }
            Err(e) => reply.error(self.log_err(op, parent, &e)),
        }
    }

    fn empty(&self, r: Result<(), FsError>, op: &str, ino: u64, reply: ReplyEmpty) {
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.log_err(op, ino, &e)),
        }
    }

    fn xattr_reply(&self, r: Result<Vec<u8>, FsError>, size: u32, ino: u64, reply: ReplyXattr) {
        reply_xattr(r.map_err(|e| self.log_err("xattr", ino, &e)), size, reply)
    }
}

impl Filesystem for SealFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(MAX_REQUEST);
        let _ = config.set_max_readahead(MAX_REQUEST);
        // The kernel's writeback cache: small and random writes land in the page cache and
        // reach us as large writes at write-back, close or fsync. The kernel then owns the
        // file's size and mtime while pages are dirty, handles O_APPEND itself, and sends the
        // times with a setattr after the data.
        if config
            .add_capabilities(fuser::InitFlags::FUSE_WRITEBACK_CACHE)
            .is_err()
        {
            tracing::warn!(
                "the kernel offers no FUSE writeback cache: every write is a round trip"
            );
        }
        // The filesystem, not the kernel, clears setuid and setgid on write, truncate and
        // chown (the kernel still removes `security.capability` itself). The kernel then
        // stops asking for `security.capability` before every write (it marks an inode
        // S_NOSEC once it found none), and stops reading a file's attributes before every
        // chown: an untar sent 14 requests per file, 3 of them these.
        if config
            .add_capabilities(fuser::InitFlags::FUSE_HANDLE_KILLPRIV_V2)
            .is_err()
        {
            tracing::info!("the kernel does not offer FUSE_HANDLE_KILLPRIV_V2; it clears setuid and setgid itself");
        }
        // Directory listings with each entry's attributes (READDIRPLUS), when the kernel sees
        // that a listing is followed by lookups of its entries (`ls -l`, `find`, `rm -r`):
        // one request per listing page instead of one lookup per entry.
        let _ = config.add_capabilities(
            fuser::InitFlags::FUSE_DO_READDIRPLUS | fuser::InitFlags::FUSE_READDIRPLUS_AUTO,
        );
        Ok(())
    }

    fn destroy(&mut self) {
        if let Err(e) = self.vol.sync_all() {
            tracing::error!(error = %e, "writing out buffered data at unmount failed");
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.busy();
        self.entry(
            self.vol.lookup(parent.0, name.as_bytes()),
            "lookup",
            parent.0,
            reply,
        )
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.busy();
        // Unlinked files the kernel forgets are deleted by the purger thread, many per
        // transaction (an `rm -rf` forgets thousands in a burst).
        self.vol.forget_deferred(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.busy();
        match self.vol.getattr(ino.0) {
            Ok(i) => reply.attr(&TTL, &attr(&i)),
            Err(e) => reply.error(self.log_err("getattr", ino.0, &e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        self.busy();
        // "Now" for utimensat(UTIME_NOW) is the kernel's request time: the wall clock.
        #[allow(clippy::disallowed_methods)]
        let now = to_ts(SystemTime::now());
        let t = |x: Option<TimeOrNow>| {
            x.map(|v| match v {
                TimeOrNow::SpecificTime(s) => to_ts(s),
                TimeOrNow::Now => now,
            })
        };
        let a = SetAttr {
            perm: mode.map(|m| m & 0o7777),
            uid,
            gid,
            size,
            atime: t(atime),
            mtime: t(mtime),
            ctime: ctime.map(to_ts),
            // The kernel flags a truncate by a caller without CAP_FSETID (FATTR_KILL_SUIDGID),
            // but fuser 0.18 does not pass that flag on: a caller other than root stands for it.
            kill_suidgid: size.is_some() && req.uid() != 0,
        };
        match self.vol.setattr(ino.0, &a) {
            Ok(i) => reply.attr(&TTL, &attr(&i)),
            Err(e) => reply.error(self.log_err("setattr", ino.0, &e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.busy();
        match self.vol.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(self.log_err("readlink", ino.0, &e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        self.busy();
        let kind = match mode & libc::S_IFMT {
            libc::S_IFREG | 0 => Kind::File,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFSOCK => Kind::Socket,
            libc::S_IFCHR => Kind::CharDev,
            libc::S_IFBLK => Kind::BlockDev,
            _ => return reply.error(Errno::EINVAL),
        };
        let r = self.vol.mknod(
            caller(req),
            parent.0,
            name.as_bytes(),
            kind,
            mode & !umask,
            rdev,
        );
        self.entry(r, "mknod", parent.0, reply)
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        self.busy();
        let r = self
            .vol
            .mkdir(caller(req), parent.0, name.as_bytes(), mode & !umask);
        self.entry(r, "mkdir", parent.0, reply)
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.busy();
        self.empty(
            self.vol.unlink(parent.0, name.as_bytes()),
            "unlink",
            parent.0,
            reply,
        )
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.busy();
        self.empty(
            self.vol.rmdir(parent.0, name.as_bytes()),
            "rmdir",
            parent.0,
            reply,
        )
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        self.busy();
        let r = self.vol.symlink(
            caller(req),
            parent.0,
            link_name.as_bytes(),
            target.as_os_str().as_bytes(),
        );
        self.entry(r, "symlink", parent.0, reply)
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        self.busy();
        let mut f = 0;
        if flags.contains(RenameFlags::RENAME_NOREPLACE) {
            f |= sealvol_volume::RENAME_NOREPLACE;
        }
        if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            f |= sealvol_volume::RENAME_EXCHANGE;
        }
        if flags.bits() & !(libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE) != 0 {
            return reply.error(Errno::EINVAL);
        }
        let r = self.vol.rename(
            parent.0,
            name.as_bytes(),
            newparent.0,
            newname.as_bytes(),
            f,
        );
        self.empty(r, "rename", parent.0, reply)
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        self.busy();
        self.entry(
            self.vol.link(ino.0, newparent.0, newname.as_bytes()),
            "link",
            ino.0,
            reply,
        )
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.busy();
        match self.vol.open_file(ino.0) {
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(self.log_err("open", ino.0, &e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.busy();
        match self.vol.read(ino.0, offset, size) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(self.log_err("read", ino.0, &e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.busy();
        self.writes.fetch_add(1, Ordering::Relaxed);
        // Memory the plaintext cache borrowed while nothing was written goes back to the write
        // path before it buffers anything.
        self.vol.repay_cache_loan();
        if write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID) {
            match self.vol.kill_suidgid(ino.0) {
                // The write's reply refreshes the kernel's size and times, not the mode, which
                // it would go on serving (and honouring at exec) until the attribute timeout.
                Ok(true) => self.invalidate_attrs(ino.0),
                Ok(false) => {}
                Err(e) => return reply.error(self.log_err("write", ino.0, &e)),
            }
        }
        match self.vol.write(ino.0, offset, data) {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(self.log_err("write", ino.0, &e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _lo: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.busy();
        self.empty(self.vol.flush(ino.0), "flush", ino.0, reply)
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.busy();
        self.empty(self.vol.release_file(ino.0), "release", ino.0, reply)
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.busy();
        self.empty(self.vol.fsync(ino.0), "fsync", ino.0, reply)
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.busy();
        match self.vol.getattr(ino.0) {
            Ok(i) if i.kind == Kind::Dir => reply.opened(FileHandle(0), FopenFlags::empty()),
            Ok(_) => reply.error(Errno::ENOTDIR),
            Err(e) => reply.error(self.log_err("opendir", ino.0, &e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.busy();
        match self.vol.readdir(ino.0, offset, 256) {
            Ok(entries) => {
                for e in entries {
                    if reply.add(
                        INodeNo(e.ino),
                        e.cookie,
                        file_type(e.kind),
                        OsStr::from_bytes(&e.name),
                    ) {
                        break;
                    }
                }
                reply.ok()
            }
            Err(e) => reply.error(self.log_err("readdir", ino.0, &e)),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        self.busy();
        let entries = match self.vol.readdir(ino.0, offset, 256) {
            Ok(entries) => entries,
            Err(e) => return reply.error(self.log_err("readdirplus", ino.0, &e)),
        };
        let mut added = 0;
        for e in entries {
            let i = match self.vol.getattr(e.ino) {
                Ok(i) => i,
                // Deleted since the listing was read: not listed.
                Err(FsError::NotFound) => continue,
                Err(err) if added == 0 => {
                    return reply.error(self.log_err("readdirplus", e.ino, &err))
                }
                // The entries so far; the next call starts at this one and reports the error.
                Err(_) => break,
            };
            if reply.add(
                INodeNo(e.ino),
                e.cookie,
                OsStr::from_bytes(&e.name),
                &TTL,
                &attr(&i),
                generation(&i),
            ) {
                break; // the reply is full
            }
            added += 1;
            // The kernel counts every entry it was given as a lookup, except "." and "..".
            if e.name != b"." && e.name != b".." {
                self.vol.remember(e.ino);
            }
        }
        reply.ok()
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.busy();
        let r = self.vol.engine().sync().map_err(FsError::from);
        self.empty(r, "fsyncdir", ino.0, reply)
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let files = self
            .vol
            .stats()
            .map(|s| s.files + s.dirs + s.others)
            .unwrap_or(0);
        reply_statfs(&self.store_dir, files, reply)
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        self.busy();
        self.empty(
            self.vol.setxattr(ino.0, name.as_bytes(), value, flags),
            "setxattr",
            ino.0,
            reply,
        )
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        self.busy();
        self.xattr_reply(
            self.vol.getxattr(ino.0, name.as_bytes()),
            size,
            ino.0,
            reply,
        )
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.busy();
        let r = self.vol.listxattr(ino.0).map(|names| {
            let mut out = Vec::new();
            for n in names {
                out.extend_from_slice(&n);
                out.push(0);
            }
            out
        });
        self.xattr_reply(r, size, ino.0, reply)
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.busy();
        self.empty(
            self.vol.removexattr(ino.0, name.as_bytes()),
            "removexattr",
            ino.0,
            reply,
        )
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        self.busy();
        let r = self
            .vol
            .mknod(
                caller(req),
                parent.0,
                name.as_bytes(),
                Kind::File,
                mode & !umask,
                0,
            )
            .and_then(|i| self.vol.open_file(i.ino).map(|_| i));
        match r {
            Ok(i) => {
                self.vol.remember(i.ino);
                reply.created(
                    &TTL,
                    &attr(&i),
                    generation(&i),
                    FileHandle(0),
                    FopenFlags::FOPEN_KEEP_CACHE,
                )
            }
            Err(e) => reply.error(self.log_err("create", parent.0, &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inode(ino: u64, kind: Kind, perm: u32, crtime: Ts) -> Inode {
        Inode {
            ino,
            kind,
            perm,
            uid: 0,
            gid: 0,
            nlink: 1,
            size: 0,
            atime: crtime,
            mtime: crtime,
            ctime: crtime,
            crtime,
            rdev: 0,
            parent: ROOT_INO,
            target: Vec::new(),
            xattrs: Default::default(),
            holes: Vec::new(),
        }
    }

    #[test]
    fn generation_is_fixed_for_an_inode_and_changes_when_its_number_is_reused() {
        let made = Ts {
            secs: 1_700_000_000,
            nanos: 123_456_789,
        };
        let dir = inode(7, Kind::Dir, 0o700, made);
        let g = generation(&dir);
        // Whatever happens to the inode while it lives, the kernel sees one generation.
        let mut changed = dir.clone();
        changed.perm = 0o777;
        changed.uid = 65534;
        changed.nlink = 5;
        changed.size = 4096;
        changed.mtime = Ts {
            secs: made.secs + 100,
            nanos: 1,
        };
        changed.ctime = changed.mtime;
        assert_eq!(generation(&changed), g);
        // The same number made again later (a nanosecond later, or a second) is another object.
        for later in [
            Ts {
                secs: made.secs,
                nanos: made.nanos + 1,
            },
            Ts {
                secs: made.secs + 1,
                nanos: made.nanos,
            },
        ] {
            let file = inode(7, Kind::File, 0o644, later);
            assert_ne!(generation(&file), g, "{later:?}");
        }
        // The kernel keeps 32 bits; the root stays at the generation the kernel gave it.
        assert!(g.0 <= u64::from(u32::MAX));
        assert_eq!(
            generation(&inode(ROOT_INO, Kind::Dir, 0o755, made)),
            Generation(0)
        );
    }
}
