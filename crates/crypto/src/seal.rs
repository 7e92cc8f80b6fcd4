//! Sealed objects: XChaCha20-Poly1305 with a random 192-bit nonce.
//!
//! Layout of a sealed object (all integers little-endian):
//!
//! ```text
//! offset  size  field
//! 0       1     format version (1)
//! 1       4     key epoch (which master key sealed it; 0 until a rotation)
//! 5       24    nonce (random)
//! 29      n     ciphertext
//! 29+n    16    Poly1305 tag
//! ```
//!
//! Associated data = domain label, version byte, epoch, then the caller's binding (volume id,
//! record identity, position). A sealed object moved to another place, another volume or
//! another domain fails to open.
//!
//! XChaCha20-Poly1305 is computed as its definition reads (draft-irtf-cfrg-xchacha): the
//! per-object subkey is HChaCha20(key, nonce[0..16]) (RustCrypto's `chacha20`), then the IETF
//! ChaCha20-Poly1305 of RFC 8439 under that subkey with the nonce 0^4 || nonce[16..24]
//! (`ring`, whose assembly runs about twice as fast as the portable Rust AEAD here). The
//! output is byte for byte XChaCha20-Poly1305; a test checks it against RustCrypto's
//! `XChaCha20Poly1305` on random inputs. Only the per-object subkey reaches `ring` (whose key
//! type is not zeroized on drop); it opens that one object and tells nothing of the key.

use chacha20::cipher::consts::U10;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use zeroize::Zeroize;

use crate::keys::KeyBytes;
use crate::CryptoError;

pub const FORMAT_VERSION: u8 = 1;
const HEADER_LEN: usize = 1 + 4 + 24;
const TAG_LEN: usize = 16;
/// Bytes a sealed object adds to its plaintext.
pub const SEALED_OVERHEAD: usize = HEADER_LEN + TAG_LEN;

/// What a sealed object is; part of its associated data, so one kind can never be opened as
/// another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    Chunk,
    Inode,
    Dirent,
    Extent,
    RefCount,
    LogEntry,
    Counters,
    Config,
    KeySlot,
    /// An entry of a replica's operation chain (multi-host replication).
    SyncEntry,
    /// A record of a replica's replicated state (tree nodes, inodes, names, versions).
    ReplicaRecord,
    /// A replica snapshot, authenticated as a whole.
    Snapshot,
    /// A chunk of file data in an export.
    ExportChunk,
    /// One entry (a file's attributes and chunk list) of an export's metadata stream.
    ExportEntry,
    /// An export's manifest.
    ExportManifest,
    /// The state a tar.age export was made from (what the next layer is made against).
    ExportState,
}

impl Domain {
    fn label(self) -> &'static [u8] {
        match self {
            Domain::Chunk => b"sealvol/chunk",
            Domain::Inode => b"sealvol/inode",
            Domain::Dirent => b"sealvol/dirent",
            Domain::Extent => b"sealvol/extent",
            Domain::RefCount => b"sealvol/refcount",
            Domain::LogEntry => b"sealvol/log",
            Domain::Counters => b"sealvol/counters",
            Domain::Config => b"sealvol/config",
            Domain::KeySlot => b"sealvol/keyslot",
            Domain::SyncEntry => b"sealvol/sync-entry",
            Domain::ReplicaRecord => b"sealvol/replica-record",
            Domain::Snapshot => b"sealvol/snapshot",
            Domain::ExportChunk => b"sealvol/export-chunk",
            Domain::ExportEntry => b"sealvol/export-entry",
            Domain::ExportManifest => b"sealvol/export-manifest",
            Domain::ExportState => b"sealvol/export-state",
        }
    }
}

/// A 256-bit sealing key. No `Debug`, `Clone`, `Copy` or `Default`; zeroized on drop (its
/// bytes are a [`KeyBytes`]).
pub struct SealKey(KeyBytes);

/// Associated data: domain label, format `version`, key epoch, the caller's binding.
pub(crate) fn aad(domain: Domain, version: u8, epoch: u32, binding: &[u8]) -> Vec<u8> {
    let label = domain.label();
    let mut v = Vec::with_capacity(label.len() + 6 + binding.len());
    v.extend_from_slice(&(label.len() as u8).to_le_bytes());
    v.extend_from_slice(label);
    v.push(version);
    v.extend_from_slice(&epoch.to_le_bytes());
    v.extend_from_slice(binding);
    v
}

