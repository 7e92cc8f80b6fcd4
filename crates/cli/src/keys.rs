//! Where secrets come from: files, a terminal prompt, or (for the background mount process)
//! a pipe from its parent. Never the command line, never the environment.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use sealvol_crypto::secret_file::passphrase_from_bytes;
use sealvol_crypto::{read_key_file, read_passphrase_file, Secret};
use zeroize::Zeroizing;

#[derive(Args, Debug, Clone, Default)]
pub(crate) struct KeyArgs {
    /// File holding the passphrase (mode 0600; one trailing newline is ignored).
    #[arg(long, value_name = "FILE", conflicts_with = "keyfile")]
    pub(crate) passphrase_file: Option<PathBuf>,
    /// File holding exactly 32 random bytes (mode 0600).
    #[arg(long, value_name = "FILE")]
    pub(crate) keyfile: Option<PathBuf>,
    /// Read the secret from standard input in sealvol's internal framing (used by `mount` to
    /// hand the secret to its background process).
    #[arg(long, hide = true)]
    pub(crate) secret_stdin: bool,
}

impl KeyArgs {
    pub(crate) fn given(&self) -> bool {
        self.passphrase_file.is_some() || self.keyfile.is_some() || self.secret_stdin
    }

    /// The secret, from a file, the internal pipe or a terminal prompt.
    pub(crate) fn secret(&self, confirm: bool) -> Result<Secret> {
        if let Some(p) = &self.passphrase_file {
            return Ok(read_passphrase_file(p)?);
        }
        if let Some(k) = &self.keyfile {
            return Ok(read_key_file(k)?);
        }
        if self.secret_stdin {
            return Ok(sealvol_mount::receive_secret(&mut std::io::stdin())?);
        }
        if !std::io::stdin().is_terminal() {
            bail!(
                "no key given: pass --passphrase-file FILE or --keyfile FILE (or run in a terminal to be asked for a passphrase)"
            );
        }
        let p = prompt_hidden("sealvol passphrase: ").context("reading the passphrase")?;
        if confirm {
            let again = prompt_hidden("repeat passphrase: ").context("reading the passphrase")?;
            if *again != *p {
                bail!("the two passphrases differ; nothing was changed");
            }
        }
        Ok(passphrase_from_bytes(p.to_vec(), Path::new("<terminal>"))?)
    }
}

/// Ask for a secret on the controlling terminal. Echo is switched off *before* the prompt is
/// written, so an answer typed or pasted as soon as the prompt appears is never shown, and
/// switched back on on every path out. The terminal reads raw keys meanwhile, so that Ctrl-C
/// (which would kill the process before it could switch echo back on) is one of the keys
/// handled here: it restores the terminal and fails with `Interrupted`. Erase and kill (Ctrl-U)
/// edit the line; Ctrl-D on an empty line ends it. The line lives in zeroized memory.
const PROMPT_MAX: usize = 4096;

fn prompt_hidden(prompt: &str) -> std::io::Result<Zeroizing<Vec<u8>>> {
    use rustix::termios::{
        tcgetattr, tcsetattr, LocalModes, OptionalActions, SpecialCodeIndex as C, Termios,
    };
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")?;
    let saved = tcgetattr(&tty)?;
    struct Restore<'a>(&'a std::fs::File, Termios);
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            let _ = tcsetattr(self.0, OptionalActions::Now, &self.1);
        }
    }
    let key = |i: C| saved.special_codes[i];
    let (intr, erase, kill, eof) = (key(C::VINTR), key(C::VERASE), key(C::VKILL), key(C::VEOF));
    let mut raw = saved.clone();
    raw.local_modes
        .remove(LocalModes::ECHO | LocalModes::ICANON | LocalModes::ISIG);
    raw.special_codes[C::VMIN] = 1;
    raw.special_codes[C::VTIME] = 0;
    tcsetattr(&tty, OptionalActions::Now, &raw)?;
    let restore = Restore(&tty, saved.clone());
    (&tty).write_all(prompt.as_bytes())?;
    (&tty).flush()?;
    // Room enough that typing never reallocates (which would leave a copy behind); a longer
    // answer is refused rather than let the buffer grow.
    let mut line = Zeroizing::new(Vec::with_capacity(PROMPT_MAX));
    let mut byte = [0u8; 1];
    loop {
        if (&tty).read(&mut byte)? == 0 {
            break;
        }
        match byte[0] {
            b'\n' | b'\r' => break,
            b if b == intr => {
                drop(restore);
                let _ = (&tty).write_all(b"^C\n");
                return Err(std::io::Error::new(
                    std::io::ErrorKind::Interrupted,
                    "interrupted at the passphrase prompt; nothing was changed",
                ));
            }
            b if b == erase || b == 0x7f || b == 0x08 => {
                if let Some(last) = line.last_mut() {
                    *last = 0;
                }
                line.pop();
            }
            b if b == kill => zeroize::Zeroize::zeroize(&mut *line),
            b if b == eof && line.is_empty() => break,
            _ if line.len() == PROMPT_MAX => {
                drop(restore);
                let _ = (&tty).write_all(b"\n");
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "a typed passphrase may be at most {PROMPT_MAX} bytes; use --passphrase-file for a longer one"
                    ),
                ));
            }
            b => line.push(b),
        }
    }
    drop(restore);
    (&tty).write_all(b"\n")?;
    Ok(line)
}
