//! `sealvol export`, `import`, `verify` and `export-ls` through the binary, on real mounts:
//! a live export while a writer appends, both formats back into new stores with every kind of
//! file, wrong keys, damage, a target that is not an export, and a full disk during import.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;
use common::*;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A second key file in the fixture's directory.
fn other_key(f: &Fixture) -> PathBuf {
    let k = f.dir.path().join("key2");
    std::fs::write(&k, [42u8; 32]).unwrap();
    std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
    k
}

/// Every kind of file, made with the usual tools on the mount.
fn fill(f: &Fixture) {
    let script = format!(
        r#"set -e; cd '{}'
        mkdir -p a/b/c tmp && chmod 1777 tmp
        head -c 3000000 /dev/urandom > a/big
        printf 'hi\n' > a/b/c/small && chmod 4755 a/b/c/small
        touch -d '2001-02-03 04:05:06.123456789' a/b/c/small
        ln a/big a/b/hardlink
        ln -s ../big a/b/rel-link && ln -s /etc/passwd abs-link
        mkfifo fifo && mknod cdev c 1 3 && mknod bdev b 8 1
        setfattr -n user.comment -v hello a/big
        chown 1000:100 a/b && chown -h 1000:100 abs-link
        truncate -s 5M sparse && printf 'x' | dd of=sparse bs=1 seek=5242880 conv=notrunc status=none
        : > empty
        "#,
        s(&f.mnt)
    );
    ok(&sh(&script));
}

/// What the tree at `root` shows: paths, kinds, modes, owners, sizes, link counts, link
/// targets, times (ns), contents and xattrs.
fn tree(root: &Path) -> String {
    ok(&sh(&format!(
        r#"set -e; cd '{}'
        find . -printf '%p %y %m %U:%G %s %n %l %T@\n' | LC_ALL=C sort
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
        find . -print0 | LC_ALL=C sort -z | xargs -0 getfattr -h -d -m - 2>/dev/null | grep -v '^$' || true
        "#,
        root.display()
    )))
}

/// A volume holding one file `big` of `bytes` random bytes, exported to a new directory `bk`
/// (returned); unmounted.
fn exported_random_file(f: &Fixture, bytes: u64) -> PathBuf {
    f.mount();
    ok(&sh(&format!(
        "head -c {bytes} /dev/urandom > '{}'",
        s(&f.m("big"))
    )));
    f.umount();
    let bk = f.dir.path().join("bk");
    ok(&f.keyed("export", &[s(&bk)]));
    bk
}

/// `sealvol import` of the export in `from` into the new store `store`, with the fixture's key.
fn import_into(f: &Fixture, from: &Path, store: &Path) {
    ok(&sealvol(&[
        "import",
        "--keyfile",
        s(&f.key),
        s(from),
        "--store",
        s(store),
    ]));
}

/// Mount `store` with `key` on a new mount point and return its tree.
fn tree_of_store(f: &Fixture, store: &Path, key: &Path, name: &str) -> String {
    let mnt = f.dir.path().join(name);
    std::fs::create_dir(&mnt).unwrap();
    ok(&sealvol(&[
        "mount",
        "--store",
        s(store),
        "--keyfile",
        s(key),
        s(&mnt),
    ]));
    let t = tree(&mnt);
    ok(&sealvol(&["umount", s(&mnt)]));
    t
}

