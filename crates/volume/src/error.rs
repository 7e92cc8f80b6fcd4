use sealvol_crypto::CryptoError;
use sealvol_store::StoreError;

/// Errors of filesystem operations and volume management. The FUSE layer maps each to one errno
/// in one place; the CLI prints them with their causes.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("file exists")]
    Exists,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("directory not empty")]
    NotEmpty,
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    #[error("name too long (more than 255 bytes)")]
    NameTooLong,
    #[error("no such extended attribute")]
    NoXattr,
    #[error("extended attribute buffer too small")]
    Range,
    #[error("operation not supported: {0}")]
    NotSupported(&'static str),
    #[error("file too large")]
    TooBig,
    #[error("no room for more extended attributes on this file (256 KiB in all)")]
    XattrSpace,
    #[error("directory tree too deep: sealvol keeps directories at most {MAX_DIR_DEPTH} levels below the root (move the subtree higher up)", MAX_DIR_DEPTH = crate::namespace::MAX_DIR_DEPTH)]
    TooDeep,
    #[error("damaged data in volume {volume}, inode {ino}: {detail}")]
    Corrupt {
        volume: String,
        ino: u64,
        detail: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Record(#[from] crate::schema::RecordError),
    #[error("{0}")]
    Setup(String),
}

pub type Result<T, E = FsError> = std::result::Result<T, E>;
