//! The fold step: one operation applied to the state, deterministically. Every replica applies
//! every operation in the same total order (by [`OpId`]), undoing and redoing later ones when
//! an earlier one arrives late, so any function of (state, operation) here converges. The rules
//! are stated in docs/sync.md; each `Skipped` reason is one of them.

use crate::error::{corrupt, Result};
use crate::ids::{NodeId, OpId, ReplicaId};
use crate::op::{Extent, Kind, Op, Victim};
use crate::state::{pieces, InodeRec, NodeRec, PriorHead, Table, Tx};

/// A walk up the tree longer than this means a cycle: damage.
pub const MAX_DEPTH: usize = 100_000;

/// What folding an operation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// The operation changed nothing, for the reason given (a rule of docs/sync.md, or a node
    /// it names that has not arrived yet: a later redo applies it).
    Skipped(&'static str),
}

pub(crate) fn apply(tx: &mut Tx<'_>, id: OpId, op: &Op) -> Result<Applied> {
    let ms = id.hlc.ms() as i64;
    match op {
        Op::Create {
            node,
            inode,
            parent,
            name,
            kind,
            perm,
            uid,
            gid,
            target,
            rdev,
        } => {
            if tx.node(*node)?.is_some() || (*kind != Kind::Dir && tx.inode(*inode)?.is_some()) {
                return Ok(Applied::Skipped("the node exists already"));
            }
            if !is_dir(tx, *parent)? {
                return Ok(Applied::Skipped("the directory has not arrived"));
            }
            resurrect(tx, *parent, ms)?;
            let is_dir = *kind == Kind::Dir;
            let ino = if is_dir { *node } else { *inode };
            let rec = InodeRec {
                id: ino,
                kind: *kind,
                perm: *perm,
                uid: *uid,
                gid: *gid,
                atime: ms,
                mtime: ms,
                ctime: ms,
                xattrs: Default::default(),
                target: target.clone(),
                rdev: *rdev,
                version: None,
                size: if *kind == Kind::Symlink {
                    target.len() as u64
                } else {
                    0
                },
                links: Vec::new(),
                trashed: Vec::new(),
                children: 0,
            };
            tx.put_inode(&rec)?;
            let mut n = NodeRec {
                id: *node,
                parent: NodeId::TRASH,
                name: name.clone(),
                inode: ino,
                is_dir,
                trashed_from: None,
            };
            place(tx, &mut n, *parent, name, id, ms)?;
            Ok(Applied::Done)
        }
        Op::Link {
            node,
            inode,
            parent,
            name,
        } => {
            if tx.node(*node)?.is_some() {
                return Ok(Applied::Skipped("the node exists already"));
            }
            match tx.inode(*inode)? {
                Some(i) if i.kind != Kind::Dir => {}
                Some(_) => return Ok(Applied::Skipped("a directory cannot be linked")),
                None => return Ok(Applied::Skipped("the file has not arrived")),
            }
            if !is_dir(tx, *parent)? {
                return Ok(Applied::Skipped("the directory has not arrived"));
            }
            resurrect(tx, *parent, ms)?;
            let mut n = NodeRec {
                id: *node,
                parent: NodeId::TRASH,
                name: name.clone(),
                inode: *inode,
                is_dir: false,
                trashed_from: None,
            };
            place(tx, &mut n, *parent, name, id, ms)?;
            Ok(Applied::Done)
        }
        Op::Move {
            node,
            parent,
            name,
            replace,
        } => {
            let Some(mut n) = tx.node(*node)? else {
                return Ok(Applied::Skipped("the node has not arrived"));
            };
            if *node == NodeId::ROOT {
                return Ok(Applied::Skipped("the root does not move"));
            }
            if !is_dir(tx, *parent)? {
                return Ok(Applied::Skipped("the directory has not arrived"));
            }
            // Kleppmann et al.: a move under itself would make a cycle, and is skipped.
            if is_ancestor_or_self(tx, *node, *parent)? {
                return Ok(Applied::Skipped("the move would make a cycle"));
            }
            resurrect(tx, *parent, ms)?;
            // Bringing the directory back may have put it under the node.
            if is_ancestor_or_self(tx, *node, *parent)? {
                return Ok(Applied::Skipped("the move would make a cycle"));
            }
            if n.parent == *parent && n.name == *name {
                return Ok(Applied::Done);
            }
            if let Some(y) = tx.lookup(*parent, name)? {
                if y != *node && replaceable(tx, y, replace.as_ref())? {
                    let mut yr = tx
                        .node(y)?
                        .ok_or_else(|| corrupt("a name points at a missing node"))?;
                    to_trash(tx, &mut yr, ms)?;
                }
            }
            n = tx
                .node(*node)?
                .ok_or_else(|| corrupt("a moved node vanished"))?;
            place(tx, &mut n, *parent, name, id, ms)?;
            Ok(Applied::Done)
        }
        Op::Remove { node, seen } => {
            let Some(mut n) = tx.node(*node)? else {
                return Ok(Applied::Skipped("the node has not arrived"));
            };
            if *node == NodeId::ROOT {
                return Ok(Applied::Skipped("the root is not removed"));
            }
            if n.parent == NodeId::TRASH {
                return Ok(Applied::Skipped("removed already"));
            }
            let i = inode_of(tx, &n)?;
            if n.is_dir && i.children > 0 {
                return Ok(Applied::Skipped(
                    "the directory gained entries meanwhile (every file stays reachable)",
                ));
            }
            if !n.is_dir && i.version != *seen {
                return Ok(Applied::Skipped(
                    "the file was changed meanwhile (modify beats delete)",
                ));
            }
            to_trash(tx, &mut n, ms)?;
            Ok(Applied::Done)
        }
        Op::SetAttr {
            inode,
            perm,
            uid,
            gid,
            atime,
            mtime,
        } => {
            let Some(mut i) = tx.inode(*inode)? else {
                return Ok(Applied::Skipped("the file has not arrived"));
            };
            if let Some(v) = perm {
                i.perm = *v;
            }
            if let Some(v) = uid {
                i.uid = *v;
            }
            if let Some(v) = gid {
                i.gid = *v;
            }
            if let Some(v) = atime {
                i.atime = *v;
            }
            if let Some(v) = mtime {
                i.mtime = *v;
            }
            i.ctime = ms;
            tx.put_inode(&i)?;
            Ok(Applied::Done)
        }
        Op::SetXattr { inode, name, value } => {
            let Some(mut i) = tx.inode(*inode)? else {
                return Ok(Applied::Skipped("the file has not arrived"));
            };
            match value {
                Some(v) => {
                    i.xattrs.insert(name.clone(), v.clone());
                }
                None => {
                    i.xattrs.remove(name);
                }
            }
            i.ctime = ms;
            tx.put_inode(&i)?;
            Ok(Applied::Done)
        }
        Op::Write {
            inode,
            base,
            size,
            extents,
        } => {
            // The lineage continues where its base version is, or was last: at the file, in a
            // conflict copy that took it, or at the file a concurrent write took it from.
            let mut home = None;
            if let Some(b) = base {
                if let Some(h) = tx.verhome(*b)? {
                    if tx.inode(h)?.is_some() {
                        home = Some(h);
                    }
                }
            }
            let target = match home {
                Some(h) => h,
                None if tx.inode(*inode)?.is_some() => *inode,
                None => return Ok(Applied::Skipped("the file has not arrived")),
            };
            let mut t = tx
                .inode(target)?
                .ok_or_else(|| corrupt("a version's home is missing"))?;
            if t.kind != Kind::File {
                return Ok(Applied::Skipped("not a regular file"));
            }
            let cs = tx.chunk_size()?;
            if t.version != *base && t.version.is_some() {
                // Concurrent writers: the newer one (this) keeps the name, the older contents
                // move whole to a conflict copy, and this write's pieces go over its own base,
                // rebuilt from what the writes since then replaced.
                displace(tx, &t, cs, ms)?;
                let rebuilt = if tx.mix {
                    None
                } else {
                    rebuild(tx, &t, *base)?
                };
                if rebuilt.is_none() && !tx.mix {
                    // Trimming keeps what a rebuild needs while anything based on it can
                    // arrive: reaching here is a bug (the simulator's content check would
                    // name the file).
                    tracing::error!(write = ?id, base = ?base, "a write's base version could not be rebuilt: its pieces go over the newer contents");
                }
                if let Some(b) = rebuilt {
                    let n = pieces(b.size, cs);
                    match b.anchor {
                        Some(a) if a == target => {
                            for (i, e) in b.pieces {
                                tx.set_extent(target, i, e.as_ref(), false)?;
                            }
                        }
                        anchor => {
                            for i in 0..pieces(t.size, cs).max(n) {
                                let want = match (b.pieces.get(&i), anchor) {
                                    _ if i >= n => None,
                                    (Some(e), _) => e.clone(),
                                    (None, Some(a)) => tx.extent(a, i)?,
                                    (None, None) => None,
                                };
                                tx.set_extent(target, i, want.as_ref(), false)?;
                            }
                        }
                    }
                    t.size = b.size;
                    t.version = *base;
                }
            }
            // Each changed piece: the new one takes references; the one it replaces keeps its
            // own, held by this write's prior record until the write is stable.
            let old_size = t.size;
            let mut prior: std::collections::BTreeMap<u64, Option<Extent>> = Default::default();
            let mut change = |tx: &mut Tx<'_>, i: u64, e: Option<&Extent>| -> Result<()> {
                let first = !prior.contains_key(&i);
                let old = tx.set_extent(target, i, e, first)?;
                if first {
                    prior.insert(i, old);
                }
                Ok(())
            };
            let mut last = pieces(old_size, cs);
            for (i, e) in extents {
                change(tx, *i, e.as_ref())?;
                last = last.max(i.saturating_add(1));
            }
            // Nothing past the new size survives: a later extension reads zeros there.
            let keep = pieces(*size, cs);
            for i in keep..last {
                if tx.extent(target, i)?.is_some() {
                    change(tx, i, None)?;
                }
            }
            if *size % cs != 0 {
                let i = *size / cs;
                if let Some(e) = tx.extent(target, i)? {
                    if e.len() > *size % cs {
                        change(tx, i, e.clipped(*size % cs).as_ref())?;
                    }
                }
            }
            for (i, e) in &prior {
                tx.put_prior(id, *i, e.clone())?;
            }
            tx.put_prior_head(
                id,
                &PriorHead {
                    base: t.version,
                    size: old_size,
                    indexes: prior.keys().copied().collect(),
                },
            )?;
            // (A superseded version's home stays: a concurrent write based on it finds the
            // file it belongs to there.)
            tx.set_verhome(id, Some(target))?;
            t.version = Some(id);
            t.size = *size;
            t.mtime = ms;
            t.ctime = ms;
            let revive = if t.links.is_empty() {
                t.trashed.last().copied()
            } else {
                None
            };
            tx.put_inode(&t)?;
            if let Some(l) = revive {
                // Written after (or concurrently with) its removal: modify beats delete.
                resurrect(tx, l, ms)?;
            }
            Ok(Applied::Done)
        }
        Op::AddMember { id: m, key } => {
            if tx
                .get::<(ReplicaId, Member)>(Table::Member, &m.0.to_be_bytes())?
                .is_some()
            {
                return Ok(Applied::Skipped("the replica id was used before"));
            }
            tx.put(
                Table::Member,
                &m.0.to_be_bytes(),
                &(
                    *m,
                    Member::Active {
                        since: id,
                        key: *key,
                    },
                ),
            )?;
            Ok(Applied::Done)
        }
        Op::RemoveMember { id: m, upto } => {
            // Several members may remove one (each when it finds it silent): the smallest
            // cutoff holds, whatever the order.
            let (upto, key) =
                match tx.get::<(ReplicaId, Member)>(Table::Member, &m.0.to_be_bytes())? {
                    Some((_, Member::Removed { upto: u0, key, .. })) => (u0.min(*upto), key),
                    Some((_, Member::Active { key, .. })) => (*upto, key),
                    None => (*upto, [0; 32]),
                };
            tx.put(
                Table::Member,
                &m.0.to_be_bytes(),
                &(*m, Member::Removed { at: id, upto, key }),
            )?;
            Ok(Applied::Done)
        }
    }
}

