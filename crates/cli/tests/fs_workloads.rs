//! Real software on a real mount: tar, cp -a, git, SQLite, concurrent writers, mmap, big and
//! sparse files, many entries, non-root users, and POSIX corner cases.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;
use common::*;

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};

/// A tree holding every kind of file sealvol must keep, built on the plain disk.
fn make_tree(root: &std::path::Path) {
    ok(&sh(&format!(
        r#"set -e
        cd {root}
        mkdir -p src/sub/deeper src/empty
        printf 'hello\n' > src/small.txt
        head -c 300000 /dev/urandom > src/random.bin
        head -c 200000 /dev/zero > src/zeros.bin
        truncate -s 5M src/sparse.bin
        printf 'tail' | dd of=src/sparse.bin bs=1 seek=3000000 conv=notrunc status=none
        ln src/small.txt src/hardlink.txt
        ln -s small.txt src/link
        ln -s ../nowhere src/sub/dangling
        mkfifo src/fifo
        chmod 4755 src/small.txt
        chmod 1777 src/sub/deeper
        chmod 0600 src/random.bin
        chown 1234:5678 src/random.bin
        chown -h 42:43 src/link
        setfattr -n user.test -v xval src/small.txt
        setfattr -n user.dirattr -v dval src/sub
        touch -h -d '2002-01-01 00:00:00' src/link
        touch -d '2001-02-03 04:05:06.123456789' src/sub/deeper
        touch -d '2001-02-03 04:05:06' src/zeros.bin
        "#,
        root = root.display()
    )));
}

/// Everything `tar` sees of a tree: names, kinds, modes, owners, sizes, times, link targets,
/// plus file contents and xattrs.
fn describe(dir: &std::path::Path) -> String {
    ok(&sh(&format!(
        "cd {} && find . -mindepth 1 -printf '%p %y %m %u:%g %s %n %l %T@\\n' | awk '$2==\"d\" {{$5=\"-\"}} {{print}}' | sort && \
         find . -type f -exec sha256sum {{}} + | sort && getfattr -R -d -h . 2>/dev/null | sort",
        dir.display()
    )))
}

#[test]
fn tar_round_trip_of_every_file_kind() {
    let f = Fixture::new();
    let plain = f.dir.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    make_tree(&plain);
    f.mount();
    ok(&sh(&format!(
        "set -e; tar --xattrs --xattrs-include='user.*' -C {p} -cf {d}/t.tar src && tar --xattrs --xattrs-include='user.*' -C {m} -xpf {d}/t.tar",
        p = plain.display(), m = f.mnt.display(), d = f.dir.path().display()
    )));
    assert_eq!(describe(&plain.join("src")), describe(&f.m("src")));
    // The same after a remount: nothing lived only in caches.
    f.umount();
    f.mount();
    assert_eq!(describe(&plain.join("src")), describe(&f.m("src")));
    // mtimes with nanoseconds survive.
    let md = std::fs::metadata(f.m("src/sub/deeper")).unwrap();
    assert_eq!(md.mtime_nsec(), 123456789);
    // And tar out of the mount gives back the same tree.
    let back = f.dir.path().join("back");
    std::fs::create_dir(&back).unwrap();
    ok(&sh(&format!(
        "set -e; tar --xattrs --xattrs-include='user.*' -C {m} -cf {d}/t2.tar src && tar --xattrs --xattrs-include='user.*' -C {b} -xpf {d}/t2.tar",
        m = f.mnt.display(), b = back.display(), d = f.dir.path().display()
    )));
    assert_eq!(describe(&plain.join("src")), describe(&back.join("src")));
    f.umount();
    ok(&f.check());
}

