#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]
//! tar.age: restored by Debian's `age` and GNU tar alone, imported back into a volume, and a
//! hostile archive kept inside the volume.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use common::*;
use sealvol_export::tar_age::{export, import, open_source, verify, AgeKey, AgeOpen};
use sealvol_export::{ExportError, NoProgress};
use sealvol_volume::Kind;

/// Kind, mode, uid, gid xor rdev, size, mtime, its nanoseconds, data hash, symlink target.
type Row = (
    String,
    u32,
    u32,
    u32,
    u64,
    i64,
    i64,
    Option<[u8; 32]>,
    String,
);
type View = BTreeMap<String, Row>;

fn identity(dir: &Path) -> (std::path::PathBuf, String) {
    use age::secrecy::ExposeSecret;
    let id = age::x25519::Identity::generate();
    let file = dir.join("key.txt");
    std::fs::write(&file, format!("{}\n", id.to_string().expose_secret())).unwrap();
    (file, id.to_public().to_string())
}

fn export_file(src: &Src, dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (idfile, recipient) = identity(dir);
    let out = dir.join("backup.tar.age");
    let s = sealvol_export::tar_age::export_to_path(
        &src.v,
        &out,
        &AgeKey::Recipient(&recipient),
        &NoProgress,
    )
    .unwrap();
    assert!(s.files > 10 && s.bytes_written > 0, "{s:?}");
    (out, idfile)
}

/// The tree as the host's filesystem shows it after `tar -x`.
fn host_dump(root: &Path) -> View {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_fifo() {
            "fifo"
        } else if ft.is_char_device() {
            "char"
        } else if ft.is_block_device() {
            "block"
        } else {
            "file"
        };
        let hash = ft
            .is_file()
            .then(|| *blake3::hash(&std::fs::read(&p).unwrap()).as_bytes());
        let target = if ft.is_symlink() {
            std::fs::read_link(&p)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        } else {
            String::new()
        };
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let size = if ft.is_file() { m.size() } else { 0 };
        let dev = if ft.is_char_device() || ft.is_block_device() {
            m.rdev() as u32
        } else {
            0
        };
        out.insert(
            rel,
            (
                kind.to_string(),
                m.mode() & 0o7777,
                m.uid(),
                m.gid() ^ dev,
                size,
                m.mtime(),
                m.mtime_nsec(),
                hash,
                target,
            ),
        );
    }
    out
}

/// The same view of the volume (sockets left out: tar cannot hold them).
fn volume_view(v: &sealvol_volume::Volume) -> View {
    dump(v)
        .into_iter()
        .filter(|(_, s)| s.kind != Kind::Socket)
        .map(|(p, s)| {
            let kind = match s.kind {
                Kind::Dir => "dir",
                Kind::Symlink => "symlink",
                Kind::Fifo => "fifo",
                Kind::CharDev => "char",
                Kind::BlockDev => "block",
                _ => "file",
            };
            let size = if s.kind == Kind::File { s.size } else { 0 };
            let perm = if s.kind == Kind::Symlink {
                0o777
            } else {
                s.perm
            };
            (
                String::from_utf8_lossy(&p).into_owned(),
                (
                    kind.to_string(),
                    perm,
                    s.uid,
                    s.gid ^ s.rdev,
                    size,
                    s.mtime.secs,
                    s.mtime.nanos as i64,
                    s.data_hash,
                    String::from_utf8_lossy(&s.target).into_owned(),
                ),
            )
        })
        .collect()
}