/// A replica's place in the member list.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Member {
    /// Admitted by operation `since`; its entries are signed with the private half of `key`
    /// (Ed25519).
    Active { since: OpId, key: [u8; 32] },
    /// Removed for good: its id is never used again; its entries after `upto` are refused.
    Removed { at: OpId, upto: u64, key: [u8; 32] },
}

fn is_dir(tx: &Tx<'_>, n: NodeId) -> Result<bool> {
    Ok(matches!(tx.node(n)?, Some(r) if r.is_dir))
}

fn inode_of(tx: &Tx<'_>, n: &NodeRec) -> Result<InodeRec> {
    tx.inode(n.inode)?
        .ok_or_else(|| corrupt("a node's inode is missing"))
}

/// Whether `a` is `b` or one of its ancestors.
fn is_ancestor_or_self(tx: &Tx<'_>, a: NodeId, b: NodeId) -> Result<bool> {
    let mut cur = b;
    for _ in 0..MAX_DEPTH {
        if cur == a {
            return Ok(true);
        }
        if cur == NodeId::ROOT || cur == NodeId::TRASH {
            return Ok(false);
        }
        cur = tx
            .node(cur)?
            .ok_or_else(|| corrupt("a node's parent is missing"))?
            .parent;
    }
    Err(corrupt("a cycle in the tree"))
}

