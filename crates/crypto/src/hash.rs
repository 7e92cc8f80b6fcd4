//! Keyed BLAKE3: chunk addresses and opaque store keys.

use crate::keys::KeyBytes;

/// A 256-bit BLAKE3 key. No `Debug`, `Clone`, `Copy` or `Default`; zeroized on drop (its bytes
/// are a [`KeyBytes`]).
pub struct HashKey(KeyBytes);

/// A chunk's address: the keyed BLAKE3 hash of its plaintext under the volume's addressing key.
/// Identical plaintexts in one volume share an address (dedup); without the key an address says
/// nothing about the plaintext.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ChunkAddr(pub [u8; 32]);

impl std::fmt::Debug for ChunkAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for ChunkAddr {
    /// The first 8 bytes in hex: enough to find a chunk in logs, harmless to print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl HashKey {
    /// A key holding a copy of `bytes` (the caller's copy is the caller's to zeroize).
    pub fn new(bytes: &[u8; 32]) -> Self {
        let mut k = KeyBytes::zeroed();
        k.expose_mut().copy_from_slice(bytes);
        HashKey(k)
    }

    pub(crate) fn from_key_bytes(k: KeyBytes) -> Self {
        HashKey(k)
    }

    /// The one accessor to the key's bytes.
    pub(crate) fn expose(&self) -> &[u8; 32] {
        self.0.expose()
    }

    /// Address of a chunk's plaintext.
    pub fn chunk_addr(&self, plaintext: &[u8]) -> ChunkAddr {
        ChunkAddr(*blake3::keyed_hash(self.expose(), plaintext).as_bytes())
    }

    /// Opaque store key of `N` bytes for a record: keyed hash over a domain label and parts,
    /// each part length-prefixed so that different splits never collide.
    pub fn record_key<const N: usize>(&self, domain: &[u8], parts: &[&[u8]]) -> [u8; N] {
        // One update with the whole input (the same bytes, so the same hash): many small
        // updates cost more than the compression itself for these short inputs.
        let len = 4 + domain.len() + parts.iter().map(|p| 8 + p.len()).sum::<usize>();
        let mut stack = [0u8; 320];
        let mut heap = Vec::new();
        let buf: &mut [u8] = if len <= stack.len() {
            &mut stack[..len]
        } else {
            heap.resize(len, 0);
            &mut heap
        };
        let mut at = 0;
        let mut put = |b: &[u8]| {
            buf[at..at + b.len()].copy_from_slice(b);
            at += b.len();
        };
        put(&(domain.len() as u32).to_le_bytes());
        put(domain);
        for p in parts {
            put(&(p.len() as u64).to_le_bytes());
            put(p);
        }
        let mut h = blake3::Hasher::new_keyed(self.expose());
        h.update(buf);
        let mut out = [0u8; N];
        h.finalize_xof().fill(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_addr_is_keyed_blake3() {
        let k = HashKey::new(&[1u8; 32]);
        let a = k.chunk_addr(b"hello");
        assert_eq!(a.0, *blake3::keyed_hash(&[1u8; 32], b"hello").as_bytes());
        // Not the unkeyed hash: a store holder cannot confirm a guessed file.
        assert_ne!(a.0, *blake3::hash(b"hello").as_bytes());
        let k2 = HashKey::new(&[2u8; 32]);
        assert_ne!(a, k2.chunk_addr(b"hello"));
    }

    #[test]
    fn chunk_addr_known_answer() {
        // Expected value from Python's blake3 package: blake3(b"hello", key=[1; 32]).
        let a = HashKey::new(&[1u8; 32]).chunk_addr(b"hello");
        let hex: String = a.0.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "acc938a1d8801c7def1b72b9940b4df68c61b0071961a164ae1a38ad6cf954af"
        );
    }

    #[test]
    fn record_keys_separate_domains_and_splits() {
        let k = HashKey::new(&[3u8; 32]);
        let a: [u8; 16] = k.record_key(b"d", &[b"ab", b"c"]);
        let b: [u8; 16] = k.record_key(b"d", &[b"a", b"bc"]);
        let c: [u8; 16] = k.record_key(b"e", &[b"ab", b"c"]);
        assert_ne!(a, b);
        assert_ne!(a, c);
        let a2: [u8; 16] = k.record_key(b"d", &[b"ab", b"c"]);
        assert_eq!(a, a2);
    }

    /// The one-update form hashes the same bytes as updating part by part (stored keys depend on
    /// it), on the stack and past it.
    #[test]
    fn record_keys_are_the_streamed_hash() {
        let k = HashKey::new(&[4u8; 32]);
        let long = vec![7u8; 1000];
        for parts in [&[&b"ab"[..], &b"c"[..]][..], &[&long[..], &b"x"[..]][..]] {
            let mut h = blake3::Hasher::new_keyed(&[4u8; 32]);
            h.update(&(6u32).to_le_bytes());
            h.update(b"domain");
            for p in parts {
                h.update(&(p.len() as u64).to_le_bytes());
                h.update(p);
            }
            let mut want = [0u8; 48];
            h.finalize_xof().fill(&mut want);
            assert_eq!(k.record_key::<24>(b"domain", parts), want[..24]);
            assert_eq!(k.record_key::<32>(b"domain", parts), want[..32]);
            assert_eq!(k.record_key::<48>(b"domain", parts), want);
        }
    }

    #[test]
    fn display_is_short_hex() {
        let a = ChunkAddr([0xab; 32]);
        assert_eq!(a.to_string(), "abababababababab");
    }
}
