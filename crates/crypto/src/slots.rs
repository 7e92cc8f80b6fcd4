//! LUKS-style key slots: the master key wrapped once per passphrase or key file.
//!
//! The key header is stored in the clear (it holds only salts, KDF parameters and wrapped keys)
//! as JSON. Adding or removing a slot rewrites only the header; data is never re-encrypted.

use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::keys::MasterKey;
use crate::seal::{Domain, SealKey};
use crate::CryptoError;

pub const HEADER_MAGIC: &str = "sealvol-key-header";
pub const HEADER_VERSION: u32 = 1;
const KEYFILE_CONTEXT: &str = "sealvol 2026-11-29 key file slot v1";

/// Secret material that opens a key slot. No `Debug`, `Clone`; zeroized on drop.
pub enum Secret {
    Passphrase(Zeroizing<Vec<u8>>),
    KeyFile(Zeroizing<[u8; 32]>),
}

impl Secret {
    fn kind_byte(&self) -> u8 {
        match self {
            Secret::Passphrase(_) => 1,
            Secret::KeyFile(_) => 2,
        }
    }
}

/// Argon2id cost parameters, stored in each passphrase slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// m = 64 MiB, t = 3, p = 1 (RFC 9106's second recommended option, at 64 MiB).
    fn default() -> Self {
        KdfParams {
            m_cost_kib: 64 * 1024,
            t_cost: 3,
            p_cost: 1,
        }
    }
}

impl KdfParams {
    /// The weakest parameters sealvol accepts: 8 MiB, t = 1. For tests and tiny machines.
    pub const MIN: KdfParams = KdfParams {
        m_cost_kib: 8 * 1024,
        t_cost: 1,
        p_cost: 1,
    };

