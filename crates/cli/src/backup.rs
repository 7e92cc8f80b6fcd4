//! `export`, `import`, `verify` and `export-ls`: the command-line side of sealvol-export.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use sealvol_crypto::{read_passphrase_file, KdfParams, KeyHeader, MasterKey, Secret};
use sealvol_export::chain::{ExportKey, OpenKey, Target};
use sealvol_export::tar_age::{AgeKey, AgeOpen};
use sealvol_store::{Engine, RocksEngine};
use sealvol_volume::{volume_admin, ChunkSize, CreateOptions, MemoryBudget, SystemClock, Volume};

use crate::keys::KeyArgs;
use crate::progress::CliProgress;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// A directory: a deduplicated, incremental chain of encrypted exports (sealvol restores it).
    Native,
    /// One file: a pax tar of the files encrypted with age (`age -d | tar -x` restores it).
    #[value(name = "tar.age")]
    TarAge,
}

/// The backup key options, shared by export, import and verify.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct BackupKeyArgs {
    /// Encrypt to (export) an age X25519 recipient (age1…) as well as the volume's key: the
    /// matching identity alone restores.
    #[arg(
        long,
        value_name = "AGE_PUBKEY",
        conflicts_with = "backup_passphrase_file"
    )]
    pub(crate) recipient: Option<String>,
    /// A backup passphrase (file, mode 0600): it alone restores (native: an Argon2id key slot;
    /// tar.age: age's scrypt passphrase).
    #[arg(long, value_name = "FILE")]
    pub(crate) backup_passphrase_file: Option<PathBuf>,
    /// Open (import, verify) with this age identity file, as `age -i` takes.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["backup_passphrase_file", "recipient"])]
    pub(crate) identity: Option<PathBuf>,
}

impl BackupKeyArgs {
    fn passphrase(&self) -> Result<Option<Secret>> {
        self.backup_passphrase_file
            .as_deref()
            .map(|p| read_passphrase_file(p).context("reading --backup-passphrase-file"))
            .transpose()
    }
}

/// Where an S3 target is and how to reach it. Each flag overrides the standard environment
/// variable named; nothing here is written anywhere.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct S3Args {
    /// S3-compatible endpoint, https://HOST[:PORT] (default: $AWS_ENDPOINT_URL, else AWS).
    /// Requests use path-style addressing. Plain http:// only to this machine, or with
    /// --s3-allow-http.
    #[arg(long, value_name = "URL")]
    pub(crate) s3_endpoint: Option<String>,
    /// Region (default: $AWS_REGION, else us-east-1).
    #[arg(long, value_name = "REGION")]
    pub(crate) s3_region: Option<String>,
    /// Access key id (default: $AWS_ACCESS_KEY_ID).
    #[arg(long, value_name = "ID")]
    pub(crate) s3_access_key_id: Option<String>,
    /// A file (mode 0600) holding the secret access key (default: $AWS_SECRET_ACCESS_KEY).
    #[arg(long, value_name = "FILE")]
    pub(crate) s3_secret_access_key_file: Option<PathBuf>,
    /// Allow a plain http:// endpoint that is not this machine (requests are signed, not
    /// encrypted; the objects themselves are sealed either way).
    #[arg(long)]
    pub(crate) s3_allow_http: bool,
}

impl S3Args {
    /// The object store `target` names, if it is an `s3://` URL.
    fn store(&self, target: &Path) -> Result<Option<Arc<dyn sealvol_objstore::ObjectStore>>> {
        let Some(loc) = target
            .to_str()
            .and_then(sealvol_objstore::S3Location::parse)
        else {
            return Ok(None);
        };
        Ok(Some(self.open(loc?)?))
    }

    /// The bucket and key of one object that `target` names (`s3://BUCKET/DIR/NAME`), if it is
    /// an `s3://` URL.
    fn object(
        &self,
        target: &Path,
    ) -> Result<Option<(Arc<dyn sealvol_objstore::ObjectStore>, String)>> {
        let Some(loc) = target
            .to_str()
            .and_then(sealvol_objstore::S3Location::parse)
        else {
            return Ok(None);
        };
        let Some((dir, key)) = loc?.split_object() else {
            bail!(
                "{} names a bucket, not an object: write s3://BUCKET/NAME.tar.age",
                target.display()
            );
        };
        Ok(Some((self.open(dir)?, key)))
    }