#[test]
fn debians_age_and_gnu_tar_alone_restore_every_file_and_attribute() {
    let age_bin = Command::new("age").arg("--version").output();
    assert!(
        age_bin.is_ok_and(|o| o.status.success()),
        "this test needs Debian's age binary: apt-get install age (scripts/setup.sh --test installs it)"
    );
    let src = volume();
    populate(&src.v);
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let (file, idfile) = export_file(&src, dir.path());
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let script = format!(
        "set -o pipefail; age -d -i '{}' '{}' | tar -x --xattrs --xattrs-include='user.*' --same-owner --numeric-owner -C '{}'",
        idfile.display(),
        file.display(),
        out.display()
    );
    let o = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut want = volume_view(&src.v);
    let mut got = host_dump(&out);
    // The root: tar -x does not set the attributes of the directory it extracts into.
    want.remove("");
    got.remove("");
    // A directory's mtime moves when tar creates entries in it after setting it (GNU tar sets
    // them at the end: they must match too).
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    for (k, w) in &want {
        assert_eq!(w, &got[k], "{k}");
    }
    // xattrs (user.* and the rest where the host's filesystem takes them).
    let x = xattr_of(&out.join("xattrs"), "user.binary");
    assert_eq!(x, vec![0, 1, 2, 255, 0]);
    assert_eq!(xattr_of(&out.join("docs"), "user.on-a-dir"), b"yes");
    // Hard links are hard links again.
    let a = std::fs::metadata(out.join("docs/hardlinked")).unwrap();
    let b = std::fs::metadata(out.join("hardlink-3")).unwrap();
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 3));
}

