//! sealvol's cryptography: everything that turns a passphrase or key file into keys, and keys
//! into sealed bytes. It knows nothing of storage, FUSE, HTTP or Docker.
//!
//! Constructions (see `docs/security.md` for the argument):
//! - **Master key**: 256 random bits, only ever stored wrapped in key slots ([`slots`]).
//! - **Key slots**: a slot's key-encryption key (KEK) is Argon2id(passphrase, salt, params) or
//!   BLAKE3-derive(key file, salt); the master key is sealed under the KEK with
//!   XChaCha20-Poly1305, the associated data binding volume id and slot id.
//! - **Subkeys**: `blake3::derive_key(context, master)` with one context string per use
//!   ([`keys::Purpose`]).
//! - **Sealing**: XChaCha20-Poly1305, random 192-bit nonce, associated data = domain label +
//!   format version + key epoch + caller binding ([`seal`]); chunks in 16 KiB segments, each
//!   authenticated and verifiable against the chunk's address on its own ([`chunk`]).
//! - **Addresses and record keys**: keyed BLAKE3 ([`hash`]).

pub mod chunk;
pub mod error;
pub mod hash;
pub mod keys;
pub mod seal;
pub mod secret_file;
pub mod slots;

pub use chunk::{padded_len, sealed_chunk_len, ChunkTree, Segments, Verify, MIN_PADDED, SEGMENT};
pub use error::CryptoError;
pub use hash::{ChunkAddr, HashKey};
pub use keys::{KeyBytes, MasterKey, Purpose, VolumeKeys};
pub use seal::{Domain, SealKey, SEALED_OVERHEAD};
pub use secret_file::{read_key_file, read_passphrase_file};
pub use slots::{KdfParams, KeyHeader, KeySlot, Secret, SlotKind};

/// A fresh random 192-bit nonce, from a thread-local ChaCha12 CSPRNG seeded from (and regularly
/// reseeded by) the operating system's generator (`rand::thread_rng`): one syscall per 64 KiB
/// of nonces instead of one per sealed object. Keys and salts use [`random_bytes`].
pub(crate) fn nonce24() -> [u8; 24] {
    use rand::RngCore;
    let mut n = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut n);
    n
}

/// Fill `buf` with bytes from the operating system's CSPRNG.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::getrandom(buf).map_err(|e| CryptoError::Random(e.to_string()))
}
