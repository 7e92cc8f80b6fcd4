//! The master key, the subkeys derived from it, and the one container every key lives in.

use sealvol_sys::LockedKey;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::hash::HashKey;
use crate::seal::SealKey;
use crate::CryptoError;

/// 32 bytes of key material, in a page locked into RAM and left out of core dumps
/// ([`sealvol_sys::LockedKey`]): never in swap, wherever the rest of the process's memory goes.
/// Moving a key (or a type holding one) moves a pointer, never the bytes, so no stray copy is
/// left behind on the stack. Every key type of this crate and a key file's contents live in one.
/// No `Debug`, `Clone`, `Copy` or `Default`; zeroized on drop; read through [`KeyBytes::expose`]
/// only.
pub struct KeyBytes(LockedKey);

impl KeyBytes {
    /// All zeros, to be filled in place (see [`KeyBytes::expose_mut`]).
    pub(crate) fn zeroed() -> Self {
        KeyBytes(LockedKey::zeroed())
    }

    /// A copy of `bytes`, which must be 32 long. The caller keeps (and should zeroize) its own.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 32 {
            return None;
        }
        let mut k = Self::zeroed();
        k.expose_mut().copy_from_slice(bytes);
        Some(k)
    }

    /// The one accessor to the bytes.
    pub fn expose(&self) -> &[u8; 32] {
        self.0.expose()
    }

    /// Where the bytes are written when a key is made: derivations write here directly, so
    /// the key never exists outside this buffer.
    pub(crate) fn expose_mut(&mut self) -> &mut [u8; 32] {
        self.0.expose_mut()
    }

    /// Whether the bytes are locked into RAM (false only where the process may not lock memory;
    /// a warning said so once).
    pub fn is_locked(&self) -> bool {
        self.0.is_locked()
    }
}

/// [`LockedKey`] zeroizes its slot when dropped.
impl ZeroizeOnDrop for KeyBytes {}

/// A volume's 256-bit master key. No `Debug`, `Clone`, `Copy` or `Default`; zeroized on drop.
/// Only the key-slot code sees its bytes.
pub struct MasterKey(KeyBytes);

impl MasterKey {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut k = KeyBytes::zeroed();
        crate::random_bytes(k.expose_mut())?;
        Ok(MasterKey(k))
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        KeyBytes::from_slice(bytes)
            .map(MasterKey)
            .ok_or(CryptoError::Malformed("master key length"))
    }

    /// The one accessor to the raw bytes, for wrapping into a slot.
    pub(crate) fn expose(&self) -> &[u8; 32] {
        self.0.expose()
    }

    /// Derive the subkey for `purpose` into `out`: `blake3::derive_key(context, master)`,
    /// written straight into the new key's buffer; the hasher and its output reader, which
    /// hold the master key's bytes in their block buffers, are zeroized.
    fn derive(&self, purpose: Purpose, out: &mut KeyBytes) {
        let mut h = blake3::Hasher::new_derive_key(purpose.context());
        h.update(self.expose());
        let mut reader = h.finalize_xof();
        reader.fill(out.expose_mut());
        reader.zeroize();
        h.zeroize();
    }

    /// The sealing subkey for `purpose`.
    pub fn seal_key(&self, purpose: Purpose) -> SealKey {
        let mut k = KeyBytes::zeroed();
        self.derive(purpose, &mut k);
        SealKey::from_key_bytes(k)
    }

    /// The keyed-hash subkey for `purpose`.
    pub fn hash_key(&self, purpose: Purpose) -> HashKey {
        let mut k = KeyBytes::zeroed();
        self.derive(purpose, &mut k);
        HashKey::from_key_bytes(k)
    }

    /// Every subkey a volume needs.
    pub fn volume_keys(&self) -> VolumeKeys {
        VolumeKeys {
            chunk_seal: self.seal_key(Purpose::ChunkSeal),
            chunk_addr: self.hash_key(Purpose::ChunkAddress),
            meta_seal: self.seal_key(Purpose::MetadataSeal),
            record_key: self.hash_key(Purpose::RecordKey),
        }
    }
}

/// What a subkey is for. Each purpose has its own, fixed BLAKE3 context string: changing one
/// changes every key derived for it, so they are part of the on-disk format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Sealing chunk contents.
    ChunkSeal,
    /// Keyed hash that names a chunk (its address).
    ChunkAddress,
    /// Sealing metadata records (inodes, directory entries, extents, log entries, counters).
    MetadataSeal,
    /// Keyed hash that turns metadata identities (inode numbers, names) into store keys.
    RecordKey,
    /// The multi-host sync layer: sealing (and so authenticating) its entries and snapshots.
    SyncAuth,
    /// Encrypted backup export: sealing an export chain's objects, metadata and manifests
    /// (derived from the chain's own data key, not the volume's master key).
    Export,
    /// Keyed hash of the multi-host sync layer: entry hashes (chains) and replica record keys.
    SyncHash,
    /// Encrypted backup export: the keyed hash that names an export chain's chunk objects.
    ExportAddress,
    /// Encrypted backup export: derived from a volume's master key, the secret of the key slot
    /// through which the volume's key opens an export chain's data key.
    ExportSlot,
}

