//! Throughput of the volume layer alone (no FUSE): sequential write, fsync, cold-cache read of
//! SIZE_MB through `Volume::write`/`read` on a RocksDB store in a temporary directory, next to
//! the raw crypto pipeline on the same machine in the same run.
//!
//!   cargo run --release -p sealvol-benches --bin volume-throughput [SIZE_MB] [DIR]
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::sync::Arc;
use std::time::Instant;

use sealvol_crypto::{HashKey, KdfParams, SealKey, Secret};
use sealvol_volume::{Caller, CreateOptions, Kind, SystemClock, Volume, ROOT_INO};

fn main() {
    let mut args = std::env::args().skip(1);
    let size_mb: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(512);
    let base = args.next().unwrap_or_else(|| "/var/tmp".into());
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let secret = Secret::key_file(&[1; 32]);
    let opts = CreateOptions {
        kdf: KdfParams::MIN,
        ..CreateOptions::default()
    };
    let v = Volume::create(&dir.path().join("s"), &secret, &opts, Arc::new(SystemClock)).unwrap();
    let cs = v.chunk_size().get() as usize;
    // Distinct data everywhere (no dedup, no cache hits), generated before timing.
    let mut x = 0x9e3779b97f4a7c15u64;
    let data: Vec<u8> = (0..size_mb << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();

    // Reference: hash + seal of the same bytes in chunk-size pieces, one core.
    let hk = HashKey::new(&[2; 32]);
    let sk = SealKey::new(&[3; 32]);
    let t = Instant::now();
    for c in data.chunks(cs) {
        let tree = hk.chunk_tree(c);
        std::hint::black_box(sk.seal_chunk(0, &tree.addr.0, &tree, c).unwrap());
    }
    let crypto = size_mb as f64 / t.elapsed().as_secs_f64();

    let who = Caller { uid: 0, gid: 0 };
    let f = v
        .mknod(who, ROOT_INO, b"f", Kind::File, 0o644, 0)
        .unwrap()
        .ino;
    v.open_file(f).unwrap();
    let t = Instant::now();
    for (k, piece) in data.chunks(128 * 1024).enumerate() {
        v.write(f, (k * 128 * 1024) as u64, piece).unwrap();
    }
    v.fsync(f).unwrap();
    let write = size_mb as f64 / t.elapsed().as_secs_f64();
    v.release_file(f).unwrap();
    drop(v);
    let v = Volume::open(&dir.path().join("s"), &secret, Arc::new(SystemClock)).unwrap();
    let t = Instant::now();
    let mut n = 0usize;
    let mut off = 0u64;
    loop {
        let d = v.read(f, off, 128 * 1024).unwrap();
        if d.is_empty() {
            break;
        }
        n += d.len();
        off += d.len() as u64;
    }
    assert_eq!(n, data.len());
    let read = size_mb as f64 / t.elapsed().as_secs_f64();

    // Random 4 KiB reads over the whole file, in this process: what a read costs the volume
    // layer without FUSE. Reference: the same offsets read with pread from a plain file holding
    // the same bytes (page cache warm), in the same run.
    let blocks = (data.len() / 4096) as u64;
    let offsets: Vec<u64> = (0..RANDOM_READS)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % blocks) * 4096
        })
        .collect();
    let t = Instant::now();
    for &o in &offsets {
        let d = v.read(f, o, 4096).unwrap();
        assert_eq!(d[..], data[o as usize..o as usize + 4096]);
    }
    let rand_vol = RANDOM_READS as f64 / t.elapsed().as_secs_f64();
    let plain_path = dir.path().join("plain");
    std::fs::write(&plain_path, &data).unwrap();
    let plain = std::fs::File::open(&plain_path).unwrap();
    let mut buf = vec![0u8; 4096];
    let t = Instant::now();
    for &o in &offsets {
        std::os::unix::fs::FileExt::read_exact_at(&plain, &mut buf, o).unwrap();
        std::hint::black_box(&buf);
    }
    let rand_plain = RANDOM_READS as f64 / t.elapsed().as_secs_f64();
    println!("crypto pipeline (hash+seal, 1 core): {crypto:.0} MB/s");
    println!(
        "volume sequential write + fsync:     {write:.0} MB/s ({:.2}x of the pipeline)",
        write / crypto
    );
    println!(
        "volume sequential read (reopened):   {read:.0} MB/s ({:.2}x of the pipeline)",
        read / crypto
    );
    println!(
        "volume random 4 KiB read:            {rand_vol:.0} reads/s ({:.1} us each; plain-file pread {rand_plain:.0}/s)",
        1e6 / rand_vol
    );
}

/// Random reads timed (a few passes over a 512 MiB file's 4 KiB blocks would take too long).
const RANDOM_READS: usize = 200_000;