    fn open(
        &self,
        loc: sealvol_objstore::S3Location,
    ) -> Result<Arc<dyn sealvol_objstore::ObjectStore>> {
        let mut cfg = sealvol_objstore::S3Config::from_env();
        if let Some(e) = &self.s3_endpoint {
            cfg.endpoint = Some(e.clone());
        }
        if let Some(r) = &self.s3_region {
            cfg.region = Some(r.clone());
        }
        if let Some(k) = &self.s3_access_key_id {
            cfg.access_key_id = Some(k.clone());
        }
        if let Some(f) = &self.s3_secret_access_key_file {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(f)
                .with_context(|| format!("reading --s3-secret-access-key-file {}", f.display()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                bail!(
                    "--s3-secret-access-key-file {} is readable by others (mode {:o}): chmod 600 it",
                    f.display(),
                    mode & 0o777
                );
            }
            let s = std::fs::read_to_string(f)
                .with_context(|| format!("reading --s3-secret-access-key-file {}", f.display()))?;
            cfg.secret_access_key = Some(s.trim_end_matches(['\n', '\r']).to_string());
        }
        cfg.allow_http = self.s3_allow_http;
        Ok(Arc::new(sealvol_objstore::S3Store::open(loc, &cfg)?))
    }
}

#[derive(Args, Debug)]
pub(crate) struct ExportArgs {
    /// The store to export (mounted or not).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "volume",
        conflicts_with = "volume"
    )]
    pub(crate) store: Option<PathBuf>,
    /// Or a volume of the Docker driver, by name: its store in STATE_DIR/volumes/NAME/store
    /// (give the key file or passphrase file the volume was created with).
    #[arg(long, value_name = "NAME")]
    pub(crate) volume: Option<String>,
    /// The Docker driver's state directory (with --volume).
    #[arg(long, value_name = "DIR", default_value = "/var/lib/sealvol")]
    pub(crate) state_dir: PathBuf,
    #[command(flatten)]
    pub(crate) key: KeyArgs,
    #[command(flatten)]
    pub(crate) backup: BackupKeyArgs,
    #[command(flatten)]
    pub(crate) s3: S3Args,
    #[arg(long, value_enum, default_value = "native")]
    pub(crate) format: Format,
    /// Progress and the summary as JSON lines on stdout.
    #[arg(long)]
    pub(crate) json: bool,
    /// Argon2id memory for a backup passphrase's slot, MiB (native format).
    #[arg(long, value_name = "MIB", default_value_t = 64, value_parser = clap::value_parser!(u32).range(8..))]
    pub(crate) kdf_memory_mib: u32,
    /// A native export to a file or `-`: the previous exports of the chain (its archives, or
    /// an export directory); only what they lack is written. Repeat for several archives.
    /// tar.age: the previous tar.age file (its state is beside it): a layer of what changed.
    #[arg(long, value_name = "PREVIOUS")]
    pub(crate) since: Vec<PathBuf>,
    /// native: a directory or s3://BUCKET/PREFIX (new, empty, or holding earlier exports of
    /// this volume: only what they lack is written), or an archive: a file named *.tar, or `-`
    /// for stdout.
    /// tar.age: a file that does not exist yet, `-` for stdout, or s3://BUCKET/.../NAME.tar.age
    /// (a new object, uploaded in parts and published only once whole).
    pub(crate) target: PathBuf,
}

