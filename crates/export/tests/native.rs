#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]
//! The native format through the library: round trips of every kind of node and attribute, an
//! incremental chain, each key kind, wrong keys, and damage to each part of an export.

mod common;

use std::path::Path;

use common::*;
use sealvol_crypto::{KdfParams, Secret};
use sealvol_export::chain::{ExportKey, OpenKey, Target};
use sealvol_export::native::{export, ExportOptions};
use sealvol_export::restore::{pick, restore, verify};
use sealvol_export::{ExportError, NoProgress, Summary};
use sealvol_volume::{Volume, ROOT_INO};

fn volume_key() -> ExportOptions<'static> {
    ExportOptions {
        key: ExportKey::Volume,
        kdf: KdfParams::MIN,
        held: Default::default(),
    }
}

fn export_to(src: &Src, dir: &Path) -> Summary {
    export(
        &src.v,
        &src.header,
        &src.master,
        dir,
        &volume_key(),
        &NoProgress,
    )
    .unwrap()
}

fn import_from(dir: &Path, key: &OpenKey<'_>, seq: Option<u64>) -> (Volume, Summary) {
    let t = Target::open(dir, key).unwrap();
    let (m, problems) = pick(&t, seq).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let v = new_volume();
    let s = restore(&t, &m, &v, &NoProgress).unwrap();
    (v, s)
}

#[test]
fn every_kind_of_node_and_attribute_round_trips_under_the_volume_key() {
    let src = volume();
    populate(&src.v);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("backup");
    let s = export_to(&src, &out);
    assert_eq!(s.seq, 1);
    assert!(s.files >= 15 && s.dirs >= 9 && s.others >= 8, "{s:?}");
    // dup1 and dup2 share their 3 chunks; the zero file and the holes have none.
    let stats = src.v.stats().unwrap();
    assert!(s.new_chunks < stats.chunks + 4, "{s:?} vs {stats:?}");
    assert!(s.damaged.is_empty());

    let (restored, r) = import_from(&out, &OpenKey::Volume(&secret()), None);
    assert!(r.damaged.is_empty(), "{:?}", r.damaged);
    assert_eq!((r.files, r.dirs), (s.files, s.dirs));
    assert_same(&dump(&src.v), &dump(&restored));
    // The restored volume is consistent by its own check.
    assert!(restored.check().unwrap().is_clean());

    let v = verify(
        &Target::open(&out, &OpenKey::Volume(&secret())).unwrap(),
        &NoProgress,
    )
    .unwrap();
    assert!(v.damaged.is_empty(), "{:?}", v.damaged);
}

#[test]
fn a_backup_passphrase_alone_restores_and_the_volume_key_is_told_what_to_use() {
    let src = volume();
    populate(&src.v);
    let dir = tempfile::tempdir().unwrap();
    let pass = Secret::Passphrase(zeroize::Zeroizing::new(b"correct horse battery".to_vec()));
    let opts = ExportOptions {
        key: ExportKey::Passphrase(&pass),
        kdf: KdfParams::MIN,
        held: Default::default(),
    };
    export(
        &src.v,
        &src.header,
        &src.master,
        dir.path(),
        &opts,
        &NoProgress,
    )
    .unwrap();
    assert!(!dir.path().join("volume-keys.json").exists());
    let (restored, r) = import_from(dir.path(), &OpenKey::Passphrase(&pass), None);
    assert!(r.damaged.is_empty(), "{:?}", r.damaged);
    assert_same(&dump(&src.v), &dump(&restored));

    let e = Target::open(dir.path(), &OpenKey::Volume(&secret()))
        .err()
        .unwrap();
    assert!(e.to_string().contains("--backup-passphrase-file"), "{e}");
    let wrong = Secret::Passphrase(zeroize::Zeroizing::new(b"wrong horse".to_vec()));
    let e = Target::open(dir.path(), &OpenKey::Passphrase(&wrong))
        .err()
        .unwrap();
    assert!(matches!(e, ExportError::WrongKey { .. }), "{e}");

    // The volume's key adds to the chain without the passphrase (incremental exports run
    // unattended); a passphrase that does not open it is refused.
    populate_more(&src.v, 1);
    export(
        &src.v,
        &src.header,
        &src.master,
        dir.path(),
        &volume_key(),
        &NoProgress,
    )
    .unwrap();
    let bad = ExportOptions {
        key: ExportKey::Passphrase(&wrong),
        kdf: KdfParams::MIN,
        held: Default::default(),
    };
    let e = export(
        &src.v,
        &src.header,
        &src.master,
        dir.path(),
        &bad,
        &NoProgress,
    )
    .err()
    .unwrap();
    assert!(matches!(e, ExportError::WrongKey { .. }), "{e}");
    let (restored, _) = import_from(dir.path(), &OpenKey::Passphrase(&pass), None);
    assert_same(&dump(&src.v), &dump(&restored));
}

