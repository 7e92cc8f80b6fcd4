//! The deterministic simulator: 3 to 5 replicas of one volume in one process, driven by one
//! seeded random scheduler that interleaves local operations with message delivery (delay,
//! duplication, reordering, loss and resending, partitions), crashes and restarts, re-joins
//! from snapshots and skewed clocks. At each quiescence it checks that every replica holds the
//! same tree, that every acknowledged write is still there (at its name or in a conflict copy)
//! unless a later change replaced or removed it knowingly, that the last acknowledged change of
//! each attribute won, and that `check` is clean.
//!
//! `scripts/sim.sh N` runs N seeds; a failure prints the command that replays it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sealvol_crypto::MasterKey;
use sealvol_store::{Engine, MemoryEngine};

use crate::ids::{NodeId, OpId, ReplicaId};
use crate::op::Kind;
use crate::replica::{Config, Faults, MemberKey, Replica, SealedEntry, VersionVector, WallClock};
use crate::state::ReplicaKeys;

/// One simulation run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    /// Steps of the scheduler.
    pub steps: usize,
    /// Bugs to inject (to show the simulator catches them).
    pub faults: Faults,
}

impl SimConfig {
    pub fn new(seed: u64) -> Self {
        SimConfig {
            seed,
            steps: 400,
            faults: Faults::default(),
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct SimStats {
    pub replicas: usize,
    pub ops_acked: u64,
    pub writes_acked: u64,
    pub delivered: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub crashes: u64,
    pub rejoins: u64,
    pub quiescences: u64,
    pub conflict_copies: u64,
    pub undone: u64,
    pub files_at_end: usize,
    /// Files whose contents were compared with what their version's author wrote.
    pub contents_checked: u64,
    /// Trims that made operations stable while other entries were still in flight.
    pub trims_in_flight: u64,
}

/// A broken invariant.
#[derive(Clone, Debug)]
pub struct SimFailure {
    pub seed: u64,
    pub step: usize,
    pub invariant: String,
    /// The run's injected bugs and steps, for the replay command.
    pub faults: Faults,
    pub steps: usize,
}

impl std::fmt::Display for SimFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut extra = String::new();
        if self.steps != SimConfig::new(0).steps {
            extra.push_str(&format!(" --steps {}", self.steps));
        }
        for (on, name) in [
            (self.faults.reapply_duplicates, "reapply-duplicates"),
            (self.faults.whole_record_attrs, "whole-record-attrs"),
            (self.faults.no_undo_redo, "no-undo-redo"),
            (self.faults.mix_concurrent_writes, "mix-concurrent-writes"),
        ] {
            if on {
                extra.push_str(&format!(" --fault {name}"));
            }
        }
        write!(
            f,
            "seed {} failed at step {}: {}\n  replay: SIM_FIRST_SEED={} scripts/sim.sh 1{extra}",
            self.seed, self.step, self.invariant, self.seed
        )
    }
}

struct SimClock {
    global: Arc<AtomicU64>,
    skew: AtomicI64,
}

impl WallClock for SimClock {
    fn now_ms(&self) -> u64 {
        (self.global.load(Ordering::SeqCst) as i64 + self.skew.load(Ordering::SeqCst)).max(0) as u64
    }
}

enum Msg {
    Entries(Vec<SealedEntry>),
    /// Chunks, all in one message: their order (by keyed address) differs from one key to the
    /// next, and must not change the schedule.
    Chunks(Vec<([u8; 32], Vec<u8>)>),
    Vv(ReplicaId, VersionVector),
}

struct InFlight {
    from: usize,
    to: usize,
    at: u64,
    msg: Msg,
}

struct Host {
    eng: Arc<MemoryEngine>,
    rep: Option<Replica>,
    clock: Arc<SimClock>,
    /// Peers' version vectors as last heard.
    acks: BTreeMap<ReplicaId, VersionVector>,
    /// Files this host's processes hold open (writes go on after a remote unlink).
    open: Vec<NodeId>,
}

/// An acknowledged write, as the simulator saw it: the whole contents its author meant.
struct AckedWrite {
    id: OpId,
    base: Option<OpId>,
    data: Vec<u8>,
}

/// An acknowledged attribute change: the fields its caller set.
struct AckedAttr {
    id: OpId,
    inode: NodeId,
    perm: Option<u32>,
    uid: Option<u32>,
}

struct Sim {
    cfg: SimConfig,
    rng: StdRng,
    master: MasterKey,
    volume: [u8; 16],
    global: Arc<AtomicU64>,
    hosts: Vec<Host>,
    net: Vec<InFlight>,
    cut: BTreeSet<(usize, usize)>,
    writes: Vec<AckedWrite>,
    /// Versions a change removed or replaced knowingly (its author saw them).
    removed: BTreeSet<OpId>,
    attrs: Vec<AckedAttr>,
    stats: SimStats,
    step: usize,
}

const NAMES: [&[u8]; 6] = [b"a", b"b", b"c.txt", b"d", b"x", b"y.log"];
const CHUNK: usize = 16;

type Fail = String;

/// Run one seed.
pub fn run(cfg: &SimConfig) -> Result<SimStats, SimFailure> {
    let fail = |step, invariant| SimFailure {
        seed: cfg.seed,
        step,
        invariant,
        faults: cfg.faults,
        steps: cfg.steps,
    };
    let mut sim = Sim::new(cfg.clone()).map_err(|e| fail(0, format!("setting up: {e}")))?;
    sim.run().map_err(|invariant| fail(sim.step, invariant))?;
    Ok(sim.stats)
}

fn err<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> Fail + '_ {
    move |e| format!("{what}: {e}")
}