#[derive(Args, Debug)]
pub(crate) struct ImportArgs {
    /// The new store (absent or empty): it opens with the key options given here.
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "volume",
        conflicts_with = "volume"
    )]
    pub(crate) store: Option<PathBuf>,
    /// Or restore into a Docker volume, by name: one just made with `docker volume create -d
    /// sealvol`, holding no file and used by no container. Give the key file or passphrase
    /// file it was created with; its store is replaced by the restored one.
    #[arg(long, value_name = "NAME")]
    pub(crate) volume: Option<String>,
    /// The Docker driver's state directory (with --volume).
    #[arg(long, value_name = "DIR", default_value = "/var/lib/sealvol")]
    pub(crate) state_dir: PathBuf,
    #[command(flatten)]
    pub(crate) key: KeyArgs,
    #[command(flatten)]
    pub(crate) backup: BackupKeyArgs,
    /// Which export of a native chain (default: the newest; `export-ls` lists them).
    #[arg(long, value_name = "N")]
    pub(crate) export: Option<u64>,
    #[arg(long)]
    pub(crate) json: bool,
    /// tar.age: restore symlinks that point out of the volume (an absolute target, or `..`
    /// above its root) as they are, instead of refusing and listing them (import never follows
    /// a link either way). A native import restores every symlink as it was.
    #[arg(long)]
    pub(crate) keep_outside_symlinks: bool,
    #[command(flatten)]
    pub(crate) s3: S3Args,
    /// A native export directory or s3://BUCKET/PREFIX; or native archives (the first of the chain and each one
    /// made --since it, up to the export to restore); or a tar.age file, or tar.age layers in
    /// order; `-` reads stdin.
    #[arg(required = true)]
    pub(crate) source: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    pub(crate) key: KeyArgs,
    #[command(flatten)]
    pub(crate) backup: BackupKeyArgs,
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) s3: S3Args,
    /// A native export directory or s3://BUCKET/PREFIX, native archives, a tar.age file (or
    /// s3://BUCKET/.../NAME.tar.age), or `-`.
    #[arg(required = true)]
    pub(crate) source: Vec<PathBuf>,
}

/// The volume in `store`, read at one point in time, with its key header and master key. A
/// store in use by a mount is read through a snapshot copy (see [`sealvol_store::snapshot`]).
struct Opened {
    v: Volume,
    header: KeyHeader,
    master: MasterKey,
    /// The snapshot copy to delete when done, if one was made.
    snapshot: Option<sealvol_store::Snapshot>,
}

fn open_store(store: &Path, key: &KeyArgs) -> Result<Opened> {
    let header = volume_admin::read_header(store)?;
    let secret = key.secret(false)?;
    let (master, _) = header
        .unlock(&secret)
        .with_context(|| format!("opening the store {}", store.display()))?;
    let memory = MemoryBudget::DEFAULT.split();
    let db = store.join("db");
    let (engine, snapshot) = match RocksEngine::open(&db, false, &memory.rocks_tuning()) {
        Ok(e) => (e, None),
        Err(sealvol_store::StoreError::Locked { .. }) => {
            // Mounted: copy the database as it stands (hard links to its immutable files, a copy
            // of its log), and read the copy.
            let snap = sealvol_store::Snapshot::take(&db, store).with_context(|| {
                format!("taking a snapshot of the mounted store {}", store.display())
            })?;
            let e = RocksEngine::open(snap.path(), false, &memory.rocks_tuning())
                .with_context(|| format!("opening the snapshot {}", snap.path().display()))?;
            (e, Some(snap))
        }
        Err(e) => return Err(e).with_context(|| format!("opening the store {}", store.display())),
    };
    let v = Volume::open_in(
        Arc::new(engine) as Arc<dyn Engine>,
        &header,
        &master,
        Arc::new(SystemClock),
    )
    .with_context(|| format!("opening the store {}", store.display()))?;
    v.set_cache_size(memory.cache);
    Ok(Opened {
        v,
        header,
        master,
        snapshot,
    })
}

