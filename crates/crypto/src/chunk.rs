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
//! re-hashes everything. Whether an open makes these address checks or authenticates only is
//! the caller's explicit choice at every call ([`Verify`]).
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

/// The first `N` bytes of `b`, which callers slice to exactly `N` bytes (after checking the
/// whole input's length), as an array.
fn take<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[..N]);
    a
}

fn parse(sealed: &[u8]) -> Result<Parsed<'_>, CryptoError> {
    if sealed.len() < HEADER {
        return Err(CryptoError::Malformed("shorter than a chunk header"));
    }
    if sealed[0] != CHUNK_VERSION {
        return Err(CryptoError::UnknownVersion(sealed[0]));
    }
    let epoch = u32::from_le_bytes(take(&sealed[1..5]));
    let nonce: [u8; 24] = take(&sealed[5..29]);
    let padded = u32::from_le_bytes(take(&sealed[29..33])) as usize;
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

/// What opening a chunk checks beyond its AEAD tags, chosen by the caller at every open.
///
/// Both choices authenticate and decrypt every part they return (each segment's tag, with the
/// caller's binding, for the volume layer its volume id and the address, the padded length and
/// the part's position in its associated data), open and authenticate the trailer, and check
/// the length against the padded length and that the padding is zeros. They differ in one step:
/// [`Verify::Address`] also re-hashes the plaintext (a whole chunk) or checks the segments'
/// chaining values and their root (a partial read) against the address; [`Verify::LocalStore`]
/// does not, and in exchange insists that the binding names the address.
///
/// Against anyone without the volume's chunk key the tags alone already give integrity and
/// authenticity: nobody else can make a part that opens under this address at this position.
/// The re-hash adds one thing: that a holder of the key did not seal other bytes under the
/// address (by mistake or on purpose). That matters for bytes that come from elsewhere, not for
/// bytes this volume sealed into its own store (see docs/security.md, "Constructions").
#[derive(Clone, Copy)]
pub enum Verify<'a> {
    /// Authenticate, and verify the plaintext against the address with the volume's address
    /// key. Required for every chunk whose bytes did not come from this volume's own store:
    /// received by sync, imported from a backup or another store, and in `check`, whose job is
    /// to find whatever is wrong, including a chunk sealed under the wrong address.
    Address(&'a HashKey),
    /// Authenticate only. Allowed only for a chunk read back from the volume's own store, under
    /// the address it was sealed for, on the ordinary read path: the bytes were hashed when this
    /// volume's key sealed them, and the tags prove they are those bytes. The binding must end
    /// with the address (it is what ties the tags to it); an open whose binding does not is
    /// refused. A chunk sealed with a valid tag but with other content under an address opens
    /// this way (only a key holder can make one); `check` finds it.
    LocalStore,
}