impl Sim {
    fn new(cfg: SimConfig) -> Result<Sim, Fail> {
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let master = MasterKey::generate().map_err(err("key"))?;
        let mut volume = [0u8; 16];
        rng.fill(&mut volume);
        let global = Arc::new(AtomicU64::new(1_796_000_000_000));
        let n = rng.gen_range(3..=5);
        let mut sim = Sim {
            cfg,
            rng,
            master,
            volume,
            global,
            hosts: Vec::new(),
            net: Vec::new(),
            cut: BTreeSet::new(),
            writes: Vec::new(),
            removed: BTreeSet::new(),
            attrs: Vec::new(),
            stats: SimStats {
                replicas: n,
                ..SimStats::default()
            },
            step: 0,
        };
        let first = sim.new_host();
        let r = Replica::found(
            sim.hosts[first].eng.clone(),
            sim.keys(),
            sim.hosts[first].clock.clone(),
            sim.rconfig(),
            volume,
            ReplicaId(0x1000_0000_0000_0001),
        )
        .map_err(err("founding"))?;
        sim.hosts[first].rep = Some(r);
        for _ in 1..n {
            let h = sim.new_host();
            sim.join_from(first, h)?;
        }
        Ok(sim)
    }

    fn keys(&self) -> Arc<ReplicaKeys> {
        Arc::new(ReplicaKeys::derive(&self.master))
    }

    fn rconfig(&self) -> Config {
        Config {
            max_skew_ms: 60_000,
            chunk_size: CHUNK as u32,
            faults: self.cfg.faults,
            ..Config::default()
        }
    }

    fn new_host(&mut self) -> usize {
        self.hosts.push(Host {
            eng: Arc::new(MemoryEngine::new()),
            rep: None,
            clock: Arc::new(SimClock {
                global: self.global.clone(),
                skew: AtomicI64::new(0),
            }),
            acks: BTreeMap::new(),
            open: Vec::new(),
        });
        self.hosts.len() - 1
    }

    /// Host `h` (with an empty store) joins through `sponsor`.
    fn join_from(&mut self, sponsor: usize, h: usize) -> Result<(), Fail> {
        let keys = self.keys();
        let cfg = self.rconfig();
        let s = self.hosts[sponsor].rep.as_mut().ok_or("sponsor is down")?;
        let key = MemberKey::generate().map_err(err("member key"))?;
        let id = s
            .admit(key.public().map_err(err("member key"))?)
            .map_err(err("admit"))?;
        let snap = s.snapshot().map_err(err("snapshot"))?;
        let eng: Arc<dyn Engine> = self.hosts[h].eng.clone();
        let r = Replica::join(
            eng,
            keys,
            self.hosts[h].clock.clone(),
            cfg,
            self.volume,
            &snap,
            id,
            key,
        )
        .map_err(err("join"))?;
        self.hosts[h].rep = Some(r);
        Ok(())
    }

    fn live(&self) -> Vec<usize> {
        (0..self.hosts.len())
            .filter(|i| self.hosts[*i].rep.is_some())
            .collect()
    }

