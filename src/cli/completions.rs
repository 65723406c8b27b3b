//! `minitls completions SHELL` and `minitls man [COMMAND]`: generated from the same clap
//! definition as `--help`, so they always match the real flags.

use std::io::Write;

use clap::CommandFactory;

use super::args::{Cli, CompletionsArgs, ManArgs};
use super::error::{CliError, CliResult, exit};

/// Prints the completion script for `args.shell` on stdout.
pub fn completions(args: &CompletionsArgs) -> CliResult<()> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "minitls", &mut script);
    write_stdout(&script)
}

/// Prints the manual page of minitls, or of one of its commands, as roff on stdout.
pub fn man(args: &ManArgs) -> CliResult<()> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    // Built, so that global flags show on every page and subcommands get their
    // `minitls-fetch` display names.
    cmd.build();
    let page = match &args.command {
        None => cmd,
        Some(name) => {
            let names: Vec<String> = cmd
                .get_subcommands()
                .map(|c| c.get_name().to_string())
                .collect();
            cmd.find_subcommand(name).cloned().ok_or_else(|| {
                CliError::usage(format!(
                    "minitls man {name}: no such command; name one of {}",
                    names.join(", ")
                ))
            })?
        }
    };
    let mut roff = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut roff)
        .map_err(|e| CliError::new(format!("render the manual page: {e}")))?;
    write_stdout(&roff)
}

fn write_stdout(bytes: &[u8]) -> CliResult<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(CliError::BrokenPipe),
        Err(e) => Err(CliError::with_code(
            exit::LOCAL_IO,
            format!("cannot write to stdout: {e}"),
        )),
    }
}
