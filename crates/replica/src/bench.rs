//! Apply throughput: a history of mixed operations made on one replica, applied by a fresh one
//! into the memory engine and into RocksDB (`sealvol-sim bench`, scripts/bench-replica.sh).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sealvol_crypto::MasterKey;
use sealvol_store::{Engine, MemoryEngine, RocksEngine, RocksTuning};

use crate::ids::{NodeId, ReplicaId};
use crate::op::Kind;
use crate::replica::{
    Config, MemberKey, Received, Replica, SealedEntry, Snapshot, SystemWallClock,
};
use crate::state::ReplicaKeys;

/// What applying a history cost.
#[derive(Clone, Debug)]
pub struct ApplyBench {
    pub entries: usize,
    pub seconds: f64,
    pub per_second: f64,
    /// The longest `receive_batch` of 64 entries: the longest the replica is busy applying.
    pub longest: Duration,
    /// Mean size of an entry as shipped (sealed bytes, signature, origin and sequence number).
    pub entry_bytes: f64,
    /// Bytes the engine occupies per entry applied, after a flush (0 for the memory engine):
    /// state records, the fold log with its undo records, and the entries kept for peers.
    pub store_bytes_per_entry: f64,
}

/// A history of `n` mixed operations (creates, writes, chmods, renames, unlinks, xattrs) on one
/// replica; the snapshot a new replica starts from, the keys and the entries.
pub fn history(n: usize) -> crate::Result<History> {
    let master = MasterKey::generate().map_err(|e| crate::error::corrupt(e.to_string()))?;
    let keys = Arc::new(ReplicaKeys::derive(&master));
    let volume = [9u8; 16];
    let clock = Arc::new(SystemWallClock);
    let mut a = Replica::found(
        Arc::new(MemoryEngine::new()),
        keys,
        clock,
        Config {
            // 1 KiB pieces: writes of up to 4 KiB span up to four, as the chunks did before.
            chunk_size: 1024,
            ..Config::default()
        },
        volume,
        ReplicaId(0xb000_0000_0000_0001),
    )?;
    let joiner_key = MemberKey::generate()?;
    a.admit(joiner_key.public()?)?;
    let snap = a.snapshot()?;
    let mut rng = StdRng::seed_from_u64(1);
    let mut dirs = vec![NodeId::ROOT];
    let mut files: Vec<(NodeId, Vec<u8>, NodeId)> = Vec::new(); // (parent, name, inode)
    let mut k = 0u64;
    while a.version_vector().values().map(|h| h.seq).sum::<u64>() < n as u64 + 2 {
        k += 1;
        let roll = rng.gen_range(0..100);
        let d = dirs[rng.gen_range(0..dirs.len())];
        let name = format!("n{k}").into_bytes();
        if roll < 10 || files.is_empty() {
            let (node, _, _) = a.create(d, &name, Kind::Dir, 0o755, 0, 0, b"")?;
            dirs.push(node);
        } else if roll < 40 {
            let (_, ino, _) = a.create(d, &name, Kind::File, 0o644, 0, 0, b"")?;
            files.push((d, name, ino));
        } else if roll < 70 {
            let (_, _, ino) = files[rng.gen_range(0..files.len())].clone();
            let data: Vec<u8> = (0..rng.gen_range(1..4096)).map(|_| rng.gen()).collect();
            a.write_all(ino, &data)?;
        } else if roll < 82 {
            let (_, _, ino) = files[rng.gen_range(0..files.len())].clone();
            a.setattr(ino, Some(rng.gen_range(0..0o777)), None, None, None, None)?;
        } else if roll < 90 {
            let i = rng.gen_range(0..files.len());
            let (p, nm, ino) = files[i].clone();
            a.rename(p, &nm, d, &name)?;
            files[i] = (d, name, ino);
        } else if roll < 95 {
            let (_, _, ino) = files[rng.gen_range(0..files.len())].clone();
            a.setxattr(ino, b"user.tag", Some(b"value"))?;
        } else {
            let i = rng.gen_range(0..files.len());
            let (p, nm, _) = files.swap_remove(i);
            a.unlink(p, &nm)?;
        }
    }
    let mut entries = a.entries_for(&Default::default())?;
    entries.retain(|e| e.seq > 2); // founding and admitting are in the snapshot
    entries.truncate(n);
    Ok((master, volume, snap, entries, joiner_key))
}

/// Keys, volume id, the snapshot the joiner starts from, the entries, the joiner's key.
pub type History = (MasterKey, [u8; 16], Snapshot, Vec<SealedEntry>, MemberKey);

/// Apply `entries` to a new replica started from `snap` on `eng`.
pub fn apply_all(
    eng: Arc<dyn Engine>,
    master: &MasterKey,
    volume: [u8; 16],
    snap: &Snapshot,
    entries: &[SealedEntry],
    key: MemberKey,
) -> crate::Result<ApplyBench> {
    let keys = Arc::new(ReplicaKeys::derive(master));
    // The joiner was the second entry of the history's founder.
    let id = ReplicaId::admitted(ReplicaId(0xb000_0000_0000_0001), 1);
    let mut b = Replica::join(
        eng,
        keys,
        Arc::new(SystemWallClock),
        Config::default(),
        volume,
        snap,
        id,
        key,
    )?;
    let t = Instant::now();
    let mut longest = Duration::ZERO;
    // As a transport delivers them: in batches of 64.
    for batch in entries.chunks(64) {
        let t1 = Instant::now();
        let rs = b.receive_batch(batch)?;
        longest = longest.max(t1.elapsed());
        if let Some(r) = rs.iter().find(|r| **r != Received::Applied) {
            return Err(crate::error::corrupt(format!("an entry was {r:?}")));
        }
    }
    b.engine().flush_memtables()?;
    let seconds = t.elapsed().as_secs_f64();
    let store_bytes_per_entry = b.engine().disk_bytes()? as f64 / entries.len().max(1) as f64;
    Ok(ApplyBench {
        entries: entries.len(),
        seconds,
        per_second: entries.len() as f64 / seconds,
        longest,
        entry_bytes: entries
            .iter()
            .map(|e| e.bytes.len() + e.sig.len() + 16)
            .sum::<usize>() as f64
            / entries.len().max(1) as f64,
        store_bytes_per_entry,
    })
}

/// The same history into the memory engine and into RocksDB at `dir` (only into the one named
/// by `only`, "memory" or "rocksdb", if given: for instruction counts of one path).
pub fn run(
    n: usize,
    dir: &Path,
    only: Option<&str>,
) -> crate::Result<(Option<ApplyBench>, Option<ApplyBench>)> {
    let (master, volume, snap, entries, key) = history(n)?;
    let pkcs8 = key.to_pkcs8_for_bench();
    let mem = match only {
        Some("rocksdb") => None,
        _ => Some(apply_all(
            Arc::new(MemoryEngine::new()),
            &master,
            volume,
            &snap,
            &entries,
            key,
        )?),
    };
    let rdb = match only {
        Some("memory") => None,
        _ => {
            let rocks = RocksEngine::open(dir, true, &RocksTuning::default())?;
            Some(apply_all(
                Arc::new(rocks),
                &master,
                volume,
                &snap,
                &entries,
                MemberKey::from_pkcs8_for_bench(pkcs8),
            )?)
        }
    };
    Ok((mem, rdb))
}
