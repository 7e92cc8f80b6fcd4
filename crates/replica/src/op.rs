//! Operations: what one change on one replica is, as every other replica applies it.
//!
//! An operation says what its author meant, not the records it happened to rewrite: a `chmod`
//! names the mode only, a create names the new node and the directory, a write names the
//! version it started from. That is what lets concurrent changes merge (docs/sync.md).

use serde::{Deserialize, Serialize};

use crate::ids::{NodeId, OpId, ReplicaId};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDev,
    BlockDev,
}

/// One chunk of a file's contents: its keyed address and plaintext length. Chunks travel apart
/// from entries, as the sealed bytes they are in the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChunkRef {
    pub addr: [u8; 32],
    pub len: u32,
}

/// The name a rename replaces, as its author saw it: the node there and, for a file, the
/// version of its contents. If either has changed by the time the rename is folded, the
/// replaced file is not thrown away (modify beats delete): the renamed node takes a conflict
/// name instead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Victim {
    pub node: NodeId,
    pub seen: Option<OpId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// A new node named `name` in `parent`. For a directory `inode == node`; for anything else
    /// `inode` is the new inode and `node` its first name.
    Create {
        node: NodeId,
        inode: NodeId,
        parent: NodeId,
        name: Vec<u8>,
        kind: Kind,
        perm: u32,
        uid: u32,
        gid: u32,
        target: Vec<u8>,
        rdev: u32,
    },
    /// Another name for an existing file (a hard link).
    Link {
        node: NodeId,
        inode: NodeId,
        parent: NodeId,
        name: Vec<u8>,
    },
    /// Rename or move `node` to `parent`/`name` (Kleppmann et al.'s move).
    Move {
        node: NodeId,
        parent: NodeId,
        name: Vec<u8>,
        replace: Option<Victim>,
    },
    /// Unlink a name or remove an (empty) directory: the node moves into the trash. `seen` is
    /// the version of the file's contents its author removed.
    Remove { node: NodeId, seen: Option<OpId> },
    /// Set the named attributes only; `None` fields are left as they are.
    SetAttr {
        inode: NodeId,
        perm: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        atime: Option<i64>,
        mtime: Option<i64>,
    },
    /// Set (`Some`) or remove (`None`) one extended attribute.
    SetXattr {
        inode: NodeId,
        name: Vec<u8>,
        value: Option<Vec<u8>>,
    },
    /// New contents of a file, started from version `base`: its size and every chunk.
    Write {
        inode: NodeId,
        base: Option<OpId>,
        size: u64,
        chunks: Vec<ChunkRef>,
    },
    /// Admit a replica to the volume, with the public half of its signing key.
    AddMember { id: ReplicaId, key: [u8; 32] },
    /// Take a replica out of the volume (it lost its store, or was silent too long): its
    /// entries after `upto` (the last its remover had) are refused, and it no longer holds
    /// trimming back.
    RemoveMember { id: ReplicaId, upto: u64 },
}

impl Op {
    /// Short name, for logs and reports.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Create { .. } => "create",
            Op::Link { .. } => "link",
            Op::Move { .. } => "move",
            Op::Remove { .. } => "remove",
            Op::SetAttr { .. } => "setattr",
            Op::SetXattr { .. } => "setxattr",
            Op::Write { .. } => "write",
            Op::AddMember { .. } => "add-member",
            Op::RemoveMember { .. } => "remove-member",
        }
    }
}
