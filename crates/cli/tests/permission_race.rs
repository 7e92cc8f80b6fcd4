//! Issue 9, "intermittent permission error": as root, `mkdir a b` (0777), `mkdir a/x` (0700),
//! `rmdir a/x`, create a regular file `a/x`, then as uid 65534 `rename a/x b/y`. The mount uses
//! `default_permissions`, so the kernel decides that rename from what it has cached: if it ever
//! took `a/x` for the removed 0700 directory (a stale dentry, stale attributes, or an inode
//! number it could not tell from the old one), the rename fails with EACCES. The sequence is
//! pjdfstest's rename/21.t; here it runs many times on one mount while other threads create
//! and delete files and directories (so the kernel forgets inodes and the purger works), list
//! and stat the same directories (READDIRPLUS and dentry revalidation), as root and as nobody.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;
use common::*;

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

const ITERATIONS: usize = 500;

/// A process running as uid and gid 65534 (no supplementary groups) that performs the file
/// operations it is sent, one per line, and answers each with 0 or the errno.
struct Nobody {
    child: Child,
    to: ChildStdin,
    from: BufReader<ChildStdout>,
}

const NOBODY_SCRIPT: &str = r#"
import os, sys
for line in sys.stdin:
    op, *args = line.rstrip("\n").split("\t")
    try:
        if op == "rename":
            os.rename(args[0], args[1])
        elif op == "lstat":
            os.lstat(args[0])
        elif op == "list":
            for n in os.listdir(args[0]):
                try:
                    os.lstat(os.path.join(args[0], n))
                except OSError:
                    pass
        elif op == "id":
            if (os.geteuid(), os.getegid(), os.getgroups()) != (65534, 65534, []):
                raise OSError(1, "not nobody")
        r = 0
    except OSError as e:
        r = e.errno
    sys.stdout.write(f"{r}\n")
    sys.stdout.flush()
"#;

impl Nobody {
    fn start() -> Nobody {
        let mut child = Command::new("setpriv")
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            // The system's Python: a per-user install (pyenv under /root) is out of nobody's reach.
            .args(["/usr/bin/python3", "-c", NOBODY_SCRIPT])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python3 as nobody with setpriv");
        let to = child.stdin.take().expect("stdin");
        let from = BufReader::new(child.stdout.take().expect("stdout"));
        let mut n = Nobody { child, to, from };
        assert_eq!(
            n.op(&["id"]),
            Ok(()),
            "the helper does not run as 65534:65534"
        );
        n
    }

    /// Ok, or the errno.
    fn op(&mut self, args: &[&str]) -> Result<(), i32> {
        writeln!(self.to, "{}", args.join("\t")).expect("write to the nobody helper");
        let mut line = String::new();
        self.from
            .read_line(&mut line)
            .expect("read from the nobody helper");
        match line
            .trim()
            .parse::<i32>()
            .expect("the helper answers a number")
        {
            0 => Ok(()),
            e => Err(e),
        }
    }

    fn rename(&mut self, from: &Path, to: &Path) -> Result<(), i32> {
        self.op(&["rename", p(from), p(to)])
    }
}