#[test]
fn an_age_recipient_alone_restores() {
    let src = volume();
    populate(&src.v);
    let dir = tempfile::tempdir().unwrap();
    let id = age::x25519::Identity::generate();
    let idfile = dir.path().join("key.txt");
    {
        use age::secrecy::ExposeSecret;
        std::fs::write(&idfile, format!("{}\n", id.to_string().expose_secret())).unwrap();
    }
    let recipient = id.to_public().to_string();
    let out = dir.path().join("b");
    let opts = ExportOptions {
        key: ExportKey::Recipient(&recipient),
        kdf: KdfParams::MIN,
        held: Default::default(),
    };
    export(&src.v, &src.header, &src.master, &out, &opts, &NoProgress).unwrap();
    let (restored, r) = import_from(&out, &OpenKey::Identity(&idfile), None);
    assert!(r.damaged.is_empty(), "{:?}", r.damaged);
    assert_same(&dump(&src.v), &dump(&restored));

    let other = dir.path().join("other.txt");
    {
        use age::secrecy::ExposeSecret;
        let o = age::x25519::Identity::generate();
        std::fs::write(&other, format!("{}\n", o.to_string().expose_secret())).unwrap();
    }
    let e = Target::open(&out, &OpenKey::Identity(&other))
        .err()
        .unwrap();
    assert!(matches!(e, ExportError::WrongKey { .. }), "{e}");
}

#[test]
fn a_wrong_volume_key_is_refused_before_anything_is_read() {
    let src = volume();
    populate(&src.v);
    let dir = tempfile::tempdir().unwrap();
    export_to(&src, dir.path());
    let e = Target::open(dir.path(), &OpenKey::Volume(&other_secret()))
        .err()
        .unwrap();
    assert!(matches!(e, ExportError::WrongKey { .. }), "{e}");
    assert!(e.to_string().contains("nothing was written"), "{e}");
}

/// Changes for step `n` of a chain: a deletion, a rename of a directory, a small change to a
/// large file, a new file.
fn populate_more(v: &Volume, n: u64) {
    let docs = lookup(v, "docs");
    match n {
        1 => {
            v.unlink(docs, b"several").unwrap();
            v.rename(ROOT_INO, b"tmp", docs, b"tmp-moved", 0).unwrap();
            let big = lookup(v, "dup1");
            write_at(v, big, CHUNK + 10, b"changed in step 1");
            file(v, ROOT_INO, "new-in-1", &pattern(2 * CHUNK as usize, 1001));
        }
        _ => {
            v.unlink(ROOT_INO, b"hardlink-3").unwrap();
            v.rename(docs, b"tmp-moved", ROOT_INO, b"tmp-back", 0)
                .unwrap();
            v.rename(ROOT_INO, b"new-in-1", ROOT_INO, b"renamed-in-2", 0)
                .unwrap();
            let tmpdir = lookup(v, "tmp-back");
            v.unlink(tmpdir, b"nothing-allowed").unwrap();
            file(v, ROOT_INO, "new-in-2", b"small");
        }
    }
}

