//! A mount's memory: what the process holds (for reports), and when to give memory back.
//!
//! The plaintext cache's budget follows three signals (the housekeeping "memory" task reads
//! them every second):
//! - **the host**: when less than an eighth of its memory is available the budget drops to an
//!   eighth; it returns when a quarter is available again;
//! - **the volume**: when it has served no request for [`IDLE_AFTER`], the budget drops to an
//!   eighth too, the RocksDB memtables are flushed, and the allocator's free memory goes back
//!   to the system (`malloc_trim`); the next request brings the budget back;
//! - **writes**: after [`LEND_AFTER`] without a write request, with nothing left buffered, the
//!   plaintext cache may borrow the write buffers' and memtables' shares (as much as the process
//!   has room for); the next write takes them back before it buffers anything.
//!
//! The task also gives the allocator's free memory back while the process holds more than
//! 15/16 of its budget. Without these trims, buffers freed after a burst of writes stay resident
//! in glibc's arenas (docs/benchmarks.md, "Memory").

use std::time::{Duration, Instant};

/// A volume that served no request for this long is idle.
pub const IDLE_AFTER: Duration = Duration::from_secs(10);

/// The mount process's memory, from `/proc/self/status`, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProcessMemory {
    /// Resident now (`VmRSS`).
    pub resident: u64,
    /// The most ever resident (`VmHWM`).
    pub peak: u64,
    /// Locked into RAM (`VmLck`): key material only.
    pub locked: u64,
}

impl ProcessMemory {
    /// This process's; `None` without `/proc`.
    pub fn of_this_process() -> Option<ProcessMemory> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        Some(ProcessMemory {
            resident: kib_field(&status, "VmRSS:")?,
            peak: kib_field(&status, "VmHWM:")?,
            locked: kib_field(&status, "VmLck:")?,
        })
    }
}

/// What the stats file says of a mount's memory, in bytes: the process (as the kernel counts
/// it) and the parts sealvol tracks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MemoryReport {
    /// The mount's budget (`--memory`).
    pub budget_bytes: u64,
    /// Resident now (`VmRSS`), the most ever (`VmHWM`), locked (`VmLck`); 0 without `/proc`.
    pub resident_bytes: u64,
    pub peak_bytes: u64,
    pub locked_bytes: u64,
    /// The plaintext cache, with its bookkeeping, and what it has borrowed from the write path
    /// (see [`LEND_AFTER`]).
    pub cache_bytes: u64,
    pub cache_loan_bytes: u64,
    /// Written data buffered in open files, not yet handed to a write-out.
    pub write_buffer_bytes: u64,
    /// RocksDB's memtables, block cache and table readers (0 if the engine does not say).
    pub memtable_bytes: u64,
    pub block_cache_bytes: u64,
    pub table_reader_bytes: u64,
    /// Free memory inside the allocator's arenas: resident until reused or given back, unless
    /// already given back (0 where the allocator does not say).
    pub allocator_free_bytes: u64,
}

impl MemoryReport {
    /// The report for `vol`, mounted with a budget of `budget` bytes, now.
    pub fn of(vol: &sealvol_volume::Volume, budget: usize) -> MemoryReport {
        let process = ProcessMemory::of_this_process().unwrap_or_default();
        let engine = vol.engine().memory().unwrap_or_default();
        let allocator = sealvol_sys::allocator_stats().unwrap_or_default();
        MemoryReport {
            budget_bytes: budget as u64,
            resident_bytes: process.resident,
            peak_bytes: process.peak,
            locked_bytes: process.locked,
            cache_bytes: vol.cached_bytes() as u64,
            cache_loan_bytes: vol.cache_loan() as u64,
            write_buffer_bytes: vol.buffered_bytes() as u64,
            memtable_bytes: engine.memtables,
            block_cache_bytes: engine.block_cache,
            table_reader_bytes: engine.table_readers,
            allocator_free_bytes: allocator.free,
        }
    }
}

/// The value of a `NAME:   123 kB` line of a `/proc` file, in bytes.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line
        .get(name.len()..)?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// (MemTotal, MemAvailable) of the host in bytes.
pub(crate) fn meminfo() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    Some((
        kib_field(&text, "MemTotal:")?,
        kib_field(&text, "MemAvailable:")?,
    ))
}

