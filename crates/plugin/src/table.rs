//! The persisted volume table: `STATE_DIR/volumes.json`. It holds names, creation times,
//! non-secret options, where each volume's key comes from (a path, never the key) and the
//! Docker mount IDs using each volume. Written atomically (temp file, fsync, rename, fsync dir).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum KeySource {
    PassphraseFile { path: PathBuf },
    Keyfile { path: PathBuf },
}

impl KeySource {
    pub fn read(&self) -> Result<sealvol_crypto::Secret, sealvol_crypto::CryptoError> {
        match self {
            KeySource::PassphraseFile { path } => sealvol_crypto::read_passphrase_file(path),
            KeySource::Keyfile { path } => sealvol_crypto::read_key_file(path),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub name: String,
    pub created_unix: u64,
    pub key: KeySource,
    pub chunk_size: sealvol_volume::ChunkSize,
    /// The options as Docker passed them (paths and sizes: nothing secret).
    pub options: BTreeMap<String, String>,
    /// Docker mount IDs currently using the volume.
    pub mount_ids: BTreeSet<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    pub version: u32,
    pub volumes: BTreeMap<String, VolumeRecord>,
}

pub const TABLE_VERSION: u32 = 1;

impl Table {
    pub fn load(path: &Path) -> std::io::Result<Table> {
        match std::fs::read(path) {
            Ok(b) => {
                let t: Table = serde_json::from_slice(&b).map_err(|e| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{} is damaged: {e}", path.display()),
                    )
                })?;
                Ok(t)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Table {
                version: TABLE_VERSION,
                volumes: BTreeMap::new(),
            }),
            Err(e) => Err(e),
        }
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    }
}
