//! Starting a mount process: `sealvol mount --foreground --secret-stdin ...` in its own process
//! group (a signal to its parent, or the parent's exit, does not reach it), the secret on its
//! standard input, and a bounded wait for its [`handshake`](crate::handshake) reply.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sealvol_crypto::secret_file::{frame_secret, unframe_secret, MAX_FRAMED_SECRET};
use sealvol_crypto::Secret;
use zeroize::Zeroizing;

use crate::handshake::{wait_for_reply, Reply};
use crate::MountError;

/// How long to wait for a process that replied, or closed its output, to be reaped.
const REAP_WAIT: Duration = Duration::from_secs(5);

/// What a mount process is asked to do. Its flags are those of `sealvol mount`; the command
/// line's tests parse [`MountCommand::args`] with its own parser, so the two cannot drift.
#[derive(Clone, Debug)]
pub struct MountCommand {
    /// The sealvol binary.
    pub exe: PathBuf,
    pub store: PathBuf,
    pub mountpoint: PathBuf,
    /// FUSE worker threads (`--threads`); the binary's default if `None`.
    pub threads: Option<usize>,
    /// The mount's memory budget in bytes (`--memory`); the default if `None`.
    pub memory: Option<u64>,
    /// The plaintext cache's budget in bytes (`--cache-size`); its share of the memory budget
    /// if `None`.
    pub cache_size: Option<u64>,
    /// Where the process publishes the volume's totals (`--stats-file`).
    pub stats_file: Option<PathBuf>,
    /// The process's standard error (its log), appended to; discarded if `None`.
    pub log_file: Option<PathBuf>,
}

/// A mount process that reported ready. It runs on its own; a thread of ours reaps it when it
/// exits, if we are still running then.
#[derive(Debug)]
pub struct MountProcess {
    pid: u32,
}

impl MountProcess {
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

impl MountCommand {
    pub fn new(exe: PathBuf, store: PathBuf, mountpoint: PathBuf) -> MountCommand {
        MountCommand {
            exe,
            store,
            mountpoint,
            threads: None,
            memory: None,
            cache_size: None,
            stats_file: None,
            log_file: None,
        }
    }

    /// The arguments after the binary's name.
    pub fn args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![
            "mount".into(),
            "--foreground".into(),
            "--secret-stdin".into(),
            "--store".into(),
            self.store.clone().into(),
        ];
        if let Some(t) = self.threads {
            a.extend(["--threads".into(), t.to_string().into()]);
        }
        if let Some(m) = self.memory {
            a.extend(["--memory".into(), m.to_string().into()]);
        }
        if let Some(c) = self.cache_size {
            a.extend(["--cache-size".into(), c.to_string().into()]);
        }
        if let Some(s) = &self.stats_file {
            a.extend(["--stats-file".into(), s.clone().into()]);
        }
        // After `--`: a mount point starting with '-' is still a path.
        a.extend(["--".into(), self.mountpoint.clone().into()]);
        a
    }

    /// Where to look when the process fails without saying why.
    fn hint(&self) -> String {
        match &self.log_file {
            Some(p) => format!("its log is {}", p.display()),
            None => "run `sealvol mount --foreground` with the same options to see why".into(),
        }
    }

    /// Start the process, hand it `secret`, and wait up to `ready_within` for its reply. A
    /// process that does not reply in time is stopped (SIGTERM).
    pub fn spawn(
        &self,
        secret: &Secret,
        ready_within: Duration,
    ) -> Result<MountProcess, MountError> {
        let stderr = match &self.log_file {
            Some(p) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|cause| MountError::Log {
                        path: p.clone(),
                        cause,
                    })?,
            ),
            None => Stdio::null(),
        };
        let mut child = Command::new(&self.exe)
            .args(self.args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .map_err(|cause| MountError::Spawn {
                exe: self.exe.clone(),
                cause,
            })?;
        let pid = child.id();
        let handed = match child.stdin.take() {
            // Dropped at the end of this block: the process sees the end of the secret.
            Some(mut stdin) => stdin.write_all(&frame_secret(secret)),
            None => Err(std::io::Error::other("no pipe to the mount process")),
        };
        let Some(stdout) = child.stdout.take() else {
            stop(&mut child);
            reap_in_background(child);
            return Err(MountError::Handover(std::io::Error::other(
                "no pipe from the mount process",
            )));
        };
        if let Err(e) = handed {
            // It may have failed before reading the secret and said why: prefer its words.
            if let Some(Reply::Error(msg)) = wait_for_reply(stdout, REAP_WAIT) {
                reap_in_background(child);
                return Err(MountError::Reported(msg));
            }
            stop(&mut child);
            reap_in_background(child);
            return Err(MountError::Handover(e));
        }
        match wait_for_reply(stdout, ready_within) {
            Some(Reply::Ready) => {
                reap_in_background(child);
                Ok(MountProcess { pid })
            }
            Some(Reply::Error(msg)) => {
                reap_in_background(child);
                Err(MountError::Reported(msg))
            }
            Some(Reply::Closed) => Err(MountError::Exited {
                status: exit_status(child),
                hint: self.hint(),
            }),
            Some(Reply::Other(line)) => {
                stop(&mut child);
                reap_in_background(child);
                Err(MountError::Protocol(line))
            }
            None => {
                stop(&mut child);
                reap_in_background(child);
                Err(MountError::Timeout {
                    waited: ready_within,
                    hint: self.hint(),
                })
            }
        }
    }
}

