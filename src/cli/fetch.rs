//! `minitls fetch PATH`: one file from the server into --out, written only once its signature
//! checks out; the written path goes to stdout.

use std::path::Path;
use std::time::{Duration, Instant};

use minitls::audit::json_string;
use minitls::paths;
use minitls::pki::{self, Role};
use minitls::sigfile;
use minitls::transfer;

use super::args::FetchArgs;
use super::error::{CliError, CliResult, exit, note, out, printable};
use super::progress::{Bars, human_bytes, short_duration};
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

    if to_stdout && args.json {
        return Err(CliError::usage(
            "--json and -o - both want stdout: name a file with -o FILE, or drop --json",
        ));
    }

    let creds = creds::load(&args.creds, Role::Client, global.quiet)?;
    let mut chan = connect(&args.server, creds, global)?;
    let mut bars = Bars::new(global.quiet, !args.recursive);
    let opts = transfer::FetchOptions {
        recursive: args.recursive,
        resume: args.resume,
        save_as,
        ..Default::default()
    };
    let started = Instant::now();
    let result = transfer::fetch(&mut chan, &args.path, &out_dir, &opts, &mut bars);
    let elapsed = started.elapsed();
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
    let signer = printable(&chan.peer().subject);
    let fetched = match fetched {
        transfer::Fetch::File(f) => f,
        transfer::Fetch::Tree(t) => {
            if args.json {
                out(&tree_json(&args.path, &t, &signer, elapsed))?;
            } else {
                out(&t.dir.display().to_string())?;
            }
            if !global.quiet {
                note(&tree_summary(&args.path, &t, elapsed));
            }
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
    if !global.quiet {
        note(&file_summary(&args.path, &fetched, elapsed));
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
    if args.json {
        out(&file_json(&args.path, &fetched, &signer, elapsed))?;
    } else {
        out(&fetched.path.display().to_string())?;
    }
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

/// `SIZE in TIME, RATE`, the rate counting only the bytes that crossed the network.
fn size_time_rate(size: u64, network_bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    format!(
        "{} in {}, {}/s",
        human_bytes(size),
        short_duration(secs),
        human_bytes((network_bytes as f64 / secs) as u64)
    )
}

/// The line left on stderr after a file arrived: `hello.txt: 62 B in 0.01 s, 6.1 KiB/s`.
fn file_summary(remote: &str, f: &transfer::Fetched, elapsed: Duration) -> String {
    let network = f.size - f.resumed_from;
    let mut line = format!(
        "{}: {}",
        printable(remote),
        size_time_rate(f.size, network, elapsed)
    );
    if f.resumed_from > 0 {
        line.push_str(&format!(
            " ({} received, {} were already here)",
            human_bytes(network),
            human_bytes(f.resumed_from)
        ));
    }
    line
}

/// `docs: 12 files, 3 directories, 1.5 MiB in 0.20 s, 7.5 MiB/s`.
fn tree_summary(remote: &str, t: &transfer::TreeFetched, elapsed: Duration) -> String {
    format!(
        "{}: {}, {}, {}",
        printable(remote),
        count(t.files, "file", "files"),
        count(t.dirs, "directory", "directories"),
        size_time_rate(t.bytes, t.bytes, elapsed)
    )
}

/// `1 file`, `2 files`.
pub(super) fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn path_json(p: &Path) -> String {
    json_string(&p.display().to_string())
}

/// `--json` for a file: one object on one line (keys documented in the README).
fn file_json(remote: &str, f: &transfer::Fetched, signer: &str, elapsed: Duration) -> String {
    format!(
        "{{\"remote\":{},\"type\":\"file\",\"path\":{},\"signature\":{},\"bytes\":{},\
         \"network_bytes\":{},\"resumed_from\":{},\"sha256\":\"{}\",\"signer\":{},\"ms\":{}}}",
        json_string(remote),
        path_json(&f.path),
        path_json(&f.signature_path),
        f.size,
        f.size - f.resumed_from,
        f.resumed_from,
        sigfile::hex(&f.sha256),
        json_string(signer),
        elapsed.as_millis()
    )
}

/// `--json` for a tree: one object on one line; `skipped` lists what the server did not send.
fn tree_json(remote: &str, t: &transfer::TreeFetched, signer: &str, elapsed: Duration) -> String {
    let skipped: Vec<String> = t
        .skipped
        .iter()
        .map(|(p, r)| {
            format!(
                "{{\"path\":{},\"reason\":{}}}",
                json_string(p),
                json_string(r)
            )
        })
        .collect();
    format!(
        "{{\"remote\":{},\"type\":\"tree\",\"path\":{},\"manifest\":{},\"files\":{},\
         \"dirs\":{},\"bytes\":{},\"network_bytes\":{},\"skipped\":[{}],\"signer\":{},\
         \"ms\":{}}}",
        json_string(remote),
        path_json(&t.dir),
        path_json(&t.manifest_path),
        t.files,
        t.dirs,
        t.bytes,
        t.bytes,
        skipped.join(","),
        json_string(signer),
        elapsed.as_millis()
    )
}