#[test]
fn cp_a_preserves_everything() {
    let f = Fixture::new();
    let plain = f.dir.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    make_tree(&plain);
    f.mount();
    ok(&sh(&format!(
        "cp -a {}/src {}/",
        plain.display(),
        f.mnt.display()
    )));
    assert_eq!(describe(&plain.join("src")), describe(&f.m("src")));
    ok(&sh(&format!(
        "cp -a {}/src {}/copy2",
        f.mnt.display(),
        f.mnt.display()
    )));
    assert_eq!(describe(&plain.join("src")), describe(&f.m("copy2")));
    f.umount();
    ok(&f.check());
}

#[test]
fn git_repository_works() {
    let f = Fixture::new();
    f.mount();
    let out = ok(&sh(&format!(
        r#"set -e
        cd {m}
        git init -q repo && cd repo
        git config user.email t@example.invalid && git config user.name t
        for i in $(seq 1 30); do echo "line $i" > file$i.txt; done
        git add . && git commit -qm first
        echo change >> file1.txt && git commit -qam second
        git mv file2.txt renamed.txt && git commit -qm third
        git gc -q
        git fsck --strict 2>&1
        git log --oneline | wc -l
        "#,
        m = f.mnt.display()
    )));
    assert!(out.trim_end().ends_with('3'), "{out}");
    f.umount();
    ok(&f.check());
}

#[test]
fn sqlite_database_passes_integrity_check() {
    let f = Fixture::new();
    f.mount();
    let script = format!(
        r#"
import sqlite3, random
db = sqlite3.connect("{m}/test.db")
db.execute("PRAGMA journal_mode=WAL")
db.execute("create table t (id integer primary key, v text)")
rnd = random.Random(7)
for batch in range(20):
    with db:
        for i in range(500):
            db.execute("insert into t (v) values (?)", ("x" * rnd.randint(1, 400),))
    with db:
        db.execute("delete from t where id % 7 = ?", (batch % 7,))
db.execute("vacuum")
print(db.execute("PRAGMA integrity_check").fetchone()[0], db.execute("select count(*) from t").fetchone()[0])
db.close()
"#,
        m = f.mnt.display()
    );
    let out = ok(&std::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap());
    assert!(out.starts_with("ok "), "{out}");
    f.umount();
    f.mount();
    let out = ok(&sh(&format!(
        "sqlite3 {}/test.db 'PRAGMA integrity_check'",
        f.mnt.display()
    )));
    assert_eq!(out.trim(), "ok");
    f.umount();
    ok(&f.check());
}