pub(crate) fn export(a: ExportArgs) -> Result<ExitCode> {
    let mut progress = CliProgress::new(a.json);
    if a.target.as_os_str() == "-" {
        progress = progress.on_stderr();
    }
    let pass = a.backup.passphrase()?;
    if a.backup.identity.is_some() {
        bail!("--identity is for import and verify; export takes --recipient AGE_PUBKEY (`age-keygen -y FILE` prints it)");
    }
    let store = match (&a.store, &a.volume) {
        (Some(s), _) => s.clone(),
        (None, Some(name)) => volume_store(&a.state_dir, name)?,
        (None, None) => bail!("say what to export: --store DIR or --volume NAME"),
    };
    let o = open_store(&store, &a.key)?;
    let summary = match a.format {
        Format::Native => {
            let key = match (&pass, &a.backup.recipient) {
                (Some(p), _) => ExportKey::Passphrase(p),
                (None, Some(r)) => ExportKey::Recipient(r),
                (None, None) => ExportKey::Volume,
            };
            let opts = sealvol_export::native::ExportOptions {
                key,
                kdf: KdfParams {
                    m_cost_kib: a.kdf_memory_mib.saturating_mul(1024),
                    ..KdfParams::default()
                },
                held: Default::default(),
            };
            let what = || format!("exporting {} to {}", store.display(), a.target.display());
            if let Some(s3) = a.s3.store(&a.target)? {
                if !a.since.is_empty() {
                    bail!("--since is for a native export to a file or `-`; an s3:// target holds its chain and is incremental by itself");
                }
                sealvol_export::native::export_to(&o.v, &o.header, &o.master, s3, &opts, &progress)
                    .with_context(what)?
            } else if is_archive(&a.target) {
                export_archive(&o, &a.target, opts, &a.since, &progress).with_context(what)?
            } else {
                if !a.since.is_empty() {
                    bail!("--since is for a native export to a file or `-`; a directory target holds its chain and is incremental by itself");
                }
                sealvol_export::native::export(
                    &o.v, &o.header, &o.master, &a.target, &opts, &progress,
                )
                .with_context(what)?
            }
        }
        Format::TarAge => {
            let key = match (&pass, &a.backup.recipient) {
                (Some(p), _) => AgeKey::Passphrase(p),
                (None, Some(r)) => AgeKey::Recipient(r),
                (None, None) => bail!(
                    "tar.age is encrypted with age: give --recipient AGE_PUBKEY or --backup-passphrase-file FILE"
                ),
            };
            if a.since.len() > 1 {
                bail!("a tar.age layer is made --since one export: the previous tar.age file");
            }
            let what = || format!("exporting {} to {}", store.display(), a.target.display());
            if let Some((bucket, name)) = a.s3.object(&a.target)? {
                if !is_tar_age_name(&a.target) {
                    bail!("a tar.age object's name ends in .tar.age (import tells it from a native export by that): write s3://BUCKET/.../NAME.tar.age");
                }
                if !a.since.is_empty() {
                    bail!("a tar.age layer (--since) goes to a file, where its state is kept beside it; to s3:// a tar.age export is whole (or export natively to s3://, which is incremental by itself)");
                }
                export_tar_age_object(&o, bucket.as_ref(), &name, &key, &progress)
                    .with_context(what)?
            } else {
                let layering = sealvol_export::tar_age::Layering {
                    master: &o.master,
                    since: a.since.first().map(PathBuf::as_path),
                };
                sealvol_export::tar_age::export_file(
                    &o.v,
                    &a.target,
                    &key,
                    Some(&layering),
                    &progress,
                )
                .with_context(what)?
            }
        }
    };
    drop(o.v);
    drop(o.snapshot);
    progress.summary("export", &summary);
    Ok(ExitCode::SUCCESS)
}

/// A whole tar.age export streamed into a new object `name` of `bucket` (a multipart upload,
/// published only once complete; abandoned on any error, so no partial object is ever seen).
fn export_tar_age_object(
    o: &Opened,
    bucket: &dyn sealvol_objstore::ObjectStore,
    name: &str,
    key: &AgeKey<'_>,
    progress: &CliProgress,
) -> Result<sealvol_export::Summary> {
    if bucket.head(name)?.is_some() {
        bail!(
            "{}/{name} exists; a tar.age export writes a new object (delete it, or name another)",
            bucket.describe()
        );
    }
    let mut out = std::io::BufWriter::with_capacity(1 << 20, bucket.put_writer(name)?);
    let summary = sealvol_export::tar_age::export(&o.v, &mut out, key, progress)?;
    let writer = out
        .into_inner()
        .map_err(|e| anyhow::anyhow!("writing {}/{name}: {}", bucket.describe(), e.error()))?;
    writer.finish()?;
    Ok(summary)
}

/// A native export goes to a file (an archive) for `-` or a name ending in `.tar`; to a
/// directory otherwise.
fn is_archive(target: &Path) -> bool {
    target.as_os_str() == "-" || target.extension().is_some_and(|e| e == "tar")
}

/// A native export as an archive, into a file (appearing only once complete) or stdout.
fn export_archive(
    o: &Opened,
    target: &Path,
    opts: sealvol_export::native::ExportOptions<'_>,
    since: &[PathBuf],
    progress: &CliProgress,
) -> Result<sealvol_export::Summary> {
    use sealvol_export::archive::{export_archive, ScratchDir};
    if target.as_os_str() == "-" {
        let scratch = ScratchDir::new(None, "export")?;
        let out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
        return Ok(export_archive(
            &o.v, &o.header, &o.master, out, opts, since, &scratch, progress,
        )?);
    }
    if target.exists() {
        bail!(
            "{} exists; an archive export writes a new file (remove it, or name another)",
            target.display()
        );
    }
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let scratch = ScratchDir::new(Some(&parent), "export")?;
    let tmp = scratch.path().join("archive.tar");
    let f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let s = export_archive(
        &o.v,
        &o.header,
        &o.master,
        std::io::BufWriter::with_capacity(1 << 20, &f),
        opts,
        since,
        &scratch,
        progress,
    )?;
    f.sync_all()
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, target)
        .with_context(|| format!("moving the archive to {}", target.display()))?;
    Ok(s)
}

