//! Storage engines for sealvol: an ordered key-value store with column families and atomic,
//! optionally synced batches. The engine stores opaque bytes: it knows nothing of encryption,
//! files, FUSE or Docker. Everything above it sees only the [`Engine`] trait, and one
//! conformance suite (`tests/support/conformance_suite.rs`) runs against every implementation.

pub mod engine;
pub mod snapshot;

pub use engine::memory::MemoryEngine;
pub use engine::rocks::{RocksEngine, RocksTuning};
pub use engine::{Aside, Cf, Durability, Engine, EngineMemory, StoreError, WriteBatch};
pub use snapshot::Snapshot;
