//! Costs that a caller controls: a file's nominal size must never decide how much work a
//! request does. Each step below walked every chunk index up to the file's size before (a
//! petabyte-sized file never finished deleting, and its purge grew to gigabytes of memory).
//! No timing assertions: on the old code these tests do not finish, which the harness reports.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;
use common::*;

use sealvol_volume::Kind;
use sealvol_volume::{FsError, SetAttr, ROOT_INO};

/// The largest file size sealvol accepts (1 PiB).
const MAX: u64 = 1 << 50;
const CS: u32 = 4096;

fn truncate(v: &sealvol_volume::Volume, ino: u64, size: u64) -> sealvol_volume::Result<()> {
    v.setattr(
        ino,
        &SetAttr {
            size: Some(size),
            ..SetAttr::default()
        },
    )
    .map(|_| ())
}

#[test]
fn a_petabyte_sparse_file_is_created_written_read_truncated_and_deleted() {
    // 4 KiB chunks: the most chunk indices per byte of size (2^38 at 1 PiB).
    let (v, ..) = mem_volume(CS);
    let i = v
        .mknod(ME, ROOT_INO, b"huge", Kind::File, 0o644, 0)
        .unwrap();
    truncate(&v, i.ino, MAX).unwrap();
    assert_eq!(v.getattr(i.ino).unwrap().size, MAX);
    assert!(matches!(truncate(&v, i.ino, MAX + 1), Err(FsError::TooBig)));

    // Written at its very end, and just past a chunk boundary in the middle.
    v.open_file(i.ino).unwrap();
    v.write(i.ino, MAX - 5, b"tail!").unwrap();
    v.write(i.ino, MAX / 2 - 2, b"midway").unwrap();
    v.release_file(i.ino).unwrap();
    assert_eq!(v.read(i.ino, MAX - 5, 100).unwrap(), b"tail!");
    assert_eq!(v.read(i.ino, MAX / 2 - 4, 10).unwrap(), b"\0\0midway\0\0");
    // A read across the hole reads zeros, and a 1 MiB read far from data is all zeros.
    assert_eq!(
        v.read(i.ino, 12345 << 20, 1 << 20).unwrap(),
        vec![0u8; 1 << 20]
    );
    assert_eq!(v.file_chunks(i.ino).unwrap().len(), 3);
    assert!(v.check().unwrap().is_clean());

    // Shrunk to a size in the middle (one chunk cut), grown again, emptied, deleted.
    truncate(&v, i.ino, MAX / 2).unwrap();
    assert_eq!(v.read(i.ino, MAX / 2 - 2, 10).unwrap(), b"mi");
    assert_eq!(v.file_chunks(i.ino).unwrap().len(), 1);
    truncate(&v, i.ino, MAX - 1).unwrap();
    assert_eq!(v.read(i.ino, MAX - 10, 10).unwrap(), vec![0u8; 9]);
    truncate(&v, i.ino, 0).unwrap();
    assert_eq!(v.file_chunks(i.ino).unwrap().len(), 0);
    truncate(&v, i.ino, MAX).unwrap();
    v.open_file(i.ino).unwrap();
    v.write(i.ino, MAX - 1, b"x").unwrap();
    v.release_file(i.ino).unwrap();
    v.unlink(ROOT_INO, b"huge").unwrap();
    v.purge_deferred().unwrap();
    let s = v.stats().unwrap();
    assert_eq!((s.files, s.chunks, s.logical_bytes), (0, 0, 0));
    assert!(v.check().unwrap().is_clean());
}

#[test]
fn a_write_far_past_the_end_of_an_empty_file_adds_one_hole() {
    let (v, ..) = mem_volume(CS);
    let ino = write_file(&v, ROOT_INO, "f", b"start");
    v.open_file(ino).unwrap();
    v.write(ino, MAX - 3, b"end").unwrap();
    v.release_file(ino).unwrap();
    let i = v.getattr(ino).unwrap();
    assert_eq!(i.size, MAX);
    assert_eq!(i.holes, vec![(1, (MAX / CS as u64) - 1)]);
    assert_eq!(v.read(ino, 0, 8).unwrap(), b"start\0\0\0");
    assert!(v.check().unwrap().is_clean());
}

