//! Errors of export and restore: each says what failed, where, and what to do.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} is not a sealvol export ({why}); name the directory `sealvol export` wrote, or an empty or new directory to export into",
        path.display()
    )]
    NotAnExport { path: PathBuf, why: String },
    #[error(
        "the key given does not open the export in {}: wrong key, or an export made with another key (a backup passphrase needs --backup-passphrase-file, an age recipient --identity); nothing was written",
        path.display()
    )]
    WrongKey { path: PathBuf },
    #[error("{0}")]
    Refused(String),
    #[error("the export in {} is damaged: {what}", path.display())]
    Damaged { path: PathBuf, what: String },
    #[error("reading the volume: {0}")]
    Volume(#[from] sealvol_volume::FsError),
    #[error("{0}")]
    Crypto(#[from] sealvol_crypto::CryptoError),
    #[error("age: {0}")]
    Age(String),
    #[error("{0}")]
    Store(#[from] sealvol_objstore::Error),
}

pub type Result<T> = std::result::Result<T, ExportError>;

/// Attach `path` to an I/O error.
pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl ExportError {
    /// Whether the error is a full disk (of the export target or the new store).
    pub fn is_no_space(&self) -> bool {
        match self {
            ExportError::Io { source, .. } => source.raw_os_error() == Some(28),
            ExportError::Store(sealvol_objstore::Error::Io { source, .. }) => {
                source.raw_os_error() == Some(28)
            }
            ExportError::Volume(sealvol_volume::FsError::Store(
                sealvol_store::StoreError::NoSpace(_),
            )) => true,
            _ => false,
        }
    }
}
