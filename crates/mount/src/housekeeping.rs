//! A mount's background work, in one place with one stop signal:
//!
//! | task | every | what |
//! |---|---|---|
//! | purge | 20 ms | delete the unlinked files the kernel has forgotten, many per transaction |
//! | stats | 2 s | publish the volume's totals to the stats file (if any) |
//! | memory | 1 s | shrink the plaintext cache to an eighth while the host is short of memory or the volume idle (on going idle, also flush memtables and give free memory back); give free memory back while the process holds more than 15/16 of its budget; lend the cache the write path's share while nothing is written ([`crate::memory`]) |
//! | reclaim | 60 s | trim the operation log; compact the store if it holds much more than its live data |
//!
//! Each task runs on its own thread (a compaction must not hold up purging), and each waits on
//! the shared stop signal (a condition variable) between runs, so [`Housekeeping::stop`] ends
//! a wait at once, lets a run in progress finish, and joins every thread before it returns:
//! the volume can then be closed with no maintenance running during or after the close.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sealvol_volume::{MemorySplit, Volume};

use crate::memory::{meminfo, Governor, MemoryReport, ProcessMemory, Reading, IDLE_AFTER};
use crate::MountError;

/// Periods and targets of a volume's housekeeping.
#[derive(Clone, Debug)]
pub struct HousekeepingConfig {
    /// Where to publish the totals (as `sealvol stats --json` prints them, with the mount's
    /// memory); none if `None`.
    pub stats_file: Option<PathBuf>,
    /// The mount's memory budget, for the report.
    pub memory_budget: usize,
    /// The plaintext cache's budget, which the memory task shrinks and restores.
    pub cache_budget: usize,
    /// Grows with every request the volume serves (`SealFs::requests`); without it the volume
    /// never counts as idle.
    pub requests: Option<Arc<AtomicU64>>,
    /// Grows with every write request (`SealFs::writes`); without it the plaintext cache never
    /// borrows the write path's memory.
    pub writes: Option<Arc<AtomicU64>>,
    /// What the plaintext cache may borrow while nothing is written (see [`crate::memory`]).
    pub cache_loan: usize,
    /// How long without a request before the volume is idle (see [`crate::memory`]).
    pub idle_after: Duration,
    pub purge_every: Duration,
    pub stats_every: Duration,
    pub memory_every: Duration,
    pub reclaim_every: Duration,
}

impl HousekeepingConfig {
    pub fn new(stats_file: Option<PathBuf>, memory: &MemorySplit) -> HousekeepingConfig {
        HousekeepingConfig {
            stats_file,
            memory_budget: memory.total,
            cache_budget: memory.cache,
            requests: None,
            writes: None,
            cache_loan: memory.cache_loan,
            idle_after: IDLE_AFTER,
            purge_every: Duration::from_millis(20),
            stats_every: Duration::from_secs(2),
            memory_every: Duration::from_secs(1),
            reclaim_every: Duration::from_secs(60),
        }
    }
}

/// Set once, waited on by every task between runs.
#[derive(Default)]
struct StopSignal {
    stopped: Mutex<bool>,
    cv: Condvar,
}

impl StopSignal {
    fn stop(&self) {
        *self.stopped.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.cv.notify_all();
    }

