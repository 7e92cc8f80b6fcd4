//! `check` against damage made through the engine, one kind per test: records deleted, swapped,
//! moved to another key, or rolled back to an older copy. Each must be found, named by path
//! where a file is concerned, and never reported on a healthy store.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;
use common::*;

use std::collections::BTreeMap;
use std::sync::Arc;

use sealvol_store::{Cf, Durability, Engine, MemoryEngine, WriteBatch};
use sealvol_volume::check::{CheckReport, DamageKind};
use sealvol_volume::{Kind, Volume, ROOT_INO};

type Records = BTreeMap<Vec<u8>, Vec<u8>>;

fn records(e: &MemoryEngine, cf: Cf) -> Records {
    let mut out = BTreeMap::new();
    e.for_each(cf, b"", &mut |k, v| {
        out.insert(k.to_vec(), v.to_vec());
        Ok(())
    })
    .unwrap();
    out
}

/// Keys of `cf` that `f` adds or changes, with their old values (None: added).
fn touched(e: &MemoryEngine, cf: Cf, f: impl FnOnce()) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let before = records(e, cf);
    f();
    let after = records(e, cf);
    after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(v))
        .map(|(k, _)| (k.clone(), before.get(k).cloned()))
        .collect()
}

fn put(e: &MemoryEngine, cf: Cf, k: &[u8], v: Vec<u8>) {
    let mut b = WriteBatch::new();
    b.put(cf, k.to_vec(), v);
    e.write(b, Durability::Process).unwrap();
}

fn del(e: &MemoryEngine, cf: Cf, k: &[u8]) {
    let mut b = WriteBatch::new();
    b.delete(cf, k.to_vec());
    e.write(b, Durability::Process).unwrap();
}

/// Check a store as a fresh process would see it (no caches): reopen it.
fn check_fresh(
    v: Volume,
    h: &sealvol_crypto::KeyHeader,
    mk: &sealvol_crypto::MasterKey,
    e: &Arc<MemoryEngine>,
) -> (Volume, CheckReport) {
    v.close().unwrap();
    drop(v);
    let v = Volume::open_in(
        e.clone(),
        h,
        mk,
        Arc::new(sealvol_volume::StepClock::new(1_900_000_000_000)),
    )
    .unwrap();
    let r = v.check().unwrap();
    (v, r)
}

fn kinds(r: &CheckReport) -> Vec<(String, DamageKind)> {
    r.damage.iter().map(|d| (d.path.clone(), d.kind)).collect()
}

/// A small tree: /d/f (3 chunks), /g (1 chunk, hard-linked as /d/g2), /d/e (empty dir).
fn tree() -> (
    Volume,
    sealvol_crypto::KeyHeader,
    sealvol_crypto::MasterKey,
    Arc<MemoryEngine>,
    u64,
) {
    let (v, h, mk, e) = mem_volume(4096);
    let d = v.mkdir(ME, ROOT_INO, b"d", 0o755).unwrap();
    v.mkdir(ME, d.ino, b"e", 0o700).unwrap();
    write_file(&v, d.ino, "f", &pattern(3 * 4096, 1));
    let g = write_file(&v, ROOT_INO, "g", &pattern(100, 2));
    v.link(g, d.ino, b"g2").unwrap();
    (v, h, mk, e, d.ino)
}

#[test]
fn a_healthy_store_is_clean_with_every_record_counted() {
    let (v, h, mk, e, _) = tree();
    let (_v, r) = check_fresh(v, &h, &mk, &e);
    assert!(r.is_clean(), "{:?}", r.damage);
    // root, d, e, f, g; entries d, e, f, g, g2; 3 + 1 extents and chunks.
    assert_eq!(
        (r.inodes, r.dirents, r.extents, r.chunks, r.refs),
        (5, 5, 4, 4, 4)
    );
    assert_eq!(r.reclaimable_chunks, 0);
    assert!(r.log_entries > 0);
}

