//! Sealed chunks: the plaintext in independently authenticated segments, each verifiable
//! against the chunk's address on its own, padded so that the sealed size tells only roughly
//! how long the plaintext is.
//!
//! A chunk's address is the keyed BLAKE3 hash of its plaintext. BLAKE3 is a tree: every
//! [`SEGMENT`]-byte run at a multiple of [`SEGMENT`] is a subtree (segments are a power of two
//! of BLAKE3's 1 KiB chunks, and its tree is left-balanced), so the root hash, that is the
//! address, can be recomputed from the segments' chaining values. A sealed chunk keeps those
//! values in a sealed trailer. Reading a few KiB of a chunk therefore opens one segment and the
//! trailer, checks that the segment's chaining value is in the trailer and that the trailer's
//! values merge to the address, and returns bytes as verified as a whole-chunk read, which
//! re-hashes everything.
//!
//! The plaintext of length L is sealed padded with zeros to P = [`padded_len`]`(L)` (Padmé, at
//! least [`MIN_PADDED`] bytes): P is in the clear, L only inside the sealed trailer. A file of
//! one chunk (most small files) therefore shows a size class, not its size.
//!
//! Layout (integers little-endian):
//!
//! ```text
//! offset  size        field
//! 0       1           format version (3)
//! 1       4           key epoch
//! 5       24          nonce N (random)
//! 29      4           padded length P = padded_len(L)
//! 33      ...         n = ceil(P / SEGMENT) = ceil(L / SEGMENT) segments of the plaintext
//!                     followed by P - L zero bytes: ciphertext (SEGMENT bytes, the last one
//!                     shorter), then its 16-byte Poly1305 tag
//! then                trailer: ciphertext of L (4 bytes) and, if n >= 2, the n 32-byte
//!                     chaining values, then its tag
//! ```
//!
//! Part j (segment j, or the trailer as j = n) is ChaCha20-Poly1305 (RFC 8439) under the
//! XChaCha20 subkey HChaCha20(K, N[0..16]) with nonce `j as u32 LE || N[16..24]`: segment 0 is
//! exactly XChaCha20-Poly1305 with nonce N. Associated data: domain label, version, epoch,
//! binding (volume id and address), P, j, and whether the part is the trailer, so no part can be
//! moved to another position, another chunk, or shortened. Padding bytes must be zeros and P
//! must be `padded_len(L)`: one plaintext has one sealed form (but for the nonce).

use std::ops::Range;

use blake3::hazmat::{
    left_subtree_len, merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode,
};
use ring::aead::{Aad, LessSafeKey, Nonce};
use zeroize::Zeroize;

use crate::hash::{ChunkAddr, HashKey};
use crate::seal::{aad, SealKey};
use crate::{CryptoError, Domain};

/// Bytes per authenticated segment: what a small read decrypts and hashes.
pub const SEGMENT: usize = 16 * 1024;
/// Format version of sealed chunks.
pub const CHUNK_VERSION: u8 = 3;
/// The smallest padded length: every chunk below it looks the same.
pub const MIN_PADDED: usize = 1024;
const HEADER: usize = 1 + 4 + 24 + 4;
const TAG: usize = 16;
const CV: usize = 32;
/// The plaintext length at the head of the trailer.
const LEN: usize = 4;

/// A chunk's address with its segments' chaining values (empty for a one-segment chunk).
pub struct ChunkTree {
    pub addr: ChunkAddr,
    cvs: Vec<ChainingValue>,
}

fn segments(len: usize) -> usize {
    len.div_ceil(SEGMENT)
}