/// What import and verify read.
enum Source {
    /// A native export directory (with the scratch directory holding it, if it was unpacked
    /// from archives).
    Native(PathBuf, Option<sealvol_export::archive::ScratchDir>),
    /// A native export in an object store (an S3 bucket).
    Remote(Arc<dyn sealvol_objstore::ObjectStore>),
    /// tar.age files (a full export, then layers in order), not yet decrypted.
    TarAge(Vec<(Box<dyn std::io::Read>, PathBuf)>),
}

/// Open what `sources` name: one native export directory; one tar.age (file or `-`); or
/// native archives (files or `-`), unpacked into a scratch directory under `scratch_parent`.
fn open_sources(sources: &[PathBuf], s3: &S3Args, scratch_parent: Option<&Path>) -> Result<Source> {
    use std::io::Read;
    if let [one] = sources {
        if one.is_dir() {
            return Ok(Source::Native(one.clone(), None));
        }
        if is_tar_age_name(one) {
            if let Some((bucket, name)) = s3.object(one)? {
                let r = sealvol_objstore::ObjectReader::open(bucket, &name)?;
                return Ok(Source::TarAge(vec![(Box::new(r), one.clone())]));
            }
        }
        if let Some(store) = s3.store(one)? {
            return Ok(Source::Remote(store));
        }
    }
    if let Some(s) = sources
        .iter()
        .find(|s| s.to_str().is_some_and(|s| s.starts_with("s3://")))
    {
        bail!("{} is an export in S3: name it alone", s.display());
    }
    let mut opened = Vec::new();
    for src in sources {
        if src.is_dir() {
            bail!("{} is an export directory: name it alone (archives restore together, a directory on its own)", src.display());
        }
        let mut r = sealvol_export::tar_age::source_reader(src)?;
        let mut head = vec![0u8; 32];
        let mut got = 0;
        while got < head.len() {
            match r.read(&mut head[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).with_context(|| format!("reading {}", src.display())),
            }
        }
        head.truncate(got);
        let age = sealvol_export::tar_age::is_age(&head);
        let r: Box<dyn Read> = Box::new(std::io::Cursor::new(head).chain(r));
        opened.push((src.clone(), age, r));
    }
    if opened.iter().any(|(_, age, _)| *age) {
        if !opened.iter().all(|(_, age, _)| *age) {
            bail!("tar.age files and native archives do not restore together: name one kind");
        }
        return Ok(Source::TarAge(
            opened.into_iter().map(|(src, _, r)| (r, src)).collect(),
        ));
    }
    let scratch = sealvol_export::archive::ScratchDir::new(scratch_parent, "import")?;
    for (src, _, r) in opened {
        sealvol_export::archive::unpack(r, &src, scratch.path(), None)?;
    }
    Ok(Source::Native(scratch.path().to_path_buf(), Some(scratch)))
}

/// An `s3://` source or target whose name ends in `.tar.age` is one tar.age object; any other
/// is the prefix of a native export.
fn is_tar_age_name(p: &Path) -> bool {
    p.to_str().is_some_and(|s| s.ends_with(".tar.age"))
}

/// The store of Docker volume `name` in the driver's state directory `state_dir`.
fn volume_store(state_dir: &Path, name: &str) -> Result<PathBuf> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        bail!("{name:?} is not a volume name");
    }
    let s = state_dir.join("volumes").join(name).join("store");
    if !s.exists() {
        bail!(
            "the Docker driver has no volume {name:?} in {} (`docker volume ls` lists them; --state-dir names another state directory)",
            state_dir.display()
        );
    }
    Ok(s)
}

/// A Docker volume that an import will fill: checked to open with the import's key and to
/// hold no file, then locked as a mount locks it, so that no mount starts on it until its
/// store is replaced.
struct VolumeToFill {
    name: String,
    store: PathBuf,
    /// The store's database lock file, locked (`fcntl`, as RocksDB locks it).
    lock: std::fs::File,
}