#[test]
fn a_deleted_inode_record_is_named_by_path() {
    let (v, h, mk, e, d) = tree();
    let k = touched(&e, Cf::Inodes, || {
        v.mknod(ME, d, b"victim", Kind::File, 0o644, 0).unwrap();
    });
    let created: Vec<_> = k.iter().filter(|(_, old)| old.is_none()).collect();
    assert_eq!(created.len(), 1);
    del(&e, Cf::Inodes, &created[0].0);
    let (_v, r) = check_fresh(v, &h, &mk, &e);
    assert_eq!(
        kinds(&r)[0],
        ("/d/victim".to_string(), DamageKind::MissingInode)
    );
    // The totals still count it; nothing else is wrong.
    assert!(
        r.damage[1..].iter().all(|d| d.kind == DamageKind::Totals),
        "{:?}",
        r.damage
    );
}

#[test]
fn a_deleted_directory_entry_leaves_an_unreachable_inode() {
    let (v, h, mk, e, _) = tree();
    let k = touched(&e, Cf::Dirents, || {
        write_file(&v, ROOT_INO, "lost", b"data");
    });
    assert_eq!(k.len(), 1);
    del(&e, Cf::Dirents, &k[0].0);
    let (_v, r) = check_fresh(v, &h, &mk, &e);
    // The file's inode (opened and named by number) and its extent.
    let u: Vec<_> = r.of_kind(DamageKind::Unreachable).collect();
    assert_eq!(u.len(), 2, "{:?}", r.damage);
    assert!(
        u[0].path.starts_with("<inode ") && u[0].detail.starts_with("a File"),
        "{u:?}"
    );
    assert!(u[1].detail.starts_with("1 extent records"), "{u:?}");
}

#[test]
fn swapped_inode_records_fail_authentication() {
    let (v, h, mk, e, _) = tree();
    let inodes = records(&e, Cf::Inodes);
    let keys: Vec<_> = inodes.keys().cloned().collect();
    let (a, b) = (&keys[0], &keys[1]);
    put(&e, Cf::Inodes, a, inodes[b].clone());
    put(&e, Cf::Inodes, b, inodes[a].clone());
    let (_v, r) = check_fresh(v, &h, &mk, &e);
    assert!(
        r.of_kind(DamageKind::Unreadable).count() >= 1,
        "{:?}",
        r.damage
    );
}

#[test]
fn a_directory_entry_moved_to_another_key_fails_authentication() {
    let (v, h, mk, e, d) = tree();
    let k = touched(&e, Cf::Dirents, || {
        write_file(&v, d, "moved", b"x");
    });
    let (key, _) = &k[0];
    let value = records(&e, Cf::Dirents)[key].clone();
    let mut other = key.clone();
    *other.last_mut().unwrap() ^= 1; // same directory prefix, another name's key
    del(&e, Cf::Dirents, key);
    put(&e, Cf::Dirents, &other, value);
    let (_v, r) = check_fresh(v, &h, &mk, &e);
    assert!(
        r.of_kind(DamageKind::Unreadable).any(|d| d.path == "/d/?"),
        "{:?}",
        r.damage
    );
    // The file lost its only name.
    assert!(
        r.of_kind(DamageKind::Unreachable)
            .any(|d| d.path.starts_with("<inode ")),
        "{:?}",
        r.damage
    );
}

#[test]
fn a_rolled_back_inode_record_shows_wrong_link_counts() {
    let (v, h, mk, e, d) = tree();
    // Roll /d back to before it had /d/h: nlink then says 3 where 4 are counted.
    let k = touched(&e, Cf::Inodes, || {
        v.mkdir(ME, d, b"h", 0o755).unwrap();
    });
    let d_old = k.iter().find(|(_, old)| old.is_some()).unwrap();
    put(&e, Cf::Inodes, &d_old.0, d_old.1.clone().unwrap());
    let (_v, r) = check_fresh(v, &h, &mk, &e);
    assert_eq!(
        kinds(&r),
        vec![("/d".to_string(), DamageKind::LinkCount)],
        "{:?}",
        r.damage
    );
}