fn xattr_of(p: &Path, name: &str) -> Vec<u8> {
    let o = Command::new("getfattr")
        .args(["--only-values", "-h", "-n", name])
        .arg(p)
        .output()
        .expect("getfattr (package attr)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

#[test]
fn a_tar_age_imports_back_into_a_volume_and_a_wrong_identity_is_refused() {
    let src = volume();
    populate(&src.v);
    let dir = tempfile::tempdir().unwrap();
    let (file, idfile) = export_file(&src, dir.path());
    // By default the link to /etc/passwd is refused and listed, and nothing else.
    let input = open_source(&file, &AgeOpen::Identity(&idfile)).unwrap();
    let refusing = new_volume();
    let s = import(input, &refusing, &NoProgress).unwrap();
    assert_eq!(s.damaged.len(), 1, "{:?}", s.damaged);
    assert!(
        s.damaged[0].starts_with("/docs/abs-link: refused: a symlink pointing out"),
        "{:?}",
        s.damaged
    );
    assert!(!dump(&refusing).contains_key(&b"docs/abs-link"[..]));
    // Kept as it was on request.
    let input = open_source(&file, &AgeOpen::Identity(&idfile)).unwrap();
    let restored = new_volume();
    let s = sealvol_export::tar_age::import_layers(
        vec![input],
        &restored,
        sealvol_export::tar_age::OutsideSymlinks::Keep,
        &NoProgress,
    )
    .unwrap();
    assert!(s.damaged.is_empty(), "{:?}", s.damaged);
    let mut want = dump(&src.v);
    want.retain(|_, s| s.kind != Kind::Socket);
    let got = dump(&restored);
    // The root's link count counts its subdirectories; a socket is not one.
    assert_same(&want, &got);

    let (other, _) = identity(&dir.path().join("x").tap_mkdir());
    let e = open_source(&file, &AgeOpen::Identity(&other))
        .err()
        .unwrap();
    assert!(matches!(e, ExportError::WrongKey { .. }), "{e}");

    let v = verify(
        open_source(&file, &AgeOpen::Identity(&idfile)).unwrap(),
        &NoProgress,
    )
    .unwrap();
    assert!(v.damaged.is_empty(), "{:?}", v.damaged);
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}
impl TapMkdir for std::path::PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

#[test]
fn a_damaged_or_truncated_tar_age_restores_what_comes_before_the_damage() {
    let src = volume();
    populate(&src.v);
    let dir = tempfile::tempdir().unwrap();
    let (file, idfile) = export_file(&src, dir.path());
    let bytes = std::fs::read(&file).unwrap();
    for (what, damaged) in [
        ("flipped", {
            let mut b = bytes.clone();
            let at = b.len() * 2 / 3;
            b[at] ^= 1;
            b
        }),
        ("truncated", bytes[..bytes.len() * 2 / 3].to_vec()),
    ] {
        let f = dir.path().join(what);
        std::fs::write(&f, &damaged).unwrap();
        let restored = new_volume();
        let s = import(
            open_source(&f, &AgeOpen::Identity(&idfile)).unwrap(),
            &restored,
            &NoProgress,
        )
        .unwrap();
        assert!(!s.damaged.is_empty(), "{what}: damage is reported");
        assert!(
            s.files > 3,
            "{what}: the files before the damage restore: {s:?}"
        );
        assert!(restored.check().unwrap().is_clean());
        let v = verify(
            open_source(&f, &AgeOpen::Identity(&idfile)).unwrap(),
            &NoProgress,
        )
        .unwrap();
        assert!(!v.damaged.is_empty(), "{what}: verify finds it");
    }
}

#[test]
fn a_hostile_archive_cannot_reach_outside_the_volume() {
    let dir = tempfile::tempdir().unwrap();
    let (idfile, recipient) = identity(dir.path());
    // A tar built by hand: escapes by `..`, an absolute path, a hard link out, a path through a
    // symlink, beside honest entries.
    let mut raw = Vec::new();
    {
        let mut b = tar::Builder::new(&mut raw);
        let mut add = |path: &[u8], kind: tar::EntryType, link: Option<&[u8]>, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.as_old_mut().name[..path.len()].copy_from_slice(path);
            h.set_entry_type(kind);
            if let Some(l) = link {
                h.as_old_mut().linkname[..l.len()].copy_from_slice(l);
            }
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            h.set_cksum();
            b.append(&h, data).unwrap();
        };
        add(b"ok.txt", tar::EntryType::Regular, None, b"fine");
        add(b"../evil.txt", tar::EntryType::Regular, None, b"evil");
        add(b"a/../../evil2.txt", tar::EntryType::Regular, None, b"evil");
        add(b"/etc/evil3", tar::EntryType::Regular, None, b"evil");
        add(b"hl", tar::EntryType::Link, Some(b"../../etc/passwd"), b"");
        add(b"out", tar::EntryType::Symlink, Some(b"/etc"), b"");
        add(b"out/passwd", tar::EntryType::Regular, None, b"evil");
        add(
            b"deep/er/file",
            tar::EntryType::Regular,
            None,
            b"parents made",
        );
        b.finish().unwrap();
    }
    let r: age::x25519::Recipient = recipient.parse().unwrap();
    let enc = age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient)).unwrap();
    let f = dir.path().join("hostile.tar.age");
    let mut w = enc.wrap_output(std::fs::File::create(&f).unwrap()).unwrap();
    w.write_all(&raw).unwrap();
    w.finish().unwrap();

    let v = new_volume();
    let s = import(
        open_source(&f, &AgeOpen::Identity(&idfile)).unwrap(),
        &v,
        &NoProgress,
    )
    .unwrap();
    let listed = s.damaged.join("\n");
    for bad in [
        "/../evil.txt",
        "/a/../../evil2.txt",
        "/etc/evil3",
        "/hl",
        "/out:",
        "/out/passwd",
    ] {
        assert!(
            s.damaged
                .iter()
                .any(|d| d.starts_with(bad) && d.contains("refused")),
            "{bad} is refused and listed: {listed}"
        );
    }
    assert_eq!(s.damaged.len(), 6, "{listed}");
    let names: Vec<String> = dump(&v)
        .keys()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert_eq!(names, ["", "deep", "deep/er", "deep/er/file", "ok.txt"]);
    // And nothing appeared beside the archive on the host.
    assert!(!dir.path().join("evil.txt").exists() && !Path::new("/etc/evil3").exists());
}

#[test]
fn a_passphrase_tar_age_round_trips() {
    let src = volume();
    file(
        &src.v,
        sealvol_volume::ROOT_INO,
        "a",
        b"passphrase protected",
    );
    let pass =
        sealvol_crypto::Secret::Passphrase(zeroize::Zeroizing::new(b"tar age pass".to_vec()));
    let mut out = Vec::new();
    export(&src.v, &mut out, &AgeKey::Passphrase(&pass), &NoProgress).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("p.tar.age");
    std::fs::write(&f, &out).unwrap();
    let v = new_volume();
    import(
        open_source(&f, &AgeOpen::Passphrase(&pass)).unwrap(),
        &v,
        &NoProgress,
    )
    .unwrap();
    assert_same(&dump(&src.v), &dump(&v));
    let wrong = sealvol_crypto::Secret::Passphrase(zeroize::Zeroizing::new(b"nope".to_vec()));
    let e = open_source(&f, &AgeOpen::Passphrase(&wrong)).err().unwrap();
    assert!(matches!(e, ExportError::WrongKey { .. }), "{e}");
}