    fn run(&mut self) -> Result<(), Fail> {
        let steps = self.cfg.steps;
        while self.step < steps {
            self.step += 1;
            let adv = self.rng.gen_range(0..1500);
            self.global.fetch_add(adv, Ordering::SeqCst);
            let roll = self.rng.gen_range(0..1000);
            match roll {
                0..=539 => self.local_op()?,
                540..=769 => self.deliver()?,
                770..=899 => self.gossip()?,
                900..=929 => self.partition(),
                930..=949 => self.crash_or_restart()?,
                950..=969 => self.skew(),
                970..=974 => self.rejoin()?,
                975..=989 => self.trim_one()?,
                _ => {
                    for h in self.live() {
                        if let Some(r) = self.hosts[h].rep.as_mut() {
                            r.retry_held().map_err(err("retry"))?;
                        }
                    }
                }
            }
            if self.step % 150 == 0 {
                self.quiesce()?;
            }
        }
        self.quiesce()?;
        self.stats.files_at_end = self.hosts[0]
            .rep
            .as_ref()
            .map(|r| r.dump().map(|d| d.len()).unwrap_or(0))
            .unwrap_or(0);
        Ok(())
    }

    fn pick<T: Copy>(&mut self, v: &[T]) -> Option<T> {
        if v.is_empty() {
            None
        } else {
            Some(v[self.rng.gen_range(0..v.len())])
        }
    }

    fn content(&mut self) -> Vec<u8> {
        let n = self.rng.gen_range(0..80);
        (0..n).map(|_| self.rng.gen_range(b'a'..=b'e')).collect()
    }

    fn local_op(&mut self) -> Result<(), Fail> {
        let Some(h) = self.pick(&self.live()) else {
            return Ok(());
        };
        let rep = self.hosts[h].rep.as_ref().ok_or("down")?;
        let dump = rep.dump().map_err(err("dump"))?;
        let mut dirs = vec![(Vec::new(), NodeId::ROOT)];
        let mut files = Vec::new();
        for (p, e) in &dump {
            if e.inode.kind == Kind::Dir {
                dirs.push((p.clone(), e.node));
            } else {
                files.push((p.clone(), e.node, e.inode.id, e.inode.kind));
            }
        }
        let split = |p: &[u8]| -> (Vec<u8>, Vec<u8>) {
            let i = p.iter().rposition(|&b| b == b'/').unwrap_or(0);
            (p[..i].to_vec(), p[i + 1..].to_vec())
        };
        let dir_of = |path: &[u8]| -> NodeId {
            dirs.iter()
                .find(|(p, _)| p.as_slice() == path)
                .map_or(NodeId::ROOT, |d| d.1)
        };
        let kind = self.rng.gen_range(0..100);
        let name = NAMES[self.rng.gen_range(0..NAMES.len())].to_vec();
        let d = dirs[self.rng.gen_range(0..dirs.len())].clone();
        let f = self
            .pick(&(0..files.len()).collect::<Vec<_>>())
            .map(|i| files[i].clone());
        let faults = self.cfg.faults;
        let _ = faults;
        let outcome: crate::Result<Option<OpId>> = match kind {
            0..=11 => {
                let r = self.hosts[h].rep.as_mut().ok_or("down")?;
                r.create(d.1, &name, Kind::File, 0o644, 0, 0, b"")
                    .map(|(_, ino, id)| {
                        self.hosts[h].open.push(ino);
                        Some(id)
                    })
            }
            12..=17 => {
                let r = self.hosts[h].rep.as_mut().ok_or("down")?;
                r.create(d.1, &name, Kind::Dir, 0o755, 0, 0, b"")
                    .map(|x| Some(x.2))
            }
            18..=19 => {
                let r = self.hosts[h].rep.as_mut().ok_or("down")?;
                r.create(d.1, &name, Kind::Symlink, 0o777, 0, 0, b"target")
                    .map(|x| Some(x.2))
            }
            20..=37 => {
                // Write: replace, append or truncate, on a file by name or through an open handle.
                let ino = if self.rng.gen_bool(0.3) {
                    let open = self.hosts[h].open.clone();
                    self.pick(&open)
                } else {
                    f.as_ref().filter(|x| x.3 == Kind::File).map(|x| x.2)
                };
                match ino {
                    None => Ok(None),
                    Some(ino) => self.write(h, ino)?,
                }
            }
            38..=49 => {
                // Rename a file or a directory, maybe into another directory, maybe over a name.
                let src = if self.rng.gen_bool(0.5) || dirs.len() < 2 {
                    f.as_ref().map(|x| x.0.clone())
                } else {
                    let i = self.rng.gen_range(1..dirs.len());
                    Some(dirs[i].0.clone())
                };
                match src {
                    None => Ok(None),
                    Some(p) => {
                        let (pp, pn) = split(&p);
                        let from = dir_of(&pp);
                        let newname = if self.rng.gen_bool(0.5) {
                            name.clone()
                        } else {
                            pn.clone()
                        };
                        let r = self.hosts[h].rep.as_mut().ok_or("down")?;
                        let victim = r.lookup(d.1, &newname).ok().flatten();
                        let seen = victim
                            .and_then(|v| r.node(v).ok().flatten())
                            .and_then(|n| r.inode(n.inode).ok().flatten())
                            .and_then(|i| i.version);
                        let res = r.rename(from, &pn, d.1, &newname).map(Some);
                        if res.is_ok() {
                            if let Some(s) = seen {
                                self.removed.insert(s);
                            }
                        }
                        res
                    }
                }
            }
            50..=59 => match &f {
                None => Ok(None),
                Some((p, _, ino, _)) => {
                    let (pp, pn) = split(p);
                    let dir = dir_of(&pp);
                    let r = self.hosts[h].rep.as_mut().ok_or("down")?;
                    let seen = r.inode(*ino).ok().flatten().and_then(|i| i.version);
                    let res = r.unlink(dir, &pn).map(Some);
                    if res.is_ok() {
                        if let Some(s) = seen {
                            self.removed.insert(s);
                        }
                    }
                    res
                }
            },
            60..=64 => {
                if dirs.len() < 2 {
                    Ok(None)
                } else {
                    let i = self.rng.gen_range(1..dirs.len());
                    let (pp, pn) = split(&dirs[i].0);
                    let parent = dir_of(&pp);
                    let r = self.hosts[h].rep.as_mut().ok_or("down")?;
                    r.rmdir(parent, &pn).map(Some)
                }
            }
            65..=69 => match &f {
                Some((_, _, ino, Kind::File)) => {
                    let r = self.hosts[h].rep.as_mut().ok_or("down")?;
                    r.link(*ino, d.1, &name).map(|x| Some(x.1))
                }
                _ => Ok(None),
            },
            70..=87 => {
                // chmod / chown / utimens on a file or directory.
                let target = if self.rng.gen_bool(0.7) {
                    f.as_ref().map(|x| x.2)
                } else {
                    Some(d.1)
                };
                match target {
                    None => Ok(None),
                    Some(ino) => {
                        let which = self.rng.gen_range(0..3);
                        let perm = (which == 0).then(|| self.rng.gen_range(0..0o777u32));
                        let uid = (which == 1).then(|| self.rng.gen_range(0..5u32));
                        let mtime = (which == 2).then(|| self.rng.gen_range(0..1_000_000i64));
                        let r = self.hosts[h].rep.as_mut().ok_or("down")?;
                        let res = r.setattr(ino, perm, uid, None, mtime, mtime);
                        if let Ok(id) = &res {
                            self.attrs.push(AckedAttr {
                                id: *id,
                                inode: ino,
                                perm,
                                uid,
                            });
                        }
                        res.map(Some)
                    }
                }
            }
            _ => match &f {
                None => Ok(None),
                Some((_, _, ino, _)) => {
                    let xname = [b"user.a".as_slice(), b"user.b"][self.rng.gen_range(0..2)];
                    let value = self.rng.gen_bool(0.7).then(|| self.content());
                    let r = self.hosts[h].rep.as_mut().ok_or("down")?;
                    r.setxattr(*ino, xname, value.as_deref()).map(Some)
                }
            },
        };
        match outcome {
            Ok(Some(_)) => self.stats.ops_acked += 1,
            Ok(None) => {}
            Err(crate::Error::Corrupt(e)) => {
                return Err(format!("a local operation found damage: {e}"))
            }
            Err(crate::Error::Store(e)) => return Err(format!("store: {e}")),
            Err(_) => {}
        }
        Ok(())
    }

