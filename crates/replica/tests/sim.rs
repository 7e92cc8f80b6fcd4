#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]
//! The deterministic simulation in CI: 500 seeds clean, and each of four injected bugs caught
//! within them. `scripts/sim.sh N` runs more.

use sealvol_replica::sim::{run_seeds, SimConfig};
use sealvol_replica::Faults;

const CI_SEEDS: u64 = 500;
const STEPS: usize = 400;

#[test]
fn five_hundred_seeds_converge_and_keep_every_acknowledged_write() {
    let first: u64 = std::env::var("SIM_FIRST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    match run_seeds(first, CI_SEEDS, Faults::default(), STEPS) {
        Ok(stats) => {
            let ops: u64 = stats.iter().map(|s| s.ops_acked).sum();
            let undone: u64 = stats.iter().map(|s| s.undone).sum();
            let rejoins: u64 = stats.iter().map(|s| s.rejoins).sum();
            let conflicts: u64 = stats.iter().map(|s| s.conflict_copies).sum();
            let contents: u64 = stats.iter().map(|s| s.contents_checked).sum();
            // The scheduler really exercised what it claims to.
            assert!(ops > 50 * CI_SEEDS, "{ops} operations");
            assert!(undone > 0 && rejoins > 0 && conflicts > 0 && contents > 0);
            println!("{CI_SEEDS} seeds: {ops} operations, {undone} undos, {rejoins} re-joins, {conflicts} conflict copies, {contents} files' contents checked");
        }
        Err(f) => panic!("{f}"),
    }
}

fn caught(faults: Faults) -> String {
    match run_seeds(0, CI_SEEDS, faults, STEPS) {
        Ok(_) => panic!("{faults:?} went unnoticed through {CI_SEEDS} seeds"),
        Err(f) => {
            println!("{faults:?}: {f}");
            f.to_string()
        }
    }
}

#[test]
fn the_simulator_catches_an_apply_that_is_not_idempotent() {
    caught(Faults {
        reapply_duplicates: true,
        ..Faults::default()
    });
}

#[test]
fn the_simulator_catches_last_writer_wins_per_whole_record() {
    let f = caught(Faults {
        whole_record_attrs: true,
        ..Faults::default()
    });
    assert!(f.contains("lost"), "{f}");
}

#[test]
fn the_simulator_catches_moves_applied_without_undo_and_redo() {
    caught(Faults {
        no_undo_redo: true,
        ..Faults::default()
    });
}

#[test]
fn the_simulator_catches_a_concurrent_write_laid_over_the_newer_contents() {
    let f = caught(Faults {
        mix_concurrent_writes: true,
        ..Faults::default()
    });
    assert!(f.contains("not its contents"), "{f}");
}

#[test]
fn a_seed_replays_the_same_run() {
    let a = sealvol_replica::sim::run(&SimConfig::new(7)).unwrap();
    let b = sealvol_replica::sim::run(&SimConfig::new(7)).unwrap();
    assert_eq!(
        (
            a.ops_acked,
            a.writes_acked,
            a.delivered,
            a.undone,
            a.files_at_end
        ),
        (
            b.ops_acked,
            b.writes_acked,
            b.delivered,
            b.undone,
            b.files_at_end
        )
    );
}
