//! `sealvol mount` and `sealvol umount`.
//!
//! Without --foreground, `mount` starts a copy of itself in the background with the secret on a
//! pipe (never on its command line), and returns when that process reports the filesystem ready
//! or reports why it could not mount. The mount process writes `mount.pid` in the store
//! directory so `umount` can wait until every buffered write is on disk.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sealvol_fuse::SealFs;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::keys::{write_framed, KeyArgs};

const PID_FILE: &str = "mount.pid";

pub struct MountOpts<'a> {
    pub foreground: bool,
    pub threads: usize,
    /// The plaintext cache's budget in bytes.
    pub cache_size: usize,
    pub log_file: Option<&'a Path>,
    pub stats_file: Option<&'a Path>,
}

pub fn mount(
    store: &Path,
    key: &KeyArgs,
    opts: &MountOpts<'_>,
    mountpoint: &Path,
) -> Result<ExitCode> {
    let (foreground, threads, log_file) = (opts.foreground, opts.threads, opts.log_file);
    let md = std::fs::metadata(mountpoint)
        .with_context(|| format!("mount point {} is not usable", mountpoint.display()))?;
    if !md.is_dir() {
        bail!("mount point {} is not a directory", mountpoint.display());
    }
    let store = &std::fs::canonicalize(store)
        .with_context(|| format!("store {} is not usable", store.display()))?;
    if foreground {
        protect_memory();
        // In the background child, report failures on the ready pipe too.
        let notify = key.secret_stdin;
        let r = (|| {
            let vol = crate::cli::open(store, key)?;
            vol.set_cache_size(opts.cache_size);
            serve(vol, store, mountpoint, threads, notify, opts)
        })();
        if let (true, Err(e)) = (notify, &r) {
            // The parent is waiting only until READY: after that it is gone, and a failed write
            // to the closed pipe must not turn an error into a panic.
            let _ = writeln!(std::io::stdout(), "ERROR {e:#}");
            tracing::error!("{e:#}");
        }
        return r;
    }
    let secret = key.secret(false)?;
    let exe = std::env::current_exe().context("finding the sealvol executable")?;
    let stderr = match log_file {
        Some(p) => Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("opening log file {}", p.display()))?,
        ),
        None => Stdio::null(),
    };
    let mut cmd = Command::new(exe);
    cmd.arg("mount");
    if let Some(p) = opts.stats_file {
        cmd.arg("--stats-file").arg(p);
    }
    let mut child = cmd
        .arg("--foreground")
        .arg("--secret-stdin")
        .arg("--store")
        .arg(store)
        .arg("--threads")
        .arg(threads.to_string())
        .arg("--cache-size")
        .arg(opts.cache_size.to_string())
        .arg(mountpoint)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .context("starting the background mount process")?;
    {
        let mut stdin = child.stdin.take().context("no pipe to the mount process")?;
        write_framed(&secret, &mut stdin).context("handing the key to the mount process")?;
    }
    let stdout = child
        .stdout
        .take()
        .context("no pipe from the mount process")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let line = line.trim_end();
    if line == "READY" {
        println!(
            "mounted {} on {} (process {})",
            store.display(),
            mountpoint.display(),
            child.id()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let status = child.wait()?;
    match line.strip_prefix("ERROR ") {
        Some(msg) => bail!("{msg}"),
        None => bail!("the mount process exited ({status}) without mounting; run with --foreground to see why"),
    }
}

fn serve(
    vol: sealvol_volume::Volume,
    store: &Path,
    mountpoint: &Path,
    threads: usize,
    notify: bool,
    opts: &MountOpts<'_>,
) -> Result<ExitCode> {
    let vol = Arc::new(vol);
    let stats_file = opts.stats_file;
    if let Some(p) = stats_file {
        spawn_stats_writer(vol.clone(), p.to_path_buf());
    }
    spawn_space_reclaimer(vol.clone());
    spawn_cache_governor(vol.clone(), opts.cache_size);
    let fs = SealFs::new(vol.clone(), store);
    let notifier = fs.notifier_slot();
    let cfg = SealFs::config(store, threads);
    // Resolved before mounting: afterwards, resolving it would ask this very filesystem.
    let canonical = std::fs::canonicalize(mountpoint).unwrap_or_else(|_| mountpoint.to_path_buf());
    let mut session = fuser::Session::new(fs, mountpoint, &cfg)
        .with_context(|| format!("mounting FUSE on {}", mountpoint.display()))?;
    let _ = notifier.set(session.notifier());
    set_readahead(&canonical);
    let pid_path = store.join(PID_FILE);
    std::fs::write(
        &pid_path,
        format!("{}\n{}\n", std::process::id(), mountpoint.display()),
    )
    .with_context(|| format!("writing {}", pid_path.display()))?;
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
        let mut out = std::io::stdout();
        writeln!(out, "READY")?;
        out.flush()?;
    }
    let served = session.run();
    let synced = vol.close();
    if let Some(p) = stats_file {
        write_stats(&vol, p);
    }
    let _ = std::fs::remove_file(&pid_path);
    served.context("serving FUSE requests")?;
    synced.context("writing out buffered data at unmount")?;
    Ok(ExitCode::SUCCESS)
}

