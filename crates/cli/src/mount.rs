//! `sealvol mount` and `sealvol umount`.
//!
//! Without --foreground, `mount` starts a copy of itself in the background with the secret on a
//! pipe (never on its command line), and returns when that process reports the filesystem ready
//! or reports why it could not mount. The mount process writes `mount.pid` in the store
//! directory so `umount` can wait until every buffered write is on disk. How a mount process is
//! started, watched and stopped, and its background tasks, live in `sealvol-mount`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use sealvol_fuse::SealFs;
use sealvol_mount::pidfile::PidFile;
use sealvol_mount::{
    handshake, mountinfo, publish_stats, unmount_and_wait, Housekeeping, HousekeepingConfig,
    MountCommand, UnmountMode,
};
use sealvol_volume::{MemoryBudget, MemorySplit};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::keys::KeyArgs;

/// How long `mount` waits for the background process to mount (opening a store with a
/// passphrase runs Argon2id; a store left by a crash replays its log first).
const READY_WITHIN: Duration = Duration::from_secs(300);

/// glibc malloc arenas of a mount process (see `serve_here`).
const MALLOC_ARENAS: u32 = 2;

pub(crate) struct MountOpts<'a> {
    pub(crate) foreground: bool,
    pub(crate) threads: usize,
    /// The mount's memory budget.
    pub(crate) memory: MemoryBudget,
    /// The plaintext cache's budget in bytes, if not its share of `memory`.
    pub(crate) cache_size: Option<usize>,
    pub(crate) log_file: Option<&'a Path>,
    pub(crate) stats_file: Option<&'a Path>,
}

pub(crate) fn mount(
    store: &Path,
    key: &KeyArgs,
    opts: &MountOpts<'_>,
    mountpoint: &Path,
) -> Result<ExitCode> {
    if opts.foreground {
        // In the background child, report failures on the ready pipe too.
        let notify = key.secret_stdin;
        let r = serve_here(store, key, opts, mountpoint, notify);
        if let (true, Err(e)) = (notify, &r) {
            // The parent is waiting only until READY: after that it is gone, and a failed write
            // to the closed pipe must not turn an error into a panic.
            let _ = handshake::report_error(&mut std::io::stdout(), &format!("{e:#}"));
            tracing::error!("{e:#}");
        }
        return r;
    }
    let store = usable_paths(store, mountpoint)?;
    // Refused here, before the secret is read and a process started.
    opts.memory_split()?;
    let secret = key.secret(false)?;
    let cmd = MountCommand {
        threads: Some(opts.threads),
        memory: Some(opts.memory.bytes()),
        cache_size: opts.cache_size.map(|c| c as u64),
        stats_file: opts.stats_file.map(Path::to_path_buf),
        log_file: opts.log_file.map(Path::to_path_buf),
        ..MountCommand::new(
            std::env::current_exe().context("finding the sealvol executable")?,
            store.clone(),
            mountpoint.to_path_buf(),
        )
    };
    let process = cmd.spawn(&secret, READY_WITHIN)?;
    println!(
        "mounted {} on {} (process {})",
        store.display(),
        mountpoint.display(),
        process.pid()
    );
    Ok(ExitCode::SUCCESS)
}

impl MountOpts<'_> {
    /// The memory budget's shares, with `--cache-size` if given (refused if it exceeds the
    /// cache's share).
    fn memory_split(&self) -> Result<MemorySplit> {
        let split = self.memory.split();
        Ok(match self.cache_size {
            Some(c) => split
                .with_cache_size(c as u64)
                .context("--cache-size and --memory")?,
            None => split,
        })
    }
}

/// Check the mount point is a directory; the store's canonical path.
fn usable_paths(store: &Path, mountpoint: &Path) -> Result<PathBuf> {
    let md = std::fs::metadata(mountpoint)
        .with_context(|| format!("mount point {} is not usable", mountpoint.display()))?;
    if !md.is_dir() {
        bail!("mount point {} is not a directory", mountpoint.display());
    }
    std::fs::canonicalize(store).with_context(|| format!("store {} is not usable", store.display()))
}

/// `--foreground`: open the store and serve it in this process until unmounted.
fn serve_here(
    store: &Path,
    key: &KeyArgs,
    opts: &MountOpts<'_>,
    mountpoint: &Path,
    notify: bool,
) -> Result<ExitCode> {
    let store = &usable_paths(store, mountpoint)?;
    no_core_dumps();
    // Before the FUSE, RocksDB and write-out threads start: with glibc's default of up to eight
    // arenas per core, each thread's freed buffers stay in its own arena (a 600 MB write left
    // 415 MB resident with the default, 265 MB with two; docs/benchmarks.md, "Memory").
    sealvol_sys::limit_malloc_arenas(MALLOC_ARENAS);
    let memory = opts.memory_split()?;
    let vol = crate::cli::open_within(store, key, &memory)?;
    serve(vol, store, mountpoint, notify, opts, &memory)
}