/// Changes for step `n` of a chain of layers: deletions (a file, a directory with its
/// contents), renames, a change inside a large file, a type change, new files and links.
fn change(v: &sealvol_volume::Volume, n: u64) {
    use sealvol_volume::ROOT_INO;
    let docs = lookup(v, "docs");
    match n {
        1 => {
            v.unlink(docs, b"several").unwrap();
            v.rename(ROOT_INO, b"tmp", docs, b"tmp-moved", 0).unwrap();
            write_at(v, lookup(v, "dup1"), CHUNK + 10, b"changed in step 1");
            file(v, ROOT_INO, "new-in-1", &pattern(2 * CHUNK as usize, 1001));
            v.unlink(ROOT_INO, b"dangling").unwrap();
            v.mkdir(ROOT, ROOT_INO, b"dangling", 0o700).unwrap();
        }
        _ => {
            v.unlink(ROOT_INO, b"hardlink-3").unwrap();
            let d = lookup(v, "docs/d0/d1/d2/d3/d4/d5");
            v.unlink(d, b"bottom.txt").unwrap();
            v.unlink(d, b"hardlink-2").unwrap();
            for (up, name) in [("docs/d0/d1/d2/d3/d4", "d5"), ("docs/d0/d1/d2/d3", "d4")] {
                v.rmdir(lookup(v, up), name.as_bytes()).unwrap();
            }
            v.rename(ROOT_INO, b"new-in-1", ROOT_INO, b"renamed-in-2", 0)
                .unwrap();
            file(
                v,
                lookup(v, "dangling"),
                "inside",
                b"a file where a symlink was",
            );
            v.link(lookup(v, "dup2"), ROOT_INO, b"dup2-link").unwrap();
        }
    }
}

/// The source, the layer files, the dump at each step, and the identity file.
type Layered = (
    Src,
    Vec<std::path::PathBuf>,
    Vec<BTreeMap<Vec<u8>, Seen>>,
    std::path::PathBuf,
);

/// Three tar.age exports, each a layer on the one before: their states, dumps and files.
fn three_layers(dir: &Path) -> Layered {
    use sealvol_export::tar_age::{export_file, Layering};
    let src = volume();
    populate(&src.v);
    let (idfile, recipient) = identity(dir);
    let mut files: Vec<std::path::PathBuf> = Vec::new();
    let mut dumps = Vec::new();
    for step in 0..3u64 {
        if step > 0 {
            change(&src.v, step);
        }
        dumps.push(dump(&src.v));
        let out = dir.join(format!("l{step}.tar.age"));
        let layering = Layering {
            master: &src.master,
            since: files.last().map(|p| p.as_path()),
        };
        let s = export_file(
            &src.v,
            &out,
            &AgeKey::Recipient(&recipient),
            Some(&layering),
            &NoProgress,
        )
        .unwrap();
        assert_eq!(s.seq, step + 1);
        files.push(out);
    }
    (src, files, dumps, idfile)
}

