//! A few replicas of one volume in memory, with delivery under the test's control.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sealvol_crypto::MasterKey;
use sealvol_replica::*;
use sealvol_store::{Engine, MemoryEngine};

pub struct TestClock(pub AtomicU64);

impl WallClock for TestClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

pub struct Cluster {
    pub master: MasterKey,
    pub volume: [u8; 16],
    pub reps: Vec<Replica>,
    pub clocks: Vec<Arc<TestClock>>,
    pub engines: Vec<Arc<MemoryEngine>>,
}

pub const T0: u64 = 1_796_203_815_000;

impl Cluster {
    pub fn new(n: usize) -> Cluster {
        let master = MasterKey::generate().unwrap();
        let volume = [7u8; 16];
        let mut c = Cluster {
            master,
            volume,
            reps: Vec::new(),
            clocks: Vec::new(),
            engines: Vec::new(),
        };
        let (eng, clock) = c.host();
        let r = Replica::found(
            eng,
            c.keys(),
            clock,
            config(),
            volume,
            ReplicaId(0xa000_0000_0000_0001),
        )
        .unwrap();
        c.reps.push(r);
        for _ in 1..n {
            c.add_member(0);
        }
        c
    }

    pub fn keys(&self) -> Arc<ReplicaKeys> {
        Arc::new(ReplicaKeys::derive(&self.master))
    }

    fn host(&mut self) -> (Arc<dyn Engine>, Arc<TestClock>) {
        let e = Arc::new(MemoryEngine::new());
        let c = Arc::new(TestClock(AtomicU64::new(T0)));
        self.engines.push(e.clone());
        self.clocks.push(c.clone());
        (e, c)
    }

    /// A new member admitted by `sponsor`, started from its snapshot.
    pub fn add_member(&mut self, sponsor: usize) -> usize {
        let key = MemberKey::generate().unwrap();
        let id = self.reps[sponsor].admit(key.public().unwrap()).unwrap();
        let snap = self.reps[sponsor].snapshot().unwrap();
        let (eng, clock) = self.host();
        let r = Replica::join(
            eng,
            self.keys(),
            clock,
            config(),
            self.volume,
            &snap,
            id,
            key,
        )
        .unwrap();
        self.reps.push(r);
        self.reps.len() - 1
    }

    /// Advance every clock.
    pub fn advance(&self, ms: u64) {
        for c in &self.clocks {
            c.0.fetch_add(ms, Ordering::SeqCst);
        }
    }

    /// Entries `to` lacks from `from`.
    pub fn entries(&self, from: usize, to: usize) -> Vec<SealedEntry> {
        self.reps[from]
            .entries_for(self.reps[to].version_vector())
            .unwrap()
    }

    /// Deliver what `to` lacks from `from`: entries, then the chunks it then misses.
    pub fn pull(&mut self, to: usize, from: usize) {
        for e in self.entries(from, to) {
            self.reps[to].receive(&e).unwrap();
        }
        self.chunks(to, from);
    }

    pub fn chunks(&mut self, to: usize, from: usize) {
        for a in self.reps[to].pending_chunks().unwrap() {
            if let Some(s) = self.reps[from].sealed_chunk(&a).unwrap() {
                assert!(self.reps[to].receive_chunk(&a, &s).unwrap());
            }
        }
    }

    /// Everyone has everything.
    pub fn sync(&mut self) {
        let n = self.reps.len();
        for _ in 0..3 {
            for a in 0..n {
                for b in 0..n {
                    if a != b {
                        self.pull(b, a);
                    }
                }
            }
        }
    }

    /// Every replica's version vector, as each would report it.
    pub fn acks(&self) -> std::collections::BTreeMap<ReplicaId, VersionVector> {
        self.reps
            .iter()
            .map(|r| (r.id(), r.version_vector().clone()))
            .collect()
    }

    /// Every replica holds the same tree, and check is clean: the tree.
    pub fn converged(&self) -> std::collections::BTreeMap<Vec<u8>, DumpEntry> {
        let d0 = self.reps[0].dump().unwrap();
        for (i, r) in self.reps.iter().enumerate() {
            let c = r.check().unwrap();
            assert!(c.is_clean(), "replica {i}: {c:?}");
            assert!(c.pending.is_empty(), "replica {i}: pending {:?}", c.pending);
            assert_eq!(r.dump().unwrap(), d0, "replica {i} differs from replica 0");
        }
        d0
    }

    pub fn write(&mut self, r: usize, ino: NodeId, data: &[u8]) -> OpId {
        let rep = &mut self.reps[r];
        rep.write_all(ino, data).unwrap()
    }

    pub fn file(&mut self, r: usize, parent: NodeId, name: &[u8]) -> NodeId {
        self.reps[r]
            .create(parent, name, Kind::File, 0o644, 0, 0, b"")
            .unwrap()
            .1
    }

    pub fn dir(&mut self, r: usize, parent: NodeId, name: &[u8]) -> NodeId {
        self.reps[r]
            .create(parent, name, Kind::Dir, 0o755, 0, 0, b"")
            .unwrap()
            .0
    }

    /// The contents of the file at `path` on replica `r`.
    pub fn cat(&self, r: usize, path: &[u8]) -> Vec<u8> {
        let d = self.reps[r].dump().unwrap();
        let e = d
            .get(path)
            .unwrap_or_else(|| panic!("{} is missing", String::from_utf8_lossy(path)));
        self.reps[r].read(e.inode.id).unwrap()
    }
}

pub fn names(d: &std::collections::BTreeMap<Vec<u8>, DumpEntry>) -> Vec<String> {
    d.keys()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect()
}

/// Small pieces, so that short test contents span several.
pub fn config() -> Config {
    Config {
        chunk_size: 16,
        ..Config::default()
    }
}
