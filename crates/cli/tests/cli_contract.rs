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
