//! `minitls fetch PATH`: one file from the server into --out, written only once its signature
//! checks out; the written path goes to stdout.

use minitls::paths;
use minitls::pki::{self, Role};
use minitls::sigfile;
use minitls::transfer;

use super::args::FetchArgs;
use super::error::{CliError, CliResult, exit, note, out};
use super::progress::Bars;
use super::{Global, connect, creds, transfer_error};

pub fn run(args: &FetchArgs, global: Global) -> CliResult<()> {
    // Check everything we can before touching credentials or the network.
    paths::parse_relative(&args.path, false).map_err(|e| {
        CliError::usage(format!(
            "'{}' is not a valid remote path: {e}; name a file relative to the served \
             directory, like docs/report.pdf",
            args.path
        ))
    })?;
    if std::fs::metadata(&args.out).is_ok_and(|m| !m.is_dir()) {
        return Err(CliError::usage(format!(
            "--out {} exists and is not a directory; name a directory",
            args.out.display()
        )));
    }
    // -o FILE: that directory and name; -o -: a private directory, then stdout.
    let to_stdout = args.output.as_deref() == Some(std::path::Path::new("-"));
    let stdout_dir = if to_stdout {
        Some(
            tempfile::Builder::new()
                .prefix(".minitls-stdout-")
                .tempdir()
                .map_err(|e| {
                    CliError::with_code(
                        exit::LOCAL_IO,
                        format!("cannot make a temporary directory for -o -: {e} (set TMPDIR)"),
                    )
                })?,
        )
    } else {
        None
    };
    let (out_dir, save_as) = match (&args.output, &stdout_dir) {
        (_, Some(t)) => (t.path().to_path_buf(), None),
        (Some(file), None) => {
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .filter(|n| paths::check_component(n).is_ok())
                .ok_or_else(|| {
                    CliError::usage(format!(
                        "-o {}: name a file (a UTF-8 name, not a directory)",
                        file.display()
                    ))
                })?;
            let dir = match file.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => std::path::PathBuf::from("."),
            };
            (dir, Some(name.to_string()))
        }
        (None, None) => (args.out.clone(), None),
    };

    let creds = creds::load(&args.creds, Role::Client, global.quiet)?;
    let mut chan = connect(&args.server, creds, global)?;
    let mut bars = Bars::new(global.quiet);
    let opts = transfer::FetchOptions {
        recursive: args.recursive,
        resume: args.resume,
        save_as,
        ..Default::default()
    };
    let result = transfer::fetch(&mut chan, &args.path, &out_dir, &opts, &mut bars);
    drop(bars);
    let fetched = result.map_err(|e| {
        let resumable = e.is_resumable() && !args.recursive;
        let mut err = transfer_error(
            format!("fetch '{}' from {}", args.path, args.server.server),
            e,
            &mut chan,
            &args.server,
        );
        if resumable {
            let status = err.exit_status();
            err = CliError::with_code(
                status,
                format!(
                    "{err}; the data received so far is kept: run `minitls fetch --resume {}` to continue",
                    args.path
                ),
            );
        }
        err
    })?;
    // The data is verified and in place; a sloppy goodbye does not undo that.
    let closed = transfer::close(&mut chan);
    if let (Err(e), true) = (closed, global.verbose) {
        note(&format!("warning: the session did not end cleanly: {e}"));
    }
    let fetched = match fetched {
        transfer::Fetch::File(f) => f,
        transfer::Fetch::Tree(t) => {
            out(&t.dir.display().to_string())?;
            for (path, reason) in &t.skipped {
                note(&format!("skipped {path}: {reason}"));
            }
            if !t.skipped.is_empty() {
                // SPEC §1.1: the tree is in place and verified, but not whole.
                note(&format!(
                    "{} entries were skipped; the rest of the tree is verified and in place",
                    t.skipped.len()
                ));
                return Err(CliError::Reported(exit::PARTIAL));
            }
            if global.verbose {
                note(&format!(
                    "{}: {} files, {} directories, {} bytes, one signed manifest in {}",
                    t.dir.display(),
                    t.files,
                    t.dirs,
                    t.bytes,
                    t.manifest_path.display()
                ));
            }
            return Ok(());
        }
    };
    if global.verbose && fetched.resumed_from > 0 {
        note(&format!(
            "resumed: {} bytes were already here, {} crossed the network",
            fetched.resumed_from,
            fetched.size - fetched.resumed_from
        ));
    }

    if to_stdout {
        // Verified and complete: only now does any byte reach the reader of the pipe.
        let mut file = std::fs::File::open(&fetched.path).map_err(|e| {
            CliError::with_code(exit::LOCAL_IO, format!("{}: {e}", fetched.path.display()))
        })?;
        let mut stdout = std::io::stdout().lock();
        return match std::io::copy(&mut file, &mut stdout).and_then(|_| {
            use std::io::Write;
            stdout.flush()
        }) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(CliError::BrokenPipe),
            Err(e) => Err(CliError::with_code(
                exit::LOCAL_IO,
                format!("cannot write to stdout: {e}"),
            )),
        };
    }
    out(&fetched.path.display().to_string())?;
    if global.verbose {
        let peer = chan.peer();
        note(&format!(
            "{}: {} bytes, sha256 {}, signed by '{}' (certificate sha256 {}); signature in {}",
            fetched.path.display(),
            fetched.size,
            sigfile::hex(&fetched.sha256),
            peer.subject,
            pki::fingerprint_hex(&peer.fingerprint),
            fetched.signature_path.display()
        ));
    }
    Ok(())
}