#[test]
fn tar_age_layers_carry_only_changes_and_import_in_order_to_each_step() {
    let dir = tempfile::tempdir().unwrap();
    let (_src, files, dumps, idfile) = three_layers(dir.path());
    let sizes: Vec<u64> = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .collect();
    assert!(
        sizes[1] < sizes[0] / 2 && sizes[2] < sizes[0] / 2,
        "{sizes:?}"
    );
    for n in 1..=3 {
        let inputs = files[..n]
            .iter()
            .map(|f| open_source(f, &AgeOpen::Identity(&idfile)).unwrap())
            .collect();
        let v = new_volume();
        let s = sealvol_export::tar_age::import_layers(
            inputs,
            &v,
            sealvol_export::tar_age::OutsideSymlinks::Keep,
            &NoProgress,
        )
        .unwrap();
        assert!(s.damaged.is_empty(), "{:?}", s.damaged);
        let mut want = dumps[n - 1].clone();
        want.retain(|_, s| s.kind != Kind::Socket);
        assert_same(&want, &dump(&v));
        assert!(v.check().unwrap().is_clean());
    }
    // A layer on another volume's export is refused (its state does not open).
    let other = volume();
    let e = sealvol_export::tar_age::export_file(
        &other.v,
        &dir.path().join("x.tar.age"),
        &AgeKey::Recipient(&identity(&dir.path().join("o").tap_mkdir()).1),
        Some(&sealvol_export::tar_age::Layering {
            master: &other.master,
            since: Some(&files[2]),
        }),
        &NoProgress,
    )
    .err()
    .unwrap();
    assert!(
        e.to_string()
            .contains("does not open with this volume's key"),
        "{e}"
    );
}

#[test]
fn tar_age_layers_apply_with_age_tar_and_the_shell_script_alone() {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let (src, files, _dumps, idfile) = three_layers(dir.path());
    let out = dir.path().join("out");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/apply-tar-age-layers.sh"
    );
    let o = Command::new("bash")
        .arg(script)
        .arg("-i")
        .arg(&idfile)
        .arg(&out)
        .args(&files)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut want = volume_view(&src.v);
    let mut got = host_dump(&out);
    want.remove("");
    got.remove("");
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    for (k, w) in &want {
        assert_eq!(w, &got[k], "{k}");
    }
    let a = std::fs::metadata(out.join("dup2")).unwrap();
    let b = std::fs::metadata(out.join("dup2-link")).unwrap();
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
}

/// A symlink refused for pointing out shadows what lies under its path, until a later layer
/// removes it (a whiteout) or puts something else there.
#[test]
fn a_later_layer_can_replace_a_refused_link() {
    /// Path, kind, link target.
    type Entry<'a> = (&'a [u8], tar::EntryType, Option<&'a [u8]>);
    fn tar(entries: &[Entry<'_>]) -> Box<dyn std::io::Read> {
        let mut raw = Vec::new();
        {
            let mut b = tar::Builder::new(&mut raw);
            for (path, kind, link) in entries {
                let mut h = tar::Header::new_gnu();
                h.as_old_mut().name[..path.len()].copy_from_slice(path);
                h.set_entry_type(*kind);
                if let Some(l) = link {
                    h.as_old_mut().linkname[..l.len()].copy_from_slice(l);
                }
                let data: &[u8] = if *kind == tar::EntryType::Regular {
                    b"x"
                } else {
                    b""
                };
                h.set_mode(0o755);
                h.set_size(data.len() as u64);
                h.set_cksum();
                b.append(&h, data).unwrap();
            }
            b.finish().unwrap();
        }
        Box::new(std::io::Cursor::new(raw))
    }
    use tar::EntryType::{Directory, Regular, Symlink};
    let layers = || {
        vec![
            tar(&[
                (b"out", Symlink, Some(b"/etc")),
                (b"out/a", Regular, None),
                (b"up", Symlink, Some(b"../..")),
            ]),
            tar(&[
                (b".wh.out", Regular, None),
                (b"out", Directory, None),
                (b"out/b", Regular, None),
                (b"up", Directory, None),
                (b"up/c", Regular, None),
            ]),
        ]
    };
    let v = new_volume();
    let s = sealvol_export::tar_age::import_layers(
        layers(),
        &v,
        sealvol_export::tar_age::OutsideSymlinks::Refuse,
        &NoProgress,
    )
    .unwrap();
    let listed = s.damaged.join("\n");
    assert_eq!(s.damaged.len(), 3, "{listed}");
    for bad in ["/out:", "/out/a:", "/up:"] {
        assert!(
            s.damaged.iter().any(|d| d.starts_with(bad)),
            "{bad}: {listed}"
        );
    }
    let names: Vec<String> = dump(&v)
        .keys()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert_eq!(names, ["", "out", "out/b", "up", "up/c"]);
}
