//! The bodies of sealvol's fuzz targets, one module per decoder family. Each module is plain
//! Rust over the public APIs, so the crates' `fuzz_seeds` tests compile the same file (through
//! `#[path]`) and run it over the committed seeds without a fuzz engine.

pub mod crypto;
pub mod plugin;
pub mod schema;