/// The length a chunk of `len` plaintext bytes is padded to before sealing: Padmé (Nikitin et
/// al., "Reducing Metadata Leakage from Encrypted Files and Communication with PURBs", PETS
/// 2019) over `max(len, MIN_PADDED)`. It rounds up to a multiple of 2^(E - S), where
/// E = floor(log2 len) and S = floor(log2 E) + 1, capped at [`SEGMENT`]: at most 12% more
/// bytes (about 3% on average for lengths of 8 KiB to 128 KiB), and a padded length says
/// O(log log len) bits about the length. The rounding unit divides [`SEGMENT`], so padding
/// never reaches a segment the plaintext does not touch: both have the same segments.
pub fn padded_len(len: usize) -> usize {
    let len = len.max(MIN_PADDED);
    let e = len.ilog2();
    let s = e.ilog2() + 1;
    let mask = (1usize << (e - s).min(SEGMENT.ilog2())) - 1;
    (len + mask) & !mask
}

/// Bytes a sealed chunk of `len` plaintext bytes occupies.
pub fn sealed_chunk_len(len: usize) -> usize {
    sealed_len_padded(padded_len(len))
}

fn sealed_len_padded(padded: usize) -> usize {
    let n = segments(padded);
    HEADER + padded + n * TAG + LEN + if n >= 2 { n * CV } else { 0 } + TAG
}

impl HashKey {
    /// Address and segment chaining values of a chunk, in one pass over it.
    pub fn chunk_tree(&self, plaintext: &[u8]) -> ChunkTree {
        if plaintext.len() <= SEGMENT {
            return ChunkTree {
                addr: self.chunk_addr(plaintext),
                cvs: Vec::new(),
            };
        }
        let cvs: Vec<ChainingValue> = plaintext
            .chunks(SEGMENT)
            .enumerate()
            .map(|(i, seg)| self.segment_cv(i, seg))
            .collect();
        let addr = ChunkAddr(self.root(&cvs, plaintext.len() as u64));
        ChunkTree { addr, cvs }
    }

    fn segment_cv(&self, index: usize, seg: &[u8]) -> ChainingValue {
        let mut h = blake3::Hasher::new_keyed(self.expose());
        h.set_input_offset((index * SEGMENT) as u64);
        h.update(seg);
        h.finalize_non_root()
    }

    /// The root (keyed hash) of an input of `len` > SEGMENT bytes from its segments' values.
    fn root(&self, cvs: &[ChainingValue], len: u64) -> [u8; 32] {
        let left = left_subtree_len(len);
        let split = (left / SEGMENT as u64) as usize;
        let l = self.subtree(&cvs[..split], left);
        let r = self.subtree(&cvs[split..], len - left);
        *merge_subtrees_root(&l, &r, Mode::KeyedHash(self.expose())).as_bytes()
    }

    fn subtree(&self, cvs: &[ChainingValue], len: u64) -> ChainingValue {
        if len <= SEGMENT as u64 {
            return cvs[0];
        }
        let left = left_subtree_len(len);
        let split = (left / SEGMENT as u64) as usize;
        let l = self.subtree(&cvs[..split], left);
        let r = self.subtree(&cvs[split..], len - left);
        merge_subtrees_non_root(&l, &r, Mode::KeyedHash(self.expose()))
    }
}

fn part_aad(epoch: u32, binding: &[u8], padded: usize, part: usize, trailer: bool) -> Vec<u8> {
    let mut a = aad(Domain::Chunk, CHUNK_VERSION, epoch, binding);
    a.extend_from_slice(&(padded as u32).to_le_bytes());
    a.extend_from_slice(&(part as u32).to_le_bytes());
    a.push(trailer as u8);
    a
}

fn part_nonce(nonce: &[u8; 24], part: usize) -> Nonce {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(&(part as u32).to_le_bytes());
    n[4..].copy_from_slice(&nonce[16..]);
    Nonce::assume_unique_for_key(n)
}

/// A parsed sealed chunk: where its parts are. The plaintext length is known only once the
/// trailer is open ([`Index`]).
struct Parsed<'a> {
    epoch: u32,
    nonce: [u8; 24],
    padded: usize,
    body: &'a [u8],
}