#[test]
fn concurrent_writers() {
    let f = Fixture::new();
    f.mount();
    let shared = f.m("shared.bin");
    std::fs::File::create(&shared)
        .unwrap()
        .set_len(8 * 100_000)
        .unwrap();
    let threads: Vec<_> = (0..8u8)
        .map(|t| {
            let own = f.m(&format!("own{t}.bin"));
            let shared = shared.clone();
            std::thread::spawn(move || {
                let data = vec![t + 1; 100_000];
                let mut o = std::fs::File::create(&own).unwrap();
                for _ in 0..20 {
                    o.write_all(&data).unwrap();
                }
                let mut s = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&shared)
                    .unwrap();
                for k in 0..10 {
                    s.seek(SeekFrom::Start(t as u64 * 100_000 + k * 10_000))
                        .unwrap();
                    s.write_all(&data[..10_000]).unwrap();
                }
                s.sync_all().unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for t in 0..8u8 {
        let got = std::fs::read(f.m(&format!("own{t}.bin"))).unwrap();
        assert_eq!(got.len(), 2_000_000);
        assert!(got.iter().all(|b| *b == t + 1));
    }
    let s = std::fs::read(&shared).unwrap();
    for t in 0..8usize {
        assert!(s[t * 100_000..(t + 1) * 100_000]
            .iter()
            .all(|b| *b == t as u8 + 1));
    }
    f.umount();
    ok(&f.check());
}

#[test]
fn mmap_reads_and_writes() {
    let f = Fixture::new();
    f.mount();
    let script = format!(
        r#"
import mmap, os
p = "{m}/mm.bin"
with open(p, "wb") as fh:
    fh.write(b"\0" * 300000)
with open(p, "r+b") as fh:
    mm = mmap.mmap(fh.fileno(), 0)
    mm[100:105] = b"hello"
    mm[299990:300000] = b"0123456789"
    mm.flush()
    mm.close()
with open(p, "rb") as fh:
    mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    assert mm[100:105] == b"hello"
    assert mm[299990:300000] == b"0123456789"
print("ok")
"#,
        m = f.mnt.display()
    );
    ok(&std::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap());
    f.umount();
    f.mount();
    let d = std::fs::read(f.m("mm.bin")).unwrap();
    assert_eq!(&d[100..105], b"hello");
    assert_eq!(&d[299990..], b"0123456789");
    f.umount();
}

#[test]
fn files_over_4gib_and_sparse_files() {
    let f = Fixture::new();
    f.mount();
    let p = f.m("big.bin");
    let off = (4u64 << 30) + 1;
    {
        let mut fh = std::fs::File::create(&p).unwrap();
        fh.seek(SeekFrom::Start(off)).unwrap();
        fh.write_all(b"past 4 GiB").unwrap();
    }
    let md = std::fs::metadata(&p).unwrap();
    assert_eq!(md.len(), off + 10);
    let mut fh = std::fs::File::open(&p).unwrap();
    fh.seek(SeekFrom::Start(off - 5)).unwrap();
    let mut buf = [0u8; 15];
    fh.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"\0\0\0\0\0past 4 GiB");
    drop(fh);
    // Truncate down and up again.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(off + 4)
        .unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(off + 100)
        .unwrap();
    let mut fh = std::fs::File::open(&p).unwrap();
    fh.seek(SeekFrom::Start(off)).unwrap();
    let mut buf = [0u8; 10];
    fh.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"past\0\0\0\0\0\0");
    drop(fh);
    f.umount();
    // Holes are not stored: the store stays small.
    let du = ok(&sh(&format!("du -sk {}", f.store.display())));
    let kib: u64 = du.split_whitespace().next().unwrap().parse().unwrap();
    assert!(kib < 50_000, "store is {kib} KiB for a sparse file");
    ok(&f.check());
}

#[test]
fn posix_corner_cases() {
    let f = Fixture::new();
    f.mount();
    let out = ok(&sh(&format!(
        r#"set -e
        cd {m}
        # O_APPEND from two writers.
        for i in $(seq 1 50); do echo "a$i" >> log.txt & echo "b$i" >> log.txt; wait; done
        wc -l < log.txt
        # rename over an existing file; RENAME_NOREPLACE (mv -n) keeps the target.
        echo one > x; echo two > y; mv x y; cat y
        echo three > z; mv -n y z 2>/dev/null || true; cat z; test -e y
        # Directory renames across directories.
        mkdir -p d1/a d2; echo inner > d1/a/f; mv d1/a d2/b; cat d2/b/f; test ! -e d1/a
        # rmdir of a non-empty directory fails.
        if rmdir d2 2>/dev/null; then echo rmdir-wrong; fi
        # chmod/chown/utimens.
        touch t; chmod 640 t; chown 7:8 t; touch -d '1999-12-31 23:59:59' t
        stat -c '%a %u %g %Y' t
        # Deep tree.
        p=.; for i in $(seq 1 60); do p=$p/level$i; done; mkdir -p $p; echo deep > $p/f; cat $p/f
        # Long names: 255 bytes ok, 256 refused.
        n=$(printf 'n%.0s' $(seq 1 255)); touch $n; if touch ${{n}}x 2>/dev/null; then echo long-wrong; fi
        "#,
        m = f.mnt.display()
    )));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        vec!["100", "one", "three", "inner", "640 7 8 946684799", "deep"],
        "{out}"
    );
    // An unlinked file stays readable and writable through an open descriptor.
    let p = f.m("open-unlinked");
    let mut fh = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    fh.write_all(b"before").unwrap();
    std::fs::remove_file(&p).unwrap();
    fh.write_all(b" after").unwrap();
    fh.seek(SeekFrom::Start(0)).unwrap();
    let mut s = String::new();
    fh.read_to_string(&mut s).unwrap();
    assert_eq!(s, "before after");
    drop(fh);
    assert!(!p.exists());
    // Many files open at once.
    let handles: Vec<std::fs::File> = (0..300)
        .map(|i| std::fs::File::create(f.m(&format!("open{i}"))).unwrap())
        .collect();
    drop(handles);
    assert!(std::fs::read_dir(&f.mnt).unwrap().count() >= 300);
    f.umount();
    ok(&f.check());
}

