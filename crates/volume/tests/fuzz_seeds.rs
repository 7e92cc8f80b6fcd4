//! The `schema` fuzz target's body (fuzz/src/schema.rs), run without a fuzz engine over the
//! seeds it generates and those committed in fuzz/seeds/schema, so the target keeps compiling
//! and real records keep decoding and round-tripping. `SEALVOL_WRITE_FUZZ_SEEDS=1` rewrites
//! the committed seeds. The fuzzing itself is scripts/fuzz.sh.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

#[path = "../../../fuzz/src/schema.rs"]
mod schema;

#[path = "../../../fuzz/src/seeds.rs"]
mod seeds;

#[test]
fn schema_target_over_its_seeds() {
    let generated = schema::seeds();
    seeds::check("schema", &generated, schema::run);
    // Every record type has a seed.
    for t in schema::TYPES {
        assert!(
            generated.iter().any(|(n, _)| n.starts_with(t)),
            "no seed for {t}"
        );
    }
}
