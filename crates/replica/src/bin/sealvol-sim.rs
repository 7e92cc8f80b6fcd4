//! `sealvol-sim N [--steps S] [--fault NAME]`: run N seeds of the deterministic simulation from
//! `SIM_FIRST_SEED` (default 0); exit 1 on the first failure, printing the command that
//! replays it.

use std::process::ExitCode;
use std::time::Instant;

use sealvol_replica::sim::run_seeds;
use sealvol_replica::Faults;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("bench") {
        return bench(&args[1..]);
    }
    let mut n = 100u64;
    let mut steps = 400usize;
    let mut faults = Faults::default();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--steps" => {
                i += 1;
                steps = match args.get(i).and_then(|s| s.parse().ok()) {
                    Some(s) => s,
                    None => return usage("--steps needs a number"),
                };
            }
            "--fault" => {
                i += 1;
                match args.get(i).map(String::as_str) {
                    Some("reapply-duplicates") => faults.reapply_duplicates = true,
                    Some("whole-record-attrs") => faults.whole_record_attrs = true,
                    Some("no-undo-redo") => faults.no_undo_redo = true,
                    Some("mix-concurrent-writes") => faults.mix_concurrent_writes = true,
                    _ => {
                        return usage(
                            "--fault takes reapply-duplicates, whole-record-attrs, no-undo-redo or mix-concurrent-writes",
                        )
                    }
                }
            }
            s => match s.parse() {
                Ok(v) => n = v,
                Err(_) => return usage(&format!("unknown argument {s:?}")),
            },
        }
        i += 1;
    }
    let first: u64 = match std::env::var("SIM_FIRST_SEED") {
        Ok(s) => match s.parse() {
            Ok(v) => v,
            Err(_) => return usage("SIM_FIRST_SEED must be a number"),
        },
        Err(_) => 0,
    };
    let t = Instant::now();
    match run_seeds(first, n, faults, steps) {
        Ok(stats) => {
            let ops: u64 = stats.iter().map(|s| s.ops_acked).sum();
            let conflicts: u64 = stats.iter().map(|s| s.conflict_copies).sum();
            let undone: u64 = stats.iter().map(|s| s.undone).sum();
            let rejoins: u64 = stats.iter().map(|s| s.rejoins).sum();
            let crashes: u64 = stats.iter().map(|s| s.crashes).sum();
            let contents: u64 = stats.iter().map(|s| s.contents_checked).sum();
            let trims: u64 = stats.iter().map(|s| s.trims_in_flight).sum();
            println!(
                "{n} seeds from {first} clean in {:.1} s: {ops} operations acknowledged, {conflicts} conflict copies at the end, {undone} undos, {crashes} crashes, {rejoins} re-joins, {contents} files' contents checked, {trims} trims in flight",
                t.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(f) => {
            eprintln!("{f}");
            ExitCode::FAILURE
        }
    }
}

/// `sealvol-sim bench [N] [DIR] [memory|rocksdb]`: apply a history of N mixed entries (default
/// 100,000) into the memory engine and into RocksDB in DIR (default a new directory under
/// /var/tmp); with a third argument, into that engine only.
fn bench(args: &[String]) -> ExitCode {
    let n: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let dir = match args.get(1) {
        Some(d) => std::path::PathBuf::from(d),
        None => std::env::temp_dir().join(format!("sealvol-replica-bench-{}", std::process::id())),
    };
    let only = args.get(2).map(String::as_str);
    if only.is_some_and(|o| o != "memory" && o != "rocksdb") {
        return usage("bench's third argument is memory or rocksdb");
    }
    let out = sealvol_replica::bench::run(n, &dir, only);
    let _ = std::fs::remove_dir_all(&dir);
    match out {
        Ok((mem, rocks)) => {
            for (name, b) in [("memory", mem), ("rocksdb", rocks)] {
                let Some(b) = b else { continue };
                println!(
                    "{name}: {} entries in {:.2} s = {:.0} entries/s; longest batch of 64 {:.2} ms; {:.0} bytes per entry shipped; {:.0} store bytes per entry",
                    b.entries,
                    b.seconds,
                    b.per_second,
                    b.longest.as_secs_f64() * 1000.0,
                    b.entry_bytes,
                    b.store_bytes_per_entry
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sealvol-sim bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage(why: &str) -> ExitCode {
    eprintln!("sealvol-sim: {why}\nusage: sealvol-sim N [--steps S] [--fault reapply-duplicates|whole-record-attrs|no-undo-redo|mix-concurrent-writes]  (seeds from SIM_FIRST_SEED, default 0)");
    ExitCode::from(2)
}
