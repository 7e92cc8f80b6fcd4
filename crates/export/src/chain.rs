//! A native export target: its marker, the chain's data key and the slots that open it, the
//! manifests and their chain.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sealvol_objstore::{LocalDir, ObjectStore};

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

/// An open native export target: a directory, or an object store (an S3 bucket), through
/// [`ObjectStore`].
pub struct Target {
    /// What the target is called in messages: its directory, or `s3://bucket/prefix`.
    pub dir: PathBuf,
    pub store: Arc<dyn ObjectStore>,
    pub marker: Marker,
    pub keys: ChainKeys,
    /// The objects the store holds, with their sizes, listed once when an export starts on a
    /// remote store (a directory is asked object by object).
    present: Option<HashMap<[u8; 32], u64>>,
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

/// The object `key` of `store`, refused if larger than `max` bytes.
pub(crate) fn read_small(store: &dyn ObjectStore, key: &str, max: usize) -> Result<Vec<u8>> {
    if let Some(d) = store.local_dir() {
        let path = d.join(key);
        let f = File::open(&path).map_err(io(&path))?;
        let mut buf = Vec::new();
        f.take(max as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(io(&path))?;
        if buf.len() > max {
            return Err(ExportError::Damaged {
                path: path.clone(),
                what: format!("{} is larger than {max} bytes", path.display()),
            });
        }
        return Ok(buf);
    }
    let buf = store.get(key)?;
    if buf.len() > max {
        return Err(ExportError::Damaged {
            path: PathBuf::from(store.describe()),
            what: format!("{key} is larger than {max} bytes"),
        });
    }
    Ok(buf)
}

/// Whether `e` says an object or file does not exist.
pub(crate) fn is_not_found(e: &ExportError) -> bool {
    match e {
        ExportError::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
        ExportError::Store(e) => e.is_not_found(),
        _ => false,
    }
}

/// The key of export `seq`'s metadata in an object store other than a directory: named by its
/// hash too, so that two exporters racing for the same number never overwrite each other's
/// (the loser's manifest is refused; its metadata is an orphan it removes).
pub(crate) fn remote_meta_key(seq: u64, hash: &[u8; 32]) -> String {
    format!("{EXPORTS}/{seq:08}.{}.meta", hex::encode(&hash[..8]))
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

fn read_marker(store: &dyn ObjectStore) -> Result<Marker> {
    let dir = &PathBuf::from(store.describe());
    let bytes = read_small(store, MARKER, 4096).map_err(|e| {
        if is_not_found(&e) {
            ExportError::NotAnExport {
                path: dir.to_path_buf(),
                why: format!("it has no {MARKER}"),
            }
        } else {
            e
        }
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

fn read_chain_header(store: &dyn ObjectStore) -> Result<KeyHeader> {
    let dir = PathBuf::from(store.describe());
    let bytes = read_small(store, CHAIN_KEYS, sealvol_crypto::slots::MAX_HEADER_BYTES)?;
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

/// Whether `store` holds anything (a missing directory holds nothing).
fn is_empty(store: &dyn ObjectStore) -> Result<bool> {
    let Some(dir) = store.local_dir() else {
        return Ok(store.list("")?.is_empty());
    };
    match std::fs::read_dir(dir) {
        Ok(mut it) => Ok(it.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(io(dir)(e)),
    }
}

/// Store a small file of the chain (marker, keys, cache) and make it durable.
pub(crate) fn put_durable(store: &dyn ObjectStore, key: &str, bytes: &[u8]) -> Result<()> {
    match store.local_dir() {
        Some(d) => write_atomic(d, key, bytes),
        None => Ok(store.put(key, bytes)?),
    }
}

fn now_unix() -> u64 {
    #[allow(clippy::disallowed_methods)]
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An exclusive lock on a directory target while an export writes to it (released on drop).
/// An object store has none: its exports publish their manifests with a conditional write,
/// and the second of two racing exporters is refused then.
pub struct TargetLock(#[allow(dead_code)] Option<File>);

impl Target {
    /// Open the chain in `dir` to add an export of the volume whose key header is
    /// `volume_header` (unlocked as `volume_master`), or start a chain in an empty or new
    /// `dir`. `key` must agree with how an existing chain was started.
    pub fn open_for_export(
        store: Arc<dyn ObjectStore>,
        volume_header: &KeyHeader,
        volume_master: &MasterKey,
        key: &ExportKey<'_>,
        kdf: KdfParams,
    ) -> Result<(Target, TargetLock)> {
        let volume_hex = hex::encode(&volume_header.volume_id);
        let slot = volume_slot_secret(volume_master);
        let dir = &PathBuf::from(store.describe());
        let s = store.as_ref();
        if is_empty(s)? {
            if let Some(d) = s.local_dir() {
                std::fs::create_dir_all(d).map_err(io(d))?;
            }
            let lock = lock(s)?;
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
                    put_durable(s, BACKUP_KEY_AGE, &wrapped?)?;
                    BackupKind::Age
                }
            };
            if backup == BackupKind::None {
                put_durable(s, VOLUME_KEYS, &volume_header.to_json())?;
            }
            put_durable(s, CHAIN_KEYS, &header.to_json())?;
            let id = chain_id(dir, &header)?;
            if let Some(d) = s.local_dir() {
                for sub in [OBJECTS, EXPORTS] {
                    std::fs::create_dir_all(d.join(sub)).map_err(io(d))?;
                }
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
            put_durable(s, MARKER, &json)?;
            let keys = ChainKeys::new(id, &k);
            return Ok((
                Target {
                    dir: dir.to_path_buf(),
                    store,
                    marker,
                    keys,
                    present: None,
                },
                lock,
            ));
        }
        let marker = read_marker(s)?;
        let lock = lock(s)?;
        if marker.volume != volume_hex {
            return Err(ExportError::Refused(format!(
                "{} holds exports of another volume ({}; this one is {volume_hex}); export into an empty or new directory",
                dir.display(),
                marker.volume
            )));
        }
        let header = read_chain_header(s)?;
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
                store,
                marker,
                keys: ChainKeys::new(id, &k),
                present: None,
            },
            lock,
        ))
    }

    /// Open the export in `dir` for reading with `key`. A wrong key is refused here, before
    /// anything is written anywhere.
    pub fn open(dir: &Path, key: &OpenKey<'_>) -> Result<Target> {
        Target::open_store(Arc::new(LocalDir::new(dir)), key)
    }

    /// Open the export in `store` (a directory or a bucket) for reading with `key`.
    pub fn open_store(store: Arc<dyn ObjectStore>, key: &OpenKey<'_>) -> Result<Target> {
        let s = store.as_ref();
        let dir = &PathBuf::from(s.describe());
        let marker = read_marker(s)?;
        let header = read_chain_header(s)?;
        let k = match key {
            OpenKey::Volume(secret) => {
                let vk = match read_small(s, VOLUME_KEYS, sealvol_crypto::slots::MAX_HEADER_BYTES) {
                    Ok(b) => Some(b),
                    Err(e) if is_not_found(&e) => None,
                    Err(e) => return Err(e),
                };
                let Some(vk) = vk else {
                    return Err(ExportError::Refused(format!(
                        "the export in {} was made with a backup key ({:?}): open it with {}",
                        dir.display(),
                        marker.backup,
                        match marker.backup {
                            BackupKind::Age => "--identity FILE",
                            _ => "--backup-passphrase-file FILE",
                        }
                    )));
                };
                let vh = KeyHeader::from_json(&vk).map_err(|e| ExportError::Damaged {
                    path: dir.to_path_buf(),
                    what: format!("{VOLUME_KEYS}: {e}"),
                })?;
                let vm = unlocked(dir, vh.unlock(secret))?;
                unlocked(dir, header.unlock(&volume_slot_secret(&vm)))?
            }
            OpenKey::Passphrase(p) => unlocked(dir, header.unlock(p))?,
            OpenKey::Identity(file) => {
                let wrapped = read_small(s, BACKUP_KEY_AGE, 64 << 10).map_err(|e| {
                    if is_not_found(&e) {
                        ExportError::Refused(format!(
                            "the export in {} was not made for an age recipient (it has no {BACKUP_KEY_AGE}); open it with the volume's key or --backup-passphrase-file",
                            dir.display()
                        ))
                    } else {
                        e
                    }
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
            store,
            marker,
            keys: ChainKeys::new(id, &k),
            present: None,
        })
    }

    pub fn exports_dir(&self) -> PathBuf {
        self.dir.join(EXPORTS)
    }

    /// The file of an object in a directory target (its name, for another store).
    pub fn object_file(&self, addr: &[u8; 32]) -> PathBuf {
        self.dir.join(object_key(addr))
    }

    /// Whether the target holds object `addr`, `len` bytes long (a shorter one is a leftover
    /// of an interrupted write, to be written again).
    pub(crate) fn holds(&self, addr: &[u8; 32], len: u64) -> bool {
        match &self.present {
            Some(p) => p.get(addr) == Some(&len),
            None => self
                .store
                .head(&object_key(addr))
                .ok()
                .flatten()
                .is_some_and(|m| m.size == len),
        }
    }

    /// List the objects of a remote target once, for [`Target::holds`] (a directory is
    /// asked object by object, which is cheaper than a listing there).
    pub(crate) fn load_present(&mut self) -> Result<()> {
        if self.store.local_dir().is_some() {
            return Ok(());
        }
        let mut p = HashMap::new();
        for o in self.store.list(OBJECTS)? {
            if let Some(addr) = addr_of_key(&o.key) {
                p.insert(addr, o.size);
            }
        }
        self.present = Some(p);
        Ok(())
    }

    /// Note that object `addr` was stored.
    pub(crate) fn stored(&mut self, addr: [u8; 32], len: u64) {
        if let Some(p) = &mut self.present {
            p.insert(addr, len);
        }
    }

    /// The manifests' sequence numbers present, ascending.
    pub fn seqs(&self) -> Result<Vec<u64>> {
        list_seqs_in(self.store.as_ref())
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
            let key = format!("{EXPORTS}/{}", manifest_name(seq));
            let bytes = match read_small(self.store.as_ref(), &key, MAX_MANIFEST) {
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
        lock(self.store.as_ref())
    }
}

/// What [`Target::chain`] found.
#[derive(Default, Debug)]
pub struct Chain {
    pub manifests: Vec<(Manifest, [u8; 32])>,
    pub problems: Vec<String>,
}

/// The key of object `addr`.
pub(crate) fn object_key(addr: &[u8; 32]) -> String {
    format!("{OBJECTS}/{}", crate::format::object_path(addr))
}

/// The object named by `key` (`objects/ab/abcd…`), if it names one.
fn addr_of_key(key: &str) -> Option<[u8; 32]> {
    let name = key.strip_prefix(OBJECTS)?.rsplit('/').next()?;
    let b = hex::decode(name).ok()?;
    b.try_into().ok()
}

fn lock(store: &dyn ObjectStore) -> Result<TargetLock> {
    let Some(dir) = store.local_dir() else {
        return Ok(TargetLock(None));
    };
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
    Ok(TargetLock(Some(f)))
}

/// The sequence numbers of the manifests in `dir/exports`, ascending.
pub fn list_seqs(dir: &Path) -> Result<Vec<u64>> {
    let ed = dir.join(EXPORTS);
    // A directory without exports/ is an error here, as it always was.
    std::fs::metadata(&ed).map_err(io(&ed))?;
    list_seqs_in(&LocalDir::new(dir))
}

fn list_seqs_in(store: &dyn ObjectStore) -> Result<Vec<u64>> {
    let mut seqs = Vec::new();
    for o in store.list(EXPORTS)? {
        let name = o.key.rsplit('/').next().unwrap_or("");
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
    list_store(&LocalDir::new(dir))
}

/// What a directory or bucket holds, from its names and sizes alone.
pub fn list_store(store: &dyn ObjectStore) -> Result<Listing> {
    let marker = read_marker(store)?;
    let mut manifests = HashMap::new();
    let mut metas: HashMap<u64, u64> = HashMap::new();
    for o in store.list(EXPORTS)? {
        let name = o.key.rsplit('/').next().unwrap_or("");
        let seq = name.split('.').next().and_then(|n| n.parse::<u64>().ok());
        match seq {
            Some(seq) if name.ends_with(".manifest") => {
                manifests.insert(seq, o);
            }
            Some(seq) if name.ends_with(".meta") => {
                // An orphan from an interrupted export may sit beside the one its manifest
                // names (remote stores): the largest is shown.
                let m = metas.entry(seq).or_default();
                *m = (*m).max(o.size);
            }
            _ => {}
        }
    }
    let mut exports: Vec<Listed> = manifests
        .into_iter()
        .map(|(seq, o)| Listed {
            seq,
            written_unix: o.modified_unix,
            manifest_bytes: o.size,
            meta_bytes: metas.get(&seq).copied().unwrap_or(0),
        })
        .collect();
    exports.sort_by_key(|e| e.seq);
    let (mut objects, mut object_bytes) = (0, 0);
    for o in store.list(OBJECTS)? {
        if addr_of_key(&o.key).is_some() {
            objects += 1;
            object_bytes += o.size;
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
