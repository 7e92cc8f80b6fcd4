use std::path::PathBuf;

/// Errors of the crypto layer. None of them carries secret material.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error(
        "authentication failed: the data was modified, is damaged, or was sealed under another key"
    )]
    Authentication,
    #[error("a chunk's contents do not hash to its address")]
    AddressMismatch,
    #[error("sealed object is malformed: {0}")]
    Malformed(&'static str),
    #[error("sealed object uses format version {0}, which this sealvol does not know")]
    UnknownVersion(u8),
    #[error("the passphrase or key file does not open any key slot of this volume")]
    WrongKey,
    #[error("key slot {0} does not exist")]
    NoSuchSlot(u32),
    #[error("refusing to remove key slot {0}: it is the last one, and without it the volume could never be opened again")]
    LastSlot(u32),
    #[error(
        "{path} is readable by group or others (mode {mode:04o}); a secret must be private: run `chmod 600 {path}`",
        path = path.display()
    )]
    SecretFilePermissions { path: PathBuf, mode: u32 },
    #[error(
        "{path} is a symbolic link; sealvol does not follow links to secret files (another user could plant one): give the real file's path (`realpath {path}`)",
        path = path.display()
    )]
    SecretFileSymlink { path: PathBuf },
    #[error(
        "{path} is {what}; a key or passphrase file must be a regular file (mode 0600)",
        path = path.display()
    )]
    SecretFileNotRegular { path: PathBuf, what: &'static str },
    #[error(
        "{path} belongs to uid {owner}, neither you (uid {me}) nor root: another user could change it; if it is yours, run `chown {me} {path}` and check its contents",
        path = path.display()
    )]
    SecretFileOwner { path: PathBuf, owner: u32, me: u32 },
    #[error(
        "{path} holds {len} bytes, more than a secret file may ({max} bytes at most): is it the right file?",
        path = path.display()
    )]
    SecretFileTooLarge { path: PathBuf, len: u64, max: usize },
    #[error("cannot read {path}: {source}", path = path.display())]
    SecretFileRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} holds {len} bytes; a key file must hold exactly 32 random bytes (make one with `head -c 32 /dev/urandom > FILE && chmod 600 FILE`)",
        path = path.display()
    )]
    KeyFileLength { path: PathBuf, len: usize },
    #[error("{} is empty; a passphrase file must hold a non-empty passphrase", path.display())]
    EmptyPassphrase { path: PathBuf },
    #[error("key header is malformed: {0}")]
    Header(String),
    #[error("{origin}: Argon2id {field} = {value}{unit} is outside the accepted range {min}..={max}{unit}; {advice}")]
    KdfOutOfRange {
        origin: String,
        field: &'static str,
        value: u32,
        min: u32,
        max: u32,
        unit: &'static str,
        advice: &'static str,
    },
    #[error("a volume holds at most {max} key slots; remove one first (`sealvol key remove`)")]
    TooManySlots { max: usize },
    #[error("Argon2id failed: {0}")]
    Kdf(String),
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
}
