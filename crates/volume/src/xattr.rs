//! Extended attributes. They live in the inode's record (which every change rewrites), so
//! their total per inode is bounded by [`XATTR_TOTAL_MAX`].

use sealvol_store::Durability;

use crate::error::{FsError, Result};
use crate::volume::Volume;

const XATTR_NAME_MAX: usize = 255;
const XATTR_SIZE_MAX: usize = 64 * 1024;
/// All of an inode's extended attributes together, names and values: they live in its record,
/// which every change rewrites, so their total is bounded (ext4 allows one block; tools that
/// store much more, such as some backup tools' metadata, get ENOSPC as on ext4).
pub const XATTR_TOTAL_MAX: usize = 256 * 1024;
/// setxattr(2) flags: fail if the attribute exists / does not exist.
pub const XATTR_CREATE: i32 = 1;
pub const XATTR_REPLACE: i32 = 2;

impl Volume {
    pub fn getxattr(&self, ino: u64, name: &[u8]) -> Result<Vec<u8>> {
        let i = self.read_inode(ino)?.ok_or(FsError::NotFound)?;
        i.xattrs.get(name).cloned().ok_or(FsError::NoXattr)
    }

    pub fn listxattr(&self, ino: u64) -> Result<Vec<Vec<u8>>> {
        let i = self.read_inode(ino)?.ok_or(FsError::NotFound)?;
        Ok(i.xattrs.keys().cloned().collect())
    }

    /// `flags`: [`XATTR_CREATE`] fails if it exists, [`XATTR_REPLACE`] if it does not. The
    /// inode's attributes may total [`XATTR_TOTAL_MAX`] bytes.
    pub fn setxattr(&self, ino: u64, name: &[u8], value: &[u8], flags: i32) -> Result<()> {
        if name.is_empty() || name.len() > XATTR_NAME_MAX {
            return Err(FsError::Range);
        }
        if value.len() > XATTR_SIZE_MAX {
            return Err(FsError::TooBig);
        }
        if name.starts_with(b"system.") {
            // POSIX ACLs (system.posix_acl_*) are not supported: refusing them makes tools such
            // as cp -a and tar fall back to chmod, instead of storing an ACL that changes nothing.
            return Err(FsError::NotSupported(
                "system.* extended attributes (POSIX ACLs)",
            ));
        }
        let mut t = self.begin();
        let mut i = t.inode(ino)?.ok_or(FsError::NotFound)?;
        let exists = i.xattrs.contains_key(name);
        if flags & XATTR_CREATE != 0 && exists {
            return Err(FsError::Exists);
        }
        if flags & XATTR_REPLACE != 0 && !exists {
            return Err(FsError::NoXattr);
        }
        let others: usize = i
            .xattrs
            .iter()
            .filter(|(n, _)| n.as_slice() != name)
            .map(|(n, v)| n.len() + v.len())
            .sum();
        if others + name.len() + value.len() > XATTR_TOTAL_MAX {
            return Err(FsError::XattrSpace);
        }
        i.xattrs.insert(name.to_vec(), value.to_vec());
        i.ctime = self.clock.now();
        t.put_inode(i);
        t.commit(Durability::Process)
    }

    pub fn removexattr(&self, ino: u64, name: &[u8]) -> Result<()> {
        let mut t = self.begin();
        let mut i = t.inode(ino)?.ok_or(FsError::NotFound)?;
        if i.xattrs.remove(name).is_none() {
            return Err(FsError::NoXattr);
        }
        i.ctime = self.clock.now();
        t.put_inode(i);
        t.commit(Durability::Process)
    }
}