#[test]
fn non_root_users_write_where_permitted() {
    let f = Fixture::new();
    f.mount();
    std::fs::create_dir(f.m("home")).unwrap();
    ok(&sh(&format!("chown 1000:1000 {}/home", f.mnt.display())));
    let o = sh(&format!(
        "setpriv --reuid 1000 --regid 1000 --clear-groups sh -c 'echo mine > {m}/home/f && cat {m}/home/f && stat -c %u:%g {m}/home/f'",
        m = f.mnt.display()
    ));
    let out = ok(&o);
    assert_eq!(out, "mine\n1000:1000\n");
    // Root's 0755 directory refuses the same user; its 0600 file is unreadable to them.
    std::fs::write(f.m("secret"), b"root only").unwrap();
    std::fs::set_permissions(f.m("secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = sh(&format!(
        "setpriv --reuid 1000 --regid 1000 --clear-groups sh -c 'echo x > {m}/nope' 2>&1; \
         setpriv --reuid 1000 --regid 1000 --clear-groups cat {m}/secret 2>&1",
        m = f.mnt.display()
    ));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.matches("Permission denied").count() == 2, "{out}");
    f.umount();
}

/// sealvol asks for FUSE_HANDLE_KILLPRIV_V2, so it, not the kernel, drops setuid and setgid
/// when a user other than root writes or truncates a file, and on any chown; the kernel still
/// removes `security.capability`. The same script on ext4 (the disk under the test) gives the
/// expected modes, and a few are spelled out so that the comparison cannot pass vacuously.
#[test]
fn setuid_and_setgid_fall_on_write_truncate_and_chown_as_on_ext4() {
    let f = Fixture::new();
    f.mount();
    let plain = f.dir.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let u = "setpriv --reuid 1000 --regid 1000 --clear-groups";
    let script = |d: &std::path::Path| {
        format!(
            "set -e; cd {d}
             printf a > root; chmod 6755 root; echo b >> root; echo root $(stat -c %a root)
             printf a > w; chown 1000:1000 w; chmod 6777 w; {u} sh -c 'echo b >> w'; echo w $(stat -c %a w)
             printf a > g; chown 1000:1000 g; chmod 2767 g; {u} sh -c 'echo b >> g'; echo g $(stat -c %a g)
             printf abc > t; chown 1000:1000 t; chmod 4777 t; {u} truncate -s 1 t; echo t $(stat -c %a t) $(stat -c %s t)
             printf abc > rt; chmod 4777 rt; truncate -s 1 rt; echo rt $(stat -c %a rt)
             printf abc > o; chown 1000:1000 o; chmod 6777 o; {u} sh -c ': > o'; echo o $(stat -c %a o) $(stat -c %s o)
             printf a > c; chmod 6755 c; chown 1000 c; echo c $(stat -c %a c)
             mkdir dir; chmod 2755 dir; chown 1000 dir; echo dir $(stat -c %a dir)
             printf a > cap; setcap cap_net_raw+ep cap; echo cap $(getcap cap | grep -c net_raw)
             echo more >> cap; echo cap-after-write $(getcap cap | grep -c net_raw || true)
             printf a > cap2; setcap cap_net_raw+ep cap2; chown 1000 cap2; echo cap-after-chown $(getcap cap2 | grep -c net_raw || true)",
            d = d.display()
        )
    };
    let on_sealvol = ok(&sh(&script(&f.mnt)));
    let on_ext4 = ok(&sh(&script(&plain)));
    assert_eq!(on_sealvol, on_ext4);
    for line in [
        "root 6755",
        "w 777",
        "g 2767",
        "t 777 1",
        "rt 4777",
        "o 777 0",
        "c 755",
        "dir 2755",
        "cap 1",
        "cap-after-write 0",
        "cap-after-chown 0",
    ] {
        assert!(
            on_sealvol.lines().any(|l| l == line),
            "{line}: {on_sealvol}"
        );
    }
    f.umount();
    ok(&f.check());
}