#[test]
fn a_rolled_back_file_record_leaves_extents_past_its_end() {
    let (v, h, mk, e, _) = tree();
    let ino = write_file(&v, ROOT_INO, "grow", b"short");
    let k = touched(&e, Cf::Inodes, || {
        v.open_file(ino).unwrap();
        v.write(ino, 0, &pattern(2 * 4096, 9)).unwrap();
        v.release_file(ino).unwrap();
    });
    put(&e, Cf::Inodes, &k[0].0, k[0].1.clone().unwrap());
    let (_v, r) = check_fresh(v, &h, &mk, &e);
    let u: Vec<_> = r.of_kind(DamageKind::Unreachable).collect();
    assert!(
        u.iter()
            .any(|d| d.detail.contains("1 extent records belong to no file")),
        "{:?}",
        r.damage
    );
    // Its totals no longer add up either: logical bytes.
    assert!(r.of_kind(DamageKind::Totals).count() >= 1, "{:?}", r.damage);
}

#[test]
fn a_deleted_extent_is_a_missing_chunk_of_its_file() {
    let (v, h, mk, e, d) = tree();
    let k = touched(&e, Cf::Extents, || {
        write_file(&v, d, "x", &pattern(4096, 5));
    });
    del(&e, Cf::Extents, &k[0].0);
    let (_v, r) = check_fresh(v, &h, &mk, &e);
    assert!(
        kinds(&r).contains(&("/d/x".to_string(), DamageKind::MissingExtent)),
        "{:?}",
        r.damage
    );
}

#[test]
fn deleted_and_altered_chunks_are_found() {
    let (v, h, mk, e, d) = tree();
    let k = touched(&e, Cf::Chunks, || {
        write_file(&v, d, "a", &pattern(4096, 11));
        write_file(&v, d, "b", &pattern(4096, 12));
    });
    assert_eq!(k.len(), 2);
    del(&e, Cf::Chunks, &k[0].0);
    let mut bad = records(&e, Cf::Chunks)[&k[1].0].clone();
    bad[40] ^= 0x55;
    put(&e, Cf::Chunks, &k[1].0, bad);
    let (_v, r) = check_fresh(v, &h, &mk, &e);
    assert_eq!(
        r.of_kind(DamageKind::MissingChunk).count(),
        1,
        "{:?}",
        r.damage
    );
    assert_eq!(r.of_kind(DamageKind::BadChunk).count(), 1, "{:?}", r.damage);
    let mut paths: Vec<_> = r
        .damage
        .iter()
        .filter(|d| matches!(d.kind, DamageKind::MissingChunk | DamageKind::BadChunk))
        .map(|d| d.path.clone())
        .collect();
    paths.sort();
    assert_eq!(paths, vec!["/d/a", "/d/b"]);
}

/// What authenticate-only local reads give up (docs/security.md): a holder of the volume's
/// key can seal other bytes, with valid tags, under a chunk's address. The read path returns
/// them; `check`, which re-hashes, reports the chunk.
#[test]
fn a_key_holders_chunk_under_a_wrong_address_reads_but_check_finds_it() {
    let (v, h, mk, e, d) = tree();
    let k = touched(&e, Cf::Chunks, || {
        write_file(&v, d, "a", &pattern(4096, 13));
    });
    assert_eq!(k.len(), 1);
    let addr = sealvol_crypto::ChunkAddr(k[0].0.clone().try_into().unwrap());
    let other = pattern(4096, 14);
    let keys = mk.volume_keys();
    let mut lie = keys.chunk_addr.chunk_tree(&other);
    assert_ne!(lie.addr, addr);
    lie.addr = addr;
    let binding = [h.volume_id.as_slice(), &addr.0].concat();
    let sealed = keys
        .chunk_seal
        .seal_chunk(0, &binding, &lie, &other)
        .unwrap();
    put(&e, Cf::Chunks, &addr.0, sealed);
    let (v, r) = check_fresh(v, &h, &mk, &e);
    let bad: Vec<_> = r.of_kind(DamageKind::BadChunk).map(|d| &d.path).collect();
    assert_eq!(bad, ["/d/a"], "{:?}", r.damage);
    let a = v.lookup(d, b"a").unwrap().ino;
    assert_eq!(read_all(&v, a), other);
}

