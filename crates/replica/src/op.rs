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

/// Part of one chunk-sized piece of a file: `len` plaintext bytes at byte `at` of the piece, the
/// first `len` bytes of `chunk` (a truncation can leave a slice shorter than its chunk).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Slice {
    pub at: u32,
    pub len: u32,
    pub chunk: ChunkRef,
}

impl Slice {
    pub fn end(&self) -> u64 {
        u64::from(self.at) + u64::from(self.len)
    }
}

/// One chunk-sized piece of a file (piece `i` holds bytes `i * chunk_size ..`): slices laid
/// over each other, oldest first, a newer slice's bytes winning where they overlap; bytes no
/// slice covers read as zeros. The same unit as the single-host volume's extents (issue 10's
/// slices): a small overwrite adds a slice instead of a whole chunk.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Extent {
    pub slices: Vec<Slice>,
}

/// Most slices an extent made by [`crate::Replica::write_at`] holds before it is folded into
/// one whole chunk.
pub const MAX_SLICES: usize = 8;

impl Extent {
    /// A piece stored whole.
    pub fn whole(chunk: ChunkRef) -> Extent {
        Extent {
            slices: vec![Slice {
                at: 0,
                len: chunk.len,
                chunk,
            }],
        }
    }

    /// Where the piece's furthest slice ends.
    pub fn len(&self) -> u64 {
        self.slices.iter().map(Slice::end).max().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lay `new` over the piece, dropping the older slices it hides entirely.
    pub fn add(&mut self, new: Slice) {
        self.slices.retain(|s| s.at < new.at || s.end() > new.end());
        self.slices.push(new);
    }

    /// The piece cut to its first `len` bytes (a truncation inside it).
    pub fn clipped(&self, len: u64) -> Option<Extent> {
        let slices: Vec<Slice> = self
            .slices
            .iter()
            .filter(|s| u64::from(s.at) < len)
            .map(|s| Slice {
                len: s.len.min((len - u64::from(s.at)) as u32),
                ..*s
            })
            .collect();
        (!slices.is_empty()).then_some(Extent { slices })
    }

    /// Each chunk the piece names, once per slice (what reference counts count).
    pub fn chunks(&self) -> impl Iterator<Item = &ChunkRef> {
        self.slices.iter().map(|s| &s.chunk)
    }
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
    /// New contents of a file, started from version `base`: its new size and the pieces that
    /// changed (`None`: a hole), each whole as it is now. Pieces past the new size go, and the
    /// piece the size falls in is cut there, without being listed. Applied to `base`'s
    /// contents even when a concurrent write got there first (that one moves whole to a
    /// conflict copy): never a mix of two writers.
    Write {
        inode: NodeId,
        base: Option<OpId>,
        size: u64,
        extents: Vec<(u64, Option<Extent>)>,
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
