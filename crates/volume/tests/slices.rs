//! Small overwrites: a write into part of a stored chunk is written out as a slice laid over
//! it, not as a rewrite of the whole chunk, and a chunk whose slices pile up is compacted back
//! into one. Every step is checked against a plain byte vector, before and after a reopen.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;
use common::*;

use std::sync::Arc;

use sealvol_store::{Cf, Engine};
use sealvol_volume::schema::MAX_SLICES;
use sealvol_volume::{SetAttr, StepClock, Volume, ROOT_INO};

const CS: u32 = 128 * 1024;

fn reopen(
    v: Volume,
    h: &sealvol_crypto::KeyHeader,
    mk: &sealvol_crypto::MasterKey,
    e: &Arc<sealvol_store::MemoryEngine>,
) -> Volume {
    v.close().unwrap();
    drop(v);
    let clock = Arc::new(StepClock::new(1_800_000_000_000));
    Volume::open_in(e.clone() as Arc<dyn Engine>, h, mk, clock).unwrap()
}

/// Stored bytes of every chunk value (sealed), summed.
fn chunk_bytes(e: &dyn Engine) -> usize {
    let mut n = 0;
    e.for_each(Cf::Chunks, b"", &mut |_, v| {
        n += v.len();
        Ok(())
    })
    .unwrap();
    n
}

#[test]
fn a_small_overwrite_stores_a_slice_not_the_whole_chunk() {
    let (v, h, mk, e) = mem_volume(CS);
    let mut want = pattern(4 * CS as usize, 1);
    let ino = write_file(&v, ROOT_INO, "f", &want);
    let before = chunk_bytes(&*e);
    v.open_file(ino).unwrap();
    v.write(ino, 200_000, &[0xaa; 4096]).unwrap();
    v.release_file(ino).unwrap();
    want[200_000..204_096].fill(0xaa);
    let added = chunk_bytes(&*e) - before;
    // One sealed 4 KiB slice (padded, plus segment tags), not a 128 KiB chunk.
    assert!(added < 8192, "a 4 KiB overwrite stored {added} bytes");
    let chunks = v.file_chunks(ino).unwrap();
    assert_eq!(
        chunks.iter().filter(|(i, _)| *i == 1).count(),
        2,
        "{chunks:?}"
    );
    assert_eq!(read_all(&v, ino), want);
    // Reads inside, across and around the slice.
    for (off, len) in [
        (199_990, 20),
        (204_090, 20),
        (200_000, 4096),
        (131_072, 131_072),
    ] {
        assert_eq!(
            v.read(ino, off, len).unwrap(),
            &want[off as usize..(off + len as u64) as usize]
        );
    }
    let v = reopen(v, &h, &mk, &e);
    assert_eq!(read_all(&v, ino), want);
    assert!(v.check().unwrap().is_clean());
}

#[test]
fn random_small_writes_match_a_model_and_compaction_bounds_the_slices() {
    let (v, h, mk, e) = mem_volume(CS);
    let size = 3 * CS as usize + 5000;
    let mut want = pattern(size, 2);
    let ino = write_file(&v, ROOT_INO, "f", &want);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    v.open_file(ino).unwrap();
    for round in 0..400 {
        let len = (next() % 9000) as usize + 1;
        // Mostly inside the file, sometimes growing it.
        let off = (next() % (want.len() as u64 + 3000)) as usize;
        let data = pattern(len, round);
        v.write(ino, off as u64, &data).unwrap();
        if want.len() < off + len {
            want.resize(off + len, 0);
        }
        want[off..off + len].copy_from_slice(&data);
        match next() % 10 {
            0..=2 => v.flush(ino).unwrap(),
            3 => {
                let off = (next() % want.len() as u64) as usize;
                let n = (next() % 20000) as u32;
                let end = (off + n as usize).min(want.len());
                assert_eq!(
                    v.read(ino, off as u64, n).unwrap(),
                    &want[off..end],
                    "round {round}"
                );
            }
            _ => {}
        }
        if round % 50 == 0 {
            v.flush(ino).unwrap();
            for (index, _) in v.file_chunks(ino).unwrap() {
                let slices = v
                    .file_chunks(ino)
                    .unwrap()
                    .iter()
                    .filter(|(i, _)| *i == index)
                    .count();
                assert!(slices <= MAX_SLICES, "chunk {index} has {slices} slices");
            }
            assert_eq!(read_all(&v, ino), want, "round {round}");
        }
    }
    v.release_file(ino).unwrap();
    assert_eq!(read_all(&v, ino), want);
    assert!(v.check().unwrap().is_clean());
    let v = reopen(v, &h, &mk, &e);
    assert_eq!(read_all(&v, ino), want);
    let r = v.check().unwrap();
    assert!(r.is_clean(), "{:?}", r.damage);
}