#[test]
fn a_three_step_chain_with_deletions_and_renames_restores_each_step() {
    let src = volume();
    populate(&src.v);
    let dir = tempfile::tempdir().unwrap();
    let mut dumps = Vec::new();
    let mut sums = Vec::new();
    for step in 0..3 {
        if step > 0 {
            populate_more(&src.v, step);
        }
        dumps.push(dump(&src.v));
        sums.push(export_to(&src, dir.path()));
    }
    assert_eq!(sums.iter().map(|s| s.seq).collect::<Vec<_>>(), [1, 2, 3]);
    // Step 1 changed one chunk of dup1 (which no longer equals dup2) and added a file of two
    // chunks: three new chunks; step 2 one small file.
    assert_eq!(sums[1].new_chunks, 3, "{:?}", sums[1]);
    assert_eq!(sums[2].new_chunks, 1, "{:?}", sums[2]);
    // Only those were read from the volume: the other chunks' extents were met before.
    assert!(sums[0].read_chunks > 20, "{:?}", sums[0]);
    assert_eq!(
        (sums[1].read_chunks, sums[2].read_chunks),
        (3, 1),
        "{sums:?}"
    );
    // Without its cache, an export reads everything again, and writes the same.
    std::fs::remove_file(dir.path().join("extent-cache")).unwrap();
    let again = export_to(&src, dir.path());
    assert_eq!(again.new_chunks, 0, "{again:?}");
    assert!(
        again.read_chunks >= again.reused_chunks && again.reused_chunks > 10,
        "{again:?}"
    );
    assert!(sums[1].reused_chunks > 10);
    for (i, d) in dumps.iter().enumerate() {
        let (restored, r) =
            import_from(dir.path(), &OpenKey::Volume(&secret()), Some(i as u64 + 1));
        assert!(r.damaged.is_empty(), "{:?}", r.damaged);
        assert_same(d, &dump(&restored));
    }
    // The newest is the default.
    let (restored, _) = import_from(dir.path(), &OpenKey::Volume(&secret()), None);
    assert_same(&dumps[2], &dump(&restored));
    let listing = sealvol_export::chain::list(dir.path()).unwrap();
    assert_eq!(
        listing.exports.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
}

/// A chain of three exports to damage.
fn chain_of_three() -> (Src, tempfile::TempDir) {
    let src = volume();
    populate(&src.v);
    let dir = tempfile::tempdir().unwrap();
    export_to(&src, dir.path());
    populate_more(&src.v, 1);
    export_to(&src, dir.path());
    populate_more(&src.v, 2);
    export_to(&src, dir.path());
    (src, dir)
}

fn flip(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    let at = at.min(b.len() - 1);
    b[at] ^= 0x40;
    std::fs::write(path, b).unwrap();
}

fn object_of(src: &Src, dir: &Path, path: &str) -> std::path::PathBuf {
    // The object holding the first chunk of `path`: found by its contents' name.
    let t = Target::open(dir, &OpenKey::Volume(&secret())).unwrap();
    let ino = lookup(&src.v, path);
    let first = src.v.read(ino, 0, CHUNK as u32).unwrap();
    t.object_file(&t.keys.object_addr(&first))
}

#[test]
fn a_damaged_chunk_is_named_by_path_and_every_other_file_restores() {
    let (src, dir) = chain_of_three();
    let obj = object_of(&src, dir.path(), "docs/over");
    flip(&obj, 100);
    let t = Target::open(dir.path(), &OpenKey::Volume(&secret())).unwrap();
    let v = verify(&t, &NoProgress).unwrap();
    assert!(
        v.damaged
            .iter()
            .any(|d| d.contains("/docs/over") && d.contains("does not authenticate")),
        "{:?}",
        v.damaged
    );
    let (m, _) = pick(&t, None).unwrap();
    let restored = new_volume();
    let r = restore(&t, &m, &restored, &NoProgress).unwrap();
    assert_eq!(r.damaged.len(), 1, "{:?}", r.damaged);
    assert!(r.damaged[0].contains("/docs/over"), "{:?}", r.damaged);
    let mut want = dump(&src.v);
    want.remove(b"docs/over".as_slice());
    let mut got = dump(&restored);
    // The directory lost an entry: its times are restored, nothing else differs.
    for d in [&mut want, &mut got] {
        d.get_mut(b"docs".as_slice()).unwrap().nlink = 0;
    }
    assert_same(&want, &got);

    // A missing object likewise.
    std::fs::remove_file(&obj).unwrap();
    let v = verify(&t, &NoProgress).unwrap();
    assert!(
        v.damaged
            .iter()
            .any(|d| d.contains("/docs/over") && d.contains("missing")),
        "{:?}",
        v.damaged
    );
}

#[test]
fn damaged_metadata_loses_only_its_entries() {
    let (_src, dir) = chain_of_three();
    let meta = dir.path().join("exports/00000003.meta");
    let len = std::fs::metadata(&meta).unwrap().len() as usize;
    flip(&meta, len / 2);
    let t = Target::open(dir.path(), &OpenKey::Volume(&secret())).unwrap();
    let (m, _) = pick(&t, None).unwrap();
    let v = new_volume();
    let r = restore(&t, &m, &v, &NoProgress).unwrap();
    assert!(!r.damaged.is_empty());
    assert!(
        r.damaged.iter().any(|d| d.contains("export 3 metadata")),
        "{:?}",
        r.damaged
    );
    assert!(
        r.files > 5,
        "the entries before and after the damage restore: {r:?}"
    );

    // Truncated: the entries before the cut restore, the cut is named.
    std::fs::write(&meta, &std::fs::read(&meta).unwrap()[..len / 3]).unwrap();
    let v = new_volume();
    let r = restore(&t, &m, &v, &NoProgress).unwrap();
    assert!(
        r.damaged.iter().any(|d| d.contains("truncated")),
        "{:?}",
        r.damaged
    );
    // Export 2 is untouched and restores whole.
    let (m2, _) = pick(&t, Some(2)).unwrap();
    let r2 = restore(&t, &m2, &new_volume(), &NoProgress).unwrap();
    assert!(r2.damaged.is_empty(), "{:?}", r2.damaged);
}

#[test]
fn a_chain_cannot_be_reordered_truncated_or_mixed_without_detection() {
    let (src, dir) = chain_of_three();
    let ex = dir.path().join("exports");
    let t = Target::open(dir.path(), &OpenKey::Volume(&secret())).unwrap();
    assert!(t.chain().unwrap().problems.is_empty());

    // A damaged manifest is named.
    let m2 = ex.join("00000002.manifest");
    let saved = std::fs::read(&m2).unwrap();
    flip(&m2, 40);
    let p = t.chain().unwrap().problems;
    assert!(
        p.iter()
            .any(|p| p.contains("export 2: manifest does not authenticate")),
        "{p:?}"
    );
    std::fs::write(&m2, &saved).unwrap();

    // Swapped: each manifest is bound to its number.
    std::fs::rename(ex.join("00000002.manifest"), ex.join("x")).unwrap();
    std::fs::rename(ex.join("00000003.manifest"), ex.join("00000002.manifest")).unwrap();
    std::fs::rename(ex.join("x"), ex.join("00000003.manifest")).unwrap();
    let p = t.chain().unwrap().problems;
    assert!(
        p.iter().any(|p| p.contains("export 2")) && p.iter().any(|p| p.contains("export 3")),
        "{p:?}"
    );
    std::fs::rename(ex.join("00000002.manifest"), ex.join("x")).unwrap();
    std::fs::rename(ex.join("00000003.manifest"), ex.join("00000002.manifest")).unwrap();
    std::fs::rename(ex.join("x"), ex.join("00000003.manifest")).unwrap();

    // One taken out of the middle.
    std::fs::rename(ex.join("00000002.manifest"), dir.path().join("aside")).unwrap();
    let p = t.chain().unwrap().problems;
    assert!(p.iter().any(|p| p.contains("export 2 is missing")), "{p:?}");
    // An export refuses to extend a broken chain, and another volume's export is refused.
    let e = export(
        &src.v,
        &src.header,
        &src.master,
        dir.path(),
        &volume_key(),
        &NoProgress,
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("intact chain"), "{e}");
    let src2 = volume();
    let e = export(
        &src2.v,
        &src2.header,
        &src2.master,
        dir.path(),
        &volume_key(),
        &NoProgress,
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("another volume"), "{e}");
    std::fs::rename(dir.path().join("aside"), ex.join("00000002.manifest")).unwrap();

    // Another chain's manifest (another volume, or another export target of this volume)
    // does not open as this chain's.
    let (_other, dir2) = chain_of_three();
    std::fs::copy(
        dir2.path().join("exports/00000003.manifest"),
        ex.join("00000003.manifest"),
    )
    .unwrap();
    let p = t.chain().unwrap().problems;
    assert!(
        p.iter()
            .any(|p| p.contains("export 3: manifest does not authenticate")),
        "{p:?}"
    );
}

#[test]
fn a_directory_that_is_not_an_export_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), b"hi").unwrap();
    let e = Target::open(dir.path(), &OpenKey::Volume(&secret()))
        .err()
        .unwrap();
    assert!(matches!(e, ExportError::NotAnExport { .. }), "{e}");
    // Nor is it exported into.
    let src = volume();
    let e = export(
        &src.v,
        &src.header,
        &src.master,
        dir.path(),
        &volume_key(),
        &NoProgress,
    )
    .err()
    .unwrap();
    assert!(matches!(e, ExportError::NotAnExport { .. }), "{e}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "nothing was written"
    );
}

