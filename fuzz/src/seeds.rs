//! Committed seed corpora (fuzz/seeds/TARGET): written from a target's generated seeds when
//! `SEALVOL_WRITE_FUZZ_SEEDS=1`, and always run through the target's body (generated ones
//! too), so a change that breaks a decoder on real inputs fails an ordinary `cargo test`.

use std::path::PathBuf;

fn dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target)
}

/// Run `body` over `generated` and over every committed seed of `target`.
pub fn check(target: &str, generated: &[(String, Vec<u8>)], body: fn(&[u8])) {
    let d = dir(target);
    if std::env::var_os("SEALVOL_WRITE_FUZZ_SEEDS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(&d).unwrap();
        for (name, bytes) in generated {
            std::fs::write(d.join(name), bytes).unwrap();
        }
    }
    for (_, bytes) in generated {
        body(bytes);
    }
    let mut n = 0;
    for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
        let path = e.unwrap().path();
        body(&std::fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n > 0, "no committed seed in {}", d.display());
}
