//! One conformance suite for every [`Engine`]: the RocksDB engine must behave exactly as the
//! in-memory reference. Each function panics with a message on the first difference.

use sealvol_store::{Cf, Durability, Engine, WriteBatch};

/// Run every check on a fresh, empty engine.
pub(crate) fn run_all(e: &dyn Engine) {
    get_put_delete(e);
    batches_are_atomic_and_ordered(e);
    column_families_are_separate(e);
    scan_prefix_start_limit(e);
    for_each_pages(e);
    sync_and_compact(e);
    values_put_aside_are_named_by_a_later_batch(e);
}

type Op<'a> = (Cf, &'a [u8], Option<&'a [u8]>);

fn wb(ops: &[Op<'_>]) -> WriteBatch {
    let mut b = WriteBatch::new();
    for (cf, k, v) in ops {
        match v {
            Some(v) => b.put(*cf, k.to_vec(), v.to_vec()),
            None => b.delete(*cf, k.to_vec()),
        }
    }
    b
}

pub(crate) fn get_put_delete(e: &dyn Engine) {
    assert_eq!(e.get(Cf::Meta, b"gpd").unwrap(), None);
    e.write(wb(&[(Cf::Meta, b"gpd", Some(b"1"))]), Durability::Process)
        .unwrap();
    assert_eq!(e.get(Cf::Meta, b"gpd").unwrap().as_deref(), Some(&b"1"[..]));
    e.write(wb(&[(Cf::Meta, b"gpd", Some(b"2"))]), Durability::Disk)
        .unwrap();
    assert_eq!(e.get(Cf::Meta, b"gpd").unwrap().as_deref(), Some(&b"2"[..]));
    e.write(wb(&[(Cf::Meta, b"gpd", None)]), Durability::Process)
        .unwrap();
    assert_eq!(e.get(Cf::Meta, b"gpd").unwrap(), None);
    // Empty values are values, not deletions.
    e.write(wb(&[(Cf::Meta, b"empty", Some(b""))]), Durability::Process)
        .unwrap();
    assert_eq!(
        e.get(Cf::Meta, b"empty").unwrap().as_deref(),
        Some(&b""[..])
    );
}

pub(crate) fn batches_are_atomic_and_ordered(e: &dyn Engine) {
    // Later operations in one batch win over earlier ones on the same key.
    e.write(
        wb(&[
            (Cf::Inodes, b"bo-a", Some(b"1")),
            (Cf::Inodes, b"bo-a", Some(b"2")),
            (Cf::Inodes, b"bo-b", Some(b"x")),
            (Cf::Inodes, b"bo-b", None),
        ]),
        Durability::Process,
    )
    .unwrap();
    assert_eq!(
        e.get(Cf::Inodes, b"bo-a").unwrap().as_deref(),
        Some(&b"2"[..])
    );
    assert_eq!(e.get(Cf::Inodes, b"bo-b").unwrap(), None);
}

pub(crate) fn column_families_are_separate(e: &dyn Engine) {
    e.write(
        wb(&[
            (Cf::Chunks, b"same", Some(b"c")),
            (Cf::Refs, b"same", Some(b"r")),
        ]),
        Durability::Process,
    )
    .unwrap();
    assert_eq!(
        e.get(Cf::Chunks, b"same").unwrap().as_deref(),
        Some(&b"c"[..])
    );
    assert_eq!(
        e.get(Cf::Refs, b"same").unwrap().as_deref(),
        Some(&b"r"[..])
    );
    assert_eq!(e.get(Cf::Extents, b"same").unwrap(), None);
    let s = e.scan(Cf::Log, b"", b"", 100).unwrap();
    assert!(s.iter().all(|(k, _)| k != b"same"));
}

pub(crate) fn scan_prefix_start_limit(e: &dyn Engine) {
    let keys: &[&[u8]] = &[b"p1/a", b"p1/b", b"p1/c", b"p2/a", b"p1", b"p0/z"];
    let mut b = WriteBatch::new();
    for k in keys {
        b.put(Cf::Dirents, k.to_vec(), k.to_vec());
    }
    e.write(b, Durability::Process).unwrap();
    let ks = |v: Vec<(Vec<u8>, Vec<u8>)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(
        ks(e.scan(Cf::Dirents, b"p1/", b"", 10).unwrap()),
        vec![b"p1/a".to_vec(), b"p1/b".to_vec(), b"p1/c".to_vec()]
    );
    assert_eq!(
        ks(e.scan(Cf::Dirents, b"p1/", b"p1/b", 10).unwrap()),
        vec![b"p1/b".to_vec(), b"p1/c".to_vec()]
    );
    assert_eq!(
        ks(e.scan(Cf::Dirents, b"p1/", b"", 2).unwrap()),
        vec![b"p1/a".to_vec(), b"p1/b".to_vec()]
    );
    assert!(e.scan(Cf::Dirents, b"p9/", b"", 10).unwrap().is_empty());
    // The values come back with their keys.
    let v = e.scan(Cf::Dirents, b"p2/", b"", 10).unwrap();
    assert_eq!(v, vec![(b"p2/a".to_vec(), b"p2/a".to_vec())]);
}

pub(crate) fn for_each_pages(e: &dyn Engine) {
    let mut b = WriteBatch::new();
    for i in 0u32..3000 {
        b.put(
            Cf::Extents,
            [b"fe".as_slice(), &i.to_be_bytes()].concat(),
            vec![1],
        );
    }
    e.write(b, Durability::Process).unwrap();
    let mut seen = Vec::new();
    e.for_each(Cf::Extents, b"fe", &mut |k, _| {
        seen.push(k.to_vec());
        Ok(())
    })
    .unwrap();
    assert_eq!(seen.len(), 3000);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
}

pub(crate) fn sync_and_compact(e: &dyn Engine) {
    e.sync().unwrap();
    e.flush_memtables().unwrap();
    e.compact().unwrap();
    assert_eq!(
        e.get(Cf::Refs, b"same").unwrap().as_deref(),
        Some(&b"r"[..])
    );
}

/// Values put aside are invisible until a batch names them, then seen like any other value,
/// and ordered with the writes around them.
pub(crate) fn values_put_aside_are_named_by_a_later_batch(e: &dyn Engine) {
    let big = vec![7u8; 200 * 1024];
    let asides = e
        .put_aside(vec![
            big.clone(),
            big.clone(),
            b"small".to_vec(),
            vec![9u8; 5000],
        ])
        .unwrap();
    assert_eq!(asides.len(), 4);
    assert_eq!(e.get(Cf::Chunks, b"aside1").unwrap(), None, "not named yet");
    let mut b = WriteBatch::new();
    for (k, a) in [&b"aside1"[..], b"aside2", b"aside3"].iter().zip(&asides) {
        b.put_chunk_aside(k.to_vec(), a);
    }
    b.put(Cf::Meta, b"aside-meta".to_vec(), b"m".to_vec());
    e.write(b, Durability::Process).unwrap();
    drop(asides);
    assert_eq!(
        e.get(Cf::Chunks, b"aside2").unwrap().as_deref(),
        Some(&big[..])
    );
    let mut seen = None;
    e.get_with(Cf::Chunks, b"aside3", &mut |v| seen = v.map(<[u8]>::to_vec))
        .unwrap();
    assert_eq!(seen.as_deref(), Some(&b"small"[..]));
    e.write(wb(&[(Cf::Chunks, b"aside2", None)]), Durability::Process)
        .unwrap();
    // An inline value over a named aside one, and back.
    e.write(
        wb(&[(Cf::Chunks, b"aside3", Some(b"inline"))]),
        Durability::Process,
    )
    .unwrap();
    let keys: Vec<(Vec<u8>, usize)> = e
        .scan(Cf::Chunks, b"aside", b"", 10)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, v.len()))
        .collect();
    assert_eq!(
        keys,
        vec![(b"aside1".to_vec(), big.len()), (b"aside3".to_vec(), 6)]
    );
    e.sync().unwrap();
    e.compact().unwrap();
    assert_eq!(
        e.get(Cf::Chunks, b"aside1").unwrap().as_deref(),
        Some(&big[..]),
        "a named value survives reclaiming"
    );
    assert_eq!(
        e.get(Cf::Meta, b"aside-meta").unwrap().as_deref(),
        Some(&b"m"[..])
    );
}