fn parse(sealed: &[u8]) -> Result<Parsed<'_>, CryptoError> {
    if sealed.len() < HEADER {
        return Err(CryptoError::Malformed("shorter than a chunk header"));
    }
    if sealed[0] != CHUNK_VERSION {
        return Err(CryptoError::UnknownVersion(sealed[0]));
    }
    let epoch = u32::from_le_bytes(sealed[1..5].try_into().expect("4 bytes"));
    let nonce: [u8; 24] = sealed[5..29].try_into().expect("24 bytes");
    let padded = u32::from_le_bytes(sealed[29..33].try_into().expect("4 bytes")) as usize;
    if padded < MIN_PADDED || sealed.len() != sealed_len_padded(padded) {
        return Err(CryptoError::Malformed(
            "chunk length does not match its header",
        ));
    }
    Ok(Parsed {
        epoch,
        nonce,
        padded,
        body: &sealed[HEADER..],
    })
}

impl Parsed<'_> {
    fn n(&self) -> usize {
        segments(self.padded)
    }
    /// Ciphertext + tag of segment `i`.
    fn segment(&self, i: usize) -> &[u8] {
        let start = i * (SEGMENT + TAG);
        let plain = SEGMENT.min(self.padded - i * SEGMENT);
        &self.body[start..start + plain + TAG]
    }
    fn trailer(&self) -> &[u8] {
        let start = self.padded + self.n() * TAG;
        &self.body[start..]
    }
}

/// An opened trailer: the plaintext length and the segments' chaining values (none for a
/// one-segment chunk).
struct Index {
    len: usize,
    cvs: Vec<ChainingValue>,
}

/// Verified bytes of a chunk: whole segments from segment `first` on, and the chunk's length.
pub struct Segments {
    pub first: usize,
    pub chunk_len: usize,
    pub plain: Vec<u8>,
}

impl SealKey {
    /// Seal a chunk whose address and chaining values are `tree` (from
    /// [`HashKey::chunk_tree`] over the same plaintext), with a fresh random nonce.
    pub fn seal_chunk(
        &self,
        epoch: u32,
        binding: &[u8],
        tree: &ChunkTree,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let nonce = crate::nonce24();
        self.seal_chunk_with_nonce(epoch, binding, tree, plaintext, nonce)
    }

    fn seal_chunk_with_nonce(
        &self,
        epoch: u32,
        binding: &[u8],
        tree: &ChunkTree,
        plaintext: &[u8],
        nonce: [u8; 24],
    ) -> Result<Vec<u8>, CryptoError> {
        let len = plaintext.len();
        if len == 0 || padded_len(len) > u32::MAX as usize {
            return Err(CryptoError::Malformed("a chunk holds 1 byte to 4 GiB"));
        }
        let n = segments(len);
        if (n >= 2) != (tree.cvs.len() == n) {
            return Err(CryptoError::Malformed(
                "chaining values do not match the chunk",
            ));
        }
        let padded = padded_len(len);
        let mut out = Vec::with_capacity(sealed_len_padded(padded));
        out.push(CHUNK_VERSION);
        out.extend_from_slice(&epoch.to_le_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&(padded as u32).to_le_bytes());
        let (key, _) = self.subkey(&nonce);
        // Part `part` from `plain`, followed by `zeros` zero bytes.
        let seal_part = |out: &mut Vec<u8>, plain: &[u8], zeros: usize, part: usize, trailer| {
            let start = out.len();
            out.extend_from_slice(plain);
            out.resize(out.len() + zeros, 0);
            let tag = key
                .seal_in_place_separate_tag(
                    part_nonce(&nonce, part),
                    Aad::from(part_aad(epoch, binding, padded, part, trailer)),
                    &mut out[start..],
                )
                .expect("ChaCha20-Poly1305 accepts any length below 256 GiB");
            out.extend_from_slice(tag.as_ref());
        };
        for (i, seg) in plaintext.chunks(SEGMENT).enumerate() {
            let zeros = if i == n - 1 { padded - len } else { 0 };
            seal_part(&mut out, seg, zeros, i, false);
        }
        let mut index = (len as u32).to_le_bytes().to_vec();
        if n >= 2 {
            index.extend(tree.cvs.iter().flatten());
        }
        seal_part(&mut out, &index, 0, n, true);
        debug_assert_eq!(out.len(), sealed_len_padded(padded));
        Ok(out)
    }

