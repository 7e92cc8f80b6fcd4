//! Errors of object stores: each names the store, the operation and the key, and what to do.
//! No message holds a secret (a backend's own error text is scrubbed of its credentials).

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{store}: {key} does not exist")]
    NotFound { store: String, key: String },
    #[error("{store}: {op} {key}: {source}")]
    Io {
        store: String,
        op: &'static str,
        key: String,
        source: std::io::Error,
    },
    #[error(
        "{store}: {op} {key} was refused: {why} (check the access key id and secret key: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or --s3-access-key-id and --s3-secret-access-key-file; and that they may read and write this bucket)"
    )]
    Denied {
        store: String,
        op: &'static str,
        key: String,
        why: String,
    },
    #[error("{store}: {op} {key}: {why}")]
    Remote {
        store: String,
        op: &'static str,
        key: String,
        why: String,
    },
    #[error("{0}")]
    Config(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }
}
