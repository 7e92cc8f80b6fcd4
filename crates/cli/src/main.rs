//! The `sealvol` command line. Errors reach the user here, with their causes, as one message
//! that says what failed and what to do.

mod backup;
mod cli;
mod keys;
mod mount;
mod progress;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("SEALVOL_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,sealvol_plugin=info,fuser=error")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sealvol: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
