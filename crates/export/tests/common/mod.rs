#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub, dead_code)]
//! A volume with every kind of file and attribute, and a dump that compares two volumes byte
//! for byte and attribute for attribute.

use std::collections::BTreeMap;
use std::sync::Arc;

use sealvol_crypto::{KdfParams, KeyHeader, MasterKey, Secret};
use sealvol_store::{Engine, MemoryEngine};
use sealvol_volume::{
    Caller, ChunkSize, CreateOptions, Kind, SetAttr, StepClock, Ts, Volume, ROOT_INO,
};

pub const CHUNK: u64 = 16 << 10;
pub const ROOT: Caller = Caller { uid: 0, gid: 0 };

pub fn secret() -> Secret {
    Secret::key_file(&[7u8; 32])
}

pub fn other_secret() -> Secret {
    Secret::key_file(&[8u8; 32])
}

pub struct Src {
    pub v: Volume,
    pub header: KeyHeader,
    pub master: MasterKey,
}

/// A volume on the memory engine, opened with `secret()`.
pub fn volume() -> Src {
    let (header, master) = KeyHeader::create(&secret(), KdfParams::MIN, 0).unwrap();
    let v = empty_volume(&header, &master);
    Src { v, header, master }
}

pub fn empty_volume(header: &KeyHeader, master: &MasterKey) -> Volume {
    let opts = CreateOptions {
        chunk_size: ChunkSize::new(CHUNK).unwrap(),
        kdf: KdfParams::MIN,
        ..CreateOptions::default()
    };
    Volume::init_in(
        Arc::new(MemoryEngine::new()) as Arc<dyn Engine>,
        header,
        master,
        &opts,
        Arc::new(StepClock::new(1_700_000_000_000)),
    )
    .unwrap()
}

/// A fresh volume to restore into (its own key).
pub fn new_volume() -> Volume {
    let (h, m) = KeyHeader::create(&other_secret(), KdfParams::MIN, 0).unwrap();
    empty_volume(&h, &m)
}

pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

pub fn write_at(v: &Volume, ino: u64, off: u64, data: &[u8]) {
    v.open_file(ino).unwrap();
    v.write(ino, off, data).unwrap();
    v.release_file(ino).unwrap();
}

pub fn file(v: &Volume, parent: u64, name: &str, data: &[u8]) -> u64 {
    let i = v
        .mknod(ROOT, parent, name.as_bytes(), Kind::File, 0o644, 0)
        .unwrap();
    write_at(v, i.ino, 0, data);
    i.ino
}

pub fn lookup(v: &Volume, path: &str) -> u64 {
    let mut ino = ROOT_INO;
    for c in path.split('/').filter(|c| !c.is_empty()) {
        ino = v.lookup(ino, c.as_bytes()).unwrap().ino;
    }
    ino
}

fn t(secs: i64, nanos: u32) -> Ts {
    Ts { secs, nanos }
}

