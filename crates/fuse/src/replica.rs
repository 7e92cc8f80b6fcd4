//! A mounted replica: kernel requests onto a [`Replica`] of a shared volume, and remote
//! entries applied to it while it is mounted ([`ReplicaMount::apply`]) made visible to the
//! processes on this host through FUSE notifications.
//!
//! - **Caching.** The kernel may keep names, attributes and file pages for [`REPLICA_TTL`]
//!   (long: the mount is told of every remote change). Local changes go through the kernel,
//!   which updates its own caches; after each batch of remote entries the mount invalidates
//!   every name and inode that batch changed (`inval_entry`, `inval_inode` with the whole data
//!   range), so no stale name, attribute or page is served once the batch is applied. The
//!   kernel's writeback cache stays off here: an invalidation must never meet dirty pages.
//! - **Writes** are buffered per file as one contiguous run (up to [`RUN_BYTES`]) and become
//!   one [`Replica::write_at`] operation when the run cannot grow, on flush, fsync, release, a
//!   read or attribute request of that file, and before each batch of remote entries (so a
//!   local write records the version it was made on, and a concurrent remote one makes a
//!   conflict copy instead of being overwritten).
//! - **Chunks not here yet.** A read that needs a chunk that has not been replicated waits for
//!   it up to [`ReplicaFs::pending_wait`] without holding the replica, then fails with EIO and a
//!   log line naming the chunk.
//! - **Stalls.** Remote entries are applied in batches of [`APPLY_BATCH`] under the replica's
//!   write lock; local requests wait at most one batch.
//!
//! Inode numbers are this mount's own: the root is 1, every other inode gets the next number
//! the first time the kernel is told of it, and keeps it while the mount lives.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, MountOption, Notifier, OpenFlags, RenameFlags, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request, TimeOrNow, WriteFlags,
};
use parking_lot::{Mutex, RwLock};
use sealvol_replica::{
    Arrivals, Changes, Error, InodeRec, Kind, NodeId, Received, Replica, SealedEntry,
};
use sealvol_store::StoreError;

/// How long the kernel may cache names and attributes of a mounted replica: remote changes
/// invalidate what they touch, local ones go through the kernel.
pub const REPLICA_TTL: Duration = Duration::from_secs(60);
/// Remote entries applied under one hold of the replica's write lock.
pub const APPLY_BATCH: usize = 64;
/// The largest run of buffered writes to one file before it becomes an operation.
pub const RUN_BYTES: usize = 4 << 20;
/// How long a read waits for a chunk that has not been replicated yet, by default.
pub const PENDING_WAIT: Duration = Duration::from_secs(5);