impl Purpose {
    pub fn context(self) -> &'static str {
        match self {
            Purpose::ChunkSeal => "sealvol 2026-11-29 chunk seal v1",
            Purpose::ChunkAddress => "sealvol 2026-11-29 chunk address v1",
            Purpose::MetadataSeal => "sealvol 2026-11-29 metadata seal v1",
            Purpose::RecordKey => "sealvol 2026-11-29 record key v1",
            Purpose::SyncAuth => "sealvol 2026-11-29 sync auth v1",
            Purpose::Export => "sealvol 2026-11-29 export v1",
            Purpose::SyncHash => "sealvol 2026-12-02 sync hash v1",
            Purpose::ExportAddress => "sealvol 2026-12-02 export address v1",
            Purpose::ExportSlot => "sealvol 2026-12-02 export slot v1",
        }
    }
}

/// The subkeys of one unlocked volume.
pub struct VolumeKeys {
    pub chunk_seal: SealKey,
    pub chunk_addr: HashKey,
    pub meta_seal: SealKey,
    pub record_key: HashKey,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compiles only if `$t` does not implement `$tr` (the `static_assertions` trick: with an
    /// implementation, `Ambiguous<_>` has two candidates and inference fails).
    macro_rules! assert_not_impl {
        ($t:ty: $($tr:path),+) => {$({
            trait Ambiguous<A> {
                fn some() {}
            }
            impl<T: ?Sized> Ambiguous<()> for T {}
            #[allow(dead_code)]
            struct Invalid;
            impl<T: ?Sized + $tr> Ambiguous<Invalid> for T {}
            let _ = <$t as Ambiguous<_>>::some;
        })+};
    }

    #[test]
    fn key_types_cannot_be_copied_printed_or_defaulted_and_zeroize_on_drop() {
        use crate::{HashKey, SealKey, Secret};
        assert_not_impl!(KeyBytes: Clone, Copy, Default, std::fmt::Debug);
        assert_not_impl!(MasterKey: Clone, Copy, Default, std::fmt::Debug);
        assert_not_impl!(SealKey: Clone, Copy, Default, std::fmt::Debug);
        assert_not_impl!(HashKey: Clone, Copy, Default, std::fmt::Debug);
        assert_not_impl!(VolumeKeys: Clone, Copy, Default, std::fmt::Debug);
        assert_not_impl!(Secret: Clone, Copy, Default, std::fmt::Debug);
        fn zeroizes_on_drop<T: ZeroizeOnDrop>() {}
        zeroizes_on_drop::<KeyBytes>();
        assert!(KeyBytes::from_slice(&[1; 31]).is_none());
        assert!(KeyBytes::from_slice(&[1; 33]).is_none());
        assert_eq!(KeyBytes::from_slice(&[1; 32]).unwrap().expose(), &[1; 32]);
    }

    #[test]
    fn moving_a_key_moves_no_key_bytes() {
        // The bytes stay where they were made, whatever moves the key: returning it from a
        // function, boxing it, putting it in a struct or a Vec. (With the bytes inline, each move
        // was a memcpy that left an unzeroized copy behind.)
        let mk = MasterKey::generate().unwrap();
        let at = mk.expose().as_ptr();
        let moved = vec![Some(mk)];
        let mk = moved.into_iter().next().flatten().unwrap();
        assert_eq!(mk.expose().as_ptr(), at);

        let keys = mk.volume_keys();
        let seal_at = keys.chunk_seal.expose().as_ptr();
        let hash_at = keys.record_key.expose().as_ptr();
        let boxed = Box::new(keys);
        assert_eq!(boxed.chunk_seal.expose().as_ptr(), seal_at);
        assert_eq!(boxed.record_key.expose().as_ptr(), hash_at);

        let secret = crate::Secret::key_file(&[9; 32]);
        let crate::Secret::KeyFile(k) = &secret else {
            panic!("not a key file")
        };
        let secret_at = k.expose().as_ptr();
        let moved = Box::new(secret);
        match &*moved {
            crate::Secret::KeyFile(k) => assert_eq!(k.expose().as_ptr(), secret_at),
            crate::Secret::Passphrase(_) => panic!("kind changed"),
        }
    }

    #[test]
    fn purposes_have_distinct_contexts_and_keys() {
        let all = [
            Purpose::ChunkSeal,
            Purpose::ChunkAddress,
            Purpose::MetadataSeal,
            Purpose::RecordKey,
            Purpose::SyncAuth,
            Purpose::Export,
            Purpose::SyncHash,
            Purpose::ExportAddress,
            Purpose::ExportSlot,
        ];
        let mk = MasterKey::from_bytes(&[7u8; 32]).unwrap();
        let mut keys: Vec<[u8; 32]> = all.iter().map(|p| *mk.seal_key(*p).expose()).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), all.len());
    }

    #[test]
    fn subkey_known_answer() {
        // Expected value from Python's blake3 package (derive_key_context = the chunk-seal
        // context, key material = bytes 0..32): pins the context strings, part of the format.
        let mk = MasterKey::from_bytes(&(0u8..32).collect::<Vec<u8>>()).unwrap();
        let hex: String = mk
            .seal_key(Purpose::ChunkSeal)
            .expose()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "ecf351cffa1d171c244bc3f77ccf517c151ffc9effa360602f944573af2365b7"
        );
        // The hash subkey of a purpose is the same derivation.
        assert_eq!(
            mk.hash_key(Purpose::ChunkSeal).expose(),
            mk.seal_key(Purpose::ChunkSeal).expose()
        );
        assert_eq!(
            *mk.seal_key(Purpose::Export).expose(),
            blake3::derive_key(Purpose::Export.context(), mk.expose())
        );
    }
}
