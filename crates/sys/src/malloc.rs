//! glibc's allocator controls. Elsewhere (musl, other systems) these do nothing.

/// Give the allocator's free memory back to the system: glibc's `malloc_trim(0)`, which returns
/// the free top of every arena and (since glibc 2.8) the free pages inside them. A freed buffer
/// otherwise stays resident in its arena for reuse, and with many threads (one arena each, up to
/// eight per core) a burst of writes leaves hundreds of megabytes resident after it ends. Costs a
/// walk of every arena's free lists under their locks: call it when idle, not per request.
/// Returns whether any memory was released (always false where unsupported).
pub fn release_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes no pointers and only rearranges glibc's own free lists under
        // their locks; it is safe to call from any thread at any time.
        let released = unsafe { libc::malloc_trim(0) };
        released == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Let glibc create at most `arenas` malloc arenas (`mallopt(M_ARENA_MAX, arenas)`), instead of up
/// to eight per core: threads then share arenas, so memory freed by one thread is reused by the
/// next allocation of another instead of sitting in a private arena. Call it early, before the
/// threads start allocating (arenas already made stay). Returns whether glibc accepted it (always
/// false where unsupported).
pub fn limit_malloc_arenas(arenas: u32) -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let Ok(n) = libc::c_int::try_from(arenas.max(1)) else {
            return false;
        };
        // SAFETY: mallopt takes two integers and changes a glibc tunable under its lock; it is
        // safe to call from any thread at any time.
        let accepted = unsafe { libc::mallopt(libc::M_ARENA_MAX, n) };
        accepted == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = arenas;
        false
    }
}

/// For a short-lived process that allocates and frees many large buffers (an import): serve
/// buffers up to `mmap_threshold` bytes from the arenas instead of a fresh `mmap` each, and keep
/// up to `trim_threshold` bytes of free memory at an arena's top instead of returning it at
/// every free (`mallopt(M_MMAP_THRESHOLD)`, `mallopt(M_TRIM_THRESHOLD)`). Each fresh mapping
/// otherwise costs a page fault per 4 KiB touched. Not for a mount: it keeps memory resident.
/// Returns whether glibc accepted both (always false where unsupported).
pub fn keep_large_buffers(mmap_threshold: usize, trim_threshold: usize) -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let (Ok(m), Ok(t)) = (
            libc::c_int::try_from(mmap_threshold),
            libc::c_int::try_from(trim_threshold),
        ) else {
            return false;
        };
        // SAFETY: mallopt takes two integers and changes a glibc tunable under its lock; it is
        // safe to call from any thread at any time.
        let mmap = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, m) };
        // SAFETY: as above.
        let trim = unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, t) };
        mmap == 1 && trim == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = (mmap_threshold, trim_threshold);
        false
    }
}

/// What glibc's allocator holds, in bytes (`mallinfo2`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocatorStats {
    /// Taken from the system for the arenas (`arena`).
    pub arenas: u64,
    /// Free inside the arenas: resident until reused or trimmed (`fordblks`).
    pub free: u64,
}

/// The allocator's totals (glibc's `mallinfo2`, which walks every arena under its lock: call it
/// every few seconds, not per request); `None` where unsupported.
pub fn allocator_stats() -> Option<AllocatorStats> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 takes nothing and returns a plain struct of counters, read under
        // glibc's own locks; it is safe to call from any thread at any time (glibc 2.33+).
        let m = unsafe { libc::mallinfo2() };
        Some(AllocatorStats {
            arenas: m.arena as u64,
            free: m.fordblks as u64,
        })
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimming_after_freeing_a_burst_is_harmless_and_repeatable() {
        let burst: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 100 << 10]).collect();
        drop(burst);
        release_free_memory();
        release_free_memory();
        let v = vec![7u8; 1 << 20];
        assert_eq!(v.iter().map(|&b| b as usize).sum::<usize>(), 7 << 20);
    }

    #[test]
    fn arenas_can_be_limited_on_glibc() {
        let glibc = cfg!(all(target_os = "linux", target_env = "gnu"));
        assert_eq!(limit_malloc_arenas(4), glibc);
        let v = vec![1u8; 1 << 20];
        assert_eq!(v.len(), 1 << 20);
    }

    #[test]
    fn allocator_stats_see_the_arenas() {
        if !cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert_eq!(allocator_stats(), None);
            return;
        }
        let v = vec![1u8; 64 << 20];
        let s = allocator_stats().unwrap();
        assert!(s.free <= s.arenas, "{s:?}");
        drop(v);
        let v: Vec<Vec<u8>> = (0..256).map(|_| vec![1u8; 64 << 10]).collect();
        let after = allocator_stats().unwrap();
        assert!(after.arenas >= 16 << 20, "{after:?}");
        drop(v);
    }
}