    /// Authenticate and decrypt part `part`, appending its plaintext to `out`.
    fn open_part(
        key: &LessSafeKey,
        p: &Parsed<'_>,
        binding: &[u8],
        sealed_part: &[u8],
        part: usize,
        trailer: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        let (ciphertext, tag) = sealed_part.split_at(sealed_part.len() - TAG);
        let tag: [u8; TAG] = tag.try_into().expect("16 bytes");
        let start = out.len();
        out.extend_from_slice(ciphertext);
        key.open_in_place_separate_tag(
            part_nonce(&p.nonce, part),
            Aad::from(part_aad(p.epoch, binding, p.padded, part, trailer)),
            tag.into(),
            &mut out[start..],
            0..,
        )
        .map_err(|_| CryptoError::Authentication)?;
        Ok(())
    }

    /// Open the trailer: the plaintext length, checked against the padded length, and the
    /// chaining values.
    fn open_index(key: &LessSafeKey, p: &Parsed<'_>, binding: &[u8]) -> Result<Index, CryptoError> {
        let n = p.n();
        let mut t = Vec::with_capacity(LEN + n * CV);
        Self::open_part(key, p, binding, p.trailer(), n, true, &mut t)?;
        let (len, cvs) = t.split_at(LEN);
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        if len == 0 || padded_len(len) != p.padded {
            return Err(CryptoError::Malformed(
                "the sealed length does not match the padded length",
            ));
        }
        let cvs: Vec<ChainingValue> = cvs
            .chunks_exact(CV)
            .map(|c| c.try_into().expect("32 bytes"))
            .collect();
        if cvs.len() != if n >= 2 { n } else { 0 } {
            return Err(CryptoError::Malformed("a chaining value per segment"));
        }
        Ok(Index { len, cvs })
    }

    /// Open a whole chunk: authenticate and decrypt every segment, then re-hash the plaintext
    /// and compare with `addr`. Never returns unverified bytes.
    pub fn open_chunk(
        &self,
        hash: &HashKey,
        binding: &[u8],
        addr: &ChunkAddr,
        sealed: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let mut out = Vec::new();
        self.open_chunk_append(hash, binding, addr, sealed, &mut out)?;
        Ok(out)
    }

