//! Key material in locked pages.
//!
//! Keys are 32 bytes; locking each in a page of its own would lock 4 KiB per key, and locking
//! the heap page a `Box` happens to share with other allocations would not survive the first
//! `munlock` of a neighbour (locks are per page, not counted). So key slots come from a small pool
//! of pages of their own, mapped anonymously, each locked once when mapped (`mlock`) and marked
//! `MADV_DONTDUMP`. A slot is zeroized when its key is dropped; a page whose last key is dropped
//! is unlocked and unmapped, except the first, which stays for the next key.
//!
//! Locking can fail: an unprivileged process without CAP_IPC_LOCK whose `RLIMIT_MEMLOCK` is used
//! up. The key is then kept in the (unlocked) pool page anyway, and a warning is logged once:
//! refusing to run would help nobody, and encrypted swap covers it.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use rustix::mm::{Advice, MapFlags, ProtFlags};
use zeroize::Zeroize;

/// Bytes of one key.
const KEY_LEN: usize = 32;

/// Slots per page are tracked in one `u128`: at most 128 of them (all of a 4 KiB page).
const MAX_SLOTS: usize = 128;

/// 32 bytes of key material in a locked page (see the module documentation). No `Debug`,
/// `Clone`, `Copy` or `Default`; zeroized on drop. Moving it moves a pointer: the bytes stay
/// where they were made.
pub struct LockedKey(Slot);

enum Slot {
    /// A slot in a pool page; `locked` if that page is locked into RAM.
    Pool {
        at: NonNull<[u8; KEY_LEN]>,
        locked: bool,
    },
    /// No page could be mapped at all (the system is out of memory or of mappings): an ordinary
    /// heap allocation, zeroized on drop like the rest.
    Heap(Box<[u8; KEY_LEN]>),
}

// SAFETY: a `LockedKey` owns its slot exclusively, as a `Box` owns its allocation: the pool hands
// a slot to one key and takes it back only in that key's `drop`, and the page stays mapped while
// any of its slots is handed out. Sending the key to another thread moves that ownership.
unsafe impl Send for LockedKey {}
// SAFETY: through `&LockedKey` only `expose` is reachable, which reads the bytes; writing needs
// `&mut LockedKey`. Shared reads from several threads are sound, as for `&Box<[u8; 32]>`.
unsafe impl Sync for LockedKey {}

impl LockedKey {
    /// All zeros, in a locked page if one can be had.
    pub fn zeroed() -> LockedKey {
        match Pool::take() {
            Some((at, locked)) => LockedKey(Slot::Pool { at, locked }),
            None => LockedKey(Slot::Heap(Box::new([0u8; KEY_LEN]))),
        }
    }

    /// The bytes.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        match &self.0 {
            // SAFETY: `at` points at a slot of a mapped page that this key owns exclusively (see
            // the `Send` implementation); the returned borrow is tied to `&self`, so the slot is
            // not given back while it lives.
            Slot::Pool { at, .. } => unsafe { at.as_ref() },
            Slot::Heap(b) => b,
        }
    }

    /// The bytes, to write a key in place.
    pub fn expose_mut(&mut self) -> &mut [u8; KEY_LEN] {
        match &mut self.0 {
            // SAFETY: as in `expose`, and the borrow is tied to `&mut self`, so it is the only one.
            Slot::Pool { at, .. } => unsafe { at.as_mut() },
            Slot::Heap(b) => b,
        }
    }

    /// Whether the bytes are in a page locked into RAM.
    pub fn is_locked(&self) -> bool {
        matches!(self.0, Slot::Pool { locked: true, .. })
    }
}

impl Drop for LockedKey {
    fn drop(&mut self) {
        self.expose_mut().zeroize();
        if let Slot::Pool { at, .. } = self.0 {
            Pool::give_back(at);
        }
    }
}

/// One mapped page of key slots.
struct Page {
    base: NonNull<u8>,
    /// Bit i set: slot i is handed out.
    used: u128,
    locked: bool,
}

struct Pool {
    pages: Vec<Page>,
    page_size: usize,
}