    /// Replace, append to, truncate or patch a file's contents (a patch is a small write at
    /// an offset: slices over the pieces it touches).
    fn write(&mut self, h: usize, ino: NodeId) -> Result<crate::Result<Option<OpId>>, Fail> {
        let how = self.rng.gen_range(0..5);
        let extra = self.content();
        let cut = self.rng.gen_range(0..40usize);
        let r = self.hosts[h].rep.as_mut().ok_or("down")?;
        let Some(i) = r.inode(ino).map_err(err("inode"))? else {
            return Ok(Ok(None));
        };
        if i.kind != Kind::File {
            return Ok(Ok(None));
        }
        let old = match r.read(ino) {
            Ok(d) => d,
            Err(crate::Error::Pending(_)) => return Ok(Ok(None)),
            Err(e) => return Err(format!("reading a file: {e}")),
        };
        let base = i.version;
        let (data, res) = if how >= 3 {
            let at = cut.min(old.len() + 8);
            let patch = &extra[..extra.len().min(1 + cut % 24)];
            let mut data = old.clone();
            if data.len() < at + patch.len() {
                data.resize(at + patch.len(), 0);
            }
            data[at..at + patch.len()].copy_from_slice(patch);
            (data, r.write_at(ino, at as u64, patch))
        } else {
            let data = match how {
                0 => extra,
                1 => [old, extra].concat(),
                _ => old[..cut.min(old.len())].to_vec(),
            };
            let res = r.write_all(ino, &data);
            (data, res)
        };
        if let Ok(id) = &res {
            self.writes.push(AckedWrite {
                id: *id,
                base,
                data,
            });
            self.stats.writes_acked += 1;
        }
        Ok(res.map(Some))
    }

