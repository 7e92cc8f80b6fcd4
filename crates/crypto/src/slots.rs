//! LUKS-style key slots: the master key wrapped once per passphrase or key file.
//!
//! The key header is stored in the clear (it holds only salts, KDF parameters and wrapped keys)
//! as JSON. Adding or removing a slot rewrites only the header; data is never re-encrypted.

use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::keys::{KeyBytes, MasterKey};
use crate::seal::{Domain, SealKey};
use crate::CryptoError;

pub const HEADER_MAGIC: &str = "sealvol-key-header";
pub const HEADER_VERSION: u32 = 1;
const KEYFILE_CONTEXT: &str = "sealvol 2026-11-29 key file slot v1";

/// The largest key header sealvol reads. A header with [`MAX_SLOTS`] slots is about 12 KiB of
/// pretty-printed JSON; anything larger is not one of ours.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// The most key slots a volume holds (LUKS2 has 32 as well).
pub const MAX_SLOTS: usize = 32;
/// Bytes of a volume id.
pub const VOLUME_ID_LEN: usize = 16;
/// Bytes of a slot's salt.
pub const SALT_LEN: usize = 32;
/// Bytes of a wrapped master key: the 32-byte key sealed (header and tag).
pub const WRAPPED_LEN: usize = 32 + crate::seal::SEALED_OVERHEAD;
/// The longest hex-encoded byte field the decoder accepts (in bytes, before the exact checks).
const MAX_HEX_FIELD: usize = 256;
/// What to do about a header that fails its checks.
const TAMPERED: &str = "the key header (keys.json) looks tampered with or damaged; restore it from a backup (never edit it by hand)";

/// Secret material that opens a key slot. No `Debug`, `Clone`; zeroized on drop. A key file's
/// bytes are a [`KeyBytes`] (on the heap, so moving a `Secret` copies no key bytes); a
/// passphrase is a zeroized `Vec`.
pub enum Secret {
    Passphrase(Zeroizing<Vec<u8>>),
    KeyFile(KeyBytes),
}

impl Secret {
    /// A key-file secret holding a copy of `bytes`.
    pub fn key_file(bytes: &[u8; 32]) -> Secret {
        let mut k = KeyBytes::zeroed();
        k.expose_mut().copy_from_slice(bytes);
        Secret::KeyFile(k)
    }

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

    /// The costliest parameters sealvol accepts: 4 GiB, t = 64, p = 16. A header asking for more
    /// is refused before Argon2id runs, so a tampered header cannot make unlock allocate
    /// terabytes or spin for days. (Argon2's own rule m >= 8 p holds for every accepted pair:
    /// 8 MiB >= 8 KiB x 16.)
    pub const MAX: KdfParams = KdfParams {
        m_cost_kib: 4 * 1024 * 1024,
        t_cost: 64,
        p_cost: 16,
    };

    /// Check every parameter against [`KdfParams::MIN`]..=[`KdfParams::MAX`].
    pub fn check(&self, origin: KdfOrigin) -> Result<(), CryptoError> {
        let fields = [
            (
                "memory (m_cost_kib)",
                self.m_cost_kib,
                Self::MIN.m_cost_kib,
                Self::MAX.m_cost_kib,
                " KiB",
            ),
            (
                "iterations (t_cost)",
                self.t_cost,
                Self::MIN.t_cost,
                Self::MAX.t_cost,
                "",
            ),
            (
                "parallelism (p_cost)",
                self.p_cost,
                Self::MIN.p_cost,
                Self::MAX.p_cost,
                "",
            ),
        ];
        for (field, value, min, max, unit) in fields {
            if !(min..=max).contains(&value) {
                let (origin, advice) = match origin {
                    KdfOrigin::New => (
                        "the requested key slot".to_string(),
                        "choose a value within the range",
                    ),
                    KdfOrigin::Slot(id) => (format!("key slot {id} of the key header"), TAMPERED),
                };
                return Err(CryptoError::KdfOutOfRange {
                    origin,
                    field,
                    value,
                    min,
                    max,
                    unit,
                    advice,
                });
            }
        }
        Ok(())
    }
}

