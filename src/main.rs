//! The `minitls` binary: parse the command line, run it, turn failures into one line and an
//! exit status. Everything else lives in `cli` (front end) and the `minitls` library.

mod cli;

use std::process::ExitCode;

use clap::Parser;

use cli::error::{self, CliError};

fn main() -> ExitCode {
    // No Rust panic text or backtrace ever reaches a user: one line asking for a report.
    error::install_panic_hook();
    // Usage errors are clap's own (exit status 2, with the usage line and a pointer to --help).
    let args = cli::args::Cli::parse();
    match cli::run(args) {
        Ok(()) | Err(CliError::BrokenPipe) => ExitCode::SUCCESS,
        Err(e) => {
            error::report(&e);
            ExitCode::from(e.exit_status())
        }
    }
}
