//! Checking a replica's state against its own invariants, and a canonical dump to compare
//! replicas with.

use std::collections::{BTreeMap, BTreeSet};

use sealvol_store::Cf;
use serde::{Deserialize, Serialize};

use crate::apply::MAX_DEPTH;
use crate::error::Result;
use crate::ids::{NodeId, OpId};
use crate::op::Extent;
use crate::op::Kind;
use crate::replica::{hex8, Replica};
use crate::state::{
    decode, pieces, ExtentRec, InodeRec, NameRec, NodeRec, PriorRec, RefRec, Table,
};

/// What `check` found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Broken invariants: each is damage (or a bug).
    pub damage: Vec<String>,
    /// Chunks referenced but not here yet: not damage; they arrive with the next sync.
    pub pending: Vec<String>,
    /// Forks seen since this replica opened.
    pub forks: Vec<String>,
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.damage.is_empty() && self.forks.is_empty()
    }
}

/// One file or directory in a canonical dump: its name node and its inode record, derived
/// values (links, entry count, ctime) included, since every replica derives the same.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DumpEntry {
    pub node: NodeId,
    pub inode: InodeRec,
    /// A file's pieces, by index.
    pub extents: Vec<(u64, Extent)>,
}

impl DumpEntry {
    pub fn nlink(&self) -> usize {
        self.inode.links.len()
    }
}

impl Replica {
    fn scan<T: serde::de::DeserializeOwned>(
        &self,
        t: Table,
        damage: &mut Vec<String>,
    ) -> Result<Vec<T>> {
        let (cf, tag) = t.place();
        let mut out = Vec::new();
        let mut raw = Vec::new();
        self.engine().for_each(cf, &[tag], &mut |k, v| {
            raw.push((k.to_vec(), v.to_vec()));
            Ok(())
        })?;
        for (k, v) in raw {
            match self
                .keys_ref()
                .open_record(&k, &v)
                .and_then(|p| decode::<T>(&p))
            {
                Ok(r) => out.push(r),
                Err(e) => damage.push(format!("{t:?} record: {e}")),
            }
        }
        Ok(out)
    }

    /// Every invariant of the replicated state: the tree (names index, parents, no cycles,
    /// everything reachable), link and entry counts, version homes, reference counts against a
    /// recount, and chunks (present, or pending).
    pub fn check(&self) -> Result<CheckReport> {
        let mut r = CheckReport::default();
        let nodes: Vec<NodeRec> = self.scan(Table::Node, &mut r.damage)?;
        let inodes: Vec<InodeRec> = self.scan(Table::Inode, &mut r.damage)?;
        let names: Vec<NameRec> = self.scan(Table::Name, &mut r.damage)?;
        let refs: Vec<RefRec> = self.scan(Table::Ref, &mut r.damage)?;
        let extents: Vec<ExtentRec> = self.scan(Table::Extent, &mut r.damage)?;
        let priors: Vec<PriorRec> = self.scan(Table::Prior, &mut r.damage)?;
        let cs = self.chunk_size()?;
        let by_id: BTreeMap<NodeId, &NodeRec> = nodes.iter().map(|n| (n.id, n)).collect();
        let inode_by_id: BTreeMap<NodeId, &InodeRec> = inodes.iter().map(|i| (i.id, i)).collect();
        let mut children: BTreeMap<NodeId, u64> = BTreeMap::new();
        let mut links: BTreeMap<NodeId, Vec<NodeId>> = BTreeMap::new();
        for n in &nodes {
            if n.id == NodeId::ROOT || n.parent == NodeId::TRASH {
                continue;
            }
            // Reaches the root, without a cycle.
            let mut cur = n.parent;
            let mut ok = false;
            for _ in 0..MAX_DEPTH {
                if cur == NodeId::ROOT {
                    ok = true;
                    break;
                }
                match by_id.get(&cur) {
                    Some(p) if p.parent != NodeId::TRASH && p.id != n.id => cur = p.parent,
                    _ => break,
                }
            }
            if !ok {
                r.damage
                    .push(format!("{:?} is not reachable from the root", n.id));
            }
            match by_id.get(&n.parent) {
                Some(p) if p.is_dir => {}
                _ => r
                    .damage
                    .push(format!("{:?}'s parent is not a directory", n.id)),
            }
            if self.lookup(n.parent, &n.name)? != Some(n.id) {
                r.damage
                    .push(format!("{:?} is missing from its directory's index", n.id));
            }
            *children.entry(n.parent).or_default() += 1;
            links.entry(n.inode).or_default().push(n.id);
            if !inode_by_id.contains_key(&n.inode) {
                r.damage.push(format!("{:?}'s inode is missing", n.id));
            }
        }
        for nm in &names {
            match by_id.get(&nm.node) {
                Some(n) if n.parent == nm.parent && n.name == nm.name => {}
                _ => r
                    .damage
                    .push(format!("a name points at the wrong node: {:?}", nm.node)),
            }
        }
        let mut recount: BTreeMap<[u8; 32], u64> = BTreeMap::new();
        for i in &inodes {
            let mut want = links.get(&i.id).cloned().unwrap_or_default();
            if i.id == NodeId::ROOT {
                want.push(NodeId::ROOT);
            }
            want.sort();
            if want != i.links {
                r.damage.push(format!(
                    "{:?}'s links are {:?}, the tree says {:?}",
                    i.id, i.links, want
                ));
            }
            if i.kind == Kind::Dir && children.get(&i.id).copied().unwrap_or(0) != i.children {
                r.damage.push(format!("{:?}'s entry count is wrong", i.id));
            }
            if let Some(v) = i.version {
                if self.version_home(v)? != Some(i.id) {
                    r.damage.push(format!(
                        "{:?} holds a version whose home is elsewhere",
                        i.id
                    ));
                }
            }
        }
        // Every chunk a piece names, current or kept for a concurrent write, is counted once
        // per slice.
        for e in &extents {
            match inode_by_id.get(&e.inode) {
                Some(i) if i.kind == Kind::File && e.index < pieces(i.size, cs) => {
                    let room = (i.size - e.index * cs).min(cs);
                    if e.extent.len() > room
                        || e.extent
                            .slices
                            .iter()
                            .any(|s| s.len > s.chunk.len || s.len == 0)
                    {
                        r.damage.push(format!(
                            "{:?}'s piece {} runs past its bounds",
                            e.inode, e.index
                        ));
                    }
                }
                _ => r.damage.push(format!(
                    "a piece of {:?} lies past its file's end or has no file",
                    e.inode
                )),
            }
            for c in e.extent.chunks() {
                *recount.entry(c.addr).or_default() += 1;
            }
        }
        for p in &priors {
            for c in p.extent.iter().flat_map(Extent::chunks) {
                *recount.entry(c.addr).or_default() += 1;
            }
        }
        let stored: BTreeMap<[u8; 32], u64> = refs.iter().map(|x| (x.addr, x.n)).collect();
        if stored != recount {
            r.damage.push(format!(
                "reference counts differ from a recount ({} stored, {} counted)",
                stored.len(),
                recount.len()
            ));
        }
        for addr in recount.keys() {
            match self.sealed_chunk(addr)? {
                None => r.pending.push(hex8(addr)),
                Some(s) => {
                    if !self.receive_chunk_check(addr, &s) {
                        r.damage.push(format!("chunk {} is damaged", hex8(addr)));
                    }
                }
            }
        }
        for f in self.forks() {
            r.forks
                .push(format!("origin {} seq {}", f.origin.short(), f.seq));
        }
        Ok(r)
    }

