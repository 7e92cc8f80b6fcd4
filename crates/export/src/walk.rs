//! The volume's tree in a fixed order: each directory before its children, names sorted, so
//! that a restore always finds a parent made and two exports of one tree list it alike.

use std::collections::HashSet;

use sealvol_volume::{Inode, Kind, Volume, ROOT_INO};

use crate::error::{ExportError, Result};
use crate::format::display_path;

/// One name in the tree.
pub(crate) struct Node {
    /// Relative path (empty for the root).
    pub(crate) path: Vec<u8>,
    pub(crate) inode: Inode,
    /// Another name of a file met earlier under a different path.
    pub(crate) hardlink: bool,
}

/// Entries per readdir call.
const PAGE: usize = 1024;

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = dir.to_vec();
    if !p.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// Call `f` for every name in `v`'s tree, parents first.
pub(crate) fn walk(v: &Volume, f: &mut dyn FnMut(Node) -> Result<()>) -> Result<()> {
    let mut stack = vec![(Vec::new(), ROOT_INO)];
    let mut seen = HashSet::new();
    while let Some((path, ino)) = stack.pop() {
        let at = |e: sealvol_volume::FsError| {
            ExportError::Refused(format!(
                "reading {} in the volume: {e} (`sealvol check` names the damage; export what is readable by moving that file away first)",
                display_path(&path)
            ))
        };
        let inode = v.getattr(ino).map_err(at)?;
        let is_dir = inode.kind == Kind::Dir;
        let hardlink = !is_dir && inode.nlink > 1 && !seen.insert(ino);
        if is_dir {
            let mut children = Vec::new();
            let mut cookie = 0;
            loop {
                let page = v.readdir(ino, cookie, PAGE).map_err(at)?;
                let Some(last) = page.last() else { break };
                cookie = last.cookie;
                for d in page {
                    if d.name != b"." && d.name != b".." {
                        children.push((join(&path, &d.name), d.ino));
                    }
                }
            }
            children.sort_unstable();
            stack.extend(children.into_iter().rev());
        }
        f(Node {
            path,
            inode,
            hardlink,
        })?;
    }
    Ok(())
}