impl Drop for Nobody {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn mkdir_mode(p: &Path, mode: u32) -> std::io::Result<()> {
    std::fs::create_dir(p)?;
    // Explicitly, whatever the umask.
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
}

fn kind_of(e: &std::io::Error) -> String {
    format!("{:?} (errno {:?})", e.kind(), e.raw_os_error())
}

fn step(bad: &mut Vec<String>, it: usize, what: &str, r: std::io::Result<()>) {
    if let Err(e) = r {
        bad.push(format!("round {it}: {what}: {}", kind_of(&e)));
    }
}

/// One round of the issue's sequence in `root/a{it}` and `root/b{it}`; every step's outcome is
/// checked, failures are returned as text.
fn round(root: &Path, it: usize, nobody: &mut Nobody) -> Vec<String> {
    let mut bad = Vec::new();
    let a = root.join(format!("a{it}"));
    let b = root.join(format!("b{it}"));
    let (ax, az, by) = (a.join("x"), a.join("z"), b.join("y"));
    step(&mut bad, it, "mkdir a 0777", mkdir_mode(&a, 0o777));
    step(&mut bad, it, "mkdir b 0777", mkdir_mode(&b, 0o777));
    step(&mut bad, it, "mkdir a/x 0700", mkdir_mode(&ax, 0o700));
    // As nobody: renaming the directory within `a` needs write access to `a` only; moving it to
    // `b` needs write access to the directory itself, which nobody lacks.
    for (from, to) in [(&ax, &az), (&az, &ax)] {
        if let Err(e) = nobody.rename(from, to) {
            bad.push(format!(
                "round {it}: nobody: rename of the directory {from:?} to {to:?}: errno {e}"
            ));
        }
    }
    match nobody.rename(&ax, &by) {
        Err(libc::EACCES) => {}
        other => bad.push(format!(
            "round {it}: nobody: rename of the 0700 directory a/x to b/y: want EACCES, got {other:?}"
        )),
    }
    step(&mut bad, it, "rmdir a/x", std::fs::remove_dir(&ax));
    match std::fs::remove_dir(&ax) {
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        other => bad.push(format!("round {it}: second rmdir a/x: {other:?}")),
    }
    // The new regular file, under the removed directory's name.
    step(
        &mut bad,
        it,
        "create file a/x",
        std::fs::File::create(&ax)
            .and_then(|f| f.set_permissions(PermissionsExt::from_mode(0o644))),
    );
    if let Err(e) = nobody.rename(&ax, &by) {
        let seen = std::fs::symlink_metadata(&ax)
            .map(|m| format!("mode {:o} uid {} ino {:#x}", m.mode(), m.uid(), m.ino()))
            .unwrap_or_else(|e| kind_of(&e));
        bad.push(format!(
            "round {it}: nobody: rename of the new file a/x to b/y: errno {e} (a/x is now: {seen})"
        ));
    }
    match std::fs::symlink_metadata(&by) {
        Ok(m) if m.is_file() && m.mode() & 0o7777 == 0o644 => {}
        other => bad.push(format!("round {it}: b/y after the rename: {other:?}")),
    }
    step(&mut bad, it, "unlink b/y", std::fs::remove_file(&by));
    match std::fs::symlink_metadata(&ax) {
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        other => bad.push(format!("round {it}: a/x after the rename: {other:?}")),
    }
    step(&mut bad, it, "rmdir b", std::fs::remove_dir(&b));
    step(&mut bad, it, "rmdir a", std::fs::remove_dir(&a));
    bad
}

/// Creates and deletes files and 0700 directories in its own directory until told to stop:
/// inode numbers move on, the kernel forgets inodes, the purger deletes them.
fn churn(dir: PathBuf, stop: Arc<AtomicBool>, ops: Arc<AtomicU64>) {
    std::fs::create_dir(&dir).unwrap();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for i in 0..32 {
            let p = dir.join(format!("f{n}_{i}"));
            if std::fs::write(&p, b"x").is_ok() {
                let _ = std::fs::remove_file(&p);
            }
            let d = dir.join(format!("d{n}_{i}"));
            if mkdir_mode(&d, 0o700).is_ok() {
                let _ = std::fs::remove_dir(&d);
            }
        }
        ops.fetch_add(64, Ordering::Relaxed);
        n += 1;
    }
}

/// Lists the mount root and the current round's directories and stats what it finds, as root
/// or (through a helper process) as nobody: READDIRPLUS replies and dentry revalidations
/// racing with the round's own requests.
fn watcher(
    root: PathBuf,
    as_nobody: bool,
    current: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
) {
    let mut nobody = as_nobody.then(Nobody::start);
    while !stop.load(Ordering::Relaxed) {
        let it = current.load(Ordering::Relaxed);
        let mut dirs = vec![root.clone()];
        dirs.push(root.join(format!("a{it}")));
        dirs.push(root.join(format!("b{it}")));
        for d in &dirs {
            let names = [d.clone(), d.join("x"), d.join("y"), d.join("z")];
            match &mut nobody {
                Some(n) => {
                    let _ = n.op(&["list", p(d)]);
                    for name in &names {
                        let _ = n.op(&["lstat", p(name)]);
                    }
                }
                None => {
                    if let Ok(rd) = std::fs::read_dir(d) {
                        for e in rd.flatten().take(64) {
                            let _ = std::fs::symlink_metadata(e.path());
                        }
                    }
                    for name in &names {
                        let _ = std::fs::symlink_metadata(name);
                    }
                }
            }
        }
        ops.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn rename_of_a_file_that_replaced_a_removed_private_directory_is_allowed_under_load() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs root (FUSE mounts and a second user)"
    );
    let f = Fixture::new();
    // Nobody must reach the mount point inside the fixture's (private) directory.
    std::fs::set_permissions(f.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    f.mount();
    let root = f.mnt.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let current = Arc::new(AtomicUsize::new(0));
    let churned = Arc::new(AtomicU64::new(0));
    let watched = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for i in 0..2 {
        let (dir, stop, ops) = (
            root.join(format!("churn{i}")),
            stop.clone(),
            churned.clone(),
        );
        threads.push(std::thread::spawn(move || churn(dir, stop, ops)));
    }
    for as_nobody in [false, true] {
        let (root, cur, stop, ops) = (root.clone(), current.clone(), stop.clone(), watched.clone());
        threads.push(std::thread::spawn(move || {
            watcher(root, as_nobody, cur, stop, ops)
        }));
    }
    let mut nobody = Nobody::start();
    let mut failures = Vec::new();
    for it in 0..ITERATIONS {
        current.store(it, Ordering::Relaxed);
        failures.extend(round(&root, it, &mut nobody));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("load thread");
    }
    // The load really ran alongside the rounds.
    assert!(
        churned.load(Ordering::Relaxed) > 0,
        "the churn threads did nothing"
    );
    assert!(
        watched.load(Ordering::Relaxed) > 0,
        "the watcher threads did nothing"
    );
    f.umount();
    let check = f.check();
    assert!(
        check.status.success(),
        "check after the run: {}",
        String::from_utf8_lossy(&check.stdout)
    );
    assert!(
        failures.is_empty(),
        "{} problems in {ITERATIONS} rounds; the first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
