#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]
#![allow(dead_code)]
use std::sync::Arc;

use sealvol_crypto::{KdfParams, KeyHeader, MasterKey, Secret};
use sealvol_store::{Engine, MemoryEngine};
use sealvol_volume::{Caller, ChunkSize, CreateOptions, StepClock, Volume};

pub const ME: Caller = Caller { uid: 0, gid: 0 };

pub fn secret() -> Secret {
    Secret::key_file(&[7u8; 32])
}

pub fn keys() -> (KeyHeader, MasterKey) {
    KeyHeader::create(&secret(), KdfParams::MIN, 0).unwrap()
}

pub fn mem_volume(chunk_size: u32) -> (Volume, KeyHeader, MasterKey, Arc<MemoryEngine>) {
    let (h, mk) = keys();
    let e = Arc::new(MemoryEngine::new());
    let opts = CreateOptions {
        chunk_size: ChunkSize::new(chunk_size as u64).unwrap(),
        kdf: KdfParams::MIN,
        ..CreateOptions::default()
    };
    let v = Volume::init_in(
        e.clone() as Arc<dyn Engine>,
        &h,
        &mk,
        &opts,
        Arc::new(StepClock::new(1_700_000_000_000)),
    )
    .unwrap();
    (v, h, mk, e)
}

pub fn write_file(v: &Volume, parent: u64, name: &str, data: &[u8]) -> u64 {
    let i = v
        .mknod(
            ME,
            parent,
            name.as_bytes(),
            sealvol_volume::Kind::File,
            0o644,
            0,
        )
        .unwrap();
    v.open_file(i.ino).unwrap();
    v.write(i.ino, 0, data).unwrap();
    v.release_file(i.ino).unwrap();
    i.ino
}

pub fn read_all(v: &Volume, ino: u64) -> Vec<u8> {
    let size = v.getattr(ino).unwrap().size;
    let mut out = Vec::new();
    let mut off = 0;
    while off < size {
        let part = v.read(ino, off, 1 << 20).unwrap();
        assert!(!part.is_empty());
        off += part.len() as u64;
        out.extend_from_slice(&part);
    }
    out
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