// SAFETY: the raw page pointers are only dereferenced by the `LockedKey` owning a slot, or by the
// pool under its mutex for slots no key owns; moving the bookkeeping between threads is sound.
unsafe impl Send for Pool {}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    pages: Vec::new(),
    page_size: 0,
});

/// Set once the first warning about locking is logged.
static WARNED: AtomicBool = AtomicBool::new(false);

impl Pool {
    fn lock() -> MutexGuard<'static, Pool> {
        // The pool's invariants hold between statements (a panic cannot leave a half-updated
        // bit mask behind), so a poisoned lock is still a consistent pool.
        POOL.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn slots(&self) -> usize {
        (self.page_size / KEY_LEN).min(MAX_SLOTS)
    }

    /// A free slot (zeroed) and whether its page is locked; `None` if no page can be mapped.
    fn take() -> Option<(NonNull<[u8; KEY_LEN]>, bool)> {
        let mut pool = Pool::lock();
        if pool.page_size == 0 {
            pool.page_size = rustix::param::page_size().max(KEY_LEN);
        }
        let slots = pool.slots();
        let full = if slots == MAX_SLOTS {
            u128::MAX
        } else {
            (1u128 << slots) - 1
        };
        let page_size = pool.page_size;
        let index = match pool.pages.iter().position(|p| p.used != full) {
            Some(i) => i,
            None => {
                pool.pages.push(Page::map(page_size)?);
                pool.pages.len() - 1
            }
        };
        let page = &mut pool.pages[index];
        let slot = (!page.used).trailing_zeros() as usize;
        page.used |= 1u128 << slot;
        // Slots are zeroed when given back, and pages come zeroed from the kernel.
        let at = page
            .base
            .as_ptr()
            .wrapping_add(slot * KEY_LEN)
            .cast::<[u8; KEY_LEN]>();
        Some((NonNull::new(at)?, page.locked))
    }

    /// Take back the (already zeroized) slot at `at`; unmap its page if it was the last slot
    /// in use there and other pages remain.
    fn give_back(at: NonNull<[u8; KEY_LEN]>) {
        let mut pool = Pool::lock();
        let page_size = pool.page_size;
        let addr = at.as_ptr() as usize;
        let Some(index) = pool.pages.iter().position(|p| {
            let base = p.base.as_ptr() as usize;
            (base..base + page_size).contains(&addr)
        }) else {
            return;
        };
        let page = &mut pool.pages[index];
        let slot = (addr - page.base.as_ptr() as usize) / KEY_LEN;
        page.used &= !(1u128 << slot);
        if page.used == 0 && pool.pages.len() > 1 {
            let page = pool.pages.swap_remove(index);
            page.unmap(page_size);
        }
    }
}

impl Page {
    /// A fresh zeroed page, locked if the process may, and left out of core dumps.
    fn map(page_size: usize) -> Option<Page> {
        // SAFETY: an anonymous private mapping at an address the kernel chooses: it aliases no
        // Rust object, and `page_size` is the system's page size.
        let mapped = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                page_size,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )
        };
        let base = match mapped {
            Ok(p) => NonNull::new(p.cast::<u8>())?,
            Err(e) => {
                warn_once(&format!(
                    "cannot map a page for key material ({e}): keys are kept in ordinary memory, which may be written to swap; use encrypted swap"
                ));
                return None;
            }
        };
        let ptr = base.as_ptr().cast::<c_void>();
        // SAFETY: [ptr, ptr + page_size) is the mapping just made, owned by the pool.
        let locked = match unsafe { rustix::mm::mlock(ptr, page_size) } {
            Ok(()) => true,
            Err(e) => {
                warn_once(&format!(
                    "cannot lock key material in memory ({e}): keys may be written to swap; give the process CAP_IPC_LOCK or a memlock limit (ulimit -l) of at least 64 KiB, or use encrypted swap"
                ));
                false
            }
        };
        // SAFETY: as above; the advice only keeps the page out of core dumps.
        let _ = unsafe { rustix::mm::madvise(ptr, page_size, Advice::LinuxDontDump) };
        Some(Page {
            base,
            used: 0,
            locked,
        })
    }

    /// Unlock and unmap a page with no slot in use.
    fn unmap(self, page_size: usize) {
        let ptr = self.base.as_ptr().cast::<c_void>();
        if self.locked {
            // SAFETY: the page is this pool's mapping; no key uses any slot of it.
            let _ = unsafe { rustix::mm::munlock(ptr, page_size) };
        }
        // SAFETY: as above: no reference into the page exists (every slot was given back, and
        // the pool never keeps references), so the mapping can go.
        let _ = unsafe { rustix::mm::munmap(ptr, page_size) };
    }
}

