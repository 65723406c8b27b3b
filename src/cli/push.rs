//! `minitls push LOCAL... [-r] [--to REMOTE_DIR] [--force]`: uploads over one connection, each
//! file signed with the client's key; the server stores it only once that signature checks
//! out. Each stored path goes to stdout.

use std::time::Instant;

use minitls::paths;
use minitls::pki::Role;
use minitls::sigfile;
use minitls::transfer::{self, PushOptions};

use super::args::PushArgs;
use super::error::{CliError, CliResult, note, out, printable};
use super::fetch::size_time_rate;
use super::progress::Bars;
use super::{Global, connect, creds, transfer_error};

pub fn run(args: &PushArgs, global: Global) -> CliResult<()> {
    // Check everything we can before touching credentials or the network.
    paths::parse_relative(&args.to, true).map_err(|e| {
        CliError::usage(format!(
            "--to {}: {e}; name a directory relative to the served directory, like uploads/alice",
            args.to
        ))
    })?;
    for local in &args.local {
        match std::fs::metadata(local) {
            Ok(m) if m.is_dir() && !args.recursive => {
                return Err(CliError::usage(format!(
                    "{} is a directory; use -r to upload it and everything under it",
                    local.display()
                )));
            }
            Ok(m) if m.is_dir() || m.is_file() => {}
            Ok(_) => {
                return Err(CliError::usage(format!(
                    "{} is not a regular file or directory",
                    local.display()
                )));
            }
            Err(e) => {
                return Err(CliError::usage(format!(
                    "{}: {e}; name files that exist",
                    local.display()
                )));
            }
        }
        let plain = local
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| paths::check_component(n).is_ok());
        if !plain {
            return Err(CliError::usage(format!(
                "{}: name a file or directory by a plain UTF-8 name (not . or ..)",
                local.display()
            )));
        }
    }

    let creds = creds::load(&args.creds, Role::Client, global.quiet)?;
    let identity = creds.identity.clone();
    let mut chan = connect(&args.server, creds, global)?;
    let opts = PushOptions {
        recursive: args.recursive,
        force: args.force,
    };
    for local in &args.local {
        let started = Instant::now();
        let mut bars = Bars::new(global.quiet, "", false, None);
        let result = transfer::push(&mut chan, &identity, local, &args.to, opts, &mut bars);
        drop(bars);
        let pushed = result.map_err(|e| {
            transfer_error(
                format!("push {} to {}", local.display(), args.server.server),
                e,
                &mut chan,
                &args.server,
            )
        })?;
        out(&pushed.remote)?;
        for (path, reason) in &pushed.skipped {
            note(&format!(
                "skipped {}: {reason}",
                printable(&path.display().to_string())
            ));
        }
        if !global.quiet {
            // The same summary as fetch's: `notes.txt -> uploads/alice/notes.txt: 14 B in ...`.
            let what = if pushed.dirs > 0 {
                format!("{} files, {} directories, ", pushed.files, pushed.dirs)
            } else {
                String::new()
            };
            note(&format!(
                "{} -> {}: {what}{}",
                printable(&local.display().to_string()),
                pushed.remote,
                size_time_rate(pushed.bytes, pushed.bytes, started.elapsed())
            ));
        }
        if let (true, Some(sha)) = (global.verbose, pushed.sha256) {
            note(&format!(
                "{}: sha256 {}, signed by us and confirmed by the server",
                pushed.remote,
                sigfile::hex(&sha)
            ));
        }
    }
    let closed = transfer::close(&mut chan);
    if let (Err(e), true) = (closed, global.verbose) {
        note(&format!("warning: the session did not end cleanly: {e}"));
    }
    Ok(())
}