/// Every kind of node and attribute: sizes around the chunk size (0, 1, chunk-1, chunk,
/// chunk+1, several chunks), a sparse file with holes inside and at its end, a file of zeros,
/// duplicate contents (dedup), unusual modes (setuid, sticky, 0), other owners, nanosecond
/// times, xattrs (with binary values), symlinks (relative, absolute, dangling), a hard link
/// across directories, a fifo, a socket, character and block devices, a non-UTF-8 name, a
/// deep path.
pub fn populate(v: &Volume) {
    let docs = v.mkdir(ROOT, ROOT_INO, b"docs", 0o755).unwrap().ino;
    let deep = {
        let mut d = docs;
        for i in 0..6 {
            d = v
                .mkdir(ROOT, d, format!("d{i}").as_bytes(), 0o750)
                .unwrap()
                .ino;
        }
        d
    };
    for (name, len) in [
        ("empty", 0usize),
        ("one", 1),
        ("under", CHUNK as usize - 1),
        ("exact", CHUNK as usize),
        ("over", CHUNK as usize + 1),
        ("several", 5 * CHUNK as usize + 123),
    ] {
        file(v, docs, name, &pattern(len, len as u64));
    }
    file(v, deep, "bottom.txt", b"at the bottom\n");
    // The same contents twice: one set of chunks.
    file(v, ROOT_INO, "dup1", &pattern(3 * CHUNK as usize, 99));
    file(v, ROOT_INO, "dup2", &pattern(3 * CHUNK as usize, 99));
    // Sparse: data at chunk 0 and 3, holes at 1-2 and after 4 (size 8 chunks).
    let sparse = v
        .mknod(ROOT, ROOT_INO, b"sparse", Kind::File, 0o600, 0)
        .unwrap()
        .ino;
    write_at(v, sparse, 0, &pattern(100, 5));
    write_at(v, sparse, 3 * CHUNK + 7, &pattern(CHUNK as usize, 6));
    v.setattr(
        sparse,
        &SetAttr {
            size: Some(8 * CHUNK),
            ..SetAttr::default()
        },
    )
    .unwrap();
    file(v, ROOT_INO, "zeros", &vec![0u8; 2 * CHUNK as usize + 10]);
    // Modes and owners.
    let suid = file(v, ROOT_INO, "suid", b"#!/bin/sh\n");
    v.setattr(
        suid,
        &SetAttr {
            uid: Some(1000),
            gid: Some(50),
            ..SetAttr::default()
        },
    )
    .unwrap();
    v.setattr(
        suid,
        &SetAttr {
            perm: Some(0o4755),
            ..SetAttr::default()
        },
    )
    .unwrap();
    let sticky = v.mkdir(ROOT, ROOT_INO, b"tmp", 0o1777).unwrap().ino;
    let none = file(v, sticky, "nothing-allowed", b"secret");
    v.setattr(
        none,
        &SetAttr {
            perm: Some(0),
            uid: Some(65534),
            gid: Some(65534),
            ..SetAttr::default()
        },
    )
    .unwrap();
    let sgid = v.mkdir(ROOT, ROOT_INO, b"shared", 0o2775).unwrap().ino;
    v.setattr(
        sgid,
        &SetAttr {
            gid: Some(100),
            ..SetAttr::default()
        },
    )
    .unwrap();
    v.setattr(
        sgid,
        &SetAttr {
            perm: Some(0o2775),
            ..SetAttr::default()
        },
    )
    .unwrap();
    file(v, sgid, "inherits", b"group 100");
    // xattrs.
    let x = file(v, ROOT_INO, "xattrs", b"x");
    v.setxattr(x, b"user.comment", b"hello", 0).unwrap();
    v.setxattr(x, b"user.binary", &[0, 1, 2, 255, 0], 0)
        .unwrap();
    v.setxattr(x, b"security.selinux", b"system_u:object_r:tmp_t:s0\0", 0)
        .unwrap();
    v.setxattr(docs, b"user.on-a-dir", b"yes", 0).unwrap();
    // Links.
    v.symlink(ROOT, ROOT_INO, b"rel-link", b"docs/one").unwrap();
    v.symlink(ROOT, docs, b"abs-link", b"/etc/passwd").unwrap();
    v.symlink(ROOT, ROOT_INO, b"dangling", b"no/such/file")
        .unwrap();
    let shared = file(v, docs, "hardlinked", &pattern(CHUNK as usize * 2, 7));
    v.link(shared, deep, b"hardlink-2").unwrap();
    v.link(shared, ROOT_INO, b"hardlink-3").unwrap();
    // Special files.
    v.mknod(ROOT, ROOT_INO, b"fifo", Kind::Fifo, 0o640, 0)
        .unwrap();
    v.mknod(ROOT, ROOT_INO, b"socket", Kind::Socket, 0o755, 0)
        .unwrap();
    v.mknod(ROOT, ROOT_INO, b"null", Kind::CharDev, 0o666, (1 << 8) | 3)
        .unwrap();
    v.mknod(ROOT, ROOT_INO, b"sda", Kind::BlockDev, 0o660, (8 << 8) | 1)
        .unwrap();
    // A name that is not UTF-8.
    let odd = v
        .mknod(ROOT, ROOT_INO, b"caf\xe9", Kind::File, 0o644, 0)
        .unwrap()
        .ino;
    write_at(v, odd, 0, b"latin-1 name");
    // Times last (with nanoseconds), on a few nodes, the root included.
    for (ino, s) in [
        (odd, 1_000_000_001),
        (docs, 1_200_000_000),
        (ROOT_INO, 1_300_000_000),
        (sparse, 42),
    ] {
        v.setattr(
            ino,
            &SetAttr {
                atime: Some(t(s, 123_456_789)),
                mtime: Some(t(s + 1, 987_654_321)),
                ctime: Some(t(s + 2, 5)),
                ..SetAttr::default()
            },
        )
        .unwrap();
    }
}

