//! The `plugin` fuzz target's body (fuzz/src/plugin.rs), run without a fuzz engine over the
//! seeds it generates and those committed in fuzz/seeds/plugin: daemon-shaped requests against
//! the real router, the volume table and option strings. `SEALVOL_WRITE_FUZZ_SEEDS=1` rewrites
//! the committed seeds. The fuzzing itself is scripts/fuzz.sh.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

#[path = "../../../fuzz/src/plugin.rs"]
mod plugin;

#[path = "../../../fuzz/src/seeds.rs"]
mod seeds;

#[test]
fn plugin_target_over_its_seeds() {
    seeds::check("plugin", &plugin::seeds(), plugin::run);
}