    /// [`open_chunk`](Self::open_chunk), appending the plaintext to `out`: each segment is
    /// copied once, into its place in `out`, and decrypted there (a read fills its reply
    /// buffer this way, without an intermediate copy). On any error `out` is left as it was,
    /// and nothing unverified remains in it. Returns the chunk's length.
    pub fn open_chunk_append(
        &self,
        hash: &HashKey,
        binding: &[u8],
        addr: &ChunkAddr,
        sealed: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<usize, CryptoError> {
        let p = parse(sealed)?;
        let (key, _) = self.subkey(&p.nonce);
        let start = out.len();
        out.reserve(p.padded);
        let verified = Self::open_index(&key, &p, binding).and_then(|index| {
            for i in 0..p.n() {
                Self::open_part(&key, &p, binding, p.segment(i), i, false, out)?;
            }
            strip_padding(out, start + index.len)?;
            if hash.chunk_addr(&out[start..]) != *addr {
                return Err(CryptoError::AddressMismatch);
            }
            Ok(index.len)
        });
        if verified.is_err() {
            // Authenticated but not matching the address is still not to be returned.
            out[start..].zeroize();
            out.truncate(start);
        }
        verified
    }

    /// Open bytes `range` of a chunk (clamped to its length): authenticate and decrypt only the
    /// segments it touches, and verify them against `addr` through the sealed chaining values.
    /// Never returns unverified bytes.
    pub fn open_chunk_range(
        &self,
        hash: &HashKey,
        binding: &[u8],
        addr: &ChunkAddr,
        sealed: &[u8],
        range: Range<usize>,
    ) -> Result<Vec<u8>, CryptoError> {
        let s = self.open_chunk_segments(hash, binding, addr, sealed, range.clone())?;
        let off = s.first * SEGMENT;
        let (start, end) = (range.start.max(off), range.end.min(off + s.plain.len()));
        if start >= end {
            return Ok(Vec::new());
        }
        Ok(s.plain[start - off..end - off].to_vec())
    }

    /// The whole segments that bytes `range` of a chunk touch (clamped to its length), verified
    /// as [`open_chunk_range`](Self::open_chunk_range) does, with the chunk's length: each
    /// segment `SEGMENT` bytes, the chunk's last one shorter. An empty range gives no segment.
    /// Never returns unverified bytes.
    pub fn open_chunk_segments(
        &self,
        hash: &HashKey,
        binding: &[u8],
        addr: &ChunkAddr,
        sealed: &[u8],
        range: Range<usize>,
    ) -> Result<Segments, CryptoError> {
        let p = parse(sealed)?;
        let (key, _) = self.subkey(&p.nonce);
        let index = Self::open_index(&key, &p, binding)?;
        let len = index.len;
        let end = range.end.min(len);
        if range.start >= end {
            return Ok(Segments {
                first: 0,
                chunk_len: len,
                plain: Vec::new(),
            });
        }
        let n = p.n();
        if n == 1 {
            // The whole chunk is one segment: open it with the subkey and trailer already at
            // hand, and re-hash it.
            let mut plain = Vec::with_capacity(p.padded);
            Self::open_part(&key, &p, binding, p.segment(0), 0, false, &mut plain)?;
            strip_padding(&mut plain, len)?;
            if hash.chunk_addr(&plain) != *addr {
                return Err(CryptoError::AddressMismatch);
            }
            return Ok(Segments {
                first: 0,
                chunk_len: len,
                plain,
            });
        }
        if hash.root(&index.cvs, len as u64) != addr.0 {
            return Err(CryptoError::AddressMismatch);
        }
        let (first, last) = (range.start / SEGMENT, (end - 1) / SEGMENT);
        let mut plain = Vec::with_capacity((last - first + 1) * SEGMENT);
        for (i, cv) in index.cvs.iter().enumerate().take(last + 1).skip(first) {
            let start = plain.len();
            Self::open_part(&key, &p, binding, p.segment(i), i, false, &mut plain)?;
            if i == n - 1 {
                strip_padding(&mut plain, start + (len - i * SEGMENT))?;
            }
            if hash.segment_cv(i, &plain[start..]) != *cv {
                return Err(CryptoError::AddressMismatch);
            }
        }
        Ok(Segments {
            first,
            chunk_len: len,
            plain,
        })
    }
}

/// Check that everything in `out` from `end` on is zeros (padding), and drop it.
fn strip_padding(out: &mut Vec<u8>, end: usize) -> Result<(), CryptoError> {
    if end > out.len() || out[end..].iter().any(|&b| b != 0) {
        return Err(CryptoError::Malformed("chunk padding is not zeros"));
    }
    out.truncate(end);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys() -> (SealKey, HashKey) {
        (SealKey::new(&[5; 32]), HashKey::new(&[6; 32]))
    }

    fn data(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[1] ^ seed)
            .collect()
    }

    #[test]
    fn tree_root_is_the_keyed_blake3_hash() {
        let (_, h) = keys();
        for len in [
            1,
            SEGMENT - 1,
            SEGMENT,
            SEGMENT + 1,
            2 * SEGMENT,
            3 * SEGMENT + 5,
            5 * SEGMENT,
            8 * SEGMENT,
            9 * SEGMENT - 1,
            128 * 1024,
            1 << 20,
        ] {
            let d = data(len, 1);
            assert_eq!(h.chunk_tree(&d).addr, h.chunk_addr(&d), "len {len}");
        }
    }