#[test]
fn an_interrupted_export_leaves_the_chain_as_it_was_and_the_next_one_reuses_its_chunks() {
    let src = volume();
    populate(&src.v);
    let dir = tempfile::tempdir().unwrap();
    export_to(&src, dir.path());
    populate_more(&src.v, 1);
    let s2 = export_to(&src, dir.path());
    // Undo the publication of export 2 as a crash before its manifest would: objects and
    // metadata written, no manifest.
    std::fs::remove_file(dir.path().join("exports/00000002.manifest")).unwrap();
    let t = Target::open(dir.path(), &OpenKey::Volume(&secret())).unwrap();
    let c = t.chain().unwrap();
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    assert_eq!(c.manifests.len(), 1);
    let again = export_to(&src, dir.path());
    assert_eq!(again.seq, 2);
    assert_eq!(
        again.new_chunks, 0,
        "the interrupted export's chunks are reused"
    );
    assert_eq!(again.reused_chunks, s2.reused_chunks + s2.new_chunks);
    let (restored, _) = import_from(dir.path(), &OpenKey::Volume(&secret()), None);
    assert_same(&dump(&src.v), &dump(&restored));
}

#[test]
fn a_chain_of_archives_made_since_each_other_restores_each_step_and_adds_only_new_chunks() {
    use sealvol_export::archive::{export_archive, unpack, ScratchDir};
    let src = volume();
    populate(&src.v);
    let dir = tempfile::tempdir().unwrap();
    let mut archives: Vec<std::path::PathBuf> = Vec::new();
    let mut dumps = Vec::new();
    let mut sizes = Vec::new();
    for step in 0..3u64 {
        if step > 0 {
            populate_more(&src.v, step);
        }
        dumps.push(dump(&src.v));
        let scratch = ScratchDir::new(Some(dir.path()), "t").unwrap();
        let a = dir.path().join(format!("a{step}.tar"));
        let f = std::fs::File::create(&a).unwrap();
        let s = export_archive(
            &src.v,
            &src.header,
            &src.master,
            f,
            volume_key(),
            &archives,
            &scratch,
            &NoProgress,
        )
        .unwrap();
        assert_eq!(s.seq, step + 1);
        sizes.push(std::fs::metadata(&a).unwrap().len());
        archives.push(a);
    }
    // Later archives carry only what changed (3 chunks, then 1) plus metadata.
    assert!(sizes[1] < sizes[0] / 2 && sizes[2] < sizes[1], "{sizes:?}");
    for (i, d) in dumps.iter().enumerate() {
        let scratch = ScratchDir::new(Some(dir.path()), "u").unwrap();
        for a in &archives[..=i] {
            unpack(std::fs::File::open(a).unwrap(), a, scratch.path(), None).unwrap();
        }
        let (restored, r) = import_from(scratch.path(), &OpenKey::Volume(&secret()), None);
        assert!(r.damaged.is_empty(), "{:?}", r.damaged);
        assert_eq!(r.seq, i as u64 + 1);
        assert_same(d, &dump(&restored));
    }
    // Without the first archive, the chain is incomplete and says so.
    let scratch = ScratchDir::new(Some(dir.path()), "v").unwrap();
    for a in &archives[1..] {
        unpack(std::fs::File::open(a).unwrap(), a, scratch.path(), None).unwrap();
    }
    let t = Target::open(scratch.path(), &OpenKey::Volume(&secret())).unwrap();
    let v = verify(&t, &NoProgress).unwrap();
    assert!(
        v.damaged.iter().any(|d| d.contains("missing")),
        "{:?}",
        v.damaged
    );
    // A tar that is not an export is refused on unpacking.
    let bad = dir.path().join("bad.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&bad).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_cksum();
        b.append_data(&mut h, "../escape", &b"hi"[..]).ok();
        b.append_data(&mut h, "etc/passwd", &b"hi"[..]).unwrap();
        b.finish().unwrap();
    }
    let scratch = ScratchDir::new(Some(dir.path()), "w").unwrap();
    let e = unpack(
        std::fs::File::open(&bad).unwrap(),
        &bad,
        scratch.path(),
        None,
    )
    .err()
    .unwrap();
    assert!(matches!(e, ExportError::NotAnExport { .. }), "{e}");
}