/// A file with more extents than one transaction deletes goes in several, and every chunk is
/// released.
#[test]
fn deleting_a_file_with_many_extents_releases_every_chunk() {
    let (v, ..) = mem_volume(CS);
    // 10,000 distinct chunks (more than two purge transactions' worth), with holes between
    // some of them.
    let i = v.mknod(ME, ROOT_INO, b"big", Kind::File, 0o644, 0).unwrap();
    v.open_file(i.ino).unwrap();
    for k in 0..10_000u64 {
        let at = k * CS as u64 + (k / 1000) * 7 * CS as u64;
        v.write(i.ino, at, &pattern(CS as usize, k)).unwrap();
    }
    v.release_file(i.ino).unwrap();
    assert_eq!(v.stats().unwrap().chunks, 10_000);
    assert!(v.check().unwrap().is_clean());
    v.unlink(ROOT_INO, b"big").unwrap();
    v.purge_deferred().unwrap();
    let s = v.stats().unwrap();
    assert_eq!((s.files, s.chunks, s.referenced_bytes), (0, 0, 0));
    assert!(v.check().unwrap().is_clean());
}

/// Extended attributes live in the inode record that every change rewrites: their total is
/// bounded, so no caller can make each change of a file cost megabytes.
#[test]
fn extended_attributes_are_bounded_in_total() {
    use sealvol_volume::{XATTR_CREATE, XATTR_TOTAL_MAX};
    let (v, ..) = mem_volume(CS);
    let ino = write_file(&v, ROOT_INO, "f", b"x");
    let value = vec![7u8; 60 * 1024];
    let mut stored = 0;
    let err = loop {
        let name = format!("user.a{stored}");
        match v.setxattr(ino, name.as_bytes(), &value, XATTR_CREATE) {
            Ok(()) => stored += 1,
            Err(e) => break e,
        }
        assert!(stored < 100, "no bound");
    };
    assert!(matches!(err, FsError::XattrSpace), "{err}");
    assert_eq!(stored, XATTR_TOTAL_MAX / (60 * 1024 + 8));
    // Replacing one with a value of the same size still fits; a smaller one frees room.
    v.setxattr(ino, b"user.a0", &value, 0).unwrap();
    v.setxattr(ino, b"user.a0", b"small", 0).unwrap();
    v.setxattr(ino, b"user.extra", &value[..50 * 1024], XATTR_CREATE)
        .unwrap();
    assert!(v.check().unwrap().is_clean());
}

/// Directory depth is a number the caller controls too: every walk up the tree (rename must not
/// move a directory into itself) stops at [`MAX_DIR_DEPTH`] levels. mkdir refuses to go deeper;
/// a subtree moved under a deep directory can go deeper, and renames there are refused with a
/// clear error, never reported as damage.
#[test]
fn directory_depth_is_bounded_and_too_deep_is_not_damage() {
    use sealvol_volume::MAX_DIR_DEPTH;
    let (v, ..) = mem_volume(CS);
    let mut chain = vec![ROOT_INO];
    for _ in 0..MAX_DIR_DEPTH {
        let parent = *chain.last().unwrap();
        chain.push(v.mkdir(ME, parent, b"d", 0o755).unwrap().ino);
    }
    let deepest = *chain.last().unwrap();
    assert!(matches!(
        v.mkdir(ME, deepest, b"d", 0o755),
        Err(FsError::TooDeep)
    ));
    // A file is still fine there (no walk), and moving a directory into itself is still refused.
    v.mknod(ME, deepest, b"f", Kind::File, 0o644, 0).unwrap();
    assert!(matches!(
        v.rename(ROOT_INO, b"d", chain[10], b"x", 0),
        Err(FsError::Invalid(_))
    ));
    // A subtree moved under a directory at depth MAX - 1 ends deeper than the bound; a rename
    // below it is refused as too deep, and the volume is not damaged.
    let side = v.mkdir(ME, ROOT_INO, b"side", 0o755).unwrap();
    let below = v.mkdir(ME, side.ino, b"below", 0o755).unwrap();
    v.mkdir(ME, below.ino, b"leaf", 0o755).unwrap();
    v.rename(ROOT_INO, b"side", chain[MAX_DIR_DEPTH - 1], b"side", 0)
        .unwrap();
    let other = v.mkdir(ME, ROOT_INO, b"other", 0o755).unwrap();
    assert!(matches!(
        v.rename(ROOT_INO, b"other", below.ino, b"other", 0),
        Err(FsError::TooDeep)
    ));
    let e = v
        .rename(ROOT_INO, b"other", below.ino, b"other", 0)
        .unwrap_err();
    assert!(e.to_string().contains("too deep"), "{e}");
    // Moved back up, everything works again.
    v.rename(side.ino, b"below", ROOT_INO, b"below", 0).unwrap();
    v.rename(ROOT_INO, b"other", below.ino, b"other", 0)
        .unwrap();
    assert_eq!(v.lookup(below.ino, b"other").unwrap().ino, other.ino);
    assert!(v.check().unwrap().is_clean());
}