    /// Wait `period` or until stopped, whichever comes first; true if stopped.
    fn wait(&self, period: Duration) -> bool {
        let deadline = Instant::now() + period;
        let mut stopped = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if *stopped {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            stopped = self
                .cv
                .wait_timeout(stopped, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// Background tasks sharing one stop signal. Dropping it stops and joins them too.
pub struct Housekeeping {
    stop: Arc<StopSignal>,
    threads: Vec<(String, JoinHandle<()>)>,
    runs: Arc<AtomicU64>,
}

impl Default for Housekeeping {
    fn default() -> Self {
        Housekeeping::new()
    }
}

impl Housekeeping {
    /// No tasks yet.
    pub fn new() -> Housekeeping {
        Housekeeping {
            stop: Arc::default(),
            threads: Vec::new(),
            runs: Arc::default(),
        }
    }

    /// Run `task` every `period` (the first run after one period) until stopped, or until it
    /// returns `Break`.
    pub fn every(
        &mut self,
        name: &str,
        period: Duration,
        mut task: impl FnMut() -> ControlFlow<()> + Send + 'static,
    ) -> Result<(), MountError> {
        let stop = self.stop.clone();
        let runs = self.runs.clone();
        let handle = std::thread::Builder::new()
            .name(format!("sealvol-{name}"))
            .spawn(move || {
                while !stop.wait(period) {
                    let flow = task();
                    runs.fetch_add(1, Ordering::Relaxed);
                    if flow.is_break() {
                        break;
                    }
                }
            })
            .map_err(|cause| MountError::Thread {
                name: name.to_string(),
                cause,
            })?;
        self.threads.push((name.to_string(), handle));
        Ok(())
    }

    /// The housekeeping of a mounted volume (the table at the top of this module).
    pub fn for_volume(
        vol: Arc<Volume>,
        cfg: &HousekeepingConfig,
    ) -> Result<Housekeeping, MountError> {
        let mut h = Housekeeping::new();
        let v = vol.clone();
        h.every("purge", cfg.purge_every, move || {
            if let Err(e) = v.purge_deferred() {
                tracing::error!(error = %e, "deleting unlinked files failed; retrying");
            }
            ControlFlow::Continue(())
        })?;
        if let Some(path) = cfg.stats_file.clone() {
            let v = vol.clone();
            let budget = cfg.memory_budget;
            publish_stats(&v, budget, &path);
            h.every("stats", cfg.stats_every, move || {
                publish_stats(&v, budget, &path);
                ControlFlow::Continue(())
            })?;
        }
        let v = vol.clone();
        let (requests, writes) = (cfg.requests.clone(), cfg.writes.clone());
        let (full, loan) = (cfg.cache_budget, cfg.cache_loan);
        let budget_bytes = cfg.memory_budget as u64;
        let mut governor = Governor::new(full, cfg.idle_after, Instant::now());
        h.every("memory", cfg.memory_every, move || {
            let d = governor.observe(Reading {
                host: meminfo(),
                requests: requests.as_ref().map(|r| r.load(Ordering::Relaxed)),
                writes: writes.as_ref().map(|w| w.load(Ordering::Relaxed)),
                dirty: v.buffered_bytes() > 0,
                now: Instant::now(),
            });
            // A loan ends first, so that what it frees is given back below.
            if d.lend == Some(false) {
                v.lend_cache(0);
            }
            if let Some(budget) = d.cache_budget {
                tracing::info!(budget, idle = d.went_idle, "plaintext cache budget changed");
                v.set_cache_size(budget);
            }
            if d.went_idle {
                // Memtables hold written data until a flush; an idle volume need not.
                if let Err(e) = v.engine().flush_memtables() {
                    tracing::warn!(error = %e, "flushing the memtables of an idle volume failed");
                }
            }
            // What the cache, the memtables and finished write-outs freed goes back to the
            // system, instead of staying in the allocator's arenas: when the volume goes idle,
            // when the cache shrinks, and while the process holds more than its budget.
            let ceiling = budget_bytes - budget_bytes / 16;
            let over = ProcessMemory::of_this_process().is_some_and(|m| m.resident > ceiling);
            if d.went_idle || d.cache_budget.is_some_and(|b| b < full) || over {
                sealvol_sys::release_free_memory();
            }
            // As much of the loan as the process has room for under its ceiling.
            if d.lend == Some(true) && loan > 0 && full > 0 {
                sealvol_sys::release_free_memory();
                let resident = ProcessMemory::of_this_process().map_or(u64::MAX, |m| m.resident);
                let room = usize::try_from(ceiling.saturating_sub(resident)).unwrap_or(0);
                v.lend_cache(loan.min(room));
            }
            ControlFlow::Continue(())
        })?;
        let v = vol;
        h.every("reclaim", cfg.reclaim_every, move || {
            if let Err(e) = v.trim_log(v.log_keep()) {
                tracing::warn!(error = %e, "trimming the operation log failed; retrying in a minute");
            }
            if let Err(e) = v.reclaim_if_wasteful() {
                tracing::warn!(error = %e, "reclaiming space failed; retrying in a minute");
            }
            ControlFlow::Continue(())
        })?;
        Ok(h)
    }

    /// Task runs completed so far, all tasks together.
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// Stop every task and wait for each to finish; returns the runs completed. Once it
    /// returns, no task runs and none holds what it was given.
    pub fn stop(mut self) -> u64 {
        self.stop_and_join();
        self.runs()
    }

    fn stop_and_join(&mut self) {
        self.stop.stop();
        for (name, handle) in self.threads.drain(..) {
            if handle.join().is_err() {
                tracing::error!(task = %name, "a housekeeping task panicked");
            }
        }
    }
}

impl Drop for Housekeeping {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Write the volume's totals as JSON to `path`, with the mount's memory (`"memory"`: a
/// [`MemoryReport`] for a budget of `memory_budget` bytes), through a temporary file and a
/// rename, so that readers never see half a file. Failures are logged, never fatal.
pub fn publish_stats(vol: &Volume, memory_budget: usize, path: &Path) {
    let tmp = path.with_extension("tmp");
    let written = vol
        .stats()
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::to_value(&s).map_err(|e| e.to_string()))
        .and_then(|mut v| {
            let memory = serde_json::to_value(MemoryReport::of(vol, memory_budget))
                .map_err(|e| e.to_string())?;
            if let Some(o) = v.as_object_mut() {
                o.insert("memory".into(), memory);
            }
            serde_json::to_vec(&v).map_err(|e| e.to_string())
        })
        .and_then(|json| std::fs::write(&tmp, json).map_err(|e| e.to_string()))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| e.to_string()));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "cannot publish the volume's totals");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Bounded wait for a condition another thread makes true.
    fn eventually(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cond() {
            assert!(Instant::now() < deadline, "gave up waiting: {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn tasks_run_until_stopped_and_never_after() {
        let mut h = Housekeeping::new();
        let calls = Arc::new(AtomicU64::new(0));
        let after_stop = Arc::new(AtomicU64::new(0));
        let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        for name in ["a", "b"] {
            let (c, a, s) = (calls.clone(), after_stop.clone(), stopped.clone());
            h.every(name, Duration::from_millis(1), move || {
                c.fetch_add(1, Ordering::SeqCst);
                if s.load(Ordering::SeqCst) {
                    a.fetch_add(1, Ordering::SeqCst);
                }
                ControlFlow::Continue(())
            })
            .expect("spawn");
        }
        eventually("both tasks ran a few times", || {
            calls.load(Ordering::SeqCst) >= 10
        });
        let runs = h.stop();
        stopped.store(true, Ordering::SeqCst);
        assert_eq!(
            runs,
            calls.load(Ordering::SeqCst),
            "every counted run is a call"
        );
        // Every thread has ended: the closures (and what they captured) are gone.
        assert_eq!(Arc::strong_count(&calls), 1);
        assert_eq!(Arc::strong_count(&stopped), 1);
        assert_eq!(after_stop.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn stop_interrupts_a_long_wait() {
        let mut h = Housekeeping::new();
        let probe = Arc::new(());
        let p = probe.clone();
        h.every("hourly", Duration::from_secs(3600), move || {
            let _ = &p;
            ControlFlow::Continue(())
        })
        .expect("spawn");
        // A sleeping loop would keep stop() waiting an hour; the bound here is generous.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(h.stop());
        });
        let runs = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("stop() returned without waiting out the period");
        assert_eq!(runs, 0);
        assert_eq!(Arc::strong_count(&probe), 1, "the task's thread has ended");
    }

    #[test]
    fn a_run_in_progress_finishes_before_stop_returns() {
        let mut h = Housekeeping::new();
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let finished = Arc::new(AtomicU64::new(0));
        let f = finished.clone();
        h.every("slow", Duration::from_millis(1), move || {
            let _ = started_tx.send(());
            let _ = release_rx.recv();
            f.fetch_add(1, Ordering::SeqCst);
            ControlFlow::Break(())
        })
        .expect("spawn");
        started_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the task started");
        let (done_tx, done_rx) = mpsc::channel();
        let stopper = std::thread::spawn(move || {
            let runs = h.stop();
            let _ = done_tx.send(runs);
        });
        // stop() cannot have returned: the run it must wait for has not finished.
        assert_eq!(finished.load(Ordering::SeqCst), 0);
        assert!(done_rx.try_recv().is_err());
        release_tx.send(()).expect("release");
        let runs = done_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("stop returned");
        assert_eq!((runs, finished.load(Ordering::SeqCst)), (1, 1));
        stopper.join().expect("stopper");
    }

    #[test]
    fn dropping_stops_and_joins() {
        let probe = Arc::new(());
        {
            let mut h = Housekeeping::new();
            let p = probe.clone();
            h.every("t", Duration::from_secs(3600), move || {
                let _ = &p;
                ControlFlow::Continue(())
            })
            .expect("spawn");
        }
        assert_eq!(Arc::strong_count(&probe), 1);
    }

    #[test]
    fn a_volume_housekeeping_publishes_and_lets_go_of_the_volume_at_stop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = sealvol_crypto::Secret::Passphrase(b"housekeeping test".to_vec().into());
        let opts = sealvol_volume::CreateOptions {
            kdf: sealvol_crypto::KdfParams {
                m_cost_kib: 8 << 10,
                t_cost: 1,
                p_cost: 1,
            },
            ..Default::default()
        };
        let vol = Arc::new(
            Volume::create(
                &dir.path().join("store"),
                &secret,
                &opts,
                Arc::new(sealvol_volume::SystemClock),
            )
            .expect("create"),
        );
        let stats = dir.path().join("stats.json");
        let mut cfg = HousekeepingConfig::new(
            Some(stats.clone()),
            &sealvol_volume::MemoryBudget::DEFAULT.split(),
        );
        let requests = Arc::new(AtomicU64::new(0));
        cfg.requests = Some(requests.clone());
        cfg.idle_after = Duration::from_millis(1);
        cfg.purge_every = Duration::from_millis(1);
        cfg.stats_every = Duration::from_millis(1);
        cfg.memory_every = Duration::from_millis(1);
        cfg.reclaim_every = Duration::from_millis(1);
        let h = Housekeeping::for_volume(vol.clone(), &cfg).expect("start");
        eventually("every task ran", || h.runs() >= 20);
        let published: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&stats).expect("stats file")).expect("json");
        assert_eq!(published["files"], 0, "{published}");
        let memory = &published["memory"];
        assert_eq!(memory["budget_bytes"], 256 << 20, "{published}");
        assert!(memory["resident_bytes"].as_u64() > Some(0), "{published}");
        assert!(memory["peak_bytes"].as_u64() >= memory["resident_bytes"].as_u64());
        requests.fetch_add(1, Ordering::Relaxed); // busy again after going idle
        h.stop();
        // Only this test holds the volume now: nothing else can call it during or after close.
        assert_eq!(Arc::strong_count(&vol), 1);
        vol.close().expect("close");
    }
}