/// Where Argon2id parameters come from, for the error that refuses them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KdfOrigin {
    /// Chosen for a new slot (command-line options).
    New,
    /// Read from slot `id` of a key header on disk.
    Slot(u32),
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
    #[serde(deserialize_with = "bounded_slots")]
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
        #[allow(
            clippy::expect_used,
            reason = "strings, numbers and byte fields as hex: nothing serde_json can refuse"
        )]
        serde_json::to_vec_pretty(self).expect("key header serializes")
    }

    /// Decode and check a key header. Bounded: input over [`MAX_HEADER_BYTES`], more than
    /// [`MAX_SLOTS`] slots, a field of the wrong length or Argon2id parameters outside
    /// [`KdfParams::MIN`]..=[`KdfParams::MAX`] are errors, found before anything large is
    /// allocated or any KDF runs.
    pub fn from_json(bytes: &[u8]) -> Result<KeyHeader, CryptoError> {
        if bytes.len() > MAX_HEADER_BYTES {
            return Err(CryptoError::Header(format!(
                "it is {} bytes, larger than any sealvol key header ({MAX_HEADER_BYTES} bytes at most); {TAMPERED}",
                bytes.len()
            )));
        }
        let h: KeyHeader = serde_json::from_slice(bytes)
            .map_err(|e| CryptoError::Header(format!("{e}; {TAMPERED}")))?;
        h.validate()?;
        Ok(h)
    }

    /// The structural checks of a decoded header (see [`KeyHeader::from_json`]).
    fn validate(&self) -> Result<(), CryptoError> {
        let bad = |what: String| Err(CryptoError::Header(format!("{what}; {TAMPERED}")));
        if self.magic != HEADER_MAGIC {
            // At most 32 characters of it: the message must not echo a huge field.
            let start: String = self.magic.chars().take(32).collect();
            return bad(format!("bad magic {start:?}"));
        }
        if self.version != HEADER_VERSION {
            return Err(CryptoError::Header(format!(
                "key header version {} is not supported (this sealvol knows {HEADER_VERSION})",
                self.version
            )));
        }
        if self.volume_id.len() != VOLUME_ID_LEN {
            return bad(format!(
                "volume id is {} bytes, not {VOLUME_ID_LEN}",
                self.volume_id.len()
            ));
        }
        if self.slots.is_empty() {
            return bad("it has no key slot".to_string());
        }
        if self.slots.len() > MAX_SLOTS {
            return bad(format!(
                "it has {} key slots, more than the {MAX_SLOTS} a volume can hold",
                self.slots.len()
            ));
        }
        for (i, slot) in self.slots.iter().enumerate() {
            if self.slots[..i].iter().any(|s| s.id == slot.id) {
                return bad(format!("key slot id {} appears twice", slot.id));
            }
            if slot.salt.len() != SALT_LEN {
                return bad(format!(
                    "key slot {} has a {}-byte salt, not {SALT_LEN}",
                    slot.id,
                    slot.salt.len()
                ));
            }
            if slot.wrapped.len() != WRAPPED_LEN {
                return bad(format!(
                    "key slot {} has a {}-byte wrapped key, not {WRAPPED_LEN}",
                    slot.id,
                    slot.wrapped.len()
                ));
            }
            if let SlotKind::Passphrase { kdf } = &slot.kind {
                kdf.check(KdfOrigin::Slot(slot.id))?;
            }
        }
        Ok(())
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
        if self.slots.len() >= MAX_SLOTS {
            return Err(CryptoError::TooManySlots { max: MAX_SLOTS });
        }
        let id = match self.slots.iter().map(|s| s.id).max() {
            None => 0,
            Some(top) => top.checked_add(1).ok_or_else(|| {
                CryptoError::Header(format!("slot id {top} is the largest there is; {TAMPERED}"))
            })?,
        };
        let mut salt = vec![0u8; SALT_LEN];
        crate::random_bytes(&mut salt)?;
        let kind = match secret {
            Secret::Passphrase(_) => {
                kdf.check(KdfOrigin::New)?;
                SlotKind::Passphrase { kdf }
            }
            Secret::KeyFile(_) => SlotKind::KeyFile,
        };
        let kek = derive_kek(secret, id, &kind, &salt)?;
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
            let kek = derive_kek(secret, slot.id, &slot.kind, &slot.salt)?;
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

/// The key-encryption key of slot `slot_id`. Argon2id parameters are checked against their
/// bounds first, whoever built the header.
fn derive_kek(
    secret: &Secret,
    slot_id: u32,
    kind: &SlotKind,
    salt: &[u8],
) -> Result<SealKey, CryptoError> {
    // The KEK is written straight into the key's own buffer: no other copy of it exists.
    let mut out = KeyBytes::zeroed();
    match (secret, kind) {
        (Secret::Passphrase(p), SlotKind::Passphrase { kdf }) => {
            kdf.check(KdfOrigin::Slot(slot_id))?;
            let params = Params::new(kdf.m_cost_kib, kdf.t_cost, kdf.p_cost, Some(32))
                .map_err(|e| CryptoError::Kdf(e.to_string()))?;
            Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password_into(p, salt, out.expose_mut())
                .map_err(|e| CryptoError::Kdf(e.to_string()))?;
        }
        (Secret::KeyFile(k), SlotKind::KeyFile) => {
            let mut h = blake3::Hasher::new_derive_key(KEYFILE_CONTEXT);
            h.update(salt);
            h.update(k.expose());
            let mut reader = h.finalize_xof();
            reader.fill(out.expose_mut());
            // Both hold the key file's bytes in their block buffers.
            reader.zeroize();
            h.zeroize();
        }
        _ => return Err(CryptoError::WrongKey),
    }
    Ok(SealKey::from_key_bytes(out))
}

/// Read a key header file (`keys.json`) without trusting its size: at most
/// [`MAX_HEADER_BYTES`] are read, and a larger file is an `InvalidData` error. A drop-in for
/// `std::fs::read` before [`KeyHeader::from_json`].
pub fn read_header_bytes(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_HEADER_BYTES as u64 + 1)
        .read_to_end(&mut out)?;
    if out.len() > MAX_HEADER_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} is larger than any sealvol key header ({MAX_HEADER_BYTES} bytes at most); {TAMPERED}",
                path.display()
            ),
        ));
    }
    Ok(out)
}