#[test]
fn many_flushed_overwrites_of_one_chunk_are_compacted_into_one() {
    let (v, h, mk, e) = mem_volume(CS);
    let mut want = pattern(CS as usize, 3);
    let ino = write_file(&v, ROOT_INO, "f", &want);
    v.open_file(ino).unwrap();
    for k in 0..MAX_SLICES {
        // Up to here the chunk is its base and k + 1 slices.
        assert_eq!(v.file_chunks(ino).unwrap().len(), k + 1);
        let off = 1000 + k * 10_000;
        v.write(ino, off as u64, &[k as u8 + 1; 100]).unwrap();
        want[off..off + 100].fill(k as u8 + 1);
        v.flush(ino).unwrap();
    }
    v.release_file(ino).unwrap();
    // MAX_SLICES + 1 slices (the base and every overwrite) were folded into one chunk.
    assert_eq!(v.file_chunks(ino).unwrap().len(), 1);
    assert_eq!(read_all(&v, ino), want);
    // The slices it replaced are gone from the store: only the compacted chunk is left.
    let mut values = 0;
    e.for_each(Cf::Chunks, b"", &mut |_, _| {
        values += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(values, 1);
    let v = reopen(v, &h, &mk, &e);
    assert_eq!(read_all(&v, ino), want);
    assert!(v.check().unwrap().is_clean());
}

#[test]
fn an_overwrite_hiding_older_slices_drops_them() {
    let (v, _h, _mk, _e) = mem_volume(CS);
    let mut want = pattern(CS as usize, 4);
    let ino = write_file(&v, ROOT_INO, "f", &want);
    v.open_file(ino).unwrap();
    // The same page rewritten again and again, as a database does: never more than two slices.
    for k in 0..20u8 {
        v.write(ino, 8192, &[k; 4096]).unwrap();
        v.flush(ino).unwrap();
        assert_eq!(v.file_chunks(ino).unwrap().len(), 2);
    }
    want[8192..12288].fill(19);
    v.release_file(ino).unwrap();
    assert_eq!(read_all(&v, ino), want);
    assert!(v.check().unwrap().is_clean());
}

#[test]
fn truncating_a_chunk_with_slices_cuts_and_grows_with_zeros() {
    let (v, h, mk, e) = mem_volume(CS);
    let mut want = pattern(2 * CS as usize, 5);
    let ino = write_file(&v, ROOT_INO, "f", &want);
    v.open_file(ino).unwrap();
    v.write(ino, 140_000, &[9; 3000]).unwrap();
    v.flush(ino).unwrap();
    want[140_000..143_000].fill(9);
    let set = |size: u64| {
        v.setattr(
            ino,
            &SetAttr {
                size: Some(size),
                ..SetAttr::default()
            },
        )
        .unwrap();
    };
    set(141_000);
    want.truncate(141_000);
    assert_eq!(read_all(&v, ino), want);
    set(200_000);
    want.resize(200_000, 0);
    assert_eq!(read_all(&v, ino), want);
    // A patch past the cut lands on zeros, not on the bytes the cut removed.
    v.write(ino, 150_000, b"after").unwrap();
    want[150_000..150_005].copy_from_slice(b"after");
    v.release_file(ino).unwrap();
    assert_eq!(read_all(&v, ino), want);
    let v = reopen(v, &h, &mk, &e);
    assert_eq!(read_all(&v, ino), want);
    assert!(v.check().unwrap().is_clean());
}

#[test]
fn a_missing_slice_is_damage_never_zeros() {
    let (v, h, mk, e) = mem_volume(CS);
    let base = pattern(CS as usize, 6);
    let ino = write_file(&v, ROOT_INO, "f", &base);
    let before: Vec<Vec<u8>> = {
        let mut k = Vec::new();
        e.for_each(Cf::Chunks, b"", &mut |key, _| {
            k.push(key.to_vec());
            Ok(())
        })
        .unwrap();
        k
    };
    v.open_file(ino).unwrap();
    v.write(ino, 5000, &[1; 4096]).unwrap();
    v.release_file(ino).unwrap();
    let mut slice = None;
    e.for_each(Cf::Chunks, b"", &mut |key, _| {
        if !before.contains(&key.to_vec()) {
            slice = Some(key.to_vec());
        }
        Ok(())
    })
    .unwrap();
    let mut b = sealvol_store::WriteBatch::new();
    b.delete(Cf::Chunks, slice.unwrap());
    e.write(b, sealvol_store::Durability::Process).unwrap();
    let v = reopen(v, &h, &mk, &e);
    assert!(
        v.read(ino, 5000, 10).is_err(),
        "a read through the missing slice fails"
    );
    let r = v.check().unwrap();
    assert!(!r.is_clean());
    assert!(r.damage.iter().any(|d| d.path == "/f"), "{:?}", r.damage);
}
