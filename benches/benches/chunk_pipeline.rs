//! The chunk pipeline per core: hash + seal (write), open + verify (read), and a 4 KiB read of
//! a chunk (one segment opened and verified against the address), each also as a local read
//! does it (authenticate only, `Verify::LocalStore`), next to raw
//! XChaCha20-Poly1305 (RustCrypto, the reference implementation) and raw keyed BLAKE3 on the
//! same buffers, so the ratios show what sealvol adds or saves.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sealvol_crypto::{HashKey, SealKey, Verify};

fn pipeline(c: &mut Criterion) {
    let mut g = c.benchmark_group("chunk");
    for size in [16 * 1024usize, 128 * 1024, 1024 * 1024] {
        let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        g.throughput(Throughput::Bytes(size as u64));
        let addr_key = HashKey::new(&[1; 32]);
        let seal_key = SealKey::new(&[2; 32]);
        g.bench_with_input(BenchmarkId::new("raw_blake3_keyed", size), &data, |b, d| {
            b.iter(|| blake3::keyed_hash(&[1; 32], d))
        });
        let raw = XChaCha20Poly1305::new((&[2u8; 32]).into());
        g.bench_with_input(
            BenchmarkId::new("raw_xchacha20poly1305_rustcrypto", size),
            &data,
            |b, d| {
                let mut buf = d.clone();
                b.iter(|| {
                    buf.copy_from_slice(d);
                    raw.encrypt_in_place_detached(XNonce::from_slice(&[3; 24]), b"", &mut buf)
                        .unwrap()
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("sealvol_hash_seal", size),
            &data,
            |b, d| {
                b.iter(|| {
                    let tree = addr_key.chunk_tree(d);
                    seal_key.seal_chunk(0, &tree.addr.0, &tree, d).unwrap()
                })
            },
        );
        let tree = addr_key.chunk_tree(&data);
        let a = tree.addr;
        let sealed = seal_key.seal_chunk(0, &a.0, &tree, &data).unwrap();
        g.bench_with_input(
            BenchmarkId::new("sealvol_open_verify", size),
            &sealed,
            |b, s| {
                b.iter(|| {
                    seal_key
                        .open_chunk(Verify::Address(&addr_key), &a.0, &a, s)
                        .unwrap()
                })
            },
        );
        // What a local read does: authenticate only (no re-hash against the address).
        g.bench_with_input(
            BenchmarkId::new("sealvol_open_local", size),
            &sealed,
            |b, s| {
                b.iter(|| {
                    seal_key
                        .open_chunk(Verify::LocalStore, &a.0, &a, s)
                        .unwrap()
                })
            },
        );
        // A 4 KiB read from the middle of the chunk; throughput counts the whole chunk, so
        // this row reads as "chunk bytes served per second by 4 KiB reads".
        let mid = size / 2;
        g.bench_with_input(
            BenchmarkId::new("sealvol_open_4k", size),
            &sealed,
            |b, s| {
                b.iter(|| {
                    seal_key
                        .open_chunk_range(Verify::Address(&addr_key), &a.0, &a, s, mid..mid + 4096)
                        .unwrap()
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("sealvol_open_4k_local", size),
            &sealed,
            |b, s| {
                b.iter(|| {
                    seal_key
                        .open_chunk_range(Verify::LocalStore, &a.0, &a, s, mid..mid + 4096)
                        .unwrap()
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