#[test]
fn a_mounted_volume_exports_while_written_and_both_formats_restore_into_new_stores() {
    let f = Fixture::new();
    f.mount();
    fill(&f);
    // A writer appends numbered, fsync'd lines while the exports run.
    let journal = f.m("journal");
    let mut writer = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "i=0; while :; do echo \"line $i\" >> '{}'; sync '{}'; i=$((i+1)); done",
            journal.display(),
            journal.display()
        ))
        // Its own process group, so that stopping it also stops a `sync` it is running (which
        // holds the journal open and would keep the mount busy).
        .process_group(0)
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let bk = f.dir.path().join("bk");
    let out = ok(&f.keyed("export", &[s(&bk)]));
    assert!(out.contains("export 1:"), "{out}");
    let id = f.dir.path().join("id.txt");
    let recipient = age_identity(&id);
    // tar.age to stdout.
    let tarage = f.dir.path().join("bk.tar.age");
    let o = Command::new(bin())
        .args([
            "export",
            "--store",
            s(&f.store),
            "--keyfile",
            s(&f.key),
            "--format",
            "tar.age",
            "--recipient",
            &recipient,
            "-",
        ])
        .stdout(Stdio::from(std::fs::File::create(&tarage).unwrap()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let group = format!("-{}", writer.id());
    let killed = Command::new("kill")
        .args(["-KILL", "--", &group])
        .status()
        .unwrap();
    assert!(killed.success());
    writer.wait().unwrap();
    // The group's other members (a `sync` in flight) are gone once kill(1) has returned and
    // they are reaped by init; wait until none is left in the group.
    let in_group = |pgid: &str| {
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            // /proc/PID/stat: "pid (comm) state ppid pgrp ..."; comm may hold spaces.
            std::fs::read_to_string(e.path().join("stat")).is_ok_and(|st| {
                st.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(2).map(|g| g == pgid))
                    .unwrap_or(false)
            })
        })
    };
    for _ in 0..250 {
        if !in_group(&group[1..]) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    ok(&sealvol(&["umount", s(&f.mnt)]));
    // The volume as it is now, but for the journal (it grew after the exports: it is checked
    // on its own).
    f.mount();
    std::fs::remove_file(f.m("journal")).unwrap();
    let want = tree(&f.mnt);
    f.umount();

    // Native, with the volume's own key file; tar.age with the identity and another key.
    let new1 = f.dir.path().join("new1");
    import_into(&f, &bk, &new1);
    let key2 = other_key(&f);
    // By default a tar.age import refuses the link to /etc/passwd, lists it and fails, having
    // restored everything else; --keep-outside-symlinks restores it as it was.
    let refusing = f.dir.path().join("refusing");
    let o = sealvol(&[
        "import",
        "--keyfile",
        s(&key2),
        "--identity",
        s(&id),
        s(&tarage),
        "--store",
        s(&refusing),
    ]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains(
            "REFUSED /abs-link: refused: a symlink pointing out of the volume (to /etc/passwd)"
        ) && out.contains("--keep-outside-symlinks")
            && !out.contains("rel-link"),
        "{out}"
    );
    // (The root's times and the journal, which grew after `want` was taken, aside.)
    let strip = |t: &str, drop: &str| -> String {
        t.lines()
            .filter(|l| !l.starts_with(". ") && !l.contains("./journal") && !l.contains(drop))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        strip(&want, "./abs-link "),
        strip(&tree_of_store(&f, &refusing, &key2, "refusing-mnt"), "\0"),
        "everything but the refused link is restored"
    );
    let new2 = f.dir.path().join("new2");
    ok(&sealvol(&[
        "import",
        "--keyfile",
        s(&key2),
        "--identity",
        s(&id),
        "--keep-outside-symlinks",
        s(&tarage),
        "--store",
        s(&new2),
    ]));

    for (store, key, name) in [(&new1, &f.key, "m1"), (&new2, &key2, "m2")] {
        let mnt = f.dir.path().join(name);
        std::fs::create_dir(&mnt).unwrap();
        ok(&sealvol(&[
            "mount",
            "--store",
            s(store),
            "--keyfile",
            s(key),
            s(&mnt),
        ]));
        // The journal: whole lines, numbered from 0 without a gap (one point in time).
        let j = std::fs::read_to_string(mnt.join("journal")).unwrap();
        assert!(j.ends_with('\n') && !j.is_empty(), "{name}: {j:?}");
        for (i, line) in j.lines().enumerate() {
            assert_eq!(line, format!("line {i}"), "{name}");
        }
        std::fs::remove_file(mnt.join("journal")).unwrap();
        let got = tree(&mnt);
        ok(&sealvol(&["umount", s(&mnt)]));
        // The root directory's times moved with the journal's removal on both sides.
        let strip = |t: &str| {
            t.lines()
                .filter(|l| !l.starts_with(". "))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(strip(&want), strip(&got), "{name}");
        let c = sealvol(&["check", "--store", s(store), "--keyfile", s(key)]);
        ok(&c);
    }
    // Debian's age and GNU tar alone read the same file.
    let host = f.dir.path().join("host");
    std::fs::create_dir(&host).unwrap();
    ok(&sh(&format!(
        "set -o pipefail; age -d -i '{}' '{}' | tar -x --xattrs --xattrs-include='user.*' --numeric-owner -C '{}'",
        s(&id),
        s(&tarage),
        s(&host)
    )));
    assert_eq!(std::fs::read(host.join("a/b/c/small")).unwrap(), b"hi\n");
}

#[test]
fn export_ls_verify_and_json_lines_report_an_incremental_chain() {
    let f = Fixture::new();
    f.mount();
    fill(&f);
    let bk = f.dir.path().join("bk");
    ok(&f.keyed("export", &[s(&bk)]));
    std::fs::write(f.m("a/new"), b"new file").unwrap();
    std::fs::remove_file(f.m("a/b/hardlink")).unwrap();
    let out = ok(&f.keyed("export", &["--json", s(&bk)]));
    let summary: serde_json::Value = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["event"] == "summary")
        .unwrap();
    assert_eq!(summary["seq"], 2);
    assert_eq!(summary["new_chunks"], 1, "{summary}");
    assert!(summary["reused_chunks"].as_u64().unwrap() > 10, "{summary}");
    f.umount();
    let ls = ok(&sealvol(&["export-ls", s(&bk)]));
    assert!(ls.contains("     1  ") && ls.contains("     2  "), "{ls}");
    let v = ok(&sealvol(&["verify", "--keyfile", s(&f.key), s(&bk)]));
    assert!(
        v.contains("verified 2 export(s)") && v.contains("no damage found"),
        "{v}"
    );
    // The first export is still there, and restores as it was (with the hard link).
    let new = f.dir.path().join("new");
    ok(&sealvol(&[
        "import",
        "--keyfile",
        s(&f.key),
        "--export",
        "1",
        s(&bk),
        "--store",
        s(&new),
    ]));
    let t = tree_of_store(&f, &new, &f.key, "m");
    assert!(
        t.contains("./a/b/hardlink") && !t.contains("./a/new"),
        "{t}"
    );
}