/// `n`, if it is in the trash. Only direct children of the trash are in it: a directory goes
/// there only empty, and anything placed into a trashed directory brings it back first.
fn trashed_top(tx: &Tx<'_>, n: NodeId) -> Result<Option<NodeId>> {
    if n == NodeId::ROOT || n == NodeId::TRASH {
        return Ok(None);
    }
    let r = tx.node(n)?.ok_or_else(|| corrupt("a node is missing"))?;
    Ok((r.parent == NodeId::TRASH).then_some(n))
}

/// Whether the node at a name may be replaced by a rename that expected `victim` there.
fn replaceable(tx: &Tx<'_>, y: NodeId, victim: Option<&Victim>) -> Result<bool> {
    let Some(v) = victim else { return Ok(false) };
    if v.node != y {
        return Ok(false);
    }
    let yr = tx
        .node(y)?
        .ok_or_else(|| corrupt("a name points at a missing node"))?;
    let i = inode_of(tx, &yr)?;
    Ok(if yr.is_dir {
        i.children == 0
    } else {
        i.version == v.seen
    })
}

/// Take `n` out of its directory (not out of the trash).
fn detach(tx: &mut Tx<'_>, n: &NodeRec, ms: i64) -> Result<()> {
    if n.parent == NodeId::TRASH {
        return Ok(());
    }
    if tx.lookup(n.parent, &n.name)? == Some(n.id) {
        tx.set_name(n.parent, &n.name, None)?;
    }
    let mut p = tx
        .inode(n.parent)?
        .ok_or_else(|| corrupt("a directory's inode is missing"))?;
    p.children = p.children.saturating_sub(1);
    p.mtime = ms;
    p.ctime = ms;
    tx.put_inode(&p)
}