    fn send(&mut self, from: usize, to: usize, msg: Msg) {
        if self.cut.contains(&(from.min(to), from.max(to))) {
            self.stats.dropped += 1;
            return;
        }
        let delay = self.rng.gen_range(0..20);
        let at = self.step as u64 + delay;
        self.net.push(InFlight { from, to, at, msg });
    }

    /// `from` sends `to` what `to` lacks as far as `from` knows, its version vector, and the
    /// chunks `to` says it is missing.
    fn gossip(&mut self) -> Result<(), Fail> {
        let live = self.live();
        let (Some(a), Some(b)) = (self.pick(&live), self.pick(&live)) else {
            return Ok(());
        };
        if a == b {
            return Ok(());
        }
        let (entries, vv, want) = {
            let ra = self.hosts[a].rep.as_ref().ok_or("down")?;
            let rb = self.hosts[b].rep.as_ref().ok_or("down")?;
            // b asks with its version vector (pull).
            let entries = ra
                .entries_for(rb.version_vector())
                .map_err(err("entries_for"))?;
            let want = rb.pending_chunks().map_err(err("pending"))?;
            let mut chunks = Vec::new();
            for addr in want {
                if let Some(s) = ra.sealed_chunk(&addr).map_err(err("chunk"))? {
                    chunks.push((addr, s));
                }
            }
            (entries, (ra.id(), ra.version_vector().clone()), chunks)
        };
        // Send in batches; a batch may be split.
        let mut rest = entries;
        while !rest.is_empty() {
            let n = self.rng.gen_range(1..=rest.len());
            let tail = rest.split_off(n);
            self.send(a, b, Msg::Entries(rest));
            rest = tail;
        }
        if !want.is_empty() {
            self.send(a, b, Msg::Chunks(want));
        }
        self.send(a, b, Msg::Vv(vv.0, vv.1));
        // b tells a what it has.
        let rb = self.hosts[b].rep.as_ref().ok_or("down")?;
        let back = (rb.id(), rb.version_vector().clone());
        self.send(b, a, Msg::Vv(back.0, back.1));
        Ok(())
    }

    fn deliver(&mut self) -> Result<(), Fail> {
        let now = self.step as u64;
        let ready: Vec<usize> = (0..self.net.len())
            .filter(|i| self.net[*i].at <= now)
            .collect();
        let Some(i) = self.pick(&ready) else {
            return Ok(());
        };
        let m = self.net.swap_remove(i);
        let fate = self.rng.gen_range(0..100);
        if fate < 8 {
            self.stats.dropped += 1;
            return Ok(());
        }
        let dup = fate >= 92;
        self.apply_msg(&m, dup)?;
        if dup {
            self.stats.duplicated += 1;
            self.net.push(InFlight {
                at: now + self.rng.gen_range(0..10),
                ..m
            });
        }
        Ok(())
    }

    fn apply_msg(&mut self, m: &InFlight, _dup: bool) -> Result<(), Fail> {
        // Entries one by one, or as a batch (runs in order folded together): both paths.
        let batch = self.rng.gen_bool(0.5);
        let Some(r) = self.hosts[m.to].rep.as_mut() else {
            return Ok(()); // down: lost
        };
        let _ = m.from;
        match &m.msg {
            Msg::Entries(es) => {
                if batch {
                    r.receive_batch(es).map_err(err("receive_batch"))?;
                } else {
                    for e in es {
                        r.receive(e).map_err(err("receive"))?;
                    }
                }
                self.stats.delivered += 1;
            }
            Msg::Chunks(cs) => {
                for (addr, s) in cs {
                    if !r.receive_chunk(addr, s).map_err(err("chunk"))? {
                        return Err("a genuine chunk was refused".into());
                    }
                }
            }
            Msg::Vv(id, vv) => {
                self.hosts[m.to].acks.insert(*id, vv.clone());
            }
        }
        Ok(())
    }

    fn partition(&mut self) {
        let n = self.hosts.len();
        let a = self.rng.gen_range(0..n);
        let b = self.rng.gen_range(0..n);
        if a == b {
            return;
        }
        let k = (a.min(b), a.max(b));
        if !self.cut.remove(&k) {
            self.cut.insert(k);
        }
    }