/// The one mapping from replica errors to errno.
pub fn replica_errno(e: &Error) -> Errno {
    match e {
        Error::NotFound => Errno::ENOENT,
        Error::Exists => Errno::EEXIST,
        Error::NotEmpty => Errno::ENOTEMPTY,
        Error::NotDir => Errno::ENOTDIR,
        Error::IsDir => Errno::EISDIR,
        Error::Invalid(_) => Errno::EINVAL,
        Error::Store(StoreError::NoSpace(_)) => Errno::ENOSPC,
        Error::Pending(_) | Error::Corrupt(_) | Error::Store(_) => Errno::EIO,
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

fn ms_time(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

fn time_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// This mount's inode numbers for the replica's inode ids.
#[derive(Default)]
struct Inos {
    by_id: HashMap<NodeId, u64>,
    by_ino: HashMap<u64, NodeId>,
    next: u64,
}

impl Inos {
    fn ino(&mut self, id: NodeId) -> u64 {
        if id == NodeId::ROOT {
            return 1;
        }
        if let Some(n) = self.by_id.get(&id) {
            return *n;
        }
        self.next = self.next.max(1) + 1;
        self.by_id.insert(id, self.next);
        self.by_ino.insert(self.next, id);
        self.next
    }
    fn id(&self, ino: u64) -> Option<NodeId> {
        if ino == 1 {
            return Some(NodeId::ROOT);
        }
        self.by_ino.get(&ino).copied()
    }
    /// The number the kernel knows `id` by, if it was ever told of it.
    fn known(&self, id: NodeId) -> Option<u64> {
        if id == NodeId::ROOT {
            return Some(1);
        }
        self.by_id.get(&id).copied()
    }
}

/// Writes to one file not yet made an operation: `data` at byte `at`.
#[derive(Default)]
struct Run {
    at: u64,
    data: Vec<u8>,
}

struct Shared {
    rep: RwLock<Replica>,
    arrivals: Arrivals,
    inos: Mutex<Inos>,
    /// Per file, its buffered run; the file's mutex is held while the run is made an operation,
    /// so a reader of the file that flushes first never sees neither the run nor its operation.
    runs: Mutex<HashMap<u64, Arc<Mutex<Run>>>>,
    notifier: OnceLock<Notifier>,
    store_dir: PathBuf,
    pending_wait: Duration,
    /// Directory listings by open directory handle.
    listings: Mutex<HashMap<u64, Arc<Listing>>>,
    next_fh: AtomicU64,
}

/// A directory's entries: (name, inode, kind).
type Listing = Vec<(Vec<u8>, NodeId, Kind)>;

/// A replica served over FUSE. Build with [`ReplicaFs::new`], mount it with a
/// [`fuser::Session`], and hand the session's notifier to [`ReplicaMount::set_notifier`].
pub struct ReplicaFs {
    s: Arc<Shared>,
}

/// What the sync layer holds on a mounted replica: it applies remote entries and chunks, and
/// reads what to send to peers.
#[derive(Clone)]
pub struct ReplicaMount {
    s: Arc<Shared>,
}

/// What one [`ReplicaMount::apply`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ApplyReport {
    pub applied: usize,
    pub duplicate: usize,
    pub held: usize,
    pub refused: usize,
    /// Kernel notifications sent (names and inodes).
    pub invalidated: usize,
    /// The longest hold of the replica's write lock, which local requests wait behind.
    pub longest_hold: Duration,
}

impl ReplicaFs {
    /// Serve `rep`; `store_dir` is where its store lives (for statfs); a read waits up to
    /// `pending_wait` for a chunk that has not arrived.
    pub fn new(
        rep: Replica,
        store_dir: &Path,
        pending_wait: Duration,
    ) -> (ReplicaFs, ReplicaMount) {
        let s = Arc::new(Shared {
            arrivals: rep.arrivals(),
            rep: RwLock::new(rep),
            inos: Mutex::new(Inos::default()),
            runs: Mutex::new(HashMap::new()),
            notifier: OnceLock::new(),
            store_dir: store_dir.to_path_buf(),
            pending_wait,
            listings: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
        });
        (ReplicaFs { s: s.clone() }, ReplicaMount { s })
    }

    /// Mount options for a replica.
    pub fn config(name: &str, threads: usize) -> Config {
        let mut c = Config::default();
        c.mount_options = vec![
            MountOption::FSName(format!("sealvol-replica:{name}")),
            MountOption::Subtype("sealvol".into()),
            MountOption::DefaultPermissions,
        ];
        c.n_threads = Some(threads.max(1));
        c
    }

    /// How long a read waits for a chunk that has not been replicated here.
    pub fn pending_wait(&self) -> Duration {
        self.s.pending_wait
    }
}

impl ReplicaMount {
    /// Where kernel notifications go, once the session exists.
    pub fn set_notifier(&self, n: Notifier) {
        let _ = self.s.notifier.set(n);
    }

    /// Read access to the replica (its version vector, entries and chunks for a peer).
    pub fn with<R>(&self, f: impl FnOnce(&Replica) -> R) -> R {
        f(&self.s.rep.read())
    }

    /// Apply entries from elsewhere, [`APPLY_BATCH`] at a time, each batch's changes made
    /// visible to this host's processes before the next. Buffered local writes become
    /// operations first.
    pub fn apply(&self, entries: &[SealedEntry]) -> sealvol_replica::Result<ApplyReport> {
        let mut report = ApplyReport::default();
        for batch in entries.chunks(APPLY_BATCH) {
            self.s.flush_all()?;
            let (received, changes, held) = {
                let mut rep = self.s.rep.write();
                let t0 = Instant::now();
                let received = rep.receive_batch(batch);
                let changes = rep.take_changes();
                let held = t0.elapsed();
                // Handed to the local requests waiting, not taken back at once for the next
                // batch: each waits at most one batch.
                parking_lot::RwLockWriteGuard::unlock_fair(rep);
                (received, changes, held)
            };
            report.longest_hold = report.longest_hold.max(held);
            report.invalidated += self.s.invalidate(&changes);
            for r in received? {
                match r {
                    Received::Applied => report.applied += 1,
                    Received::Duplicate => report.duplicate += 1,
                    Received::Held(_) => report.held += 1,
                    Received::Refused(_) => report.refused += 1,
                }
            }
        }
        Ok(report)
    }

    /// Take in a chunk from elsewhere (verified before it is stored); wakes reads waiting for
    /// it.
    pub fn receive_chunk(&self, addr: &[u8; 32], sealed: &[u8]) -> sealvol_replica::Result<bool> {
        self.s.rep.read().receive_chunk(addr, sealed)
    }

    /// Make every buffered write an operation (what a peer is sent next includes them).
    pub fn flush(&self) -> sealvol_replica::Result<()> {
        self.s.flush_all()
    }
}

impl Shared {
    fn id(&self, ino: INodeNo) -> Result<NodeId, Errno> {
        self.inos.lock().id(ino.0).ok_or(Errno::ENOENT)
    }

    fn attr(&self, i: &InodeRec, ino: u64) -> FileAttr {
        let nlink = match i.kind {
            Kind::Dir => 2,
            _ => i.links.len().max(1) as u32,
        };
        FileAttr {
            ino: INodeNo(ino),
            size: i.size,
            blocks: i.size.div_ceil(512),
            atime: ms_time(i.atime),
            mtime: ms_time(i.mtime),
            ctime: ms_time(i.ctime),
            crtime: ms_time(i.ctime),
            kind: file_type(i.kind),
            perm: (i.perm & 0o7777) as u16,
            nlink,
            uid: i.uid,
            gid: i.gid,
            rdev: i.rdev,
            blksize: 4096,
            flags: 0,
        }
    }

    /// The attributes of inode `id`, numbering it for the kernel.
    fn attr_of(&self, rep: &Replica, id: NodeId) -> Result<FileAttr, Error> {
        let i = rep.inode(id)?.ok_or(Error::NotFound)?;
        let ino = self.inos.lock().ino(id);
        Ok(self.attr(&i, ino))
    }

    /// The inode a tree node names.
    fn inode_of(rep: &Replica, node: NodeId) -> Result<NodeId, Error> {
        Ok(rep.node(node)?.ok_or(Error::NotFound)?.inode)
    }

    fn run(&self, ino: u64) -> Option<Arc<Mutex<Run>>> {
        self.runs.lock().get(&ino).cloned()
    }

    /// Make the file's buffered run an operation; the caller holds the run's mutex.
    fn flush_run(&self, ino: u64, run: &mut Run) -> Result<(), Error> {
        if run.data.is_empty() {
            return Ok(());
        }
        let id = self.inos.lock().id(ino).ok_or(Error::NotFound)?;
        let mut rep = self.rep.write();
        rep.write_at(id, run.at, &run.data)?;
        // A local change: the kernel saw it, nothing to invalidate.
        rep.take_changes();
        run.data.clear();
        Ok(())
    }

    fn flush(&self, ino: u64) -> Result<(), Error> {
        match self.run(ino) {
            Some(run) => self.flush_run(ino, &mut run.lock()),
            None => Ok(()),
        }
    }

    fn flush_all(&self) -> Result<(), Error> {
        let all: Vec<(u64, Arc<Mutex<Run>>)> = self
            .runs
            .lock()
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        for (ino, run) in all {
            self.flush_run(ino, &mut run.lock())?;
        }
        Ok(())
    }

    fn write(&self, ino: u64, offset: u64, data: &[u8]) -> Result<(), Error> {
        let run = self.runs.lock().entry(ino).or_default().clone();
        let mut run = run.lock();
        let end = run.at + run.data.len() as u64;
        if !run.data.is_empty() && (offset != end || run.data.len() + data.len() > RUN_BYTES) {
            self.flush_run(ino, &mut run)?;
        }
        if run.data.is_empty() {
            run.at = offset;
        }
        run.data.extend_from_slice(data);
        if run.data.len() >= RUN_BYTES {
            self.flush_run(ino, &mut run)?;
        }
        Ok(())
    }

    /// A local change through the kernel: applied, its change notes dropped.
    fn local<R>(&self, f: impl FnOnce(&mut Replica) -> Result<R, Error>) -> Result<R, Error> {
        let mut rep = self.rep.write();
        let r = f(&mut rep);
        rep.take_changes();
        r
    }

    /// Tell the kernel to drop what it caches of the changed names and inodes it knows.
    fn invalidate(&self, c: &Changes) -> usize {
        let Some(n) = self.notifier.get() else {
            return 0;
        };
        let (names, inodes): (Vec<(u64, &[u8])>, Vec<u64>) = {
            let inos = self.inos.lock();
            (
                c.names
                    .iter()
                    .filter_map(|(p, name)| inos.known(*p).map(|p| (p, name.as_slice())))
                    .collect(),
                c.inodes.iter().filter_map(|i| inos.known(*i)).collect(),
            )
        };
        let mut sent = 0;
        for (parent, name) in names {
            sent += note(n.inval_entry(INodeNo(parent), OsStr::from_bytes(name)));
        }
        for ino in inodes {
            sent += note(n.inval_inode(INodeNo(ino), 0, 0));
        }
        sent
    }

    /// A directory's entries, `.` and `..` first: (name, inode, kind).
    fn listing(&self, dir: NodeId) -> Result<Listing, Error> {
        let rep = self.rep.read();
        let parent = match rep.node(dir)? {
            Some(n) if dir != NodeId::ROOT => n.parent,
            Some(_) => NodeId::ROOT,
            None => return Err(Error::NotFound),
        };
        let mut out = vec![
            (b".".to_vec(), dir, Kind::Dir),
            (b"..".to_vec(), parent, Kind::Dir),
        ];
        for (name, node) in rep.readdir(dir)? {
            let Some(n) = rep.node(node)? else { continue };
            let Some(i) = rep.inode(n.inode)? else {
                continue;
            };
            out.push((name, n.inode, i.kind));
        }
        Ok(out)
    }

    /// Read with waiting for chunks not replicated yet, without holding the replica meanwhile.
    fn read(&self, id: NodeId, offset: u64, size: u32) -> Result<Vec<u8>, Error> {
        let deadline = Instant::now() + self.pending_wait;
        loop {
            let seen = self.arrivals.count();
            // The replica's lock is let go before waiting: an apply waiting for it would
            // otherwise hold up the chunk's arrival too.
            let got = self.rep.read().read_at(id, offset, u64::from(size));
            match got {
                Err(Error::Pending(chunk)) => {
                    if !self.arrivals.wait_past(seen, deadline) {
                        tracing::warn!(%chunk, "a read waited for a chunk that has not been replicated here yet; it fails with EIO until the chunk arrives");
                        return Err(Error::Pending(chunk));
                    }
                }
                other => return other,
            }
        }
    }
}

/// Count a notification sent; the kernel answers ENOENT for what it no longer caches.
fn note(r: std::io::Result<()>) -> usize {
    match r {
        Ok(()) => 1,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => 0,
        Err(e) => {
            tracing::warn!(error = %e, "a kernel cache invalidation failed; a stale name or page may be served until its timeout");
            0
        }
    }
}

fn fail(op: &str, e: &Error) -> Errno {
    let n = replica_errno(e);
    if n == Errno::EIO {
        tracing::error!(op, error = %e, "I/O error returned to the application");
    }
    n
}

impl ReplicaFs {
    fn entry(&self, op: &str, r: Result<NodeId, Error>, reply: ReplyEntry) {
        let rep = self.s.rep.read();
        match r.and_then(|id| self.s.attr_of(&rep, id)) {
            Ok(a) => reply.entry(&REPLICA_TTL, &a, Generation(0)),
            Err(e) => reply.error(fail(op, &e)),
        }
    }

    fn empty(&self, op: &str, r: Result<(), Error>, reply: ReplyEmpty) {
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail(op, &e)),
        }
    }

    /// unlink(2) or rmdir(2).
    fn remove(
        &self,
        op: &str,
        parent: INodeNo,
        name: &OsStr,
        f: fn(&mut Replica, NodeId, &[u8]) -> Result<sealvol_replica::OpId, Error>,
        reply: ReplyEmpty,
    ) {
        let r = self
            .s
            .id(parent)
            .map_err(|_| Error::NotFound)
            .and_then(|p| self.s.local(|rep| f(rep, p, name.as_bytes()).map(|_| ())));
        self.empty(op, r, reply)
    }

    #[allow(clippy::too_many_arguments)]
    fn create_kind(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        kind: Kind,
        perm: u32,
        target: &[u8],
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let parent = match self.s.id(parent) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let r = self.s.local(|rep| {
            rep.create_node(
                parent,
                name.as_bytes(),
                kind,
                (perm & 0o7777, req.uid(), req.gid()),
                target,
                rdev,
            )
            .map(|(_, inode, _)| inode)
        });
        self.entry("create", r, reply)
    }
}

