//! A hardware CRC32C for RocksDB.
//!
//! RocksDB checksums every write-ahead-log record, table block and blob record with CRC32C.
//! Debian's `librocksdb` is built for the baseline x86-64 (no SSE4.2 at compile time), and
//! RocksDB 7.8 chooses its hardware CRC32C only at compile time on x86, so every checksum runs
//! the portable table-driven loop: a fifth of a mount's CPU during a sequential write was in
//! `BlobLogRecord::EncodeHeaderTo`, the CRC32C of each sealed chunk written to a blob file.
//!
//! The library calls `rocksdb::crc32c::Extend(uint32_t, const char*, size_t)` through its
//! procedure linkage table (37 call sites in 7.8.3), so a definition of that symbol in the
//! executable takes precedence (ELF symbol interposition) once the executable exports it: the
//! workspace's `.cargo/config.toml` passes `--export-dynamic-symbol` for it to the linker.
//! This definition computes the same function (standard CRC32C, extended from `crc`) with
//! SSE4.2 where the CPU has it (the `crc32c` crate chooses at run time). If the symbol is not
//! exported (another linker, `RUSTFLAGS` replacing the workspace's), RocksDB keeps its own: the
//! same values, only slower. [`crc32c_interposed`] says which one RocksDB calls.

use std::ffi::c_char;

/// The mangled name of `rocksdb::crc32c::Extend(unsigned int, char const*, unsigned long)`.
const EXTEND: &std::ffi::CStr = c"_ZN7rocksdb6crc32c6ExtendEjPKcm";

/// RocksDB's `crc32c::Extend`: the CRC32C of `size` bytes at `buf`, continuing from `crc` (the
/// CRC32C of what came before them; 0 for none).
///
/// # Safety
/// `buf` points to `size` readable bytes (it may be dangling or null when `size` is 0), as
/// RocksDB's callers guarantee for its own definition.
// (Exported by its `#[no_mangle]` whatever its Rust visibility.)
#[no_mangle]
pub(crate) unsafe extern "C" fn _ZN7rocksdb6crc32c6ExtendEjPKcm(
    crc: u32,
    buf: *const c_char,
    size: usize,
) -> u32 {
    if size == 0 || buf.is_null() {
        return crc;
    }
    // SAFETY: the caller guarantees `size` readable bytes at `buf` (non-null, checked above),
    // which nothing writes while this call reads them, exactly as for RocksDB's own definition.
    let data = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), size) };
    crc32c::crc32c_append(crc, data)
}

/// Whether RocksDB's `crc32c::Extend` resolves to the definition above (the executable exports
/// it), and whether that runs on SSE4.2: `(interposed, hardware)`.
pub fn crc32c_interposed() -> (bool, bool) {
    let ours = _ZN7rocksdb6crc32c6ExtendEjPKcm as *const ();
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only looks the symbol up in the
    // global scope; it reads the name and returns an address (or null) without calling it.
    let found = unsafe { libc::dlsym(libc::RTLD_DEFAULT, EXTEND.as_ptr()) };
    let interposed = std::ptr::eq(found.cast_const().cast::<()>(), ours);
    #[cfg(target_arch = "x86_64")]
    let hardware = std::arch::is_x86_feature_detected!("sse4.2");
    #[cfg(not(target_arch = "x86_64"))]
    let hardware = false;
    (interposed, hardware)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn extend(crc: u32, data: &[u8]) -> u32 {
        // SAFETY: `data` is a live slice of `data.len()` bytes.
        unsafe { _ZN7rocksdb6crc32c6ExtendEjPKcm(crc, data.as_ptr().cast(), data.len()) }
    }

    /// The bitwise definition: reflected CRC32C (polynomial 0x82F63B78), inverted in and out.
    fn reference(crc: u32, data: &[u8]) -> u32 {
        let mut c = !crc;
        for &b in data {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    (c >> 1) ^ 0x82F6_3B78
                } else {
                    c >> 1
                };
            }
        }
        !c
    }

    #[test]
    fn matches_the_standard_check_value_and_rocksdbs_own_test_vectors() {
        assert_eq!(extend(0, b"123456789"), 0xE306_9283);
        // From RocksDB's util/crc32c_test.cc (iSCSI, RFC 3720 B.4).
        assert_eq!(extend(0, &[0u8; 32]), 0x8a91_36aa);
        assert_eq!(extend(0, &[0xffu8; 32]), 0x62a8_ab43);
        let up: Vec<u8> = (0..32).collect();
        assert_eq!(extend(0, &up), 0x46dd_794e);
        let down: Vec<u8> = (0..32).rev().collect();
        assert_eq!(extend(0, &down), 0x113f_db5c);
        // Extend(Value(a), b) == Value(a ++ b), as RocksDB's ExtendTest checks.
        assert_eq!(
            extend(extend(0, b"hello "), b"world"),
            extend(0, b"hello world")
        );
        assert_eq!(extend(7, &[]), 7);
        let empty: *const c_char = std::ptr::null();
        // SAFETY: a null pointer with length 0 is what callers may pass for an empty slice.
        let crc = unsafe { _ZN7rocksdb6crc32c6ExtendEjPKcm(9, empty, 0) };
        assert_eq!(crc, 9);
    }

    #[test]
    fn agrees_with_the_bitwise_definition_at_every_length_alignment_and_seed() {
        let data: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for start in 0..9 {
            for len in (0..300).chain([1000, 4000 - start]) {
                let piece = &data[start..start + len];
                for seed in [0, 1, 0xdead_beef] {
                    assert_eq!(
                        extend(seed, piece),
                        reference(seed, piece),
                        "start {start} len {len} seed {seed}"
                    );
                }
            }
        }
    }
}
