//! `minitls fetch PATH`: one file from the server into --out, written only once its signature
//! checks out; the written path goes to stdout.

use minitls::paths;
use minitls::pki::{self, Role};
use minitls::sigfile;
use minitls::transfer;

use super::args::FetchArgs;
use super::error::{CliError, CliResult, note, out};
use super::progress::Bars;
use super::{Global, connect, creds, transfer_error};

pub fn run(args: &FetchArgs, global: Global) -> CliResult<()> {
    // Check everything we can before touching credentials or the network.
    paths::parse_relative(&args.path, false).map_err(|e| {
        CliError::new(format!(
            "'{}' is not a valid remote path: {e}; name a file relative to the served \
             directory, like docs/report.pdf",
            args.path
        ))
    })?;
    if std::fs::metadata(&args.out).is_ok_and(|m| !m.is_dir()) {
        return Err(CliError::new(format!(
            "--out {} exists and is not a directory; name a directory",
            args.out.display()
        )));
    }

    let creds = creds::load(&args.creds, Role::Client, global.quiet)?;
    let mut chan = connect(&args.server, creds, global)?;
    let mut bars = Bars::new(global.quiet);
    let fetched =
        transfer::fetch_file(&mut chan, &args.path, &args.out, &mut bars).map_err(|e| {
            transfer_error(
                format!("fetch '{}' from {}", args.path, args.server.server),
                e,
                &mut chan,
                &args.server,
            )
        })?;
    drop(bars);
    // The file is verified and in place; a sloppy goodbye does not undo that.
    let closed = transfer::close(&mut chan);
    if let (Err(e), true) = (closed, global.verbose) {
        note(&format!("warning: the session did not end cleanly: {e}"));
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