fn warn_once(message: &str) {
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!("{message}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of the slot at `addr` if its page is still mapped (read under the pool's lock,
    /// so the page cannot go meanwhile).
    fn slot_bytes(addr: usize) -> Option<[u8; KEY_LEN]> {
        let pool = Pool::lock();
        let page_size = pool.page_size;
        pool.pages.iter().find_map(|p| {
            let base = p.base.as_ptr() as usize;
            if !(base..base + page_size).contains(&addr) {
                return None;
            }
            let at = p.base.as_ptr().wrapping_add(addr - base);
            let mut out = [0u8; KEY_LEN];
            // SAFETY: `at` lies in a page the pool holds mapped (its lock is held), and the
            // slot is not owned by any key (the test dropped it), so nothing else writes it.
            unsafe { std::ptr::copy_nonoverlapping(at, out.as_mut_ptr(), KEY_LEN) };
            Some(out)
        })
    }

    #[test]
    fn keys_get_separate_slots_and_pages_come_and_go() {
        let mut keys: Vec<LockedKey> = (0..3 * MAX_SLOTS + 5)
            .map(|_| LockedKey::zeroed())
            .collect();
        for (i, k) in keys.iter_mut().enumerate() {
            assert_eq!(k.expose(), &[0u8; KEY_LEN], "a new key is zeroed");
            k.expose_mut().fill(i as u8);
        }
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(k.expose(), &[i as u8; KEY_LEN], "no key overlaps another");
        }
        let pages = Pool::lock().pages.len();
        assert!(pages >= 4, "{pages} pages for {} keys", keys.len());
        drop(keys);
        // Other tests may hold keys meanwhile; this test's pages are gone unless they do.
        assert!(Pool::lock().pages.len() < pages);
    }

    #[test]
    fn a_dropped_key_is_zeroized_in_place() {
        let mut keep = LockedKey::zeroed(); // keeps the page mapped
        keep.expose_mut().fill(1);
        let mut k = LockedKey::zeroed();
        k.expose_mut().fill(0xa5);
        let addr = k.expose().as_ptr() as usize;
        assert_eq!(slot_bytes(addr), Some([0xa5; KEY_LEN]));
        drop(k);
        if let Some(bytes) = slot_bytes(addr) {
            // Another test may have taken the slot again and written its own key; never ours.
            assert_ne!(bytes, [0xa5; KEY_LEN]);
        }
        assert_eq!(keep.expose(), &[1; KEY_LEN]);
    }

    #[test]
    fn moving_a_key_leaves_its_bytes_where_they_are() {
        let mut k = LockedKey::zeroed();
        k.expose_mut()[0] = 9;
        let at = k.expose().as_ptr();
        let moved = std::thread::spawn(move || {
            let v = vec![k];
            v.into_iter().next()
        })
        .join()
        .unwrap()
        .unwrap();
        assert_eq!(moved.expose().as_ptr(), at);
        assert_eq!(moved.expose()[0], 9);
    }

    #[test]
    fn keys_are_locked_when_the_process_may_lock() {
        let k = LockedKey::zeroed();
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let locked_kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmLck:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        if k.is_locked() {
            assert!(locked_kib >= 4, "VmLck {locked_kib} kB");
        }
        // CAP_IPC_LOCK (bit 14): locking cannot fail for want of a memlock allowance.
        let cap_ipc_lock = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .is_some_and(|caps| caps & (1 << 14) != 0);
        if cap_ipc_lock {
            assert!(k.is_locked(), "a process with CAP_IPC_LOCK could not lock");
        }
    }
}
