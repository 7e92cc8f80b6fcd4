//! Commands and their arguments.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use sealvol_crypto::KdfParams;
use sealvol_volume::volume_admin;
use sealvol_volume::{ChunkSize, CreateOptions, MemoryBudget, MemorySplit, SystemClock, Volume};

use crate::keys::KeyArgs;

#[derive(Parser, Debug)]
#[command(name = "sealvol", version, about = "Encrypted, deduplicated volumes, mounted with FUSE", long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Cmd {
    /// Create a new encrypted store.
    Init {
        #[arg(long, value_name = "DIR")]
        store: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
        /// Chunk size: a power of two from 4K to 4M (suffixes K and M).
        #[arg(long, value_name = "SIZE", default_value_t = ChunkSize::DEFAULT)]
        chunk_size: ChunkSize,
        /// Argon2id memory for the passphrase slot, MiB (at least 8).
        #[arg(long, value_name = "MIB", default_value_t = 64, value_parser = clap::value_parser!(u32).range(8..))]
        kdf_memory_mib: u32,
        /// Argon2id passes for the passphrase slot (at least 1).
        #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
        kdf_iterations: u32,
    },
    /// Mount a store on MOUNTPOINT. Returns once the filesystem is ready, unless --foreground.
    Mount {
        #[arg(long, value_name = "DIR")]
        store: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
        /// Serve in this process until unmounted (SIGTERM or SIGINT unmounts).
        #[arg(long)]
        foreground: bool,
        /// FUSE worker threads. More than cores pays: a request waiting on the store, or a
        /// write-out, does not hold up the next one (docs/benchmarks.md).
        #[arg(long, default_value_t = 8)]
        threads: usize,
        /// Memory this mount may use in all: write buffers, the plaintext cache, RocksDB's
        /// memtables and block cache, and allocator slack (64M to 64G; suffixes K, M, G).
        #[arg(long, value_name = "SIZE", default_value_t = MemoryBudget::DEFAULT)]
        memory: MemoryBudget,
        /// Memory for verified plaintext, so that repeated reads skip the store and the
        /// decryption (0 turns it off). Default and most: its share of --memory (40M of 256M).
        /// Shrinks while the mount is idle or the machine is short of memory.
        #[arg(long, value_name = "SIZE", value_parser = parse_cache_size)]
        cache_size: Option<usize>,
        /// Where the background process writes its log (default: nowhere).
        #[arg(long, value_name = "FILE")]
        log_file: Option<PathBuf>,
        /// Write the volume's totals (as `stats --json`) to FILE every 2 s while mounted.
        #[arg(long, value_name = "FILE")]
        stats_file: Option<PathBuf>,
        mountpoint: PathBuf,
    },
    /// Write out everything and unmount MOUNTPOINT; waits for the mount process to finish.
    Umount {
        /// Seconds to wait for the mount process to finish writing.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        mountpoint: PathBuf,
    },
    /// Serve Docker's volume plugin protocol: `docker volume create --driver sealvol ...`.
    Serve {
        /// The plugin socket Docker finds the driver by (its file name is the driver name).
        #[arg(
            long,
            value_name = "PATH",
            default_value = "/run/docker/plugins/sealvol.sock"
        )]
        socket: PathBuf,
        /// Volume table and stores.
        #[arg(long, value_name = "DIR", default_value = "/var/lib/sealvol")]
        state_dir: PathBuf,
        /// Where volumes are mounted for Docker (default: STATE_DIR/mounts).
        #[arg(long, value_name = "DIR")]
        mount_dir: Option<PathBuf>,
        /// Runtime files: per-volume totals and mount logs (tmpfs).
        #[arg(long, value_name = "DIR", default_value = "/run/sealvol")]
        run_dir: PathBuf,
        /// Key file for volumes created without a key option (32 bytes, mode 0600).
        #[arg(long, value_name = "FILE")]
        default_keyfile: Option<PathBuf>,
    },
    /// Manage key slots.
    Key {
        #[command(subcommand)]
        cmd: KeyCmd,
    },
    /// Totals: files, logical bytes, stored bytes, dedup ratio, chunks.
    Stats {
        #[arg(long, value_name = "DIR")]
        store: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
        #[arg(long)]
        json: bool,
    },
    /// Check the whole store: every record and chunk opens and verifies, the tree, link counts,
    /// reference counts and totals agree. Names damaged files by path; exits 1 on damage.
    Check {
        #[arg(long, value_name = "DIR")]
        store: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
        /// The report as JSON (damage with a stable `kind` each).
        #[arg(long)]
        json: bool,
        /// Also reclaim chunks nothing uses and rewrite reference counts and totals from the
        /// recount. Never changes files or the tree. The store must not be mounted.
        #[arg(long)]
        repair: bool,
    },
    /// Export the volume as an encrypted backup: native (a directory holding a deduplicated,
    /// incremental chain of exports: each run adds only what changed) or tar.age (one file,
    /// restorable with `age -d | tar -x`). A mounted store is exported from a snapshot copy.
    Export(crate::backup::ExportArgs),
    /// Restore an export into a new store (the newest export of a chain, or --export N). Files
    /// whose data is damaged are listed and left out; exits 1 if there were any.
    Import(crate::backup::ImportArgs),
    /// Read and authenticate everything in an export; names damaged files by path; exits 1 on
    /// damage.
    Verify(crate::backup::VerifyArgs),
    /// List the exports in a native export directory, archive or s3://bucket/prefix, with
    /// dates and sizes (no key needed).
    ExportLs {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        s3: crate::backup::S3Args,
        source: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum KeyCmd {
    /// Add a key slot. Authenticate with an existing key; the new one comes from
    /// --new-passphrase-file or --new-keyfile.
    Add {
        #[arg(long, value_name = "DIR")]
        store: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
        #[arg(long, value_name = "FILE", conflicts_with = "new_keyfile")]
        new_passphrase_file: Option<PathBuf>,
        #[arg(long, value_name = "FILE")]
        new_keyfile: Option<PathBuf>,
        #[arg(long, value_name = "MIB", default_value_t = 64, value_parser = clap::value_parser!(u32).range(8..))]
        kdf_memory_mib: u32,
        #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
        kdf_iterations: u32,
    },
    /// Remove key slot N. Authenticate with a key; the last slot cannot be removed.
    Remove {
        #[arg(long, value_name = "DIR")]
        store: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
        #[arg(long, value_name = "N")]
        slot: u32,
    },
    /// List key slots (no secret needed: slots hold no secret in the clear).
    List {
        #[arg(long, value_name = "DIR")]
        store: PathBuf,
    },
}

fn parse_cache_size(s: &str) -> Result<usize, String> {
    let n = sealvol_volume::parse_size(s)
        .ok_or_else(|| format!("{s:?} is not a size (examples: 0, 64M, 1G)"))?;
    usize::try_from(n).map_err(|_| format!("{s} is too large"))
}

fn kdf(memory_mib: u32, iterations: u32) -> KdfParams {
    KdfParams {
        m_cost_kib: memory_mib.saturating_mul(1024),
        t_cost: iterations,
        p_cost: 1,
    }
}

pub(crate) fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Init {
            store,
            key,
            chunk_size,
            kdf_memory_mib,
            kdf_iterations,
        } => {
            // Every argument is checked (by clap) and the secret read before anything is made;
            // a failure after that removes what was made, so a retry starts clean.
            let secret = key.secret(true)?;
            let opts = CreateOptions {
                chunk_size,
                kdf: kdf(kdf_memory_mib, kdf_iterations),
                ..CreateOptions::default()
            };
            let v = sealvol_mount::create_store(&store, &secret, &opts)?;
            println!(
                "created sealvol store {} (volume {}, chunk size {})",
                store.display(),
                v.volume_id_hex(),
                v.chunk_size()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Mount {
            store,
            key,
            foreground,
            threads,
            memory,
            cache_size,
            log_file,
            stats_file,
            mountpoint,
        } => {
            let opts = crate::mount::MountOpts {
                foreground,
                threads,
                memory,
                cache_size,
                log_file: log_file.as_deref(),
                stats_file: stats_file.as_deref(),
            };
            crate::mount::mount(&store, &key, &opts, &mountpoint)
        }
        Cmd::Umount {
            timeout,
            mountpoint,
        } => crate::mount::umount(&mountpoint, timeout),
        Cmd::Key { cmd } => key_cmd(cmd),
        Cmd::Serve {
            socket,
            state_dir,
            mount_dir,
            run_dir,
            default_keyfile,
        } => {
            crate::mount::no_core_dumps();
            if let Some(k) = &default_keyfile {
                sealvol_crypto::read_key_file(k).context("checking --default-keyfile")?;
            }
            let cfg = sealvol_plugin::DriverConfig {
                state_dir,
                mount_dir,
                run_dir,
                exe: std::env::current_exe().context("finding the sealvol executable")?,
                default_keyfile,
                mount_timeout: std::time::Duration::from_secs(90),
            };
            let driver = Arc::new(sealvol_plugin::Driver::start(cfg)?);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(sealvol_plugin::serve(driver, socket.clone()))
                .with_context(|| format!("serving on {}", socket.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Export(a) => crate::backup::export(a),
        Cmd::Import(a) => crate::backup::import(a),
        Cmd::Verify(a) => crate::backup::verify(a),
        Cmd::ExportLs { json, s3, source } => crate::backup::export_ls(&source, &s3, json),
        Cmd::Stats { store, key, json } => {
            let v = open(&store, &key)?;
            let s = v.stats()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!("files:          {}", s.files);
                println!("directories:    {}", s.dirs);
                println!("other nodes:    {}", s.others);
                println!("logical bytes:  {}", s.logical_bytes);
                println!("stored bytes:   {} (sealed chunks)", s.stored_bytes);
                println!("on disk:        {} (whole store)", s.disk_bytes);
                println!("chunks:         {}", s.chunks);
                println!("dedup ratio:    {:.3}", s.dedup_ratio);
                println!("chunk size:     {}", s.chunk_size);
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Check {
            store,
            key,
            json,
            repair,
        } => {
            let v = open(&store, &key)?;
            let r = if repair {
                v.check_and_repair()?
            } else {
                v.check()?
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "checked {} inodes, {} directory entries, {} extents, {} chunks, {} log entries",
                    r.inodes, r.dirents, r.extents, r.chunks, r.log_entries
                );
                for d in &r.damage {
                    let kind = serde_json::to_value(d.kind)?;
                    let kind = kind.as_str().unwrap_or("damage");
                    println!("DAMAGED {}: {} ({kind})", d.path, d.detail);
                }
                if r.reclaimable_chunks > 0 {
                    println!(
                        "{} chunk(s), {} bytes, are used by no file{}",
                        r.reclaimable_chunks,
                        r.reclaimable_bytes,
                        if repair {
                            ""
                        } else {
                            " (check --repair reclaims them)"
                        }
                    );
                }
                if let Some(rep) = &r.repaired {
                    println!(
                        "repaired: {} chunk(s) reclaimed, {} reference count(s) and the totals rewritten",
                        rep.chunks_deleted, rep.refcounts_rewritten
                    );
                }
                if r.is_clean() {
                    println!("no damage found");
                } else {
                    println!("{} problem(s) found", r.damage.len());
                }
            }
            Ok(if r.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

pub(crate) fn open(store: &std::path::Path, key: &KeyArgs) -> Result<Volume> {
    open_within(store, key, &MemoryBudget::DEFAULT.split())
}

/// Open the store with its memory shared out as `memory` says.
pub(crate) fn open_within(
    store: &std::path::Path,
    key: &KeyArgs,
    memory: &MemorySplit,
) -> Result<Volume> {
    let secret = key.secret(false)?;
    Volume::open_within(store, &secret, Arc::new(SystemClock), memory)
        .with_context(|| format!("opening the store {}", store.display()))
}

fn key_cmd(cmd: KeyCmd) -> Result<ExitCode> {
    match cmd {
        KeyCmd::Add {
            store,
            key,
            new_passphrase_file,
            new_keyfile,
            kdf_memory_mib,
            kdf_iterations,
        } => {
            let current = key.secret(false)?;
            let new_args = KeyArgs {
                passphrase_file: new_passphrase_file,
                keyfile: new_keyfile,
                secret_stdin: false,
            };
            if !new_args.given() {
                bail!("say which key to add: --new-passphrase-file FILE or --new-keyfile FILE");
            }
            let new = new_args.secret(false)?;
            let id = volume_admin::add_slot(
                &store,
                &current,
                &new,
                kdf(kdf_memory_mib, kdf_iterations),
            )?;
            println!("added key slot {id}");
        }
        KeyCmd::Remove { store, key, slot } => {
            let current = key.secret(false)?;
            volume_admin::remove_slot(&store, &current, slot)?;
            println!("removed key slot {slot}");
        }
        KeyCmd::List { store } => {
            let h = sealvol_volume::volume_admin::read_header(&store)?;
            println!(
                "volume {}",
                h.volume_id
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            );
            for s in &h.slots {
                match &s.kind {
                    sealvol_crypto::SlotKind::Passphrase { kdf } => println!(
                        "slot {}: passphrase (Argon2id m={} MiB t={} p={})",
                        s.id,
                        kdf.m_cost_kib / 1024,
                        kdf.t_cost,
                        kdf.p_cost
                    ),
                    sealvol_crypto::SlotKind::KeyFile => println!("slot {}: key file", s.id),
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The plugin and `mount` start mount processes through `sealvol_mount::MountCommand`:
    /// its arguments must mean to this parser what it means by them.
    #[test]
    fn mount_command_args_parse_as_a_foreground_mount() {
        let mut c = sealvol_mount::MountCommand::new(
            "/usr/bin/sealvol".into(),
            "/var/lib/sealvol/volumes/v/store".into(),
            "/var/lib/sealvol/mounts/-v".into(),
        );
        c.threads = Some(3);
        c.memory = Some(512 << 20);
        c.cache_size = Some(64 << 20);
        c.stats_file = Some("/run/sealvol/stats/v.json".into());
        let mut argv = vec![std::ffi::OsString::from("sealvol")];
        argv.extend(c.args());
        let cli = Cli::try_parse_from(argv).expect("the mount process's arguments parse");
        let Cmd::Mount {
            store,
            key,
            foreground,
            threads,
            memory,
            cache_size,
            log_file,
            stats_file,
            mountpoint,
        } = cli.cmd
        else {
            panic!("not a mount command");
        };
        assert!(foreground && key.secret_stdin);
        assert_eq!((key.keyfile, key.passphrase_file), (None, None));
        assert_eq!(store, c.store);
        assert_eq!((threads, cache_size), (3, Some(64 << 20)));
        assert_eq!(memory.bytes(), 512 << 20);
        assert_eq!(stats_file, c.stats_file);
        assert_eq!(log_file, None);
        assert_eq!(mountpoint, c.mountpoint);

        // Without the optional ones, the binary's defaults apply.
        let bare = sealvol_mount::MountCommand::new("x".into(), "/s".into(), "/m".into());
        let mut argv = vec![std::ffi::OsString::from("sealvol")];
        argv.extend(bare.args());
        let Cmd::Mount {
            threads,
            memory,
            cache_size,
            stats_file,
            ..
        } = Cli::try_parse_from(argv).expect("parses").cmd
        else {
            panic!("not a mount command");
        };
        assert_eq!(
            (threads, memory, cache_size, stats_file),
            (8, MemoryBudget::DEFAULT, None, None)
        );
    }
}