    /// Where version `v` is, for a failure report.
    pub fn explain_version(&self, v: OpId) -> String {
        let mut damage = Vec::new();
        let inodes: Vec<InodeRec> = self.scan(Table::Inode, &mut damage).unwrap_or_default();
        let nodes: Vec<NodeRec> = self.scan(Table::Node, &mut damage).unwrap_or_default();
        let mut out = format!("home: {:?}; ", self.version_home(v).ok().flatten());
        for i in inodes.iter().filter(|i| i.version == Some(v)) {
            out.push_str(&format!(
                "held by {:?} links {:?} trashed {:?}; ",
                i.id, i.links, i.trashed
            ));
            for n in nodes.iter().filter(|n| n.inode == i.id) {
                out.push_str(&format!(
                    "node {:?} parent {:?} from {:?}; ",
                    n.id, n.parent, n.trashed_from
                ));
            }
        }
        out
    }

    /// Chunks stored that nothing references (after a trim, there should be none).
    pub fn unreferenced_chunks(&self) -> Result<usize> {
        let mut damage = Vec::new();
        let refs: BTreeSet<[u8; 32]> = self
            .scan::<RefRec>(Table::Ref, &mut damage)?
            .into_iter()
            .map(|r| r.addr)
            .collect();
        let mut n = 0;
        self.engine().for_each(Cf::Chunks, b"", &mut |k, _| {
            if k.len() == 32 && !refs.iter().any(|a| a.as_slice() == k) {
                n += 1;
            }
            Ok(())
        })?;
        Ok(n)
    }

    /// The whole tree, by path: what two converged replicas must agree on.
    pub fn dump(&self) -> Result<BTreeMap<Vec<u8>, DumpEntry>> {
        let cs = self.chunk_size()?;
        let mut out = BTreeMap::new();
        let mut stack = vec![(Vec::new(), NodeId::ROOT)];
        while let Some((path, dir)) = stack.pop() {
            for (name, node) in self.readdir(dir)? {
                let mut p = path.clone();
                p.push(b'/');
                p.extend_from_slice(&name);
                let n = self.node(node)?.ok_or(crate::Error::NotFound)?;
                let i = self.inode(n.inode)?.ok_or(crate::Error::NotFound)?;
                if n.is_dir {
                    stack.push((p.clone(), node));
                }
                let mut extents = Vec::new();
                if i.kind == Kind::File {
                    for n in 0..pieces(i.size, cs) {
                        if let Some(e) = self.extent(i.id, n)? {
                            extents.push((n, e));
                        }
                    }
                }
                out.insert(
                    p,
                    DumpEntry {
                        node,
                        inode: i,
                        extents,
                    },
                );
            }
        }
        Ok(out)
    }
}