impl Verify<'_> {
    /// Without the re-hash, only the associated data ties the bytes to `addr`: the binding must
    /// name it (the volume layer's binding is volume id ‖ address), or nothing opens.
    fn check_binding(&self, binding: &[u8], addr: &ChunkAddr) -> Result<(), CryptoError> {
        match self {
            Verify::LocalStore if !binding.ends_with(&addr.0) => Err(CryptoError::Malformed(
                "an authenticate-only open needs the address in the binding",
            )),
            _ => Ok(()),
        }
    }
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
            #[allow(
                clippy::expect_used,
                reason = "ring refuses only inputs over 256 GiB; a chunk is at most 4 MiB"
            )]
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
        let tag: [u8; TAG] = take(tag);
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
        let len = u32::from_le_bytes(take(len)) as usize;
        if len == 0 || padded_len(len) != p.padded {
            return Err(CryptoError::Malformed(
                "the sealed length does not match the padded length",
            ));
        }
        let cvs: Vec<ChainingValue> = cvs.chunks_exact(CV).map(take).collect();
        if cvs.len() != if n >= 2 { n } else { 0 } {
            return Err(CryptoError::Malformed("a chaining value per segment"));
        }
        Ok(Index { len, cvs })
    }

    /// Open a whole chunk: authenticate and decrypt every segment, then (with
    /// [`Verify::Address`]) re-hash the plaintext and compare with `addr`. Never returns bytes
    /// that failed a check.
    pub fn open_chunk(
        &self,
        verify: Verify<'_>,
        binding: &[u8],
        addr: &ChunkAddr,
        sealed: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let mut out = Vec::new();
        self.open_chunk_append(verify, binding, addr, sealed, &mut out)?;
        Ok(out)
    }

    /// [`open_chunk`](Self::open_chunk), appending the plaintext to `out`: each segment is
    /// copied once, into its place in `out`, and decrypted there (a read fills its reply
    /// buffer this way, without an intermediate copy). On any error `out` is left as it was,
    /// and nothing unverified remains in it. Returns the chunk's length.
    pub fn open_chunk_append(
        &self,
        verify: Verify<'_>,
        binding: &[u8],
        addr: &ChunkAddr,
        sealed: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<usize, CryptoError> {
        verify.check_binding(binding, addr)?;
        let p = parse(sealed)?;
        let (key, _) = self.subkey(&p.nonce);
        let start = out.len();
        out.reserve(p.padded);
        let verified = Self::open_index(&key, &p, binding).and_then(|index| {
            for i in 0..p.n() {
                Self::open_part(&key, &p, binding, p.segment(i), i, false, out)?;
            }
            strip_padding(out, start + index.len)?;
            if let Verify::Address(hash) = verify {
                if hash.chunk_addr(&out[start..]) != *addr {
                    return Err(CryptoError::AddressMismatch);
                }
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
    /// segments it touches and (with [`Verify::Address`]) verify them against `addr` through the
    /// sealed chaining values. Never returns bytes that failed a check.
    pub fn open_chunk_range(
        &self,
        verify: Verify<'_>,
        binding: &[u8],
        addr: &ChunkAddr,
        sealed: &[u8],
        range: Range<usize>,
    ) -> Result<Vec<u8>, CryptoError> {
        let s = self.open_chunk_segments(verify, binding, addr, sealed, range.clone())?;
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
    /// Never returns bytes that failed a check. The trailer is opened and its length checked
    /// with either [`Verify`]; only [`Verify::Address`] merges its chaining values to `addr` and
    /// hashes the opened segments.
    pub fn open_chunk_segments(
        &self,
        verify: Verify<'_>,
        binding: &[u8],
        addr: &ChunkAddr,
        sealed: &[u8],
        range: Range<usize>,
    ) -> Result<Segments, CryptoError> {
        verify.check_binding(binding, addr)?;
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
            if let Verify::Address(hash) = verify {
                if hash.chunk_addr(&plain) != *addr {
                    return Err(CryptoError::AddressMismatch);
                }
            }
            return Ok(Segments {
                first: 0,
                chunk_len: len,
                plain,
            });
        }
        if let Verify::Address(hash) = verify {
            if hash.root(&index.cvs, len as u64) != addr.0 {
                return Err(CryptoError::AddressMismatch);
            }
        }
        let (first, last) = (range.start / SEGMENT, (end - 1) / SEGMENT);
        let mut plain = Vec::with_capacity((last - first + 1) * SEGMENT);
        for (i, cv) in index.cvs.iter().enumerate().take(last + 1).skip(first) {
            let start = plain.len();
            Self::open_part(&key, &p, binding, p.segment(i), i, false, &mut plain)?;
            if i == n - 1 {
                strip_padding(&mut plain, start + (len - i * SEGMENT))?;
            }
            if let Verify::Address(hash) = verify {
                if hash.segment_cv(i, &plain[start..]) != *cv {
                    return Err(CryptoError::AddressMismatch);
                }
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
        assert_eq!(
            s.open_chunk(Verify::Address(&h), b"bind", &tree.addr, &sealed)
                .unwrap(),
            d
        );
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
        let bv = [b"v".as_slice(), &tree.addr.0].concat();
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
                SealKey::open_part(&key, &p, &bv, sp, part, trailer, &mut plain).unwrap();
                edit(&mut plain);
                let tag = key
                    .seal_in_place_separate_tag(
                        part_nonce(&nonce, part),
                        Aad::from(part_aad(0, &bv, padded, part, trailer)),
                        &mut plain,
                    )
                    .unwrap();
                plain.extend_from_slice(tag.as_ref());
                sealed.splice(range, plain);
            };
        let good = s.seal_chunk_with_nonce(0, &bv, &tree, &d, nonce).unwrap();
        assert_eq!(
            s.open_chunk(Verify::Address(&h), &bv, &tree.addr, &good)
                .unwrap(),
            d
        );
        let mut bad_pad = good.clone();
        reseal(&mut bad_pad, 3, false, &|p: &mut Vec<u8>| {
            *p.last_mut().unwrap() = 1
        });
        assert!(s
            .open_chunk(Verify::Address(&h), &bv, &tree.addr, &bad_pad)
            .is_err());
        assert!(s
            .open_chunk_range(
                Verify::Address(&h),
                &bv,
                &tree.addr,
                &bad_pad,
                3 * SEGMENT..3 * SEGMENT + 1
            )
            .is_err());
        // These are not hashing checks: authenticate-only opens make them too.
        let v = Verify::LocalStore;
        assert!(s.open_chunk(v, &bv, &tree.addr, &bad_pad).is_err());
        let last = 3 * SEGMENT..3 * SEGMENT + 1;
        assert!(s
            .open_chunk_range(v, &bv, &tree.addr, &bad_pad, last)
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
        for v in [Verify::Address(&h), Verify::LocalStore] {
            assert!(s.open_chunk(v, &bv, &tree.addr, &bad).is_err());
            assert!(s.open_chunk_range(v, &bv, &tree.addr, &bad, 0..10).is_err());
        }
        // A length one byte shorter is in the same class, and BLAKE3's root does not encode
        // the length: segments before the last still verify (their bytes are the address's),
        // with the claimed length reported for the caller to compare with the file's extent.
        // The whole chunk and its last segment do not verify.
        let bad = with_len(d.len() - 1);
        assert!(s
            .open_chunk(Verify::Address(&h), &bv, &tree.addr, &bad)
            .is_err());
        let last = 3 * SEGMENT..3 * SEGMENT + 1;
        assert!(s
            .open_chunk_range(Verify::Address(&h), &bv, &tree.addr, &bad, last)
            .is_err());
        let head = s
            .open_chunk_segments(Verify::Address(&h), &bv, &tree.addr, &bad, 0..10)
            .unwrap();
        assert_eq!(head.chunk_len, d.len() - 1);
        assert_eq!(head.plain, &d[..SEGMENT]);
        // Authenticate-only, the shorter length is caught where the dropped byte is not zero
        // (the padding check; it is not, here), and always by the caller's comparison of
        // `chunk_len` with the file's extent.
        assert_ne!(d[d.len() - 1], 0);
        assert!(s.open_chunk(v, &bv, &tree.addr, &bad).is_err());
        let last = 3 * SEGMENT..3 * SEGMENT + 1;
        assert!(s.open_chunk_range(v, &bv, &tree.addr, &bad, last).is_err());
        let head = s.open_chunk_segments(v, &bv, &tree.addr, &bad, 0..10);
        assert_eq!(head.unwrap().chunk_len, d.len() - 1);
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
            let bv = [b"v".as_slice(), &tree.addr.0].concat();
            let sealed = s.seal_chunk(0, &bv, &tree, &d).unwrap();
            prop_assert_eq!(sealed.len(), sealed_chunk_len(len));
            prop_assert_eq!(&s.open_chunk(Verify::Address(&h), &bv, &tree.addr, &sealed).unwrap(), &d);
            // Appended after what the buffer holds, which stays as it was.
            let mut out = b"reply so far".to_vec();
            s.open_chunk_append(Verify::Address(&h), &bv, &tree.addr, &sealed, &mut out).unwrap();
            prop_assert_eq!(&out[..12], b"reply so far");
            prop_assert_eq!(&out[12..], &d[..]);
            let (lo, hi) = (a.min(b), a.max(b));
            let got = s.open_chunk_range(Verify::Address(&h), &bv, &tree.addr, &sealed, lo..hi).unwrap();
            let want = if lo < len { &d[lo..hi.min(len)] } else { &[][..] };
            prop_assert_eq!(&got[..], want);
            // The whole segments around that range: aligned, clamped to the chunk.
            let Segments { first, chunk_len, plain: segs } =
                s.open_chunk_segments(Verify::Address(&h), &bv, &tree.addr, &sealed, lo..hi).unwrap();
            prop_assert_eq!(chunk_len, len);
            if lo < hi.min(len) {
                let seg_end = ((hi.min(len) - 1) / SEGMENT + 1) * SEGMENT;
                prop_assert_eq!(first, if len <= SEGMENT { 0 } else { lo / SEGMENT });
                prop_assert_eq!(&segs[..], &d[first * SEGMENT..seg_end.min(len)]);
            } else {
                prop_assert!(segs.is_empty());
            }
            // Authenticate-only opens return the same bytes.
            prop_assert_eq!(&s.open_chunk(Verify::LocalStore, &bv, &tree.addr, &sealed).unwrap(), &d);
            let mut out = b"reply so far".to_vec();
            s.open_chunk_append(Verify::LocalStore, &bv, &tree.addr, &sealed, &mut out).unwrap();
            prop_assert_eq!(&out[12..], &d[..]);
            let local = s.open_chunk_range(Verify::LocalStore, &bv, &tree.addr, &sealed, lo..hi).unwrap();
            prop_assert_eq!(&local[..], want);
            let l = s.open_chunk_segments(Verify::LocalStore, &bv, &tree.addr, &sealed, lo..hi).unwrap();
            prop_assert_eq!((l.first, l.chunk_len, &l.plain), (first, chunk_len, &segs));
        }

        /// Any flipped bit fails every open that reads it: whole, or a range over the
        /// touched segment (the header and trailer are read by every range open).
        #[test]
        fn any_flipped_bit_fails(len in (SEGMENT + 1)..(4 * SEGMENT), pos in any::<usize>(), bit in 0u8..8) {
            let (s, h) = keys();
            let d = data(len, 4);
            let tree = h.chunk_tree(&d);
            let bv = [b"v".as_slice(), &tree.addr.0].concat();
            let mut sealed = s.seal_chunk(0, &bv, &tree, &d).unwrap();
            let pos = pos % sealed.len();
            sealed[pos] ^= 1 << bit;
            prop_assert!(s.open_chunk(Verify::Address(&h), &bv, &tree.addr, &sealed).is_err());
            // Appending fails too, and leaves the buffer as it was: no byte of the chunk.
            let mut out = b"reply so far".to_vec();
            prop_assert!(s.open_chunk_append(Verify::Address(&h), &bv, &tree.addr, &sealed, &mut out).is_err());
            prop_assert_eq!(&out[..], b"reply so far");
            // The range that covers the flipped byte's segment (or every segment).
            let seg = pos.saturating_sub(HEADER) / (SEGMENT + TAG);
            let lo = (seg * SEGMENT).min(len - 1);
            prop_assert!(s.open_chunk_range(Verify::Address(&h), &bv, &tree.addr, &sealed, lo..lo + 1).is_err());
            // Without the re-hash, every open still refuses it, and appends nothing.
            prop_assert!(s.open_chunk(Verify::LocalStore, &bv, &tree.addr, &sealed).is_err());
            let mut out = b"reply so far".to_vec();
            prop_assert!(s.open_chunk_append(Verify::LocalStore, &bv, &tree.addr, &sealed, &mut out).is_err());
            prop_assert_eq!(&out[..], b"reply so far");
            prop_assert!(s.open_chunk_range(Verify::LocalStore, &bv, &tree.addr, &sealed, lo..lo + 1).is_err());
        }

        /// A truncated (or extended) chunk opens under neither choice.
        #[test]
        fn any_other_length_fails(len in 1usize..(4 * SEGMENT), cut in 1usize..64, grow in any::<bool>()) {
            let (s, h) = keys();
            let d = data(len, 9);
            let tree = h.chunk_tree(&d);
            let bv = [b"v".as_slice(), &tree.addr.0].concat();
            let mut sealed = s.seal_chunk(0, &bv, &tree, &d).unwrap();
            if grow {
                sealed.resize(sealed.len() + cut, 0);
            } else {
                sealed.truncate(sealed.len() - cut);
            }
            for v in [Verify::Address(&h), Verify::LocalStore] {
                prop_assert!(s.open_chunk(v, &bv, &tree.addr, &sealed).is_err());
                prop_assert!(s.open_chunk_range(v, &bv, &tree.addr, &sealed, 0..1).is_err());
            }
        }
    }

    #[test]
    fn wrong_address_binding_or_swapped_segments_fail() {
        let (s, h) = keys();
        let d = data(3 * SEGMENT, 5);
        let tree = h.chunk_tree(&d);
        let bv = [b"v".as_slice(), &tree.addr.0].concat();
        let sealed = s.seal_chunk(0, &bv, &tree, &d).unwrap();
        let other = h.chunk_addr(b"other");
        assert!(s
            .open_chunk(Verify::Address(&h), &bv, &other, &sealed)
            .is_err());
        assert!(s
            .open_chunk_range(Verify::Address(&h), &bv, &other, &sealed, 0..10)
            .is_err());
        assert!(s
            .open_chunk(Verify::Address(&h), b"w", &tree.addr, &sealed)
            .is_err());
        // Authenticate-only: under another address (bound in the associated data), or with a
        // binding that does not name the address it is read under.
        let v = Verify::LocalStore;
        let bo = [b"v".as_slice(), &other.0].concat();
        assert!(s.open_chunk(v, &bo, &other, &sealed).is_err());
        assert!(s.open_chunk_range(v, &bo, &other, &sealed, 0..10).is_err());
        assert!(matches!(
            s.open_chunk(v, &bv, &other, &sealed),
            Err(CryptoError::Malformed(_))
        ));
        assert!(s.open_chunk(v, b"v", &tree.addr, &sealed).is_err());
        assert!(s
            .open_chunk_segments(v, b"v", &tree.addr, &sealed, 0..1)
            .is_err());
        // Swap segments 0 and 1 (same length): both their tags bind their positions.
        let mut swapped = sealed.clone();
        let (a, b) = (HEADER, HEADER + SEGMENT + TAG);
        let seg0 = sealed[a..b].to_vec();
        swapped.copy_within(b..b + SEGMENT + TAG, a);
        swapped[b..b + SEGMENT + TAG].copy_from_slice(&seg0);
        assert!(s
            .open_chunk(Verify::Address(&h), &bv, &tree.addr, &swapped)
            .is_err());
        assert!(s
            .open_chunk_range(Verify::Address(&h), &bv, &tree.addr, &swapped, 0..10)
            .is_err());
        assert!(s.open_chunk(v, &bv, &tree.addr, &swapped).is_err());
        assert!(s
            .open_chunk_range(v, &bv, &tree.addr, &swapped, 0..10)
            .is_err());
        // A truncated chunk does not parse.
        assert!(s
            .open_chunk_range(
                Verify::Address(&h),
                &bv,
                &tree.addr,
                &sealed[..sealed.len() - 1],
                0..10
            )
            .is_err());
        let truncated = &sealed[..sealed.len() - 1];
        assert!(s
            .open_chunk_range(v, &bv, &tree.addr, truncated, 0..10)
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
        let bv = [b"v".as_slice(), &tree_d.addr.0].concat();
        let mut lie = h.chunk_tree(&e);
        lie.addr = tree_d.addr;
        let sealed = s.seal_chunk(0, &bv, &lie, &e).unwrap();
        assert!(matches!(
            s.open_chunk_range(Verify::Address(&h), &bv, &tree_d.addr, &sealed, 0..10),
            Err(CryptoError::AddressMismatch)
        ));
        assert!(matches!(
            s.open_chunk(Verify::Address(&h), &bv, &tree_d.addr, &sealed),
            Err(CryptoError::AddressMismatch)
        ));
        // Decrypted in place, authentic, but not the address's bytes: none is left behind.
        let mut out = b"head".to_vec();
        assert!(matches!(
            s.open_chunk_append(Verify::Address(&h), &bv, &tree_d.addr, &sealed, &mut out),
            Err(CryptoError::AddressMismatch)
        ));
        assert_eq!(out, b"head");
        // This is the one thing the re-hash adds: authenticate-only opens of the key holder's
        // own store take the lie, whole or in part (docs/security.md says so).
        let v = Verify::LocalStore;
        assert_eq!(s.open_chunk(v, &bv, &tree_d.addr, &sealed).unwrap(), e);
        let part = s.open_chunk_range(v, &bv, &tree_d.addr, &sealed, 0..10);
        assert_eq!(part.unwrap(), &e[..10]);
        // The same for a one-segment chunk (a whole re-hash, no chaining values).
        let (d1, e1) = (data(1000, 6), data(1000, 7));
        let mut lie1 = h.chunk_tree(&e1);
        let addr1 = h.chunk_addr(&d1);
        lie1.addr = addr1;
        let b1 = [b"v".as_slice(), &addr1.0].concat();
        let sealed1 = s.seal_chunk(0, &b1, &lie1, &e1).unwrap();
        assert!(matches!(
            s.open_chunk(Verify::Address(&h), &b1, &addr1, &sealed1),
            Err(CryptoError::AddressMismatch)
        ));
        assert!(matches!(
            s.open_chunk_range(Verify::Address(&h), &b1, &addr1, &sealed1, 0..10),
            Err(CryptoError::AddressMismatch)
        ));
        assert_eq!(s.open_chunk(v, &b1, &addr1, &sealed1).unwrap(), e1);
        // But even a key holder's chunk must be sealed for the address it is read under, with a
        // valid tag: the same lie presented under a third address, or with one bit changed,
        // does not open.
        let third = h.chunk_addr(b"third");
        let b3 = [b"v".as_slice(), &third.0].concat();
        assert!(s.open_chunk(v, &b3, &third, &sealed).is_err());
        assert!(s.open_chunk(v, &bv, &third, &sealed).is_err());
        let mut flipped = sealed.clone();
        flipped[HEADER] ^= 1;
        assert!(s.open_chunk(v, &bv, &tree_d.addr, &flipped).is_err());
    }

    #[test]
    fn local_store_opens_refuse_moved_swapped_and_foreign_parts() {
        // Authenticate-only opens still bind every part to its volume, address, length and
        // position through the associated data (the caller's binding holds the volume id and
        // the address, as the volume layer makes it).
        let (s, h) = keys();
        let bind = |addr: &ChunkAddr| [b"vol".as_slice(), &addr.0].concat();
        let (d, e) = (data(3 * SEGMENT, 10), data(3 * SEGMENT, 11));
        let (td, te) = (h.chunk_tree(&d), h.chunk_tree(&e));
        let sd = s.seal_chunk(0, &bind(&td.addr), &td, &d).unwrap();
        let se = s.seal_chunk(0, &bind(&te.addr), &te, &e).unwrap();
        let v = Verify::LocalStore;
        let open = |sealed: &[u8], range: Range<usize>| {
            let whole = s.open_chunk(v, &bind(&td.addr), &td.addr, sealed);
            let part = s.open_chunk_range(v, &bind(&td.addr), &td.addr, sealed, range);
            (whole.is_err(), part.is_err())
        };
        assert_eq!(open(&sd, 0..10), (false, false));
        // Another chunk stored under this address (swapped chunks): every tag fails.
        assert_eq!(open(&se, 0..10), (true, true));
        assert_eq!(open(&se, 2 * SEGMENT..2 * SEGMENT + 1), (true, true));
        // The same chunk under another volume's binding.
        assert!(s
            .open_chunk(
                v,
                &[b"other".as_slice(), &td.addr.0].concat(),
                &td.addr,
                &sd
            )
            .is_err());
        // Segments swapped within the chunk.
        let seg = |i: usize| HEADER + i * (SEGMENT + TAG)..HEADER + (i + 1) * (SEGMENT + TAG);
        let mut swapped = sd.clone();
        swapped[seg(0)].copy_from_slice(&sd[seg(1)]);
        swapped[seg(1)].copy_from_slice(&sd[seg(0)]);
        assert_eq!(open(&swapped, 0..10), (true, true));
        assert_eq!(open(&swapped, SEGMENT..SEGMENT + 1), (true, true));
        // A segment of another chunk at the same position (and with that chunk's header, so
        // that its nonce is the one the segment was sealed with).
        let mut foreign = sd.clone();
        foreign[seg(1)].copy_from_slice(&se[seg(1)]);
        assert_eq!(open(&foreign, SEGMENT..SEGMENT + 1), (true, true));
        let mut foreign_head = se.clone();
        foreign_head[seg(1)].copy_from_slice(&sd[seg(1)]);
        assert_eq!(open(&foreign_head, SEGMENT..SEGMENT + 1), (true, true));
        // The other chunk's trailer (its length and chaining values).
        let trailer = sd.len() - (LEN + 3 * CV + TAG)..sd.len();
        let mut other_trailer = sd.clone();
        other_trailer[trailer.clone()].copy_from_slice(&se[trailer]);
        assert_eq!(open(&other_trailer, 0..10), (true, true));
        // Truncated to fewer segments, with a header saying so: the length is bound.
        let mut shorter = sd.clone();
        shorter[29..33].copy_from_slice(&(2 * SEGMENT as u32).to_le_bytes());
        shorter.drain(seg(2));
        shorter.truncate(shorter.len() - CV);
        assert_eq!(open(&shorter, 0..10), (true, true));
    }
}
