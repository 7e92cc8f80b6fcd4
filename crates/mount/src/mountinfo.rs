//! The kernel's mount table, `/proc/self/mountinfo` (proc(5)):
//!
//! ```text
//! 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//! (1)(2)(3)   (4)   (5)      (6)      (7)   (8) (9)   (10)        (11)
//! ```
//!
//! mount ID, parent ID, device `major:minor`, root, mount point, mount options, optional
//! fields up to a lone `-`, filesystem type, source, superblock options. The kernel writes a
//! space, tab, newline or backslash in the mount point or source as an octal escape (`\040`).
//! A sealvol mount has type `fuse.sealvol` and source `sealvol:STORE_DIR`.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use crate::MountError;

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// The filesystem name a sealvol mount gives itself: `sealvol:` and its store directory.
pub const SOURCE_PREFIX: &str = "sealvol:";

/// One line of the mount table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    /// The backing device, `major:minor` (for FUSE, an anonymous one: `0:NN`).
    pub device: String,
    pub mount_point: PathBuf,
    pub fstype: String,
    pub source: String,
}

impl MountEntry {
    /// A FUSE mount served by sealvol.
    pub fn is_sealvol(&self) -> bool {
        matches!(self.fstype.as_str(), "fuse.sealvol" | "fuse")
            && self.source.starts_with(SOURCE_PREFIX)
    }

    /// The store behind a sealvol mount.
    pub fn store(&self) -> Option<PathBuf> {
        if !self.is_sealvol() {
            return None;
        }
        self.source.strip_prefix(SOURCE_PREFIX).map(PathBuf::from)
    }
}

/// Decode the kernel's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134`
/// backslash, and any other `\ooo`); a backslash not followed by three octal digits stays.
fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let digits = &b[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(v) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// One line, or `None` if it is not shaped like a mount table line.
pub fn parse_line(line: &str) -> Option<MountEntry> {
    let fields: Vec<&str> = line.split(' ').collect();
    let sep = fields.iter().skip(6).position(|f| *f == "-")? + 6;
    let device = fields.get(2)?;
    let mount_point = fields.get(4)?;
    let fstype = fields.get(sep + 1)?;
    let source = fields.get(sep + 2)?;
    Some(MountEntry {
        device: (*device).to_string(),
        mount_point: PathBuf::from(OsString::from_vec(unescape(mount_point))),
        fstype: (*fstype).to_string(),
        source: String::from_utf8_lossy(&unescape(source)).into_owned(),
    })
}

/// Every entry of a mount table's text, in order (lines that do not parse are skipped).
pub fn parse(table: &str) -> Vec<MountEntry> {
    table.lines().filter_map(parse_line).collect()
}

/// This process's mount table.
pub fn read() -> Result<Vec<MountEntry>, MountError> {
    let text = std::fs::read_to_string(MOUNTINFO).map_err(|cause| MountError::MountTable {
        path: MOUNTINFO.into(),
        cause,
    })?;
    Ok(parse(&text))
}

/// What is mounted at `mountpoint` (the top of a stack of mounts there), if anything. The
/// path is compared as given: pass it canonical.
pub fn entry_at(mountpoint: &Path) -> Result<Option<MountEntry>, MountError> {
    Ok(top_at(read()?, mountpoint))
}

/// The last entry at `mountpoint`: the one a path there reaches.
fn top_at(table: Vec<MountEntry>, mountpoint: &Path) -> Option<MountEntry> {
    table.into_iter().rfind(|e| e.mount_point == mountpoint)
}

/// The sealvol mount at `mountpoint`, if the top mount there is one.
pub fn sealvol_at(mountpoint: &Path) -> Result<Option<MountEntry>, MountError> {
    Ok(entry_at(mountpoint)?.filter(MountEntry::is_sealvol))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
36 22 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
41 22 0:52 / /var/tmp/a\\040b/mnt rw,nosuid,nodev,relatime shared:7 - fuse.sealvol sealvol:/var/tmp/a\\040b/store rw,user_id=0,group_id=0,default_permissions,allow_other
42 22 0:53 / /srv/x rw,relatime - fuse sealvol:/srv/s rw,user_id=0
43 22 0:54 / /srv/y rw,relatime - fuse.bindfs /srv/z rw,user_id=0
44 22 0:55 / /srv/tab\\011nl\\012back\\134slash rw - fuse.sealvol sealvol:/s\\134t rw
45 22 0:56 / /srv/x rw,relatime - tmpfs tmpfs rw
";

    #[test]
    fn fields_and_optional_fields() {
        let e = parse(TABLE);
        assert_eq!(e.len(), 7);
        assert_eq!(
            e[1],
            MountEntry {
                device: "98:0".into(),
                mount_point: "/mnt2".into(),
                fstype: "ext3".into(),
                source: "/dev/root".into(),
            }
        );
        assert!(!e[1].is_sealvol());
        assert_eq!(e[1].store(), None);
    }

    #[test]
    fn octal_escapes_in_mount_point_and_source() {
        let e = parse(TABLE);
        assert_eq!(e[2].mount_point, Path::new("/var/tmp/a b/mnt"));
        assert_eq!(e[2].store(), Some(PathBuf::from("/var/tmp/a b/store")));
        assert_eq!(e[2].device, "0:52");
        assert_eq!(e[5].mount_point, Path::new("/srv/tab\tnl\nback\\slash"));
        assert_eq!(e[5].store(), Some(PathBuf::from("/s\\t")));
    }

    #[test]
    fn our_fstype_and_source_and_no_other() {
        let e = parse(TABLE);
        // fuse.sealvol (the subtype we set) and plain fuse (kernels without subtypes) with our
        // source are ours; another FUSE filesystem, and our name on another type, are not.
        assert!(e[2].is_sealvol());
        assert!(e[3].is_sealvol());
        assert!(!e[4].is_sealvol());
        let mut fake = e[2].clone();
        fake.fstype = "tmpfs".into();
        assert!(!fake.is_sealvol());
    }

    #[test]
    fn malformed_escapes_and_lines() {
        assert_eq!(unescape("a\\04"), b"a\\04");
        assert_eq!(unescape("a\\089b"), b"a\\089b");
        assert_eq!(unescape("\\040"), b" ");
        assert_eq!(unescape("\\"), b"\\");
        // \400 does not fit in a byte: kept as written.
        assert_eq!(unescape("\\400"), b"\\400");
        assert_eq!(parse_line(""), None);
        assert_eq!(parse_line("1 2 3 4 5 6 no separator here"), None);
        assert_eq!(parse_line("1 2 0:1 / /m rw -"), None);
    }

    #[test]
    fn the_top_of_a_stack_wins() {
        // /srv/x has sealvol under a tmpfs: what a path there reaches is the tmpfs.
        let top = top_at(parse(TABLE), Path::new("/srv/x")).map(|e| e.fstype);
        assert_eq!(top.as_deref(), Some("tmpfs"));
        assert_eq!(top_at(parse(TABLE), Path::new("/srv/none")), None);
    }

    #[test]
    fn this_process_has_a_root_mount() {
        let table = read().expect("readable mount table");
        assert!(
            table.iter().any(|e| e.mount_point == Path::new("/")),
            "{table:?}"
        );
    }
}