/// Every 2 s, the volume's totals as JSON into `path` (written to a temporary file and renamed,
/// so readers never see half a file).
fn spawn_stats_writer(vol: Arc<sealvol_volume::Volume>, path: PathBuf) {
    std::thread::spawn(move || loop {
        write_stats(&vol, &path);
        std::thread::sleep(Duration::from_secs(2));
    });
}

/// While mounted, give back the space of deleted and overwritten data once it piles up.
/// Keep this process's memory off the disk: it holds the volume's keys, buffered writes and the
/// plaintext cache. No core dumps; and out of swap: pages are locked as they are first touched
/// (nothing is reserved up front), only where locking cannot later starve the process
/// (CAP_IPC_LOCK, or no memlock limit: with a limit, allocations past it would fail); elsewhere
/// a warning says what may reach swap.
pub fn protect_memory() {
    use rustix::mm::{mlockall, MlockAllFlags};
    use rustix::process::{set_dumpable_behavior, DumpableBehavior};
    if let Err(e) = set_dumpable_behavior(DumpableBehavior::NotDumpable) {
        tracing::warn!(error = %e, "cannot turn core dumps off: a crash may write keys and decrypted data to a core file");
    }
    let unlimited = rustix::process::getrlimit(rustix::process::Resource::Memlock)
        .current
        .is_none();
    if !unlimited && !has_cap_ipc_lock() {
        tracing::warn!("cannot lock memory (needs CAP_IPC_LOCK or no RLIMIT_MEMLOCK): keys and decrypted data may be written to swap; use encrypted swap or none");
        return;
    }
    let flags = MlockAllFlags::CURRENT | MlockAllFlags::FUTURE | MlockAllFlags::ONFAULT;
    if let Err(e) = mlockall(flags) {
        tracing::warn!(error = %e, "cannot lock memory: keys and decrypted data may be written to swap; use encrypted swap or none");
    }
}

/// CAP_IPC_LOCK (bit 14) in this process's effective capabilities.
fn has_cap_ipc_lock() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 14) != 0)
}

/// The plaintext cache gives memory back while the machine is short of it: when less than an
/// eighth of its memory is available, the cache shrinks to an eighth of its budget (evicting
/// at once); it gets its budget back when a quarter is available again.
fn spawn_cache_governor(vol: Arc<sealvol_volume::Volume>, budget: usize) {
    if budget == 0 {
        return;
    }
    std::thread::spawn(move || {
        let mut short = false;
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let Some((total, available)) = meminfo() else {
                return; // no /proc/meminfo: nothing to go by
            };
            let now_short = if short {
                available < total / 4
            } else {
                available < total / 8
            };
            if now_short != short {
                short = now_short;
                let b = if short { budget / 8 } else { budget };
                tracing::info!(budget = b, available, "plaintext cache budget changed");
                vol.set_cache_size(b);
            }
        }
    });
}

/// (MemTotal, MemAvailable) in bytes.
fn meminfo() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024)
    };
    Some((field("MemTotal:")?, field("MemAvailable:")?))
}

/// Every minute: trim the operation log to its newest entries, and compact the store if it
/// holds much more than its live data.
fn spawn_space_reclaimer(vol: Arc<sealvol_volume::Volume>) {
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_secs(60));
        if let Err(e) = vol.trim_log(vol.log_keep()) {
            tracing::warn!(error = %e, "trimming the operation log failed; retrying in a minute");
        }
        if let Err(e) = vol.reclaim_if_wasteful() {
            tracing::warn!(error = %e, "reclaiming space failed; retrying in a minute");
        }
    });
}