/// Put `n` (in the trash, or in a directory) into `parent` under `name`, or under a conflict
/// name if `name` is taken.
fn place(
    tx: &mut Tx<'_>,
    n: &mut NodeRec,
    parent: NodeId,
    name: &[u8],
    by: OpId,
    ms: i64,
) -> Result<()> {
    let from_trash = n.parent == NodeId::TRASH;
    detach(tx, n, ms)?;
    let name = free_name(tx, parent, name, by)?;
    tx.set_name(parent, &name, Some(n.id))?;
    let mut p = tx
        .inode(parent)?
        .ok_or_else(|| corrupt("a directory's inode is missing"))?;
    p.children += 1;
    p.mtime = ms;
    p.ctime = ms;
    tx.put_inode(&p)?;
    n.parent = parent;
    n.name = name;
    n.trashed_from = None;
    tx.put_node(n)?;
    if from_trash {
        let mut i = inode_of(tx, n)?;
        i.trashed.retain(|t| *t != n.id);
        if let Err(at) = i.links.binary_search(&n.id) {
            i.links.insert(at, n.id);
        }
        i.ctime = ms;
        tx.put_inode(&i)?;
    }
    Ok(())
}

fn to_trash(tx: &mut Tx<'_>, n: &mut NodeRec, ms: i64) -> Result<()> {
    detach(tx, n, ms)?;
    n.trashed_from = Some((n.parent, n.name.clone()));
    n.parent = NodeId::TRASH;
    tx.put_node(n)?;
    let mut i = inode_of(tx, n)?;
    i.links.retain(|l| *l != n.id);
    i.trashed.retain(|l| *l != n.id);
    i.trashed.push(n.id);
    i.ctime = ms;
    tx.put_inode(&i)
}