impl Filesystem for ReplicaFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(crate::MAX_REQUEST);
        let _ = config.set_max_readahead(crate::MAX_REQUEST);
        Ok(())
    }

    fn destroy(&mut self) {
        if let Err(e) = self.s.flush_all() {
            tracing::error!(error = %e, "writing out buffered data at unmount failed");
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let parent = match self.s.id(parent) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let r = {
            let rep = self.s.rep.read();
            rep.lookup(parent, name.as_bytes()).and_then(|n| {
                let n = n.ok_or(Error::NotFound)?;
                Shared::inode_of(&rep, n)
            })
        };
        self.entry("lookup", r, reply)
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let r = self.s.flush(ino.0).and_then(|()| {
            let id = self.s.id(ino).map_err(|_| Error::NotFound)?;
            self.s.attr_of(&self.s.rep.read(), id)
        });
        match r {
            Ok(a) => reply.attr(&REPLICA_TTL, &a),
            Err(e) => reply.error(fail("getattr", &e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        #[allow(clippy::disallowed_methods)]
        let now = SystemTime::now();
        let t = |x: Option<TimeOrNow>| {
            x.map(|v| match v {
                TimeOrNow::SpecificTime(s) => time_ms(s),
                TimeOrNow::Now => time_ms(now),
            })
        };
        let r = self.s.flush(ino.0).and_then(|()| {
            let id = self.s.id(ino).map_err(|_| Error::NotFound)?;
            self.s.local(|rep| {
                if let Some(size) = size {
                    rep.write(id, size, Vec::new())?;
                }
                if mode.is_some()
                    || uid.is_some()
                    || gid.is_some()
                    || atime.is_some()
                    || mtime.is_some()
                {
                    rep.setattr(id, mode.map(|m| m & 0o7777), uid, gid, t(atime), t(mtime))?;
                }
                Ok(id)
            })
        });
        let r = r.and_then(|id| self.s.attr_of(&self.s.rep.read(), id));
        match r {
            Ok(a) => reply.attr(&REPLICA_TTL, &a),
            Err(e) => reply.error(fail("setattr", &e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let r = self
            .s
            .id(ino)
            .map_err(|_| Error::NotFound)
            .and_then(|id| self.s.rep.read().inode(id)?.ok_or(Error::NotFound));
        match r {
            Ok(i) if i.kind == Kind::Symlink => reply.data(&i.target),
            Ok(_) => reply.error(Errno::EINVAL),
            Err(e) => reply.error(fail("readlink", &e)),
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
        let kind = match mode & libc::S_IFMT {
            libc::S_IFREG | 0 => Kind::File,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFSOCK => Kind::Socket,
            libc::S_IFCHR => Kind::CharDev,
            libc::S_IFBLK => Kind::BlockDev,
            _ => return reply.error(Errno::EINVAL),
        };
        self.create_kind(req, parent, name, kind, mode & !umask, b"", rdev, reply)
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
        self.create_kind(req, parent, name, Kind::Dir, mode & !umask, b"", 0, reply)
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let target = target.as_os_str().as_bytes();
        self.create_kind(
            req,
            parent,
            link_name,
            Kind::Symlink,
            0o777,
            target,
            0,
            reply,
        )
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove("unlink", parent, name, Replica::unlink, reply)
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove("rmdir", parent, name, Replica::rmdir, reply)
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
        if flags.contains(RenameFlags::RENAME_EXCHANGE)
            || flags.bits() & !libc::RENAME_NOREPLACE != 0
        {
            return reply.error(Errno::EINVAL);
        }
        let (p, np) = match (self.s.id(parent), self.s.id(newparent)) {
            (Ok(p), Ok(np)) => (p, np),
            _ => return reply.error(Errno::ENOENT),
        };
        let r = self.s.local(|rep| {
            if flags.contains(RenameFlags::RENAME_NOREPLACE)
                && rep.lookup(np, newname.as_bytes())?.is_some()
            {
                return Err(Error::Exists);
            }
            rep.rename(p, name.as_bytes(), np, newname.as_bytes())
                .map(|_| ())
        });
        self.empty("rename", r, reply)
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let (id, np) = match (self.s.id(ino), self.s.id(newparent)) {
            (Ok(i), Ok(p)) => (i, p),
            _ => return reply.error(Errno::ENOENT),
        };
        let r = self
            .s
            .local(|rep| rep.link(id, np, newname.as_bytes()).map(|_| id));
        self.entry("link", r, reply)
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.s.id(ino) {
            // The kernel keeps the file's pages between opens: remote changes invalidate them.
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(e),
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
        let r = self.s.flush(ino.0).and_then(|()| {
            let id = self.s.id(ino).map_err(|_| Error::NotFound)?;
            self.s.read(id, offset, size)
        });
        match r {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(fail("read", &e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.s.write(ino.0, offset, data) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(fail("write", &e)),
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
        self.empty("flush", self.s.flush(ino.0), reply)
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
        let r = self.s.flush(ino.0);
        if r.is_ok() {
            let mut runs = self.s.runs.lock();
            if runs.get(&ino.0).is_some_and(|r| r.lock().data.is_empty()) {
                runs.remove(&ino.0);
            }
        }
        self.empty("release", r, reply)
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let r = self.s.flush(ino.0).and_then(|()| {
            let eng = self.s.rep.read().engine().clone();
            eng.sync()?;
            Ok(())
        });
        self.empty("fsync", r, reply)
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.s.id(ino) {
            Ok(_) => {
                let fh = self.s.next_fh.fetch_add(1, Ordering::Relaxed);
                reply.opened(FileHandle(fh), FopenFlags::empty())
            }
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        // The listing is read whole at offset 0 (opendir, rewinddir) and served from memory
        // page by page after that: a directory of n entries costs n, not n² / page.
        let held = self.s.listings.lock().get(&fh.0).cloned();
        let listed = match held {
            Some(l) if offset > 0 => Ok(l),
            _ => self.s.id(ino).map_err(|_| Error::NotFound).and_then(|dir| {
                let l = Arc::new(self.s.listing(dir)?);
                self.s.listings.lock().insert(fh.0, l.clone());
                Ok(l)
            }),
        };
        match listed {
            Ok(entries) => {
                for (k, (name, id, kind)) in entries.iter().enumerate().skip(offset as usize) {
                    let ino = self.s.inos.lock().ino(*id);
                    if reply.add(
                        INodeNo(ino),
                        k as u64 + 1,
                        file_type(*kind),
                        OsStr::from_bytes(name),
                    ) {
                        break;
                    }
                }
                reply.ok()
            }
            Err(e) => reply.error(fail("readdir", &e)),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.s.listings.lock().remove(&fh.0);
        reply.ok()
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let eng = self.s.rep.read().engine().clone();
        let r = eng.sync().map_err(Error::from);
        self.empty("fsyncdir", r, reply)
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        crate::reply_statfs(&self.s.store_dir, 0, reply)
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
        let id = match self.s.id(ino) {
            Ok(i) => i,
            Err(e) => return reply.error(e),
        };
        let r = self.s.local(|rep| {
            let has = rep
                .inode(id)?
                .ok_or(Error::NotFound)?
                .xattrs
                .contains_key(name.as_bytes());
            if flags & libc::XATTR_CREATE != 0 && has {
                return Err(Error::Exists);
            }
            if flags & libc::XATTR_REPLACE != 0 && !has {
                return Ok(false);
            }
            rep.setxattr(id, name.as_bytes(), Some(value)).map(|_| true)
        });
        match r {
            Ok(true) => reply.ok(),
            Ok(false) => reply.error(Errno::ENODATA),
            Err(e) => reply.error(fail("setxattr", &e)),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let r = self.s.id(ino).and_then(|id| {
            let i = self.s.rep.read().inode(id);
            match i {
                Ok(Some(i)) => i.xattrs.get(name.as_bytes()).cloned().ok_or(Errno::ENODATA),
                Ok(None) => Err(Errno::ENOENT),
                Err(e) => Err(fail("getxattr", &e)),
            }
        });
        crate::reply_xattr(r, size, reply)
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let r = self.s.id(ino).and_then(|id| {
            let i = self.s.rep.read().inode(id);
            match i {
                Ok(Some(i)) => Ok(i.xattrs.keys().fold(Vec::new(), |mut out, k| {
                    out.extend_from_slice(k);
                    out.push(0);
                    out
                })),
                Ok(None) => Err(Errno::ENOENT),
                Err(e) => Err(fail("listxattr", &e)),
            }
        });
        crate::reply_xattr(r, size, reply)
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self.s.id(ino).map_err(|_| Error::NotFound).and_then(|id| {
            self.s
                .local(|rep| rep.setxattr(id, name.as_bytes(), None).map(|_| ()))
        });
        match r {
            Err(Error::NotFound) => reply.error(Errno::ENODATA),
            r => self.empty("removexattr", r, reply),
        }
    }
}