fn write_stats(vol: &sealvol_volume::Volume, path: &Path) {
    let tmp = path.with_extension("tmp");
    if let Ok(s) = vol.stats() {
        if let Ok(json) = serde_json::to_vec(&s) {
            if std::fs::write(&tmp, json).is_ok() {
                let _ = std::fs::rename(&tmp, path);
            }
        }
    }
}

/// The store behind a sealvol mount at `mountpoint`, from the mount table.
fn mounted_store(mountpoint: &Path) -> Result<Option<PathBuf>> {
    Ok(mount_entry(mountpoint)?.and_then(|(_, fstype, source)| {
        if fstype == "fuse" || fstype == "fuse.sealvol" {
            source
                .strip_prefix("sealvol:")
                .map(|s| PathBuf::from(s.replace("\\040", " ")))
        } else {
            None
        }
    }))
}

/// The mount table's entry for `mountpoint` (the last one): device "major:minor", filesystem
/// type, source.
fn mount_entry(mountpoint: &Path) -> Result<Option<(String, String, String)>> {
    let table = std::fs::read_to_string("/proc/self/mountinfo")?;
    let want = mountpoint.to_string_lossy().replace(' ', "\\040");
    let mut found = None;
    for line in table.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if fields.get(4) != Some(&want.as_str()) {
            continue;
        }
        let field = |i: usize| fields.get(i).copied().unwrap_or("").to_string();
        found = Some((field(2), field(sep + 1), field(sep + 2)));
    }
    Ok(found)
}

/// Kernel readahead for the mount, in KiB. The kernel's default for FUSE is 128 KiB, one chunk:
/// sequential reads then come as one 128 KiB request at a time. A larger window lets the kernel
/// keep several 1 MiB requests in flight, opened in parallel while the store waits for the
/// disk (cold 1 GiB read: 128 KiB 389 MB/s, 1 MiB 530-593; then 4 MiB against 1 MiB, 8
/// alternating rounds: 572-645 against 505-620 MB/s; docs/benchmarks.md).
const READAHEAD_KB: u32 = 4096;

/// Set the mount's readahead (as `blockdev --setra` does for a disk) through its backing
/// device in sysfs. Needs root; without it the kernel default stays, which only costs speed.
fn set_readahead(mountpoint: &Path) {
    let dev = match mount_entry(mountpoint) {
        Ok(Some((dev, _, _))) => dev,
        _ => return,
    };
    let path = format!("/sys/class/bdi/{dev}/read_ahead_kb");
    if let Err(e) = std::fs::write(&path, READAHEAD_KB.to_string()) {
        tracing::info!(path, error = %e, "could not raise the readahead; sequential reads stay at the kernel default");
    }
}

pub fn umount(mountpoint: &Path, timeout: u64) -> Result<ExitCode> {
    let mp = std::fs::canonicalize(mountpoint).unwrap_or_else(|_| mountpoint.to_path_buf());
    let Some(store) = mounted_store(&mp)? else {
        bail!("{} is not a sealvol mount", mp.display());
    };
    let pid: Option<u32> = std::fs::read_to_string(store.join(PID_FILE))
        .ok()
        .and_then(|s| s.lines().next().and_then(|l| l.parse().ok()));
    let out = Command::new("fusermount3")
        .arg("-u")
        .arg(&mp)
        .output()
        .context("running fusermount3 (install the fuse3 package)")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("busy") {
            bail!(
                "{} is busy: a process still uses files there; close them (`fuser -vm {}` lists them) and try again",
                mp.display(),
                mp.display()
            );
        }
        bail!("fusermount3 -u {} failed: {}", mp.display(), err.trim());
    }
    if let Some(pid) = pid {
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        let deadline = Instant::now() + Duration::from_secs(timeout);
        while proc_dir.exists() {
            if Instant::now() > deadline {
                bail!(
                    "unmounted, but the mount process {pid} is still writing after {timeout} s; it will finish on its own"
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    println!("unmounted {}", mp.display());
    Ok(ExitCode::SUCCESS)
}
