//! Time, injected: the volume never calls `SystemTime::now` itself, so tests and simulations can
//! be driven by a fixed or stepped clock.

use std::sync::atomic::{AtomicI64, Ordering};

use crate::schema::Ts;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Ts;
}

#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Ts {
        #[allow(clippy::disallowed_methods)]
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Ts {
            secs: d.as_secs() as i64,
            nanos: d.subsec_nanos(),
        }
    }
}

/// A clock that advances one millisecond per reading: deterministic.
#[derive(Debug)]
pub struct StepClock(AtomicI64);

impl StepClock {
    pub fn new(start_ms: i64) -> Self {
        StepClock(AtomicI64::new(start_ms))
    }
}

impl Clock for StepClock {
    fn now(&self) -> Ts {
        let ms = self.0.fetch_add(1, Ordering::SeqCst);
        Ts {
            secs: ms / 1000,
            nanos: (ms % 1000) as u32 * 1_000_000,
        }
    }
}

/// Hybrid logical clock value: physical milliseconds in the high 48 bits, a counter in the low
/// 16; strictly greater than `last`.
pub fn hlc_next(last: u64, now: Ts) -> u64 {
    let phys = (now.secs.max(0) as u64) * 1000 + (now.nanos / 1_000_000) as u64;
    (phys << 16).max(last + 1)
}