/// The slot list of a header, refused as soon as it grows past [`MAX_SLOTS`] (so a header of
/// many tiny slots is not decoded whole before being counted).
fn bounded_slots<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<KeySlot>, D::Error> {
    struct Slots;
    impl<'de> serde::de::Visitor<'de> for Slots {
        type Value = Vec<KeySlot>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "a list of at most {MAX_SLOTS} key slots")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut slots = Vec::new();
            while let Some(slot) = seq.next_element::<KeySlot>()? {
                if slots.len() == MAX_SLOTS {
                    return Err(serde::de::Error::custom(format!(
                        "more than {MAX_SLOTS} key slots"
                    )));
                }
                slots.push(slot);
            }
            Ok(slots)
        }
    }
    d.deserialize_seq(Slots)
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::MAX_HEX_FIELD;

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(v.len() * 2);
        for b in v {
            out.push_str(&format!("{b:02x}"));
        }
        s.serialize_str(&out)
    }

    /// Lower- or upper-case hex of at most [`MAX_HEX_FIELD`] bytes. Works on the string's bytes,
    /// so a non-ASCII character is an error, never a slice through a character (a panic).
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        use serde::de::Error;
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let s = s.as_bytes();
        if s.len() > 2 * MAX_HEX_FIELD {
            return Err(D::Error::custom(format!(
                "hex field of {} characters; at most {} expected",
                s.len(),
                2 * MAX_HEX_FIELD
            )));
        }
        if s.len() % 2 != 0 {
            return Err(D::Error::custom("odd-length hex"));
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(D::Error::custom("not a hex digit")),
        };
        s.chunks_exact(2)
            .map(|pair| Ok(nibble(pair[0])? << 4 | nibble(pair[1])?))
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
            h.unlock(&Secret::key_file(&[0; 32])),
            Err(CryptoError::WrongKey)
        ));
    }

    #[test]
    fn add_and_remove_slots_keep_the_master_key() {
        let (mut h, mk) = KeyHeader::create(&pass("one"), KdfParams::MIN, 1).unwrap();
        let kf = Secret::key_file(&[5; 32]);
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
        let err = KeyHeader::create(&pass("p"), weak, 1).err().unwrap();
        assert!(
            matches!(err, CryptoError::KdfOutOfRange { value: 1024, .. }),
            "{err}"
        );
    }

    /// A valid two-slot header (passphrase "p" in slot 0, key file [5; 32] in slot 1) as JSON.
    fn header_json() -> serde_json::Value {
        let (mut h, mk) = KeyHeader::create(&pass("p"), KdfParams::MIN, 1).unwrap();
        h.add_slot(&mk, &Secret::key_file(&[5; 32]), KdfParams::MIN, 2)
            .unwrap();
        serde_json::from_slice(&h.to_json()).unwrap()
    }

    fn decode(v: &serde_json::Value) -> Result<KeyHeader, CryptoError> {
        KeyHeader::from_json(&serde_json::to_vec(v).unwrap())
    }

    #[test]
    fn out_of_range_kdf_params_in_the_header_are_refused_naming_field_value_and_range() {
        let cases: [(&str, u64, &str, &str); 6] = [
            // 4 TiB: what a tampered header asked for before the bound.
            (
                "m_cost_kib",
                4 << 30,
                "memory (m_cost_kib) = 4294967296",
                "8192..=4194304 KiB",
            ),
            (
                "m_cost_kib",
                4 * 1024 * 1024 + 1,
                "memory (m_cost_kib) = 4194305",
                "8192..=4194304 KiB",
            ),
            (
                "m_cost_kib",
                8191,
                "memory (m_cost_kib) = 8191",
                "8192..=4194304 KiB",
            ),
            ("t_cost", 65, "iterations (t_cost) = 65", "1..=64"),
            ("t_cost", 0, "iterations (t_cost) = 0", "1..=64"),
            ("p_cost", 17, "parallelism (p_cost) = 17", "1..=16"),
        ];
        for (field, value, names, range) in cases {
            let mut v = header_json();
            v["slots"][0]["kind"]["kdf"][field] = value.into();
            let started = std::time::Instant::now();
            let err = decode(&v)
                .err()
                .unwrap_or_else(|| panic!("{field} = {value} accepted"));
            assert!(started.elapsed() < std::time::Duration::from_secs(1));
            let msg = err.to_string();
            if value > u64::from(u32::MAX) {
                // Does not even fit the field: serde refuses it, still as a damaged header.
                assert!(matches!(err, CryptoError::Header(_)), "{msg}");
                assert!(msg.contains("tampered"), "{msg}");
                continue;
            }
            assert!(matches!(err, CryptoError::KdfOutOfRange { .. }), "{msg}");
            for part in [names, range, "key slot 0", "tampered"] {
                assert!(msg.contains(part), "{msg:?} lacks {part:?}");
            }
        }
        // The bounds themselves are accepted.
        let mut v = header_json();
        v["slots"][0]["kind"]["kdf"] =
            serde_json::json!({"m_cost_kib": 4194304, "t_cost": 64, "p_cost": 16});
        assert!(decode(&v).is_ok());
    }

    #[test]
    fn unlock_refuses_out_of_range_params_before_running_argon2() {
        // A header built in memory (not through from_json) with a 4 GiB + 1 KiB, 2^32-1 pass
        // slot: unlock must refuse it at once rather than try to allocate it.
        let (mut h, _) = KeyHeader::create(&pass("p"), KdfParams::MIN, 1).unwrap();
        h.slots[0].kind = SlotKind::Passphrase {
            kdf: KdfParams {
                m_cost_kib: u32::MAX,
                t_cost: u32::MAX,
                p_cost: 1,
            },
        };
        let started = std::time::Instant::now();
        let err = h.unlock(&pass("p")).err().unwrap();
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let msg = err.to_string();
        assert!(
            msg.contains("memory (m_cost_kib) = 4294967295 KiB"),
            "{msg}"
        );
        assert!(msg.contains("tampered"), "{msg}");
    }

    #[test]
    fn new_slots_with_out_of_range_params_say_to_choose_another_value() {
        let huge = KdfParams {
            m_cost_kib: 5 * 1024 * 1024,
            ..KdfParams::default()
        };
        let msg = KeyHeader::create(&pass("p"), huge, 1)
            .err()
            .unwrap()
            .to_string();
        assert!(msg.contains("the requested key slot"), "{msg}");
        assert!(msg.contains("choose a value"), "{msg}");
        assert!(!msg.contains("tampered"), "{msg}");
    }

    #[test]
    fn malformed_headers_are_errors_that_say_tampered() {
        let hex_of = |n: usize| serde_json::Value::from("ab".repeat(n));
        let mut cases: Vec<(&str, serde_json::Value)> = Vec::new();
        let mut v = header_json();
        v["slots"][0]["salt"] = hex_of(31);
        cases.push(("31-byte salt", v));
        let mut v = header_json();
        v["slots"][1]["wrapped"] = hex_of(WRAPPED_LEN + 1);
        cases.push(("78-byte wrapped key", v));
        let mut v = header_json();
        v["slots"][1]["salt"] = hex_of(MAX_HEX_FIELD + 1);
        cases.push(("over-long hex field", v));
        let mut v = header_json();
        v["volume_id"] = hex_of(15);
        cases.push(("15-byte volume id", v));
        let mut v = header_json();
        v["slots"][1]["id"] = 0.into();
        cases.push(("duplicate slot id", v));
        let mut v = header_json();
        v["slots"] = serde_json::json!([]);
        cases.push(("no slot", v));
        let mut v = header_json();
        let one = v["slots"][0].clone();
        v["slots"] = (0..=MAX_SLOTS as u32)
            .map(|i| {
                let mut s = one.clone();
                s["id"] = i.into();
                s
            })
            .collect::<Vec<_>>()
            .into();
        cases.push(("33 slots", v));
        // Non-ASCII where hex is expected: slicing the string by byte pairs would cut
        // through 'é' and panic.
        let mut v = header_json();
        v["slots"][0]["salt"] = "a\u{e9}0".into();
        cases.push(("non-ASCII salt", v));
        let mut v = header_json();
        v["volume_id"] = format!("a\u{e9}{}", "0".repeat(29)).into();
        cases.push(("non-ASCII volume id", v));
        for (what, v) in cases {
            let err = decode(&v)
                .err()
                .unwrap_or_else(|| panic!("{what} accepted"));
            let msg = err.to_string();
            assert!(matches!(err, CryptoError::Header(_)), "{what}: {msg}");
            assert!(msg.contains("tampered"), "{what}: {msg}");
        }
    }

    #[test]
    fn oversized_headers_are_refused_before_decoding() {
        let mut v = header_json();
        v["magic"] = "x".repeat(MAX_HEADER_BYTES).into();
        let err = decode(&v).err().unwrap();
        assert!(
            err.to_string()
                .contains("larger than any sealvol key header"),
            "{err}"
        );
        // Reading: a 1 GiB (sparse) keys.json is refused after reading 64 KiB + 1 byte.
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("keys.json");
        std::fs::File::create(&p).unwrap().set_len(1 << 30).unwrap();
        let err = read_header_bytes(&p).err().unwrap();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("keys.json"), "{err}");
        let good = header_json();
        std::fs::write(&p, serde_json::to_vec(&good).unwrap()).unwrap();
        let h = KeyHeader::from_json(&read_header_bytes(&p).unwrap()).unwrap();
        assert_eq!(h.slots.len(), 2);
    }

    #[test]
    fn slot_count_and_ids_are_bounded_when_adding() {
        let (mut h, mk) = KeyHeader::create(&pass("p"), KdfParams::MIN, 1).unwrap();
        let kf = Secret::key_file(&[5; 32]);
        while h.slots.len() < MAX_SLOTS {
            h.add_slot(&mk, &kf, KdfParams::MIN, 2).unwrap();
        }
        let err = h.add_slot(&mk, &kf, KdfParams::MIN, 2).err().unwrap();
        assert!(
            matches!(err, CryptoError::TooManySlots { max: MAX_SLOTS }),
            "{err}"
        );
        assert!(err.to_string().contains("sealvol key remove"), "{err}");
        // A slot id at u32::MAX: the next id does not exist; an error, not an overflow panic.
        let (mut h, mk) = KeyHeader::create(&pass("p"), KdfParams::MIN, 1).unwrap();
        h.slots[0].id = u32::MAX;
        let err = h.add_slot(&mk, &kf, KdfParams::MIN, 2).err().unwrap();
        assert!(err.to_string().contains("largest"), "{err}");
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
        let kek = derive_kek(&pass("correct horse battery staple"), 0, &kind, &salt).unwrap();
        assert_eq!(
            hex(kek.expose()),
            "306a28335fb4220d5c047a055a935e74e8f08bae9bab84c151ad5e2fd17b78a2"
        );
    }

    #[test]
    fn keyfile_kek_known_answer() {
        // Expected value from Python's blake3 package: derive_key_context = our context,
        // input = salt || key file.
        let salt: Vec<u8> = (0u8..32).collect();
        let kek = derive_kek(&Secret::key_file(&[0x5a; 32]), 0, &SlotKind::KeyFile, &salt).unwrap();
        assert_eq!(
            hex(kek.expose()),
            "26807916d595abde5d85082a914af34ee8c189973725f8607c56ec4e6b3cbe5e"
        );
    }

    #[test]
    fn kek_depends_on_salt() {
        let kind = SlotKind::Passphrase {
            kdf: KdfParams::MIN,
        };
        let a = derive_kek(&pass("p"), 0, &kind, &[1; 32]).unwrap();
        let b = derive_kek(&pass("p"), 0, &kind, &[2; 32]).unwrap();
        let s = a.seal(Domain::KeySlot, 0, b"", b"x").unwrap();
        assert!(b.open(Domain::KeySlot, b"", &s).is_err());
        let a2 = derive_kek(&pass("p"), 0, &kind, &[1; 32]).unwrap();
        assert_eq!(a2.open(Domain::KeySlot, b"", &s).unwrap(), b"x");
    }
}
