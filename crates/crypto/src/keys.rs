//! The master key and the subkeys derived from it.

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::hash::HashKey;
use crate::seal::SealKey;
use crate::CryptoError;

/// A volume's 256-bit master key. No `Debug`, `Clone`, `Copy` or `Default`; zeroized on drop.
/// Only the key-slot code sees its bytes.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; 32]);

impl MasterKey {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut k = MasterKey([0u8; 32]);
        crate::random_bytes(&mut k.0)?;
        Ok(k)
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| CryptoError::Malformed("master key length"))?;
        Ok(MasterKey(arr))
    }

    /// The one accessor to the raw bytes, for wrapping into a slot.
    pub(crate) fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// Derive a subkey for one purpose.
    pub fn subkey(&self, purpose: Purpose) -> [u8; 32] {
        blake3::derive_key(purpose.context(), &self.0)
    }

    /// Every subkey a volume needs.
    pub fn volume_keys(&self) -> VolumeKeys {
        VolumeKeys {
            chunk_seal: SealKey::new(self.subkey(Purpose::ChunkSeal)),
            chunk_addr: HashKey::new(self.subkey(Purpose::ChunkAddress)),
            meta_seal: SealKey::new(self.subkey(Purpose::MetadataSeal)),
            record_key: HashKey::new(self.subkey(Purpose::RecordKey)),
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
    /// Reserved for the multi-host sync layer: authenticating peers and log entries.
    SyncAuth,
    /// Reserved for encrypted backup export.
    Export,
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

    #[test]
    fn purposes_have_distinct_contexts_and_keys() {
        let all = [
            Purpose::ChunkSeal,
            Purpose::ChunkAddress,
            Purpose::MetadataSeal,
            Purpose::RecordKey,
            Purpose::SyncAuth,
            Purpose::Export,
        ];
        let mk = MasterKey::from_bytes(&[7u8; 32]).unwrap();
        let mut keys: Vec<[u8; 32]> = all.iter().map(|p| mk.subkey(*p)).collect();
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
            .subkey(Purpose::ChunkSeal)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "ecf351cffa1d171c244bc3f77ccf517c151ffc9effa360602f944573af2365b7"
        );
    }
}
