//! Benchmarks live in `benches/`; this library is empty.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]