#[test]
fn wrong_keys_damage_and_a_non_export_are_refused_or_named_and_nothing_half_made_is_left() {
    let f = Fixture::new();
    f.mount();
    fill(&f);
    f.umount();
    let bk = f.dir.path().join("bk");
    ok(&f.keyed("export", &[s(&bk)]));

    // A wrong key: refused before anything is made.
    let key2 = other_key(&f);
    let new = f.dir.path().join("new");
    let o = sealvol(&["import", "--keyfile", s(&key2), s(&bk), "--store", s(&new)]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("does not open the export") && err.contains("nothing was written"),
        "{err}"
    );
    assert!(!new.exists());

    // Not an export.
    let plain = f.dir.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    std::fs::write(plain.join("file"), b"x").unwrap();
    let o = sealvol(&[
        "import",
        "--keyfile",
        s(&f.key),
        s(&plain),
        "--store",
        s(&new),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("is not a sealvol export"),
        "{err}"
    );
    assert!(!new.exists());

    // A damaged chunk: import restores the rest, names the file, exits 1.
    let big = std::fs::read_dir(bk.join("objects"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    // That is a whole chunk of /a/big: /sparse's one byte of data is in a
    // chunk of its own, padded far below that.
    let mut b = std::fs::read(&big).unwrap();
    b[200] ^= 1;
    std::fs::write(&big, b).unwrap();
    let v = sealvol(&["verify", "--keyfile", s(&f.key), s(&bk)]);
    let out = String::from_utf8_lossy(&v.stdout);
    assert_eq!(v.status.code(), Some(1), "{out}");
    assert!(
        out.contains("DAMAGED export 1: /a/big") || out.contains("DAMAGED export 1: /a/b/hardlink"),
        "{out}"
    );
    let o = sealvol(&["import", "--keyfile", s(&f.key), s(&bk), "--store", s(&new)]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("DAMAGED /a/big") || out.contains("DAMAGED /a/b/hardlink"),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    ok(&sealvol(&[
        "check",
        "--store",
        s(&new),
        "--keyfile",
        s(&f.key),
    ]));
    let t = tree_of_store(&f, &new, &f.key, "m");
    assert!(
        t.contains("./a/b/c/small") && !t.contains("./a/big ") && !t.contains("./a/b/hardlink "),
        "{t}"
    );
}

#[test]
fn a_full_disk_during_import_is_named_and_the_partial_store_removed() {
    let f = Fixture::new();
    let bk = exported_random_file(&f, 200000000);
    let small = f.dir.path().join("small");
    std::fs::create_dir(&small).unwrap();
    ok(&sh(&format!(
        "mount -t tmpfs -o size=150m tmpfs '{}'",
        s(&small)
    )));
    let new = small.join("new");
    let o = sealvol(&["import", "--keyfile", s(&f.key), s(&bk), "--store", s(&new)]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let left: Vec<_> = std::fs::read_dir(&small).unwrap().collect();
    let _ = sh(&format!("umount '{}'", s(&small)));
    assert!(!o.status.success());
    assert!(
        err.contains("full") && err.contains("partial store was removed"),
        "{err}"
    );
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn the_backup_commands_are_listed_and_their_help_names_their_options() {
    let top = ok(&sealvol(&["--help"]));
    for c in ["export", "import", "verify", "export-ls"] {
        assert!(top.contains(c), "{top}");
    }
    let table: &[(&str, &[&str])] = &[
        (
            "export",
            &[
                "--store",
                "--volume",
                "--state-dir",
                "--keyfile",
                "--format",
                "tar.age",
                "--recipient",
                "--backup-passphrase-file",
                "--json",
                "TARGET",
            ],
        ),
        (
            "import",
            &[
                "--store",
                "--keyfile",
                "--identity",
                "--backup-passphrase-file",
                "--export",
                "SOURCE",
            ],
        ),
        (
            "verify",
            &[
                "--keyfile",
                "--identity",
                "--backup-passphrase-file",
                "SOURCE",
            ],
        ),
        ("export-ls", &["--json", "SOURCE"]),
    ];
    for (cmd, wants) in table {
        let out = ok(&sealvol(&[cmd, "--help"]));
        for w in *wants {
            assert!(out.contains(w), "{cmd} --help does not mention {w}: {out}");
        }
    }
    // A volume the driver does not have is named, with where it was looked for.
    let dir = tempfile::tempdir().unwrap();
    let o = sealvol(&[
        "export",
        "--volume",
        "nosuch",
        "--state-dir",
        s(dir.path()),
        "/tmp/x",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("no volume \"nosuch\""),
        "{err}"
    );
}

#[test]
fn a_native_export_streams_through_a_pipe_and_archives_chain_with_since() {
    let f = Fixture::new();
    f.mount();
    fill(&f);
    f.umount();
    // export - | import -: the native format through a pipe (as over ssh).
    let new = f.dir.path().join("piped");
    let script = format!(
        "set -o pipefail; '{b}' export --store '{st}' --keyfile '{k}' - | '{b}' import --keyfile '{k}' - --store '{new}'",
        b = bin(),
        st = s(&f.store),
        k = s(&f.key),
        new = s(&new)
    );
    let out = ok(&sh(&script));
    assert!(out.contains("import 1:"), "{out}");
    f.mount();
    let want = tree(&f.mnt);
    f.umount();
    assert_eq!(tree_of_store(&f, &new, &f.key, "m1"), want);

    // Archives: a full one, then one --since it holding only what changed.
    let a1 = f.dir.path().join("a1.tar");
    let a2 = f.dir.path().join("a2.tar");
    ok(&f.keyed("export", &[s(&a1)]));
    f.mount();
    std::fs::write(f.m("a/added"), b"added later").unwrap();
    let want2 = tree(&f.mnt);
    f.umount();
    ok(&f.keyed("export", &["--since", s(&a1), s(&a2)]));
    let (l1, l2) = (
        std::fs::metadata(&a1).unwrap().len(),
        std::fs::metadata(&a2).unwrap().len(),
    );
    assert!(l2 < 64 << 10 && l1 > 3_000_000, "{l1} {l2}");
    let ls = ok(&sealvol(&["export-ls", s(&a2)]));
    assert!(ls.contains("     1  ") && ls.contains("     2  "), "{ls}");
    let new2 = f.dir.path().join("from-archives");
    ok(&sealvol(&[
        "import",
        "--keyfile",
        s(&f.key),
        s(&a1),
        s(&a2),
        "--store",
        s(&new2),
    ]));
    assert_eq!(tree_of_store(&f, &new2, &f.key, "m2"), want2);
    let v = ok(&sealvol(&[
        "verify",
        "--keyfile",
        s(&f.key),
        s(&a1),
        s(&a2),
    ]));
    assert!(v.contains("verified 2 export(s)"), "{v}");
    // The second alone is refused as incomplete.
    let o = sealvol(&["verify", "--keyfile", s(&f.key), s(&a2)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("missing"));
}

#[test]
fn tar_age_layers_made_since_each_other_import_together() {
    let f = Fixture::new();
    f.mount();
    fill(&f);
    f.umount();
    let id = f.dir.path().join("id.txt");
    let recipient = age_identity(&id);
    let l1 = f.dir.path().join("l1.tar.age");
    let l2 = f.dir.path().join("l2.tar.age");
    ok(&f.keyed(
        "export",
        &["--format", "tar.age", "--recipient", &recipient, s(&l1)],
    ));
    assert!(f.dir.path().join("l1.tar.age.state").exists());
    f.mount();
    std::fs::remove_dir_all(f.m("a/b/c")).unwrap();
    std::fs::write(f.m("later"), b"added").unwrap();
    let want = tree(&f.mnt);
    f.umount();
    ok(&f.keyed(
        "export",
        &[
            "--format",
            "tar.age",
            "--recipient",
            &recipient,
            "--since",
            s(&l1),
            s(&l2),
        ],
    ));
    assert!(
        std::fs::metadata(&l2).unwrap().len() < 16 << 10,
        "the layer holds only what changed"
    );
    let new = f.dir.path().join("new");
    ok(&sealvol(&[
        "import",
        "--keyfile",
        s(&f.key),
        "--identity",
        s(&id),
        // (fill's /abs-link points out: kept, so that the trees compare whole.)
        "--keep-outside-symlinks",
        s(&l1),
        s(&l2),
        "--store",
        s(&new),
    ]));
    assert_eq!(tree_of_store(&f, &new, &f.key, "m"), want);
}

#[test]
fn an_export_killed_midway_leaves_the_chain_as_it_was_and_the_next_run_reuses_its_chunks() {
    let f = Fixture::new();
    f.mount();
    std::fs::write(f.m("first"), b"the first export").unwrap();
    f.umount();
    let bk = f.dir.path().join("bk");
    ok(&f.keyed("export", &[s(&bk)]));
    f.mount();
    ok(&sh(&format!(
        "head -c 300000000 /dev/urandom > '{}'",
        s(&f.m("big"))
    )));
    f.umount();
    let objects = |dir: &Path| -> usize {
        std::fs::read_dir(dir.join("objects"))
            .unwrap()
            .map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count())
            .sum()
    };
    let before = objects(&bk);
    let mut child = Command::new(bin())
        .args([
            "export",
            "--store",
            s(&f.store),
            "--keyfile",
            s(&f.key),
            s(&bk),
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Killed once it has written some of the big file's chunks.
    let t0 = std::time::Instant::now();
    while objects(&bk) < before + 200 {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(120),
            "the export wrote nothing"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the export finished before it could be killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!bk.join("exports/00000002.manifest").exists());
    let ls = ok(&sealvol(&["export-ls", s(&bk)]));
    assert!(ls.contains("     1  ") && !ls.contains("     2  "), "{ls}");
    let v = ok(&sealvol(&["verify", "--keyfile", s(&f.key), s(&bk)]));
    assert!(v.contains("no damage found"), "{v}");
    // The next run completes, reusing what the killed one wrote.
    let out = ok(&f.keyed("export", &["--json", s(&bk)]));
    let summary: serde_json::Value = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["event"] == "summary")
        .unwrap();
    assert_eq!(summary["seq"], 2);
    assert!(
        summary["reused_chunks"].as_u64().unwrap() >= 199,
        "{summary}"
    );
    let new = f.dir.path().join("new");
    import_into(&f, &bk, &new);
    ok(&sealvol(&[
        "check",
        "--store",
        s(&new),
        "--keyfile",
        s(&f.key),
    ]));
}

#[test]
fn import_into_a_docker_volume_replaces_its_empty_store_and_refuses_a_used_one() {
    let f = Fixture::new();
    f.mount();
    fill(&f);
    f.umount();
    let bk = f.dir.path().join("bk");
    ok(&f.keyed("export", &[s(&bk)]));
    // A state directory as the Docker driver lays it out, with a volume just created.
    let state = f.dir.path().join("state");
    let vstore = state.join("volumes").join("restored").join("store");
    std::fs::create_dir_all(vstore.parent().unwrap()).unwrap();
    ok(&sealvol(&[
        "init",
        "--store",
        s(&vstore),
        "--keyfile",
        s(&f.key),
    ]));
    let import = |key: &Path, name: &str| {
        sealvol(&[
            "import",
            "--keyfile",
            s(key),
            s(&bk),
            "--volume",
            name,
            "--state-dir",
            s(&state),
        ])
    };

    // Not a volume of this state directory; and a key the volume was not created with.
    let o = import(&f.key, "nosuch");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("has no volume \"nosuch\""),
        "{err}"
    );
    let key2 = other_key(&f);
    let o = import(&key2, "restored");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("does not open volume \"restored\""),
        "{err}"
    );

    // Mounted: refused, nothing changed.
    let mnt = f.dir.path().join("vm");
    std::fs::create_dir(&mnt).unwrap();
    ok(&sealvol(&[
        "mount",
        "--store",
        s(&vstore),
        "--keyfile",
        s(&f.key),
        s(&mnt),
    ]));
    std::fs::write(mnt.join("mine"), b"kept").unwrap();
    let o = import(&f.key, "restored");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("is mounted"), "{err}");
    ok(&sealvol(&["umount", s(&mnt)]));

    // Holding a file: refused, the file kept.
    let o = import(&f.key, "restored");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("holds files"), "{err}");
    let t = tree_of_store(&f, &vstore, &f.key, "m1");
    assert!(t.contains("./mine "), "{t}");

    // A fresh volume: restored in place, nothing left beside it.
    std::fs::remove_dir_all(&vstore).unwrap();
    ok(&sealvol(&[
        "init",
        "--store",
        s(&vstore),
        "--keyfile",
        s(&f.key),
    ]));
    ok(&import(&f.key, "restored"));
    let mut left: Vec<String> = std::fs::read_dir(vstore.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["store"]);
    ok(&sealvol(&[
        "check",
        "--store",
        s(&vstore),
        "--keyfile",
        s(&f.key),
    ]));
    f.mount();
    let want = tree(&f.mnt);
    f.umount();
    assert_eq!(tree_of_store(&f, &vstore, &f.key, "m2"), want);
}

#[test]
fn a_store_whose_import_was_killed_is_refused_and_says_what_to_do() {
    let f = Fixture::new();
    let bk = exported_random_file(&f, 100000000);
    let new = f.dir.path().join("new");
    let mut import = Command::new(bin())
        .args(["import", "--keyfile", s(&f.key), s(&bk), "--store", s(&new)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed once the new store has its key header (it would open), before the data is in.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !new.join("keys.json").exists() {
        assert!(std::time::Instant::now() < deadline, "import made no store");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    import.kill().unwrap();
    import.wait().unwrap();
    std::fs::create_dir(f.dir.path().join("m")).unwrap();
    for o in [
        sealvol(&["check", "--store", s(&new), "--keyfile", s(&f.key)]),
        sealvol(&[
            "mount",
            "--store",
            s(&new),
            "--keyfile",
            s(&f.key),
            s(&f.dir.path().join("m")),
        ]),
    ] {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success()
                && err.contains("is not a complete store")
                && err.contains("did not finish")
                && err.contains("run the import again"),
            "{err}"
        );
    }
    // As it says: delete it and import again.
    std::fs::remove_dir_all(&new).unwrap();
    import_into(&f, &bk, &new);
    assert!(!new.join("INCOMPLETE").exists());
    ok(&sealvol(&[
        "check",
        "--store",
        s(&new),
        "--keyfile",
        s(&f.key),
    ]));
}