fn serve(
    vol: sealvol_volume::Volume,
    store: &Path,
    mountpoint: &Path,
    notify: bool,
    opts: &MountOpts<'_>,
    memory: &MemorySplit,
) -> Result<ExitCode> {
    let vol = Arc::new(vol);
    let fs = SealFs::new(vol.clone(), store);
    let notifier = fs.notifier_slot();
    let (requests, writes) = (fs.requests(), fs.writes());
    let cfg = SealFs::config(store, opts.threads);
    // Resolved before mounting: afterwards, resolving it would ask this very filesystem.
    let canonical = std::fs::canonicalize(mountpoint).unwrap_or_else(|_| mountpoint.to_path_buf());
    let mut session = fuser::Session::new(fs, mountpoint, &cfg)
        .with_context(|| format!("mounting FUSE on {}", mountpoint.display()))?;
    let _ = notifier.set(session.notifier());
    set_readahead(&canonical);
    let housekeeping = Housekeeping::for_volume(
        vol.clone(),
        &HousekeepingConfig {
            requests: Some(requests),
            writes: Some(writes),
            ..HousekeepingConfig::new(opts.stats_file.map(Path::to_path_buf), memory)
        },
    )?;
    let pid_file = PidFile::create(store, mountpoint)?;
    let mut unmounter = session.unmount_callable();
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            if let Err(e) = unmounter.unmount() {
                tracing::error!(error = %e, "unmount on signal failed");
            }
        }
    });
    tracing::info!(mountpoint = %mountpoint.display(), "serving");
    if notify {
        handshake::report_ready(&mut std::io::stdout())?;
    }
    let served = session.run();
    // Every background task has finished before the close begins: none runs during or after it.
    housekeeping.stop();
    let synced = vol.close();
    if let Some(p) = opts.stats_file {
        publish_stats(&vol, memory.total, p);
    }
    pid_file.remove();
    served.context("serving FUSE requests")?;
    synced.context("writing out buffered data at unmount")?;
    Ok(ExitCode::SUCCESS)
}

/// No core dumps of this process: it holds the volume's keys, buffered writes and the plaintext
/// cache, and a crash must not write them to a core file. Non-dumpable also keeps other users'
/// processes from ptracing it or reading its `/proc` memory. Only key material is locked against
/// swap (in `sealvol-crypto`, a page or two); the rest of the memory is plaintext no more exposed
/// than the kernel's page cache of the same files (docs/security.md, "Swap").
pub(crate) fn no_core_dumps() {
    use rustix::process::{set_dumpable_behavior, DumpableBehavior};
    if let Err(e) = set_dumpable_behavior(DumpableBehavior::NotDumpable) {
        tracing::warn!(error = %e, "cannot turn core dumps off: a crash may write keys and decrypted data to a core file");
    }
}

/// Set the mount's readahead window ([`sealvol_fuse::READAHEAD_KB`], as `blockdev --setra` does for a disk) through its backing
/// device in sysfs. Needs root; without it the kernel default stays, which only costs speed.
fn set_readahead(mountpoint: &Path) {
    let dev = match mountinfo::entry_at(mountpoint) {
        Ok(Some(entry)) => entry.device,
        _ => return,
    };
    let path = format!("/sys/class/bdi/{dev}/read_ahead_kb");
    if let Err(e) = std::fs::write(&path, sealvol_fuse::READAHEAD_KB.to_string()) {
        tracing::info!(path, error = %e, "could not raise the readahead; sequential reads stay at the kernel default");
    }
}

pub(crate) fn umount(mountpoint: &Path, timeout: u64) -> Result<ExitCode> {
    let mp = std::fs::canonicalize(mountpoint).unwrap_or_else(|_| mountpoint.to_path_buf());
    let Some(store) = mountinfo::sealvol_at(&mp)?.and_then(|e| e.store()) else {
        bail!("{} is not a sealvol mount", mp.display());
    };
    unmount_and_wait(
        &mp,
        &store,
        UnmountMode::Clean,
        Duration::from_secs(timeout),
    )?;
    println!("unmounted {}", mp.display());
    Ok(ExitCode::SUCCESS)
}
