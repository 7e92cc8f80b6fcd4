//! A native export target: its marker, the chain's data key and the slots that open it, the
//! manifests and their chain.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sealvol_crypto::{KdfParams, KeyHeader, MasterKey, Purpose, Secret};
use serde::{Deserialize, Serialize};

use crate::error::{io, ExportError, Result};
use crate::format::{ChainKeys, Manifest, MAX_MANIFEST};

pub const MARKER: &str = "sealvol-export.json";
pub const CHAIN_KEYS: &str = "chain-keys.json";
pub const VOLUME_KEYS: &str = "volume-keys.json";
pub const BACKUP_KEY_AGE: &str = "backup-key.age";
pub const OBJECTS: &str = "objects";
pub const EXPORTS: &str = "exports";
const LOCK: &str = "lock";
const MARKER_FORMAT: &str = "sealvol-export";

/// Which key besides the volume's opens a chain.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum BackupKind {
    /// Only the volume's own key (its passphrase or key file, through volume-keys.json).
    None,
    /// A backup passphrase (an Argon2id slot in chain-keys.json).
    Passphrase,
    /// An age X25519 recipient (backup-key.age holds a slot secret encrypted to it).
    Age,
}

/// The clear marker file: says what the directory is, and which chain.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Marker {
    pub format: String,
    pub version: u32,
    pub chain: String,
    pub volume: String,
    pub backup: BackupKind,
}