    fn check(&self) -> Result<(), CryptoError> {
        if self.m_cost_kib < Self::MIN.m_cost_kib || self.t_cost < 1 || self.p_cost < 1 {
            return Err(CryptoError::Header(format!(
                "Argon2id parameters {self:?} are below the minimum {:?}",
                Self::MIN
            )));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum SlotKind {
    Passphrase { kdf: KdfParams },
    KeyFile,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeySlot {
    pub id: u32,
    pub kind: SlotKind,
    #[serde(with = "hex_bytes")]
    pub salt: Vec<u8>,
    /// The master key sealed under this slot's key-encryption key.
    #[serde(with = "hex_bytes")]
    pub wrapped: Vec<u8>,
    pub created_unix: u64,
}

/// The key header of a volume: its identity and its key slots.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyHeader {
    pub magic: String,
    pub version: u32,
    #[serde(with = "hex_bytes")]
    pub volume_id: Vec<u8>,
    /// Epoch of the current master key; sealed objects record the epoch they were sealed under.
    pub epoch: u32,
    pub slots: Vec<KeySlot>,
}

impl KeyHeader {
    /// A new volume: fresh volume id and master key, wrapped in one slot for `secret`.
    pub fn create(
        secret: &Secret,
        kdf: KdfParams,
        now_unix: u64,
    ) -> Result<(KeyHeader, MasterKey), CryptoError> {
        let mut volume_id = vec![0u8; 16];
        crate::random_bytes(&mut volume_id)?;
        let master = MasterKey::generate()?;
        let mut h = KeyHeader {
            magic: HEADER_MAGIC.to_string(),
            version: HEADER_VERSION,
            volume_id,
            epoch: 0,
            slots: Vec::new(),
        };
        h.add_slot(&master, secret, kdf, now_unix)?;
        Ok((h, master))
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("key header serializes")
    }

    pub fn from_json(bytes: &[u8]) -> Result<KeyHeader, CryptoError> {
        let h: KeyHeader =
            serde_json::from_slice(bytes).map_err(|e| CryptoError::Header(e.to_string()))?;
        if h.magic != HEADER_MAGIC {
            return Err(CryptoError::Header(format!("bad magic {:?}", h.magic)));
        }
        if h.version != HEADER_VERSION {
            return Err(CryptoError::Header(format!(
                "key header version {} is not supported (this sealvol knows {HEADER_VERSION})",
                h.version
            )));
        }
        if h.volume_id.len() != 16 {
            return Err(CryptoError::Header("volume id must be 16 bytes".into()));
        }
        Ok(h)
    }

    fn slot_binding(&self, slot_id: u32, kind: u8) -> Vec<u8> {
        let mut b = self.volume_id.clone();
        b.extend_from_slice(&slot_id.to_le_bytes());
        b.push(kind);
        b
    }

    /// Wrap `master` in a new slot opened by `secret`. Returns the new slot's id.
    pub fn add_slot(
        &mut self,
        master: &MasterKey,
        secret: &Secret,
        kdf: KdfParams,
        now_unix: u64,
    ) -> Result<u32, CryptoError> {
        let id = self.slots.iter().map(|s| s.id + 1).max().unwrap_or(0);
        let mut salt = vec![0u8; 32];
        crate::random_bytes(&mut salt)?;
        let kind = match secret {
            Secret::Passphrase(_) => {
                kdf.check()?;
                SlotKind::Passphrase { kdf }
            }
            Secret::KeyFile(_) => SlotKind::KeyFile,
        };
        let kek = derive_kek(secret, &kind, &salt)?;
        let wrapped = kek.seal(
            Domain::KeySlot,
            self.epoch,
            &self.slot_binding(id, secret.kind_byte()),
            master.expose(),
        )?;
        self.slots.push(KeySlot {
            id,
            kind,
            salt,
            wrapped,
            created_unix: now_unix,
        });
        Ok(id)
    }

    /// Remove a slot. The last slot cannot be removed.
    pub fn remove_slot(&mut self, id: u32) -> Result<(), CryptoError> {
        let pos = self
            .slots
            .iter()
            .position(|s| s.id == id)
            .ok_or(CryptoError::NoSuchSlot(id))?;
        if self.slots.len() == 1 {
            return Err(CryptoError::LastSlot(id));
        }
        self.slots.remove(pos);
        Ok(())
    }

    /// Try every slot of the secret's kind. Returns the master key and the slot that opened.
    pub fn unlock(&self, secret: &Secret) -> Result<(MasterKey, u32), CryptoError> {
        for slot in &self.slots {
            let matches = matches!(
                (&slot.kind, secret),
                (SlotKind::Passphrase { .. }, Secret::Passphrase(_))
                    | (SlotKind::KeyFile, Secret::KeyFile(_))
            );
            if !matches {
                continue;
            }
            let kek = derive_kek(secret, &slot.kind, &slot.salt)?;
            match kek.open(
                Domain::KeySlot,
                &self.slot_binding(slot.id, secret.kind_byte()),
                &slot.wrapped,
            ) {
                Ok(bytes) => {
                    let bytes = Zeroizing::new(bytes);
                    return Ok((MasterKey::from_bytes(&bytes)?, slot.id));
                }
                Err(CryptoError::Authentication) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(CryptoError::WrongKey)
    }
}

fn derive_kek(secret: &Secret, kind: &SlotKind, salt: &[u8]) -> Result<SealKey, CryptoError> {
    let mut out = Zeroizing::new([0u8; 32]);
    match (secret, kind) {
        (Secret::Passphrase(p), SlotKind::Passphrase { kdf }) => {
            kdf.check()?;
            let params = Params::new(kdf.m_cost_kib, kdf.t_cost, kdf.p_cost, Some(32))
                .map_err(|e| CryptoError::Kdf(e.to_string()))?;
            Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password_into(p, salt, &mut out[..])
                .map_err(|e| CryptoError::Kdf(e.to_string()))?;
        }
        (Secret::KeyFile(k), SlotKind::KeyFile) => {
            let mut h = blake3::Hasher::new_derive_key(KEYFILE_CONTEXT);
            h.update(salt);
            h.update(&k[..]);
            out.copy_from_slice(h.finalize().as_bytes());
        }
        _ => return Err(CryptoError::WrongKey),
    }
    Ok(SealKey::new(*out))
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(v.len() * 2);
        for b in v {
            out.push_str(&format!("{b:02x}"));
        }
        s.serialize_str(&out)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        if s.len() % 2 != 0 {
            return Err(serde::de::Error::custom("odd-length hex"));
        }
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(s: &str) -> Secret {
        Secret::Passphrase(Zeroizing::new(s.as_bytes().to_vec()))
    }

    #[test]
    fn passphrase_slot_round_trip_and_wrong_key() {
        let (h, mk) = KeyHeader::create(&pass("correct horse"), KdfParams::MIN, 1).unwrap();
        let (mk2, slot) = h.unlock(&pass("correct horse")).unwrap();
        assert_eq!(slot, 0);
        assert_eq!(mk.expose(), mk2.expose());
        assert!(matches!(
            h.unlock(&pass("wrong")),
            Err(CryptoError::WrongKey)
        ));
        assert!(matches!(
            h.unlock(&Secret::KeyFile(Zeroizing::new([0; 32]))),
            Err(CryptoError::WrongKey)
        ));
    }

    #[test]
    fn add_and_remove_slots_keep_the_master_key() {
        let (mut h, mk) = KeyHeader::create(&pass("one"), KdfParams::MIN, 1).unwrap();
        let kf = Secret::KeyFile(Zeroizing::new([5; 32]));
        let id = h.add_slot(&mk, &kf, KdfParams::MIN, 2).unwrap();
        assert_eq!(id, 1);
        let h = KeyHeader::from_json(&h.to_json()).unwrap();
        let (via_file, _) = h.unlock(&kf).unwrap();
        assert_eq!(via_file.expose(), mk.expose());
        let mut h = h;
        h.remove_slot(0).unwrap();
        assert!(matches!(h.unlock(&pass("one")), Err(CryptoError::WrongKey)));
        assert!(matches!(h.remove_slot(1), Err(CryptoError::LastSlot(1))));
        assert!(matches!(h.remove_slot(7), Err(CryptoError::NoSuchSlot(7))));
    }

    #[test]
    fn slot_cannot_be_moved_to_another_volume() {
        let (h1, _) = KeyHeader::create(&pass("p"), KdfParams::MIN, 1).unwrap();
        let (mut h2, _) = KeyHeader::create(&pass("p"), KdfParams::MIN, 1).unwrap();
        h2.slots = h1.slots.clone();
        assert!(matches!(h2.unlock(&pass("p")), Err(CryptoError::WrongKey)));
    }

    #[test]
    fn weak_kdf_params_are_refused() {
        let weak = KdfParams {
            m_cost_kib: 1024,
            t_cost: 1,
            p_cost: 1,
        };
        assert!(KeyHeader::create(&pass("p"), weak, 1).is_err());
    }

    #[test]
    fn default_kdf_is_at_least_64mib_t3() {
        let d = KdfParams::default();
        assert!(d.m_cost_kib >= 65536 && d.t_cost >= 3 && d.p_cost >= 1);
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn passphrase_kek_known_answer() {
        // Expected value from an independent implementation (Python argon2-cffi 23,
        // hash_secret_raw(type=ID, time_cost=1, memory_cost=8192, parallelism=1, hash_len=32)).
        let salt: Vec<u8> = (0u8..32).collect();
        let kind = SlotKind::Passphrase {
            kdf: KdfParams::MIN,
        };
        let kek = derive_kek(&pass("correct horse battery staple"), &kind, &salt).unwrap();
        assert_eq!(
            hex(kek.bytes_for_test()),
            "306a28335fb4220d5c047a055a935e74e8f08bae9bab84c151ad5e2fd17b78a2"
        );
    }

    #[test]
    fn keyfile_kek_known_answer() {
        // Expected value from Python's blake3 package: derive_key_context = our context,
        // input = salt || key file.
        let salt: Vec<u8> = (0u8..32).collect();
        let kek = derive_kek(
            &Secret::KeyFile(Zeroizing::new([0x5a; 32])),
            &SlotKind::KeyFile,
            &salt,
        )
        .unwrap();
        assert_eq!(
            hex(kek.bytes_for_test()),
            "26807916d595abde5d85082a914af34ee8c189973725f8607c56ec4e6b3cbe5e"
        );
    }

    #[test]
    fn kek_depends_on_salt() {
        let kind = SlotKind::Passphrase {
            kdf: KdfParams::MIN,
        };
        let a = derive_kek(&pass("p"), &kind, &[1; 32]).unwrap();
        let b = derive_kek(&pass("p"), &kind, &[2; 32]).unwrap();
        let s = a.seal(Domain::KeySlot, 0, b"", b"x").unwrap();
        assert!(b.open(Domain::KeySlot, b"", &s).is_err());
        let a2 = derive_kek(&pass("p"), &kind, &[1; 32]).unwrap();
        assert_eq!(a2.open(Domain::KeySlot, b"", &s).unwrap(), b"x");
    }
}