/// Bring `n` back from the trash (with what it was in), where it was or, if that is gone or
/// would make a cycle, at the root.
fn resurrect(tx: &mut Tx<'_>, n: NodeId, ms: i64) -> Result<()> {
    for _ in 0..MAX_DEPTH {
        let Some(top) = trashed_top(tx, n)? else {
            return Ok(());
        };
        let mut r = tx
            .node(top)?
            .ok_or_else(|| corrupt("a trashed node is missing"))?;
        let (mut p, name) = r
            .trashed_from
            .clone()
            .unwrap_or((NodeId::ROOT, b"lost+found".to_vec()));
        if !is_dir(tx, p)? {
            p = NodeId::ROOT;
        }
        // Its old directory first (it may be in the trash too).
        if trashed_top(tx, p)?.is_some() {
            resurrect(tx, p, ms)?;
        }
        if is_ancestor_or_self(tx, top, p)? {
            p = NodeId::ROOT;
        }
        // A revived node keeps its identity; the name it gets back is recomputed.
        let by = OpId {
            hlc: crate::ids::Hlc(0),
            origin: ReplicaId(r.id.origin),
            seq: r.id.n,
        };
        place(tx, &mut r, p, &name, by, ms)?;
    }
    Err(corrupt("bringing a node back from the trash did not end"))
}

/// Move `t`'s current contents (version `t.version`) whole into a new file beside it: the
/// conflict copy, named `NAME.sync-conflict-DATE-TIME-HOST.EXT` after the version it keeps.
fn displace(tx: &mut Tx<'_>, t: &InodeRec, cs: u64, ms: i64) -> Result<()> {
    let Some(v) = t.version else { return Ok(()) };
    let c = NodeId::conflict_inode(v);
    if tx.inode(c)?.is_some() {
        return Ok(());
    }
    let mut copy = t.clone();
    copy.id = c;
    copy.links = Vec::new();
    copy.trashed = Vec::new();
    copy.ctime = ms;
    for i in 0..pieces(t.size, cs) {
        if let Some(e) = tx.extent(t.id, i)? {
            tx.set_extent(c, i, Some(&e), false)?;
        }
    }
    tx.set_verhome(v, Some(c))?;
    tx.put_inode(&copy)?;
    let (parent, name) = if let Some(l) = t.links.first() {
        let r = tx.node(*l)?.ok_or_else(|| corrupt("a link is missing"))?;
        (r.parent, r.name)
    } else if let Some(l) = t.trashed.last() {
        let r = tx.node(*l)?.ok_or_else(|| corrupt("a link is missing"))?;
        r.trashed_from
            .unwrap_or((NodeId::ROOT, b"conflict".to_vec()))
    } else {
        (NodeId::ROOT, b"conflict".to_vec())
    };
    let parent = if is_dir(tx, parent)? {
        parent
    } else {
        NodeId::ROOT
    };
    resurrect(tx, parent, ms)?;
    let mut n = NodeRec {
        id: NodeId::conflict_name(v),
        parent: NodeId::TRASH,
        name: Vec::new(),
        inode: c,
        is_dir: false,
        trashed_from: None,
    };
    let cname = conflict_name(&name, v, 0);
    place(tx, &mut n, parent, &cname, v, ms)
}

/// A version's contents as rebuilt from a later one.
struct Rebuilt {
    size: u64,
    /// The file whose current contents `pieces` differ from (`None`: from nothing).
    anchor: Option<NodeId>,
    /// The pieces that differ from the anchor's (`None`: none there).
    pieces: std::collections::BTreeMap<u64, Option<Extent>>,
}

/// Most versions a rebuild looks through for a descendant still current somewhere.
const MAX_REBUILD_SEARCH: usize = 10_000;

/// Version `base`'s contents, rebuilt from the current version of a file in its lineage and the
/// prior records of the writes between them. The lineage is looked for at `t` first, then at
/// the homes of `base`'s descendants (a conflict copy may have taken the line on). `None` when
/// no file holds a descendant any more and `base` is not current anywhere: trimming drops
/// prior records only once nothing based on them can still arrive.
fn rebuild(tx: &Tx<'_>, t: &InodeRec, base: Option<OpId>) -> Result<Option<Rebuilt>> {
    let Some(b) = base else {
        return Ok(Some(Rebuilt {
            size: 0,
            anchor: None,
            pieces: Default::default(),
        }));
    };
    if let Some(r) = walk(tx, t, b)? {
        return Ok(Some(r));
    }
    let mut queue: std::collections::VecDeque<OpId> = tx.children(b)?.into();
    let mut seen = std::collections::BTreeSet::new();
    while let Some(c) = queue.pop_front() {
        if !seen.insert(c) || seen.len() > MAX_REBUILD_SEARCH {
            continue;
        }
        if let Some(home) = tx.verhome(c)? {
            if let Some(i) = tx.inode(home)? {
                if let Some(r) = walk(tx, &i, b)? {
                    return Ok(Some(r));
                }
            }
        }
        queue.extend(tx.children(c)?);
    }
    Ok(None)
}