    #[test]
    fn one_segment_is_plain_xchacha20poly1305_of_the_padded_plaintext() {
        use chacha20poly1305::aead::{AeadInPlace, KeyInit};
        let (s, h) = keys();
        let d = data(1000, 2);
        let tree = h.chunk_tree(&d);
        let sealed = s
            .seal_chunk_with_nonce(3, b"bind", &tree, &d, [7; 24])
            .unwrap();
        // Padded to 1 KiB with zeros; the header shows 1024, not 1000.
        assert_eq!(&sealed[29..33], &1024u32.to_le_bytes());
        let mut buf = d.clone();
        buf.resize(1024, 0);
        let tag = chacha20poly1305::XChaCha20Poly1305::new((&[5u8; 32]).into())
            .encrypt_in_place_detached(
                (&[7u8; 24]).into(),
                &part_aad(3, b"bind", 1024, 0, false),
                &mut buf,
            )
            .unwrap();
        assert_eq!(&sealed[HEADER..HEADER + 1024], &buf[..]);
        assert_eq!(&sealed[HEADER + 1024..HEADER + 1024 + TAG], tag.as_slice());
        assert_eq!(sealed.len(), HEADER + 1024 + TAG + LEN + TAG);
        assert_eq!(s.open_chunk(&h, b"bind", &tree.addr, &sealed).unwrap(), d);
    }

    #[test]
    fn padding_hides_the_exact_length() {
        // Every length up to 1 KiB seals to the same size; above, to a size class.
        assert_eq!(padded_len(1), MIN_PADDED);
        assert_eq!(sealed_chunk_len(1), sealed_chunk_len(1000));
        assert_eq!(padded_len(1025), 1088);
        assert_eq!(padded_len(100_000), 100_352);
        assert_eq!(padded_len(128 * 1024), 128 * 1024);
        assert_eq!(padded_len(130_000), 131_072);
        let mut classes = std::collections::BTreeSet::new();
        for len in 1..=(128 * 1024) {
            let p = padded_len(len);
            assert!(p >= len && p >= MIN_PADDED, "{len}");
            assert!(len <= MIN_PADDED || p - len <= len / 8, "{len} -> {p}");
            assert_eq!(padded_len(p), p, "{len}: a padded length is its own class");
            assert_eq!(segments(p), segments(len), "{len}: same segments");
            classes.insert(p);
        }
        // 131,072 lengths fall into a few hundred size classes.
        assert!(classes.len() < 600, "{}", classes.len());
        // Also for chunk sizes above SEGMENT * 2^5 (where Padmé's unit would exceed a segment).
        for len in [(1 << 20) + 1, (4 << 20) - 1, 3_000_000] {
            assert_eq!(segments(padded_len(len)), segments(len), "{len}");
        }
    }

