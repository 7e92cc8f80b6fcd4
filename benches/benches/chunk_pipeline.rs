//! The chunk pipeline per core: hash + seal (write) and open + verify (read), next to raw
//! XChaCha20-Poly1305 and raw BLAKE3 on the same buffers, so the ratio shows what sealvol adds.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sealvol_crypto::{Domain, HashKey, SealKey};

fn pipeline(c: &mut Criterion) {
    let mut g = c.benchmark_group("chunk");
    for size in [64 * 1024usize, 128 * 1024, 1024 * 1024] {
        let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        g.throughput(Throughput::Bytes(size as u64));
        let addr_key = HashKey::new([1; 32]);
        let seal_key = SealKey::new([2; 32]);
        g.bench_with_input(BenchmarkId::new("raw_blake3_keyed", size), &data, |b, d| {
            b.iter(|| blake3::keyed_hash(&[1; 32], d))
        });
        let raw = XChaCha20Poly1305::new((&[2u8; 32]).into());
        g.bench_with_input(
            BenchmarkId::new("raw_xchacha20poly1305", size),
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
                    let a = addr_key.chunk_addr(d);
                    seal_key.seal(Domain::Chunk, 0, &a.0, d).unwrap()
                })
            },
        );
        let a = addr_key.chunk_addr(&data);
        let sealed = seal_key.seal(Domain::Chunk, 0, &a.0, &data).unwrap();
        g.bench_with_input(
            BenchmarkId::new("sealvol_open_verify", size),
            &sealed,
            |b, s| {
                b.iter(|| {
                    let p = seal_key.open(Domain::Chunk, &a.0, s).unwrap();
                    assert_eq!(addr_key.chunk_addr(&p), a);
                    p
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