/// `base`'s contents from `from`'s current version, if `base` is in its lineage.
fn walk(tx: &Tx<'_>, from: &InodeRec, base: OpId) -> Result<Option<Rebuilt>> {
    let mut chain = Vec::new();
    let mut at = from.version;
    let mut size = from.size;
    while at != Some(base) {
        let Some(v) = at else { return Ok(None) };
        let Some(h) = tx.prior_head(v)? else {
            return Ok(None);
        };
        if chain.len() >= MAX_DEPTH {
            return Err(corrupt("a file's lineage does not end"));
        }
        size = h.size;
        at = h.base;
        chain.push((v, h.indexes));
    }
    // The oldest write after `base` that changed a piece holds `base`'s piece.
    let mut pieces = std::collections::BTreeMap::new();
    for (v, indexes) in chain.iter().rev() {
        for i in indexes {
            if !pieces.contains_key(i) {
                let p = tx
                    .prior(*v, *i)?
                    .ok_or_else(|| corrupt("a write's prior record is missing"))?;
                pieces.insert(*i, p);
            }
        }
    }
    Ok(Some(Rebuilt {
        size,
        anchor: Some(from.id),
        pieces,
    }))
}

/// `name` if free in `parent`, else its conflict name after `by`, else that with a number.
fn free_name(tx: &Tx<'_>, parent: NodeId, name: &[u8], by: OpId) -> Result<Vec<u8>> {
    if tx.lookup(parent, name)?.is_none() {
        return Ok(name.to_vec());
    }
    for i in 0..1000u32 {
        let c = conflict_name(name, by, i);
        if tx.lookup(parent, &c)?.is_none() {
            return Ok(c);
        }
    }
    Err(corrupt("no free conflict name in 1000 tries"))
}

/// Syncthing's convention: `stem.sync-conflict-YYYYMMDD-HHMMSS-HOST.ext` (`-N` appended to the
/// host when `n > 0`), the extension kept so that the copy still opens with the same program.
/// Names are cut to stay within 255 bytes.
pub fn conflict_name(name: &[u8], v: OpId, n: u32) -> Vec<u8> {
    let (stem, ext) = match name.iter().rposition(|&b| b == b'.') {
        Some(p) if p > 0 => (&name[..p], &name[p..]),
        _ => (name, &name[name.len()..]),
    };
    let (y, mo, d, h, mi, s) = civil(v.hlc.ms() / 1000);
    let mut tag = format!(
        ".sync-conflict-{y:04}{mo:02}{d:02}-{h:02}{mi:02}{s:02}-{}",
        v.origin.short()
    );
    if n > 0 {
        tag.push_str(&format!("-{n}"));
    }
    let room = 255usize.saturating_sub(tag.len() + ext.len().min(32));
    let ext = &ext[..ext.len().min(32)];
    let mut out = stem[..stem.len().min(room)].to_vec();
    out.extend_from_slice(tag.as_bytes());
    out.extend_from_slice(ext);
    out
}

/// UTC calendar date and time of a Unix time (Howard Hinnant's days-from-civil, inverted).
fn civil(secs: u64) -> (u64, u64, u64, u64, u64, u64) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y.max(0) as u64,
        m as u64,
        d as u64,
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Hlc;

    #[test]
    fn conflict_names_follow_syncthing_and_keep_the_extension() {
        // 2026-12-02 09:30:15 UTC
        let v = OpId {
            hlc: Hlc::from_ms(1_796_203_815_000),
            origin: ReplicaId(0xabcd_ef01_0000_0000),
            seq: 3,
        };
        assert_eq!(
            conflict_name(b"report.txt", v, 0),
            b"report.sync-conflict-20261202-093015-abcdef01.txt".to_vec()
        );
        assert_eq!(
            conflict_name(b"Makefile", v, 2),
            b"Makefile.sync-conflict-20261202-093015-abcdef01-2".to_vec()
        );
        assert_eq!(
            conflict_name(b".bashrc", v, 0),
            b".bashrc.sync-conflict-20261202-093015-abcdef01".to_vec()
        );
        assert!(conflict_name(&[b'a'; 255], v, 0).len() <= 255);
    }
}
