use sealvol_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no such file or directory")]
    NotFound,
    #[error("the name exists")]
    Exists,
    #[error("the directory is not empty")]
    NotEmpty,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("invalid: {0}")]
    Invalid(&'static str),
    #[error(
        "chunk {0} of this file has not been replicated here yet; it arrives with the next sync"
    )]
    Pending(String),
    #[error("the replica's store is damaged: {0}; run `sealvol check`")]
    Corrupt(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::Corrupt(what.to_string())
}
