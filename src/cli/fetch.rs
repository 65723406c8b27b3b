//! `minitls fetch PATH`: one file (or with -r a tree) from the server into --out, written only
//! once its signature checks out; the written path (or with --json an object) goes to stdout,
//! a summary line to stderr. --retry reconnects after a cut, --limit-rate paces the reading
//! (see `progress::Bars`), and Ctrl-C leaves no staging behind.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use minitls::audit::json_string;
use minitls::conn::Channel;
use minitls::net::TcpTransport;
use minitls::paths;
use minitls::pki::{self, Role};
use minitls::sigfile;
use minitls::transfer;

use super::args::FetchArgs;
use super::error::{CliError, CliResult, exit, note, out, printable};
use super::progress::{Bars, human_bytes, short_duration};
use super::{Global, connect, creds, transfer_error};

pub fn run(args: &FetchArgs, global: Global) -> CliResult<()> {
    if args.paths.len() > 1 {
        return run_many(args, global);
    }
    // Check everything we can before touching credentials or the network.
    check_paths_and_out(args)?;
    // -o FILE: that directory and name; -o -: a private directory, then stdout.
    let to_stdout = args.output.as_deref() == Some(std::path::Path::new("-"));
    if to_stdout && args.json {
        return Err(CliError::usage(
            "--json and -o - both want stdout: name a file with -o FILE, or drop --json",
        ));
    }
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
    // The name the library reports the receiving phase under (see Bars).
    let root = wanted_root_name(args)?;
    let local_name = match (&save_as, &root) {
        (Some(n), _) => n.clone(),
        (None, Some(r)) if is_served_root(args.path()) => r.clone(),
        _ => args
            .path()
            .rsplit('/')
            .find(|c| !c.is_empty())
            .unwrap_or(args.path())
            .to_string(),
    };
    let mut opts = transfer::FetchOptions {
        recursive: args.recursive,
        resume: args.resume,
        save_as,
        root_name: root,
        ..Default::default()
    };
    // Ctrl-C: nothing half-received is left behind (a single file's data is kept for
    // --resume, as after a cut), then exit 128 + the signal's number.
    let partial = (!to_stdout).then(|| {
        out_dir.join(minitls::transfer::land::fit_name(
            ".",
            &local_name,
            minitls::transfer::land::PARTIAL_SUFFIX,
        ))
    });
    // An interrupted tree's staging is removed (only a network cut keeps a tree).
    on_interrupt(
        partial
            .clone()
            .filter(|_| !args.recursive)
            .map(|p| (p, resume_command(args))),
        stdout_dir.as_ref().map(|d| d.path().to_path_buf()),
    );
    let mut retries = 0u32;
    let (fetched, mut chan, elapsed) = loop {
        let (err, failure) = match attempt(args, &creds, &out_dir, &opts, &local_name, global) {
            Ok(done) => break done,
            Err(e) => e,
        };
        if failure != Failure::Other && retries < args.retry {
            retries += 1;
            let wait = backoff(retries);
            if !global.quiet {
                let from = match failure {
                    Failure::Cut => ", from what arrived",
                    _ => "",
                };
                note(&format!(
                    "{err}; retrying in {} s (retry {retries} of {}){from}",
                    wait.as_secs(),
                    args.retry
                ));
            }
            std::thread::sleep(wait);
            if failure == Failure::Cut {
                // A file continues from its partial file, a tree from its kept partial tree:
                // ours, from the cut attempt.
                opts.resume = true;
            }
            continue;
        }
        // A file or tree cut off by the network keeps what arrived (not -o -, whose private
        // directory is removed on exit): say how to continue.
        let kept = partial.as_ref().is_some_and(|p| {
            std::fs::metadata(p).is_ok_and(|m| (m.is_file() && m.len() > 0) || m.is_dir())
        });
        if failure == Failure::Cut && kept {
            return Err(CliError::with_code(
                err.exit_status(),
                format!(
                    "{err}; the data received so far is kept: run `{}` to continue",
                    resume_command(args)
                ),
            ));
        }
        return Err(err);
    };
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
                out(&tree_json(args.path(), &t, &signer, elapsed))?;
            } else {
                out(&t.dir.display().to_string())?;
            }
            if !global.quiet {
                note(&format!(
                    "{}{}",
                    tree_summary(args.path(), &t, elapsed),
                    after_retries(retries)
                ));
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
        note(&format!(
            "{}{}",
            file_summary(args.path(), &fetched, elapsed),
            after_retries(retries)
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
    if args.json {
        out(&file_json(args.path(), &fetched, &signer, elapsed))?;
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

/// How an attempt failed, for `--retry` and the resume hint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    /// The server could not be reached (exit status 3): nothing was received.
    Unreachable,
    /// The connection was cut during the transfer.
    Cut,
    /// Anything else (refused, authentication, integrity, local I/O): not retried.
    Other,
}

/// One connection and fetch; on failure, the error and how it failed.
fn attempt(
    args: &FetchArgs,
    creds: &creds::Credentials,
    out_dir: &Path,
    opts: &transfer::FetchOptions,
    local_name: &str,
    global: Global,
) -> Result<(transfer::Fetch, Channel<TcpTransport>, Duration), (CliError, Failure)> {
    let creds = creds.clone();
    let mut chan = connect(&args.server, creds, global).map_err(|e| {
        let failure = if e.exit_status() == exit::UNREACHABLE {
            Failure::Unreachable
        } else {
            Failure::Other
        };
        (e, failure)
    })?;
    let mut bars = Bars::new(global.quiet, local_name, !args.recursive, args.limit_rate);
    let started = Instant::now();
    let result = transfer::fetch(&mut chan, args.path(), out_dir, opts, &mut bars);
    let elapsed = started.elapsed();
    drop(bars);
    match result {
        Ok(f) => Ok((f, chan, elapsed)),
        Err(e) => {
            let failure = if e.is_resumable() {
                Failure::Cut
            } else {
                Failure::Other
            };
            let err = transfer_error(
                format!("fetch '{}' from {}", args.path(), args.server.server),
                e,
                &mut chan,
                &args.server,
            );
            Err((err, failure))
        }
    }
}

/// On SIGINT, SIGTERM or SIGHUP: removes the staging directory of a tree in progress (after
/// a commit under way finished) and the private directory of `-o -`, says what is left, and
/// exits with 128 + the signal's number. `partial` is the hidden file a single file streams
/// into, with the command that continues it.
pub(super) fn on_interrupt(partial: Option<(PathBuf, String)>, private_dir: Option<PathBuf>) {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
        // Without a handler the default stays: the next fetch of a tree removes its staging.
        return;
    };
    std::thread::spawn(move || {
        let Some(signal) = signals.forever().next() else {
            return;
        };
        // Held to the exit (it is reentrant for `note` here): the receiving thread, failing
        // in a directory removed under it, cannot print an error line or draw a bar meanwhile.
        let _stderr = std::io::stderr().lock();
        let removed = transfer::remove_staging_in_progress();
        if let Some(d) = &private_dir {
            let _ = std::fs::remove_dir_all(d);
        }
        if std::io::stderr().is_terminal() {
            // Below the progress bar rather than on it.
            note_newline();
        }
        let what = match &partial {
            Some((p, hint)) if p.is_file() => {
                format!("the data received so far is kept: run `{hint}` to continue")
            }
            _ if !removed.is_empty() => {
                "the tree's staging directory was removed; nothing was put in place".to_string()
            }
            _ => String::new(),
        };
        note(&if what.is_empty() {
            "interrupted".to_string()
        } else {
            format!("interrupted; {what}")
        });
        std::process::exit(128 + signal);
    });
}

/// Ends the line a progress bar may have left on stderr.
fn note_newline() {
    use std::io::Write;
    let _ = writeln!(std::io::stderr());
}

/// The wait before retry `n` (from 1): 1, 2, 4, ... s, at most 30 s.
fn backoff(n: u32) -> Duration {
    Duration::from_secs((1u64 << (n - 1).min(5)).min(30))
}

/// ` after 2 retries` for the summary, or nothing.
fn after_retries(n: u32) -> String {
    match n {
        0 => String::new(),
        1 => " after 1 retry".to_string(),
        n => format!(" after {n} retries"),
    }
}

/// The command that continues this fetch, with the flags that say where to and from whom
/// (given on the command line, in the environment or in the config file alike).
fn resume_command(args: &FetchArgs) -> String {
    let mut words = vec!["minitls".to_string(), "fetch".into()];
    if args.recursive {
        words.push("-r".into());
    }
    words.push("--resume".into());
    words.push(shell_word(args.path()));
    if args.server.server != DEFAULT_SERVER {
        words.push(format!("--server {}", shell_word(&args.server.server)));
    }
    if let Some(name) = &args.server.server_name {
        words.push(format!("--server-name {}", shell_word(name)));
    }
    match &args.output {
        Some(file) => words.push(format!("-o {}", shell_word(&file.display().to_string()))),
        None if args.out != Path::new(DEFAULT_OUT) => {
            words.push(format!(
                "--out {}",
                shell_word(&args.out.display().to_string())
            ));
        }
        None => {}
    }
    let c = &args.creds;
    if let (Some(cert), Some(key), Some(ca)) = (&c.cert, &c.key, &c.ca_cert) {
        for (flag, p) in [("--cert", cert), ("--key", key), ("--ca-cert", ca)] {
            words.push(format!("{flag} {}", shell_word(&p.display().to_string())));
        }
    } else if c.ca_dir != Path::new(DEFAULT_CA_DIR) {
        words.push(format!(
            "--ca-dir {}",
            shell_word(&c.ca_dir.display().to_string())
        ));
    }
    words.join(" ")
}

/// The defaults `resume_command` leaves out (as in args.rs).
const DEFAULT_SERVER: &str = "127.0.0.1:4041";
const DEFAULT_OUT: &str = "client_received";
const DEFAULT_CA_DIR: &str = "ca";

/// A word as a POSIX shell reads it: as is when it is plain, else in single quotes.
fn shell_word(w: &str) -> String {
    let plain = !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@%+=,".contains(c));
    if plain {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

/// `SIZE in TIME, RATE`, the rate counting only the bytes that crossed the network.
pub(super) fn size_time_rate(size: u64, network_bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    format!(
        "{} in {}, {}/s",
        human_bytes(size),
        short_duration(secs),
        human_bytes((network_bytes as f64 / secs) as u64)
    )
}

/// The line left on stderr after a file arrived: `hello.txt: 62 B in 0.01 s, 6.1 KiB/s`.
pub(super) fn file_summary(remote: &str, f: &transfer::Fetched, elapsed: Duration) -> String {
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

/// `docs: 12 files, 3 directories, 1.5 MiB in 0.20 s, 7.5 MiB/s`, and after a resumed
/// fetch what was here already: ` (2 files were already here, 1.0 MiB not sent again)`.
pub(super) fn tree_summary(remote: &str, t: &transfer::TreeFetched, elapsed: Duration) -> String {
    let mut line = format!(
        "{}: {}, {}, {}",
        printable(remote),
        count(t.files, "file", "files"),
        count(t.dirs, "directory", "directories"),
        size_time_rate(t.bytes, t.bytes - t.resumed_bytes, elapsed)
    );
    if t.resumed_bytes > 0 {
        line.push_str(&format!(
            " ({} already here, {} not sent again)",
            match t.already_here {
                1 => "1 file was".to_string(),
                n => format!("{n} files were"),
            },
            human_bytes(t.resumed_bytes)
        ));
    }
    line
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
         \"dirs\":{},\"bytes\":{},\"network_bytes\":{},\"already_here\":{},\"skipped\":[{}],\
         \"signer\":{},\"ms\":{}}}",
        json_string(remote),
        path_json(&t.dir),
        path_json(&t.manifest_path),
        t.files,
        t.dirs,
        t.bytes,
        t.bytes - t.resumed_bytes,
        t.already_here,
        skipped.join(","),
        json_string(signer),
        elapsed.as_millis()
    )
}

/// The checks every fetch makes before touching credentials or the network: each PATH, and
/// `--out`.
fn check_paths_and_out(args: &FetchArgs) -> CliResult<()> {
    for path in &args.paths {
        if is_served_root(path) {
            if !args.recursive {
                return Err(CliError::usage(format!(
                    "'{path}' is the served directory itself; fetch it with -r (it lands in \
                     {}/{}), or name a file in it (`minitls ls` lists them)",
                    args.out.display(),
                    root_name(args)?
                )));
            }
            root_name(args)?;
            continue;
        }
        paths::parse_relative(path, false).map_err(|e| {
            let like = if args.recursive {
                "a directory relative to the served directory, like docs"
            } else {
                "a file relative to the served directory, like docs/report.pdf"
            };
            CliError::usage(format!(
                "'{path}' is not a valid remote path: {e}; name {like}"
            ))
        })?;
    }
    if args.out.as_os_str() == "-" {
        return Err(CliError::usage(
            "--out names a directory to write into; to write the file to stdout, use -o -",
        ));
    }
    if std::fs::metadata(&args.out).is_ok_and(|m| !m.is_dir()) {
        return Err(CliError::usage(format!(
            "--out {} exists and is not a directory; name a directory",
            args.out.display()
        )));
    }
    Ok(())
}

/// True for `.` (or an empty PATH): the served directory itself.
fn is_served_root(path: &str) -> bool {
    paths::parse_relative(path, true).is_ok_and(|p| p.is_empty())
}

/// The local name of the served directory itself (`fetch -r .`): it has no name on the wire,
/// so it is named after the server, as `wget -r` names a site's copy after its host:
/// `OUT/<name the server's certificate was checked for>`, its manifest beside it as for any
/// tree. Never the contents spilled into OUT: they would mix with what else is there, and the
/// manifest would have to go outside OUT.
fn root_name(args: &FetchArgs) -> CliResult<String> {
    let name = args.server.expected_name();
    paths::check_component(&name).map_err(|e| {
        CliError::usage(format!(
            "the served directory is saved under the server's name, but '{name}' cannot name \
             a directory ({e}); pass --server-name with a plain host name"
        ))
    })?;
    Ok(name)
}

/// [`root_name`] when `-r` and a PATH is the served directory itself.
fn wanted_root_name(args: &FetchArgs) -> CliResult<Option<String>> {
    if args.recursive && args.paths.iter().any(|p| is_served_root(p)) {
        return root_name(args).map(Some);
    }
    Ok(None)
}

/// `fetch PATH PATH...`: every path over one connection, the requests pipelined
/// (`transfer::fetch_all`). Each path's outcome is printed as it comes (its local path or JSON
/// object on stdout, its summary or error on stderr); a path the server refuses does not stop
/// the others. The exit status is that of the first failure, else 8 if a tree was partial.
fn run_many(args: &FetchArgs, global: Global) -> CliResult<()> {
    if args.output.is_some() {
        return Err(CliError::usage(
            "-o names one file; with several PATHs, --out DIR receives them all",
        ));
    }
    check_paths_and_out(args)?;
    let creds = creds::load(&args.creds, Role::Client, global.quiet)?;
    let mut opts = transfer::FetchOptions {
        recursive: args.recursive,
        resume: args.resume,
        root_name: wanted_root_name(args)?,
        ..Default::default()
    };
    let mut bars = Bars::new(
        global.quiet,
        super::progress::ANY_NAME,
        !args.recursive,
        args.limit_rate,
    );
    let mut status: Option<u8> = None;
    let mut failed: Vec<String> = Vec::new();
    let mut partial = false;
    let mut stdout_closed = false;
    // What is left to fetch: every path, then after a cut (--retry) the one that was cut and
    // those not yet answered.
    let mut pending: Vec<String> = args.paths.clone();
    let mut retries = 0u32;
    let retry_note = |err: &dyn std::fmt::Display, retries: u32, from: &str| {
        let wait = backoff(retries);
        if !global.quiet {
            note(&format!(
                "{err}; retrying in {} s (retry {retries} of {}){from}",
                wait.as_secs(),
                args.retry
            ));
        }
        std::thread::sleep(wait);
    };
    let not_fetched = loop {
        let mut chan = match connect(&args.server, creds.clone(), global) {
            Ok(c) => c,
            Err(e) if e.exit_status() == exit::UNREACHABLE && retries < args.retry => {
                retries += 1;
                retry_note(&e, retries, "");
                continue;
            }
            // Nothing fetched yet: the one error says it all.
            Err(e) if pending.len() == args.paths.len() && failed.is_empty() => return Err(e),
            Err(e) => {
                note(&e.to_string());
                status.get_or_insert(e.exit_status());
                break pending.len();
            }
        };
        // The subject of the certificate validated in the hello; no answer is used before the
        // server proved it holds its key.
        let signer = printable(&chan.peer().subject);
        let may_retry = retries < args.retry;
        // Every path handed back this time, and the one a cut stopped (to be retried).
        let mut answered: Vec<String> = Vec::new();
        let mut cut: Option<CliError> = None;
        let mut last = Instant::now();
        let mut each = |remote: &str, r: Result<transfer::Fetch, transfer::TransferError>| {
            let elapsed = last.elapsed();
            last = Instant::now();
            answered.push(remote.to_string());
            let line = match r {
                Ok(transfer::Fetch::File(f)) => {
                    if !global.quiet {
                        note(&file_summary(remote, &f, elapsed));
                    }
                    if args.json {
                        file_json(remote, &f, &signer, elapsed)
                    } else {
                        f.path.display().to_string()
                    }
                }
                Ok(transfer::Fetch::Tree(t)) => {
                    if !global.quiet {
                        note(&tree_summary(remote, &t, elapsed));
                    }
                    for (path, reason) in &t.skipped {
                        note(&format!("skipped {path}: {reason}"));
                    }
                    partial |= !t.skipped.is_empty();
                    if args.json {
                        tree_json(remote, &t, &signer, elapsed)
                    } else {
                        t.dir.display().to_string()
                    }
                }
                Err(e) => {
                    let resumable = e.is_resumable();
                    let err = super::describe_transfer_error(
                        format!("fetch '{}' from {}", printable(remote), args.server.server),
                        e,
                        &args.server,
                    );
                    if resumable && may_retry {
                        // The session ends here (fetch_all stops at a cut); retried below.
                        cut = Some(err);
                        return;
                    }
                    // One line per failed path; the closing error line counts them.
                    note(&err.to_string());
                    status.get_or_insert(err.exit_status());
                    failed.push(printable(remote));
                    return;
                }
            };
            if !stdout_closed && let Err(CliError::BrokenPipe) = out(&line) {
                stdout_closed = true;
            }
        };
        let left = transfer::fetch_all(&mut chan, &pending, &args.out, &opts, &mut bars, &mut each);
        let Some(err) = cut else {
            let _ = transfer::close(&mut chan);
            break left;
        };
        // The cut path was handed back last: it stays pending, with those never handed back.
        answered.pop();
        pending = not_answered(&pending, &answered);
        retries += 1;
        retry_note(
            &format!(
                "{err} ({} of {} paths left)",
                pending.len(),
                args.paths.len()
            ),
            retries,
            ", from what arrived",
        );
        // A cut file continues from its partial file, a tree from its kept partial tree:
        // ours, from the cut attempt.
        opts.resume = true;
    };
    drop(bars);
    if not_fetched > 0 {
        note(&format!(
            "{not_fetched} of {} paths were not fetched: the session ended at the error above",
            args.paths.len()
        ));
    }
    match (status, partial) {
        // The last line says it all, for scripts that read only that.
        (Some(code), _) => Err(CliError::with_code(
            code,
            format!(
                "{} of {} paths failed ({}){}; the others are verified and in place",
                failed.len() + not_fetched,
                args.paths.len(),
                failed.join(", "),
                after_retries(retries)
            ),
        )),
        (None, true) => Err(CliError::Reported(exit::PARTIAL)),
        (None, false) => {
            if retries > 0 && !global.quiet {
                note(&format!(
                    "all {} paths fetched{}",
                    args.paths.len(),
                    after_retries(retries)
                ));
            }
            Ok(())
        }
    }
}

/// `pending` without one occurrence of each of `answered`, in order (a PATH given twice is
/// fetched twice).
fn not_answered(pending: &[String], answered: &[String]) -> Vec<String> {
    let mut answered: Vec<&String> = answered.iter().collect();
    pending
        .iter()
        .filter(|p| match answered.iter().position(|a| a == p) {
            Some(i) => {
                answered.swap_remove(i);
                false
            }
            None => true,
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("docs/a.txt"), "docs/a.txt");
        assert_eq!(shell_word("127.0.0.1:4041"), "127.0.0.1:4041");
        assert_eq!(shell_word("[::1]:4041"), "'[::1]:4041'");
        assert_eq!(shell_word("my file"), "'my file'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        assert_eq!(shell_word(""), "''");
    }

    #[test]
    fn after_a_cut_the_paths_not_answered_stay_pending_in_order_duplicates_too() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            not_answered(&v(&["a", "b", "c", "b", "d"]), &v(&["b", "a"])),
            v(&["c", "b", "d"])
        );
        assert_eq!(not_answered(&v(&["a", "b"]), &[]), v(&["a", "b"]));
        assert!(not_answered(&v(&["a"]), &v(&["a"])).is_empty());
    }

    #[test]
    fn retries_back_off_to_at_most_30_seconds() {
        let waits: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
