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
        let accepted = limit_malloc_arenas(4);
        assert_eq!(accepted, cfg!(all(target_os = "linux", target_env = "gnu")));
    }
}
