//! Reading passphrase and key files, refusing ones that others can read.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use zeroize::Zeroizing;

use crate::slots::Secret;
use crate::CryptoError;

fn read_private(path: &Path) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let read_err = |source| CryptoError::SecretFileRead {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(CryptoError::SecretFilePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(Zeroizing::new(std::fs::read(path).map_err(read_err)?))
}

/// A key file: exactly 32 bytes, mode 0600 or stricter.
pub fn read_key_file(path: &Path) -> Result<Secret, CryptoError> {
    let bytes = read_private(path)?;
    let arr: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| CryptoError::KeyFileLength {
            path: path.to_path_buf(),
            len: bytes.len(),
        })?;
    Ok(Secret::KeyFile(Zeroizing::new(arr)))
}

/// A passphrase file: its contents less one trailing newline, mode 0600 or stricter.
pub fn read_passphrase_file(path: &Path) -> Result<Secret, CryptoError> {
    let bytes = read_private(path)?;
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
    let mut out = Zeroizing::new(Vec::new());
    match secret {
        Secret::Passphrase(p) => {
            out.push(b'P');
            out.extend_from_slice(p);
        }
        Secret::KeyFile(k) => {
            out.push(b'K');
            out.extend_from_slice(&k[..]);
        }
    }
    out
}

/// The inverse of [`frame_secret`].
pub fn unframe_secret(bytes: &[u8]) -> Option<Secret> {
    match bytes.split_first() {
        Some((b'P', rest)) if !rest.is_empty() => {
            Some(Secret::Passphrase(Zeroizing::new(rest.to_vec())))
        }
        Some((b'K', rest)) => {
            let k: [u8; 32] = rest.try_into().ok()?;
            Some(Secret::KeyFile(Zeroizing::new(k)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn framing_round_trips() {
        for s in [
            Secret::Passphrase(Zeroizing::new(b"pw".to_vec())),
            Secret::KeyFile(Zeroizing::new([3; 32])),
        ] {
            let f = frame_secret(&s);
            match (unframe_secret(&f).unwrap(), s) {
                (Secret::Passphrase(a), Secret::Passphrase(b)) => assert_eq!(&a[..], &b[..]),
                (Secret::KeyFile(a), Secret::KeyFile(b)) => assert_eq!(&a[..], &b[..]),
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
    fn missing_file_names_the_path() {
        let err = read_key_file(Path::new("/nonexistent/key")).err().unwrap();
        assert!(err.to_string().contains("/nonexistent/key"));
    }
}
