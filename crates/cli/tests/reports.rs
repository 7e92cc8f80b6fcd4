//! What sealvol reports, checked value by value: help texts, `stats`, `statfs` on a mount, and
//! `check --json`.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;
use common::*;

use serde_json::Value;

/// Every command's help names its own options (not only "Usage"), and the top level lists
/// every command.
#[test]
fn help_on_every_command_names_its_options() {
    let table: &[(&[&str], &[&str])] = &[
        (
            &["--help"],
            &["init", "mount", "umount", "key", "stats", "check", "serve"],
        ),
        (
            &["init", "--help"],
            &[
                "--store",
                "--keyfile",
                "--passphrase-file",
                "--chunk-size",
                "[default: 128K]",
            ],
        ),
        (
            &["mount", "--help"],
            &[
                "--store",
                "--foreground",
                "--memory",
                "[default: 256M]",
                "--cache-size",
                "MOUNTPOINT",
            ],
        ),
        (&["umount", "--help"], &["MOUNTPOINT"]),
        (&["key", "--help"], &["add", "remove", "list"]),
        (&["key", "add", "--help"], &["--store"]),
        (&["key", "remove", "--help"], &["--store"]),
        (&["key", "list", "--help"], &["--store"]),
        (&["stats", "--help"], &["--store", "--json"]),
        (&["check", "--help"], &["--store", "--json", "--repair"]),
        (
            &["serve", "--help"],
            &["--socket", "--state-dir", "--default-keyfile"],
        ),
    ];
    for (args, wants) in table {
        let out = ok(&sealvol(args));
        assert!(
            out.starts_with("Usage: sealvol") || out.contains("\nUsage: sealvol"),
            "{args:?}: {out}"
        );
        for w in *wants {
            assert!(out.contains(w), "{args:?} does not mention {w}: {out}");
        }
    }
    // And an unknown command is an error that names it.
    let o = sealvol(&["frobnicate"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("frobnicate"));
}

fn stats_json(f: &Fixture) -> Value {
    let out = ok(&f.keyed("stats", &["--json"]));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn stats_report_exact_totals_and_dedup() {
    let f = Fixture::new(); // 64 KiB chunks
    f.mount();
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(f.m("a"), &data).unwrap();
    std::fs::write(f.m("b"), &data).unwrap();
    std::fs::create_dir(f.m("d")).unwrap();
    std::os::unix::fs::symlink("a", f.m("l")).unwrap();
    f.umount();
    let s = stats_json(&f);
    let n = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("{k}: {s}"));
    assert_eq!(n("files"), 2);
    assert_eq!(n("dirs"), 2, "the root and d");
    assert_eq!(n("others"), 1, "the symlink");
    assert_eq!(n("logical_bytes"), 2_000_000);
    assert_eq!(n("chunk_size"), 65536);
    // 1,000,000 bytes in 64 KiB chunks: 15 whole chunks and one of 16,960 bytes. The data
    // repeats every 251 bytes, but chunk boundaries fall at different phases, so the 16 are
    // distinct; the second file shares all of them.
    assert_eq!(n("chunks"), 16);
    assert_eq!(n("chunk_plain_bytes"), 1_000_000);
    assert_eq!(n("referenced_bytes"), 2_000_000);
    assert_eq!(s["dedup_ratio"].as_f64(), Some(2.0));
    // Sealed: whole 64 KiB chunks are not padded (a power of two is its own class), the last
    // one is padded to its class; each carries a nonce, tags and a trailer.
    let stored = n("stored_bytes");
    assert!(
        stored > 1_000_000 && stored < 1_000_000 + 16 * 1024 + 20_000,
        "{stored}"
    );
    assert!(n("disk_bytes") >= stored, "{s}");
}

#[test]
fn statfs_reports_the_backing_disk_and_the_volumes_inodes() {
    let f = Fixture::new();
    f.mount();
    for i in 0..5 {
        std::fs::write(f.m(&format!("f{i}")), b"x").unwrap();
    }
    std::fs::create_dir(f.m("d")).unwrap();
    let fmt = "'%b %S %l %c %d %a'";
    let mnt = ok(&sh(&format!("stat -f -c {fmt} {}", f.mnt.display())));
    let disk = ok(&sh(&format!("stat -f -c {fmt} {}", f.store.display())));
    let m: Vec<u64> = mnt.split_whitespace().map(|x| x.parse().unwrap()).collect();
    let d: Vec<u64> = disk
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    assert_eq!(
        m[0], d[0],
        "total blocks are the backing disk's: {mnt} / {disk}"
    );
    assert_eq!(m[1], d[1], "block size");
    assert_eq!(m[2], 255, "name length limit");
    // Inodes: the volume's own (root, d, five files) are the used ones.
    assert_eq!(m[3] - m[4], 7, "{mnt}");
    // Free blocks: the disk's, give or take what other tests write meanwhile (64 MiB).
    let slack = (64 << 20) / d[1];
    assert!(
        m[5].abs_diff(d[5]) <= slack,
        "available blocks {mnt} / {disk}"
    );
    f.umount();
}

#[test]
fn check_json_reports_counts_and_damage_kinds() {
    let f = Fixture::new();
    f.mount();
    std::fs::write(f.m("a"), vec![1u8; 200_000]).unwrap();
    std::fs::create_dir(f.m("d")).unwrap();
    std::fs::write(f.m("d/b"), b"bee").unwrap();
    f.umount();
    let out = ok(&f.keyed("check", &["--json"]));
    let r: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(r["inodes"], 4, "{r}");
    assert_eq!(r["dirents"], 3, "{r}");
    // a: 200,000 bytes of ones in 64 KiB chunks: 3 identical whole chunks and a tail; b: one.
    assert_eq!(r["extents"], 5, "{r}");
    assert_eq!(r["chunks"], 3, "{r}");
    assert_eq!(r["damage"], Value::Array(vec![]), "{r}");
    assert_eq!(r["reclaimable_chunks"], 0, "{r}");
    assert_eq!(r["repaired"], Value::Null, "{r}");
    // --repair on a healthy store rewrites counts and changes nothing else.
    let out = ok(&f.keyed("check", &["--repair"]));
    assert!(out.contains("no damage found"), "{out}");
    assert!(
        out.contains("repaired: 0 chunk(s) reclaimed, 3 reference count(s)"),
        "{out}"
    );
    ok(&f.check());
}