impl SealKey {
    /// A key holding a copy of `bytes` (the caller's copy is the caller's to zeroize).
    pub fn new(bytes: &[u8; 32]) -> Self {
        let mut k = KeyBytes::zeroed();
        k.expose_mut().copy_from_slice(bytes);
        SealKey(k)
    }

    pub(crate) fn from_key_bytes(k: KeyBytes) -> Self {
        SealKey(k)
    }

    /// The one accessor to the key's bytes.
    pub(crate) fn expose(&self) -> &[u8; 32] {
        self.0.expose()
    }

    /// The IETF ChaCha20-Poly1305 key and nonce that make XChaCha20-Poly1305 for `nonce`.
    pub(crate) fn subkey(&self, nonce: &[u8; 24]) -> (LessSafeKey, Nonce) {
        let mut sub = chacha20::hchacha::<U10>(self.expose().into(), nonce[..16].into());
        #[allow(
            clippy::expect_used,
            reason = "ring refuses only a key of the wrong length, and HChaCha20 gives 32 bytes"
        )]
        let key = LessSafeKey::new(
            UnboundKey::new(&CHACHA20_POLY1305, sub.as_slice()).expect("a 32-byte key"),
        );
        sub.as_mut_slice().zeroize();
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&nonce[16..]);
        (key, Nonce::assume_unique_for_key(n))
    }

    /// Seal `plaintext` with a fresh random nonce.
    pub fn seal(
        &self,
        domain: Domain,
        epoch: u32,
        binding: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let nonce = crate::nonce24();
        Ok(self.seal_with_nonce(domain, epoch, binding, plaintext, nonce))
    }

    /// Sealing with a caller-chosen nonce: only for known-answer tests. Reusing a nonce under
    /// one key destroys confidentiality, so this is not public API.
    fn seal_with_nonce(
        &self,
        domain: Domain,
        epoch: u32,
        binding: &[u8],
        plaintext: &[u8],
        nonce: [u8; 24],
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(SEALED_OVERHEAD + plaintext.len());
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&epoch.to_le_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let (key, n) = self.subkey(&nonce);
        #[allow(
            clippy::expect_used,
            reason = "ring refuses only inputs over 256 GiB; sealvol seals records of at most \
                      16 MiB and chunks of at most 4 MiB"
        )]
        let tag = key
            .seal_in_place_separate_tag(
                n,
                Aad::from(aad(domain, FORMAT_VERSION, epoch, binding)),
                &mut out[HEADER_LEN..],
            )
            .expect("ChaCha20-Poly1305 accepts any length below 256 GiB");
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// Open a sealed object: check version, authenticate, decrypt. Never returns unauthenticated
    /// bytes.
    pub fn open(
        &self,
        domain: Domain,
        binding: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < SEALED_OVERHEAD {
            return Err(CryptoError::Malformed(
                "shorter than a sealed header and tag",
            ));
        }
        if sealed[0] != FORMAT_VERSION {
            return Err(CryptoError::UnknownVersion(sealed[0]));
        }
        let epoch = sealed_epoch(sealed)?;
        let mut nonce = [0u8; 24];
        nonce.copy_from_slice(&sealed[5..HEADER_LEN]);
        // Ciphertext and tag, opened in place: `open_in_place` returns the plaintext only if
        // the tag authenticates.
        let mut buf = sealed[HEADER_LEN..].to_vec();
        let (key, n) = self.subkey(&nonce);
        let len = key
            .open_in_place(
                n,
                Aad::from(aad(domain, FORMAT_VERSION, epoch, binding)),
                &mut buf,
            )
            .map_err(|_| CryptoError::Authentication)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

/// The key epoch a sealed object records (readable without the key).
pub fn sealed_epoch(sealed: &[u8]) -> Result<u32, CryptoError> {
    let b: [u8; 4] = sealed
        .get(1..5)
        .and_then(|s| s.try_into().ok())
        .ok_or(CryptoError::Malformed("no epoch"))?;
    Ok(u32::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chacha20poly1305::aead::{AeadInPlace, KeyInit};
    use chacha20poly1305::{XChaCha20Poly1305, XNonce};
    use proptest::prelude::*;

    proptest! {
        /// Ours is XChaCha20-Poly1305: the same bytes as RustCrypto's implementation, for any
        /// key, nonce, associated data and length (including empty and multi-block).
        #[test]
        fn matches_the_reference_xchacha20poly1305(
            key in any::<[u8; 32]>(),
            nonce in any::<[u8; 24]>(),
            binding in proptest::collection::vec(any::<u8>(), 0..40),
            plain in proptest::collection::vec(any::<u8>(), 0..3000),
        ) {
            let ours = SealKey::new(&key).seal_with_nonce(Domain::Chunk, 7, &binding, &plain, nonce);
            let mut buf = plain.clone();
            let tag = XChaCha20Poly1305::new((&key).into())
                .encrypt_in_place_detached(
                    XNonce::from_slice(&nonce),
                    &aad(Domain::Chunk, FORMAT_VERSION, 7, &binding),
                    &mut buf,
                )
                .unwrap();
            prop_assert_eq!(&ours[HEADER_LEN..HEADER_LEN + plain.len()], &buf[..]);
            prop_assert_eq!(&ours[HEADER_LEN + plain.len()..], tag.as_slice());
            prop_assert_eq!(SealKey::new(&key).open(Domain::Chunk, &binding, &ours).unwrap(), plain);
        }
    }

    #[test]
    fn known_answer() {
        // Pins the layout and the associated data: a change here is a format change.
        let k = SealKey::new(&[0x42; 32]);
        let sealed = k.seal_with_nonce(Domain::Chunk, 0, b"bind", b"plaintext", [9u8; 24]);
        assert_eq!(sealed.len(), 9 + SEALED_OVERHEAD);
        assert_eq!(&sealed[..5], &[1, 0, 0, 0, 0]);
        assert_eq!(&sealed[5..29], &[9u8; 24]);
        // The same construction by hand, through the raw AEAD.
        let c = XChaCha20Poly1305::new((&[0x42u8; 32]).into());
        let mut ad = vec![13u8];
        ad.extend_from_slice(b"sealvol/chunk");
        ad.push(1);
        ad.extend_from_slice(&0u32.to_le_bytes());
        ad.extend_from_slice(b"bind");
        let mut buf = b"plaintext".to_vec();
        let tag = c
            .encrypt_in_place_detached(XNonce::from_slice(&[9u8; 24]), &ad, &mut buf)
            .unwrap();
        assert_eq!(&sealed[29..38], &buf[..]);
        assert_eq!(&sealed[38..], tag.as_slice());
        assert_eq!(
            k.open(Domain::Chunk, b"bind", &sealed).unwrap(),
            b"plaintext"
        );
    }

    #[test]
    fn wrong_binding_domain_or_key_fails() {
        let k = SealKey::new(&[1; 32]);
        let s = k.seal(Domain::Inode, 0, b"ino=5", b"data").unwrap();
        assert!(matches!(
            k.open(Domain::Inode, b"ino=6", &s),
            Err(CryptoError::Authentication)
        ));
        assert!(matches!(
            k.open(Domain::Dirent, b"ino=5", &s),
            Err(CryptoError::Authentication)
        ));
        let k2 = SealKey::new(&[2; 32]);
        assert!(matches!(
            k2.open(Domain::Inode, b"ino=5", &s),
            Err(CryptoError::Authentication)
        ));
    }

    #[test]
    fn nonces_are_fresh() {
        let k = SealKey::new(&[1; 32]);
        let a = k.seal(Domain::Chunk, 0, b"", b"same").unwrap();
        let b = k.seal(Domain::Chunk, 0, b"", b"same").unwrap();
        assert_ne!(a[5..29], b[5..29]);
    }

    #[test]
    fn truncated_and_unknown_version_fail() {
        let k = SealKey::new(&[1; 32]);
        let mut s = k.seal(Domain::Chunk, 0, b"", b"x").unwrap();
        assert!(k.open(Domain::Chunk, b"", &s[..20]).is_err());
        s[0] = 9;
        assert!(matches!(
            k.open(Domain::Chunk, b"", &s),
            Err(CryptoError::UnknownVersion(9))
        ));
    }
}
