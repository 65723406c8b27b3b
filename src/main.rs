//! The `minitls` binary: parse the command line, run it, turn failures into one line and an
//! exit status. Everything else lives in `cli` (front end) and the `minitls` library.

mod cli;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use cli::error::{self, CliError};

fn main() -> ExitCode {
    // No Rust panic text or backtrace ever reaches a user: one line asking for a report.
    error::install_panic_hook();
    // Usage errors are clap's own (exit status 2, with the usage line and a pointer to --help).
    // The matches are kept: they tell which values the config file may still fill.
    let matches = cli::args::Cli::command().get_matches();
    let args = cli::args::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli::run(args, &matches) {
        Ok(()) | Err(CliError::BrokenPipe) => ExitCode::SUCCESS,
        Err(e) => {
            error::report(&e);
            ExitCode::from(e.exit_status())
        }
    }
}
