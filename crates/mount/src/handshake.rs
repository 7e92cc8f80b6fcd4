//! The line a mount process writes on its standard output once it has either mounted or
//! failed, and its parent's wait for it:
//!
//! ```text
//! READY                 the filesystem is mounted and served
//! ERROR <message>       it could not mount; <message> says why (one line)
//! ```
//!
//! End of file before either means the process died without saying; a parent that waits longer
//! than its bound stops the process.

use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;

pub const READY: &str = "READY";
pub const ERROR_PREFIX: &str = "ERROR ";

/// A reply longer than this is cut: a message, not a stream.
const MAX_LINE: u64 = 64 << 10;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Ready,
    Error(String),
    /// End of file: the process closed its output (exited) without a reply.
    Closed,
    /// Anything else: not a sealvol mount process of this version.
    Other(String),
}

/// One reply line (with or without its newline); an empty read is [`Reply::Closed`].
pub fn parse(line: &str) -> Reply {
    if line.is_empty() {
        return Reply::Closed;
    }
    let line = line.strip_suffix('\n').unwrap_or(line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line == READY {
        return Reply::Ready;
    }
    match line.strip_prefix(ERROR_PREFIX) {
        Some(msg) => Reply::Error(msg.to_string()),
        None => Reply::Other(line.to_string()),
    }
}

/// The mount process: the filesystem is mounted and served.
pub fn report_ready(out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "{READY}")?;
    out.flush()
}

/// The mount process: it could not mount, because of `err` (newlines become spaces, so the
/// message stays one reply).
pub fn report_error(out: &mut impl Write, err: &dyn std::fmt::Display) -> std::io::Result<()> {
    let msg = err.to_string().replace(['\n', '\r'], " ");
    writeln!(out, "{ERROR_PREFIX}{msg}")?;
    out.flush()
}

/// Read one reply from `from`, waiting at most `within`; `None` if none came in time. The
/// reading thread stays blocked until `from` closes (when the process exits or is stopped).
pub fn wait_for_reply<R: Read + Send + 'static>(from: R, within: Duration) -> Option<Reply> {
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("sealvol-ready".into())
        .spawn(move || {
            let mut line = Vec::new();
            let reply = match BufReader::new(from.take(MAX_LINE)).read_until(b'\n', &mut line) {
                Ok(_) => parse(&String::from_utf8_lossy(&line)),
                Err(_) => Reply::Closed,
            };
            let _ = tx.send(reply);
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start a thread to read the mount process's reply");
        return Some(Reply::Closed);
    }
    rx.recv_timeout(within).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::os::unix::net::UnixStream;

    #[test]
    fn replies_parse() {
        assert_eq!(parse("READY\n"), Reply::Ready);
        assert_eq!(parse("READY"), Reply::Ready);
        assert_eq!(parse("READY\r\n"), Reply::Ready);
        assert_eq!(
            parse("ERROR store /s is in use\n"),
            Reply::Error("store /s is in use".into())
        );
        assert_eq!(parse("ERROR \n"), Reply::Error(String::new()));
        assert_eq!(parse(""), Reply::Closed);
        assert_eq!(parse("READY!\n"), Reply::Other("READY!".into()));
        assert_eq!(parse("ERROR\n"), Reply::Other("ERROR".into()));
        assert_eq!(parse("ready\n"), Reply::Other("ready".into()));
    }

    #[test]
    fn what_the_child_writes_the_parent_reads() {
        let mut out = Vec::new();
        report_ready(&mut out).expect("write");
        assert_eq!(out, b"READY\n");
        assert_eq!(
            wait_for_reply(Cursor::new(out), Duration::from_secs(10)),
            Some(Reply::Ready)
        );
        let mut out = Vec::new();
        let err = "opening the store:\nkey file does not open any key slot";
        report_error(&mut out, &err).expect("write");
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1, "one line");
        assert_eq!(
            wait_for_reply(Cursor::new(out), Duration::from_secs(10)),
            Some(Reply::Error(
                "opening the store: key file does not open any key slot".into()
            ))
        );
    }

    #[test]
    fn only_the_first_line_counts() {
        let r = wait_for_reply(
            Cursor::new(b"ERROR no\nREADY\n".to_vec()),
            Duration::from_secs(10),
        );
        assert_eq!(r, Some(Reply::Error("no".into())));
    }

    #[test]
    fn a_process_that_exits_without_a_word_is_closed() {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        drop(theirs);
        assert_eq!(
            wait_for_reply(ours, Duration::from_secs(10)),
            Some(Reply::Closed)
        );
    }

    #[test]
    fn a_silent_process_times_out_and_the_reader_ends_when_it_closes() {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        // The other end stays open and says nothing: no reply within the bound.
        assert_eq!(wait_for_reply(ours, Duration::from_millis(50)), None);
        drop(theirs);
    }

    #[test]
    fn an_endless_line_is_cut() {
        let long = vec![b'x'; 1 << 20];
        match wait_for_reply(Cursor::new(long), Duration::from_secs(10)) {
            Some(Reply::Other(s)) => assert_eq!(s.len() as u64, MAX_LINE),
            other => panic!("unexpected {other:?}"),
        }
    }
}