#[test]
fn hundred_thousand_entries_in_one_directory() {
    let f = Fixture::new();
    f.mount();
    let dir = f.m("many");
    std::fs::create_dir(&dir).unwrap();
    for i in 0..100_000 {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(dir.join(format!("entry-{i:06}")))
            .unwrap();
    }
    let n = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(n, 100_000);
    assert!(dir.join("entry-054321").exists());
    f.umount();
    f.mount();
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 100_000);
    f.umount();
}

#[test]
fn reading_a_file_while_rename_replaces_it_never_fails() {
    // An inode the kernel has looked up stays readable until the kernel forgets it, even when a
    // rename replaces its name (the classic "write temp file, rename over" pattern).
    let f = Fixture::new();
    f.mount();
    std::fs::write(f.m("current"), b"0").unwrap();
    let mnt = f.mnt.clone();
    let writer = std::thread::spawn(move || {
        for i in 0..400 {
            std::fs::write(mnt.join("next"), i.to_string()).unwrap();
            std::fs::rename(mnt.join("next"), mnt.join("current")).unwrap();
        }
    });
    let mut failures = Vec::new();
    while !writer.is_finished() {
        if let Err(e) = std::fs::read(f.m("current")) {
            failures.push(e.to_string());
        }
    }
    writer.join().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed reads, first: {}",
        failures.len(),
        failures[0]
    );
    assert_eq!(std::fs::read_to_string(f.m("current")).unwrap(), "399");
    f.umount();
    ok(&f.check());
}

#[test]
fn small_random_reads_return_the_right_bytes_and_log_no_damage() {
    // Small reads of stored chunks open single segments, and then serve repeated reads from the
    // plaintext cache: both must return exactly the written bytes, and a healthy file must
    // never show up in the log as damaged.
    let f = Fixture::new();
    f.mount();
    let mut x = 0x2545f4914f6cdd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let data: Vec<u8> = (0..3 * 1024 * 1024 + 1000).map(|_| next() as u8).collect();
    std::fs::write(f.m("data.bin"), &data).unwrap();
    f.umount();
    f.mount(); // an empty page cache: every read below reaches sealvol

    // Run as root (CAP_IPC_LOCK), the mount locks its key material out of swap: a page or two,
    // not its buffers and caches (it used to lock everything, over a gigabyte after a large
    // write).
    let status = std::fs::read_to_string(format!("/proc/{}/status", f.mount_pid())).unwrap();
    let locked_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    if is_root() {
        assert!(
            (4..=64).contains(&locked_kib),
            "VmLck: {locked_kib} kB (keys only: expected a few pages)"
        );
    }
    let file = std::fs::File::open(f.m("data.bin")).unwrap();
    for _ in 0..3000 {
        let off = (next() % data.len() as u64) as usize;
        let len = (next() % 9000) as usize + 1;
        let mut buf = vec![0u8; len];
        let n = std::os::unix::fs::FileExt::read_at(&file, &mut buf, off as u64).unwrap();
        let want = &data[off..(off + len).min(data.len())];
        assert_eq!(&buf[..n], want, "read of {len} at {off}");
    }
    drop(file);
    f.umount();
    let log = std::fs::read_to_string(f.dir.path().join("mount.log")).unwrap_or_default();
    assert!(
        !log.contains("damaged"),
        "the mount log reports damage:\n{log}"
    );
}

