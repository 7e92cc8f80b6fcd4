//! Identities: replicas, clock stamps, operations and tree nodes.

use serde::{Deserialize, Serialize};

/// A member of a volume. Assigned by the member that admits it (see [`ReplicaId::admitted`]),
/// checked against the replicated member list, never chosen at random by the joiner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ReplicaId(pub u64);

impl ReplicaId {
    /// The id the member `sponsor` gives the `n`-th replica it admits: a hash of both, so ids
    /// given by different sponsors differ, and the sponsor checks it against the member list.
    pub fn admitted(sponsor: ReplicaId, n: u64) -> ReplicaId {
        let mut h = blake3::Hasher::new_derive_key("sealvol 2026-12-02 replica id v1");
        h.update(&sponsor.0.to_be_bytes());
        h.update(&n.to_be_bytes());
        let mut b = [0u8; 8];
        h.finalize_xof().fill(&mut b);
        ReplicaId(u64::from_be_bytes(b) | 1)
    }

    /// Eight hex digits, for conflict names and logs.
    pub fn short(self) -> String {
        format!("{:08x}", (self.0 >> 32) as u32)
    }
}

/// Hybrid logical clock stamp: physical milliseconds in the high 48 bits, a counter in the
/// low 16.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Hlc(pub u64);

impl Hlc {
    pub fn ms(self) -> u64 {
        self.0 >> 16
    }
    pub fn from_ms(ms: u64) -> Hlc {
        Hlc(ms << 16)
    }
}

/// An operation: its entry's origin and sequence number, and its HLC stamp. Every replica folds
/// operations in the order of (hlc, origin, seq), which is total: (origin, seq) is unique.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OpId {
    pub hlc: Hlc,
    pub origin: ReplicaId,
    pub seq: u64,
}

impl OpId {
    /// Big-endian, so that byte order is fold order.
    pub fn key(&self) -> [u8; 24] {
        let mut k = [0u8; 24];
        k[..8].copy_from_slice(&self.hlc.0.to_be_bytes());
        k[8..16].copy_from_slice(&self.origin.0.to_be_bytes());
        k[16..].copy_from_slice(&self.seq.to_be_bytes());
        k
    }
    pub fn from_key(k: &[u8]) -> Option<OpId> {
        if k.len() != 24 {
            return None;
        }
        let u = |r: std::ops::Range<usize>| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&k[r]);
            u64::from_be_bytes(b)
        };
        Some(OpId {
            hlc: Hlc(u(0..8)),
            origin: ReplicaId(u(8..16)),
            seq: u(16..24),
        })
    }
}

/// What a [`NodeId`] names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum NodeTag {
    /// Allocated by a replica from its own counter: (replica, n).
    Made,
    /// The inode holding the displaced contents of version (origin, seq): a conflict copy.
    ConflictInode,
    /// The name of that conflict copy.
    ConflictName,
    /// The root directory and the trash (n = 1 and 2, origin 0).
    Fixed,
}

/// A tree node (a directory, or one name of a file) or an inode. Unique in the volume without
/// coordination: made ones carry their replica's id; conflict copies are named after the
/// version they keep, so every replica that derives one derives the same id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId {
    pub origin: u64,
    pub n: u64,
    pub tag: NodeTag,
}

impl NodeId {
    pub const ROOT: NodeId = NodeId {
        origin: 0,
        n: 1,
        tag: NodeTag::Fixed,
    };
    pub const TRASH: NodeId = NodeId {
        origin: 0,
        n: 2,
        tag: NodeTag::Fixed,
    };
    pub fn made(origin: ReplicaId, n: u64) -> NodeId {
        NodeId {
            origin: origin.0,
            n,
            tag: NodeTag::Made,
        }
    }
    pub fn conflict_inode(v: OpId) -> NodeId {
        NodeId {
            origin: v.origin.0,
            n: v.seq,
            tag: NodeTag::ConflictInode,
        }
    }
    pub fn conflict_name(v: OpId) -> NodeId {
        NodeId {
            origin: v.origin.0,
            n: v.seq,
            tag: NodeTag::ConflictName,
        }
    }
    pub fn bytes(&self) -> [u8; 17] {
        let mut b = [0u8; 17];
        b[..8].copy_from_slice(&self.origin.to_be_bytes());
        b[8..16].copy_from_slice(&self.n.to_be_bytes());
        b[16] = self.tag as u8;
        b
    }

    pub fn from_bytes(b: &[u8]) -> Option<NodeId> {
        if b.len() < 17 {
            return None;
        }
        let u = |r: std::ops::Range<usize>| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[r]);
            u64::from_be_bytes(x)
        };
        let tag = match b[16] {
            0 => NodeTag::Made,
            1 => NodeTag::ConflictInode,
            2 => NodeTag::ConflictName,
            3 => NodeTag::Fixed,
            _ => return None,
        };
        Some(NodeId {
            origin: u(0..8),
            n: u(8..16),
            tag,
        })
    }
}