    fn crash_or_restart(&mut self) -> Result<(), Fail> {
        let i = self.rng.gen_range(0..self.hosts.len());
        if self.hosts[i].rep.is_some() {
            // Crash: everything not in the store is gone (held entries, acks, open files).
            self.hosts[i].rep = None;
            self.hosts[i].acks.clear();
            self.hosts[i].open.clear();
            self.stats.crashes += 1;
        } else {
            self.restart(i)?;
        }
        Ok(())
    }

    /// A host trims with the acknowledgements it has heard, while entries are still in flight.
    fn trim_one(&mut self) -> Result<(), Fail> {
        let Some(h) = self.pick(&self.live()) else {
            return Ok(());
        };
        // Acknowledgements are small and gossiped often: fresh ones from every live host (the
        // entries themselves may still be in flight).
        let fresh: Vec<(ReplicaId, VersionVector)> = self
            .hosts
            .iter()
            .filter_map(|x| x.rep.as_ref())
            .map(|r| (r.id(), r.version_vector().clone()))
            .collect();
        self.hosts[h].acks.extend(fresh);
        let acks = self.hosts[h].acks.clone();
        let r = self.hosts[h].rep.as_mut().ok_or("down")?;
        let n = r.trim(&acks).map_err(err("trim"))?;
        self.stats.trims_in_flight += u64::from(n > 0);
        let c = r.check().map_err(err("check"))?;
        if !c.damage.is_empty() {
            return Err(format!("a trim in flight left damage: {:?}", c.damage));
        }
        Ok(())
    }

    /// Host `i` comes back: its replica reopens from its store.
    fn restart(&mut self, i: usize) -> Result<(), Fail> {
        let eng: Arc<dyn Engine> = self.hosts[i].eng.clone();
        let r = Replica::open(
            eng,
            self.keys(),
            self.hosts[i].clock.clone(),
            self.rconfig(),
        )
        .map_err(err("reopen"))?;
        self.hosts[i].rep = Some(r);
        Ok(())
    }

    fn skew(&mut self) {
        let i = self.rng.gen_range(0..self.hosts.len());
        let s = self.rng.gen_range(-300_000i64..=300_000);
        self.hosts[i].clock.skew.store(s, Ordering::SeqCst);
    }

    /// A host loses its store: once what it made has reached a sponsor, it re-joins from the
    /// sponsor's snapshot under a new id, and the sponsor removes the old id.
    fn rejoin(&mut self) -> Result<(), Fail> {
        let live = self.live();
        if live.len() < 2 {
            return Ok(());
        }
        let x = self.pick(&live).ok_or("none")?;
        let s = *live.iter().find(|h| **h != x).ok_or("none")?;
        // Everything x has reaches the sponsor first (its last backup): x may be the only other
        // holder of entries whose author has re-joined meanwhile.
        let (xid, entries) = {
            let rx = self.hosts[x].rep.as_ref().ok_or("down")?;
            let rs = self.hosts[s].rep.as_ref().ok_or("down")?;
            (
                rx.id(),
                rx.entries_for(rs.version_vector())
                    .map_err(err("entries"))?,
            )
        };
        let rs = self.hosts[s].rep.as_mut().ok_or("down")?;
        for e in &entries {
            rs.receive(e).map_err(err("receive"))?;
        }
        let xvv = self.hosts[x]
            .rep
            .as_ref()
            .ok_or("down")?
            .version_vector()
            .clone();
        let svv = self.hosts[s]
            .rep
            .as_ref()
            .ok_or("down")?
            .version_vector()
            .clone();
        if xvv
            .iter()
            .any(|(o, h)| svv.get(o).is_none_or(|sh| sh.seq < h.seq))
        {
            return Ok(()); // not all of it applied there (held): try another time
        }
        // Every chunk x has that s lacks (a late entry may yet need one).
        let want = self.hosts[x]
            .rep
            .as_ref()
            .ok_or("down")?
            .chunk_addrs()
            .map_err(err("chunks"))?;
        for addr in want {
            if self.hosts[s]
                .rep
                .as_ref()
                .ok_or("down")?
                .sealed_chunk(&addr)
                .map_err(err("chunk"))?
                .is_some()
            {
                continue;
            }
            if let Some(c) = self.hosts[x]
                .rep
                .as_ref()
                .ok_or("down")?
                .sealed_chunk(&addr)
                .map_err(err("chunk"))?
            {
                self.hosts[s]
                    .rep
                    .as_ref()
                    .ok_or("down")?
                    .receive_chunk(&addr, &c)
                    .map_err(err("chunk"))?;
            }
        }
        let rs = self.hosts[s].rep.as_mut().ok_or("down")?;
        rs.expel(xid).map_err(err("expel"))?;
        self.hosts[x].eng = Arc::new(MemoryEngine::new());
        self.hosts[x].rep = None;
        self.hosts[x].acks.clear();
        self.hosts[x].open.clear();
        self.join_from(s, x)?;
        self.stats.rejoins += 1;
        Ok(())
    }