/// The mount process's half of the hand-over: the secret its parent framed onto its standard
/// input, read to the end into one buffer reserved up front and never grown (growing would
/// leave copies of the secret in freed memory), bounded by the longest frame.
pub fn receive_secret(from: &mut impl Read) -> Result<Secret, MountError> {
    // One byte more than the largest frame, to notice a longer one.
    let mut buf = Zeroizing::new(vec![0u8; MAX_FRAMED_SECRET + 1]);
    let mut filled = 0;
    while filled < buf.len() {
        match from.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(MountError::ReceiveSecret(e)),
        }
    }
    if filled > MAX_FRAMED_SECRET {
        return Err(MountError::SecretTooLong(MAX_FRAMED_SECRET));
    }
    unframe_secret(&buf[..filled]).ok_or(MountError::BadSecret)
}

/// Ask the process to stop (SIGTERM: before it mounts, that ends it; once mounted, it unmounts).
fn stop(child: &mut Child) {
    let sent = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .map(|pid| rustix::process::kill_process(pid, rustix::process::Signal::TERM));
    if !matches!(sent, Some(Ok(()))) {
        // Could not signal it (gone already, or an odd pid): the hard way.
        let _ = child.kill();
    }
}

/// Wait for the process's end in a thread of its own, so it never lingers as a zombie.
fn reap_in_background(mut child: Child) {
    let spawned = std::thread::Builder::new()
        .name("sealvol-reap".into())
        .spawn(move || {
            let _ = child.wait();
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start a thread to reap the mount process; it stays a zombie when it exits");
    }
}

/// The exit status of a process that closed its output, waited for at most [`REAP_WAIT`].
fn exit_status(mut child: Child) -> String {
    let deadline = std::time::Instant::now() + REAP_WAIT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.to_string(),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Ok(None) => {
                reap_in_background(child);
                return "still running".into();
            }
            Err(e) => return format!("status unknown: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_carry_every_option_and_end_with_the_mount_point() {
        let mut c = MountCommand::new("/bin/sealvol".into(), "/s".into(), "-odd".into());
        assert_eq!(
            c.args(),
            [
                "mount",
                "--foreground",
                "--secret-stdin",
                "--store",
                "/s",
                "--",
                "-odd"
            ]
            .map(OsString::from)
        );
        c.threads = Some(4);
        c.cache_size = Some(1 << 20);
        c.stats_file = Some("/run/x.json".into());
        c.log_file = Some("/run/x.log".into());
        assert_eq!(
            c.args(),
            [
                "mount",
                "--foreground",
                "--secret-stdin",
                "--store",
                "/s",
                "--threads",
                "4",
                "--cache-size",
                "1048576",
                "--stats-file",
                "/run/x.json",
                "--",
                "-odd"
            ]
            .map(OsString::from)
        );
    }

    #[test]
    fn framed_secrets_round_trip_and_are_bounded() {
        use sealvol_crypto::secret_file::MAX_SECRET_FILE;
        let secret = Secret::key_file(&[4; 32]);
        let pipe = frame_secret(&secret).to_vec();
        match receive_secret(&mut pipe.as_slice()).expect("a key") {
            Secret::KeyFile(k) => assert_eq!(k.expose(), &[4; 32]),
            Secret::Passphrase(_) => panic!("kind changed"),
        }
        let longest = [b"P".as_slice(), &[b'x'; MAX_SECRET_FILE]].concat();
        match receive_secret(&mut longest.as_slice()).expect("the longest passphrase") {
            Secret::Passphrase(p) => assert_eq!(p.len(), MAX_SECRET_FILE),
            Secret::KeyFile(_) => panic!("kind changed"),
        }
        let too_long = [longest.as_slice(), b"x"].concat();
        let err = receive_secret(&mut too_long.as_slice())
            .err()
            .expect("too long");
        assert!(err.to_string().contains("longer than"), "{err}");
        assert!(matches!(
            receive_secret(&mut b"K123".as_slice()),
            Err(MountError::BadSecret)
        ));
        assert!(matches!(
            receive_secret(&mut b"".as_slice()),
            Err(MountError::BadSecret)
        ));
    }

    #[test]
    fn a_missing_binary_is_named() {
        let c = MountCommand::new("/nonexistent/sealvol".into(), "/s".into(), "/m".into());
        let secret = Secret::Passphrase(b"a passphrase".to_vec().into());
        let e = c
            .spawn(&secret, Duration::from_secs(1))
            .expect_err("no such binary");
        assert!(matches!(e, MountError::Spawn { .. }), "{e}");
        assert!(e.to_string().contains("/nonexistent/sealvol"), "{e}");
    }
}