/// A file of more chunks than the export keeps out at a time round trips; a chunk of the
/// volume that does not authenticate stops the export, names the file, and publishes nothing.
#[test]
fn a_file_larger_than_the_export_window_round_trips_and_a_damaged_volume_chunk_stops_it() {
    use sealvol_store::{Cf, Durability, Engine, MemoryEngine, WriteBatch};
    use std::sync::Arc;

    let (header, master) = sealvol_crypto::KeyHeader::create(&secret(), KdfParams::MIN, 0).unwrap();
    let engine = Arc::new(MemoryEngine::new());
    let opts = sealvol_volume::CreateOptions {
        chunk_size: sealvol_volume::ChunkSize::new(CHUNK).unwrap(),
        kdf: KdfParams::MIN,
        ..sealvol_volume::CreateOptions::default()
    };
    let clock = Arc::new(sealvol_volume::StepClock::new(1_700_000_000_000));
    let v = Volume::init_in(
        engine.clone() as Arc<dyn Engine>,
        &header,
        &master,
        &opts,
        clock.clone(),
    )
    .unwrap();
    // 700 chunks (the export keeps at most 256 out), with small files before and after.
    file(&v, ROOT_INO, "a-small", b"first");
    let chunks = |e: &MemoryEngine| {
        let mut keys = Vec::new();
        e.for_each(Cf::Chunks, b"", &mut |k, _| {
            keys.push(k.to_vec());
            Ok(())
        })
        .unwrap();
        keys
    };
    let before = chunks(&engine);
    file(&v, ROOT_INO, "big", &pattern(700 * CHUNK as usize + 123, 5));
    let big_chunks: Vec<Vec<u8>> = chunks(&engine)
        .into_iter()
        .filter(|k| !before.contains(k))
        .collect();
    assert!(big_chunks.len() >= 700, "{}", big_chunks.len());
    file(&v, ROOT_INO, "z-small", b"last");
    let src = Src { v, header, master };
    let dir = tempfile::tempdir().unwrap();
    let s = export_to(&src, dir.path());
    assert_eq!(s.files, 3);
    let (restored, r) = import_from(dir.path(), &OpenKey::Volume(&secret()), None);
    assert!(r.damaged.is_empty(), "{:?}", r.damaged);
    assert_same(&dump(&src.v), &dump(&restored));

    // Damage one chunk of the big file in the store, and read it afresh (no cache).
    let key = &big_chunks[big_chunks.len() / 2];
    let mut bad = Vec::new();
    engine
        .for_each(Cf::Chunks, key, &mut |k, val| {
            if k == key.as_slice() {
                bad = val.to_vec();
            }
            Ok(())
        })
        .unwrap();
    let n = bad.len();
    bad[n / 2] ^= 0x55;
    let mut b = WriteBatch::new();
    b.put(Cf::Chunks, key.clone(), bad);
    engine.write(b, Durability::Process).unwrap();
    let Src { v, header, master } = src;
    v.close().unwrap();
    drop(v);
    let v = Volume::open_in(engine.clone() as Arc<dyn Engine>, &header, &master, clock).unwrap();
    let src = Src { v, header, master };
    let dir2 = tempfile::tempdir().unwrap();
    let err = export(
        &src.v,
        &src.header,
        &src.master,
        dir2.path(),
        &volume_key(),
        &NoProgress,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("/big") && msg.contains("sealvol check"),
        "{msg}"
    );
    // Nothing published: no manifest in the new target.
    let manifests = std::fs::read_dir(dir2.path().join("exports"))
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".manifest")
            })
            .count()
        })
        .unwrap_or(0);
    assert_eq!(manifests, 0);
}

