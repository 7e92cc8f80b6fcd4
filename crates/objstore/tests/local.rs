//! The directory backend keeps the trait's promises.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sealvol_objstore::{LocalDir, ObjectStore};

#[test]
fn put_get_list_delete() {
    let d = tempfile::tempdir().unwrap();
    let s = LocalDir::new(d.path().join("root"));
    assert!(s.list("").unwrap().is_empty());
    s.put("objects/ab/abcd", b"hello").unwrap();
    s.put("exports/1.meta", b"m").unwrap();
    assert_eq!(s.get("objects/ab/abcd").unwrap(), b"hello");
    assert!(s.get("objects/ab/nope").unwrap_err().is_not_found());
    assert_eq!(s.head("objects/ab/abcd").unwrap().unwrap().size, 5);
    assert!(s.head("nope").unwrap().is_none());
    let mut keys: Vec<String> = s.list("").unwrap().into_iter().map(|m| m.key).collect();
    keys.sort();
    assert_eq!(keys, ["exports/1.meta", "objects/ab/abcd"]);
    assert_eq!(s.list("objects").unwrap().len(), 1);
    s.sync().unwrap();
    s.delete("objects/ab/abcd").unwrap();
    s.delete("objects/ab/abcd").unwrap();
    assert_eq!(s.list("objects").unwrap().len(), 0);
    assert!(s.put("../x", b"").is_err());
    assert!(s.put("a/.hidden", b"").is_err());
}

#[test]
fn put_if_absent_has_one_winner() {
    let d = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(LocalDir::new(d.path()));
    let handles: Vec<_> = (0..8u8)
        .map(|i| {
            let s = s.clone();
            std::thread::spawn(move || s.put_if_absent("exports/00000001.manifest", &[i]).unwrap())
        })
        .collect();
    let won: Vec<bool> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    let winner = won.iter().position(|w| *w).unwrap() as u8;
    assert_eq!(s.get("exports/00000001.manifest").unwrap(), [winner]);
    // No temporary file is left behind.
    assert_eq!(
        std::fs::read_dir(d.path().join("exports")).unwrap().count(),
        1
    );
}