#[test]
fn reference_counts_deleted_or_rolled_back_are_found_and_repaired() {
    let (v, h, mk, e, _) = tree();
    // /g's chunk: count 1 → 2 when /g3 shares it; roll it back to 1.
    let k = touched(&e, Cf::Refs, || {
        write_file(&v, ROOT_INO, "g3", &pattern(100, 2));
    });
    assert_eq!(k.len(), 1);
    put(&e, Cf::Refs, &k[0].0, k[0].1.clone().unwrap());
    // And another file's count disappears.
    let k2 = touched(&e, Cf::Refs, || {
        write_file(&v, ROOT_INO, "solo", &pattern(100, 77));
    });
    del(&e, Cf::Refs, &k2[0].0);
    let (v, r) = check_fresh(v, &h, &mk, &e);
    let rc: Vec<_> = r
        .of_kind(DamageKind::RefCount)
        .map(|d| d.path.clone())
        .collect();
    assert_eq!(rc.len(), 2, "{:?}", r.damage);
    assert!(rc.contains(&"/solo".to_string()));
    let fixed = v.check_and_repair().unwrap();
    assert_eq!(fixed.repaired.as_ref().unwrap().refcounts_rewritten, 5);
    let (_v, r) = check_fresh(v, &h, &mk, &e);
    assert!(r.is_clean(), "{:?}", r.damage);
}

#[test]
fn a_whole_file_deleted_behind_our_back_leaves_reclaimable_chunks() {
    // Deleting every record of a file together (entry, inode, extents, counts) leaves a
    // consistent tree: what remains is its chunks, which nothing uses.
    let (v, h, mk, e, _) = tree();
    let cfs = [Cf::Dirents, Cf::Inodes, Cf::Extents, Cf::Refs];
    let before: Vec<Records> = cfs.iter().map(|cf| records(&e, *cf)).collect();
    write_file(&v, ROOT_INO, "vanish", &pattern(2 * 4096, 21));
    for (cf, b) in cfs.iter().zip(&before) {
        for (k, _) in records(&e, *cf).iter().filter(|(k, _)| !b.contains_key(*k)) {
            del(&e, *cf, k);
        }
    }
    // What remains shows: the chunks, and totals that count the file.
    let (v, r) = check_fresh(v, &h, &mk, &e);
    assert_eq!(r.reclaimable_chunks, 2, "{:?}", r);
    assert!(r.of_kind(DamageKind::Totals).count() >= 1, "{:?}", r.damage);
    let fixed = v.check_and_repair().unwrap();
    assert_eq!(fixed.repaired.as_ref().unwrap().chunks_deleted, 2);
    let (_v, r) = check_fresh(v, &h, &mk, &e);
    assert!(r.is_clean() && r.reclaimable_chunks == 0, "{:?}", r);
}

#[test]
fn rolled_back_totals_are_found_and_repaired() {
    let (v, h, mk, e, _) = tree();
    let old = records(&e, Cf::Meta)[&b"counters".to_vec()].clone();
    write_file(&v, ROOT_INO, "more", &pattern(5000, 3));
    v.close().unwrap();
    put(&e, Cf::Meta, b"counters", old);
    let (v, r) = check_fresh(v, &h, &mk, &e);
    let t: Vec<_> = r
        .of_kind(DamageKind::Totals)
        .map(|d| d.detail.clone())
        .collect();
    assert!(
        t.iter()
            .any(|d| d.starts_with("files: 2 recorded, 3 counted")),
        "{t:?}"
    );
    v.check_and_repair().unwrap();
    let (_v, r) = check_fresh(v, &h, &mk, &e);
    assert!(r.is_clean(), "{:?}", r.damage);
}

#[test]
fn a_log_entry_swapped_with_another_is_found() {
    let (v, h, mk, e, _) = tree();
    let log = records(&e, Cf::Log);
    let keys: Vec<_> = log.keys().cloned().collect();
    put(&e, Cf::Log, &keys[0], log[&keys[1]].clone());
    let (_v, r) = check_fresh(v, &h, &mk, &e);
    assert_eq!(
        kinds(&r),
        vec![("<operation log>".to_string(), DamageKind::Log)]
    );
}
