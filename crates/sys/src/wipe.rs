//! Plaintext buffers zeroed when dropped, at memory speed.
//!
//! `zeroize` writes each byte with its own volatile store so that the compiler cannot drop the
//! writes as dead: a byte per store, about 15 times slower than `memset`. For the plaintext of
//! file data (megabytes a second, dropped as the cache turns over) that was a twentieth of a
//! mount's CPU. [`wipe`] zeroes with an ordinary fill (vectorised `memset`) and then hands the
//! buffer's address to an empty `asm!` block that may read memory: the compiler must assume the
//! zeros are observed, so it can neither remove nor shorten the fill. (The technique of
//! BoringSSL's `OPENSSL_cleanse`: `memset` followed by an empty asm statement with a memory
//! clobber.)

use std::ops::{Deref, DerefMut};

/// Zero `buf`, in a way the compiler cannot elide.
pub fn wipe(buf: &mut [u8]) {
    buf.fill(0);
    // SAFETY: the asm block is empty: it takes the buffer's address in a register and does
    // nothing with it, touches no stack and no flags. Declaring that it may read memory
    // (`readonly`, no `nomem`) is what keeps the fill above from being removed as dead.
    unsafe {
        std::arch::asm!("/* {0} */", in(reg) buf.as_ptr(), options(nostack, readonly, preserves_flags));
    }
}

/// A byte vector whose whole allocation (spare capacity included) is [`wipe`]d when dropped.
#[derive(Default)]
pub struct WipedVec(Vec<u8>);

impl WipedVec {
    pub fn new(v: Vec<u8>) -> WipedVec {
        WipedVec(v)
    }
}

impl Deref for WipedVec {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for WipedVec {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl Drop for WipedVec {
    fn drop(&mut self) {
        let cap = self.0.capacity();
        // Spare capacity may hold bytes from before a truncation: zero it too.
        self.0.resize(cap, 0);
        wipe(&mut self.0);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn wipe_zeroes_every_byte() {
        let mut b: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8 | 1).collect();
        wipe(&mut b[3..]);
        assert_eq!(&b[..3], &[1, 1, 3]);
        assert!(b[3..].iter().all(|x| *x == 0));
    }

    #[test]
    fn a_wiped_vec_derefs_to_its_bytes_and_drops_cleanly() {
        let mut v = WipedVec::new(vec![7u8; 10]);
        v.truncate(4);
        v.push(9);
        assert_eq!(&v[..], &[7, 7, 7, 7, 9]);
        drop(v);
        drop(WipedVec::default());
    }
}