/// What the governor sees on one tick.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reading {
    /// The host's (MemTotal, MemAvailable); `None` if unknown.
    pub(crate) host: Option<(u64, u64)>,
    /// Requests served so far; `None` if not counted (the volume is then never idle).
    pub(crate) requests: Option<u64>,
    /// Write requests served so far; `None` if not counted (nothing is then ever lent).
    pub(crate) writes: Option<u64>,
    /// Whether written data is buffered, not yet written out.
    pub(crate) dirty: bool,
    pub(crate) now: Instant,
}

/// What the governor decided on one reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Decision {
    /// The plaintext cache's new budget, if it changes.
    pub(crate) cache_budget: Option<usize>,
    /// The volume has just become idle: flush memtables and give free memory back.
    pub(crate) went_idle: bool,
    /// Start lending the cache the write path's memory (`Some(true)`), or stop (`Some(false)`).
    pub(crate) lend: Option<bool>,
}

/// The plaintext cache's budget and loan from the host's memory and the volume's activity (see
/// the module documentation).
pub(crate) struct Governor {
    budget: usize,
    short: bool,
    idle: bool,
    requests: u64,
    quiet_since: Instant,
    idle_after: Duration,
    writes: u64,
    writes_quiet_since: Instant,
    lent: bool,
}

impl Governor {
    pub(crate) fn new(budget: usize, idle_after: Duration, now: Instant) -> Governor {
        Governor {
            budget,
            short: false,
            idle: false,
            requests: 0,
            quiet_since: now,
            idle_after,
            writes: 0,
            writes_quiet_since: now,
            lent: false,
        }
    }

    fn current(&self) -> usize {
        if self.short || self.idle {
            self.budget / 8
        } else {
            self.budget
        }
    }

    pub(crate) fn observe(&mut self, r: Reading) -> Decision {
        let before = self.current();
        if let Some((total, available)) = r.host {
            self.short = if self.short {
                available < total / 4
            } else {
                available < total / 8
            };
        }
        let mut went_idle = false;
        if r.requests.is_none_or(|n| n != self.requests) {
            self.requests = r.requests.unwrap_or(self.requests);
            self.quiet_since = r.now;
            self.idle = false;
        } else if !self.idle && r.now.duration_since(self.quiet_since) >= self.idle_after {
            self.idle = true;
            went_idle = true;
        }
        if r.writes.is_none_or(|n| n != self.writes) {
            // A write ended any loan already (it repays before it buffers).
            self.writes = r.writes.unwrap_or(self.writes);
            self.writes_quiet_since = r.now;
            self.lent = false;
        }
        let may_lend = r.writes.is_some()
            && !r.dirty
            && !self.short
            && !self.idle
            && r.now.duration_since(self.writes_quiet_since) >= LEND_AFTER;
        let lend = (may_lend != self.lent).then_some(may_lend);
        self.lent = may_lend;
        let after = self.current();
        Decision {
            cache_budget: (after != before).then_some(after),
            went_idle,
            lend,
        }
    }
}