/// The manifest of export `seq` in `dir`.
fn manifest(dir: &Path, seq: u64) -> sealvol_export::format::Manifest {
    let t = Target::open(dir, &OpenKey::Volume(&secret())).unwrap();
    pick(&t, Some(seq)).unwrap().0
}

/// An incremental export writes the metadata that changed: entries that differ from its
/// parent's and a deletion marker per path gone, never the whole tree again; every export of
/// the chain still restores whole, and every 16th lists the whole tree again.
#[test]
fn an_incremental_export_writes_only_the_metadata_that_changed() {
    let src = volume();
    populate(&src.v);
    let many = src.v.mkdir(ROOT, ROOT_INO, b"many", 0o755).unwrap().ino;
    for i in 0..300 {
        file(
            &src.v,
            many,
            &format!("f{i:03}"),
            format!("file {i}").as_bytes(),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    export_to(&src, dir.path());
    let full = manifest(dir.path(), 1);
    assert_eq!(full.base, None);
    // One file changed, one removed (its directory changes too).
    write_at(&src.v, lookup(&src.v, "many/f007"), 0, b"changed");
    src.v.unlink(many, b"f100").unwrap();
    let want = dump(&src.v);
    export_to(&src, dir.path());
    let delta = manifest(dir.path(), 2);
    assert_eq!(delta.base, Some(1));
    assert_eq!(delta.listing, full.listing - 1, "{delta:?}");
    assert!(
        delta.entries <= 4 && delta.meta_bytes * 20 < full.meta_bytes,
        "export 2 wrote {} entries, {} bytes, against {} and {} for the whole tree",
        delta.entries,
        delta.meta_bytes,
        full.entries,
        full.meta_bytes
    );
    println!(
        "whole tree: {} entries, {} bytes; after one change and one removal: {} entries, {} bytes",
        full.entries, full.meta_bytes, delta.entries, delta.meta_bytes
    );
    let (restored, r) = import_from(dir.path(), &OpenKey::Volume(&secret()), Some(2));
    assert!(r.damaged.is_empty(), "{:?}", r.damaged);
    assert_same(&want, &dump(&restored));
    // Nothing changed: an export of no entries at all.
    export_to(&src, dir.path());
    assert_eq!(manifest(dir.path(), 3).entries, 0);
    // Fifteen deltas in a row, then a whole listing again.
    for i in 4..=17u64 {
        write_at(&src.v, lookup(&src.v, "many/f001"), 0, &i.to_le_bytes());
        export_to(&src, dir.path());
    }
    assert_eq!(manifest(dir.path(), 16).base, Some(15));
    assert_eq!(manifest(dir.path(), 17).base, None);
    let want = dump(&src.v);
    for seq in [16, 17] {
        let (restored, r) = import_from(dir.path(), &OpenKey::Volume(&secret()), Some(seq));
        assert!(r.damaged.is_empty(), "{:?}", r.damaged);
        if seq == 17 {
            assert_same(&want, &dump(&restored));
        }
    }
}

/// A small change to a large file writes only its changed chunks in the delta; truncations and
/// holes made across several deltas restore exactly, whole listing or not.
#[test]
fn a_small_change_to_a_large_file_writes_only_its_changed_chunks() {
    use sealvol_volume::SetAttr;
    let src = volume();
    let big = file(&src.v, ROOT_INO, "big", &pattern(64 * CHUNK as usize, 77));
    let truncate = |size: u64| {
        src.v
            .setattr(
                big,
                &SetAttr {
                    size: Some(size),
                    ..SetAttr::default()
                },
            )
            .unwrap();
    };
    let dir = tempfile::tempdir().unwrap();
    let mut dumps = vec![dump(&src.v)];
    export_to(&src, dir.path());
    // One chunk changed.
    write_at(&src.v, big, 20 * CHUNK + 5, b"a small change");
    dumps.push(dump(&src.v));
    export_to(&src, dir.path());
    // Cut by four chunks, then grown back with only the last chunk written: three holes where
    // chunks were, across two deltas.
    truncate(60 * CHUNK);
    dumps.push(dump(&src.v));
    export_to(&src, dir.path());
    write_at(&src.v, big, 63 * CHUNK, &pattern(CHUNK as usize, 78));
    dumps.push(dump(&src.v));
    export_to(&src, dir.path());
    let (one, two) = (manifest(dir.path(), 1), manifest(dir.path(), 2));
    println!(
        "a 64-chunk file: {} metadata bytes whole, {} after one chunk changed",
        one.meta_bytes, two.meta_bytes
    );
    assert!(
        two.meta_bytes * 8 < one.meta_bytes,
        "{two:?} against {one:?}"
    );
    for (i, want) in dumps.iter().enumerate() {
        let seq = i as u64 + 1;
        assert_eq!(manifest(dir.path(), seq).base, (seq > 1).then(|| seq - 1));
        let (restored, r) = import_from(dir.path(), &OpenKey::Volume(&secret()), Some(seq));
        assert!(r.damaged.is_empty(), "export {seq}: {:?}", r.damaged);
        assert_same(want, &dump(&restored));
        let got = restored.read(lookup(&restored, "big"), 61 * CHUNK, CHUNK as u32);
        if seq == 4 {
            assert!(
                got.unwrap().iter().all(|b| *b == 0),
                "a hole, not an old chunk"
            );
        }
    }
    let t = Target::open(dir.path(), &OpenKey::Volume(&secret())).unwrap();
    let v = verify(&t, &NoProgress).unwrap();
    assert!(v.damaged.is_empty(), "{:?}", v.damaged);
}
