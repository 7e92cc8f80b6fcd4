//! The `key_header` and `sealed` fuzz targets' bodies (fuzz/src/crypto.rs), run without a fuzz
//! engine over the seeds they generate and those committed in fuzz/seeds, so the targets keep
//! compiling and real headers and sealed chunks keep decoding. `SEALVOL_WRITE_FUZZ_SEEDS=1`
//! rewrites the committed seeds. The fuzzing itself is scripts/fuzz.sh.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

#[path = "../../../fuzz/src/crypto.rs"]
mod crypto;

#[path = "../../../fuzz/src/seeds.rs"]
mod seeds;

#[test]
fn key_header_target_over_its_seeds() {
    seeds::check(
        "key_header",
        &crypto::key_header_seeds(),
        crypto::key_header,
    );
}

#[test]
fn sealed_target_over_its_seeds() {
    seeds::check("sealed", &crypto::sealed_seeds(), crypto::sealed);
}