/// The key an export is written under (besides the volume's own, which always opens it).
pub enum ExportKey<'a> {
    Volume,
    Passphrase(&'a Secret),
    /// An age X25519 recipient (`age1…`).
    Recipient(&'a str),
}

/// The key that opens an export for import or verify.
pub enum OpenKey<'a> {
    /// The volume's passphrase or key file.
    Volume(&'a Secret),
    /// The backup passphrase.
    Passphrase(&'a Secret),
    /// An age identity file (as `age -i` takes).
    Identity(&'a Path),
}

/// An open native export target.
pub struct Target {
    pub dir: PathBuf,
    pub marker: Marker,
    pub keys: ChainKeys,
}

/// The secret of the key slot through which a volume's master key opens its export chains.
fn volume_slot_secret(volume_master: &MasterKey) -> Secret {
    let mut b: [u8; 32] = volume_master
        .hash_key(Purpose::ExportSlot)
        .record_key(b"export chain slot", &[]);
    let s = Secret::key_file(&b);
    zeroize::Zeroize::zeroize(&mut b);
    s
}

fn read_small(path: &Path, max: usize) -> Result<Vec<u8>> {
    let f = File::open(path).map_err(io(path))?;
    let mut buf = Vec::new();
    f.take(max as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(io(path))?;
    if buf.len() > max {
        return Err(ExportError::Damaged {
            path: path.to_path_buf(),
            what: format!("{} is larger than {max} bytes", path.display()),
        });
    }
    Ok(buf)
}

/// Write `bytes` to `dir/name` atomically and durably: temp file, fsync, rename, fsync dir.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    let dst = dir.join(name);
    std::fs::rename(&tmp, &dst).map_err(io(&dst))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(())
}

pub(crate) fn manifest_name(seq: u64) -> String {
    format!("{seq:08}.manifest")
}

pub(crate) fn meta_name(seq: u64) -> String {
    format!("{seq:08}.meta")
}

fn read_marker(dir: &Path) -> Result<Marker> {
    let p = dir.join(MARKER);
    let bytes = read_small(&p, 4096).map_err(|e| match e {
        ExportError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            ExportError::NotAnExport {
                path: dir.to_path_buf(),
                why: format!("it has no {MARKER}"),
            }
        }
        e => e,
    })?;
    let m: Marker = serde_json::from_slice(&bytes).map_err(|e| ExportError::NotAnExport {
        path: dir.to_path_buf(),
        why: format!("{MARKER} does not parse: {e}"),
    })?;
    if m.format != MARKER_FORMAT || m.version != crate::format::FORMAT_VERSION {
        return Err(ExportError::NotAnExport {
            path: dir.to_path_buf(),
            why: format!(
                "{MARKER} says format {:?} version {} (this sealvol writes {MARKER_FORMAT:?} version {})",
                m.format,
                m.version,
                crate::format::FORMAT_VERSION
            ),
        });
    }
    Ok(m)
}

fn read_chain_header(dir: &Path) -> Result<KeyHeader> {
    let p = dir.join(CHAIN_KEYS);
    let bytes = read_small(&p, sealvol_crypto::slots::MAX_HEADER_BYTES)?;
    KeyHeader::from_json(&bytes).map_err(|e| ExportError::Damaged {
        path: dir.to_path_buf(),
        what: format!("{CHAIN_KEYS}: {e}"),
    })
}

fn chain_id(dir: &Path, h: &KeyHeader) -> Result<[u8; 16]> {
    h.volume_id
        .as_slice()
        .try_into()
        .map_err(|_| ExportError::Damaged {
            path: dir.to_path_buf(),
            what: format!("{CHAIN_KEYS}: the chain id is not 16 bytes"),
        })
}

fn unlocked(
    dir: &Path,
    r: std::result::Result<(MasterKey, u32), sealvol_crypto::CryptoError>,
) -> Result<MasterKey> {
    match r {
        Ok((k, _)) => Ok(k),
        Err(sealvol_crypto::CryptoError::WrongKey) => Err(ExportError::WrongKey {
            path: dir.to_path_buf(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Whether `dir` holds anything (a missing directory holds nothing).
fn is_empty_dir(dir: &Path) -> Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut it) => Ok(it.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(io(dir)(e)),
    }
}

fn now_unix() -> u64 {
    #[allow(clippy::disallowed_methods)]
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An exclusive lock on the target while an export writes to it (released on drop).
pub struct TargetLock(#[allow(dead_code)] File);

impl Target {
    /// Open the chain in `dir` to add an export of the volume whose key header is
    /// `volume_header` (unlocked as `volume_master`), or start a chain in an empty or new
    /// `dir`. `key` must agree with how an existing chain was started.
    pub fn open_for_export(
        dir: &Path,
        volume_header: &KeyHeader,
        volume_master: &MasterKey,
        key: &ExportKey<'_>,
        kdf: KdfParams,
    ) -> Result<(Target, TargetLock)> {
        let volume_hex = hex::encode(&volume_header.volume_id);
        let slot = volume_slot_secret(volume_master);
        if is_empty_dir(dir)? {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
            let lock = lock(dir)?;
            let now = now_unix();
            let (mut header, k) = KeyHeader::create(&slot, KdfParams::MIN, now)?;
            let backup = match key {
                ExportKey::Volume => BackupKind::None,
                ExportKey::Passphrase(p) => {
                    header.add_slot(&k, p, kdf, now)?;
                    BackupKind::Passphrase
                }
                ExportKey::Recipient(r) => {
                    let mut secret = [0u8; 32];
                    sealvol_crypto::random_bytes(&mut secret)?;
                    header.add_slot(&k, &Secret::key_file(&secret), KdfParams::MIN, now)?;
                    let wrapped = age_encrypt_to(r, &secret);
                    zeroize::Zeroize::zeroize(&mut secret);
                    write_atomic(dir, BACKUP_KEY_AGE, &wrapped?)?;
                    BackupKind::Age
                }
            };
            if backup == BackupKind::None {
                write_atomic(dir, VOLUME_KEYS, &volume_header.to_json())?;
            }
            write_atomic(dir, CHAIN_KEYS, &header.to_json())?;
            let id = chain_id(dir, &header)?;
            for sub in [OBJECTS, EXPORTS] {
                std::fs::create_dir_all(dir.join(sub)).map_err(io(dir))?;
            }
            let marker = Marker {
                format: MARKER_FORMAT.into(),
                version: crate::format::FORMAT_VERSION,
                chain: hex::encode(id),
                volume: volume_hex,
                backup,
            };
            // The marker last: a directory without it is not an export, and is refused as a
            // target until emptied (a crash here leaves it so; the message says what to do).
            let json = serde_json::to_vec_pretty(&marker)
                .map_err(|e| ExportError::Refused(format!("encoding the marker: {e}")))?;
            write_atomic(dir, MARKER, &json)?;
            let keys = ChainKeys::new(id, &k);
            return Ok((
                Target {
                    dir: dir.to_path_buf(),
                    marker,
                    keys,
                },
                lock,
            ));
        }
        let marker = read_marker(dir)?;
        let lock = lock(dir)?;
        if marker.volume != volume_hex {
            return Err(ExportError::Refused(format!(
                "{} holds exports of another volume ({}; this one is {volume_hex}); export into an empty or new directory",
                dir.display(),
                marker.volume
            )));
        }
        let header = read_chain_header(dir)?;
        let k = unlocked(dir, header.unlock(&slot))?;
        match (key, marker.backup) {
            (ExportKey::Volume, _) => {}
            (ExportKey::Passphrase(p), BackupKind::Passphrase) => {
                unlocked(dir, header.unlock(p))?;
            }
            (ExportKey::Recipient(_), BackupKind::Age) => {}
            (_, b) => {
                return Err(ExportError::Refused(format!(
                    "the exports in {} were started with backup key {b:?}; add to them with the same kind of backup key (or none), or export into a new directory",
                    dir.display()
                )))
            }
        }
        let id = chain_id(dir, &header)?;
        Ok((
            Target {
                dir: dir.to_path_buf(),
                marker,
                keys: ChainKeys::new(id, &k),
            },
            lock,
        ))
    }

    /// Open the export in `dir` for reading with `key`. A wrong key is refused here, before
    /// anything is written anywhere.
    pub fn open(dir: &Path, key: &OpenKey<'_>) -> Result<Target> {
        let marker = read_marker(dir)?;
        let header = read_chain_header(dir)?;
        let k = match key {
            OpenKey::Volume(secret) => {
                let p = dir.join(VOLUME_KEYS);
                if !p.exists() {
                    return Err(ExportError::Refused(format!(
                        "the export in {} was made with a backup key ({:?}): open it with {}",
                        dir.display(),
                        marker.backup,
                        match marker.backup {
                            BackupKind::Age => "--identity FILE",
                            _ => "--backup-passphrase-file FILE",
                        }
                    )));
                }
                let vh =
                    KeyHeader::from_json(&read_small(&p, sealvol_crypto::slots::MAX_HEADER_BYTES)?)
                        .map_err(|e| ExportError::Damaged {
                            path: dir.to_path_buf(),
                            what: format!("{VOLUME_KEYS}: {e}"),
                        })?;
                let vm = unlocked(dir, vh.unlock(secret))?;
                unlocked(dir, header.unlock(&volume_slot_secret(&vm)))?
            }
            OpenKey::Passphrase(p) => unlocked(dir, header.unlock(p))?,
            OpenKey::Identity(file) => {
                let wrapped = read_small(&dir.join(BACKUP_KEY_AGE), 64 << 10).map_err(|e| match e {
                    ExportError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                        ExportError::Refused(format!(
                            "the export in {} was not made for an age recipient (it has no {BACKUP_KEY_AGE}); open it with the volume's key or --backup-passphrase-file",
                            dir.display()
                        ))
                    }
                    e => e,
                })?;
                let mut secret = age_decrypt_with(file, &wrapped).map_err(|e| match e {
                    ExportError::Age(_) => ExportError::WrongKey {
                        path: dir.to_path_buf(),
                    },
                    e => e,
                })?;
                let s = <&[u8; 32]>::try_from(secret.as_slice())
                    .map(Secret::key_file)
                    .map_err(|_| ExportError::Damaged {
                        path: dir.to_path_buf(),
                        what: format!("{BACKUP_KEY_AGE} does not hold a 32-byte key"),
                    });
                zeroize::Zeroize::zeroize(&mut secret);
                unlocked(dir, header.unlock(&s?))?
            }
        };
        let id = chain_id(dir, &header)?;
        if hex::encode(id) != marker.chain {
            return Err(ExportError::Damaged {
                path: dir.to_path_buf(),
                what: format!("{MARKER} names another chain than {CHAIN_KEYS}"),
            });
        }
        Ok(Target {
            dir: dir.to_path_buf(),
            marker,
            keys: ChainKeys::new(id, &k),
        })
    }

    pub fn exports_dir(&self) -> PathBuf {
        self.dir.join(EXPORTS)
    }

    pub fn object_file(&self, addr: &[u8; 32]) -> PathBuf {
        self.dir
            .join(OBJECTS)
            .join(crate::format::object_path(addr))
    }

    /// The manifests' sequence numbers present, ascending.
    pub fn seqs(&self) -> Result<Vec<u64>> {
        list_seqs(&self.dir)
    }

    /// Read and check the chain: every manifest opens, numbers run 1, 2, … without a gap, and
    /// each names the one before it. Returns the manifests that opened (with their file's
    /// hash) and the problems found, each naming the export.
    pub fn chain(&self) -> Result<Chain> {
        let mut out = Chain::default();
        let seqs = self.seqs()?;
        let mut prev: Option<(u64, [u8; 32])> = None;
        for (i, seq) in seqs.iter().copied().enumerate() {
            if seq != i as u64 + 1 && !out.problems.iter().any(|p| p.contains("missing")) {
                out.problems.push(format!(
                    "export {} is missing (the chain runs {:?}): the chain was truncated or reordered",
                    i + 1,
                    seqs
                ));
            }
            let path = self.exports_dir().join(manifest_name(seq));
            let bytes = match read_small(&path, MAX_MANIFEST) {
                Ok(b) => b,
                Err(e) => {
                    out.problems
                        .push(format!("export {seq}: manifest unreadable: {e}"));
                    prev = None;
                    continue;
                }
            };
            let hash = *blake3::hash(&bytes).as_bytes();
            match self.keys.open_manifest(seq, &bytes) {
                Ok(m) => {
                    if m.volume_id != self.marker.volume {
                        out.problems.push(format!(
                            "export {seq}: names another volume ({})",
                            m.volume_id
                        ));
                    }
                    let chained = match (&prev, m.parent) {
                        _ if seq == 1 => m.parent.is_none(),
                        (Some((pseq, phash)), Some(parent)) if *pseq + 1 == seq => *phash == parent,
                        (Some((pseq, _)), None) if *pseq + 1 == seq => false,
                        // The export before is missing or damaged: reported already.
                        _ => true,
                    };
                    if !chained {
                        out.problems.push(format!(
                            "export {seq}: its manifest does not name export {}'s as its parent: the chain was reordered or mixed with another",
                            seq - 1
                        ));
                    }
                    prev = Some((seq, hash));
                    out.manifests.push((m, hash));
                }
                Err(why) => {
                    out.problems.push(format!("export {seq}: manifest {why}"));
                    prev = None;
                }
            }
        }
        Ok(out)
    }

    /// Take the target's lock (for writers).
    pub fn lock(&self) -> Result<TargetLock> {
        lock(&self.dir)
    }
}

/// What [`Target::chain`] found.
#[derive(Default, Debug)]
pub struct Chain {
    pub manifests: Vec<(Manifest, [u8; 32])>,
    pub problems: Vec<String>,
}

fn lock(dir: &Path) -> Result<TargetLock> {
    let p = dir.join(LOCK);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(io(&p))?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(|_| {
        ExportError::Refused(format!(
            "another export is writing to {} (it holds {}); wait for it to finish",
            dir.display(),
            p.display()
        ))
    })?;
    Ok(TargetLock(f))
}

/// The sequence numbers of the manifests in `dir/exports`, ascending.
pub fn list_seqs(dir: &Path) -> Result<Vec<u64>> {
    let ed = dir.join(EXPORTS);
    let mut seqs = Vec::new();
    for e in std::fs::read_dir(&ed).map_err(io(&ed))? {
        let e = e.map_err(io(&ed))?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name.strip_suffix(".manifest") {
            if let Ok(seq) = n.parse::<u64>() {
                seqs.push(seq);
            }
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// One export as `export-ls` shows it without a key: from the files alone.
#[derive(Debug, Serialize)]
pub struct Listed {
    pub seq: u64,
    /// When its manifest was written (the file's modification time, Unix seconds).
    pub written_unix: u64,
    pub manifest_bytes: u64,
    pub meta_bytes: u64,
}

/// What a target holds, from its files alone (no key needed; nothing is authenticated).
#[derive(Debug, Serialize)]
pub struct Listing {
    pub chain: String,
    pub volume: String,
    pub backup: BackupKind,
    pub exports: Vec<Listed>,
    pub objects: u64,
    pub object_bytes: u64,
}

pub fn list(dir: &Path) -> Result<Listing> {
    let marker = read_marker(dir)?;
    let mut exports = Vec::new();
    for seq in list_seqs(dir)? {
        let m = dir.join(EXPORTS).join(manifest_name(seq));
        let md = std::fs::metadata(&m).map_err(io(&m))?;
        let meta_bytes = std::fs::metadata(dir.join(EXPORTS).join(meta_name(seq)))
            .map(|m| m.len())
            .unwrap_or(0);
        exports.push(Listed {
            seq,
            written_unix: md
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs())
                .unwrap_or(0),
            manifest_bytes: md.len(),
            meta_bytes,
        });
    }
    let (mut objects, mut object_bytes) = (0, 0);
    let od = dir.join(OBJECTS);
    for sub in std::fs::read_dir(&od).map_err(io(&od))? {
        let sub = sub.map_err(io(&od))?.path();
        for o in std::fs::read_dir(&sub).map_err(io(&sub))? {
            let o = o.map_err(io(&sub))?;
            if !o.file_name().to_string_lossy().starts_with('.') {
                objects += 1;
                object_bytes += o.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    Ok(Listing {
        chain: marker.chain,
        volume: marker.volume,
        backup: marker.backup,
        exports,
        objects,
        object_bytes,
    })
}

/// Encrypt `plain` to the age X25519 recipient `recipient`.
pub(crate) fn age_encrypt_to(recipient: &str, plain: &[u8]) -> Result<Vec<u8>> {
    let r: age::x25519::Recipient = recipient.trim().parse().map_err(|e| {
        ExportError::Refused(format!(
            "{recipient:?} is not an age X25519 recipient ({e}); it looks like age1… (`age-keygen -y key.txt` prints it)"
        ))
    })?;
    let enc = age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient))
        .map_err(|e| ExportError::Age(e.to_string()))?;
    let mut out = Vec::new();
    let mut w = enc
        .wrap_output(&mut out)
        .map_err(|e| ExportError::Age(e.to_string()))?;
    w.write_all(plain)
        .map_err(|e| ExportError::Age(e.to_string()))?;
    w.finish().map_err(|e| ExportError::Age(e.to_string()))?;
    Ok(out)
}

/// The identities in an age identity file (as `age -i FILE` reads it).
pub fn age_identities(file: &Path) -> Result<Vec<Box<dyn age::Identity + Send + Sync>>> {
    let f = age::IdentityFile::from_file(file.display().to_string()).map_err(io(file))?;
    f.into_identities().map_err(|e| {
        ExportError::Refused(format!(
            "{} is not an age identity file ({e}); `age-keygen -o FILE` makes one",
            file.display()
        ))
    })
}

fn age_decrypt_with(identity_file: &Path, wrapped: &[u8]) -> Result<Vec<u8>> {
    let ids = age_identities(identity_file)?;
    let d = age::Decryptor::new(wrapped).map_err(|e| ExportError::Age(e.to_string()))?;
    let mut r = d
        .decrypt(ids.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|e| ExportError::Age(e.to_string()))?;
    let mut out = Vec::new();
    r.read_to_end(&mut out)
        .map_err(|e| ExportError::Age(e.to_string()))?;
    Ok(out)
}