impl VolumeToFill {
    fn claim(state_dir: &Path, name: &str, secret: &Secret) -> Result<VolumeToFill> {
        let store = volume_store(state_dir, name)?;
        let header = volume_admin::read_header(&store)?;
        let (master, _) = header.unlock(secret).with_context(|| {
            format!("the key given does not open volume {name:?}: give the key file or passphrase file it was created with")
        })?;
        let mounted = || {
            anyhow::anyhow!(
                "volume {name:?} is mounted (a container uses it): stop its containers, then import"
            )
        };
        let opening = || format!("opening volume {name:?} ({})", store.display());
        let db = store.join("db");
        let memory = MemoryBudget::DEFAULT.split();
        let engine = match RocksEngine::open(&db, false, &memory.rocks_tuning()) {
            Ok(e) => Arc::new(e),
            Err(sealvol_store::StoreError::Locked { .. }) => return Err(mounted()),
            Err(e) => return Err(e).with_context(opening),
        };
        let v = Volume::open_in(
            engine.clone() as Arc<dyn Engine>,
            &header,
            &master,
            Arc::new(SystemClock),
        )
        .with_context(opening)?;
        // "." and ".." only.
        let empty = v.readdir(sealvol_volume::ROOT_INO, 0, 3)?.len() <= 2;
        v.close().with_context(opening)?;
        drop(v);
        // RocksDB is closed before the lock is taken here: POSIX locks belong to the process,
        // and its closing the lock file would drop ours.
        match Arc::try_unwrap(engine) {
            Ok(e) => drop(e),
            Err(_) => {
                bail!("volume {name:?} is still open in this process after its check; report this")
            }
        }
        if !empty {
            bail!(
                "volume {name:?} holds files: import restores into a new, empty volume (`docker volume create -d sealvol ...` makes one)"
            );
        }
        let lock_file = db.join("LOCK");
        let lock = std::fs::File::options()
            .read(true)
            .write(true)
            .open(&lock_file)
            .with_context(|| format!("opening {}", lock_file.display()))?;
        rustix::fs::fcntl_lock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|_| mounted())?;
        Ok(VolumeToFill {
            name: name.to_string(),
            store,
            lock,
        })
    }

    /// Where the restored store is made, beside the volume's.
    fn staging(&self) -> PathBuf {
        self.store.with_file_name("store.import")
    }

    /// Put the restored store in place of the volume's empty one, which is deleted.
    fn replace_with_staged(self) -> Result<()> {
        let old = self.store.with_file_name("store.replaced");
        let what = || {
            format!(
                "putting the restored store in place in volume {:?} ({})",
                self.name,
                self.store.display()
            )
        };
        // Still locked: no mount starts on the old store while it is moved.
        std::fs::rename(&self.store, &old).with_context(what)?;
        if let Err(e) = std::fs::rename(self.staging(), &self.store) {
            let _ = std::fs::rename(&old, &self.store);
            return Err(e).with_context(what);
        }
        if let Some(dir) = self.store.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .with_context(what)?;
        }
        drop(self.lock);
        std::fs::remove_dir_all(&old).with_context(|| {
            format!(
                "removing the volume's former, empty store {}: delete it by hand",
                old.display()
            )
        })
    }
}