    #[test]
    fn padding_must_be_zeros_and_the_length_canonical() {
        // A key holder sealing nonzero padding, or a length whose class is not the header's,
        // gets no plaintext out.
        let (s, h) = keys();
        let d = data(3 * SEGMENT + 100, 8);
        let tree = h.chunk_tree(&d);
        let padded = padded_len(d.len());
        let nonce = [9u8; 24];
        let (key, _) = s.subkey(&nonce);
        let reseal =
            |sealed: &mut Vec<u8>, part: usize, trailer: bool, edit: &dyn Fn(&mut Vec<u8>)| {
                let p = parse(sealed).unwrap();
                let sp = if trailer {
                    p.trailer()
                } else {
                    p.segment(part)
                };
                let range = {
                    let off = sp.as_ptr() as usize - sealed.as_ptr() as usize;
                    off..off + sp.len()
                };
                let mut plain = Vec::new();
                SealKey::open_part(&key, &p, b"v", sp, part, trailer, &mut plain).unwrap();
                edit(&mut plain);
                let tag = key
                    .seal_in_place_separate_tag(
                        part_nonce(&nonce, part),
                        Aad::from(part_aad(0, b"v", padded, part, trailer)),
                        &mut plain,
                    )
                    .unwrap();
                plain.extend_from_slice(tag.as_ref());
                sealed.splice(range, plain);
            };
        let good = s.seal_chunk_with_nonce(0, b"v", &tree, &d, nonce).unwrap();
        assert_eq!(s.open_chunk(&h, b"v", &tree.addr, &good).unwrap(), d);
        let mut bad_pad = good.clone();
        reseal(&mut bad_pad, 3, false, &|p: &mut Vec<u8>| {
            *p.last_mut().unwrap() = 1
        });
        assert!(s.open_chunk(&h, b"v", &tree.addr, &bad_pad).is_err());
        assert!(s
            .open_chunk_range(&h, b"v", &tree.addr, &bad_pad, 3 * SEGMENT..3 * SEGMENT + 1)
            .is_err());
        // A length of another class contradicts the header: nothing opens.
        let with_len = |len: usize| {
            let mut bad = good.clone();
            reseal(&mut bad, 4, true, &|p: &mut Vec<u8>| {
                p[..4].copy_from_slice(&(len as u32).to_le_bytes())
            });
            bad
        };
        let bad = with_len(5 * SEGMENT);
        assert!(s.open_chunk(&h, b"v", &tree.addr, &bad).is_err());
        assert!(s
            .open_chunk_range(&h, b"v", &tree.addr, &bad, 0..10)
            .is_err());
        // A length one byte shorter is in the same class, and BLAKE3's root does not encode
        // the length: segments before the last still verify (their bytes are the address's),
        // with the claimed length reported for the caller to compare with the file's extent.
        // The whole chunk and its last segment do not verify.
        let bad = with_len(d.len() - 1);
        assert!(s.open_chunk(&h, b"v", &tree.addr, &bad).is_err());
        let last = 3 * SEGMENT..3 * SEGMENT + 1;
        assert!(s
            .open_chunk_range(&h, b"v", &tree.addr, &bad, last)
            .is_err());
        let head = s
            .open_chunk_segments(&h, b"v", &tree.addr, &bad, 0..10)
            .unwrap();
        assert_eq!(head.chunk_len, d.len() - 1);
        assert_eq!(head.plain, &d[..SEGMENT]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whole and partial opens return exactly the plaintext's bytes.
        #[test]
        fn round_trip_whole_and_ranges(
            len in 1usize..(9 * SEGMENT),
            a in 0usize..(9 * SEGMENT),
            b in 0usize..(9 * SEGMENT),
        ) {
            let (s, h) = keys();
            let d = data(len, 3);
            let tree = h.chunk_tree(&d);
            let sealed = s.seal_chunk(0, b"v", &tree, &d).unwrap();
            prop_assert_eq!(sealed.len(), sealed_chunk_len(len));
            prop_assert_eq!(&s.open_chunk(&h, b"v", &tree.addr, &sealed).unwrap(), &d);
            // Appended after what the buffer holds, which stays as it was.
            let mut out = b"reply so far".to_vec();
            s.open_chunk_append(&h, b"v", &tree.addr, &sealed, &mut out).unwrap();
            prop_assert_eq!(&out[..12], b"reply so far");
            prop_assert_eq!(&out[12..], &d[..]);
            let (lo, hi) = (a.min(b), a.max(b));
            let got = s.open_chunk_range(&h, b"v", &tree.addr, &sealed, lo..hi).unwrap();
            let want = if lo < len { &d[lo..hi.min(len)] } else { &[][..] };
            prop_assert_eq!(&got[..], want);
            // The whole segments around that range: aligned, clamped to the chunk.
            let Segments { first, chunk_len, plain: segs } =
                s.open_chunk_segments(&h, b"v", &tree.addr, &sealed, lo..hi).unwrap();
            prop_assert_eq!(chunk_len, len);
            if lo < hi.min(len) {
                let seg_end = ((hi.min(len) - 1) / SEGMENT + 1) * SEGMENT;
                prop_assert_eq!(first, if len <= SEGMENT { 0 } else { lo / SEGMENT });
                prop_assert_eq!(&segs[..], &d[first * SEGMENT..seg_end.min(len)]);
            } else {
                prop_assert!(segs.is_empty());
            }
        }

        /// Any flipped bit fails every open that reads it: whole, or a range over the
        /// touched segment (the header and trailer are read by every range open).
        #[test]
        fn any_flipped_bit_fails(len in (SEGMENT + 1)..(4 * SEGMENT), pos in any::<usize>(), bit in 0u8..8) {
            let (s, h) = keys();
            let d = data(len, 4);
            let tree = h.chunk_tree(&d);
            let mut sealed = s.seal_chunk(0, b"v", &tree, &d).unwrap();
            let pos = pos % sealed.len();
            sealed[pos] ^= 1 << bit;
            prop_assert!(s.open_chunk(&h, b"v", &tree.addr, &sealed).is_err());
            // Appending fails too, and leaves the buffer as it was: no byte of the chunk.
            let mut out = b"reply so far".to_vec();
            prop_assert!(s.open_chunk_append(&h, b"v", &tree.addr, &sealed, &mut out).is_err());
            prop_assert_eq!(&out[..], b"reply so far");
            // The range that covers the flipped byte's segment (or every segment).
            let seg = pos.saturating_sub(HEADER) / (SEGMENT + TAG);
            let lo = (seg * SEGMENT).min(len - 1);
            prop_assert!(s.open_chunk_range(&h, b"v", &tree.addr, &sealed, lo..lo + 1).is_err());
        }
    }

    #[test]
    fn wrong_address_binding_or_swapped_segments_fail() {
        let (s, h) = keys();
        let d = data(3 * SEGMENT, 5);
        let tree = h.chunk_tree(&d);
        let sealed = s.seal_chunk(0, b"v", &tree, &d).unwrap();
        let other = h.chunk_addr(b"other");
        assert!(s.open_chunk(&h, b"v", &other, &sealed).is_err());
        assert!(s
            .open_chunk_range(&h, b"v", &other, &sealed, 0..10)
            .is_err());
        assert!(s.open_chunk(&h, b"w", &tree.addr, &sealed).is_err());
        // Swap segments 0 and 1 (same length): both their tags bind their positions.
        let mut swapped = sealed.clone();
        let (a, b) = (HEADER, HEADER + SEGMENT + TAG);
        let seg0 = sealed[a..b].to_vec();
        swapped.copy_within(b..b + SEGMENT + TAG, a);
        swapped[b..b + SEGMENT + TAG].copy_from_slice(&seg0);
        assert!(s.open_chunk(&h, b"v", &tree.addr, &swapped).is_err());
        assert!(s
            .open_chunk_range(&h, b"v", &tree.addr, &swapped, 0..10)
            .is_err());
        // A truncated chunk does not parse.
        assert!(s
            .open_chunk_range(&h, b"v", &tree.addr, &sealed[..sealed.len() - 1], 0..10)
            .is_err());
    }

    #[test]
    fn a_key_holder_cannot_pass_off_other_bytes_under_an_address() {
        // Sealed correctly, but with chaining values of other data: the trailer authenticates,
        // yet the values do not merge to the address, and a segment's value does not match.
        let (s, h) = keys();
        let d = data(2 * SEGMENT, 6);
        let e = data(2 * SEGMENT, 7);
        let tree_d = h.chunk_tree(&d);
        let mut lie = h.chunk_tree(&e);
        lie.addr = tree_d.addr;
        let sealed = s.seal_chunk(0, b"v", &lie, &e).unwrap();
        assert!(matches!(
            s.open_chunk_range(&h, b"v", &tree_d.addr, &sealed, 0..10),
            Err(CryptoError::AddressMismatch)
        ));
        assert!(matches!(
            s.open_chunk(&h, b"v", &tree_d.addr, &sealed),
            Err(CryptoError::AddressMismatch)
        ));
        // Decrypted in place, authentic, but not the address's bytes: none is left behind.
        let mut out = b"head".to_vec();
        assert!(matches!(
            s.open_chunk_append(&h, b"v", &tree_d.addr, &sealed, &mut out),
            Err(CryptoError::AddressMismatch)
        ));
        assert_eq!(out, b"head");
    }
}
