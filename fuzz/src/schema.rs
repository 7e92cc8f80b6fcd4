//! Fuzz target body for `sealvol_volume::schema`: every record type and log entries.
//!
//! Input: one selector byte (which type, modulo 9), then the bytes as they would come out of a
//! record's sealed envelope. Properties: decoding never panics or allocates beyond the input's
//! size (libFuzzer's `-malloc_limit_mb` catches that); whatever decodes re-encodes (unpadded
//! and padded) and decodes back to the same value; `decode_log_entry` accepts exactly the
//! entries whose key is their own `log_key`.
//!
//! This file is also compiled into `crates/volume/tests/fuzz_seeds.rs` (no fuzz engine there),
//! which runs it over the committed seeds in `fuzz/seeds/schema`.

use sealvol_crypto::ChunkAddr;
use sealvol_volume::schema::{
    decode, decode_log_entry, encode, log_key, Config, Counters, Dirent, Extent, LogEntry, Op,
    RefCount, Slice, FORMAT_VERSION, META_PAD,
};
use sealvol_volume::{ChunkSize, Inode, Kind, Ts};
use serde::{Deserialize, Serialize};

/// The record types, in selector order.
pub const TYPES: [&str; 9] = [
    "config", "counters", "inode", "dirent", "extent", "refcount", "slice", "logentry", "logkey",
];

fn round_trip<T>(bytes: &[u8]) -> Option<T>
where
    T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
{
    let v: T = decode(bytes)?;
    for pad in [1, META_PAD] {
        let again = encode(&v, pad).expect("a decoded record re-encodes");
        assert_eq!(again.len() % pad, 0);
        let back: T = decode(&again).expect("a re-encoded record decodes");
        assert_eq!(back, v, "round trip through encode(.., {pad})");
    }
    Some(v)
}

/// One fuzz input.
pub fn run(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    match sel % 9 {
        0 => {
            round_trip::<Config>(rest);
        }
        1 => {
            round_trip::<Counters>(rest);
        }
        2 => {
            round_trip::<Inode>(rest);
        }
        3 => {
            round_trip::<Dirent>(rest);
        }
        4 => {
            round_trip::<Extent>(rest);
        }
        5 => {
            round_trip::<RefCount>(rest);
        }
        6 => {
            round_trip::<Slice>(rest);
        }
        7 => {
            // A log entry under its own key: accepted, the same value; under another, refused.
            if let Some(e) = round_trip::<LogEntry>(rest) {
                let key = log_key(e.hlc, e.origin);
                assert_eq!(decode_log_entry(&key, rest).as_ref(), Ok(&e));
                let other = log_key(e.hlc ^ 1, e.origin);
                assert!(decode_log_entry(&other, rest).is_err());
            } else {
                assert!(decode_log_entry(&[0; 16], rest).is_err());
            }
        }
        _ => {
            // Key (any length, as a damaged store could hold) then plaintext.
            let Some((&klen, rest)) = rest.split_first() else {
                return;
            };
            let klen = (klen as usize).min(rest.len());
            let (key, plain) = rest.split_at(klen);
            match decode_log_entry(key, plain) {
                Ok(e) => {
                    assert_eq!(key, log_key(e.hlc, e.origin));
                    assert_eq!(decode::<LogEntry>(plain), Some(e));
                }
                Err(msg) => assert!(msg.len() < 200, "error message bounded: {msg}"),
            }
        }
    }
}

/// Real records as sealvol writes them (padded to [`META_PAD`] as metadata is), each with its
/// selector byte: the seed corpus (`fuzz/seeds/schema`, written by the volume crate's
/// `fuzz_seeds` test when `SEALVOL_WRITE_FUZZ_SEEDS=1`).
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    fn seed<T: Serialize>(sel: u8, name: &str, v: &T) -> (String, Vec<u8>) {
        let mut out = vec![sel];
        out.extend(encode(v, META_PAD).expect("encodes"));
        (format!("{}-{name}", TYPES[sel as usize]), out)
    }
    let ts = |secs| Ts { secs, nanos: 7 };
    let file = Inode {
        ino: 0x0001_2345_0000_0002,
        kind: Kind::File,
        perm: 0o4755,
        uid: 1000,
        gid: 100,
        nlink: 2,
        size: 5 << 20,
        atime: ts(1_700_000_000),
        mtime: ts(1_700_000_001),
        ctime: ts(-1),
        crtime: ts(0),
        rdev: 0,
        parent: 1,
        target: Vec::new(),
        xattrs: [
            (b"user.a".to_vec(), b"1".to_vec()),
            (b"security.selinux".to_vec(), vec![0, 255]),
        ]
        .into_iter()
        .collect(),
        holes: vec![(1, 3), (7, 40)],
    };
    let link = Inode {
        kind: Kind::Symlink,
        target: b"../some/where".to_vec(),
        xattrs: Default::default(),
        holes: Vec::new(),
        ..file.clone()
    };
    let dirent = Dirent {
        name: b"hello.txt".to_vec(),
        ino: 42,
        kind: Kind::File,
    };
    let mut extent = Extent::whole(ChunkAddr([0xab; 32]), 131_072);
    extent.add(Slice {
        at: 4096,
        len: 4096,
        addr: ChunkAddr([0xcd; 32]),
    });
    let entry = LogEntry {
        hlc: 0x0190_0000_0000_0001,
        origin: 0x000f_ffff,
        ops: vec![
            Op::PutInode(file.clone()),
            Op::DelInode { ino: 9 },
            Op::PutDirent {
                parent: 1,
                dirent: dirent.clone(),
            },
            Op::DelDirent {
                parent: 1,
                name: b"old".to_vec(),
            },
            Op::PutExtent {
                ino: 42,
                index: 3,
                extent: extent.clone(),
            },
            Op::DelExtent { ino: 42, index: 4 },
        ],
    };
    let mut keyed = vec![8, 16];
    keyed.extend(log_key(entry.hlc, entry.origin));
    keyed.extend(encode(&entry, META_PAD).expect("encodes"));
    vec![
        seed(
            0,
            "current",
            &Config {
                format_version: FORMAT_VERSION,
                chunk_size: ChunkSize::DEFAULT,
                host_tag: 0x000a_bcde,
                created_unix: 1_700_000_000,
            },
        ),
        seed(
            1,
            "orphans",
            &Counters {
                next_ino: 77,
                files: 3,
                dirs: 2,
                orphans: vec![5, 6],
                last_hlc: u64::MAX,
                ..Counters::default()
            },
        ),
        seed(2, "file", &file),
        seed(2, "symlink", &link),
        seed(3, "file", &dirent),
        seed(4, "full", &extent),
        seed(
            5,
            "two",
            &RefCount {
                count: 2,
                plain_len: 4096,
                stored_len: 4189,
            },
        ),
        seed(
            6,
            "two",
            &Slice {
                at: 4096,
                len: 4096,
                addr: ChunkAddr([1; 32]),
            },
        ),
        seed(7, "every-op", &entry),
        ("logkey-every-op".to_string(), keyed),
    ]
}