/// After this long without a write (and nothing left buffered), the plaintext cache may borrow
/// the write path's memory.
pub const LEND_AFTER: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(host: Option<(u64, u64)>, requests: u64, now: Instant) -> Reading {
        Reading {
            host,
            requests: Some(requests),
            writes: None,
            dirty: false,
            now,
        }
    }

    #[test]
    fn cache_budget_follows_host_memory_with_hysteresis() {
        let t = Instant::now();
        let mut g = Governor::new(800, Duration::from_secs(3600), t);
        let at = |g: &mut Governor, avail: u64, requests: u64| {
            g.observe(reading(Some((1000, avail)), requests, t))
                .cache_budget
        };
        assert_eq!(at(&mut g, 500, 1), None, "plenty: unchanged");
        assert_eq!(
            at(&mut g, 120, 2),
            Some(100),
            "below an eighth: an eighth of the budget"
        );
        assert_eq!(
            at(&mut g, 200, 3),
            None,
            "between an eighth and a quarter: stays short"
        );
        assert_eq!(
            at(&mut g, 250, 4),
            Some(800),
            "a quarter again: the whole budget"
        );
        assert_eq!(at(&mut g, 200, 5), None, "not short until below an eighth");
    }

    #[test]
    fn an_idle_volume_gives_memory_back_once_and_takes_it_again_when_used() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut g = Governor::new(800, s(10), t0);
        let plenty = Some((1000, 900));
        let d = g.observe(reading(plenty, 5, t0 + s(1)));
        assert_eq!((d.cache_budget, d.went_idle), (None, false), "busy");
        let d = g.observe(reading(plenty, 5, t0 + s(10)));
        assert_eq!((d.cache_budget, d.went_idle), (None, false), "quiet 9 s");
        let d = g.observe(reading(plenty, 5, t0 + s(11)));
        assert_eq!(
            (d.cache_budget, d.went_idle),
            (Some(100), true),
            "quiet 10 s: idle"
        );
        let d = g.observe(reading(plenty, 5, t0 + s(60)));
        assert_eq!((d.cache_budget, d.went_idle), (None, false), "idle once");
        // Short of memory while idle: already an eighth.
        let d = g.observe(reading(Some((1000, 50)), 5, t0 + s(61)));
        assert_eq!(d.cache_budget, None);
        let d = g.observe(reading(Some((1000, 900)), 6, t0 + s(62)));
        assert_eq!(
            (d.cache_budget, d.went_idle),
            (Some(800), false),
            "a request and plenty of memory: the whole budget"
        );
        // Without /proc/meminfo, activity alone decides.
        let d = g.observe(reading(None, 6, t0 + s(72)));
        assert_eq!((d.cache_budget, d.went_idle), (Some(100), true));
        // Without a request count, never idle.
        let mut g = Governor::new(800, s(10), t0);
        let d = g.observe(Reading {
            requests: None,
            ..reading(plenty, 0, t0 + s(3600))
        });
        assert_eq!((d.cache_budget, d.went_idle), (None, false));
    }

    #[test]
    fn the_cache_borrows_while_nothing_is_written_and_not_while_idle_or_short() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut g = Governor::new(800, Duration::from_secs(10), t0);
        let plenty = Some((1000, 900));
        let at = |requests: u64, writes: u64, dirty: bool, after: Duration| Reading {
            host: plenty,
            requests: Some(requests),
            writes: Some(writes),
            dirty,
            now: t0 + after,
        };
        assert_eq!(g.observe(at(1, 1, true, ms(500))).lend, None, "writing");
        assert_eq!(
            g.observe(at(2, 1, true, ms(3000))).lend,
            None,
            "data still buffered"
        );
        assert_eq!(
            g.observe(at(3, 1, false, ms(3000))).lend,
            Some(true),
            "no write for 2 s, nothing buffered: lend"
        );
        assert_eq!(g.observe(at(4, 1, false, ms(4000))).lend, None, "lent once");
        // A write ended the loan itself; lent again after another quiet spell.
        assert_eq!(g.observe(at(5, 2, true, ms(5000))).lend, None);
        assert_eq!(g.observe(at(6, 2, false, ms(7000))).lend, Some(true));
        // Idle: the cache shrinks, and the loan ends.
        let d = g.observe(at(6, 2, false, ms(17_000)));
        assert_eq!((d.went_idle, d.lend), (true, Some(false)));
        // Used again (reads only): lent again.
        assert_eq!(g.observe(at(7, 2, false, ms(18_000))).lend, Some(true));
        // The host short of memory: no loan.
        let d = g.observe(Reading {
            host: Some((1000, 50)),
            ..at(8, 2, false, ms(19_000))
        });
        assert_eq!((d.cache_budget, d.lend), (Some(100), Some(false)));
        // Writes not counted: never lent.
        let mut g = Governor::new(800, Duration::from_secs(10), t0);
        let d = g.observe(Reading {
            writes: None,
            ..at(1, 0, false, ms(60_000))
        });
        assert_eq!(d.lend, None);
    }

    #[test]
    fn proc_fields_read_as_bytes() {
        let text = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t    1024 kB\nVmLck:\t       4 kB\n";
        assert_eq!(kib_field(text, "VmRSS:"), Some(1 << 20));
        assert_eq!(kib_field(text, "VmLck:"), Some(4096));
        assert_eq!(kib_field(text, "VmSwap:"), None);
        let me = ProcessMemory::of_this_process().expect("/proc/self/status");
        assert!(me.resident > 0 && me.peak >= me.resident, "{me:?}");
    }
}