    /// Every host's version vector (empty while it is down).
    fn version_vectors(&self) -> Vec<VersionVector> {
        self.hosts
            .iter()
            .map(|h| {
                h.rep
                    .as_ref()
                    .map(|r| r.version_vector().clone())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Heal everything, deliver everything, and check every invariant.
    fn quiesce(&mut self) -> Result<(), Fail> {
        self.cut.clear();
        self.net.clear();
        for i in 0..self.hosts.len() {
            if self.hosts[i].rep.is_none() {
                self.restart(i)?;
            }
        }
        // Clocks catch up with whatever was stamped ahead.
        self.global.fetch_add(700_000, Ordering::SeqCst);
        let n = self.hosts.len();
        for round in 0..100 {
            let before = self.version_vectors();
            for a in 0..n {
                for b in 0..n {
                    if a == b {
                        continue;
                    }
                    let (entries, chunks, vv) = {
                        let ra = self.hosts[a].rep.as_ref().ok_or("down")?;
                        let rb = self.hosts[b].rep.as_ref().ok_or("down")?;
                        let entries = ra
                            .entries_for(rb.version_vector())
                            .map_err(err("entries_for"))?;
                        let mut chunks = Vec::new();
                        for addr in rb.pending_chunks().map_err(err("pending"))? {
                            if let Some(s) = ra.sealed_chunk(&addr).map_err(err("chunk"))? {
                                chunks.push((addr, s));
                            }
                        }
                        (entries, chunks, (ra.id(), ra.version_vector().clone()))
                    };
                    let rb = self.hosts[b].rep.as_mut().ok_or("down")?;
                    rb.retry_held().map_err(err("retry"))?;
                    rb.receive_batch(&entries).map_err(err("receive_batch"))?;
                    for (addr, s) in chunks {
                        rb.receive_chunk(&addr, &s).map_err(err("chunk"))?;
                    }
                    self.hosts[b].acks.insert(vv.0, vv.1);
                }
            }
            let after = self.version_vectors();
            if before == after && round > 0 {
                break;
            }
        }
        self.stats.quiescences += 1;
        self.check_converged("after sync")?;
        // Trim with everyone's acknowledgements, then check again.
        for i in 0..n {
            let acks = self.hosts[i].acks.clone();
            let r = self.hosts[i].rep.as_mut().ok_or("down")?;
            r.trim(&acks).map_err(err("trim"))?;
        }
        self.check_converged("after trim")?;
        for i in 0..n {
            let r = self.hosts[i].rep.as_ref().ok_or("down")?;
            let u = r.unreferenced_chunks().map_err(err("chunks"))?;
            if u > 0 {
                return Err(format!(
                    "replica {i} keeps {u} unreferenced chunks after a full trim"
                ));
            }
        }
        Ok(())
    }

    fn check_converged(&mut self, when: &str) -> Result<(), Fail> {
        let mut first: Option<(ReplicaId, BTreeMap<Vec<u8>, crate::DumpEntry>)> = None;
        let mut undone = 0;
        for (i, h) in self.hosts.iter().enumerate() {
            let r = h.rep.as_ref().ok_or("down")?;
            undone += r.counters().undone;
            if r.held() > 0 {
                return Err(format!(
                    "{when}: replica {i} still holds {} entries: {:?}",
                    r.held(),
                    r.held_summary()
                ));
            }
            let c = r.check().map_err(err("check"))?;
            if !c.is_clean() {
                return Err(format!(
                    "{when}: check of replica {i}: {:?} {:?}",
                    c.damage, c.forks
                ));
            }
            if !c.pending.is_empty() {
                let pend = r.pending_chunks().map_err(err("pending"))?;
                let holders: Vec<usize> = (0..self.hosts.len())
                    .filter(|j| {
                        self.hosts[*j].rep.as_ref().is_some_and(|o| {
                            pend.iter()
                                .any(|a| o.sealed_chunk(a).ok().flatten().is_some())
                        })
                    })
                    .collect();
                return Err(format!(
                    "{when}: replica {i} has {} chunks pending (held by replicas {holders:?})",
                    c.pending.len()
                ));
            }
            let d = r.dump().map_err(err("dump"))?;
            match &first {
                None => first = Some((r.id(), d)),
                Some((_, f)) => {
                    if *f != d {
                        let diff: Vec<String> = f
                            .iter()
                            .filter(|(p, e)| d.get(*p) != Some(*e))
                            .map(|(p, _)| String::from_utf8_lossy(p).into_owned())
                            .chain(
                                d.keys()
                                    .filter(|p| !f.contains_key(*p))
                                    .map(|p| String::from_utf8_lossy(p).into_owned()),
                            )
                            .take(5)
                            .collect();
                        return Err(format!(
                            "{when}: replicas 0 and {i} differ (trees diverged) at {diff:?}"
                        ));
                    }
                }
            }
        }
        self.stats.undone = undone;
        let (_, dump) = first.ok_or("no replicas")?;
        // Every acknowledged write is still there, unless replaced or removed knowingly.
        let present: BTreeSet<OpId> = dump.values().filter_map(|e| e.inode.version).collect();
        let superseded: BTreeSet<OpId> = self.writes.iter().filter_map(|w| w.base).collect();
        // ... and whole: a file at version `w` holds exactly what `w`'s author wrote, never
        // pieces of a concurrent writer's version.
        let r0 = self.hosts[0].rep.as_ref().ok_or("down")?;
        let by_version: BTreeMap<OpId, &AckedWrite> =
            self.writes.iter().map(|w| (w.id, w)).collect();
        for (p, e) in &dump {
            let Some(v) = e.inode.version else { continue };
            let Some(w) = by_version.get(&v) else {
                continue;
            };
            let got = r0.read(e.inode.id).map_err(err("read"))?;
            if got != w.data {
                return Err(format!(
                    "{when}: {} holds version {v:?} but not its contents: {:?} written, {:?} read",
                    String::from_utf8_lossy(p),
                    String::from_utf8_lossy(&w.data),
                    String::from_utf8_lossy(&got)
                ));
            }
            self.stats.contents_checked += 1;
        }
        for w in &self.writes {
            if !present.contains(&w.id)
                && !superseded.contains(&w.id)
                && !self.removed.contains(&w.id)
            {
                let r = self.hosts[0].rep.as_ref().ok_or("down")?;
                return Err(format!(
                    "{when}: an acknowledged write ({:?}, base {:?}) is neither at its name nor in a conflict copy; {}",
                    w.id,
                    w.base,
                    r.explain_version(w.id)
                ));
            }
        }
        self.stats.conflict_copies = dump
            .keys()
            .filter(|p| p.windows(14).any(|w| w == b".sync-conflict"))
            .count() as u64;
        // The last acknowledged change of each attribute won.
        let by_inode: BTreeMap<NodeId, &crate::DumpEntry> =
            dump.values().map(|e| (e.inode.id, e)).collect();
        let mut last_perm: BTreeMap<NodeId, (OpId, u32)> = BTreeMap::new();
        let mut last_uid: BTreeMap<NodeId, (OpId, u32)> = BTreeMap::new();
        for a in &self.attrs {
            if let Some(p) = a.perm {
                let e = last_perm.entry(a.inode).or_insert((a.id, p));
                if a.id >= e.0 {
                    *e = (a.id, p);
                }
            }
            if let Some(u) = a.uid {
                let e = last_uid.entry(a.inode).or_insert((a.id, u));
                if a.id >= e.0 {
                    *e = (a.id, u);
                }
            }
        }
        for (ino, (id, p)) in &last_perm {
            if let Some(e) = by_inode.get(ino) {
                if e.inode.perm != *p {
                    return Err(format!(
                        "{when}: the last chmod of {ino:?} ({id:?}, {p:o}) lost: mode is {:o}",
                        e.inode.perm
                    ));
                }
            }
        }
        for (ino, (id, u)) in &last_uid {
            if let Some(e) = by_inode.get(ino) {
                if e.inode.uid != *u {
                    return Err(format!(
                        "{when}: the last chown of {ino:?} ({id:?}, uid {u}) lost: uid is {}",
                        e.inode.uid
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Run seeds `first..first + n`; the first failure, if any.
pub fn run_seeds(
    first: u64,
    n: u64,
    faults: Faults,
    steps: usize,
) -> Result<Vec<SimStats>, SimFailure> {
    let mut out = Vec::new();
    for seed in first..first + n {
        let mut cfg = SimConfig::new(seed);
        cfg.faults = faults;
        cfg.steps = steps;
        out.push(run(&cfg)?);
    }
    Ok(out)
}
