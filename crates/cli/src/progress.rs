//! Progress of export, import and verify: a bar on a terminal (bytes, files, rate, ETA), JSON
//! lines with `--json` (one object a line on stdout, at most one progress line a second), and
//! nothing but the summary otherwise.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sealvol_export::{Progress, Summary};

pub(crate) enum Shown {
    Bar(ProgressBar),
    Json {
        last: Cell<Option<Instant>>,
        bytes: Cell<u64>,
        files: Cell<u64>,
        total: Cell<u64>,
        what: RefCell<String>,
    },
    Quiet,
}

pub(crate) struct CliProgress {
    shown: Shown,
    files: Cell<u64>,
    /// Report on stderr: stdout carries the export itself (`export ... -`).
    stderr: bool,
}

/// A line of report, on stdout or (when stdout carries data) stderr.
macro_rules! say {
    ($p:expr, $($t:tt)*) => {
        if $p.stderr { eprintln!($($t)*) } else { println!($($t)*) }
    };
}

impl CliProgress {
    /// A bar if stderr is a terminal and `json` is off; JSON lines with `json`.
    pub(crate) fn new(json: bool) -> CliProgress {
        let shown = if json {
            Shown::Json {
                last: Cell::new(None),
                bytes: Cell::new(0),
                files: Cell::new(0),
                total: Cell::new(0),
                what: RefCell::new(String::new()),
            }
        } else if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::default_bar().template(
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {msg} {binary_bytes_per_sec} ETA {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            Shown::Bar(bar)
        } else {
            Shown::Quiet
        };
        CliProgress {
            shown,
            files: Cell::new(0),
            stderr: false,
        }
    }

    /// Report on stderr, leaving stdout to the data.
    pub(crate) fn on_stderr(mut self) -> CliProgress {
        self.stderr = true;
        self
    }

    fn json_line(&self, force: bool) {
        if let Shown::Json {
            last,
            bytes,
            files,
            total,
            what,
        } = &self.shown
        {
            let due = last
                .get()
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
            if force || due {
                last.set(Some(Instant::now()));
                say!(
                    self,
                    "{}",
                    serde_json::json!({
                        "event": "progress",
                        "what": *what.borrow(),
                        "files": files.get(),
                        "bytes": bytes.get(),
                        "total_bytes": total.get(),
                    })
                );
            }
        }
    }

    /// The summary: a JSON line, or text.
    pub(crate) fn summary(&self, what: &str, s: &Summary) {
        match &self.shown {
            Shown::Json { .. } => {
                let mut v = serde_json::to_value(s).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("event".into(), "summary".into());
                    o.insert("what".into(), what.into());
                }
                say!(self, "{v}");
            }
            _ => {
                for d in &s.damaged {
                    // An entry refused on purpose (an unsafe path or link) is not damage.
                    let label = if d.contains(": refused: ") {
                        "REFUSED"
                    } else {
                        "DAMAGED"
                    };
                    say!(self, "{label} {d}");
                }
                if what == "verify" {
                    say!(self,
                        "verified {} export(s): {} files, {} directories, {} others, {} distinct chunks read and authenticated; {}; {:.1} s",
                        s.seq,
                        s.files,
                        s.dirs,
                        s.others,
                        s.new_chunks,
                        if s.damaged.is_empty() { "no damage found".to_string() } else { format!("{} problem(s)", s.damaged.len()) },
                        s.seconds
                    );
                    return;
                }
                say!(self,
                    "{what}{}: {} files, {} directories, {} others, {} bytes of file data; {} bytes written, {} new chunks, {} already held; {:.1} s",
                    if s.seq > 0 { format!(" {}", s.seq) } else { String::new() },
                    s.files,
                    s.dirs,
                    s.others,
                    s.logical_bytes,
                    s.bytes_written,
                    s.new_chunks,
                    s.reused_chunks,
                    s.seconds
                );
            }
        }
    }
}

impl Progress for CliProgress {
    fn start(&self, what: &str, total_bytes: u64) {
        match &self.shown {
            Shown::Bar(b) => {
                b.set_length(total_bytes);
                b.set_prefix(what.to_string());
            }
            Shown::Json { total, what: w, .. } => {
                total.set(total_bytes);
                *w.borrow_mut() = what.to_string();
                self.json_line(true);
            }
            Shown::Quiet => {}
        }
    }

    fn advance(&self, _path: &str, n: u64) {
        self.files.set(self.files.get() + 1);
        match &self.shown {
            Shown::Bar(b) => {
                b.inc(n);
                b.set_message(format!("{} files", self.files.get()));
            }
            Shown::Json { bytes, files, .. } => {
                bytes.set(bytes.get() + n);
                files.set(self.files.get());
                self.json_line(false);
            }
            Shown::Quiet => {}
        }
    }

    fn damaged(&self, path: &str, why: &str) {
        match &self.shown {
            Shown::Bar(b) => b.println(format!("damaged: {path}: {why}")),
            Shown::Json { .. } => say!(
                self,
                "{}",
                serde_json::json!({"event": "damaged", "path": path, "why": why})
            ),
            Shown::Quiet => {}
        }
    }

    fn finish(&self) {
        match &self.shown {
            Shown::Bar(b) => b.finish_and_clear(),
            Shown::Json { .. } => self.json_line(true),
            Shown::Quiet => {}
        }
    }
}