/// What a node looks like from outside: everything but its inode number and crtime.
#[derive(Debug, PartialEq, Clone)]
pub struct Seen {
    pub kind: Kind,
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub size: u64,
    pub atime: Ts,
    pub mtime: Ts,
    pub ctime: Ts,
    pub rdev: u32,
    pub target: Vec<u8>,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    pub data_hash: Option<[u8; 32]>,
    /// The first path (in walk order) of the file this one is a hard link of.
    pub link_group: Option<Vec<u8>>,
}

/// Every path of the tree with what it shows; `with_ctime` false leaves ctime out (a restore
/// sets it, but links made after it move it, as on any filesystem).
pub fn dump(v: &Volume) -> BTreeMap<Vec<u8>, Seen> {
    let mut out = BTreeMap::new();
    let mut first: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut stack = vec![(Vec::<u8>::new(), ROOT_INO)];
    while let Some((path, ino)) = stack.pop() {
        let i = v.getattr(ino).unwrap();
        if i.kind == Kind::Dir {
            for d in v.readdir(ino, 0, usize::MAX).unwrap() {
                if d.name != b"." && d.name != b".." {
                    let mut p = path.clone();
                    if !p.is_empty() {
                        p.push(b'/');
                    }
                    p.extend_from_slice(&d.name);
                    stack.push((p, d.ino));
                }
            }
        }
        let data_hash = (i.kind == Kind::File).then(|| {
            let mut h = blake3::Hasher::new();
            let mut off = 0;
            while off < i.size {
                let part = v.read(ino, off, 1 << 20).unwrap();
                assert!(!part.is_empty());
                off += part.len() as u64;
                h.update(&part);
            }
            *h.finalize().as_bytes()
        });
        let link_group = (i.kind != Kind::Dir && i.nlink > 1)
            .then(|| first.entry(ino).or_insert_with(|| path.clone()).clone());
        out.insert(
            path,
            Seen {
                kind: i.kind,
                perm: i.perm,
                uid: i.uid,
                gid: i.gid,
                nlink: i.nlink,
                size: i.size,
                atime: i.atime,
                mtime: i.mtime,
                ctime: i.ctime,
                rdev: i.rdev,
                target: i.target.clone(),
                xattrs: i.xattrs.clone(),
                data_hash,
                link_group,
            },
        );
    }
    out
}

/// Two dumps agree (hard-link groups compared as sets of paths).
pub fn assert_same(a: &BTreeMap<Vec<u8>, Seen>, b: &BTreeMap<Vec<u8>, Seen>) {
    let keys_a: Vec<_> = a
        .keys()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    let keys_b: Vec<_> = b
        .keys()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert_eq!(keys_a, keys_b, "the same paths");
    let groups = |d: &BTreeMap<Vec<u8>, Seen>| {
        let mut g: BTreeMap<Vec<u8>, Vec<Vec<u8>>> = BTreeMap::new();
        for (p, s) in d {
            if let Some(f) = &s.link_group {
                g.entry(f.clone()).or_default().push(p.clone());
            }
        }
        let mut v: Vec<Vec<Vec<u8>>> = g.into_values().collect();
        v.sort();
        v
    };
    assert_eq!(groups(a), groups(b), "the same hard-link groups");
    for (p, sa) in a {
        let mut sa = sa.clone();
        let mut sb = b[p].clone();
        sa.link_group = None;
        sb.link_group = None;
        assert_eq!(sa, sb, "{}", String::from_utf8_lossy(p));
    }
}
