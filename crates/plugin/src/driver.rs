//! The volume driver: the volume table, one store per volume, one `sealvol mount` process per
//! mounted volume.
//!
//! Layout under the state directory (default `/var/lib/sealvol`):
//!
//! ```text
//! volumes.json                 the table (no secrets)
//! volumes/NAME/store/          the volume's encrypted store (keys.json + db/)
//! mounts/NAME/                 where the volume is mounted for Docker
//! ```
//!
//! and under the run directory (default `/run/sealvol`, tmpfs): `stats/NAME.json`, the totals the
//! mount process publishes, and `logs/NAME.log`, its log.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sealvol_mount::{
    create_store, mount_state, mountinfo, unmount_and_wait, MountCommand, MountError, MountState,
    UnmountMode,
};
use sealvol_volume::{
    BadChunkSize, BadMemoryBudget, CacheOverBudget, ChunkSize, CreateOptions, MemoryBudget,
};

use crate::protocol::VolumeInfo;
use crate::table::{KeySource, Table, VolumeRecord};

/// Options a volume accepts (`-o`, `driver_opts`, `volume-opt`).
pub const VALID_OPTIONS: &[&str] = &[
    "passphrase-file",
    "keyfile",
    "chunk-size",
    "memory",
    "cache-size",
];

#[derive(Clone, Debug)]
pub struct DriverConfig {
    pub state_dir: PathBuf,
    /// Where volumes are mounted for Docker (default `STATE_DIR/mounts`; for a managed plugin,
    /// its propagated mount).
    pub mount_dir: Option<PathBuf>,
    pub run_dir: PathBuf,
    /// The sealvol binary, run as `sealvol mount --foreground --secret-stdin ...` per volume.
    pub exe: PathBuf,
    /// Key for volumes created without a key option.
    pub default_keyfile: Option<PathBuf>,
    /// How long a mount process may take to report ready (Docker gives Mount 2 minutes).
    pub mount_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("no such volume")]
    NoSuchVolume,
    #[error("invalid volume name {0:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit")]
    InvalidName(String),
    #[error("unknown option {0:?}; valid options: {valid}", valid = VALID_OPTIONS.join(", "))]
    UnknownOption(String),
    #[error(
        "refusing option {0:?}: Docker stores volume options in clear and shows them in `docker volume inspect`; \
         put the secret in a root-only file (chmod 600) and pass -o passphrase-file=PATH or -o keyfile=PATH"
    )]
    SecretInOptions(String),
    #[error(
        "no key for volume {0:?}: pass -o keyfile=PATH or -o passphrase-file=PATH, or start `sealvol serve` with --default-keyfile PATH"
    )]
    NoKey(String),
    #[error("give one of passphrase-file and keyfile, not both")]
    BothKeys,
    #[error("option chunk-size: {0}")]
    BadChunkSize(#[from] BadChunkSize),
    #[error("invalid cache-size {0:?}: a size such as 64M or 1G (0 turns the cache off)")]
    BadCacheSize(String),
    #[error("option memory: {0}")]
    BadMemory(#[from] BadMemoryBudget),
    #[error("options cache-size and memory: {0}")]
    CacheOverBudget(#[from] CacheOverBudget),
    #[error("key for volume {name:?}: {detail}")]
    Key { name: String, detail: String },
    #[error("option {option}={}: {detail}", .path.display())]
    KeyOption {
        option: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error(
        "option {option}={}: not an absolute path; give the file's full path on the host, \
         for example -o {option}=/etc/sealvol/NAME.key", .path.display()
    )]
    RelativeKeyPath { option: &'static str, path: PathBuf },
    #[error("volume {name:?}: {cause}")]
    Store {
        name: String,
        cause: Box<MountError>,
    },
    #[error("volume {0:?} exists with a different key; use the key it was created with, or remove it first")]
    WrongKey(String),
    #[error("volume {name:?} is in use ({count} mount(s)); stop the containers using it first")]
    InUse { name: String, count: usize },
    #[error("mounting volume {name:?} failed: {detail}")]
    Mount { name: String, detail: String },
    #[error("unmounting volume {name:?} failed: {detail}")]
    Unmount { name: String, detail: String },
    #[error("{0}")]
    Io(String),
}

type Result<T, E = DriverError> = std::result::Result<T, E>;

fn io(context: &str) -> impl Fn(std::io::Error) -> DriverError + '_ {
    move |e| DriverError::Io(format!("{context}: {e}"))
}

pub struct Driver {
    cfg: DriverConfig,
    table: Mutex<Table>,
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

/// How long a mount may take to answer `statfs` before it counts as dead.
const LIVE_WITHIN: Duration = Duration::from_secs(1);

/// How long Unmount waits for the mount process to write out and exit; it finishes on its own
/// if slower.
const EXIT_WITHIN: Duration = Duration::from_secs(10);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Creation time shown by `docker volume inspect`: the wall clock.
#[allow(clippy::disallowed_methods)]
fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A client's string as an error message quotes it: at most 64 characters of it, so a reply
/// stays small whatever the request held (found by fuzzing the router: a name of DEL bytes
/// came back six times its size, each escaped as `\u{7f}`).
pub(crate) fn shown(s: &str) -> String {
    const MAX: usize = 64;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s.to_string(),
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() <= 200
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl Driver {
    /// Load the table and reconcile it with what is really mounted.
    pub fn start(cfg: DriverConfig) -> Result<Driver> {
        for d in [
            cfg.state_dir.join("volumes"),
            cfg.state_dir.join("mounts"),
            cfg.run_dir.join("stats"),
            cfg.run_dir.join("logs"),
        ] {
            std::fs::create_dir_all(&d).map_err(io("creating state directories"))?;
        }
        let table = Table::load(&cfg.state_dir.join("volumes.json"))
            .map_err(io("loading the volume table"))?;
        let d = Driver {
            cfg,
            table: Mutex::new(table),
            locks: Mutex::new(HashMap::new()),
        };
        d.reconcile()?;
        Ok(d)
    }

    fn table_path(&self) -> PathBuf {
        self.cfg.state_dir.join("volumes.json")
    }

    pub fn store_dir(&self, name: &str) -> PathBuf {
        self.cfg.state_dir.join("volumes").join(name).join("store")
    }

    pub fn mountpoint(&self, name: &str) -> PathBuf {
        match &self.cfg.mount_dir {
            Some(d) => d.join(name),
            None => self.cfg.state_dir.join("mounts").join(name),
        }
    }

    fn stats_path(&self, name: &str) -> PathBuf {
        self.cfg.run_dir.join("stats").join(format!("{name}.json"))
    }

    fn op_lock(&self, name: &str) -> Arc<Mutex<()>> {
        lock(&self.locks)
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// The lock of a volume the table lists. A name it does not list is `NoSuchVolume`
    /// before any lock is made: the lock map must not keep an entry (up to a request body's
    /// size) for every name a client sends.
    fn volume_lock(&self, name: &str) -> Result<Arc<Mutex<()>>> {
        if !lock(&self.table).volumes.contains_key(name) {
            return Err(DriverError::NoSuchVolume);
        }
        Ok(self.op_lock(name))
    }

    fn save(&self, t: &Table) -> Result<()> {
        t.save(&self.table_path())
            .map_err(io("saving the volume table"))
    }

    fn record(&self, name: &str) -> Result<VolumeRecord> {
        lock(&self.table)
            .volumes
            .get(name)
            .cloned()
            .ok_or(DriverError::NoSuchVolume)
    }

    fn mount_state(&self, name: &str) -> MountState {
        mount_state(&self.mountpoint(name), &self.store_dir(name), LIVE_WITHIN)
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.cfg.run_dir.join("logs").join(format!("{name}.log"))
    }

    /// At start: keep live mounts that containers use, unmount dead or unused ones.
    fn reconcile(&self) -> Result<()> {
        let names: Vec<String> = lock(&self.table).volumes.keys().cloned().collect();
        for name in names {
            let state = self.mount_state(&name);
            let mut t = lock(&self.table);
            let Some(rec) = t.volumes.get_mut(&name) else {
                continue;
            };
            match state {
                MountState::Live if !rec.mount_ids.is_empty() => {
                    tracing::info!(volume = %name, mounts = rec.mount_ids.len(), "re-adopted a live mount");
                }
                MountState::Live => {
                    drop(t);
                    tracing::info!(volume = %name, "unmounting a mount no container uses");
                    let _ = self.fuse_unmount(&name, false);
                }
                MountState::Dead => {
                    tracing::warn!(volume = %name, "cleaning up a dead mount");
                    rec.mount_ids.clear();
                    let snapshot = t.clone();
                    drop(t);
                    self.save(&snapshot)?;
                    let _ = self.fuse_unmount(&name, true);
                }
                MountState::Absent => {
                    if !rec.mount_ids.is_empty() {
                        rec.mount_ids.clear();
                        let snapshot = t.clone();
                        drop(t);
                        self.save(&snapshot)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn key_source(&self, name: &str, opts: &BTreeMap<String, String>) -> Result<KeySource> {
        let absolute = |option: &'static str, p: &String| {
            let path = PathBuf::from(p);
            if path.is_absolute() {
                Ok(path)
            } else {
                Err(DriverError::RelativeKeyPath { option, path })
            }
        };
        match (opts.get("passphrase-file"), opts.get("keyfile")) {
            (Some(_), Some(_)) => Err(DriverError::BothKeys),
            (Some(p), None) => Ok(KeySource::PassphraseFile {
                path: absolute("passphrase-file", p)?,
            }),
            (None, Some(k)) => Ok(KeySource::Keyfile {
                path: absolute("keyfile", k)?,
            }),
            (None, None) => match &self.cfg.default_keyfile {
                Some(k) => Ok(KeySource::Keyfile { path: k.clone() }),
                None => Err(DriverError::NoKey(name.to_string())),
            },
        }
    }

    /// Every option is checked, and the key read, before anything is made on disk; a failure
    /// while making the store removes what was made, so the create can be retried.
    pub fn create(&self, name: &str, opts: BTreeMap<String, String>) -> Result<()> {
        if !valid_name(name) {
            return Err(DriverError::InvalidName(shown(name)));
        }
        for k in opts.keys() {
            if k == "passphrase" || k == "key" || k == "password" {
                return Err(DriverError::SecretInOptions(shown(k)));
            }
            if !VALID_OPTIONS.contains(&k.as_str()) {
                return Err(DriverError::UnknownOption(shown(k)));
            }
        }
        let chunk_size = match opts.get("chunk-size") {
            Some(s) => s.parse::<ChunkSize>()?,
            None => ChunkSize::DEFAULT,
        };
        let memory = match opts.get("memory") {
            Some(s) => s.parse::<MemoryBudget>()?,
            None => MemoryBudget::DEFAULT,
        };
        if let Some(s) = opts.get("cache-size") {
            let c =
                sealvol_volume::parse_size(s).ok_or_else(|| DriverError::BadCacheSize(shown(s)))?;
            memory.split().with_cache_size(c)?;
        }
        let key = self.key_source(name, &opts)?;
        let secret = key.read().map_err(|e| match &key {
            KeySource::Keyfile { path } => DriverError::KeyOption {
                option: "keyfile",
                path: path.clone(),
                detail: e.to_string(),
            },
            KeySource::PassphraseFile { path } => DriverError::KeyOption {
                option: "passphrase-file",
                path: path.clone(),
                detail: e.to_string(),
            },
        })?;
        let l = self.op_lock(name);
        let _g = lock(&l);
        if lock(&self.table).volumes.contains_key(name) {
            // Idempotent for the same key; a clear error for another.
            let header = sealvol_volume::volume_admin::read_header(&self.store_dir(name))
                .map_err(|e| DriverError::Io(e.to_string()))?;
            return match header.unlock(&secret) {
                Ok(_) => Ok(()),
                Err(_) => Err(DriverError::WrongKey(name.to_string())),
            };
        }
        let store = self.store_dir(name);
        if store.exists() {
            // Left over from a create that crashed before the table was saved.
            std::fs::remove_dir_all(&store).map_err(io("removing a half-created store"))?;
        }
        let copts = CreateOptions {
            chunk_size,
            ..CreateOptions::default()
        };
        let v = create_store(&store, &secret, &copts).map_err(|cause| DriverError::Store {
            name: name.to_string(),
            cause: Box::new(cause),
        })?;
        drop(v);
        let mut t = lock(&self.table);
        t.volumes.insert(
            name.to_string(),
            VolumeRecord {
                name: name.to_string(),
                created_unix: now_unix(),
                key,
                chunk_size,
                options: opts,
                mount_ids: Default::default(),
            },
        );
        let snapshot = t.clone();
        drop(t);
        self.save(&snapshot)?;
        tracing::info!(volume = %name, "created");
        Ok(())
    }

    pub fn remove(&self, name: &str) -> Result<()> {
        let l = self.volume_lock(name)?;
        let _g = lock(&l);
        let rec = self.record(name)?;
        let state = self.mount_state(name);
        if !rec.mount_ids.is_empty() || state == MountState::Live {
            return Err(DriverError::InUse {
                name: name.into(),
                count: rec.mount_ids.len().max(1),
            });
        }
        if state == MountState::Dead {
            let _ = self.fuse_unmount(name, true);
        }
        let store = self.store_dir(name);
        shred_key_header(&store).map_err(io("destroying the key slots"))?;
        std::fs::remove_dir_all(self.cfg.state_dir.join("volumes").join(name))
            .map_err(io("deleting the store"))?;
        let _ = std::fs::remove_dir(self.mountpoint(name));
        let _ = std::fs::remove_file(self.stats_path(name));
        let mut t = lock(&self.table);
        t.volumes.remove(name);
        let snapshot = t.clone();
        drop(t);
        self.save(&snapshot)?;
        tracing::info!(volume = %name, "removed (key slots destroyed first)");
        Ok(())
    }

    pub fn mount(&self, name: &str, id: &str) -> Result<String> {
        let l = self.volume_lock(name)?;
        let _g = lock(&l);
        let rec = self.record(name)?;
        let mp = self.mountpoint(name);
        match self.mount_state(name) {
            MountState::Live => {}
            state => {
                if state == MountState::Dead {
                    let _ = self.fuse_unmount(name, true);
                }
                self.start_mount_process(&rec)?;
                if self.mount_state(name) != MountState::Live {
                    return Err(DriverError::Mount {
                        name: name.into(),
                        detail: "the mount process reported ready but the mount is not live".into(),
                    });
                }
            }
        }
        let mut t = lock(&self.table);
        if let Some(r) = t.volumes.get_mut(name) {
            r.mount_ids.insert(id.to_string());
        }
        let snapshot = t.clone();
        drop(t);
        self.save(&snapshot)?;
        Ok(mp.to_string_lossy().into_owned())
    }

    fn start_mount_process(&self, rec: &VolumeRecord) -> Result<()> {
        let name = &rec.name;
        let fail = |detail: String| DriverError::Mount {
            name: name.clone(),
            detail,
        };
        let mp = self.mountpoint(name);
        std::fs::create_dir_all(&mp)
            .map_err(|e| fail(format!("creating {}: {e}", mp.display())))?;
        let secret = rec.key.read().map_err(|e| DriverError::Key {
            name: name.clone(),
            detail: e.to_string(),
        })?;
        let cmd = MountCommand {
            stats_file: Some(self.stats_path(name)),
            log_file: Some(self.log_path(name)),
            ..mount_command(rec, self.cfg.exe.clone(), self.store_dir(name), mp)?
        };
        cmd.spawn(&secret, self.cfg.mount_timeout)
            .map(drop)
            .map_err(|e| fail(e.to_string()))
    }

    /// Unmount; with `lazy`, detach even if busy (for dead mounts). Waits a while for the mount
    /// process to write out and exit.
    fn fuse_unmount(&self, name: &str, lazy: bool) -> Result<()> {
        let mode = if lazy {
            UnmountMode::Lazy
        } else {
            UnmountMode::Clean
        };
        match unmount_and_wait(
            &self.mountpoint(name),
            &self.store_dir(name),
            mode,
            EXIT_WITHIN,
        ) {
            Ok(()) => Ok(()),
            Err(e @ MountError::StillWriting { .. }) => {
                tracing::warn!(volume = %name, "{e}");
                Ok(())
            }
            Err(e) => Err(DriverError::Unmount {
                name: name.into(),
                detail: e.to_string(),
            }),
        }
    }

    pub fn unmount(&self, name: &str, id: &str) -> Result<()> {
        let l = self.volume_lock(name)?;
        let _g = lock(&l);
        let mut t = lock(&self.table);
        let rec = t.volumes.get_mut(name).ok_or(DriverError::NoSuchVolume)?;
        rec.mount_ids.remove(id);
        let last = rec.mount_ids.is_empty();
        let snapshot = t.clone();
        drop(t);
        self.save(&snapshot)?;
        if last && self.mount_state(name) != MountState::Absent {
            self.fuse_unmount(name, false)?;
        }
        Ok(())
    }

    pub fn path(&self, name: &str) -> Result<Option<String>> {
        let rec = self.record(name)?;
        if !rec.mount_ids.is_empty() && self.mount_state(name) == MountState::Live {
            Ok(Some(self.mountpoint(name).to_string_lossy().into_owned()))
        } else {
            Ok(None)
        }
    }

    fn info(&self, rec: &VolumeRecord, check_live: bool) -> VolumeInfo {
        let name = &rec.name;
        let state = if check_live {
            self.mount_state(name)
        } else {
            match mountinfo::sealvol_at(&self.mountpoint(name)) {
                Ok(Some(_)) => MountState::Live,
                _ => MountState::Absent,
            }
        };
        let mounted = state == MountState::Live && !rec.mount_ids.is_empty();
        let mut s = serde_json::Map::new();
        s.insert(
            "cipher".into(),
            "XChaCha20-Poly1305, keyed BLAKE3 chunk addresses".into(),
        );
        s.insert("chunk_size".into(), rec.chunk_size.get().into());
        s.insert(
            "key".into(),
            match &rec.key {
                KeySource::Keyfile { .. } => "keyfile",
                KeySource::PassphraseFile { .. } => "passphrase-file",
            }
            .into(),
        );
        s.insert("mount_count".into(), rec.mount_ids.len().into());
        s.insert("mounted".into(), mounted.into());
        let stats = std::fs::read(self.stats_path(name))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
        let mut health = match state {
            MountState::Dead => {
                "degraded: the mount process is gone; the next container start remounts".to_string()
            }
            _ => "ok".to_string(),
        };
        match stats {
            Some(v) => {
                for k in [
                    "logical_bytes",
                    "stored_bytes",
                    "dedup_ratio",
                    "chunks",
                    "files",
                    "dirs",
                ] {
                    if let Some(x) = v.get(k) {
                        s.insert(k.into(), x.clone());
                    }
                }
                if !mounted {
                    s.insert("stats_as_of".into(), "last unmount".into());
                }
                // The mount process's memory, while there is one (at unmount it published what
                // it held while closing, which says nothing about the volume now).
                if let (true, Some(m)) = (mounted, v.get("memory")) {
                    for (from, to) in [
                        ("budget_bytes", "memory_budget_bytes"),
                        ("resident_bytes", "memory_resident_bytes"),
                        ("peak_bytes", "memory_peak_bytes"),
                        ("locked_bytes", "memory_locked_bytes"),
                    ] {
                        if let Some(x) = m.get(from) {
                            s.insert(to.into(), x.clone());
                        }
                    }
                }
            }
            None => {
                if health == "ok" {
                    health = "ok (sizes are reported once the volume has been mounted)".into();
                }
            }
        }
        s.insert("health".into(), health.into());
        VolumeInfo {
            name: name.clone(),
            mountpoint: if mounted {
                self.mountpoint(name).to_string_lossy().into_owned()
            } else {
                String::new()
            },
            created_at: humantime::format_rfc3339_seconds(
                UNIX_EPOCH + Duration::from_secs(rec.created_unix),
            )
            .to_string(),
            status: s,
        }
    }

    /// Never an error for a known volume: problems go into Status.
    pub fn get(&self, name: &str) -> Option<VolumeInfo> {
        let rec = lock(&self.table).volumes.get(name).cloned()?;
        Some(self.info(&rec, true))
    }

    pub fn list(&self) -> Vec<VolumeInfo> {
        let recs: Vec<VolumeRecord> = lock(&self.table).volumes.values().cloned().collect();
        recs.iter().map(|r| self.info(r, false)).collect()
    }
}

/// The mount process for the volume `rec`, its memory options from the volume's options.
/// Checked at create; a table edited by hand since is refused here. A volume created before
/// memory budgets may ask for more cache than its budget leaves the cache (the default used to
/// be 256M): it gets the share, with a warning, not a failed mount.
fn mount_command(
    rec: &VolumeRecord,
    exe: PathBuf,
    store: PathBuf,
    mountpoint: PathBuf,
) -> Result<MountCommand> {
    let memory = match rec.options.get("memory") {
        Some(m) => m.parse::<MemoryBudget>()?,
        None => MemoryBudget::DEFAULT,
    };
    let cache_size = match rec.options.get("cache-size") {
        Some(c) => {
            let c = sealvol_volume::parse_size(c)
                .ok_or_else(|| DriverError::BadCacheSize(c.clone()))?;
            let share = memory.split().cache as u64;
            if c > share {
                tracing::warn!(
                    volume = %rec.name,
                    cache_size = c,
                    share,
                    "cache-size exceeds the plaintext cache's share of the memory budget; using the share (set -o memory= higher to keep the cache)"
                );
            }
            Some(c.min(share))
        }
        None => None,
    };
    Ok(MountCommand {
        memory: rec.options.get("memory").map(|_| memory.bytes()),
        cache_size,
        ..MountCommand::new(exe, store, mountpoint)
    })
}

/// Crypto-shred: overwrite the key header with random bytes and sync before deleting, so the
/// wrapped master key is gone from the file's blocks.
fn shred_key_header(store: &Path) -> std::io::Result<()> {
    let p = store.join("keys.json");
    let len = match std::fs::metadata(&p) {
        Ok(m) => m.len() as usize,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut junk = vec![0u8; len.max(4096)];
    sealvol_crypto::random_bytes(&mut junk).map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut f = std::fs::OpenOptions::new().write(true).open(&p)?;
    f.write_all(&junk)?;
    f.sync_all()?;
    drop(f);
    std::fs::remove_file(&p)?;
    std::fs::File::open(store)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A driver on a fresh state directory that can start no mount process.
    fn test_driver() -> (tempfile::TempDir, Driver) {
        let dir = tempfile::tempdir().unwrap();
        let d = Driver::start(DriverConfig {
            state_dir: dir.path().join("state"),
            mount_dir: None,
            run_dir: dir.path().join("run"),
            exe: "/nonexistent/sealvol".into(),
            default_keyfile: None,
            mount_timeout: Duration::from_secs(1),
        })
        .unwrap();
        (dir, d)
    }

    /// Found writing the router fuzz target: Remove, Mount and Unmount of names not in the table
    /// each left an entry in the lock map, so a client could grow the server's memory without
    /// bound (a distinct name per request, each up to a request body's size).
    #[test]
    fn unknown_names_leave_no_lock_behind() {
        let (_dir, d) = test_driver();
        let long = "n".repeat(100_000);
        for i in 0..100 {
            let name = format!("{long}{i}");
            assert!(matches!(d.remove(&name), Err(DriverError::NoSuchVolume)));
            assert!(matches!(
                d.mount(&name, "id"),
                Err(DriverError::NoSuchVolume)
            ));
            assert!(matches!(
                d.unmount(&name, "id"),
                Err(DriverError::NoSuchVolume)
            ));
        }
        assert_eq!(lock(&d.locks).len(), 0);
    }

    /// Found by the `plugin` fuzz target: errors quoted a client's strings whole (and
    /// escaped), so a reply could be several times the size of its request.
    #[test]
    fn errors_quote_a_bounded_part_of_client_strings() {
        let (_dir, d) = test_driver();
        let junk = "\u{7f}".repeat(10_000);
        let opts = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        for (name, opts) in [
            (junk.as_str(), BTreeMap::new()),
            ("ok", opts(&junk, "1")),
            ("ok", opts("cache-size", &junk)),
            ("ok", opts("memory", &junk)),
            ("ok", opts("chunk-size", &junk)),
        ] {
            let e = d.create(name, opts).unwrap_err().to_string();
            assert!(e.len() < 1024, "{} bytes: {e:.200}", e.len());
        }
    }

    #[test]
    fn memory_options_reach_the_mount_command_and_an_old_cache_size_gets_its_share() {
        let rec = |opts: &[(&str, &str)]| VolumeRecord {
            name: "v".into(),
            created_unix: 0,
            key: KeySource::Keyfile { path: "/k".into() },
            chunk_size: ChunkSize::DEFAULT,
            options: opts
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            mount_ids: Default::default(),
        };
        let cmd = |opts: &[(&str, &str)]| {
            mount_command(&rec(opts), "/x".into(), "/s".into(), "/m".into())
                .map(|c| (c.memory, c.cache_size))
        };
        assert_eq!(cmd(&[]).unwrap(), (None, None), "the binary's defaults");
        assert_eq!(
            cmd(&[("memory", "1G"), ("cache-size", "64M")]).unwrap(),
            (Some(1 << 30), Some(64 << 20))
        );
        // Made before budgets with the old default cache: the default budget's share (40M).
        assert_eq!(
            cmd(&[("cache-size", "256M")]).unwrap(),
            (None, Some(40 << 20))
        );
        // Edited by hand since: refused, with the accepted range.
        let e = cmd(&[("memory", "1M")]).unwrap_err().to_string();
        assert!(e.contains("64M to 64G"), "{e}");
    }

    #[test]
    fn names() {
        assert!(valid_name("appdata") && valid_name("a") && valid_name("x_y.z-1"));
        assert!(
            !valid_name("") && !valid_name(".hidden") && !valid_name("a/b") && !valid_name("-x")
        );
    }
}
