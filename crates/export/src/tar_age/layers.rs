//! Incremental tar.age layers: the state an export was made from, and what changed since.
//!
//! Beside each tar.age file it writes, `export` writes `FILE.state`: for every path, a
//! 16-byte signature of what the tar holds there (kind, mode, owner, size, mtime, ctime, device,
//! link count, symlink target, xattrs, and for a hard link's later name the first name), sealed
//! under the volume's key (XChaCha20-Poly1305, `Purpose::Export` subkey of the volume's master
//! key, domain `ExportState`, bound to the volume id), so it says nothing to whoever holds the
//! backups but how many paths there are. `export --since FILE` reads `FILE.state` and writes a
//! layer holding the entries whose signature changed or is new, whole (a changed file is sent
//! whole), and an empty `.wh.NAME` for each name that is gone (only the topmost of a removed
//! subtree), as OCI image layers do. Applying the layers in order restores the last state:
//! `sealvol import L1 L2 L3`, or with age and tar alone, `scripts/apply-tar-age-layers.sh`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sealvol_crypto::{Domain, MasterKey, Purpose};
use serde::{Deserialize, Serialize};

use crate::error::{io, ExportError, Result};

/// What one tar.age export held, path by path.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct LayerState {
    /// 1 for a full export, then one more per layer.
    pub layer: u64,
    pub volume_id: String,
    pub sigs: BTreeMap<Vec<u8>, [u8; 16]>,
}

/// Largest state file read.
const MAX_STATE: u64 = 1 << 30;

/// The state file beside the tar.age file `target`.
pub fn state_path(target: &Path) -> PathBuf {
    let mut s = target.as_os_str().to_owned();
    s.push(".state");
    PathBuf::from(s)
}

fn binding(volume_id: &str) -> Vec<u8> {
    let mut b = b"tar.age state ".to_vec();
    b.extend_from_slice(volume_id.as_bytes());
    b
}

/// Seal and write `state` to `path` (temp file, fsync, rename).
pub fn save(state: &LayerState, master: &MasterKey, path: &Path) -> Result<()> {
    let plain = postcard::to_allocvec(state)
        .map_err(|e| ExportError::Refused(format!("encoding the layer state: {e}")))?;
    let sealed = master.seal_key(Purpose::Export).seal(
        Domain::ExportState,
        0,
        &binding(&state.volume_id),
        &plain,
    )?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    crate::chain::write_atomic(&dir, &name, &sealed)
}

/// Read the state beside the tar.age file `prev`, made from the volume `volume_id`.
pub fn load(prev: &Path, master: &MasterKey, volume_id: &str) -> Result<LayerState> {
    let p = state_path(prev);
    let len = std::fs::metadata(&p)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ExportError::Refused(format!(
                    "{} has no {} beside it: --since needs a tar.age written to a file by sealvol export (its state file is written beside it)",
                    prev.display(),
                    p.display()
                ))
            } else {
                io(&p)(e)
            }
        })?
        .len();
    if len > MAX_STATE {
        return Err(ExportError::Damaged {
            path: p,
            what: "the state file is too large".into(),
        });
    }
    let sealed = std::fs::read(&p).map_err(io(&p))?;
    let plain = master
        .seal_key(Purpose::Export)
        .open(Domain::ExportState, &binding(volume_id), &sealed)
        .map_err(|e| {
            ExportError::Refused(format!(
                "{} does not open with this volume's key ({e}): it belongs to another volume's export, or is damaged; make a full export (without --since)",
                p.display()
            ))
        })?;
    postcard::from_bytes(&plain).map_err(|e| ExportError::Damaged {
        path: p,
        what: format!("the state does not decode ({e})"),
    })
}

/// The signature of what the tar holds at a path.
pub(crate) fn signature(i: &sealvol_volume::Inode, first_name: Option<&[u8]>) -> [u8; 16] {
    let mut h = blake3::Hasher::new();
    let kind = format!("{:?}", i.kind);
    for part in [
        kind.as_bytes(),
        &i.perm.to_le_bytes(),
        &i.uid.to_le_bytes(),
        &i.gid.to_le_bytes(),
        &i.size.to_le_bytes(),
        &i.mtime.secs.to_le_bytes(),
        &i.mtime.nanos.to_le_bytes(),
        &i.ctime.secs.to_le_bytes(),
        &i.ctime.nanos.to_le_bytes(),
        &i.rdev.to_le_bytes(),
        &i.nlink.to_le_bytes(),
        &i.target,
        first_name.unwrap_or_default(),
    ] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part);
    }
    for (k, v) in &i.xattrs {
        h.update(&(k.len() as u64).to_le_bytes());
        h.update(k);
        h.update(&(v.len() as u64).to_le_bytes());
        h.update(v);
    }
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize().as_bytes()[..16]);
    out
}

/// The whiteouts a layer needs: every path of `old` that `new` lacks, but those below another
/// such path (removing a directory removes what it held); each as the whiteout's own path.
pub(crate) fn whiteouts(old: &LayerState, new: &BTreeMap<Vec<u8>, [u8; 16]>) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut gone: std::collections::HashSet<&[u8]> = std::collections::HashSet::new();
    for p in old.sigs.keys() {
        if p.is_empty() || new.contains_key(p) {
            continue;
        }
        // Sorted: a directory comes before what it held.
        let below_gone = p
            .iter()
            .enumerate()
            .any(|(i, b)| *b == b'/' && gone.contains(&p[..i]));
        gone.insert(p);
        if below_gone {
            continue;
        }
        let (dir, name) = match p.iter().rposition(|b| *b == b'/') {
            Some(i) => (&p[..=i], &p[i + 1..]),
            None => (&p[..0], &p[..]),
        };
        let mut w = dir.to_vec();
        w.extend_from_slice(b".wh.");
        w.extend_from_slice(name);
        out.push(w);
    }
    out
}