pub(crate) fn import(a: ImportArgs) -> Result<ExitCode> {
    // Chunk buffers of 128 KiB and more, by the thousand: from the arenas, not a fresh mapping
    // each (6% off an import of the benchmark's tree, docs/benchmarks.md).
    sealvol_sys::keep_large_buffers(8 << 20, 64 << 20);
    let progress = CliProgress::new(a.json);
    // The new store's key (and, without a backup key, the export's).
    let secret = a.key.secret(false)?;
    let (store, volume) = match (&a.store, &a.volume) {
        (Some(s), _) => {
            if std::fs::read_dir(s).is_ok_and(|mut d| d.next().is_some()) {
                bail!(
                    "{} is not empty: import makes a new store; name a new or empty directory",
                    s.display()
                );
            }
            (s.clone(), None)
        }
        (None, Some(name)) => {
            let fill = VolumeToFill::claim(&a.state_dir, name, &secret)?;
            let staging = fill.staging();
            // What an import that was killed left.
            if staging.exists() {
                std::fs::remove_dir_all(&staging).with_context(|| {
                    format!("removing {} (left by an earlier import)", staging.display())
                })?;
            }
            (staging, Some(fill))
        }
        (None, None) => bail!("say where to restore: --store NEWDIR or --volume NAME"),
    };
    let pass = a.backup.passphrase()?;
    let scratch_parent = store
        .parent()
        .filter(|p| !p.as_os_str().is_empty() && p.is_dir())
        .map(Path::to_path_buf);
    let summary = match open_sources(&a.source, &a.s3, scratch_parent.as_deref())? {
        src @ (Source::Native(..) | Source::Remote(_)) => {
            // The source is opened (and the key checked) before anything is made.
            let key = match (&pass, &a.backup.identity) {
                (Some(p), _) => OpenKey::Passphrase(p),
                (None, Some(i)) => OpenKey::Identity(i),
                (None, None) => OpenKey::Volume(&secret),
            };
            let (t, _scratch) = open_target(src, &key).with_context(|| source_name(&a.source))?;
            let (m, problems) = sealvol_export::restore::pick(&t, a.export)?;
            let opts = CreateOptions {
                chunk_size: ChunkSize::new(m.chunk_size as u64).unwrap_or(ChunkSize::DEFAULT),
                ..CreateOptions::default()
            };
            let mut s = into_new_store(&store, &secret, &opts, |v| {
                sealvol_export::restore::restore(&t, &m, v, &progress)
            })?;
            s.damaged.splice(0..0, problems);
            s
        }
        Source::TarAge(files) => {
            if a.export.is_some() {
                bail!("--export N names an export of a native chain; for tar.age layers, name the files up to the one to restore");
            }
            // The key is checked on every age header before the store is made.
            let key = age_key(&pass, &a.backup)?;
            let mut inputs = Vec::new();
            for (r, src) in files {
                inputs.push(sealvol_export::tar_age::open_reader(r, &src, &key)?);
            }
            into_new_store(&store, &secret, &CreateOptions::default(), |v| {
                let outside = match a.keep_outside_symlinks {
                    true => sealvol_export::tar_age::OutsideSymlinks::Keep,
                    false => sealvol_export::tar_age::OutsideSymlinks::Refuse,
                };
                sealvol_export::tar_age::import_layers(inputs, v, outside, &progress)
            })?
        }
    };
    let restored_into = match volume {
        Some(fill) => {
            let shown = format!("volume {:?}", fill.name);
            fill.replace_with_staged()?;
            shown
        }
        None => format!("store {}", store.display()),
    };
    progress.summary("import", &summary);
    if !summary.damaged.is_empty() {
        eprintln!(
            "sealvol: {} problem(s): the files named above were not restored; every other file was ({restored_into})",
            summary.damaged.len(),
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// The native export a source names, opened with `key` (and the scratch directory to keep
/// while it is read).
fn open_target(
    src: Source,
    key: &OpenKey<'_>,
) -> Result<(Target, Option<sealvol_export::archive::ScratchDir>)> {
    Ok(match src {
        Source::Native(dir, scratch) => (Target::open(&dir, key)?, scratch),
        Source::Remote(store) => (Target::open_store(store, key)?, None),
        Source::TarAge(_) => bail!("a tar.age export is not a native export"),
    })
}

fn source_name(sources: &[PathBuf]) -> String {
    let names: Vec<String> = sources.iter().map(|p| p.display().to_string()).collect();
    format!("opening {}", names.join(" "))
}

fn age_key<'a>(pass: &'a Option<Secret>, b: &'a BackupKeyArgs) -> Result<AgeOpen<'a>> {
    Ok(match (pass, &b.identity) {
        (Some(p), _) => AgeOpen::Passphrase(p),
        (None, Some(i)) => AgeOpen::Identity(i),
        (None, None) => bail!(
            "a tar.age export opens with its age identity (--identity FILE) or passphrase (--backup-passphrase-file FILE)"
        ),
    })
}

/// Create a store in `dir` and fill it with `fill`; if anything fails (a full disk, a write
/// error), what was made is removed and the error says so.
fn into_new_store(
    dir: &Path,
    secret: &Secret,
    opts: &CreateOptions,
    fill: impl FnOnce(&Volume) -> sealvol_export::Result<sealvol_export::Summary>,
) -> Result<sealvol_export::Summary> {
    let r = sealvol_mount::remove_on_failure(dir, || {
        // Until the end: a store whose import was killed is refused, not taken for a restore.
        volume_admin::mark_incomplete(
            dir,
            &format!(
                "an import into it did not finish (it was interrupted); delete {} and run the import again",
                dir.display()
            ),
        )?;
        let v = Volume::create(dir, secret, opts, Arc::new(SystemClock)).map_err(|e| {
            anyhow::anyhow!(e).context(format!("creating the store {}", dir.display()))
        })?;
        let s = fill(&v).map_err(|e| {
            let full = e.is_no_space();
            let e = anyhow::anyhow!(e);
            if full {
                e.context("the disk of the new store is full")
            } else {
                e
            }
        })?;
        v.close().map_err(anyhow::Error::from)?;
        volume_admin::mark_complete(dir)?;
        Ok::<_, anyhow::Error>(s)
    });
    match r {
        Ok(s) => Ok(s),
        Err(sealvol_mount::Cleanup::Failed(e)) => Err(e.context(format!(
            "importing into {}: the partial store was removed; fix the cause and run import again",
            dir.display()
        ))),
        Err(sealvol_mount::Cleanup::Incomplete {
            cause,
            leftover,
            source,
        }) => Err(cause.context(format!(
            "importing into {}; removing the partial store failed too ({}: {source}): delete it by hand",
            dir.display(),
            leftover.display()
        ))),
    }
}

pub(crate) fn verify(a: VerifyArgs) -> Result<ExitCode> {
    let progress = CliProgress::new(a.json);
    let pass = a.backup.passphrase()?;
    let summary = match open_sources(&a.source, &a.s3, None)? {
        src @ (Source::Native(..) | Source::Remote(_)) => {
            let vol_secret;
            let key = match (&pass, &a.backup.identity) {
                (Some(p), _) => OpenKey::Passphrase(p),
                (None, Some(i)) => OpenKey::Identity(i),
                (None, None) => {
                    vol_secret = a.key.secret(false)?;
                    OpenKey::Volume(&vol_secret)
                }
            };
            let (t, _scratch) = open_target(src, &key).with_context(|| source_name(&a.source))?;
            sealvol_export::restore::verify(&t, &progress)?
        }
        Source::TarAge(files) => {
            let key = age_key(&pass, &a.backup)?;
            let mut total = sealvol_export::Summary::default();
            for (r, src) in files {
                let input = sealvol_export::tar_age::open_reader(r, &src, &key)?;
                let s = sealvol_export::tar_age::verify(input, &progress)?;
                total.seq += 1;
                total.files += s.files;
                total.dirs += s.dirs;
                total.others += s.others;
                total.logical_bytes += s.logical_bytes;
                total.seconds += s.seconds;
                total.damaged.extend(
                    s.damaged
                        .into_iter()
                        .map(|d| format!("{}: {d}", src.display())),
                );
            }
            total
        }
    };
    progress.summary("verify", &summary);
    Ok(if summary.damaged.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub(crate) fn export_ls(source: &Path, s3: &S3Args, json: bool) -> Result<ExitCode> {
    let l = if source.is_dir() {
        sealvol_export::chain::list(source)?
    } else if let Some(store) = s3.store(source)? {
        sealvol_export::chain::list_store(store.as_ref())?
    } else {
        // An archive: its chain files unpacked, its objects only counted.
        let scratch = sealvol_export::archive::ScratchDir::new(None, "ls")?;
        let mut held = std::collections::HashSet::new();
        let r = sealvol_export::tar_age::source_reader(source)?;
        let bytes = sealvol_export::archive::unpack(r, source, scratch.path(), Some(&mut held))?;
        let mut l = sealvol_export::chain::list(scratch.path())?;
        l.objects = held.len() as u64;
        l.object_bytes = bytes;
        l
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&l)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "chain {} of volume {} (backup key: {:?}); {} chunk objects, {} bytes",
        l.chain, l.volume, l.backup, l.objects, l.object_bytes
    );
    println!(
        "{:>6}  {:<20}  {:>12}  {:>10}",
        "export", "written (UTC)", "metadata", "manifest"
    );
    for e in &l.exports {
        println!(
            "{:>6}  {:<20}  {:>12}  {:>10}",
            e.seq,
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(e.written_unix)
            ),
            e.meta_bytes,
            e.manifest_bytes
        );
    }
    println!("(dates and sizes from the files; `sealvol verify` authenticates the chain)");
    Ok(ExitCode::SUCCESS)
}