#[test]
fn the_cache_borrows_while_nothing_is_written_and_an_idle_mount_gives_memory_back() {
    // The mount's stats file says what its memory is doing: after 2 s without a write the
    // plaintext cache may borrow the write path's share (96 MiB at the default budget), and
    // after 10 s without any request the loan ends and the cache shrinks to an eighth.
    let f = Fixture::new();
    let stats = f.dir.path().join("stats.json");
    ok(&f.keyed(
        "mount",
        &["--stats-file", Fixture::s(&stats), Fixture::s(&f.mnt)],
    ));
    std::fs::write(f.m("a"), vec![7u8; 4 << 20]).unwrap();
    let memory = || -> serde_json::Value {
        let bytes = std::fs::read(&stats).unwrap_or_default();
        serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or_default()["memory"].clone()
    };
    let n = |m: &serde_json::Value, k: &str| m[k].as_u64().unwrap_or_else(|| panic!("{k}: {m}"));
    let until = |what: &str, cond: &dyn Fn(&serde_json::Value) -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
        loop {
            let m = memory();
            if m.is_object() && cond(&m) {
                return m;
            }
            assert!(std::time::Instant::now() < deadline, "{what}: {m}");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    let m = until("the cache borrows", &|m| n(m, "cache_loan_bytes") > 0);
    assert_eq!(n(&m, "budget_bytes"), 256 << 20, "{m}");
    assert!(n(&m, "cache_loan_bytes") <= 96 << 20, "{m}");
    assert!(n(&m, "resident_bytes") <= n(&m, "budget_bytes"), "{m}");
    // Idle: no loan, and the cache within an eighth of its 40 MiB share.
    let m = until("idle", &|m| n(m, "cache_loan_bytes") == 0);
    assert!(n(&m, "cache_bytes") <= 5 << 20, "{m}");
    if is_root() {
        assert!((4096..=64 << 10).contains(&n(&m, "locked_bytes")), "{m}");
    }
    f.umount();
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Small overwrites through the kernel (page-cache write-backs of 4 KiB pages and odd-sized
/// direct writes, fsyncs in between) land as slices over stored chunks: every byte reads back as
/// a plain model says, before and after a remount, and `check` finds the store clean.
#[test]
fn small_overwrites_of_stored_data_match_a_model_across_remounts() {
    use std::os::unix::fs::FileExt;
    let f = Fixture::new();
    f.mount();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut want: Vec<u8> = (0..2 * 1024 * 1024 + 777).map(|_| next() as u8).collect();
    std::fs::write(f.m("db.bin"), &want).unwrap();
    f.umount();
    f.mount();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(f.m("db.bin"))
        .unwrap();
    for round in 0..1500u64 {
        let len = if round % 3 == 0 {
            4096
        } else {
            (next() % 6000) as usize + 1
        };
        let off = (next() % (want.len() as u64 - len as u64)) as usize;
        let data: Vec<u8> = (0..len).map(|i| (round as usize + i) as u8).collect();
        file.write_all_at(&data, off as u64).unwrap();
        want[off..off + len].copy_from_slice(&data);
        if round % 97 == 0 {
            file.sync_all().unwrap();
        }
    }
    file.sync_all().unwrap();
    drop(file);
    assert!(
        std::fs::read(f.m("db.bin")).unwrap() == want,
        "read back before remount"
    );
    f.umount();
    f.mount();
    assert!(
        std::fs::read(f.m("db.bin")).unwrap() == want,
        "read back after remount"
    );
    f.umount();
    let out = f.check();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
