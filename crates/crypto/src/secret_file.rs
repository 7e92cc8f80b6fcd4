//! Reading passphrase and key files, refusing ones that others can read or replace.
//!
//! A secret file is opened once, without following a symlink in its last component
//! (`O_NOFOLLOW`), without blocking on a FIFO (`O_NONBLOCK`) and not inherited by children
//! (`O_CLOEXEC`); every check is then made on the open file (`fstat`), and the bytes are read
//! from that same descriptor. There is no window between the check and the read in which
//! another user could swap the file.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use zeroize::Zeroizing;

use crate::keys::KeyBytes;
use crate::slots::Secret;
use crate::CryptoError;

/// The largest passphrase file sealvol reads. A passphrase is a line of text; anything larger
/// is the wrong file.
pub const MAX_SECRET_FILE: usize = 64 * 1024;

/// The bytes of a private secret file, at most `max` of them. See the module documentation for
/// the checks.
fn read_private(path: &Path, max: usize) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let read_err = |source| CryptoError::SecretFileRead {
        path: path.to_path_buf(),
        source,
    };
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
    let fd = match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::LOOP) => {
            return Err(CryptoError::SecretFileSymlink {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(read_err(e.into())),
    };
    let mut file = File::from(fd);
    // fstat(2) of the descriptor just opened: the file checked is the file read.
    let meta = file.metadata().map_err(read_err)?;
    let kind = meta.file_type();
    if !kind.is_file() {
        use std::os::unix::fs::FileTypeExt;
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO (named pipe)"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else {
            "not a regular file"
        };
        return Err(CryptoError::SecretFileNotRegular {
            path: path.to_path_buf(),
            what,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(CryptoError::SecretFilePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(CryptoError::SecretFileOwner {
            path: path.to_path_buf(),
            owner: meta.uid(),
            me,
        });
    }
    if meta.len() > max as u64 {
        return Err(CryptoError::SecretFileTooLarge {
            path: path.to_path_buf(),
            len: meta.len(),
            max,
        });
    }
    // Read into memory reserved up front (one byte more than allowed, to see a file that grew
    // since the fstat): the buffer never reallocates, so no copy of the secret is left behind
    // in freed memory.
    let mut buf = Zeroizing::new(vec![0u8; max + 1]);
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
        }
    }
    if filled > max {
        return Err(CryptoError::SecretFileTooLarge {
            path: path.to_path_buf(),
            len: filled as u64,
            max,
        });
    }
    buf.truncate(filled);
    Ok(buf)
}

/// A key file: exactly 32 bytes, mode 0600 or stricter.
pub fn read_key_file(path: &Path) -> Result<Secret, CryptoError> {
    let bytes = read_private(path, MAX_SECRET_FILE)?;
    let key = KeyBytes::from_slice(&bytes).ok_or_else(|| CryptoError::KeyFileLength {
        path: path.to_path_buf(),
        len: bytes.len(),
    })?;
    Ok(Secret::KeyFile(key))
}

/// A passphrase file: its contents less one trailing newline, mode 0600 or stricter.
pub fn read_passphrase_file(path: &Path) -> Result<Secret, CryptoError> {
    let bytes = read_private(path, MAX_SECRET_FILE)?;
    passphrase_from_bytes(bytes.to_vec(), path)
}

/// A passphrase typed or piped in: one trailing newline is dropped; empty is refused.
pub fn passphrase_from_bytes(bytes: Vec<u8>, origin: &Path) -> Result<Secret, CryptoError> {
    let mut bytes = Zeroizing::new(bytes);
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    if bytes.is_empty() {
        return Err(CryptoError::EmptyPassphrase {
            path: origin.to_path_buf(),
        });
    }
    Ok(Secret::Passphrase(bytes))
}

/// Frame a secret for a pipe to a child process: one kind byte ('P' passphrase, 'K' key file),
/// then the secret's bytes.
pub fn frame_secret(secret: &Secret) -> Zeroizing<Vec<u8>> {
    let (kind, bytes): (u8, &[u8]) = match secret {
        Secret::Passphrase(p) => (b'P', p),
        Secret::KeyFile(k) => (b'K', k.expose()),
    };
    // Sized up front: growing would leave a copy of the secret in the freed buffer.
    let mut out = Zeroizing::new(Vec::with_capacity(1 + bytes.len()));
    out.push(kind);
    out.extend_from_slice(bytes);
    out
}

/// The longest framed secret [`unframe_secret`] accepts (kind byte and a passphrase of
/// [`MAX_SECRET_FILE`] bytes): what a reader of the pipe should reserve.
pub const MAX_FRAMED_SECRET: usize = 1 + MAX_SECRET_FILE;

/// The inverse of [`frame_secret`].
pub fn unframe_secret(bytes: &[u8]) -> Option<Secret> {
    match bytes.split_first() {
        Some((b'P', rest)) if !rest.is_empty() => {
            Some(Secret::Passphrase(Zeroizing::new(rest.to_vec())))
        }
        Some((b'K', rest)) => KeyBytes::from_slice(rest).map(Secret::KeyFile),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn framing_round_trips() {
        for s in [
            Secret::Passphrase(Zeroizing::new(b"pw".to_vec())),
            Secret::key_file(&[3; 32]),
        ] {
            let f = frame_secret(&s);
            match (unframe_secret(&f).unwrap(), s) {
                (Secret::Passphrase(a), Secret::Passphrase(b)) => assert_eq!(&a[..], &b[..]),
                (Secret::KeyFile(a), Secret::KeyFile(b)) => assert_eq!(a.expose(), b.expose()),
                _ => panic!("kind changed"),
            }
        }
        assert!(unframe_secret(b"").is_none());
        assert!(unframe_secret(b"K123").is_none());
    }

    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(dir: &Path, name: &str, data: &[u8], mode: u32) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, data).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn key_files_readable_by_others_are_refused() {
        let d = tempfile::tempdir().unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660] {
            let p = write(d.path(), "k", &[1; 32], mode);
            let err = read_key_file(&p).err().unwrap();
            assert!(matches!(err, CryptoError::SecretFilePermissions { .. }));
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
        let p = write(d.path(), "k", &[1; 32], 0o600);
        assert!(read_key_file(&p).is_ok());
        let p = write(d.path(), "k", &[1; 32], 0o400);
        assert!(read_key_file(&p).is_ok());
    }

    #[test]
    fn key_file_length_is_checked() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "k", &[1; 31], 0o600);
        let err = read_key_file(&p).err().unwrap();
        assert!(err.to_string().contains("exactly 32"), "{err}");
    }

    #[test]
    fn passphrase_file_trailing_newline_and_empty() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "p", b"secret\n", 0o600);
        match read_passphrase_file(&p).unwrap() {
            Secret::Passphrase(b) => assert_eq!(&b[..], b"secret"),
            _ => panic!("not a passphrase"),
        }
        let p = write(d.path(), "p", b"\n", 0o600);
        assert!(matches!(
            read_passphrase_file(&p),
            Err(CryptoError::EmptyPassphrase { .. })
        ));
        let p = write(d.path(), "p", b"secret", 0o644);
        assert!(read_passphrase_file(&p).is_err());
    }

    #[test]
    fn a_symlink_in_place_of_the_file_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let real = write(d.path(), "real", &[1; 32], 0o600);
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        for read in [read_key_file, read_passphrase_file] {
            let err = read(&link).err().unwrap();
            assert!(
                matches!(err, CryptoError::SecretFileSymlink { .. }),
                "{err}"
            );
            let msg = err.to_string();
            assert!(msg.contains(&*link.to_string_lossy()), "{msg}");
            assert!(
                msg.contains("symbolic link") && msg.contains("realpath"),
                "{msg}"
            );
        }
        // The real file itself is fine.
        assert!(read_key_file(&real).is_ok());
    }

    #[test]
    fn fifos_and_directories_are_refused_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg("-m")
            .arg("600")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        // Without O_NONBLOCK the open would wait forever for a writer.
        let err = read_passphrase_file(&fifo).err().unwrap();
        assert!(
            matches!(err, CryptoError::SecretFileNotRegular { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("FIFO"), "{err}");
        let dir = d.path().join("dir");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let err = read_key_file(&dir).err().unwrap();
        assert!(
            matches!(err, CryptoError::SecretFileNotRegular { .. }),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("a directory") && msg.contains("regular file"),
            "{msg}"
        );
        let err = read_passphrase_file(Path::new("/dev/null")).err().unwrap();
        assert!(
            matches!(err, CryptoError::SecretFileNotRegular { .. }),
            "{err}"
        );
    }

    #[test]
    fn oversized_secret_files_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "p", b"", 0o600);
        // Sparse: 1 GiB that the check must refuse without reading.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(1 << 30)
            .unwrap();
        for read in [read_key_file, read_passphrase_file] {
            let err = read(&p).err().unwrap();
            assert!(
                matches!(err, CryptoError::SecretFileTooLarge { .. }),
                "{err}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains("1073741824 bytes") && msg.contains("65536"),
                "{msg}"
            );
        }
        // The bound itself is accepted.
        let p = write(d.path(), "p", &vec![b'x'; MAX_SECRET_FILE], 0o600);
        match read_passphrase_file(&p).unwrap() {
            Secret::Passphrase(b) => assert_eq!(b.len(), MAX_SECRET_FILE),
            _ => panic!("not a passphrase"),
        }
    }

    #[test]
    fn files_of_another_user_are_refused() {
        let me = rustix::process::geteuid().as_raw();
        if me != 0 {
            // Only root can hand a file to another user; the rule is checked where it can be.
            eprintln!("skipped: needs root to chown a file to another user");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "k", &[1; 32], 0o600);
        std::os::unix::fs::chown(&p, Some(65534), None).unwrap();
        let err = read_key_file(&p).err().unwrap();
        assert!(
            matches!(
                err,
                CryptoError::SecretFileOwner {
                    owner: 65534,
                    me: 0,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("chown 0"), "{err}");
        // Root's own file, and a file of the caller, are accepted.
        std::os::unix::fs::chown(&p, Some(0), None).unwrap();
        assert!(read_key_file(&p).is_ok());
    }

    #[test]
    fn good_files_are_read_whole() {
        let d = tempfile::tempdir().unwrap();
        let key: Vec<u8> = (0u8..32).collect();
        let p = write(d.path(), "k", &key, 0o600);
        match read_key_file(&p).unwrap() {
            Secret::KeyFile(k) => assert_eq!(&k.expose()[..], &key[..]),
            _ => panic!("not a key file"),
        }
        let p = write(d.path(), "p", b"correct horse battery staple\n", 0o400);
        match read_passphrase_file(&p).unwrap() {
            Secret::Passphrase(b) => assert_eq!(&b[..], b"correct horse battery staple"),
            _ => panic!("not a passphrase"),
        }
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = read_key_file(Path::new("/nonexistent/key")).err().unwrap();
        assert!(err.to_string().contains("/nonexistent/key"));
    }
}
