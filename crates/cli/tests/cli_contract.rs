//! The CLI contract: keys, refusals and their messages, mount lifecycle, check and stats.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;
use common::*;

use std::os::unix::fs::PermissionsExt;

#[test]
fn mount_write_umount_remount_read() {
    let f = Fixture::new();
    f.mount();
    assert!(f.is_mounted());
    std::fs::write(f.m("hello.txt"), b"hello sealvol\n").unwrap();
    f.umount();
    assert!(!f.is_mounted());
    f.mount();
    assert_eq!(std::fs::read(f.m("hello.txt")).unwrap(), b"hello sealvol\n");
    // A store already mounted is refused: never two writers.
    let other = f.dir.path().join("mnt2");
    std::fs::create_dir(&other).unwrap();
    let o = sealvol(&[
        "mount",
        "--store",
        Fixture::s(&f.store),
        "--keyfile",
        Fixture::s(&f.key),
        Fixture::s(&other),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("in use"), "{err}");
    f.umount();
    ok(&f.check());
}

#[test]
fn wrong_key_mounts_nothing_and_changes_nothing() {
    let f = Fixture::new();
    let wrong = f.dir.path().join("wrong");
    std::fs::write(&wrong, [0u8; 32]).unwrap();
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).unwrap();
    let before = sh(&format!(
        "cd {} && find . -type f -exec sha256sum {{}} + | sort",
        f.store.display()
    ));
    let o = sealvol(&[
        "mount",
        "--store",
        Fixture::s(&f.store),
        "--keyfile",
        Fixture::s(&wrong),
        Fixture::s(&f.mnt),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("does not open any key slot"), "{err}");
    assert!(!f.is_mounted());
    let after = sh(&format!(
        "cd {} && find . -type f -exec sha256sum {{}} + | sort",
        f.store.display()
    ));
    assert_eq!(
        before.stdout, after.stdout,
        "a failed mount changed the store"
    );
}

#[test]
fn world_readable_key_file_is_refused() {
    let f = Fixture::new();
    std::fs::set_permissions(&f.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = f.try_mount();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("readable by group or others") && err.contains("chmod 600"),
        "{err}"
    );
    assert!(!f.is_mounted());
}

#[test]
fn a_memory_budget_out_of_range_or_a_cache_over_its_share_mounts_nothing() {
    let f = Fixture::new();
    let mnt = Fixture::s(&f.mnt);
    for (extra, wants) in [
        (
            &["--memory", "32M"][..],
            &["--memory", "32M", "64M to 64G"][..],
        ),
        (&["--memory", "1T"], &["--memory", "\"1T\"", "64M to 64G"]),
        (
            &["--cache-size", "256M"],
            &["256M", "leaves 40M", "raise the memory budget"],
        ),
        (
            &["--memory", "128M", "--cache-size", "64M"],
            &["memory budget 128M", "leaves 20M"],
        ),
    ] {
        let mut args = extra.to_vec();
        args.push(mnt);
        let o = f.keyed("mount", &args);
        assert!(!o.status.success(), "{extra:?} mounted");
        let err = String::from_utf8_lossy(&o.stderr);
        for w in wants {
            assert!(err.contains(w), "{extra:?}: {err:?} lacks {w:?}");
        }
        assert!(!f.is_mounted());
    }
    // Within the budget: mounts.
    ok(&f.keyed("mount", &["--memory", "128M", "--cache-size", "20M", mnt]));
    assert!(f.is_mounted());
    f.umount();
}

#[test]
fn no_key_without_terminal_is_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let o = sealvol(&["init", "--store", d.path().join("s").to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--passphrase-file") && err.contains("--keyfile"),
        "{err}"
    );
}

#[test]
fn key_slots_add_list_remove() {
    let f = Fixture::new();
    let pass = f.dir.path().join("pass");
    std::fs::write(&pass, "a long passphrase\n").unwrap();
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let out = ok(&sealvol(&[
        "key",
        "add",
        "--store",
        &s(&f.store),
        "--keyfile",
        &s(&f.key),
        "--new-passphrase-file",
        &s(&pass),
        "--kdf-memory-mib",
        "8",
        "--kdf-iterations",
        "1",
    ]));
    assert!(out.contains("added key slot 1"), "{out}");
    let list = ok(&sealvol(&["key", "list", "--store", &s(&f.store)]));
    assert!(
        list.contains("slot 0: key file") && list.contains("slot 1: passphrase"),
        "{list}"
    );
    // The passphrase now opens the volume; after removing slot 0 the key file no longer does.
    ok(&sealvol(&[
        "stats",
        "--store",
        &s(&f.store),
        "--passphrase-file",
        &s(&pass),
    ]));
    ok(&sealvol(&[
        "key",
        "remove",
        "--store",
        &s(&f.store),
        "--passphrase-file",
        &s(&pass),
        "--slot",
        "0",
    ]));
    let o = sealvol(&["stats", "--store", &s(&f.store), "--keyfile", &s(&f.key)]);
    assert!(!o.status.success());
    let o = sealvol(&[
        "key",
        "remove",
        "--store",
        &s(&f.store),
        "--passphrase-file",
        &s(&pass),
        "--slot",
        "1",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("last one"));
}

#[test]
fn terminal_prompt_for_the_passphrase() {
    // A real pseudo-terminal: init asks twice, stats once; a wrong passphrase is refused.
    let d = tempfile::tempdir().unwrap();
    let store = d.path().join("s");
    let script = r#"
import os, pty, sys, time
def run(args, answers):
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(args[0], args)
    out = b""
    for a in answers:
        while b"passphrase: " not in out[-40:]:
            chunk = os.read(fd, 1024)
            if not chunk:
                break
            out += chunk
        os.write(fd, a.encode() + b"\n")
        out += b"<answered>"
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")
bin, store = sys.argv[1], sys.argv[2]
code, out = run([bin, "init", "--store", store, "--kdf-memory-mib", "8", "--kdf-iterations", "1"], ["pty pass", "pty pass"])
assert code == 0 and "created sealvol store" in out, out
code, out = run([bin, "stats", "--store", store], ["pty pass"])
assert code == 0 and "files:" in out, out
assert "pty pass" not in out.replace("<answered>", ""), "the passphrase was echoed: " + out
code, out = run([bin, "stats", "--store", store], ["wrong"])
assert code == 1 and "does not open any key slot" in out, out
# Backspace edits the hidden line.
code, out = run([bin, "stats", "--store", store], ["pty passX\x7f"])
assert code == 0 and "files:" in out, out
# Ctrl-C at the prompt: the command fails, says so, and the terminal echoes again after it.
import re
sh = ["/bin/sh", "-c", '"$0" stats --store "$1"; echo "rc=$?"; stty -a', bin, store]
code, out = run(sh, ["\x03"])
assert "interrupted at the passphrase prompt" in out and "rc=1" in out, out
for mode in ["echo", "icanon", "isig"]:
    assert re.search(r"(^|\s)" + mode + r"(\s|;|$)", out), "terminal left without " + mode + ": " + out
print("ok")
"#;
    let o = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(bin())
        .arg(&store)
        .output()
        .unwrap();
    assert_eq!(ok(&o).trim(), "ok");
}

/// A key file with `mode` in `dir`.
fn key_file(dir: &std::path::Path, mode: u32) -> std::path::PathBuf {
    let p = dir.join(format!("key-{mode:o}"));
    std::fs::write(&p, [7u8; 32]).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

#[test]
fn init_refuses_bad_arguments_before_making_anything() {
    let d = tempfile::tempdir().unwrap();
    let good = key_file(d.path(), 0o600);
    let open = key_file(d.path(), 0o644);
    // The store's parent does not exist either: neither may be left behind.
    let parent = d.path().join("parent");
    let store = parent.join("store");
    let cases: [(&[&str], &std::path::Path, &str); 4] = [
        (&["--chunk-size", "100K"], &good, "power of two"),
        (&["--kdf-memory-mib", "1"], &good, "--kdf-memory-mib"),
        (&["--kdf-iterations", "0"], &good, "--kdf-iterations"),
        (&[], &open, "chmod 600"),
    ];
    for (extra, key, expect) in cases {
        let mut args = vec![
            "init",
            "--store",
            store.to_str().unwrap(),
            "--keyfile",
            key.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = sealvol(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(err.contains(expect), "{args:?}: {err}");
        assert!(
            !parent.exists(),
            "{args:?} left {} behind",
            parent.display()
        );
    }
    // The same store, with good arguments: the retry works.
    ok(&sealvol(&[
        "init",
        "--store",
        store.to_str().unwrap(),
        "--keyfile",
        good.to_str().unwrap(),
        "--chunk-size",
        "64K",
    ]));
    assert!(store.join("keys.json").is_file());
}

/// A small tmpfs mounted for one test (as root), unmounted on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn new(at: std::path::PathBuf, size: &str) -> SmallDisk {
        std::fs::create_dir_all(&at).unwrap();
        ok(&sh(&format!(
            "mount -t tmpfs -o size={size} sealvol-test {}",
            at.display()
        )));
        SmallDisk(at)
    }

    fn resize(&self, size: &str) {
        ok(&sh(&format!(
            "mount -o remount,size={size} {}",
            self.0.display()
        )));
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = sh(&format!("umount -l {}", self.0.display()));
    }
}

fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn init_failing_while_making_the_store_removes_only_what_it_made() {
    let d = tempfile::Builder::new()
        .prefix("sealvol-init")
        .tempdir_in("/var/tmp")
        .unwrap();
    let key = key_file(d.path(), 0o600);
    // 4 MiB: room for RocksDB's first files, but under the free space a store insists on
    // even for its first small writes (8 MiB), so the store creation itself fails once its
    // directories exist.
    let disk = SmallDisk::new(d.path().join("disk"), "4m");
    let init = |store: &std::path::Path| {
        sealvol(&[
            "init",
            "--store",
            store.to_str().unwrap(),
            "--keyfile",
            key.to_str().unwrap(),
        ])
    };
    let store = disk.0.join("a/b/store");
    let o = init(&store);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("disk is full") && err.contains("nothing was left behind"),
        "{err}"
    );
    assert_eq!(entries(&disk.0), Vec::<String>::new(), "a/b/store removed");

    // In a directory that was there, what was there stays and only what init made goes.
    let pre = disk.0.join("pre");
    std::fs::create_dir_all(pre.join("mine")).unwrap();
    std::fs::write(pre.join("notes.txt"), b"keep me").unwrap();
    assert!(!init(&pre).status.success());
    assert_eq!(entries(&pre), ["mine", "notes.txt"]);
    assert_eq!(std::fs::read(pre.join("notes.txt")).unwrap(), b"keep me");

    // With room, the same commands succeed: nothing half-made is in the way.
    disk.resize("256m");
    ok(&init(&store));
    ok(&init(&pre));
    assert!(store.join("keys.json").is_file() && pre.join("keys.json").is_file());
    assert!(pre.join("notes.txt").is_file());
}
